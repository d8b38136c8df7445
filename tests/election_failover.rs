//! Failover of separate node processes under a real ZooKeeper election: three `kahadb-node`
//! processes with `--zookeeper` and minimumReplicas 1, synchronous writes to whoever is master.
//! The master is killed with SIGKILL round after round (the killed node restarts and rejoins as
//! a slave); then a master is paused with SIGSTOP for longer than its session timeout and
//! resumed. Every write a master acknowledged is on the last master; failover times are printed.

#[path = "support/zookeeper.rs"]
mod zookeeper;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use zookeeper::ZooKeeper;

const SESSION_MS: u64 = 2000;
const QUEUE: &str = "orders";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One node process, answering one line per command (read on a thread of its own, so that a
/// killed or paused process gives a timeout, not a hang).
struct Proc {
    dir: PathBuf,
    port: u16,
    zk: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(dir: &Path, port: u16, zk: &str) -> Proc {
        std::fs::create_dir_all(dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kahadb-node"))
            .args(["--dir", dir.to_str().unwrap()])
            .args(["--uri", &format!("kdbr://127.0.0.1:{port}")])
            .args(["--zookeeper", zk])
            .args(["--session-timeout-ms", &SESSION_MS.to_string()])
            .args(["--min-replicas", "1", "--timeout-ms", "4000"])
            .args(["--file-length", &(1u32 << 20).to_string()])
            .args(["--ack-log", dir.join("acks").to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("starting kahadb-node");
        let stdin = child.stdin.take().unwrap();
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let p = Proc {
            dir: dir.to_path_buf(),
            port,
            zk: zk.to_owned(),
            child,
            stdin,
            lines,
        };
        let ready = p.lines.recv_timeout(Duration::from_secs(30)).unwrap();
        assert!(ready.starts_with("READY"), "{ready}");
        p
    }

    fn cmd(&mut self, c: &str, wait: Duration) -> Option<String> {
        // Answers to earlier commands that timed out are dropped.
        while self.lines.try_recv().is_ok() {}
        writeln!(self.stdin, "{c}").ok()?;
        self.stdin.flush().ok()?;
        self.lines.recv_timeout(wait).ok()
    }

    fn role(&mut self) -> Option<String> {
        let s = self.cmd("status", Duration::from_secs(2))?;
        let at = s.find("\"role\":\"")? + 8;
        Some(s[at..].split('"').next()?.to_owned())
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Proc::spawn(&self.dir.clone(), self.port, &self.zk.clone());
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    fn acked(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("acks"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        self.kill();
    }
}

/// The index of the one master, waiting up to `within`; panics on two masters at once.
fn master(nodes: &mut [Proc], skip: Option<usize>, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let masters: Vec<usize> = (0..nodes.len())
            .filter(|i| Some(*i) != skip)
            .filter(|i| nodes[*i].role().as_deref() == Some("master"))
            .collect();
        assert!(masters.len() <= 1, "two masters at once: {masters:?}");
        if let Some(m) = masters.first() {
            return *m;
        }
        assert!(Instant::now() < deadline, "no master within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes batches of 5 synchronous 1 KiB messages to the master until one is acknowledged
/// (a new master may still be waiting for its slave); returns when.
fn first_ack(nodes: &mut [Proc], skip: Option<usize>, within: Duration) -> (usize, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let m = master(
            nodes,
            skip,
            deadline.saturating_duration_since(Instant::now()),
        );
        if let Some(a) = nodes[m].cmd(
            &format!("write {QUEUE} 5 1024 sync"),
            Duration::from_secs(6),
        ) {
            if a.starts_with("OK") {
                return (m, Instant::now());
            }
        }
        assert!(
            Instant::now() < deadline,
            "no acknowledged write within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn all_acked(nodes: &[Proc]) -> BTreeSet<String> {
    nodes.iter().flat_map(|n| n.acked()).collect()
}

fn ids_of(n: &mut Proc) -> BTreeSet<String> {
    let a = n
        .cmd(&format!("ids {QUEUE}"), Duration::from_secs(20))
        .expect("ids");
    a.split_whitespace().skip(2).map(str::to_owned).collect()
}

#[test]
fn masters_killed_and_paused_lose_no_acknowledged_write() {
    let zk = ZooKeeper::start();
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Proc> = (0..3)
        .map(|i| {
            Proc::spawn(
                &root.path().join(format!("n{i}")),
                free_port(),
                &zk.connect(),
            )
        })
        .collect();
    let (m, _) = first_ack(&mut nodes, None, Duration::from_secs(30));
    println!("first master: node {m}");

    // SIGKILL rounds: the master dies under writes; the next acknowledged write comes from a
    // new master; the dead node restarts and rejoins.
    let mut failovers = Vec::new();
    for round in 0..4 {
        let m = master(&mut nodes, None, Duration::from_secs(20));
        for _ in 0..10 {
            let a = nodes[m]
                .cmd(
                    &format!("write {QUEUE} 20 1024 sync"),
                    Duration::from_secs(6),
                )
                .unwrap_or_default();
            assert!(a.starts_with("OK"), "round {round}: {a}");
        }
        let killed = Instant::now();
        nodes[m].kill();
        let (new, at) = first_ack(&mut nodes, Some(m), Duration::from_secs(30));
        let took = at - killed;
        println!("round {round}: node {m} killed, node {new} acknowledged after {took:?}");
        assert_ne!(new, m);
        failovers.push(took);
        nodes[m].restart();
    }
    failovers.sort();
    println!(
        "failover (SIGKILL to the first acknowledged write, session timeout {SESSION_MS} ms): median {:?}, max {:?}",
        failovers[failovers.len() / 2],
        failovers.last().unwrap()
    );

    // SIGSTOP for longer than the session timeout: another node takes over; the paused one,
    // resumed, acknowledges nothing more as master.
    let m = master(&mut nodes, None, Duration::from_secs(20));
    let a = nodes[m]
        .cmd(
            &format!("write {QUEUE} 20 1024 sync"),
            Duration::from_secs(6),
        )
        .unwrap_or_default();
    assert!(a.starts_with("OK"), "{a}");
    let before = nodes[m].acked().len();
    nodes[m].signal(libc::SIGSTOP);
    let (new, _) = first_ack(&mut nodes, Some(m), Duration::from_secs(30));
    assert_ne!(new, m);
    for _ in 0..5 {
        let a = nodes[new]
            .cmd(
                &format!("write {QUEUE} 20 1024 sync"),
                Duration::from_secs(6),
            )
            .unwrap_or_default();
        assert!(a.starts_with("OK"), "{a}");
    }
    nodes[m].signal(libc::SIGCONT);
    // Its first write after waking must not be acknowledged by it as master.
    let woke = nodes[m]
        .cmd(
            &format!("write {QUEUE} 1 1024 sync"),
            Duration::from_secs(10),
        )
        .unwrap_or_default();
    println!("the paused master, resumed, answered a write with: {woke}");
    assert!(
        !woke.starts_with("OK"),
        "a fenced master acknowledged a write: {woke}"
    );
    assert_eq!(
        nodes[m].acked().len(),
        before,
        "nothing acknowledged by the paused master"
    );
    // It steps down and follows the new master.
    let deadline = Instant::now() + Duration::from_secs(30);
    while nodes[m].role().as_deref() != Some("slave") {
        assert!(
            Instant::now() < deadline,
            "the resumed master did not become a slave"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let a = nodes[new]
        .cmd(
            &format!("write {QUEUE} 20 1024 sync"),
            Duration::from_secs(6),
        )
        .unwrap_or_default();
    assert!(a.starts_with("OK"), "{a}");

    // Every acknowledged write is on the last master.
    let acked = all_acked(&nodes);
    let held = ids_of(&mut nodes[new]);
    let missing: Vec<&String> = acked.iter().filter(|id| !held.contains(*id)).collect();
    println!(
        "acknowledged {} writes over {} failovers; the last master holds {} messages; missing {}",
        acked.len(),
        failovers.len() + 1,
        held.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    for n in nodes.iter_mut() {
        let _ = n.cmd("quit", Duration::from_secs(10));
    }
}

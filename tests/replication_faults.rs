//! Process-level fault tests of replication: every node is a `kahadb-node` process on loopback,
//! driven through its line protocol, and killed with SIGKILL (`Child::kill`); links can run
//! through a `kahadb-proxy` that delays, drops, cuts and partitions them. Each test prints the
//! figures it asserts on (`cargo test --release --test replication_faults -- --nocapture`).
//!
//! - `steady_load_three_slaves_rotation_identical_files`: 1 master, 3 slaves joining before,
//!   during and late in a synchronous load (minimumReplicas 1) over 1 MiB files, with a GC on
//!   the way: every data file of the master is byte-identical on every slave, and every slave,
//!   promoted once the master is killed, holds the master's message ids.
//! - `initial_sync_killed_halfway_resumes`: a slave killed with SIGKILL halfway through a
//!   1 GiB initial sync transfers, once restarted, at most what it still needed plus one chunk
//!   per transfer session (counted on the wire by a proxy), and ends byte-identical.
//! - `live_slave_killed_catches_up`: a live slave killed under load catches up after a restart
//!   and is live again with no lag.
//! - `min_replicas_waits_for_restarted_slave_or_times_out`: with minimumReplicas 1 and the only
//!   slave killed, synchronous writes wait and complete once it is back; with a 500 ms timeout
//!   they fail with REPLICATION_TIMEOUT, and the failed write is whole (or absent), never torn.
//! - `proxy_faults_lose_no_acknowledged_write`: delays, drops, cuts and a partition between
//!   master and slave for ~20 s of synchronous writes: every write the master acknowledged is on
//!   the promoted slave.
//! - `slave_disk_full_leaves_with_reason` (root: a real full disk, a small tmpfs) and
//!   `slave_file_size_limit_leaves_with_reason` (any user: RLIMIT_FSIZE): a slave that cannot
//!   write leaves the master's in-sync set with the write failure as its reason, shows the error
//!   in its own status, and the master goes on (minimumReplicas 0) or times out (1).
//! - `slave_disk_full_during_initial_sync_leaves_with_reason` (root): a slave whose disk fills
//!   during its initial sync: the master's status says why it does not get in sync, and the
//!   master's GC is not held up by the files of its plan while it keeps failing.
//! - `partition_during_initial_sync_is_noticed`: a partition (held bytes, no reset) in the
//!   middle of an initial sync is noticed by the slave's transfer sessions within their idle
//!   timeout; once it heals the slave syncs on and ends byte-identical.
//! - `failover_old_master_rejoins_and_converges`: the master dies with writes its partitioned
//!   slave never got; the promoted slave writes on; the old master rejoins as its slave, its
//!   divergent tail is cut, and it ends byte-identical with the new master's ids.
//! - `slave_killed_repeatedly_converges`: a slave killed twelve times at random moments
//!   (initial sync, catch-up, live) under load ends byte-identical with the master's ids.
//! - `master_killed_and_restarted_slave_follows`: the master killed under asynchronous load and
//!   restarted four times; its slave follows it and ends byte-identical with its ids.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const NODE: &str = env!("CARGO_BIN_EXE_kahadb-node");
const PROXY: &str = env!("CARGO_BIN_EXE_kahadb-proxy");
const MIB: u64 = 1 << 20;
/// How long any one command may take before the test fails.
const CMD_TIMEOUT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// A minimal JSON reader for the status lines.

#[derive(Debug, Clone, PartialEq)]
enum J {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

static NULL: J = J::Null;

impl J {
    fn parse(s: &str) -> J {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.b.len(), "trailing bytes in JSON: {s}");
        v
    }

    fn get(&self, key: &str) -> &J {
        match self {
            J::Obj(kv) => kv.iter().find(|(k, _)| k == key).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    fn u64(&self) -> u64 {
        match self {
            J::Num(n) => *n as u64,
            other => panic!("expected a number, got {other:?}"),
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            J::Str(s) => Some(s),
            _ => None,
        }
    }

    fn arr(&self) -> &[J] {
        match self {
            J::Arr(v) => v,
            _ => &[],
        }
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) {
        self.ws();
        assert_eq!(
            self.b.get(self.i),
            Some(&c),
            "JSON: expected {:?}",
            c as char
        );
        self.i += 1;
    }

    fn value(&mut self) -> J {
        self.ws();
        match self.b[self.i] {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                self.ws();
                if self.b[self.i] == b'}' {
                    self.i += 1;
                    return J::Obj(kv);
                }
                loop {
                    self.ws();
                    let J::Str(k) = self.value() else {
                        panic!("JSON: a key must be a string")
                    };
                    self.eat(b':');
                    kv.push((k, self.value()));
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b'}' {
                        return J::Obj(kv);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.b[self.i] == b']' {
                    self.i += 1;
                    return J::Arr(v);
                }
                loop {
                    v.push(self.value());
                    self.ws();
                    self.i += 1;
                    if self.b[self.i - 1] == b']' {
                        return J::Arr(v);
                    }
                }
            }
            b'"' => {
                self.i += 1;
                let mut s = String::new();
                loop {
                    let c = self.b[self.i];
                    self.i += 1;
                    match c {
                        b'"' => return J::Str(s),
                        b'\\' => {
                            let e = self.b[self.i];
                            self.i += 1;
                            match e {
                                b'u' => {
                                    let hex =
                                        std::str::from_utf8(&self.b[self.i..self.i + 4]).unwrap();
                                    self.i += 4;
                                    let c = u32::from_str_radix(hex, 16).unwrap();
                                    s.push(char::from_u32(c).unwrap_or('?'));
                                }
                                b'n' => s.push('\n'),
                                b't' => s.push('\t'),
                                other => s.push(other as char),
                            }
                        }
                        _ => {
                            // Copy a whole UTF-8 sequence.
                            let start = self.i - 1;
                            let mut end = self.i;
                            while end < self.b.len() && (self.b[end] & 0xc0) == 0x80 {
                                end += 1;
                            }
                            s.push_str(std::str::from_utf8(&self.b[start..end]).unwrap());
                            self.i = end;
                        }
                    }
                }
            }
            b't' => {
                self.i += 4;
                J::Bool(true)
            }
            b'f' => {
                self.i += 5;
                J::Bool(false)
            }
            b'n' => {
                self.i += 4;
                J::Null
            }
            _ => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                J::Num(
                    std::str::from_utf8(&self.b[start..self.i])
                        .unwrap()
                        .parse()
                        .unwrap(),
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes.

/// A child process driven by lines: killed (SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    log: Option<PathBuf>,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: Option<&Path>) -> Proc {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        match log {
            Some(p) => {
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap();
                cmd.stderr(f);
            }
            None => {
                cmd.stderr(Stdio::inherit());
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {name}: {e}"));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            stdin,
            out,
            log: log.map(Path::to_path_buf),
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("the process is running");
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: sending {line:?}: {e}\n{}", self.name, self.tail()));
    }

    /// The next line, if one comes within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Option<String> {
        match self.out.recv_timeout(timeout) {
            Ok(l) => Some(l),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: the process ended\n{}", self.name, self.tail())
            }
        }
    }

    fn expect_line(&mut self, what: &str) -> String {
        match self.recv(CMD_TIMEOUT) {
            Some(l) => l,
            None => panic!(
                "{}: no answer to {what:?} within {CMD_TIMEOUT:?}\n{}",
                self.name,
                self.tail()
            ),
        }
    }

    /// Sends a command and returns its one-line answer.
    fn cmd(&mut self, line: &str) -> String {
        self.send(line);
        self.expect_line(line)
    }

    /// Sends a command that must answer `OK...`.
    fn ok(&mut self, line: &str) -> String {
        let a = self.cmd(line);
        assert!(
            a.starts_with("OK"),
            "{}: {line:?} answered {a:?}",
            self.name
        );
        a
    }

    fn status(&mut self) -> J {
        J::parse(&self.cmd("status"))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }

    /// The end of the process's log, for failure messages.
    fn tail(&self) -> String {
        let Some(p) = &self.log else {
            return String::new();
        };
        let text = fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(30);
        format!(
            "--- end of {} ---\n{}",
            p.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port below the kernel's ephemeral range (so that no outgoing connection takes it while
/// its node is down), free when chosen, never handed out twice by this process.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < 32_000, "no free port");
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

fn uri(port: u16) -> String {
    format!("kdbr://127.0.0.1:{port}")
}

/// A node process: its directory and port outlive the process, so it can be restarted.
struct NodeSpec {
    name: String,
    dir: PathBuf,
    port: u16,
    log: PathBuf,
    /// Flags every start of this node gets (journal layout, timeouts, ...).
    flags: Vec<String>,
    /// RLIMIT_FSIZE for the process, if any.
    fsize_limit: Option<u64>,
}

impl NodeSpec {
    fn new(base: &Path, name: &str, flags: &[&str]) -> NodeSpec {
        NodeSpec {
            name: name.to_owned(),
            dir: base.join(name),
            port: free_port(),
            log: base.join(format!("{name}.log")),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            fsize_limit: None,
        }
    }

    fn uri(&self) -> String {
        uri(self.port)
    }

    /// Starts the process with `role` flags (`--master 1`, `--slave-of URI`, ...).
    fn start(&self, role: &[&str]) -> Proc {
        let mut cmd = Command::new(NODE);
        cmd.arg("--dir")
            .arg(&self.dir)
            .args(["--uri", &self.uri()])
            .args(&self.flags)
            .args(role);
        if let Some(limit) = self.fsize_limit {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and only touches this child's limits.
            unsafe {
                cmd.pre_exec(move || {
                    let l = libc::rlimit {
                        rlim_cur: limit as libc::rlim_t,
                        rlim_max: limit as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &l) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut p = Proc::spawn(&self.name, cmd, Some(&self.log));
        let ready = p.expect_line("start");
        assert!(
            ready.starts_with("READY "),
            "{}: {ready}\n{}",
            self.name,
            p.tail()
        );
        p
    }

    fn master(&self, epoch: u64) -> Proc {
        self.start(&["--master", &epoch.to_string()])
    }

    fn slave_of(&self, master: &str) -> Proc {
        self.start(&["--slave-of", master])
    }
}

struct ProxyProc {
    p: Proc,
    port: u16,
}

impl ProxyProc {
    fn start(target_port: u16) -> ProxyProc {
        let mut cmd = Command::new(PROXY);
        cmd.args(["0", &format!("127.0.0.1:{target_port}")]);
        let mut p = Proc::spawn("proxy", cmd, None);
        let port = p
            .expect_line("start")
            .parse()
            .expect("the proxy prints its port");
        ProxyProc { p, port }
    }

    fn uri(&self) -> String {
        uri(self.port)
    }

    fn cmd(&mut self, line: &str) -> String {
        let a = self.p.cmd(line);
        assert!(!a.starts_with("ERR"), "proxy: {line:?} answered {a}");
        a
    }

    fn status(&mut self) -> J {
        J::parse(&self.p.cmd("status"))
    }
}

/// Polls `f` every 50 ms until it returns Some, or fails after `timeout` with `what`.
fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the master sees exactly `n` slaves, every one live with no lag.
fn wait_caught_up(master: &mut Proc, n: usize, timeout: Duration) -> J {
    let deadline = Instant::now() + timeout;
    let last = loop {
        let st = master.status();
        let slaves = st.get("slaves").arr();
        let live = slaves
            .iter()
            .filter(|s| s.get("state").str() == Some("live") && s.get("lag_bytes").u64() == 0)
            .count();
        if live == n {
            return st;
        }
        if Instant::now() >= deadline {
            break st;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    panic!(
        "{} slaves not live with lag 0 after {timeout:?}: {last:?}\n{}",
        n,
        master.tail()
    )
}

fn data_files(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            (name.starts_with("db-") && name.ends_with(".log")).then_some(name)
        })
        .collect()
}

/// Whether two files have the same bytes.
fn same_bytes(a: &Path, b: &Path) -> bool {
    let (Ok(fa), Ok(fb)) = (File::open(a), File::open(b)) else {
        return false;
    };
    if fa.metadata().unwrap().len() != fb.metadata().unwrap().len() {
        return false;
    }
    let (mut ra, mut rb) = (BufReader::new(fa), BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut ra, &mut ba);
        let m = read_full(&mut rb, &mut bb);
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Every data file of `master` differs on `slave` (empty: all byte-identical), and the bytes
/// compared.
fn differing_files(master: &Path, slave: &Path) -> (Vec<String>, u64) {
    let mut bytes = 0;
    let differ = data_files(master)
        .into_iter()
        .filter(|f| {
            bytes += fs::metadata(master.join(f)).map(|m| m.len()).unwrap_or(0);
            !same_bytes(&master.join(f), &slave.join(f))
        })
        .collect();
    (differ, bytes)
}

/// How many messages a `write` answered with: `OK n ...`, or `ERR ... after i of n ...`.
fn written_by(answer: &str) -> u64 {
    let w: Vec<&str> = answer.split_whitespace().collect();
    if w[0] == "OK" {
        return w[1].parse().unwrap();
    }
    let at = w.iter().position(|x| *x == "after").expect(answer);
    w[at + 1].parse().unwrap()
}

/// `file:offset` of a position object.
fn pos(p: &J) -> String {
    format!("{}:{}", p.get("file").u64(), p.get("offset").u64())
}

/// The ids of an `IDS n id...` answer.
fn ids_of(answer: &str) -> Vec<String> {
    let mut w = answer.split_whitespace();
    assert_eq!(w.next(), Some("IDS"), "{answer:.200}");
    let n: usize = w.next().unwrap().parse().unwrap();
    let ids: Vec<String> = w.map(str::to_owned).collect();
    assert_eq!(ids.len(), n);
    ids
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

// ---------------------------------------------------------------------------------------------
// a. Steady load, three slaves joining at different moments, many rotated files.

#[test]
fn steady_load_three_slaves_rotation_identical_files() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let flags = ["--file-length", "1048576", "--timeout-ms", "30000"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let specs: Vec<NodeSpec> = (1..=3)
        .map(|i| NodeSpec::new(base.path(), &format!("slave{i}"), &flags))
        .collect();
    let mut master = ms.start(&["--master", "1", "--min-replicas", "1"]);
    let mut slaves = vec![specs[0].slave_of(&ms.uri())];
    master.ok("wait-live 1 30000");

    // ~12 s of synchronous writes of 8 KiB: slave 2 joins at 3 s, slave 3 at 9 s. Half of the
    // messages are consumed and a GC deletes the files they filled once slave 2 is live (at 6 s
    // or later: the files of a syncing slave's plan are pinned); more are consumed and collected
    // while slave 3 syncs (whatever that GC may delete).
    let load = Instant::now();
    let (mut written, mut gc, mut gc2) = (0u64, String::new(), String::new());
    let mut joined = Vec::new();
    while load.elapsed() < Duration::from_secs(12) {
        let a = master.ok("write q 25 8192 sync");
        written += a.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap();
        let t = load.elapsed();
        if slaves.len() == 1 && t > Duration::from_secs(3) {
            slaves.push(specs[1].slave_of(&ms.uri()));
            joined.push(t);
        }
        if gc.is_empty()
            && t > Duration::from_secs(6)
            && master.status().get("live_slaves").u64() == 2
        {
            master.ok(&format!("consume q {}", written / 2));
            gc = master.ok("gc");
            joined.push(t);
        }
        if slaves.len() == 2 && !gc.is_empty() && t > Duration::from_secs(9) {
            slaves.push(specs[2].slave_of(&ms.uri()));
            joined.push(t);
        }
        if slaves.len() == 3 && gc2.is_empty() && t > joined[2] + Duration::from_millis(300) {
            master.ok(&format!("consume q {}", written / 8));
            gc2 = master.ok("gc");
        }
    }
    assert_eq!(slaves.len(), 3, "the third slave joined");
    println!(
        "a: slave 2 joined at {:.1?}, the GC ran at {:.1?}, slave 3 joined at {:.1?}; a second GC while it synced: {gc2}",
        joined[0], joined[1], joined[2]
    );
    let st = wait_caught_up(&mut master, 3, Duration::from_secs(120));
    let files = data_files(&ms.dir);
    println!(
        "a: {written} synchronous writes of 8 KiB in {:.1?}; master at {}; GC: {gc}; {} data files on the master ({:?}..{:?})",
        load.elapsed(),
        pos(st.get("position")),
        files.len(),
        files.first(),
        files.last()
    );
    assert!(files.len() >= 8, "many files rotated: {files:?}");
    assert!(
        gc.contains("deleted [") && !gc.contains("deleted []"),
        "{gc}"
    );

    // Every data file of the master is byte-identical on every slave; and a slave keeps no
    // data file the master deleted (the GC's Remove frames, or the next sync plan).
    for s in &specs {
        let (differ, bytes) = wait_for(Duration::from_secs(20), "identical files", || {
            let (d, b) = differing_files(&ms.dir, &s.dir);
            let extra: Vec<String> = data_files(&s.dir).difference(&files).cloned().collect();
            if d.is_empty() && extra.is_empty() {
                return Some((d, b));
            }
            println!("a: {}: differ {d:?}, extra {extra:?}; waiting", s.name);
            wait_caught_up(&mut master, 3, Duration::from_secs(30));
            None
        });
        println!(
            "a: {}: {} files, {bytes} bytes, all byte-identical to the master's ({differ:?} differ)",
            s.name,
            files.len()
        );
    }

    // The master's ids, then it dies; each slave, promoted, has the same.
    let ids = master.cmd("ids q");
    let master_ids = ids_of(&ids);
    let digest = master.cmd("digest q");
    master.kill();
    for (s, p) in specs.iter().zip(slaves.iter_mut()) {
        p.ok("promote 2");
        let got = ids_of(&p.cmd("ids q"));
        assert_eq!(got.len(), master_ids.len(), "{}", s.name);
        assert!(
            got == master_ids,
            "{}: ids differ from the master's",
            s.name
        );
        assert_eq!(p.cmd("digest q"), digest, "{}", s.name);
        let v = p.ok("verify q");
        println!(
            "a: {} promoted: {} ids identical to the master's ({digest}), bodies verified ({v})",
            s.name,
            got.len()
        );
    }
    println!("a: done in {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// b. A slave killed halfway through a 1 GiB initial sync resumes where it stopped.

#[test]
fn initial_sync_killed_halfway_resumes() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    // 32 MiB files (the default), four transfer sessions of 1 MiB chunks (the defaults).
    let flags = ["--sessions", "4"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let ss = NodeSpec::new(base.path(), "slave", &flags);
    let mut master = ms.master(1);
    // Over 1 GiB of sealed files (33 of 32 MiB) from asynchronous writes of 1 MiB messages,
    // then one synchronous write so that all of it is on disk.
    let built = Instant::now();
    master.ok("write big 1060 1048000 async");
    master.ok("write big 1 1000 sync");
    let st = master.status();
    let newest = st.get("position");
    let (newest_file, newest_offset) = (newest.get("file").u64(), newest.get("offset").u64());
    let sealed: u64 = data_files(&ms.dir)
        .iter()
        .filter(|f| **f != format!("db-{newest_file}.log"))
        .map(|f| fs::metadata(ms.dir.join(f)).unwrap().len())
        .sum();
    println!(
        "b: master journal built in {:.1?}: {} MiB in sealed files, newest file {newest_file} at {newest_offset}",
        built.elapsed(),
        sealed >> 20
    );
    assert!(sealed >= 1024 * MIB);

    // The slave syncs through a proxy that counts the bytes the master sends.
    let mut proxy = ProxyProc::start(ms.port);
    let mut slave = ss.slave_of(&proxy.uri());
    let mut total = 0;
    let synced = Instant::now();
    let at_kill = wait_for(Duration::from_secs(300), "the sync half-way", || {
        let st = slave.status();
        let to_go = st.get("bytes_to_go").u64();
        if st.get("link").str() == Some("syncing") && to_go > 0 {
            total = total.max(to_go);
        }
        (total > 0 && to_go > 0 && to_go <= total / 2).then_some(to_go)
    });
    slave.kill();
    let killed_after = synced.elapsed();
    // The bytes the proxy handed to the dead slave's connections count as before the restart.
    let before = wait_for(
        Duration::from_secs(30),
        "the old connections closed",
        || {
            let s = proxy.status();
            (s.get("connections").u64() == 0).then(|| s.get("to_client").u64())
        },
    );
    let progress = fs::read_to_string(ss.dir.join("replication.progress")).unwrap_or_default();
    let recorded: u64 = progress
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    println!(
        "b: slave killed after {killed_after:.1?}: {} MiB of {} MiB still to fetch by its last status, {} MiB recorded in its progress file, {} MiB through the proxy",
        at_kill >> 20,
        total >> 20,
        recorded >> 20,
        before >> 20
    );

    // Restarted: it fetches what is left, then goes live.
    let mut slave = ss.slave_of(&proxy.uri());
    let resumed = Instant::now();
    wait_for(Duration::from_secs(300), "the slave live again", || {
        (slave.status().get("link").str() == Some("live")).then_some(())
    });
    wait_caught_up(&mut master, 1, Duration::from_secs(60));
    let after = proxy.status().get("to_client").u64();
    let wire = after - before;
    // On the wire after the restart: the ranges fetched, the master's index checkpoint (a
    // restarted slave's hot standby starts empty and asks for it), the live catch-up of the
    // newest file (the master is idle: exactly its written bytes), and frame headers, plans,
    // heartbeats.
    let index = fs::metadata(ms.dir.join("kahadb-rs.index")).map_or(0, |m| m.len());
    let fetched_at_most = wire.saturating_sub(newest_offset + index);
    let sessions = 4;
    let allowance = 64 * (at_kill / MIB + 1) + 64 * 1024;
    let bound = at_kill + sessions * MIB + allowance;
    let log = fs::read_to_string(&ss.log).unwrap();
    let plans: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("initial sync from"))
        .collect();
    println!(
        "b: after the restart ({:.1?} to live): {} bytes from the master on the wire ({newest_offset} of them the newest file, at most {index} the index checkpoint), at most {} bytes of ranges ({} MiB), bound {} bytes = {} MiB left + {sessions} sessions x 1 MiB + {} bytes of framing; sync plans logged: {plans:?}",
        resumed.elapsed(),
        wire,
        fetched_at_most,
        fetched_at_most >> 20,
        bound,
        at_kill >> 20,
        allowance
    );
    assert!(
        fetched_at_most <= bound,
        "the restarted slave fetched {fetched_at_most} bytes, more than {bound}"
    );
    assert!(
        fetched_at_most + 2 * sessions * MIB >= at_kill,
        "it fetched what was left"
    );
    // The restarted slave's own account agrees: its plan asked for what was left (the MiB
    // its log states are rounded down).
    let last_plan = plans.last().expect("the restarted slave logged its plan");
    let planned: u64 = last_plan
        .split(": ")
        .last()
        .and_then(|t| t.split(" MiB to fetch").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no MiB to fetch in {last_plan}"));
    assert!(plans.len() >= 2, "{plans:?}");
    assert!(
        planned * MIB <= bound && planned * MIB + 2 * sessions * MIB >= at_kill,
        "the restart planned {planned} MiB"
    );

    let (differ, bytes) = differing_files(&ms.dir, &ss.dir);
    assert!(differ.is_empty(), "files differ: {differ:?}");
    println!(
        "b: {} MiB in {} files byte-identical; done in {:.1?}",
        bytes >> 20,
        data_files(&ms.dir).len(),
        t0.elapsed()
    );
    let digest = master.cmd("digest big");
    master.kill();
    slave.ok("promote 2");
    assert_eq!(slave.cmd("digest big"), digest);
}

// ---------------------------------------------------------------------------------------------
// c. A live slave killed under load comes back, catches up and is live again.

#[test]
fn live_slave_killed_catches_up() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let flags = ["--file-length", "1048576"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let ss = NodeSpec::new(base.path(), "slave", &flags);
    let mut master = ms.master(1);
    let mut slave = ss.slave_of(&ms.uri());
    master.ok("wait-live 1 30000");
    master.ok("write q 200 4096 sync");

    // A long write runs on the master while the slave is killed and restarted.
    master.send("write q 3000 4096 sync");
    std::thread::sleep(Duration::from_millis(700));
    let st = slave.status();
    assert_eq!(st.get("link").str(), Some("live"), "{st:?}");
    slave.kill();
    let killed_at = data_files(&ms.dir).len();
    std::thread::sleep(Duration::from_millis(1500));
    let mut slave = ss.slave_of(&ms.uri());
    let a = master.expect_line("write q 3000 4096 sync");
    assert!(a.starts_with("OK 3000"), "{a}");
    master.ok("write q 200 4096 sync");
    let st = wait_caught_up(&mut master, 1, Duration::from_secs(60));
    let slave_st = wait_for(Duration::from_secs(10), "the slave live", || {
        let s = slave.status();
        (s.get("link").str() == Some("live")).then_some(s)
    });
    let me = &st.get("slaves").arr()[0];
    println!(
        "c: a live slave killed with {killed_at} data files on the master, restarted 1.5 s later; the master wrote on to {} data files; it sees the slave {} with lag {} at {}; the slave's own link {}, position {}",
        data_files(&ms.dir).len(),
        me.get("state").str().unwrap(),
        me.get("lag_bytes").u64(),
        pos(st.get("position")),
        slave_st.get("link").str().unwrap(),
        pos(slave_st.get("position"))
    );
    assert_eq!(me.get("state").str(), Some("live"));
    assert_eq!(me.get("lag_bytes").u64(), 0);
    assert_eq!(slave_st.get("position"), st.get("position"));
    let (differ, bytes) = differing_files(&ms.dir, &ss.dir);
    assert!(differ.is_empty(), "{differ:?}");
    let digest = master.cmd("digest q");
    master.kill();
    slave.ok("promote 2");
    assert_eq!(slave.cmd("digest q"), digest);
    println!(
        "c: {} files ({bytes} bytes) byte-identical, promoted slave has the master's 3400 ids ({digest}); done in {:.1?}",
        data_files(&ms.dir).len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// d. minimumReplicas 1, its only slave killed: writes wait for it, or time out whole.

#[test]
fn min_replicas_waits_for_restarted_slave_or_times_out() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let flags = ["--file-length", "1048576"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let ss = NodeSpec::new(base.path(), "slave", &flags);
    let mut master = ms.start(&[
        "--master",
        "1",
        "--min-replicas",
        "1",
        "--timeout-ms",
        "60000",
    ]);
    let mut slave = ss.slave_of(&ms.uri());
    master.ok("wait-live 1 30000");
    master.ok("write q 50 1000 sync");

    // Killed: a synchronous write waits (no answer), and completes once the slave is back.
    slave.kill();
    wait_for(Duration::from_secs(20), "the master notices", || {
        (master.status().get("live_slaves").u64() == 0).then_some(())
    });
    let began = Instant::now();
    master.send("write q 1 1000 sync");
    assert_eq!(
        master.recv(Duration::from_millis(1500)),
        None,
        "a synchronous write waits while the only slave is down"
    );
    let mut slave = ss.slave_of(&ms.uri());
    let a = master.expect_line("write q 1 1000 sync");
    let waited = began.elapsed();
    println!("d: with the slave down 1.5 s, a synchronous write waited {waited:.1?}, then: {a}");
    assert!(a.starts_with("OK 1"), "{a}");
    assert!(waited >= Duration::from_millis(1500));

    // A 500 ms timeout: the write fails with REPLICATION_TIMEOUT.
    master.ok("set-timeout 500");
    slave.kill();
    wait_for(Duration::from_secs(20), "the master notices", || {
        (master.status().get("live_slaves").u64() == 0).then_some(())
    });
    let before = ids_of(&master.cmd("ids q"));
    let began = Instant::now();
    let a = master.cmd("write q 1 300000 sync");
    let took = began.elapsed();
    println!("d: with a 500 ms timeout and no slave, after {took:.2?}: {a}");
    assert!(a.starts_with("ERR REPLICATION_TIMEOUT "), "{a}");
    assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(10));
    let failed = a.split_whitespace().nth(2).unwrap().to_owned();
    // The failed write is whole or absent (it is on the master's disk: whole), never torn: the
    // index has it or not, and every body reads back as written.
    let after = ids_of(&master.cmd("ids q"));
    let present = after.contains(&failed);
    assert!(after.starts_with(&before));
    assert_eq!(after.len(), before.len() + usize::from(present));
    let v = master.ok("verify q");
    println!(
        "d: the failed write {failed} is {} on the master; bodies verified: {v}",
        if present { "present, whole" } else { "absent" }
    );

    // The store stays usable: once the slave is back, synchronous writes succeed again.
    let mut slave = ss.slave_of(&ms.uri());
    master.ok("set-timeout 30000");
    master.ok("wait-live 1 30000");
    let a = master.ok("write q 20 1000 sync");
    println!("d: slave back: {a}");
    wait_caught_up(&mut master, 1, Duration::from_secs(30));
    let ids = master.cmd("ids q");

    // The master dies; restarted from its directory it has the same ids; so has the promoted
    // slave (the failed write reached it when it came back).
    master.kill();
    let mut again = ms.start(&["--master", "1"]);
    assert_eq!(
        again.cmd("ids q"),
        ids,
        "the master's store after a SIGKILL"
    );
    again.ok("verify q");
    drop(again);
    slave.ok("promote 2");
    assert_eq!(slave.cmd("ids q"), ids, "the promoted slave");
    slave.ok("verify q");
    println!(
        "d: {} ids identical on the restarted master and the promoted slave ({} has {failed}); done in {:.1?}",
        ids_of(&ids).len(),
        if ids_of(&ids).contains(&failed) { "each" } else { "neither" },
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// e. A misbehaving network between master and slave loses no acknowledged write.

#[test]
fn proxy_faults_lose_no_acknowledged_write() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let acks = base.path().join("acks");
    let flags = ["--file-length", "1048576"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let ss = NodeSpec::new(base.path(), "slave", &flags);
    let mut master = ms.start(&[
        "--master",
        "1",
        "--min-replicas",
        "1",
        "--timeout-ms",
        "3000",
        "--ack-log",
        acks.to_str().unwrap(),
    ]);
    let mut proxy = ProxyProc::start(ms.port);
    let proxy_uri = proxy.uri();
    let mut slave = ss.slave_of(&proxy_uri);
    master.ok("wait-live 1 30000");

    // The network misbehaves from another thread while this one writes.
    let chaos = std::thread::spawn(move || {
        // (commands, then how long that phase lasts in ms); calm phases let the slave,
        // whose reconnection backoff grows to 2 s, get back on the live stream.
        let phases: &[(&[&str], u64)] = &[
            (&["delay 20"], 2000),
            (&["delay 0", "drop 0.02"], 2000),
            (&["drop 0"], 2500),
            (&["cut"], 1500),
            (&["cut"], 1500),
            (&["cut"], 1500),
            (&["delay 5", "drop 0.01"], 2000),
            (&["drop 0", "delay 0"], 2500),
            // A short partition (bytes held, then delivered), then a slow link.
            (&["block"], 2000),
            (&["unblock", "delay 50"], 2000),
            // A partition longer than the idle timeout (5 s): both sides give the link up.
            (&["delay 0", "block"], 6000),
            (&["unblock"], 0),
        ];
        for (cmds, ms) in phases {
            for c in *cmds {
                proxy.cmd(c);
            }
            std::thread::sleep(Duration::from_millis(*ms));
        }
        let st = proxy.status();
        (proxy, st)
    });
    let (mut ok, mut timeouts, mut other) = (0u64, 0u64, Vec::new());
    let load = Instant::now();
    while !chaos.is_finished() {
        let a = master.cmd("write q 10 2048 sync");
        ok += written_by(&a);
        if a.starts_with("ERR REPLICATION_TIMEOUT") {
            timeouts += 1;
        } else if !a.starts_with("OK") {
            other.push(a);
        }
    }
    let (_proxy, pst) = chaos.join().unwrap();
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    let st = wait_caught_up(&mut master, 1, Duration::from_secs(60));
    let acked: Vec<String> = fs::read_to_string(&acks)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let master_ids = master.cmd("ids q");
    master.kill();
    slave.ok("promote 2");
    let slave_ids = slave.cmd("ids q");
    let on_slave: BTreeSet<String> = ids_of(&slave_ids).into_iter().collect();
    let missing: Vec<&String> = acked.iter().filter(|id| !on_slave.contains(*id)).collect();
    println!(
        "e: {:.1?} of synchronous writes through the proxy: {ok} acknowledged, {timeouts} timed out (REPLICATION_TIMEOUT); proxy: {} connections accepted, {} cut, {} dropped, {} bytes to the slave; master at {}; {} acknowledged ids checked on the promoted slave, {} missing; slave holds {} ids",
        load.elapsed(),
        pst.get("accepted").u64(),
        pst.get("cut").u64(),
        pst.get("dropped").u64(),
        pst.get("to_client").u64(),
        pos(st.get("position")),
        acked.len(),
        missing.len(),
        on_slave.len()
    );
    assert!(
        missing.is_empty(),
        "acknowledged but not on the slave: {missing:?}"
    );
    assert_eq!(
        acked.len() as u64,
        ok,
        "the ack log has every acknowledged write"
    );
    // The chaos happened: the link was broken and rebuilt several times.
    assert!(pst.get("accepted").u64() >= 4, "{pst:?}");
    assert!(
        pst.get("cut").u64() + pst.get("dropped").u64() >= 2,
        "{pst:?}"
    );
    assert_eq!(slave_ids, master_ids, "the slave has what the master had");
    slave.ok("verify q");
    println!("e: done in {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// f. A slave that cannot write (a full disk; a file size limit) leaves with the reason.

/// A tmpfs mounted for the test (root only), unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mounting a {size} tmpfs (running as root)");
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// The common part of both variants: `ss` is a slave whose writes fail past about 8 MiB;
/// `error` is what the operating system says then.
fn slave_that_cannot_write_leaves(base: &Path, ms: &NodeSpec, ss: &NodeSpec, error: &str) {
    let mut master = ms.master(1);
    let mut slave = ss.slave_of(&ms.uri());
    master.ok("wait-live 1 30000");
    // 16 MiB of synchronous writes (minimumReplicas 0): the slave fails half-way.
    let a = master.ok("write q 256 65536 sync");
    let left = wait_for(Duration::from_secs(30), "the slave leaves", || {
        let st = master.status();
        let s = st.get("slaves").arr().first()?.clone();
        let reason = s.get("reason").str().unwrap_or("").to_owned();
        (s.get("state").str() == Some("left") && reason.contains(error))
            .then_some((st.get("live_slaves").u64(), reason))
    });
    println!(
        "f: {a}; the master's status: live slaves {}, the slave left: {:?}",
        left.0, left.1
    );
    assert_eq!(left.0, 0);
    assert!(left.1.contains("cannot write"), "{}", left.1);
    let own = wait_for(Duration::from_secs(30), "the slave's own error", || {
        let st = slave.status();
        let e = st.get("last_error").str().unwrap_or("").to_owned();
        e.contains(error)
            .then(|| (st.get("link").str().unwrap_or("null").to_owned(), e))
    });
    println!(
        "f: the slave's own status: link {:?}, last error {:?}",
        own.0, own.1
    );

    // minimumReplicas 0: the master goes on.
    let a = master.ok("write q 10 1000 sync");
    println!("f: minimumReplicas 0: {a}");
    // minimumReplicas 1: synchronous writes time out.
    master.ok("set-min 1");
    master.ok("set-timeout 500");
    let a = master.cmd("write q 1 1000 sync");
    println!("f: minimumReplicas 1: {a}");
    assert!(a.starts_with("ERR REPLICATION_TIMEOUT"), "{a}");
    assert!(master.status().get("live_slaves").u64() == 0);
    let _ = base;
}

#[test]
fn slave_disk_full_leaves_with_reason() {
    if !is_root() {
        eprintln!(
            "slave_disk_full_leaves_with_reason skipped: mounting a tmpfs needs root (slave_file_size_limit_leaves_with_reason covers the non-root case)"
        );
        return;
    }
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    // A real full disk: the slave's directory on an 8 MiB tmpfs (the files are not
    // preallocated, so the disk fills with replicated bytes, not with zeros).
    let fs_ = Tmpfs::mount(&base.path().join("small"), "8m");
    let flags = ["--file-length", "33554432", "--preallocation", "none"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let mut ss = NodeSpec::new(base.path(), "slave", &flags);
    ss.dir = fs_.0.join("slave");
    slave_that_cannot_write_leaves(base.path(), &ms, &ss, "No space left on device");
    println!("f (tmpfs): done in {:.1?}", t0.elapsed());
}

#[test]
fn slave_file_size_limit_leaves_with_reason() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    // Without root: RLIMIT_FSIZE of 8 MiB on the slave's process. Its writes past 8 MiB of a
    // file fail with EFBIG (the node ignores SIGXFSZ): a real refusal by the kernel, at the same
    // place a full disk would refuse, though with another error than ENOSPC.
    let flags = ["--file-length", "33554432", "--preallocation", "none"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let mut ss = NodeSpec::new(base.path(), "slave", &flags);
    ss.fsize_limit = Some(8 * MIB);
    slave_that_cannot_write_leaves(base.path(), &ms, &ss, "File too large");
    println!("f (RLIMIT_FSIZE): done in {:.1?}", t0.elapsed());
}

/// A slave whose disk fills during its initial sync (root: a tmpfs). It never was in the
/// in-sync set; the master's status must still say why it does not get there, and the files of
/// its plan must not stay pinned against the master's GC while it fails again and again.
#[test]
fn slave_disk_full_during_initial_sync_leaves_with_reason() {
    if !is_root() {
        eprintln!(
            "slave_disk_full_during_initial_sync_leaves_with_reason skipped: mounting a tmpfs needs root"
        );
        return;
    }
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let fs_ = Tmpfs::mount(&base.path().join("small"), "8m");
    let flags = ["--file-length", "1048576"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let mut ss = NodeSpec::new(base.path(), "slave", &flags);
    ss.dir = fs_.0.join("slave");
    let mut master = ms.master(1);
    // 24 MiB of sealed files for an 8 MiB disk.
    master.ok("write q 3000 8192 async");
    master.ok("write q 1 10 sync");
    let mut slave = ss.slave_of(&ms.uri());
    let reason = wait_for(Duration::from_secs(30), "the master says why", || {
        let st = master.status();
        let s = st.get("slaves").arr().first()?.clone();
        let reason = s.get("reason").str().unwrap_or("").to_owned();
        (s.get("state").str() == Some("left") && reason.contains("No space left on device"))
            .then_some(reason)
    });
    println!("f: a slave whose disk filled during its initial sync left: {reason:?}");
    let own = slave.status();
    let own_error = own.get("last_error").str().unwrap_or("").to_owned();
    println!("f: its own status: last error {own_error:?}");
    assert!(own_error.contains("No space left on device"), "{own:?}");
    // Everything consumed: the master's GC deletes the files, although the slave keeps trying.
    let before = data_files(&ms.dir).len();
    master.ok("consume q 3001");
    let gc = wait_for(Duration::from_secs(20), "the GC deletes the files", || {
        let gc = master.ok("gc");
        (data_files(&ms.dir).len() <= 2).then_some(gc)
    });
    println!(
        "f: GC with the failing slave retrying: {before} data files -> {} ({gc}); done in {:.1?}",
        data_files(&ms.dir).len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// A partition during an initial sync: the slave notices the silent link (its transfer sessions
// time out after TRANSFER_IDLE, 60 s, as the master's do), reconnects once the partition heals,
// and ends byte-identical.

#[test]
fn partition_during_initial_sync_is_noticed() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let ms = NodeSpec::new(base.path(), "master", &[]);
    let ss = NodeSpec::new(base.path(), "slave", &[]);
    let mut master = ms.master(1);
    master.ok("write big 400 1000000 async");
    master.ok("write big 1 10 sync");
    let mut proxy = ProxyProc::start(ms.port);
    let mut slave = ss.slave_of(&proxy.uri());
    wait_for(Duration::from_secs(60), "the sync under way", || {
        let to_go = slave.status().get("bytes_to_go").u64();
        (to_go > 0 && to_go < 300 * MIB).then_some(())
    });
    proxy.cmd("block");
    let blocked = Instant::now();
    let to_go = slave.status().get("bytes_to_go").u64();
    let error = wait_for(Duration::from_secs(90), "the slave notices", || {
        slave.status().get("last_error").str().map(str::to_owned)
    });
    let noticed = blocked.elapsed();
    println!(
        "partition: blocked with {} MiB to go; the slave noticed after {noticed:.1?}: {error:?}",
        to_go >> 20
    );
    assert!(error.contains("timed out"), "{error}");
    assert!(noticed < Duration::from_secs(75), "{noticed:?}");
    proxy.cmd("unblock");
    wait_for(Duration::from_secs(120), "the slave live", || {
        (slave.status().get("link").str() == Some("live")).then_some(())
    });
    wait_caught_up(&mut master, 1, Duration::from_secs(60));
    let (differ, bytes) = differing_files(&ms.dir, &ss.dir);
    assert!(differ.is_empty(), "{differ:?}");
    println!(
        "partition: healed, the slave is live, {} MiB byte-identical; done in {:.1?}",
        bytes >> 20,
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// g. Failover: the master dies with writes its slave never got (the link was partitioned); the
// promoted slave writes on; the old master rejoins as its slave and converges: its divergent
// tail is cut, and it ends byte-identical with the new master's ids.

#[test]
fn failover_old_master_rejoins_and_converges() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let flags = ["--file-length", "1048576"];
    let a = NodeSpec::new(base.path(), "a", &flags);
    let b = NodeSpec::new(base.path(), "b", &flags);
    let mut na = a.master(1);
    let mut proxy = ProxyProc::start(a.port);
    let mut nb = b.slave_of(&proxy.uri());
    na.ok("wait-live 1 30000");
    na.ok("write q 500 4096 sync");
    wait_caught_up(&mut na, 1, Duration::from_secs(30));
    // Partitioned: what the master writes now (minimumReplicas 0) stays on its disk.
    proxy.cmd("block");
    na.ok("write q 300 4096 async");
    let lost = na.ok("write q 100 4096 sync");
    let a_st = na.status();
    na.kill();
    proxy.cmd("cut");
    nb.ok("promote 2");
    let b_st = nb.status();
    let b_ids = ids_of(&nb.cmd("ids q"));
    nb.ok("write q 700 3000 sync");
    // The old master comes back as a slave of the new one.
    let mut na = a.slave_of(&b.uri());
    let st = wait_caught_up(&mut nb, 1, Duration::from_secs(60));
    let (differ, bytes) = differing_files(&b.dir, &a.dir);
    let extra: Vec<String> = data_files(&a.dir)
        .difference(&data_files(&b.dir))
        .cloned()
        .collect();
    println!(
        "g: the old master died at {} ({lost} written during the partition), the slave was promoted at {} with {} ids and wrote on to {}; the old master rejoined: {} files differ, {} extra, {bytes} bytes compared",
        pos(a_st.get("position")),
        pos(b_st.get("position")),
        b_ids.len(),
        pos(st.get("position")),
        differ.len(),
        extra.len()
    );
    assert_eq!(
        b_ids.len(),
        500,
        "the partitioned writes did not reach the slave"
    );
    assert!(differ.is_empty(), "{differ:?}");
    assert!(extra.is_empty(), "{extra:?}");
    let ids = nb.cmd("ids q");
    nb.kill();
    na.ok("promote 3");
    assert_eq!(na.cmd("ids q"), ids);
    let v = na.ok("verify q");
    println!(
        "g: the old master, promoted again, has the new master's {} ids ({v}); done in {:.1?}",
        ids_of(&ids).len(),
        t0.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// h. A slave killed again and again at random moments (initial sync, catch-up, live) converges.

#[test]
fn slave_killed_repeatedly_converges() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let flags = ["--file-length", "16777216"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let ss = NodeSpec::new(base.path(), "slave", &flags);
    let mut master = ms.master(1);
    master.ok("write big 250 1000000 async");
    let mut slave = ss.slave_of(&ms.uri());
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("h: seed {seed}");
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut kills = Vec::new();
    master.send("write q 4000 4096 sync");
    for _ in 0..12 {
        let wait = 20 + next(800);
        std::thread::sleep(Duration::from_millis(wait));
        let st = slave.status();
        kills.push(format!("{wait}ms:{}", st.get("link").str().unwrap_or("?")));
        slave.kill();
        slave = ss.slave_of(&ms.uri());
    }
    let a = master.expect_line("write q 4000 4096 sync");
    assert!(a.starts_with("OK"), "{a}");
    wait_caught_up(&mut master, 1, Duration::from_secs(60));
    let (differ, bytes) = differing_files(&ms.dir, &ss.dir);
    println!("h: kills {kills:?}; {bytes} bytes compared, differ {differ:?}");
    assert!(differ.is_empty());
    let ids = master.cmd("digest q");
    let big = master.cmd("digest big");
    master.kill();
    slave.ok("promote 2");
    assert_eq!(slave.cmd("digest q"), ids);
    assert_eq!(slave.cmd("digest big"), big);
    slave.ok("verify q");
    slave.ok("verify big");
    println!("h: done in {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// i. The master killed under load and restarted (no failover): its slave follows it again.

#[test]
fn master_killed_and_restarted_slave_follows() {
    let t0 = Instant::now();
    let base = tempfile::tempdir().unwrap();
    let flags = ["--file-length", "1048576"];
    let ms = NodeSpec::new(base.path(), "master", &flags);
    let ss = NodeSpec::new(base.path(), "slave", &flags);
    let mut master = ms.master(1);
    let mut slave = ss.slave_of(&ms.uri());
    master.ok("wait-live 1 30000");
    let mut restarts = Vec::new();
    for round in 0..4 {
        master.send("write q 50000 4096 async");
        std::thread::sleep(Duration::from_millis(50 + 100 * round));
        master.kill();
        master = ms.master(1);
        let st = master.status();
        restarts.push(pos(st.get("position")));
        master.ok("write q 100 4096 sync");
    }
    let st = wait_caught_up(&mut master, 1, Duration::from_secs(60));
    let (differ, bytes) = differing_files(&ms.dir, &ss.dir);
    println!(
        "i: master restarted at {restarts:?}, ends at {}; {bytes} bytes compared, differ {differ:?}",
        pos(st.get("position"))
    );
    assert!(differ.is_empty());
    let ids = master.cmd("ids q");
    master.kill();
    slave.ok("promote 2");
    assert_eq!(slave.cmd("ids q"), ids);
    slave.ok("verify q");
    println!(
        "i: {} ids; done in {:.1?}",
        ids_of(&ids).len(),
        t0.elapsed()
    );
}

//! `kahadb-node`: one replication node (`kahadb::replication::node::Node`) as a process, driven
//! by a line protocol on standard input. An operator tool (start a master or a slave by hand,
//! watch its status, promote it) and the subject of the process-level fault tests
//! (`tests/replication_faults.rs`), which kill it with SIGKILL.
//!
//! ```text
//! kahadb-node --dir DIR --uri kdbr://HOST:PORT [--master EPOCH | --slave-of kdbr://HOST:PORT]
//!             [--min-replicas N] [--timeout-ms MS] [--sessions N] [--file-length BYTES]
//!             [--batch-size BYTES] [--preallocation zeros|sparse|none] [--cluster NAME]
//!             [--ack-log FILE] [--zookeeper HOST:PORT[,...] [--zk-path PATH]
//!             [--session-timeout-ms MS]]
//! ```
//!
//! With `--zookeeper` the node's role is decided by the ZooKeeper election (`docs/ELECTION.md`):
//! it joins the election at start and becomes master or a slave of the elected master on its
//! own; `--master`/`--slave-of` and the role commands are then refused by the election's
//! driver's next event, so do not mix them.
//!
//! Without `--master` or `--slave-of` the node starts stopped. Once started it prints
//! `READY <status JSON>`, then reads one command per line and answers each with one line:
//! a status JSON object, `OK ...`, or `ERR <CODE> <message>` (`CODE` is the library's error
//! code name, such as `REPLICATION_TIMEOUT`). End of input is `quit`.
//!
//! ```text
//! status                          the node's status as one JSON line
//! master EPOCH                    become master at EPOCH (a stopped node)
//! slave-of URI                    become a slave of the master at URI
//! promote EPOCH                   slave -> master at EPOCH
//! demote URI                      master -> slave of URI
//! stop                            stop being master or slave
//! set-min N                       minimumReplicas (takes effect at once)
//! set-timeout MS                  how long a synchronous write waits for its replicas
//! wait-live N MS                  wait up to MS for N live slaves: OK, or ERR TIMEOUT
//! write QUEUE N SIZE sync|async   add N messages of SIZE bytes, ids p:<k> with k counting on
//!                                 (from past the highest p:<k> in the store): OK n first last,
//!                                 or ERR at the first failed add (the writes before it stand)
//! consume QUEUE N                 remove the N oldest messages of QUEUE (synchronously)
//! gc                              checkpoint and clean up (data files no longer needed go)
//! count QUEUE                     COUNT messages bytes
//! ids QUEUE                       IDS n id... : every message id of QUEUE in store order
//! digest QUEUE                    DIGEST n crc: CRC-32 over the ids and sizes in store order
//! verify QUEUE                    read back every body: OK n, or ERR CORRUPT naming the first
//!                                 message whose body is not the one written for its id
//! quit                            stop the node (a master's store closes) and exit
//! ```
//!
//! `--ack-log FILE`: after each synchronous add that returned success, its id is appended to
//! FILE as one line with one write(2) on a file opened for appending: once the write returned,
//! the line survives a SIGKILL of this process (the kernel holds it), so a test can check that
//! no acknowledged message is missing after kills. It is not fsynced: it is a record of what
//! the node acknowledged, not a store.
//!
//! SIGXFSZ is ignored: a file size limit (`ulimit -f`) makes the writes past it fail with
//! EFBIG, reported like any other write failure, instead of killing the node.
//!
//! Log lines go to standard error, stamped with the time (`KAHADB_LOG` sets the level, default
//! `info`).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kahadb::election::{ElectionDriver, ZooKeeperConfig, ZooKeeperElector};
use kahadb::journal::Preallocation;
use kahadb::replication::node::{Node, NodeConfig};
use kahadb::store::codec::DestinationType;
use kahadb::store::state::DestKey;
use kahadb::testkit::{check_pattern_record, pattern_record};
use kahadb::{Error, ErrorCode, Result};
use std::sync::Arc;

const USAGE: &str = "usage: kahadb-node --dir DIR --uri kdbr://HOST:PORT [--master EPOCH | --slave-of kdbr://HOST:PORT]
                   [--min-replicas N] [--timeout-ms MS] [--sessions N] [--file-length BYTES]
                   [--batch-size BYTES] [--preallocation zeros|sparse|none] [--cluster NAME]
                   [--ack-log FILE] [--zookeeper HOST:PORT [--zk-path PATH] [--session-timeout-ms MS]]
then one command per line on standard input (one answer line each on standard output):
  status | master EPOCH | slave-of URI | promote EPOCH | demote URI | stop
  set-min N | set-timeout MS | wait-live N MS
  write QUEUE N SIZE sync|async | consume QUEUE N | gc
  count QUEUE | ids QUEUE | digest QUEUE | verify QUEUE | quit";

enum Start {
    Stopped,
    Master(u64),
    Slave(String),
}

struct Options {
    config: NodeConfig,
    start: Start,
    ack_log: Option<PathBuf>,
    /// The ZooKeeper election, when asked for.
    election: Option<ZooKeeperConfig>,
}

fn bad(what: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidArgument, what)
}

fn number<T: std::str::FromStr>(flag: &str, v: Option<&String>) -> Result<T> {
    v.and_then(|v| v.parse().ok())
        .ok_or_else(|| bad(format!("{flag} needs a number")))
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut dir = None;
    let mut uri = None;
    let mut start = Start::Stopped;
    let mut ack_log = None;
    let mut min = 0usize;
    let mut timeout_ms = None;
    let mut sessions = None;
    let mut file_length = None;
    let mut batch_size = None;
    let mut preallocation = None;
    let mut cluster = None;
    let mut zookeeper = None;
    let mut zk_path = None;
    let mut session_timeout = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--dir" => dir = it.next().map(PathBuf::from),
            "--uri" => uri = it.next().cloned(),
            "--master" => start = Start::Master(number(flag, it.next())?),
            "--slave-of" => {
                start = Start::Slave(
                    it.next()
                        .cloned()
                        .ok_or_else(|| bad("--slave-of needs a URI"))?,
                )
            }
            "--min-replicas" => min = number(flag, it.next())?,
            "--timeout-ms" => timeout_ms = Some(number::<u64>(flag, it.next())?),
            "--sessions" => sessions = Some(number::<usize>(flag, it.next())?),
            "--file-length" => file_length = Some(number::<u32>(flag, it.next())?),
            "--batch-size" => batch_size = Some(number::<u32>(flag, it.next())?),
            "--preallocation" => {
                preallocation = Some(match it.next().map(String::as_str) {
                    Some("zeros") => Preallocation::Zeros,
                    Some("sparse") => Preallocation::Sparse,
                    Some("none") => Preallocation::None,
                    _ => return Err(bad("--preallocation is zeros, sparse or none")),
                })
            }
            "--cluster" => cluster = it.next().cloned(),
            "--ack-log" => ack_log = it.next().map(PathBuf::from),
            "--zookeeper" => zookeeper = it.next().cloned(),
            "--zk-path" => zk_path = it.next().cloned(),
            "--session-timeout-ms" => session_timeout = Some(number::<u64>(flag, it.next())?),
            other => return Err(bad(format!("unknown option {other}"))),
        }
    }
    let dir = dir.ok_or_else(|| bad("--dir is required"))?;
    let uri = uri.ok_or_else(|| bad("--uri is required"))?;
    let mut config = NodeConfig::new(dir, uri);
    config.minimum_replicas = min;
    if let Some(t) = timeout_ms {
        config.replication_timeout = Duration::from_millis(t);
    }
    if let Some(s) = sessions {
        config.transfer_sessions = s;
    }
    let journal = &mut config.store.journal;
    if let Some(l) = file_length {
        journal.max_file_length = l;
        journal.max_batch_size = journal.max_batch_size.min(l);
    }
    if let Some(b) = batch_size {
        journal.max_batch_size = b;
    }
    if let Some(p) = preallocation {
        journal.preallocation = p;
    }
    if let Some(c) = cluster {
        config.cluster = c;
    }
    let election = match zookeeper {
        Some(connect) => {
            if !matches!(start, Start::Stopped) {
                return Err(bad(
                    "--zookeeper decides the role: --master and --slave-of cannot go with it",
                ));
            }
            let mut z = ZooKeeperConfig::new(&config.cluster, &config.uri);
            z.connect = connect;
            if let Some(p) = zk_path {
                z.root = p;
            }
            if let Some(t) = session_timeout {
                z.session_timeout = Duration::from_millis(t);
            }
            Some(z)
        }
        None if zk_path.is_some() || session_timeout.is_some() => {
            return Err(bad("--zk-path and --session-timeout-ms need --zookeeper"))
        }
        None => None,
    };
    Ok(Options {
        config,
        start,
        ack_log,
        election,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return if args.is_empty() {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    // SAFETY: setting a signal's disposition to "ignore" runs no handler code.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    init_logging();
    let options = match parse_options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kahadb-node: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut session = match Session::start(options) {
        Ok(s) => s,
        Err(e) => {
            println!("{}", err_line(&e));
            return ExitCode::FAILURE;
        }
    };
    println!("READY {}", session.node.status().to_json());
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            continue;
        }
        if words[0] == "quit" {
            break;
        }
        let answer = session.command(&words).unwrap_or_else(|e| err_line(&e));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{answer}");
        let _ = out.flush();
    }
    if let Some(mut d) = session.driver.take() {
        d.stop();
    }
    session.node.stop();
    println!("BYE");
    ExitCode::SUCCESS
}

/// Log lines on standard error, stamped with the wall clock (seconds since the epoch, to the
/// millisecond) so that the logs of several nodes can be merged; `KAHADB_LOG` sets the level.
struct StampedStderr;

impl log::Log for StampedStderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            // One write per line: lines of concurrent threads do not interleave.
            let line = format!(
                "{}.{:03} kahadb {} {}: {}\n",
                now.as_secs(),
                now.subsec_millis(),
                record.level(),
                record.target(),
                record.args()
            );
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

fn init_logging() {
    static LOGGER: StampedStderr = StampedStderr;
    let level = match std::env::var("KAHADB_LOG")
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
        .as_str()
    {
        "off" => log::LevelFilter::Off,
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => log::LevelFilter::Info,
    };
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

/// `ERR <CODE> <message>` on one line.
fn err_line(e: &Error) -> String {
    format!("ERR {} {}", e.code().name(), one_line(e.message()))
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

struct Session {
    node: Arc<Node>,
    /// The election driving the node (with `--zookeeper`).
    driver: Option<ElectionDriver>,
    /// The epoch at which the id counter was last brought past the store's ids.
    counted_at: u64,
    /// The next k of the ids `p:<k>` written.
    next: u64,
    ack_log: Option<File>,
}

impl Session {
    fn start(options: Options) -> Result<Session> {
        let ack_log = match &options.ack_log {
            Some(p) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| Error::io(format!("opening {}", p.display()), &e))?,
            ),
            None => None,
        };
        let node = Arc::new(Node::new(options.config)?);
        let driver = match options.election {
            Some(z) => Some(ElectionDriver::start(
                node.clone(),
                Box::new(ZooKeeperElector::new(z)?),
            )?),
            None => None,
        };
        let mut s = Session {
            node,
            driver,
            counted_at: 0,
            next: 0,
            ack_log,
        };
        match options.start {
            Start::Stopped => {}
            Start::Master(epoch) => {
                s.node.start_master(epoch)?;
                s.count_on();
            }
            Start::Slave(uri) => s.node.start_slave(&uri)?,
        }
        Ok(s)
    }

    /// Ids continue past the highest `p:<k>` of the store (after a promotion, say).
    fn count_on(&mut self) {
        let Ok(store) = self.node.store() else { return };
        let highest = store.read_state(|st| {
            st.destinations()
                .flat_map(|(_, d)| d.messages())
                .filter_map(|(_, m)| {
                    m.message_id
                        .to_string()
                        .strip_prefix("p:")
                        .and_then(|k| k.parse::<u64>().ok())
                })
                .max()
        });
        if let Some(h) = highest {
            self.next = self.next.max(h + 1);
        }
    }

    fn command(&mut self, w: &[&str]) -> Result<String> {
        let arg = |i: usize| -> Result<&str> {
            w.get(i)
                .copied()
                .ok_or_else(|| bad(format!("{} needs more arguments", w[0])))
        };
        let num = |i: usize| -> Result<u64> {
            arg(i)?
                .parse()
                .map_err(|_| bad(format!("{}: {:?} is not a number", w[0], w.get(i))))
        };
        match w[0] {
            "status" => Ok(self.node.status().to_json()),
            "master" => {
                self.node.start_master(num(1)?)?;
                self.count_on();
                Ok("OK master".into())
            }
            "promote" => {
                self.node.promote(num(1)?)?;
                self.count_on();
                Ok("OK master".into())
            }
            "slave-of" => {
                self.node.start_slave(arg(1)?)?;
                Ok("OK slave".into())
            }
            "demote" => {
                self.node.demote(arg(1)?)?;
                Ok("OK slave".into())
            }
            "stop" => {
                self.node.stop();
                Ok("OK stopped".into())
            }
            "set-min" => {
                self.node.set_minimum_replicas(num(1)? as usize);
                Ok("OK".into())
            }
            "set-timeout" => {
                self.node
                    .set_replication_timeout(Duration::from_millis(num(1)?));
                Ok("OK".into())
            }
            "wait-live" => {
                let (n, ms) = (num(1)? as usize, num(2)?);
                if self.node.wait_for_live_slaves(n, Duration::from_millis(ms)) {
                    Ok("OK".into())
                } else {
                    Ok(format!(
                        "ERR TIMEOUT fewer than {n} live slaves after {ms} ms"
                    ))
                }
            }
            "write" => {
                let sync = match arg(4)? {
                    "sync" => true,
                    "async" => false,
                    other => return Err(bad(format!("write: {other} is neither sync nor async"))),
                };
                self.write(arg(1)?, num(2)?, num(3)? as usize, sync)
            }
            "consume" => self.consume(arg(1)?, num(2)?),
            "gc" => {
                let r = self.node.store()?.checkpoint_and_gc()?;
                Ok(format!(
                    "OK deleted {:?} relocated {:?}",
                    r.deleted, r.relocated_files
                ))
            }
            "count" => {
                let (n, bytes) = self.node.store()?.counts(&queue(arg(1)?), None);
                Ok(format!("COUNT {n} {bytes}"))
            }
            "ids" => {
                let ids = self.ids(arg(1)?)?;
                let mut line = format!("IDS {}", ids.len());
                for (id, _) in &ids {
                    line.push(' ');
                    line.push_str(id);
                }
                Ok(line)
            }
            "digest" => {
                let ids = self.ids(arg(1)?)?;
                let mut h = crc32fast::Hasher::new();
                for (id, size) in &ids {
                    h.update(id.as_bytes());
                    h.update(&size.to_be_bytes());
                }
                Ok(format!("DIGEST {} {:08x}", ids.len(), h.finalize()))
            }
            "verify" => self.verify(arg(1)?),
            other => Err(bad(format!("unknown command {other:?} (see --help)"))),
        }
    }

    fn write(&mut self, q: &str, n: u64, size: usize, sync: bool) -> Result<String> {
        let store = self.node.store()?;
        // A node that became master since the last write (an election) counts on past the
        // ids its store holds.
        let epoch = self.node.epoch();
        if epoch != self.counted_at {
            self.counted_at = epoch;
            self.count_on();
        }
        let dest = queue(q);
        let first = self.next;
        for i in 0..n {
            let k = self.next;
            self.next += 1;
            let id = format!("p:{k}");
            if let Err(e) = store.add_message(&dest, &id, 4, false, pattern_record(k, size), sync) {
                return Ok(format!(
                    "ERR {} {id} failed after {i} of {n} written: {}",
                    e.code().name(),
                    one_line(e.message())
                ));
            }
            if sync {
                if let Some(f) = self.ack_log.as_mut() {
                    f.write_all(format!("{id}\n").as_bytes())
                        .map_err(|e| Error::io("appending to the ack log", &e))?;
                }
            }
        }
        Ok(format!(
            "OK {n} p:{first} p:{}",
            self.next.saturating_sub(1)
        ))
    }

    fn consume(&mut self, q: &str, n: u64) -> Result<String> {
        let store = self.node.store()?;
        let dest = queue(q);
        let ids: Vec<String> = store.read_state(|st| {
            st.destination(&dest)
                .map(|d| {
                    d.messages()
                        .take(n as usize)
                        .map(|(_, m)| m.message_id.to_string())
                        .collect()
                })
                .unwrap_or_default()
        });
        for id in &ids {
            store.remove_message(&dest, id, true)?;
        }
        Ok(format!("OK {}", ids.len()))
    }

    fn ids(&self, q: &str) -> Result<Vec<(String, u32)>> {
        let store = self.node.store()?;
        let dest = queue(q);
        Ok(store.read_state(|st| {
            st.destination(&dest)
                .map(|d| {
                    d.messages()
                        .map(|(_, m)| (m.message_id.to_string(), m.size))
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    fn verify(&self, q: &str) -> Result<String> {
        let store = self.node.store()?;
        let dest = queue(q);
        let ids = self.ids(q)?;
        for (id, size) in &ids {
            let body = store.get_message(&dest, id)?;
            let want = id.strip_prefix("p:").and_then(|k| k.parse::<u64>().ok());
            let got = body.as_deref().and_then(check_pattern_record);
            let ok = want.is_some()
                && got == want
                && body.as_ref().is_some_and(|b| b.len() == *size as usize);
            if !ok {
                return Err(Error::new(
                    ErrorCode::Corrupt,
                    format!("the body of {id} is not the one written for it"),
                ));
            }
        }
        Ok(format!("OK {}", ids.len()))
    }
}

fn queue(name: &str) -> DestKey {
    DestKey::new(DestinationType::Queue, name)
}

//! `kahadb-proxy`: a loopback TCP proxy that misbehaves on command, for fault tests (a slave's
//! link to its master in `tests/replication_faults.rs`; any client in front of any server).
//!
//! ```text
//! kahadb-proxy LISTEN_PORT TARGET_HOST:PORT
//! ```
//!
//! It listens on 127.0.0.1:LISTEN_PORT (0: a free port) and prints the port as its first line
//! on standard output; each accepted connection gets its own connection to the target, and
//! bytes are forwarded both ways in chunks (what one read returned, at most 64 KiB). Then it
//! reads one command per line on standard input and answers each with one line (`OK`, a
//! status JSON object, or `ERR <message>`); end of input is `quit`.
//!
//! ```text
//! delay MS     every chunk is forwarded MS milliseconds after it was read (a delay line: the
//!              latency grows, the throughput does not collapse); 0 turns it off
//! drop P       every chunk read closes its connection with probability P (0..1): TCP cannot
//!              lose bytes without breaking the stream, so a "drop" is the loss of the
//!              connection (both sides get a reset); 0 turns it off
//! cut          close every current connection now (reset)
//! block        a partition: nothing is forwarded and no connection is accepted (nor connected
//!              to the target) until unblock; bytes already read are held, not lost (at most
//!              16 MiB per direction and connection are read ahead, then TCP pushes back), so
//!              they arrive after unblock unless a peer gave up meanwhile; a peer's close or
//!              reset is held too (the other peer learns of it after unblock)
//! unblock      forward and accept again
//! seed N       seed the random choice of drops (default: from the clock)
//! status       {"port":..,"target":..,"connections":..,"accepted":..,"cut":..,"dropped":..,
//!               "to_target":BYTES,"to_client":BYTES,"delay_ms":..,"drop":P,"blocked":..}
//! quit         exit (connections are closed)
//! ```
//!
//! `to_target` and `to_client` count the bytes written to the target and to clients.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

const USAGE: &str = "usage: kahadb-proxy LISTEN_PORT TARGET_HOST:PORT
then on standard input: delay MS | drop P | cut | block | unblock | seed N | status | quit";

/// Largest chunk read at once.
const CHUNK: usize = 64 << 10;
/// Chunks read ahead of the writer, per direction and connection.
const READ_AHEAD: usize = 256;

struct Shared {
    port: u16,
    target: String,
    delay_ms: AtomicU64,
    /// Drop probability in millionths.
    drop_ppm: AtomicU64,
    blocked: AtomicBool,
    rng: Mutex<u64>,
    conns: Mutex<HashMap<u64, Arc<Notify>>>,
    next_conn: AtomicU64,
    accepted: AtomicU64,
    cut: AtomicU64,
    dropped: AtomicU64,
    to_target: AtomicU64,
    to_client: AtomicU64,
}

impl Shared {
    fn blocked(&self) -> bool {
        self.blocked.load(Ordering::SeqCst)
    }

    async fn wait_unblocked(&self) {
        while self.blocked() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether this chunk's connection is dropped.
    fn roll_drop(&self) -> bool {
        let ppm = self.drop_ppm.load(Ordering::Relaxed);
        if ppm == 0 {
            return false;
        }
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        // xorshift64*
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        let r = s.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (r >> 11) % 1_000_000 < ppm
    }

    fn status(&self) -> String {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner()).len();
        format!(
            "{{\"port\":{},\"target\":\"{}\",\"connections\":{conns},\"accepted\":{},\"cut\":{},\"dropped\":{},\"to_target\":{},\"to_client\":{},\"delay_ms\":{},\"drop\":{},\"blocked\":{}}}",
            self.port,
            self.target,
            self.accepted.load(Ordering::SeqCst),
            self.cut.load(Ordering::SeqCst),
            self.dropped.load(Ordering::SeqCst),
            self.to_target.load(Ordering::SeqCst),
            self.to_client.load(Ordering::SeqCst),
            self.delay_ms.load(Ordering::SeqCst),
            self.drop_ppm.load(Ordering::SeqCst) as f64 / 1e6,
            self.blocked()
        )
    }

    fn command(&self, w: &[&str]) -> String {
        let num = |i: usize| w.get(i).and_then(|v| v.parse::<f64>().ok());
        match (w[0], num(1)) {
            ("delay", Some(ms)) if ms >= 0.0 => {
                self.delay_ms.store(ms as u64, Ordering::SeqCst);
                "OK".into()
            }
            ("drop", Some(p)) if (0.0..=1.0).contains(&p) => {
                self.drop_ppm
                    .store((p * 1e6).round() as u64, Ordering::SeqCst);
                "OK".into()
            }
            ("seed", Some(n)) => {
                *self.rng.lock().unwrap_or_else(|p| p.into_inner()) = (n as u64) | 1;
                "OK".into()
            }
            ("cut", _) => {
                let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
                for n in conns.values() {
                    n.notify_one();
                }
                format!("OK {}", conns.len())
            }
            ("block", _) => {
                self.blocked.store(true, Ordering::SeqCst);
                "OK".into()
            }
            ("unblock", _) => {
                self.blocked.store(false, Ordering::SeqCst);
                "OK".into()
            }
            ("status", _) => self.status(),
            _ => format!("ERR unknown or malformed command {:?}", w.join(" ")),
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (Some(port), Some(target), 2) = (
        args.first().and_then(|p| p.parse::<u16>().ok()),
        args.get(1),
        args.len(),
    ) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kahadb-proxy: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match rt.block_on(TcpListener::bind(("127.0.0.1", port))) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("kahadb-proxy: listening on 127.0.0.1:{port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ u64::from(std::process::id());
    let shared = Arc::new(Shared {
        port,
        target: target.clone(),
        delay_ms: AtomicU64::new(0),
        drop_ppm: AtomicU64::new(0),
        blocked: AtomicBool::new(false),
        rng: Mutex::new(seed | 1),
        conns: Mutex::new(HashMap::new()),
        next_conn: AtomicU64::new(1),
        accepted: AtomicU64::new(0),
        cut: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        to_target: AtomicU64::new(0),
        to_client: AtomicU64::new(0),
    });
    println!("{port}");
    let _ = std::io::stdout().flush();
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                let words: Vec<&str> = line.split_whitespace().collect();
                if words.is_empty() {
                    continue;
                }
                if words[0] == "quit" {
                    break;
                }
                let answer = shared.command(&words);
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{answer}");
                let _ = out.flush();
            }
            std::process::exit(0);
        });
    }
    rt.block_on(accept_loop(listener, shared));
    ExitCode::FAILURE
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        shared.wait_unblocked().await;
        let client = match listener.accept().await {
            Ok((c, _)) => c,
            Err(e) => {
                eprintln!("kahadb-proxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(connection(client, shared.clone()));
    }
}

/// How a direction of a connection ended.
enum End {
    /// The reader saw the end of its stream and everything read was written.
    Eof,
    /// A read or write failed (the peer closed or reset).
    Failed,
    /// Dropped at random.
    Dropped,
}

async fn connection(client: TcpStream, shared: Arc<Shared>) {
    // A connection accepted just before a block waits, unconnected, like the rest.
    shared.wait_unblocked().await;
    let target = match shared.target.parse::<SocketAddr>() {
        Ok(a) => TcpStream::connect(a).await,
        Err(_) => TcpStream::connect(shared.target.as_str()).await,
    };
    let Ok(target) = target else {
        let _ = client.set_zero_linger();
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = target.set_nodelay(true);
    let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
    let cut = Arc::new(Notify::new());
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, cut.clone());
    let (mut cr, mut cw) = client.into_split();
    let (mut tr, mut tw) = target.into_split();
    let (reset, cut_now) = {
        let up = pump(&mut cr, &mut tw, &shared, &shared.to_target);
        let down = pump(&mut tr, &mut cw, &shared, &shared.to_client);
        tokio::pin!(up, down);
        tokio::select! {
            e = &mut up => (!matches!(e, End::Eof), false),
            e = &mut down => (!matches!(e, End::Eof), false),
            _ = cut.notified() => {
                shared.cut.fetch_add(1, Ordering::SeqCst);
                (true, true)
            }
        }
    };
    if !cut_now {
        // A partition holds the news that a peer closed as it holds bytes.
        shared.wait_unblocked().await;
    }
    if reset {
        // Connection loss: both peers get a reset, not an orderly end.
        let _ = cw.as_ref().set_zero_linger();
        let _ = tw.as_ref().set_zero_linger();
    }
    shared
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&id);
    drop((cr, cw, tr, tw));
}

/// Forwards one direction through a delay line until its end.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    shared: &Shared,
    counter: &AtomicU64,
) -> End {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(READ_AHEAD);
    let reading = async move {
        let mut buf = vec![0u8; CHUNK];
        let end = loop {
            let n = match from.read(&mut buf).await {
                Ok(0) => break End::Eof,
                Ok(n) => n,
                Err(_) => break End::Failed,
            };
            if shared.roll_drop() {
                shared.dropped.fetch_add(1, Ordering::SeqCst);
                break End::Dropped;
            }
            let delay = Duration::from_millis(shared.delay_ms.load(Ordering::SeqCst));
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .await
                .is_err()
            {
                break End::Failed;
            }
        };
        // The writer drains what is queued, then sees the end.
        drop(tx);
        end
    };
    let writing = async {
        while let Some((due, data)) = rx.recv().await {
            shared.wait_unblocked().await;
            tokio::time::sleep_until(due).await;
            if to.write_all(&data).await.is_err() {
                return End::Failed;
            }
            counter.fetch_add(data.len() as u64, Ordering::SeqCst);
        }
        End::Eof
    };
    tokio::pin!(reading, writing);
    tokio::select! {
        e = &mut reading => match e {
            // Everything read is written before the end is passed on.
            End::Eof => writing.await,
            other => other,
        },
        e = &mut writing => e,
    }
}

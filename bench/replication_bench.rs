//! Journal-level replication benchmark, all nodes in one process over loopback, each node in a
//! directory of its own under `--dir`.
//!
//! `cargo bench --bench replication_bench -- --case writes --mode none|min1|min2 --seconds S --dir DIR`
//! runs 8 writer threads of synchronous 1 KiB store writes for S seconds (after a warm-up) on a
//! master that is not replicated (`none`), or waits for `minimumReplicas` 1 with one slave
//! (`min1`) or 2 with two slaves (`min2`); prints one JSON line
//! {"bench":"writes","mode":..,"msgs_per_sec":..,"p50_us":..,"p99_us":..,"per_batch":..}.
//!
//! `cargo bench --bench replication_bench -- --case sync --gib G --runs R --dir DIR`
//! builds a master journal of G GiB of sealed files once (64 KiB records), then runs R rounds of
//! an initial sync to an empty slave directory with 1 session, then with 4; prints one JSON line
//! per sync {"bench":"sync","sessions":..,"bytes":..,"seconds":..,"mb_per_sec":..}.
//!
//! `bench/replication.sh` runs both and writes bench/results/replication.{md,json}.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kahadb::journal::{Journal, JournalConfig};
use kahadb::replication::live::{run_slave, serve_master, Feed, Slaves};
use kahadb::replication::net::{serve, Conn, Identity, KdbrUri};
use kahadb::replication::sync::{initial_sync, sealed_files, DEFAULT_CHUNK};
use kahadb::replication::Purpose;
use kahadb::store::codec::DestinationType;
use kahadb::store::state::DestKey;
use kahadb::store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// Writer threads of the `writes` case.
const WRITERS: usize = 8;
/// Message body of the `writes` case.
const BODY: usize = 1024;
/// Record size the `sync` case builds its journal from.
const SYNC_RECORD: usize = 64 << 10;
/// Writes before the measured window starts (slaves attached, caches warm).
const WARM_UP: Duration = Duration::from_secs(1);

struct Args {
    case: String,
    mode: String,
    seconds: f64,
    gib: f64,
    runs: usize,
    dir: PathBuf,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        case: "writes".into(),
        mode: "none".into(),
        seconds: 5.0,
        gib: 1.0,
        runs: 3,
        dir: PathBuf::from("target/bench-replication"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--case" => a.case = v()?,
            "--mode" => a.mode = v()?,
            "--seconds" => a.seconds = v()?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "--gib" => a.gib = v()?.parse().map_err(|e| format!("--gib: {e}"))?,
            "--runs" => a.runs = v()?.parse().map_err(|e| format!("--runs: {e}"))?,
            "--dir" => a.dir = PathBuf::from(v()?),
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if !positive(a.seconds) || !positive(a.gib) || a.runs == 0 {
        return Err("--seconds, --gib and --runs must be positive".into());
    }
    Ok(a)
}

fn die(what: &str, e: impl Display) -> ! {
    eprintln!("replication bench: {what}: {e}");
    std::process::exit(1);
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn identity(node: &str) -> Identity {
    Identity {
        cluster: "bench".into(),
        node: node.into(),
        epoch: Arc::new(AtomicU64::new(1)),
    }
}

/// A runtime standing for one node's replication threads.
fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die("starting a runtime", e))
}

/// Serves the journal in `dir` as a master on a loopback port; returns its address.
fn start_master(rt: &Runtime, dir: &Path, journal: &Journal, slaves: Arc<Slaves>) -> KdbrUri {
    let feed = Feed::install(journal);
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| die("listening on loopback", e));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| die("reading the listening address", e))
        .port();
    let dir = dir.to_path_buf();
    rt.spawn(serve(
        listener,
        identity("master"),
        move |conn: Conn, node, purpose: Purpose| {
            let (dir, feed, slaves) = (dir.clone(), feed.clone(), slaves.clone());
            async move {
                let _ = serve_master(conn, node, purpose, dir, feed, slaves).await;
            }
        },
    ));
    KdbrUri::parse(&format!("kdbr://127.0.0.1:{port}"))
        .unwrap_or_else(|e| die("the master's address", e))
}

fn fresh_dir(dir: &Path) {
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .unwrap_or_else(|e| die(&format!("removing {}", dir.display()), e));
    }
    std::fs::create_dir_all(dir).unwrap_or_else(|e| die(&format!("creating {}", dir.display()), e));
}

/// Flushes everything dirty, so that earlier writeback does not land on the next measurement.
fn settle() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Synchronous 1 KiB writes from 8 threads, replicated to `slaves` slaves with
/// `minimumReplicas` equal to that number (0: not replicated).
fn writes(args: &Args) {
    let replicas = match args.mode.as_str() {
        "none" => 0,
        "min1" => 1,
        "min2" => 2,
        other => die("--mode", format!("unknown mode {other}")),
    };
    fresh_dir(&args.dir);
    let master_dir = args.dir.join("master");
    let config = StoreConfig::default();
    let jconfig = config.journal;
    let (store, _) =
        Store::open(&master_dir, config).unwrap_or_else(|e| die("opening the master store", e));
    let store = Arc::new(store);
    let master_rt = runtime("master");
    let mut slave_rts = Vec::new();
    let stopping = Arc::new(AtomicBool::new(false));
    let slaves = Arc::new(Slaves::new(replicas, Duration::from_secs(30)));
    if replicas > 0 {
        let uri = start_master(&master_rt, &master_dir, store.journal(), slaves.clone());
        for k in 1..=replicas {
            let rt = runtime(&format!("slave-{k}"));
            let (uri, dir, stopping) = (
                uri.clone(),
                args.dir.join(format!("slave-{k}")),
                stopping.clone(),
            );
            rt.spawn(async move {
                let why =
                    run_slave(&uri, &identity(&format!("slave-{k}")), &dir, 4, &jconfig).await;
                if !stopping.load(Ordering::SeqCst) {
                    eprintln!("replication bench: slave-{k} stopped early: {why}");
                }
            });
            slave_rts.push(rt);
        }
        let t = Instant::now();
        while slaves.status().len() < replicas {
            if t.elapsed() > Duration::from_secs(30) {
                die(
                    "attaching slaves",
                    format!(
                        "only {} of {replicas} live after 30 s",
                        slaves.status().len()
                    ),
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        store.set_replication(Some(slaves.clone()));
    }

    let queue = DestKey::new(DestinationType::Queue, "bench");
    let from = Instant::now() + WARM_UP;
    let window = Duration::from_secs_f64(args.seconds);
    let until = from + window;
    let before = store.journal().stats();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (store, queue) = (&store, &queue);
                s.spawn(move || {
                    let mut lat = Vec::new();
                    let mut i = 0u64;
                    loop {
                        let t = Instant::now();
                        if t >= until {
                            break;
                        }
                        if let Err(e) = store.add_message(
                            queue,
                            &format!("p{w}:{i}"),
                            4,
                            false,
                            vec![0x5au8; BODY],
                            true,
                        ) {
                            die("a synchronous write", e);
                        }
                        i += 1;
                        // Only writes started within the window count.
                        if t >= from {
                            lat.push(t.elapsed().as_secs_f64() * 1e6);
                        }
                    }
                    lat
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let after = store.journal().stats();
    stopping.store(true, Ordering::SeqCst);
    store.set_replication(None);
    if let Err(e) = store.close() {
        die("closing the master store", e);
    }
    for rt in slave_rts {
        rt.shutdown_timeout(Duration::from_secs(5));
    }
    master_rt.shutdown_timeout(Duration::from_secs(5));
    latencies.sort_by(f64::total_cmp);
    let records = after.records - before.records;
    let batches = (after.batches - before.batches).max(1);
    let per_batch = records as f64 / batches as f64;
    eprintln!(
        "replication bench: {}: {} writes in the window, {:.1} records per batch, {} syncs",
        args.mode,
        latencies.len(),
        per_batch,
        after.syncs - before.syncs
    );
    println!(
        "{{\"bench\":\"writes\",\"mode\":\"{}\",\"msgs_per_sec\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"per_batch\":{:.2},\"writes\":{}}}",
        args.mode,
        latencies.len() as f64 / window.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        per_batch,
        latencies.len()
    );
    let _ = std::fs::remove_dir_all(&args.dir);
}

/// Initial sync of a `--gib` GiB journal to an empty directory, 1 and 4 sessions alternately.
fn initial_syncs(args: &Args) {
    fresh_dir(&args.dir);
    let master_dir = args.dir.join("master");
    let slave_dir = args.dir.join("slave");
    let config = JournalConfig::default();
    let journal =
        Journal::open(&master_dir, config).unwrap_or_else(|e| die("opening the master journal", e));
    let wanted =
        (args.gib * f64::from(1u32 << 30) / f64::from(config.max_file_length)).ceil() as usize;
    eprintln!(
        "replication bench: building a master journal of {wanted} sealed files of {} MiB",
        config.max_file_length >> 20
    );
    let record = vec![0x5au8; SYNC_RECORD];
    let t = Instant::now();
    // Sealed files are all but the newest.
    while journal.data_file_ids().len() <= wanted {
        if let Err(e) = journal.append(&record, false) {
            die("building the master journal", e);
        }
    }
    journal
        .sync()
        .unwrap_or_else(|e| die("syncing the master journal", e));
    let expected: u64 = sealed_files(&master_dir)
        .unwrap_or_else(|e| die("listing the master's sealed files", e))
        .iter()
        .map(|(_, len)| len)
        .sum();
    eprintln!(
        "replication bench: built {:.2} GiB of sealed files in {:.1} s",
        expected as f64 / f64::from(1u32 << 30),
        t.elapsed().as_secs_f64()
    );

    let master_rt = runtime("master");
    let slave_rt = runtime("slave");
    let uri = start_master(
        &master_rt,
        &master_dir,
        &journal,
        Arc::new(Slaves::default()),
    );
    let me = identity("slave");
    for run in 1..=args.runs {
        for sessions in [1usize, 4] {
            if slave_dir.exists() {
                std::fs::remove_dir_all(&slave_dir)
                    .unwrap_or_else(|e| die("removing the slave directory", e));
            }
            settle();
            let t = Instant::now();
            let report = slave_rt
                .block_on(initial_sync(&uri, &me, &slave_dir, sessions, DEFAULT_CHUNK))
                .unwrap_or_else(|e| die("initial sync", e));
            let seconds = t.elapsed().as_secs_f64();
            if report.bytes_fetched != expected {
                die(
                    "initial sync",
                    format!(
                        "fetched {} bytes, the master has {expected}",
                        report.bytes_fetched
                    ),
                );
            }
            let mb_per_sec = report.bytes_fetched as f64 / 1e6 / seconds;
            eprintln!(
                "replication bench: sync round {run} of {}, {sessions} session(s): {:.2} s, {mb_per_sec:.0} MB/s",
                args.runs, seconds
            );
            println!(
                "{{\"bench\":\"sync\",\"sessions\":{sessions},\"bytes\":{},\"seconds\":{seconds:.3},\"mb_per_sec\":{mb_per_sec:.1}}}",
                report.bytes_fetched
            );
        }
    }
    slave_rt.shutdown_timeout(Duration::from_secs(5));
    master_rt.shutdown_timeout(Duration::from_secs(5));
    if let Err(e) = journal.close() {
        die("closing the master journal", e);
    }
    let _ = std::fs::remove_dir_all(&args.dir);
}

fn main() {
    let args = parse().unwrap_or_else(|e| {
        eprintln!("replication bench: {e}");
        std::process::exit(2);
    });
    match args.case.as_str() {
        "writes" => writes(&args),
        "sync" => initial_syncs(&args),
        other => {
            eprintln!("replication bench: unknown case {other}");
            std::process::exit(2);
        }
    }
}

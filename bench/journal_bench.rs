//! Journal append benchmark, Rust side (the Java side is `dev.kahadb.bench.JournalBench`).
//!
//! `cargo bench --bench journal_bench -- --case sync1|sync8|async1 --records N --size BYTES --dir DIR
//! [--prealloc zeros|sparse|none]`
//! prints one JSON line: {"impl":"kahadb-rust","case":..,"ops_per_sec":..,"p50_us":..,"p99_us":..}
//! `bench/journal.sh` runs it next to the Java drivers and fio and writes bench/results/.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use kahadb::journal::{Journal, JournalConfig, Preallocation};

struct Args {
    case: String,
    records: usize,
    size: usize,
    dir: PathBuf,
    prealloc: Preallocation,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        case: "sync1".into(),
        records: 20_000,
        size: 1024,
        dir: PathBuf::from("target/bench-journal"),
        prealloc: Preallocation::Zeros,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--case" => a.case = v()?,
            "--records" => a.records = v()?.parse().map_err(|e| format!("--records: {e}"))?,
            "--size" => a.size = v()?.parse().map_err(|e| format!("--size: {e}"))?,
            "--dir" => a.dir = PathBuf::from(v()?),
            "--prealloc" => {
                a.prealloc = match v()?.as_str() {
                    "zeros" => Preallocation::Zeros,
                    "sparse" => Preallocation::Sparse,
                    "none" => Preallocation::None,
                    other => return Err(format!("--prealloc: unknown strategy {other}")),
                }
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(a)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("journal bench: {e}");
            std::process::exit(2);
        }
    };
    let _ = std::fs::remove_dir_all(&args.dir);
    let config = JournalConfig {
        preallocation: args.prealloc,
        ..JournalConfig::default()
    };
    let journal = match Journal::open(&args.dir, config) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            eprintln!("journal bench: {e}");
            std::process::exit(1);
        }
    };
    let payload = vec![0x5au8; args.size];
    let (writers, sync) = match args.case.as_str() {
        "sync1" => (1, true),
        "sync8" => (8, true),
        "async1" => (1, false),
        other => {
            eprintln!("journal bench: unknown case {other}");
            std::process::exit(2);
        }
    };
    // Warm-up: a few hundred appends, not counted.
    for _ in 0..500 {
        if let Err(e) = journal.append(&payload, sync) {
            eprintln!("journal bench: {e}");
            std::process::exit(1);
        }
    }
    let per_writer = args.records / writers;
    let started = Instant::now();
    let mut latencies: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|_| {
                let j = journal.clone();
                let p = &payload;
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(if sync { per_writer } else { 0 });
                    for _ in 0..per_writer {
                        let t = Instant::now();
                        if let Err(e) = j.append(p, sync) {
                            eprintln!("journal bench: {e}");
                            std::process::exit(1);
                        }
                        if sync {
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
    if !sync {
        // The asynchronous run ends when everything is on disk.
        if let Err(e) = journal.sync() {
            eprintln!("journal bench: {e}");
            std::process::exit(1);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = journal.stats();
    eprintln!(
        "journal bench: {} records in {} batches ({:.1} per batch), {} syncs",
        stats.records,
        stats.batches,
        stats.records as f64 / stats.batches.max(1) as f64,
        stats.syncs
    );
    let _ = journal.close();
    latencies.sort_by(f64::total_cmp);
    let total = per_writer * writers;
    let impl_name = match args.prealloc {
        Preallocation::Zeros => "kahadb-rust",
        Preallocation::Sparse => "kahadb-rust-sparse",
        Preallocation::None => "kahadb-rust-noprealloc",
    };
    let pct = |p: f64| {
        if sync {
            format!("{:.1}", percentile(&latencies, p))
        } else {
            "null".to_string()
        }
    };
    println!(
        "{{\"impl\":\"{impl_name}\",\"case\":\"{}\",\"ops_per_sec\":{:.1},\"p50_us\":{},\"p99_us\":{},\"records\":{}}}",
        args.case,
        total as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        total
    );
    let _ = std::fs::remove_dir_all(&args.dir);
}

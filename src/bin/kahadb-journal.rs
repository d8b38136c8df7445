//! `kahadb-journal`: a small tool around the kahadb-rs journal.
//!
//! ```text
//! kahadb-journal demo   [DIR]                      append, read back and iterate a few thousand records
//! kahadb-journal append DIR COUNT SIZE [--async] [--max-file-length N]
//!                                                   append COUNT records of SIZE bytes, print "ACK file offset size n" per synced append
//! kahadb-journal dump   DIR                        print every record's location and length
//! kahadb-journal verify DIR                        iterate everything, report records, bytes and corruption
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kahadb::journal::{Journal, JournalConfig};
use kahadb::testkit::pattern_record as record;
use kahadb::Result;

fn usage() -> ExitCode {
    eprintln!(
        "usage:\n  kahadb-journal demo [DIR]\n  kahadb-journal append DIR COUNT SIZE [--async] [--max-file-length N]\n  kahadb-journal dump DIR\n  kahadb-journal verify DIR"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(args.get(1).map(PathBuf::from)),
        Some("append") if args.len() >= 4 => append(&args[1..]),
        Some("dump") if args.len() == 2 => dump(PathBuf::from(&args[1])),
        Some("verify") if args.len() == 2 => verify(PathBuf::from(&args[1])),
        _ => return usage(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kahadb-journal: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("data/journal-demo"));
    println!(
        "kahadb-rs {} journal demo in {}",
        kahadb::VERSION,
        dir.display()
    );
    let journal = Journal::open(&dir, JournalConfig::default())?;
    let report = journal.recovery_report();
    println!("recovered: {}", report.summary());
    let before = journal.cursor(None).count();
    let n = 5000u64;
    let started = Instant::now();
    let mut locations = Vec::new();
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let j = &journal;
                s.spawn(move || -> Result<Vec<_>> {
                    let mut out = Vec::new();
                    for i in 0..n / 4 {
                        let k = t * (n / 4) + i;
                        out.push((k, j.append(&record(k, 1024), true)?));
                    }
                    Ok(out)
                })
            })
            .collect();
        for h in handles {
            let part = h.join().map_err(|_| {
                kahadb::Error::new(kahadb::ErrorCode::Internal, "writer panicked")
            })??;
            locations.extend(part);
        }
        Ok(())
    })?;
    let elapsed = started.elapsed();
    println!(
        "appended {n} synchronous 1 KiB records from 4 threads in {:.2?} ({:.0} records/s)",
        elapsed,
        n as f64 / elapsed.as_secs_f64()
    );
    for (k, loc) in &locations {
        if journal.read(*loc)? != record(*k, 1024) {
            return Err(kahadb::Error::new(
                kahadb::ErrorCode::Corrupt,
                format!("record {k} at {loc} read back wrong"),
            ));
        }
    }
    println!("read back all {n} records by location: OK");
    let total = journal.cursor(None).count();
    println!(
        "cursor sees {total} records ({before} from earlier runs); data files: {:?}",
        journal.data_file_ids()
    );
    journal.close()?;
    println!("closed; run it again to see recovery pick up where it stopped");
    Ok(())
}

fn append(args: &[String]) -> Result<()> {
    let bad = |what: &str| kahadb::Error::new(kahadb::ErrorCode::InvalidArgument, what.to_string());
    let dir = PathBuf::from(&args[0]);
    let count: u64 = args[1].parse().map_err(|_| bad("COUNT must be a number"))?;
    let size: usize = args[2].parse().map_err(|_| bad("SIZE must be a number"))?;
    let mut sync = true;
    let mut config = JournalConfig::default();
    let mut rest = args[3..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--async" => sync = false,
            "--max-file-length" => {
                config.max_file_length = rest
                    .next()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| bad("--max-file-length needs a number"))?;
                config.max_batch_size = config.max_batch_size.min(config.max_file_length);
            }
            other => return Err(bad(&format!("unknown option {other}"))),
        }
    }
    let journal = Journal::open(&dir, config)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    for n in 0..count {
        let loc = journal.append(&record(n, size.max(8)), sync)?;
        if sync {
            // Printed only after the append returned: the parent trusts exactly these.
            let _ = writeln!(out, "ACK {} {} {} {n}", loc.file_id, loc.offset, loc.size);
            let _ = out.flush();
        }
    }
    journal.close()
}

fn dump(dir: PathBuf) -> Result<()> {
    let journal = Journal::open(&dir, JournalConfig::default())?;
    for item in journal.cursor(None) {
        let (loc, data) = item?;
        println!("{loc}\t{} bytes", data.len());
    }
    journal.close()
}

fn verify(dir: PathBuf) -> Result<()> {
    let journal = Journal::open(&dir, JournalConfig::default())?;
    println!("recovery: {}", journal.recovery_report().summary());
    let mut cursor = journal.cursor(None);
    let (mut records, mut bytes) = (0u64, 0u64);
    while let Some((_, data)) = cursor.next_record()? {
        records += 1;
        bytes += data.len() as u64;
    }
    println!(
        "{records} records, {bytes} payload bytes, {} corrupt range(s) skipped, data files {:?}",
        cursor.skipped().len(),
        journal.data_file_ids()
    );
    journal.close()
}

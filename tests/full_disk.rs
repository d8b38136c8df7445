//! A real full disk: a small tmpfs, filled up while the journal appends. The affected appends
//! fail with NO_SPACE, nothing acknowledged is lost, and appends resume once room is made.
//! Mounting needs root: as root the test must run; otherwise it says it was skipped.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use kahadb::journal::{Journal, JournalConfig, Location, Preallocation};
use kahadb::testkit::{check_pattern_record, pattern_record};
use kahadb::ErrorCode;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap().keep();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` with a filler file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = File::create(&path).unwrap();
    let chunk = vec![1u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    path
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and touches no memory.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn full_disk_fails_affected_appends_and_recovers() {
    if !is_root() {
        eprintln!("full_disk test skipped: mounting a tmpfs needs root");
        return;
    }
    for preallocation in [
        Preallocation::Zeros,
        Preallocation::Sparse,
        Preallocation::None,
    ] {
        let fs_ = Tmpfs::mount("1m").expect("mounting a 1 MiB tmpfs (running as root)");
        let dir = fs_.0.join("journal");
        let cfg = JournalConfig {
            max_file_length: 64 * 1024,
            max_batch_size: 16 * 1024,
            preallocation,
            ..JournalConfig::default()
        };
        let j = Journal::open(&dir, cfg).unwrap();
        let mut acked: Vec<(Location, Vec<u8>)> = Vec::new();
        for n in 0..10u64 {
            let d = pattern_record(n, 1000);
            acked.push((j.append(&d, true).unwrap(), d));
        }
        let filler = fill(&fs_.0);
        // Append until the disk-full error shows; it must show within the space there was.
        let mut failures = 0;
        let mut n = 10u64;
        while failures < 5 && n < 2000 {
            let d = pattern_record(n, 1000);
            match j.append(&d, true) {
                Ok(loc) => acked.push((loc, d)),
                Err(e) => {
                    assert_eq!(e.code(), ErrorCode::NoSpace, "{preallocation:?}: {e}");
                    assert!(e.message().contains("No space"), "{e}");
                    failures += 1;
                }
            }
            n += 1;
        }
        assert_eq!(failures, 5, "{preallocation:?}: the disk never filled");
        // Asynchronous appends on the full disk: their batches fail after they returned.
        // Reading them back must give the record or an error, never a crash (no read of a
        // failed, unpadded range through the memory map).
        for k in 0..20u64 {
            let d = pattern_record(100_000 + k, 3000);
            if let Ok(loc) = j.append(&d, false) {
                let _ = j.sync();
                if let Ok(back) = j.read(loc) {
                    assert_eq!(back, d);
                }
            }
        }
        let _ = j.sync(); // reports (once) the lost asynchronous appends
                          // Everything acknowledged is still readable.
        for (loc, d) in &acked {
            assert_eq!(&j.read(*loc).unwrap(), d);
        }
        // Make room: appends resume.
        fs::remove_file(&filler).unwrap();
        for _ in 0..200 {
            let d = pattern_record(n, 1000);
            acked.push((j.append(&d, true).expect("append after room was made"), d));
            n += 1;
        }
        j.close().unwrap();
        let j = Journal::open(&dir, cfg).unwrap();
        // Asynchronous records that made it are there too; the acknowledged ones all are.
        let got: Vec<_> = j
            .cursor(None)
            .map(|r| r.unwrap())
            .filter(|(_, d)| check_pattern_record(d).is_some_and(|n| n < 100_000))
            .collect();
        assert_eq!(
            got, acked,
            "{preallocation:?}: exactly the acknowledged records"
        );
        assert!(j.recovery_report().corrupt_ranges.is_empty());
        j.close().unwrap();
    }
}

#[test]
fn a_store_stops_when_a_change_it_applied_is_lost() {
    use kahadb::store::codec::*;
    use kahadb::store::{Store, StoreConfig};
    if !is_root() {
        eprintln!("full_disk store test skipped: mounting a tmpfs needs root");
        return;
    }
    let fs_ = Tmpfs::mount("4m").expect("mounting a 4 MiB tmpfs (running as root)");
    let dir = fs_.0.join("store");
    let config = StoreConfig {
        journal: JournalConfig {
            max_file_length: 1 << 20,
            max_batch_size: 256 << 10,
            preallocation: Preallocation::None,
            ..JournalConfig::default()
        },
        checkpoint_every: 0,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(&dir, config).unwrap();
    let tx = KahaTransactionInfo::local(KahaLocalTransactionId::new("ID:c", 1));
    let q = KahaDestination::new(DestinationType::Queue, "q");
    store
        .record(
            &KahaAddMessageCommand {
                destination: Some(q.clone()),
                message_id: Some("ID:before".into()),
                message: Some(vec![1; 100]),
                ..Default::default()
            }
            .into(),
            true,
        )
        .unwrap();
    let filler = fill(&fs_.0);
    // A transactional add that is not waited on: its write fails on the full disk.
    let _ = store.record(
        &KahaAddMessageCommand {
            transaction_info: Some(tx.clone()),
            destination: Some(q),
            message_id: Some("ID:lost".into()),
            message: Some(vec![2; 200_000]),
            ..Default::default()
        }
        .into(),
        false,
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    fs::remove_file(&filler).unwrap();
    // The commit itself could be written now, but what it commits was lost: refused.
    let commit = store.record(
        &KahaCommitCommand {
            transaction_info: Some(tx),
        }
        .into(),
        true,
    );
    let e = commit.expect_err("a commit of lost operations must not be reported durable");
    assert!(e.message().contains("stopped"), "{e}");
    // And everything after fails until a reopen.
    let again = store.record(&KahaTraceCommand::default().into(), true);
    assert!(again.is_err());
}

//! Journal behaviour: round trips, recovery from torn and corrupt data, rotation, concurrency,
//! locking, a SIGKILLed writer and a full disk.

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kahadb::journal::{Journal, JournalConfig, Location, Preallocation, SyncStrategy};
use kahadb::testkit::{check_pattern_record, pattern_record};
use kahadb::ErrorCode;

fn small() -> JournalConfig {
    JournalConfig {
        max_file_length: 64 * 1024,
        max_batch_size: 16 * 1024,
        ..JournalConfig::default()
    }
}

fn all_records(j: &Journal) -> Records {
    j.cursor(None).map(|r| r.expect("cursor")).collect()
}

fn file(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("db-{id}.log"))
}

#[test]
fn append_read_iterate_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = Vec::new();
    {
        let j = Journal::open(dir.path(), small()).unwrap();
        for n in 0..300u64 {
            let data = pattern_record(n, 10 + (n as usize * 37) % 900);
            let loc = j.append(&data, n % 3 == 0).unwrap();
            // Readable at once, written or not.
            assert_eq!(j.read(loc).unwrap(), data);
            written.push((loc, data));
        }
        j.sync().unwrap();
        assert_eq!(all_records(&j), written);
        j.close().unwrap();
        assert!(j.data_file_ids().len() > 1, "expected rotation");
    }
    let j = Journal::open(dir.path(), small()).unwrap();
    assert_eq!(all_records(&j), written);
    for (loc, data) in &written {
        assert_eq!(&j.read(*loc).unwrap(), data);
    }
    // Cursor from a location: exactly the records after it.
    let (mid, _) = written[150];
    let after: Vec<_> = j.cursor(Some(mid)).map(|r| r.unwrap()).collect();
    assert_eq!(after, written[151..].to_vec());
    // A cursor can be polled again after new appends.
    let mut c = j.cursor(Some(written.last().unwrap().0));
    assert!(c.next_record().unwrap().is_none());
    let loc = j.append(b"late", true).unwrap();
    assert_eq!(c.next_record().unwrap(), Some((loc, b"late".to_vec())));
    // Asynchronous appends are seen at once too.
    let queued: Vec<_> = (0..200u64)
        .map(|n| {
            (
                j.append(&pattern_record(n, 50), false).unwrap(),
                pattern_record(n, 50),
            )
        })
        .collect();
    let seen: Vec<_> = std::iter::from_fn(|| c.next_record().unwrap()).collect();
    assert_eq!(seen, queued);
}

#[test]
fn misuse_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small();
    let j = Journal::open(dir.path(), cfg).unwrap();
    assert_eq!(
        j.append(b"", true).unwrap_err().code(),
        ErrorCode::EmptyRecord
    );
    let too_big = vec![0u8; cfg.max_record_len() + 1];
    assert_eq!(
        j.append(&too_big, true).unwrap_err().code(),
        ErrorCode::RecordTooLarge
    );
    // The largest record fits, alone in a file.
    let biggest = vec![7u8; cfg.max_record_len()];
    let loc = j.append(&biggest, true).unwrap();
    assert_eq!(j.read(loc).unwrap(), biggest);
    let good = j.append(b"hello", true).unwrap();
    for bad in [
        Location::new(good.file_id, good.offset + 1, good.size),
        Location::new(good.file_id, good.offset, good.size + 1),
        Location::new(good.file_id, good.offset, 3),
        Location::new(0, 0, 10),
        Location::new(good.file_id + 5, 0, 10),
        Location::new(good.file_id, 60_000, 100),
    ] {
        let e = j.read(bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidLocation, "{bad}: {e}");
    }
    let e = Journal::open(dir.path(), cfg).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Locked);
    assert!(e.message().contains("already open"), "{e}");
    let removable = j.data_file_ids()[0];
    let active = *j.data_file_ids().last().unwrap();
    assert_eq!(
        j.remove_data_files(&[active]).unwrap_err().code(),
        ErrorCode::IllegalState
    );
    assert_eq!(
        j.remove_data_files(&[999]).unwrap_err().code(),
        ErrorCode::NotFound
    );
    j.remove_data_files(&[removable]).unwrap();
    assert_eq!(j.read(loc).unwrap_err().code(), ErrorCode::NotFound);
    assert!(!file(dir.path(), removable).exists());
    assert_eq!(all_records(&j), vec![(good, b"hello".to_vec())]);
    j.close().unwrap();
    j.close().unwrap(); // twice is harmless
    assert_eq!(j.append(b"x", true).unwrap_err().code(), ErrorCode::Closed);
    assert_eq!(j.read(good).unwrap_err().code(), ErrorCode::Closed);
    assert_eq!(j.sync().unwrap_err().code(), ErrorCode::Closed);
    // Closed releases the lock.
    let again = Journal::open(dir.path(), cfg).unwrap();
    assert_eq!(again.read(good).unwrap(), b"hello");
    let bad_cfg = JournalConfig {
        max_file_length: 10,
        ..cfg
    };
    assert_eq!(
        Journal::open(dir.path().join("x"), bad_cfg)
            .unwrap_err()
            .code(),
        ErrorCode::Config
    );
}

/// Builds a journal with `n` single-record batches in db-1.log; returns the records, the start
/// offset of each batch and the end of the last.
type Records = Vec<(Location, Vec<u8>)>;

/// Appends `n` synchronous pattern records of `size` bytes to a journal (small files) in `dir`,
/// closes it, and returns what was written.
fn synced_records(dir: &Path, n: u64, size: usize) -> Records {
    let j = Journal::open(dir, small()).unwrap();
    let recs = (0..n)
        .map(|i| {
            let data = pattern_record(i, size);
            (j.append(&data, true).unwrap(), data)
        })
        .collect();
    j.close().unwrap();
    recs
}

fn batches(dir: &Path, n: u64) -> (Records, Vec<u32>, u32) {
    let j = Journal::open(dir, small()).unwrap();
    let mut recs = Vec::new();
    let mut starts = Vec::new();
    for i in 0..n {
        starts.push(j.written_position().offset);
        let data = pattern_record(i, 40 + i as usize * 17);
        recs.push((j.append(&data, true).unwrap(), data));
    }
    let end = j.written_position().offset;
    j.close().unwrap();
    (recs, starts, end)
}

#[test]
fn torn_tail_cut_at_every_offset_of_the_last_batch() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let (recs, starts, end) = batches(&src, 5);
    let original = fs::read(file(&src, 1)).unwrap();
    let last_start = starts[4] as usize;
    let end = end as usize;
    let work = base.path().join("work");
    let mut opened = 0;
    for cut in last_start..=end + 5 {
        for variant in 0..3 {
            let _ = fs::remove_dir_all(&work);
            fs::create_dir_all(&work).unwrap();
            let mut bytes = original.clone();
            match variant {
                0 => bytes.truncate(cut),                          // file ends at the cut
                1 => bytes[cut..].iter_mut().for_each(|b| *b = 0), // zeros after the cut
                _ => bytes[cut..end + 5].iter_mut().for_each(|b| *b = 0xA5), // garbage
            }
            fs::write(file(&work, 1), &bytes).unwrap();
            let complete = cut >= end;
            let expect = if complete { 5 } else { 4 };
            let j = Journal::open(&work, small()).unwrap();
            opened += 1;
            let got = all_records(&j);
            assert_eq!(got, recs[..expect].to_vec(), "cut {cut} variant {variant}");
            assert_eq!(
                j.recovery_report().append_offset as usize,
                if complete { end } else { last_start },
                "cut {cut} variant {variant}"
            );
            // Appends continue after the last good batch and survive a reopen.
            let loc = j.append(b"after recovery", true).unwrap();
            j.close().unwrap();
            let j = Journal::open(&work, small()).unwrap();
            let got = all_records(&j);
            assert_eq!(got.len(), expect + 1, "cut {cut} variant {variant}");
            assert_eq!(got[expect], (loc, b"after recovery".to_vec()));
            assert!(j.recovery_report().corrupt_ranges.is_empty());
            j.close().unwrap();
        }
    }
    assert!(opened > 3 * 50, "tested {opened} cuts");
}

#[test]
fn flipped_bytes_in_a_middle_batch_are_skipped_and_reported() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let (recs, starts, end) = batches(&src, 5);
    let original = fs::read(file(&src, 1)).unwrap();
    let work = base.path().join("work");
    for at in starts[2]..starts[3] {
        let _ = fs::remove_dir_all(&work);
        fs::create_dir_all(&work).unwrap();
        let mut bytes = original.clone();
        bytes[at as usize] ^= 0x10;
        fs::write(file(&work, 1), &bytes).unwrap();
        let j = Journal::open(&work, small()).unwrap();
        let got = all_records(&j);
        let want: Vec<_> = recs
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, r)| r.clone())
            .collect();
        assert_eq!(got, want, "flip at {at}");
        let report = j.recovery_report();
        assert_eq!(report.corrupt_ranges.len(), 1, "flip at {at}");
        assert_eq!(report.corrupt_ranges[0].start, starts[2]);
        assert_eq!(report.corrupt_ranges[0].end, starts[3]);
        assert_eq!(report.append_offset, end);
        let e = j.read(recs[2].0).unwrap_err();
        assert!(
            matches!(e.code(), ErrorCode::Corrupt | ErrorCode::InvalidLocation),
            "{e}"
        );
        j.close().unwrap();
    }
}

#[test]
fn corruption_in_a_sealed_file_is_skipped_by_cursors() {
    let dir = tempfile::tempdir().unwrap();
    let recs = synced_records(dir.path(), 200, 1000);
    assert!(recs.last().unwrap().0.file_id >= 3);
    // Damage one record in the middle of db-1.log.
    let victim = recs
        .iter()
        .position(|(l, _)| l.file_id == 1 && l.offset > 20_000)
        .unwrap();
    let loc = recs[victim].0;
    let mut bytes = fs::read(file(dir.path(), 1)).unwrap();
    bytes[loc.offset as usize + 100] ^= 0xFF;
    fs::write(file(dir.path(), 1), &bytes).unwrap();
    let j = Journal::open(dir.path(), small()).unwrap();
    let mut c = j.cursor(None);
    let mut got = Vec::new();
    while let Some(r) = c.next_record().unwrap() {
        got.push(r);
    }
    assert_eq!(c.skipped().len(), 1);
    assert!(!got.iter().any(|(l, _)| *l == loc));
    assert_eq!(got.len(), recs.len() - 1);
    for (_, data) in &got {
        assert!(
            check_pattern_record(data).is_some(),
            "damaged data returned"
        );
    }
}

#[test]
fn rotation_boundaries_hold_batches_whole() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        max_file_length: 4096,
        max_batch_size: 4096,
        ..JournalConfig::default()
    };
    let j = Journal::open(dir.path(), cfg).unwrap();
    let mut recs = Vec::new();
    // Sizes chosen to land exactly on, just under and just over file boundaries.
    for n in 0..400u64 {
        let size = 1 + ((n * 97) % (cfg.max_record_len() as u64)) as usize;
        let data = pattern_record(n, size.max(8));
        let loc = j.append(&data, n % 5 == 0).unwrap();
        assert!(loc.offset as usize + loc.size as usize + 5 <= 4096, "{loc}");
        recs.push((loc, data));
    }
    j.sync().unwrap();
    let ids = j.data_file_ids();
    assert!(ids.len() > 50);
    assert_eq!(ids, (1..=ids.len() as u32).collect::<Vec<_>>());
    assert_eq!(all_records(&j), recs);
    j.close().unwrap();
    let j = Journal::open(dir.path(), cfg).unwrap();
    assert_eq!(all_records(&j), recs);
}

#[test]
fn eight_concurrent_writers_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(Journal::open(dir.path(), small()).unwrap());
    let per = 2000u64;
    let handles: Vec<_> = (0..8u64)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                (0..per)
                    .map(|i| {
                        let n = t * per + i;
                        let data = pattern_record(n, 64 + (n as usize % 300));
                        (j.append(&data, i % 2 == 0).unwrap(), data)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut written: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    j.sync().unwrap();
    let locs: HashSet<_> = written.iter().map(|(l, _)| *l).collect();
    assert_eq!(locs.len(), written.len(), "a location was handed out twice");
    for (loc, data) in &written {
        assert_eq!(&j.read(*loc).unwrap(), data);
    }
    let mut got = all_records(&j);
    got.sort_by_key(|(l, _)| *l);
    written.sort_by_key(|(l, _)| *l);
    assert_eq!(got, written);
    let ids: HashSet<_> = got
        .iter()
        .map(|(_, d)| check_pattern_record(d).unwrap())
        .collect();
    assert_eq!(ids.len() as u64, 8 * per);
}

#[test]
fn lock_excludes_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), small()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kahadb-journal"))
        .args(["append", dir.path().to_str().unwrap(), "1", "100"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already open"), "{err}");
    j.close().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kahadb-journal"))
        .args(["append", dir.path().to_str().unwrap(), "3", "100"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigkill_during_appends_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: Vec<(Location, u64)> = Vec::new();
    for round in 0..4 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kahadb-journal"))
            .args([
                "append",
                dir.path().to_str().unwrap(),
                "100000000",
                "700",
                "--max-file-length",
                "262144",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let target = 1500 + round * 700;
        let mut this_round = 0;
        while let Some(Ok(line)) = lines.next() {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f[0], "ACK");
            let loc = Location::new(
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            );
            acked.push((loc, f[4].parse().unwrap()));
            this_round += 1;
            if this_round == target {
                sigkill(child.id());
                break;
            }
        }
        // Drain what the child printed before it died: those appends returned too.
        for line in lines.map_while(Result::ok) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() == 5 {
                let loc = Location::new(
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                );
                acked.push((loc, f[4].parse().unwrap()));
            }
        }
        let status = child.wait().unwrap();
        assert!(!status.success(), "child should have been killed");
        let cfg = JournalConfig {
            max_file_length: 262144,
            max_batch_size: 262144,
            ..JournalConfig::default()
        };
        let j = Journal::open(dir.path(), cfg).unwrap();
        for (loc, n) in &acked {
            let data = j
                .read(*loc)
                .unwrap_or_else(|e| panic!("acked record {n} at {loc} lost: {e}"));
            assert_eq!(data, pattern_record(*n, 700), "record {n}");
        }
        let all = all_records(&j);
        for (_, data) in &all {
            assert!(
                check_pattern_record(data).is_some(),
                "corrupt record returned"
            );
        }
        assert!(all.len() >= acked.len());
        j.close().unwrap();
    }
}

fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn async_appends_read_back_before_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        sync_strategy: SyncStrategy::Periodic(Duration::from_millis(50)),
        ..small()
    };
    let j = Journal::open(dir.path(), cfg).unwrap();
    let mut recs = Vec::new();
    for n in 0..5000u64 {
        let data = pattern_record(n, 200);
        let loc = j.append(&data, false).unwrap();
        assert_eq!(j.read(loc).unwrap(), data);
        recs.push((loc, data));
    }
    std::thread::sleep(Duration::from_millis(120));
    j.close().unwrap();
    let j = Journal::open(dir.path(), cfg).unwrap();
    assert_eq!(all_records(&j), recs);
}

#[test]
fn close_while_writers_run_is_safe() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(Journal::open(dir.path(), small()).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let j = j.clone();
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for n in 0..100_000u64 {
                    let data = pattern_record(t * 1_000_000 + n, 100);
                    match j.append(&data, n % 2 == 0) {
                        Ok(loc) if n % 2 == 0 => ok.push((loc, data)),
                        Ok(_) => {}
                        Err(e) => {
                            assert_eq!(e.code(), ErrorCode::Closed, "{e}");
                            break;
                        }
                    }
                }
                ok
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    j.close().unwrap();
    let synced: Vec<_> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert!(!synced.is_empty());
    let j = Journal::open(dir.path(), small()).unwrap();
    for (loc, data) in synced {
        assert_eq!(j.read(loc).unwrap(), data);
    }
}

#[test]
fn sync_strategies_all_round_trip() {
    for strategy in [
        SyncStrategy::Always,
        SyncStrategy::Periodic(Duration::from_millis(10)),
        SyncStrategy::Never,
    ] {
        for preallocation in [
            Preallocation::Zeros,
            Preallocation::Sparse,
            Preallocation::None,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let cfg = JournalConfig {
                sync_strategy: strategy,
                preallocation,
                ..small()
            };
            let j = Journal::open(dir.path(), cfg).unwrap();
            let recs: Vec<_> = (0..500u64)
                .map(|n| {
                    let d = pattern_record(n, 300);
                    (j.append(&d, true).unwrap(), d)
                })
                .collect();
            j.sync().unwrap();
            j.close().unwrap();
            let j = Journal::open(dir.path(), cfg).unwrap();
            assert_eq!(all_records(&j), recs, "{strategy:?} {preallocation:?}");
            let len = fs::metadata(file(dir.path(), 1)).unwrap().len();
            match preallocation {
                Preallocation::None => assert!(len < 64 * 1024),
                _ => assert_eq!(len, 64 * 1024),
            }
        }
    }
}

#[test]
fn mixed_sync_and_async_writers_with_tiny_batches_and_files() {
    // Many small batches queue up behind each other, some with nobody waiting on them: every
    // synchronous caller must still be led to completion (no lost wake-ups).
    for strategy in [
        SyncStrategy::Always,
        SyncStrategy::Periodic(Duration::from_millis(5)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            max_file_length: 4096,
            max_batch_size: 512,
            sync_strategy: strategy,
            ..JournalConfig::default()
        };
        let j = Arc::new(Journal::open(dir.path(), cfg).unwrap());
        let handles: Vec<_> = (0..6u64)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    (0..1500u64)
                        .map(|i| {
                            let n = t * 10_000 + i;
                            let data = pattern_record(n, 20 + (n as usize * 13) % 700);
                            (j.append(&data, (i + t) % 3 == 0).unwrap(), data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut written: Vec<_> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        j.sync().unwrap();
        written.sort_by_key(|(l, _)| *l);
        assert_eq!(all_records(&j), written, "{strategy:?}");
        let stats = j.stats();
        assert_eq!(stats.records, 6 * 1500);
        assert!(stats.batches > 100, "{stats:?}");
    }
}

#[test]
fn empty_and_zeroed_sealed_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let recs = synced_records(dir.path(), 150, 1000);
    let ids: Vec<u32> = recs.iter().map(|(l, _)| l.file_id).collect();
    assert!(*ids.last().unwrap() >= 3);
    // Empty db-2.log (as a crash during KahaDB's file creation leaves it), all-zero db-1.log.
    fs::write(file(dir.path(), 2), b"").unwrap();
    fs::write(file(dir.path(), 1), vec![0u8; 64 * 1024]).unwrap();
    let j = Journal::open(dir.path(), small()).unwrap();
    let want: Vec<_> = recs.into_iter().filter(|(l, _)| l.file_id > 2).collect();
    assert_eq!(all_records(&j), want);
}

/// Runs `f` on another thread and fails the test if it has not finished within `secs`.
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}

#[test]
fn a_failed_producer_leaves_sync_and_close_working() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(Journal::open(dir.path(), small()).unwrap());
    j.append(b"first", true).unwrap();
    let e = j
        .append_with(10, true, |_| {
            Err(kahadb::Error::new(
                ErrorCode::InvalidArgument,
                "producer failed",
            ))
        })
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidArgument);
    let j2 = j.clone();
    within(10, "sync after a failed producer", move || {
        j2.sync().unwrap()
    });
    let loc = j.append(b"second", true).unwrap();
    let j2 = j.clone();
    within(10, "close", move || j2.close().unwrap());
    let j = Journal::open(dir.path(), small()).unwrap();
    let got: Vec<_> = all_records(&j).into_iter().map(|(_, d)| d).collect();
    assert_eq!(got, vec![b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(j.read(loc).unwrap(), b"second");
}

#[test]
fn sync_requested_while_a_caller_writes_is_served() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = JournalConfig {
            sync_strategy: SyncStrategy::Never,
            max_file_length: 64 << 20,
            max_batch_size: 64 << 20,
            ..JournalConfig::default()
        };
        let j = Arc::new(Journal::open(dir.path(), cfg).unwrap());
        let writer = {
            let j = j.clone();
            std::thread::spawn(move || j.append(&vec![7u8; 48 << 20], true).unwrap())
        };
        std::thread::sleep(Duration::from_millis(2));
        let j2 = j.clone();
        within(30, "sync() during a caller-led write", move || {
            j2.sync().unwrap()
        });
        writer.join().unwrap();
        within(30, "a second sync", move || j.sync().unwrap());
    }
}

#[test]
fn periodic_sync_covers_writes_led_by_callers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = JournalConfig {
        sync_strategy: SyncStrategy::Periodic(Duration::from_millis(20)),
        ..small()
    };
    let j = Journal::open(dir.path(), cfg).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    j.append(b"one", true).unwrap();
    j.append(b"two", true).unwrap();
    let before = j.stats().syncs;
    std::thread::sleep(Duration::from_millis(300));
    assert!(j.stats().syncs > before, "{:?}", j.stats());
}

#[test]
fn concurrent_closes_release_the_directory_only_when_done() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let j = Arc::new(Journal::open(&path, small()).unwrap());
        let recs: Vec<_> = (0..3000u64)
            .map(|n| {
                (
                    j.append(&pattern_record(n, 2000), false).unwrap(),
                    pattern_record(n, 2000),
                )
            })
            .collect();
        let first = {
            let j = j.clone();
            std::thread::spawn(move || j.close())
        };
        std::thread::sleep(Duration::from_micros(200));
        j.close().unwrap();
        // The directory is free only once everything is written: the reopen sees it all.
        let again = Journal::open(&path, small()).unwrap();
        first.join().unwrap().unwrap();
        assert_eq!(all_records(&again), recs);
    }
}

#[test]
fn kahadb_sparse_tail_file_is_taken_as_it_is() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // As KahaDB preallocates: a sparse file with an EOF marker at the start and at the end.
    let f = fs::File::create(file(dir.path(), 1)).unwrap();
    f.set_len(4 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"-qMa4", 0).unwrap();
    f.write_all_at(b"-qMa4", (4 << 20) - 5).unwrap();
    drop(f);
    let cfg = JournalConfig {
        max_file_length: 4 << 20,
        max_batch_size: 1 << 20,
        ..JournalConfig::default()
    };
    let j = Journal::open(dir.path(), cfg).unwrap();
    assert_eq!(j.recovery_report().discarded_tail_bytes, 0);
    assert_eq!(j.recovery_report().append_offset, 0);
    let blocks = fs::metadata(file(dir.path(), 1)).unwrap().blocks();
    assert!(
        blocks < 256,
        "recovery filled the sparse file in ({blocks} blocks)"
    );
    let loc = j.append(b"on top of kahadb", true).unwrap();
    assert_eq!(j.read(loc).unwrap(), b"on top of kahadb");
}

#[test]
fn deferred_appends_keep_call_order_and_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let j = Arc::new(Journal::open(dir.path(), small()).unwrap());
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            let (j, order) = (j.clone(), order.clone());
            std::thread::spawn(move || {
                for i in 0..500u64 {
                    let n = t * 1000 + i;
                    // Queue under a caller lock (as an index would), wait outside it.
                    let (loc, ticket) = {
                        let mut o = order.lock().unwrap();
                        let (loc, ticket) = j.append_deferred(&pattern_record(n, 100)).unwrap();
                        o.push((loc, n));
                        (loc, ticket)
                    };
                    j.wait_durable(&ticket).unwrap();
                    assert_eq!(check_pattern_record(&j.read(loc).unwrap()), Some(n));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Queued without waiting: still written and synced.
    let (last, _ticket) = j.append_deferred(b"nobody waits").unwrap();
    j.close().unwrap();
    let order = order.lock().unwrap().clone();
    // The caller-lock order is the journal order.
    assert!(order.windows(2).all(|w| w[0].0 < w[1].0));
    let j = Journal::open(dir.path(), small()).unwrap();
    let got: Vec<_> = all_records(&j);
    assert_eq!(got.len(), order.len() + 1);
    for ((loc, n), (gl, data)) in order.iter().zip(&got) {
        assert_eq!(loc, gl);
        assert_eq!(check_pattern_record(data), Some(*n));
    }
    assert_eq!(j.read(last).unwrap(), b"nobody waits");
}

//! Initial sync of sealed data files over loopback: several transfer sessions, byte-identical
//! result, resume after an interrupted run (no more than the remaining bytes plus one chunk per
//! session), diverging and extra files on the slave, and misbehaving transfer requests.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use kahadb::journal::{Journal, JournalConfig};
use kahadb::replication::net::{connect, serve, Conn, Identity, KdbrUri};
use kahadb::replication::sync::{
    initial_sync, sealed_files, serve_session, Progress, PROGRESS_FILE,
};
use kahadb::replication::{FileRange, Message, Purpose};
use tokio::net::TcpListener;

const CHUNK: u64 = 64 << 10;

fn identity(node: &str) -> Identity {
    Identity {
        cluster: "c".into(),
        node: node.into(),
        epoch: Arc::new(AtomicU64::new(1)),
    }
}

/// A journal of about `mib` MiB in 1 MiB data files.
fn master_journal(dir: &Path, mib: usize) {
    let j = Journal::open(
        dir,
        JournalConfig {
            max_file_length: 1 << 20,
            max_batch_size: 256 << 10,
            ..JournalConfig::default()
        },
    )
    .unwrap();
    for i in 0..(mib * 1024 / 4) as u64 {
        j.append(&kahadb::testkit::pattern_record(i, 4000), false)
            .unwrap();
    }
    j.close().unwrap();
}

async fn start_master(dir: &Path) -> KdbrUri {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = dir.to_path_buf();
    tokio::spawn(serve(
        listener,
        identity("master"),
        move |conn: Conn, _node, purpose| {
            let dir = dir.clone();
            async move {
                let _ = serve_session(conn, dir, purpose).await;
            }
        },
    ));
    KdbrUri::parse(&format!("kdbr://127.0.0.1:{port}")).unwrap()
}

fn assert_same_sealed_files(master: &Path, slave: &Path) -> u64 {
    let mut total = 0;
    for (id, len) in sealed_files(master).unwrap() {
        let name = format!("db-{id}.log");
        let a = std::fs::read(master.join(&name)).unwrap();
        let b = std::fs::read(slave.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.len() as u64, len);
        assert!(a == b, "{name} differs");
        total += len;
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_sessions_copy_every_sealed_file_byte_for_byte() {
    let m = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    master_journal(m.path(), 12);
    let uri = start_master(m.path()).await;
    let report = initial_sync(&uri, &identity("slave"), s.path(), 4, CHUNK)
        .await
        .unwrap();
    let total = assert_same_sealed_files(m.path(), s.path());
    assert_eq!(report.bytes_fetched, total);
    assert_eq!(report.bytes_resumed, 0);
    assert!(total >= 10 << 20, "{total}");
    // Nothing left to do the second time.
    let again = initial_sync(&uri, &identity("slave"), s.path(), 4, CHUNK)
        .await
        .unwrap();
    assert_eq!(again.bytes_fetched, 0);
    assert_eq!(again.live_from, report.live_from);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sync_resumes_with_what_is_left() {
    let m = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    master_journal(m.path(), 24);
    let uri = start_master(m.path()).await;
    let total: u64 = sealed_files(m.path()).unwrap().iter().map(|(_, l)| l).sum();
    // Interrupt the first run once a good part is on disk (as a kill would: whatever was
    // recorded as done is on disk, the rest is not trusted).
    let (uri2, dir2) = (uri.clone(), s.path().to_path_buf());
    let run =
        tokio::spawn(async move { initial_sync(&uri2, &identity("slave"), &dir2, 4, CHUNK).await });
    let progress = s.path().join(PROGRESS_FILE);
    loop {
        let lines = std::fs::read_to_string(&progress)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= 80 || run.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    run.abort();
    let _ = run.await;
    assert!(std::fs::metadata(&progress).is_ok());
    let done: u64 = {
        let p = Progress::load(s.path()).unwrap();
        sealed_files(m.path())
            .unwrap()
            .iter()
            .map(|(id, len)| {
                (0..*len)
                    .step_by(CHUNK as usize)
                    .filter(|o| p.covers(*id, *o, CHUNK.min(len - o)))
                    .count() as u64
                    * CHUNK
            })
            .sum()
    };
    assert!(
        done > 0 && done < total,
        "interrupted half-way: {done} of {total}"
    );
    let report = initial_sync(&uri, &identity("slave"), s.path(), 4, CHUNK)
        .await
        .unwrap();
    assert_same_sealed_files(m.path(), s.path());
    let remaining = total - done;
    println!(
        "total {total}, done before {done}, fetched after {} (resumed {})",
        report.bytes_fetched, report.bytes_resumed
    );
    assert!(
        report.bytes_fetched <= remaining + 4 * CHUNK,
        "fetched {} with {remaining} remaining",
        report.bytes_fetched
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diverging_and_extra_files_on_the_slave_are_corrected() {
    let m = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    master_journal(m.path(), 6);
    let uri = start_master(m.path()).await;
    initial_sync(&uri, &identity("slave"), s.path(), 2, CHUNK)
        .await
        .unwrap();
    // A byte changed in file 2, file 3 cut short, a file the master never had.
    let f2 = s.path().join("db-2.log");
    let mut bytes = std::fs::read(&f2).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&f2, &bytes).unwrap();
    let f3 = s.path().join("db-3.log");
    let len3 = std::fs::metadata(&f3).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&f3)
        .unwrap()
        .set_len(len3 / 2)
        .unwrap();
    std::fs::remove_file(s.path().join(PROGRESS_FILE)).unwrap();
    let newest = sealed_files(m.path()).unwrap().len() + 1;
    let extra = s.path().join(format!("db-{}.log", newest + 3));
    std::fs::write(&extra, b"the tail of an old master").unwrap();
    let report = initial_sync(&uri, &identity("slave"), s.path(), 2, CHUNK)
        .await
        .unwrap();
    assert_eq!(
        report.files_truncated, 1,
        "the diverging file is fetched again"
    );
    assert_eq!(report.files_deleted, 1);
    assert_eq!(
        report.bytes_fetched,
        std::fs::metadata(&f2).unwrap().len() + (len3 - len3 / 2)
    );
    assert!(!extra.exists());
    assert_same_sealed_files(m.path(), s.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_outside_sealed_files_are_refused() {
    let m = tempfile::tempdir().unwrap();
    master_journal(m.path(), 3);
    let uri = start_master(m.path()).await;
    let newest = sealed_files(m.path()).unwrap().len() as u32 + 1;
    for range in [
        FileRange {
            file: 1,
            offset: (1 << 20) - 10,
            length: 100,
        },
        FileRange {
            file: newest,
            offset: 0,
            length: 10,
        },
        FileRange {
            file: 77,
            offset: 0,
            length: 10,
        },
        FileRange {
            file: 1,
            offset: u64::MAX - 1,
            length: 10,
        },
        FileRange {
            file: 1,
            offset: 0,
            length: 1 << 30,
        },
    ] {
        let (mut conn, _) = connect(&uri, &identity("slave"), Purpose::Transfer)
            .await
            .unwrap();
        conn.send(&Message::RangeRequest { range }).await.unwrap();
        match conn.recv().await {
            Ok(Message::Reject { reason }) => {
                assert!(reason.contains("not within a sealed data file"), "{reason}")
            }
            other => panic!("{range:?}: expected a refusal, got {other:?}"),
        }
    }
    // A transfer session may not send an inventory, a stream session may not ask for ranges.
    let (mut conn, _) = connect(&uri, &identity("slave"), Purpose::Transfer)
        .await
        .unwrap();
    conn.send(&Message::Inventory { files: vec![] })
        .await
        .unwrap();
    assert!(matches!(conn.recv().await, Ok(Message::Reject { .. })));
    let (mut conn, _) = connect(&uri, &identity("slave"), Purpose::Stream)
        .await
        .unwrap();
    conn.send(&Message::RangeRequest {
        range: FileRange {
            file: 1,
            offset: 0,
            length: 1,
        },
    })
    .await
    .unwrap();
    assert!(matches!(conn.recv().await, Ok(Message::Reject { .. })));
}

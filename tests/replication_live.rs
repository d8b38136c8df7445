//! A slave joins a master that keeps writing: initial sync of the sealed files, then the live
//! stream from where the copy ended; afterwards every data file is byte-identical and the
//! master knows the slave's durable position.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kahadb::journal::{Journal, JournalConfig};
use kahadb::replication::live::{follow, serve_master, Feed, ReplicaWriter, Slaves};
use kahadb::replication::net::{connect, serve, Conn, Identity, KdbrUri};
use kahadb::replication::sync::{initial_sync, inventory};
use kahadb::replication::{Message, Position, Purpose};
use tokio::net::TcpListener;

const FILE: u32 = 256 << 10;

fn identity(node: &str) -> Identity {
    Identity {
        cluster: "c".into(),
        node: node.into(),
        epoch: Arc::new(AtomicU64::new(1)),
    }
}

async fn start_master(dir: &Path, journal: Arc<Journal>, slaves: Arc<Slaves>) -> KdbrUri {
    let feed = Feed::install(&journal);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = dir.to_path_buf();
    tokio::spawn(serve(
        listener,
        identity("master"),
        move |conn: Conn, node, purpose| {
            let (dir, feed, slaves) = (dir.clone(), feed.clone(), slaves.clone());
            async move {
                let why = serve_master(conn, node, purpose, dir, feed, slaves).await;
                eprintln!("session ended: {why}");
            }
        },
    ));
    KdbrUri::parse(&format!("kdbr://127.0.0.1:{port}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_joins_a_busy_master_and_ends_byte_identical() {
    let m = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        max_file_length: FILE,
        max_batch_size: 64 << 10,
        ..JournalConfig::default()
    };
    let journal = Arc::new(Journal::open(m.path(), config).unwrap());
    for i in 0..400u64 {
        journal
            .append(&kahadb::testkit::pattern_record(i, 3000), false)
            .unwrap();
    }
    journal.sync().unwrap();
    let slaves = Arc::new(Slaves::default());
    let uri = start_master(m.path(), journal.clone(), slaves.clone()).await;

    // The master keeps writing, sync and not, while the slave joins.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (journal, stop) = (journal.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 400u64;
            while !stop.load(Ordering::Relaxed) {
                journal
                    .append(
                        &kahadb::testkit::pattern_record(i, 100 + (i as usize * 37) % 5000),
                        i % 3 == 0,
                    )
                    .unwrap();
                i += 1;
            }
            i
        })
    };

    let me = identity("slave-1");
    // Bulk copy until a plan has nothing left to fetch, then follow the live stream.
    let (conn, start) = loop {
        initial_sync(&uri, &me, s.path(), 4, 64 << 10)
            .await
            .unwrap();
        let (mut conn, _) = connect(&uri, &me, Purpose::Stream).await.unwrap();
        let dir = s.path().to_path_buf();
        let inv = tokio::task::spawn_blocking(move || inventory(&dir))
            .await
            .unwrap()
            .unwrap();
        conn.send(&Message::Inventory { files: inv }).await.unwrap();
        match conn.recv().await.unwrap() {
            Message::SyncPlan {
                fetch,
                truncate,
                delete,
                live_from,
            } if fetch.is_empty() => {
                assert!(delete.is_empty());
                for (id, len) in truncate {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .open(s.path().join(format!("db-{id}.log")))
                        .unwrap();
                    f.set_len(len).unwrap();
                }
                break (conn, live_from);
            }
            Message::SyncPlan { .. } => continue, // the master rotated meanwhile: copy that too
            other => panic!("expected a plan, got {other:?}"),
        }
    };
    let follower = tokio::spawn(follow(conn, ReplicaWriter::new(s.path(), &config), start));

    tokio::time::sleep(Duration::from_millis(400)).await;
    stop.store(true, Ordering::Relaxed);
    let appended = tokio::task::spawn_blocking(move || writer.join().unwrap())
        .await
        .unwrap();
    journal.sync().unwrap();
    let end = journal.written_position();
    let end = Position {
        file: end.file_id,
        offset: end.offset,
    };
    tokio::time::timeout(Duration::from_secs(20), slaves.wait_for("slave-1", end))
        .await
        .expect("the slave acks everything the master wrote");
    assert!(
        end.file > start.file || end.offset > start.offset,
        "the stream carried data"
    );
    println!("appended {appended} records; stream from {start:?} to {end:?}");

    // Every data file is byte-identical.
    let mut ids = journal.data_file_ids();
    ids.sort_unstable();
    assert!(ids.len() >= 5, "{ids:?}");
    for id in ids {
        let name = format!("db-{id}.log");
        let a = std::fs::read(m.path().join(&name)).unwrap();
        let b = std::fs::read(s.path().join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(a.len(), b.len(), "{name} length");
        assert!(a == b, "{name} differs");
    }
    follower.abort();
    journal.close().unwrap();
    // The slave's copy opens as a journal with every record.
    let copy = Journal::open(s.path(), config).unwrap();
    let mut n = 0u64;
    let mut cursor = copy.cursor(None);
    while let Some((_, data)) = cursor.next_record().unwrap() {
        assert_eq!(kahadb::testkit::check_pattern_record(&data), Some(n));
        n += 1;
    }
    assert_eq!(n, appended);
    copy.close().unwrap();
}

/// A master over a journal with one data file (nothing sealed), for raw sessions.
async fn small_master(dir: &Path, slaves: Arc<Slaves>) -> (Arc<Journal>, KdbrUri) {
    let config = JournalConfig {
        max_file_length: 32 << 20,
        ..JournalConfig::default()
    };
    let journal = Arc::new(Journal::open(dir, config).unwrap());
    journal.append(b"first record", true).unwrap();
    let uri = start_master(dir, journal.clone(), slaves).await;
    (journal, uri)
}

/// A raw stream session that goes live at the start of the master's newest file.
async fn live_session(uri: &KdbrUri, node: &str) -> (kahadb::replication::net::Conn, Position) {
    let (mut conn, _) = connect(uri, &identity(node), Purpose::Stream)
        .await
        .unwrap();
    conn.send(&Message::Inventory { files: vec![] })
        .await
        .unwrap();
    let start = match conn.recv().await.unwrap() {
        Message::SyncPlan {
            fetch, live_from, ..
        } if fetch.is_empty() => live_from,
        other => panic!("expected a plan with nothing to fetch, got {other:?}"),
    };
    conn.send(&Message::Ack { durable: start }).await.unwrap();
    (conn, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_beyond_what_was_sent_ends_the_session_and_never_counts() {
    let m = tempfile::tempdir().unwrap();
    let slaves = Arc::new(Slaves::new(1, Duration::from_millis(200)));
    let (journal, uri) = small_master(m.path(), slaves.clone()).await;
    let (mut conn, _) = live_session(&uri, "liar").await;
    // The catch-up arrives; then the slave claims far more.
    let Message::Batch { .. } = conn.recv().await.unwrap() else {
        panic!("catch-up expected")
    };
    conn.send(&Message::Ack {
        durable: Position {
            file: u32::MAX,
            offset: 0,
        },
    })
    .await
    .unwrap();
    let t = std::time::Instant::now();
    while !slaves.status().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the lying slave is dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = journal.written_position();
    let e = slaves
        .wait_replicated(Position {
            file: end.file_id,
            offset: end.offset,
        })
        .unwrap_err();
    assert_eq!(e.code(), kahadb::ErrorCode::ReplicationTimeout);
    journal.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reconnecting_keeps_counting_when_its_old_session_ends() {
    let m = tempfile::tempdir().unwrap();
    let slaves = Arc::new(Slaves::new(1, Duration::from_secs(5)));
    let (journal, uri) = small_master(m.path(), slaves.clone()).await;
    let (old, _) = live_session(&uri, "n1").await;
    let (mut new, _) = live_session(&uri, "n1").await;
    drop(old);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(slaves.status().len(), 1, "the new session still counts");
    // The new session acks what it receives and the master counts it.
    let Message::Batch { at, data } = new.recv().await.unwrap() else {
        panic!("catch-up expected")
    };
    let end = Position {
        file: at.file,
        offset: at.offset + data.len() as u32,
    };
    new.send(&Message::Ack { durable: end }).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), slaves.wait_for("n1", end))
        .await
        .unwrap();
    journal.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_larger_than_the_old_frame_limit_replicates() {
    let m = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    let slaves = Arc::new(Slaves::new(1, Duration::from_secs(20)));
    let (journal, uri) = small_master(m.path(), slaves.clone()).await;
    let config = JournalConfig {
        max_file_length: 32 << 20,
        ..JournalConfig::default()
    };
    let slave = tokio::spawn({
        let (uri, dir) = (uri.clone(), s.path().to_path_buf());
        async move {
            kahadb::replication::live::run_slave(&uri, &identity("big"), &dir, 2, &config).await
        }
    });
    let big = kahadb::testkit::pattern_record(1, 9 << 20);
    let j = journal.clone();
    let loc = tokio::task::spawn_blocking(move || j.append(&big, true).unwrap())
        .await
        .unwrap();
    let end = Position {
        file: loc.file_id,
        offset: loc.offset + loc.size,
    };
    tokio::time::timeout(Duration::from_secs(20), slaves.wait_for("big", end))
        .await
        .expect("the 9 MiB record reaches the slave");
    slave.abort();
    journal.close().unwrap();
    let a = std::fs::read(m.path().join(format!("db-{}.log", loc.file_id))).unwrap();
    let b = std::fs::read(s.path().join(format!("db-{}.log", loc.file_id))).unwrap();
    assert!(a == b, "identical file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_that_stops_reading_is_dropped_before_the_master_buffers_too_much() {
    let m = tempfile::tempdir().unwrap();
    let slaves = Arc::new(Slaves::new(0, Duration::from_secs(1)));
    let config = JournalConfig {
        max_file_length: 32 << 20,
        ..JournalConfig::default()
    };
    let journal = Arc::new(Journal::open(m.path(), config).unwrap());
    journal.append(b"first record", true).unwrap();
    let feed = Feed::install(&journal);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = m.path().to_path_buf();
    let (f, sl) = (feed.clone(), slaves.clone());
    tokio::spawn(serve(
        listener,
        identity("master"),
        move |conn: Conn, node, purpose| {
            let (dir, feed, slaves) = (dir.clone(), f.clone(), sl.clone());
            async move {
                let _ = serve_master(conn, node, purpose, dir, feed, slaves).await;
            }
        },
    ));
    let uri = KdbrUri::parse(&format!("kdbr://127.0.0.1:{port}")).unwrap();
    let (_stalled, _) = live_session(&uri, "stalled").await;
    let t = std::time::Instant::now();
    while feed.subscribers() == 0 {
        assert!(t.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // 96 MiB written while the slave reads nothing (socket buffers hold a few MiB at most).
    let j = journal.clone();
    tokio::task::spawn_blocking(move || {
        let record = vec![5u8; 1 << 20];
        for _ in 0..96 {
            j.append(&record, false).unwrap();
        }
        j.sync().unwrap();
    })
    .await
    .unwrap();
    let t = std::time::Instant::now();
    while feed.subscribers() > 0 || !slaves.status().is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the stalled slave is dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    journal.close().unwrap();
}

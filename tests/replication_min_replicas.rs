//! minimumReplicas on a store: synchronous writes wait for enough live slaves, fail with
//! REPLICATION_TIMEOUT when too few are attached, complete once a slave is back, and the count
//! and the timeout change at runtime. Asynchronous writes never wait.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kahadb::journal::JournalConfig;
use kahadb::replication::live::{run_slave, serve_master, Feed, Slaves};
use kahadb::replication::net::{serve, Conn, Identity, KdbrUri};
use kahadb::replication::{Position, Purpose};
use kahadb::store::codec::DestinationType;
use kahadb::store::state::DestKey;
use kahadb::store::{Store, StoreConfig};
use kahadb::ErrorCode;
use tokio::net::TcpListener;

const FILE: u32 = 256 << 10;

fn identity(node: &str) -> Identity {
    Identity {
        cluster: "c".into(),
        node: node.into(),
        epoch: Arc::new(AtomicU64::new(1)),
    }
}

async fn start_master(dir: &Path, store: Arc<Store>, slaves: Arc<Slaves>) -> KdbrUri {
    let feed = Feed::install(store.journal());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = dir.to_path_buf();
    tokio::spawn(serve(
        listener,
        identity("master"),
        move |conn: Conn, node, purpose: Purpose| {
            let (dir, feed, slaves) = (dir.clone(), feed.clone(), slaves.clone());
            async move {
                let _ = serve_master(conn, node, purpose, dir, feed, slaves).await;
            }
        },
    ));
    KdbrUri::parse(&format!("kdbr://127.0.0.1:{port}")).unwrap()
}

async fn add(store: &Arc<Store>, id: u64, sync: bool) -> kahadb::Result<()> {
    let s = store.clone();
    tokio::task::spawn_blocking(move || {
        let q = DestKey::new(DestinationType::Queue, "orders");
        s.add_message(&q, &format!("p:{id}"), 4, false, vec![7u8; 2000], sync)
            .map(|_| ())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn synchronous_writes_wait_for_minimum_replicas() {
    let m = tempfile::tempdir().unwrap();
    let s = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        journal: JournalConfig {
            max_file_length: FILE,
            max_batch_size: 64 << 10,
            ..JournalConfig::default()
        },
        ..StoreConfig::default()
    };
    let jconfig = config.journal;
    let (store, _) = Store::open(m.path(), config).unwrap();
    let store = Arc::new(store);
    for i in 0..300 {
        add(&store, i, false).await.unwrap();
    }
    let slaves = Arc::new(Slaves::new(1, Duration::from_millis(300)));
    store.set_replication(Some(slaves.clone()));
    let uri = start_master(m.path(), store.clone(), slaves.clone()).await;

    // No slave: a synchronous write fails after the timeout; an asynchronous one does not wait.
    let t = Instant::now();
    let e = add(&store, 1000, true).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ReplicationTimeout, "{e}");
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(e.message().contains("only 0 of the 1 slaves"), "{e}");
    let t = Instant::now();
    add(&store, 1001, false).await.unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "asynchronous writes do not wait"
    );

    // A slave joins: synchronous writes complete once it holds them.
    let slave = tokio::spawn({
        let (uri, dir, jconfig) = (uri.clone(), s.path().to_path_buf(), jconfig);
        async move { run_slave(&uri, &identity("slave-1"), &dir, 4, &jconfig).await }
    });
    slaves.set_timeout(Duration::from_secs(20));
    let t = Instant::now();
    for i in 2000..2050 {
        add(&store, i, true).await.unwrap();
    }
    println!(
        "50 replicated synchronous writes (slave joining first) in {:?}",
        t.elapsed()
    );
    assert_eq!(slaves.status().len(), 1);
    let end = store.journal().written_position();
    assert!(
        slaves.durable("slave-1").unwrap()
            >= Position {
                file: end.file_id,
                offset: end.offset
            }
    );

    // The slave goes away: writes wait, and complete when it is back.
    slave.abort();
    let _ = slave.await;
    let gone = Instant::now();
    while !slaves.status().is_empty() {
        assert!(
            gone.elapsed() < Duration::from_secs(5),
            "the master notices the slave left"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { add(&store, 3000, true).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a synchronous write waits for the missing slave"
    );
    let slave = tokio::spawn({
        let (uri, dir, jconfig) = (uri.clone(), s.path().to_path_buf(), jconfig);
        async move { run_slave(&uri, &identity("slave-1"), &dir, 2, &jconfig).await }
    });
    waiting
        .await
        .unwrap()
        .expect("completes once the slave is back");

    // Runtime changes: minimumReplicas 0 never waits, even with no slave.
    slave.abort();
    let _ = slave.await;
    slaves.set_minimum_replicas(0);
    let t = Instant::now();
    add(&store, 4000, true).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(2));
    // And 2 with one slave and a short timeout fails.
    slaves.set_minimum_replicas(2);
    slaves.set_timeout(Duration::from_millis(200));
    let e = add(&store, 4001, true).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ReplicationTimeout);
    store.set_replication(None);
    store.close().unwrap();
}

//! The replication node's control API in one process: a master and two slaves on loopback,
//! minimumReplicas, status, the hot standby taking over at promotion without a replay, the old
//! master demoted to a slave of the new one, GC deletions reaching the slaves, and refusals.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use kahadb::journal::JournalConfig;
use kahadb::replication::live::SlaveState;
use kahadb::replication::node::{Node, NodeConfig, Role};
use kahadb::store::codec::DestinationType;
use kahadb::store::state::DestKey;
use kahadb::store::{ReadRequest, Store, StoreConfig};
use kahadb::ErrorCode;

const FILE: u32 = 256 << 10;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &Path, min: usize) -> NodeConfig {
    let mut c = NodeConfig::new(dir, format!("kdbr://127.0.0.1:{}", free_port()));
    c.minimum_replicas = min;
    c.replication_timeout = Duration::from_secs(5);
    c.transfer_sessions = 3;
    c.store = StoreConfig {
        journal: JournalConfig {
            max_file_length: FILE,
            max_batch_size: 64 << 10,
            ..JournalConfig::default()
        },
        checkpoint_every: 500,
        ..StoreConfig::default()
    };
    c
}

fn queue() -> DestKey {
    DestKey::new(DestinationType::Queue, "orders")
}

fn ids(store: &Store) -> Vec<String> {
    store
        .read_messages(&queue(), None, ReadRequest::all())
        .unwrap()
        .into_iter()
        .map(|m| m.message_id)
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn data_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            (name.starts_with("db-") && name.ends_with(".log")).then_some(name)
        })
        .map(|n| {
            let bytes = std::fs::read(dir.join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

#[test]
fn master_two_slaves_promotion_and_demotion() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let a = Node::new(config(dirs[0].path(), 1)).unwrap();
    let b = Node::new(config(dirs[1].path(), 1)).unwrap();
    let c = Node::new(config(dirs[2].path(), 1)).unwrap();
    assert_eq!(a.role(), Role::Stopped);
    assert_eq!(
        a.store().err().map(|e| e.code()),
        Some(ErrorCode::IllegalState),
        "no store before master"
    );
    a.start_master(1).unwrap();
    let store = a.store().unwrap();
    // History before any slave: the slaves get it by initial sync.
    for i in 0..1500 {
        store
            .add_message(&queue(), &format!("p:{i}"), 4, false, vec![1u8; 700], false)
            .unwrap();
    }
    for i in 0..700 {
        store
            .remove_message(&queue(), &format!("p:{i}"), false)
            .unwrap();
    }
    b.start_slave(&a.uri()).unwrap();
    assert!(a.wait_for_live_slaves(1, Duration::from_secs(20)));
    // Synchronous writes with minimumReplicas 1 while a second slave joins.
    c.start_slave(&a.uri()).unwrap();
    for i in 1500..2500 {
        store
            .add_message(&queue(), &format!("p:{i}"), 4, false, vec![2u8; 700], true)
            .unwrap();
    }
    assert!(a.wait_for_live_slaves(2, Duration::from_secs(20)));
    store.checkpoint_and_gc().unwrap();
    for i in 2500..2600 {
        store
            .add_message(&queue(), &format!("p:{i}"), 4, false, vec![3u8; 700], true)
            .unwrap();
    }
    let st = a.status();
    println!("master status: {}", st.to_json());
    assert_eq!(st.role, Role::Master);
    assert_eq!(st.live_slaves(), 2);
    wait_until(
        "both slaves to ack everything",
        Duration::from_secs(20),
        || {
            let st = a.status();
            st.slaves
                .iter()
                .all(|s| s.state == SlaveState::Live && s.lag_bytes == 0)
        },
    );
    let sb = b.status();
    println!("slave status: {}", sb.to_json());
    assert_eq!(sb.role, Role::Slave);
    assert_eq!(sb.position, a.status().position);
    wait_until(
        "the standby to apply everything",
        Duration::from_secs(20),
        || b.status().applied == Some(a.status().position),
    );
    let expected = ids(&store);
    assert_eq!(expected.len(), 1900);
    // GC deletions reach the slaves: every data file of the master is on both, and the
    // files the master deleted are gone there too.
    wait_until(
        "slaves to hold exactly the master's files",
        Duration::from_secs(20),
        || {
            let m: Vec<String> = data_files(dirs[0].path()).into_keys().collect();
            let bs: Vec<String> = data_files(dirs[1].path()).into_keys().collect();
            let cs: Vec<String> = data_files(dirs[2].path()).into_keys().collect();
            m == bs && m == cs
        },
    );
    let master_files = data_files(dirs[0].path());
    assert!(master_files.len() >= 2);
    assert_eq!(master_files, data_files(dirs[1].path()));
    assert_eq!(master_files, data_files(dirs[2].path()));

    // Failover: the master stops, b takes over with its hot standby (no replay) at epoch 2.
    drop(store);
    a.stop();
    b.promote(2).unwrap();
    assert_eq!(b.role(), Role::Master);
    assert_eq!(b.epoch(), 2);
    let store_b = b.store().unwrap();
    let rec = b.last_recovery().unwrap();
    println!("promotion of b: {:?}", rec.replay);
    assert_eq!(
        rec.replay.records, 0,
        "the hot standby had applied everything"
    );
    assert_eq!(
        ids(&store_b),
        expected,
        "the promoted slave has every message"
    );
    // The old master joins b as a slave, learns epoch 2, and can no longer be master at 1.
    a.start_slave(&b.uri()).unwrap();
    c.start_slave(&b.uri()).unwrap();
    assert!(b.wait_for_live_slaves(2, Duration::from_secs(20)));
    assert_eq!(a.epoch(), 2);
    assert_eq!(
        a.start_master(1).unwrap_err().code(),
        ErrorCode::IllegalState
    );
    assert_eq!(a.role(), Role::Slave, "a refused request changes nothing");
    for i in 2600..2700 {
        store_b
            .add_message(&queue(), &format!("p:{i}"), 4, false, vec![4u8; 700], true)
            .unwrap();
    }
    wait_until(
        "the new slaves to ack everything",
        Duration::from_secs(20),
        || {
            b.status()
                .slaves
                .iter()
                .filter(|s| s.state == SlaveState::Live && s.lag_bytes == 0)
                .count()
                == 2
        },
    );
    let expected = ids(&store_b);
    assert_eq!(expected.len(), 2000);
    // Demotion: b steps down (its store closes), a becomes master at epoch 3.
    b.demote(&a.uri()).unwrap();
    assert_eq!(
        store_b
            .add_message(&queue(), "late", 4, false, vec![0u8; 10], true)
            .unwrap_err()
            .code(),
        ErrorCode::Closed,
        "the demoted master's store refuses writes"
    );
    a.promote(3).unwrap();
    let store_a = a.store().unwrap();
    // a's standby started from b's index (seeded at join), not from a replay of b's files
    // after GC (which would deliver relocated messages later): same messages, same order.
    assert!(ids(&store_a) == expected, "a has every message, in order");
    let st = a.status();
    assert_eq!(st.epoch, 3);
    drop((store_a, store_b));
    for n in [&a, &b, &c] {
        n.stop();
    }
}

#[test]
fn too_few_slaves_time_out_and_bad_requests_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = config(d.path(), 1);
    cfg.replication_timeout = Duration::from_millis(200);
    let uri = cfg.uri.clone();
    let a = Node::new(cfg).unwrap();
    a.start_master(5).unwrap();
    let store = a.store().unwrap();
    let e = store
        .add_message(&queue(), "p:1", 4, false, vec![1u8; 10], true)
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::ReplicationTimeout, "{e}");
    // Asynchronous writes never wait; minimumReplicas 0 never waits either.
    store
        .add_message(&queue(), "p:2", 4, false, vec![1u8; 10], false)
        .unwrap();
    a.set_minimum_replicas(0);
    store
        .add_message(&queue(), "p:3", 4, false, vec![1u8; 10], true)
        .unwrap();
    assert_eq!(ids(&store).len(), 3, "the timed-out write is on the master");
    assert_eq!(
        a.start_master(6).unwrap_err().code(),
        ErrorCode::IllegalState
    );
    assert_eq!(a.start_slave(&uri).unwrap_err().code(), ErrorCode::Config);
    assert_eq!(
        a.start_slave("http://x:1").unwrap_err().code(),
        ErrorCode::Config
    );
    assert_eq!(a.promote(7).unwrap_err().code(), ErrorCode::IllegalState);
    drop(store);
    a.stop();
    // The epoch survives a restart of the node.
    drop(a);
    let again = Node::new(config(d.path(), 0)).unwrap();
    assert_eq!(again.epoch(), 5);
    assert_eq!(
        again.start_master(4).unwrap_err().code(),
        ErrorCode::IllegalState
    );
    // Role changes from inside an async runtime (an election's callback may run on one).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        again.start_master(9).unwrap();
        again.stop();
        assert_eq!(again.role(), Role::Stopped);
    });
    let mut bad = config(d.path(), 0);
    bad.store.delete_all = true;
    assert_eq!(Node::new(bad).err().unwrap().code(), ErrorCode::Config);
    let bad = NodeConfig::new(d.path(), "kdbr://nohost");
    assert_eq!(Node::new(bad).err().unwrap().code(), ErrorCode::Config);
}

/// The standby on its own over a finished journal: large files applied in steps (a 9 MiB
/// message among them), with and without a seed from the master's index (a wrong seed falls
/// back to a replay); every way ends with the store's own answer and nothing left to replay.
#[test]
fn the_standby_matches_the_store_with_a_seed_a_bad_seed_or_none() {
    use kahadb::replication::standby::Standby;
    use kahadb::replication::Position;
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        checkpoint_every: 1000,
        ..StoreConfig::default()
    };
    let (store, _) = Store::open(d.path(), cfg).unwrap();
    for i in 0..3000 {
        store
            .add_message(
                &queue(),
                &format!("p:{i}"),
                4,
                false,
                vec![5u8; 4096],
                false,
            )
            .unwrap();
    }
    store
        .add_message(&queue(), "big", 4, false, vec![6u8; 9 << 20], false)
        .unwrap();
    for i in 0..1200 {
        store
            .remove_message(&queue(), &format!("p:{i}"), false)
            .unwrap();
    }
    for i in 3000..3100 {
        store
            .add_message(&queue(), &format!("p:{i}"), 4, false, vec![5u8; 4096], true)
            .unwrap();
    }
    let expected = ids(&store);
    let w = store.journal().written_position();
    let end = Position {
        file: w.file_id,
        offset: w.offset,
    };
    store.close().unwrap();
    drop(store);
    let checkpoint = std::fs::read(d.path().join("kahadb-rs.index")).unwrap();
    let mut wrong = checkpoint.clone();
    wrong[24] ^= 0xff; // the fingerprint of the record it was taken after
    for (name, seed) in [
        ("no seed", None),
        ("the index", Some(&checkpoint)),
        ("a wrong fingerprint", Some(&wrong)),
    ] {
        let sb = Arc::new(Standby::new(d.path()));
        if let Some(seed) = seed {
            sb.seed(seed);
        }
        sb.durable(end);
        let applier = sb.spawn().unwrap();
        wait_until(
            "the standby to apply everything",
            Duration::from_secs(60),
            || sb.applied() == end,
        );
        sb.stop();
        applier.join().unwrap();
        let stats = sb.stats();
        let state = sb.take(end).unwrap();
        let (store, rec) = Store::open_with_state(d.path(), cfg, state).unwrap();
        println!(
            "{name}: {stats:?}, replayed at open: {}",
            rec.replay.records
        );
        assert_eq!(rec.replay.records, 0, "{name}: nothing left to replay");
        assert!(ids(&store) == expected, "{name}: same messages, same order");
        match name {
            "the index" => assert!(stats.records < 1000, "{name}: started from the index"),
            _ => assert!(stats.records >= 4300, "{name}: replayed every record"),
        }
        store.close().unwrap();
    }
}

/// What a stopped node stands on in an election, also after a restart of its process: the
/// lineage (the epoch of the master whose journal its own copies) and the journal's end.
#[test]
fn a_stopped_node_knows_its_lineage_and_journal_end() {
    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let a = Node::new(config(da.path(), 1)).unwrap();
    let b = Node::new(config(db.path(), 1)).unwrap();
    assert_eq!(a.status().lineage, 0);
    a.start_master(4).unwrap();
    b.start_slave(&a.uri()).unwrap();
    assert!(a.wait_for_live_slaves(1, Duration::from_secs(20)));
    let store = a.store().unwrap();
    for i in 0..300 {
        store
            .add_message(&queue(), &format!("p:{i}"), 4, false, vec![1u8; 900], true)
            .unwrap();
    }
    let end = a.status().position;
    assert_eq!(
        b.status().lineage,
        4,
        "a live slave's lineage is its master's epoch"
    );
    drop(store);
    a.stop();
    b.stop();
    for (name, n, dir) in [("master", &a, da.path()), ("slave", &b, db.path())] {
        let st = n.status();
        assert_eq!(st.role, Role::Stopped);
        assert_eq!((st.lineage, st.position), (4, end), "{name} stopped");
        let again = Node::new(config(dir, 0)).unwrap();
        let st = again.status();
        assert_eq!(
            (st.lineage, st.position),
            (4, end),
            "{name} after a restart"
        );
    }
}

/// A slave whose master is gone keeps a whole copy of its journal: while it retries, its link
/// reads connecting, never syncing (which would make it ineligible in an election). A journal
/// that a sync was changing when the node stopped reads syncing until a sync completes.
#[test]
fn only_a_journal_being_changed_reads_syncing() {
    use kahadb::replication::live::LinkState;
    use kahadb::replication::sync::SYNCING_FILE;

    let da = tempfile::tempdir().unwrap();
    let db = tempfile::tempdir().unwrap();
    let a = Node::new(config(da.path(), 1)).unwrap();
    let b = Node::new(config(db.path(), 0)).unwrap();
    a.start_master(1).unwrap();
    b.start_slave(&a.uri()).unwrap();
    assert!(a.wait_for_live_slaves(1, Duration::from_secs(20)));
    let store = a.store().unwrap();
    for i in 0..50 {
        store
            .add_message(&queue(), &format!("s:{i}"), 4, false, vec![2u8; 500], true)
            .unwrap();
    }
    drop(store);
    let master_uri = a.uri();
    a.stop();
    // Two seconds of reconnect attempts (backoff from 100 ms), sampled every 2 ms.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut states = std::collections::BTreeSet::new();
    while Instant::now() < deadline {
        let st = b.status();
        let link = st.link.expect("a slave has a link");
        states.insert(format!("{link:?}"));
        assert_ne!(
            link,
            LinkState::Syncing,
            "a slave retrying a dead master still holds a whole journal"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(states.contains("Connecting"), "it retried: {states:?}");
    assert!(!db.path().join(SYNCING_FILE).exists());
    b.stop();

    // A sync that was changing the journal when the node stopped (the marker it leaves).
    std::fs::write(db.path().join(SYNCING_FILE), b"").unwrap();
    let b = Node::new(config(db.path(), 0)).unwrap();
    b.start_slave(&master_uri).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        b.status().link,
        Some(LinkState::Syncing),
        "an incomplete journal reads syncing"
    );
    // Its master returns: the sync completes, the marker goes, the link goes live.
    a.start_master(2).unwrap();
    wait_until("the slave is live again", Duration::from_secs(30), || {
        b.status().link == Some(LinkState::Live)
    });
    assert!(!db.path().join(SYNCING_FILE).exists(), "the marker is gone");
    a.stop();
    b.stop();
}

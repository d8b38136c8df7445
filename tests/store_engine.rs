//! The live store: changes recorded from many threads land in journal order in the index,
//! survive a reopen (from the checkpoint, or rebuilt from the journal alone), and the
//! checkpoint bounds what a restart replays.

use std::sync::Arc;

use kahadb::journal::JournalConfig;
use kahadb::store::checkpoint::INDEX_FILE;
use kahadb::store::codec::*;
use kahadb::store::state::{DestKey, State};
use kahadb::store::{Store, StoreConfig};

fn config(checkpoint_every: u64) -> StoreConfig {
    StoreConfig {
        journal: JournalConfig {
            max_file_length: 1 << 20,
            max_batch_size: 256 << 10,
            ..JournalConfig::default()
        },
        checkpoint_every,
        ..StoreConfig::default()
    }
}

fn add(queue: &str, id: &str, body: &[u8]) -> JournalCommand {
    KahaAddMessageCommand {
        destination: Some(KahaDestination::new(DestinationType::Queue, queue)),
        message_id: Some(id.to_string()),
        message: Some(body.to_vec()),
        ..Default::default()
    }
    .into()
}

fn remove(queue: &str, id: &str) -> JournalCommand {
    KahaRemoveMessageCommand {
        destination: Some(KahaDestination::new(DestinationType::Queue, queue)),
        message_id: Some(id.to_string()),
        ..Default::default()
    }
    .into()
}

fn snapshot(store: &Store) -> State {
    store.read_state(|s| s.clone())
}

#[test]
fn concurrent_changes_follow_journal_order_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, rec) = Store::open(dir.path(), config(0)).unwrap();
    assert!(rec.checkpoint.is_none());
    let store = Arc::new(store);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let q = format!("q{}", t % 2); // two threads per queue
                for i in 0..400 {
                    let id = format!("ID:{t}:{i}");
                    store
                        .record(&add(&q, &id, id.as_bytes()), i % 2 == 0)
                        .unwrap();
                    if i % 4 == 3 {
                        store
                            .record(&remove(&q, &format!("ID:{t}:{}", i - 1)), true)
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let live = snapshot(&store);
    for q in ["q0", "q1"] {
        let d = live
            .destination(&DestKey::new(DestinationType::Queue, q))
            .unwrap();
        assert_eq!(d.message_count(), 2 * 300);
        // Sequence order is journal order.
        let locs: Vec<_> = d.messages().map(|(_, m)| m.location).collect();
        assert!(locs.windows(2).all(|w| w[0] < w[1]), "{q}");
        let (_, first) = d.messages().next().unwrap();
        assert_eq!(
            store.message_body(first.location).unwrap(),
            first.message_id.to_string().as_bytes()
        );
    }
    store.close().unwrap();

    // From the checkpoint written at close: nothing to replay.
    let (store, rec) = Store::open(dir.path(), config(0)).unwrap();
    assert!(rec.checkpoint.is_some());
    assert_eq!(rec.replay.records, 0);
    assert_eq!(snapshot(&store), live);
    store.close().unwrap();

    // Without the index file: rebuilt from the journal, the same.
    std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    let (store, rec) = Store::open(dir.path(), config(0)).unwrap();
    assert!(rec.checkpoint.is_none());
    assert_eq!(rec.replay.records, 4 * 400 + 4 * 100);
    assert_eq!(snapshot(&store), live);
}

#[test]
fn periodic_checkpoints_bound_the_replay_after_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = Store::open(dir.path(), config(1000)).unwrap();
        for i in 0..5500 {
            store
                .record(&add("q", &format!("ID:{i}"), b"x"), false)
                .unwrap();
        }
        store.journal().sync().unwrap();
        // Dropped without close: no final checkpoint.
    }
    let (store, rec) = Store::open(dir.path(), config(1000)).unwrap();
    assert!(rec.checkpoint.is_some());
    assert!(rec.replay.records <= 1000, "{rec:?}");
    let d = snapshot(&store);
    let q = d
        .destination(&DestKey::new(DestinationType::Queue, "q"))
        .unwrap();
    assert_eq!(q.message_count(), 5500);
}

#[test]
fn message_body_refuses_locations_that_are_not_messages() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config(0)).unwrap();
    let loc = store.record(&remove("q", "ID:none"), true).unwrap();
    let e = store.message_body(loc).unwrap_err();
    assert_eq!(e.code(), kahadb::ErrorCode::InvalidLocation);
    assert!(e.message().contains("not a message"), "{e}");
}

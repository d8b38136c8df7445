//! Data-file GC and ack compaction: disk use follows live data (one stuck message does not keep
//! the journal), and whatever files remain replay, without the checkpoint, to the same messages
//! and subscriptions (no deleted subscription or consumed message comes back).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use kahadb::journal::{data_file_name, Journal, JournalConfig, Location, Preallocation};
use kahadb::journal::{SyncStrategy, LOCK_FILE};
use kahadb::store::checkpoint::INDEX_FILE;
use kahadb::store::codec::*;
use kahadb::store::gc;
use kahadb::store::state::{DestKey, State};
use kahadb::store::{Store, StoreConfig};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn config(max_file_length: u32, checkpoint_every: u64, relocate_max_bytes: u64) -> StoreConfig {
    StoreConfig {
        journal: JournalConfig {
            max_file_length,
            max_batch_size: (max_file_length / 4).min(4 << 20),
            sync_strategy: SyncStrategy::Never,
            preallocation: Preallocation::Sparse,
        },
        checkpoint_every,
        relocate_max_bytes,
        ..StoreConfig::default()
    }
}

fn queue(name: &str) -> KahaDestination {
    KahaDestination::new(DestinationType::Queue, name)
}

fn topic(name: &str) -> KahaDestination {
    KahaDestination::new(DestinationType::Topic, name)
}

fn add(dest: KahaDestination, id: &str, body: Vec<u8>) -> JournalCommand {
    KahaAddMessageCommand {
        destination: Some(dest),
        message_id: Some(id.to_string()),
        message: Some(body),
        ..Default::default()
    }
    .into()
}

fn add_tx(
    dest: KahaDestination,
    id: &str,
    body: Vec<u8>,
    tx: KahaTransactionInfo,
) -> JournalCommand {
    KahaAddMessageCommand {
        transaction_info: Some(tx),
        destination: Some(dest),
        message_id: Some(id.to_string()),
        message: Some(body),
        ..Default::default()
    }
    .into()
}

fn remove(dest: KahaDestination, id: &str) -> JournalCommand {
    KahaRemoveMessageCommand {
        destination: Some(dest),
        message_id: Some(id.to_string()),
        ..Default::default()
    }
    .into()
}

fn ack(dest: KahaDestination, id: &str, sub: &str) -> JournalCommand {
    KahaRemoveMessageCommand {
        destination: Some(dest),
        message_id: Some(id.to_string()),
        subscription_key: Some(sub.to_string()),
        ..Default::default()
    }
    .into()
}

fn subscribe(dest: KahaDestination, key: &str) -> JournalCommand {
    KahaSubscriptionCommand {
        destination: Some(dest),
        subscription_key: Some(key.to_string()),
        retroactive: Some(false),
        subscription_info: Some(format!("info of {key}").into_bytes()),
    }
    .into()
}

fn unsubscribe(dest: KahaDestination, key: &str) -> JournalCommand {
    KahaSubscriptionCommand {
        destination: Some(dest),
        subscription_key: Some(key.to_string()),
        ..Default::default()
    }
    .into()
}

fn body(id: &str, len: usize) -> Vec<u8> {
    let mut b = id.as_bytes().to_vec();
    b.resize(len.max(b.len()), b'.');
    b
}

fn qkey(name: &str) -> DestKey {
    DestKey::new(DestinationType::Queue, name)
}

fn tkey(name: &str) -> DestKey {
    DestKey::new(DestinationType::Topic, name)
}

/// What a broker sees, without sequence numbers and record locations: per destination that
/// holds anything, its messages (id → size) and its subscriptions (key → info and the ids
/// pending for it); prepared transactions with their operations' message ids.
type Content = (
    BTreeMap<
        DestKey,
        (
            BTreeMap<String, u32>,
            BTreeMap<String, (Vec<u8>, BTreeSet<String>)>,
        ),
    >,
    BTreeMap<String, Vec<String>>,
);

fn content(state: &State) -> Content {
    let mut dests = BTreeMap::new();
    for (key, d) in state.destinations() {
        if d.message_count() == 0 && d.subscriptions().is_empty() {
            continue;
        }
        let id_of: BTreeMap<u64, String> = d
            .messages()
            .map(|(seq, m)| (seq, m.message_id.to_string()))
            .collect();
        let messages = d
            .messages()
            .map(|(_, m)| (m.message_id.to_string(), m.size))
            .collect();
        let subs = d
            .subscriptions()
            .iter()
            .map(|(k, s)| {
                let pending = s.pending.iter().map(|seq| id_of[seq].clone()).collect();
                (k.clone(), (s.info.clone(), pending))
            })
            .collect();
        dests.insert(key.clone(), (messages, subs));
    }
    let prepared = state
        .prepared()
        .iter()
        .map(|(tx, ops)| {
            let ops = ops
                .iter()
                .map(|op| match op {
                    kahadb::store::state::TxOp::Add { command, .. } => {
                        format!("add {}", command.message_id.clone().unwrap_or_default())
                    }
                    kahadb::store::state::TxOp::Remove { message_id, .. } => {
                        format!("remove {message_id}")
                    }
                })
                .collect();
            (format!("{tx:?}"), ops)
        })
        .collect();
    (dests, prepared)
}

fn snapshot(store: &Store) -> State {
    store.read_state(|s| s.clone())
}

/// The data files in `dir`, by id.
fn files_on_disk(dir: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            name.strip_prefix("db-")?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Replays, from the first record, a copy of the data files of `dir` (without our index and
/// without `except`): what stock KahaDB, or we without a checkpoint, would rebuild.
fn full_replay_of_copy(dir: &Path, except: &[u32]) -> State {
    let copy = tempfile::tempdir().unwrap();
    for id in files_on_disk(dir) {
        if !except.contains(&id) {
            std::fs::copy(
                dir.join(data_file_name(id)),
                copy.path().join(data_file_name(id)),
            )
            .unwrap();
        }
    }
    let j = Journal::open(copy.path(), JournalConfig::default()).unwrap();
    let (state, _) = State::replay(&j).unwrap();
    j.close().unwrap();
    state
}

/// The body of a stored message, read the way a broker would (lookup and read under a files
/// guard).
fn read_body(store: &Store, dest: &DestKey, id: &str) -> Option<Vec<u8>> {
    let _guard = store.files_guard();
    let location = store.read_state(|s| {
        let d = s.destination(dest)?;
        let seq = d.sequence_of(id)?;
        d.messages()
            .find(|(q, _)| *q == seq)
            .map(|(_, m)| m.location)
    })?;
    Some(store.message_body(location).unwrap())
}

/// Reopens the store twice, from its checkpoint and with the checkpoint removed, and checks
/// both against `live`: the checkpoint restores the very same index, a full replay of the
/// remaining files the same content.
fn check_reopen(dir: &Path, cfg: StoreConfig, live: &State) {
    let (store, rec) = Store::open(dir, cfg).unwrap();
    assert!(rec.checkpoint.is_some(), "{rec:?}");
    assert_eq!(&snapshot(&store), live, "reopened from the checkpoint");
    store.close().unwrap();
    std::fs::remove_file(dir.join(INDEX_FILE)).unwrap();
    let (store, rec) = Store::open(dir, cfg).unwrap();
    assert!(rec.checkpoint.is_none());
    assert_eq!(
        content(&snapshot(&store)),
        content(live),
        "rebuilt from the remaining data files"
    );
    store.close().unwrap();
}

/// Records `command` until it lands in data file `file` or later; returns its location.
fn fill_until_file(store: &Store, file: u32, mut next: impl FnMut(u64) -> Vec<JournalCommand>) {
    let mut i = 0;
    loop {
        let mut last = Location::new(0, 0, 0);
        for c in next(i) {
            last = store.record(&c, false).unwrap();
        }
        if last.file_id >= file {
            return;
        }
        i += 1;
    }
}

// ---------------------------------------------------------------------------------------------
// G4: one stuck message and a lot of consumed traffic
// ---------------------------------------------------------------------------------------------

/// Sends and consumes `traffic` bytes in `body_len` messages next to one message that is
/// never consumed, with the store's periodic checkpoints and cleanups. Returns the largest
/// number of data files seen during the traffic, and the number left at the end.
fn stuck_queue_message(
    dir: &Path,
    cfg: StoreConfig,
    traffic: u64,
    body_len: usize,
) -> (usize, usize) {
    let (store, _) = Store::open(dir, cfg).unwrap();
    let store = Arc::new(store);
    let stuck = body("ID:stuck", body_len);
    store
        .record(&add(queue("q"), "ID:stuck", stuck.clone()), true)
        .unwrap();
    // Readers keep reading the stuck message while it is relocated and its files deleted.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop, stuck) = (store.clone(), stop.clone(), stuck.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let got = read_body(&store, &qkey("q"), "ID:stuck");
                assert_eq!(
                    got.as_deref(),
                    Some(&stuck[..]),
                    "the stuck message is readable"
                );
                reads += 1;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            reads
        })
    };
    let mut max_files = 0;
    let mut sent = 0u64;
    let mut i = 0u64;
    let filler = vec![b'x'; body_len];
    while sent < traffic {
        let id = format!("ID:p:1:1:{i}");
        store
            .record(&add(queue("q"), &id, filler.clone()), false)
            .unwrap();
        store.record(&remove(queue("q"), &id), false).unwrap();
        sent += body_len as u64;
        i += 1;
        max_files = max_files.max(store.journal().data_file_ids().len());
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    assert!(reads > 0);
    let before = store.journal().data_file_ids();
    let report = store.checkpoint_and_gc().unwrap();
    let after = store.journal().data_file_ids();
    assert!(
        after.len() <= 3,
        "{} data files left ({after:?}; before the last cleanup: {before:?}, {report:?})",
        after.len()
    );
    assert_eq!(files_on_disk(dir), after);
    let live = snapshot(&store);
    let q = live.destination(&qkey("q")).unwrap();
    assert_eq!(q.message_count(), 1);
    assert_eq!(
        q.sequence_of("ID:stuck"),
        Some(0),
        "relocation keeps the sequence"
    );
    assert_eq!(read_body(&store, &qkey("q"), "ID:stuck").unwrap(), stuck);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().unwrap(),
        Err(_) => panic!("store still shared"),
    }
    check_reopen(dir, cfg, &live);
    (max_files, after.len())
}

#[test]
fn g4_small_one_stuck_message_leaves_at_most_three_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, 256, 4 << 20);
    let t = Instant::now();
    let (max, left) = stuck_queue_message(dir.path(), cfg, 32 << 20, 4 << 10);
    eprintln!(
        "G4 small: 1 MiB files, 32 MiB of traffic: at most {max} data files during the run, \
         {left} at the end, {:?}",
        t.elapsed()
    );
    assert!(max <= 4, "{max} data files during the run");
}

#[test]
fn g4_real_one_stuck_message_and_a_gib_of_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(32 << 20, 512, 4 << 20);
    let t = Instant::now();
    let (max, left) = stuck_queue_message(dir.path(), cfg, 1 << 30, 64 << 10);
    eprintln!(
        "G4: 32 MiB files, 1 GiB of traffic: at most {max} data files during the run, {left} at \
         the end, {:?}",
        t.elapsed()
    );
    assert!(max <= 3, "{max} data files during the run");
}

#[test]
fn topic_with_a_stuck_and_a_lagging_subscription_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(1 << 20, 256, 4 << 20);
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    let (fast, stuck) = ("c1:fast", "c2:stuck");
    store.record(&subscribe(topic("t"), fast), true).unwrap();
    store.record(&subscribe(topic("t"), stuck), true).unwrap();
    store
        .record(&add(topic("t"), "ID:m0", body("ID:m0", 2000)), true)
        .unwrap();
    store.record(&ack(topic("t"), "ID:m0", fast), true).unwrap();
    // "fast" lags 8 messages behind; "stuck" acks everything but m0 at once.
    const LAG: u64 = 8;
    let n = (32u64 << 20) / 4096;
    let mut max_files = 0;
    for i in 1..=n {
        let id = format!("ID:m{i}");
        store
            .record(&add(topic("t"), &id, body(&id, 4096)), false)
            .unwrap();
        store.record(&ack(topic("t"), &id, stuck), false).unwrap();
        if i > LAG {
            store
                .record(&ack(topic("t"), &format!("ID:m{}", i - LAG), fast), false)
                .unwrap();
        }
        max_files = max_files.max(store.journal().data_file_ids().len());
    }
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    eprintln!("topic: at most {max_files} data files during the run, {files:?} at the end");
    assert!(files.len() <= 3, "{files:?} {report:?}");
    assert!(max_files <= 4, "{max_files}");
    let live = snapshot(&store);
    let (_, subs) = &content(&live).0[&tkey("t")];
    let lagging: BTreeSet<String> = (n - LAG + 1..=n).map(|i| format!("ID:m{i}")).collect();
    assert_eq!(subs[fast].1, lagging);
    assert_eq!(subs[stuck].1, BTreeSet::from(["ID:m0".to_string()]));
    assert_eq!(
        read_body(&store, &tkey("t"), "ID:m0").unwrap(),
        body("ID:m0", 2000)
    );
    store.close().unwrap();
    check_reopen(dir.path(), cfg, &live);

    // The lagging subscription catches up: only m0 is left, for "stuck" alone.
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    for i in n - LAG + 1..=n {
        store
            .record(&ack(topic("t"), &format!("ID:m{i}"), fast), false)
            .unwrap();
    }
    store.checkpoint_and_gc().unwrap();
    let live = snapshot(&store);
    let (messages, subs) = &content(&live).0[&tkey("t")];
    assert_eq!(messages.keys().collect::<Vec<_>>(), ["ID:m0"]);
    assert!(subs[fast].1.is_empty());
    assert_eq!(subs[stuck].1.len(), 1);
    store.close().unwrap();
    check_reopen(dir.path(), cfg, &live);
}

// ---------------------------------------------------------------------------------------------
// Pins
// ---------------------------------------------------------------------------------------------

#[test]
fn a_file_of_acks_for_a_live_older_file_stays() {
    let dir = tempfile::tempdir().unwrap();
    let no_relocation = config(64 << 10, 0, 0);
    let (store, _) = Store::open(dir.path(), no_relocation).unwrap();
    // File 1: messages; all but the first are consumed by acks in file 2.
    let mut in_file_1 = Vec::new();
    for i in 0.. {
        let id = format!("ID:a{i}");
        let loc = store
            .record(&add(queue("q"), &id, body(&id, 6000)), false)
            .unwrap();
        if loc.file_id > 1 {
            store.record(&remove(queue("q"), &id), false).unwrap();
            break;
        }
        in_file_1.push(id);
    }
    for id in &in_file_1[1..] {
        let loc = store.record(&remove(queue("q"), id), false).unwrap();
        assert_eq!(loc.file_id, 2);
    }
    // Then traffic that consumes itself, up to file 5.
    fill_until_file(&store, 5, |i| {
        let id = format!("ID:f{i}");
        vec![
            add(queue("f"), &id, body(&id, 6000)),
            remove(queue("f"), &id),
        ]
    });
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    assert!(files.starts_with(&[1, 2]), "{files:?} {report:?}");
    assert!(report.deleted.is_empty() || report.deleted.iter().all(|f| *f > 2));
    assert!(store.read_state(|s| s.pins()[&2].contains(&1)));
    let live = snapshot(&store);
    assert_eq!(
        content(&full_replay_of_copy(dir.path(), &[])),
        content(&live),
        "a full replay consumes what file 2 consumed"
    );
    // Without the pin, file 2 alone would go and a replay would bring its messages back.
    let without_2 = full_replay_of_copy(dir.path(), &[2]);
    assert_eq!(
        without_2.destination(&qkey("q")).unwrap().message_count(),
        in_file_1.len()
    );
    store.close().unwrap();

    // With relocation, the first message moves to the head and the files go.
    let (store, _) = Store::open(dir.path(), config(64 << 10, 0, 1 << 20)).unwrap();
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    assert!(
        !files.contains(&1) && !files.contains(&2),
        "{files:?} {report:?}"
    );
    assert_eq!(report.relocated_files.first(), Some(&1));
    let live = snapshot(&store);
    assert_eq!(
        read_body(&store, &qkey("q"), "ID:a0").unwrap(),
        body("ID:a0", 6000)
    );
    store.close().unwrap();
    check_reopen(dir.path(), config(64 << 10, 0, 1 << 20), &live);
}

#[test]
fn a_deleted_subscription_is_not_resurrected_by_a_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let no_relocation = config(64 << 10, 0, 0);
    let (store, _) = Store::open(dir.path(), no_relocation).unwrap();
    assert_eq!(
        store
            .record(&subscribe(topic("t"), "c:gone"), false)
            .unwrap()
            .file_id,
        1
    );
    store
        .record(&subscribe(topic("t"), "c:stays"), false)
        .unwrap();
    // Keeps file 1 live.
    store
        .record(&add(queue("keep"), "ID:keep", body("ID:keep", 100)), false)
        .unwrap();
    let traffic = |i: u64| {
        let id = format!("ID:f{i}");
        vec![
            add(queue("f"), &id, body(&id, 6000)),
            remove(queue("f"), &id),
        ]
    };
    fill_until_file(&store, 3, traffic);
    let unsub = store
        .record(&unsubscribe(topic("t"), "c:gone"), false)
        .unwrap();
    assert_eq!(unsub.file_id, 3);
    fill_until_file(&store, 6, traffic);
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    assert!(
        files.contains(&1) && files.contains(&3),
        "{files:?} {report:?}"
    );
    let live = snapshot(&store);
    let replayed = full_replay_of_copy(dir.path(), &[]);
    assert_eq!(content(&replayed), content(&live));
    assert!(!replayed
        .destination(&tkey("t"))
        .unwrap()
        .subscriptions()
        .contains_key("c:gone"));
    // The pin is what kept file 3: without it the subscription would come back.
    let without_3 = full_replay_of_copy(dir.path(), &[3]);
    assert!(without_3
        .destination(&tkey("t"))
        .unwrap()
        .subscriptions()
        .contains_key("c:gone"));
    store.close().unwrap();

    // With relocation: the subscription record and the message of file 1 move, and files 1
    // and 3 go together.
    let cfg = config(64 << 10, 0, 1 << 20);
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    assert!(
        !files.contains(&1) && !files.contains(&3),
        "{files:?} {report:?}"
    );
    let live = snapshot(&store);
    let subs: Vec<_> = live
        .destination(&tkey("t"))
        .unwrap()
        .subscriptions()
        .keys()
        .cloned()
        .collect();
    assert_eq!(subs, ["c:stays"]);
    store.close().unwrap();
    check_reopen(dir.path(), cfg, &live);
}

#[test]
fn prepared_xa_operations_keep_their_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 10, 0, 1 << 20);
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    let xa = KahaTransactionInfo::xa(KahaXATransactionId::new(1, vec![7], vec![8]));
    store
        .record(&add(queue("q"), "ID:m", body("ID:m", 500)), false)
        .unwrap();
    let op = store
        .record(
            &add_tx(queue("q"), "ID:x", body("ID:x", 500), xa.clone()),
            false,
        )
        .unwrap();
    assert_eq!(op.file_id, 1);
    let mut rm = KahaRemoveMessageCommand {
        transaction_info: Some(xa.clone()),
        destination: Some(queue("q")),
        message_id: Some("ID:m".into()),
        ..Default::default()
    };
    rm.ack = Some(b"ack bytes".to_vec());
    store.record(&rm.into(), false).unwrap();
    let traffic = |i: u64| {
        let id = format!("ID:f{i}");
        vec![
            add(queue("f"), &id, body(&id, 6000)),
            remove(queue("f"), &id),
        ]
    };
    fill_until_file(&store, 2, traffic);
    let prepare = store
        .record(
            &KahaPrepareCommand {
                transaction_info: Some(xa.clone()),
            }
            .into(),
            true,
        )
        .unwrap();
    assert_eq!(prepare.file_id, 2);
    fill_until_file(&store, 6, traffic);
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    assert!(files.starts_with(&[1, 2]), "{files:?} {report:?}");
    assert!(!report.relocated_files.contains(&1), "{report:?}");
    let live = snapshot(&store);
    assert_eq!(live.prepared().len(), 1);
    let replayed = full_replay_of_copy(dir.path(), &[]);
    assert_eq!(content(&replayed), content(&live));
    assert_eq!(replayed.prepared().len(), 1);
    store.close().unwrap();
    check_reopen(dir.path(), cfg, &live);

    // Committed: the add lives on (relocated), the rest goes.
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    store
        .record(
            &KahaCommitCommand {
                transaction_info: Some(xa),
            }
            .into(),
            true,
        )
        .unwrap();
    fill_until_file(&store, 8, traffic);
    let report = store.checkpoint_and_gc().unwrap();
    let files = store.journal().data_file_ids();
    assert!(
        !files.contains(&1) && !files.contains(&2),
        "{files:?} {report:?}"
    );
    let live = snapshot(&store);
    assert!(live.prepared().is_empty());
    let (messages, _) = &content(&live).0[&qkey("q")];
    assert_eq!(messages.keys().collect::<Vec<_>>(), ["ID:x"]);
    assert_eq!(
        read_body(&store, &qkey("q"), "ID:x").unwrap(),
        body("ID:x", 500)
    );
    store.close().unwrap();
    check_reopen(dir.path(), cfg, &live);
}

/// Pins recorded by each kind of record, on a state fed with made-up locations.
#[test]
fn every_kind_of_kill_pins_its_file() {
    let at = |file: u32, n: u32| Location::new(file, n * 100, 100);
    let mut s = State::default();
    let local = KahaTransactionInfo::local(KahaLocalTransactionId::new("c", 1));
    let xa = KahaTransactionInfo::xa(KahaXATransactionId::new(1, vec![1], vec![1]));
    let cmds: Vec<(JournalCommand, Location)> = vec![
        (add(queue("q"), "a", vec![1]), at(1, 0)),
        (add(queue("q"), "b", vec![1]), at(1, 1)),
        (add(queue("q"), "c", vec![1]), at(1, 2)),
        (remove(queue("q"), "a"), at(2, 0)), // queue remove: 2 → 1
        (
            KahaUpdateMessageCommand {
                message: Some(KahaAddMessageCommand {
                    destination: Some(queue("q")),
                    message_id: Some("b".into()),
                    message: Some(vec![2]),
                    ..Default::default()
                }),
            }
            .into(),
            at(3, 0), // update: 3 → 1
        ),
        (add(queue("q"), "c", vec![1]), at(4, 0)), // duplicate: 1 → 4
        (subscribe(topic("t"), "s1"), at(5, 0)),
        (subscribe(topic("t"), "s2"), at(5, 1)),
        (add(topic("t"), "m", vec![1]), at(5, 2)),
        (ack(topic("t"), "m", "s1"), at(6, 0)), // topic ack: 6 → 5
        (subscribe(topic("t"), "s1"), at(7, 0)), // re-subscription: 7 → 5
        (unsubscribe(topic("t"), "s2"), at(8, 0)), // unsubscribe: 8 → 5 (record and m)
        (add_tx(queue("q"), "x", vec![1], local.clone()), at(9, 0)),
        (
            KahaRemoveMessageCommand {
                transaction_info: Some(local.clone()),
                destination: Some(queue("q")),
                message_id: Some("c".into()),
                ..Default::default()
            }
            .into(),
            at(10, 0),
        ),
        // commit: 11 → 9, 10 (operations) and 1 (what the remove kills); 10 → 1
        (
            KahaCommitCommand {
                transaction_info: Some(local),
            }
            .into(),
            at(11, 0),
        ),
        (add_tx(queue("q"), "y", vec![1], xa.clone()), at(12, 0)),
        (
            KahaPrepareCommand {
                transaction_info: Some(xa.clone()),
            }
            .into(),
            at(13, 0), // prepare: 13 → 12
        ),
        (
            KahaRollbackCommand {
                transaction_info: Some(xa),
            }
            .into(),
            at(14, 0), // rollback: 14 → 12
        ),
        (
            KahaRemoveDestinationCommand {
                destination: Some(queue("q")),
            }
            .into(),
            at(15, 0), // remove destination: 15 → 3 (b) and 9 (x)
        ),
    ];
    for (c, l) in &cmds {
        s.apply(c, *l);
    }
    let expected: BTreeMap<u32, BTreeSet<u32>> = [
        (1, vec![4]),
        (2, vec![1]),
        (3, vec![1]),
        (6, vec![5]),
        (7, vec![5]),
        (8, vec![5]),
        (10, vec![1]),
        (11, vec![1, 9, 10]),
        (13, vec![12]),
        (14, vec![12]),
        (15, vec![3, 9]),
    ]
    .into_iter()
    .map(|(f, to)| (f, to.into_iter().collect()))
    .collect();
    assert_eq!(s.pins(), &expected);
    // Live: s1's record (7); the topic message m went with s2 (its last subscription pending).
    assert_eq!(s.live_files().keys().copied().collect::<Vec<_>>(), [7]);

    // GC: everything dead before 16 goes but what pins a file that stays.
    let files: Vec<u32> = (1..=16).collect();
    assert_eq!(
        gc::deletable(&s, &files, 16),
        (1..=15).filter(|f| *f != 7).collect::<Vec<_>>()
    );
    // A live record in file 5: 6 and 8 (which pin it) stay with it.
    let mut pinned = s.clone();
    pinned.apply(&add(queue("late"), "l", vec![1]), at(5, 9));
    assert_eq!(
        gc::deletable(&pinned, &files, 16),
        [1, 2, 3, 4, 9, 10, 11, 12, 13, 14, 15]
    );
    // A chain: a live record in file 4 keeps 1 (the duplicate's pin), hence 2, 3, 10 and 11
    // (they pin 1), hence 15 (it pins 3).
    let mut chained = s.clone();
    chained.apply(&add(queue("late"), "l", vec![1]), at(4, 9));
    assert_eq!(
        gc::deletable(&chained, &files, 16),
        [5, 6, 8, 9, 12, 13, 14]
    );
}

// ---------------------------------------------------------------------------------------------
// Opening a directory stock KahaDB used
// ---------------------------------------------------------------------------------------------

#[test]
fn stock_index_files_are_removed_and_a_newer_one_voids_our_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 10, 0, 0);
    {
        let (store, _) = Store::open(dir.path(), cfg).unwrap();
        store
            .record(&add(queue("q"), "ID:1", vec![1]), true)
            .unwrap();
        store.close().unwrap();
    }
    // Older than our checkpoint: just removed.
    for name in kahadb::store::engine::STOCK_INDEX_FILES {
        std::fs::write(dir.path().join(name), b"stale").unwrap();
    }
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(dir.path().join("db.data"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (store, rec) = Store::open(dir.path(), cfg).unwrap();
    assert!(rec.checkpoint.is_some());
    for name in kahadb::store::engine::STOCK_INDEX_FILES {
        assert!(!dir.path().join(name).exists(), "{name}");
    }
    store.close().unwrap();
    // Newer than our checkpoint: stock KahaDB ran since; the index is rebuilt.
    std::fs::write(dir.path().join("db.data"), b"newer").unwrap();
    let (store, rec) = Store::open(dir.path(), cfg).unwrap();
    assert!(rec.checkpoint.is_none(), "{rec:?}");
    assert!(!dir.path().join("db.data").exists());
    assert!(dir.path().join(LOCK_FILE).exists());
    assert_eq!(
        snapshot(&store)
            .destination(&qkey("q"))
            .unwrap()
            .message_count(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// Model check: after every cleanup, a full replay of what remains gives the live content
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<T: Clone>(&mut self, v: &[T]) -> Option<T> {
        (!v.is_empty()).then(|| v[self.below(v.len() as u64) as usize].clone())
    }
}

/// Stored message ids of a destination, and (topics) subscription keys with their pending ids.
fn stored(store: &Store, dest: &DestKey) -> (Vec<String>, Vec<(String, Vec<String>)>) {
    store.read_state(|s| {
        let Some(d) = s.destination(dest) else {
            return Default::default();
        };
        let ids: BTreeMap<u64, String> = d
            .messages()
            .map(|(q, m)| (q, m.message_id.to_string()))
            .collect();
        let subs = d
            .subscriptions()
            .iter()
            .map(|(k, sub)| {
                (
                    k.clone(),
                    sub.pending.iter().map(|q| ids[q].clone()).collect(),
                )
            })
            .collect();
        (ids.into_values().collect(), subs)
    })
}

fn random_workload(seed: u64, steps: u64) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(16 << 10, 0, 8 << 10);
    let (mut store, _) = Store::open(dir.path(), cfg).unwrap();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let queues = ["q0", "q1"];
    let mut next_id = 0u64;
    let mut prepared: Vec<KahaTransactionInfo> = Vec::new();
    let mut next_tx = 0i64;
    let mut cleanups = 0;
    let mut deleted = 0;
    let mut relocated = 0;
    for step in 0..steps {
        let mut fresh = || {
            next_id += 1;
            format!("ID:{seed}:{next_id}")
        };
        let len = 20 + rng.below(1500) as usize;
        let q = queues[rng.below(2) as usize];
        match rng.below(100) {
            0..=29 => {
                let id = fresh();
                store
                    .record(&add(queue(q), &id, body(&id, len)), false)
                    .unwrap();
            }
            30..=49 => {
                let (ids, _) = stored(&store, &qkey(q));
                if let Some(id) = rng.pick(&ids) {
                    store.record(&remove(queue(q), &id), false).unwrap();
                }
            }
            50..=53 => {
                // An update (a redelivery count, say) of a stored queue message.
                let (ids, _) = stored(&store, &qkey(q));
                if let Some(id) = rng.pick(&ids) {
                    let update = KahaUpdateMessageCommand {
                        message: Some(KahaAddMessageCommand {
                            destination: Some(queue(q)),
                            message_id: Some(id.clone()),
                            message: Some(body(&id, len)),
                            ..Default::default()
                        }),
                    };
                    store.record(&update.into(), false).unwrap();
                }
            }
            54..=55 => {
                // A duplicate add of a stored message, or a re-add of a consumed one.
                let id = format!("ID:{seed}:{}", 1 + rng.below(next_id));
                store
                    .record(&add(queue(q), &id, body(&id, len)), false)
                    .unwrap();
            }
            56..=71 => {
                let id = fresh();
                store
                    .record(&add(topic("t"), &id, body(&id, len)), false)
                    .unwrap();
            }
            72..=85 => {
                let (_, subs) = stored(&store, &tkey("t"));
                if let Some((sub, pending)) = rng.pick(&subs) {
                    if let Some(id) = rng.pick(&pending) {
                        store.record(&ack(topic("t"), &id, &sub), false).unwrap();
                    }
                }
            }
            86..=88 => {
                // Subscribe, re-subscribe (which starts afresh) or unsubscribe. Not
                // retroactive: what a retroactive subscription gets depends on what was stored
                // at that moment, which a full replay after GC does not always reproduce
                // (docs/STORE.md §6.6).
                let key = format!("c:s{}", rng.below(4));
                let mut c = KahaSubscriptionCommand {
                    destination: Some(topic("t")),
                    subscription_key: Some(key.clone()),
                    retroactive: Some(false),
                    subscription_info: Some(format!("info of {key}").into_bytes()),
                };
                if rng.below(3) == 0 {
                    c.subscription_info = None; // unsubscribe
                    c.retroactive = None;
                }
                store.record(&c.into(), false).unwrap();
            }
            89..=93 => {
                // A local transaction: a few adds and removes, committed or rolled back.
                next_tx += 1;
                let tx = KahaTransactionInfo::local(KahaLocalTransactionId::new("c", next_tx));
                let (ids, _) = stored(&store, &qkey(q));
                let mut cmds = Vec::new();
                for _ in 0..1 + rng.below(3) {
                    if rng.below(2) == 0 {
                        let id = fresh();
                        cmds.push(add_tx(queue(q), &id, body(&id, len), tx.clone()));
                    } else if let Some(id) = rng.pick(&ids) {
                        let mut r = KahaRemoveMessageCommand {
                            transaction_info: Some(tx.clone()),
                            destination: Some(queue(q)),
                            message_id: Some(id),
                            ..Default::default()
                        };
                        r.ack = None;
                        cmds.push(r.into());
                    }
                }
                cmds.push(if rng.below(4) == 0 {
                    KahaRollbackCommand {
                        transaction_info: Some(tx),
                    }
                    .into()
                } else {
                    KahaCommitCommand {
                        transaction_info: Some(tx),
                    }
                    .into()
                });
                store
                    .write(false, |w| {
                        for c in &cmds {
                            w.record(c)?;
                        }
                        Ok(())
                    })
                    .unwrap();
            }
            94..=96 => {
                // XA: prepare now (one add, maybe a remove), decide later.
                next_tx += 1;
                let tx = KahaTransactionInfo::xa(KahaXATransactionId::new(
                    1,
                    next_tx.to_be_bytes().to_vec(),
                    vec![1],
                ));
                let id = fresh();
                let mut cmds = vec![add_tx(queue(q), &id, body(&id, len), tx.clone())];
                let (ids, _) = stored(&store, &qkey(q));
                if let Some(id) = rng.pick(&ids) {
                    cmds.push(
                        KahaRemoveMessageCommand {
                            transaction_info: Some(tx.clone()),
                            destination: Some(queue(q)),
                            message_id: Some(id),
                            ack: Some(b"xa ack".to_vec()),
                            ..Default::default()
                        }
                        .into(),
                    );
                }
                cmds.push(
                    KahaPrepareCommand {
                        transaction_info: Some(tx.clone()),
                    }
                    .into(),
                );
                store
                    .write(false, |w| {
                        for c in &cmds {
                            w.record(c)?;
                        }
                        Ok(())
                    })
                    .unwrap();
                prepared.push(tx);
            }
            97..=98 => {
                if !prepared.is_empty() {
                    let tx = prepared.remove(rng.below(prepared.len() as u64) as usize);
                    let c: JournalCommand = if rng.below(2) == 0 {
                        KahaCommitCommand {
                            transaction_info: Some(tx),
                        }
                        .into()
                    } else {
                        KahaRollbackCommand {
                            transaction_info: Some(tx),
                        }
                        .into()
                    };
                    store.record(&c, false).unwrap();
                }
            }
            _ => {
                if rng.below(4) == 0 {
                    let c = KahaRemoveDestinationCommand {
                        destination: Some(queue(q)),
                    };
                    store.record(&c.into(), false).unwrap();
                }
            }
        }
        if step % 97 == 96 {
            let report = store.checkpoint_and_gc().unwrap();
            cleanups += 1;
            deleted += report.deleted.len();
            relocated += report.relocated_files.len();
            let live = snapshot(&store);
            assert_eq!(
                content(&full_replay_of_copy(dir.path(), &[])),
                content(&live),
                "seed {seed}, step {step}: a full replay of data files {:?} differs ({report:?})",
                store.journal().data_file_ids()
            );
            // Every stored message is readable.
            for (key, d) in live.destinations() {
                for (_, m) in d.messages() {
                    let got = store.message_body(m.location).unwrap();
                    assert_eq!(
                        got,
                        body(&m.message_id.to_string(), got.len()),
                        "{key:?} {}",
                        m.message_id
                    );
                }
            }
            if cleanups % 5 == 0 {
                store.close().unwrap();
                let (reopened, rec) = Store::open(dir.path(), cfg).unwrap();
                assert!(rec.checkpoint.is_some());
                assert_eq!(snapshot(&reopened), live, "seed {seed}: reopened");
                store = reopened;
            }
        }
    }
    assert!(
        deleted > 0 && relocated > 0,
        "seed {seed}: {deleted} {relocated}"
    );
    let live_files = store.read_state(|s| s.live_files().len());
    let files = store.journal().data_file_ids().len();
    eprintln!(
        "seed {seed}: {cleanups} cleanups, {deleted} files deleted, {relocated} relocated, \
         {files} data files left ({live_files} live)"
    );
}

#[test]
fn random_workloads_replay_to_the_live_content_after_every_cleanup() {
    // Independent seeds in parallel: the time goes into waiting for syncs.
    let seeds: Vec<_> = (1..=12)
        .map(|seed| std::thread::spawn(move || random_workload(seed, 3000)))
        .collect();
    for s in seeds {
        if let Err(panic) = s.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cleanups while another thread writes, then an unclean stop
// ---------------------------------------------------------------------------------------------

/// A cleanup decides on the live index, which is ahead of its checkpoint: a file may go because
/// of a remove recorded after the checkpoint. Recovery from that checkpoint plus the journal
/// after it must still end in the live state.
#[test]
fn cleanups_during_traffic_then_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(64 << 10, 0, 64 << 10);
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    let store = Arc::new(store);
    store.record(&subscribe(topic("t"), "c:a"), true).unwrap();
    store.record(&subscribe(topic("t"), "c:b"), true).unwrap();
    store
        .record(&add(queue("q"), "ID:stuck", body("ID:stuck", 3000)), true)
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("ID:w:{i}");
                store
                    .record(&add(queue("q"), &id, body(&id, 3000)), false)
                    .unwrap();
                store
                    .record(&add(topic("t"), &id, body(&id, 2000)), false)
                    .unwrap();
                if i >= 3 {
                    let old = format!("ID:w:{}", i - 3);
                    store.record(&remove(queue("q"), &old), false).unwrap();
                    store.record(&ack(topic("t"), &old, "c:a"), false).unwrap();
                    if i != 7 {
                        store.record(&ack(topic("t"), &old, "c:b"), false).unwrap();
                    }
                }
                i += 1;
            }
            i
        })
    };
    let mut deleted = 0;
    let mut relocated = 0;
    for _ in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let report = store.checkpoint_and_gc().unwrap();
        deleted += report.deleted.len();
        relocated += report.relocated_files.len();
    }
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    let live = snapshot(&store);
    eprintln!(
        "{sent} rounds, {deleted} files deleted, {relocated} relocated, {} left",
        store.journal().data_file_ids().len()
    );
    assert!(deleted > 0 && relocated > 0);
    // Unclean stop: no final checkpoint (the journal is written out when dropped).
    drop(store);
    let (store, rec) = Store::open(dir.path(), cfg).unwrap();
    assert!(rec.checkpoint.is_some());
    assert!(rec.replay.records > 0, "{rec:?}");
    assert_eq!(snapshot(&store), live);
    store.close().unwrap();
    std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    let (store, _) = Store::open(dir.path(), cfg).unwrap();
    assert_eq!(content(&snapshot(&store)), content(&live));
}

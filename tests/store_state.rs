//! The store's state machine, fed through a real journal: commands are encoded with the codec,
//! appended, and the state is rebuilt by replaying the journal (as recovery will).

use kahadb::journal::{Journal, JournalConfig};
use kahadb::store::codec::*;
use kahadb::store::state::{DestKey, State, TxKey, TxOp};

fn queue(name: &str) -> KahaDestination {
    KahaDestination::new(DestinationType::Queue, name)
}

fn topic(name: &str) -> KahaDestination {
    KahaDestination::new(DestinationType::Topic, name)
}

fn add(dest: KahaDestination, id: &str, tx: Option<KahaTransactionInfo>) -> JournalCommand {
    KahaAddMessageCommand {
        transaction_info: tx,
        destination: Some(dest),
        message_id: Some(id.to_string()),
        message: Some(format!("body of {id}").into_bytes()),
        ..Default::default()
    }
    .into()
}

fn remove(
    dest: KahaDestination,
    id: &str,
    sub: Option<&str>,
    tx: Option<KahaTransactionInfo>,
) -> JournalCommand {
    KahaRemoveMessageCommand {
        transaction_info: tx,
        destination: Some(dest),
        message_id: Some(id.to_string()),
        subscription_key: sub.map(str::to_string),
        ..Default::default()
    }
    .into()
}

fn subscribe(dest: KahaDestination, key: &str, retroactive: bool) -> JournalCommand {
    KahaSubscriptionCommand {
        destination: Some(dest),
        subscription_key: Some(key.to_string()),
        retroactive: Some(retroactive),
        subscription_info: Some(format!("info {key}").into_bytes()),
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

fn local(id: i64) -> KahaTransactionInfo {
    KahaTransactionInfo::local(KahaLocalTransactionId::new("ID:conn-1", id))
}

fn xa(n: u8) -> KahaTransactionInfo {
    KahaTransactionInfo::xa(KahaXATransactionId::new(0x1234, vec![n], vec![n, n, n]))
}

fn outcome(kind: &str, tx: KahaTransactionInfo) -> JournalCommand {
    match kind {
        "prepare" => KahaPrepareCommand {
            transaction_info: Some(tx),
        }
        .into(),
        "commit" => KahaCommitCommand {
            transaction_info: Some(tx),
        }
        .into(),
        _ => KahaRollbackCommand {
            transaction_info: Some(tx),
        }
        .into(),
    }
}

/// Writes the commands to a fresh journal and replays it.
fn replay(commands: &[JournalCommand]) -> (State, kahadb::store::state::ReplayReport) {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    for c in commands {
        j.append(&c.encode(), false).unwrap();
    }
    j.sync().unwrap();
    j.close().unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    State::replay(&j).unwrap()
}

fn ids(state: &State, dest: &DestKey) -> Vec<String> {
    state
        .destination(dest)
        .map(|d| {
            d.messages()
                .map(|(_, m)| m.message_id.to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn queue_adds_and_removes_in_order() {
    let q = DestKey::new(DestinationType::Queue, "orders");
    let (state, report) = replay(&[
        add(queue("orders"), "m1", None),
        add(queue("orders"), "m2", None),
        add(queue("orders"), "m3", None),
        remove(queue("orders"), "m2", None, None),
        add(queue("orders"), "m1", None), // duplicate: ignored
        remove(queue("nowhere"), "m9", None, None),
        KahaTraceCommand::default().into(),
    ]);
    assert_eq!(ids(&state, &q), ["m1", "m3"]);
    let d = state.destination(&q).unwrap();
    assert_eq!(d.message_count(), 2);
    assert_eq!(d.message_bytes(), 2 * "body of m1".len() as u64);
    // Sequences follow the adds (m3 keeps the third one).
    assert_eq!(d.sequence_of("m3"), Some(2));
    assert_eq!(report.records, 7);
    assert_eq!(report.ignored, 1);
}

#[test]
fn topic_messages_live_until_every_subscription_acks() {
    let t = DestKey::new(DestinationType::Topic, "news");
    let (state, _) = replay(&[
        add(topic("news"), "early", None), // no subscriber yet: not kept
        subscribe(topic("news"), "c1:a", false),
        subscribe(topic("news"), "c2:b", false),
        add(topic("news"), "m1", None),
        add(topic("news"), "m2", None),
        remove(topic("news"), "m1", Some("c1:a"), None),
        remove(topic("news"), "m2", Some("c1:a"), None),
        remove(topic("news"), "m2", Some("c2:b"), None),
        remove(topic("news"), "m2", Some("c2:b"), None), // repeated ack: harmless
    ]);
    let d = state.destination(&t).unwrap();
    assert_eq!(ids(&state, &t), ["m1"]);
    assert_eq!(d.messages().next().unwrap().1.refs, 1);
    let subs = d.subscriptions();
    assert!(subs["c1:a"].pending.is_empty());
    assert_eq!(subs["c2:b"].pending.len(), 1);
    assert_eq!(subs["c2:b"].info, b"info c2:b");
}

#[test]
fn unsubscribe_releases_messages_and_retroactive_sees_the_backlog() {
    let t = DestKey::new(DestinationType::Topic, "t");
    let (state, _) = replay(&[
        subscribe(topic("t"), "a", false),
        add(topic("t"), "m1", None),
        add(topic("t"), "m2", None),
        subscribe(topic("t"), "late", true), // retroactive: gets m1 and m2
        unsubscribe(topic("t"), "a"),
    ]);
    let d = state.destination(&t).unwrap();
    assert_eq!(ids(&state, &t), ["m1", "m2"]);
    assert_eq!(d.subscriptions()["late"].pending.len(), 2);
    assert!(!d.subscriptions().contains_key("a"));
    let (state, _) = replay(&[
        subscribe(topic("t"), "a", false),
        add(topic("t"), "m1", None),
        unsubscribe(topic("t"), "a"),
    ]);
    assert!(ids(&state, &t).is_empty(), "nobody left to consume m1");
}

#[test]
fn local_transactions_are_invisible_until_commit_and_in_doubt_ones_roll_back() {
    let q = DestKey::new(DestinationType::Queue, "q");
    let (state, report) = replay(&[
        add(queue("q"), "plain", None),
        add(queue("q"), "t1-a", Some(local(1))),
        add(queue("q"), "t2-a", Some(local(2))),
        remove(queue("q"), "plain", None, Some(local(1))),
        add(queue("q"), "t1-b", Some(local(1))),
        outcome("commit", local(1)),
        add(queue("q"), "t3-a", Some(local(3))),
        outcome("rollback", local(3)),
        // local(2) never ends: rolled back at the end of the replay
    ]);
    assert_eq!(ids(&state, &q), ["t1-a", "t1-b"]);
    assert_eq!(report.rolled_back_in_doubt, 1);
    assert!(state.prepared().is_empty());
}

#[test]
fn prepared_xa_transactions_survive_replay_and_commit_later() {
    let q = DestKey::new(DestinationType::Queue, "q");
    let first = [
        add(queue("q"), "x1", Some(xa(1))),
        remove(queue("q"), "gone", None, Some(xa(1))),
        outcome("prepare", xa(1)),
        add(queue("q"), "x2", Some(xa(2))), // never prepared: rolled back
        add(queue("q"), "gone", None),
    ];
    let (state, report) = replay(&first);
    assert_eq!(ids(&state, &q), ["gone"]);
    assert_eq!(report.rolled_back_in_doubt, 1);
    let prepared = state.prepared();
    assert_eq!(prepared.len(), 1);
    let (tx, ops) = prepared.iter().next().unwrap();
    assert!(tx.is_xa());
    assert!(matches!(tx, TxKey::Xa { format: 0x1234, .. }));
    assert_eq!(ops.len(), 2);
    assert!(matches!(&ops[0], TxOp::Add { .. }));

    let mut then_commit = first.to_vec();
    then_commit.push(outcome("commit", xa(1)));
    let (state, _) = replay(&then_commit);
    assert_eq!(
        ids(&state, &q),
        ["x1"],
        "the commit adds x1 and removes 'gone'"
    );
    assert!(state.prepared().is_empty());
}

#[test]
fn update_moves_a_message_and_remove_destination_drops_it_all() {
    let q = DestKey::new(DestinationType::Queue, "q");
    let update: JournalCommand = KahaUpdateMessageCommand {
        message: Some(KahaAddMessageCommand {
            destination: Some(queue("q")),
            message_id: Some("m1".into()),
            message: Some(b"redelivered".to_vec()),
            ..Default::default()
        }),
    }
    .into();
    let (state, _) = replay(&[add(queue("q"), "m1", None), update.clone()]);
    let d = state.destination(&q).unwrap();
    let (_, m) = d.messages().next().unwrap();
    assert_eq!(d.message_count(), 1);
    assert_eq!(m.location, state.last_applied().unwrap());
    let (state, _) = replay(&[
        add(queue("q"), "m1", None),
        add(queue("other"), "o1", None),
        KahaRemoveDestinationCommand {
            destination: Some(queue("q")),
        }
        .into(),
    ]);
    assert!(state.destination(&q).is_none());
    assert_eq!(
        ids(&state, &DestKey::new(DestinationType::Queue, "other")),
        ["o1"]
    );
}

#[test]
fn priorities_are_indexed_only_with_priority_support() {
    let with = KahaAddMessageCommand {
        destination: Some(queue("p")),
        message_id: Some("hi".into()),
        message: Some(vec![1]),
        priority: Some(9),
        priority_supported: Some(true),
        ..Default::default()
    };
    let without = KahaAddMessageCommand {
        message_id: Some("plain".into()),
        priority_supported: None,
        ..with.clone()
    };
    let (state, _) = replay(&[with.into(), without.into()]);
    let d = state
        .destination(&DestKey::new(DestinationType::Queue, "p"))
        .unwrap();
    let prios: Vec<u8> = d.messages().map(|(_, m)| m.priority).collect();
    assert_eq!(prios, [9, 4]);
}

#[test]
fn a_corrupt_record_fails_the_replay_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    j.append(&add(queue("q"), "m1", None).encode(), true)
        .unwrap();
    j.append(&[1, 0xff, 0xff], true).unwrap();
    let e = State::replay(&j).unwrap_err();
    assert_eq!(e.code(), kahadb::ErrorCode::Corrupt);
    assert!(e.message().contains("journal record at 1:"), "{e}");
}

#[test]
fn last_unsubscribe_drops_the_topic_and_unknown_ones_create_nothing() {
    let t = DestKey::new(DestinationType::Topic, "t");
    let u = DestKey::new(DestinationType::Topic, "u");
    let (state, _) = replay(&[
        subscribe(topic("t"), "a", false),
        add(topic("t"), "m1", None),
        unsubscribe(topic("t"), "a"),
        unsubscribe(topic("u"), "nobody"),
    ]);
    assert!(state.destination(&t).is_none());
    assert!(state.destination(&u).is_none());
}

#[test]
fn updates_adjust_sizes_and_empty_prepares_are_not_recovered() {
    let q = DestKey::new(DestinationType::Queue, "q");
    let update: JournalCommand = KahaUpdateMessageCommand {
        message: Some(KahaAddMessageCommand {
            destination: Some(queue("q")),
            message_id: Some("m1".into()),
            message: Some(vec![0u8; 1000]),
            ..Default::default()
        }),
    }
    .into();
    let (state, _) = replay(&[
        add(queue("q"), "m1", None),
        update,
        outcome("prepare", xa(9)), // a prepare with no operations
    ]);
    assert_eq!(state.destination(&q).unwrap().message_bytes(), 1000);
    assert!(state.prepared().is_empty());
}

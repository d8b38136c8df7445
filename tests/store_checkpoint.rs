//! Checkpoints: recovery = newest valid checkpoint + the journal after it, equal to a full
//! replay; a damaged or foreign checkpoint is rejected with a reason and the index rebuilt.

use std::path::Path;

use kahadb::journal::{Journal, JournalConfig};
use kahadb::store::checkpoint::{self, INDEX_FILE};
use kahadb::store::codec::*;
use kahadb::store::state::State;

/// A deterministic workload over queues, a topic with subscriptions, and transactions.
fn workload(n: u64) -> Vec<JournalCommand> {
    let mut out = Vec::new();
    let t = KahaDestination::new(DestinationType::Topic, "t");
    out.push(
        KahaSubscriptionCommand {
            destination: Some(t.clone()),
            subscription_key: Some("c:s1".into()),
            retroactive: Some(false),
            subscription_info: Some(b"s1".to_vec()),
        }
        .into(),
    );
    for i in 0..n {
        let q = KahaDestination::new(DestinationType::Queue, format!("q{}", i % 3));
        let tx = (i % 7 == 0).then(|| {
            KahaTransactionInfo::local(KahaLocalTransactionId::new("ID:c", (i / 7) as i64))
        });
        out.push(
            KahaAddMessageCommand {
                transaction_info: tx.clone(),
                destination: Some(q.clone()),
                message_id: Some(format!("ID:p:1:1:{i}")),
                message: Some(vec![i as u8; 10 + (i % 50) as usize]),
                priority: Some((i % 10) as i32),
                priority_supported: Some(i % 2 == 0),
            }
            .into(),
        );
        if let Some(tx) = tx {
            // Every other transaction commits after the next add, the rest roll back.
            if (i / 7) % 2 == 0 {
                out.push(
                    KahaCommitCommand {
                        transaction_info: Some(tx),
                    }
                    .into(),
                );
            } else {
                out.push(
                    KahaRollbackCommand {
                        transaction_info: Some(tx),
                    }
                    .into(),
                );
            }
        }
        if i % 3 == 1 {
            out.push(
                KahaRemoveMessageCommand {
                    destination: Some(q),
                    message_id: Some(format!("ID:p:1:1:{}", i - 1)),
                    ..Default::default()
                }
                .into(),
            );
        }
        if i % 5 == 0 {
            out.push(
                KahaAddMessageCommand {
                    destination: Some(t.clone()),
                    message_id: Some(format!("ID:t:1:1:{i}")),
                    message: Some(vec![1, 2, 3]),
                    ..Default::default()
                }
                .into(),
            );
        }
        if i % 10 == 5 {
            out.push(
                KahaRemoveMessageCommand {
                    destination: Some(t.clone()),
                    message_id: Some(format!("ID:t:1:1:{}", i - 5)),
                    subscription_key: Some("c:s1".into()),
                    ..Default::default()
                }
                .into(),
            );
        }
    }
    out
}

/// Appends the commands and applies them to `state` as the live path would.
fn append_all(j: &Journal, state: &mut State, commands: &[JournalCommand]) {
    for c in commands {
        let loc = j.append(&c.encode(), false).unwrap();
        state.apply(c, loc);
    }
}

/// Like `append_all`, one batch per record, so that two journals given records of the same
/// sizes put them at the same locations.
fn append_all_one_per_batch(j: &Journal, state: &mut State, commands: &[JournalCommand]) {
    for c in commands {
        let loc = j.append(&c.encode(), true).unwrap();
        state.apply(c, loc);
    }
}

fn full_replay(dir: &Path) -> State {
    let j = Journal::open(dir, JournalConfig::default()).unwrap();
    State::replay(&j).unwrap().0
}

#[test]
fn checkpoint_plus_tail_equals_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let commands = workload(3000);
    let (head, tail) = commands.split_at(2000);
    {
        let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let mut live = State::default();
        append_all(&j, &mut live, head);
        checkpoint::write(dir.path(), &j, &live).unwrap();
        // The checkpoint reads back as exactly what was written.
        assert_eq!(checkpoint::read(dir.path()).unwrap().unwrap().0, live);
        append_all(&j, &mut live, tail);
        j.close().unwrap();
    }
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let (recovered, rec) = checkpoint::recover(dir.path(), &j).unwrap();
    assert!(rec.checkpoint.is_some(), "{rec:?}");
    assert!(rec.rejected.is_none(), "{rec:?}");
    assert_eq!(
        rec.replay.records as usize,
        tail.len(),
        "only the tail is replayed"
    );
    j.close().unwrap();
    let full = full_replay(dir.path());
    assert_eq!(recovered, full);
    assert!(full.destinations().count() >= 4);
}

#[test]
fn a_checkpoint_at_the_end_means_no_replay() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let mut live = State::default();
    append_all(&j, &mut live, &workload(5000));
    checkpoint::write(dir.path(), &j, &live).unwrap();
    j.close().unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let (recovered, rec) = checkpoint::recover(dir.path(), &j).unwrap();
    assert_eq!(rec.replay.records, 0);
    assert_eq!(recovered.last_applied(), live.last_applied());
}

#[test]
fn damaged_or_foreign_checkpoints_are_rejected_and_the_index_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let commands = workload(500);
    {
        let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let mut live = State::default();
        append_all_one_per_batch(&j, &mut live, &commands);
        checkpoint::write(dir.path(), &j, &live).unwrap();
        j.close().unwrap();
    }
    let full = full_replay(dir.path());
    let path = dir.path().join(INDEX_FILE);
    let good = std::fs::read(&path).unwrap();

    // A flipped byte anywhere: rejected (magic, version, length or checksum), rebuilt.
    for at in [0, 9, 13, 21, 30, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        std::fs::write(&path, &bad).unwrap();
        let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let (state, rec) = checkpoint::recover(dir.path(), &j).unwrap();
        assert!(rec.rejected.is_some(), "flip at {at}");
        assert!(rec.checkpoint.is_none());
        assert_eq!(rec.replay.records as usize, commands.len());
        assert_eq!(state, full, "flip at {at}");
        j.close().unwrap();
    }

    // A checkpoint of another store, ending past this journal's end: rejected.
    let other = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(other.path(), JournalConfig::default()).unwrap();
        let mut live = State::default();
        append_all(&j, &mut live, &workload(5000));
        checkpoint::write(other.path(), &j, &live).unwrap();
    }
    std::fs::copy(other.path().join(INDEX_FILE), &path).unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let (state, rec) = checkpoint::recover(dir.path(), &j).unwrap();
    assert!(
        rec.rejected
            .as_deref()
            .unwrap_or("")
            .contains("does not hold"),
        "{rec:?}"
    );
    assert_eq!(state, full);
    j.close().unwrap();

    // Another store's checkpoint that ends at a location this journal also has: the record
    // there differs, so it is refused too.
    let twin = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(twin.path(), JournalConfig::default()).unwrap();
        let mut live = State::default();
        let mut other_cmds = workload(500);
        other_cmds.truncate(commands.len() / 2);
        for c in &mut other_cmds {
            if let JournalCommand::AddMessage(a) = c {
                // Same length, other bytes: the same locations, other records.
                a.message = a.message.take().map(|m| m.iter().map(|b| !b).collect());
            }
        }
        append_all_one_per_batch(&j, &mut live, &other_cmds);
        checkpoint::write(twin.path(), &j, &live).unwrap();
    }
    std::fs::copy(twin.path().join(INDEX_FILE), &path).unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let (state, rec) = checkpoint::recover(dir.path(), &j).unwrap();
    assert!(
        rec.rejected
            .as_deref()
            .unwrap_or("")
            .contains("is not the one"),
        "{rec:?}"
    );
    assert_eq!(state, full);
}

#[test]
fn decoding_damaged_bodies_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let mut live = State::default();
    append_all(&j, &mut live, &workload(200));
    // Keep a prepared XA transaction and an in-flight one in the body too.
    let xa = KahaTransactionInfo::xa(KahaXATransactionId::new(7, vec![1], vec![2]));
    let cmds: Vec<JournalCommand> = vec![
        KahaAddMessageCommand {
            transaction_info: Some(xa.clone()),
            destination: Some(KahaDestination::new(DestinationType::Queue, "x")),
            message_id: Some("ID:x:1".into()),
            message: Some(vec![9]),
            ..Default::default()
        }
        .into(),
        KahaPrepareCommand {
            transaction_info: Some(xa),
        }
        .into(),
    ];
    append_all(&j, &mut live, &cmds);
    assert_eq!(live.prepared().len(), 1);
    let body = checkpoint::encode_state(&live);
    assert_eq!(checkpoint::decode_state(&body).unwrap(), live);
    for cut in 0..body.len() {
        assert!(checkpoint::decode_state(&body[..cut]).is_err(), "cut {cut}");
    }
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let mut b = body.clone();
        let at = (x as usize) % b.len();
        b[at] = (x >> 32) as u8;
        let _ = checkpoint::decode_state(&b);
    }
}

#[test]
fn a_checkpoint_of_an_older_format_is_refused_and_the_index_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    {
        let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let mut live = State::default();
        append_all(&j, &mut live, &workload(300));
        checkpoint::write(dir.path(), &j, &live).unwrap();
        j.close().unwrap();
    }
    // Version 1 had no pins: same magic, older version number.
    let path = dir.path().join(INDEX_FILE);
    let mut data = std::fs::read(&path).unwrap();
    data[8..12].copy_from_slice(&1u32.to_be_bytes());
    std::fs::write(&path, &data).unwrap();
    let j = Journal::open(dir.path(), JournalConfig::default()).unwrap();
    let (state, rec) = checkpoint::recover(dir.path(), &j).unwrap();
    assert!(
        rec.rejected
            .as_deref()
            .unwrap_or("")
            .contains("unsupported format version 1"),
        "{rec:?}"
    );
    j.close().unwrap();
    assert_eq!(state, full_replay(dir.path()));
}

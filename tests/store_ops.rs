//! The broker-facing operations: sequences, duplicates, priority lanes, batch reads with
//! limits, durable subscriptions, local and XA transactions (prepared ones across a reopen),
//! statistics and the producer audit.

use kahadb::journal::JournalConfig;
use kahadb::store::codec::DestinationType;
use kahadb::store::state::{DestKey, TxKey};
use kahadb::store::{Added, ReadRequest, Removed, Store, StoreConfig, TxOutcome, TxRequest};

fn config() -> StoreConfig {
    StoreConfig {
        journal: JournalConfig {
            max_file_length: 1 << 20,
            max_batch_size: 256 << 10,
            ..JournalConfig::default()
        },
        ..StoreConfig::default()
    }
}

fn queue(name: &str) -> DestKey {
    DestKey::new(DestinationType::Queue, name)
}

fn topic(name: &str) -> DestKey {
    DestKey::new(DestinationType::Topic, name)
}

fn seqs(store: &Store, d: &DestKey, sub: Option<&str>, req: ReadRequest) -> Vec<u64> {
    store
        .read_messages(d, sub, req)
        .unwrap()
        .iter()
        .map(|m| m.sequence)
        .collect()
}

#[test]
fn queue_sequences_duplicates_reads_and_removes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let q = queue("orders");
    for i in 0..10 {
        let a = store
            .add_message(
                &q,
                &format!("p1:{i}"),
                4,
                false,
                format!("body-{i}").as_bytes(),
                i % 2 == 0,
            )
            .unwrap();
        assert_eq!(a.sequence, Some(i), "sequences are dense from 0");
        assert_eq!(a.size, format!("body-{i}").len() as u32);
    }
    let dup = store
        .add_message(&q, "p1:3", 4, false, b"again", true)
        .unwrap();
    assert_eq!(dup.sequence, None, "a duplicate id is not stored twice");
    assert_eq!(store.counts(&q, None), (10, 60));
    assert_eq!(store.last_producer_sequence("p1"), 9);
    assert_eq!(store.last_producer_sequence("nobody"), -1);

    // Batches: from a position, bounded by count and by the announcement limit.
    let req = ReadRequest {
        from: [0, 3, 0],
        limit: 8,
        max_count: 3,
        max_bytes: usize::MAX,
    };
    assert_eq!(seqs(&store, &q, None, req), vec![3, 4, 5]);
    let req = ReadRequest {
        from: [0, 6, 0],
        limit: 8,
        max_count: 100,
        max_bytes: usize::MAX,
    };
    assert_eq!(seqs(&store, &q, None, req), vec![6, 7]);
    let req = ReadRequest {
        max_bytes: 1,
        ..ReadRequest::all()
    };
    assert_eq!(
        seqs(&store, &q, None, req),
        vec![0],
        "at least one message per batch"
    );
    let m = store.read_messages(&q, None, ReadRequest::all()).unwrap();
    assert_eq!(m[2].body, b"body-2");
    assert_eq!(m[2].message_id, "p1:2");

    assert_eq!(
        store.remove_message(&q, "p1:2", true).unwrap(),
        Removed {
            found: true,
            size: 6,
            deleted: true
        }
    );
    assert_eq!(
        store.remove_message(&q, "p1:2", true).unwrap(),
        Removed::default()
    );
    assert_eq!(store.get_message(&q, "p1:2").unwrap(), None);
    assert_eq!(store.get_message(&q, "p1:5").unwrap().unwrap(), b"body-5");
    assert_eq!(store.counts(&q, None), (9, 54));

    // Update keeps the place; an update of a consumed message stores it anew.
    let u = store
        .update_message(&q, "p1:5", 4, false, b"body-5-redelivered", true)
        .unwrap();
    assert_eq!(u.sequence, None);
    let u = store
        .update_message(&q, "p1:2", 4, false, b"back", true)
        .unwrap();
    assert_eq!(u.sequence, Some(10));
    assert_eq!(
        seqs(&store, &q, None, ReadRequest::all()),
        vec![0, 1, 3, 4, 5, 6, 7, 8, 9, 10]
    );

    // Misuse is refused with a clear error.
    assert!(store
        .add_message(&queue(""), "x:1", 4, false, b"x", false)
        .is_err());
    assert!(store.add_message(&q, "", 4, false, b"x", false).is_err());
    store.close().unwrap();

    let (store, _) = Store::open(dir.path(), config()).unwrap();
    assert_eq!(store.next_sequence(&q), 11);
    assert_eq!(
        store.get_message(&q, "p1:5").unwrap().unwrap(),
        b"body-5-redelivered"
    );
    assert_eq!(store.destinations(), vec![q.clone()]);
    assert!(store.remove_destination(&q, true).unwrap());
    assert!(store.destinations().is_empty());
    store.close().unwrap();
}

#[test]
fn priority_lanes_read_high_then_default_then_low() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let q = queue("prio");
    let prios = [4, 9, 0, 4, 7, 1];
    for (i, p) in prios.iter().enumerate() {
        store
            .add_message(&q, &format!("p:{i}"), *p, true, b"m", false)
            .unwrap();
    }
    // Not prioritized: everything in the default lane whatever its priority.
    store.add_message(&q, "p:6", 9, false, b"m", false).unwrap();
    let all = store.read_messages(&q, None, ReadRequest::all()).unwrap();
    let order: Vec<(u64, u8)> = all.iter().map(|m| (m.sequence, m.lane)).collect();
    assert_eq!(
        order,
        vec![(1, 0), (4, 0), (0, 1), (3, 1), (6, 1), (2, 2), (5, 2)]
    );
    // Lane positions move independently.
    let req = ReadRequest {
        from: [5, 4, 0],
        limit: u64::MAX,
        max_count: 10,
        max_bytes: usize::MAX,
    };
    assert_eq!(seqs(&store, &q, None, req), vec![6, 2, 5]);
    store.close().unwrap();
}

#[test]
fn durable_subscriptions_pending_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let t = topic("news");
    store.subscribe(&t, "c1:a", b"info-a", false, true).unwrap();
    for i in 0..3 {
        store
            .add_message(&t, &format!("p:{i}"), 4, false, b"xyz", false)
            .unwrap();
    }
    store.subscribe(&t, "c2:b", b"info-b", false, true).unwrap();
    store
        .add_message(&t, "p:3", 4, false, b"xyz", false)
        .unwrap();
    assert_eq!(store.counts(&t, Some("c1:a")), (4, 12));
    assert_eq!(store.counts(&t, Some("c2:b")), (1, 3));
    assert_eq!(store.counts(&t, None), (4, 12));
    assert_eq!(seqs(&store, &t, Some("c2:b"), ReadRequest::all()), vec![3]);

    let r = store.acknowledge(&t, "c1:a", "p:3", false).unwrap();
    assert_eq!(
        r,
        Removed {
            found: true,
            size: 3,
            deleted: false
        }
    );
    let r = store.acknowledge(&t, "c2:b", "p:3", false).unwrap();
    assert_eq!(
        r,
        Removed {
            found: true,
            size: 3,
            deleted: true
        }
    );
    assert_eq!(
        store.acknowledge(&t, "c2:b", "p:3", false).unwrap(),
        Removed::default()
    );
    assert_eq!(
        seqs(&store, &t, Some("c1:a"), ReadRequest::all()),
        vec![0, 1, 2]
    );

    // A retroactive subscription gets what is stored.
    store.subscribe(&t, "c3:r", b"info-r", true, true).unwrap();
    assert_eq!(store.counts(&t, Some("c3:r")), (3, 9));
    let subs = store.subscriptions(&t);
    assert_eq!(subs.len(), 3);
    assert_eq!(subs[0], ("c1:a".to_string(), b"info-a".to_vec()));
    assert!(store.unsubscribe(&t, "c1:a", true).unwrap());
    assert!(!store.unsubscribe(&t, "c1:a", true).unwrap());
    assert!(store.unsubscribe(&t, "c3:r", true).unwrap());
    assert_eq!(
        store.counts(&t, None),
        (0, 0),
        "nobody needs the messages any more"
    );
    store.close().unwrap();
}

#[test]
fn local_and_xa_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue("tx");
    let local = TxKey::Local {
        connection: "conn-1".into(),
        id: 7,
    };
    let xa = TxKey::Xa {
        format: 1,
        global: b"g1".to_vec(),
        branch: b"b1".to_vec(),
    };
    {
        let (store, _) = Store::open(dir.path(), config()).unwrap();
        store
            .add_message(&q, "p:0", 4, false, b"zero", true)
            .unwrap();
        let add = |i: u32| TxRequest::Add {
            destination: q.clone(),
            message_id: format!("p:{i}"),
            priority: 4,
            prioritized: false,
            body: format!("tx-{i}").into_bytes(),
        };
        let out = store
            .commit(
                &local,
                &[
                    add(1),
                    add(2),
                    TxRequest::Remove {
                        destination: q.clone(),
                        message_id: "p:0".into(),
                        subscription: None,
                        ack: None,
                    },
                ],
                true,
            )
            .unwrap();
        assert_eq!(
            out,
            vec![
                TxOutcome::Added(Added {
                    sequence: Some(1),
                    size: 4
                }),
                TxOutcome::Added(Added {
                    sequence: Some(2),
                    size: 4
                }),
                TxOutcome::Removed(Removed {
                    found: true,
                    size: 4,
                    deleted: true
                }),
            ]
        );
        assert!(
            store.prepare(&local, &[add(9)]).is_err(),
            "local transactions are not prepared"
        );
        store
            .prepare(
                &xa,
                &[
                    add(3),
                    TxRequest::Remove {
                        destination: q.clone(),
                        message_id: "p:1".into(),
                        subscription: None,
                        ack: Some(b"ack-bytes".to_vec()),
                    },
                ],
            )
            .unwrap();
        // Prepared work is invisible.
        assert_eq!(seqs(&store, &q, None, ReadRequest::all()), vec![1, 2]);
        // Drop without a checkpoint: the prepared transaction comes back from the journal.
        std::mem::drop(store);
    }
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let prepared = store.prepared_transactions().unwrap();
    assert_eq!(prepared.len(), 1);
    assert_eq!(prepared[0].tx, xa);
    assert_eq!(prepared[0].ops.len(), 2);
    match &prepared[0].ops[1] {
        TxRequest::Remove {
            ack, message_id, ..
        } => {
            assert_eq!(message_id, "p:1");
            assert_eq!(ack.as_deref(), Some(&b"ack-bytes"[..]));
        }
        other => panic!("unexpected op {other:?}"),
    }
    match &prepared[0].ops[0] {
        TxRequest::Add { body, .. } => assert_eq!(body, b"tx-3"),
        other => panic!("unexpected op {other:?}"),
    }
    let out = store.commit_prepared(&xa, true).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        out[0],
        TxOutcome::Added(Added {
            sequence: Some(3),
            size: 4
        })
    );
    assert!(store.prepared_transactions().unwrap().is_empty());
    assert!(!store.rollback_prepared(&xa, true).unwrap());
    assert_eq!(seqs(&store, &q, None, ReadRequest::all()), vec![2, 3]);
    store.close().unwrap();
}

fn add_op(q: &DestKey, id: &str) -> TxRequest {
    TxRequest::Add {
        destination: q.clone(),
        message_id: id.into(),
        priority: 4,
        prioritized: false,
        body: b"body".to_vec(),
    }
}

fn remove_op(d: &DestKey, id: &str, sub: Option<&str>) -> TxRequest {
    TxRequest::Remove {
        destination: d.clone(),
        message_id: id.into(),
        subscription: sub.map(str::to_owned),
        ack: None,
    }
}

#[test]
fn commit_outcomes_follow_the_operations_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let q = queue("q");
    let t = topic("t");
    let tx = |id| TxKey::Local {
        connection: "c".into(),
        id,
    };
    let added = |s: Option<u64>| {
        TxOutcome::Added(Added {
            sequence: s,
            size: 4,
        })
    };
    let removed = |found, deleted| {
        TxOutcome::Removed(Removed {
            found,
            size: if found { 4 } else { 0 },
            deleted,
        })
    };
    // The same id added twice: the second is a duplicate.
    let out = store
        .commit(&tx(1), &[add_op(&q, "p:1"), add_op(&q, "p:1")], true)
        .unwrap();
    assert_eq!(out, vec![added(Some(0)), added(None)]);
    // Removed twice: found once.
    let out = store
        .commit(
            &tx(2),
            &[remove_op(&q, "p:1", None), remove_op(&q, "p:1", None)],
            true,
        )
        .unwrap();
    assert_eq!(out, vec![removed(true, true), removed(false, false)]);
    // Removed then added again: stored anew.
    store
        .add_message(&q, "p:2", 4, false, b"body", true)
        .unwrap();
    let out = store
        .commit(
            &tx(3),
            &[remove_op(&q, "p:2", None), add_op(&q, "p:2")],
            true,
        )
        .unwrap();
    assert_eq!(out, vec![removed(true, true), added(Some(2))]);
    assert_eq!(store.counts(&q, None), (1, 4));
    // Two subscriptions ack one message in one transaction: only the last ack deletes it.
    store.subscribe(&t, "c:a", b"a", false, true).unwrap();
    store.subscribe(&t, "c:b", b"b", false, true).unwrap();
    store
        .add_message(&t, "p:3", 4, false, b"body", true)
        .unwrap();
    let out = store
        .commit(
            &tx(4),
            &[
                remove_op(&t, "p:3", Some("c:a")),
                remove_op(&t, "p:3", Some("c:b")),
            ],
            true,
        )
        .unwrap();
    assert_eq!(out, vec![removed(true, false), removed(true, true)]);
    store.close().unwrap();
}

#[test]
fn misuse_of_transactions_and_topics_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let q = queue("q");
    let t = topic("t");
    let xa = TxKey::Xa {
        format: 1,
        global: b"g".to_vec(),
        branch: b"b".to_vec(),
    };
    store.prepare(&xa, &[add_op(&q, "p:1")]).unwrap();
    let e = store.commit(&xa, &[add_op(&q, "p:2")], true).unwrap_err();
    assert_eq!(e.code(), kahadb::ErrorCode::IllegalState);
    assert_eq!(
        store.prepared_transactions().unwrap().len(),
        1,
        "still prepared"
    );
    assert_eq!(store.commit_prepared(&xa, true).unwrap().len(), 1);

    store.subscribe(&t, "c:a", b"a", false, true).unwrap();
    store.add_message(&t, "p:9", 4, false, b"x", true).unwrap();
    let e = store.remove_message(&t, "p:9", true).unwrap_err();
    assert_eq!(e.code(), kahadb::ErrorCode::InvalidArgument);
    let local = TxKey::Local {
        connection: "c".into(),
        id: 1,
    };
    let e = store
        .commit(&local, &[remove_op(&t, "p:9", None)], true)
        .unwrap_err();
    assert_eq!(e.code(), kahadb::ErrorCode::InvalidArgument);
    assert_eq!(
        store.counts(&t, Some("c:a")),
        (1, 1),
        "the subscription still has it"
    );
    store.close().unwrap();
}

#[test]
fn sparse_lanes_and_subscription_lanes_read_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    let t = topic("prio");
    store.subscribe(&t, "c:all", b"a", false, true).unwrap();
    for i in 0..2000u64 {
        let p = if i == 1500 {
            9
        } else if i % 500 == 7 {
            1
        } else {
            4
        };
        store
            .add_message(&t, &format!("p:{i}"), p, true, b"m", false)
            .unwrap();
    }
    store.subscribe(&t, "c:late", b"l", true, true).unwrap();
    for i in (0..2000u64).filter(|i| i % 3 == 0) {
        store
            .acknowledge(&t, "c:late", &format!("p:{i}"), false)
            .unwrap();
    }
    let all = seqs(&store, &t, Some("c:all"), ReadRequest::all());
    let mut expect = vec![1500];
    expect.extend((0..2000).filter(|i| *i != 1500 && i % 500 != 7));
    expect.extend((0..2000).filter(|i| i % 500 == 7));
    assert_eq!(all, expect);
    let late = seqs(&store, &t, Some("c:late"), ReadRequest::all());
    let expect_late: Vec<u64> = expect.iter().copied().filter(|i| i % 3 != 0).collect();
    assert_eq!(late, expect_late);
    // From positions past the only high message, with a limit.
    let req = ReadRequest {
        from: [1501, 1990, 0],
        limit: 1996,
        max_count: 100,
        max_bytes: usize::MAX,
    };
    assert_eq!(
        seqs(&store, &t, Some("c:all"), req),
        vec![1990, 1991, 1992, 1993, 1994, 1995, 7, 507, 1007, 1507]
    );
    store.close().unwrap();
    // The lanes come back from the checkpoint.
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    assert_eq!(seqs(&store, &t, Some("c:all"), ReadRequest::all()), expect);
    store.close().unwrap();
}

#[test]
fn producer_audit_survives_restarts_and_counts_commits_only() {
    let dir = tempfile::tempdir().unwrap();
    let q = queue("audit");
    let xa = TxKey::Xa {
        format: 1,
        global: b"g".to_vec(),
        branch: b"b".to_vec(),
    };
    {
        let (store, _) = Store::open(dir.path(), config()).unwrap();
        for i in 0..5 {
            store
                .add_message(&q, &format!("prod:{i}"), 4, false, b"m", true)
                .unwrap();
        }
        store.remove_message(&q, "prod:4", true).unwrap();
        store.prepare(&xa, &[add_op(&q, "prod:7")]).unwrap();
        assert_eq!(
            store.last_producer_sequence("prod"),
            4,
            "a prepared add is not stored yet"
        );
        store.close().unwrap();
    }
    let (store, rec) = Store::open(dir.path(), config()).unwrap();
    assert!(rec.checkpoint.is_some(), "reopened from the checkpoint");
    assert_eq!(
        store.last_producer_sequence("prod"),
        4,
        "consumed messages still count"
    );
    store.commit_prepared(&xa, true).unwrap();
    assert_eq!(store.last_producer_sequence("prod"), 7);
    store.close().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    assert_eq!(store.last_producer_sequence("prod"), 7);
    store.close().unwrap();
}

//! The store's index as a pure state machine: destinations, their messages in sequence order,
//! durable subscriptions with what each still has to consume, and transactions, rebuilt by
//! applying journal commands in order with KahaDB's replay semantics (`docs/STORE.md` §2.3).
//!
//! One `apply` serves recovery (replaying the journal after a checkpoint) and, later, the live
//! path and replication followers, so that all of them agree on what a record means.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::Result;
use crate::journal::{Journal, Location};

use super::codec::{
    DestinationType, JournalCommand, KahaAddMessageCommand, KahaDestination, KahaTransactionInfo,
};

/// A destination: its type and physical name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestKey {
    pub kind: i32,
    pub name: String,
}

impl DestKey {
    pub fn new(kind: DestinationType, name: impl Into<String>) -> DestKey {
        DestKey {
            kind: kind.as_i32(),
            name: name.into(),
        }
    }

    fn of(d: &KahaDestination) -> DestKey {
        DestKey {
            kind: d.dest_type_or_default().as_i32(),
            name: d.name.clone().unwrap_or_default(),
        }
    }

    pub fn is_topic(&self) -> bool {
        DestinationType::from_i32(self.kind).is_topic()
    }
}

/// A transaction, local or XA, as the journal names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxKey {
    Local {
        connection: String,
        id: i64,
    },
    Xa {
        format: i32,
        global: Vec<u8>,
        branch: Vec<u8>,
    },
}

impl TxKey {
    fn of(info: &KahaTransactionInfo) -> Option<TxKey> {
        if let Some(l) = &info.local_transaction_id {
            return Some(TxKey::Local {
                connection: l.connection_id.clone().unwrap_or_default(),
                id: l.transaction_id.unwrap_or_default(),
            });
        }
        info.xa_transaction_id.as_ref().map(|x| TxKey::Xa {
            format: x.format_id.unwrap_or_default(),
            global: x.global_transaction_id.clone().unwrap_or_default(),
            branch: x.branch_qualifier.clone().unwrap_or_default(),
        })
    }

    pub fn is_xa(&self) -> bool {
        matches!(self, TxKey::Xa { .. })
    }
}

/// A stored message: where its add record is, and what the index needs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: String,
    pub location: Location,
    /// The effective priority (KahaDB's default 4 unless priority support was on).
    pub priority: u8,
    /// Size of the message body (OpenWire bytes).
    pub size: u32,
    /// Topics: how many subscriptions still have to consume it.
    pub refs: u32,
}

/// A durable subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The broker's `SubscriptionInfo`, OpenWire bytes, as stored.
    pub info: Vec<u8>,
    pub retroactive: bool,
    pub location: Location,
    /// Sequences of the messages this subscription still has to consume.
    pub pending: BTreeSet<u64>,
}

/// One destination's index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destination {
    next_seq: u64,
    messages: BTreeMap<u64, StoredMessage>,
    by_id: HashMap<String, u64>,
    subscriptions: BTreeMap<String, Subscription>,
    bytes: u64,
    /// Stored messages per priority lane (see [`lane_of`]).
    lanes: [u64; 3],
}

/// The priority lane KahaDB files a message under: 0 high (priority above 4), 1 default (4, and
/// every message of a destination without priority support), 2 low (below 4). Batches read the
/// lanes in that order, each in sequence order.
pub fn lane_of(priority: u8) -> usize {
    match priority {
        p if p > 4 => 0,
        4 => 1,
        _ => 2,
    }
}

impl Destination {
    /// Stored messages in sequence order.
    pub fn messages(&self) -> impl Iterator<Item = (u64, &StoredMessage)> {
        self.messages.iter().map(|(s, m)| (*s, m))
    }

    pub fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// Total body bytes of the stored messages.
    pub fn message_bytes(&self) -> u64 {
        self.bytes
    }

    pub fn sequence_of(&self, message_id: &str) -> Option<u64> {
        self.by_id.get(message_id).copied()
    }

    pub fn subscriptions(&self) -> &BTreeMap<String, Subscription> {
        &self.subscriptions
    }

    /// The sequence the next stored message gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A destination as a checkpoint holds it (the derived indexes are rebuilt).
    pub(crate) fn restore(
        next_seq: u64,
        messages: BTreeMap<u64, StoredMessage>,
        subscriptions: BTreeMap<String, Subscription>,
    ) -> Destination {
        let by_id = messages
            .iter()
            .map(|(seq, m)| (m.message_id.clone(), *seq))
            .collect();
        let bytes = messages.values().map(|m| u64::from(m.size)).sum();
        let mut lanes = [0u64; 3];
        for m in messages.values() {
            lanes[lane_of(m.priority)] += 1;
        }
        Destination {
            next_seq,
            messages,
            by_id,
            subscriptions,
            bytes,
            lanes,
        }
    }

    fn insert(&mut self, key: &DestKey, cmd: &KahaAddMessageCommand, location: Location) {
        let message_id = cmd.message_id.clone().unwrap_or_default();
        if self.by_id.contains_key(&message_id) {
            // A duplicate add (a resend the producer audit missed): the first one stays.
            return;
        }
        if key.is_topic() && self.subscriptions.is_empty() {
            return; // nobody to deliver to: KahaDB keeps nothing either
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let size = cmd.message.as_ref().map_or(0, |m| m.len()) as u32;
        let refs = if key.is_topic() {
            for sub in self.subscriptions.values_mut() {
                sub.pending.insert(seq);
            }
            self.subscriptions.len() as u32
        } else {
            0
        };
        self.by_id.insert(message_id.clone(), seq);
        self.bytes += u64::from(size);
        let priority = cmd.effective_priority().clamp(0, 9) as u8;
        self.lanes[lane_of(priority)] += 1;
        self.messages.insert(
            seq,
            StoredMessage {
                message_id,
                location,
                priority,
                size,
                refs,
            },
        );
    }

    fn delete(&mut self, seq: u64) -> Option<StoredMessage> {
        let m = self.messages.remove(&seq)?;
        self.by_id.remove(&m.message_id);
        self.bytes -= u64::from(m.size);
        self.lanes[lane_of(m.priority)] -= 1;
        Some(m)
    }

    /// The stored message with this sequence.
    pub fn message(&self, seq: u64) -> Option<&StoredMessage> {
        self.messages.get(&seq)
    }

    /// Stored messages in one lane with a sequence in `range`, in sequence order.
    pub fn lane_messages(
        &self,
        lane: usize,
        range: std::ops::Range<u64>,
    ) -> impl Iterator<Item = (u64, &StoredMessage)> {
        let empty = self.lanes.get(lane).copied().unwrap_or(0) == 0 || range.is_empty();
        let all_in_lane = self.lanes.get(lane).copied().unwrap_or(0) == self.messages.len() as u64;
        let iter = if empty {
            None
        } else {
            Some(self.messages.range(range))
        };
        iter.into_iter()
            .flatten()
            .filter(move |(_, m)| all_in_lane || lane_of(m.priority) == lane)
            .map(|(s, m)| (*s, m))
    }

    /// How many stored messages each lane holds.
    pub fn lane_counts(&self) -> [u64; 3] {
        self.lanes
    }

    /// A queue consumer's ack, or (with a key) one subscription's.
    fn remove(&mut self, message_id: &str, subscription: Option<&str>) {
        let seq = match self.by_id.get(message_id) {
            Some(s) => *s,
            None => return,
        };
        match subscription {
            None => {
                self.delete(seq);
            }
            Some(key) => {
                let acked = self
                    .subscriptions
                    .get_mut(key)
                    .is_some_and(|s| s.pending.remove(&seq));
                if acked {
                    let gone = match self.messages.get_mut(&seq) {
                        Some(m) => {
                            m.refs = m.refs.saturating_sub(1);
                            m.refs == 0
                        }
                        None => false,
                    };
                    if gone {
                        self.delete(seq);
                    }
                }
            }
        }
    }

    fn unsubscribe(&mut self, key: &str) {
        if let Some(sub) = self.subscriptions.remove(key) {
            for seq in sub.pending {
                let gone = self.messages.get_mut(&seq).is_some_and(|m| {
                    m.refs = m.refs.saturating_sub(1);
                    m.refs == 0
                });
                if gone {
                    self.delete(seq);
                }
            }
        }
    }
}

/// An operation inside a transaction, held until its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxOp {
    Add {
        command: KahaAddMessageCommand,
        location: Location,
    },
    Remove {
        destination: DestKey,
        message_id: String,
        subscription: Option<String>,
        location: Location,
    },
}

/// The whole index.
#[derive(Debug, Clone, Default)]
pub struct State {
    destinations: BTreeMap<DestKey, Destination>,
    /// Transactions with operations but no outcome yet.
    inflight: BTreeMap<TxKey, Vec<TxOp>>,
    /// Prepared (XA) transactions: their operations wait for commit or rollback.
    prepared: BTreeMap<TxKey, Vec<TxOp>>,
    /// The last record applied.
    last_applied: Option<Location>,
    /// Producer audit: the highest producer sequence stored per producer id (from the message
    /// ids, `<producer id>:<sequence>`). Not part of checkpoints: rebuilt from the stored
    /// messages when one is loaded, then from the records replayed after it.
    producers: HashMap<String, i64>,
}

/// States are equal when they hold the same destinations, transactions and position; the
/// producer audit is a cache and does not count.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.destinations == other.destinations
            && self.inflight == other.inflight
            && self.prepared == other.prepared
            && self.last_applied == other.last_applied
    }
}

impl Eq for State {}

/// What a replay saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub records: u64,
    /// Records of types the store does not act on (trace, audit, scheduler, unknown).
    pub ignored: u64,
    /// Transactions without an outcome at the end, rolled back (local, or XA never prepared).
    pub rolled_back_in_doubt: usize,
}

impl State {
    pub fn destination(&self, key: &DestKey) -> Option<&Destination> {
        self.destinations.get(key)
    }

    pub fn destinations(&self) -> impl Iterator<Item = (&DestKey, &Destination)> {
        self.destinations.iter()
    }

    /// Transactions with operations and no outcome yet.
    pub fn inflight(&self) -> &BTreeMap<TxKey, Vec<TxOp>> {
        &self.inflight
    }

    /// A state as a checkpoint holds it.
    pub(crate) fn restore(
        destinations: BTreeMap<DestKey, Destination>,
        inflight: BTreeMap<TxKey, Vec<TxOp>>,
        prepared: BTreeMap<TxKey, Vec<TxOp>>,
        last_applied: Option<Location>,
    ) -> State {
        let mut state = State {
            destinations,
            inflight,
            prepared,
            last_applied,
            producers: HashMap::new(),
        };
        let ids: Vec<String> = state
            .destinations
            .values()
            .flat_map(|d| d.messages.values().map(|m| m.message_id.clone()))
            .collect();
        for id in ids {
            state.audit(&id);
        }
        state
    }

    /// The highest producer sequence stored for `producer_id`, or -1.
    pub fn last_producer_sequence(&self, producer_id: &str) -> i64 {
        self.producers.get(producer_id).copied().unwrap_or(-1)
    }

    fn audit(&mut self, message_id: &str) {
        if let Some((producer, seq)) = message_id.rsplit_once(':') {
            if let Ok(seq) = seq.parse::<i64>() {
                match self.producers.get_mut(producer) {
                    Some(v) => *v = (*v).max(seq),
                    None => {
                        // Bounded: producers come and go; the broker only asks about recent ones.
                        if self.producers.len() >= 65_536 {
                            self.producers.clear();
                        }
                        self.producers.insert(producer.to_owned(), seq);
                    }
                }
            }
        }
    }

    /// Prepared transactions and their operations, for `TransactionStore.recover`.
    pub fn prepared(&self) -> &BTreeMap<TxKey, Vec<TxOp>> {
        &self.prepared
    }

    pub fn last_applied(&self) -> Option<Location> {
        self.last_applied
    }

    /// Applies one journal command found at `location`. Returns whether the store acted on it.
    pub fn apply(&mut self, command: &JournalCommand, location: Location) -> bool {
        self.last_applied = Some(location);
        match command {
            JournalCommand::AddMessage(c) => self.add(c, location),
            JournalCommand::UpdateMessage(u) => match &u.message {
                Some(c) => {
                    let key = c.destination.as_ref().map(DestKey::of).unwrap_or_default();
                    let id = c.message_id.as_deref().unwrap_or_default();
                    let updated = self
                        .destinations
                        .get_mut(&key)
                        .and_then(|d| {
                            let seq = d.by_id.get(id).copied()?;
                            d.messages.get_mut(&seq)
                        })
                        .map(|m| {
                            let size = c.message.as_ref().map_or(0, |b| b.len()) as u32;
                            let old = std::mem::replace(&mut m.size, size);
                            m.location = location;
                            let new_priority = c.effective_priority().clamp(0, 9) as u8;
                            let old_priority = std::mem::replace(&mut m.priority, new_priority);
                            (old, size, old_priority, new_priority)
                        });
                    match updated {
                        Some((old, new, old_priority, new_priority)) => {
                            if let Some(d) = self.destinations.get_mut(&key) {
                                d.bytes = d.bytes - u64::from(old) + u64::from(new);
                                d.lanes[lane_of(old_priority)] -= 1;
                                d.lanes[lane_of(new_priority)] += 1;
                            }
                        }
                        // Not stored: the update stores it (outside any transaction, as
                        // KahaDB does).
                        None => self
                            .destinations
                            .entry(key.clone())
                            .or_default()
                            .insert(&key, c, location),
                    }
                    true
                }
                None => false,
            },
            JournalCommand::RemoveMessage(c) => {
                let destination = c.destination.as_ref().map(DestKey::of).unwrap_or_default();
                let message_id = c.message_id.clone().unwrap_or_default();
                let subscription = c.subscription_key.clone();
                match c.transaction_info.as_ref().and_then(TxKey::of) {
                    Some(tx) => self.inflight.entry(tx).or_default().push(TxOp::Remove {
                        destination,
                        message_id,
                        subscription,
                        location,
                    }),
                    None => self.remove(&destination, &message_id, subscription.as_deref()),
                }
                true
            }
            JournalCommand::Prepare(c) => {
                // Only a transaction with operations becomes prepared (as in KahaDB).
                if let Some(tx) = c.transaction_info.as_ref().and_then(TxKey::of) {
                    if let Some(ops) = self.inflight.remove(&tx) {
                        self.prepared.entry(tx).or_default().extend(ops);
                    }
                }
                true
            }
            JournalCommand::Commit(c) => {
                if let Some(tx) = c.transaction_info.as_ref().and_then(TxKey::of) {
                    let mut ops = self.prepared.remove(&tx).unwrap_or_default();
                    ops.extend(self.inflight.remove(&tx).unwrap_or_default());
                    for op in ops {
                        self.apply_op(op);
                    }
                }
                true
            }
            JournalCommand::Rollback(c) => {
                if let Some(tx) = c.transaction_info.as_ref().and_then(TxKey::of) {
                    self.prepared.remove(&tx);
                    self.inflight.remove(&tx);
                }
                true
            }
            JournalCommand::Subscription(c) => {
                let key = c.destination.as_ref().map(DestKey::of).unwrap_or_default();
                let sub_key = c.subscription_key.clone().unwrap_or_default();
                let Some(info) = &c.subscription_info else {
                    // Unsubscribe; the destination goes with its last subscription (KahaDB).
                    if let Some(dest) = self.destinations.get_mut(&key) {
                        dest.unsubscribe(&sub_key);
                        if dest.subscriptions.is_empty() {
                            self.destinations.remove(&key);
                        }
                    }
                    return true;
                };
                let dest = self.destinations.entry(key).or_default();
                {
                    let retroactive = c.retroactive.unwrap_or(false);
                    // A re-subscription replaces the old one and starts afresh.
                    dest.unsubscribe(&sub_key);
                    let pending: BTreeSet<u64> = if retroactive {
                        dest.messages.keys().copied().collect()
                    } else {
                        BTreeSet::new()
                    };
                    for seq in &pending {
                        if let Some(m) = dest.messages.get_mut(seq) {
                            m.refs += 1;
                        }
                    }
                    dest.subscriptions.insert(
                        sub_key,
                        Subscription {
                            info: info.clone(),
                            retroactive,
                            location,
                            pending,
                        },
                    );
                }
                true
            }
            JournalCommand::RemoveDestination(c) => {
                if let Some(d) = &c.destination {
                    self.destinations.remove(&DestKey::of(d));
                }
                true
            }
            _ => false,
        }
    }

    fn add(&mut self, c: &KahaAddMessageCommand, location: Location) -> bool {
        if let Some(id) = &c.message_id {
            self.audit(id);
        }
        match c.transaction_info.as_ref().and_then(TxKey::of) {
            Some(tx) => self.inflight.entry(tx).or_default().push(TxOp::Add {
                command: c.clone(),
                location,
            }),
            None => {
                let key = c.destination.as_ref().map(DestKey::of).unwrap_or_default();
                self.destinations
                    .entry(key.clone())
                    .or_default()
                    .insert(&key, c, location);
            }
        }
        true
    }

    fn remove(&mut self, destination: &DestKey, message_id: &str, subscription: Option<&str>) {
        if let Some(d) = self.destinations.get_mut(destination) {
            d.remove(message_id, subscription);
        }
    }

    fn apply_op(&mut self, op: TxOp) {
        match op {
            TxOp::Add { command, location } => {
                let key = command
                    .destination
                    .as_ref()
                    .map(DestKey::of)
                    .unwrap_or_default();
                self.destinations
                    .entry(key.clone())
                    .or_default()
                    .insert(&key, &command, location);
            }
            TxOp::Remove {
                destination,
                message_id,
                subscription,
                ..
            } => self.remove(&destination, &message_id, subscription.as_deref()),
        }
    }

    /// Ends a replay: transactions still without an outcome are rolled back, as KahaDB does at
    /// startup (prepared XA transactions stay). Returns how many.
    pub fn finish_replay(&mut self) -> usize {
        let n = self.inflight.len();
        self.inflight.clear();
        n
    }

    /// Rebuilds the state from every record of `journal`, in order.
    pub fn replay(journal: &Journal) -> Result<(State, ReplayReport)> {
        let mut state = State::default();
        let report = state.replay_after(journal, None)?;
        Ok((state, report))
    }

    /// Applies every record of `journal` after `after` (all of them for `None`), then ends the
    /// replay (`finish_replay`).
    pub fn replay_after(
        &mut self,
        journal: &Journal,
        after: Option<Location>,
    ) -> Result<ReplayReport> {
        let mut report = ReplayReport::default();
        let mut cursor = journal.cursor(after);
        while let Some((location, data)) = cursor.next_record()? {
            let command = JournalCommand::decode(&data).map_err(|e| {
                crate::error::Error::new(
                    e.code(),
                    format!("journal record at {location}: {}", e.message()),
                )
            })?;
            report.records += 1;
            if !self.apply(&command, location) {
                report.ignored += 1;
            }
        }
        report.rolled_back_in_doubt = self.finish_replay();
        Ok(report)
    }
}

impl Default for DestKey {
    fn default() -> Self {
        DestKey::new(DestinationType::Queue, "")
    }
}

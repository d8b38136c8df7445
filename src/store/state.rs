//! The store's index as a pure state machine: destinations, their messages in sequence order,
//! durable subscriptions with what each still has to consume, and transactions, rebuilt by
//! applying journal commands in order with KahaDB's replay semantics (`docs/STORE.md` §2.3).
//!
//! One `apply` serves recovery (replaying the journal after a checkpoint) and, later, the live
//! path and replication followers, so that all of them agree on what a record means.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Weak};

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

    pub(crate) fn of(d: &KahaDestination) -> DestKey {
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

/// A key of one destination's id index: the same producer id is one allocation there, so the
/// key hashes and compares by that allocation and the sequence (no string hashing, and a
/// client cannot choose ids that collide, the hash being keyed per process).
#[derive(Clone, Debug)]
struct IdKey(MessageKey);

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.seq == other.0.seq && Arc::ptr_eq(&self.0.producer, &other.0.producer)
    }
}

impl Eq for IdKey {}

impl std::hash::Hash for IdKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(Arc::as_ptr(&self.0.producer) as usize as u64);
        state.write_u64(self.0.seq);
    }
}

/// The hasher of [`IdKey`]s: two words mixed with a per-process random key.
#[derive(Clone, Copy)]
struct IdHash {
    key: u64,
}

impl Default for IdHash {
    fn default() -> Self {
        static KEY: once_cell::sync::Lazy<u64> = once_cell::sync::Lazy::new(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(0x6b61_6861_6462_2d72);
            h.finish() | 1
        });
        IdHash { key: *KEY }
    }
}

impl std::hash::BuildHasher for IdHash {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher { h: self.key }
    }
}

struct IdHasher {
    h: u64,
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        // splitmix64's finalizer over the running state and the word.
        let mut z = (self.h ^ v).wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        self.h = z ^ (z >> 31);
    }

    fn finish(&self) -> u64 {
        self.h
    }
}

/// A message id as the index keeps it. The broker's ids (`MessageId.toProducerKey()`) are
/// `<producer id>:<producer sequence>`: the producer part is shared by every stored message of
/// that producer (one allocation per producer, not per message) and the sequence is a number.
/// An id of another shape is kept whole. Compares, hashes and prints as the full id.
#[derive(Clone, PartialEq, Eq)]
pub struct MessageKey {
    producer: Arc<String>,
    /// [`MessageKey::WHOLE`]: `producer` is the whole id.
    seq: u64,
}

impl MessageKey {
    const WHOLE: u64 = u64::MAX;

    /// Splits an id into its producer part and sequence, if it has that shape exactly (so that
    /// printing the key gives the id back byte for byte).
    fn split(id: &str) -> (&str, u64) {
        if let Some((producer, seq)) = id.rsplit_once(':') {
            let canonical = !seq.is_empty()
                && seq.len() <= 19
                && seq.bytes().all(|b| b.is_ascii_digit())
                && (seq == "0" || !seq.starts_with('0'));
            if canonical {
                if let Ok(n) = seq.parse::<u64>() {
                    if n != Self::WHOLE {
                        return (producer, n);
                    }
                }
            }
        }
        (id, Self::WHOLE)
    }

    /// Whether this is the key of `id`.
    pub fn is(&self, id: &str) -> bool {
        let (producer, seq) = Self::split(id);
        seq == self.seq && producer == self.producer.as_str()
    }
}

impl fmt::Display for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seq == Self::WHOLE {
            f.write_str(&self.producer)
        } else {
            write!(f, "{}:{}", self.producer, self.seq)
        }
    }
}

impl fmt::Debug for MessageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// The producer ids of one destination's stored messages, shared by their keys. Holds them
/// weakly: a producer's entry dies with its last stored message (dead entries are swept when
/// the table has doubled since the last sweep).
#[derive(Clone, Default)]
pub(crate) struct Producers {
    map: HashMap<String, Weak<String>>,
    sweep_at: usize,
}

impl Producers {
    /// The key of `id`, sharing the producer part with stored keys.
    pub(crate) fn key(&mut self, id: &str) -> MessageKey {
        let (producer, seq) = MessageKey::split(id);
        if let Some(p) = self.map.get(producer).and_then(Weak::upgrade) {
            return MessageKey { producer: p, seq };
        }
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = (self.map.len() * 2).max(64);
        }
        let p = Arc::new(producer.to_owned());
        self.map.insert(producer.to_owned(), Arc::downgrade(&p));
        MessageKey { producer: p, seq }
    }

    /// The key of `id` if a message of its producer is stored (otherwise `id` is not stored).
    fn find(&self, id: &str) -> Option<MessageKey> {
        let (producer, seq) = MessageKey::split(id);
        let p = self.map.get(producer)?.upgrade()?;
        Some(MessageKey { producer: p, seq })
    }
}

impl fmt::Debug for Producers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Producers({})", self.map.len())
    }
}

/// A cache: never part of what makes two destinations equal.
impl PartialEq for Producers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Producers {}

/// A stored message: where its add record is, and what the index needs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub message_id: MessageKey,
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
#[derive(Debug, Clone, Default)]
pub struct Destination {
    next_seq: u64,
    messages: BTreeMap<u64, StoredMessage>,
    by_id: HashMap<IdKey, u64, IdHash>,
    producers: Producers,
    subscriptions: BTreeMap<String, Subscription>,
    bytes: u64,
    /// Stored messages per priority lane (see [`lane_of`]).
    lanes: [u64; 3],
    /// Sequences of the messages in the high (0) and low (1) lanes, so that reading a sparse
    /// lane costs what it returns (the default lane is the rest of `messages`).
    outer_lanes: [BTreeSet<u64>; 2],
}

/// The `outer_lanes` slot of a lane, if it has one.
fn outer_slot(lane: usize) -> Option<usize> {
    match lane {
        0 => Some(0),
        2 => Some(1),
        _ => None,
    }
}

/// Destinations are equal when they hold the same messages (ids, places, sizes, references),
/// subscriptions and counters; the derived indexes follow from those.
impl PartialEq for Destination {
    fn eq(&self, other: &Self) -> bool {
        self.next_seq == other.next_seq
            && self.messages == other.messages
            && self.subscriptions == other.subscriptions
            && self.bytes == other.bytes
            && self.lanes == other.lanes
    }
}

impl Eq for Destination {}

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
        let key = self.producers.find(message_id)?;
        self.by_id.get(&IdKey(key)).copied()
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
        producers: Producers,
        subscriptions: BTreeMap<String, Subscription>,
    ) -> Destination {
        let mut by_id = HashMap::with_capacity_and_hasher(messages.len(), IdHash::default());
        by_id.extend(
            messages
                .iter()
                .map(|(seq, m)| (IdKey(m.message_id.clone()), *seq)),
        );
        let bytes = messages.values().map(|m| u64::from(m.size)).sum();
        let mut lanes = [0u64; 3];
        let mut outer_lanes: [BTreeSet<u64>; 2] = Default::default();
        for (seq, m) in &messages {
            let lane = lane_of(m.priority);
            lanes[lane] += 1;
            if let Some(slot) = outer_slot(lane) {
                outer_lanes[slot].insert(*seq);
            }
        }
        Destination {
            next_seq,
            messages,
            by_id,
            producers,
            subscriptions,
            bytes,
            lanes,
            outer_lanes,
        }
    }

    /// Stores an added message. For a duplicate (the id is stored already), returns the
    /// location of the stored one, which stays.
    fn insert(
        &mut self,
        key: &DestKey,
        cmd: &KahaAddMessageCommand,
        location: Location,
    ) -> Option<Location> {
        let id = cmd.message_id.as_deref().unwrap_or_default();
        if let Some(seq) = self.sequence_of(id) {
            // A duplicate add (a resend the producer audit missed): the first one stays.
            return self.messages.get(&seq).map(|m| m.location);
        }
        if key.is_topic() && self.subscriptions.is_empty() {
            return None; // nobody to deliver to: KahaDB keeps nothing either
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
        let message_id = self.producers.key(id);
        self.by_id.insert(IdKey(message_id.clone()), seq);
        self.bytes += u64::from(size);
        let priority = cmd.effective_priority().clamp(0, 9) as u8;
        self.set_lane(seq, lane_of(priority), true);
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
        None
    }

    fn delete(&mut self, seq: u64) -> Option<StoredMessage> {
        let m = self.messages.remove(&seq)?;
        self.by_id.remove(&IdKey(m.message_id.clone()));
        self.bytes -= u64::from(m.size);
        self.set_lane(seq, lane_of(m.priority), false);
        Some(m)
    }

    /// The stored message with this sequence.
    pub fn message(&self, seq: u64) -> Option<&StoredMessage> {
        self.messages.get(&seq)
    }

    /// Counts a message in or out of a lane.
    fn set_lane(&mut self, seq: u64, lane: usize, present: bool) {
        if present {
            self.lanes[lane] += 1;
        } else {
            self.lanes[lane] -= 1;
        }
        if let Some(slot) = outer_slot(lane) {
            if present {
                self.outer_lanes[slot].insert(seq);
            } else {
                self.outer_lanes[slot].remove(&seq);
            }
        }
    }

    /// Sequences in one lane within `range`, in order. The high and low lanes cost what they
    /// return; the default lane skips the high and low messages within the range.
    pub fn lane_sequences(
        &self,
        lane: usize,
        range: std::ops::Range<u64>,
    ) -> Box<dyn Iterator<Item = u64> + '_> {
        if range.is_empty() || self.lanes.get(lane).copied().unwrap_or(0) == 0 {
            return Box::new(std::iter::empty());
        }
        match outer_slot(lane) {
            Some(slot) => Box::new(self.outer_lanes[slot].range(range).copied()),
            None if self.lanes[1] == self.messages.len() as u64 => {
                Box::new(self.messages.range(range).map(|(s, _)| *s))
            }
            None => Box::new(
                self.messages
                    .range(range)
                    .filter(|(_, m)| lane_of(m.priority) == 1)
                    .map(|(s, _)| *s),
            ),
        }
    }

    /// Stored messages in one lane with a sequence in `range`, in sequence order.
    pub fn lane_messages(
        &self,
        lane: usize,
        range: std::ops::Range<u64>,
    ) -> impl Iterator<Item = (u64, &StoredMessage)> {
        self.lane_sequences(lane, range)
            .filter_map(move |seq| self.messages.get(&seq).map(|m| (seq, m)))
    }

    /// How many stored messages each lane holds.
    pub fn lane_counts(&self) -> [u64; 3] {
        self.lanes
    }

    /// A queue consumer's ack, or (with a key) one subscription's. Returns the location of the
    /// message if it is stored (for a topic also when that subscription had nothing pending
    /// for it: the ack still matters to a replay that re-adds the message, see `pin`).
    fn remove(&mut self, message_id: &str, subscription: Option<&str>) -> Option<Location> {
        let seq = self.sequence_of(message_id)?;
        let location = self.messages.get(&seq).map(|m| m.location);
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
        location
    }

    /// Drops a subscription. Returns the location of its record and of every message that
    /// went with it (nobody else had it pending).
    fn unsubscribe(&mut self, key: &str) -> Option<(Location, Vec<Location>)> {
        let sub = self.subscriptions.remove(key)?;
        let mut deleted = Vec::new();
        for seq in sub.pending {
            let gone = self.messages.get_mut(&seq).is_some_and(|m| {
                m.refs = m.refs.saturating_sub(1);
                m.refs == 0
            });
            if gone {
                deleted.extend(self.delete(seq).map(|m| m.location));
            }
        }
        Some((sub.location, deleted))
    }
}

/// Data file `from` holds records that kill or complete records of file `to`: `from` must not
/// be deleted while `to` exists, or a replay of the remaining files would bring the older
/// records back to life (`docs/STORE.md` §6.6, trap T33).
fn pin(pins: &mut BTreeMap<u32, BTreeSet<u32>>, from: Location, to: Location) {
    if from.file_id != to.file_id {
        pins.entry(from.file_id).or_default().insert(to.file_id);
    }
}

fn op_location(op: &TxOp) -> Location {
    match op {
        TxOp::Add { location, .. } | TxOp::Remove { location, .. } => *location,
    }
}

/// What a data file holds that the index still needs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveInfo {
    /// Live records: stored messages (their current location), subscription records,
    /// operations of transactions without an outcome.
    pub records: u64,
    /// Their total size (record headers included).
    pub bytes: u64,
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
    /// Data file → the older data files whose records its records kill or complete (see `pin`).
    pins: BTreeMap<u32, BTreeSet<u32>>,
    /// What each operation of the last commit applied did (not part of equality or checkpoints).
    commit_outcomes: Vec<OpOutcome>,
}

/// What one operation of a committed transaction did, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpOutcome {
    /// An add: the sequence it got, or `None` (a duplicate id, or a topic nobody subscribes to).
    Added { sequence: Option<u64>, size: u32 },
    /// A remove or topic ack: whether it found the message (pending for that subscription),
    /// its size, and whether the message left the store.
    Removed {
        found: bool,
        size: u32,
        deleted: bool,
    },
}

/// States are equal when they hold the same destinations, transactions, position and pins; the
/// producer audit is a cache and does not count.
impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.destinations == other.destinations
            && self.inflight == other.inflight
            && self.prepared == other.prepared
            && self.last_applied == other.last_applied
            && self.pins == other.pins
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
            pins: BTreeMap::new(),
            commit_outcomes: Vec::new(),
        };
        // The audit from the stored messages: one entry per producer (keys of one producer
        // share its id, so consecutive messages mostly hit the entry just updated).
        let mut audit: HashMap<String, i64> = HashMap::new();
        for d in state.destinations.values() {
            let mut last: Option<(&Arc<String>, &mut i64)> = None;
            for m in d.messages.values() {
                let Ok(seq) = i64::try_from(m.message_id.seq) else {
                    continue; // a whole id (or one beyond i64): not a producer sequence
                };
                if let Some((p, v)) = &mut last {
                    if Arc::ptr_eq(p, &m.message_id.producer) {
                        **v = (**v).max(seq);
                        continue;
                    }
                }
                let _ = last.take();
                let v = audit
                    .entry(m.message_id.producer.to_string())
                    .or_insert(seq);
                *v = (*v).max(seq);
                last = Some((&m.message_id.producer, v));
            }
        }
        state.producers = audit;
        state
    }

    /// The producer audit: producer id → highest producer sequence stored.
    pub fn producer_audit(&self) -> &HashMap<String, i64> {
        &self.producers
    }

    /// Merges a checkpoint's producer audit into the one rebuilt from the stored messages.
    pub(crate) fn restore_audit(&mut self, audit: Vec<(String, i64)>) {
        for (producer, seq) in audit {
            let v = self.producers.entry(producer).or_insert(seq);
            *v = (*v).max(seq);
        }
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

    /// Data file → data files it must outlive (see `pin`).
    pub fn pins(&self) -> &BTreeMap<u32, BTreeSet<u32>> {
        &self.pins
    }

    /// Sets the pins (a checkpoint holds them).
    pub(crate) fn restore_pins(&mut self, pins: BTreeMap<u32, BTreeSet<u32>>) {
        self.pins = pins;
    }

    /// Forgets data files that are gone: pins of them and pins to them.
    pub fn forget_files(&mut self, gone: impl Fn(u32) -> bool) {
        self.pins.retain(|file, to| {
            to.retain(|t| !gone(*t));
            !gone(*file) && !to.is_empty()
        });
    }

    /// The data files holding records the index still needs, with how much of each is live.
    /// Computed by a scan of the whole index.
    pub fn live_files(&self) -> BTreeMap<u32, LiveInfo> {
        let mut live: BTreeMap<u32, LiveInfo> = BTreeMap::new();
        let mut count = |l: Location| {
            let e = live.entry(l.file_id).or_default();
            e.records += 1;
            e.bytes += u64::from(l.size);
        };
        for d in self.destinations.values() {
            for m in d.messages.values() {
                count(m.location);
            }
            for s in d.subscriptions.values() {
                count(s.location);
            }
        }
        for ops in self.inflight.values().chain(self.prepared.values()) {
            for op in ops {
                count(op_location(op));
            }
        }
        live
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
                            let seq = d.sequence_of(id)?;
                            d.messages.get_mut(&seq)
                        })
                        .map(|m| {
                            let size = c.message.as_ref().map_or(0, |b| b.len()) as u32;
                            let old = std::mem::replace(&mut m.size, size);
                            let old_location = std::mem::replace(&mut m.location, location);
                            let new_priority = c.effective_priority().clamp(0, 9) as u8;
                            let old_priority = std::mem::replace(&mut m.priority, new_priority);
                            (old, size, old_priority, new_priority, old_location)
                        });
                    match updated {
                        Some((old, new, old_priority, new_priority, old_location)) => {
                            if let Some(d) = self.destinations.get_mut(&key) {
                                d.bytes = d.bytes - u64::from(old) + u64::from(new);
                                if let Some(seq) = d.sequence_of(id) {
                                    d.set_lane(seq, lane_of(old_priority), false);
                                    d.set_lane(seq, lane_of(new_priority), true);
                                }
                            }
                            pin(&mut self.pins, location, old_location);
                        }
                        // Not stored: the update stores it (outside any transaction, as
                        // KahaDB does).
                        None => {
                            self.destinations
                                .entry(key.clone())
                                .or_default()
                                .insert(&key, c, location);
                        }
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
                    None => {
                        if let Some(target) =
                            self.remove(&destination, &message_id, subscription.as_deref())
                        {
                            pin(&mut self.pins, location, target);
                        }
                    }
                }
                true
            }
            JournalCommand::Prepare(c) => {
                // Only a transaction with operations becomes prepared (as in KahaDB).
                if let Some(tx) = c.transaction_info.as_ref().and_then(TxKey::of) {
                    if let Some(ops) = self.inflight.remove(&tx) {
                        // Without its prepare record, a replay would drop the operations.
                        for op in &ops {
                            pin(&mut self.pins, location, op_location(op));
                        }
                        self.prepared.entry(tx).or_default().extend(ops);
                    }
                }
                true
            }
            JournalCommand::Commit(c) => {
                if let Some(tx) = c.transaction_info.as_ref().and_then(TxKey::of) {
                    let mut ops = self.prepared.remove(&tx).unwrap_or_default();
                    ops.extend(self.inflight.remove(&tx).unwrap_or_default());
                    self.commit_outcomes.clear();
                    for op in ops {
                        let at = op_location(&op);
                        pin(&mut self.pins, location, at);
                        let before = self.probe(&op);
                        let target = self.apply_op(op.clone());
                        let outcome = self.outcome(&op, before);
                        self.commit_outcomes.push(outcome);
                        if let Some(target) = target {
                            // A committed remove kills its message: neither the operation
                            // nor the commit may go before the message's record.
                            pin(&mut self.pins, at, target);
                            pin(&mut self.pins, location, target);
                        }
                    }
                }
                true
            }
            JournalCommand::Rollback(c) => {
                if let Some(tx) = c.transaction_info.as_ref().and_then(TxKey::of) {
                    let prepared = self.prepared.remove(&tx).unwrap_or_default();
                    let inflight = self.inflight.remove(&tx).unwrap_or_default();
                    for op in prepared.iter().chain(&inflight) {
                        pin(&mut self.pins, location, op_location(op));
                    }
                }
                true
            }
            JournalCommand::Subscription(c) => {
                let key = c.destination.as_ref().map(DestKey::of).unwrap_or_default();
                let sub_key = c.subscription_key.clone().unwrap_or_default();
                let Some(info) = &c.subscription_info else {
                    // Unsubscribe; the destination goes with its last subscription (KahaDB).
                    if let Some(dest) = self.destinations.get_mut(&key) {
                        if let Some((record, deleted)) = dest.unsubscribe(&sub_key) {
                            for target in std::iter::once(record).chain(deleted) {
                                pin(&mut self.pins, location, target);
                            }
                        }
                        if dest.subscriptions.is_empty() {
                            self.destinations.remove(&key);
                        }
                    }
                    return true;
                };
                let dest = self.destinations.entry(key).or_default();
                {
                    let retroactive = c.retroactive.unwrap_or(false);
                    let pending: BTreeSet<u64> = if retroactive {
                        // Every stored message, those the old subscription still had
                        // pending included (KahaDB adds them to the ack set it keeps).
                        let old = dest.subscriptions.remove(&sub_key);
                        if let Some(old) = &old {
                            pin(&mut self.pins, location, old.location);
                        }
                        let kept = old.map(|s| s.pending).unwrap_or_default();
                        for (seq, m) in dest.messages.iter_mut() {
                            if !kept.contains(seq) {
                                m.refs += 1;
                            }
                        }
                        dest.messages.keys().copied().collect()
                    } else {
                        // A re-subscription replaces the old one and starts afresh.
                        if let Some((record, deleted)) = dest.unsubscribe(&sub_key) {
                            for target in std::iter::once(record).chain(deleted) {
                                pin(&mut self.pins, location, target);
                            }
                        }
                        BTreeSet::new()
                    };
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
                    if let Some(dest) = self.destinations.remove(&DestKey::of(d)) {
                        let records = dest.messages.values().map(|m| m.location);
                        let subs = dest.subscriptions.values().map(|s| s.location);
                        for target in records.chain(subs) {
                            pin(&mut self.pins, location, target);
                        }
                    }
                }
                true
            }
            _ => false,
        }
    }

    fn add(&mut self, c: &KahaAddMessageCommand, location: Location) -> bool {
        // The audit records what is stored: a transactional add counts at its commit.
        if c.transaction_info.is_none() {
            if let Some(id) = &c.message_id {
                self.audit(id);
            }
        }
        match c.transaction_info.as_ref().and_then(TxKey::of) {
            Some(tx) => self.inflight.entry(tx).or_default().push(TxOp::Add {
                command: c.clone(),
                location,
            }),
            None => self.store(c, location),
        }
        true
    }

    /// Stores an add (outside a transaction, or at its commit).
    fn store(&mut self, c: &KahaAddMessageCommand, location: Location) {
        let key = c.destination.as_ref().map(DestKey::of).unwrap_or_default();
        let stored = self
            .destinations
            .entry(key.clone())
            .or_default()
            .insert(&key, c, location);
        if let Some(first) = stored {
            // A duplicate: ignored while the first add lives, so whatever kills the first one
            // must also outlive this one (the first's file must not go before this one).
            pin(&mut self.pins, first, location);
        }
    }

    /// Returns the location of the message the remove or ack refers to, if stored.
    fn remove(
        &mut self,
        destination: &DestKey,
        message_id: &str,
        subscription: Option<&str>,
    ) -> Option<Location> {
        self.destinations
            .get_mut(destination)?
            .remove(message_id, subscription)
    }

    /// What the index holds about an operation's message: its sequence, size, and whether it
    /// is pending for the operation's subscription (a queue message always is).
    fn probe(&self, op: &TxOp) -> Option<(u64, u32, bool)> {
        let (dest, id, sub) = match op {
            TxOp::Add { command, .. } => (
                command
                    .destination
                    .as_ref()
                    .map(DestKey::of)
                    .unwrap_or_default(),
                command.message_id.as_deref().unwrap_or_default().to_owned(),
                None,
            ),
            TxOp::Remove {
                destination,
                message_id,
                subscription,
                ..
            } => (
                destination.clone(),
                message_id.clone(),
                subscription.clone(),
            ),
        };
        let d = self.destinations.get(&dest)?;
        let seq = d.sequence_of(&id)?;
        let m = d.message(seq)?;
        let pending = match sub {
            None => true,
            Some(s) => d
                .subscriptions
                .get(&s)
                .is_some_and(|s| s.pending.contains(&seq)),
        };
        Some((seq, m.size, pending))
    }

    fn outcome(&self, op: &TxOp, before: Option<(u64, u32, bool)>) -> OpOutcome {
        let after = self.probe(op);
        match op {
            TxOp::Add { command, .. } => OpOutcome::Added {
                sequence: match (before, after) {
                    (None, Some((seq, _, _))) => Some(seq),
                    _ => None,
                },
                size: command.message.as_ref().map_or(0, |b| b.len()) as u32,
            },
            TxOp::Remove { destination, .. } => match before {
                Some((seq, size, true)) => OpOutcome::Removed {
                    found: true,
                    size,
                    deleted: self
                        .destinations
                        .get(destination)
                        .is_none_or(|d| d.message(seq).is_none()),
                },
                _ => OpOutcome::Removed {
                    found: false,
                    size: 0,
                    deleted: false,
                },
            },
        }
    }

    /// What each operation of the last commit applied did, in order.
    pub fn last_commit_outcomes(&self) -> &[OpOutcome] {
        &self.commit_outcomes
    }

    /// Applies a committed operation; for a remove, returns the location of its message.
    fn apply_op(&mut self, op: TxOp) -> Option<Location> {
        match op {
            TxOp::Add { command, location } => {
                if let Some(id) = &command.message_id {
                    self.audit(id);
                }
                self.store(&command, location);
                None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_keys_print_back_the_id_and_share_producers() {
        let mut p = Producers::default();
        for id in [
            "ID:host-40157-1700000000000-1:1:1:1:42",
            "p:0",
            "p:007",
            "p:",
            "no-colon",
            "p:18446744073709551615",
            "p:99999999999999999999",
            "p:+5",
            "",
        ] {
            let k = p.key(id);
            assert_eq!(k.to_string(), id);
            assert!(k.is(id));
            assert_eq!(p.find(id), Some(k));
        }
        let a = p.key("prod:1");
        let b = p.key("prod:2");
        assert!(
            Arc::ptr_eq(&a.producer, &b.producer),
            "one allocation per producer"
        );
        assert_ne!(a, b);
        assert_eq!(
            p.find("prod:3").map(|k| k.to_string()),
            Some("prod:3".into())
        );
        drop((a, b));
        assert_eq!(p.find("prod:1"), None, "a producer goes with its last key");
    }
}

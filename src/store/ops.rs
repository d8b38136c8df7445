//! The operations a broker performs on the store (`docs/STORE.md` §3 and §6.8), each one call:
//! one journal command (or one contiguous group for a transaction) appended and applied under
//! the store lock, then waited on for durability outside it; and the reads cursors need, which
//! take what they need from the index under the lock and read message bodies from the journal
//! after releasing it, so readers never hold up writers while they copy.

use crate::error::{Error, ErrorCode, Result};
use crate::journal::Location;

use super::codec::{
    DestinationType, JournalCommand, KahaAddMessageCommand, KahaCommitCommand, KahaDestination,
    KahaLocalTransactionId, KahaPrepareCommand, KahaRemoveDestinationCommand,
    KahaRemoveMessageCommand, KahaRollbackCommand, KahaSubscriptionCommand, KahaTransactionInfo,
    KahaUpdateMessageCommand, KahaXATransactionId,
};
use super::engine::{Store, Writer};
use super::state::{lane_of, DestKey, OpOutcome, TxKey, TxOp};

/// What storing a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The sequence the message got in its destination, or `None` for a duplicate (a message
    /// id already stored: nothing changed) or a topic add with no subscription to keep it for.
    pub sequence: Option<u64>,
    /// Size of the stored body, counted in the statistics.
    pub size: u32,
}

/// What an acknowledgement did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Removed {
    /// The message was stored (for a topic: pending for that subscription) and is no more.
    pub found: bool,
    /// Its body size.
    pub size: u32,
    /// Topic: no subscription needs the message any more, so it left the store.
    pub deleted: bool,
}

/// One operation of a transaction, as the broker hands it over at prepare or commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxRequest {
    Add {
        destination: DestKey,
        message_id: String,
        priority: i32,
        prioritized: bool,
        body: Vec<u8>,
    },
    /// A queue ack (`subscription: None`) or one durable subscription's topic ack. `ack` is the
    /// marshalled `MessageAck`: needed to recover a prepared XA transaction, not stored otherwise.
    Remove {
        destination: DestKey,
        message_id: String,
        subscription: Option<String>,
        ack: Option<Vec<u8>>,
    },
}

/// The result of one operation of a committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxOutcome {
    Added(Added),
    Removed(Removed),
}

/// A prepared transaction, for the broker's XA recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedTx {
    pub tx: TxKey,
    pub ops: Vec<TxRequest>,
}

/// A message read for a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadMessage {
    pub sequence: u64,
    pub lane: u8,
    pub message_id: String,
    /// OpenWire bytes.
    pub body: Vec<u8>,
}

/// Where a batch read starts, per lane, and what bounds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// First sequence to consider in each lane (high, default, low).
    pub from: [u64; 3],
    /// Sequences at or above this are not returned (messages not yet announced to the broker).
    pub limit: u64,
    pub max_count: usize,
    /// Stop after the message that reaches this many body bytes (at least one is returned).
    pub max_bytes: usize,
}

impl ReadRequest {
    /// Everything from the start.
    pub fn all() -> ReadRequest {
        ReadRequest {
            from: [0; 3],
            limit: u64::MAX,
            max_count: usize::MAX,
            max_bytes: usize::MAX,
        }
    }
}

fn kaha_dest(d: &DestKey) -> KahaDestination {
    KahaDestination::new(DestinationType::from_i32(d.kind), d.name.clone())
}

fn tx_info(tx: &TxKey) -> KahaTransactionInfo {
    match tx {
        TxKey::Local { connection, id } => {
            KahaTransactionInfo::local(KahaLocalTransactionId::new(connection.clone(), *id))
        }
        TxKey::Xa {
            format,
            global,
            branch,
        } => KahaTransactionInfo::xa(KahaXATransactionId::new(
            *format,
            branch.clone(),
            global.clone(),
        )),
    }
}

fn add_command(
    destination: &DestKey,
    message_id: &str,
    priority: i32,
    prioritized: bool,
    body: Vec<u8>,
    tx: Option<&TxKey>,
) -> KahaAddMessageCommand {
    KahaAddMessageCommand {
        transaction_info: tx.map(tx_info),
        destination: Some(kaha_dest(destination)),
        message_id: Some(message_id.to_owned()),
        message: Some(body),
        priority: Some(priority),
        priority_supported: Some(prioritized),
    }
}

fn remove_command(
    destination: &DestKey,
    message_id: &str,
    subscription: Option<&str>,
    ack: Option<Vec<u8>>,
    tx: Option<&TxKey>,
) -> KahaRemoveMessageCommand {
    KahaRemoveMessageCommand {
        transaction_info: tx.map(tx_info),
        destination: Some(kaha_dest(destination)),
        message_id: Some(message_id.to_owned()),
        ack,
        subscription_key: subscription.map(str::to_owned),
    }
}

fn check_name(destination: &DestKey) -> Result<()> {
    if destination.name.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            "a destination needs a name",
        ));
    }
    if !(0..=3).contains(&destination.kind) {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!(
                "destination type {} is not one of 0 (queue), 1 (topic), 2 (temporary queue), 3 (temporary topic)",
                destination.kind
            ),
        ));
    }
    Ok(())
}

/// A remove without a subscription is a queue consumer's: on a topic the message would leave
/// while subscriptions still count it as pending.
fn check_queue_remove(destination: &DestKey, subscription: Option<&str>) -> Result<()> {
    if destination.is_topic() && subscription.is_none() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            format!(
                "a message of topic {} is acknowledged per durable subscription, not removed",
                destination.name
            ),
        ));
    }
    Ok(())
}

fn check_id(message_id: &str) -> Result<()> {
    if message_id.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            "a message needs an id",
        ));
    }
    Ok(())
}

/// Records the add and reports what the index made of it.
fn record_add(
    w: &mut Writer<'_>,
    command: &JournalCommand,
    dest: &DestKey,
    id: &str,
) -> Result<Added> {
    let before = w.state().destination(dest).and_then(|d| d.sequence_of(id));
    let size = match command {
        JournalCommand::AddMessage(a) => a.message.as_ref().map_or(0, |b| b.len()),
        JournalCommand::UpdateMessage(u) => u
            .message
            .as_ref()
            .and_then(|a| a.message.as_ref())
            .map_or(0, |b| b.len()),
        _ => 0,
    } as u32;
    w.record(command)?;
    let after = w.state().destination(dest).and_then(|d| d.sequence_of(id));
    Ok(Added {
        sequence: match (before, after) {
            (None, Some(s)) => Some(s),
            _ => None,
        },
        size,
    })
}

/// Records a non-transactional remove and reports what it did; a remove of nothing stored
/// (or, for a topic, nothing pending for that subscription) is not written.
fn record_remove(
    w: &mut Writer<'_>,
    command: &JournalCommand,
    dest: &DestKey,
    id: &str,
    subscription: Option<&str>,
) -> Result<Removed> {
    let probe = |w: &Writer<'_>| -> Option<(u64, u32, bool)> {
        let d = w.state().destination(dest)?;
        let seq = d.sequence_of(id)?;
        let m = d.message(seq)?;
        let pending = match subscription {
            None => true,
            Some(s) => d
                .subscriptions()
                .get(s)
                .is_some_and(|s| s.pending.contains(&seq)),
        };
        Some((seq, m.size, pending))
    };
    let before = probe(w);
    if !before.is_some_and(|b| b.2) {
        // Nothing to remove: KahaDB would journal it anyway, to no effect on replay. Skip it.
        return Ok(Removed::default());
    }
    w.record(command)?;
    Ok(match before {
        Some((seq, size, true)) => {
            let still = w
                .state()
                .destination(dest)
                .is_some_and(|d| d.message(seq).is_some());
            Removed {
                found: true,
                size,
                deleted: !still,
            }
        }
        _ => Removed::default(),
    })
}

impl Store {
    /// Stores a message (`MessageStore.addMessage`). `sync`: return once it is on disk.
    pub fn add_message(
        &self,
        destination: &DestKey,
        message_id: &str,
        priority: i32,
        prioritized: bool,
        body: impl Into<Vec<u8>>,
        sync: bool,
    ) -> Result<Added> {
        check_name(destination)?;
        check_id(message_id)?;
        let body = body.into();
        let size = body.len() as u32;
        let command = JournalCommand::AddMessage(add_command(
            destination,
            message_id,
            priority,
            prioritized,
            body,
            None,
        ));
        self.write(sync, |w| {
            if w.state()
                .destination(destination)
                .and_then(|d| d.sequence_of(message_id))
                .is_some()
            {
                // A duplicate: KahaDB journals it and ignores it on replay; we skip the write.
                return Ok(Added {
                    sequence: None,
                    size,
                });
            }
            record_add(w, &command, destination, message_id)
        })
    }

    /// Replaces a stored message's content, keeping its place (`MessageStore.updateMessage`). A
    /// message that is not stored any more is stored anew, as KahaDB does; then `sequence` is
    /// its new sequence, else `None`.
    pub fn update_message(
        &self,
        destination: &DestKey,
        message_id: &str,
        priority: i32,
        prioritized: bool,
        body: impl Into<Vec<u8>>,
        sync: bool,
    ) -> Result<Added> {
        check_name(destination)?;
        check_id(message_id)?;
        let command = JournalCommand::UpdateMessage(KahaUpdateMessageCommand {
            message: Some(add_command(
                destination,
                message_id,
                priority,
                prioritized,
                body.into(),
                None,
            )),
        });
        self.write(sync, |w| record_add(w, &command, destination, message_id))
    }

    /// A queue message consumed (`removeMessage`/`removeAsyncMessage`).
    /// (A topic message is acknowledged per subscription: [`Store::acknowledge`].)
    pub fn remove_message(
        &self,
        destination: &DestKey,
        message_id: &str,
        sync: bool,
    ) -> Result<Removed> {
        check_name(destination)?;
        check_queue_remove(destination, None)?;
        check_id(message_id)?;
        let command = JournalCommand::RemoveMessage(remove_command(
            destination,
            message_id,
            None,
            None,
            None,
        ));
        self.write(sync, |w| {
            record_remove(w, &command, destination, message_id, None)
        })
    }

    /// A durable subscription is done with a topic message (`TopicMessageStore.acknowledge`).
    pub fn acknowledge(
        &self,
        destination: &DestKey,
        subscription: &str,
        message_id: &str,
        sync: bool,
    ) -> Result<Removed> {
        check_name(destination)?;
        check_id(message_id)?;
        let command = JournalCommand::RemoveMessage(remove_command(
            destination,
            message_id,
            Some(subscription),
            None,
            None,
        ));
        self.write(sync, |w| {
            record_remove(w, &command, destination, message_id, Some(subscription))
        })
    }

    /// Stores a durable subscription (`addSubscription`); `info` is the broker's marshalled
    /// `SubscriptionInfo`.
    pub fn subscribe(
        &self,
        destination: &DestKey,
        subscription: &str,
        info: &[u8],
        retroactive: bool,
        sync: bool,
    ) -> Result<()> {
        check_name(destination)?;
        if subscription.is_empty() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "a subscription needs a key",
            ));
        }
        let command = JournalCommand::Subscription(KahaSubscriptionCommand {
            destination: Some(kaha_dest(destination)),
            subscription_key: Some(subscription.to_owned()),
            retroactive: Some(retroactive),
            subscription_info: Some(info.to_vec()),
        });
        self.write(sync, |w| w.record(&command).map(|_| ()))
    }

    /// Deletes a durable subscription and what only it still needed.
    pub fn unsubscribe(
        &self,
        destination: &DestKey,
        subscription: &str,
        sync: bool,
    ) -> Result<bool> {
        check_name(destination)?;
        let command = JournalCommand::Subscription(KahaSubscriptionCommand {
            destination: Some(kaha_dest(destination)),
            subscription_key: Some(subscription.to_owned()),
            retroactive: None,
            subscription_info: None,
        });
        self.write(sync, |w| {
            let known = w
                .state()
                .destination(destination)
                .is_some_and(|d| d.subscriptions().contains_key(subscription));
            if known {
                w.record(&command)?;
            }
            Ok(known)
        })
    }

    /// Removes a destination with all its messages and subscriptions (`removeAllMessages`).
    pub fn remove_destination(&self, destination: &DestKey, sync: bool) -> Result<bool> {
        check_name(destination)?;
        let command = JournalCommand::RemoveDestination(KahaRemoveDestinationCommand {
            destination: Some(kaha_dest(destination)),
        });
        self.write(sync, |w| {
            let known = w.state().destination(destination).is_some();
            if known {
                w.record(&command)?;
            }
            Ok(known)
        })
    }

    fn record_ops(w: &mut Writer<'_>, tx: &TxKey, ops: &[TxRequest]) -> Result<()> {
        for op in ops {
            let command = match op {
                TxRequest::Add {
                    destination,
                    message_id,
                    priority,
                    prioritized,
                    body,
                } => JournalCommand::AddMessage(add_command(
                    destination,
                    message_id,
                    *priority,
                    *prioritized,
                    body.clone(),
                    Some(tx),
                )),
                TxRequest::Remove {
                    destination,
                    message_id,
                    subscription,
                    ack,
                } => JournalCommand::RemoveMessage(remove_command(
                    destination,
                    message_id,
                    subscription.as_deref(),
                    // Only XA needs the ack back (recovery); local removes stay small.
                    if tx.is_xa() { ack.clone() } else { None },
                    Some(tx),
                )),
            };
            w.record(&command)?;
        }
        Ok(())
    }

    fn check_ops(ops: &[TxRequest]) -> Result<()> {
        for op in ops {
            match op {
                TxRequest::Add {
                    destination,
                    message_id,
                    ..
                } => {
                    check_name(destination)?;
                    check_id(message_id)?;
                }
                TxRequest::Remove {
                    destination,
                    message_id,
                    subscription,
                    ..
                } => {
                    check_name(destination)?;
                    check_id(message_id)?;
                    check_queue_remove(destination, subscription.as_deref())?;
                }
            }
        }
        Ok(())
    }

    /// Runs `ops` (in order) and the commit as one group; on a failed append the group is
    /// closed with a rollback so the index is left as it was.
    fn commit_group(
        &self,
        tx: &TxKey,
        ops: &[TxRequest],
        commit: JournalCommand,
        sync: bool,
    ) -> Result<Vec<TxOutcome>> {
        self.write(sync, |w| {
            if w.state().prepared().contains_key(tx) {
                return Err(Error::new(
                    ErrorCode::IllegalState,
                    "this transaction is prepared: commit it with commit_prepared",
                ));
            }
            if let Err(e) = Self::record_ops(w, tx, ops) {
                let rollback = JournalCommand::Rollback(KahaRollbackCommand {
                    transaction_info: Some(tx_info(tx)),
                });
                let _ = w.record(&rollback);
                return Err(e);
            }
            Self::apply_commit(w, commit)
        })
    }

    /// Records `commit` and returns, for every operation the transaction held, what it did
    /// (each operation seen after the ones before it in the same transaction).
    fn apply_commit(w: &mut Writer<'_>, commit: JournalCommand) -> Result<Vec<TxOutcome>> {
        w.record(&commit)?;
        Ok(w.state()
            .last_commit_outcomes()
            .iter()
            .map(|o| match *o {
                OpOutcome::Added { sequence, size } => TxOutcome::Added(Added { sequence, size }),
                OpOutcome::Removed {
                    found,
                    size,
                    deleted,
                } => TxOutcome::Removed(Removed {
                    found,
                    size,
                    deleted,
                }),
            })
            .collect())
    }

    /// Commits a transaction that was not prepared (a local transaction, or XA one-phase): its
    /// operations and the commit record, contiguous. Returns one outcome per operation. An
    /// empty transaction writes nothing.
    pub fn commit(&self, tx: &TxKey, ops: &[TxRequest], sync: bool) -> Result<Vec<TxOutcome>> {
        Self::check_ops(ops)?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let commit = JournalCommand::Commit(KahaCommitCommand {
            transaction_info: Some(tx_info(tx)),
        });
        self.commit_group(tx, ops, commit, sync)
    }

    /// Prepares an XA transaction: its operations and the prepare record, always synced. They
    /// take effect at [`Store::commit_prepared`] (also after a restart).
    pub fn prepare(&self, tx: &TxKey, ops: &[TxRequest]) -> Result<()> {
        Self::check_ops(ops)?;
        if !tx.is_xa() {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                "only an XA transaction can be prepared",
            ));
        }
        if ops.is_empty() {
            return Ok(());
        }
        let prepare = JournalCommand::Prepare(KahaPrepareCommand {
            transaction_info: Some(tx_info(tx)),
        });
        self.write(true, |w| {
            if w.state().prepared().contains_key(tx) {
                return Err(Error::new(
                    ErrorCode::IllegalState,
                    "this transaction is already prepared",
                ));
            }
            if let Err(e) = Self::record_ops(w, tx, ops) {
                let rollback = JournalCommand::Rollback(KahaRollbackCommand {
                    transaction_info: Some(tx_info(tx)),
                });
                let _ = w.record(&rollback);
                return Err(e);
            }
            w.record(&prepare).map(|_| ())
        })
    }

    /// Commits a prepared transaction. Returns one outcome per operation; a transaction that is
    /// not (or no longer) prepared commits nothing.
    pub fn commit_prepared(&self, tx: &TxKey, sync: bool) -> Result<Vec<TxOutcome>> {
        let commit = JournalCommand::Commit(KahaCommitCommand {
            transaction_info: Some(tx_info(tx)),
        });
        self.write(sync, |w| {
            if !w.state().prepared().contains_key(tx) {
                return Ok(Vec::new());
            }
            Self::apply_commit(w, commit)
        })
    }

    /// Rolls a prepared transaction back. Returns whether it was prepared.
    pub fn rollback_prepared(&self, tx: &TxKey, sync: bool) -> Result<bool> {
        let rollback = JournalCommand::Rollback(KahaRollbackCommand {
            transaction_info: Some(tx_info(tx)),
        });
        self.write(sync, |w| {
            if !w.state().prepared().contains_key(tx) {
                return Ok(false);
            }
            w.record(&rollback)?;
            Ok(true)
        })
    }

    /// The prepared transactions with their operations (message bodies read from the journal).
    pub fn prepared_transactions(&self) -> Result<Vec<PreparedTx>> {
        let _files = self.files_guard();
        let held: Vec<(TxKey, Vec<TxOp>)> = self.read_state(|s| {
            s.prepared()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        });
        let mut out = Vec::with_capacity(held.len());
        for (tx, ops) in held {
            let mut requests = Vec::with_capacity(ops.len());
            for op in ops {
                requests.push(match op {
                    TxOp::Add { command, .. } => TxRequest::Add {
                        destination: command
                            .destination
                            .as_ref()
                            .map(DestKey::of)
                            .unwrap_or_default(),
                        message_id: command.message_id.clone().unwrap_or_default(),
                        priority: command.priority_or_default(),
                        prioritized: command.priority_supported.unwrap_or(false),
                        body: command.message.clone().unwrap_or_default(),
                    },
                    TxOp::Remove {
                        destination,
                        message_id,
                        subscription,
                        location,
                    } => {
                        let ack = match JournalCommand::decode(&self.journal().read(location)?)? {
                            JournalCommand::RemoveMessage(r) => r.ack,
                            _ => None,
                        };
                        TxRequest::Remove {
                            destination,
                            message_id,
                            subscription,
                            ack,
                        }
                    }
                });
            }
            out.push(PreparedTx { tx, ops: requests });
        }
        Ok(out)
    }

    /// Destinations with stored state (messages or subscriptions).
    pub fn destinations(&self) -> Vec<DestKey> {
        self.read_state(|s| s.destinations().map(|(k, _)| k.clone()).collect())
    }

    /// Stored messages and their body bytes: of the destination, or (topics) those a
    /// subscription still has to consume.
    pub fn counts(&self, destination: &DestKey, subscription: Option<&str>) -> (u64, u64) {
        self.read_state(|s| {
            let Some(d) = s.destination(destination) else {
                return (0, 0);
            };
            match subscription {
                None => (d.message_count() as u64, d.message_bytes()),
                Some(key) => match d.subscriptions().get(key) {
                    None => (0, 0),
                    Some(sub) => {
                        let bytes = sub
                            .pending
                            .iter()
                            .filter_map(|seq| d.message(*seq))
                            .map(|m| u64::from(m.size))
                            .sum();
                        (sub.pending.len() as u64, bytes)
                    }
                },
            }
        })
    }

    /// The sequence the next message stored in `destination` will get.
    pub fn next_sequence(&self, destination: &DestKey) -> u64 {
        self.read_state(|s| s.destination(destination).map_or(0, |d| d.next_seq()))
    }

    /// Stored subscriptions of a topic: key and `SubscriptionInfo` bytes.
    pub fn subscriptions(&self, destination: &DestKey) -> Vec<(String, Vec<u8>)> {
        self.read_state(|s| {
            s.destination(destination)
                .map(|d| {
                    d.subscriptions()
                        .iter()
                        .map(|(k, v)| (k.clone(), v.info.clone()))
                        .collect()
                })
                .unwrap_or_default()
        })
    }

    /// Bytes the store's data files take (each data file counted at its full, preallocated
    /// length). Cheap: no I/O.
    pub fn disk_usage(&self) -> u64 {
        let files = self.journal().data_file_ids().len() as u64;
        files * u64::from(self.journal().config().max_file_length)
    }

    /// The highest producer sequence stored for a producer, or -1.
    pub fn last_producer_sequence(&self, producer_id: &str) -> i64 {
        self.read_state(|s| s.last_producer_sequence(producer_id))
    }

    /// The body of the stored message with this id.
    pub fn get_message(&self, destination: &DestKey, message_id: &str) -> Result<Option<Vec<u8>>> {
        let _files = self.files_guard();
        let location = self.read_state(|s| {
            let d = s.destination(destination)?;
            let seq = d.sequence_of(message_id)?;
            d.message(seq).map(|m| m.location)
        });
        match location {
            None => Ok(None),
            Some(l) => self.message_body(l).map(Some),
        }
    }

    /// The next messages of a destination in store order (lane by lane, each by sequence),
    /// or, with `subscription`, only those that subscription still has to consume.
    pub fn read_messages(
        &self,
        destination: &DestKey,
        subscription: Option<&str>,
        request: ReadRequest,
    ) -> Result<Vec<ReadMessage>> {
        // Pick under the lock; copy bodies without it (the files stay while the guard lives).
        let _files = self.files_guard();
        let picked: Vec<(u64, u8, String, Location, u32)> = self.read_state(|s| {
            let mut picked = Vec::new();
            let Some(d) = s.destination(destination) else {
                return picked;
            };
            let pending = match subscription {
                None => None,
                Some(key) => match d.subscriptions().get(key) {
                    Some(sub) => Some(&sub.pending),
                    None => return picked,
                },
            };
            let mut bytes = 0usize;
            'lanes: for lane in 0..3 {
                let range = request.from[lane]..request.limit;
                let mut take = |seq: u64, m: &super::state::StoredMessage| -> bool {
                    if picked.len() >= request.max_count || bytes >= request.max_bytes {
                        return false;
                    }
                    bytes += m.size as usize;
                    picked.push((
                        seq,
                        lane as u8,
                        m.message_id.to_string(),
                        m.location,
                        m.size,
                    ));
                    true
                };
                match pending {
                    None => {
                        for (seq, m) in d.lane_messages(lane, range) {
                            if !take(seq, m) {
                                break 'lanes;
                            }
                        }
                    }
                    Some(p) => {
                        if d.lane_counts()[lane] == 0 || range.is_empty() {
                            continue;
                        }
                        // Walk whichever is smaller: the lane's messages or what the
                        // subscription has pending in the range.
                        let lane_smaller = lane != 1 && d.lane_counts()[lane] < p.len() as u64;
                        let seqs: Box<dyn Iterator<Item = u64>> = if lane_smaller {
                            Box::new(d.lane_sequences(lane, range).filter(|s| p.contains(s)))
                        } else {
                            Box::new(p.range(range).copied())
                        };
                        for seq in seqs {
                            if let Some(m) = d.message(seq) {
                                if lane_of(m.priority) == lane && !take(seq, m) {
                                    break 'lanes;
                                }
                            }
                        }
                    }
                }
            }
            picked
        });
        let mut out = Vec::with_capacity(picked.len());
        for (sequence, lane, message_id, location, _) in picked {
            match self.message_body(location) {
                Ok(body) => out.push(ReadMessage {
                    sequence,
                    lane,
                    message_id,
                    body,
                }),
                // Consumed (and its file reclaimed) since it was picked: skip it.
                Err(e)
                    if e.code() == ErrorCode::NotFound
                        || e.code() == ErrorCode::InvalidLocation =>
                {
                    let still = self.read_state(|s| {
                        s.destination(destination)
                            .is_some_and(|d| d.message(sequence).is_some())
                    });
                    if still {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}

//! Data-file GC and ack compaction (`docs/STORE.md` §6.6).
//!
//! **GC.** A data file can be deleted when it holds no record the index needs (no stored
//! message, subscription record or operation of an unfinished transaction: [`State::live_files`])
//! and no record a replay of the remaining files would need to keep older records dead: a file
//! whose records kill or complete records of an older file that stays (its *pins*, kept by
//! [`State::apply`]) stays too. Only files before the checkpoint's file are considered, so that a
//! recovery (checkpoint + journal after it) never misses a record.
//!
//! **Relocation.** One old message keeps its file, the next file holds acks for that file's
//! messages and so pins it, and so on: one stuck message can keep the whole journal. The remedy
//! is to re-append the few live records of such a *root* file at the head of the journal, as
//! commands that mean the same to the index and to a replay of whatever files remain:
//!
//! - a stored message: a `KahaUpdateMessageCommand` with the same content (an update of a known
//!   message only moves it; in a replay without the old file it is an add);
//! - for a topic message also, per subscription that does not have it pending, an ack with an
//!   empty (unmatched) ack field, so that a replay in which the update is an add (pending for
//!   every subscription) ends the same;
//! - a subscription record: re-appended before any message, non-retroactive if nothing is
//!   pending for it; otherwise retroactive (every stored message becomes pending, those still
//!   pending for it included) followed by an unmatched ack for each stored message it does not
//!   have pending.
//!
//! Files holding operations of unfinished transactions are never relocated. Relocation never
//! writes `KahaRewrittenDataFileCommand` (trap T3) nor any field 6.3.1 does not know (T1).

use std::collections::{BTreeMap, BTreeSet};

use crate::error::Result;
use crate::journal::{Journal, Location};

use super::codec::{
    DestinationType, JournalCommand, KahaAddMessageCommand, KahaDestination,
    KahaRemoveMessageCommand, KahaSubscriptionCommand, KahaUpdateMessageCommand,
};
use super::state::{DestKey, State, StoredMessage, TxOp};

/// What one cleanup did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Data files deleted.
    pub deleted: Vec<u32>,
    /// Data files whose live records were re-appended at the head (deleted by a later GC).
    pub relocated_files: Vec<u32>,
    /// Records appended by the relocation (updates, acks, subscription records).
    pub relocated_records: u64,
    /// Their total size in the journal.
    pub relocated_bytes: u64,
}

/// The data files among `files` (ascending) that can be deleted: before file `below`, not live,
/// and not pinned to a file that stays.
pub fn deletable(state: &State, files: &[u32], below: u32) -> Vec<u32> {
    let live = state.live_files();
    let newest = files.last().copied().unwrap_or(0);
    // A file newer than the newest listed one is being started: it exists for this purpose.
    let exists = |f: u32| f > newest || files.binary_search(&f).is_ok();
    let mut cand: BTreeSet<u32> = files
        .iter()
        .copied()
        .filter(|f| *f < below && !live.contains_key(f))
        .collect();
    // Who pins whom, among candidates.
    let mut pinned_by: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut blocked = Vec::new();
    for f in &cand {
        let Some(to) = state.pins().get(f) else {
            continue;
        };
        for t in to {
            if cand.contains(t) {
                pinned_by.entry(*t).or_default().push(*f);
            } else if exists(*t) {
                blocked.push(*f);
            }
        }
    }
    // A blocked candidate stays, so whatever pins it stays too.
    while let Some(f) = blocked.pop() {
        if cand.remove(&f) {
            if let Some(by) = pinned_by.get(&f) {
                blocked.extend(by.iter().copied().filter(|b| cand.contains(b)));
            }
        }
    }
    cand.into_iter().collect()
}

/// Relocation settings for one cycle.
#[derive(Debug, Clone, Copy)]
pub struct RelocationLimits {
    /// Only files before this one are relocated (the checkpoint's file).
    pub below: u32,
    /// A file is relocated only if its live records take at most this many bytes.
    pub max_live_bytes: u64,
    /// At most this many bytes are appended per cycle.
    pub budget: u64,
    /// The journal's largest record (a relocated record must fit).
    pub max_record_len: usize,
}

/// The records to append to relocate the live records of some files.
#[derive(Debug, Clone, Default)]
pub struct Relocation {
    pub files: Vec<u32>,
    /// In append order: every subscription record first, then the messages with their acks.
    pub commands: Vec<JournalCommand>,
    /// Their total size in the journal.
    pub bytes: u64,
}

fn command_size(command: &JournalCommand) -> u64 {
    command.encoded_len() as u64 + crate::journal::format::RECORD_HEAD as u64
}

fn kaha_destination(key: &DestKey) -> KahaDestination {
    KahaDestination::new(DestinationType::from_i32(key.kind), key.name.clone())
}

/// An ack that tells a replay "this subscription does not have that message pending".
fn unmatched_ack(dest: &DestKey, message_id: &str, subscription: &str) -> JournalCommand {
    KahaRemoveMessageCommand {
        transaction_info: None,
        destination: Some(kaha_destination(dest)),
        message_id: Some(message_id.to_string()),
        ack: Some(Vec::new()),
        subscription_key: Some(subscription.to_string()),
    }
    .into()
}

/// The add (or update) command stored at `location`, for message `message_id` of `dest`.
fn read_message(
    journal: &Journal,
    location: Location,
    dest: &DestKey,
    message_id: &str,
) -> std::result::Result<KahaAddMessageCommand, String> {
    let data = journal.read(location).map_err(|e| e.to_string())?;
    let add = match JournalCommand::decode(&data).map_err(|e| e.to_string())? {
        JournalCommand::AddMessage(a) => a,
        JournalCommand::UpdateMessage(KahaUpdateMessageCommand { message: Some(a) }) => a,
        other => {
            return Err(format!(
                "the record at {location} is a {:?} command, not a message",
                other.known_entry_type()
            ))
        }
    };
    let kind = add
        .destination
        .as_ref()
        .map(|d| d.dest_type_or_default().as_i32());
    let name = add.destination.as_ref().and_then(|d| d.name.as_deref());
    if add.message_id.as_deref() != Some(message_id)
        || kind != Some(dest.kind)
        || name != Some(dest.name.as_str())
    {
        return Err(format!(
            "the record at {location} is not message {message_id} of {}",
            dest.name
        ));
    }
    Ok(add)
}

/// Plans the relocation of the oldest small live files: files before `limits.below` whose live
/// records take at most `limits.max_live_bytes`, oldest first, within `limits.budget`. Files
/// holding operations of unfinished transactions are left alone. `state` must not change
/// between planning and appending (plan and append under the store's lock).
///
/// A subscription with messages pending is relocated together with every message it has
/// pending, wherever they are: in a replay without its old record, a message added before the
/// relocated record was not pending for it (or, if no other subscription wanted it, not even
/// stored), and only its relocated update brings it back for that subscription.
pub fn plan_relocation(
    state: &State,
    journal: &Journal,
    limits: RelocationLimits,
) -> Result<Relocation> {
    let live = state.live_files();
    let tx_files: BTreeSet<u32> = state
        .inflight()
        .values()
        .chain(state.prepared().values())
        .flatten()
        .map(|op| match op {
            TxOp::Add { location, .. } | TxOp::Remove { location, .. } => location.file_id,
        })
        .collect();
    // Candidates: oldest first, as many as their live bytes allow.
    let mut candidates: BTreeSet<u32> = BTreeSet::new();
    let mut planned = 0;
    for (f, info) in live.range(..limits.below) {
        if info.bytes <= limits.max_live_bytes
            && !tx_files.contains(f)
            && planned + info.bytes <= limits.budget
        {
            planned += info.bytes;
            candidates.insert(*f);
        }
    }
    if candidates.is_empty() {
        return Ok(Relocation::default());
    }
    // What each candidate holds: subscription records and messages.
    let mut subs_in: BTreeMap<u32, Vec<(&DestKey, &String)>> = BTreeMap::new();
    let mut messages_in: BTreeMap<u32, Vec<(&DestKey, u64)>> = BTreeMap::new();
    let mut involved: BTreeSet<&DestKey> = BTreeSet::new();
    for (key, dest) in state.destinations() {
        for (sub_key, sub) in dest.subscriptions() {
            if candidates.contains(&sub.location.file_id) {
                involved.insert(key);
                subs_in
                    .entry(sub.location.file_id)
                    .or_default()
                    .push((key, sub_key));
            }
        }
        for (seq, m) in dest.messages() {
            if candidates.contains(&m.location.file_id) {
                involved.insert(key);
                messages_in
                    .entry(m.location.file_id)
                    .or_default()
                    .push((key, seq));
            }
        }
    }
    // Messages by sequence, for the destinations a relocation may touch.
    let by_seq: BTreeMap<&DestKey, BTreeMap<u64, &StoredMessage>> = state
        .destinations()
        .filter(|(k, _)| involved.contains(k))
        .map(|(k, d)| (k, d.messages().collect()))
        .collect();
    let message = |key: &DestKey, seq: u64| by_seq.get(key).and_then(|m| m.get(&seq)).copied();
    // Pick files, oldest first, within the budget (estimated: message records as they are,
    // subscription records and acks as encoded).
    let mut out = Relocation::default();
    let mut subscriptions: Vec<JournalCommand> = Vec::new();
    let mut messages: BTreeSet<(&DestKey, u64)> = BTreeSet::new();
    let mut estimate = 0u64;
    for file in candidates {
        let mut cost = 0u64;
        let mut commands = Vec::new();
        let mut wanted: BTreeSet<(&DestKey, u64)> = BTreeSet::new();
        let mut fits = true;
        for (key, sub_key) in subs_in.remove(&file).unwrap_or_default() {
            let Some(dest) = state.destination(key) else {
                continue;
            };
            let sub = &dest.subscriptions()[sub_key];
            let retroactive = !sub.pending.is_empty();
            let record: JournalCommand = KahaSubscriptionCommand {
                destination: Some(kaha_destination(key)),
                subscription_key: Some(sub_key.clone()),
                retroactive: Some(retroactive),
                subscription_info: Some(sub.info.clone()),
            }
            .into();
            cost += command_size(&record);
            commands.push(record);
            if retroactive {
                // One ack per stored message it does not have pending: give up early on a
                // topic whose backlog would not fit anyway.
                let acks = dest.message_count().saturating_sub(sub.pending.len()) as u64;
                if acks.saturating_mul(32) > limits.budget {
                    fits = false;
                    break;
                }
                for (seq, m) in dest.messages() {
                    if sub.pending.contains(&seq) {
                        wanted.insert((key, seq));
                    } else {
                        let a = unmatched_ack(key, &m.message_id.to_string(), sub_key);
                        cost += command_size(&a);
                        commands.push(a);
                    }
                }
            }
        }
        wanted.extend(messages_in.remove(&file).unwrap_or_default());
        for (key, seq) in &wanted {
            if messages.contains(&(*key, *seq)) {
                continue;
            }
            let Some(dest) = state.destination(key) else {
                continue;
            };
            if let Some(m) = message(key, *seq) {
                let not_pending = dest
                    .subscriptions()
                    .values()
                    .filter(|s| !s.pending.contains(seq))
                    .count() as u64;
                cost += u64::from(m.location.size) + 8 + not_pending * 64;
            }
        }
        if !fits || estimate + cost > limits.budget {
            continue;
        }
        estimate += cost;
        out.files.push(file);
        subscriptions.extend(commands);
        messages.extend(wanted);
    }
    if out.files.is_empty() {
        return Ok(Relocation::default());
    }
    // Subscription records first, so that a replay without the old files knows every
    // subscription before the messages come back.
    out.commands = subscriptions;
    for (key, seq) in messages {
        let Some(dest) = state.destination(key) else {
            continue;
        };
        let Some(m) = message(key, seq) else {
            continue;
        };
        let add = match read_message(journal, m.location, key, &m.message_id.to_string()) {
            Ok(a) => a,
            Err(why) => {
                log::warn!(
                    "journal {}: no relocation this time: {why}",
                    journal.dir().display()
                );
                return Ok(Relocation::default());
            }
        };
        let update: JournalCommand = KahaUpdateMessageCommand {
            message: Some(KahaAddMessageCommand {
                transaction_info: None,
                ..add
            }),
        }
        .into();
        if update.encoded_len() > limits.max_record_len {
            log::warn!(
                "journal {}: no relocation this time: message {} would not fit in a record",
                journal.dir().display(),
                m.message_id
            );
            return Ok(Relocation::default());
        }
        out.commands.push(update);
        for (sub_key, sub) in dest.subscriptions() {
            if !sub.pending.contains(&seq) {
                out.commands
                    .push(unmatched_ack(key, &m.message_id.to_string(), sub_key));
            }
        }
    }
    out.bytes = out.commands.iter().map(command_size).sum();
    Ok(out)
}

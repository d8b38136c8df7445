//! The C ABI of the message store (`kahadb_store_*`): one call per broker operation, with the
//! conventions of the journal functions in the parent module (result codes, last error, handles
//! from [`crate::handles::STORES`] cast to an opaque pointer, buffers freed with
//! `kahadb_buffer_free`, every body inside `guard` so no panic crosses the boundary).
//!
//! Transactions come in, and lists go out, in the packed forms of [`crate::store::packed`], the
//! same bytes the JNI bridge uses; the doc comments below are the C-facing contract and end up in
//! `include/kahadb.h`. Semantics mirror `src/jni/store.rs`.
//!
//! Output pointers follow one rule: a query's outputs are required (NULL is
//! `KAHADB_ERR_NULL_ARGUMENT`); the report of a change (`out_sequence`, `out_removed`,
//! `out_found`, the outcomes of a commit) is optional, since the change happens either way.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::Arc;

use super::{guard, into_c_buffer, kahadb_journal_options, null, KAHADB_OK};
use crate::error::{Error, ErrorCode, Result};
use crate::handles::{StoreHandle, STORES};
use crate::store::codec::DestinationType;
use crate::store::ops::{ReadRequest, Removed, TxOutcome};
use crate::store::packed;
use crate::store::state::{DestKey, TxKey};
use crate::store::{Store, StoreConfig};

/// Destination type: a queue.
pub const KAHADB_DEST_QUEUE: i32 = 0;
/// Destination type: a topic (messages are kept for its durable subscriptions).
pub const KAHADB_DEST_TOPIC: i32 = 1;
/// Destination type: a temporary queue.
pub const KAHADB_DEST_TEMP_QUEUE: i32 = 2;
/// Destination type: a temporary topic.
pub const KAHADB_DEST_TEMP_TOPIC: i32 = 3;

/// Packed transaction id, first byte: a local transaction,
/// `u8 KAHADB_TX_LOCAL, string connection id, i64 transaction id`.
pub const KAHADB_TX_LOCAL: i32 = 0;
/// Packed transaction id, first byte: an XA transaction,
/// `u8 KAHADB_TX_XA, i32 format id, bytes global transaction id, bytes branch qualifier`.
pub const KAHADB_TX_XA: i32 = 1;

/// Packed operation, first byte: store a message,
/// `u8 KAHADB_OP_ADD, u8 destination type, string destination name, string message id,
/// i32 priority, u8 prioritized (0 or 1), bytes body`.
/// Also the `kind` of a `kahadb_tx_outcome` for such an operation.
pub const KAHADB_OP_ADD: i32 = 1;
/// Packed operation, first byte: a queue remove or a topic acknowledgement,
/// `u8 KAHADB_OP_REMOVE, u8 destination type, string destination name, string message id,
/// bytes? subscription key (UTF-8; none for a queue), bytes? ack` (`ack`: the broker's
/// marshalled `MessageAck`, kept only for XA transactions, for their recovery).
/// Also the `kind` of a `kahadb_tx_outcome` for such an operation.
pub const KAHADB_OP_REMOVE: i32 = 2;

/// Priority lane of a message read back (`kahadb_store_read`): priorities 5 to 9.
pub const KAHADB_LANE_HIGH: i32 = 0;
/// Priority lane: priority 4, and every message stored with `prioritized` false.
pub const KAHADB_LANE_DEFAULT: i32 = 1;
/// Priority lane: priorities 0 to 3.
pub const KAHADB_LANE_LOW: i32 = 2;

/// An open message store (opaque): a KahaDB-compatible journal and its index in one directory,
/// safe to use from any number of threads at once.
///
/// Arguments: strings are NUL-terminated UTF-8 (invalid UTF-8 gives
/// `KAHADB_ERR_INVALID_ARGUMENT`); a destination is a type (`KAHADB_DEST_*`, anything else is
/// `KAHADB_ERR_INVALID_ARGUMENT`) and a non-empty name; message ids and subscription keys are
/// non-empty. A query's output pointers are required (NULL gives `KAHADB_ERR_NULL_ARGUMENT`);
/// the report of a change (`out_sequence`, `out_removed`, `out_found`, commit outcomes) may be
/// NULL when not wanted. `sync`: return only once the change is durable (as the journal's
/// sync strategy defines).
///
/// A change whose write fails (IO, NO_SPACE) stops the store: every later change fails until
/// the store is closed and opened again, which recovers what is on disk.
///
/// Packed buffers. Transactions are passed in, and lists returned, as packed bytes (the same
/// forms the Java binding uses). Integers are big-endian; `string` is an i32 byte length and
/// that many UTF-8 bytes; `bytes` is an i32 length and that many bytes; `bytes?` is the same, or
/// just the i32 -1 for none.
///
///   tx id    = u8 KAHADB_TX_LOCAL, string connection id, i64 transaction id
///            | u8 KAHADB_TX_XA, i32 format id, bytes global id, bytes branch qualifier
///   ops      = i32 n, n x op
///   op       = u8 KAHADB_OP_ADD, u8 dest type, string dest name, string message id,
///                  i32 priority, u8 prioritized, bytes body
///            | u8 KAHADB_OP_REMOVE, u8 dest type, string dest name, string message id,
///                  bytes? subscription key, bytes? ack
///   prepared = i32 n, n x (tx id, ops)
///   messages = i32 n, n x (i64 sequence, u8 lane, string message id, bytes body)
///   dests    = i32 n, n x (u8 dest type, string name)
///   subs     = i32 n, n x (string key, bytes info)
///
/// A buffer passed in must hold exactly one such value: anything truncated, left over,
/// out of range (a kind, a destination type, a negative length) or not UTF-8 where a string is
/// expected gives `KAHADB_ERR_INVALID_ARGUMENT` and changes nothing.
pub struct kahadb_store {
    _opaque: [u8; 0],
}

/// Store options. Initialise with `kahadb_store_options_init`, then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kahadb_store_options {
    /// The journal's options (defaults as `kahadb_journal_options_init` sets them).
    pub journal: kahadb_journal_options,
    /// Write a checkpoint of the index after this many journal commands (default 100000; 0:
    /// only on `kahadb_store_checkpoint` and at close). A restart replays at most about this
    /// many records.
    pub checkpoint_every: u64,
    /// Delete every data file and the index when opening, under the directory lock (ActiveMQ's
    /// `deleteAllMessagesOnStartup`). Default false.
    pub delete_all: bool,
}

impl Default for kahadb_store_options {
    fn default() -> Self {
        let d = StoreConfig::default();
        kahadb_store_options {
            journal: kahadb_journal_options::default(),
            checkpoint_every: d.checkpoint_every,
            delete_all: d.delete_all,
        }
    }
}

/// What a queue remove or a topic acknowledgement did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct kahadb_removed {
    /// The message was stored (for an acknowledgement: still pending for that subscription)
    /// and now is not. False if there was nothing to remove (nothing was written).
    pub found: bool,
    /// The message left the store: always, for a queue remove that found it; for an
    /// acknowledgement, when no other subscription still needs the message.
    pub deleted: bool,
    /// The message body's size in bytes (0 if not found).
    pub size: u32,
}

impl From<Removed> for kahadb_removed {
    fn from(r: Removed) -> Self {
        kahadb_removed {
            found: r.found,
            deleted: r.deleted,
            size: r.size,
        }
    }
}

/// What one operation of a committed transaction did.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct kahadb_tx_outcome {
    /// `KAHADB_OP_ADD` or `KAHADB_OP_REMOVE`: the operation this reports on.
    pub kind: i32,
    /// Add: the sequence the message got, or -1 if nothing was stored (a duplicate id, or a
    /// topic with no durable subscription). Remove: -1.
    pub sequence: i64,
    /// The body size in bytes: of the added message; of the removed one (0 if not found).
    pub size: u32,
    /// Remove: as `kahadb_removed.found`. Add: false.
    pub found: bool,
    /// Remove: as `kahadb_removed.deleted`. Add: false.
    pub deleted: bool,
}

impl From<&TxOutcome> for kahadb_tx_outcome {
    fn from(o: &TxOutcome) -> Self {
        match o {
            TxOutcome::Added(a) => kahadb_tx_outcome {
                kind: KAHADB_OP_ADD,
                sequence: sequence(a.sequence),
                size: a.size,
                found: false,
                deleted: false,
            },
            TxOutcome::Removed(r) => kahadb_tx_outcome {
                kind: KAHADB_OP_REMOVE,
                sequence: -1,
                size: r.size,
                found: r.found,
                deleted: r.deleted,
            },
        }
    }
}

/// Which messages `kahadb_store_read` returns. Initialise with `kahadb_read_request_init`
/// (everything), then narrow it. A destination's messages are returned lane by lane (high,
/// default, low; see `KAHADB_LANE_*`), each lane in sequence order.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct kahadb_read_request {
    /// First sequence to consider in the high lane (default 0; negative is invalid).
    pub from_high: i64,
    /// First sequence to consider in the default lane (default 0; negative is invalid).
    pub from_default: i64,
    /// First sequence to consider in the low lane (default 0; negative is invalid).
    pub from_low: i64,
    /// Sequences at or above this are not returned (e.g. messages not yet announced to
    /// consumers); negative: no limit (default -1).
    pub limit: i64,
    /// Return at most this many messages (default SIZE_MAX; 0 returns none).
    pub max_count: usize,
    /// Stop once the bodies returned add up to this many bytes; the message that reaches it is
    /// included, so a non-zero value always lets one message through (default SIZE_MAX).
    pub max_bytes: usize,
}

impl Default for kahadb_read_request {
    fn default() -> Self {
        kahadb_read_request {
            from_high: 0,
            from_default: 0,
            from_low: 0,
            limit: -1,
            max_count: usize::MAX,
            max_bytes: usize::MAX,
        }
    }
}

impl kahadb_read_request {
    fn to_request(self) -> Result<ReadRequest> {
        let from = |v: i64, what: &str| {
            u64::try_from(v).map_err(|_| {
                Error::new(
                    ErrorCode::InvalidArgument,
                    format!("request.{what} is negative ({v})"),
                )
            })
        };
        Ok(ReadRequest {
            from: [
                from(self.from_high, "from_high")?,
                from(self.from_default, "from_default")?,
                from(self.from_low, "from_low")?,
            ],
            limit: u64::try_from(self.limit).unwrap_or(u64::MAX),
            max_count: self.max_count,
            max_bytes: self.max_bytes,
        })
    }
}

fn store_id(s: *const kahadb_store) -> u64 {
    s as usize as u64
}

fn store(s: *mut kahadb_store) -> Result<Arc<Store>> {
    STORES.get(store_id(s))?.store()
}

fn sequence(s: Option<u64>) -> i64 {
    s.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidArgument, message)
}

/// A required string argument.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: `p` is non-NULL and, per the caller's contract, NUL-terminated and valid for 'a.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str()
        .map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// A required, non-empty string argument.
///
/// # Safety
/// As for [`text`].
unsafe fn name<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    // SAFETY: forwarded contract.
    let s = unsafe { text(p, what) }?;
    if s.is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    Ok(s)
}

/// An optional subscription key: NULL for none, else non-empty.
///
/// # Safety
/// As for [`text`].
unsafe fn subscription_opt<'a>(p: *const c_char) -> Result<Option<&'a str>> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    unsafe { name(p, "subscription") }.map(Some)
}

/// A destination argument.
///
/// # Safety
/// As for [`text`], for `dest_name`.
unsafe fn dest(dest_type: i32, dest_name: *const c_char) -> Result<DestKey> {
    // SAFETY: forwarded contract.
    let n = unsafe { name(dest_name, "dest_name") }?;
    if !(KAHADB_DEST_QUEUE..=KAHADB_DEST_TEMP_TOPIC).contains(&dest_type) {
        return Err(invalid(format!(
            "dest_type {dest_type} is not one of KAHADB_DEST_QUEUE, KAHADB_DEST_TOPIC, KAHADB_DEST_TEMP_QUEUE, KAHADB_DEST_TEMP_TOPIC"
        )));
    }
    Ok(DestKey::new(DestinationType::from_i32(dest_type), n))
}

/// A byte buffer that may be empty: NULL is allowed only with `len` 0.
///
/// # Safety
/// `p` is NULL or points to `len` readable bytes that stay valid for `'a`.
unsafe fn bytes<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if p.is_null() {
        return Err(invalid(format!("{what} is NULL but its length is {len}")));
    }
    // SAFETY: non-NULL and `len` readable bytes per the caller's contract.
    Ok(unsafe { std::slice::from_raw_parts(p, len) })
}

/// A required packed buffer (never empty when well-formed): NULL is `NULL_ARGUMENT`.
///
/// # Safety
/// As for [`bytes`].
unsafe fn packed_arg<'a>(p: *const u8, len: usize, what: &str) -> Result<&'a [u8]> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: forwarded contract.
    unsafe { bytes(p, len, what) }
}

/// Checks the outcome array arguments of a commit before anything is written.
fn check_outcomes(out: *mut kahadb_tx_outcome, capacity: usize) -> Result<()> {
    if out.is_null() && capacity > 0 {
        return Err(invalid(format!(
            "out_outcomes is NULL but capacity is {capacity}"
        )));
    }
    Ok(())
}

/// Writes up to `capacity` outcomes and the total count.
///
/// # Safety
/// `out` is NULL (then `capacity` is 0) or points to `capacity` writable outcomes; `out_count`
/// is NULL or writable.
unsafe fn write_outcomes(
    outcomes: &[TxOutcome],
    out: *mut kahadb_tx_outcome,
    capacity: usize,
    out_count: *mut usize,
) {
    for (i, o) in outcomes.iter().take(capacity).enumerate() {
        // SAFETY: i < capacity, and `out` points to `capacity` writable elements (it is
        // non-NULL whenever capacity > 0, checked by `check_outcomes`).
        unsafe { out.add(i).write(o.into()) };
    }
    if !out_count.is_null() {
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_count.write(outcomes.len()) };
    }
}

/// Hands `data` to the caller as a buffer.
///
/// # Safety
/// `out_data` and `out_len` are non-NULL and writable.
unsafe fn give(data: Vec<u8>, out_data: *mut *mut u8, out_len: *mut usize) {
    let (ptr, len) = into_c_buffer(data);
    // SAFETY: both pointers are non-NULL and writable per the contract.
    unsafe {
        out_data.write(ptr);
        out_len.write(len);
    }
}

fn check_buffer_outputs(out_data: *mut *mut u8, out_len: *mut usize) -> Result<()> {
    if out_data.is_null() || out_len.is_null() {
        return Err(null("out_data or out_len"));
    }
    Ok(())
}

/// Fills `options` with the defaults. Does nothing if `options` is NULL.
///
/// # Safety
/// `options` is NULL or points to writable memory for one `kahadb_store_options`.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_options_init(options: *mut kahadb_store_options) {
    if !options.is_null() {
        // SAFETY: the caller guarantees `options` points to writable memory for one struct;
        // `write` does not read the (possibly uninitialised) old value.
        unsafe { options.write(kahadb_store_options::default()) };
    }
}

/// Fills `request` with the defaults: every message from the start. Does nothing if `request`
/// is NULL.
///
/// # Safety
/// `request` is NULL or points to writable memory for one `kahadb_read_request`.
#[no_mangle]
pub unsafe extern "C" fn kahadb_read_request_init(request: *mut kahadb_read_request) {
    if !request.is_null() {
        // SAFETY: as for `kahadb_store_options_init`.
        unsafe { request.write(kahadb_read_request::default()) };
    }
}

/// Opens (creating if needed) the store in directory `dir` (UTF-8 path): the journal, then the
/// index from its last checkpoint and the journal records after it, including prepared XA
/// transactions. `options` may be NULL for the defaults. On success stores the handle in
/// `*out_store`; close it with `kahadb_store_close`.
///
/// Errors: NULL_ARGUMENT (`dir` or `out_store` NULL), INVALID_ARGUMENT (`dir` empty or not
/// UTF-8), CONFIG (bad options), LOCKED (the directory is open elsewhere: this or another
/// process, or a broker), CORRUPT, IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string; `options` is NULL or points to an initialised
/// `kahadb_store_options`; `out_store` is NULL or points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_open(
    dir: *const c_char,
    options: *const kahadb_store_options,
    out_store: *mut *mut kahadb_store,
) -> i32 {
    guard(|| {
        crate::logging::init();
        if out_store.is_null() {
            return Err(null("out_store"));
        }
        // SAFETY: NULL or NUL-terminated per the contract.
        let dir = unsafe { name(dir, "dir") }?;
        let opts = if options.is_null() {
            kahadb_store_options::default()
        } else {
            // SAFETY: non-NULL and, per the contract, an initialised struct; read by copy.
            unsafe { options.read() }
        };
        let config = StoreConfig {
            journal: opts.journal.to_config()?,
            checkpoint_every: opts.checkpoint_every,
            delete_all: opts.delete_all,
            ..StoreConfig::default()
        };
        let (store, recovery) = Store::open(PathBuf::from(dir), config)?;
        log::info!(
            "store {dir}: index from {}, {} journal records replayed",
            recovery
                .checkpoint
                .map_or("the journal alone".to_string(), |l| format!(
                    "the checkpoint at {l}"
                )),
            recovery.replay.records,
        );
        let id = STORES.insert(StoreHandle::Owned(Arc::new(store)));
        // SAFETY: `out_store` is non-NULL and writable per the contract.
        unsafe { out_store.write(id as usize as *mut kahadb_store) };
        Ok(KAHADB_OK)
    })
}

/// Checkpoints the index (so the next open replays little) and closes the store, releasing the
/// directory. The handle is invalid afterwards: using it again gives CLOSED (never a crash),
/// including a second close. Safe while other threads use the handle: their calls either
/// complete or fail with CLOSED. The handle is closed even if the final checkpoint or sync
/// fails (IO, NO_SPACE).
///
/// A handle from `kahadb_node_store` is only released: the node owns that store and keeps it
/// open while it is master. (Once the node stops being master, calls on such a handle give
/// CLOSED; it still has to be released with this function, which then returns KAHADB_OK.)
///
/// Errors: NULL_ARGUMENT/INVALID_HANDLE/CLOSED (handle), IO, NO_SPACE.
#[no_mangle]
pub extern "C" fn kahadb_store_close(store: *mut kahadb_store) -> i32 {
    guard(|| {
        STORES.remove(store_id(store))?.close()?;
        Ok(KAHADB_OK)
    })
}

/// Writes a checkpoint of the index now (after making everything written so far durable), so
/// that the next open replays only the journal records after it. Other calls go on meanwhile.
/// Thread-safe.
///
/// Errors: handle errors, IO, NO_SPACE.
#[no_mangle]
pub extern "C" fn kahadb_store_checkpoint(store: *mut kahadb_store) -> i32 {
    guard(|| {
        self::store(store)?.checkpoint()?;
        Ok(KAHADB_OK)
    })
}

/// Shared body of add and update.
///
/// # Safety
/// As for `kahadb_store_add`.
#[allow(clippy::too_many_arguments)]
unsafe fn add_or_update(
    update: bool,
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    message_id: *const c_char,
    priority: i32,
    prioritized: bool,
    body: *const u8,
    len: usize,
    sync: bool,
    out_sequence: *mut i64,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `message_id` is NULL or NUL-terminated per the contract.
        let id = unsafe { name(message_id, "message_id") }?;
        // SAFETY: `body` is NULL or points to `len` readable bytes per the contract.
        let body = unsafe { bytes(body, len, "body") }?;
        let added = if update {
            s.update_message(&d, id, priority, prioritized, body, sync)?
        } else {
            s.add_message(&d, id, priority, prioritized, body, sync)?
        };
        if !out_sequence.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_sequence.write(sequence(added.sequence)) };
        }
        Ok(KAHADB_OK)
    })
}

/// Stores a message (the broker's `MessageStore.addMessage`): `len` bytes of `body` (the
/// marshalled OpenWire message; may be empty, then `body` may be NULL), under `message_id`.
/// `priority` 0 to 9 (clamped) picks the message's lane when `prioritized` is true (the
/// destination supports priorities); otherwise the message goes to the default lane.
///
/// On success `*out_sequence` (if not NULL) receives the sequence the message got in its
/// destination, or -1 if nothing was stored: the id is already stored there (a duplicate:
/// nothing changed, nothing was written), or a topic has no durable subscription to keep it
/// for.
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name`/`message_id` NULL), INVALID_ARGUMENT (a bad
/// destination type, an empty name or id, invalid UTF-8, `body` NULL with `len` > 0), IO,
/// NO_SPACE. Thread-safe.
///
/// # Safety
/// `dest_name` and `message_id` are NULL or NUL-terminated strings; `body` is NULL or points to
/// `len` readable bytes; `out_sequence` is NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kahadb_store_add(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    message_id: *const c_char,
    priority: i32,
    prioritized: bool,
    body: *const u8,
    len: usize,
    sync: bool,
    out_sequence: *mut i64,
) -> i32 {
    // SAFETY: the caller's contract is exactly `add_or_update`'s.
    unsafe {
        add_or_update(
            false,
            store,
            dest_type,
            dest_name,
            message_id,
            priority,
            prioritized,
            body,
            len,
            sync,
            out_sequence,
        )
    }
}

/// Replaces a stored message's body and priority (the broker's `MessageStore.updateMessage`),
/// keeping its sequence: then `*out_sequence` (if not NULL) receives -1. A message that is not
/// stored (any more) is stored anew, as KahaDB does: then `*out_sequence` receives its new
/// sequence. Arguments and errors as for `kahadb_store_add`. Thread-safe.
///
/// # Safety
/// As for `kahadb_store_add`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kahadb_store_update(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    message_id: *const c_char,
    priority: i32,
    prioritized: bool,
    body: *const u8,
    len: usize,
    sync: bool,
    out_sequence: *mut i64,
) -> i32 {
    // SAFETY: the caller's contract is exactly `add_or_update`'s.
    unsafe {
        add_or_update(
            true,
            store,
            dest_type,
            dest_name,
            message_id,
            priority,
            prioritized,
            body,
            len,
            sync,
            out_sequence,
        )
    }
}

/// A queue message was consumed (the broker's `removeMessage`): deletes it. On success
/// `*out_removed` (if not NULL) says what happened; removing a message that is not stored
/// succeeds with `found` false and writes nothing.
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name`/`message_id` NULL), INVALID_ARGUMENT (a bad
/// destination type, an empty name or id, invalid UTF-8), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `dest_name` and `message_id` are NULL or NUL-terminated strings; `out_removed` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_remove(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    message_id: *const c_char,
    sync: bool,
    out_removed: *mut kahadb_removed,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `message_id` is NULL or NUL-terminated per the contract.
        let id = unsafe { name(message_id, "message_id") }?;
        let r = s.remove_message(&d, id, sync)?;
        if !out_removed.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_removed.write(r.into()) };
        }
        Ok(KAHADB_OK)
    })
}

/// A durable subscription is done with a topic message (the broker's
/// `TopicMessageStore.acknowledge`). On success `*out_removed` (if not NULL) says what
/// happened: `found` if the message was pending for `subscription`, `deleted` if no other
/// subscription needs it any more (it left the store). Acknowledging a message that is not
/// pending succeeds with `found` false and writes nothing.
///
/// Errors: handle errors, NULL_ARGUMENT (a string NULL), INVALID_ARGUMENT (a bad destination
/// type, an empty name, key or id, invalid UTF-8), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `dest_name`, `subscription` and `message_id` are NULL or NUL-terminated strings;
/// `out_removed` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_ack(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    subscription: *const c_char,
    message_id: *const c_char,
    sync: bool,
    out_removed: *mut kahadb_removed,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `subscription` is NULL or NUL-terminated per the contract.
        let sub = unsafe { name(subscription, "subscription") }?;
        // SAFETY: `message_id` is NULL or NUL-terminated per the contract.
        let id = unsafe { name(message_id, "message_id") }?;
        let r = s.acknowledge(&d, sub, id, sync)?;
        if !out_removed.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_removed.write(r.into()) };
        }
        Ok(KAHADB_OK)
    })
}

/// Stores a durable subscription of a topic (the broker's `addSubscription`), or replaces it:
/// `info` is the broker's marshalled `SubscriptionInfo` (`info_len` bytes, returned as is by
/// `kahadb_store_subscriptions`; may be empty, then `info` may be NULL). With `retroactive`,
/// the subscription also gets the topic's messages already stored.
///
/// Errors: handle errors, NULL_ARGUMENT (a string NULL), INVALID_ARGUMENT (a bad destination
/// type, an empty name or key, invalid UTF-8, `info` NULL with `info_len` > 0), IO, NO_SPACE.
/// Thread-safe.
///
/// # Safety
/// `dest_name` and `subscription` are NULL or NUL-terminated strings; `info` is NULL or points
/// to `info_len` readable bytes.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kahadb_store_subscribe(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    subscription: *const c_char,
    info: *const u8,
    info_len: usize,
    retroactive: bool,
    sync: bool,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `subscription` is NULL or NUL-terminated per the contract.
        let sub = unsafe { name(subscription, "subscription") }?;
        // SAFETY: `info` is NULL or points to `info_len` readable bytes per the contract.
        let info = unsafe { bytes(info, info_len, "info") }?;
        s.subscribe(&d, sub, info, retroactive, sync)?;
        Ok(KAHADB_OK)
    })
}

/// Deletes a durable subscription, and the messages only it still needed. On success
/// `*out_found` (if not NULL) says whether the subscription existed (if not, nothing was
/// written).
///
/// Errors: handle errors, NULL_ARGUMENT (a string NULL), INVALID_ARGUMENT (a bad destination
/// type, an empty name or key, invalid UTF-8), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `dest_name` and `subscription` are NULL or NUL-terminated strings; `out_found` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_unsubscribe(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    subscription: *const c_char,
    sync: bool,
    out_found: *mut bool,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `subscription` is NULL or NUL-terminated per the contract.
        let sub = unsafe { name(subscription, "subscription") }?;
        let found = s.unsubscribe(&d, sub, sync)?;
        if !out_found.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_found.write(found) };
        }
        Ok(KAHADB_OK)
    })
}

/// Removes a destination with all its messages and subscriptions (the broker's
/// `removeAllMessages` / destination deletion). On success `*out_found` (if not NULL) says
/// whether the store held anything for it (if not, nothing was written).
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name` NULL), INVALID_ARGUMENT (a bad destination
/// type, an empty name, invalid UTF-8), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `dest_name` is NULL or a NUL-terminated string; `out_found` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_remove_destination(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    sync: bool,
    out_found: *mut bool,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        let found = s.remove_destination(&d, sync)?;
        if !out_found.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_found.write(found) };
        }
        Ok(KAHADB_OK)
    })
}

/// Parses a packed transaction id argument.
///
/// # Safety
/// As for [`bytes`].
unsafe fn tx_arg(tx: *const u8, tx_len: usize) -> Result<TxKey> {
    // SAFETY: forwarded contract.
    packed::parse_tx(unsafe { packed_arg(tx, tx_len, "tx") }?)
}

/// Commits a transaction that was not prepared (a local transaction, or an XA one-phase
/// commit): `tx` is a packed `tx id` (`tx_len` bytes) and `ops` a packed `ops` list (`ops_len`
/// bytes; see `kahadb_store` for both forms). The operations and the commit are written as one
/// contiguous group, applied all at once; a transaction with no operations writes nothing.
///
/// On success, one `kahadb_tx_outcome` per operation, in order, is written to
/// `out_outcomes[0..]`, at most `capacity` of them, and `*out_count` (if not NULL) receives how
/// many there are (the number of operations). `out_outcomes` may be NULL with `capacity` 0.
///
/// Errors: handle errors, NULL_ARGUMENT (`tx` or `ops` NULL), INVALID_ARGUMENT (a malformed
/// buffer, an operation with an empty destination name or message id, `out_outcomes` NULL
/// with `capacity` > 0; all refused before anything is written), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `tx` and `ops` are NULL or point to `tx_len` and `ops_len` readable bytes; `out_outcomes` is
/// NULL or points to `capacity` writable `kahadb_tx_outcome`; `out_count` is NULL or writable.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn kahadb_store_commit(
    store: *mut kahadb_store,
    tx: *const u8,
    tx_len: usize,
    ops: *const u8,
    ops_len: usize,
    sync: bool,
    out_outcomes: *mut kahadb_tx_outcome,
    capacity: usize,
    out_count: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `tx` is NULL or points to `tx_len` readable bytes per the contract.
        let tx = unsafe { tx_arg(tx, tx_len) }?;
        // SAFETY: `ops` is NULL or points to `ops_len` readable bytes per the contract.
        let ops = packed::parse_ops(unsafe { packed_arg(ops, ops_len, "ops") }?)?;
        check_outcomes(out_outcomes, capacity)?;
        let outcomes = s.commit(&tx, &ops, sync)?;
        // SAFETY: checked above; writable per the contract.
        unsafe { write_outcomes(&outcomes, out_outcomes, capacity, out_count) };
        Ok(KAHADB_OK)
    })
}

/// Prepares an XA transaction (phase one): `tx` is a packed XA `tx id`, `ops` a packed `ops`
/// list (see `kahadb_store`). The operations and the prepare record are written together and
/// always synced. They take effect only at `kahadb_store_commit_prepared`, also after a
/// restart (see `kahadb_store_prepared`), or are dropped by `kahadb_store_rollback_prepared`.
/// A transaction with no operations writes nothing and is not prepared.
///
/// Errors: handle errors, NULL_ARGUMENT (`tx` or `ops` NULL), INVALID_ARGUMENT (a malformed
/// buffer, a local transaction id, an operation with an empty destination name or message id),
/// ILLEGAL_STATE (already prepared), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `tx` and `ops` are NULL or point to `tx_len` and `ops_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_prepare(
    store: *mut kahadb_store,
    tx: *const u8,
    tx_len: usize,
    ops: *const u8,
    ops_len: usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `tx` is NULL or points to `tx_len` readable bytes per the contract.
        let tx = unsafe { tx_arg(tx, tx_len) }?;
        // SAFETY: `ops` is NULL or points to `ops_len` readable bytes per the contract.
        let ops = packed::parse_ops(unsafe { packed_arg(ops, ops_len, "ops") }?)?;
        s.prepare(&tx, &ops)?;
        Ok(KAHADB_OK)
    })
}

/// Commits a prepared XA transaction (phase two); `tx` is its packed `tx id`. On success, one
/// `kahadb_tx_outcome` per prepared operation, in order, is written to `out_outcomes[0..]`, at
/// most `capacity` of them, and `*out_count` (if not NULL) receives how many there are.
///
/// Errors: handle errors, NULL_ARGUMENT (`tx` NULL), INVALID_ARGUMENT (a malformed buffer,
/// `out_outcomes` NULL with `capacity` > 0), NOT_FOUND (the transaction is not prepared, e.g.
/// already committed or rolled back; nothing written), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `tx` is NULL or points to `tx_len` readable bytes; `out_outcomes` is NULL or points to
/// `capacity` writable `kahadb_tx_outcome`; `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_commit_prepared(
    store: *mut kahadb_store,
    tx: *const u8,
    tx_len: usize,
    sync: bool,
    out_outcomes: *mut kahadb_tx_outcome,
    capacity: usize,
    out_count: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: pointer and length as the contract states.
        let tx = unsafe { tx_arg(tx, tx_len) }?;
        check_outcomes(out_outcomes, capacity)?;
        let outcomes = s.commit_prepared(&tx, sync)?;
        // Only a transaction with operations is ever prepared, so no outcome means that it was
        // not prepared (checked under the store lock: no race with another commit).
        if outcomes.is_empty() {
            return Err(not_prepared());
        }
        // SAFETY: checked above; writable per the contract.
        unsafe { write_outcomes(&outcomes, out_outcomes, capacity, out_count) };
        Ok(KAHADB_OK)
    })
}

fn not_prepared() -> Error {
    Error::new(ErrorCode::NotFound, "the transaction is not prepared")
}

/// Rolls a prepared XA transaction back; `tx` is its packed `tx id`. Its operations are
/// dropped.
///
/// Errors: handle errors, NULL_ARGUMENT (`tx` NULL), INVALID_ARGUMENT (a malformed buffer),
/// NOT_FOUND (the transaction is not prepared; nothing written), IO, NO_SPACE. Thread-safe.
///
/// # Safety
/// `tx` is NULL or points to `tx_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_rollback_prepared(
    store: *mut kahadb_store,
    tx: *const u8,
    tx_len: usize,
    sync: bool,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: pointer and length as the contract states.
        let tx = unsafe { tx_arg(tx, tx_len) }?;
        if !s.rollback_prepared(&tx, sync)? {
            return Err(not_prepared());
        }
        Ok(KAHADB_OK)
    })
}

/// The prepared XA transactions with their operations (message bodies and acks included), for
/// the broker's XA recovery: on success a new buffer in the packed `prepared` form (see
/// `kahadb_store`) in `*out_data`, `*out_len`; free it with `kahadb_buffer_free`.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_data`/`out_len` NULL), CORRUPT, IO. Thread-safe.
///
/// # Safety
/// `out_data` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_prepared(
    store: *mut kahadb_store,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        check_buffer_outputs(out_data, out_len)?;
        let list = s.prepared_transactions()?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { give(packed::pack_prepared(&list), out_data, out_len) };
        Ok(KAHADB_OK)
    })
}

/// The destinations the store holds state for (messages or subscriptions): on success a new
/// buffer in the packed `dests` form (see `kahadb_store`) in `*out_data`, `*out_len`; free it
/// with `kahadb_buffer_free`.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_data`/`out_len` NULL). Thread-safe.
///
/// # Safety
/// `out_data` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_destinations(
    store: *mut kahadb_store,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        check_buffer_outputs(out_data, out_len)?;
        let list = s.destinations();
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { give(packed::pack_destinations(&list), out_data, out_len) };
        Ok(KAHADB_OK)
    })
}

/// The durable subscriptions of a topic, each with the `info` it was stored with: on success a
/// new buffer in the packed `subs` form (see `kahadb_store`) in `*out_data`, `*out_len` (a count
/// of 0 for an unknown destination); free it with `kahadb_buffer_free`.
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name`, `out_data` or `out_len` NULL),
/// INVALID_ARGUMENT (a bad destination type, an empty name, invalid UTF-8). Thread-safe.
///
/// # Safety
/// `dest_name` is NULL or a NUL-terminated string; `out_data` and `out_len` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_subscriptions(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        check_buffer_outputs(out_data, out_len)?;
        let list = s.subscriptions(&d);
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { give(packed::pack_subscriptions(&list), out_data, out_len) };
        Ok(KAHADB_OK)
    })
}

/// How many messages a destination stores and their total body bytes; with `subscription`
/// (not NULL), how many of a topic's messages that durable subscription still has to consume.
/// An unknown destination or subscription counts 0. On success writes `*out_count` and
/// `*out_bytes`.
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name`, `out_count` or `out_bytes` NULL),
/// INVALID_ARGUMENT (a bad destination type, an empty name or subscription key, invalid
/// UTF-8). Thread-safe.
///
/// # Safety
/// `dest_name` is NULL or a NUL-terminated string, `subscription` likewise; `out_count` and
/// `out_bytes` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_counts(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    subscription: *const c_char,
    out_count: *mut u64,
    out_bytes: *mut u64,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `subscription` is NULL or NUL-terminated per the contract.
        let sub = unsafe { subscription_opt(subscription) }?;
        if out_count.is_null() || out_bytes.is_null() {
            return Err(null("out_count or out_bytes"));
        }
        let (count, bytes) = s.counts(&d, sub);
        // SAFETY: both non-NULL and writable per the contract.
        unsafe {
            out_count.write(count);
            out_bytes.write(bytes);
        }
        Ok(KAHADB_OK)
    })
}

/// The sequence the next message stored in the destination will get (0 for an unknown
/// destination), e.g. as a `kahadb_read_request.limit` that stops reads at what has been
/// announced so far. On success writes `*out_sequence`.
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name` or `out_sequence` NULL), INVALID_ARGUMENT
/// (a bad destination type, an empty name, invalid UTF-8). Thread-safe.
///
/// # Safety
/// `dest_name` is NULL or a NUL-terminated string; `out_sequence` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_next_sequence(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    out_sequence: *mut i64,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        if out_sequence.is_null() {
            return Err(null("out_sequence"));
        }
        let next = sequence(Some(s.next_sequence(&d)));
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_sequence.write(next) };
        Ok(KAHADB_OK)
    })
}

/// The body of the message stored under `message_id` in the destination: on success a new
/// buffer in `*out_data`, `*out_len` (free it with `kahadb_buffer_free`, also when `*out_len`
/// is 0: an empty body). A message that is not stored gives KAHADB_ERR_NOT_FOUND, with the
/// outputs untouched.
///
/// Errors: handle errors, NULL_ARGUMENT (a string or output NULL), INVALID_ARGUMENT (a bad
/// destination type, an empty name or id, invalid UTF-8), NOT_FOUND, CORRUPT, IO. Thread-safe.
///
/// # Safety
/// `dest_name` and `message_id` are NULL or NUL-terminated strings; `out_data` and `out_len`
/// are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_get_message(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    message_id: *const c_char,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `message_id` is NULL or NUL-terminated per the contract.
        let id = unsafe { name(message_id, "message_id") }?;
        check_buffer_outputs(out_data, out_len)?;
        let body = s.get_message(&d, id)?.ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("no message {id} in {}", d.name),
            )
        })?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { give(body, out_data, out_len) };
        Ok(KAHADB_OK)
    })
}

/// The next batch of a destination's messages for a cursor, in store order (lane by lane:
/// high, default, low; each lane by sequence), bounded by `request` (NULL: everything); with
/// `subscription` (not NULL), only the topic messages that durable subscription still has to
/// consume. On success a new buffer in the packed `messages` form (see `kahadb_store`) in
/// `*out_data`, `*out_len`; free it with `kahadb_buffer_free`. To continue, set each lane's
/// `from_*` to one past the last sequence returned in that lane.
///
/// Errors: handle errors, NULL_ARGUMENT (`dest_name`, `out_data` or `out_len` NULL),
/// INVALID_ARGUMENT (a bad destination type, an empty name or subscription key, invalid UTF-8,
/// a negative `from_*`), CORRUPT, IO. Thread-safe.
///
/// # Safety
/// `dest_name` and `subscription` are NULL or NUL-terminated strings; `request` is NULL or
/// points to an initialised `kahadb_read_request`; `out_data` and `out_len` are NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_read(
    store: *mut kahadb_store,
    dest_type: i32,
    dest_name: *const c_char,
    subscription: *const c_char,
    request: *const kahadb_read_request,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: `dest_name` is NULL or NUL-terminated per the contract.
        let d = unsafe { dest(dest_type, dest_name) }?;
        // SAFETY: `subscription` is NULL or NUL-terminated per the contract.
        let sub = unsafe { subscription_opt(subscription) }?;
        check_buffer_outputs(out_data, out_len)?;
        let request = if request.is_null() {
            ReadRequest::all()
        } else {
            // SAFETY: non-NULL and, per the contract, an initialised struct; read by copy.
            unsafe { request.read() }.to_request()?
        };
        let list = s.read_messages(&d, sub, request)?;
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { give(packed::pack_messages(&list), out_data, out_len) };
        Ok(KAHADB_OK)
    })
}

/// The highest producer sequence stored for a producer (the broker's duplicate detection after
/// a restart), or -1 if none: message ids are `<producer id>:<sequence>`. On success writes
/// `*out_sequence`.
///
/// Errors: handle errors, NULL_ARGUMENT (`producer_id` or `out_sequence` NULL),
/// INVALID_ARGUMENT (invalid UTF-8). Thread-safe.
///
/// # Safety
/// `producer_id` is NULL or a NUL-terminated string; `out_sequence` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_last_producer_sequence(
    store: *mut kahadb_store,
    producer_id: *const c_char,
    out_sequence: *mut i64,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        // SAFETY: NULL or NUL-terminated per the contract.
        let p = unsafe { text(producer_id, "producer_id") }?;
        if out_sequence.is_null() {
            return Err(null("out_sequence"));
        }
        let last = s.last_producer_sequence(p);
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_sequence.write(last) };
        Ok(KAHADB_OK)
    })
}

/// The bytes the store's data files take on disk (each counted at its full, preallocated
/// length), for the broker's store usage limit. Cheap: no I/O. On success writes
/// `*out_bytes`.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_bytes` NULL). Thread-safe.
///
/// # Safety
/// `out_bytes` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_store_disk_usage(
    store: *mut kahadb_store,
    out_bytes: *mut u64,
) -> i32 {
    guard(|| {
        let s = self::store(store)?;
        if out_bytes.is_null() {
            return Err(null("out_bytes"));
        }
        let used = s.disk_usage();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_bytes.write(used) };
        Ok(KAHADB_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ops::TxRequest;

    #[test]
    fn constants_match_the_store() {
        for (c, t) in [
            (KAHADB_DEST_QUEUE, DestinationType::Queue),
            (KAHADB_DEST_TOPIC, DestinationType::Topic),
            (KAHADB_DEST_TEMP_QUEUE, DestinationType::TempQueue),
            (KAHADB_DEST_TEMP_TOPIC, DestinationType::TempTopic),
        ] {
            assert_eq!(c, t.as_i32());
        }
        for (lane, priority) in [
            (KAHADB_LANE_HIGH, 9),
            (KAHADB_LANE_DEFAULT, 4),
            (KAHADB_LANE_LOW, 0),
        ] {
            assert_eq!(lane as usize, crate::store::state::lane_of(priority));
        }
        let dest = DestKey::new(DestinationType::Queue, "q");
        let mut p = packed::Packer::default();
        p.ops(&[
            TxRequest::Add {
                destination: dest.clone(),
                message_id: "m".into(),
                priority: 4,
                prioritized: false,
                body: vec![],
            },
            TxRequest::Remove {
                destination: dest,
                message_id: "m".into(),
                subscription: None,
                ack: None,
            },
        ]);
        assert_eq!(i32::from(p.out[4]), KAHADB_OP_ADD);
        let second = 4 + 1 + 1 + 5 + 5 + 4 + 1 + 4;
        assert_eq!(i32::from(p.out[second]), KAHADB_OP_REMOVE);
        for (tx, kind) in [
            (
                TxKey::Local {
                    connection: "c".into(),
                    id: 1,
                },
                KAHADB_TX_LOCAL,
            ),
            (
                TxKey::Xa {
                    format: 1,
                    global: vec![1],
                    branch: vec![2],
                },
                KAHADB_TX_XA,
            ),
        ] {
            let mut p = packed::Packer::default();
            p.tx(&tx);
            assert_eq!(i32::from(p.out[0]), kind);
        }
    }

    #[test]
    fn read_request_defaults_read_everything() {
        let r = kahadb_read_request::default().to_request().unwrap();
        assert_eq!(r, ReadRequest::all());
        let bad = kahadb_read_request {
            from_low: -1,
            ..Default::default()
        };
        assert_eq!(
            bad.to_request().unwrap_err().code(),
            ErrorCode::InvalidArgument
        );
    }
}

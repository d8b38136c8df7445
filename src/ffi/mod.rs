//! The C ABI. `include/kahadb.h` is generated from this module by cbindgen (see `build.rs`).
//!
//! Conventions, for every function:
//! - A fallible function returns an `int32_t` result: `KAHADB_OK` (0) on success, a negative
//!   `KAHADB_ERR_*` code on failure, and `KAHADB_END` (1) where documented. After a failure,
//!   `kahadb_last_error()` describes it, on the calling thread.
//! - Outputs are written last, and only on success.
//! - Handles are opaque and never dereferenced: NULL gives `KAHADB_ERR_NULL_ARGUMENT`, a closed
//!   handle `KAHADB_ERR_CLOSED`, anything else not issued by the library
//!   `KAHADB_ERR_INVALID_HANDLE`; none of them can crash the process.
//! - No panic crosses the boundary: it is caught and reported as `KAHADB_ERR_INTERNAL`.
//! - Buffers the library returns belong to the caller, who frees them with
//!   `kahadb_buffer_free`.

#![allow(non_camel_case_types)]

mod election;
mod node;
mod store;
pub use election::*;
pub use node::*;
pub use store::*;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::error::{Error, ErrorCode, Result};
use crate::handles::{CURSORS, JOURNALS};
use crate::journal::{Journal, JournalConfig, Location, Preallocation, SyncStrategy};

// The values below are `ErrorCode`'s (cbindgen needs literals); a unit test keeps them equal.

/// Success.
pub const KAHADB_OK: i32 = 0;
/// A cursor has no further record (not an error).
pub const KAHADB_END: i32 = 1;
/// A required pointer argument was NULL.
pub const KAHADB_ERR_NULL_ARGUMENT: i32 = -1;
/// The handle was not issued by this library or is of another type.
pub const KAHADB_ERR_INVALID_HANDLE: i32 = -2;
/// The handle has been closed.
pub const KAHADB_ERR_CLOSED: i32 = -3;
/// An argument is out of range or inconsistent (e.g. a NULL buffer with a non-zero length).
pub const KAHADB_ERR_INVALID_ARGUMENT: i32 = -4;
/// The record is larger than a data file can hold.
pub const KAHADB_ERR_RECORD_TOO_LARGE: i32 = -5;
/// Empty records cannot be appended.
pub const KAHADB_ERR_EMPTY_RECORD: i32 = -6;
/// No record starts at the location, or the location is malformed.
pub const KAHADB_ERR_INVALID_LOCATION: i32 = -7;
/// Data failed its checksum or structural checks.
pub const KAHADB_ERR_CORRUPT: i32 = -8;
/// An operating-system I/O error.
pub const KAHADB_ERR_IO: i32 = -9;
/// The directory is in use by another journal or broker.
pub const KAHADB_ERR_LOCKED: i32 = -10;
/// The device is full; the affected writes failed, nothing acknowledged was lost.
pub const KAHADB_ERR_NO_SPACE: i32 = -11;
/// An option is invalid.
pub const KAHADB_ERR_CONFIG: i32 = -12;
/// An internal error (a bug), including a caught panic.
pub const KAHADB_ERR_INTERNAL: i32 = -13;
/// The data file or object does not exist.
pub const KAHADB_ERR_NOT_FOUND: i32 = -14;
/// Not allowed in the current state (e.g. removing the data file being written).
pub const KAHADB_ERR_ILLEGAL_STATE: i32 = -15;
/// A synchronous write reached this node's disk but not `minimumReplicas` slaves in time.
pub const KAHADB_ERR_REPLICATION_TIMEOUT: i32 = -16;

/// `sync_strategy`: sync each batch that holds a synchronous append before it returns.
pub const KAHADB_SYNC_ALWAYS: i32 = 0;
/// `sync_strategy`: synchronous appends return once written; sync every `sync_interval_ms`.
pub const KAHADB_SYNC_PERIODIC: i32 = 1;
/// `sync_strategy`: sync only on `kahadb_journal_sync`, rotation and close.
pub const KAHADB_SYNC_NEVER: i32 = 2;

/// `preallocation`: fill new data files with zeros ahead of time (fastest syncs).
pub const KAHADB_PREALLOC_ZEROS: i32 = 0;
/// `preallocation`: set the length of new data files (sparse).
pub const KAHADB_PREALLOC_SPARSE: i32 = 1;
/// `preallocation`: grow data files as they are written.
pub const KAHADB_PREALLOC_NONE: i32 = 2;

/// An open journal (opaque).
pub struct kahadb_journal {
    _opaque: [u8; 0],
}

/// A journal cursor (opaque).
pub struct kahadb_cursor {
    _opaque: [u8; 0],
}

/// Where a record is: data file id, offset of its header, total size including the 5-byte
/// header (the payload is `size - 5` bytes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct kahadb_location {
    pub file_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// Journal options. Initialise with `kahadb_journal_options_init`, then change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kahadb_journal_options {
    /// Largest size of a data file, in bytes (default 32 MiB; at least 4096).
    pub max_file_length: u32,
    /// Largest size of one write batch, in bytes (default 4 MiB).
    pub max_batch_size: u32,
    /// One of `KAHADB_SYNC_*` (default `KAHADB_SYNC_ALWAYS`).
    pub sync_strategy: i32,
    /// Interval for `KAHADB_SYNC_PERIODIC`, in milliseconds (default 1000).
    pub sync_interval_ms: u32,
    /// One of `KAHADB_PREALLOC_*` (default `KAHADB_PREALLOC_ZEROS`).
    pub preallocation: i32,
}

impl Default for kahadb_journal_options {
    fn default() -> Self {
        let d = JournalConfig::default();
        kahadb_journal_options {
            max_file_length: d.max_file_length,
            max_batch_size: d.max_batch_size,
            sync_strategy: KAHADB_SYNC_ALWAYS,
            sync_interval_ms: 1000,
            preallocation: KAHADB_PREALLOC_ZEROS,
        }
    }
}

impl kahadb_journal_options {
    fn to_config(self) -> Result<JournalConfig> {
        let sync_strategy = match self.sync_strategy {
            KAHADB_SYNC_ALWAYS => SyncStrategy::Always,
            KAHADB_SYNC_PERIODIC => {
                SyncStrategy::Periodic(Duration::from_millis(u64::from(self.sync_interval_ms)))
            }
            KAHADB_SYNC_NEVER => SyncStrategy::Never,
            other => {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("unknown sync_strategy {other}"),
                ))
            }
        };
        let preallocation = match self.preallocation {
            KAHADB_PREALLOC_ZEROS => Preallocation::Zeros,
            KAHADB_PREALLOC_SPARSE => Preallocation::Sparse,
            KAHADB_PREALLOC_NONE => Preallocation::None,
            other => {
                return Err(Error::new(
                    ErrorCode::Config,
                    format!("unknown preallocation {other}"),
                ))
            }
        };
        let config = JournalConfig {
            max_file_length: self.max_file_length,
            max_batch_size: self.max_batch_size,
            sync_strategy,
            preallocation,
        };
        config.validate()?;
        Ok(config)
    }
}

impl From<Location> for kahadb_location {
    fn from(l: Location) -> Self {
        kahadb_location {
            file_id: l.file_id,
            offset: l.offset,
            size: l.size,
        }
    }
}

impl From<kahadb_location> for Location {
    fn from(l: kahadb_location) -> Self {
        Location::new(l.file_id, l.offset, l.size)
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(e: &Error) {
    let text = e.to_string().replace('\0', " ");
    let c = CString::new(text).unwrap_or_default();
    LAST_ERROR.with(|slot| *slot.borrow_mut() = c);
}

/// Runs `f`, catching panics; returns the result code and records the error text.
fn guard<F: FnOnce() -> Result<i32>>(f: F) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            set_last_error(&e);
            e.code().as_i32()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            let e = Error::new(
                ErrorCode::Internal,
                format!("internal error (caught panic): {what}"),
            );
            set_last_error(&e);
            e.code().as_i32()
        }
    }
}

fn null(what: &str) -> Error {
    Error::new(ErrorCode::NullArgument, format!("{what} is NULL"))
}

fn journal_id(j: *const kahadb_journal) -> u64 {
    j as usize as u64
}

fn cursor_id(c: *const kahadb_cursor) -> u64 {
    c as usize as u64
}

/// Hands a byte vector to C as (pointer, length); freed by `kahadb_buffer_free`.
fn into_c_buffer(data: Vec<u8>) -> (*mut u8, usize) {
    let boxed = data.into_boxed_slice();
    let len = boxed.len();
    (Box::into_raw(boxed) as *mut u8, len)
}

/// The library version, e.g. "0.1.0". A static string: do not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn kahadb_version() -> *const c_char {
    static VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}

/// The description of the last error on the calling thread ("" if none). The text stays valid
/// until the next kahadb call on this thread; do not free it.
#[no_mangle]
pub extern "C" fn kahadb_last_error() -> *const c_char {
    LAST_ERROR.with(|slot| slot.borrow().as_ptr())
}

/// The name of a result code, e.g. "NO_SPACE" for `KAHADB_ERR_NO_SPACE`, or "UNKNOWN". A static
/// string: do not free it. Thread-safe.
#[no_mangle]
pub extern "C" fn kahadb_result_name(code: i32) -> *const c_char {
    static NAMES: Lazy<Vec<(i32, CString)>> = Lazy::new(|| {
        ErrorCode::ALL
            .iter()
            .map(|c| (c.as_i32(), CString::new(c.name()).unwrap_or_default()))
            .collect()
    });
    // The strings live in a static that is built once and never changed, so the pointers stay
    // valid for the life of the process.
    match catch_unwind(|| {
        NAMES
            .iter()
            .find(|(v, _)| *v == code)
            .map(|(_, n)| n.as_ptr())
    }) {
        Ok(Some(p)) => p,
        _ => c"UNKNOWN".as_ptr(),
    }
}

/// Fills `options` with the defaults. Does nothing if `options` is NULL.
///
/// # Safety
/// `options` is NULL or points to writable memory for one `kahadb_journal_options`.
#[no_mangle]
pub unsafe extern "C" fn kahadb_journal_options_init(options: *mut kahadb_journal_options) {
    if !options.is_null() {
        // SAFETY: the caller guarantees `options` points to writable memory for one struct;
        // `write` does not read the (possibly uninitialised) old value.
        unsafe { options.write(kahadb_journal_options::default()) };
    }
}

/// Opens (creating if needed) the journal in directory `dir` (UTF-8 path) and recovers it.
/// `options` may be NULL for the defaults. On success stores the handle in `*out_journal`.
///
/// Errors: NULL_ARGUMENT (`dir` or `out_journal` NULL), INVALID_ARGUMENT (`dir` not UTF-8),
/// CONFIG (bad options), LOCKED (the directory is open elsewhere), IO, NO_SPACE.
/// Thread-safe.
///
/// # Safety
/// `dir` is NULL or a NUL-terminated string; `options` is NULL or points to an initialised
/// `kahadb_journal_options`; `out_journal` is NULL or points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn kahadb_journal_open(
    dir: *const c_char,
    options: *const kahadb_journal_options,
    out_journal: *mut *mut kahadb_journal,
) -> i32 {
    guard(|| {
        crate::logging::init();
        if dir.is_null() {
            return Err(null("dir"));
        }
        if out_journal.is_null() {
            return Err(null("out_journal"));
        }
        // SAFETY: `dir` is non-NULL and, per the contract, NUL-terminated.
        let dir = unsafe { CStr::from_ptr(dir) };
        let dir = dir
            .to_str()
            .map_err(|_| Error::new(ErrorCode::InvalidArgument, "dir is not valid UTF-8"))?;
        if dir.is_empty() {
            return Err(Error::new(ErrorCode::InvalidArgument, "dir is empty"));
        }
        let opts = if options.is_null() {
            kahadb_journal_options::default()
        } else {
            // SAFETY: non-NULL and, per the contract, an initialised struct; read by copy.
            unsafe { options.read() }
        };
        let config = opts.to_config()?;
        let journal = Journal::open(PathBuf::from(dir), config)?;
        let id = JOURNALS.insert(journal);
        // SAFETY: `out_journal` is non-NULL and writable per the contract.
        unsafe { out_journal.write(id as usize as *mut kahadb_journal) };
        Ok(KAHADB_OK)
    })
}

/// Appends `len` bytes from `data` as one record. With `sync`, returns once the record is
/// durable (as the sync strategy defines); otherwise once it is queued. On success stores the
/// record's location in `*out_location` if that is not NULL.
///
/// Errors: NULL_ARGUMENT/INVALID_HANDLE/CLOSED (handle), INVALID_ARGUMENT (`data` NULL with
/// `len` > 0), EMPTY_RECORD (`len` 0), RECORD_TOO_LARGE, IO, NO_SPACE.
/// Thread-safe: many threads may append to one journal at once (group commit).
///
/// # Safety
/// `data` is NULL or points to `len` readable bytes; `out_location` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_journal_append(
    journal: *mut kahadb_journal,
    data: *const u8,
    len: usize,
    sync: bool,
    out_location: *mut kahadb_location,
) -> i32 {
    guard(|| {
        let j = JOURNALS.get(journal_id(journal))?;
        if data.is_null() && len > 0 {
            return Err(Error::new(
                ErrorCode::InvalidArgument,
                format!("data is NULL but len is {len}"),
            ));
        }
        let bytes: &[u8] = if len == 0 {
            &[]
        } else {
            // SAFETY: `data` is non-NULL and points to `len` readable bytes per the contract;
            // the slice does not outlive this call.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let loc = j.append(bytes, sync)?;
        if !out_location.is_null() {
            // SAFETY: non-NULL and writable per the contract.
            unsafe { out_location.write(loc.into()) };
        }
        Ok(KAHADB_OK)
    })
}

/// Reads the payload of the record at `location` into a new buffer: on success `*out_data`
/// and `*out_len` receive it; free it with `kahadb_buffer_free(*out_data, *out_len)`.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_data`/`out_len` NULL), INVALID_LOCATION,
/// NOT_FOUND (the data file was removed), CORRUPT, IO. Thread-safe.
///
/// # Safety
/// `out_data` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_journal_read(
    journal: *mut kahadb_journal,
    location: kahadb_location,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let j = JOURNALS.get(journal_id(journal))?;
        if out_data.is_null() || out_len.is_null() {
            return Err(null("out_data or out_len"));
        }
        let bytes = j.read(location.into())?;
        let (ptr, len) = into_c_buffer(bytes);
        // SAFETY: both pointers are non-NULL and writable per the contract.
        unsafe {
            out_data.write(ptr);
            out_len.write(len);
        }
        Ok(KAHADB_OK)
    })
}

/// Frees a buffer returned by the library (`kahadb_journal_read`, `kahadb_cursor_next`, and the
/// `kahadb_store_*` functions that return bytes). NULL is ignored.
///
/// # Safety
/// `data`/`len` are exactly as the library returned them, and the buffer is freed only once.
#[no_mangle]
pub unsafe extern "C" fn kahadb_buffer_free(data: *mut u8, len: usize) {
    if data.is_null() {
        return;
    }
    // SAFETY: the pointer and length came from `into_c_buffer` (a boxed slice of exactly `len`
    // bytes) and, per the contract, are freed once.
    let slice = std::ptr::slice_from_raw_parts_mut(data, len);
    drop(unsafe { Box::from_raw(slice) });
}

/// Makes everything appended so far durable, whatever the sync strategy. Also reports, once, an
/// earlier failed write that lost asynchronous appends (IO or NO_SPACE).
/// Thread-safe.
#[no_mangle]
pub extern "C" fn kahadb_journal_sync(journal: *mut kahadb_journal) -> i32 {
    guard(|| {
        JOURNALS.get(journal_id(journal))?.sync()?;
        Ok(KAHADB_OK)
    })
}

/// Deletes data files `ids[0..count]` (ids from the data file names `db-<id>.log`). The file
/// being written cannot be removed (ILLEGAL_STATE); an unknown id gives NOT_FOUND and nothing is
/// removed. Thread-safe.
///
/// # Safety
/// `ids` is NULL or points to `count` readable `uint32_t`.
#[no_mangle]
pub unsafe extern "C" fn kahadb_journal_remove_data_files(
    journal: *mut kahadb_journal,
    ids: *const u32,
    count: usize,
) -> i32 {
    guard(|| {
        let j = JOURNALS.get(journal_id(journal))?;
        if count == 0 {
            return Ok(KAHADB_OK);
        }
        if ids.is_null() {
            return Err(null("ids"));
        }
        // SAFETY: non-NULL and `count` readable values per the contract.
        let ids = unsafe { std::slice::from_raw_parts(ids, count) };
        j.remove_data_files(ids)?;
        Ok(KAHADB_OK)
    })
}

/// Closes the journal: writes and syncs what is queued, stops its thread and releases the
/// directory. The handle is invalid afterwards: using it again gives CLOSED (never a crash),
/// including a second close. Safe while other threads use the handle: their calls either
/// complete or fail with CLOSED.
#[no_mangle]
pub extern "C" fn kahadb_journal_close(journal: *mut kahadb_journal) -> i32 {
    guard(|| {
        let j = JOURNALS.remove(journal_id(journal))?;
        j.close()?;
        Ok(KAHADB_OK)
    })
}

/// Opens a cursor over the journal's records in order: from the first record if `after` is
/// NULL, else from the first record after `*after`. The cursor sees records once written; at
/// the end `kahadb_cursor_next` returns KAHADB_END and can be called again later.
/// A cursor must be used by one thread at a time; close it with `kahadb_cursor_close`.
///
/// # Safety
/// `after` is NULL or points to a `kahadb_location`; `out_cursor` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_cursor_open(
    journal: *mut kahadb_journal,
    after: *const kahadb_location,
    out_cursor: *mut *mut kahadb_cursor,
) -> i32 {
    guard(|| {
        let j = JOURNALS.get(journal_id(journal))?;
        if out_cursor.is_null() {
            return Err(null("out_cursor"));
        }
        let after = if after.is_null() {
            None
        } else {
            // SAFETY: non-NULL and readable per the contract.
            Some(Location::from(unsafe { after.read() }))
        };
        let id = CURSORS.insert(Mutex::new(j.cursor(after)));
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_cursor.write(id as usize as *mut kahadb_cursor) };
        Ok(KAHADB_OK)
    })
}

/// Moves to the next record. Returns KAHADB_OK with its location in `*out_location` and its
/// payload in a new buffer (`*out_data`, `*out_len`; free with `kahadb_buffer_free`), or
/// KAHADB_END when there is no further record yet (outputs untouched).
///
/// Errors: handle errors, NULL_ARGUMENT (an output NULL), CLOSED (the journal was closed), IO.
///
/// # Safety
/// Every output pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_cursor_next(
    cursor: *mut kahadb_cursor,
    out_location: *mut kahadb_location,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let c = CURSORS.get(cursor_id(cursor))?;
        if out_location.is_null() || out_data.is_null() || out_len.is_null() {
            return Err(null("out_location, out_data or out_len"));
        }
        let mut c = c.lock().unwrap_or_else(|p| p.into_inner());
        match c.next_record()? {
            None => Ok(KAHADB_END),
            Some((loc, data)) => {
                let (ptr, len) = into_c_buffer(data);
                // SAFETY: all three pointers are non-NULL and writable per the contract.
                unsafe {
                    out_location.write(loc.into());
                    out_data.write(ptr);
                    out_len.write(len);
                }
                Ok(KAHADB_OK)
            }
        }
    })
}

/// Closes a cursor. Using it afterwards (including a second close) gives CLOSED.
#[no_mangle]
pub extern "C" fn kahadb_cursor_close(cursor: *mut kahadb_cursor) -> i32 {
    guard(|| {
        CURSORS.remove(cursor_id(cursor))?;
        Ok(KAHADB_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_result_codes_match_the_error_table() {
        let c = [
            (KAHADB_OK, ErrorCode::Ok),
            (KAHADB_END, ErrorCode::End),
            (KAHADB_ERR_NULL_ARGUMENT, ErrorCode::NullArgument),
            (KAHADB_ERR_INVALID_HANDLE, ErrorCode::InvalidHandle),
            (KAHADB_ERR_CLOSED, ErrorCode::Closed),
            (KAHADB_ERR_INVALID_ARGUMENT, ErrorCode::InvalidArgument),
            (KAHADB_ERR_RECORD_TOO_LARGE, ErrorCode::RecordTooLarge),
            (KAHADB_ERR_EMPTY_RECORD, ErrorCode::EmptyRecord),
            (KAHADB_ERR_INVALID_LOCATION, ErrorCode::InvalidLocation),
            (KAHADB_ERR_CORRUPT, ErrorCode::Corrupt),
            (KAHADB_ERR_IO, ErrorCode::Io),
            (KAHADB_ERR_LOCKED, ErrorCode::Locked),
            (KAHADB_ERR_NO_SPACE, ErrorCode::NoSpace),
            (KAHADB_ERR_CONFIG, ErrorCode::Config),
            (KAHADB_ERR_INTERNAL, ErrorCode::Internal),
            (KAHADB_ERR_NOT_FOUND, ErrorCode::NotFound),
            (KAHADB_ERR_ILLEGAL_STATE, ErrorCode::IllegalState),
            (
                KAHADB_ERR_REPLICATION_TIMEOUT,
                ErrorCode::ReplicationTimeout,
            ),
        ];
        assert_eq!(c.len(), ErrorCode::ALL.len());
        for (value, code) in c {
            assert_eq!(value, code.as_i32(), "{code:?}");
            // SAFETY: kahadb_result_name returns a static NUL-terminated string.
            let name = unsafe { CStr::from_ptr(kahadb_result_name(value)) };
            assert_eq!(name.to_str().unwrap(), code.name());
        }
    }
}

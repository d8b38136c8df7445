//! JNI bridge: the native methods of `dev.kahadb.Kahadb`, `dev.kahadb.Journal` and
//! `dev.kahadb.JournalCursor` (see `java/` for the Java side).
//!
//! Design:
//!
//! * Java holds the `u64` ids of [`crate::handles`] as `long`s, never pointers: a stale, closed or
//!   made-up handle is reported as `CLOSED` / `INVALID_HANDLE` and cannot crash the JVM, and a
//!   handle closed by one thread while another uses it stays valid for the call in progress.
//! * One JNI crossing per append. `append0` copies the Java array straight into the journal's
//!   batch buffer (`GetByteArrayRegion` inside [`Journal::append_with`]); `appendDirect0` copies
//!   from the address of a direct `ByteBuffer`. Neither allocates a Java object: the location
//!   comes back packed in a `long` (see [`pack_location`]); its size is the payload length plus
//!   the 5-byte record header.
//! * Every body runs in [`EnvUnowned::with_env`], which catches panics, and is resolved with
//!   [`ThrowKahaDb`], which turns every error and panic into a thrown
//!   `dev.kahadb.KahaDBException` carrying the [`ErrorCode`] value (see [`error`]).
//!
//! The Java declarations these functions implement (all `static native`):
//!
//! ```java
//! // dev.kahadb.Kahadb
//! static native String nativeVersion();
//! static native void raise0(int kind);          // tests of the error bridge only
//! // dev.kahadb.Journal
//! static native long open0(String dir, int maxFileLength, int maxBatchSize, int syncStrategy,
//!                          long syncIntervalMillis, int preallocation);
//! static native long append0(long journal, byte[] data, int off, int len, boolean sync);
//! static native long appendDirect0(long journal, ByteBuffer direct, int pos, int len, boolean sync);
//! static native byte[] read0(long journal, int fileId, int offset, int size);
//! static native void sync0(long journal);
//! static native void close0(long journal);
//! static native void removeDataFiles0(long journal, int[] fileIds);
//! static native int[] dataFileIds0(long journal);
//! static native long cursorOpen0(long journal, boolean hasAfter, int fileId, int offset, int size);
//! // dev.kahadb.JournalCursor
//! static native byte[] next0(long cursor, long[] locationOut);
//! static native void close0(long cursor);
//! ```

mod election;
mod error;
mod node;
mod store;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jni::objects::{JByteArray, JByteBuffer, JClass, JIntArray, JLongArray, JString};
use jni::refs::Reference as _;
use jni::sys::{jboolean, jbyte, jint, jlong};
use jni::{Env, EnvUnowned};

use crate::error::ErrorCode;
use crate::handles::{CURSORS, JOURNALS};
use crate::journal::{Journal, JournalConfig, Location, Preallocation, SyncStrategy};

use self::error::{err, JniError, JniResult, ThrowKahaDb};

/// Called by the JVM when it loads the library: routes the library's log lines to standard
/// error (see [`crate::logging`]) and asks for JNI 1.8.
#[no_mangle]
pub extern "system" fn JNI_OnLoad(
    _vm: *mut jni::sys::JavaVM,
    _reserved: *mut std::ffi::c_void,
) -> jint {
    // Nothing here can panic across the boundary: init only installs a static logger.
    let _ = std::panic::catch_unwind(crate::logging::init);
    jni::sys::JNI_VERSION_1_8
}

/// `JournalOptions.SyncStrategy` ordinals.
const SYNC_ALWAYS: jint = 0;
const SYNC_PERIODIC: jint = 1;
const SYNC_NEVER: jint = 2;

/// `JournalOptions.Preallocation` ordinals.
const PREALLOC_ZEROS: jint = 0;
const PREALLOC_SPARSE: jint = 1;
const PREALLOC_NONE: jint = 2;

/// Packs a location's file id (high 32 bits) and offset (low 32 bits) into one `long`.
/// Java unpacks it as `fileId = (int) (v >>> 32)`, `offset = (int) v`.
fn pack_location(loc: Location) -> jlong {
    ((u64::from(loc.file_id) << 32) | u64::from(loc.offset)) as jlong
}

fn journal(handle: jlong) -> JniResult<Arc<Journal>> {
    Ok(JOURNALS.get(handle as u64)?)
}

/// A location handed in from Java. Negative values cannot name a record.
fn location(file_id: jint, offset: jint, size: jint) -> JniResult<Location> {
    match (
        u32::try_from(file_id),
        u32::try_from(offset),
        u32::try_from(size),
    ) {
        (Ok(file_id), Ok(offset), Ok(size)) => Ok(Location {
            file_id,
            offset,
            size,
        }),
        _ => Err(err(
            ErrorCode::InvalidLocation,
            format!("invalid location {file_id}:{offset} (size {size})"),
        )),
    }
}

/// Checks `off`/`len` against a buffer of `available` bytes.
fn check_range(off: jint, len: jint, available: usize, what: &str) -> JniResult<(usize, usize)> {
    let end = i64::from(off) + i64::from(len);
    if off < 0 || len < 0 || end > available as i64 {
        return Err(err(
            ErrorCode::InvalidArgument,
            format!(
                "range [{off}, {off}+{len}) is out of bounds for a {what} of {available} bytes"
            ),
        ));
    }
    // Both fit in usize: they are non-negative and bounded by `available`.
    Ok((off as usize, len as usize))
}

fn positive_u32(value: jint, name: &str) -> JniResult<u32> {
    match u32::try_from(value) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(err(
            ErrorCode::Config,
            format!("{name} must be positive, got {value}"),
        )),
    }
}

fn journal_config(
    max_file_length: jint,
    max_batch_size: jint,
    sync_strategy: jint,
    sync_interval_millis: jlong,
    preallocation: jint,
) -> JniResult<JournalConfig> {
    let sync_strategy = match sync_strategy {
        SYNC_ALWAYS => SyncStrategy::Always,
        SYNC_NEVER => SyncStrategy::Never,
        SYNC_PERIODIC => match u64::try_from(sync_interval_millis) {
            Ok(ms) if ms > 0 => SyncStrategy::Periodic(Duration::from_millis(ms)),
            _ => {
                return Err(err(
                    ErrorCode::Config,
                    format!("syncIntervalMillis must be positive, got {sync_interval_millis}"),
                ))
            }
        },
        other => {
            return Err(err(
                ErrorCode::Config,
                format!("unknown sync strategy {other}"),
            ))
        }
    };
    let preallocation = match preallocation {
        PREALLOC_ZEROS => Preallocation::Zeros,
        PREALLOC_SPARSE => Preallocation::Sparse,
        PREALLOC_NONE => Preallocation::None,
        other => {
            return Err(err(
                ErrorCode::Config,
                format!("unknown preallocation strategy {other}"),
            ))
        }
    };
    Ok(JournalConfig {
        max_file_length: positive_u32(max_file_length, "maxFileLength")?,
        max_batch_size: positive_u32(max_batch_size, "maxBatchSize")?,
        sync_strategy,
        preallocation,
    })
}

/// Views the journal's batch buffer as the `jbyte` slice JNI copies into.
fn as_jbytes_mut(buf: &mut [u8]) -> &mut [jbyte] {
    // SAFETY: `jbyte` is `i8`, which has the same size, alignment and validity (every bit
    // pattern) as `u8`; the new slice covers exactly the memory of `buf` and takes over its
    // unique borrow for the same lifetime, so no aliasing is introduced.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<jbyte>(), buf.len()) }
}

fn null_argument(what: &str) -> JniError {
    err(ErrorCode::NullArgument, format!("{what} is null"))
}

// ----------------------------------------------------------------------------------------------
// dev.kahadb.Kahadb

/// `static native String nativeVersion()`: the version of the native library.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Kahadb_nativeVersion<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
) -> JString<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JString<'local>> {
            Ok(JString::from_str(env, env!("CARGO_PKG_VERSION"))?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void raise0(int kind)`: exercises the error bridge for the tests (it is
/// package-private in Java). 0 returns normally, 1 fails with an `IO` error, 2 panics with a
/// message, 3 panics with a non-string payload.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Kahadb_raise0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    kind: jint,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            match kind {
                0 => Ok(()),
                1 => Err(err(ErrorCode::Io, "raise0: a simulated I/O error")),
                2 => panic!("raise0: a simulated panic"),
                3 => std::panic::panic_any(kind),
                _ => Err(err(
                    ErrorCode::InvalidArgument,
                    format!("raise0: unknown kind {kind}"),
                )),
            }
        })
        .resolve::<ThrowKahaDb>()
}

// ----------------------------------------------------------------------------------------------
// dev.kahadb.Journal

/// `static native long open0(String dir, int maxFileLength, int maxBatchSize, int syncStrategy,
/// long syncIntervalMillis, int preallocation)`: opens (creating if needed) the journal in
/// `dir` and returns its handle.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_open0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    dir: JString<'local>,
    max_file_length: jint,
    max_batch_size: jint,
    sync_strategy: jint,
    sync_interval_millis: jlong,
    preallocation: jint,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            if dir.is_null() {
                return Err(null_argument("dir"));
            }
            let dir = PathBuf::from(dir.try_to_string(env)?);
            let config = journal_config(
                max_file_length,
                max_batch_size,
                sync_strategy,
                sync_interval_millis,
                preallocation,
            )?;
            let journal = Journal::open(&dir, config)?;
            Ok(JOURNALS.insert(journal) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long append0(long journal, byte[] data, int off, int len, boolean sync)`:
/// appends `data[off, off+len)` and returns the packed location.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_append0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    data: JByteArray<'local>,
    off: jint,
    len: jint,
    sync: jboolean,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let journal = journal(handle)?;
            if data.is_null() {
                return Err(null_argument("data"));
            }
            let (_, len) = check_range(off, len, data.len(env)?, "byte[]")?;
            let env: &Env<'local> = env;
            let loc = journal.append_with(len, sync, |dst| {
                // The range was checked above and Java arrays never change length, so this copy
                // cannot fail short of a JVM error; GetByteArrayRegion does not block (beyond a
                // safepoint) and takes no lock of ours.
                data.get_region(env, off, as_jbytes_mut(dst)).map_err(|e| {
                    crate::error::Error::new(
                        ErrorCode::Internal,
                        format!("copying the record from the Java array failed: {e}"),
                    )
                })
            })?;
            Ok(pack_location(loc))
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long appendDirect0(long journal, ByteBuffer direct, int pos, int len,
/// boolean sync)`: appends `len` bytes of a direct buffer from index `pos` (the buffer's
/// position and limit are left for Java to update) and returns the packed location.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_appendDirect0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    buffer: JByteBuffer<'local>,
    pos: jint,
    len: jint,
    sync: jboolean,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let journal = journal(handle)?;
            if buffer.is_null() {
                return Err(null_argument("buffer"));
            }
            let address = env.get_direct_buffer_address(&buffer).map_err(|_| {
                err(
                    ErrorCode::InvalidArgument,
                    "the ByteBuffer is not a direct buffer",
                )
            })?;
            let capacity = env.get_direct_buffer_capacity(&buffer)?;
            let (pos, len) = check_range(pos, len, capacity, "direct buffer")?;
            let loc = journal.append_with(len, sync, |dst| {
                // SAFETY: `address` is the start of the buffer's memory, valid for `capacity`
                // bytes for as long as the buffer object is alive, and `buffer` (a local
                // reference held by this call) keeps it alive until we return. The range
                // [pos, pos+len) was checked against `capacity`, and `dst` is exactly `len`
                // bytes of the journal's own buffer, which cannot overlap Java's memory. The
                // copy goes through raw pointers, so no Rust reference to Java-owned memory is
                // ever formed; if Java code mutates the buffer concurrently the record gets
                // unspecified bytes, as with any write from a shared buffer.
                unsafe {
                    std::ptr::copy_nonoverlapping(address.add(pos), dst.as_mut_ptr(), len);
                }
                Ok(())
            })?;
            Ok(pack_location(loc))
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] read0(long journal, int fileId, int offset, int size)`: the payload
/// of the record at a location.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_read0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    file_id: jint,
    offset: jint,
    size: jint,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let journal = journal(handle)?;
            let data = journal.read(location(file_id, offset, size)?)?;
            Ok(env.byte_array_from_slice(&data)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void sync0(long journal)`: forces everything appended so far to disk.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_sync0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> { Ok(journal(handle)?.sync()?) })
        .resolve::<ThrowKahaDb>()
}

/// `static native void close0(long journal)`: closes the journal and retires its handle.
/// Closing an already closed handle does nothing.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_close0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            match JOURNALS.remove(handle as u64) {
                Ok(journal) => Ok(journal.close()?),
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void removeDataFiles0(long journal, int[] fileIds)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_removeDataFiles0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    file_ids: JIntArray<'local>,
) {
    unowned_env
        .with_env(|env| -> JniResult<()> {
            let journal = journal(handle)?;
            if file_ids.is_null() {
                return Err(null_argument("fileIds"));
            }
            let mut ids = vec![0 as jint; file_ids.len(env)?];
            file_ids.get_region(env, 0, &mut ids)?;
            let ids = ids
                .into_iter()
                .map(|id| {
                    u32::try_from(id).map_err(|_| {
                        err(ErrorCode::NotFound, format!("there is no data file {id}"))
                    })
                })
                .collect::<JniResult<Vec<u32>>>()?;
            Ok(journal.remove_data_files(&ids)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native int[] dataFileIds0(long journal)`: the ids of the journal's data files,
/// in the order the core reports them.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_dataFileIds0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JIntArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JIntArray<'local>> {
            let ids = journal(handle)?.data_file_ids();
            let ids = ids
                .into_iter()
                .map(|id| {
                    jint::try_from(id).map_err(|_| {
                        err(
                            ErrorCode::Internal,
                            format!("data file id {id} does not fit a Java int"),
                        )
                    })
                })
                .collect::<JniResult<Vec<jint>>>()?;
            let array = JIntArray::new(env, ids.len())?;
            array.set_region(env, 0, &ids)?;
            Ok(array)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long cursorOpen0(long journal, boolean hasAfter, int fileId, int offset,
/// int size)`: a cursor over the records after the given location (`hasAfter`), or over all
/// records.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Journal_cursorOpen0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    has_after: jboolean,
    file_id: jint,
    offset: jint,
    size: jint,
) -> jlong {
    unowned_env
        .with_env(|_env| -> JniResult<jlong> {
            let journal = journal(handle)?;
            let after = if has_after {
                Some(location(file_id, offset, size)?)
            } else {
                None
            };
            let cursor = journal.cursor(after);
            Ok(CURSORS.insert(std::sync::Mutex::new(cursor)) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

// ----------------------------------------------------------------------------------------------
// dev.kahadb.JournalCursor

/// `static native byte[] next0(long cursor, long[] locationOut)`: the next record's payload,
/// with `locationOut[0]` set to its packed location and `locationOut[1]` to its size; `null`
/// at the end.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_JournalCursor_next0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    location_out: JLongArray<'local>,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let cursor = CURSORS.get(handle as u64)?;
            if location_out.is_null() {
                return Err(null_argument("locationOut"));
            }
            if location_out.len(env)? < 2 {
                return Err(err(
                    ErrorCode::InvalidArgument,
                    "locationOut must have room for 2 values",
                ));
            }
            let next = {
                // A cursor whose previous call panicked half-way may be inconsistent: refuse it.
                let mut cursor = cursor.lock().map_err(|_| {
                    err(
                        ErrorCode::Internal,
                        "the cursor was left inconsistent by an earlier failure",
                    )
                })?;
                cursor.next_record()?
            };
            match next {
                None => Ok(JByteArray::default()),
                Some((loc, data)) => {
                    let array = env.byte_array_from_slice(&data)?;
                    location_out.set_region(
                        env,
                        0,
                        &[pack_location(loc), jlong::from(loc.size)],
                    )?;
                    Ok(array)
                }
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void close0(long cursor)`: releases the cursor; closing it again does nothing.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_JournalCursor_close0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            match CURSORS.remove(handle as u64) {
                Ok(_) => Ok(()),
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .resolve::<ThrowKahaDb>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code<T>(r: JniResult<T>) -> ErrorCode {
        match r {
            Err(JniError::Core(e)) => e.code(),
            Err(JniError::Jni(e)) => panic!("expected a core error, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn locations_pack_into_one_long() {
        let loc = Location {
            file_id: 7,
            offset: 0x1234_5678,
            size: 10,
        };
        let v = pack_location(loc);
        assert_eq!((v as u64 >> 32) as u32, 7);
        assert_eq!(v as u32, 0x1234_5678);
        let big = Location {
            file_id: u32::MAX,
            offset: u32::MAX,
            size: 0,
        };
        assert_eq!(pack_location(big), -1);
    }

    #[test]
    fn negative_locations_are_invalid() {
        assert!(location(1, 2, 3).is_ok());
        assert_eq!(code(location(-1, 0, 10)), ErrorCode::InvalidLocation);
        assert_eq!(code(location(1, -5, 10)), ErrorCode::InvalidLocation);
        assert_eq!(code(location(1, 0, -1)), ErrorCode::InvalidLocation);
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(check_range(0, 10, 10, "x").ok(), Some((0, 10)));
        assert_eq!(check_range(3, 0, 3, "x").ok(), Some((3, 0)));
        assert_eq!(
            code(check_range(-1, 1, 10, "x")),
            ErrorCode::InvalidArgument
        );
        assert_eq!(
            code(check_range(0, -1, 10, "x")),
            ErrorCode::InvalidArgument
        );
        assert_eq!(code(check_range(5, 6, 10, "x")), ErrorCode::InvalidArgument);
        assert_eq!(
            code(check_range(jint::MAX, jint::MAX, 10, "x")),
            ErrorCode::InvalidArgument
        );
    }

    #[test]
    fn configs_are_validated() {
        let c = match journal_config(65536, 4096, SYNC_PERIODIC, 250, PREALLOC_SPARSE) {
            Ok(c) => c,
            Err(e) => panic!("valid config rejected: {e}"),
        };
        assert_eq!(c.max_file_length, 65536);
        assert_eq!(c.max_batch_size, 4096);
        assert!(
            matches!(c.sync_strategy, SyncStrategy::Periodic(d) if d == Duration::from_millis(250))
        );
        assert!(matches!(c.preallocation, Preallocation::Sparse));
        assert_eq!(
            code(journal_config(0, 4096, SYNC_ALWAYS, 0, PREALLOC_ZEROS)),
            ErrorCode::Config
        );
        assert_eq!(
            code(journal_config(-1, 4096, SYNC_ALWAYS, 0, PREALLOC_ZEROS)),
            ErrorCode::Config
        );
        assert_eq!(
            code(journal_config(1024, 0, SYNC_ALWAYS, 0, PREALLOC_ZEROS)),
            ErrorCode::Config
        );
        assert_eq!(
            code(journal_config(1024, 1024, SYNC_PERIODIC, 0, PREALLOC_ZEROS)),
            ErrorCode::Config
        );
        assert_eq!(
            code(journal_config(1024, 1024, 9, 0, PREALLOC_ZEROS)),
            ErrorCode::Config
        );
        assert_eq!(
            code(journal_config(1024, 1024, SYNC_NEVER, 0, 9)),
            ErrorCode::Config
        );
    }
}

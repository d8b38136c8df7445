//! JNI bridge of `dev.kahadb.Store`: one native call per store operation (see
//! `java/src/main/java/dev/kahadb/Store.java` for the declarations and the Java-facing
//! contract, [`crate::store::packed`] for the packed buffers). Errors and panics become a
//! thrown `dev.kahadb.KahaDBException`, as for the journal.

use std::path::PathBuf;

use jni::objects::{JByteArray, JClass, JLongArray, JString};
use jni::refs::Reference as _;
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned};

use crate::error::ErrorCode;
use crate::handles::{StoreHandle, STORES};
use crate::store::codec::DestinationType;
use crate::store::ops::{ReadRequest, Removed, TxOutcome};
use crate::store::packed;
use crate::store::state::DestKey;
use crate::store::{Store, StoreConfig};

use super::error::{err, JniResult, ThrowKahaDb};
use super::{check_range, journal_config, null_argument};

fn store(handle: jlong) -> JniResult<std::sync::Arc<Store>> {
    Ok(STORES.get(handle as u64)?.store()?)
}

fn string(env: &mut Env<'_>, s: &JString<'_>, what: &str) -> JniResult<String> {
    if s.is_null() {
        return Err(null_argument(what));
    }
    Ok(s.try_to_string(env)?)
}

fn string_opt(env: &mut Env<'_>, s: &JString<'_>) -> JniResult<Option<String>> {
    if s.is_null() {
        return Ok(None);
    }
    Ok(Some(s.try_to_string(env)?))
}

fn dest(env: &mut Env<'_>, kind: jint, name: &JString<'_>) -> JniResult<DestKey> {
    if !(0..=3).contains(&kind) {
        return Err(err(
            ErrorCode::InvalidArgument,
            format!("destination type {kind} is not one of QUEUE, TOPIC, TEMP_QUEUE, TEMP_TOPIC"),
        ));
    }
    let name = string(env, name, "destination")?;
    Ok(DestKey::new(DestinationType::from_i32(kind), name))
}

fn bytes(env: &mut Env<'_>, a: &JByteArray<'_>, what: &str) -> JniResult<Vec<u8>> {
    if a.is_null() {
        return Err(null_argument(what));
    }
    Ok(env.convert_byte_array(a)?)
}

fn long_array<'local>(env: &mut Env<'local>, values: &[jlong]) -> JniResult<JLongArray<'local>> {
    let array = env.new_long_array(values.len())?;
    array.set_region(env, 0, values)?;
    Ok(array)
}

/// A remove's result as one `long`: -1 if nothing was removed, else the size, with
/// `Store.DELETED_FLAG` when the message left the store.
fn removed_value(r: Removed) -> jlong {
    if !r.found {
        return -1;
    }
    let mut v = jlong::from(r.size);
    if r.deleted {
        v |= 1 << 62;
    }
    v
}

fn outcome_values(outcomes: &[TxOutcome]) -> Vec<jlong> {
    outcomes
        .iter()
        .map(|o| match o {
            TxOutcome::Added(a) => a.sequence.map_or(-1, |s| s as jlong),
            TxOutcome::Removed(r) => removed_value(*r),
        })
        .collect()
}

/// `static native long open0(String dir, int maxFileLength, int maxBatchSize, int
/// syncStrategy, long syncIntervalMillis, int preallocation, long checkpointEvery, boolean
/// deleteAll)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
#[allow(clippy::field_reassign_with_default)] // the settings not set here keep their defaults
pub extern "system" fn Java_dev_kahadb_Store_open0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    dir: JString<'local>,
    max_file_length: jint,
    max_batch_size: jint,
    sync_strategy: jint,
    sync_interval_millis: jlong,
    preallocation: jint,
    checkpoint_every: jlong,
    delete_all: jboolean,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let dir = PathBuf::from(string(env, &dir, "dir")?);
            let journal = journal_config(
                max_file_length,
                max_batch_size,
                sync_strategy,
                sync_interval_millis,
                preallocation,
            )?;
            let checkpoint_every = u64::try_from(checkpoint_every).map_err(|_| {
                err(
                    ErrorCode::Config,
                    format!("checkpointEvery must not be negative, got {checkpoint_every}"),
                )
            })?;
            let mut config = StoreConfig::default();
            config.journal = journal;
            config.checkpoint_every = checkpoint_every;
            config.delete_all = delete_all;
            let (store, recovery) = Store::open(&dir, config)?;
            log::info!(
                "store {}: index from {}, {} journal records replayed{}",
                dir.display(),
                recovery
                    .checkpoint
                    .map_or("the journal alone".to_string(), |l| format!(
                        "the checkpoint at {l}"
                    )),
                recovery.replay.records,
                recovery
                    .rejected
                    .as_deref()
                    .map_or(String::new(), |r| format!(" (checkpoint not used: {r})")),
            );
            Ok(STORES.insert(StoreHandle::Owned(std::sync::Arc::new(store))) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void close0(long store)`: checkpoints and closes; closing twice does nothing.
/// The handle of a node's store (`Node.store()`) is only released: the node owns that store.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_close0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            match STORES.remove(handle as u64) {
                Ok(store) => Ok(store.close()?), // only releases a node's store
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long add0(long store, int kind, String destination, String messageId, int
/// priority, boolean prioritized, byte[] body, int off, int len, boolean sync, boolean update)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_kahadb_Store_add0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    message_id: JString<'local>,
    priority: jint,
    prioritized: jboolean,
    body: JByteArray<'local>,
    off: jint,
    len: jint,
    sync: jboolean,
    update: jboolean,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let id = string(env, &message_id, "messageId")?;
            if body.is_null() {
                return Err(null_argument("body"));
            }
            let (off, n) = check_range(off, len, body.len(env)?, "byte[]")?;
            let mut data = vec![0u8; n];
            body.get_region(env, off as i32, super::as_jbytes_mut(&mut data))?;
            let added = if update {
                store.update_message(&d, &id, priority, prioritized, data, sync)?
            } else {
                store.add_message(&d, &id, priority, prioritized, data, sync)?
            };
            Ok(added.sequence.map_or(-1, |s| s as jlong))
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long remove0(long store, int kind, String destination, String subscription,
/// String messageId, boolean sync)`: a queue remove (`subscription` null) or a topic ack.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_remove0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    subscription: JString<'local>,
    message_id: JString<'local>,
    sync: jboolean,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let id = string(env, &message_id, "messageId")?;
            match string_opt(env, &subscription)? {
                // A queue remove always deletes: just the size.
                None => {
                    let r = store.remove_message(&d, &id, sync)?;
                    Ok(if r.found { jlong::from(r.size) } else { -1 })
                }
                Some(sub) => Ok(removed_value(store.acknowledge(&d, &sub, &id, sync)?)),
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void subscribe0(long store, int kind, String destination, String
/// subscription, byte[] info, boolean retroactive, boolean sync)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_kahadb_Store_subscribe0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    subscription: JString<'local>,
    info: JByteArray<'local>,
    retroactive: jboolean,
    sync: jboolean,
) {
    unowned_env
        .with_env(|env| -> JniResult<()> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let sub = string(env, &subscription, "subscription")?;
            let info = bytes(env, &info, "info")?;
            Ok(store.subscribe(&d, &sub, &info, retroactive, sync)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native boolean unsubscribe0(long store, int kind, String destination, String
/// subscription, boolean sync)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_unsubscribe0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    subscription: JString<'local>,
    sync: jboolean,
) -> jboolean {
    unowned_env
        .with_env(|env| -> JniResult<jboolean> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let sub = string(env, &subscription, "subscription")?;
            Ok(store.unsubscribe(&d, &sub, sync)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native boolean removeDestination0(long store, int kind, String destination, boolean
/// sync)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_removeDestination0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    sync: jboolean,
) -> jboolean {
    unowned_env
        .with_env(|env| -> JniResult<jboolean> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            Ok(store.remove_destination(&d, sync)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long[] commit0(long store, byte[] tx, byte[] ops, boolean sync)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_commit0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    tx: JByteArray<'local>,
    ops: JByteArray<'local>,
    sync: jboolean,
) -> JLongArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JLongArray<'local>> {
            let store = store(handle)?;
            let tx = packed::parse_tx(&bytes(env, &tx, "tx")?)?;
            let ops = packed::parse_ops(&bytes(env, &ops, "ops")?)?;
            let out = store.commit(&tx, &ops, sync)?;
            long_array(env, &outcome_values(&out))
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void prepare0(long store, byte[] tx, byte[] ops)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_prepare0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    tx: JByteArray<'local>,
    ops: JByteArray<'local>,
) {
    unowned_env
        .with_env(|env| -> JniResult<()> {
            let store = store(handle)?;
            let tx = packed::parse_tx(&bytes(env, &tx, "tx")?)?;
            let ops = packed::parse_ops(&bytes(env, &ops, "ops")?)?;
            Ok(store.prepare(&tx, &ops)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long[] outcome0(long store, byte[] tx, boolean commit, boolean sync)`: the
/// outcome of a prepared transaction; null if it was not prepared.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_outcome0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    tx: JByteArray<'local>,
    commit: jboolean,
    sync: jboolean,
) -> JLongArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JLongArray<'local>> {
            let store = store(handle)?;
            let tx = packed::parse_tx(&bytes(env, &tx, "tx")?)?;
            if commit {
                // A prepared transaction has operations (an empty prepare writes nothing), so
                // no outcomes means it was not prepared (checked under the store lock).
                let out = store.commit_prepared(&tx, sync)?;
                if out.is_empty() {
                    return Ok(JLongArray::default());
                }
                long_array(env, &outcome_values(&out))
            } else if store.rollback_prepared(&tx, sync)? {
                long_array(env, &[])
            } else {
                Ok(JLongArray::default())
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] prepared0(long store)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_prepared0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let list = store(handle)?.prepared_transactions()?;
            Ok(env.byte_array_from_slice(&packed::pack_prepared(&list))?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] destinations0(long store)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_destinations0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let list = store(handle)?.destinations();
            Ok(env.byte_array_from_slice(&packed::pack_destinations(&list))?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long[] counts0(long store, int kind, String destination, String
/// subscription)`: `[count, bytes]`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_counts0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    subscription: JString<'local>,
) -> JLongArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JLongArray<'local>> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let sub = string_opt(env, &subscription)?;
            let (count, bytes) = store.counts(&d, sub.as_deref());
            long_array(env, &[count as jlong, bytes as jlong])
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long nextSequence0(long store, int kind, String destination)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_nextSequence0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            Ok(store.next_sequence(&d) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] subscriptions0(long store, int kind, String destination)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_subscriptions0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let list = store.subscriptions(&d);
            Ok(env.byte_array_from_slice(&packed::pack_subscriptions(&list))?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] getMessage0(long store, int kind, String destination, String
/// messageId)`: the body, or null.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_getMessage0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    message_id: JString<'local>,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let id = string(env, &message_id, "messageId")?;
            match store.get_message(&d, &id)? {
                None => Ok(JByteArray::default()),
                Some(body) => Ok(env.byte_array_from_slice(&body)?),
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] read0(long store, int kind, String destination, String subscription,
/// long fromHigh, long fromDefault, long fromLow, long limit, int maxCount, int maxBytes)`.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_kahadb_Store_read0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    kind: jint,
    destination: JString<'local>,
    subscription: JString<'local>,
    from_high: jlong,
    from_default: jlong,
    from_low: jlong,
    limit: jlong,
    max_count: jint,
    max_bytes: jint,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let store = store(handle)?;
            let d = dest(env, kind, &destination)?;
            let sub = string_opt(env, &subscription)?;
            let position = |v: jlong| v.max(0) as u64;
            let request = ReadRequest {
                from: [
                    position(from_high),
                    position(from_default),
                    position(from_low),
                ],
                limit: if limit < 0 { u64::MAX } else { limit as u64 },
                max_count: usize::try_from(max_count).unwrap_or(0),
                max_bytes: usize::try_from(max_bytes).unwrap_or(0),
            };
            let list = store.read_messages(&d, sub.as_deref(), request)?;
            Ok(env.byte_array_from_slice(&packed::pack_messages(&list))?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long lastProducerSequence0(long store, String producerId)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_lastProducerSequence0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    producer_id: JString<'local>,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            let store = store(handle)?;
            let p = string(env, &producer_id, "producerId")?;
            Ok(store.last_producer_sequence(&p))
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void checkpoint0(long store, boolean cleanup)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_checkpoint0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    cleanup: jboolean,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            let store = store(handle)?;
            if cleanup {
                store.checkpoint_and_gc()?;
            } else {
                // The adapter's timer: bounded so that a large index is not paused too often.
                store.checkpoint_timed()?;
            }
            Ok(())
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long diskUsage0(long store)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Store_diskUsage0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jlong {
    unowned_env
        .with_env(|_env| -> JniResult<jlong> { Ok(store(handle)?.disk_usage() as jlong) })
        .resolve::<ThrowKahaDb>()
}

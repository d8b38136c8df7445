//! JNI bridge of `dev.kahadb.Node`: one native call per operation of a replication node (see
//! `java/src/main/java/dev/kahadb/Node.java` for the declarations and the Java-facing contract,
//! `src/ffi/node.rs` for the same API in C). Errors and panics become a thrown
//! `dev.kahadb.KahaDBException`, as for the store.
//!
//! The status crosses as a packed `byte[]` (see [`pack_status`]) that `NodeStatus.decode`
//! reads with a `ByteBuffer`, as the store's lists do, rather than as the JSON of the C API:
//! every field keeps its type without a parser on the Java side, and the decoder is strict
//! (every enum value is checked, and a short or over-long buffer is an error).
//!
//! ```java
//! // dev.kahadb.Node
//! static native long open0(String dir, String uri, String cluster, int minimumReplicas,
//!         long replicationTimeoutMillis, int transferSessions, int maxFileLength,
//!         int maxBatchSize, int syncStrategy, long syncIntervalMillis, int preallocation,
//!         long checkpointEvery, boolean deleteAll);
//! static native void close0(long node);
//! static native void startMaster0(long node, long epoch);
//! static native void startSlave0(long node, String masterUri);
//! static native void promote0(long node, long epoch);
//! static native void demote0(long node, String masterUri);
//! static native void stop0(long node);
//! static native int role0(long node);
//! static native long epoch0(long node);
//! static native byte[] status0(long node);
//! static native String statusJson0(long node);
//! static native void setMinimumReplicas0(long node, int minimumReplicas);
//! static native void setReplicationTimeout0(long node, long millis);
//! static native boolean waitForLiveSlaves0(long node, int count, long timeoutMillis);
//! static native long store0(long node);
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jni::objects::{JByteArray, JClass, JString};
use jni::refs::Reference as _;
use jni::sys::{jboolean, jint, jlong};
use jni::{Env, EnvUnowned};

use crate::error::ErrorCode;
use crate::handles::{StoreHandle, NODES, STORES};
use crate::replication::live::{LinkState, SlaveState};
use crate::replication::node::{Node, NodeConfig, NodeStatus, Role, DEFAULT_CLUSTER};
use crate::replication::Position;
use crate::store::packed::Packer;
use crate::store::StoreConfig;

use super::error::{err, JniResult, ThrowKahaDb};
use super::{journal_config, null_argument};

fn node(handle: jlong) -> JniResult<Arc<Node>> {
    Ok(NODES.get(handle as u64)?)
}

pub(super) fn string(env: &mut Env<'_>, s: &JString<'_>, what: &str) -> JniResult<String> {
    if s.is_null() {
        return Err(null_argument(what));
    }
    Ok(s.try_to_string(env)?)
}

/// `Node.Role` ordinals.
fn role_ordinal(r: Role) -> jint {
    match r {
        Role::Stopped => 0,
        Role::Master => 1,
        Role::Slave => 2,
    }
}

/// `NodeStatus.SlaveState` ordinals.
fn slave_state_ordinal(s: SlaveState) -> u8 {
    match s {
        SlaveState::Syncing => 0,
        SlaveState::Live => 1,
        SlaveState::Left => 2,
    }
}

/// `NodeStatus.LinkState` ordinals, plus one: 0 is no link (not a slave).
fn link_value(l: Option<LinkState>) -> u8 {
    match l {
        None => 0,
        Some(LinkState::Connecting) => 1,
        Some(LinkState::Syncing) => 2,
        Some(LinkState::Live) => 3,
    }
}

fn epoch(value: jlong) -> JniResult<u64> {
    u64::try_from(value).map_err(|_| {
        err(
            ErrorCode::InvalidArgument,
            format!("epoch must not be negative, got {value}"),
        )
    })
}

fn count(value: jint, what: &str, code: ErrorCode) -> JniResult<usize> {
    usize::try_from(value)
        .map_err(|_| err(code, format!("{what} must not be negative, got {value}")))
}

pub(super) fn millis(value: jlong, what: &str, code: ErrorCode) -> JniResult<Duration> {
    u64::try_from(value)
        .map(Duration::from_millis)
        .map_err(|_| err(code, format!("{what} must not be negative, got {value}")))
}

pub(super) fn saturating(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn position(p: &mut Packer, pos: Position) {
    p.i64(i64::from(pos.file));
    p.i64(i64::from(pos.offset));
}

fn position_opt(p: &mut Packer, pos: Option<Position>) {
    match pos {
        None => p.u8(0),
        Some(pos) => {
            p.u8(1);
            position(p, pos);
        }
    }
}

fn string_opt(p: &mut Packer, s: Option<&str>) {
    p.bytes_opt(s.map(str::as_bytes));
}

/// The status in the packed form `NodeStatus.decode` reads (big-endian; `string` is an i32
/// byte length and UTF-8, `string?` the same or the i32 -1 for none):
///
/// ```text
/// status    = u8 role (Node.Role ordinal), string node, i64 epoch, i64 lineage, string? master,
///             position, i64 minimumReplicas, i64 replicationTimeoutMs,
///             i32 n, n x slave,
///             u8 link (0 none, else NodeStatus.LinkState ordinal + 1), i64 bytesToGo,
///             position? applied, string? lastError
/// slave     = string node, u8 state (NodeStatus.SlaveState ordinal), position? durable,
///             i64 lagBytes, i64 bytesToGo, string? reason
/// position  = i64 file, i64 offset
/// position? = u8 0 | u8 1, position
/// ```
pub(crate) fn pack_status(st: &NodeStatus) -> Vec<u8> {
    let mut p = Packer::default();
    p.u8(role_ordinal(st.role) as u8);
    p.string(&st.node);
    p.i64(saturating(st.epoch));
    p.i64(saturating(st.lineage));
    string_opt(&mut p, st.master.as_deref());
    position(&mut p, st.position);
    p.i64(saturating(st.minimum_replicas as u64));
    p.i64(saturating(st.replication_timeout_ms));
    p.count(st.slaves.len());
    for s in &st.slaves {
        p.string(&s.node);
        p.u8(slave_state_ordinal(s.state));
        position_opt(&mut p, s.durable);
        p.i64(saturating(s.lag_bytes));
        p.i64(saturating(s.bytes_to_go));
        string_opt(&mut p, s.reason.as_deref());
    }
    p.u8(link_value(st.link));
    p.i64(saturating(st.bytes_to_go));
    position_opt(&mut p, st.applied);
    string_opt(&mut p, st.last_error.as_deref());
    p.out
}

/// `static native long open0(String dir, String uri, String cluster, int minimumReplicas, long
/// replicationTimeoutMillis, int transferSessions, int maxFileLength, int maxBatchSize, int
/// syncStrategy, long syncIntervalMillis, int preallocation, long checkpointEvery, boolean
/// deleteAll)`: a stopped node; `cluster` null for the default.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_kahadb_Node_open0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    dir: JString<'local>,
    uri: JString<'local>,
    cluster: JString<'local>,
    minimum_replicas: jint,
    replication_timeout_millis: jlong,
    transfer_sessions: jint,
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
            let config = NodeOptionArgs {
                dir: &dir,
                uri: &uri,
                cluster: &cluster,
                minimum_replicas,
                replication_timeout_millis,
                transfer_sessions,
                max_file_length,
                max_batch_size,
                sync_strategy,
                sync_interval_millis,
                preallocation,
                checkpoint_every,
                delete_all,
            }
            .config(env)?;
            Ok(NODES.insert(Node::new(config)?) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

/// The node options of `NodeOptions`, as `Node.open0` and `ElectedNode.start0` receive them.
pub(super) struct NodeOptionArgs<'a, 'local> {
    pub dir: &'a JString<'local>,
    pub uri: &'a JString<'local>,
    /// Null for the default cluster.
    pub cluster: &'a JString<'local>,
    pub minimum_replicas: jint,
    pub replication_timeout_millis: jlong,
    pub transfer_sessions: jint,
    pub max_file_length: jint,
    pub max_batch_size: jint,
    pub sync_strategy: jint,
    pub sync_interval_millis: jlong,
    pub preallocation: jint,
    pub checkpoint_every: jlong,
    pub delete_all: jboolean,
}

impl NodeOptionArgs<'_, '_> {
    /// The node's configuration; a null directory or URI, a negative count or time, or a bad
    /// journal option is an error.
    pub(super) fn config(&self, env: &mut Env<'_>) -> JniResult<NodeConfig> {
        let dir = PathBuf::from(string(env, self.dir, "directory")?);
        let uri = string(env, self.uri, "uri")?;
        let cluster = if self.cluster.is_null() {
            DEFAULT_CLUSTER.to_owned()
        } else {
            self.cluster.try_to_string(env)?
        };
        let journal = journal_config(
            self.max_file_length,
            self.max_batch_size,
            self.sync_strategy,
            self.sync_interval_millis,
            self.preallocation,
        )?;
        let checkpoint_every = u64::try_from(self.checkpoint_every).map_err(|_| {
            err(
                ErrorCode::Config,
                format!(
                    "checkpointEvery must not be negative, got {}",
                    self.checkpoint_every
                ),
            )
        })?;
        let mut config = NodeConfig::new(dir, uri);
        config.cluster = cluster;
        config.minimum_replicas =
            count(self.minimum_replicas, "minimumReplicas", ErrorCode::Config)?;
        config.replication_timeout = millis(
            self.replication_timeout_millis,
            "replicationTimeoutMillis",
            ErrorCode::Config,
        )?;
        config.transfer_sessions = count(
            self.transfer_sessions,
            "transferSessions",
            ErrorCode::Config,
        )?;
        config.store = StoreConfig {
            journal,
            checkpoint_every,
            delete_all: self.delete_all,
            ..StoreConfig::default()
        };
        Ok(config)
    }
}

/// `static native void close0(long node)`: stops the node and retires its handle; closing an
/// already closed handle does nothing.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_close0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            match NODES.remove(handle as u64) {
                Ok(node) => {
                    node.stop();
                    Ok(())
                }
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void startMaster0(long node, long epoch)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_startMaster0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    value: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            let n = node(handle)?;
            Ok(n.start_master(epoch(value)?)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void startSlave0(long node, String masterUri)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_startSlave0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    master_uri: JString<'local>,
) {
    unowned_env
        .with_env(|env| -> JniResult<()> {
            let n = node(handle)?;
            let uri = string(env, &master_uri, "masterUri")?;
            Ok(n.start_slave(&uri)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void promote0(long node, long epoch)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_promote0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    value: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            let n = node(handle)?;
            Ok(n.promote(epoch(value)?)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void demote0(long node, String masterUri)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_demote0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    master_uri: JString<'local>,
) {
    unowned_env
        .with_env(|env| -> JniResult<()> {
            let n = node(handle)?;
            let uri = string(env, &master_uri, "masterUri")?;
            Ok(n.demote(&uri)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void stop0(long node)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_stop0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            node(handle)?.stop();
            Ok(())
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native int role0(long node)`: the `Node.Role` ordinal.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_role0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jint {
    unowned_env
        .with_env(|_env| -> JniResult<jint> { Ok(role_ordinal(node(handle)?.role())) })
        .resolve::<ThrowKahaDb>()
}

/// `static native long epoch0(long node)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_epoch0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jlong {
    unowned_env
        .with_env(|_env| -> JniResult<jlong> { Ok(saturating(node(handle)?.epoch())) })
        .resolve::<ThrowKahaDb>()
}

/// `static native byte[] status0(long node)`: the status packed as [`pack_status`] describes.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_status0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JByteArray<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JByteArray<'local>> {
            let st = node(handle)?.status();
            Ok(env.byte_array_from_slice(&pack_status(&st))?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native String statusJson0(long node)`: the status as the C API's JSON.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_statusJson0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> JString<'local> {
    unowned_env
        .with_env(|env| -> JniResult<JString<'local>> {
            let json = node(handle)?.status().to_json();
            Ok(JString::from_str(env, &json)?)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void setMinimumReplicas0(long node, int minimumReplicas)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_setMinimumReplicas0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    minimum_replicas: jint,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            let n = node(handle)?;
            n.set_minimum_replicas(count(
                minimum_replicas,
                "minimumReplicas",
                ErrorCode::InvalidArgument,
            )?);
            Ok(())
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void setReplicationTimeout0(long node, long millis)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_setReplicationTimeout0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    timeout_millis: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            let n = node(handle)?;
            n.set_replication_timeout(millis(
                timeout_millis,
                "replication timeout",
                ErrorCode::InvalidArgument,
            )?);
            Ok(())
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native boolean waitForLiveSlaves0(long node, int count, long timeoutMillis)`.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_waitForLiveSlaves0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
    slaves: jint,
    timeout_millis: jlong,
) -> jboolean {
    unowned_env
        .with_env(|_env| -> JniResult<jboolean> {
            let n = node(handle)?;
            let slaves = count(slaves, "count", ErrorCode::InvalidArgument)?;
            let timeout = millis(timeout_millis, "timeout", ErrorCode::InvalidArgument)?;
            Ok(n.wait_for_live_slaves(slaves, timeout))
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long store0(long node)`: a new store handle on the master's store (see
/// [`StoreHandle::Node`]); `Store.close0` only releases it.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_Node_store0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jlong {
    unowned_env
        .with_env(|_env| -> JniResult<jlong> {
            let n = node(handle)?;
            Ok(STORES.insert(StoreHandle::of_node(&n)?) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::live::SlaveReport;
    use crate::store::packed::Reader;

    #[test]
    fn status_packs_every_field() {
        let st = NodeStatus {
            role: Role::Master,
            node: "127.0.0.1:7000".into(),
            epoch: 3,
            lineage: 2,
            master: Some("kdbr://127.0.0.1:7000".into()),
            position: Position {
                file: 2,
                offset: 99,
            },
            minimum_replicas: 1,
            replication_timeout_ms: 5000,
            slaves: vec![SlaveReport {
                node: "127.0.0.1:7001".into(),
                state: SlaveState::Live,
                durable: Some(Position {
                    file: 2,
                    offset: 90,
                }),
                lag_bytes: 9,
                bytes_to_go: 0,
                reason: None,
            }],
            link: None,
            bytes_to_go: 0,
            applied: None,
            last_error: Some("gone".into()),
        };
        let b = pack_status(&st);
        let mut r = Reader::new(&b, "status");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.string().unwrap(), "127.0.0.1:7000");
        assert_eq!(r.i64().unwrap(), 3);
        assert_eq!(r.i64().unwrap(), 2, "lineage");
        assert_eq!(
            r.string_opt().unwrap().as_deref(),
            Some("kdbr://127.0.0.1:7000")
        );
        assert_eq!((r.i64().unwrap(), r.i64().unwrap()), (2, 99));
        assert_eq!((r.i64().unwrap(), r.i64().unwrap()), (1, 5000));
        assert_eq!(r.i32().unwrap(), 1);
        assert_eq!(r.string().unwrap(), "127.0.0.1:7001");
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!((r.i64().unwrap(), r.i64().unwrap()), (2, 90));
        assert_eq!((r.i64().unwrap(), r.i64().unwrap()), (9, 0));
        assert_eq!(r.string_opt().unwrap(), None);
        assert_eq!(r.u8().unwrap(), 0, "no link");
        assert_eq!(r.i64().unwrap(), 0);
        assert_eq!(r.u8().unwrap(), 0, "no applied position");
        assert_eq!(r.string_opt().unwrap().as_deref(), Some("gone"));
        r.finish().unwrap();
    }

    #[test]
    fn negative_values_are_refused() {
        assert!(epoch(-1).is_err());
        assert_eq!(epoch(7).ok(), Some(7));
        assert!(count(-1, "n", ErrorCode::Config).is_err());
        assert!(millis(-5, "t", ErrorCode::Config).is_err());
        assert_eq!(
            millis(5, "t", ErrorCode::Config).ok(),
            Some(Duration::from_millis(5))
        );
    }
}

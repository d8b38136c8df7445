//! JNI bridge of `dev.kahadb.ElectedNode`: a replication node whose role an election decides
//! ([`crate::election::driver`]), telling a Java `dev.kahadb.ElectionListener` what happens
//! (see `java/src/main/java/dev/kahadb/ElectedNode.java` for the Java-facing contract,
//! `src/ffi/election.rs` for the same API in C).
//!
//! The listener's class, its four method ids and `NodeStatus.decode` are resolved in
//! `start0`, on the thread that registers the listener (whose class loader knows them); the
//! events are delivered on the driver's dispatcher thread, attached to the JVM for good the
//! first time. A Java exception thrown by the listener is caught there: logged (with its stack
//! trace on standard error), cleared, and later events are still delivered.
//!
//! ```java
//! // dev.kahadb.ElectedNode
//! static native long start0(String dir, String uri, String cluster, int minimumReplicas,
//!         long replicationTimeoutMillis, int transferSessions, int maxFileLength,
//!         int maxBatchSize, int syncStrategy, long syncIntervalMillis, int preallocation,
//!         long checkpointEvery, boolean deleteAll, String zookeeper, String path,
//!         long sessionTimeoutMillis, ElectionListener listener);
//! static native long node0(long elected);
//! static native void close0(long elected);
//! ```

use jni::ids::{JMethodID, JStaticMethodID};
use jni::objects::{JClass, JObject, JString};
use jni::refs::{Global, Reference as _};
use jni::signature::{Primitive, ReturnType};
use jni::sys::{jboolean, jint, jlong};
use jni::{
    jni_sig, jni_str, AttachConfig, Env, EnvUnowned, JValue, JavaVM, DEFAULT_LOCAL_FRAME_CAPACITY,
};

use crate::election::driver::{ElectionConfig, HostEvent};
use crate::election::ElectionDriver;
use crate::error::ErrorCode;
use crate::handles::{ElectedNode, ELECTED, NODES};

use super::error::{JniResult, ThrowKahaDb};
use super::node::{millis, pack_status, saturating, NodeOptionArgs};
use super::null_argument;

/// The listener and what calling it takes, resolved on the registering thread.
struct Listener {
    vm: JavaVM,
    listener: Global<JObject<'static>>,
    became_master: JMethodID,
    became_slave: JMethodID,
    status_changed: JMethodID,
    stopped: JMethodID,
    status_class: Global<JClass<'static>>,
    decode: JStaticMethodID,
}

impl Listener {
    fn new(env: &mut Env<'_>, listener: &JObject<'_>) -> JniResult<Listener> {
        let class = env.get_object_class(listener)?;
        let became_master =
            env.get_method_id(&class, jni_str!("becameMaster"), jni_sig!("(J)V"))?;
        let became_slave = env.get_method_id(
            &class,
            jni_str!("becameSlave"),
            jni_sig!("(Ljava/lang/String;J)V"),
        )?;
        let status_changed = env.get_method_id(
            &class,
            jni_str!("statusChanged"),
            jni_sig!("(Ldev/kahadb/NodeStatus;)V"),
        )?;
        let stopped = env.get_method_id(
            &class,
            jni_str!("stopped"),
            jni_sig!("(Ljava/lang/String;)V"),
        )?;
        let status_class = env.find_class(jni_str!("dev/kahadb/NodeStatus"))?;
        let decode = env.get_static_method_id(
            &status_class,
            jni_str!("decode"),
            jni_sig!("([B)Ldev/kahadb/NodeStatus;"),
        )?;
        Ok(Listener {
            vm: env.get_java_vm()?,
            listener: env.new_global_ref(listener)?,
            became_master,
            became_slave,
            status_changed,
            stopped,
            status_class: env.new_global_ref(status_class)?,
            decode,
        })
    }

    /// Delivers one event (on the dispatcher thread).
    fn deliver(&self, event: HostEvent) {
        let what = match &event {
            HostEvent::BecameMaster { .. } => "becameMaster",
            HostEvent::BecameSlave { .. } => "becameSlave",
            HostEvent::StatusChanged(_) => "statusChanged",
            HostEvent::Stopped { .. } => "stopped",
        };
        // Attached for good the first time, as a Java thread named after the dispatcher.
        let config = || AttachConfig::new().thread_name(jni_str!("kahadb-election-events"));
        let result = self.vm.attach_current_thread_with_config(
            config,
            Some(DEFAULT_LOCAL_FRAME_CAPACITY),
            |env| -> jni::errors::Result<()> {
                let r = self.call(env, event);
                if env.exception_check() {
                    // The listener threw: its stack trace goes to standard error, and the
                    // dispatcher goes on with the next event.
                    env.exception_describe();
                    env.exception_clear();
                    log::warn!("election: the ElectionListener threw from {what}; the exception was cleared");
                    return Ok(());
                }
                r
            },
        );
        if let Err(e) = result {
            log::error!("election: delivering {what} to the ElectionListener failed: {e}");
        }
    }

    fn call(&self, env: &mut Env<'_>, event: HostEvent) -> jni::errors::Result<()> {
        let void = ReturnType::Primitive(Primitive::Void);
        let obj = self.listener.as_obj();
        // SAFETY (every call below): each method id was resolved on the listener's class with
        // the signature whose arguments and return type are passed here.
        match event {
            HostEvent::BecameMaster { epoch } => unsafe {
                env.call_method_unchecked(
                    obj,
                    self.became_master,
                    void,
                    &[JValue::Long(saturating(epoch)).as_jni()],
                )?;
            },
            HostEvent::BecameSlave { master, epoch } => {
                let master = JString::from_str(env, &master)?;
                // SAFETY: as above.
                unsafe {
                    env.call_method_unchecked(
                        obj,
                        self.became_slave,
                        void,
                        &[
                            JValue::Object(&master).as_jni(),
                            JValue::Long(saturating(epoch)).as_jni(),
                        ],
                    )?;
                }
            }
            HostEvent::StatusChanged(st) => {
                let packed = env.byte_array_from_slice(&pack_status(&st))?;
                // SAFETY: `decode` is `static NodeStatus decode(byte[])` of `status_class`.
                let status = unsafe {
                    env.call_static_method_unchecked(
                        &self.status_class,
                        self.decode,
                        ReturnType::Object,
                        &[JValue::Object(&packed).as_jni()],
                    )?
                }
                .l()?;
                // SAFETY: as above.
                unsafe {
                    env.call_method_unchecked(
                        obj,
                        self.status_changed,
                        void,
                        &[JValue::Object(&status).as_jni()],
                    )?;
                }
            }
            HostEvent::Stopped { reason } => {
                let reason = JString::from_str(env, &reason)?;
                // SAFETY: as above.
                unsafe {
                    env.call_method_unchecked(
                        obj,
                        self.stopped,
                        void,
                        &[JValue::Object(&reason).as_jni()],
                    )?;
                }
            }
        }
        Ok(())
    }
}

/// `static native long start0(...)` (see the module documentation): opens the node and starts
/// its election; `cluster` null for the default, `zookeeper` null for the static elector,
/// `path` null for the default root.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub extern "system" fn Java_dev_kahadb_ElectedNode_start0<'local>(
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
    zookeeper: JString<'local>,
    path: JString<'local>,
    session_timeout_millis: jlong,
    listener: JObject<'local>,
) -> jlong {
    unowned_env
        .with_env(|env| -> JniResult<jlong> {
            if listener.is_null() {
                return Err(null_argument("listener"));
            }
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
            let election = if zookeeper.is_null() {
                ElectionConfig::Static
            } else {
                ElectionConfig::ZooKeeper {
                    connect: zookeeper.try_to_string(env)?,
                    root: if path.is_null() {
                        None
                    } else {
                        Some(path.try_to_string(env)?)
                    },
                    session_timeout: Some(millis(
                        session_timeout_millis,
                        "sessionTimeoutMillis",
                        ErrorCode::Config,
                    )?),
                }
            };
            let listener = Listener::new(env, &listener)?;
            let driver =
                ElectionDriver::open(config, &election, Box::new(move |e| listener.deliver(e)))?;
            Ok(ELECTED.insert(ElectedNode::new(driver)) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native long node0(long elected)`: a node handle on the node the election drives;
/// `Node.close0` on it only releases it.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_ElectedNode_node0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) -> jlong {
    unowned_env
        .with_env(|_env| -> JniResult<jlong> {
            let e = ELECTED.get(handle as u64)?;
            Ok(NODES.insert_borrowed(e.node().clone()) as jlong)
        })
        .resolve::<ThrowKahaDb>()
}

/// `static native void close0(long elected)`: stops the node, leaves the election and retires
/// the handle (see `kahadb_elected_node_close`: the listener's last events are delivered first,
/// waiting at most 5 s for it); closing an already closed handle does nothing.
#[no_mangle]
pub extern "system" fn Java_dev_kahadb_ElectedNode_close0<'local>(
    mut unowned_env: EnvUnowned<'local>,
    _class: JClass<'local>,
    handle: jlong,
) {
    unowned_env
        .with_env(|_env| -> JniResult<()> {
            match ELECTED.remove(handle as u64) {
                Ok(e) => {
                    e.close();
                    Ok(())
                }
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
        .resolve::<ThrowKahaDb>()
}

//! The C ABI of a replication node (`kahadb_node_*`), over [`crate::replication::node::Node`],
//! with the conventions of the parent module (result codes, last error, handles from
//! [`crate::handles::NODES`] cast to an opaque pointer, buffers freed with `kahadb_buffer_free`,
//! every body inside `guard` so no panic crosses the boundary). The doc comments below are the
//! C-facing contract and end up in `include/kahadb.h`; `src/jni/node.rs` mirrors them for Java.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::store::{kahadb_store, kahadb_store_options};
use super::{guard, into_c_buffer, null, KAHADB_OK};
use crate::error::{Error, ErrorCode, Result};
use crate::handles::{StoreHandle, NODES, STORES};
use crate::replication::node::{Node, NodeConfig, Role, DEFAULT_CLUSTER};
use crate::store::StoreConfig;

/// `kahadb_node_role`: the node is stopped (neither master nor slave).
pub const KAHADB_ROLE_STOPPED: i32 = 0;
/// `kahadb_node_role`: the node is master: its store is open and it serves slaves.
pub const KAHADB_ROLE_MASTER: i32 = 1;
/// `kahadb_node_role`: the node is a slave: it copies its master's journal.
pub const KAHADB_ROLE_SLAVE: i32 = 2;

/// A replication node (opaque): one directory (journal, index, replication state) and one
/// `kdbr://host:port` address (its identity, and where it listens while master). It is
/// stopped, master or slave:
/// - master: its store is open (`kahadb_node_store`); synchronous writes return once
///   `minimum_replicas` live slaves hold them, or fail with `KAHADB_ERR_REPLICATION_TIMEOUT`
///   after the replication timeout (the write is on this node's disk all the same); it serves
///   any number of slaves;
/// - slave of a master's address: it copies the master's journal (initial sync, then the live
///   stream, reconnecting whenever the link ends) and keeps a hot standby index, so that a
///   promotion opens the store without a replay.
///
/// A master's epoch only grows and is kept in the directory: a node refuses to become master
/// at an epoch older than the highest it knows (`KAHADB_ERR_ILLEGAL_STATE`), and a slave
/// learns its master's epoch.
///
/// Every `kahadb_node_*` function is thread-safe. Role changes are serialised: one waits for
/// another to finish.
pub struct kahadb_node {
    _opaque: [u8; 0],
}

/// Node options. Initialise with `kahadb_node_options_init`, then set at least `directory` and
/// `uri`. The strings are read during `kahadb_node_open` only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kahadb_node_options {
    /// The node's directory (UTF-8 path; created if needed). Required (default NULL).
    pub directory: *const c_char,
    /// The node's address, `kdbr://host:port` (an IPv6 host in brackets): its identity, and
    /// where it listens while master. Required (default NULL).
    pub uri: *const c_char,
    /// The cluster name: nodes of different clusters refuse each other. NULL (the default)
    /// for "kahadb".
    pub cluster: *const c_char,
    /// Synchronous writes of a master return once this many live slaves hold them (default 0:
    /// no waiting). Changeable with `kahadb_node_set_minimum_replicas`.
    pub minimum_replicas: u32,
    /// How long a synchronous write waits for `minimum_replicas` slaves before it fails with
    /// `KAHADB_ERR_REPLICATION_TIMEOUT`, in milliseconds (default 10000). Changeable with
    /// `kahadb_node_set_replication_timeout`.
    pub replication_timeout_ms: u64,
    /// Concurrent transfer sessions of a slave's initial sync, 1 to 64 (default 4).
    pub transfer_sessions: u32,
    /// The store (as `kahadb_store_options_init` sets it). The journal options must be the
    /// same on every node of a cluster, for the files to come out identical; `delete_all` is
    /// refused (`KAHADB_ERR_CONFIG`): a node's data is the cluster's.
    pub store: kahadb_store_options,
}

impl Default for kahadb_node_options {
    fn default() -> Self {
        let d = NodeConfig::new("", "");
        kahadb_node_options {
            directory: std::ptr::null(),
            uri: std::ptr::null(),
            cluster: std::ptr::null(),
            minimum_replicas: u32::try_from(d.minimum_replicas).unwrap_or(u32::MAX),
            replication_timeout_ms: u64::try_from(d.replication_timeout.as_millis())
                .unwrap_or(u64::MAX),
            transfer_sessions: u32::try_from(d.transfer_sessions).unwrap_or(u32::MAX),
            store: kahadb_store_options::default(),
        }
    }
}

fn node_id(n: *const kahadb_node) -> u64 {
    n as usize as u64
}

fn node(n: *mut kahadb_node) -> Result<Arc<Node>> {
    NODES.get(node_id(n))
}

fn role_value(r: Role) -> i32 {
    match r {
        Role::Stopped => KAHADB_ROLE_STOPPED,
        Role::Master => KAHADB_ROLE_MASTER,
        Role::Slave => KAHADB_ROLE_SLAVE,
    }
}

/// A required string argument or option.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that stays valid for `'a`.
pub(super) unsafe fn text<'a>(p: *const c_char, what: &str) -> Result<&'a str> {
    if p.is_null() {
        return Err(null(what));
    }
    // SAFETY: `p` is non-NULL and, per the caller's contract, NUL-terminated and valid for 'a.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| {
        Error::new(
            ErrorCode::InvalidArgument,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// The core configuration of the options (strings copied).
///
/// # Safety
/// The string fields of `o` are NULL or NUL-terminated strings.
pub(super) unsafe fn node_config(o: &kahadb_node_options) -> Result<NodeConfig> {
    // SAFETY: per the contract, NULL or NUL-terminated.
    let dir = unsafe { text(o.directory, "options.directory") }?;
    if dir.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidArgument,
            "options.directory is empty",
        ));
    }
    // SAFETY: per the contract, NULL or NUL-terminated.
    let uri = unsafe { text(o.uri, "options.uri") }?;
    let cluster = if o.cluster.is_null() {
        DEFAULT_CLUSTER.to_owned()
    } else {
        // SAFETY: non-NULL and, per the contract, NUL-terminated.
        unsafe { text(o.cluster, "options.cluster") }?.to_owned()
    };
    let mut config = NodeConfig::new(PathBuf::from(dir), uri);
    config.cluster = cluster;
    config.minimum_replicas = o.minimum_replicas as usize;
    config.replication_timeout = Duration::from_millis(o.replication_timeout_ms);
    config.transfer_sessions = o.transfer_sessions as usize;
    config.store = StoreConfig {
        journal: o.store.journal.to_config()?,
        checkpoint_every: o.store.checkpoint_every,
        delete_all: o.store.delete_all,
        ..StoreConfig::default()
    };
    Ok(config)
}

/// Fills `options` with the defaults. Does nothing if `options` is NULL.
///
/// # Safety
/// `options` is NULL or points to writable memory for one `kahadb_node_options`.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_options_init(options: *mut kahadb_node_options) {
    if !options.is_null() {
        // SAFETY: the caller guarantees `options` points to writable memory for one struct;
        // `write` does not read the (possibly uninitialised) old value.
        unsafe { options.write(kahadb_node_options::default()) };
    }
}

/// Opens a node, stopped: checks the options, creates the directory if needed and reads the
/// epoch the node knows. Nothing listens and no store is open until `kahadb_node_start_master`
/// or `kahadb_node_start_slave`. On success stores the handle in `*out_node`; close it with
/// `kahadb_node_close`.
///
/// Errors: NULL_ARGUMENT (`options`, `options->directory`, `options->uri` or `out_node` NULL),
/// INVALID_ARGUMENT (a string not UTF-8, an empty directory), CONFIG (a `uri` that is not
/// `kdbr://host:port`, an empty cluster name, `transfer_sessions` not 1 to 64, bad store or
/// journal options, `store.delete_all`), CORRUPT (the directory's epoch file is damaged), IO.
/// Thread-safe.
///
/// # Safety
/// `options` is NULL or points to an initialised `kahadb_node_options` whose strings are NULL
/// or NUL-terminated; `out_node` is NULL or points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_open(
    options: *const kahadb_node_options,
    out_node: *mut *mut kahadb_node,
) -> i32 {
    guard(|| {
        crate::logging::init();
        if options.is_null() {
            return Err(null("options"));
        }
        if out_node.is_null() {
            return Err(null("out_node"));
        }
        // SAFETY: non-NULL and, per the contract, an initialised struct; read by copy.
        let opts = unsafe { options.read() };
        // SAFETY: the strings are NULL or NUL-terminated per the contract.
        let config = unsafe { node_config(&opts) }?;
        let node = Node::new(config)?;
        let id = NODES.insert(node);
        // SAFETY: `out_node` is non-NULL and writable per the contract.
        unsafe { out_node.write(id as usize as *mut kahadb_node) };
        Ok(KAHADB_OK)
    })
}

/// Stops the node (as `kahadb_node_stop`: a master's store closes) and closes the handle. The
/// handle is invalid afterwards: using it again gives CLOSED (never a crash), including a
/// second close; store handles from `kahadb_node_store` give CLOSED too (release them with
/// `kahadb_store_close`). Safe while other threads use the handle: their calls either complete
/// or fail with CLOSED.
///
/// Errors: NULL_ARGUMENT/INVALID_HANDLE/CLOSED (handle).
#[no_mangle]
pub extern "C" fn kahadb_node_close(node: *mut kahadb_node) -> i32 {
    guard(|| {
        NODES.remove(node_id(node))?.stop();
        Ok(KAHADB_OK)
    })
}

/// Makes the node master at `epoch`, which must be at least the highest epoch it knows (see
/// `kahadb_node_epoch`): it listens on its address, opens its store (from the hot standby index
/// when it was a slave, without a replay) and serves slaves. A stale epoch or an address that
/// cannot be listened on changes nothing; a later failure (recording the epoch, opening the
/// store) leaves the node stopped.
///
/// Errors: handle errors, ILLEGAL_STATE (already master; `epoch` older than the node knows),
/// IO (the address cannot be listened on, e.g. in use), LOCKED (the directory is open
/// elsewhere), CORRUPT, NO_SPACE.
#[no_mangle]
pub extern "C" fn kahadb_node_start_master(node: *mut kahadb_node, epoch: u64) -> i32 {
    guard(|| {
        self::node(node)?.start_master(epoch)?;
        Ok(KAHADB_OK)
    })
}

/// Makes the node a slave of the master at `master_uri` (`kdbr://host:port`). A master steps
/// down first: its store closes (writes waiting for replicas fail, its store handles give
/// CLOSED). The link runs in the background and reconnects whenever it ends: this returns at
/// once; `kahadb_node_status_json` tells where it stands (`link`, `last_error`).
///
/// Errors: handle errors, NULL_ARGUMENT (`master_uri` NULL), INVALID_ARGUMENT (not UTF-8),
/// CONFIG (not `kdbr://host:port`, or the node's own address), IO.
///
/// # Safety
/// `master_uri` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_start_slave(
    node: *mut kahadb_node,
    master_uri: *const c_char,
) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        // SAFETY: NULL or NUL-terminated per the contract.
        let uri = unsafe { text(master_uri, "master_uri") }?;
        n.start_slave(uri)?;
        Ok(KAHADB_OK)
    })
}

/// Slave to master at `epoch` (see `kahadb_node_start_master`).
///
/// Errors: as `kahadb_node_start_master`, and ILLEGAL_STATE when the node is not a slave.
#[no_mangle]
pub extern "C" fn kahadb_node_promote(node: *mut kahadb_node, epoch: u64) -> i32 {
    guard(|| {
        self::node(node)?.promote(epoch)?;
        Ok(KAHADB_OK)
    })
}

/// Master to slave of `master_uri` (see `kahadb_node_start_slave`).
///
/// Errors: as `kahadb_node_start_slave`, and ILLEGAL_STATE when the node is not master.
///
/// # Safety
/// `master_uri` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_demote(
    node: *mut kahadb_node,
    master_uri: *const c_char,
) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        // SAFETY: NULL or NUL-terminated per the contract.
        let uri = unsafe { text(master_uri, "master_uri") }?;
        n.demote(uri)?;
        Ok(KAHADB_OK)
    })
}

/// Stops whatever the node does: a master's store closes (its store handles give CLOSED), a
/// slave's link ends. Stopping a stopped node does nothing.
///
/// Errors: handle errors.
#[no_mangle]
pub extern "C" fn kahadb_node_stop(node: *mut kahadb_node) -> i32 {
    guard(|| {
        self::node(node)?.stop();
        Ok(KAHADB_OK)
    })
}

/// The node's role, one of `KAHADB_ROLE_*`, in `*out_role`.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_role` NULL).
///
/// # Safety
/// `out_role` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_role(node: *mut kahadb_node, out_role: *mut i32) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        if out_role.is_null() {
            return Err(null("out_role"));
        }
        let role = role_value(n.role());
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_role.write(role) };
        Ok(KAHADB_OK)
    })
}

/// The highest epoch the node knows (its own as master, its master's as a slave), in
/// `*out_epoch`; 0 for a new node.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_epoch` NULL).
///
/// # Safety
/// `out_epoch` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_epoch(node: *mut kahadb_node, out_epoch: *mut u64) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        if out_epoch.is_null() {
            return Err(null("out_epoch"));
        }
        let epoch = n.epoch();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_epoch.write(epoch) };
        Ok(KAHADB_OK)
    })
}

/// The node's status as one JSON object, in a new buffer (`*out_data`, `*out_len`; free it
/// with `kahadb_buffer_free(*out_data, *out_len)`). The text is UTF-8 and NUL-terminated, so
/// it can be used as a C string; `*out_len` counts the NUL.
///
/// Members: `role` ("stopped", "master", "slave"), `node` ("host:port"), `epoch`, `master` (a
/// slave's master, a master's own address, else null), `position` (`{"file":F,"offset":O}`: a
/// master's written journal position, a slave's durable one), `minimum_replicas`,
/// `replication_timeout_ms`, `live_slaves`, `slaves` (a master's: objects with `node`, `state`
/// ("syncing", "live", "left"), `durable` (a position or null), `lag_bytes`, `bytes_to_go`,
/// `reason` (why its session ended, or null)), `link` (a slave's: "connecting", "syncing",
/// "live", else null), `bytes_to_go` (a syncing slave's), `applied` (a slave's hot standby
/// position, else null), `last_error` (a slave's: why its link last ended, or null).
///
/// Errors: handle errors, NULL_ARGUMENT (`out_data`/`out_len` NULL).
///
/// # Safety
/// `out_data` and `out_len` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_status_json(
    node: *mut kahadb_node,
    out_data: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        if out_data.is_null() || out_len.is_null() {
            return Err(null("out_data or out_len"));
        }
        let mut text = n.status().to_json().into_bytes();
        text.push(0);
        let (ptr, len) = into_c_buffer(text);
        // SAFETY: both pointers are non-NULL and writable per the contract.
        unsafe {
            out_data.write(ptr);
            out_len.write(len);
        }
        Ok(KAHADB_OK)
    })
}

/// Changes `minimum_replicas`. It takes effect at once, also for synchronous writes already
/// waiting, and is kept across role changes.
///
/// Errors: handle errors.
#[no_mangle]
pub extern "C" fn kahadb_node_set_minimum_replicas(
    node: *mut kahadb_node,
    minimum_replicas: u32,
) -> i32 {
    guard(|| {
        self::node(node)?.set_minimum_replicas(minimum_replicas as usize);
        Ok(KAHADB_OK)
    })
}

/// Changes how long synchronous writes wait for `minimum_replicas` slaves, in milliseconds.
/// Kept across role changes.
///
/// Errors: handle errors.
#[no_mangle]
pub extern "C" fn kahadb_node_set_replication_timeout(
    node: *mut kahadb_node,
    timeout_ms: u64,
) -> i32 {
    guard(|| {
        self::node(node)?.set_replication_timeout(Duration::from_millis(timeout_ms));
        Ok(KAHADB_OK)
    })
}

/// Waits up to `timeout_ms` milliseconds until the node is master with at least `count` live
/// slaves; `*out_ok` tells whether it is (false on timeout, or when the node is not master
/// then). Returns KAHADB_OK either way.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_ok` NULL).
///
/// # Safety
/// `out_ok` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_wait_live_slaves(
    node: *mut kahadb_node,
    count: u32,
    timeout_ms: u64,
    out_ok: *mut bool,
) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        if out_ok.is_null() {
            return Err(null("out_ok"));
        }
        let ok = n.wait_for_live_slaves(count as usize, Duration::from_millis(timeout_ms));
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_ok.write(ok) };
        Ok(KAHADB_OK)
    })
}

/// A new handle on the master's store, in `*out_store`: every `kahadb_store_*` call works on
/// it while the node stays master. The node owns the store: `kahadb_store_close` on this
/// handle only releases the handle (the store stays open for the node and other handles).
/// Once the node stops being master (`kahadb_node_demote`, `kahadb_node_stop`,
/// `kahadb_node_close`) calls on the handle give CLOSED, also after the node becomes master
/// again (ask for a new handle then); release it with `kahadb_store_close` all the same.
///
/// Errors: handle errors, NULL_ARGUMENT (`out_store` NULL), ILLEGAL_STATE (the node is not
/// master).
///
/// # Safety
/// `out_store` is NULL or points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn kahadb_node_store(
    node: *mut kahadb_node,
    out_store: *mut *mut kahadb_store,
) -> i32 {
    guard(|| {
        let n = self::node(node)?;
        if out_store.is_null() {
            return Err(null("out_store"));
        }
        let id = STORES.insert(StoreHandle::of_node(&n)?);
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_store.write(id as usize as *mut kahadb_store) };
        Ok(KAHADB_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_defaults_match_the_node() {
        assert_eq!(role_value(Role::Stopped), KAHADB_ROLE_STOPPED);
        assert_eq!(role_value(Role::Master), KAHADB_ROLE_MASTER);
        assert_eq!(role_value(Role::Slave), KAHADB_ROLE_SLAVE);
        let o = kahadb_node_options::default();
        assert!(o.directory.is_null() && o.uri.is_null() && o.cluster.is_null());
        assert_eq!(o.minimum_replicas, 0);
        assert_eq!(o.replication_timeout_ms, 10_000);
        assert_eq!(o.transfer_sessions, 4);
        assert!(!o.store.delete_all);
    }

    #[test]
    fn options_become_the_node_config() {
        let mut o = kahadb_node_options::default();
        // SAFETY: every string field is NULL or a static NUL-terminated string.
        let e = unsafe { node_config(&o) }.unwrap_err();
        assert_eq!(e.code(), ErrorCode::NullArgument);
        o.directory = c"some/dir".as_ptr();
        o.uri = c"kdbr://127.0.0.1:1".as_ptr();
        o.minimum_replicas = 2;
        o.replication_timeout_ms = 250;
        // SAFETY: as above.
        let c = unsafe { node_config(&o) }.unwrap();
        assert_eq!(c.cluster, DEFAULT_CLUSTER);
        assert_eq!(c.minimum_replicas, 2);
        assert_eq!(c.replication_timeout, Duration::from_millis(250));
        o.cluster = c"blue".as_ptr();
        o.directory = c"".as_ptr();
        // SAFETY: as above.
        let e = unsafe { node_config(&o) }.unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidArgument);
        o.directory = c"d".as_ptr();
        // SAFETY: as above.
        assert_eq!(unsafe { node_config(&o) }.unwrap().cluster, "blue");
    }
}

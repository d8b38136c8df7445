//! The C ABI of an elected node (`kahadb_elected_node_*`): a replication node whose role an
//! election decides ([`crate::election::driver`]), with a callback told what happens. Same
//! conventions as the parent module (result codes, last error, handles from
//! [`crate::handles::ELECTED`] cast to an opaque pointer, every body inside `guard`). The doc
//! comments below are the C-facing contract and end up in `include/kahadb.h`;
//! `src/jni/election.rs` mirrors them for Java.

use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

use super::node::{kahadb_node, kahadb_node_options, node_config, text};
use super::{guard, null, KAHADB_OK};
use crate::election::driver::{ElectionConfig, HostEvent};
use crate::election::ElectionDriver;
use crate::error::Result;
use crate::handles::{ElectedNode, ELECTED, NODES};

/// `kahadb_election_event.kind`: the node is master at `epoch`; its store is open
/// (`kahadb_node_store` on the handle of `kahadb_elected_node_node`).
pub const KAHADB_ELECTION_BECAME_MASTER: i32 = 1;
/// `kahadb_election_event.kind`: the node is a slave of `master_uri`, elected at `epoch`.
pub const KAHADB_ELECTION_BECAME_SLAVE: i32 = 2;
/// `kahadb_election_event.kind`: the node's status changed (role, epoch, master, the set of
/// slaves and their states, or the link state; not positions): `status_json` is the status,
/// as `kahadb_node_status_json` gives it.
pub const KAHADB_ELECTION_STATUS_CHANGED: i32 = 3;
/// `kahadb_election_event.kind`: the node holds no role any more (a master has stopped
/// serving): the ZooKeeper session was lost, the node could not take on the role it was
/// given, or the elected node is being closed; `reason` says which. An election that goes on
/// may later make the node master or slave again. The last event is always this one.
pub const KAHADB_ELECTION_STOPPED: i32 = 4;

/// A replication node driven by an election (opaque). Start it with
/// `kahadb_elected_node_start`, reach its node with `kahadb_elected_node_node`, close it with
/// `kahadb_elected_node_close`.
pub struct kahadb_elected_node {
    _opaque: [u8; 0],
}

/// Election options. Initialise with `kahadb_election_options_init`, then change what you
/// need. The strings are read during `kahadb_elected_node_start` only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kahadb_election_options {
    /// The ZooKeeper ensemble, `host:port[,host:port...]`; NULL (the default) for the static
    /// elector: a single node, no ZooKeeper, master at once at the epoch after the one it
    /// knows.
    pub zookeeper: *const c_char,
    /// The root of the cluster's znodes (see docs/ELECTION.md); NULL (the default) for
    /// `/kahadb-rs/<cluster>`.
    pub path: *const c_char,
    /// The ZooKeeper session timeout asked for, in milliseconds, at least 400 (default 10000).
    pub session_timeout_ms: u64,
}

impl Default for kahadb_election_options {
    fn default() -> Self {
        kahadb_election_options {
            zookeeper: std::ptr::null(),
            path: std::ptr::null(),
            session_timeout_ms: 10_000,
        }
    }
}

/// What the callback is told. The strings are valid during the call only (copy them to keep
/// them); those a kind does not use are NULL.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct kahadb_election_event {
    /// One of `KAHADB_ELECTION_*`.
    pub kind: i32,
    /// The epoch of the role taken (BECAME_MASTER, BECAME_SLAVE), the node's epoch
    /// (STATUS_CHANGED), the epoch of the last role told (STOPPED; 0 if none).
    pub epoch: u64,
    /// BECAME_SLAVE: the master's address, `kdbr://host:port`.
    pub master_uri: *const c_char,
    /// STOPPED: why.
    pub reason: *const c_char,
    /// STATUS_CHANGED: the status as one JSON object (see `kahadb_node_status_json`).
    pub status_json: *const c_char,
}

/// The callback of an elected node: called on a thread of the library's own (the dispatcher,
/// not a thread of the election or of replication), one event at a time and in order. It may
/// call any `kahadb_*` function, `kahadb_elected_node_close` of its own elected node
/// included (which then does not wait for the callback to return).
pub type kahadb_election_callback =
    Option<extern "C" fn(event: *const kahadb_election_event, user_data: *mut c_void)>;

/// Frees the `user_data` given to `kahadb_elected_node_start`.
pub type kahadb_free_user_data = Option<extern "C" fn(user_data: *mut c_void)>;

/// The caller's callback and data; dropping it frees the data (exactly once).
struct Callback {
    callback: kahadb_election_callback,
    user_data: *mut c_void,
    free_user_data: kahadb_free_user_data,
    /// The epoch of the last role told (for STOPPED).
    epoch: u64,
}

// SAFETY: the caller of `kahadb_elected_node_start` hands `user_data` to the library to be
// used from the dispatcher thread (the documented contract); the library never reads it.
unsafe impl Send for Callback {}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(free) = self.free_user_data {
            free(self.user_data);
        }
    }
}

fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

impl Callback {
    fn deliver(&mut self, event: HostEvent) {
        let Some(callback) = self.callback else {
            return;
        };
        let mut e = kahadb_election_event {
            kind: 0,
            epoch: 0,
            master_uri: std::ptr::null(),
            reason: std::ptr::null(),
            status_json: std::ptr::null(),
        };
        let text;
        match event {
            HostEvent::BecameMaster { epoch } => {
                self.epoch = epoch;
                e.kind = KAHADB_ELECTION_BECAME_MASTER;
                e.epoch = epoch;
            }
            HostEvent::BecameSlave { master, epoch } => {
                self.epoch = epoch;
                text = c_string(&master);
                e.kind = KAHADB_ELECTION_BECAME_SLAVE;
                e.epoch = epoch;
                e.master_uri = text.as_ptr();
            }
            HostEvent::StatusChanged(st) => {
                text = c_string(&st.to_json());
                e.kind = KAHADB_ELECTION_STATUS_CHANGED;
                e.epoch = st.epoch;
                e.status_json = text.as_ptr();
            }
            HostEvent::Stopped { reason } => {
                text = c_string(&reason);
                e.kind = KAHADB_ELECTION_STOPPED;
                e.epoch = self.epoch;
                e.reason = text.as_ptr();
            }
        }
        callback(&e, self.user_data);
    }
}

fn elected_id(e: *const kahadb_elected_node) -> u64 {
    e as usize as u64
}

/// # Safety
/// The string fields of `o` are NULL or NUL-terminated strings.
unsafe fn election_config(o: &kahadb_election_options) -> Result<ElectionConfig> {
    if o.zookeeper.is_null() {
        return Ok(ElectionConfig::Static);
    }
    // SAFETY: non-NULL and, per the contract, NUL-terminated.
    let connect = unsafe { text(o.zookeeper, "election_options.zookeeper") }?.to_owned();
    let root = if o.path.is_null() {
        None
    } else {
        // SAFETY: non-NULL and, per the contract, NUL-terminated.
        Some(unsafe { text(o.path, "election_options.path") }?.to_owned())
    };
    Ok(ElectionConfig::ZooKeeper {
        connect,
        root,
        session_timeout: Some(Duration::from_millis(o.session_timeout_ms)),
    })
}

/// Fills `options` with the defaults. Does nothing if `options` is NULL.
///
/// # Safety
/// `options` is NULL or points to writable memory for one `kahadb_election_options`.
#[no_mangle]
pub unsafe extern "C" fn kahadb_election_options_init(options: *mut kahadb_election_options) {
    if !options.is_null() {
        // SAFETY: the caller guarantees `options` points to writable memory for one struct.
        unsafe { options.write(kahadb_election_options::default()) };
    }
}

/// Opens the node of `node_options` (as `kahadb_node_open`) and starts the election of
/// `election_options` for it: the election makes it master, slave or neither, and `callback`
/// is told (see `kahadb_election_callback`, `KAHADB_ELECTION_*`). With the static elector the
/// node becomes master at once. On success stores the handle in `*out`; close it with
/// `kahadb_elected_node_close`.
///
/// `free_user_data` (may be NULL) is called with `user_data` exactly once: after the last
/// callback, when the elected node is closed, or before this returns if it fails (for any
/// reason, NULL arguments included).
///
/// Errors: NULL_ARGUMENT (`node_options`, `election_options`, `callback`, `out`, the node's
/// directory or uri NULL), INVALID_ARGUMENT (a string not UTF-8, an empty directory), CONFIG
/// (as `kahadb_node_open`; a ZooKeeper path not absolute or ending in '/', an empty ZooKeeper
/// address, a session timeout under 400 ms), CORRUPT, IO, LOCKED.
///
/// # Safety
/// `node_options` and `election_options` are NULL or point to initialised options whose
/// strings are NULL or NUL-terminated; `out` is NULL or points to writable memory for a
/// pointer; `user_data` may be used from another thread.
#[no_mangle]
pub unsafe extern "C" fn kahadb_elected_node_start(
    node_options: *const kahadb_node_options,
    election_options: *const kahadb_election_options,
    callback: kahadb_election_callback,
    user_data: *mut c_void,
    free_user_data: kahadb_free_user_data,
    out: *mut *mut kahadb_elected_node,
) -> i32 {
    // Owned from the start: any failure below drops it, which frees the user data.
    let cb = Callback {
        callback,
        user_data,
        free_user_data,
        epoch: 0,
    };
    guard(move || {
        crate::logging::init();
        if node_options.is_null() {
            return Err(null("node_options"));
        }
        if election_options.is_null() {
            return Err(null("election_options"));
        }
        if cb.callback.is_none() {
            return Err(null("callback"));
        }
        if out.is_null() {
            return Err(null("out"));
        }
        // SAFETY: non-NULL and, per the contract, initialised; read by copy.
        let (n, e) = unsafe { (node_options.read(), election_options.read()) };
        // SAFETY: the strings are NULL or NUL-terminated per the contract.
        let config = unsafe { node_config(&n) }?;
        // SAFETY: as above.
        let election = unsafe { election_config(&e) }?;
        let mut cb = cb;
        let driver = ElectionDriver::open(config, &election, Box::new(move |ev| cb.deliver(ev)))?;
        let id = ELECTED.insert(ElectedNode::new(driver));
        // SAFETY: `out` is non-NULL and writable per the contract.
        unsafe { out.write(id as usize as *mut kahadb_elected_node) };
        Ok(KAHADB_OK)
    })
}

/// A new node handle on the node the election drives, in `*out_node`: `kahadb_node_status_json`,
/// `kahadb_node_role`, `kahadb_node_epoch`, `kahadb_node_store` (while it is master), the
/// `set_*` and `wait_*` calls work on it; do not change its role yourself (start, promote,
/// demote, stop), the election does. `kahadb_node_close` on it only releases the handle (the
/// node goes on); after `kahadb_elected_node_close` it reports a stopped node until released.
///
/// Errors: NULL_ARGUMENT/INVALID_HANDLE/CLOSED (handle), NULL_ARGUMENT (`out_node` NULL).
///
/// # Safety
/// `out_node` is NULL or points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn kahadb_elected_node_node(
    elected: *mut kahadb_elected_node,
    out_node: *mut *mut kahadb_node,
) -> i32 {
    guard(|| {
        let e = ELECTED.get(elected_id(elected))?;
        if out_node.is_null() {
            return Err(null("out_node"));
        }
        let id = NODES.insert_borrowed(e.node().clone());
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out_node.write(id as usize as *mut kahadb_node) };
        Ok(KAHADB_OK)
    })
}

/// Stops the node (a master stops serving first) and leaves the election (a ZooKeeper
/// session ends, so another node is elected at once), then closes the handle: using it again
/// gives CLOSED, a second close included. The events left are delivered, the last one
/// STOPPED, and `free_user_data` is called, before this returns, unless the callback does not
/// return within 5 seconds: then this returns anyway, and the dispatcher thread delivers the
/// rest and calls `free_user_data` whenever the callback returns. Called from the callback,
/// it does not wait for the callback.
///
/// Errors: NULL_ARGUMENT/INVALID_HANDLE/CLOSED (handle).
#[no_mangle]
pub extern "C" fn kahadb_elected_node_close(elected: *mut kahadb_elected_node) -> i32 {
    guard(|| {
        ELECTED.remove(elected_id(elected))?.close();
        Ok(KAHADB_OK)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_static_elector() {
        let o = kahadb_election_options::default();
        assert!(o.zookeeper.is_null() && o.path.is_null());
        assert_eq!(o.session_timeout_ms, 10_000);
        // SAFETY: every string field is NULL or a static NUL-terminated string.
        assert_eq!(
            unsafe { election_config(&o) }.unwrap(),
            ElectionConfig::Static
        );
        let o = kahadb_election_options {
            zookeeper: c"127.0.0.1:2181".as_ptr(),
            path: c"/x".as_ptr(),
            session_timeout_ms: 4000,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { election_config(&o) }.unwrap(),
            ElectionConfig::ZooKeeper {
                connect: "127.0.0.1:2181".into(),
                root: Some("/x".into()),
                session_timeout: Some(Duration::from_millis(4000)),
            }
        );
    }
}

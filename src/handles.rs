//! Handle tables shared by the C ABI and the JNI bridge.
//!
//! A handle is an opaque 64-bit id, never a pointer to memory: the object behind it lives in a
//! table and is reached through an `Arc`. Ids are never reused and carry their type in the top
//! byte, so a closed handle reports `Closed`, a handle of another type or a made-up value reports
//! `InvalidHandle`, and neither can crash the process. A call in progress keeps its `Arc`, so
//! closing a handle while another thread uses it is safe.
//!
//! A store handle either owns its store or stands for the store of a replication node (see
//! [`StoreHandle`]); both bridges reach the store through [`StoreHandle::store`] and retire the
//! handle with [`StoreHandle::close`].
//!
//! Likewise a node handle either owns its node or stands for the node of an elected node
//! ([`ELECTED`]), which the election drives: [`NodeRegistry::remove`] hands back a
//! [`NodeRelease`] whose `stop` stops an owned node only, so closing a handle of the second kind
//! only releases it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use once_cell::sync::Lazy;

use crate::election::ElectionDriver;
use crate::error::{Error, ErrorCode, Result};
use crate::journal::{Cursor, Journal};
use crate::replication::node::Node;
use crate::store::Store;

const TAG_SHIFT: u32 = 56;
const SERIAL_MASK: u64 = (1 << TAG_SHIFT) - 1;

/// One table of handles of one type.
pub struct Registry<T> {
    tag: u64,
    what: &'static str,
    next: AtomicU64,
    map: RwLock<HashMap<u64, Arc<T>>>,
}

impl<T> Registry<T> {
    fn new(tag: u64, what: &'static str) -> Registry<T> {
        Registry {
            tag,
            what,
            next: AtomicU64::new(1),
            map: RwLock::new(HashMap::new()),
        }
    }

    /// Stores a value and returns its new handle (never 0).
    pub fn insert(&self, value: T) -> u64 {
        self.insert_arc(Arc::new(value))
    }

    /// Stores a shared value and returns its new handle (never 0).
    pub fn insert_arc(&self, value: Arc<T>) -> u64 {
        let serial = self.next.fetch_add(1, Ordering::Relaxed) & SERIAL_MASK;
        let id = (self.tag << TAG_SHIFT) | serial;
        self.write_map().insert(id, value);
        id
    }

    /// The value behind a handle.
    pub fn get(&self, id: u64) -> Result<Arc<T>> {
        self.check(id)?;
        let found = self.read_map().get(&id).cloned();
        found.ok_or_else(|| self.closed(id))
    }

    /// Removes a handle from the table; later calls with it report `Closed`.
    pub fn remove(&self, id: u64) -> Result<Arc<T>> {
        self.check(id)?;
        let removed = self.write_map().remove(&id);
        removed.ok_or_else(|| self.closed(id))
    }

    fn check(&self, id: u64) -> Result<()> {
        if id == 0 {
            return Err(Error::new(
                ErrorCode::NullArgument,
                format!("{} handle is null", self.what),
            ));
        }
        let serial = id & SERIAL_MASK;
        if id >> TAG_SHIFT != self.tag || serial >= self.next.load(Ordering::Relaxed) {
            return Err(Error::new(
                ErrorCode::InvalidHandle,
                format!("0x{id:x} is not a {} handle issued by kahadb", self.what),
            ));
        }
        Ok(())
    }

    fn closed(&self, id: u64) -> Error {
        Error::new(
            ErrorCode::Closed,
            format!("{} handle 0x{id:x} has been closed", self.what),
        )
    }

    // A panic while a table lock is held cannot leave the map inconsistent (every critical
    // section is a single insert, get or remove), so a poisoned lock is simply taken over.
    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, Arc<T>>> {
        self.map.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u64, Arc<T>>> {
        self.map.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Open journals.
pub static JOURNALS: Lazy<Registry<Journal>> = Lazy::new(|| Registry::new(0x4a, "journal"));
/// Open journal cursors (a cursor is used by one caller at a time, hence the mutex).
pub static CURSORS: Lazy<Registry<Mutex<Cursor>>> = Lazy::new(|| Registry::new(0x43, "cursor"));
/// Open stores: opened through a bridge, or handed out by a replication node.
pub static STORES: Lazy<Registry<StoreHandle>> = Lazy::new(|| Registry::new(0x53, "store"));
/// Open replication nodes: opened through a bridge, or handed out by an elected node.
pub static NODES: Lazy<NodeRegistry> = Lazy::new(|| NodeRegistry {
    nodes: Registry::new(0x4e, "node"),
    borrowed: Mutex::new(HashSet::new()),
});
/// Open elected nodes.
pub static ELECTED: Lazy<Registry<ElectedNode>> = Lazy::new(|| Registry::new(0x45, "elected node"));

/// The table of node handles: a [`Registry`] whose handles either own their node (closing the
/// handle stops it) or borrow the node of an elected node (closing the handle releases it).
pub struct NodeRegistry {
    nodes: Registry<Node>,
    /// The handles that borrow their node.
    borrowed: Mutex<HashSet<u64>>,
}

impl NodeRegistry {
    /// A handle that owns `node`.
    pub fn insert(&self, node: Node) -> u64 {
        self.nodes.insert(node)
    }

    /// A handle on a node someone else owns (an elected node's).
    pub fn insert_borrowed(&self, node: Arc<Node>) -> u64 {
        let mut borrowed = self.borrowed_set();
        let id = self.nodes.insert_arc(node);
        borrowed.insert(id);
        id
    }

    /// The node behind a handle.
    pub fn get(&self, id: u64) -> Result<Arc<Node>> {
        self.nodes.get(id)
    }

    /// Removes a handle from the table; `stop` on the result stops the node if the handle
    /// owned it.
    pub fn remove(&self, id: u64) -> Result<NodeRelease> {
        let node = self.nodes.remove(id)?;
        let owned = !self.borrowed_set().remove(&id);
        Ok(NodeRelease { node, owned })
    }

    fn borrowed_set(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.borrowed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A node handle just closed (see [`NodeRegistry::remove`]).
pub struct NodeRelease {
    node: Arc<Node>,
    owned: bool,
}

impl NodeRelease {
    /// Stops the node if the handle owned it; does nothing for an elected node's.
    pub fn stop(&self) {
        if self.owned {
            self.node.stop();
        }
    }
}

/// A replication node driven by an election (see [`ElectionDriver`]), as both bridges hold it.
pub struct ElectedNode {
    node: Arc<Node>,
    driver: Mutex<Option<ElectionDriver>>,
}

impl ElectedNode {
    pub fn new(driver: ElectionDriver) -> ElectedNode {
        ElectedNode {
            node: driver.node().clone(),
            driver: Mutex::new(Some(driver)),
        }
    }

    /// The node the election drives.
    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Called once the handle has left [`ELECTED`]: leaves the election and stops the node
    /// (see [`ElectionDriver::stop`]). Idempotent.
    pub fn close(&self) {
        let driver = self.driver.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(mut d) = driver {
            d.stop();
        }
    }
}

/// What a store handle stands for.
pub enum StoreHandle {
    /// A store the handle owns (opened through the C ABI or Java): closing the handle closes
    /// the store.
    Owned(Arc<Store>),
    /// The store of a replication node, handed out while the node was master. The node owns
    /// that store and closes it when it stops being master (a demote, a stop, its handle
    /// closed); from then on the handle reports `Closed`, even if the node becomes master
    /// again (with a new store: ask the node for a new handle). Closing the handle only
    /// releases it. Both references are weak: the handle keeps neither the node nor a closed
    /// store's index in memory.
    Node {
        node: Weak<Node>,
        store: Weak<Store>,
        /// The node's address, for messages.
        uri: String,
    },
}

impl StoreHandle {
    /// A handle for the store `node` has now (it must be master).
    pub fn of_node(node: &Arc<Node>) -> Result<StoreHandle> {
        let store = node.store()?;
        Ok(StoreHandle::Node {
            node: Arc::downgrade(node),
            store: Arc::downgrade(&store),
            uri: node.uri(),
        })
    }

    /// The store, as long as it is open: a node's store only while that node is master with
    /// the very store this handle was issued for. A call that got the store keeps it for its
    /// duration; if the node closes it meanwhile, the call fails as any call on a closing store
    /// does (writes with `Closed`).
    pub fn store(&self) -> Result<Arc<Store>> {
        match self {
            StoreHandle::Owned(s) => Ok(s.clone()),
            StoreHandle::Node { node, store, uri } => {
                let current = node.upgrade().and_then(|n| n.store().ok());
                match current {
                    Some(s) if std::ptr::eq(Arc::as_ptr(&s), store.as_ptr()) => Ok(s),
                    _ => Err(Error::new(
                        ErrorCode::Closed,
                        format!(
                            "the store of node {uri} has been closed: the node is no longer the master it was when this store handle was issued"
                        ),
                    )),
                }
            }
        }
    }

    /// Called once the handle has left [`STORES`]: closes an owned store (checkpoint, journal);
    /// leaves a node's store to the node.
    pub fn close(&self) -> Result<()> {
        match self {
            StoreHandle::Owned(s) => s.close(),
            StoreHandle::Node { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_report_null_invalid_and_closed() {
        let reg: Registry<u32> = Registry::new(7, "thing");
        let h = reg.insert(42);
        assert_eq!(*reg.get(h).unwrap(), 42);
        assert_eq!(reg.get(0).unwrap_err().code(), ErrorCode::NullArgument);
        assert_eq!(
            reg.get(h + 1000).unwrap_err().code(),
            ErrorCode::InvalidHandle
        );
        assert_eq!(reg.get(12345).unwrap_err().code(), ErrorCode::InvalidHandle);
        reg.remove(h).unwrap();
        assert_eq!(reg.get(h).unwrap_err().code(), ErrorCode::Closed);
        assert_eq!(reg.remove(h).unwrap_err().code(), ErrorCode::Closed);
        let other: Registry<u32> = Registry::new(8, "other");
        let h2 = other.insert(1);
        assert_eq!(reg.get(h2).unwrap_err().code(), ErrorCode::InvalidHandle);
    }

    #[test]
    fn a_node_store_handle_lives_as_long_as_that_master_role() {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = crate::replication::node::NodeConfig::new(
            dir.path(),
            format!("kdbr://127.0.0.1:{port}"),
        );
        let node = Arc::new(Node::new(config).unwrap());
        let code = |r: Result<Arc<Store>>| r.err().map(|e| e.code());
        assert_eq!(
            StoreHandle::of_node(&node).err().map(|e| e.code()),
            Some(ErrorCode::IllegalState)
        );
        node.start_master(1).unwrap();
        let h = StoreHandle::of_node(&node).unwrap();
        assert!(Arc::ptr_eq(&h.store().unwrap(), &node.store().unwrap()));
        h.close().unwrap();
        assert!(
            h.store().is_ok(),
            "closing the handle leaves the store open"
        );
        node.stop();
        assert_eq!(code(h.store()), Some(ErrorCode::Closed));
        node.start_master(1).unwrap();
        assert_eq!(
            code(h.store()),
            Some(ErrorCode::Closed),
            "a new master role has a new store"
        );
        let h2 = StoreHandle::of_node(&node).unwrap();
        assert!(h2.store().is_ok());
        drop(node);
        assert_eq!(code(h2.store()), Some(ErrorCode::Closed));
    }
}

//! Handle tables shared by the C ABI and the JNI bridge.
//!
//! A handle is an opaque 64-bit id, never a pointer to memory: the object behind it lives in a
//! table and is reached through an `Arc`. Ids are never reused and carry their type in the top
//! byte, so a closed handle reports `Closed`, a handle of another type or a made-up value reports
//! `InvalidHandle`, and neither can crash the process. A call in progress keeps its `Arc`, so
//! closing a handle while another thread uses it is safe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use once_cell::sync::Lazy;

use crate::error::{Error, ErrorCode, Result};
use crate::journal::{Cursor, Journal};

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
        let serial = self.next.fetch_add(1, Ordering::Relaxed) & SERIAL_MASK;
        let id = (self.tag << TAG_SHIFT) | serial;
        self.write_map().insert(id, Arc::new(value));
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
/// Open stores.
pub static STORES: Lazy<Registry<crate::store::Store>> = Lazy::new(|| Registry::new(0x53, "store"));

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
}

//! kahadb-rs: a KahaDB-compatible journal and message store with journal-level replication.
//!
//! Layers: the core (`journal`; the store, replication and election follow) knows nothing of C
//! or Java. The bridges (`ffi` for the C ABI, `jni` for Java) depend on the core, never the
//! reverse, and share the handle tables in `handles` and the error table in `error`.

pub mod election;
pub mod error;
pub mod handles;
pub mod journal;
pub mod logging;
pub mod replication;
pub mod store;

pub mod ffi;
mod jni;

pub use error::{Error, ErrorCode, Result};

/// The library version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Helpers shared by the tests, the benchmarks and the command-line tool. Not a stable API.
#[doc(hidden)]
pub mod testkit {
    /// Record `n` of a test run, `size` bytes (at least 8): its index, then a pattern derived
    /// from it, so that a reader can tell a right record from a wrong or damaged one.
    pub fn pattern_record(n: u64, size: usize) -> Vec<u8> {
        let size = size.max(8);
        let mut v = Vec::with_capacity(size);
        v.extend_from_slice(&n.to_be_bytes());
        while v.len() < size {
            v.push((n as u8).wrapping_mul(31).wrapping_add(v.len() as u8));
        }
        v
    }

    /// The index of a pattern record, if `data` is an intact one.
    pub fn check_pattern_record(data: &[u8]) -> Option<u64> {
        let n = u64::from_be_bytes(data.get(..8)?.try_into().ok()?);
        (pattern_record(n, data.len()) == data).then_some(n)
    }
}

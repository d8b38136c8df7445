//! kahadb-rs: a KahaDB-compatible journal and message store with journal-level replication.
//!
//! Layers: the core (`journal`; the store, replication and election follow) knows nothing of C
//! or Java. The bridges (`ffi` for the C ABI, `jni` for Java) depend on the core, never the
//! reverse, and share the handle tables in `handles` and the error table in `error`.

pub mod error;
pub mod handles;
pub mod journal;

pub mod ffi;
mod jni;

pub use error::{Error, ErrorCode, Result};

/// The library version (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

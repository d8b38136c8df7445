//! The message store: what KahaDB keeps in its journal on top of the raw records of
//! [`crate::journal`].
//!
//! Every user record that ActiveMQ's `MessageDatabase` appends to the journal is one
//! *journal command*: a single `KahaEntryType` byte followed by the command's protobuf message
//! (`journal-data.proto` of `activemq-kahadb-store`), framed with a varint length prefix.
//! [`codec`] reads and writes those records byte for byte as ActiveMQ Classic 6.3.1 does;
//! [`state`] is the index those records describe, rebuilt by replaying them with KahaDB's
//! semantics; [`checkpoint`] writes it to a file of its own; [`engine`] is the live store, and
//! [`gc`] deletes and compacts data files. (The broker adapter follows: `docs/STORE.md`.)

pub mod checkpoint;
pub mod codec;
pub mod engine;
pub mod gc;
pub mod ops;
pub mod packed;
pub mod state;

pub use engine::{FilesGuard, Store, StoreConfig, Writer};
pub use gc::GcReport;
pub use ops::{Added, PreparedTx, ReadMessage, ReadRequest, Removed, TxOutcome, TxRequest};

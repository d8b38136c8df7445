//! Journal-level replication over `kdbr://host:port` (`docs/PROTOCOL.md`). In progress: the
//! wire format (frames and their typed bodies) is here; the master and slave sessions, the live
//! stream, initial sync and `minimumReplicas` build on it.

pub mod frame;
pub mod live;
pub mod message;
pub mod net;
pub mod sync;

pub use frame::{Decoder, Frame, FrameError, FrameType, DEFAULT_MAX_FRAME};
pub use message::{FileInfo, FileRange, Message, Position, Purpose, PROTOCOL_VERSION};

//! Journal-level replication over `kdbr://host:port` (`docs/PROTOCOL.md`): the wire format
//! (`frame`, `message`), connections and handshakes (`net`), initial sync of sealed data files
//! over concurrent transfer sessions (`sync`), and the live stream with `minimumReplicas`
//! (`live`). In progress: hot-standby apply on the slave, the control API, GC pinning.

pub mod frame;
pub mod live;
pub mod message;
pub mod net;
pub mod node;
pub mod standby;
pub mod sync;

pub use frame::{Decoder, Frame, FrameError, FrameType, DEFAULT_MAX_FRAME};
pub use message::{FileInfo, FileRange, Message, Position, Purpose, PROTOCOL_VERSION};

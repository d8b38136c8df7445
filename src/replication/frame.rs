//! Replication frames (`docs/PROTOCOL.md`): the unit every `kdbr://` connection carries.
//!
//! ```text
//! frame   = u32 length | u8 type | u64 epoch | body | u32 crc
//!           length: bytes after the length field (type + epoch + body + crc), ≤ max_frame
//!           crc:    CRC-32 (IEEE, crc32fast) of type + epoch + body
//! ```
//!
//! All integers big-endian. The decoder is incremental ([`Decoder::push`] bytes as they arrive,
//! [`Decoder::next_frame`] until it returns `None`) and never trusts a length before checking
//! it against the limit, so a garbage or hostile peer costs at most one frame's worth of memory
//! and gets a [`FrameError`] that names what was wrong; the connection is then closed with that
//! reason. Nothing here panics on any input.

use std::fmt;

/// Frame header: length, type, epoch.
pub const HEADER_LEN: usize = 4 + 1 + 8;
/// CRC trailer.
pub const TRAILER_LEN: usize = 4;
/// Limit of a frame's length field once a connection is established: a journal batch holds at
/// least one whole record, so this bounds the largest record that can be replicated. The
/// decoder only grows its buffer as bytes actually arrive.
pub const DEFAULT_MAX_FRAME: u32 = 256 << 20;
/// Limit before the handshake completed: an unknown peer gets no more than this.
pub const HANDSHAKE_MAX_FRAME: u32 = 64 << 10;

/// The frame types of protocol version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameType {
    /// Connection opening, client → server: protocol version, cluster, node id, purpose.
    Hello = 1,
    /// Server → client: accepted (server's node id, epoch).
    Welcome = 2,
    /// Either way: refused or closing, with a reason; the sender closes after it.
    Reject = 3,
    /// Master → slave: journal bytes at a position (live stream).
    Batch = 4,
    /// Slave → master: durable position.
    Ack = 5,
    /// Slave → master: the data files it has (id, length, CRC of the bytes it has).
    Inventory = 6,
    /// Master → slave: what to fetch, truncate and delete, and where the live stream starts.
    SyncPlan = 7,
    /// Slave → master (transfer session): send this byte range.
    RangeRequest = 8,
    /// Master → slave (transfer session): a byte range with its CRC.
    Range = 9,
    /// Either way: liveness while nothing else flows.
    Heartbeat = 10,
    /// Master → slave (stream): data files its GC deleted; the slave deletes them too.
    Remove = 11,
}

impl FrameType {
    pub fn from_u8(v: u8) -> Option<FrameType> {
        use FrameType::*;
        Some(match v {
            1 => Hello,
            2 => Welcome,
            3 => Reject,
            4 => Batch,
            5 => Ack,
            6 => Inventory,
            7 => SyncPlan,
            8 => RangeRequest,
            9 => Range,
            10 => Heartbeat,
            11 => Remove,
            _ => return None,
        })
    }
}

/// A whole frame: its type, the sender's epoch and the body (decoded by [`super::message`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameType,
    pub epoch: u64,
    pub body: Vec<u8>,
}

/// Why bytes from a peer are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length field is below the minimum or above the limit.
    BadLength {
        length: u32,
        max: u32,
    },
    UnknownType(u8),
    /// The CRC does not match the bytes.
    Checksum {
        expected: u32,
        actual: u32,
    },
    /// The body does not parse as its type's fields.
    Malformed {
        kind: FrameType,
        why: String,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::BadLength { length, max } => write!(
                f,
                "frame length {length} is outside {}..={max}",
                HEADER_LEN - 4 + TRAILER_LEN
            ),
            FrameError::UnknownType(t) => write!(f, "unknown frame type {t}"),
            FrameError::Checksum { expected, actual } => write!(
                f,
                "frame checksum mismatch (frame says {expected:08x}, bytes give {actual:08x})"
            ),
            FrameError::Malformed { kind, why } => write!(f, "malformed {kind:?} frame: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Appends one encoded frame to `out`.
pub fn encode(kind: FrameType, epoch: u64, body: &[u8], out: &mut Vec<u8>) {
    let length = (1 + 8 + body.len() + TRAILER_LEN) as u32;
    out.reserve(4 + length as usize);
    out.extend_from_slice(&length.to_be_bytes());
    let start = out.len();
    out.push(kind as u8);
    out.extend_from_slice(&epoch.to_be_bytes());
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Incremental frame decoder over a byte stream.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
    max_frame: u32,
}

impl Decoder {
    pub fn new(max_frame: u32) -> Decoder {
        Decoder {
            buf: Vec::new(),
            start: 0,
            max_frame,
        }
    }

    /// Changes the frame length limit (raised once the peer is known).
    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// Adds bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > (1 << 20) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet part of a returned frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed, or the reason the stream
    /// is invalid (after which the decoder must not be used: the connection is closed).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let length = u32::from_be_bytes([avail[0], avail[1], avail[2], avail[3]]);
        let min = (1 + 8 + TRAILER_LEN) as u32;
        if length < min || length > self.max_frame {
            return Err(FrameError::BadLength {
                length,
                max: self.max_frame,
            });
        }
        // The type is checked as soon as it arrives, before waiting for a long body.
        if avail.len() >= 5 && FrameType::from_u8(avail[4]).is_none() {
            return Err(FrameError::UnknownType(avail[4]));
        }
        let total = 4 + length as usize;
        if avail.len() < total {
            return Ok(None);
        }
        let frame = &avail[4..total];
        let (content, crc) = frame.split_at(frame.len() - TRAILER_LEN);
        let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32fast::hash(content);
        if expected != actual {
            return Err(FrameError::Checksum { expected, actual });
        }
        let kind = FrameType::from_u8(content[0]).ok_or(FrameError::UnknownType(content[0]))?;
        let mut epoch = [0u8; 8];
        epoch.copy_from_slice(&content[1..9]);
        let out = Frame {
            kind,
            epoch: u64::from_be_bytes(epoch),
            body: content[9..].to_vec(),
        };
        self.start += total;
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_any_split() {
        let mut wire = Vec::new();
        encode(FrameType::Batch, 7, b"journal bytes", &mut wire);
        encode(FrameType::Heartbeat, 7, b"", &mut wire);
        for split in 0..=wire.len() {
            let mut d = Decoder::new(DEFAULT_MAX_FRAME);
            d.push(&wire[..split]);
            let mut got = Vec::new();
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            d.push(&wire[split..]);
            while let Some(f) = d.next_frame().unwrap() {
                got.push(f);
            }
            assert_eq!(got.len(), 2, "split at {split}");
            assert_eq!(got[0].body, b"journal bytes");
            assert_eq!(got[1].kind, FrameType::Heartbeat);
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn bad_frames_are_named() {
        let mut wire = Vec::new();
        encode(FrameType::Ack, 1, &[0; 8], &mut wire);
        let mut bad = wire.clone();
        bad[10] ^= 1;
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        d.push(&bad);
        assert!(matches!(d.next_frame(), Err(FrameError::Checksum { .. })));
        let mut d = Decoder::new(64);
        d.push(&[0, 0, 1, 0]);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::BadLength {
                length: 256,
                max: 64
            })
        ));
        let mut d = Decoder::new(64);
        d.push(&[0, 0, 0, 20, 99]);
        assert_eq!(d.next_frame(), Err(FrameError::UnknownType(99)));
        let mut d = Decoder::new(64);
        d.push(&[0, 0, 0, 2]);
        assert!(matches!(
            d.next_frame(),
            Err(FrameError::BadLength { length: 2, .. })
        ));
    }
}

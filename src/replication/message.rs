//! The bodies of the frames of protocol version 1 (`docs/PROTOCOL.md`), typed. Decoding checks
//! every length against what is left and refuses trailing bytes, so a frame that passed its CRC
//! but carries nonsense is still refused with a reason.

use super::frame::{encode, Frame, FrameError, FrameType};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

/// What a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The slave's control and live-stream connection.
    Stream = 0,
    /// One of the slave's initial-sync transfer sessions.
    Transfer = 1,
}

/// A data file as a slave reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileInfo {
    pub id: u32,
    /// Bytes the slave has (from the start of the file).
    pub length: u64,
    /// CRC-32 of those bytes.
    pub crc: u32,
}

/// A byte range of a data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileRange {
    pub file: u32,
    pub offset: u64,
    pub length: u64,
}

/// A journal position: data file and offset of the next byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub file: u32,
    pub offset: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Hello {
        version: u16,
        cluster: String,
        node: String,
        purpose: Purpose,
    },
    Welcome {
        version: u16,
        node: String,
    },
    Reject {
        reason: String,
    },
    /// Journal bytes that start at `at`.
    Batch {
        at: Position,
        data: Vec<u8>,
    },
    /// Everything before `durable` is on the slave's disk.
    Ack {
        durable: Position,
    },
    Inventory {
        files: Vec<FileInfo>,
    },
    SyncPlan {
        /// Files to cut to a length (a diverging tail), then to delete, then ranges to fetch.
        truncate: Vec<(u32, u64)>,
        delete: Vec<u32>,
        fetch: Vec<FileRange>,
        /// Where the live stream continues once every range is fetched.
        live_from: Position,
    },
    RangeRequest {
        range: FileRange,
    },
    Range {
        file: u32,
        offset: u64,
        crc: u32,
        data: Vec<u8>,
    },
    Heartbeat,
    /// The master's GC deleted these data files.
    Remove {
        files: Vec<u32>,
    },
}

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn pos(&mut self, p: Position) {
        self.u32(p.file);
        self.u32(p.offset);
    }
    fn range(&mut self, r: &FileRange) {
        self.u32(r.file);
        self.u64(r.offset);
        self.u64(r.length);
    }
}

struct In<'a> {
    data: &'a [u8],
    pos: usize,
    kind: FrameType,
}

impl<'a> In<'a> {
    fn bad(&self, why: impl Into<String>) -> FrameError {
        FrameError::Malformed {
            kind: self.kind,
            why: why.into(),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.data.len() - self.pos < n {
            return Err(self.bad(format!(
                "{n} bytes needed at byte {}, {} left",
                self.pos,
                self.data.len() - self.pos
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, FrameError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String, FrameError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.bad("a string is not valid UTF-8"))
    }
    /// A count of items of at least `min_size` bytes each, checked against what is left.
    fn count(&mut self, min_size: usize) -> Result<usize, FrameError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size) > self.data.len() - self.pos {
            return Err(self.bad(format!("{n} items cannot fit in the frame")));
        }
        Ok(n)
    }
    fn pos(&mut self) -> Result<Position, FrameError> {
        Ok(Position {
            file: self.u32()?,
            offset: self.u32()?,
        })
    }
    fn range(&mut self) -> Result<FileRange, FrameError> {
        Ok(FileRange {
            file: self.u32()?,
            offset: self.u64()?,
            length: self.u64()?,
        })
    }
    fn end(&self) -> Result<(), FrameError> {
        if self.pos != self.data.len() {
            return Err(self.bad(format!("{} bytes left over", self.data.len() - self.pos)));
        }
        Ok(())
    }
}

impl Message {
    pub fn kind(&self) -> FrameType {
        match self {
            Message::Hello { .. } => FrameType::Hello,
            Message::Welcome { .. } => FrameType::Welcome,
            Message::Reject { .. } => FrameType::Reject,
            Message::Batch { .. } => FrameType::Batch,
            Message::Ack { .. } => FrameType::Ack,
            Message::Inventory { .. } => FrameType::Inventory,
            Message::SyncPlan { .. } => FrameType::SyncPlan,
            Message::RangeRequest { .. } => FrameType::RangeRequest,
            Message::Range { .. } => FrameType::Range,
            Message::Heartbeat => FrameType::Heartbeat,
            Message::Remove { .. } => FrameType::Remove,
        }
    }

    /// The frame body.
    pub fn body(&self) -> Vec<u8> {
        let mut o = Out(Vec::new());
        match self {
            Message::Hello {
                version,
                cluster,
                node,
                purpose,
            } => {
                o.u16(*version);
                o.bytes(cluster.as_bytes());
                o.bytes(node.as_bytes());
                o.u8(*purpose as u8);
            }
            Message::Welcome { version, node } => {
                o.u16(*version);
                o.bytes(node.as_bytes());
            }
            Message::Reject { reason } => o.bytes(reason.as_bytes()),
            Message::Batch { at, data } => {
                o.pos(*at);
                o.bytes(data);
            }
            Message::Ack { durable } => o.pos(*durable),
            Message::Inventory { files } => {
                o.u32(files.len() as u32);
                for f in files {
                    o.u32(f.id);
                    o.u64(f.length);
                    o.u32(f.crc);
                }
            }
            Message::SyncPlan {
                truncate,
                delete,
                fetch,
                live_from,
            } => {
                o.u32(truncate.len() as u32);
                for (file, length) in truncate {
                    o.u32(*file);
                    o.u64(*length);
                }
                o.u32(delete.len() as u32);
                for file in delete {
                    o.u32(*file);
                }
                o.u32(fetch.len() as u32);
                for r in fetch {
                    o.range(r);
                }
                o.pos(*live_from);
            }
            Message::RangeRequest { range } => o.range(range),
            Message::Range {
                file,
                offset,
                crc,
                data,
            } => {
                o.u32(*file);
                o.u64(*offset);
                o.u32(*crc);
                o.bytes(data);
            }
            Message::Heartbeat => {}
            Message::Remove { files } => {
                o.u32(files.len() as u32);
                for f in files {
                    o.u32(*f);
                }
            }
        }
        o.0
    }

    /// Appends this message as a frame of `epoch` to `out`.
    pub fn encode(&self, epoch: u64, out: &mut Vec<u8>) {
        encode(self.kind(), epoch, &self.body(), out);
    }

    /// Decodes a frame's body.
    pub fn decode(frame: &Frame) -> Result<Message, FrameError> {
        let mut i = In {
            data: &frame.body,
            pos: 0,
            kind: frame.kind,
        };
        let m = match frame.kind {
            FrameType::Hello => {
                let version = i.u16()?;
                let cluster = i.string()?;
                let node = i.string()?;
                let purpose = match i.u8()? {
                    0 => Purpose::Stream,
                    1 => Purpose::Transfer,
                    p => return Err(i.bad(format!("unknown purpose {p}"))),
                };
                Message::Hello {
                    version,
                    cluster,
                    node,
                    purpose,
                }
            }
            FrameType::Welcome => Message::Welcome {
                version: i.u16()?,
                node: i.string()?,
            },
            FrameType::Reject => Message::Reject {
                reason: i.string()?,
            },
            FrameType::Batch => Message::Batch {
                at: i.pos()?,
                data: i.bytes()?.to_vec(),
            },
            FrameType::Ack => Message::Ack { durable: i.pos()? },
            FrameType::Inventory => {
                let n = i.count(16)?;
                let mut files = Vec::with_capacity(n);
                for _ in 0..n {
                    files.push(FileInfo {
                        id: i.u32()?,
                        length: i.u64()?,
                        crc: i.u32()?,
                    });
                }
                Message::Inventory { files }
            }
            FrameType::SyncPlan => {
                let n = i.count(12)?;
                let mut truncate = Vec::with_capacity(n);
                for _ in 0..n {
                    truncate.push((i.u32()?, i.u64()?));
                }
                let n = i.count(4)?;
                let mut delete = Vec::with_capacity(n);
                for _ in 0..n {
                    delete.push(i.u32()?);
                }
                let n = i.count(20)?;
                let mut fetch = Vec::with_capacity(n);
                for _ in 0..n {
                    fetch.push(i.range()?);
                }
                Message::SyncPlan {
                    truncate,
                    delete,
                    fetch,
                    live_from: i.pos()?,
                }
            }
            FrameType::RangeRequest => Message::RangeRequest { range: i.range()? },
            FrameType::Range => {
                let file = i.u32()?;
                let offset = i.u64()?;
                let crc = i.u32()?;
                let data = i.bytes()?.to_vec();
                if crc32fast::hash(&data) != crc {
                    return Err(i.bad("the range's bytes do not match its CRC"));
                }
                Message::Range {
                    file,
                    offset,
                    crc,
                    data,
                }
            }
            FrameType::Heartbeat => Message::Heartbeat,
            FrameType::Remove => {
                let n = i.count(4)?;
                let mut files = Vec::with_capacity(n);
                for _ in 0..n {
                    files.push(i.u32()?);
                }
                Message::Remove { files }
            }
        };
        i.end()?;
        Ok(m)
    }
}

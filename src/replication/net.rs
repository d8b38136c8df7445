//! Connections of the replication protocol: `kdbr://` addresses, framed message I/O over tokio
//! TCP streams, and the handshake of both sides (`docs/PROTOCOL.md` §3.1). A peer that sends
//! anything but valid frames of this protocol is answered with a Reject naming the reason (when
//! the connection still allows it) and disconnected; the node itself carries on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Error, ErrorCode, Result};

use super::frame::{Decoder, FrameError, DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME};
use super::message::{Message, Purpose, PROTOCOL_VERSION};

/// A parsed `kdbr://host:port` address. The host part is also the node's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdbrUri {
    pub host: String,
    pub port: u16,
}

impl KdbrUri {
    pub fn parse(uri: &str) -> Result<KdbrUri> {
        let bad = |why: &str| {
            Error::new(
                ErrorCode::Config,
                format!("{uri:?} is not a kdbr address ({why}); expected kdbr://host:port"),
            )
        };
        let rest = uri
            .strip_prefix("kdbr://")
            .ok_or_else(|| bad("no kdbr:// scheme"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, p) = v6.split_once("]:").ok_or_else(|| bad("bad IPv6 form"))?;
            (h, p)
        } else {
            rest.rsplit_once(':').ok_or_else(|| bad("no port"))?
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad("bad host"));
        }
        let port: u16 = port.parse().map_err(|_| bad("bad port"))?;
        Ok(KdbrUri {
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port`, as a socket address string.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for KdbrUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "kdbr://{}", self.authority())
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The peer closed the connection.
    Eof,
    /// The peer sent something that is not a valid frame or message.
    Frame(FrameError),
    /// The peer refused us.
    Rejected(String),
    /// A protocol rule was broken (wrong cluster, older epoch, unexpected message).
    Protocol(String),
    Io(String),
    Timeout(&'static str),
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Closed::Eof => write!(f, "the peer closed the connection"),
            Closed::Frame(e) => write!(f, "bad frame: {e}"),
            Closed::Rejected(r) => write!(f, "refused by the peer: {r}"),
            Closed::Protocol(r) => write!(f, "protocol error: {r}"),
            Closed::Io(e) => write!(f, "I/O error: {e}"),
            Closed::Timeout(what) => write!(f, "timed out waiting for {what}"),
        }
    }
}

/// A framed connection.
pub struct Conn {
    stream: TcpStream,
    decoder: Decoder,
    out: Vec<u8>,
    /// The epoch written in frames we send.
    pub epoch: u64,
    /// The highest epoch seen from the peer.
    pub peer_epoch: u64,
    /// On a master: the order in which the connection was accepted (a later connection of the
    /// same node supersedes an earlier one).
    pub accepted: u64,
}

impl Conn {
    pub fn new(stream: TcpStream, epoch: u64) -> Conn {
        let _ = stream.set_nodelay(true);
        Conn {
            stream,
            decoder: Decoder::new(HANDSHAKE_MAX_FRAME),
            out: Vec::new(),
            epoch,
            peer_epoch: 0,
            accepted: 0,
        }
    }

    pub fn peer(&self) -> Option<SocketAddr> {
        self.stream.peer_addr().ok()
    }

    pub async fn send(&mut self, m: &Message) -> std::result::Result<(), Closed> {
        self.out.clear();
        m.encode(self.epoch, &mut self.out);
        self.stream
            .write_all(&self.out)
            .await
            .map_err(|e| Closed::Io(e.to_string()))
    }

    /// The next message, refusing frames from an epoch older than one already seen.
    pub async fn recv(&mut self) -> std::result::Result<Message, Closed> {
        recv_from(&mut self.stream, &mut self.decoder, &mut self.peer_epoch).await
    }

    /// A message that has already arrived (buffered, or readable without waiting), if any.
    pub fn recv_ready(&mut self) -> std::result::Result<Option<Message>, Closed> {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => {
                    if frame.epoch < self.peer_epoch {
                        return Err(Closed::Protocol(format!(
                            "a frame of epoch {} after epoch {}",
                            frame.epoch, self.peer_epoch
                        )));
                    }
                    self.peer_epoch = frame.epoch;
                    return Message::decode(&frame).map(Some).map_err(Closed::Frame);
                }
                Ok(None) => {}
                Err(e) => return Err(Closed::Frame(e)),
            }
            match self.stream.try_read(&mut buf) {
                Ok(0) => return Err(Closed::Eof),
                Ok(n) => self.decoder.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(Closed::Io(e.to_string())),
            }
        }
    }

    /// Splits the connection so that one task can read while another writes.
    pub fn into_split(self) -> (ConnReader, ConnWriter) {
        let (read, write) = self.stream.into_split();
        (
            ConnReader {
                read,
                decoder: self.decoder,
                peer_epoch: self.peer_epoch,
            },
            ConnWriter {
                write,
                out: self.out,
            },
        )
    }

    pub async fn recv_within(
        &mut self,
        t: Duration,
        what: &'static str,
    ) -> std::result::Result<Message, Closed> {
        tokio::time::timeout(t, self.recv())
            .await
            .map_err(|_| Closed::Timeout(what))?
    }

    /// Sends a Reject with `reason` (best effort) and closes.
    pub async fn reject(mut self, reason: &str) {
        let _ = self
            .send(&Message::Reject {
                reason: reason.to_owned(),
            })
            .await;
        let _ = self.stream.shutdown().await;
    }
}

async fn recv_from<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
    decoder: &mut Decoder,
    peer_epoch: &mut u64,
) -> std::result::Result<Message, Closed> {
    let mut buf = [0u8; 64 * 1024];
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => {
                if frame.epoch < *peer_epoch {
                    return Err(Closed::Protocol(format!(
                        "a frame of epoch {} after epoch {}",
                        frame.epoch, *peer_epoch
                    )));
                }
                *peer_epoch = frame.epoch;
                return Message::decode(&frame).map_err(Closed::Frame);
            }
            Ok(None) => {}
            Err(e) => return Err(Closed::Frame(e)),
        }
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| Closed::Io(e.to_string()))?;
        if n == 0 {
            return Err(Closed::Eof);
        }
        decoder.push(&buf[..n]);
    }
}

/// The reading half of a split connection.
pub struct ConnReader {
    read: tokio::net::tcp::OwnedReadHalf,
    decoder: Decoder,
    pub peer_epoch: u64,
}

impl ConnReader {
    pub async fn recv(&mut self) -> std::result::Result<Message, Closed> {
        recv_from(&mut self.read, &mut self.decoder, &mut self.peer_epoch).await
    }
}

/// The writing half of a split connection.
pub struct ConnWriter {
    write: tokio::net::tcp::OwnedWriteHalf,
    out: Vec<u8>,
}

impl ConnWriter {
    pub async fn send(&mut self, epoch: u64, m: &Message) -> std::result::Result<(), Closed> {
        self.out.clear();
        m.encode(epoch, &mut self.out);
        self.write
            .write_all(&self.out)
            .await
            .map_err(|e| Closed::Io(e.to_string()))
    }
}

/// Who this node is, for handshakes.
#[derive(Debug, Clone)]
pub struct Identity {
    pub cluster: String,
    pub node: String,
    /// The cluster epoch as this node knows it (grows only).
    pub epoch: Arc<AtomicU64>,
}

/// How long a peer has to send its first frame.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The master's side of a handshake: reads Hello, checks version, cluster and epoch, answers
/// Welcome (returning the slave's node id and purpose) or Reject and an error.
pub async fn accept_handshake(
    mut conn: Conn,
    me: &Identity,
) -> std::result::Result<(Conn, String, Purpose), Closed> {
    let hello = match conn.recv_within(HANDSHAKE_TIMEOUT, "Hello").await {
        Ok(m) => m,
        Err(Closed::Frame(e)) => {
            let reason = format!("bad frame: {e}");
            conn.reject(&reason).await;
            return Err(Closed::Frame(e));
        }
        Err(e) => return Err(e),
    };
    let epoch = me.epoch.load(Ordering::SeqCst);
    let refuse = |reason: String| Closed::Protocol(reason);
    match hello {
        Message::Hello {
            version,
            cluster,
            node,
            purpose,
        } => {
            let problem = if version != PROTOCOL_VERSION {
                Some(format!(
                    "protocol version {version} is not supported (this node speaks {PROTOCOL_VERSION})"
                ))
            } else if cluster != me.cluster {
                Some(format!(
                    "cluster {cluster:?} is not this node's cluster {:?}",
                    me.cluster
                ))
            } else if conn.peer_epoch > epoch {
                Some(format!(
                    "the peer knows epoch {}, newer than this node's {epoch}: this node is not master",
                    conn.peer_epoch
                ))
            } else {
                None
            };
            if let Some(reason) = problem {
                conn.reject(&reason).await;
                return Err(refuse(reason));
            }
            conn.epoch = epoch;
            conn.decoder.set_max_frame(DEFAULT_MAX_FRAME);
            conn.send(&Message::Welcome {
                version: PROTOCOL_VERSION,
                node: me.node.clone(),
            })
            .await?;
            Ok((conn, node, purpose))
        }
        other => {
            let reason = format!("expected Hello, got {:?}", other.kind());
            conn.reject(&reason).await;
            Err(refuse(reason))
        }
    }
}

/// The slave's side: connects, sends Hello, waits for Welcome. Returns the connection and the
/// master's node id; the master's epoch is in `conn.peer_epoch`.
pub async fn connect(
    master: &KdbrUri,
    me: &Identity,
    purpose: Purpose,
) -> std::result::Result<(Conn, String), Closed> {
    let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(master.authority()))
        .await
        .map_err(|_| Closed::Timeout("the connection"))?
        .map_err(|e| Closed::Io(format!("connecting to {master}: {e}")))?;
    let known = me.epoch.load(Ordering::SeqCst);
    let mut conn = Conn::new(stream, known);
    conn.send(&Message::Hello {
        version: PROTOCOL_VERSION,
        cluster: me.cluster.clone(),
        node: me.node.clone(),
        purpose,
    })
    .await?;
    match conn.recv_within(HANDSHAKE_TIMEOUT, "Welcome").await? {
        Message::Welcome { version, node } if version == PROTOCOL_VERSION => {
            if conn.peer_epoch < known {
                return Err(Closed::Protocol(format!(
                    "{master} is at epoch {}, older than epoch {known} this node knows: it is no longer master",
                    conn.peer_epoch
                )));
            }
            me.epoch.fetch_max(conn.peer_epoch, Ordering::SeqCst);
            conn.epoch = conn.peer_epoch;
            conn.decoder.set_max_frame(DEFAULT_MAX_FRAME);
            Ok((conn, node))
        }
        Message::Welcome { version, .. } => Err(Closed::Protocol(format!(
            "the master speaks protocol version {version}"
        ))),
        Message::Reject { reason } => Err(Closed::Rejected(reason)),
        other => Err(Closed::Protocol(format!(
            "expected Welcome, got {:?}",
            other.kind()
        ))),
    }
}

/// A listening master: accepts connections, runs the handshake on each, and hands accepted
/// sessions to `on_session`. Bad peers are logged and dropped; the loop never ends on their
/// account. The sessions belong to this future: dropping or aborting it ends every one.
pub async fn serve<F, Fut>(listener: TcpListener, me: Identity, on_session: F)
where
    F: Fn(Conn, String, Purpose) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_session = Arc::new(on_session);
    let mut accepted = 0u64;
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("replication: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            // Reap finished sessions so the set does not grow.
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
        };
        let me = me.clone();
        let on_session = on_session.clone();
        accepted += 1;
        let order = accepted;
        sessions.spawn(async move {
            let mut conn = Conn::new(stream, me.epoch.load(Ordering::SeqCst));
            conn.accepted = order;
            match accept_handshake(conn, &me).await {
                Ok((conn, node, purpose)) => on_session(conn, node, purpose).await,
                Err(reason) => {
                    log::warn!("replication: connection from {addr} closed: {reason}");
                }
            }
        });
    }
}

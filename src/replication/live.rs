//! The live stream (`docs/PROTOCOL.md` §3.4): every batch the master's journal writes goes to
//! each attached slave, which writes it at the same position, fdatasyncs, and acks; the master
//! keeps each slave's durable position.
//!
//! Attaching: the slave says where it stands (an Ack of the position where its bulk copy
//! ended); the master subscribes the session to its journal's batches first, then sends what
//! lies between that position and the journal's written position from the files, then the
//! subscribed batches from there on, so the slave gets every byte once, in order.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::error::{Error, ErrorCode, Result};
use crate::journal::format::EOF_RECORD;
use crate::journal::{files, Journal};

use super::message::{Message, Position};
use super::net::{Closed, Conn};

/// Bytes per catch-up frame read from the master's files.
const CATCH_UP_CHUNK: u32 = 1 << 20;

type Item = (Position, Arc<[u8]>);

/// A master's handler of one accepted connection: transfer sessions get ranges; a stream
/// session gets its plan and, once the plan asks for nothing more (the slave has every sealed
/// file), the live stream.
pub async fn serve_master(
    mut conn: Conn,
    node: String,
    purpose: super::message::Purpose,
    dir: PathBuf,
    feed: Arc<Feed>,
    slaves: Arc<Slaves>,
) -> Closed {
    use super::message::Purpose;
    if purpose == Purpose::Transfer {
        return super::sync::serve_session(conn, dir, purpose).await;
    }
    let files = match conn.recv().await {
        Ok(Message::Inventory { files }) => files,
        Ok(other) => {
            let reason = format!("expected an inventory, got {:?}", other.kind());
            conn.reject(&reason).await;
            return Closed::Protocol(reason);
        }
        Err(c) => return c,
    };
    let d = dir.clone();
    let plan = match tokio::task::spawn_blocking(move || super::sync::plan(&d, &files)).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Closed::Io(e.to_string()),
        Err(e) => return Closed::Io(e.to_string()),
    };
    let live = matches!(&plan, Message::SyncPlan { fetch, .. } if fetch.is_empty());
    if let Err(c) = conn.send(&plan).await {
        return c;
    }
    if !live {
        // The slave copies what it lacks over transfer sessions, then comes back.
        return match conn.recv().await {
            Err(c) => c,
            Ok(m) => Closed::Protocol(format!("unexpected {:?} after a sync plan", m.kind())),
        };
    }
    serve_stream(conn, node, dir, feed, slaves).await
}

/// A slave's whole life with a master: initial sync (repeated until the master's plan asks for
/// nothing more: it may rotate meanwhile), then the live stream. Returns why it ended.
pub async fn run_slave(
    master: &super::net::KdbrUri,
    me: &super::net::Identity,
    dir: &Path,
    sessions: usize,
    config: &crate::journal::JournalConfig,
) -> Closed {
    use super::message::Purpose;
    loop {
        if let Err(e) =
            super::sync::initial_sync(master, me, dir, sessions, super::sync::DEFAULT_CHUNK).await
        {
            return Closed::Io(e.to_string());
        }
        let (mut conn, _) = match super::net::connect(master, me, Purpose::Stream).await {
            Ok(v) => v,
            Err(c) => return c,
        };
        let d = dir.to_path_buf();
        let inv = match tokio::task::spawn_blocking(move || super::sync::inventory(&d)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Closed::Io(e.to_string()),
            Err(e) => return Closed::Io(e.to_string()),
        };
        if let Err(c) = conn.send(&Message::Inventory { files: inv }).await {
            return c;
        }
        match conn.recv().await {
            Ok(Message::SyncPlan {
                fetch,
                truncate,
                delete,
                live_from,
            }) if fetch.is_empty() => {
                let d = dir.to_path_buf();
                let cut = tokio::task::spawn_blocking(move || {
                    super::sync::apply_cuts(&d, &truncate, &delete)
                })
                .await;
                match cut {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Closed::Io(e.to_string()),
                    Err(e) => return Closed::Io(e.to_string()),
                }
                return follow(conn, ReplicaWriter::new(dir, config), live_from).await;
            }
            Ok(Message::SyncPlan { .. }) => continue,
            Ok(Message::Reject { reason }) => return Closed::Rejected(reason),
            Ok(other) => {
                return Closed::Protocol(format!("expected a sync plan, got {:?}", other.kind()))
            }
            Err(c) => return c,
        }
    }
}

/// How long one frame may take to be handed to a slave's connection before the session is
/// given up (a slave that stopped reading).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How far (in queued bytes) a slave may fall behind the live stream before its session is
/// dropped; it then catches up from the files when it reconnects.
pub const MAX_QUEUED: u64 = 64 << 20;

struct Subscriber {
    tx: mpsc::UnboundedSender<Item>,
    queued: Arc<AtomicU64>,
}

/// The master's fan-out of journal batches to stream sessions.
pub struct Feed {
    inner: Mutex<FeedInner>,
}

struct FeedInner {
    subscribers: Vec<Subscriber>,
    /// The end of the last batch published (every byte before it is in the files).
    last_end: Position,
}

impl Feed {
    /// Installs a feed as the journal's batch tap.
    pub fn install(journal: &Journal) -> Arc<Feed> {
        let w = journal.written_position();
        let feed = Arc::new(Feed {
            inner: Mutex::new(FeedInner {
                subscribers: Vec::new(),
                last_end: Position {
                    file: w.file_id,
                    offset: w.offset,
                },
            }),
        });
        let f = feed.clone();
        journal.set_batch_tap(Some(Arc::new(move |file, offset, bytes: &[u8]| {
            f.publish(Position { file, offset }, bytes);
        })));
        feed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, at: Position, bytes: &[u8]) {
        let mut f = self.lock();
        let end = Position {
            file: at.file,
            offset: at.offset + bytes.len() as u32,
        };
        // Padding of an old hole is published after later batches: the end only grows.
        if end > f.last_end {
            f.last_end = end;
        }
        if f.subscribers.is_empty() {
            return;
        }
        let data: Arc<[u8]> = Arc::from(bytes);
        let n = bytes.len() as u64;
        f.subscribers.retain(|s| {
            if s.queued.load(Ordering::Relaxed) + n > MAX_QUEUED {
                // Too far behind: dropping the sender ends that session with a reason.
                return false;
            }
            s.queued.fetch_add(n, Ordering::Relaxed);
            s.tx.send((at, data.clone())).is_ok()
        });
    }

    /// Stream sessions currently subscribed.
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }

    /// A new subscription, and the position from which it sees every batch (everything before
    /// it is in the files): taken under the same lock as publishing, so nothing falls between.
    fn subscribe(&self) -> (mpsc::UnboundedReceiver<Item>, Arc<AtomicU64>, Position) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicU64::new(0));
        let mut f = self.lock();
        f.subscribers.push(Subscriber {
            tx,
            queued: queued.clone(),
        });
        (rx, queued, f.last_end)
    }
}

/// What the master knows about its slaves: the durable position each live slave acked, and
/// the `minimumReplicas` rule synchronous writes wait on.
pub struct Slaves {
    /// Live slave → (its session, its durable position).
    durable: Mutex<HashMap<String, (u64, Position)>>,
    sessions: AtomicU64,
    changed: tokio::sync::Notify,
    cv: std::sync::Condvar,
    min: AtomicUsize,
    timeout_ms: AtomicU64,
}

impl Default for Slaves {
    fn default() -> Self {
        Slaves::new(0, DEFAULT_REPLICATION_TIMEOUT)
    }
}

/// How long a synchronous write waits for `minimumReplicas` slaves by default.
pub const DEFAULT_REPLICATION_TIMEOUT: Duration = Duration::from_secs(10);

impl Slaves {
    pub fn new(minimum_replicas: usize, timeout: Duration) -> Slaves {
        Slaves {
            durable: Mutex::new(HashMap::new()),
            sessions: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
            cv: std::sync::Condvar::new(),
            min: AtomicUsize::new(minimum_replicas),
            timeout_ms: AtomicU64::new(timeout.as_millis() as u64),
        }
    }

    /// Changes `minimumReplicas` (0: synchronous writes never wait for slaves).
    pub fn set_minimum_replicas(&self, n: usize) {
        self.min.store(n, Ordering::SeqCst);
        self.notify();
    }

    pub fn minimum_replicas(&self) -> usize {
        self.min.load(Ordering::SeqCst)
    }

    /// Changes how long a synchronous write waits for enough slaves.
    pub fn set_timeout(&self, t: Duration) {
        self.timeout_ms
            .store(t.as_millis() as u64, Ordering::SeqCst);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Position)>> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn durable(&self, node: &str) -> Option<Position> {
        self.map().get(node).map(|(_, p)| *p)
    }

    /// Live slaves and their durable positions.
    pub fn status(&self) -> Vec<(String, Position)> {
        let mut v: Vec<_> = self
            .map()
            .iter()
            .map(|(k, (_, p))| (k.clone(), *p))
            .collect();
        v.sort();
        v
    }

    /// Waits until `node` has acked at least `pos`.
    pub async fn wait_for(&self, node: &str, pos: Position) {
        loop {
            let notified = self.changed.notified();
            if self.durable(node).is_some_and(|d| d >= pos) {
                return;
            }
            notified.await;
        }
    }

    /// Blocks until `minimumReplicas` live slaves hold everything before `end`, or fails with
    /// `REPLICATION_TIMEOUT` after the timeout.
    pub fn wait_replicated(&self, end: Position) -> Result<()> {
        let timeout = Duration::from_millis(self.timeout_ms.load(Ordering::SeqCst));
        let deadline = std::time::Instant::now() + timeout;
        let mut map = self.map();
        loop {
            let min = self.min.load(Ordering::SeqCst);
            let have = map.values().filter(|(_, p)| *p >= end).count();
            if have >= min {
                return Ok(());
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(Error::new(
                    ErrorCode::ReplicationTimeout,
                    format!(
                        "the write ending at {}:{} is on this node's disk, but only {have} of the {min} slaves required (minimumReplicas) hold it after {} ms ({} slaves attached)",
                        end.file,
                        end.offset,
                        timeout.as_millis(),
                        map.len()
                    ),
                ));
            }
            map = self
                .cv
                .wait_timeout(map, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A session of `node` at `pos`; `session` orders the node's connections (accept order): a
    /// later one replaces an earlier one, an earlier one arriving late is ignored.
    fn register(&self, node: &str, session: u64, pos: Position) {
        let mut map = self.map();
        let newer = map.get(node).is_none_or(|e| e.0 < session);
        if newer {
            map.insert(node.to_owned(), (session, pos));
        }
        drop(map);
        self.notify();
    }

    /// Records an ack of `session` (ignored once a newer session of the node took over).
    fn set(&self, node: &str, session: u64, pos: Position) {
        let mut map = self.map();
        if let Some(e) = map.get_mut(node) {
            if e.0 == session && pos > e.1 {
                e.1 = pos;
            }
        }
        drop(map);
        self.notify();
    }

    /// Forgets `node` if `session` is still its current one.
    fn remove(&self, node: &str, session: u64) {
        let mut map = self.map();
        if map.get(node).is_some_and(|e| e.0 == session) {
            map.remove(node);
        }
        drop(map);
        self.notify();
    }

    fn notify(&self) {
        // Taking the lock orders the wake-up after any waiter's check.
        drop(self.map());
        self.cv.notify_all();
        self.changed.notify_waiters();
    }
}

impl crate::store::engine::Replicated for Slaves {
    fn wait_replicated(&self, file: u32, end: u32) -> Result<()> {
        Slaves::wait_replicated(self, Position { file, offset: end })
    }
}

/// Runs a master's stream session once the slave is ready: expects an Ack of the position it
/// stands at, catches it up from the files, then streams batches and records its acks until
/// the connection ends (the reason is returned).
pub async fn serve_stream(
    conn: Conn,
    node: String,
    dir: PathBuf,
    feed: Arc<Feed>,
    slaves: Arc<Slaves>,
) -> Closed {
    let mut conn = conn;
    let start = match conn.recv().await {
        Ok(Message::Ack { durable }) => durable,
        Ok(other) => {
            return Closed::Protocol(format!(
                "expected the slave's position, got {:?}",
                other.kind()
            ))
        }
        Err(c) => return c,
    };
    // Subscribe, learning atomically up to where the files already hold every byte.
    let (mut rx, queued, upto) = feed.subscribe();
    if start > upto {
        return Closed::Protocol(format!(
            "the slave stands at {}:{}, beyond this master's journal ({}:{})",
            start.file, start.offset, upto.file, upto.offset
        ));
    }
    // Connections accepted by our own loop are numbered; others get a number of their own.
    let session = if conn.accepted > 0 {
        conn.accepted
    } else {
        slaves.sessions.fetch_add(1, Ordering::SeqCst) + (1 << 48)
    };
    slaves.register(&node, session, start);
    // What has been sent: acks beyond it are refused.
    let sent_to = Arc::new(AtomicU64::new(pack(start)));
    let epoch = conn.epoch;
    let (mut reader, mut writer) = conn.into_split();
    let acks = {
        let (slaves, node, sent_to) = (slaves.clone(), node.clone(), sent_to.clone());
        tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Message::Ack { durable }) => {
                        if pack(durable) > sent_to.load(Ordering::SeqCst) {
                            return Closed::Protocol(format!(
                                "the slave acked {}:{}, beyond what was sent",
                                durable.file, durable.offset
                            ));
                        }
                        // Catch-up slices do not end at batch boundaries: the slave counts
                        // from the end of the catch-up on, where every frame is a whole batch.
                        if durable >= upto {
                            slaves.set(&node, session, durable);
                        }
                    }
                    Ok(Message::Heartbeat) => {}
                    Ok(other) => {
                        return Closed::Protocol(format!(
                            "unexpected {:?} from a slave",
                            other.kind()
                        ))
                    }
                    Err(c) => return c,
                }
            }
        })
    };
    let sent = async {
        // Catch up from the files, in chunks.
        let mut at = start;
        while at < upto {
            let end = if at.file < upto.file {
                let path = files::data_file_path(&dir, at.file);
                match std::fs::metadata(&path) {
                    Ok(m) => m.len().min(u64::from(u32::MAX)) as u32,
                    Err(e) => {
                        return Closed::Io(format!(
                            "{} is needed by a slave catching up: {e}",
                            path.display()
                        ))
                    }
                }
            } else {
                upto.offset
            };
            if at.offset >= end {
                at = Position {
                    file: at.file + 1,
                    offset: 0,
                };
                continue;
            }
            let n = (end - at.offset).min(CATCH_UP_CHUNK);
            let path = files::data_file_path(&dir, at.file);
            let off = at.offset;
            let data = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let f = File::open(&path)?;
                let mut v = vec![0u8; n as usize];
                f.read_exact_at(&mut v, u64::from(off))?;
                Ok(v)
            })
            .await;
            let data = match data {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Closed::Io(e.to_string()),
                Err(e) => return Closed::Io(e.to_string()),
            };
            let next = Position {
                file: at.file,
                offset: at.offset + n,
            };
            sent_to.fetch_max(pack(next), Ordering::SeqCst);
            if let Err(c) = writer.send(epoch, &Message::Batch { at, data }).await {
                return c;
            }
            at = next;
        }
        // Then every batch published since the subscription (a batch the catch-up already
        // read, such as the padding of an old hole, is sent again: a positioned write of the
        // same bytes is harmless).
        while let Some((pos, bytes)) = rx.recv().await {
            queued.fetch_sub(bytes.len() as u64, Ordering::Relaxed);
            let end = Position {
                file: pos.file,
                offset: pos.offset + bytes.len() as u32,
            };
            sent_to.fetch_max(pack(end), Ordering::SeqCst);
            let frame = Message::Batch {
                at: pos,
                data: bytes.to_vec(),
            };
            match tokio::time::timeout(SEND_TIMEOUT, writer.send(epoch, &frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(c)) => return c,
                Err(_) => return Closed::Timeout("the slave to take the next batch"),
            }
        }
        Closed::Protocol(format!(
            "the live stream to this slave ended (it fell more than {} MiB behind, or the journal closed); a slave catches up from the files when it reconnects",
            MAX_QUEUED >> 20
        ))
    };
    let mut acks = acks;
    let why = tokio::select! {
        c = sent => { acks.abort(); let _ = (&mut acks).await; c }
        r = &mut acks => r.unwrap_or_else(|e| Closed::Io(e.to_string())),
    };
    // A slave that is gone no longer counts toward minimumReplicas (unless a newer session of
    // the same node took over meanwhile).
    slaves.remove(&node, session);
    why
}

fn pack(p: Position) -> u64 {
    (u64::from(p.file) << 32) | u64::from(p.offset)
}

/// The slave's writer of replicated bytes: writes each batch at its position in the data file
/// (created at the journal's file length, like the master's preallocated files), with the
/// end-of-file marker after it as the master's journal writes it, and fdatasyncs.
pub struct ReplicaWriter {
    dir: PathBuf,
    max_file_length: u32,
    preallocate: bool,
    open: HashMap<u32, File>,
}

impl ReplicaWriter {
    /// A writer for a journal of this configuration (file length and preallocation must be
    /// the master's, for the files to come out identical).
    pub fn new(dir: &Path, config: &crate::journal::JournalConfig) -> ReplicaWriter {
        ReplicaWriter {
            dir: dir.to_path_buf(),
            max_file_length: config.max_file_length,
            preallocate: config.preallocation != crate::journal::Preallocation::None,
            open: HashMap::new(),
        }
    }

    /// Writes `data` at `at`, durably. Returns the position after it.
    pub fn write(&mut self, at: Position, data: &[u8]) -> Result<Position> {
        let end = u64::from(at.offset) + data.len() as u64;
        if end > u64::from(self.max_file_length) {
            return Err(Error::new(
                ErrorCode::Corrupt,
                format!(
                    "a replicated batch of {} bytes at {}:{} does not fit a data file of {} bytes",
                    data.len(),
                    at.file,
                    at.offset,
                    self.max_file_length
                ),
            ));
        }
        if !self.open.contains_key(&at.file) {
            // Older files are complete once a newer one starts.
            let older: Vec<u32> = self.open.keys().copied().filter(|f| *f < at.file).collect();
            for f in older {
                self.open.remove(&f);
            }
            let path = files::data_file_path(&self.dir, at.file);
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), &e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io(format!("reading {}", path.display()), &e))?
                .len();
            if self.preallocate && len < u64::from(self.max_file_length) {
                f.set_len(u64::from(self.max_file_length))
                    .map_err(|e| Error::io(format!("sizing {}", path.display()), &e))?;
            }
            files::sync_dir(&self.dir)?;
            self.open.insert(at.file, f);
        }
        let f = self.open.get(&at.file).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                "the replica file vanished from the table",
            )
        })?;
        let what = || format!("writing replicated bytes to db-{}.log", at.file);
        f.write_all_at(data, u64::from(at.offset))
            .map_err(|e| Error::io(what(), &e))?;
        if end + EOF_RECORD.len() as u64 <= u64::from(self.max_file_length) {
            f.write_all_at(&EOF_RECORD, end)
                .map_err(|e| Error::io(what(), &e))?;
        }
        f.sync_data().map_err(|e| Error::io(what(), &e))?;
        Ok(Position {
            file: at.file,
            offset: end as u32,
        })
    }
}

/// The slave's side of the live stream: announces where it stands, then writes every batch
/// and acks it once on disk. Returns when the connection ends or a write fails.
pub async fn follow(mut conn: Conn, writer: ReplicaWriter, start: Position) -> Closed {
    if let Err(c) = conn.send(&Message::Ack { durable: start }).await {
        return c;
    }
    let writer = Arc::new(Mutex::new(writer));
    loop {
        let (at, data) = match conn.recv().await {
            Ok(Message::Batch { at, data }) => (at, data),
            Ok(Message::Heartbeat) => continue,
            Ok(other) => {
                return Closed::Protocol(format!("unexpected {:?} from the master", other.kind()))
            }
            Err(c) => return c,
        };
        let w = writer.clone();
        let done = tokio::task::spawn_blocking(move || {
            w.lock().unwrap_or_else(|p| p.into_inner()).write(at, &data)
        })
        .await;
        let durable = match done {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Closed::Io(e.to_string()),
            Err(e) => return Closed::Io(e.to_string()),
        };
        if let Err(c) = conn.send(&Message::Ack { durable }).await {
            return c;
        }
    }
}

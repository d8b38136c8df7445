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

/// Where the master's journal has written up to.
pub type WrittenPosition = Arc<dyn Fn() -> Position + Send + Sync>;

/// The written position of a journal, as [`serve_stream`] needs it.
pub fn written_position_of(
    journal: impl std::ops::Deref<Target = Journal> + Send + Sync + 'static,
) -> WrittenPosition {
    Arc::new(move || {
        let p = journal.written_position();
        Position {
            file: p.file_id,
            offset: p.offset,
        }
    })
}

/// A master's handler of one accepted connection: transfer sessions get ranges; a stream
/// session gets its plan and, once the plan asks for nothing more (the slave has every sealed
/// file), the live stream.
pub async fn serve_master(
    mut conn: Conn,
    node: String,
    purpose: super::message::Purpose,
    dir: PathBuf,
    written: WrittenPosition,
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
    serve_stream(conn, node, dir, written, feed, slaves).await
}

/// A slave's whole life with a master: initial sync (repeated until the master's plan asks for
/// nothing more: it may rotate meanwhile), then the live stream. Returns why it ended.
pub async fn run_slave(
    master: &super::net::KdbrUri,
    me: &super::net::Identity,
    dir: &Path,
    sessions: usize,
    max_file_length: u32,
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
                for (id, len) in truncate {
                    let path = files::data_file_path(dir, id);
                    let cut = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(u64::from(u32::try_from(len).unwrap_or(0))));
                    if let Err(e) = cut {
                        return Closed::Io(format!("truncating {}: {e}", path.display()));
                    }
                }
                for id in delete {
                    let _ = std::fs::remove_file(files::data_file_path(dir, id));
                }
                return follow(conn, ReplicaWriter::new(dir, max_file_length), live_from).await;
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

/// The master's fan-out of journal batches to stream sessions.
#[derive(Default)]
pub struct Feed {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Item>>>,
}

impl Feed {
    /// Installs a feed as the journal's batch tap.
    pub fn install(journal: &Journal) -> Arc<Feed> {
        let feed = Arc::new(Feed::default());
        let f = feed.clone();
        journal.set_batch_tap(Some(Arc::new(move |file, offset, bytes: &[u8]| {
            f.publish(Position { file, offset }, bytes);
        })));
        feed
    }

    fn publish(&self, at: Position, bytes: &[u8]) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return;
        }
        let data: Arc<[u8]> = Arc::from(bytes);
        subs.retain(|s| s.send((at, data.clone())).is_ok());
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<Item> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }
}

/// What the master knows about its slaves: the durable position each live slave acked, and
/// the `minimumReplicas` rule synchronous writes wait on.
pub struct Slaves {
    durable: Mutex<HashMap<String, Position>>,
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
            changed: tokio::sync::Notify::new(),
            cv: std::sync::Condvar::new(),
            min: AtomicUsize::new(minimum_replicas),
            timeout_ms: AtomicU64::new(timeout.as_millis() as u64),
        }
    }

    /// Changes `minimumReplicas` (0: synchronous writes never wait for slaves).
    pub fn set_minimum_replicas(&self, n: usize) {
        self.min.store(n, Ordering::SeqCst);
        self.cv.notify_all();
    }

    pub fn minimum_replicas(&self) -> usize {
        self.min.load(Ordering::SeqCst)
    }

    /// Changes how long a synchronous write waits for enough slaves.
    pub fn set_timeout(&self, t: Duration) {
        self.timeout_ms
            .store(t.as_millis() as u64, Ordering::SeqCst);
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Position>> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn durable(&self, node: &str) -> Option<Position> {
        self.map().get(node).copied()
    }

    /// Live slaves and their durable positions.
    pub fn status(&self) -> Vec<(String, Position)> {
        let mut v: Vec<_> = self.map().iter().map(|(k, p)| (k.clone(), *p)).collect();
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
            let have = map.values().filter(|p| **p >= end).count();
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

    fn set(&self, node: &str, pos: Position) {
        self.map().insert(node.to_owned(), pos);
        self.cv.notify_all();
        self.changed.notify_waiters();
    }

    fn remove(&self, node: &str) {
        self.map().remove(node);
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
    written: WrittenPosition,
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
    slaves.set(&node, start);
    // Subscribe first, then read what is already written: nothing falls in between.
    let mut rx = feed.subscribe();
    let upto = written();
    let epoch = conn.epoch;
    let (mut reader, mut writer) = conn.into_split();
    let acks = {
        let slaves = slaves.clone();
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Message::Ack { durable }) => slaves.set(&node, durable),
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
                    Err(_) => {
                        at = Position {
                            file: at.file + 1,
                            offset: 0,
                        };
                        continue;
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
            if let Err(c) = writer.send(epoch, &Message::Batch { at, data }).await {
                return c;
            }
            at.offset += n;
        }
        // Then every batch written from there on.
        while let Some((pos, bytes)) = rx.recv().await {
            if pos < upto {
                continue; // already sent from the file
            }
            if let Err(c) = writer
                .send(
                    epoch,
                    &Message::Batch {
                        at: pos,
                        data: bytes.to_vec(),
                    },
                )
                .await
            {
                return c;
            }
        }
        Closed::Eof
    };
    let mut acks = acks;
    let why = tokio::select! {
        c = sent => { acks.abort(); c }
        r = &mut acks => r.unwrap_or_else(|e| Closed::Io(e.to_string())),
    };
    // A slave that is gone no longer counts toward minimumReplicas.
    slaves.remove(&node);
    why
}

/// The slave's writer of replicated bytes: writes each batch at its position in the data file
/// (created at the journal's file length, like the master's preallocated files), with the
/// end-of-file marker after it as the master's journal writes it, and fdatasyncs.
pub struct ReplicaWriter {
    dir: PathBuf,
    max_file_length: u32,
    open: HashMap<u32, File>,
}

impl ReplicaWriter {
    pub fn new(dir: &Path, max_file_length: u32) -> ReplicaWriter {
        ReplicaWriter {
            dir: dir.to_path_buf(),
            max_file_length,
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
            if len < u64::from(self.max_file_length) {
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

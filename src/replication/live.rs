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

/// What the feed hands a stream session.
enum Item {
    Batch(Position, Arc<[u8]>),
    /// Data files the master's GC deleted.
    Removed(Vec<u32>),
}

/// How often a master sends a heartbeat on an idle stream.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How long either side of a stream waits for a frame before it gives the session up (a peer
/// that vanished without closing: a cut cable, a paused process).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

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
        let served = slaves.transfer_counter(&node);
        return super::sync::serve_session_counted(conn, dir, purpose, served).await;
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
    if let Message::SyncPlan { fetch, .. } = &plan {
        if !fetch.is_empty() {
            // Pinned against the GC until the slave goes live (or stops fetching).
            slaves.begin_sync(&node, fetch);
        }
    }
    if let Err(c) = conn.send(&plan).await {
        return c;
    }
    if !live {
        // The slave copies what it lacks over transfer sessions, then comes back.
        return match conn.recv().await {
            Err(c) => c,
            // The slave could not carry the plan out (a full disk, say): that is why it left.
            Ok(Message::Reject { reason }) => {
                let why = Closed::Rejected(reason);
                slaves.departed(&node, &why);
                why
            }
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
    run_slave_with(master, me, dir, sessions, config, &SlaveLink::default()).await
}

/// Where a slave's link to its master stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkState {
    /// Connecting or reconnecting (after a failure: see the last error).
    #[default]
    Connecting,
    /// Copying sealed files.
    Syncing,
    /// On the live stream.
    Live,
}

/// A slave's link, for status and for the hot standby.
#[derive(Default)]
pub struct SlaveLink {
    pub sync: super::sync::SyncHooks,
    inner: Mutex<LinkInner>,
    /// Held by every replica write: taking it waits for one in flight.
    gate: Arc<Mutex<()>>,
    /// The epoch of the master this slave went live with (0: not yet).
    pub lineage: AtomicU64,
}

/// The file that keeps the epoch of the master whose journal this node's is a copy of (its
/// own epoch for a master): what the node stands on in an election.
pub const LINEAGE_FILE: &str = "replication.lineage";

/// Records the journal's lineage (synced, replaced atomically).
pub fn write_lineage(dir: &Path, epoch: u64) -> Result<()> {
    use std::io::Write;
    let path = dir.join(LINEAGE_FILE);
    let tmp = dir.join(format!("{LINEAGE_FILE}.tmp"));
    let what = || format!("writing {}", path.display());
    let mut f = File::create(&tmp).map_err(|e| Error::io(what(), &e))?;
    f.write_all(format!("{epoch}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(what(), &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(what(), &e))?;
    files::sync_dir(dir)
}

/// The journal's lineage (0 when none was recorded).
pub fn read_lineage(dir: &Path) -> Result<u64> {
    let path = dir.join(LINEAGE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|_| {
            Error::new(
                ErrorCode::Corrupt,
                format!("{} does not hold an epoch: {:?}", path.display(), s.trim()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), &e)),
    }
}

#[derive(Default, Clone)]
struct LinkInner {
    state: LinkState,
    durable: Position,
    last_error: Option<String>,
}

impl SlaveLink {
    /// A link whose hot standby follows what is written.
    pub fn with_standby(standby: Arc<super::standby::Standby>) -> SlaveLink {
        SlaveLink {
            sync: super::sync::SyncHooks {
                standby: Some(standby),
                ..Default::default()
            },
            inner: Mutex::default(),
            gate: Arc::default(),
            lineage: AtomicU64::new(0),
        }
    }

    /// Waits for a replica write in flight (the guard keeps the next one out).
    pub fn writer_gate(&self) -> std::sync::MutexGuard<'_, ()> {
        self.gate.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the link stands. A journal that a sync is changing (or that an interrupted sync
    /// left incomplete) is `Syncing` until the link is live again, whatever the connection
    /// is doing: such a node must not win an election.
    pub fn state(&self) -> LinkState {
        let state = self.lock().state;
        if state != LinkState::Live && self.sync.counters.incomplete.load(Ordering::SeqCst) {
            LinkState::Syncing
        } else {
            state
        }
    }

    pub fn durable(&self) -> Position {
        self.lock().durable
    }

    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    pub fn set_state(&self, state: LinkState) {
        self.lock().state = state;
    }

    pub fn set_error(&self, e: String) {
        let mut g = self.lock();
        g.state = LinkState::Connecting;
        g.last_error = Some(e);
    }

    fn set_durable(&self, p: Position) {
        let mut g = self.lock();
        if p > g.durable || g.state != LinkState::Live {
            g.durable = p;
        }
        drop(g);
        if let Some(sb) = &self.sync.standby {
            sb.durable(p);
        }
    }
}

/// [`run_slave`], reporting to `link`.
pub async fn run_slave_with(
    master: &super::net::KdbrUri,
    me: &super::net::Identity,
    dir: &Path,
    sessions: usize,
    config: &crate::journal::JournalConfig,
    link: &SlaveLink,
) -> Closed {
    use super::message::Purpose;
    loop {
        // The link reads Syncing only while the sync changes the journal (see `state`): a
        // slave retrying a master that is gone still holds a whole copy and stays eligible.
        if let Err(e) = super::sync::initial_sync_with(
            master,
            me,
            dir,
            sessions,
            super::sync::DEFAULT_CHUNK,
            &link.sync,
        )
        .await
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
        match conn
            .recv_within(super::sync::PLAN_TIMEOUT, "the sync plan")
            .await
        {
            Ok(Message::SyncPlan {
                fetch,
                truncate,
                delete,
                live_from,
            }) if fetch.is_empty() => {
                if let Some(sb) = &link.sync.standby {
                    sb.before_cuts(&truncate, &delete);
                    if sb.is_fresh() {
                        // Start from the master's index rather than a replay of the files
                        // (which would order relocated messages differently).
                        match super::sync::fetch_index(master, me).await {
                            Ok(data) if !data.is_empty() => sb.seed(&data),
                            Ok(_) => {}
                            Err(e) => log::warn!(
                                "replication: the master's index could not be fetched ({e}); the hot standby replays the files"
                            ),
                        }
                    }
                }
                let d = dir.to_path_buf();
                let counters = link.sync.counters.clone();
                let cut = tokio::task::spawn_blocking(move || {
                    if truncate.is_empty() && delete.is_empty() {
                        return super::sync::mark_complete(&d, &counters).map(|_| (0, 0));
                    }
                    super::sync::mark_incomplete(&d, &counters)?;
                    let r = super::sync::apply_cuts(&d, &truncate, &delete)?;
                    super::sync::mark_complete(&d, &counters)?;
                    Ok(r)
                })
                .await;
                match cut {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        conn.reject(&format!("this slave cannot sync: {e}")).await;
                        return Closed::Io(e.to_string());
                    }
                    Err(e) => return Closed::Io(e.to_string()),
                }
                // From here this node's journal is a copy of this master's (its lineage).
                let (d, epoch) = (dir.to_path_buf(), conn.peer_epoch);
                match tokio::task::spawn_blocking(move || write_lineage(&d, epoch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Closed::Io(e.to_string()),
                    Err(e) => return Closed::Io(e.to_string()),
                }
                link.lineage.fetch_max(epoch, Ordering::SeqCst);
                return follow_with(conn, ReplicaWriter::new(dir, config), live_from, me, link)
                    .await;
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
            s.tx.send(Item::Batch(at, data.clone())).is_ok()
        });
    }

    /// Tells every stream session that the GC deleted `files` (after every batch published
    /// before, so a slave deletes them only once it has everything that made them garbage).
    pub fn publish_removed(&self, files: &[u32]) {
        let f = self.lock();
        for s in &f.subscribers {
            let _ = s.tx.send(Item::Removed(files.to_vec()));
        }
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
    /// Slaves copying sealed files, and slaves that left (for status).
    others: Mutex<HashMap<String, Other>>,
    /// Set when this node stops being master: waiting writes fail at once.
    closed: std::sync::atomic::AtomicBool,
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
            others: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
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
            if self.closed.load(Ordering::SeqCst) {
                return Err(Error::new(
                    ErrorCode::IllegalState,
                    format!(
                        "this node stopped being master while the write ending at {}:{} waited for its replicas: it may or may not be on the new master",
                        end.file, end.offset
                    ),
                ));
            }
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
        // Live: no longer syncing (its pins go), nor departed.
        self.others().remove(node);
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

    /// This node is no longer master: every waiting and later synchronous write fails.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.notify();
    }

    fn others(&self) -> std::sync::MutexGuard<'_, HashMap<String, Other>> {
        self.others.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `node` starts copying these ranges: their files are pinned against the GC.
    pub(crate) fn begin_sync(&self, node: &str, fetch: &[super::message::FileRange]) {
        let mut o = self.others();
        let served = match o.get(node) {
            Some(Other::Syncing { served, .. }) => served.clone(),
            _ => Arc::new(AtomicU64::new(0)),
        };
        served.store(0, Ordering::Relaxed);
        o.insert(
            node.to_owned(),
            Other::Syncing {
                total: fetch.iter().map(|r| r.length).sum(),
                served,
                files: fetch.iter().map(|r| r.file).collect(),
                since: std::time::Instant::now(),
            },
        );
    }

    /// The counter of bytes served to `node`'s transfer sessions.
    pub(crate) fn transfer_counter(&self, node: &str) -> Arc<AtomicU64> {
        let mut o = self.others();
        if let Some(Other::Syncing { served, since, .. }) = o.get_mut(node) {
            *since = std::time::Instant::now();
            return served.clone();
        }
        Arc::new(AtomicU64::new(0))
    }

    /// `node`'s stream session ended for `why`.
    pub(crate) fn departed(&self, node: &str, why: &Closed) {
        if self.durable(node).is_some() {
            return; // a newer session of it is live
        }
        log::warn!("replication: slave {node} left: {why}");
        self.others().insert(
            node.to_owned(),
            Other::Left {
                reason: why.to_string(),
            },
        );
    }

    /// Files pinned for slaves copying them (a sync silent for `SYNC_PIN_TTL` no longer pins).
    pub fn pinned_files(&self) -> Vec<u32> {
        let o = self.others();
        let mut v: Vec<u32> = o
            .values()
            .filter_map(|x| match x {
                Other::Syncing { files, since, .. } if since.elapsed() < SYNC_PIN_TTL => {
                    Some(files.iter().copied())
                }
                _ => None,
            })
            .flatten()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Every slave this master knows of: live ones with their durable position, syncing ones
    /// with the bytes they still need, and the ones that left with the reason.
    pub fn report(&self, written: Position, file_length: u32) -> Vec<SlaveReport> {
        let mut out: Vec<SlaveReport> = self
            .map()
            .iter()
            .map(|(node, (_, p))| SlaveReport {
                node: node.clone(),
                state: SlaveState::Live,
                durable: Some(*p),
                lag_bytes: lag(written, *p, file_length),
                bytes_to_go: 0,
                reason: None,
            })
            .collect();
        let live: std::collections::HashSet<String> = out.iter().map(|r| r.node.clone()).collect();
        for (node, o) in self.others().iter() {
            if live.contains(node) {
                continue;
            }
            out.push(match o {
                Other::Syncing { total, served, .. } => SlaveReport {
                    node: node.clone(),
                    state: SlaveState::Syncing,
                    durable: None,
                    lag_bytes: 0,
                    bytes_to_go: total.saturating_sub(served.load(Ordering::Relaxed)),
                    reason: None,
                },
                Other::Left { reason } => SlaveReport {
                    node: node.clone(),
                    state: SlaveState::Left,
                    durable: None,
                    lag_bytes: 0,
                    bytes_to_go: 0,
                    reason: Some(reason.clone()),
                },
            });
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
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

/// How long the files of a sync stay pinned after its last transfer request.
pub const SYNC_PIN_TTL: Duration = Duration::from_secs(300);

enum Other {
    Syncing {
        total: u64,
        served: Arc<AtomicU64>,
        files: Vec<u32>,
        since: std::time::Instant,
    },
    Left {
        reason: String,
    },
}

/// A slave's state as its master sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaveState {
    /// Copying sealed files over transfer sessions.
    Syncing,
    /// On the live stream; counts toward `minimumReplicas`.
    Live,
    /// Its session ended (the reason says why); it no longer counts.
    Left,
}

/// One slave in a master's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveReport {
    pub node: String,
    pub state: SlaveState,
    /// Everything before it is on the slave's disk (live slaves).
    pub durable: Option<Position>,
    /// Bytes written on the master that the slave has not acked (live slaves).
    pub lag_bytes: u64,
    /// Bytes the slave's initial sync still needs (syncing slaves).
    pub bytes_to_go: u64,
    pub reason: Option<String>,
}

/// Bytes between `behind` and `ahead` (files count `file_length` bytes each).
pub fn lag(ahead: Position, behind: Position, file_length: u32) -> u64 {
    if behind >= ahead {
        return 0;
    }
    if behind.file == ahead.file {
        return u64::from(ahead.offset - behind.offset);
    }
    u64::from(file_length.saturating_sub(behind.offset))
        + u64::from(ahead.file - behind.file - 1) * u64::from(file_length)
        + u64::from(ahead.offset)
}

/// The master's replication as its store sees it: `minimumReplicas` for synchronous writes,
/// files pinned for syncing slaves, and GC deletions forwarded to the live slaves.
pub struct MasterLink {
    pub slaves: Arc<Slaves>,
    pub feed: Arc<Feed>,
}

impl crate::store::engine::Replicated for MasterLink {
    fn wait_replicated(&self, file: u32, end: u32) -> Result<()> {
        self.slaves.wait_replicated(Position { file, offset: end })
    }

    fn retained(&self) -> Vec<u32> {
        self.slaves.pinned_files()
    }

    fn removed(&self, files: &[u32]) {
        self.feed.publish_removed(files);
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
        Ok(Message::Reject { reason }) => return Closed::Rejected(reason),
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
                let m = match tokio::time::timeout(IDLE_TIMEOUT, reader.recv()).await {
                    Ok(m) => m,
                    Err(_) => return Closed::Timeout("an ack or heartbeat from the slave"),
                };
                match m {
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
                    Ok(Message::Reject { reason }) => return Closed::Rejected(reason),
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
        loop {
            let item = match tokio::time::timeout(HEARTBEAT_INTERVAL, rx.recv()).await {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(_) => {
                    match tokio::time::timeout(
                        SEND_TIMEOUT,
                        writer.send(epoch, &Message::Heartbeat),
                    )
                    .await
                    {
                        Ok(Ok(())) => continue,
                        Ok(Err(c)) => return c,
                        Err(_) => return Closed::Timeout("the slave to take a heartbeat"),
                    }
                }
            };
            let (pos, bytes) = match item {
                Item::Batch(pos, bytes) => (pos, bytes),
                Item::Removed(files) => {
                    match tokio::time::timeout(
                        SEND_TIMEOUT,
                        writer.send(epoch, &Message::Remove { files }),
                    )
                    .await
                    {
                        Ok(Ok(())) => continue,
                        Ok(Err(c)) => return c,
                        Err(_) => return Closed::Timeout("the slave to take the next frame"),
                    }
                }
            };
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
    // the same node took over meanwhile). Only sessions that went live are reported as left:
    // a plan-only connection of a joining slave ends before.
    slaves.remove(&node, session);
    slaves.departed(&node, &why);
    why
}

fn pack(p: Position) -> u64 {
    (u64::from(p.file) << 32) | u64::from(p.offset)
}

/// The slave's writer of replicated bytes: writes each batch at its position in the data file
/// (created at the journal's file length, like the master's preallocated files), with the
/// end-of-file marker after it as the master's journal writes it, and fdatasyncs.
///
/// With zero preallocation (the master's default), a new file is written full of zeros ahead of
/// time, on a thread of its own, as the master's journal does: an fdatasync of bytes written
/// over real zero blocks flushes data only, while one over a sparse file's holes also commits
/// the file system's journal (block allocation), a second flush on every sync.
pub struct ReplicaWriter {
    dir: PathBuf,
    max_file_length: u32,
    preallocation: crate::journal::Preallocation,
    open: HashMap<u32, File>,
    /// The next file, being written full of zeros under [`REPLICA_PREALLOC_FILE`].
    prealloc: Option<std::thread::JoinHandle<Result<(File, PathBuf)>>>,
}

/// The temporary name of a slave's next preallocated data file (not the master journal's own,
/// which the node's journal creates once it is master).
const REPLICA_PREALLOC_FILE: &str = "replica-prealloc.tmp";

impl Drop for ReplicaWriter {
    fn drop(&mut self) {
        // Nothing may write that file once the writer is gone (a later one creates it again).
        if let Some(h) = self.prealloc.take() {
            let _ = h.join();
            let _ = std::fs::remove_file(self.dir.join(REPLICA_PREALLOC_FILE));
        }
    }
}

impl ReplicaWriter {
    /// A writer for a journal of this configuration (file length and preallocation must be
    /// the master's, for the files to come out identical).
    pub fn new(dir: &Path, config: &crate::journal::JournalConfig) -> ReplicaWriter {
        ReplicaWriter {
            dir: dir.to_path_buf(),
            max_file_length: config.max_file_length,
            preallocation: config.preallocation,
            open: HashMap::new(),
            prealloc: None,
        }
    }

    /// Writes `data` at `at`, durably. Returns the position after it.
    pub fn write(&mut self, at: Position, data: &[u8]) -> Result<Position> {
        self.write_all(&[(at, data)])
    }

    /// Writes every batch at its position, with one fdatasync per file touched (group commit:
    /// the batches that arrived while the previous group was being synced). Returns the position
    /// after the last.
    pub fn write_all(&mut self, batches: &[(Position, &[u8])]) -> Result<Position> {
        let mut end = Position::default();
        let mut touched: Vec<u32> = Vec::new();
        for (i, (at, data)) in batches.iter().enumerate() {
            // The end-of-file marker only after the last batch of each file.
            let last_in_file = batches.get(i + 1).is_none_or(|(n, _)| n.file != at.file);
            end = self.put(*at, data, last_in_file)?;
            if !touched.contains(&at.file) {
                touched.push(at.file);
            }
        }
        for file in touched {
            if let Some(f) = self.open.get(&file) {
                f.sync_data().map_err(|e| {
                    Error::io(format!("syncing replicated bytes of db-{file}.log"), &e)
                })?;
            }
        }
        Ok(end)
    }

    /// The preallocated file, renamed to `path`, for a file that does not exist yet and is
    /// written from its start (`None`: open or create it as it is).
    fn take_preallocated(&mut self, path: &Path, offset: u32) -> Result<Option<File>> {
        if offset != 0 || path.exists() {
            return Ok(None);
        }
        let Some(h) = self.prealloc.take() else {
            return Ok(None);
        };
        let (f, tmp) = match h.join() {
            Ok(Ok(v)) => v,
            // Created as it is instead (a failure to write a file shows there).
            Ok(Err(_)) | Err(_) => return Ok(None),
        };
        std::fs::rename(&tmp, path)
            .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), &e))?;
        Ok(Some(f))
    }

    /// Starts writing the next file full of zeros (zero preallocation only).
    fn start_prealloc(&mut self) {
        if self.preallocation != crate::journal::Preallocation::Zeros || self.prealloc.is_some() {
            return;
        }
        let (dir, len) = (self.dir.clone(), self.max_file_length);
        self.prealloc = std::thread::Builder::new()
            .name("kahadb-replica-prealloc".into())
            .spawn(move || {
                files::create_preallocated(
                    &dir,
                    REPLICA_PREALLOC_FILE,
                    len,
                    crate::journal::Preallocation::Zeros,
                )
            })
            .ok();
    }

    fn put(&mut self, at: Position, data: &[u8], marker: bool) -> Result<Position> {
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
                // Made durable before its handle goes (a group may end in a newer file).
                if let Some(h) = self.open.remove(&f) {
                    h.sync_data().map_err(|e| {
                        Error::io(format!("syncing replicated bytes of db-{f}.log"), &e)
                    })?;
                }
            }
            let path = files::data_file_path(&self.dir, at.file);
            let f = match self.take_preallocated(&path, at.offset)? {
                Some(f) => f,
                None => {
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
                    let max = u64::from(self.max_file_length);
                    let sizing =
                        |e: std::io::Error| Error::io(format!("sizing {}", path.display()), &e);
                    match self.preallocation {
                        crate::journal::Preallocation::Zeros if len < max => {
                            // No preallocated file for it: zeros past its end, here.
                            const CHUNK: usize = 1 << 20;
                            let zeros = vec![0u8; CHUNK];
                            let mut pos = len;
                            while pos < max {
                                let n = (max - pos).min(CHUNK as u64) as usize;
                                f.write_all_at(&zeros[..n], pos).map_err(sizing)?;
                                pos += n as u64;
                            }
                            f.sync_data().map_err(sizing)?;
                        }
                        crate::journal::Preallocation::Sparse if len < max => {
                            f.set_len(max).map_err(sizing)?;
                        }
                        _ => {}
                    }
                    f
                }
            };
            files::sync_dir(&self.dir)?;
            self.open.insert(at.file, f);
            self.start_prealloc();
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
        if marker && end + EOF_RECORD.len() as u64 <= u64::from(self.max_file_length) {
            f.write_all_at(&EOF_RECORD, end)
                .map_err(|e| Error::io(what(), &e))?;
        }
        Ok(Position {
            file: at.file,
            offset: end as u32,
        })
    }
}

/// The slave's side of the live stream: announces where it stands, then writes every batch
/// and acks it once on disk. Returns when the connection ends or a write fails.
pub async fn follow(conn: Conn, writer: ReplicaWriter, start: Position) -> Closed {
    let me = super::net::Identity {
        cluster: String::new(),
        node: String::new(),
        epoch: Arc::new(AtomicU64::new(0)),
    };
    follow_with(conn, writer, start, &me, &SlaveLink::default()).await
}

/// The most bytes a slave writes under one fdatasync.
const GROUP_BYTES: usize = 16 << 20;

fn remove_files(writer: &Arc<Mutex<ReplicaWriter>>, link: &SlaveLink, files: Vec<u32>) {
    if let Some(sb) = &link.sync.standby {
        sb.remove_files(&files);
    } else {
        let dir = writer.lock().unwrap_or_else(|p| p.into_inner()).dir.clone();
        for f in files {
            let _ = std::fs::remove_file(files::data_file_path(&dir, f));
        }
    }
}

/// [`follow`], reporting to `link` (durable position, hot standby) and fenced by `me`'s epoch:
/// once this node knows a newer epoch than the master's, the session ends.
pub async fn follow_with(
    mut conn: Conn,
    writer: ReplicaWriter,
    start: Position,
    me: &super::net::Identity,
    link: &SlaveLink,
) -> Closed {
    if let Err(c) = conn.send(&Message::Ack { durable: start }).await {
        return c;
    }
    link.set_durable(start);
    link.set_state(LinkState::Live);
    let writer = Arc::new(Mutex::new(writer));
    loop {
        let m = conn
            .recv_within(IDLE_TIMEOUT, "a frame from the master")
            .await;
        let known = me.epoch.load(Ordering::SeqCst);
        if conn.peer_epoch < known {
            let reason = format!(
                "the master is at epoch {}, but this node knows epoch {known}: it is no longer master",
                conn.peer_epoch
            );
            conn.reject(&reason).await;
            return Closed::Protocol(reason);
        }
        let first = match m {
            Ok(Message::Batch { at, data }) => (at, data),
            Ok(Message::Heartbeat) => {
                if let Err(c) = conn.send(&Message::Heartbeat).await {
                    return c;
                }
                continue;
            }
            Ok(Message::Remove { files }) => {
                remove_files(&writer, link, files);
                continue;
            }
            Ok(Message::Reject { reason }) => return Closed::Rejected(reason),
            Ok(other) => {
                return Closed::Protocol(format!("unexpected {:?} from the master", other.kind()))
            }
            Err(c) => return c,
        };
        // Group commit: every batch that has already arrived is written with this one and
        // covered by one fdatasync and one ack.
        let mut group = vec![first];
        let mut bytes = group[0].1.len();
        let mut removals = Vec::new();
        while bytes < GROUP_BYTES {
            match conn.recv_ready() {
                Ok(Some(Message::Batch { at, data })) => {
                    bytes += data.len();
                    group.push((at, data));
                }
                Ok(Some(Message::Heartbeat)) => {}
                Ok(Some(Message::Remove { files })) => removals.push(files),
                Ok(Some(Message::Reject { reason })) => return Closed::Rejected(reason),
                Ok(Some(other)) => {
                    return Closed::Protocol(format!(
                        "unexpected {:?} from the master",
                        other.kind()
                    ))
                }
                Ok(None) => break,
                Err(c) => return c,
            }
        }
        let (w, gate) = (writer.clone(), link.gate.clone());
        let write = move || {
            let _g = gate.lock().unwrap_or_else(|p| p.into_inner());
            let batches: Vec<(Position, &[u8])> =
                group.iter().map(|(at, d)| (*at, d.as_slice())).collect();
            w.lock()
                .unwrap_or_else(|p| p.into_inner())
                .write_all(&batches)
        };
        // On a multi-threaded runtime the write runs on this worker (its other tasks move to
        // another): two thread hand-offs fewer on the path of every acknowledgement.
        let done = match tokio::runtime::Handle::current().runtime_flavor() {
            tokio::runtime::RuntimeFlavor::MultiThread => Ok(tokio::task::block_in_place(write)),
            _ => tokio::task::spawn_blocking(write).await,
        };
        let durable = match done {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                // Tell the master why this slave leaves (a full disk, say) before closing.
                let reason = format!("this slave cannot write: {e}");
                conn.reject(&reason).await;
                return Closed::Io(e.to_string());
            }
            Err(e) => return Closed::Io(e.to_string()),
        };
        for files in removals {
            remove_files(&writer, link, files);
        }
        // On disk: known locally before the master hears of it.
        link.set_durable(durable);
        if let Err(c) = conn.send(&Message::Ack { durable }).await {
            return c;
        }
    }
}

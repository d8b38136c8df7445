//! Initial sync of sealed data files (`docs/PROTOCOL.md` §3.2–3.3): a joining slave reports
//! what it has, the master answers with a plan, and the slave fetches the missing bytes over
//! several concurrent transfer sessions, each range CRC-checked and recorded in a progress file
//! once it is on disk, so that a restarted slave fetches only what is left.
//!
//! Sealed files (every data file but the newest, which the journal is still writing) never
//! change, so they are copied byte for byte, preallocated tail included: afterwards the slave's
//! files are identical to the master's. The newest file belongs to the live stream.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, ErrorCode, Result};
use crate::journal::files;

use super::message::{FileInfo, FileRange, Message, Position, Purpose};
use super::net::{connect, Closed, Conn, Identity, KdbrUri};

/// Bytes per transfer request.
pub const DEFAULT_CHUNK: u64 = 1 << 20;
/// The largest range a master serves in one request.
pub const MAX_REQUEST: u64 = 4 * DEFAULT_CHUNK;
/// Default number of concurrent transfer sessions.
pub const DEFAULT_SESSIONS: usize = 4;
/// The file id of a transfer request for the master's index checkpoint (offset 0, length 0):
/// answered with the whole file as one Range, empty when there is none (or it is too large
/// for a frame); a joining slave seeds its hot standby with it.
pub const INDEX_FILE_ID: u32 = u32::MAX;

/// How long a slave waits for the master's sync plan (the master reads every file the slave
/// reports the first time: a large journal takes a while).
pub const PLAN_TIMEOUT: Duration = Duration::from_secs(300);

/// The slave's record of ranges already on its disk.
pub const PROGRESS_FILE: &str = "replication.progress";
/// Present while an initial sync is changing this node's journal (cutting or fetching files):
/// until it is gone the journal is not a whole prefix of any master's, and the node must not
/// win an election. Created before the first change, removed once the plan is complete.
pub const SYNCING_FILE: &str = "replication.syncing";

/// Whether `dir` holds a journal that an interrupted initial sync left incomplete.
pub fn journal_incomplete(dir: &Path) -> bool {
    dir.join(SYNCING_FILE).exists()
}

/// Marks `dir`'s journal incomplete (durably) before a sync changes it.
pub fn mark_incomplete(dir: &Path, counters: &SyncCounters) -> Result<()> {
    counters.incomplete.store(true, Ordering::SeqCst);
    let path = dir.join(SYNCING_FILE);
    if !path.exists() {
        File::create(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(format!("creating {}", path.display()), &e))?;
        files::sync_dir(dir)?;
    }
    Ok(())
}

/// Marks `dir`'s journal whole again once a sync's changes are complete and durable.
pub fn mark_complete(dir: &Path, counters: &SyncCounters) -> Result<()> {
    let path = dir.join(SYNCING_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => files::sync_dir(dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("removing {}", path.display()), &e)),
    }
    counters.incomplete.store(false, Ordering::SeqCst);
    Ok(())
}

fn io(what: impl std::fmt::Display, e: &std::io::Error) -> Error {
    Error::io(what.to_string(), e)
}

/// CRC-32 of the first `len` bytes of a file (the file must have them).
pub fn prefix_crc(path: &Path, len: u64) -> Result<u32> {
    // Sealed files never change: their CRCs are remembered, so that a reconnecting slave does
    // not make both sides read the whole journal again. A file is remembered only once it has
    // been left alone for a while (file times are coarse: a write in the same tick as the
    // reading would not change them), and its identity, size and time must still match.
    let meta =
        std::fs::metadata(path).map_err(|e| io(format!("reading {}", path.display()), &e))?;
    let stamp = {
        use std::os::unix::fs::MetadataExt;
        (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec())
    };
    let key = (path.to_path_buf(), len);
    if let Some((st, crc)) = crc_cache().get(&key) {
        if *st == stamp {
            return Ok(*crc);
        }
    }
    let crc = prefix_crc_uncached(path, len)?;
    let settled = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > Duration::from_secs(2));
    if settled {
        let mut c = crc_cache();
        if c.len() > 100_000 {
            c.clear();
        }
        c.insert(key, (stamp, crc));
    }
    Ok(crc)
}

type CrcCache = HashMap<(PathBuf, u64), ((u64, u64, i64, i64), u32)>;

fn crc_cache() -> std::sync::MutexGuard<'static, CrcCache> {
    static CACHE: once_cell::sync::Lazy<Mutex<CrcCache>> =
        once_cell::sync::Lazy::new(|| Mutex::new(HashMap::new()));
    CACHE.lock().unwrap_or_else(|p| p.into_inner())
}

fn prefix_crc_uncached(path: &Path, len: u64) -> Result<u32> {
    let mut f = File::open(path).map_err(|e| io(format!("opening {}", path.display()), &e))?;
    let mut h = crc32fast::Hasher::new();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        f.read_exact(&mut buf[..n])
            .map_err(|e| io(format!("reading {}", path.display()), &e))?;
        h.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(h.finalize())
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| io(format!("reading the size of {}", path.display()), &e))?
        .len())
}

/// The master's sealed files: every data file but the newest, with its length.
pub fn sealed_files(dir: &Path) -> Result<Vec<(u32, u64)>> {
    let mut ids = files::list_data_files(dir)?;
    ids.sort_unstable();
    ids.pop();
    ids.into_iter()
        .map(|id| Ok((id, file_len(&files::data_file_path(dir, id))?)))
        .collect()
}

/// What a slave directory holds: every data file, with the length it has and the CRC of it.
/// Files recorded as partly fetched count with the length of their contiguous fetched prefix.
pub fn inventory(dir: &Path) -> Result<Vec<FileInfo>> {
    let progress = Progress::load(dir)?;
    let mut out = Vec::new();
    let mut ids = files::list_data_files(dir)?;
    ids.sort_unstable();
    for id in ids {
        let path = files::data_file_path(dir, id);
        let length = match progress.prefix(id) {
            Some(done) => done.min(file_len(&path)?),
            None => file_len(&path)?,
        };
        out.push(FileInfo {
            id,
            length,
            crc: prefix_crc(&path, length)?,
        });
    }
    Ok(out)
}

/// The master's answer to an inventory: files that differ from the master's are cut to the
/// prefix they share with it (whole-file CRC of the slave's length), files the master does not
/// have are deleted, and whatever the slave lacks is fetched.
pub fn plan(master_dir: &Path, inventory: &[FileInfo]) -> Result<Message> {
    // One listing: the newest file and the sealed ones must come from the same moment.
    let mut ids = files::list_data_files(master_dir)?;
    ids.sort_unstable();
    let newest = ids.pop().unwrap_or(1);
    let sealed = ids
        .into_iter()
        .map(|id| Ok((id, file_len(&files::data_file_path(master_dir, id))?)))
        .collect::<Result<Vec<(u32, u64)>>>()?;
    let master: BTreeMap<u32, u64> = sealed.iter().copied().collect();
    let mut truncate = Vec::new();
    let mut delete = Vec::new();
    let mut fetch = Vec::new();
    let mut have: BTreeMap<u32, u64> = BTreeMap::new();
    for f in inventory {
        match master.get(&f.id) {
            // The file the master is writing comes through the live stream, from its start.
            None if f.id == newest => truncate.push((f.id, 0)),
            // Files the master does not have: deleted by its GC, or the tail of an old master.
            None => delete.push(f.id),
            Some(&len) => {
                let path = files::data_file_path(master_dir, f.id);
                let same = f.length <= len && prefix_crc(&path, f.length)? == f.crc;
                if same {
                    have.insert(f.id, f.length);
                } else {
                    truncate.push((f.id, 0));
                    have.insert(f.id, 0);
                }
            }
        }
    }
    for (id, len) in &sealed {
        let from = have.get(id).copied().unwrap_or(0);
        if from < *len {
            fetch.push(FileRange {
                file: *id,
                offset: from,
                length: len - from,
            });
        }
    }
    Ok(Message::SyncPlan {
        truncate,
        delete,
        fetch,
        live_from: Position {
            file: newest,
            offset: 0,
        },
    })
}

/// Ranges fetched so far, per file (`file offset length` lines, appended and synced as chunks
/// land; read back as merged intervals).
#[derive(Debug, Default)]
pub struct Progress {
    done: BTreeMap<u32, BTreeMap<u64, u64>>,
    file: Option<File>,
}

impl Progress {
    pub fn load(dir: &Path) -> Result<Progress> {
        let path = dir.join(PROGRESS_FILE);
        let mut p = Progress::default();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for line in text.lines() {
                    let v: Vec<u64> = line
                        .split_whitespace()
                        .filter_map(|w| w.parse().ok())
                        .collect();
                    // A torn last line (a crash while appending) is ignored: that chunk is
                    // fetched again.
                    if let [file, offset, length] = v[..] {
                        if let Ok(file) = u32::try_from(file) {
                            p.insert(file, offset, length);
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("reading {}", path.display()), &e)),
        }
        Ok(p)
    }

    fn insert(&mut self, file: u32, offset: u64, length: u64) {
        let m = self.done.entry(file).or_default();
        let (mut start, mut end) = (offset, offset + length);
        // Merge with overlapping or touching intervals.
        let overlapping: Vec<(u64, u64)> = m
            .range(..=end)
            .filter(|(s, e)| **e >= start && **s <= end)
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in overlapping {
            m.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        m.insert(start, end);
    }

    /// Length of the fetched prefix of `file`, if anything of it is recorded.
    pub fn prefix(&self, file: u32) -> Option<u64> {
        let m = self.done.get(&file)?;
        Some(m.get(&0).copied().unwrap_or(0))
    }

    /// Whether `[offset, offset+length)` of `file` is fetched.
    pub fn covers(&self, file: u32, offset: u64, length: u64) -> bool {
        self.done.get(&file).is_some_and(|m| {
            m.range(..=offset)
                .next_back()
                .is_some_and(|(_, e)| *e >= offset + length)
        })
    }

    fn forget(&mut self, file: u32) {
        self.done.remove(&file);
    }

    fn record(&mut self, dir: &Path, file: u32, offset: u64, length: u64) -> Result<()> {
        if self.file.is_none() {
            let path = dir.join(PROGRESS_FILE);
            self.file = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| io(format!("opening {}", path.display()), &e))?,
            );
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(format!("{file} {offset} {length}\n").as_bytes())
                .and_then(|_| f.sync_data())
                .map_err(|e| io("recording sync progress", &e))?;
        }
        self.insert(file, offset, length);
        Ok(())
    }

    /// Rewrites the progress file with the merged intervals (after a plan was applied).
    fn rewrite(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join(PROGRESS_FILE);
        let tmp = dir.join(format!("{PROGRESS_FILE}.tmp"));
        let mut text = String::new();
        for (file, m) in &self.done {
            for (s, e) in m {
                text.push_str(&format!("{file} {s} {}\n", e - s));
            }
        }
        std::fs::write(&tmp, text).map_err(|e| io(format!("writing {}", tmp.display()), &e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(format!("renaming {}", tmp.display()), &e))?;
        files::sync_dir(dir)?;
        self.file = None;
        Ok(())
    }
}

/// Applies the cuts of a plan to a slave directory: files truncated, files deleted, and what
/// the progress file says about them forgotten. Returns (truncated, deleted).
pub fn apply_cuts(dir: &Path, truncate: &[(u32, u64)], delete: &[u32]) -> Result<(usize, usize)> {
    let mut progress = Progress::load(dir)?;
    for (id, len) in truncate {
        let path = files::data_file_path(dir, *id);
        match OpenOptions::new().write(true).open(&path) {
            Ok(f) => f
                .set_len(*len)
                .and_then(|_| f.sync_all())
                .map_err(|e| io(format!("truncating {}", path.display()), &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("opening {}", path.display()), &e)),
        }
        progress.forget(*id);
    }
    for id in delete {
        let path = files::data_file_path(dir, *id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(format!("deleting {}", path.display()), &e)),
        }
        progress.forget(*id);
    }
    progress.rewrite(dir)?;
    Ok((truncate.len(), delete.len()))
}

/// What an initial sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Bytes received in Range frames.
    pub bytes_fetched: u64,
    /// Bytes the plan asked for that an earlier run had already fetched.
    pub bytes_resumed: u64,
    pub files_deleted: usize,
    pub files_truncated: usize,
    pub live_from: Position,
}

fn closed(what: &str, c: Closed) -> Error {
    Error::new(ErrorCode::Io, format!("{what}: {c}"))
}

/// Serves a master's side of one connection after its handshake: answers an Inventory with a
/// plan (stream sessions) and RangeRequests with ranges of sealed files (transfer sessions).
/// Returns when the peer leaves or misbehaves (the reason is logged by the caller).
pub async fn serve_session(conn: Conn, master_dir: PathBuf, purpose: Purpose) -> Closed {
    serve_session_counted(conn, master_dir, purpose, Arc::new(AtomicU64::new(0))).await
}

/// How long a transfer session may stay silent before the master gives it up.
pub const TRANSFER_IDLE: Duration = Duration::from_secs(60);

/// [`serve_session`], adding the bytes of every range served to `served`.
pub async fn serve_session_counted(
    mut conn: Conn,
    master_dir: PathBuf,
    purpose: Purpose,
    served: Arc<AtomicU64>,
) -> Closed {
    let sealed: BTreeMap<u32, u64> = match sealed_files(&master_dir) {
        Ok(v) => v.into_iter().collect(),
        Err(e) => return Closed::Io(e.to_string()),
    };
    loop {
        let m = match conn.recv_within(TRANSFER_IDLE, "a request").await {
            Ok(m) => m,
            Err(c) => return c,
        };
        let reply = match (purpose, m) {
            (Purpose::Stream, Message::Inventory { files }) => {
                let dir = master_dir.clone();
                match tokio::task::spawn_blocking(move || plan(&dir, &files)).await {
                    Ok(Ok(plan)) => plan,
                    Ok(Err(e)) => return Closed::Io(e.to_string()),
                    Err(e) => return Closed::Io(e.to_string()),
                }
            }
            (Purpose::Transfer, Message::RangeRequest { range }) if range.file == INDEX_FILE_ID => {
                let path = master_dir.join(crate::store::checkpoint::INDEX_FILE);
                let read = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
                    Ok(d) => Ok(d),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(e),
                })
                .await;
                let mut data = match read {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => return Closed::Io(e.to_string()),
                    Err(e) => return Closed::Io(e.to_string()),
                };
                if data.len() as u64 > u64::from(super::frame::DEFAULT_MAX_FRAME) - (1 << 16) {
                    data.clear();
                }
                Message::Range {
                    file: INDEX_FILE_ID,
                    offset: 0,
                    crc: crc32fast::hash(&data),
                    data,
                }
            }
            (Purpose::Transfer, Message::RangeRequest { range }) => {
                let ok = sealed.get(&range.file).is_some_and(|len| {
                    range.length <= MAX_REQUEST
                        && range
                            .offset
                            .checked_add(range.length)
                            .is_some_and(|e| e <= *len)
                });
                if !ok {
                    let reason = format!("range {range:?} is not within a sealed data file");
                    conn.reject(&reason).await;
                    return Closed::Protocol(reason);
                }
                let path = files::data_file_path(&master_dir, range.file);
                let read = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                    let f = File::open(&path)?;
                    let mut data = vec![0u8; range.length as usize];
                    f.read_exact_at(&mut data, range.offset)?;
                    Ok(data)
                })
                .await;
                let data = match read {
                    Ok(Ok(d)) => d,
                    Ok(Err(e)) => return Closed::Io(e.to_string()),
                    Err(e) => return Closed::Io(e.to_string()),
                };
                served.fetch_add(data.len() as u64, Ordering::Relaxed);
                Message::Range {
                    file: range.file,
                    offset: range.offset,
                    crc: crc32fast::hash(&data),
                    data,
                }
            }
            (_, Message::Heartbeat) => Message::Heartbeat,
            (_, other) => {
                let reason = format!("unexpected {:?} on a {purpose:?} session", other.kind());
                conn.reject(&reason).await;
                return Closed::Protocol(reason);
            }
        };
        if let Err(c) = conn.send(&reply).await {
            return c;
        }
    }
}

/// Brings the sealed data files of `dir` up to those of the master at `master`, fetching over
/// `sessions` concurrent transfer sessions; resumes what an interrupted run left. The store in
/// `dir` must not be open.
pub async fn initial_sync(
    master: &KdbrUri,
    me: &Identity,
    dir: &Path,
    sessions: usize,
    chunk: u64,
) -> Result<SyncReport> {
    initial_sync_with(master, me, dir, sessions, chunk, &SyncHooks::default()).await
}

/// Progress of an initial sync, for status: bytes the current plan still needs, and bytes
/// fetched.
#[derive(Debug, Default)]
pub struct SyncCounters {
    pub to_fetch: AtomicU64,
    pub fetched: AtomicU64,
    /// The journal is being changed by a sync (see [`SYNCING_FILE`]).
    pub incomplete: AtomicBool,
}

/// What an initial sync reports to, and consults, as it goes.
#[derive(Default, Clone)]
pub struct SyncHooks {
    pub counters: Arc<SyncCounters>,
    /// Told of a plan's cuts before they reach the files.
    pub standby: Option<Arc<super::standby::Standby>>,
}

/// [`initial_sync`], reporting progress to (and cuts through) `hooks`.
pub async fn initial_sync_with(
    master: &KdbrUri,
    me: &Identity,
    dir: &Path,
    sessions: usize,
    chunk: u64,
    hooks: &SyncHooks,
) -> Result<SyncReport> {
    std::fs::create_dir_all(dir).map_err(|e| io(format!("creating {}", dir.display()), &e))?;
    let inv = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || inventory(&dir))
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??
    };
    let (mut conn, _) = connect(master, me, Purpose::Stream)
        .await
        .map_err(|c| closed("connecting", c))?;
    let held: BTreeMap<u32, u64> = inv.iter().map(|f| (f.id, f.length)).collect();
    conn.send(&Message::Inventory { files: inv })
        .await
        .map_err(|c| closed("sending the inventory", c))?;
    let (truncate, delete, fetch, live_from) =
        match conn.recv_within(PLAN_TIMEOUT, "the sync plan").await {
            Ok(Message::SyncPlan {
                truncate,
                delete,
                fetch,
                live_from,
            }) => (truncate, delete, fetch, live_from),
            Ok(other) => {
                return Err(Error::new(
                    ErrorCode::Io,
                    format!("expected a sync plan, got {:?}", other.kind()),
                ))
            }
            Err(c) => return Err(closed("waiting for the sync plan", c)),
        };
    let plan = (truncate, delete, fetch, live_from, held);
    match sync_by_plan(master, me, dir, sessions, chunk, hooks, plan).await {
        Ok(report) => Ok(report),
        Err(e) => {
            // The master learns why (a full disk, say): its status says why this slave does not
            // get in sync, and the files of the plan are no longer pinned for it.
            let reason = format!("this slave cannot sync: {e}");
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.reject(&reason)).await;
            Err(e)
        }
    }
}

/// A sync plan's files, in the order of the SyncPlan frame, and the lengths of the files the
/// slave reported.
type Plan = (
    Vec<(u32, u64)>,
    Vec<u32>,
    Vec<FileRange>,
    Position,
    BTreeMap<u32, u64>,
);

/// The rest of an initial sync, once the master's plan is here (its stream connection stays
/// open meanwhile).
async fn sync_by_plan(
    master: &KdbrUri,
    me: &Identity,
    dir: &Path,
    sessions: usize,
    chunk: u64,
    hooks: &SyncHooks,
    (truncate, delete, fetch, live_from, held): Plan,
) -> Result<SyncReport> {
    let mut report = SyncReport {
        live_from,
        ..SyncReport::default()
    };
    // A hostile or broken plan must not overflow, nor make us queue without bound.
    if chunk == 0 || chunk > MAX_REQUEST {
        return Err(Error::new(
            ErrorCode::Config,
            format!("a transfer chunk must be 1..={MAX_REQUEST} bytes, not {chunk}"),
        ));
    }
    for r in &fetch {
        let ok = r.length <= u64::from(u32::MAX)
            && r.offset
                .checked_add(r.length)
                .is_some_and(|e| e <= u64::from(u32::MAX));
        if !ok {
            return Err(Error::new(
                ErrorCode::Corrupt,
                format!("the master's plan asks for an impossible range {r:?}"),
            ));
        }
    }
    let changes = !(truncate.is_empty() && delete.is_empty() && fetch.is_empty());
    if changes {
        mark_incomplete(dir, &hooks.counters)?;
    }
    if let Some(sb) = &hooks.standby {
        sb.before_cuts(&truncate, &delete);
    }
    let (truncated, deleted) = apply_cuts(dir, &truncate, &delete)?;
    report.files_truncated = truncated;
    report.files_deleted = deleted;
    let mut progress = Progress::load(dir)?;
    // Progress recorded for a file that is not on disk (lost in a crash) is not trusted.
    let recorded: Vec<u32> = progress.done.keys().copied().collect();
    for id in recorded {
        if !files::data_file_path(dir, id).exists() {
            progress.forget(id);
        }
    }
    // Files fetched whole on an earlier run (prefix == length) count as done.
    let fetched_prefix: BTreeSet<u32> = fetch.iter().map(|r| r.file).collect();
    for id in fetched_prefix {
        if progress.prefix(id).is_none() {
            // Known to the master as a kept prefix: the bytes before the range are ours.
            if let Some(r) = fetch.iter().find(|r| r.file == id) {
                if r.offset > 0 {
                    progress.insert(id, 0, r.offset);
                }
            }
        }
    }
    progress.rewrite(dir)?;
    // Chunks still to fetch.
    let mut jobs = Vec::new();
    for r in &fetch {
        let mut off = r.offset;
        let end = r.offset + r.length;
        while off < end {
            let n = chunk.min(end - off);
            if progress.covers(r.file, off, n) {
                report.bytes_resumed += n;
            } else {
                jobs.push(FileRange {
                    file: r.file,
                    offset: off,
                    length: n,
                });
            }
            off += n;
        }
    }
    // Files get their final length first (the master's files are fully laid out).
    for r in &fetch {
        let path = files::data_file_path(dir, r.file);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(format!("creating {}", path.display()), &e))?;
        let want = r.offset + r.length;
        let have = f
            .metadata()
            .map_err(|e| io(format!("reading {}", path.display()), &e))?
            .len();
        if have < want {
            f.set_len(want)
                .map_err(|e| io(format!("sizing {}", path.display()), &e))?;
        }
    }
    // The files exist durably before any progress about them is recorded.
    files::sync_dir(dir)?;
    let remaining: u64 = jobs.iter().map(|j| j.length).sum();
    let jobs = Arc::new(Mutex::new(jobs.into_iter().rev().collect::<Vec<_>>()));
    let progress = Arc::new(Mutex::new(progress));
    hooks.counters.to_fetch.store(remaining, Ordering::Relaxed);
    // What this slave already holds of the sealed files: kept prefixes and resumed chunks.
    let kept: u64 = held
        .iter()
        .filter(|(id, _)| {
            !truncate.iter().any(|(t, _)| t == *id) && !delete.contains(id) && **id < live_from.file
        })
        .map(|(_, len)| *len)
        .sum::<u64>()
        + report.bytes_resumed;
    if remaining > 0 {
        log::info!(
            "replication: initial sync from {master}: {} MiB to fetch over {} sessions ({} MiB already here)",
            remaining >> 20,
            sessions.max(1),
            kept >> 20
        );
    }
    let fetched = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..sessions.max(1) {
        let (jobs, progress, fetched) = (jobs.clone(), progress.clone(), fetched.clone());
        let (master, me, dir) = (master.clone(), me.clone(), dir.to_path_buf());
        let counters = hooks.counters.clone();
        workers.push(tokio::spawn(async move {
            transfer_worker(&master, &me, &dir, jobs, progress, fetched, counters).await
        }));
    }
    let mut first_error = None;
    for w in workers {
        let r = w
            .await
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
            .and_then(|r| r);
        if let Err(e) = r {
            first_error.get_or_insert(e);
        }
    }
    report.bytes_fetched = fetched.load(Ordering::Relaxed);
    if let Some(e) = first_error {
        return Err(e);
    }
    files::sync_dir(dir)?;
    // The plan is carried out: the journal is a whole prefix of the master's (also when an
    // earlier run was interrupted after its last change, and this plan had nothing to do).
    mark_complete(dir, &hooks.counters)?;
    Ok(report)
}

/// Fetches the master's index checkpoint (empty: it has none to give).
pub async fn fetch_index(master: &KdbrUri, me: &Identity) -> Result<Vec<u8>> {
    let (mut conn, _) = connect(master, me, Purpose::Transfer)
        .await
        .map_err(|c| closed("opening a transfer session", c))?;
    conn.send(&Message::RangeRequest {
        range: FileRange {
            file: INDEX_FILE_ID,
            offset: 0,
            length: 0,
        },
    })
    .await
    .map_err(|c| closed("requesting the index", c))?;
    match conn.recv().await {
        Ok(Message::Range {
            file: INDEX_FILE_ID,
            data,
            ..
        }) => Ok(data),
        Ok(other) => Err(Error::new(
            ErrorCode::Io,
            format!("expected the index, got {:?}", other.kind()),
        )),
        Err(c) => Err(closed("receiving the index", c)),
    }
}

async fn transfer_worker(
    master: &KdbrUri,
    me: &Identity,
    dir: &Path,
    jobs: Arc<Mutex<Vec<FileRange>>>,
    progress: Arc<Mutex<Progress>>,
    fetched: Arc<AtomicU64>,
    counters: Arc<SyncCounters>,
) -> Result<()> {
    let next = || jobs.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let Some(mut job) = next() else {
        return Ok(());
    };
    let (mut conn, _) = connect(master, me, Purpose::Transfer)
        .await
        .map_err(|c| closed("opening a transfer session", c))?;
    loop {
        conn.send(&Message::RangeRequest { range: job })
            .await
            .map_err(|c| closed("requesting a range", c))?;
        // A master that went silent (a partition, a paused process) ends the session: the
        // sync is retried rather than stuck until TCP gives up.
        let (file, offset, data) = match conn.recv_within(TRANSFER_IDLE, "a range").await {
            Ok(Message::Range {
                file, offset, data, ..
            }) => (file, offset, data),
            Ok(other) => {
                return Err(Error::new(
                    ErrorCode::Io,
                    format!("expected a range, got {:?}", other.kind()),
                ))
            }
            Err(c) => return Err(closed("receiving a range", c)),
        };
        if file != job.file || offset != job.offset || data.len() as u64 != job.length {
            return Err(Error::new(
                ErrorCode::Corrupt,
                format!(
                    "asked for {job:?}, got {} bytes of file {file} at {offset}",
                    data.len()
                ),
            ));
        }
        fetched.fetch_add(data.len() as u64, Ordering::Relaxed);
        let _ = counters
            .to_fetch
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(data.len() as u64))
            });
        counters
            .fetched
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        let path = files::data_file_path(dir, file);
        let (dir2, progress2) = (dir.to_path_buf(), progress.clone());
        tokio::task::spawn_blocking(move || -> Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io(format!("opening {}", path.display()), &e))?;
            f.seek(SeekFrom::Start(offset))
                .and_then(|_| f.write_all(&data))
                .and_then(|_| f.sync_data())
                .map_err(|e| io(format!("writing {}", path.display()), &e))?;
            progress2.lock().unwrap_or_else(|p| p.into_inner()).record(
                &dir2,
                file,
                offset,
                data.len() as u64,
            )
        })
        .await
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))??;
        match next() {
            Some(j) => job = j,
            None => return Ok(()),
        }
    }
}

//! The journal: append-only data files in ActiveMQ KahaDB's format, with group commit.
//!
//! Many threads call [`Journal::append`]; one appender thread per journal turns what they queued
//! into write batches, writes each batch with one positioned write and, when a caller asked for
//! durability, one `fdatasync`. Records are read back by [`Location`] through memory maps, or
//! iterated in order with a [`Cursor`]. Opening a journal recovers it: the tail file is scanned to
//! the last batch whose checksum holds, and whatever follows it is discarded.

mod cursor;
pub(crate) mod files;
pub mod format;
mod recovery;
mod writer;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memmap2::Mmap;

use crate::error::{Error, ErrorCode, Result};

pub use cursor::Cursor;
pub use files::{data_file_name, LOCK_FILE};
pub use recovery::{CorruptRange, RecoveryReport};

use format::{BATCH_CONTROL_SIZE, EOF_RECORD, RECORD_HEAD, USER_RECORD_TYPE};

/// Where a record is: data file id, offset of its 5-byte header, and its total size (header
/// included), exactly as KahaDB's `Location`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Location {
    pub file_id: u32,
    pub offset: u32,
    pub size: u32,
}

impl Location {
    pub fn new(file_id: u32, offset: u32, size: u32) -> Location {
        Location {
            file_id,
            offset,
            size,
        }
    }

    /// Length of the record's payload.
    pub fn payload_len(&self) -> usize {
        (self.size as usize).saturating_sub(RECORD_HEAD)
    }

    fn end(&self) -> Pos {
        Pos::new(self.file_id, self.offset.saturating_add(self.size))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}+{}", self.file_id, self.offset, self.size)
    }
}

/// A byte position in the journal: (file id, offset), ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    pub file_id: u32,
    pub offset: u32,
}

impl Pos {
    pub fn new(file_id: u32, offset: u32) -> Pos {
        Pos { file_id, offset }
    }
}

/// When the appender calls `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStrategy {
    /// A batch holding a synchronous append is synced before those appends return.
    Always,
    /// Synchronous appends return once written; the journal is synced at this interval.
    Periodic(Duration),
    /// Only [`Journal::sync`], file rotation and close sync.
    Never,
}

/// How a new data file is prepared before it is written (see `docs/FORMAT.md` for measurements).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocation {
    /// Write the whole file with zeros ahead of time, in the background.
    Zeros,
    /// Set the file length (a sparse file).
    Sparse,
    /// Grow the file as it is written.
    None,
}

/// Journal settings. `Default` gives KahaDB's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalConfig {
    /// Largest size of a data file; a batch never spans two files. Default 32 MiB.
    pub max_file_length: u32,
    /// Largest size of one write batch (a larger record gets a batch of its own). Default 4 MiB.
    pub max_batch_size: u32,
    /// When to sync. Default [`SyncStrategy::Always`].
    pub sync_strategy: SyncStrategy,
    /// How to prepare new files. Default [`Preallocation::Zeros`].
    pub preallocation: Preallocation,
}

/// Longest a synchronous caller spins before it parks (see `append_with`).
const MAX_SPIN: Duration = Duration::from_micros(1000);

/// Smallest accepted `max_file_length`.
pub const MIN_FILE_LENGTH: u32 = 4096;
/// Overhead of one record alone in a batch: control record, record header and the EOF marker.
const SINGLE_RECORD_OVERHEAD: usize = BATCH_CONTROL_SIZE + RECORD_HEAD + EOF_RECORD.len();

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            max_file_length: 32 * 1024 * 1024,
            max_batch_size: 4 * 1024 * 1024,
            sync_strategy: SyncStrategy::Always,
            preallocation: Preallocation::Zeros,
        }
    }
}

impl JournalConfig {
    /// Checks the settings, with a message naming the bad value.
    pub fn validate(&self) -> Result<()> {
        if self.max_file_length < MIN_FILE_LENGTH || self.max_file_length > i32::MAX as u32 {
            return Err(Error::new(
                ErrorCode::Config,
                format!(
                    "max_file_length {} is out of range ({}..={})",
                    self.max_file_length,
                    MIN_FILE_LENGTH,
                    i32::MAX
                ),
            ));
        }
        if (self.max_batch_size as usize) < SINGLE_RECORD_OVERHEAD + 1
            || self.max_batch_size > self.max_file_length
        {
            return Err(Error::new(
                ErrorCode::Config,
                format!(
                    "max_batch_size {} is out of range ({}..=max_file_length {})",
                    self.max_batch_size,
                    SINGLE_RECORD_OVERHEAD + 1,
                    self.max_file_length
                ),
            ));
        }
        if let SyncStrategy::Periodic(d) = self.sync_strategy {
            if d.is_zero() {
                return Err(Error::new(
                    ErrorCode::Config,
                    "the periodic sync interval must be greater than zero",
                ));
            }
        }
        Ok(())
    }

    /// The largest record payload this configuration accepts.
    pub fn max_record_len(&self) -> usize {
        self.max_file_length as usize - SINGLE_RECORD_OVERHEAD
    }
}

/// Counters since the journal was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JournalStats {
    /// Records appended.
    pub records: u64,
    /// Batches written (each one positioned write).
    pub batches: u64,
    /// Bytes written in batches, control records included.
    pub bytes: u64,
    /// `fdatasync` calls.
    pub syncs: u64,
    /// Batches whose write or sync failed.
    pub failed_batches: u64,
}

/// How an append waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Async,
    Sync,
    Deferred,
}

/// A queued record's claim on durability: see [`Journal::append_deferred`].
pub struct Ticket {
    seq: u64,
    outcome: Arc<Outcome>,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("seq", &self.seq).finish()
    }
}

/// The outcome of one batch, shared with the callers waiting on it. Its condition variable
/// (used with the state mutex) wakes exactly the callers of this batch: when it is written,
/// synced or failed, and when the writer token frees up while it is next in line.
#[derive(Default)]
struct Outcome {
    failed: OnceLock<Error>,
    cv: Condvar,
}

/// A batch being filled or waiting for the appender.
struct Batch {
    seq: u64,
    file_id: u32,
    offset: u32,
    /// The control record (filled in by the appender), then the records.
    buf: Vec<u8>,
    sync: bool,
    sync_records: u32,
    async_records: u32,
    outcome: Arc<Outcome>,
}

impl Batch {
    fn end(&self) -> u32 {
        self.offset + self.buf.len() as u32
    }

    fn contains(&self, loc: &Location) -> bool {
        loc.file_id == self.file_id && loc.offset >= self.offset && loc.offset < self.end()
    }
}

/// Everything callers and the appender share, under one mutex.
struct State {
    closed: bool,
    /// File and end offset of the last assigned batch (the next batch starts here).
    assign: Pos,
    open: Option<Batch>,
    queue: VecDeque<Batch>,
    pending_bytes: usize,
    next_seq: u64,
    /// Every batch with `seq <= written_seq` has been written (or has failed).
    written_seq: u64,
    /// Every batch with `seq <= durable_seq` is on disk (or has failed).
    durable_seq: u64,
    /// The highest seq a caller of `sync` wants durable.
    sync_request: u64,
    /// Bumped when a requested sync fails; `sync_error` says why.
    sync_error_gen: u64,
    sync_error: Option<Error>,
    /// End of what has been written: readers and cursors see bytes below it.
    written: Pos,
    /// The batch the appender is writing: (file, start, end).
    in_progress: Option<(u32, u32, u32)>,
    /// Asynchronous appends were lost to a failed write; reported by the next `sync`.
    lost_async: Option<Error>,
    /// Set after an `fdatasync` of a data file failed: the kernel may have dropped the dirty
    /// pages, so no later sync can vouch for them. Appends and syncs fail until the journal is
    /// reopened (and recovered) — fail-stop, as databases do.
    failed: Option<Error>,
    /// Start of the first failed batch not yet padded: readers and cursors stay below it.
    hole_start: Option<Pos>,
    /// The data files that exist.
    files: BTreeSet<u32>,
    /// The file the appender writes.
    active_file: u32,
    appender_idle: bool,
    /// The writer token: set while a thread writes or syncs (see `writer`).
    writing: bool,
    stats: JournalStats,
    /// Synchronous appends in progress (record queued, caller not yet returned).
    sync_callers: u32,
    /// Recent peak of `sync_callers`, decaying: how many writers a batch can expect.
    sync_peak: u32,
    /// A would-be leader is waiting for the open batch to fill.
    leader_waiting: bool,
    /// Moving average of the time one batch takes to write and sync, in microseconds.
    batch_micros: u64,
    spare: Vec<Vec<u8>>,
}

impl State {
    /// End of what readers may touch: the written watermark, or the first failed batch not
    /// yet padded, whichever is lower.
    fn readable(&self) -> Pos {
        match self.hole_start {
            Some(h) if h < self.written => h,
            _ => self.written,
        }
    }
}

struct Inner {
    dir: PathBuf,
    config: JournalConfig,
    state: Mutex<State>,
    /// Wakes the appender.
    work: Condvar,
    /// Wakes callers waiting for progress (writes, syncs, room in the queue).
    done: Condvar,
    maps: RwLock<HashMap<u32, Arc<Mmap>>>,
    report: RecoveryReport,
    /// Only the holder of the writer token (`State::writing`) locks it.
    writer: Mutex<writer::Writer>,
    /// Bumped, under the state lock, whenever a batch is written or synced or the token is
    /// given back: a waiter can watch it without the lock (see `append_with`).
    epoch: AtomicU64,
    /// Sees every batch as it is written (replication), in journal order.
    tap: RwLock<Option<Arc<BatchTap>>>,
}

/// A function that sees each batch written to the journal: data file, offset, and the batch's
/// bytes (the journal also wrote its end-of-file marker, [`format::EOF_RECORD`], right after
/// them). Called in journal order by the writer, so it must be quick (queue, do not block).
pub type BatchTap = dyn Fn(u32, u32, &[u8]) + Send + Sync;

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent before it can panic (the only
        // caller code run under the lock is guarded by catch_unwind), so a poisoned lock is
        // taken over rather than propagated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn writer(&self) -> MutexGuard<'_, writer::Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, cv: &Condvar, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        cv.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    /// A read-only map of a data file covering at least `need` bytes.
    fn map(&self, file_id: u32, need: usize) -> Result<Arc<Mmap>> {
        if let Some(m) = self.read_maps().get(&file_id) {
            if m.len() >= need {
                return Ok(m.clone());
            }
        }
        let path = files::data_file_path(&self.dir, file_id);
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::new(
                    ErrorCode::NotFound,
                    format!("data file {} does not exist", path.display()),
                )
            } else {
                Error::io(format!("opening {}", path.display()), &e)
            }
        })?;
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), &e))?
            .len();
        if len < need as u64 {
            return Err(Error::new(
                ErrorCode::InvalidLocation,
                format!(
                    "{} is {len} bytes long, the read needs {need}",
                    path.display()
                ),
            ));
        }
        if len == 0 {
            return Err(Error::new(
                ErrorCode::InvalidLocation,
                format!("{} is empty", path.display()),
            ));
        }
        // SAFETY: the map is read-only and kahadb never truncates or shrinks a data file while
        // the journal is open (the directory lock keeps other kahadb and KahaDB instances out),
        // so the mapped range stays backed by the file. Readers only touch bytes below the
        // readable watermark (`State::readable`): written successfully and never rewritten
        // (failed batches, which padding later rewrites, lie above it until padded).
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| Error::io(format!("mapping {}", path.display()), &e))?;
        let map = Arc::new(map);
        self.write_maps().insert(file_id, map.clone());
        // A removal racing with this map must not leave the deleted file pinned in the cache.
        if !self.lock().files.contains(&file_id) {
            self.forget_map(file_id);
        }
        Ok(map)
    }

    fn forget_map(&self, file_id: u32) {
        self.write_maps().remove(&file_id);
    }

    fn read_maps(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, Arc<Mmap>>> {
        self.maps.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_maps(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, Arc<Mmap>>> {
        self.maps.write().unwrap_or_else(|p| p.into_inner())
    }

    fn closed_error(&self) -> Error {
        Error::new(
            ErrorCode::Closed,
            format!("journal {} is closed", self.dir.display()),
        )
    }

    fn is_corrupt(&self, loc: &Location) -> bool {
        self.report.corrupt_ranges.iter().any(|r| {
            r.file_id == loc.file_id && loc.offset < r.end && loc.offset + loc.size > r.start
        })
    }
}

/// An open journal. All methods take `&self` and are safe to call from many threads.
pub struct Journal {
    inner: Arc<Inner>,
    appender: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<files::DirLock>>,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and recovers it.
    pub fn open(dir: impl AsRef<Path>, config: JournalConfig) -> Result<Journal> {
        Self::open_with(dir, config, |_| Ok(()))
    }

    /// Opens the journal like [`Journal::open`], running `prepare` on the directory once it is
    /// locked and before anything in it is read (to clear it, say).
    pub fn open_with(
        dir: impl AsRef<Path>,
        config: JournalConfig,
        prepare: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Journal> {
        config.validate()?;
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating directory {}", dir.display()), &e))?;
        let lock = files::DirLock::acquire(&dir)?;
        prepare(&dir)?;
        let recovered = recovery::recover(&dir, &config)?;
        let report = recovered.report.clone();
        if !report.corrupt_ranges.is_empty() || report.discarded_tail_bytes > 0 {
            log::warn!("journal {}: {}", dir.display(), report.summary());
        }
        let tail = Pos::new(report.tail_file, report.append_offset);
        let state = State {
            closed: false,
            assign: tail,
            open: None,
            queue: VecDeque::new(),
            pending_bytes: 0,
            next_seq: 1,
            written_seq: 0,
            durable_seq: 0,
            sync_request: 0,
            sync_error_gen: 0,
            sync_error: None,
            written: tail,
            in_progress: None,
            lost_async: None,
            failed: None,
            hole_start: None,
            files: recovered.files.iter().copied().collect(),
            active_file: report.tail_file,
            appender_idle: false,
            writing: false,
            stats: JournalStats::default(),
            sync_callers: 0,
            sync_peak: 0,
            leader_waiting: false,
            batch_micros: 0,
            spare: Vec::new(),
        };
        let w = writer::Writer::new(
            dir.clone(),
            config,
            recovered.tail_file_handle,
            tail.file_id,
        );
        let inner = Arc::new(Inner {
            dir: dir.clone(),
            config,
            state: Mutex::new(state),
            work: Condvar::new(),
            done: Condvar::new(),
            maps: RwLock::new(HashMap::new()),
            report,
            writer: Mutex::new(w),
            epoch: AtomicU64::new(0),
            tap: RwLock::new(None),
        });
        let appender_inner = inner.clone();
        let handle = std::thread::Builder::new()
            .name("kahadb-appender".into())
            .spawn(move || writer::run_appender(&appender_inner))
            .map_err(|e| Error::io("starting the appender thread", &e))?;
        Ok(Journal {
            inner,
            appender: Mutex::new(Some(handle)),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// The journal's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The settings the journal runs with.
    pub fn config(&self) -> &JournalConfig {
        &self.inner.config
    }

    /// What recovery found when the journal was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// Appends one record. With `sync`, returns once the record is written and, under
    /// [`SyncStrategy::Always`], on disk. Without, returns as soon as the record is queued; it
    /// can be read back at once.
    pub fn append(&self, data: &[u8], sync: bool) -> Result<Location> {
        self.append_with(data.len(), sync, |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })
    }

    /// Appends a record of `len` bytes that `fill` writes in place into the batch buffer. `fill`
    /// runs under the journal's lock: it must be quick and must not block or call the journal.
    /// If it fails (or panics), nothing is appended and its error is returned.
    pub fn append_with<F>(&self, len: usize, sync: bool, fill: F) -> Result<Location>
    where
        F: FnOnce(&mut [u8]) -> Result<()>,
    {
        let mode = if sync { Mode::Sync } else { Mode::Async };
        self.append_inner(len, mode, fill).map(|(loc, _)| loc)
    }

    /// Queues a record to be made durable and returns its location at once, with a ticket to
    /// wait for its durability with [`Journal::wait_durable`]. Records queued by one thread
    /// land in the journal in the order of the calls, so a caller can update an index in
    /// journal order under its own lock and wait for the disk outside of it. If nobody waits,
    /// the record is still written and synced (by the appender thread).
    pub fn append_deferred(&self, data: &[u8]) -> Result<(Location, Ticket)> {
        let (loc, ticket) = self.append_inner(data.len(), Mode::Deferred, |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })?;
        match ticket {
            Some(t) => Ok((loc, t)),
            None => Err(Error::new(
                ErrorCode::Internal,
                "no ticket for a deferred append",
            )),
        }
    }

    /// Waits until the record of `ticket` is durable (as a synchronous append would), leading
    /// the write if nobody else is writing.
    pub fn wait_durable(&self, ticket: &Ticket) -> Result<()> {
        let st = self.inner.lock();
        self.wait_for(st, ticket.seq, &ticket.outcome)
    }

    fn append_inner<F>(&self, len: usize, mode: Mode, fill: F) -> Result<(Location, Option<Ticket>)>
    where
        F: FnOnce(&mut [u8]) -> Result<()>,
    {
        let sync = mode == Mode::Sync;
        let cfg = &self.inner.config;
        if len == 0 {
            return Err(Error::new(
                ErrorCode::EmptyRecord,
                "cannot append an empty record",
            ));
        }
        if len > cfg.max_record_len() {
            return Err(Error::new(
                ErrorCode::RecordTooLarge,
                format!(
                    "record of {len} bytes is larger than the {} bytes a data file of max_file_length {} can hold",
                    cfg.max_record_len(),
                    cfg.max_file_length
                ),
            ));
        }
        let rec_size = len + RECORD_HEAD;
        let max_pending = 2 * cfg.max_batch_size as usize;
        let mut st = self.inner.lock();
        loop {
            if st.closed {
                return Err(self.inner.closed_error());
            }
            if let Some(e) = &st.failed {
                return Err(e.clone());
            }
            if st.pending_bytes == 0 || st.pending_bytes + rec_size <= max_pending {
                break;
            }
            st = self.inner.wait(&self.inner.done, st);
        }

        // Close the open batch if the record does not fit in it.
        let fits = st.open.as_ref().is_some_and(|b| {
            let new_len = b.buf.len() + rec_size;
            new_len <= cfg.max_batch_size as usize
                && b.offset as usize + new_len + EOF_RECORD.len() <= cfg.max_file_length as usize
        });
        if !fits {
            if let Some(b) = st.open.take() {
                st.queue.push_back(b);
            }
            let mut at = st.assign;
            if at.offset as usize + BATCH_CONTROL_SIZE + rec_size + EOF_RECORD.len()
                > cfg.max_file_length as usize
            {
                at = Pos::new(at.file_id + 1, 0);
            }
            let mut buf = st.spare.pop().unwrap_or_default();
            buf.clear();
            buf.resize(BATCH_CONTROL_SIZE, 0);
            let seq = st.next_seq;
            st.next_seq += 1;
            st.pending_bytes += BATCH_CONTROL_SIZE;
            st.open = Some(Batch {
                seq,
                file_id: at.file_id,
                offset: at.offset,
                buf,
                sync: false,
                sync_records: 0,
                async_records: 0,
                outcome: Arc::new(Outcome::default()),
            });
        }

        let batch = match st.open.as_mut() {
            Some(b) => b,
            None => return Err(Error::new(ErrorCode::Internal, "no open batch")),
        };
        let start = batch.buf.len();
        batch.buf.resize(start + rec_size, 0);
        let filled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fill(&mut batch.buf[start + RECORD_HEAD..])
        }));
        let filled = match filled {
            Ok(r) => r,
            Err(_) => Err(Error::new(
                ErrorCode::Internal,
                "the record producer panicked; nothing was appended",
            )),
        };
        if let Err(e) = filled {
            batch.buf.truncate(start);
            if start == BATCH_CONTROL_SIZE {
                // The batch was opened for this record alone: drop it.
                // It is the newest batch: give its sequence number back too, or a later
                // sync() would wait for a batch that never comes.
                if let Some(b) = st.open.take() {
                    st.pending_bytes -= BATCH_CONTROL_SIZE;
                    st.next_seq -= 1;
                    st.spare.push(b.buf);
                }
            }
            return Err(e);
        }
        format::write_record_header(&mut batch.buf[start..], rec_size as u32, USER_RECORD_TYPE);
        let loc = Location::new(batch.file_id, batch.offset + start as u32, rec_size as u32);
        match mode {
            Mode::Sync => {
                batch.sync = true;
                batch.sync_records += 1;
            }
            // Synced when written, but led by the appender unless its caller comes to wait.
            Mode::Deferred => {
                batch.sync = true;
                batch.async_records += 1;
            }
            Mode::Async => batch.async_records += 1,
        }
        let sync_records = batch.sync_records;
        let seq = batch.seq;
        let outcome = batch.outcome.clone();
        st.assign = Pos::new(batch.file_id, batch.end());
        if sync && st_leader_waits(sync_records, st.leader_waiting, st.sync_peak) {
            outcome.cv.notify_all();
        }
        st.pending_bytes += rec_size;
        st.stats.records += 1;
        if !sync {
            if st.appender_idle {
                st.appender_idle = false;
                self.inner.work.notify_one();
            }
            let ticket = (mode == Mode::Deferred).then_some(Ticket { seq, outcome });
            return Ok((loc, ticket));
        }
        self.wait_for(st, seq, &outcome).map(|()| (loc, None))
    }

    /// Waits for batch `seq` to be written (and synced under `Always`), leading writes when the
    /// writer is free.
    fn wait_for<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        seq: u64,
        outcome: &Arc<Outcome>,
    ) -> Result<()> {
        let needs_disk = self.inner.config.sync_strategy == SyncStrategy::Always;
        st.sync_callers += 1;
        let mut waiting_since = None;
        let mut spin_until: Option<Instant> = None;
        let result = loop {
            if st.written_seq >= seq {
                if let Some(e) = outcome.failed.get() {
                    break Err(e.clone());
                }
                if !needs_disk || st.durable_seq >= seq {
                    break Ok(());
                }
            }
            if !writer::can_lead(&st) {
                // Among several writers, spin (yielding) for about one batch time before
                // parking: the batch will likely be done by then, and a parked thread takes
                // long to wake on a busy machine, which left the next batch half empty.
                if st.sync_peak > 1 {
                    let budget = Duration::from_micros(3 * st.batch_micros).min(MAX_SPIN);
                    let deadline = *spin_until.get_or_insert_with(|| Instant::now() + budget);
                    if Instant::now() < deadline {
                        let seen = self.inner.epoch.load(Ordering::Acquire);
                        drop(st);
                        while self.inner.epoch.load(Ordering::Acquire) == seen
                            && Instant::now() < deadline
                        {
                            std::thread::yield_now();
                        }
                        st = self.inner.lock();
                        continue;
                    }
                }
                st = self.inner.wait(&outcome.cv, st);
                continue;
            }
            // Lead the write ourselves (no hand-off to another thread), unless other writers
            // are about to join the open batch: then give them a moment (group commit).
            let since = *waiting_since.get_or_insert_with(Instant::now);
            match writer::group_delay(&st, since) {
                Some(wait) => {
                    st.leader_waiting = true;
                    st = outcome
                        .cv
                        .wait_timeout(st, wait)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                    st.leader_waiting = false;
                }
                None => st = writer::lead(&self.inner, st),
            }
        };
        st.sync_callers -= 1;
        result
    }

    /// Reads the payload of the record at `loc`.
    pub fn read(&self, loc: Location) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(loc, &mut out)?;
        Ok(out)
    }

    /// Reads the payload of the record at `loc` into `out` (replacing its contents).
    pub fn read_into(&self, loc: Location, out: &mut Vec<u8>) -> Result<()> {
        if loc.size as usize <= RECORD_HEAD
            || loc.file_id == 0
            || u64::from(loc.offset) + u64::from(loc.size) > i32::MAX as u64
        {
            return Err(invalid_location(loc, "malformed location"));
        }
        {
            let mut st = self.inner.lock();
            loop {
                if st.closed {
                    return Err(self.inner.closed_error());
                }
                if !st.files.contains(&loc.file_id) && loc.file_id < st.active_file {
                    return Err(Error::new(
                        ErrorCode::NotFound,
                        format!("location {loc}: data file {} was removed", loc.file_id),
                    ));
                }
                if loc.end() <= st.readable() {
                    break;
                }
                if loc.end() <= st.written {
                    return Err(Error::new(
                        st.failed.as_ref().map_or(ErrorCode::Io, |e| e.code()),
                        format!("location {loc}: the write of this record failed, it was lost"),
                    ));
                }
                // Not written yet: copy it from a queued batch, or wait for the write.
                let queued = st
                    .open
                    .iter()
                    .chain(st.queue.iter())
                    .find(|b| b.contains(&loc));
                if let Some(b) = queued {
                    let at = (loc.offset - b.offset) as usize;
                    return copy_record(&b.buf, at, loc, out);
                }
                let writing = st
                    .in_progress
                    .is_some_and(|(f, s, e)| f == loc.file_id && loc.offset >= s && loc.offset < e);
                if !writing {
                    return Err(invalid_location(loc, "beyond the end of the journal"));
                }
                st = self.inner.wait(&self.inner.done, st);
            }
        }
        if self.inner.is_corrupt(&loc) {
            return Err(Error::new(
                ErrorCode::Corrupt,
                format!("location {loc} lies in a corrupt range of the journal"),
            ));
        }
        let map = self
            .inner
            .map(loc.file_id, (loc.offset + loc.size) as usize)?;
        copy_record(&map, loc.offset as usize, loc, out)
    }

    /// A cursor over the user records, in journal order: from the first record when `after` is
    /// `None`, else from the first record after `after`. A cursor sees records once they are
    /// written; at the end it returns `None` and can be polled again later.
    pub fn cursor(&self, after: Option<Location>) -> Cursor {
        Cursor::new(self.inner.clone(), after)
    }

    /// Makes everything appended so far durable, whatever the sync strategy. Also reports, once,
    /// an earlier failed write that lost asynchronous appends.
    pub fn sync(&self) -> Result<()> {
        let mut st = self.inner.lock();
        if st.closed {
            return Err(self.inner.closed_error());
        }
        if let Some(e) = &st.failed {
            return Err(e.clone());
        }
        if let Some(e) = st.lost_async.take() {
            return Err(e);
        }
        let target = st.next_seq - 1;
        if st.durable_seq >= target {
            return Ok(());
        }
        let gen = st.sync_error_gen;
        st.sync_request = st.sync_request.max(target);
        st.appender_idle = false;
        self.inner.work.notify_one();
        loop {
            if st.sync_error_gen != gen {
                return Err(st
                    .sync_error
                    .clone()
                    .unwrap_or_else(|| Error::new(ErrorCode::Io, "syncing the journal failed")));
            }
            if st.durable_seq >= target {
                return match st.lost_async.take() {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            st = self.inner.wait(&self.inner.done, st);
        }
    }

    /// Writes out and syncs everything queued, stops the appender and releases the directory.
    /// Closing twice is harmless; other calls after close fail with [`ErrorCode::Closed`].
    pub fn close(&self) -> Result<()> {
        // Held until the directory is released: a concurrent close waits for this one to
        // finish instead of returning (and unlocking the directory) while the appender still
        // writes.
        let mut appender = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut st = self.inner.lock();
            if !st.closed {
                st.closed = true;
                self.inner.work.notify_all();
                self.inner.done.notify_all();
            }
        }
        let mut result = Ok(());
        if let Some(h) = appender.take() {
            if h.join().is_err() {
                result = Err(Error::new(
                    ErrorCode::Internal,
                    "the appender thread panicked",
                ));
            }
            let st = self.inner.lock();
            if let Some(e) = st.failed.clone().or_else(|| st.lost_async.clone()) {
                result = result.and(Err(e));
            }
        }
        self.inner.write_maps().clear();
        self.lock.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(appender);
        result
    }

    /// Deletes data files that are no longer needed. The file being written (and any later
    /// one) cannot be removed.
    pub fn remove_data_files(&self, ids: &[u32]) -> Result<()> {
        let mut st = self.inner.lock();
        if st.closed {
            return Err(self.inner.closed_error());
        }
        let min_live = st.active_file.min(st.written.file_id);
        for id in ids {
            if *id > st.active_file.max(st.written.file_id) {
                return Err(Error::new(
                    ErrorCode::NotFound,
                    format!("data file {id} does not exist"),
                ));
            }
            if *id >= min_live {
                return Err(Error::new(
                    ErrorCode::IllegalState,
                    format!("data file {id} is being written and cannot be removed"),
                ));
            }
            if !st.files.contains(id) {
                return Err(Error::new(
                    ErrorCode::NotFound,
                    format!("data file {id} does not exist"),
                ));
            }
        }
        for id in ids {
            st.files.remove(id);
        }
        drop(st);
        let mut first_err = None;
        for id in ids {
            self.inner.forget_map(*id);
            let path = files::data_file_path(&self.inner.dir, *id);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound && first_err.is_none() {
                    first_err = Some(Error::io(format!("removing {}", path.display()), &e));
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        files::sync_dir(&self.inner.dir)
    }

    /// The ids of the data files, oldest first.
    pub fn data_file_ids(&self) -> Vec<u32> {
        self.inner.lock().files.iter().copied().collect()
    }

    /// Installs (or, with `None`, removes) the function that sees every batch written from now
    /// on (see [`BatchTap`]).
    pub fn set_batch_tap(&self, tap: Option<Arc<BatchTap>>) {
        *self.inner.tap.write().unwrap_or_else(|p| p.into_inner()) = tap;
    }

    /// Counters since the journal was opened.
    pub fn stats(&self) -> JournalStats {
        self.inner.lock().stats
    }

    /// The position just past the last written record (where the next batch goes).
    pub fn written_position(&self) -> Pos {
        self.inner.lock().written
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            log::error!("closing journal {}: {e}", self.inner.dir.display());
        }
    }
}

/// Whether a record just added completes the batch a waiting leader holds out for.
fn st_leader_waits(sync_records: u32, leader_waiting: bool, peak: u32) -> bool {
    leader_waiting && sync_records >= peak
}

fn invalid_location(loc: Location, why: &str) -> Error {
    Error::new(
        ErrorCode::InvalidLocation,
        format!("no record at location {loc}: {why}"),
    )
}

/// Copies the payload of the record at `at` in `bytes`, checking its header against `loc`.
fn copy_record(bytes: &[u8], at: usize, loc: Location, out: &mut Vec<u8>) -> Result<()> {
    let end = at + loc.size as usize;
    if end > bytes.len() {
        return Err(invalid_location(loc, "past the end of the data"));
    }
    let size = format::be_u32(bytes, at);
    let kind = bytes[at + 4];
    if size != loc.size || kind != USER_RECORD_TYPE {
        return Err(invalid_location(
            loc,
            &format!("the header there says size {size}, type {kind}"),
        ));
    }
    out.clear();
    out.extend_from_slice(&bytes[at + RECORD_HEAD..end]);
    Ok(())
}

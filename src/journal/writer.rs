//! Writing batches: group commit with a rotating leader.
//!
//! Whoever holds the *writer token* (`State::writing`) takes the next queued batch, writes it
//! with one positioned write and syncs it if needed, while the others fill the next batch. A
//! caller of a synchronous append takes the token itself when it is free (no hand-off to another
//! thread on the latency path); the appender thread takes it for batches nobody waits on, for
//! `sync` requests, for periodic syncs and at close.
//!
//! Invariant: on disk, every data file is a run of valid batches followed by an EOF marker (or
//! zeros). A batch whose write fails leaves a hole; before anything after it is written, the hole
//! is filled with a padding batch, so no acknowledged record ever sits behind a break that a
//! reader or recovery would stop at.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};

use super::files;
use super::format::{self, BATCH_CONTROL_SIZE, EOF_RECORD};
use super::{Batch, Inner, JournalConfig, Pos, State, SyncStrategy};

/// A byte range of a data file whose batch failed to be written and still needs padding.
#[derive(Debug, Clone, Copy)]
struct Hole {
    file_id: u32,
    start: u32,
    end: u32,
}

type Prealloc = JoinHandle<Result<(File, PathBuf)>>;

/// The file being written and everything only the token holder touches.
pub(super) struct Writer {
    dir: PathBuf,
    config: JournalConfig,
    file_id: u32,
    /// Shared so that a leader can `fdatasync` after handing the token on.
    file: Arc<File>,
    path: Arc<PathBuf>,
    unsynced: bool,
    last_sync: Instant,
    holes: Vec<Hole>,
    prealloc: Option<Prealloc>,
    /// An `fdatasync` of a data file failed: the journal must stop (see `State::failed`).
    fatal: Option<Error>,
}

impl Writer {
    pub(super) fn new(dir: PathBuf, config: JournalConfig, file: File, file_id: u32) -> Writer {
        let path = Arc::new(files::data_file_path(&dir, file_id));
        let mut w = Writer {
            dir,
            config,
            file_id,
            file: Arc::new(file),
            path,
            unsynced: false,
            last_sync: Instant::now(),
            holes: Vec::new(),
            prealloc: None,
            fatal: None,
        };
        w.start_prealloc();
        w
    }

    /// Writes `bytes` at `offset` of data file `file_id`: pads earlier holes first, rotates to
    /// the file if it is the next one.
    fn write_at(&mut self, inner: &Inner, file_id: u32, offset: u32, bytes: &[u8]) -> Result<()> {
        self.pad_holes(Some(inner))?;
        while self.file_id < file_id {
            self.rotate(inner)?;
            self.pad_holes(Some(inner))?;
        }
        if file_id != self.file_id {
            return Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "batch for data file {file_id} reached the writer while it writes {}",
                    self.file_id
                ),
            ));
        }
        self.file
            .write_all_at(bytes, u64::from(offset))
            .map_err(|e| {
                Error::io(
                    format!("writing {} at offset {offset}", self.path.display()),
                    &e,
                )
            })
    }

    fn add_hole(&mut self, file_id: u32, start: u32, end: u32) {
        if let Some(last) = self.holes.last_mut() {
            if last.file_id == file_id && last.end == start {
                last.end = end;
                return;
            }
        }
        self.holes.push(Hole {
            file_id,
            start,
            end,
        });
    }

    /// Fills the holes in the current file with padding batches (which the batch tap sees too,
    /// so that replicas get them).
    fn pad_holes(&mut self, inner: Option<&Inner>) -> Result<()> {
        while let Some(h) = self.holes.first().copied() {
            if h.file_id != self.file_id {
                return Ok(());
            }
            let mut pad = format::padding_batch((h.end - h.start) as usize);
            let pad_len = pad.len();
            pad.extend_from_slice(&EOF_RECORD);
            self.file
                .write_all_at(&pad, u64::from(h.start))
                .map_err(|e| {
                    Error::io(
                        format!("padding {} at offset {}", self.path.display(), h.start),
                        &e,
                    )
                })?;
            if let Some(inner) = inner {
                let tap = inner.tap.read().unwrap_or_else(|p| p.into_inner()).clone();
                if let Some(tap) = tap {
                    tap(h.file_id, h.start, &pad[..pad_len]);
                }
            }
            self.unsynced = true;
            self.holes.remove(0);
            log::info!(
                "journal {}: padded the failed write at db-{}.log:{}..{}",
                self.dir.display(),
                h.file_id,
                h.start,
                h.end
            );
        }
        Ok(())
    }

    /// Seals the current file (synced) and moves to the next one.
    fn rotate(&mut self, inner: &Inner) -> Result<()> {
        if self.unsynced {
            self.datasync()?;
        }
        let next = self.file_id + 1;
        let ready = match self.prealloc.take().map(|h| h.join()) {
            Some(Ok(Ok(f))) => Some(f),
            Some(Ok(Err(e))) => {
                log::warn!("journal {}: preallocation failed: {e}", self.dir.display());
                None
            }
            Some(Err(_)) | None => None,
        };
        let (file, tmp) = match ready {
            Some(f) => f,
            None => files::create_preallocated(
                &self.dir,
                files::PREALLOC_FILE,
                self.config.max_file_length,
                self.config.preallocation,
            )?,
        };
        let path = files::data_file_path(&self.dir, next);
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("renaming {} into place", path.display()), &e))?;
        files::sync_dir(&self.dir)?;
        self.file = Arc::new(file);
        self.file_id = next;
        self.path = Arc::new(path);
        self.unsynced = false;
        {
            let mut st = inner.lock();
            st.files.insert(next);
            st.active_file = next;
        }
        self.start_prealloc();
        Ok(())
    }

    fn start_prealloc(&mut self) {
        let dir = self.dir.clone();
        let len = self.config.max_file_length;
        let how = self.config.preallocation;
        self.prealloc = std::thread::Builder::new()
            .name("kahadb-prealloc".into())
            .spawn(move || files::create_preallocated(&dir, files::PREALLOC_FILE, len, how))
            .ok();
    }

    fn datasync(&mut self) -> Result<()> {
        if let Err(e) = files::datasync(&self.file, &self.path) {
            self.fatal.get_or_insert_with(|| fail_stop(&e));
            return Err(e);
        }
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn first_hole(&self) -> Option<Pos> {
        self.holes.first().map(|h| Pos::new(h.file_id, h.start))
    }

    /// Pads what can be padded, syncs, and drops the preallocated file.
    fn shutdown(&mut self) -> Result<()> {
        let padded = self.pad_holes(None);
        let synced = if self.unsynced {
            self.datasync()
        } else {
            Ok(())
        };
        if let Some(h) = self.prealloc.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(self.dir.join(files::PREALLOC_FILE));
        padded.and(synced)
    }
}

/// Whether the next queued batch can be taken: there is one and nobody holds the token.
pub(super) fn can_lead(st: &State) -> bool {
    !st.writing && (!st.queue.is_empty() || st.open.is_some())
}

/// Called whenever the writer token is given back: wakes the callers of the first queued batch
/// that synchronous callers wait on, so that one of them leads the next write.
fn token_released(st: &State) {
    if let Some(b) = st
        .queue
        .iter()
        .chain(st.open.iter())
        .find(|b| b.sync_records > 0)
    {
        b.outcome.cv.notify_all();
    }
}

/// Whether a synchronous caller is waiting on a queued batch: it will lead the writes (with the
/// group-commit delay), so the appender thread keeps out of the way.
fn sync_caller_will_lead(st: &State) -> bool {
    st.queue
        .iter()
        .chain(st.open.iter())
        .any(|b| b.sync_records > 0)
}

/// Longest a would-be leader holds the open batch back for other writers to join it.
const MAX_GROUP_DELAY: Duration = Duration::from_micros(200);

/// How much longer a synchronous caller that could lead should let the open batch fill:
/// `None` to lead now. It waits only while the batch holds fewer synchronous records than the
/// number of writers recently seen at once, and at most half a batch's write time (capped), so
/// a lone writer never waits and a crowd shares one write and one sync.
pub(super) fn group_delay(st: &State, since: Instant) -> Option<Duration> {
    if !st.queue.is_empty() {
        return None; // a closed batch is ready
    }
    let open = st.open.as_ref()?;
    if open.sync_records >= st.sync_peak.max(1) {
        return None;
    }
    let budget = Duration::from_micros(st.batch_micros / 2).min(MAX_GROUP_DELAY);
    let waited = since.elapsed();
    (waited < budget).then(|| budget - waited)
}

/// Takes the writer token and writes the next queued batch (`can_lead` must hold). Returns
/// with the state locked again and the token released.
pub(super) fn lead<'a>(inner: &'a Inner, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    let mut batch = match st.queue.pop_front().or_else(|| st.open.take()) {
        Some(b) => b,
        None => return st,
    };
    st.writing = true;
    st.in_progress = Some((batch.file_id, batch.offset, batch.end()));
    let sync_request = st.sync_request;
    // Writers seen at once, decaying (down to the writers present) when fewer come.
    st.sync_peak = st.sync_callers.max(st.sync_peak - st.sync_peak.div_ceil(8));
    let failed = st.failed.clone();
    drop(st);
    let started = Instant::now();
    // Should anything below panic (a bug), the journal stops instead of hanging its callers.
    let mut guard = PanicGuard {
        inner,
        seq: batch.seq,
        outcome: batch.outcome.clone(),
        armed: true,
    };

    // Fill in the control record and the EOF marker.
    {
        let (control, payload) = batch.buf.split_at_mut(BATCH_CONTROL_SIZE);
        format::write_control(control, payload);
    }
    let len = batch.buf.len();
    batch.buf.extend_from_slice(&EOF_RECORD);
    let mut w = inner.writer();
    let result = match failed {
        // A failed journal writes nothing more.
        Some(e) => Err(e),
        None => w.write_at(inner, batch.file_id, batch.offset, &batch.buf),
    };
    if result.is_ok() {
        // Still under the writer lock: taps see batches in journal order.
        let tap = inner.tap.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(tap) = tap {
            tap(batch.file_id, batch.offset, &batch.buf[..len]);
        }
    }
    batch.buf.truncate(len);
    let mut sync_file = None;
    match &result {
        Ok(()) => {
            w.unsynced = true;
            let want = sync_request >= batch.seq
                || match inner.config.sync_strategy {
                    SyncStrategy::Always => batch.sync,
                    SyncStrategy::Periodic(d) => w.last_sync.elapsed() >= d,
                    SyncStrategy::Never => false,
                };
            if want {
                w.last_sync = Instant::now();
                sync_file = Some((w.file.clone(), w.path.clone()));
            }
        }
        Err(e) => {
            log::error!(
                "journal {}: write of batch at db-{}.log:{} ({} bytes) failed: {e}",
                inner.dir.display(),
                batch.file_id,
                batch.offset,
                len
            );
            w.add_hole(batch.file_id, batch.offset, batch.end());
        }
    }
    let first_hole = w.first_hole();
    let fatal = w.fatal.clone();
    let left_unsynced = result.is_ok() && sync_file.is_none();
    drop(w);

    // Publish the write and hand the token on: the next leader writes its batch while this one
    // syncs, so two syncs can be in flight at once.
    let took = started.elapsed().as_micros() as u64;
    guard.armed = false;
    drop(guard);
    let mut st = inner.lock();
    st.writing = false;
    st.in_progress = None;
    st.hole_start = first_hole;
    if let Some(e) = fatal {
        st.failed.get_or_insert(e);
    }
    st.written_seq = batch.seq;
    let end = Pos::new(batch.file_id, batch.end());
    if end > st.written {
        st.written = end;
    }
    st.stats.batches += 1;
    st.stats.bytes += len as u64;
    if let Err(e) = result {
        st.stats.failed_batches += 1;
        note_lost_async(&mut st, &batch, &e);
        let _ = batch.outcome.failed.set(e);
    }
    st.pending_bytes -= len;
    inner.epoch.fetch_add(1, Ordering::Release);
    inner.done.notify_all();
    batch.outcome.cv.notify_all();
    token_released(&st);

    if let Some((file, path)) = sync_file {
        drop(st);
        let synced = files::datasync(&file, &path);
        st = inner.lock();
        st.stats.syncs += 1;
        match synced {
            // Every batch up to this one was written before this sync began.
            Ok(()) => st.durable_seq = st.durable_seq.max(batch.seq),
            Err(e) => {
                // The data was written but may not be on disk: its synchronous appends fail
                // (unless a later sync, which covers it too, already succeeded), and the
                // journal stops: the kernel may have dropped pages no later sync can vouch for.
                log::error!("journal {}: {e}", inner.dir.display());
                st.failed.get_or_insert_with(|| fail_stop(&e));
                st.stats.failed_batches += 1;
                note_lost_async(&mut st, &batch, &e);
                let _ = batch.outcome.failed.set(e);
            }
        }
        inner.epoch.fetch_add(1, Ordering::Release);
        inner.done.notify_all();
        batch.outcome.cv.notify_all();
    }
    let took = took.max(started.elapsed().as_micros() as u64);
    st.batch_micros = (st.batch_micros * 7 + took) / 8;
    if st.spare.len() < 2 && batch.buf.capacity() <= 2 * inner.config.max_batch_size as usize {
        st.spare.push(std::mem::take(&mut batch.buf));
    }
    // Batches nobody waits on are the appender's job, and so are sync requests that came
    // during this write, periodic syncs of what it left unsynced, and finishing a close.
    let appender_needed = st.closed
        || st.sync_request > st.durable_seq
        || (left_unsynced && matches!(inner.config.sync_strategy, SyncStrategy::Periodic(_)))
        || (can_lead(&st) && !sync_caller_will_lead(&st));
    if st.appender_idle && appender_needed {
        st.appender_idle = false;
        inner.work.notify_one();
    }
    st
}

fn note_lost_async(st: &mut State, batch: &Batch, e: &Error) {
    if batch.async_records > 0 && st.lost_async.is_none() {
        st.lost_async = Some(Error::new(
            e.code(),
            format!(
                "{} asynchronous append(s) at db-{}.log:{} may be lost: {}",
                batch.async_records,
                batch.file_id,
                batch.offset,
                e.message()
            ),
        ));
    }
}

/// The error a journal fails with after a data file's `fdatasync` failed.
fn fail_stop(e: &Error) -> Error {
    Error::new(
        e.code(),
        format!(
            "the journal stopped after a failed sync ({}); reopen it to recover",
            e.message()
        ),
    )
}

/// Releases the writer token if a leader panics: the journal is marked failed, the batch's
/// callers get an error, and nobody waits forever.
struct PanicGuard<'a> {
    inner: &'a Inner,
    seq: u64,
    outcome: std::sync::Arc<super::Outcome>,
    armed: bool,
}

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let e = Error::new(ErrorCode::Internal, "the journal writer panicked (a bug)");
        let mut st = self.inner.lock();
        st.writing = false;
        st.in_progress = None;
        st.failed.get_or_insert_with(|| e.clone());
        st.written_seq = st.written_seq.max(self.seq);
        let _ = self.outcome.failed.set(e);
        self.inner.epoch.fetch_add(1, Ordering::Release);
        self.outcome.cv.notify_all();
        self.inner.done.notify_all();
        token_released(&st);
        if st.appender_idle {
            self.inner.work.notify_one();
        }
    }
}

/// The appender thread: writes batches nobody leads, serves `sync` requests and periodic
/// syncs, and shuts the writer down at close.
pub(super) fn run_appender(inner: &Inner) {
    let periodic = match inner.config.sync_strategy {
        SyncStrategy::Periodic(d) => Some(d),
        _ => None,
    };
    let mut st = inner.lock();
    loop {
        if can_lead(&st) && (st.closed || !sync_caller_will_lead(&st)) {
            st = lead(inner, st);
            continue;
        }
        if !st.writing && st.sync_request > st.durable_seq {
            if st.written_seq > st.durable_seq {
                st = sync_all(inner, st);
                continue;
            }
            if !can_lead(&st) {
                // Nothing written is undurable and nothing is queued: nothing to do.
                st.sync_request = st.durable_seq;
                inner.done.notify_all();
                continue;
            }
        }
        if st.closed && !st.writing && st.queue.is_empty() && st.open.is_none() {
            break;
        }
        st.appender_idle = true;
        let due = if st.writing {
            None
        } else {
            periodic.and_then(|d| sync_due(inner, d))
        };
        st = match due {
            Some(wait) if wait.is_zero() => {
                st.appender_idle = false;
                st = sync_all(inner, st);
                continue;
            }
            Some(wait) => inner
                .work
                .wait_timeout(st, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0),
            // Periodic: also wake at the interval, whoever wrote the unsynced data.
            None => match periodic {
                Some(d) if !st.writing => inner
                    .work
                    .wait_timeout(st, d)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|p| p.into_inner().0),
                _ => inner.wait(&inner.work, st),
            },
        };
        st.appender_idle = false;
    }
    st.writing = true;
    drop(st);
    let result = inner.writer().shutdown();
    let mut st = inner.lock();
    st.writing = false;
    token_released(&st);
    if let Err(e) = result {
        log::error!("journal {}: closing: {e}", inner.dir.display());
        if st.lost_async.is_none() {
            st.lost_async = Some(e);
        }
    }
    st.durable_seq = st.written_seq;
    inner.done.notify_all();
}

/// How long until a periodic sync is due, if there is unsynced data.
fn sync_due(inner: &Inner, interval: Duration) -> Option<Duration> {
    // Called without the token, so nobody holds the writer lock; try_lock keeps that from ever
    // turning into a lock-order problem (state, then writer) if it were not so.
    let w = inner.writer.try_lock().ok()?;
    w.unsynced
        .then(|| interval.saturating_sub(w.last_sync.elapsed()))
}

/// Syncs everything written so far (token taken while syncing).
fn sync_all<'a>(inner: &'a Inner, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
    let target = st.written_seq;
    st.writing = true;
    drop(st);
    let (result, synced, fatal) = {
        let mut w = inner.writer();
        let synced = w.unsynced;
        let result = if synced { w.datasync() } else { Ok(()) };
        (result, synced, w.fatal.clone())
    };
    let mut st = inner.lock();
    st.writing = false;
    inner.epoch.fetch_add(1, Ordering::Release);
    token_released(&st);
    if let Some(e) = fatal {
        st.failed.get_or_insert(e);
    }
    match result {
        // Nothing newer than `target` was written meanwhile: the token excluded other writers.
        Ok(()) => {
            st.durable_seq = st.durable_seq.max(target);
            if synced {
                st.stats.syncs += 1;
            }
        }
        Err(e) => {
            st.sync_error_gen += 1;
            st.sync_error = Some(e);
            st.sync_request = st.durable_seq;
        }
    }
    inner.done.notify_all();
    st
}

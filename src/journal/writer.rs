//! The appender thread: turns queued batches into positioned writes and syncs (group commit).
//!
//! Invariant: on disk, every data file is a run of valid batches followed by an EOF marker (or
//! zeros). A batch whose write fails leaves a hole; before anything after it is written, the hole
//! is filled with a padding batch, so the invariant holds again and no acknowledged record ever
//! sits behind a break that a reader or recovery would stop at.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};

use super::files;
use super::format::{self, BATCH_CONTROL_SIZE, EOF_RECORD};
use super::{Batch, Inner, Pos, SyncStrategy};

/// A byte range of a data file whose batch failed to be written and still needs padding.
#[derive(Debug, Clone, Copy)]
struct Hole {
    file_id: u32,
    start: u32,
    end: u32,
}

type Prealloc = JoinHandle<Result<(File, PathBuf)>>;

pub(super) struct Writer {
    inner: Arc<Inner>,
    file_id: u32,
    file: File,
    path: PathBuf,
    unsynced: bool,
    last_sync: Instant,
    holes: Vec<Hole>,
    prealloc: Option<Prealloc>,
}

enum Job {
    Write(Batch),
    Sync(u64),
    Exit,
}

impl Writer {
    pub(super) fn new(inner: Arc<Inner>, file: File, file_id: u32) -> Writer {
        let path = files::data_file_path(&inner.dir, file_id);
        let mut w = Writer {
            inner,
            file_id,
            file,
            path,
            unsynced: false,
            last_sync: Instant::now(),
            holes: Vec::new(),
            prealloc: None,
        };
        w.start_prealloc();
        w
    }

    fn periodic(&self) -> Option<Duration> {
        match self.inner.config.sync_strategy {
            SyncStrategy::Periodic(d) => Some(d),
            _ => None,
        }
    }

    pub(super) fn run(mut self) {
        loop {
            match self.next_job() {
                Job::Write(batch) => self.write(batch),
                Job::Sync(target) => self.sync_to(target),
                Job::Exit => break,
            }
        }
        self.shutdown();
    }

    fn next_job(&mut self) -> Job {
        let inner = self.inner.clone();
        let mut st = inner.lock();
        loop {
            if let Some(b) = st.queue.pop_front().or_else(|| st.open.take()) {
                st.in_progress = Some((b.file_id, b.offset, b.end()));
                return Job::Write(b);
            }
            if st.sync_request > st.durable_seq {
                return Job::Sync(st.written_seq);
            }
            if st.closed {
                return Job::Exit;
            }
            st.appender_idle = true;
            match (self.periodic(), self.unsynced) {
                (Some(interval), true) => {
                    let due = self.last_sync + interval;
                    let now = Instant::now();
                    if now >= due {
                        st.appender_idle = false;
                        return Job::Sync(st.written_seq);
                    }
                    st = inner
                        .work
                        .wait_timeout(st, due - now)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                _ => st = inner.wait(&inner.work, st),
            }
            st.appender_idle = false;
        }
    }

    fn write(&mut self, mut batch: Batch) {
        // Fill in the control record and the EOF marker.
        {
            let (control, payload) = batch.buf.split_at_mut(BATCH_CONTROL_SIZE);
            format::write_control(control, payload);
        }
        let len = batch.buf.len();
        batch.buf.extend_from_slice(&EOF_RECORD);
        let mut result = self.write_at(batch.file_id, batch.offset, &batch.buf);
        batch.buf.truncate(len);

        let (sync_request, strategy) = {
            let st = self.inner.lock();
            (st.sync_request, self.inner.config.sync_strategy)
        };
        let mut synced = false;
        if result.is_ok() {
            self.unsynced = true;
            let want = sync_request >= batch.seq
                || match strategy {
                    SyncStrategy::Always => batch.sync,
                    SyncStrategy::Periodic(d) => self.last_sync.elapsed() >= d,
                    SyncStrategy::Never => false,
                };
            if want {
                result = self.datasync();
                synced = result.is_ok();
            }
        }
        if let Err(e) = &result {
            log::error!(
                "journal {}: write of batch at db-{}.log:{} ({} bytes) failed: {e}",
                self.inner.dir.display(),
                batch.file_id,
                batch.offset,
                len
            );
            self.add_hole(batch.file_id, batch.offset, batch.end());
        }

        let mut st = self.inner.lock();
        st.in_progress = None;
        st.written_seq = batch.seq;
        let end = Pos::new(batch.file_id, batch.end());
        if end > st.written {
            st.written = end;
        }
        if synced {
            st.durable_seq = batch.seq;
        }
        if let Err(e) = result {
            if batch.async_records > 0 && st.lost_async.is_none() {
                st.lost_async = Some(Error::new(
                    e.code(),
                    format!(
                        "{} asynchronous append(s) at db-{}.log:{} were lost: {}",
                        batch.async_records,
                        batch.file_id,
                        batch.offset,
                        e.message()
                    ),
                ));
            }
            let _ = batch.outcome.failed.set(e);
        }
        st.pending_bytes -= len;
        if st.spare.len() < 2
            && batch.buf.capacity() <= 2 * self.inner.config.max_batch_size as usize
        {
            st.spare.push(std::mem::take(&mut batch.buf));
        }
        self.inner.done.notify_all();
    }

    /// Writes `bytes` at `offset` of data file `file_id`: pads earlier holes first, rotates to
    /// the file if it is the next one.
    fn write_at(&mut self, file_id: u32, offset: u32, bytes: &[u8]) -> Result<()> {
        self.pad_holes(self.file_id)?;
        while self.file_id < file_id {
            self.rotate()?;
            self.pad_holes(self.file_id)?;
        }
        if file_id != self.file_id {
            return Err(Error::new(
                ErrorCode::Internal,
                format!(
                    "batch for data file {file_id} reached the appender while it writes {}",
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

    /// Fills the holes in `file_id` with padding batches.
    fn pad_holes(&mut self, file_id: u32) -> Result<()> {
        while let Some(h) = self.holes.first().copied() {
            if h.file_id != file_id || file_id != self.file_id {
                return Ok(());
            }
            let mut pad = format::padding_batch((h.end - h.start) as usize);
            pad.extend_from_slice(&EOF_RECORD);
            self.file
                .write_all_at(&pad, u64::from(h.start))
                .map_err(|e| {
                    Error::io(
                        format!("padding {} at offset {}", self.path.display(), h.start),
                        &e,
                    )
                })?;
            self.unsynced = true;
            self.holes.remove(0);
            log::info!(
                "journal {}: padded the failed write at db-{}.log:{}..{}",
                self.inner.dir.display(),
                h.file_id,
                h.start,
                h.end
            );
        }
        Ok(())
    }

    /// Seals the current file and moves to the next one.
    fn rotate(&mut self) -> Result<()> {
        if self.unsynced {
            self.datasync()?;
        }
        let next = self.file_id + 1;
        let ready = match self.prealloc.take().map(|h| h.join()) {
            Some(Ok(Ok(f))) => Some(f),
            Some(Ok(Err(e))) => {
                log::warn!(
                    "journal {}: preallocation failed: {e}",
                    self.inner.dir.display()
                );
                None
            }
            Some(Err(_)) => None,
            None => None,
        };
        let (file, tmp) = match ready {
            Some(f) => f,
            None => files::create_preallocated(
                &self.inner.dir,
                files::PREALLOC_FILE,
                self.inner.config.max_file_length,
                self.inner.config.preallocation,
            )?,
        };
        let path = files::data_file_path(&self.inner.dir, next);
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("renaming {} into place", path.display()), &e))?;
        files::sync_dir(&self.inner.dir)?;
        self.file = file;
        self.file_id = next;
        self.path = path;
        self.unsynced = false;
        {
            let mut st = self.inner.lock();
            st.files.insert(next);
            st.active_file = next;
        }
        self.start_prealloc();
        Ok(())
    }

    fn start_prealloc(&mut self) {
        let dir = self.inner.dir.clone();
        let len = self.inner.config.max_file_length;
        let how = self.inner.config.preallocation;
        self.prealloc = std::thread::Builder::new()
            .name("kahadb-prealloc".into())
            .spawn(move || files::create_preallocated(&dir, files::PREALLOC_FILE, len, how))
            .ok();
    }

    fn datasync(&mut self) -> Result<()> {
        files::datasync(&self.file, &self.path)?;
        self.unsynced = false;
        self.last_sync = Instant::now();
        Ok(())
    }

    fn sync_to(&mut self, target: u64) {
        let result = if self.unsynced {
            self.datasync()
        } else {
            Ok(())
        };
        let mut st = self.inner.lock();
        match result {
            Ok(()) => {
                // Nothing newer than `target` was written in between: this thread is the only
                // writer.
                if target > st.durable_seq {
                    st.durable_seq = target;
                }
            }
            Err(e) => {
                st.sync_error_gen += 1;
                st.sync_error = Some(e);
                st.sync_request = st.durable_seq;
            }
        }
        self.inner.done.notify_all();
    }

    fn shutdown(&mut self) {
        if let Err(e) = self.pad_holes(self.file_id) {
            log::error!("journal {}: {e}", self.inner.dir.display());
        }
        if self.unsynced {
            if let Err(e) = self.datasync() {
                log::error!(
                    "journal {}: final sync failed: {e}",
                    self.inner.dir.display()
                );
                let mut st = self.inner.lock();
                if st.lost_async.is_none() {
                    st.lost_async = Some(e);
                }
            }
        }
        if let Some(h) = self.prealloc.take() {
            let _ = h.join();
        }
        let _ = std::fs::remove_file(self.inner.dir.join(files::PREALLOC_FILE));
        let mut st = self.inner.lock();
        st.durable_seq = st.written_seq;
        self.inner.done.notify_all();
    }
}

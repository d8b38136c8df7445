//! A live store: a journal and its index in one directory, kept in step.
//!
//! Every change is a journal command: it is queued in the journal and applied to the index under
//! one lock, so the index always follows journal order, then (if asked) waited on for durability
//! outside the lock, so that concurrent writers still share batches and syncs. The layout is
//! KahaDB's (`db-<N>.log`, `lock`) plus our index file `kahadb-rs.index`.
//!
//! A change becomes visible in the index when it is queued, before it is durable. If its write
//! then fails, the index holds an effect the disk does not: the store stops (every later change
//! fails) and a reopen rebuilds the truth from disk.
//!
//! After a checkpoint the store cleans up (`docs/STORE.md` §6.6, [`super::gc`]): data files no
//! longer needed are deleted, and the few live records of old files are re-appended at the head
//! so that their files (and the ack files pinned to them) can go at the next cleanup. Not yet
//! here: the broker-facing operations of `docs/STORE.md` §6.8.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use crate::error::{Error, ErrorCode, Result};
use crate::journal::{Journal, JournalConfig, Location};

use super::checkpoint::{self, IndexRecovery};
use super::codec::JournalCommand;
use super::gc::{self, GcReport, RelocationLimits};
use super::state::State;

/// Index files of stock KahaDB. Left in a directory we write to, they would make KahaDB skip
/// our records or look for data files we deleted (trap T34): removed when a store opens.
pub const STOCK_INDEX_FILES: [&str; 3] = ["db.data", "db.redo", "db.free"];

/// Store settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    pub journal: JournalConfig,
    /// Write a checkpoint after this many journal commands (0: only on request and at close).
    /// Restart replays at most about this many records. Default 100,000.
    pub checkpoint_every: u64,
    /// Delete every data file and the index before opening (ActiveMQ's
    /// `deleteAllMessagesOnStartup`). Default false.
    pub delete_all: bool,
    /// Clean up (delete data files no longer needed, relocate the live records of old ones)
    /// after every this many automatic checkpoints, and after every [`Store::checkpoint`]
    /// (0: only on [`Store::checkpoint_and_gc`] and [`Store::gc`]). Default 1.
    pub cleanup_every: u64,
    /// Relocation (ack compaction): at most this many bytes are re-appended per cleanup, and a
    /// data file is relocated only if its live records take at most this many bytes and at
    /// most a quarter of `journal.max_file_length`. 0 turns relocation off. Default 4 MiB.
    pub relocate_max_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            journal: JournalConfig::default(),
            checkpoint_every: 100_000,
            delete_all: false,
            cleanup_every: 1,
            relocate_max_bytes: 4 << 20,
        }
    }
}

struct Live {
    state: State,
    /// Set when a change applied to the index could not be made durable.
    failed: Option<Error>,
    /// The journal's failed-batch count when the store opened: any batch failing after that
    /// may have held a change the index depends on.
    failed_batches: u64,
}

/// Hands memory freed by the recovery (the checkpoint image, decoded records) back to the
/// system, so that a large index loaded at startup does not leave the process holding twice
/// its size.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory of glibc's allocator, which is the global
    // allocator here; it takes the allocator's own locks and touches no live allocation.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Deletes a store's data files and index files (the directory is locked by the caller).
fn delete_contents(dir: &Path) -> Result<()> {
    // The index first: a checkpoint must never outlive data files it refers to.
    for name in [
        checkpoint::INDEX_FILE,
        "kahadb-rs.index.tmp",
        "db.data",
        "db.redo",
        "db.free",
    ] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("deleting {}", path.display()), &e)),
        }
    }
    let mut removed = 0usize;
    for id in crate::journal::files::list_data_files(dir)? {
        let path = crate::journal::files::data_file_path(dir, id);
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("deleting {}", path.display()), &e))?;
        removed += 1;
    }
    crate::journal::files::sync_dir(dir)?;
    log::info!(
        "store {}: deleted all messages ({removed} data files)",
        dir.display()
    );
    Ok(())
}

/// Replication as the store sees it: a synchronous write returns only once this says the
/// journal up to its end is replicated as required (`minimumReplicas`).
pub trait Replicated: Send + Sync {
    /// Blocks until everything in data file `file` before offset `end` (and in older files) is
    /// held by enough replicas, or fails (`REPLICATION_TIMEOUT`).
    fn wait_replicated(&self, file: u32, end: u32) -> Result<()>;

    /// Data files the store's GC must keep for now (being copied to a joining replica).
    fn retained(&self) -> Vec<u32> {
        Vec::new()
    }

    /// Told after the store's GC deleted data files, so replicas can delete them too.
    fn removed(&self, _files: &[u32]) {}
}

/// The index, locked, and the journal, for one [`Store::write`] call.
pub struct Writer<'a> {
    journal: &'a Journal,
    state: &'a mut State,
    ticket: Option<crate::journal::Ticket>,
    last: Option<Location>,
    count: u64,
    scratch: Vec<u8>,
}

impl Writer<'_> {
    /// The index as it stands (including what this call recorded so far).
    pub fn state(&self) -> &State {
        self.state
    }

    /// Appends `command` to the journal (queued; durable when the call returns with `durable`)
    /// and applies it to the index.
    pub fn record(&mut self, command: &JournalCommand) -> Result<Location> {
        self.scratch.clear();
        command.encode_into(&mut self.scratch);
        let (location, ticket) = self.journal.append_deferred(&self.scratch)?;
        self.state.apply(command, location);
        self.ticket = Some(ticket);
        self.last = Some(location);
        self.count += 1;
        Ok(location)
    }
}

/// An open store.
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    journal: Journal,
    live: Mutex<Live>,
    since_checkpoint: AtomicU64,
    /// Held while checkpointing or cleaning up: one at a time.
    checkpointing: Mutex<()>,
    /// Where the newest durable checkpoint ends (what GC may rely on). Written under
    /// `checkpointing`.
    last_checkpoint: Mutex<Option<Location>>,
    /// Replication that synchronous writes wait on (see [`Replicated`]).
    replication: RwLock<Option<Arc<dyn Replicated>>>,
    /// How long the last checkpoint held the store lock, and when it was taken.
    last_pause: Mutex<(std::time::Duration, Option<std::time::Instant>)>,
    /// Automatic checkpoints since the last cleanup.
    checkpoints_since_cleanup: AtomicU64,
    /// Read side: held by readers between taking locations from the index and reading them;
    /// write side: held while data files are deleted.
    files_gate: RwLock<()>,
}

/// Keeps data files from being deleted while held (see [`Store::files_guard`]).
pub struct FilesGuard<'a> {
    _guard: RwLockReadGuard<'a, ()>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: the journal, then the index from its
    /// checkpoint and the journal after it.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<(Store, IndexRecovery)> {
        Store::open_inner(dir.as_ref(), config, None)
    }

    /// Opens the store in `dir` with an index built elsewhere from the same journal (a hot
    /// standby's): only the records after the last one it applied are replayed, and
    /// transactions without an outcome are rolled back as at any recovery.
    pub fn open_with_state(
        dir: impl AsRef<Path>,
        config: StoreConfig,
        state: State,
    ) -> Result<(Store, IndexRecovery)> {
        Store::open_inner(dir.as_ref(), config, Some(state))
    }

    fn open_inner(
        dir: &Path,
        config: StoreConfig,
        standby: Option<State>,
    ) -> Result<(Store, IndexRecovery)> {
        let dir = dir.to_path_buf();
        let journal = if config.delete_all {
            Journal::open_with(&dir, config.journal, delete_contents)?
        } else {
            Journal::open(&dir, config.journal)?
        };
        remove_stock_index(&dir)?;
        let (mut state, recovery) = match standby {
            Some(mut state) => {
                let after = state.last_applied();
                let replay = state.replay_after(&journal, after)?;
                log::info!(
                    "store {}: took over a hot standby index ({} records replayed after it)",
                    dir.display(),
                    replay.records
                );
                (
                    state,
                    IndexRecovery {
                        checkpoint: None,
                        replay,
                        ..IndexRecovery::default()
                    },
                )
            }
            None => checkpoint::recover(&dir, &journal)?,
        };
        // The checkpoint may name files a cleanup deleted after writing it.
        forget_missing_files(&mut state, &journal.data_file_ids());
        release_free_memory();
        let failed_batches = journal.stats().failed_batches;
        let store = Store {
            dir,
            config,
            journal,
            live: Mutex::new(Live {
                state,
                failed: None,
                failed_batches,
            }),
            since_checkpoint: AtomicU64::new(recovery.replay.records),
            checkpointing: Mutex::new(()),
            last_checkpoint: Mutex::new(recovery.checkpoint),
            last_pause: Mutex::new((std::time::Duration::ZERO, None)),
            replication: RwLock::new(None),
            checkpoints_since_cleanup: AtomicU64::new(0),
            files_gate: RwLock::new(()),
        };
        Ok((store, recovery))
    }

    /// Makes synchronous writes wait for replication as well (`None`: local durability only).
    pub fn set_replication(&self, replication: Option<Arc<dyn Replicated>>) {
        *self.replication.write().unwrap_or_else(|p| p.into_inner()) = replication;
    }

    fn replication_link(&self) -> Option<Arc<dyn Replicated>> {
        self.replication
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // Every critical section applies a whole command or nothing (apply cannot fail
        // half-way), so a poisoned lock is taken over.
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `command`: appends it and applies it to the index, in journal order. With
    /// `durable`, returns once its record is on disk.
    pub fn record(&self, command: &JournalCommand, durable: bool) -> Result<Location> {
        self.write(durable, |w| w.record(command))
    }

    /// Runs `f` with the index locked: every command it records is appended and applied at
    /// once, so the commands of one call are contiguous in the journal and the index never shows
    /// half of them to another caller. With `durable`, returns once the last record is on disk
    /// (and so every record before it). The lock is not held while waiting for the disk.
    pub fn write<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut Writer<'_>) -> Result<R>,
    ) -> Result<R> {
        let (result, ticket, last, baseline, count) = {
            let mut live = self.lock();
            if let Some(e) = &live.failed {
                return Err(e.clone());
            }
            self.check_journal(&mut live)?;
            let baseline = live.failed_batches;
            let mut w = Writer {
                journal: &self.journal,
                state: &mut live.state,
                ticket: None,
                last: None,
                count: 0,
                scratch: Vec::new(),
            };
            let result = f(&mut w);
            (result, w.ticket, w.last, baseline, w.count)
        };
        if durable {
            if let Some(ticket) = &ticket {
                if let Err(e) = self.journal.wait_durable(ticket) {
                    return Err(self.fail(e));
                }
                // This record is durable, but an earlier one it may depend on (a transaction's
                // operations before its commit, say) could have failed: then stop.
                if self.journal.stats().failed_batches > baseline {
                    return Err(
                        self.fail(Error::new(ErrorCode::Io, "an earlier journal write failed"))
                    );
                }
            }
            // On this node's disk; now on enough replicas (minimumReplicas), if replicated.
            let replication = self
                .replication
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let (Some(r), Some(loc), Ok(_)) = (replication, last, &result) {
                r.wait_replicated(loc.file_id, loc.offset + loc.size)?;
            }
        }
        if count > 0 {
            let n = self.since_checkpoint.fetch_add(count, Ordering::Relaxed) + count;
            if self.config.checkpoint_every > 0 && n >= self.config.checkpoint_every {
                self.maybe_checkpoint();
            }
        }
        result
    }

    /// Stops the store if a journal batch failed since it opened.
    fn check_journal(&self, live: &mut Live) -> Result<()> {
        if self.journal.stats().failed_batches > live.failed_batches {
            let e = Error::new(
                ErrorCode::Io,
                format!(
                    "store {} stopped: a journal write failed, so the index may hold a change the disk does not; reopen it to recover",
                    self.dir.display()
                ),
            );
            live.failed = Some(e.clone());
            return Err(e);
        }
        Ok(())
    }

    /// An automatic checkpoint: one thread at a time, skipped if another is running; its
    /// failure is logged, never reported to the change that triggered it (which succeeded).
    fn maybe_checkpoint(&self) {
        let Ok(_one) = self.checkpointing.try_lock() else {
            return;
        };
        if self.since_checkpoint.load(Ordering::Relaxed) < self.config.checkpoint_every {
            return; // another thread just wrote one
        }
        if let Err(e) = self.checkpoint_locked() {
            log::warn!("store {}: checkpoint failed: {e}", self.dir.display());
            return;
        }
        let every = self.config.cleanup_every;
        let due = self
            .checkpoints_since_cleanup
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if every > 0 && due >= every {
            self.checkpoints_since_cleanup.store(0, Ordering::Relaxed);
            if let Err(e) = self.cleanup_locked(&mut GcReport::default()) {
                log::warn!("store {}: cleanup failed: {e}", self.dir.display());
            }
        }
    }

    /// Stops the store after a change it applied could not be made durable.
    fn fail(&self, e: Error) -> Error {
        let stopped = Error::new(
            e.code(),
            format!(
                "store {} stopped: a change could not be made durable ({}); reopen it to recover",
                self.dir.display(),
                e.message()
            ),
        );
        self.lock().failed.get_or_insert(stopped).clone()
    }

    /// Runs `f` on the index.
    pub fn read_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.lock().state)
    }

    /// Keeps every data file in place while the guard lives: a location taken from the index
    /// while holding it stays readable until the guard is dropped, even if the message is
    /// consumed or relocated meanwhile (take the guard before reading the index). Do not hold
    /// two guards in one thread.
    pub fn files_guard(&self) -> FilesGuard<'_> {
        FilesGuard {
            _guard: self.files_gate.read().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// The message body (OpenWire bytes) of the add or update command recorded at `location`.
    /// A location of a stored message stays readable as long as the message is stored and in
    /// the same place; hold a [`Store::files_guard`] from the index lookup to the read, as a
    /// cleanup may relocate the message and delete its old file in between.
    pub fn message_body(&self, location: Location) -> Result<Vec<u8>> {
        let data = self.journal.read(location)?;
        let add = match JournalCommand::decode(&data)? {
            JournalCommand::AddMessage(a) => a,
            JournalCommand::UpdateMessage(u) => u.message.ok_or_else(|| {
                Error::new(
                    ErrorCode::Corrupt,
                    format!("the update at {location} carries no message"),
                )
            })?,
            other => {
                return Err(Error::new(
                    ErrorCode::InvalidLocation,
                    format!(
                        "the record at {location} is a {:?} command, not a message",
                        other.known_entry_type()
                    ),
                ))
            }
        };
        add.message.ok_or_else(|| {
            Error::new(
                ErrorCode::Corrupt,
                format!("the message at {location} has no body"),
            )
        })
    }

    /// Writes a checkpoint of the index now (one at a time; changes go on meanwhile), then
    /// cleans up unless `cleanup_every` is 0.
    pub fn checkpoint(&self) -> Result<()> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_locked()?;
        if self.config.cleanup_every > 0 {
            self.cleanup_locked(&mut GcReport::default())?;
        }
        Ok(())
    }

    /// Writes a checkpoint and nothing else (no cleanup, whatever `cleanup_every` says).
    pub fn checkpoint_only(&self) -> Result<()> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_locked()
    }

    /// A checkpoint on a timer: like [`Store::checkpoint_only`], but skipped (returning false)
    /// while less time has passed since the last one than 20 times the pause that one imposed
    /// on writers (the index is encoded under the store lock), so that a large index never
    /// spends more than about 5 % of the time paused for checkpoints.
    pub fn checkpoint_timed(&self) -> Result<bool> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let (pause, at) = *self.last_pause.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(at) = at {
            if at.elapsed() < pause * 20 {
                return Ok(false);
            }
        }
        self.checkpoint_locked()?;
        Ok(true)
    }

    /// Writes a checkpoint and cleans up: deletes the data files no longer needed and
    /// relocates the live records of old ones; if anything was relocated, checkpoints and
    /// deletes once more, so that the files relocated from go at once.
    pub fn checkpoint_and_gc(&self) -> Result<GcReport> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = GcReport::default();
        self.checkpoint_locked()?;
        self.cleanup_locked(&mut report)?;
        if report.relocated_records > 0 {
            self.checkpoint_locked()?;
            self.gc_locked(&mut report)?;
        }
        Ok(report)
    }

    /// Deletes the data files no longer needed as of the last checkpoint (no relocation);
    /// returns their ids.
    pub fn gc(&self) -> Result<Vec<u32>> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = GcReport::default();
        self.gc_locked(&mut report)?;
        Ok(report.deleted)
    }

    /// GC, then relocation. Called with `checkpointing` held, after a checkpoint.
    fn cleanup_locked(&self, report: &mut GcReport) -> Result<()> {
        self.gc_locked(report)?;
        self.relocate_locked(report)
    }

    /// Deletes the files that are neither live nor pinned to a file that stays, before the
    /// last checkpoint's file. Called with `checkpointing` held.
    fn gc_locked(&self, report: &mut GcReport) -> Result<()> {
        let Some(ckpt) = self.last_checkpoint() else {
            return Ok(());
        };
        let ids = {
            let mut live = self.lock();
            if let Some(e) = &live.failed {
                return Err(e.clone());
            }
            self.check_journal(&mut live)?;
            let mut ids = gc::deletable(&live.state, &self.journal.data_file_ids(), ckpt.file_id);
            // Files a joining replica is copying stay until it has them (and so do the files
            // after them, which may pin them).
            if let Some(first) = self
                .replication_link()
                .and_then(|r| r.retained().into_iter().min())
            {
                ids.retain(|id| *id < first);
            }
            ids
        };
        if ids.is_empty() {
            return Ok(());
        }
        // The index has applied records that are not yet durable (a remove that killed the
        // last live record of a file, say): they must be before the file goes.
        self.sync_applied()?;
        let mut deleted = Vec::with_capacity(ids.len());
        let mut result = Ok(());
        {
            let _gate = self.files_gate.write().unwrap_or_else(|p| p.into_inner());
            // Oldest first, one at a time: if one fails, no file that pins it is gone.
            for id in ids {
                if let Err(e) = self.journal.remove_data_files(&[id]) {
                    result = Err(e);
                    break;
                }
                deleted.push(id);
            }
        }
        if !deleted.is_empty() {
            let files = self.journal.data_file_ids();
            let mut live = self.lock();
            let gone: std::collections::BTreeSet<u32> = deleted.iter().copied().collect();
            live.state.forget_files(|f| gone.contains(&f));
            forget_missing_files(&mut live.state, &files);
            drop(live);
            log::info!(
                "store {}: deleted data files {:?}",
                self.dir.display(),
                deleted
            );
            if let Some(r) = self.replication_link() {
                r.removed(&deleted);
            }
        }
        report.deleted.extend(deleted);
        result
    }

    /// Re-appends the live records of old, mostly dead data files at the head of the journal
    /// (`super::gc`). Called with `checkpointing` held, after GC.
    fn relocate_locked(&self, report: &mut GcReport) -> Result<()> {
        let budget = self.config.relocate_max_bytes;
        if budget == 0 || self.journal.data_file_ids().len() <= 2 {
            return Ok(());
        }
        let Some(ckpt) = self.last_checkpoint() else {
            return Ok(());
        };
        let journal = self.config.journal;
        let limits = RelocationLimits {
            below: ckpt.file_id,
            max_live_bytes: budget.min(u64::from(journal.max_file_length) / 4),
            budget,
            max_record_len: journal.max_record_len(),
        };
        // Planned and appended under the index lock: nothing can consume or change a record
        // between the plan and its relocation, and nothing interleaves with the relocation.
        let plan = self.write(false, |w| {
            let plan = gc::plan_relocation(w.state(), &self.journal, limits)?;
            for c in &plan.commands {
                w.record(c)?;
            }
            Ok(plan)
        })?;
        if !plan.files.is_empty() {
            log::info!(
                "store {}: relocated the live records of data files {:?} ({} records, {} bytes)",
                self.dir.display(),
                plan.files,
                plan.commands.len(),
                plan.bytes
            );
        }
        report.relocated_files.extend(plan.files);
        report.relocated_records += plan.commands.len() as u64;
        report.relocated_bytes += plan.bytes;
        Ok(())
    }

    /// Where the newest durable checkpoint ends.
    fn last_checkpoint(&self) -> Option<Location> {
        *self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Makes every record the index applied durable; stops the store if that fails.
    fn sync_applied(&self) -> Result<()> {
        self.journal.sync().map_err(|e| {
            if e.code() == ErrorCode::Closed {
                e
            } else {
                self.fail(e)
            }
        })
    }

    fn checkpoint_locked(&self) -> Result<()> {
        let started = std::time::Instant::now();
        let (body, last) = {
            let mut live = self.lock();
            if let Some(e) = &live.failed {
                return Err(e.clone());
            }
            self.check_journal(&mut live)?;
            self.since_checkpoint.store(0, Ordering::Relaxed);
            (
                checkpoint::encode_state(&live.state),
                live.state.last_applied(),
            )
        };
        *self.last_pause.lock().unwrap_or_else(|p| p.into_inner()) =
            (started.elapsed(), Some(std::time::Instant::now()));
        // Everything the state holds must be durable first; if the journal cannot vouch for it,
        // the index may hold a change the disk does not: stop.
        self.sync_applied()?;
        // A failure of the checkpoint file itself only costs replay time at the next start.
        checkpoint::write_encoded(&self.dir, &self.journal, &body, last)?;
        *self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = last;
        Ok(())
    }

    /// Checkpoints (unless the store has stopped; no cleanup) and closes the journal.
    pub fn close(&self) -> Result<()> {
        let failed = self.lock().failed.clone();
        let checkpointed = match failed {
            Some(_) => Ok(()),
            None => match self.checkpoint_only() {
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                other => other,
            },
        };
        let closed = self.journal.close();
        checkpointed.and(closed)
    }
}

/// Drops the pins of data files that no longer exist (older than the newest one and not
/// listed).
fn forget_missing_files(state: &mut State, files: &[u32]) {
    let newest = files.last().copied().unwrap_or(0);
    state.forget_files(|f| f < newest && files.binary_search(&f).is_err());
}

/// Removes stock KahaDB's index files (trap T34). If stock KahaDB wrote its index after our
/// last checkpoint, it ran on this directory in between (and may have deleted or rewritten data
/// files): our checkpoint is removed too, so that the index is rebuilt from the journal.
fn remove_stock_index(dir: &Path) -> Result<()> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let ours = dir.join(checkpoint::INDEX_FILE);
    let theirs = dir.join(STOCK_INDEX_FILES[0]);
    if let (Some(ours_at), Some(theirs_at)) = (modified(&ours), modified(&theirs)) {
        // Equal times (coarse file system clocks) count as newer: a rebuild is always safe.
        if theirs_at >= ours_at {
            log::warn!(
                "store {}: {} is newer than {}: stock KahaDB used this directory since our last checkpoint; rebuilding the index from the journal",
                dir.display(),
                STOCK_INDEX_FILES[0],
                checkpoint::INDEX_FILE
            );
            std::fs::remove_file(&ours)
                .map_err(|e| Error::io(format!("removing {}", ours.display()), &e))?;
        }
    }
    let mut removed = false;
    for name in STOCK_INDEX_FILES {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                log::warn!(
                    "store {}: removed stock KahaDB index file {name} (it does not describe this journal)",
                    dir.display()
                );
                removed = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(format!("removing {}", path.display()), &e)),
        }
    }
    if removed {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), &e))?;
    }
    Ok(())
}

//! A live store: a journal and its index in one directory, kept in step.
//!
//! Every change is a journal command: it is queued in the journal and applied to the index under
//! one lock, so the index always follows journal order, then (if asked) waited on for durability
//! outside the lock, so that concurrent writers still share batches and syncs. The layout is
//! KahaDB's (`db-<N>.log`, `lock`) plus our index file `kahadb-rs.index`.
//!
//! A change becomes visible in the index when it is queued, before it is durable. If its write
//! then fails, the index holds an effect the disk does not: the store stops (every later change
//! fails) and a reopen rebuilds the truth from disk. Not yet here: GC and compaction, the
//! broker-facing operations of `docs/STORE.md` §6.8.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, ErrorCode, Result};
use crate::journal::{Journal, JournalConfig, Location};

use super::checkpoint::{self, IndexRecovery};
use super::codec::JournalCommand;
use super::state::State;

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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            journal: JournalConfig::default(),
            checkpoint_every: 100_000,
            delete_all: false,
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

/// Deletes a store's data files and index files (the directory is locked by the caller).
fn delete_contents(dir: &Path) -> Result<()> {
    let mut removed = 0usize;
    for id in crate::journal::files::list_data_files(dir)? {
        let path = crate::journal::files::data_file_path(dir, id);
        std::fs::remove_file(&path)
            .map_err(|e| Error::io(format!("deleting {}", path.display()), &e))?;
        removed += 1;
    }
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
    log::info!(
        "store {}: deleted all messages ({removed} data files)",
        dir.display()
    );
    Ok(())
}

/// The index, locked, and the journal, for one [`Store::write`] call.
pub struct Writer<'a> {
    journal: &'a Journal,
    state: &'a mut State,
    ticket: Option<crate::journal::Ticket>,
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
    checkpointing: Mutex<()>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`: the journal, then the index from its
    /// checkpoint and the journal after it.
    pub fn open(dir: impl AsRef<Path>, config: StoreConfig) -> Result<(Store, IndexRecovery)> {
        let dir = dir.as_ref().to_path_buf();
        let journal = if config.delete_all {
            Journal::open_with(&dir, config.journal, delete_contents)?
        } else {
            Journal::open(&dir, config.journal)?
        };
        let (state, recovery) = checkpoint::recover(&dir, &journal)?;
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
        };
        Ok((store, recovery))
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
        let (result, ticket, baseline, count) = {
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
                count: 0,
                scratch: Vec::new(),
            };
            let result = f(&mut w);
            (result, w.ticket, baseline, w.count)
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

    /// The message body (OpenWire bytes) of the add or update command recorded at `location`.
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

    /// Writes a checkpoint of the index now (one at a time; changes go on meanwhile).
    pub fn checkpoint(&self) -> Result<()> {
        let _one = self.checkpointing.lock().unwrap_or_else(|p| p.into_inner());
        self.checkpoint_locked()
    }

    fn checkpoint_locked(&self) -> Result<()> {
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
        // Everything the state holds must be durable first; if the journal cannot vouch for it,
        // the index may hold a change the disk does not: stop.
        if let Err(e) = self.journal.sync() {
            return Err(if e.code() == ErrorCode::Closed {
                e
            } else {
                self.fail(e)
            });
        }
        // A failure of the checkpoint file itself only costs replay time at the next start.
        checkpoint::write_encoded(&self.dir, &self.journal, &body, last)
    }

    /// Checkpoints (unless the store has stopped) and closes the journal.
    pub fn close(&self) -> Result<()> {
        let failed = self.lock().failed.clone();
        let checkpointed = match failed {
            Some(_) => Ok(()),
            None => match self.checkpoint() {
                Err(e) if e.code() == ErrorCode::Closed => Ok(()),
                other => other,
            },
        };
        let closed = self.journal.close();
        checkpointed.and(closed)
    }
}

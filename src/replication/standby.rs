//! The slave's hot standby: its index follows the replicated journal as batches become durable,
//! so that a promotion opens the store without a replay (`Store::open_with_state` replays only
//! what the standby had not applied yet).
//!
//! The standby reads what the replica writer put on disk, batch by batch, up to the durable
//! position: the live stream's frames are whole batches, the catch-up's are 1 MiB slices, and a
//! batch cut by a slice is applied once the rest has arrived. When a sync plan cuts bytes the
//! standby has applied (the master's newest file is always re-sent from its start), the standby
//! keeps its index if the re-sent bytes are the same (CRC of what it applied), and rebuilds it
//! from the files otherwise.

use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::journal::format::{
    check_batch, find_next_valid_batch, records, BatchAt, BATCH_CONTROL_SIZE, BATCH_HEADER,
    RECORD_HEAD, USER_RECORD_TYPE,
};
use crate::journal::{files, Location};
use crate::store::codec::JournalCommand;
use crate::store::state::State;

use super::message::Position;

/// What the standby has done, for status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StandbyStats {
    /// Where the next batch to apply starts.
    pub applied: Position,
    /// Records applied since the standby started (or was last rebuilt).
    pub records: u64,
    /// Times the index was rebuilt from the files because applied bytes were replaced.
    pub rebuilds: u64,
    /// Records that could not be decoded (logged; the store would refuse them too).
    pub undecodable: u64,
}

struct Inner {
    state: State,
    next: Position,
    /// CRC-32 of the bytes of `next.file` before `next.offset`.
    crc: crc32fast::Hasher,
    /// After a cut: the bytes of this file before this offset must come back with this CRC.
    verify: Option<(u32, u32, u32)>,
    stats: StandbyStats,
    /// The master's index, waiting for the scan to reach the record it was taken after.
    seed: Option<Seed>,
    seed_failed: bool,
}

struct Seed {
    state: State,
    fingerprint: u32,
    after: Location,
}

/// What the replication side tells the applier (a lock of its own, never held long: the
/// stream's tasks take it on every ack).
#[derive(Default)]
struct Signals {
    /// The durable position the applier works toward.
    target: Position,
    /// The target of the last pass that could not reach it (a batch not complete yet).
    tried: Position,
    /// Files the master deleted, deleted here once the index is past them.
    removals: BTreeSet<u32>,
    stop: bool,
}

/// At most this many bytes are applied per hold of the index lock.
const STEP: usize = 8 << 20;

/// A hot standby index over a slave's replicated journal directory.
pub struct Standby {
    dir: PathBuf,
    inner: Mutex<Inner>,
    signals: Mutex<Signals>,
    wake: Condvar,
    /// `next`, packed (file << 32 | offset), readable without the index lock.
    applied: std::sync::atomic::AtomicU64,
}

impl Standby {
    pub fn new(dir: &Path) -> Standby {
        Standby {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                state: State::default(),
                next: Position::default(),
                crc: crc32fast::Hasher::new(),
                verify: None,
                stats: StandbyStats::default(),
                seed: None,
                seed_failed: false,
            }),
            signals: Mutex::default(),
            wake: Condvar::new(),
            applied: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn signals(&self) -> MutexGuard<'_, Signals> {
        self.signals.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn applied_pos(&self) -> Position {
        let v = self.applied.load(std::sync::atomic::Ordering::Acquire);
        Position {
            file: (v >> 32) as u32,
            offset: v as u32,
        }
    }

    fn publish(&self, g: &Inner) {
        let v = (u64::from(g.next.file) << 32) | u64::from(g.next.offset);
        self.applied.store(v, std::sync::atomic::Ordering::Release);
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the index whole (apply cannot fail half-way).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the standby stands (without waiting for the applier).
    pub fn applied(&self) -> Position {
        self.applied_pos()
    }

    /// Counters (waits for the applier's current step).
    pub fn stats(&self) -> StandbyStats {
        let g = self.lock();
        let mut s = g.stats;
        s.applied = g.next;
        s
    }

    /// Called before a sync plan's cuts reach the files: decides whether the index survives.
    pub fn before_cuts(&self, truncate: &[(u32, u64)], delete: &[u32]) {
        let mut g = self.lock();
        let next = g.next;
        let mut reset = false;
        for (file, len) in truncate {
            if *file < next.file {
                reset = true;
            } else if *file == next.file && *len < u64::from(next.offset) {
                // The bytes come back through the live stream; they must be the same.
                let crc = g.crc.clone().finalize();
                g.verify = Some((next.file, next.offset, crc));
            }
        }
        for file in delete {
            if *file == next.file && next.offset > 0 {
                reset = true;
            }
        }
        if reset {
            Self::reset(&mut g, "the sync plan replaces data files it had applied");
            self.publish(&g);
            self.signals().tried = Position::default();
        } else {
            let gone: BTreeSet<u32> = delete.iter().copied().filter(|f| *f < next.file).collect();
            if !gone.is_empty() {
                g.state.forget_files(|f| gone.contains(&f));
            }
        }
    }

    /// True when the index has nothing applied yet (a seed can be taken).
    pub fn is_fresh(&self) -> bool {
        let g = self.lock();
        g.next == Position::default() && g.stats.records == 0 && g.seed.is_none()
    }

    /// Seeds a fresh standby with the master's index checkpoint: records up to the one it was
    /// taken after are skipped (that record's fingerprint must match), later ones applied. If
    /// the record is not found, the standby replays the files instead.
    pub fn seed(&self, checkpoint: &[u8]) {
        let (state, fingerprint) =
            match crate::store::checkpoint::parse(checkpoint, "the master's index") {
                Ok(v) => v,
                Err(e) => {
                    log::warn!("replication: hot standby: {e}; replaying the files instead");
                    return;
                }
            };
        let Some(after) = state.last_applied() else {
            return;
        };
        let mut g = self.lock();
        if g.next != Position::default() || g.stats.records > 0 {
            return;
        }
        log::info!("replication: hot standby seeded with the master's index (taken after {after})");
        g.seed = Some(Seed {
            state,
            fingerprint,
            after,
        });
    }

    fn reset(g: &mut Inner, why: &str) {
        log::info!("replication: hot standby index rebuilt from the files: {why}");
        g.state = State::default();
        g.next = Position::default();
        g.crc = crc32fast::Hasher::new();
        g.verify = None;
        g.seed = None;
        g.seed_failed = false;
        g.stats.records = 0;
        g.stats.rebuilds += 1;
    }

    /// Everything before `durable` is on disk: the applier may go up to it.
    pub fn durable(&self, durable: Position) {
        let mut g = self.signals();
        if durable > g.target {
            g.target = durable;
        }
        drop(g);
        self.wake.notify_all();
    }

    /// The master deleted these files (its GC): they go once the index is past them.
    pub fn remove_files(&self, files: &[u32]) {
        self.signals().removals.extend(files.iter().copied());
        self.wake.notify_all();
    }

    /// Starts the applier thread; it runs until [`Standby::stop`].
    pub fn spawn(self: &Arc<Self>) -> Result<JoinHandle<()>> {
        let me = self.clone();
        self.signals().stop = false;
        std::thread::Builder::new()
            .name("kahadb-standby".into())
            .spawn(move || me.run())
            .map_err(|e| Error::io("starting the standby applier", &e))
    }

    /// Stops the applier thread (it finishes the step it is on).
    pub fn stop(&self) {
        self.signals().stop = true;
        self.wake.notify_all();
    }

    fn run(&self) {
        loop {
            {
                let mut g = self.signals();
                loop {
                    if g.stop {
                        return;
                    }
                    let at = self.applied_pos();
                    let work = (g.target > at && g.target != g.tried)
                        || g.removals.iter().any(|f| *f < at.file);
                    if work {
                        break;
                    }
                    g = self.wake.wait(g).unwrap_or_else(|p| p.into_inner());
                }
            }
            if let Err(e) = self.catch_up() {
                log::warn!("replication: hot standby: {e}");
                let g = self.signals();
                // Wait for news rather than spin on the same error.
                let _ = self
                    .wake
                    .wait_timeout(g, std::time::Duration::from_secs(1))
                    .unwrap_or_else(|p| p.into_inner());
            }
        }
    }

    /// One step toward the durable target (at most `STEP` bytes), then deletes the files the
    /// master deleted that the index is past.
    pub fn catch_up(&self) -> Result<()> {
        let target = self.signals().target;
        let mut g = self.lock();
        let more = self.advance(&mut g, target, STEP)?;
        self.publish(&g);
        let next = g.next;
        if !more {
            self.signals().tried = target;
        }
        let gone: Vec<u32> = {
            let mut sig = self.signals();
            let gone: Vec<u32> = sig
                .removals
                .iter()
                .copied()
                .filter(|f| *f < next.file)
                .collect();
            for f in &gone {
                sig.removals.remove(f);
            }
            gone
        };
        if !gone.is_empty() {
            let set: BTreeSet<u32> = gone.iter().copied().collect();
            g.state.forget_files(|f| set.contains(&f));
            drop(g);
            for f in gone {
                let path = files::data_file_path(&self.dir, f);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(format!("deleting {}", path.display()), &e)),
                }
            }
            files::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Applies the complete batches before `durable` (synchronously; used at promotion, with
    /// the applier stopped) and hands the index over.
    pub fn take(&self, durable: Position) -> Result<State> {
        let mut g = self.lock();
        while self.advance(&mut g, durable, usize::MAX)? {}
        let state = std::mem::take(&mut g.state);
        g.next = Position::default();
        g.crc = crc32fast::Hasher::new();
        g.verify = None;
        g.stats.records = 0;
        self.publish(&g);
        Ok(state)
    }

    /// Applies complete batches before `durable`, reading at most about `budget` bytes; true
    /// when it stopped for the budget (more can be applied now).
    fn advance(&self, g: &mut Inner, durable: Position, budget: usize) -> Result<bool> {
        let mut spent = 0usize;
        loop {
            if spent >= budget {
                return Ok(true);
            }
            if let Some((file, upto, crc)) = g.verify {
                if durable < (Position { file, offset: upto }) {
                    return Ok(false);
                }
                let same = self.crc_of(file, upto).map(|c| c == crc).unwrap_or(false);
                g.verify = None;
                if !same {
                    Self::reset(g, "the master re-sent different bytes than it had applied");
                }
                continue;
            }
            if g.next >= durable {
                return Ok(false);
            }
            let path = files::data_file_path(&self.dir, g.next.file);
            let f = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // The next file that exists (files start at an id > 0, and GC removes old
                    // ones).
                    let ids = files::list_data_files(&self.dir)?;
                    match ids.into_iter().filter(|id| *id > g.next.file).min() {
                        Some(id) if id <= durable.file => {
                            Self::next_file(g, id);
                            continue;
                        }
                        _ => return Ok(false),
                    }
                }
                Err(e) => return Err(Error::io(format!("opening {}", path.display()), &e)),
            };
            let limit = if g.next.file == durable.file {
                u64::from(durable.offset)
            } else {
                f.metadata()
                    .map_err(|e| Error::io(format!("reading {}", path.display()), &e))?
                    .len()
                    .min(u64::from(u32::MAX))
            };
            let start = u64::from(g.next.offset);
            if limit <= start {
                if g.next.file < durable.file {
                    Self::next_file(g, g.next.file + 1);
                    continue;
                }
                return Ok(false);
            }
            // A step reads at most STEP bytes, unless one batch is larger.
            let mut end = limit.min(start + STEP as u64);
            let (buf, used) = loop {
                let mut buf = vec![0u8; (end - start) as usize];
                f.read_exact_at(&mut buf, start)
                    .map_err(|e| Error::io(format!("reading {}", path.display()), &e))?;
                // Bytes cut by the step's end are not garbage: only a whole sealed rest is.
                let sealed = g.next.file < durable.file && end == limit;
                let used = self.apply_bytes(g, &buf, sealed);
                if used == 0 && end < limit && !g.seed_failed {
                    end = limit;
                    continue;
                }
                break (buf, used);
            };
            spent += used.max(1);
            let sealed = g.next.file < durable.file && end == limit;
            if g.seed_failed {
                Self::reset(
                    g,
                    "the master's index does not match the replicated journal",
                );
                continue;
            }
            g.crc.update(&buf[..used]);
            g.next.offset += used as u32;
            if used < buf.len() || !sealed {
                if sealed {
                    // The rest of a sealed file holds no batch: its end.
                    Self::next_file(g, g.next.file + 1);
                    continue;
                }
                if end < limit && used > 0 {
                    continue; // the next step of this file
                }
                return Ok(false);
            }
        }
    }

    fn next_file(g: &mut Inner, id: u32) {
        g.next = Position {
            file: id,
            offset: 0,
        };
        g.crc = crc32fast::Hasher::new();
    }

    /// Applies the whole batches at the start of `buf` (which starts at `g.next`); returns how
    /// many bytes they and any skipped garbage take.
    fn apply_bytes(&self, g: &mut Inner, buf: &[u8], sealed: bool) -> usize {
        let mut pos = 0usize;
        loop {
            match check_batch(buf, pos) {
                BatchAt::Valid { payload_len } => {
                    let payload =
                        &buf[pos + BATCH_CONTROL_SIZE..pos + BATCH_CONTROL_SIZE + payload_len];
                    let base = g.next.offset as usize + pos + BATCH_CONTROL_SIZE;
                    for (at, kind, body) in records(payload) {
                        if kind != USER_RECORD_TYPE {
                            continue;
                        }
                        let loc = Location::new(
                            g.next.file,
                            (base + at) as u32,
                            (RECORD_HEAD + body.len()) as u32,
                        );
                        if let Some(after) = g.seed.as_ref().map(|s| s.after) {
                            if loc < after {
                                continue;
                            }
                            if let Some(seed) = g.seed.take() {
                                if loc == after && crc32fast::hash(body) == seed.fingerprint {
                                    g.state = seed.state;
                                    continue;
                                }
                            }
                            g.seed_failed = true;
                            return pos;
                        }
                        match JournalCommand::decode(body) {
                            Ok(cmd) => {
                                g.state.apply(&cmd, loc);
                                g.stats.records += 1;
                            }
                            Err(e) => {
                                g.stats.undecodable += 1;
                                log::error!(
                                    "replication: hot standby: record at {loc} cannot be decoded: {}",
                                    e.message()
                                );
                            }
                        }
                    }
                    pos += BATCH_CONTROL_SIZE + payload_len;
                }
                BatchAt::End => return pos,
                BatchAt::Invalid => {
                    let rest = &buf[pos..];
                    let complete = rest.len() >= BATCH_CONTROL_SIZE
                        && rest[..BATCH_HEADER.len()] == BATCH_HEADER
                        && rest.len()
                            >= BATCH_CONTROL_SIZE
                                + crate::journal::format::be_u32(rest, 16) as usize;
                    if !sealed && !complete {
                        // The rest of this batch has not arrived yet.
                        return pos;
                    }
                    match find_next_valid_batch(buf, pos + 1) {
                        Some(at) => {
                            log::warn!(
                                "replication: hot standby: skipped {} bytes without a valid batch at {}:{}",
                                at - pos,
                                g.next.file,
                                g.next.offset as usize + pos
                            );
                            pos = at;
                        }
                        None if sealed => return buf.len(),
                        None => return pos,
                    }
                }
            }
        }
    }

    fn crc_of(&self, file: u32, upto: u32) -> Result<u32> {
        let path = files::data_file_path(&self.dir, file);
        let f =
            File::open(&path).map_err(|e| Error::io(format!("opening {}", path.display()), &e))?;
        let mut h = crc32fast::Hasher::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut off = 0u64;
        while off < u64::from(upto) {
            let n = (u64::from(upto) - off).min(buf.len() as u64) as usize;
            f.read_exact_at(&mut buf[..n], off)
                .map_err(|e| Error::io(format!("reading {}", path.display()), &e))?;
            h.update(&buf[..n]);
            off += n as u64;
        }
        Ok(h.finalize())
    }
}

impl Drop for Standby {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The end of the valid journal in `dir` (after its last whole batch), read without opening it
/// as a journal (no lock, nothing changed): the standing of a stopped node.
pub fn journal_end(dir: &Path) -> Result<Position> {
    let mut ids = files::list_data_files(dir)?;
    ids.sort_unstable();
    let Some(last) = ids.last().copied() else {
        return Ok(Position::default());
    };
    let path = files::data_file_path(dir, last);
    let data =
        std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", path.display()), &e))?;
    let mut pos = 0usize;
    while let BatchAt::Valid { payload_len } = check_batch(&data, pos) {
        pos += BATCH_CONTROL_SIZE + payload_len;
    }
    Ok(Position {
        file: last,
        offset: pos as u32,
    })
}

//! Checkpoints: the index written to a file of our own, so that a restart replays only the
//! journal after it (restart time bounded by the checkpoint interval, not by the store size).
//!
//! File `kahadb-rs.index` in the store directory (never `db.data`/`db.redo`: stock KahaDB must
//! find no index of its own and rebuild one). Layout, all integers big-endian:
//!
//! ```text
//! 0   8 B  magic "KRSINDX1"
//! 8   u32  format version (3; older versions (1: no pins, 2: no producer audit) are refused,
//!          so the index is rebuilt from the journal)
//! 12  u64  body length
//! 20  u32  CRC32 (crc32fast) of the body
//! 24  u32  CRC32 of the payload of the last journal record the state applied (0 if none):
//!          ties the checkpoint to this journal, so a checkpoint from elsewhere is refused
//! 28  ...  body: the State (see `encode_state`)
//! ```
//!
//! Written under `kahadb-rs.index.tmp`, synced, renamed over the old one, directory synced:
//! a crash leaves either the old or the new checkpoint, whole. A file that fails its checks is
//! ignored with a logged reason and the index is rebuilt from the journal.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::Path;

use crate::error::{Error, ErrorCode, Result};
use crate::journal::{Journal, Location};

use super::codec::JournalCommand;
use super::state::{
    DestKey, Destination, Producers, ReplayReport, State, StoredMessage, Subscription,
};
use super::state::{TxKey, TxOp};

/// The checkpoint file's name.
pub const INDEX_FILE: &str = "kahadb-rs.index";
const TMP_FILE: &str = "kahadb-rs.index.tmp";
const MAGIC: &[u8; 8] = b"KRSINDX1";
const VERSION: u32 = 3;
const HEADER: usize = 28;

/// How the index was recovered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexRecovery {
    /// The checkpoint used, if one was valid: where it ended.
    pub checkpoint: Option<Location>,
    /// Why a checkpoint present on disk was not used.
    pub rejected: Option<String>,
    /// The replay after the checkpoint (or of the whole journal).
    pub replay: ReplayReport,
}

/// Makes the journal durable up to what `state` has applied, then writes `state` as the new
/// checkpoint of `dir`.
pub fn write(dir: &Path, journal: &Journal, state: &State) -> Result<()> {
    write_encoded(dir, journal, &encode_state(state), state.last_applied())
}

/// Like [`write`], for a state already encoded with [`encode_state`] (so that a live store can
/// encode under its lock and do the I/O outside it). `last_applied` is the state's.
pub fn write_encoded(
    dir: &Path,
    journal: &Journal,
    body: &[u8],
    last_applied: Option<Location>,
) -> Result<()> {
    // Never checkpoint an effect whose record could still be lost: everything appended before
    // the state was taken becomes durable here.
    journal.sync()?;
    let fingerprint = match last_applied {
        Some(loc) => crc32fast::hash(&journal.read(loc)?),
        None => 0,
    };
    let mut file = Vec::with_capacity(HEADER + body.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&VERSION.to_be_bytes());
    file.extend_from_slice(&(body.len() as u64).to_be_bytes());
    file.extend_from_slice(&crc32fast::hash(body).to_be_bytes());
    file.extend_from_slice(&fingerprint.to_be_bytes());
    file.extend_from_slice(body);
    let tmp = dir.join(TMP_FILE);
    let path = dir.join(INDEX_FILE);
    let io = |what: &str, e: std::io::Error| Error::io(format!("{what} {}", tmp.display()), &e);
    let mut f = fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(&file).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    drop(f);
    fs::rename(&tmp, &path)
        .map_err(|e| Error::io(format!("renaming {} into place", path.display()), &e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), &e))
}

/// Recovers the index of the store in `dir` over its `journal`: the checkpoint if it is valid,
/// then the journal after it; without a usable checkpoint, the whole journal.
pub fn recover(dir: &Path, journal: &Journal) -> Result<(State, IndexRecovery)> {
    let mut rec = IndexRecovery::default();
    let mut state = match read(dir) {
        Ok(Some((state, fingerprint))) => match validate(&state, fingerprint, journal) {
            Ok(()) => {
                rec.checkpoint = state.last_applied();
                state
            }
            Err(why) => {
                rec.rejected = Some(why);
                State::default()
            }
        },
        Ok(None) => State::default(),
        Err(e) => {
            rec.rejected = Some(e.to_string());
            State::default()
        }
    };
    if let Some(why) = &rec.rejected {
        log::warn!(
            "store {}: checkpoint not used ({why}); rebuilding the index from the journal",
            dir.display()
        );
    }
    rec.replay = state.replay_after(journal, rec.checkpoint)?;
    Ok((state, rec))
}

/// The checkpoint must end at a record this journal still has, with the same contents.
fn validate(state: &State, fingerprint: u32, journal: &Journal) -> std::result::Result<(), String> {
    let Some(loc) = state.last_applied() else {
        return Ok(());
    };
    match journal.read(loc) {
        Ok(data) if crc32fast::hash(&data) == fingerprint => Ok(()),
        Ok(_) => Err(format!(
            "the journal record at {loc}, where it ends, is not the one it was taken after"
        )),
        Err(e) => Err(format!(
            "it ends at journal location {loc}, which the journal does not hold ({e})"
        )),
    }
}

/// Reads and checks the checkpoint file: the state and the fingerprint of its last record;
/// `None` if there is none.
pub fn read(dir: &Path) -> Result<Option<(State, u32)>> {
    let path = dir.join(INDEX_FILE);
    let data = match fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), &e)),
    };
    parse(&data, &path.display().to_string()).map(Some)
}

/// Checks and decodes the bytes of a checkpoint file (`what` names it in errors): the state
/// and the fingerprint of its last record.
pub fn parse(data: &[u8], what: &str) -> Result<(State, u32)> {
    let bad = |why: &str| Error::new(ErrorCode::Corrupt, format!("{what}: {why}"));
    if data.len() < HEADER || &data[..8] != MAGIC {
        return Err(bad("not a kahadb-rs checkpoint"));
    }
    let version = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    if version != VERSION {
        return Err(bad(&format!("unsupported format version {version}")));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&data[12..20]);
    let len = u64::from_be_bytes(len);
    if len != (data.len() - HEADER) as u64 {
        return Err(bad(&format!(
            "body is {} bytes, the header says {len}",
            data.len() - HEADER
        )));
    }
    let crc = u32::from_be_bytes([data[20], data[21], data[22], data[23]]);
    let fingerprint = u32::from_be_bytes([data[24], data[25], data[26], data[27]]);
    let body = &data[HEADER..];
    if crc32fast::hash(body) != crc {
        return Err(bad("checksum mismatch"));
    }
    decode_state(body)
        .map(|state| (state, fingerprint))
        .map_err(|why| bad(&format!("malformed body: {why}")))
}

// ---------------------------------------------------------------------------------------------
// Body encoding
// ---------------------------------------------------------------------------------------------

struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn loc(&mut self, l: Location) {
        self.u32(l.file_id);
        self.u32(l.offset);
        self.u32(l.size);
    }
    fn dest(&mut self, d: &DestKey) {
        self.i32(d.kind);
        self.bytes(d.name.as_bytes());
    }
    fn tx(&mut self, t: &TxKey) {
        match t {
            TxKey::Local { connection, id } => {
                self.u8(0);
                self.bytes(connection.as_bytes());
                self.i64(*id);
            }
            TxKey::Xa {
                format,
                global,
                branch,
            } => {
                self.u8(1);
                self.i32(*format);
                self.bytes(global);
                self.bytes(branch);
            }
        }
    }
    fn ops(&mut self, ops: &[TxOp]) {
        self.u32(ops.len() as u32);
        for op in ops {
            match op {
                TxOp::Add { command, location } => {
                    self.u8(0);
                    self.bytes(&JournalCommand::AddMessage(command.clone()).encode());
                    self.loc(*location);
                }
                TxOp::Remove {
                    destination,
                    message_id,
                    subscription,
                    location,
                } => {
                    self.u8(1);
                    self.dest(destination);
                    self.bytes(message_id.as_bytes());
                    match subscription {
                        Some(s) => {
                            self.u8(1);
                            self.bytes(s.as_bytes());
                        }
                        None => self.u8(0),
                    }
                    self.loc(*location);
                }
            }
        }
    }
}

/// Serializes the state (the checkpoint body).
pub fn encode_state(state: &State) -> Vec<u8> {
    let mut o = Out(Vec::new());
    match state.last_applied() {
        Some(l) => {
            o.u8(1);
            o.loc(l);
        }
        None => o.u8(0),
    }
    let dests: Vec<_> = state.destinations().collect();
    o.u32(dests.len() as u32);
    for (key, d) in dests {
        o.dest(key);
        o.u64(d.next_seq());
        o.u32(d.message_count() as u32);
        for (seq, m) in d.messages() {
            o.u64(seq);
            o.bytes(m.message_id.to_string().as_bytes());
            o.loc(m.location);
            o.u8(m.priority);
            o.u32(m.size);
            o.u32(m.refs);
        }
        o.u32(d.subscriptions().len() as u32);
        for (key, s) in d.subscriptions() {
            o.bytes(key.as_bytes());
            o.bytes(&s.info);
            o.u8(u8::from(s.retroactive));
            o.loc(s.location);
            o.u32(s.pending.len() as u32);
            for seq in &s.pending {
                o.u64(*seq);
            }
        }
    }
    for txs in [state.inflight(), state.prepared()] {
        o.u32(txs.len() as u32);
        for (tx, ops) in txs {
            o.tx(tx);
            o.ops(ops);
        }
    }
    // Pins: data file, then the data files it must outlive.
    o.u32(state.pins().len() as u32);
    for (file, to) in state.pins() {
        o.u32(*file);
        o.u32(to.len() as u32);
        for t in to {
            o.u32(*t);
        }
    }
    // Producer audit: producer id, highest producer sequence stored.
    let audit = state.producer_audit();
    o.u32(audit.len() as u32);
    for (producer, seq) in audit {
        o.bytes(producer.as_bytes());
        o.u64(*seq as u64);
    }
    o.0
}

struct In<'a> {
    data: &'a [u8],
    pos: usize,
}

type Dec<T> = std::result::Result<T, String>;

impl In<'_> {
    fn take(&mut self, n: usize) -> Dec<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.data.len())
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Dec<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Dec<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Dec<u64> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn i32(&mut self) -> Dec<i32> {
        Ok(self.u32()? as i32)
    }
    fn i64(&mut self) -> Dec<i64> {
        Ok(self.u64()? as i64)
    }
    fn bytes(&mut self) -> Dec<Vec<u8>> {
        let n = self.u32()? as usize;
        Ok(self.take(n)?.to_vec())
    }
    fn string(&mut self) -> Dec<String> {
        String::from_utf8(self.bytes()?)
            .map_err(|_| format!("invalid UTF-8 before byte {}", self.pos))
    }
    fn loc(&mut self) -> Dec<Location> {
        Ok(Location::new(self.u32()?, self.u32()?, self.u32()?))
    }
    fn dest(&mut self) -> Dec<DestKey> {
        Ok(DestKey {
            kind: self.i32()?,
            name: self.string()?,
        })
    }
    /// A count of items each at least `min` bytes long, checked against what is left.
    fn count(&mut self, min: usize) -> Dec<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min) > self.data.len() - self.pos {
            return Err(format!("count {n} at byte {} exceeds the data", self.pos));
        }
        Ok(n)
    }
    fn tx(&mut self) -> Dec<TxKey> {
        match self.u8()? {
            0 => Ok(TxKey::Local {
                connection: self.string()?,
                id: self.i64()?,
            }),
            1 => Ok(TxKey::Xa {
                format: self.i32()?,
                global: self.bytes()?,
                branch: self.bytes()?,
            }),
            t => Err(format!("unknown transaction kind {t}")),
        }
    }
    fn ops(&mut self) -> Dec<Vec<TxOp>> {
        let n = self.count(13)?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            ops.push(match self.u8()? {
                0 => {
                    let bytes = self.bytes()?;
                    let command = match JournalCommand::decode(&bytes) {
                        Ok(JournalCommand::AddMessage(c)) => c,
                        Ok(_) => return Err("a transactional add is not an add".into()),
                        Err(e) => return Err(e.message().to_string()),
                    };
                    TxOp::Add {
                        command,
                        location: self.loc()?,
                    }
                }
                1 => TxOp::Remove {
                    destination: self.dest()?,
                    message_id: self.string()?,
                    subscription: match self.u8()? {
                        0 => None,
                        _ => Some(self.string()?),
                    },
                    location: self.loc()?,
                },
                t => return Err(format!("unknown operation kind {t}")),
            });
        }
        Ok(ops)
    }
}

/// Rebuilds a state from a checkpoint body.
pub fn decode_state(body: &[u8]) -> Dec<State> {
    let mut i = In { data: body, pos: 0 };
    let last_applied = match i.u8()? {
        0 => None,
        _ => Some(i.loc()?),
    };
    let mut dests = BTreeMap::new();
    for _ in 0..i.count(20)? {
        let key = i.dest()?;
        let next_seq = i.u64()?;
        let mut producers = Producers::default();
        let mut messages = Vec::new();
        for _ in 0..i.count(33)? {
            let seq = i.u64()?;
            let message_id = producers.key(&i.string()?);
            let location = i.loc()?;
            let priority = i.u8()?;
            let size = i.u32()?;
            let refs = i.u32()?;
            messages.push((
                seq,
                StoredMessage {
                    message_id,
                    location,
                    priority,
                    size,
                    refs,
                },
            ));
        }
        let mut subs = BTreeMap::new();
        for _ in 0..i.count(25)? {
            let key = i.string()?;
            let info = i.bytes()?;
            let retroactive = i.u8()? != 0;
            let location = i.loc()?;
            let mut pending = BTreeSet::new();
            for _ in 0..i.count(8)? {
                pending.insert(i.u64()?);
            }
            subs.insert(
                key,
                Subscription {
                    info,
                    retroactive,
                    location,
                    pending,
                },
            );
        }
        dests.insert(
            key,
            Destination::restore(
                next_seq,
                // In sequence order as written: built in one pass.
                messages.into_iter().collect(),
                producers,
                subs,
            ),
        );
    }
    let mut txs = Vec::new();
    for _ in 0..2 {
        let mut map = BTreeMap::new();
        for _ in 0..i.count(5)? {
            let tx = i.tx()?;
            map.insert(tx, i.ops()?);
        }
        txs.push(map);
    }
    let mut pins = BTreeMap::new();
    for _ in 0..i.count(8)? {
        let file = i.u32()?;
        let mut to = BTreeSet::new();
        for _ in 0..i.count(4)? {
            to.insert(i.u32()?);
        }
        pins.insert(file, to);
    }
    let mut audit = Vec::new();
    for _ in 0..i.count(12)? {
        let producer = i.string()?;
        let seq = i.u64()? as i64;
        audit.push((producer, seq));
    }
    if i.pos != body.len() {
        return Err(format!("{} trailing bytes", body.len() - i.pos));
    }
    let prepared = txs.pop().unwrap_or_default();
    let inflight = txs.pop().unwrap_or_default();
    let mut state = State::restore(dests, inflight, prepared, last_applied);
    state.restore_pins(pins);
    state.restore_audit(audit);
    Ok(state)
}

//! Forward iteration over the journal's user records, batch by batch, checksums verified.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::error::{ErrorCode, Result};

use super::format::{check_batch, find_next_valid_batch, records, BatchAt, BATCH_CONTROL_SIZE};
use super::format::{RECORD_HEAD, USER_RECORD_TYPE};
use super::{CorruptRange, Inner, Location, Pos};

/// A cursor over user records in journal order. It holds the journal's internals, not a borrow,
/// so it can move between threads; it fails with `Closed` once the journal is closed.
pub struct Cursor {
    inner: Arc<Inner>,
    /// Where the next batch to examine starts.
    pos: Pos,
    /// Only records after this location are returned.
    after: Option<Location>,
    ready: VecDeque<(Location, Vec<u8>)>,
    skipped: Vec<CorruptRange>,
}

impl Cursor {
    pub(super) fn new(inner: Arc<Inner>, after: Option<Location>) -> Cursor {
        let pos = match after {
            Some(l) => Pos::new(l.file_id, 0),
            None => Pos::new(0, 0),
        };
        Cursor {
            inner,
            pos,
            after,
            ready: VecDeque::new(),
            skipped: Vec::new(),
        }
    }

    /// Ranges this cursor skipped because they held no valid batch (corruption).
    pub fn skipped(&self) -> &[CorruptRange] {
        &self.skipped
    }

    /// The next record, or `None` at the end of the journal (poll again later for records
    /// appended since). Every record appended before the call is seen, written or queued.
    pub fn next_record(&mut self) -> Result<Option<(Location, Vec<u8>)>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                return Ok(Some(r));
            }
            if !self.load_batch()? {
                return Ok(None);
            }
        }
    }

    /// Loads the records of the next batch into `ready`; false at the end of the journal.
    fn load_batch(&mut self) -> Result<bool> {
        loop {
            let (written, file) = {
                let mut st = self.inner.lock();
                if st.closed {
                    return Err(self.inner.closed_error());
                }
                // At the end of what is written while more is queued: have it written, so a
                // cursor sees every record appended before the call, like a read does.
                if self.pos >= st.written && st.assign > st.written {
                    let target = st.assign;
                    if st.appender_idle {
                        st.appender_idle = false;
                        self.inner.work.notify_one();
                    }
                    while st.written < target && !st.closed {
                        st = self.inner.wait(&self.inner.done, st);
                    }
                }
                // The first existing file at or after the position.
                let file = st.files.range(self.pos.file_id..).next().copied();
                (st.readable(), file)
            };
            let file_id = match file {
                Some(f) => f,
                None => return Ok(false),
            };
            if file_id != self.pos.file_id {
                self.pos = Pos::new(file_id, 0);
            }
            if self.pos >= written {
                return Ok(false);
            }
            // Only bytes below the written watermark are examined in the file being written.
            let limit = if file_id == written.file_id {
                written.offset as usize
            } else {
                usize::MAX
            };
            let map = if limit == usize::MAX {
                self.inner.map(file_id, 0)
            } else {
                self.inner.map(file_id, limit)
            };
            let map = match map {
                Ok(m) => m,
                Err(e) if e.code() == ErrorCode::NotFound => {
                    // Removed meanwhile: go on with the next file.
                    self.pos = Pos::new(file_id + 1, 0);
                    continue;
                }
                Err(e) if e.code() == ErrorCode::InvalidLocation && limit == usize::MAX => {
                    // An empty sealed file (KahaDB leaves one after a failed creation).
                    self.pos = Pos::new(file_id + 1, 0);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let data = &map[..limit.min(map.len())];
            let at = self.pos.offset as usize;
            match check_batch(data, at) {
                BatchAt::Valid { payload_len } => {
                    let payload =
                        &data[at + BATCH_CONTROL_SIZE..at + BATCH_CONTROL_SIZE + payload_len];
                    for (off, kind, body) in records(payload) {
                        if kind != USER_RECORD_TYPE {
                            continue;
                        }
                        let loc = Location::new(
                            file_id,
                            (at + BATCH_CONTROL_SIZE + off) as u32,
                            (body.len() + RECORD_HEAD) as u32,
                        );
                        if self.after.is_some_and(|a| loc <= a) {
                            continue;
                        }
                        self.ready.push_back((loc, body.to_vec()));
                    }
                    self.pos.offset = (at + BATCH_CONTROL_SIZE + payload_len) as u32;
                    if !self.ready.is_empty() {
                        return Ok(true);
                    }
                }
                BatchAt::End if limit == usize::MAX => {
                    self.pos = Pos::new(file_id + 1, 0);
                }
                BatchAt::End | BatchAt::Invalid => {
                    // In the file being written an early end is a failed write not yet padded;
                    // anywhere, an invalid batch is corruption. Skip to the next valid batch.
                    match find_next_valid_batch(data, at + 1) {
                        Some(next) => {
                            log::warn!(
                                "journal {}: skipping corrupt range db-{file_id}.log[{at}..{next})",
                                self.inner.dir.display()
                            );
                            self.skipped.push(CorruptRange {
                                file_id,
                                start: at as u32,
                                end: next as u32,
                            });
                            self.pos.offset = next as u32;
                        }
                        None if limit == usize::MAX => {
                            log::warn!(
                                "journal {}: skipping corrupt end of db-{file_id}.log from offset {at}",
                                self.inner.dir.display()
                            );
                            self.skipped.push(CorruptRange {
                                file_id,
                                start: at as u32,
                                end: data.len() as u32,
                            });
                            self.pos = Pos::new(file_id + 1, 0);
                        }
                        None => return Ok(false),
                    }
                }
            }
        }
    }
}

impl Iterator for Cursor {
    type Item = Result<(Location, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

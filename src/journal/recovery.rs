//! Recovery on open: find the end of the tail file and clean up behind it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, Result};

use super::files;
use super::format::{check_batch, find_next_valid_batch, BatchAt, BATCH_CONTROL_SIZE, EOF_RECORD};
use super::JournalConfig;

/// A byte range of a data file that holds no valid batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRange {
    pub file_id: u32,
    pub start: u32,
    pub end: u32,
}

/// What recovery found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The file appends continue in.
    pub tail_file: u32,
    /// Where the next batch goes in the tail file: just past the last valid batch.
    pub append_offset: u32,
    /// Valid batches found in the tail file.
    pub tail_batches: u64,
    /// Corrupt ranges with valid batches after them (skipped by readers).
    pub corrupt_ranges: Vec<CorruptRange>,
    /// Bytes after the last valid batch that were not a clean end (a torn or unsynced write);
    /// they were zeroed.
    pub discarded_tail_bytes: u64,
}

impl RecoveryReport {
    pub fn summary(&self) -> String {
        let ranges: Vec<String> = self
            .corrupt_ranges
            .iter()
            .map(|r| format!("db-{}.log[{}..{})", r.file_id, r.start, r.end))
            .collect();
        format!(
            "tail db-{}.log ends at offset {} after {} batches; {} corrupt range(s) skipped{}{}; {} byte(s) of torn tail discarded",
            self.tail_file,
            self.append_offset,
            self.tail_batches,
            self.corrupt_ranges.len(),
            if ranges.is_empty() { "" } else { ": " },
            ranges.join(", "),
            self.discarded_tail_bytes
        )
    }
}

pub(super) struct Recovered {
    pub report: RecoveryReport,
    pub files: Vec<u32>,
    pub tail_file_handle: File,
}

pub(super) fn recover(dir: &Path, config: &JournalConfig) -> Result<Recovered> {
    // A preallocation that did not finish before a crash is simply dropped.
    let _ = std::fs::remove_file(dir.join(files::PREALLOC_FILE));
    let mut ids = files::list_data_files(dir)?;
    if ids.is_empty() {
        let (file, tmp) = files::create_preallocated(
            dir,
            files::PREALLOC_FILE,
            config.max_file_length,
            config.preallocation,
        )?;
        let path = files::data_file_path(dir, 1);
        std::fs::rename(&tmp, &path)
            .map_err(|e| Error::io(format!("renaming {} into place", path.display()), &e))?;
        files::sync_dir(dir)?;
        ids.push(1);
        return Ok(Recovered {
            report: RecoveryReport {
                tail_file: 1,
                ..Default::default()
            },
            files: ids,
            tail_file_handle: file,
        });
    }
    let tail = *ids.last().unwrap_or(&1);
    let path = files::data_file_path(dir, tail);
    let file = files::open_for_append(&path)?;
    let mut report = RecoveryReport {
        tail_file: tail,
        ..Default::default()
    };
    // Scan through a read-only map (no copy of the file in memory); the writes below happen
    // after the map is gone.
    let (end, dirty_end) = {
        let map = map_whole(&file, &path)?;
        let data: &[u8] = map.as_deref().unwrap_or(&[]);
        let (end, batches, corrupt, torn) = scan(data);
        report.tail_batches = batches;
        report.corrupt_ranges = corrupt
            .into_iter()
            .map(|(s, e)| CorruptRange {
                file_id: tail,
                start: s as u32,
                end: e as u32,
            })
            .collect();
        report.append_offset = end as u32;
        let dirty_end = dirty_end(data, end);
        if torn || dirty_end.is_some() {
            report.discarded_tail_bytes = dirty_end.map_or(0, |d| d - end) as u64;
        }
        (end, dirty_end)
    };
    // Leave a clean end: an EOF marker at `end` and nothing but zeros after it up to the last
    // byte that was not, so that no stale batch behind the new end can ever be mistaken for
    // data. (Only that range is written: a sparse file stays sparse.)
    if let Some(dirty_end) = dirty_end {
        let mut zeros = vec![0u8; dirty_end - end];
        let n = EOF_RECORD.len().min(zeros.len());
        zeros[..n].copy_from_slice(&EOF_RECORD[..n]);
        file.write_all_at(&zeros, end as u64)
            .map_err(|e| Error::io(format!("cleaning the tail of {}", path.display()), &e))?;
    }
    // The dead process's unsynced writes may still sit in the page cache, and recovery just
    // accepted them: make them durable before anything is built on them.
    files::datasync(&file, &path)?;
    Ok(Recovered {
        report,
        files: ids,
        tail_file_handle: file,
    })
}

/// Where the bytes after `end` stop being a clean end, if they are not one: a clean end is
/// nothing, or an EOF marker or zeros, then zeros, with possibly one more EOF marker closing
/// the file (KahaDB's sparse preallocation writes one at both ends).
fn dirty_end(data: &[u8], end: usize) -> Option<usize> {
    let rest = data.get(end..)?;
    let head = EOF_RECORD.len().min(rest.len());
    let mut body = &rest[head..];
    if body.len() >= EOF_RECORD.len() && body.ends_with(&EOF_RECORD) {
        body = &body[..body.len() - EOF_RECORD.len()];
    }
    let head_clean = rest[..head] == EOF_RECORD[..head] || rest[..head].iter().all(|b| *b == 0);
    match body.iter().rposition(|b| *b != 0) {
        None if head_clean => None,
        None => Some(end + head),
        Some(last) => Some(end + head + last + 1),
    }
}

fn map_whole(file: &File, path: &Path) -> Result<Option<memmap2::Mmap>> {
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), &e))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: read-only map of a data file of a journal that is not open yet: the directory
    // lock is held, so nothing else writes or truncates it while the map lives (it is dropped
    // before recovery writes).
    let map = unsafe { memmap2::Mmap::map(file) }
        .map_err(|e| Error::io(format!("mapping {}", path.display()), &e))?;
    Ok(Some(map))
}

/// Scans a file's bytes: (end of the last valid batch, valid batches, corrupt ranges followed by
/// valid batches, whether the end is torn rather than clean).
fn scan(data: &[u8]) -> (usize, u64, Vec<(usize, usize)>, bool) {
    let mut pos = 0;
    let mut batches = 0;
    let mut corrupt = Vec::new();
    loop {
        match check_batch(data, pos) {
            BatchAt::Valid { payload_len } => {
                pos += BATCH_CONTROL_SIZE + payload_len;
                batches += 1;
            }
            BatchAt::End => return (pos, batches, corrupt, false),
            BatchAt::Invalid => match find_next_valid_batch(data, pos + 1) {
                Some(next) => {
                    corrupt.push((pos, next));
                    pos = next;
                }
                None => return (pos, batches, corrupt, true),
            },
        }
    }
}

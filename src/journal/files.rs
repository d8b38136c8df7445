//! Data files on disk: names, listing, the directory lock, creation and preallocation.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};

use super::format::EOF_RECORD;
use super::Preallocation;

/// Prefix and suffix of data files, as in ActiveMQ KahaDB.
pub const FILE_PREFIX: &str = "db-";
pub const FILE_SUFFIX: &str = ".log";
/// The lock file, the same one ActiveMQ KahaDB locks, so neither can open a directory the
/// other has open.
pub const LOCK_FILE: &str = "lock";
/// A file being preallocated before it becomes the next data file (never matches `db-*.log`).
pub const PREALLOC_FILE: &str = "prealloc.tmp";

pub fn data_file_name(id: u32) -> String {
    format!("{FILE_PREFIX}{id}{FILE_SUFFIX}")
}

pub fn data_file_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(data_file_name(id))
}

/// Parses `db-<N>.log` into N.
pub fn parse_data_file_name(name: &str) -> Option<u32> {
    let n = name.strip_prefix(FILE_PREFIX)?.strip_suffix(FILE_SUFFIX)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok().filter(|id| *id > 0)
}

/// The data file ids present in `dir`, sorted.
pub fn list_data_files(dir: &Path) -> Result<Vec<u32>> {
    let entries =
        fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), &e))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), &e))?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_data_file_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// An exclusive lock on a journal directory, held for as long as the value lives.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    key: PathBuf,
}

/// Directories this process has open. Checked before the file lock: a second open from this
/// process fails at once, and a file lock briefly held by a forked child (between its fork and
/// exec the child shares our open file descriptions) is not mistaken for a real owner.
static OPEN_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// How long to retry a file lock held elsewhere before reporting the directory locked.
const LOCK_PATIENCE: Duration = Duration::from_millis(1500);

impl DirLock {
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let key = dir
            .canonicalize()
            .map_err(|e| Error::io(format!("resolving {}", dir.display()), &e))?;
        let locked = || {
            Error::new(
                ErrorCode::Locked,
                format!(
                    "journal directory {} is already open (locked by another journal or broker in this or another process)",
                    dir.display()
                ),
            )
        };
        if !open_dirs().insert(key.clone()) {
            return Err(locked());
        }
        // From here on, dropping `guard` (on any error) gives the directory back.
        let guard = Registered(key);
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock file {}", path.display()), &e))?;
        let started = Instant::now();
        loop {
            match try_lock(&file) {
                Ok(()) => break,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => {
                    if started.elapsed() >= LOCK_PATIENCE {
                        return Err(locked());
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(Error::io(format!("locking {}", path.display()), &e)),
            }
        }
        let key = guard.release();
        Ok(DirLock { _file: file, key })
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        open_dirs().remove(&self.key);
    }
}

struct Registered(PathBuf);

impl Registered {
    fn release(mut self) -> PathBuf {
        let key = std::mem::take(&mut self.0);
        std::mem::forget(self);
        key
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        open_dirs().remove(&self.0);
    }
}

fn open_dirs() -> std::sync::MutexGuard<'static, BTreeSet<PathBuf>> {
    // A set insert or remove cannot leave it inconsistent; take a poisoned lock over.
    OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner())
}

/// An open-file-description write lock over the whole file: it conflicts with the POSIX lock
/// Java's FileChannel.tryLock takes (so stock KahaDB is kept out) and, unlike a classic POSIX
/// lock, also between two opens in one process. It goes away with the process.
fn try_lock(file: &File) -> std::io::Result<()> {
    // SAFETY: `libc::flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as libc::c_short;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = 0;
    fl.l_len = 0;
    // SAFETY: fcntl gets a descriptor that `file` owns and keeps open for the call, and a
    // pointer to `fl`, a live, initialised struct of the type F_OFD_SETLK expects.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &mut fl) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// fdatasync(2): data and the metadata needed to read it back.
pub fn datasync(file: &File, what: &Path) -> Result<()> {
    file.sync_data()
        .map_err(|e| Error::io(format!("syncing {}", what.display()), &e))
}

/// fsync of a directory, so that created, renamed and removed entries are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), &e))?;
    d.sync_all()
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), &e))
}

/// Opens an existing data file for appending (positioned writes).
pub fn open_for_append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), &e))
}

/// Creates a new, empty data file, preallocated according to `prealloc`, under a temporary
/// name; the caller renames it into place. Returns the open file.
pub fn create_preallocated(
    dir: &Path,
    tmp_name: &str,
    length: u32,
    prealloc: Preallocation,
) -> Result<(File, PathBuf)> {
    let path = dir.join(tmp_name);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), &e))?;
    let result = preallocate(&file, &path, length, prealloc);
    if let Err(e) = result {
        drop(file);
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok((file, path))
}

fn preallocate(file: &File, path: &Path, length: u32, prealloc: Preallocation) -> Result<()> {
    let ctx = || format!("preallocating {}", path.display());
    match prealloc {
        Preallocation::None => {}
        Preallocation::Sparse => {
            file.set_len(u64::from(length))
                .map_err(|e| Error::io(ctx(), &e))?;
        }
        Preallocation::Zeros => {
            // Real zero blocks: later overwrites need no block allocation or extent conversion,
            // so an append + fdatasync flushes data only. Written in 1 MiB chunks.
            const CHUNK: usize = 1 << 20;
            let zeros = vec![0u8; CHUNK];
            let mut pos: u64 = 0;
            while pos < u64::from(length) {
                let n = (u64::from(length) - pos).min(CHUNK as u64) as usize;
                file.write_all_at(&zeros[..n], pos)
                    .map_err(|e| Error::io(ctx(), &e))?;
                pos += n as u64;
            }
        }
    }
    // An EOF marker at offset 0 marks the file as empty for either implementation.
    file.write_all_at(&EOF_RECORD, 0)
        .map_err(|e| Error::io(ctx(), &e))?;
    datasync(file, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(data_file_name(7), "db-7.log");
        assert_eq!(parse_data_file_name("db-7.log"), Some(7));
        assert_eq!(parse_data_file_name("db-0.log"), None);
        assert_eq!(parse_data_file_name("db-.log"), None);
        assert_eq!(parse_data_file_name("db-1.log.tmp"), None);
        assert_eq!(parse_data_file_name("db-x.log"), None);
        assert_eq!(parse_data_file_name("db.data"), None);
    }
}

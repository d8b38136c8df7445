//! The live stream (`docs/PROTOCOL.md` §3.4): every batch the master's journal writes goes to
//! each attached slave, which writes it at the same position, fdatasyncs, and acks; the master
//! keeps each slave's durable position.
//!
//! Attaching: the slave says where it stands (an Ack of the position where its bulk copy
//! ended); the master subscribes the session to its journal's batches first, then sends what
//! lies between that position and the journal's written position from the files, then the
//! subscribed batches from there on, so the slave gets every byte once, in order.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::error::{Error, ErrorCode, Result};
use crate::journal::format::EOF_RECORD;
use crate::journal::{files, Journal};

use super::message::{Message, Position};
use super::net::{Closed, Conn};

/// Bytes per catch-up frame read from the master's files.
const CATCH_UP_CHUNK: u32 = 1 << 20;

type Item = (Position, Arc<[u8]>);

/// The master's fan-out of journal batches to stream sessions.
#[derive(Default)]
pub struct Feed {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Item>>>,
}

impl Feed {
    /// Installs a feed as the journal's batch tap.
    pub fn install(journal: &Journal) -> Arc<Feed> {
        let feed = Arc::new(Feed::default());
        let f = feed.clone();
        journal.set_batch_tap(Some(Arc::new(move |file, offset, bytes: &[u8]| {
            f.publish(Position { file, offset }, bytes);
        })));
        feed
    }

    fn publish(&self, at: Position, bytes: &[u8]) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        if subs.is_empty() {
            return;
        }
        let data: Arc<[u8]> = Arc::from(bytes);
        subs.retain(|s| s.send((at, data.clone())).is_ok());
    }

    fn subscribe(&self) -> mpsc::UnboundedReceiver<Item> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(tx);
        rx
    }
}

/// What the master knows about its slaves: the durable position each one acked.
#[derive(Default)]
pub struct Slaves {
    durable: Mutex<HashMap<String, Position>>,
    changed: tokio::sync::Notify,
}

impl Slaves {
    pub fn durable(&self, node: &str) -> Option<Position> {
        self.durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .copied()
    }

    /// Waits until `node` has acked at least `pos`.
    pub async fn wait_for(&self, node: &str, pos: Position) {
        loop {
            let notified = self.changed.notified();
            if self.durable(node).is_some_and(|d| d >= pos) {
                return;
            }
            notified.await;
        }
    }

    fn set(&self, node: &str, pos: Position) {
        self.durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_owned(), pos);
        self.changed.notify_waiters();
    }
}

/// Runs a master's stream session once the slave is ready: expects an Ack of the position it
/// stands at, catches it up from the files, then streams batches and records its acks until
/// the connection ends (the reason is returned).
pub async fn serve_stream(
    conn: Conn,
    node: String,
    dir: PathBuf,
    journal: Arc<Journal>,
    feed: Arc<Feed>,
    slaves: Arc<Slaves>,
) -> Closed {
    let mut conn = conn;
    let start = match conn.recv().await {
        Ok(Message::Ack { durable }) => durable,
        Ok(other) => {
            return Closed::Protocol(format!(
                "expected the slave's position, got {:?}",
                other.kind()
            ))
        }
        Err(c) => return c,
    };
    slaves.set(&node, start);
    // Subscribe first, then read what is already written: nothing falls in between.
    let mut rx = feed.subscribe();
    let written = journal.written_position();
    let upto = Position {
        file: written.file_id,
        offset: written.offset,
    };
    let epoch = conn.epoch;
    let (mut reader, mut writer) = conn.into_split();
    let acks = {
        let slaves = slaves.clone();
        let node = node.clone();
        tokio::spawn(async move {
            loop {
                match reader.recv().await {
                    Ok(Message::Ack { durable }) => slaves.set(&node, durable),
                    Ok(Message::Heartbeat) => {}
                    Ok(other) => {
                        return Closed::Protocol(format!(
                            "unexpected {:?} from a slave",
                            other.kind()
                        ))
                    }
                    Err(c) => return c,
                }
            }
        })
    };
    let sent = async {
        // Catch up from the files, in chunks.
        let mut at = start;
        while at < upto {
            let end = if at.file < upto.file {
                let path = files::data_file_path(&dir, at.file);
                match std::fs::metadata(&path) {
                    Ok(m) => m.len().min(u64::from(u32::MAX)) as u32,
                    Err(_) => {
                        at = Position {
                            file: at.file + 1,
                            offset: 0,
                        };
                        continue;
                    }
                }
            } else {
                upto.offset
            };
            if at.offset >= end {
                at = Position {
                    file: at.file + 1,
                    offset: 0,
                };
                continue;
            }
            let n = (end - at.offset).min(CATCH_UP_CHUNK);
            let path = files::data_file_path(&dir, at.file);
            let off = at.offset;
            let data = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
                let f = File::open(&path)?;
                let mut v = vec![0u8; n as usize];
                f.read_exact_at(&mut v, u64::from(off))?;
                Ok(v)
            })
            .await;
            let data = match data {
                Ok(Ok(d)) => d,
                Ok(Err(e)) => return Closed::Io(e.to_string()),
                Err(e) => return Closed::Io(e.to_string()),
            };
            if let Err(c) = writer.send(epoch, &Message::Batch { at, data }).await {
                return c;
            }
            at.offset += n;
        }
        // Then every batch written from there on.
        while let Some((pos, bytes)) = rx.recv().await {
            if pos < upto {
                continue; // already sent from the file
            }
            if let Err(c) = writer
                .send(
                    epoch,
                    &Message::Batch {
                        at: pos,
                        data: bytes.to_vec(),
                    },
                )
                .await
            {
                return c;
            }
        }
        Closed::Eof
    };
    let mut acks = acks;
    tokio::select! {
        c = sent => { acks.abort(); c }
        r = &mut acks => r.unwrap_or_else(|e| Closed::Io(e.to_string())),
    }
}

/// The slave's writer of replicated bytes: writes each batch at its position in the data file
/// (created at the journal's file length, like the master's preallocated files), with the
/// end-of-file marker after it as the master's journal writes it, and fdatasyncs.
pub struct ReplicaWriter {
    dir: PathBuf,
    max_file_length: u32,
    open: HashMap<u32, File>,
}

impl ReplicaWriter {
    pub fn new(dir: &Path, max_file_length: u32) -> ReplicaWriter {
        ReplicaWriter {
            dir: dir.to_path_buf(),
            max_file_length,
            open: HashMap::new(),
        }
    }

    /// Writes `data` at `at`, durably. Returns the position after it.
    pub fn write(&mut self, at: Position, data: &[u8]) -> Result<Position> {
        let end = u64::from(at.offset) + data.len() as u64;
        if end > u64::from(self.max_file_length) {
            return Err(Error::new(
                ErrorCode::Corrupt,
                format!(
                    "a replicated batch of {} bytes at {}:{} does not fit a data file of {} bytes",
                    data.len(),
                    at.file,
                    at.offset,
                    self.max_file_length
                ),
            ));
        }
        if !self.open.contains_key(&at.file) {
            // Older files are complete once a newer one starts.
            let older: Vec<u32> = self.open.keys().copied().filter(|f| *f < at.file).collect();
            for f in older {
                self.open.remove(&f);
            }
            let path = files::data_file_path(&self.dir, at.file);
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), &e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io(format!("reading {}", path.display()), &e))?
                .len();
            if len < u64::from(self.max_file_length) {
                f.set_len(u64::from(self.max_file_length))
                    .map_err(|e| Error::io(format!("sizing {}", path.display()), &e))?;
            }
            files::sync_dir(&self.dir)?;
            self.open.insert(at.file, f);
        }
        let f = self.open.get(&at.file).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                "the replica file vanished from the table",
            )
        })?;
        let what = || format!("writing replicated bytes to db-{}.log", at.file);
        f.write_all_at(data, u64::from(at.offset))
            .map_err(|e| Error::io(what(), &e))?;
        if end + EOF_RECORD.len() as u64 <= u64::from(self.max_file_length) {
            f.write_all_at(&EOF_RECORD, end)
                .map_err(|e| Error::io(what(), &e))?;
        }
        f.sync_data().map_err(|e| Error::io(what(), &e))?;
        Ok(Position {
            file: at.file,
            offset: end as u32,
        })
    }
}

/// The slave's side of the live stream: announces where it stands, then writes every batch
/// and acks it once on disk. Returns when the connection ends or a write fails.
pub async fn follow(mut conn: Conn, writer: ReplicaWriter, start: Position) -> Closed {
    if let Err(c) = conn.send(&Message::Ack { durable: start }).await {
        return c;
    }
    let writer = Arc::new(Mutex::new(writer));
    loop {
        let (at, data) = match conn.recv().await {
            Ok(Message::Batch { at, data }) => (at, data),
            Ok(Message::Heartbeat) => continue,
            Ok(other) => {
                return Closed::Protocol(format!("unexpected {:?} from the master", other.kind()))
            }
            Err(c) => return c,
        };
        let w = writer.clone();
        let done = tokio::task::spawn_blocking(move || {
            w.lock().unwrap_or_else(|p| p.into_inner()).write(at, &data)
        })
        .await;
        let durable = match done {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => return Closed::Io(e.to_string()),
            Err(e) => return Closed::Io(e.to_string()),
        };
        if let Err(c) = conn.send(&Message::Ack { durable }).await {
            return c;
        }
    }
}

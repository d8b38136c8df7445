//! A replication node: the control API over the pieces of this module (`docs/PROTOCOL.md` §4).
//!
//! A node owns one directory and one `kdbr://host:port` address (its identity, and where it
//! listens while master). It is stopped, master or slave:
//! - **master**: its store is open (synchronous writes wait for `minimumReplicas` live slaves);
//!   it serves sync plans, transfer sessions and the live stream to any number of slaves;
//! - **slave** of a master's address: it copies the master's journal (initial sync, then the
//!   live stream; reconnecting with backoff whenever the link ends) and keeps a hot standby
//!   index over it, so that a promotion opens the store without a replay.
//!
//! Roles change through [`Node::start_master`], [`Node::start_slave`], [`Node::promote`] and
//! [`Node::demote`]; the epoch given to a master only grows and is kept in the directory
//! (`replication.epoch`), so a node that restarts still refuses an older master.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, ErrorCode, Result};
use crate::store::{Store, StoreConfig};

use super::live::{
    lag, run_slave_with, serve_master, Feed, LinkState, MasterLink, SlaveLink, SlaveReport,
    SlaveState, Slaves, DEFAULT_REPLICATION_TIMEOUT,
};
use super::message::Position;
use super::net::{serve, Conn, Identity, KdbrUri};
use super::standby::Standby;
use super::Purpose;

/// The file that keeps the highest epoch this node has known.
pub const EPOCH_FILE: &str = "replication.epoch";

/// The default cluster name.
pub const DEFAULT_CLUSTER: &str = "kahadb";

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's directory: its journal, index and replication state.
    pub directory: PathBuf,
    /// `kdbr://host:port`: the node's identity, and where it listens while master.
    pub uri: String,
    /// Nodes of different clusters refuse each other. Default `kahadb`.
    pub cluster: String,
    /// Synchronous writes return once this many live slaves hold them. Default 0.
    pub minimum_replicas: usize,
    /// How long a synchronous write waits for them before it fails with
    /// `REPLICATION_TIMEOUT`. Default 10 s.
    pub replication_timeout: Duration,
    /// Concurrent transfer sessions of an initial sync. Default 4.
    pub transfer_sessions: usize,
    /// The store (its journal configuration must be the same on every node, for the files
    /// to come out identical). `delete_all` is refused: a replicated store is not wiped at
    /// start.
    pub store: StoreConfig,
}

impl NodeConfig {
    pub fn new(directory: impl Into<PathBuf>, uri: impl Into<String>) -> NodeConfig {
        NodeConfig {
            directory: directory.into(),
            uri: uri.into(),
            cluster: DEFAULT_CLUSTER.to_owned(),
            minimum_replicas: 0,
            replication_timeout: DEFAULT_REPLICATION_TIMEOUT,
            transfer_sessions: super::sync::DEFAULT_SESSIONS,
            store: StoreConfig::default(),
        }
    }
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Stopped,
    Master,
    Slave,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Stopped => "stopped",
            Role::Master => "master",
            Role::Slave => "slave",
        }
    }
}

/// A node's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    pub role: Role,
    /// This node's identity (`host:port`).
    pub node: String,
    /// The highest epoch this node knows.
    pub epoch: u64,
    /// The epoch of the master whose journal this node's is a copy of (its own as master; the
    /// master's once a slave went live; kept across restarts). 0: none yet.
    pub lineage: u64,
    /// A slave's master (`kdbr://host:port`); a master's own address.
    pub master: Option<String>,
    /// A master's written journal position; a slave's durable one; a stopped node's journal
    /// end as it lies on disk.
    pub position: Position,
    pub minimum_replicas: usize,
    pub replication_timeout_ms: u64,
    /// A master's slaves (live ones count toward `minimumReplicas`).
    pub slaves: Vec<SlaveReport>,
    /// A slave's link to its master.
    pub link: Option<LinkState>,
    /// A syncing slave: bytes its initial sync still needs.
    pub bytes_to_go: u64,
    /// A slave: where its hot standby index stands.
    pub applied: Option<Position>,
    /// A slave: why its link last ended (a full disk, a master gone, ...).
    pub last_error: Option<String>,
}

impl NodeStatus {
    /// Live slaves (a master's).
    pub fn live_slaves(&self) -> usize {
        self.slaves
            .iter()
            .filter(|s| s.state == SlaveState::Live)
            .count()
    }

    /// The status as one JSON object (for logs, the C API and tools).
    pub fn to_json(&self) -> String {
        let pos = |p: Position| format!("{{\"file\":{},\"offset\":{}}}", p.file, p.offset);
        let opt = |s: &Option<String>| match s {
            Some(s) => json_string(s),
            None => "null".to_owned(),
        };
        let slaves: Vec<String> = self
            .slaves
            .iter()
            .map(|s| {
                format!(
                    "{{\"node\":{},\"state\":\"{}\",\"durable\":{},\"lag_bytes\":{},\"bytes_to_go\":{},\"reason\":{}}}",
                    json_string(&s.node),
                    slave_state_name(s.state),
                    s.durable.map(pos).unwrap_or_else(|| "null".into()),
                    s.lag_bytes,
                    s.bytes_to_go,
                    opt(&s.reason)
                )
            })
            .collect();
        format!(
            "{{\"role\":\"{}\",\"node\":{},\"epoch\":{},\"lineage\":{},\"master\":{},\"position\":{},\"minimum_replicas\":{},\"replication_timeout_ms\":{},\"live_slaves\":{},\"slaves\":[{}],\"link\":{},\"bytes_to_go\":{},\"applied\":{},\"last_error\":{}}}",
            self.role.name(),
            json_string(&self.node),
            self.epoch,
            self.lineage,
            opt(&self.master),
            pos(self.position),
            self.minimum_replicas,
            self.replication_timeout_ms,
            self.live_slaves(),
            slaves.join(","),
            self.link
                .map(|l| format!("\"{}\"", link_state_name(l)))
                .unwrap_or_else(|| "null".into()),
            self.bytes_to_go,
            self.applied.map(pos).unwrap_or_else(|| "null".into()),
            opt(&self.last_error)
        )
    }
}

pub fn slave_state_name(s: SlaveState) -> &'static str {
    match s {
        SlaveState::Syncing => "syncing",
        SlaveState::Live => "live",
        SlaveState::Left => "left",
    }
}

pub fn link_state_name(s: LinkState) -> &'static str {
    match s {
        LinkState::Connecting => "connecting",
        LinkState::Syncing => "syncing",
        LinkState::Live => "live",
    }
}

fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

struct MasterRole {
    store: Arc<Store>,
    slaves: Arc<Slaves>,
    server: tokio::task::JoinHandle<()>,
}

struct SlaveRole {
    master: KdbrUri,
    link: Arc<SlaveLink>,
    standby: Arc<Standby>,
    applier: Option<std::thread::JoinHandle<()>>,
    task: tokio::task::JoinHandle<()>,
}

enum RoleState {
    Stopped,
    Master(MasterRole),
    Slave(SlaveRole),
}

/// A replication node (see the module documentation). Safe to use from any thread.
pub struct Node {
    config: NodeConfig,
    uri: KdbrUri,
    me: Identity,
    rt: tokio::runtime::Runtime,
    min: AtomicUsize,
    timeout_ms: AtomicU64,
    role: Mutex<RoleState>,
    /// How the store was recovered the last time this node became master.
    recovery: Mutex<Option<crate::store::checkpoint::IndexRecovery>>,
    /// The journal's lineage as last recorded by this node.
    lineage: AtomicU64,
    /// A stopped node's journal end, read when it stopped (or opened).
    stopped_at: Mutex<Position>,
}

impl Node {
    /// A stopped node: checks the configuration and reads the epoch this node knows.
    pub fn new(config: NodeConfig) -> Result<Node> {
        let uri = KdbrUri::parse(&config.uri)?;
        if config.store.delete_all {
            return Err(Error::new(
                ErrorCode::Config,
                "deleteAllMessagesOnStartup cannot be used with a replicated store: a node's data is the cluster's",
            ));
        }
        if config.cluster.is_empty() {
            return Err(Error::new(ErrorCode::Config, "the cluster name is empty"));
        }
        if config.transfer_sessions == 0 || config.transfer_sessions > 64 {
            return Err(Error::new(
                ErrorCode::Config,
                format!(
                    "transfer sessions must be 1 to 64, not {}",
                    config.transfer_sessions
                ),
            ));
        }
        config.store.journal.validate()?;
        std::fs::create_dir_all(&config.directory)
            .map_err(|e| Error::io(format!("creating {}", config.directory.display()), &e))?;
        let epoch = read_epoch(&config.directory)?;
        let lineage = super::live::read_lineage(&config.directory)?;
        let end = super::standby::journal_end(&config.directory)?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kahadb-repl")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the replication runtime", &e))?;
        let me = Identity {
            cluster: config.cluster.clone(),
            node: uri.authority(),
            epoch: Arc::new(AtomicU64::new(epoch)),
        };
        Ok(Node {
            min: AtomicUsize::new(config.minimum_replicas),
            timeout_ms: AtomicU64::new(config.replication_timeout.as_millis() as u64),
            uri,
            me,
            rt,
            role: Mutex::new(RoleState::Stopped),
            recovery: Mutex::new(None),
            lineage: AtomicU64::new(lineage),
            stopped_at: Mutex::new(end),
            config,
        })
    }

    fn lock(&self) -> MutexGuard<'_, RoleState> {
        self.role.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn directory(&self) -> &Path {
        &self.config.directory
    }

    /// The node's address, `kdbr://host:port`.
    pub fn uri(&self) -> String {
        self.uri.to_string()
    }

    pub fn epoch(&self) -> u64 {
        self.me.epoch.load(Ordering::SeqCst)
    }

    pub fn role(&self) -> Role {
        role_of(&self.lock())
    }

    /// Becomes master at `epoch` (at least the highest this node knows): opens the store
    /// (from the hot standby index when this node was a slave) and serves slaves on its
    /// address. Fails without changing anything if the address cannot be listened on or the
    /// epoch is stale.
    pub fn start_master(&self, epoch: u64) -> Result<()> {
        self.become_master(epoch, None)
    }

    /// [`Node::start_master`], only from `from` when given (checked under the same lock as
    /// the change).
    fn become_master(&self, epoch: u64, from: Option<Role>) -> Result<()> {
        let mut role = self.lock();
        self.check_role(&role, from, "promoted")?;
        if matches!(&*role, RoleState::Master(_)) {
            return Err(Error::new(
                ErrorCode::IllegalState,
                format!("{} is already master", self.me.node),
            ));
        }
        let known = self.epoch();
        if epoch < known {
            return Err(Error::new(
                ErrorCode::IllegalState,
                format!("epoch {epoch} is older than epoch {known} this node knows: a master's epoch only grows"),
            ));
        }
        let listener = std::net::TcpListener::bind(self.uri.authority())
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .map_err(|e| Error::io(format!("listening on {}", self.uri), &e))?;
        let standby = match std::mem::replace(&mut *role, RoleState::Stopped) {
            RoleState::Slave(s) => Some(self.stop_slave(s)),
            _ => None,
        };
        let dir = self.config.directory.clone();
        let opened = match standby {
            Some(Ok(state)) => Store::open_with_state(&dir, self.config.store, state),
            Some(Err(e)) => {
                log::warn!("replication: the hot standby index could not be taken over ({e}); recovering from the journal");
                Store::open(&dir, self.config.store)
            }
            None => Store::open(&dir, self.config.store),
        };
        let (store, recovery) = opened?;
        if recovery.checkpoint.is_none() {
            // A checkpoint of its own at once: a restart (or a slave joining) then starts from
            // this index instead of a replay of the files.
            store.checkpoint_only()?;
        }
        *self.recovery.lock().unwrap_or_else(|p| p.into_inner()) = Some(recovery);
        // The epoch is on disk before any slave is served (a store that failed to open leaves
        // it as it was).
        if let Err(e) = write_epoch(&self.config.directory, epoch)
            .and_then(|_| super::live::write_lineage(&self.config.directory, epoch))
        {
            let _ = store.close();
            return Err(e);
        }
        self.lineage.fetch_max(epoch, Ordering::SeqCst);
        self.me.epoch.fetch_max(epoch, Ordering::SeqCst);
        let store = Arc::new(store);
        let slaves = Arc::new(Slaves::new(
            self.min.load(Ordering::SeqCst),
            Duration::from_millis(self.timeout_ms.load(Ordering::SeqCst)),
        ));
        let feed = Feed::install(store.journal());
        store.set_replication(Some(Arc::new(MasterLink {
            slaves: slaves.clone(),
            feed: feed.clone(),
        })));
        let server = {
            let _enter = self.rt.enter();
            let listener = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| Error::io(format!("listening on {}", self.uri), &e))?;
            let (dir, feed, slaves) = (dir.clone(), feed.clone(), slaves.clone());
            self.rt.spawn(serve(
                listener,
                self.me.clone(),
                move |conn: Conn, node: String, purpose: Purpose| {
                    let (dir, feed, slaves) = (dir.clone(), feed.clone(), slaves.clone());
                    async move {
                        let why =
                            serve_master(conn, node.clone(), purpose, dir, feed, slaves).await;
                        log::info!("replication: session of {node} ({purpose:?}) ended: {why}");
                    }
                },
            ))
        };
        log::info!(
            "replication: {} is master at epoch {epoch} (minimumReplicas {})",
            self.me.node,
            self.min.load(Ordering::SeqCst)
        );
        *role = RoleState::Master(MasterRole {
            store,
            slaves,
            server,
        });
        Ok(())
    }

    /// Becomes a slave of the master at `master` (`kdbr://host:port`): a master steps down
    /// first (its store closes; writes waiting for replicas fail). The link runs in the
    /// background and reconnects whenever it ends; [`Node::status`] tells where it stands.
    pub fn start_slave(&self, master: &str) -> Result<()> {
        self.become_slave(master, None)
    }

    fn become_slave(&self, master: &str, from: Option<Role>) -> Result<()> {
        let master = KdbrUri::parse(master)?;
        if master == self.uri {
            return Err(Error::new(
                ErrorCode::Config,
                format!("{master} is this node's own address: a node cannot be its own slave"),
            ));
        }
        let mut role = self.lock();
        self.check_role(&role, from, "demoted")?;
        let previous = std::mem::replace(&mut *role, RoleState::Stopped);
        let standby = match previous {
            RoleState::Master(m) => {
                self.stop_master(m);
                None
            }
            RoleState::Slave(s) => {
                let standby = s.standby.clone();
                let _ = self.stop_slave_keep(s);
                Some(standby)
            }
            RoleState::Stopped => None,
        };
        let standby = standby.unwrap_or_else(|| Arc::new(Standby::new(&self.config.directory)));
        let applier = standby.spawn()?;
        let link = Arc::new(SlaveLink::with_standby(standby.clone()));
        // A sync interrupted before (a crash, a restart) left the journal incomplete.
        link.sync.counters.incomplete.store(
            super::sync::journal_incomplete(&self.config.directory),
            Ordering::SeqCst,
        );
        let task = {
            let (master, me, link) = (master.clone(), self.me.clone(), link.clone());
            let dir = self.config.directory.clone();
            let sessions = self.config.transfer_sessions;
            let journal = self.config.store.journal;
            self.rt.spawn(async move {
                let mut backoff = Duration::from_millis(100);
                loop {
                    let began = Instant::now();
                    let why = run_slave_with(&master, &me, &dir, sessions, &journal, &link).await;
                    if began.elapsed() > Duration::from_secs(10) {
                        backoff = Duration::from_millis(100);
                    }
                    log::warn!(
                        "replication: link to {master} ended: {why}; reconnecting in {} ms",
                        backoff.as_millis()
                    );
                    link.set_error(why.to_string());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            })
        };
        log::info!("replication: {} is a slave of {master}", self.me.node);
        *role = RoleState::Slave(SlaveRole {
            master,
            link,
            standby,
            applier: Some(applier),
            task,
        });
        Ok(())
    }

    /// Refuses the change unless the node is `from` (when given).
    fn check_role(&self, state: &RoleState, from: Option<Role>, verb: &str) -> Result<()> {
        match from {
            Some(from) if role_of(state) != from => Err(Error::new(
                ErrorCode::IllegalState,
                format!(
                    "{} is {}, not {}: only a {} is {verb}",
                    self.me.node,
                    role_of(state).name(),
                    from.name(),
                    from.name()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Slave → master at `epoch` (see [`Node::start_master`]).
    pub fn promote(&self, epoch: u64) -> Result<()> {
        self.become_master(epoch, Some(Role::Slave))
    }

    /// Master → slave of `master` (see [`Node::start_slave`]).
    pub fn demote(&self, master: &str) -> Result<()> {
        self.become_slave(master, Some(Role::Master))
    }

    /// Stops whatever the node does (a master's store closes).
    pub fn stop(&self) {
        let mut role = self.lock();
        match std::mem::replace(&mut *role, RoleState::Stopped) {
            RoleState::Master(m) => self.stop_master(m),
            RoleState::Slave(s) => {
                self.lineage
                    .fetch_max(s.link.lineage.load(Ordering::SeqCst), Ordering::SeqCst);
                let _ = self.stop_slave_keep(s);
            }
            RoleState::Stopped => return,
        }
        match super::standby::journal_end(&self.config.directory) {
            Ok(end) => *self.stopped_at.lock().unwrap_or_else(|p| p.into_inner()) = end,
            Err(e) => log::warn!("replication: reading the journal's end after a stop: {e}"),
        }
    }

    /// The master's store.
    pub fn store(&self) -> Result<Arc<Store>> {
        match &*self.lock() {
            RoleState::Master(m) => Ok(m.store.clone()),
            _ => Err(Error::new(
                ErrorCode::IllegalState,
                format!("{} is not master: its store is not open", self.me.node),
            )),
        }
    }

    /// Changes `minimumReplicas` (takes effect at once, also for writes already waiting).
    pub fn set_minimum_replicas(&self, n: usize) {
        self.min.store(n, Ordering::SeqCst);
        if let RoleState::Master(m) = &*self.lock() {
            m.slaves.set_minimum_replicas(n);
        }
    }

    /// Changes how long synchronous writes wait for `minimumReplicas` slaves.
    pub fn set_replication_timeout(&self, t: Duration) {
        self.timeout_ms
            .store(t.as_millis() as u64, Ordering::SeqCst);
        if let RoleState::Master(m) = &*self.lock() {
            m.slaves.set_timeout(t);
        }
    }

    pub fn status(&self) -> NodeStatus {
        let role = self.lock();
        let mut st = NodeStatus {
            role: Role::Stopped,
            node: self.me.node.clone(),
            epoch: self.epoch(),
            lineage: self.lineage.load(Ordering::SeqCst),
            master: None,
            position: Position::default(),
            minimum_replicas: self.min.load(Ordering::SeqCst),
            replication_timeout_ms: self.timeout_ms.load(Ordering::SeqCst),
            slaves: Vec::new(),
            link: None,
            bytes_to_go: 0,
            applied: None,
            last_error: None,
        };
        match &*role {
            RoleState::Stopped => {
                st.position = *self.stopped_at.lock().unwrap_or_else(|p| p.into_inner());
            }
            RoleState::Master(m) => {
                let w = m.store.journal().written_position();
                let written = Position {
                    file: w.file_id,
                    offset: w.offset,
                };
                st.role = Role::Master;
                st.master = Some(self.uri.to_string());
                st.position = written;
                st.slaves = m
                    .slaves
                    .report(written, self.config.store.journal.max_file_length);
            }
            RoleState::Slave(s) => {
                st.role = Role::Slave;
                st.lineage = st.lineage.max(s.link.lineage.load(Ordering::SeqCst));
                st.master = Some(s.master.to_string());
                st.position = s.link.durable();
                let state = s.link.state();
                st.link = Some(state);
                if state == LinkState::Syncing {
                    st.bytes_to_go = s.link.sync.counters.to_fetch.load(Ordering::Relaxed);
                }
                st.applied = Some(s.standby.applied());
                st.last_error = s.link.last_error();
            }
        }
        st
    }

    /// How the store was recovered the last time this node became master (a promoted hot
    /// standby replays only the records it had not applied).
    pub fn last_recovery(&self) -> Option<crate::store::checkpoint::IndexRecovery> {
        self.recovery
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits until this master has at least `n` live slaves (false on timeout, or when the
    /// node is not master).
    pub fn wait_for_live_slaves(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let st = self.status();
            if st.role == Role::Master && st.live_slaves() >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Bytes this master has written that `node` has not acked (None: not a live slave).
    pub fn lag_of(&self, node: &str) -> Option<u64> {
        match &*self.lock() {
            RoleState::Master(m) => {
                let w = m.store.journal().written_position();
                m.slaves.durable(node).map(|d| {
                    lag(
                        Position {
                            file: w.file_id,
                            offset: w.offset,
                        },
                        d,
                        self.config.store.journal.max_file_length,
                    )
                })
            }
            _ => None,
        }
    }

    /// Aborts a task of the node's runtime and waits (up to 10 s) until it has ended. Safe
    /// from any thread, also one of an async runtime (an election's callback, say).
    fn end_task(&self, task: tokio::task::JoinHandle<()>) {
        task.abort();
        let (tx, rx) = std::sync::mpsc::channel();
        self.rt.spawn(async move {
            let _ = task.await;
            let _ = tx.send(());
        });
        if rx.recv_timeout(Duration::from_secs(10)).is_err() {
            log::warn!(
                "replication: a task of {} did not end within 10 s",
                self.me.node
            );
        }
    }

    fn stop_master(&self, m: MasterRole) {
        // Waiting writes fail first: from here this node's acknowledgement means nothing.
        m.slaves.close();
        // The store closes while its replication still says no: a write that slips in between
        // must not be acknowledged as if the store had never been replicated.
        if let Err(e) = m.store.close() {
            log::warn!(
                "replication: closing the store of {} failed: {e}",
                self.me.node
            );
        }
        self.end_task(m.server);
        m.store.journal().set_batch_tap(None);
        m.store.set_replication(None);
        log::info!("replication: {} stopped being master", self.me.node);
    }

    /// Stops the link and the applier; returns the hot standby index, current to what is
    /// durable.
    fn stop_slave(&self, s: SlaveRole) -> Result<crate::store::state::State> {
        let standby = s.standby.clone();
        let durable = self.stop_slave_keep(s)?;
        standby.take(durable)
    }

    fn stop_slave_keep(&self, mut s: SlaveRole) -> Result<Position> {
        self.end_task(s.task);
        // A replica write in flight finishes before anyone else touches the files.
        drop(s.link.writer_gate());
        s.standby.stop();
        if let Some(h) = s.applier.take() {
            if h.join().is_err() {
                return Err(Error::new(
                    ErrorCode::Internal,
                    "the hot standby applier panicked",
                ));
            }
        }
        Ok(s.link.durable())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn role_of(state: &RoleState) -> Role {
    match state {
        RoleState::Stopped => Role::Stopped,
        RoleState::Master(_) => Role::Master,
        RoleState::Slave(_) => Role::Slave,
    }
}

fn read_epoch(dir: &Path) -> Result<u64> {
    let path = dir.join(EPOCH_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse::<u64>().map_err(|_| {
            Error::new(
                ErrorCode::Corrupt,
                format!("{} does not hold an epoch: {:?}", path.display(), s.trim()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), &e)),
    }
}

fn write_epoch(dir: &Path, epoch: u64) -> Result<()> {
    use std::io::Write;
    let path = dir.join(EPOCH_FILE);
    let tmp = dir.join(format!("{EPOCH_FILE}.tmp"));
    let what = || format!("writing {}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(what(), &e))?;
    f.write_all(format!("{epoch}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(what(), &e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(what(), &e))?;
    crate::journal::files::sync_dir(dir)
}

//! Drives a replication [`Node`] from a [`MasterElector`]'s events: `BecameMaster` starts or
//! promotes it, `BecameSlave` starts it as (or demotes it to) a slave, `Stopped` stops it.
//!
//! Two threads of its own: one applies the events in order (a role change may take a while:
//! a store opens, a link ends), one samples the node's status every 50 ms into the
//! [`Standing`] the elector publishes, so that the elector never waits on the node.
//!
//! A host that wants to hear about it ([`ElectionDriver::start_with_events`]) gets
//! [`HostEvent`]s on a third thread, the dispatcher, one call at a time and in order: a role
//! once the node has taken it on, a status change when the sampled status changes in a way a
//! host cares about ([`StatusKey`]), and `Stopped` (always the last event, sent on
//! [`ElectionDriver::stop`] if the elector did not send it). The other threads only queue
//! events for the dispatcher, so a slow or panicking host never stalls the election or
//! replication; a panic of the host's hook is caught and logged, and later events still come.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::zookeeper::{ZooKeeperConfig, ZooKeeperElector, DEFAULT_SESSION_TIMEOUT};
use super::{ElectionEvent, MasterElector, Standing, StandingFn, StaticElector};
use crate::replication::live::{LinkState, SlaveState};
use crate::replication::node::{Node, NodeConfig, NodeStatus, Role};
use crate::Result;

const SAMPLE: Duration = Duration::from_millis(50);

/// How long [`ElectionDriver::stop`] waits for the dispatcher to deliver the events left
/// (ending with `Stopped`) and to drop the host's hook.
pub const DISPATCH_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// What the driver tells its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostEvent {
    /// The node is master at `epoch` (its store is open).
    BecameMaster { epoch: u64 },
    /// The node is a slave of `master` (`kdbr://host:port`), elected at `epoch`.
    BecameSlave { master: String, epoch: u64 },
    /// The node's status changed in a way [`StatusKey`] tells.
    StatusChanged(Box<NodeStatus>),
    /// The node holds no role any more (the elector lost its session, gave up a role the node
    /// could not take on, or the driver was stopped).
    Stopped { reason: String },
}

/// The host's hook: called on the dispatcher thread, one event at a time, in order. Dropped on
/// that thread after the last event (or at once if the driver does not start).
pub type EventHook = Box<dyn FnMut(HostEvent) + Send>;

/// What of a node's status a host hears about when it changes: role, epoch, master, the set of
/// slaves and their states, the link state; not positions, lags or byte counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusKey {
    role: Role,
    epoch: u64,
    master: Option<String>,
    slaves: Vec<(String, SlaveState)>,
    link: Option<LinkState>,
}

impl StatusKey {
    pub fn of(st: &NodeStatus) -> StatusKey {
        let mut slaves: Vec<(String, SlaveState)> = st
            .slaves
            .iter()
            .map(|s| (s.node.clone(), s.state))
            .collect();
        slaves.sort_by(|a, b| a.0.cmp(&b.0));
        StatusKey {
            role: st.role,
            epoch: st.epoch,
            master: st.master.clone(),
            slaves,
            link: st.link,
        }
    }
}

/// Which elector an elected node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionConfig {
    /// A single node, no ZooKeeper ([`StaticElector`]).
    Static,
    /// A [`ZooKeeperElector`] on the ensemble `connect`, under `root` (None for the default
    /// `/kahadb-rs/<cluster>`), with a session timeout (None for the default).
    ZooKeeper {
        connect: String,
        root: Option<String>,
        session_timeout: Option<Duration>,
    },
}

/// The dispatcher's end of the events.
struct Dispatch {
    events: Option<Sender<HostEvent>>,
    /// No `Stopped` since the start or the last role event: stopping sends one, so that a
    /// host's last event is always `Stopped`.
    owes_stopped: bool,
    last_status: Option<StatusKey>,
}

impl Dispatch {
    fn send(&mut self, event: HostEvent) {
        match &event {
            HostEvent::BecameMaster { .. } | HostEvent::BecameSlave { .. } => {
                self.owes_stopped = true
            }
            HostEvent::Stopped { .. } => self.owes_stopped = false,
            HostEvent::StatusChanged(_) => {}
        }
        if let Some(tx) = &self.events {
            let _ = tx.send(event);
        }
    }
}

struct Shared {
    node: Arc<Node>,
    elector: Mutex<Box<dyn MasterElector>>,
    standing: Mutex<Standing>,
    /// The epoch of the master this node was last told to follow.
    following: Mutex<Option<u64>>,
    stopping: AtomicBool,
    history: Mutex<Vec<ElectionEvent>>,
    errors: Mutex<Vec<String>>,
    dispatch: Mutex<Dispatch>,
    /// Held while an event is applied and reported, so that the sampler does not report the
    /// new status before the role event.
    applying: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node driven by an elector (see the module documentation).
pub struct ElectionDriver {
    shared: Arc<Shared>,
    applier: Option<std::thread::JoinHandle<()>>,
    sampler: Option<std::thread::JoinHandle<()>>,
    dispatcher: Option<(std::thread::JoinHandle<()>, Receiver<()>)>,
}

impl ElectionDriver {
    /// Starts `elector` for `node` (a stopped node: the elector decides its role).
    pub fn start(node: Arc<Node>, elector: Box<dyn MasterElector>) -> Result<ElectionDriver> {
        ElectionDriver::start_inner(node, elector, None)
    }

    /// As [`start`](Self::start), and tells `hook` what happens (see the module
    /// documentation). `hook` is dropped after its last call, on the dispatcher thread, or at
    /// once if this fails.
    pub fn start_with_events(
        node: Arc<Node>,
        elector: Box<dyn MasterElector>,
        hook: EventHook,
    ) -> Result<ElectionDriver> {
        ElectionDriver::start_inner(node, elector, Some(hook))
    }

    /// Opens the node of `node` (stopped), makes the elector `election` asks for and starts
    /// both, with `hook` told what happens. `hook` is dropped at once if this fails.
    pub fn open(
        node: NodeConfig,
        election: &ElectionConfig,
        hook: EventHook,
    ) -> Result<ElectionDriver> {
        let elector: Box<dyn MasterElector> = match election {
            // The static elector starts from the epoch the node knows (read below).
            ElectionConfig::Static => Box::new(StaticElector::new(0)),
            ElectionConfig::ZooKeeper {
                connect,
                root,
                session_timeout,
            } => {
                let mut zk = ZooKeeperConfig::new(&node.cluster, &node.uri);
                zk.connect = connect.clone();
                if let Some(root) = root {
                    zk.root = root.clone();
                }
                zk.session_timeout = session_timeout.unwrap_or(DEFAULT_SESSION_TIMEOUT);
                Box::new(ZooKeeperElector::new(zk)?)
            }
        };
        let node = Arc::new(Node::new(node)?);
        let elector = match election {
            ElectionConfig::Static => Box::new(StaticElector::new(node.epoch())),
            ElectionConfig::ZooKeeper { .. } => elector,
        };
        ElectionDriver::start_with_events(node, elector, hook)
    }

    fn start_inner(
        node: Arc<Node>,
        elector: Box<dyn MasterElector>,
        hook: Option<EventHook>,
    ) -> Result<ElectionDriver> {
        let (events, dispatcher) = match hook {
            None => (None, None),
            Some(mut hook) => {
                let (tx, rx) = channel::<HostEvent>();
                let (done_tx, done_rx) = channel::<()>();
                let thread = std::thread::Builder::new()
                    .name("kahadb-election-events".into())
                    .spawn(move || {
                        while let Ok(event) = rx.recv() {
                            let what = format!("{event:?}");
                            if catch_unwind(AssertUnwindSafe(|| hook(event))).is_err() {
                                log::error!("election: the host's event hook panicked on {what}");
                            }
                        }
                        if catch_unwind(AssertUnwindSafe(move || drop(hook))).is_err() {
                            log::error!("election: dropping the host's event hook panicked");
                        }
                        let _ = done_tx.send(());
                    })
                    .map_err(|e| crate::Error::io("starting the election dispatcher", &e))?;
                (Some(tx), Some((thread, done_rx)))
            }
        };
        // A node that starts stands on the journal it has: the lineage recorded on its disk and
        // the end of its journal as it lies there, unless a sync left that journal incomplete.
        let st = node.status();
        let initial = Standing {
            epoch: st.lineage,
            position: st.position,
            eligible: !crate::replication::sync::journal_incomplete(node.directory()),
            in_sync: false,
        };
        let shared = Arc::new(Shared {
            node,
            elector: Mutex::new(elector),
            standing: Mutex::new(initial),
            following: Mutex::new(None),
            stopping: AtomicBool::new(false),
            history: Mutex::new(Vec::new()),
            errors: Mutex::new(Vec::new()),
            dispatch: Mutex::new(Dispatch {
                events,
                owes_stopped: true,
                last_status: None,
            }),
            applying: Mutex::new(()),
        });
        // From here on the driver owns the threads: a failure below stops them (Drop).
        let mut driver = ElectionDriver {
            shared,
            applier: None,
            sampler: None,
            dispatcher,
        };
        let shared = driver.shared.clone();
        let sampler = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kahadb-election-sample".into())
                .spawn(move || {
                    while !shared.stopping.load(Ordering::SeqCst) {
                        // The status is reported only when taken while no event is being
                        // applied: never a status older than a role event sent before it.
                        match shared.applying.try_lock() {
                            Ok(_applying) => report_status(&shared, sample(&shared)),
                            Err(_) => drop(sample(&shared)),
                        }
                        std::thread::sleep(SAMPLE);
                    }
                })
                .map_err(|e| crate::Error::io("starting the election sampler", &e))?
        };
        driver.sampler = Some(sampler);
        let (tx, rx) = channel();
        let applier = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kahadb-election-apply".into())
                .spawn(move || apply_all(&shared, rx))
                .map_err(|e| crate::Error::io("starting the election applier", &e))?
        };
        driver.applier = Some(applier);
        let standing: StandingFn = {
            let shared = shared.clone();
            Arc::new(move || *lock(&shared.standing))
        };
        lock(&driver.shared.elector).start(standing, tx)?;
        Ok(driver)
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.shared.node
    }

    /// The events received so far, in order.
    pub fn history(&self) -> Vec<ElectionEvent> {
        lock(&self.shared.history).clone()
    }

    /// Role changes the node refused (each also made the elector resign).
    pub fn errors(&self) -> Vec<String> {
        lock(&self.shared.errors).clone()
    }

    /// What the elector publishes about this node now.
    pub fn standing(&self) -> Standing {
        *lock(&self.shared.standing)
    }

    /// Stops the node first (a master stops serving before another node can be elected),
    /// then leaves the election. Idempotent.
    ///
    /// With a host hook: the events left are delivered, ending with `Stopped` (sent here if
    /// the elector did not), and this waits up to [`DISPATCH_CLOSE_WAIT`] for the hook to take
    /// them and be dropped. A hook that does not return by then is left to its thread: this
    /// returns, the thread delivers what is queued whenever the hook returns, then drops it.
    /// Called from the hook itself, this does not wait for the dispatcher.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.node.stop();
        lock(&self.shared.elector).stop();
        if let Some(t) = self.applier.take() {
            let _ = t.join();
        }
        if let Some(t) = self.sampler.take() {
            let _ = t.join();
        }
        {
            let mut d = lock(&self.shared.dispatch);
            if d.owes_stopped {
                d.send(HostEvent::Stopped {
                    reason: "the election was stopped".to_owned(),
                });
            }
            d.events = None;
        }
        if let Some((thread, done)) = self.dispatcher.take() {
            if thread.thread().id() == std::thread::current().id() {
                // Stopped from the hook itself: the thread ends once the hook returns.
                return;
            }
            match done.recv_timeout(DISPATCH_CLOSE_WAIT) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => log::warn!(
                    "election: the host's event hook has not returned within {DISPATCH_CLOSE_WAIT:?}; leaving it to its thread"
                ),
                _ => {
                    let _ = thread.join();
                }
            }
        }
    }
}

impl Drop for ElectionDriver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Tells the host about the status if it changed (see [`StatusKey`]).
fn report_status(shared: &Shared, st: NodeStatus) {
    if shared.stopping.load(Ordering::SeqCst) {
        return;
    }
    let key = StatusKey::of(&st);
    let mut d = lock(&shared.dispatch);
    if d.events.is_some() && d.last_status.as_ref() != Some(&key) {
        d.last_status = Some(key);
        d.send(HostEvent::StatusChanged(Box::new(st)));
    }
}

/// Publishes the node's standing; returns the status it was taken from.
fn sample(shared: &Shared) -> NodeStatus {
    let st = shared.node.status();
    update_standing(shared, &st);
    st
}

fn update_standing(shared: &Shared, st: &NodeStatus) {
    let following = *lock(&shared.following);
    let mut s = lock(&shared.standing);
    match st.role {
        Role::Master => {
            *s = Standing {
                epoch: st.epoch,
                position: st.position,
                eligible: true,
                in_sync: true,
            }
        }
        Role::Slave => {
            let Some(epoch) = following else { return };
            match st.link {
                Some(LinkState::Live) => {
                    *s = Standing {
                        epoch,
                        position: st.position,
                        eligible: true,
                        in_sync: true,
                    }
                }
                Some(LinkState::Syncing) => {
                    // Its files are being replaced: not a whole journal of any master.
                    *s = Standing {
                        epoch,
                        position: st.position,
                        eligible: false,
                        in_sync: false,
                    }
                }
                // Connecting (the master gone, say): what it holds is what it last had, and
                // what may still have reached its disk since.
                _ => {
                    if s.epoch == epoch && st.position > s.position {
                        s.position = st.position;
                    }
                }
            }
        }
        // A stopped node keeps the standing it last had.
        Role::Stopped => {}
    }
}

fn apply_all(shared: &Shared, rx: Receiver<ElectionEvent>) {
    while let Ok(event) = rx.recv() {
        lock(&shared.history).push(event.clone());
        if shared.stopping.load(Ordering::SeqCst) {
            // Only the end of a role still reaches the host.
            if let ElectionEvent::Stopped { reason } = event {
                let mut d = lock(&shared.dispatch);
                if d.owes_stopped {
                    d.send(HostEvent::Stopped { reason });
                }
            }
            continue;
        }
        let _applying = lock(&shared.applying);
        match apply(shared, &event) {
            Ok(()) => lock(&shared.dispatch).send(match event {
                ElectionEvent::BecameMaster { epoch } => HostEvent::BecameMaster { epoch },
                ElectionEvent::BecameSlave { master, epoch } => {
                    HostEvent::BecameSlave { master, epoch }
                }
                ElectionEvent::Stopped { reason } => HostEvent::Stopped { reason },
            }),
            Err(e) => {
                let msg = format!("{event:?}: {e}");
                log::error!("election: the node refused {msg}");
                lock(&shared.errors).push(msg.clone());
                shared.node.stop();
                // The elector answers with `Stopped`, which reaches the host.
                lock(&shared.elector).resign(&msg);
            }
        }
        // The standing follows the new role at once (not 50 ms later), and so does the host.
        let st = sample(shared);
        report_status(shared, st);
    }
}

fn apply(shared: &Shared, event: &ElectionEvent) -> Result<()> {
    let node = &shared.node;
    match event {
        ElectionEvent::BecameMaster { epoch } => {
            *lock(&shared.following) = None;
            match node.role() {
                Role::Slave => node.promote(*epoch),
                Role::Stopped => node.start_master(*epoch),
                Role::Master if node.epoch() >= *epoch => Ok(()),
                Role::Master => {
                    node.stop();
                    node.start_master(*epoch)
                }
            }
        }
        ElectionEvent::BecameSlave { master, epoch } => {
            *lock(&shared.following) = Some(*epoch);
            let st = node.status();
            match st.role {
                Role::Master => node.demote(master),
                Role::Slave if st.master.as_deref() == Some(master.as_str()) => Ok(()),
                _ => node.start_slave(master),
            }
        }
        ElectionEvent::Stopped { .. } => {
            node.stop();
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::codec::DestinationType;
    use crate::store::state::DestKey;
    use std::sync::mpsc::RecvTimeoutError;

    fn config(dir: &std::path::Path) -> NodeConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        NodeConfig::new(dir, format!("kdbr://127.0.0.1:{port}"))
    }

    fn next(rx: &Receiver<HostEvent>) -> HostEvent {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => panic!("no event within 10 s"),
            Err(RecvTimeoutError::Disconnected) => panic!("the hook was dropped"),
        }
    }

    #[test]
    fn the_host_hears_roles_status_changes_and_a_last_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = channel();
        let (freed_tx, freed_rx) = channel::<()>();
        struct Freed(Sender<()>);
        impl Drop for Freed {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let freed = Freed(freed_tx);
        let mut calls = 0;
        let hook: EventHook = Box::new(move |e| {
            let _keep = &freed;
            calls += 1;
            // A panicking hook is caught; later events still come.
            let panics = calls == 1;
            tx.send(e).unwrap();
            if panics {
                panic!("a host's bug");
            }
        });
        let mut d =
            ElectionDriver::open(config(dir.path()), &ElectionConfig::Static, hook).unwrap();
        let mut events = Vec::new();
        loop {
            let e = next(&rx);
            let done = matches!(&e, HostEvent::StatusChanged(st) if st.role == Role::Master);
            events.push(e);
            if done {
                break;
            }
        }
        assert!(
            events.contains(&HostEvent::BecameMaster { epoch: 1 }),
            "{events:?}"
        );
        let master_at = events
            .iter()
            .position(|e| matches!(e, HostEvent::BecameMaster { .. }))
            .unwrap();
        assert_eq!(master_at, events.len() - 2, "the role, then its status");
        // New positions alone are no status change.
        let store = d.node().store().unwrap();
        let q = DestKey::new(DestinationType::Queue, "orders");
        for i in 0..20 {
            store
                .add_message(&q, &format!("m:{i}"), 4, false, vec![1u8; 100], true)
                .unwrap();
        }
        drop(store);
        assert_eq!(
            rx.recv_timeout(SAMPLE * 6),
            Err(RecvTimeoutError::Timeout),
            "no event for writes"
        );
        assert_eq!(
            freed_rx.try_recv(),
            Err(std::sync::mpsc::TryRecvError::Empty)
        );
        d.stop();
        let mut rest = Vec::new();
        while let Ok(e) = rx.try_recv() {
            rest.push(e);
        }
        assert!(
            matches!(rest.last(), Some(HostEvent::Stopped { .. })),
            "{rest:?}"
        );
        assert_eq!(
            rest.iter()
                .filter(|e| matches!(e, HostEvent::Stopped { .. }))
                .count(),
            1
        );
        freed_rx.try_recv().expect("the hook is dropped by stop");
        d.stop();
    }

    #[test]
    fn a_slow_hook_does_not_stall_the_node_and_stop_waits_a_bounded_time() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = channel::<()>();
        let hook: EventHook = Box::new(move |_| {
            let _ = tx.send(());
            std::thread::sleep(Duration::from_millis(300));
        });
        let mut d =
            ElectionDriver::open(config(dir.path()), &ElectionConfig::Static, hook).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // The node became master although the hook is busy.
        let t = std::time::Instant::now();
        while d.node().role() != Role::Master {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        let t = std::time::Instant::now();
        d.stop();
        assert!(t.elapsed() < DISPATCH_CLOSE_WAIT + Duration::from_secs(2));
    }

    #[test]
    fn a_hook_that_never_returns_delays_stop_a_bounded_time_and_is_dropped_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (entered_tx, entered_rx) = channel::<()>();
        let (release_tx, release_rx) = channel::<()>();
        let (freed_tx, freed_rx) = channel::<()>();
        struct Freed(Sender<()>);
        impl Drop for Freed {
            fn drop(&mut self) {
                let _ = self.0.send(());
            }
        }
        let freed = Freed(freed_tx);
        let mut blocked = false;
        let hook: EventHook = Box::new(move |_| {
            let _keep = &freed;
            if !blocked {
                blocked = true;
                let _ = entered_tx.send(());
                let _ = release_rx.recv();
            }
        });
        let mut d =
            ElectionDriver::open(config(dir.path()), &ElectionConfig::Static, hook).unwrap();
        entered_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let t = std::time::Instant::now();
        d.stop();
        let took = t.elapsed();
        assert!(
            took >= DISPATCH_CLOSE_WAIT && took < DISPATCH_CLOSE_WAIT + Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(
            d.node().role(),
            Role::Stopped,
            "the node stopped all the same"
        );
        assert!(
            freed_rx.try_recv().is_err(),
            "not dropped while its call runs"
        );
        release_tx.send(()).unwrap();
        freed_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("dropped once its call returned");
    }
}

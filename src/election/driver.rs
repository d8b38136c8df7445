//! Drives a replication [`Node`] from a [`MasterElector`]'s events: `BecameMaster` starts or
//! promotes it, `BecameSlave` starts it as (or demotes it to) a slave, `Stopped` stops it.
//!
//! Two threads of its own: one applies the events in order (a role change may take a while:
//! a store opens, a link ends), one samples the node's status every 50 ms into the
//! [`Standing`] the elector publishes, so that the elector never waits on the node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{ElectionEvent, MasterElector, Standing, StandingFn};
use crate::replication::live::LinkState;
use crate::replication::node::{Node, Role};
use crate::Result;

const SAMPLE: Duration = Duration::from_millis(50);

struct Shared {
    node: Arc<Node>,
    elector: Mutex<Box<dyn MasterElector>>,
    standing: Mutex<Standing>,
    /// The epoch of the master this node was last told to follow.
    following: Mutex<Option<u64>>,
    stopping: AtomicBool,
    history: Mutex<Vec<ElectionEvent>>,
    errors: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A node driven by an elector (see the module documentation).
pub struct ElectionDriver {
    shared: Arc<Shared>,
    applier: Option<std::thread::JoinHandle<()>>,
    sampler: Option<std::thread::JoinHandle<()>>,
}

impl ElectionDriver {
    /// Starts `elector` for `node` (a stopped node: the elector decides its role).
    pub fn start(node: Arc<Node>, elector: Box<dyn MasterElector>) -> Result<ElectionDriver> {
        // A node that starts stands on the journal it has: the lineage recorded on its disk and
        // the end of its journal as it lies there.
        let st = node.status();
        let initial = Standing {
            epoch: st.lineage,
            position: st.position,
            eligible: true,
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
        });
        let sampler = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kahadb-election-sample".into())
                .spawn(move || {
                    while !shared.stopping.load(Ordering::SeqCst) {
                        sample(&shared);
                        std::thread::sleep(SAMPLE);
                    }
                })
                .map_err(|e| crate::Error::io("starting the election sampler", &e))?
        };
        let (tx, rx) = channel();
        let applier = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kahadb-election-apply".into())
                .spawn(move || apply_all(&shared, rx))
                .map_err(|e| crate::Error::io("starting the election applier", &e))?
        };
        let standing: StandingFn = {
            let shared = shared.clone();
            Arc::new(move || *lock(&shared.standing))
        };
        let driver = ElectionDriver {
            shared,
            applier: Some(applier),
            sampler: Some(sampler),
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
    }
}

impl Drop for ElectionDriver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sample(shared: &Shared) {
    let st = shared.node.status();
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
            continue;
        }
        if let Err(e) = apply(shared, &event) {
            let msg = format!("{event:?}: {e}");
            log::error!("election: the node refused {msg}");
            lock(&shared.errors).push(msg.clone());
            shared.node.stop();
            lock(&shared.elector).resign(&msg);
        }
        // The standing follows the new role at once (not 50 ms later).
        sample(shared);
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

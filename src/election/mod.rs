//! Master election (`docs/ELECTION.md`): who of a cluster's nodes is master, at which epoch.
//!
//! A [`MasterElector`] decides and tells its host through [`ElectionEvent`]s; the host acts on
//! them (the [`driver`] does so for a replication [`Node`](crate::replication::node::Node)).
//! Implementations: [`StaticElector`] (a single node, no ZooKeeper: the embedded default) and
//! [`ZooKeeperElector`](zookeeper::ZooKeeperElector).
//!
//! An elector never calls into the host: it reads what the host last published about its node
//! (a [`Standing`], through a non-blocking function) and sends events over a channel, so that a
//! slow host never stalls the election (nor the session keep-alive of ZooKeeper).

use std::sync::mpsc::Sender;
use std::sync::Arc;

use crate::replication::message::Position;
use crate::Result;

pub mod driver;
pub mod zookeeper;

pub use driver::ElectionDriver;
pub use zookeeper::{ZooKeeperConfig, ZooKeeperElector};

/// What an elector tells its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionEvent {
    /// This node is master at `epoch` (higher than any epoch handed out before).
    BecameMaster { epoch: u64 },
    /// This node is a slave of the master at `master` (`kdbr://host:port`), elected at `epoch`.
    BecameSlave { master: String, epoch: u64 },
    /// This node holds no role any more (a master must stop serving at once): the elector
    /// lost its ZooKeeper session or was stopped. An elector that goes on running may later
    /// send `BecameMaster` or `BecameSlave` again.
    Stopped { reason: String },
}

/// What a node stands on in an election: the journal it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    /// The epoch of the master whose journal this node's copy is a prefix of (its own epoch
    /// for a master, the master's for a slave; what the node knows for a stopped node).
    pub epoch: u64,
    /// The durable journal position (a master's written one).
    pub position: Position,
    /// The journal is a whole prefix of that master's: false for a slave in the middle of
    /// an initial sync, whose files are incomplete. Such a node never wins.
    pub eligible: bool,
    /// A slave whose link to the master was live when it was last looked at.
    pub in_sync: bool,
}

impl Standing {
    /// The ordering of candidates: the newer journal lineage first, then the longer journal,
    /// then an in-sync slave. Ineligible nodes rank below every eligible one.
    pub fn rank(&self) -> (bool, u64, u32, u32, bool) {
        (
            self.eligible,
            self.epoch,
            self.position.file,
            self.position.offset,
            self.in_sync,
        )
    }
}

/// A function that returns the host's node's current [`Standing`]. It must not block.
pub type StandingFn = Arc<dyn Fn() -> Standing + Send + Sync>;

/// Decides which node of a cluster is master.
pub trait MasterElector: Send {
    /// Starts taking part in the election; events go to `events` (in the order they happen).
    fn start(&mut self, standing: StandingFn, events: Sender<ElectionEvent>) -> Result<()>;

    /// Gives up a mastership this node cannot take on (the host failed to start as master):
    /// the elector sends `Stopped` and lets another node be elected.
    fn resign(&mut self, reason: &str);

    /// Leaves the election (a ZooKeeper elector closes its session, so that another node can
    /// be elected at once); sends `Stopped` if a role was held. Idempotent.
    fn stop(&mut self);
}

/// A single node without ZooKeeper: master at once, at the epoch after the one the node knows.
pub struct StaticElector {
    /// The epoch the node knows (from its `replication.epoch`).
    known_epoch: u64,
    events: Option<Sender<ElectionEvent>>,
}

impl StaticElector {
    pub fn new(known_epoch: u64) -> StaticElector {
        StaticElector {
            known_epoch,
            events: None,
        }
    }
}

impl MasterElector for StaticElector {
    fn start(&mut self, _standing: StandingFn, events: Sender<ElectionEvent>) -> Result<()> {
        if self.events.is_some() {
            return Err(crate::Error::new(
                crate::ErrorCode::IllegalState,
                "the election has already started",
            ));
        }
        self.known_epoch += 1;
        let _ = events.send(ElectionEvent::BecameMaster {
            epoch: self.known_epoch,
        });
        self.events = Some(events);
        Ok(())
    }

    fn resign(&mut self, reason: &str) {
        if let Some(events) = self.events.take() {
            let _ = events.send(ElectionEvent::Stopped {
                reason: reason.to_owned(),
            });
        }
    }

    fn stop(&mut self) {
        self.resign("the election was stopped");
    }
}

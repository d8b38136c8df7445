//! Master election with a real ZooKeeper server (started by the test on a free loopback port):
//! three nodes in one process, each with its own directory and kdbr port, elect one master;
//! when the master leaves, the most up-to-date slave is elected at a higher epoch and a stale
//! one never is; a ZooKeeper restart under a running cluster gives no second master. A watcher
//! samples every node's role throughout and fails the test if two are master at once.

#[path = "support/zookeeper.rs"]
mod zookeeper;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kahadb::election::{
    ElectionDriver, ElectionEvent, StaticElector, ZooKeeperConfig, ZooKeeperElector,
};
use kahadb::journal::JournalConfig;
use kahadb::replication::node::{Node, NodeConfig, Role};
use kahadb::store::codec::DestinationType;
use kahadb::store::state::DestKey;
use kahadb::store::StoreConfig;
use zookeeper::ZooKeeper;

const SESSION: Duration = Duration::from_secs(2);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn node_config(dir: &Path) -> NodeConfig {
    let mut c = NodeConfig::new(dir, format!("kdbr://127.0.0.1:{}", free_port()));
    c.replication_timeout = Duration::from_secs(5);
    c.transfer_sessions = 2;
    c.store = StoreConfig {
        journal: JournalConfig {
            max_file_length: 256 << 10,
            max_batch_size: 64 << 10,
            ..JournalConfig::default()
        },
        checkpoint_every: 500,
        ..StoreConfig::default()
    };
    c
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Cluster {
    _dirs: Vec<tempfile::TempDir>,
    nodes: Vec<Arc<Node>>,
    drivers: Vec<Option<ElectionDriver>>,
    /// Most nodes seen master at once by the watcher.
    most_masters: Arc<AtomicUsize>,
    done: Arc<AtomicBool>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl Cluster {
    fn start(zk: &ZooKeeper, root: &str, n: usize) -> Cluster {
        let mut dirs = Vec::new();
        let mut nodes = Vec::new();
        let mut drivers = Vec::new();
        for _ in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let node = Arc::new(Node::new(node_config(dir.path())).unwrap());
            let mut cfg = ZooKeeperConfig::new("test", &node.uri());
            cfg.connect = zk.connect();
            cfg.root = root.to_owned();
            cfg.session_timeout = SESSION;
            let elector = ZooKeeperElector::new(cfg).unwrap();
            drivers.push(Some(
                ElectionDriver::start(node.clone(), Box::new(elector)).unwrap(),
            ));
            nodes.push(node);
            dirs.push(dir);
            // Members join in this order (the oldest wins a tie).
            std::thread::sleep(Duration::from_millis(150));
        }
        let most_masters = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (nodes, most, done) = (nodes.clone(), most_masters.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let masters = nodes.iter().filter(|n| n.role() == Role::Master).count();
                    most.fetch_max(masters, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        Cluster {
            _dirs: dirs,
            nodes,
            drivers,
            most_masters,
            done,
            watcher: Some(watcher),
        }
    }

    fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.drivers[i].is_some() && self.nodes[i].role() == Role::Master)
            .collect()
    }

    /// Waits for one master with every other running node a live slave; returns its index.
    fn settled(&self, timeout: Duration) -> usize {
        let running = self.drivers.iter().filter(|d| d.is_some()).count();
        let mut master = usize::MAX;
        wait_until("one master with live slaves", timeout, || {
            let m = self.masters();
            if m.len() != 1 {
                return false;
            }
            master = m[0];
            self.nodes[master].status().live_slaves() == running - 1
        });
        master
    }

    fn history(&self, i: usize) -> Vec<ElectionEvent> {
        self.drivers[i].as_ref().unwrap().history()
    }

    fn became_master(&self, i: usize) -> Vec<u64> {
        self.history(i)
            .into_iter()
            .filter_map(|e| match e {
                ElectionEvent::BecameMaster { epoch } => Some(epoch),
                _ => None,
            })
            .collect()
    }

    fn write(&self, master: usize, from: usize, count: usize) {
        let store = self.nodes[master].store().unwrap();
        let q = DestKey::new(DestinationType::Queue, "orders");
        for i in from..from + count {
            store
                .add_message(&q, &format!("m:{i}"), 4, false, vec![7u8; 500], true)
                .unwrap();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            let _ = w.join();
        }
        for d in self.drivers.iter_mut().flatten() {
            d.stop();
        }
    }
}

#[test]
fn three_nodes_elect_one_master_and_the_most_up_to_date_slave_takes_over() {
    let zk = ZooKeeper::start();
    let began = Instant::now();
    let mut c = Cluster::start(&zk, "/kahadb-rs/failover", 3);
    let first = c.settled(Duration::from_secs(20));
    // Fresh nodes tie: the oldest member wins.
    assert_eq!(first, 0, "history: {:?}", c.history(0));
    let e1 = c.nodes[first].epoch();
    assert_eq!(c.became_master(0), vec![e1]);
    assert!(e1 >= 1);
    println!("elected node 0 at epoch {e1} in {:?}", began.elapsed());

    // Node 1 (older than node 2, so it would win a tie) falls behind: its node stops while
    // its elector goes on; the master writes more, held by node 2 (minimumReplicas 1).
    c.write(first, 0, 200);
    wait_until("both slaves caught up", Duration::from_secs(10), || {
        let w = c.nodes[first].status().position;
        (1..3).all(|i| c.nodes[i].status().position == w)
    });
    std::thread::sleep(Duration::from_millis(150));
    let stale = c.drivers[1].as_ref().unwrap().standing();
    c.nodes[1].stop();
    c.nodes[first].set_minimum_replicas(1);
    c.write(first, 200, 300);
    let ahead = c.nodes[first].status().position;
    assert!(ahead > stale.position);
    wait_until("node 2 holds everything", Duration::from_secs(10), || {
        c.nodes[2].status().position == ahead
    });

    // The master leaves (its node stops, its ZooKeeper session is closed).
    let t = Instant::now();
    c.drivers[first].take().unwrap().stop();
    wait_until("a new master", Duration::from_secs(15), || {
        c.masters() == vec![2]
    });
    let failover = t.elapsed();
    let e2 = c.nodes[2].epoch();
    assert!(e2 > e1, "epoch {e2} after {e1}");
    assert_eq!(c.nodes[2].status().position, ahead);
    // The stale node rejoins as a slave of the new master and catches up; it never won.
    let st = c.settled(Duration::from_secs(20));
    assert_eq!(st, 2);
    assert!(c.became_master(1).is_empty(), "{:?}", c.history(1));
    assert!(c.history(1).contains(&ElectionEvent::BecameSlave {
        master: c.nodes[2].uri(),
        epoch: e2
    }));
    c.write(2, 500, 10);
    assert!(
        c.most_masters.load(Ordering::SeqCst) <= 1,
        "two masters at once"
    );
    println!(
        "failover to node 2 at epoch {e2} in {failover:?}; test {:?}",
        began.elapsed()
    );
}

#[test]
fn zookeeper_restarted_under_a_running_cluster_gives_no_second_master() {
    let mut zk = ZooKeeper::start();
    let began = Instant::now();
    let c = Cluster::start(&zk, "/kahadb-rs/restart", 3);
    let first = c.settled(Duration::from_secs(20));
    let e1 = c.nodes[first].epoch();
    c.write(first, 0, 100);

    zk.restart(Duration::from_millis(1500));
    // The master stepped down while ZooKeeper was away (it could not know whether its
    // session would outlive the outage); once ZooKeeper is back, one master again.
    let t = Instant::now();
    let second = c.settled(Duration::from_secs(30));
    let e2 = c.nodes[second].epoch();
    assert!(e2 > e1, "epoch {e2} after {e1}");
    c.write(second, 100, 10);
    assert!(
        c.most_masters.load(Ordering::SeqCst) <= 1,
        "two masters at once"
    );
    for i in 0..3 {
        let epochs = c.became_master(i);
        assert!(epochs.windows(2).all(|w| w[0] < w[1]), "{epochs:?}");
    }
    println!(
        "node {first} master at {e1}, node {second} at {e2} {:?} after ZooKeeper returned; test {:?}",
        t.elapsed(),
        began.elapsed()
    );
}

#[test]
fn a_static_elector_makes_its_node_master_at_the_next_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::new(node_config(dir.path())).unwrap());
    let known = node.epoch();
    let mut d = ElectionDriver::start(node.clone(), Box::new(StaticElector::new(known))).unwrap();
    wait_until("master", Duration::from_secs(10), || {
        node.role() == Role::Master
    });
    assert_eq!(node.epoch(), known + 1);
    d.stop();
    assert_eq!(node.role(), Role::Stopped);
    let h = d.history();
    assert_eq!(h[0], ElectionEvent::BecameMaster { epoch: known + 1 });
    assert!(matches!(h.last(), Some(ElectionEvent::Stopped { .. })));
}

//! The ZooKeeper elector (`docs/ELECTION.md` gives the znode layout and the timing argument).
//!
//! Under a root (default `/kahadb-rs/<cluster>`):
//! - `members/m-<seq>`: one ephemeral sequential znode per node, holding its id, kdbr URI,
//!   role, [`Standing`] and, while there is no master, the epoch it is ready to vote after;
//! - `epoch`: the last epoch handed out (persistent; only grows, changed with a version check);
//! - `master`: the master (ephemeral, owned by the master's session): epoch, id, URI, member.
//!
//! A master is elected when `master` is absent and every member has published its standing
//! for the current epoch: the best ranked member ([`Standing::rank`]) claims with one
//! multi-operation that checks the versions of `epoch` and of every member znode it ranked,
//! sets `epoch` to the next value and creates `master`. A member whose standing changed in the
//! meantime makes the claim fail, and the ranking starts over.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use zookeeper_client as zk;

use super::{ElectionEvent, MasterElector, Standing, StandingFn};
use crate::replication::message::Position;
use crate::{Error, ErrorCode, Result};

/// The default ZooKeeper session timeout.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(4);

/// How often the elector looks at ZooKeeper and at its node.
const POLL: Duration = Duration::from_millis(50);

/// A slave publishes its standing at most this often while there is a master.
const PUBLISH_WITH_MASTER: Duration = Duration::from_millis(500);

/// How long a node waits, once it sees no master, before it publishes that it is ready to
/// vote: time for the host to record the last bytes that reached its journal. The master
/// znode outlives the last write a master could have had acknowledged by at least a quarter of
/// the session timeout (a dead master's session must expire; a live one steps down first), and
/// the standing is sampled every 50 ms, so this only covers the sampling of the last position.
const SETTLE: Duration = Duration::from_millis(100);

/// How a ZooKeeper elector is set up.
#[derive(Debug, Clone)]
pub struct ZooKeeperConfig {
    /// The ensemble: `host:port[,host:port...]`. Default `127.0.0.1:2181`.
    pub connect: String,
    /// The root of the cluster's znodes. Default `/kahadb-rs/<cluster>`.
    pub root: String,
    /// The session timeout asked for (the server may bound it by its tickTime).
    pub session_timeout: Duration,
    /// This node's identity (`host:port`) and address (`kdbr://host:port`).
    pub id: String,
    pub uri: String,
}

impl ZooKeeperConfig {
    pub fn new(cluster: &str, uri: &str) -> ZooKeeperConfig {
        ZooKeeperConfig {
            connect: "127.0.0.1:2181".to_owned(),
            root: format!("/kahadb-rs/{cluster}"),
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            id: uri.strip_prefix("kdbr://").unwrap_or(uri).to_owned(),
            uri: uri.to_owned(),
        }
    }
}

enum Command {
    Resign(String),
    Stop,
}

/// The ZooKeeper elector: runs on a thread of its own (with a one-worker async runtime).
pub struct ZooKeeperElector {
    config: ZooKeeperConfig,
    commands: Option<tokio::sync::mpsc::UnboundedSender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ZooKeeperElector {
    pub fn new(config: ZooKeeperConfig) -> Result<ZooKeeperElector> {
        if !config.root.starts_with('/') || config.root.len() < 2 || config.root.ends_with('/') {
            return Err(Error::new(
                ErrorCode::Config,
                format!(
                    "the ZooKeeper path {:?} must be absolute and not end with '/'",
                    config.root
                ),
            ));
        }
        if config.connect.is_empty() {
            return Err(Error::new(
                ErrorCode::Config,
                "the ZooKeeper address is empty",
            ));
        }
        if config.session_timeout < Duration::from_millis(400) {
            return Err(Error::new(
                ErrorCode::Config,
                "the ZooKeeper session timeout must be at least 400 ms",
            ));
        }
        Ok(ZooKeeperElector {
            config,
            commands: None,
            thread: None,
        })
    }

    pub fn config(&self) -> &ZooKeeperConfig {
        &self.config
    }
}

impl MasterElector for ZooKeeperElector {
    fn start(&mut self, standing: StandingFn, events: Sender<ElectionEvent>) -> Result<()> {
        if self.thread.is_some() {
            return Err(Error::new(
                ErrorCode::IllegalState,
                "the election has already started",
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kahadb-zk")
            .enable_all()
            .build()
            .map_err(|e| Error::io("starting the election runtime", &e))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let config = self.config.clone();
        let thread = std::thread::Builder::new()
            .name("kahadb-election".into())
            .spawn(move || {
                let mut run = Run {
                    cfg: config,
                    standing,
                    events,
                    commands: rx,
                    told: Told::Nothing,
                };
                rt.block_on(run.run());
                // The session's tasks end with the runtime.
                rt.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(|e| Error::io("starting the election thread", &e))?;
        self.commands = Some(tx);
        self.thread = Some(thread);
        Ok(())
    }

    fn resign(&mut self, reason: &str) {
        if let Some(c) = &self.commands {
            let _ = c.send(Command::Resign(reason.to_owned()));
        }
    }

    fn stop(&mut self) {
        if let Some(c) = self.commands.take() {
            let _ = c.send(Command::Stop);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ZooKeeperElector {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the host was last told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Told {
    Nothing,
    Master(u64),
    Slave(String, u64),
}

/// Why a session's loop ended.
enum Exit {
    Stop,
    /// Start over with a new session.
    Again,
}

struct Run {
    cfg: ZooKeeperConfig,
    standing: StandingFn,
    events: Sender<ElectionEvent>,
    commands: tokio::sync::mpsc::UnboundedReceiver<Command>,
    told: Told,
}

/// A member znode, as read.
#[derive(Debug, Clone)]
struct Member {
    name: String,
    version: i32,
    id: String,
    standing: Standing,
    ready: Option<u64>,
}

fn acl() -> zk::CreateOptions<'static> {
    zk::CreateMode::Persistent.with_acls(zk::Acls::anyone_all())
}

fn fields(data: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(data)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn num<T: std::str::FromStr + Default>(f: &HashMap<String, String>, k: &str) -> T {
    f.get(k).and_then(|v| v.parse().ok()).unwrap_or_default()
}

fn member_data(id: &str, uri: &str, role: &str, s: &Standing, ready: Option<u64>) -> String {
    format!(
        "id={id}\nuri={uri}\nrole={role}\nepoch={}\nfile={}\noffset={}\neligible={}\nin_sync={}\nready={}\n",
        s.epoch,
        s.position.file,
        s.position.offset,
        s.eligible as u8,
        s.in_sync as u8,
        ready.map(|r| r.to_string()).unwrap_or_default()
    )
}

fn parse_member(name: &str, data: &[u8], version: i32) -> Member {
    let f = fields(data);
    Member {
        name: name.to_owned(),
        version,
        id: f.get("id").cloned().unwrap_or_default(),
        standing: Standing {
            epoch: num(&f, "epoch"),
            position: Position {
                file: num(&f, "file"),
                offset: num(&f, "offset"),
            },
            eligible: num::<u8>(&f, "eligible") == 1,
            in_sync: num::<u8>(&f, "in_sync") == 1,
        },
        ready: f.get("ready").and_then(|v| v.parse().ok()),
    }
}

/// The sequence number of a member znode (`m-0000000007` → 7).
fn sequence(name: &str) -> u64 {
    name.rsplit('-')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u64::MAX)
}

/// The member that should be master: the best standing, then the oldest member.
/// The member to elect: the best ranked eligible one. None when no member holds a whole
/// journal (every one is in the middle of an initial sync): electing one of them would serve
/// an incomplete journal, so the cluster waits for a member that has one.
fn best(members: &[Member]) -> Option<&Member> {
    members
        .iter()
        .filter(|m| m.standing.eligible)
        .max_by_key(|m| (m.standing.rank(), Reverse(sequence(&m.name))))
}

impl Run {
    fn emit(&mut self, e: ElectionEvent) {
        log::info!("election: {}: {e:?}", self.cfg.id);
        match &e {
            ElectionEvent::BecameMaster { epoch } => self.told = Told::Master(*epoch),
            ElectionEvent::BecameSlave { master, epoch } => {
                self.told = Told::Slave(master.clone(), *epoch)
            }
            ElectionEvent::Stopped { .. } => self.told = Told::Nothing,
        }
        let _ = self.events.send(e);
    }

    /// A master steps down (the host stops serving) the moment its session is in doubt.
    fn step_down_if_master(&mut self, reason: &str) {
        if matches!(self.told, Told::Master(_)) {
            self.emit(ElectionEvent::Stopped {
                reason: reason.to_owned(),
            });
        }
    }

    async fn run(&mut self) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let connect = zk::Client::connector()
                .with_session_timeout(self.cfg.session_timeout)
                .connect(&self.cfg.connect);
            let client = tokio::select! {
                c = tokio::time::timeout(self.cfg.session_timeout, connect) => c,
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Resign(reason)) => {
                        self.step_down_if_master(&reason);
                        continue;
                    }
                    Some(Command::Stop) | None => break,
                },
            };
            let client = match client {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    log::warn!(
                        "election: connecting to ZooKeeper at {} failed: {e}; retrying in {} ms",
                        self.cfg.connect,
                        backoff.as_millis()
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(_) => {
                    log::warn!(
                        "election: connecting to ZooKeeper at {} timed out",
                        self.cfg.connect
                    );
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            log::info!(
                "election: {} has ZooKeeper session {} (timeout {} ms)",
                self.cfg.id,
                client.session_id(),
                client.session_timeout().as_millis()
            );
            let exit = self.session(&client).await;
            // Dropping the last client closes the session (its ephemeral znodes go at once
            // when the server hears of it; otherwise when the session expires). Wait a
            // little for the close to be sent: the runtime may end right after.
            let mut states = client.state_watcher();
            drop(client);
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while !states.changed().await.is_terminated() {}
            })
            .await;
            if let Exit::Stop = exit {
                break;
            }
        }
        if self.told != Told::Nothing {
            self.emit(ElectionEvent::Stopped {
                reason: "the election was stopped".to_owned(),
            });
        }
    }

    async fn session(&mut self, client: &zk::Client) -> Exit {
        let root = self.cfg.root.clone();
        let members = format!("{root}/members");
        // How long a master may stay disconnected before it steps down (see ELECTION.md).
        let timeout = client.session_timeout();
        let grace = timeout / 4;
        let mut me: Option<String> = None;
        let mut published = String::new();
        let mut published_at = Instant::now();
        let mut leaderless_since: Option<Instant> = None;
        let mut disconnected_since: Option<Instant> = None;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut states = client.state_watcher();
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Resign(reason)) => {
                        self.step_down_if_master(&reason);
                        return Exit::Again;
                    }
                    Some(Command::Stop) | None => {
                        self.step_down_if_master("the election was stopped");
                        return Exit::Stop;
                    }
                },
                _ = states.changed() => {}
                _ = tick.tick() => {}
            }
            match client.state() {
                zk::SessionState::SyncConnected => disconnected_since = None,
                zk::SessionState::Disconnected | zk::SessionState::ConnectedReadOnly => {
                    let since = *disconnected_since.get_or_insert_with(Instant::now);
                    if matches!(self.told, Told::Master(_)) && since.elapsed() >= grace {
                        self.step_down_if_master(&format!(
                            "disconnected from ZooKeeper for {} ms: the session may expire",
                            since.elapsed().as_millis()
                        ));
                        return Exit::Again;
                    }
                    continue;
                }
                other => {
                    self.step_down_if_master(&format!("the ZooKeeper session ended: {other}"));
                    return Exit::Again;
                }
            }
            let me_name = match &me {
                Some(m) => m.clone(),
                None => {
                    let s = (self.standing)();
                    let data = member_data(&self.cfg.id, &self.cfg.uri, "none", &s, None);
                    match self.join(client, &members, &data).await {
                        Ok(name) => {
                            published = data;
                            published_at = Instant::now();
                            me = Some(name.clone());
                            name
                        }
                        Err(e) => {
                            log::warn!("election: {} could not join: {e}", self.cfg.id);
                            continue;
                        }
                    }
                }
            };
            match self
                .step(
                    client,
                    &me_name,
                    &mut published,
                    &mut published_at,
                    &mut leaderless_since,
                )
                .await
            {
                Ok(true) => {}
                Ok(false) => return Exit::Again,
                Err(e) => log::debug!("election: {}: {e}", self.cfg.id),
            }
        }
    }

    /// Creates the layout if needed, and this node's member znode.
    async fn join(
        &self,
        client: &zk::Client,
        members: &str,
        data: &str,
    ) -> std::result::Result<String, zk::Error> {
        client.mkdir(members, &acl()).await?;
        match client
            .create(&format!("{}/epoch", self.cfg.root), b"0", &acl())
            .await
        {
            Ok(_) | Err(zk::Error::NodeExists) => {}
            Err(e) => return Err(e),
        }
        let (_, seq) = client
            .create(
                &format!("{members}/m-"),
                data.as_bytes(),
                &zk::CreateMode::EphemeralSequential.with_acls(zk::Acls::anyone_all()),
            )
            .await?;
        let name = format!("m-{seq}");
        log::info!("election: {} joined as {name}", self.cfg.id);
        Ok(name)
    }

    /// One look at the cluster. `Ok(false)`: start over with a new session.
    async fn step(
        &mut self,
        client: &zk::Client,
        me: &str,
        published: &mut String,
        published_at: &mut Instant,
        leaderless_since: &mut Option<Instant>,
    ) -> std::result::Result<bool, zk::Error> {
        let root = self.cfg.root.clone();
        let my_path = format!("{root}/members/{me}");
        let master = match client.get_data(&format!("{root}/master")).await {
            Ok((data, _)) => Some(fields(&data)),
            Err(zk::Error::NoNode) => None,
            Err(e) => return Err(e),
        };
        let standing = (self.standing)();
        if let Some(m) = master {
            *leaderless_since = None;
            let epoch: u64 = num(&m, "epoch");
            let uri = m.get("uri").cloned().unwrap_or_default();
            let role = if m.get("member").map(String::as_str) == Some(me) {
                if self.told != Told::Master(epoch) {
                    // Our claim from an earlier look (whose answer was lost), or a znode
                    // that is not ours to hold: give it up rather than guess.
                    log::warn!(
                        "election: {} holds a master znode it did not expect; starting over",
                        self.cfg.id
                    );
                    self.step_down_if_master("unexpected master znode");
                    return Ok(false);
                }
                "master"
            } else {
                if matches!(self.told, Told::Master(_)) {
                    self.step_down_if_master("another node is master");
                    return Ok(false);
                }
                if self.told != Told::Slave(uri.clone(), epoch) {
                    self.emit(ElectionEvent::BecameSlave {
                        master: uri.clone(),
                        epoch,
                    });
                }
                "slave"
            };
            let data = member_data(&self.cfg.id, &self.cfg.uri, role, &standing, None);
            if data != *published && published_at.elapsed() >= PUBLISH_WITH_MASTER {
                client.set_data(&my_path, data.as_bytes(), None).await?;
                *published = data;
                *published_at = Instant::now();
            }
            return Ok(true);
        }
        // No master.
        if matches!(self.told, Told::Master(_)) {
            self.step_down_if_master("the master znode is gone");
            return Ok(false);
        }
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        if since.elapsed() < SETTLE {
            return Ok(true);
        }
        let epoch_path = format!("{root}/epoch");
        let (epoch_data, epoch_stat) = client.get_data(&epoch_path).await?;
        let current: u64 = String::from_utf8_lossy(&epoch_data)
            .trim()
            .parse()
            .unwrap_or(0);
        let data = member_data(
            &self.cfg.id,
            &self.cfg.uri,
            "none",
            &standing,
            Some(current),
        );
        if data != *published {
            client.set_data(&my_path, data.as_bytes(), None).await?;
            *published = data;
            *published_at = Instant::now();
        }
        let mut members = Vec::new();
        for name in client.list_children(&format!("{root}/members")).await? {
            match client.get_data(&format!("{root}/members/{name}")).await {
                Ok((d, stat)) => members.push(parse_member(&name, &d, stat.version)),
                Err(zk::Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        let ready: Vec<Member> = members
            .iter()
            .filter(|m| m.ready == Some(current))
            .cloned()
            .collect();
        if ready.len() < members.len() {
            // A member that stays unready for three session timeouts (alive in ZooKeeper
            // but not taking part) is left out rather than blocking the election forever.
            if since.elapsed() < timeout_of(client) * 3 {
                return Ok(true);
            }
            log::warn!(
                "election: members {:?} have not published their standing; electing without them",
                members
                    .iter()
                    .filter(|m| m.ready != Some(current))
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
            );
        }
        let Some(winner) = best(&ready) else {
            if !ready.is_empty() {
                log::warn!(
                    "election: no member holds a whole journal ({:?} are in the middle of an initial sync); no master until one does",
                    ready.iter().map(|m| m.id.as_str()).collect::<Vec<_>>()
                );
            }
            return Ok(true);
        };
        if winner.name != me {
            return Ok(true);
        }
        // The next epoch: past every epoch handed out, and past any a member knows of
        // (the counter may have been lost with ZooKeeper's data).
        let next = ready
            .iter()
            .map(|m| m.standing.epoch)
            .max()
            .unwrap_or(0)
            .max(current)
            + 1;
        let master_data = format!(
            "epoch={next}\nid={}\nuri={}\nmember={me}\n",
            self.cfg.id, self.cfg.uri
        );
        let mut w = client.new_multi_writer();
        w.add_check_version(&epoch_path, epoch_stat.version)?;
        for m in &ready {
            w.add_check_version(&format!("{root}/members/{}", m.name), m.version)?;
        }
        w.add_set_data(
            &epoch_path,
            next.to_string().as_bytes(),
            Some(epoch_stat.version),
        )?;
        w.add_create(
            &format!("{root}/master"),
            master_data.as_bytes(),
            &zk::CreateMode::Ephemeral.with_acls(zk::Acls::anyone_all()),
        )?;
        match w.commit().await {
            Ok(_) => {
                log::info!(
                    "election: {} won at epoch {next} with {:?} over {} member(s)",
                    self.cfg.id,
                    winner.standing,
                    ready.len()
                );
                self.emit(ElectionEvent::BecameMaster { epoch: next });
                Ok(true)
            }
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                log::info!(
                    "election: the claim of {} failed ({source} at {index}); looking again",
                    self.cfg.id
                );
                Ok(true)
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => Err(source),
        }
    }
}

fn timeout_of(client: &zk::Client) -> Duration {
    client.session_timeout()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, epoch: u64, file: u32, offset: u32, eligible: bool) -> Member {
        Member {
            name: name.into(),
            version: 0,
            id: name.into(),
            standing: Standing {
                epoch,
                position: Position { file, offset },
                eligible,
                in_sync: false,
            },
            ready: Some(0),
        }
    }

    #[test]
    fn ranking() {
        // The newest lineage first, then the longest journal; ineligible never wins.
        let v = vec![
            m("m-0000000001", 3, 9, 0, true),
            m("m-0000000002", 4, 1, 10, true),
            m("m-0000000003", 4, 1, 20, true),
            m("m-0000000004", 5, 1, 20, false),
        ];
        assert_eq!(best(&v).unwrap().name, "m-0000000003");
        // A tie goes to the oldest member.
        let v = vec![
            m("m-0000000009", 1, 0, 0, true),
            m("m-0000000002", 1, 0, 0, true),
        ];
        assert_eq!(best(&v).unwrap().name, "m-0000000002");
        // Nobody with a whole journal: nobody is elected.
        let v = vec![
            m("m-0000000001", 3, 9, 0, false),
            m("m-0000000002", 4, 1, 10, false),
        ];
        assert!(best(&v).is_none());
    }

    #[test]
    fn member_round_trip() {
        let s = Standing {
            epoch: 7,
            position: Position {
                file: 3,
                offset: 99,
            },
            eligible: true,
            in_sync: true,
        };
        let d = member_data("h:1", "kdbr://h:1", "slave", &s, Some(6));
        let p = parse_member("m-0000000012", d.as_bytes(), 4);
        assert_eq!(p.standing, s);
        assert_eq!(p.ready, Some(6));
        assert_eq!(p.id, "h:1");
        assert_eq!(sequence(&p.name), 12);
    }
}

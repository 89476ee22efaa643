//! The nodes: starting them, the rolling deploy that replaces each one by
//! a newly joined node, and the crash. The bots reach the nodes through
//! [`Gateways`], which the fleet drains before a node leaves, like a load
//! balancer.

use super::{game_config, DemoError, Progress, WAIT};
use crate::http::{ClusterStatus, ClusterStatusSource};
use crate::live::GameView;
use minotaur_cluster::{Node, NodeConfig};
use minotaur_core::{GameEngine, GameId};
use minotaur_testkit::wait::{eventually, WaitError};
use rand::rngs::SmallRng;
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// A node the bots may call, with the calls it has in flight.
#[derive(Clone)]
pub(super) struct Gateway {
    pub(super) name: String,
    pub(super) node: Arc<Node>,
    in_flight: Arc<AtomicUsize>,
}

/// Decrements a gateway's in-flight count when a call ends.
pub(super) struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The nodes the bots may call.
#[derive(Default)]
pub(super) struct Gateways {
    list: RwLock<Vec<Gateway>>,
}

impl Gateways {
    /// A gateway at random, counted in flight until the guard drops.
    pub(super) fn pick(&self, rng: &mut SmallRng) -> Option<(Gateway, InFlight)> {
        let gateways = self.list.read().unwrap_or_else(|e| e.into_inner());
        if gateways.is_empty() {
            return None;
        }
        let g = gateways[rng.random_range(0..gateways.len())].clone();
        g.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(g.in_flight.clone());
        Some((g, guard))
    }

    /// Every gateway, for the status line.
    pub(super) fn all(&self) -> Vec<Gateway> {
        self.list.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn add(&self, node: Arc<Node>) {
        self.list
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Gateway {
                name: node.name().to_string(),
                node,
                in_flight: Arc::new(AtomicUsize::new(0)),
            });
    }

    fn remove(&self, name: &str) -> Option<Gateway> {
        let mut gateways = self.list.write().unwrap_or_else(|e| e.into_inner());
        let index = gateways.iter().position(|g| g.name == name)?;
        Some(gateways.remove(index))
    }
}

/// The cluster as the demo's live page shows it: through the newest node
/// the bots may call, which changes as the rolling deploy replaces nodes.
pub(super) struct FleetView(pub(super) Arc<Gateways>);

impl FleetView {
    fn current(&self) -> Option<Arc<Node>> {
        self.0.all().last().map(|g| g.node.clone())
    }
}

impl ClusterStatusSource for FleetView {
    fn cluster_status(&self) -> ClusterStatus {
        match self.current() {
            Some(node) => node.cluster_status(),
            None => ClusterStatus {
                node: "none".into(),
                members: Vec::new(),
                games_per_node: Default::default(),
                hosted_here: 0,
                copies_held: 0,
                games_without_copy: 0,
                copies_behind: 0,
                links: 0,
                vote: Default::default(),
            },
        }
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<minotaur_cluster::ClusterEvent>> {
        self.current().map(|node| node.subscribe())
    }

    fn games(&self, after: Option<GameId>, limit: usize) -> Vec<GameView> {
        self.current()
            .map(|node| node.games(after, limit))
            .unwrap_or_default()
    }

    fn game(&self, id: GameId) -> Option<GameView> {
        self.current().and_then(|node| node.game(id))
    }

    fn node_name(&self) -> String {
        self.current()
            .map_or_else(|| "none".into(), |n| n.name().to_string())
    }

    fn node_id(&self) -> String {
        self.current()
            .map_or_else(|| "none".into(), |n| n.id().to_string())
    }
}

/// The nodes running.
pub(super) struct Fleet {
    /// Random, so that two demos on one machine never link.
    cookie: String,
    running: Vec<Arc<Node>>,
    gateways: Arc<Gateways>,
    /// Number of the next node: replacements continue after `nN`.
    next: u64,
}

/// What the rolling deploy did, as [`Report`](super::Report) shows it.
pub(super) struct Deploy {
    pub(super) replacements: Vec<(String, String, u64, usize)>,
    pub(super) longest_leave_ms: u64,
}

/// The node chosen to crash, and the games it hosts.
pub(super) struct Victim {
    node: Arc<Node>,
    games: Vec<GameId>,
}

/// What the crash did, as [`Report`](super::Report) shows it.
pub(super) struct Crash {
    pub(super) node: String,
    pub(super) sessions: usize,
    pub(super) failover_ms: u64,
}

impl Fleet {
    /// Starts `count` nodes, `n1` to `nN`, each joining the ones before.
    pub(super) async fn start(count: u64, progress: Progress) -> Result<Fleet, DemoError> {
        if count < 2 {
            return Err(DemoError::TooFewNodes(count));
        }
        let mut fleet = Fleet {
            cookie: format!("demo-{:032x}", rand::random::<u128>()),
            running: Vec::new(),
            gateways: Arc::default(),
            next: 1,
        };
        for _ in 0..count {
            fleet.join_new_node().await?;
        }
        progress.say(format!(
            "cluster up: {} nodes see each other",
            fleet.running.len()
        ));
        Ok(fleet)
    }

    /// The nodes running.
    pub(super) fn nodes(&self) -> &[Arc<Node>] {
        &self.running
    }

    /// The gateways the bots call.
    pub(super) fn gateways(&self) -> Arc<Gateways> {
        self.gateways.clone()
    }

    /// Replaces every node in turn: a new node joins, then the old one
    /// leaves gracefully, handing its sessions over.
    pub(super) async fn rolling_deploy(
        &mut self,
        no_drain: bool,
        progress: Progress,
    ) -> Result<Deploy, DemoError> {
        let mut deploy = Deploy {
            replacements: Vec::new(),
            longest_leave_ms: 0,
        };
        let originals: Vec<String> = self.running.iter().map(|n| n.name().to_string()).collect();
        for old in originals {
            let new = self.join_new_node().await?;
            progress.say(format!("deploy: {new} joined"));
            if !no_drain {
                self.drain(&old).await?;
            }
            let Some(index) = self.running.iter().position(|n| n.name() == old) else {
                continue;
            };
            let node = self.running.remove(index);
            let sessions = node.hosted().len();
            let began = Instant::now();
            node.leave().await;
            let ms = began.elapsed().as_millis() as u64;
            self.gateways.remove(&old);
            await_membership(&self.running).await?;
            progress.say(format!(
                "deploy: {old} left gracefully, {sessions} sessions handed over in {ms} ms"
            ));
            deploy.longest_leave_ms = deploy.longest_leave_ms.max(ms);
            deploy.replacements.push((old, new, ms, sessions));
        }
        Ok(deploy)
    }

    /// Waits until the cluster has settled: every game on one node, with
    /// a copy another node could restart it from. Without that a crash
    /// loses what replication had not caught up with, which shows
    /// replication lag, not failover; so a shortfall is only reported.
    pub(super) async fn await_backups(&self, progress: Progress) {
        let settled = eventually("the cluster to settle", WAIT, || {
            let running = self.running.clone();
            async move {
                match minotaur_testkit::unsettled_among(&running).await {
                    None => Ok(()),
                    Some(seen) => Err(seen),
                }
            }
        })
        .await;
        match settled {
            Ok(()) => {
                let held: usize = self.running.iter().map(|n| n.replicas_held()).sum();
                progress.say(format!("replication: {held} backup copies held"));
            }
            Err(e) => progress.say(format!("replication incomplete before the crash: {e}")),
        }
    }

    /// The node hosting the most sessions, the crash that hurts most,
    /// among all but the newest: that one serves the live page, which
    /// should show the crash rather than lose its stream to it.
    pub(super) fn choose_victim(&self) -> Option<Victim> {
        let (_, others) = self.running.split_last()?;
        let node = others.iter().max_by_key(|n| n.hosted().len())?.clone();
        let games = node.hosted();
        Some(Victim { node, games })
    }

    /// Kills `victim` (links cut, nothing handed over) and measures how
    /// long until its games answer again through every survivor.
    pub(super) async fn crash(
        &mut self,
        victim: Victim,
        progress: Progress,
    ) -> Result<Crash, DemoError> {
        let Victim { node, games } = victim;
        self.running.retain(|n| n.name() != node.name());
        let began = Instant::now();
        node.kill().await;
        self.gateways.remove(node.name());
        progress.say(format!(
            "crash: {} killed with {} sessions",
            node.name(),
            games.len()
        ));
        let failover_ms = time_failover(&self.running, &games, began)
            .await?
            .as_millis() as u64;
        progress.say(format!(
            "crash: all {} games of {} answer again through every survivor after {} ms",
            games.len(),
            node.name(),
            failover_ms
        ));
        Ok(Crash {
            node: node.name().to_string(),
            sessions: games.len(),
            failover_ms,
        })
    }

    /// The engine of some running node.
    pub(super) fn any_engine(&self) -> Option<GameEngine> {
        self.running.first().map(|n| n.engine().clone())
    }

    /// Stops every node, crash-style: the demo is over.
    pub(super) async fn stop(self) {
        for node in self.running {
            node.kill().await;
        }
    }

    /// Starts the next node, joining through the running ones, waits
    /// until they all see each other, and opens it to the bots.
    async fn join_new_node(&mut self) -> Result<String, DemoError> {
        let name = format!("n{}", self.next);
        self.next += 1;
        let mut config = NodeConfig::new(&name, &self.cookie);
        config.seeds = self.running.iter().map(|n| n.addr().to_string()).collect();
        config.game = game_config();
        let node = Arc::new(Node::start(config).await?);
        self.running.push(node.clone());
        await_membership(&self.running).await?;
        self.gateways.add(node);
        Ok(name)
    }

    /// Stops sending to node `name` and waits for the calls through it
    /// to finish: once it has stopped its links, such calls would fail.
    async fn drain(&self, name: &str) -> Result<(), WaitError> {
        let Some(gateway) = self.gateways.remove(name) else {
            return Ok(());
        };
        eventually(&format!("calls through {name} to finish"), WAIT, || {
            let n = gateway.in_flight.load(Ordering::SeqCst);
            async move {
                if n == 0 {
                    Ok(())
                } else {
                    Err(format!("{n} in flight"))
                }
            }
        })
        .await
    }
}

/// Waits until each of `nodes` sees exactly `nodes` live and is synced.
async fn await_membership(nodes: &[Arc<Node>]) -> Result<(), WaitError> {
    let mut expected: Vec<String> = nodes.iter().map(|n| n.name().to_string()).collect();
    expected.sort();
    eventually("every node to see every other node", WAIT, || {
        let views: Vec<(String, Vec<String>, bool)> = nodes
            .iter()
            .map(|n| (n.name().to_string(), n.live_member_names(), n.is_synced()))
            .collect();
        let expected = expected.clone();
        async move {
            if views
                .iter()
                .all(|(_, seen, synced)| *seen == expected && *synced)
            {
                Ok(())
            } else {
                Err(format!("expected {expected:?}, saw {views:?}"))
            }
        }
    })
    .await
}

/// How long after `began` every game of `games` answered through every
/// node of `survivors`. The probes run in parallel, so that one slow
/// answer does not delay the measurement of the others.
async fn time_failover(
    survivors: &[Arc<Node>],
    games: &[GameId],
    began: Instant,
) -> Result<Duration, WaitError> {
    let mut probes = JoinSet::new();
    for node in survivors {
        for id in games {
            probes.spawn(first_answer(node.clone(), *id, began));
        }
    }
    let mut slowest = Duration::ZERO;
    while let Some(probe) = probes.join_next().await {
        match probe.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(answered) => slowest = slowest.max(answered),
            Err(last_seen) => {
                return Err(WaitError::Timeout {
                    what: "the crashed node's games to answer again".into(),
                    waited: began.elapsed(),
                    last_seen,
                })
            }
        }
    }
    Ok(slowest)
}

/// When, after `began`, game `id` first answered through `node`.
///
/// Polls every 10 ms rather than through `eventually`: its backoff grows
/// to 100 ms, coarser than the failover it would measure.
async fn first_answer(node: Arc<Node>, id: GameId, began: Instant) -> Result<Duration, String> {
    loop {
        match node.engine().get_game(id).await {
            Ok(_) => return Ok(began.elapsed()),
            Err(e) if began.elapsed() > WAIT => {
                return Err(format!("game {id} through {}: {e}", node.name()))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

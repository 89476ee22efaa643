//! The in-process cluster demo behind `minotaur-demo`: real
//! `minotaur-cluster` nodes on loopback TCP in this process, bot players
//! sending moves and attacks to every game without pause, a rolling deploy
//! (every node replaced in turn by a newly joined one), then a crash, and a
//! report that checks every acknowledged command against the final state.
//!
//! # How commands are counted
//! Every move or attack a bot sends ends in exactly one of: *acked* (the
//! cluster answered with the game after it), *rejected* (the rules refused
//! it: a typed [`GameError`], typically not enough action points), or an
//! error of any other kind, counted as *failed* before the crash and as
//! *crash_failed* from the crash on. An error leaves the outcome unknown:
//! the command may or may not have been applied.
//!
//! # How `lost` is computed
//! At the end every game is read back. For each game, three independent
//! lower bounds on acknowledged-but-lost commands are taken, and the largest
//! counts:
//! - per player, acked commands minus the final `actions_accepted` (every
//!   accepted registration increments it, and nothing else does);
//! - acked replies that claim the same game version (each accepted change
//!   increments the version by exactly one, so two acks at one version mean
//!   one of them was rolled back);
//! - acked versions above the final version.
//!
//! A game that cannot be read at the end, and that no bot saw conclude,
//! counts all its acks as lost. The report also checks the other direction
//! (`duplicated`): a player's final `actions_accepted` may exceed the acks
//! only by the commands whose outcome is unknown.
//!
//! The demo's games use 1 s rounds (so rounds end on the sessions' own
//! timers throughout the run) and 1000 health (so no game concludes and
//! every game can be checked at the end).

use clap::Parser;
use minotaur_cluster::{Node, NodeConfig};
use minotaur_core::{EngineError, Game, GameConfig, GameError, GameId, Hex, UserId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long the demo waits for membership, failover or a final read.
const WAIT: Duration = Duration::from_secs(30);

/// Options of `minotaur-demo`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "minotaur-demo",
    version,
    about = "A Minotaur cluster in one process: bots play while every node is replaced \
             (rolling deploy) and then one crashes; the report checks nothing acknowledged \
             was lost.",
    after_help = "The last line is: summary: games=<n> alive=<n> acked=<n> rejected=<n> \
                  failed=<n> crash_failed=<n> lost=<n> handoff_ms=<n> failover_ms=<n>\n\
                  Exit code 0 when failed=0 and lost=0 (and nothing was applied twice), 1 otherwise."
)]
pub struct DemoOptions {
    /// Nodes in the cluster (each is replaced once during the rolling deploy).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
    pub nodes: u64,
    /// Games played, two bot players each.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub games: u64,
    /// Seconds the bots play in each quiet phase: before the rolling deploy,
    /// between the deploy and the crash, and after the crash.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub duration: u64,
    /// Seed of the bots' choices (think times, which node they call, moves).
    /// Random when not given; printed either way.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print no progress lines, only the report.
    #[arg(long)]
    pub quiet: bool,
    /// Keep sending calls through a node while it leaves, until it has
    /// stopped, instead of draining it first like a load balancer would.
    /// Calls caught inside the node as it stops then fail (`failed` > 0).
    #[arg(long)]
    pub no_drain: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 3,
            games: 200,
            duration: 5,
            seed: None,
            quiet: false,
            no_drain: false,
        }
    }
}

/// Why the demo could not run to its report.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A node did not start.
    #[error(transparent)]
    Node(#[from] minotaur_cluster::NodeError),
    /// Creating a game failed.
    #[error("creating game {index}: {source}")]
    Create {
        /// Which game.
        index: u64,
        /// Why.
        source: EngineError,
    },
    /// A bounded wait ran out.
    #[error("timed out after {:.1}s waiting for {what}; last saw: {last}", .waited.as_secs_f64())]
    Wait {
        /// What was waited for.
        what: String,
        /// For how long.
        waited: Duration,
        /// What the last check saw.
        last: String,
    },
}

/// What the demo measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seed of the bots.
    pub seed: u64,
    /// Games created.
    pub games: u64,
    /// Games readable and still active at the end.
    pub alive: u64,
    /// Games a bot saw conclude (not checked for losses).
    pub concluded: u64,
    /// Moves and attacks sent.
    pub sent: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Refused by the game's rules.
    pub rejected: u64,
    /// Other errors before the crash (the rolling deploy included).
    pub failed: u64,
    /// Other errors from the crash on.
    pub crash_failed: u64,
    /// Acknowledged commands missing from the final state.
    pub lost: u64,
    /// Commands applied more often than they could have been.
    pub duplicated: u64,
    /// Reads the bots made to refresh their view, and how many failed.
    pub reads: u64,
    /// Failed refresh reads.
    pub read_errors: u64,
    /// Longest graceful leave of the rolling deploy, in ms.
    pub handoff_ms: u64,
    /// Each replacement: (old node, new node, leave ms, sessions it held).
    pub replacements: Vec<(String, String, u64, usize)>,
    /// The crashed node and the sessions it hosted.
    pub crashed: (String, usize),
    /// From the kill until every game of the crashed node answered again,
    /// through every surviving node.
    pub failover_ms: u64,
    /// Some of the errors seen, for the report.
    pub error_samples: Vec<String>,
    /// Wall-clock length of the run.
    pub elapsed: Duration,
}

impl Report {
    /// The report's last line.
    pub fn summary_line(&self) -> String {
        format!(
            "summary: games={} alive={} acked={} rejected={} failed={} crash_failed={} lost={} \
             handoff_ms={} failover_ms={}",
            self.games,
            self.alive,
            self.acked,
            self.rejected,
            self.failed,
            self.crash_failed,
            self.lost,
            self.handoff_ms,
            self.failover_ms
        )
    }

    /// Whether the cluster kept its promises: nothing acknowledged lost, no
    /// error outside the crash.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.failed == 0 && self.duplicated == 0
    }

    /// The full report, ending with [`Report::summary_line`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "---- report (seed {}) ----", self.seed);
        let _ = writeln!(
            out,
            "games: {} created, {} alive at the end, {} concluded",
            self.games, self.alive, self.concluded
        );
        let _ = writeln!(
            out,
            "commands: {} sent, {} acknowledged, {} rejected by the rules, {} failed before \
             the crash, {} failed around the crash",
            self.sent, self.acked, self.rejected, self.failed, self.crash_failed
        );
        let _ = writeln!(
            out,
            "refresh reads: {} ({} failed)",
            self.reads, self.read_errors
        );
        for (old, new, ms, sessions) in &self.replacements {
            let _ = writeln!(
                out,
                "rolling deploy: {new} joined, {old} left handing over {sessions} sessions in {ms} ms"
            );
        }
        let _ = writeln!(
            out,
            "crash: {} killed with {} sessions; all of them answered again through every \
             survivor after {} ms",
            self.crashed.0, self.crashed.1, self.failover_ms
        );
        let _ = writeln!(
            out,
            "check: {} acknowledged commands lost, {} applied more often than sent",
            self.lost, self.duplicated
        );
        for sample in &self.error_samples {
            let _ = writeln!(out, "error seen: {sample}");
        }
        let _ = writeln!(out, "took {:.1} s", self.elapsed.as_secs_f64());
        out.push_str(&self.summary_line());
        out
    }
}

/// The rules of the demo's games: 1 s rounds, 1000 health.
pub fn game_config() -> GameConfig {
    GameConfig {
        round_length_ms: 1_000,
        starting_health: 1_000,
        ..GameConfig::default()
    }
}

/// Counters shared by every bot.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    failed: AtomicU64,
    crash_failed: AtomicU64,
    reads: AtomicU64,
    read_errors: AtomicU64,
    crashed: AtomicBool,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    fn sample(&self, what: String) {
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < 10 {
            samples.push(what);
        }
    }
}

/// A node the bots may call, with the calls it has in flight.
#[derive(Clone)]
struct Gateway {
    name: String,
    node: Arc<Node>,
    in_flight: Arc<AtomicUsize>,
}

/// Decrements a gateway's in-flight count when a call ends.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The nodes running, and which of them the bots call: like a load
/// balancer, the demo stops sending to a node before it is stopped.
#[derive(Default)]
struct Fleet {
    gateways: RwLock<Vec<Gateway>>,
}

impl Fleet {
    fn pick(&self, rng: &mut SmallRng) -> Option<(Gateway, InFlight)> {
        let gateways = self.gateways.read().unwrap_or_else(|e| e.into_inner());
        if gateways.is_empty() {
            return None;
        }
        let g = gateways[rng.random_range(0..gateways.len())].clone();
        g.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(g.in_flight.clone());
        Some((g, guard))
    }

    fn add(&self, node: Arc<Node>) {
        self.gateways
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(Gateway {
                name: node.name().to_string(),
                node,
                in_flight: Arc::new(AtomicUsize::new(0)),
            });
    }

    fn remove(&self, name: &str) -> Option<Gateway> {
        let mut gateways = self.gateways.write().unwrap_or_else(|e| e.into_inner());
        let index = gateways.iter().position(|g| g.name == name)?;
        Some(gateways.remove(index))
    }

    fn all(&self) -> Vec<Gateway> {
        self.gateways
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What one bot saw acknowledged, for the final check.
#[derive(Debug, Default)]
struct Ledger {
    game: Option<GameId>,
    user: Option<UserId>,
    acked: u64,
    acked_versions: Vec<u64>,
    unknown: u64,
    saw_conclusion: bool,
}

/// Polls `check` until it returns `Ok`, for at most `timeout`.
async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, DemoError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if start.elapsed() >= timeout => {
                return Err(DemoError::Wait {
                    what: what.to_string(),
                    waited: start.elapsed(),
                    last,
                })
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Waits until each of `nodes` sees exactly `nodes` live and is synced.
async fn await_views(nodes: &[Arc<Node>]) -> Result<(), DemoError> {
    let mut expected: Vec<String> = nodes.iter().map(|n| n.name().to_string()).collect();
    expected.sort();
    wait_for("every node to see every other node", WAIT, || {
        let views: Vec<(String, Vec<String>, bool)> = nodes
            .iter()
            .map(|n| (n.name().to_string(), n.live_member_names(), n.is_synced()))
            .collect();
        let ok = views.iter().all(|(_, v, s)| v == &expected && *s);
        let expected = expected.clone();
        async move {
            if ok {
                Ok(())
            } else {
                Err(format!("expected {expected:?}, saw {views:?}"))
            }
        }
    })
    .await
}

/// The step `me` takes towards `target` from `from`, if any is walkable.
fn step_towards(game: &Game, from: Hex, target: Hex, rng: &mut SmallRng) -> Option<Hex> {
    let mut best: Vec<Hex> = Vec::new();
    let mut best_distance = u64::MAX;
    for d in Hex::DIRECTIONS {
        let to = from + d;
        if !game.world.walkable(to) || to == target {
            continue;
        }
        let distance = to.distance(target);
        if distance < best_distance {
            best_distance = distance;
            best.clear();
        }
        if distance == best_distance {
            best.push(d);
        }
    }
    if best.is_empty() {
        None
    } else {
        Some(best[rng.random_range(0..best.len())])
    }
}

/// One bot: plays `me` in `game` until `stop`, calling a random gateway
/// each time, and keeps its ledger.
async fn bot(
    mut view: Game,
    me: UserId,
    foe: UserId,
    fleet: Arc<Fleet>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
    mut rng: SmallRng,
) -> Ledger {
    let mut ledger = Ledger {
        game: Some(view.id),
        user: Some(me.clone()),
        ..Ledger::default()
    };
    let id = view.id;
    while !stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..350))).await;
        let Some((gateway, _in_flight)) = fleet.pick(&mut rng) else {
            continue;
        };
        let engine = gateway.node.engine();
        let (Some(mine), Some(theirs)) = (view.player(&me), view.player(&foe)) else {
            break;
        };
        let planned = view.planned_position(&me);
        let in_range = planned.distance(theirs.position) <= view.config.attack_range as u64;
        let step = step_towards(&view, planned, theirs.position, &mut rng);
        let result = match step {
            Some(vector) if !(in_range && mine.action_points >= view.config.attack_cost) => {
                engine.register_move(id, me.clone(), vector).await
            }
            _ => engine.register_attack(id, me.clone(), foe.clone()).await,
        };
        stats.sent.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(game) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
                ledger.acked += 1;
                ledger.acked_versions.push(game.version);
                view = game;
            }
            Err(EngineError::Rule(rule)) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                if rule == GameError::GameConcluded {
                    ledger.saw_conclusion = true;
                    break;
                }
                // The view is stale (a round ended on the session's timer):
                // refresh it, as a client would.
                stats.reads.fetch_add(1, Ordering::Relaxed);
                match engine.get_game(id).await {
                    Ok(game) => view = game,
                    Err(_) => {
                        stats.read_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(e) => {
                ledger.unknown += 1;
                let phase = if stats.crashed.load(Ordering::SeqCst) {
                    stats.crash_failed.fetch_add(1, Ordering::Relaxed);
                    "around the crash"
                } else {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    "before the crash"
                };
                stats.sample(format!("{phase}, via {}: game {id}: {e}", gateway.name));
            }
        }
    }
    ledger
}

/// Prints progress lines.
struct Progress {
    start: Instant,
    quiet: bool,
}

impl Progress {
    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!(
                "[{:6.1}s] {}",
                self.start.elapsed().as_secs_f64(),
                line.as_ref()
            );
        }
    }
}

fn status_line(phase: &str, fleet: &Fleet, stats: &Stats) -> String {
    let sessions: Vec<String> = fleet
        .all()
        .iter()
        .map(|g| format!("{}:{}", g.name, g.node.hosted().len()))
        .collect();
    format!(
        "{phase:<8} sessions {} | sent={} acked={} rejected={} failed={} crash_failed={}",
        sessions.join(" "),
        stats.sent.load(Ordering::Relaxed),
        stats.acked.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
        stats.failed.load(Ordering::Relaxed),
        stats.crash_failed.load(Ordering::Relaxed),
    )
}

/// Starts node `name` joining through `peers`, and waits until it and
/// `peers` all see each other.
async fn start_node(name: &str, cookie: &str, peers: &[Arc<Node>]) -> Result<Arc<Node>, DemoError> {
    let mut config = NodeConfig::new(name, cookie);
    config.seeds = peers.iter().map(|n| n.addr().to_string()).collect();
    config.game = game_config();
    let node = Arc::new(Node::start(config).await?);
    let mut all = peers.to_vec();
    all.push(node.clone());
    await_views(&all).await?;
    Ok(node)
}

/// Runs the whole demo and returns its report.
pub async fn run(options: DemoOptions) -> Result<Report, DemoError> {
    let start = Instant::now();
    let seed = options.seed.unwrap_or_else(rand::random);
    let progress = Progress {
        start,
        quiet: options.quiet,
    };
    let play = Duration::from_secs(options.duration);
    let cookie = format!("demo-{:032x}", rand::random::<u128>());
    progress.say(format!(
        "starting {} nodes, {} games, {} s per quiet phase, seed {seed}",
        options.nodes, options.games, options.duration
    ));

    // 1. The cluster.
    let fleet = Arc::new(Fleet::default());
    let mut running: Vec<Arc<Node>> = Vec::new();
    for i in 1..=options.nodes {
        let node = start_node(&format!("n{i}"), &cookie, &running).await?;
        running.push(node.clone());
        fleet.add(node);
    }
    progress.say(format!(
        "cluster up: {} nodes see each other",
        running.len()
    ));

    // 2. The games, created through every node in turn.
    let mut games = Vec::new();
    for i in 0..options.games {
        let node = &running[(i % running.len() as u64) as usize];
        let users: Vec<UserId> = vec![format!("g{i}-ann").into(), format!("g{i}-bob").into()];
        let game = node
            .engine()
            .create_game(&format!("D{i:05}"), users)
            .await
            .map_err(|source| DemoError::Create { index: i, source })?;
        games.push(game);
    }
    progress.say(format!("{} games created", games.len()));

    // 3. Two bots per game.
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut bots = Vec::new();
    for (i, game) in games.iter().enumerate() {
        let (a, b) = (game.players[0].user.clone(), game.players[1].user.clone());
        for (k, (me, foe)) in [(a.clone(), b.clone()), (b, a)].into_iter().enumerate() {
            let rng = SmallRng::seed_from_u64(seed ^ ((i as u64) << 1 | k as u64));
            bots.push(tokio::spawn(bot(
                game.clone(),
                me,
                foe,
                fleet.clone(),
                stats.clone(),
                stop.clone(),
                rng,
            )));
        }
    }
    let phase = Arc::new(Mutex::new("play"));
    let ticker = {
        let (fleet, stats, phase, stop) =
            (fleet.clone(), stats.clone(), phase.clone(), stop.clone());
        let progress = Progress {
            start,
            quiet: options.quiet,
        };
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let name = *phase.lock().unwrap_or_else(|e| e.into_inner());
                progress.say(status_line(name, &fleet, &stats));
            }
        })
    };
    let set_phase = |name: &'static str| {
        *phase.lock().unwrap_or_else(|e| e.into_inner()) = name;
    };
    progress.say(format!("{} bots playing", bots.len()));
    tokio::time::sleep(play).await;

    // 4. Rolling deploy: each node replaced by a newly joined one.
    set_phase("deploy");
    let mut report = Report {
        seed,
        games: options.games,
        ..Report::default()
    };
    let originals: Vec<String> = running.iter().map(|n| n.name().to_string()).collect();
    for (i, old) in originals.iter().enumerate() {
        let new_name = format!("n{}", options.nodes + i as u64 + 1);
        let new = start_node(&new_name, &cookie, &running).await?;
        running.push(new.clone());
        fleet.add(new);
        progress.say(format!("deploy: {new_name} joined"));
        // Stop sending to the old node and let its calls finish, as a load
        // balancer drains a backend, then stop it gracefully.
        let drained = if options.no_drain {
            None
        } else {
            fleet.remove(old)
        };
        if let Some(gateway) = drained {
            let in_flight = gateway.in_flight.clone();
            wait_for(&format!("calls through {old} to finish"), WAIT, || {
                let n = in_flight.load(Ordering::SeqCst);
                async move {
                    if n == 0 {
                        Ok(())
                    } else {
                        Err(format!("{n} in flight"))
                    }
                }
            })
            .await?;
        }
        let Some(index) = running.iter().position(|n| n.name() == old) else {
            continue;
        };
        let node = running.remove(index);
        let sessions = node.hosted().len();
        let began = Instant::now();
        node.shutdown().await;
        let ms = began.elapsed().as_millis() as u64;
        fleet.remove(old);
        await_views(&running).await?;
        progress.say(format!(
            "deploy: {old} left gracefully, {sessions} sessions handed over in {ms} ms"
        ));
        report.handoff_ms = report.handoff_ms.max(ms);
        report
            .replacements
            .push((old.clone(), new_name, ms, sessions));
    }

    // 5. Play on; before the crash, let every game get its backup copy.
    set_phase("play");
    tokio::time::sleep(play).await;
    let live_games = options.games as usize;
    let nodes_now = running.clone();
    let backups = wait_for("a backup of every game", WAIT, || {
        let held: usize = nodes_now.iter().map(|n| n.replicas_held()).sum();
        async move {
            if held >= live_games {
                Ok(held)
            } else {
                Err(format!("{held} backups for {live_games} games"))
            }
        }
    })
    .await;
    match backups {
        Ok(held) => progress.say(format!("replication: {held} backup copies held")),
        Err(e) => progress.say(format!("replication incomplete before the crash: {e}")),
    }

    // 6. Crash the node hosting most sessions.
    set_phase("crash");
    let Some(victim) = running.iter().max_by_key(|n| n.hosted().len()).cloned() else {
        return Err(DemoError::Wait {
            what: "a node to crash".into(),
            waited: Duration::ZERO,
            last: "no node running".into(),
        });
    };
    let victim_games = victim.hosted();
    running.retain(|n| n.name() != victim.name());
    stats.crashed.store(true, Ordering::SeqCst);
    let began = Instant::now();
    victim.kill().await;
    fleet.remove(victim.name());
    progress.say(format!(
        "crash: {} killed with {} sessions",
        victim.name(),
        victim_games.len()
    ));
    let survivor = running[0].clone();
    // Every game of the crashed node, through every survivor, probed in
    // parallel: one slow answer must not delay the measurement of others.
    let mut probes = tokio::task::JoinSet::new();
    for node in &running {
        for id in &victim_games {
            let (node, id) = (node.clone(), *id);
            probes.spawn(async move {
                loop {
                    match node.engine().get_game(id).await {
                        Ok(_) => return Ok(began.elapsed()),
                        Err(e) if began.elapsed() > WAIT => {
                            return Err(format!("game {id} through {}: {e}", node.name()))
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    }
                }
            });
        }
    }
    let mut slowest = Duration::ZERO;
    while let Some(probe) = probes.join_next().await {
        match probe.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(answered) => slowest = slowest.max(answered),
            Err(last) => {
                return Err(DemoError::Wait {
                    what: "the crashed node's games to answer again".into(),
                    waited: began.elapsed(),
                    last,
                })
            }
        }
    }
    report.failover_ms = slowest.as_millis() as u64;
    report.crashed = (victim.name().to_string(), victim_games.len());
    progress.say(format!(
        "crash: all {} games of {} answer again through every survivor after {} ms",
        victim_games.len(),
        victim.name(),
        report.failover_ms
    ));
    set_phase("play");
    tokio::time::sleep(play).await;

    // 7. Stop the bots and check every game against their ledgers.
    stop.store(true, Ordering::SeqCst);
    let mut ledgers: HashMap<GameId, Vec<Ledger>> = HashMap::new();
    for bot in bots {
        if let Ok(ledger) = bot.await {
            if let Some(id) = ledger.game {
                ledgers.entry(id).or_default().push(ledger);
            }
        }
    }
    let _ = ticker.await;
    let engine = survivor.engine().clone();
    for game in &games {
        let bots = ledgers.remove(&game.id).unwrap_or_default();
        let concluded = bots.iter().any(|l| l.saw_conclusion);
        let id = game.id;
        let final_state = wait_for(&format!("game {id} to be read"), WAIT, || {
            let engine = engine.clone();
            async move {
                match engine.get_game(id).await {
                    Ok(game) => Ok(Some(game)),
                    Err(EngineError::GameNotAlive(_)) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
        let acked: u64 = bots.iter().map(|l| l.acked).sum();
        match final_state {
            Some(state) => {
                if state.is_active() {
                    report.alive += 1;
                }
                let (lost, duplicated) = check_game(&state, &bots);
                report.lost += lost;
                report.duplicated += duplicated;
            }
            None if concluded => report.concluded += 1,
            None => report.lost += acked,
        }
    }

    report.sent = stats.sent.load(Ordering::SeqCst);
    report.acked = stats.acked.load(Ordering::SeqCst);
    report.rejected = stats.rejected.load(Ordering::SeqCst);
    report.failed = stats.failed.load(Ordering::SeqCst);
    report.crash_failed = stats.crash_failed.load(Ordering::SeqCst);
    report.reads = stats.reads.load(Ordering::SeqCst);
    report.read_errors = stats.read_errors.load(Ordering::SeqCst);
    report.error_samples = stats
        .samples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for node in running {
        node.kill().await;
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Acknowledged-but-lost and over-applied commands of one game, from its
/// final state and its bots' ledgers (see the module docs).
fn check_game(state: &Game, bots: &[Ledger]) -> (u64, u64) {
    let mut deficit = 0;
    let mut duplicated = 0;
    let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
    for ledger in bots {
        let accepted = ledger
            .user
            .as_ref()
            .and_then(|u| state.player(u))
            .map_or(0, |p| p.actions_accepted);
        deficit += ledger.acked.saturating_sub(accepted);
        duplicated += accepted.saturating_sub(ledger.acked + ledger.unknown);
        for v in &ledger.acked_versions {
            *versions.entry(*v).or_default() += 1;
        }
    }
    let same_version: u64 = versions.values().map(|n| n - 1).sum();
    let above_final: u64 = versions.range(state.version + 1..).map(|(_, n)| *n).sum();
    (deficit.max(same_version).max(above_final), duplicated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn game() -> Game {
        Game::new(
            GameId::random(),
            "ABCD".parse().unwrap(),
            vec!["ann".into(), "bob".into()],
            game_config(),
            0,
        )
        .unwrap()
    }

    fn ledger(user: &str, versions: &[u64], unknown: u64) -> Ledger {
        Ledger {
            user: Some(user.into()),
            acked: versions.len() as u64,
            acked_versions: versions.to_vec(),
            unknown,
            ..Ledger::default()
        }
    }

    #[test]
    fn the_check_finds_lost_rolled_back_and_duplicated_commands() {
        let mut state = game();
        let ann: UserId = "ann".into();
        let step = Hex::DIRECTIONS
            .into_iter()
            .find(|d| state.world.walkable(state.players[0].position + *d))
            .unwrap();
        state.register_move(&ann, step).unwrap(); // version 1, ann accepted 1
        state.register_attack(&"bob".into(), &ann).unwrap(); // version 2, bob 1

        // Everything acknowledged is there.
        let ok = [ledger("ann", &[1], 0), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &ok), (0, 0));
        // Ann saw a second ack the final state does not hold.
        let lost = [ledger("ann", &[1, 3], 0), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &lost).0, 1);
        // Two acks at one version: one was rolled back, even if counts match.
        let forked = [ledger("ann", &[1], 0), ledger("bob", &[1], 0)];
        assert_eq!(check_game(&state, &forked).0, 1);
        // Applied without an ack is fine only for commands of unknown outcome.
        let unknown = [ledger("ann", &[], 1), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &unknown), (0, 0));
        let phantom = [ledger("ann", &[], 0), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &phantom), (0, 1));
    }

    #[test]
    fn summary_line_has_the_documented_shape() {
        let report = Report {
            games: 200,
            alive: 200,
            acked: 10,
            ..Report::default()
        };
        assert_eq!(
            report.summary_line(),
            "summary: games=200 alive=200 acked=10 rejected=0 failed=0 crash_failed=0 lost=0 \
             handoff_ms=0 failover_ms=0"
        );
        assert!(report.render().ends_with(&report.summary_line()));
    }
}

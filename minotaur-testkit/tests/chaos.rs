//! The chaos run: a seeded random schedule of crashes, graceful stops,
//! restarts, joins, partitions, silent stalls, one-way cuts and added
//! latency, against a cluster of in-memory nodes under continuous load from
//! bot clients; then invariant checks once everything has healed.
//!
//! `CHAOS_SEED` fixes the seed (random when unset; always printed),
//! `CHAOS_SECONDS` the length of the fault phase (default 12 s, CI-sized),
//! `CHAOS_STEPS` the exact number of schedule steps (for replaying a failed
//! run: the schedule is a pure function of the seed). See RELIABILITY.md.
//!
//! # How losses are found exactly
//! The games run with rules that make their whole history visible: rounds
//! never end (a day long), and moves and attacks cost no action points, so
//! every accepted command appends one entry to `Game::actions` and nothing
//! ever removes one (`version == actions.len()`). The state after an
//! accepted command is therefore determined by that log, and an
//! acknowledged reply at version `v` is an ancestor of the final state iff
//! its log is a prefix of the final log. Each state a read returned is
//! recorded as `(version, hash of its log)` and compared with the final
//! state's log cut at that version. A write answers an acknowledgement
//! with the game's version; each game has one writer (its bot), so a write
//! acknowledged at the version after the last state its bot knows is that
//! state plus the write: its log is known and recorded the same way. A
//! write acknowledged after writes of unknown fate is recorded as
//! `(version, its entry)`, and the final log must hold that entry at that
//! version. Commands whose outcome the client cannot know (timeouts,
//! closed links) are counted as unknown; a final log longer than
//! acknowledged + unknown commands is a duplicate.
//!
//! # What is covered
//! One fault at a time (the schedule settles, including re-replication,
//! after each fault): no acknowledged command may be lost. While a step
//! settles, the bots keep writing but create no games: a settled cluster is
//! one where every game is registered to its one host on every node, and a
//! stream of new games would keep some game in flight at any instant.
//! Partitions, silent stalls and one-way cuts split the cluster; majority
//! fencing lets only the majority side acknowledge writes, so a write
//! acknowledged during a split and lost after it ("split losses", counted
//! apart) fails the run too. Reads on the minority side may be stale. The crash
//! of a node together with the backup of its games is not covered: the
//! second test does exactly that and checks the loss is reported, not hidden.

use futures::StreamExt;
use minotaur_cluster::placement::ranked;
use minotaur_cluster::{ClusterEvent, MemberStatus, Node, NodeConfig};
use minotaur_core::codec;
use minotaur_core::game::RegisteredAction;
use minotaur_core::{
    Ack, Action, EngineError, Game, GameConfig, GameEngine, GameId, GameStatus, Hex, UserId,
};
use minotaur_testkit::fixtures;
use minotaur_testkit::TestCluster;
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The tests of this file measure process-wide things (panics, tasks,
/// sockets), so they run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---------------------------------------------------------------- panics

// ---------------------------------------------------------------- settings

struct Settings {
    seed: u64,
    seconds: u64,
    steps: Option<usize>,
    bots: usize,
    games_per_bot: usize,
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn settings() -> Settings {
    Settings {
        seed: env_u64("CHAOS_SEED").unwrap_or_else(rand::random),
        seconds: env_u64("CHAOS_SECONDS").unwrap_or(12),
        steps: env_u64("CHAOS_STEPS").map(|n| n as usize),
        bots: 24,
        games_per_bot: 10,
    }
}

/// Rules under which every accepted command stays visible (see module docs).
fn chaos_rules() -> GameConfig {
    GameConfig {
        wall_count: 0,
        move_cost: 0,
        attack_cost: 0,
        round_length_ms: 24 * 3600 * 1000,
        ..GameConfig::default()
    }
}

fn configure(cfg: &mut NodeConfig, seed: u64) {
    cfg.game = chaos_rules();
    // Odd seeds passivate games idle for a moment: games then sleep and
    // wake all through the faults.
    cfg.idle_after = (seed % 2 == 1).then(|| Duration::from_millis(40));
    cfg.heartbeat_interval = Duration::from_millis(100);
    cfg.failure_timeout = Duration::from_secs(1);
    cfg.call_timeout = Duration::from_secs(2);
}

/// A game is written to until its log has this many entries (keeps
/// snapshots small); its bot then starts a new game.
const CAP: u64 = 48;

// ---------------------------------------------------------------- schedule

#[derive(Debug, Clone)]
enum Fault {
    Kill(String),
    Stop(String),
    Restart(String),
    Start(String),
    Join(String),
    Partition(Vec<String>, Vec<String>),
    Stall(String, String),
    CutOneWay(String, String),
    Latency(Vec<(String, String, u64)>),
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Kill(_) => "kill",
            Fault::Stop(_) => "graceful stop",
            Fault::Restart(_) => "restart",
            Fault::Start(_) => "start again",
            Fault::Join(_) => "join",
            Fault::Partition(..) => "partition",
            Fault::Stall(..) => "silent stall",
            Fault::CutOneWay(..) => "one-way cut",
            Fault::Latency(_) => "latency",
        }
    }

    /// Whether the fault can split the cluster (both sides keep running).
    fn splits(&self) -> bool {
        matches!(
            self,
            Fault::Partition(..) | Fault::Stall(..) | Fault::CutOneWay(..)
        )
    }
}

#[derive(Debug, Clone)]
struct Step {
    fault: Fault,
    hold_ms: u64,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fault {
            Fault::Partition(a, b) => write!(f, "partition {a:?} | {b:?}")?,
            Fault::Stall(a, b) => write!(f, "silent stall {a} <-> {b}")?,
            Fault::CutOneWay(a, b) => write!(f, "one-way cut {a} -> {b}")?,
            Fault::Latency(l) => {
                write!(f, "latency")?;
                for (a, b, ms) in l {
                    write!(f, " {a}->{b} {ms}ms")?;
                }
            }
            other => {
                let name = match other {
                    Fault::Kill(n)
                    | Fault::Stop(n)
                    | Fault::Restart(n)
                    | Fault::Start(n)
                    | Fault::Join(n) => n,
                    _ => unreachable!(),
                };
                write!(f, "{} {name}", other.kind())?
            }
        }
        write!(f, ", hold {} ms", self.hold_ms)
    }
}

const INITIAL_NODES: usize = 5;
const MAX_NODES: usize = 6;

/// The schedule of a seed: a pure function, so a run can be replayed.
/// Between 3 and 6 nodes are up at any time, at most one fault at a time.
fn schedule(seed: u64, len: usize) -> Vec<Step> {
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x00c4_a05c_4ed0_1e00);
    let mut up: Vec<String> = (1..=INITIAL_NODES).map(|i| format!("n{i}")).collect();
    let mut down: Vec<String> = Vec::new();
    let mut next = INITIAL_NODES + 1;
    let mut steps = Vec::with_capacity(len);
    while steps.len() < len {
        let mut options: Vec<(&str, u32)> = Vec::new();
        if up.len() >= 4 {
            options.extend([("kill", 3), ("stop", 2)]);
        }
        options.extend([
            ("restart", 1),
            ("partition", 2),
            ("stall", 1),
            ("cut", 1),
            ("latency", 2),
        ]);
        if !down.is_empty() {
            options.push(("start", 4));
        }
        if up.len() < MAX_NODES && up.len() + down.len() < MAX_NODES + 1 {
            options.push(("join", 1));
        }
        let kind = options
            .choose_weighted(&mut rng, |o| o.1)
            .map(|o| o.0)
            .unwrap_or("latency");
        let split_hold = |rng: &mut SmallRng| {
            if rng.random_bool(0.25) {
                rng.random_range(150..600) // a blip, shorter than the failure timeout
            } else {
                rng.random_range(1_300..3_000)
            }
        };
        let pick = |rng: &mut SmallRng, from: &[String]| -> String {
            from.choose(rng).cloned().unwrap_or_default()
        };
        let two = |rng: &mut SmallRng, from: &[String]| -> (String, String) {
            let mut v = from.to_vec();
            v.shuffle(rng);
            (v[0].clone(), v[1].clone())
        };
        let step = match kind {
            "kill" | "stop" => {
                let n = pick(&mut rng, &up);
                up.retain(|x| x != &n);
                down.push(n.clone());
                Step {
                    fault: if kind == "kill" {
                        Fault::Kill(n)
                    } else {
                        Fault::Stop(n)
                    },
                    hold_ms: rng.random_range(300..1_500),
                }
            }
            "restart" => Step {
                fault: Fault::Restart(pick(&mut rng, &up)),
                hold_ms: rng.random_range(200..1_000),
            },
            "start" => {
                let n = pick(&mut rng, &down);
                down.retain(|x| x != &n);
                up.push(n.clone());
                Step {
                    fault: Fault::Start(n),
                    hold_ms: rng.random_range(200..1_000),
                }
            }
            "join" => {
                let n = format!("n{next}");
                next += 1;
                up.push(n.clone());
                Step {
                    fault: Fault::Join(n),
                    hold_ms: rng.random_range(200..1_000),
                }
            }
            "partition" => {
                let mut v = up.clone();
                v.shuffle(&mut rng);
                let cut = rng.random_range(1..v.len());
                let (a, b) = v.split_at(cut);
                let (mut a, mut b) = (a.to_vec(), b.to_vec());
                a.sort();
                b.sort();
                Step {
                    fault: Fault::Partition(a, b),
                    hold_ms: split_hold(&mut rng),
                }
            }
            "stall" => {
                let (a, b) = two(&mut rng, &up);
                Step {
                    fault: Fault::Stall(a, b),
                    hold_ms: split_hold(&mut rng),
                }
            }
            "cut" => {
                let (a, b) = two(&mut rng, &up);
                Step {
                    fault: Fault::CutOneWay(a, b),
                    hold_ms: split_hold(&mut rng),
                }
            }
            _ => {
                let links = (0..rng.random_range(1..=3))
                    .map(|_| {
                        let (a, b) = two(&mut rng, &up);
                        (a, b, rng.random_range(10..150))
                    })
                    .collect();
                Step {
                    fault: Fault::Latency(links),
                    hold_ms: rng.random_range(800..2_500),
                }
            }
        };
        up.sort();
        down.sort();
        steps.push(step);
    }
    steps
}

// ---------------------------------------------------------------- records

fn log_hash(actions: &[RegisteredAction]) -> u64 {
    let bytes = codec::encode(&actions).expect("a log encodes");
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// A state a client saw: acknowledged by a write, or returned by a read.
#[derive(Debug, Clone)]
struct Seen {
    version: u64,
    log: Log,
    at_ms: u64,
    write: bool,
}

/// What is known of the log of a state seen.
#[derive(Debug, Clone)]
enum Log {
    /// The hash of the whole log.
    Hash(u64),
    /// Only its last entry: the write acknowledged at this version.
    Last(RegisteredAction),
}

impl Seen {
    /// Whether the state seen is an ancestor of the final log `actions`;
    /// `hashes` caches the hashes of its prefixes by length.
    fn kept_in(&self, actions: &[RegisteredAction], hashes: &mut HashMap<u64, u64>) -> bool {
        if self.version > actions.len() as u64 {
            return false;
        }
        match &self.log {
            Log::Hash(log) => {
                *hashes
                    .entry(self.version)
                    .or_insert_with(|| log_hash(&actions[..self.version as usize]))
                    == *log
            }
            Log::Last(entry) => self.version > 0 && actions[self.version as usize - 1] == *entry,
        }
    }
}

/// Everything one client knows about one game.
struct Tracked {
    id: GameId,
    code: String,
    users: Vec<UserId>,
    last: Game,
    seen: Vec<Seen>,
    writes: u64,
    refused: u64,
    unknown: u64,
    max_version: u64,
    regressions: Vec<(u64, String)>,
}

impl Tracked {
    fn new(game: Game, at_ms: u64) -> Self {
        let seen = vec![Seen {
            version: game.version,
            log: Log::Hash(log_hash(&game.actions)),
            at_ms,
            write: true,
        }];
        Tracked {
            id: game.id,
            code: game.join_code.to_string(),
            users: game.players.iter().map(|p| p.user.clone()).collect(),
            max_version: game.version,
            last: game,
            seen,
            writes: 0,
            refused: 0,
            unknown: 0,
            regressions: Vec::new(),
        }
    }

    /// Records a state a read returned; returns an anomaly, if it is not
    /// a state of this game's history.
    fn observe(&mut self, game: Game, at_ms: u64) -> Option<String> {
        if game.id != self.id {
            return Some(format!("asked {} and got game {}", self.id, game.id));
        }
        if game.version != game.actions.len() as u64 {
            return Some(format!(
                "game {}: version {} but {} logged actions (a round ended?)",
                self.id,
                game.version,
                game.actions.len()
            ));
        }
        self.saw_version(game.version, at_ms);
        self.seen.push(Seen {
            version: game.version,
            log: Log::Hash(log_hash(&game.actions)),
            at_ms,
            write: false,
        });
        if game.version >= self.last.version {
            self.last = game;
        }
        None
    }

    /// Records the acknowledgement of the write `wrote`; returns an
    /// anomaly, if it is not what the write should have produced.
    fn acked(&mut self, ack: Ack, at_ms: u64, wrote: &RegisteredAction) -> Option<String> {
        if ack.id != self.id {
            return Some(format!("asked {} and got game {}", self.id, ack.id));
        }
        if ack.round != self.last.round || ack.status != GameStatus::Active {
            return Some(format!(
                "game {}: the acknowledgement of {wrote:?} is in round {} ({:?}), not {} (a round ended?)",
                self.id, ack.round, ack.status, self.last.round
            ));
        }
        if ack.version == 0 {
            return Some(format!(
                "game {}: {wrote:?} acknowledged at version 0",
                self.id
            ));
        }
        self.saw_version(ack.version, at_ms);
        // The bot is the game's only writer: right after the last state it
        // knows, the acknowledged state is that state plus this write. (A
        // state known from the minority side of a split may not be the
        // majority's, which may refuse the write where it was accepted:
        // then only the entry is known.)
        let mut next = self.last.clone();
        let applied = match &wrote.action {
            Action::Move { vector } => next.register_move(&wrote.user, *vector),
            Action::Attack { target } => next.register_attack(&wrote.user, target),
        };
        let log = if ack.version == self.last.version + 1 && applied.is_ok() {
            let log = Log::Hash(log_hash(&next.actions));
            self.last = next;
            log
        } else {
            Log::Last(wrote.clone())
        };
        self.seen.push(Seen {
            version: ack.version,
            log,
            at_ms,
            write: true,
        });
        None
    }

    /// Notes a version seen at `at_ms`: one below a version seen before is
    /// a regression.
    fn saw_version(&mut self, version: u64, at_ms: u64) {
        if version < self.max_version {
            self.regressions.push((
                at_ms,
                format!(
                    "game {} at {at_ms} ms: saw version {version} after {}",
                    self.id, self.max_version
                ),
            ));
        }
        self.max_version = self.max_version.max(version);
    }
}

/// Counters of one bot (summed over bots at the end).
#[derive(Default)]
struct Tally {
    writes: u64,
    acked: u64,
    refused: u64,
    unknown: u64,
    reads: u64,
    reads_ok: u64,
    creates: u64,
    creates_ok: u64,
    errors: BTreeMap<String, u64>,
    anomalies: Vec<String>,
    /// (at ms, what) of errors that say a live game does not exist.
    not_alive: Vec<(u64, String)>,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.writes += other.writes;
        self.acked += other.acked;
        self.refused += other.refused;
        self.unknown += other.unknown;
        self.reads += other.reads;
        self.reads_ok += other.reads_ok;
        self.creates += other.creates;
        self.creates_ok += other.creates_ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        self.anomalies.extend(other.anomalies);
        self.not_alive.extend(other.not_alive);
    }

    fn error(&mut self, what: &str, e: &str) {
        *self.errors.entry(format!("{what}: {e}")).or_default() += 1;
    }
}

fn error_kind(e: &EngineError) -> &'static str {
    match e {
        EngineError::GameNotAlive(_) => "GameNotAlive",
        EngineError::UnknownJoinCode(_) => "UnknownJoinCode",
        EngineError::JoinCodeTaken(_) => "JoinCodeTaken",
        EngineError::AlreadyRunning(_) => "AlreadyRunning",
        EngineError::Rule(_) => "Rule",
        EngineError::Timeout(_) => "Timeout",
        EngineError::Unavailable(_) => "Unavailable",
        EngineError::NoQuorum(_) => "NoQuorum",
        EngineError::Leaving(_) => "Leaving",
        EngineError::BetweenOwners(_) => "BetweenOwners",
        EngineError::Codec(_) => "Codec",
        EngineError::Protocol(_) => "Protocol",
        EngineError::GameSubscribersFull { .. } => "GameSubscribersFull",
        EngineError::NodeSubscribersFull { .. } => "NodeSubscribersFull",
    }
}

// ---------------------------------------------------------------- events

#[derive(Default)]
struct Recorded {
    conflicts: Vec<(u64, String, GameId)>,
    downs: Vec<(u64, String, String, String)>,
    failed_over: usize,
    lagged: u64,
}

struct Recorder {
    start: Instant,
    inner: Mutex<Recorded>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Recorder {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watch(self: &Arc<Self>, node: &Arc<Node>) {
        let mut rx = node.subscribe();
        let name = node.name().to_string();
        let me = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        let at = me.ms();
                        let mut r = me.lock();
                        match event {
                            ClusterEvent::ConflictResolved { id, .. } => {
                                r.conflicts.push((at, name.clone(), id))
                            }
                            ClusterEvent::MemberDown(m, reason) => r.downs.push((
                                at,
                                name.clone(),
                                m.name.clone(),
                                format!("{reason:?}"),
                            )),
                            ClusterEvent::FailedOver { sessions, .. } => r.failed_over += sessions,
                            _ => {}
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        me.lock().lagged += n
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(task);
    }

    fn stop(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------- bots

struct Ctx {
    cluster: Arc<TestCluster>,
    start: Instant,
    stop: AtomicBool,
    /// A step is settling: bots create no games meanwhile.
    settling: AtomicBool,
    seed: u64,
    codes: AtomicU64,
    bound: Duration,
}

impl Ctx {
    fn ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn next_code(&self) -> String {
        let n = self.codes.fetch_add(1, Ordering::SeqCst);
        // Base 36, at most 7 digits: unique for the whole run.
        let mut digits = Vec::new();
        let mut x = n;
        loop {
            digits.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(x % 36) as usize]);
            x /= 36;
            if x == 0 {
                break;
            }
        }
        while digits.len() < 3 {
            digits.push(b'0');
        }
        digits.reverse();
        format!("K{}", String::from_utf8_lossy(&digits))
    }

    fn engine(&self, rng: &mut SmallRng) -> Option<(String, GameEngine)> {
        let nodes = self.cluster.nodes();
        let name = nodes.choose(rng)?.clone();
        let engine = self.cluster.engine(&name).ok()?;
        Some((name, engine))
    }
}

/// Every move vector of length 1 or 2.
fn vectors() -> Vec<Hex> {
    let mut v = Vec::new();
    for q in -2..=2 {
        for r in -2..=2 {
            let h = Hex::new(q, r);
            if (1..=2).contains(&h.length()) {
                v.push(h);
            }
        }
    }
    v
}

async fn create(ctx: &Ctx, rng: &mut SmallRng, tally: &mut Tally, bot: usize) -> Option<Tracked> {
    let (_, engine) = ctx.engine(rng)?;
    let code = ctx.next_code();
    let players = rng.random_range(2..=6);
    let users: Vec<UserId> = (0..players).map(|i| format!("b{bot}p{i}").into()).collect();
    tally.creates += 1;
    match tokio::time::timeout(ctx.bound, engine.create_game(&code, users)).await {
        Ok(Ok(game)) => {
            tally.creates_ok += 1;
            Some(Tracked::new(game, ctx.ms()))
        }
        Ok(Err(e)) => {
            tally.error("create", error_kind(&e));
            None
        }
        Err(_) => {
            tally.error("create", "no answer within the bound");
            tally
                .anomalies
                .push(format!("create {code} hung past {:?}", ctx.bound));
            None
        }
    }
}

async fn bot(ctx: Arc<Ctx>, index: usize, mut games: Vec<Tracked>) -> (Vec<Tracked>, Tally) {
    let mut rng = SmallRng::seed_from_u64(ctx.seed.wrapping_add(index as u64 + 1));
    let mut tally = Tally::default();
    let vectors = vectors();
    let mut active: Vec<usize> = (0..games.len()).collect();
    while !ctx.stop.load(Ordering::SeqCst) {
        if active.len() < 4 && !ctx.settling.load(Ordering::SeqCst) {
            if let Some(t) = create(&ctx, &mut rng, &mut tally, index).await {
                games.push(t);
                active.push(games.len() - 1);
            }
            continue;
        }
        if active.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let slot = *active.choose(&mut rng).expect("active games");
        let Some((via, engine)) = ctx.engine(&mut rng) else {
            tokio::task::yield_now().await;
            continue;
        };
        let t = &mut games[slot];
        let id = t.id;
        let roll = rng.random_range(0..100);
        if roll < 75 {
            // A write: a move that stays on the grid, an attack, or (rarely)
            // a self-attack the rules refuse.
            let user = t.users.choose(&mut rng).cloned().expect("players");
            let action = if roll < 50 {
                let from = t.last.planned_position(&user);
                let options: Vec<Hex> = vectors
                    .iter()
                    .copied()
                    .filter(|v| t.last.world.on_grid(from + *v))
                    .collect();
                Action::Move {
                    vector: *options.choose(&mut rng).expect("a move on the grid"),
                }
            } else if roll < 72 {
                let others: Vec<&UserId> = t.users.iter().filter(|u| **u != user).collect();
                Action::Attack {
                    target: (*others.choose(&mut rng).expect("two players")).clone(),
                }
            } else {
                Action::Attack {
                    target: user.clone(),
                }
            };
            let entry = RegisteredAction {
                user: user.clone(),
                action: action.clone(),
            };
            tally.writes += 1;
            t.writes += 1;
            let call = async {
                match &action {
                    Action::Move { vector } => {
                        engine.register_move(id, user.clone(), *vector).await
                    }
                    Action::Attack { target } => {
                        engine
                            .register_attack(id, user.clone(), target.clone())
                            .await
                    }
                }
            };
            match tokio::time::timeout(ctx.bound, call).await {
                Ok(Ok(ack)) => {
                    tally.acked += 1;
                    if let Some(a) = t.acked(ack, ctx.ms(), &entry) {
                        tally.anomalies.push(a);
                    }
                }
                Ok(Err(EngineError::Rule(_))) => {
                    tally.refused += 1;
                    t.refused += 1;
                }
                Ok(Err(e)) => {
                    tally.unknown += 1;
                    t.unknown += 1;
                    tally.error("write", error_kind(&e));
                    if matches!(e, EngineError::GameNotAlive(_)) {
                        tally
                            .not_alive
                            .push((ctx.ms(), format!("write to {id} via {via}")));
                    }
                }
                Err(_) => {
                    tally.unknown += 1;
                    t.unknown += 1;
                    tally.error("write", "no answer within the bound");
                    tally
                        .anomalies
                        .push(format!("write to {id} via {via} hung past {:?}", ctx.bound));
                }
            }
            if games[slot].max_version >= CAP {
                active.retain(|s| *s != slot);
            }
        } else {
            tally.reads += 1;
            let by_code = roll >= 95;
            let call = async {
                if by_code {
                    engine.get_game_by_join_code(&t.code).await
                } else {
                    engine.get_game(id).await
                }
            };
            match tokio::time::timeout(ctx.bound, call).await {
                Ok(Ok(game)) => {
                    tally.reads_ok += 1;
                    if let Some(a) = t.observe(game, ctx.ms()) {
                        tally.anomalies.push(a);
                    }
                }
                Ok(Err(e)) => {
                    tally.error("read", error_kind(&e));
                    if matches!(
                        e,
                        EngineError::GameNotAlive(_) | EngineError::UnknownJoinCode(_)
                    ) {
                        tally
                            .not_alive
                            .push((ctx.ms(), format!("read of {id} via {via}")));
                    }
                }
                Err(_) => {
                    tally.error("read", "no answer within the bound");
                    tally
                        .anomalies
                        .push(format!("read of {id} via {via} hung past {:?}", ctx.bound));
                }
            }
        }
        let think = rng.random_range(0..6);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    (games, tally)
}

// ---------------------------------------------------------------- settling

/// Waits until the cluster has settled ([`TestCluster::settled`]): the
/// next fault is then a single fault again.
async fn settle(cluster: &TestCluster, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let cpu = cpu_time();
    match cluster.settled(timeout).await {
        Ok(took) => Ok(took),
        Err(e) => {
            let mut out = format!(
                "{e}\nCPU used meanwhile: {:.2} cores\n",
                (cpu_time() - cpu).as_secs_f64() / started.elapsed().as_secs_f64()
            );
            for name in cluster.nodes() {
                if let Ok(node) = cluster.node(&name) {
                    out += &node.explain_members().await;
                }
            }
            Err(out)
        }
    }
}

/// CPU time this process used so far (user and system).
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

// ---------------------------------------------------------------- process

/// Listening TCP sockets this process holds (Linux; `None` elsewhere).
fn listening_sockets() -> Option<usize> {
    let mut inodes = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        if let Ok(link) = std::fs::read_link(entry.path()) {
            if let Some(inode) = link
                .to_str()
                .and_then(|s| s.strip_prefix("socket:["))
                .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut n = 0;
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.get(3) == Some(&"0A") && cols.get(9).is_some_and(|i| inodes.contains(*i)) {
                n += 1;
            }
        }
    }
    Some(n)
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

// ---------------------------------------------------------------- the run

/// How long after a split has healed and settled an acknowledgement is
/// still attributed to it: a failover decided during the split may still
/// be starting its session (its backup calls wait up to two call timeouts,
/// its announcement one more), and that copy loses its conflict only once
/// it is up. Settling cannot see such a start in flight.
const SPLIT_GRACE_MS: u64 = 3 * 2_000;

struct Window {
    step: usize,
    text: String,
    kind: &'static str,
    splits: bool,
    start_ms: u64,
    end_ms: u64,
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

async fn apply(cluster: &TestCluster, recorder: &Arc<Recorder>, step: &Step) -> Result<(), String> {
    let hold = Duration::from_millis(step.hold_ms);
    let e = |e: minotaur_testkit::ClusterError| e.to_string();
    match &step.fault {
        Fault::Kill(n) => cluster.kill_node(n).await.map_err(e)?,
        Fault::Stop(n) => cluster.stop_node(n).await.map_err(e)?,
        Fault::Restart(n) => {
            let node = cluster.restart_node(n).await.map_err(e)?;
            recorder.watch(&node);
        }
        Fault::Start(n) | Fault::Join(n) => {
            let node = cluster.add_node(n).await.map_err(e)?;
            recorder.watch(&node);
        }
        Fault::Partition(a, b) => {
            cluster.partition(&refs(a), &refs(b)).map_err(e)?;
            tokio::time::sleep(hold).await;
            cluster.heal().map_err(e)?;
            return Ok(());
        }
        Fault::Stall(a, b) => {
            cluster.stall(a, b).map_err(e)?;
            tokio::time::sleep(hold).await;
            cluster.heal().map_err(e)?;
            return Ok(());
        }
        Fault::CutOneWay(a, b) => {
            cluster.cut_one_way(a, b).map_err(e)?;
            tokio::time::sleep(hold).await;
            cluster.heal().map_err(e)?;
            return Ok(());
        }
        Fault::Latency(links) => {
            for (a, b, ms) in links {
                cluster
                    .set_latency(a, b, Duration::from_millis(*ms))
                    .map_err(e)?;
            }
            tokio::time::sleep(hold).await;
            cluster.heal().map_err(e)?;
            return Ok(());
        }
    }
    Ok(())
}

struct Verdict {
    lines: Vec<String>,
    failures: Vec<String>,
    /// `key=value` figures for the summary line.
    figures: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let _serial = SERIAL.lock().await;
    let s = settings();
    let panics_before = fixtures::count_panics();
    let tasks_before = alive_tasks();
    let sockets_before = listening_sockets();
    let plan = schedule(s.seed, s.steps.unwrap_or(5_000));
    let seed = s.seed;
    eprintln!(
        "chaos: seed {} ({} s of faults{}{}); replay with CHAOS_SEED={}",
        s.seed,
        s.seconds,
        s.steps.map(|n| format!(", {n} steps")).unwrap_or_default(),
        if seed % 2 == 1 {
            ", idle games passivate"
        } else {
            ""
        },
        s.seed
    );

    let cluster = TestCluster::builder()
        .nodes(INITIAL_NODES)
        .in_memory()
        .wait(Duration::from_secs(30))
        .configure(move |_, cfg| configure(cfg, seed))
        .start()
        .await
        .expect("cluster starts");
    let cluster = Arc::new(cluster);
    let start = Instant::now();
    let recorder = Arc::new(Recorder {
        start,
        inner: Mutex::new(Recorded::default()),
        tasks: Mutex::new(Vec::new()),
    });
    for name in cluster.nodes() {
        recorder.watch(&cluster.node(&name).expect("node"));
    }
    let ctx = Arc::new(Ctx {
        cluster: cluster.clone(),
        start,
        stop: AtomicBool::new(false),
        settling: AtomicBool::new(false),
        seed: s.seed,
        codes: AtomicU64::new(0),
        bound: Duration::from_secs(12),
    });

    // Hundreds of games before the first fault.
    let setup: Vec<(Vec<Tracked>, Tally)> = futures::stream::iter(0..s.bots)
        .map(|b| {
            let ctx = ctx.clone();
            async move {
                let mut rng = SmallRng::seed_from_u64(s.seed ^ (0x6a3e + b as u64));
                let mut tally = Tally::default();
                let mut games = Vec::new();
                while games.len() < s.games_per_bot && tally.creates < 3 * s.games_per_bot as u64 {
                    if let Some(t) = create(&ctx, &mut rng, &mut tally, b).await {
                        games.push(t);
                    }
                }
                (games, tally)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let mut setup_tally = Tally::default();
    let mut initial = Vec::new();
    for (games, tally) in setup {
        assert_eq!(
            games.len(),
            s.games_per_bot,
            "creating games before any fault fails: {:?}",
            tally.errors
        );
        initial.push(games);
        setup_tally.add(tally);
    }
    let bots: Vec<_> = initial
        .into_iter()
        .enumerate()
        .map(|(i, games)| tokio::spawn(bot(ctx.clone(), i, games)))
        .collect();

    // The fault phase.
    let mut windows: Vec<Window> = Vec::new();
    let mut settle_times: Vec<Duration> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(s.seconds);
    for (i, step) in plan.iter().enumerate() {
        let done = match s.steps {
            Some(n) => i >= n,
            None => Instant::now() >= deadline,
        };
        if done {
            break;
        }
        let start_ms = ctx.ms();
        eprintln!("chaos: step {} at {start_ms} ms: {step}", i + 1);
        let mut outcome = apply(&cluster, &recorder, step).await;
        if outcome.is_ok() {
            ctx.settling.store(true, Ordering::SeqCst);
            outcome = settle(&cluster, Duration::from_secs(30))
                .await
                .map(|d| settle_times.push(d));
            ctx.settling.store(false, Ordering::SeqCst);
        }
        if outcome.is_ok() && !step.fault.splits() && !matches!(step.fault, Fault::Latency(_)) {
            // Run degraded (or with the new member) for a while before the next fault.
            tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
        }
        windows.push(Window {
            step: i + 1,
            text: step.to_string(),
            kind: step.fault.kind(),
            splits: step.fault.splits(),
            start_ms,
            end_ms: ctx.ms(),
        });
        if let Err(e) = outcome {
            failures.push(format!("step {} ({step}) did not settle: {e}", i + 1));
            break;
        }
    }

    // Heal, stop the clients, settle, and check.
    let _ = cluster.heal();
    ctx.stop.store(true, Ordering::SeqCst);
    let mut games: Vec<Tracked> = Vec::new();
    let mut tally = Tally::default();
    tally.add(setup_tally);
    for b in bots {
        let (g, t) = b.await.expect("bot task");
        games.extend(g);
        tally.add(t);
    }
    if let Err(e) = settle(&cluster, Duration::from_secs(30)).await {
        failures.push(format!("the cluster did not settle after the run: {e}"));
    }
    let verdict = check(&cluster, &recorder, &games, &windows, &tally).await;
    failures.extend(verdict.failures);

    // For a failing run: what the nodes logged about the games concerned.
    let evidence = if failures.is_empty() {
        String::new()
    } else {
        logs_about(&cluster, &failures)
    };

    // Shutdown leaves nothing behind.
    recorder.stop();
    drop(ctx);
    let cluster = Arc::try_unwrap(cluster)
        .ok()
        .expect("no other handle to the cluster");
    cluster.shutdown().await;
    let tasks_left = minotaur_testkit::eventually(
        "tasks to end after shutdown",
        Duration::from_secs(15),
        || {
            let n = alive_tasks();
            async move {
                if n <= tasks_before {
                    Ok(n)
                } else {
                    Err(format!("{n} alive tasks, {tasks_before} before the run"))
                }
            }
        },
    )
    .await;
    if let Err(e) = tasks_left {
        failures.push(e.to_string());
    }
    if let Some(before) = sockets_before {
        let left = minotaur_testkit::eventually(
            "listening sockets to close after shutdown",
            Duration::from_secs(10),
            || {
                let n = listening_sockets().unwrap_or(0);
                async move {
                    if n <= before {
                        Ok(n)
                    } else {
                        Err(format!("{n} listening sockets, {before} before the run"))
                    }
                }
            },
        )
        .await;
        if let Err(e) = left {
            failures.push(e.to_string());
        }
    }
    let panics = fixtures::panics() - panics_before;
    if panics > 0 {
        failures.push(format!("{panics} panics: {:?}", fixtures::panic_messages()));
    }

    // The report, always printed.
    let recorded = recorder.lock();
    let mut faults: BTreeMap<&str, usize> = BTreeMap::new();
    for w in &windows {
        *faults.entry(w.kind).or_default() += 1;
    }
    let max_settle = settle_times.iter().max().copied().unwrap_or_default();
    eprintln!("chaos report (seed {}):", s.seed);
    eprintln!(
        "  ran {} steps in {:.1} s; faults by kind: {faults:?}",
        windows.len(),
        start.elapsed().as_secs_f64()
    );
    for w in &windows {
        eprintln!(
            "  step {:>3} [{:>6} .. {:>6} ms] {}",
            w.step, w.start_ms, w.end_ms, w.text
        );
    }
    eprintln!(
        "  games created {} ({} create calls); writes sent {}, acknowledged {}, refused by the rules {}, unknown outcome {}; reads {} ({} answered)",
        tally.creates_ok, tally.creates, tally.writes, tally.acked, tally.refused, tally.unknown, tally.reads, tally.reads_ok
    );
    eprintln!("  errors: {:?}", tally.errors);
    eprintln!(
        "  member-down events {}, sessions failed over {}, conflicts resolved {}, slowest settle {:.2} s, panics {panics}",
        recorded.downs.len(),
        recorded.failed_over,
        recorded.conflicts.len(),
        max_settle.as_secs_f64()
    );
    for line in &verdict.lines {
        eprintln!("  {line}");
    }
    eprintln!(
        "  figures: seed={} seconds={:.0} steps={} faults={faults:?} games={} writes={} acked={} refused={} unknown={} reads={} {} conflicts={} failed_over={} panics={panics} result={}",
        s.seed,
        start.elapsed().as_secs_f64(),
        windows.len(),
        tally.creates_ok,
        tally.writes,
        tally.acked,
        tally.refused,
        tally.unknown,
        tally.reads,
        verdict.figures,
        recorded.conflicts.len(),
        recorded.failed_over,
        if failures.is_empty() { "pass" } else { "FAIL" }
    );
    drop(recorded);
    if !failures.is_empty() {
        let mut text = format!(
            "chaos run failed; replay with CHAOS_SEED={} CHAOS_STEPS={}\nschedule:\n",
            s.seed,
            windows.len()
        );
        for w in &windows {
            text.push_str(&format!("  {}: {}\n", w.step, w.text));
        }
        text.push_str(&evidence);
        text.push_str("failures:\n");
        for f in failures.iter().take(60) {
            text.push_str(&format!("  {f}\n"));
        }
        panic!("{text}");
    }
}

/// The log lines of every running node that mention the first few game
/// ids named in `failures`.
fn logs_about(cluster: &TestCluster, failures: &[String]) -> String {
    let mut ids: Vec<String> = Vec::new();
    for f in failures {
        for word in f.split(|c: char| !(c.is_ascii_hexdigit() || c == '-')) {
            if word.len() == 36
                && word.parse::<GameId>().is_ok()
                && !ids.contains(&word.to_string())
            {
                ids.push(word.to_string());
            }
        }
    }
    let mut out = String::new();
    for id in ids.iter().take(2) {
        if let Ok(gid) = id.parse::<GameId>() {
            for name in cluster.nodes() {
                if let Ok(node) = cluster.node(&name) {
                    out.push_str(&format!(
                        "{name} ({}): hosts game {id}: {}, registers it as {:?}\n",
                        node.id(),
                        node.hosted().contains(&gid),
                        node.registry().lookup(gid).map(|r| (
                            r.owner.to_string(),
                            r.epoch,
                            r.version
                        ))
                    ));
                }
            }
        }
        out.push_str(&format!("logs about game {id}:\n"));
        for name in cluster.nodes() {
            for line in cluster.logs(&name).unwrap_or_default() {
                if line.contains(id.as_str()) {
                    out.push_str(&format!("  {line}\n"));
                }
            }
        }
    }
    out
}

/// The invariant checks after the run.
async fn check(
    cluster: &TestCluster,
    recorder: &Recorder,
    games: &[Tracked],
    windows: &[Window],
    tally: &Tally,
) -> Verdict {
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let in_split = |at: u64| {
        windows
            .iter()
            .any(|w| w.splits && (w.start_ms..=w.end_ms + SPLIT_GRACE_MS).contains(&at))
    };
    let conflicted: HashSet<GameId> = recorder.lock().conflicts.iter().map(|c| c.2).collect();

    // Membership: every node sees the same live members, same incarnations.
    let names = cluster.nodes();
    let mut views: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in &names {
        if let Ok(node) = cluster.node(name) {
            let live: BTreeSet<String> = node
                .members()
                .into_iter()
                .filter(|(_, s)| *s != MemberStatus::Down)
                .map(|(id, _)| id.to_string())
                .collect();
            views.insert(name.clone(), live);
        }
    }
    let distinct: BTreeSet<&BTreeSet<String>> = views.values().collect();
    if distinct.len() != 1 || distinct.iter().next().map(|v| v.len()) != Some(names.len()) {
        failures.push(format!("membership views differ: {views:?}"));
    }

    // Where each game lives.
    let mut hosts: HashMap<GameId, Vec<String>> = HashMap::new();
    for name in &names {
        if let Ok(node) = cluster.node(name) {
            // A passive game lives with its owner as a running one does.
            for id in node.hosted().into_iter().chain(node.passive().await) {
                hosts.entry(id).or_default().push(name.clone());
            }
        }
    }
    let tracked: HashSet<GameId> = games.iter().map(|g| g.id).collect();
    let orphans = hosts.keys().filter(|id| !tracked.contains(id)).count();

    // Final state of each game, read from its host, and from every node.
    let finals: Vec<(usize, Result<Game, String>)> =
        futures::stream::iter(games.iter().enumerate())
            .map(|(i, t)| {
                let hosts = hosts.get(&t.id).cloned().unwrap_or_default();
                let names = names.clone();
                async move {
                    if hosts.len() != 1 {
                        return (i, Err(format!("game {} hosted on {hosts:?}", t.id)));
                    }
                    let owner = match cluster.engine(&hosts[0]) {
                        Ok(e) => e,
                        Err(e) => return (i, Err(e.to_string())),
                    };
                    let fin = match owner.get_game(t.id).await {
                        Ok(g) => g,
                        Err(e) => return (i, Err(format!("game {} from its host: {e}", t.id))),
                    };
                    for name in &names {
                        let Ok(engine) = cluster.engine(name) else {
                            continue;
                        };
                        match engine.get_game(t.id).await {
                            Ok(g)
                                if g.version >= fin.version
                                    && g.actions.get(..fin.actions.len())
                                        == Some(&fin.actions[..]) => {}
                            Ok(g) => {
                                return (
                                    i,
                                    Err(format!(
                                    "game {} from {name}: version {} disagrees with its host's {}",
                                    t.id, g.version, fin.version
                                )),
                                )
                            }
                            Err(e) => {
                                return (
                                    i,
                                    Err(format!("game {} not reachable from {name}: {e}", t.id)),
                                )
                            }
                        }
                    }
                    (i, Ok(fin))
                }
            })
            .buffer_unordered(32)
            .collect()
            .await;

    let mut lost_covered: Vec<String> = Vec::new();
    let mut lost_split = 0u64;
    let mut lost_split_games: HashSet<GameId> = HashSet::new();
    let mut lost_reads = 0u64;
    let mut duplicates = 0i64;
    let mut unreachable = 0;
    let mut acked_checked = 0u64;
    // Of those, writes whose log was not known (only their entry).
    let mut acked_by_entry = 0u64;
    for (i, fin) in finals {
        let t = &games[i];
        let fin = match fin {
            Ok(f) => f,
            Err(e) => {
                unreachable += 1;
                failures.push(e);
                continue;
            }
        };
        let mut cache: HashMap<u64, u64> = HashMap::new();
        let mut game_lost = false;
        for seen in &t.seen {
            if seen.write {
                acked_checked += 1;
                acked_by_entry += u64::from(matches!(seen.log, Log::Last(_)));
            }
            if seen.kept_in(&fin.actions, &mut cache) {
                continue;
            }
            game_lost = true;
            if !seen.write {
                lost_reads += 1;
                if !in_split(seen.at_ms) {
                    lost_covered.push(format!(
                        "game {}: state at version {} read at {} ms is not in the final state (version {})",
                        t.id, seen.version, seen.at_ms, fin.version
                    ));
                }
            } else if in_split(seen.at_ms) {
                lost_split += 1;
                lost_split_games.insert(t.id);
            } else {
                lost_covered.push(format!(
                    "game {}: write acknowledged at version {} at {} ms is not in the final state (version {})",
                    t.id, seen.version, seen.at_ms, fin.version
                ));
            }
        }
        if !game_lost {
            let acked_writes = t.seen.iter().filter(|s| s.write).count() as i64 - 1;
            let extra = fin.version as i64 - acked_writes - t.unknown as i64;
            if extra > 0 {
                duplicates += extra;
                failures.push(format!(
                    "game {}: {} entries, but only {acked_writes} acknowledged and {} unknown writes",
                    t.id, fin.version, t.unknown
                ));
            }
        }
    }
    let unexplained: Vec<&GameId> = lost_split_games
        .iter()
        .filter(|id| !conflicted.contains(id))
        .collect();
    let regressions: Vec<&(u64, String)> = games
        .iter()
        .flat_map(|g| g.regressions.iter())
        .filter(|(at, _)| !in_split(*at))
        .collect();
    // A member seen down by its silence outside any injected split: a node
    // starved of CPU past the failure timeout, which behaves as a split.
    let false_suspicions = recorder
        .lock()
        .downs
        .iter()
        .filter(|(at, _, _, reason)| reason == "Timeout" && !in_split(*at))
        .count();
    let not_alive_covered: Vec<&(u64, String)> = tally
        .not_alive
        .iter()
        .filter(|(at, _)| !in_split(*at))
        .collect();

    lines.push(format!(
        "games checked {}, acknowledged states checked {acked_checked} ({acked_by_entry} by their entry only), orphan games (creation outcome unknown) {orphans}",
        games.len()
    ));
    lines.push(format!(
        "losses in covered faults {}, split losses {lost_split} (in {} games, {} of them with a reported conflict), lost read states {lost_reads}, duplicates {duplicates}, unreachable games {unreachable}",
        lost_covered.len(),
        lost_split_games.len(),
        lost_split_games.len() - unexplained.len()
    ));
    lines.push(format!(
        "members seen down by silence outside injected splits (false suspicions) {false_suspicions}"
    ));
    lines.push(format!(
        "regressions seen by a client outside splits {}, 'not alive' answers for live games outside splits {} (inside {})",
        regressions.len(),
        not_alive_covered.len(),
        tally.not_alive.len() - not_alive_covered.len()
    ));
    if !tally.anomalies.is_empty() {
        lines.push(format!(
            "anomalies: {:?}",
            &tally.anomalies[..tally.anomalies.len().min(10)]
        ));
    }

    let covered_losses = lost_covered.len();
    failures.extend(lost_covered.into_iter().take(30));
    // Majority fencing (the default from three members) covers splits.
    if lost_split > 0 {
        failures.push(format!(
            "{lost_split} writes acknowledged during splits lost, in {} games: {:?}",
            lost_split_games.len(),
            lost_split_games.iter().take(10).collect::<Vec<_>>()
        ));
    }
    if !unexplained.is_empty() {
        failures.push(format!(
            "split losses in games without a reported conflict: {unexplained:?}"
        ));
    }
    for r in regressions.iter().take(10) {
        failures.push(format!("a client saw the game go back: {}", r.1));
    }
    failures.extend(tally.anomalies.iter().take(10).cloned());
    let figures = format!(
        "acked_checked={acked_checked} false_suspicions={false_suspicions} covered_losses={covered_losses} split_losses={lost_split} lost_read_states={lost_reads} duplicates={duplicates} unreachable={unreachable} regressions={}",
        regressions.len()
    );
    Verdict {
        lines,
        failures,
        figures,
    }
}

// ---------------------------------------------------------------- double crash

/// Not covered by the guarantees: a node and the backup of its games crash
/// together. Those games are lost; the point is that the loss is reported
/// (every node answers `GameNotAlive`, the join code is gone), exactly for
/// the games whose owner and backup both crashed, while every other game
/// keeps every acknowledged command.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_of_a_node_and_its_backup_together_loses_only_their_games_and_says_so() {
    let _serial = SERIAL.lock().await;
    let panics_before = fixtures::count_panics();
    // Five, so that the three left are a majority and fail the others'
    // games over.
    let cluster = TestCluster::builder()
        .nodes(5)
        .in_memory()
        .configure(|_, cfg| configure(cfg, 0))
        .start()
        .await
        .expect("cluster starts");
    let names = cluster.nodes();
    let mut rng = SmallRng::seed_from_u64(7);
    let vectors = vectors();
    let mut games: Vec<Tracked> = Vec::new();
    for i in 0..120 {
        let engine = cluster.engine(&names[i % names.len()]).expect("engine");
        let game = engine
            .create_game(&format!("DC{i:04}"), vec!["ann".into(), "bob".into()])
            .await
            .expect("create");
        let mut t = Tracked::new(game, 0);
        for _ in 0..3 {
            let from = t.last.planned_position(&"ann".into());
            let v = **vectors
                .iter()
                .filter(|v| t.last.world.on_grid(from + **v))
                .collect::<Vec<_>>()
                .choose(&mut rng)
                .expect("a move");
            let after = engine
                .register_move(t.id, "ann".into(), v)
                .await
                .expect("move");
            let entry = RegisteredAction {
                user: "ann".into(),
                action: Action::Move { vector: v },
            };
            assert_eq!(t.acked(after, 0, &entry), None);
        }
        games.push(t);
    }
    settle(&cluster, Duration::from_secs(20))
        .await
        .expect("settled before the crash");

    // Each game's backup is the first other up member in rendezvous order.
    let members: Vec<_> = cluster
        .node(&names[0])
        .expect("node")
        .members()
        .into_iter()
        .filter(|(_, s)| *s == MemberStatus::Up)
        .map(|(id, _)| id)
        .collect();
    let mut pair_of: HashMap<GameId, (String, String)> = HashMap::new();
    for t in &games {
        let owner = cluster.where_is(t.id).expect("hosted");
        let backup = ranked(&t.id, members.iter().filter(|m| m.name != owner).cloned())
            .into_iter()
            .next()
            .expect("a backup")
            .name;
        let mut pair = [owner, backup];
        pair.sort();
        pair_of.insert(t.id, (pair[0].clone(), pair[1].clone()));
    }
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for p in pair_of.values() {
        *counts.entry(p.clone()).or_default() += 1;
    }
    let ((x, y), expected) = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .expect("some pair");
    assert!(expected > 0);
    let doomed: BTreeSet<GameId> = pair_of
        .iter()
        .filter(|(_, p)| **p == (x.clone(), y.clone()))
        .map(|(id, _)| *id)
        .collect();

    // Both at once: no settling in between.
    let (a, b) = tokio::join!(cluster.kill_node(&x), cluster.kill_node(&y));
    a.and(b).expect("kill");
    let survivors = cluster.nodes();
    assert_eq!(survivors.len(), 3);

    let mut lost = BTreeSet::new();
    let mut hidden = Vec::new();
    for t in &games {
        let engines: Vec<GameEngine> = survivors
            .iter()
            .map(|n| cluster.engine(n).expect("engine"))
            .collect();
        let outcome = cluster
            .eventually(
                &format!("game {} to be either back or reported lost", t.id),
                Duration::from_secs(20),
                || {
                    let engines = engines.clone();
                    let id = t.id;
                    let code = t.code.clone();
                    async move {
                        let mut answers = Vec::new();
                        for engine in &engines {
                            answers.push(engine.get_game(id).await);
                        }
                        if answers
                            .iter()
                            .all(|a| matches!(a, Err(EngineError::GameNotAlive(_))))
                        {
                            for engine in &engines {
                                match engine.get_game_by_join_code(&code).await {
                                    Err(EngineError::UnknownJoinCode(_)) => {}
                                    other => return Err(format!("join code {code}: {other:?}")),
                                }
                            }
                            return Ok(None);
                        }
                        match answers.into_iter().collect::<Result<Vec<Game>, _>>() {
                            Ok(mut found) => Ok(found.pop()),
                            Err(e) => Err(format!("answers so far: {e}")),
                        }
                    }
                },
            )
            .await
            .expect("every game is back or reported lost");
        match outcome {
            None => {
                lost.insert(t.id);
            }
            Some(game) => {
                let mut cache = HashMap::new();
                for seen in &t.seen {
                    if !seen.kept_in(&game.actions, &mut cache) {
                        hidden.push(format!(
                            "game {} came back without its version-{} state",
                            t.id, seen.version
                        ));
                    }
                }
            }
        }
    }
    eprintln!(
        "double crash of {x} and {y}: {} of {} games had both copies there; {} reported lost",
        doomed.len(),
        games.len(),
        lost.len()
    );
    assert!(hidden.is_empty(), "losses not reported: {hidden:?}");
    assert!(!lost.is_empty(), "the double crash lost nothing?");
    assert_eq!(
        lost, doomed,
        "lost exactly the games whose owner and backup both crashed"
    );
    for name in &survivors {
        let logs = cluster.logs(name).expect("logs");
        assert!(
            logs.iter()
                .any(|l| l.contains("forgot games of a down member")),
            "{name} logs the games it forgot"
        );
    }
    assert_eq!(fixtures::panics(), panics_before, "no panic");
    cluster.shutdown().await;
}

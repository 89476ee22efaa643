//! The games and their bot players: two bots per game, each sending a
//! move or an attack every 150-350 ms through a node picked at random,
//! and a ticker printing a status line every second.

use super::fleet::Gateways;
use super::ledger::{Ledger, Stats};
use super::{DemoError, Progress};
use minotaur_cluster::Node;
use minotaur_core::{EngineError, Game, GameEngine, GameError, GameId, Hex, UserId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Creates `count` games of two players, each through the next node in
/// turn, so that every node starts with sessions.
pub(super) async fn create_games(
    nodes: &[Arc<Node>],
    count: u64,
    progress: Progress,
) -> Result<Vec<Game>, DemoError> {
    let mut games = Vec::new();
    for (index, node) in (0..count).zip(nodes.iter().cycle()) {
        let users: Vec<UserId> = vec![
            format!("g{index}-ann").into(),
            format!("g{index}-bob").into(),
        ];
        let game = node
            .engine()
            .create_game(&format!("D{index:05}"), users)
            .await
            .map_err(|source| DemoError::Create { index, source })?;
        games.push(game);
    }
    progress.say(format!("{} games created", games.len()));
    Ok(games)
}

/// What every bot and the ticker share.
#[derive(Clone)]
struct Shared {
    gateways: Arc<Gateways>,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
}

/// The bots playing, and the ticker reporting on them.
pub(super) struct Bots {
    shared: Shared,
    players: Vec<JoinHandle<Ledger>>,
    ticker: JoinHandle<()>,
    /// The phase the status line names.
    phase: Arc<Mutex<&'static str>>,
}

impl Bots {
    /// Starts two bots per game, and the ticker. The bots' choices follow
    /// from `seed`; their timing does not.
    pub(super) fn start(
        games: &[Game],
        gateways: Arc<Gateways>,
        stats: Arc<Stats>,
        seed: u64,
        progress: Progress,
    ) -> Bots {
        let shared = Shared {
            gateways,
            stats,
            stop: Arc::new(AtomicBool::new(false)),
        };
        let mut players = Vec::new();
        for (i, game) in games.iter().enumerate() {
            let [ann, bob] = game.players.as_slice() else {
                continue;
            };
            let sides = [
                (ann.user.clone(), bob.user.clone()),
                (bob.user.clone(), ann.user.clone()),
            ];
            for (k, (me, foe)) in sides.into_iter().enumerate() {
                let rng = SmallRng::seed_from_u64(seed ^ (((i as u64) << 1) | k as u64));
                let bot = play(game.clone(), me, foe, shared.clone(), rng);
                players.push(tokio::spawn(bot));
            }
        }
        let phase = Arc::new(Mutex::new("play"));
        let ticker = tokio::spawn(tick(shared.clone(), phase.clone(), progress));
        progress.say(format!("{} bots playing", players.len()));
        Bots {
            shared,
            players,
            ticker,
            phase,
        }
    }

    /// Names the phase in the status lines from now on.
    pub(super) fn enter_phase(&self, name: &'static str) {
        *self.phase.lock().unwrap_or_else(|e| e.into_inner()) = name;
    }

    /// Stops the bots and returns their ledgers.
    pub(super) async fn stop(self) -> Vec<Ledger> {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut ledgers = Vec::new();
        for player in self.players {
            if let Ok(ledger) = player.await {
                ledgers.push(ledger);
            }
        }
        let _ = self.ticker.await;
        ledgers
    }
}

/// What a bot does next.
#[derive(Clone, Copy)]
enum Intent {
    Move(Hex),
    Attack,
}

/// One bot: plays `me` against `foe` until told to stop, calling a
/// random gateway each time, and keeps its ledger.
async fn play(
    mut view: Game,
    me: UserId,
    foe: UserId,
    shared: Shared,
    mut rng: SmallRng,
) -> Ledger {
    let id = view.id;
    let stats = &shared.stats;
    let mut ledger = Ledger::new(id, me.clone());
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..350))).await;
        let Some((gateway, _in_flight)) = shared.gateways.pick(&mut rng) else {
            continue;
        };
        let Some(intent) = choose(&view, &me, &foe, &mut rng) else {
            break;
        };
        let engine = gateway.node.engine();
        let result = match intent {
            Intent::Move(vector) => engine.register_move(id, me.clone(), vector).await,
            Intent::Attack => engine.register_attack(id, me.clone(), foe.clone()).await,
        };
        stats.sent.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(ack) => {
                stats.acked.fetch_add(1, Ordering::Relaxed);
                ledger.record_ack(ack.version);
                // Within the round the view shows, this write is all that
                // changed for the bot's choices (the foe's actions land at
                // the round's end): make it on the view. Once a round
                // ended, read the game again, as a client would.
                let made = ack.round == view.round
                    && match intent {
                        Intent::Move(vector) => view.register_move(&me, vector).is_ok(),
                        Intent::Attack => view.register_attack(&me, &foe).is_ok(),
                    };
                if !made {
                    if let Some(game) = refresh(engine, id, stats).await {
                        view = game;
                    }
                }
            }
            Err(EngineError::Rule(GameError::GameConcluded)) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                ledger.saw_conclusion = true;
                break;
            }
            Err(EngineError::Rule(_)) => {
                stats.rejected.fetch_add(1, Ordering::Relaxed);
                // The view is stale (a round ended on the session's
                // timer): refresh it, as a client would.
                if let Some(game) = refresh(engine, id, stats).await {
                    view = game;
                }
            }
            Err(e) => {
                ledger.unknown += 1;
                stats.failed(&gateway.name, id, &e);
            }
        }
    }
    ledger
}

/// Attack when in range with the action points for it (or when no step
/// is walkable), otherwise step towards the foe; `None` once either
/// player is gone from the game.
fn choose(view: &Game, me: &UserId, foe: &UserId, rng: &mut SmallRng) -> Option<Intent> {
    let mine = view.player(me)?;
    let theirs = view.player(foe)?;
    let planned = view.planned_position(me);
    let in_range = planned.distance(theirs.position) <= view.config.attack_range as u64;
    let can_attack = in_range && mine.action_points >= view.config.attack_cost;
    match step_towards(view, planned, theirs.position, rng) {
        Some(vector) if !can_attack => Some(Intent::Move(vector)),
        _ => Some(Intent::Attack),
    }
}

/// The step from `from` towards `target`, if any is walkable; ties are
/// broken at random so that bots do not all walk the same path.
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

/// Reads game `id` again, counting the read.
async fn refresh(engine: &GameEngine, id: GameId, stats: &Stats) -> Option<Game> {
    stats.reads.fetch_add(1, Ordering::Relaxed);
    match engine.get_game(id).await {
        Ok(game) => Some(game),
        Err(_) => {
            stats.read_errors.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// Prints a status line every second until the bots stop.
async fn tick(shared: Shared, phase: Arc<Mutex<&'static str>>, progress: Progress) {
    while !shared.stop.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let name = *phase.lock().unwrap_or_else(|e| e.into_inner());
        progress.say(status_line(name, &shared));
    }
}

/// Sessions per node the bots call, and the counters so far.
fn status_line(phase: &str, shared: &Shared) -> String {
    let sessions: Vec<String> = shared
        .gateways
        .all()
        .iter()
        .map(|g| format!("{}:{}", g.name, g.node.hosted().len()))
        .collect();
    let stats = &shared.stats;
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

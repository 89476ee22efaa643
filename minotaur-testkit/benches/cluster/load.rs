//! Figures 3 and 4: command throughput of a loaded 3-node cluster against
//! bare cast throughput on one link, and the rate at which sessions are
//! placed and registered cluster-wide against bare actor spawns.

use crate::bare::{self, BarePair};
use crate::common::{self, Scale, PARALLEL};
use crate::report::{median, num, Figure, Goal, Report};
use crate::rtt::wire_sizes;
use minotaur_core::{GameEngine, GameId};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs `clients` tasks that each send `EndRound` to random games through
/// the engines in turn until `window` is over. Returns (commands completed
/// per second, errors).
pub async fn hammer(
    engines: &[GameEngine],
    games: &Arc<Vec<GameId>>,
    clients: usize,
    window: Duration,
) -> (f64, u64) {
    let start = Instant::now();
    let deadline = start + window;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let engine = engines[c % engines.len()].clone();
            let games = games.clone();
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(c as u64 ^ rand::random::<u64>());
                let (mut ok, mut err) = (0u64, 0u64);
                while Instant::now() < deadline {
                    let id = games[rng.random_range(0..games.len())];
                    match engine.end_round(id).await {
                        Ok(_) => ok += 1,
                        Err(_) => err += 1,
                    }
                }
                (ok, err)
            })
        })
        .collect();
    let (mut ok, mut err) = (0, 0);
    for t in tasks {
        let (o, e) = t.await.expect("client task");
        ok += o;
        err += e;
    }
    (ok as f64 / start.elapsed().as_secs_f64(), err)
}

/// Figure 3.
pub async fn throughput(scale: &Scale, report: &mut Report) {
    let cluster = common::cluster(3, true, |_| {}).await;
    let engines: Vec<GameEngine> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.engine(n).expect("engine"))
        .collect();
    let games = common::create_games(&engines, 'T', scale.throughput_games).await;
    let (request_size, _) = wire_sizes(&games[0]);
    let ids: Arc<Vec<GameId>> = Arc::new(games.iter().map(|g| g.id).collect());
    drop(games);
    // Warm-up, then windows alternating with the bare link's cast rate.
    hammer(&engines, &ids, scale.clients, Duration::from_millis(300)).await;
    let pair = BarePair::start(request_size, 16).await;
    pair.cast_throughput(scale.casts / 10).await;
    let (mut rates, mut casts, mut errors) = (vec![], vec![], 0);
    let (mut cmd_cpu, mut cast_cpu) = (vec![], vec![]);
    for i in 0..scale.throughput_windows.max(scale.cast_samples) {
        if i < scale.throughput_windows {
            let cpu = common::cpu_time();
            let t = Instant::now();
            let (rate, err) = hammer(&engines, &ids, scale.clients, scale.throughput_window).await;
            let commands = rate * t.elapsed().as_secs_f64();
            cmd_cpu.push((common::cpu_time() - cpu).as_secs_f64() * 1e6 / commands);
            rates.push(rate);
            errors += err;
        }
        if i < scale.cast_samples {
            let cpu = common::cpu_time();
            casts.push(pair.cast_throughput(scale.casts).await);
            cast_cpu.push((common::cpu_time() - cpu).as_secs_f64() * 1e6 / scale.casts as f64);
        }
    }
    pair.stop().await;
    cluster.shutdown().await;
    report.add(
        Figure::new(
            "command_throughput",
            median(&rates),
            "cmd/s",
            "bare ractor_cluster cast throughput, one link",
            Some(median(&casts)),
        )
        .goal(Goal::RatioAtLeast(0.35))
        .note(format!(
            "median of {} windows of {:?}; 3 nodes, {} games, {} clients, EndRound, replication 1; {errors} errors; casts: median of {} x {}; CPU per command {} us vs per cast {} us",
            rates.len(),
            scale.throughput_window,
            ids.len(),
            scale.clients,
            casts.len(),
            scale.casts,
            num(median(&cmd_cpu)),
            num(median(&cast_cpu))
        )),
    );
}

/// Figure 4.
pub async fn placement(scale: &Scale, report: &mut Report) {
    let n = scale.placement_sessions;
    let chunks = scale.placement_chunks.max(1);
    let chunk = n.div_ceil(chunks);

    // The floor first, with no node running: bare spawns, the same number
    // in flight, each actor holding a game.
    let game = bare::sample_game(0);
    let mut spawn_rates = vec![];
    let mut spawned = vec![];
    let cpu = common::cpu_time();
    for _ in 0..chunks {
        let (actors, rate) = bare::spawn_many(chunk, PARALLEL, &game).await;
        spawn_rates.push(rate);
        spawned.extend(actors);
    }
    let bare_cpu = (common::cpu_time() - cpu).as_secs_f64() * 1e6 / (chunk * chunks) as f64;
    bare::stop_all(spawned).await;

    let cluster = common::cluster(3, true, |_| {}).await;
    let engines: Vec<GameEngine> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.engine(n).expect("engine"))
        .collect();
    let mut rates = vec![];
    let start = Instant::now();
    let cpu = common::cpu_time();
    for c in 0..chunks {
        let range = (c * chunk)..((c + 1) * chunk).min(n);
        let len = range.len();
        let t = Instant::now();
        common::create_range(&engines, 'P', range).await;
        rates.push(len as f64 / t.elapsed().as_secs_f64());
    }
    let overall = n as f64 / start.elapsed().as_secs_f64();
    let create_cpu = (common::cpu_time() - cpu).as_secs_f64() * 1e6 / n as f64;
    let registered = cluster
        .node("n1")
        .map(|node| node.registry().len())
        .unwrap_or(0);
    cluster.shutdown().await;
    let first = rates.first().copied().unwrap_or(0.0);
    let last = rates.last().copied().unwrap_or(0.0);
    report.add(
        Figure::new(
            "placement_rate",
            median(&rates),
            "sessions/s",
            "bare ractor spawns/s (actor holding a game)",
            Some(median(&spawn_rates)),
        )
        .goal(Goal::RatioAtLeast(0.5))
        .note(format!(
            "median of {chunks} chunks of {chunk}; {n} sessions on 3 nodes, {PARALLEL} in flight, replication 1; first chunk {} /s, last {} /s, overall {} /s; {registered} registered; CPU per create {} us vs per spawn {} us",
            num(first),
            num(last),
            num(overall),
            num(create_cpu),
            num(bare_cpu)
        )),
    );
}

//! Durable store figures: the latency and the throughput of writes that
//! are on disk before they are acknowledged, against the same writes on a
//! node without a store, measured side by side in this run.

use crate::common::{self, Scale};
use crate::report::{median, percentile, Figure, Report};
use futures::StreamExt;
use minotaur_cluster::{Node, NodeConfig};
use minotaur_core::{Game, GameEngine};
use std::time::{Duration, Instant};

/// A lone node, replication off (the store's cost alone), with a data dir
/// in `data` if given.
async fn node(name: &str, data: Option<&std::path::Path>) -> Node {
    let cookie = format!("bench-durable-{:016x}", rand::random::<u64>());
    let mut config = NodeConfig::new(name.to_string(), cookie);
    config.replication_factor = 0;
    config.data_dir = data.map(|d| d.join(name));
    Node::start(config).await.expect("node starts")
}

/// The durable figures.
pub async fn run(scale: &Scale, report: &mut Report) {
    let data = tempfile::tempdir().expect("a temporary data dir");
    let (writes, clients, window) = if scale.quick {
        (300, 32, Duration::from_secs(1))
    } else {
        (2_000, 64, Duration::from_secs(3))
    };
    let plain = node("plain1", None).await;
    let durable = node("durable1", Some(data.path())).await;
    // Interleaved, so that a slow phase of the machine weighs on both.
    let (mut base, mut kept) = (Vec::new(), Vec::new());
    for round in 0..2 {
        base.extend(latencies(plain.engine(), writes / 2, round).await);
        kept.extend(latencies(durable.engine(), writes / 2, round).await);
    }
    let rate_base = throughput(plain.engine(), clients, window).await;
    let rate_kept = throughput(durable.engine(), clients, window).await;
    plain.kill().await;
    durable.kill().await;
    let (b, k) = (median(&base), median(&kept));
    report.add(
        Figure::new(
            "durable_write_rtt",
            k,
            "us",
            "the same write on a node without a store",
            Some(b),
        )
        .note(format!(
            "median of {writes} local writes, one at a time, each committed (fsync) before its ack; p99 {:.0} us against {:.0} us",
            percentile(&kept, 99.0),
            percentile(&base, 99.0)
        )),
    );
    report.add(
        Figure::new(
            "durable_write_throughput",
            rate_kept,
            "writes/s",
            "the same load on a node without a store",
            Some(rate_base),
        )
        .note(format!(
            "{clients} clients writing to a game each for {window:?}; concurrent writes share a commit"
        )),
    );
}

/// Times `n` writes to one new game, one after the other, in microseconds.
async fn latencies(engine: &GameEngine, n: usize, round: usize) -> Vec<f64> {
    let game = create(engine, &format!("L{round}")).await;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        engine.end_round(game.id).await.expect("write");
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times
}

/// Writes per second of `clients` writing side by side for `window`.
async fn throughput(engine: &GameEngine, clients: usize, window: Duration) -> f64 {
    let mut games = Vec::new();
    for i in 0..clients {
        games.push(create(engine, &format!("T{i}")).await);
    }
    let until = Instant::now() + window;
    let started = Instant::now();
    let counts: Vec<u64> = futures::stream::iter(games)
        .map(|game| {
            let engine = engine.clone();
            async move {
                let mut n = 0;
                while Instant::now() < until {
                    engine.end_round(game.id).await.expect("write");
                    n += 1;
                }
                n
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    counts.iter().sum::<u64>() as f64 / started.elapsed().as_secs_f64()
}

async fn create(engine: &GameEngine, prefix: &str) -> Game {
    let code = common::code(
        prefix.chars().next().unwrap_or('D'),
        rand::random::<u16>() as usize,
    );
    engine
        .create_game(&code, common::users())
        .await
        .unwrap_or_else(|e| panic!("creating a game: {e}"))
}

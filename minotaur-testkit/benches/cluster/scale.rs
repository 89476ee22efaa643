//! The scale figure: many passive games on 16 in-process nodes (replication
//! 1, games passivated once idle): the whole process's memory per game,
//! the rate they are created at, and the time a rolling restart of all 16
//! nodes takes with every game kept. `--scale-games N` sets how many (the
//! full run puts 100 000; the target is a million).

use crate::common::{self, Scale};
use crate::passive::collect_freed_memory;
use crate::report::{Figure, Report};
use minotaur_core::codec;
use minotaur_testkit::TestCluster;
use rand::seq::IndexedRandom;
use std::time::{Duration, Instant};

const NODES: usize = 16;

/// The scale figures.
pub async fn run(scale: &Scale, report: &mut Report) {
    let games = scale.scale_games;
    let cluster = common::cluster(NODES, false, |c| {
        c.idle_after = Some(Duration::from_millis(200));
    })
    .await;
    let names = cluster.nodes();
    let engines: Vec<_> = names
        .iter()
        .map(|n| cluster.engine(n).expect("engine"))
        .collect();
    collect_freed_memory();
    let before = common::rss_bytes();
    let started = Instant::now();
    let created = common::create_range(&engines, 'S', 0..games).await;
    let create_time = started.elapsed();
    all_passive(&cluster, games).await;
    collect_freed_memory();
    let per_game = common::rss_bytes().saturating_sub(before) as f64 / games as f64;

    let restarted = Instant::now();
    cluster.rolling_restart().await.expect("rolling restart");
    for name in cluster.nodes() {
        let node = cluster.node(&name).expect("node");
        common::poll(
            "every registry holds every game",
            Duration::from_secs(600),
            || {
                let held = node.registry().len();
                async move { (held == games).then_some(()) }
            },
        )
        .await;
    }
    let restart_time = restarted.elapsed();
    // Every game is still there: a sample read through every node.
    let sample: Vec<_> = created
        .choose_multiple(&mut rand::rng(), 200.min(games))
        .collect();
    for (i, game) in sample.iter().enumerate() {
        let engine = cluster.engine(&names[i % names.len()]).expect("engine");
        let read = engine.get_game(game.id).await.expect("a game kept");
        assert_eq!(read.id, game.id);
    }
    cluster.shutdown().await;

    let snapshot = codec::encode(&created[0]).expect("encode").len() as f64;
    report.add(
        Figure::new(
            "scale_memory_per_game",
            per_game,
            "bytes",
            "the game's encoded snapshot",
            Some(snapshot),
        )
        .note(format!(
            "whole-process RSS growth / {games} passive games on {NODES} in-process nodes, replication 1 (owner, backup copy, 16 registry entries), after mi_collect"
        )),
    );
    report.add(
        Figure::new(
            "scale_create_rate",
            games as f64 / create_time.as_secs_f64(),
            "games/s",
            "none",
            None,
        )
        .note(format!(
            "{games} creates through the {NODES} nodes, {} in flight",
            common::PARALLEL
        )),
    );
    report.add(
        Figure::new(
            "scale_rolling_restart",
            restart_time.as_secs_f64(),
            "s",
            "none",
            None,
        )
        .note(format!(
            "each of the {NODES} nodes leaves (handing its passive games over) and a new incarnation joins, in turn, until every registry holds all {games} games"
        )),
    );
}

/// Waits until `games` games are passive across the cluster.
async fn all_passive(cluster: &TestCluster, games: usize) {
    let nodes: Vec<_> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.node(n).expect("node"))
        .collect();
    common::poll("every game passive", Duration::from_secs(600), || {
        let nodes = nodes.clone();
        async move {
            let mut passive = 0;
            for node in &nodes {
                passive += node.passive().await.len();
            }
            (passive >= games).then_some(())
        }
    })
    .await;
}

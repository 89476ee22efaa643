//! The scale figure: many passive games on 16 in-process nodes (replication
//! 1, games passivated once idle): the whole process's memory per game,
//! the rate they are created at, and the time a rolling restart of all 16
//! nodes takes with every game kept. `--scale-games N` sets how many (the
//! full run puts 100 000; the target is a million).

use crate::common::{self, Scale};
use crate::passive::collect_everywhere;
use crate::report::{Figure, Report};
use minotaur_core::{codec, EngineError};
use minotaur_testkit::TestCluster;
use rand::seq::IndexedRandom;
use std::time::{Duration, Instant};

const NODES: usize = 16;

/// The scale figures.
pub async fn run(scale: &Scale, report: &mut Report) {
    let games = scale.scale_games;
    // Sixteen nodes share this machine's cores: each gets a fraction of
    // one, so failure detection is given the time a loaded node needs to
    // answer (as one would for nodes on busy, shared hosts).
    let timeout = scale.scale_failure_timeout;
    let cluster = common::cluster(NODES, false, move |c| {
        c.idle_after = Some(Duration::from_millis(200));
        c.heartbeat_interval = Duration::from_millis(500);
        c.failure_timeout = timeout;
        c.lease = timeout;
        c.call_timeout = Duration::from_secs(10);
    })
    .await;
    let names = cluster.nodes();
    let engines: Vec<_> = names
        .iter()
        .map(|n| cluster.engine(n).expect("engine"))
        .collect();
    collect_everywhere().await;
    let before = common::rss_bytes();
    let started = Instant::now();
    let retries = std::sync::atomic::AtomicUsize::new(0);
    let created = create_all(&engines, games, &retries).await;
    let create_time = started.elapsed();
    let retries = retries.into_inner();
    all_passive(&cluster, games).await;
    collect_everywhere().await;
    let per_game = common::rss_bytes().saturating_sub(before) as f64 / games as f64;
    eprintln!(
        "  {games} games created in {:.1} s ({retries} retries), all passive: {per_game:.0} bytes each",
        create_time.as_secs_f64()
    );

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
            "{games} creates through the {NODES} nodes, {} in flight; {retries} retried after a refusal or a timeout",
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
            "each of the {NODES} nodes leaves (handing its passive games over) and a new incarnation joins, in turn, until every registry holds all {games} games; failure timeout and lease {timeout:?}"
        )),
    );
}

/// Creates `games` games through `engines` in turn, as a client would:
/// a create refused as retryable (its first copy found no backup in time,
/// say, on a machine this loaded) or timed out is sent again, up to five
/// times; one that timed out and then finds its join code taken had been
/// created.
async fn create_all(
    engines: &[minotaur_core::GameEngine],
    games: usize,
    retries: &std::sync::atomic::AtomicUsize,
) -> Vec<minotaur_core::Game> {
    use futures::StreamExt;
    futures::stream::iter(0..games)
        .map(|i| {
            let engine = engines[i % engines.len()].clone();
            async move {
                let code = common::code('S', i);
                let mut attempt = 0;
                let mut timed_out = false;
                loop {
                    match engine.create_game(&code, common::users()).await {
                        Ok(game) => return game,
                        // A create that timed out may have happened.
                        Err(EngineError::JoinCodeTaken(_)) if timed_out => {
                            return engine.get_game_by_join_code(&code).await.expect("created")
                        }
                        Err(
                            e @ (EngineError::Unavailable(_)
                            | EngineError::NoQuorum(_)
                            | EngineError::Timeout(_)),
                        ) if attempt < 5 => {
                            timed_out |= matches!(e, EngineError::Timeout(_));
                            attempt += 1;
                            retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("creating game {i}: {e}"),
                    }
                }
            }
        })
        .buffer_unordered(common::PARALLEL)
        .collect()
        .await
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

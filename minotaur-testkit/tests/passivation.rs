//! Passivation across a cluster: idle games stop their sessions and are
//! kept by their owners as their state alone; a command through any node
//! wakes a game on its owner, with the rounds that ended meanwhile ended at
//! their deadlines; passive games are handed over on a graceful leave and
//! failed over on a crash without being woken.

use minotaur_cluster::NodeConfig;
use minotaur_core::{Change, Command, Game, GameConfig, GameId, UserId};
use minotaur_testkit::fixtures::players_of;
use minotaur_testkit::TestCluster;
use std::time::Duration;

const IDLE: Duration = Duration::from_millis(300);

fn passivating(round_length_ms: u64) -> impl Fn(&str, &mut NodeConfig) + Send + Sync + 'static {
    move |_, cfg| {
        cfg.idle_after = Some(IDLE);
        cfg.game = GameConfig {
            round_length_ms,
            ..GameConfig::default()
        };
    }
}

/// Games passive and sessions running, summed over the cluster's nodes.
async fn counts(cluster: &TestCluster) -> Result<(usize, usize), Box<dyn std::error::Error>> {
    let (mut passive, mut running) = (0, 0);
    for name in cluster.nodes() {
        let node = cluster.node(&name)?;
        passive += node.passive().await.len();
        running += node.hosted().len();
    }
    Ok((passive, running))
}

/// Waits until all `games` are passive and no session runs.
async fn all_passive(
    cluster: &TestCluster,
    games: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    cluster
        .eventually("every game passive", Duration::from_secs(15), || async {
            match counts(cluster).await {
                Ok((passive, 0)) if passive == games => Ok(()),
                Ok((passive, running)) => {
                    Err(format!("{passive} passive, {running} sessions running"))
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
    Ok(())
}

/// Waits until all `games` are passive again, failing the moment a session
/// runs: nothing woke them.
async fn still_passive(
    cluster: &TestCluster,
    games: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let what = "every game passive, none woken";
    cluster
        .eventually(what, Duration::from_secs(15), || async {
            match counts(cluster).await {
                Ok((passive, 0)) if passive == games => Ok(()),
                Ok((_, 0)) => Err("games in flight".to_string()),
                Ok((passive, running)) => {
                    panic!("{running} sessions were started ({passive} passive)")
                }
                Err(e) => Err(e.to_string()),
            }
        })
        .await?;
    Ok(())
}

/// Creates `n` games through `via`, each with one acknowledged move.
async fn games_with_a_move(
    cluster: &TestCluster,
    via: &str,
    n: usize,
) -> Result<Vec<Game>, Box<dyn std::error::Error>> {
    let engine = cluster.engine(via)?;
    let mut games = Vec::new();
    for i in 0..n {
        let game = engine
            .create_game(&format!("PS{i:02}"), players_of(i))
            .await?;
        let user: UserId = format!("a{i}").into();
        let vector = game.legal_steps(&user)[0];
        let command = Command::RegisterMove { user, vector };
        games.push(
            engine
                .apply_once_and_get(game.id, i as u64, command)
                .await?,
        );
    }
    Ok(games)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_games_passivate_and_a_read_through_any_node_wakes_them_with_their_rounds_ended(
) -> Result<(), Box<dyn std::error::Error>> {
    const ROUND_MS: u64 = 500;
    let cluster = TestCluster::builder()
        .nodes(3)
        .in_memory()
        .configure(passivating(ROUND_MS))
        .start()
        .await?;
    let games = games_with_a_move(&cluster, "n1", 12).await?;
    all_passive(&cluster, games.len()).await?;
    tokio::time::sleep(Duration::from_millis(3 * ROUND_MS)).await;

    let nodes = cluster.nodes();
    for (i, acked) in games.iter().enumerate() {
        let via = &nodes[i % nodes.len()];
        let read = cluster.engine(via)?.get_game(acked.id).await?;
        assert!(
            read.round >= 4,
            "game {} read via {via} in round {}",
            acked.id,
            read.round
        );
        // Every round ended at its deadline: the game is the acknowledged
        // one with its due round ends applied, exactly.
        let last_end = read.round_ends_at_ms - ROUND_MS;
        let mut expected = acked.clone();
        Change::replay(&mut expected, &Change::rounds_due(acked, last_end))?;
        assert_eq!(read, expected, "game {} read via {via}", acked.id);
    }
    let (passive, running) = counts(&cluster).await?;
    assert_eq!(
        (passive, running),
        (0, games.len()),
        "every game read is running again"
    );
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_games_are_handed_over_and_failed_over_without_waking(
) -> Result<(), Box<dyn std::error::Error>> {
    // Rounds a day long: the games read back are the games acknowledged.
    let cluster = TestCluster::builder()
        .nodes(4)
        .in_memory()
        .configure(passivating(24 * 3600 * 1000))
        .start()
        .await?;
    let games = games_with_a_move(&cluster, "n1", 40).await?;
    all_passive(&cluster, games.len()).await?;
    cluster.settled(Duration::from_secs(15)).await?;

    // The node whose registry says it owns the most games.
    let busiest = |cluster: &TestCluster| {
        let mut owners: Vec<(usize, String)> = cluster
            .nodes()
            .into_iter()
            .filter_map(|n| {
                let node = cluster.node(&n).ok()?;
                Some((node.registry().owned_by(node.id()).len(), n))
            })
            .collect();
        owners.sort();
        owners.pop().expect("a node")
    };
    let (owned, leaver) = busiest(&cluster);
    assert!(owned > 0);
    cluster.stop_node(&leaver).await?;
    still_passive(&cluster, games.len()).await?;
    cluster.settled(Duration::from_secs(15)).await?;

    let (owned, victim) = busiest(&cluster);
    assert!(owned > 0);
    cluster.kill_node(&victim).await?;
    still_passive(&cluster, games.len()).await?;

    for name in cluster.nodes() {
        let engine = cluster.engine(&name)?;
        for acked in &games {
            let read = engine.get_game(acked.id).await?;
            assert_eq!(&read, acked, "game {} read via {name}", acked.id);
        }
    }
    let (passive, running) = counts(&cluster).await?;
    assert_eq!(
        (passive, running),
        (0, games.len()),
        "one session per game, woken by the reads"
    );
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_a_passive_game_is_applied_once() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(2)
        .in_memory()
        .configure(passivating(24 * 3600 * 1000))
        .start()
        .await?;
    let games = games_with_a_move(&cluster, "n1", 6).await?;
    all_passive(&cluster, games.len()).await?;
    for (i, acked) in games.iter().enumerate() {
        let engine = cluster.engine(if i % 2 == 0 { "n1" } else { "n2" })?;
        let op = 1000 + i as u64;
        let first = engine.apply_once(acked.id, op, Command::EndRound).await?;
        let again = engine.apply_once(acked.id, op, Command::EndRound).await?;
        assert_eq!(
            first, again,
            "a retried write is answered, not applied again"
        );
        assert_eq!(first.version, acked.version + 1);
        let _: GameId = first.id;
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_sleep_and_wake_under_load_through_a_leave_and_a_crash(
) -> Result<(), Box<dyn std::error::Error>> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    // Sessions idle for 150 ms passivate: writers that pause up to 300 ms
    // between writes to a game keep waking games as others fall asleep.
    let cluster = TestCluster::builder()
        .nodes(4)
        .in_memory()
        .configure(|_, cfg| {
            cfg.idle_after = Some(Duration::from_millis(150));
            cfg.game = GameConfig {
                round_length_ms: 24 * 3600 * 1000,
                ..GameConfig::default()
            };
        })
        .start()
        .await?;
    let engine = cluster.engine("n1")?;
    let mut games = Vec::new();
    for i in 0..40 {
        games.push(
            engine
                .create_game(&format!("LD{i:02}"), players_of(i))
                .await?
                .id,
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    let slept = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for (w, mine) in games.chunks(10).enumerate() {
        let (mine, stop) = (mine.to_vec(), stop.clone());
        let engine = cluster.engine(&format!("n{}", 1 + w % 2))?;
        writers.push(tokio::spawn(async move {
            // Per game: writes acknowledged, writes given up (fate unknown).
            let mut tally = vec![(0u64, 0u64); mine.len()];
            let mut op = 1_000_000 * w as u64;
            let mut k = 0usize;
            while !stop.load(Ordering::SeqCst) {
                k = (k * 7 + 3) % mine.len();
                op += 1;
                let mut done = false;
                for _ in 0..3 {
                    if engine
                        .apply_once(mine[k], op, Command::EndRound)
                        .await
                        .is_ok()
                    {
                        done = true;
                        break;
                    }
                }
                if done {
                    tally[k].0 += 1;
                } else {
                    tally[k].1 += 1;
                }
                tokio::time::sleep(Duration::from_millis((op % 7) * 40)).await;
            }
            (mine, tally)
        }));
    }
    let sampler = {
        let (stop, slept) = (stop.clone(), slept.clone());
        let nodes: Vec<_> = cluster
            .nodes()
            .iter()
            .filter_map(|n| cluster.node(n).ok())
            .collect();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                for node in &nodes {
                    slept.fetch_max(node.passive().await.len(), Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.stop_node("n3").await?;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cluster.kill_node("n4").await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::SeqCst);
    sampler.await?;
    assert!(slept.load(Ordering::SeqCst) > 0, "no game was ever passive");

    for writer in writers {
        let (mine, tally) = writer.await?;
        for (id, (acked, unknown)) in mine.iter().zip(tally) {
            for name in cluster.nodes() {
                let engine = cluster.engine(&name)?;
                let game = cluster
                    .eventually(
                        &format!("game {id} via {name}"),
                        Duration::from_secs(10),
                        || {
                            let engine = engine.clone();
                            let id = *id;
                            async move { engine.get_game(id).await.map_err(|e| e.to_string()) }
                        },
                    )
                    .await?;
                // Each write ends a round: the version counts them.
                assert!(
                    (acked..=acked + unknown).contains(&game.version),
                    "game {id} via {name}: version {}, {acked} writes acknowledged, {unknown} unknown",
                    game.version
                );
            }
        }
    }
    cluster.settled(Duration::from_secs(15)).await?;
    cluster.shutdown().await;
    Ok(())
}

//! Game updates followed from one node while the games' owners leave
//! gracefully and crash: every version comes once, in order, none missing.

use minotaur_core::{Command, EngineError, GameConfig, GameEngine, GameId, GameUpdate};
use minotaur_testkit::fixtures::{players_of, quick_failure_detection};
use minotaur_testkit::TestCluster;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Writes to game `id` through `engine` until `stop`: round ends and
/// attacks, each retried under its op id until it is answered. Returns
/// the versions acknowledged.
async fn write_until(
    engine: GameEngine,
    id: GameId,
    who: usize,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let players = players_of(who);
    let mut acked = Vec::new();
    let mut op = (who as u64) << 32;
    while !stop.load(Ordering::SeqCst) {
        op += 1;
        let command = if op.is_multiple_of(2) {
            Command::EndRound
        } else {
            Command::RegisterAttack {
                user: players[0].clone(),
                target: players[1].clone(),
            }
        };
        loop {
            match engine.apply_once(id, op, command.clone()).await {
                Ok(ack) => {
                    acked.push(ack.version);
                    break;
                }
                Err(EngineError::Rule(_)) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    acked
}

/// The versions of every update `engine` streams of game `id`, until the
/// stream reaches version `until` (sent once known).
async fn follow(
    engine: GameEngine,
    id: GameId,
    until: tokio::sync::watch::Receiver<Option<u64>>,
) -> Vec<(u64, &'static str)> {
    let mut updates = engine.subscribe(id, None).expect("subscribed");
    let mut seen = Vec::new();
    loop {
        if let Some(last) = *until.borrow() {
            if seen.last().is_some_and(|(v, _)| *v >= last) {
                return seen;
            }
        }
        match tokio::time::timeout(Duration::from_millis(500), updates.next()).await {
            Ok(Some(Ok(update))) => seen.push((update.version(), update.kind())),
            Ok(Some(Err(e))) => panic!("game {id}: the stream failed: {e}; saw {seen:?}"),
            Ok(None) => panic!("game {id}: the stream ended; saw {seen:?}"),
            Err(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_have_no_gap_and_no_repeat_across_handoff_and_failover(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(4)
        .in_memory()
        .configure(|_, config| {
            quick_failure_detection(config);
            // Rounds end only when the writers end them.
            config.game = GameConfig {
                round_length_ms: 3_600_000,
                ..GameConfig::default()
            };
        })
        .start()
        .await?;
    // Followed and written through n1, which stays; the faults hit the
    // others, which own most of the games.
    let watcher = cluster.engine("n1")?;
    let mut games = Vec::new();
    for i in 0..8 {
        let game = watcher
            .create_game(&format!("SB{i:02}"), players_of(i))
            .await?;
        games.push(game.id);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let mut followers = HashMap::new();
    let mut writers = HashMap::new();
    for (i, id) in games.iter().enumerate() {
        let (tx, rx) = tokio::sync::watch::channel(None);
        followers.insert(*id, (tokio::spawn(follow(watcher.clone(), *id, rx)), tx));
        writers.insert(
            *id,
            tokio::spawn(write_until(watcher.clone(), *id, i, stop.clone())),
        );
    }
    let busiest = |cluster: &TestCluster| {
        let mut hosts: HashMap<String, usize> = HashMap::new();
        for id in &games {
            if let Some(host) = cluster.where_is(*id).filter(|h| h != "n1") {
                *hosts.entry(host).or_default() += 1;
            }
        }
        hosts.into_iter().max_by_key(|(_, n)| *n).map(|(h, _)| h)
    };

    tokio::time::sleep(Duration::from_millis(700)).await;
    let leaving = busiest(&cluster).expect("a game owned elsewhere than n1");
    cluster.stop_node(&leaving).await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    cluster.settled(Duration::from_secs(20)).await?;
    let crashing = busiest(&cluster).expect("a game owned elsewhere than n1");
    cluster.kill_node(&crashing).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.settled(Duration::from_secs(20)).await?;

    stop.store(true, Ordering::SeqCst);
    for (id, writer) in writers {
        let acked = writer.await?;
        let last = watcher.get_game(id).await?.version;
        assert!(
            acked.iter().all(|v| *v <= last),
            "game {id}: {acked:?} past {last}"
        );
        let (follower, until) = followers.remove(&id).expect("followed");
        until.send(Some(last))?;
        let seen = tokio::time::timeout(Duration::from_secs(20), follower).await??;
        // The whole game first, then every version once, in order.
        assert_eq!(
            seen.first().map(|(_, kind)| *kind),
            Some("game"),
            "game {id}: {seen:?}"
        );
        let versions: Vec<u64> = seen.iter().map(|(v, _)| *v).collect();
        let expected: Vec<u64> = (versions[0]..=last).collect();
        assert_eq!(versions, expected, "game {id}");
        assert!(last > 10, "game {id} took only {last} writes");
    }
    // A client that saw some version resumes from it through another node.
    let id = games[0];
    let last = watcher.get_game(id).await?.version;
    let other = cluster
        .nodes()
        .into_iter()
        .find(|n| n != "n1")
        .expect("a node");
    let mut resumed = cluster.engine(&other)?.subscribe(id, Some(last - 3))?;
    for version in last - 2..=last {
        let update = resumed.next().await.expect("an update")?;
        assert!(matches!(update, GameUpdate::Changed { .. }));
        assert_eq!(update.version(), version);
    }
    cluster.shutdown().await;
    Ok(())
}

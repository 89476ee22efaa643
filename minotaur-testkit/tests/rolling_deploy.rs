//! The original's scenario: a session restarts with its state on a node
//! that joined after it was created, when its first node leaves gracefully.

use minotaur_core::{Command, UserId};
use minotaur_testkit::fixtures::players;
use minotaur_testkit::TestCluster;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploy_restarts_session_on_new_node() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().names(&["node1"]).start().await?;
    let n1 = cluster.engine("node1")?;
    let game = n1.create_game("ABCD", players()).await?;
    let ann: UserId = "ann".into();
    // The whole game after the move, to compare with what survives.
    let vector = game.legal_steps(&ann)[0];
    let moved = n1
        .apply_once_and_get(game.id, 1, Command::RegisterMove { user: ann, vector })
        .await?;
    assert_eq!(moved.actions.len(), 1);

    cluster.add_node("node2").await?;
    cluster.stop_node("node1").await?;

    let n2 = cluster.engine("node2")?;
    let by_id = n2.get_game(game.id).await?;
    let by_code = n2.get_game_by_join_code("ABCD").await?;
    for seen in [&by_id, &by_code] {
        assert_eq!(seen.id, game.id);
        assert_eq!(seen.round, moved.round);
        assert_eq!(seen.actions, moved.actions);
        assert_eq!(seen.version, moved.version);
        assert_eq!(seen.round_ends_at_ms, moved.round_ends_at_ms);
    }
    assert_eq!(cluster.where_is(game.id).as_deref(), Some("node2"));
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_variant_restores_from_replica() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().names(&["node1"]).start().await?;
    let n1 = cluster.engine("node1")?;
    let game = n1.create_game("ABCD", players()).await?;
    cluster.add_node("node2").await?;
    // The backup moves to node2 as soon as it joins; the next change is
    // copied there before it is acknowledged.
    let ann: UserId = "ann".into();
    // The whole game after the move, to compare with what survives.
    let vector = game.legal_steps(&ann)[0];
    let moved = n1
        .apply_once_and_get(game.id, 1, Command::RegisterMove { user: ann, vector })
        .await?;
    cluster.kill_node("node1").await?;

    let n2 = cluster.engine("node2")?;
    let seen = cluster
        .eventually(
            "the game restarted on node2",
            Duration::from_secs(10),
            || {
                let n2 = n2.clone();
                async move {
                    n2.get_game_by_join_code("ABCD")
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        )
        .await?;
    assert_eq!(seen.id, game.id);
    assert_eq!(seen.actions, moved.actions);
    assert_eq!(seen.version, moved.version);
    cluster.shutdown().await;
    Ok(())
}

/// A leave that takes longer than six call timeouts still hands every game
/// over, as long as games keep moving: none is left to failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_hand_over_moves_every_game() -> Result<(), Box<dyn std::error::Error>> {
    use minotaur_cluster::ClusterEvent;
    use minotaur_testkit::fixtures::players_of;

    // Six call timeouts are 1.8 s; the leave below takes longer.
    let cluster = TestCluster::builder()
        .names(&["a", "b", "c"])
        .in_memory()
        .configure(|_, c| c.call_timeout = Duration::from_millis(300))
        .start()
        .await?;
    let engine = cluster.engine("b")?;
    for i in 0..2700 {
        engine
            .create_game(&format!("LONG{i:04}"), players_of(i))
            .await?;
    }
    let a = cluster.node("a")?;
    let owned = a.registry().count_of(a.id());
    assert!(owned > 600, "a owns {owned} games");
    // Each move now takes some round trips of 80 ms, and the sessions go
    // 64 at a time.
    for (from, to) in [("a", "b"), ("a", "c"), ("b", "a"), ("c", "a")] {
        cluster.set_latency(from, to, Duration::from_millis(80))?;
    }
    let mut events = a.subscribe();
    let began = std::time::Instant::now();
    cluster.stop_node("a").await?;
    let took = began.elapsed();
    let mut handed = None;
    while let Ok(event) = events.try_recv() {
        if let ClusterEvent::HandedOver { games, .. } = event {
            handed = Some(games);
        }
    }
    assert_eq!(
        handed,
        Some(owned),
        "the leave took {took:?} and handed over {handed:?} of {owned} games"
    );
    let b = cluster.node("b")?;
    assert_eq!(b.registry().len(), 2700);
    cluster.shutdown().await;
    Ok(())
}

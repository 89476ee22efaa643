//! The durable store: a node restarted with its data dir serves its games
//! again, and a whole cluster killed at once and started again has every
//! acknowledged write.

use minotaur_core::{Command, Game, GameId, UserId};
use minotaur_testkit::fixtures::players_of;
use minotaur_testkit::TestCluster;
use std::collections::BTreeMap;
use std::time::Duration;

/// Creates `n` games through the cluster's nodes in turn, each with a few
/// acknowledged writes; returns each game as last acknowledged.
async fn games_with_writes(
    cluster: &TestCluster,
    n: usize,
) -> Result<BTreeMap<GameId, Game>, Box<dyn std::error::Error>> {
    let nodes = cluster.nodes();
    let mut acked = BTreeMap::new();
    for i in 0..n {
        let engine = cluster.engine(&nodes[i % nodes.len()])?;
        let game = engine
            .create_game(&format!("DU{i:02}"), players_of(i))
            .await?;
        let user: UserId = format!("a{i}").into();
        let vector = game.legal_steps(&user)[0];
        let moved = Command::RegisterMove { user, vector };
        engine.apply_once(game.id, 10 * i as u64, moved).await?;
        let last = engine
            .apply_once_and_get(game.id, 10 * i as u64 + 1, Command::EndRound)
            .await?;
        acked.insert(game.id, last);
    }
    Ok(acked)
}

/// What every node (and `extra`) knows of game `id`.
async fn explain(
    cluster: &TestCluster,
    extra: Option<&minotaur_cluster::Node>,
    id: GameId,
) -> String {
    let mut seen = String::new();
    for name in cluster.nodes() {
        if let Ok(node) = cluster.node(&name) {
            seen += &node.explain(id).await;
        }
    }
    if let Some(node) = extra {
        seen += &node.explain(id).await;
    }
    seen
}

/// Every game reads back through every node as acknowledged.
async fn all_there(
    cluster: &TestCluster,
    acked: &BTreeMap<GameId, Game>,
) -> Result<(), Box<dyn std::error::Error>> {
    for name in cluster.nodes() {
        let engine = cluster.engine(&name)?;
        for (id, before) in acked {
            let what = format!("game {id} through {name}");
            let game = cluster
                .eventually(&what, Duration::from_secs(15), || {
                    let engine = engine.clone();
                    let id = *id;
                    async move { engine.get_game(id).await.map_err(|e| e.to_string()) }
                })
                .await?;
            assert_eq!(&game, before, "{what}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_killed_at_once_restarts_with_every_acknowledged_write(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(3)
        .in_memory()
        .durable()
        .start()
        .await?;
    let acked = games_with_writes(&cluster, 30).await?;
    let names = cluster.nodes();
    cluster.kill_all().await;
    for name in &names {
        cluster.add_node(name).await?;
    }
    all_there(&cluster, &acked).await?;
    cluster.settled(Duration::from_secs(15)).await?;
    let sessions: usize = cluster.sessions_per_node().values().sum();
    assert_eq!(sessions, acked.len(), "one session per game");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_node_restarted_with_its_data_dir_serves_its_games_passive(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(1)
        .durable()
        .configure(|_, cfg| cfg.idle_after = Some(Duration::from_millis(200)))
        .start()
        .await?;
    let acked = games_with_writes(&cluster, 10).await?;
    cluster.kill_node("n1").await?;
    let node = cluster.add_node("n1").await?;
    let passive = node.passive().await;
    assert_eq!(
        passive.len(),
        acked.len(),
        "restored passive, started by no command yet"
    );
    all_there(&cluster, &acked).await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_that_left_a_node_are_not_brought_back_by_its_store(
) -> Result<(), Box<dyn std::error::Error>> {
    // n1's games move to n2 when n1 leaves; n1's store forgets them, so n1
    // restarted later claims nothing (and n2 keeps them).
    let cluster = TestCluster::builder()
        .nodes(2)
        .in_memory()
        .durable()
        .start()
        .await?;
    let acked = games_with_writes(&cluster, 12).await?;
    cluster.stop_node("n1").await?;
    let n1 = cluster.add_node("n1").await?;
    assert!(n1.hosted().is_empty(), "n1 brought back {:?}", n1.hosted());
    all_there(&cluster, &acked).await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_from_its_store_defers_to_the_members_that_took_its_games_over(
) -> Result<(), Box<dyn std::error::Error>> {
    // n1 crashes; n2 and n3 take its games over and take more writes. n1
    // comes back with its store, which holds those games at older
    // versions, and is written to the moment it starts, before it has
    // heard from anyone: it must neither take a write on the older state
    // nor win the games back. (TCP links: the new n1 is started by hand,
    // outside the cluster's bookkeeping, to reach it that early.)
    let cluster = TestCluster::builder().nodes(3).durable().start().await?;
    let acked = games_with_writes(&cluster, 18).await?;
    let n1 = cluster.node("n1")?.id().clone();
    let on_n1: Vec<GameId> = acked
        .keys()
        .filter(|id| {
            let reg = cluster
                .node("n2")
                .ok()
                .and_then(|n| n.registry().lookup(**id));
            reg.is_some_and(|r| r.owner == n1)
        })
        .copied()
        .collect();
    assert!(!on_n1.is_empty(), "some games live on n1");
    cluster.kill_node("n1").await?;
    let engine = cluster.engine("n2")?;
    for (i, id) in on_n1.iter().enumerate() {
        let write = engine.apply_once(*id, 5_000 + i as u64, Command::EndRound);
        if let Err(e) = write.await {
            panic!(
                "{id} through n2: {e}\n{}",
                explain(&cluster, None, *id).await
            );
        }
    }
    let back = minotaur_cluster::Node::start(cluster.config_for("n1")).await?;
    for (i, id) in on_n1.iter().enumerate() {
        let write = back
            .engine()
            .apply_once(*id, 6_000 + i as u64, Command::EndRound);
        if let Err(e) = write.await {
            panic!(
                "{id} through the new n1: {e}\n{}",
                explain(&cluster, Some(&back), *id).await
            );
        }
    }
    for id in &on_n1 {
        let want = acked[id].version + 2;
        for name in cluster.nodes() {
            let game = match cluster.engine(&name)?.get_game(*id).await {
                Ok(game) => game,
                Err(e) => panic!(
                    "{id} via {name}: {e}\n{}",
                    explain(&cluster, Some(&back), *id).await
                ),
            };
            assert_eq!(
                game.version, want,
                "game {id} via {name}: both writes, once each"
            );
        }
        assert_eq!(
            back.engine().get_game(*id).await?.version,
            want,
            "game {id} via n1"
        );
    }
    back.kill().await;
    cluster.shutdown().await;
    Ok(())
}

//! The seed scenarios a user relies on, over real links: games found from
//! every node, moved on a leave, failed over on a crash.

use minotaur_cluster::ClusterEvent;
use minotaur_core::{Command, UserId};
use minotaur_testkit::fixtures::players;
use minotaur_testkit::TestCluster;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn games_are_found_from_every_node() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let mut games = Vec::new();
    for (i, via) in ["n1", "n2", "n3", "n1", "n2", "n3"].iter().enumerate() {
        let engine = cluster.engine(via)?;
        games.push(engine.create_game(&format!("CODE{i}"), players()).await?);
    }
    for via in ["n1", "n2", "n3"] {
        let engine = cluster.engine(via)?;
        for (i, game) in games.iter().enumerate() {
            assert_eq!(engine.get_game(game.id).await?.id, game.id);
            let code = format!("CODE{i}");
            assert_eq!(engine.get_game_by_join_code(&code).await?.id, game.id);
        }
    }
    let ann: UserId = "ann".into();
    let game = &games[0];
    let moved = cluster
        .engine("n2")?
        .register_move(game.id, ann.clone(), game.legal_steps(&ann)[0])
        .await?;
    assert_eq!(
        cluster.engine("n3")?.get_game(game.id).await?.version,
        moved.version
    );
    assert!(matches!(
        cluster.engine("n1")?.create_game("CODE0", players()).await,
        Err(minotaur_core::EngineError::JoinCodeTaken(_))
    ));
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_survives_its_node_leaving() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().names(&["node1"]).start().await?;
    let n1 = cluster.engine("node1")?;
    let game = n1.create_game("ABCD", players()).await?;
    let ann: UserId = "ann".into();
    // The whole game after the move, to compare with what survives.
    let vector = game.legal_steps(&ann)[0];
    let moved = n1
        .apply_once_and_get(game.id, 1, Command::RegisterMove { user: ann, vector })
        .await?;
    cluster.add_node("node2").await?;
    cluster.stop_node("node1").await?;
    let n2 = cluster.engine("node2")?;
    let seen = n2.get_game_by_join_code("ABCD").await?;
    assert_eq!(seen.id, game.id);
    assert_eq!(seen.actions, moved.actions);
    assert_eq!(seen.version, moved.version);
    assert_eq!(cluster.where_is(game.id).as_deref(), Some("node2"));
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acknowledged_write() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).in_memory().start().await?;
    let mut events = Vec::new();
    for name in ["n1", "n2", "n3"] {
        events.push((name, cluster.node(name)?.subscribe()));
    }
    let n2 = cluster.engine("n2")?;
    let mut games = Vec::new();
    for i in 0..12 {
        games.push(n2.create_game(&format!("G{i:03}"), players()).await?);
    }
    let ann: UserId = "ann".into();
    let mut acked = Vec::new();
    // The whole games as acknowledged, to compare their actions below.
    for (op, game) in (0u64..).zip(&games) {
        let user = ann.clone();
        let vector = game.legal_steps(&ann)[0];
        acked.push(
            n2.apply_once_and_get(game.id, op, Command::RegisterMove { user, vector })
                .await?,
        );
    }
    let victim = cluster.where_is(games[0].id).expect("hosted");
    let survivor = if victim == "n1" { "n3" } else { "n1" };
    cluster.settled(Duration::from_secs(10)).await?;
    cluster.kill_node(&victim).await?;
    let engine = cluster.engine(survivor)?;
    for after in &acked {
        let seen = cluster
            .eventually("the game back", Duration::from_secs(10), || {
                let engine = engine.clone();
                async move { engine.get_game(after.id).await.map_err(|e| e.to_string()) }
            })
            .await?;
        assert_eq!(seen.version, after.version, "game {}", after.id);
        assert_eq!(seen.actions, after.actions);
    }
    // The victim's games come back on the survivors that held their
    // copies: at least one of them reports a failover.
    let mut failed_over = false;
    for (name, rx) in &mut events {
        while let Ok(event) = rx.try_recv() {
            failed_over |= *name != victim && matches!(event, ClusterEvent::FailedOver { .. });
        }
    }
    assert!(failed_over, "no survivor reported a failover");
    assert!(cluster.node(&victim).is_err() || cluster.node(&victim)?.hosted().is_empty());
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_while_a_member_leaves_never_fail() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).in_memory().start().await?;
    cluster.set_latency("n1", "n3", Duration::from_millis(20))?;
    let engine = cluster.engine("n1")?;
    let creates = async {
        let mut ids = Vec::new();
        for i in 0..30 {
            ids.push(
                engine
                    .create_game(&format!("L{i:03}"), players())
                    .await
                    .map(|g| g.id),
            );
        }
        ids
    };
    let (ids, stopped) = tokio::join!(creates, cluster.stop_node("n3"));
    stopped?;
    for id in ids {
        let id = id?;
        engine.get_game(id).await?;
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healed_partition_leaves_one_session_per_game() -> Result<(), Box<dyn std::error::Error>>
{
    let cluster = TestCluster::builder().nodes(3).in_memory().start().await?;
    let engine = cluster.engine("n1")?;
    let mut games = Vec::new();
    for i in 0..9 {
        games.push(engine.create_game(&format!("P{i:03}"), players()).await?);
    }
    cluster.partition(&["n1"], &["n2", "n3"])?;
    cluster
        .eventually("the split seen", Duration::from_secs(10), || {
            let cluster = &cluster;
            async move {
                if cluster.sees_down("n2", "n1").map_err(|e| e.to_string())? {
                    Ok(())
                } else {
                    Err("n2 still counts n1 up".to_string())
                }
            }
        })
        .await?;
    cluster.heal()?;
    cluster.await_full_membership().await?;
    for game in &games {
        cluster
            .eventually("one session", Duration::from_secs(10), || {
                let cluster = &cluster;
                async move {
                    let at = cluster.where_is_all(game.id);
                    if at.len() == 1 {
                        Ok(())
                    } else {
                        Err(format!("hosted on {at:?}"))
                    }
                }
            })
            .await?;
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_left_is_counted_down_at_once() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let engine = cluster.engine("n1")?;
    engine.create_game("LEFT", players()).await?;
    cluster.stop_node("n1").await?;
    for name in ["n2", "n3"] {
        let members = cluster.node(name)?.members();
        assert!(
            members
                .iter()
                .all(|(m, s)| m.name != "n1" || *s == minotaur_cluster::MemberStatus::Down),
            "{name}: {members:?}"
        );
    }
    cluster.shutdown().await;
    Ok(())
}

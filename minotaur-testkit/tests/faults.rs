//! Fault injection: split brain and its healing, silent stalls, wrong
//! cookies, and what each fault primitive makes the nodes see.

use minotaur_cluster::{Node, NodeConfig, SplitPolicy};
use minotaur_core::{EngineError, GameId};
use minotaur_testkit::fixtures::{players, quick_failure_detection};
use minotaur_testkit::TestCluster;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_then_heal_restores_membership() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(3)
        .in_memory()
        .configure(|_, cfg| quick_failure_detection(cfg))
        .start()
        .await?;
    cluster.partition(&["n1"], &["n2", "n3"])?;
    cluster
        .eventually("each side to see the other down", Duration::from_secs(5), || {
            let seen = (
                cluster.sees_down("n1", "n2").unwrap_or(false),
                cluster.sees_down("n2", "n1").unwrap_or(false),
                cluster.sees_down("n3", "n1").unwrap_or(false),
                cluster.sees_down("n2", "n3").unwrap_or(true),
            );
            async move {
                match seen {
                    (true, true, true, false) => Ok(()),
                    other => Err(format!("(n1 sees n2 down, n2 sees n1 down, n3 sees n1 down, n2 sees n3 down) = {other:?}")),
                }
            }
        })
        .await?;
    cluster.heal()?;
    cluster.await_full_membership().await?;
    cluster.shutdown().await;
    Ok(())
}

/// Without fencing (`SplitPolicy::Available`) both sides of a split serve
/// a game; when it heals, the copy with the higher version is kept
/// everywhere. (With fencing, the default, the minority refuses: see
/// `fencing.rs`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_brain_conflict_keeps_the_higher_version_everywhere(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(3)
        .in_memory()
        .configure(|_, cfg| {
            quick_failure_detection(cfg);
            cfg.split = SplitPolicy::Available;
        })
        .start()
        .await?;
    let game = cluster.engine("n1")?.create_game("SPLT", players()).await?;
    let owner = cluster.where_is(game.id).expect("hosted");
    let others: Vec<String> = cluster
        .nodes()
        .into_iter()
        .filter(|n| n != &owner)
        .collect();
    let (a, b) = (others[0].clone(), others[1].clone());
    cluster.partition(&[&owner], &[&a, &b])?;

    // The majority side restarts the game from its replica...
    let majority = cluster.engine(&a)?;
    cluster
        .eventually(
            "the game restarted on the majority side",
            Duration::from_secs(5),
            || {
                let hosts = cluster.where_is_all(game.id);
                let owner = owner.clone();
                async move {
                    if hosts.iter().any(|h| h != &owner) {
                        Ok(())
                    } else {
                        Err(format!("hosted on {hosts:?}"))
                    }
                }
            },
        )
        .await?;
    // ...and both copies take commands: the majority's copy more of them.
    let minority = cluster.engine(&owner)?;
    minority.end_round(game.id).await?;
    for _ in 0..3 {
        majority.end_round(game.id).await?;
    }
    let winner = majority.get_game(game.id).await?;
    cluster.heal()?;
    cluster.await_full_membership().await?;

    for name in cluster.nodes() {
        let engine = cluster.engine(&name)?;
        let seen = cluster
            .eventually(
                &format!("{name} to see the winning copy"),
                Duration::from_secs(5),
                || {
                    let engine = engine.clone();
                    let hosts = cluster.where_is_all(game.id);
                    async move {
                        let g = engine.get_game(game.id).await.map_err(|e| e.to_string())?;
                        if hosts.len() == 1 && g.version == winner.version {
                            Ok(g)
                        } else {
                            Err(format!("hosts {hosts:?}, version {}", g.version))
                        }
                    }
                },
            )
            .await?;
        assert_eq!(seen.round, winner.round);
    }
    cluster.shutdown().await;
    Ok(())
}

/// After a split, one side's copy wins the conflict, then its node crashes:
/// the game comes back from a backup copy of the winner. The other member
/// failed the game over during the split and dropped the winner's copy;
/// the winner must copy the game to it again although it is once more the
/// game's preferred backup. (Two nodes, so that the backup that comes back
/// is the old one whatever the order links reconnect in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_winner_crashing_later_loses_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(2)
        .in_memory()
        .configure(|_, cfg| quick_failure_detection(cfg))
        .start()
        .await?;
    let game = cluster.engine("n1")?.create_game("WINR", players()).await?;
    let owner = cluster.where_is(game.id).expect("hosted");
    let other = if owner == "n1" { "n2" } else { "n1" }.to_string();
    cluster.partition(&[&owner], &[&other])?;
    cluster
        .eventually(
            "the game restarted on the other side",
            Duration::from_secs(5),
            || {
                let hosts = cluster.where_is_all(game.id);
                let other = other.clone();
                async move {
                    if hosts.contains(&other) {
                        Ok(())
                    } else {
                        Err(format!("hosted on {hosts:?}"))
                    }
                }
            },
        )
        .await?;
    // The owner's copy takes more writes, so it wins once healed.
    let engine = cluster.engine(&owner)?;
    for _ in 0..3 {
        engine.end_round(game.id).await?;
    }
    let winner = engine.get_game(game.id).await?;
    cluster.heal()?;
    cluster.settled(Duration::from_secs(10)).await?;
    assert_eq!(cluster.where_is_all(game.id), vec![owner.clone()]);

    cluster.kill_node(&owner).await?;
    let survivor = cluster.engine(&other)?;
    let back = cluster
        .eventually(
            "the game restarted from the winner's copy",
            Duration::from_secs(5),
            || {
                let survivor = survivor.clone();
                async move { survivor.get_game(game.id).await.map_err(|e| e.to_string()) }
            },
        )
        .await?;
    assert_eq!(back.version, winner.version);
    assert_eq!(back.round, winner.round);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_stall_is_detected_and_sessions_rehosted() -> Result<(), Box<dyn std::error::Error>>
{
    let cluster = TestCluster::builder()
        .nodes(3)
        .in_memory()
        .configure(|_, cfg| quick_failure_detection(cfg))
        .start()
        .await?;
    let engine = cluster.engine("n2")?;
    let mut ids: Vec<GameId> = Vec::new();
    for i in 0..30 {
        ids.push(engine.create_game(&format!("S{i:03}"), players()).await?.id);
    }
    let on_n1: Vec<GameId> = ids
        .iter()
        .copied()
        .filter(|id| cluster.where_is(*id).as_deref() == Some("n1"))
        .collect();
    assert!(!on_n1.is_empty(), "some game on n1");
    let started = std::time::Instant::now();
    cluster.stall("n1", "n2")?;
    cluster.stall("n1", "n3")?;
    cluster
        .eventually("n2 and n3 to see n1 down", Duration::from_secs(5), || {
            let seen = (cluster.sees_down("n2", "n1"), cluster.sees_down("n3", "n1"));
            async move {
                match seen {
                    (Ok(true), Ok(true)) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await?;
    let detected = started.elapsed();
    assert!(detected < Duration::from_secs(3), "took {detected:?}");
    let n3 = cluster.engine("n3")?;
    for id in on_n1 {
        cluster
            .eventually(
                &format!("game {id} rehosted"),
                Duration::from_secs(5),
                || {
                    let n3 = n3.clone();
                    let hosts = cluster.where_is_all(id);
                    async move {
                        n3.get_game(id).await.map_err(|e| e.to_string())?;
                        if hosts.iter().any(|h| h != "n1") {
                            Ok(())
                        } else {
                            Err(format!("hosts {hosts:?}"))
                        }
                    }
                },
            )
            .await?;
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_cannot_join_or_reach_sessions() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(2).start().await?;
    let game = cluster.engine("n1")?.create_game("COOK", players()).await?;
    let mut cfg = NodeConfig::new("intruder", "not-the-cluster-cookie");
    cfg.seeds = vec![cluster.node("n1")?.addr().to_string()];
    cfg.call_timeout = Duration::from_millis(500);
    let intruder = Node::start(cfg).await?;
    // Give it every chance to join: several reconnect rounds.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(intruder.live_member_names(), vec!["intruder".to_string()]);
    assert_eq!(
        cluster.members("n1")?,
        vec!["n1".to_string(), "n2".to_string()]
    );
    match intruder.engine().get_game(game.id).await {
        Err(EngineError::GameNotAlive(_)) => {}
        other => panic!("intruder reached a session: {other:?}"),
    }
    intruder.kill().await;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_way_cut_is_seen_as_down_by_the_deaf_side() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(2)
        .in_memory()
        .configure(|_, cfg| quick_failure_detection(cfg))
        .start()
        .await?;
    // n2 no longer hears n1; n1 still hears n2 until the link is closed.
    cluster.cut_one_way("n1", "n2")?;
    cluster
        .eventually("n2 to see n1 down", Duration::from_secs(5), || {
            let down = cluster.sees_down("n2", "n1");
            async move {
                match down {
                    Ok(true) => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await?;
    cluster.heal()?;
    cluster.await_full_membership().await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_latency_slows_remote_commands() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(2).in_memory().start().await?;
    let engine = cluster.engine("n1")?;
    // Find a game hosted on n2, so commands from n1 cross the link.
    let mut remote = None;
    for i in 0..20 {
        let g = engine.create_game(&format!("L{i:03}"), players()).await?;
        if cluster.where_is(g.id).as_deref() == Some("n2") {
            remote = Some(g.id);
            break;
        }
    }
    let id = remote.expect("some game on n2");
    cluster.set_latency("n1", "n2", Duration::from_millis(150))?;
    let t = std::time::Instant::now();
    engine.get_game(id).await?;
    assert!(
        t.elapsed() >= Duration::from_millis(150),
        "{:?}",
        t.elapsed()
    );
    cluster.heal()?;
    cluster.shutdown().await;
    Ok(())
}

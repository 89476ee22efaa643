//! Crash failover, rolling restarts under load, redistribution on join.

use minotaur_cluster::Redistribution;
use minotaur_core::{Command, EngineError, Game, GameId, UserId};
use minotaur_testkit::fixtures::players_of;
use minotaur_testkit::TestCluster;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_failover_keeps_every_acknowledged_move() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let engine = cluster.engine("n1")?;
    let mut acked: HashMap<GameId, Game> = HashMap::new();
    for i in 0..200 {
        let game = engine
            .create_game(&format!("G{i:04}"), players_of(i))
            .await?;
        let user: UserId = format!("a{i}").into();
        let dir = game
            .legal_steps(&user)
            .first()
            .copied()
            .expect("a free neighbour");
        // The whole game as acknowledged, to compare its actions below.
        let op = i as u64;
        let vector = dir;
        let after = engine
            .apply_once_and_get(game.id, op, Command::RegisterMove { user, vector })
            .await?;
        acked.insert(game.id, after);
    }
    let per_node = cluster.sessions_per_node();
    let (victim, hosted) = per_node
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(name, n)| (name.clone(), *n))
        .expect("nodes");
    assert!(hosted > 0, "{per_node:?}");
    cluster.kill_node(&victim).await?;

    let survivors = cluster.nodes();
    for name in &survivors {
        let engine = cluster.engine(name)?;
        for (id, before) in &acked {
            let game = cluster
                .eventually(
                    &format!("game {id} from {name}"),
                    Duration::from_secs(10),
                    || {
                        let engine = engine.clone();
                        let id = *id;
                        async move { engine.get_game(id).await.map_err(|e| e.to_string()) }
                    },
                )
                .await?;
            assert_eq!(game.actions, before.actions, "game {id}");
            assert_eq!(game.version, before.version, "game {id}");
        }
    }
    assert_eq!(
        cluster.sessions_per_node().values().sum::<usize>(),
        200,
        "exactly one session per game"
    );
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_restarted_from_a_copy_built_of_changes_is_the_game_acknowledged(
) -> Result<(), Box<dyn std::error::Error>> {
    // Writes reach the backup as changes on top of a whole copy, and a
    // whole copy again every so often: many writes per game take both
    // paths before the owner crashes.
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let engine = cluster.engine("n1")?;
    let mut acked = Vec::new();
    for i in 0..4 {
        let game = engine
            .create_game(&format!("CH{i:02}"), players_of(i))
            .await?;
        let user: UserId = format!("a{i}").into();
        for w in 0..75u64 {
            if w % 3 == 0 {
                let now = engine.get_game(game.id).await?;
                if let Some(&vector) = now.legal_steps(&user).first() {
                    let command = Command::RegisterMove {
                        user: user.clone(),
                        vector,
                    };
                    engine
                        .apply_once(game.id, 1000 * i as u64 + w, command)
                        .await?;
                    continue;
                }
            }
            engine.end_round(game.id).await?;
        }
        acked.push(engine.get_game(game.id).await?);
    }
    let owner = cluster.where_is(acked[0].id).expect("an owner");
    cluster.kill_node(&owner).await?;
    let survivor = cluster.nodes().into_iter().next().expect("a survivor");
    let engine = cluster.engine(&survivor)?;
    for before in &acked {
        let id = before.id;
        let game = cluster
            .eventually(&format!("game {id}"), Duration::from_secs(10), || {
                let engine = engine.clone();
                async move { engine.get_game(id).await.map_err(|e| e.to_string()) }
            })
            .await?;
        assert_eq!(&game, before, "game {id} as acknowledged");
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = Arc::new(TestCluster::builder().nodes(3).start().await?);
    let engine = cluster.engine("n1")?;
    let mut games = Vec::new();
    for i in 0..100 {
        games.push(
            engine
                .create_game(&format!("R{i:04}"), players_of(i))
                .await?,
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    // One client per game sends end-of-round commands through whichever
    // node is up, counting acknowledgements and errors.
    let client = {
        let cluster = cluster.clone();
        let stop = stop.clone();
        let ids: Vec<GameId> = games.iter().map(|g| g.id).collect();
        tokio::spawn(async move {
            let mut acked: HashMap<GameId, u64> = HashMap::new();
            let mut errors: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                for id in &ids {
                    let Some(name) = cluster.nodes().into_iter().next() else {
                        continue;
                    };
                    let Ok(engine) = cluster.engine(&name) else {
                        continue;
                    };
                    match engine.end_round(*id).await {
                        Ok(game) => {
                            acked.insert(*id, game.version);
                        }
                        Err(EngineError::Rule(_)) => {}
                        Err(e) => errors.push(format!("{id}: {e}")),
                    }
                }
            }
            (acked, errors)
        })
    };
    cluster.rolling_restart().await?;
    stop.store(true, Ordering::SeqCst);
    let (acked, errors) = client.await?;
    assert!(errors.is_empty(), "client saw errors: {errors:?}");
    let engine = cluster.engine("n2")?;
    for (id, version) in acked {
        let game = engine.get_game(id).await?;
        assert!(
            game.version >= version,
            "game {id} lost acknowledged versions"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_redistribution_moves_sessions_with_state_and_passive_moves_none(
) -> Result<(), Box<dyn std::error::Error>> {
    for mode in [Redistribution::Passive, Redistribution::Active] {
        let cluster = TestCluster::builder()
            .nodes(2)
            .configure(move |_, cfg| cfg.redistribution = mode)
            .start()
            .await?;
        let engine = cluster.engine("n1")?;
        let mut games = Vec::new();
        for i in 0..60 {
            let g = engine
                .create_game(&format!("M{i:04}"), players_of(i))
                .await?;
            games.push(engine.end_round(g.id).await?);
        }
        cluster.add_node("n3").await?;
        let moved = if mode == Redistribution::Active {
            cluster
                .eventually("sessions moved to n3", Duration::from_secs(10), || {
                    let n = cluster.sessions_per_node().get("n3").copied().unwrap_or(0);
                    async move {
                        if n > 0 {
                            Ok(n)
                        } else {
                            Err("n3 hosts nothing".into())
                        }
                    }
                })
                .await?
        } else {
            tokio::task::yield_now().await;
            cluster.sessions_per_node().get("n3").copied().unwrap_or(0)
        };
        if mode == Redistribution::Passive {
            assert_eq!(moved, 0);
        }
        let n3 = cluster.engine("n3")?;
        for g in &games {
            let now = n3.get_game(g.id).await?;
            assert_eq!((now.round, now.version), (g.round, g.version));
        }
        assert_eq!(cluster.sessions_per_node().values().sum::<usize>(), 60);
        cluster.shutdown().await;
    }
    Ok(())
}

/// Writes racing a crash are retried by the engine under their write id:
/// callers see no error, and each acknowledged write is applied exactly once
/// (a round ends once per acknowledged `end_round`, never twice, never lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_a_crash_see_no_error_and_apply_exactly_once(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(3)
        .configure(|_, cfg| {
            cfg.game.round_length_ms = 3_600_000; // only end_round ends rounds
            cfg.heartbeat_interval = Duration::from_millis(50);
            cfg.failure_timeout = Duration::from_millis(400);
        })
        .start()
        .await?;
    let creator = cluster.engine("n1")?;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(
            creator
                .create_game(&format!("X{i:03}"), players_of(i))
                .await?
                .id,
        );
    }
    let per_node = cluster.sessions_per_node();
    let victim = per_node
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(name, _)| name.clone())
        .ok_or("no nodes")?;
    let survivors: Vec<String> = cluster
        .nodes()
        .into_iter()
        .filter(|n| *n != victim)
        .collect();

    // Twenty clients per survivor, each ending rounds on three games in
    // turn: many writes are in flight to the victim when it dies.
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for name in &survivors {
        for k in 0..20 {
            let engine = cluster.engine(name)?;
            let mine: Vec<GameId> = ids.iter().copied().skip(k).step_by(20).collect();
            let stop = stop.clone();
            clients.push(tokio::spawn(async move {
                // A client stops at its first error: the test fails on it.
                let mut acked: HashMap<GameId, u32> = HashMap::new();
                while !stop.load(Ordering::SeqCst) {
                    for id in &mine {
                        match engine.end_round(*id).await {
                            Ok(_) => *acked.entry(*id).or_default() += 1,
                            Err(e) => return (acked, Some(e)),
                        }
                    }
                }
                (acked, None)
            }));
        }
    }
    // Let the clients get going, crash the node with most games, and keep
    // writing until every game answers from a survivor.
    let survivor = cluster.engine(&survivors[0])?;
    cluster
        .eventually("clients under way", Duration::from_secs(5), || {
            let survivor = survivor.clone();
            let id = ids[0];
            async move {
                match survivor.get_game(id).await {
                    Ok(g) if g.round > 3 => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        })
        .await?;
    cluster.kill_node(&victim).await?;
    cluster
        .eventually(
            "every game back on a survivor",
            Duration::from_secs(10),
            || {
                let hosted = cluster.sessions_per_node().values().sum::<usize>();
                async move {
                    if hosted == 60 {
                        Ok(())
                    } else {
                        Err(format!("{hosted} of 60 sessions hosted"))
                    }
                }
            },
        )
        .await?;
    stop.store(true, Ordering::SeqCst);

    let mut acked: HashMap<GameId, u32> = HashMap::new();
    for client in clients {
        let (theirs, error) = client.await?;
        assert!(error.is_none(), "a client saw an error: {error:?}");
        for (id, n) in theirs {
            *acked.entry(id).or_default() += n;
        }
    }
    for id in &ids {
        let game = survivor.get_game(*id).await?;
        let ended = acked.get(id).copied().unwrap_or(0);
        assert_eq!(
            game.round,
            1 + ended,
            "game {id}: {ended} acknowledged round ends, now in round {}",
            game.round
        );
    }
    cluster.shutdown().await;
    Ok(())
}

fn refused_up_front(e: &EngineError) -> bool {
    matches!(e, EngineError::Leaving(_))
}

/// Callers of a leaving node's own engine: calls it accepted finish (even
/// for games it is handing over), later ones are refused before anything is
/// sent, and a killed node's engine refuses at once. Nothing acknowledged is
/// lost or applied twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_through_a_leaving_node_finish_or_are_refused_up_front(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder()
        .nodes(3)
        .configure(|_, cfg| cfg.game.round_length_ms = 3_600_000)
        .start()
        .await?;
    let creator = cluster.engine("n2")?;
    let mut ids = Vec::new();
    for i in 0..30 {
        ids.push(
            creator
                .create_game(&format!("L{i:03}"), players_of(i))
                .await?
                .id,
        );
    }
    let leaving = cluster.engine("n1")?;
    let mut clients = Vec::new();
    for k in 0..10 {
        let engine = leaving.clone();
        let mine: Vec<GameId> = ids.iter().copied().skip(k).step_by(10).collect();
        clients.push(tokio::spawn(async move {
            let mut acked: HashMap<GameId, u32> = HashMap::new();
            loop {
                for id in &mine {
                    match engine.end_round(*id).await {
                        Ok(_) => *acked.entry(*id).or_default() += 1,
                        Err(e) if refused_up_front(&e) => return (acked, None),
                        Err(e) => return (acked, Some(e)),
                    }
                }
            }
        }));
    }
    cluster.stop_node("n1").await?;
    let mut acked: HashMap<GameId, u32> = HashMap::new();
    for client in clients {
        let (theirs, error) = tokio::time::timeout(Duration::from_secs(10), client).await??;
        assert!(error.is_none(), "a client saw an error: {error:?}");
        for (id, n) in theirs {
            *acked.entry(id).or_default() += n;
        }
    }
    let reader = cluster.engine("n3")?;
    for id in &ids {
        let game = reader.get_game(*id).await?;
        let ended = acked.get(id).copied().unwrap_or(0);
        assert_eq!(game.round, 1 + ended, "game {id}");
    }

    let doomed = cluster.engine("n2")?;
    cluster.kill_node("n2").await?;
    match doomed.get_game(ids[0]).await {
        Err(e) if refused_up_front(&e) => {}
        other => panic!("a killed node's engine answered {other:?}"),
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_of_names_the_member_holding_the_copy_once_settled(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).in_memory().start().await?;
    let engine = cluster.engine("n1")?;
    let mut games = Vec::new();
    for i in 0..30 {
        games.push(
            engine
                .create_game(&format!("BK{i:02}"), players_of(i))
                .await?
                .id,
        );
    }
    cluster.settled(Duration::from_secs(20)).await?;
    let mut holders: HashMap<(GameId, String), String> = HashMap::new();
    for name in cluster.nodes() {
        for (id, owner) in cluster.node(&name)?.restartable_copies().await {
            holders.insert((id, owner.to_string()), name.clone());
        }
    }
    for viewer in cluster.nodes() {
        let node = cluster.node(&viewer)?;
        for id in &games {
            let owner = node
                .registry()
                .lookup(*id)
                .expect("registered")
                .owner
                .clone();
            let backup = node.backup_of(*id, &owner).expect("a backup");
            assert_ne!(backup, owner, "game {id}");
            assert_eq!(
                holders.get(&(*id, owner.to_string())),
                Some(&backup.name),
                "game {id} as {viewer} sees it"
            );
        }
    }
    cluster.shutdown().await;
    Ok(())
}

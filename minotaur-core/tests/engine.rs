//! `GameEngine` on a standalone node: every operation and every error.

use minotaur_core::{
    clock, Ack, Action, Command, Directory, EngineError, Game, GameConfig, GameEngine, GameError,
    GameId, GameStatus, Hex, JoinCode, LocalDirectory, MoveError, UserId,
};
use std::sync::Arc;
use uuid::Uuid;

fn u(name: &str) -> UserId {
    UserId::from(name)
}

fn code(s: &str) -> JoinCode {
    s.parse().unwrap()
}

/// Hour-long rounds, so no round ends by itself during a test.
fn config() -> GameConfig {
    GameConfig {
        round_length_ms: 3_600_000,
        ..GameConfig::default()
    }
}

async fn engine() -> GameEngine {
    GameEngine::standalone(config()).await.unwrap()
}

fn rule(e: GameError) -> EngineError {
    EngineError::Rule(e)
}

/// A step from `at` that stays on walkable ground.
fn walkable_step(game: &Game, at: Hex) -> Hex {
    Hex::DIRECTIONS
        .into_iter()
        .find(|d| game.world.walkable(at + *d))
        .expect("some neighbour is walkable")
}

/// A snapshot with Ann and Bob side by side at the centre and a wall
/// next to Ann.
fn snapshot(join_code: &str) -> Game {
    let mut game = Game::new(
        GameId::random(),
        code(join_code),
        vec![u("ann"), u("bob")],
        config(),
        clock::now_ms(),
    )
    .unwrap();
    game.world.walls = [Hex::new(-1, 0)].into_iter().collect();
    game.players[0].position = Hex::ORIGIN;
    game.players[1].position = Hex::new(1, 0);
    game
}

/// Lets the host catch up with sessions that stopped (it learns of them
/// through supervision events) without sleeping.
async fn until_join_code_is_free(engine: &GameEngine, join_code: &str) {
    for _ in 0..10_000 {
        match engine.get_game_by_join_code(join_code).await {
            Err(EngineError::UnknownJoinCode(_)) => return,
            Ok(_) | Err(EngineError::GameNotAlive(_)) => tokio::task::yield_now().await,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    panic!("join code {join_code} still registered");
}

#[tokio::test]
async fn create_and_read_a_game() {
    let engine = engine().await;
    assert_eq!(engine.config(), &config());
    let game = engine
        .create_game("abcd", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    assert_eq!(game.join_code, code("ABCD"));
    assert_eq!(game.join_code.as_str(), "ABCD");
    assert_eq!((game.round, game.version), (1, 0));
    assert_eq!(game.config, config());
    assert!(game.is_active());
    let now = clock::now_ms();
    assert!(game.round_ends_at_ms > now && game.round_ends_at_ms <= now + 3_600_000);

    assert_eq!(engine.get_game(game.id).await.unwrap(), game);
    for spelling in ["ABCD", "abcd", "AbCd"] {
        assert_eq!(
            engine.get_game_by_join_code(spelling).await.unwrap(),
            game,
            "{spelling}"
        );
    }
    // A clone of the engine is the same engine.
    assert_eq!(engine.clone().get_game(game.id).await.unwrap(), game);
}

#[tokio::test]
async fn unknown_games_and_join_codes() {
    let engine = engine().await;
    let id = GameId::random();
    assert_eq!(
        engine.get_game(id).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.end_round(id).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.register_move(id, u("ann"), Hex::new(1, 0)).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.register_attack(id, u("ann"), u("bob")).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.get_player_status(id, u("ann")).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.get_game_by_join_code("wxyz").await,
        Err(EngineError::UnknownJoinCode(code("WXYZ")))
    );
    assert_eq!(
        engine.get_game_by_join_code("no!").await,
        Err(rule(GameError::InvalidJoinCode("no!".into())))
    );
    assert_eq!(
        engine.get_active_games_for_user(&u("ann")).await,
        Ok(vec![])
    );
}

#[tokio::test]
async fn creation_errors() {
    let engine = engine().await;
    let pair = || vec![u("ann"), u("bob")];
    for bad in ["abc", "abcdefghi", "ab d", "ab-d", ""] {
        assert_eq!(
            engine.create_game(bad, pair()).await,
            Err(rule(GameError::InvalidJoinCode(bad.into()))),
            "{bad:?}"
        );
    }
    let seven = (0..7).map(|i| u(&format!("p{i}"))).collect();
    assert_eq!(
        engine.create_game("SEVN", seven).await,
        Err(rule(GameError::PlayerCount {
            min: 2,
            max: 6,
            got: 7
        }))
    );
    assert_eq!(
        engine.create_game("ONE1", vec![u("ann")]).await,
        Err(rule(GameError::PlayerCount {
            min: 2,
            max: 6,
            got: 1
        }))
    );
    assert_eq!(
        engine
            .create_game("DUPE", vec![u("ann"), u("bob"), u("ann")])
            .await,
        Err(rule(GameError::DuplicateUser(u("ann"))))
    );
    assert_eq!(
        engine.create_game("EMPT", vec![u("ann"), u("")]).await,
        Err(rule(GameError::InvalidUser(String::new(), 64)))
    );

    let first = engine.create_game("TAKEN", pair()).await.unwrap();
    assert_eq!(
        engine.create_game("taken", vec![u("cid"), u("dan")]).await,
        Err(EngineError::JoinCodeTaken(code("TAKEN")))
    );
    // Nothing was started by the failed creations.
    assert_eq!(
        engine.get_active_games_for_user(&u("ann")).await.unwrap(),
        vec![first.clone()]
    );
    assert!(engine
        .get_active_games_for_user(&u("cid"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(engine.get_game_by_join_code("TAKEN").await.unwrap(), first);
}

#[tokio::test]
async fn moves_and_their_errors() {
    let engine = engine().await;
    let game = engine
        .create_game("MOVE", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    let id = game.id;
    let ann_at = game.player(&u("ann")).unwrap().position;

    let outward = Hex::DIRECTIONS
        .into_iter()
        .find(|d| (ann_at + *d).length() > 4)
        .unwrap();
    assert_eq!(
        engine.register_move(id, u("ann"), outward).await,
        Err(rule(GameError::InvalidMove(MoveError::OffGrid(
            ann_at + outward
        ))))
    );
    assert_eq!(
        engine.register_move(id, u("ann"), Hex::ORIGIN).await,
        Err(rule(GameError::InvalidMove(MoveError::ZeroVector)))
    );
    assert_eq!(
        engine.register_move(id, u("ann"), Hex::new(3, 0)).await,
        Err(rule(GameError::InvalidMove(MoveError::TooFar {
            distance: 3,
            max: 2
        })))
    );
    assert_eq!(
        engine.register_move(id, u("zed"), Hex::new(1, 0)).await,
        Err(rule(GameError::PlayerNotFound(u("zed"))))
    );
    assert_eq!(engine.get_game(id).await.unwrap(), game, "all refused");

    let step = walkable_step(&game, ann_at);
    let ack = engine.register_move(id, u("ann"), step).await.unwrap();
    assert_eq!(ack.version, 1);
    let after = engine.get_game(id).await.unwrap();
    assert_eq!(ack, Ack::of(&after));
    assert_eq!(after.player(&u("ann")).unwrap().action_points, 1);

    let status = engine.get_player_status(id, u("ann")).await.unwrap();
    assert_eq!(status.registered, vec![Action::Move { vector: step }]);
    assert_eq!(status.position, ann_at, "moves happen at the round end");

    let back = Hex::new(-step.q, -step.r);
    engine.register_move(id, u("ann"), back).await.unwrap();
    assert_eq!(
        engine.register_move(id, u("ann"), step).await,
        Err(rule(GameError::NotEnoughActionPoints {
            needed: 1,
            available: 0
        }))
    );
    assert_eq!(engine.get_game(id).await.unwrap().version, 2);
}

#[tokio::test]
async fn a_move_into_a_wall_is_refused() {
    let engine = engine().await;
    let game = engine.continue_game(snapshot("WALL")).await.unwrap();
    assert_eq!(
        engine
            .register_move(game.id, u("ann"), Hex::new(-1, 0))
            .await,
        Err(rule(GameError::InvalidMove(MoveError::Blocked(Hex::new(
            -1, 0
        )))))
    );
}

#[tokio::test]
async fn attacks_and_their_errors() {
    let engine = engine().await;
    let game = engine
        .create_game("HITS", vec![u("ann"), u("bob"), u("cid")])
        .await
        .unwrap();
    let id = game.id;
    assert_eq!(
        engine.register_attack(id, u("ann"), u("ann")).await,
        Err(rule(GameError::SelfAttack))
    );
    assert_eq!(
        engine.register_attack(id, u("ann"), u("zed")).await,
        Err(rule(GameError::TargetNotFound(u("zed"))))
    );
    assert_eq!(
        engine.register_attack(id, u("zed"), u("ann")).await,
        Err(rule(GameError::PlayerNotFound(u("zed"))))
    );
    let ack = engine
        .register_attack(id, u("ann"), u("bob"))
        .await
        .unwrap();
    assert_eq!(ack.version, 1);
    let after = engine.get_game(id).await.unwrap();
    assert_eq!(ack, Ack::of(&after));
    assert_eq!(after.player(&u("ann")).unwrap().action_points, 0);
    assert_eq!(
        engine.register_attack(id, u("ann"), u("cid")).await,
        Err(rule(GameError::NotEnoughActionPoints {
            needed: 2,
            available: 0
        }))
    );
    let status = engine.get_player_status(id, u("ann")).await.unwrap();
    assert_eq!(status.registered, vec![Action::Attack { target: u("bob") }]);
}

#[tokio::test]
async fn ending_a_round_and_player_status() {
    let engine = engine().await;
    let game = engine.continue_game(snapshot("ENDS")).await.unwrap();
    let id = game.id;
    engine
        .register_attack(id, u("ann"), u("bob"))
        .await
        .unwrap();
    engine
        .register_move(id, u("bob"), Hex::new(0, -1))
        .await
        .unwrap();
    let ack = engine.end_round(id).await.unwrap();
    assert_eq!((ack.round, ack.version), (2, 3));
    assert_eq!(ack.status, GameStatus::Active);
    assert!(ack.round_ends_at_ms >= game.round_ends_at_ms);
    let after = engine.get_game(id).await.unwrap();
    assert_eq!(Ack::of(&after), ack);
    assert!(after.actions.is_empty());

    let bob = engine.get_player_status(id, u("bob")).await.unwrap();
    assert_eq!(bob.user, u("bob"));
    assert_eq!(bob.round, 2);
    assert_eq!(bob.position, Hex::new(1, -1));
    assert_eq!(bob.health, 6, "still next to ann after moving");
    assert_eq!(bob.action_points, 3);
    assert!(bob.alive);
    assert!(bob.registered.is_empty());
    let ann = engine.get_player_status(id, u("ann")).await.unwrap();
    assert_eq!((ann.health, ann.action_points), (10, 2));
    assert_eq!(
        engine.get_player_status(id, u("zed")).await,
        Err(rule(GameError::PlayerNotFound(u("zed"))))
    );
    assert_eq!(engine.get_game(id).await.unwrap(), after);
}

#[tokio::test]
async fn active_games_of_a_user() {
    let engine = engine().await;
    let one = engine
        .create_game("ONE1", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    let two = engine
        .create_game("TWO2", vec![u("cid"), u("ann")])
        .await
        .unwrap();
    let three = engine
        .create_game("THR3", vec![u("cid"), u("dan")])
        .await
        .unwrap();
    let ids = |games: Vec<Game>| {
        let mut ids: Vec<GameId> = games.into_iter().map(|g| g.id).collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<GameId>| {
        v.sort();
        v
    };
    let of = |name: &'static str| {
        let engine = engine.clone();
        async move { engine.get_active_games_for_user(&u(name)).await.unwrap() }
    };
    assert_eq!(ids(of("ann").await), sorted(vec![one.id, two.id]));
    assert_eq!(ids(of("bob").await), vec![one.id]);
    assert_eq!(ids(of("cid").await), sorted(vec![two.id, three.id]));
    assert_eq!(ids(of("dan").await), vec![three.id]);
    assert!(of("zed").await.is_empty());
    assert!(of("ANN").await.is_empty(), "user names are case-sensitive");
    // The games are returned in their current state.
    engine
        .register_attack(one.id, u("ann"), u("bob"))
        .await
        .unwrap();
    let bobs = of("bob").await;
    assert_eq!(bobs[0].version, 1);
}

#[tokio::test]
async fn continue_game_starts_a_session_from_a_snapshot() {
    let engine = engine().await;
    let mut snap = snapshot("CONT");
    snap.round = 9;
    snap.version = 41;
    let started = engine.continue_game(snap.clone()).await.unwrap();
    assert_eq!(started, snap, "it plays on from exactly that state");
    assert_eq!(engine.get_game_by_join_code("cont").await.unwrap(), snap);
    let after = engine
        .register_move(snap.id, u("ann"), Hex::new(0, 1))
        .await
        .unwrap();
    assert_eq!(after.version, 42);

    assert_eq!(
        engine.continue_game(snap.clone()).await,
        Err(EngineError::AlreadyRunning(snap.id))
    );
    let mut other = snapshot("CONT");
    other.id = GameId(Uuid::from_u128(99));
    assert_eq!(
        engine.continue_game(other).await,
        Err(EngineError::JoinCodeTaken(code("CONT")))
    );
    let mut over = snapshot("OVER");
    over.status = GameStatus::Concluded { winner: None };
    assert_eq!(
        engine.continue_game(over.clone()).await,
        Err(rule(GameError::GameConcluded))
    );
    assert_eq!(
        engine.get_game(over.id).await,
        Err(EngineError::GameNotAlive(over.id))
    );
    // A created game's id is running too.
    let created = engine
        .create_game("MADE", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    assert_eq!(
        engine.continue_game(created.clone()).await,
        Err(EngineError::AlreadyRunning(created.id))
    );
}

#[tokio::test]
async fn a_concluded_game_is_gone() {
    let engine = GameEngine::standalone(GameConfig {
        attack_range: 100,
        attack_damage: 10,
        ..config()
    })
    .await
    .unwrap();
    let game = engine
        .create_game("DONE", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    let id = game.id;
    engine
        .register_attack(id, u("ann"), u("bob"))
        .await
        .unwrap();
    // The whole game, to try and continue it below.
    let last = engine
        .apply_once_and_get(id, 1, Command::EndRound)
        .await
        .unwrap();
    assert_eq!(
        last.status,
        GameStatus::Concluded {
            winner: Some(u("ann"))
        }
    );
    assert_eq!(last.version, 2);
    // The session stopped with its game: the game is no longer alive.
    assert_eq!(
        engine.get_game(id).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.register_move(id, u("ann"), Hex::new(1, 0)).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.register_attack(id, u("ann"), u("bob")).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.end_round(id).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert_eq!(
        engine.get_player_status(id, u("ann")).await,
        Err(EngineError::GameNotAlive(id))
    );
    assert!(engine
        .get_active_games_for_user(&u("ann"))
        .await
        .unwrap()
        .is_empty());
    // Its final state cannot be brought back to life.
    assert_eq!(
        engine.continue_game(last).await,
        Err(rule(GameError::GameConcluded))
    );
    // And its join code is free again once the host has noticed.
    until_join_code_is_free(&engine, "DONE").await;
    let again = engine
        .create_game("done", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    assert_ne!(again.id, id);
}

#[tokio::test]
async fn a_released_game_continues_on_another_engine() {
    let here = Arc::new(LocalDirectory::start(None).await.unwrap());
    let engine = GameEngine::new(here.clone() as Arc<dyn Directory>, config());
    let elsewhere = engine_over_new_directory().await;

    let game = engine
        .create_game("MOVE", vec![u("ann"), u("bob")])
        .await
        .unwrap();
    engine
        .register_attack(game.id, u("bob"), u("ann"))
        .await
        .unwrap();
    assert_eq!(here.sessions().len(), 1);
    assert!(here.sessions().session(game.id).is_some());

    let snap = here.release(game.id).await.unwrap().expect("released");
    assert_eq!(snap.version, 1);
    assert_eq!(snap.actions.len(), 1);
    assert_eq!(
        engine.get_game(game.id).await,
        Err(EngineError::GameNotAlive(game.id))
    );
    assert_eq!(here.release(GameId::random()).await, Ok(None));

    let continued = elsewhere.continue_game(snap.clone()).await.unwrap();
    assert_eq!(continued, snap);
    let ack = elsewhere.end_round(game.id).await.unwrap();
    assert_eq!((ack.round, ack.version), (2, 2));
    let after = elsewhere.get_game(game.id).await.unwrap();
    assert_eq!(Ack::of(&after), ack);
    assert!(after.actions.is_empty());
}

async fn engine_over_new_directory() -> GameEngine {
    let directory = LocalDirectory::start(None).await.unwrap();
    GameEngine::new(Arc::new(directory), config())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_are_applied_one_at_a_time() {
    let engine = GameEngine::standalone(GameConfig {
        wall_count: 0,
        ..config()
    })
    .await
    .unwrap();
    let users: Vec<UserId> = (0..6).map(|i| u(&format!("p{i}"))).collect();
    let game = engine.create_game("BUSY", users.clone()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for user in users {
        // Two steps towards the centre stay on the grid; each player tries
        // three times but can pay for two.
        let at = game.player(&user).unwrap().position;
        let inward = Hex::DIRECTIONS
            .into_iter()
            .min_by_key(|d| (at + *d + *d).length())
            .unwrap();
        for _ in 0..3 {
            let (engine, user, id) = (engine.clone(), user.clone(), game.id);
            tasks.spawn(async move { engine.register_move(id, user, inward).await });
        }
    }
    let mut versions = Vec::new();
    let mut refused = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(g) => versions.push(g.version),
            Err(EngineError::Rule(GameError::NotEnoughActionPoints { .. })) => refused += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    versions.sort();
    assert_eq!(versions, (1..=12).collect::<Vec<u64>>(), "one version each");
    assert_eq!(refused, 6);
    let end = engine.get_game(game.id).await.unwrap();
    assert_eq!(end.version, 12);
    assert!(end.players.iter().all(|p| p.action_points == 0));
    assert!(end.players.iter().all(|p| p.actions_accepted == 2));
}

#[tokio::test]
async fn a_write_answers_an_ack_or_the_game_it_asks_for() {
    let engine = engine().await;
    let game = engine.continue_game(snapshot("ASKS")).await.unwrap();
    let id = game.id;
    let attack = Command::RegisterAttack {
        user: u("ann"),
        target: u("bob"),
    };
    let ack = engine.apply_once(id, 1, attack.clone()).await.unwrap();
    let after = engine.get_game(id).await.unwrap();
    assert_eq!(ack, Ack::of(&after));
    assert_eq!(ack.version, game.version + 1);
    // The same op, asking for the game: applied once, answered with the game.
    assert_eq!(
        engine.apply_once_and_get(id, 1, attack.clone()).await,
        Ok(after.clone())
    );
    // A new op that asks for the game gets it as it stands after the write.
    let moved = engine
        .apply_once_and_get(
            id,
            2,
            Command::RegisterMove {
                user: u("bob"),
                vector: Hex::new(0, -1),
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.version, after.version + 1);
    assert_eq!(moved.actions.len(), after.actions.len() + 1);
    assert_eq!(engine.get_game(id).await.unwrap(), moved);
    // And retried as an ack, the ack of the same state.
    assert_eq!(
        engine.apply_once(id, 2, Command::EndRound).await,
        Ok(Ack::of(&moved)),
        "an op already applied is not applied again, whatever its command"
    );
    // Reads are not writes.
    for read in [Command::GetGame, Command::PlayerStatus { user: u("ann") }] {
        assert!(matches!(
            engine.apply_once(id, 3, read.clone()).await,
            Err(EngineError::Protocol(_))
        ));
        assert!(matches!(
            engine.apply_once_and_get(id, 3, read).await,
            Err(EngineError::Protocol(_))
        ));
    }
    assert_eq!(engine.get_game(id).await.unwrap(), moved);
}

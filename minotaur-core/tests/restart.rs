//! A session actor that crashes is restarted on its node from its last
//! saved state, up to the host's restart limit; past the limit it is given
//! up and reported, never left half alive.
//!
//! The crash is a real panic inside the session actor: the state sink (a
//! user extension point) panics while saving, exactly where a buggy storage
//! backend would.

use minotaur_core::host::{EndReason, HostEvent};
use minotaur_core::local::HostOptions;
use minotaur_core::{
    EngineError, Game, GameConfig, GameEngine, GameId, Hex, LocalDirectory, StateSink, UserId,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// Keeps saved games in memory and panics on the next `panics` saves.
#[derive(Default)]
struct FlakyStore {
    games: Mutex<HashMap<GameId, Game>>,
    panics: AtomicU32,
}

#[async_trait::async_trait]
impl StateSink for FlakyStore {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        let armed = self
            .panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            panic!("storage backend bug while saving {}", game.id);
        }
        self.games.lock().unwrap().insert(game.id, game.clone());
        Ok(())
    }

    async fn load(&self, id: GameId) -> Option<Game> {
        self.games.lock().unwrap().get(&id).cloned()
    }
}

const MAX_RESTARTS: u32 = 2;

async fn engine(store: Arc<FlakyStore>) -> (GameEngine, mpsc::UnboundedReceiver<HostEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let options = HostOptions {
        events: Some(tx),
        max_restarts: MAX_RESTARTS,
        ..HostOptions::default()
    };
    let local = LocalDirectory::start_with(Some(store), options)
        .await
        .expect("host starts");
    let config = GameConfig {
        round_length_ms: 3_600_000,
        ..GameConfig::default()
    };
    (GameEngine::new(Arc::new(local), config), rx)
}

fn users() -> Vec<UserId> {
    vec!["ann".into(), "bob".into()]
}

/// A legal one-step move vector for `user` in `game`.
fn step(game: &Game, user: &str) -> Hex {
    let at = game
        .players
        .iter()
        .find(|p| p.user.0 == user)
        .expect("player")
        .position;
    Hex::DIRECTIONS
        .into_iter()
        .find(|d| game.world.walkable(at + *d))
        .expect("a walkable neighbour")
}

/// Polls until the game answers again after a crash: the host restarts it
/// in reaction to a supervision event, asynchronously.
async fn until_alive(engine: &GameEngine, id: GameId) -> Game {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match engine.get_game(id).await {
            Ok(game) => return game,
            Err(e) if tokio::time::Instant::now() > deadline => {
                panic!("game {id} not back after 5 s: {e}")
            }
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_session_restarts_from_its_last_saved_state() {
    let store = Arc::new(FlakyStore::default());
    let (engine, _events) = engine(store.clone()).await;
    let game = engine.create_game("BOOM", users()).await.unwrap();
    let first = step(&game, "ann");
    engine
        .register_move(game.id, "ann".into(), first)
        .await
        .unwrap();

    store.panics.store(1, Ordering::SeqCst);
    let bob_to = step(&game, "bob");
    let crashed = engine.register_move(game.id, "bob".into(), bob_to).await;
    assert!(
        crashed.is_err(),
        "a command whose save crashed was acknowledged"
    );

    let restarted = until_alive(&engine, game.id).await;
    assert_eq!(restarted.players[0].actions_accepted, 1, "acked move kept");
    assert_eq!(
        restarted.players[1].actions_accepted, 0,
        "unacked move absent"
    );
    assert_eq!(restarted.version, game.version + 1);
    // The restarted session is a working one, found by join code as well.
    engine
        .register_move(game.id, "bob".into(), bob_to)
        .await
        .unwrap();
    let by_code = engine.get_game_by_join_code("BOOM").await.unwrap();
    assert_eq!(by_code.players[1].actions_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_crashing_past_the_restart_limit_is_given_up_and_reported() {
    let store = Arc::new(FlakyStore::default());
    let (engine, mut events) = engine(store.clone()).await;
    let game = engine.create_game("LIMIT", users()).await.unwrap();

    store.panics.store(MAX_RESTARTS + 1, Ordering::SeqCst);
    for attempt in 1..=MAX_RESTARTS {
        let result = engine.end_round(game.id).await;
        assert!(result.is_err(), "crash {attempt} acknowledged");
        until_alive(&engine, game.id).await;
    }
    assert!(engine.end_round(game.id).await.is_err());

    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("an end event within 5 s")
        .expect("host alive");
    assert_eq!(event.id, game.id);
    assert!(
        matches!(&event.reason, EndReason::Failed(why) if why.contains("not restarted")),
        "{:?}",
        event.reason
    );
    match engine.get_game(game.id).await {
        Err(EngineError::GameNotAlive(_)) => {}
        other => panic!("a given-up session still answers: {other:?}"),
    }
}

/// Sessions started many at once: each game gets its own outcome, a game
/// already running (or listed twice) is refused and the rest all start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_sessions_start_at_once_each_with_its_outcome() {
    let local = LocalDirectory::start(None).await.expect("host");
    let game = |i: u32| {
        Game::new(
            GameId::random(),
            format!("M{i:03}").parse().expect("code"),
            vec![UserId::from("ann"), UserId::from("bob")],
            GameConfig::default(),
            minotaur_core::clock::now_ms(),
        )
        .expect("game")
    };
    let running = game(0);
    local
        .start_saved(running.clone())
        .await
        .expect("first start");
    let mut games: Vec<Game> = (1..=300).map(game).collect();
    let twice = games[7].clone();
    games.push(twice.clone());
    games.push(running.clone());
    let results = local.start_many_saved(games).await;
    assert_eq!(results.len(), 302);
    let refused: Vec<GameId> = results
        .iter()
        .filter(|(_, r)| matches!(r, Err(EngineError::AlreadyRunning(_))))
        .map(|(id, _)| *id)
        .collect();
    assert_eq!(refused, vec![twice.id, running.id]);
    assert!(results
        .iter()
        .all(|(id, r)| r.is_ok() || refused.contains(id)));
    assert_eq!(local.sessions().len(), 301);
    local.shutdown().await;
}

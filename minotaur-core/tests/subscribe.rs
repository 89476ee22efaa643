//! `GameEngine::subscribe` on a standalone node: the stream's order, its
//! waiting, resuming from a version, its end, and its limits.

use minotaur_core::{
    EngineError, EventKind, GameConfig, GameEngine, GameUpdate, SubscriberLimits, Subscription,
};
use std::time::Duration;

/// Hour-long rounds and no walls: nothing happens unless a test does it.
fn config() -> GameConfig {
    GameConfig {
        round_length_ms: 3_600_000,
        wall_count: 0,
        ..GameConfig::default()
    }
}

/// The next update, within a bound.
async fn next(updates: &mut Subscription) -> Option<Result<GameUpdate, EngineError>> {
    tokio::time::timeout(Duration::from_secs(10), updates.next())
        .await
        .expect("an update within 10 s")
}

#[tokio::test]
async fn a_subscriber_sees_the_game_then_every_change_in_version_order() {
    let engine = GameEngine::standalone(config()).await.unwrap();
    let game = engine
        .create_game("SUB1", vec!["ann".into(), "bob".into()])
        .await
        .unwrap();
    let mut updates = engine.subscribe(game.id, None).unwrap();
    let Some(Ok(GameUpdate::Whole(start))) = next(&mut updates).await else {
        panic!("the whole game first")
    };
    assert_eq!(*start, game);

    // Nothing new: the subscriber waits for the next change.
    let writer = {
        let engine = engine.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            engine
                .register_attack(game.id, "ann".into(), "bob".into())
                .await
        })
    };
    let Some(Ok(GameUpdate::Changed { version, events })) = next(&mut updates).await else {
        panic!("a change")
    };
    writer.await.unwrap().unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        events.iter().map(|e| &e.kind).collect::<Vec<_>>(),
        vec![&EventKind::Registered {
            user: "ann".into(),
            action: minotaur_core::Action::Attack {
                target: "bob".into()
            }
        }]
    );

    // Several changes between two questions come one by one, in order.
    engine.end_round(game.id).await.unwrap();
    engine
        .register_attack(game.id, "bob".into(), "ann".into())
        .await
        .unwrap();
    let round = next(&mut updates).await.unwrap().unwrap();
    assert_eq!((round.version(), round.kind()), (2, "round_ended"));
    let GameUpdate::Changed { events, .. } = &round else {
        panic!("a change")
    };
    assert_eq!(
        events.last().map(|e| &e.kind),
        Some(&EventKind::RoundEnded { round: 1 })
    );
    let action = next(&mut updates).await.unwrap().unwrap();
    assert_eq!((action.version(), action.kind()), (3, "action"));
    assert_eq!(updates.version(), Some(3));
}

#[tokio::test]
async fn a_subscriber_resumes_from_a_version_or_gets_the_whole_game() {
    let engine = GameEngine::standalone(GameConfig {
        max_events: 4,
        ..config()
    })
    .await
    .unwrap();
    let game = engine
        .create_game("SUB2", vec!["ann".into(), "bob".into()])
        .await
        .unwrap();
    for _ in 0..3 {
        engine.end_round(game.id).await.unwrap();
    }
    // Versions 1 to 3 each logged one event (an empty round's end).
    let mut resumed = engine.subscribe(game.id, Some(1)).unwrap();
    for version in 2..=3 {
        let update = next(&mut resumed).await.unwrap().unwrap();
        assert_eq!((update.version(), update.kind()), (version, "round_ended"));
    }
    drop(resumed);
    // The log holds the last four events, of versions 2 to 5: version 2
    // can be resumed from, not 1 nor 0, and a version the game never had
    // gets the whole game.
    for _ in 0..2 {
        engine.end_round(game.id).await.unwrap();
    }
    let now = engine.get_game(game.id).await.unwrap();
    for after in [0, 1, 99] {
        let mut from = engine.subscribe(game.id, Some(after)).unwrap();
        let Some(Ok(GameUpdate::Whole(whole))) = next(&mut from).await else {
            panic!("the whole game after version {after}")
        };
        assert_eq!(*whole, now);
    }
    let mut from = engine.subscribe(game.id, Some(2)).unwrap();
    assert_eq!(next(&mut from).await.unwrap().unwrap().version(), 3);
}

#[tokio::test]
async fn the_stream_ends_with_the_game() {
    let engine = GameEngine::standalone(GameConfig {
        starting_health: 1,
        attack_damage: 1,
        attack_range: 20,
        ..config()
    })
    .await
    .unwrap();
    let game = engine
        .create_game("SUB3", vec!["ann".into(), "bob".into()])
        .await
        .unwrap();
    let mut updates = engine.subscribe(game.id, Some(0)).unwrap();
    engine
        .register_attack(game.id, "ann".into(), "bob".into())
        .await
        .unwrap();
    assert_eq!(next(&mut updates).await.unwrap().unwrap().kind(), "action");
    // The round ends while the subscriber waits for it, as subscribers
    // nearly always are: it gets the end. (One that asked only after the
    // game's session stopped would get GameNotAlive, as below.)
    let ender = {
        let engine = engine.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            engine.end_round(game.id).await
        })
    };
    let last = next(&mut updates).await.unwrap().unwrap();
    ender.await.unwrap().unwrap();
    assert_eq!(last.kind(), "game_concluded");
    let GameUpdate::Changed { events, .. } = &last else {
        panic!("a change")
    };
    for expected in [
        EventKind::PlayerOut { user: "bob".into() },
        EventKind::Concluded {
            winner: Some("ann".into()),
        },
    ] {
        assert!(events.iter().any(|e| e.kind == expected), "{events:?}");
    }
    assert!(next(&mut updates).await.is_none(), "nothing after the end");
    // A game that is not alive (any more) ends a subscription at once.
    let mut late = engine.subscribe(game.id, Some(2)).unwrap();
    assert_eq!(
        next(&mut late).await.unwrap(),
        Err(EngineError::GameNotAlive(game.id))
    );
    assert!(next(&mut late).await.is_none());
}

#[tokio::test]
async fn subscriptions_are_limited_per_game_and_in_all() {
    let engine = GameEngine::standalone(config())
        .await
        .unwrap()
        .with_subscriber_limits(SubscriberLimits {
            per_game: 2,
            per_node: 3,
        });
    let players = || vec!["ann".into(), "bob".into()];
    let one = engine.create_game("LIM1", players()).await.unwrap();
    let two = engine.create_game("LIM2", players()).await.unwrap();
    let a = engine.subscribe(one.id, None).unwrap();
    let _b = engine.subscribe(one.id, None).unwrap();
    assert_eq!(
        engine.subscribe(one.id, None).err(),
        Some(EngineError::GameSubscribersFull {
            id: one.id,
            limit: 2
        })
    );
    let _c = engine.clone().subscribe(two.id, None).unwrap();
    assert_eq!(
        engine.subscribe(two.id, None).err(),
        Some(EngineError::NodeSubscribersFull { limit: 3 })
    );
    assert_eq!(engine.subscriptions(one.id), (2, 3));
    // A subscription dropped gives its place back.
    drop(a);
    assert_eq!(engine.subscriptions(one.id), (1, 2));
    assert!(engine.subscribe(two.id, None).is_ok());
}

//! A passivated game plays exactly as one that stayed active: the same
//! commands at the same moments get the same answers, round ends included,
//! whether the game's session ran all along or was passivated whenever it
//! was idle and woken by the next command.
//!
//! Both engines run on tokio's paused clock, which the game's wall clock
//! follows, so "the same moments" is exact.

use minotaur_core::local::{HostOptions, LocalDirectory};
use minotaur_core::{
    Command, Directory, EngineError, Game, GameConfig, GameId, Hex, Reply, UserId,
};
use proptest::prelude::*;
use std::time::Duration;

const ROUND_MS: u64 = 1_000;
const IDLE: Duration = Duration::from_millis(600);

#[derive(Debug, Clone)]
enum Op {
    Move { user: usize, direction: usize },
    Attack { user: usize, target: usize },
    EndRound,
    Status { user: usize },
    Get,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0usize..3, 0usize..6).prop_map(|(user, direction)| Op::Move { user, direction }),
        4 => (0usize..3, 0usize..3).prop_map(|(user, target)| Op::Attack { user, target }),
        1 => Just(Op::EndRound),
        1 => (0usize..3).prop_map(|user| Op::Status { user }),
        2 => Just(Op::Get),
    ]
}

/// Commands with the pause before each: some shorter than a round, some
/// long enough to passivate the game, some spanning several rounds.
fn schedule() -> impl Strategy<Value = Vec<(u64, Op)>> {
    let pause = prop_oneof![3 => 0u64..400, 2 => 400u64..1_500, 1 => 1_500u64..6_000];
    proptest::collection::vec((pause, op()), 1..40)
}

fn users() -> Vec<UserId> {
    vec!["ann".into(), "bob".into(), "cy".into()]
}

fn command(op: &Op) -> Command {
    let users = users();
    match op {
        Op::Move { user, direction } => Command::RegisterMove {
            user: users[*user].clone(),
            vector: Hex::DIRECTIONS[*direction],
        },
        Op::Attack { user, target } => Command::RegisterAttack {
            user: users[*user].clone(),
            target: users[*target].clone(),
        },
        Op::EndRound => Command::EndRound,
        Op::Status { user } => Command::PlayerStatus {
            user: users[*user].clone(),
        },
        Op::Get => Command::GetGame,
    }
}

/// A small board where characters meet and fight, so games conclude.
fn game(id: GameId, now_ms: u64) -> Game {
    let config = GameConfig {
        grid_radius: 2,
        wall_count: 0,
        starting_health: 3,
        attack_damage: 1,
        attack_range: 4,
        round_length_ms: ROUND_MS,
        ..GameConfig::default()
    };
    Game::new(id, "PASV".parse().unwrap(), users(), config, now_ms).unwrap()
}

/// Runs `schedule` against an engine that never passivates and one that
/// passivates after `IDLE`; returns both answer lists and how often the
/// second's game was found passivated before a command.
async fn play(
    schedule: &[(u64, Op)],
) -> (
    Vec<Result<Reply, EngineError>>,
    Vec<Result<Reply, EngineError>>,
    usize,
) {
    let active = LocalDirectory::start(None).await.unwrap();
    let options = HostOptions {
        idle_after: Some(IDLE),
        ..HostOptions::default()
    };
    let passivating = LocalDirectory::start_with(None, options).await.unwrap();
    let id = GameId::random();
    let start = game(id, minotaur_core::clock::now_ms());
    active.start(start.clone()).await.unwrap();
    passivating.start(start).await.unwrap();
    let (mut a, mut b, mut dormant) = (Vec::new(), Vec::new(), 0);
    for (pause, op) in schedule {
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        if passivating.sessions().is_dormant(id) {
            dormant += 1;
        }
        let command = command(op);
        a.push(active.send(id, command.clone()).await);
        b.push(passivating.send(id, command).await);
    }
    tokio::time::sleep(Duration::from_millis(3 * ROUND_MS)).await;
    a.push(active.send(id, Command::GetGame).await);
    b.push(passivating.send(id, Command::GetGame).await);
    active.shutdown().await;
    passivating.shutdown().await;
    (a, b, dormant)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_passivated_game_answers_as_an_active_one(schedule in schedule()) {
        let (active, passivated, _) = runtime().block_on(play(&schedule));
        prop_assert_eq!(active, passivated);
    }
}

/// The property above is not vacuous: a game left idle is passivated, and
/// woken with every round that ended meanwhile.
#[test]
fn an_idle_game_is_passivated_and_woken_with_its_rounds_ended() {
    let schedule = vec![
        (0, Op::Get),
        (3_500, Op::Get),
        (2_000, Op::Status { user: 1 }),
    ];
    let (active, passivated, dormant) = runtime().block_on(play(&schedule));
    assert_eq!(dormant, 2, "idle twice, passivated twice");
    assert_eq!(active, passivated);
    let Some(Ok(Reply::Game(game))) = passivated.get(1) else {
        panic!("a game: {passivated:?}")
    };
    assert_eq!(game.round, 4, "three rounds ended while it was passivated");
}

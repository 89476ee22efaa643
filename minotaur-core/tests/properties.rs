//! Invariants that hold over random games and random command sequences.

use minotaur_core::codec;
use minotaur_core::{
    Ack, Change, Command, EventKind, Game, GameConfig, GameError, GameId, GameStatus, GameUpdate,
    Hex, Reply, UserId,
};
use proptest::prelude::*;
use std::collections::BTreeSet;
use uuid::Uuid;

/// An operation, with players named by index; an index past the last
/// player names a user who is not in the game.
#[derive(Debug, Clone)]
enum Op {
    Move { user: usize, vector: Hex },
    Attack { user: usize, target: usize },
    EndRound,
    Status { user: usize },
    Get,
}

fn vector() -> impl Strategy<Value = Hex> {
    prop_oneof![
        6 => proptest::sample::select(Hex::DIRECTIONS.to_vec()),
        3 => (-2i32..=2, -2i32..=2).prop_map(|(q, r)| Hex::new(q, r)),
        1 => (-4i32..=4, -4i32..=4).prop_map(|(q, r)| Hex::new(q, r)),
        1 => any::<(i32, i32)>().prop_map(|(q, r)| Hex::new(q, r)),
    ]
}

/// A player index: taken modulo (players + 1), so that one value in
/// `players + 1` names a user who is not in the game.
fn who() -> impl Strategy<Value = usize> {
    0usize..64
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (who(), vector()).prop_map(|(user, vector)| Op::Move { user, vector }),
        4 => (who(), who()).prop_map(|(user, target)| Op::Attack { user, target }),
        3 => Just(Op::EndRound),
        1 => who().prop_map(|user| Op::Status { user }),
        1 => Just(Op::Get),
    ]
}

/// Rules small enough that characters meet, fight and get taken out.
fn config() -> impl Strategy<Value = GameConfig> {
    (
        (1u32..=4, 0u32..=8, 1u32..=12, 0usize..=12),
        (0u32..=5, 1u32..=6, 0u32..=3),
        (0u32..=2, 1u32..=3, 0u32..=3, 1u32..=6, 0u32..=8),
    )
        .prop_map(
            |(
                (grid_radius, wall_count, starting_health, max_events),
                (starting_action_points, max_action_points, action_points_per_round),
                (move_cost, max_move_distance, attack_cost, attack_damage, attack_range),
            )| GameConfig {
                grid_radius,
                wall_count,
                starting_health,
                max_events,
                // Starting points never exceed the cap (see the report on
                // configs that break this).
                starting_action_points: starting_action_points.min(max_action_points),
                max_action_points,
                action_points_per_round,
                move_cost,
                max_move_distance,
                attack_cost,
                attack_damage,
                attack_range,
                ..GameConfig::default()
            },
        )
}

fn game() -> impl Strategy<Value = Game> {
    (config(), 2usize..=6, any::<u128>()).prop_map(|(config, n, id)| {
        let users = (0..n).map(|i| UserId(format!("player{i}"))).collect();
        Game::new(
            GameId(Uuid::from_u128(id)),
            "PROP".parse().expect("valid code"),
            users,
            config,
            1_000,
        )
        .expect("valid game")
    })
}

fn user(game: &Game, index: usize) -> UserId {
    game.players
        .get(index % (game.players.len() + 1))
        .map(|p| p.user.clone())
        .unwrap_or_else(|| UserId::from("nobody"))
}

fn command(game: &Game, op: &Op) -> Command {
    match op {
        Op::Move { user: i, vector } => Command::RegisterMove {
            user: user(game, *i),
            vector: *vector,
        },
        Op::Attack { user: i, target } => Command::RegisterAttack {
            user: user(game, *i),
            target: user(game, *target),
        },
        Op::EndRound => Command::EndRound,
        Op::Status { user: i } => Command::PlayerStatus {
            user: user(game, *i),
        },
        Op::Get => Command::GetGame,
    }
}

/// Invariants of any one game state.
fn check_state(game: &Game) -> Result<(), TestCaseError> {
    let config = &game.config;
    prop_assert!(game.events.len() <= config.max_events);
    prop_assert!(game.round >= 1);
    let mut occupied = BTreeSet::new();
    for p in &game.players {
        prop_assert!(p.health <= config.starting_health);
        prop_assert!(p.action_points <= config.max_action_points);
        prop_assert!(game.world.on_grid(p.position));
        if p.alive() {
            prop_assert!(game.world.walkable(p.position), "{p:?} on a wall");
            prop_assert!(occupied.insert(p.position), "two living on {}", p.position);
        }
    }
    let alive: Vec<&UserId> = game
        .players
        .iter()
        .filter(|p| p.alive())
        .map(|p| &p.user)
        .collect();
    match &game.status {
        GameStatus::Active => {
            prop_assert!(alive.len() >= 2);
        }
        GameStatus::Concluded { winner: None } => prop_assert!(alive.is_empty()),
        GameStatus::Concluded { winner: Some(w) } => prop_assert_eq!(alive, vec![w]),
    }
    for a in &game.actions {
        let p = game.player(&a.user);
        prop_assert!(p.is_some_and(|p| p.alive()));
    }
    // Every planned move stays on walkable ground.
    for p in &game.players {
        prop_assert!(game.world.walkable(game.planned_position(&p.user)) || !p.alive());
    }
    // The snapshot round-trips through the codec.
    let bytes = codec::encode(game).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Game = codec::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, game);
    Ok(())
}

/// Invariants of one step from `before` to `after` by `command`.
fn check_step(
    before: &Game,
    after: &Game,
    command: &Command,
    result: &Result<Reply, GameError>,
) -> Result<(), TestCaseError> {
    let reply = match result {
        Err(_) => {
            prop_assert_eq!(after, before, "a refused command changed the game");
            return Ok(());
        }
        Ok(reply) => reply,
    };
    match reply {
        Reply::Game(game) => {
            prop_assert!(!command.is_write(), "a write answered the game");
            prop_assert_eq!(&**game, after);
        }
        Reply::Ack(ack) => {
            prop_assert!(command.is_write(), "a read answered an ack");
            prop_assert_eq!(ack, &Ack::of(after));
        }
        Reply::Status(_) => {}
        Reply::Updates(_) => prop_assert!(!command.is_write(), "a write answered updates"),
    }
    if !command.is_write() {
        prop_assert_eq!(after, before, "a read changed the game");
        return Ok(());
    }
    prop_assert!(before.is_active(), "a concluded game accepted {command:?}");
    prop_assert_eq!(after.version, before.version + 1);
    prop_assert_eq!(after.players.len(), before.players.len());
    for (b, a) in before.players.iter().zip(&after.players) {
        prop_assert_eq!(&a.user, &b.user);
        prop_assert!(a.health <= b.health, "health went up");
        if !b.alive() {
            prop_assert_eq!(a, b, "an out player changed");
        }
    }
    // The log is numbered by version, oldest first; what this write
    // logged carries the version it made.
    let versions: Vec<u64> = after.events.iter().map(|e| e.version).collect();
    prop_assert!(versions.windows(2).all(|w| w[0] <= w[1]), "{versions:?}");
    prop_assert!(versions.iter().all(|v| *v <= after.version));
    let logged = after.events.iter().filter(|e| e.version == after.version);
    prop_assert!(logged.count() > 0 || before.config.max_events == 0);
    let config = &before.config;
    match command {
        Command::RegisterMove { user, .. } | Command::RegisterAttack { user, .. } => {
            let cost = if matches!(command, Command::RegisterMove { .. }) {
                config.move_cost
            } else {
                config.attack_cost
            };
            prop_assert_eq!(after.round, before.round);
            prop_assert_eq!(after.actions.len(), before.actions.len() + 1);
            if config.max_events > 0 {
                let registered = after.actions.last().map(|a| EventKind::Registered {
                    user: a.user.clone(),
                    action: a.action.clone(),
                });
                let newest = after.events.back().map(|e| e.kind.clone());
                prop_assert_eq!(newest, registered);
            }
            for (b, a) in before.players.iter().zip(&after.players) {
                if &b.user == user {
                    prop_assert_eq!(a.action_points, b.action_points - cost);
                    prop_assert_eq!(a.actions_accepted, b.actions_accepted + 1);
                    prop_assert_eq!(a.position, b.position);
                } else {
                    prop_assert_eq!(a, b);
                }
            }
        }
        Command::EndRound => {
            prop_assert!(after.actions.is_empty());
            let ended = after.events.iter().any(|e| {
                e.round == before.round
                    && e.kind
                        == EventKind::RoundEnded {
                            round: before.round,
                        }
            });
            prop_assert!(ended || config.max_events < 2);
            if after.is_active() {
                prop_assert_eq!(after.round, before.round + 1);
                for (b, a) in before.players.iter().zip(&after.players) {
                    if a.alive() {
                        let gained = b
                            .action_points
                            .saturating_add(config.action_points_per_round)
                            .min(config.max_action_points);
                        prop_assert_eq!(a.action_points, gained);
                    }
                }
            } else {
                prop_assert_eq!(after.round, before.round);
            }
        }
        Command::GetGame
        | Command::GetGameConfirmed
        | Command::PlayerStatus { .. }
        | Command::Updates { .. } => {
            unreachable!("not a write")
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A subscriber that saw any earlier version of the game gets either
    /// every version since, one by one, each with the events its change
    /// logged, or, when the log no longer reaches back, the whole game.
    #[test]
    fn updates_since_any_version_have_no_gap_and_no_repeat(
        mut game in game(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut seen = vec![game.clone()];
        let mut now = 1_000u64;
        for op in &ops {
            now += 7;
            let command = command(&game, op);
            if command.apply(&mut game, now).is_ok() && command.is_write() {
                seen.push(game.clone());
            }
        }
        prop_assert!(GameUpdate::since(&game, Some(game.version)).is_empty());
        prop_assert_eq!(
            GameUpdate::since(&game, None),
            vec![GameUpdate::Whole(Box::new(game.clone()))]
        );
        for earlier in &seen {
            let updates = GameUpdate::since(&game, Some(earlier.version));
            if let [GameUpdate::Whole(whole)] = &updates[..] {
                prop_assert_eq!(&**whole, &game);
                // Only when something after `earlier` was dropped.
                prop_assert!(game.events.len() >= game.config.max_events);
                continue;
            }
            let versions: Vec<u64> = updates.iter().map(|u| u.version()).collect();
            let expected: Vec<u64> = (earlier.version + 1..=game.version).collect();
            prop_assert_eq!(versions, expected);
            for update in &updates {
                let GameUpdate::Changed { version, events } = update else {
                    return Err(TestCaseError::fail("whole game among changes"));
                };
                prop_assert!(!events.is_empty());
                prop_assert!(events.iter().all(|e| e.version == *version));
                let logged: Vec<_> = game
                    .events
                    .iter()
                    .filter(|e| e.version == *version)
                    .map(|e| (**e).clone())
                    .collect();
                prop_assert_eq!(events, &logged);
            }
        }
    }

    #[test]
    fn random_command_sequences_keep_the_invariants(
        mut game in game(),
        ops in proptest::collection::vec(op(), 1..120),
    ) {
        check_state(&game)?;
        let mut now = 1_000u64;
        for op in &ops {
            now += 7;
            let command = command(&game, op);
            let before = game.clone();
            let result = command.apply(&mut game, now);
            check_step(&before, &game, &command, &result)?;
            check_state(&game)?;
            if !before.is_active() {
                prop_assert!(
                    result.is_err() || !command.is_write(),
                    "concluded games refuse changes"
                );
                if command.is_write() {
                    prop_assert_eq!(result.clone().err(), Some(GameError::GameConcluded));
                }
            }
        }
    }

    #[test]
    fn fighting_rounds_keep_the_invariants(
        game in game(),
        rounds in 1usize..30,
    ) {
        // Drives many games to their end so that the outs and conclusions are
        // exercised: everyone attacks the next player in the list whenever
        // the rules let them.
        let mut game = game;
        for _ in 0..rounds {
            if !game.is_active() {
                break;
            }
            let n = game.players.len();
            for i in 0..n {
                let me = game.players[i].user.clone();
                let target = game.players[(i + 1) % n].user.clone();
                let before = game.clone();
                if game.register_attack(&me, &target).is_err() {
                    prop_assert_eq!(&game, &before);
                }
            }
            let before = game.clone();
            game.end_round(0).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(game.version, before.version + 1);
            check_state(&game)?;
        }
        if !game.is_active() {
            let before = game.clone();
            prop_assert_eq!(game.end_round(0), Err(GameError::GameConcluded));
            prop_assert_eq!(game, before);
        }
    }

    #[test]
    fn a_backup_fed_changes_equals_its_owner(
        game in game(),
        steps in proptest::collection::vec((op(), any::<bool>(), 0u64..=50, any::<bool>()), 1..150),
    ) {
        // The owner applies commands as its session does; the backup keeps
        // the encoded game it last got whole and the encoded changes since,
        // as a cluster backup does, and is given the whole game again at
        // random points. Rebuilt from its copy at any point, it equals the
        // owner.
        let mut owner = game;
        let mut base = codec::encode(&owner).expect("encode");
        let mut changes: Vec<Vec<u8>> = Vec::new();
        let mut now = 1_000u64;
        let mut op_id = 0u64;
        for (step, with_id, pause, whole) in &steps {
            now += pause;
            let command = command(&owner, step);
            if !command.is_write() {
                continue;
            }
            op_id += 1;
            let change = Change { op: with_id.then_some(op_id), command, at_ms: now };
            let mut next = owner.clone();
            if change.apply_in_place(&mut next).is_err() {
                // Refused: the owner's game is unchanged, nothing is sent.
                continue;
            }
            owner = next;
            if *whole {
                base = codec::encode(&owner).expect("encode");
                changes.clear();
            } else {
                changes.push(codec::encode(&change).expect("encode"));
            }
            let mut backup: Game = codec::decode(&base).expect("decode");
            let decoded: Vec<Change> = changes
                .iter()
                .map(|c| codec::decode(c).expect("decode"))
                .collect();
            Change::replay(&mut backup, &decoded)
                .map_err(|e| TestCaseError::fail(format!("replay refused: {e}")))?;
            prop_assert_eq!(&backup, &owner);
        }
    }
}

//! The rules of `game.rs`, one by one, on game states built by hand.

use minotaur_core::game::RegisteredAction;
use minotaur_core::{
    Ack, Action, Command, Event, EventKind, Game, GameConfig, GameError, GameId, GameStatus, Hex,
    JoinCode, MoveError, Reply, UserId,
};
use std::collections::BTreeSet;
use uuid::Uuid;

const NOW: u64 = 1_000_000;

fn u(name: &str) -> UserId {
    UserId::from(name)
}

/// Default rules without walls, so hand-placed positions are all walkable.
fn open() -> GameConfig {
    GameConfig {
        wall_count: 0,
        ..GameConfig::default()
    }
}

fn code() -> JoinCode {
    "ABCD".parse().expect("valid join code")
}

/// A game whose players stand exactly where `placed` says, with no walls.
fn game_with(config: GameConfig, placed: &[(&str, Hex)]) -> Game {
    let users = placed.iter().map(|(name, _)| u(name)).collect();
    let mut game =
        Game::new(GameId(Uuid::from_u128(42)), code(), users, config, NOW).expect("valid game");
    for (player, (_, at)) in game.players.iter_mut().zip(placed) {
        player.position = *at;
    }
    game.world.walls.clear();
    game
}

fn player<'a>(game: &'a Game, name: &str) -> &'a minotaur_core::Player {
    game.player(&u(name)).expect("player exists")
}

fn player_mut<'a>(game: &'a mut Game, name: &str) -> &'a mut minotaur_core::Player {
    game.players
        .iter_mut()
        .find(|p| p.user.as_str() == name)
        .expect("player exists")
}

/// What the end of `round` did, in order.
fn kinds_of_round(game: &Game, round: u32) -> Vec<EventKind> {
    game.events
        .iter()
        .filter(|e| e.round == round && !matches!(e.kind, EventKind::Registered { .. }))
        .map(|e| e.kind.clone())
        .collect()
}

/// Runs `f` on `game`, expects it to fail with `expected`, and checks the
/// game is exactly as before.
fn refused(
    game: &mut Game,
    expected: GameError,
    f: impl FnOnce(&mut Game) -> Result<(), GameError>,
) {
    let before = game.clone();
    assert_eq!(f(game), Err(expected));
    assert_eq!(*game, before, "a refused command must change nothing");
}

/// Runs `f` on `game`, expects it to succeed and to bump the version by one.
fn accepted(game: &mut Game, f: impl FnOnce(&mut Game) -> Result<(), GameError>) {
    let version = game.version;
    f(game).expect("command accepted");
    assert_eq!(game.version, version + 1);
}

fn moved(user: &str, from: Hex, to: Hex) -> EventKind {
    EventKind::Moved {
        user: u(user),
        from,
        to,
    }
}

fn blocked(user: &str, at: Hex, to: Hex) -> EventKind {
    EventKind::MoveBlocked {
        user: u(user),
        at,
        to,
    }
}

fn attacked(attacker: &str, target: &str, damage: u32) -> EventKind {
    EventKind::Attacked {
        attacker: u(attacker),
        target: u(target),
        damage,
    }
}

// ---------------------------------------------------------------- creation

#[test]
fn new_game_starts_in_round_one_with_fresh_characters() {
    let config = GameConfig::default();
    let users: Vec<UserId> = ["ann", "bob", "cid"].into_iter().map(u).collect();
    let game = Game::new(
        GameId(Uuid::from_u128(1)),
        code(),
        users.clone(),
        config.clone(),
        NOW,
    )
    .unwrap();
    assert_eq!(game.round, 1);
    assert_eq!(game.version, 0);
    assert_eq!(game.status, GameStatus::Active);
    assert!(game.is_active());
    assert!(game.actions.is_empty());
    assert!(game.events.is_empty());
    assert_eq!(game.round_ends_at_ms, NOW + config.round_length_ms);
    assert_eq!(game.config, config);
    assert_eq!(game.world.radius, config.grid_radius);
    let order: Vec<UserId> = game.players.iter().map(|p| p.user.clone()).collect();
    assert_eq!(order, users, "players keep the order they were given in");
    for p in &game.players {
        assert_eq!(p.health, config.starting_health);
        assert_eq!(p.action_points, config.starting_action_points);
        assert_eq!(p.actions_accepted, 0);
        assert!(p.alive());
    }
}

#[test]
fn characters_start_on_distinct_outer_ring_hexes_and_walls_stay_inside() {
    let config = GameConfig::default();
    for n in config.min_players..=config.max_players {
        for seed in 0..20u128 {
            let users = (0..n).map(|i| u(&format!("p{i}"))).collect();
            let game = Game::new(
                GameId(Uuid::from_u128(seed * 7919 + 3)),
                code(),
                users,
                config.clone(),
                NOW,
            )
            .unwrap();
            let starts: BTreeSet<Hex> = game.players.iter().map(|p| p.position).collect();
            assert_eq!(starts.len(), n, "starting hexes are distinct");
            for p in &game.players {
                assert_eq!(p.position.length(), config.grid_radius as u64);
                assert!(game.world.walkable(p.position));
            }
            assert_eq!(game.world.walls.len(), config.wall_count as usize);
            for wall in &game.world.walls {
                assert!(wall.length() < config.grid_radius as u64, "{wall}");
                assert_ne!(*wall, Hex::ORIGIN);
            }
        }
    }
}

#[test]
fn walls_are_derived_from_the_game_id() {
    let make = |id: u128| {
        Game::new(
            GameId(Uuid::from_u128(id)),
            code(),
            vec![u("ann"), u("bob")],
            GameConfig::default(),
            NOW,
        )
        .unwrap()
        .world
        .walls
    };
    assert_eq!(make(5), make(5));
    let layouts: BTreeSet<Vec<Hex>> = (0..10u128)
        .map(|i| make(i * 1_000_003).into_iter().collect())
        .collect();
    assert!(layouts.len() > 1, "different ids give different walls");
}

#[test]
fn creation_refuses_bad_player_lists() {
    let config = GameConfig::default();
    let new = |users: Vec<UserId>| {
        Game::new(
            GameId(Uuid::from_u128(1)),
            code(),
            users,
            config.clone(),
            NOW,
        )
    };
    let count = |got| GameError::PlayerCount {
        min: 2,
        max: 6,
        got,
    };
    assert_eq!(new(vec![]).unwrap_err(), count(0));
    assert_eq!(new(vec![u("ann")]).unwrap_err(), count(1));
    let seven: Vec<UserId> = (0..7).map(|i| u(&format!("p{i}"))).collect();
    assert_eq!(new(seven).unwrap_err(), count(7));
    assert_eq!(
        new(vec![u("ann"), u("bob"), u("ann")]).unwrap_err(),
        GameError::DuplicateUser(u("ann"))
    );
    assert_eq!(
        new(vec![u("ann"), u("")]).unwrap_err(),
        GameError::InvalidUser(String::new(), 64)
    );
    let long = "x".repeat(65);
    assert_eq!(
        new(vec![u("ann"), u(&long)]).unwrap_err(),
        GameError::InvalidUser("x".repeat(32), 64),
        "the name in the error is cut to 32 characters"
    );
    // Exactly the longest name is fine.
    assert!(new(vec![u("ann"), u(&"y".repeat(64))]).is_ok());
    // Six players is the default maximum.
    let six: Vec<UserId> = (0..6).map(|i| u(&format!("p{i}"))).collect();
    assert!(new(six).is_ok());
}

#[test]
fn join_codes_are_four_to_eight_ascii_letters_or_digits() {
    for good in ["abcd", "ABCD", "a1b2", "12345678", "AbCdEfG"] {
        let code: JoinCode = good.parse().unwrap();
        assert_eq!(code.as_str(), good.to_ascii_uppercase());
        assert_eq!(code.to_string(), good.to_ascii_uppercase());
    }
    assert_eq!(
        "abcd".parse::<JoinCode>().unwrap(),
        "ABCD".parse::<JoinCode>().unwrap()
    );
    for bad in [
        "",
        "abc",
        "abcdefghi",
        "ab d",
        "ab-d",
        "abc_",
        "ÄBCD",
        "ab\0d",
        "ｱｲｳｴ",
    ] {
        assert_eq!(
            bad.parse::<JoinCode>().unwrap_err(),
            GameError::InvalidJoinCode(bad.to_string()),
            "{bad:?}"
        );
    }
    let very_long = "z".repeat(100);
    assert_eq!(
        very_long.parse::<JoinCode>().unwrap_err(),
        GameError::InvalidJoinCode("z".repeat(32))
    );
}

// ---------------------------------------------------------------- the grid

#[test]
fn grid_holds_the_hexes_within_its_radius() {
    let game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let world = &game.world;
    assert_eq!(world.radius, 4);
    let mut on_grid = 0;
    for q in -6..=6 {
        for r in -6..=6 {
            let hex = Hex::new(q, r);
            assert_eq!(world.on_grid(hex), hex.length() <= 4, "{hex}");
            on_grid += world.on_grid(hex) as usize;
        }
    }
    assert_eq!(on_grid, 61, "a radius-4 hexagon has 61 cells");
    assert!(world.on_grid(Hex::new(4, -4)));
    assert!(world.on_grid(Hex::new(-4, 0)));
    assert!(!world.on_grid(Hex::new(4, 1)));
    assert!(!world.on_grid(Hex::new(i32::MAX, i32::MAX)));
    assert!(!world.on_grid(Hex::new(i32::MIN, 0)));
}

#[test]
fn walls_are_on_the_grid_but_not_walkable() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    game.world.walls.insert(Hex::new(1, 0));
    assert!(game.world.on_grid(Hex::new(1, 0)));
    assert!(!game.world.walkable(Hex::new(1, 0)));
    assert!(game.world.walkable(Hex::new(0, 1)));
    assert!(!game.world.walkable(Hex::new(5, 0)));
}

// ---------------------------------------------------------------- moves

#[test]
fn move_validation() {
    let mut game = game_with(open(), &[("ann", Hex::new(3, 0)), ("bob", Hex::new(-3, 0))]);
    game.world.walls.insert(Hex::new(2, 1));
    let ann = u("ann");
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::ZeroVector),
        |g| g.register_move(&ann, Hex::ORIGIN),
    );
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::TooFar {
            distance: 3,
            max: 2,
        }),
        |g| g.register_move(&ann, Hex::new(-2, -1)),
    );
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::TooFar {
            distance: 1 << 32,
            max: 2,
        }),
        |g| g.register_move(&ann, Hex::new(i32::MIN, i32::MIN)),
    );
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::OffGrid(Hex::new(5, 0))),
        |g| g.register_move(&ann, Hex::new(2, 0)),
    );
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::OffGrid(Hex::new(4, 1))),
        |g| g.register_move(&ann, Hex::new(1, 1)),
    );
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::Blocked(Hex::new(2, 1))),
        |g| g.register_move(&ann, Hex::new(-1, 1)),
    );
    // Two steps is the default maximum.
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(-2, 1)));
    assert_eq!(
        game.actions,
        vec![RegisteredAction {
            user: ann.clone(),
            action: Action::Move {
                vector: Hex::new(-2, 1)
            }
        }]
    );
    // Registration does not move anyone yet.
    assert_eq!(player(&game, "ann").position, Hex::new(3, 0));
    assert_eq!(game.planned_position(&ann), Hex::new(1, 1));
}

#[test]
fn moves_are_validated_from_the_planned_position() {
    let mut config = open();
    config.starting_action_points = 4;
    let mut game = game_with(config, &[("ann", Hex::new(2, 0)), ("bob", Hex::new(-3, 0))]);
    let ann = u("ann");
    game.world.walls.insert(Hex::new(1, 0));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 0)));
    assert_eq!(game.planned_position(&ann), Hex::new(3, 0));
    // From (2, 0) this would be fine; from the planned (3, 0) it leaves the grid.
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::OffGrid(Hex::new(5, 0))),
        |g| g.register_move(&ann, Hex::new(2, 0)),
    );
    // From (2, 0) this would hit the wall at (1, 0); from (3, 0) it is free.
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(-1, 0)));
    // Attacks do not change the planned position.
    accepted(&mut game, |g| g.register_attack(&ann, &u("bob")));
    assert_eq!(game.planned_position(&ann), Hex::new(2, 0));
    player_mut(&mut game, "ann").action_points = 1;
    refused(
        &mut game,
        GameError::InvalidMove(MoveError::Blocked(Hex::new(1, 0))),
        |g| g.register_move(&ann, Hex::new(-1, 0)),
    );
}

#[test]
fn a_move_costs_action_points_at_registration() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    let ann = u("ann");
    assert_eq!(player(&game, "ann").action_points, 2);
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(0, 1)));
    assert_eq!(player(&game, "ann").action_points, 1);
    assert_eq!(player(&game, "ann").actions_accepted, 1);
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(0, 1)));
    assert_eq!(player(&game, "ann").action_points, 0);
    assert_eq!(player(&game, "ann").actions_accepted, 2);
    refused(
        &mut game,
        GameError::NotEnoughActionPoints {
            needed: 1,
            available: 0,
        },
        |g| g.register_move(&ann, Hex::new(0, 1)),
    );
    // Points are checked before the move itself.
    refused(
        &mut game,
        GameError::NotEnoughActionPoints {
            needed: 1,
            available: 0,
        },
        |g| g.register_move(&ann, Hex::ORIGIN),
    );
    assert_eq!(player(&game, "bob").action_points, 2, "bob paid nothing");
}

#[test]
fn an_attack_costs_action_points_at_registration() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 0)));
    refused(
        &mut game,
        GameError::NotEnoughActionPoints {
            needed: 2,
            available: 1,
        },
        |g| g.register_attack(&ann, &bob),
    );
    accepted(&mut game, |g| g.register_attack(&bob, &ann));
    assert_eq!(player(&game, "bob").action_points, 0);
    refused(
        &mut game,
        GameError::NotEnoughActionPoints {
            needed: 2,
            available: 0,
        },
        |g| g.register_attack(&bob, &ann),
    );
}

#[test]
fn action_points_are_gained_each_round_up_to_the_cap() {
    let mut config = open();
    config.action_points_per_round = 3;
    config.max_action_points = 5;
    let mut game = game_with(
        config,
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(3, 0)),
            ("cid", Hex::new(-3, 0)),
            ("dan", Hex::new(0, 3)),
        ],
    );
    player_mut(&mut game, "ann").action_points = 0;
    player_mut(&mut game, "bob").action_points = 1;
    player_mut(&mut game, "cid").action_points = 4;
    player_mut(&mut game, "dan").health = 0;
    player_mut(&mut game, "dan").action_points = 1;
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").action_points, 3);
    assert_eq!(player(&game, "bob").action_points, 4);
    assert_eq!(player(&game, "cid").action_points, 5, "capped");
    assert_eq!(
        player(&game, "dan").action_points,
        1,
        "the out gain nothing"
    );
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").action_points, 5);
    assert_eq!(player(&game, "bob").action_points, 5);
    assert_eq!(player(&game, "cid").action_points, 5);
}

#[test]
fn default_action_point_economy() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    for _ in 0..3 {
        accepted(&mut game, |g| g.end_round(NOW));
    }
    assert_eq!(player(&game, "ann").action_points, 4, "2 + 2, capped at 4");
}

// ---------------------------------------------------------------- who may act

#[test]
fn unknown_and_out_players_cannot_act() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(3, 0)),
        ],
    );
    player_mut(&mut game, "bob").health = 0;
    let (ann, bob, zed) = (u("ann"), u("bob"), u("zed"));
    refused(&mut game, GameError::PlayerNotFound(zed.clone()), |g| {
        g.register_move(&zed, Hex::new(1, 0))
    });
    refused(&mut game, GameError::PlayerNotFound(zed.clone()), |g| {
        g.register_attack(&zed, &ann)
    });
    refused(&mut game, GameError::PlayerOut(bob.clone()), |g| {
        g.register_move(&bob, Hex::new(1, 0))
    });
    refused(&mut game, GameError::PlayerOut(bob.clone()), |g| {
        g.register_attack(&bob, &ann)
    });
    assert_eq!(
        game.player_status(&zed),
        Err(GameError::PlayerNotFound(zed.clone()))
    );
}

#[test]
fn attack_validation() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(3, 0)),
        ],
    );
    player_mut(&mut game, "bob").health = 0;
    let (ann, bob, cid, zed) = (u("ann"), u("bob"), u("cid"), u("zed"));
    refused(&mut game, GameError::SelfAttack, |g| {
        g.register_attack(&ann, &ann)
    });
    refused(&mut game, GameError::TargetNotFound(zed.clone()), |g| {
        g.register_attack(&ann, &zed)
    });
    refused(&mut game, GameError::TargetNotAlive(bob.clone()), |g| {
        g.register_attack(&ann, &bob)
    });
    // Range is not checked at registration: it is measured after the moves.
    assert_eq!(player(&game, "ann").position.distance(Hex::new(3, 0)), 3);
    accepted(&mut game, |g| g.register_attack(&ann, &cid));
    let status = game.player_status(&ann).unwrap();
    assert_eq!(status.registered, vec![Action::Attack { target: cid }]);
    assert_eq!(status.action_points, 0);
}

// ---------------------------------------------------------------- resolution

#[test]
fn moves_resolve_at_round_end() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    let ann = u("ann");
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(0, 1)));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 1)));
    accepted(&mut game, |g| g.end_round(NOW + 5));
    assert_eq!(player(&game, "ann").position, Hex::new(1, 2));
    assert_eq!(game.round, 2);
    assert_eq!(game.round_ends_at_ms, NOW + 5 + game.config.round_length_ms);
    assert!(game.actions.is_empty(), "actions are used up");
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            moved("ann", Hex::ORIGIN, Hex::new(0, 1)),
            moved("ann", Hex::new(0, 1), Hex::new(1, 2)),
            EventKind::RoundEnded { round: 1 },
        ]
    );
    assert!(game.player_status(&ann).unwrap().registered.is_empty());
}

#[test]
fn two_moves_into_one_hex_first_registered_wins() {
    for ann_first in [true, false] {
        let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(2, 0))]);
        let (ann, bob) = (u("ann"), u("bob"));
        let target = Hex::new(1, 0);
        let ann_move = |g: &mut Game| g.register_move(&ann, Hex::new(1, 0));
        let bob_move = |g: &mut Game| g.register_move(&bob, Hex::new(-1, 0));
        if ann_first {
            accepted(&mut game, ann_move);
            accepted(&mut game, bob_move);
        } else {
            accepted(&mut game, bob_move);
            accepted(&mut game, ann_move);
        }
        accepted(&mut game, |g| g.end_round(NOW));
        let (winner, loser, loser_at) = if ann_first {
            ("ann", "bob", Hex::new(2, 0))
        } else {
            ("bob", "ann", Hex::ORIGIN)
        };
        assert_eq!(player(&game, winner).position, target);
        assert_eq!(player(&game, loser).position, loser_at);
        let mut expected = vec![
            if ann_first {
                moved("ann", Hex::ORIGIN, target)
            } else {
                moved("bob", Hex::new(2, 0), target)
            },
            blocked(loser, loser_at, target),
        ];
        expected.push(EventKind::RoundEnded { round: 1 });
        assert_eq!(kinds_of_round(&game, 1), expected);
    }
}

#[test]
fn a_move_into_a_standing_character_is_blocked() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let ann = u("ann");
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").position, Hex::ORIGIN);
    assert_eq!(
        kinds_of_round(&game, 1)[0],
        blocked("ann", Hex::ORIGIN, Hex::new(1, 0))
    );
}

#[test]
fn a_hex_vacated_earlier_in_the_round_can_be_entered() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_move(&bob, Hex::new(1, 0)));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").position, Hex::new(2, 0));
    assert_eq!(player(&game, "ann").position, Hex::new(1, 0));
}

#[test]
fn a_hex_vacated_later_in_the_round_is_still_held() {
    // Moves resolve one at a time in registration order: when ann's move is
    // resolved bob has not left yet.
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 0)));
    accepted(&mut game, |g| g.register_move(&bob, Hex::new(1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").position, Hex::ORIGIN);
    assert_eq!(player(&game, "bob").position, Hex::new(2, 0));
    assert_eq!(
        kinds_of_round(&game, 1)[..2],
        [
            blocked("ann", Hex::ORIGIN, Hex::new(1, 0)),
            moved("bob", Hex::new(1, 0), Hex::new(2, 0)),
        ]
    );
}

#[test]
fn an_out_character_does_not_block() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(-3, 0)),
        ],
    );
    player_mut(&mut game, "bob").health = 0;
    let ann = u("ann");
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").position, Hex::new(1, 0));
}

#[test]
fn after_a_blocked_move_later_moves_start_from_where_the_character_is() {
    // Off the grid: ann plans (3,0) -> (2,0) -> (4,-1), but bob holds (2,0),
    // so her second move starts from (3,0) and would end at (5,-1).
    let mut config = open();
    config.starting_action_points = 4;
    let mut game = game_with(
        config.clone(),
        &[("ann", Hex::new(3, 0)), ("bob", Hex::new(2, 0))],
    );
    let ann = u("ann");
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(-1, 0)));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(2, -1)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").position, Hex::new(3, 0));
    assert_eq!(
        kinds_of_round(&game, 1)[..2],
        [
            blocked("ann", Hex::new(3, 0), Hex::new(2, 0)),
            blocked("ann", Hex::new(3, 0), Hex::new(5, -1)),
        ]
    );

    // Into a wall: the second move, from (3,0), would end on the wall (3,-1).
    let mut game = game_with(config, &[("ann", Hex::new(3, 0)), ("bob", Hex::new(2, 0))]);
    game.world.walls.insert(Hex::new(3, -1));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(-1, 0)));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(0, -1)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "ann").position, Hex::new(3, 0));
    assert_eq!(
        kinds_of_round(&game, 1)[1],
        blocked("ann", Hex::new(3, 0), Hex::new(3, -1))
    );
}

#[test]
fn an_attack_on_a_target_that_moved_out_of_range_misses() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    // The attack is registered before the move, and still resolves after it.
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_move(&bob, Hex::new(1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 10);
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            moved("bob", Hex::new(1, 0), Hex::new(2, 0)),
            EventKind::AttackMissed {
                attacker: ann,
                target: bob
            },
            EventKind::RoundEnded { round: 1 },
        ]
    );
}

#[test]
fn an_attacker_who_moved_away_misses_too() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    player_mut(&mut game, "ann").action_points = 3;
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_move(&ann, Hex::new(-1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 10);
    assert!(kinds_of_round(&game, 1).contains(&EventKind::AttackMissed {
        attacker: ann,
        target: bob
    }));
}

#[test]
fn an_attack_on_a_target_that_moved_into_range_hits() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(2, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_move(&bob, Hex::new(-1, 0)));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 6);
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            moved("bob", Hex::new(2, 0), Hex::new(1, 0)),
            attacked("ann", "bob", 4),
            EventKind::RoundEnded { round: 1 },
        ]
    );
}

#[test]
fn attack_range_is_configurable() {
    let mut config = open();
    config.attack_range = 3;
    let mut game = game_with(config, &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 6);
}

#[test]
fn an_attack_on_a_target_already_out_is_wasted() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(-3, 0)),
        ],
    );
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    // Bob is out by the time the round ends (set by hand: registration
    // refuses attacks on the out, see attack_validation).
    player_mut(&mut game, "bob").health = 0;
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 0);
    assert!(game.is_active(), "ann and cid are still in");
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            EventKind::AttackWasted {
                attacker: ann,
                target: bob
            },
            EventKind::RoundEnded { round: 1 },
        ],
        "no second PlayerOut event"
    );
}

#[test]
fn damage_from_several_attacks_adds_up() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(2, 0)),
        ],
    );
    let (ann, bob, cid) = (u("ann"), u("bob"), u("cid"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_attack(&cid, &bob));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 2);
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            attacked("ann", "bob", 4),
            attacked("cid", "bob", 4),
            EventKind::RoundEnded { round: 1 },
        ]
    );
}

#[test]
fn health_stops_at_zero() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(2, 0)),
        ],
    );
    player_mut(&mut game, "bob").health = 3;
    let (ann, bob, cid) = (u("ann"), u("bob"), u("cid"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_attack(&cid, &bob));
    accepted(&mut game, |g| g.end_round(NOW));
    let bob_now = player(&game, "bob");
    assert_eq!(bob_now.health, 0);
    assert!(!bob_now.alive());
    assert!(kinds_of_round(&game, 1).contains(&EventKind::PlayerOut { user: bob.clone() }));
    assert!(game.is_active());
    // Out for good: no more actions, no more points.
    refused(&mut game, GameError::PlayerOut(bob.clone()), |g| {
        g.register_move(&bob, Hex::new(1, 0))
    });
    let status = game.player_status(&bob).unwrap();
    assert!(!status.alive);
    assert_eq!(status.health, 0);
}

#[test]
fn huge_damage_does_not_overflow() {
    // Summing the damage of several attacks must saturate, not overflow.
    let mut config = open();
    config.attack_damage = u32::MAX;
    config.starting_health = u32::MAX;
    let mut game = game_with(
        config,
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(2, 0)),
        ],
    );
    let (ann, bob, cid) = (u("ann"), u("bob"), u("cid"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_attack(&cid, &bob));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(player(&game, "bob").health, 0);
    assert!(game.is_active());
}

#[test]
fn mutual_kill_in_one_round_is_a_draw() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    player_mut(&mut game, "ann").health = 4;
    player_mut(&mut game, "bob").health = 4;
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_attack(&bob, &ann));
    let ends_at = game.round_ends_at_ms;
    accepted(&mut game, |g| g.end_round(NOW + 1));
    assert_eq!(game.status, GameStatus::Concluded { winner: None });
    assert!(!game.is_active());
    assert!(game.players.iter().all(|p| p.health == 0));
    assert_eq!(game.round, 1, "a concluded game starts no new round");
    assert_eq!(game.round_ends_at_ms, ends_at);
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            attacked("ann", "bob", 4),
            attacked("bob", "ann", 4),
            EventKind::PlayerOut { user: ann },
            EventKind::PlayerOut { user: bob },
            EventKind::RoundEnded { round: 1 },
            EventKind::Concluded { winner: None },
        ]
    );
}

#[test]
fn attackers_hit_even_when_taken_out_in_the_same_round() {
    let mut game = game_with(
        open(),
        &[
            ("ann", Hex::ORIGIN),
            ("bob", Hex::new(1, 0)),
            ("cid", Hex::new(-3, 0)),
        ],
    );
    player_mut(&mut game, "ann").health = 4;
    player_mut(&mut game, "bob").health = 4;
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.register_attack(&bob, &ann));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(
        game.status,
        GameStatus::Concluded {
            winner: Some(u("cid"))
        }
    );
    assert_eq!(
        game.events.back().map(|e| &e.kind),
        Some(&EventKind::Concluded {
            winner: Some(u("cid"))
        })
    );
}

#[test]
fn the_last_character_standing_wins() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    player_mut(&mut game, "bob").health = 4;
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.end_round(NOW));
    assert_eq!(
        game.status,
        GameStatus::Concluded {
            winner: Some(ann.clone())
        }
    );
    assert_eq!(
        player(&game, "ann").action_points,
        0,
        "no gain after the end"
    );
    assert_eq!(
        kinds_of_round(&game, 1),
        vec![
            attacked("ann", "bob", 4),
            EventKind::PlayerOut { user: bob },
            EventKind::RoundEnded { round: 1 },
            EventKind::Concluded { winner: Some(ann) },
        ]
    );
}

#[test]
fn a_concluded_game_refuses_every_change() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    player_mut(&mut game, "bob").health = 4;
    let (ann, bob) = (u("ann"), u("bob"));
    accepted(&mut game, |g| g.register_attack(&ann, &bob));
    accepted(&mut game, |g| g.end_round(NOW));
    assert!(!game.is_active());
    player_mut(&mut game, "ann").action_points = 4;
    refused(&mut game, GameError::GameConcluded, |g| {
        g.register_move(&ann, Hex::new(0, 1))
    });
    refused(&mut game, GameError::GameConcluded, |g| {
        g.register_attack(&ann, &bob)
    });
    refused(&mut game, GameError::GameConcluded, |g| g.end_round(NOW));
    // Even unknown players get GameConcluded first.
    refused(&mut game, GameError::GameConcluded, |g| {
        g.register_move(&u("zed"), Hex::new(0, 1))
    });
    // Reads still work.
    assert_eq!(game.player_status(&ann).unwrap().health, 10);
}

// ---------------------------------------------------------------- bookkeeping

#[test]
fn version_counts_accepted_changes_only() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    assert_eq!(game.version, 0);
    game.register_move(&ann, Hex::new(1, 0)).unwrap();
    assert_eq!(game.version, 1);
    game.register_move(&ann, Hex::ORIGIN).unwrap_err();
    game.register_attack(&ann, &ann).unwrap_err();
    game.register_attack(&ann, &bob).unwrap_err(); // 1 point left
    assert_eq!(game.version, 1);
    game.register_attack(&bob, &ann).unwrap();
    assert_eq!(game.version, 2);
    game.end_round(NOW).unwrap();
    assert_eq!(game.version, 3);
    game.end_round(NOW).unwrap();
    assert_eq!(game.version, 4, "an empty round end is a change too");
    let _ = game.player_status(&ann).unwrap();
    let _ = game.planned_position(&ann);
    assert_eq!(game.version, 4, "reads change nothing");
}

#[test]
fn events_are_tagged_with_their_version_and_round_and_capped() {
    let mut config = open();
    config.max_events = 4;
    let mut game = game_with(config, &[("ann", Hex::ORIGIN), ("bob", Hex::new(3, 0))]);
    let ann = u("ann");
    let event = |version, round, kind| Event {
        version,
        round,
        kind,
    };
    for round in 1..=5u32 {
        // Alternate between two hexes: three events per round (Registered,
        // then Moved and RoundEnded, both of the round's end).
        let step = if round % 2 == 1 {
            Hex::new(0, 1)
        } else {
            Hex::new(0, -1)
        };
        accepted(&mut game, |g| g.register_move(&ann, step));
        accepted(&mut game, |g| g.end_round(NOW));
        assert!(game.events.len() <= 4);
        assert_eq!(
            game.events.back().map(|e| &**e),
            Some(&event(game.version, round, EventKind::RoundEnded { round }))
        );
    }
    // The oldest were dropped; the four most recent are kept in order, each
    // numbered by the version its change made.
    let kept: Vec<Event> = game.events.iter().map(|e| Event::clone(e)).collect();
    let registered = EventKind::Registered {
        user: ann.clone(),
        action: Action::Move {
            vector: Hex::new(0, 1),
        },
    };
    assert_eq!(
        kept,
        vec![
            event(8, 4, EventKind::RoundEnded { round: 4 }),
            event(9, 5, registered),
            event(10, 5, moved("ann", Hex::ORIGIN, Hex::new(0, 1))),
            event(10, 5, EventKind::RoundEnded { round: 5 }),
        ]
    );

    let mut silent = game.clone();
    silent.config.max_events = 0;
    silent.end_round(NOW).unwrap();
    assert!(silent.events.is_empty());
}

#[test]
fn player_status_reports_the_character_and_its_registrations() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    game.register_move(&ann, Hex::new(0, 1)).unwrap();
    game.register_attack(&bob, &ann).unwrap();
    game.register_move(&ann, Hex::new(0, 1)).unwrap();
    let status = game.player_status(&ann).unwrap();
    assert_eq!(status.user, ann);
    assert_eq!(status.round, 1);
    assert_eq!(status.position, Hex::ORIGIN);
    assert_eq!(status.health, 10);
    assert_eq!(status.action_points, 0);
    assert!(status.alive);
    assert_eq!(
        status.registered,
        vec![
            Action::Move {
                vector: Hex::new(0, 1)
            },
            Action::Move {
                vector: Hex::new(0, 1)
            },
        ]
    );
}

// ---------------------------------------------------------------- commands

#[test]
fn commands_apply_the_rules() {
    let mut game = game_with(open(), &[("ann", Hex::ORIGIN), ("bob", Hex::new(1, 0))]);
    let (ann, bob) = (u("ann"), u("bob"));
    assert!(!Command::GetGame.is_write());
    assert!(!Command::PlayerStatus { user: ann.clone() }.is_write());
    assert!(Command::EndRound.is_write());

    let before = game.clone();
    assert_eq!(
        Command::GetGame.apply(&mut game, NOW),
        Ok(Reply::Game(Box::new(before.clone())))
    );
    assert_eq!(game, before);

    let mv = Command::RegisterMove {
        user: ann.clone(),
        vector: Hex::new(-1, 0),
    };
    assert!(mv.is_write());
    let Ok(Reply::Ack(ack)) = mv.apply(&mut game, NOW) else {
        panic!("a move replies with an ack");
    };
    assert_eq!(ack, Ack::of(&game));
    assert_eq!(game.version, 1);
    assert_eq!(
        (ack.id, ack.version, ack.round, ack.round_ends_at_ms),
        (game.id, 1, 1, game.round_ends_at_ms)
    );
    assert_eq!(ack.status, GameStatus::Active);

    let attack = Command::RegisterAttack {
        user: bob.clone(),
        target: bob.clone(),
    };
    assert!(attack.is_write());
    let before = game.clone();
    assert_eq!(attack.apply(&mut game, NOW), Err(GameError::SelfAttack));
    assert_eq!(game, before);

    let Ok(Reply::Status(status)) =
        (Command::PlayerStatus { user: ann.clone() }).apply(&mut game, NOW)
    else {
        panic!("a status query replies with a status");
    };
    assert_eq!(status, game.player_status(&ann).unwrap());
    assert_eq!(
        Command::PlayerStatus { user: u("zed") }.apply(&mut game, NOW),
        Err(GameError::PlayerNotFound(u("zed")))
    );

    let Ok(Reply::Ack(ack)) = Command::EndRound.apply(&mut game, NOW + 10) else {
        panic!("a round end replies with an ack");
    };
    assert_eq!(ack, Ack::of(&game));
    assert_eq!(ack.round, 2);
    assert_eq!(ack.round_ends_at_ms, NOW + 10 + game.config.round_length_ms);
    assert_eq!(player(&game, "ann").position, Hex::new(-1, 0));
}

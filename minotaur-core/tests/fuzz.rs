//! Structure-aware fuzzing of the codec (issue 7), run by `cargo test`:
//! arbitrary values of every core wire type round-trip; their encodings,
//! corrupted, cut short or extended, decode to an error or a value and never
//! panic; and a game decoded from corrupted bytes, however odd its numbers,
//! can be played on (every command, round ends) without panicking. The
//! cluster's own wire types are fuzzed in `minotaur-testkit/tests/hostile.rs`.

use minotaur_core::codec::{self, CodecError};
use minotaur_core::game::RegisteredAction;
use minotaur_core::{
    Ack, Action, Command, EngineError, Event, EventKind, Game, GameConfig, GameError, GameId, Hex,
    JoinCode, MoveError, PlayerStatus, Reply, UserId,
};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

fn hex() -> impl Strategy<Value = Hex> {
    prop_oneof![
        (-3i32..=3, -3i32..=3).prop_map(|(q, r)| Hex::new(q, r)),
        any::<(i32, i32)>().prop_map(|(q, r)| Hex::new(q, r)),
    ]
}

fn user() -> impl Strategy<Value = UserId> {
    prop_oneof![
        proptest::sample::select(vec!["ann", "bob", "cid", "dee"]).prop_map(UserId::from),
        ".{0,70}".prop_map(UserId::from),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::GetGame),
        Just(Command::GetGameConfirmed),
        Just(Command::EndRound),
        (user(), hex()).prop_map(|(user, vector)| Command::RegisterMove { user, vector }),
        (user(), user()).prop_map(|(user, target)| Command::RegisterAttack { user, target }),
        user().prop_map(|user| Command::PlayerStatus { user }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        hex().prop_map(|vector| Action::Move { vector }),
        user().prop_map(|target| Action::Attack { target }),
    ]
}

fn game_error() -> impl Strategy<Value = GameError> {
    prop_oneof![
        user().prop_map(GameError::PlayerNotFound),
        user().prop_map(GameError::PlayerOut),
        Just(GameError::InvalidMove(MoveError::ZeroVector)),
        (any::<u64>(), any::<u32>()).prop_map(|(distance, max)| GameError::InvalidMove(
            MoveError::TooFar { distance, max }
        )),
        hex().prop_map(|h| GameError::InvalidMove(MoveError::OffGrid(h))),
        hex().prop_map(|h| GameError::InvalidMove(MoveError::Blocked(h))),
        (any::<u32>(), any::<u32>())
            .prop_map(|(needed, available)| GameError::NotEnoughActionPoints { needed, available }),
        Just(GameError::GameConcluded),
        user().prop_map(GameError::TargetNotFound),
        user().prop_map(GameError::TargetNotAlive),
        Just(GameError::SelfAttack),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(min, max, got)| GameError::PlayerCount { min, max, got }),
        user().prop_map(GameError::DuplicateUser),
        (".{0,40}", any::<usize>()).prop_map(|(s, n)| GameError::InvalidUser(s, n)),
        ".{0,40}".prop_map(GameError::InvalidJoinCode),
    ]
}

fn code() -> impl Strategy<Value = JoinCode> {
    "[A-Za-z0-9]{4,8}".prop_map(|s| s.parse().expect("a valid code"))
}

fn engine_error() -> impl Strategy<Value = EngineError> {
    let id = any::<u128>().prop_map(|n| GameId(uuid::Uuid::from_u128(n)));
    prop_oneof![
        id.clone().prop_map(EngineError::GameNotAlive),
        code().prop_map(EngineError::UnknownJoinCode),
        code().prop_map(EngineError::JoinCodeTaken),
        id.clone().prop_map(EngineError::AlreadyRunning),
        id.prop_map(EngineError::BetweenOwners),
        ".{0,40}".prop_map(EngineError::Leaving),
        game_error().prop_map(EngineError::Rule),
        ".{0,40}".prop_map(EngineError::Timeout),
        ".{0,40}".prop_map(EngineError::Unavailable),
        ".{0,40}".prop_map(|s| EngineError::Codec(CodecError::Decode(s))),
        ".{0,40}".prop_map(EngineError::Protocol),
    ]
}

fn config() -> impl Strategy<Value = GameConfig> {
    (1u32..=6, 0u32..=10, 2usize..=6, 0u32..=5, 1u64..=100_000).prop_map(
        |(grid_radius, wall_count, max_players, cost, round_length_ms)| GameConfig {
            grid_radius,
            wall_count,
            max_players,
            move_cost: cost.min(2),
            attack_cost: cost,
            round_length_ms,
            ..GameConfig::default()
        },
    )
}

/// A game with some history: created from arbitrary rules, then played by
/// arbitrary commands (refused ones change nothing).
fn game() -> impl Strategy<Value = Game> {
    (
        any::<u128>(),
        code(),
        2usize..=6,
        config(),
        proptest::collection::vec(command(), 0..24),
    )
        .prop_filter_map(
            "a playable game",
            |(id, code, players, config, commands)| {
                let users: Vec<UserId> = ["ann", "bob", "cid", "dee", "eve", "fay"][..players]
                    .iter()
                    .map(|u| UserId::from(*u))
                    .collect();
                if config.validate().is_err() || players > config.max_players {
                    return None;
                }
                let mut game = Game::new(
                    GameId(uuid::Uuid::from_u128(id)),
                    code,
                    users,
                    config,
                    1_700_000_000_000,
                )
                .ok()?;
                for (i, c) in commands.iter().enumerate() {
                    let _ = c.apply(&mut game, 1_700_000_000_000 + i as u64);
                }
                Some(game)
            },
        )
}

fn player_status() -> impl Strategy<Value = PlayerStatus> {
    (
        user(),
        any::<u32>(),
        hex(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
        proptest::collection::vec(action(), 0..6),
    )
        .prop_map(
            |(user, round, position, health, action_points, alive, registered)| PlayerStatus {
                user,
                round,
                position,
                health,
                action_points,
                alive,
                registered,
            },
        )
}

fn reply_result() -> impl Strategy<Value = Result<Reply, EngineError>> {
    prop_oneof![
        game().prop_map(|g| Ok(Reply::Game(Box::new(g)))),
        player_status().prop_map(|s| Ok(Reply::Status(s))),
        game().prop_map(|g| Ok(Reply::Ack(Ack::of(&g)))),
        engine_error().prop_map(Err),
    ]
}

/// Edits a few bytes, then cuts the encoding short or extends it.
fn corrupt(
    mut bytes: Vec<u8>,
    edits: &[(prop::sample::Index, u8)],
    cut: prop::sample::Index,
    how: u8,
) -> Vec<u8> {
    if !bytes.is_empty() {
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
    }
    match how % 3 {
        0 => {
            let len = cut.index(bytes.len() + 1);
            bytes.truncate(len);
        }
        1 => bytes.extend_from_slice(&[0xff; 9]),
        _ => {}
    }
    bytes
}

/// Decoding corrupted bytes is an error or a value that encodes again.
fn decode_safely<T: Serialize + DeserializeOwned + Debug>(bytes: &[u8]) {
    if let Ok(value) = codec::decode::<T>(bytes) {
        let again = codec::encode(&value).expect("a decoded value encodes");
        assert!(codec::decode::<T>(&again).is_ok(), "{value:?}");
    }
}

fn round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> Vec<u8> {
    let bytes = codec::encode(value).expect("encode");
    assert_eq!(&codec::decode::<T>(&bytes).expect("decode"), value);
    bytes
}

fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8)>> {
    proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn commands_round_trip_and_survive_corruption(
        c in command(), e in edits(), cut in any::<prop::sample::Index>(), how in any::<u8>()
    ) {
        let bytes = round_trips(&c);
        decode_safely::<Command>(&corrupt(bytes, &e, cut, how));
    }

    #[test]
    fn replies_and_errors_round_trip_and_survive_corruption(
        r in reply_result(), e in edits(), cut in any::<prop::sample::Index>(), how in any::<u8>()
    ) {
        let bytes = round_trips(&r);
        decode_safely::<Result<Reply, EngineError>>(&corrupt(bytes, &e, cut, how));
    }

    #[test]
    fn snapshots_round_trip_and_survive_corruption(
        g in game(), e in edits(), cut in any::<prop::sample::Index>(), how in any::<u8>()
    ) {
        let bytes = round_trips(&g);
        let log: Vec<RegisteredAction> = g.actions.clone();
        round_trips(&log);
        let events: Vec<Event> = g.events.iter().map(|e| Event::clone(e)).collect();
        // The shared (`Arc`) events encode as the events themselves.
        prop_assert_eq!(round_trips(&events), codec::encode(&g.events).unwrap());
        decode_safely::<Game>(&corrupt(bytes, &e, cut, how));
    }

    /// Whatever a corrupted snapshot decodes to, a session can play on it:
    /// every command is applied or refused, rounds end, nothing panics.
    #[test]
    fn a_game_decoded_from_corrupted_bytes_can_be_played_without_panicking(
        g in game(),
        e in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..10),
        commands in proptest::collection::vec(command(), 1..20),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = corrupt(codec::encode(&g).expect("encode"), &e, cut, 2);
        if let Ok(mut odd) = codec::decode::<Game>(&bytes) {
            for (i, c) in commands.iter().enumerate() {
                let before = odd.clone();
                match c.apply(&mut odd, i as u64) {
                    Ok(_) => {}
                    Err(_) => prop_assert_eq!(&odd, &before, "a refused command changed the game"),
                }
            }
            let _ = odd.end_round(u64::MAX);
            let _ = odd.player_status(&"ann".into());
            let _ = odd.planned_position(&"bob".into());
        }
    }

    #[test]
    fn every_core_type_decodes_arbitrary_bytes_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..400)
    ) {
        decode_safely::<Command>(&bytes);
        decode_safely::<Result<Reply, EngineError>>(&bytes);
        decode_safely::<Game>(&bytes);
        decode_safely::<PlayerStatus>(&bytes);
        decode_safely::<EngineError>(&bytes);
        decode_safely::<GameError>(&bytes);
        decode_safely::<Vec<Event>>(&bytes);
        decode_safely::<EventKind>(&bytes);
        decode_safely::<GameConfig>(&bytes);
        decode_safely::<UserId>(&bytes);
        decode_safely::<GameId>(&bytes);
    }
}

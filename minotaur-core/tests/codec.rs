//! The codec refuses bad input with an error and never panics.

use minotaur_core::codec::{self, CodecError, MAX_DECODE_LEN};
use minotaur_core::{
    Ack, Command, EngineError, Event, Game, GameConfig, GameError, GameId, Hex, Reply, UserId,
};
use proptest::prelude::*;
use std::sync::Arc;
use uuid::Uuid;

/// A game with some history: registrations, events, walls.
fn sample_game() -> Game {
    let users = vec!["ann".into(), "bob".into(), "cid".into()];
    let mut game = Game::new(
        GameId(Uuid::from_u128(0xfeed)),
        "CODEC1".parse().unwrap(),
        users,
        GameConfig::default(),
        1_700_000_000_000,
    )
    .unwrap();
    let (ann, bob) = (UserId::from("ann"), UserId::from("bob"));
    game.register_attack(&ann, &bob).unwrap();
    game.end_round(1_700_000_030_000).unwrap();
    let toward_centre = Hex::DIRECTIONS
        .into_iter()
        .find(|d| {
            let to = game.player(&bob).unwrap().position + *d;
            to.length() < 4 && game.world.walkable(to)
        })
        .unwrap();
    game.register_move(&bob, toward_centre).unwrap();
    assert!(!game.events.is_empty() && !game.actions.is_empty());
    game
}

#[test]
fn a_games_shared_events_encode_as_the_events_and_are_not_copied() {
    let game = sample_game();
    let plain: Vec<Event> = game.events.iter().map(|e| Event::clone(e)).collect();
    assert_eq!(
        codec::encode(&game.events).unwrap(),
        codec::encode(&plain).unwrap()
    );
    let copy = game.clone();
    assert_eq!(copy, game);
    assert!(game
        .events
        .iter()
        .zip(&copy.events)
        .all(|(a, b)| Arc::ptr_eq(a, b)));
}

#[test]
fn a_game_round_trips() {
    let game = sample_game();
    let bytes = codec::encode(&game).unwrap();
    assert_eq!(codec::decode::<Game>(&bytes).unwrap(), game);
}

#[test]
fn commands_replies_and_errors_round_trip() {
    let game = sample_game();
    let commands = vec![
        Command::GetGame,
        Command::EndRound,
        Command::RegisterMove {
            user: "ann".into(),
            vector: Hex::new(i32::MIN, i32::MAX),
        },
        Command::RegisterAttack {
            user: "ann".into(),
            target: "ünïcode".into(),
        },
        Command::PlayerStatus { user: "bob".into() },
        Command::GetGameConfirmed,
    ];
    for command in commands {
        let bytes = codec::encode(&command).unwrap();
        assert_eq!(codec::decode::<Command>(&bytes).unwrap(), command);
    }
    let status = game.player_status(&"bob".into()).unwrap();
    for reply in [
        Reply::Game(Box::new(game.clone())),
        Reply::Status(status),
        Reply::Ack(Ack::of(&game)),
    ] {
        let bytes = codec::encode(&reply).unwrap();
        assert_eq!(codec::decode::<Reply>(&bytes).unwrap(), reply);
    }
    let results: Vec<Result<Reply, EngineError>> = vec![
        Err(EngineError::GameNotAlive(game.id)),
        Err(EngineError::Rule(GameError::NotEnoughActionPoints {
            needed: 2,
            available: 1,
        })),
        Err(EngineError::Codec(CodecError::TrailingBytes(3))),
        Err(EngineError::UnknownJoinCode(game.join_code.clone())),
    ];
    let bytes = codec::encode(&results).unwrap();
    assert_eq!(
        codec::decode::<Vec<Result<Reply, EngineError>>>(&bytes).unwrap(),
        results
    );
}

#[test]
fn garbage_is_an_error() {
    let inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xff; 64],
        vec![0xfe; 300],
        vec![0; 3],
        b"definitely not a game".to_vec(),
        (0..=255u8).collect(),
        (0..=255u8).rev().collect(),
    ];
    for bytes in &inputs {
        assert!(codec::decode::<Game>(bytes).is_err(), "{bytes:?}");
    }
    assert!(codec::decode::<Command>(&[]).is_err());
    assert!(codec::decode::<Command>(&[0xff, 0xff]).is_err());
    // An enum tag past the last variant.
    assert!(matches!(
        codec::decode::<Command>(&[9]),
        Err(CodecError::Decode(_))
    ));
    // A string that is not UTF-8.
    assert!(matches!(
        codec::decode::<String>(&[2, 0xc3, 0x28]),
        Err(CodecError::Decode(_))
    ));
}

#[test]
fn every_truncation_of_a_game_is_an_error() {
    let bytes = codec::encode(&sample_game()).unwrap();
    assert!(bytes.len() > 100);
    for len in 0..bytes.len() {
        assert!(
            matches!(
                codec::decode::<Game>(&bytes[..len]),
                Err(CodecError::Decode(_))
            ),
            "a {len}-byte prefix of {} decoded",
            bytes.len()
        );
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let game = sample_game();
    let mut bytes = codec::encode(&game).unwrap();
    bytes.push(0);
    assert_eq!(
        codec::decode::<Game>(&bytes),
        Err(CodecError::TrailingBytes(1))
    );
    bytes.extend_from_slice(&codec::encode(&game).unwrap());
    let extra = bytes.len() - codec::encode(&game).unwrap().len();
    assert_eq!(
        codec::decode::<Game>(&bytes),
        Err(CodecError::TrailingBytes(extra))
    );
    assert_eq!(
        codec::decode::<u8>(&[1, 2, 3]),
        Err(CodecError::TrailingBytes(2))
    );
}

#[test]
fn oversize_input_is_refused_before_decoding() {
    let bytes = vec![0u8; MAX_DECODE_LEN + 1];
    assert_eq!(
        codec::decode::<Game>(&bytes),
        Err(CodecError::Oversize {
            len: MAX_DECODE_LEN + 1,
            limit: MAX_DECODE_LEN,
        })
    );
    // Even a valid encoding is refused when it is too long (built by hand:
    // `encode` refuses to produce it).
    let mut huge = varint_u64(MAX_DECODE_LEN as u64);
    huge.extend(std::iter::repeat_n(b'x', MAX_DECODE_LEN));
    assert!(huge.len() > MAX_DECODE_LEN);
    assert!(matches!(
        codec::decode::<String>(&huge),
        Err(CodecError::Oversize { .. })
    ));
    // Comfortably under the limit decodes.
    let big = "y".repeat(MAX_DECODE_LEN - 1024);
    let bytes = codec::encode(&big).unwrap();
    assert_eq!(codec::decode::<String>(&bytes).unwrap(), big);
}

#[test]
fn encode_refuses_what_decode_would_refuse() {
    // Exactly at the limit: a string of the limit minus its 5-byte length
    // prefix (marker 252 and a u32) encodes, and decodes.
    let fits = "f".repeat(MAX_DECODE_LEN - 5);
    let bytes = codec::encode(&fits).unwrap();
    assert_eq!(bytes.len(), MAX_DECODE_LEN);
    assert!(bytes.iter().skip(5).all(|b| *b == b'f'));
    assert_eq!(codec::decode::<String>(&bytes).unwrap(), fits);
    // Small integers encode in a byte each but count at their size in
    // memory when decoded: up to the limit, they decode all the same.
    let zeros = vec![0u128; MAX_DECODE_LEN - 16];
    let bytes = codec::encode(&zeros).unwrap();
    assert!(bytes.len() <= MAX_DECODE_LEN);
    assert_eq!(codec::decode::<Vec<u128>>(&bytes).unwrap(), zeros);
    let small = vec![(7u64, 1u64); (MAX_DECODE_LEN - 16) / 2];
    let bytes = codec::encode(&small).unwrap();
    assert_eq!(codec::decode::<Vec<(u64, u64)>>(&bytes).unwrap(), small);
    // One byte more is refused, with the whole encoding's length.
    let over = "o".repeat(MAX_DECODE_LEN - 4);
    assert_eq!(
        codec::encode(&over),
        Err(CodecError::Oversize {
            len: MAX_DECODE_LEN + 1,
            limit: MAX_DECODE_LEN,
        })
    );
    // Far over (larger than a cluster link's 16 MiB frame): the same error.
    let user: UserId = "u".repeat(20 * 1024 * 1024).into();
    let command = Command::RegisterMove {
        user,
        vector: Hex::new(1, 0),
    };
    assert!(matches!(
        codec::encode(&command),
        Err(CodecError::Oversize { len, limit }) if len > 20 * 1024 * 1024 && limit == MAX_DECODE_LEN
    ));
}

/// bincode's varint for a u64: marker 253, then 8 little-endian bytes.
fn varint_u64(n: u64) -> Vec<u8> {
    let mut out = vec![253];
    out.extend_from_slice(&n.to_le_bytes());
    out
}

#[test]
fn a_length_prefix_claiming_a_huge_collection_is_an_error() {
    for claimed in [
        u64::MAX,
        u64::MAX / 2,
        1 << 40,
        MAX_DECODE_LEN as u64 + 1,
        1000,
    ] {
        let mut bytes = varint_u64(claimed);
        bytes.extend_from_slice(&[7; 16]);
        assert!(codec::decode::<Vec<u8>>(&bytes).is_err(), "{claimed}");
        assert!(codec::decode::<String>(&bytes).is_err(), "{claimed}");
        assert!(codec::decode::<Vec<u64>>(&bytes).is_err(), "{claimed}");
        assert!(codec::decode::<Vec<Game>>(&bytes).is_err(), "{claimed}");
        assert!(
            codec::decode::<std::collections::VecDeque<Hex>>(&bytes).is_err(),
            "{claimed}"
        );
        assert!(
            codec::decode::<std::collections::BTreeSet<Hex>>(&bytes).is_err(),
            "{claimed}"
        );
    }
    // u32-sized marker (252) as well.
    let mut bytes = vec![252];
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(codec::decode::<Vec<u8>>(&bytes).is_err());
    assert!(codec::decode::<String>(&bytes).is_err());
}

#[test]
fn a_game_whose_players_length_is_forged_is_an_error() {
    // Locate the players vector: it follows the world, so re-encode the
    // game without players and find where the two encodings diverge.
    let game = sample_game();
    let bytes = codec::encode(&game).unwrap();
    let mut empty = game.clone();
    empty.players.clear();
    let without = codec::encode(&empty).unwrap();
    let at = bytes
        .iter()
        .zip(&without)
        .position(|(a, b)| a != b)
        .unwrap();
    assert_eq!(bytes[at], game.players.len() as u8, "the players length");
    for claimed in [u64::MAX, 1 << 32, 1_000_000] {
        let mut forged = bytes[..at].to_vec();
        forged.extend_from_slice(&varint_u64(claimed));
        forged.extend_from_slice(&bytes[at + 1..]);
        assert!(codec::decode::<Game>(&forged).is_err(), "{claimed}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<Game>(&bytes);
        let _ = codec::decode::<Command>(&bytes);
        let _ = codec::decode::<Result<Reply, EngineError>>(&bytes);
    }

    #[test]
    fn decoding_a_corrupted_game_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = codec::encode(&sample_game()).unwrap();
        for (index, value) in edits {
            let i = index.index(bytes.len());
            bytes[i] = value;
        }
        let _ = codec::decode::<Game>(&bytes);
        let len = cut.index(bytes.len());
        let _ = codec::decode::<Game>(&bytes[..len]);
    }
}

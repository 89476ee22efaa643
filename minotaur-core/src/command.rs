//! The commands a session accepts, and how each one is applied to a game.
//!
//! These are the values that travel from the engine to a session, possibly
//! across the cluster, so they are plain serializable data.

use crate::error::GameError;
use crate::game::{Game, GameStatus, PlayerStatus};
use crate::hex::Hex;
pub use crate::ids::OpId;
use crate::ids::{GameId, UserId};
use crate::updates::GameUpdate;
use serde::{Deserialize, Serialize};

/// A request to one game's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Read the whole game.
    GetGame,
    /// Resolve the current round now.
    EndRound,
    /// Register a move for `user`.
    RegisterMove {
        /// The player.
        user: UserId,
        /// The displacement.
        vector: Hex,
    },
    /// Register an attack by `user` on `target`.
    RegisterAttack {
        /// The attacker.
        user: UserId,
        /// The player attacked.
        target: UserId,
    },
    /// Read one player's status.
    PlayerStatus {
        /// The player.
        user: UserId,
    },
    /// Read the whole game, confirmed as its latest acknowledged state: the
    /// session's [`StateSink::confirm`](crate::StateSink::confirm) must
    /// agree first (in a cluster: its node still holds its lease and no
    /// other member may have taken the game over).
    GetGameConfirmed,
    /// Read what changed after version `after` (everything, as the whole
    /// game, for `None`): see [`GameUpdate::since`]. With nothing new, the
    /// session holds the question until the next change or for `wait_ms`
    /// (at most [`MAX_UPDATES_WAIT_MS`]), then answers with what it has.
    Updates {
        /// The last version the asker saw.
        after: Option<u64>,
        /// How long to wait for a change when there is none yet.
        wait_ms: u32,
    },
}

/// The longest a session holds a [`Command::Updates`] before answering.
pub const MAX_UPDATES_WAIT_MS: u32 = 30_000;

impl Command {
    /// Whether the command can change the game (and so must be persisted
    /// before it is acknowledged).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::EndRound | Command::RegisterMove { .. } | Command::RegisterAttack { .. }
        )
    }

    /// Applies the command to `game` at wall-clock time `now_ms`.
    ///
    /// A write answers [`Reply::Ack`], a read of the game [`Reply::Game`],
    /// [`Command::PlayerStatus`] [`Reply::Status`]. On error `game` is
    /// unchanged.
    pub fn apply(&self, game: &mut Game, now_ms: u64) -> Result<Reply, GameError> {
        match self {
            Command::GetGame | Command::GetGameConfirmed => {
                return Ok(Reply::Game(Box::new(game.clone())));
            }
            Command::PlayerStatus { user } => {
                return game.player_status(user).map(Reply::Status);
            }
            Command::Updates { after, .. } => {
                return Ok(Reply::Updates(GameUpdate::since(game, *after)));
            }
            Command::EndRound => game.end_round(now_ms)?,
            Command::RegisterMove { user, vector } => game.register_move(user, *vector)?,
            Command::RegisterAttack { user, target } => game.register_attack(user, target)?,
        }
        Ok(Reply::Ack(Ack::of(game)))
    }
}

/// What a write is answered with: enough for a caller to follow the game
/// (its version, round and status) without a copy of the whole game.
///
/// ```
/// use minotaur_core::{Ack, Command, GameConfig, GameEngine};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let engine = GameEngine::standalone(GameConfig::default()).await?;
/// let game = engine.create_game("ACKS", vec!["ann".into(), "bob".into()]).await?;
/// let ack: Ack = engine.end_round(game.id).await?;
/// assert_eq!((ack.version, ack.round), (1, 2));
/// assert_eq!(ack, Ack::of(&engine.get_game(game.id).await?));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The game written to.
    pub id: GameId,
    /// The game's [`version`](Game::version) after the write.
    pub version: u64,
    /// The round being played after the write (the next one, if the write
    /// ended a round).
    pub round: u32,
    /// When that round ends, in wall-clock milliseconds since the Unix
    /// epoch ([`Game::round_ends_at_ms`]).
    pub round_ends_at_ms: u64,
    /// Whether the game still takes actions, or who won it.
    pub status: GameStatus,
}

impl Ack {
    /// The acknowledgement of `game` as it stands.
    pub fn of(game: &Game) -> Self {
        Ack {
            id: game.id,
            version: game.version,
            round: game.round,
            round_ends_at_ms: game.round_ends_at_ms,
            status: game.status.clone(),
        }
    }
}

/// What a write answers with, chosen by its caller.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Answer {
    /// An [`Ack`]: the game's version, round and status after the write.
    #[default]
    Ack,
    /// The whole game after the write, for a caller that needs it, at the
    /// cost of a copy of the game and, across the cluster, its bytes.
    Game,
}

/// A session's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The whole game: the answer to a read, or to a write whose caller
    /// asked for [`Answer::Game`].
    Game(Box<Game>),
    /// A player's status.
    Status(PlayerStatus),
    /// A write's acknowledgement (the default [`Answer`]).
    Ack(Ack),
    /// What changed since the version a [`Command::Updates`] named, oldest
    /// first; empty if nothing did within its wait.
    Updates(Vec<GameUpdate>),
}

//! The commands a session accepts, and how each one is applied to a game.
//!
//! These are the values that travel from the engine to a session, possibly
//! across the cluster, so they are plain serializable data.

use crate::error::GameError;
use crate::game::{Game, PlayerStatus};
use crate::hex::Hex;
use crate::ids::UserId;
use serde::{Deserialize, Serialize};

/// The identity of one write, chosen by the engine when a caller asks for
/// it: a write delivered twice (retried after its node crashed, say) is
/// applied once.
pub type OpId = u64;

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
}

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
    /// On error `game` is unchanged.
    pub fn apply(&self, game: &mut Game, now_ms: u64) -> Result<Reply, GameError> {
        match self {
            Command::GetGame | Command::GetGameConfirmed => {}
            Command::EndRound => game.end_round(now_ms)?,
            Command::RegisterMove { user, vector } => game.register_move(user, *vector)?,
            Command::RegisterAttack { user, target } => game.register_attack(user, target)?,
            Command::PlayerStatus { user } => {
                return game.player_status(user).map(Reply::Status);
            }
        }
        Ok(Reply::Game(Box::new(game.clone())))
    }
}

/// A session's answer to a [`Command`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The game after the command.
    Game(Box<Game>),
    /// A player's status.
    Status(PlayerStatus),
}

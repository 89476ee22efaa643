//! Why the rules refuse a command.

use crate::hex::Hex;
use crate::ids::UserId;
use serde::{Deserialize, Serialize};

/// A command the rules refused. A refused command changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum GameError {
    /// The user is not a player of this game.
    #[error("player {0} is not in this game")]
    PlayerNotFound(UserId),
    /// The player's character is at 0 health.
    #[error("player {0} is out of the game")]
    PlayerOut(UserId),
    /// The move breaks a movement rule.
    #[error("invalid move: {0}")]
    InvalidMove(MoveError),
    /// The player cannot pay for the action this round.
    #[error("not enough action points: {needed} needed, {available} available")]
    NotEnoughActionPoints {
        /// Cost of the action.
        needed: u32,
        /// Points the player has left this round.
        available: u32,
    },
    /// The game is over; it takes no more actions.
    #[error("the game has concluded")]
    GameConcluded,
    /// The attack's target is not a player of this game.
    #[error("attack target {0} is not in this game")]
    TargetNotFound(UserId),
    /// The attack's target is already out.
    #[error("attack target {0} is already out")]
    TargetNotAlive(UserId),
    /// Players cannot attack themselves.
    #[error("a player cannot attack themself")]
    SelfAttack,
    /// Too few or too many players for a new game.
    #[error("a game needs {min} to {max} players, got {got}")]
    PlayerCount {
        /// Fewest allowed.
        min: usize,
        /// Most allowed.
        max: usize,
        /// Number given.
        got: usize,
    },
    /// The same user was listed twice for a new game.
    #[error("user {0} is listed twice")]
    DuplicateUser(UserId),
    /// A user name is empty or too long.
    #[error("invalid user name {0:?}: must be 1 to {1} bytes")]
    InvalidUser(String, usize),
    /// A join code is not 4 to 8 letters or digits.
    #[error("invalid join code {0:?}: use 4 to 8 letters or digits")]
    InvalidJoinCode(String),
}

/// Why a move was refused at registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum MoveError {
    /// A move of zero steps.
    #[error("the move vector is zero")]
    ZeroVector,
    /// Longer than the configured maximum.
    #[error("{distance} steps is further than the {max} allowed")]
    TooFar {
        /// Steps asked for.
        distance: u64,
        /// Longest allowed.
        max: u32,
    },
    /// The destination is outside the world.
    #[error("destination {0} is off the grid")]
    OffGrid(Hex),
    /// The destination is a wall.
    #[error("destination {0} is blocked by a wall")]
    Blocked(Hex),
}

//! The names a game and its players go by: game id, join code, user id.

use crate::error::GameError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The identity of one write, chosen by the engine when a caller asks for
/// it: a write delivered twice (retried after its node crashed, say) is
/// applied once.
pub type OpId = u64;

/// A game's unique id (a random UUID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GameId(pub Uuid);

impl GameId {
    /// A fresh random id.
    pub fn random() -> Self {
        GameId(Uuid::new_v4())
    }
}

impl fmt::Display for GameId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for GameId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(GameId)
    }
}

/// A short, human-typable code players use to find a game: 4 to 8 ASCII
/// letters or digits, case-insensitive (stored upper-case).
///
/// ```
/// use minotaur_core::JoinCode;
/// let code: JoinCode = "abcd".parse().unwrap();
/// assert_eq!(code.as_str(), "ABCD");
/// assert!("no spaces".parse::<JoinCode>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct JoinCode(String);

impl JoinCode {
    /// Shortest accepted code.
    pub const MIN_LEN: usize = 4;
    /// Longest accepted code.
    pub const MAX_LEN: usize = 8;

    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JoinCode {
    type Err = GameError;
    fn from_str(s: &str) -> Result<Self, GameError> {
        let ok = (Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(JoinCode(s.to_ascii_uppercase()))
        } else {
            Err(GameError::InvalidJoinCode(s.chars().take(32).collect()))
        }
    }
}

impl fmt::Display for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A player's user name, as the caller's own user system knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserId(pub String);

impl UserId {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for UserId {
    fn from(s: &str) -> Self {
        UserId(s.to_owned())
    }
}

impl From<String> for UserId {
    fn from(s: String) -> Self {
        UserId(s)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

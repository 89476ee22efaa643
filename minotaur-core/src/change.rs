//! `Change`: an accepted write as a game's backup replays it.
//!
//! A game is a deterministic state machine given its state, the command and
//! the wall-clock time the command was applied at. So instead of a copy of
//! the whole game after every write, a backup can keep an older copy and the
//! changes since, and rebuild the current game when it needs it. The session
//! applies its own writes through [`Change::apply`] too, so the owner and
//! its backup run the very same code.

use crate::command::{Command, OpId, Reply};
use crate::error::GameError;
use crate::game::Game;
use serde::{Deserialize, Serialize};

/// Write ids remembered per game. A retried write arrives within one call
/// timeout of the first attempt, by when a game has taken a few dozen writes
/// at most; each id costs 8 bytes in every snapshot.
pub const MAX_APPLIED_OPS: usize = 32;

/// One accepted write: the command, its write id if the caller gave one,
/// and when it was applied.
///
/// ```
/// use minotaur_core::{Change, Command, Game, GameConfig, GameId};
///
/// let users = vec!["ann".into(), "bob".into()];
/// let mut owner = Game::new(GameId::random(), "CHNG".parse()?, users, GameConfig::default(), 0)?;
/// let mut backup = owner.clone();
/// let change = Change { op: Some(7), command: Command::EndRound, at_ms: 1_000 };
/// change.apply(&mut owner)?;
/// // The backup, given the same change, reaches the same game.
/// Change::replay(&mut backup, [&change])?;
/// assert_eq!(owner, backup);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The caller's write id, remembered so that a retry is not applied
    /// twice.
    pub op: Option<OpId>,
    /// The write.
    pub command: Command,
    /// The wall-clock time it was applied at, in milliseconds since the
    /// Unix epoch.
    pub at_ms: u64,
}

impl Change {
    /// Applies the write to `game`: records its id, then runs the command.
    /// On error `game` is unchanged.
    pub fn apply(&self, game: &mut Game) -> Result<Reply, GameError> {
        let mut next = game.clone();
        let reply = self.apply_in_place(&mut next)?;
        *game = next;
        Ok(reply)
    }

    /// [`Change::apply`] on a game the caller discards on error (the
    /// session applies to its working copy), sparing a clone.
    pub fn apply_in_place(&self, game: &mut Game) -> Result<Reply, GameError> {
        // Recorded before applying, so a reply shows the state as stored.
        if let Some(op) = self.op {
            game.applied_ops.push_back(op);
            while game.applied_ops.len() > MAX_APPLIED_OPS {
                game.applied_ops.pop_front();
            }
        }
        self.command.apply(game, self.at_ms)
    }

    /// Applies `changes`, in order, to `game`: what a backup does to rebuild
    /// its owner's game. A change that fails means the changes do not
    /// follow from this game; `game` is then left as it was.
    pub fn replay<'a>(
        game: &mut Game,
        changes: impl IntoIterator<Item = &'a Change>,
    ) -> Result<(), GameError> {
        let mut next = game.clone();
        for change in changes {
            change.apply_in_place(&mut next)?;
        }
        *game = next;
        Ok(())
    }
}

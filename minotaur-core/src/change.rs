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
/// at most; each id, with the version it made, costs some 10 bytes in every
/// snapshot.
pub const MAX_APPLIED_OPS: usize = 32;

/// The most round ends [`Change::rounds_due`] returns at once: a game left
/// for a year with one-second rounds is caught up over several calls, each
/// a fraction of a second.
pub const MAX_ROUNDS_DUE: usize = 10_000;

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
        let reply = self.command.apply(game, self.at_ms)?;
        if let Some(op) = self.op {
            game.applied_ops.push_back((op, game.version));
            while game.applied_ops.len() > MAX_APPLIED_OPS {
                game.applied_ops.pop_front();
            }
        }
        Ok(reply)
    }

    /// The round ends due by `now_ms`: one [`Command::EndRound`] at each
    /// deadline that has passed, each at the moment it was due, so a round
    /// ends with the same result and at the same moment whether its session
    /// ran a timer for it or the game lay passivated and is caught up
    /// later. Applying them in order makes `game` current, unless more
    /// than [`MAX_ROUNDS_DUE`] are due: the rest are then due next time.
    ///
    /// ```
    /// use minotaur_core::{Change, Game, GameConfig, GameId};
    ///
    /// let users = vec!["ann".into(), "bob".into()];
    /// let config = GameConfig { round_length_ms: 1_000, ..GameConfig::default() };
    /// let mut game = Game::new(GameId::random(), "DUE1".parse()?, users, config, 0)?;
    /// let due = Change::rounds_due(&game, 3_500);
    /// assert_eq!(due.iter().map(|c| c.at_ms).collect::<Vec<_>>(), [1_000, 2_000, 3_000]);
    /// Change::replay(&mut game, &due)?;
    /// assert_eq!((game.round, game.round_ends_at_ms), (4, 4_000));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rounds_due(game: &Game, now_ms: u64) -> Vec<Change> {
        let mut due = Vec::new();
        if !game.is_active() || game.round_ends_at_ms > now_ms {
            return due;
        }
        // Only the deadlines matter here; the rules decide on a copy
        // whether the game concludes on the way.
        let mut next = game.clone();
        while next.is_active() && next.round_ends_at_ms <= now_ms {
            let at_ms = next.round_ends_at_ms;
            let change = Change {
                op: None,
                command: Command::EndRound,
                at_ms,
            };
            if change.apply_in_place(&mut next).is_err() {
                break;
            }
            due.push(change);
            // A round length of zero (a hand-made snapshot) would never
            // catch up.
            if due.len() >= MAX_ROUNDS_DUE || next.round_ends_at_ms <= at_ms {
                break;
            }
        }
        due
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

//! What a game's subscribers receive: each change as the events it made,
//! numbered by the version it made, read from the game's own events log.
//!
//! The log travels with the game (to its backup, on a handoff, into a
//! passivated snapshot), so whichever node owns the game next can tell a
//! subscriber what it missed since any version the log still reaches back
//! to; further back, the subscriber gets the whole game instead.

use crate::game::{Event, EventKind, Game, GameStatus};
use serde::{Deserialize, Serialize};

/// One item of a game's update stream.
///
/// ```
/// use minotaur_core::{Command, Game, GameConfig, GameId, GameUpdate};
///
/// let users = vec!["ann".into(), "bob".into()];
/// let mut game = Game::new(GameId::random(), "UPDS".parse()?, users, GameConfig::default(), 0)?;
/// let seen = game.version;
/// Command::EndRound.apply(&mut game, 1_000)?;
/// // A subscriber that saw version 0 gets the round's end, as version 1.
/// let missed = GameUpdate::since(&game, Some(seen));
/// assert_eq!(missed.len(), 1);
/// assert_eq!(missed[0].version(), 1);
/// assert_eq!(missed[0].kind(), "round_ended");
/// // One that saw nothing yet gets the whole game.
/// assert!(matches!(GameUpdate::since(&game, None)[..], [GameUpdate::Whole(_)]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameUpdate {
    /// The whole game, at its version: the first item for a subscriber
    /// with nothing to resume from, and for one whose version the game's
    /// log no longer reaches back to (or never had). It replaces whatever
    /// the subscriber knew.
    Whole(Box<Game>),
    /// The change that made `version`: an action registered, or a round's
    /// end with its results (moves, attacks, players out, the winner).
    Changed {
        /// The version the change made: one more than the item before.
        version: u64,
        /// Its events, in the order they happened (each carries `version`).
        events: Vec<Event>,
    },
}

impl GameUpdate {
    /// The game's version once this update is applied: what a subscriber
    /// resumes from (an SSE event id).
    pub fn version(&self) -> u64 {
        match self {
            GameUpdate::Whole(game) => game.version,
            GameUpdate::Changed { version, .. } => *version,
        }
    }

    /// A short name for what happened: `game` (the whole game), `action`
    /// (an action registered), `round_ended` or `game_concluded` (the last
    /// round's end).
    pub fn kind(&self) -> &'static str {
        let GameUpdate::Changed { events, .. } = self else {
            return "game";
        };
        if self.concludes() {
            "game_concluded"
        } else if events
            .iter()
            .any(|e| matches!(e.kind, EventKind::RoundEnded { .. }))
        {
            "round_ended"
        } else {
            "action"
        }
    }

    /// Whether the game is concluded once this update is applied: nothing
    /// follows it.
    pub fn concludes(&self) -> bool {
        match self {
            GameUpdate::Whole(game) => matches!(game.status, GameStatus::Concluded { .. }),
            GameUpdate::Changed { events, .. } => events
                .iter()
                .any(|e| matches!(e.kind, EventKind::Concluded { .. })),
        }
    }

    /// What a subscriber that saw version `after` (nothing, for `None`)
    /// has missed of `game`: each change since, oldest first, or the whole
    /// game when the log no longer holds every event after `after`. Empty
    /// when it is up to date.
    pub fn since(game: &Game, after: Option<u64>) -> Vec<GameUpdate> {
        let whole = || vec![GameUpdate::Whole(Box::new(game.clone()))];
        let Some(after) = after else {
            return whole();
        };
        if after == game.version {
            return Vec::new();
        }
        // Events are dropped oldest first, and only once the log is full:
        // it holds every event after `after` if it never dropped one, or
        // if it still holds one of `after` or earlier.
        let reaches_back = game.events.len() < game.config.max_events
            || game.events.front().is_some_and(|e| e.version <= after);
        if after > game.version || !reaches_back {
            return whole();
        }
        let mut updates: Vec<GameUpdate> = Vec::new();
        for event in game.events.iter().filter(|e| e.version > after) {
            match updates.last_mut() {
                Some(GameUpdate::Changed { version, events }) if *version == event.version => {
                    events.push(Event::clone(event))
                }
                _ => updates.push(GameUpdate::Changed {
                    version: event.version,
                    events: vec![Event::clone(event)],
                }),
            }
        }
        updates
    }
}

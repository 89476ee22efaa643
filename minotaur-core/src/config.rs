//! Every rules number of the game, in one place.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The numbers the rules are played with.
///
/// A game carries its own copy, so a game restored on a node with another
/// configuration keeps playing by the rules it was created with.
///
/// ```
/// use minotaur_core::GameConfig;
/// let quick = GameConfig { round_length_ms: 5_000, ..GameConfig::default() };
/// assert_eq!(quick.round_length().as_secs(), 5);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameConfig {
    /// Radius of the hexagonal world: hexes at most this many steps from the
    /// origin are on the grid. Default 4 (61 hexes).
    pub grid_radius: u32,
    /// Number of wall hexes placed at random (seeded by the game id) when a
    /// game is created. Walls block moves. Default 6.
    pub wall_count: u32,
    /// Fewest players a game can be created with. Default 2.
    pub min_players: usize,
    /// Most players a game can be created with. Default 6.
    pub max_players: usize,
    /// Longest accepted user name, in bytes. Default 64.
    pub max_user_len: usize,
    /// Health each character starts with. Default 10.
    pub starting_health: u32,
    /// Action points each character starts the game with. Default 2.
    pub starting_action_points: u32,
    /// Action points gained at the start of every round after the first. Default 2.
    pub action_points_per_round: u32,
    /// Cap on banked action points. Default 4.
    pub max_action_points: u32,
    /// Action points a move costs. Default 1.
    pub move_cost: u32,
    /// Longest single move, in steps. Default 2.
    pub max_move_distance: u32,
    /// Action points an attack costs. Default 2.
    pub attack_cost: u32,
    /// Health an attack takes away. Default 4.
    pub attack_damage: u32,
    /// Farthest an attack reaches, in steps, measured after the round's moves. Default 1.
    pub attack_range: u32,
    /// Length of a round in milliseconds. Default 30 000.
    pub round_length_ms: u64,
    /// Events kept in a game's log; older ones are dropped. Default 64.
    pub max_events: usize,
}

impl Default for GameConfig {
    fn default() -> Self {
        GameConfig {
            grid_radius: 4,
            wall_count: 6,
            min_players: 2,
            max_players: 6,
            max_user_len: 64,
            starting_health: 10,
            starting_action_points: 2,
            action_points_per_round: 2,
            max_action_points: 4,
            move_cost: 1,
            max_move_distance: 2,
            attack_cost: 2,
            attack_damage: 4,
            attack_range: 1,
            round_length_ms: 30_000,
            max_events: 64,
        }
    }
}

/// Why a [`GameConfig`] cannot be played with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid game rules: {0}")]
pub struct ConfigError(pub String);

/// Largest grid radius accepted: walls are drawn from every hex, so the
/// cost of creating a game grows with the square of the radius.
pub const MAX_GRID_RADIUS: u32 = 256;

impl GameConfig {
    /// Checks the numbers can make a playable game: a grid with a distinct
    /// starting hex for every player, a player range that is not empty, a
    /// non-zero round length.
    ///
    /// ```
    /// use minotaur_core::GameConfig;
    /// assert!(GameConfig::default().validate().is_ok());
    /// let crowded = GameConfig { grid_radius: 1, max_players: 7, ..GameConfig::default() };
    /// assert!(crowded.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |what: String| Err(ConfigError(what));
        if self.grid_radius == 0 || self.grid_radius > MAX_GRID_RADIUS {
            return fail(format!(
                "grid_radius {} must be between 1 and {MAX_GRID_RADIUS}",
                self.grid_radius
            ));
        }
        if self.min_players == 0 || self.min_players > self.max_players {
            return fail(format!(
                "players range {}..={} must be non-empty and start at 1 or more",
                self.min_players, self.max_players
            ));
        }
        let starts = 6 * self.grid_radius as usize;
        if self.max_players > starts {
            return fail(format!(
                "max_players {} exceeds the {starts} starting hexes of a radius-{} grid",
                self.max_players, self.grid_radius
            ));
        }
        if self.max_user_len == 0 {
            return fail("max_user_len must be at least 1".into());
        }
        if self.round_length_ms == 0 {
            return fail("round_length_ms must be non-zero".into());
        }
        Ok(())
    }

    /// The round length as a [`Duration`].
    pub fn round_length(&self) -> Duration {
        Duration::from_millis(self.round_length_ms)
    }
}

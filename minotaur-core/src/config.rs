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

impl GameConfig {
    /// The round length as a [`Duration`].
    pub fn round_length(&self) -> Duration {
        Duration::from_millis(self.round_length_ms)
    }
}

//! The game's state and rules: pure data and functions, no actors, no I/O.
//!
//! # Rounds
//! Players *register* actions during a round; each action's action points are
//! paid at registration, so a player can never register more than they can
//! afford. Moves are validated against the player's *planned* position (where
//! their earlier moves of the round will have taken them). At the end of the
//! round ([`Game::end_round`]) all registered actions are resolved together:
//!
//! 1. **Moves**, one at a time in registration order. A move jumps straight to
//!    its destination. If the destination is held by another living character
//!    (one who did not move away, or who moved in earlier this round), or is
//!    off the grid or a wall because an earlier move of the same player was
//!    blocked, the move is *blocked* and the character stays. So when two
//!    players move into one hex, the one who registered first gets it.
//! 2. **Attacks**, all at once, against positions after the moves. An attack
//!    on a target that moved out of range *misses*. An attack on a target that
//!    was already out when the round ended is *wasted*. Damage from all attacks
//!    is applied together, so two characters can take each other out in the
//!    same round; attackers hit even if they are themselves taken out.
//! 3. **Outs**: a character at 0 health is out and takes no further actions.
//! 4. **Conclusion**: when at most one character is alive the game concludes,
//!    with that character's player as winner, or as a draw when none is left.
//!    Otherwise the next round starts and every living character gains
//!    [`GameConfig::action_points_per_round`], capped at
//!    [`GameConfig::max_action_points`].
//!
//! Every accepted change (a registration or a round end) increments
//! [`Game::version`] by one; a refused command changes nothing.

use crate::config::GameConfig;
use crate::error::{GameError, MoveError};
use crate::hex::Hex;
use crate::ids::{GameId, JoinCode, UserId};
use rand::rngs::SmallRng;
use rand::seq::IteratorRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// The hexagonal world a game is played on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    /// Hexes at most this far from the origin are on the grid.
    pub radius: u32,
    /// Hexes no character may enter.
    pub walls: BTreeSet<Hex>,
}

impl World {
    /// Whether `hex` is on the grid.
    pub fn on_grid(&self, hex: Hex) -> bool {
        hex.length() <= self.radius as u64
    }

    /// Whether a character may stand on `hex` (on the grid and not a wall).
    pub fn walkable(&self, hex: Hex) -> bool {
        self.on_grid(hex) && !self.walls.contains(&hex)
    }
}

/// One player's character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Player {
    /// The player's user name.
    pub user: UserId,
    /// Where the character stands.
    pub position: Hex,
    /// Remaining health; 0 means out.
    pub health: u32,
    /// Points left to spend this round.
    pub action_points: u32,
    /// Actions this player has had accepted over the whole game. Clients can
    /// compare it with the registrations they saw acknowledged.
    pub actions_accepted: u64,
}

impl Player {
    /// Whether the character is still in the game.
    pub fn alive(&self) -> bool {
        self.health > 0
    }
}

/// What a player can register during a round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// Move by this vector.
    Move {
        /// Displacement in axial coordinates.
        vector: Hex,
    },
    /// Attack this player.
    Attack {
        /// The player attacked.
        target: UserId,
    },
}

/// An action registered during the current round, waiting for its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredAction {
    /// Who registered it.
    pub user: UserId,
    /// What they will do.
    pub action: Action,
}

/// Whether a game still takes actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GameStatus {
    /// Rounds are being played.
    Active,
    /// Over: `winner` is the last character standing, `None` for a draw.
    Concluded {
        /// The winning player, if any.
        winner: Option<UserId>,
    },
}

/// Something that happened to a game: an action registered, or what its
/// round's resolution did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// An action was registered for the round (it takes effect when the
    /// round ends).
    Registered {
        /// Who registered it.
        user: UserId,
        /// What they will do.
        action: Action,
    },
    /// A character moved.
    Moved {
        /// Who moved.
        user: UserId,
        /// From here.
        from: Hex,
        /// To here.
        to: Hex,
    },
    /// A move could not be made; the character stayed at `at`.
    MoveBlocked {
        /// Whose move.
        user: UserId,
        /// Where they stayed.
        at: Hex,
        /// Where they wanted to go.
        to: Hex,
    },
    /// An attack landed.
    Attacked {
        /// Who attacked.
        attacker: UserId,
        /// Who was hit.
        target: UserId,
        /// Health taken.
        damage: u32,
    },
    /// The target was out of range after the moves.
    AttackMissed {
        /// Who attacked.
        attacker: UserId,
        /// Who was missed.
        target: UserId,
    },
    /// The target was already out.
    AttackWasted {
        /// Who attacked.
        attacker: UserId,
        /// The player already out.
        target: UserId,
    },
    /// A character reached 0 health.
    PlayerOut {
        /// Whose character.
        user: UserId,
    },
    /// A round was resolved.
    RoundEnded {
        /// The round that ended.
        round: u32,
    },
    /// The game is over.
    Concluded {
        /// The winner, or `None` for a draw.
        winner: Option<UserId>,
    },
}

/// An entry of the events log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The game's version made by the change this event is part of: every
    /// change makes one version, so a client that saw version `v` has seen
    /// every event numbered `v` or lower.
    pub version: u64,
    /// The round being played (or resolved) when it happened.
    pub round: u32,
    /// What happened.
    pub kind: EventKind,
}

/// A player's view of their own character.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerStatus {
    /// The player.
    pub user: UserId,
    /// Current round of the game.
    pub round: u32,
    /// Where the character stands.
    pub position: Hex,
    /// Remaining health.
    pub health: u32,
    /// Points left this round.
    pub action_points: u32,
    /// Whether the character is still in.
    pub alive: bool,
    /// Actions this player registered in the current round.
    pub registered: Vec<Action>,
}

/// The complete state of one game. It is also its snapshot: a session
/// restored from it plays on identically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Game {
    /// Unique id.
    pub id: GameId,
    /// Short code players use to find the game.
    pub join_code: JoinCode,
    /// Rules this game is played with.
    pub config: GameConfig,
    /// Current round, from 1.
    pub round: u32,
    /// When the current round ends, in milliseconds since the Unix epoch.
    pub round_ends_at_ms: u64,
    /// The grid.
    pub world: World,
    /// Characters, in the order the users were given at creation.
    pub players: Vec<Player>,
    /// Actions registered this round, in registration order.
    pub actions: Vec<RegisteredAction>,
    /// Active or concluded.
    pub status: GameStatus,
    /// Incremented by every accepted change.
    pub version: u64,
    /// The most recent events, oldest first, at most `config.max_events`:
    /// each registered action and what each round's end did.
    /// Shared: a copy of the game (a session copies it for every write)
    /// shares its events rather than cloning each. Encoded as the events
    /// themselves.
    pub events: VecDeque<Arc<Event>>,
    /// Ids of the most recent writes applied, oldest first, each with the
    /// version it made (kept by the session, not the rules): a write
    /// delivered again after a crash or a handoff is recognised, not
    /// applied twice, and answered with the version it made.
    pub applied_ops: VecDeque<(crate::ids::OpId, u64)>,
}

impl Game {
    /// Creates a game in round 1, whose first round ends one round length
    /// after `now_ms`. Characters start evenly spread on the grid's outer
    /// ring; walls are placed from a seed derived from `id`.
    pub fn new(
        id: GameId,
        join_code: JoinCode,
        users: Vec<UserId>,
        config: GameConfig,
        now_ms: u64,
    ) -> Result<Game, GameError> {
        if !(config.min_players..=config.max_players).contains(&users.len()) {
            return Err(GameError::PlayerCount {
                min: config.min_players,
                max: config.max_players,
                got: users.len(),
            });
        }
        let mut seen = BTreeSet::new();
        for user in &users {
            if user.0.is_empty() || user.0.len() > config.max_user_len {
                return Err(GameError::InvalidUser(
                    user.0.chars().take(32).collect(),
                    config.max_user_len,
                ));
            }
            if !seen.insert(user) {
                return Err(GameError::DuplicateUser(user.clone()));
            }
        }

        let ring = Hex::ORIGIN.ring(config.grid_radius);
        let step = (ring.len() / users.len()).max(1);
        let starts: Vec<Hex> = (0..users.len())
            .map(|i| ring[(i * step) % ring.len()])
            .collect();

        let mut rng = SmallRng::seed_from_u64(id.0.as_u64_pair().0 ^ id.0.as_u64_pair().1);
        let candidates = (0..config.grid_radius)
            .flat_map(|r| Hex::ORIGIN.ring(r))
            .filter(|h| *h != Hex::ORIGIN);
        let walls: BTreeSet<Hex> = candidates
            .choose_multiple(&mut rng, config.wall_count as usize)
            .into_iter()
            .collect();

        let players = users
            .into_iter()
            .zip(starts)
            .map(|(user, position)| Player {
                user,
                position,
                health: config.starting_health,
                action_points: config.starting_action_points,
                actions_accepted: 0,
            })
            .collect();

        Ok(Game {
            id,
            join_code,
            round: 1,
            round_ends_at_ms: now_ms.saturating_add(config.round_length_ms),
            world: World {
                radius: config.grid_radius,
                walls,
            },
            players,
            actions: Vec::new(),
            status: GameStatus::Active,
            version: 0,
            events: VecDeque::new(),
            applied_ops: VecDeque::new(),
            config,
        })
    }

    /// Whether the game still takes actions.
    pub fn is_active(&self) -> bool {
        self.status == GameStatus::Active
    }

    /// The player of `user`, if any.
    pub fn player(&self, user: &UserId) -> Option<&Player> {
        self.players.iter().find(|p| &p.user == user)
    }

    /// Whether `user` plays in this game.
    pub fn has_player(&self, user: &UserId) -> bool {
        self.player(user).is_some()
    }

    /// Registers a move of `vector` for `user`'s character this round.
    pub fn register_move(&mut self, user: &UserId, vector: Hex) -> Result<(), GameError> {
        let cost = self.config.move_cost;
        let index = self.acting_player(user, cost)?;
        let distance = vector.length();
        if distance == 0 {
            return Err(GameError::InvalidMove(MoveError::ZeroVector));
        }
        if distance > self.config.max_move_distance as u64 {
            return Err(GameError::InvalidMove(MoveError::TooFar {
                distance,
                max: self.config.max_move_distance,
            }));
        }
        let destination = self.planned_position(user) + vector;
        if !self.world.on_grid(destination) {
            return Err(GameError::InvalidMove(MoveError::OffGrid(destination)));
        }
        if self.world.walls.contains(&destination) {
            return Err(GameError::InvalidMove(MoveError::Blocked(destination)));
        }
        self.accept(index, cost, Action::Move { vector });
        Ok(())
    }

    /// Registers an attack by `user` on `target` this round.
    pub fn register_attack(&mut self, user: &UserId, target: &UserId) -> Result<(), GameError> {
        let cost = self.config.attack_cost;
        let index = self.acting_player(user, cost)?;
        if user == target {
            return Err(GameError::SelfAttack);
        }
        match self.player(target) {
            None => return Err(GameError::TargetNotFound(target.clone())),
            Some(p) if !p.alive() => return Err(GameError::TargetNotAlive(target.clone())),
            Some(_) => {}
        }
        self.accept(
            index,
            cost,
            Action::Attack {
                target: target.clone(),
            },
        );
        Ok(())
    }

    /// Resolves the round's actions (see the module docs for the order) and
    /// starts the next round, whose end is one round length after `now_ms`,
    /// or concludes the game.
    pub fn end_round(&mut self, now_ms: u64) -> Result<(), GameError> {
        if !self.is_active() {
            return Err(GameError::GameConcluded);
        }
        let actions = std::mem::take(&mut self.actions);
        self.resolve_moves(&actions);
        self.resolve_attacks(&actions);

        self.push_event(EventKind::RoundEnded { round: self.round });
        let mut alive = self.players.iter().filter(|p| p.alive());
        match (alive.next(), alive.next()) {
            (Some(_), Some(_)) => {
                self.round += 1;
                self.round_ends_at_ms = now_ms.saturating_add(self.config.round_length_ms);
                let (gain, cap) = (
                    self.config.action_points_per_round,
                    self.config.max_action_points,
                );
                for p in self.players.iter_mut().filter(|p| p.alive()) {
                    p.action_points = p.action_points.saturating_add(gain).min(cap);
                }
            }
            (last, _) => {
                let winner = last.map(|p| p.user.clone());
                self.status = GameStatus::Concluded {
                    winner: winner.clone(),
                };
                self.push_event(EventKind::Concluded { winner });
            }
        }
        self.version += 1;
        Ok(())
    }

    /// `user`'s view of their character.
    pub fn player_status(&self, user: &UserId) -> Result<PlayerStatus, GameError> {
        let p = self
            .player(user)
            .ok_or_else(|| GameError::PlayerNotFound(user.clone()))?;
        Ok(PlayerStatus {
            user: p.user.clone(),
            round: self.round,
            position: p.position,
            health: p.health,
            action_points: p.action_points,
            alive: p.alive(),
            registered: self
                .actions
                .iter()
                .filter(|a| &a.user == user)
                .map(|a| a.action.clone())
                .collect(),
        })
    }

    /// The one-step moves `user` may register now as far as the grid goes:
    /// from their planned position, onto the grid and not onto a wall (a
    /// move may still be refused for want of action points, or because the
    /// player is out).
    pub fn legal_steps(&self, user: &UserId) -> Vec<Hex> {
        let from = self.planned_position(user);
        Hex::DIRECTIONS
            .into_iter()
            .filter(|d| self.world.walkable(from + *d))
            .collect()
    }

    /// Where `user`'s registered moves will take them if none is blocked.
    pub fn planned_position(&self, user: &UserId) -> Hex {
        let start = self.player(user).map(|p| p.position).unwrap_or(Hex::ORIGIN);
        self.actions
            .iter()
            .filter(|a| &a.user == user)
            .fold(start, |pos, a| match a.action {
                Action::Move { vector } => pos + vector,
                Action::Attack { .. } => pos,
            })
    }

    // Checks that `user` may act now and can pay `cost`; returns their index.
    fn acting_player(&self, user: &UserId, cost: u32) -> Result<usize, GameError> {
        if !self.is_active() {
            return Err(GameError::GameConcluded);
        }
        let index = self
            .players
            .iter()
            .position(|p| &p.user == user)
            .ok_or_else(|| GameError::PlayerNotFound(user.clone()))?;
        let player = &self.players[index];
        if !player.alive() {
            return Err(GameError::PlayerOut(user.clone()));
        }
        if player.action_points < cost {
            return Err(GameError::NotEnoughActionPoints {
                needed: cost,
                available: player.action_points,
            });
        }
        Ok(index)
    }

    fn accept(&mut self, index: usize, cost: u32, action: Action) {
        let player = &mut self.players[index];
        player.action_points -= cost;
        player.actions_accepted += 1;
        let user = player.user.clone();
        self.push_event(EventKind::Registered {
            user: user.clone(),
            action: action.clone(),
        });
        self.actions.push(RegisteredAction { user, action });
        self.version += 1;
    }

    fn resolve_moves(&mut self, actions: &[RegisteredAction]) {
        for registered in actions {
            let Action::Move { vector } = registered.action else {
                continue;
            };
            let Some(index) = self.players.iter().position(|p| p.user == registered.user) else {
                continue;
            };
            let from = self.players[index].position;
            let to = from + vector;
            let occupied = self
                .players
                .iter()
                .any(|p| p.alive() && p.position == to && p.user != registered.user);
            let user = registered.user.clone();
            if occupied || !self.world.walkable(to) {
                self.push_event(EventKind::MoveBlocked { user, at: from, to });
            } else {
                self.players[index].position = to;
                self.push_event(EventKind::Moved { user, from, to });
            }
        }
    }

    fn resolve_attacks(&mut self, actions: &[RegisteredAction]) {
        let mut damage: BTreeMap<usize, u32> = BTreeMap::new();
        for registered in actions {
            let Action::Attack { target } = &registered.action else {
                continue;
            };
            let (Some(attacker), Some(victim)) = (
                self.players.iter().find(|p| p.user == registered.user),
                self.players.iter().position(|p| &p.user == target),
            ) else {
                continue;
            };
            let attacker_user = attacker.user.clone();
            let victim_player = &self.players[victim];
            let kind = if !victim_player.alive() {
                EventKind::AttackWasted {
                    attacker: attacker_user,
                    target: target.clone(),
                }
            } else if attacker.position.distance(victim_player.position)
                > self.config.attack_range as u64
            {
                EventKind::AttackMissed {
                    attacker: attacker_user,
                    target: target.clone(),
                }
            } else {
                let total = damage.entry(victim).or_default();
                *total = total.saturating_add(self.config.attack_damage);
                EventKind::Attacked {
                    attacker: attacker_user,
                    target: target.clone(),
                    damage: self.config.attack_damage,
                }
            };
            self.push_event(kind);
        }
        for (victim, amount) in damage {
            let player = &mut self.players[victim];
            player.health = player.health.saturating_sub(amount);
            if player.health == 0 {
                let user = player.user.clone();
                self.push_event(EventKind::PlayerOut { user });
            }
        }
    }

    /// Logs an event of the change being applied, which will make the
    /// next version.
    fn push_event(&mut self, kind: EventKind) {
        self.events.push_back(Arc::new(Event {
            version: self.version + 1,
            round: self.round,
            kind,
        }));
        while self.events.len() > self.config.max_events {
            self.events.pop_front();
        }
    }
}

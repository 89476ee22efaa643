//! The games one node is responsible for, as plain data: those it owns
//! (with where their backup copy is and what is in flight for each), and the
//! copies it holds of other members' games.

use super::wire::{Corr, Snapshot};
use super::CallId;
use crate::membership::MemberId;
use crate::registry::{Registration, Time};
use minotaur_core::GameId;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Who waits for a start to finish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiter {
    /// A local create.
    Call(CallId),
    /// A peer's [`Msg::Start`](super::wire::Msg::Start).
    Peer(MemberId, Corr),
}

/// Where an owned game is in its life here.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Its session is starting (until [`Owned::up`]) and its first copy is
    /// being placed; the waiters are answered once both are done and peers
    /// know of it.
    Starting {
        /// Who is told the outcome.
        waiters: Vec<Waiter>,
        /// Whether the first copy was placed (`Some(false)`: it failed).
        copied: Option<bool>,
        /// Set while peers acknowledge the registration.
        announcing: Option<Corr>,
    },
    /// Its session runs and takes commands.
    Running,
    /// Its session was asked to stop and hand its state back.
    Releasing,
    /// Its state is being started on `to`.
    Moving {
        /// The new owner.
        to: MemberId,
        /// The start request in flight.
        corr: Corr,
        /// The state handed over (sent again if the request times out);
        /// boxed, as few games are moving at any one time.
        snapshot: Box<Snapshot>,
        /// The epoch the new owner registers it under.
        epoch: u64,
    },
}

/// A game this node owns.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Its registration (owner: this node), version kept current.
    /// Shared with the registry's entry once the game is registered.
    pub reg: Arc<Registration>,
    /// Where it is in its life here.
    pub phase: Phase,
    /// The member holding its latest confirmed copy, and that copy's version.
    pub backup: Option<(MemberId, u64)>,
    /// The copy request in flight for it: at most one at a time, so two
    /// copies of one game never race.
    pub copying: Option<Corr>,
    /// A save that arrived while a copy was in flight.
    pub queued: Option<Box<Snapshot>>,
    /// Whether its session waits for the outcome of a save.
    pub save_waiting: bool,
    /// Whether its session reported it started (a game restarted here
    /// runs at once, but its session may come up late: it is not asked to
    /// hand its state over before).
    pub up: bool,
    /// The latest state the control saw (a start or a save), kept only
    /// while a copy of it is in flight or queued, or while a restarted
    /// game has no backup yet.
    pub latest: Option<Box<Snapshot>>,
}

/// Why a copy was sent: what to do once it lands or fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CopyReason {
    /// A session's save: the session is answered.
    Save,
    /// The first copy of a starting game.
    Start,
    /// A failover or retaken game: nothing waits.
    Restart,
}

/// A copy request in flight.
#[derive(Debug, Clone)]
pub struct CopyBatch {
    /// The member asked to keep the copies.
    pub to: MemberId,
    /// Each game, the version copied, and why.
    pub games: Vec<(GameId, u64, CopyReason)>,
    /// When it is given up.
    pub deadline: Time,
    /// Members already tried for these games, best first.
    pub tried: Vec<MemberId>,
}

/// A copy of another member's game, kept to restart it if that member fails.
#[derive(Debug, Clone)]
pub struct Held {
    /// The owner's registration epoch.
    pub epoch: u64,
    /// The game's state.
    pub snapshot: Snapshot,
}

/// Copies this node holds, one per game *and owner*: after a split two
/// members may each have owned a game, and the copy of the one that owns it
/// now must never be shadowed by the other's.
#[derive(Debug, Clone, Default)]
pub struct Copies {
    by_game: BTreeMap<(GameId, MemberId), Held>,
}

impl Copies {
    /// Keeps `held` unless this owner already sent a newer one.
    pub fn store(&mut self, owner: MemberId, held: Held) {
        let key = (held.snapshot.id, owner);
        let stale = self.by_game.get(&key).is_some_and(|have| {
            (have.epoch, have.snapshot.version) > (held.epoch, held.snapshot.version)
        });
        if !stale {
            self.by_game.insert(key, held);
        }
    }

    /// Forgets `owner`'s copy of game `id`.
    pub fn drop_copy(&mut self, id: GameId, owner: &MemberId) {
        self.by_game.remove(&(id, owner.clone()));
    }

    /// Removes and returns every copy `owner` sent, in game order.
    pub fn take_owned_by(&mut self, owner: &MemberId) -> Vec<Held> {
        let keys: Vec<(GameId, MemberId)> = self
            .by_game
            .keys()
            .filter(|(_, o)| o == owner)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.by_game.remove(&k))
            .collect()
    }

    /// Whether `owner`'s copy of game `id` is held.
    pub fn holds(&self, owner: &MemberId, id: GameId) -> bool {
        self.by_game.contains_key(&(id, owner.clone()))
    }

    /// Forgets `owner`'s copies of every game not in `keep` (sorted).
    pub fn retain_of(&mut self, owner: &MemberId, keep: &[GameId]) -> usize {
        let before = self.by_game.len();
        self.by_game
            .retain(|(id, o), _| o != owner || keep.binary_search(id).is_ok());
        before - self.by_game.len()
    }

    /// The copy of game `id` that would win a registry conflict.
    pub fn best(&self, id: GameId) -> Option<&Held> {
        self.by_game
            .range((id, MemberId::new("", 0))..)
            .take_while(|((g, _), _)| *g == id)
            .map(|(_, h)| h)
            .max_by_key(|h| (h.snapshot.version, h.epoch))
    }

    /// Every copy with its owner, in game order.
    pub fn iter(&self) -> impl Iterator<Item = (&GameId, &MemberId, &Held)> {
        self.by_game.iter().map(|((id, o), h)| (id, o, h))
    }
}

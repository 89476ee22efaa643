//! The games one node is responsible for, as plain data: those it owns
//! (with where their backup copy is and what is in flight for each), and the
//! copies it holds of other members' games.

use super::wire::{Corr, Delta, Snapshot, StaleCopy, Update};
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

/// Where an owned game is in its life here. The variants with much to
/// hold are boxed: few games start or move at any one time, and every owned
/// game pays for the largest variant.
#[derive(Debug, Clone)]
pub enum Phase {
    /// Its session is starting (until [`Owned::up`]) and its first copy is
    /// being placed; the waiters are answered once both are done and peers
    /// know of it.
    Starting(Box<Starting>),
    /// Its session runs and takes commands.
    Running,
    /// Its session was asked to passivate (it may decline: a command came
    /// meanwhile).
    Passivating {
        /// A command arrived for it meanwhile: start it again at once.
        wake: bool,
    },
    /// Passive: no session runs; the game is kept here as its state alone
    /// and started again by the next command for it.
    Passive(Dormant),
    /// Its session was asked to stop and hand its state back.
    Releasing,
    /// Its state is being started on another member.
    Moving(Box<Moving>),
}

/// A game starting here: see [`Phase::Starting`].
#[derive(Debug, Clone)]
pub struct Starting {
    /// Who is told the outcome.
    pub waiters: Vec<Waiter>,
    /// Whether the first copy was placed (`Some(false)`: it failed).
    pub copied: Option<bool>,
    /// Set while peers acknowledge the registration.
    pub announcing: Option<Corr>,
    /// Whether every peer acknowledged it.
    pub announced: bool,
    /// Whether its join code is claimed for it (a new game claims it
    /// while it starts; any other start has it already).
    pub claimed: bool,
    /// The state of a passive game handed over to this node: no
    /// session starts, and once started the game is passive here too.
    pub asleep: Option<Snapshot>,
    /// Whether the game is in the durable store (always, without one).
    pub persisted: bool,
}

/// A game moving away: see [`Phase::Moving`].
#[derive(Debug, Clone)]
pub struct Moving {
    /// The new owner.
    pub to: MemberId,
    /// The start request in flight.
    pub corr: Corr,
    /// The state handed over (sent again if the request times out).
    pub snapshot: Snapshot,
    /// The epoch the new owner registers it under.
    pub epoch: u64,
    /// Whether it was passive here (it stays passive there).
    pub passive: bool,
}

/// A passive game's state: what its session handed back, less what its
/// registration holds already (its join code and players), in as few
/// bytes as it takes: an owner may keep a great many.
#[derive(Debug, Clone)]
pub struct Dormant {
    /// Its version.
    pub version: u64,
    /// The encoded state.
    pub state: Box<[u8]>,
    /// Encoded changes that follow the state (a game taken over from a
    /// backup's copy). Behind one thin pointer (a boxed slice would take
    /// two words): nearly every passive game has none, and an owner keeps
    /// a great many.
    #[allow(clippy::box_collection)]
    pub changes: Option<Box<Vec<Vec<u8>>>>,
}

impl Dormant {
    /// Keeps `snapshot`'s state.
    pub fn of(snapshot: Snapshot) -> Self {
        Dormant {
            version: snapshot.version,
            state: snapshot.state.into_boxed_slice(),
            changes: (!snapshot.changes.is_empty()).then(|| Box::new(snapshot.changes)),
        }
    }

    /// The snapshot of the game registered as `reg`.
    pub fn snapshot(&self, reg: &Registration) -> Snapshot {
        Snapshot {
            id: reg.id,
            version: self.version,
            join_code: reg.join_code.clone(),
            users: reg.users.clone(),
            active: true,
            state: self.state.to_vec(),
            changes: self.changes.as_deref().cloned().unwrap_or_default(),
        }
    }
}

/// A game this node owns. An owner may keep a great many, most of them at
/// rest, so what only a game with something in flight needs is in one box
/// (`InFlight`), absent at rest.
#[derive(Debug, Clone)]
pub struct Owned {
    /// Its registration (owner: this node), version kept current.
    /// Shared with the registry's entry once the game is registered.
    pub reg: Arc<Registration>,
    /// Where it is in its life here.
    pub phase: Phase,
    /// The member holding its latest confirmed copy, and that copy's version.
    pub backup: Option<(MemberId, u64)>,
    /// How many changes the backup's copy holds on top of the state last
    /// copied whole; none when the next copy must be whole (no whole copy
    /// is known to be there).
    pub chain: Option<u32>,
    /// Whether its session waits for the outcome of a save.
    pub save_waiting: bool,
    /// Whether its session reported it started (a game restarted here
    /// runs at once, but its session may come up late: it is not asked to
    /// hand its state over before).
    pub up: bool,
    flight: Option<Box<InFlight>>,
}

/// What is in flight for an owned game, besides its phase.
#[derive(Debug, Clone, Default)]
struct InFlight {
    /// The copy request in flight for it: at most one at a time, so two
    /// copies of one game never race.
    copying: Option<Corr>,
    /// A save that arrived while a copy was in flight.
    queued: Option<Update>,
    /// The latest state the control saw (a start or a save), kept only
    /// while a copy of it is in flight or queued, or while a restarted
    /// game has no backup yet.
    latest: Option<Update>,
    /// Members that may still hold an older copy (the game's copy moved
    /// away from them, or the game moved here from its earlier owner, and
    /// they were not told, or not heard dropping it). While one of them
    /// could take the game over from that copy, no new write is
    /// acknowledged: each leaves this list when it says it dropped the
    /// copy, receives the latest one from this node, or is fenced.
    stale_copies: Vec<StaleCopy>,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        self.copying.is_none()
            && self.queued.is_none()
            && self.latest.is_none()
            && self.stale_copies.is_empty()
    }
}

impl Owned {
    /// A game taken here under `reg`, in `phase`, with no backup yet and
    /// nothing in flight.
    pub fn new(reg: Arc<Registration>, phase: Phase) -> Self {
        Owned {
            reg,
            phase,
            backup: None,
            chain: None,
            save_waiting: false,
            up: false,
            flight: None,
        }
    }

    /// The copy request in flight for it, if any.
    pub fn copying(&self) -> Option<Corr> {
        self.flight.as_ref().and_then(|f| f.copying)
    }

    /// A save that arrived while a copy was in flight.
    pub fn queued(&self) -> Option<&Update> {
        self.flight.as_ref().and_then(|f| f.queued.as_ref())
    }

    /// The latest state kept for a copy (see [`Owned::set_latest`]).
    pub fn latest(&self) -> Option<&Update> {
        self.flight.as_ref().and_then(|f| f.latest.as_ref())
    }

    /// Members that may still hold an older copy of it: while one of them
    /// could take the game over from that copy, no new write is
    /// acknowledged.
    pub fn stale_copies(&self) -> &[StaleCopy] {
        self.flight.as_ref().map_or(&[], |f| &f.stale_copies)
    }

    /// Sets the copy request in flight.
    pub fn set_copying(&mut self, corr: Option<Corr>) {
        if corr.is_none() && self.flight.is_none() {
            return;
        }
        self.change(|f| f.copying = corr);
    }

    /// Queues a save behind the copy in flight.
    pub fn set_queued(&mut self, update: Option<Update>) {
        if update.is_none() && self.flight.is_none() {
            return;
        }
        self.change(|f| f.queued = update);
    }

    /// Keeps the latest state seen, while a copy of it is in flight or
    /// queued, or while a restarted game has no backup yet.
    pub fn set_latest(&mut self, update: Option<Update>) {
        if update.is_none() && self.flight.is_none() {
            return;
        }
        self.change(|f| f.latest = update);
    }

    /// Takes the queued save.
    pub fn take_queued(&mut self) -> Option<Update> {
        self.flight.as_ref()?;
        let mut taken = None;
        self.change(|f| taken = f.queued.take());
        taken
    }

    /// Takes the latest state kept.
    pub fn take_latest(&mut self) -> Option<Update> {
        self.flight.as_ref()?;
        let mut taken = None;
        self.change(|f| taken = f.latest.take());
        taken
    }

    /// Notes that a member may hold an older copy: one entry per holder
    /// and owner, with the latest epoch.
    pub fn note_stale(&mut self, stale: StaleCopy) {
        self.change(|f| note_stale(&mut f.stale_copies, stale));
    }

    /// Keeps only the stale copies `keep` accepts.
    pub fn retain_stale_copies(&mut self, keep: impl FnMut(&StaleCopy) -> bool) {
        if !self.stale_copies().is_empty() {
            self.change(|f| f.stale_copies.retain(keep));
        }
    }

    /// Applies `change` to what is in flight, and drops the box once
    /// nothing is. (The setters and takers do not call it to clear what
    /// is not there: settling a save clears fields of games at rest all
    /// the time, and would box and free each time.)
    fn change(&mut self, change: impl FnOnce(&mut InFlight)) {
        let flight = self.flight.get_or_insert_with(Box::default);
        change(flight);
        if flight.is_empty() {
            self.flight = None;
        }
    }
}

/// Records in `list` that a member may hold an older copy; one entry per
/// holder and owner, with the latest epoch.
pub fn note_stale(list: &mut Vec<StaleCopy>, stale: StaleCopy) {
    let same = list
        .iter_mut()
        .find(|s| s.holder == stale.holder && s.owner == stale.owner);
    match same {
        Some(s) => s.epoch = s.epoch.max(stale.epoch),
        None => list.push(stale),
    }
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

/// One game's copy in a copy request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copying {
    /// The game.
    pub id: GameId,
    /// The version copied.
    pub version: u64,
    /// Why.
    pub reason: CopyReason,
    /// Whether only its change was sent.
    pub delta: bool,
}

/// A copy request in flight.
#[derive(Debug, Clone)]
pub struct CopyBatch {
    /// The member asked to keep the copies.
    pub to: MemberId,
    /// Each game's copy.
    pub games: Vec<Copying>,
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
    /// This node's lease generation when the copy was kept (or last
    /// confirmed current by its owner). A copy from an earlier generation
    /// may be stale: while this node's lease lapsed, a majority may have
    /// fenced it and its owner moved the backup elsewhere (unless the
    /// grants of the current generation rule that out, see
    /// [`super::quorum::Quorum::current_from`]).
    pub gen: u64,
    /// The copy was current when its owner was counted down here, and the
    /// owner has not been heard since: a later lapse of this node's lease
    /// does not make it stale (the owner acknowledged nothing it could
    /// have told us of).
    pub pinned: bool,
}

impl Held {
    /// Whether the game may be restarted from this copy while copies kept
    /// in generation `from` or later are current.
    pub fn current(&self, from: u64) -> bool {
        self.pinned || self.gen >= from
    }
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

    /// Replays `delta` on `owner`'s copy of its game, if that copy is from
    /// `epoch` and at the version before; returns whether it was. The copy
    /// then counts as kept in generation `gen`, as a whole one would.
    pub fn extend(&mut self, owner: &MemberId, epoch: u64, gen: u64, delta: Delta) -> bool {
        let Some(held) = self.by_game.get_mut(&(delta.id, owner.clone())) else {
            return false;
        };
        if held.epoch != epoch || held.snapshot.version.checked_add(1) != Some(delta.version) {
            return false;
        }
        held.gen = gen;
        held.pinned = false;
        let snapshot = &mut held.snapshot;
        snapshot.version = delta.version;
        snapshot.active = delta.active;
        snapshot.changes.push(delta.change);
        true
    }

    /// Forgets `owner`'s copy of game `id`.
    pub fn drop_copy(&mut self, id: GameId, owner: &MemberId) {
        self.by_game.remove(&(id, owner.clone()));
    }

    /// Forgets `owner`'s copy of game `id` if it is from `epoch` or
    /// earlier (a newer one was sent after the request to drop).
    pub fn drop_copy_upto(&mut self, id: GameId, owner: &MemberId, epoch: u64) {
        let key = (id, owner.clone());
        if self.by_game.get(&key).is_some_and(|h| h.epoch <= epoch) {
            self.by_game.remove(&key);
        }
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

    /// `owner` was counted down: its copies current while those kept in
    /// generation `from` or later are stay current until it is heard again.
    pub fn pin_owned_by(&mut self, owner: &MemberId, from: u64) {
        for ((_, o), held) in self.by_game.iter_mut() {
            if o == owner && held.current(from) {
                held.pinned = true;
            }
        }
    }

    /// `owner` is live again: its copies count by generation again.
    pub fn unpin_owned_by(&mut self, owner: &MemberId) {
        for ((_, o), held) in self.by_game.iter_mut() {
            if o == owner {
                held.pinned = false;
            }
        }
    }

    /// `owner` says this node is the backup of the games in `keep` (sorted),
    /// each with the version it copied here: its copies of other games are
    /// forgotten, those at that version or newer are stamped current in
    /// generation `gen` if given. Returns the games of `keep` with no such
    /// copy here.
    pub fn confirm_of(
        &mut self,
        owner: &MemberId,
        keep: &[(GameId, u64)],
        gen: Option<u64>,
    ) -> Vec<GameId> {
        self.by_game
            .retain(|(id, o), _| o != owner || keep.binary_search_by_key(id, |(k, _)| *k).is_ok());
        let mut missing = Vec::new();
        for (id, version) in keep {
            match self.by_game.get_mut(&(*id, owner.clone())) {
                Some(held) if held.snapshot.version >= *version => {
                    if let Some(gen) = gen {
                        held.gen = held.gen.max(gen);
                    }
                }
                _ => missing.push(*id),
            }
        }
        missing
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

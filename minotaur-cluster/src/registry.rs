//! The distributed registry: every node keeps a full copy of which member
//! owns which game, so a lookup is a local read.
//!
//! An owner announces its registrations to every member; a new link starts
//! with both sides sending all they own. Two registrations of one game id
//! (a move, a failover, or two sides of a healed split) are resolved the
//! same way on every node by [`Registration::outranks`]: the higher game
//! version wins, then the higher epoch (each move or failover increments
//! it), then the smaller owner id. Two games claiming one join code keep it
//! for the smaller game id; the other game keeps running, findable by id.

use crate::membership::MemberId;
use arc_swap::ArcSwap;
use imbl::{OrdMap, OrdSet};
use minotaur_core::{GameId, JoinCode, UserId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// How long a join-code claim holds without its registration arriving.
const CLAIM_TTL: Duration = Duration::from_secs(10);

/// Time on a node's clock: how long since some fixed moment. The control
/// state machine is given the time with every input, so it never reads a
/// clock itself and a simulation can run it on simulated time.
pub type Time = Duration;

/// Where one game lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The game.
    pub id: GameId,
    /// Its join code.
    pub join_code: JoinCode,
    /// Its players.
    pub users: Vec<UserId>,
    /// The member hosting its session.
    pub owner: MemberId,
    /// Incremented each time the session moves or fails over.
    pub epoch: u64,
    /// The game's version when last announced.
    pub version: u64,
}

impl Registration {
    /// Whether `self` wins over `other` for the same game id.
    pub fn outranks(&self, other: &Registration) -> bool {
        (self.version, self.epoch, std::cmp::Reverse(&self.owner))
            > (other.version, other.epoch, std::cmp::Reverse(&other.owner))
    }
}

/// What applying a registration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// First registration of the id, or a newer announcement by the same
    /// owner and epoch.
    Stored,
    /// It won over a registration by another owner, returned here.
    Replaced(Registration),
    /// It lost to the registration kept, returned here.
    Rejected(Registration),
}

/// The games under one join code (one, but for conflicts) or of one user
/// (often one, sometimes very many). A persistent set would cost about a
/// kilobyte even for one game, so one game is kept inline; more share
/// structure, so adding one to a large set copies a path, not the set.
#[derive(Debug, Clone)]
enum Ids {
    One(GameId),
    Many(OrdSet<GameId>),
}

impl Ids {
    /// `self` with `id` added, or `None` when it holds `id` already.
    fn with(&self, id: GameId) -> Option<Ids> {
        match self {
            Ids::One(one) if *one == id => None,
            Ids::One(one) => Some(Ids::Many(OrdSet::from_iter([*one, id]))),
            Ids::Many(ids) if ids.contains(&id) => None,
            Ids::Many(ids) => Some(Ids::Many(ids.update(id))),
        }
    }

    /// `self` without `id`: `None` when nothing is left.
    fn without(&self, id: GameId) -> Option<Ids> {
        match self {
            Ids::One(one) if *one == id => None,
            Ids::One(_) => Some(self.clone()),
            Ids::Many(ids) => {
                let ids = ids.without(&id);
                match ids.len() {
                    0 => None,
                    1 => ids.get_min().map(|one| Ids::One(*one)),
                    _ => Some(Ids::Many(ids)),
                }
            }
        }
    }

    fn contains(&self, id: GameId) -> bool {
        match self {
            Ids::One(one) => *one == id,
            Ids::Many(ids) => ids.contains(&id),
        }
    }

    /// The smallest.
    fn first(&self) -> Option<GameId> {
        match self {
            Ids::One(one) => Some(*one),
            Ids::Many(ids) => ids.get_min().copied(),
        }
    }

    fn to_vec(&self) -> Vec<GameId> {
        match self {
            Ids::One(one) => vec![*one],
            Ids::Many(ids) => ids.iter().copied().collect(),
        }
    }
}

/// A registry as plain data: no lock, no clock. The control state machine
/// owns one; [`Registry`] wraps one for callers that share it. Its maps are
/// persistent (structure-sharing), so a copy for readers costs nothing.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Shared entries: a copy of the table for readers shares them, and a
    /// change copies only the map nodes on its path (pointers), never the
    /// registrations beside it.
    games: OrdMap<GameId, Arc<Registration>>,
    users: OrdMap<UserId, Ids>,
    claims: OrdMap<JoinCode, (GameId, Time)>,
    /// Games per owner, kept with `games` so counting is not a full scan
    /// (placement asks for it on every create).
    owners: OrdMap<MemberId, usize>,
    /// Each owner's games hashed as [`Table::digest_of`] tells, kept with
    /// `games` too: peers compare digests every gossip round, and a scan of
    /// every game for each would grow with the cluster's games.
    hashes: OrdMap<MemberId, u64>,
    /// Every game in `games` under its join code. The code belongs to the
    /// smallest id (two games hold one code only after a split's conflict),
    /// and passes to the next when that one goes.
    by_code: OrdMap<JoinCode, Ids>,
    /// Counts the changes readers are told of: every one but an owner's
    /// own version bump (see [`Table::changes`]).
    changes: u64,
}

/// A well-spread 64-bit hash of a game id and epoch (splitmix64's
/// finaliser), the same in every build: digests are compared across nodes.
fn mix(id: GameId, epoch: u64) -> u64 {
    let v = id.0.as_u128();
    let mut z =
        (v as u64) ^ ((v >> 64) as u64).rotate_left(29) ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Table {
    /// Inserts `reg` into `games`, keeping `owners` in step.
    fn put(&mut self, reg: Arc<Registration>) {
        self.changes += 1;
        *self.owners.entry(reg.owner.clone()).or_insert(0) += 1;
        *self.hashes.entry(reg.owner.clone()).or_insert(0) ^= mix(reg.id, reg.epoch);
        if let Some(old) = self.games.insert(reg.id, reg) {
            self.uncount(&old);
        }
    }

    /// Removes game `id` from `games`, keeping `owners` in step.
    fn take(&mut self, id: GameId) -> Option<Registration> {
        let reg = self.games.remove(&id)?;
        self.changes += 1;
        self.uncount(&reg);
        Some(Arc::unwrap_or_clone(reg))
    }

    /// Takes `reg`, no longer in `games`, out of its owner's count and hash.
    fn uncount(&mut self, reg: &Registration) {
        let owner = &reg.owner;
        if let Some(hash) = self.hashes.get_mut(owner) {
            *hash ^= mix(reg.id, reg.epoch); // XOR: its own inverse
        }
        if let Some(n) = self.owners.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(owner);
                self.hashes.remove(owner);
            }
        }
    }

    fn index(&mut self, reg: &Registration) {
        // Each map is read before it is written: a write copies the nodes
        // on its path, which readers of an earlier copy share.
        if self.claims.contains_key(&reg.join_code) {
            self.claims.remove(&reg.join_code);
        }
        add(&mut self.by_code, &reg.join_code, reg.id);
        for user in &reg.users {
            add(&mut self.users, user, reg.id);
        }
    }

    fn unindex(&mut self, reg: &Registration) {
        drop_id(&mut self.by_code, &reg.join_code, reg.id);
        for user in &reg.users {
            drop_id(&mut self.users, user, reg.id);
        }
    }
}

/// Adds `id` under `key`.
fn add<K: Ord + Clone>(map: &mut OrdMap<K, Ids>, key: &K, id: GameId) {
    let ids = match map.get(key) {
        None => Some(Ids::One(id)),
        Some(ids) => ids.with(id),
    };
    if let Some(ids) = ids {
        map.insert(key.clone(), ids);
    }
}

/// Removes `id` from under `key`; returns what is left there.
fn drop_id<K: Ord + Clone>(map: &mut OrdMap<K, Ids>, key: &K, id: GameId) -> Option<Ids> {
    let ids = map.get(key)?;
    if !ids.contains(id) {
        return Some(ids.clone());
    }
    match ids.without(id) {
        Some(left) => {
            map.insert(key.clone(), left.clone());
            Some(left)
        }
        None => {
            map.remove(key);
            None
        }
    }
}

impl Table {
    /// How many changes the table went through, but for the version bumps
    /// of [`Table::bump_version`]: a node publishes its table to readers
    /// only when this moved. A version bump alone is the owner recording a
    /// write; publishing the table for it would copy the map nodes on the
    /// game's path at the next write (the readers' copy shares them), on
    /// every write, for a figure that peers' registries do not follow
    /// either (they learn versions only when the game is announced again).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Where game `id` lives.
    pub fn lookup(&self, id: GameId) -> Option<&Registration> {
        self.games.get(&id).map(|r| &**r)
    }

    /// The game registered under `code`.
    pub fn by_join_code(&self, code: &JoinCode) -> Option<GameId> {
        self.by_code.get(code).and_then(Ids::first)
    }

    /// Games `user` plays in.
    pub fn of_user(&self, user: &UserId) -> Vec<GameId> {
        self.users.get(user).map(Ids::to_vec).unwrap_or_default()
    }

    /// Every registration.
    /// A digest of the games registered to `owner`: how many, and a hash of
    /// their ids and epochs that does not depend on order. Two tables that
    /// agree on `owner`'s games have the same digest.
    pub fn digest_of(&self, owner: &MemberId) -> (u64, u64) {
        let count = self.owners.get(owner).copied().unwrap_or(0);
        let hash = self.hashes.get(owner).copied().unwrap_or(0);
        (count as u64, hash)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.games.values().map(|r| &**r)
    }

    /// Up to `limit` registrations in game id order, after `after` if
    /// given: a page of a table too large to list whole.
    pub fn page(&self, after: Option<GameId>, limit: usize) -> Vec<Registration> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.games
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, r)| (**r).clone())
            .collect()
    }

    /// Number of registered games.
    pub fn len(&self) -> usize {
        self.games.len()
    }

    /// Number of games per owner.
    pub fn count_by_owner(&self) -> &OrdMap<MemberId, usize> {
        &self.owners
    }

    /// Number of games `owner` owns.
    pub fn count_of(&self, owner: &MemberId) -> usize {
        self.owners.get(owner).copied().unwrap_or(0)
    }

    /// Applies a registration, resolving a conflict deterministically.
    pub fn apply(&mut self, reg: impl Into<Arc<Registration>>) -> Applied {
        let reg: Arc<Registration> = reg.into();
        match self.games.get(&reg.id) {
            Some(old) if old.owner == reg.owner && old.epoch == reg.epoch => {
                if reg.version > old.version {
                    self.put(reg);
                }
                Applied::Stored
            }
            Some(old) if !reg.outranks(old) => Applied::Rejected((**old).clone()),
            Some(old) => {
                let old = (**old).clone();
                // A move or a failover changes only the owner, epoch and
                // version: the indexes by code and user stay as they are.
                if old.join_code != reg.join_code || old.users != reg.users {
                    self.unindex(&old);
                    self.index(&reg);
                }
                self.put(reg);
                Applied::Replaced(old)
            }
            None => {
                self.index(&reg);
                self.put(reg);
                Applied::Stored
            }
        }
    }

    /// Records a newer version of a game, told by the owner of its entry:
    /// the entry becomes `reg` itself (shared, not copied) when it is the
    /// same registration but for the version.
    pub fn bump_version(&mut self, reg: &Arc<Registration>) {
        let Some(old) = self.games.get(&reg.id) else {
            return;
        };
        if old.owner != reg.owner || reg.version <= old.version {
            return;
        }
        if old.epoch == reg.epoch {
            self.games.insert(reg.id, reg.clone());
        } else if let Some(old) = self.games.get_mut(&reg.id) {
            Arc::make_mut(old).version = reg.version;
        }
    }

    /// Removes game `id` if `owner` still owns it.
    pub fn remove(&mut self, id: GameId, owner: &MemberId) -> bool {
        match self.games.get(&id) {
            Some(reg) if &reg.owner == owner => {
                if let Some(reg) = self.take(id) {
                    self.unindex(&reg);
                }
                true
            }
            _ => false,
        }
    }

    /// Removes every game `owner` still owns; returns their ids.
    pub fn purge_owner(&mut self, owner: &MemberId) -> Vec<GameId> {
        if !self.owners.contains_key(owner) {
            return Vec::new();
        }
        let mut ids: Vec<GameId> = self
            .games
            .values()
            .filter(|r| &r.owner == owner)
            .map(|r| r.id)
            .collect();
        ids.sort();
        for id in &ids {
            self.remove(*id, owner);
        }
        ids
    }

    /// Reserves `code` for game `id` until its registration arrives.
    pub fn claim(&mut self, code: &JoinCode, id: GameId, now: Time) -> bool {
        if self.by_join_code(code).is_some_and(|other| other != id) {
            return false;
        }
        match self.claims.get(code) {
            Some((other, at)) if *other != id && now.saturating_sub(*at) < CLAIM_TTL => false,
            _ => {
                self.claims.insert(code.clone(), (id, now));
                true
            }
        }
    }
}

/// This node's copy of the registry. Cheap to clone.
///
/// Read-only: only the node's control changes the registry, and it
/// publishes each new table whole, so a reader never waits on it and never
/// sees a change half made.
#[derive(Clone)]
pub struct Registry {
    table: Arc<ArcSwap<Table>>,
    /// Signalled after each publication of the node's view (registry,
    /// members, links), so a command waiting for its game to reappear
    /// looks again at once instead of on a timer.
    published: Arc<tokio::sync::watch::Sender<()>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            table: Arc::default(),
            published: Arc::new(tokio::sync::watch::Sender::new(())),
        }
    }
}

impl Registry {
    fn read(&self) -> arc_swap::Guard<Arc<Table>> {
        self.table.load()
    }

    /// Publishes a new table (the one a node's control keeps).
    pub(crate) fn replace(&self, table: Table) {
        self.table.store(Arc::new(table));
    }

    /// Where game `id` lives.
    pub fn lookup(&self, id: GameId) -> Option<Registration> {
        self.read().lookup(id).cloned()
    }

    /// Tells every [`changes`](Self::changes) receiver that the node's
    /// view was published anew.
    pub(crate) fn published(&self) {
        self.published.send_replace(());
    }

    /// Fires after each publication of the node's view.
    pub(crate) fn changes(&self) -> tokio::sync::watch::Receiver<()> {
        self.published.subscribe()
    }

    /// Who hosts game `id`: what routing a command needs, without copying
    /// the whole registration.
    pub(crate) fn owner_of(&self, id: GameId) -> Option<MemberId> {
        self.read().lookup(id).map(|r| r.owner.clone())
    }

    /// The game registered under `code`.
    pub fn by_join_code(&self, code: &JoinCode) -> Option<GameId> {
        self.read().by_join_code(code)
    }

    /// Games `user` plays in.
    pub fn of_user(&self, user: &UserId) -> Vec<GameId> {
        self.read().of_user(user)
    }

    /// Up to `limit` registrations in game id order, after `after` if
    /// given.
    pub fn page(&self, after: Option<GameId>, limit: usize) -> Vec<Registration> {
        self.read().page(after, limit)
    }

    /// Every registration.
    pub fn all(&self) -> Vec<Registration> {
        self.read().iter().cloned().collect()
    }

    /// Number of registered games.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether no game is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of games per owner.
    pub fn count_by_owner(&self) -> std::collections::HashMap<MemberId, usize> {
        self.read()
            .count_by_owner()
            .iter()
            .map(|(m, n)| (m.clone(), *n))
            .collect()
    }

    /// Number of games `owner` owns.
    pub fn count_of(&self, owner: &MemberId) -> usize {
        self.read().count_of(owner)
    }

    /// Registrations owned by `owner`.
    pub fn owned_by(&self, owner: &MemberId) -> Vec<Registration> {
        self.read()
            .iter()
            .filter(|r| &r.owner == owner)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: GameId, code: &str, owner: &str, epoch: u64, version: u64) -> Registration {
        Registration {
            id,
            join_code: code.parse().expect("code"),
            users: vec!["ann".into()],
            owner: MemberId::new(owner, 1),
            epoch,
            version,
        }
    }

    /// Each owner's digest as a scan of every game computes it.
    fn scanned_digest(table: &Table, owner: &MemberId) -> (u64, u64) {
        table
            .iter()
            .filter(|r| &r.owner == owner)
            .fold((0, 0), |(count, hash), r| {
                (count + 1, hash ^ mix(r.id, r.epoch))
            })
    }

    #[test]
    fn digests_kept_in_step_match_a_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let ids: Vec<GameId> = (0..40).map(|_| GameId::random()).collect();
        let owners = ["a", "b", "c"];
        let mut table = Table::default();
        for step in 0..2_000 {
            let id = ids[rng.random_range(0..ids.len())];
            let owner = owners[rng.random_range(0..owners.len())];
            match rng.random_range(0..10) {
                0 => {
                    table.remove(id, &MemberId::new(owner, 1));
                }
                1 if step % 50 == 0 => {
                    table.purge_owner(&MemberId::new(owner, 1));
                }
                2 => {
                    if let Some(r) = table.lookup(id).cloned() {
                        let bumped = Registration {
                            version: r.version + 1,
                            ..r
                        };
                        table.bump_version(&Arc::new(bumped));
                    }
                }
                _ => {
                    let (epoch, version) = (rng.random_range(1..4), rng.random_range(0..6));
                    table.apply(reg(
                        id,
                        &format!("C{:04}", id.0.as_u128() % 1000),
                        owner,
                        epoch,
                        version,
                    ));
                }
            }
            for owner in owners {
                let owner = MemberId::new(owner, 1);
                assert_eq!(
                    table.digest_of(&owner),
                    scanned_digest(&table, &owner),
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn higher_version_wins_in_any_order() {
        let id = GameId::random();
        let a = reg(id, "ABCD", "a", 1, 7);
        let b = reg(id, "ABCD", "b", 2, 5);
        for order in [[a.clone(), b.clone()], [b.clone(), a.clone()]] {
            let mut r = Table::default();
            for x in order {
                r.apply(x);
            }
            assert_eq!(r.lookup(id).cloned(), Some(a.clone()));
            assert_eq!(r.by_join_code(&"ABCD".parse().expect("code")), Some(id));
        }
    }

    #[test]
    fn a_move_supersedes_by_epoch_and_removal_checks_owner() {
        let id = GameId::random();
        let mut r = Table::default();
        r.apply(reg(id, "ABCD", "a", 1, 3));
        assert!(matches!(
            r.apply(reg(id, "ABCD", "b", 2, 3)),
            Applied::Replaced(_)
        ));
        assert!(!r.remove(id, &MemberId::new("a", 1)));
        assert_eq!(
            r.lookup(id).cloned().map(|g| g.owner.name),
            Some("b".into())
        );
        assert_eq!(r.of_user(&"ann".into()), vec![id]);
        assert!(r.remove(id, &MemberId::new("b", 1)));
        assert!(r.of_user(&"ann".into()).is_empty());
    }

    #[test]
    fn owner_counts_follow_every_change() {
        let mut r = Table::default();
        let recount = |r: &Table| {
            let mut counts = OrdMap::new();
            for reg in r.iter() {
                *counts.entry(reg.owner.clone()).or_insert(0) += 1;
            }
            counts
        };
        let ids: Vec<GameId> = (0..6).map(|_| GameId::random()).collect();
        for (i, id) in ids.iter().enumerate() {
            let owner = if i % 2 == 0 { "a" } else { "b" };
            r.apply(reg(*id, &format!("CODE{i}"), owner, 1, 0));
        }
        // Newer version by the same owner, a move, a losing claim, removals.
        r.apply(reg(ids[0], "CODE0", "a", 1, 4));
        r.apply(reg(ids[1], "CODE1", "a", 2, 0));
        r.apply(reg(ids[2], "CODE2", "b", 1, 0));
        r.remove(ids[3], &MemberId::new("b", 1));
        r.remove(ids[4], &MemberId::new("b", 1));
        assert_eq!(r.count_by_owner(), &recount(&r));
        assert_eq!(r.count_by_owner().get(&MemberId::new("a", 1)), Some(&4));
        r.purge_owner(&MemberId::new("a", 1));
        assert_eq!(r.count_by_owner(), &recount(&r));
        assert_eq!(r.count_by_owner().get(&MemberId::new("a", 1)), None);
    }

    #[test]
    fn a_shared_code_passes_to_the_smallest_remaining_game() {
        let mut ids: Vec<GameId> = (0..3).map(|_| GameId::random()).collect();
        ids.sort();
        let code: JoinCode = "SAME".parse().expect("code");
        let mut r = Table::default();
        for (i, id) in ids.iter().enumerate().rev() {
            r.apply(reg(*id, "SAME", &format!("o{i}"), 1, 0));
        }
        assert_eq!(r.by_join_code(&code), Some(ids[0]));
        // A move of the holder keeps the code with it.
        r.apply(reg(ids[0], "SAME", "o9", 2, 0));
        assert_eq!(r.by_join_code(&code), Some(ids[0]));
        r.remove(ids[0], &MemberId::new("o9", 1));
        assert_eq!(r.by_join_code(&code), Some(ids[1]));
        r.remove(ids[1], &MemberId::new("o1", 1));
        assert_eq!(r.by_join_code(&code), Some(ids[2]));
        r.remove(ids[2], &MemberId::new("o2", 1));
        assert_eq!(r.by_join_code(&code), None);
    }

    #[test]
    fn join_code_goes_to_smaller_id_and_claims_block() {
        let (x, y) = (GameId::random(), GameId::random());
        let (small, big) = if x < y { (x, y) } else { (y, x) };
        let code: JoinCode = "WXYZ".parse().expect("code");
        let mut r = Table::default();
        r.apply(reg(big, "WXYZ", "a", 1, 0));
        r.apply(reg(small, "WXYZ", "b", 1, 0));
        assert_eq!(r.by_join_code(&code), Some(small));
        r.remove(small, &MemberId::new("b", 1));
        assert_eq!(r.by_join_code(&code), Some(big));
        let other: JoinCode = "QQQQ".parse().expect("code");
        assert!(r.claim(&other, x, Time::ZERO));
        assert!(!r.claim(&other, y, Time::ZERO));
        assert!(!r.claim(&code, small, Time::ZERO));
    }
}

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
use imbl::{HashMap, HashSet};
use minotaur_core::{GameId, JoinCode, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
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

/// The games registered under one join code: one, but for conflicts. (A
/// persistent set would cost a kilobyte even for one game; the rare larger
/// set is shared through an `Arc` and copied when changed while a reader
/// holds it.)
#[derive(Debug, Clone)]
enum Holders {
    One(GameId),
    Many(Arc<BTreeSet<GameId>>),
}

/// A registry as plain data: no lock, no clock. The control state machine
/// owns one; [`Registry`] wraps one for callers that share it. Its maps are
/// persistent (structure-sharing), so a copy for readers costs nothing.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Shared entries: a copy of the table for readers shares them, and a
    /// change copies only the map nodes on its path (pointers), never the
    /// registrations beside it.
    games: HashMap<GameId, Arc<Registration>>,
    codes: HashMap<JoinCode, GameId>,
    users: HashMap<UserId, HashSet<GameId>>,
    claims: HashMap<JoinCode, (GameId, Time)>,
    /// Games per owner, kept with `games` so counting is not a full scan
    /// (placement asks for it on every create).
    owners: HashMap<MemberId, usize>,
    /// Every game in `games` under its join code, so the code can pass to
    /// another game without a full scan when its holder goes (every move
    /// and failover re-indexes a game).
    by_code: HashMap<JoinCode, Holders>,
}

impl Table {
    /// Inserts `reg` into `games`, keeping `owners` in step.
    fn put(&mut self, reg: Registration) {
        *self.owners.entry(reg.owner.clone()).or_insert(0) += 1;
        if let Some(old) = self.games.insert(reg.id, Arc::new(reg)) {
            self.uncount(&old.owner);
        }
    }

    /// Removes game `id` from `games`, keeping `owners` in step.
    fn take(&mut self, id: GameId) -> Option<Registration> {
        let reg = self.games.remove(&id)?;
        self.uncount(&reg.owner);
        Some(Arc::unwrap_or_clone(reg))
    }

    fn uncount(&mut self, owner: &MemberId) {
        if let Some(n) = self.owners.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
    }

    fn index(&mut self, reg: &Registration) {
        let keep_code = match self.codes.get(&reg.join_code) {
            Some(other) => *other == reg.id || !self.games.contains_key(other) || reg.id < *other,
            None => true,
        };
        if keep_code {
            self.codes.insert(reg.join_code.clone(), reg.id);
        }
        self.claims.remove(&reg.join_code);
        let holders = match self.by_code.remove(&reg.join_code) {
            None => Holders::One(reg.id),
            Some(Holders::One(id)) if id == reg.id => Holders::One(id),
            Some(Holders::One(id)) => Holders::Many(Arc::new(BTreeSet::from([id, reg.id]))),
            Some(Holders::Many(mut ids)) => {
                Arc::make_mut(&mut ids).insert(reg.id);
                Holders::Many(ids)
            }
        };
        self.by_code.insert(reg.join_code.clone(), holders);
        for user in &reg.users {
            self.users.entry(user.clone()).or_default().insert(reg.id);
        }
    }

    fn unindex(&mut self, reg: &Registration) {
        // The smallest game left under the code, if any.
        let others = match self.by_code.remove(&reg.join_code) {
            None => None,
            Some(Holders::One(id)) if id == reg.id => None,
            Some(Holders::One(id)) => {
                self.by_code.insert(reg.join_code.clone(), Holders::One(id));
                Some(id)
            }
            Some(Holders::Many(mut ids)) => {
                Arc::make_mut(&mut ids).remove(&reg.id);
                let first = ids.first().copied();
                let left = match (ids.len(), first) {
                    (0, _) | (_, None) => None,
                    (1, Some(id)) => Some(Holders::One(id)),
                    _ => Some(Holders::Many(ids)),
                };
                if let Some(left) = left {
                    self.by_code.insert(reg.join_code.clone(), left);
                }
                first
            }
        };
        if self.codes.get(&reg.join_code) == Some(&reg.id) {
            self.codes.remove(&reg.join_code);
            // Another live game with the same code (a lost conflict) gets it back.
            if let Some(other) = others {
                self.codes.insert(reg.join_code.clone(), other);
            }
        }
        for user in &reg.users {
            if let Some(set) = self.users.get_mut(user) {
                set.remove(&reg.id);
                if set.is_empty() {
                    self.users.remove(user);
                }
            }
        }
    }
}

impl Table {
    /// Where game `id` lives.
    pub fn lookup(&self, id: GameId) -> Option<&Registration> {
        self.games.get(&id).map(|r| &**r)
    }

    /// The game registered under `code`.
    pub fn by_join_code(&self, code: &JoinCode) -> Option<GameId> {
        self.codes.get(code).copied()
    }

    /// Games `user` plays in.
    pub fn of_user(&self, user: &UserId) -> Vec<GameId> {
        self.users
            .get(user)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Every registration.
    pub fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.games.values().map(|r| &**r)
    }

    /// Number of registered games.
    pub fn len(&self) -> usize {
        self.games.len()
    }

    /// Whether no game is registered.
    pub fn is_empty(&self) -> bool {
        self.games.is_empty()
    }

    /// Number of games per owner.
    pub fn count_by_owner(&self) -> &HashMap<MemberId, usize> {
        &self.owners
    }

    /// Applies a registration, resolving a conflict deterministically.
    pub fn apply(&mut self, reg: Registration) -> Applied {
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

    /// Records the latest version of a game `owner` owns.
    pub fn bump_version(&mut self, id: GameId, owner: &MemberId, version: u64) {
        let newer = |reg: &Registration| &reg.owner == owner && version > reg.version;
        if !self.games.get(&id).is_some_and(|reg| newer(reg)) {
            return;
        }
        if let Some(reg) = self.games.get_mut(&id) {
            Arc::make_mut(reg).version = version;
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
        if self.codes.get(code).is_some_and(|other| *other != id) {
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
#[derive(Clone, Default)]
pub struct Registry {
    table: Arc<ArcSwap<Table>>,
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

    /// The game registered under `code`.
    pub fn by_join_code(&self, code: &JoinCode) -> Option<GameId> {
        self.read().by_join_code(code)
    }

    /// Games `user` plays in.
    pub fn of_user(&self, user: &UserId) -> Vec<GameId> {
        self.read().of_user(user)
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
            let mut counts = HashMap::new();
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

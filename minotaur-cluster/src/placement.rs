//! Placement: which member a new session goes to. Pluggable through the
//! [`Placement`] trait; rendezvous hashing is the default.

use crate::membership::MemberId;
use minotaur_core::GameId;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A member that can take sessions, with its current load.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The member.
    pub id: MemberId,
    /// Sessions it owns now.
    pub load: usize,
}

/// Chooses the member a game's session is started on.
///
/// Only members that are up and not leaving are offered; the process that
/// runs a test or a client is never a member, so never a candidate.
pub trait Placement: Send + Sync + 'static {
    /// Picks one of `candidates` (never empty) for `game`; `this` is the
    /// member asking.
    fn place(&self, game: GameId, candidates: &[Candidate], this: &MemberId) -> MemberId;
}

/// The score of `member` for `key` under rendezvous hashing: the member with
/// the highest score owns the key. Uses the member's *name*, so a restarted
/// node gets its games back.
pub fn rendezvous_score(key: &impl Hash, member: &MemberId) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    member.name.hash(&mut h);
    h.finish()
}

/// Rendezvous (highest random weight) hashing on the game id: every member
/// computes the same owner, and a join or leave moves only the games of the
/// member concerned. The default.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rendezvous;

impl Placement for Rendezvous {
    fn place(&self, game: GameId, candidates: &[Candidate], this: &MemberId) -> MemberId {
        candidates
            .iter()
            .map(|c| &c.id)
            .max_by_key(|id| (rendezvous_score(&game, id), *id))
            .cloned()
            .unwrap_or_else(|| this.clone())
    }
}

/// The member owning the fewest sessions (ties broken by name).
#[derive(Debug, Default, Clone, Copy)]
pub struct LeastLoaded;

impl Placement for LeastLoaded {
    fn place(&self, _game: GameId, candidates: &[Candidate], this: &MemberId) -> MemberId {
        candidates
            .iter()
            .min_by_key(|c| (c.load, c.id.clone()))
            .map(|c| c.id.clone())
            .unwrap_or_else(|| this.clone())
    }
}

/// The member the game was created through, when it can take sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Local;

impl Placement for Local {
    fn place(&self, game: GameId, candidates: &[Candidate], this: &MemberId) -> MemberId {
        if candidates.iter().any(|c| &c.id == this) {
            this.clone()
        } else {
            Rendezvous.place(game, candidates, this)
        }
    }
}

/// Members in rendezvous order for `key`: the first is the preferred owner,
/// the next ones the preferred backups.
pub fn ranked(key: &impl Hash, members: impl IntoIterator<Item = MemberId>) -> Vec<MemberId> {
    let mut ranked: Vec<(u64, MemberId)> = members
        .into_iter()
        .map(|m| (rendezvous_score(key, &m), m))
        .collect();
    ranked.sort_by(|a, b| b.cmp(a));
    ranked.into_iter().map(|(_, m)| m).collect()
}

/// The first of `members` in [`ranked`] order, without ranking them all.
pub fn best<'a>(key: &impl Hash, members: &'a [MemberId]) -> Option<&'a MemberId> {
    members
        .iter()
        .max_by_key(|m| (rendezvous_score(key, m), *m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> Candidate {
        Candidate {
            id: MemberId::new(name, 1),
            load: 0,
        }
    }

    #[test]
    fn rendezvous_is_stable_and_spreads() {
        let members = [member("a"), member("b"), member("c")];
        let me = MemberId::new("a", 1);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..3000 {
            let game = GameId::random();
            let owner = Rendezvous.place(game, &members, &me);
            assert_eq!(owner, Rendezvous.place(game, &members, &me));
            *counts.entry(owner.name).or_insert(0) += 1;
        }
        assert!(counts.values().all(|&n| n > 700), "{counts:?}");
    }

    #[test]
    fn removing_a_member_moves_only_its_games() {
        let all = [member("a"), member("b"), member("c")];
        let two = [member("a"), member("b")];
        let me = MemberId::new("a", 1);
        for _ in 0..500 {
            let game = GameId::random();
            let before = Rendezvous.place(game, &all, &me);
            if before.name != "c" {
                assert_eq!(before, Rendezvous.place(game, &two, &me));
            }
        }
    }

    #[test]
    fn best_is_the_first_ranked() {
        let members = vec![
            MemberId::new("a", 1),
            MemberId::new("b", 1),
            MemberId::new("b", 2),
            MemberId::new("c", 1),
        ];
        for _ in 0..500 {
            let game = GameId::random();
            let first = ranked(&game, members.clone()).into_iter().next();
            assert_eq!(best(&game, &members), first.as_ref());
        }
        assert_eq!(best(&GameId::random(), &[]), None);
    }

    #[test]
    fn least_loaded_and_local() {
        let mut members = vec![member("a"), member("b")];
        members[0].load = 5;
        let me = MemberId::new("a", 1);
        assert_eq!(LeastLoaded.place(GameId::random(), &members, &me).name, "b");
        assert_eq!(Local.place(GameId::random(), &members, &me).name, "a");
        let other = MemberId::new("z", 1);
        assert_ne!(Local.place(GameId::random(), &members, &other).name, "z");
    }
}

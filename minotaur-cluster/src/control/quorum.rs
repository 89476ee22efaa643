//! Majority fencing, as plain data: which members vote, the lease this node
//! holds from a majority of them, the leases it grants, and the witnesses
//! that let the majority fence a member whose lease has surely run out.
//!
//! The rule, in short (ARCHITECTURE.md has the argument):
//! - A node acknowledges a write only while a majority of the voters granted
//!   it a lease within the last `lease`, counted from when it *sent* the
//!   request each grant answers.
//! - A member that grants stops granting a peer it counts down, and after
//!   `margin = lease * (1 + drift) / (1 - drift)` of its own clock since its
//!   last grant it becomes a *witness*: it never again grants that peer's
//!   current lease generation.
//! - A peer's games are taken over only once a majority of the voters are
//!   witnesses. Any majority the peer could hold a lease from contains one of
//!   them, so by then the peer acknowledges nothing more.
//! - A node whose lease lapsed starts a new generation and treats every game
//!   it owned as *suspect* (no writes) until every member has told it what
//!   it owns since: a game taken over meanwhile is lost to the newer owner,
//!   never written on both sides.
//! - The copies it holds of other members' games, kept in an earlier
//!   generation, count as current again once a majority granted the new
//!   one saying they witnessed no end of those generations: no majority
//!   fenced it then, so no owner wrote past those copies.
//!
//! Members join the vote only once every voter knows them (as Akka admits a
//! member only on convergence), so a minority cannot vote itself a majority
//! by admitting newcomers; a member leaves it when it says goodbye, is
//! replaced by a newer incarnation, or stays away, fenced, for a while.
//! A fenced member keeps its seat meanwhile: back from a partition, it
//! votes again at once, and the members that stayed never fall to a vote
//! of two that one more fault would stop. Under
//! [`SplitPolicy::MajorityFromThree`] a member that went away without a
//! goodbye still counts towards the three, so a cluster does not drop its
//! fencing because it lost members to faults.

use crate::config::SplitPolicy;
use crate::membership::MemberId;
use crate::registry::Time;
use minotaur_core::GameId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Whether a member votes, as seen from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Counts towards every majority.
    Voter,
    /// Known but not yet known to every voter: counted in the size of the
    /// larger majority only (see [`Quorum::is_majority`]).
    Pending,
}

/// A grant of this node's lease in the current generation, from one peer.
#[derive(Debug, Clone, Copy)]
struct Lent {
    /// When the newest request it granted was sent.
    sent: Time,
    /// The newest generation of this node's the peer had witnessed the end
    /// of when it granted, if any.
    refused_upto: Option<u64>,
}

/// What this node granted one peer.
#[derive(Debug, Clone, Default)]
struct Grant {
    /// When it last granted the peer's lease.
    last: Option<Time>,
    /// The newest lease generation the peer asked for.
    gen: u64,
    /// Generations up to this one are never granted again (this node
    /// witnessed their end).
    refused_upto: Option<u64>,
    /// The newest generation of the peer fenced here.
    fenced: Option<u64>,
}

/// One node's view of the vote, its own lease, and the fences.
#[derive(Debug, Clone)]
pub struct Quorum {
    policy: SplitPolicy,
    lease: Duration,
    margin: Duration,
    this: MemberId,
    standing: BTreeMap<MemberId, Standing>,
    /// This node's lease generation: a new one each time its lease lapses.
    gen: u64,
    /// Whether the lease held at some point in this generation: the next
    /// time it does not is a lapse.
    held: bool,
    /// When this generation started.
    gen_started: Time,
    /// Whether writes stopped since the lease last lapsed (until it holds
    /// again and the suspect games are confirmed).
    stopped: bool,
    next_seq: u64,
    /// Lease requests of the current generation, with when they were sent.
    sent: VecDeque<(u64, Time)>,
    /// The peers that granted the current generation.
    leased_from: BTreeMap<MemberId, Lent>,
    grants: BTreeMap<MemberId, Grant>,
    /// Fenced members not seen live since: their seats count, their
    /// games were taken over.
    out: BTreeSet<MemberId>,
    /// Members whose seats were given up after a long absence, fenced;
    /// they still count towards the policy's three until they come back,
    /// are replaced, or say goodbye.
    absent: BTreeSet<MemberId>,
    /// Peers' latest member lists, for admitting newcomers.
    lists: BTreeMap<MemberId, BTreeSet<MemberId>>,
    /// For each member counted down here, the members (this one included)
    /// that witnessed its lease run out, with the generation each vouched
    /// for.
    witnesses: BTreeMap<MemberId, BTreeMap<MemberId, u64>>,
    /// Members fenced lately, with the generation fenced: told to peers with
    /// every gossip round, so one that missed the vote learns of it.
    fenced: VecDeque<(MemberId, u64)>,
    /// Games not yet confirmed (owned when the lease last lapsed, taken
    /// over, or retaken after a move whose target was fenced), each with the
    /// epoch and version this node's state of it stems from: a copy
    /// elsewhere of a newer one supersedes it.
    suspect: BTreeMap<GameId, (u64, u64)>,
    /// Suspect games of which a member holds a copy under a newer epoch:
    /// they are not confirmed.
    superseded: BTreeSet<GameId>,
    /// Members that answered the confirmation round of the current
    /// generation, and when each was last asked.
    confirmed_by: BTreeSet<MemberId>,
    asked: BTreeMap<MemberId, Time>,
}

/// Fences remembered to tell peers of.
const FENCES_KEPT: usize = 64;
/// Lease requests remembered.
const SENT_KEPT: usize = 64;

impl Quorum {
    /// The quorum of a node that knows only itself.
    pub fn new(this: MemberId, policy: SplitPolicy, lease: Duration, drift: f64) -> Self {
        let drift = drift.clamp(0.0, 0.5);
        let margin = lease.mul_f64((1.0 + drift) / (1.0 - drift));
        let mut standing = BTreeMap::new();
        standing.insert(this.clone(), Standing::Voter);
        Quorum {
            policy,
            lease,
            margin,
            this,
            standing,
            gen: 1,
            held: true,
            gen_started: Time::ZERO,
            stopped: false,
            next_seq: 1,
            sent: VecDeque::new(),
            leased_from: BTreeMap::new(),
            grants: BTreeMap::new(),
            out: BTreeSet::new(),
            absent: BTreeSet::new(),
            lists: BTreeMap::new(),
            witnesses: BTreeMap::new(),
            fenced: VecDeque::new(),
            suspect: BTreeMap::new(),
            superseded: BTreeSet::new(),
            confirmed_by: BTreeSet::new(),
            asked: BTreeMap::new(),
        }
    }

    /// The vote, the lease and the fences as this node sees them, as text
    /// for a person diagnosing a failed test.
    pub fn explain(&self, now: Time) -> String {
        let names = |set: &BTreeSet<MemberId>| -> Vec<String> {
            set.iter().map(|m| m.to_string()).collect()
        };
        let standing: Vec<String> = self
            .standing
            .iter()
            .map(|(m, s)| format!("{m} {s:?}"))
            .collect();
        let witnesses: Vec<String> = self
            .witnesses
            .iter()
            .map(|(m, w)| {
                let by: Vec<String> = w.iter().map(|(b, g)| format!("{b}@{g}")).collect();
                format!("{m} by {by:?}")
            })
            .collect();
        let grants: Vec<String> = self
            .grants
            .iter()
            .map(|(m, g)| {
                format!(
                    "{m}: gen {} refused to {:?} fenced {:?} last {:?} ago",
                    g.gen,
                    g.refused_upto,
                    g.fenced,
                    g.last.map(|t| now.saturating_sub(t))
                )
            })
            .collect();
        let leased: Vec<String> = self
            .leased_from
            .iter()
            .map(|(m, l)| {
                format!(
                    "{m} {:?} ago (refused to {:?})",
                    now.saturating_sub(l.sent),
                    l.refused_upto
                )
            })
            .collect();
        format!(
            "  quorum: generation {} holds {} stopped {} standing {standing:?} out {:?} absent {:?}\n  \
             leased from {leased:?}\n  witnesses {witnesses:?}\n  grants {grants:?}\n  \
             fenced {:?}\n  suspect games {} superseded {} confirmed by {:?}\n",
            self.gen,
            self.holds(now),
            self.stopped,
            names(&self.out),
            names(&self.absent),
            self.fenced
                .iter()
                .map(|(m, g)| format!("{m}@{g}"))
                .collect::<Vec<_>>(),
            self.suspect.len(),
            self.superseded.len(),
            names(&self.confirmed_by),
        )
    }

    /// Whether fencing is on with the members counted now.
    pub fn fencing(&self) -> bool {
        match self.policy {
            SplitPolicy::Available => false,
            SplitPolicy::Majority => true,
            SplitPolicy::MajorityFromThree => self.standing.len() + self.absent.len() >= 3,
        }
    }

    /// Whether games taken over or retaken are confirmed before they take
    /// writes (unless the policy is [`SplitPolicy::Available`]): another
    /// member may hold a newer copy and take the game over too.
    pub fn confirms_takeovers(&self) -> bool {
        self.policy != SplitPolicy::Available
    }

    /// The members that vote or wait to, with their standing.
    pub fn standing(&self) -> &BTreeMap<MemberId, Standing> {
        &self.standing
    }

    /// This node's lease generation.
    pub fn generation(&self) -> u64 {
        self.gen
    }

    /// Whether `members` (this node counts only if listed) are a majority of
    /// the voters *and* of voters and pending members together: while a
    /// newcomer is admitted, nodes disagree on the voters by one member, and
    /// any two such majorities still share a member.
    pub fn is_majority(&self, members: &BTreeSet<MemberId>) -> bool {
        let voters = self
            .standing
            .iter()
            .filter(|(_, s)| **s == Standing::Voter)
            .count();
        let voting = self
            .standing
            .iter()
            .filter(|(m, s)| **s == Standing::Voter && members.contains(*m))
            .count();
        let all = self.standing.len();
        let counted = self
            .standing
            .keys()
            .filter(|m| members.contains(*m))
            .count();
        voting * 2 > voters && counted * 2 > all
    }

    /// Whether this node holds its lease at `now`.
    pub fn holds(&self, now: Time) -> bool {
        if !self.fencing() {
            return true;
        }
        let mut with: BTreeSet<MemberId> = self
            .leased_from
            .iter()
            .filter(|(_, lent)| lent.sent + self.lease > now)
            .map(|(m, _)| m.clone())
            .collect();
        with.insert(self.this.clone());
        self.is_majority(&with)
    }

    /// Checks the lease at `now`. When it has just lapsed, a new generation
    /// starts and every game in `owned` becomes suspect: returns
    /// `Some(false)`. A generation that has not held for twice the margin
    /// is given up for a new one the same way, silently. When writes may
    /// resume (the lease holds and no game is suspect any more):
    /// `Some(true)`.
    pub fn check(
        &mut self,
        now: Time,
        owned: impl Iterator<Item = (GameId, (u64, u64))>,
    ) -> Option<bool> {
        let holds = self.holds(now);
        let lapsed = self.held && !holds;
        // A generation that never held for a while may have been refused
        // for good: the members witnessed its silence (this node was
        // frozen, or cut off just as it began) and grant it no more.
        let refused =
            !self.held && !holds && now.saturating_sub(self.gen_started) >= self.margin * 2;
        self.held |= holds;
        if lapsed || refused {
            self.held = false;
            self.gen += 1;
            self.gen_started = now;
            self.sent.clear();
            self.leased_from.clear();
            self.suspect.extend(owned);
            self.superseded.clear();
            self.confirmed_by.clear();
            self.asked.clear();
            self.stopped = true;
            return lapsed.then_some(false);
        }
        if self.stopped && holds && self.suspect.is_empty() {
            self.stopped = false;
            return Some(true);
        }
        None
    }

    /// A new lease request, sent at `now`: its number.
    pub fn request(&mut self, now: Time) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.sent.push_back((seq, now));
        while self.sent.len() > SENT_KEPT {
            self.sent.pop_front();
        }
        seq
    }

    /// `from` granted request `seq`, having witnessed the end of this
    /// node's generations up to `refused_upto`.
    pub fn granted(&mut self, from: &MemberId, seq: u64, refused_upto: Option<u64>, now: Time) {
        let Some((_, sent)) = self.sent.iter().find(|(s, _)| *s == seq) else {
            return;
        };
        let sent = *sent;
        let entry = self
            .leased_from
            .entry(from.clone())
            .or_insert(Lent { sent, refused_upto });
        entry.sent = entry.sent.max(sent);
        entry.refused_upto = entry.refused_upto.max(refused_upto);
        self.held |= self.holds(now);
    }

    /// The oldest generation of this node whose copies of other members'
    /// games are as good as copies kept in the current one.
    ///
    /// A copy kept in generation `k` turned stale only if a majority fenced
    /// this node in a generation from `k` on: its owner may then have
    /// written past it. A member vouches for the end of a generation only
    /// before it grants a newer one (after, it vouches for that one). So
    /// the members that granted the current generation having witnessed
    /// nothing from `k` on never did; if the others are no majority, no
    /// majority fenced those generations. Fences of the current generation
    /// end it too, and make every copy kept so far stale alike. Until the
    /// lease held in this generation, only its own copies count.
    pub fn current_from(&self) -> u64 {
        if !self.fencing() || !self.held {
            return self.gen;
        }
        // A grantor is clean for copies of generations after the last it
        // witnessed the end of.
        let clean_from = |l: &Lent| l.refused_upto.map_or(0, |r| r.saturating_add(1));
        let mut from: Vec<u64> = self.leased_from.values().map(clean_from).collect();
        from.sort_unstable();
        from.dedup();
        for k in from.into_iter().take_while(|k| *k < self.gen) {
            let may_have_witnessed: BTreeSet<MemberId> = self
                .standing
                .keys()
                .filter(|m| **m != self.this)
                .filter(|m| self.leased_from.get(*m).is_none_or(|l| clean_from(l) > k))
                .cloned()
                .collect();
            if !self.is_majority(&may_have_witnessed) {
                return k;
            }
        }
        self.gen
    }

    /// The newest lease generation `member` was seen asking for.
    pub fn seen_generation(&self, member: &MemberId) -> u64 {
        self.grants.get(member).map_or(0, |g| g.gen)
    }

    /// The oldest generation of `member` a fence here may still end: the
    /// newest it was seen asking for, and none it was fenced in already.
    /// A copy sent to it now is current as long as its lease does not
    /// lapse in that generation or a later one.
    pub fn fence_floor(&self, member: &MemberId) -> u64 {
        self.grants
            .get(member)
            .map_or(0, |g| g.gen.max(g.fenced.map_or(0, |f| f + 1)))
    }

    /// Whether to grant `from`'s request of generation `gen` at `now` (the
    /// caller checked that `from` is live); records the grant.
    pub fn grant(&mut self, from: &MemberId, gen: u64, now: Time) -> bool {
        let grant = self.grants.entry(from.clone()).or_default();
        grant.gen = grant.gen.max(gen);
        if grant.refused_upto.is_some_and(|upto| gen <= upto) {
            return false;
        }
        grant.last = Some(now);
        true
    }

    /// If this node's last grant to `member` (counted down here) is more
    /// than the margin old, it becomes a witness: returns the generation it
    /// vouches for, the first time and whenever that rises.
    ///
    /// It vouches for the newest generation it knows `member` reached, seen
    /// asked for here or `told` by another witness: no grant of its to the
    /// member is running, so it may promise never to grant any generation
    /// up to that one. (Vouching only for the generations it saw asked for,
    /// a witness that missed the member's last lapse could never count.)
    ///
    /// A member fenced or retired here still vouches: the others may count
    /// it back in, and need its word.
    pub fn witness(&mut self, member: &MemberId, now: Time, told: u64) -> Option<u64> {
        let grant = self.grants.entry(member.clone()).or_default();
        if grant.last.is_some_and(|last| last + self.margin > now) {
            return None;
        }
        grant.gen = grant.gen.max(told);
        let gen = grant.gen;
        let rises = grant.refused_upto.is_none_or(|upto| upto < gen);
        if rises {
            grant.refused_upto = Some(gen);
        }
        let vouched = grant.refused_upto.unwrap_or(gen);
        // Counted again even when it does not rise: the member may have
        // been live meanwhile, which cleared the witnesses.
        if self.standing.contains_key(member) {
            self.witnesses
                .entry(member.clone())
                .or_default()
                .insert(self.this.clone(), vouched);
        }
        rises.then_some(gen)
    }

    /// The generation this node vouches for, for `member`, if it did.
    pub fn vouched(&self, member: &MemberId) -> Option<u64> {
        self.grants.get(member).and_then(|g| g.refused_upto)
    }

    /// `by` witnessed the end of `member`'s generation `gen`.
    pub fn witnessed(&mut self, member: &MemberId, by: &MemberId, gen: u64) {
        if self.standing.contains_key(member) {
            let set = self.witnesses.entry(member.clone()).or_default();
            let vouched = set.entry(by.clone()).or_insert(gen);
            *vouched = (*vouched).max(gen);
        }
    }

    /// The generation of `member` a majority witnessed the end of, if one
    /// did. Witnesses of a generation older than the newest this node knows
    /// the member reached count not: it may hold a lease of that one.
    pub fn fenced_generation(&self, member: &MemberId) -> Option<u64> {
        let seen = self.grants.get(member).map_or(0, |g| g.gen);
        let set: BTreeSet<MemberId> = self
            .witnesses
            .get(member)?
            .iter()
            .filter(|(_, gen)| **gen >= seen)
            .map(|(by, _)| by.clone())
            .collect();
        self.is_majority(&set).then_some(seen)
    }

    /// `member` is fenced (its generation `gen` ended), so peers are told;
    /// its own grants are never renewed. It keeps its seat until it comes
    /// back or is retired.
    ///
    /// Returns whether this fences a newer generation than any fenced here
    /// before.
    pub fn fence(&mut self, member: &MemberId, gen: u64) -> bool {
        self.out.insert(member.clone());
        self.witnesses.remove(member);
        self.leased_from.remove(member);
        let grant = self.grants.entry(member.clone()).or_default();
        grant.refused_upto = Some(grant.refused_upto.unwrap_or(0).max(gen));
        let newer = grant.fenced.is_none_or(|f| gen > f);
        grant.fenced = Some(grant.fenced.unwrap_or(0).max(gen));
        self.fenced.retain(|(m, _)| m != member);
        self.fenced.push_back((member.clone(), gen));
        while self.fenced.len() > FENCES_KEPT {
            self.fenced.pop_front();
        }
        newer
    }

    /// Whether `member` was fenced here: cut off, and then out of the vote
    /// while it may still have been running what it was asked to.
    pub fn was_fenced(&self, member: &MemberId) -> bool {
        self.fenced_upto(member).is_some()
    }

    /// The newest generation of `member` fenced here, if any.
    pub fn fenced_upto(&self, member: &MemberId) -> Option<u64> {
        self.grants.get(member).and_then(|g| g.fenced)
    }

    /// Whether a fence of `member`'s generation `gen`, told by a peer,
    /// applies here (it is not an older generation than one seen asked).
    pub fn fence_applies(&self, member: &MemberId, gen: u64) -> bool {
        self.standing.contains_key(member)
            && !self.out.contains(member)
            && gen >= self.grants.get(member).map_or(0, |g| g.gen)
    }

    /// Whether `member` was fenced and not seen live since.
    pub fn is_out(&self, member: &MemberId) -> bool {
        self.out.contains(member)
    }

    /// Fences to tell peers of.
    pub fn fences(&self) -> impl Iterator<Item = &(MemberId, u64)> {
        self.fenced.iter()
    }

    /// `member` left the vote for good (said goodbye, or was replaced).
    pub fn retire(&mut self, member: &MemberId) {
        self.standing.remove(member);
        self.out.remove(member);
        self.absent.remove(member);
        self.witnesses.remove(member);
        self.leased_from.remove(member);
        self.lists.remove(member);
        self.confirmed_by.remove(member);
        self.asked.remove(member);
    }

    /// `member` is live here: it waits to vote if it has no seat, and its
    /// witnesses (of an earlier silence) no longer count. An absent member
    /// of its name is back, or replaced by it.
    pub fn live(&mut self, member: &MemberId) {
        self.standing
            .entry(member.clone())
            .or_insert(Standing::Pending);
        self.witnesses.remove(member);
        self.out.remove(member);
        self.absent.retain(|m| m.name != member.name);
    }

    /// `member`, fenced, stayed away long enough to give its seat up, so
    /// that the members left can outlive further faults. Returns whether it
    /// had one.
    pub fn retire_absent(&mut self, member: &MemberId) -> bool {
        if !self.out.contains(member) {
            return false;
        }
        self.retire(member);
        self.absent.insert(member.clone());
        true
    }

    /// `from`'s member list, for admitting newcomers.
    pub fn listed(&mut self, from: &MemberId, list: impl Iterator<Item = MemberId>) {
        self.lists.insert(from.clone(), list.collect());
    }

    /// Admits every pending member that every voter lists (a fenced one
    /// away runs nothing and is not waited for); returns them.
    pub fn admit(&mut self) -> Vec<MemberId> {
        let voters: Vec<MemberId> = self
            .standing
            .iter()
            .filter(|(m, s)| **s == Standing::Voter && !self.out.contains(*m))
            .map(|(m, _)| m.clone())
            .collect();
        let pending: Vec<MemberId> = self
            .standing
            .iter()
            .filter(|(_, s)| **s == Standing::Pending)
            .map(|(m, _)| m.clone())
            .collect();
        let mut admitted = Vec::new();
        for member in pending {
            let known_to_all = voters.iter().all(|v| {
                *v == self.this
                    || *v == member
                    || self.lists.get(v).is_some_and(|l| l.contains(&member))
            });
            if known_to_all {
                self.standing.insert(member.clone(), Standing::Voter);
                admitted.push(member);
            }
        }
        admitted
    }

    // ---- suspect games ----

    /// Whether some owned games wait for confirmation.
    pub fn confirming(&self) -> bool {
        !self.suspect.is_empty()
    }

    /// Whether game `id` waits for confirmation.
    pub fn is_suspect(&self, id: GameId) -> bool {
        self.suspect.contains_key(&id)
    }

    /// Game `id`, whose state here stems from `source` (epoch, version),
    /// may have a newer state elsewhere: it waits for every member to tell
    /// what it owns and holds, like a game kept through a lapse.
    pub fn suspect_game(&mut self, id: GameId, source: (u64, u64)) {
        self.suspect.insert(id, source);
        self.confirmed_by.clear();
        self.asked.clear();
    }

    /// Game `id` is no longer owned here.
    pub fn forget_game(&mut self, id: GameId) {
        self.suspect.remove(&id);
    }

    /// Members to ask (again) what they own, at `now`: those not asked
    /// within `every`, among `live`.
    pub fn to_ask(&self, live: &[MemberId], now: Time, every: Duration) -> Vec<MemberId> {
        live.iter()
            .filter(|m| **m != self.this && !self.confirmed_by.contains(*m))
            .filter(|m| {
                self.asked
                    .get(*m)
                    .is_none_or(|at| now.saturating_sub(*at) >= every)
            })
            .cloned()
            .collect()
    }

    /// `member` was asked at `now`.
    pub fn asked(&mut self, member: &MemberId, now: Time) {
        self.asked.insert(member.clone(), now);
    }

    /// A member's link changed: ask it again.
    pub fn relinked(&mut self, member: &MemberId) {
        self.asked.remove(member);
    }

    /// A member answering generation `gen`'s round holds a copy of game
    /// `id` at `copy` (epoch, version): the game is superseded if that is
    /// newer than the state here.
    pub fn held_elsewhere(&mut self, id: GameId, copy: (u64, u64), gen: u64) {
        if gen == self.gen && self.suspect.get(&id).is_some_and(|source| copy > *source) {
            self.superseded.insert(id);
        }
    }

    /// `member` told what it owns in answer to generation `gen`'s round.
    pub fn answered(&mut self, member: &MemberId, gen: u64) {
        if gen == self.gen {
            self.confirmed_by.insert(member.clone());
        }
    }

    /// Once every member in the vote told what it owns and holds (the
    /// games one took over were lost here as it told), confirms the suspect
    /// games none holds a newer copy of; returns whether it confirmed any.
    /// The others wait for another round.
    pub fn try_confirm(&mut self) -> bool {
        let all = self
            .standing
            .keys()
            .filter(|m| !self.out.contains(*m))
            .all(|m| *m == self.this || self.confirmed_by.contains(m));
        if !all || self.suspect.is_empty() {
            return false;
        }
        let before = self.suspect.len();
        let superseded = std::mem::take(&mut self.superseded);
        self.suspect.retain(|id, _| superseded.contains(id));
        if !self.suspect.is_empty() {
            self.confirmed_by.clear();
        }
        self.suspect.len() < before
    }
}

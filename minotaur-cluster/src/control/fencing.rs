//! Majority fencing driven by the control: lease requests with every
//! heartbeat, grants, witnesses of a silent member's lease running out, the
//! fence that lets its games be taken over, and the confirmation of a
//! node's own games after its lease lapsed. The rules are in
//! [`super::quorum`].

use super::wire::Msg;
use super::{Control, Effect, Event};
use crate::membership::{MemberId, MemberStatus};
use minotaur_core::{EngineError, GameId};

impl Control {
    /// With every heartbeat: checks the lease, asks every live peer to
    /// renew it, witnesses the members counted down, and asks for what
    /// confirms suspect games.
    pub(super) fn lease_tick(&mut self) {
        self.check_lease();
        self.request_lease();
        for member in self.awaiting_fence() {
            self.witness(&member, 0);
        }
        self.ask_confirmation();
    }

    /// Voters counted down here and not fenced yet.
    fn awaiting_fence(&self) -> Vec<MemberId> {
        self.quorum
            .standing()
            .keys()
            .filter(|m| self.members.status(m) == Some(MemberStatus::Down))
            .filter(|m| !self.quorum.is_out(m))
            .cloned()
            .collect()
    }

    /// Becomes a witness of `member`'s lease running out if this node's
    /// last grant to it is old enough, and fences it if a majority are.
    fn witness(&mut self, member: &MemberId, told: u64) {
        if let Some(gen) = self.quorum.witness(member, self.now, told) {
            self.broadcast(Msg::Expired {
                member: member.clone(),
                gen,
            });
        }
        if let Some(gen) = self.quorum.fenced_generation(member) {
            self.fence(member, gen);
        }
    }

    pub(super) fn request_lease(&mut self) {
        let seq = self.quorum.request(self.now);
        let gen = self.quorum.generation();
        self.broadcast(Msg::Lease { seq, gen });
    }

    /// Notices a lapsed lease (the games owned now wait for confirmation),
    /// and writes resuming.
    pub(super) fn check_lease(&mut self) {
        let owned: Vec<(GameId, (u64, u64))> = self
            .owned
            .iter()
            .map(|(id, o)| (*id, (o.reg.epoch, o.reg.version)))
            .collect();
        match self.quorum.check(self.now, owned.into_iter()) {
            Some(false) => {
                self.event(Event::QuorumLost);
                self.request_lease();
            }
            Some(true) => self.event(Event::QuorumRegained),
            None => {}
        }
    }

    /// Every few heartbeats: the witnesses and fences peers may have
    /// missed.
    pub(super) fn repeat_fencing(&mut self) {
        for member in self.awaiting_fence() {
            if let Some(gen) = self.quorum.vouched(&member) {
                self.broadcast(Msg::Expired { member, gen });
            }
        }
    }

    /// Tells `to` (newly live) of the fences this node knows: it may have
    /// been cut off while they happened.
    pub(super) fn send_fences(&mut self, to: &MemberId) {
        let fences: Vec<(MemberId, u64)> = self.quorum.fences().cloned().collect();
        for (member, gen) in fences {
            if &member != to {
                self.send(to, Msg::Fenced { member, gen });
            }
        }
    }

    pub(super) fn on_lease(&mut self, from: &MemberId, seq: u64, gen: u64) {
        if self.departed {
            return;
        }
        let new_generation = gen > self.quorum.seen_generation(from);
        if self.quorum.grant(from, gen, self.now) {
            let refused_upto = self.quorum.vouched(from);
            self.send(from, Msg::Granted { seq, refused_upto });
        }
        // Its copies of our games count only once confirmed in its new
        // generation.
        if new_generation {
            self.send_holdings_to(from);
        }
    }

    pub(super) fn on_granted(&mut self, from: &MemberId, seq: u64, refused_upto: Option<u64>) {
        let before = self.quorum.current_from();
        self.quorum.granted(from, seq, refused_upto, self.now);
        if self.quorum.current_from() < before {
            self.fail_over_again();
        }
    }

    /// Copies kept earlier count as current again: the games of members
    /// fenced or gone for good whose copies were held back as stale are
    /// restarted from them now (those that moved on since are not).
    fn fail_over_again(&mut self) {
        if !self.quorum.holds(self.now) {
            return;
        }
        // Members, not copies, are walked: a few against one per game.
        let owners: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| m.status == MemberStatus::Down)
            .map(|(owner, _)| owner)
            .filter(|owner| {
                self.quorum.is_out(owner) || !self.quorum.standing().contains_key(*owner)
            })
            .cloned()
            .collect();
        for owner in owners {
            self.fail_over(&owner);
        }
    }

    pub(super) fn on_expired(&mut self, from: &MemberId, member: MemberId, gen: u64) {
        // The peer missed the fence (told while it held no lease, or the
        // notice was lost), and would wait for it for ever.
        if let Some(fenced) = self.quorum.fenced_upto(&member).filter(|f| *f >= gen) {
            self.send(
                from,
                Msg::Fenced {
                    member,
                    gen: fenced,
                },
            );
            return;
        }
        if self.members.status(&member) != Some(MemberStatus::Down) {
            return;
        }
        self.quorum.witnessed(&member, from, gen);
        // It may have reached a generation this node never saw.
        self.witness(&member, gen);
    }

    pub(super) fn on_fenced(&mut self, member: MemberId, gen: u64) {
        if member == *self.this() {
            return;
        }
        if self.members.status(&member) == Some(MemberStatus::Down)
            && self.quorum.fence_applies(&member, gen)
        {
            self.fence(&member, gen);
        }
    }

    /// A majority witnessed `member`'s lease run out: its games are taken
    /// over from the copies held here. Only by a node that holds its own
    /// lease: the side of a split that takes over is the majority's.
    fn fence(&mut self, member: &MemberId, gen: u64) {
        if !self.quorum.fencing() || !self.quorum.holds(self.now) {
            return;
        }
        // (Copies sent since an earlier fence of the same generation stay
        // in doubt.)
        if self.quorum.fence(member, gen) {
            self.stale_copies_cleared(member);
        }
        self.broadcast(Msg::Fenced {
            member: member.clone(),
            gen,
        });
        self.fail_over(member);
        self.fail_requests_to(member);
        self.admit();
    }

    /// A member counted down said goodbye: it runs nothing any more.
    pub(super) fn departed_while_down(&mut self, member: &MemberId) {
        if self.quorum.standing().contains_key(member) {
            self.quorum.retire(member);
            self.stale_copies_cleared(member);
            self.fail_over(member);
            self.fail_requests_to(member);
            self.admit();
        }
    }

    /// Admits pending members that every voter knows.
    pub(super) fn admit(&mut self) {
        self.quorum.admit();
        self.confirm();
    }

    /// Confirms the suspect games if every member answered; their copies
    /// are then placed where they belong (re-copies waited meanwhile).
    pub(super) fn confirm(&mut self) {
        if self.quorum.try_confirm() {
            self.sweep();
        }
    }

    /// Asks every live member what it owns, while games wait for
    /// confirmation (again if the last ask got no answer in time).
    pub(super) fn ask_confirmation(&mut self) {
        if !self.quorum.confirming() {
            return;
        }
        if let Some(until) = self.recovering_until {
            if self.last_sync.is_empty() && self.now < until {
                return;
            }
            self.recovering_until = None;
        }
        let live: Vec<MemberId> = self.members.live().cloned().collect();
        let every = self.config.call_timeout;
        let gen = self.quorum.generation();
        for member in self.quorum.to_ask(&live, self.now, every) {
            if self.send(&member, Msg::SyncFor(gen)) {
                self.quorum.asked(&member, self.now);
            }
        }
        self.confirm();
    }

    /// A peer confirming its games asks what this node owns and holds.
    pub(super) fn on_sync_for(&mut self, from: &MemberId, gen: u64) {
        self.send_sync(from);
        let copies: Vec<(GameId, u64, u64)> = self
            .copies
            .iter()
            .filter(|(_, owner, _)| *owner != from)
            .map(|(id, _, held)| (*id, held.epoch, held.snapshot.version))
            .collect();
        for chunk in copies.chunks(self.config.batch.max(1)) {
            let copies = chunk.to_vec();
            self.send(from, Msg::HeldFor { gen, copies });
        }
        self.send(from, Msg::SyncedFor(gen));
    }

    /// Copies a peer holds, in answer to this node's round: a suspect game
    /// copied under a newer epoch than ours is not confirmed.
    pub(super) fn on_held_for(&mut self, gen: u64, copies: Vec<(GameId, u64, u64)>) {
        for (id, epoch, version) in copies {
            self.quorum.held_elsewhere(id, (epoch, version), gen);
        }
    }

    pub(super) fn on_synced_for(&mut self, from: &MemberId, gen: u64) {
        self.quorum.answered(from, gen);
        self.confirm();
    }

    /// Whether `member`, counted down here, may still be running what it
    /// ran: fencing is on and no majority has fenced it yet. A request it
    /// did not answer may then still take effect there.
    pub(super) fn unfenced(&self, member: &MemberId) -> bool {
        self.quorum.fencing()
            && self.quorum.standing().contains_key(member)
            && !self.quorum.is_out(member)
    }

    /// A confirmed read of game `id`: answered if the game is owned here,
    /// the lease holds and no other member may hold a newer state.
    pub(super) fn confirm_read(&mut self, id: GameId) {
        let result = if !self.owned.contains_key(&id) {
            Err(EngineError::BetweenOwners(id))
        } else {
            self.lease_refusal(id).map_or(Ok(()), Err)
        };
        self.effect(Effect::Confirmed { id, result });
    }

    /// Whether game `id` may take a write now; the error to answer if not.
    pub(super) fn write_refusal(&self, id: GameId) -> Option<EngineError> {
        if let Some(refusal) = self.lease_refusal(id) {
            return Some(refusal);
        }
        // (One fenced or gone for good takes nothing over.)
        let stale = self.owned.get(&id).and_then(|o| {
            o.stale_copies()
                .iter()
                .map(|s| &s.holder)
                .find(|m| self.members.is_live(m) || self.unfenced(m))
        });
        if let Some(member) = stale.filter(|_| self.quorum.fencing()) {
            return Some(EngineError::NoQuorum(format!(
                "game {id} waits for {member} to drop an older copy or be fenced"
            )));
        }
        None
    }

    /// Whether this node may vouch for game `id`'s state now: it holds its
    /// lease, and the game is not waiting to learn whether another member
    /// took it over.
    fn lease_refusal(&self, id: GameId) -> Option<EngineError> {
        if !self.quorum.holds(self.now) {
            return Some(EngineError::NoQuorum(format!(
                "{} cannot reach a majority of the cluster",
                self.this()
            )));
        }
        if self.quorum.is_suspect(id) {
            return Some(EngineError::NoQuorum(format!(
                "{} is confirming that no other member runs game {id}",
                self.this()
            )));
        }
        None
    }
}

//! Membership: links becoming members, the failure detector, member-list
//! gossip and reconnects, and what a member coming or going sets off.

use super::wire::{Corr, Hello, Msg};
use super::{Control, Effect, Event, LinkId, Member};
use crate::membership::{DownReason, MemberId, MemberStatus};
use crate::registry::Registration;

impl Control {
    fn hello(&self) -> Hello {
        Hello {
            from: self.this().clone(),
            addr: self.addr.clone(),
            min_protocol: self.config.min_protocol,
            max_protocol: self.config.max_protocol,
            leaving: self.leaving,
        }
    }

    pub(super) fn on_link_up(&mut self, link: LinkId, peer: Option<MemberId>) {
        // The peer's hello may have come first, and ours with it.
        if let Some(known) = self.links.get_mut(&link) {
            if known.is_none() {
                *known = peer;
            }
            return;
        }
        self.links.insert(link, peer);
        let hello = self.hello();
        self.effect(Effect::Send {
            link,
            msg: Msg::Hello(hello),
        });
    }

    pub(super) fn on_link_down(&mut self, link: LinkId) {
        if let Some(Some(member)) = self.links.remove(&link) {
            self.closed.insert(link, member);
            while self.closed.len() > 256 {
                self.closed.pop_first();
            }
        }
        let Some(member) = self.members.by_link(link).cloned() else {
            return;
        };
        // Another link of the same peer (both ends dialled at once) takes
        // over; otherwise wait a moment for one before counting it down.
        let other = self
            .links
            .iter()
            .find(|(_, m)| m.as_ref() == Some(&member))
            .map(|(l, _)| *l);
        let now = self.now;
        if let Some(m) = self.members.get_mut(&member) {
            m.link = other;
            m.unlinked_since = other.is_none().then_some(now);
        }
        if other.is_some() {
            self.relinked(&member);
        } else if let Some(addr) = self.members.get(&member).map(|m| m.addr.clone()) {
            // A link can close with both nodes alive (a reset connection):
            // dial at once, so a new link can come up within the grace.
            self.dialed.remove(&addr);
            self.dial(&addr);
        }
    }

    /// A member whose link closed is not waited for once its address
    /// refuses connections: its process no longer listens, so it is gone.
    pub(super) fn on_dial_refused(&mut self, addr: &str) {
        let gone: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.addr == addr && m.status != MemberStatus::Down && m.unlinked_since.is_some()
            })
            .map(|(id, _)| id.clone())
            .collect();
        for member in gone {
            self.member_down(&member, DownReason::LinkClosed);
        }
    }

    pub(super) fn expire_unlinked(&mut self) {
        let deadline = self.now.saturating_sub(self.config.relink_grace);
        let due: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(_, m)| {
                m.status != MemberStatus::Down && m.unlinked_since.is_some_and(|t| t <= deadline)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for member in due {
            self.member_down(&member, DownReason::LinkClosed);
        }
    }

    pub(super) fn on_hello(&mut self, link: LinkId, hello: Hello) {
        if hello.from == *self.this() {
            return;
        }
        // Ours goes first, before anything this hello sets off.
        self.on_link_up(link, None);
        if self.gone.contains(&hello.from) {
            self.links.remove(&link);
            self.effect(Effect::CloseLink { link });
            return;
        }
        let compatible = hello.min_protocol <= self.config.max_protocol
            && hello.max_protocol >= self.config.min_protocol;
        if !compatible {
            self.links.remove(&link);
            self.event(Event::Incompatible {
                peer: hello.from,
                speaks: (hello.min_protocol, hello.max_protocol),
            });
            self.effect(Effect::CloseLink { link });
            return;
        }
        let id = hello.from.clone();
        self.links.insert(link, Some(id.clone()));
        for old in self.members.other_incarnations(&id) {
            self.member_down(&old, DownReason::Replaced);
        }
        // One counted down already is gone for good too: it stops counting
        // towards a majority, and its games need no fence.
        let replaced: Vec<MemberId> = self
            .quorum
            .standing()
            .keys()
            .filter(|m| m.name == id.name && **m != id)
            .cloned()
            .collect();
        for old in replaced {
            self.quorum.retire(&old);
            self.stale_copies_cleared(&old);
            self.fail_over(&old);
            self.fail_requests_to(&old);
        }
        let status = if hello.leaving {
            MemberStatus::Leaving
        } else {
            MemberStatus::Up
        };
        let before = self.members.get(&id).cloned();
        let was = before.as_ref().map(|m| m.status);
        let previous_link = before.as_ref().and_then(|m| m.link);
        self.members.insert(
            id.clone(),
            Member {
                addr: hello.addr,
                status,
                heard: self.now,
                link: Some(link),
                unlinked_since: None,
                synced: before.as_ref().is_some_and(|m| m.synced)
                    && was != Some(MemberStatus::Down),
            },
        );
        self.quorum.live(&id);
        if was != Some(status) {
            self.event(match status {
                MemberStatus::Leaving => Event::MemberLeaving(id.clone()),
                _ => Event::MemberUp(id.clone()),
            });
        }
        if was.is_none_or(|s| s == MemberStatus::Down) {
            self.member_up(&id);
        } else if previous_link != Some(link) {
            self.relinked(&id);
        }
    }

    /// A member is newly live: tell it what we own, tell every peer whom we
    /// know (members that joined through this node at the same moment meet
    /// now, not at the next gossip), and re-place copies (it may be a better
    /// backup than the current ones).
    fn member_up(&mut self, member: &MemberId) {
        self.quorum.relinked(member);
        self.copies.unpin_owned_by(member);
        self.send_sync(member);
        self.send_fences(member);
        self.redrop(member);
        // It counts towards the majority from now on: its grant must not
        // wait for the next heartbeat.
        self.request_lease();
        self.gossip();
        self.sweep();
        if self.config.redistribution == crate::Redistribution::Active {
            self.rebalance();
        }
    }

    /// A live member is reached over a new link: what went over the old one
    /// may be lost, so it is told everything again. (Copies it no longer
    /// holds are found by the next holdings it gets, and copied again.)
    fn relinked(&mut self, member: &MemberId) {
        self.quorum.relinked(member);
        self.send_sync(member);
        self.redrop(member);
        self.sweep();
    }

    /// Tells every peer what this node has registered, in brief: a
    /// registration or an `Unregistered` lost with a link (or overtaken by
    /// an older message handled late) is found and mended by a sync.
    pub(super) fn send_digests(&mut self) {
        let (count, hash) = self.registry.digest_of(self.this());
        self.broadcast(Msg::Digest { count, hash });
    }

    /// A peer's digest of its games. A difference may be an announcement
    /// still in flight; one seen twice in a row asks for a sync.
    pub(super) fn on_digest(&mut self, from: &MemberId, digest: (u64, u64)) {
        if self.registry.digest_of(from) == digest {
            self.digest_differs.remove(from);
        } else if !self.digest_differs.insert(from.clone()) {
            self.digest_differs.remove(from);
            self.send(from, Msg::SyncPlease);
        }
    }

    pub(super) fn send_sync(&mut self, member: &MemberId) {
        let regs: Vec<Registration> = self.owned.values().map(|o| (*o.reg).clone()).collect();
        let parts: Vec<&[Registration]> = if regs.is_empty() {
            vec![&[]]
        } else {
            regs.chunks(self.config.batch.max(1)).collect()
        };
        let (count, sync) = (parts.len(), self.corr());
        for (i, part) in parts.into_iter().enumerate() {
            let msg = Msg::Sync {
                sync,
                regs: part.to_vec(),
                last: i + 1 == count,
            };
            self.send(member, msg);
        }
    }

    pub(super) fn on_sync(
        &mut self,
        from: &MemberId,
        sync: Corr,
        regs: Vec<Registration>,
        last: bool,
    ) {
        let key = (from.clone(), sync);
        let listed = self.syncing.entry(key.clone()).or_default();
        listed.extend(regs.iter().map(|r| r.id));
        for reg in regs {
            self.apply_registration(reg);
        }
        if !last {
            return;
        }
        let listed = self.syncing.remove(&key).unwrap_or_default();
        // An older sync of the same member that never finished is moot; one
        // that finishes after a newer one would forget the games created
        // in between.
        self.syncing
            .retain(|(member, other), _| member != from || *other > sync);
        if self.last_sync.get(from).is_some_and(|newer| *newer > sync) {
            return;
        }
        self.last_sync.insert(from.clone(), sync);
        // Registrations of `from` that its sync no longer lists are gone
        // (ended or moved while we did not hear it). Usually there are
        // none, which the counts tell without walking the whole registry.
        let kept = listed
            .iter()
            .filter(|id| self.registry.lookup(**id).is_some_and(|r| &r.owner == from))
            .count();
        if self.registry.count_of(from) != kept {
            let stale: Vec<_> = self
                .registry
                .iter()
                .filter(|r| &r.owner == from && !listed.contains(&r.id))
                .map(|r| r.id)
                .collect();
            for id in stale {
                self.registry.remove(id, from);
            }
        }
        if let Some(m) = self.members.get_mut(from) {
            m.synced = true;
        }
        // The sender counts us live now, so it takes copies it may have
        // refused while its handshake ran. (If it had counted us down, it
        // dropped the copies it held: its answer to our next holdings says
        // which, and only those are copied again.)
        self.sweep();
    }

    pub(super) fn on_leaving(&mut self, from: &MemberId) {
        if let Some(m) = self.members.get_mut(from) {
            if m.status == MemberStatus::Up {
                m.status = MemberStatus::Leaving;
                self.event(Event::MemberLeaving(from.clone()));
                self.sweep();
            }
        }
    }

    fn member_list(&self) -> Vec<(MemberId, String, MemberStatus)> {
        self.members
            .iter()
            .filter(|(_, m)| m.status != MemberStatus::Down)
            .map(|(id, m)| (id.clone(), m.addr.clone(), m.status))
            .collect()
    }

    pub(super) fn on_members(
        &mut self,
        from: &MemberId,
        list: Vec<(MemberId, String, MemberStatus)>,
    ) {
        let listed = list
            .iter()
            .filter(|(_, _, status)| *status != MemberStatus::Down)
            .map(|(id, _, _)| id.clone());
        self.quorum.listed(from, listed);
        self.quorum.admit();
        self.confirm();
        if self.leaving {
            return;
        }
        for (id, addr, _) in list {
            if id == *self.this() || self.members.is_live(&id) {
                continue;
            }
            // A newer incarnation of a name we count down is someone to
            // meet; an older one we replaced is not.
            let replaced = self
                .members
                .get(&id)
                .is_some_and(|m| m.status == MemberStatus::Down)
                && !self.members.other_incarnations(&id).is_empty();
            // Two nodes that learn of each other at once would dial each
            // other at once, in step, and ractor_cluster may refuse both
            // links: only the smaller id dials a member it has never met.
            let never_met = self.members.get(&id).is_none();
            if !replaced && (!never_met || *self.this() < id) {
                self.dial(&addr);
            }
        }
    }

    /// Opens a link to `addr` unless one was tried recently.
    pub(super) fn dial(&mut self, addr: &str) {
        if addr == self.addr || self.departed {
            return;
        }
        let pace = self
            .config
            .failure_timeout
            .max(std::time::Duration::from_millis(500));
        if self
            .dialed
            .get(addr)
            .is_some_and(|at| self.now.saturating_sub(*at) < pace)
        {
            return;
        }
        self.dialed.insert(addr.to_string(), self.now);
        self.effect(Effect::Dial {
            addr: addr.to_string(),
        });
    }

    /// Counts down the peers silent for too long (the lease requests sent
    /// with every heartbeat tell them this node is alive). After
    /// a gap in this node's own ticks (its process was stalled), silence
    /// proves nothing: what peers sent meanwhile is still queued here, so
    /// every peer gets a new window instead.
    pub(super) fn heartbeat(&mut self, stalled: bool) {
        if stalled {
            let now = self.now;
            let this = self.this().clone();
            let peers: Vec<MemberId> = self.members.peers().cloned().collect();
            for peer in peers.iter().filter(|p| **p != this) {
                if let Some(m) = self.members.get_mut(peer) {
                    m.heard = m.heard.max(now);
                }
            }
            return;
        }
        let deadline = self.now.saturating_sub(self.config.failure_timeout);
        let silent: Vec<MemberId> = self
            .members
            .iter()
            .filter(|(id, m)| {
                *id != self.this() && m.status != MemberStatus::Down && m.heard < deadline
            })
            .map(|(id, _)| id.clone())
            .collect();
        for member in silent {
            self.member_down(&member, DownReason::Timeout);
        }
    }

    pub(super) fn gossip(&mut self) {
        let list = self.member_list();
        self.broadcast(Msg::Members(list));
    }

    /// Dials members counted down whose name has no live incarnation (a
    /// healed partition), and the seeds while alone.
    pub(super) fn reconnect(&mut self) {
        if self.leaving {
            return;
        }
        let live_names: Vec<String> = self.members.live().map(|m| m.name.clone()).collect();
        let mut targets: Vec<String> = self
            .members
            .iter()
            .filter(|(id, m)| m.status == MemberStatus::Down && !live_names.contains(&id.name))
            .map(|(_, m)| m.addr.clone())
            .collect();
        if live_names.len() <= 1 {
            targets.extend(self.config.seeds.iter().cloned());
        }
        targets.sort();
        targets.dedup();
        for addr in targets {
            self.dial(&addr);
        }
    }

    /// Counts `member` down: closes its link, fails its games over from the
    /// copies held here, and re-places the copies it held.
    pub(super) fn member_down(&mut self, member: &MemberId, reason: DownReason) {
        let link = match self.members.get_mut(member) {
            Some(m) if m.status != MemberStatus::Down => {
                m.status = MemberStatus::Down;
                m.unlinked_since = None;
                m.synced = false;
                m.link.take()
            }
            _ => return,
        };
        if let Some(link) = link {
            self.links.remove(&link);
            self.effect(Effect::CloseLink { link });
        }
        // Its other links too (a duplicate still open).
        let others: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, m)| m.as_ref() == Some(member))
            .map(|(l, _)| *l)
            .collect();
        for link in others {
            self.links.remove(&link);
            self.effect(Effect::CloseLink { link });
        }
        self.event(Event::MemberDown(member.clone(), reason));
        self.copies.pin_owned_by(member, self.quorum.current_from());
        self.forget_backup(member);
        match reason {
            // It is gone for good: nothing of its can be acknowledged any
            // more, and it stops counting towards a majority.
            DownReason::Left | DownReason::Replaced => {
                self.quorum.retire(member);
                self.stale_copies_cleared(member);
                self.fail_over(member);
                self.admit();
            }
            // Its games are taken over once a majority witnessed its lease
            // run out (see `fencing`), unless fencing is off.
            _ if !self.quorum.fencing() => self.fail_over(member),
            _ => {}
        }
        self.fail_requests_to(member);
        self.sweep();
        let at = self.now + self.config.failure_timeout * 3;
        self.purges.push((at, member.clone()));
    }
}

//! Starting sessions: a create (claim the join code at its home member,
//! place the game, start it there), a start asked for by a peer (the session
//! runs, its first copy is placed and every peer knows of it before the
//! start is acknowledged), a failover from the copies held for a member
//! that went down, and a session ending for good.

use super::games::{CopyReason, Dormant, Owned, Phase, Starting, Waiter};
use super::wire::{Corr, Msg, Refusal, Snapshot, StaleCopy, Update};
use super::{CallId, Control, Effect, Event, Request, StopReason};
use crate::membership::MemberId;
use crate::placement::ranked;
use crate::registry::Registration;
use minotaur_core::{EngineError, GameId, JoinCode};
use std::collections::BTreeMap;
use std::sync::Arc;

/// How a game starts here.
pub(super) struct Start {
    /// The epoch its registration takes.
    pub epoch: u64,
    /// The members that may still hold an older copy of it (it moved
    /// here): no write is acknowledged until each dropped it.
    pub stale: Vec<StaleCopy>,
    /// A new game: it claims its join code meanwhile.
    pub claim: bool,
    /// It was passive where it lived: it stays passive, no session starts.
    pub passive: bool,
}

impl Start {
    fn new_game() -> Self {
        Start {
            epoch: 1,
            stale: Vec::new(),
            claim: true,
            passive: false,
        }
    }
}

impl Control {
    pub(super) fn create(&mut self, call: CallId, snapshot: Snapshot) {
        let id = snapshot.id;
        if let Some(reg) = self.registry.lookup(id) {
            if self.members.is_live(&reg.owner) {
                return self.reply(call, Err(EngineError::AlreadyRunning(id)));
            }
        }
        if !self.quorum.holds(self.now) {
            return self.answer_start(id, Waiter::Call(call), Err(Refusal::NoQuorum));
        }
        let code = snapshot.join_code.clone();
        if self.registry.by_join_code(&code).is_some_and(|g| g != id) {
            return self.reply(call, Err(EngineError::JoinCodeTaken(code)));
        }
        self.place_new(call, snapshot, Vec::new());
    }

    /// Claims a starting new game's join code at the code's home, the
    /// first member up in rendezvous order of the code, other than those
    /// `tried` (which did not answer). The home serialises every claim of
    /// its codes: two simultaneous creates cannot both win.
    pub(super) fn claim(&mut self, id: GameId, code: JoinCode, tried: Vec<MemberId>) {
        let homes = self.members.up().into_iter().filter(|m| !tried.contains(m));
        match ranked(&code, homes).into_iter().next() {
            Some(home) if &home != self.this() => {
                let corr = self.request(Request::Claim {
                    id,
                    code: code.clone(),
                    to: home.clone(),
                    tried,
                });
                if !self.send(&home, Msg::Claim { corr, code, id }) {
                    if let Some((request, _)) = self.requests.remove(&corr) {
                        self.request_failed(corr, request);
                    }
                }
            }
            _ => {
                let ok = self.registry.claim(&code, id, self.now);
                self.claimed(id, code, ok);
            }
        }
    }

    pub(super) fn on_claimed(&mut self, corr: Corr, ok: bool) {
        let Some((Request::Claim { id, code, .. }, _)) = self.requests.remove(&corr) else {
            return;
        };
        self.claimed(id, code, ok);
    }

    /// The claim of a starting game's join code held, or another game has
    /// the code: then the game is not started after all.
    fn claimed(&mut self, id: GameId, code: JoinCode, ok: bool) {
        let Some(Owned {
            phase: Phase::Starting(starting),
            ..
        }) = self.owned.get_mut(&id)
        else {
            return;
        };
        if ok {
            starting.claimed = true;
            return self.check_started(id);
        }
        self.effect(Effect::StopSession {
            id,
            reason: StopReason::NotOwned,
        });
        self.session_gone(id, Refusal::CodeTaken(code));
    }

    /// Places a new game on a member that takes sessions, other than those
    /// that `refused` it.
    pub(super) fn place_new(&mut self, call: CallId, snapshot: Snapshot, refused: Vec<MemberId>) {
        let candidates = self.candidates(&refused);
        if candidates.is_empty() {
            return self.reply(
                call,
                Err(EngineError::Unavailable(
                    "no member takes new sessions".into(),
                )),
            );
        }
        let owner = self
            .config
            .placement
            .place(snapshot.id, &candidates, self.this());
        if &owner == self.this() {
            return self.start(Waiter::Call(call), snapshot, Start::new_game());
        }
        let corr = self.request(Request::Create {
            call,
            snapshot: snapshot.clone(),
            to: owner.clone(),
            refused: refused.clone(),
        });
        let msg = Msg::Start {
            corr,
            snapshot: snapshot.clone(),
            epoch: 1,
            stale: Vec::new(),
            claim: true,
            passive: false,
        };
        if !self.send(&owner, msg) {
            self.requests.remove(&corr);
            let mut refused = refused;
            refused.push(owner);
            self.place_new(call, snapshot, refused);
        }
    }

    /// Runs a game here as `start` says, for `waiter`.
    pub(super) fn start(&mut self, waiter: Waiter, snapshot: Snapshot, start: Start) {
        let Start {
            epoch,
            stale,
            claim,
            passive,
        } = start;
        let id = snapshot.id;
        if self.leaving {
            return self.answer_start(id, waiter, Err(Refusal::Leaving));
        }
        if !self.quorum.holds(self.now) {
            return self.answer_start(id, waiter, Err(Refusal::NoQuorum));
        }
        if let Some(owned) = self.owned.get_mut(&id) {
            // A repeat of a start that is running or ran gets its answer.
            let repeat = owned.reg.epoch == epoch;
            match &mut owned.phase {
                Phase::Starting(starting) if repeat => starting.waiters.push(waiter),
                _ if repeat => {
                    let reg = (*owned.reg).clone();
                    self.answer_start(id, waiter, Ok(reg));
                }
                _ => self.answer_start(id, waiter, Err(Refusal::AlreadyRunning)),
            }
            return;
        }
        let reg = Arc::new(self.registration(&snapshot, epoch));
        self.quorum.forget_game(id);
        let phase = Phase::Starting(Box::new(Starting {
            waiters: vec![waiter],
            copied: None,
            announcing: None,
            announced: false,
            claimed: !claim,
            asleep: passive.then(|| snapshot.clone()),
            persisted: !self.config.durable,
        }));
        // A passive game has no session to wait for.
        let mut owned = Owned::new(reg.clone(), phase);
        owned.up = passive;
        self.owned.insert(id, owned);
        let code = snapshot.join_code.clone();
        self.persist(&reg, &snapshot);
        if !passive {
            self.effect(Effect::StartSession(snapshot.clone()));
        }
        self.starting_copies.insert(id, Update::Whole(snapshot));
        self.inherit_stale(id, stale);
        if claim {
            self.claim(id, code, Vec::new());
        }
    }

    /// Takes over the list of members that may hold an older copy of a
    /// game that moved here, and asks each to drop it. A copy held here is
    /// dropped at once.
    fn inherit_stale(&mut self, id: GameId, stale: Vec<StaleCopy>) {
        if !self.quorum.fencing() {
            return;
        }
        let this = self.this().clone();
        let mut holders = Vec::new();
        for s in stale {
            if s.holder == this {
                self.copies.drop_copy_upto(id, &s.owner, s.epoch);
                continue;
            }
            if let Some(owned) = self.owned.get_mut(&id) {
                holders.push(s.holder.clone());
                owned.note_stale(s);
            }
        }
        holders.sort();
        holders.dedup();
        holders.retain(|h| self.members.is_live(h));
        for holder in holders {
            self.redrop(&holder);
        }
    }

    pub(super) fn on_session_started(&mut self, id: GameId, error: Option<String>) {
        // A passive game asked for no session: one reported now comes from
        // an earlier start, of an older state (the game was lost, then
        // taken back from a newer copy, while it started). It must not run.
        let asleep = self.owned.get(&id).is_some_and(|o| match &o.phase {
            Phase::Passive(_) => true,
            Phase::Starting(starting) => starting.asleep.is_some(),
            _ => false,
        });
        if asleep {
            if error.is_none() {
                self.effect(Effect::StopSession {
                    id,
                    reason: StopReason::NotOwned,
                });
            }
            return;
        }
        if let Some(error) = error {
            return self.session_gone(id, Refusal::SessionFailed(error));
        }
        let Some(owned) = self.owned.get_mut(&id) else {
            return self.effect(Effect::StopSession {
                id,
                reason: StopReason::NotOwned,
            });
        };
        owned.up = true;
        if matches!(owned.phase, Phase::Starting(_)) {
            self.check_started(id);
        }
    }

    /// The first copy of a starting game landed, or could not be placed.
    pub(super) fn start_copied(&mut self, id: GameId, landed: bool) {
        if let Some(Owned {
            phase: Phase::Starting(starting),
            ..
        }) = self.owned.get_mut(&id)
        {
            starting.copied = Some(landed);
            self.check_started(id);
        }
    }

    /// A starting game is registered here and announced to every peer: a
    /// new game as soon as its join code is claimed, while its session
    /// starts and its first copy is on its way (no write of it was
    /// acknowledged yet, so losing it with its owner loses nothing); a game
    /// that lived elsewhere only once its session runs and its copy is
    /// placed, since its old owner's copies no longer count once peers know
    /// the new owner. It runs once its session runs and both are done.
    fn check_started(&mut self, id: GameId) {
        let Some(owned) = self.owned.get(&id) else {
            return;
        };
        let up = owned.up;
        let Phase::Starting(starting) = &owned.phase else {
            return;
        };
        let (copied, announcing, claimed) =
            (starting.copied, starting.announcing, starting.claimed);
        let new = owned.reg.epoch == 1;
        // A new game is refused if it cannot be copied; one that lived
        // (moved, retaken) must run regardless, or be lost.
        if up && copied == Some(false) && new {
            self.effect(Effect::StopSession {
                id,
                reason: StopReason::NotReplicated,
            });
            return self.session_gone(id, Refusal::NotReplicated);
        }
        if announcing.is_some() {
            return self.finish_start(id);
        }
        // A command that finds a new game before its session runs waits
        // for the session on the owner (`router::starting_session`).
        if !claimed || (!new && (!up || copied.is_none())) {
            return;
        }
        self.to_announce.insert(id);
    }

    /// Sends the first copies of the games started, and announces the
    /// games ready, during the input just handled: together, one message
    /// per backup or peer and batch, rather than one per game.
    pub(super) fn send_batched(&mut self) {
        if !self.starting_copies.is_empty() {
            let copies = std::mem::take(&mut self.starting_copies);
            self.copy_many(copies, CopyReason::Start, Vec::new());
        }
        let ready = std::mem::take(&mut self.to_announce);
        let mut regs = Vec::new();
        for id in ready {
            // Still starting and not yet announced (it may have failed, or
            // been announced, since it was found ready).
            let ready = matches!(
                self.owned.get(&id).map(|o| &o.phase),
                Some(Phase::Starting(starting)) if starting.announcing.is_none()
            );
            if !ready {
                continue;
            }
            let reg = self.owned[&id].reg.clone();
            self.apply_registration(reg.clone());
            if self.owned.contains_key(&id) {
                regs.push((*reg).clone()); // else it lost to one that outranks it
            }
        }
        for chunk in regs.chunks(self.config.batch.max(1)) {
            self.announce(chunk.to_vec());
        }
    }

    /// Tells every peer of starting games' registrations, and waits for
    /// each to acknowledge them.
    fn announce(&mut self, regs: Vec<Registration>) {
        let ids: Vec<GameId> = regs.iter().map(|r| r.id).collect();
        let waiting: std::collections::BTreeSet<MemberId> = self.members.peers().cloned().collect();
        let corr = self.request(Request::Announce {
            ids: ids.clone(),
            waiting: waiting.clone(),
        });
        for id in &ids {
            if let Some(Owned {
                phase: Phase::Starting(starting),
                ..
            }) = self.owned.get_mut(id)
            {
                starting.announcing = Some(corr);
            }
        }
        for peer in &waiting {
            let msg = Msg::Registered {
                corr: Some(corr),
                regs: regs.clone(),
            };
            if !self.send(peer, msg) {
                self.registered_ack(peer, corr);
            }
        }
        if waiting.is_empty() {
            self.requests.remove(&corr);
            for id in ids {
                self.announced(id, corr);
            }
        }
    }

    pub(super) fn registered_ack(&mut self, from: &MemberId, corr: Corr) {
        let done = match self.requests.get_mut(&corr) {
            Some((Request::Announce { ids, waiting }, _)) => {
                waiting.remove(from);
                waiting.is_empty().then(|| ids.clone())
            }
            _ => None,
        };
        if let Some(ids) = done {
            self.requests.remove(&corr);
            for id in ids {
                self.announced(id, corr);
            }
        }
    }

    /// Every peer knows of the game (or was given up on): it runs once its
    /// first copy is settled too.
    pub(super) fn announced(&mut self, id: GameId, corr: Corr) {
        if let Some(Owned {
            phase: Phase::Starting(starting),
            ..
        }) = self.owned.get_mut(&id)
        {
            if starting.announcing == Some(corr) {
                starting.announced = true;
                self.finish_start(id);
            }
        }
    }

    /// A starting game whose registration every peer has and whose first
    /// copy is settled runs from now on.
    pub(super) fn finish_start(&mut self, id: GameId) {
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        if !owned.up {
            return; // its session reporting it started finishes it
        }
        let (waiters, asleep) = match &mut owned.phase {
            Phase::Starting(s) if s.copied.is_some() && s.announced && s.persisted => {
                (std::mem::take(&mut s.waiters), s.asleep.take())
            }
            _ => return,
        };
        owned.phase = match asleep {
            Some(snapshot) => Phase::Passive(Dormant::of(snapshot)),
            None => Phase::Running,
        };
        let reg = owned.reg.clone();
        for waiter in waiters {
            self.answer_start(id, waiter, Ok((*reg).clone()));
        }
    }

    pub(super) fn answer_start(
        &mut self,
        id: GameId,
        waiter: Waiter,
        result: Result<Registration, Refusal>,
    ) {
        match waiter {
            Waiter::Call(call) => {
                let result = result.map_err(|r| match r {
                    Refusal::AlreadyRunning => EngineError::AlreadyRunning(id),
                    Refusal::Leaving => {
                        EngineError::Leaving(format!("{} is leaving the cluster", self.this()))
                    }
                    Refusal::NotReplicated => EngineError::Unavailable(format!(
                        "game {id} could not be copied to a backup"
                    )),
                    Refusal::SessionFailed(why) => EngineError::Unavailable(why),
                    Refusal::NoQuorum => EngineError::NoQuorum(format!(
                        "{} cannot reach a majority of the cluster",
                        self.this()
                    )),
                    Refusal::CodeTaken(code) => EngineError::JoinCodeTaken(code),
                });
                self.reply(call, result);
            }
            Waiter::Peer(member, corr) => {
                self.send(&member, Msg::Started { corr, result });
            }
        }
    }

    pub(super) fn on_started(
        &mut self,
        from: &MemberId,
        corr: Corr,
        result: Result<Registration, Refusal>,
    ) {
        let Some((request, deadline)) = self.requests.remove(&corr) else {
            return;
        };
        match request {
            Request::Create {
                call,
                snapshot,
                to,
                mut refused,
            } if &to == from => match result {
                Ok(reg) => {
                    self.apply_registration(reg.clone());
                    self.reply(call, Ok(reg));
                }
                Err(Refusal::Leaving) => {
                    self.on_leaving(from);
                    refused.push(to);
                    self.place_new(call, snapshot, refused);
                }
                Err(refusal) => {
                    let id = snapshot.id;
                    self.answer_start(id, Waiter::Call(call), Err(refusal));
                }
            },
            Request::Move { id } => self.on_move_started(id, from, corr, result),
            Request::Place {
                snapshot,
                epoch,
                to,
            } if &to == from => match result {
                Ok(reg) => self.apply_registration(reg),
                Err(Refusal::AlreadyRunning) => {}
                Err(refusal) => {
                    if refusal == Refusal::Leaving {
                        self.on_leaving(from);
                    }
                    self.place_elsewhere(snapshot, epoch);
                }
            },
            other => {
                self.requests.insert(corr, (other, deadline));
            }
        }
    }

    /// Restarts the games of `down` whose copies are held here.
    pub(super) fn fail_over(&mut self, down: &MemberId) {
        let mut restarts = BTreeMap::new();
        let mut regs = Vec::new();
        let current_from = self.quorum.current_from();
        for held in self.copies.take_owned_by(down) {
            let id = held.snapshot.id;
            let current = self.registry.lookup(id);
            // The game moved on (or is here already): the copy is stale.
            // Not if another member announced it from an older state (it
            // took the game over from a copy a lost `DropCopy` left behind
            // there): this newer copy wins the conflict by its version, and
            // the other, suspect until it hears of this one, acknowledged
            // nothing meanwhile.
            let moved_on =
                current.is_some_and(|r| &r.owner != down && r.version >= held.snapshot.version);
            if moved_on || self.owned.contains_key(&id) || !held.snapshot.active {
                continue;
            }
            // Kept in a generation of this node's lease that a majority may
            // have fenced: the owner may have acknowledged newer states
            // elsewhere, unless it confirmed the copy since. Kept while the
            // owner has its seat: it still tells the members confirming an
            // older state of the game that a newer one exists.
            if !held.current(current_from) {
                if self.quorum.standing().contains_key(down) {
                    self.copies.store(down.clone(), held);
                }
                continue;
            }
            let epoch = held.epoch.max(current.map_or(0, |r| r.epoch)) + 1;
            if self.leaving {
                self.place_elsewhere(held.snapshot, epoch);
                continue;
            }
            let reg = Arc::new(self.registration(&held.snapshot, epoch));
            self.quorum.forget_game(id);
            if self.quorum.confirms_takeovers() {
                // Another member may hold a newer copy (one a lost
                // `DropCopy` left behind here is older) and take the game
                // over too: no write until every member told what it owns
                // and holds, and the registry kept the newer.
                self.quorum
                    .suspect_game(id, (held.epoch, held.snapshot.version));
            }
            self.persist(&reg, &held.snapshot);
            // With passivation on, the games taken over stay passive until
            // a command comes for each: a failover then starts no session.
            let phase = if self.config.passivate {
                Phase::Passive(Dormant::of(held.snapshot.clone()))
            } else {
                self.effect(Effect::StartSession(held.snapshot.clone()));
                Phase::Running
            };
            self.owned.insert(id, Owned::new(reg.clone(), phase));
            self.apply_registration(reg.clone());
            if self.owned.contains_key(&id) {
                regs.push((*reg).clone());
                restarts.insert(id, Update::Whole(held.snapshot));
            }
        }
        if regs.is_empty() {
            return;
        }
        let sessions = regs.len();
        self.broadcast_registered(regs);
        self.ask_confirmation();
        self.copy_many(restarts, CopyReason::Restart, Vec::new());
        let heard = self.members.get(down).map_or(self.now, |m| m.heard);
        self.event(Event::FailedOver {
            from: down.clone(),
            sessions,
            after: self.now.saturating_sub(heard),
        });
    }

    /// Starts a game on a member other than this (leaving) node.
    pub(super) fn place_elsewhere(&mut self, snapshot: Snapshot, epoch: u64) {
        let this = self.this().clone();
        let candidates = self.candidates(std::slice::from_ref(&this));
        if candidates.is_empty() {
            return; // nobody stays: it stops with this node
        }
        let to = self.config.placement.place(snapshot.id, &candidates, &this);
        self.send_place(to, snapshot, epoch);
    }

    /// Asks `to` to start a game this node places but does not keep; a
    /// repeat under the same epoch gets the same answer.
    pub(super) fn send_place(&mut self, to: MemberId, snapshot: Snapshot, epoch: u64) {
        let corr = self.request(Request::Place {
            snapshot: snapshot.clone(),
            epoch,
            to: to.clone(),
        });
        self.send(
            &to,
            Msg::Start {
                corr,
                snapshot,
                epoch,
                stale: Vec::new(),
                claim: false,
                passive: false,
            },
        );
    }

    /// A session ended for good (concluded, or failed past its restarts).
    pub(super) fn on_session_ended(&mut self, id: GameId) {
        if matches!(
            self.owned.get(&id).map(|o| &o.phase),
            Some(Phase::Running | Phase::Passivating { .. } | Phase::Starting(_))
        ) {
            self.session_gone(id, Refusal::SessionFailed("session ended".into()));
        }
    }

    /// Game `id` no longer runs here: it is unregistered everywhere and its
    /// copy dropped.
    pub(super) fn session_gone(&mut self, id: GameId, why: Refusal) {
        let Some(owned) = self.owned.remove(&id) else {
            return;
        };
        self.unpersist(id);
        let this = self.this().clone();
        if self.registry.remove(id, &this) {
            self.broadcast(Msg::Unregistered { id, owner: this });
        }
        let epoch = owned.reg.epoch;
        if let Some((backup, _)) = &owned.backup {
            self.drop_ours(backup, id, epoch);
        }
        if let Some(to) = self.copying_to(&owned).cloned() {
            self.drop_ours(&to, id, epoch);
        }
        if owned.save_waiting {
            self.effect(Effect::Saved {
                id,
                result: Err(EngineError::GameNotAlive(id)),
            });
        }
        if let Phase::Starting(starting) = owned.phase {
            for waiter in starting.waiters {
                self.answer_start(id, waiter, Err(why.clone()));
            }
        }
    }
}

//! Handoff: moving sessions with their state to another member, when this
//! node leaves (a drain) or when a member joins under active
//! redistribution. A move releases the session, starts it on the target
//! under the next epoch and, if the target cannot be reached, takes it back.

use super::games::{note_stale, CopyReason, Dormant, Moving, Phase};
use super::wire::{Corr, Msg, Refusal, Snapshot, StaleCopy, Update};
use super::{Control, Effect, Event, Request};
use crate::membership::{MemberId, MemberStatus};
use crate::registry::Registration;
use minotaur_core::GameId;
use std::sync::Arc;

/// Running games a drain moves at once. Each is unreachable from its
/// release until its new owner announces it; releasing all at once would
/// make that the whole drain for every game, a window keeps it to one
/// move's time.
const DRAIN_WINDOW: usize = 64;

/// Games a drain moves at once when they are passive: nobody waits on
/// them, and the more go together the fewer and larger the messages that
/// carry them (a node's thousands of passive games hand over several times
/// faster than through the running games' window).
const PASSIVE_DRAIN_WINDOW: usize = 1024;

impl Control {
    pub(super) fn leave(&mut self) {
        if self.leaving {
            return;
        }
        self.leaving = true;
        let this = self.this().clone();
        if let Some(m) = self.members.get_mut(&this) {
            m.status = MemberStatus::Leaving;
        }
        self.event(Event::MemberLeaving(this));
        self.broadcast(Msg::Leaving);
        self.drain();
    }

    /// Releases running sessions to hand them over, a window at a time;
    /// says when none is left (or nobody can take them). Called on every
    /// tick, so a game taken back after a failed move is tried again.
    pub(super) fn drain(&mut self) {
        if !self.leaving || self.drained {
            return;
        }
        if self.candidates(&[]).is_empty() || self.owned.is_empty() {
            self.drained = true;
            let moved = self.handed_over;
            return self.effect(Effect::Drained { moved });
        }
        if self.drain_queue.is_empty() {
            self.drain_queue = self
                .owned
                .iter()
                .filter(|(_, o)| matches!(o.phase, Phase::Running | Phase::Passive(_)))
                .map(|(id, _)| *id)
                .collect();
        }
        self.release_more();
    }

    /// Releases queued games while fewer than [`DRAIN_WINDOW`] running
    /// ones, and [`PASSIVE_DRAIN_WINDOW`] in all, are on their way.
    fn release_more(&mut self) {
        let mut running = 0;
        self.draining
            .retain(|id| match self.owned.get(id).map(|o| &o.phase) {
                Some(Phase::Releasing) => {
                    running += 1;
                    true
                }
                Some(Phase::Moving(moving)) => {
                    running += usize::from(!moving.passive);
                    true
                }
                _ => false,
            });
        while self.draining.len() < PASSIVE_DRAIN_WINDOW {
            let Some(&id) = self.drain_queue.front() else {
                break;
            };
            // A session not up yet is asked again at the next round.
            let (ready, passive) = match self.owned.get(&id) {
                Some(o) => match o.phase {
                    Phase::Running => (o.up, false),
                    Phase::Passive(_) => (true, true),
                    _ => (false, false),
                },
                None => (false, false),
            };
            if ready && !passive && running >= DRAIN_WINDOW {
                break;
            }
            self.drain_queue.pop_front();
            if ready {
                running += usize::from(!passive);
                self.draining.insert(id);
                self.release(id);
            }
        }
    }

    /// Releases the next games of a drain, once per input: the games that
    /// arrived during it make room together.
    pub(super) fn drain_more(&mut self) {
        if self.leaving && !self.drained && !self.drain_queue.is_empty() {
            self.release_more();
        }
    }

    /// Moves running sessions whose placement now points at another member.
    pub(super) fn rebalance(&mut self) {
        let candidates = self.candidates(&[]);
        let moving: Vec<GameId> = self
            .owned
            .iter()
            .filter(|(_, o)| match o.phase {
                Phase::Running => o.up,
                Phase::Passive(_) => true,
                _ => false,
            })
            .filter(|(id, _)| {
                &self.config.placement.place(**id, &candidates, self.this()) != self.this()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in moving {
            self.release(id);
        }
    }

    /// Hands game `id` over: a running session is released first; a
    /// passive game goes as it is, and stays passive.
    fn release(&mut self, id: GameId) {
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        if let Phase::Passive(dormant) = &owned.phase {
            let snapshot = dormant.snapshot(&owned.reg);
            let epoch = owned.reg.epoch + 1;
            return self.move_to_best(id, snapshot, epoch, Vec::new(), true);
        }
        owned.phase = Phase::Releasing;
        self.effect(Effect::ReleaseSession(id));
    }

    pub(super) fn on_released(&mut self, id: GameId, snapshot: Option<Snapshot>) {
        if !matches!(
            self.owned.get(&id).map(|o| &o.phase),
            Some(Phase::Releasing)
        ) {
            return;
        }
        let Some(snapshot) = snapshot else {
            // The session had ended by itself meanwhile.
            if let Some(o) = self.owned.get_mut(&id) {
                o.phase = Phase::Running;
            }
            self.on_session_ended(id);
            return self.drain_progress();
        };
        let epoch = self.owned.get(&id).map(|o| o.reg.epoch).unwrap_or(0) + 1;
        self.move_to_best(id, snapshot, epoch, Vec::new(), false);
    }

    /// Starts a released game on the best member that takes sessions, other
    /// than `refused`; takes it back when there is none.
    fn move_to_best(
        &mut self,
        id: GameId,
        snapshot: Snapshot,
        epoch: u64,
        refused: Vec<MemberId>,
        passive: bool,
    ) {
        let this = self.this().clone();
        let mut except = refused;
        except.push(this.clone());
        let candidates = self.candidates(&except);
        if candidates.is_empty() {
            return self.retake(id, snapshot, epoch, passive);
        }
        let to = self.config.placement.place(id, &candidates, &this);
        self.send_move(id, to, snapshot, epoch, passive);
    }

    fn send_move(
        &mut self,
        id: GameId,
        to: MemberId,
        snapshot: Snapshot,
        epoch: u64,
        passive: bool,
    ) {
        let corr = self.request(Request::Move { id });
        let stale = self.handed_stale(id);
        if let Some(owned) = self.owned.get_mut(&id) {
            owned.phase = Phase::Moving(Box::new(Moving {
                to: to.clone(),
                corr,
                snapshot: snapshot.clone(),
                epoch,
                passive,
            }));
        }
        let sent = self.send(
            &to,
            Msg::Start {
                corr,
                snapshot,
                epoch,
                stale,
                claim: false,
                passive,
            },
        );
        // Unsent to a member cut off but not fenced, the request waits for
        // its deadline (it may have started the game: see `move_failed`).
        if !sent && !self.unfenced(&to) {
            self.requests.remove(&corr);
            self.move_failed(id, corr);
        }
    }

    pub(super) fn on_move_started(
        &mut self,
        id: GameId,
        from: &MemberId,
        corr: Corr,
        result: Result<Registration, Refusal>,
    ) {
        let Some((to, snapshot, epoch, passive)) = self.moving(id, corr) else {
            return;
        };
        if &to != from {
            return;
        }
        match result {
            Ok(reg) => {
                self.moved_away(id, to);
                self.apply_registration(reg);
            }
            Err(Refusal::Leaving) => {
                self.on_leaving(from);
                self.move_to_best(id, snapshot, epoch, vec![to], passive);
            }
            Err(_) => self.retake(id, snapshot, epoch, passive),
        }
    }

    /// Game `id` runs on `to` now: it is no longer ours.
    pub(super) fn moved_away(&mut self, id: GameId, to: MemberId) {
        let Some(owned) = self.owned.remove(&id) else {
            return;
        };
        self.unpersist(id);
        if let Phase::Moving(moving) = owned.phase {
            self.requests.remove(&moving.corr);
        }
        // Our copy on the old backup is nobody's now.
        if let Some((backup, _)) = owned.backup {
            self.drop_ours(&backup, id, owned.reg.epoch);
        }
        self.moved.insert(id, (to, self.now));
        if self.leaving {
            self.handed_over += 1;
        }
        self.drain_progress();
    }

    /// The members that may hold an older copy of game `id` once it moves:
    /// those already listed, its backup and the member a copy is on its way
    /// to. The new owner takes no write until each dropped it.
    fn handed_stale(&self, id: GameId) -> Vec<StaleCopy> {
        let Some(owned) = self.owned.get(&id).filter(|_| self.quorum.fencing()) else {
            return Vec::new();
        };
        let mut stale = owned.stale_copies().to_vec();
        let ours = |holder: &MemberId| StaleCopy {
            holder: holder.clone(),
            owner: self.this().clone(),
            epoch: owned.reg.epoch,
        };
        if let Some((backup, _)) = &owned.backup {
            note_stale(&mut stale, ours(backup));
        }
        if let Some(to) = self.copying_to(owned) {
            note_stale(&mut stale, ours(to));
        }
        stale
    }

    fn moving(&self, id: GameId, corr: Corr) -> Option<(MemberId, Snapshot, u64, bool)> {
        match &self.owned.get(&id)?.phase {
            Phase::Moving(m) if m.corr == corr => {
                Some((m.to.clone(), m.snapshot.clone(), m.epoch, m.passive))
            }
            _ => None,
        }
    }

    /// A move's start got no answer: asked again while the target is live
    /// (a repeat gets the same answer, so a start that did happen is not
    /// doubled), taken back once it is down.
    pub(super) fn move_failed(&mut self, id: GameId, corr: Corr) {
        let Some((to, snapshot, epoch, passive)) = self.moving(id, corr) else {
            return;
        };
        if self.members.is_live(&to) || self.unfenced(&to) {
            // It may have started the game: not until it is fenced.
            self.send_move(id, to, snapshot, epoch, passive);
        } else {
            // It may have started the game and acknowledged writes before it
            // was fenced, and its backup then fails the game over: this node
            // takes no write until every member told what it holds.
            if self.quorum.confirms_takeovers() {
                let source = (epoch.saturating_sub(1), snapshot.version);
                self.quorum.suspect_game(id, source);
            }
            self.retake(id, snapshot, epoch, passive);
        }
    }

    /// Runs a game whose move failed here again, under an epoch that
    /// outranks a copy the target may have started and its backup failed
    /// over.
    fn retake(&mut self, id: GameId, snapshot: Snapshot, epoch: u64, passive: bool) {
        let reg = Arc::new(self.registration(&snapshot, epoch + 1));
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        owned.up = false;
        owned.reg = reg.clone();
        self.persist(&reg, &snapshot);
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        if passive {
            owned.phase = Phase::Passive(Dormant::of(snapshot.clone()));
        } else {
            owned.phase = Phase::Running;
            self.effect(Effect::StartSession(snapshot.clone()));
        }
        self.apply_registration(reg.clone());
        if self.owned.contains_key(&id) {
            self.notify_all(&reg);
            self.copy_out(Update::Whole(snapshot), CopyReason::Restart, Vec::new());
        }
        self.drain_progress();
    }

    /// A drained game arrived (or came back): say whether the drain is
    /// over. (The next are released at the end of the input, see
    /// [`Control::drain_more`]; a game taken back with nobody left to take
    /// it ends the drain on the next tick.)
    fn drain_progress(&mut self) {
        if !self.leaving || self.drained {
            return;
        }
        if self.owned.is_empty() {
            self.drained = true;
            let moved = self.handed_over;
            self.effect(Effect::Drained { moved });
        }
    }
}

//! The durable store as the control sees it: which games to write there
//! (those this node takes) and to remove (those that leave), the answer to
//! a start that waited for its game to be written, and the games a
//! restarted node finds there and owns again.

use super::games::{Dormant, Owned, Phase};
use super::wire::{Refusal, Snapshot};
use super::{Control, Effect, StopReason};
use crate::registry::Registration;
use minotaur_core::GameId;
use std::sync::Arc;

impl Control {
    /// Writes game `reg.id` to the store, with a durable store.
    pub(super) fn persist(&mut self, reg: &Registration, snapshot: &Snapshot) {
        if self.config.durable {
            self.effect(Effect::Persist {
                reg: reg.clone(),
                snapshot: snapshot.clone(),
            });
        }
    }

    /// Removes game `id` from the store, with a durable store.
    pub(super) fn unpersist(&mut self, id: GameId) {
        if self.config.durable {
            self.effect(Effect::Unpersist(id));
        }
    }

    /// Games were written to the store (`ok`), or not: a start waiting for
    /// that goes on, or fails.
    pub(super) fn on_persisted(&mut self, ids: Vec<GameId>, ok: bool) {
        for id in ids {
            let Some(Owned {
                phase: Phase::Starting(starting),
                ..
            }) = self.owned.get_mut(&id)
            else {
                continue;
            };
            if ok {
                starting.persisted = true;
                self.finish_start(id);
            } else {
                self.effect(Effect::StopSession {
                    id,
                    reason: StopReason::NotStored,
                });
                let why = format!("game {id} could not be written to the durable store");
                self.session_gone(id, Refusal::SessionFailed(why));
            }
        }
    }

    /// Owns again the games this node's store held when it started. The
    /// node is a new incarnation, so each is registered under the next
    /// epoch; a member that took a game over meanwhile holds it under an
    /// epoch as high or a newer version, and the registry's conflict rule
    /// keeps the newer state once the two meet. Until a peer's registry
    /// arrived (with seeds to join through) and every member told what it
    /// holds, no write to these games is acknowledged, as after a
    /// failover.
    pub(super) fn recover(&mut self, games: Vec<(Registration, Snapshot)>) {
        // Alone by choice (no seeds), a node has no one to wait for.
        if !games.is_empty() && !self.config.seeds.is_empty() {
            self.recovering_until = Some(self.now + self.config.failure_timeout * 3);
        }
        let mut regs = Vec::new();
        for (stored, snapshot) in games {
            let id = snapshot.id;
            if self.owned.contains_key(&id) {
                continue;
            }
            let reg = Arc::new(self.registration(&snapshot, stored.epoch + 1));
            if self.quorum.confirms_takeovers() {
                self.quorum
                    .suspect_game(id, (stored.epoch, snapshot.version));
            }
            self.persist(&reg, &snapshot);
            let phase = if self.config.passivate {
                Phase::Passive(Dormant::of(snapshot))
            } else {
                self.effect(Effect::StartSession(snapshot));
                Phase::Running
            };
            self.owned.insert(id, Owned::new(reg.clone(), phase));
            self.apply_registration(reg.clone());
            if self.owned.contains_key(&id) {
                regs.push((*reg).clone());
            }
        }
        if !regs.is_empty() {
            self.broadcast_registered(regs);
        }
    }
}

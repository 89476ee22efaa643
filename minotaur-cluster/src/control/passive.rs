//! Passivation: an idle game's session stops and the game is kept here as
//! its state alone (a few hundred bytes instead of a session's actor), still
//! registered, copied to its backup, handed over on a leave and taken over
//! on a failover as it is. The next command for it starts its session.

use super::games::{Dormant, Phase};
use super::wire::Snapshot;
use super::{Control, Effect};
use minotaur_core::GameId;

impl Control {
    /// Game `id`'s session is idle: passivate it, unless something is in
    /// flight for it (a copy, a save, a move) or this node is leaving (its
    /// drain hands sessions over as they are).
    pub(super) fn on_idle(&mut self, id: GameId) {
        if self.leaving {
            return;
        }
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        let quiet = owned.up
            && matches!(owned.phase, Phase::Running)
            && owned.copying().is_none()
            && owned.queued().is_none()
            && !owned.save_waiting;
        if quiet {
            owned.phase = Phase::Passivating { wake: false };
            self.effect(Effect::Passivate(id));
        }
    }

    /// The session asked to passivate stopped with the game's state
    /// (`Some`), or declined because a command came (`None`).
    pub(super) fn on_passivated(&mut self, id: GameId, snapshot: Option<Snapshot>) {
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        let Phase::Passivating { wake } = owned.phase else {
            return;
        };
        match snapshot {
            None => owned.phase = Phase::Running,
            Some(snapshot) if wake => {
                owned.phase = Phase::Running;
                owned.up = false;
                self.effect(Effect::StartSession(snapshot));
            }
            Some(snapshot) => {
                owned.up = false;
                // What a restarted game kept for its first copy is older.
                owned.set_latest(None);
                owned.phase = Phase::Passive(Dormant::of(snapshot));
            }
        }
    }

    /// A command came for game `id`, whose session does not run here: a
    /// passive game starts; one passivating starts again once stopped.
    pub(super) fn activate(&mut self, id: GameId) {
        let Some(owned) = self.owned.get_mut(&id) else {
            return;
        };
        let snapshot = match &mut owned.phase {
            Phase::Passivating { wake } => {
                *wake = true;
                return;
            }
            Phase::Starting(starting) => match starting.asleep.take() {
                Some(snapshot) => snapshot,
                None => return,
            },
            Phase::Passive(dormant) => {
                let snapshot = dormant.snapshot(&owned.reg);
                owned.phase = Phase::Running;
                snapshot
            }
            _ => return,
        };
        owned.up = false;
        self.effect(Effect::StartSession(snapshot));
    }

    /// The owned games that are passive.
    pub fn passive(&self) -> impl Iterator<Item = GameId> + '_ {
        self.owned
            .iter()
            .filter(|(_, o)| matches!(o.phase, Phase::Passive(_)))
            .map(|(id, _)| *id)
    }
}

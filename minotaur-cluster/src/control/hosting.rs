//! What a node's driver tracks of the sessions its control asked it to
//! start and stop, as plain data, so the simulator runs the same rules.
//!
//! Starting and stopping a session take time, and the session host refuses
//! to start a game whose old session is still listed (it is "already
//! running"). A start that reached the host while the old session was
//! still on its way out would count as started, and then the old session
//! would go: the game would be registered here and hosted nowhere. So a
//! start of a game with a stop in flight waits for that stop to finish.

use super::wire::Snapshot;
use minotaur_core::GameId;
use std::collections::BTreeMap;

/// The stops in flight and the starts waiting for them.
#[derive(Debug, Default)]
pub struct Hosting {
    /// Games whose session is being stopped, with how many stops are in
    /// flight for each.
    stopping: BTreeMap<GameId, u32>,
    /// The latest start asked for each game that waits for its stops.
    deferred: BTreeMap<GameId, Snapshot>,
}

impl Hosting {
    /// A start asked for: the snapshot to start now, or `None` if it waits
    /// for a stop of the same game (see [`Hosting::stopped`]).
    pub fn start(&mut self, snapshot: Snapshot) -> Option<Snapshot> {
        if self.stopping.contains_key(&snapshot.id) {
            self.deferred.insert(snapshot.id, snapshot);
            None
        } else {
            Some(snapshot)
        }
    }

    /// A stop (or a release) of game `id`'s listed session begins.
    pub fn stop_begins(&mut self, id: GameId) {
        *self.stopping.entry(id).or_default() += 1;
    }

    /// A stop of game `id` finished: its session is no longer listed.
    /// Returns the start that waited for the last one, to start now.
    pub fn stopped(&mut self, id: GameId) -> Option<Snapshot> {
        let n = self.stopping.get_mut(&id)?;
        *n -= 1;
        if *n > 0 {
            return None;
        }
        self.stopping.remove(&id);
        self.deferred.remove(&id)
    }

    /// Stops of game `id` in flight, and the version of a start waiting.
    pub fn state_of(&self, id: GameId) -> (u32, Option<u64>) {
        (
            self.stopping.get(&id).copied().unwrap_or(0),
            self.deferred.get(&id).map(|s| s.version),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(id: GameId, version: u64) -> Snapshot {
        Snapshot {
            id,
            version,
            join_code: "ABCD".parse().expect("code"),
            users: vec![],
            active: true,
            state: vec![],
            changes: Vec::new(),
        }
    }

    #[test]
    fn a_start_waits_for_every_stop_of_its_game_and_only_the_latest_runs() {
        let (a, b) = (GameId::random(), GameId::random());
        let mut h = Hosting::default();
        h.stop_begins(a);
        h.stop_begins(a);
        assert!(h.start(snapshot(a, 1)).is_none());
        assert!(h.start(snapshot(a, 2)).is_none());
        assert_eq!(h.start(snapshot(b, 1)).map(|s| s.id), Some(b));
        assert!(h.stopped(a).is_none(), "one stop is still in flight");
        assert_eq!(h.stopped(a).map(|s| s.version), Some(2));
        assert_eq!(h.state_of(a), (0, None));
        assert!(
            h.stopped(a).is_none(),
            "a stop never begun finishes nothing"
        );
    }
}

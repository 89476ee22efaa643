//! Replication: each session's state is copied to a backup member before a
//! change is acknowledged, so one crash loses no acknowledged command.
//!
//! The backup of a game is the first live member, other than its owner, in
//! rendezvous order of the game id. A copy is a full encoded snapshot; the
//! backup keeps the newest one per game and, when the owner goes down,
//! restarts the session from it.

use crate::membership::{MemberId, Membership};
use crate::placement::ranked;
use crate::protocol::{Notice, Request, Response};
use crate::registry::Registry;
use crate::rpc::{self, RpcError};
use async_trait::async_trait;
use minotaur_core::{codec, EngineError, Game, GameId, StateSink};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A backup copy of another member's game.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The owner that sent it.
    pub owner: MemberId,
    /// The owner's registration epoch.
    pub epoch: u64,
    /// The game's version in the copy.
    pub version: u64,
    /// The encoded game.
    pub snapshot: Vec<u8>,
}

/// Backup copies this node holds for other members, one per game *and
/// owner*: after a split two members may each have owned a game, and the
/// copy of the one that owns it now must never be shadowed by the other's,
/// whatever their epochs and versions (a conflict's winner can have the
/// lower epoch).
#[derive(Clone, Default)]
pub struct Replicas {
    inner: Arc<Mutex<HashMap<(GameId, MemberId), Replica>>>,
}

impl Replicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(GameId, MemberId), Replica>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `replica` unless this owner already sent a newer one.
    pub fn store(&self, id: GameId, replica: Replica) {
        let mut map = self.lock();
        let key = (id, replica.owner.clone());
        let stale = map
            .get(&key)
            .is_some_and(|have| (have.epoch, have.version) > (replica.epoch, replica.version));
        if !stale {
            map.insert(key, replica);
        }
    }

    /// Forgets `owner`'s copy of game `id`.
    pub fn drop_from(&self, id: GameId, owner: &MemberId) {
        self.lock().remove(&(id, owner.clone()));
    }

    /// Removes and returns every copy `owner` sent (it is down: fail over).
    pub fn take_owned_by(&self, owner: &MemberId) -> Vec<(GameId, Replica)> {
        let mut map = self.lock();
        let keys: Vec<(GameId, MemberId)> =
            map.keys().filter(|(_, o)| o == owner).cloned().collect();
        keys.into_iter()
            .filter_map(|key| map.remove(&key).map(|r| (key.0, r)))
            .collect()
    }

    /// Every owner this node holds copies from.
    pub fn owners(&self) -> Vec<MemberId> {
        let map = self.lock();
        let distinct: std::collections::BTreeSet<&MemberId> = map.keys().map(|(_, o)| o).collect();
        distinct.into_iter().cloned().collect()
    }

    /// The copy of game `id` that would win a registry conflict (highest
    /// version, then epoch), whoever sent it.
    pub fn get(&self, id: GameId) -> Option<Replica> {
        self.lock()
            .iter()
            .filter(|((game, _), _)| *game == id)
            .map(|(_, r)| r)
            .max_by_key(|r| (r.version, r.epoch))
            .cloned()
    }

    /// Number of copies held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no copy is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What this node knows about a game it owns.
#[derive(Debug, Clone)]
pub(crate) struct OwnedGame {
    pub epoch: u64,
    pub backup: Option<MemberId>,
}

/// Games this node owns. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Owned {
    inner: Arc<Mutex<HashMap<GameId, OwnedGame>>>,
}

impl Owned {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GameId, OwnedGame>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets that `member` holds our copies. A member that counted us
    /// down has failed our games over and dropped their copies; if we kept
    /// it as their backup, the sweep would see nothing to re-place when it
    /// is back (it is their best backup again) and our next crash would
    /// lose every game that took no write in between.
    pub fn forget_backup(&self, member: &MemberId) {
        for owned in self.lock().values_mut() {
            if owned.backup.as_ref() == Some(member) {
                owned.backup = None;
            }
        }
    }
}

/// The [`StateSink`] of a node's sessions: records the version in the
/// registry and copies the state to the game's backup before the session
/// acknowledges the change.
#[derive(Clone)]
pub(crate) struct ReplicationSink {
    pub members: Membership,
    pub registry: Registry,
    pub owned: Owned,
    pub factor: usize,
    pub timeout: Duration,
}

impl ReplicationSink {
    /// Backup candidates for `id`, best first.
    pub fn backups(&self, id: GameId) -> Vec<MemberId> {
        let this = self.members.this().clone();
        ranked(&id, self.members.up().into_iter().filter(|m| m != &this))
    }

    async fn replicate(&self, game: &Game, snapshot: Vec<u8>) -> Result<(), EngineError> {
        let (epoch, previous) = match self.owned.lock().get(&game.id) {
            Some(o) => (o.epoch, o.backup.clone()),
            None => return Ok(()),
        };
        let this = self.members.this().clone();
        let mut last_error = None;
        for backup in self.backups(game.id).into_iter().take(2) {
            let request = Request::Replicate {
                owner: this.clone(),
                epoch,
                snapshot: snapshot.clone(),
            };
            match rpc::request(&self.members, &backup, request, self.timeout).await {
                Ok(Response::Stored) => {
                    if let Some(old) = previous.filter(|p| p != &backup) {
                        let notice = Notice::DropReplica {
                            id: game.id,
                            owner: this.clone(),
                        };
                        rpc::notify(&self.members, &old, &notice);
                    }
                    if let Some(o) = self.owned.lock().get_mut(&game.id) {
                        o.backup = Some(backup);
                    }
                    return Ok(());
                }
                Ok(other) => last_error = Some(format!("{backup} answered {other:?}")),
                // Too large to send to any backup.
                Err(RpcError::Encode(e)) => return Err(EngineError::Codec(e)),
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        match last_error {
            // No other member is up: there is nowhere to copy to, and the
            // previous backup (down in our view) may have dropped its copy.
            None => {
                if let Some(o) = self.owned.lock().get_mut(&game.id) {
                    o.backup = None;
                }
                Ok(())
            }
            Some(why) => Err(EngineError::Unavailable(format!(
                "state of game {} not replicated: {why}",
                game.id
            ))),
        }
    }
}

impl ReplicationSink {
    fn still_owned(&self, id: GameId) -> Result<(), EngineError> {
        if self.owned.lock().contains_key(&id) {
            Ok(())
        } else {
            Err(EngineError::Unavailable(format!(
                "game {id} is no longer owned by {}",
                self.members.this()
            )))
        }
    }
}

#[async_trait]
impl StateSink for ReplicationSink {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        // A copy that lost its registration (a conflict) is being stopped:
        // it must not acknowledge anything more, or the acknowledgement is
        // lost with it. Checked again after the copy, which takes a while.
        self.still_owned(game.id)?;
        if self.factor > 0 {
            let snapshot = codec::encode(game)?;
            self.replicate(game, snapshot).await?;
            self.still_owned(game.id)?;
        }
        self.registry
            .bump_version(game.id, self.members.this(), game.version);
        Ok(())
    }

    // A failed session restarts from the copy on its backup.
    async fn load(&self, id: GameId) -> Option<Game> {
        let backup = self.owned.lock().get(&id)?.backup.clone()?;
        match rpc::request(&self.members, &backup, Request::Fetch { id }, self.timeout).await {
            Ok(Response::Snapshot(Some(bytes))) => codec::decode(&bytes).ok(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(owner: &MemberId, epoch: u64, version: u64) -> Replica {
        Replica {
            owner: owner.clone(),
            epoch,
            version,
            snapshot: vec![version as u8],
        }
    }

    #[test]
    fn another_owners_copy_never_shadows_the_current_owners() {
        let id = GameId::random();
        let (loser, winner) = (MemberId::new("loser", 1), MemberId::new("winner", 2));
        let replicas = Replicas::default();
        // The split's loser failed over with a higher epoch; the winner has
        // the higher version and a lower epoch.
        replicas.store(id, replica(&loser, 3, 40));
        replicas.store(id, replica(&winner, 2, 51));
        assert_eq!(replicas.get(id).map(|r| r.version), Some(51));
        let taken = replicas.take_owned_by(&winner);
        assert_eq!(
            taken.len(),
            1,
            "the winner's copy is there to fail over from"
        );
        assert_eq!(taken[0].1.version, 51);
        replicas.drop_from(id, &loser);
        assert!(replicas.is_empty());
    }

    #[test]
    fn an_owners_older_copy_does_not_replace_its_newer_one() {
        let id = GameId::random();
        let owner = MemberId::new("a", 1);
        let replicas = Replicas::default();
        replicas.store(id, replica(&owner, 1, 5));
        replicas.store(id, replica(&owner, 1, 4));
        assert_eq!(replicas.get(id).map(|r| r.version), Some(5));
        assert_eq!(replicas.len(), 1);
    }
}

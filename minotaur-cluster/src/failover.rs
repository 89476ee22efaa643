//! Failover: restarting a down member's sessions here, from the backup
//! copies this node holds for it.
//!
//! A crash can leave thousands of sessions to restart at once, so they are
//! restarted in batches: one copy request per backup and one announcement
//! per peer for each batch, instead of two round trips per session.

use crate::handoff;
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::node::Shared;
use crate::protocol::{Request, Response};
use crate::registry::Registration;
use crate::replication::{OwnedGame, Replica};
use crate::rpc;
use crate::supervisor::{self, PARALLEL};
use futures::StreamExt;
use minotaur_core::{codec, EngineError, Game, GameId, StateSink};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Sessions restarted per batch.
const BATCH: usize = 256;
/// Batches in flight at once.
const BATCHES: usize = 4;

/// A session to restart: its state, that state encoded, its new epoch.
struct Restart {
    game: Game,
    snapshot: Vec<u8>,
    epoch: u64,
}

/// Restarts every session `down` had whose backup copy is here.
pub(crate) async fn fail_over(shared: &Arc<Shared>, down: &MemberId) {
    let replicas = shared.replicas.take_owned_by(down);
    restart_from(shared.clone(), down.clone(), replicas).await;
}

/// Fails over copies held from members that are down here. Normally
/// [`fail_over`] has taken them already; this catches a copy stored while
/// its owner was going down (the store and the failover race).
pub(crate) fn adopt_orphans(shared: &Arc<Shared>) {
    for owner in shared.replicas.owners() {
        if shared.members.status(&owner) == Some(MemberStatus::Down) {
            let replicas = shared.replicas.take_owned_by(&owner);
            tracing::warn!(peer = %owner, copies = replicas.len(), "failing over copies left from a down member");
            let task = restart_from(shared.clone(), owner, replicas);
            shared.tasks.spawn(task);
        }
    }
}

async fn restart_from(shared: Arc<Shared>, down: MemberId, replicas: Vec<(GameId, Replica)>) {
    if replicas.is_empty() {
        return;
    }
    let restarts: Vec<Restart> = replicas
        .into_iter()
        .filter_map(|(id, replica)| to_restart(&shared, &down, id, replica))
        .collect();
    let restarted = if shared.is_leaving() {
        // On our way out ourselves: members that stay take them.
        futures::stream::iter(restarts)
            .map(|r| start_elsewhere(&shared, r))
            .buffer_unordered(PARALLEL)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await
    } else {
        let mut batches = Vec::new();
        let mut restarts = restarts.into_iter().peekable();
        while restarts.peek().is_some() {
            batches.push(restarts.by_ref().take(BATCH).collect::<Vec<_>>());
        }
        futures::stream::iter(batches)
            .map(|batch| host_batch(&shared, batch))
            .buffer_unordered(BATCHES)
            .fold(0, |sum, n| futures::future::ready(sum + n))
            .await
    };
    tracing::warn!(peer = %down, sessions = restarted, "failed over sessions of a down member");
    shared.members.emit(ClusterEvent::FailedOver {
        from: down,
        sessions: restarted,
    });
}

/// The session to restart from `replica`, unless the copy is stale (the
/// game moved on), undecodable, or the game is over.
fn to_restart(shared: &Shared, down: &MemberId, id: GameId, replica: Replica) -> Option<Restart> {
    let current = shared.registry.lookup(id);
    if current.as_ref().is_some_and(|r| &r.owner != down) {
        return None;
    }
    let game: Game = match codec::decode(&replica.snapshot) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(game = %id, error = %e, "replica undecodable");
            return None;
        }
    };
    if !game.is_active() {
        return None;
    }
    let epoch = replica.epoch.max(current.map(|r| r.epoch).unwrap_or(0)) + 1;
    Some(Restart {
        game,
        snapshot: replica.snapshot,
        epoch,
    })
}

/// Restarts a batch of sessions here: copies them to their backups, starts
/// them, and announces them. Returns how many started. (The batched form
/// of `supervisor::host_game`.)
async fn host_batch(shared: &Arc<Shared>, mut batch: Vec<Restart>) -> usize {
    if shared.is_leaving() {
        return 0;
    }
    {
        // As in `supervisor::host_unchecked`: a game already running (or
        // starting) here keeps its session and its entry.
        let mut owned = shared.owned.lock();
        batch.retain(|r| {
            if owned.contains_key(&r.game.id) {
                tracing::warn!(game = %r.game.id, "not failing over a game already running here");
                return false;
            }
            let owned_game = OwnedGame {
                epoch: r.epoch,
                backup: None,
            };
            owned.insert(r.game.id, owned_game);
            true
        });
    }
    if shared.config.replication_factor > 0 {
        let copied = copy_to_backups(shared, &mut batch).await;
        // One by one for the rest (the next backup candidate, or an older
        // peer): they lived already, so they start even without a copy.
        futures::stream::iter(batch.iter().filter(|r| !copied.contains(&r.game.id)))
            .for_each_concurrent(PARALLEL, |r| async move {
                if let Err(e) = shared.sink.save(&r.game).await {
                    tracing::warn!(game = %r.game.id, error = %e, "starting without a backup copy");
                }
            })
            .await;
    }
    let started: Vec<Registration> = futures::stream::iter(batch)
        .map(|r| async move {
            let reg = registration(shared, &r.game, r.epoch);
            match shared.local.start_saved(r.game).await {
                Ok(()) => Some(reg),
                Err(e) => {
                    shared.owned.lock().remove(&reg.id);
                    tracing::error!(game = %reg.id, error = %e, "failover start failed");
                    None
                }
            }
        })
        .buffer_unordered(PARALLEL)
        .filter_map(futures::future::ready)
        .collect()
        .await;
    for reg in &started {
        supervisor::apply_registration(shared, reg.clone());
    }
    supervisor::announce(shared, &started).await;
    started.len()
}

fn registration(shared: &Shared, game: &Game, epoch: u64) -> Registration {
    Registration {
        id: game.id,
        join_code: game.join_code.clone(),
        users: game.players.iter().map(|p| p.user.clone()).collect(),
        owner: shared.this.clone(),
        epoch,
        version: game.version,
    }
}

/// Copies the batch to each game's preferred backup, one request per
/// backup. Returns the games copied (their backup is recorded).
async fn copy_to_backups(shared: &Arc<Shared>, batch: &mut [Restart]) -> HashSet<GameId> {
    let mut by_backup: HashMap<MemberId, Vec<(GameId, u64, Vec<u8>)>> = HashMap::new();
    for r in batch.iter_mut() {
        if let Some(backup) = shared.sink.backups(r.game.id).into_iter().next() {
            let copy = (r.game.id, r.epoch, std::mem::take(&mut r.snapshot));
            by_backup.entry(backup).or_default().push(copy);
        }
    }
    let sent = by_backup.into_iter().map(|(backup, copies)| async move {
        let ids: Vec<GameId> = copies.iter().map(|(id, ..)| *id).collect();
        let request = Request::ReplicateMany {
            owner: shared.this.clone(),
            copies: copies.into_iter().map(|(_, e, s)| (e, s)).collect(),
        };
        let timeout = shared.config.call_timeout;
        match rpc::request(&shared.members, &backup, request, timeout).await {
            Ok(Response::Stored) => (backup, ids),
            _ => (backup, Vec::new()),
        }
    });
    let mut copied = HashSet::new();
    for (backup, ids) in futures::future::join_all(sent).await {
        let mut owned = shared.owned.lock();
        for id in ids {
            if let Some(o) = owned.get_mut(&id) {
                o.backup = Some(backup.clone());
                copied.insert(id);
            }
        }
    }
    copied
}

/// Starts a session on a member that is not leaving. Returns whether it
/// started.
async fn start_elsewhere(shared: &Arc<Shared>, r: Restart) -> bool {
    let id = r.game.id;
    let targets: Vec<_> = handoff::candidates(shared)
        .into_iter()
        .filter(|c| c.id != shared.this)
        .collect();
    let result = if targets.is_empty() {
        Err(EngineError::Unavailable("every member is leaving".into()))
    } else {
        let target = shared.config.placement.place(id, &targets, &shared.this);
        supervisor::start_remote(shared, &target, r.snapshot, r.epoch)
            .await
            .map(|_| ())
            .map_err(EngineError::from)
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(game = %id, error = %e, "failover start failed");
            false
        }
    }
}

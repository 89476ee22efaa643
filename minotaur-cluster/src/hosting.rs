//! Starting many sessions at once: a failover restarting a crashed member's
//! games here, a draining member handing its games to another.
//!
//! One session at a time costs two round trips each (the copy to the
//! backup, the registration to every peer). Here a batch makes one copy
//! request per backup and one announcement per peer, and a drain moves a
//! batch with one start request.

use crate::membership::{MemberId, MemberStatus};
use crate::node::Shared;
use crate::protocol::{Request, Response};
use crate::registry::Registration;
use crate::replication::OwnedGame;
use crate::rpc::{self, RpcError};
use crate::supervisor::{self, PARALLEL};
use futures::StreamExt;
use minotaur_core::{EngineError, Game, GameId, StateSink};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Sessions per batch.
pub(crate) const BATCH: usize = 256;
/// Batches in flight at once.
pub(crate) const BATCHES: usize = 4;
/// Tries of a remote batch start before giving up (it is idempotent).
const START_ATTEMPTS: u32 = 3;

/// A session to start: its state, that state encoded, its epoch.
pub(crate) struct Hosting {
    pub game: Game,
    pub snapshot: Vec<u8>,
    pub epoch: u64,
}

/// Starts every session of `all` here, in batches. Returns each game's
/// registration, or why it did not start.
pub(crate) async fn host_all(
    shared: &Arc<Shared>,
    all: Vec<Hosting>,
) -> Vec<(GameId, Result<Registration, EngineError>)> {
    let mut batches = Vec::new();
    let mut all = all.into_iter().peekable();
    while all.peek().is_some() {
        batches.push(all.by_ref().take(BATCH).collect::<Vec<_>>());
    }
    futures::stream::iter(batches)
        .map(|batch| host_batch(shared, batch))
        .buffer_unordered(BATCHES)
        .flat_map(futures::stream::iter)
        .collect()
        .await
}

/// Starts a batch of sessions here: copies them to their backups, starts
/// them, and announces them (the batched form of `supervisor::host_game`).
async fn host_batch(
    shared: &Arc<Shared>,
    mut batch: Vec<Hosting>,
) -> Vec<(GameId, Result<Registration, EngineError>)> {
    if shared.is_leaving() {
        let leaving = || EngineError::Unavailable(format!("{} is leaving", shared.this));
        return batch.iter().map(|h| (h.game.id, Err(leaving()))).collect();
    }
    {
        let mut owned = shared.owned.lock();
        for h in &batch {
            let owned_game = OwnedGame {
                epoch: h.epoch,
                backup: None,
            };
            owned.insert(h.game.id, owned_game);
        }
    }
    if shared.config.replication_factor > 0 {
        let copied = copy_to_backups(shared, &mut batch).await;
        // One by one for the rest (the next backup candidate, or a peer of
        // an older release). These games lived already, so they start even
        // without a copy.
        futures::stream::iter(batch.iter().filter(|h| !copied.contains(&h.game.id)))
            .for_each_concurrent(PARALLEL, |h| async move {
                if let Err(e) = shared.sink.save(&h.game).await {
                    tracing::warn!(game = %h.game.id, error = %e, "starting without a backup copy");
                }
            })
            .await;
    }
    let results: Vec<(GameId, Result<Registration, EngineError>)> = futures::stream::iter(batch)
        .map(|h| async move {
            let reg = registration(shared, &h.game, h.epoch);
            let started = shared.local.start_saved(h.game).await;
            if started.is_err() {
                shared.owned.lock().remove(&reg.id);
            }
            (reg.id, started.map(|()| reg))
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let started: Vec<Registration> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().cloned())
        .collect();
    for reg in &started {
        supervisor::apply_registration(shared, reg.clone());
    }
    supervisor::announce(shared, &started).await;
    results
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
async fn copy_to_backups(shared: &Arc<Shared>, batch: &mut [Hosting]) -> HashSet<GameId> {
    let mut by_backup: HashMap<MemberId, Vec<(GameId, u64, Vec<u8>)>> = HashMap::new();
    for h in batch.iter_mut() {
        if let Some(backup) = shared.sink.backups(h.game.id).into_iter().next() {
            // A copy of the bytes: a drain's batch is answered to a sender
            // that may send it again.
            let copy = (h.game.id, h.epoch, h.snapshot.clone());
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

/// Answers a peer's [`Request::StartMany`]: like
/// [`supervisor::start_requested`] for each game, so a repeated batch gets
/// the same registrations.
pub(crate) async fn start_requested(
    shared: &Arc<Shared>,
    games: Vec<(Game, u64)>,
) -> Vec<Result<Registration, EngineError>> {
    let order: Vec<GameId> = games.iter().map(|(g, _)| g.id).collect();
    let (repeats, fresh): (Vec<_>, Vec<_>) = games.into_iter().partition(|(g, epoch)| {
        shared
            .owned
            .lock()
            .get(&g.id)
            .is_some_and(|o| o.epoch == *epoch)
    });
    let mut results: HashMap<GameId, Result<Registration, EngineError>> =
        futures::future::join_all(repeats.into_iter().map(|(game, epoch)| async move {
            (
                game.id,
                supervisor::start_requested(shared, game, epoch).await,
            )
        }))
        .await
        .into_iter()
        .collect();
    let fresh: Vec<Hosting> = fresh
        .into_iter()
        .filter_map(|(game, epoch)| match minotaur_core::codec::encode(&game) {
            Ok(snapshot) => Some(Hosting {
                game,
                snapshot,
                epoch,
            }),
            Err(e) => {
                results.insert(game.id, Err(e.into()));
                None
            }
        })
        .collect();
    results.extend(host_all(shared, fresh).await);
    order
        .into_iter()
        .map(|id| {
            results
                .remove(&id)
                .unwrap_or_else(|| Err(EngineError::Protocol(format!("game {id} listed twice"))))
        })
        .collect()
}

/// Starts `batch` on `target` with one request, sent again while the target
/// is up and the request times out. Returns each game's outcome, in order;
/// `None` when the target does not know the batch request (an older
/// release): start them one by one instead.
pub(crate) async fn start_on(
    shared: &Arc<Shared>,
    target: &MemberId,
    batch: &[Hosting],
) -> Option<Vec<Result<Registration, EngineError>>> {
    let timeout = shared.config.call_timeout;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let request = Request::StartMany {
            games: batch
                .iter()
                .map(|h| (h.epoch, h.snapshot.clone()))
                .collect(),
        };
        let failed = |e: EngineError| Some(batch.iter().map(|_| Err(e.clone())).collect());
        match rpc::request(&shared.members, target, request, timeout).await {
            Ok(Response::StartedMany(results)) if results.len() == batch.len() => {
                for reg in results.iter().flatten() {
                    supervisor::apply_registration(shared, reg.clone());
                }
                return Some(results);
            }
            Ok(Response::Refused(_)) => return None,
            Ok(other) => {
                return failed(EngineError::Protocol(format!(
                    "unexpected answer to a batch start: {other:?}"
                )))
            }
            Err(RpcError::Timeout(..))
                if attempts < START_ATTEMPTS
                    && shared.members.status(target) == Some(MemberStatus::Up) =>
            {
                tracing::warn!(to = %target, games = batch.len(), attempts, "batch start timed out; asking again");
            }
            Err(e) => return failed(EngineError::Unavailable(e.to_string())),
        }
    }
}

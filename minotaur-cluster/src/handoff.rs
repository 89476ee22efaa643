//! Handoff: moving sessions with their state to another member (graceful
//! leave, active redistribution), and keeping each game's backup on the
//! right member as membership changes.

use crate::membership::MemberId;
use crate::node::{lock, Shared};
use crate::placement::Candidate;
use crate::protocol::{self, Request, Response};
use crate::router::answer;
use crate::rpc;
use crate::supervisor::{self, PARALLEL};
use futures::StreamExt;
use minotaur_core::local::call_session;
use minotaur_core::{codec, Command, GameId, Reply, StateSink};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Members that can take sessions, with their loads.
pub(crate) fn candidates(shared: &Shared) -> Vec<Candidate> {
    let loads = shared.registry.count_by_owner();
    shared
        .members
        .up()
        .into_iter()
        .map(|id| Candidate {
            load: loads.get(&id).copied().unwrap_or(0),
            id,
        })
        .collect()
}

/// Moves game `id` to `target`. Requests arriving meanwhile wait and are
/// then pointed at the new owner. Returns whether it moved.
pub(crate) async fn move_game(shared: &Arc<Shared>, id: GameId, target: MemberId) -> bool {
    lock(&shared.moving).insert(id, Vec::new());
    let game = match shared.local.release(id).await {
        Ok(Some(game)) => game,
        _ => {
            finish_move(shared, id, Response::NotHere);
            return false;
        }
    };
    let previous = shared.owned.lock().remove(&id);
    let epoch = previous.as_ref().map(|o| o.epoch).unwrap_or(0) + 1;
    let moved = match codec::encode(&game) {
        Ok(snapshot) => {
            let request = Request::Start { snapshot, epoch };
            rpc::request(
                &shared.members,
                &target,
                request,
                shared.config.call_timeout,
            )
            .await
        }
        Err(e) => Err(rpc::RpcError::Encode(e)),
    };
    match moved {
        Ok(Response::Started(Ok(reg))) => {
            supervisor::apply_registration(shared, reg);
            lock(&shared.moved).insert(id, (target.clone(), std::time::Instant::now()));
            if let Some(backup) = previous.and_then(|o| o.backup).filter(|b| b != &target) {
                let notice = protocol::Notice::DropReplica {
                    id,
                    owner: shared.this.clone(),
                };
                rpc::notify(&shared.members, &backup, &notice);
            }
            finish_move(shared, id, Response::Moved(target));
            true
        }
        other => {
            if let Ok(Response::Leaving(member)) = &other {
                // Not a target for the next round either.
                supervisor::member_leaving(shared, member);
            }
            tracing::warn!(game = %id, to = %target, answer = ?other, "handoff failed; keeping the session here");
            // Taken back even while leaving: the session must not be lost.
            if let Err(e) = supervisor::host_unchecked(shared, game, epoch).await {
                tracing::error!(game = %id, error = %e, "could not restart a session after a failed handoff");
            }
            finish_move(shared, id, Response::NotHere);
            false
        }
    }
}

fn finish_move(shared: &Shared, id: GameId, response: Response) {
    let waiting = lock(&shared.moving).remove(&id).unwrap_or_default();
    for reply in waiting {
        let again = match &response {
            Response::Moved(to) => Response::Moved(to.clone()),
            _ => Response::NotHere,
        };
        answer(reply, again);
    }
}

/// Hands every hosted session over to the other members.
pub(crate) async fn drain(shared: &Arc<Shared>) {
    for _ in 0..5 {
        let ids = shared.local.sessions().ids();
        if ids.is_empty() {
            return;
        }
        let targets = candidates(shared);
        if targets.is_empty() {
            tracing::warn!(
                sessions = ids.len(),
                "no member to hand sessions to; they stop with the node"
            );
            return;
        }
        let moved = futures::stream::iter(ids)
            .map(|id| {
                let target = shared.config.placement.place(id, &targets, &shared.this);
                move_game(shared, id, target)
            })
            .buffer_unordered(PARALLEL)
            .filter(|ok| futures::future::ready(*ok))
            .count()
            .await;
        tracing::info!(moved, "handed sessions over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Moves hosted sessions whose placement now points elsewhere.
pub(crate) async fn rebalance(shared: &Arc<Shared>) {
    let targets = candidates(shared);
    let moves: Vec<(GameId, MemberId)> = shared
        .local
        .sessions()
        .ids()
        .into_iter()
        .map(|id| {
            (
                id,
                shared.config.placement.place(id, &targets, &shared.this),
            )
        })
        .filter(|(_, to)| to != &shared.this)
        .collect();
    let moved = futures::stream::iter(moves)
        .map(|(id, to)| move_game(shared, id, to))
        .buffer_unordered(PARALLEL)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    if moved > 0 {
        tracing::info!(moved, "rebalanced sessions onto a new member");
    }
}

/// [`sweep`], unless the previous periodic one is still running. Catches
/// copies that failed when membership changed (a new member refuses them
/// until it counts us live, a call timed out).
pub(crate) async fn sweep_again(shared: Arc<Shared>) {
    if shared.sweeping.swap(true, Ordering::SeqCst) {
        return;
    }
    sweep(shared.clone()).await;
    shared.sweeping.store(false, Ordering::SeqCst);
}

/// Copies each owned game to its current preferred backup when that changed
/// (a backup went down, left, or a better one joined).
pub(crate) async fn sweep(shared: Arc<Shared>) {
    if shared.config.replication_factor == 0 {
        return;
    }
    let others: Vec<MemberId> = shared
        .members
        .up()
        .into_iter()
        .filter(|m| m != &shared.this)
        .collect();
    let stale: Vec<GameId> = shared
        .owned
        .lock()
        .iter()
        .filter(|(id, owned)| owned.backup.as_ref() != crate::placement::best(*id, &others))
        .map(|(id, _)| *id)
        .collect();
    futures::stream::iter(stale)
        .for_each_concurrent(PARALLEL, |id| {
            let shared = shared.clone();
            async move {
                let Some(session) = shared.local.sessions().session(id) else {
                    return;
                };
                let timeout = shared.config.call_timeout;
                if let Ok(Reply::Game(game)) =
                    call_session(&session, id, Command::GetGame, timeout).await
                {
                    if let Err(e) = shared.sink.save(&game).await {
                        tracing::warn!(game = %id, error = %e, "could not re-place backup");
                    }
                }
            }
        })
        .await;
}

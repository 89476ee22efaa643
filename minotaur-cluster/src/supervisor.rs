//! The distributed supervisor: hosting a game's session on this node,
//! reacting to members coming and going (failover from replicas), and
//! resolving two registrations of one game.

use crate::handoff;
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::node::Shared;
use crate::protocol::{Notice, Request, Response};
use crate::registry::{Applied, Registration};
use crate::replication::OwnedGame;
use crate::rpc::{self, RpcError};
use minotaur_core::host::{EndReason, HostEvent};
use minotaur_core::{EngineError, Game, StateSink};
use std::collections::hash_map::Entry;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedReceiver;

/// How many sessions are restarted or moved at once.
pub(crate) const PARALLEL: usize = 64;

/// Why a session was not started on a member.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The member is leaving and takes no new sessions: nothing started.
    Leaving(MemberId),
    /// There is no link to the member: nothing was sent.
    NoRoute(MemberId),
    /// The link to the member closed before it answered: the session may
    /// have started there.
    Closed(MemberId),
    /// Anything else, for the caller.
    Failed(EngineError),
}

impl From<StartError> for EngineError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Leaving(m) => EngineError::Unavailable(format!("{m} is leaving")),
            StartError::NoRoute(m) => EngineError::Unavailable(format!("no route to {m}")),
            StartError::Closed(m) => EngineError::Unavailable(format!("link to {m} closed")),
            StartError::Failed(e) => e,
        }
    }
}

/// Starts a session for `game` on this node under `epoch`: copies it to its
/// backup, starts the actor, then registers it cluster-wide. Refused while
/// this node is leaving.
pub(crate) async fn host_game(
    shared: &Arc<Shared>,
    game: Game,
    epoch: u64,
) -> Result<Registration, StartError> {
    if shared.is_leaving() {
        return Err(StartError::Leaving(shared.this.clone()));
    }
    host_unchecked(shared, game, epoch)
        .await
        .map_err(StartError::Failed)
}

/// [`host_game`] even while leaving (to take back a session whose handoff failed).
pub(crate) async fn host_unchecked(
    shared: &Arc<Shared>,
    game: Game,
    epoch: u64,
) -> Result<Registration, EngineError> {
    let id = game.id;
    let reg = Registration {
        id,
        join_code: game.join_code.clone(),
        users: game.players.iter().map(|p| p.user.clone()).collect(),
        owner: shared.this.clone(),
        epoch,
        version: game.version,
    };
    // A session of this game already runs (or starts) here: leave it and
    // its entry alone. Overwriting the entry, then removing it when the
    // second start fails, left the running session unowned: never copied
    // again, its writes refused, and lost with this node.
    match shared.owned.lock().entry(id) {
        Entry::Occupied(_) => return Err(EngineError::AlreadyRunning(id)),
        Entry::Vacant(slot) => {
            slot.insert(OwnedGame {
                epoch,
                backup: None,
            });
        }
    }
    // A new game is refused if it cannot be copied; a game that already
    // lived (moved or failed over) must start here regardless, or be lost.
    let started = match shared.sink.save(&game).await {
        Ok(()) => shared.local.start_saved(game).await,
        Err(e) if epoch > 1 => {
            tracing::warn!(game = %id, error = %e, "starting without a backup copy");
            shared.local.start_saved(game).await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        shared.owned.lock().remove(&id);
        return Err(e);
    }
    apply_registration(shared, reg.clone());
    announce(shared, std::slice::from_ref(&reg)).await;
    Ok(reg)
}

/// Tells every live peer about `regs` and waits for their acknowledgements,
/// one request per peer (bounded by the call timeout; a peer that does not
/// answer catches up through the sync that follows its reconnection). A
/// peer of an older release that refuses the batch gets them one by one.
pub(crate) async fn announce(shared: &Arc<Shared>, regs: &[Registration]) {
    let peers: Vec<_> = shared
        .members
        .live()
        .into_iter()
        .filter(|m| m != &shared.this)
        .collect();
    let timeout = shared.config.call_timeout;
    let one_by_one = |peer| async move {
        for reg in regs {
            let request = Request::Register(reg.clone());
            let _ = rpc::request(&shared.members, peer, request, timeout).await;
        }
    };
    futures::future::join_all(peers.iter().map(|peer| async move {
        match regs {
            [] => {}
            [_] => one_by_one(peer).await,
            _ => {
                let request = Request::RegisterMany(regs.to_vec());
                if let Ok(Response::Refused(_)) =
                    rpc::request(&shared.members, peer, request, timeout).await
                {
                    one_by_one(peer).await;
                }
            }
        }
    }))
    .await;
}

/// Asks `target` to run a game from `snapshot` under `epoch`, and records
/// its registration here.
pub(crate) async fn start_remote(
    shared: &Arc<Shared>,
    target: &MemberId,
    snapshot: Vec<u8>,
    epoch: u64,
) -> Result<Registration, StartError> {
    let request = Request::Start { snapshot, epoch };
    match rpc::request(&shared.members, target, request, shared.config.call_timeout).await {
        Ok(Response::Started(Ok(reg))) => {
            apply_registration(shared, reg.clone());
            Ok(reg)
        }
        Ok(Response::Started(Err(e))) => Err(StartError::Failed(e)),
        Ok(Response::Leaving(_)) => Err(StartError::Leaving(target.clone())),
        Ok(other) => Err(StartError::Failed(EngineError::Protocol(format!(
            "unexpected answer {other:?}"
        )))),
        Err(RpcError::NoRoute(_)) => Err(StartError::NoRoute(target.clone())),
        Err(RpcError::Closed(_)) => Err(StartError::Closed(target.clone())),
        Err(e) => Err(StartError::Failed(e.into_engine())),
    }
}

/// `member` is leaving: it takes no new sessions from now on, and the
/// backups it holds for us are placed elsewhere.
pub(crate) fn member_leaving(shared: &Arc<Shared>, member: &MemberId) {
    if shared.members.set_leaving(member) {
        tracing::info!(peer = %member, "member leaving");
        shared.tasks.spawn(handoff::sweep(shared.clone()));
    }
}

/// Applies a registration to this node's registry and acts on a conflict
/// that involves a session hosted here.
pub(crate) fn apply_registration(shared: &Arc<Shared>, reg: Registration) {
    match shared.registry.apply(reg.clone()) {
        // (Not when the newcomer is ours too: a session restarted here under
        // a new epoch, after a failed handoff, replaces our older entry.)
        Applied::Replaced(old) if old.owner == shared.this && reg.owner != shared.this => {
            lose(shared, old.id, reg)
        }
        // Our own new registration (a failover, a move) lost to a copy that
        // outranks it, which arrived while our session was starting: that
        // session must not run on unregistered.
        Applied::Rejected(kept) if reg.owner == shared.this && kept.owner != shared.this => {
            lose(shared, reg.id, kept)
        }
        Applied::Rejected(kept) if kept.owner == shared.this => {
            // Theirs lost against ours: make sure everyone sees our newest version.
            tracing::warn!(game = %kept.id, loser = %reg.owner, "registry conflict won");
            shared.members.emit(ClusterEvent::ConflictResolved {
                id: kept.id,
                winner: kept.owner.clone(),
                loser: reg.owner.clone(),
                loser_state: None,
            });
            rpc::broadcast(&shared.members, &Notice::Registered(kept));
        }
        _ => {}
    }
}

/// Our copy of game `id` lost to `winner`: stop it, and report its state
/// rather than drop it silently.
fn lose(shared: &Arc<Shared>, id: minotaur_core::GameId, winner: Registration) {
    // Pass the winner on: a peer that still has our registration cannot know
    // it lost (the winner only announced a version it had before ours grew),
    // and would keep routing the game to us, who no longer host it. The
    // winner outranked our latest version, so it outranks any of ours a
    // peer holds.
    rpc::broadcast(&shared.members, &Notice::Registered(winner.clone()));
    // From now on the session's writes are refused (see ReplicationSink).
    shared.owned.lock().remove(&id);
    // The session running now, not whichever runs when the task does: a
    // failover may start the game here again meanwhile, and stopping that
    // one would leave it owned with no session (never copied again, its
    // later failovers skipped as "already running here").
    let Some(session) = shared.local.sessions().session(id) else {
        return;
    };
    let owner = shared.clone();
    let task = async move {
        let shared = owner;
        if let Ok(Some(state)) = shared.local.release_session(id, &session).await {
            tracing::warn!(game = %id, winner = %winner.owner, ours = state.version, theirs = winner.version,
                "registry conflict lost; stopping our copy");
            shared.members.emit(ClusterEvent::ConflictResolved {
                id,
                winner: winner.owner.clone(),
                loser: shared.this.clone(),
                loser_state: Some(Box::new(state)),
            });
        }
    };
    shared.tasks.spawn(task);
}

/// A member came up: tell it what we own, re-place backups, and move
/// sessions to it if redistribution is active.
pub(crate) async fn on_member_up(shared: &Arc<Shared>, member: &MemberId) {
    let entries = shared.registry.owned_by(&shared.this);
    rpc::notify(
        &shared.members,
        member,
        &Notice::Sync {
            from: shared.this.clone(),
            entries,
        },
    );
    let owner = shared.clone();
    let task = async move {
        handoff::sweep(owner.clone()).await;
        if owner.config.redistribution == crate::Redistribution::Active {
            handoff::rebalance(&owner).await;
        }
    };
    shared.tasks.spawn(task);
}

/// A member went down: restart its sessions whose backup is here, re-place
/// backups it held, and forget registrations nobody reclaims.
pub(crate) async fn on_member_down(shared: Arc<Shared>, member: MemberId) {
    shared.owned.forget_backup(&member);
    crate::failover::fail_over(&shared, &member).await;
    handoff::sweep(shared.clone()).await;
    let grace = shared.config.failure_timeout * 3;
    tokio::time::sleep(grace).await;
    if shared.members.status(&member) == Some(MemberStatus::Down) {
        let purged = shared.registry.purge_owner(&member);
        if !purged.is_empty() {
            tracing::warn!(peer = %member, games = purged.len(), "forgot games of a down member that nobody restarted");
        }
    }
}

/// Cleans up after sessions that ended for good.
pub(crate) async fn run_host_events(shared: Arc<Shared>, mut events: UnboundedReceiver<HostEvent>) {
    while let Some(event) = events.recv().await {
        if !matches!(event.reason, EndReason::Concluded | EndReason::Failed(_)) {
            continue;
        }
        let Some(owned) = shared.owned.lock().remove(&event.id) else {
            continue;
        };
        shared.registry.remove(event.id, &shared.this);
        rpc::broadcast(
            &shared.members,
            &Notice::Unregistered {
                id: event.id,
                owner: shared.this.clone(),
            },
        );
        if let Some(backup) = owned.backup {
            let notice = Notice::DropReplica {
                id: event.id,
                owner: shared.this.clone(),
            };
            rpc::notify(&shared.members, &backup, &notice);
        }
    }
}

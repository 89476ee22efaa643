//! Failover: restarting a down member's sessions here, from the backup
//! copies this node holds for it. A crash can leave thousands of sessions
//! to restart at once, so they start in batches (see `hosting`).

use crate::handoff;
use crate::hosting::{self, Hosting};
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::node::Shared;
use crate::replication::Replica;
use crate::supervisor::{self, PARALLEL};
use futures::StreamExt;
use minotaur_core::{codec, EngineError, Game, GameId};
use std::sync::Arc;

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
    let restarts: Vec<Hosting> = replicas
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
        let started = hosting::host_all(&shared, restarts).await;
        let mut count = 0;
        for (id, result) in started {
            match result {
                Ok(_) => count += 1,
                Err(e) => tracing::error!(game = %id, error = %e, "failover start failed"),
            }
        }
        count
    };
    tracing::warn!(peer = %down, sessions = restarted, "failed over sessions of a down member");
    shared.members.emit(ClusterEvent::FailedOver {
        from: down,
        sessions: restarted,
    });
}

/// The session to restart from `replica`, unless the copy is stale (the
/// game moved on), undecodable, or the game is over.
fn to_restart(shared: &Shared, down: &MemberId, id: GameId, replica: Replica) -> Option<Hosting> {
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
    Some(Hosting {
        game,
        snapshot: replica.snapshot,
        epoch,
    })
}

/// Starts a session on a member that is not leaving. Returns whether it
/// started.
async fn start_elsewhere(shared: &Arc<Shared>, r: Hosting) -> bool {
    let id = r.game.id;
    let targets: Vec<_> = handoff::candidates(shared)
        .into_iter()
        .filter(|c| c.id != shared.this)
        .collect();
    let result = if targets.is_empty() {
        Err(EngineError::Unavailable("every member is leaving".into()))
    } else {
        let target = shared.config.placement.place(id, &targets, &shared.this);
        supervisor::start_remote(shared, id, &target, r.snapshot, r.epoch).await
    };
    match result {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(game = %id, error = %e, "failover start failed");
            false
        }
    }
}

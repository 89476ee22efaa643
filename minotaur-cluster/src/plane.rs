//! The handles every part of a running node shares (all read-only: the
//! state they lead to is owned by the driver task, the sessions' host or
//! the transport), and the node's two ways out: a graceful leave and a
//! stop.

use crate::config::NodeConfig;
use crate::driver::{DriverTx, ToDriver, View};
use crate::exchange::Exchange;
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::protocol::RouterMsg;
use crate::registry::Registry;
use crate::store::Store;
use crate::tasks::{Calls, Tasks};
use crate::transport::kill_tree;
use arc_swap::ArcSwap;
use minotaur_core::LocalDirectory;
use ractor::ActorRef;
use ractor_cluster::NodeServerMessage;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// Call timeouts a leave waits with no game handed over before it gives
/// the rest up to failover.
const HANDOVER_STALL: u32 = 6;

/// What every part of a node shares.
pub(crate) struct Plane {
    pub this: MemberId,
    pub config: NodeConfig,
    pub addr: String,
    pub server: ActorRef<NodeServerMessage>,
    pub local: Arc<LocalDirectory>,
    pub registry: Registry,
    pub view: Arc<ArcSwap<View>>,
    pub driver: DriverTx,
    pub events: broadcast::Sender<ClusterEvent>,
    pub tasks: Tasks,
    pub calls: Arc<Calls>,
    pub exchange: Arc<Exchange>,
    pub store: Option<Store>,
    pub span: tracing::Span,
}

impl Plane {
    /// Leaves gracefully: hands every session over, lets calls in flight
    /// finish, says goodbye.
    pub async fn leave(&self) {
        let (reply, drained) = oneshot::channel();
        if self.driver.send(ToDriver::Leave(reply)).is_ok() {
            self.await_drained(drained).await;
        }
        self.calls.close();
        if !self.calls.idle(self.config.call_timeout).await {
            tracing::warn!("engine calls still in flight; leaving anyway");
        }
        let (done, sent) = oneshot::channel();
        if self.driver.send(ToDriver::Depart(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
        }
        // Let the goodbyes reach the peers before the links close.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Waits for the hand-over to finish, for as long as it moves games:
    /// a node holding many games takes long to hand them all over, and
    /// leaving before is a failover of the rest. It gives up once
    /// [`HANDOVER_STALL`] call timeouts pass with no game moved.
    async fn await_drained(&self, mut drained: oneshot::Receiver<()>) {
        let stall = self.config.call_timeout * HANDOVER_STALL;
        let mut left = self.registry.count_of(&self.this);
        loop {
            if tokio::time::timeout(stall, &mut drained).await.is_ok() {
                return;
            }
            let now_left = self.registry.count_of(&self.this);
            if now_left >= left {
                tracing::warn!(
                    left = now_left,
                    "no session handed over for {stall:?}; leaving anyway"
                );
                return;
            }
            left = now_left;
        }
    }

    /// Stops everything: transport first (peers see this node gone at
    /// once), then the tasks, the router and the sessions.
    pub async fn stop(&self, router: &ActorRef<RouterMsg>) {
        self.calls.close();
        for cell in kill_tree(&self.server.get_cell()) {
            let _ = cell.wait(Some(Duration::from_secs(2))).await;
        }
        if !self.tasks.stop(Duration::from_secs(2)).await {
            tracing::error!(parent: &self.span, tasks = self.tasks.len(), "background tasks did not end within 2 s");
        }
        router.stop(None);
        self.local.shutdown().await;
        // What the sessions saved is committed; the file is free.
        if let Some(store) = &self.store {
            store.close().await;
        }
        let _ = router.get_cell().wait(Some(Duration::from_secs(2))).await;
    }

    /// Members as this node sees them.
    pub fn members(&self) -> Vec<(MemberId, MemberStatus)> {
        self.view.load().members.clone()
    }
}

//! What a node's start hook gets: its name, its server, and a way to spawn
//! actors that belong to it, named so that nodes sharing ractor's
//! process-wide registry never clash.

use super::MeshError;
use crate::fabric::lock;
use ractor::{Actor, ActorCell, ActorRef, SpawnErr};
use ractor_cluster::NodeServerMessage;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The actors each running node's hook spawned, by node.
pub(super) type Spawned = Arc<Mutex<BTreeMap<String, Vec<ActorCell>>>>;

/// What a node's start hook gets: the node's name and server, and a way to
/// spawn actors that belong to the node.
#[derive(Clone)]
pub struct NodeCtx {
    pub(super) name: String,
    /// The mesh's id, which makes actor names unique per mesh.
    pub(super) mesh: u64,
    pub(super) server: ActorRef<NodeServerMessage>,
    pub(super) spawned: Spawned,
}

impl NodeCtx {
    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's `NodeServer`.
    pub fn server(&self) -> &ActorRef<NodeServerMessage> {
        &self.server
    }

    /// The registered name [`NodeCtx::spawn`] gives an actor called `base`
    /// on this node: unique per node and per mesh.
    pub fn actor_name(&self, base: &str) -> String {
        actor_name(self.mesh, &self.name, base)
    }

    /// Spawns an actor of this node, registered as
    /// [`actor_name(base)`](NodeCtx::actor_name); it is stopped when the
    /// node is killed.
    pub async fn spawn<A: Actor>(
        &self,
        base: &str,
        actor: A,
        args: A::Arguments,
    ) -> Result<ActorRef<A::Msg>, MeshError> {
        self.spawn_as(&self.actor_name(base), actor, args).await
    }

    /// Spawns an actor of this node under exactly `name`. ractor's registry
    /// is process-wide: a name another node holds fails with
    /// [`MeshError::NameTaken`], naming that node.
    pub async fn spawn_as<A: Actor>(
        &self,
        name: &str,
        actor: A,
        args: A::Arguments,
    ) -> Result<ActorRef<A::Msg>, MeshError> {
        let taken = |holder| MeshError::NameTaken {
            node: self.name.clone(),
            name: name.to_string(),
            holder,
        };
        if let Some(cell) = ractor::registry::where_is(name) {
            return Err(taken(self.holder_of(&cell)));
        }
        match Actor::spawn(Some(name.to_string()), actor, args).await {
            Ok((actor, _)) => {
                self.keep(actor.get_cell());
                Ok(actor)
            }
            Err(SpawnErr::ActorAlreadyRegistered(_)) => {
                let holder =
                    ractor::registry::where_is(name).and_then(|cell| self.holder_of(&cell));
                Err(taken(holder))
            }
            Err(e) => Err(MeshError::Spawn(e)),
        }
    }

    /// Counts an actor spawned some other way as this node's, so that it is
    /// stopped when the node is killed.
    pub fn keep(&self, cell: ActorCell) {
        lock(&self.spawned)
            .entry(self.name.clone())
            .or_default()
            .push(cell);
    }

    pub(super) fn holder_of(&self, cell: &ActorCell) -> Option<String> {
        holder_of(&self.spawned, cell)
    }
}

/// The mesh node whose hook spawned `cell`.
pub(super) fn holder_of(spawned: &Spawned, cell: &ActorCell) -> Option<String> {
    lock(spawned)
        .iter()
        .find(|(_, cells)| cells.iter().any(|c| c.get_id() == cell.get_id()))
        .map(|(node, _)| node.clone())
}

pub(super) fn actor_name(mesh: u64, node: &str, base: &str) -> String {
    format!("{base}@{node}.{mesh:016x}")
}

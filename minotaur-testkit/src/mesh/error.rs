//! What a mesh operation can fail with.

use crate::fabric::NeedsMemoryLink;
use crate::wait::WaitError;
use ractor::SpawnErr;

/// Errors of mesh operations.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// No running node has that name.
    #[error("no running node is named {0:?}")]
    UnknownNode(String),
    /// A node of that name is already running.
    #[error("a node named {0:?} is already running")]
    DuplicateNode(String),
    /// A node's `NodeServer` did not start.
    #[error("the NodeServer of {node} did not start: {reason}")]
    Server {
        /// The node.
        node: String,
        /// What ractor or the OS said.
        reason: String,
    },
    /// A node could not dial another.
    #[error("{from} could not link to {to}: {reason}")]
    Link {
        /// The dialling node.
        from: String,
        /// The node dialled.
        to: String,
        /// Why.
        reason: String,
    },
    /// An actor name is registered already: ractor's named registry is
    /// shared by every node of the process. Spawn with [`NodeCtx::spawn`](crate::NodeCtx::spawn)
    /// for a name of the node's own.
    #[error("node {node} cannot register an actor named {name:?}: {} holds that name (ractor's registry is process-wide; use NodeCtx::spawn for per-node names)", .holder.as_deref().unwrap_or("an actor outside this mesh"))]
    NameTaken {
        /// The node whose start failed.
        node: String,
        /// The name.
        name: String,
        /// The mesh node whose actor holds the name, if it is one.
        holder: Option<String>,
    },
    /// An actor failed to start.
    #[error("an actor failed to start: {0}")]
    Spawn(SpawnErr),
    /// A node's start hook failed for a reason of its own.
    #[error("the start hook of {node} failed: {reason}")]
    Hook {
        /// The node.
        node: String,
        /// What the hook said.
        reason: String,
    },
    /// A bounded wait ran out.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// Fault injection needs the in-memory links.
    #[error(transparent)]
    NeedsMemoryLink(#[from] NeedsMemoryLink),
}

impl From<SpawnErr> for MeshError {
    fn from(e: SpawnErr) -> Self {
        match e {
            SpawnErr::ActorAlreadyRegistered(name) => MeshError::NameTaken {
                node: String::new(),
                name: name.to_string(),
                holder: None,
            },
            e => MeshError::Spawn(e),
        }
    }
}

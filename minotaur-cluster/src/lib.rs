//! # minotaur-cluster
//!
//! Minotaur nodes on ractor_cluster. A [`Node`] is one member; its
//! [`GameEngine`](minotaur_core::GameEngine) reaches every game in the
//! cluster wherever it lives.
//!
//! - [`config`]: [`NodeConfig`], everything a node starts with;
//! - [`membership`]: who is in the cluster, and events;
//! - [`registry`]: the replicated game registry and its conflict rule;
//! - [`placement`]: where new sessions go;
//! - [`replication`]: backups of session state, for crash failover;
//! - [`protocol`]: the wire messages;
//! - [`tls`]: encrypted, mutually authenticated links;
//! - `links`, `router`, `directory`, `supervisor`, `handoff`: the machinery.
//!
//! Design notes (see `../shared/notes/ractor-cluster-facts.md`): each node
//! has exactly one remotable actor, its router, named uniquely per
//! incarnation and found through the peer's own session; sessions are
//! local-only actors. Nothing uses ractor's process-global registry or
//! process groups, so several nodes can share one process.

pub mod config;
pub mod control;
mod directory;
mod driver;
mod failover;
mod handoff;
mod links;
pub mod membership;
mod node;
pub mod placement;
mod plane;
pub mod protocol;
pub mod registry;
pub mod replication;
mod router;
pub mod rpc;
mod supervisor;
mod tasks;
pub mod tls;

pub use config::{
    Connector, ControlPlane, NodeConfig, Redistribution, Transport, DEV_COOKIE, MIN_COOKIE_LEN,
};
pub use directory::ClusterDirectory;
pub use membership::{ClusterEvent, DownReason, MemberId, MemberStatus};
pub use node::{Node, NodeError};
pub use placement::{Candidate, LeastLoaded, Local, Placement, Rendezvous};
pub use registry::{Registration, Registry};
pub use tls::{TlsConfig, TlsError};

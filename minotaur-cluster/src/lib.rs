//! # minotaur-cluster
//!
//! Minotaur nodes on ractor_cluster. A [`Node`] is one member; its
//! [`GameEngine`](minotaur_core::GameEngine) reaches every game in the
//! cluster wherever it lives.
//!
//! - [`config`]: [`NodeConfig`], everything a node starts with;
//! - [`control`]: every control decision of a node (membership, the
//!   registry, ownership, backup copies, moves, failovers) as one
//!   synchronous, I/O-free state machine;
//! - [`membership`]: member ids, statuses and the events callers see;
//! - [`registry`]: the replicated game registry and its conflict rule;
//! - [`placement`]: where new sessions go;
//! - [`protocol`]: the wire messages;
//! - [`tls`]: encrypted, mutually authenticated links;
//! - `transport`, `driver`, `router`, `directory`: the machinery that runs
//!   the state machine over ractor_cluster.
//!
//! Each node has exactly one remotable actor, its router, named uniquely per
//! incarnation and found through the peer's own session; sessions are
//! local-only actors. Nothing uses ractor's process-global registry or
//! process groups (every ractor_cluster session advertises them to every
//! peer, so nodes sharing a process would share them), so several nodes can
//! share one process. The layers and the ractor_cluster facts behind them
//! are in `docs/ARCHITECTURE.md` in the repository.

pub mod config;
pub mod control;
mod directory;
mod driver;
mod links;
pub mod membership;
mod node;
pub mod placement;
mod plane;
pub mod protocol;
pub mod registry;
mod router;
mod rpc;
mod sink;
mod tasks;
pub mod tls;
mod transport;

pub use config::{
    Connector, NodeConfig, Redistribution, SplitPolicy, Transport, DEV_COOKIE, MIN_COOKIE_LEN,
};
pub use directory::ClusterDirectory;
pub use membership::{ClusterEvent, DownReason, MemberId, MemberStatus};
pub use node::{Node, NodeError};
pub use placement::{Candidate, LeastLoaded, Local, Placement, Rendezvous};
pub use registry::{Registration, Registry};
pub use tls::{TlsConfig, TlsError};

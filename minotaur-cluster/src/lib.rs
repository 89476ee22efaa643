//! # minotaur-cluster
//!
//! Minotaur nodes on ractor_cluster. A [`Node`] is one member; its
//! [`GameEngine`](minotaur_core::GameEngine) reaches every game in the
//! cluster wherever it lives.
//!
//! - [`NodeConfig`]: everything a node starts with, including its
//!   [`SplitPolicy`] and [`TlsConfig`];
//! - [`ClusterEvent`], [`MemberId`], [`MemberStatus`]: membership as callers
//!   see it;
//! - [`Registry`]: this node's read-only view of the replicated game
//!   registry;
//! - [`placement`]: where new sessions go, and how to write your own
//!   [`Placement`].
//!
//! Inside, every control decision of a node (membership, the registry,
//! ownership, backup copies, moves, failovers, majority fencing) is one
//! synchronous, I/O-free state machine, run over ractor_cluster by a thin
//! driver. The `testing` feature exposes that state machine (`control`)
//! and the wire messages (`protocol`) to the simulator and the hostile-input
//! tests of `minotaur-testkit`; they are not a stable API.
//!
//! Each node has exactly one remotable actor, its router, named uniquely per
//! incarnation and found through the peer's own session; sessions are
//! local-only actors. Nothing uses ractor's process-global registry or
//! process groups (every ractor_cluster session advertises them to every
//! peer, so nodes sharing a process would share them), so several nodes can
//! share one process. The layers and the ractor_cluster facts behind them
//! are in `docs/ARCHITECTURE.md` in the repository.

#![warn(missing_docs)]

mod config;
#[cfg(feature = "testing")]
pub mod control;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
mod control;
mod directory;
mod driver;
mod exchange;
mod links;
mod membership;
mod node;
pub mod placement;
mod plane;
#[cfg(feature = "testing")]
pub mod protocol;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unused_imports)]
mod protocol;
mod registry;
mod router;
mod sink;
pub mod store;
mod tasks;
mod tls;
mod transport;

pub use config::{
    Connector, NodeConfig, Redistribution, SplitPolicy, Transport, DEV_COOKIE, MIN_COOKIE_LEN,
};
pub use directory::ClusterDirectory;
pub use membership::{ClusterEvent, DownReason, MemberId, MemberStatus, Vote};
pub use node::{Node, NodeError};
pub use placement::{Candidate, LeastLoaded, Local, Placement, Rendezvous};
pub use registry::{Registration, Registry};
pub use store::StoreError;
pub use tls::{TlsConfig, TlsError};

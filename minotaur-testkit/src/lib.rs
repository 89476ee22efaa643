//! # minotaur-testkit
//!
//! Whole Minotaur clusters inside one test process: real nodes talking
//! ractor_cluster's wire protocol over TCP or over in-memory links with
//! fault injection, each with its own config and captured logs.
//!
//! ```
//! use minotaur_testkit::TestCluster;
//! use std::time::Duration;
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = TestCluster::builder().nodes(2).in_memory().start().await?;
//! let game = cluster.engine("n1")?.create_game("ABCD", vec!["ann".into(), "bob".into()]).await?;
//! cluster.add_node("n3").await?;
//! cluster.stop_node(cluster.where_is(game.id).unwrap_or_default().as_str()).await?;
//! let engine = cluster.engine("n3")?;
//! let again = cluster
//!     .eventually("the game on a survivor", Duration::from_secs(5), || {
//!         let engine = engine.clone();
//!         async move { engine.get_game_by_join_code("ABCD").await.map_err(|e| e.to_string()) }
//!     })
//!     .await?;
//! assert_eq!(again.id, game.id);
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod cluster;
mod fabric;
pub mod fixtures;
pub mod link;
pub mod logs;
pub mod mesh;
pub mod network;
mod settle;
pub mod sim;
pub mod wait;

pub use cluster::{ClusterError, TestCluster};
pub use fabric::{LinkKind, NeedsMemoryLink};
pub use link::{pair, Direction};
pub use mesh::{MeshError, NodeCtx, RactorMesh};
pub use network::MemoryNetwork;
pub use settle::unsettled_among;
pub use wait::{eventually, wait_until, WaitError};

/// The README's and the guides' Rust code, compiled (and run, unless marked
/// `no_run`) as doctests, so what a reader copies works.
#[cfg(doctest)]
mod guides {
    #[doc = include_str!("../../README.md")]
    struct Readme;
    #[doc = include_str!("../../docs/testing.md")]
    struct Testing;
    #[doc = include_str!("../../docs/running.md")]
    struct Running;
    #[doc = include_str!("../../docs/ARCHITECTURE.md")]
    struct Architecture;
}

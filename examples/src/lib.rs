//! # minotaur-examples
//!
//! The runnable side of Minotaur, as a library so its pieces can be tested:
//!
//! - [`http`]: the HTTP JSON endpoint of a node (axum): games, players,
//!   cluster status; [`http::serve`] starts it next to a
//!   [`Node`](minotaur_cluster::Node).
//! - [`auth`]: who may do what over HTTP: the operator token and players'
//!   tokens.
//! - [`live`]: the live cluster page at `/`, kept current by Server-Sent
//!   Events.
//! - [`metrics`]: the node's Prometheus metrics, served at `/metrics`.
//! - [`rate_limit`]: per-client request limits of the HTTP endpoint.
//! - [`settings`]: the `minotaur-node` command line and TOML config file.
//! - [`logging`]: tracing output with the node's name on every line.
//! - [`demo`]: the in-process cluster demo (`minotaur-demo`): bots, a
//!   rolling deploy, a crash, and the report.
//!
//! Binaries: `minotaur-demo` (the README's first command), `minotaur-node`
//! (one cluster member per OS process), `minotaur-standalone` (one engine, no
//! cluster).

#![warn(missing_docs)]

pub mod auth;
pub mod demo;
pub mod game_events;
pub mod http;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod rate_limit;
pub mod settings;

//! # minotaur-core
//!
//! The Minotaur game and everything needed to run it in one process:
//!
//! - [`game`]: the rules, as pure data and functions;
//! - [`command`]: the commands a session applies to its game;
//! - [`session`]: [`GameSession`], the actor that owns one game;
//! - [`host`]: the supervisor that runs a process's sessions;
//! - [`engine`]: [`GameEngine`], the API callers use, over a [`Directory`];
//! - [`updates`] and [`subscription`]: a game's changes as a stream, by
//!   version;
//! - [`local`]: [`LocalDirectory`], the directory of a standalone node;
//! - [`codec`]: the one place that encodes and decodes.
//!
//! ```
//! use minotaur_core::{GameConfig, GameEngine, Hex};
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), minotaur_core::EngineError> {
//! let engine = GameEngine::standalone(GameConfig::default()).await?;
//! let game = engine.create_game("ABCD", vec!["ann".into(), "bob".into()]).await?;
//! engine.register_attack(game.id, "ann".into(), "bob".into()).await?;
//! let after = engine.end_round(game.id).await?;
//! assert_eq!(after.round, 2);
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

pub mod change;
pub mod clock;
pub mod codec;
pub mod command;
pub mod config;
pub mod engine;
pub mod error;
pub mod game;
pub mod hex;
pub mod host;
pub mod ids;
pub mod local;
pub mod session;
pub mod subscription;
pub mod updates;

pub use change::Change;
pub use codec::CodecError;
pub use command::{Ack, Answer, Command, OpId, Reply};
pub use config::{ConfigError, GameConfig};
pub use engine::{Directory, EngineError, GameEngine};
pub use error::{GameError, MoveError};
pub use game::{Action, Event, EventKind, Game, GameStatus, Player, PlayerStatus, World};
pub use hex::Hex;
pub use ids::{GameId, JoinCode, UserId};
pub use local::LocalDirectory;
pub use session::{GameSession, Replier, SessionArgs, SessionMsg, StateSink};
pub use subscription::{SubscriberLimits, Subscription};
pub use updates::GameUpdate;

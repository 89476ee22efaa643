//! `GameSession`: the actor that owns one game.
//!
//! It applies commands one at a time, ends rounds when their deadline passes,
//! saves every accepted change to its [`StateSink`] (if any) *before*
//! acknowledging it, and stops itself once the game has concluded.

use crate::clock;
use crate::command::{Command, Reply};
use crate::engine::EngineError;
use crate::game::Game;
use crate::ids::GameId;
use async_trait::async_trait;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;

/// How long a session waits before retrying a round end its sink refused.
const SINK_RETRY: Duration = Duration::from_millis(200);

/// Durable (or replicated) storage for session state.
///
/// A session calls [`save`](StateSink::save) after applying a change and
/// before acknowledging it; if `save` fails the change is dropped and the
/// caller gets the error, so an acknowledged change is always saved.
#[async_trait]
pub trait StateSink: Send + Sync + 'static {
    /// Stores the latest state of `game`.
    async fn save(&self, game: &Game) -> Result<(), EngineError>;
    /// The latest stored state of game `id`, used to restart a failed session.
    async fn load(&self, id: GameId) -> Option<Game>;
}

/// The session actor. Spawn it with [`SessionArgs`].
pub struct GameSession;

/// What a session starts from.
pub struct SessionArgs {
    /// The game to own: a new game, or a snapshot to continue.
    pub game: Game,
    /// Where accepted changes are saved before they are acknowledged.
    pub sink: Option<Arc<dyn StateSink>>,
}

/// Messages a session handles.
pub enum SessionMsg {
    /// Apply a command and reply with its result.
    Command(Command, RpcReplyPort<Result<Reply, EngineError>>),
    /// The deadline of `round` has passed.
    RoundTimer {
        /// The round the timer was armed for; stale timers are ignored.
        round: u32,
    },
    /// Reply with the complete state and stop: the game is moving elsewhere.
    /// Commands queued before this one are applied first.
    Release(RpcReplyPort<Game>),
}

impl ractor::Message for SessionMsg {}

/// A running session's state.
pub struct SessionState {
    game: Game,
    sink: Option<Arc<dyn StateSink>>,
    timer: Option<JoinHandle<Result<(), MessagingErr<SessionMsg>>>>,
}

impl SessionState {
    // Applies a command on a copy, saves the copy, then commits it: a change
    // that cannot be saved never becomes visible.
    async fn execute(&mut self, command: &Command) -> Result<Reply, EngineError> {
        if !command.is_write() {
            return Ok(command.apply(&mut self.game, clock::now_ms())?);
        }
        let mut next = self.game.clone();
        let reply = command.apply(&mut next, clock::now_ms())?;
        if let Some(sink) = &self.sink {
            sink.save(&next).await?;
        }
        self.game = next;
        Ok(reply)
    }

    fn arm_timer(&mut self, myself: &ActorRef<SessionMsg>, delay: Duration) {
        if let Some(old) = self.timer.take() {
            old.abort();
        }
        if self.game.is_active() {
            let round = self.game.round;
            self.timer = Some(myself.send_after(delay, move || SessionMsg::RoundTimer { round }));
        }
    }
}

impl Actor for GameSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let mut state = SessionState {
            game: args.game,
            sink: args.sink,
            timer: None,
        };
        // A deadline that passed while the game was elsewhere fires at once.
        state.arm_timer(&myself, clock::until(state.game.round_ends_at_ms));
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(timer) = state.timer.take() {
            timer.abort();
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let round_before = state.game.round;
        match message {
            SessionMsg::Command(command, reply) => {
                let result = state.execute(&command).await;
                let _ = reply.send(result);
            }
            SessionMsg::RoundTimer { round } => {
                if round != state.game.round || !state.game.is_active() {
                    return Ok(());
                }
                if let Err(e) = state.execute(&Command::EndRound).await {
                    tracing::warn!(game = %state.game.id, error = %e, "round end not saved; retrying");
                    state.arm_timer(&myself, SINK_RETRY);
                    return Ok(());
                }
            }
            SessionMsg::Release(reply) => {
                if let Some(timer) = state.timer.take() {
                    timer.abort();
                }
                let _ = reply.send(state.game.clone());
                myself.stop(Some("released".into()));
                return Ok(());
            }
        }
        if !state.game.is_active() {
            tracing::info!(game = %state.game.id, "game concluded; session stopping");
            myself.stop(Some("concluded".into()));
        } else if state.game.round != round_before {
            state.arm_timer(&myself, clock::until(state.game.round_ends_at_ms));
        }
        Ok(())
    }
}

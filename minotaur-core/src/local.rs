//! `LocalDirectory`: every session in this process. The directory of a
//! standalone engine, and the building block a cluster node hosts with.

use crate::command::{Answer, Command, OpId, Reply};
use crate::engine::{Directory, EngineError};
use crate::game::Game;
use crate::host::{stop_children, HostArgs, HostEvent, HostMsg, HostedSessions, SessionHost};
use crate::ids::{GameId, JoinCode, UserId};
use crate::session::{SessionMsg, StateSink};
use async_trait::async_trait;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// How long a caller waits for a session's reply by default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often one game's session is restarted after failures by default.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;

/// How a [`LocalDirectory`]'s host runs its sessions.
pub struct HostOptions {
    /// Told whenever a session ends.
    pub events: Option<UnboundedSender<HostEvent>>,
    /// How often one game's session is restarted after failures.
    pub max_restarts: u32,
    /// Whether a create is refused for a join code in use here (a cluster
    /// node leaves that to its registry).
    pub unique_join_codes: bool,
    /// How long a game may go without a command before its session is
    /// passivated; `None` (the default): never.
    pub idle_after: Option<Duration>,
    /// Who decides about an idle session (see [`HostArgs::on_idle`]);
    /// `None`: the host passivates it.
    pub on_idle: Option<Arc<dyn Fn(GameId) + Send + Sync>>,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            events: None,
            max_restarts: DEFAULT_MAX_RESTARTS,
            unique_join_codes: true,
            idle_after: None,
            on_idle: None,
        }
    }
}

/// Sessions hosted in this process.
pub struct LocalDirectory {
    host: ActorRef<HostMsg>,
    sessions: HostedSessions,
    sink: Option<Arc<dyn StateSink>>,
    call_timeout: Duration,
}

impl LocalDirectory {
    /// Starts a host whose sessions save to `sink` (if any).
    pub async fn start(sink: Option<Arc<dyn StateSink>>) -> Result<Self, EngineError> {
        Self::start_with(sink, HostOptions::default()).await
    }

    /// Starts a host with `options`.
    ///
    /// Passivating idle games: after a second without a command, a game's
    /// session stops and the game is kept as its encoded state; the next
    /// command starts it again, and finds the rounds that ended meanwhile.
    ///
    /// ```
    /// use minotaur_core::local::{HostOptions, LocalDirectory};
    /// use minotaur_core::{Directory, GameConfig, GameEngine};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = HostOptions { idle_after: Some(Duration::from_secs(1)), ..HostOptions::default() };
    /// let directory = Arc::new(LocalDirectory::start_with(None, options).await?);
    /// let engine = GameEngine::new(directory.clone(), GameConfig::default());
    /// let game = engine.create_game("IDLE", vec!["ann".into(), "bob".into()]).await?;
    /// # tokio::time::pause();
    /// tokio::time::sleep(Duration::from_secs(3)).await;
    /// # for _ in 0..100 { if directory.sessions().is_dormant(game.id) { break } tokio::task::yield_now().await; }
    /// assert!(directory.sessions().is_dormant(game.id));
    /// // Woken by the next command, invisibly to the caller.
    /// assert_eq!(engine.get_game(game.id).await?.id, game.id);
    /// assert!(!directory.sessions().is_dormant(game.id));
    /// # Ok(()) }
    /// ```
    pub async fn start_with(
        sink: Option<Arc<dyn StateSink>>,
        options: HostOptions,
    ) -> Result<Self, EngineError> {
        let sessions = HostedSessions::default();
        let args = HostArgs {
            sessions: sessions.clone(),
            sink: sink.clone(),
            events: options.events,
            max_restarts: options.max_restarts,
            unique_join_codes: options.unique_join_codes,
            idle_after: options.idle_after,
            on_idle: options.on_idle,
        };
        let (host, _) = Actor::spawn(None, SessionHost, args)
            .await
            .map_err(|e| EngineError::Unavailable(format!("session host did not start: {e}")))?;
        Ok(LocalDirectory {
            host,
            sessions,
            sink,
            call_timeout: DEFAULT_CALL_TIMEOUT,
        })
    }

    /// The hosted sessions.
    pub fn sessions(&self) -> &HostedSessions {
        &self.sessions
    }

    /// Asks game `id`'s session to hand over its state and stop. `None` if
    /// it is not hosted here (or stopped meanwhile).
    pub async fn release(&self, id: GameId) -> Result<Option<Game>, EngineError> {
        let Some(session) = self.sessions.session(id) else {
            return Ok(None);
        };
        self.release_session(id, &session).await
    }

    /// Like [`release`](Self::release), for one given session of game `id`:
    /// a session started for the same game after it is left running.
    pub async fn release_session(
        &self,
        id: GameId,
        session: &ActorRef<SessionMsg>,
    ) -> Result<Option<Game>, EngineError> {
        match session
            .call(SessionMsg::Release, Some(self.call_timeout))
            .await
        {
            Ok(CallResult::Success(game)) => Ok(Some(game)),
            Ok(CallResult::Timeout) => Err(EngineError::Timeout(format!("releasing game {id}"))),
            Ok(CallResult::SenderError) | Err(_) => Ok(None),
        }
    }

    /// Asks game `id`'s idle `session` to passivate: `Some(game)` once it
    /// stopped, `None` if it declined (a command came meanwhile) or was
    /// gone. The caller keeps the game (a cluster node's control does).
    pub async fn passivate_session(
        &self,
        id: GameId,
        session: &ActorRef<SessionMsg>,
    ) -> Result<Option<Game>, EngineError> {
        match session
            .call(SessionMsg::Passivate, Some(self.call_timeout))
            .await
        {
            Ok(CallResult::Success(game)) => Ok(game),
            Ok(CallResult::Timeout) => Err(EngineError::Timeout(format!("passivating game {id}"))),
            Ok(CallResult::SenderError) | Err(_) => Ok(None),
        }
    }

    /// Starts a session for `game` whose state the caller has already
    /// saved (the cluster copies it to a backup member first).
    /// [`Directory::start`] saves it to the sink, then does this.
    pub async fn start_saved(&self, game: Game) -> Result<(), EngineError> {
        let id = game.id;
        match self
            .host
            .call(
                |reply| HostMsg::Start(Box::new(game), reply),
                Some(self.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(EngineError::Timeout(format!("starting game {id}"))),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(EngineError::Leaving("session host stopped".into()))
            }
        }
    }

    /// [`start_saved`](Self::start_saved) for many games at once: their
    /// sessions start side by side. Returns each game's outcome.
    pub async fn start_many_saved(
        &self,
        games: Vec<Game>,
    ) -> Vec<(GameId, Result<(), EngineError>)> {
        let ids: Vec<GameId> = games.iter().map(|g| g.id).collect();
        let failed = |why: EngineError| {
            ids.iter()
                .map(|id| (*id, Err(why.clone())))
                .collect::<Vec<_>>()
        };
        match self
            .host
            .call(
                |reply| HostMsg::StartMany(games, reply),
                Some(self.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(results)) => results,
            Ok(CallResult::Timeout) => failed(EngineError::Timeout("starting sessions".into())),
            Ok(CallResult::SenderError) | Err(_) => {
                failed(EngineError::Leaving("session host stopped".into()))
            }
        }
    }

    /// Game `id`'s session, started again first if the host passivated it.
    async fn running(&self, id: GameId) -> Result<ActorRef<SessionMsg>, EngineError> {
        // Dormant first: a session that just passivated is listed until
        // the host hears it stopped.
        if self.sessions.is_dormant(id) {
            self.activate(id).await?;
        }
        self.sessions
            .session(id)
            .ok_or(EngineError::GameNotAlive(id))
    }

    /// Starts game `id` again if the host passivated it.
    async fn activate(&self, id: GameId) -> Result<(), EngineError> {
        match self
            .host
            .call(
                |reply| HostMsg::Activate(id, reply),
                Some(self.call_timeout),
            )
            .await
        {
            Ok(CallResult::Success(result)) => result,
            Ok(CallResult::Timeout) => Err(EngineError::Timeout(format!("activating game {id}"))),
            Ok(CallResult::SenderError) | Err(_) => {
                Err(EngineError::Leaving("session host stopped".into()))
            }
        }
    }

    /// Stops every session and the host, waiting for them. Afterwards no
    /// session is listed in [`sessions`](Self::sessions).
    pub async fn shutdown(&self) {
        stop_children(&self.host.get_cell(), Duration::from_secs(5)).await;
        let _ = self
            .host
            .stop_and_wait(None, Some(Duration::from_secs(5)))
            .await;
        // The host empties the table as it stops; this covers a host that
        // did not stop within the wait.
        self.sessions.clear();
    }
}

impl Drop for LocalDirectory {
    fn drop(&mut self) {
        self.host.stop_children(None);
        self.host.stop(None);
    }
}

#[async_trait]
impl Directory for LocalDirectory {
    // Saved before it starts: a session that crashes before its first
    // change is restarted from the sink like any other.
    async fn start(&self, game: Game) -> Result<(), EngineError> {
        if let Some(sink) = &self.sink {
            sink.save(&game).await?;
        }
        self.start_saved(game).await
    }

    async fn send(&self, id: GameId, command: Command) -> Result<Reply, EngineError> {
        let session = self.running(id).await?;
        match call_session(&session, id, command.clone(), self.call_timeout).await {
            Err(EngineError::GameNotAlive(_)) if self.sessions.is_dormant(id) => {
                let session = self.running(id).await?;
                call_session(&session, id, command, self.call_timeout).await
            }
            other => other,
        }
    }

    async fn send_write(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
        answer: Answer,
    ) -> Result<Reply, EngineError> {
        let session = self.running(id).await?;
        let timeout = self.call_timeout;
        // The session passivated while the write was on its way: a write
        // it stopped before is applied by the next one, once.
        match call_session_write(&session, id, op, command.clone(), answer, timeout).await {
            Err(EngineError::GameNotAlive(_)) if self.sessions.is_dormant(id) => {
                let session = self.running(id).await?;
                call_session_write(&session, id, op, command, answer, timeout).await
            }
            other => other,
        }
    }

    async fn find_by_join_code(&self, code: &JoinCode) -> Result<GameId, EngineError> {
        self.sessions
            .by_join_code(code)
            .ok_or_else(|| EngineError::UnknownJoinCode(code.clone()))
    }

    async fn games_of_user(&self, user: &UserId) -> Result<Vec<GameId>, EngineError> {
        Ok(self.sessions.of_user(user))
    }
}

/// Sends `command` to a session actor and waits up to `timeout` for its reply.
/// A session that stopped before answering counts as not alive.
pub async fn call_session(
    session: &ActorRef<SessionMsg>,
    id: GameId,
    command: Command,
    timeout: Duration,
) -> Result<Reply, EngineError> {
    deliver(session, id, timeout, |reply| {
        SessionMsg::Command(command, reply.into())
    })
    .await
}

/// Like [`call_session`] for write `op`, which the session applies at most
/// once however often it is delivered, and answers as `answer` asks.
pub async fn call_session_write(
    session: &ActorRef<SessionMsg>,
    id: GameId,
    op: OpId,
    command: Command,
    answer: Answer,
    timeout: Duration,
) -> Result<Reply, EngineError> {
    deliver(session, id, timeout, |reply| {
        SessionMsg::Write(op, command, answer, reply.into())
    })
    .await
}

async fn deliver(
    session: &ActorRef<SessionMsg>,
    id: GameId,
    timeout: Duration,
    message: impl FnOnce(ractor::RpcReplyPort<Result<Reply, EngineError>>) -> SessionMsg,
) -> Result<Reply, EngineError> {
    match session.call(message, Some(timeout)).await {
        Ok(CallResult::Success(result)) => result,
        Ok(CallResult::Timeout) => Err(EngineError::Timeout(format!("command to game {id}"))),
        Ok(CallResult::SenderError) | Err(_) => Err(EngineError::GameNotAlive(id)),
    }
}

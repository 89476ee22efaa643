//! `GameEngine`: the API callers use, the same on a standalone node and
//! anywhere in a cluster.
//!
//! The engine turns each operation into a [`Command`] and hands it to a
//! [`Directory`], which knows where sessions live: in this process for
//! [`LocalDirectory`](crate::LocalDirectory), anywhere in the cluster for
//! `minotaur-cluster`'s directory.

use crate::clock;
use crate::codec::CodecError;
use crate::command::{Ack, Answer, Command, OpId, Reply};
use crate::config::GameConfig;
use crate::error::GameError;
use crate::game::{Game, PlayerStatus};
use crate::hex::Hex;
use crate::ids::{GameId, JoinCode, UserId};
use crate::subscription::{SubscriberLimits, Subscribers, Subscription};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// Everything an engine operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum EngineError {
    /// No live session has this id (never created, concluded, or lost).
    #[error("game {0} is not alive")]
    GameNotAlive(GameId),
    /// No live game has this join code.
    #[error("no live game has join code {0}")]
    UnknownJoinCode(JoinCode),
    /// Another live game already uses this join code.
    #[error("join code {0} is already taken")]
    JoinCodeTaken(JoinCode),
    /// A game with this id is already running.
    #[error("game {0} is already running")]
    AlreadyRunning(GameId),
    /// The rules refused the command; the game is unchanged.
    #[error(transparent)]
    Rule(#[from] GameError),
    /// A call did not complete in time; it may or may not have been applied.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The cluster could not take the request right now.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The node that owns the game cannot prove it still belongs to a
    /// majority of the cluster (a split, a stalled link, a starved
    /// process), so it did not acknowledge the write. Retryable: with the
    /// same [`OpId`] the write applies at most once, through
    /// any node, once the majority has taken the game over or the cluster is
    /// whole again. (A write refused just as the lease lapsed may already
    /// be on the game's backup and take effect; the retry then finds it.)
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// A message could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The peer answered something this version does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The node called is leaving the cluster or has stopped (or, for a
    /// standalone engine, its session host stopped): it applied nothing.
    /// Another node can take the call.
    #[error("node leaving: {0}")]
    Leaving(String),
    /// No owner of the game could be reached within the call timeout: it is
    /// moving to another node or being restarted from its copy after a
    /// crash. Nothing was acknowledged; retryable (a write with the same
    /// [`OpId`] applies at most once).
    #[error("game {0} is between owners")]
    BetweenOwners(GameId),
    /// Game `id` has as many subscriptions on this engine as its
    /// [`SubscriberLimits::per_game`] allows.
    #[error("game {id} has {limit} subscribers here already")]
    GameSubscribersFull {
        /// The game.
        id: GameId,
        /// The limit.
        limit: usize,
    },
    /// This engine runs as many subscriptions as its
    /// [`SubscriberLimits::per_node`] allows; another node may take one.
    #[error("this node has {limit} subscribers already")]
    NodeSubscribersFull {
        /// The limit.
        limit: usize,
    },
}

/// Where sessions live: starts them and delivers their commands.
///
/// Implemented by [`LocalDirectory`](crate::LocalDirectory) for one process
/// and by the cluster's directory for many nodes; the engine is the same.
#[async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Starts a session owning `game`, registered under its id and join code.
    async fn start(&self, game: Game) -> Result<(), EngineError>;
    /// Delivers `command` to game `id`'s session and returns its reply.
    async fn send(&self, id: GameId, command: Command) -> Result<Reply, EngineError>;
    /// Delivers write `op`, to be answered as `answer` asks; the session
    /// applies it at most once, so the directory may deliver it again when
    /// it cannot tell whether an attempt arrived (its node crashed, say).
    /// The default simply sends it once and, if `answer` asks for the
    /// game, reads it just after (so another write may come between).
    async fn send_write(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
        answer: Answer,
    ) -> Result<Reply, EngineError> {
        let _ = op;
        let reply = self.send(id, command).await?;
        match answer {
            Answer::Ack => Ok(reply),
            Answer::Game => self.send(id, Command::GetGame).await,
        }
    }
    /// The live game registered under `code`.
    async fn find_by_join_code(&self, code: &JoinCode) -> Result<GameId, EngineError>;
    /// The live games `user` plays in.
    async fn games_of_user(&self, user: &UserId) -> Result<Vec<GameId>, EngineError>;
    /// How long a session may hold a [`Command::Updates`] before answering
    /// with nothing new: well within the time this directory waits for an
    /// answer. 2 s by default.
    fn updates_wait(&self) -> Duration {
        Duration::from_secs(2)
    }
}

/// The game API.
///
/// ```
/// use minotaur_core::{GameEngine, GameConfig, Hex};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let no_walls = GameConfig { wall_count: 0, ..GameConfig::default() };
/// let engine = GameEngine::standalone(no_walls).await?;
/// let game = engine.create_game("ABCD", vec!["ann".into(), "bob".into()]).await?;
/// // Ann starts on the outer ring: one step towards the centre is on the grid.
/// let start = game.players[0].position;
/// let inwards = Hex::DIRECTIONS
///     .into_iter()
///     .find(|d| game.world.walkable(start + *d) && (start + *d).length() < start.length())
///     .expect("a free hex inwards");
/// // A write answers an acknowledgement, not the whole game.
/// let moved = engine.register_move(game.id, "ann".into(), inwards).await?;
/// assert_eq!(moved.version, 1);
/// // The move is paid now and made when the round ends.
/// let now = engine.get_game(game.id).await?;
/// assert_eq!(now.players[0].action_points, game.players[0].action_points - 1);
/// assert_eq!(engine.get_game_by_join_code("abcd").await?.id, game.id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GameEngine {
    directory: Arc<dyn Directory>,
    config: GameConfig,
    subscribers: Arc<Subscribers>,
}

impl GameEngine {
    /// An engine over `directory`, creating games with `config`.
    pub fn new(directory: Arc<dyn Directory>, config: GameConfig) -> Self {
        GameEngine {
            directory,
            config,
            subscribers: Arc::default(),
        }
    }

    /// This engine with its own count of subscriptions, held to `limits`
    /// (shared by its clones; [`SubscriberLimits::default`] otherwise).
    pub fn with_subscriber_limits(mut self, limits: SubscriberLimits) -> Self {
        self.subscribers = Arc::new(Subscribers::new(limits));
        self
    }

    /// Subscriptions this engine (and its clones) runs now: to game `id`,
    /// and in all.
    pub fn subscriptions(&self, id: GameId) -> (usize, usize) {
        self.subscribers.count(id)
    }

    /// Game `id`'s updates, as they are acknowledged: the whole game first,
    /// or, resuming from version `after`, every change since (the whole
    /// game if its log no longer reaches back that far). See
    /// [`Subscription`] for what holds across handoffs and failovers.
    ///
    /// Refused beyond this engine's [`SubscriberLimits`]; a game that is
    /// not alive ends the subscription with
    /// [`EngineError::GameNotAlive`] at its first step.
    ///
    /// ```
    /// use minotaur_core::{EventKind, GameConfig, GameEngine, GameUpdate};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = GameEngine::standalone(GameConfig::default()).await?;
    /// let game = engine.create_game("SUBS", vec!["ann".into(), "bob".into()]).await?;
    /// let mut updates = engine.subscribe(game.id, None)?;
    /// let Some(Ok(GameUpdate::Whole(start))) = updates.next().await else { panic!() };
    /// assert_eq!(start.version, 0);
    /// engine.register_attack(game.id, "ann".into(), "bob".into()).await?;
    /// let Some(Ok(GameUpdate::Changed { version, events })) = updates.next().await else { panic!() };
    /// assert_eq!(version, 1);
    /// assert!(matches!(events[0].kind, EventKind::Registered { .. }));
    /// // A client that saw version 1 resumes from there.
    /// drop(updates);
    /// engine.end_round(game.id).await?;
    /// let mut resumed = engine.subscribe(game.id, Some(1))?;
    /// let next = resumed.next().await.expect("an update")?;
    /// assert_eq!((next.version(), next.kind()), (2, "round_ended"));
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self, id: GameId, after: Option<u64>) -> Result<Subscription, EngineError> {
        Subscription::new(id, after, self.directory.clone(), &self.subscribers)
    }

    /// An engine whose sessions all live in this process.
    pub async fn standalone(config: GameConfig) -> Result<Self, EngineError> {
        let directory = crate::LocalDirectory::start(None).await?;
        Ok(GameEngine::new(Arc::new(directory), config))
    }

    /// The rules new games are created with.
    pub fn config(&self) -> &GameConfig {
        &self.config
    }

    /// Creates and starts a game for `users`, findable by `join_code`.
    pub async fn create_game(
        &self,
        join_code: &str,
        users: Vec<UserId>,
    ) -> Result<Game, EngineError> {
        let code: JoinCode = join_code.parse()?;
        let game = Game::new(
            GameId::random(),
            code,
            users,
            self.config.clone(),
            clock::now_ms(),
        )?;
        self.directory.start(game.clone()).await?;
        Ok(game)
    }

    /// Starts a session from a snapshot, e.g. one saved before a full restart.
    pub async fn continue_game(&self, snapshot: Game) -> Result<Game, EngineError> {
        if !snapshot.is_active() {
            return Err(GameError::GameConcluded.into());
        }
        let id = snapshot.id;
        self.directory.start(snapshot).await?;
        self.get_game(id).await
    }

    /// The game's current state.
    pub async fn get_game(&self, id: GameId) -> Result<Game, EngineError> {
        self.game_reply(id, Command::GetGame).await
    }

    /// The game's current state, confirmed as its latest acknowledged
    /// state. [`get_game`](Self::get_game) answers from whichever session
    /// runs the game, which on the minority side of a split may be one the
    /// majority has since taken over (a stale read). This read is refused
    /// with [`EngineError::NoQuorum`] instead when the owner cannot prove it
    /// still belongs to a majority; the engine retries it within the call
    /// timeout. A standalone engine has nothing to confirm.
    ///
    /// ```
    /// use minotaur_core::{GameConfig, GameEngine};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = GameEngine::standalone(GameConfig::default()).await?;
    /// let game = engine.create_game("READ", vec!["ann".into(), "bob".into()]).await?;
    /// assert_eq!(engine.get_game_confirmed(game.id).await?, engine.get_game(game.id).await?);
    /// # Ok(()) }
    /// ```
    pub async fn get_game_confirmed(&self, id: GameId) -> Result<Game, EngineError> {
        self.game_reply(id, Command::GetGameConfirmed).await
    }

    /// The live game with this join code (case-insensitive).
    pub async fn get_game_by_join_code(&self, join_code: &str) -> Result<Game, EngineError> {
        let code: JoinCode = join_code.parse()?;
        let id = self.directory.find_by_join_code(&code).await?;
        self.get_game(id).await
    }

    /// Resolves the current round now.
    pub async fn end_round(&self, id: GameId) -> Result<Ack, EngineError> {
        self.write(id, Command::EndRound).await
    }

    /// Registers a move of `vector` for `user`.
    pub async fn register_move(
        &self,
        id: GameId,
        user: UserId,
        vector: Hex,
    ) -> Result<Ack, EngineError> {
        self.write(id, Command::RegisterMove { user, vector }).await
    }

    /// Registers an attack by `user` on `target`.
    pub async fn register_attack(
        &self,
        id: GameId,
        user: UserId,
        target: UserId,
    ) -> Result<Ack, EngineError> {
        self.write(id, Command::RegisterAttack { user, target })
            .await
    }

    /// Applies write `command` to game `id` at most once for `op`, an id the
    /// caller chose for this one logical write. After an error that leaves
    /// its fate unknown (a timeout, a node that went away), send it again
    /// with the same `op`: if it was applied, the answer is the [`Ack`] of
    /// the game's current state and nothing is applied twice.
    ///
    /// A game remembers its last [`MAX_APPLIED_OPS`](crate::change::MAX_APPLIED_OPS)
    /// op ids, so a retry must come before that many other writes reach the
    /// game. A write the rules refused is not remembered: retrying it is
    /// judged again against the game as it is then.
    ///
    /// ```
    /// use minotaur_core::{Command, GameEngine, GameConfig};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = GameEngine::standalone(GameConfig::default()).await?;
    /// let game = engine.create_game("ONCE", vec!["ann".into(), "bob".into()]).await?;
    /// let op = 0x5eed;
    /// let first = engine.apply_once(game.id, op, Command::EndRound).await?;
    /// // The client did not see `first` (say its connection dropped) and retries.
    /// let again = engine.apply_once(game.id, op, Command::EndRound).await?;
    /// assert_eq!(first.round, again.round, "the round ended once");
    /// assert_eq!(first, again);
    /// # Ok(()) }
    /// ```
    pub async fn apply_once(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
    ) -> Result<Ack, EngineError> {
        ack_of(self.send_write(id, op, command, Answer::Ack).await?)
    }

    /// Like [`apply_once`](Self::apply_once), but answers the whole game
    /// after the write (after the first application, for a retried `op`:
    /// the game's current state), for a caller that needs more than the
    /// [`Ack`]. The same at-most-once rules apply, and the same `op` may be
    /// retried with either method. The game costs a copy in the session
    /// and, across the cluster, its bytes on the wire.
    ///
    /// ```
    /// use minotaur_core::{Command, GameEngine, GameConfig};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let engine = GameEngine::standalone(GameConfig::default()).await?;
    /// let game = engine.create_game("GAME", vec!["ann".into(), "bob".into()]).await?;
    /// let op = 0xfeed;
    /// let attack = Command::RegisterAttack { user: "ann".into(), target: "bob".into() };
    /// let after = engine.apply_once_and_get(game.id, op, attack.clone()).await?;
    /// assert_eq!(after.version, 1);
    /// let paid = game.players[0].action_points - engine.config().attack_cost;
    /// assert_eq!(after.players[0].action_points, paid);
    /// // A retry applies nothing more, and answers the game as it is.
    /// let again = engine.apply_once_and_get(game.id, op, attack).await?;
    /// assert_eq!(again, after);
    /// # Ok(()) }
    /// ```
    pub async fn apply_once_and_get(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
    ) -> Result<Game, EngineError> {
        game_of(self.send_write(id, op, command, Answer::Game).await?)
    }

    /// `user`'s character in game `id`.
    pub async fn get_player_status(
        &self,
        id: GameId,
        user: UserId,
    ) -> Result<PlayerStatus, EngineError> {
        match self
            .directory
            .send(id, Command::PlayerStatus { user })
            .await?
        {
            Reply::Status(status) => Ok(status),
            _ => Err(EngineError::Protocol("expected a player status".into())),
        }
    }

    /// The live, active games `user` plays in.
    pub async fn get_active_games_for_user(&self, user: &UserId) -> Result<Vec<Game>, EngineError> {
        let mut games = Vec::new();
        for id in self.directory.games_of_user(user).await? {
            match self.get_game(id).await {
                Ok(game) if game.is_active() && game.has_player(user) => games.push(game),
                // Concluded between the listing and the read.
                Ok(_) | Err(EngineError::GameNotAlive(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(games)
    }

    async fn game_reply(&self, id: GameId, command: Command) -> Result<Game, EngineError> {
        game_of(self.directory.send(id, command).await?)
    }

    /// A write under a fresh op id, answered with its [`Ack`].
    async fn write(&self, id: GameId, command: Command) -> Result<Ack, EngineError> {
        let op: OpId = rand::random();
        ack_of(self.send_write(id, op, command, Answer::Ack).await?)
    }

    async fn send_write(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
        answer: Answer,
    ) -> Result<Reply, EngineError> {
        if !command.is_write() {
            return Err(EngineError::Protocol(format!("{command:?} is not a write")));
        }
        self.directory.send_write(id, op, command, answer).await
    }
}

fn game_of(reply: Reply) -> Result<Game, EngineError> {
    match reply {
        Reply::Game(game) => Ok(*game),
        _ => Err(EngineError::Protocol("expected a game".into())),
    }
}

fn ack_of(reply: Reply) -> Result<Ack, EngineError> {
    match reply {
        Reply::Ack(ack) => Ok(ack),
        _ => Err(EngineError::Protocol("expected an acknowledgement".into())),
    }
}

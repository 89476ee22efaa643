//! Hosting sessions in this process: a supervisor actor that starts them,
//! restarts a failed one from its last saved state (up to a limit),
//! passivates idle ones when it is their owner, and a shared table to find
//! them without a message round trip.

use crate::codec;
use crate::engine::EngineError;
use crate::game::Game;
use crate::ids::{GameId, JoinCode, UserId};
use crate::session::{GameSession, Idle, SessionArgs, SessionMsg, StateSink, PASSIVATED};
use ractor::rpc::CallResult;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

/// One hosted session and the keys it is known by.
#[derive(Clone)]
pub struct Hosted {
    /// The session actor.
    pub actor: ActorRef<SessionMsg>,
    /// The game's join code.
    pub join_code: JoinCode,
    /// The game's players.
    pub users: Vec<UserId>,
}

/// A passivated game: its encoded state and the keys it is known by.
struct Dormant {
    state: Box<[u8]>,
    users: Box<[UserId]>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<GameId, Hosted>,
    /// Games passivated by the host itself (a standalone engine's).
    dormant: HashMap<GameId, Dormant>,
    /// Join codes of running and dormant games.
    by_code: HashMap<JoinCode, GameId>,
    by_actor: HashMap<ActorId, GameId>,
    /// Callers waiting for a game's session to come up.
    waiting: HashMap<GameId, Vec<oneshot::Sender<()>>>,
    /// Callers waiting for a session to be gone.
    leaving: HashMap<ActorId, Vec<oneshot::Sender<()>>>,
}

/// The sessions a host runs, readable from any task. Only the host writes it.
#[derive(Clone, Default)]
pub struct HostedSessions {
    table: Arc<RwLock<Table>>,
}

impl HostedSessions {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        // A panic while holding the lock cannot leave the maps half-updated
        // (each write is a few inserts), so a poisoned lock is still usable.
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The session of game `id`, if hosted here.
    pub fn session(&self, id: GameId) -> Option<ActorRef<SessionMsg>> {
        self.read().by_id.get(&id).map(|h| h.actor.clone())
    }

    /// The session of game `id` once it is hosted here, waiting at most
    /// `timeout` for it to come up: a command for a game that is starting
    /// here (restarted after a failover, say) is answered the moment its
    /// session runs. Cancel-safe.
    pub async fn wait_for(&self, id: GameId, timeout: Duration) -> Option<ActorRef<SessionMsg>> {
        let mut waiting = {
            let mut t = self.write();
            if let Some(h) = t.by_id.get(&id) {
                return Some(h.actor.clone());
            }
            let (tx, rx) = oneshot::channel();
            t.waiting.entry(id).or_default().push(tx);
            Waiting {
                sessions: self,
                id,
                up: Some(rx),
            }
        };
        if let Some(up) = waiting.up.as_mut() {
            let _ = tokio::time::timeout(timeout, up).await;
        }
        drop(waiting);
        self.session(id)
    }

    /// Waits until `session` is no longer listed (the host forgets a
    /// session once it has exited), for at most `timeout`; returns whether
    /// it is gone. A start of the same game that follows is then not
    /// refused as already running.
    pub async fn wait_gone(&self, session: &ActorRef<SessionMsg>, timeout: Duration) -> bool {
        let actor = session.get_id();
        let gone = {
            let mut t = self.write();
            if !t.by_actor.contains_key(&actor) {
                return true;
            }
            let (tx, rx) = oneshot::channel();
            t.leaving.entry(actor).or_default().push(tx);
            rx
        };
        let gone = matches!(tokio::time::timeout(timeout, gone).await, Ok(Ok(())));
        if !gone {
            let mut t = self.write();
            if let Some(w) = t.leaving.get_mut(&actor) {
                w.retain(|tx| !tx.is_closed());
                if w.is_empty() {
                    t.leaving.remove(&actor);
                }
            }
            return !t.by_actor.contains_key(&actor);
        }
        true
    }

    /// The hosted game with this join code (running or dormant).
    pub fn by_join_code(&self, code: &JoinCode) -> Option<GameId> {
        self.read().by_code.get(code).copied()
    }

    /// Hosted games `user` plays in (running or dormant).
    pub fn of_user(&self, user: &UserId) -> Vec<GameId> {
        let t = self.read();
        let running = t.by_id.iter().filter(|(_, h)| h.users.contains(user));
        let dormant = t.dormant.iter().filter(|(_, d)| d.users.contains(user));
        running
            .map(|(id, _)| *id)
            .chain(dormant.map(|(id, _)| *id))
            .collect()
    }

    /// Whether game `id` is passivated here, by the host itself: the next
    /// [`HostMsg::Activate`] starts it again.
    pub fn is_dormant(&self, id: GameId) -> bool {
        self.read().dormant.contains_key(&id)
    }

    /// Number of games the host passivated itself.
    pub fn dormant(&self) -> usize {
        self.read().dormant.len()
    }

    /// Ids of all games whose session runs here.
    pub fn ids(&self) -> Vec<GameId> {
        self.read().by_id.keys().copied().collect()
    }

    /// Number of games whose session runs here.
    pub fn len(&self) -> usize {
        self.read().by_id.len()
    }

    /// Whether no game is hosted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&self, id: GameId, hosted: Hosted) {
        let mut t = self.write();
        t.by_code.insert(hosted.join_code.clone(), id);
        t.by_actor.insert(hosted.actor.get_id(), id);
        t.by_id.insert(id, hosted);
        for up in t.waiting.remove(&id).unwrap_or_default() {
            let _ = up.send(());
        }
    }

    /// Empties the table, returning what it held: once the host stops,
    /// nothing runs here, whatever exit notices it did not get to.
    pub(crate) fn clear(&self) -> Vec<(GameId, Hosted)> {
        let mut t = self.write();
        t.by_code.clear();
        t.dormant.clear();
        t.by_actor.clear();
        t.waiting.clear();
        for (_, waiting) in t.leaving.drain() {
            for gone in waiting {
                let _ = gone.send(());
            }
        }
        t.by_id.drain().collect()
    }

    fn remove_actor(&self, actor: ActorId) -> Option<(GameId, Hosted)> {
        let mut t = self.write();
        for gone in t.leaving.remove(&actor).unwrap_or_default() {
            let _ = gone.send(());
        }
        let id = t.by_actor.remove(&actor)?;
        // A session started for the game since (it woke from dormancy) is
        // not this one.
        if t.by_id.get(&id)?.actor.get_id() != actor {
            return None;
        }
        let hosted = t.by_id.remove(&id)?;
        if t.by_code.get(&hosted.join_code) == Some(&id) && !t.dormant.contains_key(&id) {
            t.by_code.remove(&hosted.join_code);
        }
        Some((id, hosted))
    }

    /// Keeps `game`, whose session is stopping, as its encoded state.
    fn put_to_sleep(&self, game: &Game) -> Result<(), EngineError> {
        let state = codec::encode(game)
            .map_err(|e| EngineError::Unavailable(format!("game not passivated: {e}")))?;
        let dormant = Dormant {
            state: state.into_boxed_slice(),
            users: game.players.iter().map(|p| p.user.clone()).collect(),
        };
        let mut t = self.write();
        t.by_code.insert(game.join_code.clone(), game.id);
        t.dormant.insert(game.id, dormant);
        Ok(())
    }

    /// The state of dormant game `id`, which leaves the dormant set.
    fn wake(&self, id: GameId) -> Option<Result<Game, EngineError>> {
        let dormant = self.write().dormant.remove(&id)?;
        Some(codec::decode(&dormant.state).map_err(|e| {
            EngineError::Unavailable(format!("passivated game {id} does not decode: {e}"))
        }))
    }
}

/// A caller's wait for a session; forgets itself however the wait ends.
struct Waiting<'a> {
    sessions: &'a HostedSessions,
    id: GameId,
    up: Option<oneshot::Receiver<()>>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // Ours is closed once its receiver is gone; so is any other
        // caller's that gave up.
        drop(self.up.take());
        let mut t = self.sessions.write();
        if let Some(w) = t.waiting.get_mut(&self.id) {
            w.retain(|tx| !tx.is_closed());
            if w.is_empty() {
                t.waiting.remove(&self.id);
            }
        }
    }
}

/// Why a hosted session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// The game concluded.
    Concluded,
    /// The session handed its state over (see [`SessionMsg::Release`]).
    Released,
    /// The session failed more often than allowed, or could not be restarted.
    Failed(String),
    /// The session was stopped from outside (e.g. the host shut down).
    Stopped,
    /// The session was idle and handed its state back
    /// ([`SessionMsg::Passivate`]).
    Passivated,
}

/// Reported by a host when one of its sessions ends.
#[derive(Debug, Clone)]
pub struct HostEvent {
    /// The game.
    pub id: GameId,
    /// Its join code.
    pub join_code: JoinCode,
    /// Why the session ended.
    pub reason: EndReason,
}

/// The supervisor actor of a process's (or node's) sessions.
pub struct SessionHost;

/// What a host starts with.
pub struct HostArgs {
    /// The table the host fills; clones of it read it.
    pub sessions: HostedSessions,
    /// Given to every session; also where a failed session's state is
    /// reloaded from.
    pub sink: Option<Arc<dyn StateSink>>,
    /// Receives an event whenever a session ends.
    pub events: Option<UnboundedSender<HostEvent>>,
    /// How many times one game's session is restarted after failures.
    pub max_restarts: u32,
    /// Whether `Start` refuses a join code already hosted here. A cluster
    /// node turns this off: its registry owns join-code uniqueness.
    pub unique_join_codes: bool,
    /// How long a session may go without a command before it is idle;
    /// `None`: sessions never are.
    pub idle_after: Option<Duration>,
    /// Who is told of an idle session. `None`: the host passivates it
    /// itself and keeps its state (a standalone engine); a cluster node's
    /// control decides instead, since it owns where each game lives.
    pub on_idle: Option<Arc<dyn Fn(GameId) + Send + Sync>>,
}

/// Requests to a host.
pub enum HostMsg {
    /// Start a session owning `game`. Fails if the id or join code is
    /// already hosted here.
    Start(Box<Game>, RpcReplyPort<Result<(), EngineError>>),
    /// Start a session for each game, all at once (a failover restarts
    /// thousands); answered with each game's outcome, in order.
    StartMany(
        Vec<Game>,
        RpcReplyPort<Vec<(GameId, Result<(), EngineError>)>>,
    ),
    /// A session of the host's own is idle: passivate it (when the host
    /// decides).
    Idle(GameId),
    /// Start game `id` again if the host passivated it; answered once its
    /// session runs (at once if it does already).
    Activate(GameId, RpcReplyPort<Result<(), EngineError>>),
}

/// How long the host waits for a session to hand its state back.
const PASSIVATE_TIMEOUT: Duration = Duration::from_secs(5);

impl ractor::Message for HostMsg {}

/// A host's state.
pub struct HostState {
    args: HostArgs,
    restarts: HashMap<GameId, u32>,
    /// Given to every session.
    idle: Option<Idle>,
}

impl HostState {
    async fn spawn(&self, myself: &ActorRef<HostMsg>, game: Game) -> Result<(), EngineError> {
        let id = game.id;
        let hosted_keys = (
            game.join_code.clone(),
            game.players.iter().map(|p| p.user.clone()).collect(),
        );
        let args = SessionArgs {
            game,
            sink: self.args.sink.clone(),
            idle: self.idle.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, GameSession, args, myself.get_cell())
            .await
            .map_err(|e| EngineError::Unavailable(format!("session did not start: {e}")))?;
        let (join_code, users) = hosted_keys;
        self.args.sessions.insert(
            id,
            Hosted {
                actor,
                join_code,
                users,
            },
        );
        Ok(())
    }

    /// Whether `game` may start here: not running already, and its join
    /// code free where the host polices codes.
    fn admit(&self, game: &Game) -> Result<(), EngineError> {
        let sessions = &self.args.sessions;
        if sessions.session(game.id).is_some() || sessions.is_dormant(game.id) {
            Err(EngineError::AlreadyRunning(game.id))
        } else if self.args.unique_join_codes && sessions.by_join_code(&game.join_code).is_some() {
            Err(EngineError::JoinCodeTaken(game.join_code.clone()))
        } else {
            Ok(())
        }
    }

    /// Asks game `id`'s idle session for its state and keeps it dormant.
    /// A session that took a command meanwhile goes on running.
    async fn passivate(&self, id: GameId) {
        let Some(session) = self.args.sessions.session(id) else {
            return;
        };
        let game = match session
            .call(SessionMsg::Passivate, Some(PASSIVATE_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(Some(game))) => game,
            _ => return,
        };
        // The session passivates only a game that encodes.
        if let Err(e) = self.args.sessions.put_to_sleep(&game) {
            tracing::error!(game = %id, error = %e, "passivated game lost");
        }
    }

    fn report(&self, id: GameId, join_code: JoinCode, reason: EndReason) {
        if let Some(events) = &self.args.events {
            let _ = events.send(HostEvent {
                id,
                join_code,
                reason,
            });
        }
    }
}

impl Actor for SessionHost {
    type Msg = HostMsg;
    type State = HostState;
    type Arguments = HostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HostMsg>,
        args: HostArgs,
    ) -> Result<HostState, ActorProcessingErr> {
        let idle = args.idle_after.map(|after| Idle {
            after,
            notify: match &args.on_idle {
                Some(notify) => notify.clone(),
                None => Arc::new(move |id| {
                    let _ = myself.cast(HostMsg::Idle(id));
                }),
            },
        });
        Ok(HostState {
            args,
            restarts: HashMap::new(),
            idle,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg>,
        message: HostMsg,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            HostMsg::Start(game, reply) => {
                let result = match state.admit(&game) {
                    Ok(()) => state.spawn(&myself, *game).await,
                    Err(e) => Err(e),
                };
                let _ = reply.send(result);
            }
            HostMsg::StartMany(games, reply) => {
                let mut results = Vec::with_capacity(games.len());
                let mut admitted = Vec::new();
                let mut ids = HashSet::new();
                let mut codes = HashSet::new();
                for game in games {
                    let repeat = !ids.insert(game.id)
                        || (state.args.unique_join_codes && !codes.insert(game.join_code.clone()));
                    match state.admit(&game) {
                        Ok(()) if !repeat => admitted.push(game),
                        Ok(()) => {
                            results.push((game.id, Err(EngineError::AlreadyRunning(game.id))))
                        }
                        Err(e) => results.push((game.id, Err(e))),
                    }
                }
                // Each spawn waits for its session to start; waiting for
                // all at once lets them start side by side.
                let state = &*state;
                let spawned = futures::future::join_all(admitted.into_iter().map(|game| {
                    let id = game.id;
                    let myself = &myself;
                    async move { (id, state.spawn(myself, game).await) }
                }))
                .await;
                results.extend(spawned);
                let _ = reply.send(results);
            }
            HostMsg::Idle(id) => {
                if state.args.on_idle.is_none() {
                    state.passivate(id).await;
                }
            }
            HostMsg::Activate(id, reply) => {
                let result = match state.args.sessions.wake(id) {
                    Some(Ok(game)) => state.spawn(&myself, game).await,
                    Some(Err(e)) => Err(e),
                    None if state.args.sessions.session(id).is_some() => Ok(()),
                    None => Err(EngineError::GameNotAlive(id)),
                };
                let _ = reply.send(result);
            }
        }
        Ok(())
    }

    // ractor kills (does not stop) the children an actor still has when it
    // exits, so their `post_stop` never runs and a session's round timer
    // task would outlive it (until the round's deadline). Stop them
    // properly first: the host takes no more starts by now.
    //
    // Then forget them all: a stopping host drops the exit notices still
    // queued for it (a stop outranks them), so sessions that ended without
    // their notice being handled would stay listed as hosted for good.
    async fn post_stop(
        &self,
        myself: ActorRef<HostMsg>,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        stop_children(&myself.get_cell(), Duration::from_secs(5)).await;
        for (id, hosted) in state.args.sessions.clear() {
            state.report(id, hosted.join_code, EndReason::Stopped);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<HostMsg>,
        event: SupervisionEvent,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                if let Some((id, hosted)) = state.args.sessions.remove_actor(cell.get_id()) {
                    state.restarts.remove(&id);
                    let reason = match reason.as_deref() {
                        Some("concluded") => EndReason::Concluded,
                        Some("released") => EndReason::Released,
                        Some(PASSIVATED) => EndReason::Passivated,
                        _ => EndReason::Stopped,
                    };
                    state.report(id, hosted.join_code, reason);
                }
            }
            SupervisionEvent::ActorFailed(cell, error) => {
                let Some((id, hosted)) = state.args.sessions.remove_actor(cell.get_id()) else {
                    return Ok(());
                };
                let count = state.restarts.entry(id).or_default();
                *count += 1;
                let attempt = *count;
                tracing::warn!(game = %id, %error, attempt, "session failed");
                let saved = match &state.args.sink {
                    Some(sink) if attempt <= state.args.max_restarts => sink.load(id).await,
                    _ => None,
                };
                let restarted = match saved {
                    Some(game) => state.spawn(&myself, game).await.map_err(|e| e.to_string()),
                    None => Err(format!("not restarted after {attempt} failure(s): {error}")),
                };
                if let Err(why) = restarted {
                    state.restarts.remove(&id);
                    state.report(id, hosted.join_code, EndReason::Failed(why));
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Stops every child of `parent` and waits, up to `within` in all, for
/// them to end. (ractor's `stop_children_and_wait` panics when the runtime
/// shuts down while it waits, as it does when a test fails with a node
/// still running.)
pub(crate) async fn stop_children(parent: &ActorCell, within: Duration) {
    let children = parent.get_children();
    for child in &children {
        child.stop(None);
    }
    let deadline = tokio::time::Instant::now() + within;
    for child in children {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = child.wait(Some(left)).await;
    }
}

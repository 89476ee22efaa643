//! A node whose control plane is the [`Control`] state machine: its start,
//! the transport's link events turned into driver inputs, the router that
//! hands peers' control messages to the driver and answers commands from
//! sessions, the [`Directory`] callers use and the sink sessions save to.
//!
//! Commands (the data plane) never pass through the driver: a command for
//! a game hosted here goes straight to its session, one for a game
//! elsewhere straight to its owner's router, found in the published view.

use crate::config::{NodeConfig, Transport};
use crate::control::{Control, ControlConfig};
use crate::driver::{snapshot_of, Driver, ToDriver, View};
use crate::links::{self, LinkEvent};
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::node::{kill_tree, NodeError};
use crate::protocol::{self, Notice, Request, Response, RouterMsg};
use crate::registry::Registry;
use crate::rpc::{self, RpcError};
use crate::tasks::{CallGuard, Calls, Tasks};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use minotaur_core::local::{call_session, call_session_write};
use minotaur_core::{
    codec, Command, Directory, EngineError, Game, GameEngine, GameId, JoinCode, LocalDirectory,
    OpId, Reply, StateSink, UserId,
};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::NodeServerMessage;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What every part of a driven node shares (read-only handles).
pub(crate) struct Plane {
    pub this: MemberId,
    pub config: NodeConfig,
    pub addr: String,
    pub server: ActorRef<NodeServerMessage>,
    pub local: Arc<LocalDirectory>,
    pub registry: Registry,
    pub view: Arc<ArcSwap<View>>,
    pub driver: mpsc::UnboundedSender<ToDriver>,
    pub events: broadcast::Sender<ClusterEvent>,
    pub tasks: Tasks,
    pub calls: Arc<Calls>,
    pub span: tracing::Span,
}

/// A started driven node: its plane, router and engine.
pub(crate) struct Started {
    pub plane: Arc<Plane>,
    pub router: ActorRef<RouterMsg>,
    pub engine: GameEngine,
}

fn control_config(config: &NodeConfig) -> ControlConfig {
    ControlConfig {
        heartbeat_interval: config.heartbeat_interval,
        failure_timeout: config.failure_timeout,
        call_timeout: config.call_timeout,
        replication_factor: config.replication_factor,
        placement: config.placement.clone(),
        redistribution: config.redistribution,
        seeds: config.seeds.clone(),
        ..ControlConfig::default()
    }
}

/// Starts a node on the control state machine.
pub(crate) async fn start(
    config: NodeConfig,
    this: MemberId,
    span: tracing::Span,
) -> Result<Started, NodeError> {
    let fail = |what: &'static str, e: String| NodeError::Start {
        node: config.name.clone(),
        what,
        reason: e,
    };
    let links::Server {
        actor: server,
        port,
        tls_listener,
    } = links::start_server(&config, &this).await?;
    // Before anything dials: a link that comes up before the subscription
    // would never be reported.
    let link_events = links::subscribe(&server, &this);
    let addr = match &config.transport {
        Transport::Tcp => SocketAddr::new(config.listen_addr.ip(), port).to_string(),
        Transport::Custom { addr, .. } => addr.clone(),
    };
    let (tx, inbox) = mpsc::unbounded_channel();
    let (host_tx, host_events) = mpsc::unbounded_channel();
    let sink = Arc::new(ControlSink {
        driver: tx.clone(),
        factor: config.replication_factor,
    });
    let local = LocalDirectory::start_with(Some(sink), Some(host_tx), config.max_restarts, false)
        .await
        .map_err(|e| fail("session host", e.to_string()))?;
    let (events, _) = broadcast::channel(4096);
    let view = Arc::new(ArcSwap::from_pointee(View {
        members: vec![(this.clone(), MemberStatus::Up)],
        routers: Default::default(),
        synced: true,
        unreplicated: 0,
        copies: 0,
    }));
    let tasks = Tasks::new(span.clone());
    let plane = Arc::new(Plane {
        this: this.clone(),
        config: config.clone(),
        addr: addr.clone(),
        server: server.clone(),
        local: Arc::new(local),
        registry: Registry::default(),
        view: view.clone(),
        driver: tx.clone(),
        events: events.clone(),
        tasks: tasks.clone(),
        calls: Arc::default(),
        span: span.clone(),
    });
    let (router, _) = Actor::spawn(
        Some(crate::router::router_name(&this)),
        PlaneRouter,
        plane.clone(),
    )
    .await
    .map_err(|e| fail("router", e.to_string()))?;
    let control = Control::new(
        this.clone(),
        addr.clone(),
        control_config(&config),
        Duration::ZERO,
    );
    let driver = Driver {
        control,
        config: config.clone(),
        this: this.clone(),
        server: server.clone(),
        local: plane.local.clone(),
        tasks: tasks.clone(),
        events,
        view,
        registry: plane.registry.clone(),
        inbox,
        host_events,
        tx: tx.clone(),
    };
    tasks.spawn(driver.run());
    tasks.spawn(run_link_events(plane.clone(), link_events));
    tasks.spawn(poll_sessions(plane.clone()));
    if let (Some(listener), Some(tls)) = (tls_listener, config.tls.clone()) {
        let deadline = links::handshake_deadline(&config);
        tasks.spawn(tls.accept_loop(listener, server.clone(), deadline, tasks.clone()));
    }
    tracing::info!(%addr, "node started (control state machine)");
    let directory = PlaneDirectory {
        plane: plane.clone(),
    };
    let engine = GameEngine::new(Arc::new(directory), config.game.clone());
    Ok(Started {
        plane,
        router,
        engine,
    })
}

/// Turns the transport's session events into driver inputs.
async fn run_link_events(plane: Arc<Plane>, mut events: mpsc::UnboundedReceiver<LinkEvent>) {
    let deadline = links::handshake_deadline(&plane.config);
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Opened(info) => {
                // ractor_cluster has no handshake timeout: a peer that never
                // authenticates is closed here.
                let server = plane.server.clone();
                plane.tasks.spawn(async move {
                    tokio::time::sleep(deadline).await;
                    let id = info.actor.get_id();
                    if let Ok(sessions) =
                        ractor::call_t!(server, NodeServerMessage::GetSessions, 1000)
                    {
                        if !sessions.values().any(|s| s.actor.get_id() == id) {
                            tracing::info!(peer = %info.peer_addr, "closing a connection that did not authenticate in time");
                            links::close_session(&info.actor);
                        }
                    }
                });
            }
            LinkEvent::Ready(info) => {
                let driver = plane.driver.clone();
                plane.tasks.spawn(async move {
                    let Some(peer) = info.peer_name.as_ref().map(|p| p.name.clone()) else {
                        return;
                    };
                    let peer = peer.split('@').next().unwrap_or_default().to_string();
                    let name = crate::router::router_name_of(&peer);
                    match links::find_router(&info, &name).await {
                        Some(router) => {
                            let _ = driver.send(ToDriver::LinkReady {
                                session: info.actor.clone(),
                                router,
                                peer,
                            });
                        }
                        None => {
                            tracing::warn!(%peer, "peer has no Minotaur router; closing the link");
                            links::close_session(&info.actor);
                        }
                    }
                });
            }
            LinkEvent::Closed(info) => {
                let _ = plane.driver.send(ToDriver::LinkClosed(info.actor.get_id()));
            }
        }
    }
}

/// Hands the driver the transport's authenticated sessions, now and then,
/// so it can close those that never become links.
async fn poll_sessions(plane: Arc<Plane>) {
    let period = links::handshake_deadline(&plane.config) / 2;
    loop {
        tokio::time::sleep(period).await;
        if let Ok(sessions) = ractor::call_t!(plane.server, NodeServerMessage::GetSessions, 1000) {
            let sessions = sessions.into_values().map(|s| s.actor).collect();
            let _ = plane.driver.send(ToDriver::Sessions(sessions));
        }
    }
}

/// The router of a driven node.
struct PlaneRouter;

impl Actor for PlaneRouter {
    type Msg = RouterMsg;
    type State = Arc<Plane>;
    type Arguments = Arc<Plane>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RouterMsg>,
        plane: Arc<Plane>,
    ) -> Result<Arc<Plane>, ActorProcessingErr> {
        Ok(plane)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        message: RouterMsg,
        plane: &mut Arc<Plane>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Notice(bytes) => match protocol::open::<Notice>(&bytes) {
                Ok(Notice::Control { from, msg }) => {
                    let _ = plane.driver.send(ToDriver::Control { from, msg });
                }
                Ok(_) => {} // a node on the older control plane
                Err(e) => {
                    tracing::warn!(parent: &plane.span, error = %e, "dropping an undecodable notice")
                }
            },
            RouterMsg::Request(bytes, reply) => match protocol::open::<Request>(&bytes) {
                Ok(Request::Command { id, command }) => {
                    let plane = plane.clone();
                    plane.tasks.clone().spawn(async move {
                        let route = command_here(&plane, id, command, None).await;
                        answer(reply, route.into_response(&plane, id));
                    });
                }
                Ok(Request::Write { id, op, command }) => {
                    let plane = plane.clone();
                    plane.tasks.clone().spawn(async move {
                        let route = command_here(&plane, id, command, Some(op)).await;
                        answer(reply, route.into_response(&plane, id));
                    });
                }
                Ok(_) => answer(
                    reply,
                    Response::Refused("this node runs the control state machine".into()),
                ),
                Err(e) => answer(
                    reply,
                    Response::Refused(format!("undecodable request: {e}")),
                ),
            },
        }
        Ok(())
    }
}

fn answer(reply: RpcReplyPort<Vec<u8>>, response: Response) {
    let bytes = protocol::seal(response)
        .or_else(|e| protocol::seal(Response::Command(Err(EngineError::Codec(e)))));
    if let Ok(bytes) = bytes {
        let _ = reply.send(bytes);
    }
}

/// What to do next with a command.
enum Route {
    Done(Result<Reply, EngineError>),
    /// Not here (any more): ask the registered owner.
    Elsewhere,
    /// Between owners: look again shortly.
    Retry,
}

impl Route {
    fn into_response(self, plane: &Plane, id: GameId) -> Response {
        match self {
            Route::Done(result) => Response::Command(result),
            Route::Elsewhere => match plane.registry.lookup(id) {
                Some(reg) if reg.owner != plane.this => Response::Moved(reg.owner),
                _ => Response::NotHere,
            },
            Route::Retry => Response::NotHere,
        }
    }
}

/// Delivers a command to game `id`'s session if it runs here.
async fn command_here(plane: &Plane, id: GameId, command: Command, op: Option<OpId>) -> Route {
    if let Some(session) = plane.local.sessions().session(id) {
        let timeout = plane.config.call_timeout;
        let result = match op {
            Some(op) => call_session_write(&session, id, op, command, timeout).await,
            None => call_session(&session, id, command, timeout).await,
        };
        match result {
            // Released or concluded while we asked: look again.
            Err(EngineError::GameNotAlive(_)) => {}
            other => return Route::Done(other),
        }
    }
    match plane.registry.lookup(id) {
        Some(reg) if reg.owner == plane.this => Route::Retry, // starting, moving or ending
        Some(_) => Route::Elsewhere,
        None if plane.view.load().synced => Route::Done(Err(EngineError::GameNotAlive(id))),
        None => Route::Retry,
    }
}

/// The sink of a driven node's sessions: a change is kept once the control
/// says its copy landed on the game's backup.
struct ControlSink {
    driver: mpsc::UnboundedSender<ToDriver>,
    factor: usize,
}

#[async_trait]
impl StateSink for ControlSink {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        let snapshot = snapshot_of(game)?;
        let (reply, answer) = oneshot::channel();
        self.driver
            .send(ToDriver::Save { snapshot, reply })
            .map_err(|_| EngineError::Unavailable("the node is stopping".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("the node is stopping".into())))
    }

    async fn load(&self, id: GameId) -> Option<Game> {
        if self.factor == 0 {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.driver.send(ToDriver::Fetch { id, reply }).ok()?;
        let snapshot = answer.await.ok()??;
        codec::decode(&snapshot.state).ok()
    }
}

/// The [`Directory`] of a driven node.
struct PlaneDirectory {
    plane: Arc<Plane>,
}

impl PlaneDirectory {
    fn begin(&self) -> Result<CallGuard, EngineError> {
        self.plane
            .calls
            .begin()
            .filter(|_| !self.plane.tasks.is_stopped())
            .ok_or_else(|| {
                EngineError::Unavailable(format!(
                    "node {} has left the cluster; call another node",
                    self.plane.this
                ))
            })
    }

    async fn remote(
        &self,
        owner: &MemberId,
        id: GameId,
        command: Command,
        op: Option<OpId>,
        left: Duration,
    ) -> Result<Route, MemberId> {
        let repeatable = !command.is_write() || op.is_some();
        let Some(router) = self.plane.view.load().routers.get(owner).cloned() else {
            return Ok(Route::Retry);
        };
        let request = match op {
            Some(op) => Request::Write { id, op, command },
            None => Request::Command { id, command },
        };
        let bytes = match protocol::seal(request) {
            Ok(bytes) => bytes,
            Err(e) => return Ok(Route::Done(Err(EngineError::Codec(e)))),
        };
        match rpc::call(&router, bytes, left, owner).await {
            Ok(Response::Command(result)) => Ok(Route::Done(result)),
            Ok(Response::Moved(to)) => Err(to),
            Ok(Response::NotHere) => Ok(Route::Retry),
            Ok(Response::Refused(why)) => Ok(Route::Done(Err(EngineError::Protocol(why)))),
            Ok(other) => Ok(Route::Done(Err(EngineError::Protocol(format!(
                "unexpected answer {other:?}"
            ))))),
            Err(RpcError::Timeout(..)) => Ok(Route::Done(Err(EngineError::Timeout(format!(
                "{owner} did not answer for game {id} within {left:?}"
            ))))),
            Err(RpcError::Closed(_)) if repeatable => Ok(Route::Retry),
            Err(e) => Ok(Route::Done(Err(EngineError::Unavailable(e.to_string())))),
        }
    }

    /// Delivers a command to game `id` wherever it lives, following moves
    /// and waiting out failovers within the call timeout.
    async fn route(
        &self,
        id: GameId,
        command: Command,
        op: Option<OpId>,
    ) -> Result<Reply, EngineError> {
        let plane = &self.plane;
        let timeout = plane.config.call_timeout;
        let deadline = Instant::now() + timeout;
        let mut hint: Option<MemberId> = None;
        let mut backoff = Duration::from_millis(2);
        loop {
            let owner = match hint.take() {
                Some(owner) => owner,
                None => match plane.registry.lookup(id) {
                    Some(reg) => reg.owner,
                    None if plane.view.load().synced => return Err(EngineError::GameNotAlive(id)),
                    None => plane.this.clone(),
                },
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let route = if owner == plane.this {
                Ok(command_here(plane, id, command.clone(), op).await)
            } else {
                self.remote(
                    &owner,
                    id,
                    command.clone(),
                    op,
                    left.max(Duration::from_millis(1)),
                )
                .await
            };
            match route {
                Ok(Route::Done(result)) => return result,
                Err(to) => hint = Some(to),
                Ok(Route::Elsewhere | Route::Retry) => {}
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Unavailable(format!(
                    "game {id} is between owners; gave up after {timeout:?}"
                )));
            }
            if hint.is_none() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        }
    }

    async fn await_sync(&self) {
        let deadline = Instant::now() + self.plane.config.call_timeout;
        while !self.plane.view.load().synced && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl Directory for PlaneDirectory {
    async fn start(&self, game: Game) -> Result<(), EngineError> {
        let _call = self.begin()?;
        let (reply, answer) = oneshot::channel();
        self.plane
            .driver
            .send(ToDriver::Create { game, reply })
            .map_err(|_| EngineError::Unavailable("the node is stopping".into()))?;
        let wait = self.plane.config.call_timeout * 3;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result.map(|_| ()),
            Ok(Err(_)) => Err(EngineError::Unavailable("the node is stopping".into())),
            Err(_) => Err(EngineError::Timeout(format!(
                "create not answered within {wait:?}"
            ))),
        }
    }

    async fn send(&self, id: GameId, command: Command) -> Result<Reply, EngineError> {
        let _call = self.begin()?;
        self.route(id, command, None).await
    }

    async fn send_write(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
    ) -> Result<Reply, EngineError> {
        let _call = self.begin()?;
        self.route(id, command, Some(op)).await
    }

    async fn find_by_join_code(&self, code: &JoinCode) -> Result<GameId, EngineError> {
        let _call = self.begin()?;
        self.await_sync().await;
        self.plane
            .registry
            .by_join_code(code)
            .ok_or_else(|| EngineError::UnknownJoinCode(code.clone()))
    }

    async fn games_of_user(&self, user: &UserId) -> Result<Vec<GameId>, EngineError> {
        let _call = self.begin()?;
        self.await_sync().await;
        Ok(self.plane.registry.of_user(user))
    }
}

impl Plane {
    /// Leaves gracefully: hands every session over, lets calls in flight
    /// finish, says goodbye.
    pub async fn leave(&self) {
        let (reply, drained) = oneshot::channel();
        if self.driver.send(ToDriver::Leave(reply)).is_ok() {
            let wait = self.config.call_timeout * 6;
            if tokio::time::timeout(wait, drained).await.is_err() {
                tracing::warn!("sessions not all handed over within {wait:?}; leaving anyway");
            }
        }
        self.calls.close();
        if !self.calls.idle(self.config.call_timeout).await {
            tracing::warn!("engine calls still in flight; leaving anyway");
        }
        let (done, sent) = oneshot::channel();
        if self.driver.send(ToDriver::Depart(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(1), sent).await;
        }
        // Let the goodbyes reach the peers before the links close.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    /// Stops everything: transport first (peers see this node gone at
    /// once), then the tasks, the router and the sessions.
    pub async fn stop(&self, router: &ActorRef<RouterMsg>) {
        self.calls.close();
        for cell in kill_tree(&self.server.get_cell()) {
            let _ = cell.wait(Some(Duration::from_secs(2))).await;
        }
        if !self.tasks.stop(Duration::from_secs(2)).await {
            tracing::error!(parent: &self.span, tasks = self.tasks.len(), "background tasks did not end within 2 s");
        }
        router.stop(None);
        self.local.shutdown().await;
        let _ = router.get_cell().wait(Some(Duration::from_secs(2))).await;
    }

    /// Members as this node sees them.
    pub fn members(&self) -> Vec<(MemberId, MemberStatus)> {
        self.view.load().members.clone()
    }
}

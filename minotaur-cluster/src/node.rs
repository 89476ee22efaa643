//! `Node`: one cluster member. Starts the transport, the session host, the
//! router and the driver and wires them together; leaves gracefully or is
//! killed.

use crate::config::{NodeConfig, Transport};
use crate::control::{Control, ControlConfig, Input};
use crate::directory::ClusterDirectory;
use crate::driver::{Driver, DriverTx, ToDriver, View};
use crate::exchange::Exchange;
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::plane::Plane;
use crate::protocol::RouterMsg;
use crate::registry::Registry;
use crate::router::Router;
use crate::sink::ControlSink;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;
use crate::{links, transport};
use arc_swap::ArcSwap;
use minotaur_core::local::HostOptions;
use minotaur_core::{GameEngine, GameId, LocalDirectory};
use ractor::{Actor, ActorRef};
use ractor_cluster::NodeServerMessage;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The listen address could not be bound.
    #[error("node {node}: cannot listen on {addr}: {reason}")]
    Bind {
        /// The node's name.
        node: String,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("node {node}: invalid configuration: {reason}")]
    Config {
        /// The node's name.
        node: String,
        /// What is wrong.
        reason: String,
    },
    /// The durable store in the data dir could not be opened (corrupt,
    /// locked by another process, of a newer format, or unreadable).
    #[error("node {node}: {error}")]
    Store {
        /// The node's name.
        node: String,
        /// What is wrong with the store; it names the file.
        #[source]
        error: StoreError,
    },
    /// An internal actor did not start.
    #[error("node {node}: {what} did not start: {reason}")]
    Start {
        /// The node's name.
        node: String,
        /// Which part.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// A running cluster member.
///
/// ```no_run
/// use minotaur_cluster::{Node, NodeConfig};
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let n1 = Node::start(NodeConfig::new("n1", "a-long-secret-cookie")).await?;
/// let mut cfg = NodeConfig::new("n2", "a-long-secret-cookie");
/// cfg.seeds = vec![n1.addr().to_string()];
/// let n2 = Node::start(cfg).await?;
/// let game = n2.engine().create_game("ABCD", vec!["ann".into(), "bob".into()]).await?;
/// assert_eq!(n1.engine().get_game(game.id).await?.id, game.id);
/// n2.leave().await; // hands its sessions to n1
/// # Ok(()) }
/// ```
pub struct Node {
    plane: Arc<Plane>,
    router: ActorRef<RouterMsg>,
    engine: GameEngine,
    stopped: AtomicBool,
}

impl Node {
    /// Starts a node and begins joining through its seeds. Membership
    /// converges in the background; watch [`Node::members`] or
    /// [`Node::subscribe`].
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        if let Err(reason) = config.validate() {
            return Err(NodeError::Config {
                node: config.name.clone(),
                reason,
            });
        }
        if config.allow_weak_cookie && config.validate_cookie_strength().is_err() {
            tracing::warn!("running with a weak cluster cookie (development flag set)");
        }
        let incarnation: u64 = rand::random();
        let this = MemberId::new(config.name.clone(), incarnation);
        let span = tracing::info_span!("node", node = %config.name, node_id = %this);
        start(config, this, span.clone()).instrument(span).await
    }

    /// The game API, location-transparent across the cluster.
    pub fn engine(&self) -> &GameEngine {
        &self.engine
    }

    /// This member's id.
    pub fn id(&self) -> &MemberId {
        &self.plane.this
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.id().name
    }

    /// Where peers reach this node (for TCP, the bound address).
    pub fn addr(&self) -> &str {
        &self.plane.addr
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.plane.config
    }

    fn span(&self) -> &tracing::Span {
        &self.plane.span
    }

    /// Members as this node sees them.
    pub fn members(&self) -> Vec<(MemberId, MemberStatus)> {
        self.plane.members()
    }

    /// The member that keeps game `id`'s backup copy, owned by `owner`,
    /// once replication has caught up with the last membership change:
    /// the best-placed member up other than the owner, the one the owner
    /// copies to. `None` with replication off or no other member up.
    /// Right after a change the copy may still be on the previous one
    /// ([`Node::copies_behind`] and [`Node::unreplicated`] say so).
    pub fn backup_of(&self, id: GameId, owner: &MemberId) -> Option<MemberId> {
        if self.plane.config.replication_factor == 0 {
            return None;
        }
        let up = self
            .members()
            .into_iter()
            .filter(|(m, s)| *s == MemberStatus::Up && m != owner)
            .map(|(m, _)| m);
        crate::placement::ranked(&id, up).into_iter().next()
    }

    /// Names of the members this node sees up or leaving, sorted.
    pub fn live_member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .members()
            .into_iter()
            .filter(|(_, s)| *s != MemberStatus::Down)
            .map(|(m, _)| m.name)
            .collect();
        names.sort();
        names
    }

    /// Whether this node has received the registrations of every live member
    /// (true shortly after it joined).
    pub fn is_synced(&self) -> bool {
        self.plane.view.load().synced
    }

    /// Subscribes to membership, failover and conflict events.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.plane.events.subscribe()
    }

    /// This node's copy of the registry (listing, counting, lookups).
    pub fn registry(&self) -> &Registry {
        &self.plane.registry
    }

    /// Ids of the sessions running on this node.
    pub fn hosted(&self) -> Vec<GameId> {
        self.plane.local.sessions().ids()
    }

    /// Number of backup copies this node holds for other members and could
    /// restart their games from now. After this node's majority lease
    /// lapsed (a split, a stall), its copies count again only once their
    /// owners confirm them: until then a crash of those owners would lose
    /// the games, so a settled cluster is one where every owned game has a
    /// copy counted here on its backup.
    pub fn replicas_held(&self) -> usize {
        self.plane.view.load().copies
    }

    /// This node's part in majority fencing: the voters it counts, the
    /// members waiting to be admitted, whether it holds its lease, and the
    /// games waiting for confirmation. In a cluster settled after a fault
    /// every node counts every member as a voter, none pending, holds its
    /// lease and confirms nothing.
    pub fn vote(&self) -> crate::membership::Vote {
        self.plane.view.load().vote.clone()
    }

    /// Games hosted here whose state is not copied to a backup member that
    /// is up: 0 once re-replication has caught up after a membership change
    /// (always 0 with replication off, or with no other member up). Until
    /// then, a crash of this node loses those games.
    pub fn unreplicated(&self) -> usize {
        self.plane.view.load().unreplicated
    }

    /// Games hosted here whose backup copy is behind their latest version
    /// (a change on its way, or no backup yet): a crash now would lose
    /// those newest changes, unless they were not acknowledged yet.
    pub fn copies_behind(&self) -> usize {
        self.plane.view.load().behind
    }

    /// Members this node has an open cluster link to.
    pub fn links(&self) -> usize {
        self.plane.view.load().routers.len()
    }

    /// The copies counted by [`Node::replicas_held`]: each game with the
    /// member whose session the copy is of. Empty once the node has
    /// stopped.
    pub async fn restartable_copies(&self) -> Vec<(GameId, MemberId)> {
        self.ask_driver(crate::driver::ToDriver::Restartable).await
    }

    /// Everything this node's control plane knows of game `id` (its
    /// registration, whether it owns it and in which phase, copies held,
    /// sessions starting or stopping), as text for a person diagnosing a
    /// failed test. Empty once the node has stopped.
    pub async fn explain(&self, id: GameId) -> String {
        self.ask_driver(|reply| crate::driver::ToDriver::Explain { id, reply })
            .await
    }

    /// This node's members as its control plane sees them (status, link,
    /// when last heard from) and its links, as text for a person
    /// diagnosing a failed test. Empty once the node has stopped.
    pub async fn explain_members(&self) -> String {
        self.ask_driver(crate::driver::ToDriver::ExplainMembers)
            .await
    }

    /// Ids of the games this node owns that are passive: their session was
    /// stopped after [`NodeConfig::idle_after`] without a command, and the
    /// next command starts it again. Empty once the node has stopped.
    pub async fn passive(&self) -> Vec<GameId> {
        self.ask_driver(crate::driver::ToDriver::Passive).await
    }

    /// Asks the driver, with `ask`, for something it answers; the default
    /// once the node has stopped.
    async fn ask_driver<T: Default>(
        &self,
        ask: impl FnOnce(tokio::sync::oneshot::Sender<T>) -> crate::driver::ToDriver,
    ) -> T {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.plane.driver.send(ask(reply)).is_err() {
            return T::default();
        }
        answer.await.unwrap_or_default()
    }

    /// The ractor_cluster server of this node (for custom transports).
    pub fn node_server(&self) -> &ActorRef<NodeServerMessage> {
        &self.plane.server
    }

    /// Leaves gracefully: stops taking sessions, hands every session over to
    /// another member with its state, then stops. Commands arriving meanwhile
    /// are forwarded; callers see at most extra latency.
    ///
    /// The hand-over takes as long as it keeps moving games (about a
    /// thousand a second on a loaded machine); should six call timeouts
    /// pass with none moved, the node leaves anyway and the games left are
    /// failed over from their copies.
    pub async fn leave(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!(parent: &self.plane.span, "leaving the cluster");
        self.plane.leave().instrument(self.plane.span.clone()).await;
        self.stop_everything().await;
        tracing::info!(parent: self.span(), "node stopped");
    }

    /// Crashes the node: links cut, sessions gone, nothing handed over.
    pub async fn kill(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::warn!(parent: self.span(), "node killed");
        self.stop_everything().await;
    }

    async fn stop_everything(&self) {
        self.plane.stop(&self.router).await
    }
}

fn control_config(config: &NodeConfig) -> ControlConfig {
    ControlConfig {
        heartbeat_interval: config.heartbeat_interval,
        failure_timeout: config.failure_timeout,
        call_timeout: config.call_timeout,
        replication_factor: config.replication_factor,
        split: config.split,
        lease: config.lease,
        clock_drift: config.max_clock_drift,
        placement: config.placement.clone(),
        redistribution: config.redistribution,
        seeds: config.seeds.clone(),
        passivate: config.idle_after.is_some(),
        durable: config.data_dir.is_some(),
        ..ControlConfig::default()
    }
}

/// Starts the transport, the session host, the router and the driver, and
/// wires them together.
async fn start(config: NodeConfig, this: MemberId, span: tracing::Span) -> Result<Node, NodeError> {
    let fail = |what: &'static str, e: String| NodeError::Start {
        node: config.name.clone(),
        what,
        reason: e,
    };
    let (tx, inbox) = DriverTx::channel();
    // First, so that a store that cannot be used stops the node before it
    // listens.
    let (store, stored) = match &config.data_dir {
        Some(dir) => {
            let driver = tx.clone();
            let on_kept = Box::new(move |ids, ok| {
                let _ = driver.send(ToDriver::Input(Input::Persisted { ids, ok }));
            });
            let dir = dir.clone();
            let opened = tokio::task::spawn_blocking(move || Store::open(&dir, on_kept))
                .await
                .map_err(|e| fail("store", e.to_string()))?;
            let (store, stored) = opened.map_err(|error| NodeError::Store {
                node: config.name.clone(),
                error,
            })?;
            (Some(store), stored)
        }
        None => (None, Vec::new()),
    };
    let transport::Server {
        actor: server,
        port,
        tls_listener,
    } = transport::start_server(&config, &this)
        .await
        .map_err(|reason| NodeError::Bind {
            node: config.name.clone(),
            addr: config.listen_addr,
            reason,
        })?;
    // Before anything dials: a link that comes up before the subscription
    // would never be reported.
    let link_events = transport::subscribe(&server, &this);
    let addr = match &config.transport {
        Transport::Tcp => SocketAddr::new(config.listen_addr.ip(), port).to_string(),
        Transport::Custom { addr, .. } => addr.clone(),
    };
    let (host_tx, host_events) = mpsc::unbounded_channel();
    let view = Arc::new(ArcSwap::from_pointee(View {
        members: vec![(this.clone(), MemberStatus::Up)],
        routers: Default::default(),
        synced: true,
        unreplicated: 0,
        behind: 0,
        copies: 0,
        vote: Default::default(),
        fencing: config.split == crate::SplitPolicy::Majority,
        // Games recovered from the store wait for confirmation.
        confirming: !stored.is_empty(),
    }));
    let sink = Arc::new(ControlSink {
        driver: tx.clone(),
        factor: config.replication_factor,
        this: this.clone(),
        view: view.clone(),
        store: store.clone(),
    });
    let options = HostOptions {
        events: Some(host_tx),
        max_restarts: config.max_restarts,
        unique_join_codes: false,
        idle_after: config.idle_after,
        // The control decides: it owns where each game lives.
        on_idle: Some(Arc::new({
            let driver = tx.clone();
            move |id| {
                let _ = driver.send(ToDriver::Input(Input::Idle(id)));
            }
        })),
    };
    let local = LocalDirectory::start_with(Some(sink), options)
        .await
        .map_err(|e| fail("session host", e.to_string()))?;
    let (events, _) = broadcast::channel(4096);
    let tasks = Tasks::new(span.clone());
    let exchange = Arc::new(Exchange::new(this.clone(), tasks.clone()));
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
        exchange: exchange.clone(),
        store: store.clone(),
        span: span.clone(),
    });
    let (router, _) = Actor::spawn(Some(transport::router_name(&this)), Router, plane.clone())
        .await
        .map_err(|e| fail("router", e.to_string()))?;
    let mut control = Control::new(
        this.clone(),
        addr.clone(),
        control_config(&config),
        Duration::ZERO,
    );
    if !stored.is_empty() {
        tracing::info!(games = stored.len(), "recovering the games of the data dir");
        let games = stored.into_iter().map(|s| (s.reg, s.snapshot)).collect();
        control.handle(Duration::ZERO, Input::Recovered(games));
        // Readable before the node returns: a command may come at once.
        plane.registry.replace(control.registry().clone());
    }
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
        exchange,
        store,
    };
    tasks.spawn(driver.run());
    tasks.spawn(links::run_link_events(plane.clone(), link_events));
    tasks.spawn(links::poll_sessions(plane.clone()));
    if let (Some(listener), Some(tls)) = (tls_listener, config.tls.clone()) {
        let deadline = transport::handshake_deadline(&config);
        tasks.spawn(tls.accept_loop(listener, server.clone(), deadline, tasks.clone()));
    }
    tracing::info!(%addr, "node started");
    let directory = ClusterDirectory::new(plane.clone());
    let engine = GameEngine::new(Arc::new(directory), config.game.clone());
    Ok(Node {
        plane,
        router,
        engine,
        stopped: AtomicBool::new(false),
    })
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            self.plane.tasks.cancel();
            self.router.stop(None);
            transport::kill_tree(&self.node_server().get_cell());
        }
    }
}

//! `Node`: one cluster member. Starts the transport, the router, the session
//! host and the background tasks; leaves gracefully or is killed.

use crate::config::{NodeConfig, Transport};
use crate::directory::ClusterDirectory;
use crate::links;
use crate::membership::{ClusterEvent, MemberId, MemberStatus, Membership};
use crate::protocol::{Notice, RouterMsg};
use crate::registry::Registry;
use crate::replication::{Owned, Replicas, ReplicationSink};
use crate::router::Router;
use crate::tasks::{Calls, Tasks};
use crate::{handoff, rpc, supervisor};
use minotaur_core::{GameEngine, GameId, LocalDirectory};
use ractor::{Actor, ActorRef, RpcReplyPort};
use ractor_cluster::NodeServerMessage;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
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

/// State shared by a node's router, directory and background tasks.
pub(crate) struct Shared {
    pub this: MemberId,
    pub config: NodeConfig,
    pub addr: String,
    pub members: Membership,
    pub registry: Registry,
    pub replicas: Replicas,
    pub owned: Owned,
    pub sink: ReplicationSink,
    pub local: LocalDirectory,
    pub server: ActorRef<NodeServerMessage>,
    /// Games being handed over, with the remote requests waiting for them.
    pub moving: Mutex<HashMap<GameId, Vec<RpcReplyPort<Vec<u8>>>>>,
    /// Games recently handed over, and to whom.
    pub moved: Mutex<HashMap<GameId, (MemberId, Instant)>>,
    pub leaving: AtomicBool,
    /// Whether a periodic backup sweep is running (see `links::run_ticker`).
    pub sweeping: AtomicBool,
    pub span: tracing::Span,
    /// When each address was last dialled, to pace reconnects.
    pub dialed: Mutex<HashMap<String, Instant>>,
    /// Members whose registrations this node has received in full.
    pub synced: Mutex<std::collections::HashSet<MemberId>>,
    /// Every background task of the node.
    pub tasks: Tasks,
    /// Engine calls in flight through this node.
    pub calls: Arc<Calls>,
}

impl Shared {
    pub fn is_leaving(&self) -> bool {
        self.leaving.load(Ordering::SeqCst)
    }

    pub fn moved_to(&self, id: GameId) -> Option<MemberId> {
        lock(&self.moved).get(&id).map(|(to, _)| to.clone())
    }

    /// Whether the registry holds every live member's registrations: until
    /// then a missing game may simply not have arrived yet.
    pub fn is_synced(&self) -> bool {
        let synced = lock(&self.synced);
        self.members
            .live()
            .iter()
            .all(|m| m == &self.this || synced.contains(m))
    }

    pub fn is_moving(&self, id: GameId) -> bool {
        lock(&self.moving).contains_key(&id)
    }
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// its map consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
/// n2.shutdown().await; // hands its sessions to n1
/// # Ok(()) }
/// ```
pub struct Node {
    inner: Inner,
    router: ActorRef<RouterMsg>,
    engine: GameEngine,
    stopped: AtomicBool,
}

/// Which control plane runs the node.
enum Inner {
    /// The modules around one shared state.
    Modules(Arc<Shared>),
    /// The control state machine and its driver.
    Control(Arc<crate::plane::Plane>),
}

impl Node {
    /// Starts a node and begins joining through its seeds. Membership
    /// converges in the background; watch [`Node::members`] or
    /// [`Node::subscribe`].
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let incarnation: u64 = rand::random();
        let this = MemberId::new(config.name.clone(), incarnation);
        let span = tracing::info_span!("node", node = %config.name, node_id = %this);
        if config.control_plane == crate::config::ControlPlane::StateMachine {
            if let Err(reason) = config.validate() {
                return Err(NodeError::Config {
                    node: config.name.clone(),
                    reason,
                });
            }
            let started = crate::plane::start(config, this, span.clone())
                .instrument(span)
                .await?;
            return Ok(Node {
                inner: Inner::Control(started.plane),
                router: started.router,
                engine: started.engine,
                stopped: AtomicBool::new(false),
            });
        }
        Self::start_in(config, this, span.clone())
            .instrument(span)
            .await
    }

    async fn start_in(
        config: NodeConfig,
        this: MemberId,
        span: tracing::Span,
    ) -> Result<Node, NodeError> {
        let name = config.name.clone();
        let fail = |what: &'static str, e: String| NodeError::Start {
            node: name.clone(),
            what,
            reason: e,
        };
        if let Err(reason) = config.validate() {
            return Err(NodeError::Config {
                node: config.name.clone(),
                reason,
            });
        }
        if config.allow_weak_cookie && config.validate_cookie_strength().is_err() {
            tracing::warn!("running with a weak cluster cookie (development flag set)");
        }
        let links::Server {
            actor: server,
            port,
            tls_listener,
        } = links::start_server(&config, &this).await?;
        let addr = match &config.transport {
            Transport::Tcp => SocketAddr::new(config.listen_addr.ip(), port).to_string(),
            Transport::Custom { addr, .. } => addr.clone(),
        };
        let members = Membership::new(this.clone(), addr.clone());
        let registry = Registry::default();
        let owned = Owned::default();
        let sink = ReplicationSink {
            members: members.clone(),
            registry: registry.clone(),
            owned: owned.clone(),
            factor: config.replication_factor,
            timeout: config.call_timeout,
        };
        let (host_tx, host_rx) = tokio::sync::mpsc::unbounded_channel();
        let local = LocalDirectory::start_with(
            Some(Arc::new(sink.clone())),
            Some(host_tx),
            config.max_restarts,
            false,
        )
        .await
        .map_err(|e| fail("session host", e.to_string()))?;

        let shared = Arc::new(Shared {
            this: this.clone(),
            config,
            addr,
            members,
            registry,
            replicas: Replicas::default(),
            owned,
            sink,
            local,
            server: server.clone(),
            moving: Mutex::new(HashMap::new()),
            moved: Mutex::new(HashMap::new()),
            leaving: AtomicBool::new(false),
            sweeping: AtomicBool::new(false),
            span: span.clone(),
            dialed: Mutex::new(HashMap::new()),
            synced: Mutex::new(std::collections::HashSet::new()),
            tasks: Tasks::new(span.clone()),
            calls: Arc::default(),
        });
        let (router, _) = Actor::spawn(
            Some(crate::router::router_name(&this)),
            Router,
            shared.clone(),
        )
        .await
        .map_err(|e| fail("router", e.to_string()))?;

        let link_events = links::subscribe(&server, &this);
        let tasks = &shared.tasks;
        tasks.spawn(links::run_link_events(shared.clone(), link_events));
        tasks.spawn(links::run_ticker(shared.clone()));
        tasks.spawn(supervisor::run_host_events(shared.clone(), host_rx));
        if let (Some(listener), Some(tls)) = (tls_listener, shared.config.tls.clone()) {
            let deadline = links::handshake_deadline(&shared.config);
            tasks.spawn(tls.accept_loop(listener, server.clone(), deadline, tasks.clone()));
        }
        for seed in shared.config.seeds.clone() {
            links::dial(&shared, &seed).await;
        }
        tracing::info!(addr = %shared.addr, "node started");
        let directory = ClusterDirectory::new(shared.clone());
        let engine = GameEngine::new(Arc::new(directory), shared.config.game.clone());
        Ok(Node {
            inner: Inner::Modules(shared),
            router,
            engine,
            stopped: AtomicBool::new(false),
        })
    }

    /// The game API, location-transparent across the cluster.
    pub fn engine(&self) -> &GameEngine {
        &self.engine
    }

    /// This member's id.
    pub fn id(&self) -> &MemberId {
        match &self.inner {
            Inner::Modules(shared) => &shared.this,
            Inner::Control(plane) => &plane.this,
        }
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.id().name
    }

    /// Where peers reach this node (for TCP, the bound address).
    pub fn addr(&self) -> &str {
        match &self.inner {
            Inner::Modules(shared) => &shared.addr,
            Inner::Control(plane) => &plane.addr,
        }
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        match &self.inner {
            Inner::Modules(shared) => &shared.config,
            Inner::Control(plane) => &plane.config,
        }
    }

    fn span(&self) -> &tracing::Span {
        match &self.inner {
            Inner::Modules(shared) => &shared.span,
            Inner::Control(plane) => &plane.span,
        }
    }

    /// Members as this node sees them.
    pub fn members(&self) -> Vec<(MemberId, MemberStatus)> {
        match &self.inner {
            Inner::Modules(shared) => shared.members.all(),
            Inner::Control(plane) => plane.members(),
        }
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
        match &self.inner {
            Inner::Modules(shared) => shared.is_synced(),
            Inner::Control(plane) => plane.view.load().synced,
        }
    }

    /// Subscribes to membership, failover and conflict events.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        match &self.inner {
            Inner::Modules(shared) => shared.members.subscribe(),
            Inner::Control(plane) => plane.events.subscribe(),
        }
    }

    /// This node's copy of the registry (listing, counting, lookups).
    pub fn registry(&self) -> &Registry {
        match &self.inner {
            Inner::Modules(shared) => &shared.registry,
            Inner::Control(plane) => &plane.registry,
        }
    }

    /// Ids of the sessions running on this node.
    pub fn hosted(&self) -> Vec<GameId> {
        match &self.inner {
            Inner::Modules(shared) => shared.local.sessions().ids(),
            Inner::Control(plane) => plane.local.sessions().ids(),
        }
    }

    /// Number of backup copies this node holds for other members.
    pub fn replicas_held(&self) -> usize {
        match &self.inner {
            Inner::Modules(shared) => shared.replicas.len(),
            Inner::Control(plane) => plane.view.load().copies,
        }
    }

    /// Games hosted here whose state is not copied to a backup member that
    /// is up: 0 once re-replication has caught up after a membership change
    /// (always 0 with replication off, or with no other member up). Until
    /// then, a crash of this node loses those games.
    pub fn unreplicated(&self) -> usize {
        let shared = match &self.inner {
            Inner::Modules(shared) => shared,
            Inner::Control(plane) => return plane.view.load().unreplicated,
        };
        if shared.config.replication_factor == 0 {
            return 0;
        }
        let up = shared.members.up();
        if up.len() <= 1 {
            return 0;
        }
        shared
            .owned
            .lock()
            .values()
            .filter(|o| !o.backup.as_ref().is_some_and(|b| up.contains(b)))
            .count()
    }

    /// The ractor_cluster server of this node (for custom transports).
    pub fn node_server(&self) -> &ActorRef<NodeServerMessage> {
        match &self.inner {
            Inner::Modules(shared) => &shared.server,
            Inner::Control(plane) => &plane.server,
        }
    }

    /// Leaves gracefully: stops taking sessions, hands every session over to
    /// another member with its state, then stops. Commands arriving meanwhile
    /// are forwarded; callers see at most extra latency.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        match &self.inner {
            Inner::Modules(shared) => leave(shared.clone()).instrument(shared.span.clone()).await,
            Inner::Control(plane) => {
                tracing::info!(parent: &plane.span, "leaving the cluster");
                plane.leave().instrument(plane.span.clone()).await
            }
        }
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
        let shared = match &self.inner {
            Inner::Modules(shared) => shared,
            Inner::Control(plane) => return plane.stop(&self.router).await,
        };
        shared.calls.close();
        // The transport goes first: killing (not stopping) it releases the
        // listener's port and closes every link at once, so peers see the
        // node gone immediately, whatever is left to stop here. Children
        // first: ractor does not stop an actor's children with it.
        let server = shared.server.get_cell();
        for cell in kill_tree(&server) {
            let _ = cell.wait(Some(Duration::from_secs(2))).await;
        }
        if !shared.tasks.stop(Duration::from_secs(2)).await {
            tracing::error!(parent: &shared.span, tasks = shared.tasks.len(),
                "background tasks did not end within 2 s");
        }
        self.router.stop(None);
        shared.local.shutdown().await;
        let _ = self
            .router
            .get_cell()
            .wait(Some(Duration::from_secs(2)))
            .await;
    }
}

/// A graceful leave of a node on the modules' control plane.
async fn leave(shared: Arc<Shared>) {
    tracing::info!("leaving the cluster");
    shared.leaving.store(true, Ordering::SeqCst);
    shared.members.set_leaving(&shared.this);
    rpc::broadcast(
        &shared.members,
        &Notice::Leaving {
            from: shared.this.clone(),
        },
    );
    handoff::drain(&shared).await;
    // Calls made through this node's engine may be following games that
    // just moved: let them finish while the links are up.
    shared.calls.close();
    if !shared.calls.idle(shared.config.call_timeout).await {
        tracing::warn!(
            "engine calls still in flight after {:?}; leaving anyway",
            shared.config.call_timeout
        );
    }
    rpc::broadcast(
        &shared.members,
        &Notice::Bye {
            from: shared.this.clone(),
        },
    );
    // Let the farewell reach the peers before the links close.
    tokio::time::sleep(Duration::from_millis(20)).await;
}

/// Kills `cell` and all its descendants, leaves first; returns them all.
pub(crate) fn kill_tree(cell: &ractor::ActorCell) -> Vec<ractor::ActorCell> {
    let mut killed = Vec::new();
    for child in cell.get_children() {
        killed.extend(kill_tree(&child));
    }
    cell.kill();
    killed.push(cell.clone());
    killed
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            match &self.inner {
                Inner::Modules(shared) => shared.tasks.cancel(),
                Inner::Control(plane) => plane.tasks.cancel(),
            }
            self.router.stop(None);
            kill_tree(&self.node_server().get_cell());
        }
    }
}

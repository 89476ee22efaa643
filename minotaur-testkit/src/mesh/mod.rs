//! `RactorMesh`: plain ractor_cluster nodes inside one test process, for
//! testing any ractor_cluster application (your own remotable actors, no
//! Minotaur games) through partitions, stalls, latency, kills and restarts.
//!
//! Each node is one `NodeServer` with its own name, the mesh's cookie, its
//! own tracing span (so its log lines are captured apart, and printed when
//! the test fails) and the actors its start hook spawned. Nodes are linked
//! over the in-memory network (faults can be injected) or loopback TCP, all
//! to all or only where the test links them.
//!
//! ```
//! use minotaur_testkit::mesh::{NodeCtx, RactorMesh};
//! use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
//! use ractor_cluster::RactorClusterMessage;
//! use std::time::Duration;
//!
//! // Your own remotable actor.
//! struct Echo;
//! #[derive(RactorClusterMessage)]
//! enum EchoMsg {
//!     #[rpc]
//!     Say(String, RpcReplyPort<String>),
//! }
//! impl Actor for Echo {
//!     type Msg = EchoMsg;
//!     type State = ();
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<EchoMsg>, _: ()) -> Result<(), ActorProcessingErr> {
//!         Ok(())
//!     }
//!     async fn handle(&self, _: ActorRef<EchoMsg>, msg: EchoMsg, _: &mut ()) -> Result<(), ActorProcessingErr> {
//!         let EchoMsg::Say(text, reply) = msg;
//!         let _ = reply.send(text);
//!         Ok(())
//!     }
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mesh = RactorMesh::builder()
//!     .nodes(3)
//!     .in_memory()
//!     .on_start(|node: NodeCtx| async move {
//!         node.spawn("echo", Echo, ()).await?;
//!         Ok(())
//!     })
//!     .start()
//!     .await?;
//! // n1 calls n3's echo through its own link to n3.
//! let echo = mesh.remote::<EchoMsg>("n1", "n3", "echo").await?;
//! let said = ractor::call_t!(echo, EchoMsg::Say, 1_000, "hi".to_string())?;
//! assert_eq!(said, "hi");
//!
//! // Cut n3 off: the call times out, and works again once healed.
//! mesh.partition(&["n1", "n2"], &["n3"])?;
//! assert!(ractor::call_t!(echo, EchoMsg::Say, 200, "lost".to_string()).is_err());
//! mesh.heal()?;
//! let said = ractor::call_t!(echo, EchoMsg::Say, 1_000, "back".to_string())?;
//! assert_eq!(said, "back");
//!
//! // Kill n3: n1's link to it closes; a restarted n3 is linked again.
//! mesh.kill_node("n3").await?;
//! mesh.eventually("n1 to lose n3", Duration::from_secs(5), || {
//!     let peers = mesh.peers("n1");
//!     async move { match peers.await { Ok(p) if !p.contains(&"n3".to_string()) => Ok(()), other => Err(format!("{other:?}")) } }
//! }).await?;
//! mesh.add_node("n3").await?; // started again, and linked to every node
//! let echo = mesh.remote::<EchoMsg>("n1", "n3", "echo").await?;
//! assert_eq!(ractor::call_t!(echo, EchoMsg::Say, 1_000, "again".to_string())?, "again");
//! mesh.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What is isolated per node, and what is not
//!
//! Per node: its `NodeServer` and links, its name, its log lines, and the
//! actors its hook spawned (killed with it). Shared by every node of the
//! process: ractor's named registry and its process groups (`pg`), which are
//! process-global. So two nodes cannot both register an actor named "kv"
//! (the second start fails with [`MeshError::NameTaken`]); and since
//! ractor_cluster advertises every remotable actor of the process to every
//! peer, `ractor::registry::where_is` and `pg` members do not tell you which
//! node an actor is on. What works: spawn with [`NodeCtx::spawn`], which
//! names each actor uniquely per node and mesh, and look a peer's actor up
//! through the link to that peer with [`RactorMesh::remote`] (the stubs
//! ractor_cluster makes for a peer's actors are children of the session to
//! that peer). A test that needs `pg` or the named registry to mean "this
//! node" needs one process per node.

mod ctx;
mod error;
mod server;

pub use ctx::NodeCtx;
pub use error::MeshError;

use crate::fabric::{lock, rand_u128, Fabric, LinkKind};
use crate::logs;
use crate::wait::eventually;
use ctx::{actor_name, holder_of, Spawned};
use futures::future::BoxFuture;
use minotaur_cluster::Connector;
use ractor::{ActorCell, ActorRef, Message};
use ractor_cluster::NodeServerMessage;
use server::{kill_tree, sessions, start_server};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::Instrument;

/// How long a mesh waits for links and lookups by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Which nodes a mesh links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// Every node to every other, including nodes added or restarted later.
    Full,
    /// Only what the test links with [`RactorMesh::link`].
    Manual,
}

type StartHook = Arc<dyn Fn(NodeCtx) -> BoxFuture<'static, Result<(), MeshError>> + Send + Sync>;

/// Builds a [`RactorMesh`].
pub struct MeshBuilder {
    names: Vec<String>,
    cookie: Option<String>,
    cookies: BTreeMap<String, String>,
    link: LinkKind,
    topology: Topology,
    hook: Option<StartHook>,
    wait: Duration,
}

impl MeshBuilder {
    /// `n` nodes named `n1` ... `nN` (default: one).
    pub fn nodes(mut self, n: usize) -> Self {
        self.names = (1..=n).map(|i| format!("n{i}")).collect();
        self
    }

    /// Nodes with these names, started (and, in a full mesh, linked) in
    /// this order.
    pub fn names(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Links nodes in memory, so faults can be injected (default: TCP).
    pub fn in_memory(mut self) -> Self {
        self.link = LinkKind::Memory;
        self
    }

    /// The cookie every node authenticates with (default: random per
    /// mesh, so meshes running in parallel never link).
    pub fn cookie(mut self, cookie: &str) -> Self {
        self.cookie = Some(cookie.to_string());
        self
    }

    /// A cookie of its own for node `name` (to test that a node with the
    /// wrong cookie is refused, say), whenever it starts.
    pub fn node_cookie(mut self, name: &str, cookie: &str) -> Self {
        self.cookies.insert(name.to_string(), cookie.to_string());
        self
    }

    /// Which nodes to link (default: all to all).
    pub fn topology(mut self, topology: Topology) -> Self {
        self.topology = topology;
        self
    }

    /// Runs `hook` on every node as it starts (the initial nodes and every
    /// node added or restarted later), before it is linked: spawn the
    /// node's actors here, with [`NodeCtx::spawn`].
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(NodeCtx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), MeshError>> + Send + 'static,
    {
        self.hook = Some(Arc::new(move |ctx| Box::pin(hook(ctx))));
        self
    }

    /// How long links and lookups are waited for (default 10 s).
    pub fn wait(mut self, timeout: Duration) -> Self {
        self.wait = timeout;
        self
    }

    /// Starts every node, links them, and waits until every link is up.
    pub async fn start(self) -> Result<RactorMesh, MeshError> {
        let mut fabric = Fabric::new(self.link);
        if let Some(cookie) = self.cookie {
            fabric.cookie = cookie;
        }
        let mesh = RactorMesh {
            fabric,
            cookies: self.cookies,
            id: rand_u128() as u64,
            topology: self.topology,
            hook: self.hook,
            wait: self.wait,
            nodes: Mutex::new(BTreeMap::new()),
            spawned: Arc::default(),
        };
        for name in &self.names {
            if let Err(e) = mesh.add_node(name).await {
                // Nothing of a mesh that did not start stays registered.
                mesh.kill_all().await;
                return Err(e);
            }
        }
        Ok(mesh)
    }
}

struct MeshNode {
    server: ActorRef<NodeServerMessage>,
    /// Where peers dial it.
    addr: String,
    /// Its tracing span, and the span's `node_id` its lines are kept under.
    span: tracing::Span,
    log_id: String,
}

/// A running mesh of plain ractor_cluster nodes. Dropping it kills every
/// node; dropped during a panic, or without [`RactorMesh::shutdown`], it
/// prints every node's captured log lines.
pub struct RactorMesh {
    fabric: Fabric,
    /// Nodes with a cookie of their own.
    cookies: BTreeMap<String, String>,
    /// Makes actor names unique per mesh.
    id: u64,
    topology: Topology,
    hook: Option<StartHook>,
    wait: Duration,
    nodes: Mutex<BTreeMap<String, MeshNode>>,
    spawned: Spawned,
}

impl RactorMesh {
    /// A builder: `RactorMesh::builder().nodes(3).start().await?`.
    pub fn builder() -> MeshBuilder {
        MeshBuilder {
            names: vec!["n1".into()],
            cookie: None,
            cookies: BTreeMap::new(),
            link: LinkKind::Tcp,
            topology: Topology::Full,
            hook: None,
            wait: DEFAULT_WAIT,
        }
    }

    /// Names of the running nodes.
    pub fn nodes(&self) -> Vec<String> {
        lock(&self.nodes).keys().cloned().collect()
    }

    /// Node `name`'s `NodeServer`.
    pub fn server(&self, name: &str) -> Result<ActorRef<NodeServerMessage>, MeshError> {
        lock(&self.nodes)
            .get(name)
            .map(|n| n.server.clone())
            .ok_or_else(|| MeshError::UnknownNode(name.to_string()))
    }

    /// Where node `name` is dialled: `127.0.0.1:port` over TCP, a
    /// `mem://` address in memory.
    pub fn addr(&self, name: &str) -> Result<String, MeshError> {
        lock(&self.nodes)
            .get(name)
            .map(|n| n.addr.clone())
            .ok_or_else(|| MeshError::UnknownNode(name.to_string()))
    }

    /// The actors node `name`'s hook spawned.
    pub fn actors(&self, name: &str) -> Result<Vec<ActorCell>, MeshError> {
        self.server(name)?;
        Ok(lock(&self.spawned).get(name).cloned().unwrap_or_default())
    }

    /// The registered name of the actor `base` spawned on `node` with
    /// [`NodeCtx::spawn`].
    pub fn actor_name(&self, node: &str, base: &str) -> String {
        actor_name(self.id, node, base)
    }

    /// Node `name`'s own actor `base` (spawned with [`NodeCtx::spawn`]).
    pub fn local<M: Message>(&self, name: &str, base: &str) -> Result<ActorRef<M>, MeshError> {
        let wanted = self.actor_name(name, base);
        self.actors(name)?
            .into_iter()
            .find(|c| c.get_name().as_deref() == Some(wanted.as_str()))
            .map(ActorRef::from)
            .ok_or_else(|| MeshError::Hook {
                node: name.to_string(),
                reason: format!("spawned no actor {base:?}"),
            })
    }

    /// Node `of`'s actor `base` (spawned with [`NodeCtx::spawn`]) as node
    /// `on` reaches it: the stub of its link to `of`. Waits for the link
    /// and for `of` to advertise the actor.
    pub async fn remote<M: Message>(
        &self,
        on: &str,
        of: &str,
        base: &str,
    ) -> Result<ActorRef<M>, MeshError> {
        let name = self.actor_name(of, base);
        self.remote_named(on, of, &name).await
    }

    /// [`RactorMesh::remote`] for an actor registered under exactly `name`.
    pub async fn remote_named<M: Message>(
        &self,
        on: &str,
        of: &str,
        name: &str,
    ) -> Result<ActorRef<M>, MeshError> {
        let server = self.server(on)?;
        let what = format!("{on} to see {of}'s actor {name:?}");
        let cell = eventually(&what, self.wait, || {
            let server = server.clone();
            async move {
                let sessions = sessions(&server).await?;
                let session = sessions
                    .get(of)
                    .ok_or_else(|| format!("{on} has no link to {of}"))?;
                session
                    .get_cell()
                    .get_children()
                    .into_iter()
                    .find(|c| !c.get_id().is_local() && c.get_name().as_deref() == Some(name))
                    .ok_or_else(|| format!("{on} is linked to {of}, which has not advertised it"))
            }
        })
        .await?;
        Ok(ActorRef::from(cell))
    }

    /// The nodes node `name` has an authenticated link to.
    pub async fn peers(&self, name: &str) -> Result<Vec<String>, MeshError> {
        let server = self.server(name)?;
        let sessions = sessions(&server).await.map_err(|reason| MeshError::Link {
            from: name.to_string(),
            to: String::new(),
            reason,
        })?;
        Ok(sessions.into_keys().collect())
    }

    /// Starts node `name`, runs the start hook on it, and (in a full mesh)
    /// links it to every running node, waiting until each link is up. A
    /// node whose start fails is killed again.
    pub async fn add_node(&self, name: &str) -> Result<(), MeshError> {
        if lock(&self.nodes).contains_key(name) {
            return Err(MeshError::DuplicateNode(name.to_string()));
        }
        let log_id = format!("{name}.{:016x}", rand_u128() as u64);
        let span = tracing::info_span!("node", node = %name, node_id = %log_id);
        let cookie = self.cookies.get(name).unwrap_or(&self.fabric.cookie);
        let server = start_server(name, cookie)
            .instrument(span.clone())
            .await
            .map_err(|reason| MeshError::Server {
                node: name.to_string(),
                reason,
            })?;
        self.fabric.started(name, &log_id);
        let addr = match self.fabric.link {
            LinkKind::Memory => {
                let addr = format!("mem://{name}/{log_id}");
                self.fabric
                    .network
                    .attach(&addr, name, server.actor.clone());
                addr
            }
            LinkKind::Tcp => format!("127.0.0.1:{}", server.port),
        };
        let others = self.nodes();
        lock(&self.nodes).insert(
            name.to_string(),
            MeshNode {
                server: server.actor.clone(),
                addr,
                span: span.clone(),
                log_id: log_id.clone(),
            },
        );
        if let Some(hook) = &self.hook {
            let ctx = NodeCtx {
                name: name.to_string(),
                mesh: self.id,
                server: server.actor.clone(),
                spawned: self.spawned.clone(),
            };
            if let Err(e) = hook(ctx).instrument(span).await {
                self.kill_node(name).await?;
                return Err(match e {
                    // (Raised by a plain `Actor::spawn` in the hook.)
                    MeshError::NameTaken { name: n, .. } => {
                        let holder = ractor::registry::where_is(n.clone())
                            .and_then(|cell| holder_of(&self.spawned, &cell));
                        MeshError::NameTaken {
                            node: name.to_string(),
                            name: n,
                            holder,
                        }
                    }
                    e => e,
                });
            }
        }
        if self.topology == Topology::Full {
            for other in others {
                if let Err(e) = self.link(name, &other).await {
                    self.kill_node(name).await?;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Links node `from` to node `to` (`from` dials), and waits until both
    /// see the link authenticated.
    pub async fn link(&self, from: &str, to: &str) -> Result<(), MeshError> {
        let (server, span) = {
            let nodes = lock(&self.nodes);
            let node = nodes
                .get(from)
                .ok_or_else(|| MeshError::UnknownNode(from.to_string()))?;
            (node.server.clone(), node.span.clone())
        };
        let target = lock(&self.nodes)
            .get(to)
            .map(|n| (n.addr.clone(), n.server.clone()))
            .ok_or_else(|| MeshError::UnknownNode(to.to_string()))?;
        let failed = |reason: String| MeshError::Link {
            from: from.to_string(),
            to: to.to_string(),
            reason,
        };
        let dialled = async {
            match self.fabric.link {
                LinkKind::Memory => {
                    let stream = self.fabric.network.connect(from, &target.0).await?;
                    ractor_cluster::client_connect_external(&server, stream)
                        .await
                        .map_err(|e| e.to_string())
                }
                LinkKind::Tcp => ractor_cluster::client_connect(&server, target.0.as_str())
                    .await
                    .map_err(|e| e.to_string()),
            }
        };
        dialled.instrument(span).await.map_err(failed)?;
        let what = format!("the link {from} -> {to} to be up at both ends");
        eventually(&what, self.wait, || {
            let (a, b) = (server.clone(), target.1.clone());
            async move {
                let (ours, theirs) = (sessions(&a).await?, sessions(&b).await?);
                if ours.contains_key(to) && theirs.contains_key(from) {
                    Ok(())
                } else {
                    Err(format!(
                        "{from} is linked to {:?}, {to} to {:?}",
                        ours.keys().collect::<Vec<_>>(),
                        theirs.keys().collect::<Vec<_>>()
                    ))
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Crashes node `name`: its links cut, its hook's actors and its
    /// `NodeServer` stopped (and waited for).
    pub async fn kill_node(&self, name: &str) -> Result<(), MeshError> {
        let node = lock(&self.nodes)
            .remove(name)
            .ok_or_else(|| MeshError::UnknownNode(name.to_string()))?;
        if self.fabric.link == LinkKind::Memory {
            self.fabric.network.detach(&node.addr, name);
        }
        let actors = lock(&self.spawned).remove(name).unwrap_or_default();
        let mut stopped = Vec::new();
        for cell in actors
            .iter()
            .chain(std::iter::once(&node.server.get_cell()))
        {
            stopped.extend(kill_tree(cell));
        }
        for cell in stopped {
            let _ = cell.wait(Some(Duration::from_secs(2))).await;
        }
        Ok(())
    }

    /// Kills node `name` and starts a new one of the same name (the hook
    /// runs again; in a full mesh it is linked to every running node). A
    /// node killed earlier comes back with [`RactorMesh::add_node`].
    pub async fn restart_node(&self, name: &str) -> Result<(), MeshError> {
        self.kill_node(name).await?;
        self.add_node(name).await
    }

    /// Cuts the mesh into two groups: bytes between them are held (no EOF).
    pub fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), MeshError> {
        Ok(self.fabric.partition(a, b)?)
    }

    /// Holds bytes from `from` to `to` only.
    pub fn cut_one_way(&self, from: &str, to: &str) -> Result<(), MeshError> {
        Ok(self.fabric.cut_one_way(from, to)?)
    }

    /// Silently stalls the link between `a` and `b`, both ways.
    pub fn stall(&self, a: &str, b: &str) -> Result<(), MeshError> {
        Ok(self.fabric.stall(a, b)?)
    }

    /// Adds latency to bytes from `from` to `to`.
    pub fn set_latency(&self, from: &str, to: &str, latency: Duration) -> Result<(), MeshError> {
        Ok(self.fabric.set_latency(from, to, latency)?)
    }

    /// Removes every fault; held bytes flow again.
    pub fn heal(&self) -> Result<(), MeshError> {
        Ok(self.fabric.heal()?)
    }

    /// Waits until `probe` succeeds, up to `timeout`; the error says what the
    /// probe last saw.
    pub async fn eventually<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        probe: F,
    ) -> Result<T, MeshError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        Ok(eventually(what, timeout, probe).await?)
    }

    /// The captured log lines of node `name` (of its latest start).
    pub fn logs(&self, name: &str) -> Result<Vec<String>, MeshError> {
        let id = lock(&self.nodes)
            .get(name)
            .map(|n| n.log_id.clone())
            .ok_or_else(|| MeshError::UnknownNode(name.to_string()))?;
        Ok(logs::lines(&id))
    }

    /// Kills every node and waits until their actors and servers are gone.
    pub async fn shutdown(mut self) {
        self.fabric.shut_down = true;
        self.kill_all().await;
    }

    async fn kill_all(&self) {
        for name in self.nodes() {
            let _ = self.kill_node(&name).await;
        }
    }
}

impl Drop for RactorMesh {
    fn drop(&mut self) {
        self.fabric.dump_if_failing();
        let nodes = std::mem::take(&mut *lock(&self.nodes));
        for cells in std::mem::take(&mut *lock(&self.spawned)).into_values() {
            for cell in cells {
                kill_tree(&cell);
            }
        }
        for node in nodes.into_values() {
            kill_tree(&node.server.get_cell());
        }
    }
}

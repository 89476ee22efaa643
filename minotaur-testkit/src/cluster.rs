//! `TestCluster`: several real Minotaur nodes inside one test process.
//!
//! Each node gets its own [`NodeConfig`] (built here, overridable per node),
//! its own OS-chosen port, and its own log capture. The test process only
//! holds handles: it is never a member, so no session is ever placed on it.
//! Links, faults, the cookie and the log dump come from the layer every
//! in-process cluster shares (`fabric`).

use crate::fabric::{lock, rand_u128, Fabric, LinkKind, NeedsMemoryLink};
use crate::logs;
use crate::wait::{eventually, WaitError};
use futures::future::BoxFuture;
use minotaur_cluster::{MemberStatus, Node, NodeConfig, NodeError, Transport};
use minotaur_core::{GameEngine, GameId};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long [`TestCluster`] waits for membership to converge by default.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Errors of cluster operations.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A node could not start (e.g. its fixed port was taken).
    #[error(transparent)]
    Node(#[from] NodeError),
    /// No node of that name is running.
    #[error("no running node is named {0:?}")]
    UnknownNode(String),
    /// A node of that name is already running.
    #[error("a node named {0:?} is already running")]
    DuplicateNode(String),
    /// A bounded wait ran out.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// A per-node service failed to start.
    #[error("service of node {node} failed: {reason}")]
    Service {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The nodes' data dirs could not be created.
    #[error("cannot create the nodes' data dirs: {0}")]
    DataDir(String),
    /// Fault injection needs the in-memory network.
    #[error(transparent)]
    NeedsMemoryLink(#[from] NeedsMemoryLink),
}

type Configure = Arc<dyn Fn(&str, &mut NodeConfig) + Send + Sync>;
/// Something a service hook started; dropped when its node stops.
pub type ServiceGuard = Box<dyn std::any::Any + Send + Sync>;
type ServiceHook =
    Arc<dyn Fn(Arc<Node>) -> BoxFuture<'static, Result<ServiceGuard, String>> + Send + Sync>;

/// Builds a [`TestCluster`].
pub struct Builder {
    names: Vec<String>,
    link: LinkKind,
    configure: Option<Configure>,
    service: Option<ServiceHook>,
    wait: Duration,
    durable: bool,
}

impl Builder {
    /// `n` nodes named `n1` ... `nN`.
    pub fn nodes(mut self, n: usize) -> Self {
        self.names = (1..=n).map(|i| format!("n{i}")).collect();
        self
    }

    /// Nodes with these names.
    pub fn names(mut self, names: &[&str]) -> Self {
        self.names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Links nodes in memory, so faults can be injected (default: TCP).
    pub fn in_memory(mut self) -> Self {
        self.link = LinkKind::Memory;
        self
    }

    /// Adjusts each node's configuration; called with the node's name, for
    /// the initial nodes and for every node added or restarted later.
    pub fn configure(mut self, f: impl Fn(&str, &mut NodeConfig) + Send + Sync + 'static) -> Self {
        self.configure = Some(Arc::new(f));
        self
    }

    /// Starts an extra service next to every node (an HTTP endpoint, say),
    /// with the node's own handle and config. What it returns is kept until
    /// the node stops. Off unless given.
    pub fn service<F, Fut>(mut self, hook: F) -> Self
    where
        F: Fn(Arc<Node>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ServiceGuard, String>> + Send + 'static,
    {
        self.service = Some(Arc::new(move |node| Box::pin(hook(node))));
        self
    }

    /// Gives every node a durable store: a data dir of its own, under a
    /// temporary directory the cluster removes when dropped. A node
    /// started again under the same name (after [`TestCluster::kill_node`]
    /// or [`TestCluster::kill_all`]) finds its games there.
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// How long to wait for membership to converge (default 10 s).
    pub fn wait(mut self, timeout: Duration) -> Self {
        self.wait = timeout;
        self
    }

    /// Starts every node and waits until each sees all the others.
    pub async fn start(self) -> Result<TestCluster, ClusterError> {
        let data = match self.durable {
            true => Some(tempfile::tempdir().map_err(|e| ClusterError::DataDir(e.to_string()))?),
            false => None,
        };
        let cluster = TestCluster {
            data,
            fabric: Fabric::new(self.link),
            configure: self.configure,
            service: self.service,
            wait: self.wait,
            nodes: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(BTreeMap::new()),
        };
        for name in &self.names {
            cluster.launch(name).await?;
        }
        Ok(cluster)
    }
}

struct Running {
    node: Arc<Node>,
    _service: Option<ServiceGuard>,
}

/// A running test cluster. Dropping it kills every node; dropping it
/// during a panic, or without [`TestCluster::shutdown`] (a test that
/// returned an error), prints every node's captured log lines.
///
/// ```
/// use minotaur_testkit::TestCluster;
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = TestCluster::builder().nodes(2).start().await?;
/// let game = cluster.engine("n1")?.create_game("ABCD", vec!["ann".into(), "bob".into()]).await?;
/// assert_eq!(cluster.engine("n2")?.get_game(game.id).await?.id, game.id);
/// cluster.shutdown().await;
/// # Ok(()) }
/// ```
pub struct TestCluster {
    /// The nodes' data dirs, with [`Builder::durable`].
    data: Option<tempfile::TempDir>,
    fabric: Fabric,
    configure: Option<Configure>,
    service: Option<ServiceHook>,
    wait: Duration,
    nodes: Mutex<BTreeMap<String, Running>>,
    /// Nodes started but not yet seen by everyone.
    pending: Mutex<BTreeMap<String, Arc<Node>>>,
}

impl TestCluster {
    /// A builder: `TestCluster::builder().nodes(3).start().await?`.
    pub fn builder() -> Builder {
        Builder {
            names: vec!["n1".into()],
            link: LinkKind::Tcp,
            configure: None,
            service: None,
            wait: DEFAULT_WAIT,
            durable: false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Running>> {
        lock(&self.nodes)
    }

    /// The configuration node `name` would start with now.
    pub fn config_for(&self, name: &str) -> NodeConfig {
        let mut config = NodeConfig::new(name, self.fabric.cookie.clone());
        config.seeds = self
            .lock()
            .values()
            .map(|r| r.node.addr().to_string())
            .collect();
        if self.fabric.link == LinkKind::Memory {
            config.transport = Transport::Custom {
                addr: format!("mem://{name}/{:016x}", rand_u128() as u64),
                connector: Arc::new(self.fabric.network.clone()),
            };
        }
        if let Some(data) = &self.data {
            config.data_dir = Some(data.path().join(name));
        }
        if let Some(configure) = &self.configure {
            configure(name, &mut config);
        }
        config
    }

    /// Node `name`'s data dir, with [`Builder::durable`].
    pub fn data_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        self.data.as_ref().map(|d| d.path().join(name))
    }

    fn pending_node(&self, name: &str) -> Option<Arc<Node>> {
        lock(&self.pending).get(name).cloned()
    }

    async fn launch(&self, name: &str) -> Result<Arc<Node>, ClusterError> {
        if self.lock().contains_key(name) {
            return Err(ClusterError::DuplicateNode(name.to_string()));
        }
        let config = self.config_for(name);
        let node = Arc::new(Node::start(config).await?);
        self.fabric.started(name, &node.id().to_string());
        if self.fabric.link == LinkKind::Memory {
            self.fabric
                .network
                .attach(node.addr(), name, node.node_server().clone());
        }
        lock(&self.pending).insert(name.to_string(), node.clone());
        let joined = self.await_membership_with(name).await;
        lock(&self.pending).remove(name);
        if let Err(e) = joined {
            node.kill().await;
            return Err(e);
        }
        let service = match &self.service {
            Some(hook) => {
                Some(
                    hook(node.clone())
                        .await
                        .map_err(|reason| ClusterError::Service {
                            node: name.to_string(),
                            reason,
                        })?,
                )
            }
            None => None,
        };
        self.lock().insert(
            name.to_string(),
            Running {
                node: node.clone(),
                _service: service,
            },
        );
        Ok(node)
    }

    /// Names of the running nodes.
    pub fn nodes(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The handle of node `name`.
    pub fn node(&self, name: &str) -> Result<Arc<Node>, ClusterError> {
        self.lock()
            .get(name)
            .map(|r| r.node.clone())
            .ok_or_else(|| ClusterError::UnknownNode(name.to_string()))
    }

    /// Node `name`'s engine.
    pub fn engine(&self, name: &str) -> Result<GameEngine, ClusterError> {
        Ok(self.node(name)?.engine().clone())
    }

    /// The members node `name` sees up or leaving, by name.
    pub fn members(&self, name: &str) -> Result<Vec<String>, ClusterError> {
        Ok(self.node(name)?.live_member_names())
    }

    /// The node hosting game `id`'s session, if any.
    pub fn where_is(&self, id: GameId) -> Option<String> {
        self.lock()
            .iter()
            .find(|(_, r)| r.node.hosted().contains(&id))
            .map(|(name, _)| name.clone())
    }

    /// Every node hosting a session of game `id` (more than one only while
    /// a split lasts).
    pub fn where_is_all(&self, id: GameId) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, r)| r.node.hosted().contains(&id))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Sessions hosted per node.
    pub fn sessions_per_node(&self) -> BTreeMap<String, usize> {
        self.lock()
            .iter()
            .map(|(name, r)| (name.clone(), r.node.hosted().len()))
            .collect()
    }

    /// Starts a new node that joins the running cluster, and waits until
    /// every node sees it.
    pub async fn add_node(&self, name: &str) -> Result<Arc<Node>, ClusterError> {
        self.launch(name).await
    }

    /// Stops node `name` gracefully (its sessions are handed over first).
    pub async fn stop_node(&self, name: &str) -> Result<(), ClusterError> {
        let running = self
            .lock()
            .remove(name)
            .ok_or_else(|| ClusterError::UnknownNode(name.to_string()))?;
        running.node.leave().await;
        self.fabric.network.detach(running.node.addr(), name);
        self.await_full_membership().await
    }

    /// Crashes node `name`: links cut, actors gone, nothing handed over.
    pub async fn kill_node(&self, name: &str) -> Result<(), ClusterError> {
        let running = self
            .lock()
            .remove(name)
            .ok_or_else(|| ClusterError::UnknownNode(name.to_string()))?;
        self.fabric.network.detach(running.node.addr(), name);
        running.node.kill().await;
        Ok(())
    }

    /// Crashes every node at once (a power cut): all are cut off from each
    /// other before any is stopped, so none takes another's games over.
    /// Start them again with [`TestCluster::add_node`]; with
    /// [`Builder::durable`] they find their games in their data dirs.
    pub async fn kill_all(&self) {
        let running: Vec<(String, Running)> =
            std::mem::take(&mut *self.lock()).into_iter().collect();
        for (name, r) in &running {
            self.fabric.network.detach(r.node.addr(), name);
        }
        futures::future::join_all(running.iter().map(|(_, r)| r.node.kill())).await;
    }

    /// Stops node `name` gracefully and starts a new incarnation of it.
    pub async fn restart_node(&self, name: &str) -> Result<Arc<Node>, ClusterError> {
        self.stop_node(name).await?;
        self.add_node(name).await
    }

    /// Restarts every node in turn, each waiting for the cluster to see
    /// the new incarnation before the next goes.
    pub async fn rolling_restart(&self) -> Result<(), ClusterError> {
        for name in self.nodes() {
            self.restart_node(&name).await?;
        }
        Ok(())
    }

    /// Cuts the cluster into groups: bytes between groups are held (no EOF).
    pub fn partition(&self, a: &[&str], b: &[&str]) -> Result<(), ClusterError> {
        Ok(self.fabric.partition(a, b)?)
    }

    /// Holds bytes from `from` to `to` only.
    pub fn cut_one_way(&self, from: &str, to: &str) -> Result<(), ClusterError> {
        Ok(self.fabric.cut_one_way(from, to)?)
    }

    /// Silently stalls the link between `a` and `b` both ways.
    pub fn stall(&self, a: &str, b: &str) -> Result<(), ClusterError> {
        Ok(self.fabric.stall(a, b)?)
    }

    /// Adds latency to bytes from `from` to `to`.
    pub fn set_latency(&self, from: &str, to: &str, latency: Duration) -> Result<(), ClusterError> {
        Ok(self.fabric.set_latency(from, to, latency)?)
    }

    /// Removes every fault.
    pub fn heal(&self) -> Result<(), ClusterError> {
        Ok(self.fabric.heal()?)
    }

    /// Waits until `probe` succeeds, up to `timeout`; the error says what the
    /// probe last saw.
    pub async fn eventually<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        probe: F,
    ) -> Result<T, ClusterError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        Ok(eventually(what, timeout, probe).await?)
    }

    /// Waits until every running node sees exactly the running nodes live.
    pub async fn await_full_membership(&self) -> Result<(), ClusterError> {
        self.await_views(self.nodes(), None).await
    }

    async fn await_membership_with(&self, joining: &str) -> Result<(), ClusterError> {
        let mut expected = self.nodes();
        expected.push(joining.to_string());
        expected.sort();
        self.await_views(expected, Some(joining)).await
    }

    async fn await_views(
        &self,
        expected: Vec<String>,
        joining: Option<&str>,
    ) -> Result<(), ClusterError> {
        let joining = joining.map(|name| (name.to_string(), self.pending_node(name)));
        eventually("every node to see every other node", self.wait, || {
            let mut views: Vec<(String, Vec<String>, bool)> = self
                .lock()
                .iter()
                .map(|(name, r)| (name.clone(), r.node.live_member_names(), r.node.is_synced()))
                .collect();
            if let Some((name, Some(node))) = &joining {
                views.push((name.clone(), node.live_member_names(), node.is_synced()));
            }
            let expected = expected.clone();
            async move {
                if views.iter().all(|(_, v, synced)| v == &expected && *synced) {
                    Ok(())
                } else {
                    Err(format!("expected {expected:?} everywhere, saw {views:?}"))
                }
            }
        })
        .await?;
        Ok(())
    }

    /// Whether node `viewer` sees node `other` as down (or not at all).
    pub fn sees_down(&self, viewer: &str, other: &str) -> Result<bool, ClusterError> {
        let node = self.node(viewer)?;
        Ok(!node
            .members()
            .iter()
            .any(|(id, status)| id.name == other && *status != MemberStatus::Down))
    }

    /// The captured log lines of node `name`.
    pub fn logs(&self, name: &str) -> Result<Vec<String>, ClusterError> {
        Ok(logs::lines(&self.node(name)?.id().to_string()))
    }

    /// Stops every node (crash-style, fast) and waits for them.
    pub async fn shutdown(mut self) {
        self.fabric.shut_down = true;
        let nodes: Vec<Running> = std::mem::take(&mut *self.lock()).into_values().collect();
        for running in nodes {
            running.node.kill().await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let nodes = std::mem::take(&mut *self.lock());
        self.fabric.dump_if_failing();
        // Dropping a Node stops its actors and tasks without waiting.
        drop(nodes);
    }
}

//! `NodeConfig`: everything one node is started with. Nothing is read from
//! process-global state, so nodes in one process never share a setting.

use crate::placement::{Placement, Rendezvous};
use crate::tls::TlsConfig;
use futures::future::BoxFuture;
use minotaur_core::GameConfig;
use ractor_cluster::ClusterBidiStream;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Opens links to other nodes over something other than TCP (the testkit's
/// in-memory network, for instance).
pub trait Connector: Send + Sync + 'static {
    /// Opens a stream from node `from` to the node advertised at `addr`; the
    /// connector hands the other end to that node's server itself.
    fn connect(
        &self,
        from: &str,
        addr: &str,
    ) -> BoxFuture<'static, Result<Box<dyn ClusterBidiStream>, String>>;
}

/// How a node reaches its peers.
#[derive(Clone, Default)]
pub enum Transport {
    /// Real TCP on [`NodeConfig::listen_addr`].
    #[default]
    Tcp,
    /// Streams opened by a [`Connector`]; the node advertises `addr`.
    Custom {
        /// The address peers pass to their connector to reach this node.
        addr: String,
        /// Opens outgoing links.
        connector: Arc<dyn Connector>,
    },
}

/// What happens to running sessions when a node joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Redistribution {
    /// Nothing moves; new games are placed with the new member in view.
    #[default]
    Passive,
    /// Sessions whose placement now points at another member are handed
    /// over to it, with their state.
    Active,
}

/// What a node does when it cannot reach a majority of the members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitPolicy {
    /// With three members or more, writes need a lease from a majority,
    /// and a member's games are taken over only once its lease has surely
    /// run out; with one or two, as [`SplitPolicy::Available`] (a majority
    /// of two is both, so one crash would stop every write). Members lost
    /// to a crash or a split still count towards the three until they come
    /// back, are replaced by a new incarnation or leave gracefully: a
    /// cluster shrinks to the unfenced rules only by graceful leaves.
    #[default]
    MajorityFromThree,
    /// Writes always need a lease from a majority; with two members both
    /// must be reachable, so either one failing stops every write until it
    /// is back or replaced.
    Majority,
    /// No fencing: every side of a split serves on, and when it heals the
    /// copy with the higher version wins, so writes acknowledged on the
    /// other side are lost.
    Available,
}

/// Shortest cookie a node accepts without [`NodeConfig::allow_weak_cookie`].
pub const MIN_COOKIE_LEN: usize = 16;

/// The cookie of development setups (examples, local scripts). Well known,
/// so a node refuses it unless [`NodeConfig::allow_weak_cookie`] is set.
pub const DEV_COOKIE: &str = "minotaur-dev-cookie";

/// Placeholders people leave in configuration files; refused like
/// [`DEV_COOKIE`].
const PLACEHOLDER_COOKIES: &[&str] = &[
    DEV_COOKIE,
    "cookie",
    "secret",
    "changeme",
    "change-me",
    "password",
    "minotaur",
];

/// One node's configuration.
///
/// ```
/// use minotaur_cluster::NodeConfig;
/// let cfg = NodeConfig::new("n1", "a-long-secret-cookie");
/// assert_eq!(cfg.listen_addr.port(), 0); // the OS picks a free port
/// assert_eq!(cfg.replication_factor, 1);
/// assert!(cfg.validate().is_ok());
///
/// // A short or well-known cookie is refused outside development.
/// let mut weak = NodeConfig::new("n1", "secret");
/// assert!(weak.validate().is_err());
/// weak.allow_weak_cookie = true;
/// assert!(weak.validate().is_ok());
/// ```
#[derive(Clone)]
pub struct NodeConfig {
    /// The node's name, unique in its cluster.
    pub name: String,
    /// Shared secret every member must present.
    pub cookie: String,
    /// Where to listen for peers; port 0 picks a free port.
    pub listen_addr: SocketAddr,
    /// Addresses of members to join through (any one is enough).
    pub seeds: Vec<String>,
    /// How often a node tells each peer it is alive.
    pub heartbeat_interval: Duration,
    /// A peer not heard from for this long is considered down, even if its
    /// link is still open (ractor_cluster never times a link out by itself).
    pub failure_timeout: Duration,
    /// Where new sessions go.
    pub placement: Arc<dyn Placement>,
    /// Copies of each session's state kept on other members (0 or 1).
    pub replication_factor: usize,
    /// What a node does when it cannot reach a majority of the members
    /// (majority fencing from three members up, by default).
    pub split: SplitPolicy,
    /// How long a lease from a majority lets a node acknowledge writes
    /// without renewing it (renewed with every heartbeat). A member cut off
    /// has its games taken over after about `failure_timeout + lease`.
    pub lease: Duration,
    /// The most any member's clock may run fast or slow, as a fraction
    /// (default 0.01): the margin a lease is given before a silent member's
    /// games are taken over. Only monotonic clocks are used; none need to
    /// agree.
    pub max_clock_drift: f64,
    /// Whether a join moves running sessions.
    pub redistribution: Redistribution,
    /// Rules of games created on this node.
    pub game: GameConfig,
    /// Deadline of every remote call.
    pub call_timeout: Duration,
    /// How the node reaches its peers.
    pub transport: Transport,
    /// Restarts of a failed session actor before it is given up.
    pub max_restarts: u32,
    /// How long a game may go without a command (a read or a write) before
    /// its session is passivated: stopped, with the game kept by its owner
    /// as its encoded state, still registered and copied to its backup. The
    /// next command through any node starts it again on its owner, with the
    /// rounds that ended meanwhile ended at their deadlines. A failover
    /// then restarts the games it takes over passive too. `None` (the
    /// default): sessions run until their game concludes.
    pub idle_after: Option<Duration>,
    /// Where the node keeps its games durably (a redb file,
    /// `minotaur.redb`, in this directory, created if need be). With it,
    /// every change is written there (and fsynced) before it is
    /// acknowledged, the changes of concurrent writes in one commit; a
    /// node restarted with the same directory owns and serves its games
    /// again, so a whole cluster stopped at once loses no acknowledged
    /// write. `None` (the default): games live in memory only. One node
    /// per directory: a second is refused (`StoreError::Locked`).
    pub data_dir: Option<std::path::PathBuf>,
    /// Development flag: accept a short or well-known cookie (never an
    /// empty one). Off by default; production clusters want a long random
    /// cookie, since it is the only thing keeping strangers out.
    pub allow_weak_cookie: bool,
    /// Encrypt and mutually authenticate cluster links with TLS (TCP
    /// transport only). Off by default.
    pub tls: Option<TlsConfig>,
}

impl NodeConfig {
    /// A configuration with defaults: listen on 127.0.0.1 with a free port,
    /// no seeds, 200 ms heartbeats, 1 s failure timeout, rendezvous placement,
    /// replication factor 1, majority fencing from three members with a 1 s
    /// lease and 1% clock drift, passive redistribution, default game rules,
    /// 5 s call timeout, TCP.
    pub fn new(name: impl Into<String>, cookie: impl Into<String>) -> Self {
        NodeConfig {
            name: name.into(),
            cookie: cookie.into(),
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            seeds: Vec::new(),
            heartbeat_interval: Duration::from_millis(200),
            failure_timeout: Duration::from_secs(1),
            placement: Arc::new(Rendezvous),
            replication_factor: 1,
            split: SplitPolicy::default(),
            lease: Duration::from_secs(1),
            max_clock_drift: 0.01,
            redistribution: Redistribution::Passive,
            game: GameConfig::default(),
            call_timeout: Duration::from_secs(5),
            transport: Transport::Tcp,
            max_restarts: minotaur_core::local::DEFAULT_MAX_RESTARTS,
            idle_after: None,
            data_dir: None,
            allow_weak_cookie: false,
            tls: None,
        }
    }

    /// Whether the cookie is long and not a well-known placeholder.
    pub(crate) fn validate_cookie_strength(&self) -> Result<(), String> {
        let weak = self.cookie.len() < MIN_COOKIE_LEN
            || PLACEHOLDER_COOKIES.contains(&self.cookie.to_ascii_lowercase().as_str());
        if weak {
            return Err(format!(
                "the cluster cookie is weak (shorter than {MIN_COOKIE_LEN} bytes or a well-known \
                 placeholder); use a long random secret, or set allow_weak_cookie for development"
            ));
        }
        Ok(())
    }

    /// Checks the configuration is usable; `Err` says what is wrong.
    /// [`Node::start`](crate::Node::start) refuses a configuration that fails.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.is_empty() {
            return Err("the node name must not be empty".into());
        }
        if self.name.contains(['@', '/', ' ']) {
            return Err(format!(
                "node name {:?} must not contain '@', '/' or spaces",
                self.name
            ));
        }
        if self.cookie.is_empty() {
            return Err("the cluster cookie must not be empty".into());
        }
        if !self.allow_weak_cookie {
            self.validate_cookie_strength()?;
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.failure_timeout {
            return Err(format!(
                "heartbeat_interval ({:?}) must be non-zero and shorter than failure_timeout ({:?})",
                self.heartbeat_interval, self.failure_timeout
            ));
        }
        if self.lease <= self.heartbeat_interval {
            return Err(format!(
                "lease ({:?}) must be longer than heartbeat_interval ({:?}), which renews it",
                self.lease, self.heartbeat_interval
            ));
        }
        if !(0.0..0.5).contains(&self.max_clock_drift) {
            return Err(format!(
                "max_clock_drift ({}) must be at least 0 and below 0.5",
                self.max_clock_drift
            ));
        }
        if self.call_timeout.is_zero() {
            return Err("call_timeout must be non-zero".into());
        }
        if self.replication_factor > 1 {
            return Err(format!(
                "replication_factor {} is not supported (0 or 1)",
                self.replication_factor
            ));
        }
        if self.tls.is_some() && !matches!(self.transport, Transport::Tcp) {
            return Err("TLS needs the TCP transport".into());
        }
        self.game.validate().map_err(|e| format!("game rules: {e}"))
    }
}

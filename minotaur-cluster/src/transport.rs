//! The transport: ractor_cluster's `NodeServer` for one node (TCP, TLS or a
//! custom connector), its session events, dialling, and finding a peer's
//! router once a link is up. Nothing here decides anything: the driver
//! carries out what the control state machine asks for with these.
//!
//! Each node has exactly one remotable actor, its router, named uniquely
//! per incarnation (so nodes sharing a process never clash) and found
//! among the peer's session's children, never through ractor's
//! process-global registry.

use crate::config::{NodeConfig, Transport};
use crate::membership::MemberId;
use crate::protocol::RouterMsg;
use ractor::{Actor, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::ClientConnectErr;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// What the NodeServer tells us about its sessions.
pub(crate) enum LinkEvent {
    Opened(NodeServerSessionInformation),
    Ready(NodeServerSessionInformation),
    Closed(NodeServerSessionInformation),
}

struct Forward(UnboundedSender<LinkEvent>);

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Opened(ses));
    }
    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Ready(ses));
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Closed(ses));
    }
}

/// The transport of a starting node.
pub(crate) struct Server {
    pub actor: ActorRef<NodeServerMessage>,
    /// The port peers reach this node on.
    pub port: u16,
    /// With TLS, the listener whose accept loop the node runs itself.
    pub tls_listener: Option<tokio::net::TcpListener>,
}

/// How long a new link may take to become a member (TLS handshake, cookie
/// exchange and our Hello) before it is closed.
pub(crate) fn handshake_deadline(config: &NodeConfig) -> Duration {
    // Never shorter than the handshake itself can take: finding the peer's
    // router and a `Hello` call (up to `call_timeout` each). A
    // shorter deadline closes slow but honest links under load, which then
    // redial and are closed again.
    (config.failure_timeout * 2)
        .max(Duration::from_secs(2))
        .max(config.call_timeout + Duration::from_secs(1))
}

/// Starts the ractor_cluster server on the configured address. Port 0 picks
/// a free port (probed first, since the server does not report it back).
/// With TLS the node accepts on its own listener (see [`crate::tls`]) and
/// the server listens on a loopback port nobody is told about. An error is
/// what the OS said about binding.
pub(crate) async fn start_server(config: &NodeConfig, this: &MemberId) -> Result<Server, String> {
    let Some(tls) = &config.tls else {
        let (actor, port) = spawn_server(config, this, config.listen_addr, None).await?;
        return Ok(Server {
            actor,
            port,
            tls_listener: None,
        });
    };
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let internal = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mode = ractor_cluster::IncomingEncryptionMode::Tls(tls.acceptor());
    let (actor, _) = spawn_server(config, this, internal, Some(mode)).await?;
    Ok(Server {
        actor,
        port,
        tls_listener: Some(listener),
    })
}

async fn spawn_server(
    config: &NodeConfig,
    this: &MemberId,
    addr: std::net::SocketAddr,
    encryption: Option<ractor_cluster::IncomingEncryptionMode>,
) -> Result<(ActorRef<NodeServerMessage>, u16), String> {
    let ip = addr.ip();
    let fixed = addr.port();
    let mut last_error = String::new();
    for _ in 0..5 {
        let port = if fixed != 0 {
            fixed
        } else {
            match std::net::TcpListener::bind((ip, 0)).and_then(|l| l.local_addr()) {
                Ok(a) => a.port(),
                Err(e) => {
                    last_error = e.to_string();
                    continue;
                }
            }
        };
        let server = NodeServer::new(
            port,
            config.cookie.clone(),
            this.to_string(),
            ip.to_string(),
            encryption.clone(),
            Some(ractor_cluster::node::NodeConnectionMode::Isolated),
        )
        .with_listen_addr(ip);
        match Actor::spawn(None, server, ()).await {
            Ok((server, _)) => return Ok((server, port)),
            Err(e) => last_error = e.to_string(),
        }
        if fixed != 0 {
            break;
        }
    }
    Err(last_error)
}

/// Subscribes to the server's session events.
pub(crate) fn subscribe(
    server: &ActorRef<NodeServerMessage>,
    this: &MemberId,
) -> UnboundedReceiver<LinkEvent> {
    let (tx, rx) = unbounded_channel();
    let _ = server.cast(NodeServerMessage::SubscribeToEvents {
        id: format!("minotaur-links/{this}"),
        subscription: Box::new(Forward(tx)),
    });
    rx
}

/// Opens a link from `server` to the node at `addr`, over the configured
/// transport (TLS or not).
pub(crate) async fn connect(
    config: &NodeConfig,
    server: &ActorRef<NodeServerMessage>,
    this: &MemberId,
    addr: &str,
) -> Result<(), DialError> {
    let typed = |e: ClientConnectErr| match e {
        ClientConnectErr::Socket(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            DialError::Refused
        }
        e => DialError::Failed(e.to_string()),
    };
    match &config.transport {
        Transport::Tcp => match &config.tls {
            Some(tls) => {
                // The TLS handshake happens inside the dial: bound it, a
                // stalled peer must not hold up the caller.
                let deadline = handshake_deadline(config);
                match tokio::time::timeout(deadline, tls.dial(server, addr)).await {
                    Ok(result) => result.map_err(typed),
                    Err(_) => Err(DialError::Failed("TLS handshake timed out".into())),
                }
            }
            None => ractor_cluster::client_connect(server, addr)
                .await
                .map_err(typed),
        },
        Transport::Custom { connector, .. } => {
            match connector.connect(&this.to_string(), addr).await {
                Ok(stream) => ractor_cluster::client_connect_external(server, stream)
                    .await
                    .map_err(typed),
                Err(e) => Err(DialError::Failed(e)),
            }
        }
    }
}

/// Why a dial failed.
#[derive(Debug)]
pub(crate) enum DialError {
    /// Nothing listens at the address: a member that was there has died.
    Refused,
    /// Anything else (a timeout, a refused handshake, ...), which proves
    /// nothing about the peer.
    Failed(String),
}

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DialError::Refused => f.write_str("connection refused"),
            DialError::Failed(why) => f.write_str(why),
        }
    }
}

/// Finds the router a peer advertised over the link `info`.
pub(crate) async fn find_router(
    info: &NodeServerSessionInformation,
    name: &str,
    patience: Duration,
) -> Option<ActorRef<RouterMsg>> {
    // The peer's router is advertised during the session's initial sync; a
    // router spawned just after the link came up arrives a little later,
    // and much later from a peer starved of CPU: a link closed for that is
    // dialled again and closed again, and membership never settles.
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let found = info
            .actor
            .get_cell()
            .get_children()
            .into_iter()
            .find(|c| !c.get_id().is_local() && c.get_name().as_deref() == Some(name));
        if let Some(cell) = found {
            return Some(ActorRef::from(cell));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Closes a session's connection: its socket belongs to a child actor,
/// which stopping the session alone would leave running.
pub(crate) fn close_session(session: &ActorRef<ractor_cluster::NodeSessionMessage>) {
    kill_tree(&session.get_cell());
}

/// The registered name of a member's router, from the member id's display form.
pub(crate) fn router_name_of(member: &str) -> String {
    format!("minotaur-router/{member}")
}

/// The registered name of `this` member's router.
pub(crate) fn router_name(this: &MemberId) -> String {
    router_name_of(&this.to_string())
}

/// Kills `cell` and all its descendants, leaves first; returns them all.
/// (ractor does not stop an actor's children with it.)
pub(crate) fn kill_tree(cell: &ractor::ActorCell) -> Vec<ractor::ActorCell> {
    let mut killed = Vec::new();
    for child in cell.get_children() {
        killed.extend(kill_tree(&child));
    }
    cell.kill();
    killed.push(cell.clone());
    killed
}

//! Links between members: starting the transport, dialling peers, the
//! handshake that turns a ractor_cluster session into a member, heartbeats
//! and the failure detector, and closing links that never complete a
//! handshake.

use crate::config::{NodeConfig, Transport};
use crate::membership::{DownReason, MemberId, MemberStatus, Uplink};
use crate::node::{lock, NodeError, Shared};
use crate::protocol::{self, Hello, Notice, Request, Response, RouterMsg};
use crate::router::router_name_of;
use crate::{handoff, rpc, supervisor};
use ractor::{Actor, ActorId, ActorRef};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    // router (up to 1 s) and a `Hello` call (up to `call_timeout`). A
    // shorter deadline closes slow but honest links under load, which then
    // redial and are closed again.
    (config.failure_timeout * 2)
        .max(Duration::from_secs(2))
        .max(config.call_timeout + Duration::from_secs(1))
}

/// Starts the ractor_cluster server on the configured address. Port 0 picks
/// a free port (probed first, since the server does not report it back).
/// With TLS the node accepts on its own listener (see [`crate::tls`]) and
/// the server listens on a loopback port nobody is told about.
pub(crate) async fn start_server(
    config: &NodeConfig,
    this: &MemberId,
) -> Result<Server, NodeError> {
    let bind_error = |reason: String| NodeError::Bind {
        node: config.name.clone(),
        addr: config.listen_addr,
        reason,
    };
    let Some(tls) = &config.tls else {
        let (actor, port) = spawn_server(config, this, config.listen_addr, None)
            .await
            .map_err(bind_error)?;
        return Ok(Server {
            actor,
            port,
            tls_listener: None,
        });
    };
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| bind_error(e.to_string()))?;
    let port = listener
        .local_addr()
        .map_err(|e| bind_error(e.to_string()))?
        .port();
    let internal = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let mode = ractor_cluster::IncomingEncryptionMode::Tls(tls.acceptor());
    let (actor, _) = spawn_server(config, this, internal, Some(mode))
        .await
        .map_err(bind_error)?;
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

/// Opens a link to `addr` unless one was attempted recently.
pub(crate) async fn dial(shared: &Arc<Shared>, addr: &str) {
    if addr == shared.addr {
        return;
    }
    let pace = shared
        .config
        .failure_timeout
        .max(Duration::from_millis(500));
    {
        let mut dialed = lock(&shared.dialed);
        if dialed.get(addr).is_some_and(|at| at.elapsed() < pace) {
            return;
        }
        dialed.insert(addr.to_string(), Instant::now());
    }
    let result = connect(&shared.config, &shared.server, &shared.this, addr).await;
    if let Err(e) = result {
        tracing::debug!(%addr, error = %e, "dial failed");
    }
}

/// Opens a link from `server` to the node at `addr`, over the configured
/// transport (TLS or not).
pub(crate) async fn connect(
    config: &NodeConfig,
    server: &ActorRef<NodeServerMessage>,
    this: &MemberId,
    addr: &str,
) -> Result<(), String> {
    match &config.transport {
        Transport::Tcp => match &config.tls {
            Some(tls) => {
                // The TLS handshake happens inside the dial: bound it, a
                // stalled peer must not hold up the caller.
                let deadline = handshake_deadline(config);
                tokio::time::timeout(deadline, tls.dial(server, addr))
                    .await
                    .unwrap_or_else(|_| Err("TLS handshake timed out".into()))
            }
            None => ractor_cluster::client_connect(server, addr)
                .await
                .map_err(|e| e.to_string()),
        },
        Transport::Custom { connector, .. } => {
            match connector.connect(&this.to_string(), addr).await {
                Ok(stream) => ractor_cluster::client_connect_external(server, stream)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e),
            }
        }
    }
}

/// The Hello this node introduces itself with.
pub(crate) fn hello(shared: &Shared) -> Hello {
    Hello {
        from: shared.this.clone(),
        addr: shared.addr.clone(),
        min_protocol: protocol::MIN_PROTOCOL_VERSION,
        max_protocol: protocol::PROTOCOL_VERSION,
        leaving: shared.is_leaving(),
        members: live_addresses(shared),
    }
}

/// The members this node sees up or leaving (itself included), with their
/// addresses.
fn live_addresses(shared: &Shared) -> Vec<(MemberId, String)> {
    shared
        .members
        .addresses()
        .into_iter()
        .filter(|(_, _, s)| *s != MemberStatus::Down)
        .map(|(id, addr, _)| (id, addr))
        .collect()
}

/// How many heartbeats apart this node sends its member list to its peers.
const MEMBERS_EVERY: u64 = 5;

/// Tells every live peer which members this node sees live. A member learns
/// of the others from the Hello of its handshake, which lacks those whose
/// own handshake with the same peer completed just after it (two nodes
/// joining through one seed at once): without this they never link.
pub(crate) fn share_members(shared: &Shared) {
    rpc::broadcast(
        &shared.members,
        &Notice::Members {
            from: shared.this.clone(),
            members: live_addresses(shared),
        },
    );
}

/// Addresses of the members of `members` (as a peer sees them) that are
/// not live here: to dial, unless this node is leaving. A member whose
/// name is live here under another incarnation is left to [`reconnect`]:
/// the peer's view may simply be older than ours.
pub(crate) fn unknown(shared: &Shared, members: Vec<(MemberId, String)>) -> Vec<String> {
    if shared.is_leaving() {
        return Vec::new();
    }
    let live = shared.members.live();
    members
        .into_iter()
        .filter(|(other, _)| other != &shared.this && !live.iter().any(|m| m.name == other.name))
        .map(|(_, addr)| addr)
        .collect()
}

/// Dials each of `addrs` (paced like every dial).
pub(crate) async fn dial_all(shared: &Arc<Shared>, addrs: Vec<String>) {
    for addr in addrs {
        dial(shared, &addr).await;
    }
}

/// Whether a peer speaking `[min, max]` can talk to this release.
pub(crate) fn compatible(h: &Hello) -> bool {
    h.min_protocol <= protocol::PROTOCOL_VERSION && h.max_protocol >= protocol::MIN_PROTOCOL_VERSION
}

/// Handles the server's session events until the node stops.
pub(crate) async fn run_link_events(shared: Arc<Shared>, mut events: UnboundedReceiver<LinkEvent>) {
    while let Some(event) = events.recv().await {
        match event {
            LinkEvent::Opened(info) => {
                // ractor_cluster has no handshake timeout, and its session
                // list (GetSessions, which `reap_unready` reads) only shows
                // authenticated sessions, so a peer that never authenticates
                // is watched from the moment it connects. One that did
                // authenticate is left to `reap_unready`, whose clock starts
                // then: under load the Minotaur handshake after it can take
                // a while, and closing it would only start it over.
                let deadline = handshake_deadline(&shared.config);
                let owner = shared.clone();
                shared.tasks.spawn(async move {
                    tokio::time::sleep(deadline).await;
                    let id = info.actor.get_id();
                    if owner.members.by_session(&id).is_some() {
                        return;
                    }
                    let authenticated = match ractor::call_t!(
                        owner.server,
                        NodeServerMessage::GetSessions,
                        1000
                    ) {
                        Ok(sessions) => sessions.values().any(|s| s.actor.get_id() == id),
                        Err(_) => return,
                    };
                    if !authenticated {
                        tracing::info!(peer = %info.peer_addr, "closing a connection that did not authenticate in time");
                        close_session(&info.actor);
                    }
                });
            }
            LinkEvent::Ready(info) => {
                shared.tasks.spawn(handshake(shared.clone(), info));
            }
            LinkEvent::Closed(info) => {
                if shared.members.by_session(&info.actor.get_id()).is_some() {
                    shared.tasks.spawn(link_closed(shared.clone(), info));
                }
            }
        }
    }
}

/// How long a closed link's peer may take to show another authenticated
/// link before it counts as down.
const DUPLICATE_GRACE: Duration = Duration::from_millis(100);

/// The member's link closed: it is down, unless it has another link to us.
/// When both ends dial at once (as after a partition heals), ractor_cluster
/// keeps one link and closes the other once both have authenticated, and
/// this end may see the close just before it sees the kept link
/// authenticated. Counting the peer down would fail its sessions over while
/// it still runs them. Should the kept link never complete its handshake,
/// the failure detector sees the peer silent.
async fn link_closed(shared: Arc<Shared>, info: NodeServerSessionInformation) {
    let closed = info.actor.get_id();
    let started = Instant::now();
    loop {
        if has_another_link(&shared, &info).await {
            tracing::info!(peer = ?info.peer_name.as_ref().map(|p| &p.name),
                "a duplicate link closed; the other one takes over");
            return;
        }
        if started.elapsed() >= DUPLICATE_GRACE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Still its link: no handshake on another link replaced it meanwhile.
    if let Some(member) = shared.members.by_session(&closed) {
        member_down(&shared, &member, DownReason::LinkClosed);
    }
}

/// Whether the peer of the closed link has another authenticated link.
async fn has_another_link(shared: &Shared, closed: &NodeServerSessionInformation) -> bool {
    let Some(peer) = closed.peer_name.as_ref() else {
        return false;
    };
    match ractor::call_t!(shared.server, NodeServerMessage::GetSessions, 1000) {
        Ok(sessions) => sessions.values().any(|s| {
            s.actor.get_id() != closed.actor.get_id()
                && s.peer_name.as_ref().is_some_and(|p| p.name == peer.name)
        }),
        Err(_) => false,
    }
}

pub(crate) async fn find_router(
    info: &NodeServerSessionInformation,
    name: &str,
) -> Option<ActorRef<RouterMsg>> {
    // The peer's router is advertised during the session's initial sync; a
    // router spawned just after the link came up arrives a little later.
    for _ in 0..40 {
        let found = info
            .actor
            .get_cell()
            .get_children()
            .into_iter()
            .find(|c| !c.get_id().is_local() && c.get_name().as_deref() == Some(name));
        if let Some(cell) = found {
            return Some(ActorRef::from(cell));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}

async fn handshake(shared: Arc<Shared>, info: NodeServerSessionInformation) {
    let Some(peer) = info.peer_name.as_ref().map(|p| p.name.clone()) else {
        return;
    };
    let peer_id = peer.split('@').next().unwrap_or_default().to_string();
    let Some(router) = find_router(&info, &router_name_of(&peer_id)).await else {
        tracing::warn!(peer = %peer_id, "peer has no Minotaur router; closing the link");
        info.actor.stop(Some("no router".into()));
        return;
    };
    let Ok(bytes) = protocol::seal(Request::Hello(hello(&shared))) else {
        return;
    };
    let answer = rpc::call(&router, bytes, shared.config.call_timeout, &shared.this).await;
    let theirs = match answer {
        Ok(Response::Hello(h)) => h,
        Ok(Response::Refused(why)) => {
            tracing::error!(peer = %peer_id, %why, "peer refused us");
            info.actor.stop(Some("refused".into()));
            return;
        }
        other => {
            tracing::warn!(peer = %peer_id, answer = ?other, "handshake failed");
            info.actor.stop(Some("handshake failed".into()));
            return;
        }
    };
    if !compatible(&theirs) {
        tracing::error!(
            peer = %peer_id,
            theirs = ?(theirs.min_protocol, theirs.max_protocol),
            ours = ?(protocol::MIN_PROTOCOL_VERSION, protocol::PROTOCOL_VERSION),
            "refusing peer: incompatible protocol versions"
        );
        info.actor.stop(Some("incompatible protocol".into()));
        return;
    }
    if theirs.from.to_string() != peer_id {
        info.actor.stop(Some("identity mismatch".into()));
        return;
    }
    let member = theirs.from.clone();
    let (uplink, replaced) = shared.members.up_via(
        member.clone(),
        theirs.addr.clone(),
        theirs.leaving,
        router,
        info.actor.clone(),
    );
    for old in replaced {
        shared
            .tasks
            .spawn(supervisor::on_member_down(shared.clone(), old));
    }
    // Over a new link, what was sent over the old one may be lost: send it
    // again as to a member just up.
    if uplink != Uplink::Unchanged {
        tracing::info!(peer = %member, ?uplink, "member up");
        supervisor::on_member_up(&shared, &member).await;
        // Our other peers may not know it yet, nor it them.
        share_members(&shared);
    }
    let addrs = unknown(&shared, theirs.members);
    dial_all(&shared, addrs).await;
}

/// Closes a session's connection: its socket belongs to a child actor,
/// which stopping the session alone would leave running.
pub(crate) fn close_session(session: &ActorRef<ractor_cluster::NodeSessionMessage>) {
    crate::node::kill_tree(&session.get_cell());
}

/// Marks `member` down and starts failover for it.
pub(crate) fn member_down(shared: &Arc<Shared>, member: &MemberId, reason: DownReason) {
    if let Some(session) = shared.members.set_down(member, reason) {
        tracing::warn!(peer = %member, ?reason, "member down");
        if let Some(session) = session {
            session.stop(Some(format!("member down: {reason:?}")));
        }
        shared
            .tasks
            .spawn(supervisor::on_member_down(shared.clone(), member.clone()));
    }
}

/// Heartbeats, failure detection, reconnects and handshake deadlines.
pub(crate) async fn run_ticker(shared: Arc<Shared>) {
    let period = shared.config.heartbeat_interval;
    let handshake_deadline = handshake_deadline(&shared.config);
    let mut unready: HashMap<ActorId, Instant> = HashMap::new();
    // A sweep finding nothing to do costs a scan of the owned games; every
    // ten heartbeats is often enough for a retry.
    let mut ticks: u64 = 0;
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        rpc::broadcast(
            &shared.members,
            &Notice::Ping {
                from: shared.this.clone(),
            },
        );

        let silent_since = Instant::now().checked_sub(shared.config.failure_timeout);
        for member in silent_since
            .map(|t| shared.members.silent_since(t))
            .unwrap_or_default()
        {
            member_down(&shared, &member, DownReason::Timeout);
        }

        reconnect(&shared).await;
        crate::failover::adopt_orphans(&shared);
        ticks += 1;
        if ticks % MEMBERS_EVERY == 0 {
            share_members(&shared);
        }
        if ticks % 10 == 0 {
            shared.tasks.spawn(handoff::sweep_again(shared.clone()));
        }
        reap_unready(&shared, &mut unready, handshake_deadline).await;
        lock(&shared.moved).retain(|_, (_, at)| at.elapsed() < Duration::from_secs(60));
    }
}

async fn reconnect(shared: &Arc<Shared>) {
    if shared.is_leaving() {
        return;
    }
    let known = shared.members.addresses();
    let live_names: Vec<String> = known
        .iter()
        .filter(|(_, _, s)| *s != MemberStatus::Down)
        .map(|(id, _, _)| id.name.clone())
        .collect();
    let mut targets: Vec<String> = known
        .into_iter()
        .filter(|(id, _, s)| *s == MemberStatus::Down && !live_names.contains(&id.name))
        .map(|(_, addr, _)| addr)
        .collect();
    if live_names.len() <= 1 {
        targets.extend(shared.config.seeds.iter().cloned());
    }
    targets.sort();
    targets.dedup();
    for addr in targets {
        dial(shared, &addr).await;
    }
}

// Closes sessions that have not become members in time: peers that never
// authenticate (slow or hostile) and links that stalled mid-handshake.
async fn reap_unready(
    shared: &Arc<Shared>,
    unready: &mut HashMap<ActorId, Instant>,
    deadline: Duration,
) {
    let sessions = match ractor::call_t!(shared.server, NodeServerMessage::GetSessions, 1000) {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut still = HashMap::new();
    for info in sessions.into_values() {
        let id = info.actor.get_id();
        if shared.members.by_session(&id).is_some() {
            continue;
        }
        let since = unready.get(&id).copied().unwrap_or_else(Instant::now);
        if since.elapsed() > deadline {
            tracing::info!(peer = ?info.peer_name.as_ref().map(|p| &p.name), "closing a link that never completed its handshake");
            info.actor.stop(Some("handshake deadline".into()));
        } else {
            still.insert(id, since);
        }
    }
    *unready = still;
}

//! The driver: one task per node that owns its [`Control`], feeds it what
//! happens (link events, peers' messages, sessions' saves, callers'
//! requests, time) and carries out the effects it decides. It is the only
//! place control state changes, so the control path takes no lock; after
//! each batch of inputs it publishes what the data plane reads (members,
//! peers' routers, the registry) for readers that never wait on it.

use crate::config::NodeConfig;
use crate::control::hosting::Hosting;
use crate::control::inbound::Inbound;
use crate::control::wire::{Msg, Snapshot, Update};
use crate::control::{Control, Effect, Event, Input, LinkId, StopReason};
use crate::exchange::Exchange;
use crate::membership::{ClusterEvent, MemberId, MemberStatus};
use crate::protocol::{self, Notice, RouterMsg};
use crate::registry::{Registration, Registry};
use crate::store::Store;
use crate::tasks::Tasks;
use crate::transport;
use arc_swap::ArcSwap;
use minotaur_core::host::{EndReason, HostEvent};
use minotaur_core::{
    codec, Change, CodecError, EngineError, Game, GameId, LocalDirectory, SessionMsg,
};
use ractor::{ActorId, ActorRef};
use ractor_cluster::{NodeServerMessage, NodeSessionMessage};
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Sessions started by one call to the host: a failover's thousands go in
/// several, each answered well within the call timeout.
const START_CHUNK: usize = 512;

/// Waits until `session` has exited and the session host has forgotten it
/// (it does when it hears of the exit), so that a start of the same game
/// that follows is not refused as already running.
async fn gone(local: &LocalDirectory, session: &ActorRef<SessionMsg>) {
    if !local.sessions().wait_gone(session, GONE_WAIT).await {
        tracing::warn!(actor = %session.get_id(), "a stopped session is still listed after {GONE_WAIT:?}");
    }
}

/// The most often a node counts its games' replication (see
/// [`Node::unreplicated`](crate::Node::unreplicated)).
const STATS_EVERY: Duration = Duration::from_millis(50);

/// How many times as long as a count took the next one waits.
const STATS_PAUSE: u32 = 500;

/// How long the driver takes inputs before it sends what they said.
const TURN_BUDGET: Duration = Duration::from_millis(50);

/// How long a stop waits for its session to be gone.
const GONE_WAIT: Duration = Duration::from_secs(6);

/// What the driver is told.
pub(crate) enum ToDriver {
    /// A link is authenticated and the peer's router found.
    LinkReady {
        session: ActorRef<NodeSessionMessage>,
        router: ActorRef<RouterMsg>,
        peer: String,
    },
    /// A link closed.
    LinkClosed(ActorId),
    /// A peer's control sent a message.
    Control { from: MemberId, msg: Msg },
    /// A peer's control sent several messages in one frame.
    Controls { from: MemberId, msgs: Vec<Msg> },
    /// A caller creates a game.
    Create {
        game: Game,
        reply: oneshot::Sender<Result<Registration, EngineError>>,
    },
    /// A session asks for a change to be kept.
    Save {
        update: Update,
        reply: oneshot::Sender<Result<Saved, EngineError>>,
    },
    /// A session asks whether its state may be read as the latest
    /// acknowledged one.
    Confirm {
        id: GameId,
        reply: oneshot::Sender<Result<(), EngineError>>,
    },
    /// A failed session asks for its backup copy.
    Fetch {
        id: GameId,
        reply: oneshot::Sender<Option<Snapshot>>,
    },
    /// A session was started, released or ended.
    Input(Input),
    /// Hand every session over; answered once done.
    Leave(oneshot::Sender<()>),
    /// The transport's authenticated sessions, polled: one that never
    /// becomes a link within the handshake deadline is closed (its peer
    /// would otherwise be refused as already connected, for good).
    Sessions(Vec<ActorRef<NodeSessionMessage>>),
    /// Say goodbye to every peer; answered once the goodbyes are sent.
    Depart(oneshot::Sender<()>),
    /// A session asked to stop has stopped (or was gone).
    Stopped(GameId),
    /// Describe this node's members and links (for diagnosis).
    ExplainMembers(oneshot::Sender<String>),
    /// List the copies this node could restart a game from now, with
    /// their owners.
    Restartable(oneshot::Sender<Vec<(GameId, MemberId)>>),
    /// List the games owned here that are passive.
    Passive(oneshot::Sender<Vec<GameId>>),
    /// Describe everything this node knows of a game (for diagnosis).
    Explain {
        id: GameId,
        reply: oneshot::Sender<String>,
    },
}

impl ToDriver {
    /// What the message is, for a log line, without allocating: its kind
    /// (a peer's frame by its first message) and how many messages it
    /// carries.
    fn brief(&self) -> (&'static str, usize) {
        match self {
            ToDriver::Control { msg, .. } => (msg.kind(), 1),
            ToDriver::Controls { msgs, .. } => (msgs.first().map_or("none", Msg::kind), msgs.len()),
            ToDriver::LinkReady { .. } => ("LinkReady", 0),
            ToDriver::LinkClosed { .. } => ("LinkClosed", 0),
            ToDriver::Create { .. } => ("Create", 0),
            ToDriver::Save { .. } => ("Save", 0),
            ToDriver::Confirm { .. } => ("Confirm", 0),
            ToDriver::Fetch { .. } => ("Fetch", 0),
            ToDriver::Input { .. } => ("Input", 0),
            ToDriver::Leave { .. } => ("Leave", 0),
            ToDriver::Sessions { .. } => ("Sessions", 0),
            ToDriver::Depart { .. } => ("Depart", 0),
            ToDriver::Stopped { .. } => ("Stopped", 0),
            ToDriver::ExplainMembers { .. } => ("ExplainMembers", 0),
            ToDriver::Restartable { .. } => ("Restartable", 0),
            ToDriver::Passive { .. } => ("Passive", 0),
            ToDriver::Explain { .. } => ("Explain", 0),
        }
    }
}

/// How a save went, short of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Saved {
    /// The change is kept: it may be acknowledged.
    Kept,
    /// The change alone was not kept: the session must send the whole game.
    SendWhole,
}

/// What the data plane reads, published by the driver.
pub(crate) struct View {
    pub members: Vec<(MemberId, MemberStatus)>,
    pub routers: HashMap<MemberId, ActorRef<RouterMsg>>,
    pub synced: bool,
    pub unreplicated: usize,
    /// Games owned here whose backup is behind their latest version.
    pub behind: usize,
    /// Copies held that this node could restart a game from now.
    pub copies: usize,
    /// This node's part in majority fencing.
    pub vote: crate::membership::Vote,
    /// Whether majority fencing is on (writes wait for the control even
    /// with no other member up: it refuses them without a majority).
    pub fencing: bool,
    /// Whether games owned here wait for confirmation (taken over, or
    /// recovered from the store): writes to them wait for the control,
    /// which refuses them until confirmed, even with no other member up.
    pub confirming: bool,
}

/// A link as the driver knows it.
struct Link {
    session: ActorRef<NodeSessionMessage>,
    router: ActorRef<RouterMsg>,
    peer: String,
}

/// The game state a control handles: the encoded game and what it needs
/// to know of it.
pub(crate) fn snapshot_of(game: &Game) -> Result<Snapshot, EngineError> {
    Ok(Snapshot {
        id: game.id,
        version: game.version,
        join_code: game.join_code.clone(),
        users: game.players.iter().map(|p| p.user.clone()).collect(),
        active: game.is_active(),
        state: codec::encode(game)?,
        changes: Vec::new(),
    })
}

/// The game a snapshot holds: its state with its changes replayed.
pub(crate) fn game_of(snapshot: &Snapshot) -> Result<Game, EngineError> {
    let mut game: Game = codec::decode(&snapshot.state)?;
    let changes = snapshot
        .changes
        .iter()
        .map(|c| codec::decode::<Change>(c))
        .collect::<Result<Vec<_>, _>>()?;
    Change::replay(&mut game, &changes).map_err(|e| {
        let why = format!(
            "the changes of game {} do not follow its state: {e}",
            snapshot.id
        );
        CodecError::Decode(why)
    })?;
    Ok(game)
}

fn phase_name(phase: &crate::control::Phase) -> String {
    use crate::control::Phase;
    match phase {
        Phase::Starting(s) => format!(
            "Starting(waiters {}, copied {:?}, claimed {}, announcing {:?}, announced {}, passive {}, persisted {})",
            s.waiters.len(),
            s.copied,
            s.claimed,
            s.announcing,
            s.announced,
            s.asleep.is_some(),
            s.persisted
        ),
        Phase::Running => "Running".into(),
        Phase::Passivating { wake } => format!("Passivating(wake {wake})"),
        Phase::Passive(dormant) => format!("Passive(version {})", dormant.version),
        Phase::Releasing => "Releasing".into(),
        Phase::Moving(m) => format!("Moving(to {}, epoch {})", m.to, m.epoch),
    }
}

/// Everything the driver task owns.
pub(crate) struct Driver {
    pub control: Control,
    pub config: NodeConfig,
    pub this: MemberId,
    pub server: ActorRef<NodeServerMessage>,
    pub local: Arc<LocalDirectory>,
    pub tasks: Tasks,
    pub events: broadcast::Sender<ClusterEvent>,
    pub view: Arc<ArcSwap<View>>,
    pub registry: Registry,
    pub inbox: mpsc::UnboundedReceiver<(Instant, ToDriver)>,
    pub host_events: mpsc::UnboundedReceiver<HostEvent>,
    pub tx: DriverTx,
    pub exchange: Arc<Exchange>,
    /// The durable store, if the node has a data dir.
    pub store: Option<Store>,
}

/// The driver's inbox. Each message is stamped when it is sent, and the
/// control is given that time: it judges peers by when their messages
/// reached this node, not by when a busy driver got to them, so a backlog
/// here is not taken for silence there.
#[derive(Clone)]
pub(crate) struct DriverTx(mpsc::UnboundedSender<(Instant, ToDriver)>);

impl DriverTx {
    pub fn channel() -> (DriverTx, mpsc::UnboundedReceiver<(Instant, ToDriver)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (DriverTx(tx), rx)
    }

    /// Hands the driver `message`, unless the driver is gone.
    pub fn send(&self, message: ToDriver) -> Result<(), DriverGone> {
        self.0
            .send((Instant::now(), message))
            .map_err(|_| DriverGone)
    }
}

/// The driver has stopped (the node is stopping).
#[derive(Debug)]
pub(crate) struct DriverGone;

/// State only the driver task touches.
struct Running {
    epoch: Instant,
    /// The control's latest time: never goes back, though stamps of
    /// concurrent senders may arrive slightly out of order.
    now: Duration,
    /// When the driver next pings every linked peer itself.
    next_ping: Instant,
    links: HashMap<LinkId, Link>,
    by_session: HashMap<ActorId, LinkId>,
    /// Which link each peer's messages are handed over on.
    inbound: Inbound,
    /// Sessions seen authenticated but not (yet) a link, since when.
    unready: HashMap<ActorId, Instant>,
    next_link: LinkId,
    next_call: u64,
    calls: HashMap<u64, oneshot::Sender<Result<Registration, EngineError>>>,
    saves: HashMap<GameId, oneshot::Sender<Result<Saved, EngineError>>>,
    confirms: HashMap<GameId, Vec<oneshot::Sender<Result<(), EngineError>>>>,
    fetches: HashMap<GameId, Vec<oneshot::Sender<Option<Snapshot>>>>,
    leaving: Vec<oneshot::Sender<()>>,
    /// When this node was first asked to leave.
    leave_began: Option<Instant>,
    drained: bool,
    next_stats: Duration,
    /// A digest of what the published members and routers were made from.
    shape: u64,
    /// The registry's change count when it was last published.
    published_changes: u64,
    /// Sessions to start once the effects at hand are carried out.
    starting: Vec<Snapshot>,
    /// Control messages to send at the end of this turn, per link: one
    /// frame each rather than one per message.
    outbox: BTreeMap<LinkId, Vec<Msg>>,
    /// Sessions' saves taken this turn: the control gets them together at
    /// its end, so their copies go to each backup in one request.
    saving: Vec<Update>,
    /// Stops in flight, and the starts that wait for them.
    hosting: Hosting,
}

impl Running {
    /// The control's time for something that happened at `at`.
    fn clock(&mut self, at: Instant) -> Duration {
        self.now = self.now.max(at.saturating_duration_since(self.epoch));
        self.now
    }
}

impl Driver {
    /// Runs until the node stops (its tasks are cancelled).
    pub async fn run(mut self) {
        let mut st = Running {
            epoch: Instant::now(),
            now: Duration::ZERO,
            next_ping: Instant::now(),
            links: HashMap::new(),
            by_session: HashMap::new(),
            inbound: Inbound::default(),
            unready: HashMap::new(),
            next_link: 1,
            next_call: 1,
            calls: HashMap::new(),
            saves: HashMap::new(),
            confirms: HashMap::new(),
            fetches: HashMap::new(),
            leaving: Vec::new(),
            leave_began: None,
            drained: false,
            next_stats: Duration::ZERO,
            shape: 0,
            published_changes: u64::MAX,
            starting: Vec::new(),
            hosting: Hosting::default(),
            outbox: BTreeMap::new(),
            saving: Vec::new(),
        };
        // The control was built at time zero of this clock.
        self.carry_out(&mut st);
        self.end_turn(&mut st);
        loop {
            let wake = st.epoch + self.control.next_wake();
            // What waits in the inbox goes first: a tick or a host event
            // at the present time would make the messages still waiting
            // look late.
            tokio::select! {
                biased;
                message = self.inbox.recv() => {
                    let Some((at, message)) = message else { return };
                    let turn = Instant::now();
                    self.take_timed(&mut st, at, message);
                    self.ping_if_due(&mut st);
                    // Take what else is waiting before publishing once,
                    // within a budget: what the control said (lease
                    // grants, acknowledgements) must not wait for a whole
                    // backlog of heavy inputs.
                    for _ in 0..256 {
                        if turn.elapsed() >= TURN_BUDGET {
                            break;
                        }
                        match self.inbox.try_recv() {
                            Ok((at, message)) => self.take_timed(&mut st, at, message),
                            Err(_) => break,
                        }
                        self.ping_if_due(&mut st);
                    }
                }
                event = self.host_events.recv() => {
                    let Some(event) = event else { return };
                    if matches!(event.reason, EndReason::Concluded | EndReason::Failed(_)) {
                        let now = st.clock(Instant::now());
                        self.control.handle(now, Input::SessionEnded { id: event.id });
                        self.carry_out(&mut st);
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = st.clock(Instant::now());
                    self.control.handle(now, Input::Tick);
                    self.carry_out(&mut st);
                    self.ping_if_due(&mut st);
                }
            }
            self.end_turn(&mut st);
        }
    }

    /// Ends a turn: hands the control the saves taken during it, publishes
    /// what the data plane reads, then sends what the control said, one
    /// frame per link. Published before it is sent: a peer that hears this
    /// node acknowledge a registration may answer its caller at once, and
    /// the caller may then look the game up here.
    fn end_turn(&mut self, st: &mut Running) {
        self.take_saves(st);
        self.publish(st);
        self.send_outbox(st);
    }

    /// Hands the control the saves taken this turn, together.
    fn take_saves(&mut self, st: &mut Running) {
        if !st.saving.is_empty() {
            let saves = std::mem::take(&mut st.saving);
            self.control.handle(st.now, Input::Saves(saves));
            self.carry_out(st);
        }
    }

    /// Sends what the control said this turn, one frame per link.
    fn send_outbox(&mut self, st: &mut Running) {
        for (link, msgs) in std::mem::take(&mut st.outbox) {
            self.send_all(st, link, msgs);
        }
    }

    /// Sends `msgs` over `link` in as few frames as the codec's size limit
    /// allows, in order.
    fn send_all(&self, st: &Running, link: LinkId, mut msgs: Vec<Msg>) {
        let Some(l) = st.links.get(&link) else {
            return;
        };
        let from = self.this.clone();
        let notice = match msgs.len() {
            0 => return,
            1 => Notice::Control {
                from,
                msg: msgs.remove(0),
            },
            _ => Notice::Batch { from, msgs },
        };
        match (protocol::seal(&notice), notice) {
            (Ok(bytes), _) => {
                let _ = l.router.cast(RouterMsg::Notice(bytes));
            }
            // Too large together: each half on its own.
            (Err(_), Notice::Batch { mut msgs, .. }) => {
                let second = msgs.split_off(msgs.len() / 2);
                self.send_all(st, link, msgs);
                self.send_all(st, link, second);
            }
            (Err(e), _) => {
                tracing::warn!(peer = %l.peer, error = %e, "control message not sent")
            }
        }
    }

    /// Pings every linked peer once a heartbeat interval has passed, by
    /// the real clock. The control sends its own heartbeats by its clock,
    /// the arrival time of what it handles, which lags while it works
    /// through a backlog (a heal of thousands of games): its peers must
    /// not take a busy node for a dead one, count it down, and fail its
    /// games over, which makes the next heal heavier still. A driver stuck
    /// in one input pings nobody.
    fn ping_if_due(&self, st: &mut Running) {
        let now = Instant::now();
        if now < st.next_ping {
            return;
        }
        st.next_ping = now + self.config.heartbeat_interval;
        let notice = Notice::Control {
            from: self.this.clone(),
            msg: Msg::Ping,
        };
        if let Ok(bytes) = protocol::seal(&notice) {
            for link in st.links.values() {
                let _ = link.router.cast(RouterMsg::Notice(bytes.clone()));
            }
        }
    }

    /// [`Driver::take`], and a warning when one input kept the node busy
    /// for a large share of the failure timeout: nothing answers
    /// heartbeats meanwhile, and peers may count this node down.
    fn take_timed(&mut self, st: &mut Running, at: Instant, message: ToDriver) {
        let started = Instant::now();
        let (input, messages) = message.brief();
        self.take(st, at, message);
        let took = started.elapsed();
        if took >= self.config.failure_timeout / 4 {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                input,
                messages,
                "one input kept the node busy"
            );
        }
    }

    fn take(&mut self, st: &mut Running, at: Instant, message: ToDriver) {
        let now = st.clock(at);
        match message {
            ToDriver::LinkReady {
                session,
                router,
                peer,
            } => {
                // A peer whose name is no member id is not closed out (its
                // requests get answers) but never becomes a member.
                let member = peer.parse::<MemberId>().ok();
                if let Some(member) = &member {
                    self.exchange.link_up(member.clone(), router.clone());
                }
                let link = st.next_link;
                st.next_link += 1;
                st.by_session.insert(session.get_id(), link);
                st.links.insert(
                    link,
                    Link {
                        session,
                        router,
                        peer: peer.clone(),
                    },
                );
                let waited = st.inbound.ready(link, &peer);
                self.control
                    .handle(now, Input::LinkUp { link, peer: member });
                for msg in waited {
                    self.control.handle(now, Input::Received { link, msg });
                }
            }
            ToDriver::LinkClosed(session) => {
                if let Some(link) = st.by_session.remove(&session) {
                    if let Some(closed) = st.links.remove(&link) {
                        let member = closed.peer.parse::<MemberId>().ok();
                        self.exchange
                            .link_closed(member.as_ref(), closed.router.get_id());
                    }
                    st.outbox.remove(&link);
                    st.inbound.closed(link);
                    self.control.handle(now, Input::LinkDown { link });
                }
            }
            ToDriver::Control { from, msg } => {
                if let Some((link, msg)) = st.inbound.attribute(&from.to_string(), msg) {
                    self.control.handle(now, Input::Received { link, msg });
                }
            }
            ToDriver::Controls { from, msgs } => {
                // One input, so that what the messages lead to goes out
                // together.
                let from = from.to_string();
                let inputs: Vec<Input> = msgs
                    .into_iter()
                    .filter_map(|msg| st.inbound.attribute(&from, msg))
                    .map(|(link, msg)| Input::Received { link, msg })
                    .collect();
                if !inputs.is_empty() {
                    self.control.handle(now, Input::Batch(inputs));
                }
            }
            ToDriver::Create { game, reply } => match snapshot_of(&game) {
                Ok(snapshot) => {
                    let call = st.next_call;
                    st.next_call += 1;
                    st.calls.insert(call, reply);
                    self.control.handle(now, Input::Create { call, snapshot });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            // Kept for the end of the turn, to be copied together.
            ToDriver::Save { update, reply } => {
                st.saves.insert(update.id(), reply);
                st.saving.push(update);
            }
            ToDriver::Confirm { id, reply } => {
                st.confirms.entry(id).or_default().push(reply);
                self.control.handle(now, Input::Confirm(id));
            }
            ToDriver::Fetch { id, reply } => {
                st.fetches.entry(id).or_default().push(reply);
                self.control.handle(now, Input::Fetch(id));
            }
            ToDriver::Input(input) => self.control.handle(now, input),
            ToDriver::Leave(reply) => {
                if st.drained {
                    let _ = reply.send(());
                } else {
                    st.leaving.push(reply);
                    st.leave_began.get_or_insert_with(Instant::now);
                    self.control.handle(now, Input::Leave);
                }
            }
            ToDriver::Sessions(sessions) => {
                let deadline = transport::handshake_deadline(&self.config);
                let mut still = HashMap::new();
                for session in sessions {
                    let id = session.get_id();
                    if st.by_session.contains_key(&id) {
                        continue;
                    }
                    let since = st.unready.get(&id).copied().unwrap_or_else(Instant::now);
                    if since.elapsed() > deadline {
                        tracing::info!("closing a link that never completed its handshake");
                        transport::close_session(&session);
                    } else {
                        still.insert(id, since);
                    }
                }
                st.unready = still;
            }
            ToDriver::Stopped(id) => {
                if let Some(snapshot) = st.hosting.stopped(id) {
                    self.start_sessions(vec![snapshot]);
                }
            }
            ToDriver::ExplainMembers(reply) => {
                let _ = reply.send(self.explain_members(st));
            }
            ToDriver::Explain { id, reply } => {
                let _ = reply.send(self.explain(st, id));
            }
            ToDriver::Passive(reply) => {
                let _ = reply.send(self.control.passive().collect());
            }
            ToDriver::Restartable(reply) => {
                let copies = self
                    .control
                    .restartable()
                    .map(|(id, owner)| (*id, owner.clone()))
                    .collect();
                let _ = reply.send(copies);
            }
            ToDriver::Depart(done) => {
                self.control.handle(now, Input::Depart);
                self.carry_out(st);
                self.take_saves(st);
                self.send_outbox(st);
                let _ = done.send(());
            }
        }
        self.carry_out(st);
    }

    /// Carries out every effect the control decided, in order; the
    /// sessions to start go to the host together.
    fn carry_out(&mut self, st: &mut Running) {
        while let Some(effect) = self.control.poll_effect() {
            self.effect(st, effect);
        }
        // Only now, so that a start also waits for a stop decided after it.
        let starting: Vec<Snapshot> = std::mem::take(&mut st.starting)
            .into_iter()
            .filter_map(|s| st.hosting.start(s))
            .collect();
        if !starting.is_empty() {
            self.start_sessions(starting);
        }
    }

    /// Starts sessions from their snapshots, a chunk at a time (each well
    /// within the host's call timeout), and reports each one started.
    fn start_sessions(&self, snapshots: Vec<Snapshot>) {
        let (local, tx) = (self.local.clone(), self.tx.clone());
        self.tasks.spawn(async move {
            let mut snapshots = snapshots.into_iter().peekable();
            while snapshots.peek().is_some() {
                let mut games = Vec::new();
                for snapshot in snapshots.by_ref().take(START_CHUNK) {
                    match game_of(&snapshot) {
                        Ok(game) => games.push(game),
                        Err(e) => {
                            let input = Input::SessionStarted {
                                id: snapshot.id,
                                error: Some(e.to_string()),
                            };
                            let _ = tx.send(ToDriver::Input(input));
                        }
                    }
                }
                let mut started_here = Vec::new();
                for (id, started) in local.start_many_saved(games).await {
                    // A session of the game already running here is what
                    // the control asked for (a start repeated, or one
                    // that came up late).
                    let error = match started {
                        Ok(()) | Err(EngineError::AlreadyRunning(_)) => None,
                        Err(e) => Some(e.to_string()),
                    };
                    started_here.push(Input::SessionStarted { id, error });
                }
                // Reported together, so that the games they make ready are
                // announced together.
                let _ = tx.send(ToDriver::Input(Input::Batch(started_here)));
            }
        });
    }

    fn effect(&mut self, st: &mut Running, effect: Effect) {
        match effect {
            Effect::Send { link, msg } => {
                if st.links.contains_key(&link) {
                    st.outbox.entry(link).or_default().push(msg);
                }
            }
            Effect::Dial { addr } => {
                let (config, server, this, tx) = (
                    self.config.clone(),
                    self.server.clone(),
                    self.this.clone(),
                    self.tx.clone(),
                );
                self.tasks.spawn(async move {
                    match transport::connect(&config, &server, &this, &addr).await {
                        Ok(()) => {}
                        Err(transport::DialError::Refused) => {
                            tracing::debug!(%addr, "dial refused");
                            let _ = tx.send(ToDriver::Input(Input::DialRefused { addr }));
                        }
                        Err(e) => tracing::debug!(%addr, error = %e, "dial failed"),
                    }
                });
            }
            Effect::CloseLink { link } => {
                // What the control said before closing goes first.
                if let Some(msgs) = st.outbox.remove(&link) {
                    self.send_all(st, link, msgs);
                }
                if let Some(l) = st.links.get(&link) {
                    transport::close_session(&l.session);
                }
            }
            Effect::StartSession(snapshot) => st.starting.push(snapshot),
            Effect::StopSession { id, reason } => {
                // The session running now, not one started later.
                let Some(session) = self.local.sessions().session(id) else {
                    return;
                };
                st.hosting.stop_begins(id);
                let (local, events, this, tx) = (
                    self.local.clone(),
                    self.events.clone(),
                    self.this.clone(),
                    self.tx.clone(),
                );
                self.tasks.spawn(async move {
                    let state = local.release_session(id, &session).await;
                    gone(&local, &session).await;
                    let _ = tx.send(ToDriver::Stopped(id));
                    if let (StopReason::ConflictLost { winner }, Ok(Some(state))) = (reason, state)
                    {
                        tracing::warn!(game = %id, winner = %winner.owner, "registry conflict lost; stopping our copy");
                        let _ = events.send(ClusterEvent::ConflictResolved {
                            id,
                            winner: winner.owner,
                            loser: this,
                            loser_state: Some(Box::new(state)),
                        });
                    }
                });
            }
            Effect::ReleaseSession(id) => {
                let tx = self.tx.clone();
                let Some(session) = self.local.sessions().session(id) else {
                    let input = Input::SessionReleased { id, snapshot: None };
                    let _ = tx.send(ToDriver::Input(input));
                    return;
                };
                // A game released may come straight back (a failed move is
                // retaken here): counted as stopping, like a stop.
                st.hosting.stop_begins(id);
                let local = self.local.clone();
                self.tasks.spawn(async move {
                    let snapshot = match local.release_session(id, &session).await {
                        Ok(Some(game)) => snapshot_of(&game).ok(),
                        _ => None,
                    };
                    gone(&local, &session).await;
                    let _ = tx.send(ToDriver::Stopped(id));
                    let _ = tx.send(ToDriver::Input(Input::SessionReleased { id, snapshot }));
                });
            }
            Effect::Persist { reg, snapshot } => {
                if let Some(store) = &self.store {
                    store.keep(reg, snapshot);
                }
            }
            Effect::Unpersist(id) => {
                if let Some(store) = &self.store {
                    store.forget(id);
                }
            }
            Effect::Passivate(id) => {
                let tx = self.tx.clone();
                let Some(session) = self.local.sessions().session(id) else {
                    let input = Input::SessionPassivated { id, snapshot: None };
                    let _ = tx.send(ToDriver::Input(input));
                    return;
                };
                // A passivated game may be woken at once: counted as
                // stopping, so its next start waits for this session to go.
                st.hosting.stop_begins(id);
                let local = self.local.clone();
                self.tasks.spawn(async move {
                    let snapshot = match local.passivate_session(id, &session).await {
                        Ok(Some(game)) => snapshot_of(&game).ok(),
                        _ => None,
                    };
                    // The state is final once the session replied: the
                    // control has it at once, while the session exits.
                    let stopped = snapshot.is_some();
                    let _ = tx.send(ToDriver::Input(Input::SessionPassivated { id, snapshot }));
                    if stopped {
                        gone(&local, &session).await;
                    }
                    let _ = tx.send(ToDriver::Stopped(id));
                });
            }
            Effect::Resave(id) => {
                if let Some(session) = self.local.sessions().session(id) {
                    let _ = session.cast(SessionMsg::Resave);
                }
            }
            Effect::Saved { id, result } => {
                if let Some(reply) = st.saves.remove(&id) {
                    let _ = reply.send(result.map(|()| Saved::Kept));
                }
            }
            Effect::SendWhole(id) => {
                if let Some(reply) = st.saves.remove(&id) {
                    let _ = reply.send(Ok(Saved::SendWhole));
                }
            }
            Effect::Confirmed { id, result } => {
                // Each request got its own answer, in order.
                if let Some(replies) = st.confirms.get_mut(&id) {
                    if !replies.is_empty() {
                        let _ = replies.remove(0).send(result);
                    }
                    if replies.is_empty() {
                        st.confirms.remove(&id);
                    }
                }
            }
            Effect::Fetched { id, snapshot } => {
                for reply in st.fetches.remove(&id).unwrap_or_default() {
                    let _ = reply.send(snapshot.clone());
                }
            }
            Effect::Reply { call, result } => {
                // The caller may look the game up the moment it hears back.
                self.publish(st);
                if let Some(reply) = st.calls.remove(&call) {
                    let _ = reply.send(result);
                }
            }
            Effect::Drained { moved } => {
                tracing::info!(moved, "handed sessions over");
                let took = st.leave_began.map_or(Duration::ZERO, |at| at.elapsed());
                let _ = self
                    .events
                    .send(ClusterEvent::HandedOver { games: moved, took });
                self.publish(st);
                st.drained = true;
                for reply in st.leaving.drain(..) {
                    let _ = reply.send(());
                }
            }
            Effect::Event(Event::Forgot { member, games }) => {
                tracing::warn!(peer = %member, games, "forgot games of a down member that nobody restarted");
            }
            Effect::Event(Event::Incompatible { peer, speaks }) => {
                tracing::error!(%peer, theirs = ?speaks,
                    ours = ?(protocol::MIN_PROTOCOL_VERSION, protocol::PROTOCOL_VERSION),
                    "refusing peer: incompatible protocol versions");
            }
            Effect::Event(event) => {
                let event = match event {
                    Event::Forgot { .. } | Event::Incompatible { .. } => return,
                    Event::MemberUp(m) => ClusterEvent::MemberUp(m),
                    Event::MemberLeaving(m) => ClusterEvent::MemberLeaving(m),
                    Event::MemberDown(m, why) => ClusterEvent::MemberDown(m, why),
                    Event::FailedOver {
                        from,
                        sessions,
                        after,
                    } => ClusterEvent::FailedOver {
                        from,
                        sessions,
                        after,
                    },
                    Event::QuorumLost => ClusterEvent::QuorumLost,
                    Event::QuorumRegained => ClusterEvent::QuorumRegained,
                    Event::ConflictWon { id, winner, loser } => ClusterEvent::ConflictResolved {
                        id,
                        winner,
                        loser,
                        loser_state: None,
                    },
                };
                tracing::info!(?event, "cluster event");
                let _ = self.events.send(event);
            }
        }
    }

    /// This node's members as its control sees them, and its links.
    fn explain_members(&self, st: &Running) -> String {
        let now = st.epoch.elapsed();
        let mut out = format!(
            "{}: leaving {}, {} games owned, {} copies held\n",
            self.this,
            self.control.is_leaving(),
            self.control.owned().len(),
            self.control.copies().count()
        );
        for (id, m) in self.control.members().iter() {
            out += &format!(
                "  {id} at {}: {:?}, link {:?}, unlinked for {:?}, heard {:?} ago, synced {}\n",
                m.addr,
                m.status,
                m.link,
                m.unlinked_since.map(|t| now.saturating_sub(t)),
                now.saturating_sub(m.heard),
                m.synced
            );
        }
        let mut links: Vec<String> = st
            .links
            .iter()
            .map(|(id, l)| format!("{id}->{}", l.peer))
            .collect();
        links.sort();
        out += &self.control.quorum().explain(now);
        out += &format!(
            "  links {links:?}; sessions not yet links {}; peers heard before their link {:?}\n",
            st.unready.len(),
            st.inbound.waiting_peers()
        );
        out
    }

    /// Everything this node knows of game `id`, in one line per part.
    fn explain(&self, st: &Running, id: GameId) -> String {
        let mut out = format!(
            "{}: registry {:?}\n",
            self.this,
            self.control.registry().lookup(id)
        );
        match self.control.owned().get(&id) {
            Some(o) => {
                out += &format!(
                    "  owned: phase {:?} up {} backup {:?} copying {:?} queued {:?} latest {:?}\n",
                    phase_name(&o.phase),
                    o.up,
                    o.backup,
                    o.copying(),
                    o.queued().map(|s| s.version()),
                    o.latest().map(|s| s.version())
                )
            }
            None => out += "  not owned\n",
        }
        for (_, owner, held) in self.control.copies().filter(|(g, _, _)| **g == id) {
            out += &format!(
                "  copy of {owner}: epoch {} version {} generation {} pinned {}\n",
                held.epoch, held.snapshot.version, held.gen, held.pinned
            );
        }
        out += &format!(
            "  moved to {:?}; session {:?}; stops in flight, start waiting {:?}; starting {}\n",
            self.control.moved_to(id),
            self.local.sessions().session(id).map(|s| s.get_id()),
            st.hosting.state_of(id),
            st.starting.iter().any(|s| s.id == id)
        );
        out
    }

    /// Publishes what the data plane reads: the registry when it changed
    /// (but for the owner's own version bumps, see [`Table::changes`]), the
    /// members and their routers when they changed, the counts every
    /// 50 ms. Readers waiting for a change are told when something went
    /// out.
    ///
    /// [`Table::changes`]: crate::registry::Table::changes
    fn publish(&mut self, st: &mut Running) {
        let changes = self.control.registry().changes();
        let table = changes != st.published_changes;
        if table {
            st.published_changes = changes;
            self.registry.replace(self.control.registry().clone());
        }
        if self.publish_view(st) || table {
            self.registry.published();
        }
    }

    /// Publishes the members and counts; returns whether anything changed.
    fn publish_view(&mut self, st: &mut Running) -> bool {
        let members = self.control.members();
        let shape = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            for (id, m) in members.iter() {
                (id, m.status as u8, m.link).hash(&mut h);
            }
            (members.synced(), st.next_link, st.links.len()).hash(&mut h);
            self.control.quorum().fencing().hash(&mut h);
            self.control.quorum().confirming().hash(&mut h);
            h.finish()
        };
        let now = st.epoch.elapsed();
        let stats_due = now >= st.next_stats;
        if shape == st.shape && !stats_due {
            return false;
        }
        let old = self.view.load_full();
        let (unreplicated, behind, copies, vote) = if stats_due {
            let counting = Instant::now();
            let stats = (
                self.control.unreplicated(),
                self.control.copies_behind(),
                self.control.restartable_copies(),
                self.control.vote(),
            );
            // Counting walks every game, and looks each copy up in the
            // registry: the next count waits 500 times as long as this one
            // took, so counting stays a small share of the node's time
            // however many games it holds, even with 16 nodes on two
            // cores (at 20 times, their counts took a third of the
            // machine). The counts are that much older at most.
            st.next_stats = now + (counting.elapsed() * STATS_PAUSE).max(STATS_EVERY);
            stats
        } else {
            (old.unreplicated, old.behind, old.copies, old.vote.clone())
        };
        if shape == st.shape {
            let changed = (unreplicated, behind, copies, &vote)
                != (old.unreplicated, old.behind, old.copies, &old.vote);
            if changed {
                self.view.store(Arc::new(View {
                    members: old.members.clone(),
                    routers: old.routers.clone(),
                    synced: old.synced,
                    unreplicated,
                    behind,
                    copies,
                    vote,
                    fencing: old.fencing,
                    confirming: old.confirming,
                }));
            }
            return changed;
        }
        st.shape = shape;
        let mut routers = HashMap::new();
        for (id, m) in members.iter() {
            if m.status == MemberStatus::Down {
                continue;
            }
            if let Some(link) = st.inbound.link_of(&id.to_string()) {
                if let Some(l) = st.links.get(&link) {
                    routers.insert(id.clone(), l.router.clone());
                }
            }
        }
        self.view.store(Arc::new(View {
            members: members
                .iter()
                .map(|(id, m)| (id.clone(), m.status))
                .collect(),
            routers,
            synced: members.synced(),
            unreplicated,
            behind,
            copies,
            vote,
            fencing: self.control.quorum().fencing(),
            confirming: self.control.quorum().confirming(),
        }));
        true
    }
}

//! The control plane of one node as a single state machine: every decision
//! about members, the registry, ownership, backup copies, moves and
//! failovers is taken here, synchronously and without I/O.
//!
//! A driver feeds it [`Input`]s with the time they happened
//! ([`Control::handle`]) and carries out the [`Effect`]s it queues (send a
//! message over a link, dial, start or stop a session, answer a caller). It
//! never reads a clock, spawns a task or takes a lock, so the same code runs
//! in a node and in a deterministic simulation, where every interleaving of
//! messages, timers and faults is one seed away from being replayed.
//!
//! ```
//! # // The module is public with the `testing` feature only.
//! # #[cfg(feature = "testing")]
//! # fn main() {
//! use minotaur_cluster::control::{Control, ControlConfig, Effect, Input};
//! use minotaur_cluster::MemberId;
//! use std::time::Duration;
//!
//! let mut n1 = Control::new(MemberId::new("n1", 1), "addr-1".into(), ControlConfig::default(), Duration::ZERO);
//! n1.handle(Duration::ZERO, Input::LinkUp { link: 7, peer: Some(MemberId::new("n2", 1)) });
//! // The first thing said over a new link is who we are.
//! assert!(matches!(n1.poll_effect(), Some(Effect::Send { link: 7, .. })));
//! # }
//! # #[cfg(not(feature = "testing"))]
//! # fn main() {}
//! ```

mod fencing;
mod games;
pub mod hosting;
pub mod inbound;
mod join;
mod members;
mod moves;
mod passive;
pub mod quorum;
mod recovery;
mod replicas;
mod starts;
#[cfg(test)]
mod tests;
pub mod wire;

pub use crate::config::SplitPolicy;
pub use games::{CopyReason, Dormant, Held, Moving, Owned, Phase, Starting, Waiter};
pub use members::{Member, Members};
pub use quorum::{Quorum, Standing};

use crate::config::Redistribution;
use crate::membership::{DownReason, MemberId, MemberStatus};
use crate::placement::{Placement, Rendezvous};
use crate::registry::{Registration, Table, Time};
use games::{Copies, CopyBatch};
use minotaur_core::{EngineError, GameId, JoinCode};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use wire::{Corr, Msg, Snapshot, Update};

/// A link to a peer, numbered by the driver.
pub type LinkId = u64;
/// A local caller waiting for an answer, numbered by the driver.
pub type CallId = u64;

/// What a control is configured with (a subset of the node's config).
#[derive(Clone)]
pub struct ControlConfig {
    /// How often peers are told this node is alive.
    pub heartbeat_interval: Duration,
    /// A peer not heard from for this long is counted down.
    pub failure_timeout: Duration,
    /// Deadline of every request to a peer.
    pub call_timeout: Duration,
    /// How long a live member may go without a link before it is counted
    /// down: when both ends dial at once, ractor_cluster closes one of the
    /// two links once both are up, and the other may show up a moment
    /// after the close.
    pub relink_grace: Duration,
    /// Copies of each game kept on other members (0 or 1).
    pub replication_factor: usize,
    /// What a node does when it cannot reach a majority.
    pub split: SplitPolicy,
    /// How long a lease granted by a majority lets a node acknowledge
    /// writes without hearing from it again.
    pub lease: Duration,
    /// The most any node's clock may run fast or slow, as a fraction (0.01:
    /// 1%): a silent member's games are taken over only after
    /// `lease * (1 + drift) / (1 - drift)` without granting it anything.
    pub clock_drift: f64,
    /// Where new sessions go.
    pub placement: Arc<dyn Placement>,
    /// Whether this node keeps its games in a durable store (its
    /// `data_dir` is set): then a game taken here is written to the store
    /// ([`Effect::Persist`]) and a start is answered only once it is there.
    pub durable: bool,
    /// Whether idle games are passivated (the node's `idle_after` is set):
    /// then a failover restarts the games it takes over passive, and the
    /// first command for each starts its session.
    pub passivate: bool,
    /// Whether a member joining takes running sessions.
    pub redistribution: Redistribution,
    /// Addresses to join through.
    pub seeds: Vec<String>,
    /// The most registrations or game copies one message carries (a sync,
    /// a failover's announcement, a batch of copies): larger sets go in
    /// several messages, so none nears the codec's or the transport's size
    /// limit.
    pub batch: usize,
    /// Oldest protocol version spoken.
    pub min_protocol: u32,
    /// Newest protocol version spoken.
    pub max_protocol: u32,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            heartbeat_interval: Duration::from_millis(200),
            failure_timeout: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
            relink_grace: Duration::from_millis(100),
            replication_factor: 1,
            split: SplitPolicy::default(),
            lease: Duration::from_secs(1),
            clock_drift: 0.01,
            placement: Arc::new(Rendezvous),
            passivate: false,
            durable: false,
            redistribution: Redistribution::Passive,
            seeds: Vec::new(),
            batch: 1000,
            min_protocol: wire::MIN_PROTOCOL_VERSION,
            max_protocol: wire::PROTOCOL_VERSION,
        }
    }
}

/// Something that happened to the node.
#[derive(Debug, Clone)]
pub enum Input {
    /// Time passed (the driver calls at [`Control::next_wake`] or sooner).
    Tick,
    /// A link to a peer is authenticated and can carry messages.
    LinkUp {
        /// The link.
        link: LinkId,
        /// The member at the other end, as the transport authenticated it
        /// (`None` if its node name is no member id): its messages may come
        /// attributed to this link before its hello over it does.
        peer: Option<MemberId>,
    },
    /// A link closed.
    LinkDown {
        /// The link.
        link: LinkId,
    },
    /// A dial asked for with [`Effect::Dial`] was refused: nothing listens
    /// at `addr`, so a member that had its link there closed has died, and
    /// need not be waited for.
    DialRefused {
        /// The address dialled.
        addr: String,
    },
    /// Several inputs, handled in order as one: the copies and
    /// announcements they lead to go out together, one message per peer
    /// (the driver hands over a peer's frame, or the sessions started
    /// together, this way).
    Batch(Vec<Input>),
    /// A message arrived over a link.
    Received {
        /// The link.
        link: LinkId,
        /// The message.
        msg: Msg,
    },
    /// A caller asks to create a game.
    Create {
        /// Answered with [`Effect::Reply`].
        call: CallId,
        /// The new game.
        snapshot: Snapshot,
    },
    /// Sessions applied writes and ask for them to be kept (copied to each
    /// game's backup) before acknowledging them; each is answered with an
    /// [`Effect::Saved`], or [`Effect::SendWhole`] for a change the backup
    /// cannot take alone. Saves taken together go to each backup in one
    /// request (a group commit).
    Saves(Vec<Update>),
    /// A session asked for with [`Effect::StartSession`] started, or not.
    SessionStarted {
        /// The game.
        id: GameId,
        /// Why not, if it did not. A session of the game that was running
        /// here already counts as started.
        error: Option<String>,
    },
    /// A session asked for with [`Effect::ReleaseSession`] stopped and
    /// handed its state back (`None`: it was gone already).
    SessionReleased {
        /// The game.
        id: GameId,
        /// Its last state.
        snapshot: Option<Snapshot>,
    },
    /// A session ended on its own: the game concluded, or it failed for good.
    SessionEnded {
        /// The game.
        id: GameId,
    },
    /// Game `id`'s session took no command for its idle period: it may be
    /// passivated ([`Effect::Passivate`]).
    Idle(GameId),
    /// A session asked for with [`Effect::Passivate`] stopped and handed
    /// its state back, or declined (`None`: a command came meanwhile).
    SessionPassivated {
        /// The game.
        id: GameId,
        /// Its last state.
        snapshot: Option<Snapshot>,
    },
    /// A command came for game `id`, whose session does not run here: if
    /// the game is passive, start it.
    Activate(GameId),
    /// The games asked for with [`Effect::Persist`] are in the durable
    /// store (`ok`), or could not be written there.
    Persisted {
        /// The games.
        ids: Vec<GameId>,
        /// Whether the commit succeeded.
        ok: bool,
    },
    /// The games this node's durable store held when the node started: it
    /// owns them again, under a new epoch (the node is a new incarnation),
    /// each with its registration as last stored and its latest state.
    Recovered(Vec<(Registration, Snapshot)>),
    /// A failed session asks for its game's backup copy to restart from;
    /// answered with [`Effect::Fetched`].
    Fetch(GameId),
    /// A session asks whether the state it holds of a game is the latest
    /// acknowledged one, before a confirmed read; answered with
    /// [`Effect::Confirmed`].
    Confirm(GameId),
    /// Leave the cluster: hand every session over, then [`Effect::Drained`].
    Leave,
    /// Say goodbye to every peer (after [`Effect::Drained`], before the
    /// links close).
    Depart,
}

/// Why a session is stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Another member's session of the game won the registry conflict.
    ConflictLost {
        /// The winner's registration.
        winner: Registration,
    },
    /// A new game's state could not be copied to a backup.
    NotReplicated,
    /// The game could not be written to the durable store.
    NotStored,
    /// The session finished starting after this node gave the game up
    /// (it lost a conflict meanwhile, say): the stop then found nothing to
    /// stop, so this one stops the session that came up late.
    NotOwned,
}

/// Something that happened in the cluster, for subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A member joined (or came back).
    MemberUp(MemberId),
    /// A member started draining.
    MemberLeaving(MemberId),
    /// A member is gone.
    MemberDown(MemberId, DownReason),
    /// Sessions of a down member were restarted here from their copies.
    FailedOver {
        /// The member that went down.
        from: MemberId,
        /// Sessions restarted.
        sessions: usize,
        /// Since this node last heard from it.
        after: std::time::Duration,
    },
    /// A peer speaking no protocol version this node speaks was refused
    /// (its link closed).
    Incompatible {
        /// The peer.
        peer: MemberId,
        /// The versions it speaks.
        speaks: (u32, u32),
    },
    /// Games of a down member that nobody restarted were forgotten: their
    /// owner and their backup went down together (or the backup's copy was
    /// kept before its own lease lapsed, and may be stale).
    Forgot {
        /// The member.
        member: MemberId,
        /// How many games.
        games: usize,
    },
    /// This node lost its lease: it cannot prove it belongs to a majority,
    /// and acknowledges no write until it can again.
    QuorumLost,
    /// This node holds its lease again and confirmed the games it kept:
    /// writes are acknowledged again.
    QuorumRegained,
    /// Two sessions of one game met; the one with the higher version won,
    /// and this node hosted neither or the winner.
    ConflictWon {
        /// The game.
        id: GameId,
        /// The winner's owner.
        winner: MemberId,
        /// The loser's owner.
        loser: MemberId,
    },
}

/// Something the driver must do.
#[derive(Debug, Clone)]
pub enum Effect {
    /// Send `msg` over `link`.
    Send {
        /// The link.
        link: LinkId,
        /// The message.
        msg: Msg,
    },
    /// Open a link to `addr`.
    Dial {
        /// The address.
        addr: String,
    },
    /// Close `link` (its member is counted down).
    CloseLink {
        /// The link.
        link: LinkId,
    },
    /// Start a session from `snapshot`; report [`Input::SessionStarted`].
    StartSession(Snapshot),
    /// Stop game `id`'s session for good.
    StopSession {
        /// The game.
        id: GameId,
        /// Why.
        reason: StopReason,
    },
    /// Stop game `id`'s session and hand its state back with
    /// [`Input::SessionReleased`]; it is moving.
    ReleaseSession(GameId),
    /// Write game `reg.id` to the durable store, in the state `snapshot`:
    /// this node took it. Reported with [`Input::Persisted`].
    Persist {
        /// Its registration here.
        reg: Registration,
        /// Its state.
        snapshot: Snapshot,
    },
    /// Remove game `id` from the durable store: it is not this node's any
    /// more.
    Unpersist(GameId),
    /// Ask game `id`'s idle session to stop and hand its state back,
    /// reported with [`Input::SessionPassivated`]: the game becomes
    /// passive.
    Passivate(GameId),
    /// Ask game `id`'s session to save its current state again (its copy
    /// must move to another member).
    Resave(GameId),
    /// The outcome of a save of game `id` (see [`Input::Saves`]).
    Saved {
        /// The game.
        id: GameId,
        /// Whether the write may be acknowledged.
        result: Result<(), EngineError>,
    },
    /// The save of game `id`, sent as an [`Update::Delta`], is not kept:
    /// its session must send the whole game instead (its backup is new,
    /// behind, or has enough changes to replay).
    SendWhole(GameId),
    /// The answer to [`Input::Confirm`].
    Confirmed {
        /// The game.
        id: GameId,
        /// Whether the read may be answered.
        result: Result<(), EngineError>,
    },
    /// The answer to [`Input::Fetch`].
    Fetched {
        /// The game.
        id: GameId,
        /// The copy, if one was found.
        snapshot: Option<Snapshot>,
    },
    /// The answer to a local call.
    Reply {
        /// The call.
        call: CallId,
        /// Its outcome.
        result: Result<Registration, EngineError>,
    },
    /// Every session was handed over (or there is nobody to take them).
    Drained {
        /// Sessions handed over since the leave began.
        moved: usize,
    },
    /// A cluster event for subscribers.
    Event(Event),
}

/// A request to a peer whose answer is awaited.
#[derive(Debug, Clone)]
enum Request {
    /// A starting new game's join-code claim at the code's home, `to`,
    /// after the homes in `tried` did not answer.
    Claim {
        id: GameId,
        code: JoinCode,
        to: MemberId,
        tried: Vec<MemberId>,
    },
    /// A create's start on another member.
    Create {
        call: CallId,
        snapshot: Snapshot,
        to: MemberId,
        refused: Vec<MemberId>,
    },
    /// Starting games' registrations, acknowledged by `waiting`.
    Announce {
        ids: Vec<GameId>,
        waiting: BTreeSet<MemberId>,
    },
    /// A game moving to another member (see [`Phase::Moving`]).
    Move { id: GameId },
    /// A leaving node's failover start on another member.
    Place {
        snapshot: Snapshot,
        epoch: u64,
        to: MemberId,
    },
    /// A failed session's copy, asked of its backup.
    Fetch { id: GameId },
}

/// One node's control plane.
pub struct Control {
    config: ControlConfig,
    addr: String,
    members: Members,
    quorum: Quorum,
    registry: Table,
    owned: BTreeMap<GameId, Owned>,
    copies: Copies,
    copy_batches: BTreeMap<Corr, CopyBatch>,
    requests: BTreeMap<Corr, (Request, Time)>,
    /// Links up, with the member whose hello came over each.
    links: BTreeMap<LinkId, Option<MemberId>>,
    /// Links closed lately, with their member: what was sent over one
    /// before it closed may still arrive (a goodbye, say).
    closed: BTreeMap<LinkId, MemberId>,
    dialed: BTreeMap<String, Time>,
    /// Down members whose registrations are forgotten at the given time.
    purges: Vec<(Time, MemberId)>,
    /// Games recently moved away, and to whom.
    moved: BTreeMap<GameId, (MemberId, Time)>,
    leaving: bool,
    drained: bool,
    /// Sessions handed over since this node began to leave.
    handed_over: usize,
    /// The games each member's syncs in progress have listed so far.
    syncing: BTreeMap<(MemberId, Corr), BTreeSet<GameId>>,
    /// The newest sync each member finished.
    last_sync: BTreeMap<MemberId, Corr>,
    /// Games were recovered from the store and the node has seeds: until
    /// a peer's registry arrived (or this time passed), they are not
    /// confirmed, so that none takes a write before this node learns
    /// whether a member took it over while it was down.
    recovering_until: Option<Time>,
    /// Peers whose last digest differed from our view of their games.
    digest_differs: BTreeSet<MemberId>,
    /// Games a drain is still to release, and those it released that are
    /// still on their way (see `moves::DRAIN_WINDOW`).
    drain_queue: VecDeque<GameId>,
    draining: BTreeSet<GameId>,
    /// This node said goodbye: it dials nobody any more.
    departed: bool,
    /// Members that said goodbye: never members again (a restarted node
    /// is a new incarnation).
    gone: BTreeSet<MemberId>,
    next_corr: Corr,
    next_tick: Time,
    ticks: u64,
    now: Time,
    effects: VecDeque<Effect>,
    /// Registrations to tell each peer, sent together (before anything
    /// else sent to that peer, and at the latest when the input is
    /// handled): a split's heal settles thousands of conflicts at once,
    /// which would otherwise be a message per game and peer.
    notices: BTreeMap<MemberId, Vec<Registration>>,
    /// First copies of games started during the input at hand, sent
    /// together when it is handled (one `Copy` per backup).
    starting_copies: BTreeMap<GameId, Update>,
    /// Starting games ready to be announced, announced together when the
    /// input at hand is handled (one `Registered` per peer).
    to_announce: BTreeSet<GameId>,
}

/// Ticks between sweeps that re-place backup copies and tell backups what
/// they hold.
const SWEEP_EVERY: u64 = 10;
/// Ticks between member-list gossip rounds.
const GOSSIP_EVERY: u64 = 5;

impl Control {
    /// The control of a node that knows only itself.
    pub fn new(this: MemberId, addr: String, config: ControlConfig, now: Time) -> Self {
        let quorum = Quorum::new(this.clone(), config.split, config.lease, config.clock_drift);
        let mut control = Control {
            members: Members::new(this, addr.clone(), now),
            quorum,
            config,
            addr,
            registry: Table::default(),
            owned: BTreeMap::new(),
            copies: Copies::default(),
            copy_batches: BTreeMap::new(),
            requests: BTreeMap::new(),
            links: BTreeMap::new(),
            closed: BTreeMap::new(),
            dialed: BTreeMap::new(),
            purges: Vec::new(),
            moved: BTreeMap::new(),
            leaving: false,
            drained: false,
            handed_over: 0,
            syncing: BTreeMap::new(),
            last_sync: BTreeMap::new(),
            recovering_until: None,
            digest_differs: BTreeSet::new(),
            drain_queue: VecDeque::new(),
            draining: BTreeSet::new(),
            departed: false,
            gone: BTreeSet::new(),
            next_corr: 1,
            next_tick: now,
            ticks: 0,
            now,
            effects: VecDeque::new(),
            notices: BTreeMap::new(),
            starting_copies: BTreeMap::new(),
            to_announce: BTreeSet::new(),
        };
        for seed in control.config.seeds.clone() {
            control.dial(&seed);
        }
        control
    }

    /// Handles one input at time `now` (never earlier than the last one's).
    pub fn handle(&mut self, now: Time, input: Input) {
        self.now = self.now.max(now);
        self.take(input);
        self.run_timers();
        self.drain_more();
        self.send_batched();
        while let Some(peer) = self.notices.keys().next().cloned() {
            self.flush_notices(&peer);
        }
    }

    fn take(&mut self, input: Input) {
        match input {
            Input::Batch(inputs) => {
                for input in inputs {
                    self.take(input);
                }
            }
            Input::Tick => {}
            Input::LinkUp { link, peer } => self.on_link_up(link, peer),
            Input::LinkDown { link } => self.on_link_down(link),
            Input::DialRefused { addr } => self.on_dial_refused(&addr),
            Input::Received { link, msg } => self.on_message(link, msg),
            Input::Create { call, snapshot } => self.create(call, snapshot),
            Input::Saves(snapshots) => self.save(snapshots),
            Input::SessionStarted { id, error } => self.on_session_started(id, error),
            Input::SessionReleased { id, snapshot } => self.on_released(id, snapshot),
            Input::SessionEnded { id } => self.on_session_ended(id),
            Input::Idle(id) => self.on_idle(id),
            Input::SessionPassivated { id, snapshot } => self.on_passivated(id, snapshot),
            Input::Activate(id) => self.activate(id),
            Input::Persisted { ids, ok } => self.on_persisted(ids, ok),
            Input::Recovered(games) => self.recover(games),
            Input::Fetch(id) => self.fetch(id),
            Input::Confirm(id) => self.confirm_read(id),
            Input::Leave => self.leave(),
            Input::Depart => {
                self.departed = true;
                self.broadcast(Msg::Bye);
            }
        }
    }

    /// The next effect to carry out, in the order they were decided.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// When the control next needs an [`Input::Tick`].
    pub fn next_wake(&self) -> Time {
        let mut wake = self.next_tick;
        for m in self.members.iter().map(|(_, m)| m) {
            if let Some(since) = m.unlinked_since {
                wake = wake.min(since + self.config.relink_grace);
            }
        }
        wake
    }

    /// This node.
    pub fn this(&self) -> &MemberId {
        self.members.this()
    }

    /// Where peers reach this node.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The members as this node sees them.
    pub fn members(&self) -> &Members {
        &self.members
    }

    /// The vote, this node's lease and the fences.
    pub fn quorum(&self) -> &Quorum {
        &self.quorum
    }

    /// This node's part in majority fencing now.
    pub fn vote(&self) -> crate::membership::Vote {
        let quorum = &self.quorum;
        let with = |standing: Standing| -> Vec<MemberId> {
            quorum
                .standing()
                .iter()
                .filter(|(m, s)| **s == standing && !quorum.is_out(m))
                .map(|(m, _)| m.clone())
                .collect()
        };
        crate::membership::Vote {
            fencing: quorum.fencing(),
            voters: with(Standing::Voter),
            pending: with(Standing::Pending),
            holds_lease: quorum.holds(self.now),
            confirming: self
                .owned
                .keys()
                .filter(|id| quorum.is_suspect(**id))
                .count(),
        }
    }

    /// Whether this node may acknowledge writes now (it holds its lease).
    pub fn holds_lease(&self) -> bool {
        self.quorum.holds(self.now)
    }

    /// This node's copy of the registry.
    pub fn registry(&self) -> &Table {
        &self.registry
    }

    /// The games this node owns.
    pub fn owned(&self) -> &BTreeMap<GameId, Owned> {
        &self.owned
    }

    /// The copies this node holds for other members: game, owner, copy.
    pub fn copies(&self) -> impl Iterator<Item = (&GameId, &MemberId, &Held)> {
        self.copies.iter()
    }

    /// How many of the copies held here this node could restart its game
    /// from now: those its owner confirmed in a lease generation of this
    /// node that no majority can have fenced (or pinned when the owner went
    /// down), of games registered to that owner here (or not at all). A
    /// copy kept of a down owner whose game already runs elsewhere would
    /// restart nothing.
    pub fn restartable_copies(&self) -> usize {
        self.restartable().count()
    }

    /// The copies counted by [`Control::restartable_copies`]: each game
    /// with the owner that sent it.
    pub fn restartable(&self) -> impl Iterator<Item = (&GameId, &MemberId)> {
        let from = self.quorum.current_from();
        self.copies
            .iter()
            .filter(move |(_, _, h)| h.current(from))
            .filter(|(id, owner, _)| {
                self.registry
                    .lookup(**id)
                    .is_none_or(|reg| &reg.owner == *owner)
            })
            .map(|(id, owner, _)| (id, owner))
    }

    /// Whether this node is leaving.
    pub fn is_leaving(&self) -> bool {
        self.leaving
    }

    /// The member game `id` moved to from here, recently.
    pub fn moved_to(&self, id: GameId) -> Option<&MemberId> {
        self.moved.get(&id).map(|(to, _)| to)
    }

    /// Games owned here whose latest state has no copy on a member that is
    /// up (0 with replication off or no other member up).
    pub fn unreplicated(&self) -> usize {
        if self.config.replication_factor == 0 {
            return 0;
        }
        let up: std::collections::HashSet<MemberId> = self.members.up().into_iter().collect();
        if up.len() <= 1 {
            return 0;
        }
        self.owned
            .values()
            .filter(|o| !o.backup.as_ref().is_some_and(|(b, _)| up.contains(b)))
            .count()
    }

    /// Games owned here whose backup holds an older version than the
    /// latest: their newest changes are on their way to it (or waiting
    /// for a backup to be found).
    pub fn copies_behind(&self) -> usize {
        if self.config.replication_factor == 0 {
            return 0;
        }
        self.owned
            .values()
            .filter(|o| o.backup.as_ref().is_some_and(|(_, v)| *v < o.reg.version))
            .count()
    }

    // ---- helpers shared by the parts ----

    fn corr(&mut self) -> Corr {
        let corr = self.next_corr;
        self.next_corr += 1;
        corr
    }

    fn effect(&mut self, effect: Effect) {
        self.effects.push_back(effect);
    }

    fn event(&mut self, event: Event) {
        self.effect(Effect::Event(event));
    }

    /// Sends `msg` to `to` if it has a link; returns whether it did.
    fn send(&mut self, to: &MemberId, msg: Msg) -> bool {
        self.flush_notices(to);
        self.send_now(to, msg)
    }

    fn send_now(&mut self, to: &MemberId, msg: Msg) -> bool {
        match self
            .members
            .get(to)
            .filter(|m| m.status != MemberStatus::Down)
        {
            Some(Member {
                link: Some(link), ..
            }) => {
                let link = *link;
                self.effect(Effect::Send { link, msg });
                true
            }
            _ => false,
        }
    }

    /// Tells `to` of `reg`, together with other registrations.
    fn notify(&mut self, to: &MemberId, reg: Registration) {
        self.notices.entry(to.clone()).or_default().push(reg);
    }

    /// Tells every live peer of `reg`, together with other registrations.
    fn notify_all(&mut self, reg: &Registration) {
        let peers: Vec<MemberId> = self.members.peers().cloned().collect();
        for peer in peers {
            self.notify(&peer, reg.clone());
        }
    }

    /// Sends what is waiting to be told to `to`, a batch per message.
    fn flush_notices(&mut self, to: &MemberId) {
        let Some(regs) = self.notices.remove(to) else {
            return;
        };
        for chunk in regs.chunks(self.config.batch.max(1)) {
            self.send_now(
                to,
                Msg::Registered {
                    corr: None,
                    regs: chunk.to_vec(),
                },
            );
        }
    }

    /// Sends `msg` to every live peer.
    /// Announces `regs` to every peer, a batch per message.
    fn broadcast_registered(&mut self, regs: Vec<Registration>) {
        for chunk in regs.chunks(self.config.batch.max(1)) {
            self.broadcast(Msg::Registered {
                corr: None,
                regs: chunk.to_vec(),
            });
        }
    }

    fn broadcast(&mut self, msg: Msg) {
        let peers: Vec<MemberId> = self.members.peers().cloned().collect();
        for peer in peers {
            self.send(&peer, msg.clone());
        }
    }

    fn request(&mut self, request: Request) -> Corr {
        let corr = self.corr();
        let deadline = self.now + self.config.call_timeout;
        self.requests.insert(corr, (request, deadline));
        corr
    }

    fn reply(&mut self, call: CallId, result: Result<Registration, EngineError>) {
        self.effect(Effect::Reply { call, result });
    }

    /// Members that take new sessions, with their loads.
    fn candidates(&self, except: &[MemberId]) -> Vec<crate::placement::Candidate> {
        let loads = self.registry.count_by_owner();
        self.members
            .up()
            .into_iter()
            .filter(|m| !except.contains(m))
            .map(|id| crate::placement::Candidate {
                load: loads.get(&id).copied().unwrap_or(0),
                id,
            })
            .collect()
    }

    fn registration(&self, snapshot: &Snapshot, epoch: u64) -> Registration {
        Registration {
            id: snapshot.id,
            join_code: snapshot.join_code.clone(),
            users: snapshot.users.clone(),
            owner: self.this().clone(),
            epoch,
            version: snapshot.version,
        }
    }

    // ---- timers ----

    fn run_timers(&mut self) {
        let now = self.now;
        self.expire_unlinked();
        if now >= self.next_tick {
            let late = now.saturating_sub(self.next_tick);
            let stalled = self.ticks > 0 && late * 2 >= self.config.failure_timeout;
            self.next_tick = now + self.config.heartbeat_interval;
            self.ticks += 1;
            self.heartbeat(stalled);
            self.lease_tick();
            if self.ticks.is_multiple_of(GOSSIP_EVERY) {
                self.gossip();
                self.repeat_fencing();
                self.reconnect();
            }
            if self.ticks.is_multiple_of(SWEEP_EVERY) {
                self.sweep();
                self.send_holdings();
                self.redrop_all();
                self.send_digests();
                let keep = self.config.failure_timeout * 60;
                self.moved
                    .retain(|_, (_, at)| now.saturating_sub(*at) < keep);
            }
            self.purge_due();
            self.drain();
        }
        self.expire_requests();
    }

    fn expire_requests(&mut self) {
        let now = self.now;
        let due: Vec<Corr> = self
            .requests
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(corr, _)| *corr)
            .collect();
        for corr in due {
            if let Some((request, _)) = self.requests.remove(&corr) {
                self.request_failed(corr, request);
            }
        }
        let due: Vec<Corr> = self
            .copy_batches
            .iter()
            .filter(|(_, b)| b.deadline <= now)
            .map(|(corr, _)| *corr)
            .collect();
        for corr in due {
            self.copy_failed(corr);
        }
    }

    /// A request got no answer in time, or its peer went down.
    fn request_failed(&mut self, corr: Corr, request: Request) {
        match request {
            Request::Claim {
                id,
                code,
                to,
                mut tried,
            } => {
                // The next home in line serialises the claims instead.
                tried.push(to);
                self.claim(id, code, tried);
            }
            Request::Create {
                call,
                snapshot,
                to,
                mut refused,
            } => {
                // Never started there if it left or was replaced; if it is
                // up, or cut off (fenced or not), the start may have run
                // there and taken writes, and a second one would collide.
                let in_doubt =
                    self.members.is_live(&to) || self.unfenced(&to) || self.quorum.was_fenced(&to);
                if in_doubt {
                    self.reply(
                        call,
                        Err(EngineError::Timeout(format!(
                            "{to} did not start game {} in time",
                            snapshot.id
                        ))),
                    );
                } else {
                    refused.push(to);
                    self.place_new(call, snapshot, refused);
                }
            }
            Request::Announce { ids, .. } => {
                for id in ids {
                    self.announced(id, corr);
                }
            }
            Request::Move { id } => self.move_failed(id, corr),
            Request::Place {
                snapshot,
                epoch,
                to,
            } => {
                if self.members.is_live(&to) || self.unfenced(&to) {
                    self.send_place(to, snapshot, epoch);
                } else {
                    self.place_elsewhere(snapshot, epoch);
                }
            }
            Request::Fetch { id } => self.effect(Effect::Fetched { id, snapshot: None }),
        }
    }

    /// Requests to `member` fail at once: it is down. (A start it may
    /// still carry out, cut off but not fenced, waits for its deadline or
    /// the fence.)
    fn fail_requests_to(&mut self, member: &MemberId) {
        let in_doubt = self.unfenced(member);
        let affected: Vec<Corr> = self
            .requests
            .iter()
            .filter(|(_, (r, _))| match r {
                Request::Create { to, .. } | Request::Place { to, .. } => to == member && !in_doubt,
                Request::Claim { to, .. } => to == member,
                Request::Move { id } => matches!(
                    self.owned.get(id).map(|o| &o.phase),
                    Some(Phase::Moving(m)) if &m.to == member
                ),
                _ => false,
            })
            .map(|(c, _)| *c)
            .collect();
        for corr in affected {
            if let Some((request, _)) = self.requests.remove(&corr) {
                self.request_failed(corr, request);
            }
        }
        let announcing: Vec<Corr> = self
            .requests
            .iter()
            .filter(|(_, (r, _))| matches!(r, Request::Announce { waiting, .. } if waiting.contains(member)))
            .map(|(c, _)| *c)
            .collect();
        for corr in announcing {
            self.registered_ack(member, corr);
        }
        let batches: Vec<Corr> = self
            .copy_batches
            .iter()
            .filter(|(_, b)| &b.to == member)
            .map(|(c, _)| *c)
            .collect();
        for corr in batches {
            self.copy_failed(corr);
        }
    }

    // ---- messages ----

    fn on_message(&mut self, link: LinkId, msg: Msg) {
        if let Msg::Hello(hello) = msg {
            return self.on_hello(link, hello);
        }
        // Any link whose hello named a live member speaks for it (when both
        // ends dialled at once, each may send over another of the two); a
        // member counted down is not heard until it says hello again.
        let from = match self.links.get(&link) {
            Some(member) => member.clone(),
            None => self.closed.get(&link).cloned(),
        };
        let Some(from) = from else {
            return;
        };
        if !self.members.is_live(&from) {
            // A goodbye is final, even from a member already counted down
            // (its link closed first): it stops counting and is waited for
            // no more.
            if matches!(msg, Msg::Bye) && self.gone.insert(from.clone()) {
                self.departed_while_down(&from);
            }
            return;
        }
        if let Some(m) = self.members.get_mut(&from) {
            m.heard = self.now;
        }
        match msg {
            Msg::Hello(_) | Msg::Ping => {}
            Msg::Members(list) => self.on_members(&from, list),
            Msg::Sync { sync, regs, last } => self.on_sync(&from, sync, regs, last),
            Msg::Registered { corr, regs } => {
                for reg in regs {
                    self.apply_registration(reg);
                }
                if let Some(corr) = corr {
                    self.send(&from, Msg::RegisteredAck(corr));
                }
            }
            Msg::RegisteredAck(corr) => self.registered_ack(&from, corr),
            Msg::Unregistered { id, owner } => {
                self.registry.remove(id, &owner);
                self.copies.drop_copy(id, &owner);
            }
            Msg::Claim { corr, code, id } => {
                let ok = self.registry.claim(&code, id, self.now);
                self.send(&from, Msg::Claimed { corr, ok });
            }
            Msg::Claimed { corr, ok } => self.on_claimed(corr, ok),
            Msg::Start {
                corr,
                snapshot,
                epoch,
                stale,
                claim,
                passive,
            } => {
                let start = starts::Start {
                    epoch,
                    stale,
                    claim,
                    passive,
                };
                self.start(Waiter::Peer(from, corr), snapshot, start)
            }
            Msg::Started { corr, result } => self.on_started(&from, corr, result),
            Msg::Copy { corr, gen, copies } => self.on_copy(&from, corr, gen, copies),
            Msg::Copied {
                corr,
                stored,
                behind,
            } => self.on_copied(&from, corr, stored, behind),
            Msg::DropCopy { id, owner, epoch } => {
                self.copies.drop_copy_upto(id, &owner, epoch);
                self.send(&from, Msg::Dropped { id, owner });
            }
            Msg::Dropped { id, owner } => self.on_dropped(&from, id, &owner),
            Msg::Holdings { gen, games } => self.on_holdings(&from, gen, games),
            Msg::Missing(ids) => self.on_missing(&from, ids),
            Msg::Fetch { corr, id } => {
                let snapshot = self.copies.best(id).map(|h| h.snapshot.clone());
                self.send(&from, Msg::Fetched { corr, snapshot });
            }
            Msg::Fetched { corr, snapshot } => {
                if let Some((Request::Fetch { id }, _)) = self.requests.remove(&corr) {
                    self.effect(Effect::Fetched { id, snapshot });
                }
            }
            Msg::Leaving => self.on_leaving(&from),
            Msg::Digest { count, hash } => self.on_digest(&from, (count, hash)),
            Msg::SyncPlease => self.send_sync(&from),
            Msg::Bye => {
                self.gone.insert(from.clone());
                self.member_down(&from, DownReason::Left);
            }
            Msg::Lease { seq, gen } => self.on_lease(&from, seq, gen),
            Msg::Granted { seq, refused_upto } => self.on_granted(&from, seq, refused_upto),
            Msg::Expired { member, gen } => self.on_expired(&from, member, gen),
            Msg::Fenced { member, gen } => self.on_fenced(member, gen),
            Msg::SyncFor(gen) => self.on_sync_for(&from, gen),
            Msg::SyncedFor(gen) => self.on_synced_for(&from, gen),
            Msg::HeldFor { gen, copies } => self.on_held_for(gen, copies),
        }
    }

    // ---- the registry ----

    /// Applies a registration and acts on a conflict that involves a game
    /// owned here.
    fn apply_registration(&mut self, reg: impl Into<Arc<Registration>>) {
        use crate::registry::Applied;
        let reg: Arc<Registration> = reg.into();
        let this = self.this().clone();
        match self.registry.apply(reg.clone()) {
            // (Not when the newcomer is ours too: a game retaken here under a
            // newer epoch replaces our older entry.)
            Applied::Replaced(old) if old.owner == this && reg.owner != this => {
                // The new owner of a game moving there announces it before
                // its answer to our start request arrives.
                let moving_there = matches!(
                    self.owned.get(&old.id).map(|o| &o.phase),
                    Some(Phase::Moving(m)) if m.to == reg.owner
                );
                if moving_there {
                    self.moved_away(old.id, reg.owner.clone());
                } else if self.owned.contains_key(&old.id) {
                    self.lose(old.id, (*reg).clone())
                }
            }
            // Who owns a game changed in our view, but its previous owner
            // may never hear of the newcomer from it (the two may be cut
            // off from each other, or the newcomer's later correction may
            // be lost with a link): tell it, so it keeps the game and says
            // so everywhere, or gives it up. Otherwise a registration that
            // wrongly replaced the winner's here could stay, or be purged
            // with its owner and leave the game unregistered here.
            Applied::Replaced(old)
                if old.owner != this
                    && old.owner != reg.owner
                    && self.members.is_live(&old.owner) =>
            {
                self.notify(&old.owner, (*reg).clone());
            }
            // Our own registration lost to one that outranks it.
            Applied::Rejected(kept) if reg.owner == this && kept.owner != this => {
                self.lose(reg.id, kept)
            }
            Applied::Rejected(kept) if kept.owner == this => {
                // Theirs lost to ours: make sure everyone sees our version.
                self.event(Event::ConflictWon {
                    id: kept.id,
                    winner: kept.owner.clone(),
                    loser: reg.owner.clone(),
                });
                self.notify_all(&kept);
            }
            _ => {}
        }
    }

    /// Our session of game `id` lost to `winner`: it stops, and acknowledges
    /// nothing more from now on.
    fn lose(&mut self, id: GameId, winner: Registration) {
        // A peer that still has our registration cannot know it lost.
        self.notify_all(&winner);
        self.quorum.forget_game(id);
        let Some(owned) = self.owned.remove(&id) else {
            return;
        };
        self.unpersist(id);
        if owned.save_waiting {
            self.effect(Effect::Saved {
                id,
                result: Err(EngineError::BetweenOwners(id)),
            });
        }
        if let Phase::Starting(starting) = owned.phase {
            for waiter in starting.waiters {
                self.answer_start(id, waiter, Err(wire::Refusal::AlreadyRunning));
            }
        }
        if let Some((backup, _)) = owned.backup {
            if backup != winner.owner {
                self.drop_ours(&backup, id, owned.reg.epoch);
            }
        }
        self.effect(Effect::StopSession {
            id,
            reason: StopReason::ConflictLost { winner },
        });
    }

    fn purge_due(&mut self) {
        let now = self.now;
        let due: Vec<MemberId> = self
            .purges
            .iter()
            .filter(|(at, _)| *at <= now)
            .map(|(_, m)| m.clone())
            .collect();
        self.purges.retain(|(at, _)| *at > now);
        for member in due {
            if self.members.status(&member) != Some(MemberStatus::Down) {
                continue;
            }
            // Its games wait for its fence to be taken over; until then
            // their entries are what says they exist (forgotten, they
            // would look settled while their copies wait).
            if self.unfenced(&member) {
                let at = now + self.config.failure_timeout * 3;
                self.purges.push((at, member));
                continue;
            }
            // Fenced and away this long, it gives its seat up: the
            // members left may need a majority without it.
            if self.quorum.retire_absent(&member) {
                self.copies.take_owned_by(&member);
                self.admit();
            }
            let games = self.registry.purge_owner(&member).len();
            if games > 0 {
                self.event(Event::Forgot { member, games });
            }
        }
    }
}

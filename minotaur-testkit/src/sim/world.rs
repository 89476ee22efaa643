//! The simulated world: node state machines, their sessions, the network
//! between them, and the clients, driven by one queue of timed events on a
//! simulated clock. Nothing here reads a real clock or spawns a thread, so
//! a seed replays exactly.

use super::check;
use super::schedule::{Pace, Schedule, Step};
use super::trace::Trace;
use minotaur_cluster::control::hosting::Hosting;
use minotaur_cluster::control::inbound::Inbound;
use minotaur_cluster::control::wire::{Delta, Msg, Snapshot, Update};
use minotaur_cluster::control::{Control, ControlConfig, Effect, Input, LinkId};
use minotaur_cluster::MemberId;
use minotaur_core::{GameId, JoinCode};
use rand::rngs::SmallRng;
use rand::Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::Duration;

/// A client's write: game, op id, attempt.
#[derive(Debug, Clone, Copy)]
pub(super) struct Write {
    pub game: GameId,
    pub op: u64,
    pub attempt: u32,
}

/// Something that happens at a time.
#[derive(Debug, Clone)]
pub(super) enum Event {
    /// The next items of the plan are due.
    Plan,
    Step(Step),
    /// Messages from the member `from` arrive at `to` over `link`, in one
    /// frame: what its control said over that link while handling one
    /// input, as a node's driver sends it.
    Deliver {
        to: String,
        from: String,
        link: LinkId,
        msgs: Vec<Msg>,
    },
    /// `link` to the member `peer` is ready at `to`.
    LinkUp {
        to: String,
        peer: MemberId,
        link: LinkId,
    },
    LinkDown {
        to: String,
        link: LinkId,
    },
    Wake {
        node: String,
        inc: u64,
    },
    /// A session asked for by node `node` (incarnation `inc`) comes up.
    SessionUp {
        node: String,
        inc: u64,
        snapshot: Snapshot,
    },
    /// Session `gen` of game `id`, asked to stop, is gone from its host.
    SessionGone {
        node: String,
        inc: u64,
        id: GameId,
        gen: u64,
    },
    /// A node-local input (session callbacks), for node `node` incarnation `inc`.
    Local {
        node: String,
        inc: u64,
        input: Input,
    },
    /// A client creates a game through `via`.
    Create {
        index: usize,
    },
    /// A client sends a write through `via`.
    SendWrite {
        write: Write,
    },
    /// A write reaches its owner.
    SessionWrite {
        node: String,
        inc: u64,
        write: Write,
    },
    /// A write's acknowledgement reaches the client.
    Ack {
        write: Write,
    },
    /// Close one of two links both ends dialled (ractor_cluster's choice).
    CloseDuplicate {
        link: LinkId,
    },
    Unfreeze {
        node: String,
    },
    /// Session `gen` of game `id` may have been idle long enough.
    IdleCheck {
        node: String,
        inc: u64,
        id: GameId,
        gen: u64,
    },
}

/// A session of the simulated game: its state is the list of writes applied.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub snapshot: Snapshot,
    pub ops: Vec<u64>,
    /// The write being saved, with the state it leads to.
    pub saving: Option<(Option<Write>, Vec<u64>)>,
    pub queue: VecDeque<Write>,
    pub resave: bool,
    /// Which session of the game this is (a later start makes another).
    pub gen: u64,
    /// The stops, releases and passivations asked of it, in order: it
    /// takes no more writes, finishes the save in flight, and is gone a
    /// moment later, still listed meanwhile.
    pub closing: Vec<Closing>,
    /// When it last took a write (or came up).
    pub used: Duration,
}

/// How a session is asked to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Closing {
    /// For good.
    Stop,
    /// Handing its state back: the game moves.
    Release,
    /// Handing its state back: the game turns passive.
    Passivate,
}

/// How long a simulated session goes without a write before it is idle,
/// with passivation on.
pub(super) const IDLE: Duration = Duration::from_millis(300);

pub(super) struct Node {
    pub control: Control,
    pub inc: u64,
    pub sessions: BTreeMap<GameId, Session>,
    /// Which link the driver hands each peer's messages over on: it
    /// knows the sender of a message, not the link that carried it.
    pub inbound: Inbound,
    /// The driver's stops in flight and the starts waiting for them.
    pub hosting: Hosting,
    /// Starts asked for by the effects at hand, started once all are
    /// carried out (as the driver does).
    pub starting: Vec<Snapshot>,
    pub wake_at: Option<Duration>,
    pub frozen_until: Option<Duration>,
    pub leaving: bool,
}

pub(super) struct Link {
    pub a: String,
    pub b: String,
    pub open: bool,
    /// Last delivery time per direction (a->b, b->a), so order holds.
    pub last: [Duration; 2],
}

pub(super) struct World {
    pub rng: SmallRng,
    pub now: Duration,
    pub config: ControlConfig,
    queue: BinaryHeap<Reverse<(Duration, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    pub nodes: BTreeMap<String, Node>,
    pub links: BTreeMap<LinkId, Link>,
    next_link: LinkId,
    pub partitions: Vec<(BTreeSet<String>, BTreeSet<String>)>,
    pub one_way: BTreeSet<(String, String)>,
    pub stalls: BTreeMap<(String, String), Duration>,
    /// Messages a partition holds back: sender, link, message.
    held: Vec<(String, LinkId, Msg)>,
    /// Messages a control said while its effects are carried out, per
    /// sender and link, sent as one frame each once they are.
    outbox: BTreeMap<(String, LinkId), Vec<Msg>>,
    pub trace: Trace,
    /// Games whose create was acknowledged, with the time.
    pub created: BTreeMap<GameId, Duration>,
    /// Writes acknowledged: game, op, time.
    pub acked: Vec<(GameId, u64, Duration)>,
    pub acked_ops: BTreeSet<u64>,
    next_op: u64,
    pub games: Vec<GameId>,
    /// When each uncovered fault was active: (from, to).
    pub uncovered: Vec<(Duration, Duration)>,
    pub ended: bool,
    /// Membership events seen on any node, so far.
    pub membership_changes: u64,
    next_gen: u64,
    /// From when a settled cluster should only exchange heartbeats and
    /// periodic summaries.
    pub quiet_from: Option<Duration>,
    /// Messages of other kinds sent since `quiet_from`: sender, kind, count.
    pub late_traffic: BTreeMap<(String, &'static str), usize>,
    /// What is planned and not yet due: its time if every fault came on
    /// time, the event, and whether it begins a fault.
    plan: VecDeque<(Duration, Event, bool)>,
    /// How much later than planned the plan runs: the time faults waited
    /// for the cluster to settle.
    shift: Duration,
    pace: Pace,
    /// Since when the fault at the head of the plan waits to settle.
    waiting_since: Option<Duration>,
    /// Steps of the plan not yet run.
    steps_left: usize,
    /// When the last step ran: the run settles from then on.
    pub calm_at: Option<Duration>,
    /// The steps run, with their times.
    pub steps_run: Vec<(Duration, Step)>,
    /// Faults that found the cluster still unsettled after [`SETTLE_LIMIT`].
    pub unsettled: Vec<String>,
}

/// How long a fault waits for the cluster to settle after the one before
/// (under [`Pace::Settled`]) before that counts as a violation and the
/// fault comes anyway.
pub(super) const SETTLE_LIMIT: Duration = Duration::from_secs(20);

/// How often a waiting fault looks again.
const SETTLE_POLL: Duration = Duration::from_millis(100);

const MS: Duration = Duration::from_millis(1);

impl World {
    /// Each game held by a node, with the writes it holds: a session taking
    /// writes (or being passivated), or a passive game's state.
    pub fn games_held(&self) -> BTreeMap<GameId, Vec<(&str, Vec<u64>)>> {
        use minotaur_cluster::control::Phase;
        let mut held: BTreeMap<GameId, Vec<(&str, Vec<u64>)>> = BTreeMap::new();
        for (name, n) in &self.nodes {
            for (id, s) in &n.sessions {
                let passivating = s.closing == [Closing::Passivate]
                    && n.control
                        .owned()
                        .get(id)
                        .is_some_and(|o| matches!(o.phase, Phase::Passivating { .. }));
                if s.closing.is_empty() || passivating {
                    held.entry(*id).or_default().push((name, s.ops.clone()));
                }
            }
            for (id, owned) in n.control.owned() {
                let asleep = match &owned.phase {
                    Phase::Passive(dormant) => Some(dormant.snapshot(&owned.reg)),
                    Phase::Starting(starting) => starting.asleep.clone(),
                    _ => None,
                };
                if let Some(snapshot) = asleep {
                    held.entry(*id).or_default().push((name, ops_of(&snapshot)));
                }
            }
        }
        held
    }

    pub fn new(rng: SmallRng, config: ControlConfig, trace: Trace) -> Self {
        World {
            rng,
            now: Duration::ZERO,
            config,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            nodes: BTreeMap::new(),
            links: BTreeMap::new(),
            next_link: 1,
            partitions: Vec::new(),
            one_way: BTreeSet::new(),
            stalls: BTreeMap::new(),
            held: Vec::new(),
            outbox: BTreeMap::new(),
            trace,
            created: BTreeMap::new(),
            acked: Vec::new(),
            acked_ops: BTreeSet::new(),
            next_op: 1,
            games: Vec::new(),
            uncovered: Vec::new(),
            ended: false,
            membership_changes: 0,
            next_gen: 1,
            quiet_from: None,
            late_traffic: BTreeMap::new(),
            plan: VecDeque::new(),
            shift: Duration::ZERO,
            pace: Pace::Settled,
            waiting_since: None,
            steps_left: 0,
            calm_at: None,
            steps_run: Vec::new(),
            unsettled: Vec::new(),
        }
    }

    pub fn at(&mut self, at: Duration, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at, self.seq)));
    }

    /// Plans the schedule and the load, faults paced by `pace`.
    pub fn plan(&mut self, schedule: &Schedule, pace: Pace) {
        self.pace = pace;
        let mut plan: Vec<(Duration, Event, bool)> = schedule
            .steps
            .iter()
            .map(|p| (p.at, Event::Step(p.step.clone()), p.begins_fault))
            .collect();
        self.steps_left = plan.len();
        let end = schedule.calm_at;
        for index in 0..schedule.games {
            let at = Duration::from_millis(self.rng.random_range(300..=1400));
            plan.push((at, Event::Create { index }, false));
        }
        for _ in 0..schedule.writes {
            let at =
                Duration::from_millis(self.rng.random_range(500..=end.as_millis() as u64 + 500));
            let op = self.next_op;
            self.next_op += 1;
            // The game is drawn when the write is sent.
            let write = Write {
                game: GameId(uuid::Uuid::nil()),
                op,
                attempt: 0,
            };
            plan.push((at, Event::SendWrite { write }, false));
        }
        // Steps first among equal times, as they were drawn.
        plan.sort_by_key(|(at, ..)| *at);
        self.plan = plan.into();
        if let Some((at, ..)) = self.plan.front() {
            let at = *at;
            self.at(at, Event::Plan);
        }
    }

    /// The faults still in force: partitions, cuts, stalls, frozen nodes.
    fn faults_on(&self) -> Vec<String> {
        let mut on = Vec::new();
        if !self.partitions.is_empty() || !self.one_way.is_empty() {
            on.push("a partition or one-way cut is on".to_string());
        }
        if self.stalls.values().any(|until| *until > self.now) {
            on.push("a link is stalled".to_string());
        }
        for (name, n) in &self.nodes {
            if n.frozen_until.is_some_and(|until| until > self.now) {
                on.push(format!("{name} is frozen"));
            }
        }
        on
    }

    /// Queues what the plan has due now. A fault waits, under
    /// [`Pace::Settled`], until the cluster settled after the one before,
    /// and everything planned after it waits as long.
    fn next_planned(&mut self) {
        while let Some((at, _, begins)) = self.plan.front() {
            let (at, begins) = (*at, *begins);
            if at + self.shift > self.now {
                self.at(at + self.shift, Event::Plan);
                return;
            }
            if begins && self.pace == Pace::Settled {
                let mut issues = self.faults_on();
                issues.extend(check::structure(self, self.config.replication_factor > 0));
                if !issues.is_empty() {
                    let since = *self.waiting_since.get_or_insert(self.now);
                    if self.now - since < SETTLE_LIMIT {
                        self.shift = self.now + SETTLE_POLL - at;
                        self.at(self.now + SETTLE_POLL, Event::Plan);
                        return;
                    }
                    let at = self.now;
                    self.unsettled.push(format!(
                        "at {at:?}: not settled {SETTLE_LIMIT:?} after the fault before: {:?}",
                        issues.iter().take(3).collect::<Vec<_>>()
                    ));
                }
                self.waiting_since = None;
            }
            let (_, event, _) = self.plan.pop_front().expect("front");
            if matches!(event, Event::Step(_)) {
                self.steps_left -= 1;
                if self.steps_left == 0 {
                    self.calm_at = Some(self.now);
                }
            }
            // Through the queue, so a frozen node's client waits too.
            self.at(self.now, event);
        }
    }

    /// Runs events until `until`.
    pub fn run_until(&mut self, until: Duration) {
        while let Some(Reverse((at, seq))) = self.queue.peek().copied() {
            if at > until {
                break;
            }
            self.queue.pop();
            let Some(event) = self.events.remove(&seq) else {
                continue;
            };
            self.now = self.now.max(at);
            // A frozen node runs nothing until it thaws; its events wait.
            if let Some(node) = event_node(&event) {
                if let Some(until) = self.nodes.get(node).and_then(|n| n.frozen_until) {
                    if until > self.now {
                        self.events.insert(seq, event);
                        self.queue.push(Reverse((until, seq)));
                        continue;
                    }
                }
            }
            self.dispatch(event);
        }
        self.now = self.now.max(until);
    }

    fn dispatch(&mut self, event: Event) {
        match event {
            Event::Plan => self.next_planned(),
            Event::Step(step) => self.step(step),
            Event::Deliver {
                to,
                from,
                link,
                msgs,
            } => {
                if self.links.get(&link).is_some_and(|l| l.open) {
                    let Some(n) = self.nodes.get_mut(&to) else {
                        return;
                    };
                    let mut inputs: Vec<Input> = msgs
                        .into_iter()
                        .filter_map(|msg| n.inbound.attribute(&from, msg))
                        .map(|(link, msg)| {
                            self.trace
                                .line(self.now, &to, || format!("recv {link} {}", msg_name(&msg)));
                            Input::Received { link, msg }
                        })
                        .collect();
                    // A frame of several messages is one input, as the
                    // driver hands it over.
                    match inputs.len() {
                        0 => {}
                        1 => self.input(&to, inputs.remove(0)),
                        _ => self.input(&to, Input::Batch(inputs)),
                    }
                }
            }
            Event::LinkUp { to, peer, link } => {
                if self.links.get(&link).is_some_and(|l| l.open) {
                    let Some(n) = self.nodes.get_mut(&to) else {
                        return;
                    };
                    let waited = n.inbound.ready(link, &peer.to_string());
                    self.trace.line(self.now, &to, || format!("link up {link}"));
                    self.input(
                        &to,
                        Input::LinkUp {
                            link,
                            peer: Some(peer),
                        },
                    );
                    for msg in waited {
                        self.trace
                            .line(self.now, &to, || format!("recv {link} {}", msg_name(&msg)));
                        self.input(&to, Input::Received { link, msg });
                    }
                }
            }
            Event::LinkDown { to, link } => {
                self.trace
                    .line(self.now, &to, || format!("link down {link}"));
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.inbound.closed(link);
                }
                self.input(&to, Input::LinkDown { link });
            }
            Event::Wake { node, inc } => {
                let due = self
                    .nodes
                    .get(&node)
                    // (Past due too: a wake held back while the node was
                    // frozen comes when it thaws.)
                    .is_some_and(|n| n.inc == inc && n.wake_at.is_some_and(|w| w <= self.now));
                if due {
                    if let Some(n) = self.nodes.get_mut(&node) {
                        n.wake_at = None;
                    }
                    self.input(&node, Input::Tick);
                }
            }
            Event::SessionUp {
                node,
                inc,
                snapshot,
            } => {
                if self.nodes.get(&node).is_some_and(|n| n.inc == inc) {
                    self.session_up(&node, snapshot);
                }
            }
            Event::SessionGone { node, inc, id, gen } => {
                if self.nodes.get(&node).is_some_and(|n| n.inc == inc) {
                    self.session_gone(&node, id, gen);
                }
            }
            Event::Local { node, inc, input } => {
                if self.nodes.get(&node).is_some_and(|n| n.inc == inc) {
                    self.input(&node, input);
                }
            }
            Event::Create { index, .. } => self.create(index),
            Event::SendWrite { write, .. } => self.send_write(write),
            Event::SessionWrite { node, inc, write } => {
                if self.nodes.get(&node).is_some_and(|n| n.inc == inc) {
                    self.session_write(&node, write);
                }
            }
            Event::Ack { write } => {
                if self.acked_ops.insert(write.op) {
                    self.acked.push((write.game, write.op, self.now));
                }
            }
            Event::CloseDuplicate { link } => self.close_link(link),
            Event::Unfreeze { node } => {
                if let Some(n) = self.nodes.get_mut(&node) {
                    n.frozen_until = None;
                }
            }
            Event::IdleCheck { node, inc, id, gen } => self.idle_check(&node, inc, id, gen),
        }
    }

    // ---- nodes ----

    fn start_node(&mut self, name: &str, seed: Option<&str>) {
        let inc: u64 = self.rng.random();
        let mut config = self.config.clone();
        config.seeds = seed.map(|s| vec![addr(s)]).into_iter().flatten().collect();
        let control = Control::new(MemberId::new(name, inc), addr(name), config, self.now);
        self.trace
            .line(self.now, name, || format!("start {inc:016x}"));
        self.nodes.insert(
            name.to_string(),
            Node {
                control,
                inc,
                sessions: BTreeMap::new(),
                inbound: Inbound::default(),
                hosting: Hosting::default(),
                starting: Vec::new(),
                wake_at: None,
                frozen_until: None,
                leaving: false,
            },
        );
        self.flush(name);
    }

    fn stop_node(&mut self, name: &str) {
        if self.nodes.remove(name).is_none() {
            return;
        }
        let links: Vec<LinkId> = self
            .links
            .iter()
            .filter(|(_, l)| l.open && (l.a == name || l.b == name))
            .map(|(id, _)| *id)
            .collect();
        for link in links {
            self.close_link(link);
        }
    }

    fn session_up(&mut self, node: &str, snapshot: Snapshot) {
        let id = snapshot.id;
        let n = self.nodes.get_mut(node).expect("node");
        let error = match n.sessions.entry(id) {
            // One running already (an earlier start came up first) is the
            // session asked for: the driver reports it started.
            std::collections::btree_map::Entry::Occupied(_) => None,
            std::collections::btree_map::Entry::Vacant(slot) => {
                let ops = ops_of(&snapshot);
                let gen = self.next_gen;
                slot.insert(Session {
                    snapshot,
                    ops,
                    saving: None,
                    queue: VecDeque::new(),
                    resave: false,
                    gen,
                    closing: Vec::new(),
                    used: self.now,
                });
                self.next_gen += 1;
                self.schedule_idle_check(node, id, gen);
                None
            }
        };
        self.trace
            .line(self.now, node, || format!("session {id} up"));
        self.input(node, Input::SessionStarted { id, error });
    }

    fn input(&mut self, node: &str, input: Input) {
        let now = self.now;
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        n.control.handle(now, input);
        self.flush(node);
    }

    /// Carries out every effect a node's control queued.
    fn flush(&mut self, node: &str) {
        loop {
            let Some(n) = self.nodes.get_mut(node) else {
                return;
            };
            let Some(effect) = n.control.poll_effect() else {
                break;
            };
            self.effect(node, effect);
        }
        self.send_outbox(node, None);
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        // A start also waits for a stop decided after it, in the same batch.
        let starting: Vec<Snapshot> = std::mem::take(&mut n.starting)
            .into_iter()
            .filter_map(|s| n.hosting.start(s))
            .collect();
        for snapshot in starting {
            self.start_session(node, snapshot);
        }
        let Some(n) = self.nodes.get_mut(node) else {
            return;
        };
        let wake = n.control.next_wake().max(self.now + MS);
        if n.wake_at.is_none_or(|w| w > wake) {
            n.wake_at = Some(wake);
            let inc = n.inc;
            self.at(
                wake,
                Event::Wake {
                    node: node.to_string(),
                    inc,
                },
            );
        }
    }

    fn effect(&mut self, node: &str, effect: Effect) {
        let inc = self.nodes[node].inc;
        match effect {
            Effect::Send { link, msg } => self
                .outbox
                .entry((node.to_string(), link))
                .or_default()
                .push(msg),
            Effect::Dial { addr } => {
                let to = addr.trim_start_matches("addr-").to_string();
                self.dial(node, &to);
            }
            Effect::CloseLink { link } => {
                // What was said over it goes first, as the driver does.
                self.send_outbox(node, Some(link));
                self.close_link(link)
            }
            Effect::StartSession(snapshot) => {
                self.nodes
                    .get_mut(node)
                    .expect("node")
                    .starting
                    .push(snapshot);
            }
            Effect::StopSession { id, .. } => {
                self.trace
                    .line(self.now, node, || format!("stop session {id}"));
                self.close(node, id, Closing::Stop);
            }
            Effect::ReleaseSession(id) => {
                self.trace
                    .line(self.now, node, || format!("release session {id}"));
                if !self.close(node, id, Closing::Release) {
                    let input = Input::SessionReleased { id, snapshot: None };
                    self.at(
                        self.now + MS,
                        Event::Local {
                            node: node.into(),
                            inc,
                            input,
                        },
                    );
                }
            }
            Effect::Passivate(id) => {
                self.trace
                    .line(self.now, node, || format!("passivate session {id}"));
                let now = self.now;
                let n = self.nodes.get_mut(node).expect("node");
                // As a session does: it declines if a write came within
                // its idle period (or is still in its mailbox).
                let idle = n.sessions.get(&id).is_some_and(|s| {
                    s.closing.is_empty()
                        && s.queue.is_empty()
                        && s.saving.is_none()
                        && now.saturating_sub(s.used) >= IDLE
                });
                // Its state is final once it replies (nothing is queued),
                // and reaches the control while the session exits.
                let snapshot = match n.sessions.get(&id) {
                    Some(s) if idle => Some(state_of(&s.snapshot, &s.ops)),
                    _ => None,
                };
                if snapshot.is_some() {
                    self.close(node, id, Closing::Passivate);
                }
                let input = Input::SessionPassivated { id, snapshot };
                self.at(
                    self.now + MS,
                    Event::Local {
                        node: node.into(),
                        inc,
                        input,
                    },
                );
            }
            Effect::Resave(id) => {
                let n = self.nodes.get_mut(node).expect("node");
                if let Some(s) = n.sessions.get_mut(&id) {
                    s.resave = true;
                    self.pump(node, id);
                }
            }
            Effect::SendWhole(id) => {
                // The change alone was refused: the same save, whole.
                let n = self.nodes.get_mut(node).expect("node");
                let whole = n.sessions.get(&id).and_then(|s| {
                    let (_, next) = s.saving.as_ref()?;
                    Some(state_of(&s.snapshot, next))
                });
                if let Some(whole) = whole {
                    self.trace.line(self.now, node, || {
                        format!("save {id} v{} whole", whole.version)
                    });
                    self.input(node, Input::Saves(vec![Update::Whole(whole)]));
                }
            }
            Effect::Saved { id, result } => {
                let ok = result.is_ok();
                self.trace
                    .line(self.now, node, || format!("saved {id} ok={ok}"));
                self.saved(node, id, ok)
            }
            Effect::Fetched { .. } | Effect::Confirmed { .. } => {}
            // Simulated nodes keep no durable store (`durable` is off).
            Effect::Persist { .. } | Effect::Unpersist(_) => {}
            Effect::Reply { call, result } => {
                if let Ok(reg) = result {
                    self.trace.line(self.now, node, || {
                        format!("created {} (call {call})", reg.id)
                    });
                    self.created.entry(reg.id).or_insert(self.now);
                }
            }
            Effect::Drained { .. } => {
                self.trace.line(self.now, node, || "drained".into());
                self.input(node, Input::Depart);
                // Let the goodbyes go out before the links close.
                let name = node.to_string();
                self.at(self.now + 5 * MS, Event::Step(Step::Crash(name)));
            }
            Effect::Event(event) => {
                use minotaur_cluster::control::Event as E;
                if matches!(
                    event,
                    E::MemberUp(_) | E::MemberDown(..) | E::MemberLeaving(_)
                ) {
                    self.membership_changes += 1;
                }
                self.trace
                    .line(self.now, node, || format!("event {event:?}"));
            }
        }
    }

    // ---- sessions ----

    /// Starts a session the driver let through: most start at once; now
    /// and then a busy host starts one late, after its game may have moved
    /// on.
    fn start_session(&mut self, node: &str, snapshot: Snapshot) {
        let inc = self.nodes[node].inc;
        let delay = self.slow_or(MS);
        self.at(
            self.now + delay,
            Event::SessionUp {
                node: node.into(),
                inc,
                snapshot,
            },
        );
    }

    /// Mostly `usual`; one time in 16, 50 ms to 1.5 s.
    fn slow_or(&mut self, usual: Duration) -> Duration {
        if self.rng.random_ratio(1, 16) {
            Duration::from_millis(self.rng.random_range(50..=1500))
        } else {
            usual
        }
    }

    /// A stop (or, with `release`, a release) of game `id`'s session, as
    /// the driver carries it out: nothing if none is listed (returns
    /// false); otherwise the session takes no more writes, finishes the
    /// save in flight, and is gone a moment later.
    fn close(&mut self, node: &str, id: GameId, how: Closing) -> bool {
        let n = self.nodes.get_mut(node).expect("node");
        let Some(s) = n.sessions.get_mut(&id) else {
            return false;
        };
        n.hosting.stop_begins(id);
        let first = s.closing.is_empty();
        s.closing.push(how);
        let (saving, gen) = (s.saving.is_some(), s.gen);
        let queued: Vec<Write> = s.queue.drain(..).collect();
        for write in queued {
            self.retry(write);
        }
        if first && !saving {
            self.schedule_gone(node, id, gen);
        }
        true
    }

    fn schedule_gone(&mut self, node: &str, id: GameId, gen: u64) {
        let inc = self.nodes[node].inc;
        let delay = self.slow_or(MS);
        self.at(
            self.now + delay,
            Event::SessionGone {
                node: node.into(),
                inc,
                id,
                gen,
            },
        );
    }

    /// A closing session is gone: each stop and release asked of it is
    /// done (the first release gets its state), in order.
    fn session_gone(&mut self, node: &str, id: GameId, gen: u64) {
        let n = self.nodes.get_mut(node).expect("node");
        if n.sessions.get(&id).is_none_or(|s| s.gen != gen) {
            return;
        }
        let s = n.sessions.remove(&id).expect("listed");
        self.trace
            .line(self.now, node, || format!("session {id} gone"));
        let mut state = Some(state_of(&s.snapshot, &s.ops));
        for how in s.closing {
            let n = self.nodes.get_mut(node).expect("node");
            let start = n.hosting.stopped(id);
            if let Some(snapshot) = start {
                self.start_session(node, snapshot);
            }
            match how {
                Closing::Release => {
                    let snapshot = state.take();
                    self.input(node, Input::SessionReleased { id, snapshot });
                }
                // Its state went to the control when it replied.
                Closing::Passivate | Closing::Stop => state = None,
            }
            if !self.nodes.contains_key(node) {
                return;
            }
        }
    }

    fn session_write(&mut self, node: &str, write: Write) {
        let now = self.now;
        let n = self.nodes.get_mut(node).expect("node");
        match n.sessions.get_mut(&write.game) {
            Some(s) if s.closing.is_empty() => {
                s.queue.push_back(write);
                s.used = now;
                let gen = s.gen;
                self.pump(node, write.game);
                self.schedule_idle_check(node, write.game, gen);
            }
            Some(_) => self.retry(write),
            None => {
                // A game registered here whose session does not run may be
                // passive: the router asks the control to start it.
                let this = n.control.this().clone();
                let here = n.control.registry().lookup(write.game).map(|r| &r.owner) == Some(&this);
                if here {
                    self.input(node, Input::Activate(write.game));
                }
                self.retry(write)
            }
        }
    }

    fn schedule_idle_check(&mut self, node: &str, id: GameId, gen: u64) {
        if !self.config.passivate {
            return;
        }
        let inc = self.nodes[node].inc;
        self.at(
            self.now + IDLE,
            Event::IdleCheck {
                node: node.into(),
                inc,
                id,
                gen,
            },
        );
    }

    /// Tells the control of an idle session, as a session does once its
    /// idle period passed without a write, and again every period.
    fn idle_check(&mut self, node: &str, inc: u64, id: GameId, gen: u64) {
        let now = self.now;
        let Some(n) = self.nodes.get(node).filter(|n| n.inc == inc) else {
            return;
        };
        let idle = n.sessions.get(&id).is_some_and(|s| {
            s.gen == gen && s.closing.is_empty() && now.saturating_sub(s.used) >= IDLE
        });
        if idle {
            self.trace.line(self.now, node, || format!("idle {id}"));
            self.input(node, Input::Idle(id));
            self.schedule_idle_check(node, id, gen);
        }
    }

    /// Starts the session's next save, if it is idle.
    fn pump(&mut self, node: &str, id: GameId) {
        let n = self.nodes.get_mut(node).expect("node");
        let Some(s) = n.sessions.get_mut(&id) else {
            return;
        };
        if s.saving.is_some() || !s.closing.is_empty() {
            return;
        }
        let snapshot = if let Some(write) = s.queue.pop_front() {
            if s.ops.contains(&write.op) {
                // Applied already: acknowledged again, not applied twice.
                self.ack(write);
                return self.pump(node, id);
            }
            // A write goes as its change, as a node's sessions send it.
            let mut next = s.ops.clone();
            next.push(write.op);
            let delta = Delta {
                id,
                version: next.len() as u64,
                active: true,
                change: write.op.to_le_bytes().to_vec(),
            };
            s.saving = Some((Some(write), next));
            Update::Delta(delta)
        } else if s.resave {
            s.resave = false;
            let snapshot = state_of(&s.snapshot, &s.ops);
            s.saving = Some((None, s.ops.clone()));
            Update::Whole(snapshot)
        } else {
            return;
        };
        let (sid, sv) = (snapshot.id(), snapshot.version());
        self.trace
            .line(self.now, node, || format!("save {sid} v{sv}"));
        self.input(node, Input::Saves(vec![snapshot]));
    }

    fn saved(&mut self, node: &str, id: GameId, ok: bool) {
        let n = self.nodes.get_mut(node).expect("node");
        let Some(s) = n.sessions.get_mut(&id) else {
            return;
        };
        let Some((write, next)) = s.saving.take() else {
            return;
        };
        if ok {
            s.ops = next;
        }
        let closing = (!s.closing.is_empty()).then_some(s.gen);
        if let Some(write) = write {
            if ok {
                self.ack(write);
            } else {
                self.retry(write);
            }
        }
        if let Some(gen) = closing {
            self.schedule_gone(node, id, gen);
        } else {
            self.pump(node, id);
        }
    }

    fn ack(&mut self, write: Write) {
        let delay = self.delay();
        self.at(self.now + delay, Event::Ack { write });
    }

    fn retry(&mut self, mut write: Write) {
        if write.attempt < 4 && !self.ended {
            write.attempt += 1;
            let at = self.now + Duration::from_millis(self.rng.random_range(50..=400));
            self.at(at, Event::SendWrite { write });
        }
    }

    // ---- clients ----

    fn live_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.leaving)
            .map(|(name, _)| name.clone())
            .collect()
    }

    fn create(&mut self, index: usize) {
        let live = self.live_nodes();
        if live.is_empty() {
            return;
        }
        let via = live[self.rng.random_range(0..live.len())].clone();
        let id = GameId(uuid::Uuid::from_u128(self.rng.random()));
        self.games.push(id);
        // One create in eight asks for the join code of an earlier one:
        // at most one of them may get it.
        let code = match self.rng.random_range(0..8) {
            0 if index > 0 => self.rng.random_range(0..index),
            _ => index,
        };
        let snapshot = Snapshot {
            id,
            version: 0,
            join_code: format!("G{code:03}").parse::<JoinCode>().expect("code"),
            users: vec!["ann".into(), "bob".into()],
            active: true,
            state: Vec::new(),
            changes: Vec::new(),
        };
        self.trace
            .line(self.now, &via, || format!("client create {id}"));
        let call = index as u64;
        self.input(&via, Input::Create { call, snapshot });
    }

    fn send_write(&mut self, mut write: Write) {
        if self.ended {
            return;
        }
        if write.attempt == 0 {
            if self.games.is_empty() {
                return;
            }
            write.game = self.games[self.rng.random_range(0..self.games.len())];
        }
        let live = self.live_nodes();
        if live.is_empty() {
            return;
        }
        let via = live[self.rng.random_range(0..live.len())].clone();
        let owner = self.nodes[&via]
            .control
            .registry()
            .lookup(write.game)
            .map(|r| r.owner.clone());
        let Some(owner) = owner else {
            return self.retry(write);
        };
        let Some(node) = self
            .nodes
            .get(&owner.name)
            .filter(|n| n.inc == owner.incarnation)
        else {
            return self.retry(write);
        };
        let inc = node.inc;
        if owner.name != via && !self.linked(&via, &owner.name) {
            return self.retry(write);
        }
        let delay = if owner.name == via {
            Duration::ZERO
        } else {
            self.delay()
        };
        let node = owner.name.clone();
        self.at(self.now + delay, Event::SessionWrite { node, inc, write });
    }

    /// Whether `a` reaches `b` now (an open link, nothing cutting it).
    fn linked(&self, a: &str, b: &str) -> bool {
        self.links
            .values()
            .any(|l| l.open && ((l.a == a && l.b == b) || (l.a == b && l.b == a)))
            && !self.blocked(a, b)
            && !self.blocked(b, a)
    }

    // ---- the network ----

    fn delay(&mut self) -> Duration {
        Duration::from_micros(self.rng.random_range(200..=3000))
    }

    /// Whether traffic from `from` to `to` is dropped.
    fn blocked(&self, from: &str, to: &str) -> bool {
        self.one_way.contains(&(from.to_string(), to.to_string()))
            || self.partitions.iter().any(|(l, r)| {
                (l.contains(from) && r.contains(to)) || (r.contains(from) && l.contains(to))
            })
    }

    /// Sends what `node` said, over `link` or every link, one frame per
    /// link.
    fn send_outbox(&mut self, node: &str, link: Option<LinkId>) {
        let keys: Vec<(String, LinkId)> = self
            .outbox
            .keys()
            .filter(|(n, l)| n == node && link.is_none_or(|link| *l == link))
            .cloned()
            .collect();
        for key in keys {
            if let Some(msgs) = self.outbox.remove(&key) {
                // A node gone meanwhile said nothing.
                if self.nodes.contains_key(node) {
                    self.send(node, key.1, msgs);
                }
            }
        }
    }

    fn send(&mut self, from: &str, link: LinkId, msgs: Vec<Msg>) {
        let Some(l) = self.links.get(&link).filter(|l| l.open) else {
            return;
        };
        if self.quiet_from.is_some_and(|t| self.now >= t) {
            for kind in msgs.iter().filter_map(busy_kind) {
                *self
                    .late_traffic
                    .entry((from.to_string(), kind))
                    .or_default() += 1;
            }
        }
        let (to, dir) = if l.a == from {
            (l.b.clone(), 0)
        } else {
            (l.a.clone(), 1)
        };
        // An open TCP connection loses nothing: what a partition blocks
        // arrives once it heals, unless the link closes first.
        if self.blocked(from, &to) {
            for msg in msgs {
                self.held.push((from.to_string(), link, msg));
            }
            return;
        }
        let mut at = self.now + self.delay();
        let key = if from < to.as_str() {
            (from.to_string(), to.clone())
        } else {
            (to.clone(), from.to_string())
        };
        if let Some(until) = self.stalls.get(&key) {
            at = at.max(*until);
        }
        let l = self.links.get_mut(&link).expect("link");
        at = at.max(l.last[dir]);
        l.last[dir] = at;
        let from = self.nodes[from].control.this().to_string();
        self.at(
            at,
            Event::Deliver {
                to,
                from,
                link,
                msgs,
            },
        );
    }

    fn dial(&mut self, from: &str, to: &str) {
        if !self.nodes.contains_key(to) {
            // Nothing listens there: the dialler hears so (a stalled or cut
            // off node's kernel would still accept, or nothing would answer).
            let inc = self.nodes[from].inc;
            let input = Input::DialRefused { addr: addr(to) };
            let d = self.delay();
            self.at(
                self.now + d,
                Event::Local {
                    node: from.into(),
                    inc,
                    input,
                },
            );
            return;
        }
        if self.blocked(from, to) || self.blocked(to, from) {
            return;
        }
        self.open_link(from, to);
    }

    fn open_link(&mut self, a: &str, b: &str) -> LinkId {
        let link = self.next_link;
        self.next_link += 1;
        self.links.insert(
            link,
            Link {
                a: a.to_string(),
                b: b.to_string(),
                open: true,
                last: [Duration::ZERO; 2],
            },
        );
        self.trace
            .line(self.now, a, || format!("dial {b} as link {link}"));
        // A link is ready once the peer's router is found, which may take
        // a while: the peer's first messages can arrive before.
        for (to, peer) in [(a, b), (b, a)] {
            let mut d = self.delay();
            if self.rng.random_ratio(1, 4) {
                d += Duration::from_millis(self.rng.random_range(1..=40));
            }
            let peer = self.nodes[peer].control.this().clone();
            self.at(
                self.now + d,
                Event::LinkUp {
                    to: to.to_string(),
                    peer,
                    link,
                },
            );
        }
        link
    }

    fn close_link(&mut self, link: LinkId) {
        let Some(l) = self.links.get_mut(&link).filter(|l| l.open) else {
            return;
        };
        l.open = false;
        let (a, b) = (l.a.clone(), l.b.clone());
        for to in [a, b] {
            let d = self.delay();
            self.at(self.now + d, Event::LinkDown { to, link });
        }
    }

    // ---- faults ----

    fn step(&mut self, step: Step) {
        self.trace
            .line(self.now, "sim", || format!("step {step:?}"));
        self.steps_run.push((self.now, step.clone()));
        let staying = self.nodes.values().filter(|n| !n.leaving).count();
        if !step.covered(staying) {
            self.uncovered.push((self.now, Duration::MAX));
        }
        match step {
            Step::Start { name, seed } => self.start_node(&name, seed.as_deref()),
            Step::Crash(name) => self.stop_node(&name),
            Step::Restart(name) => {
                if !self.nodes.contains_key(&name) {
                    let seed = self.nodes.keys().find(|n| **n != name).cloned();
                    self.start_node(&name, seed.as_deref());
                }
            }
            Step::Leave(name) => {
                if let Some(n) = self.nodes.get_mut(&name) {
                    n.leaving = true;
                    self.input(&name, Input::Leave);
                }
            }
            Step::CutLink(a, b) => {
                let links: Vec<LinkId> = self
                    .links
                    .iter()
                    .filter(|(_, l)| l.open && ((l.a == a && l.b == b) || (l.a == b && l.b == a)))
                    .map(|(id, _)| *id)
                    .collect();
                for link in links {
                    self.close_link(link);
                }
            }
            Step::DialBoth(a, b) => {
                if self.nodes.contains_key(&a) && self.nodes.contains_key(&b) {
                    let first = self.open_link(&a, &b);
                    let second = self.open_link(&b, &a);
                    // ractor_cluster keeps one of the two once both are up.
                    let loser = if self.rng.random_bool(0.5) {
                        first
                    } else {
                        second
                    };
                    let at = self.now + Duration::from_millis(self.rng.random_range(4..=30));
                    self.at(at, Event::CloseDuplicate { link: loser });
                }
            }
            Step::Stall(a, b, d) => {
                let key = if a < b { (a, b) } else { (b, a) };
                self.stalls.insert(key, self.now + d);
            }
            Step::Freeze(n, d) => {
                if let Some(node) = self.nodes.get_mut(&n) {
                    node.frozen_until = Some(self.now + d);
                    self.at(self.now + d, Event::Unfreeze { node: n });
                }
            }
            Step::Partition(l, r) => {
                self.partitions
                    .push((l.into_iter().collect(), r.into_iter().collect()));
            }
            Step::CutOneWay(a, b) => {
                self.one_way.insert((a, b));
            }
            Step::Heal => {
                self.partitions.clear();
                self.one_way.clear();
                for (from, link, msg) in std::mem::take(&mut self.held) {
                    self.send(&from, link, vec![msg]);
                }
                let now = self.now;
                for u in self.uncovered.iter_mut() {
                    if u.1 == Duration::MAX {
                        u.1 = now;
                    }
                }
            }
        }
    }
}

fn event_node(event: &Event) -> Option<&str> {
    match event {
        Event::Deliver { to, .. } | Event::LinkUp { to, .. } | Event::LinkDown { to, .. } => {
            Some(to)
        }
        Event::Wake { node, .. } | Event::Local { node, .. } | Event::SessionWrite { node, .. } => {
            Some(node)
        }
        _ => None,
    }
}

pub(super) fn addr(name: &str) -> String {
    format!("addr-{name}")
}

fn state_of(base: &Snapshot, ops: &[u64]) -> Snapshot {
    let mut state = Vec::with_capacity(ops.len() * 8);
    for op in ops {
        state.extend_from_slice(&op.to_le_bytes());
    }
    Snapshot {
        version: ops.len() as u64,
        state,
        changes: Vec::new(),
        ..base.clone()
    }
}

/// The writes a snapshot holds: those of its state, then its changes.
pub(super) fn ops_of(snapshot: &Snapshot) -> Vec<u64> {
    let mut ops = decode_ops(&snapshot.state);
    ops.extend(snapshot.changes.iter().flat_map(|c| decode_ops(c)));
    ops
}

fn decode_ops(state: &[u8]) -> Vec<u64> {
    state
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect()
}

/// The kind of a message a settled cluster has no reason to send; none for
/// heartbeats and the periodic summaries.
fn busy_kind(msg: &Msg) -> Option<&'static str> {
    match msg {
        Msg::Ping
        | Msg::Lease { .. }
        | Msg::Granted { .. }
        | Msg::Members(_)
        | Msg::Holdings { .. }
        | Msg::Digest { .. } => None,
        Msg::Hello(_) => Some("Hello"),
        Msg::Copy { .. } => Some("Copy"),
        Msg::Copied { .. } => Some("Copied"),
        Msg::Sync { .. } | Msg::SyncPlease => Some("Sync"),
        Msg::Start { .. } | Msg::Started { .. } => Some("Start"),
        Msg::DropCopy { .. } | Msg::Dropped { .. } => Some("DropCopy"),
        Msg::Expired { .. } | Msg::Fenced { .. } => Some("Fencing"),
        Msg::SyncFor(_) | Msg::SyncedFor(_) | Msg::HeldFor { .. } => Some("Confirm"),
        _ => Some("other"),
    }
}

pub(super) fn msg_name(msg: &Msg) -> String {
    match msg {
        Msg::Hello(h) => format!("Hello from {}", h.from),
        Msg::Registered { regs, corr } => format!("Registered {corr:?} x{}", regs.len()),
        Msg::Copy { corr, copies, .. } => format!("Copy {corr} x{}", copies.len()),
        Msg::Start {
            corr,
            snapshot,
            epoch,
            stale,
            claim,
            passive,
        } => {
            format!(
                "Start {corr} {} e{epoch} v{} stale={} claim={claim} passive={passive}",
                snapshot.id,
                snapshot.version,
                stale.len()
            )
        }
        Msg::Sync { sync, regs, last } => {
            format!("Sync {sync} x{} last={last}", regs.len())
        }
        Msg::Members(list) => format!("Members x{}", list.len()),
        Msg::Holdings { gen, games } => format!("Holdings g{gen} x{}", games.len()),
        Msg::Missing(list) => format!("Missing x{}", list.len()),
        other => format!("{other:?}"),
    }
}

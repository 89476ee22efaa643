//! `GameSession`: the actor that owns one game.
//!
//! It applies commands one at a time, ends rounds when their deadline passes,
//! saves every accepted change to its [`StateSink`] (if any) *before*
//! acknowledging it, and stops itself once the game has concluded. With an
//! [`Idle`] policy it tells its owner when no command came for a while, and
//! hands its game back when asked to passivate.

use crate::change::Change;
use crate::clock;
use crate::codec;
use crate::command::{Ack, Answer, Command, OpId, Reply, MAX_UPDATES_WAIT_MS};
use crate::engine::EngineError;
use crate::game::Game;
use crate::ids::GameId;
use crate::updates::GameUpdate;
use async_trait::async_trait;
use ractor::concurrency::JoinHandle;
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long a session waits before retrying a round end its sink refused.
const SINK_RETRY: Duration = Duration::from_millis(200);

/// How much later a round timer that fired before its deadline (the wall
/// clock counts whole milliseconds) looks again.
const TIMER_SLACK: Duration = Duration::from_millis(1);

/// The stop reason of a session that passivated.
pub const PASSIVATED: &str = "passivated";

/// Durable (or replicated) storage for session state.
///
/// A session calls [`save`](StateSink::save) after applying a change and
/// before acknowledging it; if `save` fails the change is dropped and the
/// caller gets the error, so an acknowledged change is always saved.
#[async_trait]
pub trait StateSink: Send + Sync + 'static {
    /// Stores the latest state of `game`.
    async fn save(&self, game: &Game) -> Result<(), EngineError>;
    /// Stores `game`, which `change` just made from the state saved
    /// before: a sink that can keep the change instead of the whole game
    /// (a backup that replays it) saves bytes. Saves the whole game by
    /// default.
    async fn save_change(&self, game: &Game, change: &Change) -> Result<(), EngineError> {
        let _ = change;
        self.save(game).await
    }
    /// The latest stored state of game `id`, used to restart a failed session.
    async fn load(&self, id: GameId) -> Option<Game>;
    /// Confirms that `game`, as this session holds it, is the game's latest
    /// acknowledged state, before a [`Command::GetGameConfirmed`] is
    /// answered. Nothing to confirm by default.
    async fn confirm(&self, game: &Game) -> Result<(), EngineError> {
        let _ = game;
        Ok(())
    }
}

/// The session actor. Spawn it with [`SessionArgs`].
pub struct GameSession;

/// What a session starts from.
pub struct SessionArgs {
    /// The game to own: a new game, or a snapshot to continue.
    pub game: Game,
    /// Where accepted changes are saved before they are acknowledged.
    pub sink: Option<Arc<dyn StateSink>>,
    /// When the session counts as idle, and whom it tells.
    pub idle: Option<Idle>,
}

/// A session's idle policy: after `after` without a command (a read or a
/// write; round ends do not count), the session calls `notify` with its
/// game's id, and again every `after` while it stays idle. Its owner may
/// then send it [`SessionMsg::Passivate`].
#[derive(Clone)]
pub struct Idle {
    /// How long without a command makes the session idle.
    pub after: Duration,
    /// Told the id of a game whose session is idle.
    pub notify: Arc<dyn Fn(GameId) + Send + Sync>,
}

/// Messages a session handles.
pub enum SessionMsg {
    /// Apply a command and reply with its result (a write with its
    /// [`Ack`]).
    Command(Command, Replier),
    /// Apply write `op` unless it was applied already, and reply as the
    /// [`Answer`] asks: its [`Ack`] or the whole game after it. A repeated
    /// op is answered with the version it made, and the current game's
    /// round and status (or the current game). Safe to deliver more than
    /// once.
    Write(OpId, Command, Answer, Replier),
    /// The deadline of `round` has passed.
    RoundTimer {
        /// The round the timer was armed for; stale timers are ignored.
        round: u32,
    },
    /// Reply with the complete state and stop: the game is moving elsewhere.
    /// Commands queued before this one are applied first.
    Release(RpcReplyPort<Game>),
    /// Save the current state again (its backup copy is moving to another
    /// member). Queued behind commands, so it never overlaps their saves.
    Resave,
    /// Time to see whether the session is idle.
    IdleCheck,
    /// The wait of some held [`Command::Updates`] is over.
    UpdatesDue,
    /// Stop and reply with the complete state, unless a command came within
    /// the [`Idle`] policy's `after` (then reply `None` and go on). A
    /// session without a policy always stops. Its game is passivated: kept
    /// as its state alone until the next command restarts it.
    Passivate(RpcReplyPort<Option<Game>>),
}

impl ractor::Message for SessionMsg {}

/// Where a session sends a command's result.
pub enum Replier {
    /// A caller waiting for it (as [`ActorRef::call`] does).
    Port(RpcReplyPort<Result<Reply, EngineError>>),
    /// A function the session calls with it, on its own task: for a
    /// caller that only forwards the result (a node's router answering a
    /// peer), which spares a task that would do nothing but wait for it.
    /// Dropped uncalled if the session stops before the command's turn.
    Callback(Box<dyn FnOnce(Result<Reply, EngineError>) + Send>),
}

impl Replier {
    /// Hands `result` over.
    pub fn send(self, result: Result<Reply, EngineError>) {
        match self {
            Replier::Port(port) => {
                let _ = port.send(result);
            }
            Replier::Callback(callback) => callback(result),
        }
    }
}

impl From<RpcReplyPort<Result<Reply, EngineError>>> for Replier {
    fn from(port: RpcReplyPort<Result<Reply, EngineError>>) -> Self {
        Replier::Port(port)
    }
}

/// A running session's state.
pub struct SessionState {
    game: Game,
    sink: Option<Arc<dyn StateSink>>,
    /// When the current round ends, on the runtime's clock (computed once
    /// per round from the game's wall-clock deadline).
    deadline: Instant,
    timer: Option<RoundTimer>,
    idle: Option<Idle>,
    /// When the last command came.
    used: Instant,
    /// The pending idle check.
    idle_check: Option<Aborting>,
    /// Questions for updates held until the game changes or their wait is
    /// over.
    waiters: Vec<Waiter>,
}

/// A held [`Command::Updates`].
struct Waiter {
    after: Option<u64>,
    until: Instant,
    reply: Replier,
    /// Its wait's end, as a message to the session.
    _due: Aborting,
}

type TimerTask = JoinHandle<Result<(), MessagingErr<SessionMsg>>>;

/// Aborts a timer task when dropped (a killed session drops its state
/// without running `post_stop`).
struct Aborting(TimerTask);

impl Drop for Aborting {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The pending round timer and when it fires.
struct RoundTimer {
    handle: TimerTask,
    fires_at: Instant,
}

// A killed session skips `post_stop` but still drops its state: the timer
// task (a sleep of up to a round) must end with it, not linger.
impl Drop for RoundTimer {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl SessionState {
    // Applies a command on a copy, saves the copy, then commits it: a change
    // that cannot be saved never becomes visible.
    // A write answers as `answer` asks.
    async fn execute(
        &mut self,
        command: &Command,
        op: Option<OpId>,
        answer: Answer,
    ) -> Result<Reply, EngineError> {
        // A command sees the rounds that ended before it, whether or not
        // their timer has fired yet (or the game was passivated). A read
        // sees them without saving them: whoever restores the game ends
        // them the same way. One that concluded the game finds it gone, as
        // it would had the timer stopped the session.
        let now = clock::now_ms();
        let due = Change::rounds_due(&self.game, now);
        if !due.is_empty() {
            let mut view = self.game.clone();
            Change::replay(&mut view, &due)?;
            if !command.is_write() && view.is_active() {
                return Ok(command.apply(&mut view, now)?);
            }
            self.commit_rounds(view, &due).await?;
            if !self.game.is_active() {
                return Err(EngineError::GameNotAlive(self.game.id));
            }
        }
        if !command.is_write() {
            if let (Command::GetGameConfirmed, Some(sink)) = (command, &self.sink) {
                sink.confirm(&self.game).await?;
            }
            return Ok(command.apply(&mut self.game, now)?);
        }
        let made = |(done, version): &(OpId, u64)| (Some(*done) == op).then_some(*version);
        if let Some(version) = self.game.applied_ops.iter().find_map(made) {
            return Ok(match self.answer(answer) {
                Reply::Ack(ack) => Reply::Ack(Ack { version, ..ack }),
                game => game,
            });
        }
        let change = Change {
            op,
            command: command.clone(),
            at_ms: now,
        };
        // A refused command discards `next`, and its write id with it.
        let mut next = self.game.clone();
        let reply = change.apply_in_place(&mut next)?;
        if let Some(sink) = &self.sink {
            sink.save_change(&next, &change).await?;
        }
        self.game = next;
        Ok(match answer {
            Answer::Ack => reply,
            Answer::Game => self.answer(answer),
        })
    }

    /// Ends the rounds whose deadline has passed, each at its deadline
    /// ([`Change::rounds_due`]), and saves the result.
    async fn catch_up(&mut self) -> Result<(), EngineError> {
        let due = Change::rounds_due(&self.game, clock::now_ms());
        if due.is_empty() {
            return Ok(());
        }
        let mut next = self.game.clone();
        Change::replay(&mut next, &due)?;
        self.commit_rounds(next, &due).await
    }

    /// Saves `next`, which the round ends `due` made of the game (one
    /// change alone, several as the whole game), then makes it current.
    async fn commit_rounds(&mut self, next: Game, due: &[Change]) -> Result<(), EngineError> {
        if let Some(sink) = &self.sink {
            match due {
                [one] => sink.save_change(&next, one).await?,
                _ => sink.save(&next).await?,
            }
        }
        self.game = next;
        Ok(())
    }

    /// Whether no command came within the idle policy's period (always,
    /// without a policy).
    fn is_idle(&self) -> bool {
        self.idle
            .as_ref()
            .is_none_or(|idle| self.used.elapsed() >= idle.after)
    }

    /// Arms the next idle check: when the session would turn idle, or one
    /// period from now if it is idle already (its owner did not passivate
    /// it, so it asks again later).
    fn arm_idle_check(&mut self, myself: &ActorRef<SessionMsg>) {
        let Some(idle) = &self.idle else { return };
        let due = (self.used + idle.after).saturating_duration_since(Instant::now());
        let delay = if due.is_zero() { idle.after } else { due };
        let handle = myself.send_after(delay, || SessionMsg::IdleCheck);
        self.idle_check = Some(Aborting(handle));
    }

    /// Answers a question for updates now if there are any, or holds it
    /// until the game changes or `wait_ms` is over.
    fn updates(
        &mut self,
        myself: &ActorRef<SessionMsg>,
        after: Option<u64>,
        wait_ms: u32,
        reply: Replier,
    ) {
        let updates = GameUpdate::since(&self.game, after);
        if !updates.is_empty() || wait_ms == 0 {
            return reply.send(Ok(Reply::Updates(updates)));
        }
        let wait = Duration::from_millis(wait_ms.min(MAX_UPDATES_WAIT_MS).into());
        let due = myself.send_after(wait, || SessionMsg::UpdatesDue);
        self.waiters.push(Waiter {
            after,
            until: Instant::now() + wait,
            reply,
            _due: Aborting(due),
        });
    }

    /// Answers the held questions that have something new, or whose wait
    /// is over; all of them if `all` (the session is stopping: they ask
    /// its game's next owner).
    fn answer_waiters(&mut self, all: bool) {
        let now = Instant::now();
        for waiter in std::mem::take(&mut self.waiters) {
            let updates = GameUpdate::since(&self.game, waiter.after);
            if all || !updates.is_empty() || waiter.until <= now {
                waiter.reply.send(Ok(Reply::Updates(updates)));
            } else {
                self.waiters.push(waiter);
            }
        }
    }

    /// The answer a write gets about the current game.
    fn answer(&self, answer: Answer) -> Reply {
        match answer {
            Answer::Ack => Reply::Ack(Ack::of(&self.game)),
            Answer::Game => Reply::Game(Box::new(self.game.clone())),
        }
    }

    // Ending a round early moves the deadline later, so a pending timer is
    // kept: it fires early, finds its round over and re-arms. Replacing the
    // timer task on every command that ends a round would cost more than
    // the command itself.
    fn ensure_timer(&mut self, myself: &ActorRef<SessionMsg>) {
        match &self.timer {
            _ if !self.game.is_active() => self.cancel_timer(),
            Some(t) if t.fires_at <= self.deadline && !t.handle.is_finished() => {}
            _ => self.arm_timer(myself, self.deadline),
        }
    }

    /// A new round began: its deadline, then its timer.
    fn round_began(&mut self, myself: &ActorRef<SessionMsg>) {
        self.deadline = Instant::now() + clock::until(self.game.round_ends_at_ms);
        self.ensure_timer(myself);
    }

    fn arm_timer(&mut self, myself: &ActorRef<SessionMsg>, at: Instant) {
        self.cancel_timer();
        let round = self.game.round;
        let delay = at.saturating_duration_since(Instant::now());
        let handle = myself.send_after(delay, move || SessionMsg::RoundTimer { round });
        self.timer = Some(RoundTimer {
            handle,
            fires_at: at,
        });
    }

    fn cancel_timer(&mut self) {
        self.timer = None;
    }
}

impl Actor for GameSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let mut state = SessionState {
            game: args.game,
            sink: args.sink,
            deadline: Instant::now(),
            timer: None,
            idle: args.idle,
            used: Instant::now(),
            idle_check: None,
            waiters: Vec::new(),
        };
        // A deadline that passed while the game was elsewhere fires at once.
        state.round_began(&myself);
        state.arm_idle_check(&myself);
        Ok(state)
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel_timer();
        state.idle_check = None;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let round_before = state.game.round;
        match message {
            SessionMsg::Command(Command::Updates { after, wait_ms }, reply) => {
                state.used = Instant::now();
                state.updates(&myself, after, wait_ms, reply);
                return Ok(());
            }
            SessionMsg::UpdatesDue => {
                state.answer_waiters(false);
                return Ok(());
            }
            SessionMsg::Command(command, reply) => {
                state.used = Instant::now();
                let result = state.execute(&command, None, Answer::Ack).await;
                reply.send(result);
            }
            SessionMsg::Write(op, command, answer, reply) => {
                state.used = Instant::now();
                let result = state.execute(&command, Some(op), answer).await;
                reply.send(result);
            }
            SessionMsg::RoundTimer { round } => {
                // This timer is spent (or superseded); forget it so that
                // `ensure_timer` arms one for the current deadline.
                state.timer = None;
                if round != state.game.round || !state.game.is_active() {
                    state.ensure_timer(&myself);
                    return Ok(());
                }
                if let Err(e) = state.catch_up().await {
                    tracing::warn!(game = %state.game.id, error = %e, "round end not saved; retrying");
                    state.arm_timer(&myself, Instant::now() + SINK_RETRY);
                    return Ok(());
                }
                if state.game.round == round && state.game.is_active() {
                    // Fired a moment early: not due yet.
                    state.arm_timer(&myself, state.deadline.max(Instant::now()) + TIMER_SLACK);
                    return Ok(());
                }
            }
            SessionMsg::IdleCheck => {
                state.idle_check = None;
                if state.is_idle() {
                    if let Some(idle) = &state.idle {
                        (idle.notify)(state.game.id);
                    }
                }
                state.arm_idle_check(&myself);
                return Ok(());
            }
            SessionMsg::Passivate(reply) => {
                if !state.is_idle() {
                    let _ = reply.send(None);
                    return Ok(());
                }
                if let Err(e) = codec::encoded_len(&state.game) {
                    // Kept as its state, it could not be read back.
                    tracing::warn!(game = %state.game.id, error = %e, "session not passivated");
                    let _ = reply.send(None);
                    return Ok(());
                }
                state.cancel_timer();
                state.idle_check = None;
                state.answer_waiters(true);
                let _ = reply.send(Some(state.game.clone()));
                myself.stop(Some(PASSIVATED.into()));
                return Ok(());
            }
            SessionMsg::Resave => {
                if let Some(sink) = &state.sink {
                    if let Err(e) = sink.save(&state.game).await {
                        tracing::debug!(game = %state.game.id, error = %e, "state not saved again");
                    }
                }
                return Ok(());
            }
            SessionMsg::Release(reply) => {
                state.cancel_timer();
                state.answer_waiters(true);
                let _ = reply.send(state.game.clone());
                myself.stop(Some("released".into()));
                return Ok(());
            }
        }
        if !state.waiters.is_empty() {
            state.answer_waiters(false);
        }
        if !state.game.is_active() {
            tracing::info!(game = %state.game.id, "game concluded; session stopping");
            myself.stop(Some("concluded".into()));
        } else if state.game.round != round_before {
            state.round_began(&myself);
        }
        Ok(())
    }
}

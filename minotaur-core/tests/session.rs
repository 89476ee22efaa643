//! The `GameSession` actor, on tokio's paused clock.
//!
//! A session arms its round timer from the wall clock (the deadline is an
//! absolute time in the game), but the timer itself is a tokio sleep. With
//! the clock paused, tokio only moves time when told to (`advance`) or when
//! every task is idle; the tests use round lengths of an hour, so that
//! nothing fires unless a test advances past it, and wait for the actors
//! with `yield_now`, which never lets the paused clock jump.

use async_trait::async_trait;
use minotaur_core::clock;
use minotaur_core::local::{call_session, call_session_write};
use minotaur_core::{
    Ack, Answer, Command, EngineError, EventKind, Game, GameConfig, GameError, GameId, GameSession,
    GameStatus, Hex, Reply, SessionArgs, SessionMsg, StateSink, UserId,
};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorRef, ActorStatus, RpcReplyPort};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::advance;
use uuid::Uuid;

const HOUR: Duration = Duration::from_secs(3600);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

fn u(name: &str) -> UserId {
    UserId::from(name)
}

/// Ann at the origin next to Bob at (1, 0), no walls, hour-long rounds,
/// the first ending an hour from now.
fn new_game() -> Game {
    let config = GameConfig {
        wall_count: 0,
        round_length_ms: HOUR.as_millis() as u64,
        ..GameConfig::default()
    };
    let mut game = Game::new(
        GameId(Uuid::new_v4()),
        "SESS".parse().unwrap(),
        vec![u("ann"), u("bob")],
        config,
        clock::now_ms(),
    )
    .unwrap();
    game.players[0].position = Hex::ORIGIN;
    game.players[1].position = Hex::new(1, 0);
    game
}

/// Starts a session and lets its round timer start ticking: the timer is a
/// task whose sleep begins when the task first runs, so a test that advanced
/// the clock before that would push the deadline back by as much.
async fn spawn(
    game: Game,
    sink: Option<Arc<dyn StateSink>>,
) -> (ActorRef<SessionMsg>, JoinHandle<()>) {
    let started = Actor::spawn(
        None,
        GameSession,
        SessionArgs {
            game,
            sink,
            idle: None,
        },
    )
    .await
    .expect("session starts");
    settle().await;
    started
}

async fn send(actor: &ActorRef<SessionMsg>, command: Command) -> Result<Reply, EngineError> {
    // The id is only used in error messages.
    call_session(actor, GameId(Uuid::nil()), command, CALL_TIMEOUT).await
}

async fn get(actor: &ActorRef<SessionMsg>) -> Game {
    match send(actor, Command::GetGame).await {
        Ok(Reply::Game(game)) => *game,
        other => panic!("expected a game, got {other:?}"),
    }
}

/// A write without an op id: answered with its ack.
async fn write(actor: &ActorRef<SessionMsg>, command: Command) -> Result<Ack, EngineError> {
    match send(actor, command).await? {
        Reply::Ack(ack) => Ok(ack),
        other => panic!("expected an ack, got {other:?}"),
    }
}

/// Write `op`, answered as `answer` asks.
async fn write_op(
    actor: &ActorRef<SessionMsg>,
    op: u64,
    command: Command,
    answer: Answer,
) -> Result<Reply, EngineError> {
    call_session_write(
        actor,
        GameId(Uuid::nil()),
        op,
        command,
        answer,
        CALL_TIMEOUT,
    )
    .await
}

/// Lets every ready task run (timers that are due fire, actors drain their
/// mailboxes) without moving the paused clock.
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

/// Waits for an actor to stop; the paused clock makes the bound virtual.
async fn stopped(actor: &ActorRef<SessionMsg>, handle: JoinHandle<()>) {
    tokio::time::timeout(Duration::from_secs(60), handle)
        .await
        .expect("the session stops")
        .expect("the session task does not panic");
    assert_eq!(actor.get_status(), ActorStatus::Stopped);
}

fn attack(user: &str, target: &str) -> Command {
    Command::RegisterAttack {
        user: u(user),
        target: u(target),
    }
}

fn step(user: &str, q: i32, r: i32) -> Command {
    Command::RegisterMove {
        user: u(user),
        vector: Hex::new(q, r),
    }
}

/// Records what it is asked to save; fails while `fail` is set.
#[derive(Default)]
struct TestSink {
    saved: Mutex<Vec<Game>>,
    fail: AtomicBool,
    attempts: AtomicUsize,
}

impl TestSink {
    fn failing() -> Self {
        let sink = TestSink::default();
        sink.fail.store(true, Ordering::SeqCst);
        sink
    }

    fn saved(&self) -> Vec<Game> {
        self.saved.lock().unwrap().clone()
    }
}

#[async_trait]
impl StateSink for TestSink {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(EngineError::Unavailable("disk full".into()));
        }
        self.saved.lock().unwrap().push(game.clone());
        Ok(())
    }

    async fn load(&self, id: GameId) -> Option<Game> {
        self.saved
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|g| g.id == id)
            .cloned()
    }
}

// ---------------------------------------------------------------- timers

#[tokio::test(start_paused = true)]
async fn a_round_ends_when_its_time_is_up() {
    let game = new_game();
    let (actor, _handle) = spawn(game.clone(), None).await;
    write(&actor, step("ann", 0, 1)).await.unwrap();

    advance(HOUR / 2).await;
    settle().await;
    let half_time = get(&actor).await;
    assert_eq!(half_time.round, 1, "half the round has passed");
    assert_eq!(half_time.version, 1);

    advance(HOUR / 2 + Duration::from_secs(1)).await;
    settle().await;
    let next = get(&actor).await;
    assert_eq!(next.round, 2);
    assert_eq!(next.version, 2, "the round end is one change");
    assert_eq!(next.players[0].position, Hex::new(0, 1), "actions resolved");
    assert!(next.actions.is_empty());
    assert!(next.round_ends_at_ms >= game.round_ends_at_ms);
    assert!(next
        .events
        .iter()
        .any(|e| e.kind == EventKind::RoundEnded { round: 1 }));

    // The timer is armed again for the next round.
    advance(HOUR / 2).await;
    settle().await;
    assert_eq!(get(&actor).await.round, 2);
    advance(HOUR / 2 + Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(get(&actor).await.round, 3);
}

#[tokio::test(start_paused = true)]
async fn ending_a_round_early_rearms_the_timer_for_the_new_deadline() {
    let (actor, _handle) = spawn(new_game(), None).await;
    advance(HOUR / 2).await;
    let after = write(&actor, Command::EndRound).await.unwrap();
    assert_eq!(after.round, 2);
    settle().await;
    // The old round-1 timer would fire here; it must not end round 2.
    advance(HOUR / 2 + Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(get(&actor).await.round, 2);
    // Round 2 lasts a full round length from its early start.
    advance(HOUR / 2).await;
    settle().await;
    assert_eq!(get(&actor).await.round, 3);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_whose_deadline_passed_ends_its_round_at_once() {
    let mut snapshot = new_game();
    snapshot.players[0].action_points = 0; // as if the move below was paid
    snapshot
        .actions
        .push(minotaur_core::game::RegisteredAction {
            user: u("ann"),
            action: minotaur_core::Action::Move {
                vector: Hex::new(-1, 0),
            },
        });
    snapshot.round_ends_at_ms = clock::now_ms() - 5_000;
    let (actor, _handle) = spawn(snapshot.clone(), None).await;
    settle().await;
    let game = get(&actor).await;
    assert_eq!(game.round, 2, "no time had to pass");
    assert_eq!(game.version, snapshot.version + 1);
    assert_eq!(game.players[0].position, Hex::new(-1, 0));
    assert!(game.round_ends_at_ms >= snapshot.round_ends_at_ms + HOUR.as_millis() as u64);
}

#[tokio::test(start_paused = true)]
async fn a_snapshot_keeps_its_remaining_time() {
    let mut snapshot = new_game();
    snapshot.round = 7;
    snapshot.round_ends_at_ms = clock::now_ms() + 2 * HOUR.as_millis() as u64;
    let (actor, _handle) = spawn(snapshot, None).await;
    advance(HOUR + HOUR / 2).await;
    settle().await;
    assert_eq!(get(&actor).await.round, 7, "not the full length: the rest");
    advance(HOUR / 2 + Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(get(&actor).await.round, 8);
}

#[tokio::test(start_paused = true)]
async fn only_the_timer_of_the_current_round_counts() {
    let (actor, _handle) = spawn(new_game(), None).await;
    actor
        .cast(SessionMsg::RoundTimer { round: 5 })
        .expect("session alive");
    actor
        .cast(SessionMsg::RoundTimer { round: 0 })
        .expect("session alive");
    let game = get(&actor).await;
    assert_eq!((game.round, game.version), (1, 0), "stale timers ignored");
    actor
        .cast(SessionMsg::RoundTimer { round: 1 })
        .expect("session alive");
    let game = get(&actor).await;
    assert_eq!(game.round, 1, "a timer before the deadline ends nothing");
    advance(HOUR).await;
    settle().await;
    let ended = get(&actor).await;
    assert_eq!((ended.round, ended.version), (2, 1));
    assert_eq!(
        ended.round_ends_at_ms,
        game.round_ends_at_ms + HOUR.as_millis() as u64,
        "rounds end at their deadline"
    );
}

// ---------------------------------------------------------------- stopping

/// Ann hits Bob, who has 4 health left, so the round ends the game.
async fn about_to_conclude(
    sink: Option<Arc<dyn StateSink>>,
) -> (ActorRef<SessionMsg>, JoinHandle<()>) {
    let mut game = new_game();
    game.players[1].health = 4;
    let (actor, handle) = spawn(game, sink).await;
    write(&actor, attack("ann", "bob")).await.unwrap();
    (actor, handle)
}

#[tokio::test(start_paused = true)]
async fn a_session_stops_once_its_game_concludes() {
    let (actor, handle) = about_to_conclude(None).await;
    let last = write(&actor, Command::EndRound).await.unwrap();
    assert_eq!(
        last.status,
        GameStatus::Concluded {
            winner: Some(u("ann"))
        },
        "the concluding command still gets its reply"
    );
    stopped(&actor, handle).await;
    assert!(matches!(
        send(&actor, Command::GetGame).await,
        Err(EngineError::GameNotAlive(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_session_whose_game_concludes_on_the_timer_stops() {
    let sink = Arc::new(TestSink::default());
    let (actor, handle) = about_to_conclude(Some(sink.clone())).await;
    advance(HOUR + Duration::from_secs(1)).await;
    stopped(&actor, handle).await;
    let saved = sink.saved();
    let last = saved.last().expect("the conclusion was saved");
    assert_eq!(
        last.status,
        GameStatus::Concluded {
            winner: Some(u("ann"))
        }
    );
    assert_eq!(last.version, 2);
}

#[tokio::test(start_paused = true)]
async fn release_hands_over_the_full_state_and_stops() {
    let sink = Arc::new(TestSink::default());
    let (actor, handle) = spawn(new_game(), Some(sink.clone())).await;
    write(&actor, step("ann", 0, 1)).await.unwrap();

    // A command queued before the release is applied before it.
    let (tx, rx) = ractor::concurrency::oneshot();
    actor
        .cast(SessionMsg::Write(
            9,
            attack("bob", "ann"),
            Answer::Game,
            RpcReplyPort::from(tx).into(),
        ))
        .unwrap();
    let released = match actor.call(SessionMsg::Release, Some(CALL_TIMEOUT)).await {
        Ok(CallResult::Success(game)) => game,
        _ => panic!("the release is answered"),
    };
    let queued = rx.await.expect("the queued command was answered");
    let Ok(Reply::Game(after_queued)) = queued else {
        panic!("the queued attack was accepted: {queued:?}");
    };
    assert_eq!(released, *after_queued);
    assert_eq!(released.version, 2);
    assert_eq!(released.actions.len(), 2, "registrations travel with it");
    assert_eq!(Some(&released), sink.saved().last());

    stopped(&actor, handle).await;
    // Its timer went with it: nothing more is saved.
    advance(2 * HOUR).await;
    settle().await;
    assert_eq!(sink.saved().len(), 2);
}

// ---------------------------------------------------------------- sinks

#[tokio::test(start_paused = true)]
async fn a_failing_sink_refuses_the_change() {
    let sink = Arc::new(TestSink::failing());
    let game = new_game();
    let (actor, _handle) = spawn(game.clone(), Some(sink.clone())).await;

    for command in [step("ann", 0, 1), attack("ann", "bob"), Command::EndRound] {
        assert_eq!(
            send(&actor, command).await,
            Err(EngineError::Unavailable("disk full".into()))
        );
    }
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 3);
    assert_eq!(get(&actor).await, game, "nothing changed");
    // Reads do not go through the sink.
    let status = send(&actor, Command::PlayerStatus { user: u("ann") }).await;
    assert!(matches!(status, Ok(Reply::Status(s)) if s.action_points == 2));
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 3);
    // A refused command is refused before the sink is asked.
    assert_eq!(
        send(&actor, step("ann", 0, 0)).await,
        Err(EngineError::Rule(GameError::InvalidMove(
            minotaur_core::MoveError::ZeroVector
        )))
    );
    assert_eq!(sink.attempts.load(Ordering::SeqCst), 3);

    // Once the sink works again, so does the session.
    sink.fail.store(false, Ordering::SeqCst);
    let after = write(&actor, step("ann", 0, 1)).await.unwrap();
    assert_eq!(after.version, 1);
    let saved = sink.saved();
    assert_eq!(saved, vec![get(&actor).await]);
    assert_eq!(after, Ack::of(&saved[0]));
}

#[tokio::test(start_paused = true)]
async fn a_round_end_the_sink_refused_is_retried() {
    let sink = Arc::new(TestSink::failing());
    let (actor, _handle) = spawn(new_game(), Some(sink.clone())).await;
    advance(HOUR + Duration::from_secs(1)).await;
    settle().await;
    let attempts = sink.attempts.load(Ordering::SeqCst);
    assert!(attempts >= 1, "the round end was tried");
    assert!(sink.saved().is_empty(), "but not saved");
    // A read shows the round as ended all the same: whoever restores the
    // game ends it the same way.
    assert_eq!(get(&actor).await.round, 2);

    // Still failing: it keeps trying.
    advance(Duration::from_secs(1)).await;
    settle().await;
    assert!(sink.attempts.load(Ordering::SeqCst) > attempts);
    assert!(sink.saved().is_empty());

    sink.fail.store(false, Ordering::SeqCst);
    advance(Duration::from_secs(1)).await;
    settle().await;
    let game = get(&actor).await;
    assert_eq!((game.round, game.version), (2, 1));
    assert_eq!(sink.saved(), vec![game]);
}

#[tokio::test(start_paused = true)]
async fn the_sink_receives_every_accepted_change() {
    let sink = Arc::new(TestSink::default());
    let (actor, _handle) = spawn(new_game(), Some(sink.clone())).await;
    // The acks, and the game read after each accepted change.
    let mut replies = Vec::new();
    let mut games = Vec::new();
    replies.push(write(&actor, step("ann", 0, 1)).await.unwrap());
    games.push(get(&actor).await);
    assert!(write(&actor, step("ann", 5, 0)).await.is_err());
    assert!(write(&actor, attack("ann", "ann")).await.is_err());
    replies.push(write(&actor, attack("bob", "ann")).await.unwrap());
    games.push(get(&actor).await);
    replies.push(write(&actor, Command::EndRound).await.unwrap());
    games.push(get(&actor).await);
    replies.push(write(&actor, step("bob", 1, 0)).await.unwrap());
    games.push(get(&actor).await);
    advance(HOUR + Duration::from_secs(1)).await;
    settle().await;
    let current = get(&actor).await;
    assert_eq!(current.round, 3);
    replies.push(Ack::of(&current));
    games.push(current);

    let saved = sink.saved();
    assert_eq!(saved, games, "each accepted change, in order");
    let acked: Vec<Ack> = saved.iter().map(Ack::of).collect();
    assert_eq!(acked, replies, "each acknowledged as saved");
    let versions: Vec<u64> = saved.iter().map(|g| g.version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_write_delivered_twice_is_applied_once() {
    let sink = Arc::new(TestSink::default());
    let (actor, _handle) = spawn(new_game(), Some(sink.clone())).await;
    let once = write_op(&actor, 7, step("ann", 0, 1), Answer::Ack)
        .await
        .unwrap();
    let again = write_op(&actor, 7, step("ann", 0, 1), Answer::Ack)
        .await
        .unwrap();
    assert_eq!(once, again, "the repeat answers with the state, unchanged");
    let game = get(&actor).await;
    assert_eq!(once, Reply::Ack(Ack::of(&game)));
    assert_eq!(game.version, 1);
    assert_eq!(game.player(&u("ann")).unwrap().actions_accepted, 1);
    assert_eq!(sink.saved().len(), 1, "saved once");
    // A repeat that asks for the game gets the game, still unchanged.
    let as_game = write_op(&actor, 7, step("ann", 0, 1), Answer::Game)
        .await
        .unwrap();
    assert_eq!(as_game, Reply::Game(Box::new(game)));
    assert_eq!(sink.saved().len(), 1, "saved once");
    // Another id is another write; a refused write leaves no id behind.
    assert!(write_op(&actor, 8, step("ann", 9, 9), Answer::Ack)
        .await
        .is_err());
    assert_eq!(ops(&get(&actor).await), vec![7]);
    // A write that asks for the game gets it as committed (and saved).
    let Reply::Game(after) = write_op(&actor, 8, step("bob", 0, 1), Answer::Game)
        .await
        .unwrap()
    else {
        panic!("expected the game");
    };
    assert_eq!(after.version, 2);
    assert_eq!(Some(&*after), sink.saved().last());
    assert_eq!(*after, get(&actor).await);
    assert_eq!(ops(&get(&actor).await), vec![7, 8]);
    // Repeated after another write, a write is answered with the version
    // it made, not the game's newer one: no two writes share a version.
    let Reply::Ack(repeat) = write_op(&actor, 7, step("ann", 0, 1), Answer::Ack)
        .await
        .unwrap()
    else {
        panic!("expected an ack");
    };
    assert_eq!(repeat.version, 1);
}

/// The write ids a game remembers, oldest first.
fn ops(game: &Game) -> Vec<u64> {
    game.applied_ops.iter().map(|(op, _)| *op).collect()
}

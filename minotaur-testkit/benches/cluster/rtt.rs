//! Figures 1, 2 and 9: command round trips (remote, remote replicated,
//! local) against bare ractor calls of the same payload, and how soon a new
//! registration is visible on another node.
//!
//! The timed command is a move registration, the commonest thing a player
//! sends, and a write (so replication is on its path): Ann steps off her
//! start and back, two moves a round, and after each pair the round is ended
//! to give her action points back. Those round ends are timed apart, as
//! `local_end_round_rtt`: ending a round re-arms the session's round timer.
//! Each game is first played for 40 rounds so its events log is full and
//! its state keeps its size; a write's reply is the session's `Ack`. Baselines and figures are measured in
//! interleaved rounds, so a noisy neighbour hits all of them alike.

use crate::bare::{self, BarePair, HolderMsg};
use crate::common::{self, Scale};
use crate::report::{median, num, us, Figure, Goal, Report};
use minotaur_cluster::protocol::{self, Request, Response};
use minotaur_core::{Ack, Answer, Command, Game, GameEngine, GameId, Hex, OpId, Reply};
use std::time::{Duration, Instant};

const WARM_ROUNDS: usize = 40;

/// One game played by Ann through one engine.
struct Play {
    engine: GameEngine,
    id: GameId,
    /// One step off her start, and back.
    steps: [Hex; 2],
    moves: u64,
    /// The game as read after the warm-up rounds.
    last: Game,
}

impl Play {
    async fn new(engine: &GameEngine, id: GameId) -> Play {
        let game = engine.get_game(id).await.expect("get_game");
        let start = game.players[0].position;
        let step = Hex::DIRECTIONS
            .into_iter()
            .find(|d| game.world.walkable(start + *d))
            .expect("a free hex next to the start");
        let mut play = Play {
            engine: engine.clone(),
            id,
            steps: [step, Hex::new(-step.q, -step.r)],
            moves: 0,
            last: game,
        };
        for _ in 0..WARM_ROUNDS * 2 {
            play.command().await;
        }
        play.last = engine.get_game(id).await.expect("get_game");
        play
    }

    /// A timed move; after every second one, a timed round end.
    async fn command(&mut self) -> (Duration, Option<Duration>) {
        let vector = self.steps[(self.moves % 2) as usize];
        let start = Instant::now();
        self.engine
            .register_move(self.id, "ann".into(), vector)
            .await
            .unwrap_or_else(|e| panic!("register_move: {e}"));
        let took = start.elapsed();
        self.moves += 1;
        if !self.moves.is_multiple_of(2) {
            return (took, None);
        }
        let start = Instant::now();
        self.engine
            .end_round(self.id)
            .await
            .unwrap_or_else(|e| panic!("end_round: {e}"));
        (took, Some(start.elapsed()))
    }

    /// Sizes of the request and response of one remote move, as sent.
    fn wire_sizes(&self) -> (usize, usize) {
        let command = Command::RegisterMove {
            user: "ann".into(),
            vector: self.steps[0],
        };
        sizes(&self.last, command)
    }
}

/// Adds the CPU time used since `since` to `total`; returns now's reading.
fn lap(total: &mut Duration, since: Duration) -> Duration {
    let now = common::cpu_time();
    *total += now.saturating_sub(since);
    now
}

/// An op id as the engine draws one (a random `u64`): it encodes in as
/// many bytes as almost every one of those.
const OP: OpId = 0x5eed_5eed_5eed_5eed;

/// A write as the engine sends it to a peer's router: with an op id, to be
/// answered with an ack.
fn write_request(id: GameId, command: Command) -> Request {
    Request::Write {
        id,
        op: OP,
        command,
        answer: Answer::Ack,
    }
}

/// The session's answer to a write on `game`, as the router sends it back.
fn write_response(game: &Game) -> Response {
    Response::Command(Ok(Reply::Ack(Ack::of(game))))
}

fn sizes(game: &Game, command: Command) -> (usize, usize) {
    let request = protocol::seal(write_request(game.id, command)).expect("encode request");
    let response = protocol::seal(write_response(game)).expect("encode response");
    (request.len(), response.len())
}

/// Mean time to encode and decode one move request and its reply (the
/// codec work a remote command adds to a bare call), in microseconds.
fn codec_cost(game: &Game, vector: Hex) -> f64 {
    const N: usize = 2000;
    let start = Instant::now();
    for _ in 0..N {
        let command = Command::RegisterMove {
            user: "ann".into(),
            vector,
        };
        let request = protocol::seal(write_request(game.id, command)).expect("encode");
        let _: Request = protocol::open(&request).expect("decode");
        let reply = protocol::seal(write_response(game)).expect("encode");
        let _: Response = protocol::open(&reply).expect("decode");
    }
    us(start.elapsed()) / N as f64
}

/// Sizes of the request and response of one remote `EndRound`, as sent.
pub fn wire_sizes(game: &Game) -> (usize, usize) {
    sizes(game, Command::EndRound)
}

/// Figures 1, 2 and 9.
pub async fn run(scale: &Scale, report: &mut Report) {
    // Replication off, and on (the default); sessions go where created, so
    // the games live on n2 and are commanded from n1 (and from n2 itself).
    let plain = common::cluster(2, true, |c| {
        c.replication_factor = 0;
        common::local_placement(c);
    })
    .await;
    let replicated = common::cluster(2, true, common::local_placement).await;
    let users = common::users();
    let a = plain.engine("n1").expect("n1");
    let b = plain.engine("n2").expect("n2");
    let ra = replicated.engine("n1").expect("n1");
    let rb = replicated.engine("n2").expect("n2");
    let remote_game = b.create_game("RTTP", users.clone()).await.expect("create");
    let local_game = b.create_game("RTTL", users.clone()).await.expect("create");
    let repl_game = rb.create_game("RTTR", users).await.expect("create");
    let mut remote = Play::new(&a, remote_game.id).await;
    let mut local = Play::new(&b, local_game.id).await;
    let mut remote_repl = Play::new(&ra, repl_game.id).await;
    // The same session without any cluster: where the local overhead lives.
    let standalone = GameEngine::standalone(minotaur_core::GameConfig::default())
        .await
        .expect("standalone engine");
    let solo_game = standalone
        .create_game("RTTS", common::users())
        .await
        .expect("create");
    let mut solo = Play::new(&standalone, solo_game.id).await;
    let (request_size, response_size) = remote.wire_sizes();
    let pair = BarePair::start(request_size, response_size).await;
    let holder = bare::spawn_holder(local.last.clone()).await;
    for _ in 0..WARM_ROUNDS {
        pair.call().await;
        bare::local_call(&holder).await;
        bare::local_call_with(&holder, HolderMsg::Rearm).await;
    }

    #[derive(Default)]
    struct Samples {
        bare_remote: Vec<f64>,
        remote: Vec<f64>,
        remote_repl: Vec<f64>,
        bare_local: Vec<f64>,
        local: Vec<f64>,
        local_end: Vec<f64>,
        bare_rearm: Vec<f64>,
        solo: Vec<f64>,
    }
    let mut x = Samples::default();
    // CPU time of the whole process per round trip, for each kind.
    let mut cpu = [Duration::ZERO; 5];
    let per_round = scale.rtt_per_round.next_multiple_of(2);
    for _ in 0..scale.rtt_rounds {
        let t = common::cpu_time();
        for _ in 0..per_round {
            x.bare_remote.push(us(pair.call().await));
        }
        let t = lap(&mut cpu[0], t);
        for _ in 0..per_round {
            x.remote.push(us(remote.command().await.0));
        }
        let t = lap(&mut cpu[1], t);
        for _ in 0..per_round {
            x.remote_repl.push(us(remote_repl.command().await.0));
        }
        let t = lap(&mut cpu[2], t);
        for _ in 0..per_round {
            x.bare_local.push(us(bare::local_call(&holder).await));
        }
        let t = lap(&mut cpu[3], t);
        for _ in 0..per_round {
            let (took, end) = local.command().await;
            x.local.push(us(took));
            x.local_end.extend(end.map(us));
        }
        lap(&mut cpu[4], t);
        for _ in 0..per_round {
            x.solo.push(us(solo.command().await.0));
        }
        for _ in 0..per_round / 2 {
            x.bare_rearm
                .push(us(bare::local_call_with(&holder, HolderMsg::Rearm).await));
        }
    }
    let n = x.remote.len();
    let floor = median(&x.bare_remote);
    let per = |d: Duration| num(us(d) / n as f64);
    // The plays also end a round after every second move.
    let per_command = |d: Duration| num(us(d) / (n + n / 2) as f64);
    let payload = format!(
        "{request_size} B request, {response_size} B reply (encode + decode both: {} us)",
        num(codec_cost(&remote.last, remote.steps[0]))
    );
    report.add(
        Figure::new(
            "remote_command_rtt",
            median(&x.remote),
            "us",
            "bare ractor_cluster remote call, same payload",
            Some(floor),
        )
        .goal(Goal::RatioAtMost(1.3))
        .note(format!(
            "median of {n} move registrations; {payload}; CPU per command {} us vs per bare call {} us",
            per_command(cpu[1]),
            per(cpu[0])
        )),
    );
    report.add(
        Figure::new(
            "remote_command_rtt_replicated",
            median(&x.remote_repl),
            "us",
            "bare ractor_cluster remote call, same payload",
            Some(floor),
        )
        .goal(Goal::RatioAtMost(2.2))
        .note(format!(
            "median of {n}; floor is 2 bare calls; CPU per command {} us",
            per_command(cpu[2])
        )),
    );
    report.add(
        Figure::new(
            "local_command_rtt",
            median(&x.local),
            "us",
            "bare ractor local call replying an ack of the game",
            Some(median(&x.bare_local)),
        )
        .goal(Goal::RatioAtMost(1.5))
        .note(format!(
            "median of {n} move registrations; CPU per command {} us vs per bare call {} us",
            per_command(cpu[4]),
            per(cpu[3])
        )),
    );
    report.add(
        Figure::new(
            "local_command_rtt_standalone",
            median(&x.solo),
            "us",
            "bare ractor local call replying an ack of the game",
            Some(median(&x.bare_local)),
        )
        .note(format!(
            "median of {}; the same moves through a standalone engine (LocalDirectory, no cluster)",
            x.solo.len()
        )),
    );
    report.add(
        Figure::new(
            "local_end_round_rtt",
            median(&x.local_end),
            "us",
            "bare local call that also re-arms a send_after timer",
            Some(median(&x.bare_rearm)),
        )
        .note(format!(
            "median of {}; a plain bare local call: {} us",
            x.local_end.len(),
            num(median(&x.bare_local))
        )),
    );
    holder.stop(None);
    plain.shutdown().await;

    visibility(scale, &replicated, floor, report).await;
    replicated.shutdown().await;
    pair.stop().await;
}

/// Figure 9: a game created through n1 (so registered by n1) until a lookup
/// on n2 finds it. `create_game` returns only once every live member has
/// recorded the game, so the lookup is made on n2 right after it returns
/// and must succeed: the figure is the time until that lookup answered.
/// The raw propagation inside it (n1 recorded the game, n2 recorded it) is
/// one leg of the `Register` round trip each create waits for; an observer
/// fine enough to time that leg (a spinning thread, a yielding task, a
/// lowest-priority thread were tried) either steals one of the two cores
/// from the nodes or is not scheduled until the create is over.
async fn visibility(
    scale: &Scale,
    cluster: &minotaur_testkit::TestCluster,
    floor: f64,
    report: &mut Report,
) {
    let n1 = cluster.node("n1").expect("n1");
    let n2 = cluster.node("n2").expect("n2");
    let mut seen = vec![];
    for i in 0..scale.visibility_samples {
        let code = common::code('V', i);
        let start = Instant::now();
        n1.engine()
            .create_game(&code, common::users())
            .await
            .expect("create");
        let found = n2.engine().get_game_by_join_code(&code).await;
        let took = start.elapsed();
        assert!(found.is_ok(), "n2 does not see {code} yet: {found:?}");
        seen.push(us(took));
    }
    report.add(
        Figure::new(
            "registry_visibility",
            median(&seen),
            "us",
            "bare ractor_cluster remote call",
            Some(floor),
        )
        .goal(Goal::RatioAtMost(3.0))
        .note(format!(
            "median of {}; create_game on n1 until get_game_by_join_code on n2 answers (found on the first try every time)",
            seen.len()
        )),
    );
}

/// Only local moves and round ends, for a few seconds: a workload to
/// profile (`--only profile-local`), not a figure.
pub async fn profile_local() {
    let cluster = common::cluster(1, true, |c| c.replication_factor = 0).await;
    let engine = cluster.engine("n1").expect("n1");
    let game = engine
        .create_game("PROF", common::users())
        .await
        .expect("create");
    let mut play = Play::new(&engine, game.id).await;
    let holder = bare::spawn_holder(play.last.clone()).await;
    let (mut moves, mut bare_calls) = (vec![], vec![]);
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        moves.push(us(play.command().await.0));
        bare_calls.push(us(bare::local_call(&holder).await));
    }
    eprintln!(
        "  profile-local: {} moves, median {} us; bare median {} us",
        moves.len(),
        num(median(&moves)),
        num(median(&bare_calls))
    );
    cluster.shutdown().await;
}

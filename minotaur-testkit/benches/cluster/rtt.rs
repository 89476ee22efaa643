//! Figures 1, 2 and 9: command round trips (remote, remote replicated,
//! local) against bare ractor calls of the same payload, and how soon a new
//! registration is visible on another node.
//!
//! The command is `EndRound`: a write (so replication is on its path) that
//! can be repeated forever on a game nobody plays. Each game is first taken
//! through 100 rounds so its events log is full and the reply's size stays
//! the same from one sample to the next. Baselines and figures are measured
//! in interleaved rounds, so a noisy neighbour hits all of them alike.

use crate::bare::{self, BarePair};
use crate::common::{self, Scale};
use crate::report::{median, us, Figure, Goal, Report};
use minotaur_cluster::protocol::{self, Request, Response};
use minotaur_core::{Command, Game, GameEngine, GameId, Reply};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARM_ROUNDS: usize = 100;

async fn end_round(engine: &GameEngine, id: GameId) -> Duration {
    let start = Instant::now();
    engine
        .end_round(id)
        .await
        .unwrap_or_else(|e| panic!("end_round: {e}"));
    start.elapsed()
}

async fn warm(engine: &GameEngine, id: GameId) -> Game {
    let mut last = None;
    for _ in 0..WARM_ROUNDS {
        last = Some(engine.end_round(id).await.expect("warm-up end_round"));
    }
    last.expect("at least one round")
}

/// Sizes of the request and response of one remote `EndRound`, as sent.
pub fn wire_sizes(game: &Game) -> (usize, usize) {
    let request = protocol::seal(Request::Command {
        id: game.id,
        command: Command::EndRound,
    })
    .expect("encode request");
    let response = protocol::seal(Response::Command(Ok(Reply::Game(Box::new(game.clone())))))
        .expect("encode response");
    (request.len(), response.len())
}

/// Figures 1, 2 and 9.
pub async fn run(scale: &Scale, report: &mut Report) {
    // Replication off, and on (the default); sessions go where created, so
    // the game lives on n2 and is commanded from n1.
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
    let game = b.create_game("RTTP", users.clone()).await.expect("create");
    let rgame = rb.create_game("RTTR", users).await.expect("create");
    let last = warm(&a, game.id).await;
    warm(&ra, rgame.id).await;
    let (request_size, response_size) = wire_sizes(&last);
    let pair = BarePair::start(request_size, response_size).await;
    let holder = bare::spawn_holder(last.clone()).await;
    for _ in 0..WARM_ROUNDS {
        pair.call().await;
        bare::local_call(&holder).await;
    }

    let (mut bare_remote, mut remote, mut remote_repl, mut bare_local, mut local) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..scale.rtt_rounds {
        for _ in 0..scale.rtt_per_round {
            bare_remote.push(us(pair.call().await));
        }
        for _ in 0..scale.rtt_per_round {
            remote.push(us(end_round(&a, game.id).await));
        }
        for _ in 0..scale.rtt_per_round {
            remote_repl.push(us(end_round(&ra, rgame.id).await));
        }
        for _ in 0..scale.rtt_per_round {
            bare_local.push(us(bare::local_call(&holder).await));
        }
        for _ in 0..scale.rtt_per_round {
            local.push(us(end_round(&b, game.id).await));
        }
    }
    let n = remote.len();
    let floor = median(&bare_remote);
    let payload = format!("{request_size} B request, {response_size} B reply");
    report.add(
        Figure::new(
            "remote_command_rtt",
            median(&remote),
            "us",
            "bare ractor_cluster remote call, same payload",
            Some(floor),
        )
        .goal(Goal::RatioAtMost(1.25))
        .note(format!("median of {n}; {payload}")),
    );
    report.add(
        Figure::new(
            "remote_command_rtt_replicated",
            median(&remote_repl),
            "us",
            "bare ractor_cluster remote call, same payload",
            Some(floor),
        )
        .goal(Goal::RatioAtMost(2.3))
        .note(format!("median of {n}; floor is 2 bare calls")),
    );
    report.add(
        Figure::new(
            "local_command_rtt",
            median(&local),
            "us",
            "bare ractor local call replying a copy of the game",
            Some(median(&bare_local)),
        )
        .goal(Goal::RatioAtMost(1.5))
        .note(format!("median of {n}")),
    );
    holder.stop(None);
    plain.shutdown().await;

    visibility(scale, &replicated, floor, report).await;
    replicated.shutdown().await;
    pair.stop().await;
}

/// Figure 9: a game created on n1 (its registration made there) until a
/// lookup on n2 finds it. A spinning observer thread records the first
/// moment each node's registry copy has the join code.
async fn visibility(
    scale: &Scale,
    cluster: &minotaur_testkit::TestCluster,
    floor: f64,
    report: &mut Report,
) {
    let n1 = cluster.node("n1").expect("n1");
    let n2 = cluster.node("n2").expect("n2");
    let (mut to_peer, mut propagation, mut acked) = (vec![], vec![], vec![]);
    for i in 0..scale.visibility_samples {
        let code = common::code('V', i);
        let parsed: minotaur_core::JoinCode = code.parse().expect("code");
        let stop = Arc::new(AtomicBool::new(false));
        let (r1, r2, flag) = (n1.registry().clone(), n2.registry().clone(), stop.clone());
        let observer = std::thread::spawn(move || {
            let (mut on1, mut on2) = (None, None);
            while !flag.load(Ordering::Relaxed) && (on1.is_none() || on2.is_none()) {
                if on1.is_none() && r1.by_join_code(&parsed).is_some() {
                    on1 = Some(Instant::now());
                }
                if on2.is_none() && r2.by_join_code(&parsed).is_some() {
                    on2 = Some(Instant::now());
                }
                std::thread::yield_now();
            }
            (on1, on2)
        });
        let start = Instant::now();
        n1.engine()
            .create_game(&code, common::users())
            .await
            .expect("create");
        let done = start.elapsed();
        // The create is acknowledged only once every live member recorded
        // it, so both have it by now; let the observer notice and stop.
        let deadline = Instant::now() + Duration::from_secs(1);
        while !observer.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let observed = observer.join().expect("observer");
        if let (Some(on1), Some(on2)) = observed {
            to_peer.push(us(on2.duration_since(start)));
            propagation.push(us(on2.saturating_duration_since(on1)));
        }
        acked.push(us(done));
    }
    let n = to_peer.len();
    report.add(
        Figure::new(
            "registry_visibility",
            median(&to_peer),
            "us",
            "bare ractor_cluster remote call",
            Some(floor),
        )
        .note(format!(
            "median of {n}; create_game on n1 until n2's lookup finds it"
        )),
    );
    report.add(
        Figure::new(
            "registry_visibility_propagation",
            median(&propagation),
            "us",
            "bare ractor_cluster remote call",
            Some(floor),
        )
        .note(format!(
            "median of {n}; recorded on n1 until recorded on n2"
        )),
    );
    report.add(
        Figure::new(
            "registry_visibility_acked",
            median(&acked),
            "us",
            "bare ractor_cluster remote call",
            Some(floor),
        )
        .note(format!(
            "median of {}; create_game returns (visible on every member by then)",
            acked.len()
        )),
    );
}

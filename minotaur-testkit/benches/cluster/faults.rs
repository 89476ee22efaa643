//! Figures 5 and 6: failover after a node dies (its links closed, or
//! silently stalled), and a graceful drain under command load.
//!
//! In both, the node `n3` hosts every game (sessions go where they are
//! created, and all are created through `n3`); clients talk to `n1` and `n2`.

use crate::common::{self, Scale, PARALLEL};
use crate::report::{median, ms, percentile, Figure, Goal, Report};
use futures::StreamExt;
use minotaur_cluster::{ClusterEvent, SplitPolicy};
use minotaur_core::{Ack, GameEngine, GameId};
use minotaur_testkit::TestCluster;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast::error::RecvError;

/// How long one failover probe may take before it is asked again.
const PROBE: Duration = Duration::from_millis(100);

/// Creates `n` games on n3 and takes each through one round, so each has a
/// state (version 1) that must survive. Returns id -> version.
async fn games_on_n3(cluster: &TestCluster, n: usize) -> HashMap<GameId, u64> {
    let n3 = cluster.engine("n3").expect("n3");
    let games = common::create_games(std::slice::from_ref(&n3), 'F', n).await;
    let after: Vec<Ack> = futures::stream::iter(games)
        .map(|g| {
            let n3 = n3.clone();
            async move { n3.end_round(g.id).await.expect("first round") }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    assert_eq!(cluster.node("n3").expect("n3").hosted().len(), n);
    after.into_iter().map(|g| (g.id, g.version)).collect()
}

/// Kills a node's transport (every link and the listener) at once, as a
/// crashed process's kernel would close its sockets.
fn kill_transport(cell: &ractor::ActorCell) {
    for child in cell.get_children() {
        kill_transport(&child);
    }
    cell.kill();
}

/// Asks every game through `engine` until it answers with its expected
/// version; returns when the last one did, measured from `since`.
async fn all_answer(engine: &GameEngine, games: &HashMap<GameId, u64>, since: Instant) -> Duration {
    let done: Vec<Duration> = futures::stream::iter(games.iter().map(|(id, v)| (*id, *v)))
        .map(|(id, version)| {
            let engine = engine.clone();
            async move {
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    // A probe stuck on a stalled link waits for the call
                    // timeout; abandon it and ask again, so what is measured
                    // is when the game answers, not the timeout.
                    match tokio::time::timeout(PROBE, engine.get_game(id)).await {
                        Ok(Ok(g)) if g.version == version => return since.elapsed(),
                        Ok(Ok(g)) => panic!(
                            "game {id} came back at version {} instead of {version}",
                            g.version
                        ),
                        Ok(Err(e)) => {
                            assert!(Instant::now() < deadline, "game {id} never came back: {e}")
                        }
                        Err(_) => assert!(Instant::now() < deadline, "game {id} never came back"),
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
        .buffer_unordered(256)
        .collect()
        .await;
    done.into_iter().max().unwrap_or_default()
}

/// One failover: `stalled` stalls n3's links silently instead of closing them.
/// Returns (all answered, the failure timeout, last FailedOver event).
async fn failover_once(
    scale: &Scale,
    stalled: bool,
    split: SplitPolicy,
) -> (Duration, Duration, Duration) {
    let cluster = common::cluster(3, !stalled, move |c| {
        common::local_placement(c);
        c.split = split;
    })
    .await;
    let timeout = cluster.node("n1").expect("n1").config().failure_timeout;
    let games = games_on_n3(&cluster, scale.failover_sessions).await;
    let n1 = cluster.engine("n1").expect("n1");
    let n3 = cluster.node("n3").expect("n3");
    // When each survivor reports its failover done (it restarted its
    // share of the sessions and announced them).
    let mut events: Vec<_> = ["n1", "n2"]
        .iter()
        .map(|n| cluster.node(n).expect("survivor").subscribe())
        .collect();
    let since = Instant::now();
    let reported = tokio::spawn(async move {
        let mut done = vec![];
        for rx in &mut events {
            loop {
                match rx.recv().await {
                    Ok(ClusterEvent::FailedOver { .. }) => {
                        done.push(since.elapsed());
                        break;
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                }
            }
        }
        done
    });
    if stalled {
        cluster.stall("n3", "n1").expect("stall");
        cluster.stall("n3", "n2").expect("stall");
    } else {
        kill_transport(&n3.node_server().get_cell());
    }
    let took = all_answer(&n1, &games, since).await;
    let reported = tokio::time::timeout(Duration::from_secs(10), reported)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    cluster.kill_node("n3").await.expect("kill n3");
    cluster.shutdown().await;
    (
        took,
        timeout,
        reported.into_iter().max().unwrap_or_default(),
    )
}

/// Figure 5. With majority fencing (the default), a dead node's games are
/// taken over once its lease has surely run out; `_unfenced` is the same
/// failover with fencing off, the baseline of that cost.
pub async fn failover(scale: &Scale, report: &mut Report) {
    let runs = [
        (false, "failover_time", SplitPolicy::MajorityFromThree),
        (false, "failover_time_unfenced", SplitPolicy::Available),
        (
            true,
            "failover_time_stalled",
            SplitPolicy::MajorityFromThree,
        ),
    ];
    for (stalled, name, split) in runs {
        let (mut samples, mut reported) = (vec![], vec![]);
        let mut timeout = Duration::ZERO;
        for _ in 0..scale.failover_repeats {
            let (took, t, done) = failover_once(scale, stalled, split).await;
            samples.push(ms(took));
            reported.push(ms(done));
            timeout = t;
        }
        let how = if stalled {
            "links silently stalled (in-memory network)"
        } else {
            "transport killed, links closed (TCP)"
        };
        let mut figure = Figure::new(
            name,
            median(&samples),
            "ms",
            "configured failure_timeout",
            Some(ms(timeout)),
        )
        .note(format!(
            "median of {}; {} sessions on the dead node, replication 1; {how}; survivors reported FailedOver after {} ms (median)",
            samples.len(),
            scale.failover_sessions,
            crate::report::num(median(&reported))
        ));
        match (stalled, split) {
            (false, SplitPolicy::Available) => figure = figure.goal(Goal::ValueBelow(500.0)),
            // Under a second plus the lease margin (1 s lease, 1% drift).
            (false, _) => figure = figure.goal(Goal::ValueBelow(1000.0 + 1020.0)),
            _ => {}
        }
        report.add(figure);
    }
}

struct Sample {
    started: Instant,
    latency: Duration,
    ok: bool,
}

/// Figure 6.
pub async fn drain(scale: &Scale, report: &mut Report) {
    let cluster = common::cluster(3, true, common::local_placement).await;
    let games = games_on_n3(&cluster, scale.drain_sessions).await;
    let ids: Arc<Vec<GameId>> = Arc::new(games.keys().copied().collect());
    let engines = [
        cluster.engine("n1").expect("n1"),
        cluster.engine("n2").expect("n2"),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..scale.clients / 2)
        .map(|c| {
            let engine = engines[c % 2].clone();
            let (ids, stop) = (ids.clone(), stop.clone());
            tokio::spawn(async move {
                let mut rng = SmallRng::seed_from_u64(c as u64 ^ rand::random::<u64>());
                let mut samples = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let id = ids[rng.random_range(0..ids.len())];
                    let started = Instant::now();
                    let ok = engine.end_round(id).await.is_ok();
                    samples.push(Sample {
                        started,
                        latency: started.elapsed(),
                        ok,
                    });
                }
                samples
            })
        })
        .collect();
    // Let the load settle before the window "outside the drain" starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let outside_from = Instant::now();
    let cpu_outside_from = common::cpu_time();
    tokio::time::sleep(scale.drain_outside).await;
    let n3 = cluster.node("n3").expect("n3");
    let drain_from = Instant::now();
    let cpu_drain_from = common::cpu_time();
    let mono_from = common::monotonic_secs();
    n3.leave().await;
    let drain_to = Instant::now();
    // For `perf record -k CLOCK_MONOTONIC` then `perf report --time A,B`:
    // a profile of the drain alone.
    eprintln!(
        "  (drain window, CLOCK_MONOTONIC: {mono_from:.6},{:.6})",
        common::monotonic_secs()
    );
    let cpu_drain = common::cpu_time() - cpu_drain_from;
    let cpu_outside = cpu_drain_from - cpu_outside_from;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    for c in clients {
        samples.extend(c.await.expect("client"));
    }
    let _ = cluster.stop_node("n3").await;
    cluster.shutdown().await;

    let outside: Vec<f64> = samples
        .iter()
        .filter(|s| s.started >= outside_from && s.started < drain_from && s.ok)
        .map(|s| ms(s.latency))
        .collect();
    let during: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.started >= drain_from && s.started < drain_to)
        .collect();
    let errors = during.iter().filter(|s| !s.ok).count();
    let during_ok: Vec<f64> = during
        .iter()
        .filter(|s| s.ok)
        .map(|s| ms(s.latency))
        .collect();
    let drain_ms = ms(drain_to - drain_from);
    // Where the drain's time goes: the CPU the process used during it,
    // less what the commands started meanwhile cost at the rate measured
    // outside it, is the moves' own CPU.
    let commands_outside = samples
        .iter()
        .filter(|s| s.started >= outside_from && s.started < drain_from)
        .count();
    let per_command = cpu_outside.as_secs_f64() / commands_outside.max(1) as f64;
    let moves_cpu = (cpu_drain.as_secs_f64() - per_command * during.len() as f64).max(0.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    report.add(
        Figure::new("drain_time", drain_ms, "ms", "none", None)
            .goal(Goal::ValueBelow(500.0))
            .note(format!(
                "one drain; {} sessions on the leaving node, {} clients on the others, replication 1; \
                 CPU busy {:.0} % of {cores} cores during it; CPU per move {:.1} us (net of the commands, at {:.1} us each)",
                scale.drain_sessions,
                scale.clients / 2,
                100.0 * cpu_drain.as_secs_f64() / ((drain_to - drain_from).as_secs_f64() * cores),
                moves_cpu * 1e6 / scale.drain_sessions.max(1) as f64,
                per_command * 1e6,
            )),
    );
    report.add(
        Figure::new(
            "drain_p99_latency",
            percentile(&during_ok, 99.0),
            "ms",
            "p99 latency outside the drain",
            Some(percentile(&outside, 99.0)),
        )
        .goal(Goal::RatioAtMost(2.0))
        .note(format!(
            "{} commands during the drain ({errors} failed), {} outside; medians {:.2} vs {:.2} ms",
            during.len(),
            outside.len(),
            median(&during_ok),
            median(&outside)
        )),
    );
    report.add(
        Figure::new(
            "drain_command_errors",
            errors as f64,
            "commands",
            "none",
            None,
        )
        .note(format!(
            "of {} commands started during the drain",
            during.len()
        )),
    );
}

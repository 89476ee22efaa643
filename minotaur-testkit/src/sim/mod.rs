//! A deterministic simulator of Minotaur's control plane: 3 to 9 node
//! state machines ([`minotaur_cluster::control::Control`]) on one thread,
//! on a simulated clock, over a simulated network with seeded delays and
//! faults, with clients creating games and writing to them.
//!
//! A seed draws everything: the nodes and when they join, the load, the
//! faults (crashes, restarts, graceful leaves, joins through one seed, link
//! cuts, both ends dialling at once, stalled links, a frozen node,
//! partitions, one-way cuts). A run is held to its invariants while it runs
//! and after the last fault has healed and the cluster has had time to
//! settle; the same seed gives the same trace, byte for byte.
//!
//! ```
//! use minotaur_testkit::sim;
//! let outcome = sim::run(7, false);
//! assert!(outcome.violations.is_empty(), "{}", outcome.report());
//! ```

mod check;
mod schedule;
mod trace;
mod world;

pub use schedule::{Pace, Planned, Schedule, Step};

use minotaur_cluster::control::ControlConfig;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::time::Duration;
use world::World;

/// The timing every simulated node runs with: shorter than a real node's
/// defaults, so a run covers many faults in a few simulated seconds.
pub fn control_config() -> ControlConfig {
    ControlConfig {
        heartbeat_interval: Duration::from_millis(100),
        failure_timeout: Duration::from_millis(500),
        call_timeout: Duration::from_millis(1000),
        relink_grace: Duration::from_millis(50),
        lease: Duration::from_millis(500),
        // Small, so that syncs, failovers and copies go in several
        // messages even with the few games a run creates.
        batch: 3,
        ..ControlConfig::default()
    }
}

/// How long the cluster is given to settle after the last fault heals.
pub const SETTLE: Duration = Duration::from_secs(4);

/// The end of the settling time in which only heartbeats and periodic
/// summaries may be sent: no copies, syncs, starts or new links.
pub const QUIET: Duration = Duration::from_millis(1500);

/// What one seed's run found.
#[derive(Debug)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The schedule the seed drew.
    pub schedule: Schedule,
    /// The steps run, with their times (later than planned where a fault
    /// waited for the cluster to settle).
    pub steps_run: Vec<(Duration, Step)>,
    /// Invariants that did not hold, with what was seen.
    pub violations: Vec<String>,
    /// The trace, when recorded.
    pub trace: Option<Vec<String>>,
    /// Writes acknowledged to clients.
    pub acked_writes: usize,
    /// Games whose create was acknowledged.
    pub games: usize,
}

impl Outcome {
    /// A report for a failing seed: what broke, the schedule, and how to
    /// replay it.
    pub fn report(&self) -> String {
        let mut out = format!(
            "seed {} ({} games, {} writes acknowledged): {} violation(s)\n",
            self.seed,
            self.games,
            self.acked_writes,
            self.violations.len()
        );
        for v in &self.violations {
            out.push_str(&format!("  - {v}\n"));
        }
        out.push_str("steps:\n");
        for (at, step) in &self.steps_run {
            out.push_str(&format!("  {:>7.3}s {step:?}\n", at.as_secs_f64()));
        }
        out.push_str(&format!(
            "replay: SIM_SEED={} cargo test -p minotaur-testkit --test sim -- --nocapture\n",
            self.seed
        ));
        out
    }
}

/// The most faults a seed draws by default: few, so that a failing seed's
/// trace stays short enough to read.
pub const MOST_FAULTS: usize = 3;

/// Runs one seed, each fault once the cluster settled after the one before;
/// records its trace when `record` is set.
pub fn run(seed: u64, record: bool) -> Outcome {
    run_with(seed, record, MOST_FAULTS, Pace::Settled)
}

/// [`run`] with up to `most_faults` faults, one after the other (long
/// schedules find what builds up over many faults), paced by `pace`.
pub fn run_with(seed: u64, record: bool, most_faults: usize, pace: Pace) -> Outcome {
    let mut config = control_config();
    // Odd seeds passivate idle sessions: passive games then move, fail
    // over and are woken by writes among the faults.
    config.passivate = seed % 2 == 1;
    let failure_timeout = config.failure_timeout;
    let replication = config.replication_factor > 0;
    let mut rng = SmallRng::seed_from_u64(seed);
    let schedule = schedule::draw(&mut rng, failure_timeout, most_faults);
    let mut world = World::new(rng, config, trace::Trace::new(record));
    world.plan(&schedule, pace);

    let mut violations = Vec::new();
    let step = Duration::from_millis(250);
    let mut stable_since: Option<Duration> = None;
    let mut changes = 0;
    // Each fault may wait for the cluster to settle before it.
    let faults = schedule.steps.iter().filter(|p| p.begins_fault).count() as u32;
    let last = schedule.calm_at + SETTLE + world::SETTLE_LIMIT * (faults + 1);
    let mut t = Duration::ZERO;
    let mut done = false;
    while !done {
        t += step;
        world.run_until(t);
        if let Some(calm) = world.calm_at {
            world.quiet_from.get_or_insert(calm + SETTLE - QUIET);
            if t >= calm + Duration::from_millis(500) {
                world.ended = true;
            }
            done = t >= calm + SETTLE;
        }
        if t >= last && !done {
            violations.push(format!("the plan did not end by {last:?}"));
            done = true;
        }
        // One session per game, once membership has been stable a while.
        if check::mesh_violations(&world).is_empty() && world.membership_changes == changes {
            let since = *stable_since.get_or_insert(t);
            if t - since >= Duration::from_secs(1) && violations.is_empty() {
                for v in check::one_session_per_game(&world) {
                    violations.push(format!("at {t:?}: {v}"));
                }
            }
        } else {
            stable_since = None;
            changes = world.membership_changes;
        }
    }
    violations.append(&mut world.unsettled);
    violations.extend(check::settled(&world, replication, failure_timeout));
    for ((node, kind), count) in &world.late_traffic {
        violations.push(format!(
            "{node} still sent {count} {kind} message(s) in the last {QUIET:?} of settling"
        ));
    }
    Outcome {
        seed,
        schedule,
        steps_run: std::mem::take(&mut world.steps_run),
        violations,
        acked_writes: world.acked.len(),
        games: world.created.len(),
        trace: world.trace.into_lines(),
    }
}

/// The outcome of many seeds.
#[derive(Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Seeds with at least one violation.
    pub failed: Vec<Outcome>,
    /// Writes acknowledged over all seeds.
    pub acked_writes: u64,
}

/// Runs seeds `first..first + count` on `threads` threads, each with up to
/// `most_faults` faults paced by `pace`.
pub fn run_many(first: u64, count: u64, threads: usize, most_faults: usize, pace: Pace) -> Summary {
    let threads = threads.max(1) as u64;
    let results: Vec<Summary> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|k| {
                scope.spawn(move || {
                    let mut summary = Summary::default();
                    let mut seed = first + k;
                    while seed < first + count {
                        let outcome = run_with(seed, false, most_faults, pace);
                        summary.seeds += 1;
                        summary.acked_writes += outcome.acked_writes as u64;
                        if !outcome.violations.is_empty() {
                            summary.failed.push(outcome);
                        }
                        seed += threads;
                    }
                    summary
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("simulation thread"))
            .collect()
    });
    let mut total = Summary::default();
    for s in results {
        total.seeds += s.seeds;
        total.acked_writes += s.acked_writes;
        total.failed.extend(s.failed);
    }
    total.failed.sort_by_key(|o| o.seed);
    total
}

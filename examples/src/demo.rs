//! The in-process cluster demo behind `minotaur-demo`: real
//! `minotaur-cluster` nodes on loopback TCP in this process, bot players
//! sending moves and attacks to every game without pause, a rolling deploy
//! (every node replaced in turn by a newly joined one), then a crash, and a
//! report that checks every acknowledged command against the final state.
//!
//! # How commands are counted
//! Every move or attack a bot sends ends in exactly one of: *acked* (the
//! cluster answered with the game after it), *rejected* (the rules refused
//! it: a typed [`GameError`](minotaur_core::GameError), typically not enough action points), or an
//! error of any other kind, counted as *failed* before the crash and as
//! *crash_failed* from the crash on. An error leaves the outcome unknown:
//! the command may or may not have been applied.
//!
//! # How `lost` is computed
//! At the end every game is read back. For each game, three independent
//! lower bounds on acknowledged-but-lost commands are taken, and the largest
//! counts:
//! - per player, acked commands minus the final `actions_accepted` (every
//!   accepted registration increments it, and nothing else does);
//! - acked replies that claim the same game version (each accepted change
//!   increments the version by exactly one, so two acks at one version mean
//!   one of them was rolled back);
//! - acked versions above the final version.
//!
//! A game that cannot be read at the end, and that no bot saw conclude,
//! counts all its acks as lost. The report also checks the other direction
//! (`duplicated`): a player's final `actions_accepted` may exceed the acks
//! only by the commands whose outcome is unknown.
//!
//! The demo's games use 1 s rounds (so rounds end on the sessions' own
//! timers throughout the run) and 1000 health (so no game concludes and
//! every game can be checked at the end).

use clap::Parser;
use minotaur_core::{EngineError, GameConfig};
use minotaur_testkit::wait::WaitError;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bots::Bots;
use fleet::Fleet;
use ledger::Stats;

/// How long the demo waits for membership, failover or a final read.
const WAIT: Duration = Duration::from_secs(30);

/// Options of `minotaur-demo`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "minotaur-demo",
    version,
    about = "A Minotaur cluster in one process: bots play while every node is replaced \
             (rolling deploy) and then one crashes; the report checks nothing acknowledged \
             was lost.",
    after_help = "The last line is: summary: games=<n> alive=<n> acked=<n> rejected=<n> \
                  failed=<n> crash_failed=<n> lost=<n> handoff_ms=<n> failover_ms=<n>\n\
                  Exit code 0 when failed=0 and lost=0 (and nothing was applied twice), 1 otherwise."
)]
pub struct DemoOptions {
    /// Nodes in the cluster (each is replaced once during the rolling deploy).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
    pub nodes: u64,
    /// Games played, two bot players each.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=5000))]
    pub games: u64,
    /// Seconds the bots play in each quiet phase: before the rolling deploy,
    /// between the deploy and the crash, and after the crash.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=600))]
    pub duration: u64,
    /// Seed of the bots' choices (think times, which node they call, moves).
    /// Random when not given; printed either way.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print no progress lines, only the report.
    #[arg(long)]
    pub quiet: bool,
    /// Keep sending calls through a node while it leaves, until it has
    /// stopped, instead of draining it first like a load balancer would.
    /// Calls caught inside the node as it stops then fail (`failed` > 0).
    #[arg(long)]
    pub no_drain: bool,
    /// Serve the live cluster page (and `/cluster`) on this address while
    /// the demo runs: open it in a browser to watch the deploy and the
    /// crash. Nothing is asked of the browser (the demo is local).
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// Seconds to keep serving the page once the report is out.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub linger: u64,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            nodes: 3,
            games: 200,
            duration: 5,
            seed: None,
            quiet: false,
            no_drain: false,
            http: None,
            linger: 0,
        }
    }
}

/// Why the demo could not run to its report.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// Asked for fewer nodes than the demo needs.
    #[error("the demo needs at least 2 nodes, so that one survives the crash; got {0}")]
    TooFewNodes(u64),
    /// A node did not start.
    #[error(transparent)]
    Node(#[from] minotaur_cluster::NodeError),
    /// Creating a game failed.
    #[error("creating game {index}: {source}")]
    Create {
        /// Which game.
        index: u64,
        /// Why.
        source: EngineError,
    },
    /// A bounded wait ran out.
    #[error(transparent)]
    Wait(#[from] WaitError),
    /// No node was left running for a step that needs one.
    #[error("no node left running to {0}")]
    NoNodeLeft(&'static str),
    /// The live page's address could not be served.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// What the demo measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seed of the bots.
    pub seed: u64,
    /// Games created.
    pub games: u64,
    /// Games readable and still active at the end.
    pub alive: u64,
    /// Games a bot saw conclude (not checked for losses).
    pub concluded: u64,
    /// Moves and attacks sent.
    pub sent: u64,
    /// Acknowledged.
    pub acked: u64,
    /// Refused by the game's rules.
    pub rejected: u64,
    /// Other errors before the crash (the rolling deploy included).
    pub failed: u64,
    /// Other errors from the crash on.
    pub crash_failed: u64,
    /// Acknowledged commands missing from the final state.
    pub lost: u64,
    /// For the first games with losses: what their bots saw acknowledged
    /// against their final state.
    pub losses: Vec<String>,
    /// Commands applied more often than they could have been.
    pub duplicated: u64,
    /// Reads the bots made to refresh their view, and how many failed.
    pub reads: u64,
    /// Failed refresh reads.
    pub read_errors: u64,
    /// Longest graceful leave of the rolling deploy, in ms.
    pub handoff_ms: u64,
    /// Each replacement: (old node, new node, leave ms, sessions it held).
    pub replacements: Vec<(String, String, u64, usize)>,
    /// The crashed node and the sessions it hosted.
    pub crashed: (String, usize),
    /// From the kill until every game of the crashed node answered again,
    /// through every surviving node.
    pub failover_ms: u64,
    /// Some of the errors seen, for the report.
    pub error_samples: Vec<String>,
    /// Wall-clock length of the run.
    pub elapsed: Duration,
}

impl Report {
    /// The report's last line.
    pub fn summary_line(&self) -> String {
        format!(
            "summary: games={} alive={} acked={} rejected={} failed={} crash_failed={} lost={} \
             handoff_ms={} failover_ms={}",
            self.games,
            self.alive,
            self.acked,
            self.rejected,
            self.failed,
            self.crash_failed,
            self.lost,
            self.handoff_ms,
            self.failover_ms
        )
    }

    /// Whether the cluster kept its promises: nothing acknowledged lost, no
    /// error outside the crash.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.failed == 0 && self.duplicated == 0
    }

    /// The full report, ending with [`Report::summary_line`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "---- report (seed {}) ----", self.seed);
        let _ = writeln!(
            out,
            "games: {} created, {} alive at the end, {} concluded",
            self.games, self.alive, self.concluded
        );
        let _ = writeln!(
            out,
            "commands: {} sent, {} acknowledged, {} rejected by the rules, {} failed before \
             the crash, {} failed around the crash",
            self.sent, self.acked, self.rejected, self.failed, self.crash_failed
        );
        let _ = writeln!(
            out,
            "refresh reads: {} ({} failed)",
            self.reads, self.read_errors
        );
        for (old, new, ms, sessions) in &self.replacements {
            let _ = writeln!(
                out,
                "rolling deploy: {new} joined, {old} left handing over {sessions} sessions in {ms} ms"
            );
        }
        let _ = writeln!(
            out,
            "crash: {} killed with {} sessions; all of them answered again through every \
             survivor after {} ms",
            self.crashed.0, self.crashed.1, self.failover_ms
        );
        let _ = writeln!(
            out,
            "check: {} acknowledged commands lost, {} applied more often than sent",
            self.lost, self.duplicated
        );
        for loss in &self.losses {
            let _ = writeln!(out, "lost in {loss}");
        }
        for sample in &self.error_samples {
            let _ = writeln!(out, "error seen: {sample}");
        }
        let _ = writeln!(out, "took {:.1} s", self.elapsed.as_secs_f64());
        out.push_str(&self.summary_line());
        out
    }
}

/// The rules of the demo's games: 1 s rounds, 1000 health.
pub fn game_config() -> GameConfig {
    GameConfig {
        round_length_ms: 1_000,
        starting_health: 1_000,
        ..GameConfig::default()
    }
}

/// Runs the whole demo and returns its report.
pub async fn run(options: DemoOptions) -> Result<Report, DemoError> {
    let progress = Progress::new(options.quiet);
    let seed = options.seed.unwrap_or_else(rand::random);
    let quiet_phase = Duration::from_secs(options.duration);
    progress.say(format!(
        "starting {} nodes, {} games, {} s per quiet phase, seed {seed}",
        options.nodes, options.games, options.duration
    ));
    let mut report = Report {
        seed,
        games: options.games,
        ..Report::default()
    };

    // Fleet and bots: the cluster, its games, and two bots per game.
    let mut fleet = Fleet::start(options.nodes, progress).await?;
    let page = match (options.http, fleet.any_engine()) {
        (Some(addr), Some(engine)) => {
            let view = Arc::new(fleet::FleetView(fleet.gateways()));
            let app = crate::http::router(engine, view, &crate::http::HttpOptions::default());
            let server = crate::http::serve_router("demo".into(), app, addr, None).await?;
            progress.say(format!(
                "live page: http://{}/ (the cluster through its newest node)",
                server.addr()
            ));
            Some(server)
        }
        _ => None,
    };
    let games = bots::create_games(fleet.nodes(), options.games, progress).await?;
    let stats = Arc::new(Stats::default());
    let bots = Bots::start(&games, fleet.gateways(), stats.clone(), seed, progress);
    tokio::time::sleep(quiet_phase).await;

    // Fleet: the rolling deploy, under load.
    bots.enter_phase("deploy");
    let deploy = fleet.rolling_deploy(options.no_drain, progress).await?;
    report.handoff_ms = deploy.longest_leave_ms;
    report.replacements = deploy.replacements;
    bots.enter_phase("play");
    tokio::time::sleep(quiet_phase).await;

    // Fleet: the crash, once the cluster settled (every game has a copy to
    // restart from).
    fleet.await_backups(progress).await;
    bots.enter_phase("crash");
    let victim = fleet
        .choose_victim()
        .ok_or(DemoError::NoNodeLeft("crash"))?;
    stats.crash_begins();
    let crash = fleet.crash(victim, progress).await?;
    report.crashed = (crash.node, crash.sessions);
    report.failover_ms = crash.failover_ms;
    bots.enter_phase("play");
    tokio::time::sleep(quiet_phase).await;

    // Ledger and report: what the bots saw acknowledged, against every
    // game's final state.
    let ledgers = bots.stop().await;
    let engine = fleet
        .any_engine()
        .ok_or(DemoError::NoNodeLeft("read the games back"))?;
    report::check_games(&mut report, &games, ledgers, &engine).await?;
    stats.count_into(&mut report);
    if let Some(page) = page {
        if options.linger > 0 {
            progress.say(format!(
                "the live page stays up for {} s more",
                options.linger
            ));
            tokio::time::sleep(Duration::from_secs(options.linger)).await;
        }
        page.stop().await;
    }
    fleet.stop().await;
    report.elapsed = progress.elapsed();
    Ok(report)
}

/// Prints progress lines, stamped with the time since the demo began.
#[derive(Clone, Copy)]
struct Progress {
    start: Instant,
    quiet: bool,
}

impl Progress {
    fn new(quiet: bool) -> Self {
        Progress {
            start: Instant::now(),
            quiet,
        }
    }

    fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!(
                "[{:6.1}s] {}",
                self.start.elapsed().as_secs_f64(),
                line.as_ref()
            );
        }
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

mod fleet;

mod bots;

mod ledger;

mod report;

#[cfg(test)]
mod tests {
    use super::ledger::Ledger;
    use super::report::check_game;
    use super::*;
    use minotaur_core::{Game, GameId, Hex, UserId};

    fn game() -> Game {
        Game::new(
            GameId::random(),
            "ABCD".parse().unwrap(),
            vec!["ann".into(), "bob".into()],
            game_config(),
            0,
        )
        .unwrap()
    }

    fn ledger(user: &str, versions: &[u64], unknown: u64) -> Ledger {
        let mut ledger = Ledger::new(GameId::random(), user.into());
        for v in versions {
            ledger.record_ack(*v);
        }
        ledger.unknown = unknown;
        ledger
    }

    #[test]
    fn the_check_finds_lost_rolled_back_and_duplicated_commands() {
        let mut state = game();
        let ann: UserId = "ann".into();
        let step = Hex::DIRECTIONS
            .into_iter()
            .find(|d| state.world.walkable(state.players[0].position + *d))
            .unwrap();
        state.register_move(&ann, step).unwrap(); // version 1, ann accepted 1
        state.register_attack(&"bob".into(), &ann).unwrap(); // version 2, bob 1

        // Everything acknowledged is there.
        let ok = [ledger("ann", &[1], 0), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &ok), (0, 0));
        // Ann saw a second ack the final state does not hold.
        let lost = [ledger("ann", &[1, 3], 0), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &lost).0, 1);
        // Two acks at one version: one was rolled back, even if counts match.
        let forked = [ledger("ann", &[1], 0), ledger("bob", &[1], 0)];
        assert_eq!(check_game(&state, &forked).0, 1);
        // Applied without an ack is fine only for commands of unknown outcome.
        let unknown = [ledger("ann", &[], 1), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &unknown), (0, 0));
        let phantom = [ledger("ann", &[], 0), ledger("bob", &[2], 0)];
        assert_eq!(check_game(&state, &phantom), (0, 1));
    }

    #[test]
    fn summary_line_has_the_documented_shape() {
        let report = Report {
            games: 200,
            alive: 200,
            acked: 10,
            ..Report::default()
        };
        assert_eq!(
            report.summary_line(),
            "summary: games=200 alive=200 acked=10 rejected=0 failed=0 crash_failed=0 lost=0 \
             handoff_ms=0 failover_ms=0"
        );
        assert!(report.render().ends_with(&report.summary_line()));
    }
}

//! The cluster benchmark (issue 6): every headline figure of Minotaur
//! measured side by side with its floor, bare ractor / ractor_cluster doing
//! the same thing, in one run on one machine.
//!
//! ```sh
//! cargo bench -p minotaur-testkit --bench cluster              # full run
//! cargo bench -p minotaur-testkit --bench cluster -- --quick   # < 60 s
//! cargo bench -p minotaur-testkit --bench cluster -- --only rtt,drain
//! cargo bench -p minotaur-testkit --bench cluster -- --quick --only placement --sessions 20000
//! ```
//!
//! It prints a markdown table and writes one JSON object per line per figure
//! (`name`, `value`, `unit`, `baseline`, `baseline_value`, `ratio`) to
//! `minotaur-bench.json` in the workspace's target directory. See
//! BENCHMARKS.md for what each figure means.
//!
//! Modules: `report` (figures, table, JSON), `common` (scale, clusters,
//! helpers), `bare` (the baselines), and one module per group of figures:
//! `rtt` (1, 2, 9), `load` (3, 4), `faults` (5, 6), `start` (7),
//! `memory` (8), `passive` (passivation), `durable` (the durable store),
//! `scale` (many passive games on 16 nodes).

// The allocator the shipped binaries use, for the baselines as for Minotaur.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bare;
mod common;
mod durable;
mod faults;
mod load;
mod memory;
mod passive;
mod report;
mod rtt;
mod scale;
mod start;

use common::Scale;
use report::Report;
use std::time::Instant;

/// The groups of figures, in the order they run.
const GROUPS: [&str; 11] = [
    "start",
    "rtt",
    "placement",
    "throughput",
    "failover",
    "drain",
    "memory",
    "passive",
    "durable",
    "scale",
    "snapshot",
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    common::quiet_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(passive::collect_if_asked)
        .build()
        .expect("tokio runtime");

    if let Some(at) = args.iter().position(|a| a == "--child") {
        runtime.block_on(memory::child_main(&args[at + 1..]));
        return;
    }

    let mut scale = if args.iter().any(|a| a == "--quick") {
        Scale::quick()
    } else {
        Scale::full()
    };
    // For profiling one size: `--sessions N` sets the session counts of the
    // placement, failover, drain and memory figures.
    if let Some(n) = args
        .iter()
        .position(|a| a == "--sessions")
        .and_then(|at| args.get(at + 1))
        .and_then(|s| s.parse().ok())
    {
        scale.placement_sessions = n;
        scale.failover_sessions = n;
        scale.drain_sessions = n;
        scale.memory_sessions = n;
    }
    // `--scale-games N`: the games of the `scale` figure (a million, say).
    if let Some(n) = args
        .iter()
        .position(|a| a == "--scale-games")
        .and_then(|at| args.get(at + 1))
        .and_then(|s| s.parse().ok())
    {
        scale.scale_games = n;
    }
    // `--scale-failure-timeout-s S`: the `scale` nodes' failure timeout
    // and lease (5 s unless given).
    if let Some(s) = args
        .iter()
        .position(|a| a == "--scale-failure-timeout-s")
        .and_then(|at| args.get(at + 1))
        .and_then(|s| s.parse().ok())
    {
        scale.scale_failure_timeout = std::time::Duration::from_secs(s);
    }
    let only: Vec<String> = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|at| args.get(at + 1))
        .map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let wanted = |group: &str| only.is_empty() || only.iter().any(|o| o == group);

    eprintln!(
        "minotaur cluster benchmark ({} run), {} CPUs",
        if scale.quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let started = Instant::now();
    let mut report = Report::default();
    if only.iter().any(|o| o == "profile-local") {
        runtime.block_on(rtt::profile_local());
        return;
    }
    for group in GROUPS.iter().copied().filter(|g| wanted(g)) {
        let t = Instant::now();
        eprintln!("[{group}]");
        match group {
            "start" => runtime.block_on(start::run(&scale, &mut report)),
            "rtt" => runtime.block_on(rtt::run(&scale, &mut report)),
            "placement" => runtime.block_on(load::placement(&scale, &mut report)),
            "throughput" => runtime.block_on(load::throughput(&scale, &mut report)),
            "failover" => runtime.block_on(faults::failover(&scale, &mut report)),
            "drain" => runtime.block_on(faults::drain(&scale, &mut report)),
            "memory" => memory::run(&scale, &mut report),
            "passive" => runtime.block_on(passive::run(&scale, &mut report)),
            "durable" => runtime.block_on(durable::run(&scale, &mut report)),
            "scale" => runtime.block_on(scale::run(&scale, &mut report)),
            "snapshot" => memory::snapshot(&mut report),
            _ => unreachable!("every group is handled"),
        }
        eprintln!("  ({group} took {:.1} s)", t.elapsed().as_secs_f64());
    }
    report.print_table();
    let path = report::json_path();
    match report.write_json(&path) {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(e) => eprintln!("could not write {}: {e}", path.display()),
    }
    println!("total {:.1} s", started.elapsed().as_secs_f64());
}

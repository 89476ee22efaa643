//! Figure 8: resident memory per idle session, against a bare actor holding
//! the same game, and the size of one encoded snapshot.
//!
//! Each measurement runs in a fresh child process (this same binary with
//! `--child ...`), so what earlier figures left in the allocator does not
//! count: the child warms up, reads its RSS from /proc/self/statm, starts N
//! sessions (or actors), reads it again, and prints the growth per session.

use crate::bare;
use crate::common::{self, Scale};
use crate::report::{Figure, Goal, Report};
use minotaur_cluster::{Node, NodeConfig};
use minotaur_core::codec;
use std::process::Command;
use std::time::Duration;

pub const WARM_UP: usize = 500;
const RESULT: &str = "MINOTAUR-BENCH-RESULT";

/// Runs a child measurement; returns bytes per session.
pub fn child(args: &[&str]) -> f64 {
    let exe = std::env::current_exe().expect("own executable");
    let out = Command::new(exe)
        .arg("--child")
        .args(args)
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(RESULT))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "child {args:?} gave no result ({}): {stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Figure 8 (parent side).
pub fn run(scale: &Scale, report: &mut Report) {
    let n = scale.memory_sessions.to_string();
    let bare = child(&["memory-bare", &n]);
    let plain = child(&["memory-node", &n, "0"]);
    let replicated = child(&["memory-node", &n, "1"]);
    report.add(
        Figure::new(
            "memory_per_session",
            plain,
            "bytes",
            "bare idle ractor actor holding the same game",
            Some(bare),
        )
        .goal(Goal::RatioAtMost(1.3))
        .note(format!(
            "RSS growth / {n} idle 2-player games, 1 node, replication 0; one fresh process each"
        )),
    );
    report.add(
        Figure::new(
            "memory_per_session_replicated",
            replicated,
            "bytes",
            "bare idle ractor actor holding the same game",
            Some(bare),
        )
        .note(format!(
            "whole-process RSS growth / {n} games on 2 in-process nodes, replication 1 (session + backup copy + 2 registry entries)"
        )),
    );
}

/// The bytes of one encoded snapshot.
pub fn snapshot(report: &mut Report) {
    let snapshot = codec::encode(&bare::sample_game(0)).expect("encode").len();
    report.add(
        Figure::new("snapshot_bytes", snapshot as f64, "bytes", "none", None)
            .note("codec::encode of a new 2-player game, default world"),
    );
}

/// Child side: `memory-bare N`, `memory-node N REPLICATION` or
/// `memory-idle N`.
pub async fn child_main(args: &[String]) {
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .expect("session count");
    let per = match args.first().map(String::as_str) {
        Some("memory-bare") => bare_growth(n).await,
        Some("memory-node") => {
            let factor = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(0);
            node_growth(n, factor).await
        }
        Some("memory-idle") => crate::passive::idle_growth(n).await,
        other => panic!("unknown child {other:?}"),
    };
    println!("{RESULT} {per}");
}

async fn bare_growth(n: usize) -> f64 {
    let mut keep = Vec::with_capacity(n + WARM_UP);
    for i in 0..WARM_UP {
        keep.push(bare::spawn_holder(bare::sample_game(i as u64)).await);
    }
    settle().await;
    let before = common::rss_bytes();
    for i in 0..n {
        keep.push(bare::spawn_holder(bare::sample_game(i as u64)).await);
    }
    settle().await;
    let after = common::rss_bytes();
    let per = after.saturating_sub(before) as f64 / n as f64;
    drop(keep);
    per
}

async fn node_growth(n: usize, factor: usize) -> f64 {
    let cookie = format!("bench-mem-{:016x}", rand::random::<u64>());
    let mut nodes = Vec::new();
    let count = if factor > 0 { 2 } else { 1 };
    for i in 1..=count {
        let mut config = NodeConfig::new(format!("m{i}"), cookie.clone());
        config.replication_factor = factor;
        if let Some(first) = nodes.first() {
            let first: &Node = first;
            config.seeds = vec![first.addr().to_string()];
        }
        nodes.push(Node::start(config).await.expect("node starts"));
    }
    common::poll("the memory cluster", Duration::from_secs(30), || {
        let ready = nodes
            .iter()
            .all(|node| node.live_member_names().len() == count && node.is_synced());
        async move { ready.then_some(()) }
    })
    .await;
    let engines: Vec<_> = nodes.iter().map(|n| n.engine().clone()).collect();
    common::create_range(&engines, 'W', 0..WARM_UP).await;
    settle().await;
    let before = common::rss_bytes();
    common::create_range(&engines, 'M', 0..n).await;
    settle().await;
    let after = common::rss_bytes();
    let hosted: usize = nodes.iter().map(|node| node.hosted().len()).sum();
    assert_eq!(hosted, n + WARM_UP, "every session is running");
    after.saturating_sub(before) as f64 / n as f64
}

/// Lets background work (announcements, timers) finish before RSS is read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

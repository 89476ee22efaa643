//! Passivation figures: the memory an idle (passive) game costs its owner,
//! against the floor of its encoded snapshot, and the latency of the read
//! that wakes a passive game, against a read of a running one.

use crate::bare;
use crate::common::{self, Scale};
use crate::memory;
use crate::report::{median, percentile, Figure, Goal, Report};
use minotaur_cluster::{Node, NodeConfig};
use minotaur_core::{codec, Game, GameEngine};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a game goes without a command before it is passivated here.
const IDLE: Duration = Duration::from_millis(100);

/// The passive figures (parent side).
pub async fn run(scale: &Scale, report: &mut Report) {
    let n = scale.memory_sessions.to_string();
    let idle = memory::child(&["memory-idle", &n]);
    let floor = codec::encode(&bare::sample_game(0)).expect("encode").len() as f64;
    report.add(
        Figure::new(
            "memory_per_idle_game",
            idle,
            "bytes",
            "the game's encoded snapshot",
            Some(floor),
        )
        .goal(Goal::ValueBelow(1024.0))
        .note(format!(
            "RSS growth / {n} passive 2-player games, 1 node, replication 0, after every thread's mi_collect; fresh process"
        )),
    );
    reactivation(scale, report).await;
}

/// Has mimalloc (the benchmark's allocator, as the shipped binaries')
/// return the memory freed so far on this thread to the OS.
fn collect_freed_memory() {
    unsafe extern "C" {
        // mimalloc's own API, linked in with the `mimalloc` crate.
        fn mi_collect(force: bool);
    }
    // SAFETY: mi_collect takes no pointer and may be called at any time.
    unsafe { mi_collect(true) };
}

/// Bumped to ask every runtime worker to collect (see [`collect_if_asked`]).
static COLLECT_ASKED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COLLECTED: Cell<u64> = const { Cell::new(0) };
}

/// The runtime's park hook: a worker going idle collects what it freed,
/// once per [`collect_everywhere`]. mimalloc keeps freed pages per thread
/// and returns them on that thread's later allocations; a worker that went
/// idle keeps them until then.
pub fn collect_if_asked() {
    let asked = COLLECT_ASKED.load(Ordering::Relaxed);
    COLLECTED.with(|seen| {
        if seen.get() != asked {
            seen.set(asked);
            collect_freed_memory();
        }
    });
}

/// Has every runtime worker, and this thread, return the memory freed so
/// far: what remains is what is live (and its pages).
pub async fn collect_everywhere() {
    COLLECT_ASKED.fetch_add(1, Ordering::Relaxed);
    collect_freed_memory();
    // Tasks spawned from outside the runtime wake parked workers; each
    // collects when it parks again.
    let wakers: Vec<_> = (0..64).map(|_| tokio::spawn(async {})).collect();
    for waker in wakers {
        let _ = waker.await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

/// A node that passivates after [`IDLE`].
async fn passivating_node(name: &str) -> Node {
    let cookie = format!("bench-idle-{:016x}", rand::random::<u64>());
    let mut config = NodeConfig::new(name.to_string(), cookie);
    config.replication_factor = 0;
    config.idle_after = Some(IDLE);
    Node::start(config).await.expect("node starts")
}

/// Waits until `n` games are passive on `node`.
async fn passive(node: &Node, n: usize) {
    common::poll("every game passive", Duration::from_secs(120), || async {
        let passive = node.passive().await.len();
        (passive >= n && node.hosted().is_empty()).then_some(())
    })
    .await;
}

/// Child side: `memory-idle N`.
pub async fn idle_growth(n: usize) -> f64 {
    let node = passivating_node("idle1").await;
    let engines = vec![node.engine().clone()];
    common::create_range(&engines, 'W', 0..memory::WARM_UP).await;
    passive(&node, memory::WARM_UP).await;
    let before = common::rss_bytes();
    // In chunks, each passivated before the next: the figure is what the
    // games cost once idle, not the sessions' peak.
    let chunk = 10_000;
    let mut made = 0;
    while made < n {
        let next = (made + chunk).min(n);
        common::create_range(&engines, 'P', made..next).await;
        made = next;
        passive(&node, memory::WARM_UP + made).await;
    }
    // What the games keep, not what the sessions they had left for the
    // allocator to return (each thread does so lazily, on its later
    // allocations).
    collect_everywhere().await;
    let after = common::rss_bytes();
    node.kill().await;
    after.saturating_sub(before) as f64 / n as f64
}

/// The read that wakes a passive game, against a read of a running game.
async fn reactivation(scale: &Scale, report: &mut Report) {
    let games = if scale.quick { 500 } else { 2_000 };
    let node = passivating_node("wake1").await;
    let engine = node.engine().clone();
    let created: Vec<Game> =
        common::create_range(std::slice::from_ref(&engine), 'R', 0..games).await;
    passive(&node, games).await;
    // Each game read twice in a row: the read that wakes it, then one of
    // the game running (before it could turn idle again).
    let (mut waking, mut running) = (Vec::new(), Vec::new());
    for game in &created {
        waking.push(read_time(&engine, game).await);
        running.push(read_time(&engine, game).await);
    }
    node.kill().await;
    let (wake, run) = (median(&waking), median(&running));
    report.add(
        Figure::new(
            "reactivation_latency",
            wake,
            "us",
            "a read of a running game on the same node",
            Some(run),
        )
        .note(format!(
            "median local get_game of {games} passive games (p99 {:.0} us); each game read again at once, running (p99 {:.0} us)",
            percentile(&waking, 99.0),
            percentile(&running, 99.0)
        )),
    );
}

/// One `get_game` of `game`, in microseconds.
async fn read_time(engine: &GameEngine, game: &Game) -> f64 {
    let t = Instant::now();
    engine.get_game(game.id).await.expect("read");
    t.elapsed().as_secs_f64() * 1e6
}

//! What the figures share: the run's scale (quick or full), quiet logging,
//! test clusters configured for a figure, creating many games, and a
//! fine-grained bounded wait for the moments that are timed.

use futures::StreamExt;
use minotaur_cluster::{Local, NodeConfig};
use minotaur_core::{Game, GameEngine, UserId};
use minotaur_testkit::TestCluster;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes and sample counts of one run.
#[derive(Debug, Clone)]
pub struct Scale {
    pub quick: bool,
    /// Round trips per round, and rounds (baselines and figures interleave).
    pub rtt_per_round: usize,
    pub rtt_rounds: usize,
    pub visibility_samples: usize,
    pub throughput_games: usize,
    pub throughput_window: Duration,
    pub throughput_windows: usize,
    pub clients: usize,
    pub casts: u64,
    pub cast_samples: usize,
    pub placement_sessions: usize,
    pub placement_chunks: usize,
    pub failover_sessions: usize,
    pub failover_repeats: usize,
    pub drain_sessions: usize,
    pub drain_outside: Duration,
    pub start_samples: usize,
    pub mesh_nodes: usize,
    pub mesh_samples: usize,
    pub memory_sessions: usize,
    /// Games the `scale` figure puts on its 16 nodes.
    pub scale_games: usize,
    /// The failure timeout and lease of the `scale` figure's nodes.
    pub scale_failure_timeout: Duration,
}

impl Scale {
    pub fn full() -> Scale {
        Scale {
            quick: false,
            rtt_per_round: 400,
            rtt_rounds: 5,
            visibility_samples: 300,
            throughput_games: 10_000,
            throughput_window: Duration::from_secs(2),
            throughput_windows: 5,
            clients: 64,
            casts: 200_000,
            cast_samples: 3,
            placement_sessions: 100_000,
            placement_chunks: 10,
            failover_sessions: 10_000,
            failover_repeats: 3,
            drain_sessions: 10_000,
            drain_outside: Duration::from_secs(3),
            start_samples: 20,
            mesh_nodes: 10,
            mesh_samples: 3,
            memory_sessions: 100_000,
            scale_games: 100_000,
            scale_failure_timeout: Duration::from_secs(5),
        }
    }

    pub fn quick() -> Scale {
        Scale {
            quick: true,
            rtt_per_round: 100,
            rtt_rounds: 3,
            visibility_samples: 50,
            throughput_games: 1_000,
            throughput_window: Duration::from_millis(500),
            throughput_windows: 3,
            clients: 64,
            casts: 30_000,
            cast_samples: 3,
            placement_sessions: 3_000,
            placement_chunks: 3,
            failover_sessions: 1_000,
            failover_repeats: 1,
            drain_sessions: 1_000,
            drain_outside: Duration::from_millis(700),
            start_samples: 5,
            mesh_nodes: 10,
            mesh_samples: 1,
            memory_sessions: 10_000,
            scale_games: 5_000,
            scale_failure_timeout: Duration::from_secs(5),
        }
    }
}

/// How many creates or commands are in flight at once when loading a cluster.
pub const PARALLEL: usize = 64;

/// Logs nothing unless `RUST_LOG` says otherwise (to stderr), so the table
/// stays readable; a shutdown at the end of a figure logs expected errors. Set first, it
/// also keeps the testkit's per-node log capture out of the measurements.
pub fn quiet_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The two players of every benchmark game.
pub fn users() -> Vec<UserId> {
    vec!["ann".into(), "bob".into()]
}

/// A join code unique to `index` under `prefix` (a letter).
pub fn code(prefix: char, index: usize) -> String {
    let mut digits = Vec::new();
    let mut n = index;
    loop {
        digits.push(std::char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    while digits.len() < 7 {
        digits.push('0');
    }
    digits.push(prefix);
    digits.iter().rev().collect()
}

/// Creates `n` games, spread round-robin over `engines`, `PARALLEL` at a
/// time. Returns them in completion order.
pub async fn create_games(engines: &[GameEngine], prefix: char, n: usize) -> Vec<Game> {
    create_range(engines, prefix, 0..n).await
}

/// [`create_games`] for the indexes in `range` (join codes stay unique
/// across calls with the same prefix).
pub async fn create_range(
    engines: &[GameEngine],
    prefix: char,
    range: std::ops::Range<usize>,
) -> Vec<Game> {
    futures::stream::iter(range)
        .map(|i| {
            let engine = engines[i % engines.len()].clone();
            async move {
                engine
                    .create_game(&code(prefix, i), users())
                    .await
                    .unwrap_or_else(|e| panic!("creating game {i}: {e}"))
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await
}

/// A test cluster of `n` nodes named `n1`..; `tcp` or in-memory links;
/// `configure` adjusts each node's config.
pub async fn cluster(
    n: usize,
    tcp: bool,
    configure: impl Fn(&mut NodeConfig) + Send + Sync + 'static,
) -> TestCluster {
    let mut builder = TestCluster::builder()
        .nodes(n)
        .wait(Duration::from_secs(30))
        .configure(move |_, c| configure(c));
    if !tcp {
        builder = builder.in_memory();
    }
    builder.start().await.expect("test cluster starts")
}

/// Config tweak: sessions go to the node they were created through.
pub fn local_placement(c: &mut NodeConfig) {
    c.placement = Arc::new(Local);
}

/// Polls `probe` every millisecond until it returns `Some`, for at most
/// `timeout`; panics with `what` when it runs out. Used where the moment
/// something becomes true is what is measured, so the coarser backoff of
/// `eventually` would blur it.
pub async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "benchmark gave up waiting for {what} after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The resident set size of this process, in bytes (from /proc/self/statm).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("statm's resident field");
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// CPU time (user + system) this process has used so far.
/// The system's monotonic clock in seconds, as `perf record -k
/// CLOCK_MONOTONIC` stamps its samples: to name a window of a run to
/// `perf report --time`.
pub fn monotonic_secs() -> f64 {
    // SAFETY: clock_gettime only writes into the struct we pass.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

//! The cluster on a real network: `minotaur-node` processes, each in its
//! own network namespace with its own address on a private bridge, under
//! load through HTTP while the kernel injects faults (delay, loss and
//! reordering with netem, or nft and htb where the kernel has no netem;
//! partitions and one-way partitions with nft; a host that vanishes with
//! its connections open; SIGSTOP; SIGKILL; SIGTERM and re-joins). Then every fault is healed and the run checks that no
//! acknowledged write was lost, that each game has one session, and that
//! every member sees the same cluster.
//!
//! Needs root, iproute2 and nftables (`.ci/run` installs them). Without
//! them the test fails saying so, unless `MINOTAUR_NETNS_SKIP=1` is set.
//!
//! Part of `cargo test` (and so of CI). By default a short run: each kind
//! of fault once (about a minute).
//! `NETNS_SECONDS=600` runs random faults for that long; `NETNS_SEED=n`
//! replays a schedule. A failing run prints its seed and schedule and
//! keeps the nodes' logs (their directory is printed).

mod faults;
mod load;
mod net;
mod nodes;

use faults::Fault;
use load::{Ledger, Load};
use minotaur_core::GameId;
use minotaur_examples::http::ClusterStatus;
use net::Network;
use nodes::NodeProcess;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Nodes in the cluster.
const HOSTS: usize = 4;
/// Games under load.
const GAMES: usize = 24;
/// Concurrent writers.
const WRITERS: usize = 6;
/// How long each fault of the short run is held.
const SHORT_HOLD: Duration = Duration::from_secs(5);
/// How long the cluster may take to recover from a fault.
const RECOVER: Duration = Duration::from_secs(60);

/// The nodes and the network they run on. Fields drop in order: the
/// processes are killed before their namespaces go.
struct Cluster {
    nodes: Vec<NodeProcess>,
    net: Network,
    cookie: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kernel_faults() {
    if let Some(why) = net::missing_capability() {
        if std::env::var_os("MINOTAUR_NETNS_SKIP").is_some() {
            eprintln!("netns harness skipped (MINOTAUR_NETNS_SKIP is set): {why}");
            return;
        }
        panic!(
            "the netns harness cannot run here: {why}. Run it as root with iproute2 and \
             nftables installed (`apt-get install -y iproute2 nftables`), or set \
             MINOTAUR_NETNS_SKIP=1 to skip it knowingly."
        );
    }
    let seed: u64 = std::env::var("NETNS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let long = std::env::var("NETNS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);
    let logs = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("netns-{seed}"));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs).expect("a log directory");
    let mut schedule = Vec::new();
    let outcome = run(seed, long, &logs, &mut schedule).await;
    let schedule: String = schedule.iter().map(|f| format!("  {f}\n")).collect();
    match outcome {
        Ok(summary) => {
            println!("netns: seed {seed}, {summary}\n{schedule}");
            let _ = std::fs::remove_dir_all(&logs);
        }
        Err(e) => panic!(
            "netns run failed: {e}\nseed {seed} (NETNS_SEED={seed} replays it); faults applied:\n\
             {schedule}nodes' logs kept in {}",
            logs.display()
        ),
    }
}

/// One run: answers its summary, or what went wrong.
async fn run(
    seed: u64,
    long: Option<Duration>,
    logs: &Path,
    schedule: &mut Vec<Fault>,
) -> Result<String, String> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let net = Network::create(HOSTS)?;
    let nodes = (1..=HOSTS)
        .map(|i| NodeProcess::new(i, &net, logs))
        .collect();
    let mut cluster = Cluster {
        nodes,
        net,
        cookie: format!("netns-cookie-{seed:016x}"),
    };
    for i in 0..HOSTS {
        let Cluster { nodes, net, cookie } = &mut cluster;
        nodes[i].start(net, HOSTS, cookie).await?;
    }
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url.clone()).collect();
    recovered(&cluster, &[]).await?;
    let games = load::create_games(&urls, GAMES).await?;
    recovered(&cluster, &games).await?;
    let load = Load::start(urls, &games, WRITERS);
    let started = Instant::now();

    let planned = match long {
        None => faults::every_kind_once(&mut rng, HOSTS, SHORT_HOLD),
        Some(_) => Vec::new(),
    };
    let mut planned = planned.into_iter();
    loop {
        let fault = match long {
            None => match planned.next() {
                Some(fault) => fault,
                None => break,
            },
            Some(limit) if started.elapsed() < limit => faults::any(&mut rng, HOSTS),
            Some(_) => break,
        };
        schedule.push(fault);
        let Cluster { nodes, net, cookie } = &mut cluster;
        faults::apply(&fault, net, nodes)
            .await
            .map_err(|e| format!("applying {fault}: {e}"))?;
        tokio::time::sleep(fault.hold).await;
        faults::heal(&fault, net, nodes, cookie)
            .await
            .map_err(|e| format!("healing {fault}: {e}"))?;
        recovered(&cluster, &games)
            .await
            .map_err(|e| format!("after {fault}: {e}"))?;
    }

    let counters = load.counters.clone();
    let ledgers = load.stop().await;
    recovered(&cluster, &games).await?;
    let checked = check_games(&cluster, &ledgers).await?;
    let counters = (
        counters.acked.load(std::sync::atomic::Ordering::Relaxed),
        counters.retried.load(std::sync::atomic::Ordering::Relaxed),
        counters.unknown.load(std::sync::atomic::Ordering::Relaxed),
    );
    let impairments = if cluster.net.netem {
        "netem"
    } else {
        "nft and htb (no netem in this kernel)"
    };
    Ok(format!(
        "{} faults in {:.0} s on {HOSTS} nodes, impairments by {impairments}: {} writes \
         acknowledged, {} attempts retried, {} given up; {checked}",
        schedule.len(),
        started.elapsed().as_secs_f64(),
        counters.0,
        counters.1,
        counters.2,
    ))
}

/// Every node's view of the cluster.
async fn statuses(cluster: &Cluster) -> Vec<Result<ClusterStatus, String>> {
    let http = load::client();
    let mut all = Vec::new();
    for node in &cluster.nodes {
        let status = async {
            let r = http
                .get(format!("{}/cluster", node.url))
                .send()
                .await
                .map_err(|e| format!("{}: {e}", node.name))?;
            r.json::<ClusterStatus>()
                .await
                .map_err(|e| format!("{}: {e}", node.name))
        };
        all.push(status.await);
    }
    all
}

/// Waits until the cluster recovered: every node answers, sees every
/// member up and the same games per owner, has a settled vote, and no game
/// is without its backup copy; `games` are registered, each with one
/// session.
async fn recovered(cluster: &Cluster, games: &[GameId]) -> Result<(), String> {
    let deadline = Instant::now() + RECOVER;
    loop {
        let seen = statuses(cluster).await;
        let verdict = judge(&seen, games.len());
        match verdict {
            Ok(()) => return Ok(()),
            Err(why) if Instant::now() > deadline => {
                let missing = missing(cluster, games).await;
                return Err(format!(
                    "the cluster did not recover within {RECOVER:?}: {why}; games no node \
                     answers for: {missing:?}; last seen: {seen:#?}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// The games of `games` that the first node that answers cannot read.
async fn missing(cluster: &Cluster, games: &[GameId]) -> Vec<GameId> {
    let http = load::client();
    let mut missing = Vec::new();
    for id in games {
        let mut found = false;
        for node in &cluster.nodes {
            if let Ok(r) = http.get(format!("{}/games/{id}", node.url)).send().await {
                found = r.status().is_success();
                break;
            }
        }
        if !found {
            missing.push(*id);
        }
    }
    missing
}

/// Whether `seen` is a recovered cluster holding `games` games (see
/// [`recovered`]).
fn judge(seen: &[Result<ClusterStatus, String>], games: usize) -> Result<(), String> {
    let mut views = Vec::new();
    for status in seen {
        let status = status.as_ref().map_err(Clone::clone)?;
        // An earlier incarnation of a restarted node stays listed, down,
        // until it is forgotten.
        let up: Vec<&str> = status
            .members
            .iter()
            .filter(|m| m.status == "up")
            .map(|m| m.name.as_str())
            .collect();
        if up.len() != HOSTS {
            return Err(format!("{} sees these members up: {up:?}", status.node));
        }
        // With majority fencing, the vote must have settled too: a fault
        // while a member still confirms its games or waits for its lease
        // is a second fault, not the one at a time the guarantees cover.
        let vote = &status.vote;
        if vote.fencing {
            let mut up_ids: Vec<&str> = status
                .members
                .iter()
                .filter(|m| m.status == "up")
                .map(|m| m.id.as_str())
                .collect();
            let mut voters: Vec<&str> = vote.voters.iter().map(String::as_str).collect();
            up_ids.sort_unstable();
            voters.sort_unstable();
            if voters != up_ids || !vote.pending.is_empty() {
                return Err(format!(
                    "{} counts voters {voters:?} and admits {:?}",
                    status.node, vote.pending
                ));
            }
            if !vote.holds_lease || vote.confirming > 0 {
                return Err(format!(
                    "{} holds its lease: {}, confirms {} games",
                    status.node, vote.holds_lease, vote.confirming
                ));
            }
        }
        if status.games_without_copy > 0 {
            return Err(format!(
                "{} has {} games without a copy",
                status.node, status.games_without_copy
            ));
        }
        views.push(status);
    }
    let first = &views[0].games_per_node;
    if let Some(other) = views.iter().find(|v| &v.games_per_node != first) {
        return Err(format!(
            "{} and {} see different owners",
            views[0].node, other.node
        ));
    }
    let registered: usize = first.values().sum();
    let sessions: usize = views.iter().map(|v| v.hosted_here).sum();
    // Copies a node could restart a game from now (one whose holder's
    // lease lapsed counts again only once its owner confirms it).
    let copies: usize = views.iter().map(|v| v.copies_held).sum();
    if registered != games || sessions != games || copies != games {
        return Err(format!(
            "{registered} games registered, {sessions} sessions and {copies} copies that \
             could restart them, for {games} games"
        ));
    }
    Ok(())
}

/// Reads every game through every node: all agree, and each game holds
/// every write acknowledged to it, once.
async fn check_games(
    cluster: &Cluster,
    ledgers: &BTreeMap<GameId, Ledger>,
) -> Result<String, String> {
    let http = load::client();
    let mut exact = 0;
    for (id, ledger) in ledgers {
        let mut versions = Vec::new();
        for node in &cluster.nodes {
            let game: serde_json::Value = http
                .get(format!("{}/games/{id}", node.url))
                .send()
                .await
                .map_err(|e| format!("reading game {id} through {}: {e}", node.name))?
                .json()
                .await
                .map_err(|e| format!("reading game {id} through {}: {e}", node.name))?;
            let version = game["version"]
                .as_u64()
                .ok_or_else(|| format!("game {id} through {}: {game}", node.name))?;
            versions.push(version);
        }
        let version = versions[0];
        if versions.iter().any(|v| *v != version) {
            return Err(format!("game {id}: the nodes answer versions {versions:?}"));
        }
        if ledger.acked.windows(2).any(|w| w[1] <= w[0]) {
            return Err(format!(
                "game {id}: acknowledged versions did not rise (a write was lost and its version \
                 given again): {:?}",
                ledger.acked
            ));
        }
        let acked = ledger.acked.len() as u64;
        let last = ledger.acked.last().copied().unwrap_or(0);
        if version < last || version < acked {
            return Err(format!(
                "game {id} lost acknowledged writes: at version {version}, after {acked} \
                 acknowledged writes, the last at version {last}"
            ));
        }
        // Each write applies once (idempotency keys), unless a round was
        // left long enough to end by its deadline.
        let rounds_due = ledger.longest_gap >= Duration::from_secs(30);
        if version > acked + ledger.unknown && !rounds_due {
            return Err(format!(
                "game {id} applied a write twice: version {version} after {acked} acknowledged \
                 writes and {} of unknown outcome",
                ledger.unknown
            ));
        }
        if version == acked + ledger.unknown {
            exact += 1;
        }
    }
    let games = ledgers.len();
    let given_up = games - exact;
    Ok(format!(
        "{games} games read through every node, each holding every acknowledged write; \
         {given_up} also hold some of the writes given up on"
    ))
}

//! Prometheus metrics of a node, served by its HTTP endpoint at
//! `GET /metrics` in the Prometheus text format.
//!
//! Counters and histograms are recorded through the `metrics` facade as
//! things happen: HTTP requests by route and status, commands by kind and
//! outcome with their latency, and the cluster events the node sees
//! (members up, leaving and down, failovers and the sessions they
//! restarted with how long their games were out of reach, hand-overs
//! with their games and duration, conflicts resolved, leases lost and
//! regained). Gauges are read from the node at each scrape: sessions
//! hosted, games per owner, members by status, links, backup copies held
//! here, games of this node without a backup copy or with one behind.
//!
//! The recorder is process-wide (`metrics-exporter-prometheus`, installed
//! on first use), so every series carries a `node` label: a process that
//! runs several nodes (a test cluster) serves them all on each endpoint.
//!
//! | series | kind | labels |
//! | --- | --- | --- |
//! | `minotaur_http_requests_total` | counter | `node`, `route`, `status` |
//! | `minotaur_http_request_duration_seconds` | histogram | `node`, `route` |
//! | `minotaur_commands_total` | counter | `node`, `kind`, `outcome` |
//! | `minotaur_command_duration_seconds` | histogram | `node`, `kind` |
//! | `minotaur_member_events_total` | counter | `node`, `event` |
//! | `minotaur_failovers_total` | counter | `node` |
//! | `minotaur_failover_sessions_total` | counter | `node` |
//! | `minotaur_failover_duration_seconds` | histogram: from last hearing of the member to its games restarted here | `node` |
//! | `minotaur_handoffs_total` | counter: this node's leaves, games all handed over | `node` |
//! | `minotaur_handoff_games_total` | counter | `node` |
//! | `minotaur_handoff_duration_seconds` | histogram: from the leave's start to the last game handed over | `node` |
//! | `minotaur_quorum_lost_total`, `minotaur_quorum_regained_total` | counter | `node` |
//! | `minotaur_conflicts_resolved_total` | counter | `node` |
//! | `minotaur_sessions_hosted` | gauge | `node` |
//! | `minotaur_games` | gauge | `node`, `owner` |
//! | `minotaur_members` | gauge | `node`, `status` |
//! | `minotaur_copies_held` | gauge | `node` |
//! | `minotaur_games_without_copy` | gauge | `node` |
//! | `minotaur_copies_behind` | gauge: games whose backup is behind their latest version | `node` |
//! | `minotaur_links` | gauge: members with an open cluster link | `node` |

use crate::http::ClusterStatus;
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use minotaur_cluster::{ClusterEvent, Node};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` when another
/// recorder was installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .install_recorder()
                .ok()
        })
        .as_ref()
}

/// What a command route does, for `minotaur_commands_total`; none for the
/// routes that are not game commands.
fn command_kind(method: &str, route: &str) -> Option<&'static str> {
    Some(match (method, route) {
        ("POST", "/games") => "create",
        ("POST", "/games/{id}/moves") => "move",
        ("POST", "/games/{id}/attacks") => "attack",
        ("POST", "/games/{id}/end-round") => "end_round",
        ("GET", "/games/{id}" | "/games/by-code/{code}" | "/games/{id}/players/{user}") => "read",
        ("GET", "/users/{user}/games") => "read",
        _ => return None,
    })
}

/// Records one HTTP request: `route` is the matched route pattern, which
/// the `route` label writes with `:name` for each parameter
/// (`/games/:id/moves`): braces in label values trip some parsers.
pub(crate) fn record_request(
    node: &str,
    method: &str,
    route: &str,
    status: u16,
    elapsed: Duration,
) {
    let kind = command_kind(method, route);
    let node = node.to_string();
    let route = route.replace('{', ":").replace('}', "");
    counter!("minotaur_http_requests_total", "node" => node.clone(), "route" => route.clone(), "status" => status.to_string())
        .increment(1);
    histogram!("minotaur_http_request_duration_seconds", "node" => node.clone(), "route" => route.clone())
        .record(elapsed.as_secs_f64());
    if let Some(kind) = kind {
        let outcome = match status {
            200..=299 => "ok",
            400..=499 => "refused",
            _ => "failed",
        };
        counter!("minotaur_commands_total", "node" => node.clone(), "kind" => kind, "outcome" => outcome)
            .increment(1);
        histogram!("minotaur_command_duration_seconds", "node" => node, "kind" => kind)
            .record(elapsed.as_secs_f64());
    }
}

/// Owners each node last reported games for, so that an owner that is
/// gone is reported with 0 games rather than its last count.
static OWNERS: Mutex<BTreeMap<String, BTreeSet<String>>> = Mutex::new(BTreeMap::new());

/// Sets a node's gauges from its status, just before a scrape.
pub(crate) fn set_gauges(status: &ClusterStatus) {
    let node = status.node.clone();
    gauge!("minotaur_sessions_hosted", "node" => node.clone()).set(status.hosted_here as f64);
    gauge!("minotaur_copies_held", "node" => node.clone()).set(status.copies_held as f64);
    gauge!("minotaur_games_without_copy", "node" => node.clone())
        .set(status.games_without_copy as f64);
    gauge!("minotaur_copies_behind", "node" => node.clone()).set(status.copies_behind as f64);
    gauge!("minotaur_links", "node" => node.clone()).set(status.links as f64);
    for state in ["up", "leaving", "down"] {
        let count = status.members.iter().filter(|m| m.status == state).count();
        gauge!("minotaur_members", "node" => node.clone(), "status" => state).set(count as f64);
    }
    let mut owners = OWNERS.lock().unwrap_or_else(|e| e.into_inner());
    let seen = owners.entry(node.clone()).or_default();
    seen.extend(status.games_per_node.keys().cloned());
    for owner in seen.iter() {
        let games = status.games_per_node.get(owner).copied().unwrap_or(0);
        gauge!("minotaur_games", "node" => node.clone(), "owner" => owner.clone())
            .set(games as f64);
    }
}

/// Counts the cluster events `node` reports, until the returned task is
/// aborted or the node stops.
pub fn follow_events(node: &Node) -> JoinHandle<()> {
    let name = node.name().to_string();
    let mut events = node.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let node = name.clone();
            match event {
                ClusterEvent::MemberUp(_) => member_event(node, "up"),
                ClusterEvent::MemberLeaving(_) => member_event(node, "leaving"),
                ClusterEvent::MemberDown(..) => member_event(node, "down"),
                ClusterEvent::FailedOver {
                    sessions, after, ..
                } => {
                    counter!("minotaur_failovers_total", "node" => node.clone()).increment(1);
                    counter!("minotaur_failover_sessions_total", "node" => node.clone())
                        .increment(sessions as u64);
                    histogram!("minotaur_failover_duration_seconds", "node" => node)
                        .record(after.as_secs_f64());
                }
                ClusterEvent::HandedOver { games, took } => {
                    counter!("minotaur_handoffs_total", "node" => node.clone()).increment(1);
                    counter!("minotaur_handoff_games_total", "node" => node.clone())
                        .increment(games as u64);
                    histogram!("minotaur_handoff_duration_seconds", "node" => node)
                        .record(took.as_secs_f64());
                }
                ClusterEvent::ConflictResolved { .. } => {
                    counter!("minotaur_conflicts_resolved_total", "node" => node).increment(1);
                }
                ClusterEvent::QuorumLost => {
                    counter!("minotaur_quorum_lost_total", "node" => node).increment(1);
                }
                ClusterEvent::QuorumRegained => {
                    counter!("minotaur_quorum_regained_total", "node" => node).increment(1);
                }
            }
        }
    })
}

fn member_event(node: String, event: &'static str) {
    counter!("minotaur_member_events_total", "node" => node, "event" => event).increment(1);
}

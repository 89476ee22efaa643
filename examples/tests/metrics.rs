//! `GET /metrics` against a real two-node cluster: text a Prometheus parser
//! reads, counters that move as commands run (by route and status, by
//! command kind and outcome), latency histograms, and gauges that agree
//! with the cluster.

mod common;

use common::{client, url, with_http, Addrs};
use minotaur_core::Game;
use minotaur_testkit::TestCluster;
use prometheus_parse::{Scrape, Value};
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn scrape(base: &str) -> Result<Scrape, Box<dyn std::error::Error>> {
    let response = client().get(format!("{base}/metrics")).send().await?;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str()?.to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await?;
    Ok(Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))?)
}

/// The value of the series `name` with (at least) `labels`; 0 if absent.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => f64::NAN,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_as_commands_run_and_gauges_match_the_cluster() -> TestResult {
    let addrs = Addrs::default();
    let cluster = with_http(TestCluster::builder().nodes(2), 0, addrs.clone())
        .start()
        .await?;
    let n1 = url(&addrs, "n1");
    let http = client();
    let before = scrape(&n1).await?;

    let game: Game = http
        .post(format!("{n1}/games"))
        .json(&json!({"join_code": "MTRC", "users": ["ann", "bob"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ann = game.player(&"ann".into()).expect("ann").position;
    let step = minotaur_core::Hex::DIRECTIONS
        .into_iter()
        .find(|d| game.world.walkable(ann + *d))
        .expect("a free neighbour");
    http.post(format!("{n1}/games/{}/moves", game.id))
        .json(&json!({"user": "ann", "vector": {"q": step.q, "r": step.r}}))
        .send()
        .await?
        .error_for_status()?;
    // Refused by the rules: 1 action point left, an attack needs 2.
    let refused = http
        .post(format!("{n1}/games/{}/attacks", game.id))
        .json(&json!({"user": "ann", "target": "bob"}))
        .send()
        .await?;
    assert_eq!(refused.status(), 422);
    for _ in 0..3 {
        http.get(format!("{n1}/games/{}", game.id))
            .send()
            .await?
            .error_for_status()?;
    }

    let after = scrape(&n1).await?;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let n = ("node", "n1");
    assert_eq!(
        moved(
            "minotaur_http_requests_total",
            &[n, ("route", "/games/:id"), ("status", "200")]
        ),
        3.0
    );
    assert_eq!(
        moved(
            "minotaur_commands_total",
            &[n, ("kind", "create"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "minotaur_commands_total",
            &[n, ("kind", "move"), ("outcome", "ok")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "minotaur_commands_total",
            &[n, ("kind", "attack"), ("outcome", "refused")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "minotaur_command_duration_seconds_count",
            &[n, ("kind", "read")]
        ),
        3.0
    );
    let buckets = after
        .samples
        .iter()
        .find(|s| {
            s.metric == "minotaur_command_duration_seconds" && s.labels.get("kind") == Some("move")
        })
        .map(|s| &s.value);
    assert!(
        matches!(buckets, Some(Value::Histogram(b)) if b.len() > 5),
        "latency is a histogram with buckets: {buckets:?}"
    );

    // Gauges, read at the scrape, agree with the cluster (once the node's
    // published view has caught up with the create).
    let owner = cluster.where_is(game.id).expect("hosted");
    cluster
        .eventually(
            "n1 to count the game under its owner",
            std::time::Duration::from_secs(5),
            || {
                let (n1, owner) = (n1.clone(), owner.clone());
                async move {
                    let now = scrape(&n1).await.map_err(|e| e.to_string())?;
                    match value(&now, "minotaur_games", &[n, ("owner", owner.as_str())]) {
                        1.0 => Ok(()),
                        other => Err(format!("minotaur_games for {owner}: {other}")),
                    }
                }
            },
        )
        .await?;
    assert_eq!(
        value(&after, "minotaur_members", &[n, ("status", "up")]),
        2.0
    );
    let hosted = cluster.sessions_per_node()["n1"] as f64;
    assert_eq!(value(&after, "minotaur_sessions_hosted", &[n]), hosted);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_going_down_is_counted() -> TestResult {
    let addrs = Addrs::default();
    let cluster = with_http(
        // Names of its own: the metrics recorder is one per process, and
        // the other test's nodes report under `node="n1"` at the same time.
        TestCluster::builder()
            .names(&["k1", "k2", "k3", "k4"])
            .in_memory(),
        0,
        addrs.clone(),
    )
    .start()
    .await?;
    let n1 = url(&addrs, "k1");
    // Games everywhere, so that a leave hands some over and a crash
    // fails some over.
    let engine = cluster.engine("k1")?;
    for i in 0..16 {
        engine
            .create_game(&format!("KDN{i:02}"), vec!["ann".into(), "bob".into()])
            .await?;
    }
    cluster.settled(std::time::Duration::from_secs(20)).await?;
    let scraped = scrape(&n1).await?;
    assert_eq!(value(&scraped, "minotaur_links", &[("node", "k1")]), 3.0);
    assert_eq!(
        value(&scraped, "minotaur_copies_behind", &[("node", "k1")]),
        0.0
    );
    let before = value(
        &scraped,
        "minotaur_member_events_total",
        &[("node", "k1"), ("event", "down")],
    );

    // k4 leaves: its events say how many games it handed over, and how
    // long that took.
    let mut k4_events = cluster.node("k4")?.subscribe();
    let k4_games = cluster.sessions_per_node()["k4"];
    cluster.stop_node("k4").await?;
    let handed = loop {
        match k4_events.try_recv() {
            Ok(minotaur_cluster::ClusterEvent::HandedOver { games, took }) => break (games, took),
            Ok(_) => continue,
            Err(e) => panic!("no HandedOver event from k4: {e:?}"),
        }
    };
    assert_eq!(handed.0, k4_games);
    assert!(handed.1 > std::time::Duration::ZERO);
    cluster.settled(std::time::Duration::from_secs(20)).await?;
    let failovers = |scrape: &Scrape| -> f64 {
        ["k1", "k2"]
            .iter()
            .map(|n| value(scrape, "minotaur_failover_duration_seconds", &[("node", n)]))
            .sum()
    };
    let failovers_before = failovers(&scrape(&n1).await?);
    let k3_games = cluster.sessions_per_node()["k3"];
    assert!(k3_games > 0, "k3 hosts games to fail over");
    cluster.kill_node("k3").await?;
    cluster
        .eventually(
            "k1 to count k3 down",
            std::time::Duration::from_secs(10),
            || {
                let n1 = n1.clone();
                async move {
                    let now = value(
                        &scrape(&n1).await.map_err(|e| e.to_string())?,
                        "minotaur_member_events_total",
                        &[("node", "k1"), ("event", "down")],
                    );
                    if now > before {
                        Ok(())
                    } else {
                        Err(format!("{now} down events"))
                    }
                }
            },
        )
        .await?;
    // Its games were failed over, each failover timed.
    cluster
        .eventually(
            "k3's games failed over, with their durations",
            std::time::Duration::from_secs(20),
            || {
                let n1 = n1.clone();
                async move {
                    let now = failovers(&scrape(&n1).await.map_err(|e| e.to_string())?);
                    if now > failovers_before {
                        Ok(())
                    } else {
                        Err(format!("{now} failovers timed"))
                    }
                }
            },
        )
        .await?;
    cluster.shutdown().await;
    Ok(())
}

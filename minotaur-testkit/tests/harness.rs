//! The testkit's own promises: isolation between clusters, the test process
//! never hosting sessions, per-node ports and config, logs, start times.

use minotaur_cluster::NodeConfig;
use minotaur_testkit::fixtures::players_of;
use minotaur_testkit::{ClusterError, TestCluster};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_game_lives_on_a_node_never_on_the_test_process(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let engine = cluster.engine("n2")?;
    let mut ids = Vec::new();
    for i in 0..300 {
        ids.push(
            engine
                .create_game(&format!("P{i:04}"), players_of(i))
                .await?
                .id,
        );
    }
    for id in &ids {
        assert_eq!(cluster.where_is_all(*id).len(), 1, "game {id}");
    }
    let per_node = cluster.sessions_per_node();
    assert_eq!(per_node.values().sum::<usize>(), 300);
    assert!(per_node.values().all(|n| *n > 0), "spread: {per_node:?}");
    assert_eq!(cluster.node("n1")?.registry().len(), 300);
    cluster.shutdown().await;
    Ok(())
}

async fn play_in_own_cluster(tag: &str) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(2).start().await?;
    let game = cluster
        .engine("n1")?
        .create_game("SAME", players_of(0))
        .await?;
    assert_eq!(cluster.members("n1")?, vec!["n1", "n2"], "{tag}");
    assert_eq!(
        cluster
            .engine("n2")?
            .get_game_by_join_code("SAME")
            .await?
            .id,
        game.id
    );
    assert_eq!(
        cluster.node("n2")?.registry().len(),
        1,
        "{tag} sees only its own game"
    );
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_clusters_with_the_same_names_do_not_interfere(
) -> Result<(), Box<dyn std::error::Error>> {
    let (a, b, c) = tokio::join!(
        play_in_own_cluster("a"),
        play_in_own_cluster("b"),
        play_in_own_cluster("c")
    );
    a?;
    b?;
    c?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_port_used_twice_names_the_node_and_port() -> Result<(), Box<dyn std::error::Error>> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let result = TestCluster::builder()
        .nodes(2)
        .configure(move |name, cfg| {
            if name == "n2" {
                cfg.listen_addr = SocketAddr::from(([127, 0, 0, 1], port));
            }
        })
        .start()
        .await;
    match result {
        Err(ClusterError::Node(e)) => {
            let text = e.to_string();
            assert!(
                text.contains("n2") && text.contains(&port.to_string()),
                "{text}"
            );
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("started on a taken port"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_node_services_get_their_own_ports_and_config() -> Result<(), Box<dyn std::error::Error>>
{
    // A stand-in for the demo's HTTP endpoint: each node's hook binds its
    // own listener on a free port chosen by the OS.
    let cluster = TestCluster::builder()
        .nodes(2)
        .configure(|name, cfg: &mut NodeConfig| {
            if name == "n2" {
                cfg.game.round_length_ms = 5_000;
            }
        })
        .service(|node| async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| format!("{}: {e}", node.name()))?;
            Ok(Box::new(listener) as minotaur_testkit::cluster::ServiceGuard)
        })
        .start()
        .await?;
    assert_eq!(cluster.node("n1")?.config().game.round_length_ms, 30_000);
    assert_eq!(cluster.node("n2")?.config().game.round_length_ms, 5_000);
    assert_ne!(cluster.node("n1")?.addr(), cluster.node("n2")?.addr());
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_captured_per_node() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(2).start().await?;
    let n1 = cluster.logs("n1")?;
    assert!(n1.iter().any(|l| l.contains("node started")), "{n1:?}");
    assert!(n1.iter().all(|l| l.contains("n1")), "{n1:?}");
    let n2 = cluster.logs("n2")?;
    assert!(n2.iter().all(|l| !l.contains("[n1]")), "{n2:?}");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_times_are_reported() -> Result<(), Box<dyn std::error::Error>> {
    let t = Instant::now();
    let one = TestCluster::builder().nodes(1).start().await?;
    let single = t.elapsed();
    one.shutdown().await;
    let t = Instant::now();
    let ten = TestCluster::builder()
        .nodes(10)
        .wait(Duration::from_secs(30))
        .start()
        .await?;
    let cluster10 = t.elapsed();
    for name in ten.nodes() {
        assert_eq!(ten.members(&name)?.len(), 10);
    }
    ten.shutdown().await;
    println!("node_start: one node {single:?}, 10-node fully connected cluster {cluster10:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_every_port() -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let addrs: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.node(n).map(|node| node.addr().to_string()))
        .collect::<Result<_, _>>()?;
    let handles: Vec<_> = cluster
        .nodes()
        .iter()
        .filter_map(|n| cluster.node(n).ok())
        .collect();
    cluster.shutdown().await;
    for addr in &addrs {
        minotaur_testkit::eventually(
            &format!("{addr} to be free"),
            Duration::from_secs(2),
            || async {
                std::net::TcpListener::bind(addr.as_str())
                    .map(drop)
                    .map_err(|e| format!("port still held: {e}"))
            },
        )
        .await?;
    }
    // Nothing of a stopped node keeps running: its handle sees no sessions
    // and no members but itself.
    for node in handles {
        assert!(node.hosted().is_empty());
    }
    Ok(())
}

/// Runs a busy cluster (games, a graceful stop, a crash, a restart, a
/// partition) and shuts it down: every task it started must end. Each
/// `#[tokio::test]` has its own runtime, so its task count is this test's.
async fn shutdown_leaves_no_task(in_memory: bool) -> Result<(), Box<dyn std::error::Error>> {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let mut builder = TestCluster::builder().nodes(3).configure(|_, cfg| {
        cfg.heartbeat_interval = Duration::from_millis(50);
        cfg.failure_timeout = Duration::from_millis(400);
    });
    if in_memory {
        builder = builder.in_memory();
    }
    let cluster = builder.start().await?;
    let engine = cluster.engine("n1")?;
    for i in 0..20 {
        engine
            .create_game(&format!("T{i:03}"), players_of(i))
            .await?;
    }
    assert!(metrics.num_alive_tasks() > before);
    cluster.stop_node("n2").await?;
    cluster.add_node("n4").await?;
    cluster.restart_node("n1").await?;
    cluster.kill_node("n3").await?;
    cluster.add_node("n3").await?;
    if in_memory {
        cluster.partition(&["n1"], &["n3", "n4"])?;
        cluster.heal()?;
    }
    cluster.await_full_membership().await?;
    cluster.shutdown().await;
    minotaur_testkit::eventually(
        "every task of the cluster to end",
        Duration::from_secs(5),
        || {
            let alive = metrics.num_alive_tasks();
            async move {
                if alive <= before {
                    Ok(())
                } else {
                    Err(format!(
                        "{alive} tasks alive, {before} before the cluster started"
                    ))
                }
            }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_task_behind_tcp() -> Result<(), Box<dyn std::error::Error>> {
    shutdown_leaves_no_task(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_leaves_no_task_behind_in_memory() -> Result<(), Box<dyn std::error::Error>> {
    shutdown_leaves_no_task(true).await
}

/// Dropping a cluster (a test that ends early, or panics) stops every node
/// without waiting; its tasks still all end, and its ports are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_cluster_leaves_no_task_or_port_behind() -> Result<(), Box<dyn std::error::Error>>
{
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    let cluster = TestCluster::builder().nodes(3).start().await?;
    let engine = cluster.engine("n1")?;
    for i in 0..20 {
        engine
            .create_game(&format!("D{i:03}"), players_of(i))
            .await?;
    }
    let addrs: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|n| cluster.node(n).map(|node| node.addr().to_string()))
        .collect::<Result<_, _>>()?;
    drop(engine);
    drop(cluster);
    minotaur_testkit::eventually(
        "tasks and ports of a dropped cluster",
        Duration::from_secs(5),
        || {
            let alive = metrics.num_alive_tasks();
            let bound: Vec<&String> = addrs
                .iter()
                .filter(|a| std::net::TcpListener::bind(a.as_str()).is_err())
                .collect();
            let result = if alive <= before && bound.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{alive} tasks alive ({before} before); still bound: {bound:?}"
                ))
            };
            async move { result }
        },
    )
    .await?;
    Ok(())
}

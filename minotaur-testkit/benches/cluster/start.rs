//! Figure 7: starting one node, and a fully connected 10-node cluster,
//! against bare `NodeServer`s doing the same.

use crate::bare;
use crate::common::{self, Scale};
use crate::report::{median, ms, Figure, Report};
use minotaur_cluster::{Node, NodeConfig};
use std::time::{Duration, Instant};

fn cookie() -> String {
    format!("bench-start-{:016x}", rand::random::<u64>())
}

/// Time to start `n` nodes (each seeded with the first) until every one
/// sees all `n` live and has everyone's registrations.
async fn start_cluster(n: usize) -> Duration {
    let cookie = cookie();
    let start = Instant::now();
    let first = Node::start(NodeConfig::new("s1", cookie.clone()))
        .await
        .expect("node starts");
    let seed = first.addr().to_string();
    let mut nodes = vec![first];
    for i in 2..=n {
        let mut config = NodeConfig::new(format!("s{i}"), cookie.clone());
        config.seeds = vec![seed.clone()];
        nodes.push(Node::start(config).await.expect("node starts"));
    }
    common::poll("a fully connected cluster", Duration::from_secs(60), || {
        let ready = nodes
            .iter()
            .all(|node| node.live_member_names().len() == n && node.is_synced());
        async move { ready.then_some(()) }
    })
    .await;
    let took = start.elapsed();
    for node in &nodes {
        node.kill().await;
    }
    took
}

/// Figure 7.
pub async fn run(scale: &Scale, report: &mut Report) {
    let (mut one, mut bare_one) = (vec![], vec![]);
    for _ in 0..scale.start_samples {
        let start = Instant::now();
        let node = Node::start(NodeConfig::new("solo", cookie()))
            .await
            .expect("node starts");
        one.push(ms(start.elapsed()));
        node.kill().await;
        bare_one.push(ms(bare::start_one_server().await));
    }
    report.add(
        Figure::new(
            "node_start",
            median(&one),
            "ms",
            "bare ractor_cluster NodeServer start",
            Some(median(&bare_one)),
        )
        .note(format!("median of {}", one.len())),
    );
    let n = scale.mesh_nodes;
    let (mut cluster, mut mesh) = (vec![], vec![]);
    for _ in 0..scale.mesh_samples {
        cluster.push(ms(start_cluster(n).await));
        mesh.push(ms(bare::start_mesh(n).await));
    }
    report.add(
        Figure::new(
            "node_start_cluster",
            median(&cluster),
            "ms",
            "bare NodeServer full mesh, every link ready",
            Some(median(&mesh)),
        )
        .note(format!(
            "median of {}; {n} nodes seeded with the first, until all see all and are synced",
            cluster.len()
        )),
    );
}

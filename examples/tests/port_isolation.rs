//! Port isolation (issue 4): nodes of one test cluster each run the demo
//! node's HTTP endpoint, started through the TestCluster's per-node service
//! hook, without clashing; a fixed port used twice is a clear error naming
//! the node and the port.

mod common;

use common::{client, url, with_http, Addrs};
use minotaur_examples::http::ClusterStatus;
use minotaur_testkit::{ClusterError, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_gets_its_own_http_port() -> Result<(), Box<dyn std::error::Error>> {
    let addrs = Addrs::default();
    let cluster = with_http(TestCluster::builder().nodes(2), 0, addrs.clone())
        .start()
        .await?;
    let (a1, a2) = {
        let map = addrs.lock().unwrap();
        (map["n1"], map["n2"])
    };
    assert_ne!(a1.port(), a2.port());
    let http = client();
    for name in ["n1", "n2"] {
        let status: ClusterStatus = http
            .get(format!("{}/cluster", url(&addrs, name)))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(status.node, name, "each endpoint is its own node's");
        let mut seen: Vec<&str> = status.members.iter().map(|m| m.name.as_str()).collect();
        seen.sort();
        assert_eq!(seen, ["n1", "n2"]);
    }
    // A node added later gets its endpoint too, on yet another port.
    cluster.add_node("n3").await?;
    let a3 = addrs.lock().unwrap()["n3"];
    assert!(a3.port() != a1.port() && a3.port() != a2.port());
    let health = http.get(format!("http://{a3}/health")).send().await?;
    assert!(health.status().is_success());
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_port_used_twice_names_the_node_and_the_port(
) -> Result<(), Box<dyn std::error::Error>> {
    // A port that was free a moment ago; both nodes are told to use it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addrs = Addrs::default();
    let result = with_http(TestCluster::builder().nodes(2), port, addrs.clone())
        .start()
        .await;
    let Err(err) = result else {
        panic!("two endpoints on port {port} must not both start");
    };
    let message = err.to_string();
    assert!(
        matches!(&err, ClusterError::Service { node, .. } if node == "n2"),
        "{err:?}"
    );
    assert!(message.contains("n2"), "{message}");
    assert!(message.contains(&format!(":{port}")), "{message}");
    // The first node did get the port.
    assert_eq!(addrs.lock().unwrap()["n1"].port(), port);
    Ok(())
}

//! Security defaults: the cookie is required and must be strong outside
//! development, and cluster links can run over mutual TLS.

use minotaur_cluster::{Node, NodeConfig, NodeError, TlsConfig};
use minotaur_core::EngineError;
use minotaur_testkit::fixtures::players;
use minotaur_testkit::TestCluster;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use std::time::Duration;
use tokio::io::AsyncReadExt;

const SERVER_NAME: &str = "minotaur.test";

/// A cluster certificate authority made for one test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// A node certificate valid for [`SERVER_NAME`], usable on both ends.
    fn node_tls(&self) -> TlsConfig {
        let mut params = CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("params");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("node cert");
        TlsConfig::mutual_from_pem(
            self.issuer.pem().as_bytes(),
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
            SERVER_NAME,
        )
        .expect("TLS config")
    }
}

#[tokio::test]
async fn weak_or_empty_cookie_is_refused_unless_development_flag() {
    for weak in ["secret", "minotaur-dev-cookie", "short-cookie"] {
        match Node::start(NodeConfig::new("n1", weak)).await {
            Err(NodeError::Config { reason, .. }) => {
                assert!(reason.contains("cookie"), "unclear reason: {reason}")
            }
            Err(other) => panic!("wrong error for {weak:?}: {other}"),
            Ok(_) => panic!("started with the weak cookie {weak:?}"),
        }
    }

    let mut empty = NodeConfig::new("n1", "");
    empty.allow_weak_cookie = true;
    assert!(matches!(
        Node::start(empty).await,
        Err(NodeError::Config { .. })
    ));

    let mut dev = NodeConfig::new("n1", minotaur_cluster::DEV_COOKIE);
    dev.allow_weak_cookie = true;
    let node = Node::start(dev).await.expect("development flag accepts it");
    node.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_games_across_nodes() -> Result<(), Box<dyn std::error::Error>> {
    let ca = Ca::new();
    let tls = ca.node_tls();
    let cluster = TestCluster::builder()
        .nodes(3)
        .configure(move |_, cfg| cfg.tls = Some(tls.clone()))
        .start()
        .await?;
    let created = cluster.engine("n1")?.create_game("TLSA", players()).await?;
    for node in ["n1", "n2", "n3"] {
        let seen = cluster.engine(node)?.get_game(created.id).await?;
        assert_eq!(seen.join_code, created.join_code, "as seen from {node}");
    }
    // Crash failover works over TLS links too.
    let owner = cluster.where_is(created.id).ok_or("game has no owner")?;
    cluster.kill_node(&owner).await?;
    let survivor = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != owner)
        .ok_or("no survivor")?;
    let engine = cluster.engine(survivor)?;
    cluster
        .eventually(
            "game back after its node crashed",
            Duration::from_secs(10),
            || {
                let engine = engine.clone();
                async move { engine.get_game(created.id).await.map_err(|e| e.to_string()) }
            },
        )
        .await?;
    cluster.shutdown().await;
    Ok(())
}

/// Observes `node` for a while and returns its view: used to show that an
/// outsider stays out, where no event marks "never joined".
async fn view_after_retries(node: &Node) -> Vec<String> {
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.live_member_names()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_a_certificate_of_the_cluster_ca_cannot_join(
) -> Result<(), Box<dyn std::error::Error>> {
    let ca = Ca::new();
    let tls = ca.node_tls();
    let cluster = TestCluster::builder()
        .nodes(2)
        .configure(move |_, cfg| cfg.tls = Some(tls.clone()))
        .start()
        .await?;
    let game = cluster.engine("n1")?.create_game("TLSB", players()).await?;
    let seed = cluster.node("n1")?.addr().to_string();
    // The right cookie is not enough: one outsider speaks plain TCP, the
    // other presents a certificate from another CA.
    let cookie = cluster.config_for("n1").cookie;
    for (name, tls) in [("plain", None), ("foreign", Some(Ca::new().node_tls()))] {
        let mut cfg = NodeConfig::new(name, cookie.clone());
        cfg.seeds = vec![seed.clone()];
        cfg.tls = tls;
        cfg.call_timeout = Duration::from_millis(500);
        let outsider = Node::start(cfg).await?;
        assert_eq!(view_after_retries(&outsider).await, vec![name.to_string()]);
        match outsider.engine().get_game(game.id).await {
            Err(EngineError::GameNotAlive(_)) => {}
            other => panic!("{name} reached a session: {other:?}"),
        }
        outsider.kill().await;
    }
    assert_eq!(cluster.members("n1")?, vec!["n1", "n2"]);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tls_client_neither_blocks_joins_nor_stays_connected(
) -> Result<(), Box<dyn std::error::Error>> {
    let ca = Ca::new();
    let tls = ca.node_tls();
    let cluster = TestCluster::builder()
        .nodes(1)
        .configure(move |_, cfg| cfg.tls = Some(tls.clone()))
        .start()
        .await?;
    // Opens the TCP connection and never starts the TLS handshake.
    let mut silent = tokio::net::TcpStream::connect(cluster.node("n1")?.addr()).await?;

    cluster.add_node("n2").await?;
    cluster.await_full_membership().await?;

    // The handshake deadline closes the silent connection (EOF or reset).
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match silent.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "silent TLS client still connected after 10 s"
    );
    cluster.shutdown().await;
    Ok(())
}

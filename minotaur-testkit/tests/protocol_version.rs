//! A peer of a future release whose protocol range does not overlap ours is
//! refused with a clear log line, and the node keeps serving.
//!
//! The "future node" is a bare ractor_cluster NodeServer with the right
//! cookie and a router, which introduces itself with Minotaur's control
//! hello announcing a protocol this release does not speak: exactly what a
//! later, incompatible release would send.

use minotaur_cluster::control::wire::{Hello, Msg};
use minotaur_cluster::protocol::{self, Notice, RouterMsg};
use minotaur_cluster::MemberId;
use minotaur_core::UserId;
use minotaur_testkit::TestCluster;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage};
use std::time::Duration;

const FUTURE: u32 = protocol::PROTOCOL_VERSION + 1;

fn future_id() -> MemberId {
    MemberId::new("future", 0xf0f0)
}

/// The future node's router: it takes whatever it is sent.
struct FutureRouter;

impl Actor for FutureRouter {
    type Msg = RouterMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<RouterMsg>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// The stub of `n1`'s router on the future node's side, once linked.
async fn n1_router(server: &ActorRef<NodeServerMessage>) -> Result<ActorRef<RouterMsg>, String> {
    let sessions =
        ractor::call_t!(server, NodeServerMessage::GetSessions, 1000).map_err(|e| e.to_string())?;
    sessions
        .values()
        .flat_map(|s| s.actor.get_cell().get_children())
        .find(|c| {
            !c.get_id().is_local()
                && c.get_name()
                    .is_some_and(|n| n.starts_with("minotaur-router/n1."))
        })
        .map(ActorRef::from)
        .ok_or_else(|| format!("{} sessions, no n1 router yet", sessions.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_an_incompatible_release_is_refused_and_logged(
) -> Result<(), Box<dyn std::error::Error>> {
    let cluster = TestCluster::builder().nodes(1).start().await?;
    let n1 = cluster.node("n1")?;
    let cookie = cluster.config_for("n1").cookie;

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server = NodeServer::new(
        port,
        cookie,
        future_id().to_string(),
        "127.0.0.1".into(),
        None,
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    );
    let (server, server_handle) = Actor::spawn(None, server, ()).await?;
    let (router, router_handle) = Actor::spawn(
        Some(format!("minotaur-router/{}", future_id())),
        FutureRouter,
        (),
    )
    .await?;
    ractor_cluster::client_connect(&server, n1.addr()).await?;

    // Our hello to n1 announces a protocol it does not speak.
    let stub = cluster
        .eventually("n1's router stub", Duration::from_secs(5), || {
            let server = server.clone();
            async move { n1_router(&server).await }
        })
        .await?;
    let hello = protocol::seal(Notice::Control {
        from: future_id(),
        msg: Msg::Hello(Hello {
            from: future_id(),
            addr: format!("127.0.0.1:{port}"),
            min_protocol: FUTURE,
            max_protocol: FUTURE,
            leaving: false,
        }),
    })?;
    stub.cast(RouterMsg::Notice(hello))?;

    cluster
        .eventually("n1 to log the refusal", Duration::from_secs(5), || {
            let lines = cluster.logs("n1").unwrap_or_default();
            async move {
                lines
                    .iter()
                    .find(|l| l.contains("incompatible protocol versions"))
                    .cloned()
                    .ok_or_else(|| format!("{} lines, none about the protocol", lines.len()))
            }
        })
        .await?;
    // n1 closes the link it refused and never counts the peer as a member.
    cluster
        .eventually(
            "n1 to close the refused link",
            Duration::from_secs(5),
            || {
                let server = server.clone();
                async move {
                    match ractor::call_t!(server, NodeServerMessage::GetSessions, 1000) {
                        Ok(sessions) if sessions.is_empty() => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await?;
    assert_eq!(n1.live_member_names(), vec!["n1".to_string()]);

    let users: Vec<UserId> = vec!["ann".into(), "bob".into()];
    let game = n1.engine().create_game("VERS", users).await?;
    assert_eq!(n1.engine().get_game(game.id).await?.id, game.id);

    router.stop(None);
    server.stop(None);
    let _ = router_handle.await;
    let _ = server_handle.await;
    cluster.shutdown().await;
    Ok(())
}

//! Two real ractor_cluster `NodeServer`s in one process, connected over an
//! in-memory [`minotaur_testkit::link`], authenticate, serve remote calls,
//! stall while the link is held, recover on release, and see the
//! disconnection when the link is closed.

use std::time::Duration;

use minotaur_testkit::link::{pair, Direction};
use minotaur_testkit::wait::eventually;
use ractor::concurrency::JoinHandle;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, RactorClusterMessage};
use tokio::sync::mpsc;
use tokio::time::Instant;

const BOUND: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_millis(300);

/// A tiny remotable actor: echoes strings back.
struct Echo;

#[derive(RactorClusterMessage)]
enum EchoMsg {
    #[rpc]
    Echo(String, RpcReplyPort<String>),
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        _state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EchoMsg::Echo(text, reply) => {
                let _ = reply.send(text);
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Opened,
    Authenticated,
    Ready,
    Disconnected,
}

#[derive(Debug)]
struct NodeEvent {
    node: &'static str,
    kind: Kind,
    peer: String,
}

/// Forwards a NodeServer's synchronous callbacks into a channel.
struct Forward {
    node: &'static str,
    events: mpsc::UnboundedSender<NodeEvent>,
}

impl Forward {
    fn send(&self, kind: Kind, ses: NodeServerSessionInformation) {
        let _ = self.events.send(NodeEvent {
            node: self.node,
            kind,
            peer: ses.peer_addr,
        });
    }
}

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, ses: NodeServerSessionInformation) {
        self.send(Kind::Opened, ses);
    }
    fn node_session_disconnected(&self, ses: NodeServerSessionInformation) {
        self.send(Kind::Disconnected, ses);
    }
    fn node_session_authenticated(&self, ses: NodeServerSessionInformation) {
        self.send(Kind::Authenticated, ses);
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        self.send(Kind::Ready, ses);
    }
}

async fn start_node(
    name: &str,
    cookie: &str,
    label: &'static str,
    events: &mpsc::UnboundedSender<NodeEvent>,
) -> (ActorRef<NodeServerMessage>, JoinHandle<()>) {
    let server = NodeServer::new(
        0,
        cookie.to_owned(),
        name.to_owned(),
        "localhost".into(),
        None,
        None,
    );
    let (node, handle) = Actor::spawn(None, server, ())
        .await
        .expect("NodeServer should start");
    node.cast(NodeServerMessage::SubscribeToEvents {
        id: format!("link-test-{label}"),
        subscription: Box::new(Forward {
            node: label,
            events: events.clone(),
        }),
    })
    .expect("subscribe");
    // A call is a mailbox barrier: the subscription is in place after it.
    ractor::call_t!(node, NodeServerMessage::GetSessions, 1_000).expect("GetSessions");
    (node, handle)
}

/// Waits until each of `nodes` reported `kind`; returns those events and the
/// time it took.
async fn wait_for_all(
    events: &mut mpsc::UnboundedReceiver<NodeEvent>,
    kind: Kind,
    nodes: &[&str],
) -> (Vec<NodeEvent>, Duration) {
    let start = Instant::now();
    let mut missing: Vec<&str> = nodes.to_vec();
    let mut seen = Vec::new();
    let outcome = tokio::time::timeout(BOUND, async {
        while !missing.is_empty() {
            let Some(event) = events.recv().await else {
                break;
            };
            if event.kind == kind {
                missing.retain(|node| *node != event.node);
            }
            seen.push(event);
        }
    })
    .await;
    assert!(
        outcome.is_ok() && missing.is_empty(),
        "{missing:?} did not report {kind:?} within {BOUND:?}; events seen: {seen:?}"
    );
    seen.retain(|event| event.kind == kind);
    (seen, start.elapsed())
}

/// The stub for the actor named `name`, made by `node`'s session.
async fn find_stub(node: &ActorRef<NodeServerMessage>, name: &str) -> ActorRef<EchoMsg> {
    let cell: ActorCell = eventually("the remote stub of the echo actor", BOUND, || {
        let node = node.clone();
        async move {
            let sessions = ractor::call_t!(node, NodeServerMessage::GetSessions, 1_000)
                .map_err(|err| format!("GetSessions failed: {err}"))?;
            let mut children = Vec::new();
            for info in sessions.values() {
                for child in info.actor.get_cell().get_children() {
                    if !child.get_id().is_local() && child.get_name().as_deref() == Some(name) {
                        return Ok(child);
                    }
                    children.push((child.get_id(), child.get_name()));
                }
            }
            Err(format!(
                "{} sessions, children {children:?}",
                sessions.len()
            ))
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    ActorRef::from(cell)
}

async fn echo(stub: &ActorRef<EchoMsg>, text: &str) -> CallResult<String> {
    stub.call(
        |reply| EchoMsg::Echo(text.to_owned(), reply),
        Some(CALL_TIMEOUT),
    )
    .await
    .expect("the stub should accept the call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_servers_authenticate_over_an_in_memory_link() {
    minotaur_testkit::logs::install();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let cookie = format!("cookie-{run}");
    let (events_tx, mut events) = mpsc::unbounded_channel();

    // Spawned first, so that both sessions advertise it during the handshake.
    let echo_name = format!("echo-{run}");
    let (echo_actor, echo_handle) = Actor::spawn(Some(echo_name.clone()), Echo, ())
        .await
        .expect("echo actor should start");

    let (node_a, handle_a) = start_node(&format!("a-{run}"), &cookie, "a", &events_tx).await;
    let (node_b, handle_b) = start_node(&format!("b-{run}"), &cookie, "b", &events_tx).await;

    let (a_to_b, b_to_a) = (Direction::new(), Direction::new());
    let (end_a, end_b) = pair("node-a", "node-b", a_to_b.clone(), b_to_a.clone());
    node_b
        .cast(NodeServerMessage::ConnectionOpenedExternal {
            stream: end_b,
            is_server: true,
        })
        .expect("server side");
    ractor_cluster::client_connect_external(&node_a, end_a)
        .await
        .expect("client side");

    let (ready, took) = wait_for_all(&mut events, Kind::Ready, &["a", "b"]).await;
    eprintln!("both sessions ready after {took:?}");
    // ractor_cluster shows the stream's peer label as the session's peer address.
    for event in &ready {
        let expected = if event.node == "a" {
            "node-b"
        } else {
            "node-a"
        };
        assert_eq!(event.peer, expected, "{event:?}");
    }

    // A remote call through a's session reaches the echo actor via b.
    let stub = find_stub(&node_a, &echo_name).await;
    assert!(!stub.get_id().is_local());
    match echo(&stub, "hello").await {
        CallResult::Success(text) => assert_eq!(text, "hello"),
        other => panic!("call over a healthy link should succeed, got {other:?}"),
    }

    // A held link is a silent stall: calls time out, nobody disconnects.
    a_to_b.set_held(true);
    b_to_a.set_held(true);
    // The derive's reply forwarder has its own timer of the same length, and
    // when it fires first the caller sees `SenderError` instead of `Timeout`:
    // either way the call fails only once its timeout has passed.
    let started = Instant::now();
    let stalled = echo(&stub, "stalled").await;
    let waited = started.elapsed();
    assert!(
        matches!(stalled, CallResult::Timeout | CallResult::SenderError),
        "a call over a held link should time out, got {stalled:?}"
    );
    assert!(
        waited >= CALL_TIMEOUT,
        "the call failed after {waited:?}, before its timeout: {stalled:?}"
    );
    eprintln!("call over the held link ended with {stalled:?} after {waited:?}");
    assert!(
        events.try_recv().is_err(),
        "holding the link should not produce session events"
    );

    // Released, the link carries on where it stopped.
    a_to_b.set_held(false);
    b_to_a.set_held(false);
    let answer = eventually("a call to succeed after release", BOUND, || {
        let stub = stub.clone();
        async move {
            match echo(&stub, "again").await {
                CallResult::Success(text) => Ok(text),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await
    .unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(answer, "again");

    // A hard cut is seen by both NodeServers.
    a_to_b.close();
    let (_, took) = wait_for_all(&mut events, Kind::Disconnected, &["a", "b"]).await;
    eprintln!("both sessions disconnected {took:?} after close()");
    let sessions = ractor::call_t!(node_a, NodeServerMessage::GetSessions, 1_000).expect("a");
    assert!(sessions.is_empty(), "a still has sessions after the cut");

    node_a.stop(None);
    node_b.stop(None);
    echo_actor.stop(None);
    for handle in [handle_a, handle_b, echo_handle] {
        tokio::time::timeout(BOUND, handle)
            .await
            .expect("actor should stop in time")
            .expect("actor should not panic");
    }
}

//! Hostile input at a node's cluster port (issue 7): raw garbage, truncated
//! frames, an oversize length prefix, a peer that never authenticates, a
//! peer with the wrong cookie, malformed payloads inside an authenticated
//! session (fuzzed), and misuse of the engine routed to a remote node. In
//! every case the node drops the input with an error or a closed
//! connection, nothing panics, and the node keeps serving its games.
//!
//! The cluster's wire types are also fuzzed here (decoding arbitrary and
//! corrupted bytes never panics); the core's types are in
//! `minotaur-core/tests/fuzz.rs`.

use minotaur_cluster::control::wire::{Delta, Msg, Snapshot, Update};
use minotaur_cluster::protocol::{self, Envelope, Notice, Request, Response, RouterMsg};
use minotaur_cluster::{MemberId, NodeConfig, Registration};
use minotaur_core::codec;
use minotaur_core::{
    Ack, Answer, Command, EngineError, Game, GameConfig, GameEngine, GameError, GameId, GameStatus,
    Hex, MoveError, Reply, UserId,
};
use minotaur_testkit::fixtures;
use minotaur_testkit::TestCluster;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::{NodeConnectionMode, NodeServerSessionInformation};
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, RactorClusterMessage};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

// ---------------------------------------------------------------- helpers

/// Generous handshake deadline (2 x failure timeout = 5 s) so the slow
/// tests below have room on a loaded machine.
fn patient(cfg: &mut NodeConfig) {
    cfg.failure_timeout = Duration::from_millis(2_500);
    cfg.heartbeat_interval = Duration::from_millis(200);
}

async fn two_nodes() -> (TestCluster, Game) {
    fixtures::count_panics();
    let cluster = TestCluster::builder()
        .nodes(2)
        .configure(|_, cfg| patient(cfg))
        .start()
        .await
        .expect("cluster starts");
    let game = cluster
        .engine("n1")
        .expect("engine")
        .create_game("HOST", vec!["ann".into(), "bob".into()])
        .await
        .expect("a game");
    (cluster, game)
}

/// The node keeps serving: the game answers from both nodes and the
/// membership is unchanged.
async fn still_serving(cluster: &TestCluster, game: &Game) {
    for name in ["n1", "n2"] {
        let engine = cluster.engine(name).expect("engine");
        let seen = engine
            .get_game(game.id)
            .await
            .expect("the game still answers");
        assert_eq!(seen.id, game.id);
        assert_eq!(
            cluster.members(name).expect("members"),
            vec!["n1".to_string(), "n2".to_string()],
            "{name}'s view"
        );
    }
}

/// Waits (bounded) until the node closes the connection: EOF or an error.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let deadline = tokio::time::Instant::now() + within;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(start.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return Err(format!("connection still open after {within:?}")),
        }
    }
}

async fn connect(cluster: &TestCluster, name: &str) -> TcpStream {
    let addr = cluster.node(name).expect("node").addr().to_string();
    TcpStream::connect(addr)
        .await
        .expect("the cluster port accepts")
}

fn rng_bytes(seed: u64, n: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    (0..n).map(|_| rng.random()).collect()
}

// ---------------------------------------------------------------- raw bytes

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_garbage_on_the_cluster_port_is_dropped() {
    let (cluster, game) = two_nodes().await;
    let before = fixtures::panics();
    for seed in 0..4 {
        let mut stream = connect(&cluster, "n1").await;
        // A peer may close on us while we write: that is the point.
        let _ = stream.write_all(&rng_bytes(seed, 4096)).await;
        closed_within(&mut stream, Duration::from_secs(10))
            .await
            .expect("the node drops a peer sending garbage");
    }
    still_serving(&cluster, &game).await;
    assert_eq!(fixtures::panics(), before);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_length_prefix_is_refused_at_once() {
    let (cluster, game) = two_nodes().await;
    for len in [u64::MAX, 1 << 40, 64 * 1024 * 1024] {
        let mut stream = connect(&cluster, "n1").await;
        let _ = stream.write_all(&len.to_be_bytes()).await;
        let _ = stream.write_all(&[0u8; 64]).await;
        closed_within(&mut stream, Duration::from_secs(10))
            .await
            .expect("an oversize frame closes the connection");
    }
    still_serving(&cluster, &game).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frames_are_dropped_whether_the_peer_hangs_up_or_waits() {
    let (cluster, game) = two_nodes().await;
    // Hangs up mid-frame.
    let mut stream = connect(&cluster, "n2").await;
    stream
        .write_all(&100u64.to_be_bytes())
        .await
        .expect("write");
    stream.write_all(&[7u8; 10]).await.expect("write");
    stream.shutdown().await.expect("half-close");
    closed_within(&mut stream, Duration::from_secs(10))
        .await
        .expect("a truncated frame then EOF closes the connection");
    // Stays silent mid-frame: only the handshake deadline ends it.
    let mut stream = connect(&cluster, "n2").await;
    stream
        .write_all(&100u64.to_be_bytes())
        .await
        .expect("write");
    stream.write_all(&[7u8; 10]).await.expect("write");
    closed_within(&mut stream, Duration::from_secs(15))
        .await
        .expect("a truncated frame left hanging is dropped at the handshake deadline");
    still_serving(&cluster, &game).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_peers_are_dropped_at_the_handshake_deadline() {
    let (cluster, game) = two_nodes().await;
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push((Instant::now(), connect(&cluster, "n1").await));
    }
    // While they sit there, the node serves as usual.
    still_serving(&cluster, &game).await;
    // At least 2 x the 2.5 s failure timeout (6 s: call_timeout + 1 s).
    let deadline = Duration::from_secs(5);
    for (connected, stream) in &mut idle {
        closed_within(stream, Duration::from_secs(20))
            .await
            .expect("a peer that never authenticates is dropped");
        let took = connected.elapsed();
        assert!(
            took >= deadline.saturating_sub(Duration::from_millis(500)),
            "dropped after {took:?}, before the {deadline:?} deadline: some other reason?"
        );
    }
    still_serving(&cluster, &game).await;
    cluster.shutdown().await;
}

// ---------------------------------------------------------------- bare peers

enum LinkEvent {
    Authenticated,
    Ready(Box<NodeServerSessionInformation>),
    Closed,
}

struct Forward(UnboundedSender<LinkEvent>);

impl NodeEventSubscription for Forward {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Authenticated);
    }
    fn node_session_ready(&self, ses: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Ready(Box::new(ses)));
    }
    fn node_session_disconnected(&self, _: NodeServerSessionInformation) {
        let _ = self.0.send(LinkEvent::Closed);
    }
}

/// A bare ractor_cluster server, not a Minotaur node.
struct Intruder {
    name: String,
    server: ActorRef<NodeServerMessage>,
    events: UnboundedReceiver<LinkEvent>,
}

impl Intruder {
    async fn start(cookie: &str) -> Intruder {
        // Named like a member, so that a node answers its requests.
        let name = MemberId::new(format!("intruder{:08x}", rand::random::<u32>()), 1).to_string();
        let server = NodeServer::new(
            0,
            cookie.to_string(),
            name.clone(),
            "127.0.0.1".into(),
            None,
            Some(NodeConnectionMode::Isolated),
        )
        .with_listen_addr([127, 0, 0, 1].into());
        let (server, _) = Actor::spawn(None, server, ()).await.expect("server");
        let (tx, events) = unbounded_channel();
        server
            .cast(NodeServerMessage::SubscribeToEvents {
                id: "hostile".into(),
                subscription: Box::new(Forward(tx)),
            })
            .expect("subscribe");
        Intruder {
            name,
            server,
            events,
        }
    }

    async fn next(&mut self, within: Duration) -> Option<LinkEvent> {
        tokio::time::timeout(within, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    fn stop(self) {
        fn kill(cell: &ractor::ActorCell) {
            for child in cell.get_children() {
                kill(&child);
            }
            cell.kill();
        }
        kill(&self.server.get_cell());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_the_wrong_cookie_is_refused_and_reaches_nothing() {
    let (cluster, game) = two_nodes().await;
    let mut intruder = Intruder::start("not-the-cluster-cookie-at-all").await;
    let addr = cluster.node("n1").expect("node").addr().to_string();
    ractor_cluster::client_connect(&intruder.server, addr)
        .await
        .expect("the TCP connection opens");
    let mut authenticated = false;
    let closed = loop {
        match intruder.next(Duration::from_secs(15)).await {
            Some(LinkEvent::Closed) => break true,
            Some(LinkEvent::Authenticated | LinkEvent::Ready(_)) => authenticated = true,
            None => break false,
        }
    };
    assert!(closed, "the node closes the link");
    assert!(!authenticated, "a wrong cookie never authenticates");
    // Nothing of the node is visible to it: no session, so no actor stub.
    let sessions =
        ractor::call_t!(intruder.server, NodeServerMessage::GetSessions, 2000).expect("sessions");
    assert!(
        sessions
            .values()
            .all(|s| s.actor.get_cell().get_children().is_empty()),
        "the intruder holds no stub of any remote actor"
    );
    still_serving(&cluster, &game).await;
    intruder.stop();
    cluster.shutdown().await;
}

/// Holds the node's handshake calls without answering, so the link stays up
/// until the handshake deadline: time for the payloads below. The notices
/// it gets are handed to the test.
struct SilentRouter;

impl Actor for SilentRouter {
    type Msg = RouterMsg;
    type State = UnboundedSender<Vec<u8>>;
    type Arguments = UnboundedSender<Vec<u8>>;

    async fn pre_start(
        &self,
        _: ActorRef<RouterMsg>,
        notices: UnboundedSender<Vec<u8>>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(notices)
    }

    async fn handle(
        &self,
        _: ActorRef<RouterMsg>,
        message: RouterMsg,
        notices: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let RouterMsg::Notice(bytes) = message;
        let _ = notices.send(bytes);
        Ok(())
    }
}

/// The intruder's side of a link into a node: the stub of the node's
/// router, and the notices the node sent back.
struct Inside {
    intruder: Intruder,
    router: ActorRef<RouterMsg>,
    silent: ractor::ActorCell,
    notices: UnboundedReceiver<Vec<u8>>,
    me: MemberId,
    next: u64,
}

impl Inside {
    /// Sends `request` as the intruder, and waits up to two seconds for
    /// the node's response.
    async fn request(&mut self, request: Request) -> Option<Response> {
        self.request_within(request, Duration::from_secs(2)).await
    }

    /// Sends `request` until the node answers, at most five seconds: the
    /// node answers only once it has taken the link up, which the
    /// intruder may see first.
    async fn first_request(&mut self, request: impl Fn() -> Request) -> Option<Response> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let answer = self
                .request_within(request(), Duration::from_millis(200))
                .await;
            if answer.is_some() {
                return answer;
            }
        }
        None
    }

    async fn request_within(&mut self, request: Request, within: Duration) -> Option<Response> {
        self.next += 1;
        let n = self.next;
        let bytes = protocol::seal(Notice::Data {
            from: self.me.clone(),
            requests: vec![(n, request)],
            responses: Vec::new(),
        })
        .expect("encode");
        self.router.cast(RouterMsg::Notice(bytes)).expect("cast");
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let bytes = tokio::time::timeout(left, self.notices.recv())
                .await
                .ok()??;
            if let Ok(Notice::Data { responses, .. }) = protocol::open::<Notice>(&bytes) {
                if let Some((_, response)) = responses.into_iter().find(|(m, _)| *m == n) {
                    return Some(response);
                }
            }
        }
    }

    fn stop(self) {
        self.silent.stop(None);
        self.intruder.stop();
    }
}

/// A message type the router does not know, sent as if it were one.
#[derive(RactorClusterMessage)]
enum Alien {
    Bogus(Vec<u8>),
    #[rpc]
    Notice(Vec<u8>, RpcReplyPort<Vec<u8>>),
    Request(Vec<u8>),
}

/// An authenticated bare peer and the stub of node `target`'s router.
async fn inside(cluster: &TestCluster, target: &str) -> Inside {
    let cookie = cluster.config_for("x").cookie;
    let mut intruder = Intruder::start(&cookie).await;
    let (tx, notices) = unbounded_channel();
    let (silent, _) = Actor::spawn(
        Some(format!("minotaur-router/{}", intruder.name)),
        SilentRouter,
        tx,
    )
    .await
    .expect("silent router");
    let node = cluster.node(target).expect("node");
    ractor_cluster::client_connect(&intruder.server, node.addr())
        .await
        .expect("connect");
    let info = loop {
        match intruder.next(Duration::from_secs(10)).await {
            Some(LinkEvent::Ready(info)) => break info,
            Some(_) => continue,
            None => panic!("the right cookie authenticates"),
        }
    };
    let wanted = format!("minotaur-router/{}", node.id());
    let mut stub = None;
    for _ in 0..200 {
        stub =
            info.actor.get_cell().get_children().into_iter().find(|c| {
                !c.get_id().is_local() && c.get_name().as_deref() == Some(wanted.as_str())
            });
        if stub.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let router = ActorRef::from(stub.expect("the node's router is advertised"));
    let me = intruder.name.parse().expect("named like a member");
    Inside {
        intruder,
        router,
        silent: silent.get_cell(),
        notices,
        me,
        // Far from the numbers of the fuzzed samples' requests, whose
        // responses come back here too.
        next: 1 << 40,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_in_an_authenticated_session_get_errors_and_change_nothing() {
    let (cluster, game) = two_nodes().await;
    let before = fixtures::panics();
    let owner = cluster.where_is(game.id).expect("hosted");
    let mut inside = inside(&cluster, &owner).await;
    let router = inside.router.clone();

    // A well-formed request works: this peer is authenticated.
    let get = || Request::Command {
        id: game.id,
        command: Command::GetGame,
    };
    match inside.first_request(get).await {
        Some(Response::Command(Ok(_))) => {}
        other => panic!("a valid request gets its answer: {other:?}"),
    }
    let ok = protocol::seal(Notice::Data {
        from: inside.me.clone(),
        requests: vec![(1_000, get())],
        responses: Vec::new(),
    })
    .expect("encode");

    // Garbage, truncations, a request with trailing bytes, and a message
    // that is no notice: each is dropped (logged), never answered.
    let mut bad: Vec<Vec<u8>> = vec![Vec::new(), vec![0xff; 3], rng_bytes(1, 300)];
    for cut in [1, 5, ok.len() / 2, ok.len() - 1] {
        bad.push(ok[..cut].to_vec());
    }
    let mut trailing = ok.clone();
    trailing.extend_from_slice(b"extra");
    bad.push(trailing);
    bad.push(protocol::seal(Response::NotHere).expect("encode"));
    let sent = bad.len();
    for bytes in bad {
        router.cast(RouterMsg::Notice(bytes)).expect("cast");
    }
    // Responses to requests this node never sent, or from a peer it never
    // asked, are dropped too.
    let stray = protocol::seal(Notice::Data {
        from: inside.me.clone(),
        requests: Vec::new(),
        responses: vec![
            (1, Response::NotHere),
            (u64::MAX, Response::Refused("x".into())),
        ],
    })
    .expect("encode");
    router.cast(RouterMsg::Notice(stray)).expect("cast");
    match inside.request(get()).await {
        Some(Response::Command(Ok(_))) => {}
        other => panic!("the link still serves: {other:?}"),
    }
    // Message variants the router does not know: dropped by ractor; a call
    // gets no answer, so the caller's timeout (or the dropped port) is its
    // error.
    let alien: ActorRef<Alien> = ActorRef::from(router.get_cell());
    alien.cast(Alien::Bogus(vec![1, 2, 3])).expect("cast");
    alien.cast(Alien::Request(ok.clone())).expect("cast");
    let unanswered = alien
        .call(
            |port| Alien::Notice(ok.clone(), port),
            Some(Duration::from_millis(500)),
        )
        .await
        .expect("the stub takes the call");
    // Either the caller's timeout or a dropped reply port: an error, never
    // an answer.
    assert!(
        matches!(unanswered, CallResult::Timeout | CallResult::SenderError),
        "an unknown call variant gets no answer: {unanswered:?}"
    );

    let target = cluster.node(&owner).expect("node").id().to_string();
    cluster
        .eventually(
            "the node to log the undecodable notices",
            Duration::from_secs(5),
            || {
                let lines = minotaur_testkit::logs::lines(&target);
                async move {
                    let n = lines
                        .iter()
                        .filter(|l| l.contains("undecodable notice"))
                        .count();
                    if n >= sent {
                        Ok(())
                    } else {
                        Err(format!("{n} logged"))
                    }
                }
            },
        )
        .await
        .expect("logged");
    let after = cluster
        .engine("n2")
        .expect("engine")
        .get_game(game.id)
        .await
        .expect("still there");
    assert_eq!(after.version, game.version, "nothing changed the game");
    still_serving(&cluster, &game).await;
    assert_eq!(fixtures::panics(), before, "no panic");
    inside.stop();
    cluster.shutdown().await;
}

/// A backup keeps copies only from members it knows are live: a copy from
/// a peer whose handshake has not finished would be orphaned if that peer
/// died, since its link closing is no member going down here.
/// Casts a control message to `stub` as coming from `from`.
fn control(stub: &ActorRef<RouterMsg>, from: &MemberId, msg: Msg) {
    let bytes = protocol::seal(Notice::Control {
        from: from.clone(),
        msg,
    })
    .expect("encode");
    stub.cast(RouterMsg::Notice(bytes)).expect("cast");
}

/// A linked peer that never said hello is no member: the copies it sends
/// are not kept, and a start it asks for does not touch the running game.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_peer_that_is_no_member_changes_nothing() {
    let (cluster, game) = two_nodes().await;
    let owner = cluster.where_is(game.id).expect("hosted");
    let node = cluster.node(&owner).expect("node");
    let held = node.replicas_held();
    // The silent router never answers the node's Hello: the peer is linked
    // and authenticated, but never becomes a member.
    let inside = inside(&cluster, &owner).await;
    let (router, me) = (inside.router.clone(), inside.me.clone());
    let current = cluster
        .engine(&owner)
        .expect("engine")
        .get_game(game.id)
        .await
        .expect("game");
    let snapshot = |game: &Game| Snapshot {
        id: game.id,
        version: game.version + 10,
        join_code: game.join_code.clone(),
        users: vec!["ann".into(), "bob".into()],
        active: true,
        state: codec::encode(game).expect("encode"),
        changes: Vec::new(),
    };
    let mut copy = current.clone();
    copy.id = GameId::random();
    control(
        &router,
        &me,
        Msg::Copy {
            corr: 1,
            gen: 1,
            copies: vec![
                (1, Update::Whole(snapshot(&copy))),
                (
                    1,
                    Update::Delta(Delta {
                        id: current.id,
                        version: current.version + 1,
                        active: true,
                        change: b"not a change".to_vec(),
                    }),
                ),
            ],
        },
    );
    control(
        &router,
        &me,
        Msg::Start {
            corr: 2,
            snapshot: snapshot(&current),
            epoch: 99,
            stale: Vec::new(),
            claim: false,
            passive: false,
        },
    );
    control(
        &router,
        &me,
        Msg::Registered {
            corr: None,
            regs: Vec::new(),
        },
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(node.replicas_held(), held, "no copy kept");
    let ended = cluster
        .engine("n1")
        .expect("engine")
        .end_round(game.id)
        .await
        .expect("the running session still takes writes");
    assert_eq!(ended.round, current.round + 1);
    assert_eq!(cluster.where_is_all(game.id), vec![owner.clone()]);
    still_serving(&cluster, &game).await;
    inside.stop();
    cluster.shutdown().await;
}

/// Valid wire values whose encodings the fuzzers below corrupt.
fn samples(game: GameId, from: &MemberId) -> Vec<Vec<u8>> {
    let member = MemberId::new("n9", 9);
    let reg = Registration {
        id: game,
        join_code: "ABCD".parse().expect("code"),
        users: vec!["ann".into()],
        owner: member.clone(),
        epoch: 1,
        version: 3,
    };
    let snapshot = codec::encode(
        &Game::new(
            game,
            "ABCD".parse().expect("code"),
            vec!["ann".into(), "bob".into()],
            GameConfig::default(),
            0,
        )
        .expect("game"),
    )
    .expect("encode");
    let reg2 = reg.clone();
    let ack = Ack {
        id: game,
        version: 4,
        round: 2,
        round_ends_at_ms: 99,
        status: GameStatus::Active,
    };
    let requests = vec![
        Request::Command {
            id: game,
            command: Command::RegisterMove {
                user: "ann".into(),
                vector: Hex::new(1, 0),
            },
        },
        Request::Write {
            id: game,
            op: 42,
            command: Command::EndRound,
            answer: Answer::Game,
        },
    ];
    let notices = vec![
        Notice::Control {
            from: member.clone(),
            msg: Msg::Ping,
        },
        Notice::Control {
            from: member.clone(),
            msg: Msg::Sync {
                sync: 1,
                regs: vec![reg.clone()],
                last: true,
            },
        },
        Notice::Control {
            from: member.clone(),
            msg: Msg::Hello(minotaur_cluster::control::wire::Hello {
                from: member.clone(),
                addr: "127.0.0.1:1".into(),
                min_protocol: 2,
                max_protocol: 2,
                leaving: false,
            }),
        },
        Notice::Control {
            from: member.clone(),
            msg: Msg::Copy {
                corr: 7,
                gen: 1,
                copies: vec![(
                    1,
                    Update::Whole(Snapshot {
                        id: game,
                        version: 3,
                        join_code: "ABCD".parse().expect("code"),
                        users: vec!["ann".into()],
                        active: true,
                        state: snapshot.clone(),
                        changes: vec![b"not a change".to_vec()],
                    }),
                )],
            },
        },
        Notice::Control {
            from: member.clone(),
            msg: Msg::Registered {
                corr: Some(3),
                regs: vec![reg2],
            },
        },
    ];
    let data = Notice::Data {
        from: from.clone(),
        requests: requests
            .iter()
            .cloned()
            .enumerate()
            .map(|(n, r)| (n as u64, r))
            .collect(),
        responses: vec![
            (1, Response::NotHere),
            (2, Response::Command(Ok(Reply::Ack(ack)))),
        ],
    };
    let mut out: Vec<Vec<u8>> = requests
        .into_iter()
        .map(|r| protocol::seal(r).expect("encode"))
        .collect();
    out.push(protocol::seal(data).expect("encode"));
    out.extend(
        notices
            .into_iter()
            .map(|n| protocol::seal(n).expect("encode")),
    );
    out.push(protocol::seal(Response::Moved(member)).expect("encode"));
    out
}

/// Arbitrary bytes, or a valid encoding with a few bytes changed and
/// possibly cut short.
fn payloads(samples: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        (
            proptest::sample::select(samples),
            proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            any::<prop::sample::Index>(),
            any::<bool>(),
        )
            .prop_map(|(mut bytes, edits, cut, truncate)| {
                for (i, b) in edits {
                    let at = i.index(bytes.len());
                    bytes[at] = b;
                }
                if truncate {
                    bytes.truncate(cut.index(bytes.len()));
                }
                bytes
            }),
    ]
}

/// The router's handling of arbitrary bytes, through a live node: every
/// request gets an answer that decodes (usually `Refused`), notices are
/// dropped or applied, nothing panics, and the node keeps serving. The
/// game's id is never in the samples, so it cannot be touched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_router_messages_never_panic_a_live_node() {
    let (cluster, game) = two_nodes().await;
    let before = fixtures::panics();
    let mut inside = inside(&cluster, "n1").await;
    let strategy = payloads(samples(GameId::random(), &inside.me));
    let mut runner = TestRunner::deterministic();
    for _ in 0..200 {
        let bytes = strategy.new_tree(&mut runner).expect("a value").current();
        inside.router.cast(RouterMsg::Notice(bytes)).expect("cast");
    }
    // Every response the node sent back decodes.
    while let Ok(bytes) = inside.notices.try_recv() {
        assert!(
            protocol::open::<Notice>(&bytes).is_ok(),
            "every notice the node sends decodes"
        );
    }
    // The link still serves.
    let probe = Request::Command {
        id: game.id,
        command: Command::GetGame,
    };
    // (The game may live on the other node: then it says where.)
    match inside.first_request(|| probe.clone()).await {
        Some(Response::Command(Ok(_)) | Response::Moved(_)) => {}
        other => panic!("the link still serves: {other:?}"),
    }
    let after = cluster
        .engine("n2")
        .expect("engine")
        .get_game(game.id)
        .await
        .expect("still there");
    assert_eq!(
        after,
        cluster
            .engine("n1")
            .expect("engine")
            .get_game(game.id)
            .await
            .expect("n1")
    );
    assert_eq!(after.version, game.version);
    still_serving(&cluster, &game).await;
    assert_eq!(fixtures::panics(), before, "no panic");
    inside.stop();
    cluster.shutdown().await;
}

// ---------------------------------------------------------------- engine misuse

fn rule(e: GameError) -> EngineError {
    EngineError::Rule(e)
}

/// Engine misuse through n1 against games hosted on n2: each a typed error,
/// the game unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_misuse_routed_to_a_remote_node_gets_typed_errors_and_changes_nothing() {
    fixtures::count_panics();
    // One hit takes a character out, at any range, so "dead" is easy to reach.
    let cluster = TestCluster::builder()
        .nodes(2)
        .configure(|_, cfg| {
            cfg.game = GameConfig {
                starting_health: 4,
                attack_range: 20,
                ..GameConfig::default()
            }
        })
        .start()
        .await
        .expect("cluster");
    let n1 = cluster.engine("n1").expect("engine");
    // Games hosted on n2, so every command from n1 crosses the link.
    let mut remote: Vec<Game> = Vec::new();
    for i in 0..60 {
        let g = n1
            .create_game(
                &format!("MIS{i:03}"),
                vec!["ann".into(), "bob".into(), "cid".into()],
            )
            .await
            .expect("create");
        if cluster.where_is(g.id).as_deref() == Some("n2") {
            remote.push(g);
        }
        if remote.len() == 2 {
            break;
        }
    }
    assert_eq!(remote.len(), 2, "two games on n2");
    let game = remote[0].clone();
    let id = game.id;
    let (ann, bob, cid, zed): (UserId, UserId, UserId, UserId) =
        ("ann".into(), "bob".into(), "cid".into(), "zed".into());

    async fn unchanged(engine: &GameEngine, before: &Game) {
        let now = engine.get_game(before.id).await.expect("read");
        assert_eq!(&now, before, "a refused command changed the game");
    }

    // Unknown game and join code.
    let ghost = GameId::random();
    assert_eq!(
        n1.get_game(ghost).await,
        Err(EngineError::GameNotAlive(ghost))
    );
    assert_eq!(
        n1.register_move(ghost, ann.clone(), Hex::new(1, 0)).await,
        Err(EngineError::GameNotAlive(ghost))
    );
    assert!(matches!(
        n1.get_game_by_join_code("NOPE").await,
        Err(EngineError::UnknownJoinCode(_))
    ));
    assert!(matches!(
        n1.get_game_by_join_code("no spaces!").await,
        Err(EngineError::Rule(GameError::InvalidJoinCode(_)))
    ));

    // A user not in the game.
    assert_eq!(
        n1.register_move(id, zed.clone(), Hex::new(1, 0)).await,
        Err(rule(GameError::PlayerNotFound(zed.clone())))
    );
    assert_eq!(
        n1.register_attack(id, zed.clone(), ann.clone()).await,
        Err(rule(GameError::PlayerNotFound(zed.clone())))
    );
    assert_eq!(
        n1.get_player_status(id, zed.clone()).await,
        Err(rule(GameError::PlayerNotFound(zed.clone())))
    );
    unchanged(&n1, &game).await;

    // Moves: zero, too far, off the grid, into a wall.
    let start = game.player(&ann).expect("ann").position;
    assert_eq!(
        n1.register_move(id, ann.clone(), Hex::new(0, 0)).await,
        Err(rule(GameError::InvalidMove(MoveError::ZeroVector)))
    );
    assert!(matches!(
        n1.register_move(id, ann.clone(), Hex::new(3, 0)).await,
        Err(EngineError::Rule(GameError::InvalidMove(
            MoveError::TooFar { .. }
        )))
    ));
    assert!(matches!(
        n1.register_move(id, ann.clone(), Hex::new(i32::MAX, i32::MIN))
            .await,
        Err(EngineError::Rule(GameError::InvalidMove(
            MoveError::TooFar { .. }
        )))
    ));
    let outwards = Hex::DIRECTIONS
        .into_iter()
        .find(|d| !game.world.on_grid(start + *d))
        .expect("ann starts on the rim");
    assert_eq!(
        n1.register_move(id, ann.clone(), outwards).await,
        Err(rule(GameError::InvalidMove(MoveError::OffGrid(
            start + outwards
        ))))
    );
    for p in &game.players {
        let near_wall = game
            .world
            .walls
            .iter()
            .find(|w| p.position.distance(**w) <= 2);
        if let Some(wall) = near_wall {
            let vector = Hex::new(wall.q - p.position.q, wall.r - p.position.r);
            assert_eq!(
                n1.register_move(id, p.user.clone(), vector).await,
                Err(rule(GameError::InvalidMove(MoveError::Blocked(*wall))))
            );
        }
    }
    unchanged(&n1, &game).await;

    // Attacks: absent target, self, then a dead target and a dead attacker.
    assert_eq!(
        n1.register_attack(id, ann.clone(), zed.clone()).await,
        Err(rule(GameError::TargetNotFound(zed.clone())))
    );
    assert_eq!(
        n1.register_attack(id, ann.clone(), ann.clone()).await,
        Err(rule(GameError::SelfAttack))
    );
    unchanged(&n1, &game).await;
    n1.register_attack(id, ann.clone(), cid.clone())
        .await
        .expect("a fair attack");
    // The whole game after the round, to read ann's and cid's state.
    let after_round = n1
        .apply_once_and_get(id, 1, Command::EndRound)
        .await
        .expect("round ends");
    assert!(
        !after_round.player(&cid).expect("cid").alive(),
        "cid is out"
    );
    assert_eq!(
        n1.register_attack(id, ann.clone(), cid.clone()).await,
        Err(rule(GameError::TargetNotAlive(cid.clone())))
    );
    assert_eq!(
        n1.register_move(id, cid.clone(), Hex::new(1, 0)).await,
        Err(rule(GameError::PlayerOut(cid.clone())))
    );
    // Not enough action points: an attack costs 2, ann has 2 (+2, capped).
    let points = after_round.player(&ann).expect("ann").action_points;
    for _ in 0..points / 2 {
        n1.register_attack(id, ann.clone(), bob.clone())
            .await
            .expect("affordable");
    }
    let spent = n1.get_game(id).await.expect("read");
    assert!(matches!(
        n1.register_attack(id, ann.clone(), bob.clone()).await,
        Err(EngineError::Rule(GameError::NotEnoughActionPoints { .. }))
    ));
    unchanged(&n1, &spent).await;

    // Actions after conclusion: bob goes down, ann wins, the session stops.
    let concluded = n1.end_round(id).await.expect("round ends");
    assert!(
        matches!(concluded.status, GameStatus::Concluded { .. }),
        "the game concluded: {:?}",
        concluded.status
    );
    for attempt in [
        n1.register_move(id, ann.clone(), Hex::new(1, 0)).await,
        n1.register_attack(id, ann.clone(), bob.clone()).await,
        n1.end_round(id).await,
    ] {
        assert!(
            matches!(
                attempt,
                Err(EngineError::GameNotAlive(_))
                    | Err(EngineError::Rule(GameError::GameConcluded))
            ),
            "after conclusion: {attempt:?}"
        );
    }

    // Duplicate join codes, from either node, in any case.
    let other = &remote[1];
    let code = other.join_code.to_string();
    for engine in [&n1, &cluster.engine("n2").expect("engine")] {
        for variant in [code.clone(), code.to_lowercase()] {
            assert!(matches!(
                engine
                    .create_game(&variant, vec![ann.clone(), bob.clone()])
                    .await,
                Err(EngineError::JoinCodeTaken(_))
            ));
        }
    }

    // Bad user lists: too many (up to absurd), too few, duplicates, bad names.
    for n in [7, 1_000, 100_000] {
        let users: Vec<UserId> = (0..n).map(|i| format!("u{i}").into()).collect();
        assert!(matches!(
            n1.create_game("BIGLIST", users).await,
            Err(EngineError::Rule(GameError::PlayerCount { .. }))
        ));
    }
    assert!(matches!(
        n1.create_game("ONE1", vec![ann.clone()]).await,
        Err(EngineError::Rule(GameError::PlayerCount { .. }))
    ));
    assert_eq!(
        n1.create_game("DUP1", vec![ann.clone(), ann.clone()]).await,
        Err(rule(GameError::DuplicateUser(ann.clone())))
    );
    for name in [String::new(), "x".repeat(65)] {
        assert!(matches!(
            n1.create_game("BADU", vec![ann.clone(), name.into()]).await,
            Err(EngineError::Rule(GameError::InvalidUser(..)))
        ));
    }
    let taken_before = cluster.node("n1").expect("node").registry().len();
    assert_eq!(
        cluster.node("n2").expect("node").registry().len(),
        taken_before,
        "no refused creation registered anything"
    );
    unchanged(&n1, other).await;
    unchanged(&cluster.engine("n2").expect("engine"), other).await;
    assert_eq!(fixtures::panics(), 0, "no panic");
    cluster.shutdown().await;
}

// ---------------------------------------------------------------- decode fuzz

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every wire type of the cluster protocol decodes arbitrary bytes to an
    /// error or a value, never a panic.
    #[test]
    fn cluster_wire_types_decode_arbitrary_bytes_without_panicking(
        bytes in proptest::collection::vec(any::<u8>(), 0..600)
    ) {
        let _ = protocol::open::<Request>(&bytes);
        let _ = protocol::open::<Response>(&bytes);
        let _ = protocol::open::<Notice>(&bytes);
        let _ = codec::decode::<Envelope<Request>>(&bytes);
        let _ = codec::decode::<Msg>(&bytes);
        let _ = codec::decode::<Registration>(&bytes);
        let _ = codec::decode::<MemberId>(&bytes);
    }

    /// Corrupted and truncated encodings of valid messages: errors or
    /// values, never panics; an untouched encoding round-trips.
    #[test]
    fn corrupted_cluster_messages_decode_without_panicking(
        bytes in payloads(samples(GameId(uuid::Uuid::from_u128(42)), &MemberId::new("n8", 8)))
    ) {
        let _ = protocol::open::<Request>(&bytes);
        let _ = protocol::open::<Response>(&bytes);
        let _ = protocol::open::<Notice>(&bytes);
    }
}

#[test]
fn valid_cluster_messages_round_trip() {
    let samples = samples(GameId(uuid::Uuid::from_u128(7)), &MemberId::new("n8", 8));
    let decoded = samples
        .iter()
        .filter(|b| {
            protocol::open::<Request>(b).is_ok()
                || protocol::open::<Notice>(b).is_ok()
                || protocol::open::<Response>(b).is_ok()
        })
        .count();
    assert_eq!(decoded, samples.len());
}

//! The floors: the same operations done with bare ractor and ractor_cluster,
//! no Minotaur code involved. Two `NodeServer`s on loopback TCP with one
//! remotable actor (a remote `call` and `cast` of a given payload size), a
//! local actor holding a game and answering a `call` with its ack, actor
//! spawns, and a mesh of bare `NodeServer`s.

use futures::StreamExt;
use minotaur_core::{Ack, Game, GameConfig, GameId, Hex};
use minotaur_testkit::wait::eventually;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::node::NodeServerSessionInformation;
use ractor_cluster::{NodeEventSubscription, NodeServer, NodeServerMessage, RactorClusterMessage};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The remotable actor of the bare pair.
pub struct Echo;

/// Its messages: a call answered with a fixed-size reply, a counted cast.
#[derive(RactorClusterMessage)]
pub enum EchoMsg {
    /// Answered with the actor's reply bytes.
    #[rpc]
    Call(Vec<u8>, RpcReplyPort<Vec<u8>>),
    /// Counted.
    Cast(Vec<u8>),
    /// How many casts arrived so far.
    #[rpc]
    Count(RpcReplyPort<u64>),
}

/// The echo actor's state.
pub struct EchoState {
    reply: Vec<u8>,
    casts: u64,
}

impl Actor for Echo {
    type Msg = EchoMsg;
    type State = EchoState;
    type Arguments = usize;

    async fn pre_start(
        &self,
        _myself: ActorRef<EchoMsg>,
        reply_size: usize,
    ) -> Result<EchoState, ActorProcessingErr> {
        Ok(EchoState {
            reply: vec![7u8; reply_size],
            casts: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<EchoMsg>,
        message: EchoMsg,
        state: &mut EchoState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            EchoMsg::Call(_request, reply) => {
                let _ = reply.send(state.reply.clone());
            }
            EchoMsg::Cast(_payload) => state.casts += 1,
            EchoMsg::Count(reply) => {
                let _ = reply.send(state.casts);
            }
        }
        Ok(())
    }
}

fn random_tag() -> u64 {
    rand::random()
}

/// A port the OS says is free now (NodeServer does not report the port it
/// bound, so pick one first).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn start_server(name: &str, cookie: &str) -> (ActorRef<NodeServerMessage>, u16) {
    let port = free_port();
    let server = NodeServer::new(
        port,
        cookie.to_string(),
        name.to_string(),
        "127.0.0.1".into(),
        None,
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr("127.0.0.1".parse().expect("ip"));
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .expect("NodeServer starts");
    (server, port)
}

/// Connects `from` to `port`, retrying while the listener is still coming up.
async fn connect(from: &ActorRef<NodeServerMessage>, port: u16) {
    let addr = format!("127.0.0.1:{port}");
    eventually("a bare client_connect", WAIT, || {
        let addr = addr.clone();
        let from = from.clone();
        async move {
            ractor_cluster::client_connect(&from, addr)
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
    .expect("bare NodeServers connect");
}

/// The stub of the actor named `name` made by one of `server`'s sessions.
async fn find_stub(server: &ActorRef<NodeServerMessage>, name: &str) -> ActorRef<EchoMsg> {
    let cell = eventually("the bare echo actor's stub", WAIT, || {
        let server = server.clone();
        async move {
            let sessions = ractor::call_t!(server, NodeServerMessage::GetSessions, 1_000)
                .map_err(|e| e.to_string())?;
            sessions
                .values()
                .flat_map(|s| s.actor.get_cell().get_children())
                .find(|c| !c.get_id().is_local() && c.get_name().as_deref() == Some(name))
                .ok_or_else(|| format!("{} sessions, no stub yet", sessions.len()))
        }
    })
    .await
    .expect("the stub appears");
    ActorRef::from(cell)
}

/// Two NodeServers on loopback TCP; `stub` (on A) reaches `actor` (on B).
pub struct BarePair {
    a: ActorRef<NodeServerMessage>,
    b: ActorRef<NodeServerMessage>,
    actor: ActorRef<EchoMsg>,
    stub: ActorRef<EchoMsg>,
    request: Vec<u8>,
}

impl BarePair {
    /// Starts the pair; calls carry `request_size` bytes and are answered
    /// with `reply_size` bytes.
    pub async fn start(request_size: usize, reply_size: usize) -> BarePair {
        let tag = random_tag();
        let cookie = format!("bare-{tag:016x}");
        let (a, _) = start_server(&format!("bare-a-{tag:016x}"), &cookie).await;
        let (b, port_b) = start_server(&format!("bare-b-{tag:016x}"), &cookie).await;
        let name = format!("bare-echo-{tag:016x}");
        let (actor, _) = Actor::spawn(Some(name.clone()), Echo, reply_size)
            .await
            .expect("echo starts");
        connect(&a, port_b).await;
        let stub = find_stub(&a, &name).await;
        BarePair {
            a,
            b,
            actor,
            stub,
            request: vec![1u8; request_size],
        }
    }

    /// One remote call round trip.
    pub async fn call(&self) -> Duration {
        let request = self.request.clone();
        let start = Instant::now();
        match self
            .stub
            .call(|port| EchoMsg::Call(request, port), Some(CALL_TIMEOUT))
            .await
        {
            Ok(CallResult::Success(_)) => start.elapsed(),
            other => panic!(
                "bare remote call failed: {:?}",
                other.map(|r| matches!(r, CallResult::Timeout))
            ),
        }
    }

    /// Casts `n` messages of the request size from A to B and returns the
    /// rate at which B received them (messages per second).
    pub async fn cast_throughput(&self, n: u64) -> f64 {
        let before = self.count().await;
        let start = Instant::now();
        for _ in 0..n {
            self.stub
                .cast(EchoMsg::Cast(self.request.clone()))
                .expect("cast");
        }
        loop {
            let seen = self.count().await;
            if seen >= before + n {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "casts lost: {seen} of {n}"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        n as f64 / start.elapsed().as_secs_f64()
    }

    async fn count(&self) -> u64 {
        match self
            .stub
            .call(EchoMsg::Count, Some(Duration::from_secs(30)))
            .await
        {
            Ok(CallResult::Success(n)) => n,
            _ => panic!("bare count call failed"),
        }
    }

    /// Stops both servers (and their sessions) and the actor.
    pub async fn stop(self) {
        for server in [&self.a, &self.b] {
            for child in server.get_children() {
                child.kill();
            }
            server.kill();
        }
        self.actor.stop(None);
        let _ = self.actor.get_cell().wait(Some(WAIT)).await;
    }
}

/// The game a bare actor holds: the same value a Minotaur session holds.
pub fn sample_game(index: u64) -> Game {
    let code = format!("B{index:07}");
    Game::new(
        GameId::random(),
        code.parse().expect("code"),
        vec!["ann".into(), "bob".into()],
        GameConfig::default(),
        minotaur_core::clock::now_ms(),
    )
    .expect("a valid game")
}

/// A local actor owning a game, as a game actor written by hand with bare
/// ractor would: a call applies a move to the game in place (the rules
/// leave it unchanged when they refuse one) and answers its [`Ack`], as a
/// session answers a write. (The timer slot is used only by
/// [`HolderMsg::Rearm`].)
pub struct Holder;

type Timer = ractor::concurrency::JoinHandle<Result<(), ractor::MessagingErr<HolderMsg>>>;

/// The holder's messages.
pub enum HolderMsg {
    /// Apply Ann's next move (a step off her start, or back) and reply
    /// with the game's ack; out of action points, end the round first.
    Get(RpcReplyPort<Ack>),
    /// Like a session ending a round: copy the game, reply with its ack,
    /// and re-arm a 30 s timer (abort the old one, `send_after` a new one).
    Rearm(RpcReplyPort<Ack>),
    /// The timer fired (never, within a benchmark).
    Tick,
}

impl ractor::Message for HolderMsg {}

impl Actor for Holder {
    type Msg = HolderMsg;
    type State = (Game, Option<Timer>, Option<Hex>);
    type Arguments = Game;

    async fn pre_start(
        &self,
        _myself: ActorRef<HolderMsg>,
        game: Game,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok((game, None, None))
    }

    async fn handle(
        &self,
        myself: ActorRef<HolderMsg>,
        message: HolderMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let game = &mut state.0;
        match message {
            HolderMsg::Get(reply) => {
                let ann = game.players[0].user.clone();
                // Out and back: the step back undoes the step out.
                let vector = match state.2.take() {
                    Some(out) => Hex::new(-out.q, -out.r),
                    None => {
                        let at = game.players[0].position;
                        let out = Hex::DIRECTIONS
                            .into_iter()
                            .find(|d| game.world.walkable(at + *d))
                            .unwrap_or(Hex::DIRECTIONS[0]);
                        state.2 = Some(out);
                        out
                    }
                };
                if game.register_move(&ann, vector).is_err() {
                    let _ = game.end_round(minotaur_core::clock::now_ms());
                    let _ = game.register_move(&ann, vector);
                }
                let _ = reply.send(Ack::of(game));
            }
            HolderMsg::Rearm(reply) => {
                let next = game.clone();
                *game = next;
                let _ = reply.send(Ack::of(game));
                if let Some(old) = state.1.take() {
                    old.abort();
                }
                let timer = myself.send_after(Duration::from_secs(30), || HolderMsg::Tick);
                state.1 = Some(timer);
            }
            HolderMsg::Tick => {}
        }
        Ok(())
    }
}

/// A bare local actor holding `game`.
pub async fn spawn_holder(game: Game) -> ActorRef<HolderMsg> {
    Actor::spawn(None, Holder, game)
        .await
        .expect("holder starts")
        .0
}

/// One local call round trip to a holder.
pub async fn local_call(holder: &ActorRef<HolderMsg>) -> Duration {
    local_call_with(holder, HolderMsg::Get).await
}
pub async fn local_call_with(
    holder: &ActorRef<HolderMsg>,
    f: fn(RpcReplyPort<Ack>) -> HolderMsg,
) -> Duration {
    let start = Instant::now();
    match holder.call(f, Some(CALL_TIMEOUT)).await {
        Ok(CallResult::Success(_)) => start.elapsed(),
        _ => panic!("bare local call failed"),
    }
}

/// Spawns `n` holders of `game` with `parallel` spawns in flight; returns
/// them and the spawn rate (actors per second).
pub async fn spawn_many(n: usize, parallel: usize, game: &Game) -> (Vec<ActorRef<HolderMsg>>, f64) {
    let start = Instant::now();
    let actors: Vec<ActorRef<HolderMsg>> = futures::stream::iter(0..n)
        .map(|_| spawn_holder(game.clone()))
        .buffer_unordered(parallel)
        .collect()
        .await;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (actors, rate)
}

/// Stops actors and waits for them.
pub async fn stop_all(actors: Vec<ActorRef<HolderMsg>>) {
    for a in &actors {
        a.stop(None);
    }
    for a in actors {
        let _ = a.get_cell().wait(Some(WAIT)).await;
    }
}

struct CountReady(Arc<AtomicUsize>);

impl NodeEventSubscription for CountReady {
    fn node_session_opened(&self, _: NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _: NodeServerSessionInformation) {}
    fn node_session_disconnected(&self, _: NodeServerSessionInformation) {}
    fn node_session_ready(&self, _: NodeServerSessionInformation) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Time to start one bare NodeServer.
pub async fn start_one_server() -> Duration {
    let tag = random_tag();
    let start = Instant::now();
    let (server, _) = start_server(&format!("bare-one-{tag:016x}"), "bare-one").await;
    let took = start.elapsed();
    server.kill();
    let _ = server.get_cell().wait(Some(WAIT)).await;
    took
}

/// Time to start `n` bare NodeServers and link every pair until each
/// session is ready on both ends.
pub async fn start_mesh(n: usize) -> Duration {
    let tag = random_tag();
    let cookie = format!("bare-mesh-{tag:016x}");
    let ready = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut servers = Vec::new();
    for i in 0..n {
        let (server, port) = start_server(&format!("bare-m{i}-{tag:016x}"), &cookie).await;
        let _ = server.cast(NodeServerMessage::SubscribeToEvents {
            id: "bench-mesh".into(),
            subscription: Box::new(CountReady(ready.clone())),
        });
        servers.push((server, port));
    }
    for i in 0..n {
        for j in (i + 1)..n {
            connect(&servers[i].0, servers[j].1).await;
        }
    }
    let links = n * (n - 1); // each link is ready on both of its ends
    crate::common::poll("the bare mesh to be ready", WAIT, || {
        let done = ready.load(Ordering::SeqCst) >= links;
        async move { done.then_some(()) }
    })
    .await;
    let took = start.elapsed();
    for (server, _) in &servers {
        for child in server.get_children() {
            child.kill();
        }
        server.kill();
    }
    for (server, _) in servers {
        let _ = server.get_cell().wait(Some(WAIT)).await;
    }
    took
}

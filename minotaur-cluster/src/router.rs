//! The router: the node's one remotable actor. Peers' control messages go
//! to the driver; commands (the data plane) go straight to the game's
//! session, which answers the peer itself (through the node's
//! [`Exchange`](crate::exchange::Exchange)), so a slow session never blocks
//! the router and a command never waits on the driver.

use crate::control::Input;
use crate::driver::ToDriver;
use crate::membership::MemberId;
use crate::plane::Plane;
use crate::protocol::{self, Notice, Request, Response, RouterMsg};
use minotaur_core::local::{call_session, call_session_write};
use minotaur_core::{Answer, Command, EngineError, GameId, OpId, Replier, Reply, SessionMsg};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The router actor.
pub(crate) struct Router;

impl Actor for Router {
    type Msg = RouterMsg;
    type State = Arc<Plane>;
    type Arguments = Arc<Plane>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RouterMsg>,
        plane: Arc<Plane>,
    ) -> Result<Arc<Plane>, ActorProcessingErr> {
        Ok(plane)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        message: RouterMsg,
        plane: &mut Arc<Plane>,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Notice(bytes) => match protocol::open::<Notice>(&bytes) {
                Ok(Notice::Control { from, msg }) => {
                    let _ = plane.driver.send(ToDriver::Control { from, msg });
                }
                Ok(Notice::Batch { from, msgs }) => {
                    let _ = plane.driver.send(ToDriver::Controls { from, msgs });
                }
                Ok(Notice::Data {
                    from,
                    requests,
                    responses,
                }) => {
                    if !responses.is_empty() {
                        plane.exchange.answered(&from, responses);
                    }
                    for (n, request) in requests {
                        let reply = Respond {
                            to: from.clone(),
                            n,
                        };
                        deliver(plane, request, reply);
                    }
                }
                Err(e) => {
                    tracing::warn!(parent: &plane.span, error = %e, "dropping an undecodable notice")
                }
            },
        }
        Ok(())
    }
}

/// Where a peer's request is answered: its sender, and the number its
/// response repeats.
struct Respond {
    to: MemberId,
    n: u64,
}

impl Respond {
    fn send(self, plane: &Plane, response: Response) {
        plane.exchange.respond(&self.to, self.n, response);
    }
}

/// Hands a peer's command to its game's session. A session running here
/// answers the peer itself, through an [`Answering`]; otherwise a task
/// waits for a session starting here, or tells where the game went.
fn deliver(plane: &Arc<Plane>, request: Request, reply: Respond) {
    let (id, command, op, asks) = match request {
        Request::Command { id, command } => (id, command, None, Answer::Ack),
        Request::Write {
            id,
            op,
            command,
            answer,
        } => (id, command, Some(op), answer),
    };
    if let Some(session) = plane.local.sessions().session(id) {
        let answering = Answering {
            reply: Some(reply),
            plane: plane.clone(),
            id,
        };
        let replier = Replier::Callback(Box::new(move |result| answering.result(result)));
        let message = match op {
            Some(op) => SessionMsg::Write(op, command, asks, replier),
            None => SessionMsg::Command(command, replier),
        };
        // Refused by a session that stopped meanwhile: the message is
        // dropped, and its `Answering` answers from the registry.
        let _ = session.cast(message);
        return;
    }
    let plane = plane.clone();
    plane.tasks.clone().spawn(async move {
        let route = command_here(&plane, id, command, op, asks).await;
        reply.send(&plane, route.into_response(&plane, id));
    });
}

/// A peer's command on its way through a session: answers the peer with
/// the session's result, or, if the session went away without one (it was
/// released or ended), with where the game is now.
struct Answering {
    reply: Option<Respond>,
    plane: Arc<Plane>,
    id: GameId,
}

impl Answering {
    fn result(mut self, result: Result<Reply, EngineError>) {
        let route = match result {
            Err(EngineError::GameNotAlive(_)) => gone_from_here(&self.plane, self.id),
            other => Route::Done(other),
        };
        if let Some(reply) = self.reply.take() {
            reply.send(&self.plane, route.into_response(&self.plane, self.id));
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            let route = gone_from_here(&self.plane, self.id);
            reply.send(&self.plane, route.into_response(&self.plane, self.id));
        }
    }
}

/// How long a command waits for the session of a game registered here
/// that is not running yet: well within any caller's timeout, so a caller
/// on another node hears back and may look again.
const STARTING_WAIT: Duration = Duration::from_millis(100);

/// What to do next with a command.
pub(crate) enum Route {
    Done(Result<Reply, EngineError>),
    /// Not here (any more): ask the registered owner.
    Elsewhere,
    /// Between owners: look again shortly.
    Retry,
}

impl Route {
    pub(crate) fn into_response(self, plane: &Plane, id: GameId) -> Response {
        match self {
            Route::Done(result) => Response::Command(result),
            Route::Elsewhere => match plane.registry.owner_of(id) {
                Some(owner) if owner != plane.this => Response::Moved(owner),
                _ => Response::NotHere,
            },
            Route::Retry => Response::NotHere,
        }
    }
}

/// The session of a game registered here that is not running yet: it is
/// passive (the control starts it), starting (after a failover or a move)
/// or leaving. Waits for it a little, looking at the registry again
/// whenever it changes, in case the game went elsewhere.
async fn starting_session(plane: &Plane, id: GameId) -> Option<ActorRef<SessionMsg>> {
    let here = || plane.registry.owner_of(id).is_some_and(|o| o == plane.this);
    if here() {
        let _ = plane.driver.send(ToDriver::Input(Input::Activate(id)));
    }
    let deadline = Instant::now() + STARTING_WAIT;
    let mut changes = plane.registry.changes();
    while here() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        changes.borrow_and_update();
        let up = tokio::select! {
            up = plane.local.sessions().wait_for(id, left) => up,
            _ = changes.changed() => plane.local.sessions().session(id),
        };
        if up.is_some() {
            return up;
        }
    }
    None
}

/// Delivers a command to game `id`'s session if it runs here. A write
/// `op` answers as `answer` asks (a write without an op answers its ack).
pub(crate) async fn command_here(
    plane: &Plane,
    id: GameId,
    command: Command,
    op: Option<OpId>,
    answer: Answer,
) -> Route {
    let mut session = plane.local.sessions().session(id);
    if session.is_none() {
        session = starting_session(plane, id).await;
    }
    if let Some(session) = session {
        let timeout = plane.config.call_timeout;
        let result = match op {
            Some(op) => call_session_write(&session, id, op, command, answer, timeout).await,
            None => call_session(&session, id, command, timeout).await,
        };
        match result {
            // Released or concluded while we asked: look again.
            Err(EngineError::GameNotAlive(_)) => {}
            other => return Route::Done(other),
        }
    }
    gone_from_here(plane, id)
}

/// Where to look for game `id`, whose session does not run here (any more).
fn gone_from_here(plane: &Plane, id: GameId) -> Route {
    match plane.registry.owner_of(id) {
        Some(owner) if owner == plane.this => Route::Retry, // starting, moving or ending
        Some(_) => Route::Elsewhere,
        None if plane.view.load().synced => Route::Done(Err(EngineError::GameNotAlive(id))),
        None => Route::Retry,
    }
}

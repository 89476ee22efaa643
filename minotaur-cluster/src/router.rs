//! The router: the node's one remotable actor. It decodes what peers send
//! and hands it to the node; requests are answered from their own task so a
//! slow session never blocks the router.

use crate::links;
use crate::membership::MemberId;
use crate::membership::{DownReason, MemberStatus};
use crate::node::{lock, Shared};
use crate::protocol::{self, Notice, Request, Response, RouterMsg};
use crate::replication::Replica;
use crate::supervisor::StartError;
use crate::{directory, supervisor};
use minotaur_core::{codec, Command, EngineError, Game, GameId, OpId};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;

/// The registered name of a member's router, from the member id's display form.
pub(crate) fn router_name_of(member: &str) -> String {
    format!("minotaur-router/{member}")
}

/// The registered name of `this` member's router (unique per incarnation,
/// so nodes sharing a process never clash).
pub(crate) fn router_name(this: &crate::MemberId) -> String {
    router_name_of(&this.to_string())
}

/// The router actor.
pub(crate) struct Router;

impl Actor for Router {
    type Msg = RouterMsg;
    type State = Arc<Shared>;
    type Arguments = Arc<Shared>;

    async fn pre_start(
        &self,
        _myself: ActorRef<RouterMsg>,
        shared: Arc<Shared>,
    ) -> Result<Arc<Shared>, ActorProcessingErr> {
        Ok(shared)
    }

    async fn handle(
        &self,
        _myself: ActorRef<RouterMsg>,
        message: RouterMsg,
        shared: &mut Arc<Shared>,
    ) -> Result<(), ActorProcessingErr> {
        let _guard = shared.span.clone().entered();
        match message {
            RouterMsg::Notice(bytes) => match protocol::open::<Notice>(&bytes) {
                Ok(notice) => on_notice(shared, notice),
                Err(e) => tracing::warn!(error = %e, "dropping an undecodable notice"),
            },
            RouterMsg::Request(bytes, reply) => match protocol::open::<Request>(&bytes) {
                Ok(request) => {
                    shared
                        .tasks
                        .spawn(on_request(shared.clone(), request, reply));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "refusing an undecodable request");
                    answer(
                        reply,
                        Response::Refused(format!("undecodable request: {e}")),
                    );
                }
            },
        }
        Ok(())
    }
}

/// Sends `response` on `reply`. A response too large for the wire (the
/// state of a game grown past the codec's limit, say) is replaced by the
/// codec error, so the caller gets a typed answer at once rather than
/// waiting out its deadline for one that never comes. (A command's answer
/// replaced this way may belong to a write that was applied.)
pub(crate) fn answer(reply: RpcReplyPort<Vec<u8>>, response: Response) {
    let bytes = match protocol::seal(&response) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "answer not sendable; answering with the error instead");
            let refusal = match response {
                Response::Command(_) => Response::Command(Err(EngineError::Codec(e))),
                Response::Started(_) => Response::Started(Err(EngineError::Codec(e))),
                Response::Claimed(_) => Response::Claimed(Err(EngineError::Codec(e))),
                _ => Response::Refused(format!("answer not sent: {e}")),
            };
            match protocol::seal(refusal) {
                Ok(bytes) => bytes,
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode a response");
                    return;
                }
            }
        }
    };
    let _ = reply.send(bytes);
}

fn on_notice(shared: &Arc<Shared>, notice: Notice) {
    match notice {
        Notice::Ping { from } => shared.members.heard(&from),
        Notice::Registered(reg) => {
            shared.members.heard(&reg.owner);
            supervisor::apply_registration(shared, reg);
        }
        Notice::Unregistered { id, owner } => {
            shared.registry.remove(id, &owner);
            shared.replicas.drop_from(id, &owner);
        }
        Notice::Sync { from, entries } => {
            shared.members.heard(&from);
            lock(&shared.synced).insert(from.clone());
            for reg in entries {
                supervisor::apply_registration(shared, reg);
            }
            // The sender counts us live from now on, so it accepts the
            // backup copies it may have refused while its handshake ran.
            // If it had counted us down it has dropped the copies it held
            // (even where we never saw it go down): copy them again.
            shared.owned.forget_backup(&from);
            shared.tasks.spawn(crate::handoff::sweep(shared.clone()));
        }
        Notice::Leaving { from } => supervisor::member_leaving(shared, &from),
        Notice::Bye { from } => links::member_down(shared, &from, DownReason::Left),
        Notice::DropReplica { id, owner } => shared.replicas.drop_from(id, &owner),
        // Only nodes running the control state machine speak it.
        Notice::Control { .. } => {}
        Notice::Members { from, members } => {
            shared.members.heard(&from);
            let addrs = links::unknown(shared, members);
            if !addrs.is_empty() {
                let owner = shared.clone();
                shared
                    .tasks
                    .spawn(async move { links::dial_all(&owner, addrs).await });
            }
        }
    }
}

async fn on_request(shared: Arc<Shared>, request: Request, reply: RpcReplyPort<Vec<u8>>) {
    let response = match request {
        Request::Hello(theirs) => {
            if links::compatible(&theirs) {
                Response::Hello(links::hello(&shared))
            } else {
                tracing::error!(
                    peer = %theirs.from,
                    theirs = ?(theirs.min_protocol, theirs.max_protocol),
                    "refusing peer: incompatible protocol versions"
                );
                Response::Refused(format!(
                    "protocol versions {}..={} not supported (this node speaks {}..={})",
                    theirs.min_protocol,
                    theirs.max_protocol,
                    protocol::MIN_PROTOCOL_VERSION,
                    protocol::PROTOCOL_VERSION
                ))
            }
        }
        Request::Command { id, command } => {
            return on_command(&shared, id, command, None, reply).await
        }
        Request::Write { id, op, command } => {
            return on_command(&shared, id, command, Some(op), reply).await
        }
        Request::Start { snapshot, epoch } => match codec::decode::<Game>(&snapshot) {
            Ok(game) => match supervisor::host_game(&shared, game, epoch).await {
                Err(StartError::Leaving(this)) => Response::Leaving(this),
                started => Response::Started(started.map_err(EngineError::from)),
            },
            Err(e) => Response::Started(Err(e.into())),
        },
        Request::ClaimCode { code, id } => Response::Claimed(if shared.registry.claim(&code, id) {
            Ok(())
        } else {
            Err(minotaur_core::EngineError::JoinCodeTaken(code))
        }),
        Request::Replicate {
            owner,
            epoch,
            snapshot,
        } => store_copies(&shared, owner, vec![(epoch, snapshot)]),
        Request::ReplicateMany { owner, copies } => store_copies(&shared, owner, copies),
        Request::Fetch { id } => Response::Snapshot(shared.replicas.get(id).map(|r| r.snapshot)),
        Request::Register(reg) => {
            supervisor::apply_registration(&shared, reg);
            Response::Stored
        }
        Request::RegisterMany(regs) => {
            for reg in regs {
                supervisor::apply_registration(&shared, reg);
            }
            Response::Stored
        }
    };
    answer(reply, response);
}

/// Runs a command on a session hosted here. While the game is moving the
/// request waits, and is then pointed at the new owner.
async fn on_command(
    shared: &Arc<Shared>,
    id: GameId,
    command: Command,
    op: Option<OpId>,
    reply: RpcReplyPort<Vec<u8>>,
) {
    if shared.is_moving(id) {
        if let Some(waiting) = lock(&shared.moving).get_mut(&id) {
            waiting.push(reply);
            return;
        }
    }
    let response = match directory::command_here(shared, id, command, op).await {
        directory::Route::Done(result) => Response::Command(result),
        directory::Route::Moved(to) => Response::Moved(to),
        directory::Route::Retry => Response::NotHere,
    };
    answer(reply, response);
}

/// Keeps `owner`'s copies of its games: all of them, or none when one does
/// not decode. Only from a member this node knows is live: a copy from one
/// whose handshake with us has not finished would be orphaned if it died
/// now, as its link closing would not count as a member going down here
/// (the owner then keeps its previous backup).
fn store_copies(shared: &Shared, owner: MemberId, copies: Vec<(u64, Vec<u8>)>) -> Response {
    if !matches!(
        shared.members.status(&owner),
        Some(MemberStatus::Up | MemberStatus::Leaving)
    ) {
        return Response::Refused(format!("{owner} is not a live member here"));
    }
    let mut decoded = Vec::with_capacity(copies.len());
    for (epoch, snapshot) in copies {
        match codec::decode::<Game>(&snapshot) {
            Ok(game) => decoded.push((game.id, epoch, game.version, snapshot)),
            Err(e) => return Response::Refused(format!("undecodable snapshot: {e}")),
        }
    }
    for (id, epoch, version, snapshot) in decoded {
        let replica = Replica {
            owner: owner.clone(),
            epoch,
            version,
            snapshot,
        };
        shared.replicas.store(id, replica);
    }
    Response::Stored
}

//! Calling peers' routers: requests with a deadline, one-way notices.

use crate::membership::{MemberId, Membership};
use crate::protocol::{self, Notice, Request, Response, RouterMsg};
use ractor::rpc::CallResult;
use std::time::Duration;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// The member is down or unknown: there is no link to it.
    #[error("no route to {0}")]
    NoRoute(String),
    /// No answer within the deadline; the request may have been applied.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The link closed before the answer came.
    #[error("link to {0} closed")]
    Closed(String),
    /// The answer could not be decoded.
    #[error("bad answer from {0}: {1}")]
    Codec(String, String),
}

/// Sends `request` to `to`'s router and waits up to `timeout` for its response.
pub async fn request(
    members: &Membership,
    to: &MemberId,
    request: Request,
    timeout: Duration,
) -> Result<Response, RpcError> {
    let router = members
        .router(to)
        .ok_or_else(|| RpcError::NoRoute(to.to_string()))?;
    let bytes =
        protocol::seal(request).map_err(|e| RpcError::Codec(to.to_string(), e.to_string()))?;
    call(&router, bytes, timeout, to).await
}

/// Sends encoded request bytes to a router stub.
pub(crate) async fn call(
    router: &ractor::ActorRef<RouterMsg>,
    bytes: Vec<u8>,
    timeout: Duration,
    to: &MemberId,
) -> Result<Response, RpcError> {
    match router
        .call(|port| RouterMsg::Request(bytes, port), Some(timeout))
        .await
    {
        Ok(CallResult::Success(answer)) => protocol::open::<Response>(&answer)
            .map_err(|e| RpcError::Codec(to.to_string(), e.to_string())),
        Ok(CallResult::Timeout) => Err(RpcError::Timeout(to.to_string(), timeout)),
        Ok(CallResult::SenderError) | Err(_) => Err(RpcError::Closed(to.to_string())),
    }
}

/// Sends `notice` to `to`, if it is reachable. Notices are best effort.
pub fn notify(members: &Membership, to: &MemberId, notice: &Notice) {
    if let (Some(router), Ok(bytes)) = (members.router(to), protocol::seal(notice)) {
        let _ = router.cast(RouterMsg::Notice(bytes));
    }
}

/// Sends `notice` to every live peer.
pub fn broadcast(members: &Membership, notice: &Notice) {
    let Ok(bytes) = protocol::seal(notice) else {
        return;
    };
    for id in members.live() {
        if &id == members.this() {
            continue;
        }
        if let Some(router) = members.router(&id) {
            let _ = router.cast(RouterMsg::Notice(bytes.clone()));
        }
    }
}

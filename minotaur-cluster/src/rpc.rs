//! Calling peers' routers: requests with a deadline, one-way notices.

use crate::membership::{MemberId, Membership};
use crate::protocol::{self, Notice, Request, Response, RouterMsg};
use minotaur_core::codec::CodecError;
use minotaur_core::EngineError;
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
    /// The request could not be encoded (too large for the wire, say):
    /// nothing was sent.
    #[error("request not sent: {0}")]
    Encode(CodecError),
}

impl RpcError {
    /// The engine error a caller gets when a request it made failed: a
    /// request that could not be encoded keeps its typed codec error
    /// ([`EngineError::Codec`]); the others mean the member could not be
    /// reached in time.
    pub fn into_engine(self) -> EngineError {
        match self {
            RpcError::Encode(e) => EngineError::Codec(e),
            other => EngineError::Unavailable(other.to_string()),
        }
    }
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
    let bytes = protocol::seal(request).map_err(RpcError::Encode)?;
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

/// Encodes a notice; one that cannot be (too large) is not sent.
fn seal_notice(notice: &Notice) -> Option<Vec<u8>> {
    protocol::seal(notice)
        .inspect_err(|e| tracing::warn!(error = %e, "notice not sent"))
        .ok()
}

/// Sends `notice` to `to`, if it is reachable. Notices are best effort.
pub fn notify(members: &Membership, to: &MemberId, notice: &Notice) {
    let Some(router) = members.router(to) else {
        return;
    };
    if let Some(bytes) = seal_notice(notice) {
        let _ = router.cast(RouterMsg::Notice(bytes));
    }
}

/// Sends `notice` to every live peer.
pub fn broadcast(members: &Membership, notice: &Notice) {
    let Some(bytes) = seal_notice(notice) else {
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

//! Calling a peer's router: a request with a deadline, and why it got no
//! answer.

use crate::membership::MemberId;
use crate::protocol::{self, Response, RouterMsg};
use ractor::rpc::CallResult;
use std::time::Duration;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RpcError {
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

/// Sends sealed request bytes to `to`'s router and waits up to `timeout`
/// for its response.
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

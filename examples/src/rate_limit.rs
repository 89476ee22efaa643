//! Per-client request limits for the HTTP endpoint, so that one client
//! cannot starve the others: each client address gets a quota of requests
//! per second with a burst (the `governor` crate's GCRA), and a request
//! beyond it is answered `429 TooManyRequests` with a `Retry-After`
//! header, before it reaches the cluster.
//!
//! Clients are told apart by the address of their connection. Behind a
//! load balancer or proxy every request comes from its address: limit
//! there, or give each client its own path to the node.

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How often (in requests) the state of clients not seen lately is freed.
const FORGET_EVERY: u64 = 4096;

/// A client's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: NonZeroU32,
    /// Requests a client may send at once, before the rate applies.
    pub burst: NonZeroU32,
}

/// The limiter one endpoint shares between its requests.
#[derive(Clone)]
pub(crate) struct Limiter {
    clients: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    checked: Arc<AtomicU64>,
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Limiter {
            clients: Arc::new(RateLimiter::keyed(quota)),
            checked: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The middleware: the request goes on, or is answered 429.
pub(crate) async fn limit(State(limiter): State<Limiter>, req: Request, next: Next) -> Response {
    // Served without connection info (a router driven in process), every
    // request is one client's.
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    if limiter.checked.fetch_add(1, Ordering::Relaxed) % FORGET_EVERY == 0 {
        limiter.clients.retain_recent();
        limiter.clients.shrink_to_fit();
    }
    match limiter.clients.check_key(&client) {
        Ok(()) => next.run(req).await,
        Err(refused) => {
            let wait = refused.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let mut response = crate::http::ApiError::too_many_requests(format!(
                "too many requests from {client}: retry in {seconds} s"
            ))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
                response.headers_mut().insert("retry-after", value);
            }
            response
        }
    }
}

//! The data plane between nodes: commands sent to the node hosting their
//! game, and the responses.
//!
//! Requests and responses bound for one peer are coalesced: each peer has
//! one outbox, drained by one task, and whatever queued while the previous
//! frame went out leaves in the next one, as one `Notice::Data` frame. No
//! timer holds a message back, so an idle link adds no wait; a busy one
//! sends fewer, larger frames. Responses go back over the link the
//! requester is known by, whatever either side thinks of the other's
//! membership.

use crate::membership::MemberId;
use crate::protocol::{self, Notice, Request, Response, RouterMsg};
use crate::tasks::Tasks;
use minotaur_core::{codec, EngineError};
use ractor::{ActorId, ActorRef};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Messages one frame carries at most.
const FRAME_ITEMS: usize = 256;

/// Bytes of requests and responses one frame carries, but for a single
/// larger message: well under the codec's limit.
const FRAME_BYTES: usize = 1024 * 1024;

/// Why a request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RpcError {
    /// No answer within the deadline; the request may have been applied.
    #[error("{0} did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The link closed (or there was none) before the answer came.
    #[error("link to {0} closed")]
    Closed(String),
}

/// A message waiting in a peer's outbox.
enum Item {
    Request(u64, Request),
    Response(u64, Response),
}

/// A request sent, waiting for its response.
struct Pending {
    to: MemberId,
    /// The router it went to, once sent: it fails when that link closes.
    via: Option<ActorId>,
    answer: oneshot::Sender<Response>,
}

/// A node's requests in flight and its outboxes to its peers.
pub(crate) struct Exchange {
    this: MemberId,
    tasks: Tasks,
    next: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    outboxes: Mutex<HashMap<MemberId, mpsc::UnboundedSender<Item>>>,
    /// Each linked peer's router over each of its links, newest last: two
    /// nodes dialling each other at once are linked twice for a while.
    links: Mutex<HashMap<MemberId, Vec<ActorRef<RouterMsg>>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Takes a request's entry out of the pending ones if its caller gives up.
struct Waiting<'a> {
    exchange: &'a Exchange,
    n: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        locked(&self.exchange.pending).remove(&self.n);
    }
}

impl Exchange {
    pub fn new(this: MemberId, tasks: Tasks) -> Exchange {
        Exchange {
            this,
            tasks,
            next: AtomicU64::new(1),
            pending: Mutex::default(),
            outboxes: Mutex::default(),
            links: Mutex::default(),
        }
    }

    /// Sends `request` to `to`'s router and waits up to `timeout` for its
    /// response.
    pub async fn call(
        self: &Arc<Self>,
        to: &MemberId,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let (answer, response) = oneshot::channel();
        let pending = Pending {
            to: to.clone(),
            via: None,
            answer,
        };
        locked(&self.pending).insert(n, pending);
        let _waiting = Waiting { exchange: self, n };
        self.push(to, Item::Request(n, request));
        match tokio::time::timeout(timeout, response).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(RpcError::Closed(to.to_string())),
            Err(_) => Err(RpcError::Timeout(to.to_string(), timeout)),
        }
    }

    /// Sends `to` the response to its request `n`.
    pub fn respond(self: &Arc<Self>, to: &MemberId, n: u64, response: Response) {
        self.push(to, Item::Response(n, response));
    }

    /// Responses from `from` to requests of this node.
    pub fn answered(&self, from: &MemberId, responses: Vec<(u64, Response)>) {
        let mut pending = locked(&self.pending);
        for (n, response) in responses {
            // Only the peer asked may answer.
            if pending.get(&n).is_some_and(|p| &p.to == from) {
                if let Some(p) = pending.remove(&n) {
                    let _ = p.answer.send(response);
                }
            }
        }
    }

    /// A link to `peer` is up: requests and responses to it go there.
    pub fn link_up(&self, peer: MemberId, router: ActorRef<RouterMsg>) {
        locked(&self.links).entry(peer).or_default().push(router);
    }

    /// A link closed: requests sent over it fail now (their callers may
    /// look again) rather than at their deadline.
    pub fn link_closed(&self, peer: Option<&MemberId>, router: ActorId) {
        if let Some(peer) = peer {
            let mut links = locked(&self.links);
            if let Some(routers) = links.get_mut(peer) {
                routers.retain(|r| r.get_id() != router);
                if routers.is_empty() {
                    links.remove(peer);
                    // Its task ends once it has sent what is queued.
                    locked(&self.outboxes).remove(peer);
                }
            }
        }
        locked(&self.pending).retain(|_, p| p.via != Some(router));
    }

    /// Queues `item` in `to`'s outbox, starting the task that drains it.
    fn push(self: &Arc<Self>, to: &MemberId, item: Item) {
        let mut outboxes = locked(&self.outboxes);
        let outbox = outboxes.entry(to.clone()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            self.tasks.spawn(drain(self.clone(), to.clone(), rx));
            tx
        });
        if let Err(mpsc::error::SendError(item)) = outbox.send(item) {
            // The node is stopping: its tasks are gone.
            outboxes.remove(to);
            drop(outboxes);
            self.fail(vec![item]);
        }
    }

    /// Sends what queued for `to` in frames of at most [`FRAME_ITEMS`]
    /// messages and [`FRAME_BYTES`] bytes (or one larger message).
    fn send(&self, to: &MemberId, items: Vec<Item>) {
        let Some(router) = locked(&self.links).get(to).and_then(|r| r.last()).cloned() else {
            return self.fail(items);
        };
        let mut frame = Vec::new();
        let mut bytes: usize = 0;
        for item in items {
            let size = match &item {
                Item::Request(_, r) => codec::encoded_len(r),
                Item::Response(_, r) => codec::encoded_len(r),
            }
            .unwrap_or(usize::MAX);
            if !frame.is_empty() && bytes.saturating_add(size) > FRAME_BYTES {
                self.send_frame(to, &router, std::mem::take(&mut frame));
                bytes = 0;
            }
            bytes = bytes.saturating_add(size);
            frame.push(item);
        }
        if !frame.is_empty() {
            self.send_frame(to, &router, frame);
        }
    }

    fn send_frame(&self, to: &MemberId, router: &ActorRef<RouterMsg>, items: Vec<Item>) {
        let (mut requests, mut responses) = (Vec::new(), Vec::new());
        for item in items {
            match item {
                Item::Request(n, r) => requests.push((n, r)),
                Item::Response(n, r) => responses.push((n, r)),
            }
        }
        let numbers: Vec<u64> = requests.iter().map(|(n, _)| *n).collect();
        let frame = Notice::Data {
            from: self.this.clone(),
            requests,
            responses,
        };
        let bytes = match protocol::seal(&frame) {
            Ok(bytes) => bytes,
            // Only a frame of one message too large to send gets here.
            Err(e) => return self.refuse(to, router, frame, e),
        };
        // Marked before sending, so that a link closing from now on fails
        // them.
        {
            let mut pending = locked(&self.pending);
            for n in &numbers {
                if let Some(p) = pending.get_mut(n) {
                    p.via = Some(router.get_id());
                }
            }
        }
        if router.cast(RouterMsg::Notice(bytes)).is_err() {
            let mut pending = locked(&self.pending);
            for n in &numbers {
                pending.remove(n);
            }
        }
    }

    /// A frame that cannot be encoded within the codec's limit: its
    /// requests are answered, and its responses sent, as that error.
    fn refuse(
        &self,
        to: &MemberId,
        router: &ActorRef<RouterMsg>,
        frame: Notice,
        error: codec::CodecError,
    ) {
        let Notice::Data {
            requests,
            responses,
            ..
        } = frame
        else {
            return;
        };
        let refusal = || Response::Command(Err(EngineError::Codec(error.clone())));
        {
            let mut pending = locked(&self.pending);
            for (n, _) in requests {
                if let Some(p) = pending.remove(&n) {
                    let _ = p.answer.send(refusal());
                }
            }
        }
        let responses: Vec<Item> = responses
            .into_iter()
            .map(|(n, _)| Item::Response(n, refusal()))
            .collect();
        if !responses.is_empty() {
            self.send_frame(to, router, responses);
        }
    }

    /// Messages that cannot go to their peer: requests fail (their callers
    /// look again); responses are dropped (their requester's link is gone,
    /// and with it the request).
    fn fail(&self, items: Vec<Item>) {
        let mut pending = locked(&self.pending);
        for item in items {
            if let Item::Request(n, _) = item {
                pending.remove(&n);
            }
        }
    }
}

/// Drains `to`'s outbox until the node stops.
async fn drain(exchange: Arc<Exchange>, to: MemberId, mut outbox: mpsc::UnboundedReceiver<Item>) {
    let mut items = Vec::new();
    while outbox.recv_many(&mut items, FRAME_ITEMS).await > 0 {
        exchange.send(&to, std::mem::take(&mut items));
    }
}

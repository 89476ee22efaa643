//! Every background task of one node, so that stopping the node ends them
//! all and waits for them: a stopped node leaves nothing running behind.
//! Also the engine calls in flight through the node, so that a graceful
//! leave lets them finish before the links close.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Spawns and tracks a node's tasks, each in the node's tracing span.
#[derive(Clone)]
pub(crate) struct Tasks {
    tracker: TaskTracker,
    stop: CancellationToken,
    span: tracing::Span,
}

impl Tasks {
    pub fn new(span: tracing::Span) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            stop: CancellationToken::new(),
            span,
        }
    }

    /// Runs `task` until it finishes or the node stops, whichever is first.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        let task = async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        };
        self.tracker.spawn(task.instrument(self.span.clone()));
    }

    /// Ends every task (dropping what each was doing) and waits for them,
    /// at most `within`; returns whether all ended in time.
    pub async fn stop(&self, within: Duration) -> bool {
        self.stop.cancel();
        self.tracker.close();
        tokio::time::timeout(within, self.tracker.wait())
            .await
            .is_ok()
    }

    /// Ends every task without waiting (for `Drop`).
    pub fn cancel(&self) {
        self.stop.cancel();
        self.tracker.close();
    }

    /// Tasks still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether the node has stopped (tasks cancelled).
    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// Counts engine calls in flight through a node.
#[derive(Default)]
pub(crate) struct Calls {
    count: AtomicUsize,
    idle: Notify,
    closed: AtomicBool,
}

/// One call in flight; dropping it ends the call.
pub(crate) struct CallGuard(Arc<Calls>);

impl Calls {
    /// Admits a call, unless [`Calls::close`] was called.
    pub fn begin(self: &Arc<Self>) -> Option<CallGuard> {
        self.count.fetch_add(1, Ordering::SeqCst);
        let guard = CallGuard(self.clone());
        // Checked after counting, so `close` then `idle` cannot miss a call.
        (!self.closed.load(Ordering::SeqCst)).then_some(guard)
    }

    /// Admits no more calls.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }

    /// Waits until no call is in flight, at most `within`.
    pub async fn idle(&self, within: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.idle.notified();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(within, wait).await.is_ok()
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

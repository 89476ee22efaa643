//! Every background task of one node, so that stopping the node ends them
//! all and waits for them: a stopped node leaves nothing running behind.

use std::future::Future;
use std::time::Duration;
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
}

//! [`Subscription`]: a game's updates as a stream, for as long as the game
//! lives, wherever it lives; and the limits on how many run at once.
//!
//! A subscription asks the game's session for what it has not seen yet
//! ([`Command::Updates`]); the session answers at once if there is
//! something, or holds the question until the next change or a short wait.
//! The question names the last version seen, and the answer comes from the
//! game's own log, so a handoff or a failover between two questions loses
//! and repeats nothing: the next owner answers from the same log.

use crate::command::{Command, Reply};
use crate::engine::{Directory, EngineError};
use crate::ids::GameId;
use crate::updates::GameUpdate;
use futures::Stream;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest pause between two tries while a game's owner cannot be reached.
const MOST_BACKOFF: Duration = Duration::from_secs(1);

/// How many subscriptions an engine (and its clones) runs at once: per
/// game and in all. Beyond them [`GameEngine::subscribe`] answers
/// [`EngineError::GameSubscribersFull`] or
/// [`EngineError::NodeSubscribersFull`].
///
/// [`GameEngine::subscribe`]: crate::GameEngine::subscribe
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberLimits {
    /// Subscriptions to one game. Default 64.
    pub per_game: usize,
    /// Subscriptions in all. Default 10 000.
    pub per_node: usize,
}

impl Default for SubscriberLimits {
    fn default() -> Self {
        SubscriberLimits {
            per_game: 64,
            per_node: 10_000,
        }
    }
}

/// The subscriptions an engine runs, counted against its limits.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    limits: SubscriberLimits,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_game: HashMap<GameId, usize>,
}

impl Subscribers {
    pub(crate) fn new(limits: SubscriberLimits) -> Self {
        Subscribers {
            limits,
            counts: Mutex::default(),
        }
    }

    /// Takes a place for a subscription to game `id`, given back when the
    /// returned slot drops.
    fn enter(self: &Arc<Self>, id: GameId) -> Result<Slot, EngineError> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if counts.total >= self.limits.per_node {
            return Err(EngineError::NodeSubscribersFull {
                limit: self.limits.per_node,
            });
        }
        let of_game = counts.per_game.entry(id).or_default();
        if *of_game >= self.limits.per_game {
            return Err(EngineError::GameSubscribersFull {
                id,
                limit: self.limits.per_game,
            });
        }
        *of_game += 1;
        counts.total += 1;
        Ok(Slot {
            subscribers: self.clone(),
            id,
        })
    }

    /// Subscriptions running now: to game `id`, and in all.
    pub(crate) fn count(&self, id: GameId) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (counts.per_game.get(&id).copied().unwrap_or(0), counts.total)
    }
}

/// A subscription's place, counted until it drops.
#[derive(Debug)]
struct Slot {
    subscribers: Arc<Subscribers>,
    id: GameId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self
            .subscribers
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_game.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                counts.per_game.remove(&self.id);
            }
        }
    }
}

/// A game's updates, in version order, from
/// [`GameEngine::subscribe`](crate::GameEngine::subscribe).
///
/// The first item is the whole game unless the subscription resumes from
/// a version; then come the changes, each numbered one more than the item
/// before, with neither gap nor repeat, across handoffs and failovers. If
/// the game's log no longer reaches back to the version resumed from, the
/// whole game comes instead. While the game's owner cannot be reached the
/// subscription waits and asks again. It ends after the update that
/// concludes the game; an error ends it too (a game that is gone, or this
/// node leaving: [`EngineError::Leaving`] says to resume through another).
pub struct Subscription {
    id: GameId,
    directory: Arc<dyn Directory>,
    after: Option<u64>,
    pending: VecDeque<GameUpdate>,
    ended: bool,
    _slot: Slot,
}

impl Subscription {
    pub(crate) fn new(
        id: GameId,
        after: Option<u64>,
        directory: Arc<dyn Directory>,
        subscribers: &Arc<Subscribers>,
    ) -> Result<Self, EngineError> {
        Ok(Subscription {
            id,
            directory,
            after,
            pending: VecDeque::new(),
            ended: false,
            _slot: subscribers.enter(id)?,
        })
    }

    /// The game subscribed to.
    pub fn id(&self) -> GameId {
        self.id
    }

    /// The version of the last update returned: where a new subscription
    /// would resume.
    pub fn version(&self) -> Option<u64> {
        self.after
    }

    /// The next update, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<Result<GameUpdate, EngineError>> {
        let mut backoff = Duration::from_millis(20);
        loop {
            if let Some(update) = self.pending.pop_front() {
                self.after = Some(update.version());
                self.ended |= update.concludes();
                return Some(Ok(update));
            }
            if self.ended {
                return None;
            }
            let ask = Command::Updates {
                after: self.after,
                wait_ms: self.directory.updates_wait().as_millis() as u32,
            };
            match self.directory.send(self.id, ask).await {
                Ok(Reply::Updates(updates)) => self.pending.extend(updates),
                Ok(other) => {
                    return self.end(EngineError::Protocol(format!(
                        "updates of game {} answered with {other:?}",
                        self.id
                    )))
                }
                Err(
                    EngineError::Timeout(_)
                    | EngineError::Unavailable(_)
                    | EngineError::NoQuorum(_)
                    | EngineError::BetweenOwners(_),
                ) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MOST_BACKOFF);
                }
                Err(e) => return self.end(e),
            }
        }
    }

    /// The subscription as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<GameUpdate, EngineError>> + Send {
        futures::stream::unfold(self, |mut subscription| async move {
            let item = subscription.next().await?;
            Some((item, subscription))
        })
    }

    fn end(&mut self, error: EngineError) -> Option<Result<GameUpdate, EngineError>> {
        self.ended = true;
        Some(Err(error))
    }
}

//! [`ClusterDirectory`]: the engine's view of the cluster. Finds a game's
//! owner in the published registry and delivers the command there (to the
//! local session, or to the owner's router), following moves and waiting
//! out failovers within the call timeout. Creates go to the driver.

use crate::driver::ToDriver;
use crate::exchange::RpcError;
use crate::membership::MemberId;
use crate::plane::Plane;
use crate::protocol::{Request, Response};
use crate::router::{command_here, Route};
use crate::tasks::CallGuard;
use async_trait::async_trait;
use minotaur_core::{
    Answer, Command, Directory, EngineError, Game, GameId, JoinCode, OpId, Reply, UserId,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The [`Directory`] of a [`Node`](crate::Node)'s engine: every game of the
/// cluster, wherever it lives.
pub struct ClusterDirectory {
    plane: Arc<Plane>,
}

impl ClusterDirectory {
    pub(crate) fn new(plane: Arc<Plane>) -> Self {
        ClusterDirectory { plane }
    }

    fn begin(&self) -> Result<CallGuard, EngineError> {
        self.plane
            .calls
            .begin()
            .filter(|_| !self.plane.tasks.is_stopped())
            .ok_or_else(|| {
                EngineError::Leaving(format!(
                    "node {} has left the cluster; call another node",
                    self.plane.this
                ))
            })
    }

    async fn remote(
        &self,
        owner: &MemberId,
        id: GameId,
        command: Command,
        op: Option<OpId>,
        answer: Answer,
        left: Duration,
    ) -> Result<Route, MemberId> {
        let repeatable = !command.is_write() || op.is_some();
        if !self.plane.view.load().routers.contains_key(owner) {
            return Ok(Route::Retry);
        }
        let request = match op {
            Some(op) => Request::Write {
                id,
                op,
                command,
                answer,
            },
            None => Request::Command { id, command },
        };
        match self.plane.exchange.call(owner, request, left).await {
            Ok(Response::Command(result)) => Ok(Route::Done(result)),
            Ok(Response::Moved(to)) => Err(to),
            Ok(Response::NotHere) => Ok(Route::Retry),
            Ok(Response::Refused(why)) => Ok(Route::Done(Err(EngineError::Protocol(why)))),
            Err(RpcError::Timeout(..)) => Ok(Route::Done(Err(EngineError::Timeout(format!(
                "{owner} did not answer for game {id} within {left:?}"
            ))))),
            Err(RpcError::Closed(_)) if repeatable => Ok(Route::Retry),
            Err(e) => Ok(Route::Done(Err(EngineError::Unavailable(e.to_string())))),
        }
    }

    /// Delivers a command to game `id` wherever it lives, following moves
    /// and waiting out failovers within the call timeout. A write `op`
    /// answers as `answer` asks.
    async fn route(
        &self,
        id: GameId,
        command: Command,
        op: Option<OpId>,
        answer: Answer,
    ) -> Result<Reply, EngineError> {
        let plane = &self.plane;
        let timeout = plane.config.call_timeout;
        let deadline = Instant::now() + timeout;
        let mut hint: Option<MemberId> = None;
        let mut backoff = Duration::from_millis(2);
        // Subscribed at the first wait only: most commands never wait.
        let mut changes = None;
        // The owner's last refusal for want of a majority: retried until
        // the deadline (the majority takes the game over, or the owner gets
        // its lease back), then returned.
        let mut no_quorum = None;
        loop {
            let owner = match hint.take() {
                Some(owner) => owner,
                None => match plane.registry.owner_of(id) {
                    Some(owner) => owner,
                    None if plane.view.load().synced => return Err(EngineError::GameNotAlive(id)),
                    None => plane.this.clone(),
                },
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let route = if owner == plane.this {
                Ok(command_here(plane, id, command.clone(), op, answer).await)
            } else {
                self.remote(
                    &owner,
                    id,
                    command.clone(),
                    op,
                    answer,
                    left.max(Duration::from_millis(1)),
                )
                .await
            };
            match route {
                // A write applies at most once under its op id, so it can be
                // sent again.
                Ok(Route::Done(Err(EngineError::NoQuorum(why))))
                    if op.is_some() || !command.is_write() =>
                {
                    no_quorum = Some(why)
                }
                // The game moved or lost a conflict while the call was
                // on its way: look it up again.
                Ok(Route::Done(Err(EngineError::BetweenOwners(_))))
                    if op.is_some() || !command.is_write() => {}
                Ok(Route::Done(result)) => return result,
                Err(to) => hint = Some(to),
                Ok(Route::Elsewhere | Route::Retry) => {}
            }
            if Instant::now() >= deadline {
                if let Some(why) = no_quorum {
                    return Err(EngineError::NoQuorum(why));
                }
                return Err(EngineError::BetweenOwners(id));
            }
            if hint.is_none() {
                // Look again when the node's view changes (the game
                // restarted or moved, a link came up), or after a while.
                let changes = changes.get_or_insert_with(|| plane.registry.changes());
                let _ = tokio::time::timeout(backoff, changes.changed()).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        }
    }

    async fn create_once(&self, game: Game) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        self.plane
            .driver
            .send(ToDriver::Create { game, reply })
            .map_err(|_| EngineError::Leaving("the node is stopping".into()))?;
        let wait = self.plane.config.call_timeout * 3;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(result)) => result.map(|_| ()),
            Ok(Err(_)) => Err(EngineError::Leaving("the node is stopping".into())),
            Err(_) => Err(EngineError::Timeout(format!(
                "create not answered within {wait:?}"
            ))),
        }
    }

    async fn await_sync(&self) {
        let deadline = Instant::now() + self.plane.config.call_timeout;
        while !self.plane.view.load().synced && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

#[async_trait]
impl Directory for ClusterDirectory {
    async fn start(&self, game: Game) -> Result<(), EngineError> {
        let _call = self.begin()?;
        // A create refused for want of a majority started nothing and
        // claimed its code for this game id only, so it is tried again
        // until the call timeout: a node that just started or just lost
        // its lease usually gets it back well within that.
        let deadline = Instant::now() + self.plane.config.call_timeout;
        let mut backoff = Duration::from_millis(5);
        loop {
            match self.create_once(game.clone()).await {
                Err(EngineError::NoQuorum(_)) if Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                result => return result,
            }
        }
    }

    async fn send(&self, id: GameId, command: Command) -> Result<Reply, EngineError> {
        let _call = self.begin()?;
        self.route(id, command, None, Answer::Ack).await
    }

    async fn send_write(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
        answer: Answer,
    ) -> Result<Reply, EngineError> {
        let _call = self.begin()?;
        self.route(id, command, Some(op), answer).await
    }

    async fn find_by_join_code(&self, code: &JoinCode) -> Result<GameId, EngineError> {
        let _call = self.begin()?;
        self.await_sync().await;
        self.plane
            .registry
            .by_join_code(code)
            .ok_or_else(|| EngineError::UnknownJoinCode(code.clone()))
    }

    async fn games_of_user(&self, user: &UserId) -> Result<Vec<GameId>, EngineError> {
        let _call = self.begin()?;
        self.await_sync().await;
        Ok(self.plane.registry.of_user(user))
    }

    /// Half the call timeout: a held question for updates is answered
    /// well before its caller gives up on it, even from another node.
    fn updates_wait(&self) -> Duration {
        (self.plane.config.call_timeout / 2).min(Duration::from_secs(10))
    }
}

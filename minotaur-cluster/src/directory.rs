//! `ClusterDirectory`: the engine's view of the cluster. Finds a game's
//! owner in the local registry copy and delivers the command there, retrying
//! while the game is moving or failing over, within the call timeout.

use crate::handoff::candidates;
use crate::membership::MemberId;
use crate::node::Shared;
use crate::placement::ranked;
use crate::protocol::{Request, Response};
use crate::rpc::{self, RpcError};
use crate::supervisor::{self, StartError};
use crate::tasks::CallGuard;
use async_trait::async_trait;
use minotaur_core::local::{call_session, call_session_write};
use minotaur_core::{
    codec, Command, Directory, EngineError, Game, GameId, JoinCode, OpId, Reply, UserId,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to do next with a command.
pub(crate) enum Route {
    /// The session answered (or the game is gone).
    Done(Result<Reply, EngineError>),
    /// Ask this member instead.
    Moved(MemberId),
    /// The game is between owners: look again shortly.
    Retry,
}

/// Delivers a command (write `op`, if given) to a session hosted on this
/// node, if it is here.
pub(crate) async fn command_here(
    shared: &Shared,
    id: GameId,
    command: Command,
    op: Option<OpId>,
) -> Route {
    if let Some(session) = shared.local.sessions().session(id) {
        let timeout = shared.config.call_timeout;
        let result = match op {
            Some(op) => call_session_write(&session, id, op, command, timeout).await,
            None => call_session(&session, id, command, timeout).await,
        };
        match result {
            // Released or concluded while we asked: look again below.
            Err(EngineError::GameNotAlive(_)) => {}
            other => return Route::Done(other),
        }
    }
    if shared.is_moving(id) {
        return Route::Retry;
    }
    if let Some(to) = shared.moved_to(id) {
        return Route::Moved(to);
    }
    if shared.owned.lock().contains_key(&id) {
        return Route::Retry; // starting, or ending and about to be unregistered
    }
    Route::Done(Err(EngineError::GameNotAlive(id)))
}

/// The [`Directory`] of a cluster node.
pub struct ClusterDirectory {
    shared: Arc<Shared>,
}

impl ClusterDirectory {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        ClusterDirectory { shared }
    }

    async fn remote(
        &self,
        owner: &MemberId,
        id: GameId,
        command: Command,
        op: Option<OpId>,
        left: Duration,
    ) -> Route {
        // A write without an id may have been applied when the link broke;
        // one with an id is applied at most once, so it can be sent again.
        let repeatable = !command.is_write() || op.is_some();
        let request = match op {
            Some(op) => Request::Write { id, op, command },
            None => Request::Command { id, command },
        };
        match rpc::request(&self.shared.members, owner, request, left).await {
            Ok(Response::Command(result)) => Route::Done(result),
            Ok(Response::Moved(to)) => Route::Moved(to),
            Ok(Response::NotHere) | Err(RpcError::NoRoute(_)) => Route::Retry,
            Ok(Response::Refused(why)) => Route::Done(Err(EngineError::Protocol(why))),
            Ok(other) => Route::Done(Err(EngineError::Protocol(format!(
                "unexpected answer {other:?}"
            )))),
            Err(RpcError::Timeout(..)) => Route::Done(Err(EngineError::Timeout(format!(
                "{owner} did not answer for game {id} within {left:?}"
            )))),
            // The owner is gone or going: once failover or the handoff
            // completes, the registry names the game's new owner.
            Err(RpcError::Closed(_)) if repeatable => Route::Retry,
            // Among them a request too large to send: a typed codec error.
            Err(e) => Route::Done(Err(e.into_engine())),
        }
    }

    /// Delivers a command to game `id` wherever it lives, following moves
    /// and waiting out failovers within the call timeout.
    async fn route(
        &self,
        id: GameId,
        command: Command,
        op: Option<OpId>,
    ) -> Result<Reply, EngineError> {
        let shared = &self.shared;
        let timeout = shared.config.call_timeout;
        let deadline = Instant::now() + timeout;
        let mut hint: Option<MemberId> = None;
        let mut backoff = Duration::from_millis(2);
        loop {
            let owner = match hint.take() {
                Some(owner) => owner,
                None => match shared.registry.lookup(id) {
                    Some(reg) => reg.owner,
                    None if shared.is_synced() => return Err(EngineError::GameNotAlive(id)),
                    // Just joined: the registry is still arriving.
                    None => shared.this.clone(),
                },
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let route = if owner == shared.this {
                command_here(shared, id, command.clone(), op).await
            } else {
                self.remote(
                    &owner,
                    id,
                    command.clone(),
                    op,
                    left.max(Duration::from_millis(1)),
                )
                .await
            };
            match route {
                Route::Done(result) => return result,
                Route::Moved(to) => hint = Some(to),
                Route::Retry => {}
            }
            if Instant::now() >= deadline {
                return Err(EngineError::Unavailable(format!(
                    "game {id} is between owners; gave up after {timeout:?}"
                )));
            }
            if hint.is_none() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
        }
    }

    /// Waits (within the call timeout) until the registry copy is complete.
    async fn await_sync(&self) {
        let deadline = Instant::now() + self.shared.config.call_timeout;
        while !self.shared.is_synced() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Reserves `code` for game `id` at the code's home member. A home that
    /// goes away meanwhile (it left or crashed) is replaced by the next
    /// one, within the call timeout.
    async fn claim_code(&self, code: &JoinCode, id: GameId) -> Result<(), EngineError> {
        let shared = &self.shared;
        if shared
            .registry
            .by_join_code(code)
            .is_some_and(|other| other != id)
        {
            return Err(EngineError::JoinCodeTaken(code.clone()));
        }
        let timeout = shared.config.call_timeout;
        let deadline = Instant::now() + timeout;
        let mut gone: Vec<MemberId> = Vec::new();
        let mut backoff = Duration::from_millis(2);
        loop {
            // Every claim of a code goes to the code's home member, which
            // serialises them: two simultaneous creates cannot both win.
            let up = shared
                .members
                .up()
                .into_iter()
                .filter(|m| !gone.contains(m));
            let home = match ranked(code, up).into_iter().next() {
                None => return Ok(()),
                Some(home) if home == shared.this => {
                    return match shared.registry.claim(code, id) {
                        true => Ok(()),
                        false => Err(EngineError::JoinCodeTaken(code.clone())),
                    };
                }
                Some(home) => home,
            };
            let request = Request::ClaimCode {
                code: code.clone(),
                id,
            };
            let error = match rpc::request(&shared.members, &home, request, timeout).await {
                Ok(Response::Claimed(result)) => return result,
                Ok(other) => {
                    return Err(EngineError::Protocol(format!(
                        "unexpected answer {other:?}"
                    )))
                }
                // The home went away: claim at the next one (a claim is
                // idempotent, so asking a home that is still up again is
                // safe too).
                Err(e @ (RpcError::NoRoute(_) | RpcError::Closed(_))) => e,
                Err(e) => return Err(e.into_engine()),
            };
            if shared.members.status(&home) != Some(crate::MemberStatus::Up) {
                gone.push(home);
            }
            if Instant::now() + backoff >= deadline {
                return Err(error.into_engine());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(50));
        }
    }

    /// Starts `game` on the member the placement picks among those taking
    /// new sessions. A member that turns out to be leaving (it refuses with
    /// [`Response::Leaving`], and is marked leaving here) or gone is left
    /// out and the game placed again, within the call timeout: a create
    /// never fails because another member leaves meanwhile.
    async fn place(&self, game: Game) -> Result<(), EngineError> {
        let shared = &self.shared;
        let deadline = Instant::now() + shared.config.call_timeout;
        let snapshot = codec::encode(&game)?;
        let mut excluded: Vec<MemberId> = Vec::new();
        // Whether an attempt may have started the game without our hearing.
        let mut unsure = false;
        let mut backoff = Duration::from_millis(2);
        loop {
            let targets: Vec<_> = candidates(shared)
                .into_iter()
                .filter(|c| !excluded.contains(&c.id))
                .collect();
            if targets.is_empty() {
                return Err(EngineError::Unavailable(
                    "no member takes new sessions".into(),
                ));
            }
            let owner = shared
                .config
                .placement
                .place(game.id, &targets, &shared.this);
            let started = if owner == shared.this {
                supervisor::host_game(shared, game.clone(), 1).await
            } else {
                supervisor::start_remote(shared, &owner, snapshot.clone(), 1).await
            };
            let error = match started {
                Ok(_) => return Ok(()),
                // An attempt whose answer was lost did start it.
                Err(StartError::Failed(EngineError::AlreadyRunning(id)))
                    if unsure && id == game.id =>
                {
                    return Ok(())
                }
                Err(StartError::Failed(e)) => return Err(e),
                Err(StartError::Leaving(member)) => {
                    supervisor::member_leaving(shared, &member);
                    excluded.push(owner);
                    StartError::Leaving(member)
                }
                Err(StartError::NoRoute(member)) => {
                    excluded.push(owner);
                    StartError::NoRoute(member)
                }
                // Try it again while it is up (a start that did happen is
                // then answered AlreadyRunning); place elsewhere once not.
                Err(StartError::Closed(member)) => {
                    unsure = true;
                    if shared.members.status(&owner) != Some(crate::MemberStatus::Up) {
                        excluded.push(owner);
                    } else {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_millis(50));
                    }
                    StartError::Closed(member)
                }
            };
            if Instant::now() >= deadline {
                return Err(error.into());
            }
        }
    }
}

impl ClusterDirectory {
    /// Admits an engine call, counted until it ends so that a leaving node
    /// finishes the calls it accepted before closing its links. Once the
    /// node has handed its sessions over (or was killed) calls are refused
    /// at once, before anything is sent: never applied, safe to send through
    /// another node.
    fn begin(&self) -> Result<CallGuard, EngineError> {
        self.shared
            .calls
            .begin()
            .filter(|_| !self.shared.tasks.is_stopped())
            .ok_or_else(|| {
                EngineError::Unavailable(format!(
                    "node {} has left the cluster; call another node",
                    self.shared.this
                ))
            })
    }
}

#[async_trait]
impl Directory for ClusterDirectory {
    async fn start(&self, game: Game) -> Result<(), EngineError> {
        let _call = self.begin()?;
        let shared = &self.shared;
        if let Some(reg) = shared.registry.lookup(game.id) {
            if shared.members.status(&reg.owner) != Some(crate::MemberStatus::Down) {
                return Err(EngineError::AlreadyRunning(game.id));
            }
        }
        self.claim_code(&game.join_code, game.id).await?;
        self.place(game).await
    }

    async fn send(&self, id: GameId, command: Command) -> Result<Reply, EngineError> {
        let _call = self.begin()?;
        self.route(id, command, None).await
    }

    async fn send_write(
        &self,
        id: GameId,
        op: OpId,
        command: Command,
    ) -> Result<Reply, EngineError> {
        let _call = self.begin()?;
        self.route(id, command, Some(op)).await
    }

    async fn find_by_join_code(&self, code: &JoinCode) -> Result<GameId, EngineError> {
        let _call = self.begin()?;
        self.await_sync().await;
        self.shared
            .registry
            .by_join_code(code)
            .ok_or_else(|| EngineError::UnknownJoinCode(code.clone()))
    }

    async fn games_of_user(&self, user: &UserId) -> Result<Vec<GameId>, EngineError> {
        let _call = self.begin()?;
        self.await_sync().await;
        Ok(self.shared.registry.of_user(user))
    }
}

//! Where a node's sessions save their state: to the driver, which keeps a
//! change only once its copy landed on the game's backup, and asks the
//! backup for a copy when a session restarts.

use crate::driver::{snapshot_of, DriverTx, ToDriver, View};
use crate::membership::{MemberId, MemberStatus};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use minotaur_core::{codec, EngineError, Game, GameId, StateSink};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The sink of a node's sessions.
pub(crate) struct ControlSink {
    pub driver: DriverTx,
    pub factor: usize,
    pub this: MemberId,
    pub view: Arc<ArcSwap<View>>,
}

impl ControlSink {
    /// Whether no other member is up to copy a change to, and no majority
    /// is needed to keep it.
    fn alone(&self) -> bool {
        let view = self.view.load();
        !view.fencing
            && !view
                .members
                .iter()
                .any(|(m, status)| *status == MemberStatus::Up && m != &self.this)
    }
}

#[async_trait]
impl StateSink for ControlSink {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        // A game that could not be encoded could not be copied, moved or
        // sent either: refused here, with the codec's typed error. With
        // replication off a change is kept once the session has it.
        if self.factor == 0 {
            codec::encoded_len(game)?;
            return Ok(());
        }
        let snapshot = snapshot_of(game)?;
        let (reply, answer) = oneshot::channel();
        self.driver
            .send(ToDriver::Save { snapshot, reply })
            .map_err(|_| EngineError::Leaving("the node is stopping".into()))?;
        // With no other member up there is nowhere to copy to: the control
        // records the version (the conflict rule needs it) without the
        // session waiting for it, which would double a local command's
        // time. When a member comes up, the control has every game without
        // a backup saved again, so the copies follow.
        if self.alone() {
            return Ok(());
        }
        answer
            .await
            .unwrap_or_else(|_| Err(EngineError::Leaving("the node is stopping".into())))
    }

    async fn confirm(&self, game: &Game) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        let stopping = || EngineError::Leaving("the node is stopping".into());
        self.driver
            .send(ToDriver::Confirm { id: game.id, reply })
            .map_err(|_| stopping())?;
        answer.await.unwrap_or_else(|_| Err(stopping()))
    }

    async fn load(&self, id: GameId) -> Option<Game> {
        if self.factor == 0 {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        self.driver.send(ToDriver::Fetch { id, reply }).ok()?;
        let snapshot = answer.await.ok()??;
        codec::decode(&snapshot.state).ok()
    }
}

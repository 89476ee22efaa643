//! Where a node's sessions save their state: to the driver, which keeps a
//! change only once its copy landed on the game's backup, and asks the
//! backup for a copy when a session restarts.

use crate::driver::{snapshot_of, ToDriver};
use async_trait::async_trait;
use minotaur_core::{codec, EngineError, Game, GameId, StateSink};
use tokio::sync::{mpsc, oneshot};

/// The sink of a node's sessions.
pub(crate) struct ControlSink {
    pub driver: mpsc::UnboundedSender<ToDriver>,
    pub factor: usize,
}

#[async_trait]
impl StateSink for ControlSink {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        let snapshot = snapshot_of(game)?;
        let (reply, answer) = oneshot::channel();
        self.driver
            .send(ToDriver::Save { snapshot, reply })
            .map_err(|_| EngineError::Unavailable("the node is stopping".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(EngineError::Unavailable("the node is stopping".into())))
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

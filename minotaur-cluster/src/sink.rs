//! Where a node's sessions save their state: to the driver, which keeps a
//! change only once its copy landed on the game's backup, and asks the
//! backup for a copy when a session restarts.
//!
//! A write is sent as its change alone; the control asks for the whole game
//! when the backup cannot replay the change on what it holds. With a
//! durable store, the whole game is also written there, at the same time,
//! and the save waits for both.

use crate::control::wire::{Delta, Update};
use crate::driver::{game_of, snapshot_of, DriverTx, Saved, ToDriver, View};
use crate::membership::{MemberId, MemberStatus};
use crate::store::Store;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use minotaur_core::{codec, Change, EngineError, Game, GameId, StateSink};
use std::sync::Arc;
use tokio::sync::oneshot;

/// The sink of a node's sessions.
pub(crate) struct ControlSink {
    pub driver: DriverTx,
    pub factor: usize,
    pub this: MemberId,
    pub view: Arc<ArcSwap<View>>,
    pub store: Option<Store>,
}

impl ControlSink {
    /// Whether no other member is up to copy a change to, no majority is
    /// needed to keep it, and no game here waits for confirmation.
    fn alone(&self) -> bool {
        let view = self.view.load();
        !view.fencing
            && !view.confirming
            && !view
                .members
                .iter()
                .any(|(m, status)| *status == MemberStatus::Up && m != &self.this)
    }

    /// Hands `update` to the driver and waits until it is kept (or, with
    /// no other member up, until it is handed over).
    /// Writes `game` to the durable store, if there is one, while `copied`
    /// runs; succeeds once both did.
    async fn store_and(
        &self,
        game: &Game,
        copied: impl std::future::Future<Output = Result<(), EngineError>>,
    ) -> Result<(), EngineError> {
        let Some(store) = &self.store else {
            return copied.await;
        };
        let stored = store.save(game.id, game.version, codec::encode(game)?);
        let (stored, copied) = futures::join!(stored, copied);
        stored.map_err(|e| EngineError::Unavailable(e.to_string()))?;
        copied
    }

    async fn keep(&self, update: Update) -> Result<Saved, EngineError> {
        let stopping = || EngineError::Leaving("the node is stopping".into());
        let (reply, answer) = oneshot::channel();
        self.driver
            .send(ToDriver::Save { update, reply })
            .map_err(|_| stopping())?;
        // With no other member up there is nowhere to copy to: the control
        // records the version (the conflict rule needs it) without the
        // session waiting for it, which would double a local command's
        // time. When a member comes up, the control has every game without
        // a backup saved again, so the copies follow.
        if self.alone() {
            return Ok(Saved::Kept);
        }
        answer.await.unwrap_or_else(|_| Err(stopping()))
    }
}

impl ControlSink {
    /// Copies the whole game to its backup.
    async fn copy_whole(&self, game: &Game) -> Result<(), EngineError> {
        // A game that could not be encoded could not be copied, moved or
        // sent either: refused here, with the codec's typed error. With
        // replication off a change is kept once the session has it.
        if self.factor == 0 {
            codec::encoded_len(game)?;
            return Ok(());
        }
        match self.keep(Update::Whole(snapshot_of(game)?)).await? {
            Saved::Kept => Ok(()),
            Saved::SendWhole => Err(EngineError::Unavailable(format!(
                "state of game {} not copied to a backup",
                game.id
            ))),
        }
    }

    /// Copies `change` to the game's backup, or the whole game if the
    /// backup cannot take the change alone.
    async fn copy_change(&self, game: &Game, change: &Change) -> Result<(), EngineError> {
        // The whole game must stay within the codec's limit, or it could
        // not be moved or copied whole later.
        codec::encoded_len(game)?;
        if self.factor == 0 {
            return Ok(());
        }
        let delta = Delta {
            id: game.id,
            version: game.version,
            active: game.is_active(),
            change: codec::encode(change)?,
        };
        match self.keep(Update::Delta(delta)).await? {
            Saved::Kept => Ok(()),
            Saved::SendWhole => self.copy_whole(game).await,
        }
    }
}

#[async_trait]
impl StateSink for ControlSink {
    async fn save(&self, game: &Game) -> Result<(), EngineError> {
        self.store_and(game, self.copy_whole(game)).await
    }

    async fn save_change(&self, game: &Game, change: &Change) -> Result<(), EngineError> {
        self.store_and(game, self.copy_change(game, change)).await
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
        game_of(&snapshot).ok()
    }
}

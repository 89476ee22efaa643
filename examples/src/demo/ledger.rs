//! What the bots saw: each bot's own ledger of the commands acknowledged
//! to it, which the final check holds against the games' final state, and
//! the counters all bots share.

use super::Report;
use minotaur_core::{EngineError, GameId, UserId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// What one bot saw acknowledged, for the final check.
#[derive(Debug)]
pub(super) struct Ledger {
    pub(super) game: GameId,
    pub(super) user: UserId,
    pub(super) acked: u64,
    /// The game version each acknowledgement carried.
    pub(super) acked_versions: Vec<u64>,
    /// Errors other than the rules': applied or not, nobody knows.
    pub(super) unknown: u64,
    /// A concluded game cannot be read back, so is not checked.
    pub(super) saw_conclusion: bool,
}

impl Ledger {
    /// An empty ledger for `user` in `game`.
    pub(super) fn new(game: GameId, user: UserId) -> Self {
        Ledger {
            game,
            user,
            acked: 0,
            acked_versions: Vec::new(),
            unknown: 0,
            saw_conclusion: false,
        }
    }

    /// A command acknowledged with the game at `version`.
    pub(super) fn record_ack(&mut self, version: u64) {
        self.acked += 1;
        self.acked_versions.push(version);
    }
}

/// The ledgers, by game.
pub(super) fn by_game(ledgers: Vec<Ledger>) -> HashMap<GameId, Vec<Ledger>> {
    let mut by_game: HashMap<GameId, Vec<Ledger>> = HashMap::new();
    for ledger in ledgers {
        by_game.entry(ledger.game).or_default().push(ledger);
    }
    by_game
}

/// Counters shared by every bot, named as in [`Report`].
#[derive(Default)]
pub(super) struct Stats {
    pub(super) sent: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) rejected: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) crash_failed: AtomicU64,
    pub(super) reads: AtomicU64,
    pub(super) read_errors: AtomicU64,
    /// Whether errors now count as `crash_failed`.
    crashed: AtomicBool,
    samples: Mutex<Vec<String>>,
}

impl Stats {
    /// From now on, errors count as `crash_failed`.
    pub(super) fn crash_begins(&self) {
        self.crashed.store(true, Ordering::SeqCst);
    }

    /// A call through `via` for game `id` failed with `error`, other
    /// than by the rules: its outcome is unknown.
    pub(super) fn failed(&self, via: &str, id: GameId, error: &EngineError) {
        let phase = if self.crashed.load(Ordering::SeqCst) {
            self.crash_failed.fetch_add(1, Ordering::Relaxed);
            "around the crash"
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
            "before the crash"
        };
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < 10 {
            samples.push(format!("{phase}, via {via}: game {id}: {error}"));
        }
    }

    /// Copies the counters and error samples into `report`.
    pub(super) fn count_into(&self, report: &mut Report) {
        report.sent = self.sent.load(Ordering::SeqCst);
        report.acked = self.acked.load(Ordering::SeqCst);
        report.rejected = self.rejected.load(Ordering::SeqCst);
        report.failed = self.failed.load(Ordering::SeqCst);
        report.crash_failed = self.crash_failed.load(Ordering::SeqCst);
        report.reads = self.reads.load(Ordering::SeqCst);
        report.read_errors = self.read_errors.load(Ordering::SeqCst);
        report.error_samples = self
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
    }
}

//! The check at the end: every game read back and held against its
//! bots' ledgers, as the module docs of `demo` describe.

use super::ledger::{self, Ledger};
use super::{Report, WAIT};
use minotaur_core::{EngineError, Game, GameEngine, GameId};
use minotaur_testkit::wait::{eventually, WaitError};
use std::collections::BTreeMap;

/// Reads every game back through `engine` and counts into `report` the
/// games alive or concluded and the commands lost or duplicated.
pub(super) async fn check_games(
    report: &mut Report,
    games: &[Game],
    ledgers: Vec<Ledger>,
    engine: &GameEngine,
) -> Result<(), WaitError> {
    let mut by_game = ledger::by_game(ledgers);
    for game in games {
        let bots = by_game.remove(&game.id).unwrap_or_default();
        let concluded = bots.iter().any(|l| l.saw_conclusion);
        match read_back(engine, game.id).await? {
            Some(state) => {
                if state.is_active() {
                    report.alive += 1;
                }
                let (lost, duplicated) = check_game(&state, &bots);
                report.lost += lost;
                if lost > 0 && report.losses.len() < MAX_LOSSES_SHOWN {
                    report.losses.push(describe_loss(&state, &bots));
                }
                report.duplicated += duplicated;
            }
            None if concluded => report.concluded += 1,
            None => report.lost += bots.iter().map(|l| l.acked).sum::<u64>(),
        }
    }
    Ok(())
}

/// Games whose losses the report details.
const MAX_LOSSES_SHOWN: usize = 5;

/// What the bots of a game with losses saw acknowledged, against its final
/// state: enough to tell a lost copy from a forked version.
fn describe_loss(state: &Game, bots: &[Ledger]) -> String {
    let mut out = format!("game {} at version {}:", state.id, state.version);
    for ledger in bots {
        let accepted = state.player(&ledger.user).map_or(0, |p| p.actions_accepted);
        let last: Vec<u64> = ledger
            .acked_versions
            .iter()
            .rev()
            .take(4)
            .rev()
            .copied()
            .collect();
        out += &format!(
            " {} acked {} (last at versions {:?}), {} accepted;",
            ledger.user, ledger.acked, last, accepted
        );
    }
    out
}

/// Game `id`'s final state, or `None` if it is no longer alive.
async fn read_back(engine: &GameEngine, id: GameId) -> Result<Option<Game>, WaitError> {
    eventually(&format!("game {id} to be read"), WAIT, || async move {
        match engine.get_game(id).await {
            Ok(game) => Ok(Some(game)),
            Err(EngineError::GameNotAlive(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

/// Acknowledged-but-lost and over-applied commands of one game, from its
/// final state and its bots' ledgers (see the module docs of `demo`).
pub(super) fn check_game(state: &Game, bots: &[Ledger]) -> (u64, u64) {
    let mut deficit = 0;
    let mut duplicated = 0;
    let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
    for ledger in bots {
        let accepted = state.player(&ledger.user).map_or(0, |p| p.actions_accepted);
        deficit += ledger.acked.saturating_sub(accepted);
        duplicated += accepted.saturating_sub(ledger.acked + ledger.unknown);
        for v in &ledger.acked_versions {
            *versions.entry(*v).or_default() += 1;
        }
    }
    let same_version: u64 = versions.values().map(|n| n - 1).sum();
    let above_final: u64 = versions.range(state.version + 1..).map(|(_, n)| *n).sum();
    (deficit.max(same_version).max(above_final), duplicated)
}

//! A standalone Minotaur engine playing one game to its end: the smallest
//! runnable tour of the API.

use minotaur_core::{Command, EngineError, GameConfig, GameEngine, GameStatus, Hex, UserId};

#[tokio::main]
async fn main() -> Result<(), EngineError> {
    let engine = GameEngine::standalone(GameConfig::default()).await?;
    let (ann, bob): (UserId, UserId) = ("ann".into(), "bob".into());
    let game = engine
        .create_game("ABCD", vec![ann.clone(), bob.clone()])
        .await?;
    println!("created game {} (join code {})", game.id, game.join_code);

    // Walk both characters towards the centre, then trade blows.
    let mut state = game;
    while state.is_active() {
        for (me, other) in [(&ann, &bob), (&bob, &ann)] {
            let status = engine.get_player_status(state.id, me.clone()).await?;
            let foe = engine.get_player_status(state.id, other.clone()).await?;
            let result = if status.position.distance(foe.position) <= 1 {
                engine
                    .register_attack(state.id, me.clone(), other.clone())
                    .await
            } else {
                let step = Hex::DIRECTIONS
                    .into_iter()
                    .filter(|d| state.world.walkable(status.position + *d))
                    .min_by_key(|d| (status.position + *d).distance(foe.position))
                    .unwrap_or(Hex::DIRECTIONS[0]);
                engine.register_move(state.id, me.clone(), step).await
            };
            if let Err(e) = result {
                println!("round {}: {me}: {e}", state.round);
            }
        }
        let ended = state.round;
        // A write answers an `Ack` (version, round, status); this one asks
        // for the whole game after it, to print the players. (Once the game
        // concludes its session stops, so it could not be read afterwards.)
        state = engine
            .apply_once_and_get(state.id, rand::random(), Command::EndRound)
            .await?;
        let hp: Vec<String> = state
            .players
            .iter()
            .map(|p| format!("{}@{} hp={}", p.user, p.position, p.health))
            .collect();
        println!("round {ended} ended: {}", hp.join(", "));
        if state.round > 50 {
            break;
        }
    }
    match state.status {
        GameStatus::Concluded { winner: Some(w) } => println!("winner: {w}"),
        GameStatus::Concluded { winner: None } => println!("draw"),
        GameStatus::Active => println!("still active after {} rounds", state.round),
    }
    Ok(())
}

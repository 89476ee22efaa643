//! Who may do what over HTTP, with tokens on: two in-process nodes whose
//! endpoints share the operator token and the player key. The operator
//! creates a game and gets its players' tokens; a player acts only as
//! themselves and only in their game, through either node; missing,
//! malformed, forged, tampered and expired tokens are refused with 401,
//! and a valid token used beyond its rights with 403.

mod common;

use common::{client, url, Addrs};
use minotaur_core::GameId;
use minotaur_examples::auth::{Access, Auth, GameTokens, Role};
use minotaur_examples::http::{CreatedGame, ErrorBody, HttpOptions};
use minotaur_testkit::TestCluster;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const OPERATOR: &str = "auth-test-operator-token-5e0b";
const KEY: &[u8] = b"auth-test-player-key-93c1a7";

fn auth(metrics_public: bool) -> Auth {
    let mut auth = Auth::new(OPERATOR, KEY).expect("secrets long enough");
    auth.metrics_public = metrics_public;
    auth
}

/// Sends `request` with `token` (none: no header) and answers its status
/// and error name (empty on success).
async fn status_of(request: reqwest::RequestBuilder, token: Option<&str>) -> (StatusCode, String) {
    let request = match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let response = request.send().await.expect("an answer");
    let status = response.status();
    if status.is_success() {
        return (status, String::new());
    }
    let body: ErrorBody = response.json().await.expect("a JSON error body");
    (status, body.error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn players_act_only_as_themselves_and_the_operator_runs_the_rest(
) -> Result<(), Box<dyn std::error::Error>> {
    let options = HttpOptions {
        access: Access::Tokens(Arc::new(auth(false))),
        ..HttpOptions::default()
    };
    let addrs = Addrs::default();
    let cluster =
        common::with_http_options(TestCluster::builder().nodes(2), 0, addrs.clone(), options)
            .start()
            .await?;
    let (n1, n2) = (url(&addrs, "n1"), url(&addrs, "n2"));
    let http = client();
    let create = || {
        http.post(format!("{n1}/games"))
            .json(&json!({"join_code": "AUTH1", "users": ["ann", "bob", "cy"]}))
    };

    // Creating is the operator's: no token, a wrong one, a player's.
    assert_eq!(
        status_of(create(), None).await,
        (StatusCode::UNAUTHORIZED, "MissingToken".into())
    );
    assert_eq!(
        status_of(create(), Some("not-the-operator-token-at-all")).await,
        (StatusCode::UNAUTHORIZED, "InvalidToken".into())
    );
    let malformed = create().header("authorization", format!("Basic {OPERATOR}"));
    assert_eq!(
        status_of(malformed, None).await,
        (StatusCode::UNAUTHORIZED, "MalformedAuthorization".into())
    );
    let created: CreatedGame = create()
        .bearer_auth(OPERATOR)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created.game.id;
    let tokens = created.tokens.clone().expect("tokens with the game");
    assert_eq!(tokens.players.len(), 3);
    let ann = tokens.players[&"ann".into()].clone();
    let bob = tokens.players[&"bob".into()].clone();
    assert_eq!(
        status_of(create(), Some(&ann)).await,
        (StatusCode::FORBIDDEN, "OperatorOnly".into())
    );

    // A player attacks as themselves, through either node: the key is
    // the cluster's.
    let attack = |base: &str, user: &str, target: &str| {
        http.post(format!("{base}/games/{id}/attacks"))
            .json(&json!({"user": user, "target": target}))
    };
    assert_eq!(
        status_of(attack(&n1, "ann", "bob"), Some(&ann)).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status_of(attack(&n2, "bob", "cy"), Some(&bob)).await.0,
        StatusCode::OK
    );
    // Not as another player, not as a spectator, not as the operator,
    // not without a token.
    assert_eq!(
        status_of(attack(&n2, "bob", "ann"), Some(&ann)).await,
        (StatusCode::FORBIDDEN, "WrongPlayer".into())
    );
    assert_eq!(
        status_of(attack(&n1, "ann", "cy"), Some(&tokens.spectator)).await,
        (StatusCode::FORBIDDEN, "WrongPlayer".into())
    );
    assert_eq!(
        status_of(attack(&n1, "ann", "cy"), Some(OPERATOR)).await,
        (StatusCode::FORBIDDEN, "WrongPlayer".into())
    );
    assert_eq!(
        status_of(attack(&n1, "ann", "cy"), None).await,
        (StatusCode::UNAUTHORIZED, "MissingToken".into())
    );
    let moved = http
        .post(format!("{n1}/games/{id}/moves"))
        .json(&json!({"user": "bob", "vector": {"q": 1, "r": 0}}));
    assert_eq!(
        status_of(moved, Some(&ann)).await,
        (StatusCode::FORBIDDEN, "WrongPlayer".into())
    );

    // Forged (another key), tampered and expired tokens.
    let forger = Auth::new(OPERATOR, b"some-other-player-key-0000").expect("secrets");
    let later = SystemTime::now() + Duration::from_secs(3600);
    let forged = forger.issue(id, &Role::Player("ann".into()), later)?;
    assert_eq!(
        status_of(attack(&n1, "ann", "cy"), Some(&forged)).await,
        (StatusCode::UNAUTHORIZED, "InvalidToken".into())
    );
    // Ann's token with bob's name put in: the signature no longer holds.
    let mut parts: Vec<String> = ann.split('.').map(str::to_string).collect();
    let bobs_claims: Vec<&str> = bob.split('.').collect();
    parts[1] = bobs_claims[1].to_string();
    let tampered = parts.join(".");
    assert_eq!(
        status_of(attack(&n1, "bob", "cy"), Some(&tampered)).await,
        (StatusCode::UNAUTHORIZED, "InvalidToken".into())
    );
    let expired = auth(false).issue(
        id,
        &Role::Player("ann".into()),
        SystemTime::now() - Duration::from_secs(120),
    )?;
    assert_eq!(
        status_of(attack(&n1, "ann", "cy"), Some(&expired)).await,
        (StatusCode::UNAUTHORIZED, "ExpiredToken".into())
    );

    // A token of another game acts in none but its own.
    let other: CreatedGame = http
        .post(format!("{n2}/games"))
        .bearer_auth(OPERATOR)
        .json(&json!({"join_code": "AUTH2", "users": ["ann", "dee"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ann_elsewhere = other.tokens.expect("tokens").players[&"ann".into()].clone();
    assert_eq!(
        status_of(attack(&n1, "ann", "cy"), Some(&ann_elsewhere)).await,
        (StatusCode::FORBIDDEN, "WrongGame".into())
    );
    let read = |base: &str| http.get(format!("{base}/games/{id}"));
    assert_eq!(
        status_of(read(&n1), Some(&ann_elsewhere)).await,
        (StatusCode::FORBIDDEN, "WrongGame".into())
    );

    // Reads: the game's players and spectators, and the operator.
    for token in [&ann, &tokens.spectator, &OPERATOR.to_string()] {
        assert_eq!(status_of(read(&n2), Some(token)).await.0, StatusCode::OK);
    }
    assert_eq!(
        status_of(read(&n2), None).await,
        (StatusCode::UNAUTHORIZED, "MissingToken".into())
    );
    let status = http.get(format!("{n1}/games/{id}/players/bob"));
    assert_eq!(
        status_of(status, Some(&tokens.spectator)).await.0,
        StatusCode::OK
    );
    let listed = |user: &str| http.get(format!("{n1}/users/{user}/games"));
    assert_eq!(status_of(listed("ann"), Some(&ann)).await.0, StatusCode::OK);
    assert_eq!(
        status_of(listed("bob"), Some(&ann)).await,
        (StatusCode::FORBIDDEN, "WrongPlayer".into())
    );

    // The operator's routes.
    let end_round = || http.post(format!("{n2}/games/{id}/end-round"));
    assert_eq!(
        status_of(end_round(), Some(&ann)).await,
        (StatusCode::FORBIDDEN, "OperatorOnly".into())
    );
    assert_eq!(
        status_of(end_round(), Some(OPERATOR)).await.0,
        StatusCode::OK
    );
    for path in ["/cluster", "/metrics", "/games/by-code/auth1"] {
        let get = || http.get(format!("{n1}{path}"));
        assert_eq!(
            status_of(get(), None).await,
            (StatusCode::UNAUTHORIZED, "MissingToken".into()),
            "{path}"
        );
        assert_eq!(
            status_of(get(), Some(&ann)).await,
            (StatusCode::FORBIDDEN, "OperatorOnly".into()),
            "{path}"
        );
        assert_eq!(
            status_of(get(), Some(OPERATOR)).await.0,
            StatusCode::OK,
            "{path}"
        );
    }
    // Health is for load balancers: open.
    assert_eq!(
        status_of(http.get(format!("{n1}/health")), None).await.0,
        StatusCode::OK
    );

    // Fresh tokens from the operator, for a player whose token expired.
    let fresh: GameTokens = http
        .post(format!("{n2}/games/{id}/tokens"))
        .bearer_auth(OPERATOR)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let ann_again = fresh.players[&"ann".into()].clone();
    assert_eq!(
        status_of(attack(&n2, "ann", "cy"), Some(&ann_again))
            .await
            .0,
        StatusCode::OK
    );
    let fresh_for_player = http.post(format!("{n2}/games/{id}/tokens"));
    assert_eq!(
        status_of(fresh_for_player, Some(&ann)).await,
        (StatusCode::FORBIDDEN, "OperatorOnly".into())
    );
    let unknown = http.post(format!("{n2}/games/{}/tokens", GameId::random()));
    assert_eq!(
        status_of(unknown, Some(OPERATOR)).await,
        (StatusCode::NOT_FOUND, "GameNotAlive".into())
    );

    // Every write above that was refused left the game alone: two attacks
    // by their players, one round ended, one attack with a fresh token.
    let game: minotaur_core::Game = http
        .get(format!("{n1}/games/{id}"))
        .bearer_auth(&ann)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(game.version, 4, "{game:?}");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_may_be_public_while_the_rest_asks_for_tokens(
) -> Result<(), Box<dyn std::error::Error>> {
    let options = HttpOptions {
        access: Access::Tokens(Arc::new(auth(true))),
        ..HttpOptions::default()
    };
    let addrs = Addrs::default();
    let cluster =
        common::with_http_options(TestCluster::builder().nodes(1), 0, addrs.clone(), options)
            .start()
            .await?;
    let n1 = url(&addrs, "n1");
    let http = client();
    assert_eq!(
        status_of(http.get(format!("{n1}/metrics")), None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        status_of(http.get(format!("{n1}/cluster")), None).await,
        (StatusCode::UNAUTHORIZED, "MissingToken".into())
    );
    cluster.shutdown().await;
    Ok(())
}

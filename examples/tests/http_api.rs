//! The node's HTTP endpoint against a real two-node cluster: every route,
//! the error mapping, and hostile input (which gets a 4xx with a JSON error,
//! after which the node keeps serving).

mod common;

use common::{client, url, with_http, Addrs};
use minotaur_core::{Ack, Game, GameStatus, PlayerStatus};
use minotaur_examples::http::{ClusterStatus, ErrorBody, MAX_BODY_BYTES};
use minotaur_testkit::TestCluster;
use reqwest::StatusCode;
use serde_json::json;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn cluster() -> Result<(TestCluster, Addrs), Box<dyn std::error::Error>> {
    let addrs = Addrs::default();
    let cluster = with_http(TestCluster::builder().nodes(2), 0, addrs.clone())
        .start()
        .await?;
    Ok((cluster, addrs))
}

/// Asserts `response` is `status` with a JSON error body named `error`.
async fn expect_error(response: reqwest::Response, status: StatusCode, error: &str) -> TestResult {
    assert_eq!(response.status(), status, "for expected error {error}");
    let body: ErrorBody = response.json().await?;
    assert_eq!(body.error, error, "{body:?}");
    assert!(!body.message.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_for_games_anywhere_in_the_cluster() -> TestResult {
    let (cluster, addrs) = cluster().await?;
    let (n1, n2) = (url(&addrs, "n1"), url(&addrs, "n2"));
    let http = client();

    let created = http
        .post(format!("{n1}/games"))
        .json(&json!({"join_code": "abcd", "users": ["ann", "bob"]}))
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    let game: Game = created.json().await?;
    assert_eq!(game.join_code.as_str(), "ABCD");
    let owner = cluster.where_is(game.id).expect("hosted somewhere");
    let elsewhere = if owner == "n1" { &n2 } else { &n1 };

    // Reads through the node that does not host the game.
    let by_id: Game = http
        .get(format!("{elsewhere}/games/{}", game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(by_id, game);
    let confirmed: Game = http
        .get(format!("{elsewhere}/games/{}/confirmed", game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(confirmed, game);
    let by_code: Game = http
        .get(format!("{elsewhere}/games/by-code/AbCd"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(by_code.id, game.id);

    // A move, then an attack the rules refuse (1 point left, 2 needed).
    let ann = game.player(&"ann".into()).unwrap().position;
    let step = minotaur_core::Hex::DIRECTIONS
        .into_iter()
        .find(|d| game.world.walkable(ann + *d))
        .unwrap();
    let moved: Ack = http
        .post(format!("{elsewhere}/games/{}/moves", game.id))
        .json(&json!({"user": "ann", "vector": {"q": step.q, "r": step.r}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(moved.version, 1);
    let refused = http
        .post(format!("{elsewhere}/games/{}/attacks", game.id))
        .json(&json!({"user": "ann", "target": "bob"}))
        .send()
        .await?;
    expect_error(
        refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "NotEnoughActionPoints",
    )
    .await?;
    let attacked: Ack = http
        .post(format!("{n1}/games/{}/attacks", game.id))
        .json(&json!({"user": "bob", "target": "ann"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(attacked.version, 2);
    assert_eq!((attacked.id, attacked.round), (game.id, 1));

    let status: PlayerStatus = http
        .get(format!("{n2}/games/{}/players/ann", game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(status.action_points, 1);
    assert_eq!(status.registered.len(), 1);
    let unknown = http
        .get(format!("{n2}/games/{}/players/zed", game.id))
        .send()
        .await?;
    expect_error(unknown, StatusCode::NOT_FOUND, "PlayerNotFound").await?;

    let ended: Ack = http
        .post(format!("{n2}/games/{}/end-round", game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!((ended.round, ended.version), (2, 3));
    assert_eq!(ended.status, GameStatus::Active);
    assert!(ended.round_ends_at_ms > game.round_ends_at_ms);

    let games: Vec<Game> = http
        .get(format!("{n1}/users/bob/games"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(games.len(), 1);
    assert_eq!(games[0].id, game.id);
    let none: Vec<Game> = http
        .get(format!("{n1}/users/nobody/games"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert!(none.is_empty());

    let status: ClusterStatus = http
        .get(format!("{n2}/cluster"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(status.node, "n2");
    assert_eq!(status.members.len(), 2);
    assert!(status.members.iter().all(|m| m.status == "up"));
    assert_eq!(status.games_per_node.get(&owner), Some(&1));
    assert_eq!(status.games_per_node.values().sum::<usize>(), 1);

    // Errors of the engine map to their codes.
    let taken = http
        .post(format!("{n2}/games"))
        .json(&json!({"join_code": "ABCD", "users": ["cy", "di"]}))
        .send()
        .await?;
    expect_error(taken, StatusCode::CONFLICT, "JoinCodeTaken").await?;
    let alone = http
        .post(format!("{n2}/games"))
        .json(&json!({"join_code": "WXYZ", "users": ["cy"]}))
        .send()
        .await?;
    expect_error(alone, StatusCode::BAD_REQUEST, "PlayerCount").await?;
    let missing = http
        .get(format!("{n1}/games/{}", minotaur_core::GameId::random()))
        .send()
        .await?;
    expect_error(missing, StatusCode::NOT_FOUND, "GameNotAlive").await?;
    let no_code = http.get(format!("{n1}/games/by-code/QQQQ")).send().await?;
    expect_error(no_code, StatusCode::NOT_FOUND, "UnknownJoinCode").await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_a_4xx_json_error_and_the_node_keeps_serving() -> TestResult {
    let (cluster, addrs) = cluster().await?;
    let n1 = url(&addrs, "n1");
    let http = client();
    let game: Game = http
        .post(format!("{n1}/games"))
        .json(&json!({"join_code": "HOST", "users": ["ann", "bob"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let moves = format!("{n1}/games/{}/moves", game.id);

    let raw = |url: &str, body: Vec<u8>| {
        http.post(url)
            .header("content-type", "application/json")
            .body(body)
    };
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            raw(&moves, b"{\"user\": \"ann\", \"vec".to_vec()),
            StatusCode::BAD_REQUEST,
            "MalformedJson",
        ),
        (
            raw(&moves, b"\xff\xfe\x00garbage".to_vec()),
            StatusCode::BAD_REQUEST,
            "MalformedJson",
        ),
        (
            raw(
                &moves,
                b"{\"user\": 5, \"vector\": {\"q\": 1, \"r\": 0}}".to_vec(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBody",
        ),
        (
            raw(
                &moves,
                b"{\"user\": \"ann\", \"vector\": {\"q\": \"far\", \"r\": 0}}".to_vec(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBody",
        ),
        (
            raw(
                &moves,
                b"{\"user\": \"ann\", \"vector\": {\"q\": 99999999999, \"r\": 0}}".to_vec(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBody",
        ),
        (
            raw(
                &moves,
                b"{\"user\": \"ann\", \"vector\": {\"q\": 1, \"r\": 0}, \"extra\": 1}".to_vec(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBody",
        ),
        (
            raw(&moves, b"[]".to_vec()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBody",
        ),
        (
            raw(&moves, vec![b' '; MAX_BODY_BYTES + 1]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "BodyTooLarge",
        ),
        (
            raw(
                &format!("{n1}/games"),
                format!(
                    "{{\"join_code\":\"ABCD\",\"users\":[{}]}}",
                    vec!["\"u\""; 100_000].join(",")
                )
                .into_bytes(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "BodyTooLarge",
        ),
        (
            http.post(&moves)
                .header("content-type", "text/plain")
                .body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "NotJson",
        ),
        (
            http.post(&moves).body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "NotJson",
        ),
        // Moves the rules refuse, however large the numbers.
        (
            raw(
                &moves,
                b"{\"user\": \"ann\", \"vector\": {\"q\": 2147483647, \"r\": -2147483648}}"
                    .to_vec(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidMove",
        ),
        (
            raw(
                &moves,
                b"{\"user\": \"ann\", \"vector\": {\"q\": 0, \"r\": 0}}".to_vec(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidMove",
        ),
        (
            raw(
                &format!("{n1}/games"),
                format!(
                    "{{\"join_code\":\"ABCD\",\"users\":[\"{}\",\"b\"]}}",
                    "x".repeat(1000)
                )
                .into_bytes(),
            ),
            StatusCode::BAD_REQUEST,
            "InvalidUser",
        ),
        (
            raw(
                &format!("{n1}/games"),
                b"{\"join_code\":\"no spaces\",\"users\":[\"a\",\"b\"]}".to_vec(),
            ),
            StatusCode::BAD_REQUEST,
            "InvalidJoinCode",
        ),
        (
            http.get(format!("{n1}/games/not-a-uuid")),
            StatusCode::BAD_REQUEST,
            "InvalidGameId",
        ),
        (
            http.get(format!("{n1}/games/{}/players/{}", "1".repeat(500), "ann")),
            StatusCode::BAD_REQUEST,
            "InvalidGameId",
        ),
        (
            http.get(format!("{n1}/games/by-code/{}", "Z".repeat(300))),
            StatusCode::BAD_REQUEST,
            "InvalidJoinCode",
        ),
        (
            http.get(format!("{n1}/games/by-code/%00%01")),
            StatusCode::BAD_REQUEST,
            "InvalidJoinCode",
        ),
        (
            http.get(format!("{n1}/no/such/route")),
            StatusCode::NOT_FOUND,
            "NotFound",
        ),
        (
            http.get(format!("{n1}/index.html")),
            StatusCode::NOT_FOUND,
            "NotFound",
        ),
        (
            http.post(format!("{n1}/")),
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            http.delete(format!("{n1}/games/{}", game.id)),
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
        (
            http.get(&moves),
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
        ),
    ];
    for (i, (request, status, error)) in cases.into_iter().enumerate() {
        let response = request.send().await?;
        assert!(
            response.status().is_client_error(),
            "case {i}: {} is not a 4xx",
            response.status()
        );
        expect_error(response, status, error)
            .await
            .map_err(|e| format!("case {i}: {e}"))?;
    }

    // Nothing of that changed the game, and the node still serves.
    let after: Game = http
        .get(format!("{n1}/games/{}", game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(after.version, 0);
    let health = http.get(format!("{n1}/health")).send().await?;
    assert_eq!(health.status(), StatusCode::OK);
    let created = http
        .post(format!("{n1}/games"))
        .json(&json!({"join_code": "NEXT", "users": ["ann", "bob"]}))
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    cluster.shutdown().await;
    Ok(())
}

/// A client that retries a write with the same `Idempotency-Key`, through
/// any node, has it applied once; a new key applies it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_retried_with_its_idempotency_key_applies_once() -> TestResult {
    let (cluster, addrs) = cluster().await?;
    let (n1, n2) = (url(&addrs, "n1"), url(&addrs, "n2"));
    let http = client();
    let game: Game = http
        .post(format!("{n1}/games"))
        .json(&json!({"join_code": "once", "users": ["ann", "bob"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let end_round = |base: &str, key: &str| {
        http.post(format!("{base}/games/{}/end-round", game.id))
            .header("Idempotency-Key", key)
            .send()
    };
    let key = "5f0c6f0e-8d7c-4a51-9b0e-2f4b8e1d2c3a";
    let first: Ack = end_round(&n1, key)
        .await?
        .error_for_status()?
        .json()
        .await?;
    // The retry goes to the other node, as a client behind a load balancer's would.
    let retry: Ack = end_round(&n2, key)
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(first.round, game.round + 1);
    assert_eq!(retry.round, first.round, "the retry was not applied again");
    assert_eq!(retry, first);

    let other = "0b9d7f52-3c1e-4e0a-8f7d-6a5b4c3d2e1f";
    let next: Ack = end_round(&n2, other)
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(next.round, first.round + 1, "a new key is a new write");

    for bad in ["not-a-uuid", ""] {
        expect_error(
            end_round(&n1, bad).await?,
            StatusCode::BAD_REQUEST,
            "InvalidIdempotencyKey",
        )
        .await?;
    }
    let now: Game = http
        .get(format!("{n1}/games/{}", game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(now.round, next.round, "refused requests changed nothing");
    cluster.shutdown().await;
    Ok(())
}

/// A write answers its small ack by default, the whole game with
/// `?answer=game`, and a 400 for any other answer asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_answers_an_ack_or_the_game_it_asks_for() -> TestResult {
    let (cluster, addrs) = cluster().await?;
    let (n1, n2) = (url(&addrs, "n1"), url(&addrs, "n2"));
    let http = client();
    let game: Game = http
        .post(format!("{n1}/games"))
        .json(&json!({"join_code": "asks", "users": ["ann", "bob"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let read = || async {
        let game: Game = http
            .get(format!("{n1}/games/{}", game.id))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok::<Game, Box<dyn std::error::Error>>(game)
    };
    let attack = |base: &str, query: &str| {
        http.post(format!("{base}/games/{}/attacks{query}", game.id))
            .json(&json!({"user": "ann", "target": "bob"}))
    };

    // By default: the ack, and nothing more.
    let body: serde_json::Value = attack(&n2, "")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut fields: Vec<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        ["id", "round", "round_ends_at_ms", "status", "version"],
        "{body}"
    );
    let ack: Ack = serde_json::from_value(body)?;
    let after = read().await?;
    assert_eq!(ack, Ack::of(&after));
    assert_eq!(after.version, 1);
    // `?answer=ack` is the same.
    let end_round =
        |base: &str, query: &str| http.post(format!("{base}/games/{}/end-round{query}", game.id));
    let ack: Ack = end_round(&n1, "?answer=ack")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!((ack.version, ack.round), (2, 2));

    // `?answer=game`: the whole game after the write, through either node.
    let whole: Game = attack(&n2, "?answer=game")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(whole.version, 3);
    assert_eq!(whole.actions.len(), 1, "the attack, registered");
    assert_eq!(whole, read().await?);
    // With an Idempotency-Key, a retry answers the game as it is, unchanged.
    let key = "7c1e0f3a-2b4d-4c6e-8f0a-1b2c3d4e5f60";
    let keyed = || {
        http.post(format!("{n1}/games/{}/end-round?answer=game", game.id))
            .header("Idempotency-Key", key)
    };
    let first: Game = keyed().send().await?.error_for_status()?.json().await?;
    let retry: Game = keyed().send().await?.error_for_status()?.json().await?;
    assert_eq!((first.version, first.round), (4, 3));
    assert_eq!(retry, first, "the retry was not applied again");

    // Any other answer is refused before anything is applied.
    for query in [
        "?answer=",
        "?answer=Game",
        "?answer=everything",
        "?answer=ack&answer=game",
        "?answer=%FF",
    ] {
        expect_error(
            attack(&n1, query).send().await?,
            StatusCode::BAD_REQUEST,
            "InvalidQuery",
        )
        .await
        .map_err(|e| format!("{query}: {e}"))?;
        expect_error(
            end_round(&n2, query).send().await?,
            StatusCode::BAD_REQUEST,
            "InvalidQuery",
        )
        .await
        .map_err(|e| format!("{query}: {e}"))?;
    }
    let move_to = http
        .post(format!("{n1}/games/{}/moves?answer=all", game.id))
        .json(&json!({"user": "ann", "vector": {"q": 1, "r": 0}}))
        .send()
        .await?;
    expect_error(move_to, StatusCode::BAD_REQUEST, "InvalidQuery").await?;
    assert_eq!(read().await?, first, "refused requests changed nothing");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_gets_429_while_another_keeps_being_served() -> TestResult {
    use minotaur_examples::http::HttpOptions;
    use minotaur_examples::rate_limit::RateLimit;
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    // One request a second after a burst of 20: no test machine is slow
    // enough for the flooder's quota to refill while the test looks.
    let limit = RateLimit {
        per_second: NonZeroU32::new(1).expect("non-zero"),
        burst: NonZeroU32::new(20).expect("non-zero"),
    };
    let options = HttpOptions {
        rate_limit: Some(limit),
        ..HttpOptions::default()
    };
    let addrs = Addrs::default();
    let cluster =
        common::with_http_options(TestCluster::builder().nodes(1), 0, addrs.clone(), options)
            .start()
            .await?;
    let n1 = url(&addrs, "n1");
    // Two clients, told apart by their addresses (all of 127/8 is local).
    let from = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(IpAddr::from(ip))
            .timeout(std::time::Duration::from_secs(10))
            .build()
    };
    let (flooder, other) = (from([127, 0, 0, 1])?, from([127, 0, 0, 2])?);

    // The flooder sends far beyond its burst at once.
    let mut floods = tokio::task::JoinSet::new();
    for _ in 0..200 {
        floods.spawn(flooder.get(format!("{n1}/health")).send());
    }
    let mut refused = None;
    let (mut ok, mut limited) = (0, 0);
    while let Some(answer) = floods.join_next().await {
        let answer = answer??;
        match answer.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                refused.get_or_insert(answer);
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(limited > 0 && ok >= 20, "{ok} served, {limited} refused");
    let refused = refused.expect("a refusal");
    let retry_after: u64 = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header in seconds");
    assert!(retry_after >= 1);
    expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "TooManyRequests").await?;

    // The other client, at once and while the flooder is still over its
    // limit, is served every time.
    for _ in 0..10 {
        let answer = other.get(format!("{n1}/health")).send().await?;
        assert_eq!(answer.status(), StatusCode::OK);
    }
    drop(cluster);
    Ok(())
}

//! `GET /games/{id}/events` with tokens on: a player's client follows its
//! game through a node that does not own it, across the owner's graceful
//! leave, resumes with `Last-Event-ID`, and is refused with the usual
//! errors without a token of the game or beyond the subscriber limits.

mod common;

use common::{client, url, Addrs};
use minotaur_core::{Game, SubscriberLimits};
use minotaur_examples::auth::{Access, Auth};
use minotaur_examples::game_events::Changed;
use minotaur_examples::http::{CreatedGame, ErrorBody, HttpOptions};
use minotaur_testkit::TestCluster;
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const OPERATOR: &str = "events-test-operator-token-77a1";
const KEY: &[u8] = b"events-test-player-key-0c4e9d";

/// One Server-Sent Event.
#[derive(Debug, Default)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

/// An open event stream, read event by event.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    /// Opens `url` with `token` and, if given, `last`: the stream, or the
    /// refusal's status and error name.
    async fn open(
        url: &str,
        token: Option<&str>,
        last: Option<&str>,
    ) -> Result<Stream, (StatusCode, String)> {
        // No whole-request deadline: a stream lasts. Each read is bounded.
        let mut request = reqwest::Client::new().get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        let response = tokio::time::timeout(Duration::from_secs(10), request.send())
            .await
            .expect("answered within 10 s")
            .expect("an answer");
        let status = response.status();
        if !status.is_success() {
            let body: ErrorBody = response.json().await.expect("a JSON error");
            return Err((status, body.error));
        }
        Ok(Stream {
            response,
            buffer: String::new(),
        })
    }

    /// The next event (keep-alive comments skipped), within 10 s.
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent::default();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ").or(line.strip_prefix("id:")) {
                        event.id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        event.data += v;
                    }
                }
                if !event.event.is_empty() {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within 10 s; have {:?}", self.buffer))
                .expect("the stream goes on")
                .unwrap_or_else(|| panic!("the stream ended; have {:?}", self.buffer));
            self.buffer += &String::from_utf8_lossy(&chunk);
        }
    }
}

/// The version and kind of a change event, checked against its data.
fn change(event: &SseEvent) -> (u64, String) {
    let changed: Changed = serde_json::from_str(&event.data).expect("a change");
    assert_eq!(event.id.as_deref(), Some(&*changed.version.to_string()));
    assert!(changed.events.iter().all(|e| e.version == changed.version));
    (changed.version, event.event.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_follows_a_game_through_a_handoff_and_resumes_where_it_stopped(
) -> Result<(), Box<dyn std::error::Error>> {
    let options = HttpOptions {
        access: Access::Tokens(Arc::new(Auth::new(OPERATOR, KEY)?)),
        subscribers: SubscriberLimits {
            per_game: 2,
            per_node: 3,
        },
        ..HttpOptions::default()
    };
    let addrs = Addrs::default();
    let cluster =
        common::with_http_options(TestCluster::builder().nodes(3), 0, addrs.clone(), options)
            .start()
            .await?;
    let http = client();
    let create = |code: &str| {
        http.post(format!("{}/games", url(&addrs, "n1")))
            .bearer_auth(OPERATOR)
            .json(&json!({"join_code": code, "users": ["ann", "bob"]}))
    };
    let created: CreatedGame = create("EVT1")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let other: CreatedGame = create("EVT2")
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = created.game.id;
    let tokens = created.tokens.expect("tokens");
    let ann = tokens.players[&"ann".into()].clone();
    let owner = cluster.where_is(id).expect("an owner");
    // Followed through a node that does not own the game, and stays.
    let via = ["n1", "n2", "n3"]
        .into_iter()
        .find(|n| *n != owner)
        .expect("another node");
    let events = format!("{}/games/{id}/events", url(&addrs, via));
    let attack = |base: String| {
        http.post(format!("{base}/games/{id}/attacks"))
            .bearer_auth(&ann)
            .json(&json!({"user": "ann", "target": "bob"}))
    };
    let end_round = |base: String| {
        http.post(format!("{base}/games/{id}/end-round"))
            .bearer_auth(OPERATOR)
    };

    let mut stream = Stream::open(&events, Some(&ann), None).await.expect("open");
    let first = stream.next().await;
    assert_eq!(
        (first.event.as_str(), first.id.as_deref()),
        ("game", Some("0"))
    );
    let game: Game = serde_json::from_str(&first.data)?;
    assert_eq!(game, created.game);

    attack(url(&addrs, &owner))
        .send()
        .await?
        .error_for_status()?;
    assert_eq!(change(&stream.next().await), (1, "action".into()));
    end_round(url(&addrs, via))
        .send()
        .await?
        .error_for_status()?;
    assert_eq!(change(&stream.next().await), (2, "round_ended".into()));

    // The owner leaves: its games move, and the stream goes on.
    cluster.stop_node(&owner).await?;
    let survivor = url(&addrs, via);
    attack(survivor.clone()).send().await?.error_for_status()?;
    end_round(survivor.clone())
        .send()
        .await?
        .error_for_status()?;
    assert_eq!(change(&stream.next().await), (3, "action".into()));
    assert_eq!(change(&stream.next().await), (4, "round_ended".into()));
    drop(stream);

    // A client that saw version 2 resumes with what it missed, and a
    // spectator may follow too, with its token in the query.
    let spectator = &tokens.spectator;
    let mut resumed = Stream::open(&format!("{events}?token={spectator}"), None, Some("2"))
        .await
        .expect("resumed");
    assert_eq!(change(&resumed.next().await), (3, "action".into()));
    assert_eq!(change(&resumed.next().await), (4, "round_ended".into()));

    // Refusals: no token, another game's token, a bad Last-Event-ID, a
    // game that does not exist.
    let other_ann = other.tokens.expect("tokens").players[&"ann".into()].clone();
    for (token, last, expected) in [
        (None, None, (StatusCode::UNAUTHORIZED, "MissingToken")),
        (
            Some(other_ann.as_str()),
            None,
            (StatusCode::FORBIDDEN, "WrongGame"),
        ),
        (
            Some(ann.as_str()),
            Some("soon"),
            (StatusCode::BAD_REQUEST, "InvalidLastEventId"),
        ),
    ] {
        let refused = Stream::open(&events, token, last).await.err();
        assert_eq!(refused, Some((expected.0, expected.1.to_string())));
    }
    let unknown = format!("{}/games/{}/events", url(&addrs, via), uuid::Uuid::new_v4());
    let refused = Stream::open(&unknown, Some(OPERATOR), None).await.err();
    assert_eq!(
        refused,
        Some((StatusCode::NOT_FOUND, "GameNotAlive".into()))
    );

    // Limits: the resumed stream and one more fill the game's two places;
    // a third is told to come back later (429). Another game's stream
    // fills the node's three; beyond them the node is full (503).
    let _second = Stream::open(&events, Some(&ann), None)
        .await
        .expect("second");
    let third = Stream::open(&events, Some(&ann), None).await.err();
    assert_eq!(
        third,
        Some((StatusCode::TOO_MANY_REQUESTS, "GameSubscribersFull".into()))
    );
    let other_events = format!("{}/games/{}/events", url(&addrs, via), other.game.id);
    let _fill = Stream::open(&other_events, Some(OPERATOR), None)
        .await
        .expect("a third on the node");
    let full = Stream::open(&other_events, Some(OPERATOR), None)
        .await
        .err();
    assert_eq!(
        full,
        Some((
            StatusCode::SERVICE_UNAVAILABLE,
            "NodeSubscribersFull".into()
        ))
    );
    // A stream closed gives its place back.
    drop(resumed);
    let reopened = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match Stream::open(&events, Some(&ann), Some("4")).await {
                Ok(stream) => return stream,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await;
    assert!(
        reopened.is_ok(),
        "the place of a closed stream was not given back"
    );
    cluster.shutdown().await;
    Ok(())
}

//! `GET /games/{id}/events`: a game's updates as Server-Sent Events, for
//! its players' clients, through any node wherever the game lives.
//!
//! Each event's id is the game's version after it, so a client that
//! reconnects (a browser's `EventSource` does so by itself, sending the
//! last id as `Last-Event-ID`) gets every change it missed and none twice,
//! also after the game moved or failed over: the events come from the
//! game's own log, which moves with it (see
//! [`GameEngine::subscribe`](minotaur_core::GameEngine::subscribe)).
//!
//! | event | when | data |
//! | --- | --- | --- |
//! | `game` | first, without `Last-Event-ID`; or when the log no longer reaches back to it | the whole [`Game`](minotaur_core::Game) |
//! | `action` | an action was registered | [`Changed`] |
//! | `round_ended` | a round ended: its moves, attacks and players out | [`Changed`] |
//! | `game_concluded` | the last round ended; the stream ends after it | [`Changed`] |
//! | `error` | the stream cannot go on (the game is gone, the node leaves) | [`ErrorBody`](crate::http::ErrorBody) |
//!
//! Readable by the game's players and spectators (and the operator); since
//! `EventSource` cannot send headers, the token may come as `?token=`.

use crate::http::{ApiError, AppState};
use crate::live::Closing;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::stream::{self, Stream};
use minotaur_core::{GameId, GameUpdate, Subscription};
use serde::{Deserialize, Serialize};
use std::convert::Infallible;

/// The data of an `action`, `round_ended` or `game_concluded` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The game's version after the change: the event's id.
    pub version: u64,
    /// What happened, in order.
    pub events: Vec<minotaur_core::Event>,
}

/// The version a reconnecting client saw, from its `Last-Event-ID`.
pub(crate) fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        ApiError::bad_request(
            "InvalidLastEventId",
            format!(
                "Last-Event-ID {:?} is not a version of a game",
                text.chars().take(32).collect::<String>()
            ),
        )
    })
}

/// The stream of game `id`'s updates after version `after`, once the game
/// is known to be alive (a game that is not gets its `404` before any
/// stream starts).
pub(crate) async fn stream(
    app: &AppState,
    id: GameId,
    after: Option<u64>,
    closing: Option<Closing>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let subscription = app.engine().subscribe(id, after)?;
    app.engine().get_game(id).await?;
    let feed = Feed {
        subscription,
        closing,
        done: false,
    };
    let events = stream::unfold(feed, |mut feed| async move {
        if feed.done {
            return None;
        }
        let item = tokio::select! {
            biased;
            _ = Closing::stopped(&mut feed.closing) => return None,
            item = feed.subscription.next() => item?,
        };
        let event = match item {
            Ok(update) => update_event(&update),
            Err(e) => {
                feed.done = true;
                let error = ApiError::from(e);
                Event::default()
                    .event("error")
                    .json_data(&error.body)
                    .unwrap_or_default()
            }
        };
        Some((Ok(event), feed))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// What the stream holds.
struct Feed {
    subscription: Subscription,
    closing: Option<Closing>,
    /// An error was sent: nothing follows it.
    done: bool,
}

/// One update as an event, its id the version after it.
fn update_event(update: &GameUpdate) -> Event {
    let event = Event::default()
        .id(update.version().to_string())
        .event(update.kind());
    let data = match update {
        GameUpdate::Whole(game) => event.json_data(game),
        GameUpdate::Changed { version, events } => event.json_data(Changed {
            version: *version,
            events: events.clone(),
        }),
    };
    // Games and events always encode as JSON.
    data.unwrap_or_default()
}

//! The live cluster page, for operators: `GET /` serves one HTML page (its
//! style and script inline, nothing fetched from elsewhere, so it works
//! offline) that draws each member with its games and a feed of cluster
//! events; `GET /cluster/events` keeps it current with Server-Sent Events
//! (`status`: the node's [`ClusterStatus`] every second; `cluster`: each
//! [`ClusterEvent`] as it happens); `GET /cluster/games` pages through the
//! registry. All three are operator routes; since a browser's
//! `EventSource` cannot send headers, they also take the operator token as
//! `?token=`.

use crate::http::{ApiError, AppState, ClusterStatus};
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use futures::stream::{self, Stream};
use minotaur_cluster::ClusterEvent;
use minotaur_core::GameId;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast;

/// How often the page gets the node's status.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// Most games one page of `/cluster/games` lists.
const MAX_PAGE: usize = 500;

/// One game as `/cluster/games` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameView {
    /// The game.
    pub id: GameId,
    /// The member (name and incarnation) it is registered to.
    pub owner: String,
    /// The member keeping its backup copy (see
    /// [`Node::backup_of`](minotaur_cluster::Node::backup_of)), if any.
    pub backup: Option<String>,
    /// Its version as registered.
    pub version: u64,
}

impl GameView {
    /// Game `reg` as `node` sees it.
    pub fn of(reg: &minotaur_cluster::Registration, node: &minotaur_cluster::Node) -> Self {
        GameView {
            id: reg.id,
            owner: reg.owner.to_string(),
            backup: node.backup_of(reg.id, &reg.owner).map(|m| m.to_string()),
            version: reg.version,
        }
    }
}

/// A cluster event as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventView {
    /// `member_up`, `member_leaving`, `member_down`, `failover`,
    /// `handoff`, `conflict`, `quorum_lost` or `quorum_regained`.
    pub kind: String,
    /// What happened, in words.
    pub text: String,
    /// The member it is about, by name, for member events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// Whether a member went down because it left (said goodbye).
    #[serde(default)]
    pub left: bool,
}

impl From<&ClusterEvent> for EventView {
    fn from(event: &ClusterEvent) -> Self {
        let (kind, text) = match event {
            ClusterEvent::MemberUp(m) => ("member_up", format!("{m} is up")),
            ClusterEvent::MemberLeaving(m) => (
                "member_leaving",
                format!("{m} is leaving: handing its games over"),
            ),
            ClusterEvent::MemberDown(m, why) => ("member_down", format!("{m} is down ({why:?})")),
            ClusterEvent::FailedOver {
                from,
                sessions,
                after,
            } => (
                "failover",
                format!(
                    "failover: {sessions} games of {from} restarted here, {:.1} s after it was last heard",
                    after.as_secs_f64()
                ),
            ),
            ClusterEvent::HandedOver { games, took } => (
                "handoff",
                format!("handed {games} games over in {:.1} s", took.as_secs_f64()),
            ),
            ClusterEvent::ConflictResolved {
                id, winner, loser, ..
            } => (
                "conflict",
                format!("conflict on game {id}: {winner}'s state kept, {loser}'s dropped"),
            ),
            ClusterEvent::QuorumLost => (
                "quorum_lost",
                "lost the majority: writes refused until it is back".to_string(),
            ),
            ClusterEvent::QuorumRegained => (
                "quorum_regained",
                "holds the majority again: writes accepted".to_string(),
            ),
        };
        let member = match event {
            ClusterEvent::MemberUp(m)
            | ClusterEvent::MemberLeaving(m)
            | ClusterEvent::MemberDown(m, _) => Some(m.name.clone()),
            ClusterEvent::FailedOver { from, .. } => Some(from.name.clone()),
            _ => None,
        };
        let left = matches!(
            event,
            ClusterEvent::MemberDown(_, minotaur_cluster::DownReason::Left)
        );
        EventView {
            kind: kind.to_string(),
            text,
            member,
            left,
        }
    }
}

pub(crate) async fn page(caller: crate::auth::Caller) -> Response {
    if let Err(denied) = caller.operator() {
        return ApiError::from(denied).into_response();
    }
    Html(include_str!("live/page.html")).into_response()
}

fn status_event(status: &ClusterStatus) -> Event {
    Event::default()
        .event("status")
        .json_data(status)
        .unwrap_or_else(|_| Event::default().comment("status not encodable"))
}

fn cluster_event(event: &ClusterEvent) -> Event {
    Event::default()
        .event("cluster")
        .json_data(EventView::from(event))
        .unwrap_or_else(|_| Event::default().comment("event not encodable"))
}

/// Set when the endpoint stops: its event streams end.
#[derive(Clone)]
pub(crate) struct Closing(pub(crate) tokio::sync::watch::Receiver<bool>);

impl Closing {
    /// Resolves once the endpoint stops (or is gone); never without one.
    pub(crate) async fn stopped(closing: &mut Option<Closing>) {
        let Some(Closing(rx)) = closing else {
            return std::future::pending().await;
        };
        // Done when the value is true, or when the sender is gone.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

/// What the stream waits on.
struct Feed {
    closing: Option<Closing>,
    app: AppState,
    events: Option<broadcast::Receiver<ClusterEvent>>,
    /// The node the events come from: a source that follows a changing
    /// node (the demo's, through its rolling deploy) is subscribed anew.
    from: String,
    ticks: tokio::time::Interval,
}

impl Feed {
    fn follow(&mut self) {
        let now = self.app.status.node_id();
        if self.events.is_none() || now != self.from {
            self.events = self.app.status.events();
            self.from = now;
        }
    }
}

pub(crate) async fn events(
    State(app): State<AppState>,
    caller: crate::auth::Caller,
    closing: Option<axum::Extension<Closing>>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.operator()?;
    let mut ticks = tokio::time::interval(STATUS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let feed = Feed {
        closing: closing.map(|axum::Extension(c)| c),
        events: app.status.events(),
        from: app.status.node_id(),
        app,
        ticks,
    };
    let stream = stream::unfold(feed, |mut feed| async move {
        let event = loop {
            tokio::select! {
                biased;
                _ = Closing::stopped(&mut feed.closing) => return None,
                _ = feed.ticks.tick() => {
                    feed.follow();
                    break status_event(&feed.app.status.cluster_status());
                }
                received = async { feed.events.as_mut()?.recv().await.ok() }, if feed.events.is_some() => {
                    match received {
                        Some(event) => break cluster_event(&event),
                        // Lagged or closed: the next status says where things are.
                        None => {
                            if feed.events.as_ref().is_some_and(|rx| rx.is_closed()) {
                                feed.events = None;
                            }
                            continue;
                        }
                    }
                }
            }
        };
        Some((Ok(event), feed))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Query of `/cluster/games`.
#[derive(Debug, Deserialize)]
pub(crate) struct GamesQuery {
    after: Option<GameId>,
    id: Option<GameId>,
    limit: Option<usize>,
}

pub(crate) async fn games(
    State(app): State<AppState>,
    caller: crate::auth::Caller,
    Query(query): Query<GamesQuery>,
) -> Result<Json<Vec<GameView>>, ApiError> {
    caller.operator()?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let games = match query.id {
        Some(id) => app.status.game(id).into_iter().collect(),
        None => app.status.games(query.after, limit),
    };
    Ok(Json(games))
}

//! The HTTP JSON endpoint of a node: the game API and the cluster's status
//! over HTTP, answering for any game in the cluster wherever it lives.
//!
//! | method | path | body | answer |
//! | --- | --- | --- | --- |
//! | `GET` | `/health` | | `{"status":"ok","node":...}` |
//! | `POST` | `/games` | [`CreateGame`] | `201` and the [`Game`] (with its players' tokens: [`CreatedGame`]) |
//! | `POST` | `/games/{id}/tokens` | | fresh [`GameTokens`] for the game |
//! | `GET` | `/games/{id}` | | the [`Game`] |
//! | `GET` | `/games/{id}/confirmed` | | the [`Game`], confirmed as its latest acknowledged state (`503 NoQuorum` when its owner cannot prove it) |
//! | `GET` | `/games/{id}/events` | | Server-Sent Events: the game's updates, numbered by version, resumed with `Last-Event-ID` (see [`crate::game_events`]) |
//! | `GET` | `/games/by-code/{code}` | | the [`Game`] |
//! | `POST` | `/games/{id}/moves` | [`MoveRequest`] | its [`Ack`] (`?answer=game`: the [`Game`] after it) |
//! | `POST` | `/games/{id}/attacks` | [`AttackRequest`] | its [`Ack`] (`?answer=game`: the [`Game`] after it) |
//! | `POST` | `/games/{id}/end-round` | | its [`Ack`] (`?answer=game`: the [`Game`] after it) |
//! | `GET` | `/games/{id}/players/{user}` | | the [`PlayerStatus`] |
//! | `GET` | `/users/{user}/games` | | the user's active [`Game`]s |
//! | `GET` | `/cluster` | | the [`ClusterStatus`] |
//! | `GET` | `/metrics` | | Prometheus text format (see [`crate::metrics`]) |
//! | `GET` | `/` | | the live cluster page (see [`crate::live`]) |
//! | `GET` | `/cluster/events` | | Server-Sent Events: the node's status every second, cluster events as they happen |
//! | `GET` | `/cluster/games?after=&limit=` or `?id=` | | a page of registered games with their owners |
//!
//! Who may call what, with [`Access::Tokens`] (see [`crate::auth`]): the
//! operator token for `POST /games`, `/tokens`, `end-round`, `/cluster`,
//! `/metrics` (unless public) and reads; a player's token to move or attack
//! as that player in that game, and to read it or follow its events; a
//! spectator's token to read it or follow its events; a player's token to
//! list that player's games. `/health` is open.
//! Refusals are `401` (`MissingToken`, `MalformedAuthorization`,
//! `InvalidToken`, `ExpiredToken`) or `403` (`OperatorOnly`, `WrongGame`,
//! `WrongPlayer`). With [`Access::Open`] nothing is checked.
//!
//! The three writes (moves, attacks, end-round) answer an [`Ack`]: the
//! game's id, version, round, round deadline and status after the write.
//! With the query parameter `?answer=game` they answer the whole [`Game`]
//! after the write instead (`?answer=ack` is the default; any other value
//! is a `400 InvalidQuery`).
//!
//! The writes take an optional `Idempotency-Key` header, a UUID the client
//! makes up for one logical write: sent again with the same key (after a
//! timeout, a dropped connection, a 503), the write is applied at most
//! once, and the answer is the write's [`Ack`] (the version it made, the
//! round and status as they are now). A game remembers
//! the keys of its last 32 writes. Without the header a retried request
//! may apply twice.
//!
//! Every error is a status code with an [`ErrorBody`] naming it. Bad input
//! (malformed JSON, wrong types, unknown fields, bodies over
//! [`MAX_BODY_BYTES`], bad ids, unknown routes or methods) is a 4xx, never
//! a 5xx; 5xx means the cluster could not answer (timeout, unavailable).
//!
//! [`Ack`]: minotaur_core::Ack

use crate::auth::{Access, Caller, Denied, GameTokens};
use crate::rate_limit::{self, RateLimit};
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use minotaur_cluster::{MemberStatus, Node};
use minotaur_core::{
    Answer, Command, EngineError, Game, GameEngine, GameError, GameId, Hex, OpId, PlayerStatus,
    SubscriberLimits, UserId,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// Largest request body accepted; bigger ones get `413`.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// How long [`HttpServer::stop`] lets open requests finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long a TLS client may take from connecting to its first request.
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Body of `POST /games`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGame {
    /// 4 to 8 letters or digits, case-insensitive.
    pub join_code: String,
    /// The players, 2 to 6 distinct user names.
    pub users: Vec<UserId>,
}

/// Answer of `POST /games`: the game, and with [`Access::Tokens`] the
/// tokens of its players and spectators (hand each player their own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedGame {
    /// The game as created.
    #[serde(flatten)]
    pub game: Game,
    /// Its tokens, when the endpoint checks tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<GameTokens>,
}

/// Body of `POST /games/{id}/moves`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Who moves.
    pub user: UserId,
    /// By how much, in axial coordinates: `{"q":1,"r":0}`.
    pub vector: Hex,
}

/// Body of `POST /games/{id}/attacks`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackRequest {
    /// Who attacks.
    pub user: UserId,
    /// Whom.
    pub target: UserId,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error's name, e.g. `GameNotAlive` or `NotEnoughActionPoints`.
    pub error: String,
    /// A human-readable explanation.
    pub message: String,
}

/// One member as the answering node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// Node name.
    pub name: String,
    /// Name and incarnation, unique per start of the node.
    pub id: String,
    /// `up`, `leaving` or `down`.
    pub status: String,
}

/// Answer of `GET /cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The node answering.
    pub node: String,
    /// Members as this node sees them, itself included.
    pub members: Vec<MemberView>,
    /// Live games per owning node, from this node's copy of the registry.
    pub games_per_node: BTreeMap<String, usize>,
    /// Sessions running on this node.
    pub hosted_here: usize,
    /// Backup copies of other members' games kept here.
    #[serde(default)]
    pub copies_held: usize,
    /// Games of this node whose state has no backup copy on a live member.
    #[serde(default)]
    pub games_without_copy: usize,
    /// Games of this node whose backup copy is behind their latest version.
    #[serde(default)]
    pub copies_behind: usize,
    /// Members this node has an open cluster link to.
    #[serde(default)]
    pub links: usize,
    /// This node's part in majority fencing.
    #[serde(default)]
    pub vote: VoteView,
}

/// A node's part in majority fencing, as `GET /cluster` shows it (see
/// `Node::vote`). A cluster has recovered from a fault once every node
/// counts the members up as its voters, admits none, holds its lease and
/// confirms no game.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteView {
    /// Whether majority fencing is on.
    pub fencing: bool,
    /// The members (ids) whose grants make a majority here.
    pub voters: Vec<String>,
    /// Members (ids) waiting to be admitted to the vote.
    pub pending: Vec<String>,
    /// Whether this node holds its lease from a majority, so it may
    /// acknowledge writes.
    pub holds_lease: bool,
    /// Games owned here that wait for confirmation that no other member
    /// took them over.
    pub confirming: usize,
}

/// Where `GET /cluster` and the live page get their answers.
pub trait ClusterStatusSource: Send + Sync + 'static {
    /// The cluster as this node sees it now.
    fn cluster_status(&self) -> ClusterStatus;
    /// The node's cluster events from now on, for the live page; none when
    /// the source has none.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<minotaur_cluster::ClusterEvent>> {
        None
    }
    /// Up to `limit` registered games in id order, after `after`.
    fn games(&self, _after: Option<GameId>, _limit: usize) -> Vec<crate::live::GameView> {
        Vec::new()
    }
    /// One registered game.
    fn game(&self, _id: GameId) -> Option<crate::live::GameView> {
        None
    }
    /// The node's name, for log lines.
    fn node_name(&self) -> String;
    /// A process-unique id of the node, for log lines.
    fn node_id(&self) -> String;
}

impl ClusterStatusSource for Node {
    fn cluster_status(&self) -> ClusterStatus {
        let members = self
            .members()
            .into_iter()
            .map(|(id, status)| MemberView {
                name: id.name.clone(),
                id: id.to_string(),
                status: match status {
                    MemberStatus::Up => "up",
                    MemberStatus::Leaving => "leaving",
                    MemberStatus::Down => "down",
                }
                .to_string(),
            })
            .collect();
        let mut games_per_node = BTreeMap::new();
        for (owner, count) in self.registry().count_by_owner() {
            *games_per_node.entry(owner.name).or_insert(0) += count;
        }
        ClusterStatus {
            node: self.name().to_string(),
            members,
            games_per_node,
            hosted_here: self.hosted().len(),
            copies_held: self.replicas_held(),
            games_without_copy: self.unreplicated(),
            copies_behind: self.copies_behind(),
            links: self.links(),
            vote: {
                let vote = self.vote();
                VoteView {
                    fencing: vote.fencing,
                    voters: vote.voters.iter().map(ToString::to_string).collect(),
                    pending: vote.pending.iter().map(ToString::to_string).collect(),
                    holds_lease: vote.holds_lease,
                    confirming: vote.confirming,
                }
            },
        }
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<minotaur_cluster::ClusterEvent>> {
        Some(self.subscribe())
    }

    fn games(&self, after: Option<GameId>, limit: usize) -> Vec<crate::live::GameView> {
        self.registry()
            .page(after, limit)
            .iter()
            .map(|reg| crate::live::GameView::of(reg, self))
            .collect()
    }

    fn game(&self, id: GameId) -> Option<crate::live::GameView> {
        self.registry()
            .lookup(id)
            .as_ref()
            .map(|reg| crate::live::GameView::of(reg, self))
    }

    fn node_name(&self) -> String {
        self.name().to_string()
    }

    fn node_id(&self) -> String {
        self.id().to_string()
    }
}

/// An error answer: status code plus [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status code.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, error: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: error.to_string(),
                message: message.into(),
            },
        }
    }

    /// `500 TokenNotIssued`: a token could not be signed.
    fn token_not_issued(e: crate::auth::AuthError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "TokenNotIssued",
            e.to_string(),
        )
    }

    /// `400` named `error`: a request this endpoint cannot take.
    pub(crate) fn bad_request(error: &str, message: String) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, error, message)
    }

    /// `429 TooManyRequests`: a client over its request limit.
    pub(crate) fn too_many_requests(message: String) -> Self {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// The variant name of a rule refusal, as clients see it.
fn game_error_name(e: &GameError) -> &'static str {
    match e {
        GameError::PlayerNotFound(_) => "PlayerNotFound",
        GameError::PlayerOut(_) => "PlayerOut",
        GameError::InvalidMove(_) => "InvalidMove",
        GameError::NotEnoughActionPoints { .. } => "NotEnoughActionPoints",
        GameError::GameConcluded => "GameConcluded",
        GameError::TargetNotFound(_) => "TargetNotFound",
        GameError::TargetNotAlive(_) => "TargetNotAlive",
        GameError::SelfAttack => "SelfAttack",
        GameError::PlayerCount { .. } => "PlayerCount",
        GameError::DuplicateUser(_) => "DuplicateUser",
        GameError::InvalidUser(..) => "InvalidUser",
        GameError::InvalidJoinCode(_) => "InvalidJoinCode",
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        let message = e.to_string();
        let (status, name) = match &e {
            EngineError::GameNotAlive(_) => (StatusCode::NOT_FOUND, "GameNotAlive"),
            EngineError::UnknownJoinCode(_) => (StatusCode::NOT_FOUND, "UnknownJoinCode"),
            EngineError::JoinCodeTaken(_) => (StatusCode::CONFLICT, "JoinCodeTaken"),
            EngineError::AlreadyRunning(_) => (StatusCode::CONFLICT, "AlreadyRunning"),
            EngineError::Rule(rule) => {
                let status = match rule {
                    // Malformed requests rather than refused moves.
                    GameError::PlayerCount { .. }
                    | GameError::DuplicateUser(_)
                    | GameError::InvalidUser(..)
                    | GameError::InvalidJoinCode(_) => StatusCode::BAD_REQUEST,
                    GameError::PlayerNotFound(_) => StatusCode::NOT_FOUND,
                    _ => StatusCode::UNPROCESSABLE_ENTITY,
                };
                (status, game_error_name(rule))
            }
            EngineError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "Timeout"),
            EngineError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            EngineError::NoQuorum(_) => (StatusCode::SERVICE_UNAVAILABLE, "NoQuorum"),
            EngineError::Leaving(_) => (StatusCode::SERVICE_UNAVAILABLE, "Leaving"),
            EngineError::BetweenOwners(_) => (StatusCode::SERVICE_UNAVAILABLE, "BetweenOwners"),
            EngineError::Codec(_) => (StatusCode::BAD_GATEWAY, "Codec"),
            EngineError::Protocol(_) => (StatusCode::BAD_GATEWAY, "Protocol"),
            EngineError::GameSubscribersFull { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "GameSubscribersFull")
            }
            EngineError::NodeSubscribersFull { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "NodeSubscribersFull")
            }
        };
        ApiError::new(status, name, message)
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        let status = StatusCode::from_u16(d.status()).unwrap_or(StatusCode::FORBIDDEN);
        ApiError::new(status, d.name(), d.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let name = match &r {
            JsonRejection::JsonDataError(_) => "InvalidBody",
            JsonRejection::JsonSyntaxError(_) => "MalformedJson",
            JsonRejection::MissingJsonContentType(_) => "NotJson",
            JsonRejection::BytesRejection(_) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                "BodyTooLarge"
            }
            _ => "BadRequest",
        };
        // Rejections are always about the request; keep them 4xx.
        let status = if r.status().is_client_error() {
            r.status()
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, name, r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidPath", r.body_text())
    }
}

/// `axum::Json` with our JSON error answer.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
struct ApiJson<T>(T);

/// `axum::extract::Path` with our JSON error answer.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
struct ApiPath<T>(T);

/// The optional `Idempotency-Key` header of a write, as the write's id.
struct IdempotencyKey(Option<OpId>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| uuid::Uuid::parse_str(v.trim()).ok())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidIdempotencyKey",
                    "the Idempotency-Key header must be a UUID",
                )
            })?;
        let (high, low) = key.as_u64_pair();
        Ok(IdempotencyKey(Some(high ^ low)))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Access::Tokens(auth) = &app.access else {
            return Ok(Caller::Anyone);
        };
        // The live page's routes and a game's events also take the token
        // in the query: a browser's EventSource cannot send headers.
        let path = parts.uri.path();
        let page = matches!(path, "/" | "/cluster/events" | "/cluster/games")
            || (path.starts_with("/games/") && path.ends_with("/events"));
        if page
            && !parts
                .headers
                .contains_key(axum::http::header::AUTHORIZATION)
        {
            let token = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
                .ok()
                .and_then(|Query(q)| q.into_iter().find(|(k, _)| k == "token"));
            if let Some((_, token)) = token {
                return Ok(auth.holder_of(&token)?);
            }
        }
        caller_of(&app.access, &parts.headers)
    }
}

/// Who sent a request with `headers`.
fn caller_of(access: &Access, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    let Access::Tokens(auth) = access else {
        return Ok(Caller::Anyone);
    };
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().map_err(|_| Denied::MalformedHeader))
        .transpose()?;
    Ok(auth.caller(header)?)
}

/// The optional `answer` query parameter of a write: `ack` (the default)
/// or `game`.
struct WriteAnswer(Answer);

impl<S: Send + Sync> FromRequestParts<S> for WriteAnswer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let invalid =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", message);
        let Query(params) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map_err(|r| invalid(r.body_text()))?;
        let mut answers = params.iter().filter(|(name, _)| name == "answer");
        let answer = match answers.next().map(|(_, value)| value.as_str()) {
            None | Some("ack") => Answer::Ack,
            Some("game") => Answer::Game,
            Some(other) => {
                return Err(invalid(format!(
                    "answer must be \"ack\" or \"game\", not {:?}",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        if answers.next().is_some() {
            return Err(invalid("answer is given more than once".into()));
        }
        Ok(WriteAnswer(answer))
    }
}

/// Applies a write, at most once per idempotency key, and answers its
/// [`Ack`](minotaur_core::Ack) or the [`Game`] after it.
async fn write(
    engine: &GameEngine,
    id: GameId,
    key: IdempotencyKey,
    answer: WriteAnswer,
    command: Command,
) -> Result<Response, ApiError> {
    let op = key.0.unwrap_or_else(rand::random);
    Ok(match answer.0 {
        Answer::Ack => Json(engine.apply_once(id, op, command).await?).into_response(),
        Answer::Game => Json(engine.apply_once_and_get(id, op, command).await?).into_response(),
    })
}

fn game_id(s: &str) -> Result<GameId, ApiError> {
    s.parse().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidGameId",
            format!(
                "{:?} is not a game id: {e}",
                s.chars().take(64).collect::<String>()
            ),
        )
    })
}

#[derive(Clone)]
pub(crate) struct AppState {
    engine: GameEngine,
    pub(crate) status: Arc<dyn ClusterStatusSource>,
    access: Access,
}

impl AppState {
    pub(crate) fn engine(&self) -> &GameEngine {
        &self.engine
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

async fn health(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok", "node": app.status.node_name() }))
}

/// The tokens of `game`, when the endpoint checks tokens.
fn tokens_of(access: &Access, game: &Game) -> Result<Option<GameTokens>, ApiError> {
    match access {
        Access::Open => Ok(None),
        Access::Tokens(auth) => auth
            .tokens_for(game)
            .map(Some)
            .map_err(ApiError::token_not_issued),
    }
}

async fn create_game(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateGame>,
) -> Result<(StatusCode, Json<CreatedGame>), ApiError> {
    caller.operator()?;
    let game = app.engine.create_game(&req.join_code, req.users).await?;
    let tokens = tokens_of(&app.access, &game)?;
    Ok((StatusCode::CREATED, Json(CreatedGame { game, tokens })))
}

async fn game_tokens(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.operator()?;
    let game = app.engine.get_game(game_id(&id)?).await?;
    Ok(match tokens_of(&app.access, &game)? {
        Some(tokens) => Json(tokens).into_response(),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "TokensOff",
            "this endpoint does not check tokens (it runs open)",
        )
        .into_response(),
    })
}

async fn get_game(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Game> {
    let id = game_id(&id)?;
    caller.may_read(id)?;
    Ok(Json(app.engine.get_game(id).await?))
}

async fn game_events(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    headers: axum::http::HeaderMap,
    closing: Option<axum::Extension<crate::live::Closing>>,
) -> Result<Response, ApiError> {
    let id = game_id(&id)?;
    caller.may_read(id)?;
    let after = crate::game_events::last_event_id(&headers)?;
    let closing = closing.map(|axum::Extension(c)| c);
    Ok(crate::game_events::stream(&app, id, after, closing)
        .await?
        .into_response())
}

async fn get_game_confirmed(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Game> {
    let id = game_id(&id)?;
    caller.may_read(id)?;
    Ok(Json(app.engine.get_game_confirmed(id).await?))
}

async fn get_by_code(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(code): ApiPath<String>,
) -> ApiResult<Game> {
    // Only the operator may look games up by code: a player's token names
    // its game already.
    caller.operator()?;
    Ok(Json(app.engine.get_game_by_join_code(&code).await?))
}

async fn register_move(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    key: IdempotencyKey,
    answer: WriteAnswer,
    ApiJson(req): ApiJson<MoveRequest>,
) -> Result<Response, ApiError> {
    let id = game_id(&id)?;
    caller.may_act(id, &req.user)?;
    let command = Command::RegisterMove {
        user: req.user,
        vector: req.vector,
    };
    write(&app.engine, id, key, answer, command).await
}

async fn register_attack(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    key: IdempotencyKey,
    answer: WriteAnswer,
    ApiJson(req): ApiJson<AttackRequest>,
) -> Result<Response, ApiError> {
    let id = game_id(&id)?;
    caller.may_act(id, &req.user)?;
    let command = Command::RegisterAttack {
        user: req.user,
        target: req.target,
    };
    write(&app.engine, id, key, answer, command).await
}

async fn end_round(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    key: IdempotencyKey,
    answer: WriteAnswer,
) -> Result<Response, ApiError> {
    caller.operator()?;
    write(&app.engine, game_id(&id)?, key, answer, Command::EndRound).await
}

async fn player_status(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath((id, user)): ApiPath<(String, String)>,
) -> ApiResult<PlayerStatus> {
    let id = game_id(&id)?;
    caller.may_read(id)?;
    Ok(Json(app.engine.get_player_status(id, user.into()).await?))
}

async fn user_games(
    State(app): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult<Vec<Game>> {
    let user = UserId::from(user);
    caller.may_list(&user)?;
    Ok(Json(app.engine.get_active_games_for_user(&user).await?))
}

async fn cluster(State(app): State<AppState>, caller: Caller) -> ApiResult<ClusterStatus> {
    caller.operator()?;
    Ok(Json(app.status.cluster_status()))
}

async fn metrics(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let public = matches!(&app.access, Access::Tokens(auth) if auth.metrics_public);
    if !public {
        let allowed = caller_of(&app.access, &headers)
            .and_then(|caller| caller.operator().map_err(ApiError::from));
        if let Err(refused) = allowed {
            return refused.into_response();
        }
    }
    let Some(handle) = crate::metrics::handle() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "MetricsUnavailable",
            "another metrics recorder was installed in this process",
        )
        .into_response();
    };
    crate::metrics::set_gauges(&app.status.cluster_status());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        "this route does not take that method",
    )
}

/// Runs every request inside the node's span, so its log lines carry the
/// node's name like the node's own, and counts it (by route pattern, so
/// that game ids do not make a series each).
async fn in_node_span(State(names): State<(String, String)>, req: Request, next: Next) -> Response {
    let span = tracing::info_span!("node", node = %names.0, node_id = %names.1);
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let started = std::time::Instant::now();
    async move {
        let response = next.run(req).await;
        let status = response.status().as_u16();
        tracing::debug!(%method, %path, status, "http request");
        crate::metrics::record_request(
            &names.0,
            method.as_str(),
            &route,
            status,
            started.elapsed(),
        );
        response
    }
    .instrument(span)
    .await
}

/// TLS for the endpoint: its certificate chain and private key.
#[derive(Clone)]
pub struct HttpTls {
    config: Arc<tokio_rustls::rustls::ServerConfig>,
}

impl std::fmt::Debug for HttpTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpTls")
    }
}

impl HttpTls {
    /// From PEM: the certificate chain (the endpoint's certificate first)
    /// and its private key (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<HttpTls, TlsError> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert_chain)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Certificate(e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsError::Certificate("no certificate in the PEM".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Key(e.to_string()))?;
        let mut config = tokio_rustls::rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(HttpTls {
            config: Arc::new(config),
        })
    }
}

/// Why [`HttpTls::from_pem`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// The certificate chain is not PEM certificates.
    #[error("unusable TLS certificate chain: {0}")]
    Certificate(String),
    /// The key is not a PEM private key, or does not match the certificate.
    #[error("unusable TLS private key: {0}")]
    Key(String),
}

/// What an endpoint serves with, besides its routes.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Each client's request limit (see [`crate::rate_limit`]); none when
    /// `None`.
    pub rate_limit: Option<RateLimit>,
    /// Who may call what (see [`crate::auth`]). The default is
    /// [`Access::Open`], for embedding and tests; `minotaur-node` asks for
    /// tokens unless run with `--open-http`.
    pub access: Access,
    /// Serve HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<HttpTls>,
    /// How many clients may follow `GET /games/{id}/events` at once, per
    /// game and in all; beyond them `429 GameSubscribersFull` or `503
    /// NodeSubscribersFull`.
    pub subscribers: SubscriberLimits,
}

/// The endpoint's routes over `engine`, with `/cluster` answered by `status`.
pub fn router(
    engine: GameEngine,
    status: Arc<dyn ClusterStatusSource>,
    options: &HttpOptions,
) -> Router {
    let names = (status.node_name(), status.node_id());
    let mut app = Router::new()
        .route("/", get(crate::live::page))
        .route("/cluster/events", get(crate::live::events))
        .route("/cluster/games", get(crate::live::games))
        .route("/health", get(health))
        .route("/games", post(create_game))
        .route("/games/{id}/tokens", post(game_tokens))
        .route("/games/{id}", get(get_game))
        .route("/games/{id}/confirmed", get(get_game_confirmed))
        .route("/games/{id}/events", get(game_events))
        .route("/games/by-code/{code}", get(get_by_code))
        .route("/games/{id}/moves", post(register_move))
        .route("/games/{id}/attacks", post(register_attack))
        .route("/games/{id}/end-round", post(end_round))
        .route("/games/{id}/players/{user}", get(player_status))
        .route("/users/{user}/games", get(user_games))
        .route("/cluster", get(cluster))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    // Inside the span and its metrics, so that refusals are counted.
    if let Some(limit) = options.rate_limit {
        let limiter = rate_limit::Limiter::new(limit);
        app = app.layer(middleware::from_fn_with_state(limiter, rate_limit::limit));
    }
    app.layer(middleware::from_fn_with_state(names, in_node_span))
        .with_state(AppState {
            engine: engine.with_subscriber_limits(options.subscribers),
            status,
            access: options.access.clone(),
        })
}

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("node {node}: cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The node's name.
        node: String,
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// A running HTTP endpoint. Dropping it stops it at once; [`HttpServer::stop`]
/// lets open requests finish first.
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    /// Ends the open event streams.
    closing: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<()>,
    /// Counts the node's cluster events for `/metrics`.
    events: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// The bound address (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking connections and waits (up to 5 s) for open requests.
    pub async fn stop(mut self) {
        if let Some(events) = self.events.take() {
            events.abort();
        }
        self.closing.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(STOP_GRACE, &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.closing.send_replace(true);
        self.task.abort();
        if let Some(events) = self.events.take() {
            events.abort();
        }
    }
}

/// Starts the endpoint of `node` on `addr` (port 0: the OS picks one; see
/// [`HttpServer::addr`]).
///
/// ```no_run
/// use minotaur_cluster::{Node, NodeConfig};
/// use std::sync::Arc;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Arc::new(Node::start(NodeConfig::new("n1", "a-long-secret-cookie")).await?);
/// let http = minotaur_examples::http::serve(node, "127.0.0.1:0".parse()?).await?;
/// println!("HTTP on http://{}", http.addr());
/// http.stop().await;
/// # Ok(()) }
/// ```
pub async fn serve(node: Arc<Node>, addr: SocketAddr) -> Result<HttpServer, HttpError> {
    serve_with(node, addr, HttpOptions::default()).await
}

/// [`serve`] with `options`: a request limit per client, say.
///
/// ```no_run
/// use minotaur_cluster::{Node, NodeConfig};
/// use minotaur_examples::http::HttpOptions;
/// use minotaur_examples::rate_limit::RateLimit;
/// use std::num::NonZeroU32;
/// use std::sync::Arc;
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let node = Arc::new(Node::start(NodeConfig::new("n1", "a-long-secret-cookie")).await?);
/// let limit = RateLimit {
///     per_second: NonZeroU32::new(100).unwrap(),
///     burst: NonZeroU32::new(200).unwrap(),
/// };
/// let options = HttpOptions {
///     rate_limit: Some(limit),
///     ..HttpOptions::default()
/// };
/// let http = minotaur_examples::http::serve_with(node, "127.0.0.1:0".parse()?, options).await?;
/// # http.stop().await;
/// # Ok(()) }
/// ```
pub async fn serve_with(
    node: Arc<Node>,
    addr: SocketAddr,
    options: HttpOptions,
) -> Result<HttpServer, HttpError> {
    let engine = node.engine().clone();
    crate::metrics::handle();
    let events = crate::metrics::follow_events(&node);
    let app = router(engine, node.clone(), &options);
    let mut server = serve_router(node.name().to_string(), app, addr, options.tls).await?;
    server.events = Some(events);
    Ok(server)
}

/// Serves `app` on `addr` (over TLS with `tls`); `node` names the node in
/// errors.
pub async fn serve_router(
    node: String,
    app: Router,
    addr: SocketAddr,
    tls: Option<HttpTls>,
) -> Result<HttpServer, HttpError> {
    let bind_error = |source| HttpError::Bind {
        node: node.clone(),
        addr,
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    // Open streams (the live page's) end when the endpoint stops: a
    // graceful stop waits for responses to finish, and theirs never do.
    let (closing, closed) = tokio::sync::watch::channel(false);
    let app = app.layer(axum::Extension(crate::live::Closing(closed)));
    // Each request carries its client's address (see `rate_limit`).
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let task = match tls {
        None => tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(node = %node, "HTTP endpoint stopped: {e}");
            }
        }),
        Some(tls) => {
            let listener = listener.into_std().map_err(bind_error)?;
            let config = axum_server::tls_rustls::RustlsConfig::from_config(tls.config);
            let server = axum_server::from_tcp_rustls(listener, config).map_err(bind_error)?;
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                let _ = stop_rx.await;
                stopper.graceful_shutdown(Some(STOP_GRACE));
            });
            tokio::spawn(async move {
                // A client that connects and never finishes its handshake
                // or first request is dropped, not kept for ever.
                let served = server
                    .handle(handle)
                    .first_request_timeout(FIRST_REQUEST_TIMEOUT)
                    .serve(app)
                    .await;
                if let Err(e) = served {
                    tracing::warn!(node = %node, "HTTPS endpoint stopped: {e}");
                }
            })
        }
    };
    Ok(HttpServer {
        addr: bound,
        stop: Some(stop_tx),
        closing,
        task,
        events: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use minotaur_core::{CodecError, MoveError};

    #[test]
    fn engine_errors_map_to_status_codes_and_names() {
        let id = GameId::random();
        let cases = [
            (EngineError::GameNotAlive(id), 404, "GameNotAlive"),
            (
                EngineError::UnknownJoinCode("ABCD".parse().unwrap()),
                404,
                "UnknownJoinCode",
            ),
            (
                EngineError::JoinCodeTaken("ABCD".parse().unwrap()),
                409,
                "JoinCodeTaken",
            ),
            (EngineError::AlreadyRunning(id), 409, "AlreadyRunning"),
            (EngineError::Timeout("slow".into()), 504, "Timeout"),
            (EngineError::Unavailable("gone".into()), 503, "Unavailable"),
            (EngineError::Leaving("bye".into()), 503, "Leaving"),
            (EngineError::BetweenOwners(id), 503, "BetweenOwners"),
            (EngineError::Protocol("odd".into()), 502, "Protocol"),
            (
                EngineError::Codec(CodecError::Decode("bad".into())),
                502,
                "Codec",
            ),
            (GameError::GameConcluded.into(), 422, "GameConcluded"),
            (
                GameError::InvalidMove(MoveError::ZeroVector).into(),
                422,
                "InvalidMove",
            ),
            (
                GameError::PlayerNotFound("zed".into()).into(),
                404,
                "PlayerNotFound",
            ),
            (
                GameError::InvalidJoinCode("!".into()).into(),
                400,
                "InvalidJoinCode",
            ),
        ];
        for (error, status, name) in cases {
            let message = error.to_string();
            let api = ApiError::from(error);
            assert_eq!(api.status.as_u16(), status, "{name}");
            assert_eq!(api.body.error, name);
            assert_eq!(api.body.message, message);
        }
    }
}

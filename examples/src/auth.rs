//! Who may do what over HTTP. The operator presents a bearer token for the
//! operator routes (creating games, `/cluster`, `/metrics`, ending a round);
//! players present the token issued to them when their game was created,
//! which lets them act only as themselves and only in that game. Spectator
//! tokens read a game and nothing else.
//!
//! Player and spectator tokens are JWTs (HS256) signed with a key every
//! node of the cluster shares, so a token issued by one node is accepted by
//! all. They expire ([`Auth::token_ttl`]); the operator can issue fresh ones
//! (`POST /games/{id}/tokens`). The operator token is compared in constant
//! time. Both secrets come from files or the environment, never from a flag
//! value another user could read in `ps`.
//!
//! ```
//! use minotaur_core::GameId;
//! use minotaur_examples::auth::{Auth, Caller, Role};
//! use std::time::{Duration, SystemTime};
//!
//! let auth = Auth::new("an-operator-token-long-enough", b"a-player-key-shared-by-the-cluster")?;
//! assert_eq!(auth.caller(Some("Bearer an-operator-token-long-enough"))?, Caller::Operator);
//!
//! let game = GameId::random();
//! let expires = SystemTime::now() + Duration::from_secs(60);
//! let token = auth.issue(game, &Role::Player("ann".into()), expires)?;
//! let ann = auth.caller(Some(&format!("Bearer {token}")))?;
//! assert!(ann.may_act(game, &"ann".into()).is_ok());
//! assert!(ann.may_act(game, &"bob".into()).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use minotaur_core::{Game, GameId, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use subtle::ConstantTimeEq;

/// Environment variable the operator token is read from.
pub const OPERATOR_TOKEN_ENV: &str = "MINOTAUR_OPERATOR_TOKEN";
/// Environment variable the key signing player tokens is read from.
pub const PLAYER_KEY_ENV: &str = "MINOTAUR_PLAYER_KEY";
/// Shortest operator token and player key accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// How long a player or spectator token lasts unless set otherwise.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// What the endpoint checks.
#[derive(Debug, Clone, Default)]
pub enum Access {
    /// Nobody is asked who they are: every request is allowed, and moves
    /// are registered for whichever user the body names. For local tries
    /// and for tests, or behind a gateway that authenticates; the node
    /// binary runs so only with `--open-http`.
    #[default]
    Open,
    /// Operator and player tokens are required.
    Tokens(std::sync::Arc<Auth>),
}

/// The secrets and rules that tell callers apart.
#[derive(Clone)]
pub struct Auth {
    operator: Vec<u8>,
    signing: EncodingKey,
    checking: DecodingKey,
    validation: Validation,
    /// How long issued tokens last.
    pub token_ttl: Duration,
    /// Whether `/metrics` answers without the operator token (for a
    /// scraper inside the network).
    pub metrics_public: bool,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("operator", &"<redacted>")
            .field("player_key", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

/// Why [`Auth`] could not be set up or could not issue a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The operator token is shorter than [`MIN_SECRET_BYTES`].
    #[error("the operator token must be at least {MIN_SECRET_BYTES} bytes")]
    OperatorTokenTooShort,
    /// The player key is shorter than [`MIN_SECRET_BYTES`].
    #[error("the player key must be at least {MIN_SECRET_BYTES} bytes")]
    PlayerKeyTooShort,
    /// The crypto library refused the player key.
    #[error("unusable player key: {0}")]
    Key(String),
    /// A token could not be signed.
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

/// Whom a token is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// One player of the game: acts as that user, reads the game.
    Player(UserId),
    /// Reads the game only.
    Spectator,
}

/// Who a request comes from, once its token was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No check: [`Access::Open`].
    Anyone,
    /// The operator token.
    Operator,
    /// A player of `game`.
    Player {
        /// The game the token is for.
        game: GameId,
        /// The player.
        user: UserId,
    },
    /// A spectator of `game`.
    Spectator {
        /// The game the token is for.
        game: GameId,
    },
}

/// Why a request is refused: `401` when the caller is not known (no token,
/// a bad or an expired one), `403` when it is known but may not do this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `Authorization` header.
    #[error("this route needs a token: send `Authorization: Bearer <token>`")]
    MissingToken,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be `Bearer <token>`")]
    MalformedHeader,
    /// Not the operator token, and not a token this cluster signed.
    #[error("the token is not valid here")]
    InvalidToken,
    /// A token this cluster signed, expired.
    #[error("the token has expired: ask the operator for a new one")]
    ExpiredToken,
    /// The route is the operator's.
    #[error("only the operator may do this")]
    OperatorOnly,
    /// The token is for another game.
    #[error("the token is for another game")]
    WrongGame,
    /// The token is another player's (or a spectator's).
    #[error("the token does not let its holder act as {0}")]
    WrongPlayer(UserId),
}

impl Denied {
    /// `401` or `403`.
    pub fn status(&self) -> u16 {
        match self {
            Denied::MissingToken
            | Denied::MalformedHeader
            | Denied::InvalidToken
            | Denied::ExpiredToken => 401,
            Denied::OperatorOnly | Denied::WrongGame | Denied::WrongPlayer(_) => 403,
        }
    }

    /// The error's name in the answer's body.
    pub fn name(&self) -> &'static str {
        match self {
            Denied::MissingToken => "MissingToken",
            Denied::MalformedHeader => "MalformedAuthorization",
            Denied::InvalidToken => "InvalidToken",
            Denied::ExpiredToken => "ExpiredToken",
            Denied::OperatorOnly => "OperatorOnly",
            Denied::WrongGame => "WrongGame",
            Denied::WrongPlayer(_) => "WrongPlayer",
        }
    }
}

/// The tokens of one game's players and spectators, as `POST /games` and
/// `POST /games/{id}/tokens` answer them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameTokens {
    /// Each player's token.
    pub players: BTreeMap<UserId, String>,
    /// A token that reads the game only.
    pub spectator: String,
    /// When they expire, in seconds since the Unix epoch.
    pub expires_at: u64,
}

/// What a token says.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The game.
    game: GameId,
    /// The player, or none for a spectator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<UserId>,
    /// Expiry, seconds since the Unix epoch.
    exp: u64,
}

fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Auth {
    /// Checks with `operator_token` and signs player tokens with
    /// `player_key` (the same on every node); each at least
    /// [`MIN_SECRET_BYTES`] long.
    pub fn new(operator_token: &str, player_key: &[u8]) -> Result<Auth, AuthError> {
        if operator_token.len() < MIN_SECRET_BYTES {
            return Err(AuthError::OperatorTokenTooShort);
        }
        if player_key.len() < MIN_SECRET_BYTES {
            return Err(AuthError::PlayerKeyTooShort);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        // Nodes' clocks may differ a little; a token is a day long.
        validation.leeway = 5;
        Ok(Auth {
            operator: operator_token.as_bytes().to_vec(),
            signing: EncodingKey::from_secret(player_key)
                .map_err(|e| AuthError::Key(e.to_string()))?,
            checking: DecodingKey::from_secret(player_key)
                .map_err(|e| AuthError::Key(e.to_string()))?,
            validation,
            token_ttl: DEFAULT_TOKEN_TTL,
            metrics_public: false,
        })
    }

    /// A token for `role` in `game`, valid until `expires`.
    pub fn issue(
        &self,
        game: GameId,
        role: &Role,
        expires: SystemTime,
    ) -> Result<String, AuthError> {
        let claims = Claims {
            game,
            sub: match role {
                Role::Player(user) => Some(user.clone()),
                Role::Spectator => None,
            },
            exp: unix_seconds(expires),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.signing)
            .map_err(|e| AuthError::Sign(e.to_string()))
    }

    /// Fresh tokens for every player of `game` and one spectator token,
    /// valid for [`Auth::token_ttl`].
    pub fn tokens_for(&self, game: &Game) -> Result<GameTokens, AuthError> {
        let expires = SystemTime::now() + self.token_ttl;
        let mut players = BTreeMap::new();
        for player in &game.players {
            let token = self.issue(game.id, &Role::Player(player.user.clone()), expires)?;
            players.insert(player.user.clone(), token);
        }
        Ok(GameTokens {
            players,
            spectator: self.issue(game.id, &Role::Spectator, expires)?,
            expires_at: unix_seconds(expires),
        })
    }

    /// Who presents the `Authorization` header `header` (its value).
    pub fn caller(&self, header: Option<&str>) -> Result<Caller, Denied> {
        let header = header.ok_or(Denied::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::MalformedHeader)?;
        self.holder_of(token)
    }

    /// Who presents `token` (the bearer token itself, as the live page's
    /// routes take it from the query).
    pub fn holder_of(&self, token: &str) -> Result<Caller, Denied> {
        if bool::from(token.as_bytes().ct_eq(&self.operator)) {
            return Ok(Caller::Operator);
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.checking, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => Denied::ExpiredToken,
                _ => Denied::InvalidToken,
            })?
            .claims;
        Ok(match claims.sub {
            Some(user) => Caller::Player {
                game: claims.game,
                user,
            },
            None => Caller::Spectator { game: claims.game },
        })
    }
}

impl Caller {
    /// Allowed only to the operator.
    pub fn operator(&self) -> Result<(), Denied> {
        match self {
            Caller::Anyone | Caller::Operator => Ok(()),
            _ => Err(Denied::OperatorOnly),
        }
    }

    /// May read game `id`: the operator, or any token of that game.
    pub fn may_read(&self, id: GameId) -> Result<(), Denied> {
        match self {
            Caller::Anyone | Caller::Operator => Ok(()),
            Caller::Player { game, .. } | Caller::Spectator { game } if *game == id => Ok(()),
            _ => Err(Denied::WrongGame),
        }
    }

    /// May act as `user` in game `id`: only that player's token. (The
    /// operator does not play.)
    pub fn may_act(&self, id: GameId, user: &UserId) -> Result<(), Denied> {
        match self {
            Caller::Anyone => Ok(()),
            Caller::Player { game, .. } if *game != id => Err(Denied::WrongGame),
            Caller::Player { user: player, .. } if player == user => Ok(()),
            _ => Err(Denied::WrongPlayer(user.clone())),
        }
    }

    /// May list the games of `user`: the operator, or a token of that
    /// player.
    pub fn may_list(&self, user: &UserId) -> Result<(), Denied> {
        match self {
            Caller::Anyone | Caller::Operator => Ok(()),
            Caller::Player { user: player, .. } if player == user => Ok(()),
            _ => Err(Denied::WrongPlayer(user.clone())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new("operator-token-0123456789", b"player-key-0123456789").unwrap()
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            Auth::new("short", b"player-key-0123456789").unwrap_err(),
            AuthError::OperatorTokenTooShort
        );
        assert_eq!(
            Auth::new("operator-token-0123456789", b"short").unwrap_err(),
            AuthError::PlayerKeyTooShort
        );
    }

    #[test]
    fn tokens_say_who_and_nothing_else_passes() {
        let auth = auth();
        let game = GameId::random();
        let later = SystemTime::now() + Duration::from_secs(60);
        let ann = auth
            .issue(game, &Role::Player("ann".into()), later)
            .unwrap();
        let watcher = auth.issue(game, &Role::Spectator, later).unwrap();
        assert_eq!(
            auth.caller(Some(&bearer(&ann))),
            Ok(Caller::Player {
                game,
                user: "ann".into()
            })
        );
        assert_eq!(
            auth.caller(Some(&bearer(&watcher))),
            Ok(Caller::Spectator { game })
        );
        assert_eq!(auth.caller(None), Err(Denied::MissingToken));
        assert_eq!(auth.caller(Some(&ann)), Err(Denied::MalformedHeader));
        assert_eq!(auth.caller(Some("Bearer ")), Err(Denied::MalformedHeader));
        assert_eq!(
            auth.caller(Some("Bearer operator-token-012345678")),
            Err(Denied::InvalidToken)
        );
        // Signed with another key, or changed after signing.
        let other = Auth::new("operator-token-0123456789", b"another-key-0123456789").unwrap();
        let forged = other
            .issue(game, &Role::Player("ann".into()), later)
            .unwrap();
        assert_eq!(
            auth.caller(Some(&bearer(&forged))),
            Err(Denied::InvalidToken)
        );
        let mut tampered = ann.clone().into_bytes();
        let middle = ann.find('.').unwrap() + 3;
        tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            auth.caller(Some(&bearer(&tampered))),
            Err(Denied::InvalidToken)
        );
        let earlier = SystemTime::now() - Duration::from_secs(60);
        let old = auth
            .issue(game, &Role::Player("ann".into()), earlier)
            .unwrap();
        assert_eq!(auth.caller(Some(&bearer(&old))), Err(Denied::ExpiredToken));
    }

    #[test]
    fn players_act_only_as_themselves_in_their_game() {
        let game = GameId::random();
        let ann = Caller::Player {
            game,
            user: "ann".into(),
        };
        assert_eq!(ann.may_act(game, &"ann".into()), Ok(()));
        assert_eq!(
            ann.may_act(game, &"bob".into()),
            Err(Denied::WrongPlayer("bob".into()))
        );
        assert_eq!(
            ann.may_act(GameId::random(), &"ann".into()),
            Err(Denied::WrongGame)
        );
        assert_eq!(ann.may_read(game), Ok(()));
        assert_eq!(ann.operator(), Err(Denied::OperatorOnly));
        let watcher = Caller::Spectator { game };
        assert_eq!(watcher.may_read(game), Ok(()));
        assert!(watcher.may_act(game, &"ann".into()).is_err());
        assert_eq!(
            Caller::Operator.may_act(game, &"ann".into()),
            Err(Denied::WrongPlayer("ann".into()))
        );
    }
}

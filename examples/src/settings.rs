//! `minotaur-node`'s settings: command-line flags over an optional TOML
//! config file over defaults. One struct lists every setting once: clap
//! reads it from the flags, serde from the file (same keys as the long
//! flags, with underscores), and the flags given on the command line are
//! laid over the file. A bad flag, a bad file or an unusable combination
//! is a [`SettingsError`], which the binary prints and exits with code 2,
//! as clap does for its own usage errors.

use crate::auth::{Access, Auth, OPERATOR_TOKEN_ENV, PLAYER_KEY_ENV};
use crate::http::{HttpOptions, HttpTls};
use crate::rate_limit::RateLimit;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use minotaur_cluster::{
    LeastLoaded, Local, NodeConfig, Placement, Rendezvous, SplitPolicy, TlsConfig,
};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Environment variable the cookie is read from when no flag gives it.
pub const COOKIE_ENV: &str = "MINOTAUR_COOKIE";

/// Where new games are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementKind {
    /// Rendezvous hashing on the game id: every node computes the same owner.
    #[default]
    Rendezvous,
    /// The node hosting the fewest sessions.
    LeastLoaded,
    /// The node the game was created through.
    Local,
}

/// What a node does when it cannot reach a majority of the members (see
/// `SplitPolicy` in minotaur-cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Majority fencing from three members; none with one or two.
    #[default]
    MajorityFromThree,
    /// Majority fencing always: with two members, both must be up.
    Majority,
    /// No fencing: every side of a split serves, and loses writes on heal.
    Available,
}

impl SplitKind {
    /// The policy itself.
    pub fn policy(self) -> SplitPolicy {
        match self {
            SplitKind::MajorityFromThree => SplitPolicy::MajorityFromThree,
            SplitKind::Majority => SplitPolicy::Majority,
            SplitKind::Available => SplitPolicy::Available,
        }
    }
}

impl PlacementKind {
    /// The placement strategy itself.
    pub fn strategy(self) -> Arc<dyn Placement> {
        match self {
            PlacementKind::Rendezvous => Arc::new(Rendezvous),
            PlacementKind::LeastLoaded => Arc::new(LeastLoaded),
            PlacementKind::Local => Arc::new(Local),
        }
    }
}

/// How `minotaur-node` writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// A line of text per event, starting with the node's name in brackets.
    #[default]
    Text,
    /// A JSON object per line, for log collectors: `node`, `timestamp`,
    /// `level`, `target`, `message` and the event's other fields, and the
    /// spans it happened in.
    Json,
}

/// Everything `minotaur-node` runs with: the command line, and the keys of
/// the config file.
#[derive(Debug, Clone, PartialEq, Eq, Parser, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[command(
    name = "minotaur-node",
    version,
    about = "One Minotaur cluster member per process, with an optional HTTP JSON endpoint.",
    long_about = "One Minotaur cluster member per process, with an optional HTTP JSON endpoint.\n\n\
        Settings come from flags, then the TOML file given with --config (same keys as the \
        long flags, with underscores: name, cookie, listen, seeds, http, placement, \
        replication, split, data_dir, idle_after_ms, log_level, log_format, rate_limit, \
        rate_limit_burst, operator_token_file, player_key_file, token_ttl_s, metrics_public, \
        max_subscribers_per_game, max_subscribers, open_http, http_tls_cert, http_tls_key, \
        dev, tls_ca, tls_cert, tls_key, tls_name), then defaults. On SIGTERM or Ctrl-C the \
        node leaves gracefully: it hands its games to the other members, then exits.",
    after_help = "Example:\n  MINOTAUR_COOKIE=\"$(openssl rand -hex 24)\" \
        MINOTAUR_OPERATOR_TOKEN=\"$(openssl rand -hex 24)\" \
        MINOTAUR_PLAYER_KEY=\"$(openssl rand -hex 32)\" \\\n    minotaur-node --name n1 \
        --listen 127.0.0.1:7001 --http 127.0.0.1:8001"
)]
pub struct Settings {
    /// TOML config file; flags override its values.
    #[arg(short, long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Node name, unique in the cluster (no '@', '/' or spaces). Required.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub name: String,
    /// Cluster cookie: the shared secret every member presents. Also read
    /// from MINOTAUR_COOKIE. At least 16 bytes unless --dev. Required.
    #[arg(long, default_value = "", hide_default_value = true)]
    pub cookie: String,
    /// Address to listen on for other members (port 0: a free port,
    /// printed on the ready line).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// A member to join through, as host:port; repeat or separate with
    /// commas. Any one live member is enough.
    #[arg(long = "seed", value_name = "ADDR", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// Serve the HTTP JSON endpoint on this address (port 0: a free port).
    /// Off unless given.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<SocketAddr>,
    /// Where new games are placed.
    #[arg(long, value_enum, default_value_t)]
    pub placement: PlacementKind,
    /// Backup copies of each game kept on other members: 1 survives one
    /// crash, 0 turns replication off.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=1))]
    pub replication: u8,
    /// What a node cut off from the majority does: with fencing, it
    /// acknowledges no write (503 NoQuorum) and the majority takes its
    /// games over once its lease has run out.
    #[arg(long, value_enum, default_value_t)]
    pub split: SplitKind,
    /// Keep this node's games durably in this directory (created if need
    /// be; one node per directory): every change is on disk before it is
    /// acknowledged, and a node restarted with the same directory serves
    /// its games again. Off unless given: games live in memory only.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Passivate a game after this many milliseconds without a command:
    /// its session stops and its owner keeps it as its encoded state until
    /// the next command wakes it. Off unless given.
    #[arg(long, value_name = "MS")]
    pub idle_after_ms: Option<u64>,
    /// Log filter: a level (error, warn, info, debug, trace) or tracing
    /// directives such as "info,minotaur_cluster=debug".
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,
    /// Log line format: text, or json (one JSON object per line).
    #[arg(long, value_enum, default_value_t)]
    pub log_format: LogFormat,
    /// Requests per second each HTTP client (told apart by its address)
    /// may send; beyond that and its burst, requests get 429. Off when not
    /// given.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Requests an HTTP client may send at once before --rate-limit
    /// applies. Default: twice the rate.
    #[arg(long, value_name = "N")]
    pub rate_limit_burst: Option<u32>,
    /// File holding the operator's bearer token (at least 16 bytes; a
    /// trailing newline is ignored), required with --http unless
    /// --open-http. Also read from MINOTAUR_OPERATOR_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub operator_token_file: Option<PathBuf>,
    /// File holding the key that signs players' tokens, the same on every
    /// node (at least 16 bytes), required with --http unless --open-http.
    /// Also read from MINOTAUR_PLAYER_KEY.
    #[arg(long, value_name = "FILE")]
    pub player_key_file: Option<PathBuf>,
    /// How long players' and spectators' tokens last, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    pub token_ttl_s: u64,
    /// Serve /metrics without the operator token (to a scraper inside the
    /// network).
    #[arg(long)]
    pub metrics_public: bool,
    /// Clients following one game's events through this node at once
    /// (GET /games/{id}/events); more get 429.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_subscribers_per_game: usize,
    /// Clients following games' events through this node at once, in
    /// all; more get 503.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_subscribers: usize,
    /// Serve HTTP without any token: anyone who reaches the port may do
    /// anything, as any player. For local tries only.
    #[arg(long)]
    pub open_http: bool,
    /// PEM file of the HTTP endpoint's certificate chain: serve HTTPS
    /// (with --http-tls-key).
    #[arg(long, value_name = "FILE")]
    pub http_tls_cert: Option<PathBuf>,
    /// PEM file of the HTTP endpoint's private key (HTTPS).
    #[arg(long, value_name = "FILE")]
    pub http_tls_key: Option<PathBuf>,
    /// The operator token from the environment.
    #[arg(skip)]
    #[serde(skip)]
    pub env_operator_token: Option<Secret>,
    /// The player key from the environment.
    #[arg(skip)]
    #[serde(skip)]
    pub env_player_key: Option<Secret>,
    /// Development mode: accept a short or well-known cookie, and use the
    /// well-known development cookie when none is given. Never in production.
    #[arg(long)]
    pub dev: bool,
    /// PEM file of the cluster's CA certificate: turns on mutual TLS for
    /// cluster links (with --tls-cert, --tls-key and --tls-name).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM file of this node's certificate chain (TLS).
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// PEM file of this node's private key (TLS).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Name every member's certificate is valid for (TLS).
    #[arg(long, value_name = "NAME")]
    pub tls_name: Option<String>,
}

/// A secret read from the environment: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Default for Settings {
    /// The defaults are the flags' defaults.
    fn default() -> Self {
        Settings::try_parse_from(["minotaur-node"]).expect("no flag is required")
    }
}

/// Why the settings are unusable. Exit code 2, or 0 for `--help`/`--version`
/// (which clap reports as an "error" carrying the text to print).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A bad flag, or `--help` / `--version`.
    #[error("{0}")]
    Cli(#[from] clap::Error),
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML for these settings.
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A required setting is missing.
    #[error("missing setting: {0}")]
    Missing(String),
    /// A setting has an unusable value.
    #[error("invalid setting {name}: {reason}")]
    Invalid {
        /// Which setting.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

impl SettingsError {
    /// The process exit code: 0 for `--help`/`--version`, else 2.
    pub fn exit_code(&self) -> u8 {
        match self {
            SettingsError::Cli(e) => u8::try_from(e.exit_code()).unwrap_or(2),
            _ => 2,
        }
    }

    /// Prints the error (or the help text) the way clap does: help to stdout,
    /// errors to stderr.
    pub fn print(&self) {
        match self {
            SettingsError::Cli(e) => {
                let _ = e.print();
            }
            other => {
                eprintln!("error: {other}\n\nFor more information, try '--help'.");
            }
        }
    }
}

impl Settings {
    /// Parses the process's arguments and environment.
    pub fn from_env() -> Result<Settings, SettingsError> {
        Settings::parse_with(std::env::args_os(), |key| std::env::var(key).ok())
    }

    /// Parses `args` (the first is the program name), reading environment
    /// variables through `env`.
    pub fn parse_with<I, T>(
        args: I,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let matches = Settings::command().try_get_matches_from(args)?;
        let flags = Settings::from_arg_matches(&matches)?;
        let mut merged = match &flags.config {
            Some(path) => read_file(path)?,
            None => toml::Table::new(),
        };
        if matches.value_source("cookie") != Some(ValueSource::CommandLine) {
            if let Some(cookie) = env(COOKIE_ENV) {
                merged.insert("cookie".into(), cookie.into());
            }
        }
        merged.extend(given_on_command_line(&flags, &matches)?);
        let mut settings: Settings = merged.try_into().map_err(|e| SettingsError::Invalid {
            name: "settings",
            reason: format!("{e}"),
        })?;
        settings.config = flags.config;
        settings.env_operator_token = env(OPERATOR_TOKEN_ENV).map(Secret);
        settings.env_player_key = env(PLAYER_KEY_ENV).map(Secret);
        settings.check()
    }

    /// Fills in what defaults to something else, and refuses what the node
    /// would refuse, as a settings error.
    fn check(mut self) -> Result<Settings, SettingsError> {
        if self.name.is_empty() {
            return Err(SettingsError::Missing(
                "--name (or `name` in the config file)".into(),
            ));
        }
        if self.cookie.is_empty() {
            if !self.dev {
                return Err(SettingsError::Missing(format!(
                    "--cookie (or {COOKIE_ENV}, or `cookie` in the config file; --dev uses a \
                     well-known development cookie)"
                )));
            }
            self.cookie = minotaur_cluster::DEV_COOKIE.to_string();
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(SettingsError::Invalid {
                name: "log_level",
                reason: format!("{:?}: {e}", self.log_level),
            });
        }
        if self.replication > 1 {
            return Err(SettingsError::Invalid {
                name: "replication",
                reason: format!("{}: only 0 or 1 is supported", self.replication),
            });
        }
        if self.idle_after_ms == Some(0) {
            return Err(SettingsError::Invalid {
                name: "idle_after_ms",
                reason: "0: give a period of 1 ms or more, or none to keep sessions running".into(),
            });
        }
        self.tls_files()?;
        self.http_options()?;
        let mut check = NodeConfig::new(self.name.clone(), self.cookie.clone());
        check.allow_weak_cookie = self.dev;
        check.replication_factor = self.replication.into();
        check.validate().map_err(|reason| SettingsError::Invalid {
            name: "node",
            reason: if reason.contains("allow_weak_cookie") {
                format!("{reason} (here: --dev)")
            } else {
                reason
            },
        })?;
        Ok(self)
    }

    /// What the HTTP endpoint serves with: the per-client request limit,
    /// who may call what, TLS, and the limits on event subscribers.
    pub fn http_options(&self) -> Result<HttpOptions, SettingsError> {
        let invalid = |name: &'static str, reason: &str| SettingsError::Invalid {
            name,
            reason: reason.to_string(),
        };
        let rate_limit = match (self.rate_limit, self.rate_limit_burst) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid("rate_limit_burst", "given without --rate-limit"))
            }
            (Some(rate), burst) => {
                let per_second = NonZeroU32::new(rate)
                    .ok_or_else(|| invalid("rate_limit", "0: give 1 or more, or none"))?;
                let burst = burst.unwrap_or_else(|| rate.saturating_mul(2));
                let burst = NonZeroU32::new(burst)
                    .ok_or_else(|| invalid("rate_limit_burst", "0: give 1 or more"))?;
                Some(RateLimit { per_second, burst })
            }
        };
        if self.max_subscribers_per_game == 0 || self.max_subscribers == 0 {
            return Err(invalid(
                "max_subscribers",
                "0: give 1 or more, per game and in all",
            ));
        }
        Ok(HttpOptions {
            rate_limit,
            access: self.access()?,
            tls: self.http_tls()?,
            subscribers: minotaur_core::SubscriberLimits {
                per_game: self.max_subscribers_per_game,
                per_node: self.max_subscribers,
            },
        })
    }

    /// The HTTP endpoint's certificate and key, if it serves HTTPS.
    fn http_tls(&self) -> Result<Option<HttpTls>, SettingsError> {
        let (cert, key) = match (&self.http_tls_cert, &self.http_tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            _ => {
                return Err(SettingsError::Invalid {
                    name: "http_tls",
                    reason: "give both --http-tls-cert and --http-tls-key, or neither".into(),
                })
            }
        };
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| SettingsError::ReadFile {
                path: path.to_path_buf(),
                source,
            })
        };
        HttpTls::from_pem(&read(cert)?, &read(key)?)
            .map(Some)
            .map_err(|e| SettingsError::Invalid {
                name: "http_tls",
                reason: e.to_string(),
            })
    }

    /// Who may call what over HTTP: tokens, or open with --open-http.
    fn access(&self) -> Result<Access, SettingsError> {
        if self.http.is_none() {
            return Ok(Access::Open);
        }
        let operator = secret(&self.operator_token_file, &self.env_operator_token)?;
        let key = secret(&self.player_key_file, &self.env_player_key)?;
        match (self.open_http, operator, key) {
            (true, None, None) => Ok(Access::Open),
            (true, _, _) => Err(SettingsError::Invalid {
                name: "open_http",
                reason: "given with an operator token or a player key: choose one".into(),
            }),
            (false, Some(operator), Some(key)) => {
                let mut auth =
                    Auth::new(&operator, key.as_bytes()).map_err(|e| SettingsError::Invalid {
                        name: "http tokens",
                        reason: e.to_string(),
                    })?;
                auth.token_ttl = std::time::Duration::from_secs(self.token_ttl_s.max(1));
                auth.metrics_public = self.metrics_public;
                Ok(Access::Tokens(Arc::new(auth)))
            }
            (false, _, _) => Err(SettingsError::Missing(format!(
                "the HTTP endpoint's secrets: --operator-token-file (or {OPERATOR_TOKEN_ENV}) and \
                 --player-key-file (or {PLAYER_KEY_ENV}); or --open-http to serve without tokens \
                 (local tries only)"
            ))),
        }
    }

    /// The TLS files (CA, certificate, key) and name, if TLS is on.
    fn tls_files(&self) -> Result<Option<(&Path, &Path, &Path, &str)>, SettingsError> {
        match (&self.tls_ca, &self.tls_cert, &self.tls_key, &self.tls_name) {
            (None, None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key), Some(name)) => Ok(Some((ca, cert, key, name))),
            _ => Err(SettingsError::Invalid {
                name: "tls",
                reason: "give all of --tls-ca, --tls-cert, --tls-key and --tls-name, or none"
                    .into(),
            }),
        }
    }

    /// The node's configuration. Reads the TLS files, if any.
    pub fn node_config(&self) -> Result<NodeConfig, SettingsError> {
        let mut config = NodeConfig::new(self.name.clone(), self.cookie.clone());
        config.listen_addr = self.listen;
        config.seeds = self.seeds.clone();
        config.placement = self.placement.strategy();
        config.replication_factor = self.replication.into();
        config.split = self.split.policy();
        config.allow_weak_cookie = self.dev;
        config.idle_after = self.idle_after_ms.map(std::time::Duration::from_millis);
        config.data_dir = self.data_dir.clone();
        if let Some((ca, cert, key, name)) = self.tls_files()? {
            let read = |path: &Path| {
                std::fs::read(path).map_err(|source| SettingsError::ReadFile {
                    path: path.to_path_buf(),
                    source,
                })
            };
            let built = TlsConfig::mutual_from_pem(&read(ca)?, &read(cert)?, &read(key)?, name)
                .map_err(|e| SettingsError::Invalid {
                    name: "tls",
                    reason: e.to_string(),
                })?;
            config.tls = Some(built);
        }
        Ok(config)
    }
}

/// A secret from its file (trailing whitespace dropped) or else the
/// environment.
fn secret(file: &Option<PathBuf>, env: &Option<Secret>) -> Result<Option<String>, SettingsError> {
    match file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
                path: path.clone(),
                source,
            })?;
            Ok(Some(text.trim_end().to_string()))
        }
        None => Ok(env.as_ref().map(|s| s.0.clone())),
    }
}

/// The settings given as flags, as config file keys.
fn given_on_command_line(
    flags: &Settings,
    matches: &ArgMatches,
) -> Result<toml::Table, SettingsError> {
    let all = toml::Table::try_from(flags).map_err(|e| SettingsError::Invalid {
        name: "settings",
        reason: e.to_string(),
    })?;
    Ok(all
        .into_iter()
        .filter(|(key, _)| matches.value_source(key) == Some(ValueSource::CommandLine))
        .collect())
}

/// The config file's keys, checked against the settings (so that an
/// unknown key or a bad value is reported with its line).
fn read_file(path: &Path) -> Result<toml::Table, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |source| SettingsError::ParseFile {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    toml::from_str::<Settings>(&text).map_err(parse_error)?;
    toml::from_str(&text).map_err(parse_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    const COOKIE: &str = "a-long-test-cookie-0123456789";

    fn parse(args: &[&str]) -> Result<Settings, SettingsError> {
        let argv = std::iter::once("minotaur-node").chain(args.iter().copied());
        Settings::parse_with(argv, |_| None)
    }

    #[test]
    fn flags_give_every_setting() {
        let s = parse(&[
            "--name",
            "n1",
            "--cookie",
            COOKIE,
            "--listen",
            "127.0.0.1:7001",
            "--seed",
            "127.0.0.1:7002,127.0.0.1:7003",
            "--seed",
            "127.0.0.1:7004",
            "--http",
            "127.0.0.1:8001",
            "--open-http",
            "--placement",
            "least-loaded",
            "--replication",
            "0",
            "--split",
            "majority",
            "--log-level",
            "debug",
        ])
        .unwrap();
        assert_eq!(s.split, SplitKind::Majority);
        assert_eq!(s.name, "n1");
        assert_eq!(s.cookie, COOKIE);
        assert_eq!(s.listen, "127.0.0.1:7001".parse().unwrap());
        assert_eq!(
            s.seeds,
            ["127.0.0.1:7002", "127.0.0.1:7003", "127.0.0.1:7004"]
        );
        assert_eq!(s.http, Some("127.0.0.1:8001".parse().unwrap()));
        assert_eq!(s.placement, PlacementKind::LeastLoaded);
        assert_eq!(s.replication, 0);
        assert_eq!(s.log_level, "debug");
        assert!(!s.dev);
        let cfg = s.node_config().unwrap();
        assert_eq!(cfg.listen_addr.port(), 7001);
        assert_eq!(cfg.replication_factor, 0);
    }

    #[test]
    fn defaults_and_http_off_unless_given() {
        let s = parse(&["--name", "n1", "--cookie", COOKIE]).unwrap();
        assert_eq!(s.http, None);
        assert_eq!(s.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(s.placement, PlacementKind::Rendezvous);
        assert_eq!(s.replication, 1);
        assert_eq!(s.log_level, "info");
        assert!(s.seeds.is_empty());
        assert_eq!(s.node_config().unwrap().idle_after, None);
    }

    #[test]
    fn idle_games_passivate_when_asked() {
        let s = parse(&["--name", "n1", "--cookie", COOKIE, "--idle-after-ms", "500"]).unwrap();
        let cfg = s.node_config().unwrap();
        assert_eq!(cfg.idle_after, Some(std::time::Duration::from_millis(500)));
        let s = parse(&[
            "--name",
            "n1",
            "--cookie",
            COOKIE,
            "--data-dir",
            "/var/lib/n1",
        ])
        .unwrap();
        let cfg = s.node_config().unwrap();
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/var/lib/n1")));
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--idle-after-ms", "0"]),
            "idle_after_ms",
        );
    }

    #[test]
    fn cookie_from_env_and_dev_cookie() {
        let s = Settings::parse_with(["minotaur-node", "--name", "n1"], |k| {
            (k == COOKIE_ENV).then(|| COOKIE.to_string())
        })
        .unwrap();
        assert_eq!(s.cookie, COOKIE);
        let s = parse(&["--name", "n1", "--dev"]).unwrap();
        assert_eq!(s.cookie, minotaur_cluster::DEV_COOKIE);
        assert!(s.node_config().unwrap().allow_weak_cookie);
    }

    #[test]
    fn rate_limit_and_log_format_are_read_and_checked() {
        let s = parse(&["--name", "n1", "--cookie", COOKIE]).unwrap();
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.http_options().unwrap().rate_limit, None);

        let s = parse(&[
            "--name",
            "n1",
            "--cookie",
            COOKIE,
            "--log-format",
            "json",
            "--rate-limit",
            "50",
        ])
        .unwrap();
        assert_eq!(s.log_format, LogFormat::Json);
        let limit = s.http_options().unwrap().rate_limit.expect("a limit");
        assert_eq!((limit.per_second.get(), limit.burst.get()), (50, 100));

        let s = parse(&[
            "--name",
            "n1",
            "--cookie",
            COOKIE,
            "--rate-limit",
            "5",
            "--rate-limit-burst",
            "7",
        ])
        .unwrap();
        let limit = s.http_options().unwrap().rate_limit.expect("a limit");
        assert_eq!((limit.per_second.get(), limit.burst.get()), (5, 7));

        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--rate-limit", "0"]),
            "rate_limit",
        );
        assert_usage_error(
            parse(&[
                "--name",
                "n1",
                "--cookie",
                COOKIE,
                "--rate-limit-burst",
                "9",
            ]),
            "without --rate-limit",
        );
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--log-format", "xml"]),
            "xml",
        );
    }

    fn assert_usage_error(result: Result<Settings, SettingsError>, needle: &str) {
        let err = result.expect_err("must be refused");
        assert_eq!(err.exit_code(), 2, "{err}");
        assert!(err.to_string().contains(needle), "{err:?} lacks {needle:?}");
    }

    #[test]
    fn bad_flags_are_usage_errors_with_exit_code_2() {
        assert_usage_error(parse(&["--name", "n1", "--bogus"]), "--bogus");
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--listen", "nowhere"]),
            "nowhere",
        );
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--replication", "2"]),
            "2",
        );
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--placement", "random"]),
            "random",
        );
        assert_usage_error(parse(&["--cookie", COOKIE]), "--name");
        assert_usage_error(parse(&["--name", "n1"]), "--cookie");
        assert_usage_error(parse(&["--name", "n1", "--cookie", "short"]), "weak");
        assert_usage_error(
            parse(&["--name", "n 1", "--cookie", COOKIE]),
            "must not contain",
        );
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--log-level", "[[["]),
            "log_level",
        );
        assert_usage_error(
            parse(&["--name", "n1", "--cookie", COOKIE, "--tls-ca", "ca.pem"]),
            "--tls-key",
        );
    }

    #[test]
    fn config_file_is_read_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(
            &path,
            format!(
                "name = \"from-file\"\ncookie = \"{COOKIE}\"\nlisten = \"127.0.0.1:7001\"\n\
                 seeds = [\"127.0.0.1:7002\"]\nhttp = \"127.0.0.1:8001\"\n\
                 placement = \"local\"\nreplication = 0\nlog_level = \"warn\"\n"
            ),
        )
        .unwrap();
        let file = path.to_str().unwrap();
        // Served with tokens: their files named in the config file.
        let (operator, key) = (dir.path().join("operator"), dir.path().join("key"));
        std::fs::write(&operator, "operator-token-from-a-file\n").unwrap();
        std::fs::write(&key, "player-key-from-a-file-00").unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&format!(
            "operator_token_file = {:?}\nplayer_key_file = {:?}\n",
            operator.to_str().unwrap(),
            key.to_str().unwrap()
        ));
        std::fs::write(&path, text).unwrap();
        let s = parse(&["--config", file]).unwrap();
        assert!(matches!(
            s.http_options().unwrap().access,
            Access::Tokens(_)
        ));
        assert_eq!(s.name, "from-file");
        assert_eq!(s.seeds, ["127.0.0.1:7002"]);
        assert_eq!(s.http, Some("127.0.0.1:8001".parse().unwrap()));
        assert_eq!(s.placement, PlacementKind::Local);
        assert_eq!(s.replication, 0);
        assert_eq!(s.log_level, "warn");
        let s = parse(&["--config", file, "--name", "n9", "--seed", "10.0.0.1:1"]).unwrap();
        assert_eq!(s.name, "n9");
        assert_eq!(s.seeds, ["10.0.0.1:1"]);
    }

    #[test]
    fn http_asks_for_its_secrets_or_for_open_http() {
        let base = ["--name", "n1", "--cookie", COOKIE, "--http", "127.0.0.1:0"];
        let with = |extra: &[&str], env: &[(&str, &str)]| {
            let argv = std::iter::once("minotaur-node")
                .chain(base)
                .chain(extra.iter().copied());
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Settings::parse_with(argv, move |key| {
                env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
            })
        };
        assert_usage_error(with(&[], &[]), "--open-http");
        let operator = (OPERATOR_TOKEN_ENV, "operator-token-from-env-0");
        let key = (PLAYER_KEY_ENV, "player-key-from-env-00000");
        // One secret alone is not enough.
        assert_usage_error(with(&[], &[operator]), "--player-key-file");
        let s = with(
            &["--metrics-public", "--token-ttl-s", "60"],
            &[operator, key],
        )
        .unwrap();
        let Access::Tokens(auth) = s.http_options().unwrap().access else {
            panic!("tokens are checked");
        };
        assert!(auth.metrics_public);
        assert_eq!(auth.token_ttl, std::time::Duration::from_secs(60));
        // The secrets never show in the settings' debug output.
        let shown = format!("{s:?} {auth:?}");
        assert!(!shown.contains("from-env"), "{shown}");
        assert_usage_error(with(&[], &[(OPERATOR_TOKEN_ENV, "short"), key]), "16 bytes");
        assert_usage_error(with(&["--open-http"], &[operator, key]), "choose one");
        let open = with(&["--open-http"], &[]).unwrap();
        assert!(matches!(open.http_options().unwrap().access, Access::Open));
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent");
        assert_usage_error(
            with(&["--operator-token-file", absent.to_str().unwrap()], &[key]),
            "absent",
        );
    }

    #[test]
    fn bad_config_files_are_clear_errors_with_exit_code_2() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent.toml");
        assert_usage_error(
            parse(&["--config", missing.to_str().unwrap()]),
            "cannot read config file",
        );
        for (text, needle) in [
            ("name = \"n1\"\ncolour = \"red\"\n", "colour"),
            ("name = 7\n", "name"),
            ("name = \"n1\"\nlisten = \"not an address\"\n", "listen"),
            ("this is not toml", "invalid config file"),
        ] {
            let path = dir.path().join("bad.toml");
            std::fs::write(&path, text).unwrap();
            assert_usage_error(parse(&["--config", path.to_str().unwrap()]), needle);
        }
    }

    #[test]
    fn help_documents_every_setting_and_exits_0() {
        let help = Settings::command().render_long_help().to_string();
        for flag in [
            "--config",
            "--name",
            "--cookie",
            "MINOTAUR_COOKIE",
            "--listen",
            "--seed",
            "--http",
            "--placement",
            "rendezvous",
            "least-loaded",
            "--replication",
            "--split",
            "majority-from-three",
            "--log-level",
            "--dev",
            "--tls-ca",
            "--tls-cert",
            "--tls-key",
            "--tls-name",
            "SIGTERM",
        ] {
            assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
        }
        let err = parse(&["--help"]).expect_err("help is reported as an early exit");
        assert_eq!(err.exit_code(), 0);
        Settings::command().debug_assert();
    }
}

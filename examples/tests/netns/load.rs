//! The load the harness puts on the cluster through HTTP, as a client
//! would: games created through every node, then writes (`end-round`) to
//! them through every node, each with an `Idempotency-Key` and sent again
//! with the same key through the next node on a 5xx, a timeout or a failed
//! connection. Each game has one writer, so its acknowledged versions
//! must rise; the ledger keeps them for the final check.

use minotaur_core::GameId;
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request's deadline: a node that vanished answers nothing.
const ATTEMPT: Duration = Duration::from_secs(2);
/// How long one write is retried before its outcome counts as unknown.
const GIVE_UP: Duration = Duration::from_secs(20);

/// What one game was acknowledged.
#[derive(Debug, Default, Clone)]
pub struct Ledger {
    /// The version each acknowledgement carried, in order.
    pub acked: Vec<u64>,
    /// Writes given up on: applied or not, nobody knows.
    pub unknown: u64,
    /// The longest time between two acknowledgements (a round left that
    /// long ends by its deadline, which moves the version too).
    pub longest_gap: Duration,
    last_ack: Option<Instant>,
}

/// Counters for the run's summary.
#[derive(Debug, Default)]
pub struct Counters {
    pub acked: AtomicU64,
    pub retried: AtomicU64,
    pub unknown: AtomicU64,
}

/// The writers at work.
pub struct Load {
    pub ledgers: Arc<Mutex<BTreeMap<GameId, Ledger>>>,
    pub counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    writers: Vec<tokio::task::JoinHandle<()>>,
}

/// The nodes' operator token: the harness creates games, ends rounds and
/// reads the cluster as the operator.
pub const OPERATOR_TOKEN: &str = "netns-harness-operator-token";
/// The key the nodes sign players' tokens with.
pub const PLAYER_KEY: &str = "netns-harness-player-key-0000";

/// An HTTP client with a deadline on every request, presenting the
/// operator token.
pub fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        bearer.parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .timeout(ATTEMPT)
        .connect_timeout(ATTEMPT)
        .pool_max_idle_per_host(0)
        .build()
        .expect("client")
}

/// Creates `count` two-player games, in turn through each of `urls`;
/// answers their ids.
pub async fn create_games(urls: &[String], count: usize) -> Result<Vec<GameId>, String> {
    let http = client();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let code = format!("NETNS{i:03}");
        let body = serde_json::json!({"join_code": code, "users": ["ann", "bob"]});
        let started = Instant::now();
        let mut attempt = i;
        let id = loop {
            let url = &urls[attempt % urls.len()];
            attempt += 1;
            let sent = http.post(format!("{url}/games")).json(&body).send().await;
            match sent {
                Ok(r) if r.status().is_success() => break game_id(r).await?,
                // An earlier attempt that timed out had created it.
                Ok(r) if r.status() == reqwest::StatusCode::CONFLICT => {
                    let r = http
                        .get(format!("{url}/games/by-code/{code}"))
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    break game_id(r).await?;
                }
                Ok(r) if r.status().is_client_error() => {
                    return Err(format!(
                        "create {code}: {}",
                        r.text().await.unwrap_or_default()
                    ))
                }
                _ if started.elapsed() > GIVE_UP => {
                    return Err(format!(
                        "create {code}: no node answered within {GIVE_UP:?}"
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

async fn game_id(response: reqwest::Response) -> Result<GameId, String> {
    let game: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    serde_json::from_value(game["id"].clone()).map_err(|e| format!("no game id: {e}"))
}

impl Load {
    /// Starts `writers` writers, each writing in turn to its share of
    /// `games` through `urls`.
    pub fn start(urls: Vec<String>, games: &[GameId], writers: usize) -> Load {
        let ledgers: BTreeMap<GameId, Ledger> =
            games.iter().map(|id| (*id, Ledger::default())).collect();
        let ledgers = Arc::new(Mutex::new(ledgers));
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..writers)
            .map(|w| {
                let mine: Vec<GameId> = games.iter().skip(w).step_by(writers).copied().collect();
                let (urls, ledgers, counters, stop) = (
                    urls.clone(),
                    ledgers.clone(),
                    counters.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    let http = client();
                    while !stop.load(Ordering::Relaxed) {
                        for id in &mine {
                            let outcome = write(&http, &urls, *id, &counters).await;
                            let mut ledgers = ledgers.lock().unwrap();
                            let ledger = ledgers.get_mut(id).expect("a ledger per game");
                            match outcome {
                                Some(version) => {
                                    let now = Instant::now();
                                    if let Some(last) = ledger.last_ack {
                                        ledger.longest_gap = ledger.longest_gap.max(now - last);
                                    }
                                    ledger.last_ack = Some(now);
                                    ledger.acked.push(version);
                                    counters.acked.fetch_add(1, Ordering::Relaxed);
                                }
                                None => {
                                    ledger.unknown += 1;
                                    counters.unknown.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .collect();
        Load {
            ledgers,
            counters,
            stop,
            writers,
        }
    }

    /// Stops the writers once their writes in flight are settled; answers
    /// the ledgers.
    pub async fn stop(self) -> BTreeMap<GameId, Ledger> {
        self.stop.store(true, Ordering::Relaxed);
        for writer in self.writers {
            let _ = writer.await;
        }
        self.ledgers.lock().unwrap().clone()
    }
}

/// One logical write to game `id`: its version once acknowledged, `None`
/// when given up on.
async fn write(
    http: &reqwest::Client,
    urls: &[String],
    id: GameId,
    counters: &Counters,
) -> Option<u64> {
    let key = uuid::Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut node = rand::rng().random_range(0..urls.len());
    loop {
        let url = &urls[node % urls.len()];
        let sent = http
            .post(format!("{url}/games/{id}/end-round"))
            .header("Idempotency-Key", &key)
            .send()
            .await;
        if let Ok(response) = sent {
            if response.status().is_success() {
                let ack: serde_json::Value = response.json().await.ok()?;
                return ack["version"].as_u64();
            }
        }
        if started.elapsed() > GIVE_UP {
            return None;
        }
        // A 5xx, a 404 while the game is between owners, no answer: the
        // same write, through the next node.
        counters.retried.fetch_add(1, Ordering::Relaxed);
        node += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

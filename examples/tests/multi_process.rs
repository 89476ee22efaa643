//! A cluster of three `minotaur-node` processes (the built binary) on
//! 127.0.0.1: a game created through node 1's HTTP endpoint survives node 1
//! leaving on SIGTERM, and reads the same through node 2 (the same steps as
//! `examples/local-cluster.sh`); with data dirs, every acknowledged write
//! survives all three being killed at once (SIGKILL) and started again.
//! The nodes run as deployed: the operator creates games and reads the
//! cluster with its token, and each player writes with their own.

mod common;

use minotaur_core::Game;
use minotaur_examples::http::{ClusterStatus, CreatedGame};
use minotaur_testkit::eventually;
use serde_json::json;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const COOKIE: &str = "multi-process-test-cookie-4f2a9c";
const OPERATOR_TOKEN: &str = "multi-process-operator-token-77b1";
const PLAYER_KEY: &str = "multi-process-player-key-0c93d5e1";

/// A client that presents the operator token unless a request gives
/// another.
fn client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {OPERATOR_TOKEN}");
    headers.insert(
        reqwest::header::AUTHORIZATION,
        bearer.parse().expect("a header value"),
    );
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The token of `user` in the game `created`.
fn token<'a>(created: &'a CreatedGame, user: &str) -> &'a str {
    created
        .tokens
        .as_ref()
        .and_then(|t| t.players.get(&user.into()))
        .expect("a token for every player")
}
const WAIT: Duration = Duration::from_secs(20);

/// A running `minotaur-node`; killed if the test ends early.
struct NodeProcess {
    name: String,
    child: Child,
    cluster: String,
    http: String,
    log: Arc<Mutex<Vec<String>>>,
    /// Reads stderr into `log`; ends when the process has exited.
    reader: tokio::task::JoinHandle<()>,
}

/// Starts a node on free ports and waits for its ready line.
async fn spawn(
    name: &str,
    seeds: &[&NodeProcess],
) -> Result<NodeProcess, Box<dyn std::error::Error>> {
    spawn_with(name, seeds, &[]).await
}

/// [`spawn`] with extra flags.
async fn spawn_with(
    name: &str,
    seeds: &[&NodeProcess],
    extra: &[&str],
) -> Result<NodeProcess, Box<dyn std::error::Error>> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_minotaur-node"));
    command.args(extra);
    command
        .args([
            "--name",
            name,
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            // Games live on the node they are created through, so this
            // test's game is on n1 and must be handed over when n1 leaves.
            "--placement",
            "local",
        ])
        .env("MINOTAUR_COOKIE", COOKIE)
        .env("MINOTAUR_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("MINOTAUR_PLAYER_KEY", PLAYER_KEY)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for seed in seeds {
        command.args(["--seed", &seed.cluster]);
    }
    let mut child = command.spawn()?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let sink = log.clone();
    let reader = tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.starts_with("minotaur-node ready:") {
                return Some(line);
            }
        }
        None
    })
    .await
    .map_err(|_| {
        format!(
            "{name} printed no ready line within {WAIT:?}: {:?}",
            log.lock().unwrap()
        )
    })?
    .ok_or_else(|| {
        format!(
            "{name} exited before it was ready: {:?}",
            log.lock().unwrap()
        )
    })?;
    let field = |key: &str| {
        ready
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .map(str::to_string)
            .ok_or_else(|| format!("no {key} in {ready:?}"))
    };
    Ok(NodeProcess {
        name: name.to_string(),
        cluster: field("cluster=")?,
        http: format!("http://{}", field("http=")?),
        child,
        log,
        reader,
    })
}

/// The captured logs of `nodes`, for failure messages.
fn logs(nodes: &[&NodeProcess]) -> String {
    nodes
        .iter()
        .flat_map(|n| n.log.lock().unwrap().clone())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn cluster_status(
    http: &reqwest::Client,
    node: &NodeProcess,
) -> Result<ClusterStatus, String> {
    let response = http
        .get(format!("{}/cluster", node.http))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    response.json().await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_survives_its_node_leaving_on_sigterm() -> Result<(), Box<dyn std::error::Error>> {
    let n1 = spawn("n1", &[]).await?;
    let n2 = spawn("n2", &[&n1]).await?;
    let n3 = spawn("n3", &[&n1, &n2]).await?;
    let http = client();
    for node in [&n1, &n2, &n3] {
        eventually(
            &format!("{} to see 3 members up", node.name),
            WAIT,
            || async {
                let status = cluster_status(&http, node).await?;
                let up = status.members.iter().filter(|m| m.status == "up").count();
                if up == 3 {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        )
        .await?;
    }

    let created: CreatedGame = http
        .post(format!("{}/games", n1.http))
        .json(&json!({"join_code": "SIGTERM", "users": ["ann", "bob", "cy"]}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut game = created.game.clone();
    // Each attack answers the whole game after it (`?answer=game`), to
    // compare with what survives the leave.
    for (user, target) in [("ann", "bob"), ("bob", "cy")] {
        game = http
            .post(format!("{}/games/{}/attacks?answer=game", n1.http, game.id))
            .bearer_auth(token(&created, user))
            .json(&json!({"user": user, "target": target}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
    }
    assert_eq!(game.version, 2);
    let before = cluster_status(&http, &n1).await?;
    assert_eq!(
        before.hosted_here,
        1,
        "{before:?}\n{}",
        logs(&[&n1, &n2, &n3])
    );

    // Graceful leave: SIGTERM, and the process exits by itself, cleanly.
    let mut n1 = n1;
    let pid = n1.child.id().ok_or("n1 already exited")?;
    let pid = libc::pid_t::try_from(pid)?;
    // SAFETY: kill(2) only sends a signal; `pid` is our own child, which
    // has not been waited for, so the id cannot have been reused.
    let signalled = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(signalled, 0, "kill(SIGTERM) failed");
    let exit = tokio::time::timeout(WAIT, n1.child.wait())
        .await
        .map_err(|_| "n1 did not exit within the deadline after SIGTERM")??;
    assert!(exit.success(), "n1 exited with {exit}");

    let seen: Game = http
        .get(format!("{}/games/{}", n2.http, game.id))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(seen, game, "the game's whole state survived the leave");
    let by_code: Game = http
        .get(format!("{}/games/by-code/sigterm", n2.http))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(by_code.id, game.id);
    let status = cluster_status(&http, &n2).await?;
    assert_eq!(status.games_per_node.values().sum::<usize>(), 1);
    assert!(!status.games_per_node.contains_key("n1"), "{status:?}");
    assert!(
        status
            .members
            .iter()
            .all(|m| m.name != "n1" || m.status == "down"),
        "{status:?}"
    );

    // n1's log: every line names the node, and it says it handed over.
    tokio::time::timeout(WAIT, &mut n1.reader)
        .await
        .map_err(|_| "n1's stderr did not close")??;
    let log = n1.log.lock().unwrap().clone();
    assert!(
        log.iter().any(|l| l.contains("leaving the cluster")),
        "{log:#?}"
    );
    assert!(log.iter().all(|l| l.starts_with("[n1] ")), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("handed sessions over") && l.contains("moved=1")),
        "{log:#?}"
    );
    drop(n3);
    Ok(())
}

/// Waits until every node in `nodes` sees them all up.
async fn all_up(
    http: &reqwest::Client,
    nodes: &[&NodeProcess],
) -> Result<(), Box<dyn std::error::Error>> {
    for node in nodes {
        eventually(
            &format!("{} to see {} members up", node.name, nodes.len()),
            WAIT,
            || async {
                let status = cluster_status(http, node).await?;
                let up = status.members.iter().filter(|m| m.status == "up").count();
                if up == nodes.len() {
                    Ok(())
                } else {
                    Err(format!("{status:?}"))
                }
            },
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_killed_at_once_restarts_from_its_data_dirs(
) -> Result<(), Box<dyn std::error::Error>> {
    let data = tempfile::tempdir()?;
    let dir = |name: &str| data.path().join(name).to_string_lossy().into_owned();
    let (d1, d2, d3) = (dir("n1"), dir("n2"), dir("n3"));
    let n1 = spawn_with("n1", &[], &["--data-dir", &d1]).await?;
    let n2 = spawn_with("n2", &[&n1], &["--data-dir", &d2]).await?;
    let n3 = spawn_with("n3", &[&n1, &n2], &["--data-dir", &d3]).await?;
    let http = client();
    all_up(&http, &[&n1, &n2, &n3]).await?;

    // Two games through each node, each attacked twice; the whole game
    // acknowledged after the last write is what must come back.
    let mut acked = Vec::new();
    for (i, node) in [&n1, &n2, &n3, &n1, &n2, &n3].into_iter().enumerate() {
        let created: CreatedGame = http
            .post(format!("{}/games", node.http))
            .json(&json!({"join_code": format!("KILL{i}"), "users": ["ann", "bob", "cy"]}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut game = created.game.clone();
        for (user, target) in [("ann", "bob"), ("cy", "ann")] {
            game = http
                .post(format!(
                    "{}/games/{}/attacks?answer=game",
                    node.http, game.id
                ))
                .bearer_auth(token(&created, user))
                .json(&json!({"user": user, "target": target}))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
        }
        acked.push(game);
    }

    // A power cut: every process killed at once, nothing handed over.
    let mut nodes = [n1, n2, n3];
    for node in &mut nodes {
        node.child.start_kill()?;
    }
    for node in &mut nodes {
        tokio::time::timeout(WAIT, node.child.wait()).await??;
    }

    let n1 = spawn_with("n1", &[], &["--data-dir", &d1]).await?;
    let n2 = spawn_with("n2", &[&n1], &["--data-dir", &d2]).await?;
    let n3 = spawn_with("n3", &[&n1, &n2], &["--data-dir", &d3]).await?;
    all_up(&http, &[&n1, &n2, &n3]).await?;
    for before in &acked {
        for node in [&n1, &n2, &n3] {
            let url = format!("{}/games/{}", node.http, before.id);
            let seen: Game = eventually(
                &format!("game {} through {}", before.id, node.name),
                WAIT,
                || async {
                    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
                    if !response.status().is_success() {
                        return Err(format!("{}", response.status()));
                    }
                    response.json().await.map_err(|e| e.to_string())
                },
            )
            .await?;
            assert_eq!(&seen, before, "{}", logs(&[&n1, &n2, &n3]));
        }
    }

    // A second process on a data dir in use is refused, naming the file.
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        run_node(&["--name", "n4", "--dev", "--data-dir", &d1])
    })
    .await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("in use") && stderr.contains("minotaur.redb"),
        "{stderr}"
    );
    Ok(())
}

/// Runs the binary to completion with `args`; returns (code, stdout, stderr).
fn run_node(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minotaur-node"))
        .args(args)
        .env_remove("MINOTAUR_COOKIE")
        .env_remove("MINOTAUR_OPERATOR_TOKEN")
        .env_remove("MINOTAUR_PLAYER_KEY")
        .stdin(Stdio::null())
        .output()
        .expect("run minotaur-node");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_and_files_exit_with_code_2_and_help_with_0() {
    let (code, stdout, _) = run_node(&["--help"]);
    assert_eq!(code, Some(0));
    for flag in [
        "--name",
        "--cookie",
        "--seed",
        "--http",
        "--placement",
        "--config",
    ] {
        assert!(stdout.contains(flag), "--help lacks {flag}");
    }
    let (code, _, stderr) = run_node(&["--name", "n1", "--bogus"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--bogus"), "{stderr}");
    let (code, _, stderr) = run_node(&["--name", "n1"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("--cookie"), "{stderr}");
    // HTTP without its secrets, and without saying it may run open.
    let (code, _, stderr) = run_node(&["--name", "n1", "--dev", "--http", "127.0.0.1:0"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("--operator-token-file") && stderr.contains("--open-http"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("node.toml");
    std::fs::write(&file, "name = \"n1\"\nport = 5\n").expect("write");
    let (code, _, stderr) = run_node(&["--config", file.to_str().expect("utf-8 path")]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("node.toml") && stderr.contains("port"),
        "{stderr}"
    );

    // A data dir whose store is not one: refused, naming the file.
    let store = dir.path().join("minotaur.redb");
    std::fs::write(&store, vec![0xa5; 8192]).expect("write");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let (code, _, stderr) = run_node(&["--name", "n1", "--dev", "--data-dir", data_dir]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("corrupt") && stderr.contains("minotaur.redb"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_naming_the_node(
) -> Result<(), Box<dyn std::error::Error>> {
    let node = spawn_with("jsonlog1", &[], &["--log-format", "json"]).await?;
    // The node logs its start at info: at least one line by now, or soon.
    let lines = eventually("a log line", WAIT, || async {
        let lines = node.log.lock().unwrap().clone();
        if lines.is_empty() {
            Err("no line yet".to_string())
        } else {
            Ok(lines)
        }
    })
    .await?;
    for line in &lines {
        let object: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("not a JSON object per line ({e}): {line}"))?;
        assert_eq!(object["node"], "jsonlog1", "{line}");
        for key in ["timestamp", "level", "target", "message"] {
            assert!(object.get(key).is_some(), "no {key} in {line}");
        }
    }
    Ok(())
}

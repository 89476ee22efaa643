//! The live cluster page in a real browser: headless Chromium, driven
//! through chromedriver (WebDriver), opens the page of a running
//! three-node cluster, sees every member and the games on each; a node
//! then leaves gracefully, and the page, without a reload, shows the
//! member leaving, its games moving to the others and the hand-over in
//! its feed. A screenshot is saved as `target/live-page.png`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test fails
//! saying so, unless `MINOTAUR_BROWSER_SKIP=1` is set.

mod common;

use common::{url, Addrs};
use fantoccini::{ClientBuilder, Locator};
use minotaur_examples::auth::{Access, Auth};
use minotaur_examples::http::HttpOptions;
use minotaur_testkit::TestCluster;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

const OPERATOR: &str = "browser-test-operator-token-01";
const WAIT: Duration = Duration::from_secs(30);

fn program(name: &str, env: &str) -> Option<String> {
    if let Ok(path) = std::env::var(env) {
        return Some(path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
            .map(|p| p.to_string_lossy().into_owned())
    })
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

async fn start_driver(chromedriver: &str) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = tokio::process::Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver { _child: child, url }
}

/// Runs `script` in the page until it returns true, up to [`WAIT`]; the
/// failure says what the page last showed.
async fn until(client: &fantoccini::Client, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let ok = client
            .execute(script, vec![])
            .await
            .map(|v| v.as_bool() == Some(true))
            .unwrap_or(false);
        if ok {
            return;
        }
        if Instant::now() > deadline {
            let text = client
                .execute("return document.body.innerText", vec![])
                .await
                .map(|v| v.to_string())
                .unwrap_or_default();
            panic!("the page did not show {what} within {WAIT:?}; it showed:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_members_games_and_a_leave_without_reloading() {
    let (Some(chromium), Some(chromedriver)) = (
        program("chromium", "CHROMIUM"),
        program("chromedriver", "CHROMEDRIVER"),
    ) else {
        if std::env::var_os("MINOTAUR_BROWSER_SKIP").is_some() {
            eprintln!("browser test skipped (MINOTAUR_BROWSER_SKIP is set)");
            return;
        }
        panic!(
            "the browser test needs chromium and chromedriver: `apt-get install -y chromium \
             chromium-driver` (or set CHROMIUM and CHROMEDRIVER to their paths), or set \
             MINOTAUR_BROWSER_SKIP=1 to skip it knowingly"
        );
    };
    let auth = Auth::new(OPERATOR, b"browser-test-player-key-0000").expect("secrets");
    let options = HttpOptions {
        access: Access::Tokens(Arc::new(auth)),
        ..HttpOptions::default()
    };
    let addrs = Addrs::default();
    let cluster = common::with_http_options(
        TestCluster::builder().names(&["p1", "p2", "p3"]),
        0,
        addrs.clone(),
        options,
    )
    .start()
    .await
    .expect("a cluster");
    let engine = cluster.engine("p1").expect("engine");
    for i in 0..12 {
        engine
            .create_game(&format!("PAGE{i:02}"), vec!["ann".into(), "bob".into()])
            .await
            .expect("a game");
    }
    cluster
        .settled(Duration::from_secs(20))
        .await
        .expect("settled");

    let driver = start_driver(&chromedriver).await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-quic", "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900"]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session");

    let page = format!("{}/?token={OPERATOR}", url(&addrs, "p1"));
    client.goto(&page).await.expect("the page loads");
    // Every member, up, with the games the cluster says it hosts.
    until(
        &client,
        "three members up",
        "return document.querySelectorAll('.member.up').length === 3",
    )
    .await;
    let hosted = cluster.sessions_per_node();
    let script = format!(
        "const want = {};\
         return [...document.querySelectorAll('.member')].every(m => \
           String(want[m.dataset.name]) === m.dataset.games)",
        serde_json::to_string(&hosted).expect("json")
    );
    until(&client, "the games on each member", &script).await;
    let dots = client.find_all(Locator::Css(".dot")).await.expect("dots");
    assert_eq!(dots.len(), 12, "one dot per game");
    // The games table: each game with its owner and, on another member,
    // its backup.
    until(
        &client,
        "every game listed with its owner and backup",
        "const rows = [...document.querySelectorAll('#games tr')];\
         return rows.length === 12 && rows.every(r => {\
           const [, owner, backup] = [...r.children].map(c => c.innerText);\
           return owner.startsWith('p') && backup.startsWith('p') && backup !== owner; })",
    )
    .await;

    // p2 leaves gracefully; the page is not reloaded.
    let moving = hosted["p2"];
    cluster.stop_node("p2").await.expect("p2 leaves");
    until(
        &client,
        "p2 down, its games on p1 and p3",
        "const p2 = document.querySelector('.member[data-name=\"p2\"]');\
         const on = n => Number(document.querySelector(`.member[data-name=\"${n}\"]`).dataset.games);\
         return p2 && p2.dataset.status === 'down' && on('p1') + on('p3') === 12",
    )
    .await;
    let feed = format!(
        "const text = document.getElementById('feed').innerText;\
         return text.includes('is leaving') && text.includes('Left') && \
                text.includes('p2 handed {moving} games over')"
    );
    until(&client, "the leave and the hand-over in the feed", &feed).await;

    let png = client.screenshot().await.expect("a screenshot");
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target/")
        .join("live-page.png");
    std::fs::write(&path, png).expect("the screenshot written");
    println!("screenshot: {}", path.display());
    client.close().await.expect("the browser closes");
    drop(driver);
    cluster.shutdown().await;
}

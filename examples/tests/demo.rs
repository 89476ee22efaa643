//! The demo end to end, small: a rolling deploy under load with no error
//! and a crash with nothing acknowledged lost, both shown on the live
//! page's event stream.

use minotaur_examples::demo::{self, DemoOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads the live page's event stream at `addr` until the demo stops
/// serving it; answers all it got.
async fn watch(addr: std::net::SocketAddr) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(stream) => break stream,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!("the demo's page never listened on {addr}: {e}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    };
    let request = format!("GET /cluster/events HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("sent");
    let mut seen = Vec::new();
    let _ = stream.read_to_end(&mut seen).await;
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploy_and_crash_lose_nothing_acknowledged(
) -> Result<(), Box<dyn std::error::Error>> {
    let page = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let watcher = tokio::spawn(watch(page));
    let report = demo::run(DemoOptions {
        nodes: 3,
        games: 30,
        duration: 1,
        seed: Some(7),
        quiet: true,
        no_drain: false,
        http: Some(page),
        linger: 0,
    })
    .await?;
    // The page saw the deploy (members leaving, and down having left) and
    // the crash (a member down for another reason than leaving).
    let seen = watcher.await?;
    for sign in ["\"kind\":\"member_leaving\"", "(Left)", "event: status"] {
        assert!(
            seen.contains(sign),
            "the page's stream lacks {sign}:\n{seen}"
        );
    }
    let downs = seen.matches("is down (").count();
    let left = seen.matches("is down (Left)").count();
    assert!(downs > left, "the page's stream shows no crash:\n{seen}");
    let text = report.render();
    assert_eq!(
        report.failed, 0,
        "errors during the rolling deploy:\n{text}"
    );
    assert_eq!(report.lost, 0, "acknowledged commands lost:\n{text}");
    assert_eq!(report.duplicated, 0, "{text}");
    assert_eq!(report.alive, 30, "{text}");
    assert!(report.acked > 0 && report.rejected > 0, "{text}");
    assert_eq!(report.replacements.len(), 3, "{text}");
    assert!(report.crashed.1 > 0, "the crash hit no session:\n{text}");
    let last = text.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("summary: games=30 alive=30 acked="),
        "{last}"
    );
    for key in [
        "rejected=",
        "failed=0",
        "crash_failed=",
        "lost=0",
        "handoff_ms=",
        "failover_ms=",
    ] {
        assert!(last.contains(key), "{last} lacks {key}");
    }
    Ok(())
}

//! The demo end to end, small: a rolling deploy under load with no error
//! and a crash with nothing acknowledged lost.

use minotaur_examples::demo::{self, DemoOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_deploy_and_crash_lose_nothing_acknowledged(
) -> Result<(), Box<dyn std::error::Error>> {
    let report = demo::run(DemoOptions {
        nodes: 3,
        games: 30,
        duration: 1,
        seed: Some(7),
        quiet: true,
        no_drain: false,
    })
    .await?;
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

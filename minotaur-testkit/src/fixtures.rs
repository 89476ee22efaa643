//! What cluster tests keep needing: players for a game, timing that detects
//! failures quickly, and a count of the panics of node code.

use minotaur_cluster::NodeConfig;
use minotaur_core::UserId;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Two players, `ann` and `bob`: the smallest game.
pub fn players() -> Vec<UserId> {
    vec!["ann".into(), "bob".into()]
}

/// Two players whose names carry `i` (`a7`, `b7`), for many games whose
/// players must differ.
pub fn players_of(i: usize) -> Vec<UserId> {
    vec![format!("a{i}").into(), format!("b{i}").into()]
}

/// Heartbeats every 50 ms, a member counted down after 400 ms of silence,
/// leases of 400 ms and calls given up after 2 s: faults show within a
/// second, so a test of them stays short. For
/// [`Builder::configure`](crate::cluster::Builder::configure).
pub fn quick_failure_detection(config: &mut NodeConfig) {
    config.heartbeat_interval = Duration::from_millis(50);
    config.failure_timeout = Duration::from_millis(400);
    config.lease = Duration::from_millis(400);
    config.call_timeout = Duration::from_secs(2);
}

static PANICS: AtomicUsize = AtomicUsize::new(0);
static PANIC_MESSAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Starts counting the panics of node code anywhere in this process (nodes'
/// tasks and actors run on the runtimes' worker threads; a failing
/// assertion of a test running alongside is not counted), each still
/// printed as usual. Returns the count so far: compare [`panics`] with it.
pub fn count_panics() -> usize {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !on_a_test_thread() {
                PANICS.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut messages) = PANIC_MESSAGES.lock() {
                    if messages.len() < 20 {
                        messages.push(info.to_string());
                    }
                }
            }
            previous(info);
        }));
    });
    panics()
}

/// Panics of node code counted since [`count_panics`] was first called.
pub fn panics() -> usize {
    PANICS.load(Ordering::SeqCst)
}

/// The first 20 of those panics' messages.
pub fn panic_messages() -> Vec<String> {
    PANIC_MESSAGES.lock().map(|m| m.clone()).unwrap_or_default()
}

/// Whether this thread runs a test's own body rather than node code.
fn on_a_test_thread() -> bool {
    std::thread::current()
        .name()
        .is_some_and(|n| n != "tokio-runtime-worker" && n != "main")
}

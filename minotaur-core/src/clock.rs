//! Wall-clock time as the game stores it: milliseconds since the Unix epoch.
//!
//! Round deadlines are absolute so that a snapshot restored elsewhere (or
//! later) keeps its deadline; timers are then armed from the difference.
//!
//! The wall clock is read once, then advanced by the runtime's monotonic
//! clock (`tokio::time::Instant`). So a round's deadline and the timer
//! armed for it agree even if the system clock is stepped, and a test on
//! tokio's paused clock moves game time too: a passivated game and one
//! that stayed active can be compared round for round.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// The wall clock, read once, and the monotonic instant it was read at.
fn anchor() -> (u64, Instant) {
    static ANCHOR: OnceLock<(u64, Instant)> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall, Instant::now())
    })
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let (wall, at) = anchor();
    wall.saturating_add(Instant::now().saturating_duration_since(at).as_millis() as u64)
}

/// How long from now until `deadline_ms`; zero if it has passed.
pub fn until(deadline_ms: u64) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(now_ms()))
}

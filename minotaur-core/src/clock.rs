//! Wall-clock time as the game stores it: milliseconds since the Unix epoch.
//!
//! Round deadlines are absolute so that a snapshot restored elsewhere (or
//! later) keeps its deadline; timers are then armed from the difference.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// How long from now until `deadline_ms`; zero if it has passed.
pub fn until(deadline_ms: u64) -> Duration {
    Duration::from_millis(deadline_ms.saturating_sub(now_ms()))
}

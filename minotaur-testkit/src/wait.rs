//! Bounded waiting for conditions that become true eventually.
//!
//! Distributed tests must not `sleep` and hope: they wait for the state they
//! need, within a deadline, and say what they saw when it does not come.
//! [`eventually`] re-runs a probe with a short backoff (5 ms doubling up to
//! 100 ms) until it succeeds or the deadline passes; [`wait_until`] does the
//! same for a plain boolean predicate.
//!
//! Time is measured with Tokio's clock, so both work under a paused test clock
//! (`#[tokio::test(start_paused = true)]`), where waiting costs no real time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// First pause between two probes.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between two probes.
const MAX_BACKOFF: Duration = Duration::from_millis(100);

/// A wait that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The condition did not hold before the deadline.
    #[error("timed out after {:.1}s waiting for {what}; last saw: {last_seen}", .waited.as_secs_f64())]
    Timeout {
        /// What was waited for, as given by the caller.
        what: String,
        /// How long the wait lasted.
        waited: Duration,
        /// The description returned by the last completed probe (and a note if
        /// the last probe was still running at the deadline).
        last_seen: String,
    },
}

/// Re-runs `probe` until it returns `Ok`, for at most `timeout`.
///
/// The probe returns `Ok(value)` when the condition holds, or `Err(what it
/// saw)` otherwise; the last such description ends up in the
/// [`WaitError::Timeout`] so that a failing test explains itself. The probe is
/// run at least once, even with a zero timeout. A probe still running at the
/// deadline is dropped (cancelled), so a hanging probe cannot hang the test.
/// Between attempts the wait backs off from 5 ms to at most 100 ms.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::time::Duration;
///
/// use minotaur_testkit::wait::eventually;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), minotaur_testkit::wait::WaitError> {
/// let counter = AtomicU32::new(0);
/// let counter = &counter;
/// let seen = eventually("the counter to reach 3", Duration::from_secs(2), move || async move {
///     let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
///     if n >= 3 {
///         Ok(n)
///     } else {
///         Err(format!("counter at {n}"))
///     }
/// })
/// .await?;
/// assert_eq!(seen, 3);
///
/// let err = eventually("the impossible", Duration::from_millis(20), || async {
///     Err::<(), _>("nothing yet".to_string())
/// })
/// .await
/// .unwrap_err();
/// assert!(err.to_string().contains("waiting for the impossible; last saw: nothing yet"));
/// # Ok(())
/// # }
/// ```
pub async fn eventually<T, F, Fut>(
    what: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut last_seen = String::from("nothing (the probe never completed)");
    loop {
        match tokio::time::timeout_at(deadline, probe()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(seen)) => last_seen = seen,
            Err(_elapsed) => {
                last_seen.push_str("; the last probe was still running at the deadline");
                break;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep_until(deadline.min(now + backoff)).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    Err(WaitError::Timeout {
        what: what.to_owned(),
        waited: start.elapsed(),
        last_seen,
    })
}

/// Re-runs `predicate` until it returns `true`, for at most `timeout`.
///
/// A convenience over [`eventually`] for conditions that have nothing to
/// report; prefer [`eventually`] when the probe can say what it saw.
///
/// # Example
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use minotaur_testkit::wait::wait_until;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), minotaur_testkit::wait::WaitError> {
/// let flag = Arc::new(AtomicBool::new(false));
/// let setter = Arc::clone(&flag);
/// tokio::spawn(async move { setter.store(true, Ordering::SeqCst) });
/// wait_until("the flag to be set", Duration::from_secs(2), || {
///     let flag = Arc::clone(&flag);
///     async move { flag.load(Ordering::SeqCst) }
/// })
/// .await?;
/// # Ok(())
/// # }
/// ```
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    mut predicate: F,
) -> Result<(), WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually(what, timeout, || {
        let holds = predicate();
        async move {
            if holds.await {
                Ok(())
            } else {
                Err("the condition was false".to_owned())
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn returns_the_first_success() {
        let calls = AtomicU32::new(0);
        let calls = &calls;
        let start = Instant::now();
        let got = eventually("three calls", Duration::from_secs(5), move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 3 {
                Ok(n * 10)
            } else {
                Err(format!("call {n}"))
            }
        })
        .await;
        assert_eq!(got, Ok(30));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        // Two pauses: 5 ms then 10 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(15));
    }

    #[tokio::test(start_paused = true)]
    async fn immediate_success_does_not_wait() {
        let start = Instant::now();
        let got = eventually("nothing", Duration::ZERO, || async { Ok::<_, String>(1) }).await;
        assert_eq!(got, Ok(1));
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn times_out_with_what_it_last_saw() {
        let calls = AtomicU32::new(0);
        let calls = &calls;
        let err = eventually("the answer", Duration::from_secs(2), move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            Err::<(), _>(format!("attempt {n}"))
        })
        .await
        .expect_err("should time out");
        let n = calls.load(Ordering::SeqCst);
        // At 0, 5, 15, 35 and 75 ms, every 100 ms from 155 to 1955 ms, and at the deadline.
        assert_eq!(n, 25);
        let WaitError::Timeout {
            what,
            waited,
            last_seen,
        } = &err;
        assert_eq!(what, "the answer");
        assert_eq!(*waited, Duration::from_secs(2));
        assert_eq!(last_seen, &format!("attempt {n}"));
        assert_eq!(
            err.to_string(),
            format!("timed out after 2.0s waiting for the answer; last saw: attempt {n}")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_is_cut_at_the_deadline() {
        let calls = AtomicU32::new(0);
        let calls = &calls;
        let err = eventually(
            "a hanging probe",
            Duration::from_secs(1),
            move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err("first look".to_owned())
                } else {
                    std::future::pending::<Result<(), String>>().await
                }
            },
        )
        .await
        .expect_err("should time out");
        let WaitError::Timeout {
            waited, last_seen, ..
        } = err;
        assert_eq!(waited, Duration::from_secs(1));
        assert_eq!(
            last_seen,
            "first look; the last probe was still running at the deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_is_capped() {
        let times = Arc::new(std::sync::Mutex::new(Vec::new()));
        let start = Instant::now();
        let recorded = Arc::clone(&times);
        let _ = eventually("never", Duration::from_millis(500), move || {
            let recorded = Arc::clone(&recorded);
            async move {
                recorded
                    .lock()
                    .expect("lock")
                    .push(start.elapsed().as_millis());
                Err::<(), _>("no".to_owned())
            }
        })
        .await;
        let times = times.lock().expect("lock").clone();
        assert_eq!(times, vec![0, 5, 15, 35, 75, 155, 255, 355, 455, 500]);
    }

    #[tokio::test(start_paused = true)]
    async fn wait_until_reports_a_false_condition() {
        let ok = wait_until("true", Duration::from_secs(1), || async { true }).await;
        assert_eq!(ok, Ok(()));

        let err = wait_until("false", Duration::from_millis(100), || async { false })
            .await
            .expect_err("should time out");
        assert_eq!(
            err.to_string(),
            "timed out after 0.1s waiting for false; last saw: the condition was false"
        );
    }

    #[tokio::test]
    async fn works_on_the_real_clock() {
        let calls = AtomicU32::new(0);
        let calls = &calls;
        let got = eventually("a few calls", Duration::from_secs(10), move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            if n >= 2 {
                Ok(())
            } else {
                Err(n.to_string())
            }
        })
        .await;
        assert_eq!(got, Ok(()));
    }
}

//! Delivery with retries: exponential backoff with full jitter, bounded in attempts and in total
//! time, stopping at once on a failure that will not go away.

use std::time::Duration;

use tokio::time::Instant;

use super::{Notifier, NotifyError};
use crate::alert::Notification;

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The backoff cap of the first retry; it doubles after each failure.
    pub initial_backoff: Duration,
    /// The backoff cap never grows past this.
    pub max_backoff: Duration,
    /// Most attempts, the first included (at least one is always made).
    pub max_attempts: u32,
    /// No retry starts later than this after the first attempt started.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 500 ms doubling up to 30 s, at most 8 attempts within 2 minutes.
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// The cap on the wait after the `failures`-th failure (1-based): `initial * 2^(failures-1)`,
    /// at most `max_backoff`.
    pub fn backoff_cap(&self, failures: u32) -> Duration {
        let factor = 1_u32
            .checked_shl(failures.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

/// How a successful delivery went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts {
    /// Attempts made, the successful one included.
    pub attempts: u32,
    /// Time from the first attempt's start to the success.
    pub elapsed: Duration,
}

/// Delivers `notification`, retrying retryable failures with exponential backoff and full
/// jitter (each wait is uniformly random between zero and the current cap). Gives up after
/// `policy.max_attempts` attempts, when the next attempt would start after `policy.max_elapsed`,
/// or at once on a non-retryable failure; the error is the last attempt's, its message saying
/// how many attempts were made.
pub async fn deliver(
    notifier: &dyn Notifier,
    notification: &Notification,
    policy: &RetryPolicy,
) -> Result<Attempts, NotifyError> {
    let start = Instant::now();
    let max_attempts = policy.max_attempts.max(1);
    let mut attempt = 0_u32;
    loop {
        attempt += 1;
        let err = match notifier.notify(notification).await {
            Ok(()) => {
                return Ok(Attempts {
                    attempts: attempt,
                    elapsed: start.elapsed(),
                });
            }
            Err(e) => e,
        };
        let give_up = |why: &str| NotifyError {
            retryable: err.retryable,
            message: format!(
                "{} notification to `{}` failed after {attempt} attempt{}{why}: {}",
                notifier.kind(),
                notification.receiver,
                if attempt == 1 { "" } else { "s" },
                err.message
            ),
        };
        if !err.retryable {
            return Err(give_up(" (not retryable)"));
        }
        if attempt >= max_attempts {
            return Err(give_up(""));
        }
        let cap = policy.backoff_cap(attempt);
        let wait = jitter(cap);
        if start.elapsed() + wait > policy.max_elapsed {
            return Err(give_up(" (out of time)"));
        }
        tracing::debug!(
            receiver = %notification.receiver,
            kind = notifier.kind(),
            attempt,
            wait_ms = wait.as_millis() as u64,
            error = %err.message,
            "notification failed, retrying"
        );
        tokio::time::sleep(wait).await;
    }
}

/// A uniformly random duration in `[0, cap]`.
fn jitter(cap: Duration) -> Duration {
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::notify::BoxFuture;
    use crate::notify::testing;

    /// Answers with the scripted results in order, then succeeds; records when each attempt
    /// started.
    struct Scripted {
        results: Mutex<Vec<Result<(), NotifyError>>>,
        started: Mutex<Vec<Instant>>,
    }

    impl Scripted {
        fn new(mut results: Vec<Result<(), NotifyError>>) -> Self {
            results.reverse();
            Self {
                results: Mutex::new(results),
                started: Mutex::new(Vec::new()),
            }
        }
        fn attempts(&self) -> Vec<Instant> {
            self.started.lock().unwrap().clone()
        }
    }

    impl Notifier for Scripted {
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn notify<'a>(&'a self, _: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
            Box::pin(async move {
                self.started.lock().unwrap().push(Instant::now());
                // Each attempt takes a little time, as a real one would.
                tokio::time::sleep(Duration::from_millis(10)).await;
                self.results.lock().unwrap().pop().unwrap_or(Ok(()))
            })
        }
    }

    fn n() -> Notification {
        testing::notification(vec![testing::alert("db1", "00000000000000a1")])
    }

    #[tokio::test(start_paused = true)]
    async fn succeeds_after_retryable_failures() {
        let fake = Scripted::new(vec![
            Err(NotifyError::retryable("503")),
            Err(NotifyError::retryable("timeout")),
        ]);
        let policy = RetryPolicy::default();
        let got = deliver(&fake, &n(), &policy).await.unwrap();
        assert_eq!(got.attempts, 3);
        let starts = fake.attempts();
        // Full jitter: each wait is at most the cap (plus the 10 ms attempt itself).
        let gap1 = starts[1] - starts[0];
        let gap2 = starts[2] - starts[1];
        assert!(
            gap1 <= policy.backoff_cap(1) + Duration::from_millis(10),
            "{gap1:?}"
        );
        assert!(
            gap2 <= policy.backoff_cap(2) + Duration::from_millis(10),
            "{gap2:?}"
        );
        assert!(got.elapsed >= Duration::from_millis(30));
    }

    #[tokio::test(start_paused = true)]
    async fn stops_at_once_on_a_permanent_failure() {
        let fake = Scripted::new(vec![
            Err(NotifyError::retryable("503")),
            Err(NotifyError::permanent("400 bad request")),
            Ok(()),
        ]);
        let err = deliver(&fake, &n(), &RetryPolicy::default())
            .await
            .unwrap_err();
        assert!(!err.retryable);
        assert_eq!(fake.attempts().len(), 2);
        assert!(err.message.contains("after 2 attempts"), "{}", err.message);
        assert!(err.message.contains("400 bad request"), "{}", err.message);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts() {
        let fake = Scripted::new(vec![Err(NotifyError::retryable("down")); 10]);
        let policy = RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        };
        let err = deliver(&fake, &n(), &policy).await.unwrap_err();
        assert!(err.retryable);
        assert_eq!(fake.attempts().len(), 4);
        assert!(err.message.contains("after 4 attempts"), "{}", err.message);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_when_out_of_time() {
        let fake = Scripted::new(vec![Err(NotifyError::retryable("down")); 1000]);
        let policy = RetryPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_attempts: 1000,
            max_elapsed: Duration::from_secs(60),
        };
        let start = Instant::now();
        let err = deliver(&fake, &n(), &policy).await.unwrap_err();
        let attempts = fake.attempts();
        assert!(err.retryable);
        assert!(
            attempts.len() > 2 && attempts.len() < 1000,
            "{}",
            attempts.len()
        );
        // No attempt starts past the budget.
        let last = *attempts.last().unwrap() - start;
        assert!(last <= policy.max_elapsed, "{last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_needs_one_attempt() {
        let fake = Scripted::new(vec![]);
        let got = deliver(&fake, &n(), &RetryPolicy::default()).await.unwrap();
        assert_eq!(got.attempts, 1);
    }

    #[test]
    fn backoff_cap_doubles_up_to_the_maximum() {
        let p = RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
            max_attempts: 100,
            max_elapsed: Duration::from_secs(600),
        };
        assert_eq!(p.backoff_cap(1), Duration::from_millis(500));
        assert_eq!(p.backoff_cap(2), Duration::from_secs(1));
        assert_eq!(p.backoff_cap(4), Duration::from_secs(4));
        assert_eq!(p.backoff_cap(5), Duration::from_secs(5));
        assert_eq!(p.backoff_cap(64), Duration::from_secs(5));
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(20)) <= Duration::from_millis(20));
        }
    }
}

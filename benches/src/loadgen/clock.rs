//! Event time for generated samples.
//!
//! A sender usually runs far faster than one sample per series per scrape interval. Stamping
//! every round with the wall clock would put thousands of samples of one series into the same
//! second, which neither Presage's resampler nor Prometheus' chunks see in real life. Instead
//! round `r` is stamped `start + r × step`, starting well in the past, as if a scraper had been
//! running at `step` all along. The stamps never go backwards for a series and never run ahead
//! of the wall clock: once the virtual time catches up, it follows the wall clock (one
//! millisecond past the previous stamp at least), and a sender more than
//! [`VirtualClock::MAX_AHEAD_MS`] ahead waits.

use std::time::Duration;

/// Maps rounds to timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualClock {
    /// Timestamp of round 0 (ms since the epoch).
    pub start_ms: i64,
    /// Event-time spacing of successive rounds (ms).
    pub step_ms: i64,
}

/// What to do for a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// Send the round with this timestamp; `capped` when the virtual time had caught up with
    /// the wall clock.
    At {
        /// The timestamp (ms since the epoch).
        ts_ms: i64,
        /// Whether the wall clock, not the virtual clock, decided it.
        capped: bool,
    },
    /// Too far ahead of the wall clock: wait this long and ask again.
    Wait(Duration),
}

impl VirtualClock {
    /// How far a stamp may be ahead of the wall clock.
    pub const MAX_AHEAD_MS: i64 = 2_000;

    /// A clock whose round 0 is `start_ago` before `now_ms`.
    pub fn new(now_ms: i64, start_ago: Duration, step_ms: i64) -> Self {
        let ago = i64::try_from(start_ago.as_millis()).unwrap_or(i64::MAX / 4);
        Self {
            start_ms: now_ms.saturating_sub(ago),
            step_ms: step_ms.max(1),
        }
    }

    /// The stamp of `round`, given the previous stamp this sender used.
    pub fn stamp(&self, round: u64, prev_ms: Option<i64>, now_ms: i64) -> Stamp {
        let offset = i64::try_from(round)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.step_ms);
        let ideal = self.start_ms.saturating_add(offset);
        let capped = ideal > now_ms;
        let mut ts = ideal.min(now_ms);
        if let Some(prev) = prev_ms {
            ts = ts.max(prev.saturating_add(1));
        }
        let ahead = ts - now_ms;
        if ahead > Self::MAX_AHEAD_MS {
            let wait = u64::try_from(ahead - Self::MAX_AHEAD_MS).unwrap_or(1);
            Stamp::Wait(Duration::from_millis(wait))
        } else {
            Stamp::At { ts_ms: ts, capped }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_time_then_wall_clock() {
        let now = 1_700_000_000_000;
        let c = VirtualClock::new(now, Duration::from_secs(60), 15_000);
        assert_eq!(
            c.stamp(0, None, now),
            Stamp::At {
                ts_ms: now - 60_000,
                capped: false
            }
        );
        assert_eq!(
            c.stamp(4, Some(now - 15_000), now),
            Stamp::At {
                ts_ms: now,
                capped: false
            }
        );
        // Caught up: follows the wall clock, strictly increasing.
        assert_eq!(
            c.stamp(5, Some(now), now),
            Stamp::At {
                ts_ms: now + 1,
                capped: true
            }
        );
        assert_eq!(
            c.stamp(6, Some(now + 1), now + 500),
            Stamp::At {
                ts_ms: now + 500,
                capped: true
            }
        );
        // Never more than MAX_AHEAD_MS in the future.
        assert_eq!(
            c.stamp(7, Some(now + 2_500), now),
            Stamp::Wait(Duration::from_millis(501))
        );
    }
}

//! Level shifts: when did a series move to a new level?
//!
//! Bayesian online changepoint detection (augurs' BOCPD with a Normal-Gamma prior) over the
//! residuals of a recent window — the values minus what the baseline expected, where it
//! expected something — standardised with the window's median and MAD so the prior fits any
//! unit. Running it on residuals rather than raw values keeps daily swings from being reported
//! as shifts. The most recent changepoint with enough data on both sides and a real difference
//! in level (at least two robust standard deviations of the residuals) is the shift.
//!
//! It is run when a series becomes persistently anomalous, to say since when ("p99 latency
//! stepped up at 14:03"), not on every step: BOCPD costs about 80 µs per point.

use std::panic::{AssertUnwindSafe, catch_unwind};

use augurs::changepoint::dist::NormalGamma;
use augurs::changepoint::{Detector, NormalGammaDetector};

use crate::model::stats::{mad_sigma, median};

/// Points needed on each side of a shift.
const MIN_SEGMENT: usize = 4;
/// Smallest shift reported, in robust standard deviations of the window's residuals.
const MIN_SHIFT_SIGMAS: f64 = 2.0;
/// Expected run length between changepoints (steps) for the BOCPD hazard.
const HAZARD_LAMBDA: f64 = 100.0;

/// A detected level shift.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelShift {
    /// Slot (ms) of the first step at the new level.
    pub changed_at_ms: i64,
    /// Median value before the shift.
    pub before: f64,
    /// Median value after it.
    pub after: f64,
}

/// Finds the most recent level shift in `values` (one per step, the first at `first_slot_ms`,
/// NaN for missing steps), judged on `values - expected` when `expected` is given (same
/// length; steps where it is NaN are left out). Never panics.
pub fn latest_shift(
    values: &[f64],
    expected: Option<&[f64]>,
    first_slot_ms: i64,
    step_ms: i64,
) -> Option<LevelShift> {
    // Keep finite steps, remembering where they were.
    let mut idx = Vec::with_capacity(values.len());
    let mut residuals = Vec::with_capacity(values.len());
    for (i, &v) in values.iter().enumerate() {
        if !v.is_finite() {
            continue;
        }
        // With an expectation, steps it does not cover are left out rather than mixed in raw.
        let e = match expected {
            None => 0.0,
            Some(e) => match e.get(i).copied().filter(|e| e.is_finite()) {
                Some(e) => e,
                None => continue,
            },
        };
        idx.push(i);
        residuals.push(v - e);
    }
    if residuals.len() < 2 * MIN_SEGMENT {
        return None;
    }
    let center = median(&residuals);
    let mut scale = mad_sigma(&residuals, center);
    if !(scale > 0.0 && scale.is_finite()) {
        // A flat window with one jump has MAD 0: fall back to the spread of the differences.
        let diffs: Vec<f64> = residuals.windows(2).map(|w| (w[1] - w[0]).abs()).collect();
        scale = diffs.iter().copied().fold(0.0, f64::max) / 4.0;
    }
    if !(scale > 0.0 && scale.is_finite()) {
        return None;
    }
    let z: Vec<f64> = residuals.iter().map(|r| (r - center) / scale).collect();
    let prior = NormalGamma::new(0.0, 1.0, 1.0, 1.0).ok()?;
    let points = catch_unwind(AssertUnwindSafe(|| {
        NormalGammaDetector::normal_gamma(HAZARD_LAMBDA, prior).detect_changepoints(&z)
    }))
    .ok()?;
    // BOCPD reports the last point of the old run; the new level starts one later.
    for cp in points.iter().rev().map(|&cp| cp + 1) {
        if cp < MIN_SEGMENT || cp + MIN_SEGMENT > z.len() {
            continue;
        }
        // The level since the shift, against the level just before it (up to the previous
        // changepoint's distance, at least MIN_SEGMENT points).
        let before_z = median(&z[cp.saturating_sub(z.len() - cp)..cp]);
        let after_z = median(&z[cp..]);
        if (after_z - before_z).abs() < MIN_SHIFT_SIGMAS {
            continue;
        }
        let raw_before: Vec<f64> = idx[..cp].iter().map(|&i| values[i]).collect();
        let raw_after: Vec<f64> = idx[cp..].iter().map(|&i| values[i]).collect();
        let tail = &raw_before[raw_before
            .len()
            .saturating_sub(raw_after.len().max(MIN_SEGMENT))..];
        return Some(LevelShift {
            changed_at_ms: first_slot_ms + idx[cp] as i64 * step_ms,
            before: median(tail),
            after: median(&raw_after),
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy(n: usize, level: impl Fn(usize) -> f64) -> Vec<f64> {
        (0..n)
            .map(|i| level(i) + (((i * 37) % 11) as f64 - 5.0) * 0.2)
            .collect()
    }

    #[test]
    fn a_step_up_is_dated_to_the_step() {
        let v = noisy(120, |i| if i >= 90 { 20.0 } else { 10.0 });
        let s = latest_shift(&v, None, 1_000_000, 60_000).unwrap();
        // Pinned: the changepoint lands on the first step at the new level, within a step.
        let at = (s.changed_at_ms - 1_000_000) / 60_000;
        assert!((89..=91).contains(&at), "changed at step {at}");
        assert!((s.before - 10.0).abs() < 1.0, "{s:?}");
        assert!((s.after - 20.0).abs() < 1.0, "{s:?}");
    }

    #[test]
    fn daily_swings_are_not_shifts_when_the_expectation_is_removed() {
        let season = |i: usize| 10.0 * (i as f64 * std::f64::consts::TAU / 48.0).sin();
        let v = noisy(192, |i| 50.0 + season(i));
        let expected: Vec<f64> = (0..192).map(|i| 50.0 + season(i)).collect();
        assert_eq!(latest_shift(&v, Some(&expected), 0, 60_000), None);
    }

    #[test]
    fn no_shift_in_noise_and_no_panic_on_bad_input() {
        assert_eq!(latest_shift(&noisy(200, |_| 5.0), None, 0, 60_000), None);
        assert_eq!(latest_shift(&[], None, 0, 60_000), None);
        assert_eq!(latest_shift(&[f64::NAN; 50], None, 0, 60_000), None);
        assert_eq!(latest_shift(&[3.0; 50], None, 0, 60_000), None);
        let mut v = noisy(60, |i| if i >= 40 { 1e12 } else { 0.0 });
        v[10] = f64::INFINITY;
        v[20] = f64::NAN;
        let s = latest_shift(&v, None, 0, 1_000).unwrap();
        assert_eq!(s.changed_at_ms, 40_000);
    }

    #[test]
    fn a_flat_series_that_jumps_is_a_shift() {
        let v: Vec<f64> = (0..60).map(|i| if i < 50 { 3.0 } else { 9.0 }).collect();
        let s = latest_shift(&v, None, 0, 1_000).unwrap();
        assert_eq!(s.changed_at_ms, 50_000);
        assert_eq!((s.before, s.after), (3.0, 9.0));
    }
}

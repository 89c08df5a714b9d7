//! Seasonal period detection: augurs' periodogram, snapped to calendar periods and confirmed by
//! autocorrelation.
//!
//! The periodogram works on a power-of-two grid, so a daily period of 288 steps comes back as
//! 256; and a constant or noisy series can show a spurious peak. We therefore only accept the
//! calendar periods operators care about (hour, day, week at the series' step), when a
//! periodogram peak lies near one *and* the series is clearly autocorrelated at that lag.

use augurs::seasons::PeriodogramDetector;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
const WEEK_MS: i64 = 7 * DAY_MS;

/// How close (relative) a periodogram peak must be to a calendar period.
const SNAP_TOLERANCE: f64 = 0.2;
/// Autocorrelation needed at the period's lag to believe in it.
const MIN_AUTOCORRELATION: f64 = 0.3;
/// How much more alike a series must be one period apart than half a period apart.
const MIN_CONTRAST: f64 = 0.2;
/// Autocorrelation high enough to accept a calendar period even when the periodogram's coarse
/// grid missed its peak.
const STRONG_AUTOCORRELATION: f64 = 0.6;

/// Calendar periods, in steps, that fit at least twice in `n` points.
pub(crate) fn candidates(step_ms: i64, n: usize) -> Vec<usize> {
    [HOUR_MS, DAY_MS, WEEK_MS]
        .iter()
        .filter(|p| *p % step_ms == 0)
        .map(|p| (*p / step_ms) as usize)
        .filter(|p| *p >= 4 && 2 * p <= n)
        .collect()
}

/// Periods (in steps, ascending) found in `y`, which must be finite and normalised.
pub(crate) fn detect(y: &[f64], step_ms: i64) -> Vec<usize> {
    let cands = candidates(step_ms, y.len());
    if cands.is_empty() {
        return Vec::new();
    }
    // A trend is autocorrelated at every lag: take it out first.
    let y = &detrend(y);
    if variance(y) < 1e-12 {
        return Vec::new();
    }
    let max_candidate = cands.iter().copied().max().unwrap_or(4);
    let max_period = ((max_candidate as f64) * (1.0 + SNAP_TOLERANCE)) as u32 + 1;
    let detector = PeriodogramDetector::builder()
        .min_period(4)
        .max_period(max_period.min((y.len() / 2) as u32).max(5))
        .build();
    let peaks: Vec<u32> = detector
        .periodogram(y)
        .peaks(0.5)
        .map(|p| p.period)
        .collect();
    let mut found: Vec<usize> = cands
        .into_iter()
        .filter(|&c| {
            let near_peak = peaks
                .iter()
                .any(|&p| ((p as f64) - c as f64).abs() / c as f64 <= SNAP_TOLERANCE);
            let acf = autocorrelation(y, c);
            // A smooth slower cycle is autocorrelated at every short lag; a real cycle of
            // period c is much less alike half a period apart than a whole one.
            let contrast = acf - autocorrelation(y, c / 2);
            contrast >= MIN_CONTRAST
                && ((near_peak && acf >= MIN_AUTOCORRELATION) || acf >= STRONG_AUTOCORRELATION)
        })
        .collect();
    found.sort_unstable();
    found
}

/// `y` minus its least-squares line.
fn detrend(y: &[f64]) -> Vec<f64> {
    let n = y.len() as f64;
    if n < 3.0 {
        return y.to_vec();
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let dx = i as f64 - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    y.iter()
        .enumerate()
        .map(|(i, v)| v - mean_y - slope * (i as f64 - mean_x))
        .collect()
}

fn variance(y: &[f64]) -> f64 {
    let n = y.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / n;
    y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n
}

/// Sample autocorrelation at `lag`.
pub(crate) fn autocorrelation(y: &[f64], lag: usize) -> f64 {
    let n = y.len();
    if lag == 0 || lag >= n {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let denom: f64 = y.iter().map(|v| (v - mean).powi(2)).sum();
    if denom <= 0.0 {
        return 0.0;
    }
    let num: f64 = y[lag..]
        .iter()
        .zip(&y[..n - lag])
        .map(|(a, b)| (a - mean) * (b - mean))
        .sum();
    num / denom
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 300_000; // 5 minutes

    fn noise(i: usize) -> f64 {
        // Deterministic pseudo-noise in [-0.5, 0.5).
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    }

    #[test]
    fn finds_daily_and_weekly_cycles() {
        let day = 288;
        let n = day * 21;
        let y: Vec<f64> = (0..n)
            .map(|i| {
                let t = i as f64;
                (2.0 * std::f64::consts::PI * t / day as f64).sin() * 3.0
                    + if (i / day) % 7 >= 5 { -2.0 } else { 0.0 }
                    + noise(i) * 0.5
            })
            .collect();
        assert_eq!(detect(&y, STEP), vec![288, 2016]);
    }

    #[test]
    fn no_period_in_noise_trend_or_constant() {
        let n = 288 * 4;
        let noisy: Vec<f64> = (0..n).map(noise).collect();
        assert!(detect(&noisy, STEP).is_empty());
        let constant = vec![1.0; n];
        assert!(detect(&constant, STEP).is_empty());
        let trend: Vec<f64> = (0..n).map(|i| i as f64 * 0.01 + noise(i) * 0.01).collect();
        // A pure trend is autocorrelated at every lag; it must not pass as a daily cycle.
        assert!(detect(&trend, STEP).is_empty());
    }

    #[test]
    fn short_series_have_no_candidates() {
        assert!(candidates(STEP, 300).iter().all(|&p| p == 12));
        assert!(detect(&[1.0, 2.0, 3.0], STEP).is_empty());
        assert!(detect(&[], STEP).is_empty());
    }
}

//! Breach forecasting that sawtooth usage does not fool.
//!
//! `predict_linear` over raw samples misfires on log rotation, GC and cron bursts: every drop
//! and refill looks like a new trend. We fit the trend on the *envelope* instead — the rolling
//! maximum (for thresholds crossed from below) or minimum (from above) over an hour — with the
//! Theil–Sen estimator, which ignores the outliers a burst leaves, and take its distribution-free
//! confidence interval (Sen, 1968) as the spread: the fastest plausible slope gives the P10 ETA,
//! the median slope P50, the slowest P90. A trend whose interval includes zero predicts nothing.

use serde::{Deserialize, Serialize};

use super::ModelSettings;
use super::stats::probit;

/// Most envelope points the Theil–Sen fit looks at (all pairwise slopes are computed).
const MAX_TREND_POINTS: usize = 160;
/// Rolling window of the envelope.
const ENVELOPE_MS: i64 = 3_600_000;
/// Rates drift: the slope interval is never narrower than ±10% of the slope.
const MIN_RELATIVE_SLOPE_SPREAD: f64 = 0.1;

/// Which way a threshold is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdDirection {
    /// Rising through the threshold (disk usage, memory).
    Above,
    /// Falling through it (free space).
    Below,
}

/// Trends of the upper and lower envelopes, fitted at a boundary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnvelopeTrend {
    /// Upper envelope (rolling max).
    pub upper: Line,
    /// Lower envelope (rolling min).
    pub lower: Line,
}

/// A fitted line with an 80% interval on its slope.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Value of the line at `at_ms`.
    pub level: f64,
    /// Where `level` is taken: the last step of the fit window.
    pub at_ms: i64,
    /// Median slope, per second.
    pub slope: f64,
    /// Low end of the slope interval (10th percentile), per second.
    pub slope_low: f64,
    /// High end of the slope interval (90th percentile), per second.
    pub slope_high: f64,
    /// Robust spread of the envelope around the line (one sigma).
    pub spread: f64,
}

/// Time to a threshold crossing, in seconds from `from_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreachEta {
    /// Earliest plausible crossing.
    pub p10_seconds: f64,
    /// Median estimate.
    pub p50_seconds: f64,
    /// Latest plausible crossing.
    pub p90_seconds: f64,
    /// The growth rate behind P50, per second (negative when falling).
    pub rate_per_second: f64,
    /// The envelope level now.
    pub level: f64,
}

impl EnvelopeTrend {
    /// Fits both envelope trends on the last `breach_lookback_steps` of `y` (finite, one per
    /// step, ending just before `boundary_ms`).
    pub fn fit(y: &[f64], boundary_ms: i64, settings: &ModelSettings) -> Option<Self> {
        let y = &y[y.len().saturating_sub(settings.breach_lookback_steps)..];
        if y.len() < 8 {
            return None;
        }
        let w = ((ENVELOPE_MS / settings.step_ms).max(1) as usize)
            .min(y.len() / 4)
            .max(1);
        let at_ms = boundary_ms - settings.step_ms;
        let upper = rolling(y, w, f64::max);
        let lower = rolling(y, w, f64::min);
        Some(Self {
            upper: theil_sen(&upper, w, at_ms, settings.step_ms)?,
            lower: theil_sen(&lower, w, at_ms, settings.step_ms)?,
        })
    }

    /// When `threshold` is reached, as seen at `now_ms` with the newest value `current`, within
    /// `horizon_seconds`. `None` when the trend is flat, points away from the threshold, or the
    /// crossing is beyond the horizon even at the fastest plausible rate.
    pub fn eta(
        &self,
        threshold: f64,
        direction: ThresholdDirection,
        now_ms: i64,
        current: f64,
        horizon_seconds: f64,
    ) -> Option<BreachEta> {
        let (line, sign) = match direction {
            ThresholdDirection::Above => (&self.upper, 1.0),
            ThresholdDirection::Below => (&self.lower, -1.0),
        };
        let elapsed = (now_ms - line.at_ms) as f64 / 1000.0;
        let level = line.level + line.slope * elapsed;
        let already = match direction {
            ThresholdDirection::Above => current >= threshold || level >= threshold,
            ThresholdDirection::Below => current <= threshold || level <= threshold,
        };
        if already {
            return Some(BreachEta {
                p10_seconds: 0.0,
                p50_seconds: 0.0,
                p90_seconds: 0.0,
                rate_per_second: line.slope,
                level,
            });
        }
        // Slopes in the direction of the threshold: fastest, median, slowest.
        let (fast, mid, slow) = if sign > 0.0 {
            (line.slope_high, line.slope, line.slope_low)
        } else {
            (-line.slope_low, -line.slope, -line.slope_high)
        };
        if slow <= 0.0 || mid <= 0.0 {
            return None; // Flat or receding: no breach is predicted.
        }
        let distance = (threshold - level).abs();
        // The level is uncertain by the envelope's spread: closer for P10, farther for P90.
        let margin = probit(0.9) * line.spread;
        let eta = |rate: f64, d: f64| d.max(0.0) / rate;
        let p10 = eta(fast, distance - margin);
        if p10 > horizon_seconds {
            return None;
        }
        Some(BreachEta {
            p10_seconds: p10,
            p50_seconds: eta(mid, distance),
            p90_seconds: eta(slow, distance + margin),
            rate_per_second: line.slope,
            level,
        })
    }
}

/// Trailing rolling aggregate over `w` points.
fn rolling(y: &[f64], w: usize, f: fn(f64, f64) -> f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(y.len());
    for i in 0..y.len() {
        let start = (i + 1).saturating_sub(w);
        out.push(y[start..=i].iter().copied().fold(y[i], f));
    }
    out
}

/// Theil–Sen line through the envelope (its first `w - 1` points are partial windows and are
/// skipped), with Sen's 80% interval for the slope.
fn theil_sen(env: &[f64], w: usize, at_ms: i64, step_ms: i64) -> Option<Line> {
    let env = &env[(w - 1).min(env.len().saturating_sub(2))..];
    let stride = env.len().div_ceil(MAX_TREND_POINTS).max(1);
    // Keep the newest point: sample backwards from the end.
    let mut pts: Vec<(f64, f64)> = (0..env.len())
        .rev()
        .step_by(stride)
        .map(|i| (i as f64, env[i]))
        .collect();
    pts.reverse();
    let n = pts.len();
    if n < 3 {
        return None;
    }
    let mut slopes = Vec::with_capacity(n * (n - 1) / 2);
    for i in 0..n {
        for j in i + 1..n {
            let dx = pts[j].0 - pts[i].0;
            if dx > 0.0 {
                slopes.push((pts[j].1 - pts[i].1) / dx);
            }
        }
    }
    if slopes.is_empty() {
        return None;
    }
    slopes.sort_unstable_by(f64::total_cmp);
    let m = slopes.len();
    let at = |rank: f64| slopes[(rank.round().max(0.0) as usize).min(m - 1)];
    let slope = if m % 2 == 1 {
        slopes[m / 2]
    } else {
        (slopes[m / 2 - 1] + slopes[m / 2]) / 2.0
    };
    // Sen (1968): C = z * sqrt(n(n-1)(2n+5)/18), bounds at ranks (M - C)/2 and (M + C)/2.
    let nf = n as f64;
    let c = probit(0.9) * (nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0).sqrt();
    let floor = MIN_RELATIVE_SLOPE_SPREAD * slope.abs();
    let low = at((m as f64 - c) / 2.0 - 1.0).min(slope - floor);
    let high = at((m as f64 + c) / 2.0).max(slope + floor);
    let mut intercepts: Vec<f64> = pts.iter().map(|(x, y)| y - slope * x).collect();
    let intercept = super::stats::median_in_place(&mut intercepts);
    let residuals: Vec<f64> = pts.iter().map(|(x, y)| y - intercept - slope * x).collect();
    let spread = super::stats::mad_sigma(&residuals, 0.0);
    let last_x = (env.len() - 1) as f64;
    let per_second = 1000.0 / step_ms as f64;
    Some(Line {
        level: intercept + slope * last_x,
        at_ms,
        slope: slope * per_second,
        slope_low: low * per_second,
        slope_high: high * per_second,
        spread: if spread.is_finite() { spread } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 60_000;

    fn settings() -> ModelSettings {
        ModelSettings::for_step(STEP)
    }

    /// A disk filling at 1% an hour with a daily-ish sawtooth from log rotation (drops of 5%
    /// every 3 hours, refilled within the hour) and small noise.
    fn sawtooth_fill(hours: usize) -> Vec<f64> {
        (0..hours * 60)
            .map(|i| {
                let base = 0.40 + 0.01 * i as f64 / 60.0;
                let in_cycle = i % 180;
                let rotation = if in_cycle < 60 {
                    -0.05 * (1.0 - in_cycle as f64 / 60.0)
                } else {
                    0.0
                };
                let noise = ((i * 7919) % 13) as f64 / 13.0 * 0.002;
                base + rotation + noise
            })
            .collect()
    }

    #[test]
    fn sawtooth_fill_gets_the_true_eta_inside_p10_p90() {
        let y = sawtooth_fill(12);
        let boundary = y.len() as i64 * STEP;
        let trend = EnvelopeTrend::fit(&y, boundary, &settings()).unwrap();
        let now = boundary - STEP;
        let current = *y.last().unwrap();
        let eta = trend
            .eta(0.9, ThresholdDirection::Above, now, current, 86_400.0 * 7.0)
            .expect("a breach is predicted");
        // True: from 0.52 at 12h, 1%/h → 0.90 at 50h, i.e. 38h from now.
        let truth = 38.0 * 3600.0;
        assert!(
            eta.p10_seconds <= truth && truth <= eta.p90_seconds,
            "{eta:?}"
        );
        // The median is within 5% of the truth.
        assert!((eta.p50_seconds / truth - 1.0).abs() < 0.05, "{eta:?}");
        assert!(
            (eta.rate_per_second * 3600.0 - 0.01).abs() < 0.001,
            "{eta:?}"
        );
    }

    #[test]
    fn flat_noisy_and_sawtooth_series_predict_nothing() {
        // A flat series with rotations: predict_linear right after a refill would see growth.
        let y: Vec<f64> = (0..720)
            .map(|i| {
                0.5 + if i % 180 < 60 {
                    -0.05 * (1.0 - (i % 180) as f64 / 60.0)
                } else {
                    0.0
                }
            })
            .collect();
        let boundary = 720 * STEP;
        let trend = EnvelopeTrend::fit(&y, boundary, &settings()).unwrap();
        assert_eq!(
            trend.eta(0.9, ThresholdDirection::Above, boundary, 0.5, 1e9),
            None
        );
        // Falling usage never breaches an upper threshold.
        let falling: Vec<f64> = (0..720).map(|i| 0.8 - i as f64 * 1e-4).collect();
        let trend = EnvelopeTrend::fit(&falling, boundary, &settings()).unwrap();
        assert_eq!(
            trend.eta(0.9, ThresholdDirection::Above, boundary, 0.73, 1e9),
            None
        );
    }

    #[test]
    fn lower_thresholds_and_horizon() {
        // Free space falling by 100 per minute from 100_000.
        let y: Vec<f64> = (0..600).map(|i| 100_000.0 - 100.0 * i as f64).collect();
        let boundary = 600 * STEP;
        let trend = EnvelopeTrend::fit(&y, boundary, &settings()).unwrap();
        let now = boundary - STEP;
        let eta = trend
            .eta(10_000.0, ThresholdDirection::Below, now, 40_100.0, 1e9)
            .unwrap();
        // 30_100 to go at 100/min → 301 minutes.
        assert!((eta.p50_seconds - 301.0 * 60.0).abs() < 60.0, "{eta:?}");
        // Outside a one-hour horizon: nothing.
        assert_eq!(
            trend.eta(10_000.0, ThresholdDirection::Below, now, 40_100.0, 3600.0),
            None
        );
        // Already past the threshold: zero.
        let eta = trend
            .eta(50_000.0, ThresholdDirection::Below, now, 40_100.0, 3600.0)
            .unwrap();
        assert_eq!(eta.p50_seconds, 0.0);
    }
}

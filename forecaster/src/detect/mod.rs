//! Online detection: every closed step of a series is scored against its current baseline, and
//! refits are scheduled in event time.
//!
//! Scores are calibrated per series so that one threshold means the same thing everywhere. Two
//! views of each step are judged, each against the series' own past:
//!
//! - **Residual**: the step's deviation from the baseline's expected value, in units of the
//!   residual scale, becomes a surprise `-ln p` (`p` the two-sided normal tail probability),
//!   averaged over the last three steps.
//! - **Level**: a fast moving average of the raw value (about ten steps) against a slow moving
//!   mean and standard deviation of it (about 330 steps), as a z-score turned into the same kind
//!   of surprise. It catches level shifts and slow drifts that the hourly refit would absorb into
//!   the baseline before the residuals show them.
//!
//! Each view's statistic is compared with an exponentially decayed histogram of its own past
//! values (about 2,000 steps) — in the spirit of the "anomaly likelihood" of Ahmad et al.
//! (Numenta, 2017) — so a series that is often a bit wild does not page for its usual wildness,
//! and a change it has not shown before does. With `q` the share of past values at least as
//! high, a view's rarity is `L = -log10 q`; the step's rarity is the larger of the two views'
//! less `log10 2` (the price of looking twice). The score is `L / (L + 3)`: 0.5 means "rarer than
//! all but one in a thousand of this series' steps". Within the same rarity, larger deviations
//! score a little higher, so scores keep their order.
//!
//! A young histogram cannot call anything rarer than one in as many values as it holds, so a
//! level shift in the first days of a series could not reach the score a full memory gives it.
//! While the level view's fast average is at least one slow standard deviation from the slow
//! mean — something the ten-step average of plain noise essentially never is (its spread is
//! about a quarter of the value's) — its rarity is stretched partway toward the scale of a full
//! memory. The stretch stays below that scale (a young record never scores above an old one)
//! and fades as the decayed histogram fills: ×1.08 after 1,000 values, ×1.04 after 2,000,
//! under ×1.01 after 5,000.
//!
//! Once a step is rarer than one in 250 (`L >= 2.4`, a score of about 0.44), a quiet period of
//! 75 steps follows: the series is already known to be unusual, so during it a step scores in
//! full only when it is ten times rarer than the one that opened the period, and at half its
//! score otherwise. A level shift or a burst therefore pages at most once, not at every step it
//! lasts, and a clear escalation still pages.

pub mod changepoint;
pub mod fleet;
mod series;

pub use series::{FitRequest, SeriesDetector};

use serde::{Deserialize, Serialize};

use crate::model::Baseline;
use crate::model::stats::{norm_sf, probit};

/// Steps averaged for the short-term surprise.
const SHORT_WINDOW: usize = 3;
/// Effective length (in steps) of the long-run statistics of each view.
const LONG_WINDOW: f64 = 2_000.0;
/// Steps scored before the long-run statistics are trusted (the score stays 0 until then).
const LEARNING_STEPS: u64 = 50;
/// Steps before the level view takes part (its slow statistics need some history).
const LEVEL_LEARNING_STEPS: u64 = 100;
/// Weight of the newest value in the level view's fast average (about ten steps).
const LEVEL_FAST: f64 = 0.1;
/// Weight of the newest value in the level view's slow mean and variance (about 330 steps).
const LEVEL_SLOW: f64 = 0.003;
/// How far the level view's fast average must be from its slow mean, in slow standard deviations,
/// for its rarity to be stretched while its histogram is young (see [`young_stretch`]).
const LEVEL_SHIFT_Z: f64 = 1.0;
/// Power of the young-histogram stretch: 0 leaves the rarity alone, 1 would put a young record
/// on the scale of a full memory's; partway, since a short past is also weaker evidence.
const YOUNG_STRETCH: f64 = 0.6;
/// Floor of the long-run standard deviation, so a perfectly quiet past does not make every
/// wobble infinitely unlikely.
const MIN_LONG_SD: f64 = 0.5;
/// Cap of one step's surprise (-ln p): p = 1e-22.
const MAX_SURPRISE: f64 = 50.0;
/// `log10 2`: the rarity given up for taking the larger of two views.
const TWO_VIEWS: f64 = std::f64::consts::LOG10_2;
/// Rarity (`-log10 q`) that opens a quiet period.
const QUIET_OPEN: f64 = 2.4;
/// Length of the quiet period, in steps.
const QUIET_STEPS: u32 = 75;
/// During a quiet period, a step scores in full when its rarity exceeds the one that opened the
/// period by this much (ten times rarer); otherwise its score is multiplied by `QUIET_DAMPING`.
const QUIET_ESCALATION: f64 = 1.0;
const QUIET_DAMPING: f64 = 0.5;
/// Persistence: a step is persistently anomalous when at least `K` of the last `N` steps were
/// outside the band.
const PERSIST_K: u32 = 3;
const PERSIST_N: u32 = 5;

/// The score of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepScore {
    /// Slot timestamp (ms).
    pub slot_ms: i64,
    /// The observed value.
    pub value: f64,
    /// Expected value.
    pub expected: f64,
    /// Lower edge of the band.
    pub lower: f64,
    /// Upper edge of the band.
    pub upper: f64,
    /// Deviation in residual-scale units (signed).
    pub deviation: f64,
    /// Calibrated anomaly score in [0, 1].
    pub score: f64,
    /// 1 above the band, -1 below, 0 inside.
    pub direction: i8,
    /// Outside the band for at least 3 of the last 5 steps.
    pub persistent: bool,
    /// The highest score since the series last stepped inside its band (this step's score
    /// when it is inside): what a persistent excursion pages with, since the quiet period
    /// lowers the scores of a burst's later steps.
    pub excursion_score: f64,
}

/// Bins of the per-view histogram of past statistics.
const BINS: usize = 48;

fn bin_of(x: f64) -> usize {
    let x = (1.0 + x.max(0.0)).ln() / (1.0 + MAX_SURPRISE).ln();
    ((x * BINS as f64) as usize).min(BINS - 1)
}

/// How rare a statistic is against its own past: an exponentially decayed histogram plus its
/// long-run mean and variance. O(1) memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rarity {
    /// Exponentially decayed counts of past values, by bin.
    #[serde(with = "crate::store::fixed_array")]
    hist: [f32; BINS],
    seen: u64,
    mean: f64,
    var: f64,
}

impl Default for Rarity {
    fn default() -> Self {
        Self {
            hist: [0.0; BINS],
            seen: 0,
            mean: 0.0,
            var: 0.0,
        }
    }
}

impl Rarity {
    /// `-log10` of the share of past values at least as high as `x` (empirical tail, half the
    /// own bin), times [`young_stretch`] when `stretch` is set, ordered within the same rarity by
    /// how far `x` is from the long-run mean; 0 while learning. Then `x` joins the past.
    fn judge(&mut self, x: f64, stretch: bool) -> f64 {
        let bin = bin_of(x);
        let rarity = if self.seen >= LEARNING_STEPS {
            let total: f64 = self.hist.iter().map(|c| f64::from(*c)).sum();
            let tail: f64 = self.hist[bin + 1..]
                .iter()
                .map(|c| f64::from(*c))
                .sum::<f64>()
                + f64::from(self.hist[bin]) / 2.0;
            let q = (tail + 1.0) / (total + 1.0);
            let sd = self.var.sqrt().max(MIN_LONG_SD);
            let young = if stretch { young_stretch(total) } else { 1.0 };
            -q.log10() * young + 0.01 * neg_log10_sf((x - self.mean) / sd)
        } else {
            0.0
        };
        let decay = 1.0 - 1.0 / LONG_WINDOW as f32;
        for c in &mut self.hist {
            *c *= decay;
        }
        self.hist[bin] += 1.0;
        // Update the long-run statistics after judging (the step is judged on the past only).
        let alpha = 1.0 / (self.seen as f64 + 1.0).min(LONG_WINDOW);
        let delta = x - self.mean;
        self.mean += alpha * delta;
        self.var = (1.0 - alpha) * (self.var + alpha * delta * delta);
        self.seen += 1;
        rarity
    }
}

/// `-ln` of the two-sided normal tail probability of `z`, capped at [`MAX_SURPRISE`]:
/// Exp(1)-distributed when `z` is standard normal.
fn surprise(z: f64) -> f64 {
    let p = (2.0 * norm_sf(z.abs())).clamp(1e-300, 1.0);
    (-p.ln()).min(MAX_SURPRISE)
}

/// Per-series scoring state: O(1) memory (a few hundred bytes).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scorer {
    short: [f32; SHORT_WINDOW],
    short_len: u8,
    short_pos: u8,
    residual: Rarity,
    level_fast: f64,
    level_mean: f64,
    level_var: f64,
    level_steps: u64,
    level: Rarity,
    /// Steps left in the quiet period, and the rarity that opened it (or last escalated it).
    quiet_left: u32,
    quiet_peak: f64,
    outside: u32,
    /// Highest score since the series was last inside its band.
    excursion_peak: f64,
}

impl Scorer {
    /// Scores `value` at `slot_ms` against `baseline`; `None` when the baseline's path does not
    /// reach the slot.
    pub fn score(
        &mut self,
        slot_ms: i64,
        value: f64,
        baseline: &Baseline,
        level: f64,
    ) -> Option<StepScore> {
        let band = baseline.at(slot_ms)?;
        let (e, lo, hi) = (band.expected, band.lower, band.upper);
        let zq = probit(0.5 + level / 2.0);
        let half_band = ((hi - lo) / 2.0).max(0.0);
        let sigma = baseline
            .residual_scale
            .max(half_band / zq)
            .max(f64::MIN_POSITIVE);
        let deviation = (value - e) / sigma;

        // Residual view: the short-term average of surprises.
        self.short[self.short_pos as usize] = surprise(deviation) as f32;
        self.short_pos = ((self.short_pos as usize + 1) % SHORT_WINDOW) as u8;
        self.short_len = (self.short_len + 1).min(SHORT_WINDOW as u8);
        let avg = self.short[..self.short_len as usize]
            .iter()
            .map(|v| f64::from(*v))
            .sum::<f64>()
            / f64::from(self.short_len);
        let mut rarity = self.residual.judge(avg, false);

        // Level view: a fast average of the value against its slow mean and spread.
        let level_rarity = self.level_step(value);
        if self.level_steps > LEVEL_LEARNING_STEPS {
            rarity = rarity.max(level_rarity) - TWO_VIEWS;
        }

        // Quiet period after a reported anomaly.
        let mut score = calibrate(rarity);
        if self.quiet_left > 0 {
            self.quiet_left -= 1;
            if rarity > self.quiet_peak + QUIET_ESCALATION {
                self.quiet_peak = rarity;
            } else {
                score *= QUIET_DAMPING;
            }
        } else if rarity >= QUIET_OPEN {
            self.quiet_left = QUIET_STEPS;
            self.quiet_peak = rarity;
        }

        let direction = if value > hi {
            1
        } else if value < lo {
            -1
        } else {
            0
        };
        self.outside = ((self.outside << 1) | u32::from(direction != 0)) & ((1 << PERSIST_N) - 1);
        self.excursion_peak = if direction == 0 {
            score
        } else {
            self.excursion_peak.max(score)
        };
        Some(StepScore {
            slot_ms,
            value,
            expected: e,
            lower: lo,
            upper: hi,
            deviation,
            score,
            direction,
            persistent: self.outside.count_ones() >= PERSIST_K,
            excursion_score: self.excursion_peak,
        })
    }

    /// Updates the level view with `value` and returns its rarity.
    fn level_step(&mut self, value: f64) -> f64 {
        if self.level_steps == 0 {
            self.level_fast = value;
            self.level_mean = value;
            self.level_var = 0.0;
        }
        self.level_fast += LEVEL_FAST * (value - self.level_fast);
        let sd = self.level_var.sqrt();
        let z = if sd > 0.0 {
            (self.level_fast - self.level_mean) / sd
        } else {
            0.0
        };
        let alpha = LEVEL_SLOW.max(1.0 / (self.level_steps as f64 + 1.0));
        let delta = value - self.level_mean;
        self.level_mean += alpha * delta;
        self.level_var = (1.0 - alpha) * (self.level_var + alpha * delta * delta);
        self.level_steps += 1;
        self.level.judge(surprise(z), z.abs() >= LEVEL_SHIFT_Z)
    }
}

/// How much a young histogram's rarity is stretched: the ratio of the largest rarity a full
/// memory can show (`log10(LONG_WINDOW + 1)`) to the largest this one can (`log10(total + 1)`),
/// raised to [`YOUNG_STRETCH`]. The decayed total only approaches `LONG_WINDOW`, so the stretch
/// fades toward 1 rather than reaching it (1.04 after 2,000 values). A record's stretched rarity,
/// `log10(full)^p * log10(total + 1)^(1 - p)`, stays below a full memory's record.
fn young_stretch(total: f64) -> f64 {
    let reach = |n: f64| (n + 1.0).log10();
    (reach(LONG_WINDOW) / reach(total).max(0.1))
        .max(1.0)
        .powf(YOUNG_STRETCH)
}

/// `-log10` of the standard normal upper tail at `z`, without underflow far in the tail.
fn neg_log10_sf(z: f64) -> f64 {
    if z < 30.0 {
        -norm_sf(z).max(f64::MIN_POSITIVE).log10()
    } else {
        // Mills' ratio: Q(z) ≈ φ(z) / z.
        (z * z / 2.0 + (z * (2.0 * std::f64::consts::PI).sqrt()).ln()) / std::f64::consts::LN_10
    }
}

/// Maps `-log10 q` to [0, 1) without saturating, so scores keep their order however extreme:
/// q = 1e-3 gives 0.5, 1e-6 gives 0.67.
fn calibrate(neg_log10_q: f64) -> f64 {
    let l = neg_log10_q.max(0.0);
    l / (l + CALIBRATION_HALF)
}

/// `-log10 q` at which the score is 0.5.
const CALIBRATION_HALF: f64 = 3.0;

#[cfg(test)]
mod tests;

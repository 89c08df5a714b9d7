//! Online detection: every closed step of a series is scored against its current baseline, and
//! refits are scheduled in event time.
//!
//! Scores are calibrated per series so that one threshold means the same thing everywhere.
//! Each step's deviation from the expected value, in units of the baseline's residual scale,
//! becomes a surprise: `-ln p`, with `p` the two-sided tail probability of a deviation this
//! large under a normal model. The short-term average of surprises is then compared with the
//! series' own past averages (an exponentially decayed histogram, about 2,000 steps long) — in
//! the spirit of the "anomaly likelihood" of Ahmad et al. (Numenta, 2017) — so a series that is
//! often a bit wild does not page for its usual wildness, and a change it has not shown before
//! does. With `q` the share of past averages at least as high, the score is `L / (L + 3)` with
//! `L = -log10 q`: 0.5 means "higher than all but one in a thousand of this series' steps".
//! Within the same rarity, larger deviations score a little higher, so scores keep their order.

pub mod changepoint;
pub mod fleet;
mod series;

pub use series::{FitRequest, SeriesDetector};

use serde::Serialize;

use crate::model::Baseline;
use crate::model::stats::{norm_sf, probit};

/// Steps averaged for the short-term surprise.
const SHORT_WINDOW: usize = 2;
/// Effective length (in steps) of the long-run statistics of the short-term average.
const LONG_WINDOW: f64 = 2_000.0;
/// Steps scored before the long-run statistics are trusted (the score stays 0 until then).
const LEARNING_STEPS: u64 = 50;
/// Floor of the long-run standard deviation, so a perfectly quiet past does not make every
/// wobble infinitely unlikely.
const MIN_LONG_SD: f64 = 0.5;
/// Cap of one step's surprise (-ln p): p = 1e-22.
const MAX_SURPRISE: f64 = 50.0;
/// Persistence: a step is persistently anomalous when at least `K` of the last `N` steps were
/// outside the band.
const PERSIST_K: u32 = 3;
const PERSIST_N: u32 = 5;

/// The score of one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
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
}

/// Bins of the per-series histogram of short-term surprise averages.
const BINS: usize = 48;

fn bin_of(avg: f64) -> usize {
    let x = (1.0 + avg.max(0.0)).ln() / (1.0 + MAX_SURPRISE).ln();
    ((x * BINS as f64) as usize).min(BINS - 1)
}

/// Per-series scoring state: O(1) memory.
#[derive(Debug, Clone)]
pub struct Scorer {
    short: [f32; SHORT_WINDOW],
    short_len: u8,
    short_pos: u8,
    long_mean: f64,
    long_var: f64,
    /// Exponentially decayed counts of past short-term averages, by bin.
    hist: [f32; BINS],
    scored: u64,
    outside: u32,
}

impl Default for Scorer {
    fn default() -> Self {
        Self {
            short: [0.0; SHORT_WINDOW],
            short_len: 0,
            short_pos: 0,
            long_mean: 0.0,
            long_var: 0.0,
            hist: [0.0; BINS],
            scored: 0,
            outside: 0,
        }
    }
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
        let (e, lo, hi) = (
            f64::from(band.expected),
            f64::from(band.lower),
            f64::from(band.upper),
        );
        let zq = probit(0.5 + level / 2.0);
        let half_band = ((hi - lo) / 2.0).max(0.0);
        let sigma = baseline
            .residual_scale
            .max(half_band / zq)
            .max(f64::MIN_POSITIVE);
        let deviation = (value - e) / sigma;
        // Surprise: -ln of the two-sided tail probability (Exp(1)-distributed when the model
        // is right), capped so one wild point cannot dominate the long-run statistics.
        let p = (2.0 * norm_sf(deviation.abs())).clamp(1e-300, 1.0);
        let surprise = (-p.ln()).min(MAX_SURPRISE);

        self.short[self.short_pos as usize] = surprise as f32;
        self.short_pos = ((self.short_pos as usize + 1) % SHORT_WINDOW) as u8;
        self.short_len = (self.short_len + 1).min(SHORT_WINDOW as u8);
        let avg = self.short[..self.short_len as usize]
            .iter()
            .map(|v| f64::from(*v))
            .sum::<f64>()
            / f64::from(self.short_len);

        let bin = bin_of(avg);
        let score = if self.scored >= LEARNING_STEPS {
            // How rare is an average this high in this series' own past (empirical tail,
            // half the own bin), ordered within the same rarity by how far it is from the
            // long-run mean.
            let total: f64 = self.hist.iter().map(|c| f64::from(*c)).sum();
            let tail: f64 = self.hist[bin + 1..]
                .iter()
                .map(|c| f64::from(*c))
                .sum::<f64>()
                + f64::from(self.hist[bin]) / 2.0;
            let q_emp = (tail + 1.0) / (total + 1.0);
            let sd = self.long_var.sqrt().max(MIN_LONG_SD);
            let magnitude = neg_log10_sf((avg - self.long_mean) / sd);
            calibrate(-q_emp.log10() + 0.01 * magnitude)
        } else {
            0.0
        };
        let decay = 1.0 - 1.0 / LONG_WINDOW as f32;
        for c in &mut self.hist {
            *c *= decay;
        }
        self.hist[bin] += 1.0;
        // Update the long-run statistics after scoring (the step is judged on the past only).
        let alpha = 1.0 / (self.scored as f64 + 1.0).min(LONG_WINDOW);
        let delta = avg - self.long_mean;
        self.long_mean += alpha * delta;
        self.long_var = (1.0 - alpha) * (self.long_var + alpha * delta * delta);
        self.scored += 1;

        let direction = if value > hi {
            1
        } else if value < lo {
            -1
        } else {
            0
        };
        self.outside = ((self.outside << 1) | u32::from(direction != 0)) & ((1 << PERSIST_N) - 1);
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
        })
    }
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

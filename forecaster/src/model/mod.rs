//! Baselines: what a series is expected to do, fitted on its history.
//!
//! A fit takes a series' resampled history up to a boundary and produces a [`Baseline`]: the
//! method chosen, the detected seasonal periods, a forward path of expected values and bands for
//! the next steps, the scale of the in-sample residuals (what scoring divides by), the envelope
//! trend used for breach forecasts, and the series' readiness. Baselines are small and
//! self-contained: the fitted augurs models are dropped once the path is computed.

pub mod breach;
mod fit;
pub mod logpattern;
mod seasonality;
pub(crate) mod stats;
mod trend;

use serde::{Deserialize, Serialize};

pub use breach::{BreachEta, EnvelopeTrend, ThresholdDirection};
pub use fit::fit;

/// Knobs of the fitting pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSettings {
    /// The resampling step.
    pub step_ms: i64,
    /// Finite points needed before anything is fitted (the series is `cold` until then).
    pub min_points: usize,
    /// Most recent points a fit looks at.
    pub max_fit_points: usize,
    /// Steps of forward forecast kept per baseline.
    pub horizon_steps: usize,
    /// Coverage of the expected band (0.95 gives a 95% band).
    pub band_level: f64,
    /// Lookback of the envelope trend used for breach forecasts, in steps.
    pub breach_lookback_steps: usize,
    /// Recent points the trend model (and the residual scale) is fitted on.
    pub trend_points: usize,
}

impl ModelSettings {
    /// Settings for a step, with defaults for the rest: at least 30 points before a first fit,
    /// up to 14 days of history per fit, a six-hour forward path, a 95% band, a twelve-hour
    /// breach lookback, a trend fitted on the last two days (at most 1,000 points).
    pub fn for_step(step_ms: i64) -> Self {
        let step_ms = step_ms.max(1);
        let steps = |ms: i64| ((ms / step_ms).max(1)) as usize;
        Self {
            step_ms,
            min_points: 30,
            max_fit_points: steps(14 * 86_400_000).max(64),
            horizon_steps: steps(6 * 3_600_000).max(12),
            band_level: 0.95,
            breach_lookback_steps: steps(12 * 3_600_000).max(12),
            trend_points: steps(2 * 86_400_000).clamp(64, 1_000),
        }
    }

    /// Steps in a day at this step.
    pub fn day_steps(&self) -> usize {
        ((86_400_000 / self.step_ms).max(1)) as usize
    }
}

/// How far a series' model has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessState {
    /// Not enough data for any model: nothing is scored.
    Cold,
    /// A fallback model scores the series while history accumulates.
    Warming,
    /// The full model is fitted.
    Ready,
}

/// Readiness with the reason, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// The state.
    pub state: ReadinessState,
    /// Why, in words.
    pub reason: String,
}

/// The model that produced a baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// MSTL with the detected periods and an AutoETS trend.
    Mstl,
    /// AutoETS without seasonality.
    Ets,
    /// Rolling median and MAD of recent points.
    RobustRolling,
    /// The series has not changed: any change is news.
    Constant,
}

/// One step of the forward path as stored: compact `f32` offsets from the baseline's
/// `offset`, so a series at 1e15 keeps the resolution of its own variation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BandPoint {
    /// Expected value, minus the baseline's offset.
    pub expected: f32,
    /// Lower edge of the band, minus the offset.
    pub lower: f32,
    /// Upper edge of the band, minus the offset.
    pub upper: f32,
}

/// Expected value and band at one step, in the series' own unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Expected value.
    pub expected: f64,
    /// Lower edge of the band.
    pub lower: f64,
    /// Upper edge of the band.
    pub upper: f64,
}

/// A fitted baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The model used.
    pub method: Method,
    /// Seasonal periods found, in steps.
    pub periods: Vec<u32>,
    /// Slot (ms) of the first step of `path`: the fit boundary.
    pub start_ms: i64,
    /// The step.
    pub step_ms: i64,
    /// What the path's points are relative to (the series' level at the fit).
    pub offset: f64,
    /// Expected value and band for each step from `start_ms` on, relative to `offset`.
    pub path: Box<[BandPoint]>,
    /// Robust scale of the in-sample residuals: one "sigma" for scoring.
    pub residual_scale: f64,
    /// Envelope trend for breach forecasts.
    pub trend: Option<EnvelopeTrend>,
    /// Readiness after this fit.
    pub readiness: Readiness,
    /// Finite points the fit used.
    pub points: usize,
}

impl Baseline {
    /// The band at `slot_ms`, if the path covers it.
    pub fn at(&self, slot_ms: i64) -> Option<Band> {
        if slot_ms < self.start_ms {
            return None;
        }
        let i = (slot_ms - self.start_ms) / self.step_ms;
        self.path
            .get(usize::try_from(i).ok()?)
            .map(|p| self.absolute(p))
    }

    /// Every step of the path: slot (ms) and band.
    pub fn points(&self) -> impl Iterator<Item = (i64, Band)> + '_ {
        self.path
            .iter()
            .enumerate()
            .map(|(i, p)| (self.start_ms + i as i64 * self.step_ms, self.absolute(p)))
    }

    fn absolute(&self, p: &BandPoint) -> Band {
        Band {
            expected: self.offset + f64::from(p.expected),
            lower: self.offset + f64::from(p.lower),
            upper: self.offset + f64::from(p.upper),
        }
    }

    /// Slot one past the end of the path.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + self.path.len() as i64 * self.step_ms
    }

    /// Approximate heap plus inline bytes.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.path.len() * std::mem::size_of::<BandPoint>()
            + self.periods.capacity() * 4
            + self.readiness.reason.capacity()
    }
}

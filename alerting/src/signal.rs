//! The typed stream of signals the forecaster's model and detectors hand to alerting.
//!
//! Every signal carries the event time it is about (`at_ms`, the data's timestamp, never the
//! wall clock) and the labels of the series it concerns (metric name under `__name__`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A series' labels, sorted, the metric name under `__name__`.
pub type LabelSet = BTreeMap<String, String>;

/// The label holding the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Expected value and band at one step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Band {
    /// Expected value.
    pub expected: f64,
    /// Lower edge.
    pub lower: f64,
    /// Upper edge.
    pub upper: f64,
}

/// Breach ETA quantiles, in seconds from the signal's `at_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Eta {
    /// Earliest plausible crossing.
    pub p10_seconds: f64,
    /// Median estimate.
    pub p50_seconds: f64,
    /// Latest plausible crossing.
    pub p90_seconds: f64,
}

/// What the model knows about a series, for explanations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelFacts {
    /// `cold`, `warming` or `ready`.
    pub readiness: String,
    /// Seasonal periods detected, in seconds (3600, 86400, 604800, …).
    pub periods_seconds: Vec<u64>,
    /// The model in use (`mstl`, `ets`, `robust_rolling`, `constant`).
    pub method: String,
    /// The resampling step, in seconds.
    pub step_seconds: u64,
}

/// One signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Event time the signal is about (ms since the epoch).
    pub at_ms: i64,
    /// The series.
    pub series: Arc<LabelSet>,
    /// What happened.
    pub body: SignalBody,
}

/// The kinds of signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SignalBody {
    /// A closed step of a series, scored against its baseline when it has one. Every closed step
    /// produces one, anomalous or not (static and anomaly rules, and resolution, need them).
    Step {
        /// The step's value (a per-second rate for counters).
        value: f64,
        /// The band the step was scored against; `None` while the series is cold.
        band: Option<Band>,
        /// Calibrated anomaly score in [0, 1].
        score: f64,
        /// 1 above the band, -1 below, 0 inside.
        direction: i8,
        /// Outside the band for at least 3 of the last 5 steps.
        persistent: bool,
        /// What the model knows about the series.
        model: Arc<ModelFacts>,
    },
    /// A breach forecast for a `breach` rule, evaluated at the series' newest step. `eta` is
    /// `None` when no crossing is forecast within the rule's horizon (the condition cleared).
    Breach {
        /// The rule's name.
        rule: String,
        /// The rule's threshold.
        threshold: f64,
        /// `true` when the threshold is crossed upwards.
        above: bool,
        /// The value at `at_ms`.
        value: f64,
        /// Time to the crossing.
        eta: Option<Eta>,
        /// Growth of the envelope per second (negative when falling).
        rate_per_second: f64,
    },
    /// The level of a series shifted (changepoint on the model's remainder).
    LevelShift {
        /// When the shift happened (event time, ms).
        changed_at_ms: i64,
        /// Mean level before.
        before: f64,
        /// Mean level after.
        after: f64,
    },
    /// A series behaves unlike its peers (the same metric on other hosts or pods).
    Outlier {
        /// `mad` or `dbscan`.
        algorithm: String,
        /// How many peers it was compared with (itself included).
        peers: usize,
        /// How far out it is, in [0, 1].
        score: f64,
        /// Its recent value.
        value: f64,
        /// The peers' median recent value.
        fleet_median: f64,
        /// `false` when it is back with its peers.
        outlying: bool,
    },
    /// A log pattern event.
    LogPattern {
        /// The service (`service.name`).
        service: String,
        /// Stable id of the template.
        template_id: String,
        /// The template, variable parts masked.
        template: String,
        /// `debug`, `info`, `warn`, `error` or `fatal`.
        severity: String,
        /// When the template was first seen (event time, ms).
        first_seen_ms: i64,
        /// A few sample lines.
        samples: Vec<String>,
        /// The template is new (first seen after warm-up).
        new: bool,
        /// Anomaly score of the pattern's rate, in [0, 1].
        rate_score: f64,
    },
}

/// Data for a chart of a series around an alert: what happened, what was expected, what is
/// forecast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChartData {
    /// Observed values: (ms, value).
    pub actual: Vec<(i64, f64)>,
    /// Expected band over the same span: (ms, band).
    pub expected: Vec<(i64, Band)>,
    /// Forward forecast from the newest step: (ms, band).
    pub forecast: Vec<(i64, Band)>,
    /// The rule's threshold, if any.
    pub threshold: Option<f64>,
    /// Anomalous steps: (ms, value).
    pub anomalies: Vec<(i64, f64)>,
}

/// What alerting may ask the forecaster for while it builds a notification.
pub trait ModelContext: Send + Sync {
    /// History, band and forecast of `series` up to `now_ms` (event time) for a chart.
    fn chart(&self, series: &LabelSet, now_ms: i64) -> Option<ChartData>;
}

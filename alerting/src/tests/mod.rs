//! Unit tests of the pipeline's stages and of the service, with injected clocks and a recording
//! notifier.

mod dispatch;
mod explain;
mod lifecycle;
mod matching;
mod muting;
mod rules;
mod service;
mod state;

use std::collections::BTreeMap;
use std::sync::Arc;

use presage_config::ForecasterConfig;

use crate::signal::{Band, Eta, LabelSet, ModelFacts, Signal, SignalBody};

pub(crate) const T0: i64 = 1_700_000_000_000;
pub(crate) const MIN: i64 = 60_000;

pub(crate) fn labels(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn series(pairs: &[(&str, &str)]) -> Arc<LabelSet> {
    Arc::new(labels(pairs))
}

pub(crate) fn config(toml: &str) -> ForecasterConfig {
    match ForecasterConfig::from_toml(toml, "test.toml") {
        Ok(c) => c,
        Err(e) => panic!("test config does not load: {e}"),
    }
}

pub(crate) fn model(periods: &[u64]) -> Arc<ModelFacts> {
    Arc::new(ModelFacts {
        readiness: "ready".into(),
        periods_seconds: periods.to_vec(),
        method: "mstl".into(),
        step_seconds: 60,
    })
}

/// A step scored far above its band, persistently.
pub(crate) fn anomalous_step(at_ms: i64, s: &Arc<LabelSet>, value: f64, score: f64) -> Signal {
    Signal {
        at_ms,
        series: Arc::clone(s),
        body: SignalBody::Step {
            value,
            band: Some(Band {
                expected: 10.0,
                lower: 8.0,
                upper: 12.0,
            }),
            score,
            direction: 1,
            persistent: true,
            model: model(&[86_400]),
        },
    }
}

/// A step inside its band.
pub(crate) fn normal_step(at_ms: i64, s: &Arc<LabelSet>, value: f64) -> Signal {
    Signal {
        at_ms,
        series: Arc::clone(s),
        body: SignalBody::Step {
            value,
            band: Some(Band {
                expected: value,
                lower: value - 1.0,
                upper: value + 1.0,
            }),
            score: 0.0,
            direction: 0,
            persistent: false,
            model: model(&[86_400]),
        },
    }
}

pub(crate) fn breach(
    at_ms: i64,
    s: &Arc<LabelSet>,
    rule: &str,
    threshold: f64,
    value: f64,
    eta: Option<(f64, f64, f64)>,
    rate: f64,
) -> Signal {
    Signal {
        at_ms,
        series: Arc::clone(s),
        body: SignalBody::Breach {
            rule: rule.into(),
            threshold,
            above: true,
            value,
            eta: eta.map(|(p10, p50, p90)| Eta {
                p10_seconds: p10,
                p50_seconds: p50,
                p90_seconds: p90,
            }),
            rate_per_second: rate,
        },
    }
}

pub(crate) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels(pairs)
}

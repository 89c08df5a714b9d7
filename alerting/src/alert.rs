//! Alerts and the notifications that carry them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::signal::{Band, ChartData, Eta, LabelSet};

/// Where an alert is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds but not yet for the rule's `for` duration.
    Pending,
    /// Firing: notified.
    Firing,
    /// The condition cleared (after `keep_firing_for`).
    Resolved,
}

/// The numbers behind an alert, from the model: what the explanation and suggestion are made of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// One line: what is happening.
    pub summary: String,
    /// The rule kind: `anomaly`, `breach`, `static`, `outlier` or `log_pattern`.
    pub kind: String,
    /// The value when the alert was last evaluated.
    pub value: Option<f64>,
    /// The expected band at that step.
    pub band: Option<Band>,
    /// Calibrated anomaly score.
    pub score: Option<f64>,
    /// Breach ETA quantiles.
    pub eta: Option<Eta>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// Growth per second behind a breach forecast.
    pub rate_per_second: Option<f64>,
    /// Seasonal periods detected, in words (`daily`, `weekly`); empty when none.
    pub seasonality: Vec<String>,
    /// When a level shift behind the alert happened (event time, ms).
    pub changepoint_ms: Option<i64>,
    /// Other alerts active on the same host or pod (their summaries).
    pub related: Vec<String>,
    /// The remediation suggestion, with numbers.
    pub suggestion: String,
    /// The whole explanation in a few sentences.
    pub text: String,
}

/// An alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable hash of the labels (16 hex digits): the same rule on the same series is the same
    /// alert across evaluations and restarts.
    pub fingerprint: String,
    /// Labels: `alertname` (the rule), `rule_kind`, the series' labels (`__name__` as
    /// `metric`), the rule's labels (`severity`, …).
    pub labels: LabelSet,
    /// Annotations: `summary`, `description`, `explanation`, `suggestion`, and the rule's own.
    pub annotations: BTreeMap<String, String>,
    /// Lifecycle state.
    pub state: AlertState,
    /// Event time the condition started holding (ms).
    pub active_since_ms: i64,
    /// Event time it started firing (ms).
    pub fired_at_ms: Option<i64>,
    /// Event time it resolved (ms).
    pub resolved_at_ms: Option<i64>,
    /// Event time of the last evaluation that saw the condition (ms).
    pub last_seen_ms: i64,
    /// The numbers behind it.
    pub explanation: Explanation,
    /// Link to the series in the web UI.
    pub generator_url: String,
}

/// What a receiver is sent: the alerts of one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// The receiver's name.
    pub receiver: String,
    /// Identifies the group (route and group labels), as Alertmanager's `groupKey`.
    pub group_key: String,
    /// The labels the group is keyed on.
    pub group_labels: LabelSet,
    /// `firing` when any alert fires, else `resolved`.
    pub status: String,
    /// The alerts, firing first.
    pub alerts: Vec<Alert>,
    /// The daemon's web UI, as configured (`alerting.external_url`).
    pub external_url: String,
    /// Wall-clock time the notification was built (ms since the epoch).
    pub sent_at_ms: i64,
    /// Charts of the alerts' series, by fingerprint (email renders them).
    pub charts: BTreeMap<String, ChartData>,
}

impl Notification {
    /// Labels every alert shares.
    pub fn common_labels(&self) -> LabelSet {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    /// Annotations every alert shares.
    pub fn common_annotations(&self) -> BTreeMap<String, String> {
        common(self.alerts.iter().map(|a| &a.annotations))
    }
}

fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

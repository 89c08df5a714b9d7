//! Rules: which signals make a condition hold for a series.
//!
//! A rule is compiled from `[[rules]]` (plus the built-in rules while
//! `alerting.default_rules` is on). Each signal a rule applies to sets the latest condition of
//! the (rule, series) pair; [`crate::lifecycle`] turns conditions into alerts.

use std::collections::BTreeMap;
use std::time::Duration;

use presage_config::{
    Direction, EtaQuantile, ForecasterConfig, OutlierAlgorithm, RuleConfig, RuleKind, Severity,
};

use crate::error::{Error, Result};
use crate::matcher::Selector;
use crate::signal::{Band, Eta, Signal, SignalBody};

/// Default lowest score for anomaly rules.
pub const DEFAULT_ANOMALY_MIN_SCORE: f64 = 0.7;
/// Default lowest score for outlier rules.
pub const DEFAULT_OUTLIER_MIN_SCORE: f64 = 0.5;
/// Rate score of a log pattern at which the built-in rate rule alerts (as for series: about
/// one step in thirty thousand; the forecaster only scores rates above their band for a few
/// steps, so a single busy minute does not page).
pub const LOG_RATE_MIN_SCORE: f64 = 0.6;
/// The forecaster's per-template line count series: log-pattern rules watch their rates with
/// the template attached, so the generic anomaly rule leaves them alone.
pub const LOG_LINES_METRIC: &str = "presage_log_pattern_lines";

/// Names of the built-in rules.
pub mod builtin {
    /// A file system (OpenTelemetry host metrics) will reach 90% within 6h.
    pub const DISK_WILL_FILL: &str = "DiskWillFill";
    /// A node-exporter file system will run out of available bytes within 6h.
    pub const NODE_DISK_WILL_FILL: &str = "NodeFilesystemWillFill";
    /// Used memory will reach 95% within 6h.
    pub const MEMORY_WILL_EXHAUST: &str = "MemoryWillExhaust";
    /// CPU idle below 10% for 15 minutes.
    pub const CPU_SATURATED: &str = "CpuSaturated";
    /// Any ready series far outside its band, persistently.
    pub const SERIES_ANOMALOUS: &str = "SeriesAnomalous";
    /// A log template at WARN or above seen for the first time after the service's warm-up.
    pub const NEW_ERROR_LOG_PATTERN: &str = "NewErrorLogPattern";
    /// The line rate of a WARN-or-above log template far above its baseline.
    pub const LOG_PATTERN_RATE_ANOMALOUS: &str = "LogPatternRateAnomalous";
}

fn rule(name: &str, kind: RuleKind, select: &str) -> RuleConfig {
    RuleConfig {
        name: name.to_string(),
        kind,
        select: select.to_string(),
        threshold: None,
        direction: Direction::Above,
        horizon: None,
        quantile: None,
        min_score: None,
        persistent: None,
        algorithm: None,
        peer_labels: None,
        severity: None,
        new_pattern: None,
        pending_for: None,
        keep_firing_for: None,
        labels: BTreeMap::new(),
        annotations: BTreeMap::new(),
    }
}

/// The built-in rules, added unless `alerting.default_rules = false`.
///
/// Selectors follow what the agent (OpenTelemetry host metrics translated to Prometheus names,
/// no unit suffix) and node-exporter export:
/// - `system_filesystem_utilization{device,mode,mountpoint,type}` (used share, 0–1);
/// - `node_filesystem_avail_bytes{device,fstype,mountpoint}`;
/// - `system_memory_utilization{state="used"}`;
/// - `system_cpu_utilization{state="idle"}` without a `cpu` label (the all-CPU share).
pub fn default_rules() -> Vec<RuleConfig> {
    let mut disk = rule(
        builtin::DISK_WILL_FILL,
        RuleKind::Breach,
        r#"system_filesystem_utilization{mode!="ro"}"#,
    );
    disk.threshold = Some(0.9);
    disk.horizon = Some(Duration::from_secs(6 * 3600));

    // node-exporter has no utilization series: forecast available bytes reaching zero.
    let mut node_disk = rule(
        builtin::NODE_DISK_WILL_FILL,
        RuleKind::Breach,
        r#"node_filesystem_avail_bytes{fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs|fuse\\..*"}"#,
    );
    node_disk.threshold = Some(0.0);
    node_disk.direction = Direction::Below;
    node_disk.horizon = Some(Duration::from_secs(6 * 3600));

    let mut memory = rule(
        builtin::MEMORY_WILL_EXHAUST,
        RuleKind::Breach,
        r#"system_memory_utilization{state="used"}"#,
    );
    memory.threshold = Some(0.95);
    memory.horizon = Some(Duration::from_secs(6 * 3600));

    let mut cpu = rule(
        builtin::CPU_SATURATED,
        RuleKind::Static,
        r#"system_cpu_utilization{state="idle",cpu=""}"#,
    );
    cpu.threshold = Some(0.1);
    cpu.direction = Direction::Below;
    cpu.pending_for = Some(Duration::from_secs(15 * 60));
    cpu.labels
        .insert("severity".to_string(), "warning".to_string());

    let mut anomaly = rule(
        builtin::SERIES_ANOMALOUS,
        RuleKind::Anomaly,
        &format!(r#"{{__name__=~".+",__name__!="{LOG_LINES_METRIC}"}}"#),
    );
    // Scores are calibrated against each series' own past: 0.5 is a step rarer than all but
    // one in a thousand of its steps, 0.6 about one in thirty thousand. With persistence
    // (outside the band for 3 of the last 5 steps) a single spike does not page.
    anomaly.min_score = Some(0.6);
    anomaly.persistent = Some(true);

    // Log pattern signals carry the stream's labels plus `service` (and `template_id`).
    let mut new_log = rule(
        builtin::NEW_ERROR_LOG_PATTERN,
        RuleKind::LogPattern,
        r#"{service=~".+"}"#,
    );
    new_log.severity = Some(Severity::Warn);
    new_log.new_pattern = Some(true);

    // Rates come from the per-template line count series' baselines (ready models only).
    let mut log_rate = rule(
        builtin::LOG_PATTERN_RATE_ANOMALOUS,
        RuleKind::LogPattern,
        r#"{service=~".+"}"#,
    );
    log_rate.severity = Some(Severity::Warn);
    log_rate.new_pattern = Some(false);
    log_rate.min_score = Some(LOG_RATE_MIN_SCORE);

    vec![disk, node_disk, memory, cpu, anomaly, new_log, log_rate]
}

/// The rules in effect: the configured ones, plus the built-in ones (unless
/// `alerting.default_rules = false`) whose names no configured rule takes. The forecaster
/// computes breach forecasts for every `breach` rule of this list.
pub fn effective_rules(config: &ForecasterConfig) -> Vec<RuleConfig> {
    let mut out = Vec::new();
    if config.alerting.default_rules {
        for d in default_rules() {
            if !config.rules.iter().any(|r| r.name == d.name) {
                out.push(d);
            }
        }
    }
    out.extend(config.rules.iter().cloned());
    out
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The rule as configured (or built in).
    pub config: RuleConfig,
    /// Its series selector.
    pub select: Selector,
    /// Built in rather than configured.
    pub builtin: bool,
    /// Only series whose model reports `ready` count (the built-in anomaly rule).
    pub require_ready: bool,
}

impl Rule {
    /// Compiles one rule.
    pub fn compile(config: RuleConfig, builtin: bool) -> Result<Self> {
        let select = Selector::parse(&config.select).map_err(|e| Error::Rule {
            rule: config.name.clone(),
            reason: e.to_string(),
        })?;
        if matches!(config.kind, RuleKind::Breach | RuleKind::Static) && config.threshold.is_none()
        {
            return Err(Error::Rule {
                rule: config.name.clone(),
                reason: format!("kind `{}` needs a threshold", config.kind.as_str()),
            });
        }
        let require_ready = builtin && config.name == builtin::SERIES_ANOMALOUS;
        Ok(Self {
            config,
            select,
            builtin,
            require_ready,
        })
    }

    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The rule's kind.
    pub fn kind(&self) -> RuleKind {
        self.config.kind
    }

    /// The `severity` label the rule's alerts carry: the configured one, else `critical` for
    /// breach rules and `warning` for the others.
    pub fn severity(&self) -> &str {
        self.config
            .labels
            .get("severity")
            .map(String::as_str)
            .unwrap_or(match self.config.kind {
                RuleKind::Breach => "critical",
                _ => "warning",
            })
    }

    /// How long a condition must hold before the alert fires (event time, ms).
    pub fn pending_for_ms(&self) -> i64 {
        self.config.pending_for.map_or(0, |d| d.as_millis() as i64)
    }

    /// How long an alert keeps firing after its condition clears (event time, ms).
    pub fn keep_firing_for_ms(&self) -> i64 {
        self.config
            .keep_firing_for
            .map_or(0, |d| d.as_millis() as i64)
    }

    /// Whether a signal is of a kind this rule reads (before looking at the series).
    fn reads(&self, body: &SignalBody) -> bool {
        match (self.config.kind, body) {
            (RuleKind::Anomaly | RuleKind::Static, SignalBody::Step { .. }) => true,
            (RuleKind::Breach, SignalBody::Breach { rule, .. }) => rule == &self.config.name,
            (RuleKind::Outlier, SignalBody::Outlier { algorithm, .. }) => {
                match self.config.algorithm {
                    None => true,
                    Some(OutlierAlgorithm::Mad) => algorithm == "mad",
                    Some(OutlierAlgorithm::Dbscan) => algorithm == "dbscan",
                }
            }
            (RuleKind::LogPattern, SignalBody::LogPattern { .. }) => true,
            _ => false,
        }
    }

    /// The condition `signal` sets for this rule, or `None` when the rule does not read it.
    pub fn evaluate(&self, signal: &Signal) -> Option<Condition> {
        if !self.reads(&signal.body) || !self.select.matches(&signal.series) {
            return None;
        }
        let c = &self.config;
        let mut cond = Condition {
            at_ms: signal.at_ms,
            ..Condition::default()
        };
        match &signal.body {
            SignalBody::Step {
                value,
                band,
                score,
                direction,
                persistent,
                model,
            } => {
                cond.value = Some(*value);
                cond.band = *band;
                cond.score = Some(*score);
                cond.direction = *direction;
                if c.kind == RuleKind::Anomaly {
                    let min = c.min_score.unwrap_or(DEFAULT_ANOMALY_MIN_SCORE);
                    let need_persistent = c.persistent.unwrap_or(true);
                    cond.active = band.is_some()
                        && *score >= min
                        && *direction != 0
                        && (*persistent || !need_persistent)
                        && (!self.require_ready || model.readiness == "ready");
                } else {
                    let t = c.threshold.unwrap_or(f64::NAN);
                    cond.threshold = Some(t);
                    cond.active = match c.direction {
                        Direction::Above => *value > t,
                        Direction::Below => *value < t,
                    };
                }
            }
            SignalBody::Breach {
                threshold,
                above,
                value,
                eta,
                rate_per_second,
                ..
            } => {
                cond.value = Some(*value);
                cond.threshold = Some(*threshold);
                cond.eta = *eta;
                cond.rate_per_second = Some(*rate_per_second);
                cond.direction = if *above { 1 } else { -1 };
                let horizon = c.horizon_or_default().as_secs_f64();
                cond.active = eta.is_some_and(|e| {
                    let q = match c.quantile.unwrap_or_default() {
                        EtaQuantile::P10 => e.p10_seconds,
                        EtaQuantile::P50 => e.p50_seconds,
                        EtaQuantile::P90 => e.p90_seconds,
                    };
                    q.is_finite() && q <= horizon
                });
            }
            SignalBody::Outlier {
                algorithm,
                peers,
                score,
                value,
                fleet_median,
                outlying,
            } => {
                cond.value = Some(*value);
                cond.score = Some(*score);
                cond.outlier = Some(OutlierFacts {
                    algorithm: algorithm.clone(),
                    peers: *peers,
                    fleet_median: *fleet_median,
                });
                cond.direction = if value >= fleet_median { 1 } else { -1 };
                let min = c.min_score.unwrap_or(DEFAULT_OUTLIER_MIN_SCORE);
                cond.active = *outlying && *score >= min;
            }
            SignalBody::LogPattern {
                service,
                template_id,
                template,
                severity,
                first_seen_ms,
                samples,
                new,
                rate_score,
            } => {
                cond.score = Some(*rate_score);
                let min = c.severity.unwrap_or_default();
                let sev_ok = parse_severity(severity).is_some_and(|s| s >= min);
                let new_counts = *new && c.new_pattern.unwrap_or(true);
                let rate_counts = !*new && c.min_score.is_some_and(|m| *rate_score >= m);
                cond.active = sev_ok && (new_counts || rate_counts);
                cond.log = Some(LogFacts {
                    service: service.clone(),
                    template_id: template_id.clone(),
                    template: template.clone(),
                    severity: severity.clone(),
                    first_seen_ms: *first_seen_ms,
                    samples: samples.iter().take(3).cloned().collect(),
                    new: *new,
                });
            }
            SignalBody::LevelShift { .. } => return None,
        }
        Some(cond)
    }
}

/// Parses a log severity name (`warning` and `critical` accepted as synonyms).
pub fn parse_severity(s: &str) -> Option<Severity> {
    match s.to_ascii_lowercase().as_str() {
        "trace" | "debug" => Some(Severity::Debug),
        "info" | "notice" => Some(Severity::Info),
        "warn" | "warning" => Some(Severity::Warn),
        "error" | "err" => Some(Severity::Error),
        "fatal" | "critical" | "crit" | "emergency" | "alert" => Some(Severity::Fatal),
        _ => None,
    }
}

/// Compiles the rules in effect (see [`effective_rules`]).
pub fn compile(config: &ForecasterConfig) -> Result<Vec<Rule>> {
    let builtin_names: Vec<String> = default_rules().into_iter().map(|r| r.name).collect();
    effective_rules(config)
        .into_iter()
        .map(|r| {
            let builtin =
                builtin_names.contains(&r.name) && !config.rules.iter().any(|c| c.name == r.name);
            Rule::compile(r, builtin)
        })
        .collect()
}

/// What the latest signal says about a (rule, series) pair.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Condition {
    /// The condition holds.
    pub active: bool,
    /// Event time of the signal (ms).
    pub at_ms: i64,
    /// The value.
    pub value: Option<f64>,
    /// The band.
    pub band: Option<Band>,
    /// Anomaly, outlier or log-rate score.
    pub score: Option<f64>,
    /// 1 above (rising), -1 below (falling), 0 inside.
    pub direction: i8,
    /// The threshold.
    pub threshold: Option<f64>,
    /// Breach ETA.
    pub eta: Option<Eta>,
    /// Growth per second behind a breach forecast.
    pub rate_per_second: Option<f64>,
    /// Fleet facts of an outlier.
    pub outlier: Option<OutlierFacts>,
    /// The log pattern.
    pub log: Option<LogFacts>,
}

/// Fleet facts of an outlier signal.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutlierFacts {
    /// `mad` or `dbscan`.
    pub algorithm: String,
    /// Series compared.
    pub peers: usize,
    /// The fleet's median.
    pub fleet_median: f64,
}

/// A log pattern behind a condition.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogFacts {
    /// The service.
    pub service: String,
    /// Template id.
    pub template_id: String,
    /// The template.
    pub template: String,
    /// Severity.
    pub severity: String,
    /// First seen (event time, ms).
    pub first_seen_ms: i64,
    /// A few sample lines.
    pub samples: Vec<String>,
    /// New pattern.
    pub new: bool,
}

//! Explanations and remediation suggestions.
//!
//! Every alert says what is happening (summary), how the value compares with the expected band,
//! how unusual it is, when a forecast crossing happens (ETA P10/P50/P90), which seasonal cycles
//! the model found, what else is active on the same host or pod, and what to do about it, with
//! numbers taken from the model. Suggestions come from `[[remediations]]` first (metric name
//! regex, anchored, and rule kinds), then from the built-in catalog keyed on the metric's class
//! (disk, memory, CPU, latency, errors, other) and the rule kind.

use std::sync::Arc;

use presage_config::{RemediationConfig, RuleKind};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::alert::Explanation;
use crate::error::{Error, Result};
use crate::rules::{Condition, Rule};
use crate::signal::{Band, LabelSet, METRIC_NAME, ModelFacts};
use crate::template::{self, TemplateContext, bytes, duration_secs, number, percent, timestamp};

/// How many days of growth the disk suggestion sizes extra space for.
pub const DISK_GROWTH_DAYS: f64 = 7.0;
/// The utilization one replica (or core) should stay under at the forecast peak.
pub const CPU_TARGET_UTILIZATION: f64 = 0.7;
/// How full a resized volume may be once it holds [`DISK_GROWTH_DAYS`] of growth.
pub const DISK_TARGET_UTILIZATION: f64 = 0.9;

/// The latest closed step of a series, for explanations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFacts {
    /// Event time (ms).
    pub at_ms: i64,
    /// The value.
    pub value: f64,
    /// The band.
    pub band: Option<Band>,
    /// Calibrated anomaly score.
    pub score: f64,
    /// What the model knows about the series.
    pub model: Arc<ModelFacts>,
}

/// A level shift seen on a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ShiftFacts {
    /// When the level changed (event time, ms).
    pub changed_at_ms: i64,
    /// Mean level before.
    pub before: f64,
    /// Mean level after.
    pub after: f64,
}

/// The metric classes the catalog knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricClass {
    /// File systems, volumes.
    Disk,
    /// Memory.
    Memory,
    /// CPU.
    Cpu,
    /// Latency, durations.
    Latency,
    /// Errors, failures.
    Errors,
    /// Anything else.
    Generic,
}

/// Classifies a metric by its name.
pub fn classify(metric: &str) -> MetricClass {
    let m = metric.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| m.contains(w));
    if has(&[
        "filesystem",
        "volume_stats",
        "_fs_",
        "disk_free",
        "disk_used",
        "pvc",
    ]) {
        MetricClass::Disk
    } else if has(&["memory", "_mem_", "heap", "rss"]) || m.starts_with("mem") {
        MetricClass::Memory
    } else if has(&["cpu"]) {
        MetricClass::Cpu
    } else if has(&["latency", "duration", "response_time", "_seconds_bucket"]) {
        MetricClass::Latency
    } else if has(&["error", "fail", "5xx", "exception", "panic"]) {
        MetricClass::Errors
    } else {
        MetricClass::Generic
    }
}

/// How a metric's values read: shares in [0, 1], bytes, or plain numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Ratio,
    Bytes,
    Plain,
}

fn unit_of(metric: &str) -> Unit {
    if metric.contains("utilization") || metric.ends_with("_ratio") {
        Unit::Ratio
    } else if metric.ends_with("_bytes") || metric.contains("_bytes_") {
        Unit::Bytes
    } else {
        Unit::Plain
    }
}

fn show(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Ratio => percent(v),
        Unit::Bytes => bytes(v),
        Unit::Plain => number(v),
    }
}

/// Periods in words (`hourly`, `daily`, `weekly`, or the duration).
pub fn seasonality_words(periods_seconds: &[u64]) -> Vec<String> {
    periods_seconds
        .iter()
        .map(|p| match p {
            3_600 => "hourly".to_string(),
            86_400 => "daily".to_string(),
            604_800 => "weekly".to_string(),
            other => format!("every {}", duration_secs(*other as f64)),
        })
        .collect()
}

/// What an explanation is made from.
#[derive(Debug, Clone, Copy)]
pub struct ExplainInput<'a> {
    /// The rule.
    pub rule: &'a Rule,
    /// The series' labels (metric name under `__name__`).
    pub series: &'a LabelSet,
    /// The alert's labels, for templates.
    pub labels: &'a LabelSet,
    /// The latest condition.
    pub cond: &'a Condition,
    /// The series' latest step, when known.
    pub step: Option<&'a StepFacts>,
    /// The series' latest level shift, when one was seen.
    pub shift: Option<&'a ShiftFacts>,
    /// Summaries of other alerts active on the same host or pod.
    pub related: &'a [String],
    /// Peak of the forecast ahead (upper band), when the model gave one.
    pub forecast_peak: Option<f64>,
}

impl ExplainInput<'_> {
    fn metric(&self) -> &str {
        self.series.get(METRIC_NAME).map_or("", String::as_str)
    }

    fn value(&self) -> Option<f64> {
        self.cond.value.or(self.step.map(|s| s.value))
    }

    fn band(&self) -> Option<Band> {
        self.cond.band.or(self.step.and_then(|s| s.band))
    }

    fn score(&self) -> Option<f64> {
        self.cond.score.or(self.step.map(|s| s.score))
    }

    /// The template context of this alert.
    pub fn template_context(&self) -> TemplateContext<'_> {
        let band = self.band();
        TemplateContext {
            labels: Some(self.labels),
            rule: self.rule.name(),
            value: self.value(),
            expected: band.map(|b| b.expected),
            lower: band.map(|b| b.lower),
            upper: band.map(|b| b.upper),
            score: self.score(),
            threshold: self.cond.threshold.or(self.rule.config.threshold),
            eta_seconds: self.cond.eta.map(|e| e.p50_seconds),
        }
    }
}

/// The series as people read it: `metric{label="value",…}`, identifying labels first.
pub fn series_name(series: &LabelSet) -> String {
    let metric = series.get(METRIC_NAME).map_or("", String::as_str);
    let labels: Vec<String> = series
        .iter()
        .filter(|(k, _)| k.as_str() != METRIC_NAME)
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    let mut s = if labels.is_empty() {
        metric.to_string()
    } else {
        format!("{metric}{{{}}}", labels.join(","))
    };
    if s.len() > 160 {
        let mut cut = 157;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Suggestions: `[[remediations]]` first, then the built-in catalog.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    custom: Vec<(Regex, Vec<RuleKind>, String)>,
}

impl Catalog {
    /// Compiles the configured remediations.
    pub fn new(remediations: &[RemediationConfig]) -> Result<Self> {
        let custom = remediations
            .iter()
            .map(|r| {
                Regex::new(&format!("^(?:{})$", r.metric))
                    .map(|re| (re, r.kinds.clone(), r.text.clone()))
                    .map_err(|e| Error::Remediation {
                        pattern: r.metric.clone(),
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Self { custom })
    }

    /// The explanation of an alert.
    pub fn explain(&self, input: &ExplainInput<'_>) -> Explanation {
        let kind = input.rule.kind();
        let metric = input.metric();
        let unit = unit_of(metric);
        let cond = input.cond;
        let band = input.band();
        let value = input.value();
        let seasonality = input
            .step
            .map(|s| seasonality_words(&s.model.periods_seconds))
            .unwrap_or_default();
        let summary = summary(input, unit);

        let mut sentences = vec![format!("{summary}.")];
        if let (Some(v), Some(b)) = (value, band) {
            sentences.push(format!(
                "Actual {} vs expected {} (band {} to {}).",
                show(unit, v),
                show(unit, b.expected),
                show(unit, b.lower),
                show(unit, b.upper)
            ));
        } else if let Some(v) = value {
            sentences.push(format!("Current value {}.", show(unit, v)));
        }
        if let Some(s) = input.score()
            && kind != RuleKind::Breach
        {
            sentences.push(format!("Score {} (1 is the most unusual).", number(s)));
        }
        if let Some(e) = cond.eta {
            sentences.push(format!(
                "Forecast crossing of {} in {} (P10 {}, P90 {}).",
                show(unit, cond.threshold.unwrap_or(f64::NAN)),
                duration_secs(e.p50_seconds),
                duration_secs(e.p10_seconds),
                duration_secs(e.p90_seconds)
            ));
        }
        if input.step.is_some() {
            if seasonality.is_empty() {
                sentences.push("No seasonal cycle detected.".to_string());
            } else {
                sentences.push(format!("Seasonality: {}.", seasonality.join(", ")));
            }
        }
        if let Some(s) = input.shift {
            sentences.push(format!(
                "The level shifted at {} from {} to {}.",
                timestamp(s.changed_at_ms),
                show(unit, s.before),
                show(unit, s.after)
            ));
        }
        if !input.related.is_empty() {
            sentences.push(format!(
                "Also on the same host or pod during this alert: {}.",
                input.related.join("; ")
            ));
        }

        let ctx = input.template_context();
        let suggestion = self
            .custom
            .iter()
            .find(|(re, kinds, _)| {
                re.is_match(metric) && (kinds.is_empty() || kinds.contains(&kind))
            })
            .map(|(_, _, text)| template::render(text, &ctx))
            .unwrap_or_else(|| builtin_suggestion(input, unit, &seasonality));
        sentences.push(format!("Suggestion: {suggestion}"));

        Explanation {
            summary,
            kind: kind.as_str().to_string(),
            value,
            band,
            score: input.score(),
            eta: cond.eta,
            threshold: cond.threshold.or(input.rule.config.threshold),
            rate_per_second: cond.rate_per_second,
            seasonality,
            changepoint_ms: input.shift.map(|s| s.changed_at_ms),
            related: input.related.to_vec(),
            suggestion,
            text: sentences.join(" "),
        }
    }
}

fn summary(input: &ExplainInput<'_>, unit: Unit) -> String {
    let series = series_name(input.series);
    let cond = input.cond;
    let v = input
        .value()
        .map_or_else(|| "n/a".to_string(), |v| show(unit, v));
    match input.rule.kind() {
        RuleKind::Breach => {
            let t = cond
                .threshold
                .or(input.rule.config.threshold)
                .map_or_else(|| "its threshold".to_string(), |t| show(unit, t));
            match cond.eta {
                Some(e) if e.p50_seconds <= 0.0 => format!("{series} has reached {t}"),
                Some(e) => format!(
                    "{series} will reach {t} in {} (P10 {}, P90 {})",
                    duration_secs(e.p50_seconds),
                    duration_secs(e.p10_seconds),
                    duration_secs(e.p90_seconds)
                ),
                None => format!("{series} is no longer forecast to reach {t}"),
            }
        }
        RuleKind::Anomaly => {
            let side = match cond.direction {
                _ if !cond.active => "back inside",
                d if d > 0 => "above",
                d if d < 0 => "below",
                _ => "back inside",
            };
            match input.band() {
                Some(b) => format!(
                    "{series} is {side} its expected band: {v} vs expected {}",
                    show(unit, b.expected)
                ),
                None => format!("{series} is anomalous: {v}"),
            }
        }
        RuleKind::Static => {
            let t = cond
                .threshold
                .map_or_else(|| "n/a".to_string(), |t| show(unit, t));
            let side = match input.rule.config.direction {
                presage_config::Direction::Above => "above",
                presage_config::Direction::Below => "below",
            };
            format!("{series} is {v}, {side} the threshold {t}")
        }
        RuleKind::Outlier => match &cond.outlier {
            Some(o) => format!(
                "{series} is an outlier among {} peers: {v} vs fleet median {}",
                o.peers,
                show(unit, o.fleet_median)
            ),
            None => format!("{series} is an outlier among its peers: {v}"),
        },
        RuleKind::LogPattern => match &cond.log {
            Some(l) if l.new => format!(
                "New {} log pattern in {}: `{}`",
                l.severity, l.service, l.template
            ),
            Some(l) => format!(
                "Unusual rate of {} log pattern in {}: `{}`",
                l.severity, l.service, l.template
            ),
            None => format!("{series}: log pattern"),
        },
    }
}

fn builtin_suggestion(input: &ExplainInput<'_>, unit: Unit, seasonality: &[String]) -> String {
    let cond = input.cond;
    let kind = input.rule.kind();
    let class = classify(input.metric());
    let mountpoint = input
        .series
        .get("mountpoint")
        .map_or_else(|| "the file system".to_string(), |m| m.clone());
    match (class, kind) {
        (_, RuleKind::LogPattern) => match &cond.log {
            Some(l) => {
                let mut s = format!(
                    "Look at the `{}` log lines of {} first seen at {}: `{}`.",
                    l.severity,
                    l.service,
                    timestamp(l.first_seen_ms),
                    l.template
                );
                if let Some(sample) = l.samples.first() {
                    s.push_str(&format!(" Example: {sample}"));
                }
                s.push_str(" Check deploys and configuration changes around then.");
                s
            }
            None => "Look at the service's recent logs.".to_string(),
        },
        (MetricClass::Disk, _) => disk_suggestion(input, unit, &mountpoint),
        (MetricClass::Memory, RuleKind::Breach) => {
            let daily = seasonality.iter().any(|s| s == "daily");
            let restart_by = cond
                .eta
                .map(|e| timestamp(cond.at_ms + (e.p10_seconds * 1000.0) as i64));
            let rate = cond
                .rate_per_second
                .map(|r| format!(" Memory grows {} per hour.", show_rate(unit, r * 3600.0)))
                .unwrap_or_default();
            match (daily, restart_by) {
                (false, Some(t)) => format!(
                    "Memory grows steadily with no daily cycle: a leak is suspected.{rate} \
                     Restart the process by {t} (the earliest plausible crossing), then find \
                     the leak with a heap profile."
                ),
                (true, Some(t)) => format!(
                    "Memory follows a daily cycle but its peaks keep growing.{rate} Raise the \
                     memory limit or reduce the working set before {t}."
                ),
                (_, None) => "Check which process is growing (RSS by process) and whether \
                              the limit fits the workload."
                    .to_string(),
            }
        }
        (MetricClass::Memory, _) => "Check which process uses the memory (RSS by process), \
                                      recent deploys, and the cache sizes."
            .to_string(),
        (MetricClass::Cpu, RuleKind::Breach | RuleKind::Static | RuleKind::Anomaly) => {
            cpu_suggestion(input)
        }
        (MetricClass::Latency | MetricClass::Errors, _) => {
            let what = if class == MetricClass::Latency {
                "latency"
            } else {
                "error rate"
            };
            match input.shift {
                Some(s) => format!(
                    "The {what} level changed at {} (from {} to {}): check deploys, \
                     configuration and dependency changes around that time and roll back if \
                     one matches.",
                    timestamp(s.changed_at_ms),
                    show(unit, s.before),
                    show(unit, s.after)
                ),
                None => format!(
                    "Check recent deploys, dependencies and saturation of the service behind \
                     this {what}."
                ),
            }
        }
        (_, RuleKind::Outlier) => match &cond.outlier {
            Some(o) => format!(
                "This one is at {} while its {} peers' median is {}: compare its version, \
                 configuration and host with the others, and drain it if it misbehaves.",
                input
                    .value()
                    .map_or_else(|| "n/a".into(), |v| show(unit, v)),
                o.peers.saturating_sub(1),
                show(unit, o.fleet_median)
            ),
            None => "Compare it with its peers.".to_string(),
        },
        (_, RuleKind::Breach) => match (cond.eta, cond.threshold) {
            (Some(e), Some(t)) => format!(
                "Act before {} (the earliest plausible crossing of {}).",
                timestamp(cond.at_ms + (e.p10_seconds * 1000.0) as i64),
                show(unit, t)
            ),
            _ => "Check what drives the trend.".to_string(),
        },
        _ => match input.shift {
            Some(s) => format!(
                "The level changed at {}: check what changed around then.",
                timestamp(s.changed_at_ms)
            ),
            None => "Check what changed recently on this series' host or service.".to_string(),
        },
    }
}

fn show_rate(unit: Unit, per_hour: f64) -> String {
    match unit {
        Unit::Ratio => format!("{} percentage points", number(per_hour * 100.0)),
        Unit::Bytes => bytes(per_hour),
        Unit::Plain => number(per_hour),
    }
}

fn disk_suggestion(input: &ExplainInput<'_>, unit: Unit, mountpoint: &str) -> String {
    let cond = input.cond;
    let Some(rate) = cond.rate_per_second.filter(|r| r.is_finite() && *r != 0.0) else {
        return format!(
            "Free space on {mountpoint}: look for large or fast-growing files \
             (`du -xh --max-depth=2 {mountpoint}`), rotate and compress logs, prune old \
             artifacts, or grow the volume."
        );
    };
    let value = input.value();
    // Utilization grows towards 1 (full); available bytes fall towards 0.
    let (growth_per_hour, to_full_secs) = match (unit, value) {
        (Unit::Ratio, Some(v)) if rate > 0.0 => (rate * 3600.0, Some((1.0 - v).max(0.0) / rate)),
        (Unit::Bytes, Some(v)) if rate < 0.0 => (-rate * 3600.0, Some(v.max(0.0) / -rate)),
        _ => (rate.abs() * 3600.0, None),
    };
    let growth_days = growth_per_hour * 24.0 * DISK_GROWTH_DAYS;
    let mut s = format!(
        "{mountpoint} grows {} per hour",
        show_rate(unit, growth_per_hour)
    );
    if let Some(full) = to_full_secs {
        s.push_str(&format!(" and will be full in {}", duration_secs(full)));
    }
    s.push_str(&format!(
        ". Free space or grow the volume {} ({} days of growth at this rate); look for large \
         or fast-growing files (`du -xh --max-depth=2 {mountpoint}`), rotate and compress \
         logs, prune old artifacts.",
        match (unit, value) {
            // A share of the volume: the size that holds what is used plus the growth, at
            // most 90% full, relative to today's size.
            (Unit::Ratio, Some(v)) => format!(
                "to at least {}x its current size",
                number(((v.max(0.0) + growth_days) / DISK_TARGET_UTILIZATION).max(1.0))
            ),
            (Unit::Ratio, None) =>
                format!("by at least {}% of its size", number(growth_days * 100.0)),
            (Unit::Bytes, _) => format!("by at least {}", bytes(growth_days)),
            (Unit::Plain, _) => format!("by at least {}", number(growth_days)),
        },
        number(DISK_GROWTH_DAYS)
    ));
    s
}

fn cpu_suggestion(input: &ExplainInput<'_>) -> String {
    // An `idle` share counts the other way: busy = 1 - idle. A `…percent` series is on a 0–100
    // scale, the others (OpenTelemetry's utilization) on 0–1.
    let idle = input.series.get("state").is_some_and(|s| s == "idle");
    let scale = if input.metric().contains("percent") {
        0.01
    } else {
        1.0
    };
    let busy = |v: f64| {
        let v = v * scale;
        if idle { (1.0 - v).clamp(0.0, 1.0) } else { v }
    };
    let current = input.value().map(busy);
    let peak = match (input.forecast_peak, input.band()) {
        (Some(p), _) => Some(busy(p)),
        (None, Some(b)) => Some(busy(if idle { b.lower } else { b.upper })),
        (None, None) => current,
    };
    let peak = match (peak, current) {
        (Some(p), Some(c)) => Some(p.max(c)),
        (p, c) => p.or(c),
    };
    match peak {
        Some(p) if p > 0.0 && p.is_finite() => {
            let replicas = (p / CPU_TARGET_UTILIZATION).ceil().max(1.0) as u64;
            format!(
                "The forecast peak is {} of one replica's CPU: run {replicas} replicas (or \
                 {replicas}x the cores) to keep the peak under {} (ceil({} / {})), or find \
                 what consumes the CPU (profile the top processes).",
                percent(p),
                percent(CPU_TARGET_UTILIZATION),
                number(p),
                number(CPU_TARGET_UTILIZATION)
            )
        }
        _ => "Find what consumes the CPU (top processes, profiles) and add capacity if the \
              load is legitimate."
            .to_string(),
    }
}

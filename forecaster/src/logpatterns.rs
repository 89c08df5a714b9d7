//! Log records → templates, per-template line counts and new-pattern signals.
//!
//! Every record of an OTLP logs export is mined into a template of its service (the stream's
//! `service_name` label, else `job`, else `unknown`) by one bounded [`PatternMiner`]. What comes
//! out:
//!
//! - **Line counts** as the series [`LINES_METRIC`]`{service,template_id,severity}` (plus the
//!   stream's `host_name`, `k8s_namespace_name` and `k8s_pod_name` when it has them): a gauge
//!   whose value in each model step is the number of lines of that template and severity in the
//!   step. A request writes, per series and step, the count so far; the store keeps the last
//!   value of a step, so the step ends with its full count whatever the batching. Steps skipped
//!   between two lines of a template are written as 0 (up to [`MAX_ZERO_FILL`] steps), so a
//!   quiet template reads as quiet rather than as missing data. The series go through the
//!   store like any other and get the same baselines and anomaly scores.
//! - **New-pattern signals**: a template created by a WARN-or-worse line once the service has
//!   been seen for `logs.warmup` of event time is sent to alerting as a
//!   [`SignalBody::LogPattern`] with `new: true`, on the stream's labels plus `service` and
//!   `template_id`.
//!
//! Memory is bounded by `logs.max_templates`: per-series step state lives under its template
//! and goes when the miner evicts the template. Services tracked for the warm-up are bounded by
//! the same number.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;
use presage_alerting::{LabelSet, Signal, SignalBody};
use presage_config::ForecasterConfig;

use crate::ingest::WriteBatch;
use crate::ingest::{Labels, LogStreamWrite, METRIC_NAME_LABEL, Point, SeriesWrite, ValueKind};
use crate::model::logpattern::{MinerConfig, PatternMiner, Severity, TemplateId, TemplateInfo};

/// Name of the per-template line count series.
pub const LINES_METRIC: &str = "presage_log_pattern_lines";
/// Most empty steps written between two lines of a template (a day at the default step).
pub const MAX_ZERO_FILL: i64 = 1_440;
/// Stream labels copied onto the count series, besides `service`.
const PLACEMENT_LABELS: [&str; 3] = ["host_name", "k8s_namespace_name", "k8s_pod_name"];
/// Service name of records whose stream names none.
pub const UNKNOWN_SERVICE: &str = "unknown";

/// Step state of one count series.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
struct StepState {
    /// The newest step written.
    slot_ms: i64,
    /// Lines counted in that step so far.
    count: u64,
    /// Timestamp of the newest point written (the store needs them increasing).
    last_ts: i64,
}

/// A count series of a template: its severity and placement labels.
type SeriesKey = (Severity, Labels);

#[derive(serde::Serialize, serde::Deserialize)]
struct Inner {
    miner: PatternMiner,
    /// Event time a service was first seen (ms).
    services: HashMap<String, i64>,
    /// Step state of the count series, by template.
    steps: HashMap<TemplateId, HashMap<SeriesKey, StepState>>,
    /// New-pattern signals produced.
    new_patterns: u64,
}

/// Templates of every service, and the series and signals made from them.
pub struct LogPatterns {
    inner: Mutex<Inner>,
    step_ms: i64,
    warmup_ms: i64,
    max_services: usize,
    export_limit: usize,
}

/// What one logs export produced.
#[derive(Debug, Default)]
pub struct Mined {
    /// Count points for the store.
    pub batch: WriteBatch,
    /// New-pattern signals for alerting.
    pub signals: Vec<Signal>,
}

/// Lines of one series and step within a request: count and newest timestamp.
type StepLines = BTreeMap<i64, (u64, i64)>;

impl LogPatterns {
    /// Mining as `config.logs` says, counting at `config.model.step`.
    pub fn new(config: &ForecasterConfig) -> Self {
        let logs = &config.logs;
        let miner = PatternMiner::new(MinerConfig {
            max_templates: logs.max_templates,
            similarity: logs.similarity,
            ..MinerConfig::default()
        });
        Self {
            inner: Mutex::new(Inner {
                miner,
                services: HashMap::new(),
                steps: HashMap::new(),
                new_patterns: 0,
            }),
            step_ms: i64::try_from(config.model.step.as_millis())
                .unwrap_or(60_000)
                .max(1),
            warmup_ms: i64::try_from(logs.warmup.as_millis()).unwrap_or(i64::MAX),
            max_services: logs.max_templates.max(1),
            export_limit: logs.export_limit,
        }
    }

    /// Templates, services and count-series state, encoded for a checkpoint.
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&*self.inner.lock()).unwrap_or_default()
    }

    /// Puts back what [`LogPatterns::snapshot`] saved, under the miner settings in effect, so
    /// that a restart does not report every known template as new.
    pub fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        let mut restored: Inner = postcard::from_bytes(bytes).map_err(|e| e.to_string())?;
        let mut inner = self.inner.lock();
        restored.miner.reconfigure(*inner.miner.config());
        *inner = restored;
        Ok(())
    }

    /// Mines the records of one export (in order) and returns the count points to store and
    /// the new-pattern signals to send.
    pub fn observe(&self, streams: &[LogStreamWrite]) -> Mined {
        let mut out = Mined::default();
        let mut lines: HashMap<(TemplateId, SeriesKey), StepLines> = HashMap::new();
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        for stream in streams {
            let service = service_of(&stream.labels);
            let placement: Labels = stream
                .labels
                .iter()
                .filter(|(n, _)| PLACEMENT_LABELS.contains(&n.as_str()))
                .cloned()
                .collect();
            for record in &stream.records {
                let severity = Severity::from_otlp(record.severity_number, &record.severity);
                let obs = inner
                    .miner
                    .observe(service, severity, &record.body, record.ts_ms);
                if let Some(gone) = obs.evicted {
                    inner.steps.remove(&gone);
                    lines.retain(|(id, _), _| *id != gone);
                }
                let tracked = inner.services.len();
                let first_seen = match inner.services.get_mut(service) {
                    Some(t) => {
                        *t = (*t).min(record.ts_ms);
                        Some(*t)
                    }
                    None if tracked < self.max_services => {
                        inner.services.insert(service.to_string(), record.ts_ms);
                        Some(record.ts_ms)
                    }
                    // Too many services to track: their patterns are never new.
                    None => None,
                };
                let warm =
                    first_seen.is_some_and(|t| record.ts_ms.saturating_sub(t) >= self.warmup_ms);
                if obs.is_new && warm && severity >= Severity::Warn {
                    inner.new_patterns += 1;
                    let samples = inner
                        .miner
                        .get(obs.template_id)
                        .map(|t| t.samples.into_iter().map(|s| s.line).collect())
                        .unwrap_or_default();
                    let mut series: LabelSet = stream.labels.iter().cloned().collect();
                    series.insert("service".into(), service.to_string());
                    series.insert("template_id".into(), obs.template_id.to_string());
                    out.signals.push(Signal {
                        at_ms: record.ts_ms,
                        series: Arc::new(series),
                        body: SignalBody::LogPattern {
                            service: service.to_string(),
                            template_id: obs.template_id.to_string(),
                            template: obs.template.to_string(),
                            severity: severity.as_str().to_string(),
                            first_seen_ms: record.ts_ms,
                            samples,
                            new: true,
                            rate_score: 0.0,
                        },
                    });
                }
                let slot = record.ts_ms.div_euclid(self.step_ms) * self.step_ms;
                let step = lines
                    .entry((obs.template_id, (severity, placement.clone())))
                    .or_default()
                    .entry(slot)
                    .or_insert((0, i64::MIN));
                step.0 += 1;
                step.1 = step.1.max(record.ts_ms);
            }
        }
        for ((id, key), steps) in lines {
            let Some(info) = inner.miner.get(id) else {
                continue;
            };
            let state = inner
                .steps
                .entry(id)
                .or_default()
                .entry(key.clone())
                .or_insert(StepState {
                    slot_ms: i64::MIN,
                    count: 0,
                    last_ts: i64::MIN,
                });
            let points = self.points(state, &steps);
            if points.is_empty() {
                continue;
            }
            let mut labels: Labels = vec![
                (METRIC_NAME_LABEL.into(), LINES_METRIC.into()),
                ("service".into(), info.service.to_string()),
                ("template_id".into(), id.to_string()),
                ("severity".into(), key.0.as_str().into()),
            ];
            labels.extend(key.1);
            out.batch.series.push(SeriesWrite {
                labels,
                kind: ValueKind::Gauge,
                points,
            });
        }
        out
    }

    /// Gauge points for one series: the count so far of each step the request touched, zeros
    /// for the steps skipped since the last one written. Lines of a step older than the newest
    /// one written are only counted by the miner.
    fn points(&self, state: &mut StepState, steps: &StepLines) -> Vec<Point> {
        let mut points = Vec::new();
        for (&slot, &(n, newest)) in steps {
            if slot < state.slot_ms {
                continue;
            }
            if slot > state.slot_ms {
                if state.slot_ms != i64::MIN {
                    let gap = (slot - state.slot_ms) / self.step_ms - 1;
                    if gap <= MAX_ZERO_FILL {
                        for i in 1..=gap {
                            let ts = state.slot_ms + i * self.step_ms;
                            points.push(Point::new(ts, 0.0));
                            state.last_ts = ts;
                        }
                    }
                }
                state.slot_ms = slot;
                state.count = 0;
            }
            state.count += n;
            // Strictly after the previous point, inside the step.
            let ts = newest
                .max(state.last_ts.saturating_add(1))
                .min(slot + self.step_ms - 1);
            if ts > state.last_ts {
                points.push(Point::new(ts, state.count as f64));
                state.last_ts = ts;
            }
        }
        points
    }

    /// Log-pattern signals for the scored steps of line count series among `steps`: the
    /// template's rate, scored by its baseline like any series. `rate_score` is the step's
    /// score when the rate is above the band of a ready model persistently (3 of the last 5
    /// steps), 0 otherwise (a template going quiet is not an error; one busy step is not an
    /// incident); conditions then clear as the count returns into its band. Steps of templates the
    /// miner no longer has are skipped.
    pub fn rate_signals(&self, steps: &[Signal]) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut inner = None;
        for s in steps {
            let SignalBody::Step {
                score,
                direction,
                persistent,
                model,
                ..
            } = &s.body
            else {
                continue;
            };
            if s.series.get(METRIC_NAME_LABEL).map(String::as_str) != Some(LINES_METRIC) {
                continue;
            }
            let (Some(id), Some(severity)) = (
                s.series
                    .get("template_id")
                    .and_then(|t| t.parse::<TemplateId>().ok()),
                s.series.get("severity"),
            ) else {
                continue;
            };
            let inner = inner.get_or_insert_with(|| self.inner.lock());
            let Some(info) = inner.miner.get(id) else {
                continue;
            };
            let mut series = (*s.series).clone();
            series.remove(METRIC_NAME_LABEL);
            out.push(Signal {
                at_ms: s.at_ms,
                series: Arc::new(series),
                body: SignalBody::LogPattern {
                    service: info.service.to_string(),
                    template_id: id.to_string(),
                    template: info.template.to_string(),
                    severity: severity.clone(),
                    first_seen_ms: info.first_seen_ms,
                    samples: info.samples.into_iter().map(|x| x.line).collect(),
                    new: false,
                    rate_score: if *direction > 0 && *persistent && model.readiness == "ready" {
                        *score
                    } else {
                        0.0
                    },
                },
            });
        }
        out
    }

    /// Templates of `service` (all services when `None`), the busiest first, at most `limit`.
    pub fn templates(&self, service: Option<&str>, limit: usize) -> Vec<TemplateInfo> {
        let inner = self.inner.lock();
        let mut out: Vec<TemplateInfo> = inner
            .miner
            .templates()
            .filter(|t| service.is_none_or(|s| &*t.service == s))
            .collect();
        drop(inner);
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.first_seen_ms.cmp(&b.first_seen_ms))
                .then_with(|| a.id.cmp(&b.id))
        });
        out.truncate(limit);
        out
    }

    /// Templates alive.
    pub fn template_count(&self) -> usize {
        self.inner.lock().miner.len()
    }

    /// `/metrics` text: `presage_log_pattern_lines_total{service,template_id,severity}` for the
    /// `logs.export_limit` busiest templates, `presage_log_templates`,
    /// `presage_log_template_evictions_total`, `presage_log_new_patterns_total` and
    /// `presage_log_templates_memory_bytes`.
    pub fn render_metrics(&self) -> String {
        let inner = self.inner.lock();
        let (live, evictions, new_patterns, memory) = (
            inner.miner.len(),
            inner.miner.evictions(),
            inner.new_patterns,
            inner.miner.memory_bytes(),
        );
        drop(inner);
        let busiest = self.templates(None, self.export_limit);
        let mut out = String::with_capacity(512 + busiest.len() * 160);
        let _ = writeln!(
            out,
            "# HELP presage_log_pattern_lines_total Log lines per template and severity (the busiest templates, up to logs.export_limit)."
        );
        let _ = writeln!(out, "# TYPE presage_log_pattern_lines_total counter");
        for t in &busiest {
            for severity in Severity::ALL {
                let n = t.counts.get(severity);
                if n == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "presage_log_pattern_lines_total{{service=\"{}\",template_id=\"{}\",severity=\"{}\"}} {n}",
                    escape(&t.service),
                    t.id,
                    severity.as_str()
                );
            }
        }
        for (name, kind, help, v) in [
            (
                "presage_log_templates",
                "gauge",
                "Log templates held (at most logs.max_templates).",
                live as u64,
            ),
            (
                "presage_log_template_evictions_total",
                "counter",
                "Log templates evicted, least recently seen first, to stay within logs.max_templates.",
                evictions,
            ),
            (
                "presage_log_new_patterns_total",
                "counter",
                "Templates first seen at WARN or above after their service's warm-up.",
                new_patterns,
            ),
            (
                "presage_log_templates_memory_bytes",
                "gauge",
                "Approximate memory held by the log template miner.",
                memory as u64,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {v}");
        }
        out
    }
}

/// The service a stream's records are mined under.
pub fn service_of(labels: &Labels) -> &str {
    let find = |name: &str| {
        labels
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    find("service_name")
        .or_else(|| find("job"))
        .unwrap_or(UNKNOWN_SERVICE)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::LogRecord;

    fn stream(service: &str, records: &[(i64, &str, &str)]) -> LogStreamWrite {
        LogStreamWrite {
            labels: vec![
                ("host_name".into(), "web-1".into()),
                ("service_name".into(), service.into()),
            ],
            records: records
                .iter()
                .map(|&(ts_ms, severity, body)| LogRecord {
                    ts_ms,
                    severity: severity.into(),
                    severity_number: 0,
                    body: body.into(),
                    attributes: vec![],
                })
                .collect(),
        }
    }

    fn patterns(warmup_s: u64) -> LogPatterns {
        let mut cfg = ForecasterConfig::default();
        cfg.logs.warmup = std::time::Duration::from_secs(warmup_s);
        LogPatterns::new(&cfg)
    }

    fn points(m: &Mined) -> Vec<(i64, f64)> {
        m.batch
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| (p.ts_ms, p.value)))
            .collect()
    }

    #[test]
    fn counts_per_step_accumulate_across_requests_and_gaps_read_zero() {
        let lp = patterns(600);
        let m = lp.observe(&[stream(
            "api",
            &[
                (1_000, "INFO", "GET /a took 5ms"),
                (2_000, "INFO", "GET /a took 7ms"),
            ],
        )]);
        assert_eq!(points(&m), vec![(2_000, 2.0)]);
        let labels = &m.batch.series[0].labels;
        for (n, v) in [
            ("__name__", LINES_METRIC),
            ("service", "api"),
            ("severity", "info"),
            ("host_name", "web-1"),
        ] {
            assert!(labels.contains(&(n.into(), v.into())), "{labels:?}");
        }
        // Same step, a later request: the step's count so far, at a later timestamp.
        let m = lp.observe(&[stream("api", &[(2_000, "INFO", "GET /a took 9ms")])]);
        assert_eq!(points(&m), vec![(2_001, 3.0)]);
        // Three steps later: two empty steps, then the new step.
        let m = lp.observe(&[stream("api", &[(190_000, "INFO", "GET /a took 1ms")])]);
        assert_eq!(
            points(&m),
            vec![(60_000, 0.0), (120_000, 0.0), (190_000, 1.0)]
        );
        // A late line of an older step is only counted by the miner.
        let m = lp.observe(&[stream("api", &[(10_000, "INFO", "GET /a took 2ms")])]);
        assert!(points(&m).is_empty());
        assert_eq!(lp.templates(Some("api"), 10)[0].count, 5);
        assert!(lp.templates(Some("other"), 10).is_empty());
    }

    #[test]
    fn new_warn_patterns_signal_only_after_warmup() {
        let lp = patterns(60);
        let m = lp.observe(&[stream(
            "api",
            &[
                (0, "INFO", "started"),
                (1_000, "ERROR", "disk full on /dev/sda1"),
            ],
        )]);
        assert!(m.signals.is_empty(), "still warming up");
        let m = lp.observe(&[stream(
            "api",
            &[
                (61_000, "ERROR", "disk full on /dev/sdb1"),
                (62_000, "INFO", "cache warmed in 35ms"),
                (63_000, "WARN", "connection to 10.0.0.7:5432 refused"),
            ],
        )]);
        assert_eq!(m.signals.len(), 1, "{:?}", m.signals);
        let s = &m.signals[0];
        assert_eq!(s.at_ms, 63_000);
        assert_eq!(s.series.get("service").map(String::as_str), Some("api"));
        assert_eq!(s.series.get("host_name").map(String::as_str), Some("web-1"));
        match &s.body {
            SignalBody::LogPattern {
                template,
                severity,
                samples,
                new,
                first_seen_ms,
                ..
            } => {
                assert_eq!(template, "connection to <IP> refused");
                assert_eq!(severity, "warn");
                assert_eq!(
                    samples,
                    &vec!["connection to 10.0.0.7:5432 refused".to_string()]
                );
                assert!(*new);
                assert_eq!(*first_seen_ms, 63_000);
            }
            other => panic!("unexpected {other:?}"),
        }
        // The same pattern again is not new.
        let m = lp.observe(&[stream(
            "api",
            &[(64_000, "WARN", "connection to 10.0.0.9:5432 refused")],
        )]);
        assert!(m.signals.is_empty());
        let text = lp.render_metrics();
        assert!(text.contains("presage_log_new_patterns_total 1"), "{text}");
        assert!(text.contains("severity=\"warn\"} 2"), "{text}");
    }

    #[test]
    fn evicted_templates_drop_their_series_state() {
        let mut cfg = ForecasterConfig::default();
        cfg.logs.max_templates = 2;
        let lp = LogPatterns::new(&cfg);
        for (i, body) in ["alpha one", "beta two three", "gamma four five six"]
            .iter()
            .enumerate()
        {
            lp.observe(&[stream("api", &[(i as i64 * 1_000, "INFO", body)])]);
        }
        assert_eq!(lp.template_count(), 2);
        assert_eq!(lp.inner.lock().steps.len(), 2);
        assert!(
            lp.render_metrics()
                .contains("presage_log_template_evictions_total 1")
        );
    }

    #[test]
    fn service_falls_back_to_job_then_unknown() {
        let job = vec![("job".to_string(), "ns/api".to_string())];
        assert_eq!(service_of(&job), "ns/api");
        assert_eq!(service_of(&vec![]), UNKNOWN_SERVICE);
    }
}

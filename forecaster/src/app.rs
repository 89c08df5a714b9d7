//! Shared daemon state and the ingest operations every front end calls.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use parking_lot::Mutex;
use presage_alerting::{AlertingHandle, Band, ChartData, LabelSet, ModelContext};
use presage_config::ForecasterConfig;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::detect::StepScore;
use crate::ingest::otlp::OtlpTranslator;
use crate::ingest::remote_write::{self, CounterFamilies};
use crate::ingest::{RejectReason, WriteBatch};
use crate::logpatterns::LogPatterns;
use crate::signals::SignalSource;
use crate::store::logs::LogBuffer;
use crate::store::{CheckpointStats, Durable, FitJob, RestoreStats, SeriesId, Store, WriteOutcome};
use crate::telemetry::{Protocol, Telemetry};

/// The daemon's clock: the wall clock, or a fixed instant in tests. Only used to bound
/// timestamps and for scheduling, never to place data in time.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// `SystemTime::now()`.
    #[default]
    System,
    /// Always this many milliseconds since the epoch.
    Fixed(i64),
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Clock::Fixed(ms) => *ms,
        }
    }
}

/// Result of a log export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogsOutcome {
    /// Records buffered.
    pub accepted: u64,
    /// Records refused.
    pub rejected: u64,
    /// Why, for the client.
    pub message: Option<String>,
    /// The journal position of the line counts this export produced (see
    /// [`WriteOutcome::journal_pos`]).
    pub journal_pos: u64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Anomalies kept for `/api/v1/anomalies`.
const ANOMALY_LOG: usize = 10_000;
/// Scores at or above this are recorded as anomalies.
pub const ANOMALY_SCORE: f64 = 0.5;

/// A scored step that stood out.
#[derive(Debug, Clone, Serialize)]
pub struct Anomaly {
    /// The series' labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The series id (hex).
    pub series_id: String,
    /// The step and its score.
    #[serde(flatten)]
    pub step: StepScore,
}

/// Everything the listeners share.
pub struct App {
    /// The configuration the daemon runs with.
    pub config: ForecasterConfig,
    /// Series and history.
    pub store: Store,
    /// Recent log records.
    pub logs: LogBuffer,
    /// Log templates per service, their line counts and new-pattern signals.
    pub log_patterns: LogPatterns,
    /// Self-metrics.
    pub telemetry: Telemetry,
    /// OTLP translation state.
    pub otlp: OtlpTranslator,
    /// Counter families learned from remote_write metadata.
    pub counter_families: CounterFamilies,
    /// The clock.
    pub clock: Clock,
    ready: AtomicBool,
    fit_tx: mpsc::UnboundedSender<FitJob>,
    export: Vec<crate::store::Selector>,
    breach_rules: Vec<(presage_config::RuleConfig, crate::store::Selector)>,
    fit_rx: Mutex<Option<mpsc::UnboundedReceiver<FitJob>>>,
    anomalies: Mutex<VecDeque<Anomaly>>,
    /// The signal stream for alerting.
    pub signals: SignalSource,
    alerting: OnceLock<AlertingHandle>,
    /// Event time: the newest scored step (ms), watched by the rule evaluator.
    event_time: watch::Sender<i64>,
    /// The store on disk, when `storage.durable`.
    durable: Option<Durable>,
    /// Serialises checkpoints (the periodic one and the one at shutdown).
    checkpointing: Mutex<()>,
    store_metrics: Mutex<StoreMetrics>,
}

/// What the durable store did, for `/metrics`.
#[derive(Debug, Default)]
struct StoreMetrics {
    restore: RestoreStats,
    restore_seconds: f64,
    checkpoints_ok: u64,
    checkpoints_failed: u64,
    checkpoint_bytes: u64,
    last_checkpoint_seconds: f64,
    last_checkpoint_unix: f64,
    disk_bytes: u64,
}

/// Key of the log miner's state in the store's `meta` keyspace.
const LOG_PATTERNS_KEY: &str = "log_patterns";

impl App {
    /// Builds the state for `config`, in memory only (whatever `storage.durable` says).
    pub fn new(config: ForecasterConfig, clock: Clock) -> Arc<Self> {
        Self::build(config, clock, None)
    }

    /// Builds the state for `config` and, with `storage.durable`, opens the store in
    /// `storage.dir`/db and loads what it holds: series, history, models and log templates as
    /// the last checkpoint left them, then the journal after it. Fits that were running are
    /// queued again; nothing else is refitted.
    pub fn open(config: ForecasterConfig, clock: Clock) -> anyhow::Result<Arc<Self>> {
        use anyhow::Context as _;
        if !config.storage.durable {
            return Ok(Self::new(config, clock));
        }
        let path = config.storage.dir.join("db");
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create the store directory {}", path.display()))?;
        let step_ms = i64::try_from(config.model.step.as_millis()).unwrap_or(60_000);
        let started = std::time::Instant::now();
        let durable = Durable::open(
            &path,
            step_ms,
            config.storage.fsync,
            config.storage.fsync_interval,
        )?;
        let app = Self::build(config, clock, Some(durable));
        let stats = app.restore()?;
        app.store_metrics.lock().restore_seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            series = stats.series,
            models = stats.models,
            journal_entries = stats.journal_entries,
            journal_points = stats.journal_points,
            seconds = started.elapsed().as_secs_f64(),
            path = %path.display(),
            "store loaded"
        );
        if stats.journal_errors > 0 {
            tracing::error!(
                entries = stats.journal_errors,
                "unreadable journal entries were skipped"
            );
        }
        Ok(app)
    }

    fn restore(&self) -> anyhow::Result<RestoreStats> {
        let Some(db) = &self.durable else {
            return Ok(RestoreStats::default());
        };
        if let Some(bytes) = db.meta.get(LOG_PATTERNS_KEY)?
            && let Err(e) = self.log_patterns.restore(&bytes)
        {
            tracing::error!(error = %e, "saved log templates unreadable; mining starts afresh");
        }
        let (stats, mut out) = self.store.restore(db, self.clock.now_ms())?;
        self.after(&mut out);
        self.store_metrics.lock().restore = stats;
        Ok(stats)
    }

    /// Writes a checkpoint (blocking: call it off the async threads). `None` without a
    /// durable store.
    pub fn checkpoint(&self) -> anyhow::Result<Option<CheckpointStats>> {
        let Some(db) = &self.durable else {
            return Ok(None);
        };
        let _one_at_a_time = self.checkpointing.lock();
        let started = std::time::Instant::now();
        let patterns = self.log_patterns.snapshot();
        let result = self.store.checkpoint(db, &[(LOG_PATTERNS_KEY, patterns)]);
        let seconds = started.elapsed().as_secs_f64();
        let mut m = self.store_metrics.lock();
        m.disk_bytes = db.disk_bytes();
        let stats = match result {
            Ok(stats) => stats,
            Err(e) => {
                m.checkpoints_failed += 1;
                return Err(e.into());
            }
        };
        m.checkpoints_ok += 1;
        m.checkpoint_bytes += stats.bytes;
        m.last_checkpoint_seconds = seconds;
        m.last_checkpoint_unix = self.clock.now_ms() as f64 / 1000.0;
        drop(m);
        tracing::debug!(
            series = stats.series,
            chunks = stats.chunks,
            models = stats.models,
            bytes = stats.bytes,
            seconds,
            "checkpoint written"
        );
        Ok(Some(stats))
    }

    /// Journal bytes written since the last checkpoint (0 without a durable store).
    pub fn journal_backlog(&self) -> u64 {
        self.durable.as_ref().map_or(0, Durable::journal_backlog)
    }

    /// A last checkpoint, then the store is closed. Writes after it are not journaled.
    pub fn close_store(&self) -> anyhow::Result<()> {
        if self.durable.is_some() {
            self.checkpoint()?;
        }
        if let Some(db) = &self.durable {
            db.close();
        }
        Ok(())
    }

    /// Resolves once the write that produced `out` is durable under `storage.fsync` (at once
    /// without a durable store). An error means it may not be: answer the client with a
    /// retryable error.
    pub async fn durable(&self, out: &WriteOutcome) -> Result<(), String> {
        self.durable_at(out.journal_pos).await
    }

    /// Resolves once the journal is durable up to `pos` (a write's `journal_pos`; 0: nothing
    /// was journaled).
    pub async fn durable_at(&self, pos: u64) -> Result<(), String> {
        match &self.durable {
            Some(db) if pos > 0 => db.wait_committed(pos).await,
            _ => Ok(()),
        }
    }

    fn build(config: ForecasterConfig, clock: Clock, durable: Option<Durable>) -> Arc<Self> {
        let mut store = Store::new(&config);
        if let Some(db) = &durable {
            store = store.with_durable(db);
        }
        let logs = LogBuffer::new(
            config.limits.max_log_streams,
            config.limits.log_records_per_stream,
        );
        let telemetry = Telemetry::new(config.limits.max_series);
        let otlp = OtlpTranslator::new(
            &config.ingest.promote_resource_attributes,
            config.limits.max_series,
        );
        // Unbounded in type only: a series has at most one fit in flight, so the queue never
        // holds more jobs than `limits.max_series`.
        let (fit_tx, fit_rx) = mpsc::unbounded_channel();
        let export = config
            .model
            .export_match
            .iter()
            .filter_map(|text| match crate::store::Selector::parse(text) {
                Ok(sel) => Some(sel),
                Err(e) => {
                    tracing::warn!(%e, "model.export_match entry ignored");
                    None
                }
            })
            .collect();
        // The rules in effect: the configured ones and the built-in ones they do not replace.
        let rules = presage_alerting::effective_rules(&config);
        let step_ms = i64::try_from(config.model.step.as_millis()).unwrap_or(60_000);
        let refit_ms = i64::try_from(config.model.refit_every.as_millis()).unwrap_or(3_600_000);
        let signals = SignalSource::new(&rules, step_ms.max(1), refit_ms.max(1));
        let breach_rules = rules
            .iter()
            .filter(|r| r.kind == presage_config::RuleKind::Breach)
            .filter_map(|r| match crate::store::Selector::parse(&r.select) {
                Ok(sel) => Some((r.clone(), sel)),
                Err(e) => {
                    tracing::warn!(rule = %r.name, %e, "rule ignored");
                    None
                }
            })
            .collect();
        Arc::new(Self {
            signals,
            alerting: OnceLock::new(),
            event_time: watch::channel(i64::MIN).0,
            breach_rules,
            export,
            fit_tx,
            fit_rx: Mutex::new(Some(fit_rx)),
            anomalies: Mutex::new(VecDeque::new()),
            counter_families: CounterFamilies::new(config.limits.max_series),
            store,
            logs,
            log_patterns: LogPatterns::new(&config),
            telemetry,
            otlp,
            clock,
            config,
            ready: AtomicBool::new(false),
            durable,
            checkpointing: Mutex::new(()),
            store_metrics: Mutex::new(StoreMetrics::default()),
        })
    }

    /// Whether the daemon serves (all listeners bound, state loaded).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Takes the receiving end of the fit queue (once: the server's fit pool owns it).
    pub fn take_fit_queue(&self) -> Option<mpsc::UnboundedReceiver<FitJob>> {
        self.fit_rx.lock().take()
    }

    /// Hands on what a write or a fit produced: fits to the pool, notable scores to the log,
    /// signals to alerting, and the newest scored step to the rule evaluator.
    pub fn after(&self, out: &mut WriteOutcome) {
        for job in out.fit_jobs.drain(..) {
            self.telemetry.fit_queued();
            if self.fit_tx.send(job).is_err() {
                tracing::debug!("fit queue closed; the daemon is stopping");
            }
        }
        self.record_scores(&out.scores);
        if out.scores.is_empty() {
            return;
        }
        if let Some(handle) = self.alerting.get() {
            let mut steps = self.signals.steps(&self.store, &out.scores);
            let rates = self.log_patterns.rate_signals(&steps);
            steps.extend(rates);
            if !steps.is_empty() {
                // Never block ingest on alerting: a full queue drops the batch and counts it.
                handle.try_send(steps);
            }
        }
        if let Some(newest) = out.scores.iter().map(|(_, s)| s.slot_ms).max() {
            self.advance_event_time(newest);
        }
    }

    /// Moves event time forward to `newest` (never back): the rule evaluator follows it.
    fn advance_event_time(&self, newest: i64) {
        self.event_time.send_if_modified(|t| {
            let advanced = newest > *t;
            if advanced {
                *t = newest;
            }
            advanced
        });
    }

    /// Connects the alerting service (once, at start-up).
    pub fn attach_alerting(&self, handle: AlertingHandle) {
        if self.alerting.set(handle).is_err() {
            tracing::warn!("alerting was already attached");
        }
    }

    /// The alerting service, when the daemon runs one.
    pub fn alerting(&self) -> Option<&AlertingHandle> {
        self.alerting.get()
    }

    /// Follows event time (the newest scored step).
    pub fn watch_event_time(&self) -> watch::Receiver<i64> {
        self.event_time.subscribe()
    }

    fn record_scores(&self, scores: &[(SeriesId, StepScore)]) {
        let notable: Vec<&(SeriesId, StepScore)> = scores
            .iter()
            .filter(|(_, s)| s.score >= ANOMALY_SCORE)
            .collect();
        self.telemetry.record_scores(scores.len(), notable.len());
        if notable.is_empty() {
            return;
        }
        let mut log = self.anomalies.lock();
        for (id, step) in notable {
            let labels = self.store.labels_of(*id).unwrap_or_default();
            if log.len() >= ANOMALY_LOG {
                log.pop_front();
            }
            log.push_back(Anomaly {
                labels,
                series_id: format!("{id:016x}"),
                step: *step,
            });
        }
    }

    /// Recorded anomalies with a step at or after `since_ms` and a score at or above
    /// `min_score`, oldest first, at most `limit` (the newest).
    pub fn anomalies(&self, since_ms: i64, min_score: f64, limit: usize) -> Vec<Anomaly> {
        let log = self.anomalies.lock();
        let mut out: Vec<Anomaly> = log
            .iter()
            .filter(|a| a.step.slot_ms >= since_ms && a.step.score >= min_score)
            .cloned()
            .collect();
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        out
    }

    /// The model's series for `/metrics`: `<metric>:predicted{…,ml_forecast="yhat|yhat_lower|
    /// yhat_upper"}`, `<metric>:anomalous{…}` (1 above the band, -1 below, 0 inside) and
    /// `presage_anomaly_score{metric="<metric>",…}`, for the series `model.export_match` selects.
    pub fn render_model_metrics(&self) -> String {
        use std::fmt::Write as _;
        let rows = self
            .store
            .latest_scores(&self.export, self.config.model.export_limit);
        let mut out = String::with_capacity(rows.len() * 256);
        self.render_store_metrics(&mut out);
        self.render_breach_etas(&mut out);
        if rows.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "# HELP presage_anomaly_score Latest calibrated anomaly score of the series, 0 to 1."
        );
        let _ = writeln!(out, "# TYPE presage_anomaly_score gauge");
        let mut rest = String::new();
        for (labels, s) in &rows {
            let name = labels
                .iter()
                .find(|(n, _)| n == crate::ingest::METRIC_NAME_LABEL)
                .map_or("", |(_, v)| v.as_str());
            let others: Vec<String> = labels
                .iter()
                .filter(|(n, _)| n != crate::ingest::METRIC_NAME_LABEL)
                .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
                .collect();
            let joined = others.join(",");
            let sep = if joined.is_empty() { "" } else { "," };
            let _ = writeln!(
                out,
                "presage_anomaly_score{{metric=\"{}\"{sep}{joined}}} {}",
                escape(name),
                s.score
            );
            for (kind, v) in [
                ("yhat", s.expected),
                ("yhat_lower", s.lower),
                ("yhat_upper", s.upper),
            ] {
                let _ = writeln!(
                    rest,
                    "{name}:predicted{{{joined}{sep}ml_forecast=\"{kind}\"}} {v}"
                );
            }
            let _ = writeln!(rest, "{name}:anomalous{{{joined}}} {}", s.direction);
        }
        out.push_str(&rest);
        out
    }

    /// Breach forecasts of the configured breach rules, as seen at each series' newest step:
    /// `presage_breach_eta_seconds{rule,quantile="0.1|0.5|0.9",…}`, only for series predicted to
    /// cross within the rule's horizon.
    pub fn breach_etas(&self) -> Vec<(String, crate::ingest::Labels, crate::model::BreachEta)> {
        let mut out = Vec::new();
        for (rule, sel) in &self.breach_rules {
            let direction = match rule.direction {
                presage_config::Direction::Above => crate::model::ThresholdDirection::Above,
                presage_config::Direction::Below => crate::model::ThresholdDirection::Below,
            };
            for (labels, score, trend) in self.store.trends(sel, self.config.model.export_limit) {
                let Some(threshold) = rule.threshold else {
                    continue;
                };
                let eta = trend.eta(
                    threshold,
                    direction,
                    score.slot_ms,
                    score.value,
                    rule.horizon_or_default().as_secs_f64(),
                );
                if let Some(eta) = eta {
                    out.push((rule.name.clone(), labels, eta));
                }
            }
        }
        out
    }

    fn render_breach_etas(&self, out: &mut String) {
        use std::fmt::Write as _;
        let etas = self.breach_etas();
        if etas.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP presage_breach_eta_seconds Forecast time until the series crosses the rule's threshold."
        );
        let _ = writeln!(out, "# TYPE presage_breach_eta_seconds gauge");
        for (rule, labels, eta) in etas {
            let others: String = labels
                .iter()
                .filter(|(n, _)| n != "rule" && n != "quantile")
                .map(|(n, v)| {
                    let n = if n == crate::ingest::METRIC_NAME_LABEL {
                        "metric"
                    } else {
                        n
                    };
                    format!(",{n}=\"{}\"", escape(v))
                })
                .collect();
            for (q, v) in [
                ("0.1", eta.p10_seconds),
                ("0.5", eta.p50_seconds),
                ("0.9", eta.p90_seconds),
            ] {
                let _ = writeln!(
                    out,
                    "presage_breach_eta_seconds{{rule=\"{}\",quantile=\"{q}\"{others}}} {v}",
                    escape(&rule)
                );
            }
        }
    }

    /// The durable store's figures, in Prometheus text format (empty without one).
    fn render_store_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        if self.durable.is_none() {
            return;
        }
        let m = self.store_metrics.lock();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(&str, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        family(
            "presage_store_checkpoints_total",
            "counter",
            "Checkpoints written to the durable store, by result.",
            &[
                ("{result=\"ok\"}", m.checkpoints_ok as f64),
                ("{result=\"error\"}", m.checkpoints_failed as f64),
            ],
        );
        family(
            "presage_store_checkpoint_bytes_total",
            "counter",
            "Bytes of series state written by checkpoints.",
            &[("", m.checkpoint_bytes as f64)],
        );
        family(
            "presage_store_last_checkpoint_seconds",
            "gauge",
            "How long the last checkpoint took.",
            &[("", m.last_checkpoint_seconds)],
        );
        family(
            "presage_store_last_checkpoint_timestamp_seconds",
            "gauge",
            "When the last checkpoint finished (Unix time).",
            &[("", m.last_checkpoint_unix)],
        );
        family(
            "presage_store_disk_bytes",
            "gauge",
            "Bytes the durable store uses on disk, as of the last checkpoint.",
            &[("", m.disk_bytes as f64)],
        );
        family(
            "presage_store_restore_seconds",
            "gauge",
            "How long loading the store took at start-up.",
            &[("", m.restore_seconds)],
        );
        family(
            "presage_store_restored",
            "gauge",
            "What start-up loaded: series and baselines from the checkpoint, points replayed from the journal.",
            &[
                ("{what=\"series\"}", m.restore.series as f64),
                ("{what=\"models\"}", m.restore.models as f64),
                ("{what=\"journal_points\"}", m.restore.journal_points as f64),
            ],
        );
    }

    /// The alerting service's counters, in Prometheus text format (empty without a service).
    pub fn render_alerting_metrics(&self) -> String {
        use std::fmt::Write as _;
        let Some(h) = self.alerting.get() else {
            return String::new();
        };
        let st = h.stats();
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str, rows: &[(String, f64)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        family(
            "presage_alerts",
            "gauge",
            "Alerts by state; silenced and inhibited count firing alerts that are muted.",
            &[
                ("{state=\"pending\"}".into(), st.alerts_pending as f64),
                ("{state=\"firing\"}".into(), st.alerts_firing as f64),
                ("{state=\"resolved\"}".into(), st.alerts_resolved as f64),
                ("{state=\"silenced\"}".into(), st.alerts_silenced as f64),
                ("{state=\"inhibited\"}".into(), st.alerts_inhibited as f64),
            ],
        );
        family(
            "presage_alert_signals_total",
            "counter",
            "Signals handed to alerting, by outcome (dropped: the queue stayed full).",
            &[
                ("{outcome=\"received\"}".into(), st.signals_received as f64),
                ("{outcome=\"dropped\"}".into(), st.signals_dropped as f64),
            ],
        );
        family(
            "presage_alerts_refused_total",
            "counter",
            "Rule and series pairs refused because alerting.max_alerts was reached.",
            &[(String::new(), st.alerts_refused as f64)],
        );
        let mut rows = Vec::new();
        for (name, r) in &st.receivers {
            for (outcome, v) in [
                ("sent", r.sent),
                ("failed", r.failed),
                ("retried", r.retried),
            ] {
                rows.push((
                    format!(
                        "{{receiver=\"{}\",kind=\"{}\",outcome=\"{outcome}\"}}",
                        escape(name),
                        escape(&r.kind)
                    ),
                    v as f64,
                ));
            }
        }
        family(
            "presage_notifications_total",
            "counter",
            "Notification deliveries by receiver and outcome (retried counts attempts).",
            &rows,
        );
        let quantiles: Vec<(String, f64)> = [0.5, 0.9, 0.99]
            .iter()
            .filter_map(|q| Some((format!("{{quantile=\"{q}\"}}"), st.latency_quantile(*q)?)))
            .collect();
        family(
            "presage_alert_notify_latency_seconds",
            "gauge",
            "Wall time from the signal that made an alert fire to its first notification leaving (recent samples; group_wait included).",
            &quantiles,
        );
        family(
            "presage_alert_state_save_errors_total",
            "counter",
            "Alert state saves that failed.",
            &[(String::new(), st.state_save_errors as f64)],
        );
        out
    }

    /// Runs a queued fit (blocking: call it from the fit pool) and hands on what it produced.
    pub fn run_fit(&self, job: FitJob) {
        let started = std::time::Instant::now();
        let mut out = self.store.complete_fit(job);
        self.telemetry.fit_done(started.elapsed().as_secs_f64());
        self.after(&mut out);
    }

    /// Stores a translated batch and records the outcome.
    pub fn write(&self, protocol: Protocol, batch: WriteBatch) -> WriteOutcome {
        self.write_as(protocol, batch, false)
    }

    /// Stores history (a backfill): kept, not scored, one catch-up fit per series (see
    /// [`Store::write_history`]).
    pub fn write_history(&self, protocol: Protocol, batch: WriteBatch) -> WriteOutcome {
        self.write_as(protocol, batch, true)
    }

    fn write_as(&self, protocol: Protocol, batch: WriteBatch, history: bool) -> WriteOutcome {
        let now = self.clock.now_ms();
        let mut out = if history {
            self.store.write_history(batch, now)
        } else {
            self.store.write(batch, now)
        };
        self.after(&mut out);
        self.telemetry
            .record_write(protocol, &out, self.store.series_count());
        if let Some(msg) = &out.first_error {
            tracing::debug!(protocol = protocol.as_str(), rejected = out.rejected_total(), %msg, "samples rejected");
        }
        out
    }

    /// Translates and stores an OTLP metrics export.
    pub fn ingest_otlp_metrics(
        &self,
        protocol: Protocol,
        req: &ExportMetricsServiceRequest,
    ) -> WriteOutcome {
        let batch = self.otlp.metrics(req);
        self.write(protocol, batch)
    }

    /// Translates and buffers an OTLP logs export.
    pub fn ingest_otlp_logs(
        &self,
        protocol: Protocol,
        req: &ExportLogsServiceRequest,
    ) -> LogsOutcome {
        let batch = self.otlp.logs(req, self.clock.now_ms());
        // Templates first: new-pattern signals go to alerting before the count steps that
        // advance event time.
        let mined = self.log_patterns.observe(&batch.streams);
        if !mined.signals.is_empty()
            && let Some(handle) = self.alerting.get()
        {
            // A new pattern is news even before any series has a baseline to advance event
            // time with (a fresh daemon, logs only): it moves event time itself, up to now.
            let newest = mined.signals.iter().map(|s| s.at_ms).max();
            handle.try_send(mined.signals);
            if let Some(newest) = newest {
                self.advance_event_time(newest.min(self.clock.now_ms()));
            }
        }
        let journal_pos = if mined.batch.series.is_empty() {
            0
        } else {
            self.write(protocol, mined.batch).journal_pos
        };
        let out = self.logs.write(batch.streams);
        self.telemetry
            .record_logs(protocol, &out, batch.rejected, self.logs.stream_count());
        let rejected = batch.rejected + out.rejected_stream_limit;
        let message = batch.first_error.or_else(|| {
            (out.rejected_stream_limit > 0).then(|| {
                format!(
                    "log stream limit of {} reached (limits.max_log_streams): records of new streams refused",
                    self.config.limits.max_log_streams
                )
            })
        });
        LogsOutcome {
            accepted: out.accepted,
            rejected,
            message,
            journal_pos,
        }
    }

    /// Decodes, translates and stores a remote_write body.
    pub fn ingest_remote_write(&self, body: &[u8]) -> Result<WriteOutcome, (RejectReason, String)> {
        self.ingest_remote_write_as(body, false)
    }

    /// Decodes and stores a remote_write body; as history (see [`App::write_history`]) when
    /// `history` (the `X-Presage-History` header that `presage backfill` sends).
    pub fn ingest_remote_write_as(
        &self,
        body: &[u8],
        history: bool,
    ) -> Result<WriteOutcome, (RejectReason, String)> {
        let req = remote_write::decode(body, self.config.limits.max_decompressed_body.as_usize())?;
        let batch = remote_write::translate(req, &self.counter_families);
        Ok(self.write_as(Protocol::RemoteWrite, batch, history))
    }

    /// Periodic upkeep: drops series out of retention and measures memory.
    pub fn maintain(&self) {
        let dropped = self.store.drop_stale(self.clock.now_ms());
        let memory = self.store.memory();
        self.telemetry.record_maintenance(&memory, dropped);
        if dropped > 0 {
            tracing::info!(dropped, "dropped series out of retention");
        }
    }
}

/// Steps of history a notification chart shows at most.
const CHART_STEPS: usize = 360;
/// Steps of forecast a notification chart shows at most.
const CHART_FORECAST_STEPS: usize = 120;

/// Charts for notifications, from the daemon's store. Holds the daemon weakly: the alerting
/// service must not keep it alive.
pub struct ChartSource(pub Weak<App>);

impl ModelContext for ChartSource {
    fn chart(&self, series: &LabelSet, now_ms: i64) -> Option<ChartData> {
        let app = self.0.upgrade()?;
        let labels: Vec<(String, String)> =
            series.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
        let id = crate::store::series_id(&labels);
        let step = app.store.step_ms();
        let end = now_ms + step;
        let start = end - CHART_STEPS as i64 * step;
        let values = app.store.values_before(id, end, CHART_STEPS)?;
        let actual: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(i, v)| (start + i as i64 * step, *v))
            .collect();
        let refit = i64::try_from(app.config.model.refit_every.as_millis()).unwrap_or(3_600_000);
        let fits = (CHART_STEPS as i64 * step / refit.max(1)) as usize + 2;
        let band = |p: crate::model::Band| Band {
            expected: p.expected,
            lower: p.lower,
            upper: p.upper,
        };
        let expected = app
            .store
            .past_bands(id, start, end, fits)
            .into_iter()
            .map(|(t, p)| (t, band(p)))
            .collect();
        let forecast = app
            .store
            .forecast_from_newest(id, CHART_FORECAST_STEPS)
            .map(|b| b.points().map(|(t, p)| (t, band(p))).collect())
            .unwrap_or_default();
        let hex = format!("{id:016x}");
        let anomalies = app
            .anomalies(start, ANOMALY_SCORE, 1_000)
            .into_iter()
            .filter(|a| a.series_id == hex)
            .map(|a| (a.step.slot_ms, a.step.value))
            .collect();
        Some(ChartData {
            actual,
            expected,
            forecast,
            threshold: None,
            anomalies,
        })
    }
}

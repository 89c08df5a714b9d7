//! The daemon's own metrics, all defined here, exposed on `/metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::ingest::RejectReason;
use crate::ingest::admission::{AdmissionMetrics, ShedReason};
use crate::store::logs::LogWriteOutcome;
use crate::store::{MemoryStats, WriteOutcome};

/// Where data came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC.
    OtlpGrpc,
    /// OTLP over HTTP.
    OtlpHttp,
    /// Prometheus remote_write.
    RemoteWrite,
    /// History pulled from Prometheus at start-up (`[[backfill]]`).
    Backfill,
}

impl Protocol {
    /// The `protocol` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::OtlpGrpc => "otlp_grpc",
            Protocol::OtlpHttp => "otlp_http",
            Protocol::RemoteWrite => "remote_write",
            Protocol::Backfill => "backfill",
        }
    }

    const ALL: [Protocol; 4] = [
        Protocol::OtlpGrpc,
        Protocol::OtlpHttp,
        Protocol::RemoteWrite,
        Protocol::Backfill,
    ];
}

/// Every metric the daemon exports about itself.
pub struct Telemetry {
    registry: Registry,
    samples_accepted: IntCounterVec,
    samples_rejected: IntCounterVec,
    requests_rejected: IntCounterVec,
    logs_accepted: IntCounterVec,
    logs_rejected: IntCounterVec,
    logs_evicted: prometheus::IntCounter,
    series: IntGauge,
    series_limit: IntGauge,
    series_created: prometheus::IntCounter,
    series_dropped: prometheus::IntCounter,
    log_streams: IntGauge,
    memory: IntGaugeVec,
    bytes_per_series: IntGauge,
    http_duration: HistogramVec,
    grpc_duration: HistogramVec,
    fits_queued: prometheus::IntCounter,
    fit_duration: prometheus::Histogram,
    steps_scored: prometheus::IntCounter,
    anomalies: prometheus::IntCounter,
    backfill_samples: prometheus::IntCounter,
    backfill_series: IntGaugeVec,
    auth_failures: IntCounterVec,
    tls_handshake_failures: IntCounterVec,
    tls_reloads: IntCounterVec,
    ingest_shed: IntCounterVec,
    ingest_inflight_requests: IntGauge,
    ingest_inflight_bytes: IntGauge,
    ingest_inflight_requests_limit: IntGauge,
    ingest_inflight_bytes_limit: IntGauge,
    memory_limit: IntGaugeVec,
    open_connections: IntGaugeVec,
    connection_limit_waits: IntCounterVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    register(r, Box::new(c.clone()));
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name} is malformed: {e}"));
    register(r, Box::new(g.clone()));
    g
}

fn register(r: &Registry, c: Box<dyn prometheus::core::Collector>) {
    // Registration only fails on duplicate or malformed definitions, which are programming
    // errors caught by the tests.
    if let Err(e) = r.register(c) {
        panic!("metric registration failed: {e}");
    }
}

impl Telemetry {
    /// Creates and registers every metric.
    pub fn new(max_series: usize) -> Self {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        register(
            &r,
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        );

        let build = IntGaugeVec::new(
            Opts::new("presage_build_info", "Version of the running daemon."),
            &["version"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        register(&r, Box::new(build));

        let samples_accepted = counter_vec(
            &r,
            "presage_samples_accepted_total",
            "Samples stored, by ingest protocol.",
            &["protocol"],
        );
        let samples_rejected = counter_vec(
            &r,
            "presage_samples_rejected_total",
            "Samples refused, by ingest protocol and reason.",
            &["protocol", "reason"],
        );
        let requests_rejected = counter_vec(
            &r,
            "presage_requests_rejected_total",
            "Whole requests refused before decoding (size, encoding, content type, malformed body).",
            &["protocol", "reason"],
        );
        let logs_accepted = counter_vec(
            &r,
            "presage_log_records_accepted_total",
            "Log records buffered, by ingest protocol.",
            &["protocol"],
        );
        let logs_rejected = counter_vec(
            &r,
            "presage_log_records_rejected_total",
            "Log records refused, by ingest protocol and reason.",
            &["protocol", "reason"],
        );
        for p in Protocol::ALL {
            samples_accepted.with_label_values(&[p.as_str()]);
            for reason in RejectReason::ALL {
                samples_rejected.with_label_values(&[p.as_str(), reason.as_str()]);
            }
        }

        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("{e}"));
            register(&r, Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help).unwrap_or_else(|e| panic!("{e}"));
            register(&r, Box::new(c.clone()));
            c
        };
        let series = gauge("presage_series", "Series held in memory.");
        let series_limit = gauge(
            "presage_series_limit",
            "The configured series limit (limits.max_series).",
        );
        series_limit.set(i64::try_from(max_series).unwrap_or(i64::MAX));
        let series_created = counter("presage_series_created_total", "Series created.");
        let series_dropped = counter(
            "presage_series_dropped_total",
            "Series removed because their newest sample fell out of retention.",
        );
        let log_streams = gauge("presage_log_streams", "Log streams buffered.");
        let logs_evicted = counter(
            "presage_log_records_evicted_total",
            "Buffered log records pushed out by newer ones (limits.log_records_per_stream).",
        );
        let memory = gauge_vec(
            &r,
            "presage_store_memory_bytes",
            "Estimated memory of the series store by part, measured by walking it.",
            &["part"],
        );
        let bytes_per_series = gauge(
            "presage_store_bytes_per_series",
            "Store memory per series, history included.",
        );

        let buckets = vec![
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
        ];
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "presage_http_request_duration_seconds",
                "HTTP request latency by listener, route and status code.",
            )
            .buckets(buckets.clone()),
            &["listener", "route", "code"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        register(&r, Box::new(http_duration.clone()));
        let grpc_duration = HistogramVec::new(
            HistogramOpts::new(
                "presage_grpc_request_duration_seconds",
                "OTLP gRPC export latency by service and status code.",
            )
            .buckets(buckets),
            &["service", "code"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        register(&r, Box::new(grpc_duration.clone()));

        let fits_queued = counter(
            "presage_fits_queued_total",
            "Baseline fits scheduled (event-time refits).",
        );
        let fit_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "presage_fit_duration_seconds",
                "Time one baseline fit takes.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        register(&r, Box::new(fit_duration.clone()));
        let steps_scored = counter(
            "presage_steps_scored_total",
            "Resampled steps scored against a baseline.",
        );
        let anomalies = counter(
            "presage_anomalies_total",
            "Scored steps with an anomaly score of at least 0.5.",
        );
        let backfill_samples = counter(
            "presage_backfill_samples_total",
            "Samples pulled from Prometheus by the start-up backfill ([[backfill]]); what was stored or refused is in presage_samples_accepted_total and presage_samples_rejected_total with protocol=\"backfill\".",
        );
        let backfill_series = IntGaugeVec::new(
            Opts::new(
                "presage_backfill_series",
                "Series of the start-up backfill by state: pending (found, history not yet pulled), done, failed.",
            ),
            &["state"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        register(&r, Box::new(backfill_series.clone()));
        for state in ["pending", "done", "failed"] {
            backfill_series.with_label_values(&[state]);
        }
        let auth_failures = counter_vec(
            &r,
            "presage_auth_failures_total",
            "Requests refused for a missing or invalid bearer token ([auth]), by listener and reason.",
            &["listener", "reason"],
        );
        for listener in ["http", "otlp_http", "otlp_grpc"] {
            for reason in ["missing", "invalid"] {
                auth_failures.with_label_values(&[listener, reason]);
            }
        }
        let tls_handshake_failures = counter_vec(
            &r,
            "presage_tls_handshake_failures_total",
            "TLS handshakes that failed or timed out ([tls]), by listener.",
            &["listener"],
        );
        for listener in ["http", "otlp_http", "otlp_grpc"] {
            tls_handshake_failures.with_label_values(&[listener]);
        }
        let tls_reloads = counter_vec(
            &r,
            "presage_tls_reloads_total",
            "Reloads of changed [tls] certificate files, by result (ok, or error: the previous \
             certificate stays in use).",
            &["result"],
        );
        for result in ["ok", "error"] {
            tls_reloads.with_label_values(&[result]);
        }
        let ingest_shed = counter_vec(
            &r,
            "presage_ingest_shed_total",
            "Ingest requests shed at once (HTTP 429, gRPC RESOURCE_EXHAUSTED) because the \
             ingest limits were reached, by listener and reason (concurrent_requests: \
             limits.max_concurrent_ingest_requests, inflight_bytes: \
             limits.max_inflight_ingest_bytes, memory: limits.memory_limit).",
            &["listener", "reason"],
        );
        for listener in ["http", "otlp_http", "otlp_grpc"] {
            for reason in ShedReason::ALL {
                ingest_shed.with_label_values(&[listener, reason.as_str()]);
            }
        }
        let open_connections = gauge_vec(
            &r,
            "presage_open_connections",
            "Connections open now, by listener (at most limits.max_connections each).",
            &["listener"],
        );
        let connection_limit_waits = counter_vec(
            &r,
            "presage_connection_limit_waits_total",
            "Times a listener stopped accepting because limits.max_connections connections \
             were open, by listener.",
            &["listener"],
        );
        for listener in ["http", "otlp_http", "otlp_grpc"] {
            open_connections.with_label_values(&[listener]);
            connection_limit_waits.with_label_values(&[listener]);
        }
        let ingest_inflight_requests = gauge(
            "presage_ingest_inflight_requests",
            "Ingest requests being processed now, over every ingest listener.",
        );
        let ingest_inflight_bytes = gauge(
            "presage_ingest_inflight_bytes",
            "Ingest bytes held now (bodies read and their decompressed form), over every \
             ingest listener.",
        );
        let ingest_inflight_requests_limit = gauge(
            "presage_ingest_inflight_requests_limit",
            "The configured limit limits.max_concurrent_ingest_requests.",
        );
        let ingest_inflight_bytes_limit = gauge(
            "presage_ingest_inflight_bytes_limit",
            "The configured limit limits.max_inflight_ingest_bytes.",
        );
        let memory_limit = gauge_vec(
            &r,
            "presage_memory_limit_bytes",
            "limits.memory_limit resolved (bound=\"limit\") and the resident memory above \
             which ingest is shed (bound=\"shed\"); absent without a limit.",
            &["bound"],
        );
        Self {
            memory_limit,
            open_connections,
            connection_limit_waits,
            ingest_shed,
            ingest_inflight_requests,
            ingest_inflight_bytes,
            ingest_inflight_requests_limit,
            ingest_inflight_bytes_limit,
            auth_failures,
            tls_handshake_failures,
            tls_reloads,
            backfill_samples,
            backfill_series,
            fits_queued,
            fit_duration,
            steps_scored,
            anomalies,
            registry: r,
            samples_accepted,
            samples_rejected,
            requests_rejected,
            logs_accepted,
            logs_rejected,
            logs_evicted,
            series,
            series_limit,
            series_created,
            series_dropped,
            log_streams,
            memory,
            bytes_per_series,
            http_duration,
            grpc_duration,
        }
    }

    /// Records the outcome of a metrics write.
    pub fn record_write(&self, protocol: Protocol, out: &WriteOutcome, series_now: usize) {
        let p = protocol.as_str();
        self.samples_accepted
            .with_label_values(&[p])
            .inc_by(out.accepted);
        for (reason, n) in &out.rejected {
            self.samples_rejected
                .with_label_values(&[p, reason.as_str()])
                .inc_by(*n);
        }
        self.series_created.inc_by(out.new_series);
        self.series
            .set(i64::try_from(series_now).unwrap_or(i64::MAX));
    }

    /// Records the outcome of a log write.
    pub fn record_logs(
        &self,
        protocol: Protocol,
        out: &LogWriteOutcome,
        rejected_in_translation: u64,
        streams: usize,
    ) {
        let p = protocol.as_str();
        self.logs_accepted
            .with_label_values(&[p])
            .inc_by(out.accepted);
        if out.rejected_stream_limit > 0 {
            self.logs_rejected
                .with_label_values(&[p, "stream_limit"])
                .inc_by(out.rejected_stream_limit);
        }
        if rejected_in_translation > 0 {
            self.logs_rejected
                .with_label_values(&[p, RejectReason::MalformedBody.as_str()])
                .inc_by(rejected_in_translation);
        }
        self.logs_evicted.inc_by(out.evicted);
        self.log_streams
            .set(i64::try_from(streams).unwrap_or(i64::MAX));
    }

    /// Counts a fit put on the queue.
    pub fn fit_queued(&self) {
        self.fits_queued.inc();
    }

    /// Records a finished fit.
    pub fn fit_done(&self, seconds: f64) {
        self.fit_duration.observe(seconds);
    }

    /// Records scored steps and how many were anomalous.
    pub fn record_scores(&self, scored: usize, anomalous: usize) {
        self.steps_scored.inc_by(scored as u64);
        self.anomalies.inc_by(anomalous as u64);
    }

    /// Records series found by a start-up backfill, waiting for their history.
    pub fn backfill_series_found(&self, n: usize) {
        self.backfill_series
            .with_label_values(&["pending"])
            .add(to_i64(n));
    }

    /// Records a backfilled series that is finished, with or without its history.
    pub fn backfill_series_finished(&self, failed: bool) {
        self.backfill_series.with_label_values(&["pending"]).dec();
        let state = if failed { "failed" } else { "done" };
        self.backfill_series.with_label_values(&[state]).inc();
    }

    /// Records a backfill that gave up on series it had found (stopped, or Prometheus gone).
    pub fn backfill_series_abandoned(&self, n: usize) {
        self.backfill_series
            .with_label_values(&["pending"])
            .sub(to_i64(n));
        self.backfill_series
            .with_label_values(&["failed"])
            .add(to_i64(n));
    }

    /// Records samples pulled by a start-up backfill.
    pub fn backfill_samples(&self, n: u64) {
        self.backfill_samples.inc_by(n);
    }

    /// Records a request refused as a whole.
    pub fn record_request_rejected(&self, protocol: Protocol, reason: RejectReason) {
        self.requests_rejected
            .with_label_values(&[protocol.as_str(), reason.as_str()])
            .inc();
    }

    /// Records a request refused by authentication (`reason`: `missing` or `invalid`).
    pub fn record_auth_failure(&self, listener: &str, reason: &str) {
        self.auth_failures
            .with_label_values(&[listener, reason])
            .inc();
    }

    /// Records a TLS handshake that failed or timed out on `listener`.
    pub fn record_tls_handshake_failure(&self, listener: &str) {
        self.tls_handshake_failures
            .with_label_values(&[listener])
            .inc();
    }

    /// Records a reload of changed TLS files (`ok`: the new files are in use).
    pub fn record_tls_reload(&self, ok: bool) {
        self.tls_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The open-connection gauge and limit-wait counter of `listener`.
    pub fn connection_metrics(&self, listener: &str) -> (IntGauge, prometheus::IntCounter) {
        (
            self.open_connections.with_label_values(&[listener]),
            self.connection_limit_waits.with_label_values(&[listener]),
        )
    }

    /// Publishes the ingest limits and hands out the metrics admission control updates.
    pub fn admission_metrics(&self, max_requests: usize, max_bytes: usize) -> AdmissionMetrics {
        self.ingest_inflight_requests_limit
            .set(to_i64(max_requests));
        self.ingest_inflight_bytes_limit.set(to_i64(max_bytes));
        AdmissionMetrics {
            shed: self.ingest_shed.clone(),
            requests: self.ingest_inflight_requests.clone(),
            bytes: self.ingest_inflight_bytes.clone(),
        }
    }

    /// Publishes the memory bound, if there is one.
    pub fn memory_limits(&self, guard: Option<&crate::memory::MemoryGuard>) {
        if let Some(g) = guard {
            self.memory_limit
                .with_label_values(&["limit"])
                .set(i64::try_from(g.limit()).unwrap_or(i64::MAX));
            self.memory_limit
                .with_label_values(&["shed"])
                .set(i64::try_from(g.shed_above()).unwrap_or(i64::MAX));
        }
    }

    /// Records an HTTP request's latency.
    pub fn observe_http(&self, listener: &str, route: &str, code: u16, seconds: f64) {
        self.http_duration
            .with_label_values(&[listener, route, &code.to_string()])
            .observe(seconds);
    }

    /// Records a gRPC export's latency.
    pub fn observe_grpc(&self, service: &str, code: &str, seconds: f64) {
        self.grpc_duration
            .with_label_values(&[service, code])
            .observe(seconds);
    }

    /// Publishes a memory measurement and series removals.
    pub fn record_maintenance(&self, m: &MemoryStats, dropped: usize) {
        self.memory
            .with_label_values(&["history"])
            .set(to_i64(m.history_bytes));
        self.memory
            .with_label_values(&["series"])
            .set(to_i64(m.series_bytes));
        self.memory
            .with_label_values(&["index"])
            .set(to_i64(m.index_bytes));
        self.memory
            .with_label_values(&["model"])
            .set(to_i64(m.model_bytes));
        let total = m.history_bytes + m.series_bytes + m.index_bytes + m.model_bytes;
        self.bytes_per_series
            .set(to_i64(total.checked_div(m.series).unwrap_or(0)));
        self.series.set(to_i64(m.series));
        self.series_dropped.inc_by(dropped as u64);
    }

    /// The configured series limit, as exported.
    pub fn series_limit(&self) -> i64 {
        self.series_limit.get()
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
            tracing::error!(error = %e, "encoding /metrics failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics() {
        let t = Telemetry::new(10);
        let mut out = WriteOutcome {
            accepted: 3,
            ..Default::default()
        };
        out.rejected.insert(RejectReason::NonFinite, 2);
        t.record_write(Protocol::RemoteWrite, &out, 7);
        let text = t.render();
        assert!(text.contains("presage_samples_accepted_total{protocol=\"remote_write\"} 3"));
        assert!(text.contains(
            "presage_samples_rejected_total{protocol=\"remote_write\",reason=\"non_finite_value\"} 2"
        ));
        assert!(text.contains("presage_series 7"));
        assert!(text.contains("presage_series_limit 10"));
        assert_eq!(t.series_limit(), 10);
    }

    #[test]
    fn ingest_shedding_is_exported_from_the_start() {
        let t = Telemetry::new(10);
        let metrics = t.admission_metrics(8, 1 << 20);
        let text = t.render();
        for listener in ["http", "otlp_http", "otlp_grpc"] {
            for reason in ["concurrent_requests", "inflight_bytes", "memory"] {
                let line = format!(
                    "presage_ingest_shed_total{{listener=\"{listener}\",reason=\"{reason}\"}} 0"
                );
                assert!(text.contains(&line), "{line}");
            }
        }
        assert!(text.contains("presage_ingest_inflight_requests_limit 8"));
        assert!(text.contains("presage_ingest_inflight_bytes_limit 1048576"));
        metrics
            .shed
            .with_label_values(&["otlp_grpc", "inflight_bytes"])
            .inc();
        metrics.requests.set(3);
        let text = t.render();
        assert!(text.contains(
            "presage_ingest_shed_total{listener=\"otlp_grpc\",reason=\"inflight_bytes\"} 1"
        ));
        assert!(text.contains("presage_ingest_inflight_requests 3"));
    }
}

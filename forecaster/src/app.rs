//! Shared daemon state and the ingest operations every front end calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use presage_config::ForecasterConfig;

use crate::ingest::otlp::OtlpTranslator;
use crate::ingest::remote_write::{self, CounterFamilies};
use crate::ingest::{RejectReason, WriteBatch};
use crate::store::logs::LogBuffer;
use crate::store::{Store, WriteOutcome};
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
}

/// Everything the listeners share.
pub struct App {
    /// The configuration the daemon runs with.
    pub config: ForecasterConfig,
    /// Series and history.
    pub store: Store,
    /// Recent log records.
    pub logs: LogBuffer,
    /// Self-metrics.
    pub telemetry: Telemetry,
    /// OTLP translation state.
    pub otlp: OtlpTranslator,
    /// Counter families learned from remote_write metadata.
    pub counter_families: CounterFamilies,
    /// The clock.
    pub clock: Clock,
    ready: AtomicBool,
}

impl App {
    /// Builds the state for `config`.
    pub fn new(config: ForecasterConfig, clock: Clock) -> Arc<Self> {
        let store = Store::new(&config);
        let logs = LogBuffer::new(
            config.limits.max_log_streams,
            config.limits.log_records_per_stream,
        );
        let telemetry = Telemetry::new(config.limits.max_series);
        let otlp = OtlpTranslator::new(
            &config.ingest.promote_resource_attributes,
            config.limits.max_series,
        );
        Arc::new(Self {
            counter_families: CounterFamilies::new(config.limits.max_series),
            store,
            logs,
            telemetry,
            otlp,
            clock,
            config,
            ready: AtomicBool::new(false),
        })
    }

    /// Whether the daemon serves (all listeners bound, state loaded).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Stores a translated batch and records the outcome.
    pub fn write(&self, protocol: Protocol, batch: WriteBatch) -> WriteOutcome {
        let out = self.store.write(batch, self.clock.now_ms());
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
        }
    }

    /// Decodes, translates and stores a remote_write body.
    pub fn ingest_remote_write(&self, body: &[u8]) -> Result<WriteOutcome, (RejectReason, String)> {
        let req = remote_write::decode(body, self.config.limits.max_decompressed_body.as_usize())?;
        let batch = remote_write::translate(req, &self.counter_families);
        Ok(self.write(Protocol::RemoteWrite, batch))
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

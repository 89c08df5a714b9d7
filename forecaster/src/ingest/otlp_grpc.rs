//! OTLP over gRPC: the metrics and logs collector services from opentelemetry-proto.
//!
//! Both services sit behind admission control ([`Admitted`]): a request past the ingest limits
//! is answered `RESOURCE_EXHAUSTED` with a `RetryInfo` delay, before or while its message is
//! read, or once decoded when the decoded message does not fit.

use std::sync::Arc;
use std::time::Instant;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::admission::{self, Admission, Admitted, Permit};
use crate::app::App;
use crate::telemetry::Protocol;

/// Both OTLP gRPC services over the shared state.
#[derive(Clone)]
pub struct OtlpGrpc {
    app: Arc<App>,
    admission: Arc<Admission>,
}

impl OtlpGrpc {
    /// Waits until the write ending at `journal_pos` is durable; UNAVAILABLE (counted) when it
    /// may not be.
    async fn durable(
        &self,
        journal_pos: u64,
        service: &str,
        started: Instant,
    ) -> Result<(), Status> {
        self.app.durable_at(journal_pos).await.map_err(|e| {
            self.app.telemetry.observe_grpc(
                service,
                "UNAVAILABLE",
                started.elapsed().as_secs_f64(),
            );
            Status::unavailable(e)
        })
    }

    /// The services, with ingest limits of their own.
    ///
    /// # Panics
    /// When the memory limit derived from the container's is unusable (see `Admission::for_app`);
    /// the daemon checks that when it starts.
    pub fn new(app: Arc<App>) -> Self {
        let admission =
            Admission::for_app(&app).expect("the memory limit of a checked configuration");
        Self::with_admission(app, admission)
    }

    /// The services, admitted by `admission` (shared with the other listeners).
    pub fn with_admission(app: Arc<App>, admission: Arc<Admission>) -> Self {
        Self { app, admission }
    }

    /// The metrics service, gzip accepted, messages bounded by `limits.max_decompressed_body`.
    pub fn metrics_server(&self) -> Admitted<MetricsServiceServer<Self>> {
        let limit = self.app.config.limits.max_decompressed_body.as_usize();
        let server = MetricsServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit);
        Admitted::new(
            server,
            self.admission.clone(),
            crate::auth::LISTENER_OTLP_GRPC,
        )
    }

    /// The logs service, likewise.
    pub fn logs_server(&self) -> Admitted<LogsServiceServer<Self>> {
        let limit = self.app.config.limits.max_decompressed_body.as_usize();
        let server = LogsServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit);
        Admitted::new(
            server,
            self.admission.clone(),
            crate::auth::LISTENER_OTLP_GRPC,
        )
    }
}

/// Reserves the decoded message's size on the request's permit (its wire size stands for it):
/// a request that does not fit is shed.
fn reserve_decoded<T: Message>(request: &Request<T>) -> Result<(), Status> {
    match request.extensions().get::<Arc<Permit>>() {
        Some(permit) => permit
            .reserve(request.get_ref().encoded_len())
            .map_err(admission::grpc_status),
        // Served without admission (a service used on its own).
        None => Ok(()),
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let started = Instant::now();
        if let Err(status) = reserve_decoded(&request) {
            self.app.telemetry.observe_grpc(
                "metrics",
                "RESOURCE_EXHAUSTED",
                started.elapsed().as_secs_f64(),
            );
            return Err(status);
        }
        let out = admission::run_blocking(|| {
            self.app
                .ingest_otlp_metrics(Protocol::OtlpGrpc, request.get_ref())
        });
        // Answered once durable (`storage.fsync`); UNAVAILABLE has the client retry.
        self.durable(out.journal_pos, "metrics", started).await?;
        let rejected = out.rejected_total();
        let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
            error_message: out.first_error.unwrap_or_default(),
        });
        self.app
            .telemetry
            .observe_grpc("metrics", "OK", started.elapsed().as_secs_f64());
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success,
        }))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let started = Instant::now();
        if let Err(status) = reserve_decoded(&request) {
            self.app.telemetry.observe_grpc(
                "logs",
                "RESOURCE_EXHAUSTED",
                started.elapsed().as_secs_f64(),
            );
            return Err(status);
        }
        let out = admission::run_blocking(|| {
            self.app
                .ingest_otlp_logs(Protocol::OtlpGrpc, request.get_ref())
        });
        self.durable(out.journal_pos, "logs", started).await?;
        let partial_success = (out.rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(out.rejected).unwrap_or(i64::MAX),
            error_message: out.message.unwrap_or_default(),
        });
        self.app
            .telemetry
            .observe_grpc("logs", "OK", started.elapsed().as_secs_f64());
        Ok(Response::new(ExportLogsServiceResponse { partial_success }))
    }
}

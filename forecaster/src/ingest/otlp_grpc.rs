//! OTLP over gRPC: the metrics and logs collector services from opentelemetry-proto.

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
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use crate::app::App;
use crate::telemetry::Protocol;

/// Both OTLP gRPC services over the shared state.
#[derive(Clone)]
pub struct OtlpGrpc {
    app: Arc<App>,
}

impl OtlpGrpc {
    /// The services.
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    /// The metrics service, gzip accepted, messages bounded by `limits.max_decompressed_body`.
    pub fn metrics_server(&self) -> MetricsServiceServer<Self> {
        let limit = self.app.config.limits.max_decompressed_body.as_usize();
        MetricsServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
    }

    /// The logs service, likewise.
    pub fn logs_server(&self) -> LogsServiceServer<Self> {
        let limit = self.app.config.limits.max_decompressed_body.as_usize();
        LogsServiceServer::new(self.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(limit)
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let started = Instant::now();
        let out = self
            .app
            .ingest_otlp_metrics(Protocol::OtlpGrpc, request.get_ref());
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
        let out = self
            .app
            .ingest_otlp_logs(Protocol::OtlpGrpc, request.get_ref());
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

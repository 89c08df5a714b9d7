//! OTLP over HTTP: `POST /v1/metrics` and `POST /v1/logs`, protobuf or JSON, optionally gzip.
//!
//! Responses follow the OTLP/HTTP specification: the response uses the request's content
//! type; success is 200 with an `Export*ServiceResponse` that reports partially rejected data;
//! a refused request gets 400, 413 or 415 with a `google.rpc.Status` body.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use serde::Serialize;

use super::RejectReason;
use super::body::{self, BodyError};
use super::otlp;
use crate::app::App;
use crate::telemetry::Protocol;

/// `google.rpc.Status`, the OTLP/HTTP error body.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct RpcStatus {
    /// gRPC code (3 = INVALID_ARGUMENT, 8 = RESOURCE_EXHAUSTED, …).
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// What went wrong.
    #[prost(string, tag = "2")]
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The OTLP/HTTP router (listener 4318).
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .with_state(app)
}

fn error_response(app: &App, format: Format, err: BodyError) -> Response {
    app.telemetry
        .record_request_rejected(Protocol::OtlpHttp, err.reason);
    let code = match err.status {
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        _ => 3,
    };
    let status = RpcStatus {
        code,
        message: err.message,
    };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    (
        err.status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

async fn read_request(app: &App, req: Request) -> Result<(Format, Vec<u8>), (Format, BodyError)> {
    let format = match body::media_type(req.headers()).as_deref() {
        Some("application/x-protobuf") | Some("application/protobuf") => Format::Protobuf,
        Some("application/json") => Format::Json,
        other => {
            return Err((
                Format::Protobuf,
                BodyError::new(
                    RejectReason::UnsupportedMediaType,
                    format!(
                        "unsupported Content-Type {}: OTLP/HTTP takes application/x-protobuf or application/json",
                        other.map_or("(none)".to_string(), |t| format!("`{t}`"))
                    ),
                ),
            ));
        }
    };
    let limits = &app.config.limits;
    let (parts, body): (_, Body) = req.into_parts();
    let bytes = body::read(
        body,
        &parts.headers,
        limits.max_request_body.as_usize(),
        limits.max_decompressed_body.as_usize(),
        true,
        &[],
    )
    .await
    .map_err(|e| (format, e))?;
    Ok((format, bytes.to_vec()))
}

fn encode<T: Message + Serialize>(format: Format, msg: &T) -> Response {
    let body = match format {
        Format::Protobuf => msg.encode_to_vec(),
        Format::Json => serde_json::to_vec(msg).unwrap_or_default(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

async fn metrics(State(app): State<Arc<App>>, req: Request) -> Response {
    let (format, bytes) = match read_request(&app, req).await {
        Ok(ok) => ok,
        Err((format, e)) => return error_response(&app, format, e),
    };
    let decoded = match format {
        Format::Protobuf => ExportMetricsServiceRequest::decode(bytes.as_slice())
            .map_err(|e| format!("invalid OTLP metrics protobuf: {e}")),
        Format::Json => otlp::decode_metrics_json(&bytes),
    };
    let export = match decoded {
        Ok(r) => r,
        Err(msg) => {
            return error_response(
                &app,
                format,
                BodyError::new(RejectReason::MalformedBody, msg),
            );
        }
    };
    let out = app.ingest_otlp_metrics(Protocol::OtlpHttp, &export);
    let rejected = out.rejected_total();
    let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: out.first_error.clone().unwrap_or_default(),
    });
    encode(format, &ExportMetricsServiceResponse { partial_success })
}

async fn logs(State(app): State<Arc<App>>, req: Request) -> Response {
    let (format, bytes) = match read_request(&app, req).await {
        Ok(ok) => ok,
        Err((format, e)) => return error_response(&app, format, e),
    };
    let decoded = match format {
        Format::Protobuf => ExportLogsServiceRequest::decode(bytes.as_slice())
            .map_err(|e| format!("invalid OTLP logs protobuf: {e}")),
        Format::Json => otlp::decode_logs_json(&bytes),
    };
    let export = match decoded {
        Ok(r) => r,
        Err(msg) => {
            return error_response(
                &app,
                format,
                BodyError::new(RejectReason::MalformedBody, msg),
            );
        }
    };
    let out = app.ingest_otlp_logs(Protocol::OtlpHttp, &export);
    let partial_success = (out.rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(out.rejected).unwrap_or(i64::MAX),
        error_message: out.message.clone().unwrap_or_default(),
    });
    encode(format, &ExportLogsServiceResponse { partial_success })
}

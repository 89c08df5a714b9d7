//! OTLP over HTTP: `POST /v1/metrics` and `POST /v1/logs`, protobuf or JSON, optionally gzip.
//!
//! Responses follow the OTLP/HTTP specification: the response uses the request's content
//! type; success is 200 with an `Export*ServiceResponse` that reports partially rejected data;
//! a refused request gets 400, 413 or 415 with a `google.rpc.Status` body, and a request shed
//! by the ingest limits 429 with `Retry-After` and a `google.rpc.Status` of code 8
//! (`RESOURCE_EXHAUSTED`), which OTLP clients retry after the delay.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Request, State};
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
use super::admission::{self, Admission, Permit, ShedReason};
use super::body::{self, BodyError, ReadError};
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

/// The OTLP/HTTP router (listener 4318), with ingest limits of its own (see
/// [`router_with_admission`] for limits shared with the other listeners).
///
/// # Panics
/// When the memory limit derived from the container's is unusable (see `Admission::for_app`);
/// the daemon checks that when it starts.
pub fn router(app: Arc<App>) -> Router {
    let admission = Admission::for_app(&app).expect("the memory limit of a checked configuration");
    router_with_admission(app, admission)
}

/// The OTLP/HTTP router; every request is admitted by `admission`.
pub fn router_with_admission(app: Arc<App>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/v1/metrics", post(metrics))
        .route("/v1/logs", post(logs))
        .layer(Extension(admission))
        .with_state(app)
}

/// 429 with `Retry-After` and a `google.rpc.Status` of code 8 in the request's format.
fn shed_response(format: Format, reason: ShedReason) -> Response {
    let status = RpcStatus {
        code: 8,
        message: reason.message(),
    };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    crate::api::shed_response(Bytes::from(body), format.content_type())
}

/// 503 with a `google.rpc.Status` of code 14 (UNAVAILABLE): the data was taken but may not be
/// durable, so the client retries (a point sent twice is stored once).
fn unavailable_response(format: Format, message: String) -> Response {
    let status = RpcStatus { code: 14, message };
    let body = match format {
        Format::Protobuf => status.encode_to_vec(),
        Format::Json => serde_json::to_vec(&status).unwrap_or_default(),
    };
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

/// The format a request asks for, protobuf when it names none we know.
fn format_of(req: &Request) -> Format {
    match body::media_type(req.headers()).as_deref() {
        Some("application/json") => Format::Json,
        _ => Format::Protobuf,
    }
}

/// Why a request was not decoded.
enum Failure {
    Refused(Format, BodyError),
    Shed(Format, ShedReason),
}

impl Failure {
    fn respond(self, app: &App) -> Response {
        match self {
            Failure::Refused(format, e) => error_response(app, format, e),
            Failure::Shed(format, reason) => shed_response(format, reason),
        }
    }
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

async fn read_request(
    app: &App,
    req: Request,
    permit: &Permit,
) -> Result<(Format, Bytes), Failure> {
    let format = match body::media_type(req.headers()).as_deref() {
        Some("application/x-protobuf") | Some("application/protobuf") => Format::Protobuf,
        Some("application/json") => Format::Json,
        other => {
            return Err(Failure::Refused(
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
        permit,
    )
    .await
    .map_err(|e| match e {
        ReadError::Refused(e) => Failure::Refused(format, e),
        ReadError::Shed(reason) => Failure::Shed(format, reason),
    })?;
    Ok((format, bytes))
}

/// Admits the request (before its body is read) and reads it.
async fn admit_and_read(
    app: &App,
    admission: &Arc<Admission>,
    req: Request,
) -> Result<(Permit, Format, Bytes), Failure> {
    let permit = admission
        .try_admit(crate::auth::LISTENER_OTLP_HTTP)
        .map_err(|reason| Failure::Shed(format_of(&req), reason))?;
    let (format, bytes) = read_request(app, req, &permit).await?;
    Ok((permit, format, bytes))
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

async fn metrics(
    State(app): State<Arc<App>>,
    Extension(admission): Extension<Arc<Admission>>,
    req: Request,
) -> Response {
    let (_permit, format, bytes) = match admit_and_read(&app, &admission, req).await {
        Ok(ok) => ok,
        Err(failure) => return failure.respond(&app),
    };
    // Decoding and storing are CPU work: off the executor.
    let outcome: Result<_, String> = admission::run_blocking(|| {
        let export = match format {
            Format::Protobuf => ExportMetricsServiceRequest::decode(bytes.as_ref())
                .map_err(|e| format!("invalid OTLP metrics protobuf: {e}")),
            Format::Json => otlp::decode_metrics_json(&bytes),
        }?;
        Ok(app.ingest_otlp_metrics(Protocol::OtlpHttp, &export))
    });
    let out = match outcome {
        Ok(out) => out,
        Err(msg) => {
            return error_response(
                &app,
                format,
                BodyError::new(RejectReason::MalformedBody, msg),
            );
        }
    };
    if let Err(e) = app.durable_at(out.journal_pos).await {
        return unavailable_response(format, e);
    }
    let rejected = out.rejected_total();
    let partial_success = (rejected > 0).then(|| ExportMetricsPartialSuccess {
        rejected_data_points: i64::try_from(rejected).unwrap_or(i64::MAX),
        error_message: out.first_error.clone().unwrap_or_default(),
    });
    encode(format, &ExportMetricsServiceResponse { partial_success })
}

async fn logs(
    State(app): State<Arc<App>>,
    Extension(admission): Extension<Arc<Admission>>,
    req: Request,
) -> Response {
    let (_permit, format, bytes) = match admit_and_read(&app, &admission, req).await {
        Ok(ok) => ok,
        Err(failure) => return failure.respond(&app),
    };
    let outcome: Result<_, String> = admission::run_blocking(|| {
        let export = match format {
            Format::Protobuf => ExportLogsServiceRequest::decode(bytes.as_ref())
                .map_err(|e| format!("invalid OTLP logs protobuf: {e}")),
            Format::Json => otlp::decode_logs_json(&bytes),
        }?;
        Ok(app.ingest_otlp_logs(Protocol::OtlpHttp, &export))
    });
    let out = match outcome {
        Ok(out) => out,
        Err(msg) => {
            return error_response(
                &app,
                format,
                BodyError::new(RejectReason::MalformedBody, msg),
            );
        }
    };
    if let Err(e) = app.durable_at(out.journal_pos).await {
        return unavailable_response(format, e);
    }
    let partial_success = (out.rejected > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: i64::try_from(out.rejected).unwrap_or(i64::MAX),
        error_message: out.message.clone().unwrap_or_default(),
    });
    encode(format, &ExportLogsServiceResponse { partial_success })
}

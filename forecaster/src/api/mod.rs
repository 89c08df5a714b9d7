//! The HTTP API, remote_write, `/metrics` and health endpoints (listener 9470).
//!
//! JSON responses use Prometheus' envelope: `{"status":"success","data":…}` or
//! `{"status":"error","errorType":…,"error":…}`.

mod alerts;
mod error;
mod export;
mod logs;
#[cfg(test)]
mod tests;
mod ui;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use axum::extract::{Extension, MatchedPath, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use axum::{Router, body::Bytes};
use serde::Serialize;
use serde_json::json;

pub use error::ApiError;

use crate::app::App;
use crate::ingest::RejectReason;
use crate::ingest::admission::{self, Admission, ShedReason};
use crate::ingest::body::{self, ReadError};
use crate::store::{Selector, SeriesInfo};
use crate::telemetry::Protocol;

/// Most series one `/api/v1/series` answer lists unless `limit` says otherwise.
const DEFAULT_SERIES_LIMIT: usize = 1_000;
/// Most series one `/api/v1/forecast` answer carries unless `limit` says otherwise.
const DEFAULT_FORECAST_LIMIT: usize = 10;
/// Hard cap on `limit`.
const MAX_LIMIT: usize = 10_000;
/// Request header of remote_write requests that carry history (`true`): see
/// [`App::write_history`].
pub const HISTORY_HEADER: &str = "X-Presage-History";

/// The router of the main HTTP listener, with ingest limits of its own (see
/// [`router_with_admission`] for limits shared with the other listeners).
///
/// # Panics
/// When the memory limit derived from the container's is unusable (see `Admission::for_app`);
/// the daemon checks that when it starts.
pub fn router(app: Arc<App>) -> Router {
    let admission = Admission::for_app(&app).expect("the memory limit of a checked configuration");
    router_with_admission(app, admission)
}

/// The router of the main HTTP listener; remote_write is admitted by `admission`. Nothing else
/// on this listener is subject to the ingest limits, so health checks, `/metrics` and the API
/// keep answering while ingest is shed.
pub fn router_with_admission(app: Arc<App>, admission: Arc<Admission>) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{file}", get(ui::asset))
        .route("/api/v1/series", get(series))
        .route("/api/v1/export", get(export::export))
        .route("/api/v1/forecast", get(forecast))
        .route("/api/v1/logs", get(logs))
        .route("/api/v1/log-patterns", get(logs::log_patterns))
        .route("/api/v1/anomalies", get(anomalies))
        .route("/api/v1/status", get(status))
        .route("/api/v1/alerts", get(alerts::alerts))
        .route(
            "/api/v1/silences",
            get(alerts::silences).post(alerts::create_silence),
        )
        .route(
            "/api/v1/silences/{id}",
            get(alerts::silence).delete(alerts::expire_silence),
        )
        .route("/api/v1/write", post(remote_write))
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready))
        .fallback(not_found)
        .layer(Extension(admission))
        .with_state(app)
}

/// HTTP 429 with `Retry-After` for a shed ingest request.
pub(crate) fn shed_response(body: Bytes, content_type: &'static str) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, admission::RETRY_AFTER_SECS.to_string()),
            (header::CONTENT_TYPE, content_type.to_string()),
        ],
        body,
    )
        .into_response()
}

/// Adds request latency metrics to a router, labelled with `listener`.
pub fn with_latency_metrics(router: Router, app: Arc<App>, listener: &'static str) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let app = app.clone();
        async move {
            let route = req
                .extensions()
                .get::<MatchedPath>()
                .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
            let started = Instant::now();
            let response = next.run(req).await;
            app.telemetry.observe_http(
                listener,
                &route,
                response.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            response
        }
    }))
}

type Params = Vec<(String, String)>;

fn params(raw: Option<String>) -> Result<Params, ApiError> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_data(format!("invalid query string: {e}")))
}

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn limit(params: &Params, default: usize) -> Result<usize, ApiError> {
    match param(params, "limit") {
        None => Ok(default),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_data(format!(
                "invalid limit `{v}`: expected a whole number from 1 to {MAX_LIMIT}"
            ))),
        },
    }
}

/// A time as Unix seconds (`1700000000`, `1700000000.5`) or RFC 3339
/// (`2023-11-14T22:13:20Z`), in milliseconds.
fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 1e13
    {
        return Ok((secs * 1000.0).round() as i64);
    }
    humantime::parse_rfc3339_weak(v)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::bad_data(format!(
                "invalid {name} `{v}`: expected Unix seconds or an RFC 3339 time"
            ))
        })
}

fn selectors(params: &Params, name: &str) -> Result<Vec<Selector>, ApiError> {
    params
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| Selector::parse(v).map_err(ApiError::bad_data))
        .collect()
}

fn success<T: Serialize>(data: T) -> Response {
    Json(json!({ "status": "success", "data": data })).into_response()
}

async fn series(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let sels = selectors(&params, "match[]")?;
    if sels.is_empty() {
        return Err(ApiError::bad_data(
            "at least one match[] series selector is required, e.g. match[]=up",
        ));
    }
    let limit = limit(&params, DEFAULT_SERIES_LIMIT)?;
    let mut found: BTreeMap<u64, SeriesInfo> = BTreeMap::new();
    for sel in &sels {
        for s in app.store.select(sel, limit) {
            found.insert(s.id, s);
        }
    }
    let mut list: Vec<SeriesInfo> = found.into_values().collect();
    list.sort_by(|a, b| a.labels.cmp(&b.labels));
    list.truncate(limit);
    Ok(success(list))
}

#[derive(Serialize)]
struct ForecastSeries {
    #[serde(flatten)]
    info: SeriesInfo,
    /// `[unix seconds, value or null]` per step.
    history: Vec<(f64, Option<f64>)>,
    /// `[unix seconds, expected, lower, upper]` over the history: the band each step was
    /// scored against (the most recent `BAND_FITS` refit intervals of the range).
    expected: Vec<(f64, f64, f64, f64)>,
    /// `[unix seconds, expected, lower, upper]` from the newest step through `horizon`.
    forecast: Vec<(f64, f64, f64, f64)>,
}

/// Refits (one per `model.refit_every` of history) at most spent on a series' past bands.
const BAND_FITS: usize = 48;
/// Most series one `/api/v1/forecast` answer may cover (each is refitted on request).
const MAX_FORECAST_SERIES: usize = 100;
/// Longest forward forecast one request may ask for, in steps.
const MAX_HORIZON_STEPS: usize = 10_000;

fn band_row(t_ms: i64, p: crate::model::Band) -> (f64, f64, f64, f64) {
    (t_ms as f64 / 1000.0, p.expected, p.lower, p.upper)
}

async fn forecast(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let text = param(&params, "series").ok_or_else(|| {
        ApiError::bad_data(
            "the series parameter is required, e.g. series=node_load1{instance=\"a\"}",
        )
    })?;
    let sel = Selector::parse(text).map_err(ApiError::bad_data)?;
    let start = param(&params, "start")
        .map(|v| parse_time("start", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let end = param(&params, "end")
        .map(|v| parse_time("end", v))
        .transpose()?
        .unwrap_or(i64::MAX);
    if start > end {
        return Err(ApiError::bad_data("start must not be after end"));
    }
    let limit = limit(&params, DEFAULT_FORECAST_LIMIT)?;
    // Each series costs up to BAND_FITS + 1 fits: bound the work one request can ask for.
    if limit > MAX_FORECAST_SERIES {
        return Err(ApiError::bad_data(format!(
            "invalid limit `{limit}`: a forecast covers at most {MAX_FORECAST_SERIES} series"
        )));
    }
    let step_ms = app.store.step_ms();
    let steps_of = |d: std::time::Duration| {
        usize::try_from(d.as_millis() / step_ms.max(1) as u128)
            .unwrap_or(usize::MAX)
            .max(1)
    };
    let horizon_steps = match param(&params, "horizon") {
        // The configured horizon, as far as one answer may reach.
        None => steps_of(app.config.model.forecast_horizon).min(MAX_HORIZON_STEPS),
        Some(v) => {
            let horizon = humantime::parse_duration(v).map_err(|e| {
                ApiError::bad_data(format!("invalid horizon `{v}`: {e} (use e.g. 6h or 90m)"))
            })?;
            let steps = steps_of(horizon);
            if steps > MAX_HORIZON_STEPS {
                return Err(ApiError::bad_data(format!(
                    "horizon {} is more than {MAX_HORIZON_STEPS} steps of {}s",
                    humantime::format_duration(horizon),
                    step_ms / 1000
                )));
            }
            steps
        }
    };
    let histories = app.store.history(&sel, start, end, limit);
    // Fits are CPU work: off the async threads.
    let store_app = app.clone();
    let series = tokio::task::spawn_blocking(move || {
        histories
            .into_iter()
            .map(|h| {
                let id = h.info.id;
                let (from, to) = match (h.points.first(), h.points.last()) {
                    (Some(f), Some(l)) => (f.0, l.0 + step_ms),
                    _ => (0, 0),
                };
                let expected = store_app
                    .store
                    .past_bands(id, from, to, BAND_FITS)
                    .into_iter()
                    .map(|(t, p)| band_row(t, p))
                    .collect();
                let forecast = store_app
                    .store
                    .forecast_from_newest(id, horizon_steps)
                    .map(|b| b.points().map(|(t, p)| band_row(t, p)).collect())
                    .unwrap_or_default();
                ForecastSeries {
                    expected,
                    forecast,
                    info: h.info,
                    history: h
                        .points
                        .into_iter()
                        .map(|(t, v)| (t as f64 / 1000.0, v.is_finite().then_some(v)))
                        .collect(),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("forecast task failed: {e}")))?;
    Ok(success(json!({
        "step_seconds": step_ms as f64 / 1000.0,
        "series": series,
    })))
}

async fn logs(State(app): State<Arc<App>>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let sels = selectors(&params, "match[]")?;
    let limit = limit(&params, 100)?;
    let entries = if sels.is_empty() {
        app.logs.recent(None, limit)
    } else {
        let mut all = Vec::new();
        for sel in &sels {
            all.extend(app.logs.recent(Some(sel), limit));
        }
        all.sort_by_key(|e| e.ts_ms);
        let skip = all.len().saturating_sub(limit);
        all.split_off(skip)
    };
    Ok(success(entries))
}

async fn anomalies(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let since = param(&params, "since")
        .map(|v| parse_time("since", v))
        .transpose()?
        .unwrap_or(i64::MIN);
    let min_score = match param(&params, "min_score") {
        None => crate::app::ANOMALY_SCORE,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| (0.0..=1.0).contains(s))
            .ok_or_else(|| {
                ApiError::bad_data(format!("invalid min_score `{v}`: expected 0 to 1"))
            })?,
    };
    let limit = limit(&params, 100)?;
    Ok(success(app.anomalies(since, min_score, limit)))
}

async fn status(State(app): State<Arc<App>>) -> Response {
    let memory = app.store.memory();
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "ready": app.is_ready(),
        "series": app.store.series_count(),
        "series_limit": app.store.max_series(),
        "log_streams": app.logs.stream_count(),
        "memory": memory,
        "bytes_per_series_excluding_history": memory.bytes_per_series_excluding_history(),
        "config": crate::redact::redacted_config(&app.config),
    }))
}

async fn remote_write(
    State(app): State<Arc<App>>,
    Extension(admission): Extension<Arc<Admission>>,
    req: Request,
) -> Response {
    let shed = |reason: ShedReason| {
        shed_response(Bytes::from(reason.message()), "text/plain; charset=utf-8")
    };
    // Before anything else, and before the body is read: a shed request costs nothing more.
    let permit = match admission.try_admit(crate::auth::LISTENER_HTTP) {
        Ok(p) => p,
        Err(reason) => return shed(reason),
    };
    let refuse = |reason: RejectReason, status: StatusCode, message: String| {
        app.telemetry
            .record_request_rejected(Protocol::RemoteWrite, reason);
        (status, message).into_response()
    };
    match body::media_type(req.headers()).as_deref() {
        None | Some("application/x-protobuf") => {}
        Some(other) => {
            return refuse(
                RejectReason::UnsupportedMediaType,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "unsupported Content-Type `{other}`: remote_write 1.0 sends application/x-protobuf"
                ),
            );
        }
    }
    let limits = &app.config.limits;
    let (parts, body) = req.into_parts();
    let bytes = match body::read(
        body,
        &parts.headers,
        limits.max_request_body.as_usize(),
        limits.max_decompressed_body.as_usize(),
        false,
        &["snappy"],
        &permit,
    )
    .await
    {
        Ok(b) => b,
        Err(ReadError::Refused(e)) => return refuse(e.reason, e.status, e.message),
        Err(ReadError::Shed(reason)) => return shed(reason),
    };
    // The decompressed size is in the snappy header: reserved before it is allocated. A body
    // whose header is unreadable or past the limit is refused by the decoder below.
    if let Ok(len) = snap::raw::decompress_len(&bytes)
        && len <= limits.max_decompressed_body.as_usize()
        && let Err(reason) = permit.reserve(len)
    {
        return shed(reason);
    }
    // `presage backfill` marks its requests as history: stored without scoring the past.
    let history = parts
        .headers
        .get(HISTORY_HEADER)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    match admission::run_blocking(|| app.ingest_remote_write_as(&bytes, history)) {
        Err((reason, message)) => {
            let status = if reason == RejectReason::BodyTooLarge {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            refuse(reason, status, message)
        }
        // Like Prometheus' own receiver: refused samples make the request a 400 (which senders
        // do not retry); the samples that were accepted stay stored. Either way, only once
        // they are durable (`storage.fsync`); if they may not be, a 503 has the sender retry.
        Ok(out) if app.durable(&out).await.is_err() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "the store cannot write its journal; retry later",
        )
            .into_response(),
        Ok(out) => match &out.first_error {
            Some(msg) if out.rejected_total() > 0 => (
                StatusCode::BAD_REQUEST,
                format!(
                    "{} of {} samples rejected; first: {msg}",
                    out.rejected_total(),
                    out.rejected_total() + out.accepted
                ),
            )
                .into_response(),
            _ => StatusCode::NO_CONTENT.into_response(),
        },
    }
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.telemetry.render()
            + &app.render_model_metrics()
            + &app.render_alerting_metrics()
            + &app.log_patterns.render_metrics(),
    )
}

async fn healthy() -> &'static str {
    "Presage is Healthy.\n"
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        "Presage is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Presage is not ready.\n").into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; GET / lists them")
}

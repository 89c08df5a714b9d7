//! `/api/v1/alerts` and `/api/v1/silences`: the alerting service's state, and silences managed
//! like Alertmanager's API v2 (matchers with `name`, `value`, `isRegex`, `isEqual`; `startsAt`,
//! `endsAt` or `duration`; `createdBy`, `comment`).

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use presage_alerting::{AlertingHandle, SilenceSpec};
use serde_json::json;

use super::{ApiError, success};
use crate::app::App;

fn handle(app: &App) -> Result<&AlertingHandle, ApiError> {
    app.alerting()
        .ok_or_else(|| ApiError::unavailable("alerting is not running in this process"))
}

fn from_alerting(e: presage_alerting::Error) -> ApiError {
    use presage_alerting::Error as E;
    match e {
        E::Silence(_) | E::Selector { .. } => ApiError::bad_data(e.to_string()),
        E::SilenceNotFound(_) => ApiError::not_found(e.to_string()),
        E::Stopped => ApiError::unavailable(e.to_string()),
        other => ApiError::internal(other.to_string()),
    }
}

/// `GET /api/v1/alerts`: active alerts (firing, then pending) and recently resolved ones, each
/// with its explanation, suggestion, and what mutes it.
pub(super) async fn alerts(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let alerts = handle(&app)?.alerts().await.map_err(from_alerting)?;
    Ok(success(alerts))
}

/// `GET /api/v1/silences`.
pub(super) async fn silences(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let h = handle(&app)?;
    let now = h.wall_now_ms();
    let list: Vec<serde_json::Value> = h.silences().iter().map(|s| s.to_api_json(now)).collect();
    Ok(success(list))
}

/// `GET /api/v1/silences/{id}`.
pub(super) async fn silence(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let h = handle(&app)?;
    let s = h
        .silence(&id)
        .ok_or_else(|| ApiError::not_found(format!("no silence with id `{id}`")))?;
    Ok(success(s.to_api_json(h.wall_now_ms())))
}

/// `POST /api/v1/silences`: creates (or, with the `id` of an existing one, replaces) a silence.
pub(super) async fn create_silence(
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec: SilenceSpec = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_data(format!(
            "invalid silence: {e}; expected {{\"matchers\": [{{\"name\": \"alertname\", \"value\": \"DiskWillFill\", \"isRegex\": false}}], \"endsAt\": \"<rfc3339>\" or \"duration\": \"2h\", \"createdBy\": \"…\", \"comment\": \"…\"}}"
        ))
    })?;
    let id = handle(&app)?.create_silence(&spec).map_err(from_alerting)?;
    Ok((
        StatusCode::OK,
        Json(json!({ "status": "success", "data": { "silenceID": id } })),
    )
        .into_response())
}

/// `DELETE /api/v1/silences/{id}`: expires a silence now.
pub(super) async fn expire_silence(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    handle(&app)?.expire_silence(&id).map_err(from_alerting)?;
    Ok(success(json!({ "silenceID": id, "state": "expired" })))
}

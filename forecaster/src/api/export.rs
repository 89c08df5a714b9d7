//! `GET /api/v1/export`: the resampled history of many series, page by page, for
//! `presage export`.
//!
//! Parameters: `match[]` (repeatable; default every series), `start` and `end` (Unix seconds
//! or RFC 3339; default everything held), `limit` (series per page, default 100, at most
//! 1,000) and `after` (the `next` of the previous page). Series come sorted by metric name,
//! then by labels, so that the series of one metric are next to each other. A page also
//! stops after about [`PAGE_STEPS`] steps.
//!
//! ```json
//! {"status":"success","data":{"step_seconds":60,"next":"9f0c…"|null,"series":[
//!   {"id":"…","labels":{"__name__":"node_load1",…},"kind":"gauge",
//!    "start_ms":1700000000000,"values":["0.5",null,"0.75",…]}]}}
//! ```
//!
//! `values[i]` is the step at `start_ms + i × step`, `null` where the step had no data. Values
//! are strings, as in Prometheus' API, written so that parsing them gives back the same
//! `f64` bit for bit. Counters and deltas are stored, and so exported, as per-second rates.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde::Serialize;

use super::{ApiError, param, params, parse_time, selectors, success};
use crate::app::App;
use crate::ingest::METRIC_NAME_LABEL;
use crate::store::{Selector, SeriesId, SeriesInfo};

/// Series per page unless `limit` says otherwise.
const DEFAULT_PAGE_SERIES: usize = 100;
/// Most series on one page.
const MAX_PAGE_SERIES: usize = 1_000;
/// A page ends after the series that brings it past this many steps (about 20 MB of JSON).
pub(crate) const PAGE_STEPS: usize = 1_000_000;

#[derive(Serialize)]
struct ExportSeries {
    #[serde(serialize_with = "hex_id")]
    id: SeriesId,
    labels: BTreeMap<String, String>,
    kind: &'static str,
    start_ms: i64,
    values: Vec<Option<String>>,
}

fn hex_id<S: serde::Serializer>(id: &SeriesId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{id:016x}"))
}

/// Sort key: metric name first, then the whole label set.
type Key = (String, BTreeMap<String, String>);

fn key_of(labels: &BTreeMap<String, String>) -> Key {
    (
        labels.get(METRIC_NAME_LABEL).cloned().unwrap_or_default(),
        labels.clone(),
    )
}

pub(super) async fn export(
    State(app): State<Arc<App>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let params = params(raw)?;
    let mut sels = selectors(&params, "match[]")?;
    if sels.is_empty() {
        sels.push(Selector::parse(r#"{__name__=~".+"}"#).map_err(ApiError::internal)?);
    }
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
    let limit = match param(&params, "limit") {
        None => DEFAULT_PAGE_SERIES,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE_SERIES).contains(n))
            .ok_or_else(|| {
                ApiError::bad_data(format!(
                    "invalid limit `{v}`: expected a whole number from 1 to {MAX_PAGE_SERIES}"
                ))
            })?,
    };
    let after = match param(&params, "after") {
        None => None,
        Some(v) => {
            let id = u64::from_str_radix(v, 16).map_err(|_| {
                ApiError::bad_data(format!("invalid after `{v}`: expected a series id in hex"))
            })?;
            let labels = app.store.labels_of(id).ok_or_else(|| {
                ApiError::bad_data(format!(
                    "series {v} (after) no longer exists: start the export again"
                ))
            })?;
            Some(key_of(&labels))
        }
    };

    // Listing and copying values out is store work under shard locks: off the async threads.
    let data = tokio::task::spawn_blocking(move || {
        let mut found: BTreeMap<Key, SeriesInfo> = BTreeMap::new();
        for sel in &sels {
            for info in app.store.select(sel, usize::MAX) {
                found.insert(key_of(&info.labels), info);
            }
        }
        let lower = match &after {
            Some(k) => Bound::Excluded(k),
            None => Bound::Unbounded,
        };
        let step = app.store.step_ms();
        let mut series = Vec::new();
        let mut steps = 0usize;
        let mut next = None;
        for (_, info) in found.range::<Key, _>((lower, Bound::Unbounded)) {
            if series.len() >= limit || steps >= PAGE_STEPS {
                next = series
                    .last()
                    .map(|s: &ExportSeries| format!("{:016x}", s.id));
                break;
            }
            let Some(first) = info.first_ms else {
                continue;
            };
            let from = first.max(slot_at_or_after(start, step));
            let until = (info.last_ms.div_euclid(step) * step).min(end.div_euclid(step) * step);
            if until < from {
                continue;
            }
            let n = usize::try_from((until - from) / step + 1).unwrap_or(0);
            let Some(values) = app.store.values_before(info.id, until + step, n) else {
                continue;
            };
            let Some(lead) = values.iter().position(|v| v.is_finite()) else {
                continue;
            };
            let tail = values.iter().rposition(|v| v.is_finite()).unwrap_or(lead);
            steps += tail + 1 - lead;
            series.push(ExportSeries {
                id: info.id,
                labels: info.labels.clone(),
                kind: info.kind,
                start_ms: from + lead as i64 * step,
                values: values[lead..=tail]
                    .iter()
                    .map(|v| v.is_finite().then(|| format!("{v:?}")))
                    .collect(),
            });
        }
        serde_json::json!({
            "step_seconds": step as f64 / 1000.0,
            "next": next,
            "series": series,
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("export task failed: {e}")))?;
    Ok(success(data))
}

/// The first slot at or after `t`.
fn slot_at_or_after(t: i64, step: i64) -> i64 {
    if t == i64::MIN {
        return i64::MIN;
    }
    let slot = t.div_euclid(step) * step;
    if slot < t { slot + step } else { slot }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use presage_config::ForecasterConfig;
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::app::{App, Clock};
    use crate::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};

    const NOW: i64 = 1_700_000_040_000;
    const STEP: i64 = 60_000;

    fn app() -> Arc<App> {
        let app = App::new(ForecasterConfig::default(), Clock::Fixed(NOW));
        let series = |labels: &[(&str, &str)], points: &[(i64, f64)]| SeriesWrite {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            kind: ValueKind::Gauge,
            points: points.iter().map(|&(t, v)| Point::new(t, v)).collect(),
        };
        let t0 = NOW - 10 * STEP;
        let out = app.store.write(
            WriteBatch {
                series: vec![
                    // Sorted by labels it would come first (`A` < `__name__`); by metric, last.
                    series(&[("__name__", "b_metric"), ("A", "1")], &[(t0, 1.0)]),
                    series(
                        &[("__name__", "a_metric"), ("host", "x")],
                        &[
                            (t0, 0.1 + 0.2),
                            (t0 + 3 * STEP, -0.0),
                            (t0 + 4 * STEP, 1e300),
                        ],
                    ),
                    series(
                        &[("__name__", "a_metric"), ("host", "y")],
                        &[(t0 + STEP, 5.0)],
                    ),
                ],
                ..Default::default()
            },
            NOW,
        );
        assert_eq!(out.rejected_total(), 0, "{out:?}");
        app
    }

    async fn get(app: &Arc<App>, uri: &str) -> (StatusCode, Value) {
        let res = super::super::router(app.clone())
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn pages_follow_metric_names_and_values_parse_back_exactly() {
        let app = app();
        let mut uri = "/api/v1/export?limit=1".to_string();
        let mut got = Vec::new();
        for _ in 0..10 {
            let (status, body) = get(&app, &uri).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            let data = &body["data"];
            assert_eq!(data["step_seconds"], 60.0);
            let series = data["series"].as_array().unwrap();
            assert_eq!(series.len(), 1, "{body}");
            got.push(series[0].clone());
            match data["next"].as_str() {
                Some(next) => uri = format!("/api/v1/export?limit=1&after={next}"),
                None => break,
            }
        }
        let names: Vec<String> = got.iter().map(|s| format!("{}", s["labels"])).collect();
        assert_eq!(
            names,
            [
                r#"{"__name__":"a_metric","host":"x"}"#,
                r#"{"__name__":"a_metric","host":"y"}"#,
                r#"{"A":"1","__name__":"b_metric"}"#,
            ]
        );
        let x = &got[0];
        let t0 = NOW - 10 * STEP;
        assert_eq!(x["start_ms"], t0);
        assert_eq!(x["kind"], "gauge");
        let values: Vec<Option<f64>> = x["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().map(|s| s.parse::<f64>().unwrap()))
            .collect();
        assert_eq!(values.len(), 5);
        assert_eq!(values[0].map(f64::to_bits), Some((0.1f64 + 0.2).to_bits()));
        assert_eq!(values[1], None);
        assert_eq!(values[2], None);
        assert_eq!(values[3].map(f64::to_bits), Some((-0.0f64).to_bits()));
        assert_eq!(values[4], Some(1e300));

        // One page with everything; a selector; a time range.
        let (_, all) = get(&app, "/api/v1/export").await;
        assert_eq!(all["data"]["series"].as_array().unwrap().len(), 3);
        assert!(all["data"]["next"].is_null());
        let (_, one) = get(&app, "/api/v1/export?match[]=b_metric").await;
        assert_eq!(one["data"]["series"].as_array().unwrap().len(), 1);
        let start = (t0 + 3 * STEP) / 1000;
        let (_, late) = get(&app, &format!("/api/v1/export?start={start}")).await;
        let late = late["data"]["series"].as_array().unwrap().clone();
        assert_eq!(late.len(), 1, "only host x has steps after {start}");
        assert_eq!(late[0]["start_ms"], t0 + 3 * STEP);
        assert_eq!(late[0]["values"], serde_json::json!(["-0.0", "1e300"]));
    }

    #[tokio::test]
    async fn bad_parameters_are_refused() {
        let app = app();
        for uri in [
            "/api/v1/export?limit=0",
            "/api/v1/export?limit=1001",
            "/api/v1/export?after=zz",
            "/api/v1/export?after=0000000000000001",
            "/api/v1/export?start=20&end=10",
            "/api/v1/export?match[]=rate(x[5m])",
        ] {
            let (status, body) = get(&app, uri).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert_eq!(body["status"], "error", "{uri}: {body}");
        }
    }
}

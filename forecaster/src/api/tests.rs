use axum::body::Body;
use axum::http::{Request, StatusCode};
use presage_config::ForecasterConfig;
use serde_json::Value;
use tower::ServiceExt;

use super::router;
use crate::app::{App, Clock};
use crate::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

const NOW: i64 = 1_700_000_000_000;

fn app() -> std::sync::Arc<App> {
    let app = App::new(ForecasterConfig::default(), Clock::Fixed(NOW));
    app.set_ready(true);
    app
}

async fn call(app: &std::sync::Arc<App>, req: Request<Body>) -> (StatusCode, String) {
    let res = router(app.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(app: &std::sync::Arc<App>, uri: &str) -> (StatusCode, Value) {
    let (status, body) = call(app, Request::get(uri).body(Body::empty()).unwrap()).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn write_request(name: &str, host: &str, samples: &[(i64, f64)]) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                Label {
                    name: "host".into(),
                    value: host.into(),
                },
            ],
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

async fn remote_write(app: &std::sync::Arc<App>, body: Vec<u8>) -> (StatusCode, String) {
    call(
        app,
        Request::post("/api/v1/write")
            .header("content-type", "application/x-protobuf")
            .header("content-encoding", "snappy")
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn remote_write_then_query() {
    let app = app();
    let base = NOW - 600_000;
    let (status, body) = remote_write(
        &app,
        write_request("node_load1", "a", &[(base, 0.5), (base + 60_000, 0.75)]),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    let (status, v) = get(&app, "/api/v1/series?match[]=node_load1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"][0]["labels"]["host"], "a");
    assert_eq!(v["data"][0]["kind"], "gauge");
    assert_eq!(v["data"][0]["points_total"], 2);

    let (status, v) = get(
        &app,
        "/api/v1/forecast?series=node_load1%7Bhost%3D%22a%22%7D",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["data"]["step_seconds"], 60.0);
    let history = v["data"]["series"][0]["history"].as_array().unwrap();
    let slot = (base - base % 60_000) as f64 / 1000.0;
    assert_eq!(history[0], serde_json::json!([slot, 0.5]));
    assert_eq!(history[1], serde_json::json!([slot + 60.0, 0.75]));

    // A time range narrows the history.
    let uri = format!("/api/v1/forecast?series=node_load1&start={}", slot + 30.0);
    let (_, v) = get(&app, &uri).await;
    assert_eq!(
        v["data"]["series"][0]["history"].as_array().unwrap().len(),
        1
    );
}

#[tokio::test]
async fn bad_queries_get_clear_errors() {
    let app = app();
    let cases = [
        ("/api/v1/series", "match[]"),
        (
            "/api/v1/series?match[]=rate(x[5m])",
            "not a series selector",
        ),
        ("/api/v1/series?match[]=up&limit=0", "invalid limit"),
        ("/api/v1/forecast", "series parameter is required"),
        (
            "/api/v1/forecast?series=up&start=yesterday",
            "invalid start",
        ),
        (
            "/api/v1/forecast?series=up&start=20&end=10",
            "start must not be after end",
        ),
        (
            "/api/v1/forecast?series=up&limit=5000",
            "at most 100 series",
        ),
        (
            "/api/v1/series?match[]=%7Bjob%3D%22%22%7D",
            "non-empty matcher",
        ),
    ];
    for (uri, needle) in cases {
        let (status, v) = get(&app, uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(v["status"], "error", "{uri}");
        assert_eq!(v["errorType"], "bad_data", "{uri}");
        let msg = v["error"].as_str().unwrap();
        assert!(msg.contains(needle), "{uri}: {msg}");
    }
    let (status, v) = get(&app, "/api/v1/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["errorType"], "not_found");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = app();
    let (status, _) = get(&app, "/-/healthy").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get(&app, "/-/ready").await;
    assert_eq!(status, StatusCode::OK);
    app.set_ready(false);
    let (status, _) = get(&app, "/-/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    remote_write(&app, write_request("m", "a", &[(NOW, f64::NAN)])).await;
    let (status, body) = call(&app, Request::get("/metrics").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(
        "presage_samples_rejected_total{protocol=\"remote_write\",reason=\"non_finite_value\"} 1"
    ));
}

#[tokio::test]
async fn forecast_has_past_bands_and_a_forward_path() {
    use crate::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};
    let app = app();
    // Six hours of a slow wave at one-minute steps, ending just before NOW.
    let start = (NOW - 6 * 3_600_000) / 3_600_000 * 3_600_000;
    let value = |i: i64| {
        let noise = ((i * 7919) % 101) as f64 / 100.0 - 0.5;
        10.0 + (i as f64 / 30.0).sin() + 0.3 * noise
    };
    let points: Vec<Point> = (0..360)
        .map(|i| Point::new(start + i * 60_000, value(i)))
        .collect();
    let out = app.store.write(
        WriteBatch {
            series: vec![SeriesWrite {
                labels: vec![
                    ("__name__".into(), "wave".into()),
                    ("host".into(), "a".into()),
                ],
                kind: ValueKind::Gauge,
                points,
            }],
            ..Default::default()
        },
        NOW,
    );
    assert_eq!(out.accepted, 360);

    let (status, v) = get(&app, "/api/v1/forecast?series=wave&horizon=2h").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let s = &v["data"]["series"][0];
    let rows = |key: &str| -> Vec<(f64, f64, f64, f64)> {
        serde_json::from_value(s[key].clone()).unwrap()
    };
    // Past bands: from the first hourly boundary with enough points to the newest step,
    // each step inside a sensible band around the wave.
    let expected = rows("expected");
    assert_eq!(
        expected.first().unwrap().0,
        (start + 3_600_000) as f64 / 1000.0
    );
    assert_eq!(
        expected.last().unwrap().0,
        (start + 359 * 60_000) as f64 / 1000.0
    );
    assert_eq!(expected.len(), 300);
    let mut inside = 0;
    for &(t, e, lo, hi) in &expected {
        let i = ((t * 1000.0) as i64 - start) / 60_000;
        assert!(lo <= e && e <= hi, "{t}: {lo} {e} {hi}");
        inside += usize::from((lo..=hi).contains(&value(i)));
    }
    // The bands are the ones the steps were judged by: most ordinary steps are inside them.
    assert!(
        inside * 100 >= expected.len() * 80,
        "{inside} of {} inside",
        expected.len()
    );
    // The forward path starts at the open step and covers the horizon.
    let forecast = rows("forecast");
    assert_eq!(forecast.len(), 120);
    assert_eq!(forecast[0].0, (start + 359 * 60_000) as f64 / 1000.0);

    let (status, v) = get(&app, "/api/v1/forecast?series=wave&horizon=soon").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"].as_str().unwrap().contains("invalid horizon"),
        "{v}"
    );
    let (status, _) = get(&app, "/api/v1/forecast?series=wave&horizon=3000d").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

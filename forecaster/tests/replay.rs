//! Event time drives the model: three days of history replayed at full speed through
//! remote_write produce exactly the scores and anomalies of a deterministic, single-threaded run
//! over the same data, even though the daemon fits on a pool while data keeps arriving.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use presage_forecaster::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};
use presage_forecaster::store::Store;

const STEP_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

fn value(i: usize) -> f64 {
    let x = (i as u64).wrapping_mul(6_364_136_223_846_793_005) >> 40;
    let noise = (x % 1000) as f64 / 1000.0 - 0.5;
    let daily = (i as f64 * std::f64::consts::TAU / 1440.0).sin();
    let spike = if i == 1440 * 2 + 600 { 30.0 } else { 0.0 };
    100.0 + 20.0 * daily + noise * 2.0 + spike
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_at_full_speed_matches_a_deterministic_run() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let n = 1440 * 3;
    // Starting on the hour fixes where the hourly refits fall in the data, so the run does not
    // depend on the minute the test starts: the spike is a record after two days, which scores
    // close to 0.5 (0.497 to 0.506 depending on that phase).
    let start = (now - n as i64 * STEP_MS).div_euclid(HOUR_MS) * HOUR_MS;
    let points: Vec<(i64, f64)> = (0..n)
        .map(|i| (start + i as i64 * STEP_MS, value(i)))
        .collect();

    // The reference: the same store code with fits run inline.
    let cfg = test_config();
    let reference = Store::new(&cfg).with_inline_fits();
    let mut expected_scores = Vec::new();
    for chunk in points.chunks(500) {
        let out = reference.write(
            WriteBatch {
                series: vec![SeriesWrite {
                    labels: vec![
                        ("__name__".into(), "requests".into()),
                        ("job".into(), "replay".into()),
                    ],
                    kind: ValueKind::Gauge,
                    points: chunk.iter().map(|&(t, v)| Point::new(t, v)).collect(),
                }],
                ..Default::default()
            },
            now,
        );
        expected_scores.extend(out.scores.into_iter().map(|(_, s)| s));
    }
    let expected_anomalies: Vec<(i64, String)> = expected_scores
        .iter()
        .filter(|s| s.score >= 0.5)
        .map(|s| (s.slot_ms, format!("{:.9}", s.score)))
        .collect();
    assert!(
        expected_anomalies
            .iter()
            .any(|(t, _)| *t == start + (1440 * 2 + 600) * STEP_MS),
        "the reference run must flag the spike: {expected_anomalies:?}"
    );

    // The daemon, fed as fast as remote_write takes it.
    let running = start_daemon().await;
    let http = running.http;
    let client = client();
    for chunk in points.chunks(500) {
        let body = encode(&WriteRequest {
            timeseries: vec![TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "requests".into(),
                    },
                    Label {
                        name: "job".into(),
                        value: "replay".into(),
                    },
                ],
                samples: chunk
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                histograms: vec![],
            }],
            metadata: vec![],
        });
        let res = client
            .post(format!("http://{http}/api/v1/write"))
            .header("content-encoding", "snappy")
            .body(body)
            .send()
            .await
            .expect("write");
        assert_eq!(res.status(), 204);
    }

    // Wait until every step the reference scored has been scored by the daemon.
    let want = expected_scores.len() as f64;
    eventually(Duration::from_secs(120), "all steps scored", || {
        let client = client.clone();
        async move {
            let text = metrics_text(&client, http).await?;
            let scored = sample_value(&text, "presage_steps_scored_total ")?;
            (scored >= want).then_some(())
        }
    })
    .await;

    let v = get_json(
        &client,
        &format!("http://{http}/api/v1/anomalies?min_score=0.5&limit=10000"),
    )
    .await
    .expect("anomalies");
    let got: Vec<(i64, String)> = v["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|a| {
            (
                a["slot_ms"].as_i64().unwrap_or(0),
                format!("{:.9}", a["score"].as_f64().unwrap_or(-1.0)),
            )
        })
        .collect();
    assert_eq!(got, expected_anomalies);
    assert_eq!(v["data"][0]["labels"]["job"], "replay");

    // The model's view is on /metrics, Grafana-ML style.
    let text = metrics_text(&client, http).await.expect("metrics");
    for prefix in [
        "requests:predicted{job=\"replay\",ml_forecast=\"yhat\"} ",
        "requests:predicted{job=\"replay\",ml_forecast=\"yhat_lower\"} ",
        "requests:predicted{job=\"replay\",ml_forecast=\"yhat_upper\"} ",
        "requests:anomalous{job=\"replay\"} ",
        "presage_anomaly_score{metric=\"requests\",job=\"replay\"} ",
    ] {
        let value = sample_value(&text, prefix);
        assert!(
            value.is_some_and(f64::is_finite),
            "{prefix} missing:\n{text}"
        );
    }

    // The series is ready, with its daily cycle found.
    let s = series(&client, http, "requests").await;
    assert_eq!(s[0]["readiness"]["state"], "ready", "{:?}", s[0]);
    assert_eq!(s[0]["periods_seconds"][0], 86_400, "{:?}", s[0]);
    running.shutdown().await.expect("clean shutdown");
}

async fn start_daemon() -> presage_forecaster::server::Running {
    start(test_config()).await
}

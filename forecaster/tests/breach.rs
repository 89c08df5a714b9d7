//! A filesystem filling with log-rotation sawtooth, replayed through remote_write: the breach
//! rule's ETA on `/metrics` brackets the true time to the threshold, and a flat series with the
//! same sawtooth gets no ETA.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

const STEP_MS: i64 = 60_000;

/// Rotation drops usage by 5% every 3 hours and it refills within the hour.
fn rotation(i: usize) -> f64 {
    let in_cycle = i % 180;
    if in_cycle < 60 {
        -0.05 * (1.0 - in_cycle as f64 / 60.0)
    } else {
        0.0
    }
}

fn series(mount: &str, points: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: vec![
            Label {
                name: "__name__".into(),
                value: "disk_utilization".into(),
            },
            Label {
                name: "mountpoint".into(),
                value: mount.into(),
            },
        ],
        samples: points
            .iter()
            .map(|&(timestamp, value)| Sample { value, timestamp })
            .collect(),
        histograms: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breach_eta_brackets_the_true_crossing() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let n = 12 * 60;
    let t0 = (now - n as i64 * STEP_MS) / STEP_MS * STEP_MS;
    // Filling at 1% an hour from 40%; the flat one hovers at 50%.
    let filling: Vec<(i64, f64)> = (0..n)
        .map(|i| {
            (
                t0 + i as i64 * STEP_MS,
                0.40 + 0.01 * i as f64 / 60.0 + rotation(i),
            )
        })
        .collect();
    let flat: Vec<(i64, f64)> = (0..n)
        .map(|i| (t0 + i as i64 * STEP_MS, 0.50 + rotation(i)))
        .collect();

    let mut cfg = test_config();
    cfg.rules = presage_config::ForecasterConfig::from_toml(
        r#"
[[rules]]
name = "DiskFilling"
kind = "breach"
select = "disk_utilization"
threshold = 0.9
direction = "above"
horizon = "48h"
"#,
        "rules.toml",
    )
    .expect("valid rule")
    .rules;
    let running = start(cfg).await;
    let http = running.http;
    let client = client();
    for (a, b) in filling.chunks(240).zip(flat.chunks(240)) {
        let body = encode(&WriteRequest {
            timeseries: vec![series("/var", a), series("/srv", b)],
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

    let prefix = |q: &str| {
        format!(
            "presage_breach_eta_seconds{{rule=\"DiskFilling\",quantile=\"{q}\",metric=\"disk_utilization\",mountpoint=\"/var\"}} "
        )
    };
    let etas = eventually(Duration::from_secs(60), "a breach ETA for /var", || {
        let client = client.clone();
        async move {
            let text = metrics_text(&client, http).await?;
            let value = |q: &str| sample_value(&text, &prefix(q));
            // Wait until every queued fit is done and every step scored: the ETA then comes from
            // the fit that saw the whole replay (up to the last hour boundary).
            let metric = |name: &str| sample_value(&text, &format!("{name} "));
            let queued = metric("presage_fits_queued_total")?;
            let done = metric("presage_fit_duration_seconds_count")?;
            let scored = metric("presage_steps_scored_total")?;
            if queued != done || scored < 2.0 * (n as f64 - 31.0) {
                return None;
            }
            let etas = (value("0.1")?, value("0.5")?, value("0.9")?);
            Some((etas, text))
        }
    })
    .await;
    let ((p10, p50, p90), text) = etas;
    // From the newest step (≈0.52 at 12h) to 0.90 at 1%/h: 38 hours, give or take the
    // partial hour since the last refit boundary.
    let truth = 38.0 * 3600.0;
    assert!(p10 <= p50 && p50 <= p90, "{p10} {p50} {p90}");
    assert!(
        p10 <= truth + 1800.0 && truth - 1800.0 <= p90,
        "P10 {p10} P50 {p50} P90 {p90}"
    );
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("presage_breach_eta_seconds") && l.contains("/srv")),
        "a flat series must not get an ETA:\n{text}"
    );
    running.shutdown().await.expect("clean shutdown");
}

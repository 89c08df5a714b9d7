//! Restarts: a graceful one brings series, history, models and log templates back without a
//! refit; `kill -9` under ingest loses nothing that was acknowledged.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use parking_lot::Mutex;
use presage_forecaster::ingest::remote_write::{Sample, TimeSeries, WriteRequest, encode};
use serde_json::Value;

const STEP_MS: i64 = 60_000;

/// remote_write of one point for each of `series` (`name{host}`) at `ts`.
fn write_request(series: &[(String, String)], ts: i64, value: impl Fn(usize) -> f64) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: series
            .iter()
            .enumerate()
            .map(|(i, (name, host))| TimeSeries {
                labels: labels(&[("__name__", name), ("host", host)]),
                samples: vec![Sample {
                    value: value(i),
                    timestamp: ts,
                }],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    })
}

async fn post_rw(client: &reqwest::Client, http: &str, body: Vec<u8>) -> Option<u16> {
    post_remote_write(client, http, body, false)
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The resampled history of the series matching `selector` (through `/api/v1/export`):
/// `(labels, [(ms, value)])`, steps without data left out, sorted by labels.
async fn history(
    client: &reqwest::Client,
    http: &str,
    selector: &str,
) -> Vec<(BTreeMap<String, String>, Vec<(i64, f64)>)> {
    let url = format!(
        "http://{http}/api/v1/export?match[]={}&limit=1000",
        urlencode(selector)
    );
    let v = get_json(client, &url).await.expect("export answers");
    let step_ms = (v["data"]["step_seconds"].as_f64().expect("step") * 1000.0) as i64;
    let mut out: Vec<_> = v["data"]["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["labels"].clone()).expect("labels");
            let start = s["start_ms"].as_i64().expect("start_ms");
            let points = s["values"]
                .as_array()
                .expect("values")
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    Some((start + i as i64 * step_ms, v.as_str()?.parse::<f64>().ok()?))
                })
                .collect();
            (labels, points)
        })
        .collect();
    out.sort_by(|a: &(BTreeMap<String, String>, _), b| a.0.cmp(&b.0));
    out
}

fn config_file(dir: &std::path::Path, ports: [u16; 3]) -> std::path::PathBuf {
    let path = dir.join("presage.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
http = "127.0.0.1:{}"
otlp_http = "127.0.0.1:{}"
otlp_grpc = "127.0.0.1:{}"

[storage]
dir = "{}"
fsync = "always"
checkpoint_interval = "2s"
"#,
            ports[0],
            ports[1],
            ports[2],
            dir.join("data").display()
        ),
    )
    .unwrap();
    path
}

async fn wait_ready(client: &reqwest::Client, http: &str, peer: &mut Peer) {
    eventually(Duration::from_secs(120), "the daemon to be ready", || {
        peer.assert_running();
        let client = client.clone();
        let url = format!("http://{http}/-/ready");
        async move {
            let r = client.get(url).send().await.ok()?;
            r.status().is_success().then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_ingest_load_loses_nothing_acknowledged() {
    let dir = scratch_dir();
    let ports = [free_port(), free_port(), free_port()];
    let config = config_file(&dir, ports);
    let http = format!("127.0.0.1:{}", ports[0]);
    let client = client();
    let args = vec![
        "serve".to_string(),
        "--config".into(),
        config.display().to_string(),
    ];
    let presage = std::path::Path::new(env!("CARGO_BIN_EXE_presage"));
    let mut daemon = Peer::spawn("presage-1", presage, &args, &dir);
    wait_ready(&client, &http, &mut daemon).await;

    // Four writers, 25 series each, one point per series and minute, in order. A writer stops
    // at its first failure (the daemon is gone); what got a 2xx is what must survive.
    let writers = 4;
    let steps: i64 = 2_000;
    let start = (now_ms() - (steps + 10) * STEP_MS) / STEP_MS * STEP_MS;
    let value = |w: usize, i: usize, k: i64| (w * 1_000_000 + i * 10_000) as f64 + k as f64;
    let acked: Arc<Mutex<BTreeMap<(usize, usize), i64>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (client, http, acked) = (client.clone(), http.clone(), acked.clone());
        let series: Vec<(String, String)> = (0..25)
            .map(|i| (format!("load_{w}"), format!("h{i:02}")))
            .collect();
        tasks.push(tokio::spawn(async move {
            for k in 0..steps {
                let ts = start + k * STEP_MS;
                let body = write_request(&series, ts, |i| value(w, i, k));
                match post_rw(&client, &http, body).await {
                    Some(s) if (200..300).contains(&s) => {
                        let mut acked = acked.lock();
                        for i in 0..series.len() {
                            acked.insert((w, i), k);
                        }
                    }
                    _ => return,
                }
            }
        }));
    }
    // Kill once a good share is in (checkpoints run every 2 s meanwhile).
    eventually(
        Duration::from_secs(120),
        "writes to be acknowledged",
        || {
            let n = acked.lock().values().map(|k| *k + 1).sum::<i64>();
            async move { (n >= 100 * 400).then_some(()) }
        },
    )
    .await;
    daemon.child.kill().expect("SIGKILL");
    let _ = daemon.child.wait();
    for t in tasks {
        t.await.unwrap();
    }
    let acked = acked.lock().clone();
    assert_eq!(acked.len(), writers * 25);
    assert!(
        acked.values().all(|k| *k < steps - 1),
        "the load finished before the kill: nothing was tested"
    );

    let mut daemon = Peer::spawn("presage-2", presage, &args, &dir);
    wait_ready(&client, &http, &mut daemon).await;
    for w in 0..writers {
        let got = history(&client, &http, &format!("load_{w}")).await;
        assert_eq!(got.len(), 25, "series of writer {w}");
        for (labels, points) in got {
            let i: usize = labels["host"][1..].parse().unwrap();
            let last = acked[&(w, i)];
            let by_ts: BTreeMap<i64, f64> = points.into_iter().collect();
            for k in 0..=last {
                let ts = start + k * STEP_MS;
                assert_eq!(
                    by_ts.get(&ts),
                    Some(&value(w, i, k)),
                    "load_{w}{{host=h{i:02}}} step {k} of {last} acknowledged"
                );
            }
        }
    }
    // What came back: series from the last checkpoint, the rest replayed from the journal.
    let addr: std::net::SocketAddr = http.parse().unwrap();
    let text = metrics_text(&client, addr).await.unwrap();
    let restored = |what: &str| {
        sample_value(&text, &format!("presage_store_restored{{what=\"{what}\"}}")).unwrap_or(0.0)
    };
    assert!(
        restored("series") + restored("journal_points") > 0.0,
        "nothing was loaded:\n{text}"
    );
}

/// Two days of a daily cycle on three hosts, a minute apart.
fn cycle(host: usize, i: usize) -> f64 {
    50.0 + 20.0 * (i as f64 * std::f64::consts::TAU / 1440.0).sin()
        + host as f64
        + (i % 7) as f64 * 0.3
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_brings_models_back_without_refitting() {
    let mut cfg = test_config();
    cfg.storage.checkpoint_interval = Duration::from_secs(3600);
    let client = client();
    let n = 1440 * 2 + 100;
    let start = start_of_replay(n);
    let hosts: Vec<(String, String)> = (0..3)
        .map(|h| ("cpu_busy".to_string(), format!("h{h:02}")))
        .collect();

    let daemon = common::start(cfg.clone()).await;
    let http = daemon.http.to_string();
    for i in 0..n {
        let body = write_request(&hosts, start + i as i64 * STEP_MS, |h| cycle(h, i));
        assert_eq!(post_rw(&client, &http, body).await, Some(204));
    }
    // A service's log lines, the last one an error.
    let logs = |ts: i64, id: usize| {
        serde_json::json!({"resourceLogs": [{
            "resource": {"attributes": [
                {"key": "service.name", "value": {"stringValue": "payments"}}]},
            "scopeLogs": [{"logRecords": [
                {"timeUnixNano": (ts as i128 * 1_000_000).to_string(), "severityText": "INFO",
                 "severityNumber": 9, "body": {"stringValue": format!("charge {id} approved")}},
                {"timeUnixNano": (ts as i128 * 1_000_000 + 1).to_string(), "severityText": "ERROR",
                 "severityNumber": 17,
                 "body": {"stringValue": format!("card {id} declined: issuer unavailable")}}]}]}]})
        .to_string()
    };
    let res = client
        .post(format!("http://{}/v1/logs", daemon.otlp_http))
        .header("content-type", "application/json")
        .body(logs(start + (n as i64 - 10) * STEP_MS, 1234))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let patterns_url =
        |http: std::net::SocketAddr| format!("http://{http}/api/v1/log-patterns?service=payments");
    let patterns_before =
        get_json(&client, &patterns_url(daemon.http)).await.unwrap()["data"].clone();
    assert_eq!(
        patterns_before.as_array().map(Vec::len),
        Some(2),
        "{patterns_before}"
    );
    settled(daemon.http, (3 * (n - 200)) as f64).await;
    let before = series(&client, daemon.http, "cpu_busy").await;
    assert_eq!(before.len(), 3);
    for s in &before {
        assert_eq!(s["readiness"]["state"], "ready", "{s}");
    }
    let forecast_before = history(&client, &http, "cpu_busy").await;
    daemon.shutdown().await.unwrap();

    // The same directory, new ports.
    cfg.server.http = "127.0.0.1:0".parse().unwrap();
    cfg.server.otlp_grpc = "127.0.0.1:0".parse().unwrap();
    cfg.server.otlp_http = "127.0.0.1:0".parse().unwrap();
    let daemon = common::start(cfg).await;
    let after = series(&client, daemon.http, "cpu_busy").await;
    let key = |v: &Value| v["labels"]["host"].as_str().unwrap_or("").to_string();
    let fields = |v: &Value| {
        (
            key(v),
            v["readiness"].clone(),
            v["periods_seconds"].clone(),
            v["method"].clone(),
            v["steps"].clone(),
            v["points_total"].clone(),
            v["last_ms"].clone(),
        )
    };
    let mut b: Vec<_> = before.iter().map(fields).collect();
    let mut a: Vec<_> = after.iter().map(fields).collect();
    b.sort_by(|x, y| x.0.cmp(&y.0));
    a.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a, b);
    assert_eq!(
        history(&client, &daemon.http.to_string(), "cpu_busy").await,
        forecast_before
    );
    // Log templates came back with their counts and first-seen times: the same error line is
    // not a new pattern.
    let patterns_after =
        get_json(&client, &patterns_url(daemon.http)).await.unwrap()["data"].clone();
    assert_eq!(patterns_after, patterns_before);
    let res = client
        .post(format!("http://{}/v1/logs", daemon.otlp_http))
        .header("content-type", "application/json")
        .body(logs(start + (n as i64 - 5) * STEP_MS, 5678))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let list = get_json(&client, &patterns_url(daemon.http)).await.unwrap()["data"].clone();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|p| p["count"] == 2), "{list:?}");

    // Live data goes on being scored with the restored baselines: no fit is queued for it.
    for i in n..n + 5 {
        let body = write_request(&hosts, start + i as i64 * STEP_MS, |h| cycle(h, i));
        assert_eq!(
            post_rw(&client, &daemon.http.to_string(), body).await,
            Some(204)
        );
    }
    let text = eventually(
        Duration::from_secs(60),
        "the new steps to be scored",
        || {
            let client = client.clone();
            let http = daemon.http;
            async move {
                let text = metrics_text(&client, http).await?;
                (sample_value(&text, "presage_steps_scored_total ")? >= 3.0 * 4.0).then_some(text)
            }
        },
    )
    .await;
    assert_eq!(sample_value(&text, "presage_fits_queued_total "), Some(0.0));
    assert_eq!(
        sample_value(&text, "presage_store_restored{what=\"models\"}"),
        Some(3.0)
    );
    daemon.shutdown().await.unwrap();
}

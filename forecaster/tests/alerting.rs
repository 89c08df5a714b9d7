//! Alerting end to end: history replayed with its own timestamps through remote_write into the
//! daemon, the built-in rules, and a webhook receiver in the test that records what arrives.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::routing::post;
use common::*;
use parking_lot::Mutex;
use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use presage_forecaster::server::Running;
use serde_json::Value;

const STEP_MS: i64 = 60_000;

/// A webhook receiver recording every payload.
struct Hook {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Value>>>,
}

async fn hook() -> Hook {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/hook",
            post(
                |State(r): State<Arc<Mutex<Vec<Value>>>>, Json(v): Json<Value>| async move {
                    r.lock().push(v);
                    "ok"
                },
            ),
        )
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Hook { addr, received }
}

impl Hook {
    /// `(status, alertname, labels)` of every alert in every payload so far.
    fn alerts(&self) -> Vec<(String, String, Value)> {
        self.received
            .lock()
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                (
                    a["status"].as_str().unwrap_or("").to_string(),
                    a["labels"]["alertname"].as_str().unwrap_or("").to_string(),
                    a["labels"].clone(),
                )
            })
            .collect()
    }
}

async fn daemon(hook: &Hook) -> Running {
    let mut cfg = test_config();
    let extra = presage_config::ForecasterConfig::from_toml(
        &format!(
            r#"
[[receivers]]
name = "hook"
webhook = {{ url = "http://{}/hook" }}

[[routes]]
receivers = ["hook"]
group_by = ["alertname", "host_name", "mountpoint"]
group_wait = "1s"
group_interval = "2s"
repeat_interval = "1h"
"#,
            hook.addr
        ),
        "alerting.toml",
    )
    .expect("valid alerting config");
    cfg.receivers = extra.receivers;
    cfg.routes = extra.routes;
    start(cfg).await
}

/// A series to replay: its labels and `(ms, value)` points.
type Replayed = (Vec<Label>, Vec<(i64, f64)>);

/// Sends `series` (labels, points) through remote_write, 240 steps per request, in time order.
async fn replay(http: SocketAddr, series: &[Replayed]) {
    let client = client();
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    for from in (0..n).step_by(240) {
        let body = encode(&WriteRequest {
            timeseries: series
                .iter()
                .map(|(l, pts)| TimeSeries {
                    labels: l.clone(),
                    samples: pts
                        .iter()
                        .skip(from)
                        .take(240)
                        .map(|&(timestamp, value)| Sample { value, timestamp })
                        .collect(),
                    histograms: vec![],
                })
                .collect(),
            metadata: vec![],
        });
        let res = client
            .post(format!("http://{http}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("remote_write");
        assert!(res.status().is_success(), "{}", res.status());
    }
}

async fn api_alerts(http: SocketAddr) -> Vec<Value> {
    get_json(&client(), &format!("http://{http}/api/v1/alerts"))
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
}

fn noise(i: usize, seed: u64) -> f64 {
    let x = (i as u64 ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(6_364_136_223_846_793_005);
    ((x >> 40) % 1000) as f64 / 1000.0 - 0.5
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filling_disk_alerts_before_the_crossing_with_the_truth_inside_p10_p90() {
    let hook = hook().await;
    let running = daemon(&hook).await;
    let http = running.http;

    // /var fills at 4.8 percentage points an hour with an hourly log-rotation sawtooth: its
    // envelope reaches 90% at step 488. Seven hours are replayed, ending about 68 minutes
    // before the crossing.
    let n = 420;
    let t0 = start_of_replay(n);
    let usage = |i: usize| 0.50 + 0.0008 * i as f64 + 0.01 * (i % 60) as f64 / 60.0;
    let crossing = (0..).find(|&i| usage(i) >= 0.9).expect("it crosses");
    let crossing_ms = t0 + crossing as i64 * STEP_MS;
    let points: Vec<(i64, f64)> = (0..n)
        .map(|i| (t0 + i as i64 * STEP_MS, usage(i)))
        .collect();
    replay(
        http,
        &[(
            labels(&[
                ("__name__", "system_filesystem_utilization"),
                ("host_name", "db1"),
                ("mountpoint", "/var"),
                ("mode", "rw"),
            ]),
            points,
        )],
    )
    .await;
    settled(http, (n - 40) as f64).await;

    eventually(Duration::from_secs(30), "the DiskWillFill webhook", || {
        let got = hook
            .alerts()
            .into_iter()
            .any(|(status, name, _)| status == "firing" && name == "DiskWillFill");
        async move { got.then_some(()) }
    })
    .await;
    let alerts = api_alerts(http).await;
    let disk = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "DiskWillFill")
        .expect("the alert is listed");
    assert_eq!(disk["state"], "firing", "{disk:#}");
    assert_eq!(disk["labels"]["mountpoint"], "/var");
    let fired = disk["fired_at_ms"].as_i64().expect("fired_at_ms");
    assert!(
        fired < crossing_ms,
        "fired at {fired}, crossing at {crossing_ms}"
    );
    let eta = &disk["explanation"]["eta"];
    let seen = disk["last_seen_ms"].as_i64().expect("last_seen_ms");
    let truth = (crossing_ms - seen) as f64 / 1000.0;
    let (p10, p90) = (
        eta["p10_seconds"].as_f64().expect("p10"),
        eta["p90_seconds"].as_f64().expect("p90"),
    );
    assert!(
        p10 <= truth && truth <= p90,
        "true remaining {truth}s outside P10 {p10}s .. P90 {p90}s: {disk:#}"
    );
    let suggestion = disk["annotations"]["suggestion"].as_str().unwrap_or("");
    assert!(!suggestion.is_empty(), "{disk:#}");
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_spike_gives_one_anomaly_alert_and_a_silence_mutes_its_twin() {
    let hook = hook().await;
    let running = daemon(&hook).await;
    let http = running.http;
    let client = client();

    // Host b is in maintenance: silenced before anything happens.
    let res = client
        .post(format!("http://{http}/api/v1/silences"))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({
                "matchers": [{"name": "host_name", "value": "b", "isRegex": false}],
                "duration": "30d",
                "createdBy": "test",
                "comment": "maintenance",
            })
            .to_string(),
        )
        .send()
        .await
        .expect("create silence");
    assert!(
        res.status().is_success(),
        "{}",
        res.text().await.unwrap_or_default()
    );

    // Three days of a daily cycle on two hosts, the same 20-minute spike on both on the third
    // afternoon, then two quiet hours.
    let day = 1440;
    let n = 3 * day;
    let spike = 2 * day + 900..2 * day + 920;
    let t0 = start_of_replay(n);
    let cpu = |i: usize, seed: u64| {
        let daily = (i as f64 * std::f64::consts::TAU / day as f64).sin();
        let burst = if spike.contains(&i) { 45.0 } else { 0.0 };
        40.0 + 15.0 * daily + 2.0 * noise(i, seed) + burst
    };
    let series: Vec<Replayed> = [("a", 1), ("b", 2)]
        .iter()
        .map(|&(host, seed)| {
            (
                labels(&[("__name__", "app_cpu_percent"), ("host_name", host)]),
                (0..n)
                    .map(|i| (t0 + i as i64 * STEP_MS, cpu(i, seed)))
                    .collect(),
            )
        })
        .collect();
    replay(http, &series).await;
    settled(http, 2.0 * (n - 40) as f64).await;

    // Replayed at full speed, the spike's alert may fire and resolve before its group's first
    // notification: it is then reported once, as resolved, with when it started and ended.
    eventually(Duration::from_secs(30), "the anomaly webhook", || {
        let got = hook
            .alerts()
            .into_iter()
            .any(|(_, name, _)| name == "SeriesAnomalous");
        async move { got.then_some(()) }
    })
    .await;
    let notified = hook.alerts();
    let for_a: std::collections::BTreeSet<String> = notified
        .iter()
        .filter(|(_, name, l)| name == "SeriesAnomalous" && l["host_name"] == "a")
        .map(|(_, _, l)| l.to_string())
        .collect();
    assert_eq!(
        for_a.len(),
        1,
        "one anomaly alert for host a: {notified:#?}"
    );
    assert!(
        notified.iter().all(|(_, _, l)| l["host_name"] != "b"),
        "the silenced host was notified: {notified:#?}"
    );
    let alerts = api_alerts(http).await;
    let a = alerts
        .iter()
        .find(|a| a["labels"]["host_name"] == "a" && a["labels"]["alertname"] == "SeriesAnomalous")
        .expect("host a's alert is listed");
    let since = a["active_since_ms"].as_i64().expect("active_since_ms");
    // The excursion may start a step or two before the burst's first full step.
    let (from, to) = (
        t0 + (spike.start as i64 - 5) * STEP_MS,
        t0 + spike.end as i64 * STEP_MS,
    );
    assert!(
        from <= since && since < to,
        "the alert starts at {since}, the spike at {from}..{to}"
    );
    let b = alerts
        .iter()
        .find(|a| a["labels"]["host_name"] == "b" && a["labels"]["alertname"] == "SeriesAnomalous")
        .expect("host b's alert is listed");
    assert!(
        b["silenced_by"].as_array().is_some_and(|s| !s.is_empty()),
        "{b:#}"
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_week_of_daily_cycles_gives_no_alert() {
    let hook = hook().await;
    let running = daemon(&hook).await;
    let http = running.http;

    // A week of request rates with a daily cycle (a sharper evening peak than a sine) and
    // noise, on two hosts. (A first weekend that differs from the weekdays is not in it: with
    // no weekend in its history yet, the model rightly finds the first one unusual.)
    let day = 1440;
    let n = 7 * day;
    let t0 = start_of_replay(n);
    let rate = |i: usize, seed: u64| {
        let phase = i as f64 * std::f64::consts::TAU / day as f64;
        let daily = phase.sin() + 0.3 * (2.0 * phase).sin();
        200.0 + 80.0 * daily + 8.0 * noise(i, seed)
    };
    let series: Vec<Replayed> = [("a", 3), ("b", 4)]
        .iter()
        .map(|&(host, seed)| {
            (
                labels(&[
                    ("__name__", "http_requests_per_second"),
                    ("host_name", host),
                ]),
                (0..n)
                    .map(|i| (t0 + i as i64 * STEP_MS, rate(i, seed)))
                    .collect(),
            )
        })
        .collect();
    replay(http, &series).await;
    settled(http, 2.0 * (n - 40) as f64).await;
    // Not one alert, not even one that fired and resolved: nothing could have been notified.
    let alerts = api_alerts(http).await;
    assert!(alerts.is_empty(), "alerts from a normal week: {alerts:#?}");
    assert!(hook.alerts().is_empty(), "{:#?}", hook.alerts());
    running.shutdown().await.expect("clean shutdown");
}

/// One OTLP/HTTP JSON logs export of `records` `(ms, severity text, severity number, body)`
/// from the `checkout` service on host `web-1`.
fn checkout_logs(records: &[(i64, &str, i32, String)]) -> String {
    let records: Vec<Value> = records
        .iter()
        .map(|(ts, text, number, body)| {
            serde_json::json!({
                "timeUnixNano": (*ts as i128 * 1_000_000).to_string(),
                "severityText": text,
                "severityNumber": number,
                "body": { "stringValue": body },
            })
        })
        .collect();
    serde_json::json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "checkout" } },
                { "key": "host.name", "value": { "stringValue": "web-1" } },
            ]},
            "scopeLogs": [{ "logRecords": records }],
        }]
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_burst_and_the_latency_it_causes_tell_one_story() {
    let hook = hook().await;
    let running = daemon(&hook).await;
    let (http, otlp) = (running.http, running.otlp_http);
    let client = client();

    // Three days of the checkout service on web-1: a warning template at one to three lines a
    // minute and a p99 latency with a daily cycle. On the third afternoon an incident: the
    // warning bursts to 40 lines a minute for 15 minutes, a new error pattern appears, and
    // latency leaves its band a minute later.
    let day = 1440;
    let n = 3 * day;
    let incident = 2 * day + 900;
    let t0 = start_of_replay(n);
    let at = |i: usize| t0 + i as i64 * STEP_MS;
    let burst = incident..incident + 15;
    let slow = incident + 2..incident + 17;
    let latency = |i: usize| {
        let daily = (i as f64 * std::f64::consts::TAU / day as f64).sin();
        let spike = if slow.contains(&i) { 0.6 } else { 0.0 };
        0.2 + 0.05 * daily + 0.01 * noise(i, 5) + spike
    };
    let warn_lines = |i: usize| {
        if burst.contains(&i) {
            40
        } else {
            1 + (noise(i, 6) + 0.5).mul_add(2.99, 0.0) as usize
        }
    };
    let error_at = at(incident + 1) + 7_000;
    let error_line = |k: usize| format!("payment gateway returned 503 for order {}", 90_000 + k);
    let metric = labels(&[
        ("__name__", "http_server_latency_p99_seconds"),
        ("host_name", "web-1"),
        ("service_name", "checkout"),
    ]);
    for from in (0..n).step_by(240) {
        let to = (from + 240).min(n);
        // Logs first, then the metric of the same minutes.
        let mut records = Vec::new();
        for i in from..to {
            for k in 0..warn_lines(i) {
                records.push((
                    at(i) + 1_000 + k as i64 * 1_000,
                    "WARN",
                    13,
                    format!(
                        "upstream 10.0.{}.{} timed out after {}ms (attempt {})",
                        i % 7,
                        k % 250,
                        900 + (i * 7 + k) % 300,
                        1 + k % 3
                    ),
                ));
            }
            if (incident + 1..incident + 4).contains(&i) {
                let ts = if i == incident + 1 {
                    error_at
                } else {
                    at(i) + 7_000
                };
                records.push((ts, "ERROR", 17, error_line(i)));
            }
        }
        records.sort_by_key(|r| r.0);
        let res = client
            .post(format!("http://{otlp}/v1/logs"))
            .header("content-type", "application/json")
            .body(checkout_logs(&records))
            .send()
            .await
            .expect("logs export");
        assert!(res.status().is_success(), "{}", res.status());
        let points: Vec<(i64, f64)> = (from..to).map(|i| (at(i), latency(i))).collect();
        replay(http, &[(metric.clone(), points)]).await;
    }
    settled(http, 2.0 * (n - 40) as f64).await;

    // The burst of a known warning template is an anomaly of its rate, with the template.
    let alerts = eventually(Duration::from_secs(30), "the three alerts", || async {
        let alerts = api_alerts(http).await;
        let has = |name: &str| alerts.iter().any(|a| a["labels"]["alertname"] == name);
        (has("LogPatternRateAnomalous") && has("NewErrorLogPattern") && has("SeriesAnomalous"))
            .then_some(alerts)
    })
    .await;
    let named = |name: &str| -> Vec<&Value> {
        alerts
            .iter()
            .filter(|a| a["labels"]["alertname"] == name)
            .collect()
    };
    let rate = named("LogPatternRateAnomalous");
    assert_eq!(rate.len(), 1, "{rate:#?}");
    assert_eq!(rate[0]["labels"]["service"], "checkout");
    assert_eq!(rate[0]["labels"]["host_name"], "web-1");
    let text = rate[0].to_string();
    assert!(
        text.contains("Unusual rate of warn log pattern in checkout")
            && text.contains("timed out after"),
        "{:#}",
        rate[0]
    );
    let since = rate[0]["active_since_ms"]
        .as_i64()
        .expect("active_since_ms");
    assert!(
        at(burst.start) <= since && since < at(burst.end),
        "the rate alert starts at {since}, the burst at {}..{}",
        at(burst.start),
        at(burst.end)
    );
    let error = named("NewErrorLogPattern");
    assert_eq!(error.len(), 1, "{error:#?}");
    assert_eq!(error[0]["labels"]["host_name"], "web-1");
    assert_eq!(error[0]["active_since_ms"], error_at);

    // Latency on the same host tells both: the notification about it names the log alerts
    // and when they started.
    let error_since =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(error_at as u64))
            .to_string();
    let story = eventually(Duration::from_secs(30), "the latency notification", || {
        let found = hook
            .received
            .lock()
            .iter()
            .flat_map(|p| p["alerts"].as_array().cloned().unwrap_or_default())
            .find(|a| {
                a["labels"]["alertname"] == "SeriesAnomalous"
                    && a["labels"]["__name__"].is_null()
                    && a["labels"]["metric"] == "http_server_latency_p99_seconds"
                    && a["annotations"]
                        .to_string()
                        .contains("on the same host or pod during this alert")
            });
        async move { found }
    })
    .await;
    let annotations = story["annotations"].to_string();
    assert!(
        annotations.contains(&format!("NewErrorLogPattern since {error_since}"))
            && annotations.contains("LogPatternRateAnomalous since"),
        "{story:#}"
    );
    running.shutdown().await.expect("clean shutdown");
}

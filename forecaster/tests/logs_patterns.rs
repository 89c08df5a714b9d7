//! Log templates end to end: records from the OpenTelemetry Python SDK become templates with
//! their variable fields masked; a replayed OTLP/HTTP JSON stream in which a new error pattern
//! appears after the warm-up gives one `NewErrorLogPattern` alert with the template, the
//! first-seen time and sample lines, while ordinary variable fields create no new templates.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};

const MIN: i64 = 60_000;

fn export_logs(protocol: &str, endpoint: &str, run_id: &str) {
    let python = require_python_otel();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otel_logs.py");
    let out = Command::new(python)
        .arg(script)
        .args([protocol, endpoint, run_id])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the Python log exporter failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn patterns(client: &reqwest::Client, url: &str) -> Vec<Value> {
    get_json(client, url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
}

fn templates(list: &[Value]) -> Vec<String> {
    let mut t: Vec<String> = list
        .iter()
        .filter_map(|p| p["template"].as_str().map(String::from))
        .collect();
    t.sort();
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_logs_become_masked_templates() {
    let running = start(test_config()).await;
    let http = running.http;
    let endpoint = format!("http://{}", running.otlp_http);
    let run_id = format!("logs-{}", std::process::id());
    {
        let run_id = run_id.clone();
        tokio::task::spawn_blocking(move || export_logs("http", &endpoint, &run_id))
            .await
            .expect("exporter thread");
    }
    let client = client();
    let url = format!("http://{http}/api/v1/log-patterns?service=checkout");
    let list = eventually(Duration::from_secs(10), "45 mined lines", || async {
        let list = patterns(&client, &url).await;
        let lines: u64 = list.iter().filter_map(|p| p["count"].as_u64()).sum();
        (lines == 45).then_some(list)
    })
    .await;
    // 20 + 20 + 5 lines with ids, addresses and durations that all differ: three templates.
    assert_eq!(
        templates(&list),
        vec![
            "payment gateway slow: <NUM> ms for order <HEX>",
            "request <UUID> completed in <DURATION>",
            "user <NUM> logged in from <IP> in <DURATION>",
        ],
        "{list:#?}"
    );
    let warn = list
        .iter()
        .find(|p| p["severity"] == "warn")
        .expect("the warning template");
    assert_eq!(warn["count"], 5);
    assert_eq!(warn["service"], "checkout");
    assert!(warn["first_seen_ms"].as_i64() <= warn["last_seen_ms"].as_i64());
    let samples = warn["samples"].as_array().expect("samples");
    assert!(!samples.is_empty() && samples.len() <= 3, "{samples:?}");
    assert!(
        samples[0]["line"]
            .as_str()
            .is_some_and(|l| l.starts_with("payment gateway slow: 900 ms for order 0x00beef00")),
        "{samples:?}"
    );
    assert!(warn.get("anomaly").is_some(), "{warn:#}");

    // The busiest first, `limit` honoured, unknown services empty.
    let top = patterns(
        &client,
        &format!("http://{http}/api/v1/log-patterns?limit=1"),
    )
    .await;
    assert_eq!(top.len(), 1);
    assert_eq!(top[0]["count"], 20);
    assert!(
        patterns(
            &client,
            &format!("http://{http}/api/v1/log-patterns?service=nope")
        )
        .await
        .is_empty()
    );

    // Counters on /metrics, and the count series in the store.
    let metrics = metrics_text(&client, http).await.expect("metrics");
    let id = warn["id"].as_str().expect("id");
    assert_eq!(
        sample_value(
            &metrics,
            &format!(
                "presage_log_pattern_lines_total{{service=\"checkout\",template_id=\"{id}\",severity=\"warn\"}} "
            )
        ),
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(sample_value(&metrics, "presage_log_templates "), Some(3.0));
    assert_eq!(
        sample_value(&metrics, "presage_log_template_evictions_total "),
        Some(0.0)
    );
    let count_series = series(
        &client,
        http,
        &format!(r#"presage_log_pattern_lines{{template_id="{id}"}}"#),
    )
    .await;
    assert_eq!(count_series.len(), 1, "{count_series:?}");
    assert_eq!(count_series[0]["labels"]["severity"], "warn");
    assert_eq!(count_series[0]["labels"]["k8s_pod_name"], "checkout-7d9f");
    assert_eq!(
        count_series[0]["labels"]["host_name"],
        format!("web-{run_id}")
    );
    running.shutdown().await.expect("clean shutdown");
}

fn record(ts_ms: i64, severity: (&str, i32), body: &str) -> Value {
    json!({
        "timeUnixNano": (ts_ms as i128 * 1_000_000).to_string(),
        "severityText": severity.0,
        "severityNumber": severity.1,
        "body": { "stringValue": body },
    })
}

fn export_body(records: Vec<Value>) -> Value {
    json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                { "key": "service.name", "value": { "stringValue": "payments" } },
                { "key": "host.name", "value": { "stringValue": "pay-1" } },
            ]},
            "scopeLogs": [{ "logRecords": records }],
        }]
    })
}

const INFO: (&str, i32) = ("INFO", 9);
const WARN: (&str, i32) = ("WARN", 13);
const ERROR: (&str, i32) = ("ERROR", 17);

/// A minute of ordinary traffic: ids, addresses and durations differ on every line.
fn ordinary_minute(start_ms: i64, minute: i64) -> Vec<Value> {
    let mut out = Vec::new();
    for i in 0..6 {
        let ts = start_ms + i * 9_000 + 500;
        let n = minute * 6 + i;
        out.push(record(
            ts,
            INFO,
            &format!(
                "charge {} for customer {} approved in {}ms",
                format_args!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    n * 7919,
                    n,
                    n,
                    n,
                    n * 31
                ),
                10_000 + n * 13,
                20 + n % 50
            ),
        ));
        out.push(record(
            ts + 1,
            INFO,
            &format!(
                "GET /api/orders/{} from 10.1.{}.{} took {}.{}s",
                500 + n,
                n % 8,
                n % 250,
                n % 3,
                n % 10
            ),
        ));
    }
    if minute % 3 == 0 {
        out.push(record(
            start_ms + 30_000,
            WARN,
            &format!(
                "retrying settlement batch {} after {}ms",
                70 + minute,
                250 + minute
            ),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_error_pattern_after_warmup_alerts_once() {
    let mut cfg = test_config();
    cfg.logs.warmup = Duration::from_secs(600);
    let running = start(cfg).await;
    let http = running.http;
    let client = client();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    // Whole minutes, two hours back: well inside retention, never in the future.
    let t0 = (now - 2 * 3_600_000).div_euclid(MIN) * MIN;
    let new_error = |n: i64| {
        format!(
            "payment provider rejected card {} with code 0x{:04x}: issuer unavailable",
            4_000 + n,
            0xE1 + n
        )
    };
    let error_at = t0 + 20 * MIN + 15_000;
    for minute in 0..40 {
        let start = t0 + minute * MIN;
        let mut records = ordinary_minute(start, minute);
        // A new INFO pattern after the warm-up: not an error, no alert.
        if minute == 15 {
            records.push(record(
                start + 40_000,
                INFO,
                "feature flag refresh finished for 12 flags",
            ));
        }
        // The new error pattern: first at minute 20, then a few more times.
        if (20..24).contains(&minute) {
            let at = if minute == 20 {
                error_at
            } else {
                start + 15_000
            };
            records.push(record(at, ERROR, &new_error(minute)));
        }
        records.sort_by_key(|r| {
            r["timeUnixNano"]
                .as_str()
                .map(|s| s.parse::<i128>().unwrap_or(0))
        });
        let res = client
            .post(format!("http://{}/v1/logs", running.otlp_http))
            .header("content-type", "application/json")
            .body(export_body(records).to_string())
            .send()
            .await
            .expect("export sent");
        assert!(
            res.status().is_success(),
            "minute {minute}: {}",
            res.status()
        );
    }

    // Ordinary variable fields made no new templates: 3 ordinary ones, the INFO one, the error.
    let url = format!("http://{http}/api/v1/log-patterns?service=payments");
    let list = patterns(&client, &url).await;
    assert_eq!(
        templates(&list),
        vec![
            "GET /api/orders/<NUM> from <IP> took <DURATION>",
            "charge <UUID> for customer <NUM> approved in <DURATION>",
            "feature flag refresh finished for <NUM> flags",
            "payment provider rejected card <NUM> with code <HEX>: issuer unavailable",
            "retrying settlement batch <NUM> after <DURATION>",
        ],
        "{list:#?}"
    );
    let error = list
        .iter()
        .find(|p| p["severity"] == "error")
        .expect("the error template");
    assert_eq!(error["count"], 4);
    assert_eq!(error["first_seen_ms"], error_at);
    let error_id = error["id"].as_str().expect("id").to_string();

    // One alert, for the error template, telling the template, first-seen time and a sample.
    let alerts_url = format!("http://{http}/api/v1/alerts");
    let alerts = eventually(
        Duration::from_secs(20),
        "a NewErrorLogPattern alert",
        || async {
            let v = get_json(&client, &alerts_url).await?;
            let list: Vec<Value> = v["data"]
                .as_array()?
                .iter()
                .filter(|a| a["labels"]["alertname"] == "NewErrorLogPattern")
                .cloned()
                .collect();
            (!list.is_empty()).then_some(list)
        },
    )
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(alert["labels"]["template_id"], error_id.as_str());
    assert_eq!(alert["labels"]["service"], "payments");
    assert_eq!(alert["labels"]["host_name"], "pay-1");
    let text = alert.to_string();
    assert!(
        text.contains("payment provider rejected card <NUM> with code <HEX>: issuer unavailable"),
        "{alert:#}"
    );
    assert!(text.contains(&new_error(20)), "no sample line in {alert:#}");
    let first_seen =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(error_at as u64))
            .to_string();
    assert!(
        text.contains(&first_seen),
        "no first-seen {first_seen} in {alert:#}"
    );

    let metrics = metrics_text(&client, http).await.expect("metrics");
    assert_eq!(
        sample_value(&metrics, "presage_log_new_patterns_total "),
        Some(1.0),
        "{metrics}"
    );
    running.shutdown().await.expect("clean shutdown");
}

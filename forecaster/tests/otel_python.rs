//! The OpenTelemetry Python SDK exports a gauge, a counter, a histogram and logs over OTLP gRPC
//! and OTLP HTTP; the series appear through the API with the translated names, labels and
//! values.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn export(protocol: &str, endpoint: &str, run_id: &str) {
    let python = require_python_otel();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/otel_export.py");
    let out = Command::new(python)
        .arg(script)
        .args([protocol, endpoint, run_id])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the Python exporter failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn label<'a>(s: &'a Value, name: &str) -> &'a str {
    s["labels"][name].as_str().unwrap_or("")
}

async fn check_export(protocol: &str) {
    let running = start(test_config()).await;
    let http = running.http;
    let endpoint = match protocol {
        "grpc" => format!("http://{}", running.otlp_grpc),
        _ => format!("http://{}", running.otlp_http),
    };
    let run_id = format!("{protocol}-{}", std::process::id());
    let exporter = {
        let endpoint = endpoint.clone();
        let run_id = run_id.clone();
        let protocol = protocol.to_string();
        tokio::task::spawn_blocking(move || export(&protocol, &endpoint, &run_id))
    };
    exporter.await.expect("exporter thread");

    let client = client();
    let host = format!("web-{run_id}");

    // Gauge: the value as sent, resource attributes promoted to labels.
    let gauge = eventually(Duration::from_secs(10), "the gauge series", || async {
        series(&client, http, "room_temperature")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(label(&gauge, "room"), "lab");
    assert_eq!(label(&gauge, "host_name"), host);
    assert_eq!(label(&gauge, "service_name"), "checkout");
    assert_eq!(label(&gauge, "k8s_pod_name"), "checkout-7d9f");
    assert_eq!(label(&gauge, "job"), "checkout");
    assert_eq!(label(&gauge, "instance"), "checkout-1");
    assert_eq!(gauge["kind"], "gauge");
    let url = format!("http://{http}/api/v1/forecast?series=room_temperature");
    let v = get_json(&client, &url).await.expect("forecast answers");
    let history = v["data"]["series"][0]["history"]
        .as_array()
        .expect("history");
    let last = history.last().expect("a point");
    assert_eq!(last[1], 21.5);

    // Monotonic counter: `_total`, stored as a rate; two cumulative exports give one rate.
    let counter = series(&client, http, "http_requests_total").await;
    assert_eq!(counter.len(), 1, "{counter:?}");
    assert_eq!(counter[0]["kind"], "counter");
    assert_eq!(label(&counter[0], "route"), "/pay");
    // Two explicit flushes plus the final export at shutdown.
    assert!(
        counter[0]["points_total"].as_u64() >= Some(2),
        "{counter:?}"
    );
    let url = format!("http://{http}/api/v1/forecast?series=http_requests_total");
    let v = get_json(&client, &url).await.expect("forecast answers");
    let rates: Vec<f64> = v["data"]["series"][0]["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|p| p[1].as_f64())
        .collect();
    // 30 requests between two exports about 1.1 s apart (the SDK's own timestamps); the final
    // export at shutdown may add a step with rate 0.
    let rate = rates.iter().copied().fold(0.0, f64::max);
    assert!(rate > 5.0 && rate < 60.0, "rate {rate} from {rates:?}");

    // Histogram: count and sum as counters, p50/p90/p99 as gauges.
    assert_eq!(series(&client, http, "http_latency_count").await.len(), 1);
    assert_eq!(series(&client, http, "http_latency_sum").await.len(), 1);
    let quantiles = series(&client, http, "http_latency").await;
    let mut qs: Vec<&str> = quantiles.iter().map(|s| label(s, "quantile")).collect();
    qs.sort_unstable();
    assert_eq!(qs, vec!["0.5", "0.9", "0.99"]);
    // The second export recorded 2..200 in steps of 2: the interval's median is near 100.
    let url = format!(
        "http://{http}/api/v1/forecast?series={}",
        urlencode(r#"http_latency{quantile="0.5"}"#)
    );
    let v = get_json(&client, &url).await.expect("forecast answers");
    let p50 = v["data"]["series"][0]["history"]
        .as_array()
        .and_then(|h| h.last())
        .and_then(|p| p[1].as_f64())
        .expect("a p50");
    // The SDK's default bucket bounds around 100 are 75 and 100, so interpolation lands
    // within one bucket of the true median.
    assert!((75.0..=150.0).contains(&p50), "p50 {p50}");

    // Logs: buffered with their resource labels and severity.
    let url = format!(
        "http://{http}/api/v1/logs?match[]={}",
        urlencode(&format!(r#"{{host_name="{host}"}}"#))
    );
    let logs = eventually(Duration::from_secs(10), "the log record", || async {
        get_json(&client, &url)
            .await
            .and_then(|v| v["data"].as_array().cloned())
            .filter(|a| !a.is_empty())
    })
    .await;
    assert_eq!(logs[0]["severity"], "WARN");
    assert_eq!(
        logs[0]["body"],
        format!("payment gateway slow: 1234 ms ({run_id})")
    );
    assert_eq!(logs[0]["labels"]["service_name"], "checkout");

    // Nothing was rejected.
    let metrics = metrics_text(&client, http).await.expect("metrics");
    let proto = if protocol == "grpc" {
        "otlp_grpc"
    } else {
        "otlp_http"
    };
    let accepted = sample_value(
        &metrics,
        &format!("presage_samples_accepted_total{{protocol=\"{proto}\"}} "),
    )
    .unwrap_or(0.0);
    assert!(accepted >= 10.0, "accepted {accepted}\n{metrics}");
    assert!(
        !metrics.lines().any(|l| l.starts_with(&format!(
            "presage_samples_rejected_total{{protocol=\"{proto}\""
        )) && !l.ends_with(" 0")),
        "{metrics}"
    );
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc() {
    check_export("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_http() {
    check_export("http").await;
}

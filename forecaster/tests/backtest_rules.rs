//! `presage backtest --rules CONFIG --history DIR`: three days of history (a latency with a
//! daily cycle and a 20-minute spike, a disk that starts filling in the last seven hours)
//! written into a daemon and exported with `presage export`, then replayed through the rules of
//! a configuration. The anomaly rule fires at the spike and resolves after it, the breach rule
//! fires while the disk fills (still firing at the end, before the crossing), and a rule whose
//! threshold is never reached is reported with 0 firings.

// Built with the `parquet` feature only (`scripts/test` enables every feature).
#![cfg(feature = "parquet")]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;

use common::*;
use presage_forecaster::ingest::remote_write::{Sample, TimeSeries, WriteRequest, encode};
use serde_json::Value;

const STEP_MS: i64 = 60_000;
const DAY: usize = 1440;
const N: usize = 3 * DAY;
const SPIKE: std::ops::Range<usize> = 2 * DAY + 900..2 * DAY + 920;
const FILL_FROM: usize = N - 420;

fn noise(i: usize, seed: u64) -> f64 {
    let x = (i as u64 ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(6_364_136_223_846_793_005);
    ((x >> 40) % 1000) as f64 / 1000.0 - 0.5
}

type Series = (Vec<(&'static str, &'static str)>, Vec<(i64, f64)>);

fn generate(t0: i64) -> Vec<Series> {
    let daily = |i: usize| (i as f64 * std::f64::consts::TAU / DAY as f64).sin();
    let at = |i: usize| t0 + i as i64 * STEP_MS;
    let latency = |host: &'static str, seed: u64| {
        (
            vec![("__name__", "app_latency_seconds"), ("host_name", host)],
            (0..N)
                .map(|i| {
                    let burst = if host == "a" && SPIKE.contains(&i) {
                        0.5
                    } else {
                        0.0
                    };
                    (
                        at(i),
                        0.2 + 0.05 * daily(i) + 0.004 * noise(i, seed) + burst,
                    )
                })
                .collect(),
        )
    };
    let disk = (
        vec![
            ("__name__", "system_filesystem_utilization"),
            ("host_name", "db1"),
            ("mountpoint", "/var"),
        ],
        (0..N)
            .map(|i| {
                let v = if i < FILL_FROM {
                    0.5 + 0.002 * noise(i, 7)
                } else {
                    let k = i - FILL_FROM;
                    0.5 + 0.0008 * k as f64 + 0.01 * (k % 60) as f64 / 60.0
                };
                (at(i), v)
            })
            .collect(),
    );
    vec![latency("a", 1), latency("b", 2), disk]
}

async fn write_history(http: SocketAddr, series: &[Series]) {
    let client = client();
    for from in (0..N).step_by(240) {
        let body = encode(&WriteRequest {
            timeseries: series
                .iter()
                .map(|(l, points)| TimeSeries {
                    labels: labels(l),
                    samples: points
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
        let res = post_remote_write(&client, http, body, true)
            .await
            .expect("remote_write");
        assert!(res.status().is_success(), "{}", res.status());
    }
}

async fn presage(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_presage"))
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("PRESAGE_LOG")
            .output()
            .expect("run presage")
    })
    .await
    .expect("join")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const RULES: &str = r#"
[alerting]
default_rules = false

[[rules]]
name = "LatencyAnomalous"
kind = "anomaly"
select = 'app_latency_seconds'
min_score = 0.6
persistent = true

[[rules]]
name = "VarWillFill"
kind = "breach"
select = 'system_filesystem_utilization{mountpoint="/var"}'
threshold = 0.9
horizon = "6h"
labels = { severity = "critical" }

[[rules]]
name = "LatencyAboveOneMinute"
kind = "static"
select = 'app_latency_seconds'
threshold = 60
"#;

fn rule<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rules"]
        .as_array()
        .and_then(|rules| rules.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("rule {name} is not in the report: {report:#}"))
}

async fn exported_history(dir: &Path) -> i64 {
    let t0 = start_of_replay(N);
    let running = start(test_config()).await;
    write_history(running.http, &generate(t0)).await;
    let out = presage(vec![
        "export".into(),
        "--format".into(),
        "parquet".into(),
        "--out".into(),
        dir.display().to_string(),
        "--from".into(),
        format!("http://{}", running.http),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    running.shutdown().await.expect("clean shutdown");
    t0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_replayed_over_exported_history() {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = dir.path().join("history");
    let t0 = exported_history(&history).await;
    let config = dir.path().join("rules.toml");
    std::fs::write(&config, RULES).unwrap();

    let out = presage(vec![
        "backtest".into(),
        "--rules".into(),
        config.display().to_string(),
        "--history".into(),
        history.display().to_string(),
        "--format".into(),
        "json".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    assert_eq!(report["series"], 3, "{report:#}");
    assert_eq!(report["samples"], 3 * N, "{report:#}");
    assert_eq!(
        report["rules"].as_array().map(Vec::len),
        Some(3),
        "{report:#}"
    );

    // The spike: one firing, on host a, starting at the spike (the excursion may start a
    // step or two before the burst's first full step) and resolved after it.
    let anomaly = rule(&report, "LatencyAnomalous");
    let firings = anomaly["firings"].as_array().expect("firings");
    assert_eq!(firings.len(), 1, "{anomaly:#}");
    let f = &firings[0];
    assert_eq!(f["labels"]["host_name"], "a", "{f:#}");
    assert_eq!(f["labels"]["alertname"], "LatencyAnomalous", "{f:#}");
    let start = f["start_ms"].as_i64().expect("start_ms");
    let spike_from = t0 + (SPIKE.start as i64 - 5) * STEP_MS;
    let spike_to = t0 + SPIKE.end as i64 * STEP_MS;
    assert!(
        spike_from <= start && start < spike_to,
        "fired at {start}, the spike is at {spike_from}..{spike_to}: {f:#}"
    );
    let end = f["end_ms"].as_i64().expect("resolved after the spike");
    assert!(
        end >= spike_to - STEP_MS && end < spike_to + 120 * STEP_MS,
        "resolved at {end}, the spike ended at {spike_to}: {f:#}"
    );
    assert!(!f["explanation"].as_str().unwrap_or("").is_empty(), "{f:#}");

    // The disk: fires once after it starts filling, and is still firing at the end (the
    // crossing lies after the history).
    let breach = rule(&report, "VarWillFill");
    let firings = breach["firings"].as_array().expect("firings");
    assert_eq!(firings.len(), 1, "{breach:#}");
    let f = &firings[0];
    assert_eq!(f["labels"]["mountpoint"], "/var", "{f:#}");
    assert_eq!(f["labels"]["severity"], "critical", "{f:#}");
    let start = f["start_ms"].as_i64().expect("start_ms");
    let fill_from = t0 + FILL_FROM as i64 * STEP_MS;
    let last = t0 + (N as i64 - 1) * STEP_MS;
    assert!(
        fill_from < start && start <= last,
        "fired at {start}, filling from {fill_from} to {last}: {f:#}"
    );
    assert!(f["end_ms"].is_null(), "{f:#}");

    let quiet = rule(&report, "LatencyAboveOneMinute");
    assert_eq!(
        quiet["firings"].as_array().map(Vec::len),
        Some(0),
        "{quiet:#}"
    );
    assert_eq!(quiet["kind"], "static");

    // The same as text.
    let out = presage(vec![
        "backtest".into(),
        "--rules".into(),
        config.display().to_string(),
        "--history".into(),
        history.display().to_string(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    for line in [
        "3 series, 12960 samples, ",
        "LatencyAnomalous (anomaly): fired 1 time",
        "VarWillFill (breach): fired 1 time",
        "→ still firing  {alertname=\"VarWillFill\"",
        "LatencyAboveOneMinute (static): fired 0 times",
    ] {
        assert!(stdout.contains(line), "no `{line}` in:\n{stdout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtest_arguments_and_inputs_are_checked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("rules.toml");
    std::fs::write(&config, RULES).unwrap();
    let missing = dir.path().join("missing");
    let out = presage(vec![
        "backtest".into(),
        "--rules".into(),
        config.display().to_string(),
        "--history".into(),
        missing.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}: no such folder", missing.display())),
        "{}",
        text(&out)
    );
    // --rules needs --history, and does not mix with the CSV mode.
    let out = presage(vec![
        "backtest".into(),
        "--rules".into(),
        config.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = presage(vec![
        "backtest".into(),
        "--rules".into(),
        config.display().to_string(),
        "--history".into(),
        missing.display().to_string(),
        "--input".into(),
        "x.csv".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    // An invalid configuration exits 64, as everywhere.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[rules]]\nname = \"x\"\nkind = \"breach\"\n").unwrap();
    let out = presage(vec![
        "backtest".into(),
        "--rules".into(),
        bad.display().to_string(),
        "--history".into(),
        missing.display().to_string(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
}

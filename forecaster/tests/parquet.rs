//! `presage export --format parquet` and `presage import`: three days of history (a daily
//! cycle with a spike, a disk filling, a counter, a gap, a series lacking a label) written into
//! one daemon, exported with the `presage` binary, read back with polars (through
//! presage-history) and with Python's pyarrow, imported into a second daemon and exported again:
//! every series, step timestamp and value must come back bit for bit.

// Built with the `parquet` feature only (`scripts/test` enables every feature).
#![cfg(feature = "parquet")]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::*;
use presage_forecaster::ingest::remote_write::{Sample, TimeSeries, WriteRequest, encode};
use presage_forecaster::server::Running;
use presage_history::SeriesHistory;
use serde_json::Value;

const STEP_MS: i64 = 60_000;
const DAY: usize = 1440;
const N: usize = 3 * DAY;

/// A generated series: labels, `(ms, value)` points, and whether it is a counter.
struct Generated {
    labels: Vec<(&'static str, &'static str)>,
    points: Vec<(i64, f64)>,
    counter: bool,
}

fn noise(i: usize, seed: u64) -> f64 {
    let x = (i as u64 ^ seed.wrapping_mul(0x9E37_79B9)).wrapping_mul(6_364_136_223_846_793_005);
    ((x >> 40) % 1000) as f64 / 1000.0 - 0.5
}

/// Three days of one-minute steps ending about an hour ago.
fn generate(t0: i64) -> Vec<Generated> {
    let daily = |i: usize| (i as f64 * std::f64::consts::TAU / DAY as f64).sin();
    let spike = 2 * DAY + 900..2 * DAY + 920;
    let at = |i: usize| t0 + i as i64 * STEP_MS;
    let latency = |host: &'static str, seed: u64, gap: bool| Generated {
        labels: vec![("__name__", "app_latency_seconds"), ("host_name", host)],
        points: (0..N)
            .filter(|i| !(gap && (300..330).contains(i)))
            .map(|i| {
                let burst = if host == "a" && spike.contains(&i) {
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
        counter: false,
    };
    let fill_from = N - 420;
    let var = Generated {
        labels: vec![
            ("__name__", "system_filesystem_utilization"),
            ("host_name", "db1"),
            ("mode", "rw"),
            ("mountpoint", "/var"),
        ],
        points: (0..N)
            .map(|i| {
                let v = if i < fill_from {
                    0.5 + 0.002 * noise(i, 7)
                } else {
                    let k = i - fill_from;
                    0.5 + 0.0008 * k as f64 + 0.01 * (k % 60) as f64 / 60.0
                };
                (at(i), v)
            })
            .collect(),
        counter: false,
    };
    // No `mode` label: a null in the metric's `mode` column.
    let root = Generated {
        labels: vec![
            ("__name__", "system_filesystem_utilization"),
            ("host_name", "db1"),
            ("mountpoint", "/"),
        ],
        points: (0..N).map(|i| (at(i), 0.3 + 0.001 * noise(i, 9))).collect(),
        counter: false,
    };
    let mut total = 1.0e6;
    let requests = Generated {
        labels: vec![("__name__", "http_requests_total"), ("host_name", "a")],
        points: (0..N)
            .map(|i| {
                total += (600.0 + 300.0 * daily(i) + 20.0 * noise(i, 11)).round();
                (at(i), total)
            })
            .collect(),
        counter: true,
    };
    vec![
        latency("a", 1, false),
        latency("b", 2, true),
        var,
        root,
        requests,
    ]
}

fn label_map(labels: &[(&str, &str)]) -> BTreeMap<String, String> {
    labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// What a daemon holds of a generated series: gauges as sent (one point per step), counters as
/// the per-second rate of each step (the first point only sets the counter's start).
fn held(g: &Generated) -> SeriesHistory {
    let points = if g.counter {
        g.points
            .windows(2)
            .map(|w| {
                (
                    w[1].0,
                    (w[1].1 - w[0].1) / ((w[1].0 - w[0].0) as f64 / 1000.0),
                )
            })
            .collect()
    } else {
        g.points.clone()
    };
    SeriesHistory {
        labels: label_map(&g.labels),
        points,
    }
}

/// Writes the series into the daemon as history (as `presage backfill` does), 240 steps of
/// every series per request.
async fn write_history(http: SocketAddr, series: &[Generated]) {
    let client = client();
    let n = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    for from in (0..n).step_by(240) {
        let body = encode(&WriteRequest {
            timeseries: series
                .iter()
                .map(|s| TimeSeries {
                    labels: labels(&s.labels),
                    samples: s
                        .points
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
        assert!(
            res.status().is_success(),
            "{}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
}

/// Runs the `presage` binary with `args`.
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

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Series (labels, then `(ms, value bits)` points), sorted by labels.
type Bits = Vec<(BTreeMap<String, String>, Vec<(i64, u64)>)>;

/// Every series of a folder, sorted by labels, points as bits.
fn read_bits(dir: &Path) -> Bits {
    let mut out: Vec<_> = presage_history::import(dir)
        .expect("a folder of history")
        .map(|s| {
            let s = s.expect("readable files");
            let points = s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect();
            (s.labels, points)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn bits_of(series: &[SeriesHistory]) -> Bits {
    let mut out: Vec<_> = series
        .iter()
        .map(|s| {
            (
                s.labels.clone(),
                s.points.iter().map(|(t, v)| (*t, v.to_bits())).collect(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `YYYY-MM-DD` of a timestamp (UTC).
fn date_of(ms: i64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms as u64))
        .to_string()[..10]
        .to_string()
}

async fn daemon() -> Running {
    start(test_config()).await
}

/// pyarrow's view of a folder: per metric folder, the schema, the rows, the distinct series,
/// the first and last timestamps (ms) and the sum of the values.
fn pyarrow_view(dir: &Path) -> Value {
    let python = require_program("python3", "apt-get install -y python3");
    let script = r#"
import json, os, sys
try:
    import pyarrow.dataset as ds
    import pyarrow.compute as pc
except ImportError:
    sys.exit("pyarrow is missing: pip install pyarrow")
root = sys.argv[1]
out = {}
for metric in sorted(os.listdir(root)):
    table = ds.dataset(os.path.join(root, metric), format="parquet").to_table()
    labels = [n for n in table.column_names if n not in ("timestamp", "value")]
    series = set(tuple(row[n] for n in labels) for row in table.select(labels).to_pylist())
    ts = pc.cast(table["timestamp"], "int64")
    out[metric] = {
        "schema": {f.name: str(f.type) for f in table.schema},
        "rows": table.num_rows,
        "series": len(series),
        "nulls": {n: table[n].null_count for n in labels},
        "first_ms": pc.min(ts).as_py(),
        "last_ms": pc.max(ts).as_py(),
        "sum": pc.sum(table["value"]).as_py(),
    }
print(json.dumps(out))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pyarrow could not read the export (install it with `pip install pyarrow`, or run .ci/run):\n{}",
        text(&out)
    );
    serde_json::from_slice(&out.stdout).expect("the script's JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_then_import_into_another_daemon_is_exact_and_pyarrow_reads_the_files() {
    let t0 = start_of_replay(N);
    let generated = generate(t0);
    let source = daemon().await;
    write_history(source.http, &generated).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let out_a = dir.path().join("a");
    let started = Instant::now();
    let out = presage(args(&[
        "export",
        "--format",
        "parquet",
        "--out",
        out_a.to_str().unwrap(),
        "--from",
        &format!("http://{}", source.http),
    ]))
    .await;
    let export_secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("presage export: 5 series of 3 metrics"),
        "{}",
        text(&out)
    );
    assert!(
        stderr.contains("1 series are counters or deltas"),
        "{}",
        text(&out)
    );

    // The daemon's history, exactly: gauges as sent, the counter as its per-second rates.
    let want: Vec<SeriesHistory> = generated.iter().map(held).collect();
    let exported = read_bits(&out_a);
    assert_eq!(exported.len(), 5);
    assert_eq!(exported, bits_of(&want));
    let samples: usize = want.iter().map(|s| s.points.len()).sum();
    eprintln!(
        "export: {samples} samples in {export_secs:.2}s ({:.0} samples/s, process included)",
        samples as f64 / export_secs
    );

    // One folder per metric, one file per UTC day.
    let first_day = t0.div_euclid(86_400_000);
    let last_day = (t0 + (N as i64 - 1) * STEP_MS).div_euclid(86_400_000);
    let days: Vec<String> = (first_day..=last_day)
        .map(|d| date_of(d * 86_400_000))
        .collect();
    for metric in [
        "app_latency_seconds",
        "system_filesystem_utilization",
        "http_requests_total",
    ] {
        let mut files: Vec<String> = std::fs::read_dir(out_a.join(metric))
            .unwrap_or_else(|e| panic!("{metric}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let expected: Vec<String> = days.iter().map(|d| format!("{d}.parquet")).collect();
        assert_eq!(files, expected, "{metric}");
    }

    // pyarrow reads each metric's folder as a dataset with the documented schema.
    let view = pyarrow_view(&out_a);
    let fs = &view["system_filesystem_utilization"];
    assert_eq!(
        fs["schema"]["timestamp"], "timestamp[ms, tz=UTC]",
        "{view:#}"
    );
    assert_eq!(fs["schema"]["value"], "double", "{view:#}");
    for column in ["__name__", "host_name", "mode", "mountpoint"] {
        let t = fs["schema"][column].as_str().unwrap_or("");
        // The Parquet type is UTF8; pyarrow takes the Arrow type polars records (string_view).
        assert!(
            ["string", "large_string", "string_view"].contains(&t),
            "{column} is {t}: {view:#}"
        );
    }
    assert_eq!(fs["series"], 2, "{view:#}");
    assert_eq!(fs["rows"], 2 * N, "{view:#}");
    assert_eq!(fs["nulls"]["mode"], N, "the / series has no mode: {view:#}");
    assert_eq!(fs["nulls"]["mountpoint"], 0, "{view:#}");
    for (metric, series) in [
        ("app_latency_seconds", &want[..2]),
        ("system_filesystem_utilization", &want[2..4]),
        ("http_requests_total", &want[4..]),
    ] {
        let v = &view[metric];
        let rows: usize = series.iter().map(|s| s.points.len()).sum();
        assert_eq!(v["rows"], rows, "{metric}: {view:#}");
        assert_eq!(v["series"], series.len(), "{metric}: {view:#}");
        let first = series.iter().map(|s| s.points[0].0).min().unwrap();
        let last = series
            .iter()
            .map(|s| s.points.last().unwrap().0)
            .max()
            .unwrap();
        assert_eq!(v["first_ms"], first, "{metric}: {view:#}");
        assert_eq!(v["last_ms"], last, "{metric}: {view:#}");
        let sum: f64 = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .sum();
        let got = v["sum"].as_f64().expect("sum");
        // Summed in another order: equal to a relative 1e-12.
        assert!(
            (got - sum).abs() <= 1e-12 * sum.abs(),
            "{metric}: pyarrow sums {got}, expected {sum}"
        );
    }

    // Into a second daemon, and out again: the same files' worth of history.
    let target = daemon().await;
    let started = Instant::now();
    let out = presage(args(&[
        "import",
        out_a.to_str().unwrap(),
        "--to",
        &format!("http://{}", target.http),
    ]))
    .await;
    let import_secs = started.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "5/5 series from {} ({} files) into http://{}/: {samples} samples read, {samples} stored",
            out_a.display(),
            3 * days.len(),
            target.http
        )),
        "{}",
        text(&out)
    );
    eprintln!(
        "import: {samples} samples in {import_secs:.2}s ({:.0} samples/s, process included)",
        samples as f64 / import_secs
    );
    let out_b = dir.path().join("b");
    let out = presage(args(&[
        "export",
        "--out",
        out_b.to_str().unwrap(),
        "--from",
        &format!("http://{}", target.http),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_bits(&out_b), exported);
    // The imported counter holds the rates it was exported as: a gauge now.
    let imported = series(&client(), target.http, "http_requests_total").await;
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["kind"], "gauge", "{imported:#?}");

    // A selector exports only what it matches.
    let out_c = dir.path().join("c");
    let out = presage(args(&[
        "export",
        "--out",
        out_c.to_str().unwrap(),
        "--from",
        &format!("http://{}", target.http),
        "--match",
        r#"system_filesystem_utilization{mountpoint="/var"}"#,
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_bits(&out_c), bits_of(&want[2..3]));

    source.shutdown().await.expect("clean shutdown");
    target.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_folders_files_and_daemons_are_reported_with_their_names() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = daemon().await;
    let to = format!("http://{}", running.http);

    let missing = dir.path().join("missing");
    let out = presage(args(&["import", missing.to_str().unwrap(), "--to", &to])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "presage import: {}: no such folder",
            missing.display()
        )),
        "{}",
        text(&out)
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("notes.txt"), "nothing here").unwrap();
    let out = presage(args(&["import", empty.to_str().unwrap(), "--to", &to])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{}: no .parquet files in it or its subfolders",
            empty.display()
        )),
        "{}",
        text(&out)
    );

    let junk = dir.path().join("junk");
    std::fs::create_dir_all(junk.join("m")).unwrap();
    let bad = junk.join("m/2026-01-01.parquet");
    std::fs::write(&bad, "timestamp,value\n1,2\n").unwrap();
    let out = presage(args(&["import", junk.to_str().unwrap(), "--to", &to])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{}: not a readable Parquet file", bad.display())),
        "{}",
        text(&out)
    );

    // Exports refuse a folder that holds files, and say when the daemon is not there.
    let out = presage(args(&[
        "export",
        "--out",
        junk.to_str().unwrap(),
        "--from",
        &to,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!(
            "{}: already holds files; export into a new or empty folder",
            junk.display()
        )),
        "{}",
        text(&out)
    );
    let gone = format!("http://127.0.0.1:{}", free_port());
    let out = presage(args(&[
        "export",
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--from",
        &gone,
        "--retries",
        "0",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot reach presage at {gone}/")),
        "{}",
        text(&out)
    );
    // A daemon without the series: nothing matched is a failure, like backfill's.
    let out = presage(args(&[
        "export",
        "--out",
        dir.path().join("y").to_str().unwrap(),
        "--from",
        &to,
        "--match",
        "no_such_metric",
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no series with history match"),
        "{}",
        text(&out)
    );
    let out = presage(args(&["export", "--format", "csv", "--out", "z"])).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_and_import_send_the_tokens_of_a_daemon_with_auth() {
    let dir = tempfile::tempdir().expect("temp dir");
    let api = dir.path().join("api.token");
    let ingest = dir.path().join("ingest.token");
    std::fs::write(&api, "api-token-0123456789abcdef\n").unwrap();
    std::fs::write(
        &ingest,
        "# the ingest token\ningest-token-0123456789abcdef\n",
    )
    .unwrap();
    let mut cfg = test_config();
    let auth = presage_config::ForecasterConfig::from_toml(
        &format!(
            "[auth]\ningest_token_file = {:?}\napi_token_file = {:?}\n",
            ingest, api
        ),
        "auth.toml",
    )
    .expect("auth config");
    cfg.auth = auth.auth;
    let running = start(cfg).await;
    let url = format!("http://{}", running.http);

    let history = dir.path().join("history");
    let t0 = start_of_replay(600);
    let series = SeriesHistory {
        labels: label_map(&[("__name__", "node_load1"), ("instance", "a")]),
        points: (0..600)
            .map(|i| (t0 + i * STEP_MS, (i as f64 / 30.0).sin()))
            .collect(),
    };
    presage_history::export(&history, [series.clone()]).expect("history files");

    let out = presage(args(&["import", history.to_str().unwrap(), "--to", &url])).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = presage(args(&[
        "import",
        history.to_str().unwrap(),
        "--to",
        &url,
        "--token-file",
        ingest.to_str().unwrap(),
        "--api-token-file",
        api.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));

    let back = dir.path().join("back");
    let out = presage(args(&[
        "export",
        "--out",
        back.to_str().unwrap(),
        "--from",
        &url,
    ]))
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("pass its API token with --token-file"),
        "{}",
        text(&out)
    );
    let out = presage(args(&[
        "export",
        "--out",
        back.to_str().unwrap(),
        "--from",
        &url,
        "--token-file",
        api.to_str().unwrap(),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_bits(&back), bits_of(&[series]));
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_of_many_series_reads_every_page() {
    // 2,500 series of two metrics: three pages of /api/v1/export (1,000 series each at most).
    let t0 = start_of_replay(5);
    let hosts: Vec<String> = (0..1250).map(|i| format!("h{i:04}")).collect();
    let mut want = Vec::new();
    let mut timeseries = Vec::new();
    for metric in ["node_load1", "node_load5"] {
        for (i, host) in hosts.iter().enumerate() {
            let points: Vec<(i64, f64)> = (0..5)
                .map(|k| (t0 + k * STEP_MS, i as f64 + k as f64 / 7.0))
                .collect();
            timeseries.push(TimeSeries {
                labels: labels(&[("__name__", metric), ("instance", host)]),
                samples: points
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                histograms: vec![],
            });
            want.push(SeriesHistory {
                labels: label_map(&[("__name__", metric), ("instance", host)]),
                points,
            });
        }
    }
    let running = daemon().await;
    let res = client()
        .post(format!("http://{}/api/v1/write", running.http))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(encode(&WriteRequest {
            timeseries,
            metadata: vec![],
        }))
        .send()
        .await
        .expect("remote_write");
    assert!(res.status().is_success(), "{}", res.status());
    let dir = tempfile::tempdir().expect("temp dir");
    let out = presage(args(&[
        "export",
        "--out",
        dir.path().join("x").to_str().unwrap(),
        "--from",
        &format!("http://{}", running.http),
    ]))
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(read_bits(&dir.path().join("x")), bits_of(&want));
    running.shutdown().await.expect("clean shutdown");
}

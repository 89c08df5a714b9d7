//! `presage demo`: the daemon on loopback, fed a built-in scenario that makes the built-in rules
//! fire within about a minute.
//!
//! The scenario is a few days of history that ends "now": a checkout service's request rate and
//! p99 latency (both with a daily cycle), a `/var` file system filling with an hourly
//! log-rotation sawtooth, a worker whose memory leaks, and the service's logs. Everything is sent
//! the way a real client would: metrics through Prometheus remote_write (`POST /api/v1/write`),
//! logs through OTLP/HTTP (`POST /v1/logs`), each sample and record with its own event time. The
//! bulk of the history goes at full speed; the last hours are paced over `--pace` so the alerts
//! (DiskWillFill, MemoryWillExhaust, SeriesAnomalous on the latency spike) appear one after the
//! other, printed by a console receiver.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::resource::v1::Resource;
use presage_config::ForecasterConfig;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::app::Clock;
use crate::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use crate::server::{Running, termination_signal};

/// The scenario's step: one sample per series per minute.
const STEP_MS: i64 = 60_000;
/// Steps sent at full speed per remote_write request.
const CHUNK: usize = 240;
/// The last part of the history, sent at the pace set by `--pace`: 3 hours.
const PACED_STEPS: usize = 180;
/// When the latency spike starts, in steps before the end, and how long it lasts.
const SPIKE_BEFORE_END: usize = 100;
const SPIKE_STEPS: usize = 25;
/// When the new error log pattern starts, in steps before the end.
const ERRORS_BEFORE_END: usize = 150;
/// The scenario's file system crosses 90% and its memory 95% this long after the end.
const DISK_CROSSING_AFTER_END_H: f64 = 3.5;
const MEMORY_CROSSING_AFTER_END_H: f64 = 4.0;

/// What `presage demo` runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Address of the HTTP API, remote_write and /metrics; `None` = 127.0.0.1:9470, or a free
    /// port when that one is busy.
    pub http: Option<SocketAddr>,
    /// OTLP/gRPC address; `None` = 127.0.0.1:4317 or a free port.
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP address; `None` = 127.0.0.1:4318 or a free port.
    pub otlp_http: Option<SocketAddr>,
    /// Where the daemon keeps its state; `None` = a fresh temporary folder, removed on exit.
    pub data_dir: Option<PathBuf>,
    /// Days of history in the scenario (1 to 14).
    pub days: u32,
    /// Wall time over which the last 3 hours of the scenario are replayed.
    pub pace: Duration,
    /// Stop once the scenario is over instead of serving until Ctrl-C.
    pub exit_after_scenario: bool,
    /// Start `presage-agent` from beside this binary to collect this host as well.
    pub agent: bool,
}

/// One replayed metric series.
#[derive(Debug, Clone)]
pub struct DemoSeries {
    /// What the progress line calls it.
    pub title: String,
    /// Its labels, `__name__` included.
    pub labels: Vec<(String, String)>,
    /// `(timestamp ms, value)`, one per step, in time order.
    pub points: Vec<(i64, f64)>,
}

/// One replayed log record.
#[derive(Debug, Clone)]
pub struct DemoLog {
    /// Event time, ms.
    pub at_ms: i64,
    /// `INFO` or `ERROR`.
    pub severity: &'static str,
    /// The line.
    pub body: String,
}

/// The built-in scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The metric series, all on the same timestamps.
    pub series: Vec<DemoSeries>,
    /// The checkout service's logs, in time order.
    pub logs: Vec<DemoLog>,
    /// Timestamp of the first step.
    pub start_ms: i64,
    /// Timestamp of the last step.
    pub end_ms: i64,
}

/// Deterministic noise in [-0.5, 0.5).
fn noise(i: usize, seed: u64) -> f64 {
    let mut x = (i as u64).wrapping_add(seed.wrapping_mul(0xA24B_AED4_963E_E407));
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^= x >> 33;
    (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// The scenario's history: `days` days of one-minute steps, the last one at `end_ms`.
pub fn scenario(end_ms: i64, days: u32) -> Scenario {
    let day = 1440usize;
    let n = days.max(1) as usize * day;
    let end_ms = end_ms / STEP_MS * STEP_MS;
    let start_ms = end_ms - (n as i64 - 1) * STEP_MS;
    let at = |i: usize| start_ms + i as i64 * STEP_MS;
    // The daily cycle follows the time of day (UTC), with a sharper evening peak than a sine.
    let daily = |i: usize| {
        let minute_of_day = (at(i) / STEP_MS).rem_euclid(day as i64) as f64;
        let phase = (minute_of_day - 8.0 * 60.0) * std::f64::consts::TAU / day as f64;
        phase.sin() + 0.3 * (2.0 * phase).sin()
    };
    let hours_to_end = |i: usize| (n - 1 - i) as f64 / 60.0;
    let spike = n - SPIKE_BEFORE_END..n - SPIKE_BEFORE_END + SPIKE_STEPS;
    let days = match days {
        1 => "1 day".to_string(),
        d => format!("{d} days"),
    };

    let series_of =
        |title: &str, pairs: &[(&str, &str)], value: &dyn Fn(usize) -> f64| DemoSeries {
            title: title.to_string(),
            labels: labels(pairs),
            points: (0..n).map(|i| (at(i), value(i))).collect(),
        };

    let rate = series_of(
        &format!("{days} of checkout request rate (daily cycle + noise)"),
        &[
            ("__name__", "http_server_request_rate"),
            ("service_name", "checkout"),
            ("host_name", "web-1"),
        ],
        &|i| 220.0 + 90.0 * daily(i) + 10.0 * noise(i, 1),
    );
    let latency = series_of(
        &format!("{days} of checkout p99 latency (daily cycle; a spike comes)"),
        &[
            ("__name__", "http_server_latency_p99_seconds"),
            ("service_name", "checkout"),
            ("host_name", "web-1"),
        ],
        &|i| {
            let burst = if spike.contains(&i) { 0.30 } else { 0.0 };
            0.120 + 0.035 * daily(i) + 0.006 * noise(i, 2) + burst
        },
    );
    // /var fills steadily (logs), with an hourly rotation sawtooth on top; it reaches 90% a few
    // hours after the end of the history.
    let disk_rate = 0.5 / (n as f64 / 60.0 + DISK_CROSSING_AFTER_END_H);
    let disk = series_of(
        &format!(
            "{days} of /var on db-1 filling ({:.1} points/h, hourly log rotation)",
            disk_rate * 100.0
        ),
        &[
            ("__name__", "system_filesystem_utilization"),
            ("host_name", "db-1"),
            ("mountpoint", "/var"),
            ("device", "/dev/sdb1"),
            ("type", "ext4"),
            ("mode", "rw"),
        ],
        &|i| {
            let envelope = 0.9 - disk_rate * (hours_to_end(i) + DISK_CROSSING_AFTER_END_H);
            envelope - 0.012 + 0.012 * (i % 60) as f64 / 60.0 + 0.0015 * noise(i, 3)
        },
    );
    // A leak: used memory grows steadily, with no daily cycle, and reaches 95% after the end.
    let memory_rate = 0.6 / (n as f64 / 60.0 + MEMORY_CROSSING_AFTER_END_H);
    let memory = series_of(
        &format!("{days} of memory on worker-3 (steady growth, no daily cycle)"),
        &[
            ("__name__", "system_memory_utilization"),
            ("host_name", "worker-3"),
            ("state", "used"),
        ],
        &|i| {
            0.95 - memory_rate * (hours_to_end(i) + MEMORY_CROSSING_AFTER_END_H)
                + 0.002 * noise(i, 4)
        },
    );

    let mut logs = Vec::new();
    for i in 0..n {
        if i % 5 == 0 {
            let ms = 8 + (40.0 * (noise(i, 5) + 0.5)) as u32;
            logs.push(DemoLog {
                at_ms: at(i),
                severity: "INFO",
                body: format!("GET /api/cart 200 in {ms}ms"),
            });
        }
        if i >= n - ERRORS_BEFORE_END && i % 2 == 0 {
            logs.push(DemoLog {
                at_ms: at(i) + 2_000,
                severity: "ERROR",
                body: format!(
                    "payment provider timeout after 3000ms for order {}",
                    40_000 + i % 997
                ),
            });
        }
    }

    Scenario {
        series: vec![rate, latency, disk, memory],
        logs,
        start_ms,
        end_ms,
    }
}

/// A default address, or a free port on loopback when it is busy. An address given on the
/// command line is used as is (port 0 is resolved to a free port first, so the URLs printed are
/// real), and must be on loopback.
fn choose(given: Option<SocketAddr>, default: &str, flag: &str) -> anyhow::Result<SocketAddr> {
    let free = |addr: SocketAddr| -> std::io::Result<SocketAddr> {
        TcpListener::bind(addr).and_then(|l| l.local_addr())
    };
    match given {
        Some(addr) => {
            if !addr.ip().is_loopback() {
                anyhow::bail!(
                    "{flag} {addr}: the demo listens on loopback only (e.g. 127.0.0.1:{})",
                    addr.port()
                );
            }
            if addr.port() == 0 {
                return free(addr).with_context(|| format!("no free port for {flag}"));
            }
            Ok(addr)
        }
        None => {
            let addr: SocketAddr = default.parse()?;
            match free(addr) {
                Ok(_) => Ok(addr),
                Err(_) => {
                    let other = free(SocketAddr::new(addr.ip(), 0))
                        .with_context(|| format!("no free port for {flag}"))?;
                    println!(
                        "port {} is busy; using {other} instead (set it with {flag})",
                        addr.port()
                    );
                    Ok(other)
                }
            }
        }
    }
}

/// The demo's configuration: defaults, loopback listeners, a console receiver with a short
/// group wait, the built-in rules.
fn config(
    http: SocketAddr,
    grpc: SocketAddr,
    otlp_http: SocketAddr,
    dir: PathBuf,
) -> ForecasterConfig {
    let alerting = r#"
[[receivers]]
name = "console"
console = { send_resolved = true }

[[routes]]
receivers = ["console"]
group_by = ["alertname", "service_name", "host_name", "mountpoint"]
group_wait = "2s"
group_interval = "2s"
repeat_interval = "1h"
"#;
    let mut cfg = ForecasterConfig::from_toml(alerting, "the demo's built-in configuration")
        .unwrap_or_else(|e| unreachable!("the demo's built-in configuration is valid: {e}"));
    cfg.server.http = http;
    cfg.server.otlp_grpc = grpc;
    cfg.server.otlp_http = otlp_http;
    cfg.server.shutdown_grace = Duration::from_secs(5);
    cfg.storage.dir = dir;
    cfg.alerting.default_rules = true;
    cfg.alerting.external_url = format!("http://{http}");
    cfg
}

/// A minimal HTTP/1.0 exchange on loopback: status code and body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let mut head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: not an HTTP response"))?;
    Ok((status, body.to_string()))
}

async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<()> {
    let (status, text) = request(addr, "POST", path, headers, body).await?;
    if !(200..300).contains(&status) {
        anyhow::bail!("POST http://{addr}{path}: HTTP {status}: {}", text.trim());
    }
    Ok(())
}

/// Sends steps `range` of every series in one remote_write request.
async fn write_metrics(
    http: SocketAddr,
    s: &Scenario,
    range: std::ops::Range<usize>,
) -> anyhow::Result<()> {
    let req = WriteRequest {
        timeseries: s
            .series
            .iter()
            .map(|d| TimeSeries {
                labels: d
                    .labels
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: d.points[range.clone()]
                    .iter()
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    };
    post(
        http,
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &encode(&req),
    )
    .await
}

fn text_value(v: &str) -> Option<AnyValue> {
    Some(AnyValue {
        value: Some(any_value::Value::StringValue(v.to_string())),
    })
}

/// Sends the log records with event time in `[from_ms, to_ms)` through OTLP/HTTP.
async fn write_logs(
    otlp_http: SocketAddr,
    s: &Scenario,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<()> {
    let records: Vec<LogRecord> = s
        .logs
        .iter()
        .filter(|l| from_ms <= l.at_ms && l.at_ms < to_ms)
        .map(|l| {
            let nanos = l.at_ms as u64 * 1_000_000;
            let severity = match l.severity {
                "ERROR" => SeverityNumber::Error,
                _ => SeverityNumber::Info,
            };
            LogRecord {
                time_unix_nano: nanos,
                observed_time_unix_nano: nanos,
                severity_number: severity as i32,
                severity_text: l.severity.to_string(),
                body: text_value(&l.body),
                ..Default::default()
            }
        })
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    let attribute = |key: &str, value: &str| KeyValue {
        key: key.to_string(),
        value: text_value(value),
        ..Default::default()
    };
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", "checkout"),
                    attribute("host.name", "web-1"),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    post(
        otlp_http,
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        &req.encode_to_vec(),
    )
    .await
}

/// The value of the un-labelled sample `name` on `/metrics`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits (up to `limit`) until every queued baseline fit has run.
async fn fits_done(http: SocketAddr, limit: Duration) -> anyhow::Result<f64> {
    let deadline = Instant::now() + limit;
    loop {
        let (_, text) = request(http, "GET", "/metrics", &[], b"").await?;
        let queued = metric(&text, "presage_fits_queued_total").unwrap_or(0.0);
        let done = metric(&text, "presage_fit_duration_seconds_count").unwrap_or(0.0);
        if done >= queued || Instant::now() > deadline {
            return Ok(done);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn clock(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    // `2024-05-01T12:34:56Z` → `12:34`
    text.get(11..16).unwrap_or(&text).to_string()
}

/// Replays the scenario: the history up to the paced part at full speed, then the paced part.
async fn replay(running: &Running, options: &Options) -> anyhow::Result<()> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let s = scenario(now_ms, options.days);
    let (http, otlp_http) = (running.http, running.otlp_http);
    let n = s.series.first().map_or(0, |d| d.points.len());
    let paced_from = n.saturating_sub(PACED_STEPS);
    let at = |i: usize| s.start_ms + i as i64 * STEP_MS;

    let started = Instant::now();
    for d in &s.series {
        println!("replaying {}…", d.title);
    }
    let logs_title = s.series.first().map_or("", |d| d.title.as_str());
    let span = logs_title.split(" of ").next().unwrap_or("the history");
    println!("replaying {span} of checkout logs over OTLP (INFO lines)…");
    for from in (0..paced_from).step_by(CHUNK) {
        let to = (from + CHUNK).min(paced_from);
        write_metrics(http, &s, from..to).await?;
        write_logs(otlp_http, &s, at(from), at(to)).await?;
    }
    println!(
        "sent {} samples and {} log lines in {:.1}s; learning the baselines…",
        paced_from * s.series.len(),
        s.logs.iter().filter(|l| l.at_ms < at(paced_from)).count(),
        started.elapsed().as_secs_f64()
    );
    let fits = fits_done(http, Duration::from_secs(120)).await?;
    println!(
        "{fits:.0} baseline fits done after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    println!(
        "\nthe last {} hours ({} → {} UTC), live over {}: alerts print below as they fire\n",
        PACED_STEPS / 60,
        clock(at(paced_from)),
        clock(s.end_ms),
        humantime::format_duration(options.pace)
    );
    let paced_start = Instant::now();
    let per_step = options.pace / PACED_STEPS.max(1) as u32;
    for (k, i) in (paced_from..n).enumerate() {
        tokio::time::sleep_until((paced_start + per_step * k as u32).into()).await;
        if i == n - SPIKE_BEFORE_END {
            println!(
                "  {} checkout p99 latency jumps by 300 ms for {SPIKE_STEPS} minutes",
                clock(at(i))
            );
        }
        if i == n - ERRORS_BEFORE_END {
            println!(
                "  {} checkout starts logging ERROR \"payment provider timeout after 3000ms …\"",
                clock(at(i))
            );
        }
        if k % 30 == 0 {
            let left = s.end_ms - at(i);
            println!(
                "  {} event time ({} before now)",
                clock(at(i)),
                humantime::format_duration(Duration::from_millis(left as u64))
            );
        }
        write_metrics(http, &s, i..i + 1).await?;
        write_logs(otlp_http, &s, at(i), at(i) + STEP_MS).await?;
    }
    fits_done(http, Duration::from_secs(60)).await?;
    // The last groups flush after their group wait.
    tokio::time::sleep(Duration::from_secs(4)).await;
    Ok(())
}

/// One line per alert the API lists.
async fn summary(http: SocketAddr) -> String {
    let Ok((200, body)) = request(http, "GET", "/api/v1/alerts", &[], b"").await else {
        return String::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
        return String::new();
    };
    let mut out = String::new();
    for a in json["data"].as_array().into_iter().flatten() {
        let name = a["labels"]["alertname"].as_str().unwrap_or("alert");
        let state = a["state"].as_str().unwrap_or("");
        let what = ["mountpoint", "service_name", "host_name"]
            .iter()
            .find_map(|k| a["labels"][*k].as_str())
            .unwrap_or("");
        let _ = writeln!(out, "  {name:<20} {state:<9} {what}");
    }
    out
}

fn spawn_agent(running: &Running, dir: &std::path::Path) -> Option<tokio::process::Child> {
    let path = std::env::current_exe()
        .ok()?
        .with_file_name(format!("presage-agent{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        println!(
            "--agent: no presage-agent beside this binary ({}); build it with `cargo build -p presage-agent`",
            path.display()
        );
        return None;
    }
    let state = dir.join("agent");
    let log = std::fs::File::create(dir.join("agent.log")).ok()?;
    let child = tokio::process::Command::new(&path)
        .arg("--endpoint")
        .arg(format!("http://{}", running.otlp_grpc))
        .args(["--protocol", "grpc", "--interval", "10s"])
        .args(["--telemetry", "127.0.0.1:0"])
        .arg("--state-dir")
        .arg(&state)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().ok()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn();
    match child {
        Ok(child) => {
            println!(
                "presage-agent (pid {}) collects this host and sends to OTLP/gRPC {}; its log: {}",
                child.id().unwrap_or_default(),
                running.otlp_grpc,
                dir.join("agent.log").display()
            );
            Some(child)
        }
        Err(e) => {
            println!("cannot start {}: {e}", path.display());
            None
        }
    }
}

/// Runs the demo until the scenario is over (with `exit_after_scenario`) or Ctrl-C.
pub async fn run(options: Options) -> anyhow::Result<()> {
    if !(1..=13).contains(&options.days) {
        anyhow::bail!("--days must be between 1 and 13 (the daemon keeps 14 days)");
    }
    let http = choose(options.http, "127.0.0.1:9470", "--http")?;
    let grpc = choose(options.otlp_grpc, "127.0.0.1:4317", "--otlp-grpc")?;
    let otlp_http = choose(options.otlp_http, "127.0.0.1:4318", "--otlp-http")?;
    let (dir, temporary) = match &options.data_dir {
        Some(dir) => (dir.clone(), false),
        None => {
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir =
                std::env::temp_dir().join(format!("presage-demo-{}-{nanos:x}", std::process::id()));
            (dir, true)
        }
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;

    let result = serve(config(http, grpc, otlp_http, dir.clone()), &options, &dir).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn serve(
    config: ForecasterConfig,
    options: &Options,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let running = Running::start(config, Clock::System).await?;
    let http = running.http;
    println!(
        "Presage demo: the forecaster on loopback with the built-in rules and a console receiver."
    );
    println!("  web UI        http://{http}/");
    println!("  alerts (API)  http://{http}/api/v1/alerts");
    println!("  series (API)  http://{http}/api/v1/series");
    println!("  /metrics      http://{http}/metrics");
    println!(
        "  OTLP          gRPC {}, HTTP {}",
        running.otlp_grpc, running.otlp_http
    );
    println!("  state         {}", dir.display());
    println!();
    let mut agent = if options.agent {
        spawn_agent(&running, dir)
    } else {
        None
    };

    let mut interrupted = false;
    let outcome = tokio::select! {
        r = replay(&running, options) => r,
        () = termination_signal() => {
            interrupted = true;
            Ok(())
        }
    };
    if let Err(e) = &outcome {
        println!("the scenario stopped: {e:#}");
    } else if !interrupted {
        println!("\nscenario over. Alerts now:\n{}", summary(http).await);
        if options.exit_after_scenario {
            println!("web UI was at http://{http}/ (exiting: --exit-after-scenario)");
        } else {
            println!(
                "Presage keeps serving: web UI http://{http}/, alerts http://{http}/api/v1/alerts. Ctrl-C to stop."
            );
            termination_signal().await;
        }
    }
    if let Some(child) = agent.as_mut() {
        let _ = child.kill().await;
    }
    println!("stopping…");
    running.shutdown().await?;
    println!("stopped");
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scenario_ends_now_and_crosses_after_it() {
        let end = 1_700_000_000_000;
        let s = scenario(end, 3);
        assert!(s.end_ms <= end && end - s.end_ms < STEP_MS);
        assert_eq!(s.end_ms - s.start_ms, (3 * 1440 - 1) * STEP_MS);
        for d in &s.series {
            assert_eq!(d.points.len(), 3 * 1440, "{}", d.title);
            assert_eq!(d.points.last().map(|p| p.0), Some(s.end_ms));
        }
        let last = |name: &str| {
            s.series
                .iter()
                .find(|d| d.labels.iter().any(|(_, v)| v == name))
                .and_then(|d| d.points.last())
                .map(|p| p.1)
                .unwrap_or_default()
        };
        // Not yet crossed at the end: the alerts come ahead of the crossing.
        assert!((0.8..0.9).contains(&last("system_filesystem_utilization")));
        assert!((0.85..0.95).contains(&last("system_memory_utilization")));
        assert!(s.logs.iter().all(|l| l.at_ms <= s.end_ms + 2_000));
        assert!(s.logs.iter().any(|l| l.severity == "ERROR"));
        assert!(s.logs.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    }

    #[test]
    fn noise_is_centred_and_bounded() {
        let xs: Vec<f64> = (0..10_000).map(|i| noise(i, 7)).collect();
        assert!(xs.iter().all(|x| (-0.5..0.5).contains(x)));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.02, "{mean}");
    }
}

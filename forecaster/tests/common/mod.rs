//! Shared test harness: an in-process daemon on free ports, peers started as child processes,
//! and polling with a deadline.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use presage_config::ForecasterConfig;
use presage_forecaster::app::Clock;
use presage_forecaster::server::Running;
use serde_json::Value;

/// A config whose listeners all bind free loopback ports.
pub fn test_config() -> ForecasterConfig {
    let mut cfg = ForecasterConfig::default();
    cfg.server.otlp_grpc = "127.0.0.1:0".parse().unwrap();
    cfg.server.otlp_http = "127.0.0.1:0".parse().unwrap();
    cfg.server.http = "127.0.0.1:0".parse().unwrap();
    cfg.storage.dir = scratch_dir();
    cfg
}

/// A fresh directory for one daemon's state, left for the OS to clean.
pub fn scratch_dir() -> std::path::PathBuf {
    tempfile::Builder::new()
        .prefix("presage-test-")
        .tempdir()
        .expect("temp dir")
        .keep()
}

pub async fn start(cfg: ForecasterConfig) -> Running {
    Running::start(cfg, Clock::System)
        .await
        .expect("daemon starts")
}

/// A port that was free a moment ago, for peers that cannot bind port 0 and report it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// The path of a peer program; panics with install instructions when it is missing. Peers are
/// installed by `.ci/run`; a test never skips silently.
pub fn require_program(name: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("`{name}` is required by this test but is not installed; install it with: {install} (or run .ci/run, which does)")
    })
}

/// Python with the OpenTelemetry SDK and OTLP exporters; panics with instructions otherwise.
pub fn require_python_otel() -> PathBuf {
    let python = require_program("python3", "apt-get install -y python3");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the OpenTelemetry Python SDK is required; install it with: pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-grpc opentelemetry-exporter-otlp-proto-http (or run .ci/run)"
    );
    python
}

/// A child process killed when dropped, with its output going to a log file for diagnosis.
pub struct Peer {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Peer {
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Peer {
        Self::start(name, Command::new(program).args(args), dir)
    }

    /// The `presage-agent` binary (see [`agent_binary`]) with `args`, without the environment
    /// variables that would configure it from outside the test.
    pub fn spawn_agent(name: &str, args: &[String], dir: &Path) -> Peer {
        Self::start(
            name,
            Command::new(agent_binary())
                .args(args)
                .env_remove("PRESAGE_AGENT_CONFIG")
                .env_remove("OTEL_SERVICE_NAME")
                .env_remove("OTEL_RESOURCE_ATTRIBUTES"),
            dir,
        )
    }

    /// Starts `command` in `dir`, its output going to `<dir>/<name>.log`.
    fn start(name: &str, command: &mut Command, dir: &Path) -> Peer {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("peer log file");
        let child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Peer {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// The peer's output so far (for failure messages).
    pub fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Panics with the peer's output when it has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.name, self.output());
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// GET a JSON document, `None` on any failure (for polling).
pub async fn get_json(client: &reqwest::Client, url: &str) -> Option<Value> {
    let res = client.get(url).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    let text = res.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

/// Series matching `selector`, from the daemon's API.
pub async fn series(
    client: &reqwest::Client,
    http: std::net::SocketAddr,
    selector: &str,
) -> Vec<Value> {
    let url = format!(
        "http://{http}/api/v1/series?match[]={}",
        urlencode(selector)
    );
    get_json(client, &url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
}

/// The daemon's `/metrics` text, `None` on any failure (for polling).
pub async fn metrics_text(client: &reqwest::Client, http: std::net::SocketAddr) -> Option<String> {
    client
        .get(format!("http://{http}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The value of the first sample line of `text` starting with `prefix`.
pub fn sample_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Waits until every queued fit has run and at least `steps` steps were scored (a replay has
/// been taken in whole).
pub async fn settled(http: std::net::SocketAddr, steps: f64) {
    let client = client();
    eventually(
        Duration::from_secs(300),
        "fits and scoring to finish",
        || {
            let client = client.clone();
            async move {
                let text = metrics_text(&client, http).await?;
                let metric = |name: &str| sample_value(&text, &format!("{name} "));
                let queued = metric("presage_fits_queued_total")?;
                let done = metric("presage_fit_duration_seconds_count")?;
                let scored = metric("presage_steps_scored_total")?;
                (queued == done && scored >= steps).then_some(())
            }
        },
    )
    .await;
}

/// The `presage-agent` binary beside this crate's `presage` binary; panics when it is missing.
pub fn agent_binary() -> PathBuf {
    let presage = Path::new(env!("CARGO_BIN_EXE_presage"));
    let agent = presage.with_file_name(format!("presage-agent{}", std::env::consts::EXE_SUFFIX));
    assert!(
        agent.is_file(),
        "the presage-agent binary is required by this test but {} does not exist; build it with \
         `cargo build -p presage-agent` (with the same target directory and profile), or run the \
         whole workspace's tests, which build it",
        agent.display()
    );
    agent
}

/// Wall-clock time, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// POSTs a snappy-compressed remote_write `body` to the daemon whose API is at `http`; as
/// history (`X-Presage-History: true`, what `presage backfill` sends) when `history`.
pub async fn post_remote_write(
    client: &reqwest::Client,
    http: impl std::fmt::Display,
    body: Vec<u8>,
    history: bool,
) -> reqwest::Result<reqwest::Response> {
    let mut req = client
        .post(format!("http://{http}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf");
    if history {
        req = req.header("X-Presage-History", "true");
    }
    req.body(body).send().await
}

/// A snappy-compressed remote_write request with one sample of `name`, now.
pub fn rw_body(name: &str) -> Vec<u8> {
    use presage_forecaster::ingest::remote_write::{
        Label, Sample, TimeSeries, WriteRequest, encode,
    };
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![Label {
                name: "__name__".into(),
                value: name.into(),
            }],
            samples: vec![Sample {
                value: 1.0,
                timestamp: now_ms(),
            }],
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

/// An OTLP export of one gauge point of `name` (value 2), now.
pub fn gauge(
    name: &str,
) -> opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: now_ms() as u64 * 1_000_000,
                            value: Some(number_data_point::Value::AsDouble(2.0)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Where a replay of `n` one-minute steps ending about now starts: on an hour, so the hourly
/// refits fall on the same steps of the data in every run and the run is deterministic.
pub fn start_of_replay(n: usize) -> i64 {
    const HOUR_MS: i64 = 3_600_000;
    (now_ms() - (n as i64 + 5) * 60_000 - HOUR_MS) / HOUR_MS * HOUR_MS
}

/// remote_write labels from `(name, value)` pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Vec<presage_forecaster::ingest::remote_write::Label> {
    pairs
        .iter()
        .map(|(n, v)| presage_forecaster::ingest::remote_write::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect()
}

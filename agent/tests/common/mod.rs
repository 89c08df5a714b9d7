//! Shared harness: the real forecaster in-process on free ports, the real `presage-agent`
//! binary as a child process, and polling with deadlines.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presage_config::ForecasterConfig;
use presage_forecaster::app::{App, Clock};
use presage_forecaster::server::Running;
use serde_json::Value;

/// A forecaster config on free loopback ports (or the given ones), 1 s steps so histories
/// show every agent interval, and room for every log line a test writes.
pub fn forecaster_config(ports: Option<(SocketAddr, SocketAddr, SocketAddr)>) -> ForecasterConfig {
    let mut cfg = ForecasterConfig::default();
    let any: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 0));
    let (grpc, otlp_http, http) = ports.unwrap_or((any, any, any));
    cfg.server.otlp_grpc = grpc;
    cfg.server.otlp_http = otlp_http;
    cfg.server.http = http;
    cfg.server.shutdown_grace = Duration::from_secs(5);
    cfg.model.step = Duration::from_secs(1);
    cfg.limits.log_records_per_stream = 100_000;
    cfg.storage.dir = tempfile::Builder::new()
        .prefix("presage-test-")
        .tempdir()
        .expect("temp dir")
        .keep();
    cfg
}

/// The real forecaster, serving.
pub struct Forecaster {
    pub running: Running,
    pub app: Arc<App>,
}

impl Forecaster {
    pub async fn start() -> Self {
        Self::start_with(forecaster_config(None)).await
    }

    pub async fn start_with(cfg: ForecasterConfig) -> Self {
        // The ports of a stopped instance may take a moment to be free again.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Running::start(cfg.clone(), Clock::System).await {
                Ok(running) => {
                    let app = running.app.clone();
                    return Self { running, app };
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("forecaster not started yet: {e:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("the forecaster does not start: {e:#}"),
            }
        }
    }

    pub fn ports(&self) -> (SocketAddr, SocketAddr, SocketAddr) {
        (
            self.running.otlp_grpc,
            self.running.otlp_http,
            self.running.http,
        )
    }

    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.running.otlp_grpc)
    }

    pub fn http(&self) -> SocketAddr {
        self.running.http
    }

    /// Stops serving; the returned state still answers queries about what it received.
    pub async fn stop(self) -> Arc<App> {
        self.running.shutdown().await.expect("forecaster stops");
        self.app
    }
}

/// A port that was free a moment ago.
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

/// The `presage-agent` binary as a child process, killed when dropped.
pub struct AgentProcess {
    pub child: Child,
    pub telemetry: SocketAddr,
    pub log: PathBuf,
}

pub fn agent_binary() -> &'static str {
    env!("CARGO_BIN_EXE_presage-agent")
}

impl AgentProcess {
    /// Starts the agent with `args` (plus `--telemetry` on a free port) and `env`, and waits
    /// until it answers `/-/healthy`.
    pub async fn start(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Self {
        let telemetry = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = dir.join(format!("agent-{}.log", telemetry.port()));
        let file = std::fs::File::create(&log).expect("agent log file");
        let mut cmd = Command::new(agent_binary());
        cmd.args(args)
            .arg("--telemetry")
            .arg(telemetry.to_string())
            .env("PRESAGE_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file);
        for var in [
            "POD_NAME",
            "K8S_POD_NAME",
            "POD_NAMESPACE",
            "NODE_NAME",
            "CONTAINER_NAME",
            "OTEL_SERVICE_NAME",
            "OTEL_RESOURCE_ATTRIBUTES",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("presage-agent starts");
        let mut agent = Self {
            child,
            telemetry,
            log,
        };
        let client = client();
        let url = format!("http://{telemetry}/-/healthy");
        let healthy = {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = agent.child.try_wait() {
                    panic!("presage-agent exited with {status}:\n{}", agent.output());
                }
                if let Ok(r) = client.get(&url).send().await
                    && r.status().is_success()
                {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        assert!(
            healthy,
            "presage-agent never became healthy:\n{}",
            agent.output()
        );
        agent
    }

    /// The agent's log so far (for failure messages).
    pub fn output(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(60).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Sends SIGTERM and waits (with a deadline) for a clean exit.
    pub async fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    assert!(
                        status.success(),
                        "presage-agent exited with {status}:\n{}",
                        self.output()
                    );
                    return;
                }
                Ok(None) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                _ => panic!("presage-agent did not stop on SIGTERM:\n{}", self.output()),
            }
        }
    }

    /// The agent's own metrics, `name{labels}` → value.
    pub async fn metrics(&self) -> HashMap<String, f64> {
        let text = client()
            .get(format!("http://{}/metrics", self.telemetry))
            .send()
            .await
            .expect("agent /metrics answers")
            .text()
            .await
            .expect("a body");
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect()
    }

    pub async fn metric(&self, key: &str) -> f64 {
        self.metrics()
            .await
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key} in the agent's /metrics"))
    }
}

impl Drop for AgentProcess {
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

pub async fn get_json(url: &str) -> Option<Value> {
    let res = client().get(url).send().await.ok()?;
    if !res.status().is_success() {
        return None;
    }
    serde_json::from_str(&res.text().await.ok()?).ok()
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

/// Series matching `selector`, from the forecaster's API.
pub async fn series(http: SocketAddr, selector: &str) -> Vec<Value> {
    let url = format!(
        "http://{http}/api/v1/series?match[]={}",
        urlencode(selector)
    );
    get_json(&url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
}

/// The history (`[unix seconds, value]`, nulls dropped) of the first series matching
/// `selector`.
pub async fn history(http: SocketAddr, selector: &str) -> Vec<(f64, f64)> {
    let url = format!(
        "http://{http}/api/v1/forecast?series={}",
        urlencode(selector)
    );
    let Some(v) = get_json(&url).await else {
        return Vec::new();
    };
    v["data"]["series"][0]["history"]
        .as_array()
        .map(|points| {
            points
                .iter()
                .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Log entries matching `selector` (newest 10,000).
pub async fn logs(http: SocketAddr, selector: &str) -> Vec<Value> {
    let url = format!(
        "http://{http}/api/v1/logs?match[]={}&limit=10000",
        urlencode(selector)
    );
    get_json(&url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
}

/// How often each body occurs among `entries`.
pub fn body_counts<'a>(entries: impl IntoIterator<Item = &'a Value>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in entries {
        if let Some(b) = e["body"].as_str() {
            *out.entry(b.to_string()).or_default() += 1;
        }
    }
    out
}

pub fn label<'a>(s: &'a Value, name: &str) -> &'a str {
    s["labels"][name].as_str().unwrap_or("")
}

/// Appends lines to a file (creating it), flushed.
pub fn append(path: &Path, lines: &[String]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    for l in lines {
        writeln!(f, "{l}").expect("write log line");
    }
    f.flush().expect("flush");
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Asserts every expected body occurs exactly once in `counts`.
pub fn assert_exactly_once(counts: &BTreeMap<String, usize>, expected: &[String]) {
    let missing: Vec<&String> = expected
        .iter()
        .filter(|b| !counts.contains_key(*b))
        .collect();
    let repeated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty() && repeated.is_empty(),
        "{} of {} lines missing (first: {:?}); repeated: {:?}",
        missing.len(),
        expected.len(),
        missing.first(),
        repeated.iter().take(5).collect::<Vec<_>>()
    );
}

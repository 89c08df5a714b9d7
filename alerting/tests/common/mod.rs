//! Shared test harness: free ports, polling with a deadline, peers started as child processes
//! (killed when dropped), and a notification to send.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use presage_alerting::{Alert, AlertState, Band, ChartData, Eta, Explanation, Notification};

/// A loopback port that was free a moment ago, for peers that cannot report the port they bound.
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
    let mut delay = Duration::from_millis(20);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(250));
    }
}

/// The path of a peer program; panics with install instructions when it is missing. Peers are
/// installed by `scripts/test` and CI; a test never skips silently.
pub fn require_program(name: &str, install: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is required by this test but is not installed; install it with: {install} \
             (scripts/test does)"
        )
    })
}

/// Python 3 with `module` importable; panics with install instructions otherwise.
pub fn require_python_module(module: &str, install: &str) -> PathBuf {
    let python = require_program("python3", "apt-get install -y python3");
    let ok = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the Python module `{module}` is required by this test but is not installed; install it \
         with: {install} (scripts/test does)"
    );
    python
}

/// A file under `alerting/tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(name)
}

/// A child process killed when dropped, its output going to a log file for diagnosis.
pub struct Peer {
    pub child: Child,
    pub log: PathBuf,
    pub name: String,
}

impl Peer {
    pub fn spawn(name: &str, program: &Path, args: &[String], dir: &Path) -> Peer {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("peer log file");
        let child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Peer {
            child,
            log,
            name: name.to_string(),
        }
    }

    /// The last lines of the peer's output (for failure messages).
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

    /// Waits until the peer accepts TCP connections on `port`, panicking with its output when
    /// it exits or does not come up in time.
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.assert_running();
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} did not listen on port {port} within {timeout:?}:\n{}",
                    self.name,
                    self.output()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A firing disk-fill breach alert on `host`.
pub fn disk_alert(host: &str, fingerprint: &str) -> Alert {
    let now = now_ms();
    Alert {
        fingerprint: fingerprint.to_string(),
        labels: labels(&[
            ("alertname", "DiskWillFill"),
            ("host_name", host),
            ("metric", "system_filesystem_utilization"),
            ("mountpoint", "/var"),
            ("rule_kind", "breach"),
            ("severity", "critical"),
        ]),
        annotations: labels(&[("description", &format!("/var on {host} is filling up"))]),
        state: AlertState::Firing,
        active_since_ms: now - 600_000,
        fired_at_ms: Some(now - 300_000),
        resolved_at_ms: None,
        last_seen_ms: now - 1_000,
        explanation: Explanation {
            summary: format!("/var on {host} will reach 90% in 3h10m"),
            kind: "breach".to_string(),
            value: Some(0.82),
            band: Some(Band {
                expected: 0.80,
                lower: 0.78,
                upper: 0.83,
            }),
            score: Some(0.93),
            eta: Some(Eta {
                p10_seconds: 9_600.0,
                p50_seconds: 11_400.0,
                p90_seconds: 14_700.0,
            }),
            threshold: Some(0.9),
            rate_per_second: Some(0.000_007),
            seasonality: vec!["daily".to_string()],
            changepoint_ms: None,
            related: vec![format!("log pattern `No space left on device` on {host}")],
            suggestion: format!("Add 12 GiB to /var on {host} or rotate its logs within 3h"),
            text: format!("/var on {host} grows 2.5% per hour and will reach 90% at about 01:20."),
        },
        generator_url: format!("http://127.0.0.1:9470/#/series?host_name={host}"),
    }
}

/// Chart data around an alert: a daily-looking band, a rising actual, a forecast crossing 0.9.
pub fn chart(offset: f64) -> ChartData {
    let start = now_ms() - 3_600_000;
    let step = 60_000_i64;
    let band = |i: i64| {
        let e = 0.5 + 0.1 * ((i as f64) / 10.0).sin();
        Band {
            expected: e,
            lower: e - 0.05,
            upper: e + 0.05,
        }
    };
    ChartData {
        actual: (0..60)
            .map(|i| {
                (
                    start + i * step,
                    band(i).expected + offset + i as f64 * 0.004,
                )
            })
            .collect(),
        expected: (0..60).map(|i| (start + i * step, band(i))).collect(),
        forecast: (60..120)
            .map(|i| {
                let g = (i - 60) as f64 * 0.008;
                let b = band(i);
                (
                    start + i * step,
                    Band {
                        expected: b.expected + 0.24 + g,
                        lower: b.lower + 0.22 + g * 0.7,
                        upper: b.upper + 0.26 + g * 1.3,
                    },
                )
            })
            .collect(),
        threshold: Some(0.9),
        anomalies: vec![(start + 55 * step, band(55).expected + offset + 0.22)],
    }
}

/// A firing notification of `alerts`, with chart data for each, grouped by alertname.
pub fn notification(receiver: &str, alerts: Vec<Alert>) -> Notification {
    let charts = alerts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.fingerprint.clone(), chart(i as f64 * 0.02)))
        .collect();
    let status = if alerts.iter().any(|a| a.state != AlertState::Resolved) {
        "firing"
    } else {
        "resolved"
    };
    Notification {
        receiver: receiver.to_string(),
        group_key: "{}:{alertname=\"DiskWillFill\"}".to_string(),
        group_labels: labels(&[("alertname", "DiskWillFill")]),
        status: status.to_string(),
        alerts,
        external_url: "http://127.0.0.1:9470".to_string(),
        sent_at_ms: now_ms(),
        charts,
    }
}

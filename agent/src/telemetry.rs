//! The agent's own metrics — every one defined here — and the tiny HTTP/1.1 server that
//! exposes them with `/-/healthy` (port 9471 by default).
//!
//! The server is hand-rolled on tokio: two GET routes do not justify a web framework in a
//! binary that must stay small.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::export::Signal;

/// A counter or gauge.
#[derive(Debug, Default)]
pub(crate) struct Value(AtomicU64);

impl Value {
    /// Adds `n`.
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub(crate) fn set(&self, n: u64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters of one signal (metrics or logs).
#[derive(Debug, Default)]
pub(crate) struct SignalCounters {
    /// Batches the forecaster acknowledged.
    pub(crate) batches_sent: Value,
    /// Data points or log records in them.
    pub(crate) items_sent: Value,
    /// Items the forecaster reported as rejected in a partial success.
    pub(crate) items_rejected: Value,
}

/// Per scrape target.
#[derive(Debug)]
pub(crate) struct TargetCounters {
    /// The target's URL (a label).
    pub(crate) url: String,
    /// Scrapes attempted.
    pub(crate) scrapes: Value,
    /// Scrapes that failed (connection, HTTP status, timeout).
    pub(crate) errors: Value,
    /// Malformed lines skipped.
    pub(crate) parse_errors: Value,
    /// Samples in the last successful scrape.
    pub(crate) samples: Value,
}

/// Everything the agent counts.
#[derive(Debug, Default)]
pub(crate) struct Telemetry {
    /// Host data points collected.
    pub(crate) points_host: Value,
    /// Scraped data points collected.
    pub(crate) points_scrape: Value,
    /// Log lines read.
    pub(crate) log_lines: Value,
    /// Log records built (a multi-line record counts once).
    pub(crate) log_records: Value,
    /// Overlong log lines cut.
    pub(crate) log_lines_truncated: Value,
    /// Log files found truncated (copytruncate rotation).
    pub(crate) log_truncations: Value,
    /// Log files being tailed now.
    pub(crate) log_files: Value,
    /// Metrics export outcome counters.
    pub(crate) metrics: SignalCounters,
    /// Logs export outcome counters.
    pub(crate) logs: SignalCounters,
    /// Batches written to the spool.
    pub(crate) batches_spooled: Value,
    /// Batches dropped because the spool was full.
    pub(crate) batches_dropped_spool_full: Value,
    /// Items in those.
    pub(crate) items_dropped_spool_full: Value,
    /// Batches the forecaster refused for good (not retryable).
    pub(crate) batches_dropped_rejected: Value,
    /// Items in those.
    pub(crate) items_dropped_rejected: Value,
    /// Batches lost to a spool I/O error.
    pub(crate) batches_dropped_io: Value,
    /// Export attempts that failed and will be retried.
    pub(crate) retries: Value,
    /// Bytes in the spool now.
    pub(crate) spool_bytes: Value,
    /// Batches in the spool now.
    pub(crate) spool_batches: Value,
    /// The spool's limit in bytes.
    pub(crate) spool_limit: Value,
    /// Scrape targets.
    pub(crate) targets: Vec<TargetCounters>,
}

impl Telemetry {
    /// Counters with one entry per scrape target URL.
    pub(crate) fn new(target_urls: &[String], spool_limit: u64) -> Self {
        let t = Self {
            targets: target_urls
                .iter()
                .map(|url| TargetCounters {
                    url: url.clone(),
                    scrapes: Value::default(),
                    errors: Value::default(),
                    parse_errors: Value::default(),
                    samples: Value::default(),
                })
                .collect(),
            ..Self::default()
        };
        t.spool_limit.set(spool_limit);
        t
    }

    /// The counters of `signal`.
    pub(crate) fn signal(&self, signal: Signal) -> &SignalCounters {
        match signal {
            Signal::Metrics => &self.metrics,
            Signal::Logs => &self.logs,
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, v) in samples {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        };
        family(
            "presage_agent_points_collected_total",
            "counter",
            "Data points collected, by source.",
            &[
                ("source=\"host\"", self.points_host.get()),
                ("source=\"scrape\"", self.points_scrape.get()),
            ],
        );
        family(
            "presage_agent_log_lines_read_total",
            "counter",
            "Log lines read from files.",
            &[("", self.log_lines.get())],
        );
        family(
            "presage_agent_log_records_total",
            "counter",
            "Log records built (a multi-line record counts once).",
            &[("", self.log_records.get())],
        );
        family(
            "presage_agent_log_lines_truncated_total",
            "counter",
            "Log lines cut at logs.max_line_size.",
            &[("", self.log_lines_truncated.get())],
        );
        family(
            "presage_agent_log_file_truncations_total",
            "counter",
            "Log files found truncated (copytruncate rotation) and re-read from the start.",
            &[("", self.log_truncations.get())],
        );
        family(
            "presage_agent_log_files",
            "gauge",
            "Log files being tailed.",
            &[("", self.log_files.get())],
        );
        let by_signal = |f: fn(&SignalCounters) -> &Value| {
            [
                ("signal=\"metrics\"", f(&self.metrics).get()),
                ("signal=\"logs\"", f(&self.logs).get()),
            ]
        };
        family(
            "presage_agent_batches_sent_total",
            "counter",
            "Export batches the forecaster acknowledged.",
            &by_signal(|c| &c.batches_sent),
        );
        family(
            "presage_agent_items_sent_total",
            "counter",
            "Data points and log records the forecaster acknowledged.",
            &by_signal(|c| &c.items_sent),
        );
        family(
            "presage_agent_items_rejected_total",
            "counter",
            "Items the forecaster acknowledged but rejected (OTLP partial success).",
            &by_signal(|c| &c.items_rejected),
        );
        family(
            "presage_agent_batches_spooled_total",
            "counter",
            "Batches written to the on-disk spool while the forecaster was unreachable.",
            &[("", self.batches_spooled.get())],
        );
        family(
            "presage_agent_batches_dropped_total",
            "counter",
            "Batches dropped, by reason.",
            &[
                (
                    "reason=\"spool_full\"",
                    self.batches_dropped_spool_full.get(),
                ),
                ("reason=\"rejected\"", self.batches_dropped_rejected.get()),
                ("reason=\"spool_io\"", self.batches_dropped_io.get()),
            ],
        );
        family(
            "presage_agent_items_dropped_total",
            "counter",
            "Data points and log records dropped, by reason.",
            &[
                ("reason=\"spool_full\"", self.items_dropped_spool_full.get()),
                ("reason=\"rejected\"", self.items_dropped_rejected.get()),
            ],
        );
        family(
            "presage_agent_export_retries_total",
            "counter",
            "Export attempts that failed and were retried.",
            &[("", self.retries.get())],
        );
        family(
            "presage_agent_spool_bytes",
            "gauge",
            "Bytes in the spool.",
            &[("", self.spool_bytes.get())],
        );
        family(
            "presage_agent_spool_batches",
            "gauge",
            "Batches in the spool.",
            &[("", self.spool_batches.get())],
        );
        family(
            "presage_agent_spool_limit_bytes",
            "gauge",
            "The spool's size limit (agent.spool_max_size).",
            &[("", self.spool_limit.get())],
        );
        let target = |t: &TargetCounters| format!("target=\"{}\"", escape(&t.url));
        let labels: Vec<String> = self.targets.iter().map(target).collect();
        let per_target = |f: fn(&TargetCounters) -> u64| -> Vec<(&str, u64)> {
            self.targets
                .iter()
                .zip(&labels)
                .map(|(t, l)| (l.as_str(), f(t)))
                .collect()
        };
        family(
            "presage_agent_scrapes_total",
            "counter",
            "Scrapes attempted, by target.",
            &per_target(|t| t.scrapes.get()),
        );
        family(
            "presage_agent_scrape_errors_total",
            "counter",
            "Scrapes that failed, by target.",
            &per_target(|t| t.errors.get()),
        );
        family(
            "presage_agent_scrape_parse_errors_total",
            "counter",
            "Malformed exposition lines skipped, by target.",
            &per_target(|t| t.parse_errors.get()),
        );
        family(
            "presage_agent_scrape_samples",
            "gauge",
            "Samples in the last successful scrape, by target.",
            &per_target(|t| t.samples.get()),
        );
        let own = process_stats();
        let _ = writeln!(
            out,
            "# HELP process_resident_memory_bytes Resident memory of the agent.\n# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {}",
            own.rss_bytes
        );
        let _ = writeln!(
            out,
            "# HELP process_cpu_seconds_total CPU time of the agent.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            own.cpu_seconds
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct ProcessStats {
    rss_bytes: u64,
    cpu_seconds: f64,
}

fn process_stats() -> ProcessStats {
    let rss_bytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_ascii_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = after.split_ascii_whitespace().collect();
            // After the command: state is field 3, utime 14, stime 15 (1-based in proc(5)).
            let utime: f64 = f.get(11)?.parse().ok()?;
            let stime: f64 = f.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks.max(1.0))
        })
        .unwrap_or(0.0);
    ProcessStats {
        rss_bytes,
        cpu_seconds,
    }
}

/// Binds the telemetry listener.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/-/healthy` until `shutdown` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    tel: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let tel = tel.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), respond(stream, &tel)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "telemetry listener accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

async fn respond(mut stream: TcpStream, tel: &Telemetry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > 16 * 1024 {
            return write(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "",
            )
            .await;
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let mut parts = text.lines().next().unwrap_or("").split_ascii_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let body = tel.render();
            let body = if method == "HEAD" {
                String::new()
            } else {
                body
            };
            write(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &body,
            )
            .await
        }
        ("GET" | "HEAD", "/-/healthy") => {
            write(
                &mut stream,
                "200 OK",
                "text/plain; charset=utf-8",
                "Presage agent is Healthy.\n",
            )
            .await
        }
        ("GET" | "HEAD", _) => {
            write(
                &mut stream,
                "404 Not Found",
                "text/plain; charset=utf-8",
                "not found; try /metrics or /-/healthy\n",
            )
            .await
        }
        _ => {
            write(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain; charset=utf-8",
                "",
            )
            .await
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    status: &str,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_is_valid_exposition() {
        let t = Telemetry::new(&["http://127.0.0.1:1/m\"x".to_string()], 64 << 20);
        t.points_host.add(5);
        t.logs.items_sent.add(3);
        t.batches_dropped_spool_full.add(2);
        t.targets[0].errors.add(1);
        let text = t.render();
        let parsed = crate::scrape::parser::parse(&text);
        assert_eq!(parsed.errors, vec![], "{text}");
        let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
            parsed
                .families
                .iter()
                .flat_map(|f| &f.samples)
                .find(|s| {
                    s.name == name
                        && label.is_none_or(|(k, v)| s.labels.iter().any(|(a, b)| a == k && b == v))
                })
                .map(|s| s.value)
                .unwrap_or(f64::NAN)
        };
        assert_eq!(
            value(
                "presage_agent_points_collected_total",
                Some(("source", "host"))
            ),
            5.0
        );
        assert_eq!(
            value("presage_agent_items_sent_total", Some(("signal", "logs"))),
            3.0
        );
        assert_eq!(
            value(
                "presage_agent_batches_dropped_total",
                Some(("reason", "spool_full"))
            ),
            2.0
        );
        assert_eq!(
            value(
                "presage_agent_scrape_errors_total",
                Some(("target", "http://127.0.0.1:1/m\"x"))
            ),
            1.0
        );
        assert_eq!(
            value("presage_agent_spool_limit_bytes", None),
            (64 << 20) as f64
        );
        assert!(value("process_resident_memory_bytes", None) > 0.0);
    }

    #[tokio::test]
    async fn serves_metrics_and_health() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tel = Arc::new(Telemetry::new(&[], 1));
        tel.log_lines.add(7);
        let (tx, rx) = watch::channel(false);
        let server = tokio::spawn(serve(listener, tel, rx));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let m = get("/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200 OK\r\n"), "{m}");
        assert!(
            m.contains("\npresage_agent_log_lines_read_total 7\n"),
            "{m}"
        );
        let h = get("/-/healthy").await;
        assert!(
            h.starts_with("HTTP/1.1 200 OK") && h.ends_with("Healthy.\n"),
            "{h}"
        );
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        tx.send(true).unwrap();
        server.await.unwrap();
    }
}

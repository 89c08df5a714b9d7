//! The ingest load generator behind `presage-loadgen`.
//!
//! `concurrency` senders each own a contiguous share of the series and loop over it in rounds:
//! every round sends one sample per owned series, `batch` series per request, one request in
//! flight per sender, so a series' samples always arrive in order. Rounds are stamped by a
//! [`clock::VirtualClock`]; senders that get more than [`MAX_ROUND_LEAD`] rounds ahead of the
//! slowest one wait, so all series stay within a few minutes of event time of each other (a
//! Prometheus head refuses samples more than an hour behind its newest).
//!
//! Request bodies are cheap to make so that the generator is not the bottleneck: remote_write
//! label sets are protobuf-encoded once ([`remote_write::RemoteWriteEncoder`]); OTLP requests
//! are built once per batch and only their timestamps and values rewritten
//! ([`otlp::OtlpBatch`]).

pub mod clock;
pub mod otlp;
pub mod remote_write;
pub mod series;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use prost::Message;
use serde::Serialize;
use tonic::transport::Channel;

use clock::{Stamp, VirtualClock};
use otlp::OtlpBatch;
use remote_write::RemoteWriteEncoder;
use series::SeriesDef;

/// How many rounds a sender may run ahead of the slowest one.
pub const MAX_ROUND_LEAD: u64 = 20;

/// Which protocol to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Prometheus remote_write 1.0 (snappy protobuf over HTTP POST).
    RemoteWrite,
    /// OTLP metrics over gRPC (`MetricsService/Export`).
    OtlpGrpc,
    /// OTLP metrics over HTTP (`POST /v1/metrics`, protobuf).
    OtlpHttp,
}

impl Target {
    /// Where Presage listens for this protocol by default.
    pub fn default_url(self) -> &'static str {
        match self {
            Target::RemoteWrite => "http://127.0.0.1:9470/api/v1/write",
            Target::OtlpGrpc => "http://127.0.0.1:4317",
            Target::OtlpHttp => "http://127.0.0.1:4318/v1/metrics",
        }
    }
}

/// What to send, where, and how hard.
#[derive(Debug, Clone)]
pub struct Options {
    /// Protocol.
    pub target: Target,
    /// Endpoint: the full URL for HTTP targets, the server's `http://host:port` for gRPC.
    pub url: String,
    /// Distinct series.
    pub series: usize,
    /// Samples (= series) per request.
    pub batch: usize,
    /// Senders, each with one request in flight.
    pub concurrency: usize,
    /// How long to send.
    pub duration: Duration,
    /// Samples per second over all senders; 0 sends as fast as the target accepts.
    pub rate: u64,
    /// Event-time spacing between successive samples of one series (ms).
    pub step_ms: i64,
    /// How far in the past the first round is stamped.
    pub start_ago: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
}

/// What a run achieved, from the sender's side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Protocol sent.
    pub target: Option<Target>,
    /// Endpoint.
    pub url: String,
    /// Distinct series.
    pub series: usize,
    /// Samples per request.
    pub batch: usize,
    /// Senders.
    pub concurrency: usize,
    /// Requested rate (0 = unbounded).
    pub rate: u64,
    /// Wall time from the first request to the last response (s).
    pub elapsed_s: f64,
    /// Requests answered with 2xx (OTLP: also with a partial-success body).
    pub requests_ok: u64,
    /// Requests refused (non-2xx) or lost (connection error, timeout).
    pub requests_failed: u64,
    /// Samples sent.
    pub samples_sent: u64,
    /// Samples in 2xx responses, minus those an OTLP partial success reports rejected.
    pub samples_accepted: u64,
    /// Samples an OTLP partial success reported rejected.
    pub samples_rejected: u64,
    /// `samples_accepted / elapsed_s`.
    pub accepted_per_second: f64,
    /// `samples_sent / elapsed_s`.
    pub sent_per_second: f64,
    /// Median request latency (ms).
    pub latency_p50_ms: f64,
    /// 99th percentile request latency (ms).
    pub latency_p99_ms: f64,
    /// CPU time the generator itself used while sending (s, user + system), when known.
    pub cpu_seconds: Option<f64>,
    /// `cpu_seconds / elapsed_s`: cores the generator kept busy.
    pub cpu_cores: Option<f64>,
    /// Fewest rounds any sender completed.
    pub rounds_min: u64,
    /// Rounds whose stamp the wall clock capped (virtual time had caught up).
    pub capped_rounds: u64,
    /// Event time covered by the samples (s).
    pub event_time_span_s: f64,
    /// The first failure, for diagnosis.
    pub first_error: Option<String>,
}

impl Report {
    /// One human-readable summary line.
    pub fn summary(&self) -> String {
        let target = self.target.map_or("?", |t| match t {
            Target::RemoteWrite => "remote-write",
            Target::OtlpGrpc => "otlp-grpc",
            Target::OtlpHttp => "otlp-http",
        });
        let cpu = match (self.cpu_seconds, self.cpu_cores) {
            (Some(s), Some(c)) => format!("{s:.1}s ({c:.2} cores)"),
            _ => "n/a".into(),
        };
        let mut line = format!(
            "{target} {url}: series={series} batch={batch} concurrency={conc} elapsed={el:.1}s \
             sent={sent} accepted={acc} rejected={rej} requests_ok={ok} requests_failed={failed} \
             accepted/s={aps:.0} sent/s={sps:.0} p50={p50:.2}ms p99={p99:.2}ms generator_cpu={cpu} \
             rounds={rounds} capped_rounds={capped} event_time_span={span:.1}h",
            url = self.url,
            series = self.series,
            batch = self.batch,
            conc = self.concurrency,
            el = self.elapsed_s,
            sent = self.samples_sent,
            acc = self.samples_accepted,
            rej = self.samples_rejected,
            ok = self.requests_ok,
            failed = self.requests_failed,
            aps = self.accepted_per_second,
            sps = self.sent_per_second,
            p50 = self.latency_p50_ms,
            p99 = self.latency_p99_ms,
            rounds = self.rounds_min,
            capped = self.capped_rounds,
            span = self.event_time_span_s / 3600.0,
        );
        if let Some(e) = &self.first_error {
            line.push_str(&format!(" first_error={e:?}"));
        }
        line
    }
}

/// Counters of one sender.
#[derive(Debug, Default)]
struct SenderStats {
    requests_ok: u64,
    requests_failed: u64,
    samples_sent: u64,
    samples_accepted: u64,
    samples_rejected: u64,
    latencies_us: Vec<u32>,
    first_error: Option<String>,
    rounds: u64,
    capped_rounds: u64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
}

/// The result of one request that got an answer.
struct Sent {
    accepted: u64,
    rejected: u64,
}

/// Protocol-specific request making.
enum Client {
    RemoteWrite {
        http: reqwest::Client,
        url: String,
        encoder: Box<RemoteWriteEncoder>,
    },
    OtlpHttp {
        http: reqwest::Client,
        url: String,
        batches: Vec<OtlpBatch>,
    },
    OtlpGrpc {
        grpc: MetricsServiceClient<Channel>,
        batches: Vec<OtlpBatch>,
    },
}

/// One sender: its series, its client, its counters.
struct Sender {
    series: Vec<SeriesDef>,
    batch: usize,
    client: Client,
    stats: SenderStats,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn error_text(status: reqwest::StatusCode, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let cut = text.char_indices().nth(300).map_or(text.len(), |(i, _)| i);
    format!("HTTP {status}: {}", &text[..cut])
}

impl Sender {
    async fn new(
        opts: &Options,
        series: Vec<SeriesDef>,
        http: &reqwest::Client,
        clock: &VirtualClock,
    ) -> anyhow::Result<Self> {
        let batches = |series: &[SeriesDef]| -> Vec<OtlpBatch> {
            let indices: Vec<usize> = (0..series.len()).collect();
            indices
                .chunks(opts.batch)
                .map(|c| OtlpBatch::new(series, c, clock.start_ms - 1_000))
                .collect()
        };
        let client = match opts.target {
            Target::RemoteWrite => Client::RemoteWrite {
                http: http.clone(),
                url: opts.url.clone(),
                encoder: Box::new(RemoteWriteEncoder::new(&series)),
            },
            Target::OtlpHttp => Client::OtlpHttp {
                http: http.clone(),
                url: opts.url.clone(),
                batches: batches(&series),
            },
            Target::OtlpGrpc => {
                let channel = Channel::from_shared(opts.url.clone())
                    .with_context(|| format!("invalid gRPC endpoint {}", opts.url))?
                    .tcp_nodelay(true)
                    .timeout(opts.timeout)
                    .connect()
                    .await
                    .with_context(|| format!("cannot connect to {}", opts.url))?;
                Client::OtlpGrpc {
                    grpc: MetricsServiceClient::new(channel).max_decoding_message_size(16 << 20),
                    batches: batches(&series),
                }
            }
        };
        Ok(Self {
            series,
            batch: opts.batch,
            client,
            stats: SenderStats::default(),
        })
    }

    /// Sends request `index` (the `index`-th batch of this sender's series) of `round`.
    async fn send(&mut self, index: usize, round: u64, ts_ms: i64) -> Result<Sent, String> {
        let lo = index * self.batch;
        let hi = (lo + self.batch).min(self.series.len());
        let n = (hi - lo) as u64;
        match &mut self.client {
            Client::RemoteWrite { http, url, encoder } => {
                let series = &self.series;
                let body = encoder
                    .encode((lo..hi).map(|i| (i, series[i].value(round))), ts_ms)
                    .map_err(|e| format!("{e:#}"))?;
                let resp = http
                    .post(url.as_str())
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                    .header(
                        "User-Agent",
                        concat!("presage-loadgen/", env!("CARGO_PKG_VERSION")),
                    )
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| format!("reading the response failed: {e}"))?;
                if status.is_success() {
                    Ok(Sent {
                        accepted: n,
                        rejected: 0,
                    })
                } else {
                    Err(error_text(status, &bytes))
                }
            }
            Client::OtlpHttp { http, url, batches } => {
                let batch = batches.get_mut(index).ok_or("batch index out of range")?;
                batch.update(&self.series, round, ts_ms);
                let body = batch.request().encode_to_vec();
                let resp = http
                    .post(url.as_str())
                    .header("Content-Type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = resp.status();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| format!("reading the response failed: {e}"))?;
                if !status.is_success() {
                    return Err(error_text(status, &bytes));
                }
                let rejected = ExportMetricsServiceResponse::decode(bytes.as_ref())
                    .ok()
                    .and_then(|r| r.partial_success)
                    .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0));
                Ok(Sent {
                    accepted: n.saturating_sub(rejected),
                    rejected,
                })
            }
            Client::OtlpGrpc { grpc, batches } => {
                let batch = batches.get_mut(index).ok_or("batch index out of range")?;
                batch.update(&self.series, round, ts_ms);
                let resp = grpc
                    .export(batch.request().clone())
                    .await
                    .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))?;
                let rejected = resp
                    .into_inner()
                    .partial_success
                    .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0));
                Ok(Sent {
                    accepted: n.saturating_sub(rejected),
                    rejected,
                })
            }
        }
    }

    fn requests_per_round(&self) -> usize {
        self.series.len().div_ceil(self.batch)
    }

    /// Sends rounds until `deadline`.
    async fn run(
        mut self,
        me: usize,
        rounds: Arc<Vec<AtomicU64>>,
        clock: VirtualClock,
        deadline: Instant,
        rate_per_sender: f64,
    ) -> SenderStats {
        let mut next_at = tokio::time::Instant::now();
        let per_round = self.requests_per_round();
        let mut round = 0u64;
        'rounds: loop {
            // Stay within MAX_ROUND_LEAD rounds of the slowest sender.
            loop {
                if Instant::now() >= deadline {
                    break 'rounds;
                }
                let slowest = rounds
                    .iter()
                    .map(|r| r.load(Ordering::Relaxed))
                    .min()
                    .unwrap_or(0);
                if round <= slowest + MAX_ROUND_LEAD {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let ts = loop {
                match clock.stamp(round, self.stats.last_ts, now_ms()) {
                    Stamp::At { ts_ms, capped } => {
                        if capped {
                            self.stats.capped_rounds += 1;
                        }
                        break ts_ms;
                    }
                    Stamp::Wait(d) => {
                        if Instant::now() + d >= deadline {
                            break 'rounds;
                        }
                        tokio::time::sleep(d).await;
                    }
                }
            };
            self.stats.first_ts.get_or_insert(ts);
            self.stats.last_ts = Some(ts);
            for index in 0..per_round {
                if Instant::now() >= deadline {
                    break 'rounds;
                }
                let n = (self.series.len() - index * self.batch).min(self.batch) as u64;
                if rate_per_sender > 0.0 {
                    tokio::time::sleep_until(next_at).await;
                    next_at += Duration::from_secs_f64(n as f64 / rate_per_sender);
                }
                let started = Instant::now();
                let result = self.send(index, round, ts).await;
                let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
                self.stats.latencies_us.push(micros);
                self.stats.samples_sent += n;
                match result {
                    Ok(sent) => {
                        self.stats.requests_ok += 1;
                        self.stats.samples_accepted += sent.accepted;
                        self.stats.samples_rejected += sent.rejected;
                    }
                    Err(e) => {
                        self.stats.requests_failed += 1;
                        self.stats.first_error.get_or_insert(e);
                    }
                }
            }
            round += 1;
            self.stats.rounds = round;
            if let Some(r) = rounds.get(me) {
                r.store(round, Ordering::Relaxed);
            }
        }
        // Done: stop holding the others back.
        if let Some(r) = rounds.get(me) {
            r.store(u64::MAX, Ordering::Relaxed);
        }
        self.stats
    }
}

/// User + system CPU time of this process so far, from `/proc/self/stat` (Linux; `USER_HZ` is
/// 100 on every Linux architecture in common use).
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after_comm = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn percentile_ms(sorted_us: &[u32], p: usize) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = (sorted_us.len() * p / 100).min(sorted_us.len() - 1);
    f64::from(sorted_us[i]) / 1000.0
}

/// Runs the generator to completion and reports what the target accepted.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    if opts.series == 0 || opts.batch == 0 || opts.concurrency == 0 {
        bail!("--series, --batch and --concurrency must be at least 1");
    }
    let concurrency = opts.concurrency.min(opts.series);
    let clock = VirtualClock::new(now_ms(), opts.start_ago, opts.step_ms);
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .timeout(opts.timeout)
        .build()
        .context("cannot build the HTTP client")?;

    let all = series::generate(opts.series);
    let mut senders = Vec::with_capacity(concurrency);
    let mut start = 0;
    for w in 0..concurrency {
        let end = opts.series * (w + 1) / concurrency;
        let owned = all[start..end].to_vec();
        start = end;
        senders.push(Sender::new(opts, owned, &http, &clock).await?);
    }
    drop(all);

    let rounds: Arc<Vec<AtomicU64>> =
        Arc::new((0..concurrency).map(|_| AtomicU64::new(0)).collect());
    let rate_per_sender = opts.rate as f64 / concurrency as f64;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let deadline = started + opts.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (me, sender) in senders.into_iter().enumerate() {
        tasks.spawn(sender.run(me, rounds.clone(), clock, deadline, rate_per_sender));
    }
    let mut all_stats = Vec::with_capacity(concurrency);
    while let Some(joined) = tasks.join_next().await {
        all_stats.push(joined.context("a sender panicked")?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_seconds = match (cpu_before, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };

    let mut report = Report {
        target: Some(opts.target),
        url: opts.url.clone(),
        series: opts.series,
        batch: opts.batch,
        concurrency,
        rate: opts.rate,
        elapsed_s: elapsed,
        cpu_seconds,
        cpu_cores: cpu_seconds.map(|s| s / elapsed.max(1e-9)),
        rounds_min: u64::MAX,
        ..Report::default()
    };
    let mut latencies = Vec::new();
    let mut first_ts = i64::MAX;
    let mut last_ts = i64::MIN;
    for s in all_stats {
        report.requests_ok += s.requests_ok;
        report.requests_failed += s.requests_failed;
        report.samples_sent += s.samples_sent;
        report.samples_accepted += s.samples_accepted;
        report.samples_rejected += s.samples_rejected;
        report.capped_rounds += s.capped_rounds;
        report.rounds_min = report.rounds_min.min(s.rounds);
        if report.first_error.is_none() {
            report.first_error = s.first_error;
        }
        first_ts = first_ts.min(s.first_ts.unwrap_or(i64::MAX));
        last_ts = last_ts.max(s.last_ts.unwrap_or(i64::MIN));
        latencies.extend(s.latencies_us);
    }
    if report.rounds_min == u64::MAX {
        report.rounds_min = 0;
    }
    if last_ts >= first_ts {
        report.event_time_span_s = (last_ts - first_ts) as f64 / 1000.0;
    }
    latencies.sort_unstable();
    report.latency_p50_ms = percentile_ms(&latencies, 50);
    report.latency_p99_ms = percentile_ms(&latencies, 99);
    report.accepted_per_second = report.samples_accepted as f64 / elapsed.max(1e-9);
    report.sent_per_second = report.samples_sent as f64 / elapsed.max(1e-9);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile_ms(&v, 50), 51.0);
        assert_eq!(percentile_ms(&v, 99), 100.0);
        assert_eq!(percentile_ms(&[], 99), 0.0);
    }

    #[test]
    fn reads_own_cpu_time() {
        if cfg!(target_os = "linux") {
            assert!(process_cpu_seconds().is_some_and(|s| s >= 0.0));
        }
    }
}

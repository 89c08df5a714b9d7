//! Backfill: history pulled from a Prometheus server and written into Presage, so baselines are
//! fitted on weeks of data at start-up instead of after weeks of live data.
//!
//! The series the selectors match are listed first (`/api/v1/series` with `match[]`, `start`
//! and `end`). Each one's history is then pulled through `/api/v1/query_range`, oldest first, in
//! chunks of at most [`MAX_POINTS_PER_QUERY`] steps (Prometheus refuses queries of more than
//! 11,000 points per series), several series at once. Each step is evaluated at its last
//! millisecond, so a step holds the last sample Prometheus had in it, as live ingest would.
//!
//! The samples take the remote_write path, with the metric types from `/api/v1/metadata`:
//!
//! - [`Sink::Store`]: straight into the daemon's own store (`[[backfill]]` entries of
//!   `presage serve`, pulled in the background while the daemon already serves);
//! - [`Sink::RemoteWrite`]: posted to a running daemon's `POST /api/v1/write`
//!   (`presage backfill --to`).
//!
//! A series' samples arrive in time order, so the store accepts them as long as it holds
//! nothing newer for that series: a series that already receives live data keeps only that,
//! and its older samples are refused as out of order (counted and reported, never mixed in).
//! Into the daemon's own store, such a series is not even pulled: it is reported as failed.
//! Samples older than the daemon's `storage.retention` are skipped before sending.
//!
//! Requests that fail with a timeout, a connection error, 408, 429 or a 5xx status are retried
//! with exponential backoff and jitter. When Prometheus or the daemon cannot be reached at all,
//! the whole run stops; a query Prometheus refuses fails only its series.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::{IsTerminal, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, anyhow, bail};
use parking_lot::Mutex;
use presage_config::{BackfillConfig, ForecasterConfig};
use reqwest::StatusCode;
pub use reqwest::Url;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::app::App;
use crate::ingest::METRIC_NAME_LABEL;
use crate::ingest::remote_write::{self, Label, MetricMetadata, Sample, TimeSeries, WriteRequest};
use crate::telemetry::Protocol;

/// Most steps asked of Prometheus for one series in one query (it refuses more than 11,000).
pub const MAX_POINTS_PER_QUERY: i64 = 10_000;
/// Retries of a failed request (timeouts, connection errors, 408, 429, 5xx) by default.
pub const DEFAULT_RETRIES: u32 = 3;
/// How long one HTTP request may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// First retry delay; each retry doubles it, up to [`MAX_BACKOFF`], with jitter.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Failed series listed in a summary.
const MAX_LISTED_FAILURES: usize = 5;
/// Slack when skipping samples that the daemon would refuse as older than its retention: the
/// write comes a little later, and the daemon's clock may differ from this host's.
const RETENTION_SLACK_MS: i64 = 60_000;

/// The part of `range` the daemon keeps: at most its retention, less the slack above, so that
/// the oldest samples are not pulled only to be skipped.
fn within_retention(range: Duration, retention: Duration) -> Duration {
    range.min(retention.saturating_sub(Duration::from_millis(RETENTION_SLACK_MS as u64)))
}

/// What to pull: the series, the time range and the resolution.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Base URL of the Prometheus HTTP API (`http://prometheus:9090`).
    pub prometheus: Url,
    /// Series selectors; their matches are pulled once each.
    pub selectors: Vec<String>,
    /// The first step pulled (ms, a multiple of `step_ms`).
    pub start_ms: i64,
    /// The end of the last step pulled (ms, exclusive, a multiple of `step_ms`).
    pub end_ms: i64,
    /// The step (ms).
    pub step_ms: i64,
    /// Series pulled at once.
    pub concurrency: usize,
    /// Retries of a failed request.
    pub retries: u32,
    /// How long one HTTP request may take.
    pub timeout: Duration,
}

impl Plan {
    /// The whole steps of `step` in the `range` before `now_ms`.
    pub fn new(
        prometheus: Url,
        selectors: Vec<String>,
        range: Duration,
        step: Duration,
        now_ms: i64,
    ) -> Self {
        let step_ms = i64::try_from(step.as_millis()).unwrap_or(60_000).max(1);
        let range_ms = i64::try_from(range.as_millis()).unwrap_or(i64::MAX / 4);
        let end_ms = now_ms.div_euclid(step_ms) * step_ms;
        // The first whole step inside the range.
        let start_ms = (end_ms - range_ms).div_euclid(step_ms) * step_ms;
        let start_ms = if start_ms < end_ms - range_ms {
            start_ms + step_ms
        } else {
            start_ms
        };
        Self {
            prometheus,
            selectors,
            start_ms,
            end_ms,
            step_ms,
            concurrency: presage_config::DEFAULT_BACKFILL_CONCURRENCY,
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The plan of a `[[backfill]]` entry of `config`, up to `now_ms`.
    pub fn from_config(
        entry: &BackfillConfig,
        config: &ForecasterConfig,
        now_ms: i64,
    ) -> anyhow::Result<Self> {
        let prometheus = parse_base_url(&entry.prometheus).map_err(|e| anyhow!(e))?;
        let mut plan = Self::new(
            prometheus,
            entry.selectors.clone(),
            within_retention(
                entry.effective_range(config.storage.retention),
                config.storage.retention,
            ),
            entry.effective_step(config.model.step),
            now_ms,
        );
        plan.concurrency = entry.concurrency.max(1);
        Ok(plan)
    }

    /// Query windows `(first, last)` evaluation times (ms, inclusive), oldest first, each of at
    /// most [`MAX_POINTS_PER_QUERY`] steps. A step is evaluated at its last millisecond.
    pub fn windows(&self) -> Vec<(i64, i64)> {
        let step = self.step_ms.max(1);
        let per_query = MAX_POINTS_PER_QUERY * step;
        let mut out = Vec::new();
        let mut from = self.start_ms;
        while from < self.end_ms {
            let to = (from + per_query).min(self.end_ms);
            out.push((from + step - 1, to - 1));
            from = to;
        }
        out
    }

    /// Steps in the plan, per series.
    pub fn steps(&self) -> i64 {
        ((self.end_ms - self.start_ms) / self.step_ms.max(1)).max(0)
    }
}

/// Where backfilled samples go.
#[derive(Clone)]
pub enum Sink {
    /// The daemon's own store, through the remote_write translation and write path.
    Store(Arc<App>),
    /// A running daemon's remote_write endpoint.
    RemoteWrite {
        /// The client (timeouts set).
        client: reqwest::Client,
        /// `…/api/v1/write`.
        url: Url,
        /// The daemon's `storage.retention`, when known: older samples are not sent.
        retention: Option<Duration>,
        /// Retries of a failed request.
        retries: u32,
        /// Bearer token sent with each request (the daemon's ingest token), if any.
        token: Option<String>,
    },
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sink::Store(_) => f.write_str("Sink::Store"),
            Sink::RemoteWrite { url, .. } => write!(f, "Sink::RemoteWrite({url})"),
        }
    }
}

/// How progress is shown while a backfill runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// On stderr: one line redrawn in place on a terminal, a line every 10 seconds otherwise.
    Stderr,
    /// As log events, every 30 seconds.
    Log,
    /// Not at all.
    Quiet,
}

/// What a backfill did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Where the history came from.
    pub prometheus: String,
    /// Series the selectors matched.
    pub series: u64,
    /// Series whose history was pulled and written.
    pub series_done: u64,
    /// Series that failed (their query was refused, or the run stopped first).
    pub series_failed: u64,
    /// Samples Prometheus returned.
    pub samples_pulled: u64,
    /// Samples the store accepted.
    pub samples_stored: u64,
    /// Samples the store refused (out of order behind live data, series limit, …).
    pub samples_refused: u64,
    /// Samples not sent: not finite, or older than the daemon's retention.
    pub samples_skipped: u64,
    /// The store's first refusal, in its words.
    pub first_refusal: Option<String>,
    /// The first failed series and why.
    pub failures: Vec<String>,
    /// Wall time taken.
    pub elapsed: Duration,
}

impl Summary {
    /// Samples pulled per second of wall time.
    pub fn samples_per_second(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.samples_pulled as f64 / secs
        } else {
            0.0
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} series from {}: {} samples pulled, {} stored in {:.1}s ({:.0} samples/s)",
            self.series_done,
            self.series,
            self.prometheus,
            self.samples_pulled,
            self.samples_stored,
            self.elapsed.as_secs_f64(),
            self.samples_per_second()
        )?;
        if self.samples_skipped > 0 {
            write!(
                f,
                "\n  {} samples skipped (not finite, or older than the daemon's storage.retention)",
                self.samples_skipped
            )?;
        }
        if self.samples_refused > 0 {
            write!(
                f,
                "\n  {} samples refused by the store; first: {}",
                self.samples_refused,
                self.first_refusal.as_deref().unwrap_or("(no reason given)")
            )?;
        }
        if self.series_failed > 0 {
            write!(f, "\n  {} series failed:", self.series_failed)?;
            for failure in &self.failures {
                write!(f, "\n    {failure}")?;
            }
            if self.series_failed > self.failures.len() as u64 {
                write!(f, "\n    …")?;
            }
        }
        Ok(())
    }
}

/// Counters shared by the series tasks and the progress reporter.
#[derive(Default)]
struct Stats {
    series: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    pulled: AtomicU64,
    stored: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    first_refusal: Mutex<Option<String>>,
    failures: Mutex<Vec<String>>,
}

impl Stats {
    fn refusal(&self, n: u64, message: Option<String>) {
        if n == 0 {
            return;
        }
        self.refused.fetch_add(n, Ordering::Relaxed);
        let mut first = self.first_refusal.lock();
        if first.is_none() {
            *first = message;
        }
    }

    fn failure(&self, message: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut failures = self.failures.lock();
        if failures.len() < MAX_LISTED_FAILURES {
            failures.push(message);
        }
    }

    fn summary(&self, prometheus: &Url, elapsed: Duration) -> Summary {
        Summary {
            prometheus: prometheus.to_string(),
            series: self.series.load(Ordering::Relaxed),
            series_done: self.done.load(Ordering::Relaxed),
            series_failed: self.failed.load(Ordering::Relaxed),
            samples_pulled: self.pulled.load(Ordering::Relaxed),
            samples_stored: self.stored.load(Ordering::Relaxed),
            samples_refused: self.refused.load(Ordering::Relaxed),
            samples_skipped: self.skipped.load(Ordering::Relaxed),
            first_refusal: self.first_refusal.lock().clone(),
            failures: self.failures.lock().clone(),
            elapsed,
        }
    }

    fn progress_line(&self, started: Instant) -> String {
        let secs = started.elapsed().as_secs_f64();
        let pulled = self.pulled.load(Ordering::Relaxed);
        let failed = self.failed.load(Ordering::Relaxed);
        let failed = if failed > 0 {
            format!(" ({failed} failed)")
        } else {
            String::new()
        };
        format!(
            "backfill: {}/{} series{failed}, {pulled} samples, {:.0} samples/s, {:.0}s",
            self.done.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed),
            self.series.load(Ordering::Relaxed),
            if secs > 0.0 {
                pulled as f64 / secs
            } else {
                0.0
            },
            secs
        )
    }
}

/// A failed request, after its retries.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No answer: connection refused, DNS, timeout.
    Unreachable(String),
    /// An answer that is an error.
    Refused(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Unreachable(m) | Failure::Refused(m) => f.write_str(m),
        }
    }
}

/// What ends one series' task early.
enum SeriesError {
    /// The series failed; the others go on.
    Series(String),
    /// The run cannot go on (Prometheus or the daemon is gone).
    Fatal(anyhow::Error),
}

/// The text of an error and its sources, without repeating what a source already said.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Delay before retry `attempt` (0-based): doubling from [`FIRST_BACKOFF`], capped, with the
/// upper half jittered so that parallel tasks do not retry in step.
fn backoff(attempt: u32) -> Duration {
    use std::hash::BuildHasher as _;
    let base = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
    let half = base / 2;
    half + Duration::from_nanos(random % (half.as_nanos() as u64).max(1))
}

fn retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Sends the request `make` builds, retrying transport failures and retryable statuses.
/// Returns the status and body of the first answer that is not retried.
pub(crate) async fn send(
    what: &str,
    retries: u32,
    make: impl Fn() -> reqwest::RequestBuilder,
) -> Result<(StatusCode, Vec<u8>), Failure> {
    let mut attempt = 0;
    loop {
        let failure = match make().send().await {
            Ok(res) => {
                let status = res.status();
                match res.bytes().await {
                    Ok(body) if !retryable(status) => return Ok((status, body.to_vec())),
                    Ok(body) => {
                        Failure::Refused(format!("{what}: HTTP {status}: {}", snippet(&body)))
                    }
                    Err(e) => Failure::Unreachable(format!("{what}: {}", error_chain(&e))),
                }
            }
            Err(e) => Failure::Unreachable(format!("{what}: {}", error_chain(&e))),
        };
        if attempt >= retries {
            return Err(failure);
        }
        tracing::debug!(%failure, attempt, "retrying");
        tokio::time::sleep(backoff(attempt)).await;
        attempt += 1;
    }
}

/// The envelope of every Prometheus API answer.
#[derive(Debug, Deserialize)]
struct ApiAnswer<T> {
    status: String,
    #[serde(default = "Option::default")]
    data: Option<T>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// Reads an API answer: its data, or Prometheus' own error in its words.
fn parse_answer<T: DeserializeOwned>(
    what: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, String> {
    let answer: ApiAnswer<T> = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => {
            return Err(if status.is_success() {
                format!("{what}: unexpected answer (is this a Prometheus API URL?): {e}")
            } else {
                format!(
                    "{what}: HTTP {status} without Prometheus' API error (is this a Prometheus URL?): {}",
                    snippet(body)
                )
            });
        }
    };
    if answer.status != "success" {
        return Err(format!(
            "{what}: Prometheus answered {status}: {}: {}",
            answer.error_type.as_deref().unwrap_or("error"),
            answer.error.as_deref().unwrap_or("(no message)")
        ));
    }
    for w in &answer.warnings {
        tracing::warn!(warning = %w, "{what}: Prometheus warns");
    }
    answer
        .data
        .ok_or_else(|| format!("{what}: Prometheus answered without data"))
}

/// A label set, sorted by name.
type Labels = Vec<(String, String)>;

/// `/api/v1/query_range` data.
#[derive(Debug, Deserialize)]
struct Matrix {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

#[derive(Debug, Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// `/api/v1/metadata` data: metric name → its metadata (one entry per target kind).
type MetadataMap = HashMap<String, Vec<MetadataEntry>>;

#[derive(Debug, Deserialize)]
struct MetadataEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    help: String,
    #[serde(default)]
    unit: String,
}

/// The remote_write `MetricType` of a Prometheus metadata type.
fn metric_type(kind: &str) -> i32 {
    match kind {
        "counter" => 1,
        "gauge" => 2,
        "histogram" => 3,
        "gaugehistogram" => 4,
        "summary" => 5,
        "info" => 6,
        "stateset" => 7,
        _ => 0,
    }
}

/// The metadata a series' writes carry, so that the store knows a counter from a gauge the way
/// it does for Prometheus' own remote_write. OpenMetrics families drop `_total` from the name.
fn metadata_for(name: &str, metadata: &MetadataMap) -> Vec<MetricMetadata> {
    let entry = metadata.get(name).and_then(|m| m.first()).or_else(|| {
        name.strip_suffix("_total")
            .and_then(|family| metadata.get(family))
            .and_then(|m| m.first())
            .filter(|m| m.kind == "counter")
    });
    entry
        .map(|m| {
            vec![MetricMetadata {
                r#type: metric_type(&m.kind),
                metric_family_name: name.to_string(),
                help: m.help.clone(),
                unit: m.unit.clone(),
            }]
        })
        .unwrap_or_default()
}

/// A PromQL double-quoted string.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A selector matching exactly this label set's labels (series with more labels match too:
/// results are filtered by their whole label set).
fn exact_selector(labels: &Labels) -> String {
    let matchers: Vec<String> = labels
        .iter()
        .map(|(n, v)| format!("{n}={}", quote(v)))
        .collect();
    format!("{{{}}}", matchers.join(","))
}

/// Seconds with millisecond precision, as the Prometheus API takes them.
fn api_time(ms: i64) -> String {
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

/// The Prometheus HTTP API.
struct Prometheus {
    client: reqwest::Client,
    base: Url,
    retries: u32,
}

impl Prometheus {
    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// POSTs a form to an API endpoint (Prometheus accepts it for every query endpoint, and the
    /// parameters can be longer than a URL).
    async fn post<T: DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<T, Failure> {
        let url = self.endpoint(path);
        let body = serde_urlencoded::to_string(params)
            .map_err(|e| Failure::Refused(format!("{what}: cannot encode the query: {e}")))?;
        let (status, answer) = send(what, self.retries, || {
            self.client
                .post(&url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body.clone())
        })
        .await?;
        parse_answer(what, status, &answer).map_err(Failure::Refused)
    }

    async fn get<T: DeserializeOwned>(&self, what: &str, path: &str) -> Result<T, Failure> {
        let url = self.endpoint(path);
        let (status, answer) = send(what, self.retries, || self.client.get(&url)).await?;
        parse_answer(what, status, &answer).map_err(Failure::Refused)
    }

    /// The series the selectors match between `start_ms` and `end_ms`, deduplicated, sorted.
    async fn series(
        &self,
        selectors: &[String],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<Labels>, Failure> {
        let mut params: Vec<(&str, String)> =
            selectors.iter().map(|s| ("match[]", s.clone())).collect();
        params.push(("start", api_time(start_ms)));
        params.push(("end", api_time(end_ms)));
        let found: Vec<BTreeMap<String, String>> = self
            .post("listing the series", "/api/v1/series", &params)
            .await?;
        let mut out: Vec<Labels> = found.into_iter().map(|m| m.into_iter().collect()).collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Metric metadata (types); empty when Prometheus has none.
    async fn metadata(&self) -> Result<MetadataMap, Failure> {
        self.get("reading metric metadata", "/api/v1/metadata")
            .await
    }

    /// The values of one series evaluated every `step_ms` from `first_ms` to `last_ms`.
    async fn range(
        &self,
        labels: &Labels,
        first_ms: i64,
        last_ms: i64,
        step_ms: i64,
    ) -> Result<Vec<(f64, String)>, Failure> {
        let params = [
            ("query", exact_selector(labels)),
            ("start", api_time(first_ms)),
            ("end", api_time(last_ms)),
            ("step", api_time(step_ms)),
        ];
        let matrix: Matrix = self
            .post("querying a range", "/api/v1/query_range", &params)
            .await?;
        if matrix.result_type != "matrix" {
            return Err(Failure::Refused(format!(
                "querying a range: expected a matrix, Prometheus answered a {}",
                matrix.result_type
            )));
        }
        let values = matrix
            .result
            .into_iter()
            .find(|s| {
                s.metric.len() == labels.len()
                    && s.metric
                        .iter()
                        .zip(labels)
                        .all(|((a, b), (c, d))| a == c && b == d)
            })
            .map(|s| s.values)
            .unwrap_or_default();
        Ok(values)
    }
}

/// What one write did.
pub(crate) struct Written {
    /// Samples stored.
    pub(crate) stored: u64,
    /// Samples refused.
    pub(crate) refused: u64,
    /// The first refusal, in the store's words.
    pub(crate) first_refusal: Option<String>,
}

impl Sink {
    /// The oldest timestamp worth sending (ms), when the daemon's retention is known.
    pub(crate) fn oldest_kept(&self) -> Option<i64> {
        match self {
            Sink::Store(app) => {
                let retention = i64::try_from(app.config.storage.retention.as_millis()).ok()?;
                Some(
                    app.clock
                        .now_ms()
                        .saturating_sub(retention)
                        .saturating_add(RETENTION_SLACK_MS),
                )
            }
            Sink::RemoteWrite { retention, .. } => {
                let retention = i64::try_from(retention.as_ref()?.as_millis()).ok()?;
                Some(
                    now_ms()
                        .saturating_sub(retention)
                        .saturating_add(RETENTION_SLACK_MS),
                )
            }
        }
    }

    pub(crate) async fn write(&self, req: WriteRequest) -> Result<Written, anyhow::Error> {
        let n: u64 = req.timeseries.iter().map(|t| t.samples.len() as u64).sum();
        match self {
            Sink::Store(app) => {
                let app = app.clone();
                // Resampling and scoring are CPU work: off the async threads.
                let out = tokio::task::spawn_blocking(move || {
                    let batch = remote_write::translate(req, &app.counter_families);
                    app.write_history(Protocol::Backfill, batch)
                })
                .await
                .context("the store write task failed")?;
                Ok(Written {
                    stored: out.accepted,
                    refused: out.rejected_total(),
                    first_refusal: out.first_error,
                })
            }
            Sink::RemoteWrite {
                client,
                url,
                retries,
                token,
                ..
            } => {
                let body = remote_write::encode(&req);
                let what = format!("writing to presage at {url}");
                let (status, answer) = send(&what, *retries, || {
                    let req = client
                        .post(url.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
                        .header(reqwest::header::CONTENT_ENCODING, "snappy")
                        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                        .header(crate::api::HISTORY_HEADER, "true")
                        .body(body.clone());
                    match token {
                        Some(t) => req.bearer_auth(t),
                        None => req,
                    }
                })
                .await
                .map_err(|f| anyhow!("{f}"))?;
                if status.is_success() {
                    return Ok(Written {
                        stored: n,
                        refused: 0,
                        first_refusal: None,
                    });
                }
                let text = snippet(&answer);
                if status == StatusCode::BAD_REQUEST {
                    // Some samples were refused, the rest stored: "R of N samples rejected; …".
                    let refused = text
                        .split_once(" of ")
                        .and_then(|(r, _)| r.trim().parse::<u64>().ok())
                        .unwrap_or(n)
                        .min(n);
                    let reason = text
                        .split_once("; first: ")
                        .map_or(text.as_str(), |(_, reason)| reason);
                    return Ok(Written {
                        stored: n - refused,
                        refused,
                        first_refusal: Some(reason.to_string()),
                    });
                }
                bail!("{what}: HTTP {status}: {text}")
            }
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Everything the series tasks share.
struct Shared {
    prometheus: Prometheus,
    sink: Sink,
    plan: Plan,
    metadata: MetadataMap,
    stats: Stats,
}

impl Shared {
    fn telemetry(&self) -> Option<&crate::telemetry::Telemetry> {
        match &self.sink {
            Sink::Store(app) => Some(&app.telemetry),
            Sink::RemoteWrite { .. } => None,
        }
    }

    /// Pulls and writes one series' history, oldest window first.
    async fn series(&self, labels: Labels) -> Result<(), SeriesError> {
        let name = labels
            .iter()
            .find(|(n, _)| n == METRIC_NAME_LABEL)
            .map_or("", |(_, v)| v.as_str());
        let metadata = metadata_for(name, &self.metadata);
        let wire_labels: Vec<Label> = labels
            .iter()
            .map(|(n, v)| Label {
                name: n.clone(),
                value: v.clone(),
            })
            .collect();
        if let Sink::Store(app) = &self.sink
            && let Some(info) = app.store.info_of(crate::store::series_id(&labels))
            && info.last_ms >= self.plan.start_ms
        {
            // Its history would be refused as out of order behind what it already holds (live
            // data, or an earlier entry with an overlapping selector): do not pull it.
            let newest = u64::try_from(info.last_ms)
                .map(|ms| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)));
            return Err(SeriesError::Series(match newest {
                Ok(t) => format!(
                    "{}: already holds samples up to {t}; older history would be out of order",
                    crate::store::display_labels(&labels)
                ),
                Err(_) => format!(
                    "{}: already holds newer samples; older history would be out of order",
                    crate::store::display_labels(&labels)
                ),
            }));
        }
        for (first, last) in self.plan.windows() {
            let values = match self
                .prometheus
                .range(&labels, first, last, self.plan.step_ms)
                .await
            {
                Ok(v) => v,
                Err(Failure::Unreachable(m)) => {
                    return Err(SeriesError::Fatal(anyhow!(
                        "cannot reach Prometheus at {}: {m}",
                        self.prometheus.base
                    )));
                }
                Err(Failure::Refused(m)) => {
                    return Err(SeriesError::Series(format!(
                        "{}: {m}",
                        crate::store::display_labels(&labels)
                    )));
                }
            };
            let pulled = values.len() as u64;
            self.stats.pulled.fetch_add(pulled, Ordering::Relaxed);
            if let Some(t) = self.telemetry() {
                t.backfill_samples(pulled);
            }
            let oldest = self.sink.oldest_kept().unwrap_or(i64::MIN);
            let samples: Vec<Sample> = values
                .iter()
                .filter_map(|(t, v)| {
                    let timestamp = (t * 1000.0).round() as i64;
                    let value = v.parse::<f64>().ok()?;
                    (value.is_finite() && timestamp >= oldest)
                        .then_some(Sample { value, timestamp })
                })
                .collect();
            self.stats
                .skipped
                .fetch_add(pulled - samples.len() as u64, Ordering::Relaxed);
            if samples.is_empty() {
                continue;
            }
            let req = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: wire_labels.clone(),
                    samples,
                    histograms: Vec::new(),
                }],
                metadata: metadata.clone(),
            };
            let written = self.sink.write(req).await.map_err(SeriesError::Fatal)?;
            self.stats
                .stored
                .fetch_add(written.stored, Ordering::Relaxed);
            self.stats.refusal(written.refused, written.first_refusal);
        }
        Ok(())
    }
}

/// Shows progress until dropped, then prints the last state.
pub(crate) struct Reporter {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Reporter {
    /// Shows the line `line` builds, as `mode` says.
    pub(crate) fn start(mode: Progress, line: impl Fn() -> String + Send + 'static) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let tty = std::io::stderr().is_terminal();
        let every = match mode {
            Progress::Stderr if tty => Duration::from_millis(250),
            Progress::Stderr => Duration::from_secs(10),
            Progress::Log => Duration::from_secs(30),
            Progress::Quiet => return Self { stop, task: None },
        };
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                let done = tokio::select! {
                    _ = tick.tick() => false,
                    _ = stopped.changed() => true,
                };
                let line = line();
                match mode {
                    Progress::Stderr if tty => {
                        let mut err = std::io::stderr().lock();
                        let _ = write!(err, "\r\x1b[2K{line}");
                        if done {
                            let _ = writeln!(err);
                        }
                        let _ = err.flush();
                    }
                    Progress::Stderr if !done => eprintln!("{line}"),
                    Progress::Log if !done => tracing::info!("{line}"),
                    _ => {}
                }
                if done {
                    return;
                }
            }
        });
        Self {
            stop,
            task: Some(task),
        }
    }

    /// Stops, after showing the last state.
    pub(crate) async fn finish(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A client for Prometheus and the daemon.
pub fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("presage-backfill/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot set up the HTTP client")
}

/// Runs a backfill: lists the series, pulls and writes each one's history with
/// `plan.concurrency` series at once, and sums up. Fails as a whole only when Prometheus or the
/// sink cannot be reached (or refuses the listing); failed series are in the summary.
pub async fn run(plan: Plan, sink: Sink, progress: Progress) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let prometheus = Prometheus {
        client: http_client(plan.timeout)?,
        base: plan.prometheus.clone(),
        retries: plan.retries,
    };
    let series = match prometheus
        .series(&plan.selectors, plan.start_ms, plan.end_ms)
        .await
    {
        Ok(s) => s,
        Err(Failure::Unreachable(m)) => {
            bail!("cannot reach Prometheus at {}: {m}", plan.prometheus)
        }
        Err(Failure::Refused(m)) => bail!("{m}"),
    };
    let metadata = if series.is_empty() {
        MetadataMap::new()
    } else {
        prometheus.metadata().await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no metric metadata: counters are recognised by their names");
            MetadataMap::new()
        })
    };
    let shared = Arc::new(Shared {
        prometheus,
        sink,
        plan,
        metadata,
        stats: Stats::default(),
    });
    let total = series.len();
    shared.stats.series.store(total as u64, Ordering::Relaxed);
    if let Some(t) = shared.telemetry() {
        t.backfill_series_found(total);
    }
    let reporter = Reporter::start(progress, {
        let shared = shared.clone();
        move || shared.stats.progress_line(started)
    });

    // At most `concurrency` series in flight: a permit is taken before a task is spawned, so
    // a selector matching 100,000 series does not spawn 100,000 tasks.
    let permits = Arc::new(Semaphore::new(shared.plan.concurrency.max(1)));
    let mut tasks: JoinSet<Result<(), SeriesError>> = JoinSet::new();
    let mut finished = 0usize;
    let mut fatal: Option<anyhow::Error> = None;
    let settle = |joined: Result<Result<(), SeriesError>, tokio::task::JoinError>,
                  finished: &mut usize|
     -> Option<anyhow::Error> {
        *finished += 1;
        let failed = match joined {
            Ok(Ok(())) => {
                shared.stats.done.fetch_add(1, Ordering::Relaxed);
                false
            }
            Ok(Err(SeriesError::Series(m))) => {
                tracing::warn!(failure = %m, "backfill of a series failed");
                shared.stats.failure(m);
                true
            }
            Ok(Err(SeriesError::Fatal(e))) => return Some(e),
            Err(e) => {
                shared.stats.failure(format!("a series task failed: {e}"));
                true
            }
        };
        if let Some(t) = shared.telemetry() {
            t.backfill_series_finished(failed);
        }
        None
    };
    'spawn: for labels in series {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let task_shared = shared.clone();
        tasks.spawn(async move {
            let result = task_shared.series(labels).await;
            drop(permit);
            result
        });
        while let Some(joined) = tasks.try_join_next() {
            if let Some(e) = settle(joined, &mut finished) {
                fatal = Some(e);
                break 'spawn;
            }
        }
    }
    if fatal.is_none() {
        while let Some(joined) = tasks.join_next().await {
            if let Some(e) = settle(joined, &mut finished) {
                fatal = Some(e);
                break;
            }
        }
    }
    tasks.abort_all();
    reporter.finish().await;
    if let Some(e) = fatal {
        let abandoned = total.saturating_sub(finished) + 1;
        if let Some(t) = shared.telemetry() {
            t.backfill_series_abandoned(abandoned);
        }
        let summary = shared
            .stats
            .summary(&shared.plan.prometheus, started.elapsed());
        return Err(e.context(format!(
            "backfill stopped after {} of {total} series ({} samples stored)",
            summary.series_done, summary.samples_stored
        )));
    }
    Ok(shared
        .stats
        .summary(&shared.plan.prometheus, started.elapsed()))
}

/// The `[[backfill]]` entries of the daemon's configuration, one after the other, into its
/// store. Runs in the background of `presage serve`; problems are logged, never fatal.
pub async fn run_configured(app: Arc<App>) {
    let now = app.clock.now_ms();
    for (i, entry) in app.config.backfill.iter().enumerate() {
        let plan = match Plan::from_config(entry, &app.config, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(entry = i, error = %e, "backfill entry skipped");
                continue;
            }
        };
        tracing::info!(
            prometheus = %plan.prometheus,
            selectors = ?plan.selectors,
            steps = plan.steps(),
            step_ms = plan.step_ms,
            "backfill started"
        );
        match run(plan, Sink::Store(app.clone()), Progress::Log).await {
            Ok(summary) if summary.series == 0 => {
                tracing::warn!(entry = i, prometheus = %entry.prometheus, selectors = ?entry.selectors, "backfill: no series match")
            }
            Ok(summary) if summary.series_failed > 0 || summary.samples_refused > 0 => {
                tracing::warn!("backfill finished with problems: {summary}")
            }
            Ok(summary) => tracing::info!("backfill finished: {summary}"),
            Err(e) => tracing::error!("backfill of entry {i} failed: {e:#}"),
        }
    }
}

/// The HTTP URL of a daemon listening on `addr` (an unspecified address is reached on
/// loopback).
pub fn daemon_url(addr: SocketAddr) -> Option<Url> {
    let ip = match addr.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Url::parse(&format!("http://{}", SocketAddr::new(ip, addr.port()))).ok()
}

/// The daemon `presage backfill` writes to: `--to`, else `server.http` of its configuration,
/// else `http://127.0.0.1:9470`.
pub fn target(to: Option<Url>, config: Option<&ForecasterConfig>) -> Url {
    to.or_else(|| config.and_then(|c| daemon_url(c.server.http)))
        .unwrap_or_else(|| {
            daemon_url(SocketAddr::from(([127, 0, 0, 1], 9470)))
                .expect("a loopback address makes a valid URL")
        })
}

/// Prints the summaries of `presage backfill` on stderr; true when every source matched series
/// and every series was written.
pub fn report(summaries: &[Summary]) -> bool {
    let mut ok = true;
    for s in summaries {
        eprintln!("presage backfill: {s}");
        if s.series == 0 {
            eprintln!(
                "presage backfill: no series match on {} in that range",
                s.prometheus
            );
            ok = false;
        }
        ok &= s.series_failed == 0;
    }
    ok
}

/// Parses the base URL of an HTTP API: `http://` or `https://`, a host, no query or fragment.
pub fn parse_base_url(text: &str) -> Result<Url, String> {
    let lower = text.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("`{text}` must start with http:// or https://"));
    }
    let url = Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "`{text}` must not have a query or fragment: API paths are appended to it"
        ));
    }
    Ok(url)
}

/// Checks a PromQL series selector (`metric{label="value"}`).
pub fn parse_selector(text: &str) -> Result<String, String> {
    match presage_config::promql::parse_selector_expr(text) {
        Ok(promql_parser::parser::Expr::VectorSelector(_)) => Ok(text.to_string()),
        Ok(_) => Err(format!(
            "`{text}` is not a series selector: expected `metric{{label=\"value\"}}`"
        )),
        Err(e) => Err(format!("invalid selector `{text}`: {e}")),
    }
}

/// Parses a positive duration with units (`14d`, `1m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration `{text}`: {e} (use e.g. 14d, 6h, 1m)"))?;
    if d.is_zero() {
        return Err("must be longer than 0s".into());
    }
    Ok(d)
}

/// What `presage backfill` was asked.
#[derive(Debug, Clone)]
pub struct Command {
    /// A source given on the command line: Prometheus and selectors.
    pub source: Option<(Url, Vec<String>)>,
    /// History pulled; default the daemon's `storage.retention`.
    pub range: Option<Duration>,
    /// Resolution; default the daemon's `model.step`.
    pub step: Option<Duration>,
    /// The daemon's HTTP address.
    pub to: Url,
    /// Series at once.
    pub concurrency: usize,
    /// Retries of a failed request.
    pub retries: u32,
    /// How long one HTTP request may take.
    pub timeout: Duration,
    /// `[[backfill]]` entries to run when no source is given.
    pub entries: Vec<BackfillConfig>,
}

/// The daemon's settings that matter to a backfill, from its `/api/v1/status`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DaemonSettings {
    /// `model.step`.
    pub(crate) step: Option<Duration>,
    /// `storage.retention`.
    pub(crate) retention: Option<Duration>,
}

/// Checks that a Presage daemon answers at `to` and reads its step and retention.
pub(crate) async fn daemon_settings(
    client: &reqwest::Client,
    to: &Url,
    retries: u32,
    token: Option<&str>,
) -> anyhow::Result<DaemonSettings> {
    let url = format!("{}/api/v1/status", to.as_str().trim_end_matches('/'));
    let what = "GET /api/v1/status";
    let (status, body) = send(what, retries, || match token {
        Some(t) => client.get(&url).bearer_auth(t),
        None => client.get(&url),
    })
        .await
        .map_err(|f| match f {
            Failure::Unreachable(m) => anyhow!(
                "cannot reach presage at {to}: {m}; is `presage serve` running there? (--to sets the address)"
            ),
            Failure::Refused(m) => anyhow!("{m}"),
        })?;
    if !status.is_success() {
        bail!(
            "{to} does not look like presage: GET /api/v1/status answered HTTP {status}: {}",
            snippet(&body)
        );
    }
    let doc: serde_json::Value = serde_json::from_slice(&body)
        .with_context(|| format!("{to} does not look like presage: /api/v1/status is not JSON"))?;
    let config = &doc["data"]["config"];
    let duration =
        |v: &serde_json::Value| v.as_str().and_then(|s| humantime::parse_duration(s).ok());
    Ok(DaemonSettings {
        step: duration(&config["model"]["step"]),
        retention: duration(&config["storage"]["retention"]),
    })
}

/// `presage backfill`: pulls from Prometheus into the daemon at `to` through its remote_write
/// endpoint. One summary per source (the command line's, or each `[[backfill]]` entry).
pub async fn command(cmd: Command) -> anyhow::Result<Vec<Summary>> {
    let client = http_client(cmd.timeout)?;
    let daemon = daemon_settings(&client, &cmd.to, cmd.retries, None).await?;
    let write_url = Url::parse(&format!(
        "{}/api/v1/write",
        cmd.to.as_str().trim_end_matches('/')
    ))
    .context("the remote_write URL")?;
    let sink = Sink::RemoteWrite {
        client,
        url: write_url,
        retention: daemon.retention,
        retries: cmd.retries,
        token: None,
    };
    let retention = daemon
        .retention
        .unwrap_or(presage_config::StorageConfig::default().retention);
    let model_step = daemon
        .step
        .unwrap_or(presage_config::ModelConfig::default().step);
    let show = |d: Duration| humantime::format_duration(d).to_string();

    // The command line's source, or the configuration's entries with the command line's
    // range and step, when given, instead of theirs.
    let sources: Vec<BackfillConfig> = match &cmd.source {
        Some((url, selectors)) => {
            let mut source = BackfillConfig::new(url.as_str(), selectors.clone());
            source.concurrency = cmd.concurrency;
            vec![source]
        }
        None => cmd.entries.clone(),
    };
    let mut summaries = Vec::new();
    for source in sources {
        let url = parse_base_url(&source.prometheus).map_err(|m| anyhow!(m))?;
        let (selectors, concurrency) = (source.selectors, source.concurrency);
        let (range, step) = (cmd.range.or(source.range), cmd.step.or(source.step));
        let range = match range {
            Some(r) if r > retention => {
                eprintln!(
                    "presage backfill: the daemon keeps {} of history (storage.retention): pulling that instead of {}",
                    show(retention),
                    show(r)
                );
                within_retention(r, retention)
            }
            Some(r) => within_retention(r, retention),
            None => within_retention(retention, retention),
        };
        let step = step.unwrap_or(model_step);
        if step > model_step {
            eprintln!(
                "presage backfill: a step of {} is coarser than the daemon's model.step ({}): the model will see gaps between steps",
                show(step),
                show(model_step)
            );
        }
        let mut plan = Plan::new(url, selectors, range, step, now_ms());
        plan.concurrency = concurrency.max(1);
        plan.retries = cmd.retries;
        plan.timeout = cmd.timeout;
        eprintln!(
            "presage backfill: {} from {} ({} steps of {} per series) into {}",
            plan.selectors.join(" "),
            plan.prometheus,
            plan.steps(),
            show(step),
            cmd.to
        );
        summaries.push(run(plan, sink.clone(), Progress::Stderr).await?);
    }
    Ok(summaries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(range_s: u64, step_s: u64, now_ms: i64) -> Plan {
        Plan::new(
            Url::parse("http://p:9090").unwrap(),
            vec!["up".into()],
            Duration::from_secs(range_s),
            Duration::from_secs(step_s),
            now_ms,
        )
    }

    #[test]
    fn windows_cover_the_range_in_order_without_overlap() {
        // 14 days of minutes: 20,160 steps, three queries.
        let now = 1_700_000_012_345;
        let p = plan(14 * 86_400, 60, now);
        assert_eq!(p.end_ms % 60_000, 0);
        assert_eq!(p.start_ms % 60_000, 0);
        assert!(p.end_ms <= now && now - p.end_ms < 60_000);
        assert_eq!(p.steps(), 20_160);
        let w = p.windows();
        assert_eq!(w.len(), 3);
        let mut points = 0;
        let mut next = p.start_ms + 59_999;
        for &(first, last) in &w {
            assert_eq!(first, next, "windows are contiguous");
            let n = (last - first) / 60_000 + 1;
            assert!(n <= MAX_POINTS_PER_QUERY, "{n} points in one query");
            // Every evaluation is the last millisecond of a step.
            assert_eq!((first + 1) % 60_000, 0);
            assert_eq!((last + 1) % 60_000, 0);
            points += n;
            next = last + 60_000;
        }
        assert_eq!(points, p.steps());
        assert_eq!(w.last().unwrap().1, p.end_ms - 1);

        // A range that is not a whole number of steps starts at the first whole step in it.
        let p = plan(150, 60, 600_000);
        assert_eq!((p.start_ms, p.end_ms), (480_000, 600_000));
        assert_eq!(p.windows(), vec![(539_999, 599_999)]);
    }

    #[test]
    fn exact_selectors_quote_label_values() {
        let labels: Labels = vec![
            ("__name__".into(), "up".into()),
            ("path".into(), "C:\\x \"y\"\nz".into()),
        ];
        assert_eq!(
            exact_selector(&labels),
            r#"{__name__="up",path="C:\\x \"y\"\nz"}"#
        );
        assert!(parse_selector(&exact_selector(&labels)).is_ok());
    }

    #[test]
    fn prometheus_errors_are_reported_in_its_words() {
        let body = br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected character"}"#;
        let err = parse_answer::<Vec<BTreeMap<String, String>>>(
            "listing the series",
            StatusCode::BAD_REQUEST,
            body,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "listing the series: Prometheus answered 400 Bad Request: bad_data: 1:5: parse error: unexpected character"
        );
        let err =
            parse_answer::<Matrix>("q", StatusCode::NOT_FOUND, b"404 page not found").unwrap_err();
        assert!(err.contains("is this a Prometheus URL?"), "{err}");
        assert!(err.contains("404 page not found"), "{err}");
        let ok: Matrix = parse_answer(
            "q",
            StatusCode::OK,
            br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up"},"values":[[1700000059.999,"1"],[1700000119.999,"NaN"]]}]}}"#,
        )
        .unwrap();
        assert_eq!(ok.result[0].values[0], (1_700_000_059.999, "1".to_string()));
        assert_eq!(
            (ok.result[0].values[0].0 * 1000.0).round() as i64,
            1_700_000_059_999
        );
    }

    #[test]
    fn metadata_marks_counters_by_series_name() {
        let meta: MetadataMap = serde_json::from_str(
            r#"{"http_requests_total":[{"type":"counter","help":"h","unit":""}],
                "jobs":[{"type":"counter","help":"","unit":""}],
                "temp":[{"type":"gauge","help":"","unit":""}]}"#,
        )
        .unwrap();
        assert_eq!(metadata_for("http_requests_total", &meta)[0].r#type, 1);
        let jobs = metadata_for("jobs_total", &meta);
        assert_eq!(
            (jobs[0].r#type, jobs[0].metric_family_name.as_str()),
            (1, "jobs_total")
        );
        assert_eq!(metadata_for("temp", &meta)[0].r#type, 2);
        assert!(metadata_for("unknown", &meta).is_empty());
    }

    #[test]
    fn urls_selectors_and_durations_are_checked() {
        assert!(parse_base_url("http://127.0.0.1:9090").is_ok());
        assert_eq!(
            parse_base_url("https://h/prometheus/").unwrap().path(),
            "/prometheus/"
        );
        assert!(
            parse_base_url("127.0.0.1:9090")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_base_url("ftp://h/").unwrap_err().contains("http://"));
        assert!(
            parse_base_url("http://h/?a=1")
                .unwrap_err()
                .contains("query")
        );
        assert!(parse_base_url("http://h:99999/").is_err());
        assert!(parse_selector(r#"node_load1{job="node"}"#).is_ok());
        assert!(
            parse_selector("rate(x[5m])")
                .unwrap_err()
                .contains("not a series selector")
        );
        assert!(
            parse_selector("up{")
                .unwrap_err()
                .starts_with("invalid selector")
        );
        assert_eq!(parse_duration("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("fortnight").is_err());
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 0..20 {
            let base = FIRST_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            let d = backoff(attempt);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d:?}");
        }
    }

    #[test]
    fn summaries_say_what_went_wrong() {
        let s = Summary {
            prometheus: "http://p:9090/".into(),
            series: 3,
            series_done: 2,
            series_failed: 1,
            samples_pulled: 100,
            samples_stored: 90,
            samples_refused: 8,
            samples_skipped: 2,
            first_refusal: Some("out of order".into()),
            failures: vec!["up{job=\"x\"}: bad_data".into()],
            elapsed: Duration::from_secs(2),
        };
        let text = s.to_string();
        assert!(text.starts_with("2/3 series from http://p:9090/: 100 samples pulled, 90 stored in 2.0s (50 samples/s)"), "{text}");
        assert!(
            text.contains("8 samples refused by the store; first: out of order"),
            "{text}"
        );
        assert!(text.contains("2 samples skipped"), "{text}");
        assert!(
            text.contains("1 series failed:\n    up{job=\"x\"}: bad_data"),
            "{text}"
        );
    }
}

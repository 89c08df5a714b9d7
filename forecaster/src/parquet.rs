//! `presage export --format parquet` and `presage import`: a running daemon's history as
//! Parquet files ([`presage_history`]: one folder per metric, one file per UTC day) and back.
//!
//! Export reads the daemon's resampled history page by page through `GET /api/v1/export`
//! and writes it one metric at a time. Import reads every `.parquet` file of a folder and
//! posts the series to a daemon's remote_write endpoint marked as history, with the sender
//! `presage backfill` uses (chunks, retries, several series at once). What the daemon held is
//! what comes back: the same series, step timestamps and values, bit for bit. Counters and
//! deltas are held, and so exported, as per-second rates; import writes every series as a
//! gauge (remote_write metadata), so those rates are stored as they are.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use parking_lot::Mutex;
use presage_history::SeriesHistory;
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::backfill::{self, Failure, Progress, Reporter, Sink, Url};
use crate::ingest::METRIC_NAME_LABEL;
use crate::ingest::remote_write::{Label, MetricMetadata, Sample, TimeSeries, WriteRequest};

/// Most samples in one remote_write request of an import.
pub const MAX_SAMPLES_PER_REQUEST: usize = 10_000;
/// Series per `/api/v1/export` page an export asks for.
const EXPORT_PAGE_SERIES: usize = 1_000;
/// remote_write `MetricType` of a gauge.
const METRIC_TYPE_GAUGE: i32 = 2;

/// Reads a bearer token from a file: its first line that is neither empty nor a `#` comment.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .ok_or_else(|| anyhow!("{}: holds no token", path.display()))
}

fn with_token(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// What `presage export` was asked.
#[derive(Debug, Clone)]
pub struct ExportCommand {
    /// The daemon's HTTP address.
    pub from: Url,
    /// Series selectors; empty for every series.
    pub selectors: Vec<String>,
    /// The folder written (created; must be empty if it exists).
    pub out: PathBuf,
    /// API token, if the daemon requires one.
    pub token: Option<String>,
    /// Retries of a failed request.
    pub retries: u32,
    /// How long one request may take.
    pub timeout: Duration,
    /// How progress is shown.
    pub progress: Progress,
}

/// What an export did.
#[derive(Debug, Clone)]
pub struct ExportSummary {
    /// Where the history came from.
    pub from: String,
    /// What was written.
    pub written: presage_history::Summary,
    /// Series held as per-second rates (counters and deltas).
    pub rates: u64,
    /// Wall time taken.
    pub elapsed: Duration,
}

impl ExportSummary {
    /// Samples written per second of wall time.
    pub fn samples_per_second(&self) -> f64 {
        per_second(self.written.points, self.elapsed)
    }
}

fn per_second(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

impl fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} from {} in {:.1}s ({:.0} samples/s)",
            self.written,
            self.from,
            self.elapsed.as_secs_f64(),
            self.samples_per_second()
        )?;
        if self.rates > 0 {
            write!(
                f,
                "\n  {} series are counters or deltas: their values are per-second rates",
                self.rates
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    step_seconds: f64,
    next: Option<String>,
    series: Vec<PageSeries>,
}

#[derive(Debug, Deserialize)]
struct PageSeries {
    labels: BTreeMap<String, String>,
    kind: String,
    start_ms: i64,
    values: Vec<Option<String>>,
}

impl PageSeries {
    fn into_history(self, step_ms: i64) -> anyhow::Result<SeriesHistory> {
        let mut points = Vec::with_capacity(self.values.len());
        for (i, v) in self.values.iter().enumerate() {
            let Some(v) = v else { continue };
            let value = v
                .parse::<f64>()
                .map_err(|_| anyhow!("invalid value {v:?} in the daemon's answer"))?;
            points.push((self.start_ms + i as i64 * step_ms, value));
        }
        Ok(SeriesHistory {
            labels: self.labels,
            points,
        })
    }
}

/// Says what a refused API request means.
fn api_refusal(from: &Url, what: &str, status: StatusCode, body: &[u8]) -> anyhow::Error {
    let text = backfill::snippet(body);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => anyhow!(
            "presage at {from} refused {what} (HTTP {status}): {text}; pass its API token with --token-file"
        ),
        StatusCode::NOT_FOUND => anyhow!(
            "presage at {from} has no {what} (HTTP 404): is it an older version, or not presage?"
        ),
        _ => anyhow!("{what} at {from}: HTTP {status}: {text}"),
    }
}

fn unreachable(to: &Url, f: Failure) -> anyhow::Error {
    match f {
        Failure::Unreachable(m) => anyhow!(
            "cannot reach presage at {to}: {m}; is `presage serve` running there? (--from/--to set the address)"
        ),
        Failure::Refused(m) => anyhow!("{m}"),
    }
}

/// `presage export --format parquet`: pages through the daemon's `/api/v1/export` and writes
/// the series into `out`, one metric at a time.
pub async fn export(cmd: ExportCommand) -> anyhow::Result<ExportSummary> {
    let started = Instant::now();
    let client = backfill::http_client(cmd.timeout)?;
    let exporter = presage_history::Exporter::new(&cmd.out)?;
    let base = cmd.from.as_str().trim_end_matches('/').to_string();
    let (tx, mut rx) = mpsc::channel::<SeriesHistory>(16);
    // Set when reading from the daemon failed: the metric being written is then incomplete and
    // is not written.
    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Writing Parquet is CPU and file work: a blocking thread, fed while the next page loads.
    let writer = tokio::task::spawn_blocking({
        let failed = failed.clone();
        move || {
            let mut exporter = exporter;
            while let Some(series) = rx.blocking_recv() {
                exporter.push(series)?;
            }
            if failed.load(Ordering::Acquire) {
                return Ok(presage_history::Summary::default());
            }
            exporter.finish()
        }
    });
    let series = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(AtomicU64::new(0));
    let reporter = Reporter::start(cmd.progress, {
        let (series, samples) = (series.clone(), samples.clone());
        move || {
            let n = samples.load(Ordering::Relaxed);
            format!(
                "export: {} series, {n} samples, {:.0} samples/s, {:.0}s",
                series.load(Ordering::Relaxed),
                per_second(n, started.elapsed()),
                started.elapsed().as_secs_f64()
            )
        }
    });
    let mut rates = 0;
    let mut after: Option<String> = None;
    let fetched: anyhow::Result<()> = async {
        loop {
            let mut query: Vec<(&str, String)> = cmd
                .selectors
                .iter()
                .map(|s| ("match[]", s.clone()))
                .collect();
            query.push(("limit", EXPORT_PAGE_SERIES.to_string()));
            if let Some(a) = &after {
                query.push(("after", a.clone()));
            }
            let url = format!(
                "{base}/api/v1/export?{}",
                serde_urlencoded::to_string(&query).context("the export query")?
            );
            let what = "GET /api/v1/export";
            let (status, body) = backfill::send(what, cmd.retries, || {
                with_token(client.get(&url), cmd.token.as_deref())
            })
            .await
            .map_err(|f| unreachable(&cmd.from, f))?;
            if !status.is_success() {
                return Err(api_refusal(&cmd.from, what, status, &body));
            }
            let page: Envelope<Page> = serde_json::from_slice(&body)
                .with_context(|| format!("{what} at {}: not the expected JSON", cmd.from))?;
            let page = match (page.status.as_str(), page.data) {
                ("success", Some(p)) => p,
                _ => bail!(
                    "{what} at {}: {}",
                    cmd.from,
                    page.error
                        .unwrap_or_else(|| "an error without a message".into())
                ),
            };
            let step_ms = (page.step_seconds * 1000.0).round() as i64;
            if step_ms <= 0 {
                bail!(
                    "{what} at {}: invalid step_seconds {}",
                    cmd.from,
                    page.step_seconds
                );
            }
            for s in page.series {
                if s.kind != "gauge" {
                    rates += 1;
                }
                let history = s.into_history(step_ms)?;
                series.fetch_add(1, Ordering::Relaxed);
                samples.fetch_add(history.points.len() as u64, Ordering::Relaxed);
                if tx.send(history).await.is_err() {
                    // The writer stopped: its error is reported below.
                    return Ok(());
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(()),
            }
        }
    }
    .await;
    if fetched.is_err() {
        failed.store(true, Ordering::Release);
    }
    drop(tx);
    let written = writer.await.context("the Parquet writer task failed")?;
    reporter.finish().await;
    fetched?;
    let written = written?;
    Ok(ExportSummary {
        from: cmd.from.to_string(),
        written,
        rates,
        elapsed: started.elapsed(),
    })
}

/// What `presage import` was asked.
#[derive(Debug, Clone)]
pub struct ImportCommand {
    /// The folder read.
    pub dir: PathBuf,
    /// The daemon's HTTP address.
    pub to: Url,
    /// Ingest token for remote_write, if the daemon requires one.
    pub token: Option<String>,
    /// API token for `/api/v1/status`, if the daemon requires one.
    pub api_token: Option<String>,
    /// Series written at once.
    pub concurrency: usize,
    /// Retries of a failed request.
    pub retries: u32,
    /// How long one request may take.
    pub timeout: Duration,
    /// How progress is shown.
    pub progress: Progress,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportSummary {
    /// The folder read.
    pub dir: String,
    /// The daemon written to.
    pub to: String,
    /// Files read.
    pub files: u64,
    /// Series read.
    pub series: u64,
    /// Series whose samples were all sent.
    pub series_done: u64,
    /// Samples read.
    pub samples_read: u64,
    /// Samples the daemon stored.
    pub samples_stored: u64,
    /// Samples the daemon refused (out of order behind newer data, series limit, …).
    pub samples_refused: u64,
    /// Samples not sent: not finite, or older than the daemon's retention.
    pub samples_skipped: u64,
    /// The daemon's first refusal, in its words.
    pub first_refusal: Option<String>,
    /// Wall time taken.
    pub elapsed: Duration,
}

impl ImportSummary {
    /// Samples read and sent per second of wall time.
    pub fn samples_per_second(&self) -> f64 {
        per_second(self.samples_read, self.elapsed)
    }
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} series from {} ({} files) into {}: {} samples read, {} stored in {:.1}s ({:.0} samples/s)",
            self.series_done,
            self.series,
            self.dir,
            self.files,
            self.to,
            self.samples_read,
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
                "\n  {} samples refused by the daemon; first: {}",
                self.samples_refused,
                self.first_refusal.as_deref().unwrap_or("(no reason given)")
            )?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct ImportStats {
    series: AtomicU64,
    done: AtomicU64,
    read: AtomicU64,
    stored: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    first_refusal: Mutex<Option<String>>,
}

/// Sends one series, oldest samples first, in requests of at most
/// [`MAX_SAMPLES_PER_REQUEST`] samples.
async fn send_series(
    sink: &Sink,
    stats: &ImportStats,
    series: SeriesHistory,
) -> anyhow::Result<()> {
    let name = series
        .labels
        .get(METRIC_NAME_LABEL)
        .cloned()
        .unwrap_or_default();
    // Stored as read: a gauge, whatever the name suggests (counters were exported as rates).
    let metadata = vec![MetricMetadata {
        r#type: METRIC_TYPE_GAUGE,
        metric_family_name: name,
        help: String::new(),
        unit: String::new(),
    }];
    let labels: Vec<Label> = series
        .labels
        .into_iter()
        .map(|(name, value)| Label { name, value })
        .collect();
    let oldest = sink.oldest_kept().unwrap_or(i64::MIN);
    let read = series.points.len() as u64;
    let samples: Vec<Sample> = series
        .points
        .into_iter()
        .filter(|(t, v)| v.is_finite() && *t >= oldest)
        .map(|(timestamp, value)| Sample { value, timestamp })
        .collect();
    stats
        .skipped
        .fetch_add(read - samples.len() as u64, Ordering::Relaxed);
    for chunk in samples.chunks(MAX_SAMPLES_PER_REQUEST) {
        let req = WriteRequest {
            timeseries: vec![TimeSeries {
                labels: labels.clone(),
                samples: chunk.to_vec(),
                histograms: Vec::new(),
            }],
            metadata: metadata.clone(),
        };
        let written = sink.write(req).await?;
        stats.stored.fetch_add(written.stored, Ordering::Relaxed);
        if written.refused > 0 {
            stats.refused.fetch_add(written.refused, Ordering::Relaxed);
            let mut first = stats.first_refusal.lock();
            if first.is_none() {
                *first = written.first_refusal;
            }
        }
    }
    stats.done.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// `presage import`: reads every `.parquet` file under `dir` and writes the series into the
/// daemon at `to` as history. Fails as a whole when the folder or a file cannot be read, or
/// the daemon cannot be reached.
pub async fn import(cmd: ImportCommand) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let importer = presage_history::import(&cmd.dir)?;
    let client = backfill::http_client(cmd.timeout)?;
    let daemon =
        backfill::daemon_settings(&client, &cmd.to, cmd.retries, cmd.api_token.as_deref()).await?;
    let write_url = Url::parse(&format!(
        "{}/api/v1/write",
        cmd.to.as_str().trim_end_matches('/')
    ))
    .context("the remote_write URL")?;
    let sink = Arc::new(Sink::RemoteWrite {
        client,
        url: write_url,
        retention: daemon.retention,
        retries: cmd.retries,
        token: cmd.token.clone(),
    });
    let stats = Arc::new(ImportStats::default());
    let files = Arc::new(AtomicU64::new(0));

    // Reading Parquet is CPU and file work: a blocking thread, a few series ahead.
    let (tx, mut rx) = mpsc::channel::<presage_history::Result<SeriesHistory>>(cmd.concurrency * 2);
    let reader = tokio::task::spawn_blocking({
        let files = files.clone();
        move || {
            let mut importer = importer;
            while let Some(item) = importer.next() {
                files.store(importer.summary().files, Ordering::Relaxed);
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    break;
                }
            }
            files.store(importer.summary().files, Ordering::Relaxed);
        }
    });
    let reporter = Reporter::start(cmd.progress, {
        let stats = stats.clone();
        move || {
            let n = stats.read.load(Ordering::Relaxed);
            format!(
                "import: {}/{} series, {n} samples, {:.0} samples/s, {:.0}s",
                stats.done.load(Ordering::Relaxed),
                stats.series.load(Ordering::Relaxed),
                per_second(n, started.elapsed()),
                started.elapsed().as_secs_f64()
            )
        }
    });

    let permits = Arc::new(Semaphore::new(cmd.concurrency.max(1)));
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut fatal: Option<anyhow::Error> = None;
    'read: while let Some(item) = rx.recv().await {
        let series = match item {
            Ok(s) => s,
            Err(e) => {
                fatal = Some(e.into());
                break;
            }
        };
        stats.series.fetch_add(1, Ordering::Relaxed);
        stats
            .read
            .fetch_add(series.points.len() as u64, Ordering::Relaxed);
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let (sink, task_stats) = (sink.clone(), stats.clone());
        tasks.spawn(async move {
            let result = send_series(&sink, &task_stats, series).await;
            drop(permit);
            result
        });
        while let Some(joined) = tasks.try_join_next() {
            if let Some(e) = settle(joined) {
                fatal = Some(e);
                break 'read;
            }
        }
    }
    drop(rx);
    if fatal.is_none() {
        while let Some(joined) = tasks.join_next().await {
            if let Some(e) = settle(joined) {
                fatal = Some(e);
                break;
            }
        }
    }
    tasks.abort_all();
    let _ = reader.await;
    reporter.finish().await;
    let summary = ImportSummary {
        dir: cmd.dir.display().to_string(),
        to: cmd.to.to_string(),
        files: files.load(Ordering::Relaxed),
        series: stats.series.load(Ordering::Relaxed),
        series_done: stats.done.load(Ordering::Relaxed),
        samples_read: stats.read.load(Ordering::Relaxed),
        samples_stored: stats.stored.load(Ordering::Relaxed),
        samples_refused: stats.refused.load(Ordering::Relaxed),
        samples_skipped: stats.skipped.load(Ordering::Relaxed),
        first_refusal: stats.first_refusal.lock().clone(),
        elapsed: started.elapsed(),
    };
    if let Some(e) = fatal {
        return Err(e.context(format!(
            "import stopped after {} of {} series ({} samples stored)",
            summary.series_done, summary.series, summary.samples_stored
        )));
    }
    Ok(summary)
}

fn settle(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> Option<anyhow::Error> {
    match joined {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(anyhow!("a series task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_the_first_line_that_is_not_a_comment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n# rotated monthly\n  secret-1  \nsecret-2\n").unwrap();
        assert_eq!(read_token(&path).unwrap(), "secret-1");
        std::fs::write(&path, "# nothing yet\n").unwrap();
        assert_eq!(
            read_token(&path).unwrap_err().to_string(),
            format!("{}: holds no token", path.display())
        );
        assert!(read_token(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn pages_become_points_on_the_steps_without_the_gaps() {
        let page = PageSeries {
            labels: BTreeMap::from([("__name__".to_string(), "m".to_string())]),
            kind: "gauge".into(),
            start_ms: 1_000_000,
            values: vec![
                Some("0.30000000000000004".into()),
                None,
                Some("-0.0".into()),
                Some("1e300".into()),
            ],
        };
        let history = page.into_history(60_000).unwrap();
        let bits: Vec<(i64, u64)> = history
            .points
            .iter()
            .map(|(t, v)| (*t, v.to_bits()))
            .collect();
        assert_eq!(
            bits,
            [
                (1_000_000, (0.1f64 + 0.2).to_bits()),
                (1_120_000, (-0.0f64).to_bits()),
                (1_180_000, 1e300f64.to_bits()),
            ]
        );
        let bad = PageSeries {
            labels: BTreeMap::new(),
            kind: "gauge".into(),
            start_ms: 0,
            values: vec![Some("NaN-ish".into())],
        };
        assert!(bad.into_history(60_000).is_err());
    }
}

//! Wiring: the collectors, the tailer, the exporter and the telemetry server as tasks on one
//! runtime, and their orderly shutdown.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use presage_config::AgentConfig;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::export::spool::Spool;
use crate::export::transport::Transport;
use crate::export::{Backoff, Batch, Exporter, Signal};
use crate::host::HostCollector;
use crate::logs::Tailer;
use crate::logs::checkpoint::CheckpointStore;
use crate::net::{Connector, HttpClient, tls_config};
use crate::otlp::{metrics_requests, now_ns, resource};
use crate::resource::Identity;
use crate::scrape::{self, Conversion, parser};
use crate::telemetry::{self, Telemetry};

/// Batches waiting for the exporter; producers wait when it is full.
const CHANNEL_CAPACITY: usize = 64;
/// How long the exporter keeps delivering after a shutdown request before it spools the rest.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The token of a token file: its first line that is neither blank nor a `#` comment, trimmed
/// (the forecaster's token files list one token per line, so one can be shared as is).
fn first_token(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
}

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state directory, checkpoint file or spool is unusable.
    #[error("state directory {path}: {source}")]
    State {
        /// The path involved.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file could not be read.
    #[error("cannot read agent.token_file {path}: {source}")]
    Token {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The exporter could not be set up (endpoint, TLS).
    #[error("export: {0}")]
    Export(String),
    /// The telemetry address could not be bound.
    #[error("cannot listen on {addr} for telemetry (agent.telemetry): {source}")]
    Telemetry {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A log source or scrape target is invalid.
    #[error("{0}")]
    Invalid(String),
}

/// A started agent.
pub struct RunningAgent {
    /// Where `/metrics` and `/-/healthy` are served.
    pub telemetry: SocketAddr,
    shutdown: watch::Sender<bool>,
    producers: Vec<JoinHandle<()>>,
    exporter: JoinHandle<()>,
    server: JoinHandle<()>,
}

fn state_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::State {
        path: path.display().to_string(),
        source,
    }
}

/// Starts every part of the agent `cfg` describes, reading the environment for resource
/// attributes.
pub async fn start(cfg: AgentConfig) -> Result<RunningAgent, Error> {
    start_with_env(cfg, &|k| std::env::var(k).ok()).await
}

/// Like [`start`], with the environment given as a lookup function.
pub async fn start_with_env(
    cfg: AgentConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<RunningAgent, Error> {
    let a = &cfg.agent;
    std::fs::create_dir_all(&a.state_dir).map_err(state_err(&a.state_dir))?;
    let cp_path = a.state_dir.join("checkpoints.json");
    let store = CheckpointStore::open(&cp_path).map_err(state_err(&cp_path))?;
    let store = Arc::new(Mutex::new(store));
    let spool_dir = a.state_dir.join("spool");
    let (spool, recovered) =
        Spool::open(&spool_dir, a.spool_max_size.bytes()).map_err(state_err(&spool_dir))?;
    if !spool.is_empty() {
        tracing::info!(
            batches = spool.len(),
            bytes = spool.bytes(),
            "spooled batches will be replayed first"
        );
    }
    let token = match &a.token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::Token {
                path: path.display().to_string(),
                source,
            })?;
            let token = first_token(&text).ok_or_else(|| Error::Token {
                path: path.display().to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, "it holds no token"),
            })?;
            Some(token.to_string())
        }
        None => None,
    };
    let transport = Transport::new(a, token.as_deref()).map_err(Error::Export)?;
    let identity = Identity::detect(a, env, &cfg.host.proc);
    let urls: Vec<String> = cfg.scrape.iter().map(|s| s.url.clone()).collect();
    let tel = Arc::new(Telemetry::new(&urls, a.spool_max_size.bytes()));
    tel.batches_dropped_io.add(recovered.corrupt);

    let listener = telemetry::bind(a.telemetry)
        .await
        .map_err(|source| Error::Telemetry {
            addr: a.telemetry,
            source,
        })?;
    let telemetry_addr = listener.local_addr().map_err(|source| Error::Telemetry {
        addr: a.telemetry,
        source,
    })?;

    let (shutdown, signal) = watch::channel(false);
    let (tx, rx) = mpsc::channel::<Batch>(CHANNEL_CAPACITY);
    let mut producers = Vec::new();

    if !cfg.logs.is_empty() {
        let tailer = Tailer::new(
            &cfg.logs,
            &identity,
            store.clone(),
            recovered.log_positions,
            tel.clone(),
            a.max_log_records_per_request,
        )
        .map_err(Error::Invalid)?;
        producers.push(tokio::spawn(tailer.run(tx.clone(), signal.clone())));
    }

    if cfg.host.enabled {
        let collector = HostCollector::new(cfg.host.clone());
        let res = resource(&identity.attributes(None));
        producers.push(tokio::spawn(host_loop(
            collector,
            a.interval,
            res,
            a.max_points_per_request,
            tx.clone(),
            tel.clone(),
            signal.clone(),
        )));
    }

    let mut scrape_tls = None;
    for (idx, target) in cfg.scrape.iter().enumerate() {
        let uri: Uri = target
            .url
            .parse()
            .map_err(|e| Error::Invalid(format!("scrape[{idx}].url: {e}")))?;
        if uri.scheme_str() == Some("https") && scrape_tls.is_none() {
            scrape_tls = Some(
                tls_config(a.tls_ca_file.as_deref(), None, &[b"http/1.1"])
                    .map_err(Error::Invalid)?,
            );
        }
        let job = target
            .job
            .clone()
            .unwrap_or_else(|| identity.service_name.clone());
        let mut attrs = identity.attributes(Some(&job));
        attrs.push(("service.instance.id".to_string(), scrape::instance(&uri)));
        let client = HttpClient::new(
            Connector::new(scrape_tls.clone(), target.effective_timeout(a.interval)),
            scrape::MAX_BODY,
        );
        let t = ScrapeTarget {
            idx,
            uri,
            interval: target.effective_interval(a.interval),
            timeout: target.effective_timeout(a.interval),
            resource: resource(&attrs),
            conversion: Conversion {
                labels: target
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                honor_timestamps: target.honor_timestamps,
            },
        };
        producers.push(tokio::spawn(scrape_loop(
            t,
            client,
            a.max_points_per_request,
            tx.clone(),
            tel.clone(),
            signal.clone(),
        )));
    }
    drop(tx);

    let exporter = Exporter::new(
        transport,
        spool,
        store,
        tel.clone(),
        Backoff::new(a.retry_initial_backoff, a.retry_max_backoff),
        SHUTDOWN_GRACE,
    );
    let exporter = tokio::spawn(exporter.run(rx, signal.clone()));
    let server = tokio::spawn(telemetry::serve(listener, tel, signal));
    tracing::info!(
        endpoint = a.effective_endpoint(),
        telemetry = %telemetry_addr,
        host = cfg.host.enabled,
        scrape_targets = cfg.scrape.len(),
        log_sources = cfg.logs.len(),
        "presage-agent is running"
    );
    Ok(RunningAgent {
        telemetry: telemetry_addr,
        shutdown,
        producers,
        exporter,
        server,
    })
}

impl RunningAgent {
    /// Runs until `signal` resolves, then shuts down.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }

    /// Stops collecting, delivers or spools what is pending (for up to a few seconds), and
    /// returns when every task has ended.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for p in self.producers {
            let _ = p.await;
        }
        let _ = self.exporter.await;
        let _ = self.server.await;
        tracing::info!("presage-agent stopped");
    }
}

async fn host_loop(
    collector: HostCollector,
    interval: Duration,
    res: opentelemetry_proto::tonic::resource::v1::Resource,
    max_points: usize,
    tx: mpsc::Sender<Batch>,
    tel: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The first reading one interval after start, so CPU utilisation covers a whole interval.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collector = Some(collector);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let Some(mut c) = collector.take() else {
            return;
        };
        let now = now_ns();
        // Reading procfs and statvfs can block (a hung network mount): off the runtime.
        let joined = tokio::task::spawn_blocking(move || {
            let metrics = c.collect(now);
            (c, metrics)
        })
        .await;
        let Ok((c, metrics)) = joined else {
            tracing::error!("host collection panicked; host metrics stop");
            return;
        };
        collector = Some(c);
        for (req, n) in metrics_requests(&res, metrics, max_points) {
            tel.points_host.add(n as u64);
            let batch = Batch {
                signal: Signal::Metrics,
                payload: Bytes::from(req.encode_to_vec()),
                items: n as u64,
                checkpoints: Vec::new(),
            };
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    }
}

struct ScrapeTarget {
    idx: usize,
    uri: Uri,
    interval: Duration,
    timeout: Duration,
    resource: opentelemetry_proto::tonic::resource::v1::Resource,
    conversion: Conversion,
}

async fn scrape_loop(
    t: ScrapeTarget,
    mut client: HttpClient,
    max_points: usize,
    tx: mpsc::Sender<Batch>,
    tel: Arc<Telemetry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(t.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut warned_parse = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        let Some(counters) = tel.targets.get(t.idx) else {
            return;
        };
        counters.scrapes.add(1);
        let scrape_ns = now_ns();
        let mut metrics = Vec::new();
        match scrape::fetch(&mut client, &t.uri, t.timeout).await {
            Ok(text) => {
                if failing {
                    tracing::info!(target = %t.uri, "scrape target is back");
                    failing = false;
                }
                let parsed = parser::parse(&text);
                if let Some(first) = parsed.errors.first() {
                    counters.parse_errors.add(parsed.errors.len() as u64);
                    if !warned_parse {
                        warned_parse = true;
                        tracing::warn!(target = %t.uri, errors = parsed.errors.len(), first = %first, "malformed exposition lines skipped");
                    }
                }
                counters.samples.set(parsed.sample_count() as u64);
                let converted = scrape::convert(&parsed, &t.conversion, scrape_ns);
                tel.points_scrape.add(converted.points as u64);
                metrics = converted.metrics;
                metrics.push(scrape::up(true, scrape_ns));
            }
            Err(e) => {
                counters.errors.add(1);
                if !failing {
                    tracing::warn!(target = %t.uri, error = %e, "scrape failed");
                    failing = true;
                } else {
                    tracing::debug!(target = %t.uri, error = %e, "scrape failed again");
                }
                metrics.push(scrape::up(false, scrape_ns));
            }
        }
        for (req, n) in metrics_requests(&t.resource, metrics, max_points) {
            let batch = Batch {
                signal: Signal::Metrics,
                payload: Bytes::from(req.encode_to_vec()),
                items: n as u64,
                checkpoints: Vec::new(),
            };
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

#[cfg(test)]
mod tests {
    use super::first_token;

    #[test]
    fn the_first_token_of_a_token_file_is_sent() {
        assert_eq!(first_token("s3cret-token\n"), Some("s3cret-token"));
        assert_eq!(
            first_token("# rotated in May\n\n  new-token \r\nold-token\n"),
            Some("new-token")
        );
        assert_eq!(first_token("\n# nothing\n  \n"), None);
    }
}

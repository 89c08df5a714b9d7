//! Configuration of the forecaster daemon (`presage serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use serde::{Deserialize, Serialize};

use crate::alerting::{
    AlertingSettings, InhibitConfig, ReceiverConfig, RemediationConfig, RouteConfig, RuleConfig,
};
use crate::error::Problem;
use crate::load::{Document, section_checker};
use crate::tls::PemFile;
use crate::units::{ByteSize, MemoryLimit};

/// The forecaster's whole configuration. Every section is optional: an empty file (or none at all)
/// runs on the defaults below.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecasterConfig {
    /// Listen addresses and shutdown behaviour.
    pub server: ServerConfig,
    /// Bounds on what clients may send and on what is kept in memory.
    pub limits: LimitsConfig,
    /// Where and how long history is kept.
    pub storage: StorageConfig,
    /// Model defaults.
    pub model: ModelConfig,
    /// How incoming data is translated into series.
    pub ingest: IngestConfig,
    /// History pulled from Prometheus servers at start-up, in the background, so baselines are
    /// fitted on weeks of data from the first minutes.
    pub backfill: Vec<BackfillConfig>,
    /// Log pattern mining: templates per service, their line counts and new-pattern detection.
    pub logs: LogPatternsConfig,
    /// Alerting settings.
    pub alerting: AlertingSettings,
    /// Rules evaluated against the model's signals (built-in rules are added unless
    /// `alerting.default_rules = false`).
    pub rules: Vec<RuleConfig>,
    /// Where notifications go.
    pub receivers: Vec<ReceiverConfig>,
    /// Which alerts go to which receivers. With no routes, every alert goes to every receiver.
    pub routes: Vec<RouteConfig>,
    /// Alerts that mute others while they fire (a critical breach always mutes warning anomalies
    /// on the same series).
    pub inhibit: Vec<InhibitConfig>,
    /// Extra remediation suggestions, tried before the built-in catalog.
    pub remediations: Vec<RemediationConfig>,
    /// Bearer tokens required by the listeners. Absent: nothing is authenticated.
    pub auth: AuthConfig,
    /// TLS on every listener, optionally with client certificates. Absent: plain TCP.
    pub tls: TlsConfig,
}

/// TLS (rustls) on the three listeners, with an optional client CA (mutual TLS). The files are
/// read and checked when the configuration is loaded, then watched: a changed certificate or
/// key is picked up without a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the server certificate first, then any intermediate certificates. Setting
    /// it (with `key_file`) turns TLS on for every listener.
    pub cert_file: Option<PathBuf>,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM file of the CA certificates that sign client certificates. When set, every client
    /// must present a certificate signed by one of them (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// How often the files are checked for changes; changed files are loaded for new
    /// connections, and a bad new pair is logged while the old one stays in use.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            reload_interval: Duration::from_secs(30),
        }
    }
}

/// The `[tls]` files, read and checked.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    /// The server certificate chain and its private key.
    pub certified_key: Arc<CertifiedKey>,
    /// The CAs client certificates must be signed by (`client_ca_file`), if any.
    pub client_roots: Option<Arc<RootCertStore>>,
}

impl TlsConfig {
    /// Whether the listeners use TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }

    /// Reads and checks the files: `None` when TLS is off. Each problem names its key.
    pub fn load(&self) -> Result<Option<TlsMaterial>, Vec<Problem>> {
        let (cert_file, key_file) = match (&self.cert_file, &self.key_file) {
            (None, None) => {
                return match &self.client_ca_file {
                    None => Ok(None),
                    Some(_) => Err(vec![Problem::new(
                        "tls.client_ca_file",
                        "needs `tls.cert_file` and `tls.key_file`: client certificates are only \
                         asked for over TLS",
                    )]),
                };
            }
            (Some(_), None) => {
                return Err(vec![Problem::new(
                    "tls.cert_file",
                    "needs `tls.key_file` too",
                )]);
            }
            (None, Some(_)) => {
                return Err(vec![Problem::new(
                    "tls.key_file",
                    "needs `tls.cert_file` too",
                )]);
            }
            (Some(c), Some(k)) => (c, k),
        };
        let mut problems = Vec::new();
        let certified_key = match crate::tls::certified_key(cert_file, key_file) {
            Ok(k) => Some(Arc::new(k)),
            Err(errors) => {
                for (file, message) in errors {
                    let key = match file {
                        PemFile::Cert => "tls.cert_file",
                        PemFile::Key => "tls.key_file",
                    };
                    problems.push(Problem::new(key, message));
                }
                None
            }
        };
        let client_roots = match &self.client_ca_file {
            None => None,
            Some(path) => match crate::tls::read_roots(path) {
                Ok(roots) => Some(Arc::new(roots)),
                Err(e) => {
                    problems.push(Problem::new("tls.client_ca_file", e));
                    None
                }
            },
        };
        match certified_key {
            Some(certified_key) if problems.is_empty() => Ok(Some(TlsMaterial {
                certified_key,
                client_roots,
            })),
            _ => Err(problems),
        }
    }
}

fn validate_tls(tls: &TlsConfig, p: &mut Vec<Problem>) {
    let interval = tls.reload_interval;
    if interval < Duration::from_secs(1) || interval > Duration::from_secs(86_400) {
        p.push(Problem::new(
            "tls.reload_interval",
            format!(
                "must be between 1s and 1day, got {}",
                humantime::format_duration(interval)
            ),
        ));
    }
    if let Err(problems) = tls.load() {
        p.extend(problems);
    }
}

/// Bearer-token authentication. Tokens are read from files or environment variables, never
/// written inline; the file and the variable hold one token per line (several tokens allow
/// rotation; blank lines and lines starting with `#` are ignored). A kind with neither setting is
/// not authenticated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// File holding the tokens that may send data: remote_write (`POST /api/v1/write`),
    /// OTLP/HTTP and OTLP/gRPC.
    pub ingest_token_file: Option<PathBuf>,
    /// Environment variable holding the ingest tokens (instead of `ingest_token_file`).
    pub ingest_token_env: Option<String>,
    /// File holding the tokens that may read the API (`/api/…` except remote_write).
    pub api_token_file: Option<PathBuf>,
    /// Environment variable holding the API tokens (instead of `api_token_file`).
    pub api_token_env: Option<String>,
}

/// Shortest token accepted, in characters.
pub const MIN_TOKEN_LENGTH: usize = 16;

/// Which listeners a token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// remote_write, OTLP/HTTP and OTLP/gRPC.
    Ingest,
    /// The read API (`/api/…` except remote_write).
    Api,
}

impl TokenKind {
    /// `ingest` or `api`, as in the key names.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenKind::Ingest => "ingest",
            TokenKind::Api => "api",
        }
    }
}

impl AuthConfig {
    /// The file and the variable configured for `kind`.
    fn sources(&self, kind: TokenKind) -> (Option<&PathBuf>, Option<&String>) {
        match kind {
            TokenKind::Ingest => (
                self.ingest_token_file.as_ref(),
                self.ingest_token_env.as_ref(),
            ),
            TokenKind::Api => (self.api_token_file.as_ref(), self.api_token_env.as_ref()),
        }
    }

    /// Whether tokens of `kind` are required.
    pub fn requires(&self, kind: TokenKind) -> bool {
        let (file, env) = self.sources(kind);
        file.is_some() || env.is_some()
    }

    /// Reads the tokens of `kind`: empty when none is configured. The error names the source
    /// and what is wrong with it, never a token.
    pub fn read_tokens(&self, kind: TokenKind) -> Result<Vec<String>, String> {
        let (text, from) = match self.sources(kind) {
            (None, None) => return Ok(Vec::new()),
            (Some(_), Some(_)) => {
                return Err(format!(
                    "set `{0}_token_file` or `{0}_token_env`, not both",
                    kind.as_str()
                ));
            }
            (Some(path), None) => {
                if path.as_os_str().is_empty() {
                    return Err("must not be empty".to_string());
                }
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                (text, format!("{}", path.display()))
            }
            (None, Some(var)) => {
                if var.is_empty() {
                    return Err("must not be empty".to_string());
                }
                let text = std::env::var(var).map_err(|_| {
                    format!("environment variable `{var}` is not set (or not valid UTF-8)")
                })?;
                (text, format!("environment variable `{var}`"))
            }
        };
        parse_tokens(&text).map_err(|e| format!("{from}: {e}"))
    }
}

/// Tokens of a token file: one per line, surrounding whitespace trimmed, blank lines and `#`
/// comments skipped. Errors never quote a token.
fn parse_tokens(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let token = line.trim();
        if token.is_empty() || token.starts_with('#') {
            continue;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "line {}: a token may only hold visible ASCII characters (no spaces)",
                i + 1
            ));
        }
        if token.chars().count() < MIN_TOKEN_LENGTH {
            return Err(format!(
                "line {}: a token must be at least {MIN_TOKEN_LENGTH} characters long",
                i + 1
            ));
        }
        tokens.push(token.to_string());
    }
    if tokens.is_empty() {
        return Err("holds no token".to_string());
    }
    Ok(tokens)
}

fn validate_auth(auth: &AuthConfig, p: &mut Vec<Problem>) {
    for kind in [TokenKind::Ingest, TokenKind::Api] {
        if let Err(e) = auth.read_tokens(kind) {
            let key = match auth.sources(kind) {
                (_, Some(_)) => "env",
                _ => "file",
            };
            p.push(Problem::new(
                format!("auth.{}_token_{key}", kind.as_str()),
                e,
            ));
        }
    }
}

/// Listen addresses. The defaults bind loopback only: expose them deliberately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// OTLP over gRPC (metrics and logs services).
    pub otlp_grpc: SocketAddr,
    /// OTLP over HTTP: `POST /v1/metrics` and `POST /v1/logs`, protobuf or JSON.
    pub otlp_http: SocketAddr,
    /// HTTP API, Prometheus remote_write (`POST /api/v1/write`), `/metrics`, health and web UI.
    pub http: SocketAddr,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT before the daemon
    /// exits anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            otlp_grpc: SocketAddr::from(([127, 0, 0, 1], 4317)),
            otlp_http: SocketAddr::from(([127, 0, 0, 1], 4318)),
            http: SocketAddr::from(([127, 0, 0, 1], 9470)),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Limits that keep memory bounded and reject abusive input with a clear error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Most series kept at once. Samples of new series past this limit are rejected (reason
    /// `series_limit`); existing series keep flowing.
    pub max_series: usize,
    /// Largest request body accepted, compressed or not, on every ingest endpoint.
    pub max_request_body: ByteSize,
    /// Largest body after gzip or snappy decompression.
    pub max_decompressed_body: ByteSize,
    /// Most labels on one series, the metric name included.
    pub max_labels_per_series: usize,
    /// Longest label name, in bytes.
    pub max_label_name_length: usize,
    /// Longest label value (the metric name included), in bytes.
    pub max_label_value_length: usize,
    /// How far ahead of the daemon's clock a sample's timestamp may be.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Most log streams (distinct resource label sets) buffered at once.
    pub max_log_streams: usize,
    /// Log records kept per stream; the oldest go first.
    pub log_records_per_stream: usize,
    /// Most ingest requests (remote_write, OTLP/HTTP and OTLP/gRPC together) processed at
    /// once. Requests past it are shed at once: HTTP 429 with `Retry-After`, gRPC
    /// `RESOURCE_EXHAUSTED`.
    pub max_concurrent_ingest_requests: usize,
    /// Most ingest bytes held at once over all ingest requests: request bodies as they are
    /// read plus their decompressed form. A request that would pass it is shed like one past
    /// `max_concurrent_ingest_requests`. At least `max_request_body + max_decompressed_body`,
    /// so that any single valid request fits.
    pub max_inflight_ingest_bytes: ByteSize,
    /// Most concurrent HTTP/2 streams (requests) on one OTLP/gRPC connection; further
    /// requests wait in the client. HTTP/1.1 connections carry one request at a time.
    pub max_streams_per_connection: u32,
    /// Most connections open at once on each listener (HTTP API, OTLP/HTTP, OTLP/gRPC). At
    /// the limit a listener stops accepting until a connection closes: further clients wait
    /// in the kernel's accept queue. Raise it for fleets with more agents than this (each
    /// agent keeps one connection), together with the process' open-file limit.
    pub max_connections: usize,
    /// Resident memory the daemon keeps within. While it uses more than `memory_limit -
    /// memory_spike_limit`, every ingest request is shed (HTTP 429, gRPC `RESOURCE_EXHAUSTED`,
    /// reason `memory`); queries, health checks and `/metrics` keep being served. `"auto"`
    /// (the default) is 90% of the memory limit of the process' cgroup (a container's, or
    /// systemd's `MemoryMax=`) when it has one, and no bound otherwise; `"none"` turns it off.
    pub memory_limit: MemoryLimit,
    /// Room kept below `memory_limit` for work already admitted when shedding starts: what
    /// the requests in flight still allocate while they are decoded and stored. Default: 20%
    /// of `memory_limit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_spike_limit: Option<ByteSize>,
}

/// The smallest `limits.memory_limit` accepted: the daemon itself needs about this much.
pub const MIN_MEMORY_LIMIT: ByteSize = ByteSize::mib(32);

/// The share of a container's memory limit `limits.memory_limit = "auto"` takes.
pub const AUTO_MEMORY_SHARE: f64 = 0.9;

/// `limits.memory_spike_limit` when it is not set: this share of the memory limit.
pub(crate) const DEFAULT_SPIKE_SHARE: f64 = 0.2;

impl LimitsConfig {
    /// The memory bound in bytes and where ingest starts being shed, for a limit of `limit`
    /// bytes (`memory_limit` resolved), or why the spike limit does not fit under it.
    pub fn memory_bounds(&self, limit: u64) -> std::result::Result<(u64, u64), String> {
        let spike = match self.memory_spike_limit {
            Some(s) => s.bytes(),
            None => (limit as f64 * DEFAULT_SPIKE_SHARE) as u64,
        };
        if spike >= limit {
            return Err(format!(
                "limits.memory_spike_limit ({}) must be below the memory limit ({})",
                ByteSize(spike),
                ByteSize(limit)
            ));
        }
        Ok((limit, limit - spike))
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_series: 100_000,
            max_request_body: ByteSize::mib(16),
            max_decompressed_body: ByteSize::mib(64),
            max_labels_per_series: 40,
            max_label_name_length: 128,
            max_label_value_length: 2048,
            max_future_skew: Duration::from_secs(10 * 60),
            max_log_streams: 10_000,
            log_records_per_stream: 1_000,
            max_concurrent_ingest_requests: 64,
            max_inflight_ingest_bytes: ByteSize::mib(256),
            max_streams_per_connection: 32,
            max_connections: 10_000,
            memory_limit: MemoryLimit::Auto,
            memory_spike_limit: None,
        }
    }
}

/// Where and how long history is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Data directory, created when missing.
    pub dir: PathBuf,
    /// How much history each series keeps, counted back from its newest sample. Samples older
    /// than this (by the daemon's clock) are rejected as too old.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Keep series, history, fitted models and log templates on disk (under `dir`/db), so a
    /// restart, even after a crash, resumes where the daemon stopped, without refitting.
    /// `false` keeps everything in memory only (alert state is kept on disk either way).
    pub durable: bool,
    /// When ingest is acknowledged, with `durable`: `always` answers a write only once it is
    /// in the journal and the journal is flushed to the device (concurrent writes share one
    /// flush); `interval` answers once it is in the journal (safe from a crash of the daemon)
    /// and flushes to the device every `fsync_interval` (a power loss can lose that much);
    /// `never` leaves flushing to the operating system.
    pub fsync: FsyncPolicy,
    /// How often the journal is flushed to the device with `fsync = "interval"`.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// How often the state of changed series (open chunks, detectors, new models) is written
    /// to disk, after which the journal before it is dropped. A restart replays at most this
    /// much of the journal.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Significant decimal digits kept of each stored step value; 0 (the default) keeps values
    /// exactly as computed. Values then read back as decimals, which the store keeps as small
    /// integers: 7 digits (about a 32-bit float's precision) halve the memory and disk of values
    /// computed at full precision, such as counter rates and ratios. At most 15.
    pub significant_digits: u8,
}

/// When an acknowledged write reaches the device; see [`StorageConfig::fsync`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// Flush before answering.
    #[default]
    Always,
    /// Flush every `fsync_interval`.
    Interval,
    /// Let the operating system decide.
    Never,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("presage-data"),
            retention: Duration::from_secs(14 * 24 * 3600),
            durable: true,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            checkpoint_interval: Duration::from_secs(5 * 60),
            significant_digits: 0,
        }
    }
}

/// Model defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// The fixed step every series is resampled to: last value per step for gauges, per-second
    /// rate over the step for counters.
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    /// Refit a series' baseline when its data has advanced this much (event time) since the last
    /// fit. Refits land on multiples of this interval, so replays refit at the same points.
    #[serde(with = "humantime_serde")]
    pub refit_every: Duration,
    /// How far ahead each fit's expected band reaches (it is kept only up to twice
    /// `refit_every`, which is all scoring needs; breach rules extrapolate the trend instead).
    #[serde(with = "humantime_serde")]
    pub forecast_horizon: Duration,
    /// Coverage of the expected band, between 0.5 and 0.999.
    pub band_level: f64,
    /// Steps with data needed before a series is first fitted (it is `cold` until then).
    pub min_points: usize,
    /// History the envelope trend for breach forecasts looks at.
    #[serde(with = "humantime_serde")]
    pub breach_lookback: Duration,
    /// Fits that may run at once, off the request threads. 0 means one per CPU core.
    pub fit_concurrency: usize,
    /// Series whose `:predicted`, `:anomalous` and `presage_anomaly_score` series appear on
    /// `/metrics` (PromQL selectors); empty means every series, up to `export_limit`.
    pub export_match: Vec<String>,
    /// Most series exported on `/metrics`, so the exposition's cardinality stays bounded.
    pub export_limit: usize,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(60),
            refit_every: Duration::from_secs(3600),
            forecast_horizon: Duration::from_secs(6 * 3600),
            band_level: 0.95,
            min_points: 30,
            breach_lookback: Duration::from_secs(12 * 3600),
            fit_concurrency: 0,
            export_match: Vec::new(),
            export_limit: 1_000,
        }
    }
}

/// How OTLP data becomes series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// OTLP resource attributes copied onto every series of the resource as labels (dots become
    /// underscores: `host.name` → `host_name`). `service.name` and `service.instance.id` also
    /// give `job` and `instance`, as the OpenTelemetry Prometheus compatibility rules say.
    pub promote_resource_attributes: Vec<String>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            promote_resource_attributes: [
                "service.name",
                "service.namespace",
                "service.instance.id",
                "host.name",
                "k8s.namespace.name",
                "k8s.pod.name",
                "k8s.node.name",
                "k8s.container.name",
                "k8s.deployment.name",
                "k8s.statefulset.name",
                "k8s.daemonset.name",
                "container.name",
                "cloud.region",
                "cloud.availability_zone",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

/// Log pattern mining. Log bodies are mined into templates per service (`service.name`, else
/// `job`); each template's lines per step and severity become the series
/// `presage_log_pattern_lines{service,template_id,severity}`, watched like any other series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogPatternsConfig {
    /// Templates kept at once, over all services; beyond, the least recently seen is evicted
    /// (with its series state).
    pub max_templates: usize,
    /// Share of equal tokens (0.0 to 1.0) for a line to join an existing template; lower merges
    /// more lines into one template.
    pub similarity: f64,
    /// Event time a service's logs are watched before a template seen for the first time counts
    /// as a new pattern (and may alert): at start-up every template is new.
    #[serde(with = "humantime_serde")]
    pub warmup: Duration,
    /// Most template series shown as `presage_log_pattern_lines_total` on `/metrics` (the
    /// busiest first), so the exposition's cardinality stays bounded.
    pub export_limit: usize,
}

impl Default for LogPatternsConfig {
    fn default() -> Self {
        Self {
            max_templates: 10_000,
            similarity: 0.5,
            warmup: Duration::from_secs(600),
            export_limit: 1_000,
        }
    }
}

/// One `[[backfill]]` source: at start-up the daemon lists the series its selectors match on a
/// Prometheus server (`/api/v1/series`), pulls each one's history through `/api/v1/query_range`
/// and stores it like remote_write data, while already serving. Series that receive live data
/// before their history arrives keep only the live data (older samples are out of order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillConfig {
    /// Base URL of the Prometheus server's HTTP API, `http://` or `https://`
    /// (`http://prometheus:9090`; a path prefix such as `/prometheus` is kept) (required).
    pub prometheus: String,
    /// Series selectors (`node_filesystem_avail_bytes{fstype!="tmpfs"}`): one, or a list whose
    /// matches are pulled once each (required).
    #[serde(rename = "match", deserialize_with = "one_or_many")]
    pub selectors: Vec<String>,
    /// How much history is pulled, back from start-up. Defaults to `storage.retention`, which it
    /// may not exceed (older samples would be refused).
    #[serde(default, with = "humantime_serde")]
    pub range: Option<Duration>,
    /// Resolution of the pulled history (the `step` of `query_range`). Defaults to
    /// `model.step`, which it may not exceed (coarser history leaves gaps between model steps).
    #[serde(default, with = "humantime_serde")]
    pub step: Option<Duration>,
    /// Series pulled at once (1 to 64).
    #[serde(default = "default_backfill_concurrency")]
    pub concurrency: usize,
}

/// Series a backfill pulls at once unless told otherwise.
pub const DEFAULT_BACKFILL_CONCURRENCY: usize = 4;

fn default_backfill_concurrency() -> usize {
    DEFAULT_BACKFILL_CONCURRENCY
}

impl BackfillConfig {
    /// A source with every optional setting at its default.
    pub fn new(prometheus: impl Into<String>, selectors: Vec<String>) -> Self {
        Self {
            prometheus: prometheus.into(),
            selectors,
            range: None,
            step: None,
            concurrency: DEFAULT_BACKFILL_CONCURRENCY,
        }
    }

    /// The range in effect, given `storage.retention`.
    pub fn effective_range(&self, retention: Duration) -> Duration {
        self.range.unwrap_or(retention)
    }

    /// The step in effect, given `model.step`.
    pub fn effective_step(&self, model_step: Duration) -> Duration {
        self.step.unwrap_or(model_step)
    }
}

/// Accepts `"selector"` as well as `["selector", …]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct OneOrMany;
    impl<'de> serde::de::Visitor<'de> for OneOrMany {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a series selector or a list of them")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![v.to_string()])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = seq.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(OneOrMany)
}

fn validate_backfill(cfg: &ForecasterConfig, p: &mut Vec<Problem>) {
    let retention = cfg.storage.retention;
    let model_step = cfg.model.step;
    let show = |d: Duration| humantime::format_duration(d).to_string();
    for (i, b) in cfg.backfill.iter().enumerate() {
        let at = |field: &str| format!("backfill[{i}].{field}");
        if let Err(e) = crate::agent::check_url(&b.prometheus) {
            p.push(Problem::new(at("prometheus"), e));
        } else if b.prometheus.contains(['?', '#']) {
            p.push(Problem::new(
                at("prometheus"),
                format!(
                    "`{}` must not have a query or fragment: API paths are appended to it",
                    b.prometheus
                ),
            ));
        }
        if b.selectors.is_empty() {
            p.push(Problem::new(at("match"), "must name at least one selector"));
        }
        for (j, sel) in b.selectors.iter().enumerate() {
            if let Err(e) = check_selector(sel) {
                p.push(Problem::new(format!("backfill[{i}].match[{j}]"), e));
            }
        }
        let step = b.effective_step(model_step);
        if let Some(s) = b.step {
            if s < Duration::from_secs(1) {
                p.push(Problem::new(
                    at("step"),
                    format!("must be at least 1s, got {}", show(s)),
                ));
            } else if s > model_step {
                p.push(Problem::new(
                    at("step"),
                    format!(
                        "must be at most model.step ({}): coarser history leaves gaps between the steps the model fits on",
                        show(model_step)
                    ),
                ));
            }
        }
        if let Some(r) = b.range {
            if r < step {
                p.push(Problem::new(
                    at("range"),
                    format!(
                        "must cover at least one step ({}), got {}",
                        show(step),
                        show(r)
                    ),
                ));
            } else if r > retention {
                p.push(Problem::new(
                    at("range"),
                    format!(
                        "{} is longer than storage.retention ({}): older samples would be refused",
                        show(r),
                        show(retention)
                    ),
                ));
            }
        }
        if !(1..=64).contains(&b.concurrency) {
            p.push(Problem::new(
                at("concurrency"),
                format!("must be between 1 and 64, got {}", b.concurrency),
            ));
        }
    }
}

/// Checks that `text` is a PromQL series selector (`metric{label="v"}`).
pub(crate) fn check_selector(text: &str) -> Result<(), String> {
    match crate::promql::parse_selector_expr(text) {
        Ok(promql_parser::parser::Expr::VectorSelector(_)) => Ok(()),
        Ok(_) => Err(format!(
            "`{text}` is not a series selector: expected `metric{{label=\"value\"}}`"
        )),
        Err(e) => Err(format!("invalid selector `{text}`: {e}")),
    }
}

impl Document for ForecasterConfig {
    const SECTIONS: &'static [&'static str] = &[
        "server",
        "limits",
        "storage",
        "model",
        "ingest",
        "backfill",
        "logs",
        "alerting",
        "rules",
        "receivers",
        "routes",
        "inhibit",
        "remediations",
        "auth",
        "tls",
    ];

    fn check_section(source: &str, name: &str) -> Result<(), toml::de::Error> {
        section_checker!(source, name, {
            server: ServerConfig,
            limits: LimitsConfig,
            storage: StorageConfig,
            model: ModelConfig,
            ingest: IngestConfig,
            backfill: Vec<BackfillConfig>,
            logs: LogPatternsConfig,
            alerting: AlertingSettings,
            rules: Vec<RuleConfig>,
            receivers: Vec<ReceiverConfig>,
            routes: Vec<RouteConfig>,
            inhibit: Vec<InhibitConfig>,
            remediations: Vec<RemediationConfig>,
            auth: AuthConfig,
            tls: TlsConfig,
        })
    }

    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let s = &self.server;
        let addrs = [
            ("server.otlp_grpc", s.otlp_grpc),
            ("server.otlp_http", s.otlp_http),
            ("server.http", s.http),
        ];
        for (i, (name, addr)) in addrs.iter().enumerate() {
            for (other, other_addr) in &addrs[..i] {
                if addr == other_addr && addr.port() != 0 {
                    p.push(Problem::new(
                        *name,
                        format!("listens on {addr}, which `{other}` already uses"),
                    ));
                }
            }
        }

        let l = &self.limits;
        if l.max_series == 0 {
            p.push(Problem::new("limits.max_series", "must be at least 1"));
        }
        if l.max_request_body.bytes() < 1024 {
            p.push(Problem::new(
                "limits.max_request_body",
                "must be at least 1KiB",
            ));
        }
        if l.max_decompressed_body < l.max_request_body {
            p.push(Problem::new(
                "limits.max_decompressed_body",
                format!(
                    "must be at least limits.max_request_body ({})",
                    l.max_request_body
                ),
            ));
        }
        if l.max_labels_per_series < 1 {
            p.push(Problem::new(
                "limits.max_labels_per_series",
                "must be at least 1 (the metric name is a label)",
            ));
        }
        if l.max_label_name_length < 1 || l.max_label_value_length < 1 {
            p.push(Problem::new(
                "limits",
                "label name and value lengths must be at least 1",
            ));
        }
        if l.max_concurrent_ingest_requests < 1 {
            p.push(Problem::new(
                "limits.max_concurrent_ingest_requests",
                "must be at least 1",
            ));
        }
        let one_request = l
            .max_request_body
            .bytes()
            .saturating_add(l.max_decompressed_body.bytes());
        if l.max_inflight_ingest_bytes.bytes() < one_request {
            p.push(Problem::new(
                "limits.max_inflight_ingest_bytes",
                format!(
                    "must be at least limits.max_request_body + limits.max_decompressed_body \
                     ({} + {}), or no request of the largest size could ever be taken",
                    l.max_request_body, l.max_decompressed_body
                ),
            ));
        }
        if l.max_streams_per_connection < 1 {
            p.push(Problem::new(
                "limits.max_streams_per_connection",
                "must be at least 1",
            ));
        }
        if l.max_connections < 1 {
            p.push(Problem::new("limits.max_connections", "must be at least 1"));
        }
        if let MemoryLimit::Fixed(limit) = l.memory_limit {
            if limit < MIN_MEMORY_LIMIT {
                p.push(Problem::new(
                    "limits.memory_limit",
                    format!("must be at least {MIN_MEMORY_LIMIT}, or `none`"),
                ));
            } else if let Err(e) = l.memory_bounds(limit.bytes()) {
                p.push(Problem::new("limits.memory_spike_limit", e));
            }
        }
        if l.memory_limit == MemoryLimit::None && l.memory_spike_limit.is_some() {
            p.push(Problem::new(
                "limits.memory_spike_limit",
                "has no effect with limits.memory_limit = \"none\"",
            ));
        }

        let step = self.model.step;
        if step < Duration::from_secs(1) || step > Duration::from_secs(3600) {
            p.push(Problem::new(
                "model.step",
                format!(
                    "must be between 1s and 1h, got {}",
                    humantime::format_duration(step)
                ),
            ));
        } else if step.subsec_nanos() != 0 {
            p.push(Problem::new(
                "model.step",
                "must be a whole number of seconds",
            ));
        }
        let m = &self.model;
        if m.refit_every < step || m.refit_every > Duration::from_secs(7 * 86_400) {
            p.push(Problem::new(
                "model.refit_every",
                "must be at least one step (model.step) and at most 7d",
            ));
        }
        if m.forecast_horizon < m.refit_every
            || m.forecast_horizon > Duration::from_secs(30 * 86_400)
        {
            p.push(Problem::new(
                "model.forecast_horizon",
                "must cover at least model.refit_every and at most 30d",
            ));
        }
        if !(0.5..=0.999).contains(&m.band_level) {
            p.push(Problem::new(
                "model.band_level",
                format!("must be between 0.5 and 0.999, got {}", m.band_level),
            ));
        }
        if m.min_points < 8 {
            p.push(Problem::new("model.min_points", "must be at least 8"));
        }
        if m.breach_lookback < step * 8 {
            p.push(Problem::new(
                "model.breach_lookback",
                "must cover at least 8 steps",
            ));
        }
        let retention = self.storage.retention;
        if retention < step * 2 {
            p.push(Problem::new(
                "storage.retention",
                format!(
                    "must cover at least two steps ({}), got {}",
                    humantime::format_duration(step * 2),
                    humantime::format_duration(retention)
                ),
            ));
        }
        if retention > Duration::from_secs(400 * 24 * 3600) {
            p.push(Problem::new("storage.retention", "must be at most 400d"));
        }
        if self.storage.dir.as_os_str().is_empty() {
            p.push(Problem::new("storage.dir", "must not be empty"));
        }
        let fsync_interval = self.storage.fsync_interval;
        if fsync_interval < Duration::from_millis(10) || fsync_interval > Duration::from_secs(60) {
            p.push(Problem::new(
                "storage.fsync_interval",
                "must be between 10ms and 60s",
            ));
        }
        let checkpoint = self.storage.checkpoint_interval;
        if checkpoint < Duration::from_secs(1) || checkpoint > Duration::from_secs(3600) {
            p.push(Problem::new(
                "storage.checkpoint_interval",
                "must be between 1s and 1h",
            ));
        }
        if self.storage.significant_digits > 15 {
            p.push(Problem::new(
                "storage.significant_digits",
                "must be at most 15 (a 64-bit float holds 15 to 17), or 0 to keep values exact",
            ));
        }
        for (i, sel) in self.model.export_match.iter().enumerate() {
            if let Err(e) = check_selector(sel) {
                p.push(Problem::new(format!("model.export_match[{i}]"), e));
            }
        }
        if self.model.export_limit > 1_000_000 {
            p.push(Problem::new(
                "model.export_limit",
                "must be at most 1000000",
            ));
        }
        let logs = &self.logs;
        if logs.max_templates == 0 || logs.max_templates > 10_000_000 {
            p.push(Problem::new(
                "logs.max_templates",
                "must be between 1 and 10000000",
            ));
        }
        if !(0.0..=1.0).contains(&logs.similarity) {
            p.push(Problem::new(
                "logs.similarity",
                format!("must be between 0.0 and 1.0, got {}", logs.similarity),
            ));
        }
        if logs.warmup > Duration::from_secs(30 * 86_400) {
            p.push(Problem::new("logs.warmup", "must be at most 30d"));
        }
        if logs.export_limit > 1_000_000 {
            p.push(Problem::new("logs.export_limit", "must be at most 1000000"));
        }
        validate_backfill(self, &mut p);
        validate_auth(&self.auth, &mut p);
        validate_tls(&self.tls, &mut p);
        crate::alerting::validate_rules(&self.rules, &mut p);
        crate::alerting::validate_routing(
            &self.receivers,
            &self.routes,
            &self.inhibit,
            &self.remediations,
            &mut p,
        );
        for (i, attr) in self.ingest.promote_resource_attributes.iter().enumerate() {
            if attr.trim().is_empty() {
                p.push(Problem::new(
                    format!("ingest.promote_resource_attributes[{i}]"),
                    "must not be empty",
                ));
            }
        }
        p
    }
}

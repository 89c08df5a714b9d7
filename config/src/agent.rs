//! Configuration of the agent (`presage-agent`).
//!
//! ```
//! use presage_config::AgentConfig;
//!
//! let cfg = AgentConfig::from_toml(
//!     "[agent]\nendpoint = \"http://forecaster:4317\"\ninterval = \"15s\"\n\n\
//!      [[scrape]]\nurl = \"http://127.0.0.1:8080/metrics\"\n\n\
//!      [[logs]]\npaths = [\"/var/log/app/*.log\"]\n",
//!     "agent.toml",
//! )
//! .unwrap();
//! assert_eq!(cfg.agent.interval.as_secs(), 15);
//! assert_eq!(cfg.scrape[0].url, "http://127.0.0.1:8080/metrics");
//!
//! let err = AgentConfig::from_toml("[agent]\ninterval = \"10 lightyears\"\n", "bad.toml").unwrap_err();
//! assert!(err.to_string().starts_with("bad.toml:2:12:"));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::de::DeTable;

use crate::error::{ConfigErrors, Problem};
use crate::load::{self, Document};
use crate::units::ByteSize;

/// The agent's whole configuration. Every section is optional: with no file at all the agent
/// collects host metrics every 10 s and sends them to a forecaster on `127.0.0.1:4317`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Where data goes, how often it is collected, and where state is kept.
    pub agent: AgentSettings,
    /// Host metrics collected from procfs.
    pub host: HostConfig,
    /// Prometheus endpoints scraped (for example the application's own `/metrics` beside it).
    pub scrape: Vec<ScrapeConfig>,
    /// Log files tailed.
    pub logs: Vec<LogsConfig>,
}

/// How the agent talks to the forecaster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportProtocol {
    /// OTLP over gRPC (the forecaster's port 4317).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (`POST /v1/metrics`, `POST /v1/logs`, port 4318).
    Http,
}

/// The `[agent]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// The forecaster's OTLP endpoint, `http://` or `https://` (TLS). Defaults to
    /// `http://127.0.0.1:4317` for gRPC and `http://127.0.0.1:4318` for HTTP.
    pub endpoint: Option<String>,
    /// `grpc` (default) or `http` (OTLP/HTTP with protobuf bodies).
    pub protocol: ExportProtocol,
    /// How often host metrics are collected, and the default scrape interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How long one export request may take before it counts as failed and is retried.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A file holding the bearer token sent as `Authorization: Bearer <token>` (the
    /// forecaster's `auth.ingest_token_file`). Absent: no token.
    pub token_file: Option<PathBuf>,
    /// A PEM file of CA certificates trusted for an `https://` endpoint, in addition to the
    /// system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// A PEM file with the client certificate (then any intermediates) presented to the
    /// forecaster over an `https://` endpoint, for mutual TLS (the forecaster's
    /// `tls.client_ca_file`). Requires `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
    /// Compress export requests with gzip.
    pub gzip: bool,
    /// Directory for the log checkpoints and the spool, created when missing.
    pub state_dir: PathBuf,
    /// Most bytes the on-disk spool holds while the forecaster is unreachable. When full,
    /// the oldest batches are dropped (and counted).
    pub spool_max_size: ByteSize,
    /// First wait before retrying a failed export; it doubles (with jitter) on every failure.
    #[serde(with = "humantime_serde")]
    pub retry_initial_backoff: Duration,
    /// Longest wait between two retries.
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// Most data points in one metrics export request; bigger scrapes are split.
    pub max_points_per_request: usize,
    /// Most log records in one logs export request.
    pub max_log_records_per_request: usize,
    /// Where the agent's own `/metrics` and `/-/healthy` are served.
    pub telemetry: SocketAddr,
    /// `service.name` of the host metrics and of log files without their own. Defaults to
    /// `$OTEL_SERVICE_NAME`, else `presage-agent`.
    pub service_name: Option<String>,
    /// `host.name`. Defaults to the kernel's host name.
    pub host_name: Option<String>,
    /// More resource attributes put on everything the agent sends
    /// (`{ "deployment.environment" = "prod" }`).
    pub resource: BTreeMap<String, String>,
}

impl AgentSettings {
    /// The default OTLP/gRPC endpoint.
    pub const DEFAULT_GRPC_ENDPOINT: &'static str = "http://127.0.0.1:4317";
    /// The default OTLP/HTTP endpoint.
    pub const DEFAULT_HTTP_ENDPOINT: &'static str = "http://127.0.0.1:4318";

    /// The endpoint in effect: the configured one, else the protocol's default.
    pub fn effective_endpoint(&self) -> &str {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e,
            (None, ExportProtocol::Grpc) => Self::DEFAULT_GRPC_ENDPOINT,
            (None, ExportProtocol::Http) => Self::DEFAULT_HTTP_ENDPOINT,
        }
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            endpoint: None,
            protocol: ExportProtocol::Grpc,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            token_file: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            gzip: true,
            state_dir: PathBuf::from("presage-agent-data"),
            spool_max_size: ByteSize::mib(64),
            retry_initial_backoff: Duration::from_millis(500),
            retry_max_backoff: Duration::from_secs(30),
            max_points_per_request: 10_000,
            max_log_records_per_request: 1_000,
            telemetry: SocketAddr::from(([127, 0, 0, 1], 9471)),
            service_name: None,
            host_name: None,
            resource: BTreeMap::new(),
        }
    }
}

/// The `[host]` section: host metrics read from procfs and `statvfs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostConfig {
    /// Collect host metrics at all (a pod sidecar that only scrapes and tails may turn it off).
    pub enabled: bool,
    /// Where procfs is mounted; `/host/proc` when the host's is mounted into a container.
    pub proc: PathBuf,
    /// The host's root file system as seen by the agent (`/host/root` in a container): mount
    /// points are looked up beneath it.
    pub root: PathBuf,
    /// CPU utilisation per CPU (a `cpu` attribute) rather than for the whole host.
    pub per_cpu: bool,
    /// File system types that are skipped (pseudo and read-only image file systems).
    pub exclude_filesystem_types: Vec<String>,
    /// Mount points skipped, with everything beneath them.
    pub exclude_mount_points: Vec<String>,
    /// Network interfaces skipped.
    pub exclude_network_interfaces: Vec<String>,
    /// Block devices skipped, by name prefix. Partitions are always skipped (their I/O is
    /// counted on the whole disk).
    pub exclude_disks: Vec<String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            enabled: true,
            proc: PathBuf::from("/proc"),
            root: PathBuf::from("/"),
            per_cpu: false,
            exclude_filesystem_types: strings(&[
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "proc",
                "procfs",
                "pstore",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "sysfs",
                "tracefs",
            ]),
            exclude_mount_points: strings(&[
                "/dev",
                "/proc",
                "/sys",
                "/run/credentials",
                "/run/containerd",
                "/run/netns",
                "/var/lib/docker",
                "/var/lib/containers",
                "/var/lib/kubelet",
                "/snap",
            ]),
            exclude_network_interfaces: strings(&["lo"]),
            exclude_disks: strings(&["loop", "ram", "zram", "fd", "sr"]),
        }
    }
}

/// One `[[scrape]]` target: a Prometheus text-format endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The URL scraped, `http://` or `https://` (required).
    pub url: String,
    /// `service.name` of the scraped series (the forecaster shows it as `job`). Defaults to
    /// the agent's service name.
    #[serde(default)]
    pub job: Option<String>,
    /// How often the target is scraped. Defaults to `agent.interval`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// How long one scrape may take. Defaults to 5s, or the interval when that is shorter.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Labels added to every scraped series.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Use the timestamps the target exposes; otherwise every sample gets the scrape time.
    #[serde(default = "yes")]
    pub honor_timestamps: bool,
}

impl ScrapeConfig {
    /// A target with every optional setting at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            job: None,
            interval: None,
            timeout: None,
            labels: BTreeMap::new(),
            honor_timestamps: true,
        }
    }
}

impl ScrapeConfig {
    /// The interval in effect, given `agent.interval`.
    pub fn effective_interval(&self, agent_interval: Duration) -> Duration {
        self.interval.unwrap_or(agent_interval)
    }

    /// The timeout in effect, given `agent.interval`.
    pub fn effective_timeout(&self, agent_interval: Duration) -> Duration {
        self.timeout
            .unwrap_or_else(|| Duration::from_secs(5).min(self.effective_interval(agent_interval)))
    }
}

fn yes() -> bool {
    true
}

/// Where a log file that the agent has never seen is read from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Skip what the file holds when the agent first starts; files that appear later are
    /// always read from their beginning.
    #[default]
    End,
    /// Read existing files from their first byte.
    Beginning,
}

/// One `[[logs]]` source: files matched by globs, tailed line by line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Glob patterns of the files tailed (`/var/log/app/*.log`; `**` matches directories).
    /// Re-expanded on every poll, so new files are picked up (required).
    pub paths: Vec<String>,
    /// Glob patterns of files not tailed even though `paths` matches them (`*.gz`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `end` (default) or `beginning`: where files present at the agent's first start are read
    /// from. Files the agent has a checkpoint for resume where it left off.
    #[serde(default)]
    pub start_at: StartAt,
    /// A regular expression matching the first line of a record; lines that do not match are
    /// appended to the record before them (stack traces). Absent: every line is a record.
    #[serde(default)]
    pub multiline_start: Option<String>,
    /// How long a multi-line record waits for a continuation line before it is sent.
    #[serde(default = "default_multiline_timeout", with = "humantime_serde")]
    pub multiline_timeout: Duration,
    /// `service.name` of these records. Defaults to the agent's service name.
    #[serde(default)]
    pub service_name: Option<String>,
    /// Attributes added to every record.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// How often files are checked for new lines and the globs re-expanded.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long a rotated-away or deleted file is still watched for lines written late.
    #[serde(default = "default_rotate_wait", with = "humantime_serde")]
    pub rotate_wait: Duration,
    /// Longest line kept; the rest of a longer line is discarded (and counted).
    #[serde(default = "default_max_line_size")]
    pub max_line_size: ByteSize,
}

impl LogsConfig {
    /// A source with every optional setting at its default.
    pub fn new(paths: Vec<String>) -> Self {
        Self {
            paths,
            exclude: Vec::new(),
            start_at: StartAt::End,
            multiline_start: None,
            multiline_timeout: default_multiline_timeout(),
            service_name: None,
            attributes: BTreeMap::new(),
            poll_interval: default_poll_interval(),
            rotate_wait: default_rotate_wait(),
            max_line_size: default_max_line_size(),
        }
    }
}

fn default_multiline_timeout() -> Duration {
    Duration::from_secs(1)
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_rotate_wait() -> Duration {
    Duration::from_secs(5)
}

fn default_max_line_size() -> ByteSize {
    ByteSize(64 * 1024)
}

impl Document for AgentConfig {
    const SECTIONS: &'static [&'static str] = &["agent", "host", "scrape", "logs"];

    fn check_section(source: &str, name: &str) -> Result<(), toml::de::Error> {
        load::section_checker!(source, name, {
            agent: AgentSettings,
            host: HostConfig,
            scrape: Vec<ScrapeConfig>,
            logs: Vec<LogsConfig>,
        })
    }

    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        let a = &self.agent;
        if let Some(endpoint) = &a.endpoint
            && let Err(msg) = check_url(endpoint)
        {
            p.push(Problem::new("agent.endpoint", msg));
        }
        let between =
            |p: &mut Vec<Problem>, path: &str, d: Duration, lo: Duration, hi: Duration| {
                if d < lo || d > hi {
                    p.push(Problem::new(
                        path,
                        format!(
                            "must be between {} and {}, got {}",
                            humantime::format_duration(lo),
                            humantime::format_duration(hi),
                            humantime::format_duration(d)
                        ),
                    ));
                }
            };
        validate_client_certificate(a, &mut p);
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        between(&mut p, "agent.interval", a.interval, s(1), s(3600));
        between(&mut p, "agent.timeout", a.timeout, ms(100), s(300));
        between(
            &mut p,
            "agent.retry_initial_backoff",
            a.retry_initial_backoff,
            ms(10),
            s(300),
        );
        between(
            &mut p,
            "agent.retry_max_backoff",
            a.retry_max_backoff,
            ms(10),
            s(3600),
        );
        if a.retry_max_backoff < a.retry_initial_backoff {
            p.push(Problem::new(
                "agent.retry_max_backoff",
                "must be at least agent.retry_initial_backoff",
            ));
        }
        if a.spool_max_size < ByteSize::mib(1) {
            p.push(Problem::new(
                "agent.spool_max_size",
                "must be at least 1MiB",
            ));
        }
        if a.max_points_per_request == 0 {
            p.push(Problem::new(
                "agent.max_points_per_request",
                "must be at least 1",
            ));
        }
        if a.max_log_records_per_request == 0 {
            p.push(Problem::new(
                "agent.max_log_records_per_request",
                "must be at least 1",
            ));
        }
        if a.state_dir.as_os_str().is_empty() {
            p.push(Problem::new("agent.state_dir", "must not be empty"));
        }
        if a.service_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            p.push(Problem::new("agent.service_name", "must not be empty"));
        }
        if a.host_name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            p.push(Problem::new("agent.host_name", "must not be empty"));
        }
        for key in a.resource.keys() {
            if key.trim().is_empty() {
                p.push(Problem::new(
                    "agent.resource",
                    "attribute names must not be empty",
                ));
            }
        }

        for (i, t) in self.scrape.iter().enumerate() {
            if let Err(msg) = check_url(&t.url) {
                p.push(Problem::new(format!("scrape[{i}].url"), msg));
            }
            let interval = t.effective_interval(a.interval);
            if let Some(iv) = t.interval {
                between(&mut p, &format!("scrape[{i}].interval"), iv, s(1), s(3600));
            }
            let timeout = t.effective_timeout(a.interval);
            if timeout < ms(10) || timeout > interval {
                p.push(Problem::new(
                    format!("scrape[{i}].timeout"),
                    format!(
                        "must be between 10ms and the scrape interval ({}), got {}",
                        humantime::format_duration(interval),
                        humantime::format_duration(timeout)
                    ),
                ));
            }
            if t.job.as_deref().is_some_and(|j| j.trim().is_empty()) {
                p.push(Problem::new(
                    format!("scrape[{i}].job"),
                    "must not be empty",
                ));
            }
            for name in t.labels.keys() {
                if !is_label_name(name) {
                    p.push(Problem::new(
                        format!("scrape[{i}].labels"),
                        format!("`{name}` is not a label name: use [a-zA-Z_][a-zA-Z0-9_]*"),
                    ));
                }
            }
        }

        for (i, l) in self.logs.iter().enumerate() {
            if l.paths.is_empty() {
                p.push(Problem::new(
                    format!("logs[{i}].paths"),
                    "needs at least one glob pattern",
                ));
            }
            for (j, path) in l.paths.iter().enumerate() {
                if path.trim().is_empty() {
                    p.push(Problem::new(
                        format!("logs[{i}].paths[{j}]"),
                        "must not be empty",
                    ));
                }
            }
            between(
                &mut p,
                &format!("logs[{i}].poll_interval"),
                l.poll_interval,
                ms(10),
                s(60),
            );
            between(
                &mut p,
                &format!("logs[{i}].multiline_timeout"),
                l.multiline_timeout,
                ms(10),
                s(600),
            );
            between(
                &mut p,
                &format!("logs[{i}].rotate_wait"),
                l.rotate_wait,
                Duration::ZERO,
                s(3600),
            );
            if l.max_line_size.bytes() < 256 || l.max_line_size > ByteSize::mib(16) {
                p.push(Problem::new(
                    format!("logs[{i}].max_line_size"),
                    "must be between 256B and 16MiB",
                ));
            }
            if l.service_name
                .as_deref()
                .is_some_and(|n| n.trim().is_empty())
            {
                p.push(Problem::new(
                    format!("logs[{i}].service_name"),
                    "must not be empty",
                ));
            }
        }
        p
    }
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The client certificate: both files or neither, an `https://` endpoint, and a key that
/// belongs to the certificate.
fn validate_client_certificate(a: &AgentSettings, p: &mut Vec<Problem>) {
    let (cert, key) = match (&a.tls_cert_file, &a.tls_key_file) {
        (None, None) => return,
        (Some(_), None) => {
            p.push(Problem::new(
                "agent.tls_cert_file",
                "needs `agent.tls_key_file` too",
            ));
            return;
        }
        (None, Some(_)) => {
            p.push(Problem::new(
                "agent.tls_key_file",
                "needs `agent.tls_cert_file` too",
            ));
            return;
        }
        (Some(c), Some(k)) => (c, k),
    };
    if !a.effective_endpoint().starts_with("https://") {
        p.push(Problem::new(
            "agent.tls_cert_file",
            "a client certificate is only sent over TLS: `agent.endpoint` must be an https:// URL",
        ));
    }
    if let Err(errors) = crate::tls::certified_key(cert, key) {
        for (file, message) in errors {
            let path = match file {
                crate::tls::PemFile::Cert => "agent.tls_cert_file",
                crate::tls::PemFile::Key => "agent.tls_key_file",
            };
            p.push(Problem::new(path, message));
        }
    }
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{url}` has no host"));
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("`{url}` has an invalid port `{port}`"));
    }
    Ok(())
}

impl AgentConfig {
    /// Parses and validates a TOML document; `origin` names it in error messages.
    pub fn from_toml(source: &str, origin: &str) -> Result<Self, ConfigErrors> {
        load::from_toml(source, origin)
    }

    /// Like [`AgentConfig::from_toml`], plus checks the agent makes with its own libraries
    /// (regular expressions, glob patterns). `check` returns `(dotted path, message)` pairs
    /// such as `("logs[0].multiline_start", "unclosed group")`; they are reported at their
    /// line and column like every other problem.
    pub fn from_toml_checked(
        source: &str,
        origin: &str,
        check: impl FnOnce(&AgentConfig) -> Vec<(String, String)>,
    ) -> Result<Self, ConfigErrors> {
        let cfg = Self::from_toml(source, origin)?;
        let extra = check(&cfg);
        if extra.is_empty() {
            return Ok(cfg);
        }
        let tree = DeTable::parse(source).ok();
        let mut problems: Vec<Problem> = extra
            .into_iter()
            .map(|(path, message)| {
                let span = tree
                    .as_ref()
                    .and_then(|t| load::find_span(t.get_ref(), &path));
                Problem::new(path, message).locate(source, span)
            })
            .collect();
        problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigErrors {
            origin: origin.to_string(),
            problems,
        })
    }

    /// Semantic problems of a configuration built or changed in code (command-line flags),
    /// without positions.
    pub fn problems(&self) -> Vec<Problem> {
        self.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(source: &str) -> Vec<String> {
        AgentConfig::from_toml(source, "a.toml")
            .unwrap_err()
            .problems
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn no_file_runs_on_defaults() {
        let cfg = AgentConfig::from_toml("", "a.toml").unwrap();
        assert_eq!(cfg, AgentConfig::default());
        assert_eq!(cfg.agent.effective_endpoint(), "http://127.0.0.1:4317");
        assert_eq!(cfg.agent.interval, Duration::from_secs(10));
        assert_eq!(cfg.agent.spool_max_size, ByteSize::mib(64));
        assert_eq!(cfg.agent.telemetry.to_string(), "127.0.0.1:9471");
        assert!(cfg.host.enabled);
        assert!(cfg.scrape.is_empty() && cfg.logs.is_empty());
        assert!(AgentConfig::default().validate().is_empty());
    }

    #[test]
    fn http_protocol_changes_the_default_endpoint() {
        let cfg = AgentConfig::from_toml("[agent]\nprotocol = \"http\"\n", "a.toml").unwrap();
        assert_eq!(cfg.agent.effective_endpoint(), "http://127.0.0.1:4318");
    }

    #[test]
    fn design_document_keys_parse() {
        let cfg = AgentConfig::from_toml(
            r#"
[agent]
endpoint = "https://presage.example.com:4317"
interval = "30s"
token_file = "/etc/presage/ingest.token"
spool_max_size = "16MiB"
resource = { "deployment.environment" = "prod" }

[host]
exclude_network_interfaces = ["lo", "docker0"]

[[scrape]]
url = "http://127.0.0.1:8080/metrics"
job = "checkout"
labels = { team = "payments" }

[[scrape]]
url = "http://127.0.0.1:9100/metrics"
interval = "1m"

[[logs]]
paths = ["/var/log/app/*.log"]
multiline_start = '^\d{4}-'
start_at = "beginning"
"#,
            "a.toml",
        )
        .unwrap();
        assert_eq!(cfg.agent.interval, Duration::from_secs(30));
        assert_eq!(cfg.agent.spool_max_size, ByteSize::mib(16));
        assert_eq!(cfg.agent.resource["deployment.environment"], "prod");
        assert_eq!(cfg.scrape.len(), 2);
        assert_eq!(cfg.scrape[0].job.as_deref(), Some("checkout"));
        assert_eq!(cfg.scrape[0].timeout, None);
        assert_eq!(
            cfg.scrape[0].effective_timeout(cfg.agent.interval),
            Duration::from_secs(5)
        );
        assert_eq!(
            cfg.scrape[0].effective_timeout(Duration::from_secs(1)),
            Duration::from_secs(1)
        );
        assert_eq!(cfg.scrape[1].interval, Some(Duration::from_secs(60)));
        assert!(cfg.scrape[1].honor_timestamps);
        assert_eq!(cfg.logs[0].start_at, StartAt::Beginning);
        assert_eq!(cfg.logs[0].multiline_start.as_deref(), Some(r"^\d{4}-"));
        assert_eq!(cfg.logs[0].poll_interval, Duration::from_secs(1));
        assert_eq!(cfg.host.exclude_network_interfaces, ["lo", "docker0"]);
    }

    #[test]
    fn unknown_keys_and_missing_required_keys_are_located() {
        let got = problems(
            "[agent]\nendpont = \"http://x:1\"\n\n[[scrape]]\nurl = \"http://a:1/m\"\nintervall = \"5s\"\n\n[[logs]]\nstart_at = \"end\"\n",
        );
        assert_eq!(got.len(), 3, "{got:#?}");
        assert!(
            got[0].starts_with("2:1: `agent`: unknown field `endpont`"),
            "{}",
            got[0]
        );
        assert!(
            got[1].starts_with("6:1: `scrape`: unknown field `intervall`"),
            "{}",
            got[1]
        );
        assert!(got[2].contains("missing field `paths`"), "{}", got[2]);
    }

    #[test]
    fn semantic_problems_point_at_the_key() {
        let got = problems(
            "[agent]\ninterval = \"500ms\"\nendpoint = \"grpc://x\"\n\n[[scrape]]\nurl = \"http://a:1/m\"\ntimeout = \"20s\"\n\n[[logs]]\npaths = []\n",
        );
        assert_eq!(
            got,
            vec![
                "2:1: `agent.interval`: must be between 1s and 1h, got 500ms".to_string(),
                "3:1: `agent.endpoint`: `grpc://x` must start with http:// or https://"
                    .to_string(),
                "7:1: `scrape[0].timeout`: must be between 10ms and the scrape interval (500ms), got 20s"
                    .to_string(),
                "10:1: `logs[0].paths`: needs at least one glob pattern".to_string(),
            ]
        );
    }

    #[test]
    fn extra_checks_are_located_in_array_tables() {
        let source = "[[logs]]\npaths = [\"/a/*.log\"]\n\n[[logs]]\npaths = [\"/b/*.log\"]\nmultiline_start = \"(unclosed\"\n";
        let err = AgentConfig::from_toml_checked(source, "a.toml", |cfg| {
            assert_eq!(cfg.logs.len(), 2);
            vec![(
                "logs[1].multiline_start".to_string(),
                "unclosed group".to_string(),
            )]
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a.toml:6:1: `logs[1].multiline_start`: unclosed group"
        );
        let ok = AgentConfig::from_toml_checked(source, "a.toml", |_| Vec::new()).unwrap();
        assert_eq!(ok.logs[1].paths, ["/b/*.log"]);
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:4317").is_ok());
        assert!(check_url("https://[::1]:4317/").is_ok());
        assert!(check_url("http://user@host/metrics").is_ok());
        assert!(check_url("http://:80/").is_err());
        assert!(check_url("http://host:99999/").is_err());
        assert!(check_url("ftp://host/").is_err());
    }

    #[test]
    fn scrape_labels_must_be_label_names() {
        let got = problems("[[scrape]]\nurl = \"http://a:1/m\"\nlabels = { \"a-b\" = \"x\" }\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].contains("`a-b` is not a label name"), "{}", got[0]);
    }
}

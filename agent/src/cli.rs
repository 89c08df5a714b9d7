//! Command line: flags for the common settings on top of an optional TOML file, and
//! `check-config`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use presage_config::{AgentConfig, ConfigErrors, ExportProtocol, LogsConfig, ScrapeConfig};

/// The Presage agent: host metrics, sidecar scraping and log tailing, streamed to the
/// forecaster over OTLP. Runs on built-in defaults without a configuration file.
#[derive(Debug, Parser)]
#[command(name = "presage-agent", version, propagate_version = true)]
pub struct Cli {
    /// A subcommand; without one the agent runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Settings for running the agent.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file: print every problem with its line and column and exit
    /// 64, or exit 0 when it is valid.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

/// Export protocol flag values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ProtocolArg {
    /// OTLP over gRPC.
    Grpc,
    /// OTLP over HTTP (protobuf).
    Http,
}

/// Flags that override the configuration file.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// TOML configuration file (`[agent]`, `[host]`, `[[scrape]]`, `[[logs]]`).
    #[arg(long, short = 'c', value_name = "FILE", env = "PRESAGE_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// The forecaster's OTLP endpoint (`agent.endpoint`), e.g. http://presage:4317.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// `grpc` or `http` (`agent.protocol`).
    #[arg(long, value_enum)]
    pub protocol: Option<ProtocolArg>,
    /// Collection interval (`agent.interval`), e.g. 10s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Scrape this Prometheus endpoint (repeatable; adds a `[[scrape]]`).
    #[arg(long = "scrape", value_name = "URL")]
    pub scrape: Vec<String>,
    /// Tail files matching this glob (repeatable; together they add one `[[logs]]`).
    #[arg(long = "logs", value_name = "GLOB")]
    pub logs: Vec<String>,
    /// Directory for log checkpoints and the spool (`agent.state_dir`).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address of the agent's own /metrics and /-/healthy (`agent.telemetry`).
    #[arg(long, value_name = "ADDR")]
    pub telemetry: Option<SocketAddr>,
    /// File with the bearer token for the forecaster (`agent.token_file`).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// `service.name` of what the agent sends (`agent.service_name`).
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
    /// Do not collect host metrics (`host.enabled = false`), e.g. in a pod sidecar.
    #[arg(long)]
    pub no_host: bool,
}

/// A configuration that could not be loaded.
#[derive(Debug)]
pub enum ConfigFailure {
    /// The file could not be read.
    Read(String),
    /// The file or the flags are invalid.
    Invalid(ConfigErrors),
}

impl fmt::Display for ConfigFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigFailure::Read(msg) => f.write_str(msg),
            ConfigFailure::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// Checks the configuration crate leaves to the agent: glob patterns, regular expressions,
/// URLs and TLS availability.
pub fn agent_checks(cfg: &AgentConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, l) in cfg.logs.iter().enumerate() {
        out.extend(crate::logs::check(i, l));
    }
    let https = |url: &str| url.starts_with("https://");
    for (i, s) in cfg.scrape.iter().enumerate() {
        if let Err(e) = s.url.parse::<http::Uri>() {
            out.push((format!("scrape[{i}].url"), format!("invalid URL: {e}")));
        }
        if https(&s.url) && !cfg!(feature = "tls") {
            out.push((
                format!("scrape[{i}].url"),
                "this build has no TLS support (cargo feature `tls`)".to_string(),
            ));
        }
    }
    if let Some(e) = &cfg.agent.endpoint {
        if let Err(err) = e.parse::<http::Uri>() {
            out.push(("agent.endpoint".into(), format!("invalid URL: {err}")));
        }
        if https(e) && !cfg!(feature = "tls") {
            out.push((
                "agent.endpoint".into(),
                "this build has no TLS support (cargo feature `tls`)".into(),
            ));
        }
    }
    out
}

/// Loads and validates a configuration file.
pub fn load_file(path: &Path) -> Result<AgentConfig, ConfigFailure> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| ConfigFailure::Read(format!("cannot read {}: {e}", path.display())))?;
    AgentConfig::from_toml_checked(&source, &path.display().to_string(), agent_checks)
        .map_err(ConfigFailure::Invalid)
}

/// The configuration in effect: the file (if any) with the flags applied, validated.
pub fn config(args: &RunArgs) -> Result<AgentConfig, ConfigFailure> {
    let mut cfg = match &args.config {
        Some(path) => load_file(path)?,
        None => AgentConfig::default(),
    };
    let a = &mut cfg.agent;
    if let Some(e) = &args.endpoint {
        a.endpoint = Some(e.clone());
    }
    if let Some(p) = args.protocol {
        a.protocol = match p {
            ProtocolArg::Grpc => ExportProtocol::Grpc,
            ProtocolArg::Http => ExportProtocol::Http,
        };
    }
    if let Some(i) = args.interval {
        a.interval = i;
    }
    if let Some(d) = &args.state_dir {
        a.state_dir = d.clone();
    }
    if let Some(t) = args.telemetry {
        a.telemetry = t;
    }
    if let Some(t) = &args.token_file {
        a.token_file = Some(t.clone());
    }
    if let Some(s) = &args.service_name {
        a.service_name = Some(s.clone());
    }
    if args.no_host {
        cfg.host.enabled = false;
    }
    cfg.scrape.extend(args.scrape.iter().map(ScrapeConfig::new));
    if !args.logs.is_empty() {
        cfg.logs.push(LogsConfig::new(args.logs.clone()));
    }
    let mut problems = cfg.problems();
    for (path, message) in agent_checks(&cfg) {
        problems.push(presage_config::Problem {
            path,
            line: None,
            column: None,
            message,
        });
    }
    if problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigFailure::Invalid(ConfigErrors {
            origin: match &args.config {
                Some(p) => format!("{} with command-line flags", p.display()),
                None => "command-line flags".to_string(),
            },
            problems,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "[agent]\ninterval = \"30s\"\nendpoint = \"http://a:4317\"\n\n[[scrape]]\nurl = \"http://127.0.0.1:1/m\"\n").unwrap();
        let args = RunArgs {
            config: Some(path),
            endpoint: Some("http://b:4317".into()),
            interval: Some(Duration::from_secs(5)),
            scrape: vec!["http://127.0.0.1:2/metrics".into()],
            logs: vec!["/var/log/*.log".into(), "/tmp/x.log".into()],
            no_host: true,
            ..RunArgs::default()
        };
        let cfg = config(&args).unwrap();
        assert_eq!(cfg.agent.endpoint.as_deref(), Some("http://b:4317"));
        assert_eq!(cfg.agent.interval, Duration::from_secs(5));
        assert_eq!(cfg.scrape.len(), 2);
        assert_eq!(cfg.logs[0].paths, ["/var/log/*.log", "/tmp/x.log"]);
        assert!(!cfg.host.enabled);
    }

    #[test]
    fn bad_flags_are_reported_like_file_problems() {
        let args = RunArgs {
            interval: Some(Duration::from_millis(10)),
            logs: vec!["/var/log/[.log".into()],
            ..RunArgs::default()
        };
        let Err(ConfigFailure::Invalid(e)) = config(&args) else {
            panic!("invalid")
        };
        let text = e.to_string();
        assert!(
            text.contains("command-line flags:`agent.interval`"),
            "{text}"
        );
        assert!(text.contains("`logs[0].paths[0]`: invalid glob"), "{text}");
    }

    #[test]
    fn regex_errors_in_files_have_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "[[logs]]\npaths = [\"/x/*.log\"]\nmultiline_start = \"(oops\"\n",
        )
        .unwrap();
        let Err(ConfigFailure::Invalid(e)) = load_file(&path) else {
            panic!("invalid")
        };
        let text = e.to_string();
        assert!(
            text.contains("agent.toml:3:1: `logs[0].multiline_start`: invalid regular expression"),
            "{text}"
        );
    }
}

//! Typed configuration for Presage.
//!
//! Every section of every file is optional; defaults run with no file at all. Files are strict:
//! unknown keys are errors, durations carry units (`"30s"`, `"14d"`), and loading reports every
//! problem with its line and column rather than stopping at the first.
//!
//! ```
//! use presage_config::ForecasterConfig;
//!
//! let cfg = ForecasterConfig::from_toml("[model]\nstep = \"5m\"\n", "inline").unwrap();
//! assert_eq!(cfg.model.step.as_secs(), 300);
//!
//! let err = ForecasterConfig::from_toml("[model]\nstep = \"5 parsecs\"\n", "bad.toml").unwrap_err();
//! assert!(err.to_string().starts_with("bad.toml:2:8:"));
//! ```

mod agent;
mod alerting;
mod error;
mod forecaster;
mod load;
pub mod promql;
pub mod tls;
mod units;

pub use agent::{
    AgentConfig, AgentSettings, ExportProtocol, HostConfig, LogsConfig, ScrapeConfig, StartAt,
};
pub use alerting::{
    AlertingSettings, AlertmanagerConfig, ConsoleConfig, Direction, EmailConfig, EtaQuantile,
    InhibitConfig, OutlierAlgorithm, ReceiverConfig, RemediationConfig, RouteConfig, RuleConfig,
    RuleKind, SecretRef, Severity, SmtpTls, WebhookConfig,
};
pub use error::{ConfigErrors, Error, Problem, Result};
pub use forecaster::{
    AUTO_MEMORY_SHARE, AuthConfig, BackfillConfig, DEFAULT_BACKFILL_CONCURRENCY, ForecasterConfig,
    FsyncPolicy, IngestConfig, LimitsConfig, LogPatternsConfig, MIN_MEMORY_LIMIT, MIN_TOKEN_LENGTH,
    ModelConfig, ServerConfig, StorageConfig, TlsConfig, TlsMaterial, TokenKind,
};
pub use load::Document;
pub use units::{ByteSize, MemoryLimit};

use std::path::Path;

/// The exit code for an invalid configuration (`EX_USAGE` from sysexits.h).
pub const EXIT_INVALID_CONFIG: i32 = 64;

impl ForecasterConfig {
    /// Parses and validates a TOML document; `origin` names it in error messages.
    pub fn from_toml(source: &str, origin: &str) -> Result<Self, ConfigErrors> {
        load::from_toml(source, origin)
    }

    /// Reads, parses and validates a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        load_file(path)
    }
}

/// Reads, parses and validates a configuration file of any document type.
pub fn load_file<T: Document>(path: &Path) -> Result<T> {
    let source = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(load::from_toml(&source, &path.display().to_string())?)
}

#[cfg(test)]
mod tests;

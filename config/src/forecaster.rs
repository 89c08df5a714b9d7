//! Configuration of the forecaster daemon (`presage serve`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Problem;
use crate::load::Document;
use crate::units::ByteSize;

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
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("presage-data"),
            retention: Duration::from_secs(14 * 24 * 3600),
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
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            step: Duration::from_secs(60),
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

macro_rules! section_checker {
    ($source:expr, $name:expr, { $($field:ident: $ty:ty),* $(,)? }) => {
        match $name {
            $(stringify!($field) => {
                #[derive(Deserialize)]
                struct Only {
                    #[serde(default)]
                    #[allow(dead_code)]
                    $field: Option<$ty>,
                }
                toml::from_str::<Only>($source).map(|_| ())
            })*
            _ => Ok(()),
        }
    };
}

impl Document for ForecasterConfig {
    const SECTIONS: &'static [&'static str] = &["server", "limits", "storage", "model", "ingest"];

    fn check_section(source: &str, name: &str) -> Result<(), toml::de::Error> {
        section_checker!(source, name, {
            server: ServerConfig,
            limits: LimitsConfig,
            storage: StorageConfig,
            model: ModelConfig,
            ingest: IngestConfig,
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

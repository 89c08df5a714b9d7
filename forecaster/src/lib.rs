//! The Presage forecaster: ingest (OTLP, remote_write) → store → API.
//!
//! The binary `presage` wraps [`server::Running`]; tests and embedders can start the same
//! daemon in-process:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let mut config = presage_config::ForecasterConfig::default();
//! config.server.http = "127.0.0.1:0".parse()?;
//! config.server.otlp_grpc = "127.0.0.1:0".parse()?;
//! config.server.otlp_http = "127.0.0.1:0".parse()?;
//! let running = presage_forecaster::server::Running::start(config, Default::default()).await?;
//! println!("API on http://{}", running.http);
//! running.shutdown().await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod app;
pub mod auth;
pub mod backfill;
pub mod backtest;
pub mod connections;
pub mod demo;
pub mod detect;
pub mod ingest;
pub mod logpatterns;
pub mod memory;
pub mod model;
pub mod parquet;
pub mod redact;
pub mod server;
pub mod signals;
pub mod store;
pub mod telemetry;
pub mod tls;

#[cfg(test)]
mod test_rng;

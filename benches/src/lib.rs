//! Benchmarks and load generation for Presage.
//!
//! [`loadgen`] is the library behind the `presage-loadgen` binary: it sends Prometheus
//! remote_write or OTLP metrics batches for a given number of series at a given rate and reports
//! what the receiver accepted. `benches/ingest-vs-prometheus.sh` drives it against `presage serve`
//! and Prometheus in the same run.

pub mod loadgen;
pub mod nab;

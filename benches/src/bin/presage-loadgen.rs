//! `presage-loadgen`: sends Prometheus remote_write or OTLP metrics batches for a number of
//! series at a given rate, and reports accepted samples per second and request latency.
//!
//! ```text
//! presage-loadgen --target remote-write --url http://127.0.0.1:9470/api/v1/write \
//!     --series 10000 --batch 2000 --concurrency 4 --duration 60s --rate 0 --json
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use presage_benches::loadgen::{self, Options, Target};

/// Ingest load generator for Presage (and any Prometheus remote_write or OTLP receiver).
#[derive(Debug, Parser)]
#[command(name = "presage-loadgen", version)]
struct Cli {
    /// Protocol to send.
    #[arg(long, value_enum, default_value = "remote-write")]
    target: Target,
    /// Endpoint. Defaults to Presage's: http://127.0.0.1:9470/api/v1/write (remote-write),
    /// http://127.0.0.1:4317 (otlp-grpc), http://127.0.0.1:4318/v1/metrics (otlp-http).
    #[arg(long)]
    url: Option<String>,
    /// Distinct series (about 250 per simulated host, ~50 metric names, ~7 labels each).
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Samples per request (one per series).
    #[arg(long, default_value_t = 2_000)]
    batch: usize,
    /// Concurrent senders, each with one request in flight and its own share of the series.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// How long to send, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Samples per second over all senders; 0 = as fast as the target accepts.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Event-time spacing between successive samples of one series, in milliseconds.
    #[arg(long, default_value_t = 15_000)]
    step_ms: i64,
    /// How far in the past the first samples are stamped; the virtual clock then advances by
    /// --step-ms per round and is capped at the wall clock.
    #[arg(long, default_value = "6h", value_parser = humantime::parse_duration)]
    start_ago: Duration,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Async runtime worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Also print the report as one JSON object on stdout (the summary goes to stderr).
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("presage-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let opts = Options {
        url: cli
            .url
            .clone()
            .unwrap_or_else(|| cli.target.default_url().to_string()),
        target: cli.target,
        series: cli.series,
        batch: cli.batch,
        concurrency: cli.concurrency,
        duration: cli.duration,
        rate: cli.rate,
        step_ms: cli.step_ms,
        start_ago: cli.start_ago,
        timeout: cli.timeout,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = cli.threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = builder.build().context("cannot start the async runtime")?;
    let report = runtime.block_on(loadgen::run(&opts))?;
    if cli.json {
        eprintln!("{}", report.summary());
        println!(
            "{}",
            serde_json::to_string(&report).context("cannot serialise the report")?
        );
    } else {
        println!("{}", report.summary());
    }
    Ok(if report.requests_ok == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

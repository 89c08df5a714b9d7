//! `presage`: the forecaster daemon and its tools.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presage_config::{EXIT_INVALID_CONFIG, Error as ConfigError, ForecasterConfig};
use presage_forecaster::app::Clock;
use presage_forecaster::server::{Running, termination_signal};

/// Presage: seasonal baselines, anomaly detection and ahead-of-time breach alerts for metrics
/// and logs sent over OTLP or Prometheus remote_write.
#[derive(Debug, Parser)]
#[command(name = "presage", version, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info`, `presage_forecaster=debug`. Overrides RUST_LOG.
    #[arg(long, global = true, env = "PRESAGE_LOG", value_name = "FILTER")]
    log: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the forecaster daemon. Without --config it runs on embedded defaults: OTLP/gRPC on
    /// 127.0.0.1:4317, OTLP/HTTP on 127.0.0.1:4318, API, remote_write and /metrics on
    /// 127.0.0.1:9470.
    Serve {
        /// Configuration file (TOML). Every key is optional.
        #[arg(long, short, value_name = "FILE", env = "PRESAGE_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file: print every problem with its line and column and exit
    /// 64, or exit 0 when it is valid.
    CheckConfig {
        /// The file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn init_tracing(filter: Option<&str>) {
    let filter = filter
        .map(tracing_subscriber::EnvFilter::new)
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn load_config(path: Option<&PathBuf>) -> Result<ForecasterConfig, ExitCode> {
    let Some(path) = path else {
        return Ok(ForecasterConfig::default());
    };
    ForecasterConfig::from_file(path).map_err(|e| {
        eprintln!("{e}");
        match e {
            ConfigError::Invalid(errors) => {
                eprintln!(
                    "{} problem(s) in {}; the daemon did not start",
                    errors.problems.len(),
                    path.display()
                );
                ExitCode::from(EXIT_INVALID_CONFIG as u8)
            }
            ConfigError::Read { .. } => ExitCode::from(EXIT_INVALID_CONFIG as u8),
        }
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match load_config(Some(&file)) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Serve { config } => {
            init_tracing(cli.log.as_deref());
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = runtime.block_on(async {
                let running = Running::start(config, Clock::System).await?;
                running.run_until(termination_signal()).await
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e:#}");
                    eprintln!("presage: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

//! `presage`: the forecaster daemon and its tools.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presage_config::{EXIT_INVALID_CONFIG, Error as ConfigError, ForecasterConfig};
use presage_forecaster::app::Clock;
use presage_forecaster::backtest;
use presage_forecaster::server::{Running, termination_signal};

// Ingest allocates many small, short-lived strings (labels) on several threads; glibc's malloc
// spent about half the daemon's CPU on them and held on to freed fit buffers. mimalloc roughly
// doubled the sustained remote_write rate (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run the detector offline over `timestamp,value` CSV files and write NAB result rows
    /// (`timestamp,value,anomaly_score,label`). Uses the same store, models and scoring as the
    /// daemon; a row's score depends only on that row and the rows before it.
    Backtest {
        /// One input file.
        #[arg(
            long,
            value_name = "FILE.csv",
            conflicts_with = "input_dir",
            required_unless_present = "input_dir"
        )]
        input: Option<PathBuf>,
        /// Where to write its results.
        #[arg(long, value_name = "FILE.csv", requires = "input")]
        output: Option<PathBuf>,
        /// A folder of CSV files (searched recursively, e.g. a NAB `data/` folder).
        #[arg(long, value_name = "DIR", requires = "output_dir")]
        input_dir: Option<PathBuf>,
        /// Where to write results, mirroring the input folder; files are named
        /// `presage_<name>.csv` as the NAB scorer expects.
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
        /// Configuration whose `[model]` settings to use (the step is taken from each file).
        #[arg(long, short, value_name = "FILE")]
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

fn backtest_file(input: &Path, output: &Path, config: &ForecasterConfig) -> anyhow::Result<()> {
    let rows = backtest::read_csv(input)?;
    let scores = backtest::score_rows(&rows, config)
        .map_err(|e| e.context(format!("{}", input.display())))?;
    backtest::write_results(output, &rows, &scores)
}

fn backtest_dir(dir: &Path, out: Option<&Path>, config: &ForecasterConfig) -> anyhow::Result<()> {
    let out = out.ok_or_else(|| anyhow::anyhow!("--output-dir is required with --input-dir"))?;
    let files = backtest::csv_files(dir)?;
    if files.is_empty() {
        anyhow::bail!("no .csv files under {}", dir.display());
    }
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files, {elapsed} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    for rel in &files {
        bar.set_message(rel.display().to_string());
        let name = rel
            .file_name()
            .map(|n| format!("presage_{}", n.to_string_lossy()))
            .unwrap_or_default();
        let target = out.join(rel.parent().unwrap_or(Path::new(""))).join(name);
        backtest_file(&dir.join(rel), &target, config)?;
        bar.inc(1);
    }
    bar.finish_with_message("done");
    Ok(())
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
        Command::Backtest {
            input,
            output,
            input_dir,
            output_dir,
            config,
        } => {
            let config = match load_config(config.as_ref()) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let result = match (input, input_dir) {
                (Some(input), _) => {
                    let output = output.unwrap_or_else(|| input.with_extension("scores.csv"));
                    backtest_file(&input, &output, &config)
                }
                (None, Some(dir)) => backtest_dir(&dir, output_dir.as_deref(), &config),
                (None, None) => Err(anyhow::anyhow!("--input or --input-dir is required")),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("presage backtest: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
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

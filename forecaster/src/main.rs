//! `presage`: the forecaster daemon and its tools.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use presage_config::{EXIT_INVALID_CONFIG, Error as ConfigError, ForecasterConfig};
use presage_forecaster::app::Clock;
use presage_forecaster::server::{Running, termination_signal};
use presage_forecaster::{backfill, backtest, demo, parquet};

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
    /// A first run: the daemon on loopback, fed a built-in scenario, printing alerts as they fire.
    ///
    /// Starts the forecaster with its defaults (OTLP/gRPC 127.0.0.1:4317, OTLP/HTTP
    /// 127.0.0.1:4318, API and web UI on http://127.0.0.1:9470/; a busy port is replaced by a
    /// free one and the real URL printed), state in a temporary folder, the built-in rules and a
    /// console receiver. It then replays a few days of a checkout service: request rate and p99
    /// latency with a daily cycle, a /var file system filling, a worker's memory leak and the
    /// service's logs, sent through remote_write and OTLP with their own timestamps. The last
    /// hours are paced so the alerts (DiskWillFill with its ETA, MemoryWillExhaust, an anomaly
    /// on the latency spike) print one after the other within about a minute, each with its
    /// explanation and suggestion. Then it keeps serving until Ctrl-C. Nothing listens beyond
    /// loopback.
    #[command(after_help = "Example: presage demo --http 127.0.0.1:9999 --pace 30s")]
    Demo {
        /// Address of the API, web UI, remote_write and /metrics (loopback only).
        #[arg(long, value_name = "ADDR")]
        http: Option<SocketAddr>,
        /// Address of OTLP/gRPC (loopback only).
        #[arg(long, value_name = "ADDR")]
        otlp_grpc: Option<SocketAddr>,
        /// Address of OTLP/HTTP (loopback only).
        #[arg(long, value_name = "ADDR")]
        otlp_http: Option<SocketAddr>,
        /// Keep the daemon's state here instead of a temporary folder removed on exit.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// Days of history replayed before the live part (1 to 13).
        #[arg(long, value_name = "DAYS", default_value_t = 3)]
        days: u32,
        /// Wall time over which the scenario's last 3 hours are replayed.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
        pace: std::time::Duration,
        /// Exit once the scenario is over instead of serving until Ctrl-C.
        #[arg(long)]
        exit_after_scenario: bool,
        /// Also start presage-agent (if it sits beside this binary) to collect this host.
        #[arg(long)]
        agent: bool,
    },
    /// Run the detector offline over `timestamp,value` CSV files and write NAB result rows
    /// (`timestamp,value,anomaly_score,label`); or, with --rules and --history, replay Parquet
    /// history through the alerting rules and report when each would have fired.
    ///
    /// Both use the same store, models and scoring as the daemon, in event time; a row's score
    /// depends only on that row and the rows before it. With --rules, the `[[rules]]` (plus the
    /// built-in rules unless `alerting.default_rules = false`) and `[model]` settings of the
    /// configuration are evaluated by the daemon's rule engine over the history `presage
    /// export` wrote; nothing is sent to receivers. For each rule it prints how many times it
    /// fired and, for each firing, its start, its end (or "still firing"), its labels and the
    /// first line of its explanation. Exit status: 0 after a report, 1 when the history
    /// cannot be read, 2 for invalid arguments, 64 for an invalid configuration.
    #[command(
        after_help = "Examples:\n  presage backtest --input-dir nab/data --output-dir results/\n  presage backtest --rules presage.toml --history history/ --format json"
    )]
    Backtest {
        /// One input file.
        #[arg(
            long,
            value_name = "FILE.csv",
            conflicts_with = "input_dir",
            required_unless_present_any = ["input_dir", "rules"]
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
        /// Configuration whose rules and model settings to backtest against --history.
        #[arg(
            long,
            value_name = "CONFIG",
            requires = "history",
            conflicts_with_all = ["input", "input_dir", "output", "output_dir", "config"]
        )]
        rules: Option<PathBuf>,
        /// Folder of Parquet history, as `presage export` writes it.
        #[arg(long, value_name = "DIR", requires = "rules")]
        history: Option<PathBuf>,
        /// Report format of --rules.
        #[arg(long, value_enum, value_name = "FORMAT", requires = "rules")]
        format: Option<ReportFormat>,
    },
    /// Pull history from Prometheus into a running daemon, so its baselines are ready now.
    ///
    /// Lists the series the selectors match (`/api/v1/series`), pulls each one's history
    /// through `/api/v1/query_range` in chunks of at most 10,000 steps, several series at once,
    /// and posts it to the daemon's remote_write endpoint (`<--to>/api/v1/write`). Run it before
    /// live data for the same series flows: a series keeps its newest data, and older samples
    /// sent after it are refused as out of order. The range and step default to the daemon's
    /// storage.retention and model.step. Exit status: 0 when every series was written, 1 when a
    /// series failed, nothing matched, or Prometheus or the daemon could not be reached, 2 for
    /// invalid arguments, 64 for an invalid --config.
    #[command(
        after_help = "Example: presage backfill --prometheus http://127.0.0.1:9090 --match 'node_load1' --match 'node_filesystem_avail_bytes{fstype!=\"tmpfs\"}' --range 14d"
    )]
    Backfill {
        /// Base URL of the Prometheus server (`http://prometheus:9090`).
        #[arg(
            long,
            value_name = "URL",
            value_parser = backfill::parse_base_url,
            required_unless_present = "config",
            requires = "selectors"
        )]
        prometheus: Option<backfill::Url>,
        /// Series selector (`node_load1{job="node"}`); repeat for more.
        #[arg(long = "match", value_name = "SELECTOR", value_parser = backfill::parse_selector, requires = "prometheus")]
        selectors: Vec<String>,
        /// History pulled, back from now (`14d`). Default: the daemon's storage.retention.
        #[arg(long, value_name = "DURATION", value_parser = backfill::parse_duration)]
        range: Option<std::time::Duration>,
        /// Resolution of the pulled history (`1m`). Default: the daemon's model.step.
        #[arg(long, value_name = "DURATION", value_parser = backfill::parse_duration)]
        step: Option<std::time::Duration>,
        /// The daemon's HTTP address. Default: http://<server.http> of --config, else
        /// http://127.0.0.1:9470.
        #[arg(long, value_name = "URL", value_parser = backfill::parse_base_url)]
        to: Option<backfill::Url>,
        /// Series pulled at once (1 to 64).
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Retries of a request that timed out or failed with 408, 429 or 5xx.
        #[arg(long, value_name = "N", default_value_t = backfill::DEFAULT_RETRIES)]
        retries: u32,
        /// How long one HTTP request may take.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = backfill::parse_duration)]
        timeout: std::time::Duration,
        /// The daemon's configuration: its server.http is the default --to, and without
        /// --prometheus its [[backfill]] entries are pulled.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write a running daemon's history as Parquet files: one folder per metric, one file per
    /// UTC day (`DIR/<metric>/<YYYY-MM-DD>.parquet`).
    ///
    /// Columns: `timestamp` (datetime, ms, UTC), `value` (double), `__name__` and one string
    /// column per label name of the metric (null where a series lacks it); rows sorted by
    /// series, then time. The values are the daemon's resampled steps, bit for bit (counters
    /// and deltas as per-second rates); steps without data are left out. pyarrow, polars and
    /// DuckDB read the folder as a dataset; `presage import` reads it back. Exit status: 0 when
    /// history was written, 1 when nothing matched or the daemon could not be reached or
    /// refused, 2 for invalid arguments.
    #[command(
        after_help = "Example: presage export --format parquet --out history/ --match 'node_load1' --match '{job=\"node\"}'"
    )]
    Export {
        /// File format.
        #[arg(long, value_enum, default_value = "parquet")]
        format: ExportFormat,
        /// Folder to write; created if missing, and must be empty if it exists.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The daemon's HTTP address.
        #[arg(long, value_name = "URL", value_parser = backfill::parse_base_url, default_value = "http://127.0.0.1:9470")]
        from: backfill::Url,
        /// Series selector (`node_load1{job="node"}`); repeat for more. Default: every series.
        #[arg(long = "match", value_name = "SELECTOR", value_parser = backfill::parse_selector)]
        selectors: Vec<String>,
        /// File holding the daemon's API token, when it requires one.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// Retries of a request that timed out or failed with 408, 429 or 5xx.
        #[arg(long, value_name = "N", default_value_t = backfill::DEFAULT_RETRIES)]
        retries: u32,
        /// How long one HTTP request may take.
        #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = backfill::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Send the history in a folder of Parquet files (as `presage export` writes them) to a
    /// running daemon.
    ///
    /// Every `.parquet` file under DIR is read (files of one folder are merged per series) and
    /// each series is posted to the daemon's remote_write endpoint as history, like `presage
    /// backfill` does: stored without scoring the past, then fitted once. Values are stored as
    /// they are in the files (as gauges). Run it before live data for the same series flows:
    /// older samples behind newer ones are refused as out of order. Samples older than the
    /// daemon's storage.retention are skipped. Exit status: 0 when every series was written,
    /// 1 when DIR or a file cannot be read (the file is named) or the daemon could not be
    /// reached or refused, 2 for invalid arguments.
    #[command(after_help = "Example: presage import history/ --to http://127.0.0.1:9470")]
    Import {
        /// Folder of Parquet files (searched recursively).
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// The daemon's HTTP address.
        #[arg(long, value_name = "URL", value_parser = backfill::parse_base_url, default_value = "http://127.0.0.1:9470")]
        to: backfill::Url,
        /// File holding the daemon's ingest token, when it requires one.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        /// File holding the daemon's API token (for /api/v1/status), when it requires one.
        #[arg(long, value_name = "FILE")]
        api_token_file: Option<PathBuf>,
        /// Series written at once (1 to 64).
        #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
        concurrency: u16,
        /// Retries of a request that timed out or failed with 408, 429 or 5xx.
        #[arg(long, value_name = "N", default_value_t = backfill::DEFAULT_RETRIES)]
        retries: u32,
        /// How long one HTTP request may take.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = backfill::parse_duration)]
        timeout: std::time::Duration,
    },
    /// Validate a configuration file: print every problem with its line and column and exit
    /// 64, or exit 0 when it is valid.
    CheckConfig {
        /// The file to check.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Report formats of `presage backtest --rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ReportFormat {
    /// For people.
    Text,
    /// One JSON document.
    Json,
}

/// `presage backtest --rules CONFIG --history DIR`.
fn backtest_rules(rules: &Path, history: &Path, format: ReportFormat) -> ExitCode {
    let config = match load_config(Some(&rules.to_path_buf())) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = backtest::read_history(history).and_then(|series| {
        let step = config.model.step;
        if let Some(found) = backtest::history_step(&series)
            && u128::try_from(found).ok() != Some(step.as_millis())
        {
            eprintln!(
                "presage backtest: the history's points are {found} ms apart but model.step is {}: the model sees the history resampled to its step",
                humantime::format_duration(step)
            );
        }
        backtest::backtest_rules(&config, series)
    });
    match result {
        Ok(report) => {
            match format {
                ReportFormat::Text => print!("{report}"),
                ReportFormat::Json => match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("presage backtest: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("presage backtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Formats of `presage export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// Apache Parquet.
    Parquet,
}

/// A token read from `--token-file`, or the exit code after saying why it could not be.
fn token(command: &str, file: Option<&PathBuf>) -> Result<Option<String>, ExitCode> {
    file.map(|f| parquet::read_token(f))
        .transpose()
        .map_err(|e| {
            eprintln!("presage {command}: {e:#}");
            ExitCode::from(2)
        })
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

fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo {
            http,
            otlp_grpc,
            otlp_http,
            data_dir,
            days,
            pace,
            exit_after_scenario,
            agent,
        } => {
            // The demo's output is the console receiver's: only warnings unless asked.
            let quiet = std::env::var_os("RUST_LOG").is_none();
            init_tracing(cli.log.as_deref().or(quiet.then_some("warn")));
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let options = demo::Options {
                http,
                otlp_grpc,
                otlp_http,
                data_dir,
                days,
                pace,
                exit_after_scenario,
                agent,
            };
            match runtime.block_on(demo::run(options)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("presage demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backfill {
            prometheus,
            selectors,
            range,
            step,
            to,
            concurrency,
            retries,
            timeout,
            config,
        } => {
            // Progress and the summary go to stderr; log events only when they matter.
            let quiet = std::env::var_os("RUST_LOG").is_none();
            init_tracing(cli.log.as_deref().or(quiet.then_some("warn")));
            let file = match config.as_ref().map(|c| load_config(Some(c))).transpose() {
                Ok(f) => f,
                Err(code) => return code,
            };
            let entries = file
                .as_ref()
                .map(|f| f.backfill.clone())
                .unwrap_or_default();
            if prometheus.is_none() && entries.is_empty() {
                eprintln!(
                    "presage backfill: {} has no [[backfill]] entries; pass --prometheus and --match",
                    config
                        .as_ref()
                        .map_or_else(String::new, |c| c.display().to_string())
                );
                return ExitCode::from(EXIT_INVALID_CONFIG as u8);
            }
            let to = backfill::target(to, file.as_ref());
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let cmd = backfill::Command {
                source: prometheus.map(|url| (url, selectors)),
                range,
                step,
                to,
                concurrency: usize::from(concurrency),
                retries,
                timeout,
                entries,
            };
            match runtime.block_on(backfill::command(cmd)) {
                Ok(summaries) if backfill::report(&summaries) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("presage backfill: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Export {
            format: ExportFormat::Parquet,
            out,
            from,
            selectors,
            token_file,
            retries,
            timeout,
        } => {
            let quiet = std::env::var_os("RUST_LOG").is_none();
            init_tracing(cli.log.as_deref().or(quiet.then_some("warn")));
            let token = match token("export", token_file.as_ref()) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let cmd = parquet::ExportCommand {
                from,
                selectors,
                out,
                token,
                retries,
                timeout,
                progress: backfill::Progress::Stderr,
            };
            match runtime.block_on(parquet::export(cmd)) {
                Ok(summary) if summary.written.series == 0 => {
                    eprintln!("presage export: {summary}");
                    eprintln!("presage export: no series with history match");
                    ExitCode::FAILURE
                }
                Ok(summary) => {
                    eprintln!("presage export: {summary}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("presage export: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Import {
            dir,
            to,
            token_file,
            api_token_file,
            concurrency,
            retries,
            timeout,
        } => {
            let quiet = std::env::var_os("RUST_LOG").is_none();
            init_tracing(cli.log.as_deref().or(quiet.then_some("warn")));
            let (token, api_token) = match (
                token("import", token_file.as_ref()),
                token("import", api_token_file.as_ref()),
            ) {
                (Ok(t), Ok(a)) => (t, a),
                (Err(code), _) | (_, Err(code)) => return code,
            };
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
            };
            let cmd = parquet::ImportCommand {
                dir,
                to,
                token,
                api_token,
                concurrency: usize::from(concurrency),
                retries,
                timeout,
                progress: backfill::Progress::Stderr,
            };
            match runtime.block_on(parquet::import(cmd)) {
                Ok(summary) => {
                    eprintln!("presage import: {summary}");
                    if summary.series == 0 {
                        eprintln!("presage import: the files hold no series");
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("presage import: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
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
            rules,
            history,
            format,
        } => {
            if let (Some(rules), Some(history)) = (rules.as_ref(), history.as_ref()) {
                return backtest_rules(rules, history, format.unwrap_or(ReportFormat::Text));
            }
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
            let runtime = match runtime() {
                Ok(rt) => rt,
                Err(code) => return code,
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

//! `presage-agent`: see the crate documentation and `presage-agent --help`.

use std::process::ExitCode;

use clap::Parser;
use presage_agent::cli::{self, Cli, Command};

/// `EX_USAGE` from sysexits.h: the configuration is invalid.
const EXIT_INVALID_CONFIG: u8 = 64;

fn init_tracing() {
    let level = std::env::var("PRESAGE_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let args = Cli::parse();
    init_tracing();
    if let Some(Command::CheckConfig { file }) = &args.command {
        return match cli::load_file(file) {
            Ok(_) => {
                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_INVALID_CONFIG)
            }
        };
    }
    let cfg = match cli::config(&args.run) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_INVALID_CONFIG);
        }
    };
    // One thread: the agent's work is a few reads and one request per interval.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .thread_keep_alive(std::time::Duration::from_secs(120))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match presage_agent::start(cfg).await {
            Ok(running) => {
                running.run_until(presage_agent::termination_signal()).await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

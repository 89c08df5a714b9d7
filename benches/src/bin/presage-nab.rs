//! Scores `presage backtest` results against the Numenta Anomaly Benchmark labels.
//!
//! ```sh
//! presage backtest --input-dir ../shared/datasets/NAB/data --output-dir target/nab
//! presage-nab --labels ../shared/datasets/NAB/labels/combined_windows.json --results target/nab
//! ```

use std::path::PathBuf;

use clap::Parser;
use presage_benches::nab;

/// Score detector results with NAB's method (standard, low-FP and low-FN profiles).
#[derive(Debug, Parser)]
struct Args {
    /// NAB's `combined_windows.json`.
    #[arg(long)]
    labels: PathBuf,
    /// Folder of result files, laid out like NAB's `data/` folder.
    #[arg(long)]
    results: PathBuf,
    /// Prefix of result file names.
    #[arg(long, default_value = "presage_")]
    prefix: String,
    /// Also print each file's standard-profile contribution at the standard threshold.
    #[arg(long)]
    per_file: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let files = nab::load(&args.labels, &args.results, &args.prefix)?;
    let windows: usize = files.iter().map(|f| f.windows.len()).sum();
    println!("{} files, {} windows", files.len(), windows);
    println!("{:<20} {:>9} {:>7}", "profile", "threshold", "score");
    let mut standard_threshold = 1.01;
    for p in nab::PROFILES {
        let (t, s) = nab::optimise(&files, &p);
        if p.name == "standard" {
            standard_threshold = t;
        }
        println!("{:<20} {:>9.4} {:>7.1}", p.name, t, s);
    }
    if args.per_file {
        for f in &files {
            let (raw, null, perfect) = nab::file_score(f, standard_threshold, &nab::PROFILES[0]);
            println!(
                "{:<60} raw {raw:>7.3} null {null:>5.1} perfect {perfect:>5.2}",
                f.name
            );
        }
    }
    Ok(())
}

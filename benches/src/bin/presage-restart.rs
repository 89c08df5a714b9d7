//! Restart-to-ready and bytes on disk per sample.
//!
//! Builds a store of `--series` series with `--days` of one-minute history (fitted with
//! `--fit`), writes it to a durable store with one checkpoint, closes it, then times what a
//! restart does: opening the store and loading every series, its history and its model. Prints
//! one line of figures per phase.
//!
//! ```text
//! cargo run --release -p presage-benches --bin presage-restart -- --series 10000 --days 14 --fit
//! ```

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Parser;
use parking_lot::Mutex;
use presage_config::{ForecasterConfig, FsyncPolicy};
use presage_forecaster::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};
use presage_forecaster::store::{Durable, FitJob, Selector, Store};

#[derive(Debug, Parser)]
#[command(about = "Restart-to-ready time and bytes on disk of the durable store")]
struct Args {
    /// Series to build.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Days of one-minute history per series.
    #[arg(long, default_value_t = 14)]
    days: u32,
    /// Fit every series before the checkpoint (otherwise history only).
    #[arg(long)]
    fit: bool,
    /// Threads that build and fit.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Where the store is written (a temporary directory by default; it is removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Only time the restart of the store a previous run left in `--dir`.
    #[arg(long, requires = "dir")]
    restart_only: bool,
}

const STEP_MS: i64 = 60_000;
const SERIES_PER_BATCH: usize = 50;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let steps = args.days as usize * 1440;
    let mut cfg = ForecasterConfig::default();
    cfg.limits.max_series = args.series + 1;
    cfg.storage.retention = Duration::from_secs(u64::from(args.days + 1) * 86_400);
    let start = (now - (steps as i64 + 2) * STEP_MS) / STEP_MS * STEP_MS;
    let tmp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf())
        .join("db");
    if !args.restart_only {
        build(&args, &cfg, &dir, now, start, steps)?;
    }
    restart(&args, &cfg, &dir, now, steps)
}

/// Builds the history (and fits), writes it with one checkpoint and reports the bytes on disk.
fn build(
    args: &Args,
    cfg: &ForecasterConfig,
    dir: &std::path::Path,
    now: i64,
    start: i64,
    steps: usize,
) -> anyhow::Result<()> {
    // Build: history as a backfill stores it (one catch-up fit per series is due after).
    let store = Store::new(cfg);
    let jobs = Mutex::new(Vec::<FitJob>::new());
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| {
                loop {
                    let first = next.fetch_add(SERIES_PER_BATCH, Ordering::Relaxed);
                    if first >= args.series {
                        return;
                    }
                    let mut batch = WriteBatch::default();
                    for i in first..(first + SERIES_PER_BATCH).min(args.series) {
                        batch.series.push(series(i, start, steps));
                    }
                    let out = store.write_history(batch, now);
                    jobs.lock().extend(out.fit_jobs);
                }
            });
        }
    });
    let samples = args.series as u64 * steps as u64;
    let built = t.elapsed();
    println!(
        "build: {} series x {} steps = {samples} samples in {:.1}s ({:.0} samples/s)",
        args.series,
        steps,
        built.as_secs_f64(),
        samples as f64 / built.as_secs_f64()
    );

    if args.fit {
        let t = Instant::now();
        let fits = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..args.threads.max(1) {
                s.spawn(|| {
                    loop {
                        let Some(job) = jobs.lock().pop() else {
                            return;
                        };
                        let out = store.complete_fit(job);
                        fits.fetch_add(1, Ordering::Relaxed);
                        jobs.lock().extend(out.fit_jobs);
                    }
                });
            }
        });
        println!(
            "fit: {} fits in {:.1}s",
            fits.load(Ordering::Relaxed),
            t.elapsed().as_secs_f64()
        );
    }
    let memory = store.memory();
    println!(
        "memory: {:.0} bytes per series (history {:.0}, model {:.0})",
        (memory.history_bytes + memory.series_bytes + memory.index_bytes + memory.model_bytes)
            as f64
            / memory.series.max(1) as f64,
        memory.history_bytes as f64 / memory.series.max(1) as f64,
        memory.model_bytes as f64 / memory.series.max(1) as f64,
    );

    std::fs::create_dir_all(dir)?;
    {
        let db = Durable::open(dir, STEP_MS, FsyncPolicy::Always, Duration::from_secs(1))?;
        let t = Instant::now();
        let stats = store.checkpoint(&db, &[]).context("checkpoint")?;
        println!(
            "checkpoint: {} series, {} chunks, {} models, {} bytes in {:.1}s",
            stats.series,
            stats.chunks,
            stats.models,
            stats.bytes,
            t.elapsed().as_secs_f64()
        );
        db.close();
    }
    drop(store);
    let disk = du(dir)?;
    println!(
        "disk: {disk} bytes, {:.2} bytes per sample, {:.0} bytes per series",
        disk as f64 / samples as f64,
        disk as f64 / args.series as f64
    );
    Ok(())
}

/// Opens the store in `dir` and loads it, as a restart does.
fn restart(
    args: &Args,
    cfg: &ForecasterConfig,
    dir: &std::path::Path,
    now: i64,
    steps: usize,
) -> anyhow::Result<()> {
    let samples = args.series as u64 * steps as u64;
    let t = Instant::now();
    let db = Durable::open(dir, STEP_MS, FsyncPolicy::Always, Duration::from_secs(1))?;
    let store = Store::new(cfg).with_durable(&db);
    let (stats, out) = store.restore(&db, now).context("restore")?;
    let restored = t.elapsed();
    let all = Selector::parse(r#"{__name__=~".+"}"#).map_err(anyhow::Error::msg)?;
    let ready = store
        .select(&all, args.series)
        .iter()
        .filter(|s| {
            s.readiness
                .as_ref()
                .is_some_and(|r| r.state == presage_forecaster::model::ReadinessState::Ready)
        })
        .count();
    println!(
        "restart: {} series ({} with a model, {ready} ready), {} fits queued, in {:.2}s ({:.0} series/s, {:.0} samples/s)",
        stats.series,
        stats.models,
        out.fit_jobs.len(),
        restored.as_secs_f64(),
        stats.series as f64 / restored.as_secs_f64(),
        samples as f64 / restored.as_secs_f64()
    );
    db.close();
    Ok(())
}

/// Series `i`: a daily cycle with a per-series level, phase and noise, to two decimals (a CPU
/// percentage, a latency in ms).
fn series(i: usize, start: i64, steps: usize) -> SeriesWrite {
    let level = 20.0 + (i % 50) as f64;
    let phase = (i % 24) as f64 / 24.0 * std::f64::consts::TAU;
    let mut noise = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let points = (0..steps)
        .map(|k| {
            noise ^= noise << 13;
            noise ^= noise >> 7;
            noise ^= noise << 17;
            let n = (noise % 1000) as f64 / 1000.0 - 0.5;
            let day = (k as f64 / 1440.0 * std::f64::consts::TAU + phase).sin();
            let v = level + 10.0 * day + 3.0 * n;
            Point::new(start + k as i64 * STEP_MS, (v * 100.0).round() / 100.0)
        })
        .collect();
    SeriesWrite {
        labels: vec![
            ("__name__".into(), "bench_cpu_percent".into()),
            ("instance".into(), format!("host-{i:06}")),
            ("job".into(), "bench".into()),
        ],
        kind: ValueKind::Gauge,
        points,
    }
}

/// Bytes of the files under `dir`.
fn du(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            du(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

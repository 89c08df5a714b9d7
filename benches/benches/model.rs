//! Model costs: one fit of 14 days of history at 5-minute and 1-minute steps, scoring one
//! sample through the store (resampling, detector, score), and the memory a fitted series holds
//! (history plus model state).
//!
//! Run with `cargo bench -p presage-benches --bench model`. Besides criterion's figures it
//! prints the memory per fitted series, measured on a store of 10 series with 14 days of
//! 5-minute history each, fitted and scored as the daemon does, for values written at full
//! precision (kept exact, or to 7 significant digits), with two decimals and as integers.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use presage_config::ForecasterConfig;
use presage_forecaster::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};
use presage_forecaster::model::{ModelSettings, fit};
use presage_forecaster::store::Store;

const DAY_MS: i64 = 86_400_000;

/// A request-rate-like series: daily and weekly cycles, a slow trend, deterministic noise.
fn value(i: usize, step_ms: i64) -> f64 {
    let t = i as f64 * step_ms as f64 / DAY_MS as f64;
    let x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .rotate_left(21)
        >> 44;
    let noise = (x % 1000) as f64 / 1000.0 - 0.5;
    let weekend = if (t as usize) % 7 >= 5 { 0.7 } else { 1.0 };
    weekend * (200.0 + 80.0 * (t * std::f64::consts::TAU).sin()) + 0.5 * t + 10.0 * noise
}

fn history(step_ms: i64, days: i64) -> Vec<f64> {
    (0..(days * DAY_MS / step_ms) as usize)
        .map(|i| value(i, step_ms))
        .collect()
}

fn fits(c: &mut Criterion) {
    let mut g = c.benchmark_group("fit_14d");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    for (name, step_ms) in [("5min", 300_000), ("1min", 60_000)] {
        let settings = ModelSettings::for_step(step_ms);
        let y = history(step_ms, 14);
        let boundary = 1_700_000_000_000 / step_ms * step_ms;
        g.bench_function(name, |b| {
            b.iter(|| black_box(fit(black_box(&y), boundary, &settings)).is_ok())
        });
    }
    g.finish();
}

fn config(step: Duration) -> ForecasterConfig {
    let mut cfg = ForecasterConfig::default();
    cfg.model.step = step;
    cfg.storage.retention = Duration::from_secs(14 * 86_400);
    cfg
}

/// How values are written: as computed, or rounded as an exporter reporting decimals would;
/// or as computed, into a store that keeps this many significant digits
/// (`storage.significant_digits`).
#[derive(Clone, Copy)]
enum Precision {
    Full,
    Places(i32),
    StoredDigits(u8),
}

impl Precision {
    fn apply(self, v: f64) -> f64 {
        match self {
            Self::Full | Self::StoredDigits(_) => v,
            Self::Places(k) => {
                let p = 10f64.powi(k);
                (v * p).round() / p
            }
        }
    }
}

fn batch(
    series: usize,
    from: usize,
    to: usize,
    step_ms: i64,
    t0: i64,
    precision: Precision,
) -> WriteBatch {
    WriteBatch {
        series: (0..series)
            .map(|s| SeriesWrite {
                labels: vec![
                    ("__name__".into(), "http_requests_per_second".into()),
                    ("instance".into(), format!("web-{s}")),
                ],
                kind: ValueKind::Gauge,
                points: (from..to)
                    .map(|i| {
                        let v = precision.apply(value(i + s * 31, step_ms));
                        Point::new(t0 + i as i64 * step_ms, v)
                    })
                    .collect(),
            })
            .collect(),
        ..Default::default()
    }
}

/// A store of `series` fitted series with `days` of history, and the next slot index.
fn fitted_store(
    series: usize,
    days: i64,
    step_ms: i64,
    t0: i64,
    precision: Precision,
) -> (Store, usize) {
    let mut cfg = config(Duration::from_millis(step_ms as u64));
    if let Precision::StoredDigits(d) = precision {
        cfg.storage.significant_digits = d;
    }
    let store = Store::new(&cfg).with_inline_fits();
    let n = (days * DAY_MS / step_ms) as usize;
    let now = t0 + n as i64 * step_ms + step_ms;
    for from in (0..n).step_by(2_016) {
        let to = (from + 2_016).min(n);
        store.write(batch(series, from, to, step_ms, t0, precision), now);
    }
    (store, n)
}

fn scoring(c: &mut Criterion) {
    // One series, fitted on 14 days at 5 minutes; each iteration closes one step, which is
    // scored against the baseline (no refit falls inside a measurement: refits happen once
    // per hour of data, i.e. every 12 steps, and are part of the per-sample cost below).
    let step_ms = 300_000;
    let t0 = (1_700_000_000_000 - 30 * DAY_MS) / step_ms * step_ms;
    let (store, n) = fitted_store(1, 14, step_ms, t0, Precision::Full);
    let mut i = n;
    let mut g = c.benchmark_group("score");
    g.sample_size(30);
    g.bench_function("sample_5min_including_hourly_refits", |b| {
        b.iter_batched(
            || {
                i += 1;
                (
                    batch(1, i, i + 1, step_ms, t0, Precision::Full),
                    t0 + (i as i64 + 2) * step_ms,
                )
            },
            |(w, now)| black_box(store.write(w, now).scores.len()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn memory(_: &mut Criterion) {
    let step_ms = 300_000;
    let t0 = (1_700_000_000_000 - 30 * DAY_MS) / step_ms * step_ms;
    let series = 10;
    for (name, precision) in [
        ("full-precision values", Precision::Full),
        (
            "full-precision values, storage.significant_digits = 7",
            Precision::StoredDigits(7),
        ),
        ("values with two decimals", Precision::Places(2)),
        ("integer values", Precision::Places(0)),
    ] {
        let (store, _) = fitted_store(series, 14, step_ms, t0, precision);
        let m = store.memory();
        let per = |b: usize| b as f64 / m.series.max(1) as f64;
        println!(
            "memory per fitted series (5-minute step, 14 days, {} series, {name}): history {:.0} B, model {:.0} B, series record + index {:.0} B, total {:.0} B",
            m.series,
            per(m.history_bytes),
            per(m.model_bytes),
            per(m.series_bytes + m.index_bytes),
            per(m.history_bytes + m.model_bytes + m.series_bytes + m.index_bytes),
        );
    }
}

criterion_group!(benches, memory, fits, scoring);
criterion_main!(benches);

//! Inputs that break naive models, each through the daemon's own store and detector (fits run
//! inline, exactly as `presage backtest` runs them): nothing panics, readiness always says why,
//! and the scores mean what they should.

use std::collections::BTreeMap;

use presage_config::ForecasterConfig;
use presage_forecaster::detect::StepScore;
use presage_forecaster::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};
use presage_forecaster::model::ReadinessState;
use presage_forecaster::store::{Selector, SeriesInfo, Store};

const STEP: i64 = 60_000;
/// A fixed "now" well after every timestamp used, so nothing is refused as too new or too old.
const T0: i64 = 1_700_000_000_000 / STEP * STEP;

fn store() -> Store {
    let mut cfg = ForecasterConfig::default();
    cfg.storage.retention = std::time::Duration::from_secs(30 * 86_400);
    Store::new(&cfg).with_inline_fits()
}

/// Writes `points` as one series in chunks, as a client would, and returns every score.
fn feed(store: &Store, kind: ValueKind, points: &[(i64, f64)]) -> Vec<StepScore> {
    let now = points.last().map_or(T0, |p| p.0) + STEP;
    let mut scores = Vec::new();
    for chunk in points.chunks(240) {
        let out = store.write(
            WriteBatch {
                series: vec![SeriesWrite {
                    labels: vec![
                        ("__name__".into(), "edge".into()),
                        ("case".into(), "x".into()),
                    ],
                    kind,
                    points: chunk.iter().map(|&(t, v)| Point::new(t, v)).collect(),
                }],
                ..Default::default()
            },
            now,
        );
        assert_eq!(out.rejected_total(), 0, "{:?}", out.first_error);
        scores.extend(out.scores.into_iter().map(|(_, s)| s));
    }
    scores
}

fn info(store: &Store) -> SeriesInfo {
    let sel = Selector::parse("edge").unwrap();
    store.select(&sel, 10).pop().expect("the series exists")
}

fn noise(i: usize) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .rotate_left(17)
        >> 44;
    (x % 1000) as f64 / 1000.0 - 0.5
}

fn daily(i: usize) -> f64 {
    (i as f64 * std::f64::consts::TAU / 1440.0).sin()
}

fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<(i64, f64)> {
    (0..n).map(|i| (T0 + i as i64 * STEP, f(i))).collect()
}

fn max_score(scores: &[StepScore], from_ms: i64, to_ms: i64) -> f64 {
    scores
        .iter()
        .filter(|s| s.slot_ms >= from_ms && s.slot_ms < to_ms)
        .map(|s| s.score)
        .fold(0.0, f64::max)
}

fn slot(i: usize) -> i64 {
    T0 + i as i64 * STEP
}

#[test]
fn constant_series_is_ready_and_any_change_is_news() {
    let s = store();
    let mut pts = series(600, |_| 42.0);
    pts.push((slot(600), 43.0));
    // A step is scored once it is closed: by the first point of the next one.
    pts.push((slot(601), 42.0));
    let scores = feed(&s, ValueKind::Gauge, &pts);
    let i = info(&s);
    let r = i.readiness.expect("fitted");
    assert_eq!(r.state, ReadinessState::Ready, "{r:?}");
    assert!(r.reason.contains("constant"), "{}", r.reason);
    let last = scores.last().expect("scored");
    assert_eq!(last.slot_ms, slot(600));
    assert_eq!(last.value, 43.0);
    assert_eq!(last.direction, 1);
    assert!(last.score >= 0.5, "{last:?}");
}

#[test]
fn long_gaps_neither_panic_nor_fake_anomalies() {
    let s = store();
    // Two days of a daily cycle with a six-hour hole in the middle of the second day.
    let pts: Vec<(i64, f64)> = series(2 * 1440, |i| 100.0 + 20.0 * daily(i) + noise(i))
        .into_iter()
        .enumerate()
        .filter(|(i, _)| !(1440 + 600..1440 + 960).contains(i))
        .map(|(_, p)| p)
        .collect();
    let scores = feed(&s, ValueKind::Gauge, &pts);
    let i = info(&s);
    assert!(i.readiness.is_some_and(|r| !r.reason.is_empty()));
    // Scoring resumes after the hole, and nothing after it would page under the built-in
    // anomaly rule (a score of at least 0.6 while persistently outside the band).
    assert!(scores.iter().any(|x| x.slot_ms >= slot(1440 + 960)));
    let paging: Vec<&StepScore> = scores
        .iter()
        .filter(|x| x.slot_ms >= slot(1440 + 960) && x.score >= 0.6 && x.persistent)
        .collect();
    assert!(
        paging.is_empty(),
        "ordinary data after a gap would page: {paging:?}"
    );
}

#[test]
fn shorter_than_one_period_is_warming_with_the_reason() {
    let s = store();
    feed(
        &s,
        ValueKind::Gauge,
        &series(600, |i| 100.0 + 20.0 * daily(i) + noise(i)),
    );
    let r = info(&s).readiness.expect("a fallback model is fitted");
    assert_eq!(r.state, ReadinessState::Warming, "{r:?}");
    assert!(r.reason.contains("48h"), "{}", r.reason);
}

#[test]
fn huge_magnitudes_keep_their_precision() {
    let s = store();
    // A byte counter's level (1e15) with a daily swing of 1e9 and noise of 1e6: f32 alone has a
    // resolution of about 1e8 at this level, so the band is kept relative to the series' level.
    let mut pts = series(3 * 1440, |i| 1e15 + 1e9 * daily(i) + 1e6 * noise(i));
    pts[2 * 1440 + 700].1 += 5e8;
    let scores = feed(&s, ValueKind::Gauge, &pts);
    let r = info(&s).readiness.unwrap();
    assert_eq!(r.state, ReadinessState::Ready, "{r:?}");
    let spike = slot(2 * 1440 + 700);
    let normal = max_score(&scores, slot(2 * 1440), spike);
    let at_spike = max_score(&scores, spike, spike + STEP);
    // The spike is the rarest step of the day; ordinary ones stay well below it.
    assert!(at_spike >= 0.45, "the spike scored {at_spike}");
    assert!(
        normal < at_spike - 0.1,
        "ordinary steps scored {normal}, the spike {at_spike}"
    );
}

#[test]
fn step_change_is_flagged_then_learned() {
    let s = store();
    let pts = series(3 * 1440, |i| {
        let level = if i >= 2 * 1440 { 300.0 } else { 100.0 };
        level + 2.0 * noise(i)
    });
    let scores = feed(&s, ValueKind::Gauge, &pts);
    let shift = slot(2 * 1440);
    let first = scores
        .iter()
        .find(|x| x.slot_ms == shift)
        .expect("the shift's step is scored");
    assert!(first.score >= 0.5 && first.direction == 1, "{first:?}");
    // Half a day later the new level is the baseline.
    let late = scores.last().unwrap();
    assert!(late.score < 0.5 && late.direction == 0, "{late:?}");
}

#[test]
fn counter_resets_are_not_anomalies() {
    let s = store();
    // 10 per second with a little jitter, reset to zero twice (restarts).
    let mut total = 0.0;
    let pts: Vec<(i64, f64)> = (0..2 * 1440)
        .map(|i| {
            if i == 1440 + 100 || i == 1440 + 700 {
                total = 0.0;
            }
            total += 600.0 + 30.0 * noise(i);
            (slot(i), total)
        })
        .collect();
    let scores = feed(&s, ValueKind::Counter, &pts);
    let i = info(&s);
    assert_eq!(i.kind, "counter");
    let history_max = scores.iter().map(|x| x.value).fold(0.0, f64::max);
    assert!(
        history_max < 12.0,
        "a reset produced a rate of {history_max}/s"
    );
    let around = max_score(&scores, slot(1440 + 95), slot(1440 + 110)).max(max_score(
        &scores,
        slot(1440 + 695),
        slot(1440 + 710),
    ));
    assert!(around < 0.5, "a reset scored {around}");
}

#[test]
fn irregular_sampling_is_resampled_to_the_step() {
    let s = store();
    // Scrapes every 20 to 100 seconds: some steps get several points, some none.
    let mut pts = Vec::new();
    let mut t = T0;
    let mut i = 0usize;
    while t < T0 + 2 * 86_400_000 {
        let minute = ((t - T0) / STEP) as usize;
        pts.push((t, 50.0 + 10.0 * daily(minute) + noise(i)));
        t += 20_000 + (noise(i * 7) + 0.5) as i64 * 80_000;
        t += ((noise(i * 13) + 0.5) * 80_000.0) as i64;
        i += 1;
    }
    let scores = feed(&s, ValueKind::Gauge, &pts);
    let info = info(&s);
    assert!(
        info.readiness
            .is_some_and(|r| r.state != ReadinessState::Cold)
    );
    assert!(info.steps > 2_000, "{} steps", info.steps);
    let high = scores.iter().filter(|x| x.score >= 0.5).count();
    assert!(
        high * 100 < scores.len(),
        "{high} of {} ordinary steps scored ≥ 0.5",
        scores.len()
    );
    // The labels are kept as sent.
    let want: BTreeMap<String, String> = [("__name__", "edge"), ("case", "x")]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(info.labels, want);
}

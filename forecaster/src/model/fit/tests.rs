use super::*;

const STEP: i64 = 300_000; // 5 minutes: 288 steps a day
const DAY: usize = 288;

fn settings() -> ModelSettings {
    ModelSettings::for_step(STEP)
}

fn noise(i: usize) -> f64 {
    let x = (i as u64)
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5
}

fn daily(i: usize) -> f64 {
    100.0 + 40.0 * (2.0 * std::f64::consts::PI * i as f64 / DAY as f64).sin() + noise(i) * 4.0
}

#[test]
fn cold_until_enough_points() {
    let err = fit(&[1.0; 10], 0, &settings()).unwrap_err();
    assert_eq!(err.state, ReadinessState::Cold);
    assert!(err.reason.contains("10 of the 30"), "{}", err.reason);
    let err = fit(&[f64::NAN; 100], 0, &settings()).unwrap_err();
    assert_eq!(err.state, ReadinessState::Cold);
}

#[test]
fn constant_series_has_a_tight_band() {
    let b = fit(&[5.0; 100], 100 * STEP, &settings()).unwrap();
    assert_eq!(b.method, Method::Constant);
    assert_eq!(b.readiness.state, ReadinessState::Ready);
    let p = b.at(100 * STEP).unwrap();
    assert_eq!(p.expected, 5.0);
    assert!(p.upper - p.lower < 1e-4);
}

#[test]
fn seasonal_series_forecasts_the_next_hours() {
    let n = DAY * 7;
    let y: Vec<f64> = (0..n).map(daily).collect();
    let boundary = n as i64 * STEP;
    let b = fit(&y, boundary, &settings()).unwrap();
    assert_eq!(b.method, Method::Mstl, "{:?}", b.readiness);
    assert_eq!(b.periods, vec![288]);
    assert_eq!(b.readiness.state, ReadinessState::Ready);
    assert!(
        b.readiness.reason.contains("daily"),
        "{}",
        b.readiness.reason
    );
    // Over the 6h forward path the expected value follows the cycle: within 4 (the noise is
    // uniform in ±2, and the model's error adds a little) of the noiseless truth.
    for k in 0..settings().horizon_steps {
        let truth = 100.0 + 40.0 * (2.0 * std::f64::consts::PI * (n + k) as f64 / DAY as f64).sin();
        let p = b.at(boundary + k as i64 * STEP).unwrap();
        assert!(
            (p.expected - truth).abs() < 4.0,
            "step {k}: {} vs {truth}",
            p.expected
        );
        assert!(p.lower < p.expected && p.expected < p.upper);
    }
    assert!(
        b.residual_scale > 0.5 && b.residual_scale < 3.0,
        "{}",
        b.residual_scale
    );
    assert!(b.memory_bytes() < 2048, "{}", b.memory_bytes());
}

#[test]
fn short_history_is_warming_with_a_reason() {
    let y: Vec<f64> = (0..100).map(daily).collect();
    let b = fit(&y, 100 * STEP, &settings()).unwrap();
    assert_eq!(b.readiness.state, ReadinessState::Warming);
    assert!(b.readiness.reason.contains("48h"), "{}", b.readiness.reason);
    assert!(matches!(b.method, Method::Ets | Method::RobustRolling));
}

#[test]
fn huge_magnitudes_keep_their_precision() {
    // A byte counter around 5e12 with a small daily swing: f32 inside MSTL would lose it
    // without normalisation.
    let n = DAY * 4;
    let y: Vec<f64> = (0..n).map(|i| 5e12 + daily(i) * 1e3).collect();
    let boundary = n as i64 * STEP;
    let b = fit(&y, boundary, &settings()).unwrap();
    let p = b.at(boundary).unwrap();
    let truth = 5e12 + 100e3 + 40e3 * (2.0 * std::f64::consts::PI * n as f64 / DAY as f64).sin();
    // The path is stored as f32 offsets from the series' level: the variation keeps its
    // precision (f32 alone would know 5e12 only to about 5e5).
    assert!(
        (p.expected - truth).abs() < 1e4,
        "{} vs {truth}",
        p.expected
    );
}

#[test]
fn gaps_and_step_changes_do_not_break_the_fit() {
    let mut y: Vec<f64> = (0..DAY * 3).map(daily).collect();
    for v in &mut y[300..400] {
        *v = f64::NAN;
    }
    for v in &mut y[600..] {
        *v += 500.0;
    }
    let b = fit(&y, y.len() as i64 * STEP, &settings()).unwrap();
    assert!(
        b.points()
            .all(|(_, p)| p.expected.is_finite() && p.lower <= p.upper)
    );
    // Mostly empty windows are flagged.
    let mut sparse = vec![f64::NAN; 400];
    for i in (0..400).step_by(5) {
        sparse[i] = 1.0 + noise(i);
    }
    let b = fit(&sparse, 400 * STEP, &settings()).unwrap();
    assert_eq!(b.readiness.state, ReadinessState::Warming);
    assert!(
        b.readiness.reason.contains("no data"),
        "{}",
        b.readiness.reason
    );
}

#[test]
fn interpolation_fills_interior_and_trailing_gaps() {
    let y = interpolate(&[1.0, f64::NAN, 3.0, f64::NAN, f64::NAN]);
    assert_eq!(y, vec![1.0, 2.0, 3.0, 3.0, 3.0]);
}

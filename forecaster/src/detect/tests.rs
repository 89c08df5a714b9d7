use super::*;
use crate::model::{BandPoint, Method, Readiness, ReadinessState};

#[test]
fn calibration_is_monotonic_and_does_not_saturate() {
    assert!((calibrate(CALIBRATION_HALF) - 0.5).abs() < 1e-12);
    let mut prev = -1.0;
    for z in [0.0, 1.0, 3.0, 6.0, 10.0, 29.9, 30.1, 100.0, 1e4] {
        let s = calibrate(neg_log10_sf(z));
        assert!(s > prev && s < 1.0, "z {z}: {s}");
        prev = s;
    }
    // Continuous across the switch to the asymptotic formula.
    assert!((neg_log10_sf(29.999) - neg_log10_sf(30.001)).abs() < 0.1);
}

#[test]
fn a_young_memory_is_stretched_toward_a_full_one_but_not_past_it() {
    let full = (LONG_WINDOW + 1.0).log10();
    assert!((young_stretch(LONG_WINDOW) - 1.0).abs() < 1e-12);
    let mut prev = f64::INFINITY;
    for total in [0.0, 10.0, 50.0, 100.0, 500.0, 1_000.0, 1_999.0, LONG_WINDOW] {
        let s = young_stretch(total);
        assert!((1.0..=prev).contains(&s), "{total}: {s}");
        // A record in a young memory stays below a record in a full one.
        assert!(s * (total + 1.0).log10() <= full + 1e-12, "{total}: {s}");
        prev = s;
    }
    // The decayed total after n values: the stretch fades as the memory fills.
    let total_after = |n: i32| LONG_WINDOW * (1.0 - (1.0 - 1.0 / LONG_WINDOW).powi(n));
    for (n, most) in [(1_000, 1.09), (2_000, 1.04), (5_000, 1.01)] {
        let s = young_stretch(total_after(n));
        assert!(s > 1.0 && s < most, "{n}: {s}");
    }
}

/// A flat baseline at 0 with unit residual scale, long enough for `steps` steps.
fn flat_baseline(steps: usize) -> Baseline {
    let z = probit(0.975);
    Baseline {
        method: Method::RobustRolling,
        periods: Vec::new(),
        start_ms: 0,
        step_ms: 1,
        offset: 0.0,
        path: vec![
            BandPoint {
                expected: 0.0,
                lower: -z as f32,
                upper: z as f32,
            };
            steps
        ]
        .into_boxed_slice(),
        residual_scale: 1.0,
        trend: None,
        readiness: Readiness {
            state: ReadinessState::Ready,
            reason: String::new(),
        },
        points: steps,
    }
}

/// Deterministic standard-normal-ish noise (sum of 12 uniforms minus 6).
fn noise(n: usize) -> Vec<f64> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..n)
        .map(|_| {
            (0..12)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    (x >> 11) as f64 / (1u64 << 53) as f64
                })
                .sum::<f64>()
                - 6.0
        })
        .collect()
}

fn run(values: &[f64]) -> Vec<StepScore> {
    let b = flat_baseline(values.len());
    let mut s = Scorer::default();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| s.score(i as i64, *v, &b, 0.95).unwrap())
        .collect()
}

#[test]
fn a_level_shift_scores_above_the_noise() {
    // A shift of 2.5 residual scales, held for 100 steps: rarer than anything the noise did
    // before (a record after about 2,000 steps is worth L ≈ 3.3 less the two-view price).
    let mut v = noise(2_000);
    for x in &mut v[1_800..1_900] {
        *x += 2.5;
    }
    let scores = run(&v);
    let before = scores[1_000..1_800]
        .iter()
        .map(|s| s.score)
        .fold(0.0, f64::max);
    let during = scores[1_800..1_900]
        .iter()
        .map(|s| s.score)
        .fold(0.0, f64::max);
    assert!(during >= 0.45, "shift scored {during}");
    assert!(during > before, "shift {during} vs noise {before}");
    assert!(scores.iter().all(|s| (0.0..1.0).contains(&s.score)));
}

#[test]
fn an_early_level_shift_scores_above_the_noise() {
    // The same shift after 300 steps: the histograms hold fewer than 300 values, so without
    // the stretch even a record could not look rarer than one in 300 (the shift scored 0.443).
    let mut v = noise(450);
    for x in &mut v[300..400] {
        *x += 2.5;
    }
    let scores = run(&v);
    let before = scores[100..300].iter().map(|s| s.score).fold(0.0, f64::max);
    let during = scores[300..400].iter().map(|s| s.score).fold(0.0, f64::max);
    assert!(during >= 0.45, "shift scored {during}");
    assert!(during > before, "shift {during} vs noise {before}");
}

#[test]
fn plain_noise_does_not_stretch_the_level_view() {
    // The ten-step average of independent noise stays well within one slow standard deviation
    // of the slow mean once the level view takes part, so a young series of noise is judged
    // exactly as before.
    let v = noise(2_000);
    let mut s = Scorer::default();
    let b = flat_baseline(v.len());
    for (i, x) in v.iter().enumerate() {
        if s.level_steps > LEVEL_LEARNING_STEPS {
            let z = (s.level_fast + LEVEL_FAST * (x - s.level_fast) - s.level_mean)
                / s.level_var.sqrt();
            assert!(z.abs() < LEVEL_SHIFT_Z, "step {i}: z {z}");
        }
        s.score(i as i64, *x, &b, 0.95);
    }
}

#[test]
fn a_reported_anomaly_is_quiet_for_a_while_unless_it_escalates() {
    let mut v = noise(1_500);
    v[1_200] = 12.0;
    v[1_230] = 12.0;
    v[1_260] = 1e3;
    let scores = run(&v);
    let first = scores[1_200].score;
    assert!(first > 0.5, "first spike {first}");
    // The same spike again within the quiet period scores at most half.
    assert!(
        scores[1_230].score <= first / 2.0 + 1e-9,
        "{}",
        scores[1_230].score
    );
    // A far larger one still scores in full.
    assert!(scores[1_260].score > first, "{}", scores[1_260].score);
    // After the quiet period, scores are whole again.
    let mut w = noise(1_500);
    w[1_200] = 12.0;
    w[1_400] = 12.0;
    let later = run(&w);
    assert!(later[1_400].score > 0.5, "{}", later[1_400].score);
}

#[test]
fn the_scorer_stays_small() {
    assert!(
        std::mem::size_of::<Scorer>() <= 512,
        "{}",
        std::mem::size_of::<Scorer>()
    );
}

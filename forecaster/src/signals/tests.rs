use presage_config::ForecasterConfig;

use super::*;
use crate::ingest::{Point, SeriesWrite, ValueKind, WriteBatch};

const STEP: i64 = 60_000;
const T0: i64 = 1_700_000_000_000 / STEP * STEP;

fn rules(toml: &str) -> Vec<RuleConfig> {
    ForecasterConfig::from_toml(toml, "rules.toml")
        .expect("valid rules")
        .rules
}

fn store() -> Store {
    let mut cfg = ForecasterConfig::default();
    cfg.storage.retention = std::time::Duration::from_secs(30 * 86_400);
    Store::new(&cfg).with_inline_fits()
}

/// Writes series (labels, values from T0 at one-minute steps) and returns the scores.
/// A series to write: labels and values from T0 at one-minute steps.
type Input<'a> = (Vec<(&'a str, &'a str)>, Vec<f64>);

fn write(store: &Store, series: &[Input<'_>]) -> Vec<(SeriesId, StepScore)> {
    let n = series.iter().map(|s| s.1.len()).max().unwrap_or(0);
    let now = T0 + n as i64 * STEP + STEP;
    let mut scores = Vec::new();
    for from in (0..n).step_by(60) {
        let batch = WriteBatch {
            series: series
                .iter()
                .map(|(labels, values)| SeriesWrite {
                    labels: labels
                        .iter()
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .collect(),
                    kind: ValueKind::Gauge,
                    points: values
                        .iter()
                        .enumerate()
                        .skip(from)
                        .take(60)
                        .map(|(i, v)| Point::new(T0 + i as i64 * STEP, *v))
                        .collect(),
                })
                .collect(),
            ..Default::default()
        };
        scores.extend(store.write(batch, now).scores);
    }
    scores
}

fn noise(i: usize, seed: usize) -> f64 {
    (((i * 7919 + seed * 104_729) % 1009) as f64 / 1009.0) - 0.5
}

#[test]
fn only_notable_steps_and_their_aftermath_are_sent() {
    let store = store();
    let mut values: Vec<f64> = (0..600).map(|i| 10.0 + noise(i, 1)).collect();
    values[500] = 40.0;
    let scores = write(
        &store,
        &[(vec![("__name__", "latency"), ("host", "a")], values)],
    );
    let src = SignalSource::new(&[], STEP, 3_600_000);
    let signals = src.steps(&store, &scores);
    let spike = T0 + 500 * STEP;
    let first = signals.first().expect("the spike is sent");
    assert_eq!(first.at_ms, spike);
    assert_eq!(first.series.get("host").map(String::as_str), Some("a"));
    let SignalBody::Step {
        value, band, model, ..
    } = &first.body
    else {
        panic!("a step: {first:?}");
    };
    assert_eq!(*value, 40.0);
    assert!(band.is_some_and(|b| b.upper < 40.0));
    assert_eq!(model.step_seconds, 60);
    assert!(!model.readiness.is_empty());
    // Then the series is followed for FOLLOW_STEPS steps, as long as it is calm.
    let after: Vec<i64> = signals
        .iter()
        .filter(|s| s.at_ms > spike)
        .map(|s| s.at_ms)
        .collect();
    assert!(
        after.len() >= usize::from(FOLLOW_STEPS) && after.len() < 60,
        "{} steps sent after the spike",
        after.len()
    );
    // Far fewer signals than scored steps.
    assert!(
        signals.len() * 5 < scores.len(),
        "{} of {}",
        signals.len(),
        scores.len()
    );
}

#[test]
fn breach_rules_send_the_eta_or_its_absence() {
    let store = store();
    let filling: Vec<f64> = (0..720)
        .map(|i| 0.5 + i as f64 * 0.0005 + 0.002 * noise(i, 2))
        .collect();
    let flat: Vec<f64> = (0..720).map(|i| 0.5 + 0.002 * noise(i, 3)).collect();
    write(
        &store,
        &[
            (
                vec![("__name__", "disk_utilization"), ("mount", "/var")],
                filling,
            ),
            (
                vec![("__name__", "disk_utilization"), ("mount", "/srv")],
                flat,
            ),
        ],
    );
    let src = SignalSource::new(
        &rules(
            "[[rules]]\nname = \"DiskFull\"\nkind = \"breach\"\nselect = \"disk_utilization\"\nthreshold = 0.9\nhorizon = \"1d\"\n",
        ),
        STEP,
        3_600_000,
    );
    let signals = src.evaluate(&store, T0 + 719 * STEP);
    let by_mount = |m: &str| {
        signals
            .iter()
            .find(|s| s.series.get("mount").map(String::as_str) == Some(m))
            .map(|s| s.body.clone())
    };
    // 0.86 now, +0.03 per hour: about 80 minutes to 0.9.
    let Some(SignalBody::Breach {
        rule,
        eta: Some(eta),
        threshold,
        rate_per_second,
        ..
    }) = by_mount("/var")
    else {
        panic!("{signals:?}");
    };
    assert_eq!(rule, "DiskFull");
    assert_eq!(threshold, 0.9);
    assert!(rate_per_second > 0.0);
    assert!(eta.p10_seconds <= eta.p50_seconds && eta.p50_seconds <= eta.p90_seconds);
    assert!((1800.0..10_800.0).contains(&eta.p50_seconds), "{eta:?}");
    assert!(matches!(
        by_mount("/srv"),
        Some(SignalBody::Breach { eta: None, .. })
    ));
}

#[test]
fn the_host_unlike_its_peers_is_an_outlier() {
    let store = store();
    let hosts: Vec<String> = (0..6).map(|h| format!("h{h}")).collect();
    let series: Vec<Input<'_>> = hosts
        .iter()
        .enumerate()
        .map(|(h, name)| {
            let values = (0..120)
                .map(|i| {
                    let odd = h == 4 && i >= 80;
                    30.0 + noise(i, h) * 2.0 + if odd { 50.0 } else { 0.0 }
                })
                .collect();
            (
                vec![("__name__", "cpu_busy"), ("instance", name.as_str())],
                values,
            )
        })
        .collect();
    write(&store, &series);
    let src = SignalSource::new(
        &rules("[[rules]]\nname = \"Odd\"\nkind = \"outlier\"\nselect = \"cpu_busy\"\n"),
        STEP,
        3_600_000,
    );
    let signals = src.evaluate(&store, T0 + 118 * STEP);
    let outlying: Vec<&str> = signals
        .iter()
        .filter(|s| matches!(s.body, SignalBody::Outlier { outlying: true, .. }))
        .filter_map(|s| s.series.get("instance").map(String::as_str))
        .collect();
    assert_eq!(outlying, vec!["h4"], "{signals:?}");
    let peers = signals.iter().find_map(|s| match s.body {
        SignalBody::Outlier { peers, .. } => Some(peers),
        _ => None,
    });
    assert_eq!(peers, Some(6));
}

#[test]
fn static_rules_see_series_without_a_baseline() {
    let store = store();
    // Ten steps: far fewer than a first fit needs.
    write(
        &store,
        &[(
            vec![("__name__", "queue_depth")],
            vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0],
        )],
    );
    let src = SignalSource::new(
        &rules(
            "[[rules]]\nname = \"Deep\"\nkind = \"static\"\nselect = \"queue_depth\"\nthreshold = 10\n",
        ),
        STEP,
        3_600_000,
    );
    let signals = src.evaluate(&store, T0 + 8 * STEP);
    let Some(SignalBody::Step {
        value, band: None, ..
    }) = signals.first().map(|s| &s.body)
    else {
        panic!("{signals:?}");
    };
    assert_eq!(*value, 13.0);
}

#[test]
fn a_persistent_anomaly_gets_its_level_shift_dated() {
    let store = store();
    let values: Vec<f64> = (0..600)
        .map(|i| if i >= 560 { 30.0 } else { 10.0 } + noise(i, 5))
        .collect();
    let scores = write(&store, &[(vec![("__name__", "p99_latency")], values)]);
    let src = SignalSource::new(&[], STEP, 3_600_000);
    src.steps(&store, &scores);
    let signals = src.evaluate(&store, T0 + 598 * STEP);
    let shift = signals
        .iter()
        .find_map(|s| match s.body {
            SignalBody::LevelShift {
                changed_at_ms,
                before,
                after,
            } => Some((changed_at_ms, before, after)),
            _ => None,
        })
        .expect("a level shift");
    let at = (shift.0 - T0) / STEP;
    assert!((558..=562).contains(&at), "dated at step {at}");
    assert!(
        (shift.1 - 10.0).abs() < 1.0 && (shift.2 - 30.0).abs() < 1.0,
        "{shift:?}"
    );
}

#[test]
fn a_persistent_excursion_scores_as_its_rarest_step() {
    let store = store();
    write(&store, &[(vec![("__name__", "latency")], vec![10.0; 40])]);
    let id = crate::store::series_id(&[("__name__".to_string(), "latency".to_string())]);
    let src = SignalSource::new(&[], STEP, 3_600_000);
    let step = |i: i64, score: f64, persistent: bool| StepScore {
        slot_ms: T0 + (40 + i) * STEP,
        value: 50.0,
        expected: 10.0,
        lower: 8.0,
        upper: 12.0,
        deviation: 20.0,
        score,
        direction: 1,
        persistent,
        excursion_score: 0.7,
    };
    let scores = vec![
        (id, step(0, 0.7, false)),
        (id, step(1, 0.3, false)),
        (id, step(2, 0.35, true)),
    ];
    let sent: Vec<f64> = src
        .steps(&store, &scores)
        .iter()
        .map(|s| match s.body {
            SignalBody::Step { score, .. } => score,
            _ => f64::NAN,
        })
        .collect();
    // Not yet persistent: each step's own score; persistent: the excursion's highest.
    assert_eq!(sent, vec![0.7, 0.3, 0.7]);
}

//! Pending → firing → resolved, in event time.

use super::*;
use crate::alert::AlertState;
use crate::lifecycle::{Evaluator, fingerprint};

fn evaluator(rules: &str) -> Evaluator {
    Evaluator::from_config(
        &config(&format!("[alerting]\ndefault_rules = false\n{rules}")),
        None,
    )
    .unwrap()
}

fn states(e: &Evaluator) -> Vec<AlertState> {
    let mut v: Vec<AlertState> = e.alerts().map(|(a, _)| a.state).collect();
    v.sort_by_key(|s| *s as u8);
    v
}

const STATIC: &str = r#"
[[rules]]
name = "HighLoad"
kind = "static"
select = "load"
threshold = 100
for = "3m"
keep_firing_for = "2m"
labels = { team = "core", page = "{{ labels.host_name }}" }
annotations = { runbook = "load {{ value }} > {{ threshold }} on {{ labels.host_name }}" }
"#;

#[test]
fn pending_fires_after_for_and_labels_are_stable() {
    let mut e = evaluator(STATIC);
    let s = series(&[("__name__", "load"), ("host_name", "web-1")]);
    e.ingest(&[normal_step(T0, &s, 150.0)], 0);
    let out = e.evaluate(T0);
    assert!(out.ran);
    assert_eq!(states(&e), vec![AlertState::Pending]);
    assert!(out.fired.is_empty());
    let fp = e.alerts().next().unwrap().0.fingerprint.clone();
    for i in 1..=2 {
        e.ingest(&[normal_step(T0 + i * MIN, &s, 150.0)], 0);
        assert!(
            e.evaluate(T0 + i * MIN).fired.is_empty(),
            "fired after {i} min"
        );
    }
    e.ingest(&[normal_step(T0 + 3 * MIN, &s, 150.0)], 0);
    let out = e.evaluate(T0 + 3 * MIN);
    assert_eq!(out.fired, vec![fp.clone()]);
    let (a, _) = e.alert(&fp).unwrap();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.active_since_ms, T0);
    assert_eq!(a.fired_at_ms, Some(T0 + 3 * MIN));
    let want = map(&[
        ("alertname", "HighLoad"),
        ("host_name", "web-1"),
        ("metric", "load"),
        ("page", "web-1"),
        ("rule_kind", "static"),
        ("severity", "warning"),
        ("team", "core"),
    ]);
    assert_eq!(a.labels, want);
    assert_eq!(a.fingerprint, fingerprint(&want));
    assert_eq!(a.fingerprint.len(), 16);
    assert!(a.fingerprint.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(a.annotations["runbook"], "load 150 > 100 on web-1");
    for k in ["summary", "description", "explanation", "suggestion"] {
        assert!(!a.annotations[k].is_empty(), "{k}");
    }
    // Same rule, same series: same fingerprint in another evaluator (a restart).
    let mut other = evaluator(STATIC);
    other.ingest(&[normal_step(T0 + 9 * MIN, &s, 300.0)], 0);
    other.evaluate(T0 + 9 * MIN);
    assert_eq!(other.alerts().next().unwrap().0.fingerprint, fp);
}

#[test]
fn pending_alert_is_dropped_when_the_condition_clears() {
    let mut e = evaluator(STATIC);
    let s = series(&[("__name__", "load")]);
    e.ingest(&[normal_step(T0, &s, 150.0)], 0);
    e.evaluate(T0);
    e.ingest(&[normal_step(T0 + MIN, &s, 50.0)], 0);
    e.evaluate(T0 + MIN);
    assert!(states(&e).is_empty());
    // It starts over: `for` counts from the new start.
    e.ingest(&[normal_step(T0 + 2 * MIN, &s, 150.0)], 0);
    e.evaluate(T0 + 2 * MIN);
    let a = e.alerts().next().unwrap().0.clone();
    assert_eq!(a.active_since_ms, T0 + 2 * MIN);
}

#[test]
fn keep_firing_for_then_resolve_then_forget() {
    let mut e = evaluator(STATIC);
    let s = series(&[("__name__", "load")]);
    for i in 0..=3 {
        e.ingest(&[normal_step(T0 + i * MIN, &s, 150.0)], 0);
        e.evaluate(T0 + i * MIN);
    }
    assert_eq!(states(&e), vec![AlertState::Firing]);
    // Clears at +4m; keeps firing for 2m after it was last seen (+3m).
    e.ingest(&[normal_step(T0 + 4 * MIN, &s, 10.0)], 0);
    e.evaluate(T0 + 4 * MIN);
    assert_eq!(states(&e), vec![AlertState::Firing]);
    e.ingest(&[normal_step(T0 + 5 * MIN, &s, 10.0)], 0);
    e.evaluate(T0 + 5 * MIN);
    let a = e.alerts().next().unwrap().0.clone();
    assert_eq!(a.state, AlertState::Resolved);
    assert_eq!(a.resolved_at_ms, Some(T0 + 5 * MIN));
    // Kept for resolved_retention (24h), then forgotten.
    e.evaluate(T0 + 5 * MIN + 23 * 3600 * 1000);
    assert_eq!(states(&e), vec![AlertState::Resolved]);
    e.evaluate(T0 + 5 * MIN + 25 * 3600 * 1000);
    assert!(states(&e).is_empty());
}

#[test]
fn a_series_that_goes_silent_resolves_after_five_steps() {
    let mut e = evaluator("[[rules]]\nname = \"A\"\nkind = \"anomaly\"\n");
    let s = series(&[("__name__", "x")]);
    e.ingest(&[anomalous_step(T0, &s, 20.0, 0.95)], 0);
    assert_eq!(e.evaluate(T0).fired.len(), 1, "for = 0 fires at once");
    e.evaluate(T0 + 5 * MIN);
    assert_eq!(states(&e), vec![AlertState::Firing]);
    e.evaluate(T0 + 5 * MIN + 1);
    assert_eq!(states(&e), vec![AlertState::Resolved]);
}

#[test]
fn breach_default_severity_and_eval_interval() {
    let mut e = Evaluator::from_config(
        &config(
            "[alerting]\ndefault_rules = false\neval_interval = \"5m\"\n\
             [[rules]]\nname = \"B\"\nkind = \"breach\"\nthreshold = 0.9\n",
        ),
        None,
    )
    .unwrap();
    let s = series(&[("__name__", "system_filesystem_utilization")]);
    e.evaluate(T0);
    e.ingest(
        &[breach(
            T0 + MIN,
            &s,
            "B",
            0.9,
            0.8,
            Some((60.0, 120.0, 180.0)),
            1e-4,
        )],
        0,
    );
    assert!(!e.evaluate(T0 + MIN).ran, "inside eval_interval");
    assert!(states(&e).is_empty());
    assert!(e.evaluate(T0 + 5 * MIN).ran);
    let a = e.alerts().next().unwrap().0.clone();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.labels["severity"], "critical");
    assert_eq!(a.labels["rule_kind"], "breach");
}

#[test]
fn conditions_are_capped() {
    let mut e = Evaluator::from_config(
        &config(
            "[alerting]\ndefault_rules = false\nmax_alerts = 2\n\
             [[rules]]\nname = \"A\"\nkind = \"anomaly\"\n",
        ),
        None,
    )
    .unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| {
            anomalous_step(
                T0,
                &series(&[("__name__", "x"), ("i", &i.to_string())]),
                20.0,
                0.9,
            )
        })
        .collect();
    e.ingest(&batch, 0);
    e.evaluate(T0);
    assert_eq!(e.alerts().count(), 2);
    assert_eq!(e.refused(), 3);
}

#[test]
fn a_condition_that_holds_only_between_two_evaluations_still_fires() {
    // A replay at full speed: the anomalous step and the calm ones after it arrive in one
    // batch before the next evaluation. The alert fires at that evaluation, with the
    // anomalous step's facts, and resolves at the one after.
    let mut e = evaluator(
        "[[rules]]\nname = \"Odd\"\nkind = \"anomaly\"\nmin_score = 0.6\npersistent = false\n",
    );
    let s = series(&[("__name__", "latency"), ("host", "a")]);
    let mut batch = vec![anomalous_step(T0, &s, 20.0, 0.95)];
    for i in 1..5 {
        batch.push(normal_step(T0 + i * MIN, &s, 10.0));
    }
    e.ingest(&batch, 0);
    let out = e.evaluate(T0 + 4 * MIN);
    assert_eq!(out.fired.len(), 1, "{out:?}");
    let (a, _) = e.alert(&out.fired[0]).unwrap();
    assert_eq!(a.state, AlertState::Firing);
    assert_eq!(a.explanation.value, Some(20.0));
    e.evaluate(T0 + 5 * MIN);
    assert_eq!(states(&e), vec![AlertState::Resolved]);
}

#[test]
fn a_tick_that_trails_its_conditions_does_not_move_the_start_back() {
    // The tick for an older event time is handled after newer conditions arrived: the alert
    // starts at its condition, not at the tick's time.
    let mut e = evaluator(
        "[[rules]]\nname = \"Odd\"\nkind = \"anomaly\"\nmin_score = 0.6\npersistent = false\n",
    );
    let s = series(&[("__name__", "latency"), ("host", "a")]);
    e.evaluate(T0);
    e.ingest(&[anomalous_step(T0 + 60 * MIN, &s, 20.0, 0.95)], 0);
    let out = e.evaluate(T0 + MIN);
    assert_eq!(out.fired.len(), 1, "{out:?}");
    let (a, _) = e.alert(&out.fired[0]).unwrap();
    assert_eq!(a.active_since_ms, T0 + 60 * MIN);
    assert_eq!(e.now_ms(), T0 + 60 * MIN);
}

#[test]
fn conditions_for_steps_already_evaluated_are_evaluated_again() {
    // A series' steps waited for a fit and arrive after event time moved on (and may stay the
    // newest event time): they still raise their alert, at the current event time.
    let mut e = evaluator(
        "eval_interval = \"5m\"\n\
         [[rules]]\nname = \"Odd\"\nkind = \"anomaly\"\nmin_score = 0.6\npersistent = false\n",
    );
    let (a, b) = (
        series(&[("__name__", "latency"), ("host", "a")]),
        series(&[("__name__", "latency"), ("host", "b")]),
    );
    e.ingest(&[normal_step(T0 + 10 * MIN, &a, 10.0)], 0);
    assert!(e.evaluate(T0 + 10 * MIN).ran);
    assert!(!e.has_late());
    e.ingest(&[anomalous_step(T0 + 5 * MIN, &b, 20.0, 0.95)], 0);
    assert!(e.has_late());
    let out = e.evaluate(e.now_ms());
    assert!(out.ran && !e.has_late());
    assert_eq!(out.fired.len(), 1, "{out:?}");
    let (alert, _) = e.alert(&out.fired[0]).unwrap();
    assert_eq!(alert.active_since_ms, T0 + 5 * MIN);
    // Without anything late, the interval applies again.
    assert!(!e.evaluate(T0 + 11 * MIN).ran);
}

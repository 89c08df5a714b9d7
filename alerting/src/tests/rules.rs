//! Rule compilation and the evaluation of each kind.

use std::sync::Arc;

use presage_config::RuleKind;

use super::*;
use crate::rules::{self, LOG_LINES_METRIC, Rule, builtin};
use crate::signal::{Signal, SignalBody};

fn compiled(toml: &str) -> Vec<Rule> {
    rules::compile(&config(toml)).unwrap()
}

fn only(toml: &str) -> Rule {
    let mut r = compiled(&format!("[alerting]\ndefault_rules = false\n{toml}"));
    assert_eq!(r.len(), 1);
    r.remove(0)
}

fn active(rule: &Rule, s: &Signal) -> Option<bool> {
    rule.evaluate(s).map(|c| c.active)
}

#[test]
fn default_rules_are_present_and_replaceable() {
    let names: Vec<String> = compiled("").iter().map(|r| r.name().to_string()).collect();
    for n in [
        builtin::DISK_WILL_FILL,
        builtin::NODE_DISK_WILL_FILL,
        builtin::MEMORY_WILL_EXHAUST,
        builtin::CPU_SATURATED,
        builtin::SERIES_ANOMALOUS,
        builtin::NEW_ERROR_LOG_PATTERN,
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    // A configured rule with a built-in's name replaces it.
    let rules = compiled(
        r#"
[[rules]]
name = "DiskWillFill"
kind = "breach"
select = 'system_filesystem_utilization{mountpoint="/data"}'
threshold = 0.8
"#,
    );
    let disk: Vec<&Rule> = rules
        .iter()
        .filter(|r| r.name() == "DiskWillFill")
        .collect();
    assert_eq!(disk.len(), 1);
    assert_eq!(disk[0].config.threshold, Some(0.8));
    assert!(!disk[0].builtin);
    assert_eq!(rules.len(), names.len());
    // Off: only the configured ones.
    assert!(compiled("[alerting]\ndefault_rules = false\n").is_empty());
}

#[test]
fn default_rule_selectors_fit_agent_and_node_exporter_series() {
    let rules = compiled("");
    let rule = |n: &str| rules.iter().find(|r| r.name() == n).unwrap();
    let fs = labels(&[
        ("__name__", "system_filesystem_utilization"),
        ("device", "/dev/sda1"),
        ("mode", "rw"),
        ("mountpoint", "/"),
        ("type", "ext4"),
    ]);
    assert!(rule(builtin::DISK_WILL_FILL).select.matches(&fs));
    let mut ro = fs.clone();
    ro.insert("mode".into(), "ro".into());
    assert!(!rule(builtin::DISK_WILL_FILL).select.matches(&ro));
    let node = |fstype: &str| {
        labels(&[
            ("__name__", "node_filesystem_avail_bytes"),
            ("fstype", fstype),
            ("mountpoint", "/"),
        ])
    };
    assert!(
        rule(builtin::NODE_DISK_WILL_FILL)
            .select
            .matches(&node("ext4"))
    );
    assert!(
        !rule(builtin::NODE_DISK_WILL_FILL)
            .select
            .matches(&node("tmpfs"))
    );
    assert!(
        !rule(builtin::NODE_DISK_WILL_FILL)
            .select
            .matches(&node("fuse.sshfs"))
    );
    let mem = labels(&[("__name__", "system_memory_utilization"), ("state", "used")]);
    assert!(rule(builtin::MEMORY_WILL_EXHAUST).select.matches(&mem));
    let idle = labels(&[("__name__", "system_cpu_utilization"), ("state", "idle")]);
    assert!(rule(builtin::CPU_SATURATED).select.matches(&idle));
    let per_cpu = labels(&[
        ("__name__", "system_cpu_utilization"),
        ("state", "idle"),
        ("cpu", "cpu0"),
    ]);
    assert!(!rule(builtin::CPU_SATURATED).select.matches(&per_cpu));
    assert_eq!(rule(builtin::DISK_WILL_FILL).severity(), "critical");
    assert_eq!(rule(builtin::SERIES_ANOMALOUS).severity(), "warning");
}

#[test]
fn anomaly_rules_need_band_score_and_persistence() {
    let r = only("[[rules]]\nname = \"A\"\nkind = \"anomaly\"\nmin_score = 0.8\n");
    let s = series(&[("__name__", "x")]);
    assert_eq!(active(&r, &anomalous_step(T0, &s, 20.0, 0.85)), Some(true));
    assert_eq!(active(&r, &anomalous_step(T0, &s, 20.0, 0.75)), Some(false));
    let mut single = anomalous_step(T0, &s, 20.0, 0.95);
    if let SignalBody::Step { persistent, .. } = &mut single.body {
        *persistent = false;
    }
    assert_eq!(active(&r, &single), Some(false));
    let lenient =
        only("[[rules]]\nname = \"A\"\nkind = \"anomaly\"\nmin_score = 0.8\npersistent = false\n");
    assert_eq!(active(&lenient, &single), Some(true));
    let mut cold = anomalous_step(T0, &s, 20.0, 0.95);
    if let SignalBody::Step { band, .. } = &mut cold.body {
        *band = None;
    }
    assert_eq!(active(&r, &cold), Some(false));
    // Breach signals are not for anomaly rules.
    assert_eq!(
        active(
            &r,
            &breach(T0, &s, "A", 1.0, 0.5, Some((1.0, 2.0, 3.0)), 0.1)
        ),
        None
    );
    // The built-in anomaly rule needs a ready model.
    let rules = compiled("");
    let builtin = rules
        .iter()
        .find(|r| r.name() == builtin::SERIES_ANOMALOUS)
        .unwrap();
    let mut warming = anomalous_step(T0, &s, 20.0, 0.95);
    if let SignalBody::Step { model, .. } = &mut warming.body {
        *model = Arc::new(crate::signal::ModelFacts {
            readiness: "warming".into(),
            ..Default::default()
        });
    }
    assert_eq!(active(builtin, &warming), Some(false));
    assert_eq!(
        active(builtin, &anomalous_step(T0, &s, 20.0, 0.95)),
        Some(true)
    );
    assert_eq!(
        active(builtin, &anomalous_step(T0, &s, 20.0, 0.55)),
        Some(false)
    );
}

#[test]
fn breach_rules_compare_the_chosen_quantile_with_the_horizon() {
    let toml = |q: &str| {
        format!(
            "[[rules]]\nname = \"B\"\nkind = \"breach\"\nthreshold = 0.9\nhorizon = \"2h\"\nquantile = \"{q}\"\n"
        )
    };
    let s = series(&[("__name__", "x")]);
    let sig = breach(T0, &s, "B", 0.9, 0.8, Some((3600.0, 6000.0, 9000.0)), 1e-5);
    assert_eq!(active(&only(&toml("p10")), &sig), Some(true));
    assert_eq!(active(&only(&toml("p50")), &sig), Some(true));
    assert_eq!(active(&only(&toml("p90")), &sig), Some(false));
    let cleared = breach(T0, &s, "B", 0.9, 0.8, None, 0.0);
    assert_eq!(active(&only(&toml("p50")), &cleared), Some(false));
    let other = breach(T0, &s, "Other", 0.9, 0.8, Some((1.0, 1.0, 1.0)), 0.0);
    assert_eq!(active(&only(&toml("p50")), &other), None);
    let c = only(&toml("p50")).evaluate(&sig).unwrap();
    assert_eq!(c.rate_per_second, Some(1e-5));
    assert_eq!(c.threshold, Some(0.9));
}

#[test]
fn static_rules_compare_the_value() {
    let above = only("[[rules]]\nname = \"S\"\nkind = \"static\"\nthreshold = 100\n");
    let below = only(
        "[[rules]]\nname = \"S\"\nkind = \"static\"\nthreshold = 100\ndirection = \"below\"\n",
    );
    let s = series(&[("__name__", "x")]);
    assert_eq!(active(&above, &normal_step(T0, &s, 150.0)), Some(true));
    assert_eq!(active(&above, &normal_step(T0, &s, 50.0)), Some(false));
    assert_eq!(active(&below, &normal_step(T0, &s, 50.0)), Some(true));
    assert_eq!(active(&below, &normal_step(T0, &s, 150.0)), Some(false));
}

fn outlier(outlying: bool, score: f64, algorithm: &str) -> Signal {
    Signal {
        at_ms: T0,
        series: series(&[("__name__", "x"), ("host_name", "h3")]),
        body: SignalBody::Outlier {
            algorithm: algorithm.into(),
            peers: 5,
            score,
            value: 90.0,
            fleet_median: 20.0,
            outlying,
        },
    }
}

#[test]
fn outlier_rules_need_outlying_and_score() {
    let r = only("[[rules]]\nname = \"O\"\nkind = \"outlier\"\n");
    assert_eq!(active(&r, &outlier(true, 0.6, "mad")), Some(true));
    assert_eq!(active(&r, &outlier(true, 0.4, "mad")), Some(false));
    assert_eq!(active(&r, &outlier(false, 0.9, "mad")), Some(false));
    let dbscan = only("[[rules]]\nname = \"O\"\nkind = \"outlier\"\nalgorithm = \"dbscan\"\n");
    assert_eq!(active(&dbscan, &outlier(true, 0.9, "mad")), None);
    assert_eq!(active(&dbscan, &outlier(true, 0.9, "dbscan")), Some(true));
}

pub(crate) fn log_signal(severity: &str, new: bool, rate_score: f64) -> Signal {
    Signal {
        at_ms: T0,
        series: series(&[
            ("__name__", "log_pattern_count"),
            ("service_name", "checkout"),
            ("template_id", "t1"),
        ]),
        body: SignalBody::LogPattern {
            service: "checkout".into(),
            template_id: "t1".into(),
            template: "connection to <*> refused".into(),
            severity: severity.into(),
            first_seen_ms: T0 - 5 * MIN,
            samples: vec!["connection to 10.0.0.7:5432 refused".into()],
            new,
            rate_score,
        },
    }
}

#[test]
fn log_pattern_rules_need_severity_and_novelty_or_rate() {
    // New patterns only: rates do not alert without `min_score`.
    let r = only("[[rules]]\nname = \"L\"\nkind = \"log_pattern\"\nseverity = \"error\"\n");
    assert_eq!(r.kind(), RuleKind::LogPattern);
    assert_eq!(active(&r, &log_signal("error", true, 0.0)), Some(true));
    assert_eq!(active(&r, &log_signal("warn", true, 0.0)), Some(false));
    assert_eq!(active(&r, &log_signal("fatal", false, 0.95)), Some(false));
    // New patterns and rates.
    let both = only(
        "[[rules]]\nname = \"L\"\nkind = \"log_pattern\"\nseverity = \"error\"\nmin_score = 0.6\n",
    );
    assert_eq!(active(&both, &log_signal("error", true, 0.0)), Some(true));
    assert_eq!(active(&both, &log_signal("fatal", false, 0.95)), Some(true));
    assert_eq!(active(&both, &log_signal("error", false, 0.5)), Some(false));
    assert_eq!(active(&both, &log_signal("warn", false, 0.95)), Some(false));
    // Rates only.
    let rates = only(
        "[[rules]]\nname = \"L\"\nkind = \"log_pattern\"\nseverity = \"error\"\nnew_pattern = false\nmin_score = 0.6\n",
    );
    assert_eq!(active(&rates, &log_signal("error", true, 0.0)), Some(false));
    assert_eq!(active(&rates, &log_signal("error", false, 0.7)), Some(true));
}

#[test]
fn a_log_pattern_rule_that_alerts_on_nothing_is_refused() {
    let err = presage_config::ForecasterConfig::from_toml(
        "[[rules]]\nname = \"L\"\nkind = \"log_pattern\"\nnew_pattern = false\n",
        "rules.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("new_pattern") && err.contains("min_score"),
        "{err}"
    );
}

#[test]
fn builtin_rate_rule_reads_persistent_rates_and_the_generic_rule_leaves_line_counts_alone() {
    let rules = compiled("");
    let rate = rules
        .iter()
        .find(|r| r.name() == builtin::LOG_PATTERN_RATE_ANOMALOUS)
        .expect("built-in log rate rule");
    let mut s = log_signal("error", false, 0.7);
    s.series = series(&[("service", "checkout"), ("template_id", "t1")]);
    assert_eq!(active(rate, &s), Some(true));
    let new = Signal {
        body: log_signal("error", true, 0.0).body,
        ..s.clone()
    };
    assert_eq!(active(rate, &new), Some(false));
    let generic = rules
        .iter()
        .find(|r| r.name() == builtin::SERIES_ANOMALOUS)
        .expect("built-in anomaly rule");
    let mut step = anomalous_step(T0, &series(&[("__name__", "latency")]), 20.0, 0.95);
    assert!(generic.evaluate(&step).is_some());
    step.series = series(&[
        ("__name__", LOG_LINES_METRIC),
        ("service", "checkout"),
        ("template_id", "t1"),
    ]);
    assert_eq!(generic.evaluate(&step).map(|c| c.active), None);
}

#[test]
fn builtin_new_log_pattern_rule_reads_new_warn_or_worse_patterns() {
    let rules = compiled("");
    let r = rules
        .iter()
        .find(|r| r.name() == builtin::NEW_ERROR_LOG_PATTERN)
        .expect("built-in log pattern rule");
    assert_eq!(r.kind(), RuleKind::LogPattern);
    let mut s = log_signal("error", true, 0.0);
    // The daemon labels log pattern signals with `service`.
    assert_eq!(active(r, &s), None);
    s.series = series(&[("service", "checkout"), ("template_id", "t1")]);
    assert_eq!(active(r, &s), Some(true));
    let warn = Signal {
        body: log_signal("warn", true, 0.0).body,
        ..s.clone()
    };
    assert_eq!(active(r, &warn), Some(true));
    let info = Signal {
        body: log_signal("info", true, 0.0).body,
        ..s.clone()
    };
    assert_eq!(active(r, &info), Some(false));
    let known = Signal {
        body: log_signal("error", false, 0.0).body,
        ..s
    };
    assert_eq!(active(r, &known), Some(false));
}

//! Explanations carry the model's numbers.

use std::sync::Arc;

use super::*;
use crate::alert::Alert;
use crate::lifecycle::Evaluator;
use crate::signal::{ChartData, ModelContext, Signal, SignalBody};

/// A model whose forecast peaks at `peak` for every series.
pub(crate) struct FixedForecast {
    pub(crate) peak: f64,
}

impl ModelContext for FixedForecast {
    fn chart(&self, _series: &LabelSet, now_ms: i64) -> Option<ChartData> {
        let band = |v: f64| Band {
            expected: v,
            lower: v - 0.05,
            upper: v + 0.05,
        };
        Some(ChartData {
            actual: vec![(now_ms, self.peak - 0.2)],
            expected: vec![(now_ms, band(self.peak - 0.2))],
            forecast: vec![
                (now_ms + MIN, band(self.peak - 0.1)),
                (now_ms + 2 * MIN, band(self.peak - 0.05)),
                (now_ms + 3 * MIN, band(self.peak - 0.3)),
            ],
            threshold: None,
            anomalies: Vec::new(),
        })
    }
}

fn fire(toml: &str, ctx: Option<Arc<dyn ModelContext>>, signals: &[Signal]) -> Vec<Alert> {
    let mut e = Evaluator::from_config(&config(toml), ctx).unwrap();
    e.ingest(signals, 0);
    let at = signals.iter().map(|s| s.at_ms).max().unwrap_or(T0);
    e.evaluate(at);
    let mut v: Vec<Alert> = e.alerts().map(|(a, _)| a.clone()).collect();
    v.sort_by(|a, b| a.labels["alertname"].cmp(&b.labels["alertname"]));
    v
}

#[test]
fn disk_fill_gives_growth_time_to_full_and_space_to_add() {
    let s = series(&[
        ("__name__", "system_filesystem_utilization"),
        ("mountpoint", "/var"),
        ("mode", "rw"),
        ("host_name", "web-1"),
    ]);
    // 1 percentage point per hour from 80%: full (100%) in 20h, 90% in 10h.
    let rate = 0.01 / 3600.0;
    let alerts = fire(
        "",
        None,
        &[
            normal_step(T0, &s, 0.8),
            breach(
                T0,
                &s,
                "DiskWillFill",
                0.9,
                0.8,
                Some((9_600.0, 11_400.0, 14_700.0)),
                rate,
            ),
        ],
    );
    let a = alerts
        .iter()
        .find(|a| a.labels["alertname"] == "DiskWillFill")
        .unwrap();
    let ex = &a.explanation;
    assert!(
        ex.summary
            .contains("will reach 90% in 3h10m (P10 2h40m, P90 4h5m)"),
        "{}",
        ex.summary
    );
    assert!(
        ex.suggestion
            .contains("/var grows 1 percentage points per hour"),
        "{}",
        ex.suggestion
    );
    assert!(
        ex.suggestion.contains("will be full in 20h"),
        "{}",
        ex.suggestion
    );
    // 80% used plus 7 days × 24 h × 1% = 168% of today's size, at most 90% full:
    // (0.8 + 1.68) / 0.9 = 2.756 times the size.
    assert!(
        ex.suggestion
            .contains("to at least 2.756x its current size"),
        "{}",
        ex.suggestion
    );
    assert_eq!(ex.eta.unwrap().p50_seconds, 11_400.0);
    assert_eq!(ex.rate_per_second, Some(rate));
    assert_eq!(ex.seasonality, vec!["daily".to_string()]);
    assert!(ex.text.contains("Seasonality: daily."), "{}", ex.text);
    assert!(ex.text.contains("Suggestion:"), "{}", ex.text);
    assert_eq!(a.annotations["suggestion"], ex.suggestion);
}

#[test]
fn node_exporter_disk_fill_counts_bytes() {
    let s = series(&[
        ("__name__", "node_filesystem_avail_bytes"),
        ("mountpoint", "/data"),
        ("fstype", "ext4"),
    ]);
    let gib = 1024.0 * 1024.0 * 1024.0;
    // 10 GiB free, shrinking 1 GiB per hour.
    let mut b = breach(
        T0,
        &s,
        "NodeFilesystemWillFill",
        0.0,
        10.0 * gib,
        Some((14_400.0, 18_000.0, 21_000.0)),
        -gib / 3600.0,
    );
    if let SignalBody::Breach { above, .. } = &mut b.body {
        *above = false;
    }
    let alerts = fire("", None, &[b]);
    let ex = &alerts[0].explanation;
    assert!(
        ex.suggestion.contains("grows 1.0 GiB per hour"),
        "{}",
        ex.suggestion
    );
    assert!(ex.suggestion.contains("full in 10h"), "{}", ex.suggestion);
    assert!(ex.suggestion.contains("168.0 GiB"), "{}", ex.suggestion);
}

#[test]
fn cpu_saturation_suggests_replicas_from_the_forecast_peak() {
    let s = series(&[("__name__", "system_cpu_utilization"), ("state", "idle")]);
    // Idle forecast dips to 0.05 - 0.05 = 0.0 → busy peak 100% → ceil(1.0 / 0.7) = 2.
    let ctx: Arc<dyn ModelContext> = Arc::new(FixedForecast { peak: 0.05 });
    let toml = "[alerting]\ndefault_rules = false\n[[rules]]\nname = \"Cpu\"\nkind = \"static\"\n\
                select = 'system_cpu_utilization{state=\"idle\"}'\nthreshold = 0.1\ndirection = \"below\"\n";
    let alerts = fire(toml, Some(ctx), &[normal_step(T0, &s, 0.04)]);
    let sug = &alerts[0].explanation.suggestion;
    assert!(sug.contains("run 2 replicas"), "{sug}");
    assert!(sug.contains("under 70%"), "{sug}");
    // A busy-share series (several cores): forecast upper peak 2.0 → ceil(2.0 / 0.7) = 3.
    let busy = series(&[("__name__", "container_cpu_utilization"), ("pod", "api")]);
    let ctx: Arc<dyn ModelContext> = Arc::new(FixedForecast { peak: 2.0 });
    let toml = "[alerting]\ndefault_rules = false\n[[rules]]\nname = \"Cpu\"\nkind = \"static\"\n\
                select = 'container_cpu_utilization'\nthreshold = 0.9\n";
    let alerts = fire(toml, Some(ctx), &[normal_step(T0, &busy, 1.2)]);
    assert!(
        alerts[0].explanation.suggestion.contains("run 3 replicas"),
        "{}",
        alerts[0].explanation.suggestion
    );
    // A percent series: a peak of 83 is 83% of a core → ceil(0.83 / 0.7) = 2.
    let percent = series(&[("__name__", "app_cpu_percent"), ("host_name", "a")]);
    let ctx: Arc<dyn ModelContext> = Arc::new(FixedForecast { peak: 83.0 });
    let toml = "[alerting]\ndefault_rules = false\n[[rules]]\nname = \"Cpu\"\nkind = \"static\"\n\
                select = 'app_cpu_percent'\nthreshold = 60\n";
    let alerts = fire(toml, Some(ctx), &[normal_step(T0, &percent, 70.0)]);
    let sug = &alerts[0].explanation.suggestion;
    assert!(
        sug.contains("83% of one replica's CPU: run 2 replicas"),
        "{sug}"
    );
}

#[test]
fn memory_growth_without_daily_cycle_suspects_a_leak_with_restart_by_time() {
    let s = series(&[("__name__", "system_memory_utilization"), ("state", "used")]);
    let mut step = normal_step(T0, &s, 0.9);
    if let SignalBody::Step { model, .. } = &mut step.body {
        *model = super::model(&[]);
    }
    let alerts = fire(
        "",
        None,
        &[
            step,
            breach(
                T0,
                &s,
                "MemoryWillExhaust",
                0.95,
                0.9,
                Some((7_200.0, 9_000.0, 12_000.0)),
                0.05 / 9000.0,
            ),
        ],
    );
    let a = alerts
        .iter()
        .find(|a| a.labels["alertname"] == "MemoryWillExhaust")
        .unwrap();
    let sug = &a.explanation.suggestion;
    assert!(sug.contains("leak is suspected"), "{sug}");
    // T0 = 2023-11-14T22:13:20Z; P10 = 2h later.
    assert!(
        sug.contains("Restart the process by 2023-11-15T00:13:20Z"),
        "{sug}"
    );
    assert!(
        a.explanation.text.contains("No seasonal cycle detected."),
        "{}",
        a.explanation.text
    );
    // With a daily cycle it is not called a leak.
    let alerts = fire(
        "",
        None,
        &[
            normal_step(T0, &s, 0.9),
            breach(
                T0,
                &s,
                "MemoryWillExhaust",
                0.95,
                0.9,
                Some((7_200.0, 9_000.0, 12_000.0)),
                1e-6,
            ),
        ],
    );
    let a = alerts
        .iter()
        .find(|a| a.labels["alertname"] == "MemoryWillExhaust")
        .unwrap();
    assert!(
        !a.explanation.suggestion.contains("leak"),
        "{}",
        a.explanation.suggestion
    );
}

#[test]
fn latency_anomaly_names_the_changepoint_time() {
    let s = series(&[
        ("__name__", "http_server_request_duration_seconds"),
        ("service_name", "api"),
    ]);
    let shift = Signal {
        at_ms: T0,
        series: Arc::clone(&s),
        body: SignalBody::LevelShift {
            changed_at_ms: T0 - 10 * MIN,
            before: 0.12,
            after: 0.48,
        },
    };
    let toml =
        "[alerting]\ndefault_rules = false\n[[rules]]\nname = \"Slow\"\nkind = \"anomaly\"\n";
    let alerts = fire(toml, None, &[shift, anomalous_step(T0, &s, 0.5, 0.95)]);
    let ex = &alerts[0].explanation;
    assert_eq!(ex.changepoint_ms, Some(T0 - 10 * MIN));
    assert!(
        ex.suggestion
            .contains("latency level changed at 2023-11-14T22:03:20Z"),
        "{}",
        ex.suggestion
    );
    assert!(
        ex.suggestion.contains("from 0.12 to 0.48"),
        "{}",
        ex.suggestion
    );
    assert!(
        ex.summary.contains("above its expected band"),
        "{}",
        ex.summary
    );
    assert!(ex.text.contains("Score 0.95"), "{}", ex.text);
}

#[test]
fn new_error_log_pattern_names_template_and_first_seen() {
    let toml = "[alerting]\ndefault_rules = false\n[[rules]]\nname = \"NewErrors\"\nkind = \"log_pattern\"\nseverity = \"error\"\n";
    let alerts = fire(toml, None, &[super::rules::log_signal("error", true, 0.0)]);
    let ex = &alerts[0].explanation;
    assert!(
        ex.summary
            .contains("New error log pattern in checkout: `connection to <*> refused`"),
        "{}",
        ex.summary
    );
    assert!(
        ex.suggestion.contains("first seen at 2023-11-14T22:08:20Z"),
        "{}",
        ex.suggestion
    );
    assert!(
        ex.suggestion
            .contains("connection to 10.0.0.7:5432 refused"),
        "{}",
        ex.suggestion
    );
}

#[test]
fn configured_remediations_come_first_and_use_templates() {
    let toml = r#"
[alerting]
default_rules = false
[[rules]]
name = "Q"
kind = "static"
select = "queue_depth"
threshold = 100
[[remediations]]
metric = "queue_.*"
kinds = ["static"]
text = "Scale the consumers of {{ labels.queue }}: depth {{ value }} > {{ threshold }}"
[[remediations]]
metric = "queue"
text = "never: the regex is anchored"
"#;
    let s = series(&[("__name__", "queue_depth"), ("queue", "orders")]);
    let alerts = fire(toml, None, &[normal_step(T0, &s, 250.0)]);
    assert_eq!(
        alerts[0].explanation.suggestion,
        "Scale the consumers of orders: depth 250 > 100"
    );
}

#[test]
fn related_alerts_on_the_same_host_are_listed() {
    let disk = series(&[
        ("__name__", "system_filesystem_utilization"),
        ("host_name", "web-1"),
        ("mountpoint", "/"),
    ]);
    let load = series(&[("__name__", "load"), ("host_name", "web-1")]);
    let elsewhere = series(&[("__name__", "load"), ("host_name", "web-2")]);
    let toml =
        "[[rules]]\nname = \"HighLoad\"\nkind = \"static\"\nselect = \"load\"\nthreshold = 1\n";
    let mut e = Evaluator::from_config(&config(toml), None).unwrap();
    e.ingest(
        &[
            breach(
                T0,
                &disk,
                "DiskWillFill",
                0.9,
                0.85,
                Some((600.0, 900.0, 1200.0)),
                1e-5,
            ),
            normal_step(T0, &load, 5.0),
            normal_step(T0, &elsewhere, 5.0),
        ],
        0,
    );
    e.evaluate(T0);
    // Summaries feed the next evaluation's related lists.
    e.evaluate(T0 + 1);
    let by_name = |host: &str, name: &str| {
        e.alerts()
            .map(|(a, _)| a)
            .find(|a| a.labels["alertname"] == name && a.labels["host_name"] == host)
            .unwrap()
            .clone()
    };
    let disk_alert = by_name("web-1", "DiskWillFill");
    assert_eq!(
        disk_alert.explanation.related.len(),
        1,
        "{:?}",
        disk_alert.explanation.related
    );
    assert!(
        disk_alert.explanation.related[0].starts_with("HighLoad since 20"),
        "{:?}",
        disk_alert.explanation.related
    );
    assert!(
        disk_alert
            .explanation
            .text
            .contains("Also on the same host or pod during this alert")
    );
    let other = by_name("web-2", "HighLoad");
    assert!(other.explanation.related.is_empty());
}

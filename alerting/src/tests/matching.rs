//! Selectors, matchers and templates.

use super::labels;
use crate::matcher::{LabelMatcher, MatchType, Selector};
use crate::template::{self, TemplateContext};

#[test]
fn selectors_match_like_prometheus() {
    let s = labels(&[
        ("__name__", "system_filesystem_utilization"),
        ("mountpoint", "/var"),
        ("host_name", "web-1"),
    ]);
    let cases = [
        ("{}", true),
        ("", true),
        ("system_filesystem_utilization", true),
        ("system_memory_utilization", false),
        (r#"system_filesystem_utilization{mountpoint="/var"}"#, true),
        (r#"{mountpoint!="/var"}"#, false),
        (r#"{host_name=~"web-.*"}"#, true),
        (r#"{host_name=~"web"}"#, false), // anchored
        (r#"{host_name!~"db-.*"}"#, true),
        (r#"{absent=""}"#, true),
        (r#"{absent!=""}"#, false),
        (r#"{mountpoint="/" or host_name="web-1"}"#, true),
    ];
    for (text, want) in cases {
        let sel = Selector::parse(text).unwrap();
        assert_eq!(sel.matches(&s), want, "{text}");
    }
}

#[test]
fn alert_selectors_match_the_metric_label() {
    let alert = labels(&[("metric", "node_load1"), ("severity", "warning")]);
    let sel = Selector::parse_for_alerts(r#"node_load1{severity=~"warning|critical"}"#).unwrap();
    assert!(sel.matches(&alert));
    let sel = Selector::parse_for_alerts(r#"node_load5{severity="warning"}"#).unwrap();
    assert!(!sel.matches(&alert));
}

#[test]
fn bad_selectors_are_refused_with_the_text() {
    for text in ["rate(x[5m])", "{", r#"{a=~"("}"#, "x offset 5m"] {
        let err = Selector::parse(text).unwrap_err().to_string();
        assert!(err.contains("invalid selector"), "{text}: {err}");
    }
}

#[test]
fn matchers_use_alertmanager_v2_json() {
    let m = LabelMatcher::new("severity", MatchType::NotRegex, "info|debug").unwrap();
    let json = serde_json::to_value(&m).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "severity", "value": "info|debug", "isRegex": true, "isEqual": false})
    );
    let back: LabelMatcher = serde_json::from_value(json).unwrap();
    assert_eq!(back, m);
    assert!(back.matches_value("warning"));
    assert!(!back.matches_value("info"));
    let bad = serde_json::from_value::<LabelMatcher>(
        serde_json::json!({"name": "a", "value": "(", "isRegex": true}),
    );
    assert!(bad.is_err());
}

#[test]
fn templates_substitute_known_placeholders_only() {
    let l = labels(&[("host_name", "web-1"), ("mountpoint", "/var")]);
    let ctx = TemplateContext {
        labels: Some(&l),
        rule: "DiskWillFill",
        value: Some(0.8234),
        expected: Some(0.8),
        lower: None,
        upper: Some(0.85),
        score: Some(0.97),
        threshold: Some(0.9),
        eta_seconds: Some(11_400.0),
    };
    let out = template::render(
        "{{ rule }}: {{labels.mountpoint}} on {{ labels.host_name }} at {{ value }} \
         (expected {{ expected }}, {{ lower }}..{{ upper }}, score {{ score }}), \
         {{ threshold }} in {{ eta }}; {{ bogus }} {{ labels.missing }}| {{ unclosed",
        &ctx,
    );
    assert_eq!(
        out,
        "DiskWillFill: /var on web-1 at 0.8234 (expected 0.8, n/a..0.85, score 0.97), \
         0.9 in 3h10m; {{ bogus }} | {{ unclosed"
    );
}

#[test]
fn human_formats() {
    assert_eq!(template::duration_secs(11_400.0), "3h10m");
    assert_eq!(template::duration_secs(9_600.0), "2h40m");
    assert_eq!(template::duration_secs(45.0), "45s");
    assert_eq!(template::duration_secs(0.0), "0s");
    assert_eq!(
        template::duration_secs(2.0 * 86_400.0 + 4.0 * 3600.0 + 59.0),
        "2d4h"
    );
    assert_eq!(template::bytes(35.0 * 1024.0 * 1024.0 * 1024.0), "35.0 GiB");
    assert_eq!(template::percent(0.931), "93.1%");
    assert_eq!(template::percent(0.9), "90%");
    assert_eq!(template::number(1234.5678), "1235");
    assert_eq!(template::number(0.5), "0.5");
    assert_eq!(template::timestamp(0), "1970-01-01T00:00:00Z");
}

/// Found by the `selector` fuzz target: a selector shown from its matchers (silences, inhibit
/// rules) must parse back to the same matchers, also for quoted UTF-8 label names and values
/// with escapes.
#[test]
fn matchers_display_as_selectors_that_parse_back() {
    for text in [
        r#"{"utf8.metric.name", "quoted.label"="v"}"#,
        r#"{"service.name"=~"a|b", severity!="info"}"#,
        "{a=\"line\\nbreak \\\\ \\\"quoted\\\"\"}",
    ] {
        let sel = Selector::parse(text).unwrap();
        for alt in sel.alternatives() {
            let shown = Selector::from_matchers(alt.clone());
            let again = Selector::parse(shown.as_str())
                .unwrap_or_else(|e| panic!("{text} shown as {shown}: {e}"));
            assert_eq!(
                again.alternatives().concat(),
                *alt,
                "{text} shown as {shown}"
            );
        }
    }
}

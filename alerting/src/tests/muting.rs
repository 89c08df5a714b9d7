//! Silences and inhibition.

use super::dispatch::alert;
use super::*;
use crate::alert::{Alert, AlertState};
use crate::inhibit::Inhibitor;
use crate::lifecycle::fingerprint;
use crate::silence::{MatchersInput, SilenceSpec, SilenceState, Silences, TimeInput};

fn spec(matchers: MatchersInput, starts: Option<i64>, ends: Option<i64>) -> SilenceSpec {
    SilenceSpec {
        id: None,
        matchers,
        starts_at: starts.map(TimeInput::Millis),
        ends_at: ends.map(TimeInput::Millis),
        duration: None,
        created_by: "ops".into(),
        comment: "maintenance".into(),
    }
}

#[test]
fn silences_mute_while_active_and_expire() {
    let mut s = Silences::new();
    let web1 = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    let web2 = alert("HighLoad", "web-2", "warning", AlertState::Firing);
    let id = s
        .create(
            &spec(
                MatchersInput::Selector(
                    r#"{alertname="HighLoad",host_name=~"web-1|web-9"}"#.into(),
                ),
                None,
                Some(T0 + 3_600_000),
            ),
            T0,
        )
        .unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(s.muting(&web1.labels, T0 + 1), vec![id.clone()]);
    assert!(s.muting(&web2.labels, T0 + 1).is_empty());
    assert!(s.muting(&web1.labels, T0 + 3_600_000).is_empty(), "ended");
    s.expire(&id, T0 + 10).unwrap();
    assert!(s.muting(&web1.labels, T0 + 11).is_empty());
    assert_eq!(s.get(&id).unwrap().state(T0 + 11), SilenceState::Expired);
    assert!(s.expire("nope", T0).is_err());
    // Listed until the retention passes, then dropped.
    assert_eq!(s.list().len(), 1);
    s.gc(T0 + 6 * 24 * 3_600_000);
    assert!(s.is_empty());
}

#[test]
fn pending_silences_start_later_and_json_matches_alertmanager() {
    let mut s = Silences::new();
    let spec_json = serde_json::json!({
        "matchers": [{"name": "alertname", "value": "HighLoad", "isRegex": false, "isEqual": true}],
        "startsAt": "2023-11-14T23:13:20Z",
        "endsAt": "2023-11-15T00:13:20Z",
        "createdBy": "ops",
        "comment": "deploy"
    });
    let spec: SilenceSpec = serde_json::from_value(spec_json).unwrap();
    let id = s.create(&spec, T0).unwrap();
    let a = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    assert!(s.muting(&a.labels, T0).is_empty(), "pending");
    assert!(
        !s.muting(&a.labels, T0 + 3_600_000).is_empty(),
        "active after startsAt"
    );
    let json = s.get(&id).unwrap().to_api_json(T0);
    assert_eq!(json["status"]["state"], "pending");
    assert_eq!(json["startsAt"], "2023-11-14T23:13:20Z");
    assert_eq!(json["matchers"][0]["isEqual"], true);
}

#[test]
fn bad_silences_are_refused() {
    let mut s = Silences::new();
    let all = MatchersInput::Selector(r#"{host_name=~".*"}"#.into());
    assert!(s.create(&spec(all, None, Some(T0 + 1000)), T0).is_err());
    let ok = || MatchersInput::Selector(r#"{alertname="X"}"#.into());
    assert!(s.create(&spec(ok(), None, None), T0).is_err(), "no end");
    assert!(
        s.create(&spec(ok(), Some(T0 + 10), Some(T0 + 5)), T0)
            .is_err()
    );
    assert!(s.create(&spec(ok(), None, Some(T0 - 1)), T0).is_err());
    let bad_re = MatchersInput::List(vec![crate::matcher::MatcherSpec {
        name: "a".into(),
        value: "(".into(),
        is_regex: true,
        is_equal: true,
    }]);
    assert!(s.create(&spec(bad_re, None, Some(T0 + 1000)), T0).is_err());
    assert!(s.is_empty());
}

fn series_alert(name: &str, kind: &str, severity: &str, state: AlertState, mount: &str) -> Alert {
    let labels = labels(&[
        ("alertname", name),
        ("rule_kind", kind),
        ("severity", severity),
        ("metric", "system_filesystem_utilization"),
        ("mountpoint", mount),
        ("host_name", "web-1"),
    ]);
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        ..alert("x", "y", "z", state)
    }
}

#[test]
fn critical_breach_mutes_warning_anomaly_on_the_same_series() {
    let inh = Inhibitor::new(&[]).unwrap();
    let breach = series_alert(
        "DiskWillFill",
        "breach",
        "critical",
        AlertState::Firing,
        "/var",
    );
    let anomaly = series_alert(
        "SeriesAnomalous",
        "anomaly",
        "warning",
        AlertState::Firing,
        "/var",
    );
    let other = series_alert(
        "SeriesAnomalous",
        "anomaly",
        "warning",
        AlertState::Firing,
        "/home",
    );
    let all = [breach.clone(), anomaly.clone(), other.clone()];
    let muted = inh.inhibited(all.iter());
    assert_eq!(
        muted.get(&anomaly.fingerprint),
        Some(&vec![breach.fingerprint.clone()])
    );
    assert!(!muted.contains_key(&other.fingerprint));
    assert!(!muted.contains_key(&breach.fingerprint));
    // A breach that no longer fires mutes nothing.
    let resolved = series_alert(
        "DiskWillFill",
        "breach",
        "critical",
        AlertState::Resolved,
        "/var",
    );
    assert!(inh.inhibited([resolved, anomaly].iter()).is_empty());
}

#[test]
fn configured_inhibitions_compare_equal_labels() {
    let cfg = config(
        r#"
[[inhibit]]
source = '{alertname="HostDown"}'
target = '{severity="warning"}'
equal = ["host_name"]
"#,
    );
    let inh = Inhibitor::new(&cfg.inhibit).unwrap();
    let down = alert("HostDown", "web-1", "critical", AlertState::Firing);
    let same_host = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    let other_host = alert("HighLoad", "web-2", "warning", AlertState::Firing);
    let muted = inh.inhibited([down.clone(), same_host.clone(), other_host.clone()].iter());
    assert_eq!(
        muted.get(&same_host.fingerprint),
        Some(&vec![down.fingerprint])
    );
    assert!(!muted.contains_key(&other_host.fingerprint));
}

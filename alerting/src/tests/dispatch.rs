//! Routing, grouping timers and deduplication (wall clock injected as plain ms).

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::alert::{Alert, AlertState};
use crate::dispatch::{Dispatcher, Planned, Routes};
use crate::lifecycle::fingerprint;
use crate::nflog::{Entry, NotificationLog, needs_update};

pub(crate) fn alert(name: &str, host: &str, severity: &str, state: AlertState) -> Alert {
    let labels = labels(&[
        ("alertname", name),
        ("host_name", host),
        ("severity", severity),
        ("rule_kind", "static"),
    ]);
    Alert {
        fingerprint: fingerprint(&labels),
        labels,
        annotations: BTreeMap::new(),
        state,
        active_since_ms: T0,
        fired_at_ms: Some(T0),
        resolved_at_ms: None,
        last_seen_ms: T0,
        explanation: Default::default(),
        generator_url: String::new(),
    }
}

/// A dispatcher, the alert store, and a log, driven by hand.
struct Rig {
    d: Dispatcher,
    alerts: BTreeMap<String, Alert>,
    log: NotificationLog,
    muted: BTreeSet<String>,
}

impl Rig {
    fn new(toml: &str) -> Self {
        Self {
            d: Dispatcher::new(Routes::from_config(&config(toml)).unwrap()),
            alerts: BTreeMap::new(),
            log: NotificationLog::new(),
            muted: BTreeSet::new(),
        }
    }

    fn fire(&mut self, a: &Alert, now: i64) {
        self.alerts.insert(a.fingerprint.clone(), a.clone());
        self.d.add(a, now);
    }

    fn set_state(&mut self, fp: &str, state: AlertState) {
        if let Some(a) = self.alerts.get_mut(fp) {
            a.state = state;
        }
    }

    /// Flushes what is due at `now`; every delivery succeeds and is logged.
    fn flush(&mut self, now: i64) -> Vec<Planned> {
        let mut out = Vec::new();
        for key in self.d.due(now) {
            let alerts = &self.alerts;
            let muted = &self.muted;
            out.extend(self.d.flush(
                &key,
                now,
                |fp| alerts.get(fp),
                |a| muted.contains(&a.fingerprint),
                &self.log,
                |_, _| false,
            ));
        }
        for p in &out {
            self.log.record(
                &p.group_key,
                &p.receiver,
                Entry {
                    firing: p.firing.clone(),
                    resolved: p.resolved.clone(),
                    sent_at_ms: now,
                },
            );
        }
        out.retain(|p| p.deliver);
        out
    }
}

const ROUTE: &str = r#"
[[receivers]]
name = "hook"
webhook = { url = "http://127.0.0.1:9/hook" }

[[routes]]
receivers = ["hook"]
group_by = ["alertname"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"
"#;

const S: i64 = 1000;

#[test]
fn group_wait_then_group_interval_then_repeat_interval() {
    let mut r = Rig::new(ROUTE);
    let a = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    r.fire(&a, T0);
    assert_eq!(r.d.next_deadline(), Some(T0 + 30 * S));
    assert!(r.flush(T0 + 29 * S).is_empty(), "before group_wait");
    // A second alert of the same group joins during group_wait: one notification for both.
    let b = alert("HighLoad", "web-2", "warning", AlertState::Firing);
    r.fire(&b, T0 + 10 * S);
    let sent = r.flush(T0 + 30 * S);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alerts.len(), 2);
    assert_eq!(sent[0].group_labels, labels(&[("alertname", "HighLoad")]));
    assert_eq!(r.d.next_deadline(), Some(T0 + 30 * S + 5 * MIN));
    // Unchanged: nothing at the next group_interval.
    assert!(r.flush(T0 + 30 * S + 5 * MIN).is_empty());
    // A new alert joins: sent at the next group_interval tick, not before.
    let c = alert("HighLoad", "web-3", "warning", AlertState::Firing);
    r.fire(&c, T0 + 6 * MIN);
    assert!(r.flush(T0 + 7 * MIN).is_empty());
    let sent = r.flush(T0 + 30 * S + 10 * MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].firing.len(), 3);
    // Unchanged firing group: repeated after repeat_interval (4h) at a group_interval tick.
    let mut t = T0 + 30 * S + 10 * MIN;
    let mut repeats = Vec::new();
    while t < T0 + 5 * 3600 * S {
        t += 5 * MIN;
        if !r.flush(t).is_empty() {
            repeats.push(t);
        }
    }
    assert_eq!(repeats, vec![T0 + 30 * S + 10 * MIN + 4 * 3600 * S]);
}

#[test]
fn resolved_alerts_are_sent_once_with_send_resolved_and_the_group_ends() {
    let mut r = Rig::new(ROUTE);
    let a = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    r.fire(&a, T0);
    assert_eq!(r.flush(T0 + 30 * S).len(), 1);
    r.set_state(&a.fingerprint, AlertState::Resolved);
    let sent = r.flush(T0 + 30 * S + 5 * MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alerts[0].state, AlertState::Resolved);
    assert!(sent[0].firing.is_empty());
    // Logged as resolved: the alert leaves the group, the group ends.
    assert!(r.flush(T0 + 30 * S + 10 * MIN).is_empty());
    assert_eq!(r.d.groups().count(), 0);
}

#[test]
fn without_send_resolved_a_resolution_is_logged_but_not_sent() {
    let toml = ROUTE.replace(
        "repeat_interval = \"4h\"",
        "repeat_interval = \"4h\"\nsend_resolved = false",
    );
    let mut r = Rig::new(&toml);
    let a = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    let b = alert("HighLoad", "web-2", "warning", AlertState::Firing);
    r.fire(&a, T0);
    r.fire(&b, T0);
    assert_eq!(r.flush(T0 + 30 * S).len(), 1);
    // One resolves: nothing is sent (no new firing alert).
    r.set_state(&a.fingerprint, AlertState::Resolved);
    assert!(r.flush(T0 + 30 * S + 5 * MIN).is_empty());
    // All resolve: the log is updated, nothing goes out.
    r.set_state(&b.fingerprint, AlertState::Resolved);
    assert!(r.flush(T0 + 30 * S + 10 * MIN).is_empty());
    let key = r.log_key();
    assert!(r.log.get(&key, "hook").unwrap().firing.is_empty());
}

impl Rig {
    fn log_key(&self) -> String {
        self.d.routes().all()[0].group_key(&labels(&[("alertname", "HighLoad")]))
    }
}

#[test]
fn muted_alerts_are_left_out_and_unmuting_sends_them() {
    let mut r = Rig::new(ROUTE);
    let a = alert("HighLoad", "web-1", "warning", AlertState::Firing);
    r.muted.insert(a.fingerprint.clone());
    r.fire(&a, T0);
    assert!(r.flush(T0 + 30 * S).is_empty());
    r.muted.clear();
    let sent = r.flush(T0 + 30 * S + 5 * MIN);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].alerts[0].fingerprint, a.fingerprint);
}

#[test]
fn routes_first_match_wins_unless_continue() {
    let toml = r#"
[[receivers]]
name = "pager"
webhook = { url = "http://127.0.0.1:9/pager" }
[[receivers]]
name = "chat"
webhook = { url = "http://127.0.0.1:9/chat" }
[[receivers]]
name = "archive"
webhook = { url = "http://127.0.0.1:9/archive" }

[[routes]]
match = '{severity="critical"}'
receivers = ["pager"]
continue = true
[[routes]]
match = '{severity=~"warning|critical"}'
receivers = ["chat"]
[[routes]]
receivers = ["archive"]
"#;
    let routes = Routes::from_config(&config(toml)).unwrap();
    let recv = |sev: &str| -> Vec<String> {
        routes
            .matching(&labels(&[("severity", sev)]))
            .iter()
            .flat_map(|r| r.receivers.clone())
            .collect()
    };
    assert_eq!(recv("critical"), vec!["pager", "chat"]);
    assert_eq!(recv("warning"), vec!["chat"]);
    assert_eq!(recv("info"), vec!["archive"]);
    // No routes: every receiver gets everything, with the route defaults.
    let none = Routes::from_config(&config(
        "[[receivers]]\nname = \"a\"\nconsole = {}\n[[receivers]]\nname = \"b\"\nconsole = {}\n",
    ))
    .unwrap();
    let all = none.matching(&labels(&[("severity", "info")]));
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].receivers, vec!["a", "b"]);
    assert_eq!(all[0].group_wait_ms, 30 * S);
    assert_eq!(all[0].group_by, vec!["alertname"]);
}

#[test]
fn group_by_all_labels_makes_one_group_per_alert() {
    let toml = ROUTE.replace("group_by = [\"alertname\"]", "group_by = [\"...\"]");
    let mut r = Rig::new(&toml);
    r.fire(
        &alert("HighLoad", "web-1", "warning", AlertState::Firing),
        T0,
    );
    r.fire(
        &alert("HighLoad", "web-2", "warning", AlertState::Firing),
        T0,
    );
    assert_eq!(r.flush(T0 + 30 * S).len(), 2);
}

#[test]
fn dedup_follows_alertmanager() {
    let set = |v: &[&str]| {
        v.iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<String>>()
    };
    let e = Entry {
        firing: set(&["a", "b"]),
        resolved: set(&[]),
        sent_at_ms: 0,
    };
    let h = 3_600_000;
    // Never notified: when something fires, or — with send_resolved — when an alert fired
    // and resolved before the first notification.
    assert!(needs_update(None, &set(&["a"]), &set(&[]), true, h, 1));
    assert!(needs_update(None, &set(&[]), &set(&["a"]), true, h, 1));
    assert!(!needs_update(None, &set(&[]), &set(&["a"]), false, h, 1));
    assert!(!needs_update(None, &set(&[]), &set(&[]), true, h, 1));
    // New firing alert.
    assert!(needs_update(
        Some(&e),
        &set(&["a", "c"]),
        &set(&[]),
        true,
        h,
        1
    ));
    // Subset, same: only after repeat.
    assert!(!needs_update(
        Some(&e),
        &set(&["a", "b"]),
        &set(&[]),
        true,
        h,
        h - 1
    ));
    assert!(needs_update(
        Some(&e),
        &set(&["a", "b"]),
        &set(&[]),
        true,
        h,
        h
    ));
    // One resolved: with send_resolved yes, without no.
    assert!(needs_update(
        Some(&e),
        &set(&["a"]),
        &set(&["b"]),
        true,
        h,
        1
    ));
    assert!(!needs_update(
        Some(&e),
        &set(&["a"]),
        &set(&["b"]),
        false,
        h,
        1
    ));
    // All resolved: yes either way (clears the log), and not again.
    assert!(needs_update(
        Some(&e),
        &set(&[]),
        &set(&["a", "b"]),
        false,
        h,
        1
    ));
    let cleared = Entry {
        firing: set(&[]),
        resolved: set(&["a", "b"]),
        sent_at_ms: 1,
    };
    assert!(!needs_update(
        Some(&cleared),
        &set(&[]),
        &set(&["a", "b"]),
        true,
        h,
        2
    ));
}

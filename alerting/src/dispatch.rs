//! Routing and grouping, in wall-clock time.
//!
//! Routes are tried in order and the first match wins unless it says `continue`; with no routes
//! configured every receiver gets every alert (one catch-all route with the route defaults).
//! A route splits its alerts into groups by its `group_by` labels (`...` = all labels). A new
//! group waits `group_wait` before its first flush, then flushes every `group_interval`; each
//! flush asks the notification log whether each receiver needs a notification
//! ([`crate::nflog::needs_update`]), so an unchanged firing group is repeated only after
//! `repeat_interval`.

use std::collections::{BTreeMap, BTreeSet};

use presage_config::{ForecasterConfig, RouteConfig};

use crate::alert::{Alert, AlertState};
use crate::error::{Error, Result};
use crate::matcher::Selector;
use crate::nflog::{self, NotificationLog};
use crate::signal::LabelSet;

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Position among the routes.
    pub index: usize,
    /// Which alerts it takes.
    pub selector: Selector,
    /// Receivers by name.
    pub receivers: Vec<String>,
    /// Labels the groups are keyed on (empty with `group_all`).
    pub group_by: Vec<String>,
    /// `group_by = ["..."]`: one group per label set.
    pub group_all: bool,
    /// First notification of a new group after this long (ms).
    pub group_wait_ms: i64,
    /// Least time between notifications of a group (ms).
    pub group_interval_ms: i64,
    /// An unchanged firing group is notified again after this long (ms).
    pub repeat_interval_ms: i64,
    /// Keep matching the next routes.
    pub continue_matching: bool,
    /// Notify resolved alerts.
    pub send_resolved: bool,
}

impl Route {
    /// Compiles one route.
    pub fn compile(index: usize, c: &RouteConfig) -> Result<Self> {
        Ok(Self {
            index,
            selector: Selector::parse_for_alerts(&c.matcher)?,
            receivers: c.receivers.clone(),
            group_all: c.group_by.iter().any(|l| l == "..."),
            group_by: c.group_by.iter().filter(|l| *l != "...").cloned().collect(),
            group_wait_ms: c.group_wait.as_millis() as i64,
            group_interval_ms: (c.group_interval.as_millis() as i64).max(1),
            repeat_interval_ms: c.repeat_interval.as_millis() as i64,
            continue_matching: c.continue_matching,
            send_resolved: c.send_resolved,
        })
    }

    /// The labels of the group an alert falls in.
    pub fn group_labels(&self, labels: &LabelSet) -> LabelSet {
        if self.group_all {
            return labels.clone();
        }
        self.group_by
            .iter()
            .filter_map(|k| labels.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }

    /// The group key: route and group labels, as Alertmanager's `groupKey`.
    pub fn group_key(&self, group_labels: &LabelSet) -> String {
        let inner: Vec<String> = group_labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        format!("{{}}/route{}:{{{}}}", self.index, inner.join(", "))
    }
}

/// The routes in effect.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// The configured routes, or one catch-all route to every receiver when none is configured.
    pub fn from_config(config: &ForecasterConfig) -> Result<Self> {
        if config.routes.is_empty() {
            if config.receivers.is_empty() {
                return Ok(Self::default());
            }
            let names: Vec<&str> = config.receivers.iter().map(|r| r.name.as_str()).collect();
            let catch_all: RouteConfig =
                serde_json::from_value(serde_json::json!({ "receivers": names })).map_err(|e| {
                    Error::Selector {
                        text: "{}".into(),
                        reason: format!("default route: {e}"),
                    }
                })?;
            return Ok(Self {
                routes: vec![Route::compile(0, &catch_all)?],
            });
        }
        let routes = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| Route::compile(i, r))
            .collect::<Result<_>>()?;
        Ok(Self { routes })
    }

    /// Routes from compiled parts (tests, embedding).
    pub fn new(routes: Vec<Route>) -> Self {
        Self { routes }
    }

    /// The routes an alert takes: in order, stopping after the first match without `continue`.
    pub fn matching(&self, labels: &LabelSet) -> Vec<&Route> {
        let mut out = Vec::new();
        for r in &self.routes {
            if r.selector.matches(labels) {
                out.push(r);
                if !r.continue_matching {
                    break;
                }
            }
        }
        out
    }

    /// All routes.
    pub fn all(&self) -> &[Route] {
        &self.routes
    }
}

/// A group of alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Its key.
    pub key: String,
    /// The route's index.
    pub route: usize,
    /// Its labels.
    pub labels: LabelSet,
    /// Fingerprints of its alerts.
    pub alerts: BTreeSet<String>,
    /// Next flush (wall clock, ms).
    pub next_flush_ms: i64,
}

/// A notification to send (or, with `deliver == false`, only to record: nothing is left to send
/// to that receiver once resolved alerts are filtered out).
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The group's key.
    pub group_key: String,
    /// The group's labels.
    pub group_labels: LabelSet,
    /// The receiver.
    pub receiver: String,
    /// The alerts to send, firing first.
    pub alerts: Vec<Alert>,
    /// The group's unmuted firing fingerprints (logged on success).
    pub firing: BTreeSet<String>,
    /// The group's unmuted resolved fingerprints (logged on success).
    pub resolved: BTreeSet<String>,
    /// Whether anything goes out.
    pub deliver: bool,
}

/// Groups alerts and decides when groups are notified.
#[derive(Debug, Clone, Default)]
pub struct Dispatcher {
    routes: Routes,
    groups: BTreeMap<String, Group>,
}

impl Dispatcher {
    /// A dispatcher over routes.
    pub fn new(routes: Routes) -> Self {
        Self {
            routes,
            groups: BTreeMap::new(),
        }
    }

    /// The routes.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Puts a firing alert in the groups of its routes; a new group's first flush is
    /// `group_wait` from `now_ms`.
    pub fn add(&mut self, alert: &Alert, now_ms: i64) {
        if alert.state != AlertState::Firing {
            return;
        }
        self.add_where(alert, now_ms, |_| true);
    }

    /// Puts a restored alert back in its groups: a firing one in all, a resolved one in those
    /// whose log still has it firing (so its resolution is sent).
    pub fn add_restored(&mut self, alert: &Alert, now_ms: i64, nflog: &NotificationLog) {
        match alert.state {
            AlertState::Firing => self.add(alert, now_ms),
            AlertState::Resolved => self.add_where(alert, now_ms, |key| {
                nflog.any_firing(key, &alert.fingerprint)
            }),
            AlertState::Pending => {}
        }
    }

    fn add_where(&mut self, alert: &Alert, now_ms: i64, keep: impl Fn(&str) -> bool) {
        for route in self.routes.matching(&alert.labels) {
            let labels = route.group_labels(&alert.labels);
            let key = route.group_key(&labels);
            if !keep(&key) {
                continue;
            }
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                key,
                route: route.index,
                labels,
                alerts: BTreeSet::new(),
                next_flush_ms: now_ms + route.group_wait_ms,
            });
            group.alerts.insert(alert.fingerprint.clone());
        }
    }

    /// The groups.
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// The earliest flush due (wall ms).
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Keys of the groups due at `now_ms`.
    pub fn due(&self, now_ms: i64) -> Vec<String> {
        self.groups
            .values()
            .filter(|g| g.next_flush_ms <= now_ms)
            .map(|g| g.key.clone())
            .collect()
    }

    /// Flushes a group: what each receiver is to be sent. `lookup` finds an alert by
    /// fingerprint, `muted` says whether it is silenced or inhibited, `busy` whether a delivery
    /// to (group, receiver) is still in flight (that receiver is skipped until the next flush).
    /// The group's next flush is set `group_interval` ahead; resolved alerts that no receiver
    /// still has as firing leave the group, and a group left empty is dropped.
    pub fn flush<'a>(
        &mut self,
        key: &str,
        now_ms: i64,
        lookup: impl Fn(&str) -> Option<&'a Alert>,
        muted: impl Fn(&Alert) -> bool,
        nflog: &NotificationLog,
        busy: impl Fn(&str, &str) -> bool,
    ) -> Vec<Planned> {
        let Some(group) = self.groups.get_mut(key) else {
            return Vec::new();
        };
        let Some(route) = self.routes.routes.get(group.route) else {
            self.groups.remove(key);
            return Vec::new();
        };
        group.alerts.retain(|fp| lookup(fp).is_some());
        let mut firing_alerts = Vec::new();
        let mut resolved_alerts = Vec::new();
        for fp in &group.alerts {
            let Some(a) = lookup(fp) else { continue };
            if muted(a) {
                continue;
            }
            match a.state {
                AlertState::Firing => firing_alerts.push(a),
                AlertState::Resolved => resolved_alerts.push(a),
                AlertState::Pending => {}
            }
        }
        let firing: BTreeSet<String> = firing_alerts
            .iter()
            .map(|a| a.fingerprint.clone())
            .collect();
        let resolved: BTreeSet<String> = resolved_alerts
            .iter()
            .map(|a| a.fingerprint.clone())
            .collect();
        let mut out = Vec::new();
        for receiver in &route.receivers {
            if busy(key, receiver) {
                continue;
            }
            let entry = nflog.get(key, receiver);
            if !nflog::needs_update(
                entry,
                &firing,
                &resolved,
                route.send_resolved,
                route.repeat_interval_ms,
                now_ms,
            ) {
                continue;
            }
            let mut alerts: Vec<Alert> = firing_alerts.iter().map(|a| (*a).clone()).collect();
            if route.send_resolved {
                alerts.extend(resolved_alerts.iter().map(|a| (*a).clone()));
            }
            out.push(Planned {
                group_key: key.to_string(),
                group_labels: group.labels.clone(),
                receiver: receiver.clone(),
                deliver: !alerts.is_empty(),
                alerts,
                firing: firing.clone(),
                resolved: resolved.clone(),
            });
        }
        group.next_flush_ms = now_ms + route.group_interval_ms;
        // Resolved alerts stay until every receiver's log shows them no longer firing, so a
        // failed delivery of a resolution is tried again.
        let planned_resolution: BTreeSet<&str> = out
            .iter()
            .filter(|p| !p.deliver)
            .flat_map(|p| p.resolved.iter().map(String::as_str))
            .collect();
        group.alerts.retain(|fp| {
            lookup(fp).is_some_and(|a| {
                a.state != AlertState::Resolved
                    || (nflog.any_firing(key, fp) && !planned_resolution.contains(fp.as_str()))
            })
        });
        if group.alerts.is_empty() && out.iter().all(|p| !p.deliver) {
            self.groups.remove(key);
        }
        out
    }
}

//! The alert lifecycle, in event time.
//!
//! Signals set the latest condition of each (rule, series) pair ([`Evaluator::ingest`]);
//! [`Evaluator::evaluate`] then advances every pair to `now` (event time):
//!
//! - a condition that holds makes a pending alert, which fires once it has held for the rule's
//!   `for` (at once when `for` is 0);
//! - a pending alert whose condition clears is dropped; a firing one keeps firing for the rule's
//!   `keep_firing_for` after the condition was last seen, then resolves;
//! - a resolved alert is kept for `alerting.resolved_retention`, then forgotten.
//!
//! A condition holds while its latest signal says so and that signal is recent: a pair whose
//! series sends nothing for [`STALE_STEPS`] evaluation steps (the larger of the model step and
//! `alerting.eval_interval`) counts as cleared, so a series that stops reporting resolves.
//! Detectors therefore re-send breach, outlier and log-pattern signals at least that often
//! while they hold.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use presage_config::{ForecasterConfig, RuleKind};
use serde::{Deserialize, Serialize};

use crate::alert::{Alert, AlertState};
use crate::error::Result;
use crate::explain::{Catalog, ExplainInput, MetricClass, ShiftFacts, StepFacts, classify};
use crate::matcher::ALERT_METRIC_LABEL;
use crate::rules::{self, Condition, Rule};
use crate::signal::{LabelSet, METRIC_NAME, ModelContext, Signal, SignalBody};
use crate::template::{self, url_encode};

/// Steps without a signal after which a condition counts as cleared.
pub const STALE_STEPS: i64 = 5;
/// Level shifts are remembered this long (event time) for explanations.
const SHIFT_RETENTION_MS: i64 = 24 * 3600 * 1000;
/// Most level shifts remembered.
const MAX_SHIFTS: usize = 10_000;
/// Most related alerts listed in an explanation.
const MAX_RELATED: usize = 5;
/// Alerts at the same host or pod are related when their active times overlap or lie at most
/// this far apart (event time).
const CORRELATION_WINDOW_MS: i64 = 10 * 60_000;
/// Labels that say which host or pod a series is on.
pub const LOCATION_LABELS: [&str; 3] = ["host_name", "instance", "k8s_pod_name"];

/// Stable id of a label set: xxh3 over the sorted pairs.
pub fn label_hash(labels: &LabelSet) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xfe]);
    }
    h.digest()
}

/// An alert's fingerprint: its labels' hash as 16 hex digits.
pub fn fingerprint(labels: &LabelSet) -> String {
    format!("{:016x}", label_hash(labels))
}

/// Evaluator settings, from the configuration.
#[derive(Debug, Clone)]
pub struct EvaluatorSettings {
    /// Conditions without a signal for this long (event time, ms) clear.
    pub stale_ms: i64,
    /// Resolved alerts are forgotten this long after resolving (event time, ms).
    pub resolved_retention_ms: i64,
    /// Least event time between evaluations (ms); 0 evaluates on every tick.
    pub eval_interval_ms: i64,
    /// Most (rule, series) pairs tracked at once: new ones past this are refused and counted.
    pub max_alerts: usize,
    /// The web UI's URL, for generator links.
    pub external_url: String,
}

impl EvaluatorSettings {
    /// Settings from the daemon's configuration.
    pub fn from_config(config: &ForecasterConfig) -> Self {
        let step_ms = config.model.step.as_millis() as i64;
        let eval_ms = config.alerting.eval_interval.as_millis() as i64;
        Self {
            stale_ms: STALE_STEPS * step_ms.max(eval_ms).max(1000),
            resolved_retention_ms: config.alerting.resolved_retention.as_millis() as i64,
            eval_interval_ms: eval_ms,
            max_alerts: config.alerting.max_alerts,
            external_url: config
                .alerting
                .external_url
                .trim_end_matches('/')
                .to_string(),
        }
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    rule: usize,
    series: Arc<LabelSet>,
    cond: Condition,
    /// Wall time the latest condition's signal was received (ms).
    received_wall_ms: i64,
    /// Event time the current stretch of holding started.
    active_since_ms: Option<i64>,
    step: Option<StepFacts>,
    forecast_peak: Option<f64>,
    alert: Option<Alert>,
    /// Other alerts seen at the same host or pod while this one was active (fingerprint and
    /// latest summary), at most [`MAX_RELATED`]: the story stays whole even when one of them
    /// resolved before this alert's notification went out.
    related: Vec<(String, String)>,
    /// Wall time the signal that made the alert fire was received, until its first delivery.
    cause_wall_ms: Option<i64>,
    dirty: bool,
    /// `cond` is an active condition no evaluation has seen yet: it is kept for the next
    /// evaluation even when newer signals say the condition cleared (those wait in
    /// `deferred`). A burst of signals between two evaluations — a replay at full speed —
    /// then raises the same alerts as living through it step by step.
    held: bool,
    /// The newest inactive condition received while `held`.
    deferred: Option<Condition>,
}

/// What persists of a tracked pair with an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackedState {
    /// The rule's name.
    pub rule: String,
    /// The series.
    pub series: LabelSet,
    /// The latest condition.
    pub cond: Condition,
    /// Start of the current stretch of holding.
    pub active_since_ms: Option<i64>,
    /// The series' latest step.
    pub step: Option<StepFacts>,
    /// The alert.
    pub alert: Alert,
}

/// What an evaluation changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalOutcome {
    /// The evaluation ran (it is skipped inside `eval_interval`).
    pub ran: bool,
    /// Alerts that changed state (created, fired, resolved, dropped).
    pub changed: usize,
    /// Fingerprints that started firing.
    pub fired: Vec<String>,
}

/// Tracks conditions and alerts.
pub struct Evaluator {
    rules: Vec<Rule>,
    catalog: Catalog,
    settings: EvaluatorSettings,
    context: Option<Arc<dyn ModelContext>>,
    tracked: HashMap<(usize, u64), Tracked>,
    by_series: HashMap<u64, Vec<usize>>,
    by_fp: HashMap<String, (usize, u64)>,
    shifts: HashMap<u64, (i64, ShiftFacts)>,
    last_eval_ms: Option<i64>,
    now_ms: i64,
    /// The newest event time a condition was received for: event time is at least that, even
    /// when the tick that says so is still on its way.
    newest_ms: i64,
    /// A condition arrived for a step the last evaluation had already passed (its steps
    /// waited for a fit): evaluate again without waiting for event time to advance.
    late: bool,
    refused: u64,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("rules", &self.rules.len())
            .field("tracked", &self.tracked.len())
            .finish()
    }
}

impl Evaluator {
    /// An evaluator for compiled rules.
    pub fn new(
        rules: Vec<Rule>,
        catalog: Catalog,
        settings: EvaluatorSettings,
        context: Option<Arc<dyn ModelContext>>,
    ) -> Self {
        Self {
            rules,
            catalog,
            settings,
            context,
            tracked: HashMap::new(),
            by_series: HashMap::new(),
            by_fp: HashMap::new(),
            shifts: HashMap::new(),
            last_eval_ms: None,
            now_ms: i64::MIN,
            newest_ms: i64::MIN,
            late: false,
            refused: 0,
        }
    }

    /// An evaluator for a configuration's rules and remediations.
    pub fn from_config(
        config: &ForecasterConfig,
        context: Option<Arc<dyn ModelContext>>,
    ) -> Result<Self> {
        Ok(Self::new(
            rules::compile(config)?,
            Catalog::new(&config.remediations)?,
            EvaluatorSettings::from_config(config),
            context,
        ))
    }

    /// The compiled rules.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The latest event time evaluated.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    /// Whether conditions arrived for steps the last evaluation had already passed: they are
    /// evaluated by the next [`Evaluator::evaluate`], whatever its event time.
    pub fn has_late(&self) -> bool {
        self.late
    }

    /// Pairs refused because `alerting.max_alerts` was reached.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Records what a batch of signals says. `received_wall_ms` is when the batch arrived.
    pub fn ingest(&mut self, signals: &[Signal], received_wall_ms: i64) {
        for s in signals {
            let sid = label_hash(&s.series);
            if let SignalBody::LevelShift {
                changed_at_ms,
                before,
                after,
            } = &s.body
            {
                if self.shifts.len() >= MAX_SHIFTS && !self.shifts.contains_key(&sid) {
                    self.prune_shifts(true);
                }
                if self.shifts.len() < MAX_SHIFTS || self.shifts.contains_key(&sid) {
                    self.shifts.insert(
                        sid,
                        (
                            s.at_ms,
                            ShiftFacts {
                                changed_at_ms: *changed_at_ms,
                                before: *before,
                                after: *after,
                            },
                        ),
                    );
                    self.mark_series_dirty(sid);
                }
                continue;
            }
            for (ri, rule) in self.rules.iter().enumerate() {
                let Some(cond) = rule.evaluate(s) else {
                    continue;
                };
                self.newest_ms = self.newest_ms.max(cond.at_ms);
                let late = self.last_eval_ms.is_some() && cond.at_ms <= self.now_ms;
                match self.tracked.get_mut(&(ri, sid)) {
                    Some(t) => {
                        if cond.at_ms < t.cond.at_ms {
                            continue; // older than what we know
                        }
                        if !cond.active && t.held {
                            // Seen by the next evaluation after the active one it follows.
                            t.deferred = Some(cond);
                            continue;
                        }
                        let was_holding = t.cond.active
                            && cond.at_ms.saturating_sub(t.cond.at_ms) <= self.settings.stale_ms;
                        if !cond.active {
                            t.active_since_ms = None;
                        } else if !was_holding || t.active_since_ms.is_none() {
                            t.active_since_ms = Some(cond.at_ms);
                        }
                        t.held = cond.active;
                        t.deferred = None;
                        t.cond = cond;
                        t.received_wall_ms = received_wall_ms;
                        t.dirty = true;
                        self.late |= late;
                    }
                    None if cond.active => {
                        if self.tracked.len() >= self.settings.max_alerts {
                            self.refused += 1;
                            continue;
                        }
                        self.tracked.insert(
                            (ri, sid),
                            Tracked {
                                rule: ri,
                                series: Arc::clone(&s.series),
                                active_since_ms: Some(cond.at_ms),
                                cond,
                                received_wall_ms,
                                step: None,
                                forecast_peak: None,
                                alert: None,
                                related: Vec::new(),
                                cause_wall_ms: None,
                                dirty: true,
                                held: true,
                                deferred: None,
                            },
                        );
                        self.by_series.entry(sid).or_default().push(ri);
                        self.late |= late;
                    }
                    None => {}
                }
            }
        }
        // Steps after conditions, so pairs created by this batch get the step too.
        for s in signals {
            if let SignalBody::Step {
                value,
                band,
                score,
                model,
                ..
            } = &s.body
            {
                let sid = label_hash(&s.series);
                let Some(rules) = self.by_series.get(&sid) else {
                    continue;
                };
                for ri in rules {
                    // While an active condition waits for its evaluation, its step's facts
                    // are the ones the alert explains.
                    if let Some(t) = self.tracked.get_mut(&(*ri, sid))
                        && (t.deferred.is_none() || s.at_ms <= t.cond.at_ms)
                        && t.step.as_ref().is_none_or(|st| st.at_ms <= s.at_ms)
                    {
                        t.step = Some(StepFacts {
                            at_ms: s.at_ms,
                            value: *value,
                            band: *band,
                            score: *score,
                            model: Arc::clone(model),
                        });
                    }
                }
            }
        }
    }

    fn mark_series_dirty(&mut self, sid: u64) {
        if let Some(rules) = self.by_series.get(&sid) {
            for ri in rules {
                if let Some(t) = self.tracked.get_mut(&(*ri, sid)) {
                    t.dirty = true;
                }
            }
        }
    }

    fn prune_shifts(&mut self, force: bool) {
        let now = self.now_ms;
        self.shifts
            .retain(|_, (at, _)| now.saturating_sub(*at) <= SHIFT_RETENTION_MS);
        if force && self.shifts.len() >= MAX_SHIFTS {
            // Still full: forget the oldest tenth.
            let mut ats: Vec<i64> = self.shifts.values().map(|(at, _)| *at).collect();
            ats.sort_unstable();
            let cut = ats[ats.len() / 10];
            self.shifts.retain(|_, (at, _)| *at > cut);
        }
    }

    /// Advances every alert to `now_ms` (event time; at least the newest condition received).
    /// Skipped (and `ran` false) when less than `eval_interval` passed since the last
    /// evaluation, or when time went backwards — unless conditions arrived late.
    pub fn evaluate(&mut self, now_ms: i64) -> EvalOutcome {
        let mut out = EvalOutcome::default();
        // A tick can trail the conditions it follows: event time is at least the newest one.
        let mut now_ms = now_ms.max(self.newest_ms);
        if let Some(last) = self.last_eval_ms {
            if !self.late && (now_ms < last || now_ms - last < self.settings.eval_interval_ms) {
                return out;
            }
            now_ms = now_ms.max(last);
        }
        self.late = false;
        out.ran = true;
        self.last_eval_ms = Some(now_ms);
        self.now_ms = now_ms;
        let stale = self.settings.stale_ms;
        let retention = self.settings.resolved_retention_ms;
        let mut remove = Vec::new();
        let mut create = Vec::new();
        for (key, t) in self.tracked.iter_mut() {
            let rule = &self.rules[t.rule];
            let holds = t.cond.active && (t.held || now_ms.saturating_sub(t.cond.at_ms) <= stale);
            match (holds, t.alert.as_mut()) {
                (true, None) => create.push(*key),
                (true, Some(a)) if a.state == AlertState::Resolved => create.push(*key),
                (true, Some(a)) => {
                    a.last_seen_ms = a.last_seen_ms.max(t.cond.at_ms);
                    if a.state == AlertState::Pending
                        && now_ms - a.active_since_ms >= rule.pending_for_ms()
                    {
                        a.state = AlertState::Firing;
                        a.fired_at_ms = Some(now_ms);
                        t.cause_wall_ms = Some(t.received_wall_ms);
                        t.dirty = true;
                        out.changed += 1;
                        out.fired.push(a.fingerprint.clone());
                    }
                }
                (false, None) => remove.push(*key),
                (false, Some(a)) => match a.state {
                    AlertState::Pending => {
                        remove.push(*key);
                        out.changed += 1;
                    }
                    AlertState::Firing => {
                        let keep = rule.keep_firing_for_ms();
                        if keep == 0 || now_ms - a.last_seen_ms >= keep {
                            a.state = AlertState::Resolved;
                            a.resolved_at_ms = Some(now_ms);
                            t.cause_wall_ms = None;
                            t.dirty = true;
                            out.changed += 1;
                        }
                    }
                    AlertState::Resolved => {
                        if now_ms - a.resolved_at_ms.unwrap_or(now_ms) > retention {
                            remove.push(*key);
                        }
                    }
                },
            }
        }
        for key in create {
            if let Some(fp) = self.start_alert(key, now_ms) {
                out.changed += 1;
                out.fired.extend(fp);
            }
        }
        for key in remove {
            self.forget(key);
        }
        self.prune_shifts(false);
        self.refresh_explanations();
        // Every held condition has now been evaluated; what arrived after it applies next.
        for t in self.tracked.values_mut() {
            t.held = false;
            if let Some(d) = t.deferred.take() {
                t.active_since_ms = None;
                t.cond = d;
                t.dirty = true;
            }
        }
        out
    }

    /// Starts (or restarts) the alert of a pair; returns `Some(Some(fp))` when it fires at
    /// once, `Some(None)` when it is pending.
    fn start_alert(&mut self, key: (usize, u64), now_ms: i64) -> Option<Option<String>> {
        let rule = &self.rules[key.0];
        let t = self.tracked.get_mut(&key)?;
        let active_since = t.active_since_ms.unwrap_or(t.cond.at_ms).min(now_ms);
        let fires = now_ms - active_since >= rule.pending_for_ms();
        let labels = alert_labels(rule, &t.series, &t.cond);
        let fingerprint = crate::lifecycle::fingerprint(&labels);
        if rule.kind() != RuleKind::LogPattern
            && classify(t.series.get(METRIC_NAME).map_or("", String::as_str)) == MetricClass::Cpu
            && let Some(ctx) = &self.context
            && let Some(chart) = ctx.chart(&t.series, now_ms)
        {
            let idle = t.series.get("state").is_some_and(|s| s == "idle");
            let edges = chart
                .forecast
                .iter()
                .map(|(_, b)| if idle { b.lower } else { b.upper })
                .filter(|v| v.is_finite());
            t.forecast_peak = if idle {
                edges.reduce(f64::min)
            } else {
                edges.reduce(f64::max)
            };
        }
        let generator_url = format!(
            "{}/?series={}",
            self.settings.external_url,
            url_encode(&crate::explain::series_name(&t.series))
        );
        let alert = Alert {
            fingerprint: fingerprint.clone(),
            labels,
            annotations: BTreeMap::new(),
            state: if fires {
                AlertState::Firing
            } else {
                AlertState::Pending
            },
            active_since_ms: active_since,
            fired_at_ms: fires.then_some(now_ms),
            resolved_at_ms: None,
            last_seen_ms: t.cond.at_ms,
            explanation: Default::default(),
            generator_url,
        };
        t.alert = Some(alert);
        t.related.clear();
        t.dirty = true;
        t.cause_wall_ms = fires.then_some(t.received_wall_ms);
        self.by_fp.insert(fingerprint.clone(), key);
        Some(fires.then_some(fingerprint))
    }

    fn forget(&mut self, key: (usize, u64)) {
        if let Some(t) = self.tracked.get_mut(&key) {
            if let Some(a) = t.alert.take() {
                self.by_fp.remove(&a.fingerprint);
            }
            // Keep the pair while its condition still holds (a pending alert whose condition
            // cleared is dropped, but a fresh signal may restart it).
            if t.cond.active && self.now_ms.saturating_sub(t.cond.at_ms) <= self.settings.stale_ms {
                return;
            }
        }
        self.tracked.remove(&key);
        if let Some(rules) = self.by_series.get_mut(&key.1) {
            rules.retain(|r| *r != key.0);
            if rules.is_empty() {
                self.by_series.remove(&key.1);
            }
        }
    }

    fn refresh_explanations(&mut self) {
        // Who was active where and when: location label value → (fingerprint, first and last
        // active event time, "alertname since …: summary"). Resolved alerts count while they
        // are kept: a log pattern that cleared a minute before a latency anomaly started on
        // the same host is part of its story however the evaluations fell.
        type Seen = (String, i64, i64, String);
        let mut at: HashMap<(&'static str, String), Vec<Seen>> = HashMap::new();
        for t in self.tracked.values() {
            let Some(a) = &t.alert else { continue };
            let name = a.labels.get("alertname").map_or("", String::as_str);
            let since = crate::template::timestamp(a.active_since_ms);
            let summary = if a.explanation.summary.is_empty() {
                format!("{name} since {since}")
            } else {
                format!("{name} since {since}: {}", a.explanation.summary)
            };
            for l in LOCATION_LABELS {
                if let Some(v) = t.series.get(l) {
                    at.entry((l, v.clone())).or_default().push((
                        a.fingerprint.clone(),
                        a.active_since_ms,
                        a.last_seen_ms,
                        summary.clone(),
                    ));
                }
            }
        }
        for t in self.tracked.values_mut() {
            let Some(a) = &mut t.alert else { continue };
            if a.state == AlertState::Resolved && !t.dirty {
                continue;
            }
            for l in LOCATION_LABELS {
                if let Some(v) = t.series.get(l)
                    && let Some(list) = at.get(&(l, v.clone()))
                {
                    for (fp, since, last, s) in list {
                        let overlaps = *since <= a.last_seen_ms + CORRELATION_WINDOW_MS
                            && a.active_since_ms <= *last + CORRELATION_WINDOW_MS;
                        if *fp == a.fingerprint || !overlaps {
                            continue;
                        }
                        if let Some(seen) = t.related.iter_mut().find(|(f, _)| f == fp) {
                            seen.1.clone_from(s);
                        } else if t.related.len() < MAX_RELATED {
                            t.related.push((fp.clone(), s.clone()));
                        }
                    }
                }
            }
            let mut related: Vec<String> = t.related.iter().map(|(_, s)| s.clone()).collect();
            related.sort();
            if !t.dirty && related == a.explanation.related {
                continue;
            }
            t.dirty = false;
            let rule = &self.rules[t.rule];
            let sid = label_hash(&t.series);
            let input = ExplainInput {
                rule,
                series: &t.series,
                labels: &a.labels,
                cond: &t.cond,
                step: t.step.as_ref(),
                shift: self.shifts.get(&sid).map(|(_, s)| s),
                related: &related,
                forecast_peak: t.forecast_peak,
            };
            let explanation = self.catalog.explain(&input);
            let ctx = input.template_context();
            let mut annotations = BTreeMap::new();
            for (k, v) in &rule.config.annotations {
                annotations.insert(k.clone(), template::render(v, &ctx));
            }
            annotations.insert("summary".into(), explanation.summary.clone());
            annotations
                .entry("description".into())
                .or_insert_with(|| explanation.text.clone());
            annotations.insert("explanation".into(), explanation.text.clone());
            annotations.insert("suggestion".into(), explanation.suggestion.clone());
            a.annotations = annotations;
            a.explanation = explanation;
        }
    }

    /// Every alert (pending, firing, resolved) with its series.
    pub fn alerts(&self) -> impl Iterator<Item = (&Alert, &Arc<LabelSet>)> + Clone {
        self.tracked
            .values()
            .filter_map(|t| t.alert.as_ref().map(|a| (a, &t.series)))
    }

    /// One alert by fingerprint.
    pub fn alert(&self, fingerprint: &str) -> Option<(&Alert, &Arc<LabelSet>)> {
        let t = self.tracked.get(self.by_fp.get(fingerprint)?)?;
        t.alert.as_ref().map(|a| (a, &t.series))
    }

    /// Takes the wall time the signal that made an alert fire was received, once (for the
    /// fire-to-notify latency).
    pub fn take_cause_wall_ms(&mut self, fingerprint: &str) -> Option<i64> {
        let key = self.by_fp.get(fingerprint)?;
        self.tracked.get_mut(key)?.cause_wall_ms.take()
    }

    /// What persists: every pair with an alert.
    pub fn snapshot(&self) -> Vec<TrackedState> {
        self.tracked
            .values()
            .filter_map(|t| {
                Some(TrackedState {
                    rule: self.rules[t.rule].name().to_string(),
                    series: (*t.series).clone(),
                    cond: t.cond.clone(),
                    active_since_ms: t.active_since_ms,
                    step: t.step.clone(),
                    alert: t.alert.clone()?,
                })
            })
            .collect()
    }

    /// Restores persisted pairs; those of rules that no longer exist are dropped. Returns how
    /// many were restored.
    pub fn restore(&mut self, states: Vec<TrackedState>) -> usize {
        let mut n = 0;
        for s in states {
            let Some(ri) = self.rules.iter().position(|r| r.name() == s.rule) else {
                continue;
            };
            if self.tracked.len() >= self.settings.max_alerts {
                self.refused += 1;
                continue;
            }
            let series = Arc::new(s.series);
            let sid = label_hash(&series);
            self.by_fp.insert(s.alert.fingerprint.clone(), (ri, sid));
            self.now_ms = self.now_ms.max(s.alert.last_seen_ms);
            self.tracked.insert(
                (ri, sid),
                Tracked {
                    rule: ri,
                    series,
                    cond: s.cond,
                    received_wall_ms: 0,
                    active_since_ms: s.active_since_ms,
                    step: s.step,
                    forecast_peak: None,
                    alert: Some(s.alert),
                    related: Vec::new(),
                    cause_wall_ms: None,
                    dirty: false,
                    held: false,
                    deferred: None,
                },
            );
            let list = self.by_series.entry(sid).or_default();
            if !list.contains(&ri) {
                list.push(ri);
            }
            n += 1;
        }
        n
    }
}

/// An alert's labels: the series' labels (`__name__` as `metric`), the rule's labels
/// (templated; `severity` defaulted), then `alertname` and `rule_kind`.
pub fn alert_labels(rule: &Rule, series: &LabelSet, cond: &Condition) -> LabelSet {
    let mut labels: LabelSet = series
        .iter()
        .map(|(k, v)| {
            let k = if k == METRIC_NAME {
                ALERT_METRIC_LABEL
            } else {
                k.as_str()
            };
            (k.to_string(), v.clone())
        })
        .collect();
    let ctx = template::TemplateContext {
        labels: Some(series),
        rule: rule.name(),
        value: cond.value,
        expected: cond.band.map(|b| b.expected),
        lower: cond.band.map(|b| b.lower),
        upper: cond.band.map(|b| b.upper),
        score: cond.score,
        threshold: cond.threshold,
        eta_seconds: cond.eta.map(|e| e.p50_seconds),
    };
    for (k, v) in &rule.config.labels {
        labels.insert(k.clone(), template::render(v, &ctx));
    }
    if !rule.config.labels.contains_key("severity") {
        labels.insert("severity".to_string(), rule.severity().to_string());
    }
    labels.insert("alertname".to_string(), rule.name().to_string());
    labels.insert("rule_kind".to_string(), rule.kind().as_str().to_string());
    labels
}

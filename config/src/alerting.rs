//! Alerting configuration: rules (`[[rules]]`), receivers (`[[receivers]]`), routes
//! (`[[routes]]`), inhibition (`[[inhibit]]`), extra remediation suggestions
//! (`[[remediations]]`) and the `[alerting]` settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Problem;

/// General alerting settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingSettings {
    /// Adds the built-in rules (disk filling, memory growth, CPU saturation, anomaly on any ready
    /// series with a high score) to the configured ones. A configured rule with the same name
    /// replaces the built-in one.
    pub default_rules: bool,
    /// URL of this daemon's web UI as users reach it, put in notifications as `externalURL` and
    /// in links.
    pub external_url: String,
    /// How often rules are evaluated, in event time (the data's timestamps). 0 means every
    /// model step.
    #[serde(with = "humantime_serde")]
    pub eval_interval: Duration,
    /// Resolved alerts are kept (and shown) this long after they resolve.
    #[serde(with = "humantime_serde")]
    pub resolved_retention: Duration,
    /// Most alerts (pending, firing and resolved) tracked at once. Past this, new alerts are
    /// refused and counted, so memory stays bounded however many series misbehave.
    #[serde(deserialize_with = "positive_count")]
    pub max_alerts: usize,
}

/// A count that must be at least 1.
fn positive_count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let n = usize::deserialize(d)?;
    if n == 0 {
        return Err(serde::de::Error::custom("must be at least 1"));
    }
    Ok(n)
}

impl Default for AlertingSettings {
    fn default() -> Self {
        Self {
            default_rules: true,
            external_url: "http://127.0.0.1:9470".to_string(),
            eval_interval: Duration::ZERO,
            resolved_retention: Duration::from_secs(24 * 3600),
            max_alerts: 50_000,
        }
    }
}

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A series' calibrated anomaly score reaches `min_score` (and, by default, it has been
    /// outside its band for 3 of the last 5 steps).
    Anomaly,
    /// The forecast crosses `threshold` within `horizon`: the time to the crossing is exported as
    /// `presage_breach_eta_seconds{rule,quantile}`.
    Breach,
    /// The value itself is past `threshold`.
    Static,
    /// A series behaves unlike its peers: the same metric on other hosts or pods.
    Outlier,
    /// A log pattern is new, or its rate is anomalous.
    LogPattern,
}

impl RuleKind {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anomaly => "anomaly",
            Self::Breach => "breach",
            Self::Static => "static",
            Self::Outlier => "outlier",
            Self::LogPattern => "log_pattern",
        }
    }
}

/// Which way a threshold is crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Rising through the threshold (usage, latency).
    #[default]
    Above,
    /// Falling through it (free space, throughput).
    Below,
}

/// Which breach ETA quantile must fall inside the horizon for a breach rule to be active.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum EtaQuantile {
    /// The optimistic end: fires earliest.
    #[serde(rename = "p10")]
    P10,
    /// The median.
    #[default]
    #[serde(rename = "p50")]
    P50,
    /// The pessimistic end: fires only when even slow growth crosses in time.
    #[serde(rename = "p90")]
    P90,
}

/// The fleet-outlier algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutlierAlgorithm {
    /// Median absolute deviation of each series from the fleet's median.
    #[default]
    Mad,
    /// Density-based clustering: series outside the main cluster.
    Dbscan,
}

/// Log severities, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Trace and debug.
    Debug,
    /// Informational.
    Info,
    /// Warnings.
    #[default]
    Warn,
    /// Errors.
    Error,
    /// Fatal errors.
    Fatal,
}

/// A rule. Fields that do not apply to a rule's `kind` are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique name, used as the `rule` label and the alert name (`alertname`).
    pub name: String,
    /// What the rule watches.
    pub kind: RuleKind,
    /// The series it applies to (PromQL series selector). Defaults to every series.
    #[serde(default = "default_select")]
    pub select: String,
    /// Threshold in the series' own unit (a per-second rate for counters): required for
    /// `breach` and `static`.
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Which way the threshold is crossed (`breach`, `static`).
    #[serde(default)]
    pub direction: Direction,
    /// How far ahead a crossing counts (`breach`; default 6h).
    #[serde(with = "humantime_serde", default)]
    pub horizon: Option<Duration>,
    /// The ETA quantile that must fall inside `horizon` (`breach`; `p10`, `p50` or `p90`,
    /// default `p50`).
    #[serde(default)]
    pub quantile: Option<EtaQuantile>,
    /// Lowest calibrated score that counts (`anomaly`, `outlier`, `log_pattern`; between 0 and
    /// 1, default 0.7 for anomaly rules and 0.5 for outlier rules). For `log_pattern` it is the
    /// score of a template's line rate above its band; unset, rates do not alert.
    #[serde(default)]
    pub min_score: Option<f64>,
    /// Require the series to be outside its band for 3 of the last 5 steps, so a single spike
    /// does not page (`anomaly`; default true).
    #[serde(default)]
    pub persistent: Option<bool>,
    /// Outlier algorithm (`outlier`; `mad` or `dbscan`).
    #[serde(default)]
    pub algorithm: Option<OutlierAlgorithm>,
    /// Labels that tell peers apart (`outlier`; default `instance`, `host_name`, `k8s_pod_name`):
    /// series that differ only in these are compared with each other.
    #[serde(default)]
    pub peer_labels: Option<Vec<String>>,
    /// Lowest severity that counts (`log_pattern`; default `warn`).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Alert on a pattern seen for the first time (`log_pattern`; default true).
    #[serde(default)]
    pub new_pattern: Option<bool>,
    /// How long the condition must hold (event time) before the alert fires; pending until then.
    #[serde(rename = "for", with = "humantime_serde", default)]
    pub pending_for: Option<Duration>,
    /// How long the alert keeps firing after the condition clears.
    #[serde(with = "humantime_serde", default)]
    pub keep_firing_for: Option<Duration>,
    /// Labels added to the alert (`severity = "critical"`). Values may use templates, see
    /// `annotations`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations added to the alert. Templates: `{{ labels.NAME }}`, `{{ value }}`,
    /// `{{ expected }}`, `{{ lower }}`, `{{ upper }}`, `{{ score }}`, `{{ threshold }}`,
    /// `{{ eta }}`, `{{ rule }}`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

fn default_select() -> String {
    "{__name__=~\".+\"}".to_string()
}

impl RuleConfig {
    /// The breach horizon in effect.
    pub fn horizon_or_default(&self) -> Duration {
        self.horizon.unwrap_or(Duration::from_secs(6 * 3600))
    }
}

/// How mail is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (loopback relays, tests).
    None,
    /// STARTTLS upgrade, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// A secret read from a file or an environment variable, never written inline.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// File holding the secret (trailing newline ignored).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
}

/// Email by SMTP.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server, `host:port`.
    pub smtp: String,
    /// Encryption: `none`, `starttls` (default) or `tls`.
    #[serde(default)]
    pub tls: SmtpTls,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// SMTP user name, when the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password, from a file or an environment variable.
    #[serde(default)]
    pub password: Option<SecretRef>,
    /// Subject template; the default names the status, the alert and the series.
    #[serde(default)]
    pub subject: Option<String>,
    /// A CA certificate (PEM) trusted for the server's certificate besides the system's roots,
    /// for relays with a private CA (`starttls` and `tls` only).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Give up on one attempt after this long.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
}

/// Webhook with Alertmanager's JSON payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where to POST.
    pub url: String,
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Secret for the `X-Presage-Signature: sha256=<hex>` HMAC-SHA256 header over the body.
    #[serde(default)]
    pub hmac_secret: Option<SecretRef>,
    /// Most alerts per payload (0 = all), as in Alertmanager.
    #[serde(default)]
    pub max_alerts: usize,
    /// Give up on one attempt after this long.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
}

/// Alertmanager API v2.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URLs; alerts are posted to `<url>/api/v2/alerts` on each.
    pub urls: Vec<String>,
    /// Give up on one attempt after this long.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
}

/// Alerts printed on standard output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Also print resolved notifications.
    #[serde(default)]
    pub send_resolved: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// A receiver: where notifications go. Exactly one of `email`, `webhook`, `alertmanager` and
/// `console`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name, referenced by routes.
    pub name: String,
    /// Send by email.
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// POST to a webhook.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Forward to Alertmanager.
    #[serde(default)]
    pub alertmanager: Option<AlertmanagerConfig>,
    /// Print on standard output.
    #[serde(default)]
    pub console: Option<ConsoleConfig>,
}

/// A route: which alerts go to which receivers, grouped how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Alerts whose labels match this selector (`{severity=~"warning|critical"}`); default all.
    #[serde(rename = "match", default = "default_route_match")]
    pub matcher: String,
    /// Receivers by name.
    pub receivers: Vec<String>,
    /// Labels that split alerts into notification groups.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first notification.
    #[serde(with = "humantime_serde", default = "default_group_wait")]
    pub group_wait: Duration,
    /// Least time between notifications of a group that changed.
    #[serde(with = "humantime_serde", default = "default_group_interval")]
    pub group_interval: Duration,
    /// A group that has not changed is notified again after this long while it fires.
    #[serde(with = "humantime_serde", default = "default_repeat_interval")]
    pub repeat_interval: Duration,
    /// Keep looking for more matching routes after this one (default: the first match wins).
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
    /// Also notify when a group's alerts resolve.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
}

fn default_route_match() -> String {
    "{}".to_string()
}
fn default_group_by() -> Vec<String> {
    vec!["alertname".to_string()]
}
fn default_group_wait() -> Duration {
    Duration::from_secs(30)
}
fn default_group_interval() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_true() -> bool {
    true
}

/// An inhibition: while an alert matching `source` fires, alerts matching `target` with the same
/// values of `equal` are muted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// Selector for the muting alert (`{severity="critical"}`).
    pub source: String,
    /// Selector for the muted alerts (`{severity="warning"}`).
    pub target: String,
    /// Labels that must be equal on both.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// An extra remediation suggestion, tried before the built-in catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// Regular expression on the metric name (anchored).
    pub metric: String,
    /// Rule kinds it applies to; empty means all.
    #[serde(default)]
    pub kinds: Vec<RuleKind>,
    /// The suggestion; the same templates as rule annotations.
    pub text: String,
}

/// Checks a label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn valid_label_name(k: &str) -> bool {
    k.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a matcher-only selector such as `{severity="critical"}` (a metric name is allowed too).
pub(crate) fn check_matcher(text: &str) -> Result<(), String> {
    let text = text.trim();
    if text == "{}" {
        return Ok(());
    }
    match crate::forecaster::check_selector(text) {
        // Alert matchers may all match the empty string (`{severity!="info"}`), which series
        // selectors may not: check the rest of the syntax with a placeholder matcher.
        Err(e) if text.starts_with('{') && e.contains("non-empty matcher") => {
            crate::forecaster::check_selector(&format!("{{placeholder=\"x\",{}", &text[1..]))
                .map_err(|_| e)
        }
        other => other,
    }
}

fn check_secret(at: &str, s: &SecretRef, p: &mut Vec<Problem>) {
    match (&s.file, &s.env) {
        (Some(_), Some(_)) => p.push(Problem::new(at, "set `file` or `env`, not both")),
        (None, None) => p.push(Problem::new(at, "set `file` or `env`")),
        (Some(f), None) if f.as_os_str().is_empty() => {
            p.push(Problem::new(at, "`file` must not be empty"))
        }
        (None, Some(e)) if e.is_empty() => p.push(Problem::new(at, "`env` must not be empty")),
        _ => {}
    }
}

fn check_url(at: String, url: &str, p: &mut Vec<Problem>) {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        p.push(Problem::new(
            at,
            format!("`{url}` is not an http:// or https:// URL"),
        ));
    }
}

/// Validates rules.
pub(crate) fn validate_rules(rules: &[RuleConfig], p: &mut Vec<Problem>) {
    let mut names = std::collections::HashSet::new();
    for (i, r) in rules.iter().enumerate() {
        let at = |field: &str| format!("rules[{i}].{field}");
        if r.name.trim().is_empty() {
            p.push(Problem::new(at("name"), "must not be empty"));
        } else if !names.insert(r.name.as_str()) {
            p.push(Problem::new(
                at("name"),
                format!("`{}` is already the name of another rule", r.name),
            ));
        }
        if let Err(e) = check_matcher(&r.select) {
            p.push(Problem::new(at("select"), e));
        }
        let kind = r.kind;
        let mut not_for = |field: &str, set: bool, kinds: &[RuleKind]| {
            if set && !kinds.contains(&kind) {
                let names: Vec<_> = kinds.iter().map(|k| k.as_str()).collect();
                p.push(Problem::new(
                    at(field),
                    format!(
                        "does not apply to kind `{}` (only to {})",
                        kind.as_str(),
                        names.join(", ")
                    ),
                ));
            }
        };
        use RuleKind::*;
        not_for("threshold", r.threshold.is_some(), &[Breach, Static]);
        not_for(
            "direction",
            r.direction != Direction::Above,
            &[Breach, Static],
        );
        not_for("horizon", r.horizon.is_some(), &[Breach]);
        not_for("quantile", r.quantile.is_some(), &[Breach]);
        not_for(
            "min_score",
            r.min_score.is_some(),
            &[Anomaly, Outlier, LogPattern],
        );
        not_for("persistent", r.persistent.is_some(), &[Anomaly]);
        not_for("algorithm", r.algorithm.is_some(), &[Outlier]);
        not_for("peer_labels", r.peer_labels.is_some(), &[Outlier]);
        not_for("severity", r.severity.is_some(), &[LogPattern]);
        not_for("new_pattern", r.new_pattern.is_some(), &[LogPattern]);
        if kind == LogPattern && r.new_pattern == Some(false) && r.min_score.is_none() {
            p.push(Problem::new(
                at("new_pattern"),
                "with `new_pattern = false` and no `min_score` the rule alerts on nothing: \
                 set `min_score` to alert on anomalous line rates",
            ));
        }
        match (kind, r.threshold) {
            (Breach | Static, None) => p.push(Problem::new(
                at("threshold"),
                format!("is required for kind `{}`", kind.as_str()),
            )),
            (_, Some(t)) if !t.is_finite() => {
                p.push(Problem::new(at("threshold"), "must be a finite number"))
            }
            _ => {}
        }
        if let Some(h) = r.horizon
            && (h < Duration::from_secs(60) || h > Duration::from_secs(90 * 86_400))
        {
            p.push(Problem::new(at("horizon"), "must be between 1m and 90d"));
        }
        if let Some(s) = r.min_score
            && !(0.0..=1.0).contains(&s)
        {
            p.push(Problem::new(
                at("min_score"),
                format!("must be between 0 and 1, got {s}"),
            ));
        }
        if let Some(labels) = &r.peer_labels {
            if labels.is_empty() {
                p.push(Problem::new(at("peer_labels"), "must not be empty"));
            }
            for l in labels {
                if !valid_label_name(l) {
                    p.push(Problem::new(
                        at("peer_labels"),
                        format!("invalid label name `{l}`"),
                    ));
                }
            }
        }
        for (field, map) in [("labels", &r.labels), ("annotations", &r.annotations)] {
            for k in map.keys() {
                if !valid_label_name(k) {
                    p.push(Problem::new(
                        at(field),
                        format!("invalid name `{k}`: expected [a-zA-Z_][a-zA-Z0-9_]*"),
                    ));
                }
            }
        }
    }
}

/// Validates receivers, routes, inhibitions and remediations.
pub(crate) fn validate_routing(
    receivers: &[ReceiverConfig],
    routes: &[RouteConfig],
    inhibit: &[InhibitConfig],
    remediations: &[RemediationConfig],
    p: &mut Vec<Problem>,
) {
    let mut names = std::collections::HashSet::new();
    for (i, r) in receivers.iter().enumerate() {
        let at = |field: &str| format!("receivers[{i}].{field}");
        if r.name.trim().is_empty() {
            p.push(Problem::new(at("name"), "must not be empty"));
        } else if !names.insert(r.name.as_str()) {
            p.push(Problem::new(
                at("name"),
                format!("`{}` is already the name of another receiver", r.name),
            ));
        }
        let kinds = [
            r.email.is_some(),
            r.webhook.is_some(),
            r.alertmanager.is_some(),
            r.console.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            p.push(Problem::new(
                format!("receivers[{i}]"),
                "needs exactly one of `email`, `webhook`, `alertmanager` or `console`",
            ));
        }
        if let Some(e) = &r.email {
            if !e.smtp.contains(':') {
                p.push(Problem::new(
                    at("email.smtp"),
                    format!("`{}` must be host:port", e.smtp),
                ));
            }
            if !e.from.contains('@') {
                p.push(Problem::new(
                    at("email.from"),
                    format!("`{}` is not an email address", e.from),
                ));
            }
            if e.to.is_empty() {
                p.push(Problem::new(at("email.to"), "needs at least one recipient"));
            }
            for t in &e.to {
                if !t.contains('@') {
                    p.push(Problem::new(
                        at("email.to"),
                        format!("`{t}` is not an email address"),
                    ));
                }
            }
            if let Some(s) = &e.password {
                check_secret(&at("email.password"), s, p);
                if e.username.is_none() {
                    p.push(Problem::new(
                        at("email.username"),
                        "is required when a password is set",
                    ));
                }
            }
        }
        if let Some(w) = &r.webhook {
            check_url(at("webhook.url"), &w.url, p);
            if let Some(s) = &w.hmac_secret {
                check_secret(&at("webhook.hmac_secret"), s, p);
            }
        }
        if let Some(a) = &r.alertmanager {
            if a.urls.is_empty() {
                p.push(Problem::new(
                    at("alertmanager.urls"),
                    "needs at least one URL",
                ));
            }
            for u in &a.urls {
                check_url(at("alertmanager.urls"), u, p);
            }
        }
    }
    for (i, r) in routes.iter().enumerate() {
        let at = |field: &str| format!("routes[{i}].{field}");
        if let Err(e) = check_matcher(&r.matcher) {
            p.push(Problem::new(at("match"), e));
        }
        if r.receivers.is_empty() {
            p.push(Problem::new(at("receivers"), "needs at least one receiver"));
        }
        for name in &r.receivers {
            if !receivers.iter().any(|x| &x.name == name) {
                p.push(Problem::new(
                    at("receivers"),
                    format!("no receiver is named `{name}`"),
                ));
            }
        }
        for l in &r.group_by {
            if l != "..." && !valid_label_name(l) {
                p.push(Problem::new(
                    at("group_by"),
                    format!("invalid label name `{l}`"),
                ));
            }
        }
        if r.group_interval.is_zero() {
            p.push(Problem::new(at("group_interval"), "must be positive"));
        }
        if r.repeat_interval < r.group_interval {
            p.push(Problem::new(
                at("repeat_interval"),
                "must be at least group_interval",
            ));
        }
    }
    for (i, r) in inhibit.iter().enumerate() {
        for (field, sel) in [("source", &r.source), ("target", &r.target)] {
            if let Err(e) = check_matcher(sel) {
                p.push(Problem::new(format!("inhibit[{i}].{field}"), e));
            }
        }
    }
    for (i, r) in remediations.iter().enumerate() {
        if let Err(e) = regex_lite_check(&r.metric) {
            p.push(Problem::new(format!("remediations[{i}].metric"), e));
        }
        if r.text.trim().is_empty() {
            p.push(Problem::new(
                format!("remediations[{i}].text"),
                "must not be empty",
            ));
        }
    }
}

/// Checks a regular expression by parsing it as a PromQL regex matcher.
fn regex_lite_check(re: &str) -> Result<(), String> {
    let escaped = re.replace('\\', "\\\\").replace('"', "\\\"");
    crate::forecaster::check_selector(&format!("{{__name__=~\"{escaped}\"}}"))
        .map_err(|_| format!("invalid regular expression `{re}`"))
}

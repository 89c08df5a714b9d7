//! Notifiers: deliver a [`Notification`] to one receiver.
//!
//! A notifier makes one attempt; [`NotifyError::retryable`] tells the caller whether another
//! attempt may succeed (timeouts, connection errors, 5xx, 429) or not (4xx, a refused
//! recipient), and the retry loop backs off exponentially with jitter.
//!
//! [`build`] turns a receiver's configuration into the notifier of its kind:
//! [`email::EmailNotifier`], [`webhook::WebhookNotifier`],
//! [`alertmanager::AlertmanagerNotifier`] or [`console::ConsoleNotifier`]. Secrets (SMTP
//! password, webhook HMAC key) are read once, when the notifier is built.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use presage_config::ReceiverConfig;

use crate::alert::{Alert, AlertState, Notification};

pub mod alertmanager;
pub mod console;
pub mod email;
pub mod retry;
pub mod secret;
pub mod webhook;

/// A failed delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// What went wrong, for logs.
    pub message: String,
}

impl NotifyError {
    /// A failure another attempt may get past (timeout, connection refused, 5xx, 429).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure that will happen again (4xx, a refused recipient, a malformed message).
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            retryable: false,
            message: message.into(),
        }
    }
}

/// A boxed future, so notifiers can be kept as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivers notifications to one receiver.
pub trait Notifier: Send + Sync {
    /// The receiver's kind (`email`, `webhook`, `alertmanager`, `console`), for telemetry.
    fn kind(&self) -> &'static str;

    /// One delivery attempt.
    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>>;
}

/// Why a receiver's notifier could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The receiver names no kind, or more than one.
    #[error("receiver `{0}` needs exactly one of `email`, `webhook`, `alertmanager` or `console`")]
    Kind(String),
    /// A secret could not be read.
    #[error("receiver `{receiver}`: {source}")]
    Secret {
        /// The receiver's name.
        receiver: String,
        /// What went wrong.
        source: secret::SecretError,
    },
    /// A setting is invalid (address, header, URL, TLS setup).
    #[error("receiver `{receiver}`: {message}")]
    Invalid {
        /// The receiver's name.
        receiver: String,
        /// What is wrong.
        message: String,
    },
}

impl BuildError {
    pub(crate) fn invalid(receiver: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            receiver: receiver.to_string(),
            message: message.into(),
        }
    }
}

/// Builds the notifier for a receiver, choosing the kind from its configuration.
pub fn build(receiver: &ReceiverConfig) -> Result<Arc<dyn Notifier>, BuildError> {
    let kinds = [
        receiver.email.is_some(),
        receiver.webhook.is_some(),
        receiver.alertmanager.is_some(),
        receiver.console.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(BuildError::Kind(receiver.name.clone()));
    }
    let name = receiver.name.as_str();
    if let Some(cfg) = &receiver.email {
        return Ok(Arc::new(email::EmailNotifier::new(name, cfg)?));
    }
    if let Some(cfg) = &receiver.webhook {
        return Ok(Arc::new(webhook::WebhookNotifier::new(name, cfg)?));
    }
    if let Some(cfg) = &receiver.alertmanager {
        return Ok(Arc::new(alertmanager::AlertmanagerNotifier::new(
            name, cfg,
        )?));
    }
    match &receiver.console {
        Some(cfg) => Ok(Arc::new(console::ConsoleNotifier::new(cfg))),
        None => Err(BuildError::Kind(receiver.name.clone())),
    }
}

/// The Go zero time, which Alertmanager puts in `endsAt` of alerts that have not resolved.
pub(crate) const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// RFC 3339 in UTC with milliseconds, from milliseconds since the epoch (times before the epoch
/// are clamped to it).
pub(crate) fn rfc3339(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// `firing` or `resolved`, as Alertmanager names an alert's status.
pub(crate) fn alert_status(alert: &Alert) -> &'static str {
    match alert.state {
        AlertState::Resolved => "resolved",
        AlertState::Firing | AlertState::Pending => "firing",
    }
}

/// The alert's annotations, with the explanation's summary, text and suggestion added under
/// `summary`, `explanation` and `suggestion` when the rule did not set them.
pub(crate) fn annotations_with_explanation(
    alert: &Alert,
) -> std::collections::BTreeMap<String, String> {
    let mut out = alert.annotations.clone();
    let e = &alert.explanation;
    for (key, value) in [
        ("summary", &e.summary),
        ("explanation", &e.text),
        ("suggestion", &e.suggestion),
    ] {
        if !value.is_empty() {
            out.entry(key.to_string())
                .or_insert_with(|| value.to_string());
        }
    }
    out
}

/// An HTTP client for webhooks and Alertmanager: rustls verified against the platform's
/// roots, and a timeout on connecting and on the whole request.
pub(crate) fn http_client(
    receiver: &str,
    timeout: Duration,
) -> Result<reqwest::Client, BuildError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("presage/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| BuildError::invalid(receiver, format!("cannot set up the HTTP client: {e}")))
}

/// Classifies a transport-level HTTP failure: timeouts and connection errors are retryable,
/// errors in building the request are not.
pub(crate) fn http_error(what: &str, e: &reqwest::Error) -> NotifyError {
    let message = format!("{what}: {}", error_chain(e));
    if e.is_builder() {
        NotifyError::permanent(message)
    } else {
        NotifyError::retryable(message)
    }
}

/// Classifies an HTTP response status: 5xx, 429 and 408 are retryable, other failures are not.
pub(crate) fn http_status_error(
    what: &str,
    status: reqwest::StatusCode,
    body: &str,
) -> NotifyError {
    let body = body.trim();
    let snippet: String = body.chars().take(300).collect();
    let message = if snippet.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {snippet}")
    };
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        NotifyError::retryable(message)
    } else {
        NotifyError::permanent(message)
    }
}

/// Most bytes of an error response's body read for the message: a receiver cannot make us
/// buffer an unbounded body.
const ERROR_BODY_LIMIT: usize = 4096;

/// Sends `request` (a POST of `what`) and classifies the outcome. `timeout` bounds the whole
/// exchange, a slow error body included.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    what: &str,
    timeout: Duration,
) -> Result<(), NotifyError> {
    let attempt = async {
        let mut response = request.send().await.map_err(|e| http_error(what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_LIMIT {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY_LIMIT);
        Err(http_status_error(
            what,
            status,
            &String::from_utf8_lossy(&body),
        ))
    };
    match tokio::time::timeout(timeout + Duration::from_secs(1), attempt).await {
        Ok(result) => result,
        Err(_) => Err(NotifyError::retryable(format!(
            "{what}: timed out after {timeout:?}"
        ))),
    }
}

/// An error with its causes, `outer: inner: innermost`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The explanation of an alert as (label, text) lines, for the email and console bodies.
pub(crate) fn explanation_lines(alert: &Alert) -> Vec<(&'static str, String)> {
    let e = &alert.explanation;
    let mut out = Vec::new();
    let summary = alert
        .annotations
        .get("summary")
        .filter(|s| !s.is_empty())
        .unwrap_or(&e.summary);
    if !summary.is_empty() {
        out.push(("summary", summary.clone()));
    }
    match (e.value, e.band) {
        (Some(v), Some(b)) => out.push((
            "value",
            format!(
                "{} (expected {}, band {} to {})",
                fmt_num(v),
                fmt_num(b.expected),
                fmt_num(b.lower),
                fmt_num(b.upper)
            ),
        )),
        (Some(v), None) => out.push(("value", fmt_num(v))),
        (None, Some(b)) => out.push((
            "expected",
            format!(
                "{} (band {} to {})",
                fmt_num(b.expected),
                fmt_num(b.lower),
                fmt_num(b.upper)
            ),
        )),
        (None, None) => {}
    }
    if let Some(s) = e.score {
        out.push(("anomaly score", format!("{s:.2}")));
    }
    if let Some(t) = e.threshold {
        out.push(("threshold", fmt_num(t)));
    }
    if let Some(eta) = e.eta {
        out.push((
            "threshold reached in",
            format!(
                "{} (P10 {}, P90 {})",
                fmt_duration(eta.p50_seconds),
                fmt_duration(eta.p10_seconds),
                fmt_duration(eta.p90_seconds)
            ),
        ));
    }
    if let Some(r) = e.rate_per_second {
        out.push(("growth", format!("{} per hour", fmt_num(r * 3600.0))));
    }
    if !e.kind.is_empty() {
        out.push((
            "seasonality",
            if e.seasonality.is_empty() {
                "none detected".to_string()
            } else {
                e.seasonality.join(", ")
            },
        ));
    }
    if let Some(t) = e.changepoint_ms {
        out.push(("level shift at", rfc3339(t)));
    }
    if !e.related.is_empty() {
        out.push(("related", e.related.join("; ")));
    }
    if !e.text.is_empty() && e.text != *summary {
        out.push(("details", e.text.clone()));
    }
    let suggestion = if e.suggestion.is_empty() {
        alert
            .annotations
            .get("suggestion")
            .cloned()
            .unwrap_or_default()
    } else {
        e.suggestion.clone()
    };
    if !suggestion.is_empty() {
        out.push(("suggestion", suggestion));
    }
    out
}

/// The series an alert is about: its labels but `alertname`, as `{k="v", …}`.
pub(crate) fn series_text(alert: &Alert) -> String {
    let inner: Vec<String> = alert
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{{{}}}", inner.join(", "))
}

/// A number for people: a few significant digits, scientific notation when very large or small.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e7).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 1.0 {
        3
    } else {
        4
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A duration for people, two units at most: `3h10m`, `2d4h`, `45s`.
pub(crate) fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "unknown".to_string();
    }
    if seconds < 0.0 {
        return "now".to_string();
    }
    let s = seconds.round() as u64;
    let (d, h, m, sec) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60, s % 60);
    let parts: [(u64, &str); 4] = [(d, "d"), (h, "h"), (m, "m"), (sec, "s")];
    let Some(first) = parts.iter().position(|(n, _)| *n > 0) else {
        return "0s".to_string();
    };
    let mut out = format!("{}{}", parts[first].0, parts[first].1);
    if let Some((n, unit)) = parts.get(first + 1)
        && *n > 0
    {
        out.push_str(&format!("{n}{unit}"));
    }
    out
}

#[cfg(test)]
pub(crate) mod testing {
    //! A notification to test notifiers with.

    use std::collections::BTreeMap;

    use crate::alert::{Alert, AlertState, Explanation, Notification};
    use crate::signal::{Band, ChartData, Eta};

    pub(crate) fn alert(host: &str, fingerprint: &str) -> Alert {
        let labels: BTreeMap<String, String> = [
            ("alertname", "DiskWillFill"),
            ("host_name", host),
            ("metric", "system_filesystem_utilization"),
            ("mountpoint", "/var"),
            ("severity", "critical"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Alert {
            fingerprint: fingerprint.to_string(),
            labels,
            annotations: BTreeMap::from([(
                "description".to_string(),
                format!("/var on {host} is filling"),
            )]),
            state: AlertState::Firing,
            active_since_ms: 1_700_000_000_000,
            fired_at_ms: Some(1_700_000_060_000),
            resolved_at_ms: None,
            last_seen_ms: 1_700_000_120_000,
            explanation: Explanation {
                summary: format!("/var on {host} will reach 90% in 3h10m"),
                kind: "breach".to_string(),
                value: Some(0.82),
                band: Some(Band {
                    expected: 0.80,
                    lower: 0.78,
                    upper: 0.83,
                }),
                score: Some(0.93),
                eta: Some(Eta {
                    p10_seconds: 9_600.0,
                    p50_seconds: 11_400.0,
                    p90_seconds: 14_700.0,
                }),
                threshold: Some(0.9),
                rate_per_second: Some(0.000_007),
                seasonality: vec!["daily".to_string()],
                changepoint_ms: None,
                related: vec![format!("log pattern `disk quota` on {host}")],
                suggestion: "Add 12 GiB to /var or rotate logs within 3h".to_string(),
                text: format!("/var on {host} grows 2.5% per hour and will reach 90%."),
            },
            generator_url: format!("http://127.0.0.1:9470/#/series?host={host}"),
        }
    }

    pub(crate) fn chart(offset: f64) -> ChartData {
        let start = 1_700_000_000_000_i64;
        let step = 60_000_i64;
        let band = |i: i64| {
            let e = 0.5 + 0.1 * ((i as f64) / 10.0).sin();
            Band {
                expected: e,
                lower: e - 0.05,
                upper: e + 0.05,
            }
        };
        ChartData {
            actual: (0..60)
                .map(|i| {
                    (
                        start + i * step,
                        band(i).expected + offset + (i as f64) * 0.003,
                    )
                })
                .collect(),
            expected: (0..60).map(|i| (start + i * step, band(i))).collect(),
            forecast: (60..90)
                .map(|i| {
                    let b = band(i);
                    let grow = (i - 60) as f64 * 0.01;
                    (
                        start + i * step,
                        Band {
                            expected: b.expected + 0.18 + grow,
                            lower: b.lower + 0.15 + grow * 0.8,
                            upper: b.upper + 0.2 + grow * 1.2,
                        },
                    )
                })
                .collect(),
            threshold: Some(0.9),
            anomalies: vec![(start + 50 * step, 0.8 + offset)],
        }
    }

    pub(crate) fn notification(alerts: Vec<Alert>) -> Notification {
        let charts = alerts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.fingerprint.clone(), chart(i as f64 * 0.01)))
            .collect();
        Notification {
            receiver: "oncall".to_string(),
            group_key: "{}:{alertname=\"DiskWillFill\"}".to_string(),
            group_labels: BTreeMap::from([("alertname".to_string(), "DiskWillFill".to_string())]),
            status: "firing".to_string(),
            alerts,
            external_url: "http://127.0.0.1:9470".to_string(),
            sent_at_ms: 1_700_000_180_000,
            charts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use presage_config::{ConsoleConfig, WebhookConfig};

    #[test]
    fn rfc3339_formats_milliseconds_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn status_classification() {
        use reqwest::StatusCode;
        assert!(http_status_error("x", StatusCode::INTERNAL_SERVER_ERROR, "").retryable);
        assert!(http_status_error("x", StatusCode::BAD_GATEWAY, "").retryable);
        assert!(http_status_error("x", StatusCode::TOO_MANY_REQUESTS, "").retryable);
        assert!(!http_status_error("x", StatusCode::BAD_REQUEST, "").retryable);
        assert!(!http_status_error("x", StatusCode::NOT_FOUND, "").retryable);
        let e = http_status_error("POST x", StatusCode::BAD_REQUEST, "  bad label\n");
        assert_eq!(e.message, "POST x: HTTP 400 Bad Request: bad label");
    }

    #[test]
    fn explanation_fills_missing_annotations_only() {
        let mut a = testing::alert("db1", "0123456789abcdef");
        a.annotations
            .insert("summary".to_string(), "rule's own summary".to_string());
        let ann = annotations_with_explanation(&a);
        assert_eq!(ann["summary"], "rule's own summary");
        assert_eq!(ann["suggestion"], a.explanation.suggestion);
        assert_eq!(ann["explanation"], a.explanation.text);
        assert_eq!(ann["description"], "/var on db1 is filling");
    }

    #[test]
    fn numbers_and_durations_for_people() {
        assert_eq!(fmt_num(0.82), "0.82");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(12.5), "12.5");
        assert_eq!(fmt_num(1234.56), "1235");
        assert_eq!(fmt_num(0.000_007), "7.000e-6");
        assert_eq!(fmt_num(3.2e9), "3.200e9");
        assert_eq!(fmt_duration(11_400.0), "3h10m");
        assert_eq!(fmt_duration(14_700.0), "4h5m");
        assert_eq!(fmt_duration(45.0), "45s");
        assert_eq!(fmt_duration(2.0 * 86_400.0 + 4.0 * 3600.0 + 59.0), "2d4h");
        assert_eq!(fmt_duration(3600.0), "1h");
        assert_eq!(fmt_duration(0.2), "0s");
    }

    #[test]
    fn explanation_lines_carry_the_numbers() {
        let a = testing::alert("db1", "0123456789abcdef");
        let lines = explanation_lines(&a);
        let get = |k: &str| {
            lines
                .iter()
                .find(|(l, _)| *l == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| panic!("no {k} line in {lines:?}"))
        };
        assert_eq!(get("value"), "0.82 (expected 0.8, band 0.78 to 0.83)");
        assert_eq!(get("threshold reached in"), "3h10m (P10 2h40m, P90 4h5m)");
        assert_eq!(get("anomaly score"), "0.93");
        assert_eq!(get("seasonality"), "daily");
        assert_eq!(
            get("suggestion"),
            "Add 12 GiB to /var or rotate logs within 3h"
        );
        assert_eq!(
            series_text(&a),
            "{host_name=\"db1\", metric=\"system_filesystem_utilization\", mountpoint=\"/var\", severity=\"critical\"}"
        );
    }

    #[test]
    fn build_chooses_the_kind() {
        let mut r = ReceiverConfig {
            name: "r".to_string(),
            email: None,
            webhook: None,
            alertmanager: None,
            console: Some(ConsoleConfig::default()),
        };
        assert_eq!(build(&r).map(|n| n.kind()).ok(), Some("console"));
        r.webhook = Some(WebhookConfig {
            url: "http://127.0.0.1:9/hook".to_string(),
            headers: Default::default(),
            hmac_secret: None,
            max_alerts: 0,
            timeout: Duration::from_secs(1),
        });
        assert!(matches!(build(&r), Err(BuildError::Kind(_))));
        r.console = None;
        assert_eq!(build(&r).map(|n| n.kind()).ok(), Some("webhook"));
        r.webhook = None;
        assert!(matches!(build(&r), Err(BuildError::Kind(_))));
    }
}

//! Email by SMTP: plain SMTP, STARTTLS (required) or implicit TLS, with authentication when a
//! user name and password are configured, to several recipients.
//!
//! The message is `multipart/alternative`: a plain-text part, and an HTML part inside
//! `multipart/related` that carries an inline PNG chart for each of the first
//! [`MAX_CHARTS`] alerts with chart data, referenced from the HTML as `cid:`.
//!
//! SMTP failures are classified by their reply: a 4xx (transient) reply, a timeout or a
//! connection failure is retryable; a 5xx (permanent) reply is not.

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use presage_config::{EmailConfig, SmtpTls};

use super::secret;
use super::{
    BoxFuture, BuildError, Notifier, NotifyError, alert_status, error_chain, explanation_lines,
    rfc3339, series_text,
};
use crate::alert::{Alert, Notification};
use crate::chart;
use crate::signal::ChartData;

/// Charts are attached for at most this many alerts of a notification.
pub const MAX_CHARTS: usize = 3;
/// Chart width in pixels.
pub const CHART_WIDTH: u32 = 640;
/// Chart height in pixels.
pub const CHART_HEIGHT: u32 = 260;

/// Sends notifications by email.
pub struct EmailNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    server: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: Option<String>,
    timeout: Duration,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(ToString::to_string).collect::<Vec<_>>(),
            )
            .field("subject", &self.subject)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Splits `host:port` (`[v6]:port` too).
fn host_port(smtp: &str) -> Option<(String, u16)> {
    let (host, port) = smtp.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then(|| (host.to_string(), port))
}

impl EmailNotifier {
    /// Builds the notifier: parses the addresses, reads the password, sets up TLS.
    pub fn new(receiver: &str, config: &EmailConfig) -> Result<Self, BuildError> {
        let invalid = |m: String| BuildError::invalid(receiver, m);
        let (host, port) = host_port(&config.smtp)
            .ok_or_else(|| invalid(format!("smtp `{}` is not host:port", config.smtp)))?;
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| invalid(format!("from `{}`: {e}", config.from)))?;
        if config.to.is_empty() {
            return Err(invalid("no recipient".to_string()));
        }
        let to = config
            .to
            .iter()
            .map(|t| t.parse().map_err(|e| invalid(format!("to `{t}`: {e}"))))
            .collect::<Result<Vec<Mailbox>, _>>()?;

        let tls = match config.tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls | SmtpTls::Tls => {
                let mut builder = TlsParameters::builder(host.clone());
                if let Some(path) = &config.ca_file {
                    let pem = std::fs::read(path).map_err(|e| {
                        invalid(format!("cannot read ca_file {}: {e}", path.display()))
                    })?;
                    let cert = Certificate::from_pem(&pem).map_err(|e| {
                        invalid(format!(
                            "ca_file {} is not a PEM certificate: {}",
                            path.display(),
                            error_chain(&e)
                        ))
                    })?;
                    builder = builder.add_root_certificate(cert);
                }
                let params = builder
                    .build_rustls()
                    .map_err(|e| invalid(format!("TLS setup: {}", error_chain(&e))))?;
                if config.tls == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(config.timeout));
        match (&config.username, &config.password) {
            (Some(user), Some(password)) => {
                let password = secret::read(password).map_err(|source| BuildError::Secret {
                    receiver: receiver.to_string(),
                    source,
                })?;
                builder = builder.credentials(Credentials::new(
                    user.clone(),
                    password.expose().to_string(),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid("a password is set without a username".to_string()));
            }
            _ => {}
        }
        Ok(Self {
            transport: builder.build(),
            server: config.smtp.clone(),
            from,
            to,
            subject: config.subject.clone(),
            timeout: config.timeout,
        })
    }

    /// The message for a notification, charts included.
    pub fn message(
        &self,
        n: &Notification,
        charts: &[(String, Vec<u8>)],
    ) -> Result<Message, NotifyError> {
        let subject = match &self.subject {
            Some(template) => expand_subject(template, n),
            None => default_subject(n),
        };
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject.replace(['\r', '\n'], " "));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let png = ContentType::parse("image/png")
            .map_err(|e| NotifyError::permanent(format!("image/png content type: {e}")))?;
        let mut related = MultiPart::related().singlepart(SinglePart::html(html_body(n, charts)));
        for (cid, bytes) in charts {
            related = related
                .singlepart(Attachment::new_inline(cid.clone()).body(bytes.clone(), png.clone()));
        }
        builder
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::plain(text_body(n)))
                    .multipart(related),
            )
            .map_err(|e| NotifyError::permanent(format!("cannot build the message: {e}")))
    }

    async fn send(&self, n: &Notification) -> Result<(), NotifyError> {
        let charts = render_charts(n).await;
        let message = self.message(n, &charts)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let text = format!("SMTP {}: {}", self.server, error_chain(&e));
                if e.is_permanent() || e.is_client() {
                    Err(NotifyError::permanent(text))
                } else {
                    Err(NotifyError::retryable(text))
                }
            }
        }
    }
}

impl Notifier for EmailNotifier {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            match tokio::time::timeout(self.timeout, self.send(notification)).await {
                Ok(result) => result,
                Err(_) => Err(NotifyError::retryable(format!(
                    "SMTP {}: timed out after {:?}",
                    self.server, self.timeout
                ))),
            }
        })
    }
}

/// The Content-ID of an alert's chart.
fn content_id(fingerprint: &str) -> String {
    let safe: String = fingerprint
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    format!("chart-{safe}@presage")
}

/// Charts of the first alerts that have chart data, as (Content-ID, PNG), drawn off the async
/// threads. A chart that cannot be drawn is left out (the message goes without it).
async fn render_charts(n: &Notification) -> Vec<(String, Vec<u8>)> {
    let wanted: Vec<(String, ChartData)> = n
        .alerts
        .iter()
        .filter_map(|a| {
            Some((
                content_id(&a.fingerprint),
                n.charts.get(&a.fingerprint)?.clone(),
            ))
        })
        .take(MAX_CHARTS)
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let drawn = tokio::task::spawn_blocking(move || {
        wanted
            .into_iter()
            .filter_map(
                |(cid, data)| match chart::render_png(&data, CHART_WIDTH, CHART_HEIGHT) {
                    Ok(png) => Some((cid, png)),
                    Err(e) => {
                        tracing::warn!(error = %e, "chart left out of the email");
                        None
                    }
                },
            )
            .collect()
    })
    .await;
    drawn.unwrap_or_default()
}

fn firing_count(n: &Notification) -> usize {
    n.alerts
        .iter()
        .filter(|a| alert_status(a) == "firing")
        .count()
}

fn alert_name(n: &Notification) -> String {
    n.group_labels
        .get("alertname")
        .cloned()
        .or_else(|| n.common_labels().get("alertname").cloned())
        .unwrap_or_else(|| "alerts".to_string())
}

/// The group labels but `alertname`, as `k=v k=v`.
fn group_text(n: &Notification) -> String {
    n.group_labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `[FIRING:2] DiskWillFill host_name=db1`, or `[RESOLVED] …`.
pub(crate) fn default_subject(n: &Notification) -> String {
    let status = if n.status == "resolved" {
        "[RESOLVED]".to_string()
    } else {
        format!("[FIRING:{}]", firing_count(n))
    };
    let group = group_text(n);
    let mut out = format!("{status} {}", alert_name(n));
    if !group.is_empty() {
        out.push(' ');
        out.push_str(&group);
    }
    out
}

/// Expands a subject template. Placeholders: `{{ status }}` (`FIRING` or `RESOLVED`),
/// `{{ firing }}` (firing alerts), `{{ count }}` (all alerts), `{{ alertname }}`,
/// `{{ group }}` (group labels as `k=v`), `{{ receiver }}`, `{{ summary }}` (the first
/// alert's), `{{ labels.NAME }}` (a label every alert shares). An unknown placeholder is kept
/// as written.
pub fn expand_subject(template: &str, n: &Notification) -> String {
    let common = n.common_labels();
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = after[..close].trim();
        let value = match key {
            "status" => Some(n.status.to_uppercase()),
            "firing" => Some(firing_count(n).to_string()),
            "count" => Some(n.alerts.len().to_string()),
            "alertname" => Some(alert_name(n)),
            "group" => Some(group_text(n)),
            "receiver" => Some(n.receiver.clone()),
            "summary" => Some(
                n.alerts
                    .first()
                    .map(|a| a.explanation.summary.clone())
                    .unwrap_or_default(),
            ),
            _ => key
                .strip_prefix("labels.")
                .map(|l| common.get(l).cloned().unwrap_or_default()),
        };
        match value {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

fn when_text(a: &Alert) -> String {
    match a.resolved_at_ms {
        Some(t) => format!("resolved at {}", rfc3339(t)),
        None => format!("active since {}", rfc3339(a.active_since_ms)),
    }
}

/// The plain-text body.
pub(crate) fn text_body(n: &Notification) -> String {
    let mut out = format!("{}\n\n", default_subject(n));
    out.push_str(&format!(
        "{} alert{} ({} firing) for receiver {}.\n",
        n.alerts.len(),
        if n.alerts.len() == 1 { "" } else { "s" },
        firing_count(n),
        n.receiver
    ));
    for a in &n.alerts {
        let name = a.labels.get("alertname").map_or("alert", String::as_str);
        out.push_str(&format!(
            "\n== {} {name} {}\n",
            alert_status(a).to_uppercase(),
            series_text(a)
        ));
        out.push_str(&format!("{:<22}{}\n", "when:", when_text(a)));
        for (label, text) in explanation_lines(a) {
            out.push_str(&format!("{:<22}{text}\n", format!("{label}:")));
        }
        if !a.generator_url.is_empty() {
            out.push_str(&format!("{:<22}{}\n", "link:", a.generator_url));
        }
    }
    if !n.external_url.is_empty() {
        out.push_str(&format!("\nPresage: {}\n", n.external_url));
    }
    out
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A time for captions: `YYYY-MM-DD HH:MM` (UTC).
fn short_time(ms: i64) -> String {
    let full = rfc3339(ms);
    // 2023-11-14T22:13:20.000Z → 2023-11-14 22:13
    full.get(..16).map_or(full.clone(), |s| s.replace('T', " "))
}

/// The HTML body, with an `<img src="cid:…">` for each chart.
pub(crate) fn html_body(n: &Notification, charts: &[(String, Vec<u8>)]) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"></head>\
         <body style=\"font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#222;max-width:720px\">\n",
    );
    let color = if n.status == "resolved" {
        "#2e7d32"
    } else {
        "#c62828"
    };
    out.push_str(&format!(
        "<h2 style=\"color:{color};margin-bottom:4px\">{}</h2>\n<p style=\"margin-top:0;color:#555\">{} alert{} ({} firing) for receiver {}</p>\n",
        esc(&default_subject(n)),
        n.alerts.len(),
        if n.alerts.len() == 1 { "" } else { "s" },
        firing_count(n),
        esc(&n.receiver)
    ));
    for a in &n.alerts {
        let name = a.labels.get("alertname").map_or("alert", String::as_str);
        let status = alert_status(a);
        let badge = if status == "resolved" {
            "#2e7d32"
        } else {
            "#c62828"
        };
        out.push_str(&format!(
            "<div style=\"border:1px solid #ddd;border-left:4px solid {badge};padding:8px 12px;margin:16px 0\">\n\
             <h3 style=\"margin:0 0 4px 0\">{} <span style=\"color:{badge};font-size:80%\">{}</span></h3>\n\
             <div style=\"font-family:monospace;font-size:85%;color:#555\">{}</div>\n<table style=\"border-collapse:collapse;margin-top:8px\">\n",
            esc(name),
            esc(&status.to_uppercase()),
            esc(&series_text(a))
        ));
        let mut row = |label: &str, text: &str, strong: bool| {
            let text = if strong {
                format!("<strong>{}</strong>", esc(text))
            } else {
                esc(text)
            };
            out.push_str(&format!(
                "<tr><td style=\"padding:2px 12px 2px 0;color:#666;vertical-align:top;white-space:nowrap\">{}</td><td style=\"padding:2px 0\">{text}</td></tr>\n",
                esc(label)
            ));
        };
        row("when", &when_text(a), false);
        for (label, text) in explanation_lines(a) {
            row(label, &text, label == "suggestion" || label == "summary");
        }
        out.push_str("</table>\n");
        let cid = content_id(&a.fingerprint);
        if charts.iter().any(|(c, _)| *c == cid) {
            out.push_str(&format!(
                "<p style=\"margin:8px 0 0 0\"><img src=\"cid:{}\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" alt=\"chart of {}\" style=\"max-width:100%;height:auto;border:1px solid #eee\"></p>\n",
                esc(&cid),
                esc(name)
            ));
            if let Some(b) = n.charts.get(&a.fingerprint).and_then(chart::bounds) {
                out.push_str(&format!(
                    "<p style=\"font-size:80%;color:#666;margin:2px 0\">{} to {} UTC, values {} to {}. \
                     <span style=\"color:#1f4e9e\">&#9632; observed</span> · \
                     <span style=\"color:#6e6e6e\">&#9632; expected band</span> · \
                     <span style=\"color:#e67e22\">&#9632; forecast</span> · \
                     <span style=\"color:#c81e1e\">&#9632; threshold, anomalies</span></p>\n",
                    esc(&short_time(b.start_ms)),
                    esc(&short_time(b.end_ms)),
                    esc(&super::fmt_num(b.min)),
                    esc(&super::fmt_num(b.max)),
                ));
            }
        }
        if !a.generator_url.is_empty() {
            out.push_str(&format!(
                "<p style=\"margin:8px 0 0 0\"><a href=\"{}\">Open the series in Presage</a></p>\n",
                esc(&a.generator_url)
            ));
        }
        out.push_str("</div>\n");
    }
    if !n.external_url.is_empty() {
        out.push_str(&format!(
            "<p style=\"font-size:85%;color:#666\">Sent by <a href=\"{}\">Presage</a> at {} UTC.</p>\n",
            esc(&n.external_url),
            esc(&short_time(n.sent_at_ms))
        ));
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing;

    fn config() -> EmailConfig {
        EmailConfig {
            smtp: "127.0.0.1:2525".to_string(),
            tls: SmtpTls::None,
            from: "Presage <presage@example.com>".to_string(),
            to: vec![
                "oncall@example.com".to_string(),
                "sre@example.com".to_string(),
            ],
            username: None,
            password: None,
            subject: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    fn two() -> Notification {
        let mut n = testing::notification(vec![
            testing::alert("db1", "00000000000000a1"),
            testing::alert("db2", "00000000000000a2"),
        ]);
        n.group_labels
            .insert("host_name".to_string(), "db1".to_string());
        n
    }

    #[test]
    fn subject_default_and_template() {
        let n = two();
        assert_eq!(default_subject(&n), "[FIRING:2] DiskWillFill host_name=db1");
        assert_eq!(
            expand_subject(
                "{{status}}: {{ alertname }} on {{labels.mountpoint}} ({{ count }}) {{ nope }}",
                &n
            ),
            "FIRING: DiskWillFill on /var (2) {{ nope }}"
        );
        assert_eq!(
            expand_subject("unclosed {{ status", &n),
            "unclosed {{ status"
        );
        let mut r = n.clone();
        r.status = "resolved".to_string();
        assert!(default_subject(&r).starts_with("[RESOLVED] DiskWillFill"));
    }

    #[test]
    fn bodies_carry_the_explanation_and_reference_the_charts() {
        let n = two();
        let text = text_body(&n);
        for needle in [
            "[FIRING:2] DiskWillFill host_name=db1",
            "host_name=\"db2\"",
            "0.82 (expected 0.8, band 0.78 to 0.83)",
            "3h10m (P10 2h40m, P90 4h5m)",
            "Add 12 GiB to /var or rotate logs within 3h",
            "http://127.0.0.1:9470/#/series?host=db1",
        ] {
            assert!(text.contains(needle), "{needle} not in\n{text}");
        }
        let charts = vec![(content_id("00000000000000a1"), vec![1, 2, 3])];
        let html = html_body(&n, &charts);
        assert!(
            html.contains("src=\"cid:chart-00000000000000a1@presage\""),
            "{html}"
        );
        assert!(!html.contains("cid:chart-00000000000000a2"), "{html}");
        assert!(html.contains("<strong>Add 12 GiB to /var or rotate logs within 3h</strong>"));
        assert!(html.contains("host_name=&quot;db1&quot;"));
    }

    #[tokio::test]
    async fn message_is_alternative_with_related_html_and_inline_png() {
        let notifier = EmailNotifier::new("mail", &config()).unwrap();
        let n = two();
        let charts = render_charts(&n).await;
        assert_eq!(charts.len(), 2);
        let raw = String::from_utf8(notifier.message(&n, &charts).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("Subject: [FIRING:2] DiskWillFill host_name=db1"),
            "{raw}"
        );
        assert!(
            raw.contains("To: oncall@example.com, sre@example.com"),
            "{raw}"
        );
        assert!(raw.contains("Content-Type: multipart/alternative"));
        assert!(raw.contains("Content-Type: multipart/related"));
        assert!(raw.contains("Content-Type: text/plain"));
        assert!(raw.contains("Content-Type: text/html"));
        assert!(raw.contains("Content-Type: image/png"));
        assert!(raw.contains("Content-ID: <chart-00000000000000a1@presage>"));
        assert!(raw.contains("Content-Disposition: inline"));
    }

    #[test]
    fn settings_are_checked_and_debug_redacts() {
        let mut c = config();
        c.smtp = "no-port".to_string();
        assert!(EmailNotifier::new("m", &c).is_err());
        let mut c = config();
        c.to = vec!["not an address".to_string()];
        assert!(EmailNotifier::new("m", &c).is_err());
        let mut c = config();
        c.to.clear();
        assert!(EmailNotifier::new("m", &c).is_err());
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "pa55word\n").unwrap();
        let mut c = config();
        c.tls = SmtpTls::Starttls;
        c.username = Some("presage".to_string());
        c.password = Some(presage_config::SecretRef {
            file: Some(pw),
            env: None,
        });
        let e = EmailNotifier::new("m", &c).unwrap();
        assert!(!format!("{e:?}").contains("pa55word"));
        assert_eq!(host_port("[::1]:25"), Some(("::1".to_string(), 25)));
        assert_eq!(host_port(":25"), None);
    }
}

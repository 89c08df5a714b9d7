//! Notifications printed on standard output, for the demo and for debugging.

use std::io::Write;

use presage_config::ConsoleConfig;

use super::{BoxFuture, Notifier, NotifyError, alert_status, explanation_lines, series_text};
use crate::alert::Notification;

/// Prints a readable block per notification on standard output.
#[derive(Debug, Clone)]
pub struct ConsoleNotifier {
    send_resolved: bool,
}

impl ConsoleNotifier {
    /// A console notifier.
    pub fn new(config: &ConsoleConfig) -> Self {
        Self {
            send_resolved: config.send_resolved,
        }
    }
}

impl Notifier for ConsoleNotifier {
    fn kind(&self) -> &'static str {
        "console"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            if notification.status == "resolved" && !self.send_resolved {
                return Ok(());
            }
            let text = render(notification);
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| NotifyError::permanent(format!("cannot write to stdout: {e}")))
        })
    }
}

/// The block printed for a notification.
pub(crate) fn render(n: &Notification) -> String {
    let firing = n
        .alerts
        .iter()
        .filter(|a| alert_status(a) == "firing")
        .count();
    let mut out = String::new();
    let rule = "─".repeat(72);
    out.push_str(&rule);
    out.push('\n');
    out.push_str(&format!(
        "{} · receiver {} · {} alert{} ({firing} firing) · {}\n",
        super::email::default_subject(n),
        n.receiver,
        n.alerts.len(),
        if n.alerts.len() == 1 { "" } else { "s" },
        super::rfc3339(n.sent_at_ms),
    ));
    for a in &n.alerts {
        let name = a.labels.get("alertname").map_or("alert", String::as_str);
        out.push_str(&format!(
            "\n  ● {} {name} {}\n",
            alert_status(a).to_uppercase(),
            series_text(a)
        ));
        let since = match a.resolved_at_ms {
            Some(t) => format!("resolved at {}", super::rfc3339(t)),
            None => format!("active since {}", super::rfc3339(a.active_since_ms)),
        };
        out.push_str(&format!("    {:<22}{since}\n", "when:"));
        for (label, text) in explanation_lines(a) {
            out.push_str(&format!("    {:<22}{text}\n", format!("{label}:")));
        }
        if !a.generator_url.is_empty() {
            out.push_str(&format!("    {:<22}{}\n", "link:", a.generator_url));
        }
    }
    out.push_str(&rule);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing;

    #[test]
    fn block_names_alert_state_series_explanation_and_suggestion() {
        let n = testing::notification(vec![
            testing::alert("db1", "00000000000000a1"),
            testing::alert("db2", "00000000000000a2"),
        ]);
        let text = render(&n);
        assert!(text.contains("[FIRING:2] DiskWillFill"), "{text}");
        assert!(
            text.contains("● FIRING DiskWillFill {host_name=\"db1\""),
            "{text}"
        );
        assert!(text.contains("host_name=\"db2\""), "{text}");
        assert!(text.contains("3h10m (P10 2h40m, P90 4h5m)"), "{text}");
        assert!(text.contains("suggestion:"), "{text}");
        assert!(text.contains("Add 12 GiB to /var"), "{text}");
    }

    #[tokio::test]
    async fn resolved_notifications_are_skipped_unless_asked_for() {
        let mut n = testing::notification(vec![testing::alert("db1", "00000000000000a1")]);
        n.status = "resolved".to_string();
        let quiet = ConsoleNotifier::new(&ConsoleConfig {
            send_resolved: false,
        });
        assert_eq!(quiet.notify(&n).await, Ok(()));
        assert_eq!(quiet.kind(), "console");
    }
}

//! Alertmanager: alerts posted to `<url>/api/v2/alerts` on one or more Alertmanagers.
//!
//! Every Alertmanager of a cluster is sent every alert, at the same time; the delivery counts
//! as done when at least one accepted it (as Prometheus' notifier does), since Alertmanagers
//! of a cluster share what they receive. When all fail, the error lists each failure, and it
//! is retryable when any of them is.
//!
//! `endsAt` is set on resolved alerts only. Firing alerts leave it unset, so Alertmanager
//! considers them active until its `resolve_timeout` (5 minutes by default) passes without
//! hearing of them again: routes to an Alertmanager receiver should repeat firing alerts more
//! often than that (a `repeat_interval` below `resolve_timeout`), as Prometheus re-sends its
//! firing alerts every minute.

use std::collections::BTreeMap;
use std::time::Duration;

use presage_config::AlertmanagerConfig;
use reqwest::header::CONTENT_TYPE;
use serde::Serialize;

use super::{
    BoxFuture, BuildError, Notifier, NotifyError, annotations_with_explanation, http_client,
    rfc3339,
};
use crate::alert::{AlertState, Notification};

/// One alert as Alertmanager's API v2 takes it (`postableAlert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations, with the explanation (`summary`, `explanation`, `suggestion`).
    pub annotations: BTreeMap<String, String>,
    /// When the condition started holding (RFC 3339).
    pub starts_at: String,
    /// When it resolved; unset while it fires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Link to the series in the web UI; unset when empty (Alertmanager wants a URL).
    #[serde(rename = "generatorURL", skip_serializing_if = "String::is_empty")]
    pub generator_url: String,
}

/// The request body: the notification's alerts.
pub fn postable_alerts(n: &Notification) -> Vec<PostableAlert> {
    n.alerts
        .iter()
        .map(|a| PostableAlert {
            labels: a.labels.clone(),
            annotations: annotations_with_explanation(a),
            starts_at: rfc3339(a.active_since_ms),
            ends_at: match a.state {
                AlertState::Resolved => Some(rfc3339(a.resolved_at_ms.unwrap_or(n.sent_at_ms))),
                AlertState::Firing | AlertState::Pending => None,
            },
            generator_url: a.generator_url.clone(),
        })
        .collect()
}

/// Posts alerts to Alertmanagers.
#[derive(Debug)]
pub struct AlertmanagerNotifier {
    endpoints: Vec<String>,
    client: reqwest::Client,
    timeout: Duration,
}

impl AlertmanagerNotifier {
    /// Builds the notifier: checks the URLs.
    pub fn new(receiver: &str, config: &AlertmanagerConfig) -> Result<Self, BuildError> {
        if config.urls.is_empty() {
            return Err(BuildError::invalid(receiver, "no Alertmanager URL"));
        }
        let mut endpoints = Vec::with_capacity(config.urls.len());
        for url in &config.urls {
            let parsed = reqwest::Url::parse(url).map_err(|e| {
                BuildError::invalid(receiver, format!("Alertmanager url `{url}`: {e}"))
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(BuildError::invalid(
                    receiver,
                    format!("Alertmanager url `{url}` is not http or https"),
                ));
            }
            endpoints.push(format!("{}/api/v2/alerts", url.trim_end_matches('/')));
        }
        Ok(Self {
            endpoints,
            client: http_client(receiver, config.timeout)?,
            timeout: config.timeout,
        })
    }

    async fn post(&self, endpoint: &str, body: Vec<u8>) -> Result<(), NotifyError> {
        let request = self
            .client
            .post(endpoint)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        super::send(request, &format!("POST {endpoint}"), self.timeout).await
    }
}

impl Notifier for AlertmanagerNotifier {
    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            if notification.alerts.is_empty() {
                return Ok(());
            }
            let body = serde_json::to_vec(&postable_alerts(notification))
                .map_err(|e| NotifyError::permanent(format!("cannot encode the alerts: {e}")))?;
            let results = futures::future::join_all(
                self.endpoints.iter().map(|e| self.post(e, body.clone())),
            )
            .await;
            let errors: Vec<NotifyError> = results.into_iter().filter_map(Result::err).collect();
            if errors.len() < self.endpoints.len() {
                for e in &errors {
                    tracing::warn!(error = %e.message, "an Alertmanager refused alerts that another accepted");
                }
                return Ok(());
            }
            Err(NotifyError {
                retryable: errors.iter().any(|e| e.retryable),
                message: format!(
                    "no Alertmanager accepted the alerts: {}",
                    errors
                        .iter()
                        .map(|e| e.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::testing;

    #[test]
    fn postable_alerts_set_ends_at_only_when_resolved() {
        let mut resolved = testing::alert("db2", "00000000000000a2");
        resolved.state = AlertState::Resolved;
        resolved.resolved_at_ms = Some(1_700_000_170_000);
        let n = testing::notification(vec![testing::alert("db1", "00000000000000a1"), resolved]);
        let v = serde_json::to_value(postable_alerts(&n)).unwrap();
        assert_eq!(v[0]["labels"]["host_name"], "db1");
        assert_eq!(v[0]["startsAt"], "2023-11-14T22:13:20.000Z");
        assert!(v[0].get("endsAt").is_none());
        assert_eq!(
            v[0]["annotations"]["suggestion"],
            "Add 12 GiB to /var or rotate logs within 3h"
        );
        assert_eq!(
            v[0]["generatorURL"],
            "http://127.0.0.1:9470/#/series?host=db1"
        );
        assert_eq!(v[1]["endsAt"], "2023-11-14T22:16:10.000Z");
    }

    #[tokio::test]
    async fn all_unreachable_is_a_retryable_error_listing_each() {
        // Ports 1 and 9 on loopback: nothing listens there in a test environment.
        let am = AlertmanagerNotifier::new(
            "am",
            &AlertmanagerConfig {
                urls: vec![
                    "http://127.0.0.1:1/".to_string(),
                    "http://127.0.0.1:9".to_string(),
                ],
                timeout: Duration::from_secs(2),
            },
        )
        .unwrap();
        let n = testing::notification(vec![testing::alert("db1", "00000000000000a1")]);
        let err = am.notify(&n).await.unwrap_err();
        assert!(err.retryable);
        assert!(
            err.message.contains("127.0.0.1:1/api/v2/alerts"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("127.0.0.1:9/api/v2/alerts"),
            "{}",
            err.message
        );
    }
}

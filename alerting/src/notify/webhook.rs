//! Webhooks: the notification POSTed as JSON in Alertmanager's webhook format (version 4), so
//! receivers written for Alertmanager work unchanged. Our explanation and suggestion travel in
//! each alert's annotations (`summary`, `explanation`, `suggestion`).
//!
//! With `hmac_secret` set, each request carries `X-Presage-Signature: sha256=<hex>`, the
//! HMAC-SHA256 of the exact body bytes under the secret.

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use presage_config::WebhookConfig;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use sha2::Sha256;

use super::secret::{self, Secret};
use super::{
    BoxFuture, BuildError, Notifier, NotifyError, ZERO_TIME, alert_status,
    annotations_with_explanation, http_client, rfc3339,
};
use crate::alert::Notification;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "x-presage-signature";

/// The webhook payload: Alertmanager's webhook message, version 4.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Payload {
    /// Always `"4"`.
    pub version: &'static str,
    /// Identifies the group.
    pub group_key: String,
    /// Alerts left out because of `max_alerts`.
    pub truncated_alerts: usize,
    /// `firing` or `resolved`.
    pub status: String,
    /// The receiver's name.
    pub receiver: String,
    /// The labels the group is keyed on.
    pub group_labels: BTreeMap<String, String>,
    /// Labels every alert shares.
    pub common_labels: BTreeMap<String, String>,
    /// Annotations every alert shares.
    pub common_annotations: BTreeMap<String, String>,
    /// The daemon's web UI.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// The alerts.
    pub alerts: Vec<PayloadAlert>,
}

/// One alert of a [`Payload`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PayloadAlert {
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations, with the explanation (`summary`, `explanation`, `suggestion`).
    pub annotations: BTreeMap<String, String>,
    /// When the condition started holding (RFC 3339).
    pub starts_at: String,
    /// When it resolved, or `0001-01-01T00:00:00Z` while it fires (as Alertmanager does).
    pub ends_at: String,
    /// Link to the series in the web UI.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Stable identity of the alert.
    pub fingerprint: String,
}

/// Builds the payload, keeping at most `max_alerts` alerts (0 keeps all).
pub fn payload(n: &Notification, max_alerts: usize) -> Payload {
    let keep = if max_alerts == 0 {
        n.alerts.len()
    } else {
        max_alerts.min(n.alerts.len())
    };
    let alerts = n.alerts[..keep]
        .iter()
        .map(|a| PayloadAlert {
            status: alert_status(a),
            labels: a.labels.clone(),
            annotations: annotations_with_explanation(a),
            starts_at: rfc3339(a.active_since_ms),
            ends_at: a
                .resolved_at_ms
                .map_or_else(|| ZERO_TIME.to_string(), rfc3339),
            generator_url: a.generator_url.clone(),
            fingerprint: a.fingerprint.clone(),
        })
        .collect();
    Payload {
        version: "4",
        group_key: n.group_key.clone(),
        truncated_alerts: n.alerts.len() - keep,
        status: n.status.clone(),
        receiver: n.receiver.clone(),
        group_labels: n.group_labels.clone(),
        common_labels: n.common_labels(),
        common_annotations: n.common_annotations(),
        external_url: n.external_url.clone(),
        alerts,
    }
}

/// `sha256=<hex>`: the HMAC-SHA256 of `body` under `key`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length; the error branch cannot happen.
    let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + digest.len() * 2);
    out.push_str("sha256=");
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// POSTs notifications to a webhook.
pub struct WebhookNotifier {
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    secret: Option<Secret>,
    max_alerts: usize,
    timeout: Duration,
}

impl std::fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("secret", &self.secret)
            .field("max_alerts", &self.max_alerts)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl WebhookNotifier {
    /// Builds the notifier: reads the HMAC secret and checks the URL and headers.
    pub fn new(receiver: &str, config: &WebhookConfig) -> Result<Self, BuildError> {
        let url = reqwest::Url::parse(&config.url).map_err(|e| {
            BuildError::invalid(receiver, format!("webhook url `{}`: {e}", config.url))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BuildError::invalid(
                receiver,
                format!("webhook url `{}` is not http or https", config.url),
            ));
        }
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| BuildError::invalid(receiver, format!("invalid header name `{k}`")))?;
            let mut value = HeaderValue::from_str(v).map_err(|_| {
                BuildError::invalid(receiver, format!("invalid value for header `{k}`"))
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let secret = config
            .hmac_secret
            .as_ref()
            .map(secret::read)
            .transpose()
            .map_err(|source| BuildError::Secret {
                receiver: receiver.to_string(),
                source,
            })?;
        Ok(Self {
            url: config.url.clone(),
            client: http_client(receiver, config.timeout)?,
            headers,
            secret,
            max_alerts: config.max_alerts,
            timeout: config.timeout,
        })
    }
}

impl Notifier for WebhookNotifier {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn notify<'a>(
        &'a self,
        notification: &'a Notification,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&payload(notification, self.max_alerts))
                .map_err(|e| NotifyError::permanent(format!("cannot encode the payload: {e}")))?;
            let mut request = self
                .client
                .post(&self.url)
                .headers(self.headers.clone())
                .header(CONTENT_TYPE, "application/json");
            if let Some(secret) = &self.secret {
                request = request.header(
                    SIGNATURE_HEADER,
                    signature(secret.expose().as_bytes(), &body),
                );
            }
            let what = format!("POST {}", self.url);
            // The client's timeout covers the request; `send` also bounds a slow body read.
            super::send(request.body(body), &what, self.timeout).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::AlertState;
    use crate::notify::testing;

    #[test]
    fn payload_has_alertmanagers_shape() {
        let mut resolved = testing::alert("db2", "00000000000000a2");
        resolved.state = AlertState::Resolved;
        resolved.resolved_at_ms = Some(1_700_000_170_000);
        let n = testing::notification(vec![testing::alert("db1", "00000000000000a1"), resolved]);
        let v = serde_json::to_value(payload(&n, 0)).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["groupKey"], n.group_key);
        assert_eq!(v["truncatedAlerts"], 0);
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "oncall");
        assert_eq!(v["groupLabels"]["alertname"], "DiskWillFill");
        assert_eq!(v["commonLabels"]["severity"], "critical");
        assert!(v["commonLabels"].get("host_name").is_none());
        assert_eq!(v["externalURL"], "http://127.0.0.1:9470");
        let a = &v["alerts"][0];
        assert_eq!(a["status"], "firing");
        assert_eq!(a["labels"]["host_name"], "db1");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
        assert_eq!(a["fingerprint"], "00000000000000a1");
        assert_eq!(a["generatorURL"], "http://127.0.0.1:9470/#/series?host=db1");
        assert_eq!(
            a["annotations"]["suggestion"],
            "Add 12 GiB to /var or rotate logs within 3h"
        );
        assert!(
            a["annotations"]["explanation"]
                .as_str()
                .unwrap()
                .contains("grows")
        );
        assert!(
            a["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("3h10m")
        );
        let b = &v["alerts"][1];
        assert_eq!(b["status"], "resolved");
        assert_eq!(b["endsAt"], "2023-11-14T22:16:10.000Z");
    }

    #[test]
    fn max_alerts_truncates() {
        let n = testing::notification(vec![
            testing::alert("db1", "00000000000000a1"),
            testing::alert("db2", "00000000000000a2"),
            testing::alert("db3", "00000000000000a3"),
        ]);
        let p = payload(&n, 2);
        assert_eq!(p.alerts.len(), 2);
        assert_eq!(p.truncated_alerts, 1);
        let p = payload(&n, 5);
        assert_eq!((p.alerts.len(), p.truncated_alerts), (3, 0));
    }

    #[test]
    fn signature_matches_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn bad_settings_are_refused_and_debug_redacts() {
        let mut cfg = WebhookConfig {
            url: "ftp://example.com/".to_string(),
            headers: BTreeMap::new(),
            hmac_secret: None,
            max_alerts: 0,
            timeout: Duration::from_secs(1),
        };
        assert!(WebhookNotifier::new("w", &cfg).is_err());
        cfg.url = "http://127.0.0.1:9/hook".to_string();
        cfg.headers
            .insert("bad header".to_string(), "x".to_string());
        assert!(WebhookNotifier::new("w", &cfg).is_err());
        cfg.headers.clear();
        cfg.headers
            .insert("Authorization".to_string(), "Bearer tok3n".to_string());
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key");
        std::fs::write(&key, "k3y\n").unwrap();
        cfg.hmac_secret = Some(presage_config::SecretRef {
            file: Some(key),
            env: None,
        });
        let w = WebhookNotifier::new("w", &cfg).unwrap();
        let debug = format!("{w:?}");
        assert!(
            !debug.contains("tok3n") && !debug.contains("k3y"),
            "{debug}"
        );
    }
}

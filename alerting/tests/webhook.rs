//! Webhook notifications received by an HTTP server in the test: the payload has Alertmanager's
//! webhook shape, the HMAC signature verifies, custom headers arrive, and the receiver's status
//! decides whether a delivery is retried.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use presage_alerting::AlertState;
use presage_alerting::notify::retry::{self, RetryPolicy};
use presage_alerting::notify::{self, webhook};
use presage_config::{ReceiverConfig, SecretRef, WebhookConfig};
use serde_json::Value;

use common::{disk_alert, notification};

#[derive(Clone, Default)]
struct Hook {
    /// Statuses to answer with, in order; 200 once they run out.
    script: Arc<Mutex<Vec<u16>>>,
    /// Every request: headers and body.
    seen: Arc<Mutex<Vec<(HeaderMap, Bytes)>>>,
}

impl Hook {
    fn answering(statuses: &[u16]) -> Self {
        let hook = Hook::default();
        let mut s = statuses.to_vec();
        s.reverse();
        *hook.script.lock().unwrap() = s;
        hook
    }

    fn seen(&self) -> Vec<(HeaderMap, Bytes)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn receive(State(hook): State<Hook>, headers: HeaderMap, body: Bytes) -> StatusCode {
    hook.seen.lock().unwrap().push((headers, body));
    let code = hook.script.lock().unwrap().pop().unwrap_or(200);
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// Serves `hook` on a fresh loopback port until the test ends.
async fn serve(hook: Hook) -> SocketAddr {
    let app = Router::new().route("/hook", post(receive)).with_state(hook);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn receiver(
    addr: SocketAddr,
    hmac_key: Option<&std::path::Path>,
    max_alerts: usize,
) -> ReceiverConfig {
    ReceiverConfig {
        name: "hook".to_string(),
        email: None,
        webhook: Some(WebhookConfig {
            url: format!("http://{addr}/hook"),
            headers: BTreeMap::from([("X-Team".to_string(), "storage".to_string())]),
            hmac_secret: hmac_key.map(|k| SecretRef {
                file: Some(k.to_path_buf()),
                env: None,
            }),
            max_alerts,
            timeout: Duration::from_secs(5),
        }),
        alertmanager: None,
        console: None,
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        max_attempts: 4,
        max_elapsed: Duration::from_secs(10),
    }
}

/// Checks that `v` is an RFC 3339 UTC timestamp.
fn is_rfc3339(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| humantime::parse_rfc3339(s).is_ok() || s == "0001-01-01T00:00:00Z")
}

#[tokio::test]
async fn payload_has_alertmanagers_webhook_shape_and_a_valid_signature() {
    let hook = Hook::default();
    let addr = serve(hook.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("hmac.key");
    std::fs::write(&key_file, "webhook-signing-key\n").unwrap();
    let notifier = notify::build(&receiver(addr, Some(&key_file), 0)).expect("webhook notifier");
    assert_eq!(notifier.kind(), "webhook");

    let mut resolved = disk_alert("db2", "00000000000000b2");
    resolved.state = AlertState::Resolved;
    resolved.resolved_at_ms = Some(common::now_ms() - 5_000);
    let n = notification(
        "hook",
        vec![disk_alert("db1", "00000000000000b1"), resolved],
    );
    let attempts = retry::deliver(notifier.as_ref(), &n, &fast_retries())
        .await
        .expect("delivered");
    assert_eq!(attempts.attempts, 1);

    let seen = hook.seen();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-team"], "storage");
    // The signature is the HMAC-SHA256 of the exact body, with the key's trailing newline
    // dropped.
    let signature = headers[webhook::SIGNATURE_HEADER].to_str().unwrap();
    assert_eq!(signature, webhook::signature(b"webhook-signing-key", body));
    assert_ne!(
        signature,
        webhook::signature(b"webhook-signing-key\n", body)
    );
    assert!(signature.starts_with("sha256=") && signature.len() == 7 + 64);

    let v: Value = serde_json::from_slice(body).expect("JSON body");
    assert_eq!(v["version"], "4");
    assert_eq!(v["groupKey"], n.group_key);
    assert_eq!(v["truncatedAlerts"], 0);
    assert_eq!(v["status"], "firing");
    assert_eq!(v["receiver"], "hook");
    assert_eq!(
        v["groupLabels"],
        serde_json::json!({"alertname": "DiskWillFill"})
    );
    assert_eq!(v["commonLabels"]["alertname"], "DiskWillFill");
    assert_eq!(v["commonLabels"]["severity"], "critical");
    assert!(v["commonLabels"].get("host_name").is_none());
    assert!(v["commonAnnotations"].is_object());
    assert_eq!(v["externalURL"], "http://127.0.0.1:9470");
    let alerts = v["alerts"].as_array().expect("alerts array");
    assert_eq!(alerts.len(), 2);
    for a in alerts {
        for key in [
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        ] {
            assert!(a.get(key).is_some(), "alert without `{key}`: {a}");
        }
        assert!(is_rfc3339(&a["startsAt"]), "{}", a["startsAt"]);
        assert!(is_rfc3339(&a["endsAt"]), "{}", a["endsAt"]);
    }
    let firing = &alerts[0];
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["labels"]["host_name"], "db1");
    assert_eq!(firing["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(firing["fingerprint"], "00000000000000b1");
    assert_eq!(
        firing["annotations"]["suggestion"],
        "Add 12 GiB to /var on db1 or rotate its logs within 3h"
    );
    assert_eq!(
        firing["annotations"]["summary"],
        "/var on db1 will reach 90% in 3h10m"
    );
    assert!(
        firing["annotations"]["explanation"]
            .as_str()
            .unwrap()
            .contains("grows 2.5% per hour")
    );
    assert_eq!(
        firing["annotations"]["description"],
        "/var on db1 is filling up"
    );
    let done = &alerts[1];
    assert_eq!(done["status"], "resolved");
    assert_ne!(done["endsAt"], "0001-01-01T00:00:00Z");
}

#[tokio::test]
async fn max_alerts_truncates_the_payload() {
    let hook = Hook::default();
    let addr = serve(hook.clone()).await;
    let notifier = notify::build(&receiver(addr, None, 2)).expect("webhook notifier");
    let n = notification(
        "hook",
        vec![
            disk_alert("db1", "00000000000000c1"),
            disk_alert("db2", "00000000000000c2"),
            disk_alert("db3", "00000000000000c3"),
        ],
    );
    notifier.notify(&n).await.expect("delivered");
    let seen = hook.seen();
    let (headers, body) = &seen[0];
    assert!(headers.get(webhook::SIGNATURE_HEADER).is_none());
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(v["truncatedAlerts"], 1);
}

#[tokio::test]
async fn a_server_error_is_retried_until_accepted() {
    let hook = Hook::answering(&[500, 503]);
    let addr = serve(hook.clone()).await;
    let notifier = notify::build(&receiver(addr, None, 0)).unwrap();
    let n = notification("hook", vec![disk_alert("db1", "00000000000000e1")]);
    let attempts = retry::deliver(notifier.as_ref(), &n, &fast_retries())
        .await
        .expect("accepted on the third attempt");
    assert_eq!(attempts.attempts, 3);
    let seen = hook.seen();
    assert_eq!(seen.len(), 3);
    // Every attempt sends the same payload.
    assert_eq!(seen[0].1, seen[2].1);
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let hook = Hook::answering(&[400]);
    let addr = serve(hook.clone()).await;
    let notifier = notify::build(&receiver(addr, None, 0)).unwrap();
    let n = notification("hook", vec![disk_alert("db1", "00000000000000e2")]);
    let err = retry::deliver(notifier.as_ref(), &n, &fast_retries())
        .await
        .expect_err("400 is permanent");
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("400"), "{err:?}");
    assert_eq!(hook.seen().len(), 1, "no second attempt after a 400");
}

#[tokio::test]
async fn too_many_requests_and_unreachable_are_retryable() {
    let hook = Hook::answering(&[429]);
    let addr = serve(hook.clone()).await;
    let notifier = notify::build(&receiver(addr, None, 0)).unwrap();
    let n = notification("hook", vec![disk_alert("db1", "00000000000000e3")]);
    let err = notifier.notify(&n).await.expect_err("429");
    assert!(err.retryable, "{err:?}");

    let nowhere: SocketAddr = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let notifier = notify::build(&receiver(nowhere, None, 0)).unwrap();
    let err = notifier.notify(&n).await.expect_err("connection refused");
    assert!(err.retryable, "{err:?}");
}

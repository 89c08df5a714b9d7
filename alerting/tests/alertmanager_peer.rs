//! Alerts posted to a real Alertmanager (Debian's `prometheus-alertmanager`) over API v2, then
//! listed back from it.

mod common;

use std::time::Duration;

use presage_alerting::AlertState;
use presage_alerting::notify;
use presage_config::{AlertmanagerConfig, ReceiverConfig};
use serde_json::Value;

use common::{Peer, disk_alert, eventually, free_port, notification, require_program};

const CONFIG: &str = "\
route:
  receiver: blackhole
  group_wait: 1h
receivers:
  - name: blackhole
";

struct Alertmanager {
    peer: Peer,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start_alertmanager() -> Alertmanager {
    let program = require_program(
        "prometheus-alertmanager",
        "apt-get install -y prometheus-alertmanager",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, CONFIG).expect("write the config");
    let port = free_port();
    let args = vec![
        format!("--config.file={}", config.display()),
        format!("--storage.path={}", dir.path().join("data").display()),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_string(),
        "--log.level=debug".to_string(),
    ];
    let mut peer = Peer::spawn("alertmanager", &program, &args, dir.path());
    let url = format!("http://127.0.0.1:{port}");
    let client = client();
    let ready = format!("{url}/-/ready");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        peer.assert_running();
        if client
            .get(&ready)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Alertmanager did not become ready:\n{}",
            peer.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Alertmanager {
        peer,
        url,
        _dir: dir,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

fn receiver(urls: Vec<String>) -> ReceiverConfig {
    ReceiverConfig {
        name: "am".to_string(),
        email: None,
        webhook: None,
        alertmanager: Some(AlertmanagerConfig {
            urls,
            timeout: Duration::from_secs(5),
        }),
        console: None,
    }
}

/// Active alerts Alertmanager lists.
async fn listed(url: &str) -> Option<Vec<Value>> {
    let res = client()
        .get(format!("{url}/api/v2/alerts"))
        .send()
        .await
        .ok()?;
    if !res.status().is_success() {
        return None;
    }
    let text = res.text().await.ok()?;
    serde_json::from_str(&text).ok()
}

fn find<'a>(alerts: &'a [Value], host: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["host_name"] == host)
}

#[tokio::test]
async fn alerts_posted_over_api_v2_are_listed_and_resolve() {
    let mut am = start_alertmanager().await;
    // The second URL has nothing behind it: one Alertmanager accepting is enough.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let notifier = notify::build(&receiver(vec![am.url.clone(), dead])).expect("notifier");
    assert_eq!(notifier.kind(), "alertmanager");

    let n = notification(
        "am",
        vec![
            disk_alert("db1", "00000000000000f1"),
            disk_alert("db2", "00000000000000f2"),
        ],
    );
    notifier
        .notify(&n)
        .await
        .expect("Alertmanager accepts the alerts");

    let alerts = eventually(
        Duration::from_secs(15),
        "Alertmanager to list both alerts",
        || {
            let url = am.url.clone();
            async move {
                let alerts = listed(&url).await?;
                (find(&alerts, "db1").is_some() && find(&alerts, "db2").is_some()).then_some(alerts)
            }
        },
    )
    .await;
    am.peer.assert_running();
    let db1 = find(&alerts, "db1").unwrap();
    assert_eq!(db1["labels"]["alertname"], "DiskWillFill");
    assert_eq!(db1["labels"]["severity"], "critical");
    assert_eq!(db1["labels"]["mountpoint"], "/var");
    assert_eq!(
        db1["annotations"]["summary"],
        "/var on db1 will reach 90% in 3h10m"
    );
    assert_eq!(
        db1["annotations"]["suggestion"],
        "Add 12 GiB to /var on db1 or rotate its logs within 3h"
    );
    assert!(
        db1["annotations"]["explanation"]
            .as_str()
            .unwrap()
            .contains("grows 2.5% per hour")
    );
    assert_eq!(
        db1["annotations"]["description"],
        "/var on db1 is filling up"
    );
    assert_eq!(
        db1["generatorURL"],
        "http://127.0.0.1:9470/#/series?host_name=db1"
    );
    assert_eq!(db1["status"]["state"], "active");
    // startsAt is the alert's own start, not the time it was posted.
    let starts = humantime::parse_rfc3339(db1["startsAt"].as_str().unwrap()).unwrap();
    let posted = std::time::UNIX_EPOCH + Duration::from_millis(n.alerts[0].active_since_ms as u64);
    assert_eq!(starts, posted);

    // Resolving db1 (endsAt in the past) takes it off the active list; db2 stays.
    let mut resolved = disk_alert("db1", "00000000000000f1");
    resolved.state = AlertState::Resolved;
    resolved.resolved_at_ms = Some(common::now_ms() - 1_000);
    let r = notification("am", vec![resolved]);
    notifier
        .notify(&r)
        .await
        .expect("Alertmanager accepts the resolution");
    eventually(
        Duration::from_secs(15),
        "db1 to leave Alertmanager's active alerts",
        || {
            let url = am.url.clone();
            async move {
                let alerts = listed(&url).await?;
                (find(&alerts, "db1").is_none() && find(&alerts, "db2").is_some()).then_some(())
            }
        },
    )
    .await;
}

#[tokio::test]
async fn all_alertmanagers_failing_is_an_error_naming_each() {
    let a = format!("http://127.0.0.1:{}", free_port());
    let b = format!("http://127.0.0.1:{}/", free_port());
    let notifier = notify::build(&receiver(vec![a.clone(), b.clone()])).expect("notifier");
    let n = notification("am", vec![disk_alert("db1", "00000000000000f3")]);
    let err = notifier.notify(&n).await.expect_err("nobody is listening");
    assert!(err.retryable, "{err:?}");
    assert!(
        err.message.contains(&format!("{a}/api/v2/alerts")),
        "{err:?}"
    );
    assert!(
        err.message
            .contains(&format!("{}/api/v2/alerts", b.trim_end_matches('/'))),
        "{err:?}"
    );
}

#[tokio::test]
async fn alertmanager_refusing_bad_alerts_is_not_retryable() {
    let am = start_alertmanager().await;
    let notifier = notify::build(&receiver(vec![am.url.clone()])).expect("notifier");
    // A label name Alertmanager refuses.
    let mut bad = disk_alert("db1", "00000000000000f4");
    bad.labels
        .insert("not a label".to_string(), "x".to_string());
    let n = notification("am", vec![bad]);
    let err = notifier
        .notify(&n)
        .await
        .expect_err("400 for an invalid label");
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("400"), "{err:?}");
}

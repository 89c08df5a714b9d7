//! Log lines reach the real forecaster once each — from the end of files present at start,
//! from new files, across a rename rotation and a copytruncate rotation — with severities and
//! multi-line records.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::Value;

fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} line {i:04}")).collect()
}

/// Waits until every `expected` body has arrived, then checks none arrived twice.
async fn arrive_once(
    http: SocketAddr,
    selector: &str,
    expected: &[String],
) -> BTreeMap<String, usize> {
    let counts = eventually(Duration::from_secs(30), "every line to arrive", || async {
        let counts = body_counts(&logs(http, selector).await);
        expected
            .iter()
            .all(|b| counts.contains_key(b))
            .then_some(counts)
    })
    .await;
    assert_exactly_once(&counts, expected);
    counts
}

fn config(dir: &Path, forecaster: &Forecaster) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"[agent]
endpoint = "{endpoint}"
state_dir = "{state}"
service_name = "shop"

[host]
enabled = false

[[logs]]
paths = ["{logs}/*.log"]
poll_interval = "100ms"
rotate_wait = "1s"
attributes = {{ team = "payments" }}

[[logs]]
paths = ["{logs}/*.trace"]
service_name = "tracer"
poll_interval = "100ms"
multiline_start = '^\d{{4}}-\d\d-\d\d '
multiline_timeout = "300ms"
"#,
            endpoint = forecaster.grpc_endpoint(),
            state = dir.join("state").display(),
            logs = dir.join("logs").display(),
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_arrive_once_across_rotations() {
    let forecaster = Forecaster::start().await;
    let http = forecaster.http();
    let dir = tempfile::tempdir().unwrap();
    let logs_dir = dir.path().join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let app = logs_dir.join("app.log");
    // Present before the first start: skipped (start_at = "end").
    append(&app, &lines("old", 0..5));
    let cfg = config(dir.path(), &forecaster);
    let agent =
        AgentProcess::start(dir.path(), &args(&["--config", cfg.to_str().unwrap()]), &[]).await;
    let sel = r#"{job="shop"}"#;

    // Appended lines, with severities from several formats.
    let mut expected = vec![
        "ERROR payment declined".to_string(),
        r#"{"level":"warn","msg":"slow"}"#.to_string(),
        "ts=1 level=debug msg=x".to_string(),
        "2024-01-01 12:00:00 INFO ok".to_string(),
    ];
    expected.extend(lines("first", 0..50));
    append(&app, &expected);
    let counts = arrive_once(http, sel, &expected).await;
    assert!(
        counts.keys().all(|b| !b.starts_with("old ")),
        "old content was skipped"
    );
    let entries = logs(http, sel).await;
    let sev = |body: &str| -> String {
        let e: &Value = entries.iter().find(|e| e["body"] == body).unwrap();
        e["severity"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(sev("ERROR payment declined"), "ERROR");
    assert_eq!(sev(r#"{"level":"warn","msg":"slow"}"#), "WARN");
    assert_eq!(sev("ts=1 level=debug msg=x"), "DEBUG");
    assert_eq!(sev("2024-01-01 12:00:00 INFO ok"), "INFO");
    let e = &entries[0];
    assert_eq!(e["labels"]["service_name"], "shop");
    assert_eq!(e["attributes"]["log.file.name"], "app.log");
    assert_eq!(e["attributes"]["team"], "payments");

    // A new file matching the glob is read from its first line.
    let other = logs_dir.join("other.log");
    let fresh = lines("fresh", 0..10);
    append(&other, &fresh);
    expected.extend(fresh);
    arrive_once(http, sel, &expected).await;

    // Rename-and-create: the writer's last lines land in the renamed file.
    let before = lines("before-rename", 0..30);
    append(&app, &before);
    std::fs::rename(&app, logs_dir.join("app.log.1")).unwrap();
    let late = lines("late-in-renamed", 0..5);
    append(&logs_dir.join("app.log.1"), &late);
    let after = lines("after-rename", 0..30);
    append(&app, &after);
    expected.extend(before);
    expected.extend(late);
    expected.extend(after);
    arrive_once(http, sel, &expected).await;

    // copytruncate: copy, truncate in place, keep writing.
    let before = lines("before-copytruncate", 0..30);
    append(&app, &before);
    expected.extend(before);
    arrive_once(http, sel, &expected).await;
    std::fs::copy(&app, logs_dir.join("app.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&app)
        .unwrap()
        .set_len(0)
        .unwrap();
    let after = lines("after-copytruncate", 0..30);
    append(&app, &after);
    expected.extend(after);
    arrive_once(http, sel, &expected).await;

    // Multi-line records (a stack trace) from the second source, under its own service.
    let trace = logs_dir.join("app.trace");
    append(
        &trace,
        &args(&[
            "2024-05-01 10:00:00 ERROR request failed",
            "java.lang.IllegalStateException: boom",
            "    at com.shop.Pay.run(Pay.java:42)",
            "    at java.lang.Thread.run(Thread.java:829)",
            "2024-05-01 10:00:01 INFO recovered",
        ]),
    );
    let traced = eventually(
        Duration::from_secs(20),
        "the multi-line records",
        || async {
            let e = logs(http, r#"{job="tracer"}"#).await;
            (e.len() >= 2).then_some(e)
        },
    )
    .await;
    assert_eq!(traced.len(), 2, "{traced:?}");
    assert_eq!(
        traced[0]["body"],
        "2024-05-01 10:00:00 ERROR request failed\njava.lang.IllegalStateException: boom\n    at com.shop.Pay.run(Pay.java:42)\n    at java.lang.Thread.run(Thread.java:829)"
    );
    assert_eq!(traced[0]["severity"], "ERROR");
    assert_eq!(traced[1]["body"], "2024-05-01 10:00:01 INFO recovered");

    // The acknowledgement reaches the agent just after the forecaster stored the records.
    let sent = expected.len() as f64 + 2.0;
    let m = eventually(Duration::from_secs(10), "the sent counter", || async {
        let m = agent.metrics().await;
        (m["presage_agent_items_sent_total{signal=\"logs\"}"] >= sent).then_some(m)
    })
    .await;
    assert_eq!(m["presage_agent_items_sent_total{signal=\"logs\"}"], sent);
    assert_eq!(m["presage_agent_log_file_truncations_total"], 1.0, "{m:?}");
    // Lines read: all expected ones, the multi-line trace's five, none of the old ones.
    assert_eq!(
        m["presage_agent_log_lines_read_total"],
        expected.len() as f64 + 5.0
    );
    agent.stop().await;
    forecaster.stop().await;
}

//! Restarting the agent itself neither loses nor repeats log lines: positions are saved when
//! the forecaster acknowledges, and batches still in the spool carry theirs.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn lines(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix} {i:05}")).collect()
}

fn write_config(dir: &Path, endpoint: &str) -> PathBuf {
    let logs_dir = dir.join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let cfg = dir.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[agent]
endpoint = "{endpoint}"
timeout = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "500ms"
state_dir = "{}"
service_name = "restart-test"

[host]
enabled = false

[[logs]]
paths = ["{}/*.log"]
poll_interval = "100ms"
"#,
            dir.join("state").display(),
            logs_dir.display()
        ),
    )
    .unwrap();
    cfg
}

const SEL: &str = r#"{job="restart-test"}"#;

async fn all_arrive(http: std::net::SocketAddr, expected: &[String]) {
    let counts = eventually(Duration::from_secs(30), "every line", || async {
        let counts = body_counts(&logs(http, SEL).await);
        expected
            .iter()
            .all(|b| counts.contains_key(b))
            .then_some(counts)
    })
    .await;
    assert_exactly_once(&counts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_agent_repeats_no_line() {
    let forecaster = Forecaster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &forecaster.grpc_endpoint());
    let log = dir.path().join("logs/app.log");
    append(&log, &lines("ignored", 0..3));
    let run = args(&["--config", cfg.to_str().unwrap()]);

    let agent = AgentProcess::start(dir.path(), &run, &[]).await;
    let mut expected = lines("first run", 0..100);
    append(&log, &expected);
    all_arrive(forecaster.http(), &expected).await;
    // Half-written line when the agent stops: it must arrive once, whole.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, b"split across the restart ").unwrap();
    eventually(
        Duration::from_secs(10),
        "the first lines to be read",
        || async {
            (agent.metric("presage_agent_log_lines_read_total").await >= 100.0).then_some(())
        },
    )
    .await;
    agent.stop().await;

    // Written while the agent is down.
    std::io::Write::write_all(&mut f, b"and finished while down\n").unwrap();
    let down = lines("while down", 0..50);
    append(&log, &down);
    expected.push("split across the restart and finished while down".to_string());
    expected.extend(down);

    let agent = AgentProcess::start(dir.path(), &run, &[]).await;
    let second = lines("second run", 0..50);
    append(&log, &second);
    expected.extend(second);
    all_arrive(forecaster.http(), &expected).await;
    let body_counts = body_counts(&logs(forecaster.http(), SEL).await);
    assert!(body_counts.keys().all(|b| !b.starts_with("ignored")));
    assert_eq!(body_counts.len(), expected.len());
    agent.stop().await;
    forecaster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarting_the_agent_during_an_outage_repeats_no_line() {
    let forecaster = Forecaster::start().await;
    let ports = forecaster.ports();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &forecaster.grpc_endpoint());
    let log = dir.path().join("logs/app.log");
    append(&log, &[]);
    let run = args(&["--config", cfg.to_str().unwrap()]);

    let agent = AgentProcess::start(dir.path(), &run, &[]).await;
    let mut expected = lines("before outage", 0..20);
    append(&log, &expected);
    all_arrive(forecaster.http(), &expected).await;
    let first_app = forecaster.stop().await;

    // Lines read during the outage go to the spool; then the agent restarts.
    let spooled = lines("spooled", 0..40);
    append(&log, &spooled);
    expected.extend(spooled);
    eventually(
        Duration::from_secs(20),
        "the lines to be spooled",
        || async {
            (agent.metric("presage_agent_log_lines_read_total").await >= 60.0
                && agent.metric("presage_agent_spool_batches").await >= 1.0)
                .then_some(())
        },
    )
    .await;
    agent.stop().await;
    let down = lines("agent down", 0..20);
    append(&log, &down);
    expected.extend(down);
    let agent = AgentProcess::start(dir.path(), &run, &[]).await;
    let more = lines("agent back", 0..20);
    append(&log, &more);
    expected.extend(more);
    eventually(
        Duration::from_secs(20),
        "the restarted agent to spool",
        || async {
            (agent.metric("presage_agent_log_lines_read_total").await >= 40.0).then_some(())
        },
    )
    .await;

    // The forecaster returns: the spool of both agent runs replays once.
    let second = Forecaster::start_with(forecaster_config(Some(ports))).await;
    let from_first: Vec<serde_json::Value> = first_app
        .logs
        .recent(None, 100_000)
        .into_iter()
        .map(|e| serde_json::json!({ "body": e.body }))
        .collect();
    let counts = eventually(Duration::from_secs(30), "every line", || async {
        let mut all = from_first.clone();
        all.extend(logs(second.http(), SEL).await);
        let counts = body_counts(&all);
        expected
            .iter()
            .all(|b| counts.contains_key(b))
            .then_some(counts)
    })
    .await;
    assert_exactly_once(&counts, &expected);
    agent.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_loses_no_line() {
    let forecaster = Forecaster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &forecaster.grpc_endpoint());
    let log = dir.path().join("logs/app.log");
    append(&log, &[]);
    let run = args(&["--config", cfg.to_str().unwrap()]);
    let mut agent = AgentProcess::start(dir.path(), &run, &[]).await;
    let mut expected = lines("before kill", 0..200);
    append(&log, &expected);
    // SIGKILL with lines read but perhaps not yet acknowledged.
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    drop(agent);
    let after = lines("after kill", 0..20);
    append(&log, &after);
    expected.extend(after);
    let agent = AgentProcess::start(dir.path(), &run, &[]).await;
    let counts = eventually(Duration::from_secs(30), "every line", || async {
        let counts = body_counts(&logs(forecaster.http(), SEL).await);
        expected
            .iter()
            .all(|b| counts.contains_key(b))
            .then_some(counts)
    })
    .await;
    // At-least-once after a crash: a line can repeat only if the agent died between the
    // forecaster's answer and saving the position, a window of microseconds.
    let repeated: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(b, _)| b)
        .collect();
    assert!(
        repeated.iter().all(|b| b.starts_with("before kill")),
        "{repeated:?}"
    );
    agent.stop().await;
    forecaster.stop().await;
}

//! The forecaster is stopped for 30 s while host metrics and log lines keep coming, then
//! restarted on the same ports: every log line arrives exactly once (counted across both
//! forecaster instances), and the metric series resume without a gap — the spool is replayed
//! in order, so the outage is filled in.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use presage_forecaster::store::Selector;

const OUTAGE: Duration = Duration::from_secs(30);
const GAUGE: &str = r#"system_memory_usage{state="used",job="outage-test"}"#;

/// Writes a numbered line every 50 ms until stopped; returns how many it wrote.
fn writer(
    path: std::path::PathBuf,
    stop: Arc<AtomicBool>,
    written: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            append(&path, &[format!("INFO request {i:06} served")]);
            i += 1;
            written.store(i, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
        }
    })
}

/// Timestamps (ms) of the gauge's resampled history in a stopped instance.
fn stored_steps(app: &presage_forecaster::app::App) -> Vec<i64> {
    let sel = Selector::parse(GAUGE).unwrap();
    app.store
        .history(&sel, i64::MIN, i64::MAX, 1)
        .into_iter()
        .next()
        .map(|h| {
            h.points
                .into_iter()
                .filter(|(_, v)| v.is_finite())
                .map(|(t, _)| t)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_loses_and_repeats_nothing() {
    let first = Forecaster::start().await;
    let ports = first.ports();
    let dir = tempfile::tempdir().unwrap();
    let logs_dir = dir.path().join("logs");
    std::fs::create_dir_all(&logs_dir).unwrap();
    let log = logs_dir.join("app.log");
    append(&log, &["before the agent".to_string()]);
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[agent]
endpoint = "{}"
interval = "1s"
timeout = "2s"
retry_initial_backoff = "200ms"
retry_max_backoff = "1s"
state_dir = "{}"
service_name = "outage-test"

[[logs]]
paths = ["{}/*.log"]
poll_interval = "100ms"
"#,
            first.grpc_endpoint(),
            dir.path().join("state").display(),
            logs_dir.display()
        ),
    )
    .unwrap();
    let agent =
        AgentProcess::start(dir.path(), &args(&["--config", cfg.to_str().unwrap()]), &[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicUsize::new(0));
    let writing = writer(log.clone(), stop.clone(), written.clone());
    let sel = r#"{job="outage-test"}"#;

    // Both signals flow into the first instance.
    eventually(
        Duration::from_secs(20),
        "lines and metrics in the first instance",
        || async {
            let lines = logs(first.http(), sel).await.len();
            let metrics = series(first.http(), GAUGE).await.len();
            (lines >= 20 && metrics == 1).then_some(())
        },
    )
    .await;

    // The outage: lines keep being written and read, batches go to the spool.
    let first_app = first.stop().await;
    let outage_started = Instant::now();
    let lines_at_stop = written.load(Ordering::SeqCst);
    eventually(Duration::from_secs(20), "the agent to spool", || async {
        (agent.metric("presage_agent_batches_spooled_total").await >= 3.0).then_some(())
    })
    .await;
    while outage_started.elapsed() < OUTAGE {
        // Hold the outage, checking on the way that the spool grows and nothing is dropped.
        let m = agent.metrics().await;
        assert_eq!(
            m["presage_agent_batches_dropped_total{reason=\"spool_full\"}"],
            0.0
        );
        tokio::time::sleep(
            Duration::from_secs(1).min(OUTAGE.saturating_sub(outage_started.elapsed())),
        )
        .await;
    }
    let spooled = agent.metric("presage_agent_spool_batches").await;
    assert!(
        spooled >= 30.0,
        "30 s of metrics and log batches are spooled, got {spooled}"
    );
    assert!(
        written.load(Ordering::SeqCst) > lines_at_stop + 400,
        "the writer kept going"
    );

    // The forecaster returns on the same ports; the spool replays.
    let second = Forecaster::start_with(forecaster_config(Some(ports))).await;
    eventually(Duration::from_secs(60), "the spool to drain", || async {
        (agent.metric("presage_agent_spool_batches").await == 0.0).then_some(())
    })
    .await;
    // A few more seconds of live traffic, then stop writing.
    let live_from = written.load(Ordering::SeqCst);
    eventually(
        Duration::from_secs(20),
        "live lines after the outage",
        || async { (written.load(Ordering::SeqCst) >= live_from + 40).then_some(()) },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    writing.join().unwrap();
    let total = written.load(Ordering::SeqCst);
    let expected: Vec<String> = (0..total)
        .map(|i| format!("INFO request {i:06} served"))
        .collect();

    // Every line exactly once across both instances.
    let from_first: Vec<serde_json::Value> = first_app
        .logs
        .recent(None, 100_000)
        .into_iter()
        .map(|e| serde_json::json!({ "body": e.body }))
        .collect();
    let counts = eventually(
        Duration::from_secs(30),
        "every line in one instance or the other",
        || async {
            let mut all = from_first.clone();
            all.extend(logs(second.http(), sel).await);
            let counts = body_counts(&all);
            expected
                .iter()
                .all(|b| counts.contains_key(b))
                .then_some(counts)
        },
    )
    .await;
    assert!(!counts.contains_key("before the agent"));
    assert_exactly_once(&counts, &expected);

    // Metrics: the second instance's history starts where the first one's ended, and the two
    // together have no hole anywhere near the outage's length.
    let before = stored_steps(&first_app);
    let mut steps = before.clone();
    let after: Vec<i64> = history(second.http(), GAUGE)
        .await
        .into_iter()
        .map(|(t, _)| (t * 1000.0).round() as i64)
        .collect();
    assert!(!before.is_empty() && !after.is_empty());
    let last_before = *before.last().unwrap();
    let first_after = after[0];
    // A step is 1 s; 10 s leaves room for a loaded machine and is a third of the outage.
    assert!(
        first_after - last_before <= 10_000,
        "the replayed outage starts right after the first instance's last point: {last_before} → {first_after}"
    );
    steps.extend(after);
    let worst = steps.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    assert!(
        worst <= 3_000,
        "largest gap {worst} ms (interval 1 s, outage 30 s)"
    );
    assert!(*steps.last().unwrap() - steps[0] >= OUTAGE.as_millis() as i64);

    let m = agent.metrics().await;
    assert_eq!(
        m["presage_agent_batches_dropped_total{reason=\"spool_full\"}"],
        0.0
    );
    assert_eq!(
        m["presage_agent_batches_dropped_total{reason=\"rejected\"}"],
        0.0
    );
    assert!(m["presage_agent_export_retries_total"] >= 10.0, "{m:?}");
    agent.stop().await;
    second.stop().await;
}

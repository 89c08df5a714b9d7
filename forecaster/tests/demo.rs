//! `presage demo`: the built binary on free loopback ports and a fresh state folder replays its
//! scenario, prints the web UI's URL and the alerts as the console receiver shows them, and exits
//! cleanly with `--exit-after-scenario`.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const PRESAGE: &str = env!("CARGO_BIN_EXE_presage");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_the_ui_url_and_the_alerts_with_suggestions_then_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let args: Vec<String> = [
        "demo",
        "--exit-after-scenario",
        "--http",
        "127.0.0.1:0",
        "--otlp-grpc",
        "127.0.0.1:0",
        "--otlp-http",
        "127.0.0.1:0",
        "--pace",
        "20s",
        "--data-dir",
        data.to_str().expect("utf-8 path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut demo = Peer::spawn(
        "presage-demo",
        std::path::Path::new(PRESAGE),
        &args,
        dir.path(),
    );

    let exit = eventually(Duration::from_secs(150), "the demo to finish", || {
        let exit = demo.child.try_wait().ok().flatten();
        async move { exit }
    })
    .await;
    let out = std::fs::read_to_string(&demo.log).unwrap_or_default();
    assert!(exit.success(), "exit {exit}:\n{out}");

    assert!(out.contains("web UI        http://127.0.0.1:"), "{out}");
    assert!(out.contains("/api/v1/alerts"), "{out}");
    assert!(
        out.contains("replaying 3 days of checkout request rate"),
        "{out}"
    );
    // The console receiver's blocks: the disk alert ahead of the crossing, with its ETA
    // interval, and the anomaly on the latency spike, each with a suggestion.
    let blocks: Vec<&str> = out.split("────────").collect();
    let disk = blocks
        .iter()
        .find(|b| b.contains("● FIRING DiskWillFill"))
        .unwrap_or_else(|| panic!("no DiskWillFill block:\n{out}"));
    assert!(disk.contains("suggestion:"), "{disk}");
    assert!(disk.contains("P10") && disk.contains("P90"), "{disk}");
    let anomaly = blocks
        .iter()
        .find(|b| b.contains("SeriesAnomalous") && b.contains("http_server_latency_p99_seconds"))
        .unwrap_or_else(|| panic!("no SeriesAnomalous block for the latency:\n{out}"));
    assert!(anomaly.contains("suggestion:"), "{anomaly}");
    assert!(out.contains("scenario over"), "{out}");
    assert!(out.contains("stopped"), "{out}");
}

#[test]
fn demo_help_explains_it_and_refuses_to_listen_beyond_loopback() {
    let out = Command::new(PRESAGE)
        .args(["demo", "--help"])
        .output()
        .expect("presage runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.0.1:9470") && text.contains("--exit-after-scenario"),
        "{text}"
    );
    let out = Command::new(PRESAGE)
        .args(["demo", "--http", "0.0.0.0:0", "--exit-after-scenario"])
        .output()
        .expect("presage runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

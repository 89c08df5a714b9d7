//! The binary's command line: invalid configuration exits 64 with every problem located,
//! `check-config` validates, and the telemetry endpoint answers.

mod common;

use std::process::Command;

use common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(agent_binary())
        .args(args)
        .output()
        .expect("the binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_exits_64_with_every_problem_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "[agent]\ninterval = \"10 lightyears\"\n\n[[scrape]]\nurl = \"ftp://x/metrics\"\n\n[[logs]]\npaths = [\"/var/log/*.log\"]\nmultiline_start = \"(unclosed\"\nbogus = 1\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();
    // Shape errors come first (each section's first one), with positions.
    let (code, _, err) = run(&["--config", file]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains(&format!("{file}:2:12: `agent`:")), "{err}");
    assert!(
        err.contains(&format!("{file}:10:1: `logs`: unknown field `bogus`")),
        "{err}"
    );
    let (code, _, err2) = run(&["check-config", file]);
    assert_eq!(code, 64);
    assert_eq!(err, err2);

    // Once the shape is right, semantic problems and the agent's own checks are located too.
    std::fs::write(
        &path,
        "[agent]\ninterval = \"10s\"\n\n[[scrape]]\nurl = \"ftp://x/metrics\"\n\n[[logs]]\npaths = [\"/var/log/*.log\"]\nmultiline_start = \"(unclosed\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", file]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains(&format!(
            "{file}:5:1: `scrape[0].url`: `ftp://x/metrics` must start with http:// or https://"
        )),
        "{err}"
    );
    std::fs::write(
        &path,
        "[[logs]]\npaths = [\"/var/log/*.log\"]\nmultiline_start = \"(unclosed\"\n",
    )
    .unwrap();
    let (code, _, err) = run(&["check-config", file]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains(&format!(
            "{file}:3:1: `logs[0].multiline_start`: invalid regular expression"
        )),
        "{err}"
    );
}

#[test]
fn check_config_accepts_a_valid_file_and_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "[agent]\nendpoint = \"https://presage:4317\"\n\n[[logs]]\npaths = [\"/var/log/**/*.log\"]\n").unwrap();
    let (code, out, err) = run(&["check-config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"));
    for example in [
        concat!(env!("CARGO_MANIFEST_DIR"), "/agent.example.toml"),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/config/presage-agent.toml"
        ),
    ] {
        let (code, _, err) = run(&["check-config", example]);
        assert_eq!(code, 0, "{example}: {err}");
    }
}

#[test]
fn invalid_flags_exit_64() {
    let (code, _, err) = run(&["--interval", "10ms", "--logs", "/x/[", "--no-host"]);
    assert_eq!(code, 64, "{err}");
    assert!(
        err.contains("`agent.interval`: must be between 1s and 1h"),
        "{err}"
    );
    assert!(err.contains("`logs[0].paths[0]`: invalid glob"), "{err}");
    let (code, _, err) = run(&["--config", "/nonexistent/agent.toml"]);
    assert_eq!(code, 64, "{err}");
    assert!(err.contains("/nonexistent/agent.toml"), "{err}");
}

#[test]
fn help_lists_the_common_flags() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--config",
        "--endpoint",
        "--interval",
        "--scrape",
        "--logs",
        "check-config",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help:\n{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_answers_and_unknown_paths_are_404() {
    let dir = tempfile::tempdir().unwrap();
    // No forecaster at all: the agent still serves its own endpoints and counts retries.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let agent = AgentProcess::start(
        dir.path(),
        &args(&[
            "--endpoint",
            &endpoint,
            "--interval",
            "1s",
            "--state-dir",
            dir.path().join("s").to_str().unwrap(),
        ]),
        &[],
    )
    .await;
    let c = client();
    let health = c
        .get(format!("http://{}/-/healthy", agent.telemetry))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let missing = c
        .get(format!("http://{}/nope", agent.telemetry))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    eventually(
        std::time::Duration::from_secs(20),
        "retries and spooling",
        || async {
            let m = agent.metrics().await;
            (m["presage_agent_export_retries_total"] >= 1.0
                && m["presage_agent_batches_spooled_total"] >= 1.0)
                .then_some(())
        },
    )
    .await;
    let text = c
        .get(format!("http://{}/metrics", agent.telemetry))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "presage_agent_points_collected_total",
        "presage_agent_batches_sent_total",
        "presage_agent_batches_spooled_total",
        "presage_agent_batches_dropped_total",
        "presage_agent_export_retries_total",
        "presage_agent_scrape_errors_total",
        "presage_agent_log_lines_read_total",
        "presage_agent_spool_bytes",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    agent.stop().await;
}

//! The `presage` binary: `check-config` exit codes and messages, `serve` on a config file with
//! graceful shutdown on SIGTERM.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const PRESAGE: &str = env!("CARGO_BIN_EXE_presage");

#[test]
fn check_config_reports_every_problem_with_its_position() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nhttp = \"not an address\"\n\n[model]\nstep = \"2h\"\n\n[alerts]\nx = 1\n",
    )
    .expect("write");
    let out = Command::new(PRESAGE)
        .args(["check-config", bad.to_str().expect("utf-8 path")])
        .output()
        .expect("presage runs");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let path = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{path}:2:8: `server`:")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{path}:7:2: `alerts`: unknown section")),
        "{stderr}"
    );
    assert!(stderr.contains("2 problem(s)"), "{stderr}");

    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[model]\nstep = \"5m\"\n[storage]\nretention = \"7d\"\n",
    )
    .expect("write");
    let out = Command::new(PRESAGE)
        .args(["check-config", good.to_str().expect("utf-8 path")])
        .output()
        .expect("presage runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(PRESAGE)
        .args(["check-config", "/nonexistent/presage.toml"])
        .output()
        .expect("presage runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/presage.toml"));
}

#[test]
fn help_describes_each_command() {
    let out = Command::new(PRESAGE)
        .arg("--help")
        .output()
        .expect("presage runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve") && text.contains("check-config"),
        "{text}"
    );
    let out = Command::new(PRESAGE)
        .args(["serve", "--help"])
        .output()
        .expect("presage runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("127.0.0.1:9470") && text.contains("--config"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_on_a_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let http = free_port();
    let config = dir.path().join("presage.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp = \"127.0.0.1:{http}\"\notlp_grpc = \"127.0.0.1:{}\"\notlp_http = \"127.0.0.1:{}\"\nshutdown_grace = \"5s\"\n",
            free_port(),
            free_port()
        ),
    )
    .expect("write");
    let mut daemon = Peer::spawn(
        "presage",
        std::path::Path::new(PRESAGE),
        &[
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
        ],
        dir.path(),
    );
    let client = client();
    eventually(Duration::from_secs(20), "presage /-/ready", || {
        daemon.assert_running();
        let client = client.clone();
        async move {
            let res = client
                .get(format!("http://127.0.0.1:{http}/-/ready"))
                .send()
                .await
                .ok()?;
            res.status().is_success().then_some(())
        }
    })
    .await;

    let pid = daemon.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = eventually(Duration::from_secs(15), "presage to exit", || {
        let exit = daemon.child.try_wait().ok().flatten();
        async move { exit }
    })
    .await;
    assert!(exit.success(), "exit {exit}: {}", daemon.output());
    assert!(
        daemon.output().contains("Presage stopped"),
        "{}",
        daemon.output()
    );
}

#[test]
fn serve_refuses_an_invalid_config_with_exit_64() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("presage.toml");
    std::fs::write(&config, "[limits]\nmax_series = 0\n").expect("write");
    let out = Command::new(PRESAGE)
        .args(["serve", "--config", config.to_str().expect("utf-8 path")])
        .output()
        .expect("presage runs");
    assert_eq!(out.status.code(), Some(64));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("`limits.max_series`: must be at least 1")
    );
}

#[test]
fn shipped_example_configs_are_valid() {
    let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/config");
    let mut checked = 0;
    for entry in std::fs::read_dir(&deploy).expect("deploy/config exists") {
        let path = entry.expect("dir entry").path();
        let is_forecaster = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
            n.starts_with("presage") && n.ends_with(".toml") && !n.contains("agent")
        });
        if !is_forecaster {
            continue;
        }
        let out = Command::new(PRESAGE)
            .arg("check-config")
            .arg(&path)
            .output()
            .expect("presage runs");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(
        checked >= 1,
        "no example config found in {}",
        deploy.display()
    );
}

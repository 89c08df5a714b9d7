//! The load generator against an in-process Presage: what it reports as accepted is what the
//! daemon stored.

use std::time::Duration;

use presage_benches::loadgen::{self, Options, Target};
use presage_forecaster::app::Clock;
use presage_forecaster::server::Running;

async fn daemon() -> Running {
    let mut config = presage_config::ForecasterConfig::default();
    config.server.http = "127.0.0.1:0".parse().unwrap();
    config.server.otlp_grpc = "127.0.0.1:0".parse().unwrap();
    config.server.otlp_http = "127.0.0.1:0".parse().unwrap();
    config.storage.dir = tempfile::Builder::new()
        .prefix("presage-test-")
        .tempdir()
        .expect("temp dir")
        .keep();
    Running::start(config, Clock::System).await.unwrap()
}

fn options(target: Target, url: String) -> Options {
    Options {
        target,
        url,
        series: 1_000,
        batch: 300,
        concurrency: 3,
        duration: Duration::from_millis(700),
        rate: 0,
        step_ms: 15_000,
        start_ago: Duration::from_secs(6 * 3600),
        timeout: Duration::from_secs(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_samples_are_stored_in_order() {
    let running = daemon().await;
    let url = format!("http://{}/api/v1/write", running.http);
    let report = loadgen::run(&options(Target::RemoteWrite, url))
        .await
        .unwrap();
    assert_eq!(report.requests_failed, 0, "{}", report.summary());
    assert!(report.rounds_min >= 1, "{}", report.summary());
    assert_eq!(report.samples_accepted, report.samples_sent);
    let metrics = running.app.telemetry.render();
    let stored = format!(
        "presage_samples_accepted_total{{protocol=\"remote_write\"}} {}",
        report.samples_accepted
    );
    assert!(
        metrics.contains(&stored),
        "expected `{stored}` in\n{metrics}"
    );
    assert_eq!(running.app.store.series_count(), 1_000);
    // No sample was refused (out of order, too old, in the future, invalid label).
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("presage_samples_rejected_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    running.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_requests_are_answered() {
    let running = daemon().await;
    for (target, url) in [
        (
            Target::OtlpHttp,
            format!("http://{}/v1/metrics", running.otlp_http),
        ),
        (Target::OtlpGrpc, format!("http://{}", running.otlp_grpc)),
    ] {
        let report = loadgen::run(&options(target, url)).await.unwrap();
        assert_eq!(report.requests_failed, 0, "{}", report.summary());
        assert!(report.requests_ok > 0, "{}", report.summary());
    }
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn unreachable_target_counts_failures() {
    let mut opts = options(
        Target::RemoteWrite,
        "http://127.0.0.1:9/api/v1/write".into(),
    );
    opts.duration = Duration::from_millis(100);
    let report = loadgen::run(&opts).await.unwrap();
    assert_eq!(report.requests_ok, 0);
    assert!(report.requests_failed > 0);
    assert!(report.first_error.is_some());
}

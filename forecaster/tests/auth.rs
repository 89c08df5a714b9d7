//! `[auth]`: bearer tokens on every listener. Ingest tokens open remote_write, OTLP/HTTP and
//! OTLP/gRPC, API tokens open the API, neither opens the other; health, readiness, `/metrics`
//! and the UI's page stay open; refusals are 401 (gRPC `UNAUTHENTICATED`) and counted. The real
//! `presage-agent` binary ships its metrics with its token, and logs a clear error when the
//! token is refused.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use presage_config::ForecasterConfig;
use prost::Message;
use reqwest::StatusCode;
use serde_json::Value;

const INGEST: &str = "ingest-5f0c2a9e7b1d4c3f8a6e";
const INGEST_OLD: &str = "ingest-old-0d9b8a7c6e5f4a3b";
const API: &str = "api-9e8d7c6b5a4f3e2d1c0b";

/// Token files in `dir` and a configuration using them, loaded (and so validated) like a file.
fn config(dir: &Path) -> ForecasterConfig {
    let ingest = dir.join("ingest.token");
    let api = dir.join("api.token");
    std::fs::write(&ingest, format!("# current\n{INGEST}\n{INGEST_OLD}\n")).unwrap();
    std::fs::write(&api, format!("{API}\n")).unwrap();
    let source = format!(
        "[server]\notlp_grpc = \"127.0.0.1:0\"\notlp_http = \"127.0.0.1:0\"\nhttp = \"127.0.0.1:0\"\n\n\
         [storage]\ndir = {:?}\n\n\
         [auth]\ningest_token_file = {:?}\napi_token_file = {:?}\n",
        scratch_dir().display().to_string(),
        ingest.display().to_string(),
        api.display().to_string(),
    );
    ForecasterConfig::from_toml(&source, "auth.toml").expect("valid configuration")
}

/// A response body as JSON, `None` when it is not.
async fn json(res: reqwest::Response) -> Option<Value> {
    serde_json::from_str(&res.text().await.ok()?).ok()
}

/// A request with an optional bearer token.
fn with_token(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

async fn remote_write(
    client: &reqwest::Client,
    http: SocketAddr,
    token: Option<&str>,
) -> reqwest::Response {
    with_token(
        client
            .post(format!("http://{http}/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(rw_body("auth_rw")),
        token,
    )
    .send()
    .await
    .expect("remote_write answers")
}

async fn api_get(
    client: &reqwest::Client,
    http: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> reqwest::Response {
    with_token(client.get(format!("http://{http}{path}")), token)
        .send()
        .await
        .expect("API answers")
}

async fn otlp_http(
    client: &reqwest::Client,
    addr: SocketAddr,
    token: Option<&str>,
) -> reqwest::Response {
    with_token(
        client
            .post(format!("http://{addr}/v1/metrics"))
            .header("Content-Type", "application/x-protobuf")
            .body(gauge("auth_otlp_http").encode_to_vec()),
        token,
    )
    .send()
    .await
    .expect("OTLP/HTTP answers")
}

/// `presage_auth_failures_total{listener,reason}` from `/metrics`.
async fn failures(client: &reqwest::Client, http: SocketAddr, listener: &str, reason: &str) -> f64 {
    let text = metrics_text(client, http).await.expect("/metrics");
    sample_value(
        &text,
        &format!("presage_auth_failures_total{{listener=\"{listener}\",reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("no auth failure counter for {listener}/{reason}:\n{text}"))
}

/// Checks a 401: challenge header and Prometheus' error envelope.
async fn assert_unauthorized(res: reqwest::Response, error: &str) {
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let challenge = res
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    if error == "invalid" {
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }
    let body: Value = json(res).await.expect("JSON error body");
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "unauthorized");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listeners_need_the_right_kind_of_token() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(dir.path())).await;
    let client = client();
    let http = running.http;

    // Open paths.
    for path in ["/-/healthy", "/-/ready", "/metrics"] {
        let res = api_get(&client, http, path, None).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    assert_ne!(
        api_get(&client, http, "/", None).await.status(),
        StatusCode::UNAUTHORIZED,
        "the UI's page is open"
    );

    // remote_write: ingest tokens only.
    assert_unauthorized(remote_write(&client, http, None).await, "missing").await;
    assert_eq!(failures(&client, http, "http", "missing").await, 1.0);
    assert_unauthorized(remote_write(&client, http, Some(API)).await, "invalid").await;
    assert_eq!(failures(&client, http, "http", "invalid").await, 1.0);
    for token in [INGEST, INGEST_OLD] {
        let res = remote_write(&client, http, Some(token)).await;
        assert!(res.status().is_success(), "{}", res.status());
    }

    // The API: API tokens only, unknown paths included.
    let series = "/api/v1/series?match[]=auth_rw";
    assert_unauthorized(api_get(&client, http, series, None).await, "missing").await;
    assert_unauthorized(
        api_get(&client, http, series, Some(INGEST)).await,
        "invalid",
    )
    .await;
    assert_unauthorized(
        api_get(&client, http, "/api/v1/status", Some("not-a-token-at-all")).await,
        "invalid",
    )
    .await;
    assert_unauthorized(
        api_get(&client, http, "/no/such/path", None).await,
        "missing",
    )
    .await;
    let basic = client
        .get(format!("http://{http}{series}"))
        .basic_auth("presage", Some(API))
        .send()
        .await
        .unwrap();
    assert_unauthorized(basic, "invalid").await;
    let res = api_get(&client, http, series, Some(API)).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = json(res).await.unwrap();
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(
        api_get(&client, http, "/api/v1/status", Some(API))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(failures(&client, http, "http", "missing").await, 3.0);
    assert_eq!(failures(&client, http, "http", "invalid").await, 4.0);

    // OTLP/HTTP: ingest tokens.
    let otlp = running.otlp_http;
    assert_unauthorized(otlp_http(&client, otlp, None).await, "missing").await;
    assert_unauthorized(otlp_http(&client, otlp, Some(API)).await, "invalid").await;
    assert_eq!(
        otlp_http(&client, otlp, Some(INGEST)).await.status(),
        StatusCode::OK
    );
    assert_eq!(failures(&client, http, "otlp_http", "missing").await, 1.0);
    assert_eq!(failures(&client, http, "otlp_http", "invalid").await, 1.0);

    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_needs_an_ingest_token() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(dir.path())).await;
    let http_client = client();
    let mut client = MetricsServiceClient::connect(format!("http://{}", running.otlp_grpc))
        .await
        .expect("gRPC connects");
    let request = |token: Option<&str>| {
        let mut req = tonic::Request::new(gauge("auth_grpc"));
        if let Some(t) = token {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().unwrap());
        }
        req
    };

    let status = client.export(request(None)).await.expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let status = client
        .export(request(Some(API)))
        .await
        .expect_err("API token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    let res = client
        .export(request(Some(INGEST)))
        .await
        .expect("ingest token accepted")
        .into_inner();
    assert!(res.partial_success.is_none(), "{res:?}");
    assert_eq!(
        failures(&http_client, running.http, "otlp_grpc", "missing").await,
        1.0
    );
    assert_eq!(
        failures(&http_client, running.http, "otlp_grpc", "invalid").await,
        1.0
    );

    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_nothing_is_guarded() {
    let running = start(test_config()).await;
    let client = client();
    let res = remote_write(&client, running.http, None).await;
    assert!(res.status().is_success(), "{}", res.status());
    let res = api_get(
        &client,
        running.http,
        "/api/v1/series?match[]=auth_rw",
        None,
    )
    .await;
    assert_eq!(res.status(), StatusCode::OK);
    running.shutdown().await.expect("clean shutdown");
}

fn start_agent(dir: &Path, name: &str, protocol: &str, endpoint: &str, token_file: &Path) -> Peer {
    let args = [
        "--endpoint",
        endpoint,
        "--protocol",
        protocol,
        "--interval",
        "1s",
        "--state-dir",
        &dir.join(format!("{name}-state")).display().to_string(),
        "--telemetry",
        &format!("127.0.0.1:{}", free_port()),
        "--token-file",
        &token_file.display().to_string(),
        "--service-name",
        name,
    ]
    .map(String::from);
    Peer::spawn_agent(name, &args, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_ships_with_its_token_and_reports_a_refused_one() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(config(dir.path())).await;
    let client = client();
    let http = running.http;

    // The forecaster's own token file, shared as is: the agent sends its first token.
    let mut good = start_agent(
        dir.path(),
        "agent-good",
        "grpc",
        &format!("http://{}", running.otlp_grpc),
        &dir.path().join("ingest.token"),
    );
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, format!("{API}\n")).unwrap();
    let mut bad = start_agent(
        dir.path(),
        "agent-bad",
        "http",
        &format!("http://{}", running.otlp_http),
        &wrong,
    );

    let series_of = |service: &str| {
        format!(
            "/api/v1/series?match[]={}",
            urlencode(&format!("{{service_name=\"{service}\"}}"))
        )
    };
    let good_series = series_of("agent-good");
    eventually(Duration::from_secs(30), "the agent's host metrics", || {
        good.assert_running();
        let (client, path) = (&client, &good_series);
        async move {
            let res = api_get(client, http, path, Some(API)).await;
            let body: Value = json(res).await?;
            body["data"]
                .as_array()
                .filter(|a| !a.is_empty())
                .map(|_| ())
        }
    })
    .await;

    eventually(Duration::from_secs(30), "the refused agent's error", || {
        bad.assert_running();
        let log = bad.output();
        async move {
            log.contains("the forecaster refused the agent's token")
                .then_some(())
        }
    })
    .await;
    assert!(failures(&client, http, "otlp_http", "invalid").await >= 1.0);
    let log = bad.output();
    assert!(!log.contains(API), "the token is never logged:\n{log}");
    // Refused batches are retried with backoff, not in a tight loop.
    let refused = failures(&client, http, "otlp_http", "invalid").await;
    assert!(refused < 20.0, "{refused} refusals in a few seconds");
    let res = api_get(&client, http, &series_of("agent-bad"), Some(API)).await;
    let body: Value = json(res).await.unwrap();
    assert_eq!(body["data"], serde_json::json!([]), "{body}");

    drop(good);
    drop(bad);
    running.shutdown().await.expect("clean shutdown");
}

#[test]
fn check_config_reads_tokens_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presage.toml");
    std::fs::write(
        &path,
        "[auth]\ningest_token_env = \"PRESAGE_TEST_INGEST_TOKEN\"\n",
    )
    .unwrap();
    let run = |value: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_presage"));
        cmd.arg("check-config").arg(&path);
        match value {
            Some(v) => cmd.env("PRESAGE_TEST_INGEST_TOKEN", v),
            None => cmd.env_remove("PRESAGE_TEST_INGEST_TOKEN"),
        };
        cmd.output().expect("presage runs")
    };
    let ok = run(Some(INGEST));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    for (value, message) in [
        (
            None,
            "environment variable `PRESAGE_TEST_INGEST_TOKEN` is not set",
        ),
        (Some("short"), "at least 16 characters"),
    ] {
        let out = run(value);
        assert_eq!(out.status.code(), Some(64));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(":2:1: `auth.ingest_token_env`: ") && stderr.contains(message),
            "{stderr}"
        );
        assert!(
            !stderr.contains("short"),
            "the token is never printed: {stderr}"
        );
    }
}

//! Overload: past the ingest limits requests are shed at once (HTTP 429 with `Retry-After`,
//! gRPC `RESOURCE_EXHAUSTED`), counted, and nothing of them is stored; whatever was accepted is
//! stored whole; health checks, `/metrics` and the API keep answering; memory stays within the
//! configured bound; and the agent backs off from shedding and delivers everything later.
//!
//! Ingest slots are held deterministically by requests whose body is sent only in part (the
//! daemon admits a request before reading its body), so the tests do not depend on timing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use presage_config::{ByteSize, ForecasterConfig};
use presage_forecaster::ingest::otlp_http::RpcStatus;
use presage_forecaster::ingest::remote_write::{Sample, TimeSeries, WriteRequest, encode};
use prost::Message;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A remote_write request with one sample of `name` at `ts`.
fn rw_one(name: &str, ts: i64) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: vec![TimeSeries {
            labels: labels(&[("__name__", name), ("job", "flood")]),
            samples: vec![Sample {
                value: 1.0,
                timestamp: ts,
            }],
            histograms: vec![],
        }],
        metadata: vec![],
    })
}

/// A client that opens a new connection for every request: a shed request is answered before
/// its body is read, and that connection is not reused.
fn unpooled_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client")
}

/// An ingest request whose body is sent only in part: it holds an ingest slot (and the bytes
/// of its declared length) until [`Holder::finish`].
struct Holder {
    stream: TcpStream,
    rest: Vec<u8>,
}

impl Holder {
    /// A remote_write request.
    async fn start(http: SocketAddr, body: Vec<u8>) -> Holder {
        Self::post(http, "/api/v1/write", "Content-Encoding: snappy\r\n", body).await
    }

    /// An OTLP/HTTP protobuf request, not compressed.
    async fn otlp(otlp_http: SocketAddr, req: &ExportMetricsServiceRequest) -> Holder {
        Self::post(otlp_http, "/v1/metrics", "", req.encode_to_vec()).await
    }

    async fn post(addr: SocketAddr, path: &str, headers: &str, body: Vec<u8>) -> Holder {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-protobuf\r\n\
             {headers}Content-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.expect("send head");
        let half = body.len() / 2;
        stream.write_all(&body[..half]).await.expect("send half");
        stream.flush().await.expect("flush");
        Holder {
            stream,
            rest: body[half..].to_vec(),
        }
    }

    /// Sends the rest of the body and returns the response's status code.
    async fn finish(mut self) -> u16 {
        self.stream.write_all(&self.rest).await.expect("send rest");
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = self.stream.read(&mut chunk).await.expect("read response");
            assert!(n > 0, "connection closed before a response");
            buf.extend_from_slice(&chunk[..n]);
        }
        let head = String::from_utf8_lossy(&buf);
        head.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("bad response: {head}"))
    }
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(&format!("{name}{{")) && labels.iter().all(|want| l.contains(want))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(client: &reqwest::Client, http: SocketAddr) -> String {
    metrics_text(client, http).await.expect("/metrics answers")
}

async fn shed_total(client: &reqwest::Client, http: SocketAddr, listener: &str) -> f64 {
    metric_sum(
        &metrics(client, http).await,
        "presage_ingest_shed_total",
        &[&format!("listener=\"{listener}\"")],
    )
}

/// Waits until `n` ingest requests hold a slot.
async fn wait_inflight(http: SocketAddr, n: f64) {
    let client = client();
    eventually(
        Duration::from_secs(20),
        &format!("{n} ingest requests in flight"),
        || {
            let client = client.clone();
            async move {
                let text = metrics_text(&client, http).await?;
                (sample_value(&text, "presage_ingest_inflight_requests ")? == n).then_some(())
            }
        },
    )
    .await;
}

/// Newest accepted timestamp of every series whose name starts with `prefix`.
async fn stored(http: SocketAddr, prefix: &str) -> BTreeMap<String, i64> {
    let url = format!(
        "http://{http}/api/v1/series?limit=10000&match[]={}",
        urlencode(&format!("{{__name__=~\"{prefix}.*\"}}"))
    );
    get_json(&client(), &url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .expect("/api/v1/series answers")
        .iter()
        .map(|s| {
            (
                s["labels"]["__name__"].as_str().unwrap_or("").to_string(),
                s["last_ms"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// How long `/-/healthy` and the like may take during a flood on a busy (debug build, shared)
/// machine; `benches/flood.sh` measures the real latency.
const SERVING_TIMEOUT: Duration = Duration::from_secs(5);

/// `/-/healthy`, `/-/ready`, `/metrics` and `/api/v1/series` answer 200 in time.
async fn assert_serving(http: SocketAddr) {
    let client = reqwest::Client::builder()
        .timeout(SERVING_TIMEOUT)
        .build()
        .expect("client");
    for path in [
        "/-/healthy",
        "/-/ready",
        "/metrics",
        "/api/v1/series?match[]=up",
    ] {
        let started = Instant::now();
        let res = client
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} did not answer during the flood: {e}"));
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert!(started.elapsed() < SERVING_TIMEOUT, "{path}");
    }
}

fn config(max_requests: usize) -> ForecasterConfig {
    let mut cfg = test_config();
    cfg.limits.max_concurrent_ingest_requests = max_requests;
    cfg
}

/// What one flooding client saw.
#[derive(Default)]
struct Seen {
    accepted: BTreeMap<String, i64>,
    shed: BTreeSet<String>,
}

/// `clients` concurrent clients each send `each` remote_write requests, one series each.
async fn flood_remote_write(http: SocketAddr, prefix: &str, clients: usize, each: usize) -> Seen {
    let client = unpooled_client();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, prefix) = (client.clone(), prefix.to_string());
        tasks.spawn(async move {
            let mut seen = Seen::default();
            for i in 0..each {
                let name = format!("{prefix}{c}_{i}");
                let ts = now_ms();
                let res = client
                    .post(format!("http://{http}/api/v1/write"))
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .body(rw_one(&name, ts))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("request {name} failed: {e}"));
                match res.status() {
                    StatusCode::NO_CONTENT => {
                        seen.accepted.insert(name, ts);
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        let retry = res.headers().get("retry-after").cloned();
                        assert_eq!(retry.as_ref().and_then(|v| v.to_str().ok()), Some("1"));
                        let text = res.text().await.unwrap_or_default();
                        assert!(
                            text.contains("limits.max_concurrent_ingest_requests"),
                            "{text}"
                        );
                        seen.shed.insert(name);
                    }
                    other => panic!(
                        "unexpected {other} for {name}: {}",
                        res.text().await.unwrap_or_default()
                    ),
                }
            }
            seen
        });
    }
    let mut all = Seen::default();
    while let Some(seen) = tasks.join_next().await {
        let seen = seen.expect("client task");
        all.accepted.extend(seen.accepted);
        all.shed.extend(seen.shed);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn remote_write_flood_is_shed_counted_and_the_rest_keeps_serving() {
    let running = start(config(2)).await;
    let http = running.http;
    let client = client();

    // Both slots held: every request of a flood is shed at once, unread.
    let now = now_ms();
    let holders = [
        Holder::start(http, rw_one("held_a", now)).await,
        Holder::start(http, rw_one("held_b", now)).await,
    ];
    wait_inflight(http, 2.0).await;
    let flood = flood_remote_write(http, "shed_", 16, 4);
    let (seen, ()) = tokio::join!(flood, assert_serving(http));
    assert!(seen.accepted.is_empty(), "{:?}", seen.accepted);
    assert_eq!(seen.shed.len(), 64);
    assert_serving(http).await;
    assert_eq!(shed_total(&client, http, "http").await, 64.0);

    // Released: the held requests complete and are stored.
    for h in holders {
        assert_eq!(h.finish().await, 204);
    }
    wait_inflight(http, 0.0).await;

    // A flood far over the limit of 2: some requests are shed, and the answers match the
    // counter exactly (64 from above).
    let flood = flood_remote_write(http, "flood_", 48, 8);
    let (seen, ()) = tokio::join!(flood, assert_serving(http));
    assert_eq!(seen.accepted.len() + seen.shed.len(), 48 * 8);
    assert!(!seen.accepted.is_empty(), "nothing was accepted");
    let counted = shed_total(&client, http, "http").await;
    assert_eq!(counted, 64.0 + seen.shed.len() as f64);
    let text = metrics(&client, http).await;
    assert_eq!(
        metric_sum(
            &text,
            "presage_ingest_shed_total",
            &["reason=\"inflight_bytes\""]
        ),
        0.0
    );

    // Every accepted request is stored, whole; nothing of a shed one is.
    let held = stored(http, "held_").await;
    assert_eq!(held.get("held_a"), Some(&now));
    assert_eq!(held.get("held_b"), Some(&now));
    assert!(stored(http, "shed_").await.is_empty());
    let flood_stored = stored(http, "flood_").await;
    assert_eq!(flood_stored, seen.accepted, "stored != accepted");
    for name in &seen.shed {
        assert!(
            !flood_stored.contains_key(name),
            "{name} was shed but stored"
        );
    }
    running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_past_the_byte_bound_are_shed() {
    let mut cfg = config(64);
    cfg.limits.max_request_body = ByteSize(64 * 1024);
    cfg.limits.max_decompressed_body = ByteSize(256 * 1024);
    // The smallest bound allowed: one request of the largest size.
    cfg.limits.max_inflight_ingest_bytes = ByteSize(320 * 1024);
    let running = start(cfg).await;
    let http = running.http;
    let client = client();

    // OTLP/HTTP bodies of about 50 KiB, not compressed: their declared length is reserved as
    // soon as they are admitted, and nothing more.
    let end = now_ms();
    let held = |k: usize| {
        let mut req = gauge(&format!("bytes_held_{k}"));
        let points = &mut req.resource_metrics[0].scope_metrics[0].metrics[0].data;
        if let Some(opentelemetry_proto::tonic::metrics::v1::metric::Data::Gauge(g)) = points {
            let template = g.data_points[0].clone();
            g.data_points = (0..2500)
                .map(|i| {
                    let mut p = template.clone();
                    p.time_unix_nano = (end - (2499 - i) * 1000) as u64 * 1_000_000;
                    p
                })
                .collect();
        }
        req
    };
    let one = held(0).encoded_len();
    assert!(one > 40 * 1024 && one < 64 * 1024, "{one}");
    let fit = (320 * 1024) / one;
    let room = 320 * 1024 - fit * one;
    assert!(room > 1024, "{room} bytes left beside the held requests");
    let mut holders = Vec::new();
    for k in 0..fit {
        let req = held(k);
        assert_eq!(req.encoded_len(), one);
        holders.push(Holder::otlp(running.otlp_http, &req).await);
    }
    wait_inflight(http, fit as f64).await;
    let text = metrics(&client, http).await;
    assert_eq!(
        sample_value(&text, "presage_ingest_inflight_bytes "),
        Some((fit * one) as f64)
    );
    assert_eq!(
        sample_value(&text, "presage_ingest_inflight_bytes_limit "),
        Some(320.0 * 1024.0)
    );

    // One more of the same size does not fit: shed, unread.
    let res = unpooled_client()
        .post(format!("http://{}/v1/metrics", running.otlp_http))
        .header("Content-Type", "application/x-protobuf")
        .body(held(fit).encode_to_vec())
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.headers()["retry-after"], "1");
    let status = RpcStatus::decode(res.bytes().await.expect("body").as_ref()).expect("status");
    assert_eq!(status.code, 8);
    assert!(
        status.message.contains("limits.max_inflight_ingest_bytes"),
        "{}",
        status.message
    );
    let text = metrics(&client, http).await;
    assert_eq!(
        metric_sum(
            &text,
            "presage_ingest_shed_total",
            &["listener=\"otlp_http\"", "reason=\"inflight_bytes\""]
        ),
        1.0
    );
    assert_eq!(
        metric_sum(
            &text,
            "presage_ingest_shed_total",
            &["reason=\"concurrent_requests\""]
        ),
        0.0
    );
    // A small request still fits beside them.
    let res = unpooled_client()
        .post(format!("http://{http}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .body(rw_one("bytes_small", now_ms()))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);

    for h in holders {
        assert_eq!(h.finish().await, 200);
    }
    wait_inflight(http, 0.0).await;
    let text = metrics(&client, http).await;
    assert_eq!(
        sample_value(&text, "presage_ingest_inflight_bytes "),
        Some(0.0)
    );
    let held_stored = stored(http, "bytes_held_").await;
    assert_eq!(held_stored.len(), fit);
    assert!(
        held_stored.values().all(|&last| last == end),
        "{held_stored:?}"
    );
    assert!(
        !stored(http, "bytes_held_")
            .await
            .contains_key(&format!("bytes_held_{fit}"))
    );
    assert_eq!(stored(http, "bytes_small").await.len(), 1);
    running.shutdown().await.expect("shutdown");
}

/// `google.protobuf.Any`, `google.protobuf.Duration`, `google.rpc.RetryInfo` and
/// `google.rpc.Status` with details, to read a gRPC status' details.
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, Message)]
struct StatusDetails {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

fn retry_delay(status: &tonic::Status) -> Option<i64> {
    let details = StatusDetails::decode(status.details()).ok()?;
    let any = details
        .details
        .iter()
        .find(|d| d.type_url == "type.googleapis.com/google.rpc.RetryInfo")?;
    Some(
        RetryInfo::decode(any.value.as_slice())
            .ok()?
            .retry_delay?
            .seconds,
    )
}

fn otlp_gauge(name: &str) -> ExportMetricsServiceRequest {
    gauge(name)
}

/// What the OTLP floods saw: accepted metric names, and how many were shed.
#[derive(Default)]
struct OtlpSeen {
    accepted: BTreeSet<String>,
    shed: usize,
}

async fn flood_otlp_http(addr: SocketAddr, prefix: &str, clients: usize, each: usize) -> OtlpSeen {
    let client = unpooled_client();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, prefix) = (client.clone(), prefix.to_string());
        tasks.spawn(async move {
            let mut seen = OtlpSeen::default();
            for i in 0..each {
                let name = format!("{prefix}{c}_{i}");
                let res = client
                    .post(format!("http://{addr}/v1/metrics"))
                    .header("Content-Type", "application/x-protobuf")
                    .body(otlp_gauge(&name).encode_to_vec())
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("request {name} failed: {e}"));
                match res.status() {
                    StatusCode::OK => {
                        seen.accepted.insert(name);
                    }
                    StatusCode::TOO_MANY_REQUESTS => {
                        assert_eq!(res.headers()["retry-after"], "1");
                        let body = res.bytes().await.expect("body");
                        let status = RpcStatus::decode(body.as_ref()).expect("google.rpc.Status");
                        assert_eq!(status.code, 8, "{}", status.message);
                        seen.shed += 1;
                    }
                    other => panic!("unexpected {other} for {name}"),
                }
            }
            seen
        });
    }
    let mut all = OtlpSeen::default();
    while let Some(seen) = tasks.join_next().await {
        let seen = seen.expect("client task");
        all.accepted.extend(seen.accepted);
        all.shed += seen.shed;
    }
    all
}

async fn flood_otlp_grpc(
    addr: SocketAddr,
    prefix: &str,
    connections: usize,
    per_connection: usize,
) -> OtlpSeen {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let client = MetricsServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("gRPC connects");
        for s in 0..per_connection {
            let (mut client, prefix) = (client.clone(), prefix.to_string());
            tasks.spawn(async move {
                let name = format!("{prefix}{c}_{s}");
                match client.export(otlp_gauge(&name)).await {
                    Ok(_) => (Some(name), false),
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        assert_eq!(retry_delay(&status), Some(1), "{status:?}");
                        (None, true)
                    }
                    Err(status) => panic!("unexpected {status:?} for {name}"),
                }
            });
        }
    }
    let mut all = OtlpSeen::default();
    while let Some(r) = tasks.join_next().await {
        let (accepted, shed) = r.expect("client task");
        all.accepted.extend(accepted);
        all.shed += usize::from(shed);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn otlp_floods_are_shed_with_retry_hints_under_limits_shared_with_remote_write() {
    let running = start(config(2)).await;
    let (http, otlp_http, otlp_grpc) = (running.http, running.otlp_http, running.otlp_grpc);
    let client = client();

    // The limits are global: two remote_write requests in progress leave no room for OTLP.
    let holders = [
        Holder::start(http, rw_one("otlp_held_a", now_ms())).await,
        Holder::start(http, rw_one("otlp_held_b", now_ms())).await,
    ];
    wait_inflight(http, 2.0).await;
    let (h, g, ()) = tokio::join!(
        flood_otlp_http(otlp_http, "shed_h_", 8, 3),
        flood_otlp_grpc(otlp_grpc, "shed_g_", 2, 12),
        assert_serving(http),
    );
    assert!(h.accepted.is_empty() && g.accepted.is_empty());
    assert_eq!((h.shed, g.shed), (24, 24));
    // JSON requests are answered in JSON.
    let res = unpooled_client()
        .post(format!("http://{otlp_http}/v1/metrics"))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: serde_json::Value =
        serde_json::from_slice(&res.bytes().await.expect("body")).expect("JSON body");
    assert_eq!(body["code"], 8);
    assert_eq!(shed_total(&client, http, "otlp_http").await, 25.0);
    assert_eq!(shed_total(&client, http, "otlp_grpc").await, 24.0);
    for h in holders {
        assert_eq!(h.finish().await, 204);
    }
    wait_inflight(http, 0.0).await;

    // Floods over both OTLP listeners at once: answers match the counters, and what was
    // accepted is stored.
    let (h, g, ()) = tokio::join!(
        flood_otlp_http(otlp_http, "flood_h_", 24, 6),
        flood_otlp_grpc(otlp_grpc, "flood_g_", 4, 30),
        assert_serving(http),
    );
    assert!(!h.accepted.is_empty() && !g.accepted.is_empty());
    assert_eq!(h.accepted.len() + h.shed, 24 * 6);
    assert_eq!(g.accepted.len() + g.shed, 4 * 30);
    assert_eq!(
        shed_total(&client, http, "otlp_http").await,
        25.0 + h.shed as f64
    );
    assert_eq!(
        shed_total(&client, http, "otlp_grpc").await,
        24.0 + g.shed as f64
    );
    let names = |m: BTreeMap<String, i64>| m.into_keys().collect::<BTreeSet<_>>();
    assert!(stored(http, "shed_").await.is_empty());
    assert_eq!(names(stored(http, "flood_h_").await), h.accepted);
    assert_eq!(names(stored(http, "flood_g_").await), g.accepted);
    running.shutdown().await.expect("shutdown");
}

/// `VmRSS` and `VmHWM` of a running process, in bytes.
fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// The daemon binary, its ports chosen here. Without the journal (`storage.durable`), which
/// keeps what was written until the next checkpoint: the memory measured is ingest's own.
struct Daemon {
    peer: Peer,
    http: SocketAddr,
}

fn spawn_daemon(dir: &Path, limits: &str) -> Daemon {
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join("presage.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhttp = \"{http}\"\notlp_grpc = \"127.0.0.1:{}\"\notlp_http = \"127.0.0.1:{}\"\n\n\
             [storage]\ndir = \"{}\"\ndurable = false\n\n[limits]\n{limits}",
            free_port(),
            free_port(),
            dir.join("data").display(),
        ),
    )
    .expect("write config");
    let peer = Peer::spawn(
        "presage",
        Path::new(env!("CARGO_BIN_EXE_presage")),
        &[
            "serve".to_string(),
            "--config".to_string(),
            config.display().to_string(),
        ],
        dir,
    );
    Daemon { peer, http }
}

/// Waits until the daemon at `http` is ready; returns its metrics then.
async fn wait_ready(client: &reqwest::Client, http: SocketAddr) -> String {
    eventually(Duration::from_secs(60), "the daemon to be ready", || {
        let client = client.clone();
        async move {
            let res = client
                .get(format!("http://{http}/-/ready"))
                .send()
                .await
                .ok()?;
            if !res.status().is_success() {
                return None;
            }
            metrics_text(&client, http).await
        }
    })
    .await
}

/// Series per large request, each with a label value of [`PAD`] bytes of noise: about 3.9 MB
/// of protobuf per request (under the test's 4 MiB body limit), barely compressible.
const LARGE_SERIES: usize = 1900;
const PAD: usize = 2000;

/// Client `c`'s series, one sample each at `ts`.
fn large_request(c: usize, ts: i64) -> Vec<u8> {
    large_request_named(&format!("large_{c}"), c as u64, ts)
}

/// [`LARGE_SERIES`] series named `name`, their padding drawn from `seed`.
fn large_request_named(name: &str, seed: u64, ts: i64) -> Vec<u8> {
    let mut state = (seed + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut noise = |n: usize| {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                char::from(b"0123456789abcdef"[(state & 15) as usize])
            })
            .collect::<String>()
    };
    encode(&WriteRequest {
        timeseries: (0..LARGE_SERIES)
            .map(|i| TimeSeries {
                labels: labels(&[
                    ("__name__", name),
                    ("i", &format!("{i:04}")),
                    ("pad", &noise(PAD)),
                ]),
                samples: vec![Sample {
                    value: i as f64,
                    timestamp: ts,
                }],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    })
}

/// Posts a remote_write `body`: whether it was accepted (`false`: shed).
async fn post_write(client: &reqwest::Client, http: SocketAddr, body: &[u8]) -> bool {
    let res = client
        .post(format!("http://{http}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .body(body.to_vec())
        .send()
        .await;
    match res.map(|r| r.status()) {
        Ok(StatusCode::NO_CONTENT) => true,
        Ok(StatusCode::TOO_MANY_REQUESTS) => false,
        // A shed request is answered before its body is read (or while it is read) and its
        // connection closed: the client may see that as a broken pipe.
        Err(e) if !e.is_timeout() => false,
        other => panic!("unexpected answer: {other:?}"),
    }
}

/// Sends `body` until it is accepted; returns how often it was shed.
async fn send_until_accepted(client: &reqwest::Client, http: SocketAddr, body: Vec<u8>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut shed = 0;
    loop {
        if post_write(client, http, &body).await {
            return shed;
        }
        shed += 1;
        assert!(Instant::now() < deadline, "a request was never accepted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_within_the_bound_under_a_flood_of_large_requests() {
    let clients: usize = std::env::var("OVERLOAD_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let bound_mib: u64 = std::env::var("OVERLOAD_BOUND_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = scratch_dir();
    let mut daemon = spawn_daemon(
        &dir,
        &format!(
            "max_request_body = \"4MiB\"\nmax_decompressed_body = \"8MiB\"\n\
             max_inflight_ingest_bytes = \"{bound_mib}MiB\"\nmax_concurrent_ingest_requests = 64\n"
        ),
    );
    let http = daemon.http;
    let client = client();
    wait_ready(&client, http).await;
    daemon.peer.assert_running();
    let pid = daemon.peer.child.id();
    let http_client = unpooled_client();

    // Every client's series are created first, one request at a time: what the flood adds
    // on top is then only the work in progress.
    let start = now_ms() - 60_000;
    for c in 0..clients {
        let shed = send_until_accepted(&http_client, http, large_request(c, start)).await;
        assert_eq!(shed, 0);
    }
    // VmHWM restarts from the current RSS (Linux: clear_refs 5).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let (baseline, _) = rss(pid).expect("the daemon's memory");

    // Then every client sends its next request at once and retries it while it is shed: the
    // daemon is offered about 7.7 MB (body and decompressed) per client, 250 MB for 32; the
    // bound of 12 MiB takes one at a time (and the body of a second).
    let ts = start + 30_000;
    let bodies: Vec<Vec<u8>> = (0..clients).map(|c| large_request(c, ts)).collect();
    let one = bodies[0].len();
    assert!(one > 3 << 20 && one < 4 << 20, "{one}");
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let client = http_client.clone();
        tasks.spawn(async move { send_until_accepted(&client, http, body).await });
    }
    let mut retried = 0;
    while let Some(r) = tasks.join_next().await {
        retried += r.expect("client task");
        assert_serving(http).await;
    }
    daemon.peer.assert_running();
    let (_, peak) = rss(pid).expect("the daemon's memory");
    let text = metrics(&client, http).await;
    let shed = metric_sum(&text, "presage_ingest_shed_total", &["listener=\"http\""]);
    // The bound covers bodies and their decompressed form. Decoding and storing a request
    // takes several times its size on top, and freed memory is not all given back at once,
    // so the growth allowed is 16 times the bound: we measured 40 to 120 MB depending on the
    // machine's load. Taking all 32 requests at once (OVERLOAD_BOUND_MIB=1024) grew the daemon
    // by about 450 MB.
    let allowed = 16 * (bound_mib << 20);
    let grew = peak.saturating_sub(baseline);
    eprintln!(
        "baseline {} MiB, peak {} MiB, grew {} MiB (allowed {} MiB), shed {shed}",
        baseline >> 20,
        peak >> 20,
        grew >> 20,
        allowed >> 20
    );
    assert!(
        retried > 0 && shed > 0.0,
        "nothing was shed: {retried} {shed}"
    );
    assert!(
        grew < allowed,
        "memory grew by {} MiB under the flood, more than {} MiB",
        grew >> 20,
        allowed >> 20
    );
    // Every request was eventually accepted and stored whole.
    for c in 0..clients {
        let url = format!("http://{http}/api/v1/series?limit=10000&match[]=large_{c}");
        let got = get_json(&client, &url)
            .await
            .and_then(|v| v["data"].as_array().cloned())
            .unwrap_or_default();
        assert_eq!(got.len(), LARGE_SERIES, "client {c}");
        assert!(
            got.iter().all(|s| s["last_ms"].as_i64() == Some(ts)),
            "client {c}"
        );
    }
}

/// What one client of [`memory_stays_within_the_memory_limit_while_new_series_flood_in`] saw:
/// the names it had accepted and the one it had not when it stopped.
struct NewSeriesSeen {
    accepted: Vec<String>,
    shed: Vec<String>,
}

/// Sends requests of new series, named `mem_<c>_<n>` for the `n`th, until `stop` is set; a
/// shed request is sent again.
async fn flood_new_series(
    http: SocketAddr,
    c: usize,
    ts: i64,
    stop: Arc<AtomicBool>,
) -> NewSeriesSeen {
    let client = unpooled_client();
    let mut seen = NewSeriesSeen {
        accepted: Vec::new(),
        shed: Vec::new(),
    };
    let next = |n: usize| {
        let name = format!("mem_{c}_{n}");
        let body = large_request_named(&name, (c * 1000 + n) as u64, ts);
        (name, body)
    };
    let (mut name, mut body) = next(0);
    while !stop.load(Ordering::Acquire) {
        if post_write(&client, http, &body).await {
            seen.accepted.push(name);
            (name, body) = next(seen.accepted.len());
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    seen.shed.push(name);
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_within_the_memory_limit_while_new_series_flood_in() {
    // Shedding starts at 128 MiB; the spike limit leaves room for the requests in progress
    // then (one 4 MB request decoded and stored grew the daemon by up to 120 MB in the test
    // above, allocator slack included).
    const LIMIT_MIB: u64 = 256;
    const SPIKE_MIB: u64 = 128;
    let dir = scratch_dir();
    let mut daemon = spawn_daemon(
        &dir,
        &format!(
            "max_series = 1000000\nmax_request_body = \"4MiB\"\nmax_decompressed_body = \"8MiB\"\n\
             max_inflight_ingest_bytes = \"12MiB\"\nmemory_limit = \"{LIMIT_MIB}MiB\"\n\
             memory_spike_limit = \"{SPIKE_MIB}MiB\"\n"
        ),
    );
    let http = daemon.http;
    let client = client();
    let text = wait_ready(&client, http).await;
    assert_eq!(
        sample_value(&text, "presage_memory_limit_bytes{bound=\"limit\"} "),
        Some((LIMIT_MIB << 20) as f64)
    );
    assert_eq!(
        sample_value(&text, "presage_memory_limit_bytes{bound=\"shed\"} "),
        Some(((LIMIT_MIB - SPIKE_MIB) << 20) as f64)
    );
    let pid = daemon.peer.child.id();
    let (baseline, _) = rss(pid).expect("the daemon's memory");
    // Room for a few requests' series before shedding starts.
    assert!(
        baseline < (LIMIT_MIB - SPIKE_MIB - 40) << 20,
        "the daemon starts with {} MiB",
        baseline >> 20
    );

    // 16 clients send 4 MB requests of new series, each as soon as the last was answered or
    // 20 ms after it was shed: the store grows until resident memory reaches the threshold,
    // and from then on requests are shed for memory. They stop once 64 have been.
    let ts = now_ms() - 60_000;
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..16 {
        tasks.spawn(flood_new_series(http, c, ts, stop.clone()));
    }
    let memory_sheds = || {
        let client = client.clone();
        async move {
            let text = metrics_text(&client, http).await?;
            let n = metric_sum(
                &text,
                "presage_ingest_shed_total",
                &["listener=\"http\"", "reason=\"memory\""],
            );
            (n >= 64.0).then_some(())
        }
    };
    eventually(
        Duration::from_secs(240),
        "64 requests shed for memory",
        memory_sheds,
    )
    .await;
    assert_serving(http).await;
    stop.store(true, Ordering::Release);
    let (mut accepted, mut shed) = (Vec::new(), Vec::new());
    while let Some(seen) = tasks.join_next().await {
        let seen = seen.expect("client task");
        accepted.extend(seen.accepted);
        shed.extend(seen.shed);
    }
    assert_serving(http).await;
    daemon.peer.assert_running();
    let (resident, peak) = rss(pid).expect("the daemon's memory");
    let text = metrics(&client, http).await;
    let shed_memory = metric_sum(
        &text,
        "presage_ingest_shed_total",
        &["listener=\"http\"", "reason=\"memory\""],
    );
    eprintln!(
        "baseline {} MiB, now {} MiB, peak {} MiB (limit {LIMIT_MIB} MiB), {} requests \
         accepted, {} shed, {shed_memory} for memory",
        baseline >> 20,
        resident >> 20,
        peak >> 20,
        accepted.len(),
        shed.len()
    );
    assert!(!accepted.is_empty(), "nothing was accepted");
    assert!(
        shed_memory >= 64.0,
        "{shed_memory} requests shed for memory"
    );
    assert!(
        peak <= LIMIT_MIB << 20,
        "resident memory reached {} MiB, past the limit of {LIMIT_MIB} MiB",
        peak >> 20
    );
    // Every accepted request was stored whole, and nothing of a shed one: the names stored
    // (one series of each) are exactly those accepted, and each has all its series.
    let url = format!(
        "http://{http}/api/v1/series?limit=10000&match[]={}",
        urlencode("{__name__=~\"mem_.*\",i=\"0000\"}")
    );
    let names: BTreeSet<String> = get_json(&client, &url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .expect("/api/v1/series answers")
        .iter()
        .map(|s| s["labels"]["__name__"].as_str().unwrap_or("").to_string())
        .collect();
    let accepted_names: BTreeSet<String> = accepted.into_iter().collect();
    assert_eq!(names, accepted_names);
    for name in &accepted_names {
        let url = format!(
            "http://{http}/api/v1/series?limit=10000&match[]={}",
            urlencode(name)
        );
        let got = get_json(&client, &url)
            .await
            .and_then(|v| v["data"].as_array().map(Vec::len))
            .unwrap_or_default();
        assert_eq!(got, LARGE_SERIES, "{name}");
    }
    assert!(shed.iter().all(|n| !names.contains(n)));
}

/// The agent's config: logs only, fast retries of its own, sending to `endpoint`.
fn agent_config(dir: &Path, logs: &Path, protocol: &str, endpoint: &str) -> std::path::PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"[agent]
endpoint = "{endpoint}"
protocol = "{protocol}"
state_dir = "{state}"
host_name = "overload-host"
telemetry = "127.0.0.1:0"
retry_initial_backoff = "50ms"
retry_max_backoff = "100ms"

[host]
enabled = false

[[logs]]
paths = ["{logs}/*.log"]
service_name = "overload"
start_at = "beginning"
poll_interval = "100ms"
"#,
            state = dir.join("state").display(),
            logs = logs.display(),
        ),
    )
    .expect("write the agent config");
    path
}

/// Log records of the test's service whose body starts with `marker`.
async fn delivered(http: SocketAddr, marker: &str) -> BTreeSet<String> {
    let url = format!("http://{http}/api/v1/logs?limit=10000");
    get_json(&client(), &url)
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e["body"].as_str())
        .filter(|b| b.starts_with(marker))
        .map(str::to_string)
        .collect()
}

async fn agent_backs_off_and_delivers_everything(protocol: &str, listener: &str) {
    let running = start(config(1)).await;
    let http = running.http;
    let client = client();
    let dir = scratch_dir();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let lines: BTreeSet<String> = (0..300)
        .map(|i| format!("overload line {i:04} of {protocol}"))
        .collect();
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();

    // The only slot is held: every export the agent tries is shed.
    let holder = Holder::start(http, rw_one("agent_held", now_ms())).await;
    wait_inflight(http, 1.0).await;
    std::fs::write(logs.join("app.log"), &text).expect("write logs");
    let endpoint = match protocol {
        "grpc" => format!("http://{}", running.otlp_grpc),
        _ => format!("http://{}", running.otlp_http),
    };
    let config = agent_config(&dir, &logs, protocol, &endpoint);
    let mut agent = Peer::spawn_agent(
        "presage-agent",
        &["--config".to_string(), config.display().to_string()],
        &dir,
    );

    // The server asks for 1 s between attempts; the agent's own backoff would be 100 ms at
    // most. Four sheds in a row take at least 3 s when the server's delay is honoured.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first_shed = None;
    let elapsed = loop {
        agent.assert_running();
        let shed = shed_total(&client, http, listener).await;
        if shed >= 1.0 && first_shed.is_none() {
            first_shed = Some(Instant::now());
        }
        if shed >= 4.0 {
            break first_shed.map(|t| t.elapsed());
        }
        assert!(
            Instant::now() < deadline,
            "the agent was not shed 4 times:\n{}",
            agent.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let elapsed = elapsed.expect("first shed seen");
    assert!(
        elapsed >= Duration::from_millis(2500),
        "the agent retried 3 times within {elapsed:?}: the server's delay was not honoured"
    );
    assert!(delivered(http, "overload line").await.is_empty());

    // Released: the agent replays its spool and everything arrives, once.
    assert_eq!(holder.finish().await, 204);
    let got = eventually(
        Duration::from_secs(60),
        "every log line to be delivered",
        || async {
            let got = delivered(http, "overload line").await;
            (got.len() >= lines.len()).then_some(got)
        },
    )
    .await;
    assert_eq!(got, lines);
    agent.assert_running();
    drop(agent);
    running.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_over_grpc_backs_off_from_resource_exhausted_and_delivers_everything() {
    agent_backs_off_and_delivers_everything("grpc", "otlp_grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_over_http_backs_off_from_429_and_delivers_everything() {
    agent_backs_off_and_delivers_everything("http", "otlp_http").await;
}

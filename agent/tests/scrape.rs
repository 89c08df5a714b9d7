//! A scraped endpoint's series reach the real forecaster with their labels: counters, gauges,
//! escaped label values, histograms, summaries, exposed timestamps, and `up`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves `body()` at any path as Prometheus text; counts requests and connections.
async fn serve_metrics(
    body: impl Fn() -> String + Send + Sync + 'static,
) -> (u16, Arc<AtomicU64>, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicU64::new(0));
    let counter = hits.clone();
    let conns = Arc::new(AtomicU64::new(0));
    let accepted = conns.clone();
    let body = Arc::new(body);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            accepted.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                // Keep-alive: answer every request on the connection.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    buf.drain(..end);
                    counter.fetch_add(1, Ordering::SeqCst);
                    let text = body();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\r\n",
                        text.len()
                    );
                    if stream.write_all(head.as_bytes()).await.is_err()
                        || stream.write_all(text.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, hits, conns)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_series_arrive_with_their_labels() {
    let forecaster = Forecaster::start().await;
    let http = forecaster.http();
    // An exposed timestamp a little in the past, fixed for the whole test.
    let exposed_ts = now_ms() - 5_000;
    let scrapes = Arc::new(AtomicU64::new(0));
    let n = scrapes.clone();
    let (port, hits, conns) = serve_metrics(move || {
        let i = n.fetch_add(1, Ordering::SeqCst);
        format!(
            r#"# HELP http_requests_total Requests handled.
# TYPE http_requests_total counter
http_requests_total{{method="post",code="200"}} {requests}
http_requests_total{{method="get",code="404",path="/a\"b\\c"}} 3
# TYPE temperature_celsius gauge
temperature_celsius{{room="lab"}} 21.5
# TYPE boot_time_seconds gauge
boot_time_seconds 1700000000 {exposed_ts}
# TYPE latency_seconds histogram
latency_seconds_bucket{{route="/pay",le="0.1"}} {b1}
latency_seconds_bucket{{route="/pay",le="0.5"}} {b2}
latency_seconds_bucket{{route="/pay",le="+Inf"}} {b3}
latency_seconds_sum{{route="/pay"}} {sum}
latency_seconds_count{{route="/pay"}} {b3}
# TYPE rpc_seconds summary
rpc_seconds{{quantile="0.5"}} 0.25
rpc_seconds{{quantile="0.99"}} 0.75
rpc_seconds_sum 100
rpc_seconds_count {rpc}
# An untyped sample exposing job and instance labels of its own
legacy_thing{{job="inner",instance="x:1"}} 4
"#,
            requests = 1000 + i * 10,
            b1 = 10 * (i + 1),
            b2 = 15 * (i + 1),
            b3 = 20 * (i + 1),
            sum = 3 * (i + 1),
            rpc = 40 + i,
        )
    })
    .await;
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let target = format!("http://127.0.0.1:{port}/metrics");
    let dead = format!("http://127.0.0.1:{closed}/metrics");
    let agent = AgentProcess::start(
        dir.path(),
        &args(&[
            "--endpoint",
            &forecaster.grpc_endpoint(),
            "--interval",
            "2s",
            "--no-host",
            "--service-name",
            "checkout",
            "--scrape",
            &target,
            "--scrape",
            &dead,
            "--state-dir",
            dir.path().join("state").to_str().unwrap(),
        ]),
        &[],
    )
    .await;
    let instance = format!("127.0.0.1:{port}");

    let post = eventually(Duration::from_secs(20), "the counter", || async {
        series(http, r#"http_requests_total{method="post"}"#)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(label(&post, "code"), "200");
    assert_eq!(label(&post, "job"), "checkout");
    assert_eq!(label(&post, "service_name"), "checkout");
    assert_eq!(label(&post, "instance"), instance);
    assert_eq!(post["kind"], "counter");

    // The escaped label value arrives unescaped.
    let get = series(http, r#"http_requests_total{code="404"}"#).await;
    assert_eq!(get.len(), 1, "{get:?}");
    assert_eq!(label(&get[0], "path"), "/a\"b\\c");

    let temp = eventually(Duration::from_secs(20), "the gauge value", || async {
        history(http, r#"temperature_celsius{room="lab"}"#)
            .await
            .last()
            .copied()
    })
    .await;
    assert_eq!(temp.1, 21.5);

    // The exposed timestamp is the sample's time.
    let boot = eventually(Duration::from_secs(20), "the timestamped gauge", || async {
        series(http, "boot_time_seconds").await.into_iter().next()
    })
    .await;
    assert_eq!(boot["last_ms"].as_u64(), Some(exposed_ts));

    // Histogram: count, sum and estimated quantiles, labelled by route (not by le).
    let count = eventually(Duration::from_secs(20), "histogram series", || async {
        series(http, r#"latency_seconds_count{route="/pay"}"#)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(label(&count, "le"), "");
    assert_eq!(count["kind"], "counter");
    eventually(Duration::from_secs(20), "histogram quantiles", || async {
        let q = series(http, r#"latency_seconds{route="/pay"}"#).await;
        let qs: Vec<String> = q.iter().map(|s| label(s, "quantile").to_string()).collect();
        (qs.contains(&"0.5".to_string()) && qs.contains(&"0.99".to_string())).then_some(())
    })
    .await;
    assert_eq!(
        series(http, r#"latency_seconds_sum{route="/pay"}"#)
            .await
            .len(),
        1
    );

    // Summary: quantiles as exposed, count and sum.
    let median = eventually(Duration::from_secs(20), "summary quantile", || async {
        history(http, r#"rpc_seconds{quantile="0.5"}"#)
            .await
            .last()
            .copied()
    })
    .await;
    assert_eq!(median.1, 0.25);
    assert_eq!(series(http, "rpc_seconds_count").await.len(), 1);

    // The target's own job/instance labels are kept under exported_*.
    let legacy = eventually(Duration::from_secs(20), "untyped sample", || async {
        series(http, "legacy_thing").await.into_iter().next()
    })
    .await;
    assert_eq!(label(&legacy, "job"), "checkout");
    assert_eq!(label(&legacy, "exported_job"), "inner");
    assert_eq!(label(&legacy, "exported_instance"), "x:1");

    // up is 1 for the live target and 0 for the dead one, which counts scrape errors.
    let up = eventually(Duration::from_secs(20), "up of the live target", || async {
        history(http, &format!(r#"up{{instance="{instance}"}}"#))
            .await
            .last()
            .copied()
    })
    .await;
    assert_eq!(up.1, 1.0);
    let down = eventually(Duration::from_secs(20), "up of the dead target", || async {
        history(http, &format!(r#"up{{instance="127.0.0.1:{closed}"}}"#))
            .await
            .last()
            .copied()
    })
    .await;
    assert_eq!(down.1, 0.0);
    let m = agent.metrics().await;
    assert!(
        m[&format!("presage_agent_scrape_errors_total{{target=\"{dead}\"}}")] >= 1.0,
        "{m:?}"
    );
    assert_eq!(
        m[&format!("presage_agent_scrape_errors_total{{target=\"{target}\"}}")],
        0.0
    );
    assert_eq!(
        m[&format!("presage_agent_scrape_samples{{target=\"{target}\"}}")],
        14.0
    );
    assert!(m["presage_agent_points_collected_total{source=\"scrape\"}"] >= 7.0);
    // Scrapes repeat every interval, reusing a kept-alive connection.
    eventually(Duration::from_secs(20), "three scrapes", || async {
        (hits.load(Ordering::SeqCst) >= 3).then_some(())
    })
    .await;
    assert!(conns.load(Ordering::SeqCst) < hits.load(Ordering::SeqCst));
    agent.stop().await;
    forecaster.stop().await;
}

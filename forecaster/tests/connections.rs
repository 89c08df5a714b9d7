//! `limits.max_connections`: each listener holds at most that many connections open, stops
//! accepting at the limit, and accepts again as soon as one closes.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{client, eventually, metrics_text, sample_value, start, test_config};
use tokio::net::TcpStream;

async fn connect(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(TcpStream::connect(addr).await.expect("connects"));
    }
    out
}

/// `presage_open_connections` and `presage_connection_limit_waits_total` of `listener`.
async fn connection_metrics(http: SocketAddr, listener: &str) -> Option<(f64, f64)> {
    let text = metrics_text(&client(), http).await?;
    Some((
        sample_value(
            &text,
            &format!("presage_open_connections{{listener=\"{listener}\"}}"),
        )?,
        sample_value(
            &text,
            &format!("presage_connection_limit_waits_total{{listener=\"{listener}\"}}"),
        )?,
    ))
}

#[tokio::test]
async fn each_listener_stops_accepting_at_max_connections_and_resumes() {
    let mut cfg = test_config();
    cfg.limits.max_connections = 2;
    let running = start(cfg).await;
    let http = running.http;

    // The ingest listeners: two idle connections fill them, a third waits unaccepted.
    for (listener, addr) in [
        ("otlp_http", running.otlp_http),
        ("otlp_grpc", running.otlp_grpc),
    ] {
        let mut held = connect(addr, 3).await;
        eventually(
            Duration::from_secs(30),
            "the listener to hold two connections and wait for a slot",
            || async move {
                let (open, waits) = connection_metrics(http, listener).await?;
                (open == 2.0 && waits >= 1.0).then_some(())
            },
        )
        .await;
        // A closed connection's slot goes to the one waiting.
        held.remove(0);
        eventually(
            Duration::from_secs(30),
            "the waiting connection to be accepted",
            || async move {
                let (open, waits) = connection_metrics(http, listener).await?;
                // Once the third is accepted, the listener waits for a slot a second time.
                (open == 2.0 && waits >= 2.0).then_some(())
            },
        )
        .await;
        drop(held);
        eventually(
            Duration::from_secs(30),
            "every connection to be given back",
            || async move {
                let (open, _) = connection_metrics(http, listener).await?;
                (open == 0.0).then_some(())
            },
        )
        .await;
    }

    // The HTTP listener: with two idle connections open, a request on a new one is not
    // answered; once one closes, it is.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("client")
    };
    let healthy = format!("http://{http}/-/healthy");
    let held = connect(http, 2).await;
    let blocked = fresh()
        .get(&healthy)
        .timeout(Duration::from_millis(500))
        .send()
        .await;
    assert!(
        blocked.is_err(),
        "a third connection was served: {blocked:?}"
    );
    drop(held);
    let res = eventually(
        Duration::from_secs(30),
        "the HTTP listener to serve again",
        || {
            let req = fresh().get(&healthy).send();
            async move { req.await.ok().filter(|r| r.status().is_success()) }
        },
    )
    .await;
    assert!(res.status().is_success());
    let (_, waits) = connection_metrics(http, "http").await.expect("metrics");
    assert!(waits >= 1.0, "the HTTP listener never waited: {waits}");
}

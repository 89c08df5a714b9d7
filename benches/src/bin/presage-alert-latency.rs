//! Alert latency: from the sample that makes an alert fire to its notification leaving.
//!
//! An in-process daemon holds `--series` active series (one-second steps, every series fed
//! every second over remote_write), a `static` rule over all of them, and a webhook receiver
//! with `group_wait = 0s`. Once every series has its baseline, each trial writes one series'
//! breaching sample and the sample after it (which closes the step), and measures the wall time
//! until the webhook receives that series' alert. Prints p50/p90/p99/max over the trials.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use presage_forecaster::app::Clock;
use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use presage_forecaster::server::Running;
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(about = "Measures the time from a breaching sample to its alert's notification")]
struct Args {
    /// Active series.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Alerts measured (one series each).
    #[arg(long, default_value_t = 100)]
    trials: usize,
    /// Seconds of history written before the trials, so every series has its first fit.
    #[arg(long, default_value_t = 40)]
    warmup: u64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn receiver() -> anyhow::Result<(SocketAddr, Arrivals)> {
    let arrivals: Arrivals = Arc::default();
    let state = arrivals.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(v): axum::Json<serde_json::Value>| {
            let state = state.clone();
            async move {
                let at = Instant::now();
                let mut map = state.lock().await;
                for a in v["alerts"].as_array().into_iter().flatten() {
                    if a["status"] == "firing"
                        && let Some(i) = a["labels"]["i"].as_str()
                    {
                        map.entry(i.to_string()).or_insert(at);
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, arrivals))
}

fn request(values: &[(usize, f64)], ts: i64) -> Vec<u8> {
    encode(&WriteRequest {
        timeseries: values
            .iter()
            .map(|&(i, v)| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "bench_queue_depth".into(),
                    },
                    Label {
                        name: "i".into(),
                        value: i.to_string(),
                    },
                ],
                samples: vec![Sample {
                    value: v,
                    timestamp: ts,
                }],
                histograms: vec![],
            })
            .collect(),
        metadata: vec![],
    })
}

async fn post(client: &reqwest::Client, http: SocketAddr, body: Vec<u8>) -> anyhow::Result<()> {
    let res = client
        .post(format!("http://{http}/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(res.status().is_success(), "remote_write: {}", res.status());
    Ok(())
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.trials <= args.series,
        "--trials must not exceed --series"
    );
    let (hook, arrivals) = receiver().await?;
    let dir = std::env::temp_dir().join(format!("presage-alert-latency-{}", std::process::id()));
    let config = presage_config::ForecasterConfig::from_toml(
        &format!(
            r#"
[server]
http = "127.0.0.1:0"
otlp_grpc = "127.0.0.1:0"
otlp_http = "127.0.0.1:0"

[storage]
dir = "{}"

[model]
step = "1s"
refit_every = "1h"
forecast_horizon = "1h"

[alerting]
default_rules = false

[[rules]]
name = "QueueTooDeep"
kind = "static"
select = "bench_queue_depth"
threshold = 100

[[receivers]]
name = "hook"
webhook = {{ url = "http://{hook}/hook" }}

[[routes]]
receivers = ["hook"]
group_by = ["alertname", "i"]
group_wait = "0s"
group_interval = "1m"
repeat_interval = "1h"
"#,
            dir.display()
        ),
        "bench",
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = Running::start(config, Clock::System).await?;
    let http = running.http;
    let client = reqwest::Client::new();

    // Warm-up: every series every second, in real time, so steps close as they would live.
    let all: Vec<(usize, f64)> = (0..args.series)
        .map(|i| (i, 1.0 + (i % 7) as f64))
        .collect();
    let start = now_ms() / 1000 * 1000;
    let mut ts = start;
    let mut next = Instant::now();
    for _ in 0..args.warmup {
        post(&client, http, request(&all, ts))
            .await
            .context("warm-up")?;
        ts += 1000;
        next += Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
    }

    let mut latencies = Vec::with_capacity(args.trials);
    for trial in 0..args.trials {
        let i = trial * (args.series / args.trials.max(1));
        // Everyone's normal sample, then the breaching one for series i.
        let mut values = all.clone();
        values[i].1 = 1_000.0;
        post(&client, http, request(&values, ts)).await?;
        ts += 1000;
        next += Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
        // The next second's samples close the breaching step: the clock starts here.
        let sent = Instant::now();
        post(&client, http, request(&all, ts)).await?;
        ts += 1000;
        let key = i.to_string();
        let deadline = sent + Duration::from_secs(30);
        let arrived = loop {
            if let Some(at) = arrivals.lock().await.get(&key).copied() {
                break Some(at);
            }
            if Instant::now() > deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        match arrived {
            Some(at) => latencies.push(at.saturating_duration_since(sent).as_secs_f64()),
            None => eprintln!("trial {trial}: no notification within 30 s"),
        }
        next += Duration::from_secs(1);
        tokio::time::sleep_until(next.into()).await;
    }
    running.shutdown().await?;
    let _ = std::fs::remove_dir_all(&dir);

    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "series={} trials={} notified={} p50={:.3}s p90={:.3}s p99={:.3}s max={:.3}s",
        args.series,
        args.trials,
        latencies.len(),
        q(0.5),
        q(0.9),
        q(0.99),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    anyhow::ensure!(
        latencies.len() == args.trials,
        "some alerts were not notified"
    );
    Ok(())
}

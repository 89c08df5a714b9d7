//! Debian's Prometheus scrapes a node-exporter and remote-writes to Presage; the node series
//! arrive. The same Prometheus scrapes Presage's `/metrics` and reports the target up.

mod common;

use std::time::Duration;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_writes_node_exporter_series_and_scrapes_us() {
    let install = "apt-get install -y prometheus prometheus-node-exporter";
    let prometheus = require_program("prometheus", install);
    let node_exporter = require_program("prometheus-node-exporter", install);

    let running = start(test_config()).await;
    let http = running.http;
    let dir = tempfile::tempdir().expect("temp dir");

    let node_port = free_port();
    let mut node = Peer::spawn(
        "node-exporter",
        &node_exporter,
        &[
            format!("--web.listen-address=127.0.0.1:{node_port}"),
            // Keep the scrape small and fast; the load and CPU collectors are what we check.
            "--collector.disable-defaults".into(),
            "--collector.loadavg".into(),
            "--collector.cpu".into(),
            "--collector.meminfo".into(),
        ],
        dir.path(),
    );

    let prom_port = free_port();
    let config = format!(
        r#"
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: node
    static_configs: [{{ targets: ["127.0.0.1:{node_port}"] }}]
  - job_name: presage
    static_configs: [{{ targets: ["{http}"] }}]
remote_write:
  - url: http://{http}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
      max_backoff: 1s
"#
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let mut prom = Peer::spawn(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        dir.path(),
    );

    let client = client();
    let load = eventually(
        Duration::from_secs(60),
        "node_load1 from remote_write",
        || {
            node.assert_running();
            prom.assert_running();
            let client = client.clone();
            async move {
                series(&client, http, r#"node_load1{job="node"}"#)
                    .await
                    .into_iter()
                    .next()
            }
        },
    )
    .await;
    assert_eq!(load["labels"]["instance"], format!("127.0.0.1:{node_port}"));
    assert_eq!(load["kind"], "gauge");

    // Counters arrive too and are kept as rates.
    let cpu = eventually(
        Duration::from_secs(30),
        "node_cpu_seconds_total",
        || async {
            let s = series(&client, http, r#"node_cpu_seconds_total{mode="idle"}"#).await;
            (!s.is_empty()).then_some(s)
        },
    )
    .await;
    assert!(cpu.iter().all(|s| s["kind"] == "counter"), "{cpu:?}");

    // Memory is a gauge with a plausible value.
    let url = format!(
        "http://{http}/api/v1/forecast?series={}",
        urlencode("node_memory_MemTotal_bytes")
    );
    let total = eventually(
        Duration::from_secs(30),
        "node_memory_MemTotal_bytes",
        || async {
            get_json(&client, &url).await.and_then(|v| {
                v["data"]["series"][0]["history"]
                    .as_array()
                    .and_then(|h| h.iter().rev().find_map(|p| p[1].as_f64()))
            })
        },
    )
    .await;
    assert!(total > 64.0 * 1024.0 * 1024.0, "MemTotal {total}");

    // Prometheus sees Presage as a healthy scrape target.
    let query = format!(
        "http://127.0.0.1:{prom_port}/api/v1/query?query={}",
        urlencode(r#"up{job="presage"}"#)
    );
    eventually(
        Duration::from_secs(30),
        "up{job=\"presage\"} == 1",
        || async {
            let v = get_json(&client, &query).await?;
            (v["data"]["result"][0]["value"][1] == "1").then_some(())
        },
    )
    .await;

    // And what it scraped from us comes back through remote_write: the loop is closed.
    eventually(
        Duration::from_secs(30),
        "presage_series via remote_write",
        || async {
            let s = series(&client, http, r#"presage_series{job="presage"}"#).await;
            (!s.is_empty()).then_some(())
        },
    )
    .await;

    drop(prom);
    drop(node);
    running.shutdown().await.expect("clean shutdown");
}

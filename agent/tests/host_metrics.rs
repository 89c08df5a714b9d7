//! Host metrics reach the real forecaster under their OpenTelemetry names, with the resource
//! labels (host, service, Kubernetes downward-API variables), over OTLP/gRPC and OTLP/HTTP.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("kernel host name")
        .trim()
        .to_string()
}

async fn one(http: std::net::SocketAddr, selector: &str) -> Value {
    eventually(Duration::from_secs(20), selector, || async {
        series(http, selector).await.into_iter().next()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_arrive_with_names_and_resource_labels() {
    let forecaster = Forecaster::start().await;
    let http = forecaster.http();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let agent = AgentProcess::start(
        dir.path(),
        &args(&[
            "--endpoint",
            &forecaster.grpc_endpoint(),
            "--interval",
            "1s",
            "--state-dir",
            state.to_str().unwrap(),
            "--service-name",
            "node-agent",
        ]),
        &[
            ("POD_NAME", "web-0"),
            ("POD_NAMESPACE", "shop"),
            ("NODE_NAME", "node-a"),
            ("CONTAINER_NAME", "agent"),
        ],
    )
    .await;

    let cpu = one(http, r#"system_cpu_utilization{state="user"}"#).await;
    assert_eq!(label(&cpu, "host_name"), hostname());
    assert_eq!(label(&cpu, "service_name"), "node-agent");
    assert_eq!(label(&cpu, "job"), "node-agent");
    assert_eq!(label(&cpu, "k8s_pod_name"), "web-0");
    assert_eq!(label(&cpu, "k8s_namespace_name"), "shop");
    assert_eq!(label(&cpu, "k8s_node_name"), "node-a");
    assert_eq!(label(&cpu, "container_name"), "agent");
    assert_eq!(cpu["kind"], "gauge");

    // CPU states add up to the whole (one reading, across states).
    let states = series(http, "system_cpu_utilization").await;
    let names: Vec<&str> = states.iter().map(|s| label(s, "state")).collect();
    for state in [
        "user",
        "system",
        "idle",
        "nice",
        "wait",
        "interrupt",
        "softirq",
        "steal",
    ] {
        assert!(names.contains(&state), "no cpu state {state}: {names:?}");
    }

    for selector in [
        r#"system_memory_usage{state="used"}"#,
        r#"system_memory_utilization{state="free"}"#,
        "system_memory_limit",
        r#"system_paging_usage{state="used"}"#,
        "system_cpu_load_average_1m",
        "system_cpu_load_average_5m",
        "system_cpu_load_average_15m",
        r#"system_processes_count{status="running"}"#,
        "system_processes_created_total",
    ] {
        let s = one(http, selector).await;
        assert_eq!(label(&s, "host_name"), hostname(), "{selector}");
    }
    let mem = one(http, r#"system_memory_usage{state="used"}"#).await;
    assert_eq!(mem["kind"], "gauge", "an up-down sum is a gauge");

    // The root file system, with its attributes; pseudo file systems are skipped.
    let root = one(http, r#"system_filesystem_utilization{mountpoint="/"}"#).await;
    assert!(!label(&root, "device").is_empty());
    assert!(!label(&root, "type").is_empty());
    assert!(["rw", "ro"].contains(&label(&root, "mode")));
    let used = one(
        http,
        r#"system_filesystem_usage{mountpoint="/",state="used"}"#,
    )
    .await;
    assert_eq!(label(&used, "type"), label(&root, "type"));
    one(
        http,
        r#"system_filesystem_inodes_usage{mountpoint="/",state="free"}"#,
    )
    .await;
    let mounts = series(http, "system_filesystem_utilization").await;
    for m in &mounts {
        let mp = label(m, "mountpoint");
        assert!(
            !mp.starts_with("/proc") && !mp.starts_with("/sys"),
            "pseudo fs {mp}"
        );
        assert!(!["proc", "sysfs", "cgroup", "cgroup2", "devpts"].contains(&label(m, "type")));
    }
    let history = eventually(Duration::from_secs(20), "a utilisation value", || async {
        let h = history(http, r#"system_filesystem_utilization{mountpoint="/"}"#).await;
        h.last().copied()
    })
    .await;
    assert!((0.0..=1.0).contains(&history.1), "{history:?}");

    // Counters per device and direction, as rates (`_total`); loopback excluded.
    let disk = one(http, r#"system_disk_io_total{direction="read"}"#).await;
    assert_eq!(disk["kind"], "counter");
    assert!(!label(&disk, "device").is_empty());
    one(http, r#"system_disk_operations_total{direction="write"}"#).await;
    for name in [
        "system_network_io_total",
        "system_network_errors_total",
        "system_network_dropped_total",
        "system_network_packets_total",
    ] {
        let net = eventually(Duration::from_secs(20), name, || async {
            let s = series(http, name).await;
            (!s.is_empty()).then_some(s)
        })
        .await;
        assert!(
            net.iter().all(|s| label(s, "device") != "lo"),
            "{name}: lo is excluded"
        );
        let dirs: Vec<&str> = net.iter().map(|s| label(s, "direction")).collect();
        assert!(
            dirs.contains(&"receive") && dirs.contains(&"transmit"),
            "{name}: {dirs:?}"
        );
    }

    // The agent counts what it collected and sent.
    let m = eventually(Duration::from_secs(10), "sent counters", || async {
        let m = agent.metrics().await;
        (m.get("presage_agent_batches_sent_total{signal=\"metrics\"}")
            .copied()
            .unwrap_or(0.0)
            >= 2.0)
            .then_some(m)
    })
    .await;
    assert!(
        m["presage_agent_points_collected_total{source=\"host\"}"] > 50.0,
        "{m:?}"
    );
    assert!(m["presage_agent_items_sent_total{signal=\"metrics\"}"] > 50.0);
    assert_eq!(m["presage_agent_batches_spooled_total"], 0.0);
    assert_eq!(
        m["presage_agent_items_rejected_total{signal=\"metrics\"}"],
        0.0,
        "{}",
        agent.output()
    );
    assert!(m["process_resident_memory_bytes"] > 0.0);
    agent.stop().await;
    forecaster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protocol_with_a_config_file() {
    let forecaster = Forecaster::start().await;
    let http = forecaster.http();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nprotocol = \"http\"\nendpoint = \"http://{}\"\ninterval = \"1s\"\nstate_dir = \"{}\"\nservice_name = \"via-http\"\nresource = {{ \"deployment.environment\" = \"test\" }}\n\n[host]\nexclude_network_interfaces = []\n",
            forecaster.running.otlp_http,
            dir.path().join("state").display()
        ),
    )
    .unwrap();
    let agent = AgentProcess::start(
        dir.path(),
        &args(&["--config", config.to_str().unwrap()]),
        &[],
    )
    .await;
    let s = one(http, r#"system_memory_usage{state="used",job="via-http"}"#).await;
    assert_eq!(label(&s, "service_name"), "via-http");
    // With the exclusion list emptied, loopback is reported too.
    one(
        http,
        r#"system_network_io_total{device="lo",direction="receive"}"#,
    )
    .await;
    assert!(
        agent
            .metric("presage_agent_batches_sent_total{signal=\"metrics\"}")
            .await
            >= 1.0
    );
    agent.stop().await;
    forecaster.stop().await;
}

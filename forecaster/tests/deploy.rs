//! The deployment files under `deploy/`: Kubernetes manifests validated against the Kubernetes
//! schemas, the configurations embedded in their ConfigMaps accepted by `check-config`, the
//! Grafana dashboard, the Dockerfile and the systemd units.
//!
//! The schema validation uses `kubernetes-validate` from PyPI, which ships the schemas and works
//! offline. It is installed by `scripts/test`; when it is missing these tests fail and say how to
//! install it rather than passing without having validated anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const PRESAGE: &str = env!("CARGO_BIN_EXE_presage");
const INSTALL: &str = "python3 -m pip install kubernetes-validate";

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    files
}

/// Every document of a YAML file, as JSON (PyYAML comes with `kubernetes-validate`).
fn documents(path: &Path) -> Vec<Value> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml\n\
             docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
             print(json.dumps(docs))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| {
            panic!("python3 is needed to read the manifests ({e}); then: {INSTALL}")
        });
    assert!(
        out.status.success(),
        "{} is not valid YAML (or PyYAML is missing: {INSTALL}):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).expect("JSON from python3") {
        Value::Array(docs) => docs,
        other => panic!("expected a list of documents, got {other}"),
    }
}

fn all_documents() -> Vec<(PathBuf, Value)> {
    let mut docs = Vec::new();
    for dir in [
        deploy().join("kubernetes"),
        deploy().join("kubernetes/prometheus-operator"),
    ] {
        for file in yaml_files(&dir) {
            for doc in documents(&file) {
                docs.push((file.clone(), doc));
            }
        }
    }
    docs
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{pointer} missing or not a string in {v}"))
}

#[test]
fn kubernetes_manifests_match_the_kubernetes_schemas() {
    let files = yaml_files(&deploy().join("kubernetes"));
    let out = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet"])
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "kubernetes-validate is not installed ({e}); it is required to validate \
                 deploy/kubernetes. Install it with: {INSTALL} (or run ./scripts/test)"
            )
        });
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate failed:\n{report}"
    );
    // With --quiet only warnings and failures are printed; a warning means a resource was not
    // checked (e.g. no schema for its kind), which must not pass unnoticed.
    assert!(
        report.trim().is_empty(),
        "kubernetes-validate reported:\n{report}"
    );
}

#[test]
fn custom_resources_are_well_formed_service_monitors() {
    let dir = deploy().join("kubernetes/prometheus-operator");
    let mut monitors = 0;
    for file in yaml_files(&dir) {
        for doc in documents(&file) {
            let at = file.display();
            assert_eq!(
                str_at(&doc, "/apiVersion"),
                "monitoring.coreos.com/v1",
                "{at}"
            );
            assert_eq!(str_at(&doc, "/kind"), "ServiceMonitor", "{at}");
            assert!(!str_at(&doc, "/metadata/name").is_empty(), "{at}");
            assert_eq!(str_at(&doc, "/metadata/namespace"), "presage", "{at}");
            let labels = doc
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .unwrap_or_else(|| panic!("{at}: spec.selector.matchLabels missing"));
            assert!(!labels.is_empty(), "{at}: empty selector");
            let endpoints = doc
                .pointer("/spec/endpoints")
                .and_then(Value::as_array)
                .unwrap_or_else(|| panic!("{at}: spec.endpoints missing"));
            assert!(!endpoints.is_empty(), "{at}: no endpoints");
            for ep in endpoints {
                assert!(!str_at(ep, "/port").is_empty(), "{at}");
                assert_eq!(str_at(ep, "/path"), "/metrics", "{at}");
            }
            monitors += 1;
        }
    }
    assert!(monitors >= 1, "no ServiceMonitor in {}", dir.display());
}

/// The TOML files embedded in every ConfigMap: (ConfigMap name, key, contents).
fn embedded_configs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (_, doc) in all_documents() {
        if doc.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
            continue;
        }
        let name = str_at(&doc, "/metadata/name").to_string();
        let Some(data) = doc.get("data").and_then(Value::as_object) else {
            continue;
        };
        for (key, value) in data {
            if key.ends_with(".toml") {
                let text = value.as_str().expect("ConfigMap data is a string");
                out.push((name.clone(), key.clone(), text.to_string()));
            }
        }
    }
    out
}

#[test]
fn configmap_configs_pass_check_config() {
    let configs = embedded_configs();
    let dir = tempfile::tempdir().expect("temp dir");
    let agent_bin =
        Path::new(PRESAGE).with_file_name(format!("presage-agent{}", std::env::consts::EXE_SUFFIX));
    let (mut forecaster, mut agent) = (0, 0);
    for (map, key, text) in &configs {
        let path = dir.path().join(format!("{map}-{key}"));
        std::fs::write(&path, text).expect("write config");
        let origin = format!("ConfigMap {map}, {key}");
        if key.contains("agent") {
            // The agent's binary is not a dependency of this crate: its configuration types are
            // (presage-config), and the agent's own check runs too when its binary was built.
            if let Err(e) = presage_config::AgentConfig::from_toml(text, &origin) {
                panic!("{e}");
            }
            if agent_bin.exists() {
                let out = Command::new(&agent_bin)
                    .arg("check-config")
                    .arg(&path)
                    .output()
                    .expect("presage-agent runs");
                assert!(
                    out.status.success(),
                    "{origin}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            agent += 1;
        } else {
            let out = Command::new(PRESAGE)
                .arg("check-config")
                .arg(&path)
                .output()
                .expect("presage runs");
            assert!(
                out.status.success(),
                "{origin}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let cfg = presage_config::ForecasterConfig::from_toml(text, &origin)
                .unwrap_or_else(|e| panic!("{e}"));
            // Inside a pod the daemon must listen beyond loopback, and keep its state on the
            // StatefulSet's volume.
            assert!(cfg.server.http.ip().is_unspecified(), "{origin}");
            assert!(cfg.server.otlp_grpc.ip().is_unspecified(), "{origin}");
            assert!(cfg.server.otlp_http.ip().is_unspecified(), "{origin}");
            assert_eq!(cfg.storage.dir, Path::new("/var/lib/presage"), "{origin}");
            forecaster += 1;
        }
    }
    assert!(forecaster >= 1, "no forecaster config in a ConfigMap");
    assert!(agent >= 2, "the DaemonSet and sidecar agent configs");
}

fn workload(kind: &str, name: &str) -> Value {
    all_documents()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| {
            d.get("kind").and_then(Value::as_str) == Some(kind)
                && d.pointer("/metadata/name").and_then(Value::as_str) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

#[test]
fn workloads_have_probes_volumes_and_the_agent_environment() {
    let sts = workload("StatefulSet", "presage");
    let pod = sts.pointer("/spec/template/spec").expect("pod spec");
    assert_eq!(
        pod.pointer("/securityContext/runAsNonRoot"),
        Some(&Value::Bool(true))
    );
    let c = pod.pointer("/containers/0").expect("container");
    assert_eq!(str_at(c, "/livenessProbe/httpGet/path"), "/-/healthy");
    assert_eq!(str_at(c, "/readinessProbe/httpGet/path"), "/-/ready");
    assert_eq!(
        c.pointer("/securityContext/readOnlyRootFilesystem"),
        Some(&Value::Bool(true))
    );
    assert!(c.pointer("/resources/requests").is_some());
    let claim = str_at(&sts, "/spec/volumeClaimTemplates/0/metadata/name");
    let mounts = c
        .pointer("/volumeMounts")
        .and_then(Value::as_array)
        .expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["name"] == claim && m["mountPath"] == "/var/lib/presage"),
        "the volume claim is mounted at storage.dir"
    );
    assert_eq!(
        str_at(
            &sts,
            "/spec/template/metadata/annotations/prometheus.io~1scrape"
        ),
        "true"
    );

    let svc = workload("Service", "presage");
    let ports: Vec<i64> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .expect("ports")
        .iter()
        .filter_map(|p| p["port"].as_i64())
        .collect();
    assert_eq!(ports, [4317, 4318, 9470]);

    let ds = workload("DaemonSet", "presage-agent");
    let c = ds
        .pointer("/spec/template/spec/containers/0")
        .expect("agent container");
    let env: Vec<&str> = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for var in ["K8S_NODE_NAME", "K8S_POD_NAME", "K8S_NAMESPACE_NAME"] {
        assert!(env.contains(&var), "{var} missing from the DaemonSet");
    }
    let host_paths: Vec<&str> = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v.pointer("/hostPath/path").and_then(Value::as_str))
        .collect();
    for path in ["/proc", "/", "/var/log"] {
        assert!(host_paths.contains(&path), "hostPath {path} missing");
    }

    let dep = workload("Deployment", "checkout");
    let containers = dep
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("containers");
    assert_eq!(containers.len(), 2, "the app and its presage-agent sidecar");
    assert!(
        containers.iter().any(|c| c["args"][0] == "presage-agent"),
        "the sidecar runs presage-agent"
    );
}

#[test]
fn grafana_dashboard_graphs_the_forecast_series() {
    let path = deploy().join("grafana/presage-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("dashboard");
    let dash: Value = serde_json::from_str(&text).expect("the dashboard is valid JSON");
    assert!(!str_at(&dash, "/title").is_empty());
    let vars: Vec<&str> = dash
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .expect("template variables")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(vars.contains(&"metric"), "{vars:?}");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    let all = exprs.join("\n");
    for needle in [
        "$metric:predicted{ml_forecast=\"yhat\"",
        "ml_forecast=\"yhat_lower\"",
        "ml_forecast=\"yhat_upper\"",
        "$metric:anomalous",
        "presage_anomaly_score",
        "presage_breach_eta_seconds",
        "presage_alerts",
        "presage_samples_accepted_total",
    ] {
        assert!(all.contains(needle), "no panel queries {needle}");
    }
}

#[test]
fn dockerfile_builds_both_binaries_and_runs_unprivileged() {
    let text = std::fs::read_to_string(deploy().join("Dockerfile")).expect("Dockerfile");
    let froms: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(froms.len(), 2, "a builder and a runtime stage: {froms:?}");
    assert!(froms[0].starts_with("FROM rust:") && froms[0].ends_with(" AS builder"));
    assert_eq!(froms[1], "FROM debian:bookworm-slim");
    assert!(text.contains("cargo build --release --locked -p presage-forecaster -p presage-agent"));
    for bin in ["presage", "presage-agent"] {
        assert!(
            text.contains(&format!("target/release/{bin} ")),
            "{bin} is not taken from the build"
        );
    }
    assert!(text.contains("/usr/local/bin/"));
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER instruction");
    let uid = user.split(':').next().unwrap_or_default().trim();
    assert!(uid != "0" && uid != "root", "runs as {user}");
    assert!(text.contains("EXPOSE 4317 4318 9470 9471"));
    assert!(text.contains(r#"CMD ["presage", "serve", "--config", "/etc/presage/presage.toml"]"#));
    let ignore =
        std::fs::read_to_string(deploy().join("Dockerfile.dockerignore")).expect("dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"));
}

#[test]
fn systemd_units_are_hardened() {
    for (unit, state) in [
        ("presage.service", "StateDirectory=presage"),
        ("presage-agent.service", "StateDirectory=presage-agent"),
    ] {
        let text = std::fs::read_to_string(deploy().join("systemd").join(unit)).expect("unit");
        for line in [
            state,
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "DynamicUser=yes",
            "[Install]",
        ] {
            assert!(
                text.lines().any(|l| l.trim() == line),
                "{unit}: {line} missing"
            );
        }
        assert!(text.contains("ExecStart=/usr/local/bin/"), "{unit}");
    }
}

//! Resource attributes: who sent the data.
//!
//! `host.name` is `agent.host_name`, else the kernel's host name. `service.name` is
//! `agent.service_name`, else `$OTEL_SERVICE_NAME`, else `presage-agent` (scrape targets and
//! log sources may set their own). Kubernetes attributes come from downward-API environment
//! variables, the first one set of:
//!
//! | attribute | variables |
//! | --- | --- |
//! | `k8s.pod.name` | `K8S_POD_NAME`, `POD_NAME` |
//! | `k8s.namespace.name` | `K8S_NAMESPACE_NAME`, `K8S_POD_NAMESPACE`, `POD_NAMESPACE` |
//! | `k8s.node.name` | `K8S_NODE_NAME`, `NODE_NAME` |
//! | `k8s.pod.uid` | `K8S_POD_UID`, `POD_UID` |
//! | `container.name` | `K8S_CONTAINER_NAME`, `CONTAINER_NAME` |
//!
//! `$OTEL_RESOURCE_ATTRIBUTES` (`key=value,…`) is honoured too; `agent.resource` overrides
//! it.

use std::path::Path;

use presage_config::AgentSettings;

/// Downward-API variables per attribute, in order of preference.
pub(crate) const K8S_ENV: [(&str, &[&str]); 5] = [
    ("k8s.pod.name", &["K8S_POD_NAME", "POD_NAME"]),
    (
        "k8s.namespace.name",
        &["K8S_NAMESPACE_NAME", "K8S_POD_NAMESPACE", "POD_NAMESPACE"],
    ),
    ("k8s.node.name", &["K8S_NODE_NAME", "NODE_NAME"]),
    ("k8s.pod.uid", &["K8S_POD_UID", "POD_UID"]),
    ("container.name", &["K8S_CONTAINER_NAME", "CONTAINER_NAME"]),
];

/// The agent's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    /// `host.name`.
    pub(crate) host_name: String,
    /// The default `service.name`.
    pub(crate) service_name: String,
    /// Everything else: Kubernetes attributes, `$OTEL_RESOURCE_ATTRIBUTES`, `agent.resource`.
    pub(crate) extra: Vec<(String, String)>,
}

impl Identity {
    /// Works out the identity from the settings, the environment (`env`) and procfs.
    pub(crate) fn detect(
        settings: &AgentSettings,
        env: &dyn Fn(&str) -> Option<String>,
        proc: &Path,
    ) -> Self {
        let non_empty =
            |v: Option<String>| v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let host_name = settings
            .host_name
            .clone()
            .or_else(|| non_empty(std::fs::read_to_string(proc.join("sys/kernel/hostname")).ok()))
            .or_else(|| non_empty(env("HOSTNAME")))
            .unwrap_or_else(|| "unknown".to_string());
        let service_name = settings
            .service_name
            .clone()
            .or_else(|| non_empty(env("OTEL_SERVICE_NAME")))
            .unwrap_or_else(|| "presage-agent".to_string());
        let mut extra: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| match extra.iter_mut().find(|(ek, _)| ek == k) {
            Some(e) => e.1 = v,
            None => extra.push((k.to_string(), v)),
        };
        if let Some(list) = non_empty(env("OTEL_RESOURCE_ATTRIBUTES")) {
            for pair in list.split(',') {
                if let Some((k, v)) = pair.split_once('=') {
                    let (k, v) = (k.trim(), v.trim());
                    if !k.is_empty() && k != "service.name" && k != "host.name" {
                        set(k, v.to_string());
                    }
                }
            }
        }
        for (attr, vars) in K8S_ENV {
            if let Some(v) = vars.iter().find_map(|var| non_empty(env(var))) {
                set(attr, v);
            }
        }
        for (k, v) in &settings.resource {
            set(k, v.clone());
        }
        Self {
            host_name,
            service_name,
            extra,
        }
    }

    /// The resource attributes with `service.name` = `service` (the default when `None`).
    pub(crate) fn attributes(&self, service: Option<&str>) -> Vec<(String, String)> {
        let mut out = vec![
            ("host.name".to_string(), self.host_name.clone()),
            (
                "service.name".to_string(),
                service.unwrap_or(&self.service_name).to_string(),
            ),
        ];
        out.extend(
            self.extra
                .iter()
                .filter(|(k, _)| k != "host.name" && k != "service.name")
                .cloned(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn kubernetes_downward_api_variables() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
        std::fs::write(dir.path().join("sys/kernel/hostname"), "node-7\n").unwrap();
        let id = Identity::detect(
            &AgentSettings::default(),
            &env(&[
                ("POD_NAME", "checkout-7d9f"),
                ("K8S_POD_NAME", "preferred"),
                ("POD_NAMESPACE", "shop"),
                ("NODE_NAME", "node-7"),
                ("CONTAINER_NAME", "app"),
                ("OTEL_SERVICE_NAME", "checkout"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=prod, team=pay,broken",
                ),
            ]),
            dir.path(),
        );
        assert_eq!(id.host_name, "node-7");
        assert_eq!(id.service_name, "checkout");
        let attrs: HashMap<String, String> = id.attributes(None).into_iter().collect();
        assert_eq!(attrs["k8s.pod.name"], "preferred");
        assert_eq!(attrs["k8s.namespace.name"], "shop");
        assert_eq!(attrs["k8s.node.name"], "node-7");
        assert_eq!(attrs["container.name"], "app");
        assert_eq!(attrs["deployment.environment"], "prod");
        assert_eq!(attrs["team"], "pay");
        assert_eq!(attrs["service.name"], "checkout");
        assert!(!attrs.contains_key("k8s.pod.uid"));
    }

    #[test]
    fn settings_win_and_defaults_apply() {
        let mut s = AgentSettings {
            host_name: Some("web-1".into()),
            ..AgentSettings::default()
        };
        s.resource.insert("team".into(), "config".into());
        let id = Identity::detect(
            &s,
            &env(&[("OTEL_RESOURCE_ATTRIBUTES", "team=env")]),
            Path::new("/nonexistent"),
        );
        assert_eq!(id.host_name, "web-1");
        assert_eq!(id.service_name, "presage-agent");
        let attrs = id.attributes(Some("nginx"));
        assert_eq!(attrs[0], ("host.name".into(), "web-1".into()));
        assert_eq!(attrs[1], ("service.name".into(), "nginx".into()));
        assert!(attrs.contains(&("team".into(), "config".into())));
    }
}

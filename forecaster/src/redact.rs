//! The running configuration with its secrets taken out, for `/api/v1/status`.
//!
//! Redacted: every secret reference (`[auth]` token sources, SMTP passwords, webhook HMAC
//! secrets: which file or variable holds a secret is not shown either), every webhook header
//! value (they carry `Authorization` and API keys), the path and query of webhook URLs (chat
//! webhooks carry their credential there), user info and query strings of every other URL, and,
//! as a safety net for settings added later, any key whose name says it holds a credential.

use presage_config::ForecasterConfig;
use serde_json::{Map, Value};

/// What replaces a secret.
pub const REDACTED: &str = "<redacted>";

/// Key names (any case, anywhere in the document) whose values are always redacted.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "authorization",
    "api_key",
    "apikey",
    "credential",
    "cookie",
];

/// `config` as JSON, with every secret replaced by `"<redacted>"`. Unset (`null`) values stay
/// `null`, so the answer still tells which secrets are configured.
pub fn redacted_config(config: &ForecasterConfig) -> Value {
    let mut doc = serde_json::to_value(config).unwrap_or(Value::Null);
    if let Some(receivers) = doc.get_mut("receivers").and_then(Value::as_array_mut) {
        for receiver in receivers {
            if let Some(webhook) = receiver.get_mut("webhook").filter(|w| w.is_object()) {
                if let Some(headers) = webhook.get_mut("headers").and_then(Value::as_object_mut) {
                    for value in headers.values_mut() {
                        *value = Value::String(REDACTED.to_string());
                    }
                }
                if let Some(url) = webhook.get_mut("url") {
                    redact_url(url, true);
                }
            }
            if let Some(urls) = receiver
                .pointer_mut("/alertmanager/urls")
                .and_then(Value::as_array_mut)
            {
                for url in urls {
                    redact_url(url, false);
                }
            }
        }
    }
    if let Some(sources) = doc.get_mut("backfill").and_then(Value::as_array_mut) {
        for source in sources {
            if let Some(url) = source.get_mut("prometheus") {
                redact_url(url, false);
            }
        }
    }
    redact_secret_keys(&mut doc);
    doc
}

/// Replaces the value of every key named like a secret (and the whole `auth` section's values).
fn redact_secret_keys(value: &mut Value) {
    match value {
        Value::Object(map) => redact_object(map),
        Value::Array(items) => items.iter_mut().for_each(redact_secret_keys),
        _ => {}
    }
}

fn redact_object(map: &mut Map<String, Value>) {
    for (key, value) in map.iter_mut() {
        let lower = key.to_ascii_lowercase();
        let secret = lower == "auth" || SECRET_WORDS.iter().any(|w| lower.contains(w));
        if secret {
            redact_all(value);
        } else {
            redact_secret_keys(value);
        }
    }
}

/// Replaces every non-null leaf of `value`, keeping its shape.
fn redact_all(value: &mut Value) {
    match value {
        Value::Null => {}
        Value::Object(map) => map.values_mut().for_each(redact_all),
        Value::Array(items) => items.iter_mut().for_each(redact_all),
        other => *other = Value::String(REDACTED.to_string()),
    }
}

/// Removes user info and the query (and, with `hide_path`, the path) of a URL string.
fn redact_url(value: &mut Value, hide_path: bool) {
    let Some(url) = value.as_str() else { return };
    let Some((scheme, rest)) = url.split_once("://") else {
        *value = Value::String(REDACTED.to_string());
        return;
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_string(),
    };
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, query) = tail.split_at(path_end);
    let path = if hide_path && !matches!(path, "" | "/") {
        format!("/{REDACTED}")
    } else {
        path.to_string()
    };
    let query = if query.is_empty() { "" } else { "?<redacted>" };
    *value = Value::String(format!("{scheme}://{host}{path}{query}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[receivers]]
name = "hook"
webhook = { url = "https://hooks.example.com/services/T0/B0/hooksecret", headers = { Authorization = "Bearer hdr-secret", X-Team = "ops" }, hmac_secret = { env = "HMAC_KEY_VAR" } }

[[receivers]]
name = "mail"
email = { smtp = "mail:587", from = "a@example.com", to = ["b@example.com"], username = "presage", password = { file = "/run/secrets/smtp-pass" } }

[[receivers]]
name = "am"
alertmanager = { urls = ["http://admin:am-pass@am:9093", "http://am2:9093"] }

[[routes]]
receivers = ["hook", "mail", "am"]
"#;

    #[test]
    fn secrets_and_their_references_are_redacted() {
        let mut cfg = ForecasterConfig::from_toml(CONFIG, "t").expect("valid configuration");
        cfg.backfill.push(presage_config::BackfillConfig::new(
            "https://user:pw123@prometheus.example.com:9090/prom?x-token=abc",
            vec!["up".into()],
        ));
        cfg.auth.ingest_token_file = Some("/etc/presage/ingest.token".into());
        cfg.auth.api_token_env = Some("PRESAGE_API_TOKEN_VAR".into());
        let doc = redacted_config(&cfg);
        let text = doc.to_string();
        for secret in [
            "pw123",
            "x-token=abc",
            "hooksecret",
            "hdr-secret",
            "HMAC_KEY_VAR",
            "smtp-pass",
            "am-pass",
            "ingest.token",
            "PRESAGE_API_TOKEN_VAR",
            "\"ops\"",
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let hook = &doc["receivers"][0]["webhook"];
        assert_eq!(hook["url"], "https://hooks.example.com/<redacted>");
        assert_eq!(hook["headers"]["Authorization"], REDACTED);
        assert_eq!(hook["headers"]["X-Team"], REDACTED);
        assert_eq!(hook["hmac_secret"]["env"], REDACTED);
        assert_eq!(doc["receivers"][1]["email"]["password"]["file"], REDACTED);
        // Not secrets: kept.
        assert_eq!(doc["receivers"][1]["email"]["username"], "presage");
        assert_eq!(doc["receivers"][1]["email"]["smtp"], "mail:587");
        assert_eq!(
            doc["receivers"][2]["alertmanager"]["urls"],
            serde_json::json!(["http://<redacted>@am:9093", "http://am2:9093"])
        );
        assert_eq!(
            doc["backfill"][0]["prometheus"],
            "https://<redacted>@prometheus.example.com:9090/prom?<redacted>"
        );
        assert_eq!(doc["auth"]["ingest_token_file"], REDACTED);
        assert_eq!(doc["auth"]["api_token_env"], REDACTED);
        assert_eq!(doc["auth"]["api_token_file"], Value::Null);
        assert_eq!(doc["server"]["http"], "127.0.0.1:9470");
        assert_eq!(doc["model"]["step"], cfg_json_step(&cfg));
    }

    fn cfg_json_step(cfg: &ForecasterConfig) -> Value {
        serde_json::to_value(cfg).expect("serializes")["model"]["step"].clone()
    }

    #[test]
    fn a_config_without_secrets_is_unchanged() {
        let cfg = ForecasterConfig::default();
        assert_eq!(
            redacted_config(&cfg),
            serde_json::to_value(&cfg).expect("serializes")
        );
    }
}

use std::time::Duration;

use super::*;

fn problems(source: &str) -> Vec<String> {
    ForecasterConfig::from_toml(source, "t.toml")
        .unwrap_err()
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn empty_file_gives_defaults() {
    let cfg = ForecasterConfig::from_toml("", "t.toml").unwrap();
    assert_eq!(cfg, ForecasterConfig::default());
    assert_eq!(cfg.server.http.to_string(), "127.0.0.1:9470");
    assert_eq!(cfg.server.otlp_grpc.to_string(), "127.0.0.1:4317");
    assert_eq!(cfg.server.otlp_http.to_string(), "127.0.0.1:4318");
    assert_eq!(cfg.limits.max_series, 100_000);
    assert_eq!(cfg.limits.max_request_body, ByteSize::mib(16));
    assert_eq!(cfg.storage.retention, Duration::from_secs(14 * 86_400));
    assert_eq!(cfg.model.step, Duration::from_secs(60));
}

#[test]
fn design_document_keys_parse() {
    let cfg = ForecasterConfig::from_toml(
        r#"
[server]
otlp_grpc = "127.0.0.1:14317"
otlp_http = "127.0.0.1:14318"
http = "127.0.0.1:19470"

[storage]
dir = "/var/lib/presage"
retention = "7d"

[model]
step = "30s"

[limits]
max_series = 5000
max_request_body = "4MiB"
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.server.http.port(), 19470);
    assert_eq!(cfg.storage.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(cfg.model.step, Duration::from_secs(30));
    assert_eq!(cfg.limits.max_series, 5000);
    assert_eq!(cfg.limits.max_request_body, ByteSize(4 << 20));
}

#[test]
fn every_section_error_is_reported_with_its_position() {
    let source = "[server]\nhtp = \"127.0.0.1:1\"\n\n[model]\nstep = 60\n\n[bogus]\nx = 1\n";
    let got = problems(source);
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with("2:1: `server`: unknown field `htp`"),
        "{}",
        got[0]
    );
    assert!(got[1].starts_with("5:8: `model`:"), "{}", got[1]);
    assert!(
        got[2].starts_with("7:2: `bogus`: unknown section"),
        "{}",
        got[2]
    );
}

#[test]
fn semantic_errors_point_at_the_key() {
    let source = "[model]\nstep = \"500ms\"\n[limits]\nmax_series = 0\n";
    let got = problems(source);
    assert_eq!(
        got,
        vec![
            "2:1: `model.step`: must be between 1s and 1h, got 500ms".to_string(),
            "4:1: `limits.max_series`: must be at least 1".to_string(),
        ]
    );
}

#[test]
fn ingest_admission_limits_have_defaults_and_are_checked() {
    let l = ForecasterConfig::default().limits;
    assert_eq!(l.max_concurrent_ingest_requests, 64);
    assert_eq!(l.max_inflight_ingest_bytes, ByteSize::mib(256));
    assert_eq!(l.max_streams_per_connection, 32);
    assert_eq!(l.max_connections, 10_000);

    let cfg = ForecasterConfig::from_toml(
        "[limits]\nmax_concurrent_ingest_requests = 8\nmax_inflight_ingest_bytes = \"100MiB\"\n\
         max_streams_per_connection = 4\nmax_connections = 100\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.limits.max_concurrent_ingest_requests, 8);
    assert_eq!(cfg.limits.max_inflight_ingest_bytes, ByteSize::mib(100));
    assert_eq!(cfg.limits.max_streams_per_connection, 4);
    assert_eq!(cfg.limits.max_connections, 100);

    let got = problems(
        "[limits]\nmax_concurrent_ingest_requests = 0\nmax_streams_per_connection = 0\n\
         max_connections = 0\n",
    );
    assert_eq!(
        got,
        vec![
            "2:1: `limits.max_concurrent_ingest_requests`: must be at least 1".to_string(),
            "3:1: `limits.max_streams_per_connection`: must be at least 1".to_string(),
            "4:1: `limits.max_connections`: must be at least 1".to_string(),
        ]
    );
    // One request of the largest size (16MiB body, 64MiB decompressed) must fit.
    let got = problems("[limits]\nmax_inflight_ingest_bytes = \"79MiB\"\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("2:1: `limits.max_inflight_ingest_bytes`: must be at least"),
        "{}",
        got[0]
    );
    assert!(
        ForecasterConfig::from_toml(
            "[limits]\nmax_inflight_ingest_bytes = \"80MiB\"\n",
            "t.toml"
        )
        .is_ok()
    );
}

#[test]
fn conflicting_addresses_are_rejected() {
    let got = problems("[server]\nhttp = \"127.0.0.1:4318\"\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("server.http"), "{}", got[0]);
    assert!(got[0].contains("server.otlp_http"), "{}", got[0]);
}

#[test]
fn syntax_errors_are_located() {
    let err = ForecasterConfig::from_toml("[server\nhttp = 1", "t.toml").unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("t.toml:1:"), "{text}");
}

#[test]
fn bad_duration_and_size_units_are_explained() {
    let got = problems("[storage]\nretention = \"fortnight\"\n");
    assert!(got[0].starts_with("2:13: `storage`:"), "{}", got[0]);
    let got = problems("[limits]\nmax_request_body = \"3 parsecs\"\n");
    assert!(got[0].contains("unknown size unit `parsecs`"), "{}", got[0]);
}

#[test]
fn missing_file_is_a_read_error() {
    let err =
        ForecasterConfig::from_file(std::path::Path::new("/nonexistent/presage.toml")).unwrap_err();
    assert!(matches!(err, Error::Read { .. }));
    assert!(err.to_string().contains("/nonexistent/presage.toml"));
}

#[test]
fn export_selectors_are_checked() {
    let got = problems("[model]\nexport_match = [\"up\", \"rate(x[5m])\"]\n");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].contains("model.export_match[1]"), "{}", got[0]);
    assert!(got[0].contains("not a series selector"), "{}", got[0]);
}

#[test]
fn breach_rules_parse_and_are_validated() {
    let cfg = ForecasterConfig::from_toml(
        r#"
[[rules]]
name = "RootFilesystemFilling"
kind = "breach"
select = 'system_filesystem_utilization{mountpoint="/"}'
threshold = 0.9
horizon = "6h"
labels = { severity = "critical" }
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.rules[0].kind, RuleKind::Breach);
    assert_eq!(cfg.rules[0].direction, Direction::Above);
    assert_eq!(cfg.rules[0].labels["severity"], "critical");

    let got = problems(
        "[[rules]]\nname = \"a\"\nkind = \"breach\"\nselect = \"up\"\nthreshold = 1\n\n[[rules]]\nname = \"a\"\nkind = \"breach\"\nselect = \"x[5m]\"\nthreshold = 1\nhorizon = \"1s\"\n",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].contains("rules[1].name") && got[0].contains("already"),
        "{}",
        got[0]
    );
    assert!(got[1].contains("rules[1].select"), "{}", got[1]);
    assert!(got[2].contains("rules[1].horizon"), "{}", got[2]);

    // Fields that do not apply to a kind are refused, not silently ignored; required ones
    // are asked for.
    let got =
        problems("[[rules]]\nname = \"a\"\nkind = \"anomaly\"\nselect = \"up\"\nthreshold = 1\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].contains("rules[0].threshold")
            && got[0].contains("does not apply to kind `anomaly`"),
        "{}",
        got[0]
    );
    let got = problems("[[rules]]\nname = \"a\"\nkind = \"static\"\n");
    assert!(
        got[0].contains("is required for kind `static`"),
        "{}",
        got[0]
    );
    let got = problems("[[rules]]\nname = \"a\"\nkind = \"sometimes\"\n");
    assert!(got[0].contains("unknown variant `sometimes`"), "{}", got[0]);
}

#[test]
fn receivers_and_routes_are_validated() {
    let cfg = ForecasterConfig::from_toml(
        r#"
[[receivers]]
name = "oncall-mail"
email = { smtp = "127.0.0.1:2525", tls = "none", from = "presage@example.com", to = ["oncall@example.com"] }

[[receivers]]
name = "hook"
webhook = { url = "http://127.0.0.1:9099/hook" }

[[receivers]]
name = "am"
alertmanager = { urls = ["http://127.0.0.1:9093"] }

[[routes]]
match = '{severity=~"warning|critical"}'
receivers = ["oncall-mail", "hook", "am"]
group_by = ["alertname", "host_name"]
group_wait = "10s"
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.receivers.len(), 3);
    assert_eq!(cfg.routes[0].group_wait.as_secs(), 10);

    let got = problems(
        "[[receivers]]\nname = \"x\"\n\n[[receivers]]\nname = \"y\"\nwebhook = { url = \"ftp://a\" }\n\n[[routes]]\nreceivers = [\"nobody\"]\n",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].contains("exactly one of"), "{}", got[0]);
    assert!(got[1].contains("receivers[1].webhook.url"), "{}", got[1]);
    assert!(
        got[2].contains("no receiver is named `nobody`"),
        "{}",
        got[2]
    );
}

#[test]
fn alerting_limits_and_negative_alert_matchers() {
    let cfg = ForecasterConfig::from_toml("", "t.toml").unwrap();
    assert_eq!(cfg.alerting.max_alerts, 50_000);
    let cfg = ForecasterConfig::from_toml("[alerting]\nmax_alerts = 10\n", "t.toml").unwrap();
    assert_eq!(cfg.alerting.max_alerts, 10);
    let got = problems("[alerting]\nmax_alerts = 0\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("must be at least 1"), "{}", got[0]);

    // Route and inhibition matchers may all match the empty string, as in Alertmanager.
    let cfg = ForecasterConfig::from_toml(
        r#"
[[receivers]]
name = "hook"
webhook = { url = "http://127.0.0.1:9099/hook" }

[[routes]]
match = '{severity!="info"}'
receivers = ["hook"]

[[inhibit]]
source = '{alertname="HostDown"}'
target = '{severity!~"critical|page"}'
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.routes[0].matcher, r#"{severity!="info"}"#);
    // Broken syntax is still refused.
    let got = problems(
        "[[receivers]]\nname = \"h\"\nconsole = {}\n[[routes]]\nmatch = '{severity!=\"info\"'\nreceivers = [\"h\"]\n",
    );
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("routes[0].match"), "{}", got[0]);
}

#[test]
fn logs_section_defaults_overrides_and_bounds() {
    let cfg = ForecasterConfig::from_toml("", "t.toml").unwrap();
    assert_eq!(cfg.logs.max_templates, 10_000);
    assert_eq!(cfg.logs.similarity, 0.5);
    assert_eq!(cfg.logs.warmup, Duration::from_secs(600));
    assert_eq!(cfg.logs.export_limit, 1_000);
    let cfg = ForecasterConfig::from_toml(
        "[logs]\nmax_templates = 50\nsimilarity = 0.7\nwarmup = \"2m\"\nexport_limit = 10\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        (
            cfg.logs.max_templates,
            cfg.logs.warmup,
            cfg.logs.export_limit
        ),
        (50, Duration::from_secs(120), 10)
    );
    let got = problems("[logs]\nmax_templates = 0\nsimilarity = 1.5\n");
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got.iter().any(|p| p.contains("logs.max_templates")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|p| p.contains("logs.similarity")),
        "{got:#?}"
    );
    let got = problems("[logs]\nwarm_up = \"1m\"\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(got[0].contains("warm_up"), "{}", got[0]);
}

#[test]
fn backfill_sources_parse_with_defaults() {
    let cfg = ForecasterConfig::from_toml(
        r#"
[[backfill]]
prometheus = "http://prometheus:9090"
match = 'node_filesystem_avail_bytes'
range = "14d"

[[backfill]]
prometheus = "https://prom.example.com/prometheus"
match = ['node_load1', 'up{job="node"}']
range = "2d"
step = "30s"
concurrency = 8
"#,
        "t.toml",
    )
    .unwrap();
    assert_eq!(cfg.backfill.len(), 2);
    let first = &cfg.backfill[0];
    assert_eq!(first.prometheus, "http://prometheus:9090");
    assert_eq!(first.selectors, vec!["node_filesystem_avail_bytes"]);
    assert_eq!(first.range, Some(Duration::from_secs(14 * 86_400)));
    assert_eq!(
        first.effective_step(cfg.model.step),
        Duration::from_secs(60)
    );
    assert_eq!(first.concurrency, DEFAULT_BACKFILL_CONCURRENCY);
    let second = &cfg.backfill[1];
    assert_eq!(second.selectors, vec!["node_load1", r#"up{job="node"}"#]);
    assert_eq!(second.step, Some(Duration::from_secs(30)));
    assert_eq!(second.concurrency, 8);

    // Without a range, the whole retention window is pulled.
    let cfg = ForecasterConfig::from_toml(
        "[storage]\nretention = \"3d\"\n[[backfill]]\nprometheus = \"http://p:9090\"\nmatch = \"up\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.backfill[0].effective_range(cfg.storage.retention),
        Duration::from_secs(3 * 86_400)
    );
}

#[test]
fn backfill_problems_are_located() {
    let source = "\
[[backfill]]
prometheus = \"prometheus:9090\"
match = ['up', 'rate(x[5m])']
range = \"30d\"
step = \"5m\"
concurrency = 0
";
    let got = problems(source);
    assert_eq!(
        got,
        vec![
            "2:1: `backfill[0].prometheus`: `prometheus:9090` must start with http:// or https://"
                .to_string(),
            "3:16: `backfill[0].match[1]`: invalid selector `rate(x[5m])`: it is not a series selector: offset, @ and range modifiers are not supported here".to_string(),
            "4:1: `backfill[0].range`: 30days is longer than storage.retention (14days): older samples would be refused".to_string(),
            "5:1: `backfill[0].step`: must be at most model.step (1m): coarser history leaves gaps between the steps the model fits on".to_string(),
            "6:1: `backfill[0].concurrency`: must be between 1 and 64, got 0".to_string(),
        ]
    );

    let got = problems(
        "[[backfill]]\nprometheus = \"http://p:9090/?x=1\"\nmatch = []\nrange = \"10s\"\n",
    );
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(
        got[0].starts_with("2:1: `backfill[0].prometheus`") && got[0].contains("query"),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("3:1: `backfill[0].match`: must name at least one selector"),
        "{}",
        got[1]
    );
    assert!(
        got[2].starts_with("4:1: `backfill[0].range`: must cover at least one step (1m)"),
        "{}",
        got[2]
    );

    // Strict shape: unknown keys, a missing URL, and a number where a selector goes.
    let got =
        problems("[[backfill]]\nprometheus = \"http://p:9090\"\nmatch = \"up\"\nranges = \"1d\"\n");
    assert_eq!(got.len(), 1, "{got:#?}");
    assert!(
        got[0].starts_with("4:1: `backfill`: unknown field `ranges`"),
        "{}",
        got[0]
    );
    let got = problems("[[backfill]]\nmatch = \"up\"\n");
    assert!(got[0].contains("missing field `prometheus`"), "{}", got[0]);
    let got = problems("[[backfill]]\nprometheus = \"http://p:9090\"\nmatch = 5\n");
    assert!(
        got[0].starts_with("3:9: `backfill`:") && got[0].contains("a series selector or a list"),
        "{}",
        got[0]
    );
}

/// A file in a fresh directory under the system's temp dir, for token files.
fn token_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir =
        std::env::temp_dir().join(format!("presage-config-auth-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("token");
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn auth_tokens_are_read_from_files_one_per_line() {
    let ingest = token_file(
        "ingest",
        "# rotated 2024-05-01\n0123456789abcdef-new\n\n  0123456789abcdef-old  \r\n",
    );
    let api = token_file("api", "api-token-0123456789\n");
    let source = format!(
        "[auth]\ningest_token_file = {:?}\napi_token_file = {:?}\n",
        ingest.display().to_string(),
        api.display().to_string()
    );
    let cfg = ForecasterConfig::from_toml(&source, "t.toml").unwrap();
    assert!(cfg.auth.requires(TokenKind::Ingest));
    assert_eq!(
        cfg.auth.read_tokens(TokenKind::Ingest).unwrap(),
        ["0123456789abcdef-new", "0123456789abcdef-old"]
    );
    assert_eq!(
        cfg.auth.read_tokens(TokenKind::Api).unwrap(),
        ["api-token-0123456789"]
    );

    let none = ForecasterConfig::from_toml("", "t.toml").unwrap();
    assert!(!none.auth.requires(TokenKind::Ingest) && !none.auth.requires(TokenKind::Api));
    assert!(none.auth.read_tokens(TokenKind::Api).unwrap().is_empty());
}

#[test]
fn bad_token_sources_are_located_errors_that_never_quote_a_token() {
    let empty = token_file("empty", "\n# nothing yet\n");
    let short = token_file("short", "tiny-secret\n");
    let spaced = token_file("spaced", "a token with spaces in it\n");
    let missing = std::env::temp_dir().join("presage-config-auth-no-such-dir/token");
    let source = format!(
        "[server]\nhttp = \"127.0.0.1:9470\"\n\n[auth]\ningest_token_file = {:?}\napi_token_file = {:?}\n",
        empty.display().to_string(),
        missing.display().to_string(),
    );
    let got = problems(&source);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(
        got[0].starts_with("5:1: `auth.ingest_token_file`: ") && got[0].ends_with("holds no token"),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("6:1: `auth.api_token_file`: cannot read "),
        "{}",
        got[1]
    );

    let source = format!(
        "[auth]\ningest_token_file = {:?}\napi_token_file = {:?}\n",
        short.display().to_string(),
        spaced.display().to_string(),
    );
    let got = problems(&source);
    assert_eq!(got.len(), 2, "{got:#?}");
    assert!(got[0].contains("line 1: a token must be at least 16 characters"));
    assert!(got[1].contains("line 1: a token may only hold visible ASCII"));
    for p in &got {
        assert!(
            !p.contains("tiny-secret") && !p.contains("spaces in it"),
            "{p}"
        );
    }

    let got = problems(
        "[auth]\napi_token_env = \"PRESAGE_TEST_NO_SUCH_VARIABLE_42\"\ningest_token_env = \"\"\n",
    );
    assert_eq!(
        got,
        [
            "2:1: `auth.api_token_env`: environment variable `PRESAGE_TEST_NO_SUCH_VARIABLE_42` is not set (or not valid UTF-8)",
            "3:1: `auth.ingest_token_env`: must not be empty",
        ]
    );

    let both = format!(
        "[auth]\ningest_token_file = {:?}\ningest_token_env = \"X\"\n",
        short.display().to_string()
    );
    assert_eq!(
        problems(&both),
        ["3:1: `auth.ingest_token_env`: set `ingest_token_file` or `ingest_token_env`, not both"]
    );
    assert!(
        problems("[auth]\ntoken = \"inline\"\n")[0].contains("unknown field `token`"),
        "inline tokens are refused"
    );
}

/// PEM files in a fresh directory: a CA (`ca.pem`), a certificate it signed for 127.0.0.1
/// (`cert.pem`, `key.pem`), and the key of another certificate (`other-key.pem`).
fn pem_files() -> tempfile::TempDir {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let other = KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("other-key.pem"), other.serialize_pem()).unwrap();
    dir
}

#[test]
fn tls_files_are_read_and_checked_when_loading() {
    let dir = pem_files();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let cfg = ForecasterConfig::from_toml(
        &format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nreload_interval = \"5s\"\n",
            p("cert.pem"),
            p("key.pem"),
            p("ca.pem")
        ),
        "t.toml",
    )
    .unwrap();
    assert!(cfg.tls.enabled());
    assert_eq!(cfg.tls.reload_interval, Duration::from_secs(5));
    let material = cfg.tls.load().unwrap().expect("TLS is on");
    assert_eq!(material.certified_key.cert.len(), 1);
    assert_eq!(material.client_roots.map(|r| r.len()), Some(1));

    let off = ForecasterConfig::from_toml("", "t.toml").unwrap();
    assert!(!off.tls.enabled());
    assert_eq!(off.tls.reload_interval, Duration::from_secs(30));
    assert!(off.tls.load().unwrap().is_none());
}

#[test]
fn tls_problems_are_located() {
    let dir = pem_files();
    let p = |name: &str| dir.path().join(name).display().to_string();

    // A missing certificate and a CA file that holds no certificate.
    let got = problems(&format!(
        "[server]\nhttp = \"127.0.0.1:9470\"\n\n[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
        p("missing.pem"),
        p("key.pem"),
        p("key.pem"),
    ));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("5:1: `tls.cert_file`: cannot read ") && got[0].contains("missing.pem"),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("7:1: `tls.client_ca_file`: ") && got[1].contains("no certificate"),
        "{}",
        got[1]
    );

    // A key that belongs to another certificate.
    let got = problems(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        p("cert.pem"),
        p("other-key.pem"),
    ));
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("3:1: `tls.key_file`: ")
            && got[0].ends_with(&format!(
                "this key does not belong to the certificate in {}",
                p("cert.pem")
            )),
        "{}",
        got[0]
    );

    // A certificate given as the key, and a file that is not PEM at all.
    std::fs::write(
        dir.path().join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n",
    )
    .unwrap();
    let got = problems(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
        p("garbage.pem"),
        p("cert.pem"),
    ));
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        got[0].starts_with("2:1: `tls.cert_file`: ") && got[0].contains("invalid PEM"),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("3:1: `tls.key_file`: ") && got[1].contains("no private key"),
        "{}",
        got[1]
    );

    // Half a pair, a client CA without TLS, a reload interval out of bounds.
    assert_eq!(
        problems(&format!("[tls]\ncert_file = {:?}\n", p("cert.pem"))),
        ["2:1: `tls.cert_file`: needs `tls.key_file` too"]
    );
    assert_eq!(
        problems(&format!("[tls]\nkey_file = {:?}\n", p("key.pem"))),
        ["2:1: `tls.key_file`: needs `tls.cert_file` too"]
    );
    assert_eq!(
        problems(&format!("[tls]\nclient_ca_file = {:?}\n", p("ca.pem"))),
        [
            "2:1: `tls.client_ca_file`: needs `tls.cert_file` and `tls.key_file`: client \
             certificates are only asked for over TLS"
        ]
    );
    let got = problems(&format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\nreload_interval = \"0s\"\n",
        p("cert.pem"),
        p("key.pem"),
    ));
    assert_eq!(
        got,
        ["4:1: `tls.reload_interval`: must be between 1s and 1day, got 0s"]
    );
    assert!(problems("[tls]\ncertificate = \"x\"\n")[0].contains("unknown field `certificate`"));
}

#[test]
fn agent_client_certificates_are_checked_when_loading() {
    let dir = pem_files();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let agent = |body: String| {
        AgentConfig::from_toml(&format!("[agent]\n{body}"), "a.toml").map_err(|e| {
            e.problems
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        })
    };
    let cfg = agent(format!(
        "endpoint = \"https://127.0.0.1:4317\"\ntls_ca_file = {:?}\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        p("ca.pem"),
        p("cert.pem"),
        p("key.pem")
    ))
    .unwrap();
    assert_eq!(
        cfg.agent.tls_cert_file.as_deref(),
        Some(dir.path().join("cert.pem").as_path())
    );

    let got = agent(format!(
        "endpoint = \"https://127.0.0.1:4317\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        p("cert.pem"),
        p("other-key.pem")
    ))
    .unwrap_err();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("4:1: `agent.tls_key_file`: ") && got[0].contains("does not belong"),
        "{}",
        got[0]
    );
    let got = agent(format!(
        "endpoint = \"http://127.0.0.1:4317\"\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        p("cert.pem"),
        p("key.pem")
    ))
    .unwrap_err();
    assert!(
        got.len() == 1
            && got[0].starts_with("3:1: `agent.tls_cert_file`: ")
            && got[0].contains("https://"),
        "{got:?}"
    );
    let got = agent(format!(
        "endpoint = \"https://127.0.0.1:4317\"\ntls_cert_file = {:?}\n",
        p("cert.pem")
    ))
    .unwrap_err();
    assert_eq!(
        got,
        ["3:1: `agent.tls_cert_file`: needs `agent.tls_key_file` too"]
    );
}

#[test]
fn the_memory_limit_is_auto_none_or_a_size_with_room_below_it() {
    let l = ForecasterConfig::default().limits;
    assert_eq!(l.memory_limit, MemoryLimit::Auto);
    assert_eq!(l.memory_spike_limit, None);
    // 20% of the limit is kept for work in flight unless set.
    assert_eq!(l.memory_bounds(1000 << 20), Ok((1000 << 20, 800 << 20)));

    let cfg = ForecasterConfig::from_toml(
        "[limits]\nmemory_limit = \"1GiB\"\nmemory_spike_limit = \"100MiB\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        cfg.limits.memory_limit,
        MemoryLimit::Fixed(ByteSize::mib(1024))
    );
    assert_eq!(
        cfg.limits.memory_bounds(1 << 30),
        Ok((1 << 30, (1024 - 100) << 20))
    );
    let cfg = ForecasterConfig::from_toml("[limits]\nmemory_limit = \"none\"\n", "t.toml").unwrap();
    assert_eq!(cfg.limits.memory_limit, MemoryLimit::None);

    assert_eq!(
        problems("[limits]\nmemory_limit = \"16MiB\"\n"),
        vec!["2:1: `limits.memory_limit`: must be at least 32MiB, or `none`".to_string()]
    );
    assert_eq!(
        problems("[limits]\nmemory_limit = \"64MiB\"\nmemory_spike_limit = \"64MiB\"\n"),
        vec![
            "3:1: `limits.memory_spike_limit`: limits.memory_spike_limit (64MiB) must be below \
             the memory limit (64MiB)"
                .to_string()
        ]
    );
    assert_eq!(
        problems("[limits]\nmemory_limit = \"none\"\nmemory_spike_limit = \"1MiB\"\n"),
        vec![
            "3:1: `limits.memory_spike_limit`: has no effect with limits.memory_limit = \"none\""
                .to_string()
        ]
    );
    let err = ForecasterConfig::from_toml("[limits]\nmemory_limit = \"plenty\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("`auto`"), "{err}");
}

#[test]
fn significant_digits_default_to_exact_and_are_bounded() {
    assert_eq!(ForecasterConfig::default().storage.significant_digits, 0);
    let cfg = ForecasterConfig::from_toml("[storage]\nsignificant_digits = 7\n", "t.toml").unwrap();
    assert_eq!(cfg.storage.significant_digits, 7);
    assert_eq!(
        problems("[storage]\nsignificant_digits = 16\n"),
        vec![
            "2:1: `storage.significant_digits`: must be at most 15 (a 64-bit float holds 15 to \
             17), or 0 to keep values exact"
                .to_string()
        ]
    );
}

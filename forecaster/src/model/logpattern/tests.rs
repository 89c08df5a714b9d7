use std::collections::HashSet;

use super::mask::{Token, mask_line};
use super::*;
use crate::test_rng::Rng;

fn masked(line: &str) -> String {
    let mut buf = String::new();
    let mut tokens: Vec<Token> = Vec::new();
    mask_line(line, &mut buf, &mut tokens);
    tokens
        .iter()
        .map(|t| &buf[t.start as usize..t.end as usize])
        .collect::<Vec<_>>()
        .join(" ")
}

fn miner() -> PatternMiner {
    PatternMiner::new(MinerConfig::default())
}

/// Feeds `lines` to `service` and returns the distinct template ids, in order of first sight.
fn ids_of(m: &mut PatternMiner, service: &str, lines: &[&str]) -> Vec<TemplateId> {
    let mut ids = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let o = m.observe(service, Severity::Info, line, i as i64);
        if !ids.contains(&o.template_id) {
            ids.push(o.template_id);
        }
    }
    ids
}

fn text(m: &PatternMiner, id: TemplateId) -> String {
    m.get(id)
        .map(|t| t.template.to_string())
        .unwrap_or_default()
}

#[test]
fn masks_variable_fields() {
    let cases = [
        (
            "user 4411 logged in from 10.0.0.7 in 35ms",
            "user <NUM> logged in from <IP> in <DURATION>",
        ),
        (
            "req 550e8400-e29b-41d4-a716-446655440000 took 1.5s",
            "req <UUID> took <DURATION>",
        ),
        (
            "connect to 10.1.2.3:5432 failed after 3m",
            "connect to <IP> failed after <DURATION>",
        ),
        (
            "timeout 1h30m elapsed 250µs",
            "timeout <DURATION> elapsed <DURATION>",
        ),
        (
            "peer [2001:db8::1]:443 and fe80::1%eth0",
            "peer [<IP>]:<NUM> and <IP>%eth0",
        ),
        ("addr ::1 ok", "addr <IP> ok"),
        ("ptr=0x7f3a9c00 sha 5d78c9869d12", "ptr=<HEX> sha <HEX>"),
        ("id=-1 delta +0000]", "id=<NUM> delta <NUM>]"),
        ("read 512KB of 10GiB", "read <NUM>KB of <NUM>GiB"),
        ("at 2024-03-12T10:00:00.123Z ok", "at <TS> ok"),
        ("on 2024-03-12 10:00:00,123 ok", "on <TS> <TS> ok"),
        (
            "[12/Mar/2024:10:00:00 +0000]",
            "[<NUM>/Mar/<NUM>:<TS> <NUM>]",
        ),
        ("mail to ops.team+x@example.com.", "mail to <EMAIL>."),
        ("key='a b c' other=\"x\"", "key=<STR> other=<STR>"),
        (
            "GET /api/v1/users/42/orders",
            "GET /api/v1/users/<NUM>/orders",
        ),
        ("version 1.2.3 of lib", "version <NUM>.<NUM> of lib"),
        // Words with digits inside stay as they are (the tree treats them as variable).
        ("sha256 v2 I0312 pod-7f9c", "sha256 v2 I0312 pod-7f9c"),
        // Apostrophes are not quotes; an unclosed quote is literal.
        ("don't stop it's fine", "don't stop it's fine"),
        ("bad \"quote here", "bad \"quote here"),
        // Words made of hex letters, and C++ paths, are not addresses.
        ("add::bad std::vector decade", "add::bad std::vector decade"),
        // A quoted key is kept, its value masked.
        (
            "event={\"ID\":\"abc\",\"n\":3}",
            "event={\"ID\":<STR>,\"n\":<NUM>}",
        ),
    ];
    for (line, want) in cases {
        assert_eq!(masked(line), want, "masking {line:?}");
    }
}

#[test]
fn a_quoted_message_that_opens_the_line_is_kept() {
    assert_eq!(
        masked("\"SyncLoop ADD\" source=\"api\""),
        "\"SyncLoop ADD\" source=<STR>"
    );
    assert_eq!(
        masked(
            "I0312 10:00:01.123456    2211 kubelet.go:2430] \"SyncLoop ADD\" source=\"api\" pods=[\"default/web-1\"]"
        ),
        "I0312 <TS> <NUM> kubelet.go:<NUM>] \"SyncLoop ADD\" source=<STR> pods=[<STR>]"
    );
}

#[test]
fn app_log_fields_do_not_make_new_templates() {
    let mut m = miner();
    let lines = [
        "user 4411 logged in from 10.0.0.7 in 35ms",
        "user 17 logged in from 192.168.1.20 in 1.2s",
        "user 900001 logged in from 10.12.0.254:51522 in 3m",
        "user 5 logged in from 2001:db8::7 in 250us",
    ];
    let ids = ids_of(&mut m, "auth", &lines);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        text(&m, ids[0]),
        "user <NUM> logged in from <IP> in <DURATION>"
    );
    // Host names are not masked, so they generalise the template instead.
    let o = m.observe(
        "auth",
        Severity::Info,
        "user 12 logged in from gw-eu in 9ms",
        9,
    );
    assert!(!o.is_new && o.generalised);
    assert_eq!(o.template_id, ids[0]);
    assert_eq!(&*o.template, "user <NUM> logged in from <*> in <DURATION>");
}

#[test]
fn nginx_access_lines_share_a_template() {
    let mut m = miner();
    let lines = [
        r#"10.0.0.7 - - [12/Mar/2024:10:00:00 +0000] "GET /api/users/123 HTTP/1.1" 200 512 "-" "Mozilla/5.0 (X11; Linux x86_64)""#,
        r#"172.16.4.21 - - [12/Mar/2024:10:00:01 +0000] "GET /api/users/99812 HTTP/1.1" 200 1024 "https://example.com/" "curl/8.5.0""#,
        r#"10.0.3.9 - - [13/Mar/2024:23:59:59 +0100] "GET /api/users/7 HTTP/2.0" 404 0 "-" "kube-probe/1.29""#,
        r#"192.168.0.2 - - [13/Mar/2024:00:00:00 +0000] "GET /api/users/55 HTTP/1.1" 500 12 "-" "Go-http-client/1.1""#,
    ];
    let ids = ids_of(&mut m, "nginx", &lines);
    assert_eq!(ids.len(), 1, "{:?}", m.templates().collect::<Vec<_>>());
    assert_eq!(
        text(&m, ids[0]),
        r#"<IP> - - [<NUM>/Mar/<NUM>:<TS> <NUM>] "GET /api/users/<NUM> HTTP/<NUM>" <NUM> <NUM> <STR> <STR>"#
    );
}

#[test]
fn java_stack_trace_is_known_by_its_header() {
    let mut m = miner();
    let a = "Exception in thread \"main\" java.lang.IllegalStateException: Connection pool exhausted after 30000ms\n\tat com.example.db.Pool.acquire(Pool.java:142)\n\tat com.example.App.main(App.java:17)";
    let b = "Exception in thread \"worker-7\" java.lang.IllegalStateException: Connection pool exhausted after 1.5s\n\tat com.example.db.Pool.acquire(Pool.java:142)";
    let c = "Exception in thread \"main\" java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null\n\tat com.example.User.name(User.java:30)";
    let ids = ids_of(&mut m, "billing", &[a, b]);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        text(&m, ids[0]),
        "Exception in thread <STR> java.lang.IllegalStateException: Connection pool exhausted after <DURATION>"
    );
    let o = m.observe("billing", Severity::Error, c, 3);
    assert!(o.is_new);
    // The sample keeps the trace, not just the header.
    let info = m.get(ids[0]).unwrap();
    assert!(info.samples[0].line.contains("Pool.java:142"));
}

#[test]
fn kubelet_lines() {
    let mut m = miner();
    let sync = [
        r#"I0312 10:00:01.123456    2211 kubelet.go:2430] "SyncLoop ADD" source="api" pods=["default/web-7d9f8c6b5-x2x9q"]"#,
        r#"I0312 10:00:09.000001    2211 kubelet.go:2430] "SyncLoop ADD" source="api" pods=["kube-system/coredns-5d78c9869d-abcde"]"#,
        r#"I0313 00:10:09.000001    2211 kubelet.go:2430] "SyncLoop ADD" source="file" pods=["kube-system/etcd-node-1"]"#,
    ];
    let crash = [
        r#"E0312 10:00:05.000001    2211 pod_workers.go:1294] "Error syncing pod, skipping" err="failed to \"StartContainer\" for \"app\" with CrashLoopBackOff" pod="default/web-7d9f8c6b5-x2x9q" podUID="5c1f8a9e-2b7d-4c1e-9f3a-0d8e7b6a5c4f""#,
        r#"E0312 10:01:05.500001    2211 pod_workers.go:1294] "Error syncing pod, skipping" err="failed to \"StartContainer\" for \"db\" with ImagePullBackOff" pod="default/db-0" podUID="0a1b2c3d-2b7d-4c1e-9f3a-0d8e7b6a5c4f""#,
    ];
    let probe = r#"I0312 10:00:02.000000    2211 prober.go:107] "Probe failed" probeType="Readiness" pod="default/web-7d9f8c6b5-x2x9q" podUID="5c1f8a9e-2b7d-4c1e-9f3a-0d8e7b6a5c4f" containerName="app" probeResult="failure" output="HTTP probe failed with statuscode: 503""#;
    let s = ids_of(&mut m, "kubelet", &sync);
    let c = ids_of(&mut m, "kubelet", &crash);
    let p = ids_of(&mut m, "kubelet", &[probe]);
    assert_eq!((s.len(), c.len(), p.len()), (1, 1, 1));
    assert_ne!(s[0], c[0]);
    assert_eq!(
        text(&m, s[0]),
        r#"<*> <TS> <NUM> kubelet.go:<NUM>] "SyncLoop ADD" source=<STR> pods=[<STR>]"#
    );
    assert_eq!(
        text(&m, c[0]),
        r#"E0312 <TS> <NUM> pod_workers.go:<NUM>] "Error syncing pod, skipping" err=<STR> pod=<STR> podUID=<STR>"#
    );
    // The day changes the klog header, not the template.
    assert_eq!(m.len(), 3);
}

#[test]
fn postgres_errors() {
    let mut m = miner();
    let missing = [
        r#"ERROR:  relation "users_archive" does not exist at character 15"#,
        r#"ERROR:  relation "public.orders_2023" does not exist at character 22"#,
    ];
    let dup = [
        r#"ERROR:  duplicate key value violates unique constraint "orders_pkey""#,
        r#"ERROR:  duplicate key value violates unique constraint "users_email_key""#,
    ];
    let detail = [
        "DETAIL:  Key (id)=(42) already exists.",
        "DETAIL:  Key (id)=(1000007) already exists.",
    ];
    let auth = [
        r#"FATAL:  password authentication failed for user "app""#,
        r#"FATAL:  password authentication failed for user "reporting""#,
    ];
    let deadlock = "ERROR:  deadlock detected";
    let mut all = Vec::new();
    for lines in [&missing[..], &dup, &detail, &auth, &[deadlock]] {
        let ids = ids_of(&mut m, "postgres", lines);
        assert_eq!(ids.len(), 1, "{lines:?}");
        all.push(ids[0]);
    }
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 5);
    assert_eq!(
        text(&m, all[0]),
        "ERROR: relation <STR> does not exist at character <NUM>"
    );
    assert_eq!(text(&m, all[2]), "DETAIL: Key (id)=(<NUM>) already exists.");
}

#[test]
fn key_value_tokens_keep_their_key() {
    let mut m = miner();
    let lines = [
        "LOG:  connection authorized: user=app database=orders application_name=psql",
        "LOG:  connection authorized: user=report database=orders application_name=metabase",
        "LOG:  connection authorized: user=app database=users application_name=psql",
    ];
    let ids = ids_of(&mut m, "postgres", &lines);
    assert_eq!(ids.len(), 1);
    assert_eq!(
        text(&m, ids[0]),
        "LOG: connection authorized: user=<*> database=<*> application_name=<*>"
    );
    // `key=<*>` covers any value of that key, not another key.
    let o = m.observe("postgres", Severity::Info, lines[0], 9);
    assert!(!o.generalised);
    let o = m.observe(
        "postgres",
        Severity::Info,
        "LOG:  connection authorized: user=app db=orders application_name=psql",
        10,
    );
    assert_eq!(
        &*o.template,
        "LOG: connection authorized: user=<*> <*> application_name=<*>"
    );
}

#[test]
fn different_messages_make_different_templates() {
    let mut m = miner();
    let lines = [
        "connection refused by upstream payments-api",
        "cache miss for key session:8812",
        "scheduled job cleanup finished in 35ms",
        "disk usage above 90% on /var",
        "received SIGTERM, shutting down",
        "TLS handshake error from 10.0.0.7:5544: EOF",
    ];
    let ids = ids_of(&mut m, "app", &lines);
    assert_eq!(ids.len(), lines.len());
    assert_eq!(m.len(), lines.len());
}

#[test]
fn new_template_is_reported_exactly_once() {
    let mut m = miner();
    let shapes = [
        "user {n} logged in from 10.0.{n}.7 in {n}ms",
        "order {n} shipped to warehouse {n}",
        "GET /api/items/{n} returned {n} bytes",
        "retrying request {n} after {n}s",
        "cache evicted {n} entries",
    ];
    let mut rng = Rng(7);
    let mut new = 0;
    for i in 0..2_000 {
        let shape = shapes[rng.below(shapes.len() as u64) as usize];
        let line = shape.replace("{n}", &rng.below(100_000).to_string());
        let o = m.observe("svc", Severity::Info, &line, i);
        new += usize::from(o.is_new);
        assert!(o.evicted.is_none());
    }
    assert_eq!(new, shapes.len());
    assert_eq!(m.len(), shapes.len());
    assert_eq!(m.templates().map(|t| t.count).sum::<u64>(), 2_000);
}

#[test]
fn ids_are_stable_as_templates_generalise() {
    let mut m = miner();
    let first = m.observe(
        "api",
        Severity::Info,
        "worker started task upload for alpha",
        1,
    );
    let later = m.observe(
        "api",
        Severity::Info,
        "worker started task download for beta",
        2,
    );
    assert!(later.generalised);
    assert_eq!(later.template_id, first.template_id);
    assert_eq!(&*later.template, "worker started task <*> for <*>");
    // The id is the hash of service and first form, shown as 16 hex digits.
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(b"api\xffworker started task upload for alpha");
    assert_eq!(first.template_id, TemplateId(h.digest()));
    let shown = first.template_id.to_string();
    assert_eq!(shown.len(), 16);
    assert_eq!(shown.parse::<TemplateId>(), Ok(first.template_id));
    assert_eq!(
        serde_json::to_value(first.template_id).unwrap(),
        serde_json::Value::String(shown)
    );
    // Another service mining the same line gets its own template.
    let other = m.observe(
        "batch",
        Severity::Info,
        "worker started task upload for alpha",
        3,
    );
    assert!(other.is_new);
    assert_ne!(other.template_id, first.template_id);
}

#[test]
fn eviction_keeps_templates_and_tree_bounded() {
    let config = MinerConfig {
        max_templates: 10,
        ..MinerConfig::default()
    };
    let mut m = PatternMiner::new(config);
    let keep = m.observe("svc", Severity::Warn, "the one template that stays warm", 0);
    let mut evicted = Vec::new();
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
    ];
    for i in 0..200u32 {
        // Distinct words in every position: each line is a new template.
        let line: Vec<String> = (0..5)
            .map(|k| format!("{}{}", words[((i + k) % 7) as usize], letters(i * 5 + k)))
            .collect();
        let o = m.observe(
            &format!("svc{}", i % 3),
            Severity::Info,
            &line.join(" "),
            i64::from(i),
        );
        assert!(o.is_new);
        evicted.extend(o.evicted);
        m.observe(
            "svc",
            Severity::Warn,
            "the one template that stays warm",
            i64::from(i),
        );
        assert!(m.len() <= 10);
        assert!(m.node_count() <= 10 * (config.depth + 1));
        m.check_invariants();
    }
    assert_eq!(m.len(), 10);
    assert_eq!(m.evictions(), evicted.len() as u64);
    assert_eq!(evicted.len(), 191);
    assert!(!evicted.contains(&keep.template_id));
    assert!(m.get(keep.template_id).is_some());
    for id in &evicted {
        assert!(m.get(*id).is_none());
    }
    // Evicting everything leaves an empty tree.
    let mut m = PatternMiner::new(MinerConfig {
        max_templates: 1,
        ..config
    });
    for i in 0..50u32 {
        let line = format!("{} {} {}", letters(i), letters(i + 100), letters(i + 200));
        m.observe("s", Severity::Info, &line, 0);
    }
    assert_eq!(m.len(), 1);
    assert_eq!(m.evictions(), 49);
    assert_eq!(m.node_count(), 1 + config.depth);
}

/// Letters only, distinct per `i` (digits would be masked or routed to the wildcard).
fn letters(mut i: u32) -> String {
    let mut s = String::new();
    loop {
        s.push(char::from(b'a' + (i % 26) as u8));
        i /= 26;
        if i == 0 {
            return s;
        }
    }
}

#[test]
fn children_per_node_are_capped() {
    let mut m = PatternMiner::new(MinerConfig {
        max_children: 4,
        ..MinerConfig::default()
    });
    for i in 0..100 {
        m.observe(
            "s",
            Severity::Info,
            &format!("{} did something", letters(i + 1000)),
            0,
        );
    }
    // One token-count node, 4 literal children and a wildcard, each with one more level.
    assert_eq!(m.node_count(), 1 + 5 * 2);
}

#[test]
fn severity_and_counts() {
    assert_eq!(Severity::from_otlp(9, "whatever"), Severity::Info);
    assert_eq!(Severity::from_otlp(1, ""), Severity::Debug);
    assert_eq!(Severity::from_otlp(13, ""), Severity::Warn);
    assert_eq!(Severity::from_otlp(17, ""), Severity::Error);
    assert_eq!(Severity::from_otlp(24, ""), Severity::Fatal);
    assert_eq!(Severity::from_otlp(0, "WARNING"), Severity::Warn);
    assert_eq!(Severity::from_otlp(0, "Error"), Severity::Error);
    assert_eq!(Severity::from_otlp(0, "WARN2"), Severity::Warn);
    assert_eq!(Severity::from_otlp(0, "crit"), Severity::Fatal);
    assert_eq!(Severity::from_otlp(0, "trace"), Severity::Debug);
    assert_eq!(Severity::from_otlp(0, ""), Severity::Info);
    assert_eq!(Severity::from_otlp(99, "nonsense"), Severity::Info);
    assert_eq!(serde_json::to_string(&Severity::Warn).unwrap(), "\"warn\"");

    let mut m = miner();
    let line = "payment 81 declined by issuer";
    let o = m.observe("pay", Severity::Info, line, 5_000);
    m.observe("pay", Severity::Error, line, 4_000);
    m.observe("pay", Severity::Warn, line, 9_000);
    m.observe("pay", Severity::Info, line, 7_000);
    let t = m.get(o.template_id).unwrap();
    assert_eq!(t.severity, Severity::Error);
    assert_eq!(t.count, 4);
    assert_eq!(
        t.counts,
        SeverityCounts {
            info: 2,
            warn: 1,
            error: 1,
            ..SeverityCounts::default()
        }
    );
    assert_eq!(t.counts.get(Severity::Info), 2);
    assert_eq!((t.first_seen_ms, t.last_seen_ms), (4_000, 9_000));
    assert_eq!(&*t.service, "pay");
}

#[test]
fn samples_are_few_distinct_and_short() {
    let mut m = PatternMiner::new(MinerConfig {
        max_sample_bytes: 20,
        ..MinerConfig::default()
    });
    let mut id = None;
    for i in 0..10 {
        // é is two bytes: byte 20 falls inside one, so the cut steps back to 19.
        let line = format!("{i} aéééééééééé x");
        let o = m.observe("s", Severity::Info, &line, i64::from(i));
        m.observe("s", Severity::Info, &line, i64::from(i));
        id = Some(o.template_id);
    }
    let t = m.get(id.unwrap()).unwrap();
    assert_eq!(t.count, 20);
    assert_eq!(t.samples.len(), 3);
    assert_eq!(t.samples[0].line, "0 aéééééééé");
    assert_eq!(t.samples[1].line, "1 aéééééééé");
    assert_eq!(t.samples[1].ts_ms, 1);
}

#[test]
fn odd_input_is_handled() {
    let mut m = miner();
    let empty = m.observe("s", Severity::Info, "", 0);
    let blank = m.observe("s", Severity::Info, "  \n\t\n", 0);
    assert_eq!(empty.template_id, blank.template_id);
    assert_eq!(&*empty.template, "");
    let long = "word ".repeat(100_000);
    let o = m.observe("s", Severity::Info, &long, 0);
    assert!(o.template.len() <= m.config().max_line_bytes);
    let t = m.get(o.template_id).unwrap();
    assert!(t.samples[0].line.len() <= 512);
    // Nothing panics on arbitrary mixes of the characters the scanners look at.
    let alphabet: Vec<char> = "0123456789abcdefxXT:.-+'\"\\@/[]{}=,µé中 \t\n"
        .chars()
        .collect();
    let mut rng = Rng(42);
    for i in 0..20_000 {
        let len = rng.below(40) as usize;
        let line: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let o = m.observe("fuzz", Severity::Info, &line, i);
        assert!(m.get(o.template_id).is_some());
        if i % 1_000 == 0 {
            m.check_invariants();
        }
    }
    m.check_invariants();
    assert!(m.len() <= m.config().max_templates);

    // The same with tight bounds, so that eviction and pruning run all the time.
    let mut m = PatternMiner::new(MinerConfig {
        max_templates: 40,
        max_leaf_templates: 3,
        max_children: 3,
        depth: 3,
        ..MinerConfig::default()
    });
    for i in 0..20_000 {
        let len = rng.below(25) as usize;
        let line: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        let service = ["a", "b", "c"][(i % 3) as usize];
        m.observe(service, Severity::Info, &line, i);
        if i % 97 == 0 {
            m.check_invariants();
        }
    }
    m.check_invariants();
    assert!(m.evictions() > 0);
}

#[test]
fn config_is_clamped() {
    let m = PatternMiner::new(MinerConfig {
        max_templates: 0,
        depth: 0,
        similarity: f64::NAN,
        max_children: 0,
        max_leaf_templates: 0,
        max_samples: 0,
        max_sample_bytes: 0,
        max_line_bytes: 0,
    });
    let c = m.config();
    assert_eq!((c.max_templates, c.depth, c.max_children), (1, 1, 1));
    assert_eq!(c.max_leaf_templates, 2);
    assert_eq!(c.similarity, 0.5);
    assert_eq!(c.max_line_bytes, 16);
}

#[test]
fn memory_grows_with_templates_not_lines() {
    let mut m = miner();
    for i in 0..1_000 {
        m.observe(
            "s",
            Severity::Info,
            &format!("user {i} logged in from 10.0.0.{} in {i}ms", i % 256),
            0,
        );
    }
    let one = m.memory_bytes();
    for i in 0..100_000 {
        let i = i % 1_000;
        m.observe(
            "s",
            Severity::Info,
            &format!("user {i} logged in from 10.0.0.{} in {i}ms", i % 256),
            0,
        );
    }
    assert_eq!(m.memory_bytes(), one);
    for i in 0..500u32 {
        m.observe(
            "s",
            Severity::Info,
            &format!("{} {} {}", letters(i), letters(i + 7), letters(i + 9)),
            0,
        );
    }
    let per = (m.memory_bytes() - one) / 500;
    assert!((100..4_000).contains(&per), "{per} bytes per template");
}

#[test]
fn a_leaf_holds_a_bounded_number_of_templates() {
    let mut m = PatternMiner::new(MinerConfig {
        max_leaf_templates: 5,
        ..MinerConfig::default()
    });
    let warm = "job runner kept warm here now";
    let first = m.observe("s", Severity::Info, warm, 0);
    for i in 0..100u32 {
        // The same routing tokens and token count, the rest different: one leaf.
        let rest: Vec<String> = (0..4).map(|k| letters(1_000 + i * 4 + k)).collect();
        let o = m.observe(
            "s",
            Severity::Info,
            &format!("job runner {}", rest.join(" ")),
            0,
        );
        assert!(o.is_new);
        m.observe("s", Severity::Info, warm, 0);
        m.check_invariants();
    }
    assert_eq!(m.len(), 5);
    assert_eq!(m.evictions(), 96);
    assert!(m.get(first.template_id).is_some());
}

//! Log templates from a tailed file, end to end: the real `presage-agent` binary tails a log file
//! and ships its lines over OTLP/gRPC to a forecaster started here, which mines them into
//! templates. Request ids, user ids, addresses and durations are masked instead of making new
//! templates; an ERROR line of a new shape written after the warm-up becomes a template of its
//! own and a `NewErrorLogPattern` alert; lines written after a rename-and-create rotation (late
//! ones to the renamed file by its old writer, new ones to the new file) are mined too, once.
//!
//! The forecaster runs on its defaults: a new pattern moves event time itself, so the alert
//! comes at once on a fresh daemon that has no baseline yet.
//!
//! The agent binary is not a dependency of this crate: it is found beside this crate's `presage`
//! binary in the target directory. Builds of the whole workspace make it (`cargo build
//! --workspace`; `cargo nextest run --workspace` and `cargo test --workspace`, for the agent's
//! own integration tests); to run this test alone, build it first with `cargo build -p
//! presage-agent`. The test fails when the binary is missing.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// `service.name` of the tailed file.
const SERVICE: &str = "checkout";
/// `host.name` the agent reports.
const HOST: &str = "web-7";
/// Event time the forecaster watches a service before a new template counts as new.
const WARMUP: Duration = Duration::from_secs(2);
/// How long lines may take from the file to the template list.
const MINED_WITHIN: Duration = Duration::from_secs(30);
/// How long a new error pattern may take from the file to an alert.
const ALERTED_WITHIN: Duration = Duration::from_secs(60);

// The template of each kind of line written, as the forecaster should mine it.
const REQUEST: &str = "<TS> INFO request <UUID> completed in <DURATION>";
const LOGIN: &str = "<TS> INFO user <NUM> logged in from <IP> in <DURATION>";
const ORDERS: &str = "<TS> INFO GET /api/orders/<NUM> from <IP> took <DURATION>";
const REJECTED: &str = "<TS> ERROR payment provider rejected charge <UUID> for user <NUM> with code <HEX>: issuer unavailable";

/// Lines written to the tailed file, by template, in the order written.
#[derive(Default)]
struct Written {
    lines: BTreeMap<&'static str, Vec<String>>,
    /// Distinct values for the variable fields of every line.
    n: u64,
}

impl Written {
    fn next(&mut self, template: &'static str) -> String {
        self.n += 1;
        let n = self.n;
        let ts = humantime::format_rfc3339_millis(SystemTime::now());
        let uuid = format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            0x5f3a_0000 + n * 7_919,
            (n * 31) & 0xffff,
            n % 4_096,
            (n * 7) % 4_096,
            0x1b2c_0000_0000 + n * 104_729
        );
        let duration = if n.is_multiple_of(5) {
            format!("{}.{}s", n % 3 + 1, n % 10)
        } else {
            format!("{}ms", 3 + (n * 37) % 900)
        };
        let ip = format!("10.{}.{}.{}", n % 4, (n * 3) % 200, (n * 7) % 250 + 1);
        let line = match template {
            REQUEST => format!("{ts} INFO request {uuid} completed in {duration}"),
            LOGIN => format!(
                "{ts} INFO user {} logged in from {ip} in {duration}",
                1_000 + n * 17
            ),
            ORDERS => format!(
                "{ts} INFO GET /api/orders/{} from {ip}:{} took {duration}",
                50_000 + n * 3,
                40_000 + n % 20_000
            ),
            REJECTED => format!(
                "{ts} ERROR payment provider rejected charge {uuid} for user {} with code 0x{:04x}: issuer unavailable",
                1_000 + n * 17,
                0xe1 + n % 16
            ),
            other => panic!("no line for {other}"),
        };
        self.lines.entry(template).or_default().push(line.clone());
        line
    }

    /// `count` lines, taking the templates in turn.
    fn batch(&mut self, templates: &[&'static str], count: usize) -> Vec<String> {
        (0..count)
            .map(|i| self.next(templates[i % templates.len()]))
            .collect()
    }

    fn total(&self) -> u64 {
        self.lines.values().map(|l| l.len() as u64).sum()
    }

    /// Template → lines written.
    fn counts(&self) -> BTreeMap<String, u64> {
        self.lines
            .iter()
            .map(|(t, l)| (t.to_string(), l.len() as u64))
            .collect()
    }

    /// The first three lines of a template: the samples the forecaster keeps.
    fn samples(&self, template: &str) -> Vec<String> {
        self.lines[template].iter().take(3).cloned().collect()
    }
}

/// Appends `lines` to `path` (creating it) the way a logger does, one write per line.
fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open the log file");
    for l in lines {
        f.write_all(format!("{l}\n").as_bytes())
            .expect("write a log line");
    }
}

fn agent_config(dir: &Path, logs: &Path, otlp_grpc: SocketAddr) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"[agent]
endpoint = "http://{otlp_grpc}"
state_dir = "{state}"
host_name = "{HOST}"
telemetry = "127.0.0.1:0"
retry_initial_backoff = "50ms"
retry_max_backoff = "1s"

[host]
enabled = false

[[logs]]
paths = ["{logs}/*.log"]
service_name = "{SERVICE}"
start_at = "beginning"
poll_interval = "100ms"
rotate_wait = "5s"
"#,
            state = dir.join("state").display(),
            logs = logs.display(),
        ),
    )
    .expect("write the agent config");
    path
}

/// The agent as a child process, killed when dropped (also when the test panics).
fn start_agent(program: &Path, dir: &Path, config: &Path) -> Peer {
    let log = dir.join("presage-agent.log");
    let file = std::fs::File::create(&log).expect("agent log file");
    let mut cmd = Command::new(program);
    cmd.arg("--config")
        .arg(config)
        .current_dir(dir)
        .env("PRESAGE_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file);
    // Resource attributes come from the config file only.
    for var in [
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "K8S_POD_NAME",
        "POD_NAME",
        "K8S_NAMESPACE_NAME",
        "K8S_POD_NAMESPACE",
        "POD_NAMESPACE",
        "K8S_NODE_NAME",
        "NODE_NAME",
        "K8S_POD_UID",
        "POD_UID",
        "K8S_CONTAINER_NAME",
        "CONTAINER_NAME",
        "PRESAGE_AGENT_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Peer {
        child,
        log,
        name: "presage-agent".to_string(),
    }
}

/// The templates of the service.
async fn patterns(client: &reqwest::Client, http: SocketAddr) -> Vec<Value> {
    get_json(
        client,
        &format!("http://{http}/api/v1/log-patterns?service={SERVICE}"),
    )
    .await
    .and_then(|v| v["data"].as_array().cloned())
    .unwrap_or_default()
}

/// Polls the template list until it holds `total` lines (failing early if the agent exits).
async fn mined(
    client: &reqwest::Client,
    http: SocketAddr,
    agent: &RefCell<Peer>,
    total: u64,
    what: &str,
) -> Vec<Value> {
    let what = format!(
        "{what}: {total} lines mined (agent log: {})",
        agent.borrow().log.display()
    );
    eventually(MINED_WITHIN, &what, || async {
        agent.borrow_mut().assert_running();
        let list = patterns(client, http).await;
        let lines: u64 = list.iter().filter_map(|p| p["count"].as_u64()).sum();
        (lines >= total).then_some(list)
    })
    .await
}

fn counts(list: &[Value]) -> BTreeMap<String, u64> {
    list.iter()
        .map(|p| {
            (
                p["template"].as_str().unwrap_or("?").to_string(),
                p["count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

fn find<'a>(list: &'a [Value], template: &str) -> &'a Value {
    list.iter()
        .find(|p| p["template"] == template)
        .unwrap_or_else(|| panic!("no template `{template}` in {list:#?}"))
}

/// Checks every template against what was written: exact counts (so variable fields made no
/// template of their own, and no line was mined twice), the service, the severity, and the
/// first three lines written as samples.
fn assert_matches(list: &[Value], written: &Written, agent: &RefCell<Peer>) {
    assert_eq!(
        counts(list),
        written.counts(),
        "templates and line counts\n{list:#?}\nagent:\n{}",
        agent.borrow().output()
    );
    for (template, lines) in &written.lines {
        let p = find(list, template);
        assert_eq!(p["service"], SERVICE, "{p:#}");
        let severity = if *template == REJECTED {
            "error"
        } else {
            "info"
        };
        assert_eq!(p["severity"], severity, "{p:#}");
        assert_eq!(p["counts"][severity], lines.len() as u64, "{p:#}");
        let samples: Vec<&str> = p["samples"]
            .as_array()
            .map(|s| s.iter().filter_map(|s| s["line"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(samples, written.samples(template), "{p:#}");
        assert!(
            p["first_seen_ms"].as_i64() <= p["last_seen_ms"].as_i64(),
            "{p:#}"
        );
    }
}

/// What the daemon says about alerting, for a failure message.
async fn alerting_state(client: &reqwest::Client, http: SocketAddr) -> String {
    let alerts = match client
        .get(format!("http://{http}/api/v1/alerts"))
        .send()
        .await
    {
        Ok(res) => format!("{} {}", res.status(), res.text().await.unwrap_or_default()),
        Err(e) => e.to_string(),
    };
    let metrics = metrics_text(client, http).await.unwrap_or_default();
    let counters: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            [
                "presage_log_new_patterns_total",
                "presage_alert_signals_total",
                "presage_alerts{",
                "presage_steps_scored_total",
                "presage_fits_queued_total",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect();
    format!("GET /api/v1/alerts: {alerts}\n{}", counters.join("\n"))
}

/// The `NewErrorLogPattern` alerts listed by the API.
async fn new_pattern_alerts(client: &reqwest::Client, http: SocketAddr) -> Option<Vec<Value>> {
    let v = get_json(client, &format!("http://{http}/api/v1/alerts")).await?;
    Some(
        v["data"]
            .as_array()?
            .iter()
            .filter(|a| a["labels"]["alertname"] == "NewErrorLogPattern")
            .cloned()
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailed_lines_become_templates_and_a_new_error_pattern_alerts() {
    let program = agent_binary();
    let mut cfg = test_config();
    cfg.logs.warmup = WARMUP;
    let running = start(cfg).await;
    let http = running.http;
    let client = client();

    let dir = scratch_dir();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let log = logs.join(format!("{SERVICE}.log"));
    let config = agent_config(&dir, &logs, running.otlp_grpc);
    let agent = RefCell::new(start_agent(&program, &dir, &config));
    let mut written = Written::default();

    // Phase 1, the warm-up: ordinary traffic at INFO, every id, address and duration new.
    let lines = written.batch(&[REQUEST, REQUEST, REQUEST, LOGIN, LOGIN, ORDERS], 60);
    append(&log, &lines);
    let list = mined(&client, http, &agent, written.total(), "ordinary traffic").await;
    assert_matches(&list, &written, &agent);
    let expected: BTreeMap<String, u64> = [(REQUEST, 30), (LOGIN, 20), (ORDERS, 10)]
        .into_iter()
        .map(|(t, n)| (t.to_string(), n))
        .collect();
    assert_eq!(counts(&list), expected);
    // The service was first seen with its first line: the earliest first-seen time.
    let service_first_seen = list
        .iter()
        .filter_map(|p| p["first_seen_ms"].as_i64())
        .min()
        .expect("first-seen times");
    assert!(
        service_first_seen <= now_ms(),
        "first seen {service_first_seen} is in the future"
    );

    // The agent stamps lines with the time it reads them: once the warm-up has passed on the
    // clock, every line written from now on is past it in event time too.
    let warm_at = service_first_seen + WARMUP.as_millis() as i64;
    eventually(Duration::from_secs(10), "the warm-up to pass", || async {
        (now_ms() > warm_at).then_some(())
    })
    .await;

    // Phase 2: a new ERROR pattern amid more ordinary traffic.
    let before_error = now_ms();
    let mut lines = written.batch(&[REQUEST], 2);
    lines.push(written.next(REJECTED));
    lines.extend(written.batch(&[REQUEST], 3));
    lines.push(written.next(REJECTED));
    append(&log, &lines);
    let list = mined(
        &client,
        http,
        &agent,
        written.total(),
        "a new error pattern",
    )
    .await;
    let seen_by = now_ms();
    assert_matches(&list, &written, &agent);
    let error = find(&list, REJECTED).clone();
    let first_seen = error["first_seen_ms"].as_i64().expect("first_seen_ms");
    assert!(
        (before_error..=seen_by).contains(&first_seen),
        "first seen {first_seen} outside [{before_error}, {seen_by}]: {error:#}"
    );
    assert!(first_seen >= warm_at, "{first_seen} is inside the warm-up");
    let error_id = error["id"].as_str().expect("template id").to_string();
    // The miner reported it as new, once.
    let metrics = metrics_text(&client, http).await.expect("metrics");
    assert_eq!(
        sample_value(&metrics, "presage_log_new_patterns_total "),
        Some(1.0),
        "{metrics}"
    );

    // One alert, for the error template, with its service, host, template, first-seen time and
    // first line. Ordinary traffic goes on meanwhile.
    let started = Instant::now();
    let reported = Cell::new(false);
    let alerts = eventually(ALERTED_WITHIN, "a NewErrorLogPattern alert", || {
        append(&log, &[written.next(REQUEST)]);
        async {
            let alerts = new_pattern_alerts(&client, http)
                .await
                .filter(|l| !l.is_empty());
            if alerts.is_none() && !reported.get() && started.elapsed() > ALERTED_WITHIN / 2 {
                reported.set(true);
                eprintln!(
                    "no NewErrorLogPattern alert after {:?}:\n{}",
                    started.elapsed(),
                    alerting_state(&client, http).await
                );
            }
            alerts
        }
    })
    .await;
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let alert = &alerts[0];
    assert_eq!(
        alert["labels"]["template_id"],
        error_id.as_str(),
        "{alert:#}"
    );
    assert_eq!(alert["labels"]["service"], SERVICE, "{alert:#}");
    assert_eq!(alert["labels"]["host_name"], HOST, "{alert:#}");
    // Active since the first error line, and fired at once.
    assert_eq!(alert["active_since_ms"], first_seen, "{alert:#}");
    assert!(alert["fired_at_ms"].as_i64().is_some(), "{alert:#}");
    let text = alert.to_string();
    assert!(text.contains(REJECTED), "no template in {alert:#}");
    assert!(
        text.contains(&written.lines[REJECTED][0]),
        "no sample line in {alert:#}"
    );
    let first_seen_text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(first_seen as u64))
            .to_string();
    assert!(
        text.contains(&first_seen_text),
        "no first-seen {first_seen_text} in {alert:#}"
    );

    // Phase 3, rename-and-create rotation: the old writer still has the renamed file open and
    // writes its last lines there; the new file under the old name gets the rest.
    let mut old_writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log file");
    std::fs::rename(&log, logs.join(format!("{SERVICE}.log.1"))).expect("rotate");
    let rotated_at = now_ms();
    for l in written.batch(&[LOGIN], 2) {
        old_writer
            .write_all(format!("{l}\n").as_bytes())
            .expect("write a late line");
    }
    drop(old_writer);
    let lines = written.batch(&[REQUEST, ORDERS, REJECTED, REQUEST, ORDERS, REQUEST], 9);
    append(&log, &lines);
    let list = mined(
        &client,
        http,
        &agent,
        written.total(),
        "lines after rotation",
    )
    .await;
    assert_matches(&list, &written, &agent);
    let error = find(&list, REJECTED);
    assert_eq!(error["id"], error_id.as_str(), "{error:#}");
    assert_eq!(error["first_seen_ms"], first_seen, "{error:#}");
    assert!(
        error["last_seen_ms"].as_i64() >= Some(rotated_at),
        "{error:#}"
    );
    assert!(
        find(&list, LOGIN)["last_seen_ms"].as_i64() >= Some(rotated_at),
        "the late lines in the renamed file"
    );

    // The same error pattern again is not new.
    let metrics = metrics_text(&client, http).await.expect("metrics");
    assert_eq!(
        sample_value(&metrics, "presage_log_new_patterns_total "),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample_value(&metrics, "presage_log_templates "),
        Some(4.0),
        "{metrics}"
    );
    let alerts = new_pattern_alerts(&client, http).await.expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");

    agent.borrow_mut().assert_running();
    drop(agent);
    running.shutdown().await.expect("clean shutdown");
}

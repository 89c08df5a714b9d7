//! Backfill from Debian's Prometheus. Three days of a seasonal gauge (two series, one sample a
//! minute, ending a minute ago) are written as OpenMetrics, turned into TSDB blocks by
//! `promtool tsdb create-blocks-from openmetrics`, and served by a real Prometheus. Presage
//! pulls them through `/api/v1/series` and `/api/v1/query_range`: with the `presage backfill`
//! binary into a running daemon, and with a `[[backfill]]` entry at the daemon's start-up. The
//! stored history must equal the source step for step, and the models must become ready from
//! it. Bad sources fail with a clear message and a non-zero exit status.

mod common;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use presage_config::BackfillConfig;
use serde_json::Value;

const INSTALL: &str = "apt-get install -y prometheus";
const METRIC: &str = "bf_room_temperature_celsius";
const SITES: [&str; 2] = ["north", "south"];
const DAYS: i64 = 3;
const STEP_S: i64 = 60;

/// The source's value of series `site` at `t_s`: a daily cycle, a six-hour harmonic, a
/// per-series level and a deterministic minute-to-minute wiggle.
fn value(site: usize, t_s: i64) -> f64 {
    let day = std::f64::consts::TAU * t_s as f64 / 86_400.0;
    let level = [20.0, 35.0][site];
    let wiggle = ((t_s / STEP_S) as f64 * 0.7).sin() * 0.3;
    level + 5.0 * day.sin() + 1.5 * (4.0 * day).cos() + wiggle
}

/// A Prometheus serving three days of history, ending at `last_s`.
struct HistorySource {
    _peer: Peer,
    url: String,
    first_s: i64,
    last_s: i64,
    _dir: tempfile::TempDir,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Starts Debian's Prometheus on `data` (a TSDB directory) and waits for `/-/ready`.
async fn start_prometheus(dir: &Path, data: &Path) -> (Peer, String) {
    let prometheus = require_program("prometheus", INSTALL);
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").expect("write prometheus.yml");
    let port = free_port();
    let mut peer = Peer::spawn(
        "prometheus",
        &prometheus,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.tsdb.path={}", data.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ],
        dir,
    );
    let url = format!("http://127.0.0.1:{port}");
    let client = client();
    let ready = format!("{url}/-/ready");
    eventually(Duration::from_secs(60), "Prometheus /-/ready", || {
        peer.assert_running();
        let client = client.clone();
        let ready = ready.clone();
        async move {
            let res = client.get(&ready).send().await.ok()?;
            res.status().is_success().then_some(())
        }
    })
    .await;
    (peer, url)
}

impl HistorySource {
    async fn start() -> Self {
        let promtool = require_program("promtool", INSTALL);
        let dir = tempfile::tempdir().expect("temp dir");
        // Whole minutes, the newest one minute ago.
        let last_s = (now_s() / STEP_S) * STEP_S - STEP_S;
        let first_s = last_s - DAYS * 86_400 + STEP_S;
        let mut text = String::with_capacity(1 << 20);
        text.push_str(&format!(
            "# HELP {METRIC} Room temperature.\n# TYPE {METRIC} gauge\n# UNIT {METRIC} celsius\n"
        ));
        for (i, site) in SITES.iter().enumerate() {
            for t in (first_s..=last_s).step_by(STEP_S as usize) {
                // `{}` prints the shortest text that parses back to the same f64.
                let _ = writeln!(text, "{METRIC}{{site=\"{site}\"}} {} {t}", value(i, t));
            }
        }
        text.push_str("# EOF\n");
        let input = dir.path().join("history.om");
        std::fs::write(&input, text).expect("write OpenMetrics");
        let data = dir.path().join("tsdb");
        let out = std::process::Command::new(&promtool)
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool tsdb create-blocks-from openmetrics failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (peer, url) = start_prometheus(dir.path(), &data).await;
        Self {
            _peer: peer,
            url,
            first_s,
            last_s,
            _dir: dir,
        }
    }

    fn samples_per_series(&self) -> i64 {
        (self.last_s - self.first_s) / STEP_S + 1
    }
}

async fn run_cli(args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_presage"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("run presage");
    eprintln!(
        "presage {}\n  -> {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Checks the daemon's history of every series against the source, step for step.
async fn assert_history_matches(http: SocketAddr, source: &HistorySource) {
    // A forecast refits the series for its past bands: slow in a debug build.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("http client");
    for (i, site) in SITES.iter().enumerate() {
        let selector = format!("{METRIC}{{site=\"{site}\"}}");
        let url = format!(
            "http://{http}/api/v1/forecast?series={}&horizon=1h",
            urlencode(&selector)
        );
        let res = client.get(&url).send().await.expect("forecast request");
        let status = res.status();
        let body = res.text().await.expect("forecast body");
        assert!(
            status.is_success(),
            "forecast of {selector}: {status}: {body}"
        );
        let doc: Value = serde_json::from_str(&body).expect("forecast JSON");
        let history = doc["data"]["series"][0]["history"]
            .as_array()
            .unwrap_or_else(|| panic!("no history for {selector}: {doc}"))
            .clone();
        let mut matched = 0;
        let mut trailing = 0;
        for point in &history {
            let t_ms = (point[0].as_f64().expect("timestamp") * 1000.0).round() as i64;
            assert_eq!(t_ms % (STEP_S * 1000), 0, "steps are whole minutes");
            let t = t_ms / 1000;
            let got = point[1]
                .as_f64()
                .unwrap_or_else(|| panic!("{selector}: no value at {t}"));
            assert!(
                t >= source.first_s,
                "{selector}: step {t} before the source"
            );
            // Every hop keeps an f64 bit for bit (OpenMetrics text, Prometheus and its JSON,
            // remote_write, the store's XOR chunks, our JSON) except the last: serde_json,
            // built without `float_roundtrip`, parses numbers to within one unit in the last
            // place. Hence a tolerance of two ULPs and no more.
            let want = if t <= source.last_s {
                matched += 1;
                value(i, t)
            } else {
                // Prometheus' 5-minute lookback repeats the newest sample in the steps after
                // it, up to the end of the range.
                trailing += 1;
                value(i, source.last_s)
            };
            assert!(
                (got - want).abs() <= 2.0 * f64::EPSILON * want.abs(),
                "{selector} at {t}: stored {got}, source {want}"
            );
        }
        // The range is three days back from the backfill's start, which is a minute or two
        // after the newest sample: all but the oldest step or two of the source are in it.
        assert!(
            matched >= source.samples_per_series() - 2,
            "{selector}: {matched} of {} steps",
            source.samples_per_series()
        );
        assert!(trailing <= 5, "{selector}: {trailing} trailing steps");
    }
}

/// Waits until every backfilled series is ready, and returns the series. History is stored
/// without scoring the past, and each series is fitted once on it (twice when a chunk arrives
/// while the first fit runs), not once per hour of history.
async fn wait_ready(http: SocketAddr, source: &HistorySource) -> Vec<Value> {
    let client = client();
    let waiting = std::time::Instant::now();
    let series = eventually(
        Duration::from_secs(300),
        "backfilled series to be fitted and ready",
        || {
            let client = client.clone();
            async move {
                let series = series(&client, http, METRIC).await;
                let ready = series.len() == SITES.len()
                    && series.iter().all(|s| s["readiness"]["state"] == "ready");
                ready.then_some(series)
            }
        },
    )
    .await;
    eprintln!(
        "models ready {:.1}s after the history was stored",
        waiting.elapsed().as_secs_f64()
    );
    for s in &series {
        assert!(s["last_score"].is_null(), "history was scored: {s:#}");
        let hours = s["readiness"]["reason"]
            .as_str()
            .and_then(|r| r.split(" on ").nth(1))
            .and_then(|r| r.split('h').next())
            .and_then(|h| h.parse::<f64>().ok())
            .unwrap_or(0.0);
        let held = (source.last_s - source.first_s) as f64 / 3600.0;
        assert!(hours >= held - 1.0, "fitted on {hours}h of {held}h: {s:#}");
    }
    let text = metrics_text(&client, http).await.expect("metrics");
    let fits = sample_value(&text, "presage_fit_duration_seconds_count ").unwrap_or(0.0);
    assert!(fits <= 2.0 * SITES.len() as f64, "{fits} fits");
    series
}

fn assert_seasonal(series: &[Value]) {
    for s in series {
        let reason = s["readiness"]["reason"].as_str().unwrap_or_default();
        let periods: Vec<u64> = s["periods_seconds"]
            .as_array()
            .map(|p| p.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        assert!(
            periods.contains(&86_400),
            "{}: the daily cycle is found in the backfilled history; periods {periods:?}, {reason}",
            s["labels"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_backfill_pulls_history_into_a_running_daemon() {
    let source = HistorySource::start().await;
    let running = start(test_config()).await;
    let http = running.http;

    let started = std::time::Instant::now();
    let to = format!("http://{http}");
    let out = run_cli(&[
        "backfill",
        "--prometheus",
        &source.url,
        "--match",
        METRIC,
        "--range",
        "3d",
        "--step",
        "1m",
        "--to",
        &to,
    ])
    .await;
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "presage backfill failed: {stderr}");
    let total = DAYS * 86_400 / STEP_S * SITES.len() as i64;
    assert!(
        stderr.contains(&format!(
            "2/2 series from {}/: {total} samples pulled, {total} stored",
            source.url
        )),
        "{stderr}"
    );
    eprintln!(
        "backfill of {total} samples took {:.2}s: {:.0} samples/s (debug build, with process start)",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );

    let series = wait_ready(http, &source).await;
    assert_seasonal(&series);
    assert_history_matches(http, &source).await;

    // What came in is counted as remote_write on the daemon.
    let metrics = metrics_text(&client(), http).await.expect("/metrics");
    assert_eq!(
        sample_value(
            &metrics,
            "presage_samples_accepted_total{protocol=\"remote_write\"}"
        ),
        Some(total as f64)
    );

    // Sending the same history again stores nothing twice: the store refuses what it has and
    // the summary says so, without failing the run.
    let out = run_cli(&[
        "backfill",
        "--prometheus",
        &source.url,
        "--match",
        &format!("{METRIC}{{site=\"north\"}}"),
        "--range",
        "1h",
        "--to",
        &to,
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("samples refused by the store; first:"),
        "{stderr}"
    );

    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_backfills_configured_sources_in_the_background() {
    let source = HistorySource::start().await;
    let mut cfg = test_config();
    let mut entry = BackfillConfig::new(source.url.clone(), vec![METRIC.to_string()]);
    entry.range = Some(Duration::from_secs(DAYS as u64 * 86_400));
    entry.step = Some(Duration::from_secs(STEP_S as u64));
    entry.concurrency = 2;
    cfg.backfill = vec![entry];
    let running = start(cfg).await;
    let http = running.http;
    // Start-up does not wait for the history.
    assert!(running.app.is_ready());

    let client = client();
    let total = (DAYS * 86_400 / STEP_S * SITES.len() as i64) as f64;
    eventually(Duration::from_secs(120), "the backfill to finish", || {
        let client = client.clone();
        async move {
            let text = metrics_text(&client, http).await?;
            (sample_value(&text, "presage_backfill_series{state=\"done\"}") == Some(2.0))
                .then_some(())
        }
    })
    .await;
    let metrics = metrics_text(&client, http).await.expect("/metrics");
    for (line, want) in [
        ("presage_backfill_samples_total", total),
        ("presage_backfill_series{state=\"pending\"}", 0.0),
        ("presage_backfill_series{state=\"failed\"}", 0.0),
        (
            "presage_samples_accepted_total{protocol=\"backfill\"}",
            total,
        ),
    ] {
        assert_eq!(sample_value(&metrics, line), Some(want), "{line}");
    }

    let series = wait_ready(http, &source).await;
    assert_seasonal(&series);
    assert_history_matches(http, &source).await;
    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sources_fail_clearly_with_nonzero_exit() {
    let running = start(test_config()).await;
    let to = format!("http://{}", running.http);
    let nobody = format!("http://127.0.0.1:{}", free_port());

    // Nothing listens where Prometheus should be.
    let refused_at_prometheus = format!("cannot reach Prometheus at {nobody}/");
    refused(
        &[
            "backfill",
            "--prometheus",
            &nobody,
            "--match",
            "up",
            "--to",
            &to,
            "--retries",
            "1",
        ],
        1,
        &[&refused_at_prometheus, "Connection refused"],
    )
    .await;
    // Nor where the daemon should be: found out before anything is pulled.
    let refused_at_presage = format!("cannot reach presage at {nobody}/");
    refused(
        &[
            "backfill",
            "--prometheus",
            &nobody,
            "--match",
            "up",
            "--to",
            &nobody,
            "--retries",
            "0",
        ],
        1,
        &[&refused_at_presage, "presage serve"],
    )
    .await;
    // Arguments are checked before anything is sent.
    refused(
        &[
            "backfill",
            "--prometheus",
            "prometheus:9090",
            "--match",
            "up",
        ],
        2,
        &["invalid value 'prometheus:9090' for '--prometheus <URL>'"],
    )
    .await;
    refused(
        &[
            "backfill",
            "--prometheus",
            &nobody,
            "--match",
            "rate(up[5m])",
        ],
        2,
        &["is not a series selector"],
    )
    .await;

    // An invalid [[backfill]] entry is a configuration error, located, exit 64.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[backfill]]\nprometheus = \"nope\"\nmatch = \"up\"\n",
    )
    .expect("write");
    let located = format!("{}:2:1: `backfill[0].prometheus`", bad.display());
    refused(
        &["backfill", "--config", &bad.display().to_string()],
        64,
        &[&located],
    )
    .await;

    // A real Prometheus that refuses the query: its own error, in its words.
    let data = dir.path().join("tsdb");
    let (_prometheus, url) = start_prometheus(dir.path(), &data).await;
    refused(
        &[
            "backfill",
            "--prometheus",
            &url,
            "--match",
            // Go's regular expressions refuse repeat counts over 1000; Rust's take them.
            "up{job=~\"a{1001}\"}",
            "--to",
            &to,
        ],
        1,
        &["listing the series: Prometheus answered 400 Bad Request: bad_data:"],
    )
    .await;
    // An offset is refused before anything is asked.
    refused(
        &[
            "backfill",
            "--prometheus",
            &url,
            "--match",
            "up offset 5m",
            "--to",
            &to,
        ],
        2,
        &["offset, @ and range modifiers are not supported"],
    )
    .await;
    // And a selector nothing matches is not a silent success.
    refused(
        &[
            "backfill",
            "--prometheus",
            &url,
            "--match",
            "no_such_metric",
            "--to",
            &to,
        ],
        1,
        &["no series match"],
    )
    .await;

    running.shutdown().await.expect("clean shutdown");
}

/// Runs `presage` with `args` and checks it exits with `code` and says each of `said` on stderr.
async fn refused(args: &[&str], code: i32, said: &[&str]) {
    let out = run_cli(args).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    for s in said {
        assert!(stderr.contains(s), "{args:?}: no {s:?} in {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_never_mixed_in_behind_live_data() {
    use presage_forecaster::backfill::{self, Plan, Progress, Sink};
    use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest};

    let source = HistorySource::start().await;
    let running = start(test_config()).await;
    let http = running.http;
    // One of the two series is already live when the backfill reaches it.
    let live = WriteRequest {
        timeseries: vec![TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: METRIC.into(),
                },
                Label {
                    name: "site".into(),
                    value: "north".into(),
                },
            ],
            samples: vec![Sample {
                value: 21.5,
                timestamp: now_s() * 1000,
            }],
            histograms: vec![],
        }],
        metadata: vec![],
    };
    let body = presage_forecaster::ingest::remote_write::encode(&live);
    let out = running
        .app
        .ingest_remote_write(&body)
        .expect("live sample accepted");
    assert_eq!(out.accepted, 1);

    let plan = Plan::new(
        backfill::parse_base_url(&source.url).expect("URL"),
        vec![METRIC.to_string()],
        Duration::from_secs(DAYS as u64 * 86_400),
        Duration::from_secs(STEP_S as u64),
        now_s() * 1000,
    );
    let summary = backfill::run(plan, Sink::Store(running.app.clone()), Progress::Quiet)
        .await
        .expect("backfill runs");
    assert_eq!(
        (summary.series, summary.series_done, summary.series_failed),
        (2, 1, 1),
        "{summary}"
    );
    assert!(
        summary.failures[0].contains("site=\"north\"")
            && summary.failures[0].contains("already holds samples up to"),
        "{summary}"
    );
    assert_eq!(summary.samples_refused, 0, "{summary}");

    let client = client();
    let north = series(&client, http, &format!("{METRIC}{{site=\"north\"}}")).await;
    assert_eq!(
        north[0]["points_total"], 1,
        "only the live sample: {north:?}"
    );
    let south = series(&client, http, &format!("{METRIC}{{site=\"south\"}}")).await;
    assert_eq!(
        south[0]["points_total"].as_i64(),
        Some(DAYS * 86_400 / STEP_S),
        "{south:?}"
    );
    running.shutdown().await.expect("clean shutdown");
}

//! The web UI in a real browser: history replayed through remote_write until the built-in rules
//! fire, then Chromium (headless) loads a deep link to the charts and the test reads the DOM it
//! rendered and keeps a screenshot in `<target>/test-artifacts/`.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use presage_forecaster::ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
use serde_json::Value;

const STEP_MS: i64 = 60_000;
/// How long one Chromium run may take before the test gives up on it.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(180);

fn noise(i: usize) -> f64 {
    let x =
        (i as u64 ^ 0x5eed_u64.wrapping_mul(0x9E37_79B9)).wrapping_mul(6_364_136_223_846_793_005);
    ((x >> 40) % 1000) as f64 / 1000.0 - 0.5
}

/// A series to replay: its labels and `(ms, value)` points.
type Replayed = (Vec<Label>, Vec<(i64, f64)>);

/// Sends the series through remote_write in time order, `chunk` steps of event time per request.
async fn replay(http: SocketAddr, series: &[Replayed], t0: i64, n: usize) {
    let client = client();
    let chunk = 240;
    for from in (0..n).step_by(chunk) {
        let (lo, hi) = (
            t0 + from as i64 * STEP_MS,
            t0 + (from + chunk) as i64 * STEP_MS,
        );
        let timeseries = series
            .iter()
            .map(|(l, pts)| TimeSeries {
                labels: l.clone(),
                samples: pts
                    .iter()
                    .filter(|(t, _)| (lo..hi).contains(t))
                    .map(|&(timestamp, value)| Sample { value, timestamp })
                    .collect(),
                histograms: vec![],
            })
            .filter(|ts| !ts.samples.is_empty())
            .collect();
        let body = encode(&WriteRequest {
            timeseries,
            metadata: vec![],
        });
        let res = client
            .post(format!("http://{http}/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .expect("remote_write");
        assert!(res.status().is_success(), "{}", res.status());
    }
}

/// The target directory the tests were built in (`CARGO_TARGET_DIR` when set).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/<profile>/deps/<test binary>
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Runs headless Chromium with `args` and `url`; its stdout, or a panic with its stderr.
fn chromium(program: &Path, profile: &Path, args: &[String], url: &str) -> String {
    std::fs::create_dir_all(profile).expect("chromium profile dir");
    let out_path = profile.join("stdout.txt");
    let err_path = profile.join("stderr.txt");
    let stdout = std::fs::File::create(&out_path).expect("chromium stdout file");
    let stderr = std::fs::File::create(&err_path).expect("chromium stderr file");
    let mut child = Command::new(program)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--virtual-time-budget=15000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            profile.join("user-data").display()
        ))
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish within {BROWSER_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
            }
        }
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(status.success(), "chromium exited with {status}:\n{stderr}");
    std::fs::read_to_string(&out_path).unwrap_or_default()
}

/// A start tag of the serialized DOM: its name and attributes (entities in values decoded).
#[derive(Debug)]
struct Tag {
    name: String,
    attrs: Vec<(String, String)>,
}

impl Tag {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn has_class(&self, class: &str) -> bool {
        self.attr("class")
            .is_some_and(|c| c.split_whitespace().any(|c| c == class))
    }

    fn number(&self, name: &str) -> f64 {
        self.attr(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{self:?} has no numeric {name}"))
    }
}

fn decode_entities(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Start tags in document order: enough HTML parsing for Chromium's serialized DOM and for our
/// own page (quoted or bare attribute values; `<` in text is escaped by both).
fn start_tags(html: &str) -> Vec<Tag> {
    let bytes = html.as_bytes();
    let mut tags = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        i += off + 1;
        let name_len = html[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .unwrap_or(html.len() - i);
        if name_len == 0 || !bytes[i].is_ascii_alphabetic() {
            continue;
        }
        let name = html[i..i + name_len].to_ascii_lowercase();
        i += name_len;
        let mut attrs = Vec::new();
        loop {
            while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] == b'>' {
                break;
            }
            let len = html[i..]
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>')
                .unwrap_or(html.len() - i)
                .max(1);
            let attr = html[i..i + len].to_ascii_lowercase();
            i += len;
            let mut value = String::new();
            if bytes.get(i) == Some(&b'=') {
                i += 1;
                let end = match bytes.get(i) {
                    Some(&q @ (b'"' | b'\'')) => {
                        i += 1;
                        html[i..].find(q as char).map_or(html.len(), |e| i + e)
                    }
                    _ => html[i..]
                        .find(|c: char| c.is_ascii_whitespace() || c == '>')
                        .map_or(html.len(), |e| i + e),
                };
                value = decode_entities(&html[i..end]);
                i = (end + 1).min(html.len());
                if bytes.get(end) == Some(&b'>') {
                    i = end;
                }
            }
            attrs.push((attr, value));
        }
        tags.push(Tag { name, attrs });
    }
    tags
}

/// The chart SVGs, each with the `data-series` of the card it is in.
fn charts(tags: &[Tag]) -> Vec<(String, &Tag)> {
    let mut series = String::new();
    let mut out = Vec::new();
    for t in tags {
        if t.name == "article" && t.has_class("chart-card") {
            series = t.attr("data-series").unwrap_or("").to_string();
        }
        if t.name == "svg" && t.has_class("chart") {
            out.push((series.clone(), t));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_charts_replayed_history_and_lists_alerts_and_silences() {
    let chromium_bin = require_program("chromium", "apt-get install -y chromium");
    let running = start(test_config()).await;
    let http = running.http;
    let client = client();

    // Three days of a daily CPU cycle with a 20-minute spike on the third day, and over
    // the last seven hours a disk filling towards 90%.
    let day = 1440;
    let n = 3 * day;
    let spike = 2 * day + 900..2 * day + 920;
    let t0 = start_of_replay(n);
    let cpu = |i: usize| {
        let daily = (i as f64 * std::f64::consts::TAU / day as f64).sin();
        let burst = if spike.contains(&i) { 45.0 } else { 0.0 };
        40.0 + 15.0 * daily + 2.0 * noise(i) + burst
    };
    let disk_from = n - 420;
    let disk = |i: usize| {
        let j = i - disk_from;
        0.50 + 0.0008 * j as f64 + 0.01 * (j % 60) as f64 / 60.0
    };
    let at = |i: usize| t0 + i as i64 * STEP_MS;
    let series = vec![
        (
            labels(&[("__name__", "app_cpu_percent"), ("host_name", "web-1")]),
            (0..n).map(|i| (at(i), cpu(i))).collect::<Vec<_>>(),
        ),
        (
            labels(&[
                ("__name__", "system_filesystem_utilization"),
                ("host_name", "db-1"),
                ("mode", "rw"),
                ("mountpoint", "/var"),
            ]),
            (disk_from..n).map(|i| (at(i), disk(i))).collect(),
        ),
    ];
    replay(http, &series, t0, n).await;
    settled(http, (n - 40 + 420 - 40) as f64).await;

    // A silence for the page to list.
    let res = client
        .post(format!("http://{http}/api/v1/silences"))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({
                "matchers": "{alertname=\"DiskWillFill\",host_name=\"db-2\"}",
                "duration": "2h",
                "createdBy": "ui-test",
                "comment": "db-2 is being rebuilt",
            })
            .to_string(),
        )
        .send()
        .await
        .expect("create silence");
    assert!(res.status().is_success(), "{}", res.status());

    let alerts = eventually(
        Duration::from_secs(60),
        "SeriesAnomalous and DiskWillFill in /api/v1/alerts",
        || {
            let client = client.clone();
            async move {
                let v = get_json(&client, &format!("http://{http}/api/v1/alerts")).await?;
                let alerts = v["data"].as_array()?.clone();
                let has = |name: &str| alerts.iter().any(|a| a["labels"]["alertname"] == name);
                (has("SeriesAnomalous") && has("DiskWillFill")).then_some(alerts)
            }
        },
    )
    .await;
    let threshold = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "DiskWillFill")
        .and_then(|a| a["explanation"]["threshold"].as_f64())
        .expect("DiskWillFill has a threshold");

    // The page as a browser gets it: the deep link opens both charts.
    let url = format!(
        "http://{http}/?series={}&series={}",
        urlencode("app_cpu_percent"),
        urlencode("system_filesystem_utilization{mountpoint=\"/var\"}")
    );
    let artifacts = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artefact dir");
    let profile = scratch_dir();
    let dom = {
        let (program, profile, url) = (chromium_bin.clone(), profile.clone(), url.clone());
        tokio::task::spawn_blocking(move || {
            chromium(&program, &profile.join("dom"), &["--dump-dom".into()], &url)
        })
        .await
        .expect("chromium task")
    };
    std::fs::write(artifacts.join("ui.html"), &dom).expect("save the DOM");
    let tags = start_tags(&dom);
    let main = tags
        .iter()
        .find(|t| t.attr("id") == Some("app"))
        .unwrap_or_else(|| panic!("no <main id=app> in the page:\n{dom}"));
    assert_eq!(
        main.attr("data-state"),
        Some("ready"),
        "the page did not finish loading:\n{dom}"
    );

    let charts = charts(&tags);
    assert_eq!(charts.len(), 2, "one chart per series: {charts:#?}");
    let (_, cpu_chart) = charts
        .iter()
        .find(|(s, _)| s.starts_with("app_cpu_percent{"))
        .unwrap_or_else(|| panic!("no CPU chart: {charts:#?}"));
    // 24 hours of one-minute steps are charted by default.
    let points = cpu_chart.number("data-points");
    assert!(points > 1000.0 && points <= 1441.0, "{cpu_chart:?}");
    assert!(
        cpu_chart.number("data-band") > 0.0,
        "no expected band: {cpu_chart:?}"
    );
    assert!(
        cpu_chart.number("data-forecast") > 0.0,
        "no forecast: {cpu_chart:?}"
    );
    assert!(
        cpu_chart.number("data-anomalies") > 0.0,
        "the spike is not marked: {cpu_chart:?}"
    );
    let (_, disk_chart) = charts
        .iter()
        .find(|(s, _)| s.starts_with("system_filesystem_utilization{"))
        .unwrap_or_else(|| panic!("no disk chart: {charts:#?}"));
    assert!(disk_chart.number("data-points") >= 400.0, "{disk_chart:?}");
    assert_eq!(
        disk_chart.attr("data-threshold"),
        Some(threshold.to_string().as_str()),
        "the breach rule's threshold is drawn: {disk_chart:?}"
    );

    let listed: Vec<&Tag> = tags
        .iter()
        .filter(|t| t.name == "li" && t.has_class("alert"))
        .collect();
    for name in ["SeriesAnomalous", "DiskWillFill"] {
        assert!(
            listed
                .iter()
                .any(|t| t.attr("data-alertname") == Some(name)),
            "{name} is not listed: {listed:#?}"
        );
    }
    assert!(
        tags.iter().any(|t| t.has_class("alert-suggestion")),
        "no suggestion shown"
    );
    assert!(
        tags.iter().any(|t| t.name == "li"
            && t.has_class("silence")
            && t.attr("data-state") == Some("active")),
        "the silence is not listed"
    );

    // A screenshot for people to look at; it must be a real, non-blank PNG.
    let png = artifacts.join("ui.png");
    let _ = std::fs::remove_file(&png);
    {
        let (program, profile, png) = (chromium_bin.clone(), profile.clone(), png.clone());
        tokio::task::spawn_blocking(move || {
            let args = [
                format!("--screenshot={}", png.display()),
                "--window-size=1400,1000".to_string(),
            ];
            chromium(&program, &profile.join("screenshot"), &args, &url)
        })
        .await
        .expect("chromium task");
    }
    let bytes =
        std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let width = u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    let height = u32::from_be_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert_eq!((width, height), (1400, 1000));
    // A blank 1400x1000 page compresses to a few kilobytes; charts and text do not.
    assert!(
        bytes.len() > 40_000,
        "screenshot of {} bytes looks blank",
        bytes.len()
    );
    eprintln!("screenshot: {}", png.display());

    running.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_to_browsers() {
    let running = start(test_config()).await;
    let http = running.http;
    let client = client();
    let page = client
        .get(format!("http://{http}/?series=up"))
        .header("Accept", "text/html")
        .send()
        .await
        .expect("GET /");
    assert_eq!(page.status(), 200);
    let header = |res: &reqwest::Response, name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let html = page.text().await.expect("body");
    let scripts: Vec<String> = start_tags(&html)
        .iter()
        .filter_map(|t| match t.name.as_str() {
            "script" => t.attr("src").map(str::to_string),
            "link" if t.attr("rel") == Some("stylesheet") => t.attr("href").map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(scripts.len(), 2, "{html}");
    for path in scripts {
        let res = client
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .expect("GET asset");
        assert_eq!(res.status(), 200, "{path}");
        assert!(header(&res, "cache-control").contains("max-age"), "{path}");
        let expected = if path.contains(".js") {
            "text/javascript"
        } else {
            "text/css"
        };
        assert!(header(&res, "content-type").starts_with(expected), "{path}");
    }
    let missing = client
        .get(format!("http://{http}/ui/missing.js"))
        .send()
        .await
        .expect("GET missing asset");
    assert_eq!(missing.status(), 404);
    let body: Value =
        serde_json::from_str(&missing.text().await.expect("body")).expect("a JSON error");
    assert_eq!(body["status"], "error");
    running.shutdown().await.expect("clean shutdown");
}

#[test]
fn start_tags_reads_quoted_and_bare_attributes() {
    let tags = start_tags(
        r#"<!doctype html><p class="a b" data-x='{k="v"}' hidden id=z>1 &lt; 2</p><svg data-points="3"/><br>"#,
    );
    let names: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["p", "svg", "br"]);
    assert!(tags[0].has_class("b"));
    assert_eq!(tags[0].attr("data-x"), Some(r#"{k="v"}"#));
    assert_eq!(tags[0].attr("hidden"), Some(""));
    assert_eq!(tags[0].attr("id"), Some("z"));
    assert_eq!(tags[1].number("data-points"), 3.0);
}

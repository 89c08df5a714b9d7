//! Sidecar scraping: Prometheus text-format endpoints turned into OTLP, every sample with its
//! labels.
//!
//! Conversion follows the OpenTelemetry Collector's Prometheus receiver: counters become
//! cumulative monotonic sums, gauges and untyped samples gauges, histograms OTLP histograms
//! (buckets de-cumulated, `le` dropped), summaries OTLP summaries. The resource carries
//! `service.name` = the target's `job` and `service.instance.id` = its `host:port` (the
//! forecaster shows them as `job` and `instance`). Labels the target exposes under those two
//! names become `exported_job` / `exported_instance`, as in Prometheus. Every scrape also
//! reports `up` (1 or 0). NaN samples (staleness markers, empty summaries) are not sent.

pub(crate) mod parser;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Histogram, HistogramDataPoint, Metric, Summary, SummaryDataPoint,
    metric,
};
use parser::{Family, MetricType, Parsed};

use crate::otlp::{gauge, kv, point, sum};

/// The largest scrape body read.
pub(crate) const MAX_BODY: usize = 64 << 20;

/// How one target's samples are labelled and timed.
#[derive(Debug, Clone)]
pub(crate) struct Conversion {
    /// Labels added to every sample (configured `labels`); they win over exposed ones.
    pub(crate) labels: Vec<(String, String)>,
    /// Keep exposed timestamps.
    pub(crate) honor_timestamps: bool,
}

/// What one scrape gave.
#[derive(Debug, Default)]
pub(crate) struct Converted {
    /// The metrics.
    pub(crate) metrics: Vec<Metric>,
    /// Data points in them.
    pub(crate) points: usize,
}

fn attributes(
    labels: &[(String, String)],
    skip: &str,
    extra: &[(String, String)],
) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = Vec::with_capacity(labels.len() + extra.len());
    for (name, value) in labels {
        if name == skip {
            continue;
        }
        let name = match name.as_str() {
            "job" | "instance" => format!("exported_{name}"),
            n if extra.iter().any(|(e, _)| e == n) => format!("exported_{name}"),
            _ => name.clone(),
        };
        out.push(kv(name, value.as_str()));
    }
    for (name, value) in extra {
        out.push(kv(name.as_str(), value.as_str()));
    }
    out
}

fn sample_time(ts_ms: Option<i64>, c: &Conversion, scrape_ns: u64) -> u64 {
    match ts_ms {
        Some(ms) if c.honor_timestamps && ms > 0 => {
            u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
        }
        _ => scrape_ns,
    }
}

/// Converts a parsed scrape taken at `scrape_ns`.
pub(crate) fn convert(parsed: &Parsed, c: &Conversion, scrape_ns: u64) -> Converted {
    let mut out = Converted::default();
    for family in &parsed.families {
        let metric = match family.kind {
            MetricType::Counter | MetricType::Gauge | MetricType::Untyped => {
                number_family(family, c, scrape_ns)
            }
            MetricType::Histogram => histogram_family(family, c, scrape_ns),
            MetricType::Summary => summary_family(family, c, scrape_ns),
        };
        if let Some(m) = metric {
            out.points += crate::otlp::point_count(&m);
            out.metrics.push(m);
        }
    }
    out
}

fn number_family(f: &Family, c: &Conversion, scrape_ns: u64) -> Option<Metric> {
    let counter = f.kind == MetricType::Counter;
    let points: Vec<_> = f
        .samples
        .iter()
        .filter(|s| !s.value.is_nan())
        // A counter's `_created` sample is its start time, not a value.
        .filter(|s| !(counter && s.name.ends_with("_created") && s.name != f.name))
        .map(|s| {
            point(
                attributes(&s.labels, "", &c.labels),
                sample_time(s.timestamp_ms, c, scrape_ns),
                0,
                s.value,
            )
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let help = f.help.as_deref().unwrap_or("");
    Some(if counter {
        sum(&f.name, "", help, true, points)
    } else {
        gauge(&f.name, "", help, points)
    })
}

/// The label set of a sample without `skip`, as a grouping key.
fn group_key(labels: &[(String, String)], skip: &str) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = labels.iter().filter(|(n, _)| n != skip).cloned().collect();
    k.sort();
    k
}

#[derive(Default)]
struct HistGroup {
    labels: Vec<(String, String)>,
    buckets: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
    ts: Option<i64>,
}

fn histogram_family(f: &Family, c: &Conversion, scrape_ns: u64) -> Option<Metric> {
    let mut groups: BTreeMap<Vec<(String, String)>, HistGroup> = BTreeMap::new();
    for s in &f.samples {
        let key = group_key(&s.labels, "le");
        let g = groups.entry(key).or_insert_with(|| HistGroup {
            labels: s
                .labels
                .iter()
                .filter(|(n, _)| n != "le")
                .cloned()
                .collect(),
            ..HistGroup::default()
        });
        g.ts = g.ts.or(s.timestamp_ms);
        let suffix = s.name.strip_prefix(f.name.as_str()).unwrap_or("");
        match suffix {
            "_bucket" => {
                if let Some(le) = s
                    .labels
                    .iter()
                    .find(|(n, _)| n == "le")
                    .and_then(|(_, v)| parse_bound(v))
                {
                    g.buckets.push((le, s.value));
                }
            }
            "_sum" => g.sum = Some(s.value),
            "_count" => g.count = Some(s.value),
            _ => {}
        }
    }
    let mut points = Vec::new();
    for g in groups.into_values() {
        let mut buckets = g.buckets;
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let inf = buckets
            .iter()
            .find(|(le, _)| le.is_infinite())
            .map(|(_, v)| *v);
        let Some(count) = g.count.or(inf).filter(|v| v.is_finite() && *v >= 0.0) else {
            continue;
        };
        let finite: Vec<(f64, f64)> = buckets
            .into_iter()
            .filter(|(le, _)| le.is_finite())
            .collect();
        let mut counts = Vec::with_capacity(finite.len() + 1);
        let mut prev = 0.0;
        for (_, cumulative) in &finite {
            counts.push((cumulative - prev).max(0.0) as u64);
            prev = *cumulative;
        }
        counts.push((count - prev).max(0.0) as u64);
        points.push(HistogramDataPoint {
            attributes: attributes(&g.labels, "le", &c.labels),
            start_time_unix_nano: 0,
            time_unix_nano: sample_time(g.ts, c, scrape_ns),
            count: count as u64,
            sum: g.sum.filter(|s| s.is_finite()),
            bucket_counts: counts,
            explicit_bounds: finite.iter().map(|(le, _)| *le).collect(),
            ..Default::default()
        });
    }
    if points.is_empty() {
        return None;
    }
    Some(Metric {
        name: f.name.clone(),
        description: f.help.clone().unwrap_or_default(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        })),
        ..Default::default()
    })
}

fn parse_bound(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        _ => v.parse::<f64>().ok().filter(|b| !b.is_nan()),
    }
}

#[derive(Default)]
struct SummaryGroup {
    labels: Vec<(String, String)>,
    quantiles: Vec<ValueAtQuantile>,
    sum: Option<f64>,
    count: Option<f64>,
    ts: Option<i64>,
}

fn summary_family(f: &Family, c: &Conversion, scrape_ns: u64) -> Option<Metric> {
    let mut groups: BTreeMap<Vec<(String, String)>, SummaryGroup> = BTreeMap::new();
    for s in &f.samples {
        let key = group_key(&s.labels, "quantile");
        let g = groups.entry(key).or_insert_with(|| SummaryGroup {
            labels: s
                .labels
                .iter()
                .filter(|(n, _)| n != "quantile")
                .cloned()
                .collect(),
            ..SummaryGroup::default()
        });
        g.ts = g.ts.or(s.timestamp_ms);
        let suffix = s.name.strip_prefix(f.name.as_str()).unwrap_or("");
        match suffix {
            "" => {
                if let Some(q) = s
                    .labels
                    .iter()
                    .find(|(n, _)| n == "quantile")
                    .and_then(|(_, v)| v.parse::<f64>().ok())
                    && !s.value.is_nan()
                {
                    g.quantiles.push(ValueAtQuantile {
                        quantile: q,
                        value: s.value,
                    });
                }
            }
            "_sum" => g.sum = Some(s.value),
            "_count" => g.count = Some(s.value),
            _ => {}
        }
    }
    let points: Vec<SummaryDataPoint> = groups
        .into_values()
        .filter_map(|g| {
            let count = g.count.filter(|v| v.is_finite() && *v >= 0.0)?;
            Some(SummaryDataPoint {
                attributes: attributes(&g.labels, "quantile", &c.labels),
                start_time_unix_nano: 0,
                time_unix_nano: sample_time(g.ts, c, scrape_ns),
                count: count as u64,
                sum: g.sum.filter(|s| s.is_finite()).unwrap_or(0.0),
                quantile_values: g.quantiles,
                ..Default::default()
            })
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    Some(Metric {
        name: f.name.clone(),
        description: f.help.clone().unwrap_or_default(),
        data: Some(metric::Data::Summary(Summary {
            data_points: points,
        })),
        ..Default::default()
    })
}

/// The `up` gauge of one scrape.
pub(crate) fn up(ok: bool, scrape_ns: u64) -> Metric {
    gauge(
        "up",
        "",
        "1 when the last scrape of the target succeeded, else 0.",
        vec![point(vec![], scrape_ns, 0, if ok { 1.0 } else { 0.0 })],
    )
}

/// `host:port` of a URL (the default port filled in), for `service.instance.id`.
pub(crate) fn instance(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("");
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    format!("{host}:{port}")
}

/// Fetches a target's exposition.
pub(crate) async fn fetch(
    client: &mut crate::net::HttpClient,
    uri: &Uri,
    timeout: Duration,
) -> Result<String, String> {
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.uri_mut() = uri.clone();
    req.headers_mut().insert(
        http::header::ACCEPT,
        HeaderValue::from_static("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
    );
    req.headers_mut().insert(
        "X-Prometheus-Scrape-Timeout-Seconds",
        HeaderValue::from_str(&format!("{}", timeout.as_secs_f64()))
            .unwrap_or(HeaderValue::from_static("5")),
    );
    let res = client.send(req, timeout).await?;
    if !res.status.is_success() {
        return Err(format!("HTTP {}", res.status));
    }
    String::from_utf8(res.body.to_vec()).map_err(|_| "the body is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;

    fn conv() -> Conversion {
        Conversion {
            labels: vec![("team".into(), "pay".into())],
            honor_timestamps: true,
        }
    }

    fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
        attrs.iter().find(|a| a.key == key).map(|a| {
            match a.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s)) => {
                    s.clone()
                }
                other => format!("{other:?}"),
            }
        })
    }

    const BODY: &str = r#"# HELP http_requests_total Requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200",job="app"} 1027 1395066363000
http_requests_total{method="get",code="500",path="/a\"b"} 3
# TYPE temperature gauge
temperature{room="lab"} 21.5
temperature{room="void"} NaN
# TYPE latency histogram
latency_bucket{route="/pay",le="0.1"} 5
latency_bucket{route="/pay",le="0.5"} 9
latency_bucket{route="/pay",le="+Inf"} 10
latency_sum{route="/pay"} 2.5
latency_count{route="/pay"} 10
# TYPE rpc summary
rpc{quantile="0.5"} 0.2
rpc{quantile="0.99"} NaN
rpc_sum 12
rpc_count 40
untyped_thing{team="exposed"} 4
"#;

    #[test]
    fn every_type_converts_with_its_labels() {
        let parsed = parser::parse(BODY);
        assert!(parsed.errors.is_empty());
        let out = convert(&parsed, &conv(), 5_000_000_000);
        let names: Vec<&str> = out.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "http_requests_total",
                "temperature",
                "latency",
                "rpc",
                "untyped_thing"
            ]
        );
        assert_eq!(out.points, 2 + 1 + 1 + 1 + 1);

        let Some(metric::Data::Sum(reqs)) = &out.metrics[0].data else {
            panic!("a sum")
        };
        assert!(reqs.is_monotonic);
        let p0 = &reqs.data_points[0];
        assert_eq!(p0.time_unix_nano, 1_395_066_363_000 * 1_000_000);
        assert_eq!(p0.value, Some(Value::AsDouble(1027.0)));
        assert_eq!(attr(&p0.attributes, "method").as_deref(), Some("post"));
        assert_eq!(attr(&p0.attributes, "exported_job").as_deref(), Some("app"));
        assert_eq!(attr(&p0.attributes, "job"), None);
        assert_eq!(attr(&p0.attributes, "team").as_deref(), Some("pay"));
        let p1 = &reqs.data_points[1];
        assert_eq!(p1.time_unix_nano, 5_000_000_000);
        assert_eq!(attr(&p1.attributes, "path").as_deref(), Some("/a\"b"));

        // NaN is not sent.
        let Some(metric::Data::Gauge(t)) = &out.metrics[1].data else {
            panic!("a gauge")
        };
        assert_eq!(t.data_points.len(), 1);

        let Some(metric::Data::Histogram(h)) = &out.metrics[2].data else {
            panic!("a histogram")
        };
        let hp = &h.data_points[0];
        assert_eq!(hp.explicit_bounds, vec![0.1, 0.5]);
        assert_eq!(hp.bucket_counts, vec![5, 4, 1]);
        assert_eq!((hp.count, hp.sum), (10, Some(2.5)));
        assert_eq!(attr(&hp.attributes, "route").as_deref(), Some("/pay"));
        assert_eq!(attr(&hp.attributes, "le"), None);

        let Some(metric::Data::Summary(s)) = &out.metrics[3].data else {
            panic!("a summary")
        };
        let sp = &s.data_points[0];
        assert_eq!((sp.count, sp.sum), (40, 12.0));
        assert_eq!(sp.quantile_values.len(), 1);
        assert_eq!(sp.quantile_values[0].quantile, 0.5);

        // A configured label wins; the exposed one is kept as exported_*.
        let Some(metric::Data::Gauge(u)) = &out.metrics[4].data else {
            panic!("a gauge")
        };
        assert_eq!(
            attr(&u.data_points[0].attributes, "team").as_deref(),
            Some("pay")
        );
        assert_eq!(
            attr(&u.data_points[0].attributes, "exported_team").as_deref(),
            Some("exposed")
        );
    }

    #[test]
    fn timestamps_can_be_ignored() {
        let parsed = parser::parse("a 1 1000\n");
        let c = Conversion {
            labels: vec![],
            honor_timestamps: false,
        };
        let out = convert(&parsed, &c, 77);
        let Some(metric::Data::Gauge(g)) = &out.metrics[0].data else {
            panic!()
        };
        assert_eq!(g.data_points[0].time_unix_nano, 77);
    }

    #[test]
    fn histogram_without_inf_bucket_uses_count() {
        let parsed = parser::parse("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_count 3\n");
        let out = convert(&parsed, &conv(), 1);
        let Some(metric::Data::Histogram(h)) = &out.metrics[0].data else {
            panic!()
        };
        assert_eq!(h.data_points[0].bucket_counts, vec![2, 1]);
        assert_eq!(h.data_points[0].sum, None);
    }

    #[test]
    fn instance_fills_default_ports() {
        assert_eq!(
            instance(&"http://127.0.0.1:8080/metrics".parse().unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(instance(&"https://app/metrics".parse().unwrap()), "app:443");
        assert_eq!(instance(&"http://app/metrics".parse().unwrap()), "app:80");
    }
}

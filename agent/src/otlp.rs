//! Building OTLP protobuf messages.
//!
//! The agent builds `opentelemetry-proto` messages itself rather than going through the
//! OpenTelemetry SDK: every point carries the time it was *collected* (a scrape's exposed
//! timestamp, a host reading's instant), a batch is serialized once and then kept as bytes in
//! the spool and replayed byte for byte, and the exporter needs the acknowledgement of each
//! request to advance log checkpoints. The SDK's `opentelemetry-otlp` exporter takes the SDK's
//! own aggregated types, stamps its own times and hides the per-request outcome.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// A string attribute.
pub(crate) fn kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// A resource from `(name, value)` attributes.
pub(crate) fn resource(attrs: &[(String, String)]) -> Resource {
    Resource {
        attributes: attrs
            .iter()
            .map(|(k, v)| kv(k.as_str(), v.as_str()))
            .collect(),
        ..Default::default()
    }
}

fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "presage-agent".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    }
}

/// A data point with a float value.
pub(crate) fn point(
    attributes: Vec<KeyValue>,
    time_ns: u64,
    start_ns: u64,
    value: f64,
) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

/// A gauge.
pub(crate) fn gauge(
    name: &str,
    unit: &str,
    description: &str,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        description: description.to_string(),
        data: Some(metric::Data::Gauge(Gauge {
            data_points: points,
        })),
        ..Default::default()
    }
}

/// A cumulative sum; `monotonic` for counters, not for up-down counters (usage by state).
pub(crate) fn sum(
    name: &str,
    unit: &str,
    description: &str,
    monotonic: bool,
    points: Vec<NumberDataPoint>,
) -> Metric {
    Metric {
        name: name.to_string(),
        unit: unit.to_string(),
        description: description.to_string(),
        data: Some(metric::Data::Sum(Sum {
            data_points: points,
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: monotonic,
        })),
        ..Default::default()
    }
}

/// Number of data points in a metric.
pub(crate) fn point_count(m: &Metric) -> usize {
    match &m.data {
        Some(metric::Data::Gauge(g)) => g.data_points.len(),
        Some(metric::Data::Sum(s)) => s.data_points.len(),
        Some(metric::Data::Histogram(h)) => h.data_points.len(),
        Some(metric::Data::Summary(s)) => s.data_points.len(),
        Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
        None => 0,
    }
}

/// Splits `metrics` of one resource into requests of at most `max_points` data points (a
/// single metric with more points than that is split too).
pub(crate) fn metrics_requests(
    resource: &Resource,
    metrics: Vec<Metric>,
    max_points: usize,
) -> Vec<(ExportMetricsServiceRequest, usize)> {
    let max_points = max_points.max(1);
    let mut out = Vec::new();
    let mut current: Vec<Metric> = Vec::new();
    let mut count = 0;
    let flush = |current: &mut Vec<Metric>, count: &mut usize, out: &mut Vec<_>| {
        if current.is_empty() {
            return;
        }
        let req = ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope()),
                    metrics: std::mem::take(current),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        out.push((req, *count));
        *count = 0;
    };
    for m in metrics {
        for piece in split_metric(m, max_points) {
            let n = point_count(&piece);
            if n == 0 {
                continue;
            }
            if count + n > max_points {
                flush(&mut current, &mut count, &mut out);
            }
            count += n;
            current.push(piece);
        }
    }
    flush(&mut current, &mut count, &mut out);
    out
}

fn split_metric(m: Metric, max: usize) -> Vec<Metric> {
    if point_count(&m) <= max {
        return vec![m];
    }
    let Metric {
        name,
        description,
        unit,
        metadata,
        data,
    } = m;
    let shell = |data| Metric {
        name: name.clone(),
        description: description.clone(),
        unit: unit.clone(),
        metadata: metadata.clone(),
        data: Some(data),
    };
    fn chunks<T>(v: Vec<T>, max: usize) -> Vec<Vec<T>> {
        let mut out = Vec::new();
        let mut it = v.into_iter().peekable();
        while it.peek().is_some() {
            out.push(it.by_ref().take(max).collect());
        }
        out
    }
    match data {
        Some(metric::Data::Gauge(g)) => chunks(g.data_points, max)
            .into_iter()
            .map(|p| shell(metric::Data::Gauge(Gauge { data_points: p })))
            .collect(),
        Some(metric::Data::Sum(s)) => chunks(s.data_points, max)
            .into_iter()
            .map(|p| {
                shell(metric::Data::Sum(Sum {
                    data_points: p,
                    aggregation_temporality: s.aggregation_temporality,
                    is_monotonic: s.is_monotonic,
                }))
            })
            .collect(),
        Some(metric::Data::Histogram(h)) => chunks(h.data_points, max)
            .into_iter()
            .map(|p| {
                shell(metric::Data::Histogram(
                    opentelemetry_proto::tonic::metrics::v1::Histogram {
                        data_points: p,
                        aggregation_temporality: h.aggregation_temporality,
                    },
                ))
            })
            .collect(),
        Some(metric::Data::Summary(s)) => chunks(s.data_points, max)
            .into_iter()
            .map(|p| {
                shell(metric::Data::Summary(
                    opentelemetry_proto::tonic::metrics::v1::Summary { data_points: p },
                ))
            })
            .collect(),
        Some(other) => vec![shell(other)],
        None => Vec::new(),
    }
}

/// One logs request with the records of several resources.
pub(crate) fn logs_request(groups: Vec<(Resource, Vec<LogRecord>)>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: groups
            .into_iter()
            .filter(|(_, records)| !records.is_empty())
            .map(|(resource, records)| ResourceLogs {
                resource: Some(resource),
                scope_logs: vec![ScopeLogs {
                    scope: Some(scope()),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// Nanoseconds since the Unix epoch, now.
pub(crate) fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_split_by_point_count() {
        let res = resource(&[("host.name".into(), "h".into())]);
        let pts = |n: usize| (0..n).map(|i| point(vec![], 1, 0, i as f64)).collect();
        let metrics = vec![
            gauge("a", "", "", pts(3)),
            sum("b", "", "", true, pts(7)),
            gauge("c", "", "", pts(2)),
        ];
        let reqs = metrics_requests(&res, metrics, 4);
        let sizes: Vec<usize> = reqs.iter().map(|(_, n)| *n).collect();
        assert_eq!(sizes, vec![3, 4, 3, 2]);
        let total: usize = reqs
            .iter()
            .flat_map(|(r, _)| &r.resource_metrics[0].scope_metrics[0].metrics)
            .map(point_count)
            .sum();
        assert_eq!(total, 12);
        // Every request carries the resource.
        assert!(
            reqs.iter()
                .all(|(r, _)| r.resource_metrics[0].resource == Some(res.clone()))
        );
    }
}

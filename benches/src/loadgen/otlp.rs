//! OTLP metrics requests built once per batch and updated in place every round.
//!
//! Series are grouped the way an SDK or the Collector sends them: one `ResourceMetrics` per
//! emitting process (`service.name` = job, `service.instance.id` = instance, `host.name`,
//! `cloud.region`), one `Metric` per name, one data point per series with the family's labels
//! (plus `env`) as attributes. Counters are cumulative monotonic sums, the rest gauges.

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::series::{Kind, SeriesDef};

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    }
}

fn resource_attributes(s: &SeriesDef) -> Vec<KeyValue> {
    let mut out = Vec::new();
    for (name, value) in &s.resource {
        match *name {
            "job" => out.push(kv("service.name", value)),
            "instance" => {
                out.push(kv("service.instance.id", value));
                let host = value.split(['.', ':']).next().unwrap_or(value);
                out.push(kv("host.name", host));
            }
            "region" => out.push(kv("cloud.region", value)),
            _ => {}
        }
    }
    out
}

fn point_attributes(s: &SeriesDef) -> Vec<KeyValue> {
    let mut out: Vec<KeyValue> = s.attributes.iter().map(|(n, v)| kv(n, v)).collect();
    for (name, value) in &s.resource {
        if !matches!(*name, "job" | "instance" | "region") {
            out.push(kv(name, value));
        }
    }
    out
}

/// One request's worth of series, as an OTLP export whose timestamps and values are rewritten
/// for every round.
pub struct OtlpBatch {
    request: ExportMetricsServiceRequest,
    /// The series index of every data point, in the order the request holds them.
    order: Vec<usize>,
    start_ns: u64,
}

impl OtlpBatch {
    /// A request holding one data point for each of `indices` (into `series`). Cumulative
    /// sums report `start_ms` as their start time.
    pub fn new(series: &[SeriesDef], indices: &[usize], start_ms: i64) -> Self {
        let mut resources: Vec<ResourceMetrics> = Vec::new();
        let mut by_resource: HashMap<Vec<(&'static str, String)>, usize> = HashMap::new();
        // (resource position, metric name) → metric position inside that resource.
        let mut by_metric: HashMap<(usize, &'static str), usize> = HashMap::new();
        let mut points: Vec<Vec<Vec<usize>>> = Vec::new();
        for &i in indices {
            let Some(s) = series.get(i) else { continue };
            let r = *by_resource.entry(s.resource.clone()).or_insert_with(|| {
                resources.push(ResourceMetrics {
                    resource: Some(Resource {
                        attributes: resource_attributes(s),
                        ..Default::default()
                    }),
                    scope_metrics: vec![ScopeMetrics {
                        scope: Some(InstrumentationScope {
                            name: "presage-loadgen".into(),
                            version: env!("CARGO_PKG_VERSION").into(),
                            ..Default::default()
                        }),
                        metrics: Vec::new(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                });
                points.push(Vec::new());
                resources.len() - 1
            });
            let metrics = &mut resources[r].scope_metrics[0].metrics;
            let m = *by_metric.entry((r, s.name)).or_insert_with(|| {
                let data = match s.kind {
                    Kind::Gauge => metric::Data::Gauge(Gauge {
                        data_points: Vec::new(),
                    }),
                    Kind::Counter => metric::Data::Sum(Sum {
                        data_points: Vec::new(),
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    }),
                };
                metrics.push(Metric {
                    name: s.name.to_string(),
                    data: Some(data),
                    ..Default::default()
                });
                points[r].push(Vec::new());
                metrics.len() - 1
            });
            let point = NumberDataPoint {
                attributes: point_attributes(s),
                value: Some(number_data_point::Value::AsDouble(0.0)),
                ..Default::default()
            };
            match &mut metrics[m].data {
                Some(metric::Data::Gauge(g)) => g.data_points.push(point),
                Some(metric::Data::Sum(sum)) => sum.data_points.push(point),
                _ => {}
            }
            points[r][m].push(i);
        }
        let order = points.into_iter().flatten().flatten().collect();
        Self {
            request: ExportMetricsServiceRequest {
                resource_metrics: resources,
            },
            order,
            start_ns: ms_to_ns(start_ms),
        }
    }

    /// Data points in the request.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether the request holds no data point.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Sets every data point to its series' value at `round`, observed at `ts_ms`.
    pub fn update(&mut self, series: &[SeriesDef], round: u64, ts_ms: i64) {
        let ts_ns = ms_to_ns(ts_ms);
        let mut order = self.order.iter();
        for rm in &mut self.request.resource_metrics {
            for sm in &mut rm.scope_metrics {
                for m in &mut sm.metrics {
                    let (points, cumulative) = match &mut m.data {
                        Some(metric::Data::Gauge(g)) => (&mut g.data_points, false),
                        Some(metric::Data::Sum(s)) => (&mut s.data_points, true),
                        _ => continue,
                    };
                    for p in points {
                        let value = order
                            .next()
                            .and_then(|&i| series.get(i))
                            .map_or(0.0, |s| s.value(round));
                        p.time_unix_nano = ts_ns;
                        p.start_time_unix_nano = if cumulative { self.start_ns } else { 0 };
                        p.value = Some(number_data_point::Value::AsDouble(value));
                    }
                }
            }
        }
    }

    /// The request as it stands.
    pub fn request(&self) -> &ExportMetricsServiceRequest {
        &self.request
    }
}

fn ms_to_ns(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::series::generate;

    #[test]
    fn groups_by_resource_and_metric_and_updates_in_order() {
        let series = generate(600);
        let indices: Vec<usize> = (100..600).collect();
        let mut batch = OtlpBatch::new(&series, &indices, 1_000);
        assert_eq!(batch.len(), 500);
        // 500 series starting mid-host span two or three hosts × two jobs.
        let resources = batch.request().resource_metrics.len();
        assert!((2..=6).contains(&resources), "{resources} resources");
        batch.update(&series, 7, 1_700_000_000_000);
        let mut seen = 0;
        for rm in &batch.request().resource_metrics {
            for m in &rm.scope_metrics[0].metrics {
                let points = match &m.data {
                    Some(metric::Data::Gauge(g)) => &g.data_points,
                    Some(metric::Data::Sum(s)) => {
                        assert!(s.is_monotonic);
                        &s.data_points
                    }
                    other => panic!("unexpected data {other:?}"),
                };
                for p in points {
                    let s = &series[batch.order[seen]];
                    assert_eq!(s.name, m.name);
                    assert_eq!(p.time_unix_nano, 1_700_000_000_000_000_000);
                    assert_eq!(
                        p.value,
                        Some(number_data_point::Value::AsDouble(s.value(7)))
                    );
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 500);
    }
}

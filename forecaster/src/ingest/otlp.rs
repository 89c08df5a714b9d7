//! OTLP metrics and logs → the protocol-neutral types of the ingest module.
//!
//! Shared by the OTLP gRPC and HTTP front ends: they decode the wire format (protobuf, or
//! OTLP/JSON through [`decode_metrics_json`] / [`decode_logs_json`]) and hand the request to an
//! [`OtlpTranslator`].
//!
//! # Decisions
//!
//! * **Names** follow the OpenTelemetry spec's "Prometheus and OpenMetrics Compatibility"
//!   section: every character outside `[a-zA-Z0-9_:]` (metric names) or `[a-zA-Z0-9_]` (label
//!   names) becomes `_`, and runs of `_` collapse to one (so no label can start with the reserved
//!   `__`). The spec's regexes forbid a leading digit without saying how to fix it: metric names
//!   get a `_` prefix, label names the `key_` prefix used by the OpenTelemetry Collector's
//!   Prometheus translator. Unit suffixes are **not** appended (`system.filesystem.utilization`
//!   stays `system_filesystem_utilization`); monotonic sums get `_total` unless the name already
//!   ends with it. Attribute keys that sanitise to the same label join their values with `;`,
//!   ordered by original key. Attributes with an empty key or an empty value are dropped
//!   (Prometheus treats an empty label value as an absent label). Scope name and version are not
//!   turned into labels.
//! * **Labels**: the resource attributes listed in `promote`, `job` (`service.namespace/`
//!   `service.name`, or `service.name`) and `instance` (`service.instance.id`), overridden by the
//!   data point's attributes; `__name__` and `quantile` are set last. Non-string values are
//!   rendered as text: ints and doubles in decimal, bools as `true`/`false`, bytes as base64,
//!   arrays and key-value lists as JSON.
//! * **Kinds**: gauges → `Gauge`; monotonic cumulative sums → `Counter`; monotonic delta sums →
//!   `Delta`; non-monotonic sums → `Gauge` for both temporalities. For a non-monotonic *delta*
//!   sum the stored value is therefore the change over the point's interval, not the level (the
//!   level cannot be rebuilt without every earlier delta). A monotonic sum or a histogram with
//!   unspecified temporality is rejected (`UnsupportedData`), as is a point whose
//!   `time_unix_nano` is 0. Points flagged `NoRecordedValue` are skipped silently.
//! * **Histograms** (explicit and exponential) give `<name>_count` and `<name>_sum` (`Counter`
//!   when cumulative, `Delta` when delta) and p50/p90/p99 as `Gauge` series
//!   `<name>{quantile="0.5"|"0.9"|"0.99"}`. The quantiles describe the export interval: a delta
//!   point is used as is; for a cumulative one the previous bucket counts of the series are kept
//!   (at most `max_tracked_histograms` series) and the estimate uses the difference. The first
//!   point of a series, and a point after a reset (a count went down or the start time changed),
//!   is used as is, i.e. the estimate covers everything since the start time. A point not newer
//!   than the kept one (a retry) gives no quantiles. When the table is full, series idle for
//!   15 minutes of event time are evicted (at most once per minute of event time); if it is still
//!   full, the new series emits only `_count`/`_sum` and the batch counts its three quantiles as
//!   `UnsupportedData`.
//! * **Quantile estimate**: the bucket holding rank `q·total` is found and the value is
//!   interpolated inside it, as Prometheus' `histogram_quantile` does. Explicit buckets use linear
//!   interpolation; the lowest bucket starts at 0 (or at its upper bound when that is ≤ 0) and the
//!   `+Inf` bucket ends at the highest finite bound. `min`/`max`, when present, tighten every
//!   bucket (they are valid bounds for any interval, also the all-time ones of a cumulative
//!   point), so the lowest bucket starts at `min` and the `+Inf` bucket ends at `max`.
//!   Exponential buckets use log-linear interpolation (as Prometheus does for native
//!   histograms: the buckets are uniform in log space), the zero bucket linear interpolation over
//!   `[-zero_threshold, zero_threshold]` (or `[0, zero_threshold]` without negative buckets).
//!   Scales above 20 are downscaled to 20 (an exact merge of buckets), and further until the
//!   populated index range of each sign fits in 256 buckets; a scale below -10 (outside the
//!   spec) gives no quantiles. A quantile that is not finite is not emitted, and nor is one for an
//!   interval with no observations.
//! * **Summaries** give `<name>_count`, `<name>_sum` (`Counter`) and one `Gauge`
//!   `<name>{quantile="q"}` per quantile value.
//! * NaN and ±Inf values are passed through for the store to reject and count.
//! * **Logs**: one [`LogStreamWrite`] per distinct resource label set (resources with equal labels
//!   are merged), holding the records of all scopes. Translation never rejects a record.
//! * **OTLP/JSON**: `opentelemetry-proto`'s serde support handles the canonical encoding (64-bit
//!   ints as strings or numbers, lowerCamelCase, hex ids), but a flattened `oneof` turns any error
//!   inside it into "absent": a metric with one bad data point would silently vanish, and a
//!   double written as a string (`"1.5"`, `"NaN"`, `"Infinity"`, all allowed by the proto3 JSON
//!   mapping) silently loses its value. The decoders therefore first normalise the JSON tree and
//!   decode each metric's data strictly; see [`decode_metrics_json`].

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord as OtlpLogRecord, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as NumberValue;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use parking_lot::Mutex;
use serde_json::{Map, Number, Value as Json};
use xxhash_rust::xxh3::Xxh3;

use super::{
    Labels, LogRecord, LogStreamWrite, METRIC_NAME_LABEL, Point, RejectReason, SeriesWrite,
    ValueKind, WriteBatch,
};

/// The quantiles estimated from histograms, with their label values.
const QUANTILES: [(f64, &str); 3] = [(0.5, "0.5"), (0.9, "0.9"), (0.99, "0.99")];
/// The label carrying a quantile.
const QUANTILE_LABEL: &str = "quantile";
/// `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;
/// Most explicit bounds a histogram may have for quantiles to be estimated (bounds the memory
/// of a tracked series; SDK defaults use 15).
const MAX_EXPLICIT_BOUNDS: usize = 256;
/// Most buckets per sign kept for an exponential histogram (SDK default: 160); wider ranges are
/// downscaled.
const MAX_EXP_BUCKETS: i64 = 256;
/// Exponential histogram scales the spec allows.
const MIN_EXP_SCALE: i32 = -10;
const MAX_EXP_SCALE: i32 = 20;
/// A tracked cumulative histogram not updated for this long (event time) may be evicted.
const STALE_AFTER_NS: u64 = 15 * 60 * 1_000_000_000;
/// Eviction sweeps run at most this often (event time).
const SWEEP_EVERY_NS: u64 = 60 * 1_000_000_000;

/// Translates OTLP requests; shared by the gRPC and HTTP front ends (`Send + Sync`, used
/// concurrently through `&self`).
#[derive(Debug)]
pub struct OtlpTranslator {
    /// Resource attribute keys copied onto every series and log stream.
    promote: Vec<String>,
    /// Previous bucket counts of cumulative histograms, for interval quantiles.
    histograms: Mutex<HistogramTracker>,
}

/// The translation of one logs request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogsBatch {
    /// One stream per distinct resource label set.
    pub streams: Vec<LogStreamWrite>,
    /// Records rejected during translation (currently always 0: every record is kept).
    pub rejected: u64,
    /// The first translation problem, for the client's error message.
    pub first_error: Option<String>,
}

impl OtlpTranslator {
    /// `promote`: resource attribute keys copied onto every series as labels (sanitised, so
    /// `host.name` → `host_name`). `max_tracked_histograms`: how many cumulative histogram
    /// series keep their previous bucket counts (for interval quantiles).
    pub fn new(promote: &[String], max_tracked_histograms: usize) -> Self {
        Self {
            promote: promote.to_vec(),
            histograms: Mutex::new(HistogramTracker {
                max: max_tracked_histograms,
                entries: HashMap::new(),
                newest_ns: 0,
                last_sweep_ns: 0,
            }),
        }
    }

    /// Translates a metrics request into series for the store.
    pub fn metrics(&self, req: &ExportMetricsServiceRequest) -> WriteBatch {
        let mut out = Out::default();
        for rm in &req.resource_metrics {
            let resource = self.resource_labels(rm.resource.as_ref());
            for sm in &rm.scope_metrics {
                for metric in &sm.metrics {
                    self.metric(metric, &resource, &mut out);
                }
            }
        }
        out.batch
    }

    /// Translates a logs request; `now_ms` stamps records that carry neither a time nor an
    /// observed time.
    pub fn logs(&self, req: &ExportLogsServiceRequest, now_ms: i64) -> LogsBatch {
        let mut batch = LogsBatch::default();
        let mut by_labels: HashMap<Labels, usize> = HashMap::new();
        for rl in &req.resource_logs {
            let records: Vec<LogRecord> = rl
                .scope_logs
                .iter()
                .flat_map(|scope| &scope.log_records)
                .map(|record| log_record(record, now_ms))
                .collect();
            if records.is_empty() {
                continue;
            }
            let labels = self.resource_labels(rl.resource.as_ref());
            let stream = by_labels
                .get(&labels)
                .and_then(|&i| batch.streams.get_mut(i));
            match stream {
                Some(stream) => stream.records.extend(records),
                None => {
                    by_labels.insert(labels.clone(), batch.streams.len());
                    batch.streams.push(LogStreamWrite { labels, records });
                }
            }
        }
        batch
    }

    /// Promoted resource attributes plus `job` and `instance`, sorted by name.
    fn resource_labels(&self, resource: Option<&Resource>) -> Labels {
        let attrs = resource
            .map(|r| r.attributes.as_slice())
            .unwrap_or_default();
        let promoted: Vec<&KeyValue> = attrs
            .iter()
            .filter(|kv| self.promote.contains(&kv.key))
            .collect();
        let mut labels: BTreeMap<String, String> = attribute_labels(promoted).into_iter().collect();
        let find = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| any_text(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        if let Some(name) = find("service.name") {
            let job = match find("service.namespace") {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            };
            labels.insert("job".to_owned(), job);
        }
        if let Some(instance) = find("service.instance.id") {
            labels.insert("instance".to_owned(), instance);
        }
        labels.into_iter().collect()
    }

    fn metric(&self, metric: &Metric, resource: &Labels, out: &mut Out) {
        let name = sanitize_metric_name(&metric.name);
        let Some(data) = &metric.data else {
            out.reject(RejectReason::UnsupportedData, 1, || {
                format!("metric {:?} has no data of a known type", metric.name)
            });
            return;
        };
        let ctx = MetricCtx {
            otlp_name: &metric.name,
            name: &name,
            resource,
        };
        if name.is_empty() {
            let points = data_point_count(data);
            out.reject(RejectReason::MissingMetricName, points, || {
                "metric with an empty name".to_owned()
            });
            return;
        }
        match data {
            Data::Gauge(gauge) => {
                for p in &gauge.data_points {
                    number_point(&ctx, p, ValueKind::Gauge, out);
                }
            }
            Data::Sum(sum) => {
                let kind = if !sum.is_monotonic {
                    ValueKind::Gauge
                } else {
                    match temporality(sum.aggregation_temporality) {
                        Some(Temporality::Cumulative) => ValueKind::Counter,
                        Some(Temporality::Delta) => ValueKind::Delta,
                        None => {
                            ctx.reject_unspecified(sum.data_points.len(), out);
                            return;
                        }
                    }
                };
                let total_name;
                let ctx = if sum.is_monotonic && !name.ends_with("_total") {
                    total_name = format!("{name}_total");
                    MetricCtx {
                        name: &total_name,
                        ..ctx
                    }
                } else {
                    ctx
                };
                for p in &sum.data_points {
                    number_point(&ctx, p, kind, out);
                }
            }
            Data::Histogram(hist) => {
                let Some(t) = temporality(hist.aggregation_temporality) else {
                    ctx.reject_unspecified(hist.data_points.len(), out);
                    return;
                };
                for p in &hist.data_points {
                    self.histogram_point(&ctx, p, t, out);
                }
            }
            Data::ExponentialHistogram(hist) => {
                let Some(t) = temporality(hist.aggregation_temporality) else {
                    ctx.reject_unspecified(hist.data_points.len(), out);
                    return;
                };
                for p in &hist.data_points {
                    self.exponential_point(&ctx, p, t, out);
                }
            }
            Data::Summary(summary) => {
                for p in &summary.data_points {
                    summary_point(&ctx, p, out);
                }
            }
        }
    }

    fn histogram_point(
        &self,
        ctx: &MetricCtx<'_>,
        p: &HistogramDataPoint,
        t: Temporality,
        out: &mut Out,
    ) {
        let Some(head) = ctx.prelude(
            p.flags,
            p.time_unix_nano,
            p.start_time_unix_nano,
            &p.attributes,
            out,
        ) else {
            return;
        };
        head.push_count_sum(ctx, t.kind(), p.count, p.sum, out);
        if p.bucket_counts.is_empty() {
            return; // A histogram without buckets carries only count and sum.
        }
        if let Err(why) = validate_explicit(&p.explicit_bounds, &p.bucket_counts) {
            ctx.reject_quantiles(out, why);
            return;
        }
        let tracked;
        let counts: &[u64] = match t {
            Temporality::Delta => &p.bucket_counts,
            Temporality::Cumulative => {
                let key = histogram_key(b'E', &head.labels, ctx.name, &p.explicit_bounds);
                let state = ExplicitState {
                    start_ns: p.start_time_unix_nano,
                    time_ns: p.time_unix_nano,
                    count: p.count,
                    counts: p.bucket_counts.clone(),
                };
                match self.observe(key, state, ctx, out) {
                    Some(interval) => {
                        tracked = interval.counts;
                        &tracked
                    }
                    None => return,
                }
            }
        };
        if let Some(buckets) = explicit_buckets(&p.explicit_bounds, counts, p.min, p.max) {
            head.push_quantiles(ctx, &buckets, out);
        }
    }

    fn exponential_point(
        &self,
        ctx: &MetricCtx<'_>,
        p: &ExponentialHistogramDataPoint,
        t: Temporality,
        out: &mut Out,
    ) {
        let Some(head) = ctx.prelude(
            p.flags,
            p.time_unix_nano,
            p.start_time_unix_nano,
            &p.attributes,
            out,
        ) else {
            return;
        };
        head.push_count_sum(ctx, t.kind(), p.count, p.sum, out);
        let state = match ExpState::from_point(p) {
            Ok(state) => state,
            Err(why) => {
                ctx.reject_quantiles(out, why);
                return;
            }
        };
        let interval = match t {
            Temporality::Delta => state,
            Temporality::Cumulative => {
                let key = histogram_key(b'X', &head.labels, ctx.name, &[]);
                match self.observe(key, state, ctx, out) {
                    Some(interval) => interval,
                    None => return,
                }
            }
        };
        let buckets = interval.buckets(p.zero_threshold, p.min, p.max);
        head.push_quantiles(ctx, &buckets, out);
    }

    /// The interval state of a cumulative histogram, or `None` when no quantiles are due.
    fn observe<T: CumulativeState>(
        &self,
        key: u64,
        state: T,
        ctx: &MetricCtx<'_>,
        out: &mut Out,
    ) -> Option<T> {
        let mut tracker = self.histograms.lock();
        match tracker.observe(key, state) {
            Observed::Interval(interval) => Some(interval),
            Observed::Repeat => None,
            Observed::Untracked => {
                let max = tracker.max;
                drop(tracker);
                ctx.reject_quantiles(
                    out,
                    format!(
                        "the limit of {max} tracked cumulative histogram series is reached, \
                         so this new series gets no quantiles"
                    ),
                );
                None
            }
        }
    }
}

/// What the per-point code needs to know about its metric.
#[derive(Clone, Copy)]
struct MetricCtx<'a> {
    /// The name as sent, for messages.
    otlp_name: &'a str,
    /// The sanitised name (with `_total` for monotonic sums).
    name: &'a str,
    /// The resource's labels.
    resource: &'a Labels,
}

/// A data point's labels and times, once it is known to be kept.
struct PointHead {
    labels: Labels,
    ts_ms: i64,
    start_ms: i64,
}

impl MetricCtx<'_> {
    /// Skips `NoRecordedValue` points, rejects points without a timestamp, builds the labels.
    fn prelude(
        &self,
        flags: u32,
        time_ns: u64,
        start_ns: u64,
        attrs: &[KeyValue],
        out: &mut Out,
    ) -> Option<PointHead> {
        if flags & NO_RECORDED_VALUE != 0 {
            return None;
        }
        if time_ns == 0 {
            out.reject(RejectReason::UnsupportedData, 1, || {
                format!(
                    "metric {:?}: data point without a timestamp (time_unix_nano is 0)",
                    self.otlp_name
                )
            });
            return None;
        }
        Some(PointHead {
            labels: point_labels(self.resource, attrs),
            ts_ms: ns_to_ms(time_ns),
            start_ms: ns_to_ms(start_ns),
        })
    }

    fn reject_unspecified(&self, points: usize, out: &mut Out) {
        out.reject(RejectReason::UnsupportedData, points as u64, || {
            format!(
                "metric {:?}: aggregation temporality is unspecified",
                self.otlp_name
            )
        });
    }

    fn reject_quantiles(&self, out: &mut Out, why: String) {
        out.reject(
            RejectReason::UnsupportedData,
            QUANTILES.len() as u64,
            || {
                format!(
                    "metric {:?}: quantiles not estimated: {why}",
                    self.otlp_name
                )
            },
        );
    }
}

impl PointHead {
    fn point(&self, value: f64) -> Point {
        Point {
            ts_ms: self.ts_ms,
            value,
            start_ms: self.start_ms,
        }
    }

    fn push_count_sum(
        &self,
        ctx: &MetricCtx<'_>,
        kind: ValueKind,
        count: u64,
        sum: Option<f64>,
        out: &mut Out,
    ) {
        let count_name = format!("{}_count", ctx.name);
        out.push(
            series_labels(&self.labels, &count_name, None),
            kind,
            self.point(count as f64),
        );
        if let Some(sum) = sum {
            let sum_name = format!("{}_sum", ctx.name);
            out.push(
                series_labels(&self.labels, &sum_name, None),
                kind,
                self.point(sum),
            );
        }
    }

    fn push_quantiles(&self, ctx: &MetricCtx<'_>, buckets: &[Bucket], out: &mut Out) {
        let total = buckets
            .iter()
            .fold(0u64, |acc, b| acc.saturating_add(b.count));
        for (q, label) in QUANTILES {
            if let Some(value) = quantile(buckets, total, q) {
                out.push(
                    series_labels(&self.labels, ctx.name, Some(label)),
                    ValueKind::Gauge,
                    Point::new(self.ts_ms, value),
                );
            }
        }
    }
}

fn number_point(ctx: &MetricCtx<'_>, p: &NumberDataPoint, kind: ValueKind, out: &mut Out) {
    let Some(head) = ctx.prelude(
        p.flags,
        p.time_unix_nano,
        p.start_time_unix_nano,
        &p.attributes,
        out,
    ) else {
        return;
    };
    let value = match p.value {
        Some(NumberValue::AsDouble(v)) => v,
        Some(NumberValue::AsInt(v)) => v as f64,
        None => {
            out.reject(RejectReason::UnsupportedData, 1, || {
                format!("metric {:?}: data point without a value", ctx.otlp_name)
            });
            return;
        }
    };
    out.push(
        series_labels(&head.labels, ctx.name, None),
        kind,
        head.point(value),
    );
}

fn summary_point(ctx: &MetricCtx<'_>, p: &SummaryDataPoint, out: &mut Out) {
    let Some(head) = ctx.prelude(
        p.flags,
        p.time_unix_nano,
        p.start_time_unix_nano,
        &p.attributes,
        out,
    ) else {
        return;
    };
    head.push_count_sum(ctx, ValueKind::Counter, p.count, Some(p.sum), out);
    for qv in &p.quantile_values {
        let label = fmt_f64(qv.quantile);
        out.push(
            series_labels(&head.labels, ctx.name, Some(&label)),
            ValueKind::Gauge,
            head.point(qv.value),
        );
    }
}

fn data_point_count(data: &Data) -> u64 {
    let n = match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    };
    n as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Temporality {
    Delta,
    Cumulative,
}

impl Temporality {
    /// The kind of the `_count` and `_sum` series.
    fn kind(self) -> ValueKind {
        match self {
            Temporality::Delta => ValueKind::Delta,
            Temporality::Cumulative => ValueKind::Counter,
        }
    }
}

fn temporality(raw: i32) -> Option<Temporality> {
    if raw == AggregationTemporality::Delta as i32 {
        Some(Temporality::Delta)
    } else if raw == AggregationTemporality::Cumulative as i32 {
        Some(Temporality::Cumulative)
    } else {
        None
    }
}

fn ns_to_ms(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

/// A batch under construction; points of the same series are grouped.
#[derive(Default)]
struct Out {
    batch: WriteBatch,
    /// Hash of (kind, sorted labels) → indexes into `batch.series`.
    index: HashMap<u64, Vec<usize>>,
}

impl Out {
    /// Adds a point; `labels` must be sorted by name.
    fn push(&mut self, labels: Labels, kind: ValueKind, point: Point) {
        let hash = hash_labels(kind_tag(kind), &labels, &[]);
        let slots = self.index.entry(hash).or_default();
        for &i in slots.iter() {
            if let Some(series) = self.batch.series.get_mut(i)
                && series.kind == kind
                && series.labels == labels
            {
                series.points.push(point);
                return;
            }
        }
        slots.push(self.batch.series.len());
        self.batch.series.push(SeriesWrite {
            labels,
            kind,
            points: vec![point],
        });
    }

    fn reject(&mut self, reason: RejectReason, count: u64, message: impl FnOnce() -> String) {
        self.batch.reject(reason, count, message);
    }
}

fn kind_tag(kind: ValueKind) -> u8 {
    match kind {
        ValueKind::Gauge => b'g',
        ValueKind::Counter => b'c',
        ValueKind::Delta => b'd',
    }
}

/// Stable hash of a sorted label set plus extra `f64`s (histogram bounds). `0xfe`/`0xff` never
/// occur in UTF-8, so the encoding is unambiguous.
fn hash_labels(tag: u8, labels: &[(String, String)], extra: &[f64]) -> u64 {
    let mut h = Xxh3::new();
    h.update(&[tag]);
    for (name, value) in labels {
        h.update(name.as_bytes());
        h.update(&[0xff]);
        h.update(value.as_bytes());
        h.update(&[0xfe]);
    }
    for x in extra {
        h.update(&x.to_bits().to_le_bytes());
    }
    h.digest()
}

/// Key of a tracked cumulative histogram: its full label set, plus its bounds for explicit
/// buckets (a change of bounds starts a new series of state).
fn histogram_key(tag: u8, base: &Labels, name: &str, bounds: &[f64]) -> u64 {
    hash_labels(tag, &series_labels(base, name, None), bounds)
}

// ---------------------------------------------------------------------------------------------
// Names and labels
// ---------------------------------------------------------------------------------------------

/// Prometheus-compatible metric name per the OpenTelemetry spec's Prometheus compatibility
/// section: characters outside `[a-zA-Z0-9_:]` become `_`, runs of `_` collapse to one, and a
/// leading digit gets a `_` prefix. No unit or type suffix is added here.
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize(name, true, "_")
}

/// Prometheus-compatible label name per the OpenTelemetry spec's Prometheus compatibility
/// section: characters outside `[a-zA-Z0-9_]` become `_`, runs of `_` collapse to one (so
/// `__name__` becomes `_name_` and cannot clash with reserved labels), and a leading digit gets
/// the `key_` prefix (the OpenTelemetry Collector's convention).
pub fn sanitize_label_name(name: &str) -> String {
    sanitize(name, false, "key_")
}

fn sanitize(name: &str, allow_colon: bool, digit_prefix: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || (allow_colon && c == ':') {
            c
        } else {
            '_'
        };
        if c == '_' && out.ends_with('_') {
            continue;
        }
        out.push(c);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, digit_prefix);
    }
    out
}

/// Attributes as labels: sanitised names, colliding names' values joined with `;` in the order
/// of the original keys, empty names and values dropped. Sorted by name.
fn attribute_labels<'a>(attrs: impl IntoIterator<Item = &'a KeyValue>) -> Labels {
    let mut items: Vec<(String, &str, String)> = attrs
        .into_iter()
        .filter_map(|kv| {
            let name = sanitize_label_name(&kv.key);
            let value = any_text(kv.value.as_ref());
            (!name.is_empty() && !value.is_empty()).then_some((name, kv.key.as_str(), value))
        })
        .collect();
    // Stable: duplicate keys keep the order they were sent in.
    items.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut labels: Labels = Vec::with_capacity(items.len());
    for (name, _, value) in items {
        match labels.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(';');
                joined.push_str(&value);
            }
            _ => labels.push((name, value)),
        }
    }
    labels
}

/// The labels shared by every series of a data point: resource labels overridden by the
/// point's attributes, sorted by name, without `__name__`.
fn point_labels(resource: &Labels, attrs: &[KeyValue]) -> Labels {
    let mut labels: BTreeMap<String, String> = resource.iter().cloned().collect();
    labels.extend(attribute_labels(attrs));
    labels.into_iter().collect()
}

/// A series' full, sorted label set: `base` plus `__name__` and, for a quantile, `quantile`
/// (which replaces any attribute of that name).
fn series_labels(base: &Labels, name: &str, quantile: Option<&str>) -> Labels {
    let mut labels: Labels = Vec::with_capacity(base.len() + 2);
    labels.push((METRIC_NAME_LABEL.to_owned(), name.to_owned()));
    labels.extend(
        base.iter()
            .filter(|(k, _)| k != METRIC_NAME_LABEL && (quantile.is_none() || k != QUANTILE_LABEL))
            .cloned(),
    );
    if let Some(q) = quantile {
        labels.push((QUANTILE_LABEL.to_owned(), q.to_owned()));
    }
    labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    labels
}

// ---------------------------------------------------------------------------------------------
// Values as text
// ---------------------------------------------------------------------------------------------

/// An attribute value or log body as text: strings as is, scalars in decimal, bytes as base64,
/// arrays and key-value lists as JSON; an empty value is `""`.
fn any_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Av::StringValueStrindex(_)) => String::new(),
        Some(Av::StringValue(s)) => s.clone(),
        Some(Av::BoolValue(b)) => b.to_string(),
        Some(Av::IntValue(i)) => i.to_string(),
        Some(Av::DoubleValue(d)) => fmt_f64(*d),
        Some(Av::BytesValue(b)) => base64(b),
        Some(Av::ArrayValue(_) | Av::KvlistValue(_)) => {
            let mut out = String::new();
            write_json(value, &mut out);
            out
        }
    }
}

/// `value` as JSON; non-finite doubles become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`.
fn write_json(value: Option<&AnyValue>, out: &mut String) {
    match value.and_then(|v| v.value.as_ref()) {
        None | Some(Av::StringValueStrindex(_)) => out.push_str("null"),
        Some(Av::StringValue(s)) => push_json_string(s, out),
        Some(Av::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Av::IntValue(i)) => {
            let _ = write!(out, "{i}");
        }
        Some(Av::DoubleValue(d)) if d.is_finite() => out.push_str(&fmt_f64(*d)),
        Some(Av::DoubleValue(d)) => push_json_string(&fmt_f64(*d), out),
        Some(Av::BytesValue(b)) => push_json_string(&base64(b), out),
        Some(Av::ArrayValue(array)) => {
            out.push('[');
            for (i, item) in array.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(Some(item), out);
            }
            out.push(']');
        }
        Some(Av::KvlistValue(list)) => {
            out.push('{');
            for (i, kv) in list.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(&kv.key, out);
                out.push(':');
                write_json(kv.value.as_ref(), out);
            }
            out.push('}');
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Shortest text that reads back as `x`: integers without a fraction, `NaN`, `Infinity`,
/// `-Infinity` for the non-finite values.
fn fmt_f64(x: f64) -> String {
    if x.is_nan() {
        "NaN".to_owned()
    } else if x == f64::INFINITY {
        "Infinity".to_owned()
    } else if x == f64::NEG_INFINITY {
        "-Infinity".to_owned()
    } else if x == 0.0 {
        "0".to_owned()
    } else if x.fract() == 0.0 && x.abs() < 1e16 {
        format!("{x:.0}")
    } else {
        format!("{x:?}")
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

fn log_record(record: &OtlpLogRecord, now_ms: i64) -> LogRecord {
    let ts_ms = if record.time_unix_nano != 0 {
        ns_to_ms(record.time_unix_nano)
    } else if record.observed_time_unix_nano != 0 {
        ns_to_ms(record.observed_time_unix_nano)
    } else {
        now_ms
    };
    let severity = if record.severity_text.is_empty() {
        severity_name(record.severity_number).to_owned()
    } else {
        record.severity_text.clone()
    };
    LogRecord {
        ts_ms,
        severity,
        severity_number: record.severity_number,
        body: any_text(record.body.as_ref()),
        attributes: record
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), any_text(kv.value.as_ref())))
            .collect(),
    }
}

/// The severity text for an OTLP severity number (the spec's short names).
fn severity_name(number: i32) -> &'static str {
    match number {
        1..=4 => "TRACE",
        5..=8 => "DEBUG",
        9..=12 => "INFO",
        13..=16 => "WARN",
        17..=20 => "ERROR",
        21..=24 => "FATAL",
        _ => "UNSPECIFIED",
    }
}

// ---------------------------------------------------------------------------------------------
// Quantile estimation
// ---------------------------------------------------------------------------------------------

/// One histogram bucket with finite (or, after overflow, infinite) bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bucket {
    lo: f64,
    hi: f64,
    count: u64,
    /// Interpolate in log space (exponential buckets).
    log: bool,
}

impl Bucket {
    fn interpolate(&self, frac: f64) -> f64 {
        let same_sign = (self.lo > 0.0 && self.hi > 0.0) || (self.lo < 0.0 && self.hi < 0.0);
        if self.log && same_sign {
            self.lo * (self.hi / self.lo).powf(frac)
        } else {
            self.lo + (self.hi - self.lo) * frac
        }
    }
}

/// The `q` quantile of `total` observations spread over ascending `buckets`, as Prometheus'
/// `histogram_quantile`: find the bucket holding rank `q·total`, interpolate inside it.
fn quantile(buckets: &[Bucket], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for bucket in buckets.iter().filter(|b| b.count > 0) {
        let upto = below.saturating_add(bucket.count);
        if upto as f64 >= rank {
            let frac = ((rank - below as f64) / bucket.count as f64).clamp(0.0, 1.0);
            let value = bucket.interpolate(frac);
            return value.is_finite().then_some(value);
        }
        below = upto;
    }
    // Rounding left the rank just above the last bucket.
    buckets
        .iter()
        .rev()
        .find(|b| b.count > 0)
        .map(|b| b.hi)
        .filter(|v| v.is_finite())
}

fn validate_explicit(bounds: &[f64], counts: &[u64]) -> Result<(), String> {
    if counts.len() != bounds.len() + 1 {
        return Err(format!(
            "{} bucket counts for {} explicit bounds (expected {})",
            counts.len(),
            bounds.len(),
            bounds.len() + 1
        ));
    }
    if bounds.len() > MAX_EXPLICIT_BOUNDS {
        return Err(format!(
            "{} explicit bounds, more than the {MAX_EXPLICIT_BOUNDS} supported",
            bounds.len()
        ));
    }
    if bounds.iter().any(|b| b.is_nan()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err("explicit bounds are not strictly increasing".to_owned());
    }
    Ok(())
}

/// Buckets of an explicit-bounds histogram (validated by [`validate_explicit`]); `None` when
/// no bucket has a finite upper end (no bounds and no `max`).
fn explicit_buckets(
    bounds: &[f64],
    counts: &[u64],
    min: Option<f64>,
    max: Option<f64>,
) -> Option<Vec<Bucket>> {
    let min = min.filter(|m| m.is_finite());
    let max = max.filter(|m| m.is_finite());
    if bounds.is_empty() && max.is_none() {
        return None;
    }
    let mut buckets = Vec::with_capacity(counts.len());
    for (i, &count) in counts.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let mut lo = i
            .checked_sub(1)
            .and_then(|j| bounds.get(j))
            .copied()
            .unwrap_or(f64::NEG_INFINITY);
        let mut hi = bounds.get(i).copied().unwrap_or(f64::INFINITY);
        if let Some(m) = min {
            lo = lo.max(m);
        }
        if let Some(m) = max {
            hi = hi.min(m);
        }
        if lo == f64::NEG_INFINITY {
            // Lowest bucket: from 0, or a point bucket at its bound when that is ≤ 0.
            lo = if hi > 0.0 { 0.0 } else { hi };
        }
        if hi == f64::INFINITY {
            // +Inf bucket: clamp to the highest finite bound.
            hi = lo;
        }
        if lo > hi {
            lo = hi;
        }
        buckets.push(Bucket {
            lo,
            hi,
            count,
            log: false,
        });
    }
    Some(buckets)
}

// ---------------------------------------------------------------------------------------------
// Cumulative histogram state
// ---------------------------------------------------------------------------------------------

/// Previous points of cumulative histograms, bounded by `max` series.
#[derive(Debug)]
struct HistogramTracker {
    max: usize,
    entries: HashMap<u64, Tracked>,
    /// Newest point time seen (event time), drives eviction.
    newest_ns: u64,
    last_sweep_ns: u64,
}

#[derive(Debug)]
enum Tracked {
    Explicit(ExplicitState),
    Exponential(ExpState),
}

impl Tracked {
    fn time_ns(&self) -> u64 {
        match self {
            Tracked::Explicit(s) => s.time_ns,
            Tracked::Exponential(s) => s.time_ns,
        }
    }
}

enum Observed<T> {
    /// Quantiles should describe this (the difference to the previous point, or the point).
    Interval(T),
    /// Not newer than the kept point: no quantiles.
    Repeat,
    /// The table is full: no quantiles.
    Untracked,
}

/// A cumulative histogram point that can be kept and subtracted.
trait CumulativeState: Clone {
    fn start_ns(&self) -> u64;
    fn time_ns(&self) -> u64;
    /// `self - prev`, or `None` when a count went down (a reset).
    fn minus(&self, prev: &Self) -> Option<Self>;
    fn wrap(self) -> Tracked;
    fn peek(tracked: &Tracked) -> Option<&Self>;
}

impl HistogramTracker {
    fn observe<T: CumulativeState>(&mut self, key: u64, current: T) -> Observed<T> {
        self.newest_ns = self.newest_ns.max(current.time_ns());
        if let Some(slot) = self.entries.get_mut(&key) {
            let interval = match T::peek(slot) {
                Some(prev) if prev.start_ns() == current.start_ns() => {
                    if current.time_ns() <= prev.time_ns() {
                        return Observed::Repeat;
                    }
                    current.minus(prev).unwrap_or_else(|| current.clone())
                }
                // Start time changed: a reset, the point is the interval.
                _ => current.clone(),
            };
            *slot = current.wrap();
            return Observed::Interval(interval);
        }
        if self.entries.len() >= self.max {
            self.sweep();
            if self.entries.len() >= self.max {
                return Observed::Untracked;
            }
        }
        self.entries.insert(key, current.clone().wrap());
        Observed::Interval(current)
    }

    /// Evicts series idle for [`STALE_AFTER_NS`], at most once per [`SWEEP_EVERY_NS`].
    fn sweep(&mut self) {
        if self.last_sweep_ns != 0
            && self.newest_ns.saturating_sub(self.last_sweep_ns) < SWEEP_EVERY_NS
        {
            return;
        }
        let cutoff = self.newest_ns.saturating_sub(STALE_AFTER_NS);
        self.entries.retain(|_, t| t.time_ns() >= cutoff);
        self.last_sweep_ns = self.newest_ns;
    }
}

#[derive(Debug, Clone, PartialEq)]
struct ExplicitState {
    start_ns: u64,
    time_ns: u64,
    count: u64,
    counts: Vec<u64>,
}

impl CumulativeState for ExplicitState {
    fn start_ns(&self) -> u64 {
        self.start_ns
    }
    fn time_ns(&self) -> u64 {
        self.time_ns
    }
    fn minus(&self, prev: &Self) -> Option<Self> {
        if self.counts.len() != prev.counts.len() {
            return None;
        }
        let counts = self
            .counts
            .iter()
            .zip(&prev.counts)
            .map(|(now, before)| now.checked_sub(*before))
            .collect::<Option<Vec<u64>>>()?;
        Some(Self {
            start_ns: self.start_ns,
            time_ns: self.time_ns,
            count: self.count.checked_sub(prev.count)?,
            counts,
        })
    }
    fn wrap(self) -> Tracked {
        Tracked::Explicit(self)
    }
    fn peek(tracked: &Tracked) -> Option<&Self> {
        match tracked {
            Tracked::Explicit(s) => Some(s),
            Tracked::Exponential(_) => None,
        }
    }
}

/// Exponential buckets of one sign: `counts[j]` is bucket index `offset + j`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Dense {
    offset: i64,
    counts: Vec<u64>,
}

impl Dense {
    /// The buckets without leading and trailing zeros.
    fn new(offset: i32, counts: &[u64]) -> Self {
        let first = counts.iter().position(|&c| c != 0);
        let last = counts.iter().rposition(|&c| c != 0);
        match (first, last) {
            (Some(first), Some(last)) => Self {
                offset: i64::from(offset) + first as i64,
                counts: counts.get(first..=last).unwrap_or_default().to_vec(),
            },
            _ => Self::default(),
        }
    }

    fn last_index(&self) -> i64 {
        self.offset + self.counts.len() as i64 - 1
    }

    /// How many scale steps down make the index range fit in [`MAX_EXP_BUCKETS`].
    fn shift_to_fit(&self) -> u32 {
        if self.counts.is_empty() {
            return 0;
        }
        let mut by = 0;
        while by < 63 && (self.last_index() >> by) - (self.offset >> by) >= MAX_EXP_BUCKETS {
            by += 1;
        }
        by
    }

    /// The same buckets `by` scale steps down: index `i` merges into `i >> by`.
    fn downscale(&self, by: u32) -> Self {
        if by == 0 || self.counts.is_empty() {
            return self.clone();
        }
        let by = by.min(63);
        let first = self.offset >> by;
        let len = usize::try_from((self.last_index() >> by) - first + 1).unwrap_or(0);
        let mut counts = vec![0u64; len];
        for (j, &c) in self.counts.iter().enumerate() {
            let index = ((self.offset + j as i64) >> by) - first;
            if let Some(slot) = usize::try_from(index).ok().and_then(|i| counts.get_mut(i)) {
                *slot = slot.saturating_add(c);
            }
        }
        Self {
            offset: first,
            counts,
        }
    }

    /// `self - prev` at the same scale, `None` when a count went down.
    fn minus(&self, prev: &Self) -> Option<Self> {
        let mut counts = self.counts.clone();
        for (j, &c) in prev.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let index = prev.offset + j as i64 - self.offset;
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| counts.get_mut(i))?;
            *slot = slot.checked_sub(c)?;
        }
        Some(Self {
            offset: self.offset,
            counts,
        })
    }

    fn total(&self) -> u64 {
        self.counts.iter().fold(0u64, |a, &c| a.saturating_add(c))
    }
}

/// An exponential histogram point, at a scale within the spec's range.
#[derive(Debug, Clone, PartialEq)]
struct ExpState {
    start_ns: u64,
    time_ns: u64,
    count: u64,
    scale: i32,
    zero: u64,
    positive: Dense,
    negative: Dense,
}

impl ExpState {
    fn from_point(p: &ExponentialHistogramDataPoint) -> Result<Self, String> {
        if p.scale < MIN_EXP_SCALE {
            return Err(format!(
                "exponential histogram scale {} is below {MIN_EXP_SCALE}",
                p.scale
            ));
        }
        let dense = |b: Option<&Buckets>| {
            b.map_or_else(Dense::default, |b| Dense::new(b.offset, &b.bucket_counts))
        };
        let positive = dense(p.positive.as_ref());
        let negative = dense(p.negative.as_ref());
        let by = u32::try_from(p.scale.saturating_sub(MAX_EXP_SCALE))
            .unwrap_or(0)
            .max(positive.shift_to_fit())
            .max(negative.shift_to_fit());
        let scale = i64::from(p.scale) - i64::from(by);
        if scale < i64::from(MIN_EXP_SCALE) {
            return Err("exponential histogram buckets span too wide a range".to_owned());
        }
        Ok(Self {
            start_ns: p.start_time_unix_nano,
            time_ns: p.time_unix_nano,
            count: p.count,
            scale: i32::try_from(scale).unwrap_or(MIN_EXP_SCALE),
            zero: p.zero_count,
            positive: positive.downscale(by),
            negative: negative.downscale(by),
        })
    }

    /// Ascending buckets: negative (most negative first), zero, positive.
    fn buckets(&self, zero_threshold: f64, min: Option<f64>, max: Option<f64>) -> Vec<Bucket> {
        let width = (-f64::from(self.scale)).exp2();
        let bound = |index: i64| (index as f64 * width).exp2();
        let mut buckets = Vec::new();
        for (j, &count) in self.negative.counts.iter().enumerate().rev() {
            let index = self.negative.offset + j as i64;
            buckets.push(Bucket {
                lo: -bound(index + 1),
                hi: -bound(index),
                count,
                log: true,
            });
        }
        if self.zero > 0 {
            let t = if zero_threshold.is_finite() && zero_threshold > 0.0 {
                zero_threshold
            } else {
                0.0
            };
            buckets.push(Bucket {
                lo: if self.negative.total() > 0 { -t } else { 0.0 },
                hi: t,
                count: self.zero,
                log: false,
            });
        }
        for (j, &count) in self.positive.counts.iter().enumerate() {
            let index = self.positive.offset + j as i64;
            buckets.push(Bucket {
                lo: bound(index),
                hi: bound(index + 1),
                count,
                log: true,
            });
        }
        let min = min.filter(|m| m.is_finite());
        let max = max.filter(|m| m.is_finite());
        for b in &mut buckets {
            if let Some(m) = min {
                b.lo = b.lo.max(m);
            }
            if let Some(m) = max {
                b.hi = b.hi.min(m);
            }
            if b.lo > b.hi {
                b.lo = b.hi;
            }
        }
        buckets
    }
}

impl CumulativeState for ExpState {
    fn start_ns(&self) -> u64 {
        self.start_ns
    }
    fn time_ns(&self) -> u64 {
        self.time_ns
    }
    fn minus(&self, prev: &Self) -> Option<Self> {
        let scale = self.scale.min(prev.scale);
        let mine = u32::try_from(self.scale - scale).unwrap_or(0);
        let theirs = u32::try_from(prev.scale - scale).unwrap_or(0);
        Some(Self {
            start_ns: self.start_ns,
            time_ns: self.time_ns,
            count: self.count.checked_sub(prev.count)?,
            scale,
            zero: self.zero.checked_sub(prev.zero)?,
            positive: self
                .positive
                .downscale(mine)
                .minus(&prev.positive.downscale(theirs))?,
            negative: self
                .negative
                .downscale(mine)
                .minus(&prev.negative.downscale(theirs))?,
        })
    }
    fn wrap(self) -> Tracked {
        Tracked::Exponential(self)
    }
    fn peek(tracked: &Tracked) -> Option<&Self> {
        match tracked {
            Tracked::Exponential(s) => Some(s),
            Tracked::Explicit(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OTLP/JSON
// ---------------------------------------------------------------------------------------------

/// Stand-ins for NaN and ±Inf while the JSON tree (which cannot hold them) is decoded; finite
/// values no client plausibly sends, mapped back after decoding.
const NAN_STANDIN: f64 = f64::from_bits(0x7FEF_FFFF_FFFF_A001);
const POS_INF_STANDIN: f64 = f64::from_bits(0x7FEF_FFFF_FFFF_A002);
const NEG_INF_STANDIN: f64 = f64::from_bits(0xFFEF_FFFF_FFFF_A002);

/// The `Metric` fields of the `data` oneof.
const METRIC_DATA_KEYS: [&str; 5] = [
    "gauge",
    "sum",
    "histogram",
    "exponentialHistogram",
    "summary",
];

/// Decodes an OTLP/JSON metrics body (the OTLP spec's JSON encoding).
///
/// Beyond what `opentelemetry-proto`'s serde support accepts, this also accepts what the proto3
/// JSON mapping allows: doubles as strings (`"1.5"`, `"NaN"`, `"Infinity"`, `"-Infinity"`),
/// 32-bit ints as strings, enums by name (`"AGGREGATION_TEMPORALITY_CUMULATIVE"`), the original
/// `snake_case` field names, and `null` for any field. Trace and span ids of exemplars are
/// ignored (some encoders send base64, not hex). An error in a metric's data is reported with its
/// path instead of the metric silently disappearing.
pub fn decode_metrics_json(body: &[u8]) -> Result<ExportMetricsServiceRequest, String> {
    let fail = |e: &dyn std::fmt::Display| format!("invalid OTLP/JSON metrics body: {e}");
    let mut root: Json = serde_json::from_slice(body).map_err(|e| fail(&e))?;
    let mut standins = false;
    normalise(&mut root, &mut standins);
    let data = take_metric_data(&mut root).map_err(|e| fail(&e))?;
    let mut req: ExportMetricsServiceRequest =
        serde_json::from_value(root).map_err(|e| fail(&e))?;
    let metrics = req
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.scope_metrics.iter_mut())
        .flat_map(|sm| sm.metrics.iter_mut());
    for (metric, data) in metrics.zip(data) {
        metric.data = data;
    }
    if standins {
        restore_non_finite(&mut req);
    }
    Ok(req)
}

/// Decodes an OTLP/JSON logs body (the OTLP spec's JSON encoding), with the same leniencies as
/// [`decode_metrics_json`] (trace and span ids are ignored too: Presage does not use them).
pub fn decode_logs_json(body: &[u8]) -> Result<ExportLogsServiceRequest, String> {
    let fail = |e: &dyn std::fmt::Display| format!("invalid OTLP/JSON logs body: {e}");
    let mut root: Json = serde_json::from_slice(body).map_err(|e| fail(&e))?;
    if !root.is_object() {
        return Err(fail(&"request: expected a JSON object"));
    }
    let mut standins = false;
    normalise(&mut root, &mut standins);
    serde_json::from_value(root).map_err(|e| fail(&e))
}

/// Removes each metric's data field from the tree and decodes it strictly (serde's `flatten`
/// would turn an error into "no data"), in document order.
fn take_metric_data(root: &mut Json) -> Result<Vec<Option<Data>>, String> {
    let mut all = Vec::new();
    for (i, rm) in children(root, "resourceMetrics", "request")?
        .iter_mut()
        .enumerate()
    {
        let rm_path = format!("resourceMetrics[{i}]");
        for (j, sm) in children(rm, "scopeMetrics", &rm_path)?
            .iter_mut()
            .enumerate()
        {
            let sm_path = format!("{rm_path}.scopeMetrics[{j}]");
            for (k, metric) in children(sm, "metrics", &sm_path)?.iter_mut().enumerate() {
                let Json::Object(obj) = metric else {
                    return Err(format!("{sm_path}.metrics[{k}]: expected a JSON object"));
                };
                let path = format!("{sm_path}.metrics[{k}] ({:?})", obj_name(obj));
                let present: Vec<&str> = METRIC_DATA_KEYS
                    .into_iter()
                    .filter(|key| obj.contains_key(*key))
                    .collect();
                if present.len() > 1 {
                    return Err(format!(
                        "{path}: more than one data field ({})",
                        present.join(", ")
                    ));
                }
                let Some(key) = present.first().copied() else {
                    all.push(None);
                    continue;
                };
                let value = obj.remove(key).unwrap_or(Json::Null);
                let mut wrapper = Map::new();
                wrapper.insert(key.to_owned(), value);
                let data: Data = serde_json::from_value(Json::Object(wrapper))
                    .map_err(|e| format!("{path}.{key}: {e}"))?;
                all.push(Some(data));
            }
        }
    }
    Ok(all)
}

/// The array under `key` of the object `parent` (empty when absent). Anything else is an error,
/// which keeps this walk aligned with serde's (serde would also accept an array for a message).
fn children<'a>(parent: &'a mut Json, key: &str, path: &str) -> Result<&'a mut [Json], String> {
    let Json::Object(obj) = parent else {
        return Err(format!("{path}: expected a JSON object"));
    };
    match obj.get_mut(key) {
        None => Ok(&mut []),
        Some(Json::Array(items)) => Ok(items.as_mut_slice()),
        Some(_) => Err(format!("{path}.{key}: expected an array")),
    }
}

fn obj_name(obj: &Map<String, Json>) -> &str {
    obj.get("name").and_then(Json::as_str).unwrap_or_default()
}

/// Rewrites what the proto3 JSON mapping allows into what the generated serde code accepts.
/// Recursion depth is bounded by `serde_json`'s own nesting limit.
fn normalise(value: &mut Json, standins: &mut bool) {
    match value {
        Json::Array(items) => {
            for item in items {
                normalise(item, standins);
            }
        }
        Json::Object(map) => normalise_object(map, standins),
        _ => {}
    }
}

fn normalise_object(map: &mut Map<String, Json>, standins: &mut bool) {
    let rebuild = map
        .iter()
        .any(|(k, v)| k.contains('_') || v.is_null() || k == "traceId" || k == "spanId");
    if rebuild {
        for (key, value) in std::mem::take(map) {
            let key = if key.contains('_') {
                lower_camel(&key)
            } else {
                key
            };
            if value.is_null() || key == "traceId" || key == "spanId" {
                continue;
            }
            map.entry(key).or_insert(value);
        }
    }
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "asDouble" | "sum" | "min" | "max" | "zeroThreshold" => fix_double(child, standins),
            "explicitBounds" => {
                if let Json::Array(items) = child {
                    for item in items {
                        fix_double(item, standins);
                    }
                }
            }
            "timeUnixNano"
            | "startTimeUnixNano"
            | "observedTimeUnixNano"
            | "count"
            | "zeroCount"
            | "asInt"
            | "intValue"
            | "scale"
            | "offset"
            | "flags"
            | "droppedAttributesCount" => fix_int(child),
            "bucketCounts" => {
                if let Json::Array(items) = child {
                    items.iter_mut().for_each(fix_int);
                }
            }
            "aggregationTemporality" => fix_enum(child, |name| {
                AggregationTemporality::from_str_name(name).map(|t| t as i32)
            }),
            "severityNumber" => fix_enum(child, |name| {
                SeverityNumber::from_str_name(name).map(|s| s as i32)
            }),
            "arrayValue" | "kvlistValue" => {
                if let Json::Object(inner) = child {
                    inner
                        .entry("values")
                        .or_insert_with(|| Json::Array(Vec::new()));
                }
            }
            _ => {}
        }
        normalise(child, standins);
    }
    // AnyValue.doubleValue as a string: a number if finite, else kept as text.
    if let Some(Json::String(text)) = map.get("doubleValue") {
        let text = text.clone();
        match text.trim().parse::<f64>() {
            Ok(x) if x.is_finite() => {
                if let Some(n) = Number::from_f64(x) {
                    map.insert("doubleValue".to_owned(), Json::Number(n));
                }
            }
            Ok(_) => {
                map.remove("doubleValue");
                map.insert("stringValue".to_owned(), Json::String(text));
            }
            Err(_) => {}
        }
    }
}

fn lower_camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A double written as a string becomes a number; non-finite ones become stand-ins.
fn fix_double(value: &mut Json, standins: &mut bool) {
    let Json::String(text) = value else {
        return;
    };
    let Ok(x) = text.trim().parse::<f64>() else {
        return; // Left for serde to report.
    };
    let x = if x.is_nan() {
        *standins = true;
        NAN_STANDIN
    } else if x == f64::INFINITY {
        *standins = true;
        POS_INF_STANDIN
    } else if x == f64::NEG_INFINITY {
        *standins = true;
        NEG_INF_STANDIN
    } else {
        x
    };
    if let Some(n) = Number::from_f64(x) {
        *value = Json::Number(n);
    }
}

/// An integer written as a string or as an integral float becomes an integer.
fn fix_int(value: &mut Json) {
    let parsed = match value {
        Json::String(text) => {
            let text = text.trim();
            if let Ok(u) = text.parse::<u64>() {
                Some(Json::from(u))
            } else if let Ok(i) = text.parse::<i64>() {
                Some(Json::from(i))
            } else {
                text.parse::<f64>().ok().and_then(integral)
            }
        }
        Json::Number(n) if n.is_f64() => n.as_f64().and_then(integral),
        _ => None,
    };
    if let Some(parsed) = parsed {
        *value = parsed;
    }
}

fn integral(x: f64) -> Option<Json> {
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if x.fract() != 0.0 || !x.is_finite() {
        None
    } else if (0.0..2.0 * TWO_63).contains(&x) {
        Some(Json::from(x as u64))
    } else if (-TWO_63..0.0).contains(&x) {
        Some(Json::from(x as i64))
    } else {
        None
    }
}

/// An enum given by name (or as a numeric string) becomes its number.
fn fix_enum(value: &mut Json, by_name: impl Fn(&str) -> Option<i32>) {
    if let Json::String(text) = value {
        let number = by_name(text).or_else(|| text.trim().parse::<i32>().ok());
        if let Some(number) = number {
            *value = Json::from(number);
        }
    }
}

fn restore_non_finite(req: &mut ExportMetricsServiceRequest) {
    fn fix(x: &mut f64) {
        let bits = x.to_bits();
        if bits == NAN_STANDIN.to_bits() {
            *x = f64::NAN;
        } else if bits == POS_INF_STANDIN.to_bits() {
            *x = f64::INFINITY;
        } else if bits == NEG_INF_STANDIN.to_bits() {
            *x = f64::NEG_INFINITY;
        }
    }
    fn fix_opt(x: &mut Option<f64>) {
        if let Some(x) = x {
            fix(x);
        }
    }
    fn fix_number(p: &mut NumberDataPoint) {
        if let Some(NumberValue::AsDouble(x)) = &mut p.value {
            fix(x);
        }
    }
    let metrics = req
        .resource_metrics
        .iter_mut()
        .flat_map(|rm| rm.scope_metrics.iter_mut())
        .flat_map(|sm| sm.metrics.iter_mut());
    for metric in metrics {
        match &mut metric.data {
            Some(Data::Gauge(g)) => g.data_points.iter_mut().for_each(fix_number),
            Some(Data::Sum(s)) => s.data_points.iter_mut().for_each(fix_number),
            Some(Data::Histogram(h)) => {
                for p in &mut h.data_points {
                    fix_opt(&mut p.sum);
                    fix_opt(&mut p.min);
                    fix_opt(&mut p.max);
                    p.explicit_bounds.iter_mut().for_each(fix);
                }
            }
            Some(Data::ExponentialHistogram(h)) => {
                for p in &mut h.data_points {
                    fix_opt(&mut p.sum);
                    fix_opt(&mut p.min);
                    fix_opt(&mut p.max);
                    fix(&mut p.zero_threshold);
                }
            }
            Some(Data::Summary(s)) => {
                for p in &mut s.data_points {
                    fix(&mut p.sum);
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::logs::v1::{ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
    use opentelemetry_proto::tonic::metrics::v1::{
        ExponentialHistogram, Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
    };
    use prost::Message as _;

    /// 2023-11-14T22:13:20Z in ns.
    const T0: u64 = 1_700_000_000_000_000_000;
    const T0_MS: i64 = 1_700_000_000_000;
    const SEC: u64 = 1_000_000_000;
    const START: u64 = T0 - 3600 * SEC;

    fn text(v: &str) -> AnyValue {
        AnyValue {
            value: Some(Av::StringValue(v.to_owned())),
        }
    }

    fn kv(key: &str, value: AnyValue) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(value),
            ..Default::default()
        }
    }

    fn kvs(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
        pairs.iter().map(|(k, v)| kv(k, text(v))).collect()
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.to_owned(),
            unit: unit.to_owned(),
            data: Some(data),
            ..Default::default()
        }
    }

    fn number(time: u64, value: f64, attrs: &[(&str, &str)]) -> NumberDataPoint {
        NumberDataPoint {
            attributes: kvs(attrs),
            start_time_unix_nano: START,
            time_unix_nano: time,
            value: Some(NumberValue::AsDouble(value)),
            ..Default::default()
        }
    }

    fn gauge(name: &str, points: Vec<NumberDataPoint>) -> Metric {
        metric(
            name,
            "",
            Data::Gauge(Gauge {
                data_points: points,
            }),
        )
    }

    fn sum(
        name: &str,
        monotonic: bool,
        t: AggregationTemporality,
        points: Vec<NumberDataPoint>,
    ) -> Metric {
        metric(
            name,
            "",
            Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: t as i32,
                is_monotonic: monotonic,
            }),
        )
    }

    fn hist_point(time: u64, start: u64, bounds: &[f64], counts: &[u64]) -> HistogramDataPoint {
        HistogramDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: counts.iter().fold(0, |a: u64, &c| a.saturating_add(c)),
            sum: Some(42.0),
            bucket_counts: counts.to_vec(),
            explicit_bounds: bounds.to_vec(),
            ..Default::default()
        }
    }

    fn histogram(name: &str, t: AggregationTemporality, points: Vec<HistogramDataPoint>) -> Metric {
        metric(
            name,
            "s",
            Data::Histogram(Histogram {
                data_points: points,
                aggregation_temporality: t as i32,
            }),
        )
    }

    fn exp_histogram(
        name: &str,
        t: AggregationTemporality,
        points: Vec<ExponentialHistogramDataPoint>,
    ) -> Metric {
        metric(
            name,
            "s",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points,
                aggregation_temporality: t as i32,
            }),
        )
    }

    /// An exponential histogram point holding `samples` at `scale`, built the way the SDK
    /// does: a value `v` goes to bucket `ceil(log2(|v|)·2^scale) - 1`.
    fn exp_point(
        scale: i32,
        samples: &[f64],
        time: u64,
        start: u64,
    ) -> ExponentialHistogramDataPoint {
        let factor = f64::from(scale).exp2();
        let mut positive = BTreeMap::<i64, u64>::new();
        let mut negative = BTreeMap::<i64, u64>::new();
        let mut zero = 0;
        for &v in samples {
            if v == 0.0 {
                zero += 1;
                continue;
            }
            let index = (v.abs().log2() * factor).ceil() as i64 - 1;
            let side = if v > 0.0 {
                &mut positive
            } else {
                &mut negative
            };
            *side.entry(index).or_default() += 1;
        }
        let dense = |m: &BTreeMap<i64, u64>| {
            let (&lo, _) = m.first_key_value()?;
            let (&hi, _) = m.last_key_value()?;
            Some(Buckets {
                offset: i32::try_from(lo).ok()?,
                bucket_counts: (lo..=hi).map(|i| m.get(&i).copied().unwrap_or(0)).collect(),
            })
        };
        ExponentialHistogramDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: time,
            count: samples.len() as u64,
            sum: Some(samples.iter().sum()),
            scale,
            zero_count: zero,
            positive: dense(&positive),
            negative: dense(&negative),
            ..Default::default()
        }
    }

    /// The series named `name` whose labels include all of `with`.
    fn find<'a>(
        batch: &'a WriteBatch,
        name: &str,
        with: &[(&str, &str)],
    ) -> Option<&'a SeriesWrite> {
        batch.series.iter().find(|s| {
            label(s, METRIC_NAME_LABEL) == Some(name)
                && with.iter().all(|(k, v)| label(s, k) == Some(*v))
        })
    }

    fn series<'a>(batch: &'a WriteBatch, name: &str, with: &[(&str, &str)]) -> &'a SeriesWrite {
        match find(batch, name, with) {
            Some(s) => s,
            None => panic!("no series {name} {with:?} in {:#?}", batch.series),
        }
    }

    fn label<'a>(s: &'a SeriesWrite, name: &str) -> Option<&'a str> {
        s.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn names(batch: &WriteBatch) -> Vec<&str> {
        let mut names: Vec<&str> = batch
            .series
            .iter()
            .filter_map(|s| label(s, METRIC_NAME_LABEL))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The newest p50, p90, p99 of histogram `name` (`None` when not emitted).
    fn quantiles(batch: &WriteBatch, name: &str) -> [Option<f64>; 3] {
        QUANTILES.map(|(_, q)| {
            find(batch, name, &[(QUANTILE_LABEL, q)])
                .and_then(|s| s.points.last())
                .map(|p| p.value)
        })
    }

    /// Quantiles are computed in f64 from exact inputs: 1e-9 absorbs rounding only.
    fn assert_quantiles(actual: [Option<f64>; 3], expected: [Option<f64>; 3], case: &str) {
        for (a, e) in actual.iter().zip(&expected) {
            match (a, e) {
                (Some(a), Some(e)) => {
                    assert!((a - e).abs() < 1e-9, "{case}: {actual:?} != {expected:?}")
                }
                (None, None) => {}
                _ => panic!("{case}: {actual:?} != {expected:?}"),
            }
        }
    }

    /// Label or attribute pairs.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    /// (case, bounds, counts, min, max, expected p50/p90/p99).
    type HistogramCase<'a> = (
        &'a str,
        &'a [f64],
        &'a [u64],
        Option<f64>,
        Option<f64>,
        [Option<f64>; 3],
    );

    fn translator() -> OtlpTranslator {
        OtlpTranslator::new(&["host.name".to_owned()], 100)
    }

    #[test]
    fn translator_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<OtlpTranslator>();
    }

    #[test]
    fn sanitises_metric_and_label_names() {
        let metric_cases = [
            (
                "system.filesystem.utilization",
                "system_filesystem_utilization",
            ),
            (
                "http.server.request.duration",
                "http_server_request_duration",
            ),
            ("a..b", "a_b"),
            ("a__b", "a_b"),
            ("a-b/c d", "a_b_c_d"),
            ("2xx.count", "_2xx_count"),
            ("ns:recorded", "ns:recorded"),
            ("métrique", "m_trique"),
            ("_private", "_private"),
            ("", ""),
        ];
        for (input, expected) in metric_cases {
            assert_eq!(sanitize_metric_name(input), expected, "metric {input:?}");
        }
        let label_cases = [
            ("host.name", "host_name"),
            ("k8s.pod.name", "k8s_pod_name"),
            ("http.status_code", "http_status_code"),
            ("a:b", "a_b"),
            ("0day", "key_0day"),
            ("__name__", "_name_"),
            ("", ""),
        ];
        for (input, expected) in label_cases {
            assert_eq!(sanitize_label_name(input), expected, "label {input:?}");
        }
    }

    #[test]
    fn names_kinds_and_total_suffix() {
        use AggregationTemporality::{Cumulative, Delta};
        let p = || vec![number(T0, 3.0, &[])];
        // (metric, expected name, kind). Units are never appended.
        let cases = [
            (
                metric(
                    "system.filesystem.utilization",
                    "1",
                    Data::Gauge(Gauge { data_points: p() }),
                ),
                "system_filesystem_utilization",
                ValueKind::Gauge,
            ),
            (
                sum("http.server.requests", true, Cumulative, p()),
                "http_server_requests_total",
                ValueKind::Counter,
            ),
            (
                sum("bytes.sent_total", true, Cumulative, p()),
                "bytes_sent_total",
                ValueKind::Counter,
            ),
            (
                sum("jobs.done", true, Delta, p()),
                "jobs_done_total",
                ValueKind::Delta,
            ),
            (
                sum("queue.depth", false, Cumulative, p()),
                "queue_depth",
                ValueKind::Gauge,
            ),
            (
                sum("queue.change", false, Delta, p()),
                "queue_change",
                ValueKind::Gauge,
            ),
        ];
        for (m, name, kind) in cases {
            let batch = translator().metrics(&request(vec![], vec![m]));
            assert_eq!(names(&batch), [name]);
            let s = series(&batch, name, &[]);
            assert_eq!(s.kind, kind, "{name}");
            assert_eq!(
                s.points,
                [Point {
                    ts_ms: T0_MS,
                    value: 3.0,
                    start_ms: T0_MS - 3_600_000
                }],
                "{name}"
            );
            assert!(batch.rejected.is_empty());
        }
    }

    #[test]
    fn colliding_attribute_names_join_values_in_key_order() {
        let attrs = [
            ("a.b", "dot"),
            ("a_b", "underscore"),
            ("a-b", "dash"),
            ("empty", ""),
        ];
        let batch = translator().metrics(&request(
            vec![],
            vec![gauge("m", vec![number(T0, 1.0, &attrs)])],
        ));
        let s = series(&batch, "m", &[]);
        // '-' < '.' < '_' in byte order; the empty value is dropped.
        assert_eq!(
            s.labels,
            [
                ("__name__".to_owned(), "m".to_owned()),
                ("a_b".to_owned(), "dash;dot;underscore".to_owned()),
            ]
        );
    }

    #[test]
    fn resource_attributes_become_labels() {
        let full = [
            ("service.name", "cart"),
            ("service.namespace", "shop"),
            ("service.instance.id", "i-1"),
            ("host.name", "h1"),
            ("k8s.pod.name", "not-promoted"),
        ];
        // (resource attributes, point attributes, expected labels besides __name__).
        let cases: [(Pairs<'_>, Pairs<'_>, Pairs<'_>); 4] = [
            (
                &full,
                &[],
                &[
                    ("host_name", "h1"),
                    ("instance", "i-1"),
                    ("job", "shop/cart"),
                ],
            ),
            (&[("service.name", "cart")], &[], &[("job", "cart")]),
            (
                &full,
                &[("host.name", "point"), ("job", "mine")],
                &[("host_name", "point"), ("instance", "i-1"), ("job", "mine")],
            ),
            (
                &[("service.namespace", "shop"), ("host.name", "h1")],
                &[("x", "1")],
                &[("host_name", "h1"), ("x", "1")],
            ),
        ];
        for (resource, attrs, expected) in cases {
            let batch = translator().metrics(&request(
                kvs(resource),
                vec![gauge("m", vec![number(T0, 1.0, attrs)])],
            ));
            let s = series(&batch, "m", &[]);
            let mut want: Labels = expected
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            want.push(("__name__".to_owned(), "m".to_owned()));
            want.sort();
            let mut got = s.labels.clone();
            got.sort();
            assert_eq!(got, want, "resource {resource:?}, attributes {attrs:?}");
        }
    }

    #[test]
    fn attribute_values_render_as_text() {
        let array = AnyValue {
            value: Some(Av::ArrayValue(ArrayValue {
                values: vec![
                    text("a\"b"),
                    AnyValue {
                        value: Some(Av::IntValue(1)),
                    },
                    AnyValue {
                        value: Some(Av::BoolValue(true)),
                    },
                ],
            })),
        };
        let map = AnyValue {
            value: Some(Av::KvlistValue(KeyValueList {
                values: vec![
                    kv("k", text("v")),
                    kv(
                        "n",
                        AnyValue {
                            value: Some(Av::DoubleValue(1.5)),
                        },
                    ),
                ],
            })),
        };
        let cases = [
            (
                AnyValue {
                    value: Some(Av::IntValue(-42)),
                },
                "-42",
            ),
            (
                AnyValue {
                    value: Some(Av::BoolValue(false)),
                },
                "false",
            ),
            (
                AnyValue {
                    value: Some(Av::DoubleValue(1.5)),
                },
                "1.5",
            ),
            (
                AnyValue {
                    value: Some(Av::DoubleValue(2.0)),
                },
                "2",
            ),
            (
                AnyValue {
                    value: Some(Av::DoubleValue(f64::NAN)),
                },
                "NaN",
            ),
            (
                AnyValue {
                    value: Some(Av::BytesValue(vec![1, 2, 3, 4])),
                },
                "AQIDBA==",
            ),
            (array, r#"["a\"b",1,true]"#),
            (map, r#"{"k":"v","n":1.5}"#),
        ];
        for (value, expected) in cases {
            let point = NumberDataPoint {
                attributes: vec![kv("attr", value.clone())],
                ..number(T0, 1.0, &[])
            };
            let batch = translator().metrics(&request(vec![], vec![gauge("m", vec![point])]));
            assert_eq!(
                label(series(&batch, "m", &[]), "attr"),
                Some(expected),
                "{value:?}"
            );
        }
    }

    #[test]
    fn number_points_values_and_times() {
        let int_point = NumberDataPoint {
            value: Some(NumberValue::AsInt(7)),
            start_time_unix_nano: 0,
            ..number(T0 + 1_500_000, 0.0, &[("k", "int")])
        };
        let batch = translator().metrics(&request(
            vec![],
            vec![gauge(
                "m",
                vec![int_point, number(T0 + 2 * SEC, 2.5, &[("k", "double")])],
            )],
        ));
        assert_eq!(
            series(&batch, "m", &[("k", "int")]).points,
            [Point {
                ts_ms: T0_MS + 1,
                value: 7.0,
                start_ms: 0
            }]
        );
        assert_eq!(
            series(&batch, "m", &[("k", "double")]).points,
            [Point {
                ts_ms: T0_MS + 2000,
                value: 2.5,
                start_ms: T0_MS - 3_600_000
            }]
        );
    }

    #[test]
    fn points_of_one_series_are_grouped() {
        let batch = translator().metrics(&request(
            vec![],
            vec![gauge(
                "m",
                vec![number(T0, 1.0, &[]), number(T0 + SEC, 2.0, &[])],
            )],
        ));
        assert_eq!(batch.series.len(), 1);
        assert_eq!(batch.point_count(), 2);
    }

    #[test]
    fn rejections() {
        use AggregationTemporality::{Cumulative, Unspecified};
        let no_value = NumberDataPoint {
            value: None,
            ..number(T0, 0.0, &[])
        };
        // (metric, reason, count, message fragment)
        let cases = [
            (
                gauge("m", vec![number(0, 1.0, &[]), number(T0, 1.0, &[])]),
                RejectReason::UnsupportedData,
                1,
                "time_unix_nano is 0",
            ),
            (
                gauge("m", vec![no_value]),
                RejectReason::UnsupportedData,
                1,
                "without a value",
            ),
            (
                Metric {
                    name: "m".to_owned(),
                    ..Default::default()
                },
                RejectReason::UnsupportedData,
                1,
                "no data",
            ),
            (
                gauge("...", vec![number(T0, 1.0, &[])]),
                RejectReason::UnsupportedData,
                0,
                "",
            ),
            (
                gauge("", vec![number(T0, 1.0, &[]), number(T0, 1.0, &[])]),
                RejectReason::MissingMetricName,
                2,
                "empty name",
            ),
            (
                sum("c", true, Unspecified, vec![number(T0, 1.0, &[])]),
                RejectReason::UnsupportedData,
                1,
                "temporality",
            ),
            (
                histogram(
                    "h",
                    Unspecified,
                    vec![hist_point(T0, START, &[1.0], &[1, 0])],
                ),
                RejectReason::UnsupportedData,
                1,
                "temporality",
            ),
            (
                histogram(
                    "h",
                    Cumulative,
                    vec![hist_point(T0, START, &[1.0], &[1, 0, 3])],
                ),
                RejectReason::UnsupportedData,
                3,
                "3 bucket counts for 1 explicit bounds",
            ),
            (
                histogram(
                    "h",
                    Cumulative,
                    vec![hist_point(T0, START, &[2.0, 1.0], &[1, 0, 3])],
                ),
                RejectReason::UnsupportedData,
                3,
                "not strictly increasing",
            ),
        ];
        for (m, reason, count, fragment) in cases {
            let name = m.name.clone();
            let batch = translator().metrics(&request(vec![], vec![m]));
            if count == 0 {
                assert!(batch.rejected.is_empty(), "{name}: {:?}", batch.rejected);
                continue;
            }
            assert_eq!(batch.rejected, [(reason, count)], "{name}");
            let message = batch.first_error.unwrap_or_default();
            assert!(message.contains(fragment), "{name}: {message}");
        }
    }

    #[test]
    fn no_recorded_value_points_are_skipped() {
        let flagged = NumberDataPoint {
            flags: 1,
            ..number(T0, 1.0, &[("k", "flagged")])
        };
        let flagged_hist = HistogramDataPoint {
            flags: 1,
            ..hist_point(T0, START, &[1.0], &[1, 1])
        };
        let batch = translator().metrics(&request(
            vec![],
            vec![
                gauge("m", vec![flagged, number(T0, 2.0, &[("k", "kept")])]),
                histogram("h", AggregationTemporality::Cumulative, vec![flagged_hist]),
            ],
        ));
        assert_eq!(names(&batch), ["m"]);
        assert_eq!(batch.series.len(), 1);
        assert_eq!(label(&batch.series[0], "k"), Some("kept"));
        assert!(batch.rejected.is_empty());
        assert_eq!(batch.first_error, None);
    }

    #[test]
    fn delta_histogram_quantiles() {
        // (case, bounds, counts, min, max, expected p50/p90/p99), worked by hand with linear
        // interpolation inside the bucket holding rank q·total.
        let cases: [HistogramCase<'_>; 9] = [
            (
                "middle buckets",
                &[1.0, 2.0, 4.0],
                &[1, 2, 1, 0],
                None,
                None,
                [Some(1.5), Some(3.2), Some(3.92)],
            ),
            (
                "+Inf bucket up to max",
                &[1.0],
                &[0, 2],
                None,
                Some(5.0),
                [Some(3.0), Some(4.6), Some(4.96)],
            ),
            (
                "+Inf bucket clamps",
                &[1.0],
                &[0, 2],
                None,
                None,
                [Some(1.0), Some(1.0), Some(1.0)],
            ),
            (
                "lowest bucket from 0",
                &[10.0],
                &[2, 0],
                None,
                None,
                [Some(5.0), Some(9.0), Some(9.9)],
            ),
            (
                "lowest bucket from min",
                &[10.0],
                &[2, 0],
                Some(4.0),
                None,
                [Some(7.0), Some(9.4), Some(9.94)],
            ),
            (
                "negative bound",
                &[-5.0, 0.0],
                &[2, 0, 0],
                None,
                None,
                [Some(-5.0), Some(-5.0), Some(-5.0)],
            ),
            (
                "no bounds, min and max",
                &[],
                &[4],
                Some(2.0),
                Some(6.0),
                [Some(4.0), Some(5.6), Some(5.96)],
            ),
            (
                "no bounds, no max",
                &[],
                &[4],
                None,
                None,
                [None, None, None],
            ),
            (
                "empty interval",
                &[1.0, 2.0],
                &[0, 0, 0],
                None,
                None,
                [None, None, None],
            ),
        ];
        for (case, bounds, counts, min, max, expected) in cases {
            let point = HistogramDataPoint {
                min,
                max,
                ..hist_point(T0, T0 - 10 * SEC, bounds, counts)
            };
            let batch = translator().metrics(&request(
                vec![],
                vec![histogram(
                    "rpc.duration",
                    AggregationTemporality::Delta,
                    vec![point],
                )],
            ));
            assert!(batch.rejected.is_empty(), "{case}: {:?}", batch.first_error);
            assert_quantiles(quantiles(&batch, "rpc_duration"), expected, case);
            let count = series(&batch, "rpc_duration_count", &[]);
            assert_eq!(count.kind, ValueKind::Delta, "{case}");
            assert_eq!(
                count.points[0].value,
                counts.iter().sum::<u64>() as f64,
                "{case}"
            );
            assert_eq!(count.points[0].start_ms, T0_MS - 10_000, "{case}");
            let sum = series(&batch, "rpc_duration_sum", &[]);
            assert_eq!(
                (sum.kind, sum.points[0].value),
                (ValueKind::Delta, 42.0),
                "{case}"
            );
            if expected[0].is_some() {
                let q = series(&batch, "rpc_duration", &[(QUANTILE_LABEL, "0.5")]);
                assert_eq!(q.kind, ValueKind::Gauge);
            }
        }
    }

    #[test]
    fn histogram_without_sum_or_buckets() {
        let point = HistogramDataPoint {
            sum: None,
            bucket_counts: vec![],
            explicit_bounds: vec![],
            count: 5,
            ..hist_point(T0, START, &[], &[])
        };
        let batch = translator().metrics(&request(
            vec![],
            vec![histogram(
                "h",
                AggregationTemporality::Cumulative,
                vec![point],
            )],
        ));
        assert_eq!(names(&batch), ["h_count"]);
        assert_eq!(series(&batch, "h_count", &[]).points[0].value, 5.0);
        assert!(batch.rejected.is_empty());
    }

    /// Translates one cumulative histogram point of series `h{k=series}`.
    fn cumulative(tr: &OtlpTranslator, series: &str, point: HistogramDataPoint) -> WriteBatch {
        let point = HistogramDataPoint {
            attributes: kvs(&[("k", series)]),
            ..point
        };
        tr.metrics(&request(
            vec![],
            vec![histogram(
                "h",
                AggregationTemporality::Cumulative,
                vec![point],
            )],
        ))
    }

    const BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];

    #[test]
    fn cumulative_histogram_quantiles_describe_the_interval() {
        let tr = translator();
        // First export: 4 observations in (0, 1]; estimated on the point itself.
        let first = cumulative(&tr, "a", hist_point(T0, START, &BOUNDS, &[4, 0, 0, 0]));
        assert_quantiles(
            quantiles(&first, "h"),
            [Some(0.5), Some(0.9), Some(0.99)],
            "first",
        );
        let count = series(&first, "h_count", &[]);
        assert_eq!(count.kind, ValueKind::Counter);
        assert_eq!(
            count.points[0],
            Point {
                ts_ms: T0_MS,
                value: 4.0,
                start_ms: T0_MS - 3_600_000
            }
        );
        // Second export: 4 more, all in (2, 4]. All-time quantiles would say p50 = 1.
        let second = cumulative(
            &tr,
            "a",
            hist_point(T0 + 10 * SEC, START, &BOUNDS, &[4, 0, 4, 0]),
        );
        assert_quantiles(
            quantiles(&second, "h"),
            [Some(3.0), Some(3.8), Some(3.98)],
            "second",
        );
        assert_eq!(series(&second, "h_count", &[]).points[0].value, 8.0);
        // Third export: nothing new, so no quantiles.
        let third = cumulative(
            &tr,
            "a",
            hist_point(T0 + 20 * SEC, START, &BOUNDS, &[4, 0, 4, 0]),
        );
        assert_quantiles(quantiles(&third, "h"), [None, None, None], "idle interval");
        assert!(third.rejected.is_empty());
    }

    #[test]
    fn cumulative_histogram_resets_and_repeats() {
        let tr = translator();
        cumulative(&tr, "a", hist_point(T0, START, &BOUNDS, &[4, 0, 4, 0]));
        // (case, point, expected quantiles), applied in order to the same series.
        let cases = [
            // A count went down with the same start: a reset, the point is used as is.
            (
                "count decreased",
                hist_point(T0 + 10 * SEC, START, &BOUNDS, &[1, 0, 0, 0]),
                [Some(0.5), Some(0.9), Some(0.99)],
            ),
            // Every count grew, but the start moved: also a reset, so the estimate uses all 9
            // observations (the difference to the previous point would be [4, 0, 4, 0], p50 = 1).
            (
                "start changed",
                hist_point(T0 + 20 * SEC, T0 + 15 * SEC, &BOUNDS, &[5, 0, 4, 0]),
                [Some(0.9), Some(3.55), Some(3.955)],
            ),
            // The same point again (a retry): no quantiles.
            (
                "repeat",
                hist_point(T0 + 20 * SEC, T0 + 15 * SEC, &BOUNDS, &[5, 0, 4, 0]),
                [None, None, None],
            ),
            // Older than the kept point: no quantiles, state kept.
            (
                "older",
                hist_point(T0 + 19 * SEC, T0 + 15 * SEC, &BOUNDS, &[5, 0, 3, 0]),
                [None, None, None],
            ),
            // Normal progress after all that: difference to the `start changed` point.
            (
                "progress",
                hist_point(T0 + 30 * SEC, T0 + 15 * SEC, &BOUNDS, &[5, 2, 4, 0]),
                [Some(1.5), Some(1.9), Some(1.99)],
            ),
        ];
        for (case, point, expected) in cases {
            let batch = cumulative(&tr, "a", point);
            assert_quantiles(quantiles(&batch, "h"), expected, case);
            assert!(batch.rejected.is_empty(), "{case}");
            assert!(find(&batch, "h_count", &[]).is_some(), "{case}");
        }
    }

    #[test]
    fn tracked_histograms_are_bounded() {
        let tr = OtlpTranslator::new(&[], 1);
        let a = cumulative(&tr, "a", hist_point(T0, START, &BOUNDS, &[4, 0, 0, 0]));
        assert_quantiles(
            quantiles(&a, "h"),
            [Some(0.5), Some(0.9), Some(0.99)],
            "a tracked",
        );
        // Table full: b gets count and sum, its quantiles are counted as skipped.
        let b = cumulative(
            &tr,
            "b",
            hist_point(T0 + 10 * SEC, START, &BOUNDS, &[4, 0, 0, 0]),
        );
        assert_quantiles(quantiles(&b, "h"), [None, None, None], "b untracked");
        assert_eq!(names(&b), ["h_count", "h_sum"]);
        assert_eq!(b.rejected, [(RejectReason::UnsupportedData, 3)]);
        assert!(
            b.first_error
                .unwrap_or_default()
                .contains("limit of 1 tracked cumulative histogram series")
        );
        // a keeps its state.
        let a = cumulative(
            &tr,
            "a",
            hist_point(T0 + 20 * SEC, START, &BOUNDS, &[4, 0, 4, 0]),
        );
        assert_quantiles(
            quantiles(&a, "h"),
            [Some(3.0), Some(3.8), Some(3.98)],
            "a interval",
        );
        // 20 minutes later a has gone quiet: it is evicted and b takes its place.
        let late = T0 + 20 * 60 * SEC;
        let b = cumulative(&tr, "b", hist_point(late, START, &BOUNDS, &[4, 0, 0, 0]));
        assert_quantiles(
            quantiles(&b, "h"),
            [Some(0.5), Some(0.9), Some(0.99)],
            "b after eviction",
        );
        assert!(b.rejected.is_empty());
        let b = cumulative(
            &tr,
            "b",
            hist_point(late + 10 * SEC, START, &BOUNDS, &[4, 4, 0, 0]),
        );
        assert_quantiles(
            quantiles(&b, "h"),
            [Some(1.5), Some(1.9), Some(1.99)],
            "b interval",
        );
    }

    /// The order statistic `ceil(q·n)` of sorted samples: the value `histogram_quantile`
    /// estimates.
    fn true_quantile(sorted: &[f64], q: f64) -> f64 {
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted[rank.saturating_sub(1)]
    }

    /// Both the true quantile and the estimate lie in the bucket holding rank q·n, whose ends
    /// differ by the factor `base = 2^(2^-scale)`, so the relative error is below `base - 1`.
    fn assert_exp_estimate(
        batch: &WriteBatch,
        name: &str,
        samples: &[f64],
        scale: i32,
        case: &str,
    ) {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let tolerance = (-f64::from(scale)).exp2().exp2() - 1.0;
        let estimates = quantiles(batch, name);
        for ((q, _), estimate) in QUANTILES.iter().zip(estimates) {
            let truth = true_quantile(&sorted, *q);
            let Some(estimate) = estimate else {
                panic!("{case}: no p{q}");
            };
            let error = if truth == 0.0 {
                estimate.abs()
            } else {
                (estimate / truth - 1.0).abs()
            };
            assert!(
                error < tolerance,
                "{case}: p{q} = {estimate}, true {truth}, error {error} >= {tolerance}"
            );
        }
    }

    #[test]
    fn exponential_histogram_quantiles_near_true_values() {
        let uniform: Vec<f64> = (1..=1000).map(f64::from).collect();
        let negative: Vec<f64> = (1..=1000).map(|v| -f64::from(v)).collect();
        let mixed: Vec<f64> = (1..=100)
            .map(|v| -f64::from(v))
            .chain(std::iter::repeat_n(0.0, 100))
            .chain((1..=100).map(f64::from))
            .collect();
        let skewed: Vec<f64> = (0..2000).map(|i| (f64::from(i) / 300.0).exp()).collect();
        let cases: [(&str, &[f64], i32); 5] = [
            ("uniform 1..1000, scale 3", &uniform, 3),
            ("uniform 1..1000, scale 0", &uniform, 0),
            ("negative -1000..-1, scale 3", &negative, 3),
            ("negatives, zeros, positives", &mixed, 4),
            ("exponential spread", &skewed, 5),
        ];
        for (case, samples, scale) in cases {
            let point = exp_point(scale, samples, T0, T0 - 10 * SEC);
            let batch = translator().metrics(&request(
                vec![],
                vec![exp_histogram(
                    "lat",
                    AggregationTemporality::Delta,
                    vec![point],
                )],
            ));
            assert!(batch.rejected.is_empty(), "{case}");
            assert_exp_estimate(&batch, "lat", samples, scale, case);
            let count = series(&batch, "lat_count", &[]);
            assert_eq!(
                (count.kind, count.points[0].value),
                (ValueKind::Delta, samples.len() as f64)
            );
        }
    }

    #[test]
    fn exponential_cumulative_interval_across_scale_change() {
        let tr = translator();
        let first: Vec<f64> = (1..=100).map(f64::from).collect();
        let new: Vec<f64> = (1000..=1099).map(f64::from).collect();
        let all: Vec<f64> = first.iter().chain(&new).copied().collect();
        let m = |p| exp_histogram("lat", AggregationTemporality::Cumulative, vec![p]);
        let a = tr.metrics(&request(vec![], vec![m(exp_point(3, &first, T0, START))]));
        assert_exp_estimate(&a, "lat", &first, 3, "first export");
        // The SDK lowered the scale as the range grew; the previous point is downscaled to
        // subtract it, so the estimate covers only the 100 new samples.
        let b = tr.metrics(&request(
            vec![],
            vec![m(exp_point(2, &all, T0 + 10 * SEC, START))],
        ));
        assert_exp_estimate(&b, "lat", &new, 2, "second export");
        assert_eq!(series(&b, "lat_count", &[]).kind, ValueKind::Counter);
    }

    #[test]
    fn exponential_histogram_guards() {
        let tr = translator();
        let point = |scale: i32, offset: i32, counts: Vec<u64>| ExponentialHistogramDataPoint {
            time_unix_nano: T0,
            count: counts.iter().sum(),
            scale,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts,
            }),
            ..Default::default()
        };
        let run = |p: ExponentialHistogramDataPoint| {
            tr.metrics(&request(
                vec![],
                vec![exp_histogram("x", AggregationTemporality::Delta, vec![p])],
            ))
        };
        // Scale far below the spec's range: count only, quantiles counted as skipped.
        let batch = run(point(-50, 0, vec![1, 2]));
        assert_eq!(batch.rejected, [(RejectReason::UnsupportedData, 3)]);
        assert!(
            batch
                .first_error
                .as_deref()
                .unwrap_or_default()
                .contains("scale -50")
        );
        assert!(find(&batch, "x_count", &[]).is_some());
        // Huge scale and offset: downscaled, no panic, nothing non-finite emitted.
        for (scale, offset) in [
            (i32::MAX, i32::MAX),
            (100, i32::MIN),
            (20, i32::MAX),
            (0, i32::MAX),
            (-10, i32::MIN),
        ] {
            let batch = run(point(scale, offset, vec![1; 10]));
            assert!(find(&batch, "x_count", &[]).is_some());
            for s in &batch.series {
                assert!(
                    s.points.iter().all(|p| p.value.is_finite()),
                    "scale {scale}, offset {offset}"
                );
            }
        }
        // Scale 0 and an offset near i32::MAX: the bounds 2^index overflow to +Inf, so no
        // quantile is emitted.
        assert_quantiles(
            quantiles(&run(point(0, i32::MAX - 20, vec![1; 10])), "x"),
            [None, None, None],
            "overflow",
        );
        // 100 000 buckets at scale 20 are merged down to scale 11 (196 buckets) to fit: the
        // estimate of a uniform spread in log space stays within the scale-11 bucket ratio of
        // the truth.
        let batch = run(point(20, 0, vec![1; 100_000]));
        let p50 = quantiles(&batch, "x")[0].unwrap_or(f64::NAN);
        let truth = (50_000.0 / f64::from(1 << 20)).exp2();
        assert!(
            (p50 / truth - 1.0).abs() < (1.0f64 / 2048.0).exp2() - 1.0,
            "{p50} vs {truth}"
        );
    }

    #[test]
    fn summaries() {
        let point = SummaryDataPoint {
            start_time_unix_nano: START,
            time_unix_nano: T0,
            count: 10,
            sum: 12.5,
            quantile_values: [(0.5, 1.0), (0.99, 3.0), (1.0, 4.0), (0.9, f64::NAN)]
                .map(|(quantile, value)| ValueAtQuantile { quantile, value })
                .to_vec(),
            attributes: kvs(&[("route", "/")]),
            ..Default::default()
        };
        let batch = translator().metrics(&request(
            vec![],
            vec![metric(
                "rpc.latency",
                "ms",
                Data::Summary(Summary {
                    data_points: vec![point],
                }),
            )],
        ));
        let count = series(&batch, "rpc_latency_count", &[("route", "/")]);
        assert_eq!(
            (count.kind, count.points[0].value, count.points[0].start_ms),
            (ValueKind::Counter, 10.0, T0_MS - 3_600_000)
        );
        let sum = series(&batch, "rpc_latency_sum", &[]);
        assert_eq!((sum.kind, sum.points[0].value), (ValueKind::Counter, 12.5));
        for (q, value) in [("0.5", 1.0), ("0.99", 3.0), ("1", 4.0)] {
            let s = series(
                &batch,
                "rpc_latency",
                &[(QUANTILE_LABEL, q), ("route", "/")],
            );
            assert_eq!(
                (s.kind, s.points[0].value),
                (ValueKind::Gauge, value),
                "q {q}"
            );
        }
        // NaN is passed through for the store to reject and count.
        assert!(
            series(&batch, "rpc_latency", &[(QUANTILE_LABEL, "0.9")]).points[0]
                .value
                .is_nan()
        );
    }

    #[test]
    fn non_finite_values_pass_through() {
        let hist = HistogramDataPoint {
            sum: Some(f64::INFINITY),
            ..hist_point(T0, START, &[1.0], &[1, 0])
        };
        let batch = translator().metrics(&request(
            vec![],
            vec![
                gauge("g", vec![number(T0, f64::NAN, &[])]),
                histogram("h", AggregationTemporality::Delta, vec![hist]),
            ],
        ));
        assert!(series(&batch, "g", &[]).points[0].value.is_nan());
        assert_eq!(series(&batch, "h_sum", &[]).points[0].value, f64::INFINITY);
        assert!(batch.rejected.is_empty());
    }

    fn log(
        time: u64,
        observed: u64,
        number: i32,
        text_severity: &str,
        body: Option<AnyValue>,
    ) -> OtlpLogRecord {
        OtlpLogRecord {
            time_unix_nano: time,
            observed_time_unix_nano: observed,
            severity_number: number,
            severity_text: text_severity.to_owned(),
            body,
            ..Default::default()
        }
    }

    fn logs_request(
        resources: Vec<(Vec<KeyValue>, Vec<Vec<OtlpLogRecord>>)>,
    ) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: resources
                .into_iter()
                .map(|(attributes, scopes)| ResourceLogs {
                    resource: Some(Resource {
                        attributes,
                        ..Default::default()
                    }),
                    scope_logs: scopes
                        .into_iter()
                        .map(|log_records| ScopeLogs {
                            log_records,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn log_severity() {
        let cases = [
            (0, "", "UNSPECIFIED"),
            (1, "", "TRACE"),
            (4, "", "TRACE"),
            (5, "", "DEBUG"),
            (9, "", "INFO"),
            (12, "", "INFO"),
            (13, "", "WARN"),
            (17, "", "ERROR"),
            (20, "", "ERROR"),
            (21, "", "FATAL"),
            (24, "", "FATAL"),
            (25, "", "UNSPECIFIED"),
            (-1, "", "UNSPECIFIED"),
            (17, "warn", "warn"),
        ];
        for (number, text_severity, expected) in cases {
            let req = logs_request(vec![(
                vec![],
                vec![vec![log(T0, 0, number, text_severity, None)]],
            )]);
            let batch = translator().logs(&req, 0);
            let record = &batch.streams[0].records[0];
            assert_eq!(record.severity, expected, "{number} {text_severity:?}");
            assert_eq!(record.severity_number, number);
        }
    }

    #[test]
    fn log_records_and_streams() {
        let now_ms = 1_800_000_000_000;
        let body_map = AnyValue {
            value: Some(Av::KvlistValue(KeyValueList {
                values: vec![
                    kv("user", text("ann")),
                    kv(
                        "n",
                        AnyValue {
                            value: Some(Av::IntValue(3)),
                        },
                    ),
                ],
            })),
        };
        let with_attrs = OtlpLogRecord {
            attributes: vec![
                kv("http.method", text("GET")),
                kv(
                    "retry",
                    AnyValue {
                        value: Some(Av::BoolValue(true)),
                    },
                ),
            ],
            ..log(T0, T0 + SEC, 9, "", Some(text("hello")))
        };
        let resource = kvs(&[
            ("service.name", "api"),
            ("host.name", "h1"),
            ("os.type", "linux"),
        ]);
        let req = logs_request(vec![
            (
                resource.clone(),
                vec![
                    vec![with_attrs],
                    vec![
                        log(0, T0 + SEC, 17, "", Some(body_map)),
                        log(0, 0, 0, "", None),
                    ],
                ],
            ),
            // Same labels: merged into the first stream.
            (
                resource,
                vec![vec![log(T0, 0, 13, "", Some(text("again")))]],
            ),
            (
                kvs(&[("service.name", "other")]),
                vec![vec![log(T0, 0, 9, "", Some(text("x")))]],
            ),
            // No records: no stream.
            (kvs(&[("service.name", "silent")]), vec![vec![]]),
        ]);
        let batch = translator().logs(&req, now_ms);
        assert_eq!((batch.rejected, &batch.first_error), (0, &None));
        assert_eq!(batch.streams.len(), 2);
        let api = &batch.streams[0];
        assert_eq!(
            api.labels,
            [
                ("host_name".to_owned(), "h1".to_owned()),
                ("job".to_owned(), "api".to_owned())
            ]
        );
        let summary: Vec<(i64, &str, &str)> = api
            .records
            .iter()
            .map(|r| (r.ts_ms, r.severity.as_str(), r.body.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (T0_MS, "INFO", "hello"),
                (T0_MS + 1000, "ERROR", r#"{"user":"ann","n":3}"#),
                (now_ms, "UNSPECIFIED", ""),
                (T0_MS, "WARN", "again"),
            ]
        );
        assert_eq!(
            api.records[0].attributes,
            [
                ("http.method".to_owned(), "GET".to_owned()),
                ("retry".to_owned(), "true".to_owned())
            ]
        );
        assert_eq!(
            batch.streams[1].labels,
            [("job".to_owned(), "other".to_owned())]
        );
    }

    fn decode_and_translate(json: &str) -> WriteBatch {
        match decode_metrics_json(json.as_bytes()) {
            Ok(req) => translator().metrics(&req),
            Err(e) => panic!("{e}\n{json}"),
        }
    }

    /// Wraps metric JSON objects into a request.
    fn metrics_json(metrics: &str) -> String {
        format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{metrics}]}}]}}]}}"#)
    }

    #[test]
    fn json_canonical_example() {
        let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"svc"}}]},"scopeMetrics":[{"metrics":[{"name":"m","gauge":{"dataPoints":[{"asDouble":1.5,"timeUnixNano":"1700000000000000000"}]}}]}]}]}"#;
        let batch = decode_and_translate(body);
        assert_eq!(
            batch.series,
            [SeriesWrite {
                labels: vec![
                    ("__name__".to_owned(), "m".to_owned()),
                    ("job".to_owned(), "svc".to_owned())
                ],
                kind: ValueKind::Gauge,
                points: vec![Point::new(T0_MS, 1.5)],
            }]
        );
    }

    #[test]
    fn json_spec_example_all_types() {
        // The shape of the OTLP repository's examples/metrics.json.
        let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeMetrics":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},
          "metrics":[
            {"name":"my.counter","unit":"1","description":"I am a Counter","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"asDouble":5,"startTimeUnixNano":"1544712660300000000","timeUnixNano":"1544712660300000000","attributes":[{"key":"my.counter.attr","value":{"stringValue":"some value"}}]}]}},
            {"name":"my.gauge","unit":"1","description":"I am a Gauge","gauge":{"dataPoints":[{"asDouble":10,"timeUnixNano":"1544712660300000000","attributes":[{"key":"my.gauge.attr","value":{"stringValue":"some value"}}]}]}},
            {"name":"my.histogram","unit":"1","description":"I am a Histogram","histogram":{"aggregationTemporality":1,"dataPoints":[{"startTimeUnixNano":"1544712660300000000","timeUnixNano":"1544712660300000000","count":"2","sum":2,"bucketCounts":["1","1"],"explicitBounds":[1],"min":0,"max":2,"attributes":[{"key":"my.histogram.attr","value":{"stringValue":"some value"}}]}]}},
            {"name":"my.exponential.histogram","unit":"1","description":"I am an Exponential Histogram","exponentialHistogram":{"aggregationTemporality":1,"dataPoints":[{"startTimeUnixNano":"1544712660300000000","timeUnixNano":"1544712660300000000","count":"3","sum":10,"scale":0,"zeroCount":"1","positive":{"offset":1,"bucketCounts":["0","2"]},"min":0,"max":5,"zeroThreshold":0,"attributes":[{"key":"my.exponential.histogram.attr","value":{"stringValue":"some value"}}]}]}}
          ]}]}]}"#;
        let batch = decode_and_translate(body);
        assert!(batch.rejected.is_empty(), "{:?}", batch.first_error);
        let ts = 1_544_712_660_300;
        let counter = series(
            &batch,
            "my_counter_total",
            &[("job", "my.service"), ("my_counter_attr", "some value")],
        );
        assert_eq!(
            (counter.kind, counter.points[0]),
            (
                ValueKind::Delta,
                Point {
                    ts_ms: ts,
                    value: 5.0,
                    start_ms: ts
                }
            )
        );
        assert_eq!(series(&batch, "my_gauge", &[]).points[0].value, 10.0);
        assert_eq!(
            series(&batch, "my_histogram_count", &[]).points[0].value,
            2.0
        );
        assert_eq!(
            series(&batch, "my_histogram_sum", &[]).kind,
            ValueKind::Delta
        );
        // Buckets (0, 1] and (1, 2] (max = 2), one observation each.
        assert_quantiles(
            quantiles(&batch, "my_histogram"),
            [Some(1.0), Some(1.8), Some(1.98)],
            "histogram",
        );
        // Zero bucket 1, bucket 2 = (4, 8] clamped to max 5 holds 2: p50 rank 1.5 → 4·1.25^0.25.
        let [p50, ..] = quantiles(&batch, "my_exponential_histogram");
        assert!(
            (p50.unwrap_or_default() - 4.0 * 1.25f64.powf(0.25)).abs() < 1e-9,
            "{p50:?}"
        );
        assert_eq!(
            series(&batch, "my_exponential_histogram_count", &[]).points[0].value,
            3.0
        );
    }

    #[test]
    fn json_encodings_the_spec_allows() {
        // (case, metric JSON, check)
        type Check = fn(&WriteBatch);
        let cases: [(&str, &str, Check); 12] = [
            (
                "time as number",
                r#"{"name":"m","gauge":{"dataPoints":[{"asDouble":2,"timeUnixNano":1700000000000000000}]}}"#,
                |b| {
                    assert_eq!(series(b, "m", &[]).points, [Point::new(T0_MS, 2.0)]);
                },
            ),
            (
                "asInt as string",
                r#"{"name":"m","gauge":{"dataPoints":[{"asInt":"-7","timeUnixNano":"1700000000000000000"}]}}"#,
                |b| {
                    assert_eq!(series(b, "m", &[]).points[0].value, -7.0);
                },
            ),
            (
                "asDouble as string",
                r#"{"name":"m","gauge":{"dataPoints":[{"asDouble":"1.5","timeUnixNano":"1700000000000000000"}]}}"#,
                |b| {
                    assert_eq!(series(b, "m", &[]).points[0].value, 1.5);
                },
            ),
            (
                "NaN and Infinity",
                r#"{"name":"m","gauge":{"dataPoints":[{"asDouble":"NaN","timeUnixNano":"1700000000000000000"},{"asDouble":"-Infinity","timeUnixNano":"1700000001000000000"}]}}"#,
                |b| {
                    let points = &series(b, "m", &[]).points;
                    assert!(points[0].value.is_nan());
                    assert_eq!(points[1].value, f64::NEG_INFINITY);
                },
            ),
            (
                "monotonic cumulative sum",
                r#"{"name":"c","sum":{"aggregationTemporality":2,"isMonotonic":true,"dataPoints":[{"asInt":"3","startTimeUnixNano":"1699999990000000000","timeUnixNano":"1700000000000000000"}]}}"#,
                |b| {
                    let s = series(b, "c_total", &[]);
                    assert_eq!(
                        (s.kind, s.points[0]),
                        (
                            ValueKind::Counter,
                            Point {
                                ts_ms: T0_MS,
                                value: 3.0,
                                start_ms: T0_MS - 10_000
                            }
                        )
                    );
                },
            ),
            (
                "enum names and snake_case",
                r#"{"name":"c","sum":{"aggregation_temporality":"AGGREGATION_TEMPORALITY_DELTA","is_monotonic":true,"data_points":[{"as_double":1,"time_unix_nano":"1700000000000000000"}]}}"#,
                |b| {
                    assert_eq!(series(b, "c_total", &[]).kind, ValueKind::Delta);
                },
            ),
            (
                "histogram with string counts",
                r#"{"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[{"count":"4","sum":"Infinity","bucketCounts":["1","2","1","0"],"explicitBounds":[1,"2",4],"timeUnixNano":"1700000000000000000"}]}}"#,
                |b| {
                    assert_eq!(series(b, "h_count", &[]).kind, ValueKind::Counter);
                    assert_eq!(series(b, "h_sum", &[]).points[0].value, f64::INFINITY);
                    assert_quantiles(
                        quantiles(b, "h"),
                        [Some(1.5), Some(3.2), Some(3.92)],
                        "json histogram",
                    );
                },
            ),
            (
                "exponential histogram, scale as string",
                r#"{"name":"e","exponentialHistogram":{"aggregationTemporality":1,"dataPoints":[{"count":"2","scale":"0","positive":{"offset":"1","bucketCounts":[2]},"timeUnixNano":"1700000000000000000"}]}}"#,
                |b| {
                    // Bucket (2, 4], log-linear: p50 = 2·2^0.5.
                    let [p50, ..] = quantiles(b, "e");
                    assert!(
                        (p50.unwrap_or_default() - 2.0 * 2f64.sqrt()).abs() < 1e-9,
                        "{p50:?}"
                    );
                },
            ),
            (
                "summary with string quantiles",
                r#"{"name":"s","summary":{"dataPoints":[{"count":"3","sum":4.5,"quantileValues":[{"quantile":"0.5","value":1},{"quantile":0.99,"value":"NaN"}],"timeUnixNano":"1700000000000000000"}]}}"#,
                |b| {
                    assert_eq!(
                        series(b, "s", &[(QUANTILE_LABEL, "0.5")]).points[0].value,
                        1.0
                    );
                    assert!(
                        series(b, "s", &[(QUANTILE_LABEL, "0.99")]).points[0]
                            .value
                            .is_nan()
                    );
                },
            ),
            (
                "exemplar ids in base64 are ignored",
                r#"{"name":"m","gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"1700000000000000000","exemplars":[{"asDouble":1,"timeUnixNano":"1700000000000000000","traceId":"W47/95gDgQPSabYzgT/GDA==","spanId":"7uGbfsPBsXQ="}]}]}}"#,
                |b| {
                    assert_eq!(series(b, "m", &[]).points[0].value, 1.0);
                },
            ),
            (
                "nulls and odd attribute values",
                r#"{"name":"m","description":null,"gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"1700000000000000000","startTimeUnixNano":null,"attributes":[{"key":"arr","value":{"arrayValue":{}}},{"key":"nan","value":{"doubleValue":"NaN"}},{"key":"dbl","value":{"doubleValue":"2.5"}},{"key":"int","value":{"intValue":"12"}},{"key":"none","value":{}}]}]}}"#,
                |b| {
                    let s = series(
                        b,
                        "m",
                        &[("arr", "[]"), ("nan", "NaN"), ("dbl", "2.5"), ("int", "12")],
                    );
                    assert_eq!(label(s, "none"), None);
                },
            ),
            ("metric without data", r#"{"name":"m"}"#, |b| {
                assert_eq!(b.rejected, [(RejectReason::UnsupportedData, 1)]);
            }),
        ];
        for (case, metric_json, check) in cases {
            let batch = decode_and_translate(&metrics_json(metric_json));
            eprintln!("case: {case}");
            check(&batch);
        }
    }

    #[test]
    fn json_errors_are_reported() {
        let cases = [
            (
                "not json",
                "{".to_owned(),
                "invalid OTLP/JSON metrics body: EOF",
            ),
            (
                "wrong top-level type",
                "[]".to_owned(),
                "invalid OTLP/JSON metrics body: request: expected a JSON object",
            ),
            (
                "message as array",
                r#"{"resourceMetrics":[[]]}"#.to_owned(),
                "resourceMetrics[0]: expected a JSON object",
            ),
            (
                "bad point is not silently dropped",
                metrics_json(
                    r#"{"name":"m"},{"name":"bad","gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"soon"}]}}"#,
                ),
                r#"invalid OTLP/JSON metrics body: resourceMetrics[0].scopeMetrics[0].metrics[1] ("bad").gauge: invalid digit"#,
            ),
            (
                "two data fields",
                metrics_json(r#"{"name":"m","gauge":{},"sum":{}}"#),
                "more than one data field (gauge, sum)",
            ),
            (
                "bad attribute",
                metrics_json(
                    r#"{"name":"m","gauge":{"dataPoints":[{"asDouble":1,"attributes":[{"key":"k","value":{"intValue":"x"}}]}]}}"#,
                ),
                "metrics[0] (\"m\").gauge",
            ),
        ];
        for (case, body, expected) in cases {
            match decode_metrics_json(body.as_bytes()) {
                Ok(req) => panic!("{case}: decoded {req:?}"),
                Err(e) => assert!(e.contains(expected), "{case}: {e}"),
            }
        }
        let e = decode_logs_json(b"{\"resourceLogs\":[{\"scopeLogs\":[{\"logRecords\":[{\"body\":{\"intValue\":\"x\"}}]}]}]}");
        assert!(e.is_err_and(|e| e.starts_with("invalid OTLP/JSON logs body: ")));
    }

    #[test]
    fn json_logs() {
        // The shape of the OTLP repository's examples/logs.json.
        let body = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
          "scopeLogs":[{"scope":{"name":"my.library","version":"1.0.0"},
          "logRecords":[{"timeUnixNano":"1544712660300000000","observedTimeUnixNano":"1544712660300000000","severityNumber":10,"severityText":"Information",
            "traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","body":{"stringValue":"Example log record"},
            "attributes":[{"key":"string.attribute","value":{"stringValue":"some string"}},{"key":"boolean.attribute","value":{"boolValue":true}},
              {"key":"int.attribute","value":{"intValue":"10"}},{"key":"double.attribute","value":{"doubleValue":637.704}},
              {"key":"array.attribute","value":{"arrayValue":{"values":[{"stringValue":"many"},{"stringValue":"values"}]}}},
              {"key":"map.attribute","value":{"kvlistValue":{"values":[{"key":"some.map.key","value":{"stringValue":"some value"}}]}}}]},
            {"observedTimeUnixNano":1544712661300000000,"severityNumber":"SEVERITY_NUMBER_WARN","body":{"doubleValue":"Infinity"}}]}]}]}"#;
        let req = match decode_logs_json(body.as_bytes()) {
            Ok(req) => req,
            Err(e) => panic!("{e}"),
        };
        let batch = translator().logs(&req, 0);
        assert_eq!(batch.streams.len(), 1);
        assert_eq!(
            batch.streams[0].labels,
            [("job".to_owned(), "my.service".to_owned())]
        );
        let records = &batch.streams[0].records;
        assert_eq!(
            records[0],
            LogRecord {
                ts_ms: 1_544_712_660_300,
                severity: "Information".to_owned(),
                severity_number: 10,
                body: "Example log record".to_owned(),
                attributes: [
                    ("string.attribute", "some string"),
                    ("boolean.attribute", "true"),
                    ("int.attribute", "10"),
                    ("double.attribute", "637.704"),
                    ("array.attribute", r#"["many","values"]"#),
                    ("map.attribute", r#"{"some.map.key":"some value"}"#),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .to_vec(),
            }
        );
        assert_eq!(
            (
                records[1].ts_ms,
                records[1].severity.as_str(),
                records[1].severity_number,
                records[1].body.as_str()
            ),
            (1_544_712_661_300, "WARN", 13, "Infinity")
        );
    }

    use crate::test_rng::Rng;

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let tr = OtlpTranslator::new(&["host.name".to_owned()], 8);
        let weird = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            1e308,
            -1e308,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            5e-324,
        ];
        for round in 0..2000 {
            let pick = |rng: &mut Rng| weird[rng.below(weird.len() as u64) as usize];
            let n_bounds = rng.below(6) as usize;
            let bounds: Vec<f64> = (0..n_bounds).map(|_| pick(&mut rng)).collect();
            let counts: Vec<u64> = (0..rng.below(8))
                .map(|_| {
                    if rng.below(4) == 0 {
                        u64::MAX
                    } else {
                        rng.below(5)
                    }
                })
                .collect();
            let hist = HistogramDataPoint {
                min: Some(pick(&mut rng)),
                max: (rng.below(2) == 0).then(|| pick(&mut rng)),
                attributes: kvs(&[("k", ["a", "b", "c"][rng.below(3) as usize])]),
                ..hist_point(rng.below(3) * T0, rng.below(2) * START, &bounds, &counts)
            };
            let exp = ExponentialHistogramDataPoint {
                scale: [i32::MIN, -11, -10, 0, 3, 20, 21, i32::MAX][rng.below(8) as usize],
                zero_count: rng.below(3),
                zero_threshold: pick(&mut rng),
                min: Some(pick(&mut rng)),
                positive: Some(Buckets {
                    offset: [i32::MIN, -1, 0, 7, i32::MAX][rng.below(5) as usize],
                    bucket_counts: counts.clone(),
                }),
                negative: Some(Buckets {
                    offset: [i32::MIN, 0, i32::MAX][rng.below(3) as usize],
                    bucket_counts: counts.iter().rev().copied().collect(),
                }),
                ..exp_point(0, &[], T0 + rng.below(4) * SEC, START)
            };
            let temporality = if round % 2 == 0 {
                AggregationTemporality::Cumulative
            } else {
                AggregationTemporality::Delta
            };
            let batch = tr.metrics(&request(
                kvs(&[("host.name", "h")]),
                vec![
                    histogram("h", temporality, vec![hist]),
                    exp_histogram("e", temporality, vec![exp]),
                ],
            ));
            for s in &batch.series {
                if label(s, QUANTILE_LABEL).is_some() {
                    assert!(s.points.iter().all(|p| p.value.is_finite()), "{s:?}");
                }
            }
            // Random bytes through both decoders.
            let len = rng.below(64) as usize;
            let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if let Ok(req) = ExportMetricsServiceRequest::decode(bytes.as_slice()) {
                tr.metrics(&req);
            }
            if let Ok(req) = ExportLogsServiceRequest::decode(bytes.as_slice()) {
                tr.logs(&req, 0);
            }
            assert!(decode_metrics_json(&bytes).is_err() || !bytes.is_empty());
            let _ = decode_logs_json(&bytes);
        }
    }
}

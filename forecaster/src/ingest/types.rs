//! Protocol-neutral types every ingest front end produces.

use std::fmt;

/// A label set: `(name, value)` pairs, the metric name under `__name__`. Order does not matter;
/// the store sorts it.
pub type Labels = Vec<(String, String)>;

/// The label that carries the metric name, as in Prometheus.
pub const METRIC_NAME_LABEL: &str = "__name__";

/// How a series' raw points become one value per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// A value that can go up and down: the last value in each step is kept.
    Gauge,
    /// A cumulative monotonic counter: stored as the per-second rate over each step. A value
    /// lower than the previous one, or a changed `start_ms`, is a reset.
    Counter,
    /// Each point is the increase over `[start_ms, ts_ms]` (OTLP delta temporality): stored as
    /// the per-second rate over each step.
    Delta,
}

impl ValueKind {
    /// Name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Gauge => "gauge",
            ValueKind::Counter => "counter",
            ValueKind::Delta => "delta",
        }
    }
}

/// One raw point as received.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Event time, milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// The value. NaN and ±Inf are rejected by the store.
    pub value: f64,
    /// Start of the counting interval for counters and deltas (ms since epoch), 0 when unknown.
    pub start_ms: i64,
}

impl Point {
    /// A point without a start time.
    pub fn new(ts_ms: i64, value: f64) -> Self {
        Self {
            ts_ms,
            value,
            start_ms: 0,
        }
    }
}

/// Points for one series.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesWrite {
    /// The series' labels, `__name__` included.
    pub labels: Labels,
    /// How the points are resampled.
    pub kind: ValueKind,
    /// Points in the order received.
    pub points: Vec<Point>,
}

/// A decoded request, ready for the store.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// The series and their points.
    pub series: Vec<SeriesWrite>,
    /// Points rejected during translation (before the store saw them), by reason.
    pub rejected: Vec<(RejectReason, u64)>,
    /// The first translation problem, for the client's error message.
    pub first_error: Option<String>,
}

impl WriteBatch {
    /// Records `count` points rejected for `reason` during translation.
    pub fn reject(&mut self, reason: RejectReason, count: u64, message: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
        match self.rejected.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += count,
            None => self.rejected.push((reason, count)),
        }
    }

    /// Number of points in the batch.
    pub fn point_count(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}

/// Why a sample, a series or a request was refused. The names are the `reason` label of
/// `presage_samples_rejected_total` and `presage_requests_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// The value was NaN or ±Inf.
    NonFinite,
    /// The timestamp was further ahead of the daemon's clock than `limits.max_future_skew`.
    TooFarInFuture,
    /// The timestamp was older than the retention window.
    TooOld,
    /// The timestamp was older than the series' newest sample.
    OutOfOrder,
    /// Same timestamp as the newest sample, with a different value.
    DuplicateTimestamp,
    /// More labels than `limits.max_labels_per_series`.
    TooManyLabels,
    /// A label name longer than `limits.max_label_name_length`.
    LabelNameTooLong,
    /// A label value (or the metric name) longer than `limits.max_label_value_length`.
    LabelValueTooLong,
    /// A label name that is empty or not `[a-zA-Z_][a-zA-Z0-9_]*`, or the same name twice.
    InvalidLabel,
    /// No `__name__` label, or an empty one.
    MissingMetricName,
    /// A new series past `limits.max_series`.
    SeriesLimit,
    /// A point of a data type the daemon does not store (e.g. an empty histogram).
    UnsupportedData,
    /// The body could not be decoded (protobuf, JSON, snappy, gzip).
    MalformedBody,
    /// The request's content type or encoding is not one we accept.
    UnsupportedMediaType,
    /// The body was larger than `limits.max_request_body` (or larger than
    /// `limits.max_decompressed_body` once decompressed).
    BodyTooLarge,
}

impl RejectReason {
    /// Every reason, for pre-registering metrics.
    pub const ALL: [RejectReason; 15] = [
        RejectReason::NonFinite,
        RejectReason::TooFarInFuture,
        RejectReason::TooOld,
        RejectReason::OutOfOrder,
        RejectReason::DuplicateTimestamp,
        RejectReason::TooManyLabels,
        RejectReason::LabelNameTooLong,
        RejectReason::LabelValueTooLong,
        RejectReason::InvalidLabel,
        RejectReason::MissingMetricName,
        RejectReason::SeriesLimit,
        RejectReason::UnsupportedData,
        RejectReason::MalformedBody,
        RejectReason::UnsupportedMediaType,
        RejectReason::BodyTooLarge,
    ];

    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NonFinite => "non_finite_value",
            RejectReason::TooFarInFuture => "too_far_in_future",
            RejectReason::TooOld => "too_old",
            RejectReason::OutOfOrder => "out_of_order",
            RejectReason::DuplicateTimestamp => "duplicate_timestamp",
            RejectReason::TooManyLabels => "too_many_labels",
            RejectReason::LabelNameTooLong => "label_name_too_long",
            RejectReason::LabelValueTooLong => "label_value_too_long",
            RejectReason::InvalidLabel => "invalid_label",
            RejectReason::MissingMetricName => "missing_metric_name",
            RejectReason::SeriesLimit => "series_limit",
            RejectReason::UnsupportedData => "unsupported_data",
            RejectReason::MalformedBody => "malformed_body",
            RejectReason::UnsupportedMediaType => "unsupported_media_type",
            RejectReason::BodyTooLarge => "body_too_large",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One received log record.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    /// Event time (ms since epoch): the record's time, else its observed time, else arrival.
    pub ts_ms: i64,
    /// Severity text as sent (`ERROR`, `warn`, …), or derived from the severity number.
    pub severity: String,
    /// OTLP severity number (0 when unset).
    pub severity_number: i32,
    /// The body rendered as text.
    pub body: String,
    /// Record attributes, flattened to strings.
    pub attributes: Labels,
}

/// Log records of one stream (one resource's promoted labels).
#[derive(Debug, Clone, PartialEq)]
pub struct LogStreamWrite {
    /// The stream's labels (promoted resource attributes, `job`, `instance`).
    pub labels: Labels,
    /// Its records.
    pub records: Vec<LogRecord>,
}

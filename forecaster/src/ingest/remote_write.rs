//! Prometheus remote_write 1.0: snappy-compressed protobuf `WriteRequest`s.
//!
//! The messages are the subset of `prometheus/prompb` that remote_write 1.0 senders fill in;
//! exemplars and native histograms are counted as unsupported.

use std::collections::HashMap;

use parking_lot::Mutex;
use prost::Message;

use super::{Labels, METRIC_NAME_LABEL, Point, RejectReason, SeriesWrite, ValueKind, WriteBatch};

/// `prometheus.WriteRequest`.
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    /// The series and their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Metric family metadata (sent periodically, often in requests of its own).
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    /// Labels, `__name__` included.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// Samples, oldest first.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms (not stored; counted as unsupported).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct Label {
    /// Label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct MetricMetadata {
    /// `MetricType`: 1 counter, 2 gauge, 3 histogram, 4 gauge histogram, 5 summary, …
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// Help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// Unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

const METRIC_TYPE_COUNTER: i32 = 1;

/// Decodes a remote_write body: snappy (block format) then protobuf. The decompressed size is
/// read from the snappy header and checked against `max_decompressed` before any allocation.
pub fn decode(
    body: &[u8],
    max_decompressed: usize,
) -> Result<WriteRequest, (RejectReason, String)> {
    let len = snap::raw::decompress_len(body).map_err(|e| {
        (
            RejectReason::MalformedBody,
            format!("invalid snappy body (remote_write uses the snappy block format): {e}"),
        )
    })?;
    if len > max_decompressed {
        return Err((
            RejectReason::BodyTooLarge,
            format!(
                "decompressed body would be {len} bytes, more than the limit of {max_decompressed} (limits.max_decompressed_body)"
            ),
        ));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| {
            (
                RejectReason::MalformedBody,
                format!("invalid snappy body (remote_write uses the snappy block format): {e}"),
            )
        })?;
    WriteRequest::decode(raw.as_slice()).map_err(|e| {
        (
            RejectReason::MalformedBody,
            format!("invalid remote_write protobuf: {e}"),
        )
    })
}

/// Remembers which metric families are counters, from remote_write metadata.
pub struct CounterFamilies {
    known: Mutex<HashMap<String, bool>>,
    max: usize,
}

impl CounterFamilies {
    /// Remembers at most `max` families.
    pub fn new(max: usize) -> Self {
        Self {
            known: Mutex::new(HashMap::new()),
            max,
        }
    }

    fn learn(&self, metadata: &[MetricMetadata]) {
        if metadata.is_empty() {
            return;
        }
        let mut known = self.known.lock();
        for m in metadata {
            if known.len() >= self.max && !known.contains_key(&m.metric_family_name) {
                continue;
            }
            known.insert(
                m.metric_family_name.clone(),
                m.r#type == METRIC_TYPE_COUNTER,
            );
        }
    }

    /// Counters are stored as rates. Metadata wins; without it, the naming conventions decide:
    /// `_total`, and the `_count`/`_sum`/`_bucket` series of histograms and summaries.
    fn kind_of(&self, name: &str) -> ValueKind {
        if let Some(&is_counter) = self.known.lock().get(name) {
            return if is_counter {
                ValueKind::Counter
            } else {
                ValueKind::Gauge
            };
        }
        let counter_suffix = ["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|s| name.ends_with(s) && name.len() > s.len());
        if counter_suffix {
            ValueKind::Counter
        } else {
            ValueKind::Gauge
        }
    }
}

/// Translates a decoded request into a batch.
pub fn translate(req: WriteRequest, families: &CounterFamilies) -> WriteBatch {
    families.learn(&req.metadata);
    let mut batch = WriteBatch::default();
    for ts in req.timeseries {
        let labels: Labels = ts.labels.into_iter().map(|l| (l.name, l.value)).collect();
        if !ts.histograms.is_empty() {
            let n = ts.histograms.len() as u64;
            batch.reject(RejectReason::UnsupportedData, n, || {
                "native histograms are not supported over remote_write; send classic histograms"
                    .into()
            });
        }
        if ts.samples.is_empty() {
            continue;
        }
        let name = labels
            .iter()
            .find(|(n, _)| n == METRIC_NAME_LABEL)
            .map_or("", |(_, v)| v.as_str());
        let kind = families.kind_of(name);
        batch.series.push(SeriesWrite {
            kind,
            points: ts
                .samples
                .iter()
                .map(|s| Point::new(s.timestamp, s.value))
                .collect(),
            labels,
        });
    }
    batch
}

/// Encodes a request the way Prometheus sends it (used by tests and the load generator).
pub fn encode(req: &WriteRequest) -> Vec<u8> {
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![
                Label {
                    name: "__name__".into(),
                    value: name.into(),
                },
                Label {
                    name: "job".into(),
                    value: "node".into(),
                },
            ],
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            histograms: vec![],
        }
    }

    #[test]
    fn round_trip_and_kinds() {
        let req = WriteRequest {
            timeseries: vec![
                series("node_load1", &[(1000, 0.5)]),
                series(
                    "node_network_receive_bytes_total",
                    &[(1000, 10.0), (2000, 20.0)],
                ),
                series("http_request_duration_seconds_bucket", &[(1000, 1.0)]),
                series("weird_counter", &[(1000, 1.0)]),
            ],
            metadata: vec![MetricMetadata {
                r#type: METRIC_TYPE_COUNTER,
                metric_family_name: "weird_counter".into(),
                help: String::new(),
                unit: String::new(),
            }],
        };
        let decoded = decode(&encode(&req), 1 << 20).unwrap();
        assert_eq!(decoded, req);
        let batch = translate(decoded, &CounterFamilies::new(10));
        let kinds: Vec<ValueKind> = batch.series.iter().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec![
                ValueKind::Gauge,
                ValueKind::Counter,
                ValueKind::Counter,
                ValueKind::Counter
            ]
        );
        assert_eq!(
            batch.series[1].points,
            vec![Point::new(1000, 10.0), Point::new(2000, 20.0)]
        );
    }

    #[test]
    fn refuses_bad_bodies_and_bombs() {
        let (reason, msg) = decode(b"definitely not snappy", 1 << 20).unwrap_err();
        assert_eq!(reason, RejectReason::MalformedBody, "{msg}");

        let not_protobuf = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        let (reason, msg) = decode(&not_protobuf, 1 << 20).unwrap_err();
        assert_eq!(reason, RejectReason::MalformedBody);
        assert!(msg.contains("protobuf"), "{msg}");

        // 16 MiB of zeros compresses to under 1 MiB; the header tells us before we inflate it.
        let bomb = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 16 << 20])
            .unwrap();
        assert!(bomb.len() < 1 << 20);
        let (reason, _) = decode(&bomb, 1 << 20).unwrap_err();
        assert_eq!(reason, RejectReason::BodyTooLarge);
    }
}

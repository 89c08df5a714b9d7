//! A fast remote_write encoder: label sets are protobuf-encoded once, each request only
//! appends one `Sample` per series and snappy-compresses the result.
//!
//! The bytes are the same `prometheus.WriteRequest` that [`presage_forecaster::ingest::remote_write`]
//! decodes (checked by the tests below against its prost types).

use anyhow::Context;
use bytes::Bytes;

use super::series::SeriesDef;

/// Protobuf tag of a length-delimited field.
const fn len_tag(field: u8) -> u8 {
    (field << 3) | 2
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    // 1 byte per started 7 bits, at least 1.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_bytes_field(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(len_tag(field));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Pre-encoded label sets and reusable buffers for one sender.
pub struct RemoteWriteEncoder {
    /// Per series: its `TimeSeries.labels` fields, already encoded.
    labels: Vec<Box<[u8]>>,
    raw: Vec<u8>,
    compressed: Vec<u8>,
    snappy: snap::raw::Encoder,
}

impl RemoteWriteEncoder {
    /// Encodes the label sets of `series` once.
    pub fn new(series: &[SeriesDef]) -> Self {
        let labels = series
            .iter()
            .map(|s| {
                let mut out = Vec::new();
                let mut label = Vec::new();
                for (name, value) in s.prometheus_labels() {
                    label.clear();
                    put_bytes_field(&mut label, 1, name.as_bytes());
                    put_bytes_field(&mut label, 2, value.as_bytes());
                    put_bytes_field(&mut out, 1, &label);
                }
                out.into_boxed_slice()
            })
            .collect();
        Self {
            labels,
            raw: Vec::new(),
            compressed: Vec::new(),
            snappy: snap::raw::Encoder::new(),
        }
    }

    /// Series known to the encoder.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the encoder knows no series.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// A snappy-compressed `WriteRequest` with one sample per series: `(index into the series
    /// given to [`RemoteWriteEncoder::new`], value)`, all at `ts_ms`.
    pub fn encode(
        &mut self,
        samples: impl IntoIterator<Item = (usize, f64)>,
        ts_ms: i64,
    ) -> anyhow::Result<Bytes> {
        self.raw.clear();
        // Sample: field 1 double (tag 0x09 + 8 bytes), field 2 int64 varint (tag 0x10).
        let ts = ts_ms as u64;
        let sample_len = 1 + 8 + 1 + varint_len(ts);
        for (index, value) in samples {
            let labels = self
                .labels
                .get(index)
                .with_context(|| format!("series index {index} out of range"))?;
            let body_len = labels.len() + 1 + varint_len(sample_len as u64) + sample_len;
            self.raw.push(len_tag(1));
            put_varint(&mut self.raw, body_len as u64);
            self.raw.extend_from_slice(labels);
            self.raw.push(len_tag(2));
            put_varint(&mut self.raw, sample_len as u64);
            self.raw.push(0x09);
            self.raw.extend_from_slice(&value.to_le_bytes());
            self.raw.push(0x10);
            put_varint(&mut self.raw, ts);
        }
        let max = snap::raw::max_compress_len(self.raw.len());
        if self.compressed.len() < max {
            self.compressed.resize(max, 0);
        }
        let n = self
            .snappy
            .compress(&self.raw, &mut self.compressed)
            .context("snappy compression failed")?;
        Ok(Bytes::copy_from_slice(&self.compressed[..n]))
    }
}

#[cfg(test)]
mod tests {
    use presage_forecaster::ingest::remote_write::{self, Label, Sample, TimeSeries, WriteRequest};

    use super::*;
    use crate::loadgen::series::generate;

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, 1 << 40, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn decodes_as_the_write_request_presage_expects() {
        let series = generate(300);
        let mut enc = RemoteWriteEncoder::new(&series);
        let picks = [(0usize, 1.5), (17, 0.0), (299, -2.25e9)];
        let ts = 1_700_000_123_456;
        let body = enc.encode(picks, ts).unwrap();
        let decoded = remote_write::decode(&body, 1 << 20).unwrap();
        let expected = WriteRequest {
            timeseries: picks
                .iter()
                .map(|&(i, value)| TimeSeries {
                    labels: series[i]
                        .prometheus_labels()
                        .into_iter()
                        .map(|(name, value)| Label { name, value })
                        .collect(),
                    samples: vec![Sample {
                        value,
                        timestamp: ts,
                    }],
                    histograms: vec![],
                })
                .collect(),
            metadata: vec![],
        };
        assert_eq!(decoded, expected);
        // And the same bytes as prost would write, bar the zero value prost leaves out.
        let again = enc.encode([(0usize, 1.5)], ts).unwrap();
        let one = WriteRequest {
            timeseries: vec![expected.timeseries[0].clone()],
            metadata: vec![],
        };
        assert_eq!(remote_write::decode(&again, 1 << 20).unwrap(), one);
        assert_eq!(again.as_ref(), remote_write::encode(&one).as_slice());
    }

    #[test]
    fn out_of_range_index_is_an_error() {
        let mut enc = RemoteWriteEncoder::new(&generate(2));
        assert!(enc.encode([(2usize, 1.0)], 0).is_err());
    }
}

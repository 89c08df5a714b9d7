//! Bounded buffers of recent log records, one per stream (resource label set).

use std::collections::{BTreeMap, HashMap, VecDeque};

use parking_lot::Mutex;
use serde::Serialize;

use super::{Selector, series_id};
use crate::ingest::{LogRecord, LogStreamWrite};

/// What a log write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogWriteOutcome {
    /// Records buffered.
    pub accepted: u64,
    /// Records refused because the stream limit was reached.
    pub rejected_stream_limit: u64,
    /// Older records pushed out of full buffers.
    pub evicted: u64,
}

struct Stream {
    labels: Vec<(String, String)>,
    records: VecDeque<LogRecord>,
}

/// Recent log records per stream, bounded in streams and in records per stream.
pub struct LogBuffer {
    streams: Mutex<HashMap<u64, Stream>>,
    max_streams: usize,
    per_stream: usize,
}

/// A log record as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    /// The stream's labels.
    pub labels: BTreeMap<String, String>,
    /// Event time, ms.
    pub ts_ms: i64,
    /// Severity text.
    pub severity: String,
    /// Body.
    pub body: String,
    /// Record attributes.
    pub attributes: BTreeMap<String, String>,
}

impl LogBuffer {
    /// A buffer holding at most `max_streams` streams of `per_stream` records each.
    pub fn new(max_streams: usize, per_stream: usize) -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            max_streams,
            per_stream: per_stream.max(1),
        }
    }

    /// Buffers the records, evicting each stream's oldest when it is full.
    pub fn write(&self, writes: Vec<LogStreamWrite>) -> LogWriteOutcome {
        let mut out = LogWriteOutcome::default();
        let mut streams = self.streams.lock();
        for mut w in writes {
            w.labels.sort();
            let id = series_id(&w.labels);
            if !streams.contains_key(&id) && streams.len() >= self.max_streams {
                out.rejected_stream_limit += w.records.len() as u64;
                continue;
            }
            let stream = streams.entry(id).or_insert_with(|| Stream {
                labels: w.labels,
                records: VecDeque::new(),
            });
            for r in w.records {
                if stream.records.len() >= self.per_stream {
                    stream.records.pop_front();
                    out.evicted += 1;
                }
                stream.records.push_back(r);
                out.accepted += 1;
            }
        }
        out
    }

    /// Streams held.
    pub fn stream_count(&self) -> usize {
        self.streams.lock().len()
    }

    /// The newest `limit` records of streams matching `sel` (all streams when `None`), oldest
    /// first.
    pub fn recent(&self, sel: Option<&Selector>, limit: usize) -> Vec<LogEntry> {
        let streams = self.streams.lock();
        let mut out: Vec<LogEntry> = Vec::new();
        for s in streams.values() {
            let matches = sel.is_none_or(|sel| {
                sel.matches(s.labels.iter().map(|(n, v)| (n.as_str(), v.as_str())))
            });
            if !matches {
                continue;
            }
            for r in s.records.iter().rev().take(limit) {
                out.push(LogEntry {
                    labels: s.labels.iter().cloned().collect(),
                    ts_ms: r.ts_ms,
                    severity: r.severity.clone(),
                    body: r.body.clone(),
                    attributes: r.attributes.iter().cloned().collect(),
                });
            }
        }
        out.sort_by_key(|e| e.ts_ms);
        let skip = out.len().saturating_sub(limit);
        out.drain(..skip);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(service: &str, bodies: &[&str]) -> LogStreamWrite {
        LogStreamWrite {
            labels: vec![("service_name".into(), service.into())],
            records: bodies
                .iter()
                .enumerate()
                .map(|(i, b)| LogRecord {
                    ts_ms: i as i64,
                    severity: "INFO".into(),
                    severity_number: 9,
                    body: (*b).into(),
                    attributes: vec![],
                })
                .collect(),
        }
    }

    #[test]
    fn bounded_per_stream_and_in_streams() {
        let buf = LogBuffer::new(2, 3);
        let out = buf.write(vec![write("a", &["1", "2", "3", "4"]), write("b", &["x"])]);
        assert_eq!(
            out,
            LogWriteOutcome {
                accepted: 5,
                rejected_stream_limit: 0,
                evicted: 1
            }
        );
        let out = buf.write(vec![write("c", &["y", "z"])]);
        assert_eq!(out.rejected_stream_limit, 2);
        assert_eq!(buf.stream_count(), 2);

        let sel = Selector::parse(r#"{service_name="a"}"#).unwrap();
        let bodies: Vec<String> = buf
            .recent(Some(&sel), 10)
            .into_iter()
            .map(|e| e.body)
            .collect();
        assert_eq!(bodies, vec!["2", "3", "4"]);
        assert_eq!(buf.recent(None, 2).len(), 2);
    }
}

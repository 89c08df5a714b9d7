//! Turning the bytes of one file into records: lines, overlong lines, and multi-line records
//! joined by a start pattern — with the file offset up to which everything has been emitted,
//! which is what a checkpoint may safely record.

use std::time::{Duration, Instant};

use regex_lite::Regex;

/// A complete record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The text, lines joined by `\n`, without the final newline (and `\r`).
    pub(crate) text: String,
    /// File offset just after the record's last newline.
    pub(crate) end_offset: u64,
}

#[derive(Debug)]
struct Pending {
    text: String,
    start_offset: u64,
    end_offset: u64,
    last_line_at: Instant,
}

/// Per-file line and record state.
#[derive(Debug)]
pub(crate) struct Assembler {
    start: Option<Regex>,
    max_line: usize,
    max_record: usize,
    /// Bytes of the current, unfinished line (at most `max_line`).
    partial: Vec<u8>,
    /// Raw bytes of the current line seen so far (more than `partial` holds when overlong).
    carried: u64,
    /// Offset just after the last newline processed.
    consumed: u64,
    pending: Option<Pending>,
    /// Newline-terminated lines seen.
    pub(crate) lines: u64,
    /// Lines cut at `max_line`, and continuation lines dropped from an overlong record.
    pub(crate) truncated: u64,
}

impl Assembler {
    /// An assembler positioned at `offset` of its file.
    pub(crate) fn new(start: Option<Regex>, max_line: usize, offset: u64) -> Self {
        let max_line = max_line.max(1);
        Self {
            start,
            max_line,
            max_record: max_line.saturating_mul(16),
            partial: Vec::new(),
            carried: 0,
            consumed: offset,
            pending: None,
            lines: 0,
            truncated: 0,
        }
    }

    /// Forgets everything (the file was truncated) and continues at `offset`.
    pub(crate) fn reset(&mut self, offset: u64) {
        self.partial.clear();
        self.carried = 0;
        self.pending = None;
        self.consumed = offset;
    }

    /// The offset before which every byte is part of an emitted record (or was skipped): the
    /// start of a pending multi-line record, else the end of the last complete line.
    pub(crate) fn safe_offset(&self) -> u64 {
        self.pending
            .as_ref()
            .map_or(self.consumed, |p| p.start_offset)
    }

    /// Feeds the bytes that follow everything fed so far; complete records go to `out`.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], now: Instant, out: &mut Vec<Record>) {
        while !bytes.is_empty() {
            match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push_partial(&bytes[..i]);
                    let start = self.consumed;
                    let end = start + self.carried + 1;
                    self.consumed = end;
                    self.carried = 0;
                    let mut line = std::mem::take(&mut self.partial);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.lines += 1;
                    let text = match String::from_utf8(line) {
                        Ok(s) => s,
                        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                    };
                    self.line(text, start, end, now, out);
                    bytes = &bytes[i + 1..];
                }
                None => {
                    self.push_partial(bytes);
                    bytes = &[];
                }
            }
        }
    }

    fn push_partial(&mut self, chunk: &[u8]) {
        let before = self.carried;
        self.carried += chunk.len() as u64;
        let room = self.max_line.saturating_sub(self.partial.len());
        if chunk.len() > room {
            self.partial.extend_from_slice(&chunk[..room]);
            // Count each overlong line once, when it first overflows.
            if before <= self.max_line as u64 {
                self.truncated += 1;
            }
        } else {
            self.partial.extend_from_slice(chunk);
        }
    }

    fn line(&mut self, text: String, start: u64, end: u64, now: Instant, out: &mut Vec<Record>) {
        let Some(re) = &self.start else {
            if !text.trim().is_empty() {
                out.push(Record {
                    text,
                    end_offset: end,
                });
            }
            return;
        };
        let starts_record = re.is_match(&text);
        match &mut self.pending {
            Some(p) if !starts_record => {
                if p.text.len() + 1 + text.len() <= self.max_record {
                    p.text.push('\n');
                    p.text.push_str(&text);
                } else {
                    self.truncated += 1;
                }
                p.end_offset = end;
                p.last_line_at = now;
            }
            _ => {
                self.flush_pending(out);
                if text.trim().is_empty() {
                    return;
                }
                self.pending = Some(Pending {
                    text,
                    start_offset: start,
                    end_offset: end,
                    last_line_at: now,
                });
            }
        }
    }

    fn flush_pending(&mut self, out: &mut Vec<Record>) {
        if let Some(p) = self.pending.take() {
            out.push(Record {
                text: p.text,
                end_offset: p.end_offset,
            });
        }
    }

    /// Emits a pending multi-line record that has waited `timeout` for another line.
    pub(crate) fn flush_idle(&mut self, now: Instant, timeout: Duration, out: &mut Vec<Record>) {
        if self
            .pending
            .as_ref()
            .is_some_and(|p| now.duration_since(p.last_line_at) >= timeout)
        {
            self.flush_pending(out);
        }
    }

    /// Emits everything held, a last line without a newline included (the file is closed for
    /// good).
    pub(crate) fn finish(&mut self, now: Instant, out: &mut Vec<Record>) {
        if self.carried > 0 {
            self.feed(b"\n", now, out);
            // The newline was ours, not the file's.
            self.consumed -= 1;
            if let Some(p) = &mut self.pending {
                p.end_offset = p.end_offset.min(self.consumed);
            }
            if let Some(last) = out.last_mut() {
                last.end_offset = last.end_offset.min(self.consumed);
            }
        }
        self.flush_pending(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(out: &[Record]) -> Vec<&str> {
        out.iter().map(|r| r.text.as_str()).collect()
    }

    #[test]
    fn lines_across_reads_with_offsets() {
        let now = Instant::now();
        let mut a = Assembler::new(None, 1024, 100);
        let mut out = Vec::new();
        a.feed(b"first\nsec", now, &mut out);
        assert_eq!(texts(&out), vec!["first"]);
        assert_eq!(out[0].end_offset, 106);
        assert_eq!(a.safe_offset(), 106);
        a.feed(b"ond\r\n\n  \nthird", now, &mut out);
        // CRLF is stripped, blank lines are skipped but consumed.
        assert_eq!(texts(&out), vec!["first", "second"]);
        assert_eq!(out[1].end_offset, 114);
        assert_eq!(a.safe_offset(), 118);
        assert_eq!(a.lines, 4);
        // A last line without newline stays until the file is closed.
        a.finish(now, &mut out);
        assert_eq!(texts(&out), vec!["first", "second", "third"]);
        assert_eq!(out[2].end_offset, 123);
        assert_eq!(a.safe_offset(), 123);
    }

    #[test]
    fn overlong_lines_are_cut_and_counted_once() {
        let now = Instant::now();
        let mut a = Assembler::new(None, 4, 0);
        let mut out = Vec::new();
        a.feed(b"abcdefgh", now, &mut out);
        a.feed(b"ijkl\nok\n", now, &mut out);
        assert_eq!(texts(&out), vec!["abcd", "ok"]);
        assert_eq!(out[0].end_offset, 13);
        assert_eq!(out[1].end_offset, 16);
        assert_eq!(a.truncated, 1);
    }

    #[test]
    fn invalid_utf8_is_replaced_not_dropped() {
        let mut a = Assembler::new(None, 100, 0);
        let mut out = Vec::new();
        a.feed(b"caf\xe9\n", Instant::now(), &mut out);
        assert_eq!(texts(&out), vec!["caf\u{fffd}"]);
    }

    #[test]
    fn multiline_records_by_start_pattern() {
        let t0 = Instant::now();
        let re = Regex::new(r"^\d{4}-").unwrap();
        let mut a = Assembler::new(Some(re), 1024, 0);
        let mut out = Vec::new();
        let text = b"2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)\n2024-01-01 INFO next\n";
        a.feed(text, t0, &mut out);
        assert_eq!(
            texts(&out),
            vec!["2024-01-01 ERROR boom\n  at a.b(C.java:1)\n  at d.e(F.java:2)"]
        );
        let second_start = text.len() as u64 - "2024-01-01 INFO next\n".len() as u64;
        assert_eq!(out[0].end_offset, second_start);
        // The second record waits for continuation lines: the safe offset stays at its start.
        assert_eq!(a.safe_offset(), second_start);
        a.flush_idle(
            t0 + Duration::from_millis(500),
            Duration::from_secs(1),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        a.flush_idle(
            t0 + Duration::from_secs(1),
            Duration::from_secs(1),
            &mut out,
        );
        assert_eq!(texts(&out)[1], "2024-01-01 INFO next");
        assert_eq!(out[1].end_offset, text.len() as u64);
        assert_eq!(a.safe_offset(), text.len() as u64);
    }

    #[test]
    fn continuation_lines_before_any_start_form_a_record() {
        let re = Regex::new(r"^\[").unwrap();
        let mut a = Assembler::new(Some(re), 1024, 0);
        let mut out = Vec::new();
        let now = Instant::now();
        a.feed(b"  orphan tail\n  more\n[x] start\n", now, &mut out);
        assert_eq!(texts(&out), vec!["  orphan tail\n  more"]);
        a.finish(now, &mut out);
        assert_eq!(texts(&out)[1], "[x] start");
    }

    #[test]
    fn overlong_multiline_records_keep_their_head() {
        let re = Regex::new(r"^S").unwrap();
        let mut a = Assembler::new(Some(re), 4, 0);
        let now = Instant::now();
        let mut out = Vec::new();
        // max record = 16 × 4 = 64 bytes
        let mut input = b"S1\n".to_vec();
        for _ in 0..40 {
            input.extend_from_slice(b" c\n");
        }
        input.extend_from_slice(b"S2\n");
        a.feed(&input, now, &mut out);
        assert_eq!(out.len(), 1);
        assert!(out[0].text.len() <= 64);
        assert!(a.truncated > 0);
        assert_eq!(out[0].end_offset, 3 + 40 * 3);
    }

    #[test]
    fn reset_after_truncation() {
        let mut a = Assembler::new(None, 100, 0);
        let mut out = Vec::new();
        let now = Instant::now();
        a.feed(b"one\ntw", now, &mut out);
        a.reset(0);
        assert_eq!(a.safe_offset(), 0);
        a.feed(b"new\n", now, &mut out);
        assert_eq!(texts(&out), vec!["one", "new"]);
        assert_eq!(out[1].end_offset, 4);
    }
}

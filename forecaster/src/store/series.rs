//! One series: raw points resampled to the step, kept as compressed chunks.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::chunk::Chunk;
use crate::detect::{FitRequest, SeriesDetector, StepScore};
use crate::ingest::{Point, RejectReason, ValueKind};
use crate::model::Baseline;
use crate::model::ModelSettings;

/// Interned label pairs, sorted by name.
pub(crate) type LabelSet = Box<[(Arc<str>, Arc<str>)]>;

/// Step, retention and detection settings shared by every series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resolution {
    pub(crate) step_ms: i64,
    /// Whole steps kept behind the newest one.
    pub(crate) retention_slots: i64,
    /// Detection settings; `None` stores history only.
    pub(crate) detect: Option<DetectSettings>,
    /// Significant digits a step's value is rounded to (`storage.significant_digits`); 0 keeps
    /// it exact.
    pub(crate) digits: u8,
}

/// How series are modelled and scored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetectSettings {
    pub(crate) model: ModelSettings,
    pub(crate) refit_every_ms: i64,
}

/// What closing steps produced.
#[derive(Debug, Default)]
pub(crate) struct StepOut {
    pub(crate) scores: Vec<StepScore>,
    pub(crate) fit: Option<FitRequest>,
    /// Steps close as history: stored, not scored (a backfill); see [`Series::catch_up`].
    pub(crate) history: bool,
    /// Steps with a value closed as history since the last catch-up.
    pub(crate) history_steps: u64,
}

impl Resolution {
    pub(crate) fn slot_of(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.step_ms) * self.step_ms
    }
}

/// The step being filled: not yet part of the history.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct OpenStep {
    slot_ms: i64,
    /// Gauge: the last value. Counters and deltas: the increase seen so far.
    value: f64,
    /// Counters and deltas: the milliseconds the increase was counted over.
    elapsed_ms: f64,
}

impl OpenStep {
    /// The step's value, rounded to `digits` significant digits (0: exact).
    fn resolve(&self, kind: ValueKind, digits: u8) -> f64 {
        let value = match kind {
            ValueKind::Gauge => self.value,
            ValueKind::Counter | ValueKind::Delta => {
                if self.elapsed_ms > 0.0 {
                    self.value / (self.elapsed_ms / 1000.0)
                } else {
                    f64::NAN
                }
            }
        };
        super::decimal::round_significant(value, digits)
    }
}

#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) labels: LabelSet,
    pub(crate) kind: ValueKind,
    /// Newest raw timestamp accepted, `i64::MIN` before the first.
    pub(crate) last_ts: i64,
    /// The raw value at `last_ts`.
    last_value: f64,
    /// `start_ms` of the newest raw point (counter reset detection).
    last_start: i64,
    open: Option<OpenStep>,
    chunks: VecDeque<Chunk>,
    pub(crate) detector: Option<Box<SeriesDetector>>,
    /// Raw points accepted over the series' life.
    pub(crate) points_total: u64,
    /// What the last checkpoint left on disk.
    pub(crate) saved: SavedMarks,
}

/// What of a series is on disk, so a checkpoint writes only what changed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SavedMarks {
    /// Labels and kind are on disk.
    pub(crate) known: bool,
    /// Points or steps changed since the last checkpoint.
    pub(crate) dirty: bool,
    /// A fit was installed since the last checkpoint.
    pub(crate) model_dirty: bool,
    /// Sealed chunks starting before this are on disk.
    pub(crate) until_ms: i64,
    /// The oldest chunk on disk starts here (at or after).
    pub(crate) from_ms: i64,
}

impl SavedMarks {
    /// Nothing of the series is known to be on disk any more: the next checkpoint writes its
    /// labels, every sealed chunk, its head and its baseline.
    pub(crate) fn forget(&mut self) {
        *self = Self {
            from_ms: self.from_ms,
            model_dirty: true,
            ..Self::default()
        };
    }
}

impl Default for SavedMarks {
    fn default() -> Self {
        Self {
            known: false,
            dirty: true,
            model_dirty: false,
            until_ms: i64::MIN,
            from_ms: i64::MIN,
        }
    }
}

/// A series' state on disk apart from its sealed chunks and its baseline: small, rewritten by
/// every checkpoint that finds the series changed.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedHead {
    last_ts: i64,
    last_value: f64,
    last_start: i64,
    open: Option<OpenStep>,
    points_total: u64,
    /// The newest chunk, still being filled.
    tail: Option<Chunk>,
    detector: Option<SeriesDetector>,
}

impl SavedHead {
    /// Whether its newest chunk decodes (see [`Chunk::is_intact`]).
    pub(crate) fn is_intact(&self) -> bool {
        self.tail.as_ref().is_none_or(Chunk::is_intact)
    }
}

/// What a checkpoint writes for one series.
#[derive(Debug, Default)]
pub(crate) struct SeriesSave {
    /// The head, encoded.
    pub(crate) head: Vec<u8>,
    /// Newly sealed chunks: start and encoded chunk.
    pub(crate) chunks: Vec<(i64, Vec<u8>)>,
    /// Chunks on disk starting in `[from, to)` fell out of retention.
    pub(crate) drop_chunks: Option<(i64, i64)>,
    /// The baseline, encoded, when a fit was installed since the last checkpoint.
    pub(crate) baseline: Option<Vec<u8>>,
}

/// A point in resampled history: slot timestamp and value (NaN where the step had no data).
pub(crate) type Slot = (i64, f64);

impl SeriesSave {
    /// Bytes it holds.
    pub(crate) fn bytes(&self) -> usize {
        self.head.len()
            + self.chunks.iter().map(|(_, c)| c.len()).sum::<usize>()
            + self.baseline.as_ref().map_or(0, Vec::len)
    }
}

impl Series {
    pub(crate) fn new(labels: LabelSet, kind: ValueKind) -> Self {
        Self {
            labels,
            kind,
            last_ts: i64::MIN,
            last_value: f64::NAN,
            last_start: 0,
            open: None,
            chunks: VecDeque::new(),
            detector: None,
            points_total: 0,
            saved: SavedMarks::default(),
        }
    }

    /// What changed since the last checkpoint, encoded, and marks it saved. `None` when
    /// nothing did.
    pub(crate) fn save(&mut self) -> Option<SeriesSave> {
        if !self.saved.dirty && !self.saved.model_dirty {
            return None;
        }
        let mut out = SeriesSave::default();
        let sealed = self.chunks.len().saturating_sub(1);
        for c in self.chunks.iter().take(sealed) {
            if c.start_ms() >= self.saved.until_ms {
                out.chunks
                    .push((c.start_ms(), postcard::to_stdvec(c).unwrap_or_default()));
            }
        }
        if let Some(front) = self.chunks.front()
            && front.start_ms() > self.saved.from_ms
        {
            if self.saved.until_ms > self.saved.from_ms {
                out.drop_chunks = Some((self.saved.from_ms, front.start_ms()));
            }
            self.saved.from_ms = front.start_ms();
        }
        if let Some(tail) = self.chunks.back() {
            self.saved.until_ms = tail.start_ms();
        }
        let head = SavedHead {
            last_ts: self.last_ts,
            last_value: self.last_value,
            last_start: self.last_start,
            open: self.open,
            points_total: self.points_total,
            tail: self.chunks.back().cloned(),
            detector: self.detector.as_deref().cloned(),
        };
        out.head = postcard::to_stdvec(&head).unwrap_or_default();
        if self.saved.model_dirty {
            out.baseline = self
                .detector
                .as_ref()
                .and_then(|d| d.baseline())
                .and_then(|b| postcard::to_stdvec(b).ok());
        }
        self.saved.dirty = false;
        self.saved.model_dirty = false;
        Some(out)
    }

    /// A series as a checkpoint left it: its head, its sealed chunks in order (those older
    /// than the head's tail) and its baseline.
    pub(crate) fn restore(
        labels: LabelSet,
        kind: ValueKind,
        head: SavedHead,
        sealed: Vec<Chunk>,
        baseline: Option<Baseline>,
    ) -> Self {
        let tail_start = head.tail.as_ref().map_or(i64::MAX, Chunk::start_ms);
        let mut chunks: VecDeque<Chunk> = sealed
            .into_iter()
            .filter(|c| c.start_ms() < tail_start)
            .collect();
        let from_ms = chunks.front().map_or(tail_start, Chunk::start_ms);
        chunks.extend(head.tail);
        let mut detector = head.detector.map(Box::new);
        if let (Some(d), Some(b)) = (detector.as_mut(), baseline) {
            d.restore_baseline(b);
        }
        Self {
            labels,
            kind,
            last_ts: head.last_ts,
            last_value: head.last_value,
            last_start: head.last_start,
            open: head.open,
            chunks,
            detector,
            points_total: head.points_total,
            saved: SavedMarks {
                known: true,
                dirty: false,
                model_dirty: false,
                until_ms: tail_start,
                from_ms,
            },
        }
    }

    /// Checks ordering and adds one point. The caller has already checked the value is finite
    /// and the timestamp is inside the accepted window.
    pub(crate) fn push(
        &mut self,
        p: Point,
        res: &Resolution,
        out: &mut StepOut,
    ) -> Result<(), RejectReason> {
        if p.ts_ms < self.last_ts {
            return Err(RejectReason::OutOfOrder);
        }
        if p.ts_ms == self.last_ts {
            // A retried request re-sends the same point: accept it as a no-op.
            return if p.value.to_bits() == self.last_value.to_bits() {
                Ok(())
            } else {
                Err(RejectReason::DuplicateTimestamp)
            };
        }

        let (increment, elapsed_ms) = match self.kind {
            ValueKind::Gauge => (p.value, 0.0),
            ValueKind::Counter => {
                if self.last_ts == i64::MIN {
                    // The first point only sets the baseline.
                    (0.0, 0.0)
                } else {
                    let reset = p.value < self.last_value
                        || (p.start_ms != 0
                            && self.last_start != 0
                            && p.start_ms != self.last_start);
                    if reset {
                        let since = if p.start_ms > self.last_ts && p.start_ms < p.ts_ms {
                            p.start_ms
                        } else {
                            self.last_ts
                        };
                        (p.value, (p.ts_ms - since) as f64)
                    } else {
                        (p.value - self.last_value, (p.ts_ms - self.last_ts) as f64)
                    }
                }
            }
            ValueKind::Delta => {
                let elapsed = if p.start_ms > 0 && p.start_ms < p.ts_ms {
                    p.ts_ms - p.start_ms
                } else {
                    res.step_ms
                };
                (p.value, elapsed as f64)
            }
        };

        let slot = res.slot_of(p.ts_ms);
        match &mut self.open {
            Some(open) if open.slot_ms == slot => {
                if self.kind == ValueKind::Gauge {
                    open.value = increment;
                } else {
                    open.value += increment;
                    open.elapsed_ms += elapsed_ms;
                }
            }
            _ => {
                if let Some(done) = self.open.take() {
                    self.append(done.slot_ms, done.resolve(self.kind, res.digits), res, out);
                }
                self.open = Some(OpenStep {
                    slot_ms: slot,
                    value: increment,
                    elapsed_ms,
                });
            }
        }
        self.last_ts = p.ts_ms;
        self.last_value = p.value;
        self.last_start = p.start_ms;
        self.points_total += 1;
        self.saved.dirty = true;
        Ok(())
    }

    /// Appends a completed step, filling skipped steps with NaN and dropping what falls out of
    /// retention.
    /// Completes the open step now, as if the next step had begun (end of a backtest).
    pub(crate) fn close_open(&mut self, res: &Resolution, out: &mut StepOut) {
        if let Some(done) = self.open.take() {
            self.append(done.slot_ms, done.resolve(self.kind, res.digits), res, out);
        }
    }

    /// The `n` step values before `boundary_ms` (NaN where a step had no data).
    /// Slot of the step still open (receiving points), if any.
    pub(crate) fn open_slot(&self) -> Option<i64> {
        self.open.as_ref().map(|o| o.slot_ms)
    }

    /// What a fit at `boundary_ms` sees: up to `n` steps before it, starting no earlier than the
    /// series' first step (a young series is not padded to the full window).
    pub(crate) fn fit_values(&self, boundary_ms: i64, n: usize, res: &Resolution) -> Vec<f64> {
        let first = self.first_slot().unwrap_or(boundary_ms);
        let held = usize::try_from((boundary_ms - first).max(0) / res.step_ms).unwrap_or(0);
        self.values_before(boundary_ms, n.min(held), res)
    }

    pub(crate) fn values_before(&self, boundary_ms: i64, n: usize, res: &Resolution) -> Vec<f64> {
        let start = boundary_ms - n as i64 * res.step_ms;
        let mut out = Vec::with_capacity(n);
        let mut next = start;
        for (ts, v) in self.history(start, boundary_ms - 1, res) {
            while next < ts {
                out.push(f64::NAN);
                next += res.step_ms;
            }
            out.push(v);
            next = ts + res.step_ms;
        }
        out
    }

    /// After history was written (see [`StepOut::history`]): the one fit that catches the
    /// model up with it, if one is due now.
    pub(crate) fn catch_up(&mut self, res: &Resolution, out: &mut StepOut) -> Option<FitRequest> {
        let d = res.detect.as_ref()?;
        let steps = std::mem::take(&mut out.history_steps);
        if steps == 0 {
            return None;
        }
        let boundary = self.chunks.back()?.end_ms(res.step_ms);
        self.detector
            .get_or_insert_with(|| Box::new(SeriesDetector::new(&d.model)))
            .catch_up(boundary, steps, &d.model, d.refit_every_ms)
    }

    fn append(&mut self, slot_ms: i64, value: f64, res: &Resolution, out: &mut StepOut) {
        self.saved.dirty = true;
        self.store_slot(slot_ms, value, res);
        if out.history {
            out.history_steps += u64::from(value.is_finite());
            return;
        }
        if let Some(d) = &res.detect {
            let det = self
                .detector
                .get_or_insert_with(|| Box::new(SeriesDetector::new(&d.model)));
            if let Some(fit) =
                det.on_step(slot_ms, value, &d.model, d.refit_every_ms, &mut out.scores)
            {
                out.fit = Some(fit);
            }
        }
    }

    fn store_slot(&mut self, slot_ms: i64, value: f64, res: &Resolution) {
        let mut next = self
            .chunks
            .back()
            .map_or(slot_ms, |c| c.end_ms(res.step_ms));
        if slot_ms < next {
            return; // Cannot happen: slots only move forward.
        }
        if (slot_ms - next) / res.step_ms > res.retention_slots {
            // The gap is longer than the retention: everything before it is gone anyway.
            self.chunks.clear();
            next = slot_ms;
        }
        while next <= slot_ms {
            let v = if next == slot_ms { value } else { f64::NAN };
            match self.chunks.back_mut() {
                Some(c) if !c.is_full() => c.push(v),
                _ => {
                    if let Some(c) = self.chunks.back_mut() {
                        c.seal();
                    }
                    let mut c = Chunk::new(next);
                    c.push(v);
                    // Grown one chunk at a time: the queue's length levels off at the
                    // retention, and doubling would leave most of the last doubling unused.
                    self.chunks.reserve_exact(1);
                    self.chunks.push_back(c);
                }
            }
            next += res.step_ms;
        }
        let oldest_kept = slot_ms - res.retention_slots * res.step_ms;
        while self
            .chunks
            .front()
            .is_some_and(|c| c.end_ms(res.step_ms) <= oldest_kept)
        {
            self.chunks.pop_front();
        }
    }

    /// Resampled history in `[start_ms, end_ms]`, the open step included, with missing steps
    /// as NaN.
    pub(crate) fn history(&self, start_ms: i64, end_ms: i64, res: &Resolution) -> Vec<Slot> {
        let mut out = Vec::new();
        for c in &self.chunks {
            if c.end_ms(res.step_ms) <= start_ms || c.start_ms() > end_ms {
                continue;
            }
            let mut ts = c.start_ms();
            for v in c.values() {
                if ts >= start_ms && ts <= end_ms {
                    out.push((ts, v));
                }
                ts += res.step_ms;
            }
        }
        if let Some(open) = &self.open
            && open.slot_ms >= start_ms
            && open.slot_ms <= end_ms
        {
            let next = self
                .chunks
                .back()
                .map_or(open.slot_ms, |c| c.end_ms(res.step_ms));
            let mut ts = next.max(start_ms);
            while ts < open.slot_ms {
                out.push((ts, f64::NAN));
                ts += res.step_ms;
            }
            out.push((open.slot_ms, open.resolve(self.kind, res.digits)));
        }
        out
    }

    /// Oldest slot held, if any.
    pub(crate) fn first_slot(&self) -> Option<i64> {
        self.chunks
            .front()
            .map(Chunk::start_ms)
            .or(self.open.map(|o| o.slot_ms))
    }

    /// Number of resampled steps held (the open one included).
    pub(crate) fn slot_count(&self) -> u64 {
        self.chunks.iter().map(|c| u64::from(c.len())).sum::<u64>() + u64::from(self.open.is_some())
    }

    /// Heap bytes used by history (chunks and their queue).
    pub(crate) fn history_bytes(&self) -> usize {
        self.chunks.iter().map(Chunk::heap_bytes).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Chunk>()
    }

    /// Bytes of the series record itself, its label array and its share of label strings.
    pub(crate) fn series_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.labels.len() * std::mem::size_of::<(Arc<str>, Arc<str>)>()
    }

    /// Bytes of detection state (baseline, scorer, queue).
    pub(crate) fn model_bytes(&self) -> usize {
        self.detector.as_ref().map_or(0, |d| d.memory_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 60_000;

    fn res() -> Resolution {
        Resolution {
            step_ms: STEP,
            retention_slots: 60,
            detect: None,
            digits: 0,
        }
    }

    fn series(kind: ValueKind) -> Series {
        Series::new(Box::new([]), kind)
    }

    fn values(s: &Series) -> Vec<(i64, Option<f64>)> {
        s.history(i64::MIN, i64::MAX, &res())
            .into_iter()
            .map(|(t, v)| (t / STEP, (!v.is_nan()).then_some(v)))
            .collect()
    }

    #[test]
    fn gauge_keeps_last_value_per_step_and_marks_gaps() {
        let mut s = series(ValueKind::Gauge);
        for (ts, v) in [(0, 1.0), (30_000, 2.0), (60_000, 3.0), (200_000, 4.0)] {
            s.push(Point::new(ts, v), &res(), &mut StepOut::default())
                .unwrap();
        }
        assert_eq!(
            values(&s),
            vec![(0, Some(2.0)), (1, Some(3.0)), (2, None), (3, Some(4.0))]
        );
    }

    #[test]
    fn counter_becomes_rate_across_resets() {
        let mut s = series(ValueKind::Counter);
        // 10 per second for two minutes, a reset, then 5 per second.
        for (ts, v) in [
            (0, 100.0),
            (30_000, 400.0),
            (60_000, 700.0),
            (90_000, 1000.0),
            (120_000, 1300.0),
            (150_000, 150.0),
            (180_000, 300.0),
        ] {
            s.push(Point::new(ts, v), &res(), &mut StepOut::default())
                .unwrap();
        }
        // Step 2 mixes 30 s at 10/s and, after the reset, 30 s at 5/s.
        assert_eq!(
            values(&s),
            vec![
                (0, Some(10.0)),
                (1, Some(10.0)),
                (2, Some(7.5)),
                (3, Some(5.0))
            ]
        );
    }

    #[test]
    fn significant_digits_round_every_step_the_open_one_included() {
        let r = Resolution { digits: 4, ..res() };
        let mut s = series(ValueKind::Counter);
        // Scraped every 59.9 s: the rates have every digit a division gives.
        for (i, v) in [0.0, 100.0, 250.0, 260.0].into_iter().enumerate() {
            let ts = i as i64 * 59_900;
            s.push(Point::new(ts, v), &r, &mut StepOut::default())
                .unwrap();
        }
        let got: Vec<f64> = s
            .history(i64::MIN, i64::MAX, &r)
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| !v.is_nan())
            .collect();
        assert_eq!(got, vec![1.669, 2.504, 0.1669]);
        // Exact without the setting.
        let exact: Vec<f64> = s
            .history(i64::MIN, i64::MAX, &res())
            .into_iter()
            .map(|(_, v)| v)
            .filter(|v| !v.is_nan())
            .collect();
        assert_eq!(exact.last(), Some(&(10.0 / 59.9)));
    }

    #[test]
    fn delta_points_become_rates() {
        let mut s = series(ValueKind::Delta);
        for (ts, v) in [(10_000, 60.0), (70_000, 120.0)] {
            s.push(
                Point {
                    ts_ms: ts,
                    value: v,
                    start_ms: ts - 60_000,
                },
                &res(),
                &mut StepOut::default(),
            )
            .unwrap();
        }
        assert_eq!(values(&s), vec![(0, Some(1.0)), (1, Some(2.0))]);
    }

    #[test]
    fn ordering_rules() {
        let mut s = series(ValueKind::Gauge);
        s.push(Point::new(60_000, 1.0), &res(), &mut StepOut::default())
            .unwrap();
        assert_eq!(
            s.push(Point::new(59_999, 1.0), &res(), &mut StepOut::default()),
            Err(RejectReason::OutOfOrder)
        );
        assert_eq!(
            s.push(Point::new(60_000, 1.0), &res(), &mut StepOut::default()),
            Ok(())
        );
        assert_eq!(
            s.push(Point::new(60_000, 2.0), &res(), &mut StepOut::default()),
            Err(RejectReason::DuplicateTimestamp)
        );
        assert_eq!(s.points_total, 1);
    }

    #[test]
    fn retention_drops_old_chunks_and_long_gaps_reset() {
        let r = Resolution {
            step_ms: STEP,
            retention_slots: 300,
            detect: None,
            digits: 0,
        };
        let mut s = series(ValueKind::Gauge);
        for i in 0..1000 {
            s.push(Point::new(i * STEP, i as f64), &r, &mut StepOut::default())
                .unwrap();
        }
        // Kept: whole chunks covering at least the last 300 steps, not everything.
        let first = s.first_slot().unwrap() / STEP;
        assert!(
            first <= 999 - 300 && first > 999 - 300 - 240,
            "first slot {first}"
        );
        // A gap longer than the retention starts over.
        s.push(Point::new(5000 * STEP, 1.0), &r, &mut StepOut::default())
            .unwrap();
        s.push(Point::new(5001 * STEP, 1.0), &r, &mut StepOut::default())
            .unwrap();
        assert_eq!(s.first_slot(), Some(5000 * STEP));
        assert_eq!(s.slot_count(), 2);
    }
}

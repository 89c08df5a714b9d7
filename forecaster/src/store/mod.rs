//! The series store: label index, resampled in-memory history, and log buffers.
//!
//! Series are spread over shards by the hash of their labels so that concurrent writers rarely
//! contend. Each shard holds its series in a slab, a hash → slot map, and an inverted index
//! (label name → value → slots) whose keys double as the interner for label strings.

mod bands;
mod chunk;
mod decimal;
mod durable;
pub mod logs;
mod selector;
mod series;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use presage_config::ForecasterConfig;
use serde::Serialize;

use crate::detect::StepScore;
use crate::ingest::{
    Labels, METRIC_NAME_LABEL, Point, RejectReason, SeriesWrite, ValueKind, WriteBatch,
};
use crate::model::{self, Baseline, ModelSettings, Readiness};
pub use bands::PastBand;
pub(crate) use durable::fixed_array;
pub use durable::{Durable, OpenError};
use durable::{Journal, Record};
pub use selector::Selector;
use series::{DetectSettings, LabelSet, Resolution, Series, StepOut};

const SHARDS: usize = 32;

/// A series' identity: a stable hash (xxh3) of its sorted labels.
pub type SeriesId = u64;

/// Limits the store enforces on writes.
#[derive(Debug, Clone)]
pub struct StoreLimits {
    /// Most series at once.
    pub max_series: usize,
    /// Most labels on one series, `__name__` included.
    pub max_labels: usize,
    /// Longest label name.
    pub max_label_name: usize,
    /// Longest label value.
    pub max_label_value: usize,
    /// How far past `now` a timestamp may be.
    pub max_future_ms: i64,
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteOutcome {
    /// Points stored (idempotent re-sends of the newest point included).
    pub accepted: u64,
    /// Points refused, by reason (translation rejections included).
    pub rejected: BTreeMap<RejectReason, u64>,
    /// The first problem, worded for the client.
    pub first_error: Option<String>,
    /// Series created by this write.
    pub new_series: u64,
    /// Steps scored by this write.
    pub scores: Vec<(SeriesId, StepScore)>,
    /// Fits due: run them with [`Store::complete_fit`] (off the async threads).
    pub fit_jobs: Vec<FitJob>,
    /// With a durable store: the journal position after this write's last record. The write
    /// is durable once the journal is committed up to it ([`Durable::wait_committed`]).
    pub journal_pos: u64,
}

/// A fit a series is waiting for. It carries no data: the steps before the boundary are
/// complete and do not change, so the fit reads them when it runs, and a queue of thousands of
/// jobs stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitJob {
    /// The series.
    pub id: SeriesId,
    /// The fit sees the steps before this slot.
    pub boundary_ms: i64,
}

impl WriteOutcome {
    /// Total points refused.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, reason: RejectReason, count: u64, message: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        *self.rejected.entry(reason).or_default() += count;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }
}

/// A series as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesInfo {
    /// Stable id (hex in JSON).
    #[serde(serialize_with = "hex_id")]
    pub id: SeriesId,
    /// Labels, `__name__` included, sorted by name.
    pub labels: BTreeMap<String, String>,
    /// `gauge`, `counter` or `delta` (the latter two are stored as per-second rates).
    pub kind: &'static str,
    /// Oldest resampled step held (ms), if any.
    pub first_ms: Option<i64>,
    /// Newest raw timestamp accepted (ms).
    pub last_ms: i64,
    /// Resampled steps held.
    pub steps: u64,
    /// Raw points accepted since the series was created.
    pub points_total: u64,
    /// How far the series' model has come.
    pub readiness: Option<Readiness>,
    /// Seasonal periods detected, in seconds.
    pub periods_seconds: Vec<u64>,
    /// The model behind the current baseline.
    pub method: Option<model::Method>,
    /// The latest anomaly score.
    pub last_score: Option<StepScore>,
}

fn hex_id<S: serde::Serializer>(id: &SeriesId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{id:016x}"))
}

/// Resampled history of one series, with its current baseline.
#[derive(Debug, Clone)]
pub struct SeriesHistory {
    /// The series.
    pub info: SeriesInfo,
    /// `(slot timestamp ms, value)`; NaN where a step had no data.
    pub points: Vec<(i64, f64)>,
    /// The current baseline, if fitted.
    pub baseline: Option<Baseline>,
}

/// Memory use, measured by walking the store.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MemoryStats {
    /// Series held.
    pub series: usize,
    /// Bytes of compressed history (chunks).
    pub history_bytes: usize,
    /// Bytes of series records, label arrays and label strings.
    pub series_bytes: usize,
    /// Bytes of the index: hash map, postings.
    pub index_bytes: usize,
    /// Bytes of detection state: baselines, scorers.
    pub model_bytes: usize,
}

impl MemoryStats {
    /// Everything but history, per series.
    pub fn bytes_per_series_excluding_history(&self) -> f64 {
        if self.series == 0 {
            0.0
        } else {
            (self.series_bytes + self.index_bytes) as f64 / self.series as f64
        }
    }
}

type Postings = HashMap<Arc<str>, HashMap<Arc<str>, Vec<u32>>>;

#[derive(Default)]
struct Shard {
    slots: Vec<Option<Series>>,
    free: Vec<u32>,
    by_id: HashMap<SeriesId, u32>,
    postings: Postings,
}

impl Shard {
    fn intern(&mut self, name: &str, value: &str) -> (Arc<str>, Arc<str>) {
        let name_key = match self.postings.get_key_value(name) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(name);
                self.postings.insert(k.clone(), HashMap::new());
                k
            }
        };
        let values = self.postings.entry(name_key.clone()).or_default();
        let value_key = match values.get_key_value(value) {
            Some((k, _)) => k.clone(),
            None => {
                let k: Arc<str> = Arc::from(value);
                values.insert(k.clone(), Vec::new());
                k
            }
        };
        (name_key, value_key)
    }

    fn insert(&mut self, id: SeriesId, labels: &[(String, String)], kind: ValueKind) -> u32 {
        let interned: LabelSet = labels.iter().map(|(n, v)| self.intern(n, v)).collect();
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        for (n, v) in interned.iter() {
            if let Some(list) = self.postings.get_mut(n).and_then(|m| m.get_mut(v)) {
                list.push(slot);
            }
        }
        self.slots[slot as usize] = Some(Series::new(interned, kind));
        self.by_id.insert(id, slot);
        slot
    }

    fn remove(&mut self, id: SeriesId) {
        let Some(slot) = self.by_id.remove(&id) else {
            return;
        };
        let Some(series) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return;
        };
        for (n, v) in series.labels.iter() {
            let Some(values) = self.postings.get_mut(n) else {
                continue;
            };
            if let Some(list) = values.get_mut(v) {
                if let Some(pos) = list.iter().position(|s| *s == slot) {
                    list.swap_remove(pos);
                }
                if list.is_empty() {
                    values.remove(v);
                }
            }
            if values.is_empty() {
                self.postings.remove(n);
            }
        }
        self.free.push(slot);
    }

    fn series(&self, slot: u32) -> Option<&Series> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// Slots matching the selector.
    fn select(&self, sel: &Selector, out: &mut Vec<u32>) {
        for equal in sel.alternatives() {
            // The shortest posting list among the equality matchers bounds the candidates.
            let mut best: Option<&Vec<u32>> = None;
            let mut impossible = false;
            for (n, v) in &equal {
                match self.postings.get(*n).and_then(|m| m.get(*v)) {
                    Some(list) => {
                        if best.is_none_or(|b| list.len() < b.len()) {
                            best = Some(list);
                        }
                    }
                    None => impossible = true,
                }
            }
            if impossible {
                continue;
            }
            let candidates: Box<dyn Iterator<Item = u32>> = match best {
                Some(list) => Box::new(list.iter().copied()),
                None => Box::new(0..self.slots.len() as u32),
            };
            for slot in candidates {
                if let Some(s) = self.series(slot)
                    && sel.matches(s.labels.iter().map(|(n, v)| (&**n, &**v)))
                {
                    out.push(slot);
                }
            }
        }
        out.sort_unstable();
        out.dedup();
    }

    fn index_bytes(&self) -> usize {
        let mut bytes = self.by_id.capacity() * (std::mem::size_of::<(SeriesId, u32)>() + 1)
            + self.slots.capacity() * std::mem::size_of::<Option<Series>>()
            + self.free.capacity() * 4;
        for (name, values) in &self.postings {
            bytes +=
                name.len() + 16 + std::mem::size_of::<(Arc<str>, HashMap<Arc<str>, Vec<u32>>)>();
            for (value, list) in values {
                bytes += value.len()
                    + 16
                    + std::mem::size_of::<(Arc<str>, Vec<u32>)>()
                    + list.capacity() * 4;
            }
        }
        bytes
    }
}

/// The in-memory series store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    series_count: AtomicUsize,
    res: Resolution,
    retention_ms: i64,
    limits: StoreLimits,
    inline_fits: bool,
    /// Where accepted writes are journaled, when the store is durable.
    journal: Option<Arc<Journal>>,
    /// Series dropped since the last checkpoint (durable stores only).
    removed: Mutex<Vec<SeriesId>>,
}

/// What a checkpoint wrote.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CheckpointStats {
    /// Series whose state was written.
    pub series: usize,
    /// Sealed chunks written.
    pub chunks: usize,
    /// Baselines written.
    pub models: usize,
    /// Series removed from disk.
    pub removed: usize,
    /// Bytes written, values only.
    pub bytes: u64,
    /// Journal entries dropped.
    pub journal_entries: usize,
}

/// What a restart found on disk.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct RestoreStats {
    /// Series loaded from the checkpoint.
    pub series: usize,
    /// Series with a fitted baseline among them.
    pub models: usize,
    /// Journal entries replayed after the checkpoint.
    pub journal_entries: usize,
    /// Points replayed from the journal.
    pub journal_points: u64,
    /// Journal entries that could not be read and were skipped.
    pub journal_errors: usize,
}

impl Store {
    /// A store with the step, retention and limits of `cfg`.
    pub fn new(cfg: &ForecasterConfig) -> Self {
        let step_ms = i64::try_from(cfg.model.step.as_millis())
            .unwrap_or(60_000)
            .max(1);
        let retention_ms = i64::try_from(cfg.storage.retention.as_millis()).unwrap_or(i64::MAX / 4);
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        let mut model = ModelSettings::for_step(step_ms);
        model.min_points = cfg.model.min_points;
        model.band_level = cfg.model.band_level;
        // The stored path only has to reach the next refit (with slack for a late one); the
        // breach forecast extrapolates the envelope trend instead.
        let horizon = ms(cfg.model.forecast_horizon).min(2 * ms(cfg.model.refit_every));
        model.horizon_steps = ((horizon / step_ms).max(2)) as usize;
        model.breach_lookback_steps = ((ms(cfg.model.breach_lookback) / step_ms).max(8)) as usize;
        model.max_fit_points = model
            .max_fit_points
            .min(((retention_ms / step_ms).max(64)) as usize);
        let detect = DetectSettings {
            model,
            refit_every_ms: ms(cfg.model.refit_every).max(step_ms),
        };
        Self {
            inline_fits: false,
            journal: None,
            removed: Mutex::new(Vec::new()),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            series_count: AtomicUsize::new(0),
            res: Resolution {
                step_ms,
                retention_slots: (retention_ms / step_ms).max(1),
                detect: Some(detect),
                digits: cfg.storage.significant_digits,
            },
            retention_ms,
            limits: StoreLimits {
                max_series: cfg.limits.max_series,
                max_labels: cfg.limits.max_labels_per_series,
                max_label_name: cfg.limits.max_label_name_length,
                max_label_value: cfg.limits.max_label_value_length,
                max_future_ms: i64::try_from(cfg.limits.max_future_skew.as_millis())
                    .unwrap_or(i64::MAX / 4),
            },
        }
    }

    /// Runs fits inside [`Store::write`] instead of returning them as jobs: deterministic and
    /// single-threaded, for backtests.
    pub fn with_inline_fits(mut self) -> Self {
        self.inline_fits = true;
        self
    }

    /// Journals every accepted write to `durable` (see [`Store::checkpoint`] and
    /// [`Store::restore`]).
    pub fn with_durable(mut self, durable: &Durable) -> Self {
        self.journal = Some(durable.journal.clone());
        self
    }

    /// The resampling step in milliseconds.
    pub fn step_ms(&self) -> i64 {
        self.res.step_ms
    }

    /// The configured series limit.
    pub fn max_series(&self) -> usize {
        self.limits.max_series
    }

    /// Series currently held.
    pub fn series_count(&self) -> usize {
        self.series_count.load(Ordering::Relaxed)
    }

    /// Validates and stores a batch. `now_ms` is the daemon's clock, used only to bound
    /// timestamps; resampling and retention follow the data's own timestamps.
    pub fn write(&self, batch: WriteBatch, now_ms: i64) -> WriteOutcome {
        self.write_as(batch, now_ms, false)
    }

    /// Stores a batch of history (a backfill): the steps are kept but not scored, and each
    /// series gets one fit on what it now holds instead of replaying every scheduled refit over
    /// the history. Live data after it is scored as usual.
    pub fn write_history(&self, batch: WriteBatch, now_ms: i64) -> WriteOutcome {
        self.write_as(batch, now_ms, true)
    }

    fn write_as(&self, batch: WriteBatch, now_ms: i64, history: bool) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        for (reason, n) in &batch.rejected {
            *out.rejected.entry(*reason).or_default() += n;
        }
        out.first_error = batch.first_error;
        for sw in batch.series {
            self.write_series(sw, now_ms, history, true, &mut out);
        }
        out
    }

    fn write_series(
        &self,
        mut sw: SeriesWrite,
        now_ms: i64,
        history: bool,
        journal: bool,
        out: &mut WriteOutcome,
    ) {
        let journal = self.journal.as_deref().filter(|_| journal);
        let n = sw.points.len() as u64;
        if n == 0 {
            return;
        }
        // Prometheus drops labels with empty values; so do we.
        sw.labels.retain(|(_, v)| !v.is_empty());
        sw.labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if let Err((reason, msg)) = self.check_labels(&sw.labels) {
            out.reject(reason, n, || msg);
            return;
        }
        let id = series_id(&sw.labels);
        let shard_idx = (id % SHARDS as u64) as usize;
        let mut shard = self.shards[shard_idx].lock();
        let slot = match shard.by_id.get(&id) {
            Some(&slot) => slot,
            None => {
                let prev = self.series_count.fetch_add(1, Ordering::Relaxed);
                if prev >= self.limits.max_series {
                    self.series_count.fetch_sub(1, Ordering::Relaxed);
                    out.reject(RejectReason::SeriesLimit, n, || {
                        format!(
                            "series limit of {} reached (limits.max_series): new series {} refused; existing series are still accepted",
                            self.limits.max_series,
                            display_labels(&sw.labels)
                        )
                    });
                    return;
                }
                out.new_series += 1;
                if let Some(j) = journal {
                    out.journal_pos = j.series(id, sw.kind, &sw.labels);
                }
                shard.insert(id, &sw.labels, sw.kind)
            }
        };
        let Some(series) = shard.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        if series.labels.len() != sw.labels.len()
            || series
                .labels
                .iter()
                .zip(&sw.labels)
                .any(|((a, b), (c, d))| **a != **c || **b != **d)
        {
            // Two label sets with the same 64-bit hash: astronomically rare, but never mix them.
            out.reject(RejectReason::InvalidLabel, n, || {
                format!(
                    "series {} collides with an existing series id",
                    display_labels(&sw.labels)
                )
            });
            return;
        }
        let oldest = now_ms.saturating_sub(self.retention_ms);
        let newest = now_ms.saturating_add(self.limits.max_future_ms);
        let mut steps = StepOut {
            history,
            ..StepOut::default()
        };
        let mut accepted = Vec::new();
        for p in sw.points {
            let result = check_point(&p, oldest, newest)
                .and_then(|()| series.push(p, &self.res, &mut steps));
            match result {
                Ok(()) => {
                    out.accepted += 1;
                    if journal.is_some() {
                        accepted.push(p);
                    }
                }
                Err(reason) => {
                    let last = series.last_ts;
                    out.reject(reason, 1, || {
                        point_error(reason, &p, last, now_ms, &sw.labels)
                    })
                }
            }
            self.after_steps(id, series, &mut steps, out);
        }
        if history {
            steps.fit = series.catch_up(&self.res, &mut steps);
            self.after_steps(id, series, &mut steps, out);
        }
        if let Some(j) = journal
            && !accepted.is_empty()
        {
            // Still under the shard lock: the journal orders this series' writes as applied.
            out.journal_pos = j.points(id, history, &accepted);
        }
    }

    /// Hands on what closing steps produced: scores, and fits (run now when inline).
    fn after_steps(
        &self,
        id: SeriesId,
        series: &mut Series,
        steps: &mut StepOut,
        out: &mut WriteOutcome,
    ) {
        out.scores.extend(steps.scores.drain(..).map(|s| (id, s)));
        let Some(d) = self.res.detect else {
            return;
        };
        while let Some(fit) = steps.fit.take() {
            if !self.inline_fits {
                out.fit_jobs.push(FitJob {
                    id,
                    boundary_ms: fit.boundary_ms,
                });
                return;
            }
            let values = series.fit_values(fit.boundary_ms, d.model.max_fit_points, &self.res);
            let result = model::fit(&values, fit.boundary_ms, &d.model);
            steps.fit = self.install(series, fit.boundary_ms, result, &mut steps.scores);
            out.scores.extend(steps.scores.drain(..).map(|s| (id, s)));
        }
    }

    /// Installs a fit result in a series' detector and scores the steps that waited for it.
    fn install(
        &self,
        series: &mut Series,
        boundary_ms: i64,
        result: Result<Baseline, Readiness>,
        scores: &mut Vec<StepScore>,
    ) -> Option<crate::detect::FitRequest> {
        let d = self.res.detect?;
        let waited: Vec<(i64, f64)> = match series.detector.as_ref().and_then(|det| det.waiting()) {
            Some((first, last)) => series
                .history(first, last, &self.res)
                .into_iter()
                .filter(|(_, v)| !v.is_nan())
                .collect(),
            None => Vec::new(),
        };
        series.saved.dirty = true;
        series.saved.model_dirty = true;
        series.detector.as_mut()?.install(
            boundary_ms,
            result,
            &d.model,
            d.refit_every_ms,
            &waited,
            scores,
        )
    }

    /// Runs a fit job (CPU-heavy: call it off the async threads) and installs the result,
    /// returning the steps that waited for it, scored, and any fit that became due meanwhile.
    pub fn complete_fit(&self, job: FitJob) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        let Some(d) = self.res.detect else {
            return out;
        };
        let shard_idx = (job.id % SHARDS as u64) as usize;
        // Copy the steps out under the lock, fit without it.
        let values = {
            let shard = self.shards[shard_idx].lock();
            let Some(series) = shard
                .by_id
                .get(&job.id)
                .and_then(|slot| shard.series(*slot))
            else {
                return out;
            };
            series.fit_values(job.boundary_ms, d.model.max_fit_points, &self.res)
        };
        let result = model::fit(&values, job.boundary_ms, &d.model);
        drop(values);
        let mut shard = self.shards[shard_idx].lock();
        let Some(&slot) = shard.by_id.get(&job.id) else {
            return out;
        };
        let Some(series) = shard.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return out;
        };
        let mut steps = StepOut::default();
        steps.fit = self.install(series, job.boundary_ms, result, &mut steps.scores);
        self.after_steps(job.id, series, &mut steps, &mut out);
        out
    }

    /// Completes every series' open step (the end of a backtest's input).
    pub fn flush(&self) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let ids: Vec<(SeriesId, u32)> = shard.by_id.iter().map(|(i, s)| (*i, *s)).collect();
            for (id, slot) in ids {
                if let Some(series) = shard.slots.get_mut(slot as usize).and_then(Option::as_mut) {
                    let mut steps = StepOut::default();
                    series.close_open(&self.res, &mut steps);
                    self.after_steps(id, series, &mut steps, &mut out);
                }
            }
        }
        out
    }

    fn check_labels(&self, labels: &[(String, String)]) -> Result<(), (RejectReason, String)> {
        let name = labels
            .iter()
            .find(|(n, _)| n == METRIC_NAME_LABEL)
            .map(|(_, v)| v.as_str());
        let Some(name) = name else {
            return Err((
                RejectReason::MissingMetricName,
                format!("series {} has no metric name", display_labels(labels)),
            ));
        };
        if !valid_metric_name(name) {
            return Err((
                RejectReason::InvalidLabel,
                format!("invalid metric name {name:?}: expected [a-zA-Z_:][a-zA-Z0-9_:]*"),
            ));
        }
        if labels.len() > self.limits.max_labels {
            return Err((
                RejectReason::TooManyLabels,
                format!(
                    "series {name} has {} labels, more than the limit of {} (limits.max_labels_per_series)",
                    labels.len(),
                    self.limits.max_labels
                ),
            ));
        }
        for (i, (n, v)) in labels.iter().enumerate() {
            if n.len() > self.limits.max_label_name {
                return Err((
                    RejectReason::LabelNameTooLong,
                    format!(
                        "series {name}: label name of {} bytes is longer than {} (limits.max_label_name_length)",
                        n.len(),
                        self.limits.max_label_name
                    ),
                ));
            }
            if v.len() > self.limits.max_label_value {
                return Err((
                    RejectReason::LabelValueTooLong,
                    format!(
                        "series {name}: value of label {n} is {} bytes, longer than {} (limits.max_label_value_length)",
                        v.len(),
                        self.limits.max_label_value
                    ),
                ));
            }
            if !valid_label_name(n) {
                return Err((
                    RejectReason::InvalidLabel,
                    format!(
                        "series {name}: invalid label name {n:?}: expected [a-zA-Z_][a-zA-Z0-9_]*"
                    ),
                ));
            }
            if i > 0 && labels[i - 1].0 == *n {
                return Err((
                    RejectReason::InvalidLabel,
                    format!("series {name}: label {n} appears twice"),
                ));
            }
        }
        Ok(())
    }

    /// Ids of the series matching `sel`, at most `limit`, in a stable order.
    pub fn select(&self, sel: &Selector, limit: usize) -> Vec<SeriesInfo> {
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            slots.clear();
            shard.select(sel, &mut slots);
            for &slot in &slots {
                if let Some(s) = shard.series(slot) {
                    out.push(self.info(s));
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out.truncate(limit);
        out
    }

    /// History in `[start_ms, end_ms]` of the series matching `sel`, at most `limit` series.
    pub fn history(
        &self,
        sel: &Selector,
        start_ms: i64,
        end_ms: i64,
        limit: usize,
    ) -> Vec<SeriesHistory> {
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            slots.clear();
            shard.select(sel, &mut slots);
            for &slot in &slots {
                if let Some(s) = shard.series(slot) {
                    out.push(SeriesHistory {
                        info: self.info(s),
                        points: s.history(start_ms, end_ms, &self.res),
                        baseline: s.detector.as_ref().and_then(|d| d.baseline().cloned()),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.info.labels.cmp(&b.info.labels));
        out.truncate(limit);
        out
    }

    fn info(&self, s: &Series) -> SeriesInfo {
        let labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        SeriesInfo {
            id: series_id(&labels),
            labels: labels.into_iter().collect(),
            kind: s.kind.as_str(),
            first_ms: s.first_slot(),
            last_ms: s.last_ts,
            steps: s.slot_count(),
            points_total: s.points_total,
            readiness: s.detector.as_ref().map(|d| d.readiness().clone()),
            periods_seconds: s
                .detector
                .as_ref()
                .and_then(|d| d.baseline())
                .map(|b| {
                    b.periods
                        .iter()
                        .map(|p| (i64::from(*p) * self.res.step_ms / 1000) as u64)
                        .collect()
                })
                .unwrap_or_default(),
            method: s
                .detector
                .as_ref()
                .and_then(|d| d.baseline())
                .map(|b| b.method),
            last_score: s.detector.as_ref().and_then(|d| d.last_score().copied()),
        }
    }

    /// Labels, latest score and envelope trend of scored series matching `sel`, at most `limit`.
    pub fn trends(
        &self,
        sel: &Selector,
        limit: usize,
    ) -> Vec<(Labels, StepScore, model::EnvelopeTrend)> {
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            slots.clear();
            shard.select(sel, &mut slots);
            for &slot in &slots {
                let Some(s) = shard.series(slot) else {
                    continue;
                };
                let Some(d) = s.detector.as_ref() else {
                    continue;
                };
                let (Some(score), Some(trend)) =
                    (d.last_score().copied(), d.baseline().and_then(|b| b.trend))
                else {
                    continue;
                };
                let labels: Vec<(String, String)> = s
                    .labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                out.push((labels, score, trend));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        out
    }

    /// Labels and latest score of scored series matching any of `sels` (every series when
    /// empty), at most `limit`, in a stable order.
    pub fn latest_scores(&self, sels: &[Selector], limit: usize) -> Vec<(Labels, StepScore)> {
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            slots.clear();
            if sels.is_empty() {
                slots.extend(shard.by_id.values().copied());
            } else {
                for sel in sels {
                    shard.select(sel, &mut slots);
                }
                slots.sort_unstable();
                slots.dedup();
            }
            for &slot in &slots {
                let Some(s) = shard.series(slot) else {
                    continue;
                };
                let Some(score) = s.detector.as_ref().and_then(|d| d.last_score().copied()) else {
                    continue;
                };
                // Interned labels: cloning them bumps reference counts, no string copies.
                out.push((s.labels.clone(), score));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.truncate(limit);
        out.into_iter()
            .map(|(labels, score)| {
                let labels = labels
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect();
                (labels, score)
            })
            .collect()
    }

    /// Ids of the series matching `sel`, at most `limit`.
    pub fn select_ids(&self, sel: &Selector, limit: usize) -> Vec<SeriesId> {
        let mut out = Vec::new();
        let mut slots = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            slots.clear();
            shard.select(sel, &mut slots);
            if slots.is_empty() {
                continue;
            }
            slots.sort_unstable();
            out.extend(
                shard
                    .by_id
                    .iter()
                    .filter(|(_, slot)| slots.binary_search(slot).is_ok())
                    .map(|(id, _)| *id),
            );
            if out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        out
    }

    /// What the API shows about one series, if it exists.
    pub fn info_of(&self, id: SeriesId) -> Option<SeriesInfo> {
        let shard = self.shards[(id % SHARDS as u64) as usize].lock();
        let slot = *shard.by_id.get(&id)?;
        shard.series(slot).map(|s| self.info(s))
    }

    /// The `n` steps before `boundary_ms` of series `id` (NaN where a step had no data), oldest
    /// first; `None` when the series does not exist.
    pub fn values_before(&self, id: SeriesId, boundary_ms: i64, n: usize) -> Option<Vec<f64>> {
        let shard = self.shards[(id % SHARDS as u64) as usize].lock();
        let slot = *shard.by_id.get(&id)?;
        let mut v = shard.series(slot)?.values_before(boundary_ms, n, &self.res);
        v.resize(n, f64::NAN);
        Some(v)
    }

    /// The labels of a series, if it exists.
    pub fn labels_of(&self, id: SeriesId) -> Option<BTreeMap<String, String>> {
        let shard = self.shards[(id % SHARDS as u64) as usize].lock();
        let slot = *shard.by_id.get(&id)?;
        shard.series(slot).map(|s| {
            s.labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
    }

    /// Removes series whose newest sample is older than the retention by the daemon's clock,
    /// and returns how many went.
    pub fn drop_stale(&self, now_ms: i64) -> usize {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock();
            let stale: Vec<SeriesId> = shard
                .by_id
                .iter()
                .filter(|(_, slot)| shard.series(**slot).is_some_and(|s| s.last_ts < cutoff))
                .map(|(id, _)| *id)
                .collect();
            for id in stale {
                shard.remove(id);
                removed += 1;
                if self.journal.is_some() {
                    self.removed.lock().push(id);
                }
            }
        }
        self.series_count.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Walks the store and measures its memory. Takes each shard's lock in turn.
    pub fn memory(&self) -> MemoryStats {
        let mut m = MemoryStats::default();
        for shard in self.shards.iter() {
            let shard = shard.lock();
            m.index_bytes += shard.index_bytes();
            for s in shard.slots.iter().flatten() {
                m.series += 1;
                m.history_bytes += s.history_bytes();
                m.series_bytes += s.series_bytes();
                m.model_bytes += s.model_bytes();
            }
        }
        m
    }
}

/// Series a checkpoint encodes per hold of a shard's lock.
const CHECKPOINT_LOCK_SERIES: usize = 256;
/// Bytes a checkpoint gathers before writing them: bounds the memory it holds at once.
const CHECKPOINT_BATCH_BYTES: usize = 8 << 20;

impl Store {
    /// Writes what changed since the last checkpoint to `db`, with `extra` entries for the
    /// `meta` keyspace, then drops the journal the checkpoint covers. Takes each shard's lock
    /// in turn, briefly: ingest goes on meanwhile. Blocking: call it off the async threads.
    pub fn checkpoint(
        &self,
        db: &Durable,
        extra: &[(&str, Vec<u8>)],
    ) -> Result<CheckpointStats, fjall::Error> {
        let result = self.try_checkpoint(db, extra);
        if result.is_err() {
            // Some series were marked saved although their batch may not have been written:
            // the next checkpoint writes every series whole (the journal is kept until then).
            for shard in self.shards.iter() {
                for series in shard.lock().slots.iter_mut().flatten() {
                    series.saved.forget();
                }
            }
        }
        result
    }

    fn try_checkpoint(
        &self,
        db: &Durable,
        extra: &[(&str, Vec<u8>)],
    ) -> Result<CheckpointStats, fjall::Error> {
        let mut stats = CheckpointStats::default();
        // Everything applied so far, committed: the checkpoint covers it, and the journal up to
        // it can go once the checkpoint is written.
        let covered = db.sync_journal()?;

        // Removals first, in their own batch: a series dropped and created again since the
        // last checkpoint is then written afresh below.
        let removed = std::mem::take(&mut *self.removed.lock());
        if !removed.is_empty() {
            let mut batch = db.db.batch();
            for id in &removed {
                let key = id.to_be_bytes();
                batch.remove(&db.series, key);
                batch.remove(&db.heads, key);
                batch.remove(&db.models, key);
                for k in db.chunks.prefix(key) {
                    batch.remove(&db.chunks, k.key()?);
                }
            }
            stats.removed = removed.len();
            batch.commit()?;
        }

        let mut pending: Vec<(SeriesId, Option<Vec<u8>>, series::SeriesSave)> = Vec::new();
        let mut pending_bytes = 0;
        for shard in self.shards.iter() {
            let ids: Vec<(SeriesId, u32)> =
                shard.lock().by_id.iter().map(|(i, s)| (*i, *s)).collect();
            // A few hundred series per lock: ingest into the shard waits at most that long.
            for group in ids.chunks(CHECKPOINT_LOCK_SERIES) {
                {
                    let mut shard = shard.lock();
                    for &(id, slot) in group {
                        if shard.by_id.get(&id) != Some(&slot) {
                            continue; // Dropped (or dropped and created again) meanwhile.
                        }
                        let Some(series) =
                            shard.slots.get_mut(slot as usize).and_then(Option::as_mut)
                        else {
                            continue;
                        };
                        let meta = (!series.saved.known).then(|| {
                            let labels: Vec<(String, String)> = series
                                .labels
                                .iter()
                                .map(|(n, v)| (n.to_string(), v.to_string()))
                                .collect();
                            let mut meta = Vec::new();
                            durable::encode_series_meta(series.kind, &labels, &mut meta);
                            meta
                        });
                        series.saved.known = true;
                        let save = series.save();
                        if meta.is_none() && save.is_none() {
                            continue;
                        }
                        let save = save.unwrap_or_default();
                        pending_bytes += save.bytes() + meta.as_ref().map_or(0, Vec::len);
                        pending.push((id, meta, save));
                    }
                }
                // Bounded memory: write out every few megabytes.
                if pending_bytes >= CHECKPOINT_BATCH_BYTES {
                    self.write_saves(db, &mut pending, &mut stats)?;
                    pending_bytes = 0;
                }
            }
        }
        self.write_saves(db, &mut pending, &mut stats)?;

        let mut batch = db.db.batch();
        for (key, value) in extra {
            stats.bytes += value.len() as u64;
            batch.insert(&db.meta, *key, value.as_slice());
        }
        batch.insert(&db.meta, "checkpoint", covered.to_le_bytes());
        batch.commit()?;
        db.db.persist(fjall::PersistMode::SyncAll)?;
        db.checkpointed.store(covered, Ordering::Relaxed);

        // The journal up to `covered` is in the checkpoint now.
        let mut batch = db.db.batch();
        for entry in db.journal_ks.range(..=covered.to_be_bytes()) {
            batch.remove(&db.journal_ks, entry.key()?);
            stats.journal_entries += 1;
        }
        batch.commit()?;
        Ok(stats)
    }

    /// Loads the checkpointed series with ids in `[lo, hi]`: how many, how many with a
    /// baseline, and the fits that were in flight.
    fn restore_range(
        &self,
        db: &Durable,
        lo: SeriesId,
        hi: SeriesId,
    ) -> Result<(usize, usize, Vec<FitJob>), fjall::Error> {
        let (mut series_n, mut models_n, mut fits) = (0, 0, Vec::new());
        let ids = lo.to_be_bytes()..=hi.to_be_bytes();
        let mut heads = Cursor::new(db.heads.range(ids.clone()));
        let mut models = Cursor::new(db.models.range(ids.clone()));
        let mut chunks = Cursor::new(
            db.chunks
                .range(durable::chunk_key(lo, i64::MIN)..=durable::chunk_key(hi, i64::MAX)),
        );
        for entry in db.series.range(ids) {
            let (key, meta) = entry.into_inner()?;
            let Ok(id_be) = <[u8; 8]>::try_from(&*key) else {
                continue;
            };
            let id = SeriesId::from_be_bytes(id_be);
            let unreadable = |what: &str, e: &dyn std::fmt::Display| {
                tracing::error!(id = format_args!("{id:016x}"), error = %e, "unreadable {what} skipped");
            };
            let head = heads.take(id_be)?.into_iter().next().and_then(|h| {
                postcard::from_bytes::<series::SavedHead>(&h)
                    .map_err(|e| unreadable("head", &e))
                    .ok()
                    .filter(|h| {
                        h.is_intact() || {
                            unreadable("head", &"its newest chunk does not decode");
                            false
                        }
                    })
            });
            let sealed: Vec<chunk::Chunk> = chunks
                .take(id_be)?
                .iter()
                .filter_map(|c| {
                    postcard::from_bytes::<chunk::Chunk>(c)
                        .map_err(|e| unreadable("chunk", &e))
                        .ok()
                        .filter(|c| {
                            c.is_intact() || {
                                unreadable("chunk", &"its values do not decode");
                                false
                            }
                        })
                })
                .collect();
            let baseline = models.take(id_be)?.into_iter().next().and_then(|b| {
                postcard::from_bytes::<Baseline>(&b)
                    .map_err(|e| unreadable("baseline", &e))
                    .ok()
            });
            let (kind, labels) = match durable::decode_series_meta(&mut &*meta) {
                Ok(m) => m,
                Err(e) => {
                    unreadable("series", &e);
                    continue;
                }
            };
            models_n += usize::from(baseline.is_some());
            let mut shard = self.shards[(id % SHARDS as u64) as usize].lock();
            if shard.by_id.contains_key(&id) {
                continue;
            }
            let slot = shard.insert(id, &labels, kind);
            let Some(fresh) = shard.slots.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            let mut restored = match head {
                Some(head) => Series::restore(fresh.labels, kind, head, sealed, baseline),
                None => fresh,
            };
            restored.saved.known = true;
            if let Some(boundary_ms) = restored.detector.as_ref().and_then(|d| d.in_flight()) {
                fits.push(FitJob { id, boundary_ms });
            }
            shard.slots[slot as usize] = Some(restored);
            self.series_count.fetch_add(1, Ordering::Relaxed);
            series_n += 1;
        }
        Ok((series_n, models_n, fits))
    }

    fn write_saves(
        &self,
        db: &Durable,
        pending: &mut Vec<(SeriesId, Option<Vec<u8>>, series::SeriesSave)>,
        stats: &mut CheckpointStats,
    ) -> Result<(), fjall::Error> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut batch = db.db.batch();
        for (id, meta, save) in pending.drain(..) {
            let key = id.to_be_bytes();
            if let Some(meta) = meta {
                stats.bytes += meta.len() as u64;
                batch.insert(&db.series, key, meta);
            }
            if let Some((from, to)) = save.drop_chunks {
                for k in db
                    .chunks
                    .range(durable::chunk_key(id, from)..durable::chunk_key(id, to))
                {
                    batch.remove(&db.chunks, k.key()?);
                }
            }
            for (start, bytes) in save.chunks {
                stats.chunks += 1;
                stats.bytes += bytes.len() as u64;
                batch.insert(&db.chunks, durable::chunk_key(id, start), bytes);
            }
            if let Some(model) = save.baseline {
                stats.models += 1;
                stats.bytes += model.len() as u64;
                batch.insert(&db.models, key, model);
            }
            if !save.head.is_empty() {
                stats.series += 1;
                stats.bytes += save.head.len() as u64;
                batch.insert(&db.heads, key, save.head);
            }
        }
        batch.commit()
    }

    /// Loads the last checkpoint from `db` and replays the journal after it. Returns what it
    /// found, and the fits to run: those that were in flight at the checkpoint and those the
    /// replay made due. Call it on an empty store, before serving.
    pub fn restore(
        &self,
        db: &Durable,
        now_ms: i64,
    ) -> Result<(RestoreStats, WriteOutcome), fjall::Error> {
        let mut stats = RestoreStats::default();
        let mut out = WriteOutcome::default();
        // The id space in as many ranges as there are cores, each read in one sequential pass
        // over the four keyspaces (all keyed by series id first).
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
        let span = u64::MAX / threads as u64;
        let loaded = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads as u64)
                .map(|t| {
                    let lo = t * span;
                    let hi = if t + 1 == threads as u64 {
                        u64::MAX
                    } else {
                        lo + span - 1
                    };
                    scope.spawn(move || self.restore_range(db, lo, hi))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(fjall::Error::from(std::io::Error::other(
                            "a thread loading the store panicked",
                        )))
                    })
                })
                .collect::<Vec<_>>()
        });
        for part in loaded {
            let (series, models, fits) = part?;
            stats.series += series;
            stats.models += models;
            out.fit_jobs.extend(fits);
        }

        let covered = db.checkpoint_pos()?;
        for entry in db.journal_after(covered) {
            let (_, bytes) = entry?;
            let records = match durable::decode_records(&bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "unreadable journal entry skipped");
                    stats.journal_errors += 1;
                    continue;
                }
            };
            stats.journal_entries += 1;
            for record in records {
                match record {
                    Record::Series { id, kind, labels } => {
                        let mut shard = self.shards[(id % SHARDS as u64) as usize].lock();
                        if !shard.by_id.contains_key(&id) {
                            shard.insert(id, &labels, kind);
                            self.series_count.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Record::Points {
                        id,
                        history,
                        points,
                    } => {
                        let labels = {
                            let shard = self.shards[(id % SHARDS as u64) as usize].lock();
                            let Some(series) = shard.by_id.get(&id).and_then(|s| shard.series(*s))
                            else {
                                continue;
                            };
                            let kind = series.kind;
                            let labels: Vec<(String, String)> = series
                                .labels
                                .iter()
                                .map(|(n, v)| (n.to_string(), v.to_string()))
                                .collect();
                            (labels, kind)
                        };
                        stats.journal_points += points.len() as u64;
                        let sw = SeriesWrite {
                            labels: labels.0,
                            kind: labels.1,
                            points,
                        };
                        self.write_series(sw, now_ms, history, false, &mut out);
                    }
                }
            }
        }
        // Replayed points the checkpoint already held are refused as not newer: not news.
        out.rejected.clear();
        out.first_error = None;
        Ok((stats, out))
    }
}

/// A sequential pass over a keyspace whose keys start with a series id, taken one series at a
/// time in id order.
struct Cursor<I: Iterator<Item = fjall::Guard>> {
    it: I,
    /// The first entry past the series last taken.
    pending: Option<(fjall::Slice, fjall::Slice)>,
}

impl<I: Iterator<Item = fjall::Guard>> Cursor<I> {
    fn new(it: I) -> Self {
        Self { it, pending: None }
    }

    /// The values of the entries of series `id` (keys starting with its 8 bytes), skipping
    /// entries of series before it (left without a series record).
    fn take(&mut self, id: [u8; 8]) -> Result<Vec<fjall::Slice>, fjall::Error> {
        let mut out = Vec::new();
        loop {
            let (key, value) = match self.pending.take() {
                Some(kv) => kv,
                None => match self.it.next() {
                    Some(guard) => guard.into_inner()?,
                    None => break,
                },
            };
            match key.get(..8).map(|k| k.cmp(&id[..])) {
                Some(std::cmp::Ordering::Equal) => out.push(value),
                Some(std::cmp::Ordering::Less) | None => {}
                Some(std::cmp::Ordering::Greater) => {
                    self.pending = Some((key, value));
                    break;
                }
            }
        }
        Ok(out)
    }
}

fn check_point(p: &Point, oldest: i64, newest: i64) -> Result<(), RejectReason> {
    if !p.value.is_finite() {
        Err(RejectReason::NonFinite)
    } else if p.ts_ms > newest {
        Err(RejectReason::TooFarInFuture)
    } else if p.ts_ms < oldest {
        Err(RejectReason::TooOld)
    } else {
        Ok(())
    }
}

fn point_error(
    reason: RejectReason,
    p: &Point,
    last_ts: i64,
    now_ms: i64,
    labels: &[(String, String)],
) -> String {
    let series = display_labels(labels);
    match reason {
        RejectReason::NonFinite => format!("series {series}: value {} is not finite", p.value),
        RejectReason::TooFarInFuture => format!(
            "series {series}: timestamp {} is {}s ahead of the server clock (limits.max_future_skew)",
            p.ts_ms,
            (p.ts_ms - now_ms) / 1000
        ),
        RejectReason::TooOld => format!(
            "series {series}: timestamp {} is older than the retention window (storage.retention)",
            p.ts_ms
        ),
        RejectReason::OutOfOrder => format!(
            "series {series}: out-of-order sample at {}, older than the newest sample at {last_ts}",
            p.ts_ms
        ),
        RejectReason::DuplicateTimestamp => format!(
            "series {series}: a different value for timestamp {} was already stored",
            p.ts_ms
        ),
        other => format!("series {series}: {other}"),
    }
}

/// `name{a="1", b="2"}` for messages.
pub fn display_labels(labels: &[(String, String)]) -> String {
    let name = labels
        .iter()
        .find(|(n, _)| n == METRIC_NAME_LABEL)
        .map_or("", |(_, v)| v.as_str());
    let rest: Vec<String> = labels
        .iter()
        .filter(|(n, _)| n != METRIC_NAME_LABEL)
        .map(|(n, v)| format!("{n}={v:?}"))
        .collect();
    let mut s = String::with_capacity(64);
    s.push_str(name.get(..200).unwrap_or(name));
    s.push('{');
    s.push_str(&rest.join(", "));
    s.push('}');
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// The stable id of a sorted label set.
pub fn series_id(sorted: &[(String, String)]) -> SeriesId {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (n, v) in sorted {
        h.update(n.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xff]);
    }
    h.digest()
}

fn valid_label_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_metric_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests;

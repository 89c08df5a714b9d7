//! Expected bands over past history, for charts and `/api/v1/forecast`.
//!
//! A series keeps only its current baseline's forward path. The band it was scored against at
//! an earlier step is recomputed on request: fits are deterministic and see only the steps
//! before their boundary, so refitting at the same event-time boundaries the detector used
//! (multiples of `model.refit_every`) and taking each fit's path up to the next boundary gives
//! back the bands the steps were judged by (exactly for steps after the first regular refit).

use crate::model::{self, Band};

use super::{SHARDS, SeriesId, Store};

/// The expected band at one past step.
pub type PastBand = (i64, Band);

impl Store {
    /// Bands for the steps in `[start_ms, end_ms)` of series `id`, from at most `max_fits`
    /// refits (the most recent part of the range when it needs more). Runs the fits on the
    /// calling thread without holding any lock: call it off the async runtime.
    pub fn past_bands(
        &self,
        id: SeriesId,
        start_ms: i64,
        end_ms: i64,
        max_fits: usize,
    ) -> Vec<PastBand> {
        self.past_bands_until(id, start_ms, end_ms, max_fits, i64::MAX)
    }

    /// Like [`Store::past_bands`], with no refit after `last_fit_ms`: later steps keep the band
    /// of the last fit before it (as far as its path reaches) — what was expected before
    /// something happened.
    pub fn past_bands_until(
        &self,
        id: SeriesId,
        start_ms: i64,
        end_ms: i64,
        max_fits: usize,
        last_fit_ms: i64,
    ) -> Vec<PastBand> {
        let Some(detect) = self.res.detect else {
            return Vec::new();
        };
        let step = self.res.step_ms;
        let every = detect.refit_every_ms.max(step);
        let settings = detect.model;
        let end_ms = end_ms.min(i64::MAX - every);
        if start_ms >= end_ms || max_fits == 0 {
            return Vec::new();
        }
        // Boundaries at or before the range's start up to the end, newest `max_fits` kept.
        let first = start_ms.div_euclid(every) * every;
        let mut boundaries: Vec<i64> = (0..)
            .map(|k| first + k * every)
            .take_while(|b| *b < end_ms && *b <= last_fit_ms)
            .collect();
        if boundaries.len() > max_fits {
            boundaries.drain(..boundaries.len() - max_fits);
        }
        let Some(&oldest) = boundaries.first() else {
            return Vec::new();
        };
        // One copy of the values under the shard lock, fits outside it. The copy starts at the
        // series' first step when that is later than the oldest fit's window.
        let (mut values, n) = {
            let shard = self.shards[(id % SHARDS as u64) as usize].lock();
            let Some(series) = shard.by_id.get(&id).and_then(|slot| shard.series(*slot)) else {
                return Vec::new();
            };
            let window_start = oldest - settings.max_fit_points as i64 * step;
            let span_start = series
                .first_slot()
                .map_or(window_start, |f| f.max(window_start));
            let n = ((end_ms - span_start) / step).max(0) as usize;
            (series.values_before(end_ms, n, &self.res), n)
        };
        // Leading steps without data are NaN already; so are the missing newest ones.
        values.resize(n, f64::NAN);
        let values_start = end_ms - n as i64 * step;
        let mut out = Vec::new();
        for (i, &b) in boundaries.iter().enumerate() {
            if b <= values_start {
                continue;
            }
            let upto = ((b - values_start) / step) as usize;
            let Ok(baseline) = model::fit(&values[..upto.min(n)], b, &settings) else {
                continue;
            };
            let next = boundaries.get(i + 1).copied().unwrap_or(end_ms);
            let mut t = b.max(start_ms);
            while t < next && t < end_ms {
                if let Some(band) = baseline.at(t) {
                    out.push((t, band));
                }
                t += step;
            }
        }
        out
    }
}

impl Store {
    /// A fresh fit of series `id` on everything up to its newest closed step, with a forward
    /// path of `horizon_steps` steps. Runs the fit on the calling thread, no lock held.
    pub fn forecast_from_newest(
        &self,
        id: SeriesId,
        horizon_steps: usize,
    ) -> Option<model::Baseline> {
        let detect = self.res.detect?;
        let step = self.res.step_ms;
        let mut settings = detect.model;
        settings.horizon_steps = horizon_steps.max(1);
        let (mut values, boundary, n) = {
            let shard = self.shards[(id % SHARDS as u64) as usize].lock();
            let series = shard.by_id.get(&id).and_then(|slot| shard.series(*slot))?;
            // The newest closed step is the one before the open one.
            let boundary = series
                .open_slot()
                .unwrap_or(series.last_ts / step * step + step);
            let first = series.first_slot().unwrap_or(boundary);
            let n = (((boundary - first) / step).max(0) as usize).min(settings.max_fit_points);
            (series.values_before(boundary, n, &self.res), boundary, n)
        };
        values.resize(n, f64::NAN);
        model::fit(&values, boundary, &settings).ok()
    }
}

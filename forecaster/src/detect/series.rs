//! Per-series detection state and the event-time refit schedule.
//!
//! Determinism is the point: a fit for boundary `B` sees exactly the steps before `B`, and every
//! step at or after `B` is scored with that fit, never with an older one, however long the fit
//! takes on the wall clock. Steps that close while a fit is running wait (their values are in
//! the series' history; only the range is remembered) and are scored when it is installed. A replay at full speed therefore produces the same baselines and
//! scores as living through the same data.

use super::{Scorer, StepScore};
use crate::model::{Baseline, ModelSettings, Readiness, ReadinessState};

/// A fit the caller must run: on the steps before `boundary_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitRequest {
    /// The fit sees the steps strictly before this slot.
    pub boundary_ms: i64,
}

/// Detection state of one series.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SeriesDetector {
    /// Kept apart from the rest on disk: it changes once per fit, the rest on every step.
    #[serde(skip)]
    baseline: Option<Box<Baseline>>,
    readiness: Readiness,
    scorer: Scorer,
    /// Event time at or after which the next scheduled refit starts.
    next_fit_ms: i64,
    in_flight: Option<i64>,
    /// First and last closed step waiting for the fit in flight.
    waiting: Option<(i64, i64)>,
    finite_steps: u64,
    last: Option<StepScore>,
    /// A catch-up fit asked for while another fit was in flight: run when that one is in.
    catch_up: Option<i64>,
}

impl SeriesDetector {
    /// A detector for a new series.
    pub fn new(settings: &ModelSettings) -> Self {
        Self {
            baseline: None,
            readiness: Readiness {
                state: ReadinessState::Cold,
                reason: format!(
                    "0 of the {} points needed for a first fit",
                    settings.min_points
                ),
            },
            scorer: Scorer::default(),
            next_fit_ms: i64::MAX,
            in_flight: None,
            waiting: None,
            finite_steps: 0,
            last: None,
            catch_up: None,
        }
    }

    /// The current baseline.
    pub fn baseline(&self) -> Option<&Baseline> {
        self.baseline.as_deref()
    }

    /// Readiness with its reason.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// The most recent score.
    pub fn last_score(&self) -> Option<&StepScore> {
        self.last.as_ref()
    }

    /// A step closed with `value` (NaN when the step had no data). Scores what can be scored
    /// now into `scores` and returns the fit to run when one is due; until it is installed,
    /// later steps wait.
    pub fn on_step(
        &mut self,
        slot_ms: i64,
        value: f64,
        settings: &ModelSettings,
        refit_every_ms: i64,
        scores: &mut Vec<StepScore>,
    ) -> Option<FitRequest> {
        if !value.is_finite() {
            // A step without a value (a counter's first point) neither scores nor schedules:
            // the same as a gap, which is how it reads back from history.
            return None;
        }
        if self.in_flight.is_some() {
            self.waiting = Some(match self.waiting {
                Some((first, _)) => (first, slot_ms),
                None => (slot_ms, slot_ms),
            });
            return None;
        }
        self.process(slot_ms, value, settings, refit_every_ms, scores)
    }

    /// Scores one step and decides whether a fit is due at its end.
    fn process(
        &mut self,
        slot_ms: i64,
        value: f64,
        settings: &ModelSettings,
        refit_every_ms: i64,
        scores: &mut Vec<StepScore>,
    ) -> Option<FitRequest> {
        if value.is_finite() {
            self.finite_steps += 1;
        }
        self.score(slot_ms, value, settings, scores);
        let boundary = slot_ms + settings.step_ms;
        let first_fit = self.baseline.is_none()
            && self.next_fit_ms == i64::MAX
            && self.finite_steps >= settings.min_points as u64;
        let path_ends = self
            .baseline
            .as_ref()
            .is_some_and(|b| boundary >= b.end_ms());
        if first_fit || boundary >= self.next_fit_ms || path_ends {
            return Some(self.start_fit(boundary, settings, refit_every_ms));
        }
        None
    }

    /// History was stored without being scored (a backfill): `finite_steps` more steps with a
    /// value, up to `boundary_ms`. Instead of replaying every scheduled refit over that history,
    /// one fit on the steps before `boundary_ms` is due now (returned), or, when a fit is in
    /// flight, right after it is installed. Steps after the boundary are scored as usual.
    pub fn catch_up(
        &mut self,
        boundary_ms: i64,
        finite_steps: u64,
        settings: &ModelSettings,
        refit_every_ms: i64,
    ) -> Option<FitRequest> {
        self.finite_steps += finite_steps;
        if self.in_flight.is_some() {
            self.catch_up = Some(self.catch_up.map_or(boundary_ms, |b| b.max(boundary_ms)));
            return None;
        }
        Some(self.start_fit(boundary_ms, settings, refit_every_ms))
    }

    /// Puts the fit for `boundary_ms` in flight and schedules the next refit after it.
    fn start_fit(
        &mut self,
        boundary_ms: i64,
        settings: &ModelSettings,
        refit_every_ms: i64,
    ) -> FitRequest {
        self.in_flight = Some(boundary_ms);
        // The next refit: the first multiple of the interval after this boundary, so refits
        // land at the same event times whatever the history looked like.
        let every = refit_every_ms.max(settings.step_ms);
        self.next_fit_ms = (boundary_ms.div_euclid(every) + 1) * every;
        FitRequest { boundary_ms }
    }

    /// The fit in flight, if any: its boundary.
    pub fn in_flight(&self) -> Option<i64> {
        self.in_flight
    }

    /// Puts back the baseline a checkpoint saved (it is kept apart from the rest of the state).
    pub fn restore_baseline(&mut self, baseline: Baseline) {
        self.baseline = Some(Box::new(baseline));
    }

    /// The closed steps waiting for the fit in flight (first and last slot).
    pub fn waiting(&self) -> Option<(i64, i64)> {
        self.waiting
    }

    /// Installs the result of the fit for `boundary_ms`, then scores `waited` — the steps of
    /// [`SeriesDetector::waiting`] read back from history, gaps left out — up to the next step
    /// at which a fit is due (returned; the rest keep waiting).
    pub fn install(
        &mut self,
        boundary_ms: i64,
        result: Result<Baseline, Readiness>,
        settings: &ModelSettings,
        refit_every_ms: i64,
        waited: &[(i64, f64)],
        scores: &mut Vec<StepScore>,
    ) -> Option<FitRequest> {
        if self.in_flight != Some(boundary_ms) {
            return None; // A stale result.
        }
        self.in_flight = None;
        match result {
            Ok(b) => {
                self.readiness = b.readiness.clone();
                self.baseline = Some(Box::new(b));
            }
            Err(readiness) => {
                // Still cold: try again once more data has come.
                self.readiness = readiness;
                self.next_fit_ms = boundary_ms + settings.step_ms * settings.min_points as i64;
            }
        }
        let last = self.waiting.take().map(|(_, last)| last);
        for (i, &(slot, value)) in waited.iter().enumerate() {
            if let Some(next) = self.process(slot, value, settings, refit_every_ms, scores) {
                if let (Some(&(first, _)), Some(last)) = (waited.get(i + 1), last) {
                    self.waiting = Some((first, last));
                }
                return Some(next);
            }
        }
        match self.catch_up.take() {
            Some(b) if b > boundary_ms => Some(self.start_fit(b, settings, refit_every_ms)),
            _ => None,
        }
    }

    fn score(
        &mut self,
        slot_ms: i64,
        value: f64,
        settings: &ModelSettings,
        scores: &mut Vec<StepScore>,
    ) {
        if !value.is_finite() {
            return;
        }
        let Some(baseline) = self.baseline.as_deref() else {
            return;
        };
        if let Some(s) = self
            .scorer
            .score(slot_ms, value, baseline, settings.band_level)
        {
            self.last = Some(s);
            scores.push(s);
        }
    }

    /// Approximate memory held, baseline included.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.baseline.as_ref().map_or(0, |b| b.memory_bytes())
            + self.readiness.reason.capacity()
    }
}

//! The typed signal stream handed to alerting: what the model and detectors saw, in event time.
//!
//! Two paths produce signals:
//! - every write or fit that scores steps produces `Step` signals — for the steps that stand out
//!   (a score of at least [`NOTABLE_SCORE`], outside the band, persistent), for the next
//!   [`FOLLOW_STEPS`] steps of such a series (so its rules see it calm down), and for every
//!   series a `static` rule selects. While a series is persistently outside its band, its
//!   step's score is the highest of the excursion (`StepScore::excursion_score`): the
//!   detector gives a burst one high score, persistence takes a few steps to establish. Ordinary steps of ordinary series are not sent: a rule's
//!   condition clears when its series stops sending;
//! - each time event time advances a step, an evaluation produces `Breach` signals (every
//!   `breach` rule against the envelope trend of each series it selects), `Outlier` signals (every
//!   `outlier` rule over each fleet of peers), `LevelShift` signals for series that just became
//!   persistently anomalous (when did it start?), and `Step` signals for series a `static` rule
//!   selects that have no baseline yet.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use presage_alerting::{Band, Eta, LabelSet, ModelFacts, Signal, SignalBody};
use presage_config::{Direction, OutlierAlgorithm, RuleConfig, RuleKind};

use crate::detect::{StepScore, changepoint, fleet};
use crate::model::{BreachEta, ThresholdDirection};

use crate::store::{Selector, SeriesId, SeriesInfo, Store};

/// Scores at or above this make a step worth sending.
pub const NOTABLE_SCORE: f64 = 0.3;
/// Steps a series keeps sending after its last notable one.
pub const FOLLOW_STEPS: u8 = 10;
/// Steps of recent history fleets are compared over.
const FLEET_WINDOW: usize = 30;
/// Steps of history a level shift is looked for in.
const SHIFT_WINDOW: usize = 240;
/// Steps after the onset of a persistent anomaly before its level shift is dated.
const SHIFT_SETTLE_STEPS: i64 = 6;
/// Level-shift searches run per evaluation at most (each costs a few fits).
const MAX_SHIFTS_PER_EVAL: usize = 20;
/// Series one rule looks at per evaluation at most.
const MAX_SERIES_PER_RULE: usize = 100_000;
/// Peer labels of outlier rules that do not name theirs.
const DEFAULT_PEER_LABELS: [&str; 3] = ["instance", "host_name", "k8s_pod_name"];
/// Sensitivity of the fleet detectors (0–1; higher finds more outliers).
const FLEET_SENSITIVITY: f64 = 0.6;

struct CompiledRule {
    rule: RuleConfig,
    select: Selector,
}

#[derive(Default)]
struct State {
    /// Series that stood out recently: steps left to send.
    follow: HashMap<SeriesId, u8>,
    /// Series persistently anomalous at their last step.
    persistent: HashSet<SeriesId>,
    /// Series that just became persistently anomalous, with the slot.
    onsets: Vec<(SeriesId, i64)>,
    /// Series some `static` rule selects (refreshed at each evaluation).
    static_ids: HashSet<SeriesId>,
}

/// Builds the signal stream.
pub struct SignalSource {
    breach: Vec<CompiledRule>,
    outlier: Vec<CompiledRule>,
    statics: Vec<CompiledRule>,
    step_ms: i64,
    refit_every_ms: i64,
    state: Mutex<State>,
}

impl SignalSource {
    /// Compiles the rules in effect (configured and built-in). Rules whose selector does not
    /// parse are left out with a warning (configuration validation refuses them earlier).
    pub fn new(rules: &[RuleConfig], step_ms: i64, refit_every_ms: i64) -> Self {
        let mut breach = Vec::new();
        let mut outlier = Vec::new();
        let mut statics = Vec::new();
        for r in rules {
            let select = match Selector::parse(&r.select) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(rule = %r.name, %e, "rule ignored");
                    continue;
                }
            };
            let c = CompiledRule {
                rule: r.clone(),
                select,
            };
            match r.kind {
                RuleKind::Breach => breach.push(c),
                RuleKind::Outlier => outlier.push(c),
                RuleKind::Static => statics.push(c),
                RuleKind::Anomaly | RuleKind::LogPattern => {}
            }
        }
        Self {
            breach,
            outlier,
            statics,
            step_ms,
            refit_every_ms,
            state: Mutex::new(State::default()),
        }
    }

    /// `Step` signals for scored steps (see the module documentation for which).
    pub fn steps(&self, store: &Store, scores: &[(SeriesId, StepScore)]) -> Vec<Signal> {
        let mut out = Vec::new();
        // Labels and model facts are read once per series and batch: a batch's steps share
        // them, and the next batch sees the model as it is then.
        let mut described: HashMap<SeriesId, (Arc<LabelSet>, Arc<ModelFacts>)> = HashMap::new();
        let mut state = self.state.lock();
        for (id, s) in scores {
            let notable = s.score >= NOTABLE_SCORE || s.direction != 0 || s.persistent;
            if s.persistent {
                if state.persistent.insert(*id) {
                    state.onsets.push((*id, s.slot_ms));
                }
            } else {
                state.persistent.remove(id);
            }
            let send = if notable {
                state.follow.insert(*id, FOLLOW_STEPS);
                true
            } else if let Some(left) = state.follow.get_mut(id) {
                *left -= 1;
                if *left == 0 {
                    state.follow.remove(id);
                }
                true
            } else {
                state.static_ids.contains(id)
            };
            if !send {
                continue;
            }
            // A persistent excursion scores as its rarest step: the detector gives a burst one
            // high score, while persistence takes a few steps to establish.
            let score = if s.persistent {
                s.excursion_score.max(s.score)
            } else {
                s.score
            };
            let (series, model) = match described.get(id) {
                Some(d) => d.clone(),
                None => {
                    let Some(info) = store.info_of(*id) else {
                        continue;
                    };
                    let d = facts_of(&info, self.step_ms);
                    described.insert(*id, d.clone());
                    d
                }
            };
            out.push(Signal {
                at_ms: s.slot_ms,
                series,
                body: SignalBody::Step {
                    value: s.value,
                    band: Some(Band {
                        expected: s.expected,
                        lower: s.lower,
                        upper: s.upper,
                    }),
                    score,
                    direction: s.direction,
                    persistent: s.persistent,
                    model,
                },
            });
        }
        out
    }

    /// Signals of the evaluation at event time `now_ms` (the newest scored step).
    pub fn evaluate(&self, store: &Store, now_ms: i64) -> Vec<Signal> {
        let mut out = Vec::new();
        self.breaches(store, &mut out);
        self.outliers(store, now_ms, &mut out);
        self.statics(store, now_ms, &mut out);
        self.level_shifts(store, now_ms, &mut out);
        out
    }

    fn rule_etas(
        &self,
        c: &CompiledRule,
        store: &Store,
        limit: usize,
    ) -> Vec<(SeriesId, StepScore, Option<BreachEta>)> {
        let Some(threshold) = c.rule.threshold else {
            return Vec::new();
        };
        let direction = match c.rule.direction {
            Direction::Above => ThresholdDirection::Above,
            Direction::Below => ThresholdDirection::Below,
        };
        let horizon = c.rule.horizon_or_default().as_secs_f64();
        store
            .trends(&c.select, limit)
            .into_iter()
            .map(|(labels, score, trend)| {
                let id = crate::store::series_id(&labels);
                let eta = trend.eta(threshold, direction, score.slot_ms, score.value, horizon);
                (id, score, eta)
            })
            .collect()
    }

    fn breaches(&self, store: &Store, out: &mut Vec<Signal>) {
        for c in &self.breach {
            let threshold = c.rule.threshold.unwrap_or(f64::NAN);
            for (id, score, eta) in self.rule_etas(c, store, MAX_SERIES_PER_RULE) {
                let Some(info) = store.info_of(id) else {
                    continue;
                };
                let (series, _) = facts_of(&info, self.step_ms);
                out.push(Signal {
                    at_ms: score.slot_ms,
                    series,
                    body: SignalBody::Breach {
                        rule: c.rule.name.clone(),
                        threshold,
                        above: c.rule.direction == Direction::Above,
                        value: score.value,
                        eta: eta.map(|e| Eta {
                            p10_seconds: e.p10_seconds,
                            p50_seconds: e.p50_seconds,
                            p90_seconds: e.p90_seconds,
                        }),
                        rate_per_second: eta.map_or(0.0, |e| e.rate_per_second),
                    },
                });
            }
        }
    }

    fn outliers(&self, store: &Store, now_ms: i64, out: &mut Vec<Signal>) {
        let boundary = now_ms + self.step_ms;
        for c in &self.outlier {
            let peers: Vec<String> = c
                .rule
                .peer_labels
                .clone()
                .unwrap_or_else(|| DEFAULT_PEER_LABELS.iter().map(|s| s.to_string()).collect());
            let algorithm = match c.rule.algorithm.unwrap_or_default() {
                OutlierAlgorithm::Mad => fleet::Algorithm::Mad,
                OutlierAlgorithm::Dbscan => fleet::Algorithm::Dbscan,
            };
            // Fleets: series equal in every label but the peer labels.
            let mut fleets: BTreeMap<Vec<(String, String)>, Vec<SeriesInfo>> = BTreeMap::new();
            for id in store.select_ids(&c.select, MAX_SERIES_PER_RULE) {
                let Some(info) = store.info_of(id) else {
                    continue;
                };
                let key = info
                    .labels
                    .iter()
                    .filter(|(n, _)| !peers.contains(n))
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect();
                fleets.entry(key).or_default().push(info);
            }
            for members in fleets.into_values() {
                if members.len() < fleet::MIN_PEERS {
                    continue;
                }
                let windows: Vec<Vec<f64>> = members
                    .iter()
                    .map(|m| {
                        store
                            .values_before(m.id, boundary, FLEET_WINDOW)
                            .unwrap_or_default()
                    })
                    .collect();
                let Some(verdict) = fleet::judge(&windows, algorithm, FLEET_SENSITIVITY) else {
                    continue;
                };
                for m in &verdict.members {
                    let Some(info) = members.get(m.index) else {
                        continue;
                    };
                    let (series, _) = facts_of(info, self.step_ms);
                    out.push(Signal {
                        at_ms: now_ms,
                        series,
                        body: SignalBody::Outlier {
                            algorithm: algorithm.as_str().to_string(),
                            peers: verdict.members.len(),
                            score: m.score,
                            value: m.value,
                            fleet_median: verdict.fleet_median,
                            outlying: m.outlying,
                        },
                    });
                }
            }
        }
    }

    fn statics(&self, store: &Store, now_ms: i64, out: &mut Vec<Signal>) {
        let mut ids = HashSet::new();
        for c in &self.statics {
            ids.extend(store.select_ids(&c.select, MAX_SERIES_PER_RULE));
        }
        for &id in &ids {
            // Series with a baseline send their steps as they are scored; the others are read
            // here, from their newest closed step.
            let Some(info) = store.info_of(id) else {
                continue;
            };
            if info.last_score.is_some() {
                continue;
            }
            let Some(value) = store
                .values_before(id, now_ms + self.step_ms, 1)
                .and_then(|v| v.first().copied())
                .filter(|v| v.is_finite())
            else {
                continue;
            };
            let (series, model) = facts_of(&info, self.step_ms);
            out.push(Signal {
                at_ms: now_ms,
                series,
                body: SignalBody::Step {
                    value,
                    band: None,
                    score: 0.0,
                    direction: 0,
                    persistent: false,
                    model,
                },
            });
        }
        self.state.lock().static_ids = ids;
    }

    fn level_shifts(&self, store: &Store, now_ms: i64, out: &mut Vec<Signal>) {
        // An onset is dated once a few steps have passed since it: a shift needs data on both
        // sides.
        let ripe = now_ms - SHIFT_SETTLE_STEPS * self.step_ms;
        let onsets: Vec<(SeriesId, i64)> = {
            let mut state = self.state.lock();
            let (ready, waiting): (Vec<_>, Vec<_>) =
                state.onsets.drain(..).partition(|(_, at)| *at <= ripe);
            state.onsets = waiting;
            ready.into_iter().take(MAX_SHIFTS_PER_EVAL).collect()
        };
        for (id, onset) in onsets {
            let end = now_ms + self.step_ms;
            let start = end - SHIFT_WINDOW as i64 * self.step_ms;
            let Some(values) = store.values_before(id, end, SHIFT_WINDOW) else {
                continue;
            };
            // What was expected, as the model saw it before the anomaly began.
            let fits =
                (SHIFT_WINDOW as i64 * self.step_ms / self.refit_every_ms.max(1)) as usize + 2;
            let mut expected = vec![f64::NAN; SHIFT_WINDOW];
            for (t, band) in store.past_bands_until(id, start, end, fits, onset) {
                let i = ((t - start) / self.step_ms) as usize;
                if let Some(slot) = expected.get_mut(i) {
                    *slot = band.expected;
                }
            }
            let Some(shift) =
                changepoint::latest_shift(&values, Some(&expected), start, self.step_ms)
            else {
                continue;
            };
            let Some(info) = store.info_of(id) else {
                continue;
            };
            let (series, _) = facts_of(&info, self.step_ms);
            out.push(Signal {
                at_ms: now_ms,
                series,
                body: SignalBody::LevelShift {
                    changed_at_ms: shift.changed_at_ms,
                    before: shift.before,
                    after: shift.after,
                },
            });
        }
    }
}

/// A series' labels and model facts, as signals carry them.
fn facts_of(info: &SeriesInfo, step_ms: i64) -> (Arc<LabelSet>, Arc<ModelFacts>) {
    let facts = ModelFacts {
        readiness: info
            .readiness
            .as_ref()
            .map_or("cold", |r| match r.state {
                crate::model::ReadinessState::Cold => "cold",
                crate::model::ReadinessState::Warming => "warming",
                crate::model::ReadinessState::Ready => "ready",
            })
            .to_string(),
        periods_seconds: info.periods_seconds.clone(),
        method: info
            .method
            .map(|m| {
                serde_json::to_value(m)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default()
            })
            .unwrap_or_default(),
        step_seconds: (step_ms / 1000).max(0) as u64,
    };
    (Arc::new(info.labels.clone()), Arc::new(facts))
}

#[cfg(test)]
mod tests;

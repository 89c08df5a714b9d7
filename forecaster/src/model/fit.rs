//! The fitting pipeline: clean, normalise, detect seasonality, fit the best model the history
//! supports, and keep only a forward path.

use std::panic::{AssertUnwindSafe, catch_unwind};

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::{Fit, Forecast, Predict};

use super::breach::EnvelopeTrend;
use super::stats::{mad_sigma, median, probit, std_dev};
use super::trend::TailTrend;
use super::{BandPoint, Baseline, Method, ModelSettings, Readiness, ReadinessState, seasonality};

/// Points of recent history the robust fallback looks at.
const ROLLING_POINTS: usize = 60;
/// Interior gaps longer than this share of the window make the fit a warming one.
const MAX_GAP_SHARE: f64 = 0.5;

/// Fits a baseline on `values` (one per step, NaN for missing steps) whose last element is the
/// step just before `boundary_ms`. Returns `None` while the series is cold (too few points).
/// Never panics: augurs failures and panics fall back to simpler models.
pub fn fit(
    values: &[f64],
    boundary_ms: i64,
    settings: &ModelSettings,
) -> Result<Baseline, Readiness> {
    let window = &values[values.len().saturating_sub(settings.max_fit_points)..];
    let first = window.iter().position(|v| v.is_finite());
    let Some(first) = first else {
        return Err(cold(0, settings));
    };
    let window = &window[first..];
    let finite = window.iter().filter(|v| v.is_finite()).count();
    if finite < settings.min_points {
        return Err(cold(finite, settings));
    }
    let gap_share = 1.0 - finite as f64 / window.len() as f64;
    let y = interpolate(window);

    let center = median(&y);
    let mut scale = mad_sigma(&y, center);
    if !positive(scale) {
        scale = std_dev(&y);
    }
    let trend = EnvelopeTrend::fit(&y, boundary_ms, settings);
    if !positive(scale) {
        return Ok(constant(center, boundary_ms, finite, trend, settings));
    }
    let z: Vec<f64> = y.iter().map(|v| (v - center) / scale).collect();
    let periods = seasonality::detect(&z, settings.step_ms);

    let level = settings.band_level;
    let h = settings.horizon_steps;
    let attempt = |f: &dyn Fn() -> Option<(Forecast, Forecast)>| {
        catch_unwind(AssertUnwindSafe(f)).ok().flatten()
    };

    let mut method = Method::RobustRolling;
    let mut fitted: Option<(Forecast, Forecast)> = None;
    if !periods.is_empty() {
        fitted = attempt(&|| {
            let trend = TailTrend {
                tail: settings.trend_points,
            };
            let model = MSTLModel::new(periods.clone(), trend);
            let fit = model.fit(&z).ok()?;
            Some((
                fit.predict(h, level).ok()?,
                fit.predict_in_sample(level).ok()?,
            ))
        });
        if fitted.is_some() {
            method = Method::Mstl;
        }
    }
    if fitted.is_none() && z.len() >= 2 * settings.min_points {
        fitted = attempt(&|| {
            let tail = &z[z.len().saturating_sub(settings.trend_points)..];
            let fit = AutoETS::non_seasonal().fit(tail).ok()?;
            let mut in_sample = fit.predict_in_sample(level).ok()?;
            // Line the in-sample fit up with `z`: the older part is taken as it is.
            let head = &z[..z.len() - tail.len()];
            in_sample.point.splice(0..0, head.iter().copied());
            Some((fit.predict(h, level).ok()?, in_sample))
        });
        if fitted.is_some() {
            method = Method::Ets;
        }
    }

    let zq = probit(0.5 + level / 2.0);
    let tail = settings.trend_points;
    let (path, residual_scale) = match fitted
        .as_ref()
        .and_then(|(f, ins)| path_from(f, ins, &z, zq, tail))
    {
        Some(p) => p,
        None => {
            method = Method::RobustRolling;
            rolling(&z, h, zq)
        }
    };
    let path: Box<[BandPoint]> = path
        .into_iter()
        .map(|(e, lo, hi)| BandPoint {
            expected: (e * scale) as f32,
            lower: (lo * scale) as f32,
            upper: (hi * scale) as f32,
        })
        .collect();
    let readiness = readiness(method, &periods, z.len(), gap_share, settings);
    Ok(Baseline {
        method,
        periods: periods.iter().map(|&p| p as u32).collect(),
        start_ms: boundary_ms,
        step_ms: settings.step_ms,
        offset: center,
        path,
        residual_scale: (residual_scale * scale).max(scale * 1e-3),
        trend,
        readiness,
        points: finite,
    })
}

/// A usable scale: positive and finite (NaN is neither).
fn positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

fn cold(points: usize, settings: &ModelSettings) -> Readiness {
    Readiness {
        state: ReadinessState::Cold,
        reason: format!(
            "{points} of the {} points needed for a first fit",
            settings.min_points
        ),
    }
}

fn readiness(
    method: Method,
    periods: &[usize],
    n: usize,
    gap_share: f64,
    settings: &ModelSettings,
) -> Readiness {
    let day = settings.day_steps();
    let hours = n as f64 * settings.step_ms as f64 / 3_600_000.0;
    let (state, reason) = match method {
        _ if gap_share > MAX_GAP_SHARE => (
            ReadinessState::Warming,
            format!(
                "{:.0}% of the steps in the window have no data",
                gap_share * 100.0
            ),
        ),
        Method::Mstl => (
            ReadinessState::Ready,
            format!(
                "seasonal model (periods {}) on {hours:.1}h of history",
                periods
                    .iter()
                    .map(|p| describe_period(*p, settings.step_ms))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Method::Constant => (
            ReadinessState::Ready,
            "the series has been constant: any change is reported".to_string(),
        ),
        _ if n >= 2 * day => (
            ReadinessState::Ready,
            format!("no daily or weekly cycle in {hours:.1}h of history; non-seasonal model"),
        ),
        Method::Ets => (
            ReadinessState::Warming,
            format!("{hours:.1}h of history; daily cycles can be detected after 48h"),
        ),
        _ => (
            ReadinessState::Warming,
            format!("{hours:.1}h of history; rolling median and MAD until a model fits"),
        ),
    };
    Readiness { state, reason }
}

fn describe_period(steps: usize, step_ms: i64) -> String {
    match steps as i64 * step_ms {
        3_600_000 => "hourly".into(),
        86_400_000 => "daily".into(),
        604_800_000 => "weekly".into(),
        ms => format!("{}s", ms / 1000),
    }
}

/// Linear interpolation of interior NaN gaps; trailing gaps repeat the last value.
fn interpolate(window: &[f64]) -> Vec<f64> {
    let mut y = window.to_vec();
    let mut last: Option<usize> = None;
    for i in 0..y.len() {
        if !y[i].is_finite() {
            continue;
        }
        if let Some(l) = last
            && i > l + 1
        {
            let (a, b) = (y[l], y[i]);
            let span = (i - l) as f64;
            for (k, slot) in y.iter_mut().enumerate().take(i).skip(l + 1) {
                *slot = a + (b - a) * (k - l) as f64 / span;
            }
        }
        last = Some(i);
    }
    if let Some(l) = last {
        let v = y[l];
        for slot in y.iter_mut().skip(l + 1) {
            *slot = v;
        }
    }
    y
}

type Path = Vec<(f64, f64, f64)>;

/// Turns augurs' forecasts into a path, with the residual scale from the in-sample fit.
fn path_from(
    f: &Forecast,
    in_sample: &Forecast,
    z: &[f64],
    zq: f64,
    tail: usize,
) -> Option<(Path, f64)> {
    if f.point.iter().any(|v| !v.is_finite()) || in_sample.point.len() != z.len() {
        return None;
    }
    let residuals: Vec<f64> = z.iter().zip(&in_sample.point).map(|(y, p)| y - p).collect();
    let tail = &residuals[residuals.len().saturating_sub(tail)..];
    let mut sigma = mad_sigma(tail, median(tail));
    if !positive(sigma) {
        sigma = std_dev(tail);
    }
    if !sigma.is_finite() {
        return None;
    }
    let sigma = sigma.max(1e-6);
    let intervals = f.intervals.as_ref();
    let path = f
        .point
        .iter()
        .enumerate()
        .map(|(i, &e)| {
            let (lo, hi) = intervals
                .and_then(|iv| Some((*iv.lower.get(i)?, *iv.upper.get(i)?)))
                .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo <= hi)
                .unwrap_or((e - zq * sigma, e + zq * sigma));
            // Never narrower than the residuals say.
            (e, lo.min(e - zq * sigma), hi.max(e + zq * sigma))
        })
        .collect();
    Some((path, sigma))
}

fn rolling(z: &[f64], h: usize, zq: f64) -> (Path, f64) {
    let recent = &z[z.len().saturating_sub(ROLLING_POINTS)..];
    let m = median(recent);
    let mut s = mad_sigma(recent, m);
    if !positive(s) {
        s = std_dev(recent).max(1e-6);
    }
    (vec![(m, m - zq * s, m + zq * s); h], s)
}

fn constant(
    value: f64,
    boundary_ms: i64,
    points: usize,
    trend: Option<EnvelopeTrend>,
    settings: &ModelSettings,
) -> Baseline {
    let tolerance = (value.abs() * 1e-6).max(1e-9);
    let t = tolerance as f32;
    Baseline {
        method: Method::Constant,
        periods: Vec::new(),
        start_ms: boundary_ms,
        step_ms: settings.step_ms,
        offset: value,
        path: vec![
            BandPoint {
                expected: 0.0,
                lower: -t,
                upper: t,
            };
            settings.horizon_steps
        ]
        .into_boxed_slice(),
        residual_scale: tolerance,
        trend,
        readiness: readiness(Method::Constant, &[], points, 0.0, settings),
        points,
    }
}

#[cfg(test)]
mod tests;

//! Offline detection over `timestamp,value` CSV files, with the daemon's own store and detector.
//!
//! Each file is streamed through a [`Store`] exactly as remote_write would feed it, with fits
//! run inline (deterministically, at the same event-time boundaries as the daemon). A row's
//! score depends only on that row and the rows before it: the score of a step is known once
//! the step is complete, and a row that is not the last of its step gets the score of the
//! previous step.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::{Context, bail};
use presage_config::ForecasterConfig;

use crate::ingest::{METRIC_NAME_LABEL, Point, SeriesWrite, ValueKind, WriteBatch};
use crate::store::Store;

/// One input row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The timestamp as written in the file.
    pub raw_ts: String,
    /// Milliseconds since the epoch.
    pub ts_ms: i64,
    /// The value.
    pub value: f64,
}

/// Reads a `timestamp,value` CSV. Timestamps are RFC 3339, `YYYY-MM-DD HH:MM:SS` (UTC), or Unix
/// seconds. Every malformed line is an error naming the line.
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (i == 0 && line.to_ascii_lowercase().starts_with("timestamp")) {
            continue;
        }
        let mut cols = line.split(',');
        let (Some(ts), Some(value)) = (cols.next(), cols.next()) else {
            bail!("{}:{}: expected `timestamp,value`", path.display(), i + 1);
        };
        let ts = ts.trim().trim_matches('"');
        let ts_ms = parse_ts(ts)
            .with_context(|| format!("{}:{}: invalid timestamp `{ts}`", path.display(), i + 1))?;
        let value: f64 = value.trim().parse().with_context(|| {
            format!(
                "{}:{}: invalid value `{}`",
                path.display(),
                i + 1,
                value.trim()
            )
        })?;
        rows.push(Row {
            raw_ts: ts.to_string(),
            ts_ms,
            value,
        });
    }
    Ok(rows)
}

fn parse_ts(ts: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = ts.parse::<f64>() {
        return Ok((secs * 1000.0).round() as i64);
    }
    let t = humantime::parse_rfc3339_weak(ts)?;
    Ok(i64::try_from(t.duration_since(UNIX_EPOCH)?.as_millis())?)
}

/// The step a file is resampled to: the median interval between rows, in whole seconds.
pub fn step_of(rows: &[Row]) -> Duration {
    let mut d: Vec<i64> = rows.windows(2).map(|w| w[1].ts_ms - w[0].ts_ms).collect();
    if d.is_empty() {
        return Duration::from_secs(60);
    }
    d.sort_unstable();
    let median_s = (d[d.len() / 2] / 1000).clamp(1, 3600);
    Duration::from_secs(median_s as u64)
}

/// Scores every row of `rows` with the daemon's detector.
pub fn score_rows(rows: &[Row], base: &ForecasterConfig) -> anyhow::Result<Vec<f64>> {
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(Vec::new());
    };
    let mut cfg = base.clone();
    cfg.model.step = step_of(rows);
    let span = Duration::from_millis((last.ts_ms - first.ts_ms).max(0) as u64);
    // Retention must cover the file, so nothing is "too old" when replayed.
    cfg.storage.retention = cfg
        .storage
        .retention
        .max(span + cfg.model.step * 2)
        .min(Duration::from_secs(400 * 86_400));
    cfg.limits.max_series = 1;
    if cfg.model.refit_every < cfg.model.step {
        cfg.model.refit_every = cfg.model.step;
    }
    if cfg.model.forecast_horizon < cfg.model.refit_every {
        cfg.model.forecast_horizon = cfg.model.refit_every;
    }
    let store = Store::new(&cfg).with_inline_fits();
    let step_ms = store.step_ms();
    let labels = vec![(METRIC_NAME_LABEL.to_string(), "backtest".to_string())];

    let mut by_slot: HashMap<i64, f64> = HashMap::new();
    let mut feed = |out: crate::store::WriteOutcome| {
        for (_, s) in out.scores {
            by_slot.insert(s.slot_ms, s.score);
        }
    };
    let mut fed = i64::MIN;
    for r in rows {
        // Repeated or backward timestamps (clock changes in some recordings) are not fed: the
        // store would refuse them as out of order.
        if r.ts_ms <= fed {
            continue;
        }
        fed = r.ts_ms;
        let out = store.write(
            WriteBatch {
                series: vec![SeriesWrite {
                    labels: labels.clone(),
                    kind: ValueKind::Gauge,
                    points: vec![Point::new(r.ts_ms, r.value)],
                }],
                ..Default::default()
            },
            last.ts_ms,
        );
        if out.rejected_total() > 0 {
            bail!(
                "row at {} was refused: {}",
                r.raw_ts,
                out.first_error.unwrap_or_default()
            );
        }
        feed(out);
    }
    feed(store.flush());

    // A row is scored by its own step when it is the last row of that step; otherwise by the
    // step before (which only depends on earlier rows). A repeated timestamp gets the score of
    // the step before too.
    let slot = |ts: i64| ts.div_euclid(step_ms) * step_ms;
    let mut scores = Vec::with_capacity(rows.len());
    let mut newest = i64::MIN;
    for (i, r) in rows.iter().enumerate() {
        let s = slot(r.ts_ms);
        let repeated = r.ts_ms <= newest;
        newest = newest.max(r.ts_ms);
        let last_in_step = !repeated && rows.get(i + 1).is_none_or(|n| slot(n.ts_ms) != s);
        let score = if last_in_step {
            by_slot.get(&s).copied()
        } else {
            by_slot.get(&(s - step_ms)).copied()
        };
        scores.push(score.unwrap_or(0.0));
    }
    Ok(scores)
}

/// Writes NAB result rows: `timestamp,value,anomaly_score,label` (label 0: the scorer reads the
/// windows itself).
pub fn write_results(path: &Path, rows: &[Row], scores: &[f64]) -> anyhow::Result<()> {
    let mut out = String::with_capacity(rows.len() * 40);
    out.push_str("timestamp,value,anomaly_score,label\n");
    for (r, s) in rows.iter().zip(scores) {
        let _ = writeln!(out, "{},{},{:.6},0", r.raw_ts, r.value, s);
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Every `*.csv` under `dir`, relative paths sorted.
pub fn csv_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "csv") {
                out.push(path.strip_prefix(dir).unwrap_or(&path).to_path_buf());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, f: impl Fn(usize) -> f64) -> Vec<Row> {
        (0..n)
            .map(|i| {
                let ts_ms = 1_400_000_000_000 + i as i64 * 300_000;
                Row {
                    raw_ts: format!("{}", ts_ms / 1000),
                    ts_ms,
                    value: f(i),
                }
            })
            .collect()
    }

    fn wave(i: usize) -> f64 {
        let x = (i as u64).wrapping_mul(6_364_136_223_846_793_005) >> 40;
        50.0 + 20.0 * (i as f64 * std::f64::consts::TAU / 288.0).sin() + (x % 100) as f64 / 25.0
    }

    #[test]
    fn scores_are_causal() {
        let full = rows(1500, wave);
        let cfg = ForecasterConfig::default();
        let a = score_rows(&full, &cfg).unwrap();
        let b = score_rows(&full[..1100], &cfg).unwrap();
        assert_eq!(a.len(), 1500);
        assert_eq!(a[..1100], b[..]);
        assert!(a.iter().any(|s| *s > 0.0), "the detector scored nothing");
    }

    #[test]
    fn a_spike_scores_high_and_a_normal_cycle_does_not() {
        let mut r = rows(288 * 5, wave);
        let spike = 288 * 4 + 100;
        r[spike].value += 200.0;
        let scores = score_rows(&r, &ForecasterConfig::default()).unwrap();
        let before = scores[288 * 3..spike].iter().copied().fold(0.0, f64::max);
        assert!(scores[spike] > 0.5, "spike scored {}", scores[spike]);
        // The normal cycle never reaches the score the daemon records anomalies at.
        assert!(
            before < crate::app::ANOMALY_SCORE,
            "max before the spike {before}"
        );
    }

    #[test]
    fn reads_nab_csv_and_reports_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(
            &p,
            "timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,2\n",
        )
        .unwrap();
        let r = read_csv(&p).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].ts_ms - r[0].ts_ms, 300_000);
        assert_eq!(step_of(&r), Duration::from_secs(300));
        std::fs::write(&p, "timestamp,value\n2014-04-01 00:00:00,abc\n").unwrap();
        let err = read_csv(&p).unwrap_err().to_string();
        assert!(err.contains("a.csv:2: invalid value `abc`"), "{err}");
        // Backward timestamps are read (and skipped when scoring).
        std::fs::write(
            &p,
            "timestamp,value\n2014-04-01 00:05:00,1\n2014-04-01 00:00:00,1\n",
        )
        .unwrap();
        let r = read_csv(&p).unwrap();
        assert_eq!(
            score_rows(&r, &ForecasterConfig::default()).unwrap(),
            vec![0.0, 0.0]
        );
    }
}

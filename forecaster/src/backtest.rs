//! Offline detection over `timestamp,value` CSV files, with the daemon's own store and detector.
//!
//! Each file is streamed through a [`Store`] exactly as remote_write would feed it, with fits
//! run inline (deterministically, at the same event-time boundaries as the daemon). A row's
//! score depends only on that row and the rows before it: the score of a step is known once
//! the step is complete, and a row that is not the last of its step gets the score of the
//! previous step.
//!
//! [`backtest_rules`] replays history (Parquet files as `presage export` writes them) through
//! the same store and detector, the daemon's signal source and its rule evaluator, and reports
//! when each rule would have fired (`presage backtest --rules CONFIG --history DIR`).

use std::collections::{BTreeMap, HashMap};
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

/// One stretch of a rule firing on one series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Firing {
    /// Event time it started firing (ms).
    pub start_ms: i64,
    /// Event time it resolved (ms); `None` when it was still firing at the end of the history.
    pub end_ms: Option<i64>,
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// The first line of its explanation, as it fired.
    pub explanation: String,
}

/// What one rule would have done.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RuleOutcome {
    /// The rule's name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Built in rather than configured.
    pub builtin: bool,
    /// Its firings, in the order they started.
    pub firings: Vec<Firing>,
}

/// What `presage backtest --rules` found.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RulesReport {
    /// Series replayed.
    pub series: u64,
    /// Samples replayed.
    pub samples: u64,
    /// Event time of the first and last sample (ms), when there was any.
    pub first_ms: Option<i64>,
    /// See `first_ms`.
    pub last_ms: Option<i64>,
    /// The resampling step, in seconds.
    pub step_seconds: f64,
    /// Every rule in effect, in the configuration's order (built-in ones first).
    pub rules: Vec<RuleOutcome>,
}

/// Follows alerts across evaluations and records when each fired and resolved.
#[derive(Default)]
struct FiringLog {
    firings: Vec<(String, Firing)>,
    /// Fingerprint → index of its firing still open.
    open: HashMap<String, usize>,
}

impl FiringLog {
    fn observe(&mut self, evaluator: &presage_alerting::lifecycle::Evaluator) {
        use presage_alerting::AlertState;
        for (alert, _) in evaluator.alerts() {
            let open = self.open.get(&alert.fingerprint).copied();
            match alert.state {
                AlertState::Firing => {
                    let start = alert.fired_at_ms.unwrap_or(alert.active_since_ms);
                    if open.is_some_and(|i| self.firings[i].1.start_ms == start) {
                        continue;
                    }
                    if let Some(i) = open {
                        self.firings[i].1.end_ms = Some(start);
                    }
                    let explanation = if alert.explanation.summary.is_empty() {
                        alert.explanation.text.lines().next().unwrap_or("")
                    } else {
                        alert.explanation.summary.lines().next().unwrap_or("")
                    };
                    let rule = alert.labels.get("alertname").cloned().unwrap_or_default();
                    self.open
                        .insert(alert.fingerprint.clone(), self.firings.len());
                    self.firings.push((
                        rule,
                        Firing {
                            start_ms: start,
                            end_ms: None,
                            labels: alert.labels.clone().into_iter().collect(),
                            explanation: explanation.to_string(),
                        },
                    ));
                }
                AlertState::Resolved => {
                    if let Some(i) = open {
                        self.firings[i].1.end_ms =
                            Some(alert.resolved_at_ms.unwrap_or(alert.last_seen_ms));
                        self.open.remove(&alert.fingerprint);
                    }
                }
                AlertState::Pending => {}
            }
        }
    }
}

/// Replays `history` in event-time order through the daemon's store and detector (fits run
/// inline, at the same event-time boundaries as in the daemon), its signal source and its rule
/// evaluator, with the rules and model settings of `base`, and reports when each rule would
/// have fired. Nothing is delivered: there are no receivers. Values are replayed as gauges
/// (exported counters are per-second rates already).
pub fn backtest_rules(
    base: &ForecasterConfig,
    history: Vec<presage_history::SeriesHistory>,
) -> anyhow::Result<RulesReport> {
    use presage_alerting::lifecycle::Evaluator;

    let mut cfg = base.clone();
    let first = history
        .iter()
        .filter_map(|s| s.points.first().map(|p| p.0))
        .min();
    let last = history
        .iter()
        .filter_map(|s| s.points.last().map(|p| p.0))
        .max();
    if let (Some(first), Some(last)) = (first, last) {
        // Retention must cover the history, so nothing is "too old" when replayed.
        let span = Duration::from_millis((last - first).max(0) as u64);
        cfg.storage.retention = cfg
            .storage
            .retention
            .max(span + cfg.model.step * 2)
            .min(Duration::from_secs(400 * 86_400));
    }
    cfg.limits.max_series = cfg.limits.max_series.max(history.len());
    let store = Store::new(&cfg).with_inline_fits();
    let step_ms = store.step_ms();
    let refit_ms = i64::try_from(cfg.model.refit_every.as_millis())
        .unwrap_or(3_600_000)
        .max(1);
    let rules = presage_alerting::effective_rules(&cfg);
    let signals = crate::signals::SignalSource::new(&rules, step_ms, refit_ms);
    let mut evaluator = Evaluator::from_config(&cfg, None)
        .map_err(|e| anyhow::anyhow!("the rules of the configuration: {e}"))?;

    let labels: Vec<Vec<(String, String)>> = history
        .iter()
        .map(|s| {
            s.labels
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect()
        })
        .collect();
    // Every point once, in event-time order; one write per timestamp.
    let mut points: Vec<(i64, u32, f64)> = Vec::new();
    for (i, s) in history.iter().enumerate() {
        let i = u32::try_from(i).context("too many series")?;
        points.extend(
            s.points
                .iter()
                .filter(|(_, v)| v.is_finite())
                .map(|&(t, v)| (t, i, v)),
        );
    }
    points.sort_by_key(|&(t, i, _)| (t, i));
    let samples = points.len() as u64;
    let series = history.len() as u64;
    drop(history);

    let mut log = FiringLog::default();
    let mut event_now = i64::MIN;
    let mut refused: u64 = 0;
    let mut first_refusal = None;
    let mut handle = |out: crate::store::WriteOutcome, wall: i64, log: &mut FiringLog| {
        let newest = out.scores.iter().map(|(_, s)| s.slot_ms).max();
        if !out.scores.is_empty() {
            evaluator.ingest(&signals.steps(&store, &out.scores), wall);
        }
        let mut evaluated = false;
        if let Some(newest) = newest
            && newest > event_now
        {
            event_now = newest;
            evaluator.ingest(&signals.evaluate(&store, event_now), wall);
            evaluated |= evaluator.evaluate(event_now).ran;
        }
        if evaluator.has_late() {
            evaluated |= evaluator.evaluate(evaluator.now_ms()).ran;
        }
        if evaluated {
            log.observe(&evaluator);
        }
    };
    let mut start = 0;
    while start < points.len() {
        let t = points[start].0;
        let end = start + points[start..].iter().take_while(|p| p.0 == t).count();
        let batch = WriteBatch {
            series: points[start..end]
                .iter()
                .map(|&(_, i, v)| SeriesWrite {
                    labels: labels[i as usize].clone(),
                    kind: ValueKind::Gauge,
                    points: vec![Point::new(t, v)],
                })
                .collect(),
            ..Default::default()
        };
        let out = store.write(batch, t);
        if out.rejected_total() > 0 {
            refused += out.rejected_total();
            if first_refusal.is_none() {
                first_refusal = out.first_error.clone();
            }
        }
        handle(out, t, &mut log);
        start = end;
    }
    let wall = last.unwrap_or(0);
    handle(store.flush(), wall, &mut log);
    if refused > 0 {
        bail!(
            "{refused} samples were refused by the store; first: {}",
            first_refusal.unwrap_or_default()
        );
    }

    let compiled = evaluator.rules();
    let rules = compiled
        .iter()
        .map(|r| RuleOutcome {
            name: r.config.name.clone(),
            kind: r.config.kind.as_str().to_string(),
            builtin: r.builtin,
            firings: log
                .firings
                .iter()
                .filter(|(rule, _)| *rule == r.config.name)
                .map(|(_, f)| f.clone())
                .collect(),
        })
        .collect();
    Ok(RulesReport {
        series,
        samples,
        first_ms: first,
        last_ms: last,
        step_seconds: step_ms as f64 / 1000.0,
        rules,
    })
}

fn rfc3339(ms: i64) -> String {
    u64::try_from(ms)
        .map(|ms| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        })
        .unwrap_or_else(|_| format!("{ms} ms"))
}

fn labels_text(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(n, v)| format!("{n}={v:?}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

impl std::fmt::Display for RulesReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = match (self.first_ms, self.last_ms) {
            (Some(a), Some(b)) => format!("{} to {}", rfc3339(a), rfc3339(b)),
            _ => "no samples".to_string(),
        };
        writeln!(
            f,
            "{} series, {} samples, {span}, step {}s",
            self.series, self.samples, self.step_seconds
        )?;
        for r in &self.rules {
            let times = if r.firings.len() == 1 {
                "time"
            } else {
                "times"
            };
            writeln!(
                f,
                "\n{} ({}{}): fired {} {times}",
                r.name,
                r.kind,
                if r.builtin { ", built-in" } else { "" },
                r.firings.len()
            )?;
            for firing in &r.firings {
                let end = match firing.end_ms {
                    Some(end) => format!(
                        "{} ({})",
                        rfc3339(end),
                        humantime::format_duration(Duration::from_secs(
                            ((end - firing.start_ms).max(0) / 1000) as u64
                        ))
                    ),
                    None => "still firing".to_string(),
                };
                writeln!(
                    f,
                    "  {} → {end}  {}\n    {}",
                    rfc3339(firing.start_ms),
                    labels_text(&firing.labels),
                    firing.explanation
                )?;
            }
        }
        Ok(())
    }
}

/// The most common interval between consecutive points of the series (ms), if any.
pub fn history_step(history: &[presage_history::SeriesHistory]) -> Option<i64> {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for s in history {
        for w in s.points.windows(2) {
            *counts.entry(w[1].0 - w[0].0).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(d, n)| (n, std::cmp::Reverse(d)))
        .map(|(d, _)| d)
}

/// Reads every series of a folder of Parquet history files.
pub fn read_history(dir: &Path) -> anyhow::Result<Vec<presage_history::SeriesHistory>> {
    let history = presage_history::import(dir)?.collect::<Result<Vec<_>, _>>()?;
    Ok(history)
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
    fn a_static_rule_fires_once_while_its_threshold_is_crossed() {
        let cfg = ForecasterConfig::from_toml(
            r#"
[alerting]
default_rules = false

[[rules]]
name = "Hot"
kind = "static"
select = 'temp'
threshold = 10

[[rules]]
name = "Never"
kind = "static"
select = 'temp'
threshold = 1000
"#,
            "rules.toml",
        )
        .unwrap();
        let t0 = 1_700_000_000_000 / 3_600_000 * 3_600_000;
        let hot = 120..135;
        let series = presage_history::SeriesHistory {
            labels: [("__name__", "temp"), ("room", "a")]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            points: (0..240)
                .map(|i| {
                    let v = if hot.contains(&i) { 20.0 } else { 1.0 };
                    (t0 + i * 60_000, v)
                })
                .collect(),
        };
        let report = backtest_rules(&cfg, vec![series]).unwrap();
        assert_eq!(report.samples, 240);
        assert_eq!(report.rules.len(), 2);
        let firings = &report.rules[0].firings;
        assert_eq!(report.rules[0].name, "Hot");
        assert_eq!(firings.len(), 1, "{report}");
        let f = &firings[0];
        assert!(
            f.start_ms >= t0 + hot.start * 60_000 && f.start_ms < t0 + hot.end * 60_000,
            "{report}"
        );
        let end = f.end_ms.expect("resolved");
        assert!(end >= t0 + hot.end * 60_000, "{report}");
        assert_eq!(f.labels.get("room").map(String::as_str), Some("a"));
        assert!(report.rules[1].firings.is_empty(), "{report}");
        let text = report.to_string();
        assert!(text.contains("Hot (static): fired 1 time"), "{text}");
        assert!(text.contains("Never (static): fired 0 times"), "{text}");
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

//! Numenta Anomaly Benchmark scoring, implemented from NAB's published method.
//!
//! A detector gives every row a score; rows at or above a threshold are detections. Per file:
//! the first 15% of rows (at most 750) are probation and not scored; in each labelled window only
//! the earliest detection counts, rewarded along a scaled sigmoid from +1 at the window's left
//! edge to 0 at its right edge, divided by the sigmoid's value at the left edge so that a detection
//! there is worth exactly the true-positive weight (as NAB's sweeper does); a window without
//! detection costs the false-negative weight; a detection outside every window costs the
//! false-positive weight scaled by how far it is past the previous window, measured in that
//! window's width minus one row as NAB does (full weight before the first window). Scores are
//! normalised over the corpus: 100 × (raw − null) / (perfect − null), with perfect the
//! true-positive weight per window, and the threshold is the single value that maximises the
//! corpus score for each profile.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};

/// Weights of one NAB profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    /// Name as NAB prints it.
    pub name: &'static str,
    /// True-positive weight.
    pub tp: f64,
    /// False-negative weight.
    pub fn_: f64,
    /// False-positive weight.
    pub fp: f64,
}

/// NAB's three profiles.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp: 1.0,
        fn_: 1.0,
        fp: 0.11,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp: 1.0,
        fn_: 1.0,
        fp: 0.22,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp: 1.0,
        fn_: 2.0,
        fp: 0.11,
    },
];

/// One file: its scores and its windows as row index ranges (inclusive).
#[derive(Debug, Clone)]
pub struct ScoredFile {
    /// Path relative to the corpus (`realKnownCause/nyc_taxi.csv`).
    pub name: String,
    /// Anomaly score per row.
    pub scores: Vec<f64>,
    /// Labelled windows, `[first row, last row]`.
    pub windows: Vec<(usize, usize)>,
}

/// `2 / (1 + e^(5x)) - 1`: +0.987 at x = -1, 0 at x = 0, towards -1 for large x.
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        // NAB clamps far-away false positives to the full cost.
        return -1.0;
    }
    2.0 / (1.0 + (5.0 * x).exp()) - 1.0
}

fn probation(len: usize) -> usize {
    ((len as f64 * 0.15).floor() as usize).min(750)
}

/// Raw score of one file at a threshold, with the null and perfect scores for normalisation.
pub fn file_score(f: &ScoredFile, threshold: f64, p: &Profile) -> (f64, f64, f64) {
    let n = f.scores.len();
    let start = probation(n);
    let null = -p.fn_ * f.windows.len() as f64;
    let perfect = p.tp * f.windows.len() as f64;
    let max_tp = scaled_sigmoid(-1.0);
    let mut raw = 0.0;
    let mut detected = vec![false; f.windows.len()];
    let mut prev_window: Option<usize> = None; // index of the window most recently passed
    let mut w = 0;
    for i in start..n {
        while w < f.windows.len() && f.windows[w].1 < i {
            prev_window = Some(w);
            w += 1;
        }
        if f.scores[i] < threshold {
            continue;
        }
        if w < f.windows.len() && f.windows[w].0 <= i {
            // Inside window w.
            if !detected[w] {
                detected[w] = true;
                let (a, b) = f.windows[w];
                let width = (b - a + 1) as f64;
                let x = -((b - i) as f64 + 1.0) / width;
                raw += p.tp * scaled_sigmoid(x) / max_tp;
            }
        } else {
            let cost = match prev_window {
                None => -1.0,
                Some(pw) => {
                    let (a, b) = f.windows[pw];
                    // NAB divides by the window's width minus one (a one-row window by 1).
                    let width = ((b - a) as f64).max(1.0);
                    scaled_sigmoid((i - b) as f64 / width)
                }
            };
            raw += p.fp * cost;
        }
    }
    raw -= p.fn_ * detected.iter().filter(|d| !**d).count() as f64;
    (raw, null, perfect)
}

/// Normalised corpus score at a threshold.
pub fn corpus_score(files: &[ScoredFile], threshold: f64, p: &Profile) -> f64 {
    let (mut raw, mut null, mut perfect) = (0.0, 0.0, 0.0);
    for f in files {
        let (r, nl, pf) = file_score(f, threshold, p);
        raw += r;
        null += nl;
        perfect += pf;
    }
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

/// The best threshold for a profile and its normalised score, searching every distinct score
/// (coarsened to 1e-4) between 0 and 1.
pub fn optimise(files: &[ScoredFile], p: &Profile) -> (f64, f64) {
    let mut candidates: Vec<f64> = files
        .iter()
        .flat_map(|f| f.scores.iter().map(|s| (s * 10_000.0).round() / 10_000.0))
        .filter(|s| *s > 0.0)
        .collect();
    candidates.sort_by(f64::total_cmp);
    candidates.dedup();
    candidates.push(1.01); // detect nothing
    let mut best = (1.01, f64::NEG_INFINITY);
    for t in candidates {
        let s = corpus_score(files, t, p);
        if s > best.1 {
            best = (t, s);
        }
    }
    best
}

fn parse_ts(s: &str) -> anyhow::Result<i64> {
    let s = s.trim().trim_matches('"');
    let base = s.split('.').next().unwrap_or(s);
    let t = humantime::parse_rfc3339_weak(base).with_context(|| format!("bad timestamp `{s}`"))?;
    Ok(t.duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64)
}

/// Loads detector results (`timestamp,value,anomaly_score,...`) for every corpus file listed in
/// the labels, matching `<results>/<group>/<prefix><name>`.
pub fn load(labels: &Path, results: &Path, prefix: &str) -> anyhow::Result<Vec<ScoredFile>> {
    let text = std::fs::read_to_string(labels)
        .with_context(|| format!("cannot read {}", labels.display()))?;
    let windows: BTreeMap<String, Vec<(String, String)>> =
        serde_json::from_str(&text).context("labels are not NAB's combined_windows.json")?;
    let mut files = Vec::new();
    for (name, wins) in windows {
        let rel = Path::new(&name);
        let file = rel
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = results
            .join(rel.parent().unwrap_or(Path::new("")))
            .join(format!("{prefix}{file}"));
        let body = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut ts = Vec::new();
        let mut scores = Vec::new();
        for (i, line) in body.lines().enumerate().skip(1) {
            let cols: Vec<&str> = line.split(',').collect();
            if cols.len() < 3 {
                bail!(
                    "{}:{}: expected timestamp,value,anomaly_score",
                    path.display(),
                    i + 1
                );
            }
            ts.push(parse_ts(cols[0])?);
            scores.push(
                cols[2]
                    .trim()
                    .parse::<f64>()
                    .with_context(|| format!("{}:{}", path.display(), i + 1))?,
            );
        }
        let mut idx = Vec::new();
        for (a, b) in wins {
            let (a, b) = (parse_ts(&a)?, parse_ts(&b)?);
            let first = ts.iter().position(|t| *t >= a);
            let last = ts.iter().rposition(|t| *t <= b);
            if let (Some(f), Some(l)) = (first, last)
                && f <= l
            {
                idx.push((f, l));
            }
        }
        files.push(ScoredFile {
            name,
            scores,
            windows: idx,
        });
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(scores: Vec<f64>, windows: Vec<(usize, usize)>) -> ScoredFile {
        ScoredFile {
            name: "f".into(),
            scores,
            windows,
        }
    }

    #[test]
    fn sigmoid_shape() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_3).abs() < 1e-6);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(10.0), -1.0);
    }

    #[test]
    fn early_detection_beats_late_and_fp_costs() {
        let p = PROFILES[0];
        // 1000 rows, probation 150; one window at 500..=599.
        let mut early = vec![0.0; 1000];
        early[500] = 1.0;
        let (raw, null, perfect) = file_score(&file(early, vec![(500, 599)]), 0.5, &p);
        assert!((raw - perfect).abs() < 1e-9, "left edge is perfect");
        assert_eq!(null, -1.0);

        let mut late = vec![0.0; 1000];
        late[590] = 1.0;
        let (raw_late, _, _) = file_score(&file(late, vec![(500, 599)]), 0.5, &p);
        assert!(raw_late > 0.0 && raw_late < 0.3, "{raw_late}");

        // A false positive before the first window costs the full weight; one in probation
        // costs nothing; a missed window costs the FN weight.
        let mut fp = vec![0.0; 1000];
        fp[100] = 1.0;
        fp[300] = 1.0;
        let (raw_fp, _, _) = file_score(&file(fp, vec![(500, 599)]), 0.5, &p);
        assert!((raw_fp - (-0.11 - 1.0)).abs() < 1e-9, "{raw_fp}");

        // Past a window, the cost grows with the distance in (width - 1) rows: 99 here.
        let mut after = vec![0.0; 1000];
        after[500] = 1.0;
        after[698] = 1.0;
        let (raw_after, _, _) = file_score(&file(after, vec![(500, 599)]), 0.5, &p);
        let expected = 1.0 + 0.11 * scaled_sigmoid(1.0);
        assert!(
            (raw_after - expected).abs() < 1e-9,
            "{raw_after} vs {expected}"
        );

        // Only the first detection in a window counts.
        let mut twice = vec![0.0; 1000];
        twice[500] = 1.0;
        twice[501] = 1.0;
        let (raw_twice, _, _) = file_score(&file(twice, vec![(500, 599)]), 0.5, &p);
        assert!((raw_twice - perfect).abs() < 1e-9);
    }

    #[test]
    fn normalisation_and_threshold_search() {
        let p = PROFILES[0];
        let mut s = vec![0.1; 1000];
        s[510] = 0.9;
        let files = vec![file(s, vec![(500, 599)])];
        assert!(
            (corpus_score(&files, 2.0, &p) - 0.0).abs() < 1e-9,
            "null detector scores 0"
        );
        let (t, score) = optimise(&files, &p);
        assert!(t > 0.1 && t <= 0.9, "{t}");
        assert!(score > 90.0, "{score}");
    }
}

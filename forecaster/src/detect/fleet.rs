//! Fleet outliers: the same metric on many hosts or pods, and the members that behave unlike
//! their peers ("this host is unlike its 40 peers").
//!
//! Peers are compared over a short recent window of aligned steps with augurs' MAD detector
//! (distance from the fleet's median in units of its median absolute deviation, asymmetric) or
//! its DBSCAN detector (members outside the main cluster at each step). A member's score is the
//! share of the most recent steps at which it was outlying; it is outlying now when it is out at
//! the newest step and for at least half of those recent steps, so a single odd step does not
//! count.

use std::panic::{AssertUnwindSafe, catch_unwind};

use augurs::outlier::{DbscanDetector, MADDetector, OutlierDetector, OutlierOutput};

use crate::model::stats::median;

/// Peers needed before a fleet is judged (augurs finds nothing meaningful with fewer).
pub const MIN_PEERS: usize = 3;
/// Newest steps a member's score is computed over.
pub const RECENT_STEPS: usize = 10;
/// Most missing steps a member's window may have (they are filled from neighbours); members
/// with more are left out of the comparison.
const MAX_MISSING_SHARE: f64 = 0.2;

/// Which detector compares the peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Median absolute deviation from the fleet's median.
    Mad,
    /// Density-based clustering at each step.
    Dbscan,
}

impl Algorithm {
    /// The name used in configuration and signals.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mad => "mad",
            Self::Dbscan => "dbscan",
        }
    }
}

/// The verdict on one member of a fleet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Member {
    /// Index of the member in the input.
    pub index: usize,
    /// Share of the recent steps at which it was outlying, in [0, 1].
    pub score: f64,
    /// Outlying at the newest step and for at least half of the recent ones.
    pub outlying: bool,
    /// Its median over the recent steps.
    pub value: f64,
}

/// The verdict on a fleet.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The peers' median over the recent steps.
    pub fleet_median: f64,
    /// One entry per member that took part (members with too many gaps are left out).
    pub members: Vec<Member>,
}

/// Compares `windows` (one per member, aligned, the same length, NaN for missing steps) with
/// `algorithm` at `sensitivity` (between 0 and 1 exclusive; higher finds more outliers).
/// Returns `None` when there are too few usable members, the data is degenerate (all members
/// equal) or the detector fails; never panics.
pub fn judge(windows: &[Vec<f64>], algorithm: Algorithm, sensitivity: f64) -> Option<Verdict> {
    let len = windows.iter().map(Vec::len).max()?;
    if len == 0 {
        return None;
    }
    let mut kept = Vec::new();
    let mut filled: Vec<Vec<f64>> = Vec::new();
    for (i, w) in windows.iter().enumerate() {
        if w.len() != len {
            continue;
        }
        let missing = w.iter().filter(|v| !v.is_finite()).count();
        if missing as f64 > MAX_MISSING_SHARE * len as f64 {
            continue;
        }
        kept.push(i);
        filled.push(fill_gaps(w));
    }
    if kept.len() < MIN_PEERS {
        return None;
    }
    let sensitivity = sensitivity.clamp(0.01, 0.99);
    let rows: Vec<&[f64]> = filled.iter().map(Vec::as_slice).collect();
    // augurs' errors are not Send + Sync and some degenerate inputs panic inside it: both end
    // here as "no verdict".
    let output: OutlierOutput = catch_unwind(AssertUnwindSafe(|| match algorithm {
        Algorithm::Mad => {
            let d = MADDetector::with_sensitivity(sensitivity).ok()?;
            let pre = d.preprocess(&rows).ok()?;
            d.detect(&pre).ok()
        }
        Algorithm::Dbscan => {
            let d = DbscanDetector::with_sensitivity(sensitivity).ok()?;
            let pre = d.preprocess(&rows).ok()?;
            d.detect(&pre).ok()
        }
    }))
    .ok()
    .flatten()?;
    if output.series_results.len() != rows.len() {
        return None;
    }

    let recent = RECENT_STEPS.min(len);
    let from = len - recent;
    let recent_medians: Vec<f64> = filled.iter().map(|w| median(&w[from..])).collect();
    let members = output
        .series_results
        .iter()
        .zip(&kept)
        .zip(&recent_medians)
        .map(|((s, &index), &value)| {
            let mut out = vec![false; len];
            for iv in &s.outlier_intervals.intervals {
                let end = iv.end.unwrap_or(len).min(len);
                for flag in out.iter_mut().take(end).skip(iv.start.min(end)) {
                    *flag = true;
                }
            }
            let count = out[from..].iter().filter(|o| **o).count();
            let score = count as f64 / recent as f64;
            Member {
                index,
                score,
                outlying: out[len - 1] && 2 * count >= recent,
                value,
            }
        })
        .collect();
    Some(Verdict {
        fleet_median: median(&recent_medians),
        members,
    })
}

/// Fills NaN steps from the previous finite value (the next one at the start).
fn fill_gaps(w: &[f64]) -> Vec<f64> {
    let first = w.iter().copied().find(|v| v.is_finite()).unwrap_or(0.0);
    let mut last = first;
    w.iter()
        .map(|&v| {
            if v.is_finite() {
                last = v;
            }
            last
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forty hosts with the same daily-ish shape and a little noise, one of them far above.
    fn fleet(n: usize, odd: Option<usize>, odd_from: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|h| {
                (0..30)
                    .map(|t| {
                        let base = 50.0 + 10.0 * ((t as f64) / 5.0).sin();
                        let noise = (((h * 31 + t * 17) % 13) as f64 - 6.0) * 0.3;
                        let shift = if Some(h) == odd && t >= odd_from {
                            40.0
                        } else {
                            0.0
                        };
                        base + noise + shift
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_host_unlike_its_peers_is_found_by_both_algorithms() {
        for algorithm in [Algorithm::Mad, Algorithm::Dbscan] {
            let v = judge(&fleet(40, Some(7), 15), algorithm, 0.5).unwrap();
            assert_eq!(v.members.len(), 40);
            let outlying: Vec<usize> = v
                .members
                .iter()
                .filter(|m| m.outlying)
                .map(|m| m.index)
                .collect();
            assert_eq!(outlying, vec![7], "{algorithm:?}: {v:?}");
            let odd = v.members[7];
            // MAD's band is the same at every step (medians over the whole window), so at the
            // trough of the shared cycle the odd host may sit just inside it.
            assert!(odd.score >= 0.8, "{algorithm:?}: {odd:?}");
            assert!(
                odd.value > v.fleet_median + 30.0,
                "{odd:?} vs {}",
                v.fleet_median
            );
        }
    }

    #[test]
    fn a_healthy_fleet_has_no_outlier() {
        for algorithm in [Algorithm::Mad, Algorithm::Dbscan] {
            let v = judge(&fleet(40, None, 0), algorithm, 0.5).unwrap();
            assert!(
                v.members.iter().all(|m| !m.outlying),
                "{algorithm:?}: {v:?}"
            );
        }
    }

    #[test]
    fn one_odd_step_is_not_an_outlier() {
        let mut f = fleet(20, None, 0);
        f[3][29] += 100.0;
        let v = judge(&f, Algorithm::Mad, 0.5).unwrap();
        let m = v.members[3];
        assert!(m.score > 0.0 && m.score <= 0.1, "{m:?}");
        assert!(!m.outlying, "{m:?}");
    }

    #[test]
    fn degenerate_input_gives_no_verdict_and_no_panic() {
        // Too few peers.
        assert!(judge(&fleet(2, None, 0), Algorithm::Mad, 0.5).is_none());
        // All equal: MAD divides by zero inside augurs.
        let flat = vec![vec![1.0; 30]; 10];
        assert!(judge(&flat, Algorithm::Mad, 0.5).is_none());
        // Empty windows, ragged windows, all-NaN members.
        assert!(judge(&[vec![], vec![], vec![]], Algorithm::Dbscan, 0.5).is_none());
        let mut ragged = fleet(5, None, 0);
        ragged[0].pop();
        ragged[1] = vec![f64::NAN; 30];
        let v = judge(&ragged, Algorithm::Dbscan, 0.5).unwrap();
        assert_eq!(
            v.members.iter().map(|m| m.index).collect::<Vec<_>>(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn gaps_are_filled_not_fatal() {
        let mut f = fleet(10, Some(2), 0);
        f[2][5] = f64::NAN;
        f[4][0] = f64::NAN;
        let v = judge(&f, Algorithm::Mad, 0.5).unwrap();
        assert_eq!(v.members.len(), 10);
        assert!(v.members[2].outlying);
    }
}

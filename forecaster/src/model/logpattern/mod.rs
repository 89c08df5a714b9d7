//! Log templates: Drain-style mining of log bodies into patterns, per service.
//!
//! [`PatternMiner::observe`] turns a log body into a template such as
//! `user <NUM> logged in from <IP> in <DURATION>`:
//!
//! 1. Only the first non-blank line of the body is templated (a stack trace is known by its
//!    header), cut to [`MinerConfig::max_line_bytes`].
//! 2. The line is split on whitespace and variable fields are masked: `<NUM>` (integers and
//!    decimals; `512KB` becomes `<NUM>KB`), `<HEX>` (`0x…`, runs of 8+ hex digits), `<UUID>`,
//!    `<IP>` (IPv4 with an optional port, IPv6), `<DURATION>` (`250ms`, `1.5s`, `1h30m`), `<TS>`
//!    (ISO dates and date-times, times of day), `<STR>` (quoted values; a quoted message that
//!    opens the line, as in klog's `file.go:123] "message"`, is kept) and `<EMAIL>`. Words with
//!    digits inside (`sha256`, `I0312`) are left to the tree. Paths are not masked as a whole:
//!    they often name the operation, and the ids inside them are masked anyway.
//! 3. A fixed-depth parse tree per service (He et al., *Drain: An Online Log Parsing Approach with
//!    Fixed Depth Tree*, ICWS 2017) routes the line: first by its token count, then by its first
//!    [`MinerConfig::depth`] tokens, where a token that still has a digit goes to the wildcard
//!    child, as does any new token once a node has [`MinerConfig::max_children`] children.
//! 4. At the leaf, the most similar template (share of positions with equal tokens; `<*>` counts
//!    as unequal, ties go to the template with more `<*>`) is chosen if the share reaches
//!    [`MinerConfig::similarity`]; positions where it differs from the line become `<*>`
//!    (`key=<*>` when both tokens are `key=…` with the same key). Otherwise the line starts a
//!    new template.
//!
//! Memory and time are bounded: at most [`MinerConfig::max_templates`] templates live at once,
//! and at most [`MinerConfig::max_leaf_templates`] share a leaf (so a line is compared with at
//! most that many); a new template beyond either evicts the least recently observed one of the
//! miner or of the leaf (reported in
//! [`Observation::evicted`], so that whatever is keyed by the template can be dropped too). The
//! tree is pruned with its templates, so it has at most `max_templates × (depth + 1)` nodes, each
//! with at most `max_children` literal children; a template's text is bounded by
//! `max_line_bytes`, its samples by `max_samples × max_sample_bytes`.
//!
//! ```
//! use presage_forecaster::model::logpattern::{MinerConfig, PatternMiner, Severity};
//!
//! let mut miner = PatternMiner::new(MinerConfig::default());
//! let a = miner.observe("auth", Severity::Info, "user 4411 logged in from 10.0.0.7 in 35ms", 1_000);
//! let b = miner.observe("auth", Severity::Info, "user 17 logged in from 10.0.0.9 in 2.5s", 2_000);
//! assert!(a.is_new && !b.is_new);
//! assert_eq!(a.template_id, b.template_id);
//! assert_eq!(&*b.template, "user <NUM> logged in from <IP> in <DURATION>");
//! let info = miner.get(a.template_id).unwrap();
//! assert_eq!((info.count, info.first_seen_ms, info.last_seen_ms), (2, 1_000, 2_000));
//! ```

mod drain;
mod mask;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use drain::PatternMiner;

/// Severity of a log record, coarsened to five levels (OTLP's TRACE counts as debug).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// TRACE and DEBUG.
    Debug,
    /// INFO, and records without a usable severity.
    #[default]
    Info,
    /// WARN.
    Warn,
    /// ERROR.
    Error,
    /// FATAL.
    Fatal,
}

impl Severity {
    /// All levels, lowest first.
    pub const ALL: [Severity; 5] = [
        Severity::Debug,
        Severity::Info,
        Severity::Warn,
        Severity::Error,
        Severity::Fatal,
    ];

    /// From an OTLP log record: `severity_number` (1–24) when set, else `severity_text`
    /// (case-insensitive: trace, debug, info, notice, warn, warning, error, err, critical, crit,
    /// alert, emerg, fatal, panic, severe, …). Anything else is [`Severity::Info`].
    pub fn from_otlp(severity_number: i32, severity_text: &str) -> Self {
        match severity_number {
            1..=8 => Severity::Debug,
            9..=12 => Severity::Info,
            13..=16 => Severity::Warn,
            17..=20 => Severity::Error,
            21..=24 => Severity::Fatal,
            _ => Self::from_text(severity_text),
        }
    }

    fn from_text(text: &str) -> Self {
        let t = text.trim();
        // OTLP texts may carry a level number ("WARN2"): compare the alphabetic head.
        let head = t
            .find(|c: char| !c.is_ascii_alphabetic())
            .map_or(t, |end| &t[..end]);
        const LEVELS: [(&str, Severity); 18] = [
            ("trace", Severity::Debug),
            ("debug", Severity::Debug),
            ("dbg", Severity::Debug),
            ("fine", Severity::Debug),
            ("info", Severity::Info),
            ("information", Severity::Info),
            ("notice", Severity::Info),
            ("warn", Severity::Warn),
            ("warning", Severity::Warn),
            ("error", Severity::Error),
            ("err", Severity::Error),
            ("severe", Severity::Error),
            ("critical", Severity::Fatal),
            ("crit", Severity::Fatal),
            ("alert", Severity::Fatal),
            ("emerg", Severity::Fatal),
            ("fatal", Severity::Fatal),
            ("panic", Severity::Fatal),
        ];
        LEVELS
            .iter()
            .find(|(name, _)| head.eq_ignore_ascii_case(name))
            .map_or(Severity::Info, |&(_, s)| s)
    }

    /// Lower-case name, as used in labels and JSON: `debug`, `info`, `warn`, `error`, `fatal`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Warn => "warn",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lines of a template seen at each severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct SeverityCounts {
    /// At debug (or trace).
    pub debug: u64,
    /// At info.
    pub info: u64,
    /// At warn.
    pub warn: u64,
    /// At error.
    pub error: u64,
    /// At fatal.
    pub fatal: u64,
}

impl SeverityCounts {
    /// The count at one severity.
    pub fn get(&self, severity: Severity) -> u64 {
        match severity {
            Severity::Debug => self.debug,
            Severity::Info => self.info,
            Severity::Warn => self.warn,
            Severity::Error => self.error,
            Severity::Fatal => self.fatal,
        }
    }

    fn from_array(a: [u64; 5]) -> Self {
        Self {
            debug: a[0],
            info: a[1],
            warn: a[2],
            error: a[3],
            fatal: a[4],
        }
    }
}

/// A template's identity: a hash (xxh3) of the service name and the template's first form (the
/// masked line that created it). It does not change when the template generalises, and a
/// template evicted and later mined again from the same line gets the same id. Shown as 16 hex
/// digits. (Should two live templates of a service ever hash alike, the later one takes the next
/// free value.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TemplateId(pub u64);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for TemplateId {
    type Err = std::num::ParseIntError;

    /// Parses the 16-hex-digit form.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(TemplateId)
    }
}

impl Serialize for TemplateId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TemplateId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Knobs of the miner. Out-of-range values are clamped by [`PatternMiner::new`] (see each field).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MinerConfig {
    /// Templates kept at once, over all services; beyond, the least recently observed is evicted.
    /// At least 1.
    pub max_templates: usize,
    /// Leading tokens that route a line in the tree, after the token-count layer. 1 to 16.
    /// Lines that differ in a routing token never share a template (unless the token has a
    /// digit), so a small depth merges more; a larger one scans fewer templates per line.
    pub depth: usize,
    /// Share of equal tokens (0.0 to 1.0) for a line to join a template.
    pub similarity: f64,
    /// Literal children per tree node; further new tokens share the node's wildcard child.
    /// At least 1.
    pub max_children: usize,
    /// Templates per leaf: a line is compared with at most this many, which bounds the cost of a
    /// line whatever the input. A new template in a full leaf evicts the leaf's least recently
    /// observed one. At least 2.
    pub max_leaf_templates: usize,
    /// Sample lines kept per template (the first distinct ones seen).
    pub max_samples: usize,
    /// Bytes kept of each sample line (cut at a character boundary).
    pub max_sample_bytes: usize,
    /// Bytes of a body's first line that are templated; the rest is ignored. At least 16.
    pub max_line_bytes: usize,
}

impl Default for MinerConfig {
    /// 10,000 templates, depth 2 (the first two tokens route, as in Drain3's default), similarity
    /// 0.5, 100 children per node, 128 templates per leaf, 3 samples of at most 512 bytes, lines
    /// templated up to 2 KiB.
    fn default() -> Self {
        Self {
            max_templates: 10_000,
            depth: 2,
            similarity: 0.5,
            max_children: 100,
            max_leaf_templates: 128,
            max_samples: 3,
            max_sample_bytes: 512,
            max_line_bytes: 2048,
        }
    }
}

impl MinerConfig {
    fn clamped(self) -> Self {
        Self {
            max_templates: self.max_templates.max(1),
            depth: self.depth.clamp(1, 16),
            similarity: if self.similarity.is_nan() {
                0.5
            } else {
                self.similarity.clamp(0.0, 1.0)
            },
            max_children: self.max_children.max(1),
            max_leaf_templates: self.max_leaf_templates.max(2),
            max_samples: self.max_samples,
            max_sample_bytes: self.max_sample_bytes,
            max_line_bytes: self.max_line_bytes.max(16),
        }
    }
}

/// What [`PatternMiner::observe`] made of one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The template the line belongs to.
    pub template_id: TemplateId,
    /// The line created the template (true exactly once per template, until it is evicted).
    pub is_new: bool,
    /// The line generalised the template (some tokens became `<*>`).
    pub generalised: bool,
    /// The template's text after this line.
    pub template: Arc<str>,
    /// A template evicted to make room for this one: drop whatever is keyed by it.
    pub evicted: Option<TemplateId>,
}

/// A line kept as an example of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Event time of the line (ms).
    pub ts_ms: i64,
    /// Its severity.
    pub severity: Severity,
    /// The record's body (all its lines), trimmed and cut to [`MinerConfig::max_sample_bytes`].
    pub line: String,
}

/// A snapshot of one template, for the API and alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TemplateInfo {
    /// Its id.
    pub id: TemplateId,
    /// The service (`service.name`) it was mined for.
    pub service: Arc<str>,
    /// Its text, with placeholders (`<NUM>`, `<IP>`, …) and `<*>` where lines differed.
    pub template: Arc<str>,
    /// The highest severity seen.
    pub severity: Severity,
    /// Lines observed.
    pub count: u64,
    /// Lines observed per severity.
    pub counts: SeverityCounts,
    /// Earliest event time seen (ms).
    pub first_seen_ms: i64,
    /// Latest event time seen (ms).
    pub last_seen_ms: i64,
    /// The first distinct lines seen, at most [`MinerConfig::max_samples`].
    pub samples: Vec<Sample>,
}

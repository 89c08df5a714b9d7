//! Human formatting of numbers, durations, sizes and times, and the tiny template language of
//! rule labels, annotations and remediations.
//!
//! Templates substitute `{{ name }}` placeholders (spaces inside the braces optional):
//! `labels.NAME`, `value`, `expected`, `lower`, `upper`, `score`, `threshold`, `eta` (the
//! median time to a breach, as `3h10m`) and `rule`. A value the alert does not have renders as
//! `n/a`; an unknown placeholder is left as written so the mistake shows.

use std::time::{Duration, UNIX_EPOCH};

use crate::signal::LabelSet;

/// The values a template may use.
#[derive(Debug, Clone, Copy, Default)]
pub struct TemplateContext<'a> {
    /// The alert's labels (`{{ labels.NAME }}`).
    pub labels: Option<&'a LabelSet>,
    /// The rule's name.
    pub rule: &'a str,
    /// The value.
    pub value: Option<f64>,
    /// The expected value.
    pub expected: Option<f64>,
    /// The band's lower edge.
    pub lower: Option<f64>,
    /// The band's upper edge.
    pub upper: Option<f64>,
    /// The anomaly or outlier score.
    pub score: Option<f64>,
    /// The rule's threshold.
    pub threshold: Option<f64>,
    /// Median time to a breach, seconds.
    pub eta_seconds: Option<f64>,
}

impl TemplateContext<'_> {
    fn lookup(&self, key: &str) -> Option<String> {
        let num = |v: Option<f64>| Some(v.map_or_else(|| "n/a".to_string(), number));
        if let Some(name) = key.strip_prefix("labels.") {
            return Some(
                self.labels
                    .and_then(|l| l.get(name.trim()))
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        match key {
            "value" => num(self.value),
            "expected" => num(self.expected),
            "lower" => num(self.lower),
            "upper" => num(self.upper),
            "score" => num(self.score),
            "threshold" => num(self.threshold),
            "eta" => Some(
                self.eta_seconds
                    .map_or_else(|| "n/a".to_string(), duration_secs),
            ),
            "rule" => Some(self.rule.to_string()),
            _ => None,
        }
    }
}

/// Substitutes the placeholders of `template`.
pub fn render(template: &str, ctx: &TemplateContext<'_>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let key = after[..end].trim();
        match ctx.lookup(key) {
            Some(v) => out.push_str(&v),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A number with at most four significant digits, no exponent for everyday magnitudes.
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e9).contains(&a) {
        return format!("{v:.3e}");
    }
    let decimals = if a >= 1000.0 {
        0
    } else if a >= 100.0 {
        1
    } else if a >= 10.0 {
        2
    } else if a >= 1.0 {
        3
    } else {
        4
    };
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A share in [0, 1] as a percentage (`93.1%`).
pub fn percent(v: f64) -> String {
    let p = v * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A duration in seconds as `3h10m`, `2d4h`, `45m`, `30s` (two units at most).
pub fn duration_secs(secs: f64) -> String {
    if !secs.is_finite() {
        return "never".to_string();
    }
    let negative = secs < 0.0;
    let total = secs.abs().round() as u64;
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut out = String::new();
    let mut rest = total;
    let mut used = 0;
    for (size, name) in units {
        if used == 2 {
            break;
        }
        let n = rest / size;
        if n > 0 || (used > 0) {
            if n > 0 {
                out.push_str(&format!("{n}{name}"));
            }
            rest -= n * size;
            used += 1;
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    if negative { format!("-{out}") } else { out }
}

/// A byte count with a binary unit (`12.5 GiB`).
pub fn bytes(v: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v.abs();
    let mut i = 0;
    while x >= 1024.0 && i + 1 < units.len() {
        x /= 1024.0;
        i += 1;
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if i == 0 {
        format!("{sign}{x:.0} B")
    } else {
        format!("{sign}{x:.1} {}", units[i])
    }
}

/// An event or wall time (ms since the epoch) as RFC 3339 in UTC, to the second.
pub fn timestamp(ms: i64) -> String {
    let t = if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH
    };
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Percent-encodes a URL query value.
pub(crate) fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

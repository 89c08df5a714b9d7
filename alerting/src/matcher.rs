//! Label matchers and selectors.
//!
//! Selectors use PromQL series-selector syntax (`metric{a="b",c=~"x|y"}`, `{}` for everything)
//! and are parsed with promql-parser. Regular expressions are anchored at both ends, as in
//! Prometheus. A label that is absent matches as the empty string.

use presage_config::promql::parse_selector_expr;
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::signal::{LabelSet, METRIC_NAME};

/// The label alerts carry the series' metric name in.
pub const ALERT_METRIC_LABEL: &str = "metric";

/// Label name of the placeholder matcher (see [`Selector::parse`]).
const PLACEHOLDER: &str = "__presage_placeholder__";

/// How a matcher compares a label's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchType {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (anchored)
    Regex,
    /// `!~` (anchored)
    NotRegex,
}

impl MatchType {
    fn symbol(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Regex => "=~",
            Self::NotRegex => "!~",
        }
    }
}

/// One label matcher. Serialised as Alertmanager's API v2 does:
/// `{"name": "severity", "value": "warning|critical", "isRegex": true, "isEqual": true}`.
#[derive(Debug, Clone)]
pub struct LabelMatcher {
    /// The label's name.
    pub name: String,
    /// The value or regular expression.
    pub value: String,
    /// How the value is compared.
    pub kind: MatchType,
    regex: Option<Regex>,
}

impl PartialEq for LabelMatcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.value == other.value && self.kind == other.kind
    }
}

impl LabelMatcher {
    /// A matcher; a regular expression is compiled anchored (`^(?:value)$`).
    pub fn new(name: &str, kind: MatchType, value: &str) -> Result<Self> {
        if name.is_empty() {
            return Err(Error::Selector {
                text: format!("{name}{}\"{value}\"", kind.symbol()),
                reason: "a matcher needs a label name".into(),
            });
        }
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$")).map_err(|e| Error::Selector {
                    text: format!("{name}{}\"{value}\"", kind.symbol()),
                    reason: format!("invalid regular expression: {e}"),
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_string(),
            value: value.to_string(),
            kind,
            regex,
        })
    }

    /// Whether a label value (`""` when the label is absent) matches.
    pub fn matches_value(&self, value: &str) -> bool {
        match (self.kind, &self.regex) {
            (MatchType::Equal, _) => self.value == value,
            (MatchType::NotEqual, _) => self.value != value,
            (MatchType::Regex, Some(re)) => re.is_match(value),
            (MatchType::NotRegex, Some(re)) => !re.is_match(value),
            // Regex matchers are only built with their regex.
            (MatchType::Regex | MatchType::NotRegex, None) => false,
        }
    }

    /// Whether a label set matches.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.matches_value(labels.get(&self.name).map_or("", String::as_str))
    }

    /// Whether the value is a regular expression.
    pub fn is_regex(&self) -> bool {
        matches!(self.kind, MatchType::Regex | MatchType::NotRegex)
    }

    /// Whether the matcher requires a match (`=`, `=~`) rather than a mismatch.
    pub fn is_equal(&self) -> bool {
        matches!(self.kind, MatchType::Equal | MatchType::Regex)
    }
}

/// `s` as a PromQL double-quoted string.
fn quoted(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("\"{escaped}\"")
}

impl std::fmt::Display for LabelMatcher {
    /// PromQL syntax that parses back to the same matcher: a label name that is not a plain
    /// identifier (`service.name`, as OTLP attributes give) is quoted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut chars = self.name.chars();
        let plain = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if plain {
            f.write_str(&self.name)?;
        } else {
            f.write_str(&quoted(&self.name))?;
        }
        write!(f, "{}{}", self.kind.symbol(), quoted(&self.value))
    }
}

/// Alertmanager's API v2 shape of a matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatcherSpec {
    /// The label's name.
    pub name: String,
    /// The value or regular expression.
    pub value: String,
    /// The value is a regular expression.
    #[serde(default)]
    pub is_regex: bool,
    /// `true` for `=`/`=~`, `false` for `!=`/`!~` (default `true`).
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl TryFrom<&MatcherSpec> for LabelMatcher {
    type Error = Error;

    fn try_from(s: &MatcherSpec) -> Result<Self> {
        let kind = match (s.is_regex, s.is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regex,
            (true, false) => MatchType::NotRegex,
        };
        LabelMatcher::new(&s.name, kind, &s.value)
    }
}

impl From<&LabelMatcher> for MatcherSpec {
    fn from(m: &LabelMatcher) -> Self {
        Self {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: m.is_regex(),
            is_equal: m.is_equal(),
        }
    }
}

impl Serialize for LabelMatcher {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        MatcherSpec::from(self).serialize(s)
    }
}

impl<'de> Deserialize<'de> for LabelMatcher {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let spec = MatcherSpec::deserialize(d)?;
        LabelMatcher::try_from(&spec).map_err(serde::de::Error::custom)
    }
}

/// A parsed selector: a label set matches when it satisfies every matcher of at least one
/// alternative (`{a="1" or b="2"}` has two). `{}` has one empty alternative and matches all.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    alternatives: Vec<Vec<LabelMatcher>>,
    text: String,
}

impl Selector {
    /// The selector that matches every label set.
    pub fn all() -> Self {
        Self {
            alternatives: vec![Vec::new()],
            text: "{}".into(),
        }
    }

    /// A selector of one alternative.
    pub fn from_matchers(matchers: Vec<LabelMatcher>) -> Self {
        let text = format!(
            "{{{}}}",
            matchers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        Self {
            alternatives: vec![matchers],
            text,
        }
    }

    /// Parses a selector for series: the metric name stays under `__name__`.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_with_name_label(text, METRIC_NAME)
    }

    /// Parses a selector for alerts: a metric name (`metric{…}` or `__name__`) is matched
    /// against the alert's `metric` label.
    pub fn parse_for_alerts(text: &str) -> Result<Self> {
        Self::parse_with_name_label(text, ALERT_METRIC_LABEL)
    }

    fn parse_with_name_label(text: &str, name_label: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.replace(char::is_whitespace, "") == "{}" {
            return Ok(Self::all());
        }
        let err = |reason: String| Error::Selector {
            text: trimmed.to_string(),
            reason,
        };
        // promql-parser, like Prometheus, refuses selectors whose matchers all match the empty
        // string (`{severity!="info"}`); as alert matchers those are fine, so parse them with
        // a placeholder matcher that is then dropped.
        let expr = match parse_selector_expr(trimmed) {
            Ok(e) => e,
            Err(e) if trimmed.starts_with('{') && e.contains("non-empty matcher") => {
                let padded = format!("{{{PLACEHOLDER}=\"x\",{}", &trimmed[1..]);
                parse_selector_expr(&padded).map_err(|_| err(e))?
            }
            Err(e) => return Err(err(e)),
        };
        let Expr::VectorSelector(vs) = expr else {
            return Err(err(
                "expected a series selector like `metric{label=\"value\"}`".into(),
            ));
        };
        if vs.offset.is_some() || vs.at.is_some() {
            return Err(err("offset and @ modifiers are not supported here".into()));
        }
        let groups: Vec<&Vec<promql_parser::label::Matcher>> = if vs.matchers.or_matchers.is_empty()
        {
            vec![&vs.matchers.matchers]
        } else {
            vs.matchers.or_matchers.iter().collect()
        };
        let mut alternatives = Vec::with_capacity(groups.len());
        for group in groups {
            let mut alt = Vec::with_capacity(group.len() + 1);
            for m in group.iter().filter(|m| m.name != PLACEHOLDER) {
                let name = if m.name == METRIC_NAME {
                    name_label
                } else {
                    m.name.as_str()
                };
                let kind = match m.op {
                    MatchOp::Equal => MatchType::Equal,
                    MatchOp::NotEqual => MatchType::NotEqual,
                    MatchOp::Re(_) => MatchType::Regex,
                    MatchOp::NotRe(_) => MatchType::NotRegex,
                };
                alt.push(LabelMatcher::new(name, kind, &m.value)?);
            }
            if let Some(metric) = &vs.name
                && !alt.iter().any(|m| m.name == name_label)
            {
                alt.push(LabelMatcher::new(name_label, MatchType::Equal, metric)?);
            }
            alternatives.push(alt);
        }
        Ok(Self {
            alternatives,
            text: trimmed.to_string(),
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The matchers, one list per alternative.
    pub fn alternatives(&self) -> &[Vec<LabelMatcher>] {
        &self.alternatives
    }

    /// Whether a label set matches.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.alternatives
            .iter()
            .any(|alt| alt.iter().all(|m| m.matches(labels)))
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

//! PromQL series selectors (`metric{label="v",other=~"re.*"}`), parsed with promql-parser.

use presage_config::promql::parse_selector_expr;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

use crate::ingest::METRIC_NAME_LABEL;

/// A parsed selector: a series matches when it satisfies every matcher of at least one
/// alternative (`{a="1" or b="2"}` gives two alternatives).
#[derive(Debug, Clone)]
pub struct Selector {
    alternatives: Vec<Vec<Matcher>>,
    text: String,
}

impl Selector {
    /// Parses a series selector; anything else (functions, ranges, binary expressions) is an
    /// error that says what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty series selector".into());
        }
        let expr =
            parse_selector_expr(text).map_err(|e| format!("invalid selector `{text}`: {e}"))?;
        let Expr::VectorSelector(vs) = expr else {
            return Err(format!(
                "`{text}` is not a series selector: expected `metric{{label=\"value\"}}`"
            ));
        };
        if vs.offset.is_some() || vs.at.is_some() {
            return Err(format!(
                "`{text}`: offset and @ modifiers are not supported here"
            ));
        }
        let mut alternatives = Vec::new();
        let with_name = |mut ms: Vec<Matcher>| {
            if let Some(name) = &vs.name
                && !ms.iter().any(|m| m.name == METRIC_NAME_LABEL)
            {
                ms.push(Matcher::new(MatchOp::Equal, METRIC_NAME_LABEL, name));
            }
            ms
        };
        if vs.matchers.or_matchers.is_empty() {
            alternatives.push(with_name(vs.matchers.matchers.clone()));
        } else {
            for alt in &vs.matchers.or_matchers {
                alternatives.push(with_name(alt.clone()));
            }
        }
        // Like Prometheus, refuse selectors that match everything (every series has an empty
        // value for some label, so `{foo=""}` alone would select the whole store).
        for alt in &alternatives {
            if alt.iter().all(|m| m.is_match("")) {
                return Err(format!(
                    "`{text}`: a selector needs at least one matcher that does not match the empty string"
                ));
            }
        }
        Ok(Self {
            alternatives,
            text: text.to_string(),
        })
    }

    /// The selector as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Does a series with these labels (sorted or not) match?
    pub fn matches<'a, I>(&self, labels: I) -> bool
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        self.alternatives.iter().any(|alt| {
            alt.iter().all(|m| {
                let value = labels
                    .clone()
                    .into_iter()
                    .find(|(n, _)| *n == m.name)
                    .map_or("", |(_, v)| v);
                m.is_match(value)
            })
        })
    }

    /// Equality matchers that every matching series must satisfy, per alternative: the store
    /// uses them to pick candidates from its inverted index.
    pub(crate) fn alternatives(&self) -> impl Iterator<Item = Vec<(&str, &str)>> {
        self.alternatives.iter().map(|alt| {
            alt.iter()
                .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
                .map(|m| (m.name.as_str(), m.value.as_str()))
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        pairs.to_vec()
    }

    #[test]
    fn matches_like_prometheus() {
        let s = labels(&[
            ("__name__", "node_load1"),
            ("instance", "a:9100"),
            ("job", "node"),
        ]);
        let cases = [
            ("node_load1", true),
            ("node_load5", false),
            (r#"node_load1{job="node"}"#, true),
            (r#"node_load1{job!="node"}"#, false),
            (r#"{__name__=~"node_.*",instance=~"a:.*"}"#, true),
            (r#"{__name__=~"node"}"#, false), // anchored
            (r#"node_load1{missing=""}"#, true),
            (r#"node_load1{missing!=""}"#, false),
            (r#"node_load1{job="x" or instance="a:9100"}"#, true),
        ];
        for (text, want) in cases {
            let sel = Selector::parse(text).unwrap();
            assert_eq!(sel.matches(s.iter().copied()), want, "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_selector() {
        for text in [
            "",
            "rate(x[5m])",
            "x[5m]",
            "x offset 5m",
            r#"{job=""}"#,
            "a +",
            "{",
        ] {
            let err = Selector::parse(text).unwrap_err();
            assert!(!err.is_empty(), "{text}");
        }
    }

    #[test]
    fn equality_matchers_drive_candidate_lookup() {
        let sel = Selector::parse(r#"up{job="node",instance=~".+"}"#).unwrap();
        let alts: Vec<_> = sel.alternatives().collect();
        assert_eq!(alts.len(), 1);
        assert!(alts[0].contains(&("job", "node")));
        assert!(alts[0].contains(&("__name__", "up")));
    }
}

//! Inhibition: while a source alert fires, target alerts with the same values of the `equal`
//! labels are muted.
//!
//! Built in: a firing critical breach alert mutes warning anomaly alerts on the same series
//! (the same labels apart from `alertname`, `rule_kind` and `severity`). Configured
//! `[[inhibit]]` entries come on top. As in Alertmanager, an alert never inhibits itself, and a
//! label missing on both sides counts as equal.

use std::collections::{BTreeMap, HashMap, HashSet};

use presage_config::InhibitConfig;

use crate::alert::{Alert, AlertState};
use crate::error::Result;
use crate::matcher::{LabelMatcher, MatchType, Selector};
use crate::signal::LabelSet;

/// Labels the built-in inhibition ignores when comparing series.
const BUILTIN_IGNORED: [&str; 3] = ["alertname", "rule_kind", "severity"];

#[derive(Debug, Clone)]
enum Equal {
    Labels(Vec<String>),
    /// Every label apart from these.
    AllBut(&'static [&'static str]),
}

#[derive(Debug, Clone)]
struct InhibitRule {
    source: Selector,
    target: Selector,
    equal: Equal,
    name: String,
}

impl InhibitRule {
    fn key(&self, labels: &LabelSet) -> String {
        let mut key = String::new();
        match &self.equal {
            Equal::Labels(names) => {
                for n in names {
                    key.push_str(labels.get(n).map_or("", String::as_str));
                    key.push('\u{1}');
                }
            }
            Equal::AllBut(skip) => {
                for (k, v) in labels {
                    if !skip.contains(&k.as_str()) {
                        key.push_str(k);
                        key.push('\u{2}');
                        key.push_str(v);
                        key.push('\u{1}');
                    }
                }
            }
        }
        key
    }
}

/// Decides which alerts are inhibited.
#[derive(Debug, Clone)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

fn eq(name: &str, value: &str) -> Result<LabelMatcher> {
    LabelMatcher::new(name, MatchType::Equal, value)
}

impl Inhibitor {
    /// The built-in inhibition plus the configured ones.
    pub fn new(configured: &[InhibitConfig]) -> Result<Self> {
        let mut rules = vec![InhibitRule {
            source: Selector::from_matchers(vec![
                eq("rule_kind", "breach")?,
                eq("severity", "critical")?,
            ]),
            target: Selector::from_matchers(vec![
                eq("rule_kind", "anomaly")?,
                eq("severity", "warning")?,
            ]),
            equal: Equal::AllBut(&BUILTIN_IGNORED),
            name: "built-in: critical breach mutes warning anomaly on the same series".into(),
        }];
        for (i, c) in configured.iter().enumerate() {
            rules.push(InhibitRule {
                source: Selector::parse_for_alerts(&c.source)?,
                target: Selector::parse_for_alerts(&c.target)?,
                equal: Equal::Labels(c.equal.clone()),
                name: format!("inhibit[{i}]"),
            });
        }
        Ok(Self { rules })
    }

    /// For every inhibited alert, the fingerprints of the firing alerts that inhibit it.
    pub fn inhibited<'a>(
        &self,
        alerts: impl Iterator<Item = &'a Alert> + Clone,
    ) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for rule in &self.rules {
            // equal-key → source fingerprints
            let mut sources: HashMap<String, Vec<&str>> = HashMap::new();
            for a in alerts.clone() {
                if a.state == AlertState::Firing && rule.source.matches(&a.labels) {
                    sources
                        .entry(rule.key(&a.labels))
                        .or_default()
                        .push(a.fingerprint.as_str());
                }
            }
            if sources.is_empty() {
                continue;
            }
            for a in alerts.clone() {
                if a.state == AlertState::Resolved || !rule.target.matches(&a.labels) {
                    continue;
                }
                if let Some(srcs) = sources.get(&rule.key(&a.labels)) {
                    let by: Vec<String> = srcs
                        .iter()
                        .filter(|fp| **fp != a.fingerprint)
                        .map(|fp| fp.to_string())
                        .collect();
                    if !by.is_empty() {
                        let entry = out.entry(a.fingerprint.clone()).or_default();
                        let mut seen: HashSet<String> = entry.iter().cloned().collect();
                        for b in by {
                            if seen.insert(b.clone()) {
                                entry.push(b);
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Names of the inhibition rules, for diagnostics.
    pub fn describe(&self) -> BTreeMap<usize, String> {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.name.clone()))
            .collect()
    }
}

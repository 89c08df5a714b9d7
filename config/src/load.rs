//! Loading TOML with every problem reported at its line and column.
//!
//! Serde stops at the first error, which makes users fix a file one mistake at a time. We
//! deserialize each top-level section on its own (so each section reports its first error), flag
//! unknown sections, and run semantic validation only when the shape is right. Validation
//! problems carry a dotted key path that is located in the source through toml's spanned tree.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::error::{ConfigErrors, Problem};

/// Implements [`Document::check_section`]: deserializes one named section alone, each with its
/// own type, ignoring the others.
macro_rules! section_checker {
    ($source:expr, $name:expr, { $($field:ident: $ty:ty),* $(,)? }) => {
        match $name {
            $(stringify!($field) => {
                #[derive(Deserialize)]
                struct Only {
                    #[serde(default)]
                    #[allow(dead_code)]
                    $field: Option<$ty>,
                }
                toml::from_str::<Only>($source).map(|_| ())
            })*
            _ => Ok(()),
        }
    };
}
pub(crate) use section_checker;

/// A configuration document type: its sections and its semantic checks.
pub trait Document: DeserializeOwned + Default {
    /// The top-level keys this document accepts.
    const SECTIONS: &'static [&'static str];

    /// Deserializes the section `name` alone from `source`, ignoring the other sections.
    fn check_section(source: &str, name: &str) -> Result<(), toml::de::Error>;

    /// Semantic checks on a document whose shape is valid.
    fn validate(&self) -> Vec<Problem>;
}

/// Parses and validates `source`; `origin` names it in messages (a path, or `<embedded>`).
pub(crate) fn from_toml<T: Document>(source: &str, origin: &str) -> Result<T, ConfigErrors> {
    let fail = |problems: Vec<Problem>| ConfigErrors {
        origin: origin.to_string(),
        problems,
    };
    let (tree, syntax) = DeTable::parse_recoverable(source);
    if !syntax.is_empty() {
        let problems = syntax
            .iter()
            .map(|e| Problem::new("", e.message().trim().to_string()).locate(source, e.span()))
            .collect();
        return Err(fail(problems));
    }

    let mut problems = Vec::new();
    for (key, value) in tree.get_ref().iter() {
        let name: &str = key.get_ref();
        if !T::SECTIONS.contains(&name) {
            problems.push(
                Problem::new(
                    name,
                    format!(
                        "unknown section; expected one of: {}",
                        T::SECTIONS.join(", ")
                    ),
                )
                .locate(source, Some(key.span())),
            );
        } else if let Err(e) = T::check_section(source, name) {
            let span = e.span().or_else(|| Some(value.span()));
            problems.push(Problem::new(name, clean_message(e.message())).locate(source, span));
        }
    }
    if !problems.is_empty() {
        problems.sort_by_key(|p| (p.line, p.column));
        return Err(fail(problems));
    }

    let doc: T = match toml::from_str(source) {
        Ok(doc) => doc,
        Err(e) => {
            return Err(fail(vec![
                Problem::new("", clean_message(e.message())).locate(source, e.span()),
            ]));
        }
    };
    let mut problems: Vec<Problem> = doc
        .validate()
        .into_iter()
        .map(|p| {
            let span = find_span(tree.get_ref(), &p.path);
            p.locate(source, span)
        })
        .collect();
    problems.sort_by_key(|p| (p.line, p.column));
    if problems.is_empty() {
        Ok(doc)
    } else {
        Err(fail(problems))
    }
}

fn clean_message(message: &str) -> String {
    message.trim().replace('\n', " ")
}

/// Finds the span of a dotted path such as `server.http` or `rules[2].threshold`, falling back to
/// the closest ancestor that exists in the file.
pub(crate) fn find_span(table: &DeTable<'_>, path: &str) -> Option<Range<usize>> {
    let mut best = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut first = true;
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (key, index) = match segment.split_once('[') {
            Some((k, rest)) => (k, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let map = if first {
            Some(table)
        } else {
            match current {
                Some(DeValue::Table(t)) => Some(t),
                _ => None,
            }
        };
        first = false;
        let Some((k, v)) = map.and_then(|m| m.get_key_value(key)) else {
            break;
        };
        best = Some(k.span());
        current = Some(v.get_ref());
        if let Some(i) = index {
            match v.get_ref() {
                DeValue::Array(items) if i < items.len() => {
                    best = Some(items[i].span());
                    current = Some(items[i].get_ref());
                }
                _ => break,
            }
        }
    }
    best
}

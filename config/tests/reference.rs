//! `docs/configuration.md` and the configuration structs agree.
//!
//! The keys the structs accept are listed from the structs themselves, without a hand-kept
//! list: every configuration struct denies unknown fields, so deserializing a table that holds
//! one probe key fails with serde's "unknown field `…`, expected one of `a`, `b`, …", which
//! names every field the struct accepts (renamed ones such as `for` and `match` included, and
//! optional ones that a serialized default would leave out). A field is a nested table when a
//! probe table in its place is refused the same way, an array of tables when a probe array is.
//!
//! In the reference, each part (`## Forecaster: …presage.toml…`, `## Agent: …presage-agent.toml…`)
//! has a heading per table in TOML syntax (`### [server]`, `### [[rules]]`,
//! `#### [receivers.email]`), each followed by a table whose header is
//! `| key | type | default | meaning |` and whose first cell is the key in backticks. The test
//! checks that:
//!
//! - every key the structs accept is documented, and every documented key exists, with the
//!   right shape (`[…]` for a table, `[[…]]` for an array of tables);
//! - every default written as a TOML literal in backticks is the real default (it deserializes
//!   to the same configuration as leaving the key out), `required` keys are required, and keys
//!   of the plain sections with a concrete default show it as such a literal;
//! - every `toml` example of a part is a valid configuration of that binary;
//! - the loader knows every top-level section the structs have.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use presage_config::{AgentConfig, Document, ForecasterConfig};
use serde::Serialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// A key no configuration struct has.
const PROBE: &str = "zz_reference_probe";

/// The header row of a key table.
const KEY_TABLE_HEADER: [&str; 4] = ["key", "type", "default", "meaning"];

/// What a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A value: a string, a number, a list of values, a map of free-form keys.
    Leaf,
    /// A table whose keys are fields of a struct.
    Table,
    /// An array of such tables.
    ArrayOfTables,
}

/// Every key path a document type accepts (`server.http`, `receivers.email.smtp`; array
/// elements are not marked), with its shape.
type Keys = BTreeMap<String, Shape>;

/// One binary's configuration: its document type and what the reference says about it.
trait Part: Document + Serialize + PartialEq + Debug {
    /// The part's name in messages.
    const NAME: &'static str;
    /// A minimal entry (an inline table with the required keys) of each array of tables, for
    /// checking the defaults of their keys. Arrays without one are checked for their keys only.
    fn fixtures() -> BTreeMap<&'static str, &'static str>;
    /// Parses and validates a whole document.
    fn load(source: &str) -> Result<Self, String>;
}

impl Part for ForecasterConfig {
    const NAME: &'static str = "forecaster";

    fn fixtures() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            (
                "backfill",
                r#"{ prometheus = "http://prometheus:9090", match = "up" }"#,
            ),
            ("rules", r#"{ name = "r", kind = "anomaly" }"#),
            (
                "receivers",
                // Every kind at once: the shape allows it (validation, not run here, does not).
                r#"{ name = "r",
                    email = { smtp = "mail:25", from = "a@example.com", to = ["b@example.com"], password = {} },
                    webhook = { url = "http://hook:8080/", hmac_secret = {} },
                    alertmanager = { urls = ["http://am:9093"] },
                    console = {} }"#,
            ),
            ("routes", r#"{ receivers = ["r"] }"#),
            ("inhibit", r#"{ source = "{}", target = "{}" }"#),
            ("remediations", r#"{ metric = "m", text = "t" }"#),
        ])
    }

    fn load(source: &str) -> Result<Self, String> {
        Self::from_toml(source, "example").map_err(|e| e.to_string())
    }
}

impl Part for AgentConfig {
    const NAME: &'static str = "agent";

    fn fixtures() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("scrape", r#"{ url = "http://app:8080/metrics" }"#),
            ("logs", r#"{ paths = ["/var/log/app.log"] }"#),
        ])
    }

    fn load(source: &str) -> Result<Self, String> {
        Self::from_toml(source, "example").map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// The keys the structs accept.

/// A TOML document that puts `value` at `path` (each segment a table or an array of tables).
fn document_at(path: &[(String, Shape)], value: &str) -> String {
    let Some(((first, first_shape), rest)) = path.split_first() else {
        return format!("{PROBE} = 1\n");
    };
    let mut inner = value.to_string();
    for (name, shape) in rest.iter().rev() {
        inner = match shape {
            Shape::ArrayOfTables => format!("{{ {name} = [{inner}] }}"),
            _ => format!("{{ {name} = {inner} }}"),
        };
    }
    match first_shape {
        Shape::ArrayOfTables => format!("{first} = [{inner}]\n"),
        _ => format!("{first} = {inner}\n"),
    }
}

/// What deserializing a probe table at a position says about the fields there: `Some(fields)`
/// when a struct refused the probe key, `None` when something else went wrong (the position
/// holds no struct). Panics when the probe key is accepted: every configuration struct must
/// deny unknown fields, or typos in files would be ignored.
fn fields_at<T: DeserializeOwned>(path: &[(String, Shape)]) -> Option<BTreeSet<String>> {
    let probe = format!("{{ {PROBE} = 1 }}");
    let doc = if path.is_empty() {
        format!("{PROBE} = 1\n")
    } else {
        document_at(path, &probe)
    };
    let message = match toml::from_str::<T>(&doc) {
        Ok(_) => panic!(
            "the configuration accepts the unknown key `{PROBE}` in\n{doc}\nevery configuration \
             struct needs #[serde(deny_unknown_fields)]"
        ),
        Err(e) => e.message().to_string(),
    };
    let rest = message.strip_prefix(&format!("unknown field `{PROBE}`"))?;
    // serde: ", expected `a`", ", expected `a` or `b`", ", expected one of `a`, `b`, …", or
    // ", there are no fields".
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

/// Lists every key path of `T`.
fn accepted_keys<T: DeserializeOwned>() -> Keys {
    fn walk<T: DeserializeOwned>(
        path: &mut Vec<(String, Shape)>,
        fields: &BTreeSet<String>,
        out: &mut Keys,
    ) {
        for field in fields {
            let shapes = [Shape::Table, Shape::ArrayOfTables];
            let mut found = (Shape::Leaf, BTreeSet::new());
            for shape in shapes {
                path.push((field.clone(), shape));
                let nested = fields_at::<T>(path);
                path.pop();
                if let Some(nested) = nested {
                    found = (shape, nested);
                    break;
                }
            }
            let key: Vec<&str> = path
                .iter()
                .map(|(n, _)| n.as_str())
                .chain([field.as_str()])
                .collect();
            out.insert(key.join("."), found.0);
            if found.0 != Shape::Leaf {
                path.push((field.clone(), found.0));
                walk::<T>(path, &found.1, out);
                path.pop();
            }
        }
    }
    let root = fields_at::<T>(&[]).unwrap_or_else(|| {
        panic!("the document type did not list its sections when given an unknown one")
    });
    assert!(!root.is_empty(), "no sections found");
    let mut out = Keys::new();
    walk::<T>(&mut Vec::new(), &root, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// The reference.

/// A documented key: the row's cells.
#[derive(Debug, Clone)]
struct Row {
    line: usize,
    ty: String,
    default: String,
}

/// What one part of the reference documents.
#[derive(Debug, Default)]
struct Documented {
    /// Table headings: path → (line, written as an array of tables).
    tables: BTreeMap<String, (usize, bool)>,
    /// Key rows: full path → row.
    rows: BTreeMap<String, Row>,
    /// `toml` examples: (first line, text).
    examples: Vec<(usize, String)>,
}

const REFERENCE: &str = "docs/configuration.md";

fn reference_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(REFERENCE)
}

/// Splits a table row into cells as GitHub-flavoured Markdown does: on `|` not escaped with a
/// backslash (inside code spans too), then `\|` becomes `|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|');
    let inner = inner.strip_suffix('|').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

/// The text of the first code span of `cell` when the cell starts with one.
fn leading_code(cell: &str) -> Option<&str> {
    let rest = cell.strip_prefix('`')?;
    rest.find('`').map(|end| &rest[..end])
}

/// A heading in TOML table syntax: `[a.b]` → ("a.b", false), `[[a]]` → ("a", true).
fn table_heading(text: &str) -> Option<(String, bool)> {
    let (path, array) = if let Some(rest) = text.strip_prefix("[[") {
        (rest.split_once("]]")?.0, true)
    } else {
        (text.strip_prefix('[')?.split_once(']')?.0, false)
    };
    Some((path.trim().to_string(), array))
}

/// Reads the reference: the forecaster's part and the agent's.
fn read_reference(text: &str) -> Result<BTreeMap<&'static str, Documented>, Vec<String>> {
    let mut parts: BTreeMap<&'static str, Documented> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut part: Option<&'static str> = None;
    let mut section: Option<String> = None;
    let mut in_key_table = false;
    let mut example: Option<(usize, String)> = None;
    let mut in_other_code = false;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some((start, body)) = example.as_mut() {
            if line.trim_start().starts_with("```") {
                if let Some(p) = part {
                    parts
                        .entry(p)
                        .or_default()
                        .examples
                        .push((*start, std::mem::take(body)));
                }
                example = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
            continue;
        }
        if in_other_code {
            in_other_code = !line.trim_start().starts_with("```");
            continue;
        }
        if let Some(info) = line.trim_start().strip_prefix("```") {
            if info.trim() == "toml" {
                example = Some((n + 1, String::new()));
            } else {
                in_other_code = true;
            }
            in_key_table = false;
            continue;
        }
        if line.starts_with('#') {
            in_key_table = false;
            let level = line.chars().take_while(|c| *c == '#').count();
            let title = line[level..].trim();
            if level <= 2 {
                section = None;
                part = if title.contains("presage-agent.toml") {
                    Some(AgentConfig::NAME)
                } else if title.contains("presage.toml") {
                    Some(ForecasterConfig::NAME)
                } else {
                    None
                };
                continue;
            }
            section = None;
            if let Some((path, array)) = table_heading(title) {
                match part {
                    Some(p) => {
                        let doc = parts.entry(p).or_default();
                        if doc.tables.insert(path.clone(), (n, array)).is_some() {
                            errors.push(format!("{REFERENCE}:{n}: table `{path}` is documented twice"));
                        }
                        section = Some(path);
                    }
                    None => errors.push(format!(
                        "{REFERENCE}:{n}: table heading outside the forecaster's and the agent's parts"
                    )),
                }
            }
            continue;
        }
        if !line.trim_start().starts_with('|') {
            in_key_table = false;
            continue;
        }
        let row = cells(line);
        if row == KEY_TABLE_HEADER {
            in_key_table = true;
            if section.is_none() || part.is_none() {
                errors.push(format!(
                    "{REFERENCE}:{n}: a key table must follow a table heading such as `### [server]`"
                ));
            }
            continue;
        }
        if !in_key_table
            || row
                .iter()
                .all(|c| c.chars().all(|c| matches!(c, '-' | ':' | ' ')))
        {
            continue;
        }
        let (Some(p), Some(sec)) = (part, &section) else {
            continue;
        };
        if row.len() != KEY_TABLE_HEADER.len() {
            errors.push(format!(
                "{REFERENCE}:{n}: expected 4 cells, found {}",
                row.len()
            ));
            continue;
        }
        let Some(key) = leading_code(&row[0]) else {
            errors.push(format!(
                "{REFERENCE}:{n}: the key cell must start with the key in backticks"
            ));
            continue;
        };
        let path = format!("{sec}.{key}");
        let entry = Row {
            line: n,
            ty: row[1].clone(),
            default: row[2].clone(),
        };
        if parts
            .entry(p)
            .or_default()
            .rows
            .insert(path.clone(), entry)
            .is_some()
        {
            errors.push(format!("{REFERENCE}:{n}: `{path}` is documented twice"));
        }
    }
    if errors.is_empty() {
        Ok(parts)
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

/// The first segment of a path is an array of tables.
fn in_array(keys: &Keys, path: &str) -> bool {
    let first = path.split('.').next().unwrap_or(path);
    keys.get(first) == Some(&Shape::ArrayOfTables)
}

/// Keys accepted but not documented, keys documented but not accepted, and shapes that
/// disagree.
fn check_keys(name: &str, keys: &Keys, doc: &Documented, errors: &mut Vec<String>) {
    for (path, shape) in keys {
        let row = doc.rows.contains_key(path);
        let heading = doc.tables.get(path);
        let ok = match shape {
            Shape::Leaf => row,
            Shape::Table | Shape::ArrayOfTables => row || heading.is_some(),
        };
        if !ok {
            let how = match shape {
                Shape::Leaf => "a row".to_string(),
                Shape::Table => format!("a `[{path}]` heading or a row"),
                Shape::ArrayOfTables => format!("a `[[{path}]]` heading"),
            };
            errors.push(format!(
                "{name}: `{path}` is accepted but not documented (add {how})"
            ));
        }
    }
    for (path, (line, array)) in &doc.tables {
        match keys.get(path) {
            None => errors.push(format!(
                "{REFERENCE}:{line}: `{path}` is not a table of the {name}'s configuration"
            )),
            Some(Shape::Leaf) => errors.push(format!(
                "{REFERENCE}:{line}: `{path}` is a value, not a table"
            )),
            Some(Shape::Table) if *array => errors.push(format!(
                "{REFERENCE}:{line}: `{path}` is a table: write `[{path}]`"
            )),
            Some(Shape::ArrayOfTables) if !*array => errors.push(format!(
                "{REFERENCE}:{line}: `{path}` is an array of tables: write `[[{path}]]`"
            )),
            _ => {}
        }
    }
    for (path, row) in &doc.rows {
        if !keys.contains_key(path) {
            errors.push(format!(
                "{REFERENCE}:{}: `{path}` is not a key of the {name}'s configuration",
                row.line
            ));
        }
        if row.ty.is_empty() {
            errors.push(format!("{REFERENCE}:{}: `{path}` has no type", row.line));
        }
    }
}

/// Follows `segments` into `table`, creating tables on the way.
fn table_at<'a>(table: &'a mut Table, segments: &[&str]) -> Option<&'a mut Table> {
    let mut t = table;
    for s in segments {
        t = t
            .entry(s.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()?;
    }
    Some(t)
}

/// The value at `segments` in a serialized configuration (arrays: their first element).
fn value_at<'a>(value: &'a Value, segments: &[&str]) -> Option<&'a Value> {
    let mut v = value;
    for s in segments {
        v = v.get(s)?;
        if let Value::Array(items) = v
            && items.first().is_some_and(Value::is_table)
        {
            v = items.first()?;
        }
    }
    Some(v)
}

/// Parses a TOML value written inline (`{ a = 1 }`, `"10s"`, `[]`).
fn inline_value(text: &str) -> Result<Value, String> {
    let mut t: Table =
        toml::from_str(&format!("v = {text}")).map_err(|e| e.message().to_string())?;
    t.remove("v").ok_or_else(|| "no value".to_string())
}

/// Parses an inline table.
fn inline_table(text: &str) -> Result<Table, String> {
    match inline_value(text)? {
        Value::Table(t) => Ok(t),
        other => Err(format!("expected an inline table, found {other}")),
    }
}

/// Deserializes a document given as a table.
fn parse<T: DeserializeOwned>(table: &Table) -> Result<T, String> {
    let text = toml::to_string(table).map_err(|e| e.to_string())?;
    toml::from_str(&text).map_err(|e| format!("{}\nin\n{text}", e.message()))
}

/// Where a documented key goes in a test document: the document, and the path of the table
/// that holds the key (inside the first element when the key is in an array of tables).
struct Slot<'a> {
    base: Table,
    array: Option<&'a str>,
    parents: Vec<&'a str>,
    key: &'a str,
}

impl Slot<'_> {
    /// A copy of the document with the key set to `value`, or removed (`None`).
    fn with(&self, value: Option<Value>) -> Option<Table> {
        let mut doc = self.base.clone();
        let root = match self.array {
            Some(name) => doc
                .get_mut(name)?
                .as_array_mut()?
                .first_mut()?
                .as_table_mut()?,
            None => &mut doc,
        };
        let table = table_at(root, &self.parents)?;
        match value {
            Some(v) => table.insert(self.key.to_string(), v),
            None => table.remove(self.key),
        };
        Some(doc)
    }
}

/// Defaults: literals are the real defaults, `required` keys are exactly the required ones,
/// and concrete defaults are written as literals. Keys of the plain sections are checked
/// against an empty document, keys of arrays of tables against the part's fixture entry.
fn check_defaults<T: Part>(keys: &Keys, doc: &Documented, errors: &mut Vec<String>) {
    let fixtures = T::fixtures();
    for (path, row) in &doc.rows {
        if keys.get(path) != Some(&Shape::Leaf) {
            continue;
        }
        let at = format!("{REFERENCE}:{}: `{path}`", row.line);
        let segments: Vec<&str> = path.split('.').collect();
        let Some((key, parents)) = segments.split_last() else {
            continue;
        };
        let slot = if in_array(keys, path) {
            let Some(fixture) = fixtures.get(segments[0]) else {
                continue;
            };
            let entry = inline_table(fixture)
                .unwrap_or_else(|e| panic!("the `{}` fixture: {e}", segments[0]));
            let mut base = Table::new();
            base.insert(
                segments[0].to_string(),
                Value::Array(vec![Value::Table(entry)]),
            );
            Slot {
                base,
                array: Some(segments[0]),
                parents: parents[1..].to_vec(),
                key,
            }
        } else {
            Slot {
                base: Table::new(),
                array: None,
                parents: parents.to_vec(),
                key,
            }
        };
        let base_cfg: T = match parse(&slot.base) {
            Ok(cfg) => cfg,
            Err(e) => {
                errors.push(format!(
                    "{at}: the `{}` fixture of this test does not parse: {e}",
                    segments[0]
                ));
                continue;
            }
        };
        let serialized = Value::try_from(&base_cfg).expect("a configuration serializes");
        let present = value_at(&serialized, &segments).is_some();
        // Required: the fixture has the key, and leaving it out is a "missing field" error.
        let required = present
            && slot.with(None).is_some_and(|without| {
                parse::<T>(&without).is_err_and(|e| e.contains(&format!("missing field `{key}`")))
            });
        let default = row.default.trim();
        if default == "required" {
            if !required {
                errors.push(format!(
                    "{at}: documented as required, but it is not (or the `{}` fixture of this \
                     test lacks it)",
                    segments[0]
                ));
            }
        } else if required {
            errors.push(format!(
                "{at}: is required: write `required` as its default"
            ));
        } else if let Some(literal) = leading_code(default) {
            let value = match inline_value(literal) {
                Ok(v) => v,
                Err(e) => {
                    errors.push(format!(
                        "{at}: the default `{literal}` is not a TOML value: {e}"
                    ));
                    continue;
                }
            };
            match slot.with(Some(value)).map(|d| parse::<T>(&d)) {
                Some(Ok(cfg)) if cfg == base_cfg => {}
                Some(Ok(_)) => errors.push(format!(
                    "{at}: the documented default `{literal}` is not the default"
                )),
                Some(Err(e)) => errors.push(format!(
                    "{at}: the documented default `{literal}` does not parse: {e}"
                )),
                None => {}
            }
        } else if present {
            errors.push(format!(
                "{at}: has a default; write it as a TOML literal in backticks, not `{default}`"
            ));
        }
    }
}

/// Every example of the part is a valid configuration, and every key in it is known.
fn check_examples<T: Part>(keys: &Keys, doc: &Documented, errors: &mut Vec<String>) {
    if doc.examples.is_empty() {
        errors.push(format!(
            "{REFERENCE}: the {} part has no `toml` example",
            T::NAME
        ));
    }
    for (line, text) in &doc.examples {
        match T::load(text) {
            Ok(cfg) => {
                let value = Value::try_from(&cfg).expect("a configuration serializes");
                for path in serialized_paths(keys, &value) {
                    if !keys.contains_key(&path) {
                        errors.push(format!(
                            "{REFERENCE}:{line}: the example sets `{path}`, which the key list does not have"
                        ));
                    }
                }
            }
            Err(e) => errors.push(format!(
                "{REFERENCE}:{line}: this {} example is not a valid configuration:\n{e}",
                T::NAME
            )),
        }
    }
}

/// The key paths a serialized configuration holds, descending into tables the key list knows as
/// tables (maps of free-form keys are values).
fn serialized_paths(keys: &Keys, value: &Value) -> BTreeSet<String> {
    fn walk(keys: &Keys, prefix: &str, table: &Table, out: &mut BTreeSet<String>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match (keys.get(&path), v) {
                (Some(Shape::Table), Value::Table(t)) => walk(keys, &path, t, out),
                (Some(Shape::ArrayOfTables), Value::Array(items)) => {
                    for item in items {
                        if let Value::Table(t) = item {
                            walk(keys, &path, t, out);
                        }
                    }
                }
                _ => {}
            }
            out.insert(path);
        }
    }
    let mut out = BTreeSet::new();
    if let Value::Table(t) = value {
        walk(keys, "", t, &mut out);
    }
    out
}

fn check_part<T: Part>(doc: Option<&Documented>) -> Vec<String> {
    let keys = accepted_keys::<T>();
    let mut errors = Vec::new();
    let Some(doc) = doc else {
        return vec![format!(
            "{REFERENCE}: no part for the {} (an `##` heading naming its file)",
            T::NAME
        )];
    };
    // The probe found at least what the defaults serialize to.
    let defaults = Value::try_from(T::default()).expect("the defaults serialize");
    for path in serialized_paths(&keys, &defaults) {
        assert!(
            keys.contains_key(&path),
            "the key list misses `{path}`, which the defaults have"
        );
    }
    check_keys(T::NAME, &keys, doc, &mut errors);
    check_defaults::<T>(&keys, doc, &mut errors);
    check_examples::<T>(&keys, doc, &mut errors);
    errors
}

fn reference() -> BTreeMap<&'static str, Documented> {
    let path = reference_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    read_reference(&text).unwrap_or_else(|errors| panic!("{}", errors.join("\n")))
}

fn assert_clean(errors: Vec<String>) {
    assert!(
        errors.is_empty(),
        "{REFERENCE} and the configuration structs disagree ({} problems):\n{}",
        errors.len(),
        errors.join("\n")
    );
}

#[test]
fn forecaster_reference_matches_the_structs() {
    assert_clean(check_part::<ForecasterConfig>(
        reference().get(ForecasterConfig::NAME),
    ));
}

#[test]
fn agent_reference_matches_the_structs() {
    assert_clean(check_part::<AgentConfig>(
        reference().get(AgentConfig::NAME),
    ));
}

#[test]
fn the_loader_knows_every_section_of_the_structs() {
    fn sections<T: Document>() -> (BTreeSet<String>, BTreeSet<String>) {
        let keys = accepted_keys::<T>();
        let top: BTreeSet<String> = keys.keys().filter(|k| !k.contains('.')).cloned().collect();
        let loader: BTreeSet<String> = T::SECTIONS.iter().map(|s| s.to_string()).collect();
        (top, loader)
    }
    let (top, loader) = sections::<ForecasterConfig>();
    assert_eq!(
        top, loader,
        "ForecasterConfig's fields and Document::SECTIONS differ"
    );
    let (top, loader) = sections::<AgentConfig>();
    assert_eq!(
        top, loader,
        "AgentConfig's fields and Document::SECTIONS differ"
    );
}

#[test]
fn the_probe_lists_nested_tables_and_renamed_keys() {
    let keys = accepted_keys::<ForecasterConfig>();
    assert_eq!(keys.get("server"), Some(&Shape::Table));
    assert_eq!(keys.get("rules"), Some(&Shape::ArrayOfTables));
    assert_eq!(keys.get("rules.for"), Some(&Shape::Leaf));
    assert_eq!(keys.get("rules.labels"), Some(&Shape::Leaf));
    assert_eq!(keys.get("routes.match"), Some(&Shape::Leaf));
    assert_eq!(keys.get("receivers.email"), Some(&Shape::Table));
    assert_eq!(
        keys.get("receivers.email.password.file"),
        Some(&Shape::Leaf)
    );
    assert_eq!(
        keys.get("receivers.webhook.hmac_secret"),
        Some(&Shape::Table)
    );
    let agent = accepted_keys::<AgentConfig>();
    assert_eq!(agent.get("agent.endpoint"), Some(&Shape::Leaf));
    assert_eq!(agent.get("logs"), Some(&Shape::ArrayOfTables));
    assert_eq!(agent.get("logs.attributes"), Some(&Shape::Leaf));
}

#[test]
fn markdown_rows_split_like_github() {
    assert_eq!(
        cells(r#"| `match` | selector | `'{severity=~"a\|b"}'` | x |"#),
        vec!["`match`", "selector", r#"`'{severity=~"a|b"}'`"#, "x"]
    );
    assert_eq!(
        table_heading("[[rules]]"),
        Some(("rules".to_string(), true))
    );
    assert_eq!(
        table_heading("[receivers.email] (SMTP)"),
        Some(("receivers.email".to_string(), false))
    );
    assert_eq!(table_heading("Units"), None);
}

//! A parser for the Prometheus text exposition format (version 0.0.4).
//!
//! Why our own: the crates on crates.io either are regex based and mis-handle label values
//! containing `}` or escapes (`prometheus-parse` 0.2), or pull in a large dependency tree for
//! OpenMetrics we do not need. The format is small and precisely specified; this parser covers
//! it completely — `# HELP` (with its escapes), `# TYPE`, label values with `\\`, `\"` and
//! `\n` escapes, trailing commas, the quoted UTF-8 metric names of newer exporters
//! (`{"my.metric",a="b"}`), `NaN`/`±Inf`, optional millisecond timestamps, and the grouping of
//! `_bucket`/`_sum`/`_count` (histograms) and quantile/`_sum`/`_count` (summaries) samples
//! into their family.
//!
//! A malformed line is reported and skipped; the rest of the scrape is kept.

use std::collections::HashMap;
use std::fmt;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

/// The type a family was declared with by `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricType {
    /// A monotonic counter.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Cumulative `_bucket{le}` counts with `_sum` and `_count`.
    Histogram,
    /// `{quantile}` values with `_sum` and `_count`.
    Summary,
    /// No `# TYPE` line, or `untyped`/`unknown`.
    Untyped,
}

impl MetricType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => Self::Counter,
            "gauge" => Self::Gauge,
            "histogram" | "gaugehistogram" => Self::Histogram,
            "summary" => Self::Summary,
            "untyped" | "unknown" => Self::Untyped,
            _ => return None,
        })
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The sample's own name (`http_request_duration_seconds_bucket`).
    pub(crate) name: String,
    /// Labels in the order written, values unescaped.
    pub(crate) labels: Vec<(String, String)>,
    /// The value; may be NaN or ±Inf.
    pub(crate) value: f64,
    /// The exposed timestamp in milliseconds since the epoch, if any.
    pub(crate) timestamp_ms: Option<i64>,
}

/// The samples of one metric family.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Family {
    /// The family name (for a histogram `foo`, its samples are `foo_bucket`, `foo_sum`, …).
    pub(crate) name: String,
    /// The declared type.
    pub(crate) kind: MetricType,
    /// The `# HELP` text, unescaped.
    pub(crate) help: Option<String>,
    /// The samples, in the order exposed.
    pub(crate) samples: Vec<Sample>,
}

/// A line that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParseError {
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong.
    pub(crate) message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What a scrape body held.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Parsed {
    /// Families in the order they first appeared.
    pub(crate) families: Vec<Family>,
    /// Lines skipped as malformed.
    pub(crate) errors: Vec<ParseError>,
}

impl Parsed {
    /// Number of samples across all families.
    pub(crate) fn sample_count(&self) -> usize {
        self.families.iter().map(|f| f.samples.len()).sum()
    }
}

/// One scrape of a target as the agent sends it, from the body to the OTLP export requests:
/// the body parsed, converted with the target's configured `labels` and `honor_timestamps`,
/// `up` added, and the result split into requests of at most `max_points` data points under
/// `resource` attributes. Returns the requests and the number of malformed lines.
///
/// Public for the fuzz targets (`fuzz/`) and benchmarks; not a stable interface.
#[doc(hidden)]
pub fn scrape_to_requests(
    body: &str,
    labels: &[(String, String)],
    honor_timestamps: bool,
    resource: &[(String, String)],
    max_points: usize,
    scrape_ns: u64,
) -> (Vec<ExportMetricsServiceRequest>, usize) {
    let parsed = parse(body);
    let conversion = super::Conversion {
        labels: labels.to_vec(),
        honor_timestamps,
    };
    let mut metrics = super::convert(&parsed, &conversion, scrape_ns).metrics;
    metrics.push(super::up(true, scrape_ns));
    let requests =
        crate::otlp::metrics_requests(&crate::otlp::resource(resource), metrics, max_points)
            .into_iter()
            .map(|(req, _)| req)
            .collect();
    (requests, parsed.errors.len())
}

/// Parses a text-format body.
pub(crate) fn parse(text: &str) -> Parsed {
    let mut out = Parsed::default();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (n, raw) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = raw.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start_matches([' ', '\t']);
            let (keyword, rest) = split_token(comment);
            match keyword {
                "HELP" | "TYPE" => {
                    let (name, rest) = split_token(rest);
                    if !is_metric_name(name) {
                        out.errors.push(ParseError {
                            line: line_no,
                            message: format!("invalid metric name `{name}` in # {keyword}"),
                        });
                        continue;
                    }
                    let i = family_index(&mut out.families, &mut index, name);
                    if keyword == "HELP" {
                        out.families[i].help = Some(unescape_help(rest));
                    } else {
                        match MetricType::parse(rest.trim()) {
                            Some(kind) => out.families[i].kind = kind,
                            None => out.errors.push(ParseError {
                                line: line_no,
                                message: format!("unknown metric type `{}`", rest.trim()),
                            }),
                        }
                    }
                }
                _ => {} // an ordinary comment
            }
            continue;
        }
        match parse_sample(line) {
            Ok(sample) => {
                let i = owner(&out.families, &index, &sample.name)
                    .unwrap_or_else(|| family_index(&mut out.families, &mut index, &sample.name));
                out.families[i].samples.push(sample);
            }
            Err(message) => out.errors.push(ParseError {
                line: line_no,
                message,
            }),
        }
    }
    out
}

fn family_index(
    families: &mut Vec<Family>,
    index: &mut HashMap<String, usize>,
    name: &str,
) -> usize {
    *index.entry(name.to_string()).or_insert_with(|| {
        families.push(Family {
            name: name.to_string(),
            kind: MetricType::Untyped,
            help: None,
            samples: Vec::new(),
        });
        families.len() - 1
    })
}

/// The family a sample belongs to: its own name, or the histogram/summary/counter whose
/// suffixed sample it is.
fn owner(families: &[Family], index: &HashMap<String, usize>, name: &str) -> Option<usize> {
    if let Some(&i) = index.get(name) {
        return Some(i);
    }
    const SUFFIXES: [(&str, &[MetricType]); 5] = [
        ("_bucket", &[MetricType::Histogram]),
        ("_sum", &[MetricType::Histogram, MetricType::Summary]),
        ("_count", &[MetricType::Histogram, MetricType::Summary]),
        (
            "_created",
            &[
                MetricType::Histogram,
                MetricType::Summary,
                MetricType::Counter,
            ],
        ),
        ("_total", &[MetricType::Counter]),
    ];
    SUFFIXES.iter().find_map(|(suffix, kinds)| {
        let base = name.strip_suffix(suffix)?;
        let &i = index.get(base)?;
        kinds.contains(&families[i].kind).then_some(i)
    })
}

fn split_token(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A cursor over one sample line.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
        &self.s[start..self.pos]
    }

    fn expect(&mut self, want: char) -> Result<(), String> {
        match self.bump() {
            Some(c) if c == want => Ok(()),
            Some(c) => Err(format!("expected `{want}`, found `{c}`")),
            None => Err(format!("expected `{want}`, found the end of the line")),
        }
    }

    /// A double-quoted string with `\\`, `\"` and `\n` escapes; the opening quote is next.
    fn quoted(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err("unterminated quoted string".to_string()),
                Some('"') => return Ok(out),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('\\') => out.push('\\'),
                    Some('"') => out.push('"'),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => return Err("unterminated quoted string".to_string()),
                },
                Some(c) => out.push(c),
            }
        }
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let mut cur = Cursor { s: line, pos: 0 };
    let mut name = cur.take_while(is_name_char).to_string();
    let mut labels: Vec<(String, String)> = Vec::new();
    if !name.is_empty() && !is_metric_name(&name) {
        return Err(format!("invalid metric name `{name}`"));
    }
    cur.skip_blanks();
    if cur.peek() == Some('{') {
        cur.bump();
        loop {
            cur.skip_blanks();
            match cur.peek() {
                Some('}') => {
                    cur.bump();
                    break;
                }
                Some('"') => {
                    // A quoted name: the metric name when it stands alone, else a label name.
                    let quoted = cur.quoted()?;
                    cur.skip_blanks();
                    if cur.peek() == Some('=') {
                        cur.bump();
                        cur.skip_blanks();
                        let value = cur.quoted()?;
                        push_label(&mut labels, quoted, value)?;
                    } else if name.is_empty() {
                        name = quoted;
                    } else {
                        return Err(format!("a second metric name `{quoted}` in braces"));
                    }
                }
                Some(_) => {
                    let label = cur.take_while(is_name_char);
                    if !is_label_name(label) {
                        return Err(match cur.peek() {
                            Some(c) if label.is_empty() => {
                                format!("expected a label name, found `{c}`")
                            }
                            _ => format!("invalid label name `{label}`"),
                        });
                    }
                    cur.skip_blanks();
                    cur.expect('=')?;
                    cur.skip_blanks();
                    let value = cur.quoted()?;
                    push_label(&mut labels, label.to_string(), value)?;
                }
                None => return Err("unterminated label set".to_string()),
            }
            cur.skip_blanks();
            match cur.peek() {
                Some(',') => {
                    cur.bump();
                }
                Some('}') => {}
                Some(c) => return Err(format!("expected `,` or `}}` after a label, found `{c}`")),
                None => return Err("unterminated label set".to_string()),
            }
        }
    }
    if name.is_empty() {
        return Err("a sample line needs a metric name".to_string());
    }
    cur.skip_blanks();
    let value_text = cur.take_while(|c| c != ' ' && c != '\t');
    if value_text.is_empty() {
        return Err(format!("`{name}` has no value"));
    }
    let value = parse_float(value_text).ok_or_else(|| format!("invalid value `{value_text}`"))?;
    cur.skip_blanks();
    let ts_text = cur.take_while(|c| c != ' ' && c != '\t');
    let timestamp_ms = if ts_text.is_empty() {
        None
    } else {
        Some(
            ts_text
                .parse::<i64>()
                .map_err(|_| format!("invalid timestamp `{ts_text}`"))?,
        )
    };
    cur.skip_blanks();
    if let Some(c) = cur.peek() {
        return Err(format!("unexpected `{c}` after the timestamp"));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

fn push_label(
    labels: &mut Vec<(String, String)>,
    name: String,
    value: String,
) -> Result<(), String> {
    if labels.iter().any(|(n, _)| *n == name) {
        return Err(format!("label `{name}` appears twice"));
    }
    labels.push((name, value));
    Ok(())
}

/// Go's `strconv.ParseFloat` spellings as Prometheus writes them.
fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" | "nan" => Some(f64::NAN),
        _ => {
            let lower = s.to_ascii_lowercase();
            if lower.contains("inf") || lower.contains("nan") {
                return None;
            }
            s.parse::<f64>().ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    /// The example from the Prometheus documentation of the format.
    const DOC_EXAMPLE: &str = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# Escaping in label values:
msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9

# Minimalistic line:
metric_without_timestamp_and_labels 12.47

# A weird metric from before the epoch:
something_weird{problem="division by zero"} +Inf -3982045

# A histogram, which has a pretty complex representation in the text format:
# HELP http_request_duration_seconds A histogram of the request duration.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="0.2"} 100392
http_request_duration_seconds_bucket{le="0.5"} 129389
http_request_duration_seconds_bucket{le="1"} 133988
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320

# Finally a summary, which has a complex representation, too:
# HELP rpc_duration_seconds A summary of the RPC duration in seconds.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.01"} 3102
rpc_duration_seconds{quantile="0.05"} 3272
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.9"} 9001
rpc_duration_seconds{quantile="0.99"} 76656
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#;

    #[test]
    fn parses_the_documentation_example() {
        let p = parse(DOC_EXAMPLE);
        assert_eq!(p.errors, vec![]);
        let names: Vec<(&str, MetricType, usize)> = p
            .families
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.samples.len()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("http_requests_total", MetricType::Counter, 2),
                ("msdos_file_access_time_seconds", MetricType::Untyped, 1),
                (
                    "metric_without_timestamp_and_labels",
                    MetricType::Untyped,
                    1
                ),
                ("something_weird", MetricType::Untyped, 1),
                ("http_request_duration_seconds", MetricType::Histogram, 8),
                ("rpc_duration_seconds", MetricType::Summary, 7),
            ]
        );
        let reqs = &p.families[0];
        assert_eq!(
            reqs.help.as_deref(),
            Some("The total number of HTTP requests.")
        );
        assert_eq!(
            reqs.samples[1],
            Sample {
                name: "http_requests_total".into(),
                labels: labels(&[("method", "post"), ("code", "400")]),
                value: 3.0,
                timestamp_ms: Some(1_395_066_363_000),
            }
        );
        let msdos = &p.families[1].samples[0];
        assert_eq!(
            msdos.labels,
            labels(&[
                ("path", r"C:\DIR\FILE.TXT"),
                ("error", "Cannot find file:\n\"FILE.TXT\"")
            ])
        );
        assert_eq!(msdos.value, 1.458255915e9);
        let weird = &p.families[3].samples[0];
        assert_eq!(weird.value, f64::INFINITY);
        assert_eq!(weird.timestamp_ms, Some(-3_982_045));
        let hist = &p.families[4];
        assert_eq!(hist.samples[5].labels, labels(&[("le", "+Inf")]));
        assert_eq!(hist.samples[6].name, "http_request_duration_seconds_sum");
        let summary = &p.families[5];
        assert_eq!(summary.samples[5].value, 1.7560473e7);
        assert_eq!(summary.samples[6].name, "rpc_duration_seconds_count");
    }

    #[test]
    fn label_values_may_hold_braces_commas_and_unicode() {
        let p = parse("a{x=\"}{,=\",y=\"héllo wörld\",} 1\n");
        assert_eq!(p.errors, vec![]);
        assert_eq!(
            p.families[0].samples[0].labels,
            labels(&[("x", "}{,="), ("y", "héllo wörld")])
        );
    }

    #[test]
    fn blanks_are_allowed_around_tokens() {
        let p = parse("  a { x = \"1\" , y=\"2\" }   5   17  \n\tb\t3\n");
        assert_eq!(p.errors, vec![]);
        let a = &p.families[0].samples[0];
        assert_eq!(a.labels, labels(&[("x", "1"), ("y", "2")]));
        assert_eq!((a.value, a.timestamp_ms), (5.0, Some(17)));
        assert_eq!(p.families[1].samples[0].value, 3.0);
    }

    #[test]
    fn special_values() {
        let p = parse("a NaN\nb -Inf\nc 1e-3\nd -0.5\ne 0x1A\n");
        let v: Vec<f64> = p.families.iter().map(|f| f.samples[0].value).collect();
        assert!(v[0].is_nan());
        assert_eq!(v[1], f64::NEG_INFINITY);
        assert_eq!(v[2], 0.001);
        assert_eq!(v[3], -0.5);
        // Hexadecimal is not a value Prometheus exposes; it is refused, not misread.
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].line, 5);
    }

    #[test]
    fn malformed_lines_are_reported_and_skipped() {
        let body = "ok 1\nbad{a=\"x} 2\nbad2{a=1} 3\nbad3 {a=\"1\" b=\"2\"} 4\nno_value\n9starts_with_digit 1\nbad4{a=\"1\",a=\"2\"} 1\nbad5 1 2 3\nbad6 1 notatime\nfine{} 7\n";
        let p = parse(body);
        let lines: Vec<usize> = p.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5, 6, 7, 8, 9], "{:#?}", p.errors);
        let kept: Vec<&str> = p.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(kept, vec!["ok", "fine"]);
        assert!(
            p.errors[5].message.contains("appears twice"),
            "{:?}",
            p.errors[5]
        );
    }

    #[test]
    fn help_escapes_and_unknown_types() {
        let p = parse(
            "# HELP a line one\\nline two \\\\ done\n# TYPE a gauge\n# TYPE b bogus\na 1\n# just a comment\n#\n",
        );
        assert_eq!(
            p.families[0].help.as_deref(),
            Some("line one\nline two \\ done")
        );
        assert_eq!(p.families[0].kind, MetricType::Gauge);
        assert_eq!(p.errors.len(), 1);
        assert!(p.errors[0].message.contains("bogus"));
    }

    #[test]
    fn quoted_utf8_metric_names() {
        let p = parse("{\"my.metric\",\"some.label\"=\"v\",b=\"c\"} 2\n");
        assert_eq!(p.errors, vec![]);
        let f = &p.families[0];
        assert_eq!(f.name, "my.metric");
        assert_eq!(
            f.samples[0].labels,
            labels(&[("some.label", "v"), ("b", "c")])
        );
    }

    #[test]
    fn untyped_suffixes_stay_separate_families() {
        // Without # TYPE, `_sum` and `_count` are ordinary series.
        let p = parse("x_sum 1\nx_count 2\n# TYPE y counter\ny_total 3\ny_created 4\n");
        let names: Vec<&str> = p.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, vec!["x_sum", "x_count", "y"]);
        assert_eq!(p.families[2].samples.len(), 2);
        assert_eq!(p.sample_count(), 4);
    }

    #[test]
    fn crlf_line_endings() {
        let p = parse("# TYPE a gauge\r\na{b=\"c\"} 1\r\n");
        assert_eq!(p.errors, vec![]);
        assert_eq!(p.families[0].samples[0].value, 1.0);
    }
}

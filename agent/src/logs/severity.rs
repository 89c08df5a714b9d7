//! Severity of a log line: a JSON `level`/`severity` field, a logfmt `level=`, or a leading
//! level word (`ERROR`, `[warn]`, `INFO:`, glog's `E0102`).

use serde::Deserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};

/// A detected severity: the OTLP severity number and its canonical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Severity {
    /// OTLP `SeverityNumber` (TRACE 1, DEBUG 5, INFO 9, WARN 13, ERROR 17, FATAL 21).
    pub(crate) number: i32,
    /// `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR` or `FATAL`.
    pub(crate) text: &'static str,
}

const TRACE: Severity = Severity {
    number: 1,
    text: "TRACE",
};
const DEBUG: Severity = Severity {
    number: 5,
    text: "DEBUG",
};
const INFO: Severity = Severity {
    number: 9,
    text: "INFO",
};
const WARN: Severity = Severity {
    number: 13,
    text: "WARN",
};
const ERROR: Severity = Severity {
    number: 17,
    text: "ERROR",
};
const FATAL: Severity = Severity {
    number: 21,
    text: "FATAL",
};

/// JSON and logfmt keys that carry the level, in order of preference.
const LEVEL_KEYS: [&str; 7] = [
    "level",
    "severity",
    "lvl",
    "loglevel",
    "log.level",
    "levelname",
    "severity_text",
];

/// The severity of `line`, when it says.
pub(crate) fn detect(line: &str) -> Option<Severity> {
    let trimmed = line.trim_start();
    if trimmed.starts_with('{') {
        if let Some(s) = from_json(trimmed) {
            return Some(s);
        }
    } else if let Some(s) = from_logfmt(trimmed) {
        return Some(s);
    }
    from_leading_words(trimmed)
}

/// A level word in any case (`warning`, `Err`, `CRITICAL`).
fn from_word(word: &str) -> Option<Severity> {
    let w = word.to_ascii_lowercase();
    Some(match w.as_str() {
        "trace" | "trc" => TRACE,
        "debug" | "dbg" | "debu" => DEBUG,
        "info" | "inf" | "information" | "informational" | "notice" => INFO,
        "warn" | "wrn" | "warning" => WARN,
        "error" | "err" | "eror" => ERROR,
        "fatal" | "ftl" | "crit" | "critical" | "panic" | "emerg" | "emergency" | "alert" => FATAL,
        _ => return None,
    })
}

/// Numeric levels of bunyan/pino (10 trace … 60 fatal).
fn from_number(n: f64) -> Option<Severity> {
    Some(match n as i64 {
        10 => TRACE,
        20 => DEBUG,
        30 => INFO,
        40 => WARN,
        50 => ERROR,
        60 => FATAL,
        _ => return None,
    })
}

fn from_json(line: &str) -> Option<Severity> {
    struct Level;
    impl<'de> Visitor<'de> for Level {
        type Value = Option<Severity>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut best: Option<(usize, Severity)> = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match LEVEL_KEYS.iter().position(|k| k.eq_ignore_ascii_case(&key)) {
                    Some(rank) => {
                        let value: serde_json::Value = map.next_value()?;
                        let sev = match &value {
                            serde_json::Value::String(s) => from_word(s.trim()),
                            serde_json::Value::Number(n) => n.as_f64().and_then(from_number),
                            _ => None,
                        };
                        if let Some(sev) = sev
                            && best.is_none_or(|(r, _)| rank < r)
                        {
                            best = Some((rank, sev));
                        }
                    }
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(best.map(|(_, s)| s))
        }
    }
    let mut de = serde_json::Deserializer::from_str(line);
    de.deserialize_map(Level).ok().flatten()
}

fn from_logfmt(line: &str) -> Option<Severity> {
    // Cheap pre-check: most lines are not logfmt.
    if !line.contains('=') {
        return None;
    }
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' && bytes[i] != b' ' {
            i += 1;
        }
        let key = &line[key_start..i];
        if i >= bytes.len() || bytes[i] != b'=' {
            continue;
        }
        i += 1;
        let value = if i < bytes.len() && bytes[i] == b'"' {
            i += 1;
            let start = i;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            let v = line.get(start..i.min(bytes.len())).unwrap_or("");
            i += 1;
            v
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b' ' {
                i += 1;
            }
            &line[start..i]
        };
        if LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            return from_word(value);
        }
    }
    None
}

fn from_leading_words(line: &str) -> Option<Severity> {
    for (i, token) in line.split_ascii_whitespace().take(4).enumerate() {
        let word = token.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if word.is_empty() {
            continue;
        }
        // The first word may be in any case (`error: disk full`), and so may a bracketed one
        // (nginx's `[error]`); other words must be upper case, so prose such as "the info
        // page" is not taken for a level.
        let upper = word.bytes().all(|b| !b.is_ascii_lowercase());
        let bracketed = token.starts_with(['[', '<']);
        if (i == 0 || upper || bracketed)
            && let Some(s) = from_word(word)
        {
            return Some(s);
        }
        // glog: `E0102 15:04:05.000000 …`
        if i == 0 && word.len() == 5 && word[1..].bytes().all(|b| b.is_ascii_digit()) {
            match &word[..1] {
                "I" => return Some(INFO),
                "W" => return Some(WARN),
                "E" => return Some(ERROR),
                "F" => return Some(FATAL),
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(line: &str) -> Option<&'static str> {
        detect(line).map(|s| s.text)
    }

    #[test]
    fn json_fields() {
        assert_eq!(
            text(r#"{"level":"error","msg":"disk full"}"#),
            Some("ERROR")
        );
        assert_eq!(text(r#"{"msg":"x","severity":"WARNING"}"#), Some("WARN"));
        assert_eq!(text(r#"{"lvl":"debug"}"#), Some("DEBUG"));
        assert_eq!(text(r#"{"log.level":"info"}"#), Some("INFO"));
        assert_eq!(text(r#"{"levelname":"CRITICAL"}"#), Some("FATAL"));
        // pino/bunyan numbers
        assert_eq!(text(r#"{"level":50,"msg":"boom"}"#), Some("ERROR"));
        assert_eq!(text(r#"{"level":30}"#), Some("INFO"));
        // `level` wins over `severity` whatever the order.
        assert_eq!(
            text(r#"{"severity":"info","nested":{"level":"x"},"level":"fatal"}"#),
            Some("FATAL")
        );
        // Escaped strings and nested values elsewhere do not confuse it.
        assert_eq!(
            text(r#"{"msg":"say \"level\":\"error\"","arr":[1,{"a":2}],"level":"warn"}"#),
            Some("WARN")
        );
        assert_eq!(text(r#"{"msg":"no level here"}"#), None);
    }

    #[test]
    fn broken_json_falls_back_to_words() {
        assert_eq!(text(r#"{"level":"error", truncated"#), None);
        assert_eq!(text("{ ERROR not json"), Some("ERROR"));
    }

    #[test]
    fn logfmt() {
        assert_eq!(
            text("ts=2024-01-01T00:00:00Z level=error msg=\"disk full\""),
            Some("ERROR")
        );
        assert_eq!(text("msg=\"level=info inside\" lvl=warn"), Some("WARN"));
        assert_eq!(
            text("time=now level=\"debug\" caller=x.go:1"),
            Some("DEBUG")
        );
        assert_eq!(text("a=b c=d"), None);
    }

    #[test]
    fn leading_words() {
        assert_eq!(text("ERROR something broke"), Some("ERROR"));
        assert_eq!(text("[WARN] low disk"), Some("WARN"));
        assert_eq!(text("INFO: started"), Some("INFO"));
        assert_eq!(text("error: cannot open"), Some("ERROR"));
        assert_eq!(
            text("2024-01-01 12:00:00,123 CRITICAL db down"),
            Some("FATAL")
        );
        assert_eq!(
            text("2024/01/01 12:00:00 [error] 31#31: worker died"),
            Some("ERROR")
        );
        assert_eq!(text("Jan  1 12:00:00 WARNING: temp high"), Some("WARN"));
        assert_eq!(
            text("E0102 15:04:05.000000    1 main.go:10] failed"),
            Some("ERROR")
        );
        assert_eq!(
            text("I0102 15:04:05.000000    1 main.go:10] ok"),
            Some("INFO")
        );
        // Prose is not a level.
        assert_eq!(text("the info page moved"), None);
        assert_eq!(text("GET /error 200"), None);
        assert_eq!(text(""), None);
    }
}

//! PromQL series selectors, parsed with promql-parser behind a guard.
//!
//! promql-parser turns the numbers of `offset` and `@` modifiers and of range and subquery
//! brackets into durations without checking their range, and panics on one too large
//! (`x offset 1e400`). A series selector never has any of them, so they are refused before the
//! text reaches the parser.

use promql_parser::parser::{self, Expr};

/// Why a selector with a modifier is refused.
pub const MODIFIERS_REFUSED: &str =
    "it is not a series selector: offset, @ and range modifiers are not supported here";

/// Parses `text` as a PromQL expression, refusing first `offset`, `@` and `[` outside label
/// matchers and quoted strings.
pub fn parse_selector_expr(text: &str) -> Result<Expr, String> {
    if has_modifier(text) {
        return Err(MODIFIERS_REFUSED.to_string());
    }
    parser::parse(text)
}

/// Whether `text` has an `offset` keyword, an `@` or a `[` outside braces and quotes.
fn has_modifier(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    let mut depth = 0usize;
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                // Backquoted strings are raw; the others take backslash escapes.
                while let Some(d) = chars.next() {
                    if d == '\\' && c != '`' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            '@' | '[' if depth == 0 => return true,
            c if depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                let mut word = String::from(c);
                while let Some(&d) = chars.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_' || d == ':') {
                        break;
                    }
                    word.push(d);
                    chars.next();
                }
                if word.eq_ignore_ascii_case("offset") {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modifiers_are_refused_before_the_parser_sees_them() {
        // Found by fuzzing: promql-parser panics converting the offset to a duration.
        let crash = "+oomeeoo offset 61e328/oe/mem oee/o unlessffs eet";
        assert_eq!(
            parse_selector_expr(crash).err().as_deref(),
            Some(MODIFIERS_REFUSED)
        );
        for text in [
            "x offset 1e400",
            "x OFFSET 5m",
            "x @ 1e400",
            "x[1e400]",
            "rate(x[5m])",
            "x[5m:1e400]",
            "{a=\"1\"} offset Inf",
        ] {
            assert!(has_modifier(text), "{text}");
            assert_eq!(
                parse_selector_expr(text).err().as_deref(),
                Some(MODIFIERS_REFUSED)
            );
        }
    }

    #[test]
    fn selectors_with_the_words_in_names_or_values_still_parse() {
        for text in [
            "offset_total",
            "x_offset{job=\"a\"}",
            "x{offset=\"5m\"}",
            "x{a=\"offset @ [1e400]\"}",
            "x{a='it\\'s [x]'}",
            "up{job=~\"node|api\",instance!=\"\"}",
        ] {
            assert!(!has_modifier(text), "{text}");
            assert!(
                matches!(parse_selector_expr(text), Ok(Expr::VectorSelector(_))),
                "{text}"
            );
        }
    }
}

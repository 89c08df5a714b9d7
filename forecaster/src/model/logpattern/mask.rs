//! Tokenising and masking of one log line, without regular expressions.
//!
//! A line is split on ASCII whitespace into tokens; variable fields inside each token are replaced
//! by a placeholder before the tree sees the token. The scanners only split at ASCII bytes, so the
//! output is valid UTF-8 whatever the input.
//!
//! Placeholders, tried in this order at the start of a word (the previous byte is not an ASCII
//! letter or digit):
//!
//! | placeholder | what | examples |
//! | --- | --- | --- |
//! | `<STR>` | a quoted string, `"…"` or `'…'`, opening a token or after one of `=:([{,` (backslash escapes honoured) | `"GET / HTTP/1.1"`, `'users'` |
//! | `<EMAIL>` | an e-mail address | `ops@example.com` |
//! | `<UUID>` | 8-4-4-4-12 hex digits | `550e8400-e29b-41d4-a716-446655440000` |
//! | `<TS>` | an ISO date or date-time, or a time of day | `2024-03-12T10:00:00.123Z`, `10:00:00.123456` |
//! | `<IP>` | IPv4 with an optional port, IPv6 | `10.0.0.7:5432`, `fe80::1` |
//! | `<HEX>` | `0x…`, or a run of 8 or more hex digits with letters and digits | `0x7f3a`, `5d78c9869d` |
//! | `<DURATION>` | a number with a time unit, Go-style compounds too | `250ms`, `1.5s`, `3m`, `1h30m` |
//! | `<NUM>` | an integer or decimal, optionally signed; a short alphabetic unit is kept | `4411`, `-1`, `3.14`, `<NUM>KB` |
//!
//! A quoted string is kept (its words tokenised like the rest) when it opens the message: when it
//! is the first token, or follows the first token that ends with `]` (the klog header
//! `I0312 10:00:00.123 1234 kubelet.go:2345] "message" key="value"`). Everywhere else a quoted
//! string is a value and becomes `<STR>`, unless a `:` follows it (a quoted key such as `{"id":`
//! is kept). Paths are not masked as a whole: they often name the
//! operation (`/api/v1/users/<NUM>`), and the numbers and ids inside them are masked anyway.

/// One token of the masked line: a byte range of the output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    /// Start offset in the masked buffer.
    pub(crate) start: u32,
    /// End offset (exclusive) in the masked buffer.
    pub(crate) end: u32,
    /// The masked token still contains an ASCII digit (such tokens route to the wildcard child).
    pub(crate) has_digit: bool,
}

const STR: &str = "<STR>";
const EMAIL: &str = "<EMAIL>";
const UUID: &str = "<UUID>";
const TS: &str = "<TS>";
const IP: &str = "<IP>";
const HEX: &str = "<HEX>";
const DURATION: &str = "<DURATION>";
const NUM: &str = "<NUM>";

#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

#[inline]
fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

#[inline]
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// True when position `i` ends a word: end of input or a byte that is not a letter or digit.
#[inline]
fn ends_word(b: &[u8], i: usize) -> bool {
    !is_alnum(at(b, i))
}

/// Count of ASCII digits from `i`, at most `max`.
#[inline]
fn digits(b: &[u8], i: usize, max: usize) -> usize {
    let mut n = 0;
    while n < max && at(b, i + n).is_ascii_digit() {
        n += 1;
    }
    n
}

#[inline]
fn hex_digits(b: &[u8], i: usize, max: usize) -> usize {
    let mut n = 0;
    while n < max && at(b, i + n).is_ascii_hexdigit() {
        n += 1;
    }
    n
}

/// Masks the first line of `line` into `out`, recording the tokens in `tokens`. Both are cleared
/// first; their capacity is reused.
pub(crate) fn mask_line(line: &str, out: &mut String, tokens: &mut Vec<Token>) {
    out.clear();
    tokens.clear();
    let b = line.as_bytes();
    let n = b.len();
    let line_has_at = b.contains(&b'@');
    let mut i = 0;
    let mut bracket_seen = false;
    // The token just before ended with the first `]` of the line.
    let mut after_header = false;
    while i < n {
        while i < n && is_space(b[i]) {
            i += 1;
        }
        if i >= n {
            break;
        }
        let out_start = out.len();
        let in_start = i;
        // Bytes of `line` from `copy_from` to `i` are still to be copied to `out`.
        let mut copy_from = i;
        let mut prev_alnum = false;
        let mut has_digit = false;
        let keep_quote = tokens.is_empty() || after_header;
        while i < n && !is_space(b[i]) {
            let c = b[i];
            let opens =
                i == in_start || matches!(b[i - 1], b'=' | b':' | b'(' | b'[' | b'{' | b',');
            let masked: Option<(usize, &'static str)> =
                if (c == b'"' || c == b'\'') && opens && !(keep_quote && i == in_start) {
                    match closing_quote(b, i) {
                        // A quoted key (`{"id":…}`) names a field: kept.
                        Some(end) if at(b, end + 1) == b':' => {
                            has_digit |= b[i..end].iter().any(u8::is_ascii_digit);
                            i = end + 1;
                            prev_alnum = false;
                            continue;
                        }
                        Some(end) => Some((end + 1 - i, STR)),
                        None => None,
                    }
                } else if is_alnum(c) {
                    if prev_alnum {
                        None
                    } else {
                        word_mask(b, i, line_has_at)
                    }
                } else if (c == b'-' || c == b'+') && !prev_alnum && at(b, i + 1).is_ascii_digit() {
                    number_or_duration(b, i + 1).map(|(len, m)| (len + 1, m))
                } else if c == b':' && !prev_alnum && at(b, i + 1) == b':' {
                    ipv6(b, i).map(|len| (len, IP))
                } else {
                    None
                };
            match masked {
                Some((len, placeholder)) => {
                    out.push_str(&line[copy_from..i]);
                    out.push_str(placeholder);
                    i += len;
                    copy_from = i;
                    prev_alnum = false;
                }
                None if is_alnum(c) => {
                    // A word that is no variable: copy it whole, so that its inner digits are not
                    // taken for numbers (`sha256`, `I0312`, `v2`).
                    while i < n && is_alnum(b[i]) {
                        has_digit |= b[i].is_ascii_digit();
                        i += 1;
                    }
                    prev_alnum = true;
                }
                None if c >= 0x80 => {
                    while i < n && b[i] >= 0x80 {
                        i += 1;
                    }
                    prev_alnum = false;
                }
                None => {
                    i += 1;
                    prev_alnum = false;
                }
            }
        }
        out.push_str(&line[copy_from..i]);
        let ends_bracket = b[i - 1] == b']';
        after_header = ends_bracket && !bracket_seen;
        bracket_seen |= ends_bracket;
        tokens.push(Token {
            start: out_start as u32,
            end: out.len() as u32,
            has_digit,
        });
    }
}

/// The index of the quote closing the one at `i`, if the line has one. A closing `'` must end a
/// word, so that apostrophes (`don't … it's`) are not taken for quotes.
fn closing_quote(b: &[u8], i: usize) -> Option<usize> {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 2,
            c if c == q => {
                if q == b'"' || ends_word(b, j + 1) {
                    return Some(j);
                }
                j += 1;
            }
            _ => j += 1,
        }
    }
    None
}

/// Tries every word-level mask at `i` (the start of a word). Returns the length consumed.
fn word_mask(b: &[u8], i: usize, line_has_at: bool) -> Option<(usize, &'static str)> {
    if line_has_at && let Some(len) = email(b, i) {
        return Some((len, EMAIL));
    }
    if let Some(len) = uuid(b, i) {
        return Some((len, UUID));
    }
    let c = b[i];
    if c.is_ascii_digit() {
        if let Some(len) = timestamp(b, i) {
            return Some((len, TS));
        }
        if let Some(len) = ipv4(b, i) {
            return Some((len, IP));
        }
    }
    if c.is_ascii_hexdigit() {
        if let Some(len) = ipv6(b, i) {
            return Some((len, IP));
        }
        if let Some(len) = hex(b, i) {
            return Some((len, HEX));
        }
    }
    if c.is_ascii_digit() {
        return number_or_duration(b, i);
    }
    None
}

fn email(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    while j < b.len() && (is_alnum(b[j]) || matches!(b[j], b'.' | b'_' | b'%' | b'+' | b'-')) {
        j += 1;
    }
    if j == i || at(b, j) != b'@' {
        return None;
    }
    j += 1;
    let domain = j;
    let mut dots = 0;
    while j < b.len() && (is_alnum(b[j]) || b[j] == b'-' || b[j] == b'.') {
        if b[j] == b'.' {
            dots += 1;
        }
        j += 1;
    }
    // A trailing dot ends a sentence, not the domain.
    while j > domain && b[j - 1] == b'.' {
        j -= 1;
        dots -= 1;
    }
    (dots > 0 && j > domain).then_some(j - i)
}

fn uuid(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for (k, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if k > 0 {
            if at(b, j) != b'-' {
                return None;
            }
            j += 1;
        }
        if hex_digits(b, j, len) != len {
            return None;
        }
        j += len;
    }
    ends_word(b, j).then_some(j - i)
}

/// `YYYY-MM-DD`, optionally `THH:MM[:SS[.frac]]` and a zone; or a time of day `HH:MM:SS[.frac]`.
fn timestamp(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let date = digits(b, j, 4) == 4
        && at(b, j + 4) == b'-'
        && digits(b, j + 5, 2) == 2
        && at(b, j + 7) == b'-'
        && digits(b, j + 8, 2) == 2;
    if date {
        j += 10;
        if matches!(at(b, j), b'T' | b't') {
            let t = time_of_day(b, j + 1, false)?;
            j += 1 + t;
            j += zone(b, j);
        }
    } else {
        j += time_of_day(b, j, true)?;
    }
    ends_word(b, j).then_some(j - i)
}

/// `HH:MM[:SS[.frac]]`; seconds required when `need_seconds`.
fn time_of_day(b: &[u8], i: usize, need_seconds: bool) -> Option<usize> {
    if digits(b, i, 3) != 2 || at(b, i + 2) != b':' || digits(b, i + 3, 3) != 2 {
        return None;
    }
    let mut j = i + 5;
    if at(b, j) == b':' && digits(b, j + 1, 3) == 2 {
        j += 3;
        if matches!(at(b, j), b'.' | b',') {
            let f = digits(b, j + 1, 12);
            if f > 0 {
                j += 1 + f;
            }
        }
    } else if need_seconds {
        return None;
    }
    // A time followed by another `:digit` is something else (an IPv6 address, a MAC).
    (at(b, j) != b':').then_some(j - i)
}

fn zone(b: &[u8], i: usize) -> usize {
    match at(b, i) {
        b'Z' | b'z' => 1,
        b'+' | b'-' if digits(b, i + 1, 2) == 2 => {
            if at(b, i + 3) == b':' && digits(b, i + 4, 2) == 2 {
                6
            } else if digits(b, i + 3, 2) == 2 {
                5
            } else {
                3
            }
        }
        _ => 0,
    }
}

/// Dotted quad with an optional `:port`.
fn ipv4(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    for k in 0..4 {
        if k > 0 {
            if at(b, j) != b'.' {
                return None;
            }
            j += 1;
        }
        let d = digits(b, j, 4);
        if d == 0 || d > 3 {
            return None;
        }
        let mut v = 0u32;
        for &c in &b[j..j + d] {
            v = v * 10 + u32::from(c - b'0');
        }
        if v > 255 {
            return None;
        }
        j += d;
    }
    // `1.2.3.4.5` is a version, not an address.
    if at(b, j) == b'.' && at(b, j + 1).is_ascii_digit() {
        return None;
    }
    if at(b, j) == b':' {
        let p = digits(b, j + 1, 6);
        if (1..=5).contains(&p) {
            j += 1 + p;
        }
    }
    ends_word(b, j).then_some(j - i)
}

/// An IPv6 address: hex groups of at most four digits and colons, with `::` or eight groups, and
/// at least one decimal digit (so that `add::bad` stays a word).
fn ipv6(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut colons = 0;
    let mut double = false;
    let mut group = 0;
    let mut has_decimal = false;
    while j < b.len() {
        let c = b[j];
        if c == b':' {
            if at(b, j + 1) == b':' {
                if double {
                    return None;
                }
                double = true;
                colons += 2;
                j += 2;
            } else {
                colons += 1;
                j += 1;
            }
            group = 0;
        } else if c.is_ascii_hexdigit() {
            group += 1;
            if group > 4 {
                return None;
            }
            has_decimal |= c.is_ascii_digit();
            j += 1;
        } else {
            break;
        }
    }
    // A single trailing colon is punctuation (`addr fe80::1: refused`).
    if j > i + 1 && b[j - 1] == b':' && b[j - 2] != b':' {
        j -= 1;
        colons -= 1;
    }
    let shaped = colons >= 2 && (double || colons == 7);
    (shaped && has_decimal && ends_word(b, j) && at(b, j) != b'.').then_some(j - i)
}

/// `0x` followed by hex digits, or 8+ hex digits mixing letters and digits.
fn hex(b: &[u8], i: usize) -> Option<usize> {
    if b[i] == b'0' && matches!(at(b, i + 1), b'x' | b'X') {
        let d = hex_digits(b, i + 2, usize::MAX);
        return (d > 0 && ends_word(b, i + 2 + d)).then_some(2 + d);
    }
    let d = hex_digits(b, i, usize::MAX);
    if d < 8 || !ends_word(b, i + d) {
        return None;
    }
    let run = &b[i..i + d];
    let letters = run.iter().any(|c| c.is_ascii_alphabetic());
    let decimals = run.iter().any(|c| c.is_ascii_digit());
    (letters && decimals).then_some(d)
}

/// A time unit at `i`: its length.
fn duration_unit(b: &[u8], i: usize) -> Option<usize> {
    match (at(b, i), at(b, i + 1)) {
        (b'n' | b'u' | b'm', b's') => Some(2),
        (0xc2, 0xb5) if at(b, i + 2) == b's' => Some(3),
        (b's' | b'm' | b'h' | b'd', _) => Some(1),
        _ => None,
    }
}

/// A number, optionally decimal, ending a word; or a duration (`250ms`, `1.5s`, `1h30m`); or a
/// number with a short alphabetic unit (`512KB`), of which only the number is masked.
fn number_or_duration(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    let number = |j: usize| -> usize {
        let d = digits(b, j, usize::MAX);
        if d > 0 && at(b, j + d) == b'.' {
            let f = digits(b, j + d + 1, usize::MAX);
            if f > 0 {
                return d + 1 + f;
            }
        }
        d
    };
    let first = number(i);
    if first == 0 {
        return None;
    }
    let mut j = i + first;
    if ends_word(b, j) && at(b, j) != 0xc2 {
        return Some((first, NUM));
    }
    // Durations: one or more number+unit pairs ending a word.
    let mut k = j;
    while let Some(u) = duration_unit(b, k) {
        k += u;
        if ends_word(b, k) && at(b, k) != 0xc2 {
            return Some((k - i, DURATION));
        }
        let more = number(k);
        if more == 0 {
            break;
        }
        k += more;
    }
    // A short unit: mask the number, keep the unit (`512KB`, `10GiB`, `3x`).
    let mut letters = 0;
    while at(b, j).is_ascii_alphabetic() {
        letters += 1;
        j += 1;
    }
    (letters > 0 && letters <= 3 && ends_word(b, j)).then_some((first, NUM))
}

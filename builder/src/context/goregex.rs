//! Translation of the Go RE2 regular expressions that `patternmatcher` builds into equivalent
//! Rust `regex` syntax.
//!
//! Docker's pattern matcher turns a `.dockerignore` pattern into a Go regexp string (passing
//! `[...]` classes and `\x` escapes through untouched) and compiles it with Go's `regexp`. The
//! Rust `regex` crate accepts a similar but not identical dialect: inside classes it has nesting
//! (`[[a]]`) and set operators (`&&`, `--`, `~~`), `\<`/`\>` are word boundaries, `\d`/`\w`/`\s`/`\b`
//! are Unicode-aware where Go's are ASCII-only. Feeding the Go string to Rust verbatim would
//! therefore silently change which paths match. This module parses the Go syntax that can occur
//! (literals, escapes, classes incl. POSIX `[:name:]`, `\p{..}`, Perl classes, and the `.`/`*`/
//! `?`/`(`/`)`/`^`/`$` that the translation itself emits) following Go's `regexp/syntax` parser,
//! and re-emits every literal in an unambiguous form (`\x{..}` inside classes).
//!
//! Not supported (rejected with an error, where Go would accept): `\Q…\E` quoting. Go accepts
//! these only in exotic patterns that no real `.dockerignore` uses.

/// Why a Go regexp cannot be translated (or is invalid in Go itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoRegexError {
    #[error("invalid escape sequence `\\{0}`")]
    InvalidEscape(String),
    #[error("trailing backslash at end of expression")]
    TrailingBackslash,
    #[error("missing closing ] in character class")]
    MissingBracket,
    #[error("invalid character class range `{0}-{1}`")]
    InvalidRange(char, char),
    #[error("invalid character class `[:{0}:]`")]
    InvalidNamedClass(String),
    #[error("`\\{0}` is not supported in .dockerignore patterns")]
    Unsupported(char),
    #[error("missing argument to repetition operator `{0}`")]
    MissingRepeatArgument(String),
    #[error("invalid nested repetition operator `{0}`")]
    NestedRepeat(String),
    #[error("invalid repeat count `{0}`")]
    RepeatSize(String),
}

/// What the previous top-level item was, for Go's repetition checks.
#[derive(PartialEq, Clone, Copy)]
enum Prev {
    /// Start of the expression, or after `|` or `(`: nothing to repeat.
    Nothing,
    Atom,
    Repeat,
}

const POSIX_CLASSES: &[&str] = &[
    "alnum", "alpha", "ascii", "blank", "cntrl", "digit", "graph", "lower", "print", "punct",
    "space", "upper", "word", "xdigit",
];

/// Translates a Go regexp (RE2 syntax, Perl flags as used by `regexp.Compile`) to Rust syntax.
pub fn to_rust(go: &str) -> Result<String, GoRegexError> {
    let chars: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() * 2);
    let mut i = 0;
    let mut prev = Prev::Nothing;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        // Repetition operators: `*`, `+`, `?` and a well-formed `{n}`, `{n,}`, `{n,m}`.
        let repeat = match c {
            '*' | '+' | '?' => Some((c.to_string(), i)),
            '{' => parse_repeat(&chars, i)?,
            _ => None,
        };
        if let Some((op, next)) = repeat {
            match prev {
                Prev::Nothing => return Err(GoRegexError::MissingRepeatArgument(op)),
                Prev::Repeat => return Err(GoRegexError::NestedRepeat(op)),
                Prev::Atom => {}
            }
            out.push_str(&op);
            i = next;
            prev = Prev::Repeat;
            continue;
        }
        prev = Prev::Atom;
        match c {
            '[' => i = parse_class(&chars, i, &mut out)?,
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err(GoRegexError::TrailingBackslash);
                };
                match e {
                    'A' | 'z' => {
                        out.push('\\');
                        out.push(e);
                        i += 1;
                    }
                    // Go's \b and \B are ASCII word boundaries.
                    'b' | 'B' => {
                        out.push_str(if e == 'b' { "(?-u:\\b)" } else { "(?-u:\\B)" });
                        i += 1;
                    }
                    'C' | 'Q' => return Err(GoRegexError::Unsupported(e)),
                    'p' | 'P' => i = copy_unicode_class(&chars, i, &mut out)?,
                    'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
                        let (negated, body) = perl_class(e);
                        out.push_str(if negated { "[^" } else { "[" });
                        out.push_str(body);
                        out.push(']');
                        i += 1;
                    }
                    _ => {
                        let (lit, next) = parse_escape(&chars, i)?;
                        push_literal(&mut out, lit);
                        i = next;
                    }
                }
            }
            '|' | '(' => {
                out.push(c);
                prev = Prev::Nothing;
            }
            '.' | ')' | '^' | '$' => out.push(c),
            _ => push_literal(&mut out, c),
        }
    }
    Ok(out)
}

/// Go's `parseRepeat` after `{` (i points after it): `Some((op, next))` for a well-formed
/// `{n}`, `{n,}` or `{n,m}`, `None` when `{` is a literal.
fn parse_repeat(chars: &[char], mut i: usize) -> Result<Option<(String, usize)>, GoRegexError> {
    let start = i - 1;
    let int = |i: &mut usize| -> Option<i64> {
        let from = *i;
        while chars.get(*i).is_some_and(char::is_ascii_digit) {
            *i += 1;
        }
        let digits = &chars[from..*i];
        // Go disallows leading zeros; huge numbers become -1 (then rejected).
        if digits.is_empty() || (digits.len() >= 2 && digits[0] == '0') {
            return None;
        }
        let mut n: i64 = 0;
        for d in digits {
            if n >= 100_000_000 {
                return Some(-1);
            }
            n = n * 10 + i64::from(*d as u8 - b'0');
        }
        Some(n)
    };
    let Some(lo) = int(&mut i) else {
        return Ok(None);
    };
    let hi = if chars.get(i) == Some(&',') {
        i += 1;
        if chars.get(i) == Some(&'}') {
            -1
        } else {
            match int(&mut i) {
                Some(hi) => hi,
                None => return Ok(None),
            }
        }
    } else {
        lo
    };
    if chars.get(i) != Some(&'}') {
        return Ok(None);
    }
    i += 1;
    let op: String = chars[start..i].iter().collect();
    if !(0..=1000).contains(&lo) || hi > 1000 || (hi >= 0 && lo > hi) {
        return Err(GoRegexError::RepeatSize(op));
    }
    Ok(Some((op, i)))
}

fn push_literal(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
}

/// Go's Perl classes (ASCII only): (negated, class body in Rust syntax).
fn perl_class(c: char) -> (bool, &'static str) {
    let body = match c.to_ascii_lowercase() {
        'd' => "0-9",
        's' => "\\t\\n\\x0C\\r ",
        _ => "0-9A-Za-z_",
    };
    (c.is_ascii_uppercase(), body)
}

/// Copies `\pX`, `\p{Name}` or `\p{^Name}` (i points at `p`/`P`); Rust accepts the same forms.
fn copy_unicode_class(
    chars: &[char],
    mut i: usize,
    out: &mut String,
) -> Result<usize, GoRegexError> {
    let start = i;
    i += 1;
    match chars.get(i) {
        None => return Err(GoRegexError::InvalidEscape(chars[start].to_string())),
        Some('{') => {
            while i < chars.len() && chars[i] != '}' {
                i += 1;
            }
            if i == chars.len() {
                return Err(GoRegexError::InvalidEscape(chars[start..].iter().collect()));
            }
            i += 1;
        }
        Some(_) => i += 1,
    }
    out.push('\\');
    out.extend(&chars[start..i]);
    Ok(i)
}

/// Go's `parseEscape` for a single-character escape; `i` points just after the backslash.
fn parse_escape(chars: &[char], mut i: usize) -> Result<(char, usize), GoRegexError> {
    let Some(&c) = chars.get(i) else {
        return Err(GoRegexError::TrailingBackslash);
    };
    i += 1;
    let octal = |c: Option<&char>| c.is_some_and(|c| ('0'..='7').contains(c));
    let value = match c {
        '1'..='7' if !octal(chars.get(i)) => return Err(GoRegexError::InvalidEscape(c.into())),
        '0'..='7' => {
            let mut r = c as u32 - '0' as u32;
            for _ in 1..3 {
                if !octal(chars.get(i)) {
                    break;
                }
                r = r * 8 + (chars[i] as u32 - '0' as u32);
                i += 1;
            }
            r
        }
        'x' => {
            let hex = |c: char| c.to_digit(16);
            if chars.get(i) == Some(&'{') {
                i += 1;
                let mut r: u32 = 0;
                let mut n = 0;
                while let Some(d) = chars.get(i).and_then(|c| hex(*c)) {
                    r = r.saturating_mul(16).saturating_add(d);
                    i += 1;
                    n += 1;
                }
                if n == 0 || chars.get(i) != Some(&'}') || r > 0x10FFFF {
                    return Err(GoRegexError::InvalidEscape("x".into()));
                }
                i += 1;
                r
            } else {
                let hi = chars.get(i).and_then(|c| hex(*c));
                let lo = chars.get(i + 1).and_then(|c| hex(*c));
                match (hi, lo) {
                    (Some(h), Some(l)) => {
                        i += 2;
                        h * 16 + l
                    }
                    _ => return Err(GoRegexError::InvalidEscape("x".into())),
                }
            }
        }
        'a' => 7,
        'f' => 12,
        'n' => 10,
        'r' => 13,
        't' => 9,
        'v' => 11,
        // Escaped ASCII punctuation is always itself.
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => c as u32,
        c => return Err(GoRegexError::InvalidEscape(c.into())),
    };
    let ch = char::from_u32(value).ok_or_else(|| GoRegexError::InvalidEscape(c.into()))?;
    Ok((ch, i))
}

/// Parses a Go character class; `i` points just after `[`. Returns the index after `]`.
fn parse_class(chars: &[char], mut i: usize, out: &mut String) -> Result<usize, GoRegexError> {
    out.push('[');
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true; // `]` is a literal as the first character
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(GoRegexError::MissingBracket);
        };
        if c == ']' && !first {
            out.push(']');
            return Ok(i + 1);
        }
        first = false;
        // POSIX [:name:], only when a closing `:]` follows.
        if c == '[' && chars.get(i + 1) == Some(&':') {
            if let Some(end) = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == ':' && chars[j + 1] == ']')
            {
                let name: String = chars[i + 2..end].iter().collect();
                let bare = name.strip_prefix('^').unwrap_or(&name);
                if !POSIX_CLASSES.contains(&bare) {
                    return Err(GoRegexError::InvalidNamedClass(name));
                }
                out.push_str(&format!("[:{name}:]"));
                i = end + 2;
                continue;
            }
        }
        if c == '\\' {
            match chars.get(i + 1) {
                Some('p' | 'P') => {
                    i = copy_unicode_class(chars, i + 1, out)?;
                    continue;
                }
                Some(&e @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) => {
                    let (negated, body) = perl_class(e);
                    // Rust nests classes, so a negated Perl class becomes `[^...]` inside.
                    if negated {
                        out.push_str(&format!("[^{body}]"));
                    } else {
                        out.push_str(body);
                    }
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        let (lo, next) = class_char(chars, i)?;
        i = next;
        let mut hi = lo;
        // `[a-]` means a or -, so a range needs something other than `]` after the dash.
        if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|c| *c != ']') {
            let (h, next) = class_char(chars, i + 1)?;
            if h < lo {
                return Err(GoRegexError::InvalidRange(lo, h));
            }
            hi = h;
            i = next;
        }
        out.push_str(&format!("\\x{{{:X}}}", lo as u32));
        if hi != lo {
            out.push_str(&format!("-\\x{{{:X}}}", hi as u32));
        }
    }
}

fn class_char(chars: &[char], i: usize) -> Result<(char, usize), GoRegexError> {
    match chars.get(i) {
        None => Err(GoRegexError::MissingBracket),
        Some('\\') => parse_escape(chars, i + 1),
        Some(&c) => Ok((c, i + 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_match(go: &str, text: &str) -> bool {
        let rust = to_rust(go).unwrap();
        regex::Regex::new(&rust)
            .unwrap_or_else(|e| panic!("{go:?} -> {rust:?}: {e}"))
            .is_match(text)
    }

    #[test]
    fn classes_follow_go_not_rust_syntax() {
        // In Go `[` inside a class is a literal; Rust would start a nested class.
        assert!(is_match("^[[^/]*]$", "[^]"));
        assert!(is_match("^[[^/]*]$", "]"));
        assert!(!is_match("^[[^/]*]$", "a]"));
        // `&&` is not an intersection operator in Go.
        assert!(is_match("^[a&&b]$", "&"));
        // `]` first in a class is literal.
        assert!(is_match("^[]a]$", "]"));
        assert!(is_match("^[[:digit:]x]$", "7"));
        assert!(!is_match("^[[:^digit:]]$", "7"));
        assert!(is_match("^[\\d]$", "7"));
        assert!(!is_match("^\\d$", "٣"), "Go's \\d is ASCII only");
    }

    #[test]
    fn escapes_follow_go() {
        assert!(
            is_match("^a\\<b$", "a<b"),
            "Go's \\< is a literal, not a word boundary"
        );
        assert!(is_match("^\\x41\\101$", "AA"));
        assert_eq!(to_rust("\\e"), Err(GoRegexError::InvalidEscape("e".into())));
        assert_eq!(to_rust("\\8"), Err(GoRegexError::InvalidEscape("8".into())));
        assert_eq!(to_rust("a\\"), Err(GoRegexError::TrailingBackslash));
        assert_eq!(to_rust("[b-a]"), Err(GoRegexError::InvalidRange('b', 'a')));
        assert_eq!(to_rust("[a"), Err(GoRegexError::MissingBracket));
        assert!(matches!(
            to_rust("[[:foo:]]"),
            Err(GoRegexError::InvalidNamedClass(_))
        ));
    }

    #[test]
    fn alternation_and_counted_repeats_follow_go() {
        assert!(is_match("^a|b$", "ax"), "`|` is alternation");
        assert!(is_match("^a{2}$", "aa"));
        assert!(is_match("^a{x}$", "a{x}"), "a malformed repeat is literal");
        assert!(is_match("^a{,2}$", "a{,2}"));
        assert!(
            is_match("^a{01}$", "a{01}"),
            "leading zeros make the brace literal"
        );
        assert_eq!(
            to_rust("a{1001}"),
            Err(GoRegexError::RepeatSize("{1001}".into()))
        );
        assert_eq!(
            to_rust("a{3,2}"),
            Err(GoRegexError::RepeatSize("{3,2}".into()))
        );
        assert_eq!(
            to_rust("a*{2}"),
            Err(GoRegexError::NestedRepeat("{2}".into()))
        );
        assert_eq!(
            to_rust("|{2}"),
            Err(GoRegexError::MissingRepeatArgument("{2}".into()))
        );
        assert!(is_match("^*a$", "a"), "Go allows repeating ^");
    }
}

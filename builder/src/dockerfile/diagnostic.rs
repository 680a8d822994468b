//! Parse errors with source positions, rendered compiler-style:
//!
//! ```text
//! error: unknown instruction `COPPY`
//!  --> Dockerfile:3:1
//!   |
//! 3 | COPPY . .
//!   | ^^^^^
//!   = help: did you mean `COPY`? Supported instructions: FROM, ARG, ...
//! ```
//!
//! Rendering is a few lines of string formatting, so no diagnostics crate is pulled in.

use serde::Serialize;

use super::Span;

/// One problem found in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Byte range in the original source that the caret underlines.
    pub span: Span,
    /// 1-based line of `span.start`.
    pub line: usize,
    /// 1-based column (in characters) of `span.start`.
    pub column: usize,
    pub message: String,
    /// What is allowed instead, when there is something useful to say.
    pub help: Option<String>,
}

impl Diagnostic {
    /// Builds a diagnostic for `span`, computing line and column from `source`.
    pub(crate) fn new(source: &str, span: Span, message: String, help: Option<String>) -> Self {
        let (line, column) = line_col(source, span.start);
        Diagnostic {
            span,
            line,
            column,
            message,
            help,
        }
    }
}

/// The Dockerfile could not be parsed; holds every problem found (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{}", summary(.diagnostics))]
pub struct ParseError {
    pub diagnostics: Vec<Diagnostic>,
}

fn summary(diagnostics: &[Diagnostic]) -> String {
    match diagnostics.first() {
        Some(d) => {
            let more = match diagnostics.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            format!("line {}:{}: {}{more}", d.line, d.column, d.message)
        }
        None => "invalid Dockerfile".to_owned(),
    }
}

impl ParseError {
    /// Renders every diagnostic with the file name, the offending line and a caret.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let mut out = String::new();
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            render_one(&mut out, d, file_name, source);
        }
        out
    }
}

fn render_one(out: &mut String, d: &Diagnostic, file_name: &str, source: &str) {
    let line_text = line_text(source, d.line);
    let gutter = d.line.to_string();
    let pad = " ".repeat(gutter.len());
    out.push_str(&format!("error: {}\n", d.message));
    out.push_str(&format!("{pad}--> {file_name}:{}:{}\n", d.line, d.column));
    out.push_str(&format!("{pad} |\n"));
    out.push_str(&format!("{gutter} | {line_text}\n"));
    // Underline from the column to the end of the span, clipped to this line.
    let line_chars = line_text.chars().count();
    let start_col = d.column.saturating_sub(1).min(line_chars);
    let span_text = source
        .get(d.span.start..d.span.end.max(d.span.start))
        .unwrap_or("");
    let span_chars = span_text.lines().next().unwrap_or("").chars().count();
    let width = span_chars.min(line_chars.saturating_sub(start_col)).max(1);
    let indent: String = line_text
        .chars()
        .take(start_col)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    out.push_str(&format!("{pad} | {indent}{}\n", "^".repeat(width)));
    if let Some(help) = &d.help {
        out.push_str(&format!("{pad} = help: {help}\n"));
    }
}

/// The text of 1-based `line` without its line ending (and without a leading BOM).
fn line_text(source: &str, line: usize) -> String {
    let text = source
        .split('\n')
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim_end_matches('\r');
    text.strip_prefix('\u{feff}').unwrap_or(text).to_owned()
}

/// 1-based line and character column of byte `offset`; a BOM does not count as a column.
pub(crate) fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = floor_char_boundary(source, offset.min(source.len()));
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col_text = &source[line_start..offset];
    let col_text = col_text.strip_prefix('\u{feff}').unwrap_or(col_text);
    (line, col_text.chars().count() + 1)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Levenshtein distance over characters, for "did you mean" suggestions.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate to `word` (case-insensitive) if it is plausibly a typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let max = (lower.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_and_skips_bom() {
        let src = "\u{feff}FROM a\nRUN é x";
        assert_eq!(line_col(src, 3), (1, 1));
        assert_eq!(line_col(src, src.find('x').expect("present")), (2, 7));
    }

    #[test]
    fn suggestions_use_edit_distance() {
        assert_eq!(suggest("COPPY", &["FROM", "COPY", "RUN"]), Some("COPY"));
        assert_eq!(suggest("xyzzy", &["FROM", "COPY", "RUN"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn render_points_at_the_span() {
        let src = "FROM a\nCOPPY . .\n";
        let err = ParseError {
            diagnostics: vec![Diagnostic::new(
                src,
                Span { start: 7, end: 12 },
                "unknown instruction `COPPY`".into(),
                Some("did you mean `COPY`?".into()),
            )],
        };
        let text = err.render("Dockerfile", src);
        assert_eq!(
            text,
            "error: unknown instruction `COPPY`\n --> Dockerfile:2:1\n  |\n2 | COPPY . .\n  | ^^^^^\n  = help: did you mean `COPY`?\n"
        );
    }
}

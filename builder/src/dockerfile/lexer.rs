//! Source text → logical instruction lines, following BuildKit's `parser.Parse` line loop:
//! BOM on the first line, parser directives at the top, CRLF/LF line endings, leading
//! whitespace, comment lines, line continuations (comment and blank lines inside a
//! continuation are skipped) and heredoc bodies.
//!
//! Each logical line remembers which source bytes its joined text came from, so diagnostics can
//! point at the exact token even when it sits on a continuation line.

use super::diagnostic::Diagnostic;
use super::heredoc;
use super::instruction::Heredoc;
use super::{Directives, Span};

/// A run of joined text copied from the source.
#[derive(Debug, Clone)]
struct Segment {
    joined: usize,
    source: usize,
    len: usize,
}

/// One instruction: its continuation-joined text plus any heredoc bodies.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    /// The instruction text with continuations removed (not including heredoc bodies).
    pub text: String,
    segments: Vec<Segment>,
    /// Source byte range of the whole instruction, heredoc bodies included.
    pub span: Span,
    /// 1-based line of the instruction keyword.
    pub line: usize,
    pub heredocs: Vec<Heredoc>,
    /// 1-based line of the instruction's last physical line (heredoc bodies included).
    pub end_line: usize,
    /// The comment lines right above the instruction, as BuildKit's parser keeps them
    /// (`PrevComment`): `#` and surrounding blanks removed, reset by an empty `#` line, parser
    /// directives left out. Build checks read `# check=…` and stage descriptions from them.
    pub comments: Vec<String>,
    /// The line BuildKit reports an empty continuation line at (the last line of the
    /// continued instruction), when one of its continuation lines was blank.
    pub empty_continuation: Option<usize>,
}

impl LogicalLine {
    /// Maps a byte offset in `text` back to the source.
    pub fn source_offset(&self, joined: usize) -> usize {
        let mut best = self.span.start;
        for seg in &self.segments {
            if joined >= seg.joined && joined <= seg.joined + seg.len {
                return seg.source + (joined - seg.joined);
            }
            if joined > seg.joined {
                best = seg.source + seg.len;
            }
        }
        best
    }

    /// The source span of `text[start..end]`, clipped to the first physical line involved.
    pub fn source_span(&self, start: usize, end: usize) -> Span {
        let s = self.source_offset(start);
        let e = self.source_offset(end.max(start)).max(s);
        Span { start: s, end: e }
    }
}

/// The result of lexing: directives and instruction lines.
#[derive(Debug)]
pub(crate) struct Lexed {
    pub directives: Directives,
    pub lines: Vec<LogicalLine>,
}

/// A physical line: content range (line ending excluded) and end including the line ending.
#[derive(Debug, Clone, Copy)]
struct Physical {
    start: usize,
    content_end: usize,
}

fn physical_lines(source: &str) -> Vec<Physical> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = source.as_bytes();
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| start + i + 1);
        // Go's TrimRight(line, "\r\n").
        let mut content_end = end;
        while content_end > start && matches!(bytes[content_end - 1], b'\r' | b'\n') {
            content_end -= 1;
        }
        out.push(Physical { start, content_end });
        start = end;
    }
    out
}

/// Directive scanning state (BuildKit's `DirectiveParser`).
struct DirectiveState {
    done: bool,
    seen_syntax: bool,
    seen_escape: bool,
    seen_check: bool,
}

/// Parses `key=value` after `#`, returning (lower-case key, value).
fn directive(line: &str) -> Option<(String, &str)> {
    let rest = line.strip_prefix('#')?.trim_start();
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let (key, after) = rest.split_at(key_len);
    let value = after.trim_start().strip_prefix('=')?.trim();
    if value.is_empty() {
        return None;
    }
    Some((key.to_ascii_lowercase(), value))
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// BuildKit's line-continuation regex `([^E])E[ \t]*$|^E[ \t]*$`: returns the text without
/// the escape and trailing blanks when the line continues.
fn strip_continuation(line: &str, escape: char) -> Option<&str> {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let before = trimmed.strip_suffix(escape)?;
    match before.chars().next_back() {
        None => Some(before),
        Some(c) if c != escape => Some(before),
        Some(_) => None,
    }
}

pub(crate) fn lex(source: &str) -> Result<Lexed, Diagnostic> {
    let lines = physical_lines(source);
    let mut directives = Directives::default();
    let mut state = DirectiveState {
        done: false,
        seen_syntax: false,
        seen_escape: false,
        seen_check: false,
    };
    let mut out = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let line_span = |p: &Physical| Span {
        start: p.start,
        end: p.content_end,
    };

    let mut i = 0;
    while i < lines.len() {
        let phys = lines[i];
        let line_no = i + 1;
        i += 1;
        let mut start = phys.start;
        if line_no == 1 && source[start..phys.content_end].starts_with('\u{feff}') {
            start += '\u{feff}'.len_utf8();
        }
        let raw = &source[start..phys.content_end];
        let trimmed = raw.trim_start();
        let start = start + (raw.len() - trimmed.len());

        if !state.done {
            match directive(trimmed) {
                Some((key, value)) if matches!(key.as_str(), "syntax" | "escape" | "check") => {
                    let seen = match key.as_str() {
                        "syntax" => &mut state.seen_syntax,
                        "escape" => &mut state.seen_escape,
                        _ => &mut state.seen_check,
                    };
                    if *seen {
                        return Err(Diagnostic::new(
                            source,
                            line_span(&phys),
                            format!("only one {key} parser directive can be used"),
                            Some("remove the repeated directive".to_owned()),
                        ));
                    }
                    *seen = true;
                    match key.as_str() {
                        "syntax" => directives.syntax = Some(value.to_owned()),
                        "check" => directives.check = Some(value.to_owned()),
                        _ => match value {
                            "\\" => directives.escape = '\\',
                            "`" => directives.escape = '`',
                            _ => {
                                return Err(Diagnostic::new(
                                    source,
                                    line_span(&phys),
                                    format!(
                                        "invalid escape token '{value}' does not match ` or \\"
                                    ),
                                    Some("write `# escape=\\` or `# escape=``".to_owned()),
                                ))
                            }
                        },
                    }
                    continue;
                }
                _ => state.done = true,
            }
        }
        if trimmed.starts_with('#') {
            // BuildKit drops the first byte and trims (`TrimSpace(line[1:])`).
            let comment = raw.get(1..).unwrap_or("").trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_owned());
            }
            continue;
        }
        if trimmed.is_empty() {
            continue;
        }

        let escape = directives.escape;
        let mut text = String::new();
        let mut segments = Vec::new();
        let mut end = phys.content_end;
        let mut last_line = line_no;
        let mut empty_continuation = false;
        let mut push = |text: &mut String, src: usize, piece: &str| {
            segments.push(Segment {
                joined: text.len(),
                source: src,
                len: piece.len(),
            });
            text.push_str(piece);
        };
        let mut continued = match strip_continuation(trimmed, escape) {
            Some(piece) => {
                push(&mut text, start, piece);
                true
            }
            None => {
                push(&mut text, start, trimmed);
                false
            }
        };
        while continued && i < lines.len() {
            let next = lines[i];
            i += 1;
            last_line = i;
            let content = &source[next.start..next.content_end];
            if is_comment(content) {
                continue;
            }
            if content.trim_start().is_empty() {
                // BuildKit skips empty lines inside a continuation, with a warning
                // (the NoEmptyContinuation check).
                empty_continuation = true;
                continue;
            }
            end = next.content_end;
            match strip_continuation(content, escape) {
                Some(piece) => push(&mut text, next.start, piece),
                None => {
                    push(&mut text, next.start, content);
                    continued = false;
                }
            }
        }

        let mut heredocs = Vec::new();
        let mut end_line_body = last_line;
        if text.contains("<<") && super::parser::can_contain_heredoc(&text, escape) {
            let markers = heredoc::markers_in_line(&text).map_err(|e| {
                Diagnostic::new(
                    source,
                    Span { start, end },
                    format!("invalid heredoc marker: {e}"),
                    None,
                )
            })?;
            for marker in markers {
                let mut content = String::new();
                let mut terminated = false;
                while i < lines.len() {
                    let body = lines[i];
                    i += 1;
                    end_line_body = i;
                    let body_text = &source[body.start..body.content_end];
                    let candidate = if marker.chomp {
                        body_text.trim_start_matches('\t')
                    } else {
                        body_text
                    };
                    end = body.content_end;
                    if candidate == marker.name {
                        terminated = true;
                        break;
                    }
                    // The body keeps its original line endings, as BuildKit's does.
                    let full_end = lines.get(i).map_or(source.len(), |n| n.start);
                    content.push_str(&source[body.start..full_end]);
                }
                if !terminated {
                    return Err(Diagnostic::new(
                        source,
                        Span {
                            start,
                            end: phys.content_end,
                        },
                        format!("unterminated heredoc `{}`", marker.name),
                        Some(format!(
                            "end the here-document with a line containing only `{}`",
                            marker.name
                        )),
                    ));
                }
                heredocs.push(Heredoc {
                    name: marker.name,
                    content,
                    expand: marker.expand,
                    chomp_tabs: marker.chomp,
                });
            }
        }

        out.push(LogicalLine {
            text,
            segments,
            span: Span { start, end },
            line: line_no,
            heredocs,
            end_line: end_line_body,
            comments: std::mem::take(&mut comments),
            empty_continuation: empty_continuation.then_some(last_line),
        });
    }
    Ok(Lexed {
        directives,
        lines: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_skips_comments_and_blank_lines_and_keeps_leading_space() {
        let src = "RUN a \\\n# c\n\n  b \\\r\n c\nRUN d";
        let lexed = lex(src).expect("valid");
        assert_eq!(lexed.lines.len(), 2);
        assert_eq!(lexed.lines[0].text, "RUN a   b  c");
        assert_eq!(lexed.lines[0].line, 1);
        assert_eq!(lexed.lines[1].line, 6);
        let b = lexed.lines[0].text.find('b').expect("present");
        assert_eq!(&src[lexed.lines[0].source_offset(b)..][..1], "b");
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        assert_eq!(strip_continuation("a \\", '\\'), Some("a "));
        assert_eq!(strip_continuation("a \\\\", '\\'), None);
        assert_eq!(strip_continuation("\\  ", '\\'), Some(""));
        assert_eq!(strip_continuation("a `", '`'), Some("a "));
    }

    #[test]
    fn directives_stop_at_first_other_line() {
        let lexed = lex("# syntax=docker/dockerfile:1\n#escape=`\n\n# check=skip=all\nFROM a")
            .expect("valid");
        assert_eq!(lexed.directives.escape, '`');
        assert_eq!(
            lexed.directives.syntax.as_deref(),
            Some("docker/dockerfile:1")
        );
        assert_eq!(lexed.directives.check, None);
    }
}

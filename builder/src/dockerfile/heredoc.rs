//! Finding heredoc markers (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on RUN/COPY/ADD lines, as
//! BuildKit's `heredocsFromLine`/`heredocFromMatch` do: the line is split into words with quotes
//! and escapes kept, each word that looks like `<digits><<[-]<word>` is a marker, and the body is
//! expanded later only if no part of the delimiter was quoted.
//!
//! BuildKit always lexes markers with `\` as escape, whatever the `escape` directive says.

use super::expand::{process, ExpandError, LexOptions, NoVars};

/// A heredoc marker found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Marker {
    pub name: String,
    pub expand: bool,
    pub chomp: bool,
}

/// Parses one word as a marker: `^(\d*)<<(-?)\s*([^<]*)$` with a non-empty delimiter that
/// lexes to exactly one word.
pub(crate) fn parse_marker(word: &str) -> Result<Option<Marker>, ExpandError> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let cooked_opts = LexOptions {
        skip_unset: true,
        ..LexOptions::default()
    };
    let (_, words) = process(rest, &NoVars, '\\', cooked_opts)?;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    let raw_opts = LexOptions {
        raw_quotes: true,
        ..cooked_opts
    };
    let (_, raw_words) = process(rest, &NoVars, '\\', raw_opts)?;
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    let raw_quotes = raw_words.first().map_or(0, |w| quotes(w));
    Ok(Some(Marker {
        name: name.clone(),
        expand: quotes(name) == raw_quotes,
        chomp,
    }))
}

/// Every marker on `line`, in order. A line that does not lex cleanly has no markers, as in
/// BuildKit (which ignores that lexing error).
pub(crate) fn markers_in_line(line: &str) -> Result<Vec<Marker>, ExpandError> {
    let opts = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
        skip_quotes: false,
    };
    let words = match process(line, &NoVars, '\\', opts) {
        Ok((_, words)) => words,
        Err(_) => return Ok(Vec::new()),
    };
    let mut markers = Vec::new();
    for word in words {
        if let Some(m) = parse_marker(&word)? {
            markers.push(m);
        }
    }
    Ok(markers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(name: &str, expand: bool, chomp: bool) -> Marker {
        Marker {
            name: name.into(),
            expand,
            chomp,
        }
    }

    #[test]
    fn finds_markers_like_buildkit() {
        assert_eq!(
            markers_in_line("RUN <<EOF cat <<-'END' 3<< \"X\"").expect("valid"),
            vec![
                marker("EOF", true, false),
                marker("END", false, true),
                marker("X", false, false)
            ]
        );
        assert_eq!(markers_in_line("RUN echo a<<b").expect("valid"), vec![]);
        assert_eq!(markers_in_line("RUN echo <<").expect("valid"), vec![]);
        assert_eq!(
            markers_in_line("COPY <<E\"O\"F /x").expect("valid"),
            vec![marker("EOF", false, false)]
        );
    }
}

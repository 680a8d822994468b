//! Variable expansion and word splitting with the rules of BuildKit's `shell.Lex`
//! (`frontend/dockerfile/shell/lex.go`).
//!
//! This is hand-written rather than delegated to a shell-words crate because BuildKit's lexer is
//! not POSIX `sh`: the escape character is configurable (`` ` `` on Windows-style Dockerfiles),
//! `\t` outside quotes is a plain `t`, `${v:?msg}` is an error naming the variable, positional
//! and special parameters (`$1`, `$@`, …) always expand to nothing, and the unquoted result of a
//! substitution is split into words while quoted text is not. The same scanner, with the
//! `raw_*`/`skip_*` switches BuildKit has, also finds heredoc markers on instruction lines.
//!
//! Scanning works on `char`s, so any input (including invalid escapes, lone `$` or unbalanced
//! braces) terminates: every step consumes at least one character or returns.
//!
//! Expansion is bounded (see [`super::limits`]): every append to a word checks the word size
//! and debits a [`Budget`] shared by all words of one instruction, nesting is capped, and
//! pattern operations count their matcher steps; so a tiny Dockerfile cannot expand into
//! gigabytes or take quadratic time.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};

use super::limits::{
    mib, LIMIT_HINT, MAX_INSTRUCTION_BYTES, MAX_NESTING, MAX_PATTERN_STEPS, MAX_WORD_BYTES,
};

/// Where variable values come from while expanding one instruction.
///
/// BuildKit expands every word of an instruction against the environment *before* that
/// instruction, so callers pass one immutable lookup per instruction.
pub trait VarLookup {
    /// The value of `name`, or `None` when it is unset (which differs from set-but-empty for
    /// `${v-w}`, `${v+w}` and `${v?}`).
    fn get(&self, name: &str) -> Option<&str>;
}

impl VarLookup for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        BTreeMap::get(self, name).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> VarLookup for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<&str> {
        HashMap::get(self, name).map(String::as_str)
    }
}

/// A lookup in which every variable is unset.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoVars;

impl VarLookup for NoVars {
    fn get(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// Why expanding a word failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandErrorKind {
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${name?message}` / `${name:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: invalid escape '\\{escaped}'")]
    InvalidPattern { pattern: String, escaped: char },
    /// A `--mount` option that is unsafe once expanded (e.g. a cache id becoming `../x`).
    #[error("{0}")]
    Mount(super::mount::MountError),
    #[error("the expanded word would be larger than {limit}, the limit for one expanded word: {LIMIT_HINT}", limit = mib(MAX_WORD_BYTES))]
    WordTooLarge,
    #[error("the expansions of this instruction would total more than {limit}, the limit for one instruction: {LIMIT_HINT}", limit = mib(MAX_INSTRUCTION_BYTES))]
    InstructionTooLarge,
    #[error("${{...}} is nested more than {MAX_NESTING} levels deep: write the inner values into ARGs first")]
    NestingTooDeep,
    #[error("the pattern operation would take more than {MAX_PATTERN_STEPS} matcher steps (a pattern of {pattern_len} tokens on a value of {value_len} characters): use a shorter pattern or value, or do the editing in a RUN step")]
    PatternTooExpensive {
        pattern_len: usize,
        value_len: usize,
    },
}

impl ExpandErrorKind {
    /// Whether this is one of the size or work bounds of [`super::limits`] (which is never
    /// ignored, unlike the other errors that some best-effort pre-passes skip).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            ExpandErrorKind::WordTooLarge
                | ExpandErrorKind::InstructionTooLarge
                | ExpandErrorKind::NestingTooDeep
                | ExpandErrorKind::PatternTooExpensive { .. }
        )
    }
}

/// The bytes the expansions of one instruction may still produce ([`MAX_INSTRUCTION_BYTES`]),
/// shared by all its words and nesting levels.
#[derive(Debug)]
pub struct Budget {
    remaining: Cell<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            remaining: Cell::new(MAX_INSTRUCTION_BYTES),
        }
    }
}

impl Budget {
    /// Checks that a word of `len` bytes may grow by `add` bytes, and debits them.
    fn grow(&self, len: usize, add: usize) -> Result<(), ExpandErrorKind> {
        if len.saturating_add(add) > MAX_WORD_BYTES {
            return Err(ExpandErrorKind::WordTooLarge);
        }
        let left = self.remaining.get();
        if add > left {
            return Err(ExpandErrorKind::InstructionTooLarge);
        }
        self.remaining.set(left - add);
        Ok(())
    }
}

/// Expanding `word` failed; the message names the word as BuildKit's does (shortened when it
/// is long, so that a hostile word does not become a megabyte of error message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ExpandError {
    pub word: String,
    #[source]
    pub kind: ExpandErrorKind,
}

/// How much of a word an error message quotes.
const QUOTED_WORD_CHARS: usize = 200;

fn quoted_word(word: &str) -> String {
    match word.char_indices().nth(QUOTED_WORD_CHARS) {
        Some((cut, _)) => format!("{}...", &word[..cut]),
        None => word.to_owned(),
    }
}

/// The switches of BuildKit's `Lex` struct that change how a word is scanned.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LexOptions {
    /// Keep quote characters in the output (`RawQuotes`).
    pub raw_quotes: bool,
    /// Keep escape characters in the output (`RawEscapes`).
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (`SkipProcessQuotes`, used for heredoc bodies).
    pub skip_quotes: bool,
    /// Leave references to unset variables as written (`SkipUnsetEnv`).
    pub skip_unset: bool,
}

/// Expands one word (quotes removed, escapes processed, variables substituted), keeping
/// unquoted whitespace: BuildKit's `ProcessWord`.
pub fn expand_word(word: &str, vars: &dyn VarLookup, escape: char) -> Result<String, ExpandError> {
    expand_word_in(word, vars, escape, &Budget::default())
}

/// [`expand_word`] drawing on an instruction's shared [`Budget`].
pub fn expand_word_in(
    word: &str,
    vars: &dyn VarLookup,
    escape: char,
    budget: &Budget,
) -> Result<String, ExpandError> {
    process_in(word, vars, escape, LexOptions::default(), budget).map(|(w, _)| w)
}

/// Expands `word` and splits the result into words on unquoted whitespace, where whitespace
/// produced by an unquoted substitution also splits: BuildKit's `ProcessWords`.
pub fn expand_words(
    word: &str,
    vars: &dyn VarLookup,
    escape: char,
) -> Result<Vec<String>, ExpandError> {
    expand_words_in(word, vars, escape, &Budget::default())
}

/// [`expand_words`] drawing on an instruction's shared [`Budget`].
pub fn expand_words_in(
    word: &str,
    vars: &dyn VarLookup,
    escape: char,
    budget: &Budget,
) -> Result<Vec<String>, ExpandError> {
    process_in(word, vars, escape, LexOptions::default(), budget).map(|(_, w)| w)
}

/// Expands the body of an unquoted heredoc (`COPY <<EOF`): variables and escapes are processed
/// but quotes are literal text, as BuildKit does with `SkipProcessQuotes`.
pub fn expand_heredoc(
    content: &str,
    vars: &dyn VarLookup,
    escape: char,
) -> Result<String, ExpandError> {
    expand_heredoc_in(content, vars, escape, &Budget::default())
}

/// [`expand_heredoc`] drawing on an instruction's shared [`Budget`].
pub fn expand_heredoc_in(
    content: &str,
    vars: &dyn VarLookup,
    escape: char,
    budget: &Budget,
) -> Result<String, ExpandError> {
    let options = LexOptions {
        skip_quotes: true,
        ..LexOptions::default()
    };
    process_in(content, vars, escape, options, budget).map(|(w, _)| w)
}

/// Runs the scanner over `word`, returning the joined result and the split words.
pub(crate) fn process(
    word: &str,
    vars: &dyn VarLookup,
    escape: char,
    options: LexOptions,
) -> Result<(String, Vec<String>), ExpandError> {
    process_in(word, vars, escape, options, &Budget::default())
}

fn process_in(
    word: &str,
    vars: &dyn VarLookup,
    escape: char,
    options: LexOptions,
    budget: &Budget,
) -> Result<(String, Vec<String>), ExpandError> {
    let mut scanner = Scanner {
        chars: word.chars().collect(),
        pos: 0,
        vars,
        escape,
        options,
        raw_escapes: options.raw_escapes,
        budget,
        depth: 0,
    };
    scanner
        .process_stop_on(None, options.raw_escapes)
        .map_err(|kind| ExpandError {
            word: quoted_word(word),
            kind,
        })
}

/// Accumulates words the way BuildKit's `wordsStruct` does.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct Scanner<'a> {
    chars: Vec<char>,
    pos: usize,
    vars: &'a dyn VarLookup,
    escape: char,
    options: LexOptions,
    raw_escapes: bool,
    budget: &'a Budget,
    /// How many `process_stop_on` levels are active (bounded by [`MAX_NESTING`]).
    depth: usize,
}

impl Scanner<'_> {
    /// Appends `s` to `out` within the word and instruction bounds.
    fn push_str(&self, out: &mut String, s: &str) -> Result<(), ExpandErrorKind> {
        self.budget.grow(out.len(), s.len())?;
        out.push_str(s);
        Ok(())
    }

    /// Appends `ch` to `out` within the word and instruction bounds.
    fn push(&self, out: &mut String, ch: char) -> Result<(), ExpandErrorKind> {
        self.budget.grow(out.len(), ch.len_utf8())?;
        out.push(ch);
        Ok(())
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Scans until `stop` (consumed) or the end of input; `raw_escapes` applies to this level
    /// only, as in BuildKit's `processStopOn`.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        if self.depth >= MAX_NESTING {
            return Err(ExpandErrorKind::NestingTooDeep);
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        self.depth += 1;
        let result = self.process_stop_on_inner(stop);
        self.depth -= 1;
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandErrorKind> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    self.push_str(&mut result, &value)?;
                    words.add_string(&value);
                }
                '<' => {
                    let value = self.process_possible_heredoc();
                    self.push_str(&mut result, &value)?;
                    words.add_raw_string(&value);
                }
                '\'' if !self.options.skip_quotes => {
                    let value = self.process_single_quote()?;
                    self.push_str(&mut result, &value)?;
                    words.add_raw_string(&value);
                }
                '"' if !self.options.skip_quotes => {
                    let value = self.process_double_quote()?;
                    self.push_str(&mut result, &value)?;
                    words.add_raw_string(&value);
                }
                _ => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            self.push(&mut result, ch)?;
                        }
                        // An escape at the very end is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        self.push(&mut result, escaped)?;
                    } else {
                        words.add_char(ch);
                        self.push(&mut result, ch)?;
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ExpandErrorKind::Unterminated(stop));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandErrorKind> {
        let mut result = String::new();
        let open = self.next();
        if self.options.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ExpandErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.options.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandErrorKind> {
        let mut result = String::new();
        let open = self.next();
        if self.options.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ExpandErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.pos += 1;
                    if self.options.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    self.push_str(&mut result, &value)?;
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            // Inside double quotes only `"`, `$` and the escape itself are
                            // escapable; elsewhere the escape character is kept.
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.pos += 1;
                                ch = next;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ExpandErrorKind> {
        self.pos += 1; // the `$`
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1; // the `{`
        match self.peek() {
            None => return Err(ExpandErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let mut ch = self.next();
        let mut modifier: String = ch.into_iter().collect();
        match ch {
            Some('}') => Ok(match self.lookup(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = ch == Some(':');
                if null_is_unset {
                    ch = self.next();
                    modifier.extend(ch);
                }
                let raw = matches!(ch, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(ExpandErrorKind::UnsupportedModifier(modifier));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((word, _)) => word,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.lookup(&name);
                if self.options.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let unset_or_null = match &value {
                    None => true,
                    Some(v) => null_is_unset && v.is_empty(),
                };
                match ch {
                    Some('-') => Ok(if unset_or_null {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if unset_or_null { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(required(name, word, "is not allowed to be unset")),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(required(name, word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('%' | '#')) => {
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest.to_owned(), true),
                            None => (word, false),
                        };
                        let value = value.unwrap_or_default();
                        if op == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                    _ => Err(ExpandErrorKind::UnsupportedModifier(modifier)),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.pos += 1;
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((p, _)) => p,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingSlash),
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((r, _)) => r,
                    Err(_) if self.peek().is_none() => return Err(ExpandErrorKind::MissingBrace),
                    Err(e) => return Err(e),
                };
                let value = self.lookup(&name);
                let Some(value) = value else {
                    if self.options.skip_unset {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                    }
                    return Ok(String::new());
                };
                let glob = Glob::compile(&pattern)?;
                glob.replace(&value, &replacement, replace_all, self.budget)
            }
            _ => Err(ExpandErrorKind::UnsupportedModifier(modifier)),
        }
    }

    /// A variable name: all digits (positional), one special character, or letters, digits and
    /// underscores.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(d);
                    self.pos += 1;
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.pos += 1;
        }
        name
    }

    /// `<<` followed by blanks stays one word so heredoc markers such as `<< EOF` survive
    /// word splitting.
    fn process_possible_heredoc(&mut self) -> String {
        self.pos += 1;
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.pos += 1;
        let mut result = "<<".to_owned();
        while let Some(ch) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            result.push(ch);
            self.pos += 1;
        }
        result
    }

    fn lookup(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(str::to_owned)
    }
}

fn required(name: String, word: String, default: &str) -> ExpandErrorKind {
    let message = if word.is_empty() {
        default.to_owned()
    } else {
        word
    };
    ExpandErrorKind::Required { name, message }
}

/// A shell pattern (`*`, `?`, `\` escapes) as used by `${v#p}`, `${v%p}` and `${v/p/r}`.
#[derive(Debug)]
enum PatTok {
    Star,
    Any,
    Lit(char),
}

#[derive(Debug)]
struct Glob(Vec<PatTok>);

impl Glob {
    fn compile(pattern: &str) -> Result<Glob, ExpandErrorKind> {
        let mut toks = Vec::new();
        let mut chars = pattern.chars().peekable();
        while let Some(ch) = chars.next() {
            match ch {
                '*' => toks.push(PatTok::Star),
                '?' => toks.push(PatTok::Any),
                '\\' => match chars.peek().copied() {
                    // `\}` and `\/` only protected the delimiter from the scanner.
                    Some('}' | '/') => {}
                    Some(c @ ('*' | '?' | '\\')) => {
                        chars.next();
                        toks.push(PatTok::Lit(c));
                    }
                    Some(c) => {
                        return Err(ExpandErrorKind::InvalidPattern {
                            pattern: pattern.to_owned(),
                            escaped: c,
                        })
                    }
                    None => toks.push(PatTok::Lit('\\')),
                },
                c => toks.push(PatTok::Lit(c)),
            }
        }
        Ok(Glob(toks))
    }

    /// Adds the positions reachable from `states` without consuming input (a `*` may match
    /// nothing).
    fn close(&self, states: &mut [bool]) {
        for p in 0..self.0.len() {
            if states[p] && matches!(self.0[p], PatTok::Star) {
                states[p + 1] = true;
            }
        }
    }

    /// Every `end <= limit` such that the pattern matches exactly `text[start..end]`,
    /// ascending. An NFA simulation: each character costs one step per pattern token, counted
    /// in `steps`.
    fn match_ends(
        &self,
        text: &[char],
        start: usize,
        limit: usize,
        steps: &mut Steps,
    ) -> Result<Vec<usize>, ExpandErrorKind> {
        let m = self.0.len();
        let mut states = vec![false; m + 1];
        let mut next = vec![false; m + 1];
        states[0] = true;
        self.close(&mut states);
        let mut ends = Vec::new();
        if states[m] {
            ends.push(start);
        }
        for (j, &c) in text.iter().enumerate().take(limit).skip(start) {
            steps.take(m as u64 + 1)?;
            next.fill(false);
            let mut any = false;
            for (p, tok) in self.0.iter().enumerate() {
                if !states[p] {
                    continue;
                }
                let target = match *tok {
                    PatTok::Star => Some(p),
                    // Go's regexp `.` does not match a newline.
                    PatTok::Any if c != '\n' => Some(p + 1),
                    PatTok::Lit(x) if x == c => Some(p + 1),
                    _ => None,
                };
                if let Some(t) = target {
                    next[t] = true;
                    any = true;
                }
            }
            if !any {
                break;
            }
            self.close(&mut next);
            if next[m] {
                ends.push(j + 1);
            }
            std::mem::swap(&mut states, &mut next);
        }
        Ok(ends)
    }

    /// The end of the shortest (or longest, when `greedy`) match starting at `start`.
    fn match_at(
        &self,
        text: &[char],
        start: usize,
        greedy: bool,
        steps: &mut Steps,
    ) -> Result<Option<usize>, ExpandErrorKind> {
        let ends = self.match_ends(text, start, text.len(), steps)?;
        Ok(if greedy {
            ends.last().copied()
        } else {
            ends.first().copied()
        })
    }

    fn reversed(self) -> Glob {
        let mut toks = self.0;
        toks.reverse();
        Glob(toks)
    }

    /// Whether the tokens before the first `*` (`first_star` of them, each one character)
    /// match `text` at `start`.
    fn prefix_matches(&self, text: &[char], start: usize, first_star: usize) -> bool {
        text.get(start..start + first_star).is_some_and(|t| {
            self.0.iter().zip(t).all(|(tok, &c)| match *tok {
                PatTok::Any => c != '\n',
                PatTok::Lit(x) => x == c,
                PatTok::Star => true,
            })
        })
    }

    /// `value` with the longest match at the leftmost position (or every such match, when
    /// `all`) replaced. The result grows within the instruction's [`Budget`].
    ///
    /// Trying every start would be quadratic with a `*` in the pattern (each try scans to
    /// the end), so tries learn from each other: the part of the pattern from its first `*` on
    /// matches from position `j` whatever it matches from any later position (the `*` takes
    /// the difference), so once it has been tried from `s`, no later try can end after the
    /// longest end found then (or anywhere, if none was). Each try is then cut at that
    /// `limit`, which makes the whole replace O(pattern × value); the matcher's steps are
    /// still bounded ([`MAX_PATTERN_STEPS`]) for long patterns.
    fn replace(
        &self,
        value: &str,
        replacement: &str,
        all: bool,
        budget: &Budget,
    ) -> Result<String, ExpandErrorKind> {
        let text: Vec<char> = value.chars().collect();
        let mut steps = Steps::new(self, &text);
        let first_star = self.0.iter().position(|t| matches!(t, PatTok::Star));
        let mut limit = text.len();
        let mut out = String::new();
        let mut i = 0;
        let mut replaced = false;
        // Like Go's regexp, an empty match right after a previous match is not a new match.
        let mut last_end = None;
        while i <= text.len() {
            if !replaced || all {
                let ends = self.match_ends(&text, i, limit, &mut steps)?;
                if let Some(f) = first_star.filter(|&f| self.prefix_matches(&text, i, f)) {
                    limit = limit.min(ends.last().copied().unwrap_or(i + f));
                }
                if let Some(end) = ends.last().copied() {
                    if end > i || last_end != Some(i) {
                        budget.grow(out.len(), replacement.len())?;
                        out.push_str(replacement);
                        replaced = true;
                        last_end = Some(end);
                        if end > i {
                            i = end;
                            continue;
                        }
                    }
                }
            } else {
                // Nothing more to replace: the rest is copied as it is.
                let rest: String = text[i..].iter().collect();
                budget.grow(out.len(), rest.len())?;
                out.push_str(&rest);
                break;
            }
            if let Some(&c) = text.get(i) {
                budget.grow(out.len(), c.len_utf8())?;
                out.push(c);
            }
            i += 1;
        }
        Ok(out)
    }
}

/// The matcher steps one pattern operation may still take ([`MAX_PATTERN_STEPS`]).
struct Steps {
    left: u64,
    pattern_len: usize,
    value_len: usize,
}

impl Steps {
    fn new(glob: &Glob, text: &[char]) -> Steps {
        Steps {
            left: MAX_PATTERN_STEPS,
            pattern_len: glob.0.len(),
            value_len: text.len(),
        }
    }

    fn take(&mut self, n: u64) -> Result<(), ExpandErrorKind> {
        match self.left.checked_sub(n) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(ExpandErrorKind::PatternTooExpensive {
                pattern_len: self.pattern_len,
                value_len: self.value_len,
            }),
        }
    }
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandErrorKind> {
    let glob = Glob::compile(pattern)?;
    let text: Vec<char> = value.chars().collect();
    let mut steps = Steps::new(&glob, &text);
    Ok(match glob.match_at(&text, 0, greedy, &mut steps)? {
        Some(end) => text[end..].iter().collect(),
        None => value.to_owned(),
    })
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandErrorKind> {
    // As BuildKit does: match the reversed pattern against the reversed value.
    let glob = Glob::compile(pattern)?.reversed();
    let reversed: Vec<char> = value.chars().rev().collect();
    let mut steps = Steps::new(&glob, &reversed);
    Ok(match glob.match_at(&reversed, 0, greedy, &mut steps)? {
        Some(cut) => {
            let keep = reversed.len() - cut;
            value.chars().take(keep).collect()
        }
        None => value.to_owned(),
    })
}

#[cfg(test)]
mod tests;

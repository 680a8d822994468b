//! A port of Docker's `github.com/moby/patternmatcher` (the `.dockerignore` matcher).
//!
//! `.dockerignore` is not gitignore: patterns are `filepath.Clean`ed, anchored at the context
//! root, `*`/`?` never cross `/`, `**` matches any number of directories, a pattern matching a
//! parent directory matches everything below it, `!` patterns are exceptions, and the last
//! matching pattern wins. The `ignore`/`globset` crates implement gitignore rules, so the Go
//! algorithm is ported here: each pattern becomes an exact, prefix, suffix or regexp matcher
//! exactly as `Pattern.compile` decides, and the Go regexp is translated by [`super::goregex`].
//!
//! Two evaluation strategies exist, as in Go: [`PatternMatcher::matches_or_parent_matches`]
//! (stateless) and [`PatternMatcher::matches_using_parent_results`] (what BuildKit's walker uses,
//! feeding each directory's [`MatchInfo`] to its children). They differ in corner cases, so
//! callers pick the one whose Go counterpart they mirror.
//!
//! Deliberate difference: Go compiles each pattern lazily on first use and reports a bad regexp
//! only if a walk happens to evaluate it; here every pattern is compiled up front so the error can
//! name the `.dockerignore` line.

use regex::Regex;

use super::gopath;
use super::goregex::{self, GoRegexError};

/// Why a pattern list cannot be compiled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    #[error("syntax error in pattern {pattern:?}")]
    BadPattern { pattern: String },
    #[error("pattern {pattern:?} does not compile as Docker's regexp")]
    BadRegexp {
        pattern: String,
        #[source]
        source: GoRegexError,
    },
    #[error("pattern {pattern:?} translated to {regex:?} is rejected by the regex engine")]
    RegexEngine {
        pattern: String,
        regex: String,
        #[source]
        source: Box<regex::Error>,
    },
}

#[derive(Debug, Clone)]
enum MatchKind {
    Exact,
    /// `foo/**`: a plain prefix (the pattern without its trailing `**`).
    Prefix(String),
    /// `**/foo`: a plain suffix (the pattern without its leading `**`).
    Suffix(String),
    Regexp(Regex),
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: MatchKind,
}

impl Pattern {
    /// The cleaned pattern text, without the leading `!`.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// True for a `!` exception.
    pub fn is_exclusion(&self) -> bool {
        self.exclusion
    }

    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            MatchKind::Exact => path == self.cleaned,
            MatchKind::Prefix(prefix) => path.starts_with(prefix.as_str()),
            MatchKind::Suffix(suffix) => {
                // `**/foo` also matches `foo` itself.
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|s| path == s)
            }
            MatchKind::Regexp(re) => re.is_match(path),
        }
    }
}

/// Go's `shouldEscape`. It is meant to cover `.+()|{}$`, but its 8x8-bit table silently drops
/// every character >= 64, so only `.+()$` are escaped: `|` stays an alternation and `{n}` a
/// counted repetition in Docker's regexps. Reproduced deliberately.
fn should_escape(c: char) -> bool {
    ".+()$".contains(c)
}

#[derive(Debug, PartialEq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regexp,
}

/// Port of `Pattern.compile` with `/` as the separator: decides the match kind and builds the
/// Go regexp string (complete only for [`Kind::Regexp`]).
fn go_regexp(cleaned: &str) -> (Kind, String) {
    let mut re = String::from("^");
    let mut kind = Kind::Exact;
    let chars: Vec<char> = cleaned.chars().collect();
    let mut pos = 0;
    let mut token = 0; // Go's loop counter `i`: counts tokens, not characters
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        if ch == '*' {
            if chars.get(pos) == Some(&'*') {
                pos += 1;
                // Treat `**/` as `**`.
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == chars.len() {
                    // `**` at the end accepts everything, like gitignore.
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Kind::Regexp;
                    }
                } else {
                    // Any number of directories, including none.
                    re.push_str("(.*/)?");
                    kind = Kind::Regexp;
                }
                if token == 0 {
                    kind = Kind::Suffix;
                }
            } else {
                re.push_str("[^/]*");
                kind = Kind::Regexp;
            }
        } else if ch == '?' {
            re.push_str("[^/]");
            kind = Kind::Regexp;
        } else if should_escape(ch) {
            re.push('\\');
            re.push(ch);
        } else if ch == '\\' {
            // Escape the next character; a trailing `\` is kept (and escaped).
            if let Some(&next) = chars.get(pos) {
                pos += 1;
                re.push('\\');
                re.push(next);
                kind = Kind::Regexp;
            } else {
                re.push('\\');
            }
        } else if ch == '[' || ch == ']' {
            re.push(ch);
            kind = Kind::Regexp;
        } else {
            re.push(ch);
        }
        token += 1;
    }
    if kind == Kind::Regexp {
        re.push('$');
    }
    (kind, re)
}

/// Compiles a cleaned pattern (without `!`) into its matcher.
fn compile(cleaned: &str) -> Result<MatchKind, PatternError> {
    let (kind, re) = go_regexp(cleaned);
    match kind {
        Kind::Exact => Ok(MatchKind::Exact),
        // Go slices bytes here; `**` is ASCII so char boundaries hold.
        Kind::Prefix => Ok(MatchKind::Prefix(cleaned[..cleaned.len() - 2].to_string())),
        Kind::Suffix => Ok(MatchKind::Suffix(cleaned[2..].to_string())),
        Kind::Regexp => {
            let rust = goregex::to_rust(&re).map_err(|source| PatternError::BadRegexp {
                pattern: cleaned.to_string(),
                source,
            })?;
            let regex = Regex::new(&rust).map_err(|source| PatternError::RegexEngine {
                pattern: cleaned.to_string(),
                regex: rust.clone(),
                source: Box::new(source),
            })?;
            Ok(MatchKind::Regexp(regex))
        }
    }
}

/// Go's `filepath.Dir(file)` split into its elements, or `None` when it is `.` (no parent).
fn parent_dirs(file: &str) -> Option<Vec<String>> {
    let dir = match file.rfind('/') {
        None => return None,
        Some(idx) => gopath::clean(&file[..=idx]),
    };
    if dir == "." {
        return None;
    }
    Some(dir.split('/').map(str::to_string).collect())
}

/// True if `pattern` matches one of the leading directory prefixes in `dirs`.
fn any_parent_matches(pattern: &Pattern, dirs: &[String]) -> bool {
    let mut prefix = String::new();
    for (n, d) in dirs.iter().enumerate() {
        if n > 0 {
            prefix.push('/');
        }
        prefix.push_str(d);
        if pattern.matches(&prefix) {
            return true;
        }
    }
    false
}

/// Per-pattern match results for a directory, passed to its children
/// (Go's `MatchInfo`). The default value means "no information".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// A compiled list of `.dockerignore` patterns.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Port of `patternmatcher.New`: trims, cleans, splits off `!`, validates with
    /// `filepath.Match` and compiles each pattern. Empty patterns are skipped.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut pm = PatternMatcher::default();
        for p in patterns {
            if let Some(pattern) = Self::compile_one(p.as_ref())? {
                pm.exclusions |= pattern.exclusion;
                pm.patterns.push(pattern);
            }
        }
        Ok(pm)
    }

    /// A matcher from patterns compiled one by one with [`Self::compile_one`].
    pub fn from_patterns(patterns: Vec<Pattern>) -> Self {
        let exclusions = patterns.iter().any(|p| p.exclusion);
        PatternMatcher {
            patterns,
            exclusions,
        }
    }

    /// Compiles one pattern line as `New` would; `None` for a blank line.
    pub fn compile_one(raw: &str) -> Result<Option<Pattern>, PatternError> {
        let p = raw.trim();
        if p.is_empty() {
            return Ok(None);
        }
        let cleaned = gopath::clean(p);
        let (exclusion, body) = match cleaned.strip_prefix('!') {
            Some("") => return Err(PatternError::IllegalExclusion),
            Some(rest) => (true, rest.to_string()),
            None => (false, cleaned),
        };
        if gopath::matches(&body, ".").is_err() {
            return Err(PatternError::BadPattern { pattern: body });
        }
        let kind = compile(&body)?;
        Ok(Some(Pattern {
            cleaned: body,
            exclusion,
            kind,
        }))
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// True if any pattern is a `!` exception.
    pub fn has_exclusions(&self) -> bool {
        self.exclusions
    }

    /// Port of `MatchesOrParentMatches`: true if `file` (slash-separated, clean) or one of its
    /// parent directories matches, and no later exception re-includes it.
    pub fn matches_or_parent_matches(&self, file: &str) -> bool {
        let parents = parent_dirs(file);
        let mut matched = false;
        for pattern in &self.patterns {
            // Only an inclusion can turn `matched` on and only an exception can turn it off.
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(file);
            if !hit {
                if let Some(dirs) = &parents {
                    hit = any_parent_matches(pattern, dirs);
                }
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }

    /// Port of `MatchesUsingParentResults`: like [`Self::matches_or_parent_matches`] but reuses
    /// the parent directory's per-pattern results. Returns the result and this path's info.
    pub fn matches_using_parent_results(
        &self,
        file: &str,
        parent: &MatchInfo,
    ) -> (bool, MatchInfo) {
        let known = parent.parent_matched.len() == self.patterns.len() && !self.patterns.is_empty();
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        let mut matched = false;
        for (i, pattern) in self.patterns.iter().enumerate() {
            let mut hit = known && parent.parent_matched[i];
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = pattern.matches(file);
                // Without parent information, check the parents as MatchesOrParentMatches does.
                if !hit && !known {
                    if let Some(dirs) = parent_dirs(file) {
                        hit = any_parent_matches(pattern, &dirs);
                    }
                }
            }
            info.parent_matched[i] = hit;
            if hit {
                matched = !pattern.exclusion;
            }
        }
        (matched, info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], file: &str) -> bool {
        let pm = PatternMatcher::new(patterns).unwrap();
        let file = gopath::clean(file);
        if file == "." {
            return false;
        }
        pm.matches_or_parent_matches(&file)
    }

    /// patternmatcher_test.go `TestMatches` table, re-typed (Unix cases).
    #[test]
    fn go_test_matches_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**", "file", true),
            ("**", "file/", true),
            ("**/", "file", true),
            ("**/", "file/", true),
            ("**", "/", true),
            ("**/", "/", true),
            ("**", "dir/file", true),
            ("**/", "dir/file", true),
            ("**", "dir/file/", true),
            ("**/", "dir/file/", true),
            ("**/**", "dir/file", true),
            ("**/**", "dir/file/", true),
            ("dir/**", "dir/file", true),
            ("dir/**", "dir/file/", true),
            ("dir/**", "dir/dir2/file", true),
            ("dir/**", "dir/dir2/file/", true),
            ("**/dir", "dir", true),
            ("**/dir", "dir/file", true),
            ("**/dir2/*", "dir/dir2/file", true),
            ("**/dir2/*", "dir/dir2/file/", true),
            ("**/dir2/**", "dir/dir2/dir3/file", true),
            ("**/dir2/**", "dir/dir2/dir3/file/", true),
            ("**file", "file", true),
            ("**file", "dir/file", true),
            ("**/file", "dir/file", true),
            ("**file", "dir/dir/file", true),
            ("**/file", "dir/dir/file", true),
            ("**/file*", "dir/dir/file", true),
            ("**/file*", "dir/dir/file.txt", true),
            ("**/file*txt", "dir/dir/file.txt", true),
            ("**/file*.txt", "dir/dir/file.txt", true),
            ("**/file*.txt*", "dir/dir/file.txt", true),
            ("**/**/*.txt", "dir/dir/file.txt", true),
            ("**/**/*.txt2", "dir/dir/file.txt", false),
            ("**/*.txt", "file.txt", true),
            ("**/**/*.txt", "file.txt", true),
            ("a**/*.txt", "a/file.txt", true),
            ("a**/*.txt", "a/dir/file.txt", true),
            ("a**/*.txt", "a/dir/dir/file.txt", true),
            ("a/*.txt", "a/dir/file.txt", false),
            ("a/*.txt", "a/file.txt", true),
            ("a/*.txt**", "a/file.txt", true),
            ("a[b-d]e", "ae", false),
            ("a[b-d]e", "ace", true),
            ("a[b-d]e", "aae", false),
            ("a[^b-d]e", "aze", true),
            (".*", ".foo", true),
            (".*", "foo", false),
            ("abc.def", "abcdef", false),
            ("abc.def", "abc.def", true),
            ("abc.def", "abcZdef", false),
            ("abc?def", "abcZdef", true),
            ("abc?def", "abcdef", false),
            ("a\\\\", "a\\", true),
            ("**/foo/bar", "foo/bar", true),
            ("**/foo/bar", "dir/foo/bar", true),
            ("**/foo/bar", "dir/dir2/foo/bar", true),
            ("abc/**", "abc", false),
            ("abc/**", "abc/def", true),
            ("abc/**", "abc/def/ghi", true),
            ("**/.foo", ".foo", true),
            ("**/.foo", "bar.foo", false),
            ("a(b)c/def", "a(b)c/def", true),
            ("a(b)c/def", "a(b)c/xyz", false),
            ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
            (
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            (
                "dist/*.whl",
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                true,
            ),
            ("a\\*b", "a*b", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                m(&[pattern], text),
                *want,
                "pattern={pattern:?} text={text:?}"
            );
        }
    }

    /// patternmatcher_test.go `TestMatchesOrParentMatches` / `TestMatchesWithMalformedPatterns`.
    #[test]
    fn go_parent_and_exclusion_cases() {
        assert!(m(&["fileutils.go"], "fileutils.go"));
        assert!(!m(&["*.go", "!fileutils.go"], "fileutils.go"));
        assert!(m(&["*.go"], "fileutils.go"));
        assert!(m(&["docs"], "docs/README.md"));
        assert!(!m(&["docs", "!docs/README.md"], "docs/README.md"));
        assert!(!m(&["**", "!**"], "docs/README.md"));
        assert!(m(&["docs/**"], "docs/a/b/c"));
        assert!(!m(&["*.md"], "docs/README.md"));
        assert!(
            m(&["docs/*"], "docs/a/b"),
            "a parent match matches children"
        );
        assert!(!m(&["docs"], "."), "the context root is never excluded");
        assert_eq!(
            PatternMatcher::new(&["["]).unwrap_err(),
            PatternError::BadPattern {
                pattern: "[".into()
            }
        );
        assert_eq!(
            PatternMatcher::new(&["!"]).unwrap_err(),
            PatternError::IllegalExclusion
        );
        assert!(PatternMatcher::new(&["docs/[a-"]).is_err());
    }

    #[test]
    fn parent_results_follow_buildkit_walk() {
        let pm = PatternMatcher::new(&["docs", "!docs/keep"]).unwrap();
        let (d, info) = pm.matches_using_parent_results("docs", &MatchInfo::default());
        assert!(d);
        let (k, kinfo) = pm.matches_using_parent_results("docs/keep", &info);
        assert!(!k);
        let (kk, _) = pm.matches_using_parent_results("docs/keep/x", &kinfo);
        assert!(!kk, "children of a re-included dir stay included");
        let (o, _) = pm.matches_using_parent_results("docs/other", &info);
        assert!(o);
    }

    /// patternmatcher_test.go `compileTests` (slash flavour).
    #[test]
    fn go_compile_table() {
        let cases: &[(&str, Kind, &str)] = &[
            ("*", Kind::Regexp, "^[^/]*$"),
            ("file*", Kind::Regexp, "^file[^/]*$"),
            ("*file", Kind::Regexp, "^[^/]*file$"),
            ("a*/b", Kind::Regexp, "^a[^/]*/b$"),
            ("**", Kind::Suffix, ""),
            ("**/**", Kind::Regexp, "^(.*/)?.*$"),
            ("dir/**", Kind::Prefix, ""),
            ("**/dir", Kind::Suffix, ""),
            ("**/dir2/*", Kind::Regexp, "^(.*/)?dir2/[^/]*$"),
            ("**/dir2/**", Kind::Regexp, "^(.*/)?dir2/.*$"),
            ("**file", Kind::Suffix, ""),
            ("**/file*txt", Kind::Regexp, "^(.*/)?file[^/]*txt$"),
            ("**/**/*.txt", Kind::Regexp, "^(.*/)?(.*/)?[^/]*\\.txt$"),
            ("a[b-d]e", Kind::Regexp, "^a[b-d]e$"),
            (".*", Kind::Regexp, "^\\.[^/]*$"),
            ("abc.def", Kind::Exact, ""),
            ("abc?def", Kind::Regexp, "^abc[^/]def$"),
            ("**/foo/bar", Kind::Suffix, ""),
            ("a(b)c/def", Kind::Exact, ""),
            ("a.|)$(}+{bc", Kind::Exact, ""),
        ];
        for (pattern, kind, re) in cases {
            let (k, r) = go_regexp(&gopath::clean(pattern));
            assert_eq!(&k, kind, "{pattern}");
            if k == Kind::Regexp {
                assert_eq!(&r, re, "{pattern}");
            }
        }
    }

    /// patternmatcher_test.go `multiPatternTests`, through both evaluation strategies.
    #[test]
    fn go_multi_pattern_table() {
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        for (patterns, text, want) in cases {
            let pm = PatternMatcher::new(patterns).unwrap();
            assert_eq!(
                pm.matches_or_parent_matches(text),
                *want,
                "{patterns:?} {text}"
            );
            let mut info = MatchInfo::default();
            let mut prefix = String::new();
            let mut res = false;
            for seg in text.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(seg);
                (res, info) = pm.matches_using_parent_results(&prefix, &info);
            }
            assert_eq!(res, *want, "parent results: {patterns:?} {text}");
            let (nc, _) = pm.matches_using_parent_results(text, &MatchInfo::default());
            assert_eq!(nc, *want, "no context: {patterns:?} {text}");
        }
    }

    #[test]
    fn match_kinds_follow_go_compile() {
        let kind = |p: &str| match compile(p).unwrap() {
            MatchKind::Exact => "exact",
            MatchKind::Prefix(_) => "prefix",
            MatchKind::Suffix(_) => "suffix",
            MatchKind::Regexp(_) => "regexp",
        };
        assert_eq!(kind("a/b"), "exact");
        assert_eq!(kind("a/**"), "prefix");
        assert_eq!(kind("**/a"), "suffix");
        assert_eq!(kind("**"), "suffix");
        assert_eq!(kind("a*/**"), "regexp");
        assert_eq!(kind("a.b"), "exact");
    }

    proptest::proptest! {
        /// Every pattern that Go's rules accept translates to a regex Rust accepts (only
        /// `\p{Name}` classes are passed through unchecked).
        #[test]
        fn accepted_patterns_always_compile(p in "[a-c*?(){}|^$.+:\\[\\]\\\\0-9xdwbQ,-]{0,12}") {
            if let Err(e @ PatternError::RegexEngine { .. }) = PatternMatcher::compile_one(&p) {
                proptest::prop_assert!(false, "{p:?}: {e}");
            }
        }

        #[test]
        fn never_panics(patterns in proptest::collection::vec("[a-c*?\\[\\]!^\\\\/.-]{0,6}", 0..4), path in "[a-c./]{1,8}") {
            if let Ok(pm) = PatternMatcher::new(&patterns) {
                let _ = pm.matches_or_parent_matches(&path);
                let _ = pm.matches_using_parent_results(&path, &MatchInfo::default());
            }
        }
    }
}

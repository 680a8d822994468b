//! `.dockerignore` files: reading them as Docker does and answering "is this path excluded?".
//!
//! Reading follows `moby/patternmatcher/ignorefile.ReadAll`: a UTF-8 BOM on the first line is
//! dropped, lines starting with `#` (before trimming) are comments, lines are trimmed, a leading
//! `!` marks an exception (the rest is trimmed again), the pattern is `filepath.Clean`ed and a
//! leading `/` is dropped. `<Dockerfile-name>.dockerignore` next to the Dockerfile takes
//! precedence over `<context>/.dockerignore` (BuildKit's Dockerfile frontend).
//!
//! The directory-skipping decision ([`IgnoreRules::may_include_under`]) mirrors
//! `tonistiigi/fsutil`'s walker: an excluded directory is skipped unless some exception pattern
//! could match inside it. When an exception contains wildcards (other than a trailing `/*` or
//! `/**`) that cannot be decided from prefixes, so excluded directories are always walked.

use std::path::{Path, PathBuf};

use super::gopath;
use super::patternmatcher::{MatchInfo, PatternMatcher};
use super::ContextError;

/// Compiled `.dockerignore` rules.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    matcher: PatternMatcher,
    origin: Option<PathBuf>,
    /// fsutil's `onlyPrefixExcludeExceptions`: every exception is a literal path prefix.
    only_prefix_exceptions: bool,
}

impl IgnoreRules {
    /// Rules that exclude nothing (no `.dockerignore`).
    pub fn empty() -> Self {
        IgnoreRules {
            only_prefix_exceptions: true,
            ..Default::default()
        }
    }

    /// Parses `.dockerignore` text; `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ContextError> {
        let mut patterns = Vec::new();
        for (idx, raw) in text.split('\n').enumerate() {
            // bufio.ScanLines drops a trailing `\r`.
            let mut line = raw.strip_suffix('\r').unwrap_or(raw);
            if idx == 0 {
                line = line.strip_prefix('\u{feff}').unwrap_or(line);
            }
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let invert = pattern.starts_with('!');
            if invert {
                pattern = pattern[1..].trim();
            }
            let mut normalized = String::new();
            if !pattern.is_empty() {
                normalized = gopath::clean(pattern);
                if normalized.len() > 1 && normalized.starts_with('/') {
                    normalized.remove(0);
                }
            }
            if invert {
                normalized.insert(0, '!');
            }
            patterns.push((idx + 1, normalized));
        }
        let mut compiled = Vec::with_capacity(patterns.len());
        for (line, pattern) in patterns {
            match PatternMatcher::compile_one(&pattern) {
                Ok(Some(p)) => compiled.push(p),
                Ok(None) => {}
                Err(source) => {
                    return Err(ContextError::BadIgnorePattern {
                        path: origin.to_path_buf(),
                        line,
                        pattern,
                        source,
                    })
                }
            }
        }
        let matcher = PatternMatcher::from_patterns(compiled);
        let only_prefix_exceptions = matcher
            .patterns()
            .iter()
            .filter(|p| p.is_exclusion())
            .all(|p| !gopath::has_meta(pattern_without_trailing_glob(p.as_str())));
        Ok(IgnoreRules {
            matcher,
            origin: Some(origin.to_path_buf()),
            only_prefix_exceptions,
        })
    }

    /// Loads the rules for a build: `<dockerfile>.dockerignore` next to the Dockerfile if it
    /// exists, else `<context_dir>/.dockerignore`, else no rules.
    pub fn load(context_dir: &Path, dockerfile: &Path) -> Result<Self, ContextError> {
        let mut candidates = Vec::new();
        if let Some(name) = dockerfile.file_name() {
            let mut specific = name.to_os_string();
            specific.push(".dockerignore");
            candidates.push(dockerfile.with_file_name(specific));
        }
        candidates.push(context_dir.join(".dockerignore"));
        for path in candidates {
            match std::fs::read(&path) {
                Ok(bytes) => {
                    let text = String::from_utf8(bytes)
                        .map_err(|_| ContextError::IgnoreNotUtf8 { path: path.clone() })?;
                    return Self::parse(&text, &path);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(ContextError::ReadIgnore { path, source }),
            }
        }
        Ok(Self::empty())
    }

    /// The file the rules came from, if any.
    pub fn origin(&self) -> Option<&Path> {
        self.origin.as_deref()
    }

    /// The underlying matcher.
    pub fn matcher(&self) -> &PatternMatcher {
        &self.matcher
    }

    /// True if the slash-separated context-relative path is excluded (a pattern matches it or
    /// one of its parents and no later exception re-includes it). `is_dir` does not change the
    /// answer (Docker's matcher ignores it) and is accepted for callers' clarity. The context
    /// root (`.` or empty) is never excluded.
    pub fn is_excluded(&self, rel_path: &str, _is_dir: bool) -> bool {
        let rel = gopath::clean(rel_path);
        if rel == "." || self.matcher.patterns().is_empty() {
            return false;
        }
        self.matcher.matches_or_parent_matches(&rel)
    }

    /// BuildKit's walker decision, with the parent directory's match info.
    pub(crate) fn excluded_in_walk(&self, rel_path: &str, parent: &MatchInfo) -> (bool, MatchInfo) {
        if self.matcher.patterns().is_empty() {
            return (false, MatchInfo::default());
        }
        self.matcher.matches_using_parent_results(rel_path, parent)
    }

    /// True if some exception could re-include something below the excluded directory
    /// `rel_dir`, so the scanner must still walk it (fsutil's `SkipDir` logic).
    pub fn may_include_under(&self, rel_dir: &str) -> bool {
        if !self.matcher.has_exclusions() {
            return false;
        }
        if !self.only_prefix_exceptions {
            return true;
        }
        let dir_slash = format!("{}/", gopath::clean(rel_dir));
        self.matcher
            .patterns()
            .iter()
            .filter(|p| p.is_exclusion())
            .any(|p| format!("{}/", p.as_str()).starts_with(&dir_slash))
    }
}

/// fsutil's `patternWithoutTrailingGlob`.
fn pattern_without_trailing_glob(p: &str) -> &str {
    let p = p.strip_suffix("/**").unwrap_or(p);
    p.strip_suffix("/*").unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text, Path::new(".dockerignore")).unwrap()
    }

    /// The example from docs.docker.com "Build context" → ".dockerignore files".
    #[test]
    fn docker_docs_example() {
        let r = rules("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
        assert!(r.is_excluded("somedir/temporary.txt", false));
        assert!(r.is_excluded("somedir/temp", true));
        assert!(r.is_excluded("somedir/subdir/temporary.txt", false));
        assert!(r.is_excluded("tempa", false));
        assert!(r.is_excluded("tempb", false));
        assert!(!r.is_excluded("temporary.txt", false));
        assert!(!r.is_excluded("a/b/c/temp", false));
        assert!(
            !r.is_excluded("# comment", false),
            "the comment line is not a pattern"
        );
    }

    /// Docs: "**/*.go excludes all files that end with .go found anywhere in the build context".
    #[test]
    fn docker_docs_double_star() {
        let r = rules("**/*.go");
        assert!(r.is_excluded("main.go", false));
        assert!(r.is_excluded("a/b/c/main.go", false));
        assert!(!r.is_excluded("a/b/c/main.rs", false));
    }

    /// Docs: exceptions with `!`, last matching line wins.
    #[test]
    fn docker_docs_exceptions_last_match_wins() {
        let r = rules("*.md\n!README*.md\nREADME-secret.md");
        assert!(r.is_excluded("CHANGES.md", false));
        assert!(!r.is_excluded("README.md", false));
        assert!(r.is_excluded("README-secret.md", false));

        let r = rules("*.md\nREADME-secret.md\n!README*.md");
        assert!(!r.is_excluded("README-secret.md", false));
    }

    /// Docs: the root is `/`-agnostic; leading and trailing slashes are cleaned away.
    #[test]
    fn docker_docs_leading_slash_and_clean() {
        let r = rules("/foo/bar\n  baz/../qux/  \n./dir//sub/");
        assert!(r.is_excluded("foo/bar", false));
        assert!(
            r.is_excluded("foo/bar/inner", false),
            "a parent match excludes children"
        );
        assert!(r.is_excluded("qux", true));
        assert!(r.is_excluded("dir/sub", true));
        assert!(!r.is_excluded("baz", true));
    }

    #[test]
    fn bom_crlf_comments_and_whitespace() {
        let r = rules("\u{feff}a\r\n  # not a comment after spaces\r\n#b\r\n! c\r\n");
        assert!(r.is_excluded("a", false));
        assert!(!r.is_excluded("b", false), "# at column 0 is a comment");
        assert!(r.is_excluded("# not a comment after spaces", false));
        assert_eq!(r.matcher().patterns()[2].as_str(), "c");
        assert!(r.matcher().patterns()[2].is_exclusion());
    }

    #[test]
    fn bad_pattern_names_file_and_line() {
        let err = IgnoreRules::parse("ok\n\n[z-", Path::new("/ctx/.dockerignore")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/ctx/.dockerignore:3"), "{msg}");
        assert!(msg.contains("[z-"), "{msg}");
        let err = IgnoreRules::parse("a\n!", Path::new("x")).unwrap_err();
        assert!(err.to_string().starts_with("x:2:"), "{err}");
    }

    #[test]
    fn error_messages_golden() {
        let errors: Vec<String> = ["a\n[z-", "!", "x/\\", "ok\n\n  ! \n", "a?{1001}"]
            .iter()
            .map(|text| {
                let err = IgnoreRules::parse(text, Path::new("ctx/.dockerignore")).unwrap_err();
                let mut msg = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(s) = source {
                    msg.push_str(&format!("\n  caused by: {s}"));
                    source = s.source();
                }
                msg
            })
            .collect();
        insta::assert_snapshot!(errors.join("\n"));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(text in "[a-c*?!#/\\[\\]\\\\ \n\r\u{feff}.{}|-]{0,40}") {
            if let Ok(r) = IgnoreRules::parse(&text, Path::new(".dockerignore")) {
                let _ = r.is_excluded("a/b", false);
                let _ = r.may_include_under("a");
            }
        }
    }

    #[test]
    fn may_include_under_follows_fsutil() {
        let r = rules("node_modules\n");
        assert!(!r.may_include_under("node_modules"));
        let r = rules("node_modules\n!node_modules/keep/me.js");
        assert!(r.may_include_under("node_modules"));
        assert!(r.may_include_under("node_modules/keep"));
        assert!(!r.may_include_under("node_modules/other"));
        let r = rules("node_modules\n!node_modules/keep/**");
        assert!(r.may_include_under("node_modules"));
        assert!(!r.may_include_under("node_modules/other"));
        let r = rules("node_modules\n!**/*.keep");
        assert!(
            r.may_include_under("node_modules/other"),
            "wildcard exception: must walk"
        );
    }

    #[test]
    fn load_prefers_dockerfile_specific_ignore() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "generic\n").unwrap();
        std::fs::create_dir(dir.path().join("build")).unwrap();
        let df = dir.path().join("build/app.Dockerfile");
        std::fs::write(&df, "FROM scratch\n").unwrap();
        let r = IgnoreRules::load(dir.path(), &df).unwrap();
        assert!(r.is_excluded("generic", false));
        std::fs::write(
            dir.path().join("build/app.Dockerfile.dockerignore"),
            "specific\n",
        )
        .unwrap();
        let r = IgnoreRules::load(dir.path(), &df).unwrap();
        assert!(r.is_excluded("specific", false));
        assert!(!r.is_excluded("generic", false));
        assert_eq!(
            r.origin(),
            Some(
                dir.path()
                    .join("build/app.Dockerfile.dockerignore")
                    .as_path()
            )
        );
        let none = IgnoreRules::load(
            &dir.path().join("build"),
            Path::new("/nonexistent/Dockerfile"),
        )
        .unwrap();
        assert!(!none.is_excluded("anything", false));
    }
}

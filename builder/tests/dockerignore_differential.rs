//! Differential test: rbuild's `.dockerignore` matcher against Docker's own Go implementation.
//!
//! Builds `testdata/patternmatcher-diff/main.go` against Debian's
//! `golang-github-moby-patternmatcher-dev` (offline, GOPATH mode), feeds it a few thousand
//! deterministic pseudo-random pattern lists and paths, and requires identical answers from
//! `MatchesOrParentMatches` and from `MatchesUsingParentResults` as BuildKit's walker uses it.
//!
//! Without `go` or the package the test is skipped with a message, unless
//! `RBUILD_REQUIRE_DIFFERENTIAL=1` is set, in which case it fails.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rbuild::context::gopath;
use rbuild::context::patternmatcher::{MatchInfo, PatternError, PatternMatcher};
use serde::{Deserialize, Serialize};

const GOPATH: &str = "/usr/share/gocode";
const CASES: usize = 3000;

#[derive(Serialize)]
struct Query {
    patterns: Vec<String>,
    paths: Vec<String>,
}

#[derive(Deserialize, Debug, PartialEq)]
struct Answer {
    error: bool,
    or: Option<Vec<bool>>,
    parent: Option<Vec<bool>>,
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const NAMES: &[&str] = &[
    "a",
    "b",
    "c",
    "ab",
    "abc",
    "ba",
    "a.b",
    ".a",
    "a.go",
    "x.txt",
    "é",
    "a b",
    "d1",
    "$",
    "(x)",
    "]",
    "[",
    "^",
    "+",
    "a*b",
    "node_modules",
    "docs",
];

const TAME_ATOMS: &[&str] = &[
    "a",
    "b",
    "c",
    ".",
    "*",
    "*",
    "?",
    "**",
    "[ab]",
    "[^a]",
    "[a-c]",
    "\\*",
    "\\.",
    "go",
    "x.txt",
    "docs",
    "node_modules",
    ".a",
    "é",
];

const WILD_ATOMS: &[&str] = &[
    "a",
    "b",
    "c",
    ".",
    "*",
    "*",
    "?",
    "**",
    "[ab]",
    "[^a]",
    "[a-c]",
    "[b-a]",
    "\\*",
    "\\.",
    "[*]",
    "[?]",
    "^",
    "$",
    "(",
    ")",
    "+",
    "{",
    "}",
    "]",
    "[",
    "\\",
    "\\d",
    "\\w",
    "\\<",
    "\\e",
    "\\x41",
    "[[:alpha:]]",
    "[\\w]",
    "[\\]]",
    "[a&&b]",
    "é",
    " ",
    "go",
    "x.txt",
    "[[]",
    "[a-]",
    "|",
    "{2}",
    "{1,3}",
    "{,}",
    "{1001}",
    "{x}",
];

fn random_pattern(rng: &mut Rng) -> String {
    let mut p = String::new();
    match rng.below(10) {
        0 => p.push('!'),
        1 => p.push('/'),
        2 => p.push_str("./"),
        3 => p.push_str("! "),
        _ => {}
    }
    let segments = 1 + rng.below(3);
    for s in 0..segments {
        if s > 0 {
            p.push_str(if rng.below(8) == 0 { "/../" } else { "/" });
        }
        if rng.below(2) == 0 {
            // Reuse a real name so patterns often match.
            p.push_str(rng.pick(NAMES));
        } else {
            let atoms = if rng.below(4) == 0 {
                WILD_ATOMS
            } else {
                TAME_ATOMS
            };
            for _ in 0..1 + rng.below(3) {
                p.push_str(rng.pick(atoms));
            }
        }
    }
    if rng.below(8) == 0 {
        p.push('/');
    }
    if rng.below(12) == 0 {
        p.push_str("  ");
    }
    p
}

fn random_path(rng: &mut Rng) -> String {
    let depth = 1 + rng.below(4);
    (0..depth)
        .map(|_| rng.pick(NAMES))
        .collect::<Vec<_>>()
        .join("/")
}

/// `Err(Some(pattern))`: rejected only because Go >= 1.20's `filepath.Match` validates the
/// rest of a pattern after a mismatch, which Debian 12's Go 1.19 does not do.
/// A path that the pattern likely matches: wildcards replaced by plausible text.
fn instantiate(rng: &mut Rng, pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern
        .trim()
        .trim_start_matches(['!', ' ', '/', '.'])
        .chars()
        .peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                for _ in 0..rng.below(3) {
                    out.push_str(rng.pick(NAMES));
                    out.push('/');
                }
            }
            '*' => out.push_str(rng.pick(&["", "a", "ab", "x.txt"])),
            '?' => out.push('b'),
            '[' => {
                for c in chars.by_ref() {
                    if c == ']' {
                        break;
                    }
                }
                out.push('a');
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    let cleaned = gopath::clean(out.trim_matches('/'));
    if cleaned.starts_with("..") || cleaned == "." {
        "a".to_string()
    } else {
        cleaned
    }
}

fn rust_answer(q: &Query) -> Result<Answer, String> {
    let pm = match PatternMatcher::new(&q.patterns) {
        Ok(pm) => pm,
        Err(PatternError::BadPattern { pattern })
            if gopath::matches_go119(&pattern, ".").is_ok() =>
        {
            return Err(pattern)
        }
        Err(_) => {
            return Ok(Answer {
                error: true,
                or: None,
                parent: None,
            })
        }
    };
    let or = q
        .paths
        .iter()
        .map(|p| pm.matches_or_parent_matches(p))
        .collect();
    let parent = q
        .paths
        .iter()
        .map(|p| {
            let mut info = MatchInfo::default();
            let mut prefix = String::new();
            let mut res = false;
            for seg in p.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(seg);
                (res, info) = pm.matches_using_parent_results(&prefix, &info);
            }
            res
        })
        .collect();
    Ok(Answer {
        error: false,
        or: Some(or),
        parent: Some(parent),
    })
}

/// Builds the Go helper, or says why it cannot.
fn build_go_helper(out_dir: &Path) -> Result<PathBuf, String> {
    let pkg = Path::new(GOPATH).join("src/github.com/moby/patternmatcher/patternmatcher.go");
    if !pkg.exists() {
        return Err(format!(
            "{} is missing (apt-get install golang-github-moby-patternmatcher-dev)",
            pkg.display()
        ));
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/patternmatcher-diff");
    let bin = out_dir.join("pmdiff");
    let output = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GOPATH", GOPATH)
        .env("GO111MODULE", "off")
        .env("GOCACHE", out_dir.join("gocache"))
        .env("GOFLAGS", "")
        .output()
        .map_err(|e| format!("cannot run `go` (apt-get install golang-go): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "go build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(bin)
}

#[test]
fn dockerignore_matches_moby_patternmatcher() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = match build_go_helper(tmp.path()) {
        Ok(bin) => bin,
        Err(why) => {
            if std::env::var("RBUILD_REQUIRE_DIFFERENTIAL").as_deref() == Ok("1") {
                panic!("differential test required but unavailable: {why}");
            }
            eprintln!("skipping the .dockerignore differential test: {why}");
            return;
        }
    };

    let mut rng = Rng(0x5EED_D0C4_E21C_0001);
    let queries: Vec<Query> = (0..CASES)
        .map(|_| {
            let patterns: Vec<String> = (0..1 + rng.below(4))
                .map(|_| random_pattern(&mut rng))
                .collect();
            let mut paths: Vec<String> = (0..5).map(|_| random_path(&mut rng)).collect();
            for _ in 0..3 {
                let p = patterns[rng.below(patterns.len())].clone();
                paths.push(instantiate(&mut rng, &p));
            }
            Query { patterns, paths }
        })
        .collect();

    let mut child = Command::new(&bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::to_vec(&queries).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(output.status.success(), "Go helper failed");
    let go: Vec<Answer> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(go.len(), queries.len());

    let mut mismatches = Vec::new();
    let mut errors = 0;
    let mut matched = 0;
    let mut go119_only = 0;
    for (q, want) in queries.iter().zip(&go) {
        let got = match rust_answer(q) {
            Ok(got) => got,
            Err(_pattern) => {
                // Go 1.19's filepath.Match accepts it; newer Go (and rbuild) reject it.
                go119_only += 1;
                continue;
            }
        };
        errors += usize::from(want.error);
        matched += want.or.iter().flatten().filter(|m| **m).count();
        if &got != want {
            mismatches.push(format!(
                "patterns={:?} paths={:?}\n  go:   {want:?}\n  rust: {got:?}",
                q.patterns, q.paths
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {CASES} cases differ from moby/patternmatcher:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "{CASES} cases: {errors} malformed, {matched} matches, {go119_only} only valid in Go 1.19"
    );
    assert!(
        go119_only < CASES / 10,
        "too many cases skipped: {go119_only}"
    );
    // Guard against a generator that tests nothing interesting.
    assert!(
        errors > CASES / 50,
        "too few malformed patterns generated: {errors}"
    );
    assert!(matched > CASES, "too few matches generated: {matched}");
}

//! Git metadata of the build context: commit, dirtiness, commit time and origin URL.
//!
//! These feed the default tag (`<sha>` or `<sha>-dirty` when no `--tag` is given), the OCI
//! annotations `org.opencontainers.image.revision` / `.source`, and the reproducible build
//! time (`SOURCE_DATE_EPOCH`, else the commit time of HEAD, else now: see [`build_epoch`]).
//!
//! We run the `git` binary instead of linking a git library: it honours every repository
//! format, worktree and config the user's own git does, and the five queries are cheap.
//!
//! Decisions:
//! - The user's and system git config are respected (no `GIT_CONFIG_NOSYSTEM`): rbuild should
//!   see the repository exactly as `git` does for the same user.
//! - We do NOT pass `-c safe.directory=*`. Git refuses a repository owned by another user
//!   ("dubious ownership") because that repository's `.git/config` can run programs (e.g.
//!   `core.fsmonitor` during `git status`); overriding the check would let a hostile checkout
//!   execute code as the user running rbuild. Instead that refusal becomes
//!   [`GitError::DubiousOwnership`], whose message says how to trust the directory (CI runners
//!   that check out as another uid typically need one `git config --global --add
//!   safe.directory <dir>`). Callers may turn it into a warning and build without git data.
//! - `GIT_OPTIONAL_LOCKS=0`, so `git status` never takes `index.lock` (it would otherwise race
//!   with the user's git commands, and fail on read-only checkouts).
//! - `LC_ALL=C`, so the messages we recognise ("not a git repository") are not translated.
//! - "Dirty" means tracked files anywhere in the work tree differ from HEAD (staged or not);
//!   untracked files do not count, as they are not part of the commit the tag names.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What the build needs to know about the git work tree holding the context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitInfo {
    /// Full hex object name of HEAD.
    pub commit: String,
    /// Tracked files differ from HEAD.
    pub dirty: bool,
    /// Committer time of HEAD, Unix seconds.
    pub commit_time: i64,
    /// `remote.origin.url` with credentials removed ([`strip_credentials`]).
    pub origin_url: Option<String>,
    /// The work tree's top directory (its name is the default repository name).
    pub toplevel: Option<PathBuf>,
}

/// Why git metadata could not be read (for a context that is inside a git work tree).
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("reading git metadata of {dir}: running `git {args}` failed")]
    Spawn {
        dir: PathBuf,
        args: String,
        #[source]
        source: io::Error,
    },
    #[error("reading git metadata of {dir}: `git {args}` failed ({status}): {stderr}")]
    Failed {
        dir: PathBuf,
        args: String,
        status: String,
        stderr: String,
    },
    #[error(
        "reading git metadata of {dir}: git refuses the repository because it is owned by \
         another user; if you trust it, run `git config --global --add safe.directory {toplevel}`"
    )]
    DubiousOwnership { dir: PathBuf, toplevel: String },
    #[error("reading git metadata of {dir}: `git {args}` printed {output:?}, expected {expected}")]
    BadOutput {
        dir: PathBuf,
        args: String,
        output: String,
        expected: &'static str,
    },
    #[error(
        "SOURCE_DATE_EPOCH={value:?} is not valid: it must be a non-negative whole number of \
         seconds since 1970-01-01 UTC, like the output of `date +%s`"
    )]
    BadSourceDateEpoch { value: String },
}

/// Git metadata of the work tree containing `context_dir`; `Ok(None)` when the directory is not
/// in a work tree, the repository has no commits yet, or `git` is not installed.
pub fn git_info(context_dir: &Path) -> Result<Option<GitInfo>, GitError> {
    git_info_with(OsStr::new("git"), context_dir)
}

/// [`git_info`] with the git program named (tests use a missing one).
fn git_info_with(git: &OsStr, dir: &Path) -> Result<Option<GitInfo>, GitError> {
    let run = |args: &[&str]| run_git(git, dir, args);

    let toplevel = match run(&["rev-parse", "--show-toplevel"]) {
        Ok(Some(out)) if out.status.success() => text(&out.stdout),
        Ok(Some(out)) => {
            let stderr = text(&out.stderr);
            if stderr.contains("dubious ownership") {
                return Err(GitError::DubiousOwnership {
                    dir: dir.to_owned(),
                    toplevel: safe_directory_hint(&stderr, dir),
                });
            }
            // Not a repository, or inside `.git` / a bare repository: no work tree to describe.
            if stderr.contains("not a git repository") || stderr.contains("work tree") {
                return Ok(None);
            }
            return Err(failed(dir, &["rev-parse", "--show-toplevel"], &out));
        }
        Ok(None) => return Ok(None), // git is not installed
        Err(e) => return Err(e),
    };
    if toplevel.is_empty() {
        return Ok(None);
    }

    // `--verify --quiet` exits 1 silently when HEAD does not name a commit (no commits yet).
    let head_args = ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"];
    let head = checked(run(&head_args)?, dir, &head_args, true)?;
    let Some(head) = head else {
        return Ok(None);
    };
    let commit = text(&head.stdout);
    if commit.len() < 40 || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad_output(dir, &head_args, &commit, "a full commit hash"));
    }

    let status_args = ["status", "--porcelain", "--untracked-files=no"];
    let status = checked(run(&status_args)?, dir, &status_args, false)?
        .expect("checked without allow_exit_1 returns Some or Err");
    let dirty = !text(&status.stdout).is_empty();

    let time_args = ["show", "-s", "--format=%ct", "HEAD"];
    let time = checked(run(&time_args)?, dir, &time_args, false)?
        .expect("checked without allow_exit_1 returns Some or Err");
    let time_text = text(&time.stdout);
    let commit_time: i64 = time_text
        .parse()
        .map_err(|_| bad_output(dir, &time_args, &time_text, "Unix seconds"))?;

    // `config --get` exits 1 when the key is not set.
    let origin_args = ["config", "--get", "remote.origin.url"];
    let origin_url = checked(run(&origin_args)?, dir, &origin_args, true)?
        .map(|out| text(&out.stdout))
        .filter(|url| !url.is_empty())
        .map(|url| strip_credentials(&url));

    Ok(Some(GitInfo {
        commit,
        dirty,
        commit_time,
        origin_url,
        toplevel: Some(PathBuf::from(&toplevel)),
    }))
}

/// Runs `git -C dir args…`; `Ok(None)` when the git program does not exist.
fn run_git(git: &OsStr, dir: &Path, args: &[&str]) -> Result<Option<Output>, GitError> {
    let result = Command::new(git)
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .stdin(std::process::Stdio::null())
        .output();
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(GitError::Spawn {
            dir: dir.to_owned(),
            args: args.join(" "),
            source,
        }),
    }
}

/// The output of a successful run; `Ok(None)` for exit status 1 when `allow_exit_1` (git's
/// "not found" answer for `rev-parse --verify --quiet` and `config --get`) or when git vanished.
fn checked(
    out: Option<Output>,
    dir: &Path,
    args: &[&str],
    allow_exit_1: bool,
) -> Result<Option<Output>, GitError> {
    let Some(out) = out else {
        return Err(GitError::Spawn {
            dir: dir.to_owned(),
            args: args.join(" "),
            source: io::Error::new(io::ErrorKind::NotFound, "git disappeared during the build"),
        });
    };
    if out.status.success() {
        return Ok(Some(out));
    }
    if allow_exit_1 && out.status.code() == Some(1) {
        return Ok(None);
    }
    Err(failed(dir, args, &out))
}

fn failed(dir: &Path, args: &[&str], out: &Output) -> GitError {
    GitError::Failed {
        dir: dir.to_owned(),
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: text(&out.stderr),
    }
}

fn bad_output(dir: &Path, args: &[&str], output: &str, expected: &'static str) -> GitError {
    GitError::BadOutput {
        dir: dir.to_owned(),
        args: args.join(" "),
        output: output.to_owned(),
        expected,
    }
}

/// Git's own suggestion names the directory to trust (`safe.directory '/path'`); fall back to
/// the context directory.
fn safe_directory_hint(stderr: &str, dir: &Path) -> String {
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("git config --global --add safe.directory ")
        })
        .map(|s| s.trim().trim_matches('\'').to_owned())
        .unwrap_or_else(|| dir.display().to_string())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).trim().to_owned()
}

/// `url` without credentials, for the `org.opencontainers.image.source` annotation.
///
/// - `scheme://user:password@host/…` loses the whole `user:password@` (for any scheme);
/// - `http(s)://token@host/…` loses `token@` too: on HTTP a lone user name is usually a token;
/// - `ssh://git@host/…` and scp-like `git@host:path` keep the user, which is not a secret
///   (authentication is by key) and is needed to use the URL;
/// - local paths, `file://` URLs and anything unparseable come back unchanged.
pub fn strip_credentials(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let Some(at) = authority.rfind('@') else {
            return url.to_owned();
        };
        let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
        let keeps_user = matches!(
            scheme.to_ascii_lowercase().as_str(),
            "ssh" | "git+ssh" | "ssh+git"
        );
        if keeps_user && !userinfo.contains(':') {
            return url.to_owned();
        }
        return format!("{scheme}://{host}{path}");
    }
    // scp-like `[user@]host:path` (git's rule: a ':' before any '/'). A `user:password@` there
    // is not valid syntax, but if someone wrote it the password must still go.
    let head = &url[..url.find('/').unwrap_or(url.len())];
    if let Some(at) = head.rfind('@') {
        if head[..at].contains(':') && head[at + 1..].contains(':') {
            return url[at + 1..].to_owned();
        }
    }
    url.to_owned()
}

/// The default image tag: the full commit, with `-dirty` when tracked files differ from HEAD.
pub fn default_tag(info: &GitInfo) -> String {
    if info.dirty {
        format!("{}-dirty", info.commit)
    } else {
        info.commit.clone()
    }
}

/// The timestamp for `created`, history entries and file mtimes rbuild writes:
/// `SOURCE_DATE_EPOCH` when set (reproducible-builds.org spec: an integer of seconds; malformed
/// values are an error, and an empty value counts as unset like the spec's shell examples),
/// else the commit time of HEAD, else `now`.
pub fn build_epoch(
    source_date_epoch_env: Option<&str>,
    git: Option<&GitInfo>,
    now: i64,
) -> Result<i64, GitError> {
    match source_date_epoch_env {
        Some(value) if !value.is_empty() => {
            let bad = || GitError::BadSourceDateEpoch {
                value: value.to_owned(),
            };
            // `parse` alone would accept a leading '+'; `date +%s` never prints one.
            if !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            value.parse::<i64>().map_err(|_| bad())
        }
        _ => Ok(git.map_or(now, |g| g.commit_time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const AUTHOR_TIME: i64 = 1_600_000_000;
    const COMMIT_TIME: i64 = 1_700_000_000;

    /// Runs git hermetically: fixed identity and dates, no user or system config.
    fn git(dir: &Path, args: &[&str]) {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
            .env("GIT_AUTHOR_DATE", format!("@{AUTHOR_TIME} +0000"))
            .env("GIT_COMMITTER_DATE", format!("@{COMMIT_TIME} +0000"))
            .output()
            .expect("git runs");
        assert!(out.status.success(), "git {args:?}: {out:?}");
    }

    fn repo_with_commit() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q", "-b", "main"]);
        fs::write(dir.path().join("a.txt"), "one\n").expect("write");
        git(dir.path(), &["add", "a.txt"]);
        git(dir.path(), &["commit", "-q", "-m", "first"]);
        dir
    }

    fn head(dir: &Path) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git runs");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    #[test]
    fn clean_repo_reports_commit_and_committer_time() {
        let repo = repo_with_commit();
        let info = git_info(repo.path()).expect("reads").expect("a work tree");
        assert_eq!(info.commit, head(repo.path()));
        assert_eq!(info.commit.len(), 40);
        assert!(!info.dirty);
        // Committer time, not author time.
        assert_eq!(info.commit_time, COMMIT_TIME);
        assert_eq!(info.origin_url, None);
        assert_eq!(default_tag(&info), info.commit);
    }

    #[test]
    fn subdirectory_context_describes_the_whole_work_tree() {
        let repo = repo_with_commit();
        let sub = repo.path().join("app");
        fs::create_dir(&sub).expect("mkdir");
        let info = git_info(&sub).expect("reads").expect("a work tree");
        assert_eq!(info.commit, head(repo.path()));
    }

    #[test]
    fn modified_or_staged_tracked_files_make_it_dirty_untracked_do_not() {
        let repo = repo_with_commit();
        fs::write(repo.path().join("new.txt"), "untracked").expect("write");
        let info = git_info(repo.path()).expect("reads").expect("a work tree");
        assert!(!info.dirty, "untracked files are not part of HEAD's tree");

        fs::write(repo.path().join("a.txt"), "two\n").expect("write");
        let info = git_info(repo.path()).expect("reads").expect("a work tree");
        assert!(info.dirty);
        assert_eq!(default_tag(&info), format!("{}-dirty", info.commit));

        git(repo.path(), &["add", "a.txt"]);
        let info = git_info(repo.path()).expect("reads").expect("a work tree");
        assert!(info.dirty, "staged changes also differ from HEAD");
    }

    #[test]
    fn origin_url_is_read_without_credentials() {
        let repo = repo_with_commit();
        git(
            repo.path(),
            &[
                "remote",
                "add",
                "origin",
                "https://x-access-token:ghp_secret@github.com/o/r.git",
            ],
        );
        let info = git_info(repo.path()).expect("reads").expect("a work tree");
        assert_eq!(
            info.origin_url.as_deref(),
            Some("https://github.com/o/r.git")
        );
    }

    #[test]
    fn not_a_repository_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Keep git from finding a repository above the temp dir.
        let out = Command::new("git")
            .arg("-C")
            .arg(dir.path())
            .args(["rev-parse", "--show-toplevel"])
            .output()
            .expect("git runs");
        if out.status.success() {
            return; // the temp dir lives inside a work tree on this machine; nothing to test
        }
        assert_eq!(git_info(dir.path()).expect("no error"), None);
    }

    #[test]
    fn repository_without_commits_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        git(dir.path(), &["init", "-q"]);
        assert_eq!(git_info(dir.path()).expect("no error"), None);
    }

    #[test]
    fn missing_git_binary_is_none() {
        let repo = repo_with_commit();
        let missing = OsStr::new("/nonexistent/rbuild-test/git");
        assert_eq!(git_info_with(missing, repo.path()).expect("no error"), None);
    }

    /// Git's "dubious ownership" refusal (repository owned by another uid) is reported, not
    /// silently overridden. Needs root to chown; elsewhere the test has nothing to check.
    #[test]
    fn repository_owned_by_another_user_is_a_dubious_ownership_error() {
        let repo = repo_with_commit();
        let other = Some(54_321);
        for p in [repo.path().to_owned(), repo.path().join(".git")] {
            if std::os::unix::fs::chown(&p, other, other).is_err() {
                return; // not root: cannot create the situation
            }
        }
        match git_info(repo.path()) {
            Err(GitError::DubiousOwnership { toplevel, .. }) => {
                assert_eq!(Path::new(&toplevel), repo.path());
            }
            other => panic!("expected DubiousOwnership, got {other:?}"),
        }
    }

    #[test]
    fn dubious_ownership_hint_is_taken_from_git() {
        let stderr = "fatal: detected dubious ownership in repository at '/src'\n\
            To add an exception for this directory, call:\n\n\
            \tgit config --global --add safe.directory /src\n";
        assert_eq!(safe_directory_hint(stderr, Path::new("/src/app")), "/src");
        assert_eq!(safe_directory_hint("fatal", Path::new("/x")), "/x");
        let e = GitError::DubiousOwnership {
            dir: "/src/app".into(),
            toplevel: "/src".into(),
        };
        assert!(e
            .to_string()
            .contains("git config --global --add safe.directory /src"));
    }

    #[test]
    fn strip_credentials_forms() {
        for (input, expected) in [
            // HTTPS: user:password, token as user, token as password, no credentials.
            (
                "https://user:pass@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            (
                "https://ghp_token@github.com/o/r.git",
                "https://github.com/o/r.git",
            ),
            (
                "https://x-access-token:ghs_abc@github.com/o/r",
                "https://github.com/o/r",
            ),
            ("https://github.com/o/r.git", "https://github.com/o/r.git"),
            ("http://u:p@host:8080/r.git", "http://host:8080/r.git"),
            ("HTTPS://u:p@host/r", "HTTPS://host/r"),
            // '@' in the password: the last '@' of the authority ends the userinfo.
            ("https://u:p@ss@host/r", "https://host/r"),
            // '@' in the path is not userinfo.
            ("https://host/o/r@v1", "https://host/o/r@v1"),
            ("https://u:p@host", "https://host"),
            ("https://u:p@host?x=1", "https://host?x=1"),
            // SSH: the user is kept, a password is not.
            (
                "ssh://git@github.com/o/r.git",
                "ssh://git@github.com/o/r.git",
            ),
            ("ssh://git@host:2222/r.git", "ssh://git@host:2222/r.git"),
            ("ssh://u:secret@host/r.git", "ssh://host/r.git"),
            ("git+ssh://git@host/r", "git+ssh://git@host/r"),
            ("git://host/r.git", "git://host/r.git"),
            // scp-like.
            ("git@github.com:o/r.git", "git@github.com:o/r.git"),
            ("github.com:o/r.git", "github.com:o/r.git"),
            ("u:pw@host:o/r.git", "host:o/r.git"),
            // Local paths and file URLs.
            ("/srv/git/r.git", "/srv/git/r.git"),
            ("./r", "./r"),
            ("../x:y/r", "../x:y/r"),
            ("file:///srv/git/r.git", "file:///srv/git/r.git"),
            // Malformed.
            ("", ""),
            ("@", "@"),
            ("https://", "https://"),
            ("https://@host/r", "https://host/r"),
        ] {
            assert_eq!(strip_credentials(input), expected, "input {input:?}");
        }
    }

    #[test]
    fn error_messages_name_the_directory_and_what_to_do() {
        let dir = PathBuf::from("/src/app");
        let messages = [
            GitError::Spawn {
                dir: dir.clone(),
                args: "status --porcelain".into(),
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            },
            GitError::Failed {
                dir: dir.clone(),
                args: "show -s --format=%ct HEAD".into(),
                status: "exit status: 128".into(),
                stderr: "fatal: bad object HEAD".into(),
            },
            GitError::DubiousOwnership {
                dir: dir.clone(),
                toplevel: "/src".into(),
            },
            GitError::BadOutput {
                dir,
                args: "show -s --format=%ct HEAD".into(),
                output: "soon".into(),
                expected: "Unix seconds",
            },
            GitError::BadSourceDateEpoch {
                value: "yesterday".into(),
            },
        ]
        .map(|e| e.to_string())
        .join("\n");
        insta::assert_snapshot!(messages, @r#"
        reading git metadata of /src/app: running `git status --porcelain` failed
        reading git metadata of /src/app: `git show -s --format=%ct HEAD` failed (exit status: 128): fatal: bad object HEAD
        reading git metadata of /src/app: git refuses the repository because it is owned by another user; if you trust it, run `git config --global --add safe.directory /src`
        reading git metadata of /src/app: `git show -s --format=%ct HEAD` printed "soon", expected Unix seconds
        SOURCE_DATE_EPOCH="yesterday" is not valid: it must be a non-negative whole number of seconds since 1970-01-01 UTC, like the output of `date +%s`
        "#);
    }

    proptest::proptest! {
        /// No password (or HTTPS user token) survives, whatever the URL's parts.
        #[test]
        fn stripped_urls_keep_no_password(
            scheme in "(https|http|ssh|git\\+ssh)",
            user in "[a-zA-Z0-9._-]{1,12}",
            password in "[a-zA-Z0-9._~!$&'()*+,;=%-]{8,24}",
            host in "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
            path in "(/[a-zA-Z0-9._@:-]{0,12}){0,4}",
        ) {
            let url = format!("{scheme}://{user}:{password}@{host}{path}");
            proptest::prop_assert_eq!(strip_credentials(&url), format!("{scheme}://{host}{path}"));
            let scp = format!("{user}:{password}@{host}:o/r.git");
            proptest::prop_assert!(!strip_credentials(&scp).contains(&password));
        }
    }

    fn info(commit_time: i64) -> GitInfo {
        GitInfo {
            commit: "a".repeat(40),
            dirty: false,
            commit_time,
            origin_url: None,
            toplevel: None,
        }
    }

    #[test]
    fn build_epoch_prefers_source_date_epoch_then_commit_then_now() {
        assert_eq!(
            build_epoch(Some("1234"), Some(&info(5)), 9).expect("valid"),
            1234
        );
        assert_eq!(build_epoch(Some("0"), None, 9).expect("valid"), 0);
        assert_eq!(build_epoch(None, Some(&info(5)), 9).expect("valid"), 5);
        assert_eq!(build_epoch(None, None, 9).expect("valid"), 9);
        // Empty counts as unset, like `${SOURCE_DATE_EPOCH:-…}`.
        assert_eq!(build_epoch(Some(""), Some(&info(5)), 9).expect("valid"), 5);
    }

    #[test]
    fn malformed_source_date_epoch_is_a_clear_error() {
        for bad in [
            "-1",
            "+5",
            "1.5",
            " 12",
            "12 ",
            "abc",
            "1e9",
            "99999999999999999999",
        ] {
            let err = build_epoch(Some(bad), None, 0).expect_err(bad);
            let msg = err.to_string();
            assert!(msg.contains("SOURCE_DATE_EPOCH"), "{msg}");
            assert!(msg.contains("date +%s"), "{msg}");
        }
    }
}

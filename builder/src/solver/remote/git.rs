//! `ADD <git URL>[#ref[:subdir]]`: resolving the ref to a commit (the step's key) and checking
//! that commit out, with the `git` CLI as BuildKit does.
//!
//! `git` runs with a clean environment: no system or global config (a user's `url.insteadOf`
//! or hooks must not change what a Dockerfile names), no terminal prompts, `LC_ALL=C`; only
//! `PATH`, the proxy variables and `SSH_AUTH_SOCK` are passed through. Credentials in an
//! http(s) URL are taken out of it and given to git as an `http.extraHeader` through
//! `GIT_CONFIG_*` environment variables, so they are in no command line (`ps`), no
//! `.git/config` (`--keep-git-dir`) and no message. `protocol.file.allow=never` keeps
//! submodules from reading repositories on the build host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::dockerfile::remote::{redact, GitSource};

/// Why a git source could not be resolved or checked out. URLs are shown without credentials.
#[derive(Debug, thiserror::Error)]
pub enum GitSourceError {
    #[error("running git (is it installed?)")]
    Spawn(#[source] std::io::Error),
    #[error("git {action} {url} failed: {stderr}")]
    Git {
        action: &'static str,
        url: String,
        stderr: String,
    },
    #[error("{url} has no ref {reference:?}")]
    NoRef { url: String, reference: String },
    #[error("{url}#{reference}: the subdirectory {subdir:?} is not a directory of the checkout")]
    Subdir {
        url: String,
        reference: String,
        subdir: String,
    },
    #[error("preparing the checkout directory {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A git remote ready to run `git` against: the URL without credentials plus the header that
/// carries them.
struct Remote {
    url: String,
    shown: String,
    auth_header: Option<String>,
}

impl Remote {
    fn new(src: &GitSource) -> Remote {
        let shown = redact(&src.remote);
        let mut url = src.remote.clone();
        let mut auth_header = None;
        if let Ok(mut u) = url::Url::parse(&src.remote) {
            if matches!(u.scheme(), "http" | "https") && !u.username().is_empty() {
                auth_header = super::http::basic_auth(&u).map(|b| format!("Authorization: {b}"));
                let _ = u.set_username("");
                let _ = u.set_password(None);
                url = u.to_string();
            }
        }
        Remote {
            url,
            shown,
            auth_header,
        }
    }

    fn git(&self, dir: Option<&Path>, home: &Path) -> Command {
        let mut cmd = Command::new("git");
        cmd.env_clear();
        for var in [
            "PATH",
            "SSH_AUTH_SOCK",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "all_proxy",
        ] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.env("HOME", home)
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_ASKPASS", "true")
            .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        let mut config: Vec<(&str, &str)> = vec![("protocol.file.allow", "never")];
        if let Some(h) = &self.auth_header {
            config.push(("http.extraHeader", h));
        }
        cmd.env("GIT_CONFIG_COUNT", config.len().to_string());
        for (i, (k, v)) in config.iter().enumerate() {
            cmd.env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
        }
        if let Some(d) = dir {
            cmd.arg("-C").arg(d);
        }
        cmd
    }

    fn run(
        &self,
        action: &'static str,
        dir: Option<&Path>,
        home: &Path,
        args: &[&str],
    ) -> Result<Output, GitSourceError> {
        let out = self
            .git(dir, home)
            .args(args)
            .output()
            .map_err(GitSourceError::Spawn)?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(GitSourceError::Git {
                action,
                url: self.shown.clone(),
                stderr: redact(String::from_utf8_lossy(&out.stderr).trim()),
            })
        }
    }
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The commit `src` names now (`git ls-remote`; a full commit SHA is taken as it is).
pub fn resolve(src: &GitSource, home: &Path) -> Result<String, GitSourceError> {
    if is_full_sha(&src.reference) {
        return Ok(src.reference.to_ascii_lowercase());
    }
    let remote = Remote::new(src);
    let reference = if src.reference.is_empty() {
        "HEAD"
    } else {
        &src.reference
    };
    let peeled = format!("{reference}^{{}}");
    let out = remote.run(
        "ls-remote",
        None,
        home,
        &["ls-remote", "--", &remote.url, reference, &peeled],
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(sha, _)| is_full_sha(sha))
        .collect();
    // An annotated tag names a tag object; its peeled line names the commit.
    lines
        .iter()
        .find(|(_, name)| name.ends_with("^{}"))
        .or_else(|| lines.first())
        .map(|(sha, _)| sha.to_ascii_lowercase())
        .ok_or_else(|| GitSourceError::NoRef {
            url: remote.shown.clone(),
            reference: reference.to_string(),
        })
}

/// Checks `commit` of `src` out into `dest` (which must not exist): the whole tree, or the
/// contents of `src.subdir`; `.git` only with `keep_git_dir` (and no subdir).
pub fn checkout(
    src: &GitSource,
    commit: &str,
    dest: &Path,
    scratch: &Path,
    keep_git_dir: bool,
) -> Result<(), GitSourceError> {
    let remote = Remote::new(src);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitSourceError::Io { path, source }
    };
    let work = if src.subdir.is_empty() {
        dest.to_path_buf()
    } else {
        scratch.join("git-work")
    };
    std::fs::create_dir_all(&work).map_err(io(&work))?;
    let home = scratch.join("git-home");
    std::fs::create_dir_all(&home).map_err(io(&home))?;
    let w = Some(work.as_path());
    remote.run("init", w, &home, &["init", "-q"])?;
    remote.run(
        "remote add",
        w,
        &home,
        &["remote", "add", "origin", &remote.url],
    )?;
    fetch(&remote, src, commit, w, &home)?;
    remote.run(
        "checkout",
        w,
        &home,
        &["-c", "advice.detachedHead=false", "checkout", "-q", commit],
    )?;
    if work.join(".gitmodules").is_file() {
        remote.run(
            "submodule update",
            w,
            &home,
            &["submodule", "update", "--init", "--recursive", "--depth=1"],
        )?;
    }
    if !keep_git_dir || !src.subdir.is_empty() {
        let git_dir = work.join(".git");
        std::fs::remove_dir_all(&git_dir).map_err(io(&git_dir))?;
    }
    if !src.subdir.is_empty() {
        let bad = || GitSourceError::Subdir {
            url: remote.shown.clone(),
            reference: src.reference.clone(),
            subdir: src.subdir.clone(),
        };
        let root = std::fs::canonicalize(&work).map_err(io(&work))?;
        let sub = std::fs::canonicalize(work.join(src.subdir.trim_start_matches('/')))
            .map_err(|_| bad())?;
        // A symlink in the repository must not lead the copy out of the checkout.
        if !sub.starts_with(&root) || !sub.is_dir() {
            return Err(bad());
        }
        std::fs::rename(&sub, dest).map_err(io(dest))?;
    }
    Ok(())
}

/// Fetches `commit`: by ref name (shallow) when a name was given, else by commit id (shallow),
/// falling back to every branch and tag when the server refuses a fetch by id.
fn fetch(
    remote: &Remote,
    src: &GitSource,
    commit: &str,
    work: Option<&Path>,
    home: &Path,
) -> Result<(), GitSourceError> {
    let by_name = !src.reference.is_empty() && !is_full_sha(&src.reference);
    if by_name {
        let reference = src.reference.as_str();
        remote.run(
            "fetch",
            work,
            home,
            &["fetch", "-q", "--depth=1", "--no-tags", "origin", reference],
        )?;
        if has_commit(remote, work, home, commit) {
            return Ok(());
        }
    } else if remote
        .run(
            "fetch",
            work,
            home,
            &["fetch", "-q", "--depth=1", "--no-tags", "origin", commit],
        )
        .is_ok()
        && has_commit(remote, work, home, commit)
    {
        return Ok(());
    }
    remote.run(
        "fetch",
        work,
        home,
        &[
            "fetch",
            "-q",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
        ],
    )?;
    if has_commit(remote, work, home, commit) {
        Ok(())
    } else {
        Err(GitSourceError::NoRef {
            url: remote.shown.clone(),
            reference: commit.to_string(),
        })
    }
}

fn has_commit(remote: &Remote, work: Option<&Path>, home: &Path, commit: &str) -> bool {
    let spec = format!("{commit}^{{commit}}");
    remote
        .run("cat-file", work, home, &["cat-file", "-e", spec.as_str()])
        .is_ok()
}

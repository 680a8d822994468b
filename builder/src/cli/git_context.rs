//! A git URL as the build context (`rbuild https://host/repo.git#ref:subdir`), as buildx takes
//! one: the commit the ref names is checked out (with the `git` CLI, through the same sandboxed
//! runner as `ADD <git URL>`: no user or system git config, credentials in a header, never in a
//! command line) into a scratch directory of the store, removed when the build's options are
//! dropped; the context is that checkout, or its `subdir`, without `.git` (BuildKit's default).
//!
//! Which words are git URLs is buildx's rule (`urlutil.IsGitURL`, checked only when no local
//! directory has that name): `git://…`, `git@host:path`, `ssh://…`, `http(s)://…` whose path ends
//! in `.git`, and `github.com/…` (fetched over https). `#ref:subdir` (or `#ref` / `#:subdir`)
//! picks the commit and the directory. Another `http(s)://` URL is a tarball context
//! ([`super::url_context`]), never given to this module.
//!
//! The build's git metadata (the revision label, the commit-time epoch, the default name) comes
//! from the checked-out commit, as for a local work tree.

use std::path::{Path, PathBuf};

use rbuild_layers::store::{ScratchDir, StoreError};

use crate::dockerfile::remote::{classify, GitSource, RemoteSource};
use crate::git::GitInfo;
use crate::solver::remote::git::{checkout, resolve, GitSourceError};

/// Why a git context could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GitContextError {
    #[error("the context {0:?} is a URL of a tarball or web page; rbuild takes a local directory, `-` (standard input) or a git repository URL as the context")]
    NotGit(String),
    #[error("the context {url}: {reason}")]
    Url { url: String, reason: String },
    #[error("the git context {url}: {source}")]
    Git {
        url: String,
        #[source]
        source: GitSourceError,
    },
    #[error("making a scratch directory for the git context: {0}")]
    Scratch(#[source] StoreError),
    #[error("the git context {url}: reading the checkout's commit: {reason}")]
    CommitTime { url: String, reason: String },
}

/// A checked-out git context. Dropping it removes the checkout.
#[derive(Debug)]
pub struct GitContext {
    /// The context directory (the checkout, or its subdirectory).
    pub dir: PathBuf,
    /// The checked-out commit, as a work tree's metadata.
    pub info: GitInfo,
    _scratch: ScratchDir,
}

/// Whether the context word names a remote source rather than a local path (buildx checks for a
/// local directory first).
pub fn is_remote(word: &str) -> bool {
    word.starts_with("github.com/")
        || word.starts_with("http://")
        || word.starts_with("https://")
        || matches!(classify(word), Ok(Some(RemoteSource::Git(_))))
}

/// The git source `word` names (buildx's `github.com/` shorthand fetched over https).
fn source_of(word: &str) -> Result<GitSource, GitContextError> {
    let spelled = match word.strip_prefix("github.com/") {
        Some(_) => {
            let (path, fragment) = word.split_once('#').unwrap_or((word, ""));
            let path = if path.ends_with(".git") {
                path.to_string()
            } else {
                format!("{path}.git")
            };
            match fragment {
                "" => format!("https://{path}"),
                f => format!("https://{path}#{f}"),
            }
        }
        None => word.to_string(),
    };
    match classify(&spelled) {
        Ok(Some(RemoteSource::Git(g))) => Ok(g),
        Ok(_) => Err(GitContextError::NotGit(crate::dockerfile::remote::redact(
            word,
        ))),
        Err(e) => Err(GitContextError::Url {
            url: crate::dockerfile::remote::redact(word),
            reason: e.to_string(),
        }),
    }
}

/// Checks the repository `word` names out into a scratch directory made by `scratch`.
pub fn materialise(
    word: &str,
    scratch: impl FnOnce() -> Result<ScratchDir, StoreError>,
) -> Result<GitContext, GitContextError> {
    let src = source_of(word)?;
    let shown = crate::git::strip_credentials(&src.remote);
    let git_err = |source| GitContextError::Git {
        url: shown.clone(),
        source,
    };
    let scratch = scratch().map_err(GitContextError::Scratch)?;
    let home = scratch.path().join("git-home");
    std::fs::create_dir_all(&home).map_err(|e| {
        git_err(GitSourceError::Io {
            path: home.clone(),
            source: e,
        })
    })?;
    let commit = resolve(&src, &home).map_err(git_err)?;
    // The whole tree with `.git`, for the commit's time; then `.git` goes, and the subdir is
    // taken (checked to stay inside the checkout).
    let whole = GitSource {
        subdir: String::new(),
        ..src.clone()
    };
    let tree = scratch.path().join("checkout");
    checkout(&whole, &commit, &tree, scratch.path(), true).map_err(git_err)?;
    // The checkout's metadata, read as a local work tree's is (then `.git` goes).
    let checked_out = crate::git::git_info(&tree)
        .map_err(|e| GitContextError::CommitTime {
            url: shown.clone(),
            reason: e.to_string(),
        })?
        .ok_or_else(|| GitContextError::CommitTime {
            url: shown.clone(),
            reason: "git sees no work tree in the checkout".into(),
        })?;
    let git_dir = tree.join(".git");
    std::fs::remove_dir_all(&git_dir).map_err(|e| {
        git_err(GitSourceError::Io {
            path: git_dir,
            source: e,
        })
    })?;
    let dir = subdir(&tree, &src.subdir).ok_or_else(|| {
        git_err(GitSourceError::Subdir {
            url: shown.clone(),
            reference: src.reference.clone(),
            subdir: src.subdir.clone(),
        })
    })?;
    let name = shown
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("context")
        .trim_end_matches(".git")
        .to_string();
    Ok(GitContext {
        dir,
        info: GitInfo {
            commit,
            dirty: false,
            commit_time: checked_out.commit_time,
            origin_url: Some(shown),
            toplevel: Some(PathBuf::from(name)),
        },
        _scratch: scratch,
    })
}

/// `subdir` of the checkout `tree`, when it is a directory inside it (a symlink in the
/// repository must not lead out).
fn subdir(tree: &Path, subdir: &str) -> Option<PathBuf> {
    let root = std::fs::canonicalize(tree).ok()?;
    let dir = std::fs::canonicalize(tree.join(subdir.trim_start_matches('/'))).ok()?;
    (dir.starts_with(&root) && dir.is_dir()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_buildx_s_and_github_com_is_fetched_over_https() {
        for w in [
            "https://example.com/r.git",
            "https://example.com/r.git#main:sub",
            "git://127.0.0.1:9418/r.git",
            "git@github.com:moby/buildkit.git",
            "github.com/moby/buildkit",
        ] {
            assert!(is_remote(w), "{w}");
            assert!(source_of(w).is_ok(), "{w}");
        }
        let g = source_of("github.com/moby/buildkit#v0.12:frontend").unwrap();
        assert_eq!(g.remote, "https://github.com/moby/buildkit.git");
        assert_eq!(
            (g.reference.as_str(), g.subdir.as_str()),
            ("v0.12", "frontend")
        );
        assert!(matches!(
            source_of("https://example.com/context.tar.gz"),
            Err(GitContextError::NotGit(_))
        ));
        for w in ["ctx", "./ctx", "/abs/dir", "-"] {
            assert!(!is_remote(w), "{w}");
        }
    }
}

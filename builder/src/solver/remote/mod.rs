//! `ADD` of remote sources: HTTP(S) URLs ([`http`]) and git repositories ([`git`]), with
//! BuildKit's rules:
//!
//! * a URL is downloaded, never unpacked, to a file named after the last segment of the URL's
//!   path (`__unnamed__` if it has none; `Content-Disposition` is not consulted), with mode
//!   0600 (before `--chmod`), uid/gid 0 (before `--chown`) and the mtime of `Last-Modified`
//!   (0 without one);
//! * a git source's tree (or its `:subdir`) is copied into the destination directory, without
//!   `.git` unless `--keep-git-dir`; files keep git's executable bit (0755/0644), directories
//!   are 0755, owner 0:0 before `--chown`; mtimes are the build epoch (BuildKit leaves the
//!   checkout time, which no two builds share);
//! * the destination follows COPY's rules (a trailing `/`, several sources, or an existing
//!   directory means "inside").
//!
//! Keys: a URL's content digest and Last-Modified (found by a conditional request), a git
//! source's resolved commit. Each is a named key input (`content of URL`, `commit of URL`), so
//! `rbuild explain` names what changed. URLs are shown and recorded with credentials masked.
//!
//! Mixing remote and local sources in one ADD is refused (BuildKit warns that the result is
//! undefined for archives); write one ADD per kind.

pub mod git;
pub mod http;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rbuild_layers::store::Store;
use rbuild_layers::tar::{EntryKind as LayerKind, LayerEntry};

use super::copy::{absolute_dest, CopyError};
use super::key::KeyInputs;
use super::lazy_rootfs::LazyRootFs;
use super::rootfs::components;
use super::users::{resolve_owner, Owner};
use super::BuildError;
use crate::context::patternmatcher::PatternMatcher;
use crate::dockerfile::remote::{classify, parse_checksum, redact, RemoteSource};
use crate::dockerfile::CopyInstruction;

/// Why an ADD of a remote source failed.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error(transparent)]
    Source(#[from] crate::dockerfile::remote::RemoteSourceError),
    #[error("ADD with both remote (URL or git) and local sources is not supported by rbuild: write one ADD for the remote sources and one for the local ones")]
    Mixed,
    #[error("COPY does not accept a URL or git repository ({0}) as a source: use ADD")]
    CopyOfRemote(String),
    #[error("--checksum can't be specified for multiple sources or non-HTTP(S) sources")]
    ChecksumSource,
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error(transparent)]
    Git(#[from] git::GitSourceError),
}

/// One remote source, resolved far enough to compute the key.
#[derive(Debug)]
enum Resolved {
    Http {
        url: String,
        name: String,
        fetched: http::Fetched,
    },
    Git {
        source: crate::dockerfile::remote::GitSource,
        commit: String,
    },
}

/// A remote ADD whose sources are resolved.
#[derive(Debug)]
pub struct PreparedRemote {
    sources: Vec<Resolved>,
    dest_abs: String,
    dest_is_dir: bool,
}

/// The remote sources of `c`, if it has any. COPY of a remote source and ADD mixing remote and
/// local sources are errors.
pub fn remote_sources(
    c: &CopyInstruction,
    is_add: bool,
) -> Result<Option<Vec<RemoteSource>>, RemoteError> {
    let mut remote = Vec::new();
    let mut local = !c.heredocs.is_empty();
    for src in &c.sources {
        match classify(src)? {
            Some(_) if !is_add => return Err(RemoteError::CopyOfRemote(redact(src))),
            Some(r) => remote.push(r),
            None => local = true,
        }
    }
    match (remote.is_empty(), local) {
        (true, _) => Ok(None),
        (false, true) => Err(RemoteError::Mixed),
        (false, false) => Ok(Some(remote)),
    }
}

/// The file name BuildKit gives a download: the last segment of the URL's path.
fn file_name(url: &str) -> String {
    let path = url::Url::parse(url)
        .map(|u| {
            percent_encoding::percent_decode_str(u.path())
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." && base != ".." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
}

/// Downloads (or re-validates) every URL and resolves every git ref: what the key needs.
pub fn prepare(
    store: &Store,
    c: &CopyInstruction,
    sources: Vec<RemoteSource>,
    workdir: &str,
    scratch: &Path,
    on_bytes: &dyn Fn(u64, Option<u64>),
) -> Result<PreparedRemote, BuildError> {
    let checksum = match &c.checksum {
        Some(s) => {
            if sources.len() != 1 || !matches!(sources[0], RemoteSource::Http(_)) {
                return Err(RemoteError::ChecksumSource.into());
            }
            Some(parse_checksum(s).map_err(RemoteError::from)?)
        }
        None => None,
    };
    if sources.len() > 1 && !c.dest_names_dir() {
        return Err(CopyError::DestNotDir(c.dest.trim_end_matches('/').to_string()).into());
    }
    let mut resolved = Vec::with_capacity(sources.len());
    for s in sources {
        resolved.push(match s {
            RemoteSource::Http(url) => {
                let fetched = http::fetch(store, &url, checksum.as_ref(), on_bytes)
                    .map_err(RemoteError::from)?;
                Resolved::Http {
                    name: file_name(&url),
                    url,
                    fetched,
                }
            }
            RemoteSource::Git(source) => {
                let home = scratch.join("git-home");
                std::fs::create_dir_all(&home).map_err(BuildError::io("creating", &home))?;
                let commit = git::resolve(&source, &home).map_err(RemoteError::from)?;
                Resolved::Git { source, commit }
            }
        });
    }
    Ok(PreparedRemote {
        dest_is_dir: c.dest_names_dir() || resolved.len() > 1,
        dest_abs: absolute_dest(&c.dest, workdir),
        sources: resolved,
    })
}

impl PreparedRemote {
    /// Adds each source's identity to the key: a download's content digest and mtime, a git
    /// source's commit (and what is taken from it).
    pub fn key_inputs(&self, mut k: KeyInputs, c: &CopyInstruction) -> KeyInputs {
        for s in &self.sources {
            k = match s {
                Resolved::Http { url, name, fetched } => k.input(
                    &format!("content of {}", redact(url)),
                    format!("{} mtime={} name={name}", fetched.digest, fetched.mtime()),
                ),
                Resolved::Git { source, commit } => k.input(
                    &format!("commit of {}", redact(&source.remote)),
                    format!(
                        "{commit} subdir={} keep-git-dir={}",
                        source.subdir, c.keep_git_dir
                    ),
                ),
            };
        }
        k.input("dest", format!("/{}", self.dest_abs))
    }
}

/// What the step writes: the files, and the missing parent directories of the destination.
pub fn entries(
    store: &Store,
    p: &PreparedRemote,
    c: &CopyInstruction,
    epoch: i64,
    rootfs: &LazyRootFs<'_>,
    scratch: &Path,
) -> Result<Vec<LayerEntry>, BuildError> {
    let owner = match &c.chown {
        Some(spec) => {
            let passwd = rootfs.read_small_file("/etc/passwd")?;
            let group = rootfs.read_small_file("/etc/group")?;
            resolve_owner(spec, passwd.as_deref(), group.as_deref())?
        }
        None => Owner { uid: 0, gid: 0 },
    };
    let chmod = super::copy::chmod_of(c)?;
    let exclude = if c.exclude.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&c.exclude).map_err(CopyError::Exclude)?)
    };
    let mode_of = |mode: u32, is_dir: bool| match &chmod {
        Some(ch) => ch.apply(mode, is_dir),
        None => mode,
    };
    let dest_is_existing_dir = || -> Result<bool, BuildError> {
        Ok(!c.link
            && !p.dest_abs.is_empty()
            && rootfs.lookup(&p.dest_abs)?.is_some_and(|f| f.is_dir()))
    };
    let mut files: Vec<LayerEntry> = Vec::new();
    for (i, s) in p.sources.iter().enumerate() {
        match s {
            Resolved::Http { name, fetched, .. } => {
                if exclude
                    .as_ref()
                    .is_some_and(|m| m.matches_or_parent_matches(name))
                {
                    continue;
                }
                let path = if p.dest_is_dir || dest_is_existing_dir()? {
                    join(&p.dest_abs, name)
                } else {
                    p.dest_abs.clone()
                };
                files.push(LayerEntry {
                    path,
                    kind: LayerKind::File {
                        source: store.blob_path(&fetched.digest),
                    },
                    mode: mode_of(0o600, false),
                    uid: owner.uid,
                    gid: owner.gid,
                    mtime: fetched.mtime(),
                    xattrs: BTreeMap::new(),
                });
            }
            Resolved::Git { source, commit } => {
                let dir = scratch.join(format!("git-{i}"));
                let work = scratch.join(format!("git-scratch-{i}"));
                git::checkout(source, commit, &dir, &work, c.keep_git_dir)
                    .map_err(RemoteError::from)?;
                let tree = rbuild_layers::tar::entries_from_dir(
                    &dir,
                    &rbuild_layers::tar::DirOptions::default(),
                )?;
                for mut e in tree {
                    if exclude
                        .as_ref()
                        .is_some_and(|m| m.matches_or_parent_matches(&e.path))
                    {
                        continue;
                    }
                    let is_dir = matches!(e.kind, LayerKind::Dir);
                    if !matches!(e.kind, LayerKind::Symlink { .. }) {
                        // As checked out under BuildKit's umask 022, whatever ours is.
                        e.mode = mode_of(e.mode & 0o7755, is_dir);
                    }
                    e.path = join(&p.dest_abs, &e.path);
                    if let LayerKind::Hardlink { target } = &mut e.kind {
                        *target = join(&p.dest_abs, target);
                    }
                    e.uid = owner.uid;
                    e.gid = owner.gid;
                    e.mtime = epoch;
                    e.xattrs.clear();
                    files.push(e);
                }
                // The destination directory itself (copying a tree's root onto it).
                if !p.dest_abs.is_empty() {
                    files.push(LayerEntry {
                        path: p.dest_abs.clone(),
                        kind: LayerKind::Dir,
                        mode: 0o755,
                        uid: owner.uid,
                        gid: owner.gid,
                        mtime: epoch,
                        xattrs: BTreeMap::new(),
                    });
                }
            }
        }
    }
    let mut out = parent_dirs(&files, p, c, rootfs, owner, epoch)?;
    // A directory entry for an existing destination keeps the existing one's mode and owner.
    let mut seen = BTreeSet::new();
    for e in files {
        if matches!(e.kind, LayerKind::Dir) && e.path == p.dest_abs {
            if seen.contains(&e.path) || dest_is_existing_dir()? {
                continue;
            }
            seen.insert(e.path.clone());
        }
        out.push(e);
    }
    Ok(out)
}

/// Missing ancestors of every written path, created 0755 and owned like the files (as COPY).
fn parent_dirs(
    files: &[LayerEntry],
    p: &PreparedRemote,
    c: &CopyInstruction,
    rootfs: &LazyRootFs<'_>,
    owner: Owner,
    epoch: i64,
) -> Result<Vec<LayerEntry>, BuildError> {
    let written: BTreeSet<&str> = files.iter().map(|e| e.path.as_str()).collect();
    let mut needed: BTreeSet<String> = BTreeSet::new();
    for e in files {
        let comps = components(&e.path);
        for i in 1..comps.len() {
            needed.insert(comps[..i].join("/"));
        }
    }
    if p.dest_is_dir && !p.dest_abs.is_empty() {
        needed.insert(p.dest_abs.clone());
    }
    let mut out = Vec::new();
    for d in needed {
        if written.contains(d.as_str()) {
            continue;
        }
        let exists = !c.link
            && rootfs
                .lookup(&d)?
                .is_some_and(|f| f.is_dir() || f.is_symlink());
        if !exists {
            out.push(LayerEntry {
                path: d,
                kind: LayerKind::Dir,
                mode: 0o755,
                uid: owner.uid,
                gid: owner.gid,
                mtime: epoch,
                xattrs: BTreeMap::new(),
            });
        }
    }
    Ok(out)
}

fn join(base: &str, rel: &str) -> String {
    if base.is_empty() {
        components(rel).join("/")
    } else {
        components(&format!("{base}/{rel}")).join("/")
    }
}

/// The instruction text to show and record: URLs with credentials masked.
pub fn shown_instruction(text: &str) -> String {
    redact(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downloads_are_named_after_the_url_path() {
        assert_eq!(file_name("http://h/a/hello.txt"), "hello.txt");
        assert_eq!(file_name("http://h/a/hello.txt?x=1#f"), "hello.txt");
        assert_eq!(file_name("http://h/nolm/"), "nolm");
        assert_eq!(file_name("http://h/"), "__unnamed__");
        assert_eq!(file_name("http://h"), "__unnamed__");
        assert_eq!(file_name("http://h/a%20b.txt"), "a b.txt");
    }

    #[test]
    fn copy_of_a_url_and_mixed_add_are_refused() {
        // The parser refuses a literal mix; a variable defers the check to the expanded step.
        let mut c = crate::dockerfile::parse("FROM scratch\nADD $URL local /d/\n")
            .ok()
            .and_then(|df| match &df.stages[0].instructions[0].node {
                crate::dockerfile::Instruction::Add(c) => Some(c.clone()),
                _ => None,
            })
            .expect("test Dockerfile parses");
        c.sources[0] = "http://h/x".into();
        assert!(matches!(remote_sources(&c, true), Err(RemoteError::Mixed)));
        c.sources = vec!["https://u:p@h/x".into()];
        match remote_sources(&c, false) {
            Err(RemoteError::CopyOfRemote(u)) => assert_eq!(u, "https://***@h/x"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(remote_sources(&c, true), Ok(Some(v)) if v.len() == 1));
    }
}

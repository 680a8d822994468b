//! Scanning a build context directory, and selecting COPY/ADD sources from it.
//!
//! The walk runs on rayon's pool: each directory is read with `std::fs::read_dir` and every
//! entry is `lstat`ed (`DirEntry::metadata` never follows symlinks); subdirectories are walked in
//! parallel. `.dockerignore` rules are applied during the walk exactly as BuildKit's fsutil
//! walker does: each path is matched with its parent directory's [`MatchInfo`], an excluded
//! directory is not even opened unless an exception could re-include something below it, and an
//! excluded directory that was walked appears in the context only if something below it was
//! re-included.
//!
//! The Dockerfile and `.dockerignore` are ordinary entries: like BuildKit, they are part of the
//! context unless `.dockerignore` itself excludes them.
//!
//! Paths are slash-separated, relative to the context root, without a leading `./`; the root
//! itself is `"."`. Names that are not valid UTF-8 are rejected with an error.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use rayon::prelude::*;

use super::gopath;
use super::ignore::IgnoreRules;
use super::patternmatcher::MatchInfo;
use super::statcache::StatCache;
use super::ContextError;

/// The type of a context entry. Symlinks carry their target (never followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink(String),
    /// Device, FIFO or socket.
    Other,
}

/// Metadata of one context entry, from `lstat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    /// Device number of a device node (0 otherwise).
    pub rdev: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Entry {
    fn from_metadata(md: &std::fs::Metadata, kind: EntryKind) -> Entry {
        Entry {
            kind,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            size: md.size(),
            dev: md.dev(),
            ino: md.ino(),
            rdev: md.rdev(),
            mtime_ns: md.mtime().saturating_mul(1_000_000_000) + md.mtime_nsec(),
            ctime_ns: md.ctime().saturating_mul(1_000_000_000) + md.ctime_nsec(),
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Dir
    }
}

/// Counters describing the work a scan and the hashing did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Directories opened with `read_dir` (the root included).
    pub dirs_read: usize,
    /// Entries kept in the context (the root excluded).
    pub entries: usize,
    /// Files whose content was read for hashing.
    pub files_read: usize,
    /// Bytes of file content read.
    pub bytes_read: u64,
    /// Files whose content hash came from the stat cache.
    pub cache_hits: usize,
}

/// A scanned build context.
pub struct Context {
    pub(crate) root: PathBuf,
    pub(crate) root_entry: Entry,
    /// Sorted by byte order; parallel to `entries`.
    pub(crate) paths: Vec<String>,
    pub(crate) entries: Vec<Entry>,
    /// Children (indices into `paths`) of each directory, in name order; root's in `root_children`.
    pub(crate) children: Vec<Vec<usize>>,
    pub(crate) root_children: Vec<usize>,
    /// sha256 of each file's content, filled lazily.
    pub(crate) content: Vec<OnceLock<[u8; 32]>>,
    /// Canonical digest of each entry, filled lazily.
    pub(crate) digests: Vec<OnceLock<[u8; 32]>>,
    pub(crate) root_digest: OnceLock<[u8; 32]>,
    pub(crate) stat_cache: Option<Mutex<StatCache>>,
    pub(crate) scan_started: SystemTime,
    dirs_read: usize,
    pub(crate) files_read: AtomicUsize,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) cache_hits: AtomicUsize,
}

struct Walk<'a> {
    rules: &'a IgnoreRules,
    /// Context-relative paths never read at all (rbuild's own store and outputs).
    skip: &'a [String],
    dirs_read: AtomicUsize,
}

/// Where `path` lies inside the context directory `root` (canonical), as a context-relative
/// path, or `None` when it is outside (or is the context itself). `path` need not exist yet
/// (an output directory): its longest existing ancestor is resolved and the rest appended.
pub fn relative_inside(root: &Path, path: &Path) -> Option<String> {
    let mut existing = path;
    let mut rest = Vec::new();
    let resolved = loop {
        match std::fs::canonicalize(existing) {
            Ok(p) => break p,
            Err(_) => {
                rest.push(existing.file_name()?);
                existing = existing.parent()?;
            }
        }
    };
    let full = rest.iter().rev().fold(resolved, |p, c| p.join(c));
    let rel = full.strip_prefix(root).ok()?.to_str()?;
    (!rel.is_empty()).then(|| rel.to_owned())
}

type Found = Vec<(String, Entry)>;

impl Context {
    /// Scans `dir` in parallel, applying `rules`. `stat_cache` enables the persistent stat cache:
    /// an existing directory (a per-context file is kept inside it, named after the sha256 of
    /// the canonical context path) or the cache file itself.
    pub fn scan(
        dir: &Path,
        rules: &IgnoreRules,
        stat_cache: Option<&Path>,
    ) -> Result<Context, ContextError> {
        Context::scan_skipping(dir, rules, stat_cache, &[])
    }

    /// [`Context::scan`] that also leaves out `skip` (absolute paths; those outside the
    /// context are ignored) completely: not walked, not sent, not hashed, as if they did not
    /// exist. rbuild's store and output directories go here, so that a store inside the
    /// context is not copied into images and another build's temporary files appearing and
    /// vanishing in it cannot fail the walk. Since a skipped path is absent rather than
    /// excluded, the context's digests are the same whether the store is inside or elsewhere.
    pub fn scan_skipping(
        dir: &Path,
        rules: &IgnoreRules,
        stat_cache: Option<&Path>,
        skip: &[PathBuf],
    ) -> Result<Context, ContextError> {
        let scan_started = SystemTime::now();
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| ContextError::Io { op, path, source }
        };
        let root = std::fs::canonicalize(dir).map_err(io("resolving build context", dir))?;
        let md = std::fs::metadata(&root).map_err(io("reading build context", &root))?;
        if !md.is_dir() {
            return Err(ContextError::Io {
                op: "reading build context",
                path: root,
                source: std::io::Error::new(std::io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let root_entry = Entry::from_metadata(&md, EntryKind::Dir);
        let skip: Vec<String> = skip
            .iter()
            .filter_map(|p| relative_inside(&root, p))
            .collect();
        let walk = Walk {
            rules,
            skip: &skip,
            dirs_read: AtomicUsize::new(0),
        };
        let mut found = walk.dir(&root, "", &MatchInfo::default())?;
        found.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let (paths, entries): (Vec<String>, Vec<Entry>) = found.into_iter().unzip();

        let mut children = vec![Vec::new(); paths.len()];
        let mut root_children = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            match p.rfind('/') {
                None => root_children.push(i),
                Some(slash) => {
                    let parent = &p[..slash];
                    // The walk only emits a child together with its parent directory.
                    let pi = paths
                        .binary_search_by(|q| q.as_str().cmp(parent))
                        .expect("every scanned entry's parent directory is in the context");
                    children[pi].push(i);
                }
            }
        }
        let stat_cache = stat_cache.map(|location| Mutex::new(StatCache::open(location, &root)));
        let n = paths.len();
        Ok(Context {
            root,
            root_entry,
            paths,
            entries,
            children,
            root_children,
            content: (0..n).map(|_| OnceLock::new()).collect(),
            digests: (0..n).map(|_| OnceLock::new()).collect(),
            root_digest: OnceLock::new(),
            stat_cache,
            scan_started,
            dirs_read: walk.dirs_read.load(Ordering::Relaxed),
            files_read: AtomicUsize::new(0),
            bytes_read: AtomicU64::new(0),
            cache_hits: AtomicUsize::new(0),
        })
    }

    /// The canonical absolute path of the context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Number of files whose content has been read so far.
    pub fn files_read(&self) -> usize {
        self.files_read.load(Ordering::Relaxed)
    }

    /// Work counters.
    pub fn stats(&self) -> ScanStats {
        ScanStats {
            dirs_read: self.dirs_read,
            entries: self.paths.len(),
            files_read: self.files_read(),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// All entries, in sorted path order (the root excluded).
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.paths.iter().map(String::as_str).zip(&self.entries)
    }

    /// The entry at `rel` (`"."` is the root).
    pub fn get(&self, rel: &str) -> Option<&Entry> {
        if rel == "." || rel.is_empty() {
            return Some(&self.root_entry);
        }
        self.index(rel).map(|i| &self.entries[i])
    }

    pub(crate) fn index(&self, rel: &str) -> Option<usize> {
        self.paths.binary_search_by(|p| p.as_str().cmp(rel)).ok()
    }

    /// Everything below the directory `rel` (not `rel` itself), in sorted path order.
    pub fn walk_under<'a>(&'a self, rel: &str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        let (start, end) = if rel == "." || rel.is_empty() {
            (0, self.paths.len())
        } else {
            let prefix = format!("{rel}/");
            let start = self.paths.partition_point(|p| p.as_str() < prefix.as_str());
            let len = self.paths[start..].partition_point(|p| p.starts_with(&prefix));
            (start, start + len)
        };
        self.paths[start..end]
            .iter()
            .map(String::as_str)
            .zip(&self.entries[start..end])
    }

    /// Resolves a COPY/ADD source as BuildKit does: the source is cleaned as an absolute path
    /// (so `../x` is clamped to the context root), wildcards are Go `filepath.Match` patterns
    /// applied per path segment, and symlinks in parent components are followed inside the
    /// context ([`Context::resolve_in_context`]); the last component is not followed, so a
    /// matched symlink is returned as itself. Returns the matched entries' resolved paths in
    /// sorted order (`"."` for the root).
    pub fn select(&self, pattern: &str) -> Result<Vec<&str>, ContextError> {
        let cleaned = gopath::clean(&format!("/{pattern}"));
        let rel = cleaned.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(vec!["."]);
        }
        if !gopath::has_meta(rel) {
            return match self.resolve_in_context(rel, false) {
                Some(None) => Ok(vec!["."]),
                Some(Some(i)) => Ok(vec![self.paths[i].as_str()]),
                None => Err(ContextError::SourceNotFound {
                    source_path: pattern.to_string(),
                }),
            };
        }
        // Candidates: None is the root, Some(i) an entry.
        let mut current: Vec<Option<usize>> = vec![None];
        for segment in rel.split('/') {
            let mut next = Vec::new();
            for cand in &current {
                let Some(kids) = self.dir_children(*cand) else {
                    continue;
                };
                for &k in kids {
                    let name = self.name(k);
                    let hit = gopath::matches(segment, name).map_err(|source| {
                        ContextError::BadSourcePattern {
                            pattern: pattern.to_string(),
                            source,
                        }
                    })?;
                    if hit {
                        next.push(Some(k));
                    }
                }
            }
            current = next;
        }
        let mut out: Vec<&str> = current
            .into_iter()
            .flatten()
            .map(|i| self.paths[i].as_str())
            .collect();
        out.sort_unstable();
        out.dedup();
        if out.is_empty() {
            return Err(ContextError::NoSourceFiles {
                pattern: pattern.to_string(),
            });
        }
        Ok(out)
    }

    /// The children of a directory candidate, following a symlink to a directory.
    fn dir_children(&self, cand: Option<usize>) -> Option<&[usize]> {
        let dir = match cand {
            Some(i) if matches!(self.entries[i].kind, EntryKind::Symlink(_)) => {
                self.resolve_in_context(&self.paths[i], true)?
            }
            other => other,
        };
        match dir {
            None => Some(&self.root_children),
            Some(d) if self.entries[d].is_dir() => Some(&self.children[d]),
            Some(_) => None,
        }
    }

    /// Resolves symlinks in the path components of `rel` the way BuildKit resolves COPY
    /// sources: scoped to the context, so absolute targets start at the context root and `..`
    /// stops there. The last component is followed only if `follow_last`. Returns `None` if a
    /// component is missing or after 255 symlinks (a loop), `Some(None)` for the root.
    pub fn resolve_in_context(&self, rel: &str, follow_last: bool) -> Option<Option<usize>> {
        let parts = |p: &str| -> Vec<String> {
            p.split('/')
                .filter(|s| !s.is_empty() && *s != ".")
                .map(str::to_string)
                .collect()
        };
        let mut queue: std::collections::VecDeque<String> = parts(rel).into();
        let mut cur: Option<usize> = None;
        let mut hops = 0;
        while let Some(seg) = queue.pop_front() {
            if seg == ".." {
                cur = cur.and_then(|i| {
                    let p = &self.paths[i];
                    p.rfind('/').and_then(|s| self.index(&p[..s]))
                });
                continue;
            }
            let cand = match cur {
                None => seg,
                Some(i) => format!("{}/{seg}", self.paths[i]),
            };
            let i = self.index(&cand)?;
            if let EntryKind::Symlink(target) = &self.entries[i].kind {
                if !queue.is_empty() || follow_last {
                    hops += 1;
                    if hops > 255 {
                        return None;
                    }
                    if target.starts_with('/') {
                        cur = None;
                    }
                    // A relative target continues from the link's directory (`cur`).
                    let mut next: std::collections::VecDeque<String> = parts(target).into();
                    next.extend(queue.drain(..));
                    queue = next;
                    continue;
                }
            }
            cur = Some(i);
        }
        Some(cur)
    }

    /// The entry a COPY/ADD source at `rel` names: symlinks followed in every component, the
    /// last one too, inside the context ([`Context::resolve_in_context`]); `"."` for the root.
    pub fn resolve_source(&self, rel: &str) -> Option<&str> {
        let resolved = self.resolve_in_context(rel, true)?;
        Some(resolved.map_or(".", |i| self.paths[i].as_str()))
    }

    /// The last path element of entry `i`.
    pub(crate) fn name(&self, i: usize) -> &str {
        let p = &self.paths[i];
        p.rfind('/').map_or(p.as_str(), |s| &p[s + 1..])
    }
}

impl Walk<'_> {
    /// Reads one directory and, in parallel, the subdirectories to descend into.
    fn dir(&self, abs: &Path, rel: &str, info: &MatchInfo) -> Result<Found, ContextError> {
        self.dirs_read.fetch_add(1, Ordering::Relaxed);
        let io = |op, path: &Path| {
            let path = path.to_path_buf();
            move |source| ContextError::Io { op, path, source }
        };
        let rd = std::fs::read_dir(abs).map_err(io("reading directory", abs))?;
        let mut found = Found::new();
        // (absolute path, relative path, its match info, its entry if it is excluded)
        let mut subdirs: Vec<(PathBuf, String, MatchInfo, Option<Entry>)> = Vec::new();
        for dirent in rd {
            let dirent = dirent.map_err(io("reading directory", abs))?;
            let name = dirent
                .file_name()
                .into_string()
                .map_err(|_| ContextError::NonUtf8Path {
                    path: dirent.path(),
                })?;
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if self.skip.contains(&child_rel) {
                continue;
            }
            let md = dirent.metadata().map_err(|source| ContextError::Io {
                op: "lstat",
                path: dirent.path(),
                source,
            })?;
            let ft = md.file_type();
            let (excluded, child_info) = self.rules.excluded_in_walk(&child_rel, info);
            if ft.is_dir() {
                let entry = Entry::from_metadata(&md, EntryKind::Dir);
                if !excluded {
                    found.push((child_rel.clone(), entry));
                    subdirs.push((dirent.path(), child_rel, child_info, None));
                } else if self.rules.may_include_under(&child_rel) {
                    subdirs.push((dirent.path(), child_rel, child_info, Some(entry)));
                }
                continue;
            }
            if excluded {
                continue;
            }
            let kind = if ft.is_file() {
                EntryKind::File
            } else if ft.is_symlink() {
                let path = dirent.path();
                let target = std::fs::read_link(&path).map_err(io("readlink", &path))?;
                let target = target
                    .into_os_string()
                    .into_string()
                    .map_err(|_| ContextError::NonUtf8Path { path: path.clone() })?;
                EntryKind::Symlink(target)
            } else {
                EntryKind::Other
            };
            found.push((child_rel, Entry::from_metadata(&md, kind)));
        }
        let below: Vec<Found> = subdirs
            .par_iter()
            .map(|(abs, rel, info, excluded_entry)| {
                let mut sub = self.dir(abs, rel, info)?;
                // An excluded directory is sent only as the parent of something re-included.
                if let Some(entry) = excluded_entry {
                    if !sub.is_empty() {
                        sub.push((rel.clone(), entry.clone()));
                    }
                }
                Ok(sub)
            })
            .collect::<Result<_, ContextError>>()?;
        for sub in below {
            found.extend(sub);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree(files: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for f in files {
            let p = dir.path().join(f);
            if let Some(d) = f.strip_suffix('/') {
                fs::create_dir_all(dir.path().join(d)).unwrap();
                continue;
            }
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, f.as_bytes()).unwrap();
        }
        dir
    }

    fn scan(dir: &Path, ignore: &str) -> Context {
        let rules = IgnoreRules::parse(ignore, Path::new(".dockerignore")).unwrap();
        Context::scan(dir, &rules, None).unwrap()
    }

    fn paths(ctx: &Context) -> Vec<&str> {
        ctx.entries().map(|(p, _)| p).collect()
    }

    const FILES: &[&str] = &[
        "Dockerfile",
        ".dockerignore",
        "src/main.rs",
        "src/lib/a.rs",
        "node_modules/x/keep.js",
        "node_modules/x/drop.js",
        "node_modules/y/z/deep.js",
        "docs/README.md",
    ];

    #[test]
    fn excluded_dir_is_never_opened() {
        let dir = tree(FILES);
        let ctx = scan(dir.path(), "node_modules\n");
        // root, src, src/lib, docs: node_modules is not read at all.
        assert_eq!(ctx.stats().dirs_read, 4);
        assert!(!paths(&ctx).iter().any(|p| p.starts_with("node_modules")));
        assert!(paths(&ctx).contains(&"Dockerfile"));
        assert!(
            paths(&ctx).contains(&".dockerignore"),
            "sent unless listed in .dockerignore"
        );
    }

    #[test]
    fn exception_walks_only_dirs_it_can_reach() {
        let dir = tree(FILES);
        let ctx = scan(dir.path(), "node_modules\n!node_modules/x/keep.js\n");
        // root, src, src/lib, docs, node_modules, node_modules/x; not node_modules/y.
        assert_eq!(ctx.stats().dirs_read, 6);
        let p = paths(&ctx);
        assert!(p.contains(&"node_modules/x/keep.js"));
        assert!(
            p.contains(&"node_modules/x"),
            "parents of a re-included file are sent"
        );
        assert!(p.contains(&"node_modules"));
        assert!(!p.contains(&"node_modules/x/drop.js"));
        assert!(!p.iter().any(|p| p.starts_with("node_modules/y")));
    }

    #[test]
    fn wildcard_exception_walks_everything_excluded() {
        let dir = tree(FILES);
        let ctx = scan(dir.path(), "node_modules\n!**/deep.js\n");
        assert_eq!(ctx.stats().dirs_read, 8);
        let p = paths(&ctx);
        assert!(p.contains(&"node_modules/y/z/deep.js"));
        assert!(
            !p.contains(&"node_modules/x"),
            "an excluded dir with nothing re-included is not sent"
        );
    }

    #[test]
    fn dockerfile_and_ignore_file_excluded_only_when_listed() {
        let dir = tree(FILES);
        let ctx = scan(dir.path(), "Dockerfile\n.dockerignore\n");
        assert!(!paths(&ctx).contains(&"Dockerfile"));
        assert!(!paths(&ctx).contains(&".dockerignore"));
    }

    #[test]
    fn symlinks_are_not_followed() {
        let dir = tree(&["real/file"]);
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("abs")).unwrap();
        let ctx = scan(dir.path(), "");
        assert_eq!(
            ctx.get("link").unwrap().kind,
            EntryKind::Symlink("real".into())
        );
        assert_eq!(
            ctx.get("abs").unwrap().kind,
            EntryKind::Symlink("/etc/passwd".into())
        );
        assert!(ctx.get("link/file").is_none());
    }

    #[test]
    fn select_follows_buildkit_copy_rules() {
        let dir = tree(FILES);
        let ctx = scan(dir.path(), "node_modules\n");
        assert_eq!(ctx.select(".").unwrap(), vec!["."]);
        assert_eq!(ctx.select("./src/").unwrap(), vec!["src"]);
        assert_eq!(
            ctx.select("../../src/main.rs").unwrap(),
            vec!["src/main.rs"],
            "clamped to the root"
        );
        assert_eq!(ctx.select("/src/main.rs").unwrap(), vec!["src/main.rs"]);
        assert_eq!(ctx.select("src/*.rs").unwrap(), vec!["src/main.rs"]);
        assert_eq!(
            ctx.select("*/*").unwrap(),
            vec!["docs/README.md", "src/lib", "src/main.rs"]
        );
        assert_eq!(ctx.select("s?c/l[a-i]b/*").unwrap(), vec!["src/lib/a.rs"]);
        assert_eq!(ctx.select("Docker*").unwrap(), vec!["Dockerfile"]);
        let e = ctx.select("missing.txt").unwrap_err().to_string();
        assert!(e.contains("not found"), "{e}");
        let e = ctx.select("*.nothing").unwrap_err().to_string();
        assert!(e.contains("no source files were specified"), "{e}");
        assert!(
            ctx.select("node_modules").is_err(),
            "excluded paths cannot be copied"
        );
        assert!(matches!(
            ctx.select("[").unwrap_err(),
            ContextError::BadSourcePattern { .. }
        ));
    }

    #[test]
    fn select_follows_symlinks_in_parent_components_within_the_context() {
        let dir = tree(&["real/file", "real/sub/x"]);
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, dir.path().join(name)).unwrap();
        };
        link("real", "rel");
        link("/real", "abs");
        link("../../../real", "escape");
        link("loop", "loop");
        link("sub", "real/sublink");
        let ctx = scan(dir.path(), "");
        assert_eq!(ctx.select("rel/file").unwrap(), vec!["real/file"]);
        assert_eq!(ctx.select("abs/file").unwrap(), vec!["real/file"]);
        assert_eq!(
            ctx.select("escape/file").unwrap(),
            vec!["real/file"],
            "clamped to the root"
        );
        assert_eq!(ctx.select("rel/sublink/x").unwrap(), vec!["real/sub/x"]);
        assert_eq!(
            ctx.select("rel").unwrap(),
            vec!["rel"],
            "the last component is not followed"
        );
        assert_eq!(
            ctx.select("rel/*").unwrap(),
            vec!["real/file", "real/sub", "real/sublink"]
        );
        assert_eq!(
            ctx.select("*/sub/x").unwrap(),
            vec!["real/sub/x"],
            "reached via 4 names, listed once"
        );
        assert!(matches!(
            ctx.select("*/x"),
            Err(ContextError::NoSourceFiles { .. })
        ));
        assert!(ctx.select("loop/x").is_err());
    }

    #[test]
    fn walk_under_lists_descendants_only() {
        let dir = tree(&["a/b/c", "a/b-c", "a-b", "a/x"]);
        let ctx = scan(dir.path(), "");
        let under: Vec<&str> = ctx.walk_under("a").map(|(p, _)| p).collect();
        assert_eq!(under, vec!["a/b", "a/b-c", "a/b/c", "a/x"]);
        assert_eq!(ctx.walk_under(".").count(), 6);
        assert_eq!(ctx.walk_under("a/b/c").count(), 0);
    }

    #[test]
    fn modes_include_special_bits() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tree(&["s"]);
        fs::set_permissions(dir.path().join("s"), fs::Permissions::from_mode(0o4755)).unwrap();
        let ctx = scan(dir.path(), "");
        assert_eq!(ctx.get("s").unwrap().mode, 0o4755);
    }
}

//! COPY and ADD: select sources (build context, another stage, or heredocs), compute the step's
//! key from their contents, and on a miss write a layer straight from the source files (no
//! staging copy), following BuildKit's rules:
//!
//! * a relative destination is taken from the current `WORKDIR`;
//! * a destination ending in `/` (or `.`) is a directory; so is a destination that already
//!   exists as a directory in the image; several sources need the former (BuildKit 20.10 would
//!   copy them onto one file: rbuild refuses, a Dockerfile error);
//! * a destination that is a symlink in the image is written through, resolved inside the
//!   image ([`super::in_root::resolve_dest`]);
//! * a source directory's *contents* are copied (`--parents` keeps the source path);
//! * files get `--chown`'s user if given (resolved through the image's `/etc/passwd` and
//!   `/etc/group`), else their own uid/gid when copied from a stage or image and 0:0 from the
//!   build context; directories the step creates are 0:0 without `--chown`; files keep their
//!   mode unless `--chmod`, and get the build's epoch as mtime (so the image does not depend
//!   on when the checkout happened);
//! * files that one directory source's walk meets twice (hard links) stay one inode;
//! * `--exclude` patterns use `.dockerignore` syntax relative to each source;
//! * `--link` makes the layer independent of what is below it: its key ignores the parent and
//!   no existing path is consulted;
//! * `ADD` of a local tar archive (plain, gzip, bzip2 or xz; decided by content) extracts it at
//!   the destination. URLs and git repositories never reach this module: `ADD` of them is
//!   [`super::remote`]'s, `COPY` of them is refused before (BuildKit's own rules on what is a
//!   URL; anything else, `HTTP://x` included, is a path in the build context).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_layers::tar::{EntryKind as LayerKind, LayerEntry, LayerOptions};
use rbuild_layers::{Digest, Sha256Hasher};

use super::chmod::Chmod;
use super::key::KeyInputs;
use super::lazy_rootfs::LazyRootFs;
use super::record::Selection;
use super::rootfs::components;
use super::users::{resolve_owner, Owner};
use super::BuildError;
use crate::context::patternmatcher::PatternMatcher;
use crate::context::{Context, ContextError, EntryKind};
use crate::dockerfile::CopyInstruction;

/// Why a COPY or ADD could not be prepared or written.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("invalid --exclude pattern")]
    Exclude(#[source] crate::context::patternmatcher::PatternError),
    #[error("selecting the sources in the build context")]
    Select(#[source] crate::context::ContextError),
    #[error("when copying several sources the destination must be a directory ending in '/': write `{0}/`")]
    DestNotDir(String),
    #[error("invalid source pattern {0:?}")]
    BadPattern(String),
    #[error("{0}: no such file or directory in the source stage")]
    NotInStage(String),
    #[error("COPY/ADD source {source_path:?}: {link:?} is a symlink whose target is not there (a source symlink is followed inside the build context or stage root, as BuildKit does: its target must be in it and not excluded by .dockerignore)")]
    LinkTargetMissing { source_path: String, link: String },
    #[error(transparent)]
    Chmod(#[from] super::chmod::ChmodError),
    #[error("extracting the archive {}", path.display())]
    Extract {
        path: PathBuf,
        #[source]
        source: rbuild_layers::apply::ApplyError,
    },
    #[error(transparent)]
    Dest(#[from] super::in_root::DestError),
    #[error("ADD does not take --from: use COPY --from")]
    AddFrom,
}

/// One file-system object to put in the layer, before ownership and mode rules.
#[derive(Debug, Clone)]
struct Item {
    /// Absolute destination path, cleaned, without the leading `/`.
    dest: String,
    kind: ItemKind,
    /// Permission bits of the source.
    mode: u32,
    /// Content digest for the key (files and heredocs); link target for symlinks.
    digest: Option<Digest>,
    /// For a single file copied to a destination not spelled as a directory: the name it takes
    /// if the destination turns out to be an existing directory in the image (BuildKit copies
    /// it inside, fsutil's `prepareTargetDir`). Decided on a miss, against the parent's
    /// filesystem, which the parent key already pins.
    name_if_dir: Option<String>,
    /// The path in the build context of a file copied from it (for its content digest).
    ctx_rel: Option<String>,
    /// The source's uid/gid, kept without `--chown` when copying from a stage or image
    /// (BuildKit keeps them); `None` for the build context, whose files become 0:0.
    owner: Option<(u32, u32)>,
    /// The hard-link group of a file that shares its inode with other files copied from the
    /// same source directory: they stay one inode in the layer, as in BuildKit (whose copy
    /// links what one source's walk meets twice; files of different sources are not linked).
    link_group: Option<usize>,
}

#[derive(Debug, Clone)]
enum ItemKind {
    File(PathBuf),
    Dir,
    Symlink(String),
    /// A tar archive to extract at `dest` (ADD).
    Archive(PathBuf),
}

/// What a COPY/ADD needs from the stage it runs in.
pub struct CopyEnv<'a> {
    pub workdir: &'a str,
    pub epoch: i64,
    pub normalize_modes: bool,
    pub is_add: bool,
    pub layer_options: LayerOptions,
}

/// Where sources come from.
pub enum Source<'a> {
    Context(&'a Context),
    /// A directory holding another stage's (or image's) merged filesystem.
    Dir(&'a Path),
}

/// A prepared COPY: its key inputs (known before any layer work) and the items to write.
pub struct PreparedCopy {
    pub selection_digest: Digest,
    normalize_modes: bool,
    items: Vec<Item>,
    dest_abs: String,
    dest_is_dir: bool,
    /// The directories that directory sources are copied into: created (0755, owned like the
    /// files) when missing even if the source is empty, left as they are when they exist.
    dir_targets: BTreeSet<String>,
    /// No source matched (only wildcards, each matching nothing): BuildKit succeeds without
    /// creating anything, not even the destination directory.
    matched_nothing: bool,
}

fn clean_abs(p: &str) -> String {
    components(p).join("/")
}

fn normalized_mode(mode: u32, is_symlink: bool, normalize: bool) -> u32 {
    if is_symlink {
        0o777
    } else if !normalize {
        mode & 0o7777
    } else {
        // Only the bits a umask decides (group/other write) are cleared: never widen a mode,
        // so a 0600 file stays 0600 while 0664/0775 checkouts give 0644/0755.
        mode & 0o7777 & !0o022
    }
}

/// Joins the destination to the working directory.
pub fn absolute_dest(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') {
        clean_abs(dest)
    } else {
        clean_abs(&format!("{workdir}/{dest}"))
    }
}

fn join_dest(base: &str, rel: &str) -> String {
    if base.is_empty() {
        clean_abs(rel)
    } else {
        clean_abs(&format!("{base}/{rel}"))
    }
}

fn excluded(m: Option<&PatternMatcher>, rel: &str) -> bool {
    m.is_some_and(|m| m.matches_or_parent_matches(rel))
}

/// Whether `ADD` extracts the local file at `path`: by content, never by name (BuildKit, docker
/// 20.10: a tar, plain or gzip/bzip2/xz-compressed, is extracted; a `.tar.gz` that is not one,
/// a compressed file that holds no tar, and a zstd-compressed tar are copied as they are).
fn is_extracted_archive(path: &Path) -> Result<bool, BuildError> {
    use rbuild_layers::apply::StreamFormat;
    let f = std::fs::File::open(path).map_err(BuildError::io("reading", path))?;
    Ok(matches!(
        rbuild_layers::apply::archive_format(f),
        Some(StreamFormat::Tar | StreamFormat::Gzip | StreamFormat::Bzip2 | StreamFormat::Xz)
    ))
}

/// Selects the sources of `c` and computes the selection digest (the COPY's content input).
pub fn prepare(
    c: &CopyInstruction,
    source: &Source<'_>,
    env: &CopyEnv<'_>,
    scratch: &Path,
    hashing: &(dyn Fn(u64, u64) + Sync),
) -> Result<PreparedCopy, BuildError> {
    let dest_abs = absolute_dest(&c.dest, env.workdir);
    let exclude = if c.exclude.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&c.exclude).map_err(CopyError::Exclude)?)
    };
    let mut items: Vec<Item> = Vec::new();
    let mut matched_count = 0usize;
    let mut plans: Vec<Plan> = Vec::new();
    for src in &c.sources {
        let selected = select_sources(source, src)?;
        matched_count += selected.len();
        plans.extend(selected.into_iter().flatten());
    }
    matched_count += c.heredocs.len();
    let dest_is_dir = c.dest_names_dir() || matched_count > 1;
    if matched_count > 1 && !c.dest_names_dir() {
        return Err(CopyError::DestNotDir(c.dest.trim_end_matches('/').to_string()).into());
    }

    let root_path = |rel: &str| -> PathBuf {
        match source {
            Source::Context(ctx) => {
                if rel == "." {
                    ctx.root().to_path_buf()
                } else {
                    ctx.root().join(rel)
                }
            }
            Source::Dir(root) => {
                if rel == "." {
                    root.to_path_buf()
                } else {
                    root.join(rel)
                }
            }
        }
    };

    let is_ctx = matches!(source, Source::Context(_));
    let mut dir_targets = BTreeSet::new();
    let mut link_groups = 0usize;
    for Plan {
        name,
        src: rel,
        kind,
    } in plans
    {
        let base_name = name.rsplit('/').next().unwrap_or(&name).to_string();
        match kind {
            PlanKind::Dir => {
                let target = if c.parents && name != "." {
                    join_dest(&dest_abs, &name)
                } else {
                    dest_abs.clone()
                };
                // BuildKit creates the target of a directory copy even when the directory is
                // empty (`COPY emptydir /dest` makes /dest).
                if !target.is_empty() {
                    dir_targets.insert(target.clone());
                }
                if c.parents && name != "." {
                    let md = std::fs::symlink_metadata(root_path(&rel))
                        .map_err(BuildError::io("reading", root_path(&rel)))?;
                    items.push(Item {
                        dest: target.clone(),
                        kind: ItemKind::Dir,
                        mode: md.permissions().mode(),
                        digest: None,
                        name_if_dir: None,
                        ctx_rel: None,
                        owner: (!is_ctx).then(|| (md.uid(), md.gid())),
                        link_group: None,
                    });
                }
                let mut inodes: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
                for w in walk_source(source, &rel, &root_path(&rel))? {
                    if excluded(exclude.as_ref(), &w.rel) {
                        continue;
                    }
                    let dest = join_dest(&target, &w.rel);
                    let (kind, ctx_rel) = match w.kind {
                        PlanKind::Dir => (ItemKind::Dir, None),
                        PlanKind::File => (
                            ItemKind::File(root_path(&join_rel(&rel, &w.rel))),
                            is_ctx.then(|| join_rel(&rel, &w.rel)),
                        ),
                        PlanKind::Symlink(t) => (ItemKind::Symlink(t), None),
                    };
                    if let Some(inode) = w.inode {
                        inodes.entry(inode).or_default().push(items.len());
                    }
                    items.push(Item {
                        dest,
                        kind,
                        mode: w.mode,
                        digest: None,
                        name_if_dir: None,
                        ctx_rel,
                        owner: w.owner,
                        link_group: None,
                    });
                }
                for members in inodes.into_values().filter(|m| m.len() > 1) {
                    for i in members {
                        items[i].link_group = Some(link_groups);
                    }
                    link_groups += 1;
                }
            }
            PlanKind::File | PlanKind::Symlink(_) => {
                if excluded(exclude.as_ref(), &base_name) {
                    continue;
                }
                let dest = if c.parents {
                    join_dest(&dest_abs, &name)
                } else if dest_is_dir {
                    join_dest(&dest_abs, &base_name)
                } else {
                    dest_abs.clone()
                };
                let full = root_path(&rel);
                let md =
                    std::fs::symlink_metadata(&full).map_err(BuildError::io("reading", &full))?;
                let kind = match kind {
                    PlanKind::Symlink(t) => ItemKind::Symlink(t),
                    _ if env.is_add && is_extracted_archive(&full)? => ItemKind::Archive(full),
                    _ => ItemKind::File(full),
                };
                let dest = if matches!(kind, ItemKind::Archive(_)) {
                    // An archive is extracted into the destination directory.
                    dest_abs.clone()
                } else {
                    dest
                };
                let name_if_dir =
                    (!dest_is_dir && !c.parents && !matches!(kind, ItemKind::Archive(_)))
                        .then(|| base_name.clone());
                let ctx_rel =
                    (is_ctx && !matches!(kind, ItemKind::Symlink(_))).then(|| rel.clone());
                items.push(Item {
                    dest,
                    kind,
                    mode: md.permissions().mode(),
                    digest: None,
                    name_if_dir,
                    ctx_rel,
                    owner: (!is_ctx).then(|| (md.uid(), md.gid())),
                    link_group: None,
                });
            }
        }
    }

    for h in &c.heredocs {
        let path = scratch.join(format!("heredoc-{}", items.len()));
        std::fs::write(&path, h.body()).map_err(BuildError::io("writing", &path))?;
        let dest = if dest_is_dir {
            join_dest(&dest_abs, &h.name)
        } else {
            dest_abs.clone()
        };
        items.push(Item {
            dest,
            kind: ItemKind::File(path),
            mode: 0o644,
            digest: None,
            name_if_dir: (!dest_is_dir).then(|| h.name.clone()),
            ctx_rel: None,
            owner: None,
            link_group: None,
        });
    }

    // Content digests (the context's hashing is parallel and stat-cached).
    if let Source::Context(ctx) = source {
        let wanted: Vec<(usize, &str)> = items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| item.ctx_rel.as_deref().map(|r| (i, r)))
            .collect();
        let rels: Vec<&str> = wanted.iter().map(|(_, r)| *r).collect();
        let digests = ctx
            .file_digests_with_progress(&rels, hashing)
            .map_err(|e| BuildError::Context(std::sync::Arc::new(e)))?;
        let indices: Vec<usize> = wanted.iter().map(|(i, _)| *i).collect();
        for (i, d) in indices.into_iter().zip(digests) {
            items[i].digest = Some(d);
        }
    }
    for item in &mut items {
        if item.digest.is_none() {
            if let ItemKind::File(p) | ItemKind::Archive(p) = &item.kind {
                item.digest = Some(hash_file(p)?);
            }
        }
    }

    let mut h = Sha256Hasher::new();
    h.update(b"rbuild-copy-selection-v1\0");
    for item in &items {
        item_record(item, env.normalize_modes, &mut h);
    }
    for d in &dir_targets {
        h.update(b"t\0");
        h.update(d.as_bytes());
        h.update(b"\n");
    }
    Ok(PreparedCopy {
        selection_digest: h.finish(),
        normalize_modes: env.normalize_modes,
        items,
        dest_abs,
        dest_is_dir,
        dir_targets,
        matched_nothing: matched_count == 0,
    })
}

/// Feeds one item's canonical record (type, destination, mode, content or link target) into
/// `h`: the selection digest is over these, in order.
fn item_record(item: &Item, normalize_modes: bool, h: &mut Sha256Hasher) {
    let is_link = matches!(item.kind, ItemKind::Symlink(_));
    let mode = normalized_mode(item.mode, is_link, normalize_modes);
    let (tag, extra): (&[u8], &str) = match &item.kind {
        ItemKind::File(_) => (b"f", item.digest.as_ref().map_or("", Digest::hex)),
        ItemKind::Archive(_) => (b"a", item.digest.as_ref().map_or("", Digest::hex)),
        ItemKind::Dir => (b"d", ""),
        ItemKind::Symlink(t) => (b"l", t),
    };
    h.update(tag);
    h.update(b"\0");
    h.update(item.dest.as_bytes());
    h.update(format!("\0{mode:o}\0").as_bytes());
    h.update(extra.as_bytes());
    if let Some((uid, gid)) = item.owner {
        h.update(format!("\0o{uid}:{gid}").as_bytes());
    }
    if let Some(g) = item.link_group {
        h.update(format!("\0g{g}").as_bytes());
    }
    h.update(b"\n");
}

impl PreparedCopy {
    /// The same copy with its destination `dest_abs` replaced by `to` (where it resolves in the
    /// image, through symlinks): every item below it moves along.
    fn rebased(&self, to: &str) -> PreparedCopy {
        let from = &self.dest_abs;
        let move_path = |p: &str| -> String {
            match p.strip_prefix(from.as_str()) {
                Some("") => to.to_string(),
                Some(rest) if from.is_empty() || rest.starts_with('/') => {
                    join_dest(to, rest.trim_start_matches('/'))
                }
                _ => p.to_string(),
            }
        };
        PreparedCopy {
            selection_digest: self.selection_digest.clone(),
            normalize_modes: self.normalize_modes,
            items: self
                .items
                .iter()
                .map(|i| Item {
                    dest: move_path(&i.dest),
                    ..i.clone()
                })
                .collect(),
            dest_abs: to.to_string(),
            dest_is_dir: self.dest_is_dir,
            dir_targets: self.dir_targets.iter().map(|d| move_path(d)).collect(),
            matched_nothing: self.matched_nothing,
        }
    }

    /// Per-file digests of the selection, for explaining a later miss by file name; built only
    /// when the selection is new to the store.
    pub fn selection(&self) -> Selection {
        let mut selection = Selection::default();
        for item in &self.items {
            let mut h = Sha256Hasher::new();
            item_record(item, self.normalize_modes, &mut h);
            selection
                .files
                .insert(display_rel(&item.dest, &self.dest_abs), h.finish());
        }
        selection
    }
}

fn display_rel(dest: &str, dest_abs: &str) -> String {
    let rel = dest
        .strip_prefix(dest_abs)
        .map(|r| r.trim_start_matches('/'))
        .filter(|r| !r.is_empty());
    match rel {
        Some(r) => r.to_string(),
        None => dest.rsplit('/').next().unwrap_or(dest).to_string(),
    }
}

fn join_rel(a: &str, b: &str) -> String {
    if a == "." || a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

#[derive(Debug, Clone)]
enum PlanKind {
    File,
    Dir,
    Symlink(String),
}

/// One matched source: `name` as matched (its last component names the copy), `src` the entry
/// it resolves to (a symlink source is followed).
struct Plan {
    name: String,
    src: String,
    kind: PlanKind,
}

/// The sources `pattern` matches, in order; `None` for a match that is not copied (a special
/// file). A source that is itself a symlink is followed inside its root, as BuildKit does
/// (`FollowSymlinks` on COPY/ADD): its target's content and mode are copied under the link's
/// name. Symlinks *inside* a copied directory stay symlinks.
fn select_sources(source: &Source<'_>, pattern: &str) -> Result<Vec<Option<Plan>>, BuildError> {
    let missing_target = |name: &str| CopyError::LinkTargetMissing {
        source_path: pattern.to_string(),
        link: name.to_string(),
    };
    match source {
        Source::Context(ctx) => {
            let rels = match ctx.select(pattern) {
                Ok(rels) => rels,
                // BuildKit's Dockerfile frontend copies with AllowEmptyWildcard: a wildcard
                // that matches nothing is skipped, even when no source matches at all.
                Err(ContextError::NoSourceFiles { .. }) => Vec::new(),
                Err(e) => return Err(CopyError::Select(e).into()),
            };
            let mut out = Vec::with_capacity(rels.len());
            for name in rels {
                let src = ctx
                    .resolve_source(name)
                    .ok_or_else(|| missing_target(name))?;
                let kind = if src == "." {
                    Some(PlanKind::Dir)
                } else {
                    match ctx.get(src).map(|e| &e.kind) {
                        Some(EntryKind::Dir) => Some(PlanKind::Dir),
                        Some(EntryKind::File) => Some(PlanKind::File),
                        Some(EntryKind::Other) => None,
                        Some(EntryKind::Symlink(_)) | None => {
                            return Err(BuildError::Internal(format!(
                                "source {name} resolved to {src}, which is not an entry"
                            )))
                        }
                    }
                };
                out.push(kind.map(|kind| Plan {
                    name: name.to_string(),
                    src: src.to_string(),
                    kind,
                }));
            }
            Ok(out)
        }
        Source::Dir(root) => {
            let mut out = Vec::new();
            for name in select_in_dir(root, pattern)? {
                let src = super::in_root::resolve(root, &name, true)
                    .ok_or_else(|| missing_target(&name))?;
                let full = if src == "." {
                    root.to_path_buf()
                } else {
                    root.join(&src)
                };
                let md =
                    std::fs::symlink_metadata(&full).map_err(BuildError::io("reading", &full))?;
                let kind = if md.is_dir() {
                    Some(PlanKind::Dir)
                } else if md.is_file() {
                    Some(PlanKind::File)
                } else {
                    None
                };
                out.push(kind.map(|kind| Plan { name, src, kind }));
            }
            Ok(out)
        }
    }
}

/// One entry below a source directory.
struct Walked {
    /// Path relative to the source directory.
    rel: String,
    kind: PlanKind,
    /// Permission bits.
    mode: u32,
    /// uid/gid kept from a stage or image (see [`Item::owner`]).
    owner: Option<(u32, u32)>,
    /// Device and inode of a regular file that may have other names (see [`Item::link_group`]).
    inode: Option<(u64, u64)>,
}

/// Everything below a source directory, in sorted order.
fn walk_source(source: &Source<'_>, rel: &str, full: &Path) -> Result<Vec<Walked>, BuildError> {
    match source {
        Source::Context(ctx) => {
            let prefix_len = if rel == "." { 0 } else { rel.len() + 1 };
            Ok(ctx
                .walk_under(rel)
                .filter_map(|(p, e)| {
                    let kind = match &e.kind {
                        EntryKind::Dir => PlanKind::Dir,
                        EntryKind::File => PlanKind::File,
                        EntryKind::Symlink(t) => PlanKind::Symlink(t.clone()),
                        EntryKind::Other => return None,
                    };
                    let inode =
                        (matches!(kind, PlanKind::File) && e.ino != 0).then_some((e.dev, e.ino));
                    Some(Walked {
                        rel: p[prefix_len..].to_string(),
                        kind,
                        mode: e.mode,
                        owner: None,
                        inode,
                    })
                })
                .collect())
        }
        Source::Dir(_) => {
            let mut out = Vec::new();
            walk_dir(full, "", &mut out)?;
            Ok(out)
        }
    }
}

fn walk_dir(dir: &Path, prefix: &str, out: &mut Vec<Walked>) -> Result<(), BuildError> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(BuildError::io("listing", dir))?
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let name_s = name.to_string_lossy().into_owned();
        let rel = if prefix.is_empty() {
            name_s
        } else {
            format!("{prefix}/{name_s}")
        };
        let p = dir.join(&name);
        let md = std::fs::symlink_metadata(&p).map_err(BuildError::io("reading", &p))?;
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            PlanKind::Dir
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).map_err(BuildError::io("reading link", &p))?;
            PlanKind::Symlink(t.to_string_lossy().into_owned())
        } else if ft.is_file() && rbuild_layers::device::placeholder_of(&p, &md).is_none() {
            PlanKind::File
        } else {
            // Special files are not copied (as BuildKit's copy skips them), nor the inert
            // placeholders that stand for device nodes in the store (rbuild_layers::device).
            continue;
        };
        let inode =
            (matches!(kind, PlanKind::File) && md.nlink() > 1).then_some((md.dev(), md.ino()));
        out.push(Walked {
            rel: rel.clone(),
            kind: kind.clone(),
            mode: md.permissions().mode(),
            owner: Some((md.uid(), md.gid())),
            inode,
        });
        if matches!(kind, PlanKind::Dir) {
            walk_dir(&p, &rel, out)?;
        }
    }
    Ok(())
}

/// Resolves a `COPY --from` source inside a stage's root (absolute paths are inside the
/// stage; wildcards are allowed in every component).
fn select_in_dir(root: &Path, pattern: &str) -> Result<Vec<String>, BuildError> {
    use crate::context::gopath;
    let cleaned = gopath::clean(&format!("/{pattern}"));
    let rel = cleaned.trim_start_matches('/');
    if rel.is_empty() {
        return Ok(vec![".".into()]);
    }
    let mut current: Vec<String> = vec![String::new()];
    for seg in rel.split('/') {
        let mut next = Vec::new();
        for cur in &current {
            // The directory so far, resolved inside the stage: a symlink on the way is never
            // followed by the kernel (it could point at the host's files).
            let cur = if cur.is_empty() {
                String::new()
            } else {
                match super::in_root::resolve(root, cur, true) {
                    Some(r) if r == "." => String::new(),
                    Some(r) => r,
                    None => continue,
                }
            };
            let dir = if cur.is_empty() {
                root.to_path_buf()
            } else {
                root.join(&cur)
            };
            if !gopath::has_meta(seg) {
                let cand = if cur.is_empty() {
                    seg.to_string()
                } else {
                    format!("{cur}/{seg}")
                };
                // lstat: the last component is not followed here.
                if std::fs::symlink_metadata(root.join(&cand)).is_ok() {
                    next.push(cand);
                }
                continue;
            }
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<String> = rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let hit = gopath::matches(seg, &n)
                    .map_err(|_| CopyError::BadPattern(pattern.to_string()))?;
                if hit {
                    next.push(if cur.is_empty() {
                        n
                    } else {
                        format!("{cur}/{n}")
                    });
                }
            }
        }
        current = next;
    }
    // As in the build context, only a plain path that is missing is an error; a wildcard that
    // matches nothing is skipped (BuildKit's AllowEmptyWildcard).
    if current.is_empty() && !gopath::has_meta(rel) {
        return Err(CopyError::NotInStage(pattern.to_string()).into());
    }
    Ok(current)
}

fn hash_file(p: &Path) -> Result<Digest, BuildError> {
    let mut f = std::fs::File::open(p).map_err(BuildError::io("reading", p))?;
    let mut h = Sha256Hasher::new();
    std::io::copy(&mut f, &mut h).map_err(BuildError::io("reading", p))?;
    Ok(h.finish())
}

/// The key of a COPY/ADD.
pub fn key_inputs(
    prepared: &PreparedCopy,
    instruction: &str,
    op: &str,
    parent: Option<Digest>,
    platform: &str,
    c: &CopyInstruction,
    from_key: Option<(&str, &Digest)>,
) -> KeyInputs {
    let mut k = KeyInputs::new(
        op,
        if c.link { None } else { parent },
        instruction.to_string(),
        platform.to_string(),
    )
    .input("files", prepared.selection_digest.to_string())
    .input(super::parents::KEY_INPUT.0, super::parents::KEY_INPUT.1)
    .input("dest", format!("/{}", prepared.dest_abs));
    if let Some((stage, key)) = from_key {
        k = k.input(&format!("from:{stage}"), key.to_string());
    }
    k
}

/// Builds the layer entries of a prepared COPY on top of `rootfs` (unused with `--link`).
pub fn entries(
    prepared: &PreparedCopy,
    c: &CopyInstruction,
    env: &CopyEnv<'_>,
    rootfs: &LazyRootFs<'_>,
    scratch: &Path,
) -> Result<Vec<LayerEntry>, BuildError> {
    let chown = match &c.chown {
        Some(spec) => {
            let passwd = rootfs.read_small_file("/etc/passwd")?;
            let group = rootfs.read_small_file("/etc/group")?;
            Some(resolve_owner(spec, passwd.as_deref(), group.as_deref())?)
        }
        None => None,
    };
    // Directories the step creates are 0:0 without --chown, whatever the source's owner.
    let owner = chown.unwrap_or(Owner { uid: 0, gid: 0 });
    let chmod = c
        .chmod
        .as_deref()
        .map(Chmod::parse)
        .transpose()
        .map_err(CopyError::from)?;
    if prepared.matched_nothing {
        return Ok(Vec::new());
    }
    // The destination is written through a symlink, resolved inside the image (BuildKit:
    // `COPY a /bin/vi` over `vi -> busybox` replaces busybox; a dangling link's target is
    // created). With --link there is nothing below to resolve against.
    let resolved;
    let prepared = if c.link {
        prepared
    } else {
        let to = super::in_root::resolve_dest(rootfs, &prepared.dest_abs)?;
        if to == prepared.dest_abs {
            prepared
        } else {
            resolved = prepared.rebased(&to);
            &resolved
        }
    };
    let mut out: Vec<LayerEntry> = Vec::new();
    let mut created: BTreeSet<String> = BTreeSet::new();
    let dir_entry = |path: &str, mode: u32| LayerEntry {
        path: path.to_string(),
        kind: LayerKind::Dir,
        mode,
        uid: owner.uid,
        gid: owner.gid,
        mtime: env.epoch,
        xattrs: BTreeMap::new(),
    };

    // A single file copied onto an existing directory goes inside it.
    let into_dir = !prepared.dest_is_dir
        && !c.link
        && rootfs
            .lookup(&prepared.dest_abs)?
            .is_some_and(|f| f.is_dir());
    let dest_of = |item: &Item| -> String {
        match (&item.name_if_dir, into_dir) {
            (Some(name), true) => join_dest(&prepared.dest_abs, name),
            _ => item.dest.clone(),
        }
    };

    // Missing parents of every destination (and the destination directory itself) are
    // created, owned like the copied files. With --link nothing below is consulted.
    let mut needed_dirs: BTreeSet<String> = BTreeSet::new();
    for item in &prepared.items {
        let comps = components(&dest_of(item));
        let last = usize::from(matches!(item.kind, ItemKind::Archive(_)));
        for i in 1..comps.len() + last {
            needed_dirs.insert(comps[..i].join("/"));
        }
    }
    if prepared.dest_is_dir && !prepared.dest_abs.is_empty() {
        needed_dirs.insert(prepared.dest_abs.clone());
    }
    for d in &prepared.dir_targets {
        let comps = components(d);
        for i in 1..=comps.len() {
            needed_dirs.insert(comps[..i].join("/"));
        }
    }
    // An archive's destination is the directory it is extracted into: created like any other.
    let item_paths: BTreeSet<String> = prepared
        .items
        .iter()
        .filter(|i| !matches!(i.kind, ItemKind::Archive(_)))
        .map(dest_of)
        .collect();
    for d in needed_dirs {
        if item_paths.contains(&d) {
            continue;
        }
        let exists = !c.link
            && rootfs
                .lookup(&d)?
                .is_some_and(|f| f.is_dir() || f.is_symlink());
        if !(exists || c.link && d != prepared.dest_abs) {
            out.push(dir_entry(&d, 0o755));
            created.insert(d);
        }
    }

    for item in &prepared.items {
        let is_dir = matches!(item.kind, ItemKind::Dir);
        let is_link = matches!(item.kind, ItemKind::Symlink(_));
        let mut mode = normalized_mode(item.mode, is_link, env.normalize_modes);
        if let (Some(ch), false) = (&chmod, is_link) {
            mode = ch.apply(mode, is_dir);
        }
        let dest = dest_of(item);
        let kind = match &item.kind {
            ItemKind::Archive(path) => {
                out.extend(extract_archive(path, &dest, scratch, env)?);
                continue;
            }
            ItemKind::File(p) => LayerKind::File { source: p.clone() },
            ItemKind::Dir => LayerKind::Dir,
            ItemKind::Symlink(t) => LayerKind::Symlink { target: t.clone() },
        };
        if dest.is_empty() {
            // Copying onto "/" itself would only change the root's metadata; BuildKit keeps
            // the root as it is.
            continue;
        }
        let item_owner = match (chown, item.owner) {
            (None, Some((uid, gid))) => Owner {
                uid: uid.into(),
                gid: gid.into(),
            },
            _ => owner,
        };
        out.push(LayerEntry {
            path: dest,
            kind,
            mode,
            uid: item_owner.uid,
            gid: item_owner.gid,
            mtime: env.epoch,
            xattrs: BTreeMap::new(),
        });
    }
    // Existing parents go into the layer as they are (BuildKit's layers hold them); with
    // --link there is nothing below to consult.
    if !c.link {
        let parents = super::parents::existing_parents(rootfs, &out, env.epoch)?;
        out.extend(parents);
    }
    link_hardlinks(&mut out, &prepared.items);
    Ok(out)
}

/// Sorts `out` and turns every file of a hard-link group after the first (in layer order) into
/// a hard link to it.
fn link_hardlinks(out: &mut [LayerEntry], items: &[Item]) {
    rbuild_layers::tar::sort_entries(out);
    let groups: BTreeMap<&str, usize> = items
        .iter()
        .filter_map(|i| Some((i.dest.as_str(), i.link_group?)))
        .collect();
    if groups.is_empty() {
        return;
    }
    let mut first: BTreeMap<usize, String> = BTreeMap::new();
    for e in out.iter_mut() {
        let Some(&g) = groups.get(e.path.as_str()) else {
            continue;
        };
        if !matches!(e.kind, LayerKind::File { .. }) {
            continue;
        }
        match first.get(&g) {
            Some(target) => {
                e.kind = LayerKind::Hardlink {
                    target: target.clone(),
                }
            }
            None => {
                first.insert(g, e.path.clone());
            }
        }
    }
}

/// Extracts a local archive (ADD) safely into a scratch directory, then lists it as entries
/// under `dest`. Ownership and modes come from the archive, as Docker's ADD keeps them.
fn extract_archive(
    path: &Path,
    dest: &str,
    scratch: &Path,
    env: &CopyEnv<'_>,
) -> Result<Vec<LayerEntry>, BuildError> {
    let dir = scratch.join(format!(
        "add-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).map_err(BuildError::io("creating", &dir))?;
    let f = std::fs::File::open(path).map_err(BuildError::io("reading", path))?;
    let opts = rbuild_layers::apply::ApplyOptions::default();
    rbuild_layers::apply::apply_layer(&dir, f, &opts).map_err(|source| CopyError::Extract {
        path: path.to_path_buf(),
        source,
    })?;
    let mut entries =
        rbuild_layers::tar::entries_from_dir(&dir, &rbuild_layers::tar::DirOptions::default())?;
    for e in &mut entries {
        e.path = join_dest(dest, &e.path);
        if env.layer_options.source_date_epoch.is_some() {
            e.mtime = e.mtime.min(env.epoch);
        }
        if let LayerKind::Hardlink { target } = &mut e.kind {
            *target = join_dest(dest, target);
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::IgnoreRules;
    use crate::dockerfile::Instruction;
    use std::os::unix::fs::MetadataExt;

    /// The COPY or ADD on the line after `FROM scratch`.
    fn instruction(line: &str) -> (CopyInstruction, bool) {
        let df = crate::dockerfile::parse(&format!("FROM scratch\n{line}\n")).unwrap();
        match &df.stages[0].instructions[0].node {
            Instruction::Copy(c) => (c.clone(), false),
            Instruction::Add(c) => (c.clone(), true),
            other => panic!("not a COPY: {other:?}"),
        }
    }

    /// Runs `line` against the build context in `ctx` over an empty image and returns the
    /// layer's entries as `(path, kind letter, mode, uid)`.
    fn copy_entries(ctx: &Path, line: &str) -> Result<Vec<Summary>, BuildError> {
        let context = Context::scan(ctx, &IgnoreRules::empty(), None).unwrap();
        copy_entries_from(&Source::Context(&context), line)
    }

    type Summary = (String, char, u32, u64);

    fn copy_entries_from(source: &Source<'_>, line: &str) -> Result<Vec<Summary>, BuildError> {
        copy_entries_over(source, line, &LazyRootFs::empty())
    }

    fn copy_entries_over(
        source: &Source<'_>,
        line: &str,
        rootfs: &LazyRootFs<'_>,
    ) -> Result<Vec<Summary>, BuildError> {
        let (c, is_add) = instruction(line);
        let scratch = tempfile::tempdir().unwrap();
        let env = CopyEnv {
            workdir: "/",
            epoch: 0,
            normalize_modes: false,
            is_add,
            layer_options: LayerOptions::default(),
        };
        let p = prepare(&c, source, &env, scratch.path(), &|_, _| {})?;
        let mut out = entries(&p, &c, &env, rootfs, scratch.path())?;
        rbuild_layers::tar::sort_entries(&mut out);
        Ok(out
            .into_iter()
            .map(|e| {
                let kind = match e.kind {
                    LayerKind::File { .. } => 'f',
                    LayerKind::Dir => 'd',
                    LayerKind::Symlink { .. } => 'l',
                    LayerKind::Hardlink { .. } => 'h',
                    _ => '?',
                };
                (e.path, kind, e.mode, e.uid)
            })
            .collect())
    }

    fn paths(entries: &[(String, char, u32, u64)]) -> Vec<&str> {
        entries.iter().map(|e| e.0.as_str()).collect()
    }

    fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (p, content) in files {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        dir
    }

    #[test]
    fn copy_with_one_unmatched_wildcard_copies_the_others() {
        // BuildKit (docker 20.10): `COPY a.txt *.nomatch /d/` copies a.txt into /d/.
        let ctx = context(&[("a.txt", "A")]);
        let out = copy_entries(ctx.path(), "COPY a.txt *.nomatch /d/").unwrap();
        assert_eq!(paths(&out), ["d", "d/a.txt"]);
        // One match left: a destination without a slash is that file (BuildKit: /d is a file).
        let out = copy_entries(ctx.path(), "COPY a.txt *.nomatch /d").unwrap();
        assert_eq!(paths(&out), ["d"]);
        assert_eq!(out[0].1, 'f');
    }

    #[test]
    fn copy_whose_wildcards_all_match_nothing_copies_nothing() {
        // BuildKit (AllowEmptyWildcard): no error, and /d/ is not even created.
        let ctx = context(&[("a.txt", "A")]);
        let out = copy_entries(ctx.path(), "COPY *.nomatch *.none /d/").unwrap();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn copy_of_a_missing_plain_source_is_still_an_error() {
        // BuildKit: `"/missing" not found: not found`, even beside a source that matches.
        let ctx = context(&[("a.txt", "A")]);
        let err = copy_entries(ctx.path(), "COPY a.txt missing /d/").unwrap_err();
        assert!(format!("{:?}", err).contains("SourceNotFound"), "{err:?}");
    }

    #[test]
    fn copy_of_an_empty_directory_creates_the_destination() {
        // BuildKit (docker 20.10): `COPY empty /dest` makes /dest, 0755 whatever the source's
        // mode and whatever --chmod says, owned by --chown like its missing parents.
        let ctx = context(&[]);
        std::fs::create_dir(ctx.path().join("empty")).unwrap();
        std::fs::set_permissions(
            ctx.path().join("empty"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let out = copy_entries(ctx.path(), "COPY --chmod=700 empty /dest").unwrap();
        assert_eq!(out, [("dest".to_string(), 'd', 0o755, 0)]);
        let out = copy_entries(ctx.path(), "COPY --chown=1000:1000 empty /p1/p2").unwrap();
        assert_eq!(
            out,
            [
                ("p1".to_string(), 'd', 0o755, 1000),
                ("p1/p2".to_string(), 'd', 0o755, 1000)
            ]
        );
    }

    #[test]
    fn add_decides_extraction_by_content_not_by_name() {
        // BuildKit (docker 20.10): a `.tar.gz` that is text and a gzip that holds no tar are
        // copied; a tar named `.bin` is extracted; a zstd tar is copied as it is.
        let ctx = context(&[("fake.tar.gz", "not an archive\n"), ("t/inside", "in\n")]);
        let tar = |args: &[&str]| {
            let ok = std::process::Command::new("sh")
                .arg("-c")
                .arg(args.join(" "))
                .current_dir(ctx.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "{args:?}");
        };
        tar(&["gzip -c t/inside > notes.txt.gz"]);
        tar(&["tar -czf real.bin -C t inside"]);
        tar(&["tar -cf - -C t inside | zstd -q -c > z.tar.zst"]);
        for (line, want) in [
            ("ADD fake.tar.gz /a/", vec!["a", "a/fake.tar.gz"]),
            ("ADD notes.txt.gz /a/", vec!["a", "a/notes.txt.gz"]),
            ("ADD real.bin /a/", vec!["a", "a/inside"]),
            ("ADD real.bin /b", vec!["b", "b/inside"]),
            ("ADD z.tar.zst /a/", vec!["a", "a/z.tar.zst"]),
        ] {
            let out = copy_entries(ctx.path(), line).unwrap();
            assert_eq!(paths(&out), want, "{line}");
        }
    }

    #[test]
    fn add_of_an_archive_with_chown_creates_its_destination_owned_by_that_user() {
        // BuildKit (docker 20.10): the directories ADD creates for the archive (the
        // destination and its missing parents) are --chown's; the extracted entries keep the
        // archive's owners.
        let ctx = context(&[("t/sub/f", "in\n")]);
        let ok = std::process::Command::new("tar")
            .args(["-cf", "arch.tar", "t"])
            .current_dir(ctx.path())
            .status()
            .unwrap()
            .success();
        assert!(ok);
        for (line, created) in [
            ("ADD --chown=1000:1000 arch.tar /x", vec!["x"]),
            ("ADD --chown=1000:1000 arch.tar /x/", vec!["x"]),
            ("ADD --chown=1000:1000 arch.tar /p/q", vec!["p", "p/q"]),
        ] {
            let out = copy_entries(ctx.path(), line).unwrap();
            let archived = u64::from(std::fs::metadata(ctx.path().join("t")).unwrap().uid());
            for e in &out {
                let want = if created.contains(&e.0.as_str()) {
                    1000
                } else {
                    archived
                };
                assert_eq!(e.3, want, "{line}: {e:?}");
            }
            assert!(
                out.iter().any(|e| e.0.ends_with("t/sub/f")),
                "{line}: {out:?}"
            );
        }
    }

    /// A tree with `real.txt` (0600), links to it (relative and absolute), a link to a
    /// directory, a directory holding a link, and links out of the tree.
    fn tree_with_links() -> tempfile::TempDir {
        use std::os::unix::fs::symlink;
        let t = context(&[("real.txt", "real\n"), ("sub/f", "f\n"), ("dir/x", "x\n")]);
        let p = t.path();
        std::fs::set_permissions(p.join("real.txt"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        symlink("real.txt", p.join("link")).unwrap();
        symlink("/real.txt", p.join("abslink")).unwrap();
        symlink("sub", p.join("dlink")).unwrap();
        symlink("../real.txt", p.join("dir/inner")).unwrap();
        symlink("../../../../../../etc/hostname", p.join("outlink")).unwrap();
        symlink("/etc/hostname", p.join("outabs")).unwrap();
        symlink("/etc", p.join("hostetc")).unwrap();
        t
    }

    fn symlink_cases(source: &Source<'_>) {
        // BuildKit (docker 20.10): the link is followed, its target's content and mode are
        // copied under the link's own name; an absolute target resolves inside the root.
        for line in ["COPY link /d/", "COPY lin* /d/", "ADD link /d/"] {
            let out = copy_entries_from(source, line).unwrap();
            assert_eq!(out[1], ("d/link".to_string(), 'f', 0o600, 0), "{line}");
        }
        let out = copy_entries_from(source, "COPY link /d2").unwrap();
        assert_eq!(out, [("d2".to_string(), 'f', 0o600, 0)]);
        let out = copy_entries_from(source, "COPY abslink /d/").unwrap();
        assert_eq!(out[1], ("d/abslink".to_string(), 'f', 0o600, 0));
        // A link to a directory copies the directory's contents.
        let out = copy_entries_from(source, "COPY dlink /d/").unwrap();
        assert_eq!(paths(&out), ["d", "d/f"]);
        // Links inside a copied directory stay links.
        let out = copy_entries_from(source, "COPY dir /d/").unwrap();
        assert!(
            out.contains(&("d/inner".to_string(), 'l', 0o777, 0)),
            "{out:?}"
        );
        // Out of the root: resolved inside it, where there is no etc/hostname (BuildKit:
        // `"/etc/hostname" not found`).
        for line in ["COPY outlink /d/", "COPY outabs /d/"] {
            let err = copy_entries_from(source, line).unwrap_err();
            assert!(
                format!("{err:?}").contains("LinkTargetMissing"),
                "{line}: {err:?}"
            );
        }
        // A symlinked parent is resolved inside the root too: never the host's /etc/passwd.
        for line in ["COPY hostetc/passwd /d", "COPY hostetc/pass* /d"] {
            let out = copy_entries_from(source, line);
            assert!(
                out.as_ref().is_ok_and(Vec::is_empty) || out.is_err(),
                "{line}: {out:?}"
            );
        }
    }

    #[test]
    fn copy_of_a_symlink_source_copies_its_target_under_the_link_name() {
        let t = tree_with_links();
        let context = Context::scan(t.path(), &IgnoreRules::empty(), None).unwrap();
        symlink_cases(&Source::Context(&context));
    }

    #[test]
    fn copy_from_a_stage_follows_a_symlink_source_inside_the_stage() {
        let t = tree_with_links();
        symlink_cases(&Source::Dir(t.path()));
    }

    #[test]
    fn copy_keeps_the_mode_and_owner_of_existing_parent_directories() {
        // BuildKit's layer for `COPY --chown=1000 f /srv/a/b/` holds srv/ as it was (0700 and
        // its owner) and the new srv/a, srv/a/b 0755 1000:1000; `COPY f /tmp/y/` holds tmp/
        // 1777. Without them a layer applied on its own (Docker's overlay2, rbuild's
        // snapshots) shows /tmp as 0755.
        use super::super::lazy_rootfs::Lower;
        let lower = context(&[]);
        let l = lower.path();
        for (d, mode) in [("tmp", 0o1777), ("srv", 0o700), ("opt", 0o711)] {
            std::fs::create_dir(l.join(d)).unwrap();
            std::fs::set_permissions(l.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("tmp", l.join("tlink")).unwrap();
        let rootfs = LazyRootFs::new(
            vec![Lower::Dir(l.to_path_buf())],
            Box::new(|_| unreachable!("the lower is unpacked")),
        );
        let ctx = context(&[("f", "f")]);
        let context = Context::scan(ctx.path(), &IgnoreRules::empty(), None).unwrap();
        let source = Source::Context(&context);
        let root_uid = u64::from(std::fs::metadata(l.join("srv")).unwrap().uid());
        let out = copy_entries_over(&source, "COPY --chown=1000 f /srv/a/b/", &rootfs).unwrap();
        assert_eq!(
            out,
            [
                ("srv".to_string(), 'd', 0o700, root_uid),
                ("srv/a".to_string(), 'd', 0o755, 1000),
                ("srv/a/b".to_string(), 'd', 0o755, 1000),
                ("srv/a/b/f".to_string(), 'f', 0o644, 1000),
            ]
        );
        let out = copy_entries_over(&source, "COPY f /tmp/y/", &rootfs).unwrap();
        assert_eq!(out[0], ("tmp".to_string(), 'd', 0o1777, root_uid));
        // A file copied onto an existing directory: the directory is kept too.
        let out = copy_entries_over(&source, "COPY f /opt", &rootfs).unwrap();
        assert_eq!(paths(&out), ["opt", "opt/f"]);
        assert_eq!(out[0].2, 0o711);
        // Nothing is written for a parent that is a symlink (it would replace the link).
        let out = copy_entries_over(&source, "COPY f /tlink/y/", &rootfs).unwrap();
        assert!(!paths(&out).contains(&"tlink"), "{out:?}");
    }

    /// Changes the owner of `p` (not following a link); false when not permitted (not root).
    fn lchown(p: &Path, uid: u32, gid: u32) -> bool {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).is_ok()
    }

    #[test]
    fn copy_from_a_stage_keeps_the_owner_of_what_it_copies() {
        // BuildKit (docker 20.10): COPY --from keeps the uid/gid of files, directories and
        // links (a followed source link: its target's); directories the COPY creates are 0:0;
        // --chown wins over all; files from the build context are 0:0.
        let root = context(&[("out/f", "x"), ("out/sub/g", "y")]);
        let r = root.path();
        std::os::unix::fs::symlink("f", r.join("out/lnk")).unwrap();
        let owned = [
            ("out", 1000),
            ("out/f", 1000),
            ("out/sub", 1000),
            ("out/sub/g", 1001),
            ("out/lnk", 1004),
        ];
        for (p, uid) in owned {
            if !lchown(&r.join(p), uid, uid) {
                eprintln!("SKIPPED: chown needs root");
                return;
            }
        }
        let stage = Source::Dir(r);
        let out = copy_entries_from(&stage, "COPY --from=build /out /o1").unwrap();
        let uids: Vec<(&str, u64)> = out.iter().map(|e| (e.0.as_str(), e.3)).collect();
        assert_eq!(
            uids,
            [
                ("o1", 0),
                ("o1/f", 1000),
                ("o1/lnk", 1004),
                ("o1/sub", 1000),
                ("o1/sub/g", 1001)
            ]
        );
        let out = copy_entries_from(&stage, "COPY --from=build /out/lnk /out/f /o3/").unwrap();
        let uids: Vec<(&str, u64)> = out.iter().map(|e| (e.0.as_str(), e.3)).collect();
        assert_eq!(uids, [("o3", 0), ("o3/f", 1000), ("o3/lnk", 1000)]);
        let out = copy_entries_from(&stage, "COPY --from=build --chown=5:6 /out /o5").unwrap();
        assert!(out.iter().all(|e| e.3 == 5), "{out:?}");
        // The same tree as the build context: 0:0.
        let out = copy_entries(r, "COPY out /c/").unwrap();
        assert!(out.iter().all(|e| e.3 == 0), "{out:?}");
    }

    /// `dir/a` and `dir/b` one inode, `dir/c` linked to `other/c2`, `x1` to `x2` and `dir/x3`.
    fn tree_with_hardlinks() -> tempfile::TempDir {
        let t = context(&[
            ("dir/a", "A"),
            ("dir/c", "C"),
            ("x1", "X"),
            ("other/.keep", ""),
        ]);
        let p = t.path();
        std::fs::hard_link(p.join("dir/a"), p.join("dir/b")).unwrap();
        std::fs::hard_link(p.join("dir/c"), p.join("other/c2")).unwrap();
        std::fs::hard_link(p.join("x1"), p.join("x2")).unwrap();
        std::fs::hard_link(p.join("x1"), p.join("dir/x3")).unwrap();
        t
    }

    fn hardlink_cases(source: &Source<'_>) {
        let kinds = |line: &str| -> Vec<(String, char)> {
            copy_entries_from(source, line)
                .unwrap()
                .into_iter()
                .map(|e| (e.0, e.1))
                .collect()
        };
        let k = |p: &str, c: char| (p.to_string(), c);
        // BuildKit (docker 20.10): the files a directory source's walk meets twice stay one
        // inode; a link to a file outside that directory is not kept.
        assert_eq!(
            kinds("COPY dir /d/"),
            [
                k("d", 'd'),
                k("d/a", 'f'),
                k("d/b", 'h'),
                k("d/c", 'f'),
                k("d/x3", 'f')
            ]
        );
        // Each source is walked on its own: no link across two sources.
        let out = kinds("COPY dir other /e/");
        assert!(out.contains(&k("e/b", 'h')), "{out:?}");
        assert!(
            out.contains(&k("e/c", 'f')) && out.contains(&k("e/c2", 'f')),
            "{out:?}"
        );
        assert_eq!(
            kinds("COPY x1 x2 /f/"),
            [k("f", 'd'), k("f/x1", 'f'), k("f/x2", 'f')]
        );
        // An excluded member leaves the other one a plain file.
        let out = kinds("COPY --exclude=b dir /g/");
        assert!(out.contains(&k("g/a", 'f')), "{out:?}");
    }

    #[test]
    fn copy_keeps_hardlinks_inside_a_context_directory() {
        let t = tree_with_hardlinks();
        let context = Context::scan(t.path(), &IgnoreRules::empty(), None).unwrap();
        hardlink_cases(&Source::Context(&context));
    }

    #[test]
    fn copy_from_a_stage_keeps_hardlinks_inside_a_directory() {
        let t = tree_with_hardlinks();
        hardlink_cases(&Source::Dir(t.path()));
    }

    #[test]
    fn copy_onto_a_symlink_writes_through_it_inside_the_image() {
        // BuildKit (docker 20.10) resolves the destination in the image, its last component
        // too, every link inside the root: `COPY a.txt /bin/vi` over `vi -> busybox` replaces
        // busybox; a dangling link's target (and its missing parents) is created.
        use super::super::lazy_rootfs::Lower;
        use std::os::unix::fs::symlink;
        let lower = context(&[
            ("bin/busybox", "bb"),
            ("etc/t1", "1"),
            ("etc/t2", "2"),
            ("etc/t4", "4"),
            ("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
            ("opt/d/.keep", ""),
            ("opt/p/.keep", ""),
        ]);
        let l = lower.path();
        for (target, link) in [
            ("busybox", "bin/vi"),
            ("/etc/t1", "labs"),
            ("etc/t2", "lrel"),
            ("/opt/d", "ldir"),
            ("/nonexist/x", "ldang"),
            ("nothere", "ldang2"),
            ("../../../../etc/t4", "lout"),
            ("/opt/p", "pl"),
            ("loop", "loop"),
        ] {
            symlink(target, l.join(link)).unwrap();
        }
        let rootfs = LazyRootFs::new(
            vec![Lower::Dir(l.to_path_buf())],
            Box::new(|_| unreachable!("the lower is unpacked")),
        );
        let ctx = context(&[("a.txt", "A"), ("sdir/s", "S")]);
        let context = Context::scan(ctx.path(), &IgnoreRules::empty(), None).unwrap();
        let source = Source::Context(&context);
        let written = |line: &str| -> Vec<String> {
            copy_entries_over(&source, line, &rootfs)
                .unwrap()
                .into_iter()
                .filter(|e| e.1 == 'f' || e.2 == 0o755 && !l.join(&e.0).exists())
                .map(|e| e.0)
                .collect()
        };
        for (line, want) in [
            ("COPY a.txt /bin/vi", vec!["bin/busybox"]),
            ("COPY a.txt /labs", vec!["etc/t1"]),
            ("COPY a.txt /lrel", vec!["etc/t2"]),
            ("COPY a.txt /ldir/", vec!["opt/d/a.txt"]),
            ("COPY a.txt /ldir", vec!["opt/d/a.txt"]),
            ("COPY sdir /ldir", vec!["opt/d/s"]),
            ("COPY a.txt /ldang", vec!["nonexist", "nonexist/x"]),
            ("COPY a.txt /ldang2", vec!["nothere"]),
            ("COPY a.txt /lout", vec!["etc/t4"]),
            ("COPY a.txt /pl/sub/f", vec!["opt/p/sub", "opt/p/sub/f"]),
            // --link builds the layer on its own: nothing below to resolve through.
            ("COPY --link a.txt /bin/vi", vec!["bin/vi"]),
        ] {
            assert_eq!(written(line), want, "{line}");
        }
        for line in ["COPY a.txt /loop", "COPY a.txt /etc/passwd/x"] {
            let err = copy_entries_over(&source, line, &rootfs).unwrap_err();
            assert!(format!("{err:?}").contains("Dest("), "{line}: {err:?}");
        }
    }

    #[test]
    fn copy_from_a_stage_skips_a_wildcard_that_matches_nothing() {
        let root = context(&[("src/a.txt", "A")]);
        assert_eq!(
            select_in_dir(root.path(), "/src/*.nomatch").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            select_in_dir(root.path(), "/src/a*").unwrap(),
            ["src/a.txt"]
        );
        assert!(select_in_dir(root.path(), "/src/missing").is_err());
    }
}

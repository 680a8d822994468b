//! Walking a source directory: everything below it, in sorted order, with the mode, the owner
//! (from a stage or image) and the inode of files that may have other names. The build
//! context's walk is its scan's; a stage's root is read from disk.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::select::SourceKind;
use super::Source;
use crate::context::{Context, EntryKind};
use crate::solver::BuildError;

/// One entry below a source directory.
pub(super) struct Walked {
    /// Path relative to the source directory.
    pub(super) rel: String,
    pub(super) kind: SourceKind,
    /// Permission bits.
    pub(super) mode: u32,
    /// uid/gid kept from a stage or image (see [`Item::owner`](super::item::Item::owner)).
    pub(super) owner: Option<(u32, u32)>,
    /// Device and inode of a regular file that may have other names (see
    /// [`Item::link_group`](super::item::Item::link_group)).
    pub(super) inode: Option<(u64, u64)>,
}

/// Everything below the source directory `rel` (at `full` on disk), in sorted order.
pub(super) fn walk_source(
    source: &Source<'_>,
    rel: &str,
    full: &Path,
) -> Result<Vec<Walked>, BuildError> {
    match source {
        Source::Context(ctx) => Ok(walk_context(ctx, rel)),
        Source::Dir(_) => {
            let mut out = Vec::new();
            walk_dir(full, "", &mut out)?;
            Ok(out)
        }
    }
}

/// The build context's entries below `rel`; its files become 0:0, so no owner is kept.
fn walk_context(ctx: &Context, rel: &str) -> Vec<Walked> {
    let prefix_len = if rel == "." { 0 } else { rel.len() + 1 };
    ctx.walk_under(rel)
        .filter_map(|(p, e)| {
            let kind = match &e.kind {
                EntryKind::Dir => SourceKind::Dir,
                EntryKind::File => SourceKind::File,
                EntryKind::Symlink(t) => SourceKind::Symlink(t.clone()),
                EntryKind::Other => return None,
            };
            let inode = (matches!(kind, SourceKind::File) && e.ino != 0).then_some((e.dev, e.ino));
            Some(Walked {
                rel: p[prefix_len..].to_string(),
                kind,
                mode: e.mode,
                owner: None,
                inode,
            })
        })
        .collect()
}

/// A stage's directory `dir` (at `prefix` below the source), depth first in name order.
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
            SourceKind::Dir
        } else if ft.is_symlink() {
            let t = std::fs::read_link(&p).map_err(BuildError::io("reading link", &p))?;
            SourceKind::Symlink(t.to_string_lossy().into_owned())
        } else if ft.is_file() && rbuild_layers::device::placeholder_of(&p, &md).is_none() {
            SourceKind::File
        } else {
            // Special files are not copied (as BuildKit's copy skips them), nor the inert
            // placeholders that stand for device nodes in the store (rbuild_layers::device).
            continue;
        };
        let inode =
            (matches!(kind, SourceKind::File) && md.nlink() > 1).then_some((md.dev(), md.ino()));
        out.push(Walked {
            rel: rel.clone(),
            kind: kind.clone(),
            mode: md.permissions().mode(),
            owner: Some((md.uid(), md.gid())),
            inode,
        });
        if matches!(kind, SourceKind::Dir) {
            walk_dir(&p, &rel, out)?;
        }
    }
    Ok(())
}

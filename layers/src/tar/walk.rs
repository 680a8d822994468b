//! Listing a directory tree (or an overlayfs upper directory) as layer entries.
//!
//! Directories are read in parallel (rayon, one task per directory); the result is sorted into
//! the canonical layer order afterwards, so the parallelism never shows in the output. Regular
//! files with several links inside the tree become one file plus hard-link entries pointing at
//! the first path in layer order (detected by device and inode).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rayon::prelude::*;

use super::entry::{sort_entries, EntryKind, LayerEntry};
use super::LayerError;
use crate::whiteout::overlay::{self, OverlayXattrs};

/// Options for [`entries_from_dir`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirOptions {
    /// Relative paths (slash-separated) to leave out, with everything below them.
    pub exclude: Vec<String>,
}

/// Which xattrs a layer carries: `security.capability` (file capabilities, e.g. of `ping`) and
/// the `user.*` namespace, as BuildKit does. `trusted.*` and `security.selinux` describe the
/// build host, ACLs (`system.*`) are not carried by OCI layers, and overlayfs's own bookkeeping
/// (`trusted.overlay.*`, `user.overlay.*`) is never content.
fn keep_xattr(name: &str) -> bool {
    if overlay::is_overlay_xattr(name) || name.starts_with(crate::device::RBUILD_XATTR_PREFIX) {
        return false;
    }
    name == "security.capability" || name.starts_with("user.")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// An upper directory of a mount whose own xattrs are in this namespace.
    OverlayUpper(OverlayXattrs),
}

impl Mode {
    /// Whether `dir` is an opaque directory of an upper directory walked in this mode.
    fn opaque(self, dir: &Path) -> bool {
        match self {
            Mode::Plain => false,
            Mode::OverlayUpper(x) => overlay::is_opaque_in_upper(dir, x),
        }
    }
}

/// An entry plus what hard-link detection needs.
struct Walked {
    entry: LayerEntry,
    /// (device, inode) of a regular file with more than one link.
    link_id: Option<(u64, u64)>,
}

/// Lists the tree under `root` (not including `root` itself) as layer entries in canonical
/// order. Sockets are skipped (a tar cannot hold them).
pub fn entries_from_dir(root: &Path, opts: &DirOptions) -> Result<Vec<LayerEntry>, LayerError> {
    let exclude: Vec<&str> = opts.exclude.iter().map(String::as_str).collect();
    walk_root(root, &exclude, Mode::Plain)
}

/// Lists an overlayfs upper directory as a layer: whiteout devices (char 0:0) become `.wh.`
/// entries, directories marked opaque by the mount (`trusted.overlay.opaque=y`, or
/// `user.overlay.opaque=y` when `xattrs` says the mount had the `userxattr` option: only the
/// mount's own xattr counts, see [`overlay::is_opaque_in_upper`]) get a `.wh..wh..opq` entry,
/// `exclude` (relative paths, e.g. mount points of the RUN sandbox) are skipped, and overlay
/// xattrs are not emitted.
///
/// Assumes the default overlay options (no `metacopy`, no `redirect_dir`): with those, an upper
/// dir does not hold the full content of changed files.
pub fn entries_from_overlay_upper(
    upper: &Path,
    exclude: &[&str],
    xattrs: OverlayXattrs,
) -> Result<Vec<LayerEntry>, LayerError> {
    walk_root(upper, exclude, Mode::OverlayUpper(xattrs))
}

/// One change to a tree, for [`entries_from_changes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The entry at this path, as it is now (not what is below it: list each path).
    Path(String),
    /// This directory hides everything below it in the layers underneath.
    Opaque(String),
    /// This path was deleted (`mtime`: the whiteout's time).
    Deleted { path: String, mtime: i64 },
}

/// The entries of a layer given as a list of changes to the tree under `root`: each listed
/// path becomes the entry [`entries_from_dir`] would make of it (files with several links
/// among the listed paths become hard links to the first), opaque directories and deletions
/// become whiteout entries as [`entries_from_overlay_upper`] writes them. For a RUN that ran
/// without overlayfs, whose changes are found by comparing trees.
pub fn entries_from_changes(
    root: &Path,
    changes: &[Change],
) -> Result<Vec<LayerEntry>, LayerError> {
    let mut walked = Vec::with_capacity(changes.len());
    for c in changes {
        match c {
            Change::Path(rel) => {
                let path = if rel.is_empty() {
                    root.to_path_buf()
                } else {
                    root.join(rel)
                };
                walked.extend(entry_at(&path, rel, Mode::Plain)?);
            }
            Change::Opaque(rel) => {
                let path = if rel.is_empty() {
                    root.to_path_buf()
                } else {
                    root.join(rel)
                };
                walked.push(Walked {
                    entry: opaque_entry(rel, &path)?,
                    link_id: None,
                });
            }
            Change::Deleted { path, mtime } => walked.push(Walked {
                entry: LayerEntry {
                    path: path.clone(),
                    kind: EntryKind::Whiteout,
                    mode: 0,
                    uid: 0,
                    gid: 0,
                    mtime: *mtime,
                    xattrs: BTreeMap::new(),
                },
                link_id: None,
            }),
        }
    }
    Ok(finish(walked))
}

fn walk_root(root: &Path, exclude: &[&str], mode: Mode) -> Result<Vec<LayerEntry>, LayerError> {
    let exclude: Vec<&str> = exclude
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter(|p| !p.is_empty())
        .collect();
    let mut walked = walk_dir(root, "", &exclude, mode)?;
    // Opaque root of an upper dir.
    if mode.opaque(root) {
        walked.push(Walked {
            entry: opaque_entry("", root)?,
            link_id: None,
        });
    }
    Ok(finish(walked))
}

/// Sorts and turns repeated inodes into hard links to the first path.
fn finish(walked: Vec<Walked>) -> Vec<LayerEntry> {
    let mut ids: HashMap<String, (u64, u64)> = HashMap::new();
    let mut entries: Vec<LayerEntry> = walked
        .into_iter()
        .map(|w| {
            if let Some(id) = w.link_id {
                ids.insert(w.entry.path.clone(), id);
            }
            w.entry
        })
        .collect();
    sort_entries(&mut entries);
    let mut first: HashMap<(u64, u64), String> = HashMap::new();
    for e in &mut entries {
        let Some(id) = ids.get(&e.path) else { continue };
        match first.get(id) {
            Some(target) => {
                e.kind = EntryKind::Hardlink {
                    target: target.clone(),
                }
            }
            None => {
                first.insert(*id, e.path.clone());
            }
        }
    }
    entries
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

fn walk_dir(
    dir: &Path,
    rel: &str,
    exclude: &[&str],
    mode: Mode,
) -> Result<Vec<Walked>, LayerError> {
    if matches!(mode, Mode::OverlayUpper(_)) {
        crate::failpoint::hit("run.mid_diff");
    }
    let mut children = Vec::new();
    for de in fs::read_dir(dir).map_err(LayerError::io("listing", dir))? {
        let de = de.map_err(LayerError::io("listing", dir))?;
        let Some(name) = de.file_name().to_str().map(str::to_string) else {
            return Err(LayerError::InvalidPath {
                path: format!("{}", de.path().display()),
                reason: "its name is not valid UTF-8",
            });
        };
        let child_rel = join(rel, &name);
        if exclude.contains(&child_rel.as_str()) {
            continue;
        }
        children.push((de.path(), child_rel));
    }
    let nested: Vec<Vec<Walked>> = children
        .par_iter()
        .map(|(path, child_rel)| visit(path, child_rel, exclude, mode))
        .collect::<Result<_, _>>()?;
    Ok(nested.into_iter().flatten().collect())
}

fn visit(path: &Path, rel: &str, exclude: &[&str], mode: Mode) -> Result<Vec<Walked>, LayerError> {
    let Some(walked) = entry_at(path, rel, mode)? else {
        return Ok(Vec::new());
    };
    let is_dir = matches!(walked.entry.kind, EntryKind::Dir);
    let mut out = vec![walked];
    if is_dir {
        if mode.opaque(path) {
            out.push(Walked {
                entry: opaque_entry(rel, path)?,
                link_id: None,
            });
        }
        out.extend(walk_dir(path, rel, exclude, mode)?);
    }
    Ok(out)
}

/// The entry for the file at `path` (layer path `rel`), without what is below it; `None` for
/// what a tar cannot hold (sockets).
fn entry_at(path: &Path, rel: &str, mode: Mode) -> Result<Option<Walked>, LayerError> {
    let meta = fs::symlink_metadata(path).map_err(LayerError::io("reading metadata of", path))?;
    let ft = meta.file_type();
    let mut link_id = None;
    let placeholder = crate::device::placeholder_of(path, &meta);
    let kind = if ft.is_dir() {
        EntryKind::Dir
    } else if let Some(d) = placeholder {
        // A device kept as data (see `crate::device`): the layer gets the device back.
        let (major, minor) = (d.major, d.minor);
        match d.kind {
            crate::device::DeviceKind::Char => EntryKind::CharDev { major, minor },
            crate::device::DeviceKind::Block => EntryKind::BlockDev { major, minor },
        }
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            link_id = Some((meta.dev(), meta.ino()));
        }
        EntryKind::File {
            source: path.to_path_buf(),
        }
    } else if ft.is_symlink() {
        let target = fs::read_link(path).map_err(LayerError::io("reading symlink", path))?;
        let target = target
            .to_str()
            .ok_or_else(|| LayerError::InvalidPath {
                path: rel.to_string(),
                reason: "its symlink target is not valid UTF-8",
            })?
            .to_string();
        EntryKind::Symlink { target }
    } else if ft.is_char_device() {
        let (major, minor) = (libc::major(meta.rdev()), libc::minor(meta.rdev()));
        if matches!(mode, Mode::OverlayUpper(_)) && overlay::is_whiteout_device(major, minor) {
            EntryKind::Whiteout
        } else {
            EntryKind::CharDev { major, minor }
        }
    } else if ft.is_block_device() {
        EntryKind::BlockDev {
            major: libc::major(meta.rdev()),
            minor: libc::minor(meta.rdev()),
        }
    } else if ft.is_fifo() {
        EntryKind::Fifo
    } else {
        // Sockets: not representable in a tar; Docker and BuildKit skip them too.
        return Ok(None);
    };
    let whiteout = matches!(kind, EntryKind::Whiteout);
    let entry = LayerEntry {
        path: rel.to_string(),
        mode: match placeholder {
            _ if whiteout => 0,
            Some(d) => d.mode,
            None => meta.mode() & 0o7777,
        },
        uid: if whiteout { 0 } else { u64::from(meta.uid()) },
        gid: if whiteout { 0 } else { u64::from(meta.gid()) },
        mtime: meta.mtime(),
        xattrs: if whiteout {
            BTreeMap::new()
        } else {
            read_xattrs(path)?
        },
        kind,
    };
    Ok(Some(Walked { entry, link_id }))
}

/// The `.wh..wh..opq` entry of an opaque directory: an empty file owned by root, with the
/// directory's mtime (containerd writes these with mode 0 and no owner, too).
fn opaque_entry(rel: &str, dir: &Path) -> Result<LayerEntry, LayerError> {
    let meta = fs::symlink_metadata(dir).map_err(LayerError::io("reading metadata of", dir))?;
    Ok(LayerEntry {
        path: rel.to_string(),
        kind: EntryKind::OpaqueWhiteout,
        mode: 0,
        uid: 0,
        gid: 0,
        mtime: meta.mtime(),
        xattrs: BTreeMap::new(),
    })
}

fn read_xattrs(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, LayerError> {
    let mut out = BTreeMap::new();
    let names = match xattr::list(path) {
        Ok(n) => n,
        // Filesystems without xattr support simply have none.
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(LayerError::io("listing xattrs of", path)(e)),
    };
    for name in names {
        let Some(name) = name.to_str() else { continue };
        if !keep_xattr(name) {
            continue;
        }
        if let Some(v) = xattr::get(path, name).map_err(LayerError::io("reading xattr of", path))? {
            out.insert(name.to_string(), v);
        }
    }
    Ok(out)
}

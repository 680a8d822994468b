//! The private root of a RUN in `chroot` mode: the stage's snapshots (overlay format, bottom
//! first) merged into one plain directory as overlayfs would show them — the top layer wins,
//! a whiteout hides a path below it, an opaque directory hides the lower layers' content of it
//! — and the stat of every path right after the copy ([`StartState`]), which
//! [`super::compare`] compares the root against once the command has run.
//!
//! Files are copied, never hard-linked to the snapshots: snapshots are shared by every build
//! and must not change. Hard links inside one snapshot stay hard links inside the copy. Owners,
//! modes (setuid bits included), xattrs (but overlay's own) and times are kept, so the copy
//! stats like the merged overlay would.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rbuild_layers::whiteout::overlay;

use super::mounts::io;
use crate::solver::rootfs::RootFs;
use crate::solver::BuildError;

/// What `stat` said of a path (what the comparison needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// `st_mode`: type and permission bits.
    pub mode: u32,
    pub ino: u64,
    /// Birth time where the filesystem keeps it: tells a new inode that reuses a freed number.
    pub btime: Option<(i64, u32)>,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub uid: u32,
    pub gid: u32,
    pub nlink: u64,
}

impl Stat {
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    pub fn kind(&self) -> u32 {
        self.mode & libc::S_IFMT
    }

    /// The same inode (not a new one in its place).
    pub fn same_inode(&self, other: &Stat) -> bool {
        self.ino == other.ino && self.kind() == other.kind() && self.btime == other.btime
    }
}

/// `statx(2)` of `path`, not following a symlink at its end.
pub fn stat(path: &Path) -> std::io::Result<Stat> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: zeroed statx is a valid out-buffer; the path is a valid C string.
    let mut sx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS | libc::STATX_BTIME,
            &mut sx,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Stat {
        mode: u32::from(sx.stx_mode),
        ino: sx.stx_ino,
        btime: (sx.stx_mask & libc::STATX_BTIME != 0)
            .then_some((sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec)),
        size: sx.stx_size,
        mtime: (sx.stx_mtime.tv_sec, i64::from(sx.stx_mtime.tv_nsec)),
        ctime: (sx.stx_ctime.tv_sec, i64::from(sx.stx_ctime.tv_nsec)),
        uid: sx.stx_uid,
        gid: sx.stx_gid,
        nlink: u64::from(sx.stx_nlink),
    })
}

/// One path of the copy as it was before the command.
#[derive(Debug, Clone)]
pub struct Start {
    pub stat: Stat,
    /// Where it was copied from (in a snapshot): for content and xattr comparisons.
    pub source: PathBuf,
}

/// The copy before the command: every path (relative, slash-separated; `""` is the root) and,
/// per directory, the names in it.
#[derive(Debug, Default)]
pub struct StartState {
    pub paths: HashMap<String, Start>,
    pub children: HashMap<String, BTreeSet<String>>,
}

/// Copies the merged view of `rootfs` into `dest` (created) and records its state, in phases:
/// list the merged tree (metadata only), make its directories, copy the files in parallel (the
/// first name of a hard-linked file among them), link the other names, set the directories'
/// metadata deepest first (creating entries moves a directory's times), then stat everything.
pub fn copy_merged(rootfs: &RootFs, dest: &Path) -> Result<StartState, BuildError> {
    copy_merged_except(rootfs, dest, &|_, _| Ok(true), &|| Ok(()))
}

/// [`copy_merged`] of the paths `keep` says yes to (given each path of the merged tree, parents
/// first, with its metadata in the snapshot; a path left out takes what is below it along, and
/// is not in the state; `keep` may refuse the copy with an error). `ready` runs once every path
/// has been asked about, before anything is written. A directory that exists at `dest` already
/// is used as it is (then given the snapshot's metadata): the in-place root keeps the
/// directories above its mount points.
pub fn copy_merged_except(
    rootfs: &RootFs,
    dest: &Path,
    keep: &dyn Fn(&str, &fs::Metadata) -> Result<bool, BuildError>,
    ready: &dyn Fn() -> Result<(), BuildError>,
) -> Result<StartState, BuildError> {
    let top_first: Vec<PathBuf> = rootfs.lowers.iter().rev().cloned().collect();
    let mut tree = Tree::default();
    tree.list_dir(&below_opaque(top_first), "")?;
    tree.retain(keep)?;
    ready()?;
    fs::create_dir_all(dest).map_err(io("creating", dest))?;
    let at = |rel: &str| {
        if rel.is_empty() {
            dest.to_path_buf()
        } else {
            dest.join(rel)
        }
    };
    tree.make_dirs(&at)?;
    tree.nodes
        .par_iter()
        .filter(|n| !n.meta.is_dir() && n.link_to.is_none())
        .try_for_each(|n| copy_leaf(&n.source, &n.meta, &at(&n.rel)))?;
    for n in &tree.nodes {
        if let Some(first) = &n.link_to {
            let p = at(&n.rel);
            fs::hard_link(at(first), &p).map_err(io("linking", &p))?;
        }
    }
    finish(tree, &at)
}

/// The last phases of a copy or sync: the directories' metadata, deepest first (creating
/// entries moved their times), then the `stat` of every path, as the comparison needs it.
pub(super) fn finish(
    tree: Tree,
    at: &(dyn Fn(&str) -> PathBuf + Sync),
) -> Result<StartState, BuildError> {
    for n in tree.nodes.iter().rev().filter(|n| n.meta.is_dir()) {
        if let Some(meta) = &n.dir_meta {
            set_metadata(&n.source, meta, &at(&n.rel))?;
        }
    }
    let paths = tree
        .nodes
        .par_iter()
        .filter(|n| !n.skipped)
        .map(|n| {
            let p = at(&n.rel);
            let st = stat(&p).map_err(io("reading metadata of", &p))?;
            Ok((
                n.rel.clone(),
                Start {
                    stat: st,
                    source: n.source.clone(),
                },
            ))
        })
        .collect::<Result<HashMap<_, _>, BuildError>>()?;
    Ok(StartState {
        paths,
        children: tree.children,
    })
}

/// A read-only view of `rootfs` at `target` (an empty directory) for `COPY --from`, cache seeds
/// and binds of a stage: the overlay mount when rbuild may mount (the guard unmounts it), else
/// (no `CAP_SYS_ADMIN`: the chroot isolation's hosts) a merged copy made here, which the
/// caller's scratch directory removes. `force_copy` skips the mount (a chroot step's bind is
/// renamed into its root, which a mount point cannot be).
pub(crate) fn readonly_view(
    rootfs: &RootFs,
    target: &Path,
    force_copy: bool,
) -> Result<Option<crate::solver::rootfs::MountGuard>, BuildError> {
    if !force_copy {
        match rootfs.mount_readonly(target) {
            Ok(guard) => return Ok(Some(guard)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => return Err(io("mounting a read-only view of a stage at", target)(e)),
        }
    }
    copy_merged(rootfs, target)?;
    Ok(None)
}

/// `dirs` (top first, the same directory in each layer) up to and including the first opaque
/// one: the layers below it do not show through.
pub(super) fn below_opaque(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let opaque = overlay::is_opaque(&d);
        out.push(d);
        if opaque {
            break;
        }
    }
    out
}

/// One path of the merged tree.
pub(super) struct Node {
    pub(super) rel: String,
    /// The path in the snapshot that shows it (for a directory: the top one).
    pub(super) source: PathBuf,
    pub(super) meta: fs::Metadata,
    /// For a directory: the metadata to give it (its top layer's); `None` for the root of an
    /// empty stack.
    pub(super) dir_meta: Option<fs::Metadata>,
    /// A later name of a hard-linked file: the copy's first name, to link to.
    pub(super) link_to: Option<String>,
    /// A socket: not copied (a layer cannot hold it).
    pub(super) skipped: bool,
}

/// The merged tree in pre-order (a directory before what is in it), and each directory's names.
#[derive(Default)]
pub(super) struct Tree {
    pub(super) nodes: Vec<Node>,
    pub(super) children: HashMap<String, BTreeSet<String>>,
    /// (device, inode) of a multiply-linked source file → the first name it got.
    pub(super) links: HashMap<(u64, u64), String>,
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

impl Tree {
    /// Creates the tree's directories under `at("")` (one that exists already is used as it
    /// is).
    pub(super) fn make_dirs(&self, at: &dyn Fn(&str) -> PathBuf) -> Result<(), BuildError> {
        for n in self
            .nodes
            .iter()
            .filter(|n| n.meta.is_dir() && !n.rel.is_empty())
        {
            let p = at(&n.rel);
            match fs::create_dir(&p) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => {}
                r => r.map_err(io("creating", &p))?,
            }
        }
        Ok(())
    }

    /// Leaves out the paths `keep` refuses, with what is below them (`keep` is still asked
    /// about those, so that it can refuse them too).
    pub(super) fn retain(
        &mut self,
        keep: &dyn Fn(&str, &fs::Metadata) -> Result<bool, BuildError>,
    ) -> Result<(), BuildError> {
        let mut dropped: Vec<String> = Vec::new();
        let mut kept = Vec::with_capacity(self.nodes.len());
        for n in std::mem::take(&mut self.nodes) {
            let below_dropped = dropped.iter().any(|d| {
                n.rel
                    .strip_prefix(d.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            });
            let wanted = n.rel.is_empty() || keep(&n.rel, &n.meta)?;
            if below_dropped {
                continue;
            }
            if wanted {
                kept.push(n);
                continue;
            }
            let (parent, name) = n.rel.rsplit_once('/').unwrap_or(("", n.rel.as_str()));
            if let Some(names) = self.children.get_mut(parent) {
                names.remove(name);
            }
            self.children.remove(&n.rel);
            dropped.push(n.rel);
        }
        self.children
            .retain(|rel, _| !dropped.iter().any(|d| rel.starts_with(&format!("{d}/"))));
        self.nodes = kept;
        Ok(())
    }

    /// Lists the directory `rel`, present in `layers` (top first, already cut at an opaque
    /// one): the top layer that has a name wins, a whiteout hides the name below it.
    pub(super) fn list_dir(&mut self, layers: &[PathBuf], rel: &str) -> Result<(), BuildError> {
        let top = layers.first().cloned().unwrap_or_default();
        let dir_meta = layers.first().and_then(|t| fs::symlink_metadata(t).ok());
        let meta = match &dir_meta {
            Some(m) => m.clone(),
            None => fs::symlink_metadata("/").map_err(io("reading metadata of", Path::new("/")))?,
        };
        self.nodes.push(Node {
            rel: rel.to_string(),
            source: top,
            meta,
            dir_meta,
            link_to: None,
            skipped: false,
        });
        let mut shown: HashMap<std::ffi::OsString, Option<(usize, fs::Metadata)>> = HashMap::new();
        for (i, dir) in layers.iter().enumerate() {
            for de in fs::read_dir(dir).map_err(io("listing", dir))? {
                let de = de.map_err(io("listing", dir))?;
                let name = de.file_name();
                if shown.contains_key(&name) {
                    continue;
                }
                let meta = fs::symlink_metadata(de.path()).map_err(io("reading", &de.path()))?;
                let visible = (!overlay::is_whiteout_at(&de.path(), &meta)).then_some((i, meta));
                shown.insert(name, visible);
            }
        }
        let mut shown: Vec<(String, usize, fs::Metadata)> = shown
            .into_iter()
            .filter_map(|(name, v)| {
                // The layer writer refuses names that are not UTF-8: left out of the root.
                let (i, meta) = v?;
                Some((name.into_string().ok()?, i, meta))
            })
            .collect();
        shown.sort_by(|a, b| a.0.cmp(&b.0));
        let mut names = BTreeSet::new();
        for (name, i, meta) in shown {
            let child = join(rel, &name);
            let src = layers[i].join(&name);
            names.insert(name.clone());
            if meta.is_dir() {
                let mut below = Vec::new();
                for l in &layers[i..] {
                    let p = l.join(&name);
                    match fs::symlink_metadata(&p) {
                        Ok(m) if m.is_dir() => below.push(p),
                        Err(_) => continue,
                        Ok(_) => break,
                    }
                }
                self.list_dir(&below_opaque(below), &child)?;
                continue;
            }
            let ft = meta.file_type();
            let mut link_to = None;
            if ft.is_file() && meta.nlink() > 1 {
                match self.links.get(&(meta.dev(), meta.ino())) {
                    Some(first) => link_to = Some(first.clone()),
                    None => {
                        self.links.insert((meta.dev(), meta.ino()), child.clone());
                    }
                }
            }
            let skipped = ft.is_socket();
            if skipped {
                names.remove(&name);
            }
            self.nodes.push(Node {
                rel: child,
                source: src,
                meta,
                dir_meta: None,
                link_to,
                skipped,
            });
        }
        self.children.insert(rel.to_string(), names);
        Ok(())
    }
}

/// Copies one non-directory (not a later name of a hard-linked file) with its metadata.
pub(super) fn copy_leaf(src: &Path, meta: &fs::Metadata, to: &Path) -> Result<(), BuildError> {
    let ft = meta.file_type();
    if ft.is_file() {
        fs::copy(src, to).map_err(io("copying", src))?;
    } else if ft.is_symlink() {
        let target = fs::read_link(src).map_err(io("reading symlink", src))?;
        std::os::unix::fs::symlink(&target, to).map_err(io("creating", to))?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        let c = std::ffi::CString::new(to.as_os_str().as_bytes())
            .map_err(|_| BuildError::io("creating", to.to_path_buf())(einval()))?;
        // SAFETY: valid C string; mode and device come from the snapshot's own stat.
        if unsafe { libc::mknod(c.as_ptr(), meta.mode(), meta.rdev()) } != 0 {
            return Err(BuildError::io("creating", to.to_path_buf())(
                std::io::Error::last_os_error(),
            ));
        }
    } else {
        // Sockets: a layer cannot hold them; the root does without.
        return Ok(());
    }
    set_metadata(src, meta, to)
}

fn einval() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EINVAL)
}

/// Owner, mode, xattrs (but overlay's) and times of `src` onto `to` — in that order: a chown
/// clears setuid bits, and every change but the times moves the ctime only.
pub(super) fn set_metadata(src: &Path, meta: &fs::Metadata, to: &Path) -> Result<(), BuildError> {
    let err = |e| BuildError::io("setting the metadata of", to.to_path_buf())(e);
    std::os::unix::fs::lchown(to, Some(meta.uid()), Some(meta.gid())).map_err(err)?;
    let symlink = meta.file_type().is_symlink();
    if !symlink {
        fs::set_permissions(
            to,
            std::os::unix::fs::PermissionsExt::from_mode(meta.mode() & 0o7777),
        )
        .map_err(err)?;
        if let Ok(names) = xattr::list(src) {
            for name in names {
                let keep = name.to_str().is_some_and(|n| !overlay::is_overlay_xattr(n));
                if !keep {
                    continue;
                }
                if let Ok(Some(v)) = xattr::get(src, &name) {
                    xattr::set(to, &name, &v).map_err(err)?;
                }
            }
        }
    }
    let c = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(|_| err(einval()))?;
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    // SAFETY: valid C string and a two-element timespec array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

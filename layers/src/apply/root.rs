//! The root directory as a file descriptor, and kernel-contained path resolution inside it.
//!
//! Every untrusted path is resolved by `openat2(2)` relative to the root fd with
//! `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`: `..` and absolute symlinks are clamped at the root by
//! the kernel (a symlink to `/etc` means `<root>/etc`, the container's view), and `/proc` magic
//! links cannot be followed. Only *parent directories* are resolved that way; the final component
//! is then created or removed with an `*at` call relative to the parent fd and never followed
//! (`O_NOFOLLOW`, `AT_SYMLINK_NOFOLLOW`), so a symlink already in the tree is replaced, never
//! written through. `Path::join` is never used on untrusted names.
//!
//! When a parent does not exist yet, it is walked one component at a time and created; a symlink
//! on the way is then read (never followed) and resolved lexically inside the root, as
//! containerd's `fs.RootPath` does, so `link -> /etc` followed by `link/x` writes `<root>/etc/x`
//! even before `/etc` exists.
//!
//! The parent of the previous entry is cached: tar writers emit siblings together, so most
//! entries reuse it and unpacking stays linear in the number of entries.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::rc::Rc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::path::join;

const DIR_FLAGS: OFlags = OFlags::DIRECTORY
    .union(OFlags::RDONLY)
    .union(OFlags::CLOEXEC);
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// The root being applied to, with a one-entry cache of the last parent directory.
pub struct Root {
    fd: OwnedFd,
    cached: Option<(Vec<u8>, Rc<OwnedFd>)>,
}

impl Root {
    /// Opens the (trusted, caller-supplied) root directory.
    pub fn open(path: &Path) -> std::io::Result<OwnedFd> {
        Ok(rfs::open(path, DIR_FLAGS, Mode::empty())?)
    }

    pub fn new(fd: OwnedFd) -> Root {
        Root { fd, cached: None }
    }

    /// Opens the directory at cleaned path `rel` (`""` is the root), following symlinks only
    /// inside the root. `nofollow` refuses a final-component symlink (`ELOOP`).
    pub fn open_dir(&self, rel: &[u8], nofollow: bool) -> Result<OwnedFd, Errno> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        let flags = if nofollow {
            DIR_FLAGS | OFlags::NOFOLLOW
        } else {
            DIR_FLAGS
        };
        // The kernel returns EAGAIN when a concurrent rename could have raced a `..` lookup;
        // retrying is the documented response.
        let mut tries = 0;
        loop {
            match rfs::openat2(&self.fd, path, flags, Mode::empty(), RESOLVE) {
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    /// `stat` of cleaned path `rel` inside the (trusted, caller-opened) directory `dir`, with
    /// symlinks resolved inside it and never through magic links.
    pub fn stat_in(dir: BorrowedFd<'_>, rel: &[u8]) -> Result<rfs::Stat, Errno> {
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        let fd = rfs::openat2(
            dir,
            path,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )?;
        rfs::fstat(&fd)
    }

    /// The directory `rel`, creating missing components (mode 0755, as containerd's implicit
    /// parents) and reporting each created path to `created`.
    pub fn parent(
        &mut self,
        rel: &[u8],
        created: &mut dyn FnMut(&[u8]),
    ) -> Result<Rc<OwnedFd>, Errno> {
        if let Some((path, fd)) = &self.cached {
            if path.as_slice() == rel {
                return Ok(Rc::clone(fd));
            }
        }
        let fd = match self.open_dir(rel, false) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => self.create_dirs(rel, created)?,
            Err(e) => return Err(e),
        };
        let fd = Rc::new(fd);
        self.cached = Some((rel.to_vec(), Rc::clone(&fd)));
        Ok(fd)
    }

    /// Forgets the cached parent; called whenever a directory or symlink is removed, since that
    /// can change what a path resolves to.
    pub fn invalidate(&mut self) {
        self.cached = None;
    }

    /// Walks `rel` one component at a time from the root, creating missing directories.
    ///
    /// A symlink on the way is resolved inside the root as containerd's `fs.RootPath` does,
    /// even when its target does not exist yet (then the target's directories are created): an
    /// absolute target starts again at the root, a relative one at the link's directory, and
    /// `..` stops at the root. Every call is one normal name relative to a directory fd opened
    /// inside the root with `O_NOFOLLOW`, so nothing outside the root is reached.
    fn create_dirs(&self, rel: &[u8], created: &mut dyn FnMut(&[u8])) -> Result<OwnedFd, Errno> {
        let mut todo: VecDeque<Vec<u8>> = components(rel).collect();
        let mut cur = self.open_dir(b"", false)?;
        let mut prefix: Vec<u8> = Vec::with_capacity(rel.len());
        let mut links = 0;
        while let Some(comp) = todo.pop_front() {
            let next = join(&prefix, &comp);
            match rfs::openat(
                &cur,
                comp.as_slice(),
                DIR_FLAGS | OFlags::NOFOLLOW,
                Mode::empty(),
            ) {
                Ok(fd) => cur = fd,
                Err(Errno::NOENT) => {
                    // `cur` was resolved inside the root and `comp` is one normal component,
                    // so the new directory is inside the root too.
                    rfs::mkdirat(&cur, comp.as_slice(), Mode::from_raw_mode(0o755))?;
                    created(&next);
                    cur = rfs::openat(
                        &cur,
                        comp.as_slice(),
                        DIR_FLAGS | OFlags::NOFOLLOW,
                        Mode::empty(),
                    )?;
                }
                // `O_NOFOLLOW` on a symlink: ELOOP; on another non-directory: ENOTDIR.
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    let target = match rfs::readlinkat(&cur, comp.as_slice(), Vec::new()) {
                        Ok(t) => t.into_bytes(),
                        Err(Errno::INVAL) => return Err(Errno::NOTDIR),
                        Err(e) => return Err(e),
                    };
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Errno::LOOP);
                    }
                    let base = if target.starts_with(b"/") {
                        &[][..]
                    } else {
                        &prefix[..]
                    };
                    let mut resolved: VecDeque<Vec<u8>> = resolve_in_root(base, &target).into();
                    resolved.extend(todo);
                    todo = resolved;
                    prefix.clear();
                    cur = self.open_dir(b"", false)?;
                    continue;
                }
                Err(e) => return Err(e),
            }
            prefix = next;
        }
        Ok(cur)
    }
}

/// Symlinks followed while resolving one path before giving up (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// The normal components of a cleaned path.
fn components(rel: &[u8]) -> impl Iterator<Item = Vec<u8>> + '_ {
    rel.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
}

/// `target` taken from directory `base` (components of a resolved directory), lexically, with
/// `.` dropped and `..` stopping at the root.
fn resolve_in_root(base: &[u8], target: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = components(base).collect();
    for comp in target.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            other => out.push(other.to_vec()),
        }
    }
    out
}

/// Removes `name` in `dir` whatever it is; directories recursively. Nothing is followed: each
/// level is opened with `O_NOFOLLOW` relative to its parent fd, so the walk cannot leave the tree.
/// Memory is bounded: directory entries are read in batches, not all at once.
pub fn remove_all(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    match rfs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let child = match rfs::openat(dir, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    loop {
        let batch = read_names(child.as_fd(), 4096)?;
        if batch.is_empty() {
            break;
        }
        for (n, ft) in batch {
            if ft == FileType::Directory {
                remove_all(child.as_fd(), &n)?;
            } else {
                match rfs::unlinkat(&child, n.as_slice(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(Errno::ISDIR) => remove_all(child.as_fd(), &n)?,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    drop(child);
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Up to `max` entry names (without `.`/`..`) of the directory open as `dir`, from the start.
pub fn read_names(dir: BorrowedFd<'_>, max: usize) -> Result<Vec<(Vec<u8>, FileType)>, Errno> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while out.len() < max {
        let Some(entry) = d.read() else { break };
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        out.push((n.to_vec(), entry.file_type()));
    }
    Ok(out)
}

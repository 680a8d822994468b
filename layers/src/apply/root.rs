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
//! The parent of the previous entry is cached: tar writers emit siblings together, so most
//! entries reuse it and unpacking stays linear in the number of entries.

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

    fn create_dirs(&self, rel: &[u8], created: &mut dyn FnMut(&[u8])) -> Result<OwnedFd, Errno> {
        let mut cur = self.open_dir(b"", false)?;
        let mut prefix: Vec<u8> = Vec::with_capacity(rel.len());
        for comp in rel.split(|&b| b == b'/') {
            prefix = join(&prefix, comp);
            cur = match self.open_dir(&prefix, false) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    // `cur` was resolved inside the root and `comp` is one normal component,
                    // so the new directory is inside the root too.
                    rfs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755))?;
                    created(&prefix);
                    rfs::openat(&cur, comp, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty())?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }
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

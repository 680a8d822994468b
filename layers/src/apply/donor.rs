//! Regular files moved in from the tree a layer was just written from, instead of created and
//! written again.
//!
//! A RUN step's layer is written from the sandbox's overlay upper directory; the next step needs
//! that layer as a snapshot, and unpacking it wrote every file a second time (for an `apt-get
//! install` of a toolchain: ~200 MB and thousands of inode creations, the slowest part of the
//! step after the command). BuildKit keeps the upper directory as the snapshot. Here the tar
//! stays the only source of truth — every entry, its metadata and every data byte are still read
//! from it (and hashed into the DiffID) — but a regular file's *inode* may come from the donor
//! tree: the donor file at the same path is renamed into the snapshot and its bytes compared
//! with the tar's, chunk by chunk, any difference overwritten. Ownership, mode, xattrs and times
//! are then applied exactly as for a created file, so the snapshot is the one `apply_layer`
//! without a donor makes; the tests compare the two trees.
//!
//! A donor file is only taken when nothing about its inode could show: a regular file, one link
//! (a hard link elsewhere in the donor would make two tree paths share it), the tar's size,
//! not sparse (a later `du` would differ), on the same filesystem (rename). Xattrs the entry does
//! not carry (overlayfs' private `trusted.overlay.*`, anything the tar left out) are removed
//! before it moves. Otherwise the file is created and written as usual.
//!
//! The donor directory is the caller's (a private scratch directory of the store): paths in it
//! are resolved beneath it without following any symlink, since a RUN wrote it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::{io_err, ApplyError};
use super::path::split_parent;
use super::tar::{Entry, TarReader};

/// How paths inside the donor are resolved: beneath it, through no symlink or magic link.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// The largest xattr name list read from a donor file (the kernel's own limit is 64 KiB).
const MAX_XATTR_LIST: usize = 64 * 1024;

/// An open donor tree, with the last parent directory cached (tar order keeps siblings
/// together).
pub struct Donor {
    root: OwnedFd,
    cached: Option<(Vec<u8>, OwnedFd)>,
}

/// A donor file that may stand in for an entry: its parent directory in the donor and the file,
/// opened for reading and writing.
pub struct Candidate {
    pub parent: OwnedFd,
    pub file: OwnedFd,
}

impl Donor {
    /// Opens the (trusted, caller-supplied) donor directory.
    pub fn open(path: &Path) -> std::io::Result<Donor> {
        let root = rfs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Donor { root, cached: None })
    }

    /// The donor file at cleaned layer path `path` if it can stand in for regular entry `e`
    /// (see the module doc), with the xattrs `e` does not name removed; `None` otherwise.
    pub fn candidate(&mut self, path: &[u8], e: &Entry) -> Option<Candidate> {
        let (parent, base) = split_parent(path);
        let parent_fd = self.parent(parent)?;
        let file = rfs::openat(
            &parent_fd,
            base,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        let st = rfs::fstat(&file).ok()?;
        let allocated = u64::try_from(st.st_blocks).ok()?.saturating_mul(512);
        let size = u64::try_from(st.st_size).ok()?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || st.st_nlink != 1
            || size != e.size
            || allocated < size
        {
            return None;
        }
        strip_other_xattrs(file.as_fd(), e).ok()?;
        Some(Candidate {
            parent: parent_fd,
            file,
        })
    }

    /// The donor directory at `rel`, resolved beneath the donor through no symlink.
    fn parent(&mut self, rel: &[u8]) -> Option<OwnedFd> {
        if let Some((p, fd)) = &self.cached {
            if p.as_slice() == rel {
                return fd.try_clone().ok();
            }
        }
        let path: &[u8] = if rel.is_empty() { b"." } else { rel };
        let fd = rfs::openat2(
            &self.root,
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        )
        .ok()?;
        let copy = fd.try_clone().ok()?;
        self.cached = Some((rel.to_vec(), fd));
        Some(copy)
    }
}

/// Removes every xattr of `file` that entry `e` does not carry with a name the unpacker would
/// set; the entry's own are (re)set afterwards by the unpacker as for a created file.
fn strip_other_xattrs(file: BorrowedFd<'_>, e: &Entry) -> Result<(), Errno> {
    let mut names = vec![0u8; 1024];
    let len = loop {
        match rfs::flistxattr(file, names.as_mut_slice()) {
            Ok(n) => break n,
            Err(Errno::RANGE) if names.len() < MAX_XATTR_LIST => {
                names.resize(names.len() * 4, 0);
            }
            Err(err) => return Err(err),
        }
    };
    for name in names[..len].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let kept = e.xattrs.iter().any(|(n, _)| n.as_slice() == name)
            && !super::unpack::is_forbidden_xattr(name);
        if !kept {
            rfs::fremovexattr(file, name)?;
        }
    }
    Ok(())
}

/// Moves the donor file `base` from `from` to `to` (same name), never replacing what is there.
pub fn move_into(from: BorrowedFd<'_>, to: BorrowedFd<'_>, base: &[u8]) -> Result<(), Errno> {
    rfs::renameat_with(from, base, to, base, rfs::RenameFlags::NOREPLACE)
}

/// Makes an adopted file's bytes the tar's: each chunk of the entry's data is compared with the
/// file's bytes at the same offset and written where they differ, so the result never depends on
/// what the donor held. `compare` is a reused buffer.
pub fn patch_contents<R: std::io::BufRead>(
    fd: &OwnedFd,
    path: &[u8],
    tar: &mut TarReader<R>,
    compare: &mut Vec<u8>,
) -> Result<(), ApplyError> {
    let mut offset = 0u64;
    loop {
        let chunk = tar.data()?;
        if chunk.is_empty() {
            return Ok(());
        }
        let n = chunk.len();
        compare.resize(n, 0);
        let same = read_exact_at(fd, compare, offset).is_ok() && compare.as_slice() == chunk;
        if !same {
            write_all_at(fd, chunk, offset).map_err(io_err(path, "writing file contents"))?;
        }
        tar.consume_data(n);
        offset += n as u64;
    }
}

fn read_exact_at(fd: &OwnedFd, mut buf: &mut [u8], mut offset: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::pread(fd, &mut *buf, offset)? {
            0 => return Err(Errno::IO),
            n => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

fn write_all_at(fd: &OwnedFd, mut buf: &[u8], mut offset: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, offset)? {
            0 => return Err(Errno::IO),
            n => {
                buf = &buf[n..];
                offset += n as u64;
            }
        }
    }
    Ok(())
}

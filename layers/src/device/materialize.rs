//! Placeholders to device nodes and back, inside a RUN sandbox's overlay (see the parent
//! module): [`materialize`] runs in the sandbox's PID 1 on the merged root before the command,
//! [`remove_if_untouched`] in the engine on the step's upper directory after it.
//!
//! Both trees hold untrusted names (the image's, then the command's), so a path is never
//! joined onto a host path: its parent is opened with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` below the root fd — a
//! symlink anywhere on the way makes the candidate simply absent — and the last component is
//! only ever used with `*at` calls that do not follow it.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{
    self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps,
};
use rustix::io::Errno;

use super::{DeviceKind, DeviceRecord, Placeholder, DEVICE_XATTR};
use crate::whiteout::overlay;

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// What [`materialize`] did with one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Materialized {
    /// The placeholder was visible and is now the real node.
    Node,
    /// Nothing to do: the path is not a placeholder with this record in the merged view (a
    /// later layer replaced or deleted it, or a directory on the way is a symlink).
    NotVisible,
    /// A `c 0 0` device is overlayfs's whiteout: as a node in the upper it would hide the path,
    /// so it stays a placeholder.
    Unrepresentable,
}

/// The metadata a materialized node gets from its placeholder, which [`remove_if_untouched`]
/// checks to tell a node the command left alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeMeta {
    pub uid: u32,
    pub gid: u32,
    pub mtime_sec: i64,
    pub mtime_nsec: i64,
}

/// The parent directory of `path` (relative, cleaned) below `root`, and the last component;
/// `None` when the path is malformed or a component is missing, not a directory or a symlink.
fn open_parent<'p>(root: &OwnedFd, path: &'p [u8]) -> Option<(OwnedFd, &'p [u8])> {
    let (parent, base): (&[u8], &[u8]) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b".", path),
    };
    if base.is_empty() || base == b"." || base == b".." || path.contains(&0) {
        return None;
    }
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut tries = 0;
    loop {
        match rfs::openat2(root, parent, flags, Mode::empty(), RESOLVE) {
            Ok(fd) => return Some((fd, base)),
            // A concurrent rename may have raced a lookup: retrying is the documented answer.
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            Err(_) => return None,
        }
    }
}

fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rfs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn timespec<S: TryInto<i64>, N: TryInto<i64>>(sec: S, nsec: N) -> Timespec {
    Timespec {
        tv_sec: sec.try_into().unwrap_or(0),
        tv_nsec: nsec.try_into().unwrap_or(0),
    }
}

fn as_u64<T: TryInto<u64>>(v: T) -> u64 {
    v.try_into().unwrap_or(u64::MAX)
}

fn file_type(kind: DeviceKind) -> FileType {
    match kind {
        DeviceKind::Char => FileType::CharacterDevice,
        DeviceKind::Block => FileType::BlockDevice,
    }
}

/// The record of the placeholder `base` in `dir`, with its metadata, if it is one.
fn placeholder_at(dir: &OwnedFd, base: &[u8]) -> Option<(DeviceRecord, rfs::Stat)> {
    let st = rfs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW).ok()?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
        || st.st_size != 0
        || st.st_mode & 0o7777 != 0
    {
        return None;
    }
    // Regular (checked above, and again on the fd): reading its xattr opens no device or FIFO.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rfs::openat(dir, base, flags, Mode::empty()).ok()?;
    let again = rfs::fstat(&fd).ok()?;
    if again.st_ino != st.st_ino || again.st_dev != st.st_dev {
        return None;
    }
    let mut buf = [0u8; 64];
    let n = rfs::fgetxattr(&fd, DEVICE_XATTR, &mut buf[..]).ok()?;
    Some((DeviceRecord::parse(&buf[..n])?, st))
}

/// Turns the placeholder `p` into the real device node, in the merged root of a RUN sandbox
/// (never anywhere else: the node lands in the step's overlay upper directory). Only when the
/// path is still a placeholder with exactly `p`'s record in the merged view. The node keeps the
/// placeholder's owner and times, gets the recorded mode, and its directory keeps its times,
/// so an untouched node is told apart afterwards (see [`remove_if_untouched`]).
pub fn materialize(root: &Path, p: &Placeholder) -> std::io::Result<Materialized> {
    let r = &p.record;
    if r.kind == DeviceKind::Char && overlay::is_whiteout_device(r.major, r.minor) {
        return Ok(Materialized::Unrepresentable);
    }
    let root = open_root(root)?;
    let Some((dir, base)) = open_parent(&root, &p.path) else {
        return Ok(Materialized::NotVisible);
    };
    let Some((found, st)) = placeholder_at(&dir, base) else {
        return Ok(Materialized::NotVisible);
    };
    if found != *r {
        return Ok(Materialized::NotVisible);
    }
    let dir_st = rfs::fstat(&dir)?;
    rfs::unlinkat(&dir, base, AtFlags::empty())?;
    let dev = rfs::makedev(r.major, r.minor);
    rfs::mknodat(&dir, base, file_type(r.kind), Mode::empty(), dev)?;
    let nofollow = AtFlags::SYMLINK_NOFOLLOW;
    let owner = (
        Some(rfs::Uid::from_raw(st.st_uid)),
        Some(rfs::Gid::from_raw(st.st_gid)),
    );
    rfs::chownat(&dir, base, owner.0, owner.1, nofollow)?;
    // After the chown, which clears setuid/setgid. `base` is the node just made and nothing
    // else runs in the sandbox yet, so following it is harmless (and AT_SYMLINK_NOFOLLOW is
    // refused by older kernels).
    rfs::chmodat(&dir, base, Mode::from_raw_mode(r.mode), AtFlags::empty())?;
    let times = Timestamps {
        last_access: timespec(st.st_atime, st.st_atime_nsec),
        last_modification: timespec(st.st_mtime, st.st_mtime_nsec),
    };
    rfs::utimensat(&dir, base, &times, nofollow)?;
    let dir_times = Timestamps {
        last_access: timespec(dir_st.st_atime, dir_st.st_atime_nsec),
        last_modification: timespec(dir_st.st_mtime, dir_st.st_mtime_nsec),
    };
    rfs::futimens(dir.as_fd(), &dir_times)?;
    Ok(Materialized::Node)
}

/// After a RUN, in the step's overlay upper directory `upper`: removes the node at `p`'s path
/// if it is exactly what [`materialize`] made from a placeholder with metadata `meta` (same
/// kind, major/minor, mode, owner and mtime), so the placeholder below shows through again and
/// the step's layer has nothing for it, as with BuildKit for a device the command did not touch.
/// Kept when a directory on the way is opaque (the placeholder would not show through). Returns
/// whether it removed the node.
pub fn remove_if_untouched(
    upper: &Path,
    p: &Placeholder,
    meta: &NodeMeta,
) -> std::io::Result<bool> {
    let root = open_root(upper)?;
    let Some((dir, base)) = open_parent(&root, &p.path) else {
        return Ok(false);
    };
    if opaque_on_the_way(&root, &p.path) {
        return Ok(false);
    }
    let Ok(st) = rfs::statat(&dir, base, AtFlags::SYMLINK_NOFOLLOW) else {
        return Ok(false);
    };
    let r = &p.record;
    let same = FileType::from_raw_mode(st.st_mode) == file_type(r.kind)
        && as_u64(st.st_rdev) == as_u64(rfs::makedev(r.major, r.minor))
        && st.st_mode & 0o7777 == r.mode
        && st.st_uid == meta.uid
        && st.st_gid == meta.gid
        && timespec(st.st_mtime, st.st_mtime_nsec) == timespec(meta.mtime_sec, meta.mtime_nsec);
    if !same {
        return Ok(false);
    }
    rfs::unlinkat(&dir, base, AtFlags::empty())?;
    Ok(true)
}

/// Whether the root or a directory above the last component of `path` is opaque in `upper`.
fn opaque_on_the_way(root: &OwnedFd, path: &[u8]) -> bool {
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let parents = path
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b'/')
        .map(|(i, _)| &path[..i]);
    std::iter::once(&b"."[..]).chain(parents).any(|dir| {
        match rfs::openat2(root, dir, flags, Mode::empty(), RESOLVE) {
            Ok(fd) => overlay::is_opaque_fd(&fd),
            // Unreadable or replaced: keep the node rather than guess.
            Err(_) => true,
        }
    })
}

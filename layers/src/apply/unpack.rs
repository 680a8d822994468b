//! Turning tar entries into filesystem objects inside the root: the per-entry rules.
//!
//! Ordering follows containerd's `archive/tar.go` and GNU tar: a file's contents are written,
//! then `chown` (which clears setuid/setgid), then `chmod`, xattrs, and times; directories get
//! their final mode and mtime only after the whole layer (writing children would bump the mtime,
//! and a read-only directory would refuse them). Whiteouts follow the OCI image spec
//! (`layer.md`, "Whiteouts"): they hide only lower-layer entries, never entries of the same
//! layer, and whiteout files themselves are never created.

use std::collections::BTreeSet;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::donor::{self, Donor};
use super::error::{chown_err, io_err, show, ApplyError};
use super::path::{clean, join, split_parent, NameProblem};
use super::root::{remove_all, Root};
use super::tar::{Entry, Kind, TarReader};
use super::{ApplyOptions, DeviceMode, WhiteoutMode};
use crate::device::{
    DeviceKind, DeviceRecord, Placeholder, DEVICE_XATTR, MAX_REPORTED_PLACEHOLDERS,
};
use crate::whiteout::{self, overlay};

/// Xattr namespaces a layer may not set: they would inject overlayfs semantics (whiteouts,
/// opaque dirs, redirects) or rbuild's device placeholders (see [`crate::device`]) into the tree.
const FORBIDDEN_XATTR_PREFIXES: [&[u8]; 3] = [
    overlay::XATTR_PREFIXES[0].as_bytes(),
    overlay::XATTR_PREFIXES[1].as_bytes(),
    b"user.rbuild.",
];

/// Whether a layer may not set xattr `name` (see [`FORBIDDEN_XATTR_PREFIXES`]).
pub(super) fn is_forbidden_xattr(name: &[u8]) -> bool {
    FORBIDDEN_XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A directory whose final mode and times are applied after the layer.
struct Deferred {
    path: Vec<u8>,
    mode: u32,
    times: Timestamps,
}

/// State of one layer application.
pub struct Unpacker<'o> {
    root: Root,
    /// [`ApplyOptions::parents`], opened.
    parents: Vec<OwnedFd>,
    opts: &'o ApplyOptions,
    is_root_user: bool,
    /// Paths this layer created (including implicit parents): whiteouts and opaque markers must
    /// not remove them (they only hide lower layers). Ordered, so "anything created below this
    /// directory?" is one range lookup.
    created: BTreeSet<Vec<u8>>,
    deferred: Vec<Deferred>,
    /// [`ApplyOptions::donor`], opened (see [`super::donor`]).
    donor: Option<Donor>,
    /// Reused buffer for comparing a donor file's bytes with the tar's.
    compare: Vec<u8>,
    pub entries: u64,
    /// Regular files whose inode came from the donor.
    pub adopted: u64,
    pub warnings: Vec<String>,
    /// The device placeholders written, at most [`MAX_REPORTED_PLACEHOLDERS`].
    pub placeholders: Vec<Placeholder>,
    placeholders_truncated: bool,
    /// Warnings beyond [`MAX_WARNINGS`], counted instead of stored (a hostile layer of a million
    /// device nodes must not grow memory).
    suppressed_warnings: u64,
}

/// Writes the entry's data from `tar` into the new file `fd`.
fn write_contents<R: std::io::BufRead>(
    fd: OwnedFd,
    path: &[u8],
    tar: &mut TarReader<R>,
) -> Result<OwnedFd, ApplyError> {
    let mut file = std::fs::File::from(fd);
    loop {
        let chunk = tar.data()?;
        if chunk.is_empty() {
            return Ok(file.into());
        }
        let n = chunk.len();
        file.write_all(chunk).map_err(|source| ApplyError::Io {
            path: show(path),
            op: "writing file contents",
            source,
        })?;
        tar.consume_data(n);
    }
}

/// Warnings kept verbatim in the report.
const MAX_WARNINGS: usize = 100;

fn times_of(e: &Entry) -> Timestamps {
    let t = Timespec {
        tv_sec: e.mtime_sec,
        tv_nsec: e.mtime_nsec.into(),
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn name_error(path: &[u8], problem: NameProblem, what: &'static str) -> ApplyError {
    match problem {
        NameProblem::EscapesRoot => ApplyError::Escape {
            path: show(path),
            reason: what,
        },
        other => ApplyError::InvalidEntry {
            path: show(path),
            reason: other.reason(),
        },
    }
}

impl<'o> Unpacker<'o> {
    pub fn new(
        root_fd: OwnedFd,
        parents: Vec<OwnedFd>,
        donor: Option<Donor>,
        opts: &'o ApplyOptions,
    ) -> Self {
        Unpacker {
            root: Root::new(root_fd),
            parents,
            opts,
            is_root_user: rustix::process::geteuid().is_root(),
            created: BTreeSet::new(),
            deferred: Vec::new(),
            donor,
            compare: Vec::new(),
            entries: 0,
            adopted: 0,
            warnings: Vec::new(),
            placeholders: Vec::new(),
            placeholders_truncated: false,
            suppressed_warnings: 0,
        }
    }

    /// Applies every entry of `tar`, then the deferred directory metadata.
    pub fn run<R: std::io::BufRead>(&mut self, tar: &mut TarReader<R>) -> Result<(), ApplyError> {
        while let Some(entry) = tar.next_entry()? {
            self.entries += 1;
            self.apply(&entry, tar)?;
        }
        tar.drain()?;
        self.finish()
    }

    fn apply<R: std::io::BufRead>(
        &mut self,
        e: &Entry,
        tar: &mut TarReader<R>,
    ) -> Result<(), ApplyError> {
        let path = clean(&e.path)
            .map_err(|p| name_error(&e.path, p, "the entry name climbs above the root"))?;
        if path.is_empty() {
            // umoci CVE-2021-29136: an entry named `/.` (or `a/..`) is the root itself. Only a
            // directory may describe it; anything else would replace the root.
            if e.kind != Kind::Dir {
                return Err(ApplyError::Escape {
                    path: show(&e.path),
                    reason: "the entry names the root directory itself but is not a directory",
                });
            }
            return self.directory(e, &path);
        }
        let (parent, _) = split_parent(&path);
        // Whiteout names are reserved (image-spec layer.md): one used as a *directory* would make
        // the applier create a whiteout-named entry, which must never exist in a tree.
        if parent.split(|&b| b == b'/').any(whiteout::is_reserved) {
            return Err(ApplyError::InvalidEntry {
                path: show(&e.path),
                reason: "a whiteout name (`.wh.*`) is used as a directory",
            });
        }
        match whiteout::classify(&path) {
            whiteout::Entry::Opaque { dir } => return self.opaque(e, dir),
            whiteout::Entry::Whiteout { dir, target } => return self.whiteout(e, dir, target),
            whiteout::Entry::Regular => {}
        }
        match e.kind {
            Kind::Regular => self.regular(e, &path, tar),
            Kind::Dir => self.directory(e, &path),
            Kind::Symlink => self.symlink(e, &path),
            Kind::HardLink => self.hardlink(e, &path),
            Kind::Fifo => self.special(e, &path, FileType::Fifo),
            Kind::Char | Kind::Block if self.opts.devices == DeviceMode::Placeholder => {
                self.device_placeholder(e, &path)
            }
            Kind::Char | Kind::Block => {
                if self.is_root_user {
                    let ft = if e.kind == Kind::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    self.special(e, &path, ft)
                } else {
                    self.warn(|| format!(
                        "skipped device node `{}` ({}:{}): devices are only created when running as root",
                        show(&e.path),
                        e.dev_major,
                        e.dev_minor
                    ));
                    Ok(())
                }
            }
            Kind::Other(flag) => {
                self.warn(|| {
                    format!(
                        "skipped entry `{}` of unsupported tar type {:?}",
                        show(&e.path),
                        char::from(flag)
                    )
                });
                Ok(())
            }
        }
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(message());
        } else {
            self.suppressed_warnings += 1;
        }
    }

    /// The parent directory of `path` (created if missing), recording created components.
    fn parent_of(
        &mut self,
        parent: &[u8],
        path: &[u8],
    ) -> Result<std::rc::Rc<OwnedFd>, ApplyError> {
        let mut implied = Vec::new();
        let fd = self
            .root
            .parent(parent, &mut |p: &[u8]| implied.push(p.to_vec()))
            .map_err(io_err(
                path,
                "resolving the parent directory inside the root",
            ))?;
        for dir in implied {
            self.copy_parent_info(&dir)?;
            self.created.insert(dir);
        }
        Ok(fd)
    }

    /// Gives a directory this layer created implicitly the metadata of the same path in the
    /// first parent snapshot that has it (containerd's `mkparent` with `WithParents`: the path
    /// is resolved inside that snapshot; a non-directory there means "replaced", no copy).
    fn copy_parent_info(&mut self, dir: &[u8]) -> Result<(), ApplyError> {
        for parent in &self.parents {
            let found = match Root::stat_in(parent.as_fd(), dir) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(()),
                Err(e) => return Err(io_err(dir, "reading the parent snapshot")(e)),
            };
            if FileType::from_raw_mode(found.st_mode) != FileType::Directory {
                return Ok(());
            }
            if self.opts.same_owner {
                let fd = self
                    .root
                    .open_dir(dir, true)
                    .map_err(io_err(dir, "reopening the directory"))?;
                rfs::fchown(
                    &fd,
                    Some(Uid::from_raw(found.st_uid)),
                    Some(Gid::from_raw(found.st_gid)),
                )
                .map_err(chown_err(dir, found.st_uid, found.st_gid))?;
            }
            let at = |sec: i64, nsec: u64| Timespec {
                tv_sec: sec,
                tv_nsec: nsec.try_into().unwrap_or(0),
            };
            self.deferred.push(Deferred {
                path: dir.to_vec(),
                mode: found.st_mode & 0o7777,
                times: Timestamps {
                    last_access: at(found.st_atime, found.st_atime_nsec),
                    last_modification: at(found.st_mtime, found.st_mtime_nsec),
                },
            });
            return Ok(());
        }
        Ok(())
    }

    /// Makes room for a new non-directory at `base` in `dir`: removes whatever is there (a
    /// directory recursively). A symlink is removed, never followed.
    fn clear(&mut self, dir: BorrowedFd<'_>, base: &[u8], path: &[u8]) -> Result<(), ApplyError> {
        match rfs::statat(dir, base, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_err(path, "inspecting the existing entry")(e)),
            Ok(st) => {
                let ft = FileType::from_raw_mode(st.st_mode);
                if ft == FileType::Directory || ft == FileType::Symlink {
                    self.root.invalidate();
                }
                remove_all(dir, base).map_err(io_err(path, "removing the existing entry"))
            }
        }
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, e: &Entry, path: &[u8]) -> Result<(), ApplyError> {
        if self.opts.same_owner {
            rfs::fchown(fd, Some(Uid::from_raw(e.uid)), Some(Gid::from_raw(e.gid)))
                .map_err(chown_err(path, e.uid, e.gid))?;
        }
        Ok(())
    }

    fn set_xattrs(&mut self, fd: BorrowedFd<'_>, e: &Entry) {
        for (name, value) in &e.xattrs {
            if is_forbidden_xattr(name) {
                self.warn(|| {
                    format!(
                        "ignored xattr `{}` on `{}`: overlay and rbuild attributes may not come from a layer",
                        show(name),
                        show(&e.path)
                    )
                });
                continue;
            }
            if let Err(err) = rfs::fsetxattr(fd, name.as_slice(), value, rfs::XattrFlags::empty()) {
                self.warn(|| {
                    format!(
                        "could not set xattr `{}` on `{}`: {err}",
                        show(name),
                        show(&e.path)
                    )
                });
            }
        }
    }

    fn warn_xattrs_unsupported(&mut self, e: &Entry) {
        if !e.xattrs.is_empty() {
            self.warn(|| {
                format!(
                    "ignored {} xattr(s) on `{}`: xattrs are only applied to files and directories",
                    e.xattrs.len(),
                    show(&e.path)
                )
            });
        }
    }

    fn regular<R: std::io::BufRead>(
        &mut self,
        e: &Entry,
        path: &[u8],
        tar: &mut TarReader<R>,
    ) -> Result<(), ApplyError> {
        let (parent, base) = split_parent(path);
        let dir = self.parent_of(parent, path)?;
        let file = match self.adopt(e, path, dir.as_fd(), base)? {
            Some(fd) => {
                donor::patch_contents(&fd, path, tar, &mut self.compare)?;
                fd
            }
            None => {
                let fd = self.create_file(dir.as_fd(), base, path)?;
                write_contents(fd, path, tar)?
            }
        };
        let fd = file.as_fd();
        self.chown_fd(fd, e, path)?;
        rfs::fchmod(fd, Mode::from_raw_mode(e.mode)).map_err(io_err(path, "chmod"))?;
        self.set_xattrs(fd, e);
        rfs::futimens(fd, &times_of(e)).map_err(io_err(path, "setting times"))?;
        self.created.insert(path.to_vec());
        Ok(())
    }

    /// A new empty file at `base` in `dir`, replacing whatever is there.
    fn create_file(
        &mut self,
        dir: BorrowedFd<'_>,
        base: &[u8],
        path: &[u8],
    ) -> Result<OwnedFd, ApplyError> {
        let create = || {
            rfs::openat(
                dir,
                base,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        // Create first and clear only on EEXIST: the common case (a new file) then costs no
        // extra lookup. O_CREAT|O_EXCL never follows or opens what is already there.
        match create() {
            Err(Errno::EXIST) => {
                self.clear(dir, base, path)?;
                create()
            }
            other => other,
        }
        .map_err(io_err(path, "creating the file"))
    }

    /// Moves the donor's file for `path` to `base` in `dir` when it can stand in for `e` (see
    /// [`super::donor`]); `None` when there is no donor or it cannot.
    fn adopt(
        &mut self,
        e: &Entry,
        path: &[u8],
        dir: BorrowedFd<'_>,
        base: &[u8],
    ) -> Result<Option<OwnedFd>, ApplyError> {
        let Some(candidate) = self.donor.as_mut().and_then(|d| d.candidate(path, e)) else {
            return Ok(None);
        };
        let moved = match donor::move_into(candidate.parent.as_fd(), dir, base) {
            Err(Errno::EXIST) => {
                self.clear(dir, base, path)?;
                donor::move_into(candidate.parent.as_fd(), dir, base)
            }
            other => other,
        };
        if moved.is_err() {
            // Another filesystem, or a file the donor cannot give up: written as usual.
            return Ok(None);
        }
        self.adopted += 1;
        Ok(Some(candidate.file))
    }

    fn directory(&mut self, e: &Entry, path: &[u8]) -> Result<(), ApplyError> {
        let fd = if path.is_empty() {
            self.root
                .open_dir(b"", false)
                .map_err(io_err(b"/", "opening the root"))?
        } else {
            let (parent, base) = split_parent(path);
            let dir = self.parent_of(parent, path)?;
            // Owner-writable until the deferred chmod, so a non-root user can add children.
            match rfs::mkdirat(&*dir, base, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) => match rfs::statat(&*dir, base, AtFlags::SYMLINK_NOFOLLOW) {
                    // A directory over a directory keeps its contents.
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        self.clear(dir.as_fd(), base, path)?;
                        rfs::mkdirat(&*dir, base, Mode::from_raw_mode(0o700))
                            .map_err(io_err(path, "mkdir"))?;
                    }
                    Err(err) => return Err(io_err(path, "inspecting the existing entry")(err)),
                },
                Err(err) => return Err(io_err(path, "mkdir")(err)),
            }
            rfs::openat(
                &*dir,
                base,
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(io_err(path, "opening the directory"))?
        };
        self.chown_fd(fd.as_fd(), e, path)?;
        self.set_xattrs(fd.as_fd(), e);
        self.deferred.push(Deferred {
            path: path.to_vec(),
            mode: e.mode,
            times: times_of(e),
        });
        self.created.insert(path.to_vec());
        Ok(())
    }

    fn symlink(&mut self, e: &Entry, path: &[u8]) -> Result<(), ApplyError> {
        if e.link.is_empty() {
            return Err(ApplyError::InvalidEntry {
                path: show(&e.path),
                reason: "symlink with an empty target",
            });
        }
        let (parent, base) = split_parent(path);
        let dir = self.parent_of(parent, path)?;
        // The target is stored verbatim: it is data, and every later lookup through it is
        // contained by RESOLVE_IN_ROOT. symlinkat never follows an existing name (EEXIST).
        match rfs::symlinkat(e.link.as_slice(), &*dir, base) {
            Err(Errno::EXIST) => {
                self.clear(dir.as_fd(), base, path)?;
                rfs::symlinkat(e.link.as_slice(), &*dir, base)
            }
            other => other,
        }
        .map_err(io_err(path, "symlink"))?;
        self.name_metadata(&dir, base, e, path, false)?;
        self.created.insert(path.to_vec());
        Ok(())
    }

    fn hardlink(&mut self, e: &Entry, path: &[u8]) -> Result<(), ApplyError> {
        let target = clean(&e.link).map_err(|p| {
            let mut shown = e.path.clone();
            shown.extend_from_slice(b" => ");
            shown.extend_from_slice(&e.link);
            name_error(&shown, p, "the hardlink target climbs above the root")
        })?;
        if target.is_empty() {
            return Err(ApplyError::InvalidEntry {
                path: show(&e.path),
                reason: "hardlink to the root directory",
            });
        }
        let (tparent, tbase) = split_parent(&target);
        // The target's parent is resolved inside the root like any path; its last component is
        // linked as is (no AT_SYMLINK_FOLLOW), so a link to a symlink links the symlink itself.
        let tdir = self.root.open_dir(tparent, false).map_err(io_err(
            &e.link,
            "resolving the hardlink target inside the root",
        ))?;
        let tst = rfs::statat(&tdir, tbase, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(&e.link, "inspecting the hardlink target"))?;
        let (parent, base) = split_parent(path);
        let dir = self.parent_of(parent, path)?;
        match rfs::statat(&*dir, base, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_dev == tst.st_dev && st.st_ino == tst.st_ino => {}
            _ => {
                self.clear(dir.as_fd(), base, path)?;
                rfs::linkat(&tdir, tbase, &*dir, base, AtFlags::empty())
                    .map_err(io_err(path, "creating the hardlink"))?;
            }
        }
        self.created.insert(path.to_vec());
        Ok(())
    }

    /// A device as data (see [`crate::device`]): an empty mode-000 regular file recording it.
    fn device_placeholder(&mut self, e: &Entry, path: &[u8]) -> Result<(), ApplyError> {
        let (parent, base) = split_parent(path);
        let dir = self.parent_of(parent, path)?;
        self.clear(dir.as_fd(), base, path)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW;
        let fd = rfs::openat(&*dir, base, flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(io_err(path, "creating a device placeholder"))?;
        self.chown_fd(fd.as_fd(), e, path)?;
        rfs::fchmod(&fd, Mode::empty()).map_err(io_err(path, "chmod"))?;
        let record = DeviceRecord {
            kind: if e.kind == Kind::Char {
                DeviceKind::Char
            } else {
                DeviceKind::Block
            },
            major: e.dev_major,
            minor: e.dev_minor,
            mode: e.mode,
        };
        match rfs::fsetxattr(
            &fd,
            DEVICE_XATTR,
            record.encode().as_bytes(),
            rfs::XattrFlags::empty(),
        ) {
            Ok(()) => self.report_placeholder(path, record),
            Err(err) => self.warn(|| {
                format!(
                    "device node `{}` ({}:{}) is kept as an empty file without its record: {err}",
                    show(&e.path),
                    e.dev_major,
                    e.dev_minor
                )
            }),
        }
        self.warn_xattrs_unsupported(e);
        rfs::futimens(&fd, &times_of(e)).map_err(io_err(path, "setting times"))?;
        self.created.insert(path.to_vec());
        Ok(())
    }

    /// Lists a placeholder for the report (so a RUN can see the real node), up to a bound.
    fn report_placeholder(&mut self, path: &[u8], record: DeviceRecord) {
        if self.placeholders.len() < MAX_REPORTED_PLACEHOLDERS {
            self.placeholders.push(Placeholder {
                path: path.to_vec(),
                record,
            });
        } else if !self.placeholders_truncated {
            self.placeholders_truncated = true;
            self.warn(|| {
                format!("more than {MAX_REPORTED_PLACEHOLDERS} device nodes: the others stay placeholders in RUN steps")
            });
        }
    }

    fn special(&mut self, e: &Entry, path: &[u8], ft: FileType) -> Result<(), ApplyError> {
        let (parent, base) = split_parent(path);
        let dir = self.parent_of(parent, path)?;
        self.clear(dir.as_fd(), base, path)?;
        let dev = rfs::makedev(e.dev_major, e.dev_minor);
        rfs::mknodat(&*dir, base, ft, Mode::from_raw_mode(0o600), dev)
            .map_err(io_err(path, "mknod"))?;
        self.name_metadata(&dir, base, e, path, true)?;
        self.created.insert(path.to_vec());
        Ok(())
    }

    /// Owner, mode and times of a symlink, FIFO or device, by name relative to its parent
    /// (these are never opened: opening a FIFO blocks, opening a device has side effects).
    fn name_metadata(
        &mut self,
        dir: &OwnedFd,
        base: &[u8],
        e: &Entry,
        path: &[u8],
        chmod: bool,
    ) -> Result<(), ApplyError> {
        if self.opts.same_owner {
            rfs::chownat(
                dir,
                base,
                Some(Uid::from_raw(e.uid)),
                Some(Gid::from_raw(e.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(chown_err(path, e.uid, e.gid))?;
        }
        if chmod {
            // `base` was just created by mknodat in this directory and is not a symlink.
            rfs::chmodat(dir, base, Mode::from_raw_mode(e.mode), AtFlags::empty())
                .map_err(io_err(path, "chmod"))?;
        }
        self.warn_xattrs_unsupported(e);
        rfs::utimensat(dir, base, &times_of(e), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(path, "setting times"))
    }

    fn check_whiteout_target(e: &Entry, target: &[u8]) -> Result<(), ApplyError> {
        if !whiteout::is_valid_target(target) {
            return Err(ApplyError::InvalidEntry {
                path: show(&e.path),
                reason: "a whiteout must name exactly one sibling (not empty, `.` or `..`)",
            });
        }
        Ok(())
    }

    /// A `.wh.` entry in an archive that is no layer ([`WhiteoutMode::Refuse`]).
    fn refused_whiteout(e: &Entry) -> ApplyError {
        ApplyError::InvalidEntry {
            path: show(&e.path),
            reason: "names starting with `.wh.` are reserved for OCI whiteouts, and this archive is not an image layer: rename the file",
        }
    }

    fn whiteout(&mut self, e: &Entry, parent: &[u8], target: &[u8]) -> Result<(), ApplyError> {
        if self.opts.whiteouts == WhiteoutMode::Refuse {
            return Err(Self::refused_whiteout(e));
        }
        Self::check_whiteout_target(e, target)?;
        let victim = join(parent, target);
        if self.created.contains(&victim) {
            // Same-layer entries are not hidden by a whiteout of that layer (image-spec layer.md).
            return Ok(());
        }
        match self.opts.whiteouts {
            WhiteoutMode::Apply => {
                let dir = match self.root.open_dir(parent, false) {
                    Ok(d) => d,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
                    Err(err) => {
                        return Err(io_err(&e.path, "resolving the whiteout's directory")(err))
                    }
                };
                self.clear(dir.as_fd(), target, &victim)
            }
            WhiteoutMode::Overlay => {
                let dir = self.parent_of(parent, &e.path)?;
                self.clear(dir.as_fd(), target, &victim)?;
                let placeholder = overlay::make_whiteout_or_placeholder(&*dir, target)
                    .map_err(io_err(&victim, "creating an overlay whiteout"))?;
                if placeholder {
                    self.mark_root(overlay::WHITEOUT_PLACEHOLDER_MARK, &victim)?;
                }
                self.created.insert(victim);
                Ok(())
            }
            WhiteoutMode::Refuse => Err(Self::refused_whiteout(e)),
        }
    }

    fn opaque(&mut self, e: &Entry, parent: &[u8]) -> Result<(), ApplyError> {
        match self.opts.whiteouts {
            WhiteoutMode::Refuse => Err(Self::refused_whiteout(e)),
            WhiteoutMode::Apply => {
                let dir = match self.root.open_dir(parent, false) {
                    Ok(d) => d,
                    Err(Errno::NOENT) | Err(Errno::NOTDIR) => return Ok(()),
                    Err(err) => return Err(io_err(&e.path, "resolving the opaque directory")(err)),
                };
                self.prune_lower(dir.as_fd(), parent, &e.path)
            }
            WhiteoutMode::Overlay => {
                let dir = self.parent_of(parent, &e.path)?;
                let in_user_xattr = overlay::mark_opaque(&*dir)
                    .map_err(io_err(&e.path, "marking the directory opaque (needs root)"))?;
                if in_user_xattr {
                    self.mark_root(overlay::USER_OPAQUE_MARK, &e.path)?;
                }
                Ok(())
            }
        }
    }

    /// Sets the bookkeeping xattr `mark` on the tree's root (because of entry `path`).
    fn mark_root(&self, mark: &str, path: &[u8]) -> Result<(), ApplyError> {
        let root = self
            .root
            .open_dir(b"", false)
            .map_err(io_err(path, "opening the root to mark it"))?;
        rustix::fs::fsetxattr(&root, mark, b"1", rustix::fs::XattrFlags::empty())
            .map_err(io_err(path, "marking the tree's root"))
    }

    /// Whether this layer created anything strictly below `dir`.
    fn created_below(&self, dir: &[u8]) -> bool {
        let mut prefix = dir.to_vec();
        prefix.push(b'/');
        self.created
            .range(prefix.clone()..)
            .next()
            .is_some_and(|p| p.starts_with(&prefix))
    }

    /// Removes everything in the directory `dir` (at `path`) that this layer did not create. A
    /// lower directory holding entries of this layer (an opaque marker that came after its
    /// siblings) is pruned recursively instead of removed.
    fn prune_lower(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &[u8],
        marker: &[u8],
    ) -> Result<(), ApplyError> {
        let mut names = Vec::new();
        let mut d =
            rfs::Dir::read_from(dir).map_err(io_err(marker, "listing the opaque directory"))?;
        while let Some(entry) = d.read() {
            let entry = entry.map_err(io_err(marker, "listing the opaque directory"))?;
            let n = entry.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        drop(d);
        for n in names {
            let child = join(path, &n);
            if self.created.contains(&child) {
                continue;
            }
            self.root.invalidate();
            if self.created_below(&child) {
                let sub = rfs::openat(
                    dir,
                    n.as_slice(),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(io_err(&child, "opening below an opaque directory"))?;
                self.prune_lower(sub.as_fd(), &child, marker)?;
            } else {
                remove_all(dir, &n)
                    .map_err(io_err(&child, "removing below an opaque directory"))?;
            }
        }
        Ok(())
    }

    /// Applies directory modes and times, after every entry is in place.
    fn finish(&mut self) -> Result<(), ApplyError> {
        if self.suppressed_warnings > 0 {
            self.warnings.push(format!(
                "... and {} more warnings",
                self.suppressed_warnings
            ));
        }
        self.root.invalidate();
        for d in std::mem::take(&mut self.deferred) {
            // Re-resolved inside the root; a path that is no longer a directory (replaced later
            // in the layer) is skipped.
            let fd = match self.root.open_dir(&d.path, true) {
                Ok(fd) => fd,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                Err(err) => return Err(io_err(&d.path, "reopening the directory")(err)),
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(d.mode)).map_err(io_err(&d.path, "chmod"))?;
            rfs::futimens(&fd, &d.times).map_err(io_err(&d.path, "setting times"))?;
        }
        Ok(())
    }
}

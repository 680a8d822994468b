//! Temporary data in `<store>/tmp/`: names that say which process owns them, scratch
//! directories, and reclaiming what killed processes left behind.
//!
//! Every temp file and scratch directory is named `<tag>-<pid>-<start>-<unique>` (files end in
//! `.tmp`), where `<start>` is the owner's start time (field 22 of `/proc/<pid>/stat`, in clock
//! ticks since boot), so a recycled PID is not mistaken for the owner. The owner also holds an
//! `flock` on the file or directory while it is alive; a process in another PID namespace (where
//! the PID means nothing) is still protected by that lock.
//!
//! An entry is stale when its owner is gone (no such PID, or one that started at another time)
//! *and* nobody holds its lock. [`reclaim`] removes stale entries; it runs in every
//! [`super::Store::open`] (so at the start of every build), in `prune` and in `fsck`. Entries
//! whose name carries no owner (written by older rbuild versions) are removed by the old rule for
//! files (unlocked and older than [`fsutil::STALE_TEMP_GRACE`]); directories of that kind only by
//! `prune`, which has the store to itself.
//!
//! Removal ([`remove_tree`]) never follows a symlink and never descends into another mount: each
//! level is opened with `O_NOFOLLOW` relative to its parent's fd, and a directory on another
//! device is left alone. It makes directories writable as it goes, because a `RUN` step's overlay
//! work directory (`work/work`, mode 000) and directories the step made read-only cannot be
//! emptied otherwise without `CAP_DAC_OVERRIDE`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::SystemTime;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::fsutil;

/// The process that owns a temp entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start: u64,
}

/// Whether an owner still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Liveness {
    Alive,
    Dead,
    /// `/proc` cannot tell (not mounted, or unreadable): only the lock decides.
    Unknown,
}

/// The start time of `pid` from `/proc/<pid>/stat`; `Err(NotFound)` when there is no such process.
fn start_time(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may itself contain spaces and ')'.
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("no ')' in /proc/PID/stat"))?;
    // Field 3 (state) is the first after the name, so field 22 is the 20th.
    after
        .split_whitespace()
        .nth(19)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other("no start time in /proc/PID/stat"))
}

impl Owner {
    /// This process, or `None` where `/proc` is unavailable.
    pub fn current() -> Option<Owner> {
        static CURRENT: OnceLock<Option<Owner>> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let pid = std::process::id();
            start_time(pid).ok().map(|start| Owner { pid, start })
        })
    }

    fn liveness(self) -> Liveness {
        if Owner::current().is_none() {
            return Liveness::Unknown;
        }
        match start_time(self.pid) {
            Ok(start) if start == self.start => Liveness::Alive,
            Ok(_) => Liveness::Dead,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Liveness::Dead,
            Err(_) => Liveness::Unknown,
        }
    }

    /// Reads the owner out of a temp name (`<tag>-<pid>-<start>-<unique>[.tmp]`).
    pub fn from_name(name: &str) -> Option<Owner> {
        let mut parts = name.splitn(4, '-');
        let tag = parts.next()?;
        let (pid, start, unique) = (parts.next()?, parts.next()?, parts.next()?);
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_lowercase()) || unique.is_empty() {
            return None;
        }
        if !digits(pid) || !digits(start) {
            return None;
        }
        Some(Owner {
            pid: pid.parse().ok()?,
            start: start.parse().ok()?,
        })
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A fresh name `<tag>-<pid>-<start>-<unique>` for a temp entry of this process. `tag` must be
/// lower-case ASCII letters. Without `/proc` the start is 0 (the lock still protects the entry).
pub(crate) fn owned_name(tag: &str) -> String {
    debug_assert!(!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_lowercase()));
    let owner = Owner::current().unwrap_or(Owner {
        pid: std::process::id(),
        start: 0,
    });
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}-{}-{}-{n}-{nanos:x}", owner.pid, owner.start)
}

/// A private scratch directory in `<store>/tmp/`, named after its owner and locked while this
/// value lives; dropping it removes the tree (see [`remove_tree`]). A process killed before that
/// leaves it for [`reclaim`].
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    /// Holds the directory's `flock` (an fd opened `O_CLOEXEC`, so no child inherits it).
    _lock: File,
}

impl ScratchDir {
    /// Creates `<tmp_dir>/<tag>-<pid>-<start>-<unique>/` (mode 0700) and locks it.
    pub(crate) fn create(tmp_dir: &Path, tag: &str) -> io::Result<ScratchDir> {
        use std::os::unix::fs::DirBuilderExt;
        loop {
            let path = tmp_dir.join(owned_name(tag));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let lock = File::open(&path)?;
                    fsutil::flock(&lock, libc::LOCK_EX)?;
                    return Ok(ScratchDir { path, _lock: lock });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the directory (it has been renamed into place): dropping no longer removes it.
    pub(crate) fn keep(mut self) {
        self.path = PathBuf::new();
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        // Best effort: whatever is left is reclaimed by the next build or prune.
        let _ = remove_tree(&self.path);
    }
}

/// What [`reclaim`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Names of the removed entries (files and directories directly in `tmp/`).
    pub entries: Vec<String>,
    /// Bytes of file data they held.
    pub bytes: u64,
    /// Stale entries that could not be removed (e.g. a mount inside), with why; they are
    /// retried next time and never stop a build.
    pub failed: Vec<(String, String)>,
}

impl Reclaimed {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn add(&mut self, other: Reclaimed) {
        self.entries.extend(other.entries);
        self.bytes += other.bytes;
        self.failed.extend(other.failed);
    }
}

/// Who is asking and where: `prune` has the store to itself and may also remove owner-less
/// directories of `tmp/`; in a directory that also holds permanent entries (`snapshots/`) only
/// owner-named ones are considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReclaimMode {
    Open,
    Prune,
    OwnedOnly,
}

/// Removes the stale entries of `tmp_dir` (see the module doc).
pub(crate) fn reclaim(tmp_dir: &Path, mode: ReclaimMode) -> io::Result<Reclaimed> {
    let mut out = Reclaimed::default();
    for entry in fs::read_dir(tmp_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if !stale_by_name(&name, &meta, mode) {
            continue;
        }
        // The lock decides last: a live owner (in any PID namespace) holds it. Opened without
        // following a symlink or blocking on a FIFO someone may have put there.
        let Ok(lock) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(&path)
        else {
            continue;
        };
        match fsutil::flock(&lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if fsutil::would_block(&e) => continue,
            Err(e) => return Err(e),
        }
        let removed = if meta.is_dir() {
            remove_tree(&path)
        } else {
            fs::remove_file(&path).map(|()| meta.len())
        };
        match removed {
            Ok(bytes) => {
                out.entries.push(name);
                out.bytes += bytes;
            }
            // Another cleaner was first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => out.failed.push((name, e.to_string())),
        }
    }
    Ok(out)
}

/// Whether the name (and, for owner-less names, age and kind) says the entry may be removed
/// once its lock is free.
fn stale_by_name(name: &str, meta: &fs::Metadata, mode: ReclaimMode) -> bool {
    let owner = Owner::from_name(name.strip_suffix(".tmp").unwrap_or(name));
    match owner.map(Owner::liveness) {
        Some(Liveness::Alive) => false,
        Some(Liveness::Dead) => true,
        _ if mode == ReclaimMode::OwnedOnly => false,
        // No owner in the name, or /proc cannot tell: the old rule.
        _ if meta.is_dir() => mode == ReclaimMode::Prune,
        _ => {
            meta.is_file()
                && meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age >= fsutil::STALE_TEMP_GRACE)
        }
    }
}

/// Removes the directory `path` and everything in it, never following a symlink or entering
/// another mount; returns the bytes of file data removed. A mount point inside is left in place
/// (and makes the removal fail with `EBUSY`).
pub(crate) fn remove_tree(path: &Path) -> io::Result<u64> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p, n),
        _ => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    let parent_fd = rfs::open(
        if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        },
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let dev = fs::symlink_metadata(parent)?.dev();
    let mut bytes = 0;
    use std::os::unix::ffi::OsStrExt;
    remove_at(parent_fd.as_fd(), name.as_bytes(), dev, &mut bytes)?;
    Ok(bytes)
}

/// Removes `name` in `dir` (whatever it is) as [`remove_tree`] describes.
fn remove_at(dir: BorrowedFd<'_>, name: &[u8], dev: u64, bytes: &mut u64) -> Result<(), Errno> {
    let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => {
                *bytes += u64::try_from(st.st_size).unwrap_or(0);
                Ok(())
            }
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        };
    }
    if st.st_dev != dev {
        // Another filesystem is mounted here: what it holds is not ours to delete.
        return Err(Errno::BUSY);
    }
    let child = open_dir_writable(dir, name)?;
    loop {
        let batch = read_names(child.as_fd(), 4096)?;
        if batch.is_empty() {
            break;
        }
        for n in batch {
            remove_at(child.as_fd(), &n, dev, bytes)?;
        }
    }
    drop(child);
    match rfs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens the directory `name` in `dir` without following symlinks, first making it `u+rwx`
/// (the chmod goes through an `O_PATH` fd of that very inode, so it cannot be redirected).
fn open_dir_writable(dir: BorrowedFd<'_>, name: &[u8]) -> Result<std::os::fd::OwnedFd, Errno> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let handle = rfs::openat(dir, name, flags | OFlags::PATH, Mode::empty())?;
    let st = rfs::fstat(&handle)?;
    if st.st_mode & 0o700 != 0o700 {
        let proc_path = format!("/proc/self/fd/{}", handle.as_raw_fd());
        // Without /proc the open below still works for root, which is what runs RUN steps.
        let _ = rfs::chmod(
            proc_path.as_str(),
            Mode::from_raw_mode(0o700 | (st.st_mode & 0o7777)),
        );
    }
    rfs::openat(dir, name, flags | OFlags::RDONLY, Mode::empty())
}

/// Up to `max` entry names (without `.`/`..`) of the directory open as `dir`.
fn read_names(dir: BorrowedFd<'_>, max: usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut d = rfs::Dir::read_from(dir)?;
    let mut out = Vec::new();
    while out.len() < max {
        let Some(entry) = d.read() else { break };
        let n = entry?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            out.push(n);
        }
    }
    Ok(out)
}

/// Opens (creating) a temp file named after this process in `tmp_dir`.
pub(crate) fn create_owned_file(tmp_dir: &Path, tag: &str) -> io::Result<(File, PathBuf)> {
    loop {
        let path = tmp_dir.join(format!("{}.tmp", owned_name(tag)));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

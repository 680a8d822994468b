//! Atomic file replacement: the one way rbuild writes a file that others may read while it
//! changes, or after a crash.
//!
//! The bytes go to a temp file on the destination's filesystem, which is fsynced and then
//! renamed over the destination; unless told otherwise the destination's directory is fsynced
//! too, so that the rename itself survives a crash. A reader sees the old content or the new,
//! never a mix, and a write that fails (or an [`AtomicFile`] dropped without
//! [`commit`](AtomicFile::commit)) removes its temp file.
//!
//! The temp file is made next to the destination ([`AtomicFile::create`], named
//! `<prefix><random>`), or by the caller when its temps follow a convention of their own (the
//! store's owner-named, locked temps in `<store>/tmp/`: [`AtomicFile::from_temp`]). Callers
//! choose the file's [`Mode`], whether the directory is fsynced, and crash-test hooks around the
//! rename (see [`crate::failpoint`]; the hook names the point, so each stays placed once).

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The temp-name prefix of [`Options::new`]; a cleaner may treat names with it as leftovers.
pub const TEMP_PREFIX: &str = ".rbuild-tmp-";

/// A step of an atomic write that failed: the operation, the path it concerned, the cause.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct AtomicError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl AtomicError {
    fn at(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicError {
        let path = path.to_path_buf();
        move |source| AtomicError { op, path, source }
    }
}

/// The permissions the written file ends up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 0600, as the temp file is created (e.g. Docker's `config.json`, which holds secrets).
    Private,
    /// `0666` less the process umask, as [`std::fs::write`] would create the file.
    Umask,
    /// Exactly these bits, whatever the umask (set before the file is synced).
    Exact(u32),
}

/// How to write: the file's mode, the temp-name prefix, whether to fsync the directory, and
/// crash-test hooks. Built with `const fn`s so that a caller can keep its choice in a `const`.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    mode: Mode,
    prefix: &'static str,
    sync_dir: bool,
    before_rename: fn(),
    after_rename: fn(),
}

fn no_hook() {}

impl Options {
    /// Mode [`Mode::Private`], prefix [`TEMP_PREFIX`], directory fsynced, no hooks.
    pub const fn new() -> Options {
        Options {
            mode: Mode::Private,
            prefix: TEMP_PREFIX,
            sync_dir: true,
            before_rename: no_hook,
            after_rename: no_hook,
        }
    }

    /// The mode of the written file. For a temp from [`AtomicFile::from_temp`] only
    /// [`Mode::Exact`] changes anything (the caller created it).
    pub const fn mode(mut self, mode: Mode) -> Options {
        self.mode = mode;
        self
    }

    /// The prefix of the temp file's name (for [`AtomicFile::create`]).
    pub const fn prefix(mut self, prefix: &'static str) -> Options {
        self.prefix = prefix;
        self
    }

    /// Leaves the directory unsynced: for a caller that syncs it once after many files, or
    /// whose file may be lost in a crash without harm.
    pub const fn without_dir_sync(mut self) -> Options {
        self.sync_dir = false;
        self
    }

    /// Runs `hook` once the temp file is durable, just before the rename (a failpoint).
    pub const fn before_rename(mut self, hook: fn()) -> Options {
        self.before_rename = hook;
        self
    }

    /// Runs `hook` just after the rename, before the directory is synced (a failpoint).
    pub const fn after_rename(mut self, hook: fn()) -> Options {
        self.after_rename = hook;
        self
    }
}

impl Default for Options {
    fn default() -> Options {
        Options::new()
    }
}

/// A file being written under a temp name, to replace `dest` on [`commit`](Self::commit).
/// Dropped uncommitted, it removes the temp file.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    /// Empty once renamed away (nothing left for `Drop` to remove).
    temp: PathBuf,
    dest: PathBuf,
    opts: Options,
}

impl AtomicFile {
    /// Creates a temp file in `dest`'s directory (which must exist).
    pub fn create(dest: &Path, opts: Options) -> Result<AtomicFile, AtomicError> {
        let dir = parent_of(dest);
        let mut builder = tempfile::Builder::new();
        builder.prefix(opts.prefix);
        if opts.mode == Mode::Umask {
            // Subject to the umask, as open(2)'s mode always is.
            builder.permissions(fs::Permissions::from_mode(0o666));
        }
        let (file, temp) = builder
            .tempfile_in(&dir)
            .map_err(AtomicError::at("creating a temporary file in", &dir))?
            .into_parts();
        let temp = temp
            .keep()
            .map_err(|e| AtomicError::at("creating a temporary file in", &dir)(e.error))?;
        Ok(AtomicFile::from_temp(file, temp, dest, opts))
    }

    /// Adopts a temp file the caller created (open for writing at `temp`, on `dest`'s
    /// filesystem): it is removed unless committed.
    pub fn from_temp(file: File, temp: PathBuf, dest: &Path, opts: Options) -> AtomicFile {
        AtomicFile {
            file,
            temp,
            dest: dest.to_path_buf(),
            opts,
        }
    }

    /// The open temp file, to write into.
    pub fn as_file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    /// The temp file's path (until committed).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The path this file will replace.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Sets the mode, fsyncs the temp file, renames it over the destination and (unless
    /// [`Options::without_dir_sync`]) fsyncs the destination's directory.
    pub fn commit(mut self) -> Result<(), AtomicError> {
        if let Mode::Exact(bits) = self.opts.mode {
            self.file
                .set_permissions(fs::Permissions::from_mode(bits))
                .map_err(AtomicError::at("setting permissions of", &self.temp))?;
        }
        self.file
            .sync_all()
            .map_err(AtomicError::at("syncing", &self.temp))?;
        (self.opts.before_rename)();
        fs::rename(&self.temp, &self.dest)
            .map_err(AtomicError::at("renaming a temporary file to", &self.dest))?;
        self.temp = PathBuf::new();
        (self.opts.after_rename)();
        if self.opts.sync_dir {
            sync_dir(&parent_of(&self.dest))?;
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.temp.as_os_str().is_empty() {
            // Best effort: the error that stopped the write is what the caller reports.
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Replaces `dest` with `bytes` atomically.
pub fn write(dest: &Path, bytes: &[u8], opts: Options) -> Result<(), AtomicError> {
    write_with(dest, opts, |f| {
        f.write_all(bytes)
            .map_err(|e| AtomicError::at("writing", dest)(e))
    })
}

/// Replaces `dest` atomically with what `fill` writes into the temp file (streaming); an error
/// from `fill` removes the temp file and leaves `dest` untouched.
pub fn write_with<T, E: From<AtomicError>>(
    dest: &Path,
    opts: Options,
    fill: impl FnOnce(&mut File) -> Result<T, E>,
) -> Result<T, E> {
    let mut file = AtomicFile::create(dest, opts)?;
    let value = fill(file.as_file_mut())?;
    file.commit()?;
    Ok(value)
}

/// fsyncs a directory so that a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<(), AtomicError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(AtomicError::at("syncing directory", dir))
}

/// The directory containing `path` (`.` for a bare file name).
pub fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("f.json");
        fs::write(&dest, b"old").unwrap();
        write(&dest, b"new", Options::new()).unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        assert_eq!(names(d.path()), ["f.json"]);
    }

    #[test]
    fn modes_are_private_exact_or_umask() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("private");
        write(&p, b"x", Options::new()).unwrap();
        assert_eq!(mode_of(&p), 0o600);
        let p = d.path().join("exact");
        write(&p, b"x", Options::new().mode(Mode::Exact(0o444))).unwrap();
        assert_eq!(mode_of(&p), 0o444);
        let p = d.path().join("umask");
        write(&p, b"x", Options::new().mode(Mode::Umask)).unwrap();
        let reference = d.path().join("reference");
        fs::write(&reference, b"x").unwrap();
        assert_eq!(mode_of(&p), mode_of(&reference));
    }

    #[test]
    fn the_old_content_stays_visible_until_the_rename() {
        static SEEN: AtomicUsize = AtomicUsize::new(0);
        thread_local! {
            static DEST: std::cell::RefCell<PathBuf> = const { std::cell::RefCell::new(PathBuf::new()) };
        }
        fn check_old() {
            DEST.with(|d| assert_eq!(fs::read(&*d.borrow()).unwrap(), b"old"));
            SEEN.fetch_add(1, Ordering::SeqCst);
        }
        fn check_new() {
            DEST.with(|d| assert_eq!(fs::read(&*d.borrow()).unwrap(), b"new"));
            SEEN.fetch_add(10, Ordering::SeqCst);
        }
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("f");
        fs::write(&dest, b"old").unwrap();
        DEST.with(|c| *c.borrow_mut() = dest.clone());
        let opts = Options::new()
            .before_rename(check_old)
            .after_rename(check_new);
        let mut f = AtomicFile::create(&dest, opts).unwrap();
        f.write_all(b"new").unwrap();
        assert!(f.temp_path().starts_with(d.path()));
        assert!(f
            .temp_path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(TEMP_PREFIX));
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        f.commit().unwrap();
        assert_eq!(SEEN.load(Ordering::SeqCst), 11);
    }

    #[test]
    fn a_failed_fill_removes_the_temp_and_keeps_the_old_file() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("f");
        fs::write(&dest, b"old").unwrap();
        let r: Result<(), AtomicError> = write_with(&dest, Options::new(), |f| {
            f.write_all(b"partial").unwrap();
            Err(AtomicError::at("filling", &dest)(io::Error::other("boom")))
        });
        assert_eq!(r.unwrap_err().op, "filling");
        assert_eq!(fs::read(&dest).unwrap(), b"old");
        assert_eq!(names(d.path()), ["f"]);
    }

    #[test]
    fn a_failed_rename_removes_the_temp_and_names_the_destination() {
        let d = tempfile::tempdir().unwrap();
        // A non-empty directory cannot be replaced by a file.
        let dest = d.path().join("dir");
        fs::create_dir(&dest).unwrap();
        fs::write(dest.join("x"), b"").unwrap();
        let e = write(&dest, b"x", Options::new()).unwrap_err();
        assert_eq!(e.op, "renaming a temporary file to");
        assert_eq!(e.path, dest);
        assert!(e.to_string().contains(&dest.display().to_string()));
        assert_eq!(names(d.path()), ["dir"]);
    }

    #[test]
    fn a_missing_directory_is_reported_by_name() {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("no/such/f");
        let e = write(&dest, b"x", Options::new()).unwrap_err();
        assert_eq!(e.op, "creating a temporary file in");
        assert_eq!(e.path, d.path().join("no/such"));
    }

    #[test]
    fn an_adopted_temp_is_renamed_or_removed() {
        let d = tempfile::tempdir().unwrap();
        let tmp_dir = d.path().join("tmp");
        fs::create_dir(&tmp_dir).unwrap();
        let dest = d.path().join("f");
        let temp = tmp_dir.join("mine.tmp");
        let mut f = AtomicFile::from_temp(
            File::create(&temp).unwrap(),
            temp.clone(),
            &dest,
            Options::new().mode(Mode::Exact(0o444)),
        );
        f.write_all(b"data").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"data");
        assert_eq!(mode_of(&dest), 0o444);
        assert!(!temp.exists());

        let f = AtomicFile::from_temp(
            File::create(&temp).unwrap(),
            temp.clone(),
            &dest,
            Options::new(),
        );
        drop(f);
        assert!(!temp.exists(), "an uncommitted temp is removed");
        assert_eq!(fs::read(&dest).unwrap(), b"data");
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent_of(Path::new("f")), Path::new("."));
        assert_eq!(parent_of(Path::new("a/f")), Path::new("a"));
        sync_dir(Path::new(".")).unwrap();
    }
}

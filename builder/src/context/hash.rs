//! Content digests of build-context entries, independent of where the context lives.
//!
//! File contents are read on rayon's worker threads, streaming in 256 KiB chunks, at most once
//! per [`Context`] (memoised), and not at all when the stat cache vouches for an unchanged file.
//! Digests never include mtimes, inode numbers or the context's absolute path, so the same tree
//! copied elsewhere (another directory, another machine) hashes the same.
//!
//! # Canonical record format, version 1
//!
//! Every entry digest is `sha256(b"rbuild-context-v1\0" || record)`; integers are big-endian,
//! digests are written as their 64 lower-case hex characters, strings as (u32 length, bytes):
//!
//! - common prefix: kind tag (`f` file, `d` directory, `l` symlink, `o` other) as one byte,
//!   `mode & 0o7777` (u32: permissions incl. setuid/setgid/sticky), uid (u32), gid (u32);
//! - file: size (u64), sha256 of the content;
//! - symlink: target (string);
//! - other (device, FIFO, socket): `rdev` (u64);
//! - directory: child count (u32), then per child in byte order of its name: name (string),
//!   child entry digest. The context root is hashed as a directory with mode, uid and gid 0:
//!   its own metadata is not content (it differs between checkouts).
//!
//! A selection (the sources of one COPY/ADD) is `sha256(b"rbuild-selection-v1\0" || count (u32)
//! || per source: relative path (string), entry digest)`.
//!
//! Bump the version strings whenever any of this changes, so old and new digests never collide.

use std::cell::RefCell;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::Ordering;

use rayon::prelude::*;
use rbuild_layers::{Digest, Sha256Hasher};

use super::gopath;
use super::scan::{Context, Entry, EntryKind};
use super::ContextError;

const ENTRY_VERSION: &[u8] = b"rbuild-context-v1\0";
const SELECTION_VERSION: &[u8] = b"rbuild-selection-v1\0";
const CHUNK: usize = 256 * 1024;

thread_local! {
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn put_str(h: &mut Sha256Hasher, s: &str) {
    // Context paths and symlink targets are far below 4 GiB.
    h.update(&(s.len() as u32).to_be_bytes());
    h.update(s.as_bytes());
}

fn put_header(h: &mut Sha256Hasher, tag: u8, mode: u32, uid: u32, gid: u32) {
    h.update(ENTRY_VERSION);
    h.update(&[tag]);
    h.update(&mode.to_be_bytes());
    h.update(&uid.to_be_bytes());
    h.update(&gid.to_be_bytes());
}

impl Context {
    /// The canonical digest of one entry (`"."` is the whole context): for a directory, of
    /// everything below it. File contents are hashed in parallel on first use.
    pub fn content_digest(&self, rel: &str) -> Result<Digest, ContextError> {
        let target = self.resolve(rel)?;
        self.hash_files(self.files_under(target))?;
        Ok(self.entry_digest(target))
    }

    /// The digest of a COPY/ADD selection (paths as returned by [`Context::select`]).
    pub fn selection_digest(&self, rels: &[&str]) -> Result<Digest, ContextError> {
        let targets = rels
            .iter()
            .map(|r| self.resolve(r))
            .collect::<Result<Vec<_>, _>>()?;
        let mut files: Vec<usize> = targets.iter().flat_map(|t| self.files_under(*t)).collect();
        files.sort_unstable();
        files.dedup();
        self.hash_files(files)?;
        let mut h = Sha256Hasher::new();
        h.update(SELECTION_VERSION);
        h.update(&(rels.len() as u32).to_be_bytes());
        for t in targets {
            let rel = t.map_or(".", |i| self.paths[i].as_str());
            put_str(&mut h, rel);
            h.update(self.entry_digest(t).hex().as_bytes());
        }
        Ok(h.finish())
    }

    /// The sha256 of each listed regular file's *contents* (no metadata), reading in
    /// parallel what neither this context nor the stat cache has hashed yet. COPY keys use
    /// these, with modes normalised by the engine, so they do not depend on who checked out.
    pub fn file_digests(&self, rels: &[&str]) -> Result<Vec<Digest>, ContextError> {
        let idx = rels
            .iter()
            .map(|r| match self.resolve(r)? {
                Some(i) if self.entries[i].kind == EntryKind::File => Ok(i),
                _ => Err(ContextError::NotInContext { rel: r.to_string() }),
            })
            .collect::<Result<Vec<usize>, _>>()?;
        self.hash_files(idx.clone())?;
        idx.iter()
            .map(|&i| {
                self.content[i]
                    .get()
                    .cloned()
                    .ok_or_else(|| ContextError::NotInContext {
                        rel: self.paths[i].clone(),
                    })
            })
            .collect()
    }

    /// `None` is the root.
    fn resolve(&self, rel: &str) -> Result<Option<usize>, ContextError> {
        let cleaned = gopath::clean(rel);
        if cleaned == "." {
            return Ok(None);
        }
        self.index(&cleaned)
            .map(Some)
            .ok_or_else(|| ContextError::NotInContext {
                rel: rel.to_string(),
            })
    }

    fn files_under(&self, target: Option<usize>) -> Vec<usize> {
        let (start, end) = match target {
            None => (0, self.paths.len()),
            Some(i) if self.entries[i].kind == EntryKind::File => return vec![i],
            Some(i) if self.entries[i].is_dir() => {
                let prefix = format!("{}/", self.paths[i]);
                let len = self.paths[i + 1..].partition_point(|p| p.starts_with(&prefix));
                (i + 1, i + 1 + len)
            }
            Some(_) => return Vec::new(),
        };
        (start..end)
            .filter(|&i| self.entries[i].kind == EntryKind::File)
            .collect()
    }

    /// Makes sure every listed file has its content digest, reading in parallel what the stat
    /// cache cannot vouch for, then persists the cache if it learned something.
    fn hash_files(&self, files: Vec<usize>) -> Result<(), ContextError> {
        let todo: Vec<usize> = files
            .into_iter()
            .filter(|&i| self.content[i].get().is_none())
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let mut guard = self
            .stat_cache
            .as_ref()
            // A panic elsewhere cannot leave the cache half-updated in a harmful way.
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let cache = guard.as_deref();
        let results = todo
            .par_iter()
            .map(|&i| {
                if let Some(d) = cache.and_then(|c| c.lookup(&self.paths[i], &self.entries[i])) {
                    self.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok((i, d, false));
                }
                Ok((i, self.read_and_hash(i)?, true))
            })
            .collect::<Result<Vec<_>, ContextError>>()?;
        for (i, digest, fresh) in results {
            if fresh {
                if let Some(c) = guard.as_deref_mut() {
                    c.record(&self.paths[i], &self.entries[i], &digest);
                }
            }
            let _ = self.content[i].set(digest); // set once; a concurrent equal value is fine
        }
        if let Some(c) = guard.as_deref_mut() {
            c.retain(|p| self.index(p).is_some());
            if c.is_dirty() {
                c.save(self.scan_started)?;
            }
        }
        Ok(())
    }

    /// Streams one file through sha256, checking it still is what the scan saw.
    fn read_and_hash(&self, i: usize) -> Result<Digest, ContextError> {
        let path = self.root.join(&self.paths[i]);
        let entry = &self.entries[i];
        let io = |op| {
            let path = path.clone();
            move |source| ContextError::Io { op, path, source }
        };
        // O_NOFOLLOW: a file swapped for a symlink after the scan must not be followed.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io("opening"))?;
        let md = file.metadata().map_err(io("fstat"))?;
        let changed = |actual: u64| ContextError::ChangedDuringScan {
            path: path.clone(),
            expected: entry.size,
            actual,
        };
        if md.ino() != entry.ino || md.size() != entry.size || !same_times(&md, entry) {
            return Err(changed(md.size()));
        }
        let mut hasher = Sha256Hasher::new();
        BUFFER.with(|buf| -> Result<(), ContextError> {
            let mut buf = buf.borrow_mut();
            buf.resize(CHUNK, 0);
            loop {
                let n = match file.read(&mut buf) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io("reading")(e)),
                };
                hasher.update(&buf[..n]);
            }
        })?;
        let read = hasher.len();
        if read != entry.size {
            return Err(changed(read));
        }
        self.files_read.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(read, Ordering::Relaxed);
        Ok(hasher.finish())
    }

    /// Memoised canonical digest; content digests must already be known.
    fn entry_digest(&self, target: Option<usize>) -> Digest {
        match target {
            None => self
                .root_digest
                .get_or_init(|| self.dir_digest(&self.root_children, 0, 0, 0))
                .clone(),
            Some(i) => {
                if let Some(d) = self.digests[i].get() {
                    return d.clone();
                }
                let d = self.compute_digest(i);
                self.digests[i].get_or_init(|| d).clone()
            }
        }
    }

    fn compute_digest(&self, i: usize) -> Digest {
        let e: &Entry = &self.entries[i];
        let mut h = Sha256Hasher::new();
        match &e.kind {
            EntryKind::File => {
                put_header(&mut h, b'f', e.mode, e.uid, e.gid);
                h.update(&e.size.to_be_bytes());
                let content = self.content[i]
                    .get()
                    .expect("hash_files ran for every file below the target");
                h.update(content.hex().as_bytes());
            }
            EntryKind::Symlink(target) => {
                put_header(&mut h, b'l', e.mode, e.uid, e.gid);
                put_str(&mut h, target);
            }
            EntryKind::Other => {
                put_header(&mut h, b'o', e.mode, e.uid, e.gid);
                h.update(&e.rdev.to_be_bytes());
            }
            EntryKind::Dir => return self.dir_digest(&self.children[i], e.mode, e.uid, e.gid),
        }
        h.finish()
    }

    fn dir_digest(&self, children: &[usize], mode: u32, uid: u32, gid: u32) -> Digest {
        let mut h = Sha256Hasher::new();
        put_header(&mut h, b'd', mode, uid, gid);
        h.update(&(children.len() as u32).to_be_bytes());
        // `children` is in sorted full-path order, which is name order within one directory.
        for &c in children {
            put_str(&mut h, self.name(c));
            h.update(self.entry_digest(Some(c)).hex().as_bytes());
        }
        h.finish()
    }
}

fn same_times(md: &std::fs::Metadata, e: &Entry) -> bool {
    md.mtime().saturating_mul(1_000_000_000) + md.mtime_nsec() == e.mtime_ns
        && md.ctime().saturating_mul(1_000_000_000) + md.ctime_nsec() == e.ctime_ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::IgnoreRules;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::{Duration, SystemTime};

    fn populate(root: &Path) {
        for (p, content) in [
            ("a.txt", "alpha"),
            ("dir/b.txt", "bravo"),
            ("dir/sub/c.bin", "charlie"),
            ("big", ""),
        ] {
            let p = root.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, content).unwrap();
        }
        // A multi-chunk file exercises the streaming loop.
        fs::write(root.join("big"), vec![7u8; CHUNK * 2 + 123]).unwrap();
        std::os::unix::fs::symlink("dir/b.txt", root.join("link")).unwrap();
    }

    fn ctx(root: &Path) -> Context {
        Context::scan(root, &IgnoreRules::empty(), None).unwrap()
    }

    #[test]
    fn same_tree_elsewhere_with_other_mtimes_hashes_the_same() {
        let one = tempfile::tempdir().unwrap();
        let two = tempfile::tempdir().unwrap();
        populate(one.path());
        populate(&two.path().join("nested/elsewhere"));
        let old =
            filetime::FileTime::from_system_time(SystemTime::now() - Duration::from_secs(86400));
        filetime::set_file_mtime(two.path().join("nested/elsewhere/a.txt"), old).unwrap();
        // The context roots' own modes differ (tempdir is 0700) and must not matter.
        let a = ctx(one.path());
        let b = ctx(&two.path().join("nested/elsewhere"));
        assert_eq!(
            a.content_digest(".").unwrap(),
            b.content_digest(".").unwrap()
        );
        assert_eq!(
            a.content_digest("dir").unwrap(),
            b.content_digest("dir").unwrap()
        );
        assert_eq!(a.files_read(), 4);
    }

    #[test]
    fn metadata_and_content_changes_change_the_digest() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let before = ctx(dir.path()).content_digest(".").unwrap();
        let file_before = ctx(dir.path()).content_digest("dir/b.txt").unwrap();

        fs::set_permissions(
            dir.path().join("dir/b.txt"),
            fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let c = ctx(dir.path());
        let after_mode = c.content_digest(".").unwrap();
        assert_ne!(before, after_mode, "mode is part of the record");
        assert_ne!(file_before, c.content_digest("dir/b.txt").unwrap());

        fs::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("dir/sub", dir.path().join("link")).unwrap();
        let after_link = ctx(dir.path()).content_digest(".").unwrap();
        assert_ne!(
            after_mode, after_link,
            "symlink target is part of the record"
        );

        fs::write(dir.path().join("dir/sub/c.bin"), "charliE").unwrap();
        let after_content = ctx(dir.path()).content_digest(".").unwrap();
        assert_ne!(after_link, after_content, "same size, different content");

        fs::rename(dir.path().join("a.txt"), dir.path().join("z.txt")).unwrap();
        assert_ne!(
            after_content,
            ctx(dir.path()).content_digest(".").unwrap(),
            "names count"
        );
    }

    #[test]
    fn owner_change_changes_the_digest() {
        // Needs root (the test VM runs as root); otherwise chown is refused and nothing is shown.
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let before = ctx(dir.path()).content_digest("a.txt").unwrap();
        match std::os::unix::fs::chown(dir.path().join("a.txt"), Some(4242), Some(4343)) {
            Ok(()) => {
                let c = ctx(dir.path());
                assert_eq!(c.get("a.txt").unwrap().uid, 4242);
                assert_ne!(before, c.content_digest("a.txt").unwrap());
            }
            Err(e) => eprintln!("skipping uid part: chown refused: {e}"),
        }
    }

    #[test]
    fn digest_is_memoised_and_selection_names_sources() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        fs::write(dir.path().join("a2.txt"), "alpha").unwrap();
        let c = ctx(dir.path());
        let d1 = c.content_digest(".").unwrap();
        let reads = c.files_read();
        assert_eq!(c.content_digest(".").unwrap(), d1);
        assert_eq!(c.files_read(), reads, "second call reads nothing");
        assert_eq!(
            c.content_digest("a.txt").unwrap(),
            c.content_digest("a2.txt").unwrap()
        );
        assert_ne!(
            c.selection_digest(&["a.txt"]).unwrap(),
            c.selection_digest(&["a2.txt"]).unwrap()
        );
        assert_eq!(
            c.selection_digest(&["dir", "a.txt"]).unwrap(),
            c.selection_digest(&["dir", "a.txt"]).unwrap()
        );
        assert!(matches!(
            c.content_digest("nope"),
            Err(ContextError::NotInContext { .. })
        ));
    }

    #[test]
    fn record_format_v1_is_stable() {
        // Golden value: changing the canonical record must bump the version string.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), "hello\n").unwrap();
        fs::set_permissions(dir.path().join("f"), fs::Permissions::from_mode(0o644)).unwrap();
        let c = ctx(dir.path());
        let e = c.get("f").unwrap().clone();
        let mut h = Sha256Hasher::new();
        h.update(b"rbuild-context-v1\0f");
        h.update(&0o644u32.to_be_bytes());
        h.update(&e.uid.to_be_bytes());
        h.update(&e.gid.to_be_bytes());
        h.update(&6u64.to_be_bytes());
        h.update(b"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
        assert_eq!(c.content_digest("f").unwrap(), h.finish());
    }

    #[test]
    fn file_changed_after_scan_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path());
        let c = ctx(dir.path());
        fs::write(dir.path().join("a.txt"), "alpha, longer now").unwrap();
        let err = c.content_digest("a.txt").unwrap_err();
        assert!(
            matches!(err, ContextError::ChangedDuringScan { .. }),
            "{err}"
        );
    }
}

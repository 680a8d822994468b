//! The persistent stat cache: skip re-reading files whose `lstat` data has not changed.
//!
//! One file per build context (`<dir>/<sha256 of the canonical context path>.bin` when given a
//! directory — the path only locates the cache; digests never depend on it). Each record maps a
//! relative path plus (size, inode, mtime ns, ctime ns) to the sha256 of the file's content.
//!
//! Racy-git rule: a file modified in the same second it was hashed, on a filesystem with
//! coarse timestamps, keeps the same stat data although its content changed. The cache therefore
//! stores the wall-clock second at which the hashing session started (`written_at`, taken
//! before any file was read) and trusts a record only if both its mtime and ctime seconds are
//! strictly older than that. Records that are not yet trustworthy are dropped on load (so a
//! later session can never promote them with a newer `written_at`); the file is re-hashed and
//! recorded again, and becomes trusted one session later, exactly like git's racily-clean
//! index entries.
//!
//! Format v1 (little-endian): magic `RBSTATC1`, `written_at` seconds (i64), record count (u64),
//! records of (path length u32, path bytes, size u64, ino u64, mtime_ns i64, ctime_ns i64,
//! sha256 32 bytes), then a sha256 of everything before it. A missing, truncated, corrupt or
//! differently-versioned file is treated as empty. Writes go to a temp file that is fsynced and
//! renamed over the old one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rbuild_layers::{atomic, Digest, Sha256Hasher};

use super::scan::Entry;
use super::ContextError;

const MAGIC: &[u8; 8] = b"RBSTATC1";

#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    size: u64,
    ino: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    sha: [u8; 32],
}

/// An opened stat cache.
#[derive(Debug)]
pub struct StatCache {
    path: PathBuf,
    records: HashMap<String, Record>,
    /// New or changed records since loading.
    dirty: bool,
}

fn seconds(ns: i64) -> i64 {
    ns.div_euclid(1_000_000_000)
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

impl StatCache {
    /// Where the cache for `context_root` lives given the user's `location`.
    pub fn file_for(location: &Path, context_root: &Path) -> PathBuf {
        if location.is_dir() {
            let key = Digest::sha256_of(context_root.as_os_str().as_encoded_bytes());
            location.join(format!("{}.bin", key.hex()))
        } else {
            location.to_path_buf()
        }
    }

    /// Opens (loads) the cache; unreadable or corrupt caches start empty.
    pub fn open(location: &Path, context_root: &Path) -> StatCache {
        let path = Self::file_for(location, context_root);
        let records = std::fs::read(&path)
            .ok()
            .and_then(|bytes| parse(&bytes))
            .unwrap_or_default();
        StatCache {
            path,
            records,
            dirty: false,
        }
    }

    /// The cache file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached content digest of `rel`, if its stat data is unchanged.
    pub fn lookup(&self, rel: &str, entry: &Entry) -> Option<[u8; 32]> {
        let r = self.records.get(rel)?;
        let same = r.size == entry.size
            && r.ino == entry.ino
            && r.mtime_ns == entry.mtime_ns
            && r.ctime_ns == entry.ctime_ns;
        same.then_some(r.sha)
    }

    /// Records a freshly computed content sha256.
    pub fn record(&mut self, rel: &str, entry: &Entry, sha: &[u8; 32]) {
        let sha = *sha;
        let record = Record {
            size: entry.size,
            ino: entry.ino,
            mtime_ns: entry.mtime_ns,
            ctime_ns: entry.ctime_ns,
            sha,
        };
        if self.records.get(rel) != Some(&record) {
            self.records.insert(rel.to_string(), record);
            self.dirty = true;
        }
    }

    /// Drops records for paths that `keep` rejects (files gone from the context).
    pub fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let before = self.records.len();
        self.records.retain(|k, _| keep(k));
        self.dirty |= self.records.len() != before;
    }

    /// True if records changed since loading or the last save.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// Writes the cache atomically. `session_started` must precede every content read whose
    /// result was recorded in this session.
    pub fn save(&mut self, session_started: SystemTime) -> Result<(), ContextError> {
        let written_at = unix_seconds(session_started);
        let mut buf = Vec::with_capacity(24 + self.records.len() * 80);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&written_at.to_le_bytes());
        buf.extend_from_slice(&(self.records.len() as u64).to_le_bytes());
        // Racy records are written too; `parse` drops them, so they are re-hashed next time.
        let mut kept = 0u64;
        for (rel, r) in &self.records {
            let Ok(len) = u32::try_from(rel.len()) else {
                continue;
            };
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(rel.as_bytes());
            buf.extend_from_slice(&r.size.to_le_bytes());
            buf.extend_from_slice(&r.ino.to_le_bytes());
            buf.extend_from_slice(&r.mtime_ns.to_le_bytes());
            buf.extend_from_slice(&r.ctime_ns.to_le_bytes());
            buf.extend_from_slice(&r.sha);
            kept += 1;
        }
        buf[16..24].copy_from_slice(&kept.to_le_bytes());
        let mut h = Sha256Hasher::new();
        h.update(&buf);
        let mut trailer = [0u8; 32];
        hex::decode_to_slice(h.finish().hex(), &mut trailer)
            .expect("a sha256 digest has 64 hex characters");
        buf.extend_from_slice(&trailer);
        write_atomically(&self.path, &buf).map_err(|source| ContextError::WriteStatCache {
            path: self.path.clone(),
            source,
        })?;
        self.dirty = false;
        Ok(())
    }
}

/// How the cache file is replaced: mode as `fs::write` would create it; the directory is not
/// fsynced (a cache lost in a crash only costs re-hashing the context once).
const WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Umask)
    .without_dir_sync();

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), atomic::AtomicError> {
    let dir = atomic::parent_of(path);
    std::fs::create_dir_all(&dir).map_err(|source| atomic::AtomicError {
        op: "creating directory",
        path: dir.clone(),
        source,
    })?;
    atomic::write(path, bytes, WRITE)
}

/// Parses a cache file, keeping only records that are trustworthy under the racy-git rule.
fn parse(bytes: &[u8]) -> Option<HashMap<String, Record>> {
    let body_len = bytes.len().checked_sub(32)?;
    let (body, trailer) = bytes.split_at(body_len);
    let mut h = Sha256Hasher::new();
    h.update(body);
    if h.finish().hex() != hex::encode(trailer) {
        return None;
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC {
        return None;
    }
    let written_at = r.i64()?;
    let count = r.u64()?;
    let mut records = HashMap::with_capacity(usize::try_from(count).ok()?.min(1 << 20));
    for _ in 0..count {
        let len = usize::try_from(u32::from_le_bytes(r.take(4)?.try_into().ok()?)).ok()?;
        let rel = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let record = Record {
            size: r.u64()?,
            ino: r.u64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
            sha: r.take(32)?.try_into().ok()?,
        };
        if seconds(record.mtime_ns) < written_at && seconds(record.ctime_ns) < written_at {
            records.insert(rel, record);
        }
    }
    Some(records)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, EntryKind, IgnoreRules};
    use std::time::Duration;

    fn entry(mtime_ns: i64, ctime_ns: i64) -> Entry {
        Entry {
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 5,
            dev: 1,
            ino: 42,
            rdev: 0,
            mtime_ns,
            ctime_ns,
        }
    }

    /// Sleeps until the wall clock enters a new second, so what follows shares one second.
    fn wait_next_second() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        std::thread::sleep(Duration::from_nanos(
            1_000_000_000 - u64::from(now.subsec_nanos()) + 1_000_000,
        ));
    }

    #[test]
    fn racy_git_rule_distrusts_same_second_records() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.bin");
        let session = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = 1_000_000i64 * 1_000_000_000;
        let d = [7u8; 32];
        let mut c = StatCache::open(&file, dir.path());
        c.record("old", &entry(s - 1_000_000_001, s - 1_000_000_000), &d);
        c.record("racy-mtime", &entry(s + 500, s - 2_000_000_000), &d);
        c.record("racy-ctime", &entry(s - 2_000_000_000, s + 999_999_999), &d);
        c.record("late-in-previous-second-ok", &entry(s - 1, s - 1), &d);
        c.save(session).unwrap();
        let c = StatCache::open(&file, dir.path());
        assert_eq!(
            c.lookup("old", &entry(s - 1_000_000_001, s - 1_000_000_000)),
            Some(d)
        );
        assert_eq!(
            c.lookup("late-in-previous-second-ok", &entry(s - 1, s - 1)),
            Some(d)
        );
        assert_eq!(
            c.lookup("racy-mtime", &entry(s + 500, s - 2_000_000_000)),
            None
        );
        assert_eq!(
            c.lookup("racy-ctime", &entry(s - 2_000_000_000, s + 999_999_999)),
            None
        );
        // Any change of the key is a miss.
        assert_eq!(
            c.lookup("old", &entry(s - 1_000_000_000, s - 1_000_000_000)),
            None
        );
    }

    #[test]
    fn corrupt_cache_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cache.bin");
        let mut c = StatCache::open(&file, dir.path());
        c.record("a", &entry(0, 0), &[7u8; 32]);
        c.save(UNIX_EPOCH + Duration::from_secs(10)).unwrap();
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        assert_eq!(
            StatCache::open(&file, dir.path()).lookup("a", &entry(0, 0)),
            None
        );
    }

    fn scan(root: &Path, store: &Path) -> Context {
        Context::scan(root, &IgnoreRules::empty(), Some(store)).unwrap()
    }

    #[test]
    fn warm_run_reads_no_file_and_racy_files_are_rehashed() {
        let ctx_dir = tempfile::tempdir().unwrap();
        let store = tempfile::tempdir().unwrap();
        for i in 0..20 {
            std::fs::write(ctx_dir.path().join(format!("f{i}")), format!("content {i}")).unwrap();
        }
        wait_next_second();
        // Written in the same second as the session below: racy.
        std::fs::write(ctx_dir.path().join("racy"), "AAAA").unwrap();

        let cold = scan(ctx_dir.path(), store.path());
        let digest = cold.content_digest(".").unwrap();
        assert_eq!(cold.files_read(), 21);

        // Same second, same size, new content; mtime put back as a coarse-timestamp
        // filesystem would leave it.
        let racy = ctx_dir.path().join("racy");
        let mtime =
            filetime::FileTime::from_last_modification_time(&std::fs::metadata(&racy).unwrap());
        std::fs::write(&racy, "BBBB").unwrap();
        filetime::set_file_mtime(&racy, mtime).unwrap();
        let again = scan(ctx_dir.path(), store.path());
        let changed = again.content_digest(".").unwrap();
        assert_ne!(
            digest, changed,
            "the racy file must be re-read, not served from the cache"
        );
        assert_eq!(again.files_read(), 1);
        assert_eq!(again.stats().cache_hits, 20);

        wait_next_second();
        // The re-hashed record was still racy when stored (same second): checked once more.
        let settle = scan(ctx_dir.path(), store.path());
        assert_eq!(settle.content_digest(".").unwrap(), changed);
        assert_eq!(settle.files_read(), 1);

        let warm = scan(ctx_dir.path(), store.path());
        assert_eq!(warm.content_digest(".").unwrap(), changed);
        assert_eq!(warm.files_read(), 0, "a warm run reads no file content");
        assert_eq!(warm.stats().cache_hits, 21);
        assert_eq!(
            std::fs::read_dir(store.path()).unwrap().count(),
            1,
            "one cache file, no temp left"
        );
    }
}

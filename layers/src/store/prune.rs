//! Garbage collection (`rbuild prune`), disk usage (`rbuild du`) and `fsck`.
//!
//! Reachability: the roots are every descriptor in `index.json` and the `"blobs"` of every cache
//! record; from each kept blob that is small JSON we follow every `"digest"` inside it (an index
//! names manifests, a manifest names its config and layers). Snapshots are kept by the
//! `"snapshots"` of cache records. Everything else is garbage, removed least recently used first
//! (mtime is the last-use time, see the module doc of `store`). `RUN --mount=type=cache`
//! directories (this id mapping's set, as for snapshots) are counted by `du` and removed only
//! by `prune --all`, after the cache records, least recently changed first: they are what a
//! later build's package manager starts from, as BuildKit's `exec.cachemount` records are.
//!
//! Prune needs the store to itself: it upgrades its shared `locks/gc.lock` to exclusive and fails
//! with [`StoreError::InUse`] while another process has the store open, so it can never delete a
//! blob that a concurrent build has just written but not yet recorded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::records::{keeps_of, Keeps};
use super::temps::{self, ReclaimMode, Reclaimed};
use super::{fsutil, Store, StoreError};
use crate::Digest;

/// Largest blob that is parsed for child descriptors (manifests and indexes are far smaller).
const MAX_FOLLOW_SIZE: u64 = 4 << 20;

/// What `rbuild prune` removes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Stop once the store holds at most this many bytes (`--keep-storage`).
    pub keep_storage: Option<u64>,
    /// Also remove cache records (`--all`); tags are never removed.
    pub all: bool,
}

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub removed_blobs: Vec<Digest>,
    pub removed_snapshots: Vec<String>,
    pub removed_records: usize,
    pub removed_cache_mounts: usize,
    /// Temporary files and scratch directories of processes that are gone.
    pub removed_temp_files: usize,
    pub bytes_freed: u64,
}

/// What the store holds (`rbuild du`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    pub blobs: u64,
    pub blob_bytes: u64,
    /// Bytes of blobs kept by a tag or cache record.
    pub referenced_blob_bytes: u64,
    pub records: u64,
    pub record_bytes: u64,
    pub snapshots: u64,
    pub snapshot_bytes: u64,
    /// `RUN --mount=type=cache` directories.
    pub cache_mounts: u64,
    pub cache_mount_bytes: u64,
    pub temp_bytes: u64,
}

impl DiskUsage {
    pub fn total_bytes(&self) -> u64 {
        self.blob_bytes
            + self.record_bytes
            + self.snapshot_bytes
            + self.cache_mount_bytes
            + self.temp_bytes
    }
}

impl fmt::Display for DiskUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<22}{:>8}{:>16}", "TYPE", "COUNT", "SIZE")?;
        writeln!(
            f,
            "{:<22}{:>8}{:>16}",
            "blobs",
            self.blobs,
            human(self.blob_bytes)
        )?;
        writeln!(
            f,
            "{:<22}{:>8}{:>16}",
            "  reclaimable",
            "",
            human(self.blob_bytes - self.referenced_blob_bytes.min(self.blob_bytes))
        )?;
        writeln!(
            f,
            "{:<22}{:>8}{:>16}",
            "cache records",
            self.records,
            human(self.record_bytes)
        )?;
        writeln!(
            f,
            "{:<22}{:>8}{:>16}",
            "snapshots",
            self.snapshots,
            human(self.snapshot_bytes)
        )?;
        writeln!(
            f,
            "{:<22}{:>8}{:>16}",
            "cache mounts",
            self.cache_mounts,
            human(self.cache_mount_bytes)
        )?;
        writeln!(
            f,
            "{:<22}{:>8}{:>16}",
            "temp files",
            "",
            human(self.temp_bytes)
        )?;
        write!(
            f,
            "{:<22}{:>8}{:>16}",
            "total",
            "",
            human(self.total_bytes())
        )
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// What [`Store::fsck`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub checked: usize,
    /// Temporary data of processes that are gone (killed builds), removed by opening the store
    /// and by the fsck itself.
    pub stale_temps: Reclaimed,
    /// Blobs whose bytes did not match their name; they have been removed.
    pub corrupt: Vec<Digest>,
    /// Files in `blobs/sha256/` whose name is not a digest (left in place, reported).
    pub stray: Vec<PathBuf>,
}

struct BlobInfo {
    digest: Digest,
    size: u64,
    used: SystemTime,
}

struct RecordInfo {
    path: PathBuf,
    size: u64,
    used: SystemTime,
    keeps: Keeps,
}

struct CacheMountInfo {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

struct SnapshotInfo {
    name: String,
    size: u64,
    used: SystemTime,
}

fn mtime(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>, StoreError> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .collect::<io::Result<Vec<_>>>()
            .map_err(StoreError::io("listing", dir)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StoreError::io("listing", dir)(e)),
    }
}

/// Total size of the regular files under `path` (symlinks not followed).
fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Collects every `"digest"` string inside a JSON value.
fn collect_digests(v: &serde_json::Value, out: &mut Vec<Digest>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                if k == "digest" {
                    if let Some(d) = v.as_str().and_then(|s| s.parse().ok()) {
                        out.push(d);
                    }
                }
                collect_digests(v, out);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_digests(v, out)),
        _ => {}
    }
}

impl Store {
    fn list_blobs(&self) -> Result<(Vec<BlobInfo>, Vec<PathBuf>), StoreError> {
        let mut blobs = Vec::new();
        let mut stray = Vec::new();
        for e in read_dir_or_empty(&self.root.join("blobs/sha256"))? {
            let name = e.file_name();
            let digest = name
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok());
            let Ok(meta) = e.metadata() else { continue };
            match digest {
                Some(digest) if meta.is_file() => blobs.push(BlobInfo {
                    digest,
                    size: meta.len(),
                    used: mtime(&meta),
                }),
                _ => stray.push(e.path()),
            }
        }
        Ok((blobs, stray))
    }

    fn list_records(&self) -> Result<Vec<RecordInfo>, StoreError> {
        let mut out = Vec::new();
        for kind in read_dir_or_empty(&self.root.join("cache"))? {
            for e in read_dir_or_empty(&kind.path())? {
                let path = e.path();
                let Ok(meta) = e.metadata() else { continue };
                if !meta.is_file() || path.extension().is_none_or(|x| x != "json") {
                    continue;
                }
                let bytes = fs::read(&path).map_err(StoreError::io("reading", &path))?;
                out.push(RecordInfo {
                    keeps: keeps_of(&bytes),
                    size: meta.len(),
                    used: mtime(&meta),
                    path,
                });
            }
        }
        Ok(out)
    }

    fn list_snapshots(&self) -> Result<Vec<SnapshotInfo>, StoreError> {
        let mut out = Vec::new();
        for e in read_dir_or_empty(&self.snapshots_dir())? {
            let Ok(meta) = e.metadata() else { continue };
            let name = e.file_name().to_string_lossy().into_owned();
            // Snapshots of an earlier format hold real device nodes and are never used again:
            // least recently used of all, so they go first.
            // So are snapshots of another boot, which are never used again either (see
            // `snapshot`'s module doc).
            let used = if crate::snapshot::is_legacy_snapshot_name(&name)
                || (name.starts_with(crate::snapshot::SNAPSHOT_PREFIX)
                    && !crate::snapshot::is_usable(&e.path()))
            {
                SystemTime::UNIX_EPOCH
            } else {
                mtime(&meta)
            };
            out.push(SnapshotInfo {
                size: tree_size(&e.path()),
                name,
                used,
            });
        }
        Ok(out)
    }

    /// The `RUN --mount=type=cache` directories of this process's id mapping
    /// (`Store::cache_mounts_dir`), as with snapshots: another mapping's hold files of ids this
    /// process cannot remove; its own store commands manage them.
    fn list_cache_mounts(&self) -> Result<Vec<CacheMountInfo>, StoreError> {
        let mut out = Vec::new();
        for e in read_dir_or_empty(&self.cache_mounts_dir())? {
            let Ok(meta) = e.metadata() else { continue };
            if !meta.is_dir() {
                continue;
            }
            out.push(CacheMountInfo {
                size: tree_size(&e.path()),
                used: mtime(&meta),
                path: e.path(),
            });
        }
        Ok(out)
    }

    /// The blobs reachable from the index and from `records`.
    fn reachable(&self, records: &[RecordInfo]) -> Result<BTreeSet<Digest>, StoreError> {
        let mut queue: VecDeque<Digest> = self
            .index_descriptors()?
            .into_iter()
            .map(|d| d.digest)
            .collect();
        queue.extend(records.iter().flat_map(|r| r.keeps.blobs.iter().cloned()));
        let mut seen = BTreeSet::new();
        while let Some(d) = queue.pop_front() {
            if !seen.insert(d.clone()) {
                continue;
            }
            let path = self.blob_path(&d);
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            if meta.len() > MAX_FOLLOW_SIZE {
                continue;
            }
            // Read without the verifying reader: a corrupt blob keeps what it names, and
            // fsck/readers deal with the corruption itself.
            let mut bytes = Vec::new();
            if fs::File::open(&path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .is_err()
                || bytes.first() != Some(&b'{')
            {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                let mut children = Vec::new();
                collect_digests(&v, &mut children);
                queue.extend(children);
            }
        }
        Ok(seen)
    }

    /// What the store holds.
    pub fn disk_usage(&self) -> Result<DiskUsage, StoreError> {
        let (blobs, _) = self.list_blobs()?;
        let records = self.list_records()?;
        let snapshots = self.list_snapshots()?;
        let cache_mounts = self.list_cache_mounts()?;
        let reachable = self.reachable(&records)?;
        Ok(DiskUsage {
            blobs: blobs.len() as u64,
            blob_bytes: blobs.iter().map(|b| b.size).sum(),
            referenced_blob_bytes: blobs
                .iter()
                .filter(|b| reachable.contains(&b.digest))
                .map(|b| b.size)
                .sum(),
            records: records.len() as u64,
            record_bytes: records.iter().map(|r| r.size).sum(),
            snapshots: snapshots.len() as u64,
            snapshot_bytes: snapshots.iter().map(|s| s.size).sum(),
            cache_mounts: cache_mounts.len() as u64,
            cache_mount_bytes: cache_mounts.iter().map(|c| c.size).sum(),
            temp_bytes: tree_size(&self.tmp_dir()),
        })
    }

    /// Removes what no tag or cache record keeps, least recently used first; see
    /// [`PruneOptions`]. Fails with [`StoreError::InUse`] while another process has the store open.
    pub fn prune(&self, opts: PruneOptions) -> Result<PruneReport, StoreError> {
        let gc_path = self.root.join("locks/gc.lock");
        let guard = self.gc_lock.lock().unwrap_or_else(|p| p.into_inner());
        let lock = guard
            .as_ref()
            .expect("the gc lock lives as long as the store");
        match fsutil::flock(lock, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => {}
            Err(e) if fsutil::would_block(&e) => {
                return Err(StoreError::InUse {
                    path: self.root.clone(),
                })
            }
            Err(e) => return Err(StoreError::io("locking", gc_path)(e)),
        }
        let result = self.prune_locked(opts);
        fsutil::flock(lock, libc::LOCK_SH).map_err(StoreError::io("locking", &gc_path))?;
        result
    }

    fn prune_locked(&self, opts: PruneOptions) -> Result<PruneReport, StoreError> {
        let mut temps = self.reclaimed_at_open.clone();
        temps.add(
            temps::reclaim(&self.tmp_dir(), ReclaimMode::Prune).map_err(StoreError::io(
                "removing stale temporary data in",
                self.tmp_dir(),
            ))?,
        );
        let mut report = PruneReport {
            removed_temp_files: temps.entries.len(),
            bytes_freed: temps.bytes,
            ..PruneReport::default()
        };
        let (blobs, _) = self.list_blobs()?;
        let mut records = self.list_records()?;
        let snapshots = self.list_snapshots()?;
        let mut cache_mounts = self.list_cache_mounts()?;
        let mut total: u64 = blobs.iter().map(|b| b.size).sum::<u64>()
            + records.iter().map(|r| r.size).sum::<u64>()
            + snapshots.iter().map(|s| s.size).sum::<u64>()
            + cache_mounts.iter().map(|c| c.size).sum::<u64>();
        let limit = opts.keep_storage.unwrap_or(0);
        let over = |total: u64| opts.keep_storage.is_none() || total > limit;

        // Blobs and snapshots still present, by name.
        let mut live_blobs: BTreeMap<Digest, BlobInfo> =
            blobs.into_iter().map(|b| (b.digest.clone(), b)).collect();
        let mut live_snaps: BTreeMap<String, SnapshotInfo> =
            snapshots.into_iter().map(|s| (s.name.clone(), s)).collect();
        // Records oldest first, so `--all` drops the least recently used ones first.
        records.sort_by(|a, b| a.used.cmp(&b.used).then_with(|| a.path.cmp(&b.path)));

        loop {
            // Remove unreferenced items, LRU first.
            let reachable = self.reachable(&records)?;
            let kept_snaps: BTreeSet<&str> = records
                .iter()
                .flat_map(|r| r.keeps.snapshots.iter().map(String::as_str))
                .collect();
            enum Item {
                Blob(Digest),
                Snap(String),
            }
            let mut garbage: Vec<(SystemTime, u64, Item)> = live_blobs
                .values()
                .filter(|b| !reachable.contains(&b.digest))
                .map(|b| (b.used, b.size, Item::Blob(b.digest.clone())))
                .collect();
            garbage.extend(
                live_snaps
                    .values()
                    .filter(|s| !kept_snaps.contains(s.name.as_str()))
                    .map(|s| (s.used, s.size, Item::Snap(s.name.clone()))),
            );
            garbage.sort_by_key(|(used, _, _)| *used);
            for (_, size, item) in garbage {
                if !over(total) {
                    return Ok(report);
                }
                match item {
                    Item::Blob(d) => {
                        let p = self.blob_path(&d);
                        remove_if_present(&p, |p| fs::remove_file(p))?;
                        live_blobs.remove(&d);
                        report.removed_blobs.push(d);
                    }
                    Item::Snap(name) => {
                        let p = self.snapshots_dir().join(&name);
                        remove_if_present(&p, |p| fs::remove_dir_all(p))?;
                        live_snaps.remove(&name);
                        report.removed_snapshots.push(name);
                    }
                }
                total = total.saturating_sub(size);
                report.bytes_freed += size;
            }
            if opts.all && records.is_empty() {
                // Last, the cache mounts, least recently changed first.
                cache_mounts.sort_by_key(|c| c.used);
                for c in cache_mounts.drain(..) {
                    if !over(total) {
                        break;
                    }
                    remove_if_present(&c.path, |p| fs::remove_dir_all(p))?;
                    total = total.saturating_sub(c.size);
                    report.bytes_freed += c.size;
                    report.removed_cache_mounts += 1;
                }
            }
            if !opts.all || records.is_empty() || !over(total) {
                return Ok(report);
            }
            // Drop the least recently used record (all of them without a size limit), then
            // collect what it alone kept.
            let take = if opts.keep_storage.is_none() {
                records.len()
            } else {
                1
            };
            for r in records.drain(..take) {
                remove_if_present(&r.path, |p| fs::remove_file(p))?;
                total = total.saturating_sub(r.size);
                report.bytes_freed += r.size;
                report.removed_records += 1;
            }
        }
    }

    /// Verifies every blob; corrupt ones are removed and reported.
    pub fn fsck(&self) -> Result<FsckReport, StoreError> {
        let (blobs, stray) = self.list_blobs()?;
        let mut stale_temps = self.reclaimed_at_open.clone();
        stale_temps.add(temps::reclaim(&self.tmp_dir(), ReclaimMode::Open).map_err(
            StoreError::io("removing stale temporary data in", self.tmp_dir()),
        )?);
        let mut report = FsckReport {
            stray,
            stale_temps,
            ..FsckReport::default()
        };
        for b in blobs {
            report.checked += 1;
            match self.verify_blob(&b.digest) {
                Ok(()) | Err(StoreError::BlobNotFound { .. }) => {}
                Err(StoreError::CorruptBlob { digest, .. }) => report.corrupt.push(digest),
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

fn remove_if_present(
    path: &Path,
    rm: impl FnOnce(&Path) -> io::Result<()>,
) -> Result<(), StoreError> {
    match rm(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io("removing", path)(e)),
    }
}

//! Unpacked layer snapshots, cached by chain ID, for reuse as overlayfs lower directories.
//!
//! Each snapshot `<dir>/v2-<chainid-hex>/` holds `tree/`, created by a caller-supplied function
//! (normally [`crate::apply_layer`] with [`crate::WhiteoutMode::Overlay`], so the tree holds
//! exactly one layer's diff with overlay-format whiteouts — what overlayfs expects of each
//! `lowerdir`), and `placeholders`, the device placeholders the function reports writing (one
//! [`Placeholder::to_line`] per line), which a RUN on top turns into real nodes inside its
//! sandbox (see [`crate::device`]). Both are committed together by one rename.
//!
//! Format versions: `v3-` snapshots keep devices as placeholders and name the boot they were
//! written in (below). Snapshots of earlier rbuild versions (`v2-…`, which were synced, and
//! `<chainid-hex>` with no prefix, which hold real device nodes) are never used again (each
//! chain is unpacked anew) and `prune` removes them before anything else.
//!
//! Creation happens in `<dir>/tmp-<pid>-<start>-…`, named after its owner and locked (see
//! `store::temps`, which reclaims it if the owner is killed), and the directory is renamed into
//! place with `RENAME_NOREPLACE`, so a snapshot is either absent or complete. When two creators
//! race, the loser removes its temporary directory and returns the winner's.
//!
//! **Durability without a sync.** A snapshot can always be made again from its layer, so it is
//! not synced to disk (a `syncfs` per snapshot waited for every dirty page of the filesystem —
//! other builds' and other tools' too — and made a base's unpack as slow as the busiest
//! neighbour). Instead each snapshot records the kernel's boot ID (`boot`, from
//! `/proc/sys/kernel/random/boot_id`) and is used only in that boot: a process killed mid-way
//! loses nothing the page cache holds, and after a crash or reboot — when an unsynced tree may
//! be torn — every older snapshot is stale, moved aside and unpacked again on first use. Where no
//! boot ID can be read, the snapshot is synced as before and its `boot` says `synced`.
//!
//! Chain IDs follow the OCI image spec (`config.md`, "Layer ChainID"):
//! `ChainID(L0) = DiffID(L0)` and `ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1) + " " + DiffID(Ln))`.
//! A chain ID names the whole stack below it, so a cached lower directory is only reused on top of
//! the same parents.

use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, Mode, OFlags, RenameFlags, CWD};
use rustix::io::Errno;

use crate::device::{Placeholder, MAX_REPORTED_PLACEHOLDERS};
use crate::Digest;

/// Prefix of the snapshot directory names of the current format (see the module doc).
pub const SNAPSHOT_PREFIX: &str = "v3-";

/// Prefixes of earlier formats that are recognised (and pruned first), never used.
const LEGACY_PREFIXES: &[&str] = &["v2-"];

/// The boot-ID file inside a snapshot.
const BOOT: &str = "boot";

/// What `boot` holds for a snapshot that was synced to disk (valid in any boot).
const SYNCED: &str = "synced";

/// The lower directory inside a snapshot.
const TREE: &str = "tree";

/// The placeholder list inside a snapshot.
const PLACEHOLDERS: &str = "placeholders";

/// Largest placeholder list read back (every reported placeholder at the longest path).
const MAX_PLACEHOLDERS_FILE: u64 =
    (MAX_REPORTED_PLACEHOLDERS * (2 * crate::apply::PATH_MAX + 64)) as u64;

/// Whether a name in the snapshot directory is a snapshot of an earlier format (a bare
/// sha256 hex, holding real device nodes, or `v2-`, synced and without a boot ID).
pub fn is_legacy_snapshot_name(name: &str) -> bool {
    let bare = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
    bare(name)
        || LEGACY_PREFIXES
            .iter()
            .any(|p| name.strip_prefix(p).is_some_and(bare))
}

/// The running kernel's boot ID, read once; `None` where `/proc` does not have it.
fn current_boot_id() -> Option<String> {
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
            let id = id.trim();
            (!id.is_empty() && id != SYNCED).then(|| id.to_string())
        })
        .clone()
}

/// Whether the snapshot directory `entry` may be used in a boot with ID `boot`: it was synced,
/// or written in this boot. A missing, unreadable, empty or torn `boot` file is stale.
fn usable_in(entry: &Path, boot: Option<&str>) -> bool {
    use std::io::Read;
    let mut text = String::new();
    let read =
        std::fs::File::open(entry.join(BOOT)).and_then(|f| f.take(128).read_to_string(&mut text));
    if read.is_err() {
        return false;
    }
    let text = text.trim();
    text == SYNCED || boot.is_some_and(|b| b == text)
}

/// Whether the snapshot directory `entry` (of the current format) can be used in this boot;
/// `prune` treats the others as least recently used.
pub fn is_usable(entry: &Path) -> bool {
    usable_in(entry, current_boot_id().as_deref())
}

/// The chain ID of a layer with DiffID `diff_id` on top of the chain `parent` (OCI image spec).
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

/// The chain IDs of every prefix of a layer stack given bottom-first by DiffID.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = chain_id(out.last(), d);
        out.push(next);
    }
    out
}

/// Why a snapshot could not be provided.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("creating the snapshot cache directory {path:?}")]
    CreateCacheDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating a temporary snapshot directory in {path:?}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unpacking snapshot {}", chain_id.as_ref().map_or("of a layer being written".to_string(), |c| c.to_string()))]
    Create {
        chain_id: Option<Digest>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("writing the placeholder list of snapshot {chain_id} in {path:?}")]
    WritePlaceholders {
        chain_id: Digest,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the placeholder list of snapshot {path:?}")]
    ReadPlaceholders {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("committing snapshot {chain_id} to {path:?} ({op})")]
    Commit {
        chain_id: Digest,
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A directory of unpacked snapshots keyed by chain ID.
#[derive(Debug, Clone)]
pub struct SnapshotCache {
    dir: PathBuf,
    /// This boot's ID (`None`: snapshots are synced instead, see the module doc).
    boot: Option<String>,
}

impl SnapshotCache {
    /// Opens (creating if needed) the cache rooted at `dir`.
    pub fn new(dir: &Path) -> Result<SnapshotCache, SnapshotError> {
        std::fs::create_dir_all(dir).map_err(|source| SnapshotError::CreateCacheDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(SnapshotCache {
            dir: dir.to_path_buf(),
            boot: current_boot_id(),
        })
    }

    /// The cache as a process in the boot `boot` sees it (tests stand for a reboot with it).
    #[cfg(test)]
    fn in_boot(mut self, boot: Option<&str>) -> SnapshotCache {
        self.boot = boot.map(str::to_string);
        self
    }

    /// The snapshot directory for `chain_id`. The hex of a validated [`Digest`] is a safe
    /// file name.
    fn entry(&self, chain_id: &Digest) -> PathBuf {
        self.dir
            .join(format!("{SNAPSHOT_PREFIX}{}", chain_id.hex()))
    }

    /// Where the tree (the lower directory) of the snapshot for `chain_id` lives, whether or
    /// not it exists.
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.entry(chain_id).join(TREE)
    }

    /// The snapshot for `chain_id` if it has been committed and may be used in this boot.
    pub fn get(&self, chain_id: &Digest) -> Option<PathBuf> {
        let entry = self.entry(chain_id);
        let tree = entry.join(TREE);
        (tree.is_dir() && usable_in(&entry, self.boot.as_deref())).then_some(tree)
    }

    /// Moves a stale snapshot (of another boot) out of the way and removes it. Best effort: a
    /// concurrent creator may have moved it first, and what cannot be removed now is a
    /// `tmp-` directory the next `Store::open` or `prune` reclaims.
    fn discard_stale(&self, entry: &Path) {
        let Ok(aside) = crate::store::temps::ScratchDir::create(&self.dir, "tmp") else {
            return;
        };
        let target = aside.path().join("stale");
        if std::fs::rename(entry, &target).is_ok() {
            let _ = crate::store::temps::remove_tree(&target);
        }
    }

    /// Returns the tree of the snapshot for `chain_id`, calling `create` on an empty temporary
    /// directory to make it if it is not cached yet. `create` must fill exactly that directory
    /// and return the device placeholders it wrote there.
    pub fn get_or_create<E>(
        &self,
        chain_id: &Digest,
        create: impl FnOnce(&Path) -> Result<Vec<Placeholder>, E>,
    ) -> Result<PathBuf, SnapshotError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        if let Some(tree) = self.get(chain_id) {
            return Ok(tree);
        }
        let pending = self.create_unnamed(create).map_err(|e| e.named(chain_id))?;
        self.commit(chain_id, pending)
    }

    /// Makes a snapshot whose chain ID is not known yet (a layer unpacked while it is still
    /// being written, whose diffID is known only at its end): `create` fills an empty
    /// temporary directory as for [`SnapshotCache::get_or_create`]. Nothing is visible until
    /// [`SnapshotCache::commit`]; a [`PendingSnapshot`] that is dropped is removed.
    pub fn create_unnamed<E>(
        &self,
        create: impl FnOnce(&Path) -> Result<Vec<Placeholder>, E>,
    ) -> Result<PendingSnapshot, UnnamedError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        // Named after this process and locked (see `store::temps`): a build killed mid-unpack
        // leaves it for the next `Store::open` to reclaim.
        let tmp = crate::store::temps::ScratchDir::create(&self.dir, "tmp").map_err(|source| {
            UnnamedError(SnapshotError::TempDir {
                path: self.dir.clone(),
                source,
            })
        })?;
        let tmp_tree = tmp.path().join(TREE);
        let placeholders = std::fs::create_dir(&tmp_tree)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .and_then(|()| create(&tmp_tree).map_err(|e| Box::new(e) as _))
            .map_err(|source| {
                UnnamedError(SnapshotError::Create {
                    chain_id: None,
                    source,
                })
            })?;
        Ok(PendingSnapshot { tmp, placeholders })
    }

    /// Publishes `pending` as the snapshot for `chain_id` and returns its tree. When the
    /// snapshot exists already (another creator won the race), `pending` is removed and the
    /// existing one returned.
    pub fn commit(
        &self,
        chain_id: &Digest,
        pending: PendingSnapshot,
    ) -> Result<PathBuf, SnapshotError> {
        let tree = self.path(chain_id);
        let final_path = self.entry(chain_id);
        if self.get(chain_id).is_some() {
            return Ok(tree);
        }
        if final_path.exists() {
            self.discard_stale(&final_path);
        }
        let PendingSnapshot { tmp, placeholders } = pending;
        let list = tmp.path().join(PLACEHOLDERS);
        let text: String = placeholders.iter().map(|p| p.to_line() + "\n").collect();
        std::fs::write(&list, text).map_err(|source| SnapshotError::WritePlaceholders {
            chain_id: chain_id.clone(),
            path: list.clone(),
            source,
        })?;
        let boot_file = tmp.path().join(BOOT);
        let boot_text = self.boot.as_deref().unwrap_or(SYNCED);
        std::fs::write(&boot_file, boot_text).map_err(|source| {
            SnapshotError::WritePlaceholders {
                chain_id: chain_id.clone(),
                path: boot_file.clone(),
                source,
            }
        })?;
        let commit_err = |op: &'static str| {
            let path = final_path.clone();
            move |e: Errno| SnapshotError::Commit {
                chain_id: chain_id.clone(),
                path,
                op,
                source: e.into(),
            }
        };
        // Only a snapshot that must outlive this boot is made durable before the rename
        // publishes it (see the module doc).
        let synced = self.boot.is_none();
        if synced {
            let tmp_fd = rfs::open(
                tmp.path(),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(commit_err("opening the temporary directory"))?;
            rfs::syncfs(&tmp_fd).map_err(commit_err("syncfs"))?;
        }
        crate::failpoint::hit("snapshot.before_rename");
        match rfs::renameat_with(CWD, tmp.path(), CWD, &final_path, RenameFlags::NOREPLACE) {
            Ok(()) => {
                // The directory now lives at `final_path`; nothing is left to remove.
                tmp.keep();
                if synced {
                    let dir_fd = rfs::open(
                        &self.dir,
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(commit_err("opening the cache directory"))?;
                    rfs::fsync(&dir_fd).map_err(commit_err("fsync of the cache directory"))?;
                }
                Ok(tree)
            }
            // Another creator won the race: ours is dropped (which removes it), theirs is used.
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => Ok(tree),
            Err(e) => Err(commit_err("rename into place")(e)),
        }
    }
}

/// A snapshot made by [`SnapshotCache::create_unnamed`], waiting for its chain ID; removed
/// when dropped uncommitted.
#[derive(Debug)]
pub struct PendingSnapshot {
    tmp: crate::store::temps::ScratchDir,
    placeholders: Vec<Placeholder>,
}

impl PendingSnapshot {
    /// The tree made so far (for tests and checks before the commit).
    pub fn tree(&self) -> PathBuf {
        self.tmp.path().join(TREE)
    }
}

/// Why [`SnapshotCache::create_unnamed`] failed: a [`SnapshotError`] that names no chain ID.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct UnnamedError(SnapshotError);

impl From<UnnamedError> for SnapshotError {
    fn from(e: UnnamedError) -> SnapshotError {
        e.0
    }
}

impl UnnamedError {
    /// The error, naming the snapshot it was made for.
    pub fn named(self, chain: &Digest) -> SnapshotError {
        match self.0 {
            SnapshotError::Create {
                chain_id: None,
                source,
            } => SnapshotError::Create {
                chain_id: Some(chain.clone()),
                source,
            },
            other => other,
        }
    }
}

/// The device placeholders listed beside a snapshot tree returned by [`SnapshotCache`] (a
/// RUN's candidates for real nodes; whether each is still visible on top of later layers is
/// checked in the sandbox).
pub fn placeholders_of(tree: &Path) -> Result<Vec<Placeholder>, SnapshotError> {
    use std::io::Read;
    let path = tree.with_file_name(PLACEHOLDERS);
    let err = |source| SnapshotError::ReadPlaceholders {
        path: path.clone(),
        source,
    };
    let mut text = String::new();
    std::fs::File::open(&path)
        .map_err(err)?
        .take(MAX_PLACEHOLDERS_FILE)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(text.lines().filter_map(Placeholder::from_line).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::sha256_of(s.as_bytes())
    }

    #[test]
    fn chain_id_of_the_base_layer_is_its_diff_id() {
        assert_eq!(chain_id(None, &d("a")), d("a"));
    }

    #[test]
    fn chain_id_hashes_parent_space_diff_id_per_oci_config_md() {
        let (a, b, c) = (d("a"), d("b"), d("c"));
        let ab = Digest::sha256_of(format!("{a} {b}").as_bytes());
        let abc = Digest::sha256_of(format!("{ab} {c}").as_bytes());
        assert_eq!(chain_ids(&[a, b, c]), vec![d("a"), ab, abc]);
    }

    #[test]
    fn failed_creation_leaves_nothing_behind() {
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(cache_dir.path()).expect("cache");
        let err = cache
            .get_or_create(&d("x"), |p| -> Result<Vec<Placeholder>, std::io::Error> {
                std::fs::write(p.join("half"), b"partial")?;
                Err(std::io::Error::other("boom"))
            })
            .expect_err("creator failed");
        assert!(matches!(err, SnapshotError::Create { .. }));
        assert_eq!(
            std::fs::read_dir(cache_dir.path()).expect("list").count(),
            0
        );
        assert!(cache.get(&d("x")).is_none());
    }

    #[test]
    fn a_snapshot_lists_its_placeholders_beside_its_tree() {
        use crate::device::{DeviceKind, DeviceRecord};
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(cache_dir.path()).expect("cache");
        let p = Placeholder {
            path: b"dev/sda\n1".to_vec(),
            record: DeviceRecord {
                kind: DeviceKind::Block,
                major: 8,
                minor: 1,
                mode: 0o660,
            },
        };
        let tree = cache
            .get_or_create(&d("x"), |t| {
                std::fs::write(t.join("f"), b"x")?;
                Ok::<_, std::io::Error>(vec![p.clone()])
            })
            .expect("created");
        assert_eq!(cache.get(&d("x")), Some(tree.clone()));
        assert!(tree.join("f").is_file());
        let name = tree.parent().and_then(|e| e.file_name()).expect("entry");
        assert_eq!(name.to_string_lossy(), format!("v3-{}", d("x").hex()));
        assert_eq!(placeholders_of(&tree).expect("list"), vec![p]);
        // A snapshot of an earlier format (real device nodes) is not the current one.
        assert!(is_legacy_snapshot_name(d("y").hex()));
        assert!(is_legacy_snapshot_name(&format!("v2-{}", d("y").hex())));
        assert!(!is_legacy_snapshot_name(&format!("v3-{}", d("y").hex())));
        assert!(!is_legacy_snapshot_name("tmp-1-2-abc"));
    }

    fn make(cache: &SnapshotCache, name: &str, content: &[u8]) -> PathBuf {
        cache
            .get_or_create(&d(name), |t| {
                std::fs::write(t.join("f"), content)?;
                Ok::<_, std::io::Error>(Vec::new())
            })
            .expect("created")
    }

    #[test]
    fn a_snapshot_names_the_boot_it_was_written_in_and_is_not_synced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(dir.path())
            .expect("cache")
            .in_boot(Some("boot-a"));
        let tree = make(&cache, "x", b"a");
        let entry = tree.parent().expect("entry");
        assert_eq!(
            std::fs::read_to_string(entry.join(BOOT)).expect("boot"),
            "boot-a"
        );
        assert_eq!(cache.get(&d("x")), Some(tree));
    }

    #[test]
    fn after_a_reboot_an_unsynced_snapshot_is_stale_and_unpacked_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = SnapshotCache::new(dir.path())
            .expect("cache")
            .in_boot(Some("boot-a"));
        let tree = make(&before, "x", b"old, maybe torn");
        let after = before.clone().in_boot(Some("boot-b"));
        assert_eq!(
            after.get(&d("x")),
            None,
            "another boot's snapshot is not used"
        );
        let again = make(&after, "x", b"new");
        assert_eq!(again, tree);
        assert_eq!(std::fs::read(again.join("f")).expect("f"), b"new");
        assert_eq!(after.get(&d("x")), Some(again.clone()));
        // The stale copy was moved aside and removed: only the snapshot is left.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![format!("v3-{}", d("x").hex())]);
    }

    #[test]
    fn a_missing_or_torn_boot_file_makes_a_snapshot_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(dir.path())
            .expect("cache")
            .in_boot(Some("boot-a"));
        let tree = make(&cache, "x", b"a");
        let entry = tree.parent().expect("entry").to_path_buf();
        std::fs::write(entry.join(BOOT), b"").expect("truncate");
        assert_eq!(
            cache.get(&d("x")),
            None,
            "an empty boot file (a crash) is stale"
        );
        std::fs::remove_file(entry.join(BOOT)).expect("remove");
        assert_eq!(cache.get(&d("x")), None, "no boot file is stale");
    }

    #[test]
    fn without_a_boot_id_a_snapshot_is_synced_and_valid_in_any_boot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(dir.path()).expect("cache").in_boot(None);
        let tree = make(&cache, "x", b"a");
        let entry = tree.parent().expect("entry");
        assert_eq!(
            std::fs::read_to_string(entry.join(BOOT)).expect("boot"),
            SYNCED
        );
        let later = cache.clone().in_boot(Some("boot-z"));
        assert_eq!(later.get(&d("x")), Some(tree));
    }

    fn filled(p: &Path, text: &str) -> Result<Vec<Placeholder>, std::io::Error> {
        std::fs::write(p.join("f"), text)?;
        Ok(Vec::new())
    }

    #[test]
    fn an_unnamed_snapshot_is_invisible_until_committed_and_a_dropped_one_leaves_nothing() {
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(cache_dir.path()).expect("cache");
        let dropped = cache.create_unnamed(|p| filled(p, "a")).expect("create");
        assert!(dropped.tree().join("f").is_file());
        drop(dropped);
        assert_eq!(
            std::fs::read_dir(cache_dir.path()).expect("list").count(),
            0
        );

        let pending = cache.create_unnamed(|p| filled(p, "b")).expect("create");
        assert!(cache.get(&d("x")).is_none());
        let tree = cache.commit(&d("x"), pending).expect("commit");
        assert_eq!(cache.get(&d("x")), Some(tree.clone()));
        assert_eq!(std::fs::read_to_string(tree.join("f")).expect("read"), "b");
        // Only the snapshot itself is left: the temporary directory became it.
        assert_eq!(
            std::fs::read_dir(cache_dir.path()).expect("list").count(),
            1
        );
    }

    #[test]
    fn committing_over_an_existing_snapshot_keeps_it_and_removes_the_newcomer() {
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(cache_dir.path()).expect("cache");
        let first = cache
            .get_or_create(&d("x"), |p| filled(p, "first"))
            .expect("first");
        let late = cache.create_unnamed(|p| filled(p, "late")).expect("create");
        assert_eq!(cache.commit(&d("x"), late).expect("commit"), first);
        assert_eq!(
            std::fs::read_to_string(first.join("f")).expect("read"),
            "first"
        );
        assert_eq!(
            std::fs::read_dir(cache_dir.path()).expect("list").count(),
            1
        );
    }

    #[test]
    fn an_unnamed_creation_that_fails_names_its_snapshot_once_known() {
        let cache_dir = tempfile::tempdir().expect("tempdir");
        let cache = SnapshotCache::new(cache_dir.path()).expect("cache");
        let err = cache
            .create_unnamed(|_| -> Result<Vec<Placeholder>, std::io::Error> {
                Err(std::io::Error::other("boom"))
            })
            .expect_err("creator failed");
        assert_eq!(
            SnapshotError::from(err).to_string(),
            "unpacking snapshot of a layer being written"
        );
        let err = cache
            .create_unnamed(|_| -> Result<Vec<Placeholder>, std::io::Error> {
                Err(std::io::Error::other("boom"))
            })
            .expect_err("creator failed");
        assert_eq!(
            err.named(&d("x")).to_string(),
            format!("unpacking snapshot {}", d("x"))
        );
        assert_eq!(
            std::fs::read_dir(cache_dir.path()).expect("list").count(),
            0
        );
    }
}

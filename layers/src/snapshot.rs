//! Unpacked layer snapshots, cached by chain ID, for reuse as overlayfs lower directories.
//!
//! Each snapshot `<dir>/v2-<chainid-hex>/` holds `tree/`, created by a caller-supplied function
//! (normally [`crate::apply_layer`] with [`crate::WhiteoutMode::Overlay`], so the tree holds
//! exactly one layer's diff with overlay-format whiteouts — what overlayfs expects of each
//! `lowerdir`), and `placeholders`, the device placeholders the function reports writing (one
//! [`Placeholder::to_line`] per line), which a RUN on top turns into real nodes inside its
//! sandbox (see [`crate::device`]). Both are committed together by one rename.
//!
//! Format versions: `v2-` snapshots keep devices as placeholders. Snapshots of earlier rbuild
//! versions (`<chainid-hex>` with no prefix) hold real device nodes; they are never used again
//! (each chain is unpacked anew) and `prune` removes them before anything else.
//!
//! Creation happens in `<dir>/tmp-<pid>-<start>-…`, named after its owner and locked (see
//! `store::temps`, which reclaims it if the owner is killed); the filesystem is synced and the directory renamed
//! into place with `RENAME_NOREPLACE`, so a snapshot is either absent or complete. When two
//! creators race, the loser removes its temporary directory and returns the winner's.
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
pub const SNAPSHOT_PREFIX: &str = "v2-";

/// The lower directory inside a snapshot.
const TREE: &str = "tree";

/// The placeholder list inside a snapshot.
const PLACEHOLDERS: &str = "placeholders";

/// Largest placeholder list read back (every reported placeholder at the longest path).
const MAX_PLACEHOLDERS_FILE: u64 =
    (MAX_REPORTED_PLACEHOLDERS * (2 * crate::apply::PATH_MAX + 64)) as u64;

/// Whether a name in the snapshot directory is a snapshot of an earlier format (a bare
/// sha256 hex), holding real device nodes.
pub fn is_legacy_snapshot_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
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
    #[error("unpacking snapshot {chain_id}")]
    Create {
        chain_id: Digest,
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
        })
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

    /// The snapshot for `chain_id` if it has been committed.
    pub fn get(&self, chain_id: &Digest) -> Option<PathBuf> {
        let p = self.path(chain_id);
        p.is_dir().then_some(p)
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
        let tree = self.path(chain_id);
        if tree.is_dir() {
            return Ok(tree);
        }
        let final_path = self.entry(chain_id);
        // Named after this process and locked (see `store::temps`): a build killed mid-unpack
        // leaves it for the next `Store::open` to reclaim.
        let tmp = crate::store::temps::ScratchDir::create(&self.dir, "tmp").map_err(|source| {
            SnapshotError::TempDir {
                path: self.dir.clone(),
                source,
            }
        })?;
        let tmp_tree = tmp.path().join(TREE);
        let placeholders = std::fs::create_dir(&tmp_tree)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            .and_then(|()| create(&tmp_tree).map_err(|e| Box::new(e) as _))
            .map_err(|source| SnapshotError::Create {
                chain_id: chain_id.clone(),
                source,
            })?;
        let list = tmp.path().join(PLACEHOLDERS);
        let text: String = placeholders.iter().map(|p| p.to_line() + "\n").collect();
        std::fs::write(&list, text).map_err(|source| SnapshotError::WritePlaceholders {
            chain_id: chain_id.clone(),
            path: list.clone(),
            source,
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
        // Make the contents durable before the rename publishes them.
        let tmp_fd = rfs::open(
            tmp.path(),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(commit_err("opening the temporary directory"))?;
        rfs::syncfs(&tmp_fd).map_err(commit_err("syncfs"))?;
        drop(tmp_fd);
        crate::failpoint::hit("snapshot.before_rename");
        match rfs::renameat_with(CWD, tmp.path(), CWD, &final_path, RenameFlags::NOREPLACE) {
            Ok(()) => {
                // The directory now lives at `final_path`; nothing is left to remove.
                tmp.keep();
                let dir_fd = rfs::open(
                    &self.dir,
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(commit_err("opening the cache directory"))?;
                rfs::fsync(&dir_fd).map_err(commit_err("fsync of the cache directory"))?;
                Ok(tree)
            }
            // Another creator won the race: ours is dropped (which removes it), theirs is used.
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => Ok(tree),
            Err(e) => Err(commit_err("rename into place")(e)),
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
        assert_eq!(name.to_string_lossy(), format!("v2-{}", d("x").hex()));
        assert_eq!(placeholders_of(&tree).expect("list"), vec![p]);
        // A snapshot of an earlier format (real device nodes) is not the current one.
        assert!(is_legacy_snapshot_name(d("y").hex()));
        assert!(!is_legacy_snapshot_name(&format!("v2-{}", d("y").hex())));
        assert!(!is_legacy_snapshot_name("tmp-1-2-abc"));
    }
}

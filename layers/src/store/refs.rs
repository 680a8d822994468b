//! Tags kept in the OCI layout's `index.json`, as entries annotated with
//! `org.opencontainers.image.ref.name` (image-spec `image-layout.md` / `annotations.md`).
//!
//! Every update is a read-modify-write under an exclusive `flock` on `locks/index.lock`, written
//! temp + fsync + rename, so concurrent rbuild processes never lose each other's tags.

use std::fs::File;
use std::io;

use serde::{Deserialize, Serialize};

use super::{fsutil, Store, StoreError};
// The annotation that names a tag in an OCI layout's index.
use crate::oci_layout::REF_NAME_ANNOTATION;
use crate::{Descriptor, MediaType};

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<MediaType>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Index {
    fn empty() -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MediaType::OciImageIndex),
            manifests: Vec::new(),
        }
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations.get(REF_NAME_ANNOTATION).map(String::as_str)
}

fn validate_ref_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(StoreError::BadRefName(name.to_string()));
    }
    Ok(())
}

/// The failpoint of a tag change (not of creating the empty index of a new store).
fn tag_write_point() {
    crate::failpoint::hit("tag.before_rename");
}

/// Holds `locks/index.lock` exclusively until dropped.
struct IndexLock(#[allow(dead_code)] File);

impl Store {
    fn lock_index(&self) -> Result<IndexLock, StoreError> {
        let path = self.root.join("locks/index.lock");
        let f =
            fsutil::open_lock_file(&path).map_err(StoreError::io("opening lock file", &path))?;
        fsutil::flock(&f, libc::LOCK_EX).map_err(StoreError::io("locking", &path))?;
        Ok(IndexLock(f))
    }

    fn read_index(&self) -> Result<Index, StoreError> {
        let path = self.root.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::BadIndex { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::empty()),
            Err(e) => Err(StoreError::io("reading", path)(e)),
        }
    }

    /// Writes `index.json`; `before_rename` is a crash-test failpoint (see [`crate::failpoint`]).
    fn write_index(&self, mut index: Index, before_rename: fn()) -> Result<(), StoreError> {
        // Deterministic order: tagged entries by name, untagged ones (from other tools) after,
        // in their original order.
        index
            .manifests
            .sort_by(|a, b| match (ref_name(a), ref_name(b)) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => std::cmp::Ordering::Equal,
            });
        let path = self.root.join("index.json");
        let mut bytes =
            serde_json::to_vec_pretty(&index).expect("an index always serialises to JSON");
        bytes.push(b'\n');
        fsutil::write_atomic(&self.tmp_dir(), &path, &bytes, before_rename)
            .map_err(StoreError::from)
    }

    /// Creates `index.json` if it is missing.
    pub(super) fn init_index(&self) -> Result<(), StoreError> {
        if self.root.join("index.json").exists() {
            return Ok(());
        }
        let _lock = self.lock_index()?;
        if self.root.join("index.json").exists() {
            return Ok(());
        }
        self.write_index(Index::empty(), || {})
    }

    /// Points tag `name` at `desc` (replacing any previous target).
    pub fn set_ref(&self, name: &str, desc: &Descriptor) -> Result<(), StoreError> {
        validate_ref_name(name)?;
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut desc = desc.clone();
        desc.annotations
            .insert(REF_NAME_ANNOTATION.to_string(), name.to_string());
        // Already so (every build sets its bases' and targets' tags): nothing to write.
        if index.manifests.contains(&desc) {
            return Ok(());
        }
        index.manifests.retain(|d| ref_name(d) != Some(name));
        index.manifests.push(desc);
        self.write_index(index, tag_write_point)
    }

    /// The descriptor tag `name` points at.
    pub fn get_ref(&self, name: &str) -> Result<Option<Descriptor>, StoreError> {
        let index = self.read_index()?;
        Ok(index
            .manifests
            .into_iter()
            .find(|d| ref_name(d) == Some(name)))
    }

    /// Removes tag `name`; returns whether it existed.
    pub fn remove_ref(&self, name: &str) -> Result<bool, StoreError> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let before = index.manifests.len();
        index.manifests.retain(|d| ref_name(d) != Some(name));
        let removed = index.manifests.len() != before;
        if removed {
            self.write_index(index, tag_write_point)?;
        }
        Ok(removed)
    }

    /// All tags, sorted by name.
    pub fn list_refs(&self) -> Result<Vec<(String, Descriptor)>, StoreError> {
        let index = self.read_index()?;
        let mut out: Vec<(String, Descriptor)> = index
            .manifests
            .into_iter()
            .filter_map(|d| ref_name(&d).map(|n| (n.to_string(), d.clone())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every descriptor in `index.json`, tagged or not (all of them keep their blobs).
    pub(super) fn index_descriptors(&self) -> Result<Vec<Descriptor>, StoreError> {
        Ok(self.read_index()?.manifests)
    }
}

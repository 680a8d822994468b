//! Cache records: small JSON documents the build engine stores under `cache/<kind>/<hex>.json`.
//!
//! The store does not interpret a record except for two optional top-level fields that keep
//! things alive for [`Store::prune`]: `"blobs": ["sha256:…", …]` and `"snapshots": ["name", …]`.
//! Reading a record marks it used (its mtime), which orders LRU pruning.

use std::io;
use std::path::PathBuf;

use serde::Deserialize;

use super::{fsutil, Store, StoreError};
use crate::Digest;

/// What a record keeps alive.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Keeps {
    #[serde(default)]
    pub blobs: Vec<Digest>,
    #[serde(default)]
    pub snapshots: Vec<String>,
}

fn validate_kind(kind: &str) -> Result<(), StoreError> {
    let ok = !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadRecordKind(kind.to_string()))
    }
}

/// Whether the file at `path` holds exactly `bytes`.
fn unchanged(path: &std::path::Path, bytes: &[u8]) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64)
        && std::fs::read(path).is_ok_and(|old| old == bytes)
}

impl Store {
    fn record_path(&self, kind: &str, key: &Digest) -> Result<PathBuf, StoreError> {
        validate_kind(kind)?;
        Ok(self
            .root
            .join("cache")
            .join(kind)
            .join(format!("{}.json", key.hex())))
    }

    /// Stores (or replaces) the record `kind`/`key` atomically.
    pub fn put_record(&self, kind: &str, key: &Digest, json: &[u8]) -> Result<(), StoreError> {
        let path = self.record_path(kind, key)?;
        // A record saved again with the same bytes (a no-op build re-saves what it learnt: where
        // each base layer comes from, the build's steps) is only marked used: a synced write per
        // record was most of a no-op build's wall time on a busy disk.
        if unchanged(&path, json) {
            let _ = filetime::set_file_mtime(&path, filetime::FileTime::now());
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::io("creating directory", dir))?;
        }
        fsutil::write_atomic(&self.tmp_dir(), &path, json, || {
            crate::failpoint::hit("record.before_rename")
        })
        .map_err(StoreError::from)
    }

    /// Whether the record `kind`/`key` exists (without reading it or marking it used).
    pub fn has_record(&self, kind: &str, key: &Digest) -> bool {
        self.record_path(kind, key).is_ok_and(|p| p.is_file())
    }

    /// Reads the record `kind`/`key`, marking it used.
    pub fn get_record(&self, kind: &str, key: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.record_path(kind, key)?;
        match std::fs::read(&path) {
            Ok(bytes) => {
                // Best effort: only affects prune order.
                let _ = filetime::set_file_mtime(&path, filetime::FileTime::now());
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io("reading", path)(e)),
        }
    }

    /// Removes the record `kind`/`key`; returns whether it existed.
    pub fn remove_record(&self, kind: &str, key: &Digest) -> Result<bool, StoreError> {
        let path = self.record_path(kind, key)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StoreError::io("removing", path)(e)),
        }
    }
}

/// Parses what a record keeps; a record that is not JSON or has other shapes keeps nothing.
pub(super) fn keeps_of(json: &[u8]) -> Keeps {
    serde_json::from_slice(json).unwrap_or_default()
}

//! The one reader of OCI image layouts on disk: `FROM oci-layout://DIR[:TAG|@DIGEST]` (the
//! builder) and `--cache-from type=local,src=DIR` (the registry crate's cache import) both read
//! through it.
//!
//! A layout may come from anywhere (a CI cache restored from elsewhere, a tool's output), so:
//! - `index.json` is read capped ([`ImageIndex::from_reader`]); an entry's digest is a parsed
//!   [`Digest`] (algorithm and hex checked), so no entry names a path outside `blobs/`;
//! - a document (manifest, config, cache map) is read only up to a cap the caller gives and
//!   only if its descriptor's size is within it, then checked against its digest and size;
//! - a blob is imported into the [`Store`] streamed (never whole in memory) and committed only
//!   if its digest (and size, when known) match: a corrupt or truncated blob stores nothing.
//!
//! The `oci-layout` file is not required: layouts without one were always accepted, and
//! `index.json` is what a reader needs.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::digest::Algorithm;
use crate::image::{ImageError, ImageIndex};
use crate::store::{Store, StoreError};
use crate::{Descriptor, Digest};

use super::{blob_path, REF_NAME_ANNOTATION};

/// Why a layout could not be read. Every message names the file concerned (so the layout's
/// directory too).
#[derive(Debug, thiserror::Error)]
pub enum LayoutReadError {
    /// There is no `index.json` (or no directory at all).
    #[error("cannot read {}: {source} (is it an OCI image layout?)", path.display())]
    NoIndex {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// `index.json` is not a valid image index.
    #[error("invalid {}: {source}", path.display())]
    Index {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    #[error("no image tagged {tag:?} in {}", index.display())]
    TagNotFound { index: PathBuf, tag: String },
    #[error("no manifest {digest} in {}", index.display())]
    DigestNotFound { index: PathBuf, digest: String },
    /// No tag or digest was given and the index does not hold exactly one entry.
    #[error("{} holds {count} images: name one by tag or digest", index.display())]
    NotOne { index: PathBuf, count: usize },
    /// The store and verification handle sha256 only.
    #[error("{digest} is not a sha256 digest (in the OCI layout {})", dir.display())]
    NotSha256 { dir: PathBuf, digest: Digest },
    #[error("blob {digest} is missing from the layout ({}): {source}", path.display())]
    MissingBlob {
        digest: Digest,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} ({}) is {size} bytes, more than the {max} bytes rbuild reads for it", path.display())]
    TooLarge {
        digest: Digest,
        path: PathBuf,
        size: u64,
        max: u64,
    },
    #[error("blob {digest} ({}) does not match its digest and size ({size} bytes); the directory is corrupt", path.display())]
    Corrupt {
        digest: Digest,
        path: PathBuf,
        size: u64,
    },
    /// The store refused the imported blob (it does not match its digest or size) or failed.
    #[error("importing blob {digest} ({}) into the local store: {source}", path.display())]
    Store {
        digest: Digest,
        path: PathBuf,
        #[source]
        source: StoreError,
    },
}

impl LayoutReadError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutReadError {
        let path = path.to_path_buf();
        move |source| LayoutReadError::Io { op, path, source }
    }
}

/// Which entry of `index.json` to take.
#[derive(Debug, Clone, Copy)]
pub enum Select<'a> {
    /// The entry annotated [`REF_NAME_ANNOTATION`]` = tag`.
    Tag(&'a str),
    /// The entry whose digest is written exactly so (compared as text: a string that is not a
    /// digest matches nothing and never becomes a path).
    Digest(&'a str),
    /// The index's only entry.
    Only,
}

/// The blobs of the layout in a directory: nothing is read until asked.
#[derive(Debug, Clone)]
pub struct LayoutBlobs {
    root: PathBuf,
}

impl LayoutBlobs {
    pub fn new(root: &Path) -> LayoutBlobs {
        LayoutBlobs {
            root: root.to_path_buf(),
        }
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256/<hex>` of `digest`; other algorithms are refused (the store and the
    /// verification here are sha256).
    pub fn path(&self, digest: &Digest) -> Result<PathBuf, LayoutReadError> {
        if digest.algorithm() != Algorithm::Sha256 {
            return Err(LayoutReadError::NotSha256 {
                dir: self.root.clone(),
                digest: digest.clone(),
            });
        }
        Ok(blob_path(&self.root, digest))
    }

    /// Whether the layout has a file for `desc` of its size (the content is verified when it is
    /// read or imported).
    pub fn has(&self, desc: &Descriptor) -> bool {
        self.path(&desc.digest)
            .ok()
            .and_then(|p| std::fs::symlink_metadata(p).ok())
            .is_some_and(|m| m.is_file() && m.len() == desc.size)
    }

    /// Reads the small blob `desc` (a manifest, a config): refused unless its size is at most
    /// `max`, then checked against its digest and size.
    pub fn read_document(&self, desc: &Descriptor, max: u64) -> Result<Vec<u8>, LayoutReadError> {
        let path = self.path(&desc.digest)?;
        if desc.size > max {
            return Err(LayoutReadError::TooLarge {
                digest: desc.digest.clone(),
                path,
                size: desc.size,
                max,
            });
        }
        let mut bytes = Vec::new();
        File::open(&path)
            .map_err(LayoutReadError::io("opening", &path))?
            .take(desc.size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(LayoutReadError::io("reading", &path))?;
        if bytes.len() as u64 != desc.size || Digest::sha256_of(&bytes) != desc.digest {
            return Err(LayoutReadError::Corrupt {
                digest: desc.digest.clone(),
                path,
                size: desc.size,
            });
        }
        Ok(bytes)
    }

    /// Copies blob `digest` (of `size` bytes, when known) into `store`, streamed and committed
    /// only if it matches (a corrupt or truncated blob stores nothing). Nothing to do when the
    /// store has it (of that size); the store's copy is then marked used.
    pub fn import(
        &self,
        store: &Store,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<(), LayoutReadError> {
        let present = match size {
            Some(size) => store.blob_size(digest) == Some(size),
            None => store.has_blob(digest),
        };
        if present {
            store.mark_blob_used(digest);
            return Ok(());
        }
        let path = self.path(digest)?;
        let file = File::open(&path).map_err(|source| LayoutReadError::MissingBlob {
            digest: digest.clone(),
            path: path.clone(),
            source,
        })?;
        let store_err = |source| LayoutReadError::Store {
            digest: digest.clone(),
            path: path.clone(),
            source,
        };
        let mut w = store.begin_blob().map_err(store_err)?;
        // One byte past the expected size, so that a longer file is caught, not truncated.
        let limit = size.map_or(u64::MAX, |s| s.saturating_add(1));
        io::copy(&mut file.take(limit), &mut w).map_err(LayoutReadError::io("copying", &path))?;
        w.commit(Some(digest), size).map_err(store_err)?;
        Ok(())
    }
}

/// A layout whose `index.json` has been read (see the module doc).
#[derive(Debug, Clone)]
pub struct LayoutReader {
    blobs: LayoutBlobs,
    index: ImageIndex,
}

impl LayoutReader {
    /// Reads `<root>/index.json`. A missing directory or index is
    /// [`LayoutReadError::NoIndex`].
    pub fn open(root: &Path) -> Result<LayoutReader, LayoutReadError> {
        let path = root.join("index.json");
        let file = File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                LayoutReadError::NoIndex {
                    path: path.clone(),
                    source,
                }
            } else {
                LayoutReadError::io("opening", &path)(source)
            }
        })?;
        let index = ImageIndex::from_reader(file)
            .map_err(|source| LayoutReadError::Index { path, source })?;
        Ok(LayoutReader {
            blobs: LayoutBlobs::new(root),
            index,
        })
    }

    /// The layout's directory.
    pub fn root(&self) -> &Path {
        self.blobs.root()
    }

    /// The path of `index.json`.
    pub fn index_path(&self) -> PathBuf {
        self.root().join("index.json")
    }

    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    pub fn blobs(&self) -> &LayoutBlobs {
        &self.blobs
    }

    /// The entry of `index.json` that `which` selects (the first, if several match).
    pub fn resolve(&self, which: Select<'_>) -> Result<&Descriptor, LayoutReadError> {
        let entries = &self.index.manifests;
        let index = self.index_path();
        match which {
            Select::Tag(tag) => entries
                .iter()
                .find(|m| m.annotations.get(REF_NAME_ANNOTATION).map(String::as_str) == Some(tag))
                .ok_or_else(|| LayoutReadError::TagNotFound {
                    index,
                    tag: tag.to_string(),
                }),
            Select::Digest(digest) => entries
                .iter()
                .find(|m| m.digest.to_string() == digest)
                .ok_or_else(|| LayoutReadError::DigestNotFound {
                    index,
                    digest: digest.to_string(),
                }),
            Select::Only => match entries.as_slice() {
                [only] => Ok(only),
                all => Err(LayoutReadError::NotOne {
                    index,
                    count: all.len(),
                }),
            },
        }
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;

//! `--output type=local,dest=DIR`: the image's final filesystem, flattened into a directory.
//!
//! Applying a layer (whiteouts, safe path handling) is the layer applier's job; this module
//! only orders the work and keeps it atomic. The applier is passed in as a [`LayerApplier`] so
//! that this module does not depend on its implementation. The filesystem is assembled in a
//! temporary sibling of `dest` and renamed into place only when every layer applied.
//!
//! An existing non-empty `dest` is an error rather than being merged into (BuildKit writes
//! into it) or replaced: both could destroy files the user did not mean to give up.

use std::error::Error;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use super::atomic::{self, fsync_dir};
use super::{Destination, OutputError};
use crate::image::verified::open_verified;
use crate::image::{BlobSource, Image};
use crate::Compression;

/// Applies one layer blob to a root directory.
pub trait LayerApplier {
    /// Applies `layer`, the blob's bytes as stored (compressed as `compression` says), on top
    /// of `root`, honouring OCI whiteouts.
    fn apply(
        &self,
        root: &Path,
        layer: &mut dyn Read,
        compression: Compression,
    ) -> Result<(), Box<dyn Error + Send + Sync>>;
}

impl<F> LayerApplier for F
where
    F: Fn(&Path, &mut dyn Read, Compression) -> Result<(), Box<dyn Error + Send + Sync>>,
{
    fn apply(
        &self,
        root: &Path,
        layer: &mut dyn Read,
        compression: Compression,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        self(root, layer, compression)
    }
}

/// Writes the flattened filesystem of `image` to `dest`, which must be a directory destination.
pub fn write_local(
    dest: &Destination,
    image: &Image,
    source: &dyn BlobSource,
    applier: &dyn LayerApplier,
) -> Result<(), OutputError> {
    match dest {
        Destination::Dir(dir) => write_local_dir(dir, image, source, applier),
        Destination::Stdout => Err(OutputError::LocalNeedsDir { dest: "-".into() }),
        Destination::TarFile(p) => Err(OutputError::LocalNeedsDir {
            dest: p.display().to_string(),
        }),
    }
}

/// Writes the flattened filesystem of `image` to the directory `dest`.
pub fn write_local_dir(
    dest: &Path,
    image: &Image,
    source: &dyn BlobSource,
    applier: &dyn LayerApplier,
) -> Result<(), OutputError> {
    match fs::symlink_metadata(dest) {
        Ok(m)
            if m.is_dir()
                && fs::read_dir(dest)
                    .map_err(OutputError::io("listing", dest))?
                    .next()
                    .is_none() => {}
        Ok(_) => {
            return Err(OutputError::DestNotEmpty {
                path: dest.to_path_buf(),
                what: "",
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(OutputError::io("inspecting", dest)(e)),
    }
    let parent = atomic::parent_of(dest);
    let tmp = atomic::temp_dir_for(dest, "local")?;
    let root = tmp.path();
    flatten(root, dest, image, source, applier)?;
    fs::rename(root, dest).map_err(OutputError::io("renaming the finished filesystem to", dest))?;
    let _ = tmp.keep();
    fsync_dir(&parent)
}

/// Applies every layer of `image`, verified, on top of the (empty) directory `root`; errors name
/// `shown` (where the user asked the filesystem to go).
pub(crate) fn flatten(
    root: &Path,
    shown: &Path,
    image: &Image,
    source: &dyn BlobSource,
    applier: &dyn LayerApplier,
) -> Result<(), OutputError> {
    for layer in &image.manifest.layers {
        let compression =
            layer
                .media_type
                .layer_compression()
                .ok_or_else(|| OutputError::NotALayer {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                })?;
        let (size, mut r) = open_verified(source, &layer.digest)?;
        applier
            .apply(root, &mut r, compression)
            .map_err(|source| OutputError::Apply {
                digest: layer.digest.clone(),
                root: shown.to_path_buf(),
                source,
            })?;
        // The applier may stop at the end-of-archive marker; hash the rest so the check
        // covers the whole blob.
        io::copy(&mut r, &mut io::sink()).map_err(|source| OutputError::ReadBlob {
            digest: layer.digest.clone(),
            source,
        })?;
        r.finish(&layer.digest, size)?;
    }
    Ok(())
}

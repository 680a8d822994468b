//! Writers of rbuild's `--output` formats: an OCI image layout (directory or tar), a
//! docker-archive tar that `docker load` accepts, and a flattened root filesystem (a directory
//! or one tar).
//!
//! Every writer works from [`Image`](crate::image::Image)s whose blobs are read through a
//! [`BlobSource`](crate::image::BlobSource), verifies each blob's digest while copying it, and
//! never leaves a half-written destination: files and directories are built under a temporary
//! name next to the destination and renamed into place.

mod atomic;
pub mod docker;
mod error;
pub mod fs_tar;
pub mod local;
pub mod oci;
mod tarball;

use std::path::{Path, PathBuf};

pub use error::OutputError;

use crate::image::{Image, ImageRoot};

/// One image (or index of images) to export and the names (`--tag`s) it is exported under
/// (may be empty).
#[derive(Debug, Clone, Copy)]
pub struct ExportImage<'a> {
    pub image: &'a ImageRoot,
    pub names: &'a [String],
}

/// The single image of an export, or the docker-archive error (a docker archive holds one
/// image per name and no index: `docker load` has no way to read several platforms). An index
/// of one image and its attestations is that image: the archive has no place for them, as the
/// Docker Engine's store keeps none.
pub(crate) fn single<'a>(img: &ExportImage<'a>) -> Result<&'a Image, OutputError> {
    match img.image.images() {
        [one] => Ok(one),
        several => Err(OutputError::DockerMultiPlatform {
            platforms: several.len(),
        }),
    }
}

/// Where a `dest=` option points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `dest=-`: a tar stream on standard output.
    Stdout,
    /// `dest=FILE.tar`: a tar file.
    TarFile(PathBuf),
    /// Anything else: a directory.
    Dir(PathBuf),
}

impl Destination {
    /// Classifies a `dest=` value: `-` is stdout, a name ending in `.tar` is a tar file,
    /// anything else a directory.
    pub fn from_dest(dest: &str) -> Destination {
        if dest == "-" {
            Destination::Stdout
        } else if Path::new(dest).extension().is_some_and(|e| e == "tar") {
            Destination::TarFile(PathBuf::from(dest))
        } else {
            Destination::Dir(PathBuf::from(dest))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dest_classification() {
        assert_eq!(Destination::from_dest("-"), Destination::Stdout);
        assert_eq!(
            Destination::from_dest("out/img.tar"),
            Destination::TarFile("out/img.tar".into())
        );
        assert_eq!(
            Destination::from_dest("out/img"),
            Destination::Dir("out/img".into())
        );
        assert_eq!(
            Destination::from_dest("out.tar.d"),
            Destination::Dir("out.tar.d".into())
        );
    }
}

//! Image assembly: the config, manifest and index documents, and turning a config plus layer
//! descriptors into stored blobs.
//!
//! Where blobs live is not this module's business: [`BlobSink`] stores bytes and
//! [`BlobSource`] reads them back. The content-addressed store implements both; tests use a
//! plain `blobs/sha256/<hex>` directory.

pub mod config;
mod error;
pub mod manifest;
mod set;
pub(crate) mod verified;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::PathBuf;

pub use config::{ContainerConfig, EmptyObject, Healthcheck, History, ImageConfig, RootFs};
pub use error::ImageError;
pub use manifest::{ImageIndex, ImageManifest, MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES};
pub use set::{ExtraManifest, ImageRoot, ImageSet};
pub use verified::BlobReadError;

use crate::{Descriptor, Digest, MediaType};

/// Somewhere blob bytes can be read from by digest.
pub trait BlobSource {
    /// Opens the blob's bytes as stored (compressed layers stay compressed).
    fn open_blob(&self, digest: &Digest) -> io::Result<Box<dyn Read + Send + '_>>;
    /// The blob's size in bytes.
    fn blob_size(&self, digest: &Digest) -> io::Result<u64>;
    /// A path to the blob file, if it is one, so writers can hard-link instead of copying.
    /// The file must never be modified in place (content-addressed stores write once).
    fn blob_path(&self, _digest: &Digest) -> Option<PathBuf> {
        None
    }
}

/// Somewhere small blobs (configs, manifests) can be stored.
pub trait BlobSink {
    /// Stores `bytes` and returns their descriptor (digest = sha256 of `bytes`).
    fn put_bytes(&self, media_type: &MediaType, bytes: &[u8]) -> io::Result<Descriptor>;
}

/// Which media type family the manifest and its descriptors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MediaTypes {
    /// OCI image-spec types (the default, as in BuildKit `oci-mediatypes=true`).
    #[default]
    Oci,
    /// Docker schema2 types, for registries or tools that need them.
    Docker,
}

/// A single-platform image whose config and manifest have been stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub manifest: ImageManifest,
    pub manifest_descriptor: Descriptor,
    pub config: ImageConfig,
    pub config_descriptor: Descriptor,
}

impl Image {
    /// Serialises `config` and a manifest over `layers` (bottom first, one per
    /// `config.rootfs.diff_ids` entry), stores both through `sink`, and returns the image.
    ///
    /// `annotations` go on the manifest. The manifest descriptor carries the config's platform
    /// so it can be placed in an index as is.
    pub fn assemble(
        config: ImageConfig,
        layers: Vec<Descriptor>,
        annotations: BTreeMap<String, String>,
        media_types: MediaTypes,
        sink: &dyn BlobSink,
    ) -> Result<Image, ImageError> {
        if layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::LayerCountMismatch {
                layers: layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let config_bytes = config.to_canonical_json();
        let config_descriptor = put_checked(
            sink,
            &MediaType::OciImageConfig,
            &config_bytes,
            "image config",
        )?;
        let mut manifest = ImageManifest::new_oci(config_descriptor.clone(), layers);
        manifest.annotations = annotations;
        if media_types == MediaTypes::Docker {
            manifest = manifest.to_docker_schema2()?;
        }
        let manifest_type = manifest
            .media_type
            .clone()
            .expect("assembled manifests always declare their media type");
        let config_descriptor = manifest.config.clone();
        let mut manifest_descriptor = put_checked(
            sink,
            &manifest_type,
            &manifest.to_canonical_json(),
            "image manifest",
        )?;
        manifest_descriptor.platform = Some(crate::Platform {
            architecture: config.architecture.clone(),
            os: config.os.clone(),
            os_version: config.os_version.clone(),
            variant: config.variant.clone(),
        });
        Ok(Image {
            manifest,
            manifest_descriptor,
            config,
            config_descriptor,
        })
    }

    /// The same image with Docker schema2 media types: its manifest stored again with Docker's
    /// types (its descriptor keeps its platform and annotations); the config and layer blobs
    /// are the same.
    pub fn to_docker_media_types(&self, sink: &dyn BlobSink) -> Result<Image, ImageError> {
        let manifest = self.manifest.to_docker_schema2()?;
        let mut manifest_descriptor = put_checked(
            sink,
            &MediaType::DockerManifest,
            &manifest.to_canonical_json(),
            "image manifest",
        )?;
        manifest_descriptor.platform = self.manifest_descriptor.platform.clone();
        manifest_descriptor.annotations = self.manifest_descriptor.annotations.clone();
        Ok(Image {
            config_descriptor: manifest.config.clone(),
            manifest,
            manifest_descriptor,
            config: self.config.clone(),
        })
    }

    /// Every blob the image references: manifest, config, then layers.
    pub fn blob_digests(&self) -> Vec<&Digest> {
        let mut out = vec![
            &self.manifest_descriptor.digest,
            &self.config_descriptor.digest,
        ];
        out.extend(self.manifest.layers.iter().map(|l| &l.digest));
        out
    }

    /// Loads an image (manifest, then config) from `source`, with the size caps and
    /// ambiguity checks of [`ImageManifest::from_slice`].
    pub fn load(
        source: &dyn BlobSource,
        manifest_descriptor: Descriptor,
    ) -> Result<Image, ImageError> {
        let r = source
            .open_blob(&manifest_descriptor.digest)
            .map_err(|e| ImageError::Read {
                what: "image manifest",
                source: e,
            })?;
        let manifest = ImageManifest::from_reader(r)?;
        let r = source
            .open_blob(&manifest.config.digest)
            .map_err(|e| ImageError::Read {
                what: "image config",
                source: e,
            })?;
        let bytes = manifest::read_capped(r, MAX_CONFIG_BYTES, "image config")?;
        let config: ImageConfig = serde_json::from_slice(&bytes).map_err(|e| ImageError::Json {
            what: "image config",
            source: e,
        })?;
        Ok(Image {
            config_descriptor: manifest.config.clone(),
            manifest,
            manifest_descriptor,
            config,
        })
    }
}

fn put_checked(
    sink: &dyn BlobSink,
    media_type: &MediaType,
    bytes: &[u8],
    what: &'static str,
) -> Result<Descriptor, ImageError> {
    let d = sink
        .put_bytes(media_type, bytes)
        .map_err(|source| ImageError::PutBlob { what, source })?;
    let expected = Digest::sha256_of(bytes);
    if d.digest != expected || d.size != bytes.len() as u64 {
        return Err(ImageError::SinkDigestMismatch {
            what,
            expected,
            actual: d.digest,
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    #[derive(Default)]
    struct MemSink(RefCell<BTreeMap<Digest, Vec<u8>>>);

    impl BlobSink for MemSink {
        fn put_bytes(&self, media_type: &MediaType, bytes: &[u8]) -> io::Result<Descriptor> {
            let d = Digest::sha256_of(bytes);
            self.0.borrow_mut().insert(d.clone(), bytes.to_vec());
            Ok(Descriptor::new(media_type.clone(), d, bytes.len() as u64))
        }
    }

    impl BlobSource for MemSink {
        fn open_blob(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
            let b = self
                .0
                .borrow()
                .get(d)
                .cloned()
                .ok_or(io::ErrorKind::NotFound)?;
            Ok(Box::new(io::Cursor::new(b)))
        }
        fn blob_size(&self, d: &Digest) -> io::Result<u64> {
            Ok(self.0.borrow().get(d).ok_or(io::ErrorKind::NotFound)?.len() as u64)
        }
    }

    fn layer(n: u8) -> (Digest, Descriptor) {
        let diff = Digest::sha256_of(&[n]);
        let blob = Digest::sha256_of(&[n, n]);
        (diff, Descriptor::new(MediaType::OciLayerGzip, blob, 2))
    }

    fn config_with(n: u8) -> (ImageConfig, Vec<Descriptor>) {
        let mut c = ImageConfig::new("linux", "amd64");
        let mut layers = Vec::new();
        for i in 0..n {
            let (diff, desc) = layer(i);
            c.add_layer(diff, History::new(format!("RUN step {i}")));
            layers.push(desc);
        }
        (c, layers)
    }

    #[test]
    fn assemble_stores_config_and_manifest_and_is_deterministic() {
        let sink = MemSink::default();
        let (c, layers) = config_with(2);
        let a = Image::assemble(
            c.clone(),
            layers.clone(),
            BTreeMap::new(),
            MediaTypes::Oci,
            &sink,
        )
        .unwrap();
        let b = Image::assemble(c, layers, BTreeMap::new(), MediaTypes::Oci, &sink).unwrap();
        assert_eq!(a.manifest_descriptor, b.manifest_descriptor);
        assert_eq!(
            a.manifest_descriptor.media_type,
            MediaType::OciImageManifest
        );
        assert_eq!(a.manifest_descriptor.platform.as_ref().unwrap().os, "linux");
        assert_eq!(
            a.config_descriptor.digest,
            Digest::sha256_of(&a.config.to_canonical_json())
        );
        assert_eq!(sink.0.borrow().len(), 2);
        let loaded = Image::load(&sink, a.manifest_descriptor.clone()).unwrap();
        assert_eq!(loaded, a);
    }

    #[test]
    fn assemble_with_docker_media_types() {
        let sink = MemSink::default();
        let (c, layers) = config_with(1);
        let img = Image::assemble(c, layers, BTreeMap::new(), MediaTypes::Docker, &sink).unwrap();
        assert_eq!(
            img.manifest_descriptor.media_type,
            MediaType::DockerManifest
        );
        assert_eq!(
            img.config_descriptor.media_type,
            MediaType::DockerImageConfig
        );
        assert_eq!(
            img.manifest.layers[0].media_type,
            MediaType::DockerLayerGzip
        );
    }

    #[test]
    fn assemble_rejects_layer_count_mismatch() {
        let (c, mut layers) = config_with(2);
        layers.pop();
        let err = Image::assemble(
            c,
            layers,
            BTreeMap::new(),
            MediaTypes::Oci,
            &MemSink::default(),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::LayerCountMismatch {
                    layers: 1,
                    diff_ids: 2
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn assemble_rejects_a_lying_sink() {
        struct Liar;
        impl BlobSink for Liar {
            fn put_bytes(&self, m: &MediaType, b: &[u8]) -> io::Result<Descriptor> {
                Ok(Descriptor::new(
                    m.clone(),
                    Digest::sha256_of(b"other"),
                    b.len() as u64,
                ))
            }
        }
        let (c, layers) = config_with(0);
        let err = Image::assemble(c, layers, BTreeMap::new(), MediaTypes::Oci, &Liar).unwrap_err();
        assert!(
            matches!(err, ImageError::SinkDigestMismatch { .. }),
            "{err}"
        );
    }
}

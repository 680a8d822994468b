//! Multi-platform images: an image index over one stored image per platform (image-spec
//! `image-index.md`), and [`ImageRoot`], what a build exports under a name — one image, or
//! such an index.

use std::collections::BTreeMap;

use super::{put_checked, BlobSink, Image, ImageError, ImageIndex};
use crate::{Descriptor, Digest, MediaType};

/// An image index over single-platform images, all stored, and the manifests of other kinds
/// it lists after them (attestation manifests).
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSet {
    pub index: ImageIndex,
    pub index_descriptor: Descriptor,
    /// In the index's order.
    pub images: Vec<Image>,
    /// Listed after the images, in order.
    pub extras: Vec<ExtraManifest>,
}

/// A manifest an index lists that is not a runnable image (an attestation manifest), with the
/// blobs it references, so that outputs copy them.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraManifest {
    pub descriptor: Descriptor,
    /// Its config and layers.
    pub blobs: Vec<Digest>,
}

impl ImageSet {
    /// Stores an OCI index listing `images` in the order given, each by its manifest
    /// descriptor (with its platform, and the annotations already on the descriptor), with
    /// `annotations` on the index.
    pub fn assemble(
        images: Vec<Image>,
        annotations: BTreeMap<String, String>,
        sink: &dyn BlobSink,
    ) -> Result<ImageSet, ImageError> {
        ImageSet::assemble_with(images, Vec::new(), annotations, sink)
    }

    /// [`ImageSet::assemble`] with `extras` listed after the images.
    pub fn assemble_with(
        images: Vec<Image>,
        extras: Vec<ExtraManifest>,
        annotations: BTreeMap<String, String>,
        sink: &dyn BlobSink,
    ) -> Result<ImageSet, ImageError> {
        let mut index = ImageIndex::new_oci();
        index.manifests = images
            .iter()
            .map(|i| i.manifest_descriptor.clone())
            .chain(extras.iter().map(|e| e.descriptor.clone()))
            .collect();
        index.annotations = annotations;
        let index_descriptor = put_checked(
            sink,
            &MediaType::OciImageIndex,
            &index.to_canonical_json(),
            "image index",
        )?;
        Ok(ImageSet {
            index,
            index_descriptor,
            images,
            extras,
        })
    }
}

/// What a build exports under a name: one image, or an index of several.
#[derive(Debug, Clone, PartialEq)]
// Few exist (one per built target), and the single image is the common case: boxing it would
// only add an indirection to every use.
#[allow(clippy::large_enum_variant)]
pub enum ImageRoot {
    Single(Image),
    Multi(ImageSet),
}

impl ImageRoot {
    /// The descriptor names point at: the manifest's, or the index's.
    pub fn descriptor(&self) -> &Descriptor {
        match self {
            ImageRoot::Single(i) => &i.manifest_descriptor,
            ImageRoot::Multi(s) => &s.index_descriptor,
        }
    }

    /// Mutable access to [`ImageRoot::descriptor`] (for annotations only on the descriptor,
    /// which change no digest).
    pub fn descriptor_mut(&mut self) -> &mut Descriptor {
        match self {
            ImageRoot::Single(i) => &mut i.manifest_descriptor,
            ImageRoot::Multi(s) => &mut s.index_descriptor,
        }
    }

    /// The same images with Docker schema2 media types (BuildKit's `oci-mediatypes=false`):
    /// each manifest, and the index as a manifest list, stored again with Docker's types; the
    /// configs and layers stay the same blobs (so the image IDs do not change). Extra manifests
    /// (attestations) have no Docker form: an error, as in BuildKit.
    pub fn to_docker_media_types(&self, sink: &dyn BlobSink) -> Result<ImageRoot, ImageError> {
        match self {
            ImageRoot::Single(i) => Ok(ImageRoot::Single(i.to_docker_media_types(sink)?)),
            ImageRoot::Multi(s) => {
                if !s.extras.is_empty() {
                    return Err(ImageError::NoDockerField {
                        field: "attestation manifests",
                    });
                }
                let images = s
                    .images
                    .iter()
                    .map(|i| i.to_docker_media_types(sink))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut index = s.index.clone();
                index.manifests = images
                    .iter()
                    .map(|i| i.manifest_descriptor.clone())
                    .collect();
                let index = index.to_docker_schema2()?;
                let mut index_descriptor = put_checked(
                    sink,
                    &MediaType::DockerManifestList,
                    &index.to_canonical_json(),
                    "manifest list",
                )?;
                index_descriptor.annotations = s.index_descriptor.annotations.clone();
                Ok(ImageRoot::Multi(ImageSet {
                    index,
                    index_descriptor,
                    images,
                    extras: Vec::new(),
                }))
            }
        }
    }

    /// The single-platform images, in index order.
    pub fn images(&self) -> &[Image] {
        match self {
            ImageRoot::Single(i) => std::slice::from_ref(i),
            ImageRoot::Multi(s) => &s.images,
        }
    }

    /// Every blob the root references: the index (if any), each image's blobs, then each
    /// extra manifest and its blobs.
    pub fn blob_digests(&self) -> Vec<&Digest> {
        let mut out = Vec::new();
        if let ImageRoot::Multi(s) = self {
            out.push(&s.index_descriptor.digest);
        }
        out.extend(self.images().iter().flat_map(Image::blob_digests));
        if let ImageRoot::Multi(s) = self {
            for e in &s.extras {
                out.push(&e.descriptor.digest);
                out.extend(&e.blobs);
            }
        }
        out
    }
}

//! Attestations of a built image for its push: the SBOM and provenance statements
//! (`crate::attest`), stored as an attestation manifest, and — as BuildKit does once a build
//! has attestations, even for one platform — an image index listing the image manifest (with
//! its platform) and then the attestation manifest. The image manifest is untouched: the same
//! digest with and without attestations.
//!
//! [`attestation_manifests`] gives the extra index entries for one platform's image;
//! [`attested_index`] writes the index of a target: every platform's image manifest, then their
//! attestation manifests, as BuildKit orders them.

use rbuild_layers::image::{Image, ImageIndex, ImageRoot, MediaTypes};
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, MediaType, StoreError};

use crate::attest::manifest::{store_attestation_manifest, Statement};
use crate::attest::provenance::{self, ProvenanceInput};
use crate::attest::sbom::{self, DocumentInfo};
use crate::attest::{intoto, AttestError, AttestRequest};
use crate::solver::seams::{FetchError, LayerSource};

use super::BuiltImage;

/// Why an image's attestations could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AttestExportError {
    #[error("fetching the layers of {target} to list its packages")]
    Fetch {
        target: String,
        #[source]
        source: FetchError,
    },
    #[error("writing the attestations of {target}")]
    Attest {
        target: String,
        #[source]
        source: AttestError,
    },
    #[error("storing the image index of {target}")]
    Index {
        target: String,
        #[source]
        source: StoreError,
    },
}

/// Stores the attestation manifest of `image` (one platform's image of `built`) and returns its
/// index entry (none when nothing is asked). `provenance` is the build's record for that
/// platform, used when provenance is asked; `layers` brings into the store the layers it lacks
/// (lazily pulled bases) for the SBOM's scan.
pub fn attestation_manifests(
    store: &Store,
    layers: &dyn LayerSource,
    built: &BuiltImage,
    image: &Image,
    request: &AttestRequest,
    provenance: Option<&ProvenanceInput>,
) -> Result<Vec<Descriptor>, AttestExportError> {
    if !request.any() {
        return Ok(Vec::new());
    }
    let attest_err = |source| AttestExportError::Attest {
        target: built.target.clone(),
        source,
    };
    let platform = image
        .manifest_descriptor
        .platform
        .clone()
        .unwrap_or_else(|| rbuild_layers::Platform {
            architecture: image.config.architecture.clone(),
            os: image.config.os.clone(),
            os_version: None,
            variant: image.config.variant.clone(),
        });
    let names: Vec<String> = built.names.iter().map(|n| n.to_string()).collect();
    let subjects = intoto::subjects(&names, &platform, &image.manifest_descriptor.digest);
    let mut statements = Vec::new();
    if request.sbom {
        layers
            .fetch(store, &image.manifest.layers, &|_| {})
            .map_err(|source| AttestExportError::Fetch {
                target: built.target.clone(),
                source,
            })?;
        let tree = sbom::scan_image(store, image).map_err(attest_err)?;
        let packages = sbom::packages(&tree);
        let name = names
            .first()
            .cloned()
            .unwrap_or_else(|| built.target.clone());
        let created = image
            .config
            .created
            .clone()
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".into());
        let creator = format!("Tool: rbuild-{}", env!("CARGO_PKG_VERSION"));
        let doc = sbom::spdx_document(
            &packages,
            &DocumentInfo {
                name: &name,
                created: &created,
                creator: &creator,
            },
        );
        statements.push(Statement {
            predicate_type: sbom::PREDICATE_TYPE.into(),
            bytes: intoto::statement_bytes(sbom::PREDICATE_TYPE, &subjects, &doc),
        });
    }
    if let (Some(mode), Some(input)) = (request.provenance, provenance) {
        let mut input = input.clone();
        input.mode = mode;
        let predicate = provenance::predicate(&input);
        statements.push(Statement {
            predicate_type: provenance::PREDICATE_TYPE.into(),
            bytes: intoto::statement_bytes(provenance::PREDICATE_TYPE, &subjects, &predicate),
        });
    }
    let media_types = match image.manifest_descriptor.media_type {
        MediaType::DockerManifest => MediaTypes::Docker,
        _ => MediaTypes::Oci,
    };
    let d = store_attestation_manifest(store, &image.manifest_descriptor, &statements, media_types)
        .map_err(attest_err)?;
    Ok(vec![d])
}

/// Stores the index of a target with attestations: each platform's image manifest (with its
/// platform) in order, then `attestations`, with the user's index annotations of a
/// multi-platform index kept; returns the index's descriptor (what is pushed and tagged).
pub fn attested_index(
    store: &Store,
    built: &BuiltImage,
    attestations: Vec<Descriptor>,
) -> Result<Descriptor, AttestExportError> {
    let mut index = ImageIndex::new_oci();
    let images = built.image.images();
    let docker = images
        .first()
        .is_some_and(|i| i.manifest_descriptor.media_type == MediaType::DockerManifest);
    let media_type = if docker {
        MediaType::DockerManifestList
    } else {
        MediaType::OciImageIndex
    };
    index.media_type = Some(media_type.clone());
    index
        .manifests
        .extend(images.iter().map(|i| i.manifest_descriptor.clone()));
    index.manifests.extend(attestations);
    if let ImageRoot::Multi(set) = &built.image {
        index.annotations = set.index.annotations.clone();
    }
    store
        .put_bytes(media_type, &index.to_canonical_json())
        .map_err(|source| AttestExportError::Index {
            target: built.target.clone(),
            source,
        })
}

//! Attestations as BuildKit attaches them to an image: an SBOM (SPDX 2.3 JSON, from the image's
//! own package databases, `sbom`) and SLSA provenance (`provenance`), each wrapped in an in-toto
//! statement (`intoto`) and stored as the layers of an attestation manifest (`manifest`) that an
//! image index lists beside the image it describes (BuildKit's
//! `docs/attestations/attestation-storage.md`).
//!
//! Nothing here changes the image: its manifest, and so its digest, is the same with and without
//! attestations. This module knows nothing of the CLI or of pushing; `export::attest` puts its
//! descriptors in an index.

pub mod intoto;
pub mod manifest;
pub mod provenance;
pub mod sbom;

use std::io;

use rbuild_layers::image::ImageError;
use rbuild_layers::Digest;

/// What can go wrong while writing an attestation.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error("failed to read layer {digest} of the image for its SBOM")]
    ReadLayer {
        digest: Digest,
        #[source]
        source: io::Error,
    },
    #[error("layer {digest} has media type {media_type}, which is not a layer rbuild can read")]
    NotALayer { digest: Digest, media_type: String },
    #[error("failed to store the {what} of the attestation manifest")]
    Store {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("failed to assemble the attestation manifest")]
    Assemble(#[source] ImageError),
    #[error("failed to encode or read an attestation: {0}")]
    Json(String),
}

/// Which attestations a build attaches to the images it pushes (`--sbom`, `--provenance`,
/// `--attest`), as the CLI resolved them (buildx's defaults applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AttestRequest {
    pub sbom: bool,
    pub provenance: Option<provenance::Mode>,
    /// Whether the provenance is buildx's default (`mode=min,inline-only=true`): attached to
    /// pushed images only, never written as a file of a `type=local`/`tar` output.
    pub provenance_default: bool,
}

impl AttestRequest {
    /// Whether any attestation is asked for.
    pub fn any(&self) -> bool {
        self.sbom || self.provenance.is_some()
    }

    /// Whether the user asked for an attestation (not only buildx's default provenance).
    pub fn explicit(&self) -> bool {
        self.sbom || (self.provenance.is_some() && !self.provenance_default)
    }
}

//! Errors from building, parsing and converting image documents.

use crate::{Digest, MediaType};

/// What went wrong with an image document; `what` names the document (e.g. "image manifest").
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("reading {what}: {source}")]
    Read {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is larger than the {limit}-byte limit; refusing to parse it")]
    TooLarge { what: &'static str, limit: u64 },
    #[error("parsing {what}: invalid JSON or field: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} contains `{field}`, a field of another document type; ambiguous documents are rejected (CVE-2021-41190)")]
    Ambiguous {
        what: &'static str,
        field: &'static str,
    },
    #[error("{what} has {}; only schemaVersion 2 is supported", describe_version(.found))]
    SchemaVersion {
        what: &'static str,
        found: Option<u64>,
    },
    #[error("{what} declares mediaType {found}, which is not a {what}")]
    WrongMediaType {
        what: &'static str,
        found: MediaType,
    },
    #[error("assembling image: {layers} layer descriptors but the config has {diff_ids} rootfs.diff_ids")]
    LayerCountMismatch { layers: usize, diff_ids: usize },
    #[error("storing {what}: {source}")]
    PutBlob {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "storing {what}: the blob store returned digest {actual} but the bytes hash to {expected}"
    )]
    SinkDigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("converting to Docker schema2: {media_type} has no Docker equivalent (use OCI media types, e.g. oci-mediatypes=true, or gzip compression)")]
    NoDockerEquivalent { media_type: MediaType },
    #[error("converting to Docker schema2: the manifest uses `{field}`, which Docker schema2 cannot express")]
    NoDockerField { field: &'static str },
}

fn describe_version(v: &Option<u64>) -> String {
    match v {
        Some(v) => format!("schemaVersion {v}"),
        None => "no numeric schemaVersion".to_string(),
    }
}

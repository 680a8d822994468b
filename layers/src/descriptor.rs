//! OCI content descriptors: what a manifest says about a blob.
//!
//! These are rbuild's own types, not `oci-spec`'s (which rbuild uses at its crate boundaries:
//! conversions in [`crate::oci_spec`]). What oci-spec 0.10 lacks for rbuild, checked by
//! `oci_spec::tests::oci_spec_lacks_what_the_docs_say`:
//! - deterministic bytes: its `annotations` are a `HashMap`, serialised in a per-process random
//!   order, so the same descriptor would give a different manifest digest on every run; here
//!   they are a `BTreeMap` (sorted keys, as Go's `encoding/json` writes a map);
//! - its `Platform` writes and reads `os.version` as `os_version` (and `os.features` as
//!   `os_features`), so a Windows base's version would be dropped on read and written under a
//!   key no other tool reads;
//! - `Hash`/`Ord` on `Platform` (rbuild keys maps by platform).
//!
//! Field order: `mediaType, digest, size, annotations, platform, artifactType`, the order of
//! image-spec's Go `Descriptor` (BuildKit's and containerd's), so that a descriptor carrying both
//! annotations and a platform (an index entry) has BuildKit's bytes; oci-spec writes the same
//! order with `urls` and `data`. `urls` and `data` are not carried (an
//! oci-spec descriptor with them does not convert, rather than losing them).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Digest, MediaType};

/// An OCI platform (`os`, `architecture`, optional `variant`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An OCI content descriptor (image-spec `descriptor.md`).
///
/// Annotations use a `BTreeMap` so that serialisation is byte-for-byte deterministic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: MediaType,
    pub digest: Digest,
    pub size: u64,
    // image-spec's Go `Descriptor` (BuildKit's) writes annotations before platform.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The content itself, base64 (image-spec `descriptor.md` "Embedded content": BuildKit's
    /// `DescriptorEmptyJSON` carries `{}` this way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
}

impl Descriptor {
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type,
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
            data: None,
            artifact_type: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// image-spec `specs-go/v1/descriptor.go` (what BuildKit and containerd serialise): size,
    /// then annotations, then platform.
    #[test]
    fn an_index_entry_writes_annotations_before_platform_as_image_spec_go_types_do() {
        let mut d = Descriptor::new(MediaType::OciImageManifest, Digest::sha256_of(b"m"), 7);
        d.annotations
            .insert("org.opencontainers.image.ref.name".into(), "v1".into());
        d.platform = Some(Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: None,
            variant: Some("v8".into()),
        });
        let json = serde_json::to_string(&d).expect("serialise");
        assert_eq!(
            json,
            format!(
                "{{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"{}\",\
                 \"size\":7,\"annotations\":{{\"org.opencontainers.image.ref.name\":\"v1\"}},\
                 \"platform\":{{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}}}}",
                Digest::sha256_of(b"m")
            )
        );
    }
}

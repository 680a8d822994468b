//! OCI image manifests and indexes (image-spec `manifest.md`, `image-index.md`), with
//! strict parsing and conversion to Docker schema2 media types.
//!
//! Serialisation is deterministic (fixed field order as in the image-spec Go types, `BTreeMap`
//! annotations). These are rbuild's own types rather than `oci-spec`'s `ImageManifest` and
//! `ImageIndex` (converted to and from them in [`crate::oci_spec`]): oci-spec 0.10 has the same
//! field order, but its `annotations` are a `HashMap` (random order, so no stable digest), its
//! descriptors' platforms lose `os.version` (see [`crate::descriptor`]), its parse has no size
//! cap and accepts the ambiguous documents refused below, and it has no Docker schema2
//! conversion. Parsing is deliberately strict where the spec leaves room for confusion:
//! - a document is read only up to a size cap ([`MAX_MANIFEST_BYTES`]), so a hostile registry
//!   or file cannot make us buffer gigabytes;
//! - `schemaVersion` must be 2;
//! - a manifest carrying `manifests`, or an index carrying `layers`/`config`, is rejected, and
//!   a declared `mediaType` must match the document kind (CVE-2021-41190, image-spec 1.0.2).

use std::collections::BTreeMap;
use std::io::Read;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::ImageError;
use crate::{Descriptor, MediaType};

/// Largest manifest or index we read (containerd and BuildKit use 4 MiB as well).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Largest image config we read; configs with long histories are bigger than manifests.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// An image manifest (`application/vnd.oci.image.manifest.v1+json` or Docker schema2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index (`application/vnd.oci.image.index.v1+json` or a Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<MediaType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The fields that tell document kinds apart, read before the typed parse.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    schema_version: Option<u64>,
    media_type: Option<MediaType>,
    manifests: Option<IgnoredAny>,
    layers: Option<IgnoredAny>,
    config: Option<IgnoredAny>,
}

/// Reads at most `limit` bytes of `r`; more is an error rather than a truncated document.
pub fn read_capped(r: impl Read, limit: u64, what: &'static str) -> Result<Vec<u8>, ImageError> {
    let mut buf = Vec::new();
    r.take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|source| ImageError::Read { what, source })?;
    if buf.len() as u64 > limit {
        return Err(ImageError::TooLarge { what, limit });
    }
    Ok(buf)
}

fn probe(bytes: &[u8], what: &'static str) -> Result<Probe, ImageError> {
    let p: Probe =
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json { what, source })?;
    if p.schema_version != Some(2) {
        return Err(ImageError::SchemaVersion {
            what,
            found: p.schema_version,
        });
    }
    Ok(p)
}

impl ImageManifest {
    const WHAT: &'static str = "image manifest";

    /// A new OCI manifest.
    pub fn new_oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        ImageManifest {
            schema_version: 2,
            media_type: Some(MediaType::OciImageManifest),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Parses a manifest, rejecting oversized, ambiguous and non-v2 documents.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ImageError> {
        let what = Self::WHAT;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ImageError::TooLarge {
                what,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let p = probe(bytes, what)?;
        if p.manifests.is_some() {
            return Err(ImageError::Ambiguous {
                what,
                field: "manifests",
            });
        }
        if let Some(mt) = p.media_type.filter(|m| !m.is_manifest()) {
            return Err(ImageError::WrongMediaType { what, found: mt });
        }
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json { what, source })
    }

    /// Reads (up to [`MAX_MANIFEST_BYTES`]) and parses a manifest.
    pub fn from_reader(r: impl Read) -> Result<Self, ImageError> {
        Self::from_slice(&read_capped(r, MAX_MANIFEST_BYTES, Self::WHAT)?)
    }

    /// The deterministic serialisation (compact JSON, fixed field order).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("manifest serialisation cannot fail: map keys are strings")
    }

    /// The same manifest with Docker schema2 media types (manifest, config and layers), for
    /// registries and tools that do not accept OCI ones. The config bytes are unchanged, so
    /// descriptors keep their digests. zstd layers, `subject` and `artifactType` have no
    /// Docker equivalent and are errors.
    pub fn to_docker_schema2(&self) -> Result<Self, ImageError> {
        if self.subject.is_some() {
            return Err(ImageError::NoDockerField { field: "subject" });
        }
        if self.artifact_type.is_some() {
            return Err(ImageError::NoDockerField {
                field: "artifactType",
            });
        }
        let mut out = self.clone();
        out.media_type = Some(MediaType::DockerManifest);
        out.config.media_type = match &self.config.media_type {
            MediaType::OciImageConfig | MediaType::DockerImageConfig => {
                MediaType::DockerImageConfig
            }
            other => {
                return Err(ImageError::NoDockerEquivalent {
                    media_type: other.clone(),
                })
            }
        };
        for l in &mut out.layers {
            l.media_type = l
                .media_type
                .layer_compression()
                .and_then(|c| c.docker_layer_media_type())
                .ok_or_else(|| ImageError::NoDockerEquivalent {
                    media_type: l.media_type.clone(),
                })?;
        }
        Ok(out)
    }
}

impl ImageIndex {
    const WHAT: &'static str = "image index";

    /// A new, empty OCI index.
    pub fn new_oci() -> Self {
        ImageIndex {
            schema_version: 2,
            media_type: Some(MediaType::OciImageIndex),
            artifact_type: None,
            manifests: Vec::new(),
            subject: None,
            annotations: BTreeMap::new(),
        }
    }

    /// Parses an index, rejecting oversized, ambiguous and non-v2 documents.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ImageError> {
        let what = Self::WHAT;
        if bytes.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(ImageError::TooLarge {
                what,
                limit: MAX_MANIFEST_BYTES,
            });
        }
        let p = probe(bytes, what)?;
        if p.layers.is_some() {
            return Err(ImageError::Ambiguous {
                what,
                field: "layers",
            });
        }
        if p.config.is_some() {
            return Err(ImageError::Ambiguous {
                what,
                field: "config",
            });
        }
        if let Some(mt) = p.media_type.filter(|m| !m.is_index()) {
            return Err(ImageError::WrongMediaType { what, found: mt });
        }
        serde_json::from_slice(bytes).map_err(|source| ImageError::Json { what, source })
    }

    /// Reads (up to [`MAX_MANIFEST_BYTES`]) and parses an index.
    pub fn from_reader(r: impl Read) -> Result<Self, ImageError> {
        Self::from_slice(&read_capped(r, MAX_MANIFEST_BYTES, Self::WHAT)?)
    }

    /// The deterministic serialisation (compact JSON, fixed field order).
    pub fn to_canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("index serialisation cannot fail: map keys are strings")
    }

    /// The same index as a Docker manifest list; entries must be manifests (OCI or Docker).
    pub fn to_docker_schema2(&self) -> Result<Self, ImageError> {
        if self.subject.is_some() {
            return Err(ImageError::NoDockerField { field: "subject" });
        }
        let mut out = self.clone();
        out.media_type = Some(MediaType::DockerManifestList);
        for m in &mut out.manifests {
            if !m.media_type.is_manifest() {
                return Err(ImageError::NoDockerEquivalent {
                    media_type: m.media_type.clone(),
                });
            }
            m.media_type = MediaType::DockerManifest;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// image-spec `manifest.md` "Example Image Manifest", re-typed.
    const SPEC_MANIFEST: &str = r#"{
  "schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {
    "mediaType": "application/vnd.oci.image.config.v1+json",
    "size": 7023,
    "digest": "sha256:b5b2b2c507a0944348e0303114d8d93aaaa081732b86451d9bce1f432a537bc7"
  },
  "layers": [
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "size": 32654,
      "digest": "sha256:9834876dcfb05cb167a5c24953eba58c4ac89b1adf57f28f2f9d09af107ee8f0"
    },
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "size": 16724,
      "digest": "sha256:3c3a4604a545cdc127456d94e421cd355bca5b528f4a9c1905b15da2eb4a4c6b"
    },
    {
      "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
      "size": 73109,
      "digest": "sha256:ec4b8955958665577945c89419d1af06b5f7636b4ac3da7f12184802ad867736"
    }
  ],
  "annotations": {
    "com.example.key1": "value1",
    "com.example.key2": "value2"
  }
}"#;

    /// image-spec `image-index.md` "Example Image Index", re-typed.
    const SPEC_INDEX: &str = r#"{
  "schemaVersion": 2,
  "manifests": [
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 7143,
      "digest": "sha256:e692418e4cbaf90ca69d05a66403747baa33ee08806650b51fab815ad7fc331f",
      "platform": {
        "architecture": "ppc64le",
        "os": "linux"
      }
    },
    {
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "size": 7682,
      "digest": "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270",
      "platform": {
        "architecture": "amd64",
        "os": "linux"
      }
    }
  ],
  "annotations": {
    "com.example.key1": "value1",
    "com.example.key2": "value2"
  }
}"#;

    fn value(s: &[u8]) -> serde_json::Value {
        serde_json::from_slice(s).expect("test JSON is valid")
    }

    #[test]
    fn spec_manifest_example_field_by_field() {
        let m = ImageManifest::from_slice(SPEC_MANIFEST.as_bytes()).unwrap();
        assert_eq!(m.schema_version, 2);
        assert_eq!(m.media_type, Some(MediaType::OciImageManifest));
        assert_eq!(m.config.media_type, MediaType::OciImageConfig);
        assert_eq!(m.config.size, 7023);
        assert_eq!(m.layers.len(), 3);
        assert_eq!(m.layers[1].size, 16724);
        assert!(m
            .layers
            .iter()
            .all(|l| l.media_type == MediaType::OciLayerGzip));
        assert_eq!(m.annotations["com.example.key2"], "value2");
        assert_eq!(
            value(&m.to_canonical_json()),
            value(SPEC_MANIFEST.as_bytes())
        );
    }

    #[test]
    fn spec_index_example_field_by_field() {
        let i = ImageIndex::from_slice(SPEC_INDEX.as_bytes()).unwrap();
        assert_eq!(i.media_type, None, "the example omits mediaType");
        assert_eq!(i.manifests.len(), 2);
        let p = i.manifests[0].platform.as_ref().unwrap();
        assert_eq!(
            (p.architecture.as_str(), p.os.as_str()),
            ("ppc64le", "linux")
        );
        assert_eq!(i.manifests[1].size, 7682);
        assert_eq!(value(&i.to_canonical_json()), value(SPEC_INDEX.as_bytes()));
    }

    #[test]
    fn canonical_field_order_is_fixed() {
        let m = ImageManifest::from_slice(SPEC_MANIFEST.as_bytes()).unwrap();
        let s = String::from_utf8(m.to_canonical_json()).unwrap();
        assert!(s.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"#));
        assert!(s.ends_with(
            r#""annotations":{"com.example.key1":"value1","com.example.key2":"value2"}}"#
        ));
        assert_eq!(m.to_canonical_json(), m.clone().to_canonical_json());
    }

    #[test]
    fn ambiguous_documents_rejected_cve_2021_41190() {
        let mut both = value(SPEC_MANIFEST.as_bytes());
        both["manifests"] = value(SPEC_INDEX.as_bytes())["manifests"].clone();
        let bytes = serde_json::to_vec(&both).unwrap();
        let err = ImageManifest::from_slice(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Ambiguous {
                    field: "manifests",
                    ..
                }
            ),
            "{err}"
        );
        let err = ImageIndex::from_slice(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::Ambiguous {
                    field: "layers",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("CVE-2021-41190"));
    }

    #[test]
    fn declared_media_type_must_match_document_kind() {
        let mut v = value(SPEC_INDEX.as_bytes());
        v["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        let err = ImageIndex::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(matches!(err, ImageError::WrongMediaType { .. }), "{err}");
    }

    #[test]
    fn unknown_schema_version_rejected() {
        for sv in [
            serde_json::json!(1),
            serde_json::json!(3),
            serde_json::Value::Null,
        ] {
            let mut v = value(SPEC_MANIFEST.as_bytes());
            v["schemaVersion"] = sv;
            let err = ImageManifest::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap_err();
            assert!(matches!(err, ImageError::SchemaVersion { .. }), "{err}");
        }
    }

    #[test]
    fn oversized_json_rejected_before_parsing() {
        let mut big = SPEC_MANIFEST.as_bytes().to_vec();
        big.resize(MAX_MANIFEST_BYTES as usize + 1, b' ');
        let err = ImageManifest::from_reader(&big[..]).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { .. }), "{err}");
        assert!(matches!(
            ImageIndex::from_slice(&big).unwrap_err(),
            ImageError::TooLarge { .. }
        ));
        // Exactly at the cap is fine (trailing whitespace is valid JSON).
        big.truncate(MAX_MANIFEST_BYTES as usize);
        assert!(ImageManifest::from_reader(&big[..]).is_ok());
    }

    #[test]
    fn docker_schema2_conversion_swaps_media_types() {
        let m = ImageManifest::from_slice(SPEC_MANIFEST.as_bytes()).unwrap();
        let d = m.to_docker_schema2().unwrap();
        assert_eq!(d.media_type, Some(MediaType::DockerManifest));
        assert_eq!(d.config.media_type, MediaType::DockerImageConfig);
        assert_eq!(d.config.digest, m.config.digest);
        assert!(d
            .layers
            .iter()
            .all(|l| l.media_type == MediaType::DockerLayerGzip));
        let mut z = m.clone();
        z.layers[0].media_type = MediaType::OciLayerZstd;
        let err = z.to_docker_schema2().unwrap_err();
        assert!(
            matches!(
                err,
                ImageError::NoDockerEquivalent {
                    media_type: MediaType::OciLayerZstd
                }
            ),
            "{err}"
        );

        let i = ImageIndex::from_slice(SPEC_INDEX.as_bytes())
            .unwrap()
            .to_docker_schema2()
            .unwrap();
        assert_eq!(i.media_type, Some(MediaType::DockerManifestList));
        assert!(i
            .manifests
            .iter()
            .all(|m| m.media_type == MediaType::DockerManifest));
    }

    #[test]
    fn error_messages_golden() {
        let mut both = value(SPEC_MANIFEST.as_bytes());
        both["manifests"] = serde_json::json!([]);
        let both = serde_json::to_vec(&both).unwrap();
        let mut v1 = value(SPEC_MANIFEST.as_bytes());
        v1["schemaVersion"] = 1.into();
        let mut zstd = ImageManifest::from_slice(SPEC_MANIFEST.as_bytes()).unwrap();
        zstd.layers[2].media_type = MediaType::OciLayerZstd;
        let messages = [
            ImageManifest::from_slice(&both).unwrap_err().to_string(),
            ImageIndex::from_slice(&both).unwrap_err().to_string(),
            ImageManifest::from_slice(&serde_json::to_vec(&v1).unwrap())
                .unwrap_err()
                .to_string(),
            ImageManifest::from_slice(SPEC_INDEX.as_bytes())
                .unwrap_err()
                .to_string(),
            ImageManifest::from_reader(&vec![b' '; MAX_MANIFEST_BYTES as usize + 1][..])
                .unwrap_err()
                .to_string(),
            ImageManifest::from_slice(br#"{"schemaVersion":2,"config":{}}"#)
                .unwrap_err()
                .to_string(),
            zstd.to_docker_schema2().unwrap_err().to_string(),
        ];
        insta::assert_snapshot!(messages.join("\n"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = ImageManifest::from_slice(&bytes);
            let _ = ImageIndex::from_slice(&bytes);
        }
    }
}

//! Conversions between rbuild's descriptors, platforms, manifests and indexes and the `oci-spec`
//! crate's (feature `oci-spec`, turned on by `rbuild-registry`, which re-exports the crate), so
//! a library user can hand rbuild oci-spec values and get them back.
//!
//! rbuild → oci-spec never loses anything. oci-spec → rbuild refuses (rather than drops) what
//! rbuild's types cannot carry — a descriptor's `urls` or `data`, a platform's `os.features` or
//! `features` — so a converted document never silently describes something else. Annotations
//! go from oci-spec's `HashMap` to rbuild's `BTreeMap`: that is the point of converting (see
//! [`crate::descriptor`] for why the canonical types are rbuild's).

use std::collections::{BTreeMap, HashMap};

use oci_spec::image as oci;

use crate::image::manifest::{ImageIndex, ImageManifest};
use crate::{Descriptor, Digest, MediaType, Platform};

/// Why a value cannot be converted.
#[derive(Debug, thiserror::Error)]
pub enum OciSpecError {
    #[error("converting an oci-spec {what}: its {field} cannot be carried by rbuild's type")]
    Unsupported {
        what: &'static str,
        field: &'static str,
    },
    #[error("converting digest {digest:?} to or from oci-spec: {reason}")]
    Digest { digest: String, reason: String },
    #[error("building an oci-spec {what}: {reason}")]
    Build { what: &'static str, reason: String },
}

fn media_type_to_oci(m: &MediaType) -> oci::MediaType {
    oci::MediaType::from(m.as_str())
}

fn media_type_from_oci(m: &oci::MediaType) -> MediaType {
    let s = m.to_string();
    match s.parse::<MediaType>() {
        Ok(parsed) => parsed,
        Err(never) => match never {},
    }
}

fn digest_to_oci(d: &Digest) -> Result<oci::Digest, OciSpecError> {
    d.to_string()
        .parse()
        .map_err(|e: oci_spec::OciSpecError| OciSpecError::Digest {
            digest: d.to_string(),
            reason: e.to_string(),
        })
}

fn digest_from_oci(d: &oci::Digest) -> Result<Digest, OciSpecError> {
    d.to_string()
        .parse()
        .map_err(|e: crate::DigestError| OciSpecError::Digest {
            digest: d.to_string(),
            reason: e.to_string(),
        })
}

fn annotations_to_oci(a: &BTreeMap<String, String>) -> Option<HashMap<String, String>> {
    (!a.is_empty()).then(|| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn annotations_from_oci(a: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    a.map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

impl From<&Platform> for oci::Platform {
    fn from(p: &Platform) -> oci::Platform {
        let mut out = oci::Platform::default();
        out.set_architecture(oci::Arch::from(p.architecture.as_str()));
        out.set_os(oci::Os::from(p.os.as_str()));
        out.set_os_version(p.os_version.clone());
        out.set_variant(p.variant.clone());
        out
    }
}

impl TryFrom<&oci::Platform> for Platform {
    type Error = OciSpecError;

    fn try_from(p: &oci::Platform) -> Result<Platform, OciSpecError> {
        let unsupported = |field| OciSpecError::Unsupported {
            what: "platform",
            field,
        };
        if p.os_features().is_some() {
            return Err(unsupported("os.features"));
        }
        if p.features().is_some() {
            return Err(unsupported("features"));
        }
        Ok(Platform {
            architecture: p.architecture().to_string(),
            os: p.os().to_string(),
            os_version: p.os_version().clone(),
            variant: p.variant().clone(),
        })
    }
}

impl TryFrom<&Descriptor> for oci::Descriptor {
    type Error = OciSpecError;

    fn try_from(d: &Descriptor) -> Result<oci::Descriptor, OciSpecError> {
        let mut out = oci::Descriptor::new(
            media_type_to_oci(&d.media_type),
            d.size,
            digest_to_oci(&d.digest)?,
        );
        out.set_platform(d.platform.as_ref().map(oci::Platform::from));
        out.set_annotations(annotations_to_oci(&d.annotations));
        out.set_artifact_type(d.artifact_type.as_ref().map(media_type_to_oci));
        out.set_data(d.data.clone());
        Ok(out)
    }
}

impl TryFrom<&oci::Descriptor> for Descriptor {
    type Error = OciSpecError;

    fn try_from(d: &oci::Descriptor) -> Result<Descriptor, OciSpecError> {
        let unsupported = |field| OciSpecError::Unsupported {
            what: "descriptor",
            field,
        };
        if d.urls().is_some() {
            return Err(unsupported("urls"));
        }
        Ok(Descriptor {
            media_type: media_type_from_oci(d.media_type()),
            digest: digest_from_oci(d.digest())?,
            size: d.size(),
            platform: d.platform().as_ref().map(Platform::try_from).transpose()?,
            annotations: annotations_from_oci(d.annotations().as_ref()),
            data: d.data().clone(),
            artifact_type: d.artifact_type().as_ref().map(media_type_from_oci),
        })
    }
}

fn descriptors_to_oci(ds: &[Descriptor]) -> Result<Vec<oci::Descriptor>, OciSpecError> {
    ds.iter().map(oci::Descriptor::try_from).collect()
}

fn descriptors_from_oci(ds: &[oci::Descriptor]) -> Result<Vec<Descriptor>, OciSpecError> {
    ds.iter().map(Descriptor::try_from).collect()
}

impl TryFrom<&ImageManifest> for oci::ImageManifest {
    type Error = OciSpecError;

    fn try_from(m: &ImageManifest) -> Result<oci::ImageManifest, OciSpecError> {
        let mut out = oci::ImageManifestBuilder::default()
            .schema_version(m.schema_version)
            .config(oci::Descriptor::try_from(&m.config)?)
            .layers(descriptors_to_oci(&m.layers)?)
            .build()
            .map_err(|e| OciSpecError::Build {
                what: "image manifest",
                reason: e.to_string(),
            })?;
        out.set_media_type(m.media_type.as_ref().map(media_type_to_oci));
        out.set_artifact_type(m.artifact_type.as_ref().map(media_type_to_oci));
        out.set_subject(
            m.subject
                .as_ref()
                .map(oci::Descriptor::try_from)
                .transpose()?,
        );
        out.set_annotations(annotations_to_oci(&m.annotations));
        Ok(out)
    }
}

impl TryFrom<&oci::ImageManifest> for ImageManifest {
    type Error = OciSpecError;

    fn try_from(m: &oci::ImageManifest) -> Result<ImageManifest, OciSpecError> {
        Ok(ImageManifest {
            schema_version: m.schema_version(),
            media_type: m.media_type().as_ref().map(media_type_from_oci),
            artifact_type: m.artifact_type().as_ref().map(media_type_from_oci),
            config: Descriptor::try_from(m.config())?,
            layers: descriptors_from_oci(m.layers())?,
            subject: m.subject().as_ref().map(Descriptor::try_from).transpose()?,
            annotations: annotations_from_oci(m.annotations().as_ref()),
        })
    }
}

impl TryFrom<&ImageIndex> for oci::ImageIndex {
    type Error = OciSpecError;

    fn try_from(i: &ImageIndex) -> Result<oci::ImageIndex, OciSpecError> {
        let mut out = oci::ImageIndexBuilder::default()
            .schema_version(i.schema_version)
            .manifests(descriptors_to_oci(&i.manifests)?)
            .build()
            .map_err(|e| OciSpecError::Build {
                what: "image index",
                reason: e.to_string(),
            })?;
        out.set_media_type(i.media_type.as_ref().map(media_type_to_oci));
        out.set_artifact_type(i.artifact_type.as_ref().map(media_type_to_oci));
        out.set_subject(
            i.subject
                .as_ref()
                .map(oci::Descriptor::try_from)
                .transpose()?,
        );
        out.set_annotations(annotations_to_oci(&i.annotations));
        Ok(out)
    }
}

impl TryFrom<&oci::ImageIndex> for ImageIndex {
    type Error = OciSpecError;

    fn try_from(i: &oci::ImageIndex) -> Result<ImageIndex, OciSpecError> {
        Ok(ImageIndex {
            schema_version: i.schema_version(),
            media_type: i.media_type().as_ref().map(media_type_from_oci),
            artifact_type: i.artifact_type().as_ref().map(media_type_from_oci),
            manifests: descriptors_from_oci(i.manifests())?,
            subject: i.subject().as_ref().map(Descriptor::try_from).transpose()?,
            annotations: annotations_from_oci(i.annotations().as_ref()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(seed: &[u8], media_type: MediaType) -> Descriptor {
        Descriptor::new(media_type, Digest::sha256_of(seed), seed.len() as u64)
    }

    fn sample_manifest() -> ImageManifest {
        let mut layer = desc(b"layer", MediaType::OciLayerZstd);
        layer
            .annotations
            .insert("org.opencontainers.image.title".into(), "l".into());
        let mut m = ImageManifest::new_oci(
            desc(b"config", MediaType::OciImageConfig),
            vec![layer, desc(b"other", MediaType::Other("x/y".into()))],
        );
        m.annotations.insert("b".into(), "2".into());
        m.annotations.insert("a".into(), "1".into());
        m.subject = Some(desc(b"subject", MediaType::OciImageManifest));
        m
    }

    #[test]
    fn a_manifest_round_trips_through_oci_spec_to_the_same_canonical_bytes() {
        let m = sample_manifest();
        let theirs = oci::ImageManifest::try_from(&m).expect("to oci-spec");
        assert_eq!(theirs.layers().len(), 2);
        assert_eq!(
            theirs.config().media_type(),
            &oci::MediaType::ImageConfig,
            "known media types map to oci-spec's variants"
        );
        let back = ImageManifest::try_from(&theirs).expect("from oci-spec");
        assert_eq!(back, m);
        assert_eq!(back.to_canonical_json(), m.to_canonical_json());
    }

    #[test]
    fn an_index_with_platforms_round_trips() {
        let mut d = desc(b"m", MediaType::OciImageManifest);
        d.platform = Some(Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            os_version: Some("10.0".into()),
            variant: Some("v8".into()),
        });
        let mut i = ImageIndex::new_oci();
        i.manifests = vec![d, desc(b"n", MediaType::OciImageManifest)];
        i.annotations.insert("k".into(), "v".into());
        let theirs = oci::ImageIndex::try_from(&i).expect("to oci-spec");
        let p = theirs.manifests()[0].platform().as_ref().expect("platform");
        assert_eq!(p.architecture(), &oci::Arch::ARM64);
        assert_eq!(p.os(), &oci::Os::Linux);
        assert_eq!(ImageIndex::try_from(&theirs).expect("from oci-spec"), i);
    }

    #[test]
    fn what_rbuild_cannot_carry_is_refused_not_dropped() {
        let mut d = oci::Descriptor::try_from(&desc(b"x", MediaType::OciLayerGzip)).expect("to");
        d.set_urls(Some(vec!["https://example.com/x".into()]));
        assert!(matches!(
            Descriptor::try_from(&d),
            Err(OciSpecError::Unsupported { field: "urls", .. })
        ));
        let mut p = oci::Platform::from(&Platform {
            architecture: "amd64".into(),
            os: "windows".into(),
            os_version: None,
            variant: None,
        });
        p.set_os_features(Some(vec!["win32k".into()]));
        assert!(matches!(
            Platform::try_from(&p),
            Err(OciSpecError::Unsupported {
                field: "os.features",
                ..
            })
        ));
    }

    /// What the module docs of `descriptor.rs` and `image/manifest.rs` say oci-spec lacks,
    /// checked against the version in Cargo.lock: when one of these fails, oci-spec changed
    /// and those docs need another look.
    #[test]
    fn oci_spec_lacks_what_the_docs_say() {
        // Platform: `os.version` is written as `os_version`, and `os.version` is not read.
        let p = oci::Platform::from(&Platform {
            architecture: "amd64".into(),
            os: "windows".into(),
            os_version: Some("10.0.1".into()),
            variant: None,
        });
        let json = serde_json::to_string(&p).expect("serialise");
        assert!(json.contains(r#""os_version""#), "{json}");
        let read: oci::Platform = serde_json::from_str(
            r#"{"architecture":"amd64","os":"windows","os.version":"10.0.1"}"#,
        )
        .expect("parse");
        assert_eq!(read.os_version(), &None);
        // Annotations are a HashMap: their serialised order is not the sorted one (checked
        // over a few maps, each with its own random hasher state).
        let unsorted = (0..8).any(|_| {
            let mut d = oci::Descriptor::try_from(&desc(b"x", MediaType::OciLayerGzip))
                .expect("to oci-spec");
            d.set_annotations(Some(
                (0..16)
                    .map(|i| (format!("k{i:02}"), String::new()))
                    .collect(),
            ));
            let json = serde_json::to_string(&d).expect("serialise");
            !json.contains(r#""k00":"","k01":"","k02":"""#)
        });
        assert!(unsorted);
        // A manifest that also carries `manifests` (CVE-2021-41190's ambiguity) parses.
        let d = r#"{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}"#;
        let ambiguous =
            format!(r#"{{"schemaVersion":2,"config":{d},"layers":[],"manifests":[{d}]}}"#);
        assert!(serde_json::from_str::<oci::ImageManifest>(&ambiguous).is_ok());
        assert!(ImageManifest::from_slice(ambiguous.as_bytes()).is_err());
    }
}

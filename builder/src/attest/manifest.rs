//! The attestation manifest (BuildKit's `docs/attestations/attestation-storage.md`, the format
//! BuildKit writes with `oci-artifact=false`, its default before compatibility version 0.31 and
//! the one `docker buildx imagetools`, cosign and crane have read for years): an image manifest
//! whose layers are in-toto statements (`application/vnd.in-toto+json`, annotated with
//! `in-toto.io/predicate-type`), whose config is a placeholder image config for platform
//! `unknown/unknown`, and whose index descriptor carries `vnd.docker.reference.type:
//! attestation-manifest` and `vnd.docker.reference.digest` (the image manifest it describes).

use std::collections::BTreeMap;

use rbuild_layers::image::{BlobSink, ImageManifest, MediaTypes};
use rbuild_layers::{Descriptor, MediaType, Platform};

use super::intoto::MEDIA_TYPE;
use super::AttestError;

/// Annotation naming an attestation's predicate type on its layer descriptor.
pub const PREDICATE_TYPE_ANNOTATION: &str = "in-toto.io/predicate-type";
/// Index-descriptor annotation: what kind of reference the manifest is.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
/// Index-descriptor annotation: the manifest the attestations describe.
pub const REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
/// The value of [`REFERENCE_TYPE`] for an attestation manifest.
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// One statement to store: its predicate type and its bytes.
#[derive(Debug, Clone)]
pub struct Statement {
    pub predicate_type: String,
    pub bytes: Vec<u8>,
}

/// The platform attestation manifests are listed under, so that no runtime picks one.
pub fn unknown_platform() -> Platform {
    Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        os_version: None,
        variant: None,
    }
}

/// Stores `statements` (in order) and an attestation manifest over them through `sink`, and
/// returns the manifest's descriptor for the index that lists `image` (the image manifest's
/// descriptor).
pub fn store_attestation_manifest(
    sink: &dyn BlobSink,
    image: &Descriptor,
    statements: &[Statement],
    media_types: MediaTypes,
) -> Result<Descriptor, AttestError> {
    let oci = media_types == MediaTypes::Oci;
    let mut layers = Vec::new();
    for s in statements {
        let mut d = sink
            .put_bytes(&MediaType::Other(MEDIA_TYPE.into()), &s.bytes)
            .map_err(|source| AttestError::Store {
                what: "in-toto statement",
                source,
            })?;
        // BuildKit drops layer annotations with Docker media types (they have none).
        if oci {
            d.annotations = BTreeMap::from([(
                PREDICATE_TYPE_ANNOTATION.to_string(),
                s.predicate_type.clone(),
            )]);
        }
        layers.push(d);
    }
    let config = config_bytes(&layers);
    let config_type = if oci {
        MediaType::OciImageConfig
    } else {
        MediaType::DockerImageConfig
    };
    let config = sink
        .put_bytes(&config_type, &config)
        .map_err(|source| AttestError::Store {
            what: "config",
            source,
        })?;
    let mut manifest = ImageManifest::new_oci(config, layers);
    if !oci {
        manifest.media_type = Some(MediaType::DockerManifest);
    }
    let manifest_type = manifest
        .media_type
        .clone()
        .unwrap_or(MediaType::OciImageManifest);
    let mut d = sink
        .put_bytes(&manifest_type, &manifest.to_canonical_json())
        .map_err(|source| AttestError::Store {
            what: "manifest",
            source,
        })?;
    d.annotations = BTreeMap::from([
        (REFERENCE_DIGEST.to_string(), image.digest.to_string()),
        (REFERENCE_TYPE.to_string(), ATTESTATION_MANIFEST.to_string()),
    ]);
    d.platform = Some(unknown_platform());
    Ok(d)
}

/// BuildKit's `attestationsConfig`: Go's `ocispec.Image` for `unknown/unknown` whose diffIDs
/// are the statements' digests (they are stored uncompressed), in Go's field order.
fn config_bytes(layers: &[Descriptor]) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.digest.to_string()).collect();
    // Written by hand: serde_json would sort the keys, Go writes them in struct order.
    let ids = serde_json::to_string(&diff_ids).expect("strings serialise");
    format!(
        r#"{{"architecture":"unknown","os":"unknown","config":{{}},"rootfs":{{"type":"layers","diff_ids":{ids}}}}}"#
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::io;

    use rbuild_layers::Digest;

    use super::*;

    #[derive(Default)]
    struct Mem(RefCell<BTreeMap<Digest, Vec<u8>>>);
    impl BlobSink for Mem {
        fn put_bytes(&self, m: &MediaType, b: &[u8]) -> io::Result<Descriptor> {
            let d = Digest::sha256_of(b);
            self.0.borrow_mut().insert(d.clone(), b.to_vec());
            Ok(Descriptor::new(m.clone(), d, b.len() as u64))
        }
    }

    #[test]
    fn attestation_manifest_shape() {
        let sink = Mem::default();
        let image = Descriptor::new(
            MediaType::OciImageManifest,
            Digest::sha256_of(b"image"),
            100,
        );
        let statements = [
            Statement {
                predicate_type: "https://spdx.dev/Document".into(),
                bytes: br#"{"sbom":1}"#.to_vec(),
            },
            Statement {
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                bytes: br#"{"prov":1}"#.to_vec(),
            },
        ];
        let d = store_attestation_manifest(&sink, &image, &statements, MediaTypes::Oci).unwrap();
        let blobs = sink.0.borrow();
        let index_entry = serde_json::to_string_pretty(&d).unwrap();
        let manifest = String::from_utf8(blobs[&d.digest].clone()).unwrap();
        let m: ImageManifest = serde_json::from_str(&manifest).unwrap();
        let config = String::from_utf8(blobs[&m.config.digest].clone()).unwrap();
        let config_value: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(
            config_value["rootfs"]["diff_ids"][1],
            m.layers[1].digest.to_string()
        );
        insta::assert_snapshot!(format!(
            "index entry:\n{index_entry}\nmanifest:\n{manifest}\nconfig:\n{config}"
        ));
    }
}

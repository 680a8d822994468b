//! The attestation manifest (BuildKit's `docs/attestations/attestation-storage.md` and
//! `exporter/containerimage/writer.go` `commitAttestationsManifest`): an image manifest whose
//! layers are in-toto statements (`application/vnd.in-toto+json`, annotated with
//! `in-toto.io/predicate-type`), listed in the index under platform `unknown/unknown` with
//! `vnd.docker.reference.type: attestation-manifest` and `vnd.docker.reference.digest` (the
//! image manifest it describes), in one of two forms:
//!
//! * the OCI artifact form (`oci-artifact=true`, BuildKit's default with OCI media types since
//!   its compatibility version 0.31): `artifactType`
//!   `application/vnd.docker.attestation.manifest.v1+json`, the empty config
//!   (`application/vnd.oci.empty.v1+json`, `{}` embedded), and a `subject` naming the image
//!   manifest, so that registries with the OCI 1.1 referrers API list it;
//! * the earlier form (`oci-artifact=false`, and with Docker media types): a placeholder image
//!   config for `unknown/unknown` whose diffIDs are the statements' digests, no subject.

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

/// `artifactType` of an attestation manifest in the OCI artifact form.
pub const ATTESTATION_ARTIFACT_TYPE: &str = "application/vnd.docker.attestation.manifest.v1+json";

/// image-spec's empty descriptor's media type (`application/vnd.oci.empty.v1+json`).
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

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
/// descriptor). `artifact`: the OCI artifact form (see the module docs; OCI media types only).
pub fn store_attestation_manifest(
    sink: &dyn BlobSink,
    image: &Descriptor,
    statements: &[Statement],
    media_types: MediaTypes,
    artifact: bool,
) -> Result<Descriptor, AttestError> {
    let oci = media_types == MediaTypes::Oci;
    let artifact = artifact && oci;
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
    let config = if artifact {
        // image-spec's `DescriptorEmptyJSON`: `{}`, also embedded in the descriptor.
        let mut d = sink
            .put_bytes(&MediaType::Other(EMPTY_JSON.into()), b"{}")
            .map_err(|source| AttestError::Store {
                what: "config",
                source,
            })?;
        d.data = Some("e30=".into());
        d
    } else {
        let config_type = if oci {
            MediaType::OciImageConfig
        } else {
            MediaType::DockerImageConfig
        };
        sink.put_bytes(&config_type, &config_bytes(&layers))
            .map_err(|source| AttestError::Store {
                what: "config",
                source,
            })?
    };
    let mut manifest = ImageManifest::new_oci(config, layers);
    if !oci {
        manifest.media_type = Some(MediaType::DockerManifest);
    }
    if artifact {
        manifest.artifact_type = Some(MediaType::Other(ATTESTATION_ARTIFACT_TYPE.into()));
        manifest.subject = Some(Descriptor::new(
            image.media_type.clone(),
            image.digest.clone(),
            image.size,
        ));
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
        let d =
            store_attestation_manifest(&sink, &image, &statements, MediaTypes::Oci, false).unwrap();
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

    /// BuildKit's `commitAttestationsManifest` with `ociArtifact`: the empty config embedded,
    /// the artifact type, the image manifest as subject; the index entry as in the earlier
    /// form.
    #[test]
    fn attestation_manifest_artifact_form() {
        let sink = Mem::default();
        let image = Descriptor::new(
            MediaType::OciImageManifest,
            Digest::sha256_of(b"image"),
            100,
        );
        let statements = [Statement {
            predicate_type: "https://slsa.dev/provenance/v1".into(),
            bytes: br#"{"prov":1}"#.to_vec(),
        }];
        let d =
            store_attestation_manifest(&sink, &image, &statements, MediaTypes::Oci, true).unwrap();
        let manifest = String::from_utf8(sink.0.borrow()[&d.digest].clone()).unwrap();
        let m: ImageManifest = serde_json::from_str(&manifest).unwrap();
        assert_eq!(
            m.config.digest.to_string(),
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        assert_eq!(sink.0.borrow()[&m.config.digest], b"{}");
        assert_eq!(m.subject.as_ref().map(|s| &s.digest), Some(&image.digest));
        // With Docker media types there is no artifact form (BuildKit: oci-artifact needs
        // oci-mediatypes).
        let docker =
            store_attestation_manifest(&sink, &image, &statements, MediaTypes::Docker, true)
                .unwrap();
        let docker: ImageManifest =
            serde_json::from_slice(&sink.0.borrow()[&docker.digest]).unwrap();
        assert!(docker.subject.is_none() && docker.artifact_type.is_none());
        insta::assert_snapshot!(format!(
            "index entry:\n{}\nmanifest:\n{manifest}",
            serde_json::to_string_pretty(&d).unwrap()
        ));
    }
}

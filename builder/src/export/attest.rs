//! Attestations of built images for their outputs: the SBOM and provenance predicates
//! (`crate::attest`) of each platform's image, then, as BuildKit writes them:
//!
//! * for a push or an OCI layout ([`attested_root`]): an attestation manifest per image
//!   ([`attestation_manifest`]) and an image index listing every platform's image manifest
//!   (with its platform) and then the attestation manifests — even for one platform. The image
//!   manifests are untouched: the same digests with and without attestations.
//! * for a `type=local` or `type=tar` output ([`attestation_files`]): each statement as a file
//!   beside the filesystem (`provenance.json`, `sbom.spdx.json`), whose subjects are the
//!   output's regular files (BuildKit's `exporter/local/fs.go`); attestations BuildKit marks
//!   inline-only (buildx's default provenance) are not written there.

use std::path::{Path, PathBuf};

use rbuild_layers::image::{ExtraManifest, Image, ImageManifest, ImageRoot, ImageSet, MediaTypes};
use rbuild_layers::store::Store;
use rbuild_layers::{Digest, MediaType};

use crate::attest::manifest::{store_attestation_manifest, Statement};
use crate::attest::provenance::{self, ProvenanceInput};
use crate::attest::sbom::{self, DocumentInfo};
use crate::attest::{intoto, AttestError, AttestRequest};
use crate::solver::seams::{FetchError, LayerSource};

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
        source: rbuild_layers::image::ImageError,
    },
    #[error("writing the attestation {} of {target}", path.display())]
    File {
        target: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// One attestation of an image, before it names its subjects.
#[derive(Debug, Clone)]
pub struct Predicate {
    pub predicate_type: &'static str,
    /// Its file name in a `type=local` output (BuildKit's attestation path).
    pub path: &'static str,
    pub value: serde_json::Value,
    /// buildx's default provenance (`inline-only=true`): attached to images, never written
    /// as a file.
    pub inline_only: bool,
}

/// What is asked of one target: its name, image names and the request.
pub struct AttestTarget<'a> {
    pub target: &'a str,
    pub names: &'a [String],
    pub request: &'a AttestRequest,
    /// The attestation manifests' OCI artifact form (`oci-artifact`, see `attest::manifest`).
    pub oci_artifact: bool,
}

/// The predicates of `image` (one platform's image of `t`) that `t.request` asks for.
/// `provenance` is the build's record for that platform; `layers` brings into the store the
/// layers it lacks (lazily pulled bases) for the SBOM's scan.
pub fn predicates(
    store: &Store,
    layers: &dyn LayerSource,
    t: &AttestTarget<'_>,
    image: &Image,
    provenance: Option<&ProvenanceInput>,
) -> Result<Vec<Predicate>, AttestExportError> {
    let attest_err = |source| AttestExportError::Attest {
        target: t.target.to_string(),
        source,
    };
    let json = |v: serde_json::Result<serde_json::Value>| {
        v.map_err(|e| attest_err(AttestError::Json(e.to_string())))
    };
    let mut out = Vec::new();
    if t.request.sbom {
        layers
            .fetch(store, &image.manifest.layers, &|_| {})
            .map_err(|source| AttestExportError::Fetch {
                target: t.target.to_string(),
                source,
            })?;
        let tree = sbom::scan_image(store, image).map_err(attest_err)?;
        let packages = sbom::packages(&tree);
        let name = t
            .names
            .first()
            .cloned()
            .unwrap_or_else(|| t.target.to_string());
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
        out.push(Predicate {
            predicate_type: sbom::PREDICATE_TYPE,
            path: "sbom.spdx.json",
            value: json(serde_json::to_value(&doc))?,
            inline_only: false,
        });
    }
    if let (Some(mode), Some(input)) = (t.request.provenance, provenance) {
        let mut input = input.clone();
        input.mode = mode;
        out.push(Predicate {
            predicate_type: provenance::PREDICATE_TYPE,
            path: "provenance.json",
            value: json(serde_json::to_value(provenance::predicate(&input)))?,
            inline_only: t.request.provenance_default,
        });
    }
    Ok(out)
}

/// Stores the attestation manifest of `image` over `predicates` (subjects: the image manifest
/// under each name) and returns it as an index entry with its blobs.
pub fn attestation_manifest(
    store: &Store,
    t: &AttestTarget<'_>,
    image: &Image,
    predicates: &[Predicate],
) -> Result<ExtraManifest, AttestExportError> {
    let attest_err = |source| AttestExportError::Attest {
        target: t.target.to_string(),
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
    let subjects = intoto::subjects(t.names, &platform, &image.manifest_descriptor.digest);
    let statements: Vec<Statement> = predicates
        .iter()
        .map(|p| Statement {
            predicate_type: p.predicate_type.into(),
            bytes: intoto::statement_bytes(p.predicate_type, &subjects, &p.value),
        })
        .collect();
    let media_types = match image.manifest_descriptor.media_type {
        MediaType::DockerManifest => MediaTypes::Docker,
        _ => MediaTypes::Oci,
    };
    let descriptor = store_attestation_manifest(
        store,
        &image.manifest_descriptor,
        &statements,
        media_types,
        t.oci_artifact,
    )
    .map_err(attest_err)?;
    let manifest = store
        .open_blob(&descriptor.digest)
        .map_err(|e| {
            attest_err(AttestError::Store {
                what: "attestation manifest",
                source: std::io::Error::other(e),
            })
        })
        .and_then(|r| {
            ImageManifest::from_reader(r).map_err(|e| attest_err(AttestError::Assemble(e)))
        })?;
    let blobs = std::iter::once(manifest.config.digest.clone())
        .chain(manifest.layers.iter().map(|l| l.digest.clone()))
        .collect();
    Ok(ExtraManifest { descriptor, blobs })
}

/// The target's root with attestations: an index of every platform's image manifest (in
/// order), then `attestations`, keeping a multi-platform index's annotations and its
/// descriptor's.
pub fn attested_root(
    store: &Store,
    target: &str,
    root: &ImageRoot,
    attestations: Vec<ExtraManifest>,
) -> Result<ImageRoot, AttestExportError> {
    let (annotations, descriptor_annotations) = match root {
        ImageRoot::Multi(s) => (
            s.index.annotations.clone(),
            s.index_descriptor.annotations.clone(),
        ),
        ImageRoot::Single(_) => Default::default(),
    };
    let mut set = ImageSet::assemble_with(root.images().to_vec(), attestations, annotations, store)
        .map_err(|source| AttestExportError::Index {
            target: target.to_string(),
            source,
        })?;
    set.index_descriptor
        .annotations
        .extend(descriptor_annotations);
    Ok(ImageRoot::Multi(set))
}

/// Writes `predicates` as statement files into `dir` (a `type=local` output's filesystem of one
/// image, already written), as BuildKit's local exporter does: subjects are the regular files
/// under `dir` with their sha256 (paths relative to it, sorted), files `provenance.json` and
/// `sbom.spdx.json`, indented JSON, mode 0600, mtime `epoch` when the user chose one.
/// Inline-only predicates are skipped.
pub fn attestation_files(
    target: &str,
    dir: &Path,
    predicates: &[Predicate],
    epoch: Option<i64>,
) -> Result<(), AttestExportError> {
    let fail = |path: &Path, source| AttestExportError::File {
        target: target.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let files: Vec<&Predicate> = predicates.iter().filter(|p| !p.inline_only).collect();
    if files.is_empty() {
        return Ok(());
    }
    let subjects = file_subjects(dir).map_err(|e| fail(dir, e))?;
    for p in files {
        let statement = intoto::Statement {
            statement_type: intoto::STATEMENT_TYPE,
            predicate_type: p.predicate_type,
            subject: &subjects,
            predicate: &p.value,
        };
        let bytes = serde_json::to_vec_pretty(&statement)
            .map_err(|e| fail(dir, std::io::Error::other(e)))?;
        let path = dir.join(p.path);
        if std::fs::symlink_metadata(&path).is_ok() {
            // The image has a file of that name: BuildKit refuses duplicate paths too.
            return Err(fail(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "the image's filesystem has a file of this name",
                ),
            ));
        }
        let opts = rbuild_layers::atomic::Options::new().mode(rbuild_layers::atomic::Mode::Private);
        rbuild_layers::atomic::write(&path, &bytes, opts)
            .map_err(|e| fail(&path, std::io::Error::other(e)))?;
        if let Some(t) = epoch {
            let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64);
            let f = std::fs::File::options()
                .write(true)
                .open(&path)
                .map_err(|e| fail(&path, e))?;
            f.set_modified(time).map_err(|e| fail(&path, e))?;
        }
    }
    Ok(())
}

/// Every regular file under `dir` (not following symlinks), with its sha256, by path.
fn file_subjects(dir: &Path) -> std::io::Result<Vec<intoto::Subject>> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        for e in std::fs::read_dir(dir.join(&rel))? {
            let e = e?;
            let rel = rel.join(e.file_name());
            let t = e.file_type()?;
            if t.is_dir() {
                todo.push(rel);
            } else if t.is_file() {
                let mut f = std::fs::File::open(dir.join(&rel))?;
                let mut h = rbuild_layers::Sha256Hasher::new();
                std::io::copy(&mut f, &mut h)?;
                let d: Digest = h.finish();
                out.push(intoto::Subject {
                    name: rel.to_string_lossy().into_owned(),
                    digest: [(d.algorithm().as_str().to_string(), d.hex().to_string())].into(),
                });
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_attestation_files_name_every_regular_file_and_skip_inline_only_ones() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc")).unwrap();
        std::fs::write(d.path().join("etc/os-release"), "ID=test\n").unwrap();
        std::fs::write(d.path().join("a"), "a").unwrap();
        std::os::unix::fs::symlink("a", d.path().join("link")).unwrap();
        let p = |path, inline_only| Predicate {
            predicate_type: "https://slsa.dev/provenance/v1",
            path,
            value: serde_json::json!({"k": 1}),
            inline_only,
        };
        attestation_files(
            "t",
            d.path(),
            &[p("provenance.json", false), p("sbom.spdx.json", true)],
            Some(1_700_000_000),
        )
        .unwrap();
        assert!(!d.path().join("sbom.spdx.json").exists(), "inline-only");
        let text = std::fs::read_to_string(d.path().join("provenance.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = v["subject"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "etc/os-release"]);
        assert_eq!(
            v["subject"][0]["digest"]["sha256"],
            Digest::sha256_of(b"a").hex()
        );
        let meta = std::fs::metadata(d.path().join("provenance.json")).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
            0o600
        );
        assert_eq!(std::os::unix::fs::MetadataExt::mtime(&meta), 1_700_000_000);
        // A second write would clobber a file of the image's: refused.
        assert!(attestation_files("t", d.path(), &[p("provenance.json", false)], None).is_err());
    }
}

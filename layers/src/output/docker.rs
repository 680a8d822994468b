//! `--output type=docker`: a docker-archive tar that `docker load` accepts.
//!
//! Format choice: the combined layout `docker save` writes since Docker 25 — a complete OCI
//! image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`) plus Docker's legacy
//! `manifest.json` and `repositories` in the same tar, with `manifest.json` pointing at the
//! blobs (`"Config": "blobs/sha256/<hex>"`, `"Layers": ["blobs/sha256/<hex>", …]`). Docker 25+
//! (and the containerd image store) read the OCI part; older `docker load` and
//! `skopeo docker-archive:` read `manifest.json`. Layers are stored as they are in the store
//! (usually gzip): `docker load` has decompressed layer files by sniffing their magic since
//! Docker 1.10 and checks them against `rootfs.diff_ids`, so no recompression is needed
//! (zstd layers need Docker 23+).
//!
//! Names: `RepoTags` use Docker's familiar form (`app:latest`, `ghcr.io/o/app:1`), with
//! `:latest` added when no tag is given; an image without names gets `"RepoTags": null`.
//! The OCI `index.json` entries are annotated as Docker does: `io.containerd.image.name` with
//! the fully qualified name and `org.opencontainers.image.ref.name` with the tag alone.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;

use super::oci::{all_blobs, flush, write_tar_file, OCI_LAYOUT_FILE, REF_NAME_ANNOTATION};
use super::tarball::Entries;
use super::{Destination, ExportImage, OutputError};
use crate::image::{BlobSource, ImageIndex};

/// containerd's annotation for an image's full name, used by Docker 25+'s `docker save`.
pub const CONTAINERD_IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// A reference split into Docker's familiar repository and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerTag {
    /// Familiar repository (`app`, `team/app`, `ghcr.io/o/app`).
    pub repository: String,
    pub tag: String,
}

impl DockerTag {
    /// Parses `name[:tag]`; digests are refused (a RepoTag names a tag).
    pub fn parse(name: &str) -> Result<DockerTag, OutputError> {
        let invalid = |reason| OutputError::InvalidDockerTag {
            name: name.to_string(),
            reason,
        };
        if name.contains('@') {
            return Err(invalid("it contains a digest; RepoTags are name:tag only"));
        }
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (repo, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
            None => (name, "latest"),
        };
        let valid_tag = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
            && !tag.starts_with(['.', '-']);
        if !valid_tag {
            return Err(invalid(
                "the tag must be 1-128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        let mut parts = repo.split('/').collect::<Vec<_>>();
        if parts.len() > 1 && matches!(parts[0], "docker.io" | "index.docker.io") {
            parts.remove(0);
            if parts.len() > 1 && parts[0] == "library" {
                parts.remove(0);
            }
        }
        // The first component may be a registry host (with dots, a port, upper case is still
        // invalid in paths); the rest must be lower-case path components.
        let path_ok = |p: &str| {
            !p.is_empty()
                && p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
        };
        // reference grammar: domain ::= host (":" port-number)?
        let host_ok = |p: &str| {
            let (host, port) = p.split_once(':').unwrap_or((p, "1"));
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
        };
        let first_is_host =
            parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost");
        let ok = parts.iter().enumerate().all(|(i, p)| {
            if i == 0 && first_is_host {
                host_ok(p)
            } else {
                path_ok(p)
            }
        });
        if !ok {
            return Err(invalid(
                "the repository must be lower-case [a-z0-9._-] components separated by /",
            ));
        }
        Ok(DockerTag {
            repository: parts.join("/"),
            tag: tag.to_string(),
        })
    }

    /// `repository:tag`, as in `RepoTags`.
    pub fn familiar(&self) -> String {
        format!("{}:{}", self.repository, self.tag)
    }

    /// The fully qualified name (`docker.io/library/app:latest`), as containerd stores it.
    pub fn fully_qualified(&self) -> String {
        let first = self.repository.split('/').next().unwrap_or_default();
        let has_host =
            self.repository.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        if has_host {
            self.familiar()
        } else if self.repository.contains('/') {
            format!("docker.io/{}", self.familiar())
        } else {
            format!("docker.io/library/{}", self.familiar())
        }
    }
}

/// One `manifest.json` entry (moby `image/tarexport` `manifestItem`; field order as Docker's).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestItem {
    config: String,
    /// `null` for an untagged image, as `docker save` writes it.
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Writes the docker-archive to `dest` (a `.tar` file or stdout).
pub fn write_docker(
    dest: &Destination,
    images: &[ExportImage<'_>],
    source: &dyn BlobSource,
) -> Result<(), OutputError> {
    match dest {
        Destination::Dir(path) => Err(OutputError::DockerNeedsTar { path: path.clone() }),
        Destination::TarFile(path) => {
            write_tar_file(path, |w| write_docker_archive(w, images, source))
        }
        Destination::Stdout => flush(write_docker_archive(
            io::BufWriter::new(io::stdout().lock()),
            images,
            source,
        )?),
    }
}

/// Streams the docker-archive (deterministic: sorted entries, fixed metadata) to `w`.
pub fn write_docker_archive<W: Write>(
    w: W,
    images: &[ExportImage<'_>],
    source: &dyn BlobSource,
) -> Result<W, OutputError> {
    let mut e = Entries::default();
    let mut index = ImageIndex::new_oci();
    let mut manifest_json = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for img in images {
        let tags = img
            .names
            .iter()
            .map(|n| DockerTag::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        let image = super::single(img)?;
        let top_layer = image.manifest.layers.last();
        if tags.is_empty() {
            index.manifests.push(image.manifest_descriptor.clone());
        }
        for t in &tags {
            let mut d = image.manifest_descriptor.clone();
            d.annotations
                .insert(CONTAINERD_IMAGE_NAME_ANNOTATION.into(), t.fully_qualified());
            d.annotations
                .insert(REF_NAME_ANNOTATION.into(), t.tag.clone());
            index.manifests.push(d);
            if let Some(l) = top_layer {
                // Legacy `repositories` maps repo → tag → top layer ID; with layers stored as
                // blobs that ID is the blob's hex digest. Only old Dockers read this file.
                repositories
                    .entry(t.repository.clone())
                    .or_default()
                    .insert(t.tag.clone(), l.digest.hex().to_string());
            }
        }
        manifest_json.push(ManifestItem {
            config: e.blob(&image.config_descriptor.digest),
            repo_tags: (!tags.is_empty()).then(|| tags.iter().map(DockerTag::familiar).collect()),
            layers: image
                .manifest
                .layers
                .iter()
                .map(|l| e.blob(&l.digest))
                .collect(),
        });
    }
    for d in all_blobs(images) {
        e.blob(d);
    }
    e.bytes("oci-layout", OCI_LAYOUT_FILE.to_vec());
    e.bytes("index.json", index.to_canonical_json());
    e.bytes(
        "manifest.json",
        serde_json::to_vec(&manifest_json).expect("manifest.json serialisation cannot fail"),
    );
    if !repositories.is_empty() {
        e.bytes(
            "repositories",
            serde_json::to_vec(&repositories).expect("repositories serialisation cannot fail"),
        );
    }
    e.write(w, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_tags_are_familiar_with_latest_default() {
        let t = |s: &str| DockerTag::parse(s).unwrap();
        assert_eq!(t("app").familiar(), "app:latest");
        assert_eq!(t("app").fully_qualified(), "docker.io/library/app:latest");
        assert_eq!(t("docker.io/library/app:1.0").familiar(), "app:1.0");
        assert_eq!(t("team/app:1").fully_qualified(), "docker.io/team/app:1");
        assert_eq!(
            t("localhost:5000/app").familiar(),
            "localhost:5000/app:latest"
        );
        assert_eq!(
            t("localhost:5000/app").fully_qualified(),
            "localhost:5000/app:latest"
        );
        assert_eq!(t("ghcr.io/o/app:v2").tag, "v2");
    }

    #[test]
    fn docker_tags_reject_digests_and_bad_names() {
        for bad in [
            "app@sha256:abc",
            "App:1",
            "app:",
            "app:-x",
            "app:a/b",
            "a//b",
            "",
        ] {
            assert!(DockerTag::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_messages_golden() {
        let messages: Vec<String> = ["app@sha256:abc", "App:1", "app:-x"]
            .iter()
            .map(|n| DockerTag::parse(n).unwrap_err().to_string())
            .collect();
        insta::assert_snapshot!(messages.join("\n"));
    }

    proptest::proptest! {
        #[test]
        fn docker_tag_parse_never_panics_and_round_trips(s in "[a-zA-Z0-9:/@._-]{0,30}") {
            if let Ok(t) = DockerTag::parse(&s) {
                proptest::prop_assert_eq!(DockerTag::parse(&t.familiar()).unwrap(), t.clone());
                proptest::prop_assert_eq!(DockerTag::parse(&t.fully_qualified()).unwrap(), t);
            }
        }
    }

    #[test]
    fn untagged_manifest_item_has_null_repo_tags() {
        let item = ManifestItem {
            config: "blobs/sha256/aa".into(),
            repo_tags: None,
            layers: vec!["blobs/sha256/bb".into()],
        };
        assert_eq!(
            serde_json::to_string(&[item]).unwrap(),
            r#"[{"Config":"blobs/sha256/aa","RepoTags":null,"Layers":["blobs/sha256/bb"]}]"#
        );
    }
}

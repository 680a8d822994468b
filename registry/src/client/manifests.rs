//! Manifests: `GET`/`PUT /v2/<name>/manifests/<reference>`, with the body's digest checked
//! against the requested digest and `Docker-Content-Digest`, and its media type checked
//! against the document.

use rbuild_layers::image::manifest::{read_capped, ImageIndex, ImageManifest, MAX_MANIFEST_BYTES};
use rbuild_layers::{Digest, MediaType};

use super::{scope, Body, Registry, Req};
use crate::error::RegistryError;

/// Every manifest type rbuild can use, as `Accept` lists them.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A fetched manifest or index, verified.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: MediaType,
    pub digest: Digest,
    pub bytes: Vec<u8>,
}

impl FetchedManifest {
    pub fn is_index(&self) -> bool {
        self.media_type.is_index()
    }
}

fn header_digest(
    reg: &Registry,
    resp: &super::http::Response,
    path: &str,
) -> Result<Option<Digest>, RegistryError> {
    match resp.header("docker-content-digest") {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| RegistryError::BadHeader {
            registry: reg.host().to_string(),
            path: path.to_string(),
            header: "Docker-Content-Digest",
            value: v.chars().take(100).collect(),
        }),
    }
}

impl Registry {
    /// Fetches the manifest `reference` (a tag or a digest) of `repository`.
    pub fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let target = format!("/v2/{repository}/manifests/{reference}");
        let resp = self
            .send(&Req {
                method: "GET",
                target: target.clone(),
                scope: scope(repository, "pull"),
                headers: vec![("Accept", ACCEPT.to_string())],
                body: Body::Empty,
            })
            .map_err(|e| not_found(e, "manifest", &format!("{repository}:{reference}")))?;
        let declared = resp.header("content-type").map(str::to_string);
        let header = header_digest(self, &resp, &target)?;
        let bytes =
            read_capped(resp.into_reader(), MAX_MANIFEST_BYTES, "manifest").map_err(|source| {
                RegistryError::Document {
                    registry: self.host().to_string(),
                    path: target.clone(),
                    source: Box::new(source),
                }
            })?;
        let actual = Digest::sha256_of(&bytes);
        let expected = reference.parse::<Digest>().ok().or(header);
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: self.host().to_string(),
                    path: target,
                    expected,
                    actual,
                });
            }
        }
        // The document decides its kind; a declared type must agree with it.
        let doc = |source| RegistryError::Document {
            registry: self.host().to_string(),
            path: target.clone(),
            source: Box::new(source),
        };
        let declared: Option<MediaType> = declared
            .as_deref()
            .map(|c| c.split(';').next().unwrap_or(c).trim())
            .filter(|c| !c.is_empty() && *c != "application/json")
            .and_then(|c| c.parse().ok());
        let is_index = match &declared {
            Some(m) if m.is_index() => true,
            Some(m) if m.is_manifest() => false,
            Some(m) => {
                return Err(RegistryError::UnexpectedMediaType {
                    registry: self.host().to_string(),
                    path: target,
                    media_type: m.clone(),
                })
            }
            None => serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .is_some_and(|v| v.get("manifests").is_some()),
        };
        let media_type = if is_index {
            let i = ImageIndex::from_slice(&bytes).map_err(doc)?;
            declared
                .or(i.media_type)
                .unwrap_or(MediaType::OciImageIndex)
        } else {
            let m = ImageManifest::from_slice(&bytes).map_err(doc)?;
            declared
                .or(m.media_type)
                .unwrap_or(MediaType::OciImageManifest)
        };
        Ok(FetchedManifest {
            media_type,
            digest: actual,
            bytes,
        })
    }

    /// Uploads a manifest under `reference` (a tag or its digest); returns its digest after
    /// checking the registry's `Docker-Content-Digest` agrees.
    pub fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &MediaType,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let target = format!("/v2/{repository}/manifests/{reference}");
        let digest = Digest::sha256_of(bytes);
        let resp = self.send(&Req {
            method: "PUT",
            target: target.clone(),
            scope: scope(repository, "pull,push"),
            headers: vec![("Content-Type", media_type.as_str().to_string())],
            body: Body::Bytes(bytes),
        })?;
        if let Some(h) = header_digest(self, &resp, &target)? {
            if h != digest {
                return Err(RegistryError::DigestMismatch {
                    registry: self.host().to_string(),
                    path: target,
                    expected: digest,
                    actual: h,
                });
            }
        }
        Ok(digest)
    }
}

/// A 404 on a named thing becomes [`RegistryError::NotFound`].
pub(crate) fn not_found(e: RegistryError, what: &'static str, reference: &str) -> RegistryError {
    match e {
        RegistryError::Status {
            registry,
            path,
            status: 404,
            ..
        } => RegistryError::NotFound {
            registry,
            what,
            reference: reference.to_string(),
            path,
        },
        other => other,
    }
}

//! Blobs: `HEAD`, `GET` streamed into the verifying store, and uploads (cross-repository mount
//! with the 202 fallback, monolithic `PUT` for small blobs, chunked `PATCH` for large ones).

use std::io::{self, Read, Write};
use std::path::Path;

use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest};

use super::manifests::not_found;
use super::{scope, Body, Registry, Req, StreamBody};
use crate::error::RegistryError;

/// Blobs up to this size are uploaded with one `PUT`; larger ones with `PATCH` chunks.
pub const MONOLITHIC_MAX: u64 = 64 << 20;
/// The size of a `PATCH` chunk. Large, because distribution re-reads what it has stored to
/// resume its hash when a chunk arrives, and a failed upload is restarted whole anyway
/// (measured: 64 MiB chunks made a 512 MiB push 15% slower than one stream).
pub const CHUNK_SIZE: u64 = 1 << 30;

/// What an upload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    AlreadyThere,
    Mounted,
    Sent,
}

impl Registry {
    /// Whether `repository` has blob `digest` (`HEAD`; a 404 is `false`).
    pub fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        if self.known_present(repository, digest) {
            return Ok(true);
        }
        let r = self.send(&Req {
            method: "HEAD",
            target: format!("/v2/{repository}/blobs/{digest}"),
            scope: scope(repository, "pull"),
            headers: vec![],
            body: Body::Empty,
        });
        match r {
            Ok(_) => {
                self.mark_present(repository, digest);
                Ok(true)
            }
            Err(RegistryError::Status { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn known_present(&self, repository: &str, digest: &Digest) -> bool {
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(repository.to_string(), digest.clone()))
    }

    fn mark_present(&self, repository: &str, digest: &Digest) {
        self.present
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((repository.to_string(), digest.clone()));
    }

    /// Downloads `desc` into `store` unless it is there already. The bytes are hashed while
    /// they are written; a wrong digest or size (a corrupting proxy, a truncated body) is
    /// rejected and nothing is stored. `on_bytes` is called as bytes arrive (progress).
    pub fn fetch_blob(
        &self,
        store: &Store,
        repository: &str,
        desc: &Descriptor,
        on_bytes: &(dyn Fn(u64) + Sync),
    ) -> Result<bool, RegistryError> {
        if store.blob_size(&desc.digest) == Some(desc.size) {
            return Ok(false);
        }
        let target = format!("/v2/{repository}/blobs/{}", desc.digest);
        let mut last_err = None;
        // Bytes that fail verification are downloaded once more from scratch before the build
        // fails (a proxy or mirror that corrupted one response); they are never stored.
        let mut verification_retry = true;
        // A body cut off mid-stream is retried as a whole (bounded), like a failed request.
        for _ in 0..3 {
            let resp = self
                .send(&Req {
                    method: "GET",
                    target: target.clone(),
                    scope: scope(repository, "pull"),
                    headers: vec![],
                    body: Body::Empty,
                })
                .map_err(|e| not_found(e, "blob", &desc.digest.to_string()))?;
            let mut w = store.begin_blob()?;
            let mut reader = resp.into_reader().take(desc.size.saturating_add(1));
            match copy_counting(&mut reader, &mut w, on_bytes) {
                Ok(_) => rbuild_layers::failpoint::hit("pull.before_verify"),
                Err(e) => {
                    last_err = Some(RegistryError::Protocol {
                        registry: self.host().to_string(),
                        what: format!("GET {target}: reading the body: {e}"),
                    });
                    continue;
                }
            }
            return match w.commit(Some(&desc.digest), Some(desc.size)) {
                Ok(_) => Ok(true),
                Err(
                    source @ (rbuild_layers::store::StoreError::DigestMismatch { .. }
                    | rbuild_layers::store::StoreError::SizeMismatch { .. }),
                ) if std::mem::take(&mut verification_retry) => {
                    last_err = Some(RegistryError::Store {
                        registry: self.host().to_string(),
                        path: target.clone(),
                        digest: desc.digest.clone(),
                        source: Box::new(source),
                    });
                    continue;
                }
                Err(source) => Err(RegistryError::Store {
                    registry: self.host().to_string(),
                    path: target,
                    digest: desc.digest.clone(),
                    source: Box::new(source),
                }),
            };
        }
        Err(last_err.expect("the loop ran at least once"))
    }

    /// Downloads a small blob (a config, a cache map) into memory, refusing one larger than
    /// `max` (by its descriptor before asking, and by the bytes received), and checks its size
    /// and sha256 digest against `desc`.
    pub fn get_blob_bytes(
        &self,
        repository: &str,
        desc: &Descriptor,
        max: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let target = format!("/v2/{repository}/blobs/{}", desc.digest);
        let too_large = |size| RegistryError::TooLarge {
            registry: self.host().to_string(),
            path: target.clone(),
            size,
            max,
        };
        if desc.size > max {
            return Err(too_large(desc.size));
        }
        // Bytes that fail verification are downloaded once more before the error stands.
        match self.get_blob_bytes_once(repository, desc, &target) {
            Err(RegistryError::DigestMismatch { .. } | RegistryError::BlobSize { .. }) => {
                self.get_blob_bytes_once(repository, desc, &target)
            }
            other => other,
        }
    }

    /// One `GET` of a small blob, checked against `desc` (see [`Registry::get_blob_bytes`]).
    fn get_blob_bytes_once(
        &self,
        repository: &str,
        desc: &Descriptor,
        target: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let target = target.to_string();
        let resp = self
            .send(&Req {
                method: "GET",
                target: target.clone(),
                scope: scope(repository, "pull"),
                headers: vec![],
                body: Body::Empty,
            })
            .map_err(|e| not_found(e, "blob", &desc.digest.to_string()))?;
        let mut bytes = Vec::new();
        // One byte past the expected size, so a longer body is detected, not truncated.
        resp.into_reader()
            .take(desc.size.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| RegistryError::Protocol {
                registry: self.host().to_string(),
                what: format!("GET {target}: reading the body: {e}"),
            })?;
        if bytes.len() as u64 != desc.size {
            return Err(RegistryError::BlobSize {
                registry: self.host().to_string(),
                what: format!(
                    "GET {target}: the blob has {}{} bytes, but its descriptor says {}",
                    bytes.len(),
                    if bytes.len() as u64 > desc.size {
                        " or more"
                    } else {
                        ""
                    },
                    desc.size
                ),
            });
        }
        let actual = Digest::sha256_of(&bytes);
        if actual != desc.digest {
            return Err(RegistryError::DigestMismatch {
                registry: self.host().to_string(),
                path: target,
                expected: desc.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Asks the registry to mount `digest` into `repository` from `from` (distribution-spec
    /// "Mounting a blob from another repository"): `Ok(true)` when it did (201). When it
    /// declines it opens an upload session instead (202); that session is cancelled (best
    /// effort: an abandoned session only costs the registry until it expires) and the answer
    /// is `Ok(false)`, so the caller can fetch and upload the blob itself.
    pub fn mount_blob(
        &self,
        repository: &str,
        digest: &Digest,
        from: &str,
    ) -> Result<bool, RegistryError> {
        if from == repository {
            return self.has_blob(repository, digest);
        }
        let start = format!("/v2/{repository}/blobs/uploads/?mount={digest}&from={from}");
        let resp = self.send(&Req {
            method: "POST",
            target: start.clone(),
            scope: format!("{} {}", scope(repository, "pull,push"), scope(from, "pull")),
            headers: vec![("Content-Length", "0".into())],
            body: Body::Empty,
        })?;
        if resp.status() == 201 {
            self.mark_present(repository, digest);
            return Ok(true);
        }
        if let Ok(location) = self.location(&resp, &start) {
            self.cancel_upload(repository, location);
        }
        Ok(false)
    }

    /// Uploads blob `desc` from `file` to `repository`, unless the registry has it; mounts it
    /// from `mount_from` (another repository on this registry) when given.
    pub fn upload_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
        file: &Path,
        mount_from: Option<&str>,
    ) -> Result<Uploaded, RegistryError> {
        if self.has_blob(repository, &desc.digest)? {
            return Ok(Uploaded::AlreadyThere);
        }
        let mut start = format!("/v2/{repository}/blobs/uploads/");
        let mut scopes = scope(repository, "pull,push");
        if let Some(from) = mount_from.filter(|f| *f != repository) {
            start.push_str(&format!("?mount={}&from={from}", desc.digest));
            scopes.push(' ');
            scopes.push_str(&scope(from, "pull"));
        }
        let resp = self.send(&Req {
            method: "POST",
            target: start.clone(),
            scope: scopes,
            headers: vec![("Content-Length", "0".into())],
            body: Body::Empty,
        })?;
        // 201: mounted. 202: the registry declined the mount (or none was asked) and opened an
        // upload session instead — continue with it.
        if resp.status() == 201 {
            self.mark_present(repository, &desc.digest);
            return Ok(Uploaded::Mounted);
        }
        let mut location = self.location(&resp, &start)?;
        let push_scope = scope(repository, "pull,push");
        if desc.size > MONOLITHIC_MAX {
            let mut offset = 0;
            while offset < desc.size {
                let len = CHUNK_SIZE.min(desc.size - offset);
                let resp = self.send(&Req {
                    method: "PATCH",
                    target: location.clone(),
                    scope: push_scope.clone(),
                    headers: vec![
                        ("Content-Type", "application/octet-stream".into()),
                        ("Content-Range", format!("{offset}-{}", offset + len - 1)),
                    ],
                    body: Body::File {
                        path: file,
                        offset,
                        len,
                    },
                })?;
                location = self.location(&resp, &location)?;
                offset += len;
            }
            let target = with_digest(&location, &desc.digest);
            self.send(&Req {
                method: "PUT",
                target,
                scope: push_scope,
                headers: vec![("Content-Length", "0".into())],
                body: Body::Empty,
            })?;
        } else {
            let target = with_digest(&location, &desc.digest);
            self.send(&Req {
                method: "PUT",
                target,
                scope: push_scope,
                headers: vec![("Content-Type", "application/octet-stream".into())],
                body: Body::File {
                    path: file,
                    offset: 0,
                    len: desc.size,
                },
            })?;
        }
        self.mark_present(repository, &desc.digest);
        Ok(Uploaded::Sent)
    }

    /// Uploads a blob whose bytes are still being produced (a layer being compressed): opens an
    /// upload session, sends `body` to it in one chunked `PATCH` as the bytes arrive, and once
    /// `body` has ended closes the session with `PUT ?digest=` naming what `committed` says it
    /// held (the way `docker push` streams a layer). The registry checks that digest against
    /// what it received, so a body that ended early or differs is refused, never stored under
    /// the name. On failure the session is cancelled (best effort) and the error returned; the
    /// blob can still be uploaded from its file afterwards.
    pub fn upload_streamed(
        &self,
        repository: &str,
        body: Box<dyn Read + Send>,
        committed: &dyn Fn() -> Option<(Digest, u64)>,
    ) -> Result<(Digest, u64), RegistryError> {
        let start = format!("/v2/{repository}/blobs/uploads/");
        let push_scope = scope(repository, "pull,push");
        let resp = self.send(&Req {
            method: "POST",
            target: start.clone(),
            scope: push_scope.clone(),
            headers: vec![("Content-Length", "0".into())],
            body: Body::Empty,
        })?;
        let location = self.location(&resp, &start)?;
        let stream = StreamBody::new(body);
        let finish = || -> Result<(Digest, u64), RegistryError> {
            let resp = self.send(&Req {
                method: "PATCH",
                target: location.clone(),
                scope: push_scope.clone(),
                headers: vec![("Content-Type", "application/octet-stream".into())],
                body: Body::Stream(&stream),
            })?;
            let location = self.location(&resp, &location)?;
            let (digest, size) = committed().ok_or_else(|| RegistryError::Protocol {
                registry: self.host().to_string(),
                what: "the streamed blob ended before it was complete".into(),
            })?;
            self.send(&Req {
                method: "PUT",
                target: with_digest(&location, &digest),
                scope: push_scope.clone(),
                headers: vec![("Content-Length", "0".into())],
                body: Body::Empty,
            })?;
            self.mark_present(repository, &digest);
            Ok((digest, size))
        };
        finish().inspect_err(|_| self.cancel_upload(repository, location.clone()))
    }

    /// Cancels an upload session. Best effort: an abandoned session only costs the registry
    /// until it expires.
    fn cancel_upload(&self, repository: &str, location: String) {
        let _ = self.send(&Req {
            method: "DELETE",
            target: location,
            scope: scope(repository, "pull,push"),
            headers: vec![],
            body: Body::Empty,
        });
    }

    /// The upload URL from a `Location` header, resolved against the URL of the request that
    /// returned it (RFC 9110 §10.2.2), so a relative Location on a storage host stays there.
    /// It may name another host; [`Registry::send`] sends no credentials there.
    fn location(
        &self,
        resp: &super::http::Response,
        request: &str,
    ) -> Result<String, RegistryError> {
        let path = Registry::display_path(request);
        let loc = resp
            .header("location")
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.host().to_string(),
                what: format!("{path}: the response has no Location header"),
            })?;
        let bad = || RegistryError::BadHeader {
            registry: self.host().to_string(),
            path: path.clone(),
            header: "Location",
            value: loc.chars().take(100).collect(),
        };
        let mut url = url::Url::parse(&self.url(request))
            .and_then(|base| base.join(loc))
            .map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad());
        }
        // `?digest=` is appended to it; a fragment would swallow that.
        url.set_fragment(None);
        Ok(url.into())
    }
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

fn copy_counting(
    r: &mut dyn Read,
    w: &mut dyn Write,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        rbuild_layers::failpoint::hit("pull.mid_download");
        total += n as u64;
        on_bytes(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_appended_to_upload_locations_with_or_without_a_query() {
        let d = Digest::sha256_of(b"");
        assert_eq!(
            with_digest("http://h/v2/a/blobs/uploads/u?_state=x", &d),
            format!("http://h/v2/a/blobs/uploads/u?_state=x&digest={d}")
        );
        assert_eq!(
            with_digest("http://h/u", &d),
            format!("http://h/u?digest={d}")
        );
    }

    #[test]
    fn error_paths_drop_host_and_query() {
        assert_eq!(
            Registry::display_path("https://h:5000/v2/a/blobs/uploads/u?_state=secret"),
            "/v2/a/blobs/uploads/u"
        );
        assert_eq!(
            Registry::display_path("/v2/x/manifests/t"),
            "/v2/x/manifests/t"
        );
    }
}

//! Pushing an image (a manifest, or an index and its manifests) from the store: every blob is
//! checked with `HEAD` and skipped when present, mounted from another repository on the same
//! registry when the store knows it came from there, otherwise uploaded (monolithic or
//! chunked), several at a time; a blob the store lacks (a lazily pulled layer) is mounted from
//! its source, or fetched through the caller's `fetch_missing` and uploaded. Manifests go
//! last, the children of an index before it, then every tag. A blob upload that fails because the registry went away or lost the session is
//! started again (bounded), so a registry restarted mid-push does not fail the push.

use rbuild_layers::image::manifest::{read_capped, ImageIndex, ImageManifest, MAX_MANIFEST_BYTES};
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest};

use crate::client::blobs::Uploaded;
use crate::client::Registry;
use crate::error::RegistryError;
use crate::pull::{known_source, record_source};

const PARALLEL_BLOBS: usize = 3;
/// Whole-blob attempts (each request inside also retries on its own).
const BLOB_ATTEMPTS: u32 = 3;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    pub digest: Option<Digest>,
    pub blobs_uploaded: usize,
    pub blobs_mounted: usize,
    pub blobs_existing: usize,
}

fn read_doc(store: &Store, d: &Digest) -> Result<Vec<u8>, RegistryError> {
    let r = store.open_blob(d)?;
    read_capped(r, MAX_MANIFEST_BYTES, "manifest").map_err(|e| RegistryError::Protocol {
        registry: "local store".into(),
        what: format!("reading manifest {d}: {e}"),
    })
}

/// Puts a blob the store lacks into it, verified (see [`PushOptions::fetch_missing`]).
pub type FetchMissing<'a> = &'a (dyn Fn(&Descriptor) -> Result<(), RegistryError> + Sync);

/// How [`push_with`] pushes.
pub struct PushOptions<'a> {
    /// Called with the size of each blob once it is on the registry (uploaded, mounted or
    /// already there), from the upload threads.
    pub on_bytes: &'a (dyn Fn(u64) + Sync),
    /// Puts a blob the store lacks into it, verified (e.g. downloads a lazily pulled layer
    /// from its source registry). Called only for blobs the destination lacks and cannot
    /// mount; without it such a blob is an error.
    pub fetch_missing: Option<FetchMissing<'a>>,
    /// Blobs this build already uploaded to this repository (streamed while they were
    /// written): counted as uploaded without asking the registry again.
    pub sent_ahead: &'a [Digest],
}

/// Pushes `top` (a manifest or an index in `store`) to `repository`, tagged with each of
/// `tags` (none: by digest only). Returns the pushed digest.
pub fn push(
    reg: &Registry,
    store: &Store,
    repository: &str,
    top: &Descriptor,
    tags: &[String],
) -> Result<PushReport, RegistryError> {
    push_with_progress(reg, store, repository, top, tags, &|_| {})
}

/// [`push`], calling `on_bytes` with the size of each blob once it is on the registry
/// (uploaded, mounted or already there), from the upload threads.
pub fn push_with_progress(
    reg: &Registry,
    store: &Store,
    repository: &str,
    top: &Descriptor,
    tags: &[String],
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<PushReport, RegistryError> {
    push_with(
        reg,
        store,
        repository,
        top,
        tags,
        &PushOptions {
            on_bytes,
            fetch_missing: None,
            sent_ahead: &[],
        },
    )
}

/// Pushes `top` (a manifest or an index in `store`) to `repository` as `opts` says. The
/// documents must be in the store; blobs need not be (see [`PushOptions::fetch_missing`]).
pub fn push_with(
    reg: &Registry,
    store: &Store,
    repository: &str,
    top: &Descriptor,
    tags: &[String],
    opts: &PushOptions,
) -> Result<PushReport, RegistryError> {
    push_then_tag(reg, store, repository, top, tags, opts, || {
        rbuild_layers::failpoint::hit("push.before_manifest")
    })
}

/// [`push_with`]; `before_manifest` runs once every blob is on the registry, before the first
/// manifest PUT (a crash-test failpoint, see [`rbuild_layers::failpoint`]).
pub(crate) fn push_then_tag(
    reg: &Registry,
    store: &Store,
    repository: &str,
    top: &Descriptor,
    tags: &[String],
    opts: &PushOptions,
    before_manifest: fn(),
) -> Result<PushReport, RegistryError> {
    let mut report = PushReport::default();
    push_tree(reg, store, repository, top, &mut report, opts)?;
    let bytes = read_doc(store, &top.digest)?;
    before_manifest();
    let by_digest = [top.digest.to_string()];
    let references = if tags.is_empty() {
        &by_digest[..]
    } else {
        tags
    };
    for r in references {
        reg.put_manifest(repository, r, &top.media_type, &bytes)?;
        rbuild_layers::failpoint::hit("push.after_manifest");
    }
    report.digest = Some(top.digest.clone());
    Ok(report)
}

/// Pushes everything `desc` refers to (not `desc` itself when it is the top).
fn push_tree(
    reg: &Registry,
    store: &Store,
    repository: &str,
    desc: &Descriptor,
    report: &mut PushReport,
    opts: &PushOptions,
) -> Result<(), RegistryError> {
    let bytes = read_doc(store, &desc.digest)?;
    let doc_err = |source| RegistryError::Document {
        registry: "local store".into(),
        path: desc.digest.to_string(),
        source: Box::new(source),
    };
    if desc.media_type.is_index() {
        let index = ImageIndex::from_slice(&bytes).map_err(doc_err)?;
        for child in &index.manifests {
            push_tree(reg, store, repository, child, report, opts)?;
            let child_bytes = read_doc(store, &child.digest)?;
            reg.put_manifest(
                repository,
                &child.digest.to_string(),
                &child.media_type,
                &child_bytes,
            )?;
        }
        return Ok(());
    }
    let manifest = ImageManifest::from_slice(&bytes).map_err(doc_err)?;
    let blobs: Vec<&Descriptor> = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .collect();
    for r in upload_all(reg, store, repository, &blobs, opts)? {
        match r {
            Uploaded::AlreadyThere => report.blobs_existing += 1,
            Uploaded::Mounted => report.blobs_mounted += 1,
            Uploaded::Sent => report.blobs_uploaded += 1,
        }
    }
    Ok(())
}

fn upload_one(
    reg: &Registry,
    store: &Store,
    repository: &str,
    d: &Descriptor,
    fetch_missing: Option<FetchMissing<'_>>,
) -> Result<Uploaded, RegistryError> {
    let path = store.blob_path(&d.digest);
    let mut from = known_source(store, reg.host(), &d.digest);
    if store.blob_size(&d.digest) != Some(d.size) {
        // Not local (a lazily pulled layer, a remote cache hit): the destination may have it,
        // or get it by a mount, without a byte passing through this machine.
        if reg.has_blob(repository, &d.digest)? {
            return Ok(Uploaded::AlreadyThere);
        }
        if let Some(source) = from.as_deref().filter(|f| *f != repository) {
            match reg.mount_blob(repository, &d.digest, source) {
                Ok(true) => {
                    record_source(store, reg.host(), repository, &d.digest);
                    return Ok(Uploaded::Mounted);
                }
                Ok(false) => {}
                // A refused mount (no pull access to the source, a registry without mounts)
                // is a declined one: the blob can still be fetched and uploaded. A registry
                // that cannot be reached cannot take an upload either.
                Err(e) if e.is_unreachable() || fetch_missing.is_none() => return Err(e),
                Err(_) => {}
            }
        }
        let Some(fetch) = fetch_missing else {
            return Err(RegistryError::Protocol {
                registry: reg.host().to_string(),
                what: format!("blob {} is missing from the local store", d.digest),
            });
        };
        fetch(d)?;
        if store.blob_size(&d.digest) != Some(d.size) {
            return Err(RegistryError::Protocol {
                registry: reg.host().to_string(),
                what: format!(
                    "blob {} is still missing from the local store after fetching it",
                    d.digest
                ),
            });
        }
        // The mount was declined or impossible; upload_blob need not ask again.
        from = None;
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        match reg.upload_blob(repository, d, &path, from.as_deref()) {
            Ok(u) => {
                record_source(store, reg.host(), repository, &d.digest);
                return Ok(u);
            }
            // The registry went away, or lost the upload session (404 after a restart).
            Err(e)
                if attempt < BLOB_ATTEMPTS
                    && (e.is_unreachable()
                        || matches!(
                            e,
                            RegistryError::Status {
                                status: 404 | 416,
                                ..
                            }
                        )) => {}
            Err(e) => return Err(e),
        }
    }
}

fn upload_all(
    reg: &Registry,
    store: &Store,
    repository: &str,
    blobs: &[&Descriptor],
    opts: &PushOptions,
) -> Result<Vec<Uploaded>, RegistryError> {
    crate::parallel::try_for_each(blobs, PARALLEL_BLOBS, |d| {
        let u = if opts.sent_ahead.contains(&d.digest) {
            Uploaded::Sent
        } else {
            upload_one(reg, store, repository, d, opts.fetch_missing)?
        };
        (opts.on_bytes)(d.size);
        rbuild_layers::failpoint::hit("push.after_blob");
        Ok(u)
    })
}

//! Pulling an image into the store: tag → manifest (an index or manifest list → the entry for
//! the platform), config and layers fetched concurrently and verified while streaming; blobs
//! already in the store are not downloaded again. Each pulled blob is recorded as coming from
//! its repository (store record kind [`SOURCE_RECORD`]) so a later push to another repository
//! on the same registry can mount it instead of uploading it. [`pull_with`] can leave the
//! layers on the registry (lazy pull): only their sources are recorded.

use rbuild_layers::image::manifest::{ImageIndex, ImageManifest};
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest, MediaType, Platform};

use crate::client::Registry;
use crate::error::RegistryError;
use crate::Reference;

/// Store record kind: `{"registry": HOST, "repository": NAME}` for a blob's origin.
pub const SOURCE_RECORD: &str = "registry-source";
/// Blobs fetched at once.
const PARALLEL_BLOBS: usize = 3;

/// A pulled image: its (platform-specific) manifest, stored with its config and layers.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The manifest's descriptor (media type, digest, size, and the platform when it was
    /// chosen from an index).
    pub manifest: Descriptor,
    pub parsed: ImageManifest,
    /// The index the manifest was chosen from, when the reference named one.
    pub index_digest: Option<Digest>,
}

/// Whether an index entry's platform is what `want` asks for (image-spec: os and architecture
/// must match; a variant is compared only when asked for).
fn platform_matches(have: &Platform, want: &Platform) -> bool {
    have.os == want.os
        && have.architecture == want.architecture
        && (want.variant.is_none() || have.variant == want.variant)
}

fn describe(p: &Platform) -> String {
    match &p.variant {
        Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
        None => format!("{}/{}", p.os, p.architecture),
    }
}

/// Picks the entry of `index` for `platform`.
pub fn choose<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
    image: &str,
) -> Result<&'a Descriptor, RegistryError> {
    index
        .manifests
        .iter()
        .filter(|m| m.media_type.is_manifest())
        .find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| platform_matches(p, platform))
        })
        .ok_or_else(|| RegistryError::NoPlatform {
            image: image.to_string(),
            platform: describe(platform),
            available: index
                .manifests
                .iter()
                .filter_map(|m| m.platform.as_ref())
                .map(describe)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Records that `digest` is in `repository` on `registry` (best effort: only mounts use it).
pub fn record_source(store: &Store, registry: &str, repository: &str, digest: &Digest) {
    let doc = serde_json::json!({ "registry": registry, "repository": repository });
    let _ = store.put_record(SOURCE_RECORD, digest, doc.to_string().as_bytes());
}

/// The repository on `registry` a blob is known to come from.
pub fn known_source(store: &Store, registry: &str, digest: &Digest) -> Option<String> {
    let bytes = store.get_record(SOURCE_RECORD, digest).ok()??;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    (v.get("registry")?.as_str()? == registry)
        .then(|| v.get("repository")?.as_str().map(str::to_string))
        .flatten()
}

/// How [`pull_with`] pulls.
pub struct PullOptions<'a> {
    /// Whether to download the layers. Without them only the manifest(s) and the config are
    /// stored, and each layer is recorded as coming from the repository, so that it can be
    /// fetched when it is needed or mounted by a push to the same registry (a build whose
    /// steps are all cached never needs its base image's layers).
    pub layers: bool,
    /// Called with byte counts as blobs arrive (progress), from the download threads.
    pub on_bytes: &'a (dyn Fn(u64) + Sync),
}

/// The registry and repository a blob is known to come from, whatever the registry.
pub fn source_of(store: &Store, digest: &Digest) -> Option<(String, String)> {
    let bytes = store.get_record(SOURCE_RECORD, digest).ok()??;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    Some((
        v.get("registry")?.as_str()?.to_string(),
        v.get("repository")?.as_str()?.to_string(),
    ))
}

/// Pulls `reference` for `platform` into `store`, layers included.
pub fn pull(
    reg: &Registry,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Pulled, RegistryError> {
    pull_with(
        reg,
        store,
        reference,
        platform,
        &PullOptions {
            layers: true,
            on_bytes,
        },
    )
}

/// Pulls `reference` for `platform` into `store` as `opts` says.
pub fn pull_with(
    reg: &Registry,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
    opts: &PullOptions,
) -> Result<Pulled, RegistryError> {
    let repo = reference.repository();
    let wanted = match (reference.digest(), reference.tag_or_latest()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let top = reg.get_manifest(repo, &wanted)?;
    let (fetched, platform_field, index_digest) = if top.is_index() {
        let index =
            ImageIndex::from_slice(&top.bytes).map_err(|source| RegistryError::Document {
                registry: reg.host().to_string(),
                path: format!("/v2/{repo}/manifests/{wanted}"),
                source: Box::new(source),
            })?;
        let entry = choose(&index, platform, &reference.to_string())?;
        let child = reg.get_manifest(repo, &entry.digest.to_string())?;
        if child.is_index() {
            return Err(RegistryError::UnexpectedMediaType {
                registry: reg.host().to_string(),
                path: format!("/v2/{repo}/manifests/{}", entry.digest),
                media_type: child.media_type,
            });
        }
        store.put_bytes(top.media_type.clone(), &top.bytes)?;
        (child, entry.platform.clone(), Some(top.digest.clone()))
    } else {
        (top, None, None)
    };
    let parsed =
        ImageManifest::from_slice(&fetched.bytes).map_err(|source| RegistryError::Document {
            registry: reg.host().to_string(),
            path: format!("/v2/{repo}/manifests/{}", fetched.digest),
            source: Box::new(source),
        })?;
    if !matches!(
        parsed.config.media_type,
        MediaType::OciImageConfig | MediaType::DockerImageConfig
    ) {
        return Err(RegistryError::UnexpectedMediaType {
            registry: reg.host().to_string(),
            path: format!("/v2/{repo}/blobs/{}", parsed.config.digest),
            media_type: parsed.config.media_type.clone(),
        });
    }
    if let Some(bad) = parsed
        .layers
        .iter()
        .find(|l| l.media_type.layer_compression().is_none())
    {
        return Err(RegistryError::UnexpectedMediaType {
            registry: reg.host().to_string(),
            path: format!("/v2/{repo}/blobs/{}", bad.digest),
            media_type: bad.media_type.clone(),
        });
    }
    let blobs: Vec<&Descriptor> = if opts.layers {
        std::iter::once(&parsed.config)
            .chain(&parsed.layers)
            .collect()
    } else {
        for l in &parsed.layers {
            record_source(store, reg.host(), repo, &l.digest);
        }
        vec![&parsed.config]
    };
    fetch_all(reg, store, repo, &blobs, opts.on_bytes)?;
    let stored = store.put_bytes(fetched.media_type.clone(), &fetched.bytes)?;
    let mut manifest = stored;
    manifest.platform = platform_field;
    Ok(Pulled {
        manifest,
        parsed,
        index_digest,
    })
}

/// Fetches `blobs` on a few threads; the first error stops the others from starting more.
fn fetch_all(
    reg: &Registry,
    store: &Store,
    repo: &str,
    blobs: &[&Descriptor],
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<(), RegistryError> {
    crate::parallel::try_for_each(blobs, PARALLEL_BLOBS, |d| {
        reg.fetch_blob(store, repo, d, on_bytes)?;
        record_source(store, reg.host(), repo, &d.digest);
        Ok(())
    })
    .map(|_| ())
}

//! `FROM`: resolving a base image to a manifest digest, its config and its layers.
//!
//! Sources: `oci-layout://DIR[:TAG|@DIGEST]` (an OCI image layout on disk, read through the
//! shared [`LayoutReader`], its blobs imported into the store and verified); otherwise a
//! reference. Policy for references:
//! - a name rbuild built here (its store tag annotated [`ORIGIN_ANNOTATION`]`=build`, or a tag
//!   without the annotation, from before it existed) is used from the store, no registry asked;
//! - any other name is resolved against its registry on every build and pulled lazily (the
//!   manifest and config now; each layer only when something needs its bytes, see
//!   `super::seams::LayerSource`); the store tag is then annotated `=pull`;
//! - when the registry cannot be reached (connection errors or 5xx after retries) and a pulled
//!   copy is in the store, that copy is used with a warning.
//!
//! `--pull` (`always_pull`) drops both exceptions, as `docker build --pull` does: every name is
//! resolved in its registry, and an unreachable registry fails the build.
//!
//! The resolved manifest digest pins the cache key, so a tag that moves invalidates exactly the
//! stages built on it.

use std::path::{Path, PathBuf};

use rbuild_layers::image::config::ImageConfig;
use rbuild_layers::image::manifest::{ImageIndex, ImageManifest};
use rbuild_layers::oci_layout::{LayoutReadError, LayoutReader, Select};
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest, Platform};
use rbuild_registry::Reference;

use rbuild_registry::Registries;

use super::stage::LayerRef;
use super::BuildError;

/// Annotation on a store tag saying where the image came from: `build` or `pull`.
pub const ORIGIN_ANNOTATION: &str = "io.rbuild.origin";

/// Largest manifest, index or config rbuild reads.
const MAX_JSON: u64 = 4 * 1024 * 1024;

/// A resolved base image.
#[derive(Debug, Clone)]
pub struct BaseImage {
    /// The name as the user wrote it after expansion (`oci-layout://…` or a reference).
    pub name: String,
    pub manifest_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
}

fn err(reference: &str, reason: impl Into<String>) -> BuildError {
    BuildError::Base {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// Resolves `name` for `platform`, importing what it needs into `store`.
pub fn resolve(
    store: &Store,
    registries: &Registries,
    name: &str,
    platform: &Platform,
    cwd: &Path,
    always_pull: bool,
) -> Result<BaseImage, BuildError> {
    resolve_with_progress(store, registries, name, platform, cwd, always_pull, &|_| {})
}

/// [`resolve`], calling `on_bytes` with each chunk of blob bytes pulled from a registry.
pub fn resolve_with_progress(
    store: &Store,
    registries: &Registries,
    name: &str,
    platform: &Platform,
    cwd: &Path,
    always_pull: bool,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<BaseImage, BuildError> {
    if let Some(rest) = name.strip_prefix("oci-layout://") {
        return from_layout(store, name, rest, platform, cwd);
    }
    let reference: Reference = name
        .parse()
        .map_err(|e: rbuild_registry::ReferenceError| err(name, e.to_string()))?;
    let local_name = match reference.tag_or_latest() {
        Some(t) if reference.tag().is_none() => reference
            .with_tag(t)
            .map_err(|e| err(name, e.to_string()))?
            .to_string(),
        _ => reference.to_string(),
    };
    let local = store.get_ref(&local_name)?;
    if let Some(desc) = &local {
        let built_here =
            desc.annotations.get(ORIGIN_ANNOTATION).map(String::as_str) != Some("pull");
        if built_here && !always_pull {
            return from_store(store, name, desc, platform);
        }
    }
    // An unqualified name means docker.io here; a registries.conf whose search list would
    // make it mean something else makes its pull an error rather than a silent difference (an
    // image built here under that name is used above, as with any engine).
    registries
        .check_unqualified(name)
        .map_err(|e| err(name, e.to_string()))?;
    match pull(store, registries, &reference, platform, &local_name, on_bytes) {
        Ok(desc) => from_store(store, name, &desc, platform),
        Err(e) if e.is_unreachable() && local.is_some() && !always_pull => {
            // The build goes on with what was pulled before; say so, since the tag may have moved.
            eprintln!(
                "warning: FROM {name}: {e}; using the copy pulled earlier from the local store"
            );
            let desc = local.expect("checked above");
            from_store(store, name, &desc, platform)
        }
        Err(e) if local.is_none() => Err(err(
            name,
            format!(
                "{}; it is not in rbuild's local store ({}) either: check the name, or build it here with rbuild --tag {name}",
                crate::errors::error_chain(&e),
                store.root().display()
            ),
        )),
        Err(e) => Err(err(name, crate::errors::error_chain(&e))),
    }
}

/// Pulls `reference` into the store and tags it `local_name` (annotated as pulled).
fn pull(
    store: &Store,
    registries: &Registries,
    reference: &Reference,
    platform: &Platform,
    local_name: &str,
    on_bytes: &(dyn Fn(u64) + Sync),
) -> Result<Descriptor, rbuild_registry::RegistryError> {
    // Layers are fetched when a step needs the base's files or an output its bytes (see
    // `lazy_pull::LayerFetcher`); a build that only adds layers and pushes to the same registry never
    // downloads them.
    let opts = rbuild_registry::pull::PullOptions {
        layers: false,
        on_bytes,
    };
    // The build's shared clients: one connection, one auth handshake per registry; mirrors
    // first when registries.conf or --registry-mirror name them. The layers are recorded as
    // coming from the source that served the manifest.
    let pulled = registries.pull_from(
        reference,
        |e| e,
        |reg, source| rbuild_registry::pull::pull_with(&reg, store, source, platform, &opts),
    )?;
    let mut desc = pulled.manifest;
    desc.annotations
        .insert(ORIGIN_ANNOTATION.to_string(), "pull".to_string());
    store.set_ref(local_name, &desc)?;
    Ok(desc)
}

fn read_json_blob(store: &Store, name: &str, d: &Digest) -> Result<Vec<u8>, BuildError> {
    let r = store.open_blob(d)?;
    rbuild_layers::image::manifest::read_capped(r, MAX_JSON, "image JSON")
        .map_err(|e| err(name, format!("reading {d}: {e}")))
}

/// Picks the manifest for `platform` from an index (or returns the manifest itself).
fn pick_manifest(
    name: &str,
    desc: &Descriptor,
    platform: &Platform,
    read: &dyn Fn(&Digest) -> Result<Vec<u8>, BuildError>,
) -> Result<(Digest, ImageManifest), BuildError> {
    let bytes = read(&desc.digest)?;
    if desc.media_type.is_index() || looks_like_index(&bytes) {
        let index = ImageIndex::from_slice(&bytes).map_err(|e| err(name, e.to_string()))?;
        let chosen = index
            .manifests
            .iter()
            .find(|m| {
                m.platform.as_ref().is_some_and(|p| {
                    p.os == platform.os
                        && p.architecture == platform.architecture
                        && (platform.variant.is_none() || p.variant == platform.variant)
                })
            })
            .or_else(|| {
                // A single-manifest index without platform information.
                (index.manifests.len() == 1 && index.manifests[0].platform.is_none())
                    .then(|| &index.manifests[0])
            })
            .ok_or_else(|| {
                let have: Vec<String> = index
                    .manifests
                    .iter()
                    .filter_map(|m| m.platform.as_ref())
                    .map(|p| format!("{}/{}", p.os, p.architecture))
                    .collect();
                err(
                    name,
                    format!(
                        "no image for {}/{} in the index (it has: {})",
                        platform.os,
                        platform.architecture,
                        if have.is_empty() {
                            "none".to_string()
                        } else {
                            have.join(", ")
                        }
                    ),
                )
            })?;
        return pick_manifest(name, chosen, platform, read);
    }
    let m = ImageManifest::from_slice(&bytes).map_err(|e| err(name, e.to_string()))?;
    Ok((desc.digest.clone(), m))
}

fn looks_like_index(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .is_some_and(|v| v.get("manifests").is_some() && v.get("layers").is_none())
}

fn finish(
    store: &Store,
    name: &str,
    manifest_digest: Digest,
    manifest: &ImageManifest,
) -> Result<BaseImage, BuildError> {
    let config_bytes = read_json_blob(store, name, &manifest.config.digest)?;
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|e| err(name, format!("invalid image config: {e}")))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(err(
            name,
            format!(
                "the config lists {} layers but the manifest {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        ));
    }
    let mut layers = Vec::new();
    for (desc, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        if desc.media_type.layer_compression().is_none() {
            return Err(err(
                name,
                format!("unsupported layer media type {}", desc.media_type),
            ));
        }
        layers.push(LayerRef::new(desc.clone(), diff_id.clone()));
    }
    Ok(BaseImage {
        name: name.to_string(),
        manifest_digest,
        config,
        layers,
    })
}

fn from_store(
    store: &Store,
    name: &str,
    desc: &Descriptor,
    platform: &Platform,
) -> Result<BaseImage, BuildError> {
    let read = |d: &Digest| read_json_blob(store, name, d);
    let (digest, manifest) = pick_manifest(name, desc, platform, &read)?;
    for l in &manifest.layers {
        // A layer may be absent when the store knows where to fetch it from (a lazy pull).
        if !store.has_blob(&l.digest)
            && rbuild_registry::pull::source_of(store, &l.digest).is_none()
        {
            return Err(err(
                name,
                format!("layer {} is missing from the local store", l.digest),
            ));
        }
    }
    finish(store, name, digest, &manifest)
}

/// Splits `DIR[:TAG|@DIGEST]`; a `:` is a tag separator only after the last `/`.
fn split_layout(rest: &str) -> (String, Option<String>, Option<String>) {
    if let Some((dir, d)) = rest.rsplit_once('@') {
        return (dir.to_string(), None, Some(d.to_string()));
    }
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    match rest[slash..].rfind(':') {
        Some(i) => (
            rest[..slash + i].to_string(),
            Some(rest[slash + i + 1..].to_string()),
            None,
        ),
        None => (rest.to_string(), None, None),
    }
}

/// A layout reader's error as the reason a `FROM oci-layout://…` failed.
fn layout_reason(e: &LayoutReadError) -> String {
    match e {
        // The reader does not know the `FROM` syntax; say how to name an image here.
        LayoutReadError::NotOne { index, count } => {
            format!(
                "{} holds {count} images: name one with :TAG",
                index.display()
            )
        }
        other => crate::errors::error_chain(other),
    }
}

fn from_layout(
    store: &Store,
    name: &str,
    rest: &str,
    platform: &Platform,
    cwd: &Path,
) -> Result<BaseImage, BuildError> {
    let (dir, tag, digest) = split_layout(rest);
    let dir = PathBuf::from(&dir);
    let root = if dir.is_absolute() {
        dir
    } else {
        cwd.join(dir)
    };
    let layout_err = |e: LayoutReadError| err(name, layout_reason(&e));
    let layout = LayoutReader::open(&root).map_err(layout_err)?;
    let which = match (&tag, &digest) {
        (_, Some(d)) => Select::Digest(d),
        (Some(t), None) => Select::Tag(t),
        (None, None) => Select::Only,
    };
    let top = layout.resolve(which).map_err(layout_err)?;
    let blobs = layout.blobs();
    // Documents go through the store (imported verified, then read capped from there), so the
    // base's manifest and config are in the store like those of a pulled image.
    let read = |d: &Digest| {
        blobs.import(store, d, None).map_err(layout_err)?;
        read_json_blob(store, name, d)
    };
    let (mdigest, manifest) = pick_manifest(name, top, platform, &read)?;
    for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
        blobs
            .import(store, &d.digest, Some(d.size))
            .map_err(layout_err)?;
    }
    finish(store, name, mdigest, &manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_references_split_tag_and_digest() {
        assert_eq!(
            split_layout("/a/b:v1"),
            ("/a/b".into(), Some("v1".into()), None)
        );
        assert_eq!(split_layout("rel/dir"), ("rel/dir".into(), None, None));
        assert_eq!(
            split_layout("/x:5000/dir"),
            ("/x:5000/dir".into(), None, None)
        );
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(
            split_layout(&format!("/a@{d}")),
            ("/a".into(), None, Some(d.into()))
        );
    }
}

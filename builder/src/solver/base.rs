//! `FROM`: resolving a base image to a manifest digest, its config and its layers.
//!
//! Sources, in order: `oci-layout://DIR[:TAG|@DIGEST]` (an OCI image layout on disk, its
//! blobs imported into the store and verified), then an image tagged in rbuild's local store.
//! Registry pulls come with the registry client; until then a registry reference that is not in
//! the local store is a clear error. The resolved manifest digest pins the cache key, so a tag
//! that moves invalidates exactly the stages built on it.

use std::path::{Path, PathBuf};

use rbuild_layers::image::config::ImageConfig;
use rbuild_layers::image::manifest::{ImageIndex, ImageManifest};
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest, MediaType, Platform};
use rbuild_registry::Reference;

use super::stage::LayerRef;
use super::BuildError;

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
    name: &str,
    platform: &Platform,
    cwd: &Path,
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
    if let Some(desc) = store.get_ref(&local_name)? {
        return from_store(store, name, &desc, platform);
    }
    Err(err(
        name,
        format!(
            "not found in rbuild's local store ({}), and pulling from registries is not available in this version yet; build it with rbuild and --tag, or use FROM oci-layout://DIR:TAG",
            store.root().display()
        ),
    ))
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
        layers.push(LayerRef {
            descriptor: desc.clone(),
            diff_id: diff_id.clone(),
        });
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
        if !store.has_blob(&l.digest) {
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

fn copy_blob_in(
    store: &Store,
    name: &str,
    layout: &Path,
    d: &Digest,
    size: Option<u64>,
) -> Result<(), BuildError> {
    if store.has_blob(d) {
        return Ok(());
    }
    let path = layout
        .join("blobs")
        .join(d.algorithm().as_str())
        .join(d.hex());
    let mut f = std::fs::File::open(&path).map_err(|e| {
        err(
            name,
            format!(
                "blob {d} is missing from the layout ({}): {e}",
                path.display()
            ),
        )
    })?;
    let mut w = store.begin_blob()?;
    std::io::copy(&mut f, &mut w).map_err(BuildError::io("importing", &path))?;
    w.commit(Some(d), size)?;
    Ok(())
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
    let layout = if dir.is_absolute() {
        dir
    } else {
        cwd.join(dir)
    };
    let index_path = layout.join("index.json");
    let index_bytes = std::fs::read(&index_path).map_err(|e| {
        err(
            name,
            format!(
                "cannot read {}: {e} (is it an OCI image layout?)",
                index_path.display()
            ),
        )
    })?;
    let index = ImageIndex::from_slice(&index_bytes).map_err(|e| err(name, e.to_string()))?;
    let top = match (&tag, &digest) {
        (_, Some(d)) => index
            .manifests
            .iter()
            .find(|m| m.digest.to_string() == *d)
            .ok_or_else(|| err(name, format!("no manifest {d} in {}", index_path.display())))?,
        (Some(t), None) => index
            .manifests
            .iter()
            .find(|m| m.annotations.get("org.opencontainers.image.ref.name") == Some(t))
            .ok_or_else(|| {
                err(
                    name,
                    format!("no image tagged {t:?} in {}", index_path.display()),
                )
            })?,
        (None, None) if index.manifests.len() == 1 => &index.manifests[0],
        (None, None) => {
            return Err(err(
                name,
                format!(
                    "{} holds {} images: name one with :TAG",
                    index_path.display(),
                    index.manifests.len()
                ),
            ))
        }
    };
    let read = |d: &Digest| {
        copy_blob_in(store, name, &layout, d, None)?;
        read_json_blob(store, name, d)
    };
    let (mdigest, manifest) = pick_manifest(name, top, platform, &read)?;
    copy_blob_in(
        store,
        name,
        &layout,
        &manifest.config.digest,
        Some(manifest.config.size),
    )?;
    for l in &manifest.layers {
        copy_blob_in(store, name, &layout, &l.digest, Some(l.size))?;
    }
    let _ = MediaType::OciImageManifest;
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

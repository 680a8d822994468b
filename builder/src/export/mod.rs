//! From built stages to images and outputs: annotations and labels, assembling the config and
//! manifest into the store, tagging them there, and writing `--output`s.

pub mod ahead;
pub mod annotation;
pub mod attest;
pub mod engine;
pub mod push;
pub mod spec;
pub mod tags;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rbuild_layers::image::{Image, ImageRoot, ImageSet, MediaTypes};
use rbuild_layers::output::fs_tar::FsTarImage;
use rbuild_layers::output::{self, Destination as OutDest, ExportImage};
use rbuild_layers::store::Store;
use rbuild_layers::Compression;
use rbuild_registry::Reference;

use crate::export::annotation::UserAnnotations;
use crate::export::spec::{Destination, OutputKind, OutputSpec};
use crate::git::GitInfo;
use crate::solver::stage::created_time;
use crate::solver::{BuildError, StageState};

/// The annotations (on the manifest) and labels (in the config) rbuild puts on every image.
///
/// Nothing here is derived from the image's names: the same build under two tags is the same
/// image (same manifest digest). A tag is an OCI layout's `ref.name`, which lives only on that
/// layout's index descriptor (see `write_outputs`), as BuildKit does.
pub fn image_annotations(
    state: &StageState,
    git: Option<&GitInfo>,
    created: &str,
) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(
        "org.opencontainers.image.created".into(),
        created.to_string(),
    );
    if let Some(g) = git {
        a.insert("org.opencontainers.image.revision".into(), g.commit.clone());
        if let Some(url) = &g.origin_url {
            a.insert("org.opencontainers.image.source".into(), url.clone());
        }
    }
    if let Some(name) = &state.base.name {
        a.insert("org.opencontainers.image.base.name".into(), name.clone());
    }
    if let Some(d) = &state.base.digest {
        a.insert("org.opencontainers.image.base.digest".into(), d.to_string());
    }
    a
}

/// The image's `created` time: the epoch; or, when the epoch is the clock (`clock`: no
/// `SOURCE_DATE_EPOCH`, no git commit), the time of its last layer's history entry — the time
/// that layer was made, kept on cache hits — as BuildKit's exporter does, so that rebuilding
/// from the cache gives the same image (BuildKit 0.8, checked with Docker 20.10: a fully cached
/// rebuild keeps the image ID; its ENV entries carry the last layer's time).
pub fn image_time(state: &StageState, epoch: i64, clock: bool) -> String {
    let last_layer = || {
        state
            .config
            .history
            .iter()
            .rev()
            .find(|h| !h.empty_layer)
            .and_then(|h| h.created.clone())
    };
    match clock {
        true => last_layer().unwrap_or_else(|| created_time(epoch)),
        false => created_time(epoch),
    }
}

/// Makes an image's config say the target platform it was built for, as BuildKit's Dockerfile
/// frontend does when the target platform is explicit (`--platform`, `dockerfile2llb`'s
/// `!implicitTarget` rule): os and architecture always; the variant and os version when the
/// target has one or the os/architecture changed. A stage on another platform (`FROM
/// --platform=linux/arm64 …` built with `--platform linux/amd64`) is then labelled amd64,
/// exactly as Docker 20.10's BuildKit labels it.
pub fn set_target_platform(
    config: &mut rbuild_layers::image::ImageConfig,
    target: &rbuild_layers::Platform,
) {
    let same = config.os == target.os && config.architecture == target.architecture;
    config.os = target.os.clone();
    config.architecture = target.architecture.clone();
    if target.variant.is_some() || !same {
        config.variant = target.variant.clone();
    }
    if target.os_version.is_some() || !same {
        config.os_version = target.os_version.clone();
    }
}

/// Stores the config and manifest of a stage's final state and returns the image (for one
/// platform; several are put in an index by [`index_of`]). `user_labels`
/// (`--label`) go into the config last, so they win over the Dockerfile's `LABEL`s, as in
/// BuildKit, which applies them to the exported image only (no history entry, no cache key).
///
/// `annotations` (rbuild's own, see [`image_annotations`]) go on the manifest and are mirrored
/// as labels; `user` (`--annotation`) only go where the user put them, never into the config:
/// their manifest ones over rbuild's of the same key (BuildKit writes none of its own there,
/// and a user's descriptor `created` wins over the one its OCI exporter adds:
/// `exporter/oci/export.go`), their descriptor ones on the manifest's descriptor. Like labels,
/// they are applied to the exported image only and are in no cache key.
pub fn assemble(
    store: &Store,
    state: &StageState,
    annotations: BTreeMap<String, String>,
    user: &UserAnnotations,
    user_labels: &[(String, String)],
    created: &str,
) -> Result<Image, BuildError> {
    let mut config = state.config.clone();
    config.created = Some(created.to_string());
    // Entries left without a time (a clock epoch's, see `stage::empty_entry_time`) get the
    // image's.
    for h in &mut config.history {
        if h.created.is_none() {
            h.created = Some(created.to_string());
        }
    }
    let labels = &mut config.config_mut().labels;
    for (k, v) in &annotations {
        labels.insert(k.clone(), v.clone());
    }
    for (k, v) in user_labels {
        labels.insert(k.clone(), v.clone());
    }
    let mut annotations = annotations;
    annotations.extend(user.manifest.clone());
    let layers = state.layers.iter().map(|l| l.descriptor.clone()).collect();
    let mut image = Image::assemble(config, layers, annotations, MediaTypes::Oci, store)?;
    image
        .manifest_descriptor
        .annotations
        .extend(user.manifest_descriptor.clone());
    Ok(image)
}

/// One built target, ready for outputs: its image, or for several platforms the index of its
/// images (BuildKit's multi-platform result).
pub struct BuiltImage {
    pub target: String,
    pub image: ImageRoot,
    pub names: Vec<Reference>,
    /// The attestations of each platform's image (in `image.images()` order), for the files
    /// of a `type=local` output; empty without attestations. (Pushed and OCI outputs get them
    /// in `image` itself: an index with attestation manifests, see `export::attest`.)
    pub predicates: Vec<Vec<attest::Predicate>>,
}

impl BuiltImage {
    /// The digest names point at (the manifest's, or the index's), as BuildKit's
    /// `containerimage.digest`.
    pub fn digest(&self) -> &rbuild_layers::Digest {
        &self.image.descriptor().digest
    }

    /// What a push sends and tags: [`ImageRoot::descriptor`] (with attestations, the index of
    /// the images and their attestation manifests).
    pub fn pushed_root(&self) -> &rbuild_layers::Descriptor {
        self.image.descriptor()
    }

    /// The config digest of a single-platform build (with or without attestations), as
    /// BuildKit's `containerimage.config.digest`; none for several platforms.
    pub fn config_digest(&self) -> Option<&rbuild_layers::Digest> {
        match self.image.images() {
            [one] => Some(&one.config_descriptor.digest),
            _ => None,
        }
    }

    /// The image ID buildx's `--iidfile` holds: the exporter's `containerimage.config.digest`
    /// when there is one (one platform), else `containerimage.digest` (the index).
    pub fn image_id(&self) -> &rbuild_layers::Digest {
        self.config_digest()
            .unwrap_or(&self.image.descriptor().digest)
    }
}

/// Stores the index of a target's per-platform images (in `--platform` order) with the
/// user's index annotations, and its descriptor's; one image stays a plain manifest.
pub fn index_of(
    store: &Store,
    images: Vec<Image>,
    user: &UserAnnotations,
) -> Result<ImageRoot, BuildError> {
    if images.len() == 1 {
        return Ok(ImageRoot::Single(images.into_iter().next().expect("one")));
    }
    let mut set = ImageSet::assemble(images, user.index.clone(), store)?;
    set.index_descriptor
        .annotations
        .extend(user.index_descriptor.clone());
    Ok(ImageRoot::Multi(set))
}

/// The directory (or tar prefix) of one platform's filesystem in a `type=local` or `type=tar`
/// output of several platforms: BuildKit's `os_arch[_variant]`.
fn platform_dir(image: &Image) -> String {
    let c = &image.config;
    match &c.variant {
        Some(v) => format!("{}_{}_{v}", c.os, c.architecture),
        None => format!("{}_{}", c.os, c.architecture),
    }
}

/// One image's filesystem in a `type=local` or `type=tar` output.
struct FilesystemDir<'a> {
    target: &'a str,
    image: &'a Image,
    /// Relative to the output (none: the output itself).
    dir: Option<PathBuf>,
    /// Its attestations, written beside it in a `type=local` output.
    predicates: &'a [attest::Predicate],
}

/// Each image of `images` with the relative directory its filesystem goes to in a
/// `type=local` or `type=tar` output: the target's name when there are several targets, then
/// the platform's when there are several platforms (BuildKit's layout).
fn filesystem_dirs(images: &[BuiltImage]) -> Vec<FilesystemDir<'_>> {
    let mut out = Vec::new();
    for b in images {
        let several = b.image.images().len() > 1;
        for (i, image) in b.image.images().iter().enumerate() {
            let mut dir = PathBuf::new();
            if images.len() > 1 {
                dir.push(&b.target);
            }
            if several {
                dir.push(platform_dir(image));
            }
            out.push(FilesystemDir {
                target: &b.target,
                image,
                dir: (!dir.as_os_str().is_empty()).then_some(dir),
                predicates: b.predicates.get(i).map_or(&[][..], Vec::as_slice),
            });
        }
    }
    out
}

fn out_dest(d: &Destination) -> OutDest {
    match d {
        Destination::Directory(p) => OutDest::Dir(p.clone()),
        Destination::Tarball(p) => OutDest::TarFile(p.clone()),
        Destination::Stdout => OutDest::Stdout,
        // `cli::output` makes an engine destination for `type=docker` only, which
        // `write_outputs` sends to `engine::load` before it gets here.
        Destination::Engine => unreachable!("only type=docker loads into a Docker Engine"),
    }
}

/// Writes every `--output`. `source_date_epoch` (when the user chose one) clamps the mtimes
/// of a `type=tar` filesystem, as it clamps those of every layer.
pub fn write_outputs(
    store: &Store,
    images: &[BuiltImage],
    outputs: &[OutputSpec],
    source_date_epoch: Option<i64>,
) -> Result<(), BuildError> {
    for spec in outputs {
        let oci_names: Vec<Vec<String>> = images
            .iter()
            .map(|b| {
                let mut names: Vec<String> = b
                    .names
                    .iter()
                    .filter_map(|r| r.tag().map(str::to_string))
                    .collect();
                names.extend(
                    spec.names
                        .iter()
                        .filter_map(|r| r.tag().map(str::to_string)),
                );
                if names.is_empty() && images.len() > 1 {
                    names.push(b.target.clone());
                }
                names
            })
            .collect();
        let docker_names: Vec<Vec<String>> = images
            .iter()
            .map(|b| {
                b.names
                    .iter()
                    .chain(&spec.names)
                    .map(Reference::familiar)
                    .collect()
            })
            .collect();
        match &spec.kind {
            OutputKind::Oci(d) => {
                let list: Vec<ExportImage<'_>> = images
                    .iter()
                    .zip(&oci_names)
                    .map(|(b, n)| ExportImage {
                        image: &b.image,
                        names: n,
                    })
                    .collect();
                output::oci::write_oci(&out_dest(d), &list, store)?;
            }
            OutputKind::Docker(d) => {
                let list: Vec<ExportImage<'_>> = images
                    .iter()
                    .zip(&docker_names)
                    .map(|(b, n)| ExportImage {
                        image: &b.image,
                        names: n,
                    })
                    .collect();
                match d {
                    Destination::Engine => engine::load(&list, store)
                        .map(drop)
                        .map_err(|e| BuildError::Load(Box::new(e)))?,
                    d => output::docker::write_docker(&out_dest(d), &list, store)?,
                }
            }
            OutputKind::Local(dir) => {
                for fs in filesystem_dirs(images) {
                    let dest = match &fs.dir {
                        Some(sub) => dir.join(sub),
                        None => dir.clone(),
                    };
                    // The user asked for the image's filesystem outside the store: device
                    // nodes are created for real there (as root), as BuildKit's local exporter
                    // does; everywhere under the store they stay inert placeholders.
                    let opts = rbuild_layers::apply::ApplyOptions {
                        devices: rbuild_layers::apply::DeviceMode::Create,
                        ..Default::default()
                    };
                    let applier = |root: &Path, layer: &mut dyn std::io::Read, _c: Compression| {
                        rbuild_layers::apply::apply_layer(root, layer, &opts)
                            .map(|_| ())
                            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    };
                    output::local::write_local(
                        &OutDest::Dir(dest.clone()),
                        fs.image,
                        store,
                        &applier,
                    )?;
                    attest::attestation_files(fs.target, &dest, fs.predicates, source_date_epoch)
                        .map_err(|e| BuildError::Attest(Box::new(e)))?;
                }
            }
            OutputKind::Tar(d) => {
                // Flattened under the store, where device nodes stay inert placeholders (the
                // tar gets them back as device entries); removed when `scratch` is dropped.
                let scratch = store.scratch_dir("fstar")?;
                let fs_dirs = filesystem_dirs(images);
                let dirs: Vec<(&Image, Option<String>)> = fs_dirs
                    .iter()
                    .map(|fs| {
                        let prefix = fs.dir.as_ref().map(|d| d.to_string_lossy().into_owned());
                        (fs.image, prefix)
                    })
                    .collect();
                let list: Vec<FsTarImage<'_>> = dirs
                    .iter()
                    .map(|(image, prefix)| FsTarImage {
                        image,
                        prefix: prefix.as_deref(),
                    })
                    .collect();
                // BuildKit's tar exporter writes the attestation files into each image's
                // filesystem, as the local exporter does.
                let attestations = |i: usize, root: &Path| {
                    let fs = &fs_dirs[i];
                    attest::attestation_files(fs.target, root, fs.predicates, source_date_epoch)
                        .map_err(|e| rbuild_layers::output::OutputError::Addition {
                            what: format!("the attestation files of {}", fs.target),
                            source: Box::new(e),
                        })
                };
                let opts = rbuild_layers::apply::ApplyOptions::default();
                let applier = |root: &Path, layer: &mut dyn std::io::Read, _c: Compression| {
                    rbuild_layers::apply::apply_layer(root, layer, &opts)
                        .map(|_| ())
                        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                };
                output::fs_tar::write_fs_tar(
                    &out_dest(d),
                    &list,
                    store,
                    &applier,
                    scratch.path(),
                    source_date_epoch,
                    &attestations,
                )?;
            }
            // Pushed after the other outputs, by `push::push_images`.
            OutputKind::Registry { .. } => {}
        }
    }
    Ok(())
}

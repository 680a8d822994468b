//! Lazy blobs: a layer no output contains is never compressed.
//!
//! The rule: a step of a stage that is not in [`BuildRequest::output_stages`] (a compiler stage
//! read only by `COPY --from`, in a build without a `mode=max` cache export) writes its layer as a plain tar — its blob digest is its diffID —
//! and marks it [`LayerRef::deferred`]; the step record keeps that mark, so a later build that
//! hits the record knows it too. Snapshots unpack the tar as they would a compressed blob, and
//! cache keys depend on diffIDs only, so nothing else in the engine sees a difference.
//!
//! Whatever needs such a layer compressed — an image assembled from a stage that contains it
//! (this build's target, or a later build's), a push, a cache export (`mode=max` carries every
//! step) — asks [`compressed_layers`] with the build's compression and level. That produces the
//! compressed blob once from the stored tar (`rbuild_layers::lazy_blob`: the same bytes the
//! eager path writes, so image digests do not change), in parallel across layers, records the
//! mapping in the store and returns the layers with their compressed descriptors.
//!
//! Layers that are plain tars for another reason (a base image's, a `compression=uncompressed`
//! build's) are not marked and never converted. `RBUILD_DEFER_COMPRESSION=0` (read by
//! `commands::build::plan`) turns deferral off: every layer is compressed while written.

use std::collections::BTreeSet;

use rayon::prelude::*;
use rbuild_layers::store::Store;
use rbuild_layers::{Compression, Descriptor};

use super::{BuildError, BuildRequest, LayerRef, StepOutcome};

/// Whether the steps of `stage` write their layers uncompressed (see the module doc).
pub fn defers(opts: &BuildRequest, stage: usize) -> bool {
    defers_with(opts.compression, opts.output_stages.as_ref(), stage)
}

fn defers_with(kind: Compression, output_stages: Option<&BTreeSet<usize>>, stage: usize) -> bool {
    kind != Compression::None && output_stages.is_some_and(|out| !out.contains(&stage))
}

/// `layers` with every deferred layer replaced by its compressed form (made now if it was not
/// before; in parallel across layers). Other layers are returned as they are.
pub fn compressed_layers(
    store: &Store,
    layers: &[LayerRef],
    kind: Compression,
    level: Option<i32>,
) -> Result<Vec<LayerRef>, BuildError> {
    layers
        .par_iter()
        .map(|l| compressed_layer(store, l, kind, level))
        .collect()
}

fn compressed_layer(
    store: &Store,
    l: &LayerRef,
    kind: Compression,
    level: Option<i32>,
) -> Result<LayerRef, BuildError> {
    if !l.deferred || kind == Compression::None {
        return Ok(l.clone());
    }
    let d = rbuild_layers::lazy_blob::compressed(store, &l.diff_id, kind, level)?;
    Ok(LayerRef::new(
        Descriptor::new(d.media_type, d.digest, d.size),
        l.diff_id.clone(),
    ))
}

/// `outcomes` with the deferred layers of the steps of `stages` compressed (for a cache export
/// of those stages); the other outcomes are returned as they are.
pub fn compressed_outcomes(
    store: &Store,
    outcomes: Vec<StepOutcome>,
    stages: &BTreeSet<usize>,
    kind: Compression,
    level: Option<i32>,
) -> Result<Vec<StepOutcome>, BuildError> {
    outcomes
        .into_par_iter()
        .map(|mut o| {
            if stages.contains(&o.stage) {
                if let Some(l) = &o.layer {
                    o.layer = Some(compressed_layer(store, l, kind, level)?);
                }
            }
            Ok(o)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::tar::{write_layer, EntryKind, LayerEntry, LayerOptions};
    use rbuild_layers::MediaType;

    fn layer(store: &Store, dir: &std::path::Path, compression: Compression) -> LayerRef {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("f"), "x".repeat(100_000)).unwrap();
        let entries = vec![LayerEntry {
            path: "f".into(),
            kind: EntryKind::File {
                source: dir.join("f"),
            },
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Default::default(),
        }];
        let opts = LayerOptions {
            compression,
            ..LayerOptions::default()
        };
        let info = write_layer(store, entries, &opts).unwrap();
        LayerRef::new(
            Descriptor::new(info.media_type, info.digest, info.size),
            info.diff_id,
        )
    }

    #[test]
    fn only_deferred_layers_are_compressed_into_what_an_eager_write_makes() {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let eager = layer(&store, &t.path().join("a"), Compression::Gzip);
        let mut deferred = layer(&store, &t.path().join("a"), Compression::None);
        deferred.deferred = true;
        let plain = layer(&store, &t.path().join("a"), Compression::None);
        let out = compressed_layers(
            &store,
            &[deferred.clone(), plain.clone(), eager.clone()],
            Compression::Gzip,
            None,
        )
        .unwrap();
        assert_eq!(
            out[0], eager,
            "same bytes as the eager write, not deferred any more"
        );
        assert_eq!(
            out[1], plain,
            "a plain tar that was not deferred stays a tar"
        );
        assert_eq!(out[1].descriptor.media_type, MediaType::OciLayerTar);
        assert_eq!(out[2], eager);
        // An uncompressed output keeps the tar.
        let out = compressed_layers(&store, &[deferred.clone()], Compression::None, None).unwrap();
        assert_eq!(out[0], deferred);
    }

    #[test]
    fn a_stage_defers_only_when_it_is_outside_every_output_and_layers_are_compressed() {
        let out: BTreeSet<usize> = [1].into_iter().collect();
        assert!(defers_with(Compression::Gzip, Some(&out), 0));
        assert!(!defers_with(Compression::Gzip, Some(&out), 1));
        assert!(defers_with(Compression::Zstd, Some(&out), 2));
        assert!(!defers_with(Compression::None, Some(&out), 0));
        assert!(!defers_with(Compression::Gzip, None, 0));
    }
}

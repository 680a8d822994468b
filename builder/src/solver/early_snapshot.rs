//! A RUN's layer unpacked into its snapshot while the layer is still being written.
//!
//! After a RUN, the engine writes the step's layer from the upper directory, and the next step
//! that needs a root filesystem unpacks that layer into a snapshot, taking the files from the
//! same upper directory (`ApplyOptions::donor`, see `rbuild_layers::apply::donor`). Done one
//! after the other, the two passes over a large layer (a compiler stage's `apt-get install`
//! writes 340 MB) took as long as each other, on one core. Here the unpack follows the blob as
//! it is written ([`GrowingBlob`]) on a thread of its own, so on a machine with two cores the
//! snapshot is ready when the layer is, and the store's `fsync` of the blob overlaps the
//! unpack's tail.
//!
//! Nothing is trusted that the ordinary path would check: the unpack reads the tar bytes, not
//! the directory, patches any byte the donor file disagrees with, and must arrive at the same
//! diffID as the writer, or the step fails. The snapshot is published under its chain ID only
//! once the diffID is known. Only a layer that nothing else follows while it is written (no
//! upload of a pushed image) and that is deferred (a stage no output contains, so the layer is
//! a plain tar and the snapshot is what the build goes on with) is unpacked early; other
//! layers keep the donor for the step that needs it.

use std::path::{Path, PathBuf};

use rbuild_layers::apply::{apply_layer, ApplyOptions, WhiteoutMode};
use rbuild_layers::snapshot::{chain_id, PendingSnapshot};
use rbuild_layers::store::GrowingBlob;
use rbuild_layers::tar::LayerInfo;
use rbuild_layers::Digest;

use super::{BuildError, Engine, LayerRef};

/// What an early unpack needs: the snapshots below the new layer and the files it came from.
pub(super) struct EarlySnapshot<'e, 'a> {
    engine: &'e Engine<'a>,
    /// Snapshots of the layers below, bottom first.
    below: Vec<PathBuf>,
    /// Chain ID of the layers below (`None`: the layer is the first).
    parent: Option<Digest>,
    /// The RUN's upper directory.
    donor: PathBuf,
}

impl<'e, 'a> EarlySnapshot<'e, 'a> {
    /// An early unpack on top of `layers`, from `donor`; `None` when a snapshot below is
    /// missing (then the next step unpacks as before).
    pub(super) fn new(
        engine: &'e Engine<'a>,
        layers: &[LayerRef],
        donor: &Path,
    ) -> Option<EarlySnapshot<'e, 'a>> {
        let mut below = Vec::with_capacity(layers.len());
        let mut parent: Option<Digest> = None;
        for l in layers {
            let chain = chain_id(parent.as_ref(), &l.diff_id);
            below.push(engine.snapshots.get(&chain)?);
            parent = Some(chain);
        }
        Some(EarlySnapshot {
            engine,
            below,
            parent,
            donor: donor.to_path_buf(),
        })
    }

    /// Runs `write` (the layer's writer), handing it a follower that unpacks the blob as it
    /// grows; publishes the snapshot once the writer has committed and the diffIDs agree.
    pub(super) fn write_with<E>(
        self,
        write: impl FnOnce(&mut dyn FnMut(GrowingBlob)) -> Result<LayerInfo, E>,
    ) -> Result<LayerInfo, BuildError>
    where
        BuildError: From<E>,
    {
        let (written, unpacked) = std::thread::scope(|s| {
            let mut handle = None;
            let written = {
                let mut follow = |blob: GrowingBlob| {
                    let this = &self;
                    let spawned = std::thread::Builder::new()
                        .name("early-unpack".into())
                        .spawn_scoped(s, move || this.unpack(blob));
                    // Without a thread the blob is not followed; the next step unpacks it.
                    handle = spawned.ok();
                };
                write(&mut follow)
            };
            let unpacked = handle.map(|h| h.join());
            (written, unpacked)
        });
        // A failed write abandons the blob, which fails the unpack's reads: the write's error
        // is the one to report.
        let info = written?;
        let (pending, diff_id) = match unpacked {
            None => return Ok(info),
            Some(Err(_)) => {
                return Err(BuildError::Internal(
                    "unpacking a RUN's layer while it was written panicked".into(),
                ))
            }
            Some(Ok(r)) => r?,
        };
        if diff_id != info.diff_id {
            return Err(BuildError::Internal(format!(
                "a RUN's layer unpacked while it was written has the diffID {diff_id}, the \
                 writer computed {}",
                info.diff_id
            )));
        }
        let chain = chain_id(self.parent.as_ref(), &info.diff_id);
        self.engine.snapshots.commit(&chain, pending)?;
        Ok(info)
    }

    /// Unpacks the growing blob into an unnamed snapshot; returns it with the diffID read.
    fn unpack(&self, blob: GrowingBlob) -> Result<(PendingSnapshot, Digest), BuildError> {
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            parents: self.below.iter().rev().cloned().collect(),
            donor: Some(self.donor.clone()),
            ..ApplyOptions::default()
        };
        let mut diff_id = None;
        let pending = self
            .engine
            .snapshots
            .create_unnamed(|dir| {
                let report = apply_layer(dir, blob, &opts)?;
                diff_id = Some(report.diff_id);
                Ok::<_, rbuild_layers::apply::ApplyError>(report.placeholders)
            })
            .map_err(rbuild_layers::snapshot::SnapshotError::from)?;
        let diff_id = diff_id.ok_or_else(|| {
            BuildError::Internal("an early unpack reported no diffID".to_string())
        })?;
        Ok((pending, diff_id))
    }
}

//! `--output type=tar`: the final filesystem of each image, as `type=local` writes it, but as
//! one tarball (a file, or standard output), as BuildKit's tar exporter does.
//!
//! The layers are applied into a scratch directory the caller owns (under the store, so device
//! nodes stay inert placeholders there) and the tree is written back with the layer writer's
//! tar code: canonical order, Go `archive/tar` headers, empty owner names, hard links to the
//! first path, mtimes as the layers had them (clamped to `SOURCE_DATE_EPOCH` when one is
//! given, the rule every layer rbuild writes follows). The same image always gives the same
//! bytes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::local::{flatten, LayerApplier};
use super::oci::{flush, write_tar_file};
use super::{Destination, OutputError};
use crate::image::{BlobSource, Image};
use crate::tar::{entries_from_dir, write_tar, DirOptions, EntryKind, LayerEntry};

/// One image whose filesystem goes into the tarball.
#[derive(Debug, Clone, Copy)]
pub struct FsTarImage<'a> {
    pub image: &'a Image,
    /// The directory its filesystem is put under (no slashes), or `None` for the tar's root
    /// (one image). Several targets each get their own, as `type=local` gives each a directory.
    pub prefix: Option<&'a str>,
}

/// Files the caller adds next to an image's flattened filesystem before it is written: called
/// with the image's index in `images` and the directory it was flattened into (BuildKit's tar
/// exporter puts the attestation files there, as the local exporter does).
pub type AddFiles<'a> = dyn Fn(usize, &Path) -> Result<(), OutputError> + 'a;

/// Writes the filesystems of `images` as one tar to `dest` (a file or standard output).
/// `scratch` is an empty directory to flatten them in; the caller removes it. `add` writes
/// what goes into the tar besides each image's files.
pub fn write_fs_tar(
    dest: &Destination,
    images: &[FsTarImage<'_>],
    source: &dyn BlobSource,
    applier: &dyn LayerApplier,
    scratch: &Path,
    source_date_epoch: Option<i64>,
    add: &AddFiles<'_>,
) -> Result<(), OutputError> {
    let shown = match dest {
        Destination::Dir(p) => return Err(OutputError::TarNeedsFile { path: p.clone() }),
        Destination::TarFile(p) => p.clone(),
        Destination::Stdout => PathBuf::from("-"),
    };
    let mut entries = Vec::new();
    for (i, img) in images.iter().enumerate() {
        let root = scratch.join(i.to_string());
        fs::create_dir(&root).map_err(OutputError::io("creating directory", &root))?;
        flatten(&root, &shown, img.image, source, applier)?;
        add(i, &root)?;
        let mut these = entries_from_dir(&root, &DirOptions::default()).map_err(|source| {
            OutputError::FsTar {
                op: "listing the flattened filesystem",
                source,
            }
        })?;
        if let Some(prefix) = img.prefix {
            prefixed(&mut these, prefix, source_date_epoch.unwrap_or(0));
        }
        entries.extend(these);
    }
    match dest {
        Destination::TarFile(path) => {
            write_tar_file(path, |w| tar_of(entries, w, source_date_epoch))
        }
        _ => flush(tar_of(
            entries,
            io::BufWriter::new(io::stdout().lock()),
            source_date_epoch,
        )?),
    }
}

fn tar_of<W: io::Write>(
    entries: Vec<LayerEntry>,
    w: W,
    source_date_epoch: Option<i64>,
) -> Result<W, OutputError> {
    write_tar(entries, w, source_date_epoch).map_err(|source| OutputError::FsTar {
        op: "writing the filesystem tar",
        source,
    })
}

/// Moves `entries` under the directory `prefix` (hard-link targets too) and adds that directory.
fn prefixed(entries: &mut Vec<LayerEntry>, prefix: &str, mtime: i64) {
    for e in entries.iter_mut() {
        e.path = format!("{prefix}/{}", e.path);
        if let EntryKind::Hardlink { target } = &mut e.kind {
            *target = format!("{prefix}/{target}");
        }
    }
    entries.push(LayerEntry {
        path: prefix.to_string(),
        kind: EntryKind::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime,
        xattrs: Default::default(),
    });
}

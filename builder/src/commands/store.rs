//! `rbuild prune`, `rbuild du` and `rbuild fsck`: managing the local store.

use std::io::Write;

use anyhow::Context as _;
use rbuild_layers::store::{PruneOptions, Store};

use super::Failure;
use crate::cli::args::{PruneArgs, StoreArgs};
use crate::cli::options::store_dir;
use crate::cli::values::ByteSize;

fn open(a: &StoreArgs) -> Result<Store, Failure> {
    let dir = store_dir(a.store.as_deref())?;
    Store::open(&dir)
        .with_context(|| format!("opening the store {}", dir.display()))
        .map_err(Failure::Build)
}

pub fn prune(a: &PruneArgs) -> Result<(), Failure> {
    let store = open(&a.store)?;
    let report = store
        .prune(PruneOptions {
            keep_storage: a.keep_storage.map(|s| s.0),
            all: a.all,
        })
        .context("pruning the store")
        .map_err(Failure::Build)?;
    let _ = writeln!(
        std::io::stdout(),
        "removed {} blobs, {} snapshots, {} cache records, {} cache mounts, {} temporary files; freed {}",
        report.removed_blobs.len(),
        report.removed_snapshots.len(),
        report.removed_records,
        report.removed_cache_mounts,
        report.removed_temp_files,
        ByteSize(report.bytes_freed)
    );
    Ok(())
}

pub fn du(a: &StoreArgs) -> Result<(), Failure> {
    let store = open(a)?;
    let usage = store
        .disk_usage()
        .context("measuring the store")
        .map_err(Failure::Build)?;
    let _ = writeln!(std::io::stdout(), "{}", usage.to_string().trim_end());
    Ok(())
}

/// Verifies every blob (a corrupt one is removed, so the cache misses and rebuilds it) and that
/// every tag's manifest, config and layers are present. Exit 0 when the store is consistent.
pub fn fsck(a: &StoreArgs) -> Result<(), Failure> {
    let store = open(a)?;
    let report = store
        .fsck()
        .context("verifying the store")
        .map_err(Failure::Build)?;
    let mut out = format!("checked {} blobs\n", report.checked);
    for d in &report.corrupt {
        out.push_str(&format!("corrupt blob removed: {d}\n"));
    }
    if !report.stale_temps.is_empty() {
        out.push_str(&format!(
            "removed {} stale temporary entries ({}) left in {} by builds that were killed\n",
            report.stale_temps.entries.len(),
            ByteSize(report.stale_temps.bytes),
            store.tmp_dir().display()
        ));
    }
    for (name, why) in &report.stale_temps.failed {
        out.push_str(&format!(
            "could not remove stale temporary entry {name}: {why} (retried by the next build and `rbuild prune`)\n"
        ));
    }
    for p in &report.stray {
        out.push_str(&format!("stray file (not a blob name): {}\n", p.display()));
    }
    let mut dangling = Vec::new();
    let mut remote = std::collections::BTreeSet::new();
    let refs = store
        .list_refs()
        .context("reading the store's tags")
        .map_err(Failure::Build)?;
    for (name, desc) in &refs {
        if let Err(e) = rbuild_layers::image::Image::load(&store, desc.clone()).and_then(|img| {
            img.manifest
                .layers
                .iter()
                .find(|l| {
                    if store.has_blob(&l.digest) {
                        return false;
                    }
                    // A lazily pulled or imported layer: the store knows which registry has it
                    // and fetches it when something needs its bytes.
                    let held = rbuild_registry::pull::source_of(&store, &l.digest).is_some();
                    if held {
                        remote.insert(l.digest.clone());
                    }
                    !held
                })
                .map_or(Ok(()), |l| {
                    Err(rbuild_layers::image::ImageError::Read {
                        what: "layer",
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            format!("layer {} is missing", l.digest),
                        ),
                    })
                })
        }) {
            dangling.push(format!("{name}: {}", crate::errors::error_chain(&e)));
        }
    }
    for d in &dangling {
        out.push_str(&format!("broken tag {d}\n"));
    }
    if !remote.is_empty() {
        out.push_str(&format!(
            "{} layer(s) of tagged images are held in their registry (fetched when needed)\n",
            remote.len()
        ));
    }
    let consistent = report.corrupt.is_empty() && dangling.is_empty();
    out.push_str(if consistent {
        "the store is consistent\n"
    } else {
        "problems found (corrupt blobs were removed; broken tags need a rebuild or `rbuild prune`)\n"
    });
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    if consistent {
        Ok(())
    } else {
        Err(Failure::Build(anyhow::anyhow!(
            "the store had problems (see above)"
        )))
    }
}

//! `rbuild prune` and `rbuild du`: managing the local store.

use std::io::Write;

use anyhow::Context as _;
use rbuild_layers::store::{PruneOptions, Store};

use crate::cli::args::{PruneArgs, StoreArgs};
use crate::cli::options::store_dir;
use crate::cli::values::ByteSize;
use crate::cli::Failure;

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
        "removed {} blobs, {} snapshots, {} cache records, {} temporary files; freed {}",
        report.removed_blobs.len(),
        report.removed_snapshots.len(),
        report.removed_records,
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

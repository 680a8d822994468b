//! The committed fuzz corpora of this crate's targets (`testdata/fuzz/<target>/`), run through
//! the same oracles as the cargo-fuzz targets in `tests/fuzz` (see `rbuild_layers::fuzz`).

use std::path::PathBuf;

use rbuild_layers::fuzz;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(target)
}

#[test]
fn tar_read_corpus() {
    fuzz::run_corpus(&corpus("tar_read"), fuzz::tar_read);
}

/// Applies each tar (the hostile seeds among them) with the canary oracle; needs root for
/// device nodes and ownership, as the other apply tests do.
#[test]
fn tar_apply_corpus() {
    fuzz::run_corpus(&corpus("tar_apply"), fuzz::tar_apply);
}

#[test]
fn manifest_parse_corpus() {
    fuzz::run_corpus(&corpus("manifest_parse"), fuzz::manifest_parse);
}

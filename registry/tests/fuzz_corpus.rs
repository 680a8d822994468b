//! The committed fuzz corpora of this crate's targets (`testdata/fuzz/<target>/`), run through
//! the same oracles as the cargo-fuzz targets in `tests/fuzz` (see `rbuild_registry::fuzz`).

use std::path::PathBuf;

use rbuild_layers::fuzz::run_corpus;
use rbuild_registry::fuzz;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(target)
}

#[test]
fn image_reference_corpus() {
    run_corpus(&corpus("image_reference"), fuzz::image_reference);
}

#[test]
fn www_authenticate_corpus() {
    run_corpus(&corpus("www_authenticate"), fuzz::www_authenticate);
}

#[test]
fn cache_map_corpus() {
    run_corpus(&corpus("cache_map"), fuzz::cache_map);
}

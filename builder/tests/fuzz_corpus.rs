//! The committed fuzz corpora of the builder's targets (`testdata/fuzz/<target>/`), run through
//! the same oracles as the cargo-fuzz targets in `tests/fuzz` (see `rbuild::fuzz`).

use std::path::PathBuf;

use rbuild::fuzz;
use rbuild_layers::fuzz::run_corpus;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/fuzz")
        .join(target)
}

#[test]
fn dockerfile_parse_corpus() {
    run_corpus(&corpus("dockerfile_parse"), fuzz::dockerfile_parse);
}

#[test]
fn dockerfile_expand_corpus() {
    run_corpus(&corpus("dockerfile_expand"), fuzz::dockerfile_expand);
}

#[test]
fn dockerignore_corpus() {
    run_corpus(&corpus("dockerignore"), fuzz::dockerignore);
}

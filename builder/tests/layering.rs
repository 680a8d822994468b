//! The builder's top-level modules form layers (ARCHITECTURE.md), and a module may use only the
//! layers below it: the engine never imports the CLI, the Dockerfile frontend never imports the
//! engine. This test reads `builder/src`, collects every `crate::<module>` reference of each
//! top-level module (tests included), and fails on an edge that points up or sideways, on a
//! module missing from the table, and on a listed exception that is no longer needed.
//!
//! Run it alone: `cargo test -p rbuild --test layering`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its layer: a module may use modules of lower layers only.
const LAYERS: &[(&str, u32)] = &[
    // Helpers every layer may use.
    ("errors", 0),
    ("progress", 0),
    // Inputs: the Dockerfile frontend, the build context, the context's git metadata.
    ("dockerfile", 1),
    ("context", 1),
    ("git", 1),
    // The engine: plan, solver (keys, records, steps), the RUN executor and its sandbox set-up.
    ("graph", 2),
    ("executor", 2),
    ("sandbox_init", 2),
    ("solver", 3),
    // The build checks: they read the Dockerfile, the plan and the context, before solving.
    ("lint", 3),
    // Outside the engine, implementing its seams (`solver::seams`): layers fetched when needed,
    // the remote cache's import/export, outputs and push (with uploads ahead).
    ("lazy_pull", 4),
    ("remote_cache", 5),
    // Attestations (SBOM, provenance) of built images; `export` puts them in an index.
    ("attest", 5),
    ("export", 6),
    // Flags into validated options, then the subcommands that compose everything.
    ("cli", 7),
    ("commands", 8),
    // Oracles for the fuzz targets (test support only).
    ("fuzz", 9),
];

/// Edges that still point up, each with the issue-18 seam that will remove it. The test fails
/// when one of them disappears, so that this list only shrinks.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read builder/src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src` belongs to (`None` for lib.rs and main.rs).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// Every `crate::<name>` in `text`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        // `rbuild_layers::x` or `$crate::` are not this crate's paths.
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let name: String = text[i + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn edges() -> BTreeMap<(String, String), Vec<PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let Some(from) = module_of(&src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).expect("read source");
        for to in crate_refs(&text) {
            if to != from {
                let rel = f.strip_prefix(&src).unwrap_or(&f).to_path_buf();
                edges.entry((from.clone(), to)).or_default().push(rel);
            }
        }
    }
    edges
}

#[test]
fn every_module_uses_only_the_layers_below_it() {
    let layer: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let excepted: BTreeSet<(&str, &str)> = EXCEPTIONS.iter().map(|(a, b, _)| (*a, *b)).collect();
    let mut problems = Vec::new();
    let mut used_exceptions = BTreeSet::new();
    for ((from, to), files) in edges() {
        let (Some(lf), Some(lt)) = (layer.get(from.as_str()), layer.get(to.as_str())) else {
            problems.push(format!(
                "{from} -> {to}: a top-level module missing from LAYERS (tests/layering.rs and ARCHITECTURE.md): give it a layer"
            ));
            continue;
        };
        if lt < lf {
            continue;
        }
        if excepted.contains(&(from.as_str(), to.as_str())) {
            used_exceptions.insert((from.clone(), to.clone()));
            continue;
        }
        problems.push(format!(
            "{from} (layer {lf}) uses {to} (layer {lt}), which is not below it, in {files:?}: move the shared type down, or define a trait in {from} that {to} implements"
        ));
    }
    for (a, b, why) in EXCEPTIONS {
        if !used_exceptions.contains(&(a.to_string(), b.to_string())) {
            problems.push(format!(
                "exception {a} -> {b} ({why}) is no longer needed: remove it from EXCEPTIONS"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn crate_paths_are_found_in_uses_and_expressions_but_not_in_other_crates() {
    let refs = crate_refs(
        "use crate::solver::X;\nlet p = crate::graph::platform::f(); rbuild_layers::crate_x; $crate::y",
    );
    assert_eq!(
        refs,
        ["graph", "solver"].iter().map(|s| s.to_string()).collect()
    );
}

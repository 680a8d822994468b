//! Helpers for the COPY/ADD tests: run one instruction line against a build context or a
//! stage's root, over an image, and summarise the layer's entries.

use std::path::Path;

use rbuild_layers::tar::{EntryKind as LayerKind, LayerOptions};

use super::{entries, prepare, CopyEnv, Source};
use crate::context::{Context, IgnoreRules};
use crate::dockerfile::{CopyInstruction, Instruction};
use crate::solver::lazy_rootfs::LazyRootFs;
use crate::solver::BuildError;

/// The COPY or ADD on the line after `FROM scratch`.
pub(super) fn instruction(line: &str) -> (CopyInstruction, bool) {
    let df = crate::dockerfile::parse(&format!("FROM scratch\n{line}\n")).unwrap();
    match &df.stages[0].instructions[0].node {
        Instruction::Copy(c) => (c.clone(), false),
        Instruction::Add(c) => (c.clone(), true),
        other => panic!("not a COPY: {other:?}"),
    }
}

/// Runs `line` against the build context in `ctx` over an empty image and returns the
/// layer's entries as `(path, kind letter, mode, uid)`.
pub(super) fn copy_entries(ctx: &Path, line: &str) -> Result<Vec<Summary>, BuildError> {
    let context = Context::scan(ctx, &IgnoreRules::empty(), None).unwrap();
    copy_entries_from(&Source::Context(&context), line)
}

pub(super) type Summary = (String, char, u32, u64);

pub(super) fn copy_entries_from(
    source: &Source<'_>,
    line: &str,
) -> Result<Vec<Summary>, BuildError> {
    copy_entries_over(source, line, &LazyRootFs::empty())
}

pub(super) fn copy_entries_over(
    source: &Source<'_>,
    line: &str,
    rootfs: &LazyRootFs<'_>,
) -> Result<Vec<Summary>, BuildError> {
    let (c, is_add) = instruction(line);
    let scratch = tempfile::tempdir().unwrap();
    let env = CopyEnv {
        workdir: "/",
        epoch: 0,
        normalize_modes: false,
        is_add,
        layer_options: LayerOptions::default(),
    };
    let p = prepare(&c, source, &env, scratch.path(), &|_, _| {})?;
    let mut out = entries(&p, &c, &env, rootfs, scratch.path())?;
    rbuild_layers::tar::sort_entries(&mut out);
    Ok(out
        .into_iter()
        .map(|e| {
            let kind = match e.kind {
                LayerKind::File { .. } => 'f',
                LayerKind::Dir => 'd',
                LayerKind::Symlink { .. } => 'l',
                LayerKind::Hardlink { .. } => 'h',
                _ => '?',
            };
            (e.path, kind, e.mode, e.uid)
        })
        .collect())
}

pub(super) fn paths(entries: &[(String, char, u32, u64)]) -> Vec<&str> {
    entries.iter().map(|e| e.0.as_str()).collect()
}

pub(super) fn context(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, content) in files {
        let p = dir.path().join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

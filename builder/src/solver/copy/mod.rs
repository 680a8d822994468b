//! COPY and ADD: select sources (build context, another stage, or heredocs), compute the step's
//! key from their contents, and on a miss write a layer straight from the source files (no
//! staging copy), following BuildKit's rules:
//!
//! * a relative destination is taken from the current `WORKDIR`;
//! * a destination ending in `/` (or `.`) is a directory; so is a destination that already
//!   exists as a directory in the image; several sources need the former (BuildKit 20.10 would
//!   copy them onto one file: rbuild refuses, a Dockerfile error);
//! * a destination that is a symlink in the image is written through, resolved inside the
//!   image ([`super::in_root::resolve_dest`]);
//! * a source directory's *contents* are copied (`--parents` keeps the source path);
//! * files get `--chown`'s user if given (resolved through the image's `/etc/passwd` and
//!   `/etc/group`), else their own uid/gid when copied from a stage or image and 0:0 from the
//!   build context; directories the step creates are 0:0 without `--chown`; files keep their
//!   mode unless `--chmod`, and get the build's epoch as mtime (so the image does not depend
//!   on when the checkout happened);
//! * files that one directory source's walk meets twice (hard links) stay one inode;
//! * `--exclude` patterns use `.dockerignore` syntax relative to each source;
//! * `--link` makes the layer independent of what is below it: its key ignores the parent and
//!   no existing path is consulted;
//! * `ADD` of a local tar archive (plain, gzip, bzip2 or xz; decided by content) extracts it at
//!   the destination. URLs and git repositories never reach this module: `ADD` of them is
//!   [`super::remote`]'s, `COPY` of them is refused before (BuildKit's own rules on what is a
//!   URL; anything else, `HTTP://x` included, is a path in the build context).
//!
//! A copy runs in two halves. [`prepare`] needs no image: it selects the sources
//! ([`select`]), walks the directories among them ([`walk`]), plans where each item lands
//! ([`plan`]) and hashes the items into the selection digest that [`key_inputs`] puts in the
//! step's key ([`digest`]). Only on a miss does [`entries()`] write the prepared items as layer
//! entries over the image below ([`mod@entries`], with [`archive`] for what `ADD` extracts).
//! [`dest`] holds the destination-path rules both halves share, [`item`] the item they pass
//! along.

mod archive;
mod dest;
mod digest;
mod entries;
mod item;
mod plan;
mod select;
#[cfg(test)]
mod testutil;
mod walk;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rbuild_layers::tar::LayerOptions;
use rbuild_layers::Digest;

use super::BuildError;
use crate::context::Context;
use crate::dockerfile::CopyInstruction;
use item::Item;

pub use dest::absolute_dest;
pub use digest::{definition_inputs, key_inputs};
pub use entries::entries;

/// Why a COPY or ADD could not be prepared or written.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("invalid --exclude pattern")]
    Exclude(#[source] crate::context::patternmatcher::PatternError),
    #[error("selecting the sources in the build context")]
    Select(#[source] crate::context::ContextError),
    #[error("when copying several sources the destination must be a directory ending in '/': write `{0}/`")]
    DestNotDir(String),
    #[error("invalid source pattern {0:?}")]
    BadPattern(String),
    #[error("{0}: no such file or directory in the source stage")]
    NotInStage(String),
    #[error("COPY/ADD source {source_path:?}: {link:?} is a symlink whose target is not there (a source symlink is followed inside the build context or stage root, as BuildKit does: its target must be in it and not excluded by .dockerignore)")]
    LinkTargetMissing { source_path: String, link: String },
    #[error(transparent)]
    Chmod(#[from] super::chmod::ChmodError),
    #[error("extracting the archive {}", path.display())]
    Extract {
        path: PathBuf,
        #[source]
        source: rbuild_layers::apply::ApplyError,
    },
    #[error(transparent)]
    Dest(#[from] super::in_root::DestError),
    #[error("ADD does not take --from: use COPY --from")]
    AddFrom,
}

/// What a COPY/ADD needs from the stage it runs in.
pub struct CopyEnv<'a> {
    pub workdir: &'a str,
    pub epoch: i64,
    pub normalize_modes: bool,
    pub is_add: bool,
    pub layer_options: LayerOptions,
}

/// Where sources come from.
pub enum Source<'a> {
    Context(&'a Context),
    /// A directory holding another stage's (or image's) merged filesystem.
    Dir(&'a Path),
}

impl Source<'_> {
    /// The directory the source's relative paths are taken from.
    fn root(&self) -> &Path {
        match self {
            Source::Context(ctx) => ctx.root(),
            Source::Dir(root) => root,
        }
    }

    /// Where the source's entry `rel` (`.` for the root itself) is on disk.
    fn path_of(&self, rel: &str) -> PathBuf {
        if rel == "." {
            self.root().to_path_buf()
        } else {
            self.root().join(rel)
        }
    }
}

/// A prepared COPY: its key inputs (known before any layer work) and the items to write.
pub struct PreparedCopy {
    pub selection_digest: Digest,
    normalize_modes: bool,
    items: Vec<Item>,
    dest_abs: String,
    dest_is_dir: bool,
    /// The directories that directory sources are copied into: created (0755, owned like the
    /// files) when missing even if the source is empty, left as they are when they exist.
    dir_targets: BTreeSet<String>,
    /// No source matched (only wildcards, each matching nothing): BuildKit succeeds without
    /// creating anything, not even the destination directory.
    matched_nothing: bool,
}

/// The instruction's `--chmod`, parsed (the parser has checked a literal one; an expanded one
/// is checked here).
pub(crate) fn chmod_of(c: &CopyInstruction) -> Result<Option<super::chmod::Chmod>, CopyError> {
    Ok(c.chmod
        .as_deref()
        .map(super::chmod::Chmod::parse)
        .transpose()?)
}

/// Selects the sources of `c` and computes the selection digest (the COPY's content input).
pub fn prepare(
    c: &CopyInstruction,
    source: &Source<'_>,
    env: &CopyEnv<'_>,
    scratch: &Path,
    hashing: &(dyn Fn(u64, u64) + Sync),
) -> Result<PreparedCopy, BuildError> {
    let dest_abs = absolute_dest(&c.dest, env.workdir);
    let exclude = select::exclude_matcher(&c.exclude)?;
    let selected = select::select_all(source, &c.sources)?;
    let matched_count = selected.matched + c.heredocs.len();
    let dest_is_dir = dest::dest_is_dir(c, matched_count)?;
    let planner = plan::Planner {
        source,
        exclude: exclude.as_ref(),
        dest_abs: &dest_abs,
        dest_is_dir,
        parents: c.parents,
        is_add: env.is_add,
    };
    let mut planned = planner.plan(selected.sources)?;
    planner.add_heredocs(&mut planned, &c.heredocs, scratch)?;
    digest::content_digests(source, &mut planned.items, hashing)?;
    Ok(PreparedCopy {
        selection_digest: digest::selection_digest(
            &planned.items,
            &planned.dir_targets,
            env.normalize_modes,
        ),
        normalize_modes: env.normalize_modes,
        items: planned.items,
        dest_abs,
        dest_is_dir,
        dir_targets: planned.dir_targets,
        matched_nothing: matched_count == 0,
    })
}

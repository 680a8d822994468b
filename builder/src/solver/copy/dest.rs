//! Destination paths of a COPY/ADD: the destination taken from the working directory, paths
//! joined below it, whether it names a directory, how a prepared copy moves when the
//! destination resolves elsewhere in the image (through a symlink), and the name a file is
//! shown under in a selection. Paths here are absolute in the image, cleaned, without the
//! leading `/` (the root is the empty string).

use super::item::Item;
use super::{CopyError, PreparedCopy};
use crate::dockerfile::CopyInstruction;
use crate::solver::rootfs::components;
use crate::solver::BuildError;

fn clean_abs(p: &str) -> String {
    components(p).join("/")
}

/// Joins the destination to the working directory.
pub fn absolute_dest(dest: &str, workdir: &str) -> String {
    if dest.starts_with('/') {
        clean_abs(dest)
    } else {
        clean_abs(&format!("{workdir}/{dest}"))
    }
}

/// `rel` below the destination path `base`, cleaned.
pub(super) fn join_dest(base: &str, rel: &str) -> String {
    if base.is_empty() {
        clean_abs(rel)
    } else {
        clean_abs(&format!("{base}/{rel}"))
    }
}

/// Whether the destination is a directory that sources are copied into: spelled as one, or
/// needed as one because several sources matched. Several sources onto a destination not
/// spelled as a directory are refused (BuildKit 20.10 would copy them onto one file).
pub(super) fn dest_is_dir(c: &CopyInstruction, matched_count: usize) -> Result<bool, BuildError> {
    if matched_count > 1 && !c.dest_names_dir() {
        return Err(CopyError::DestNotDir(c.dest.trim_end_matches('/').to_string()).into());
    }
    Ok(c.dest_names_dir() || matched_count > 1)
}

/// The name `dest` is shown under in a selection: relative to the destination `dest_abs`, or
/// its own last component when it is the destination itself (a single file).
pub(super) fn display_rel(dest: &str, dest_abs: &str) -> String {
    let rel = dest
        .strip_prefix(dest_abs)
        .map(|r| r.trim_start_matches('/'))
        .filter(|r| !r.is_empty());
    match rel {
        Some(r) => r.to_string(),
        None => dest.rsplit('/').next().unwrap_or(dest).to_string(),
    }
}

impl PreparedCopy {
    /// The same copy with its destination `dest_abs` replaced by `to` (where it resolves in the
    /// image, through symlinks): every item below it moves along.
    pub(super) fn rebased(&self, to: &str) -> PreparedCopy {
        let from = &self.dest_abs;
        let move_path = |p: &str| -> String {
            match p.strip_prefix(from.as_str()) {
                Some("") => to.to_string(),
                Some(rest) if from.is_empty() || rest.starts_with('/') => {
                    join_dest(to, rest.trim_start_matches('/'))
                }
                _ => p.to_string(),
            }
        };
        PreparedCopy {
            selection_digest: self.selection_digest.clone(),
            normalize_modes: self.normalize_modes,
            items: self
                .items
                .iter()
                .map(|i| Item {
                    dest: move_path(&i.dest),
                    ..i.clone()
                })
                .collect(),
            dest_abs: to.to_string(),
            dest_is_dir: self.dest_is_dir,
            dir_targets: self.dir_targets.iter().map(|d| move_path(d)).collect(),
            matched_nothing: self.matched_nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_destination_is_taken_from_the_workdir_and_cleaned() {
        assert_eq!(absolute_dest("/a/./b/../c/", "/w"), "a/c");
        assert_eq!(absolute_dest("x/y", "/w/d"), "w/d/x/y");
        assert_eq!(absolute_dest(".", "/"), "");
        assert_eq!(join_dest("", "a/b"), "a/b");
        assert_eq!(join_dest("d", "a/../b"), "d/b");
    }

    #[test]
    fn a_file_is_shown_relative_to_the_destination_or_by_its_name() {
        assert_eq!(display_rel("d/sub/f", "d"), "sub/f");
        assert_eq!(display_rel("d", "d"), "d");
        assert_eq!(display_rel("a/b/file", "a/b/file"), "file");
        assert_eq!(display_rel("all/f", ""), "all/f");
    }
}

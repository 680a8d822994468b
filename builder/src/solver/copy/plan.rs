//! Where each selected source lands: the items of a COPY/ADD with their destinations, following
//! BuildKit's rules — a directory source's *contents* go into the destination (`--parents`
//! keeps the source path), a single file goes into a destination directory or becomes the
//! destination, an `ADD` archive is extracted into the destination, heredocs are files — and
//! the directories directory sources are copied into, and the hard-link groups of each
//! directory source's walk.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use super::archive::is_extracted_archive;
use super::dest::join_dest;
use super::item::{Item, ItemKind};
use super::select::{excluded, Matched, SourceKind};
use super::walk::walk_source;
use super::Source;
use crate::context::patternmatcher::PatternMatcher;
use crate::dockerfile::Heredoc;
use crate::solver::BuildError;

/// What the destination rules depend on.
pub(super) struct Planner<'a, 's> {
    pub(super) source: &'a Source<'s>,
    pub(super) exclude: Option<&'a PatternMatcher>,
    /// The destination, absolute (see [`super::dest`]).
    pub(super) dest_abs: &'a str,
    /// Whether sources are copied into the destination (else one source becomes it).
    pub(super) dest_is_dir: bool,
    /// `--parents`: a source keeps its path below the destination.
    pub(super) parents: bool,
    /// `ADD`: a local tar archive is extracted.
    pub(super) is_add: bool,
}

/// The planned items, in the order the selection digest records them.
#[derive(Default)]
pub(super) struct Planned {
    pub(super) items: Vec<Item>,
    /// See [`super::PreparedCopy::dir_targets`].
    pub(super) dir_targets: BTreeSet<String>,
    /// How many hard-link groups were handed out (each directory source numbers on).
    link_groups: usize,
}

impl Planner<'_, '_> {
    /// The items of the selected sources, in order.
    pub(super) fn plan(&self, sources: Vec<Matched>) -> Result<Planned, BuildError> {
        let mut planned = Planned::default();
        for matched in sources {
            match matched.kind {
                SourceKind::Dir => self.plan_dir(&matched, &mut planned)?,
                SourceKind::File | SourceKind::Symlink(_) => {
                    if let Some(item) = self.plan_single(matched)? {
                        planned.items.push(item);
                    }
                }
            }
        }
        Ok(planned)
    }

    fn is_context(&self) -> bool {
        matches!(self.source, Source::Context(_))
    }

    /// A directory source: the directory it is copied into (itself first with `--parents`),
    /// then everything below it that is not excluded, hard links grouped.
    fn plan_dir(&self, matched: &Matched, planned: &mut Planned) -> Result<(), BuildError> {
        let Matched { name, src: rel, .. } = matched;
        let keeps_path = self.parents && name != ".";
        let target = if keeps_path {
            join_dest(self.dest_abs, name)
        } else {
            self.dest_abs.to_string()
        };
        // BuildKit creates the target of a directory copy even when the directory is
        // empty (`COPY emptydir /dest` makes /dest).
        if !target.is_empty() {
            planned.dir_targets.insert(target.clone());
        }
        let full = self.source.path_of(rel);
        if keeps_path {
            let md = std::fs::symlink_metadata(&full).map_err(BuildError::io("reading", &full))?;
            let mut item = Item::new(target.clone(), ItemKind::Dir, md.permissions().mode());
            item.owner = (!self.is_context()).then(|| (md.uid(), md.gid()));
            planned.items.push(item);
        }
        let mut inodes: BTreeMap<(u64, u64), Vec<usize>> = BTreeMap::new();
        for w in walk_source(self.source, rel, &full)? {
            if excluded(self.exclude, &w.rel) {
                continue;
            }
            let (kind, ctx_rel) = match w.kind {
                SourceKind::Dir => (ItemKind::Dir, None),
                SourceKind::File => {
                    let src = join_rel(rel, &w.rel);
                    (
                        ItemKind::File(self.source.path_of(&src)),
                        self.is_context().then_some(src),
                    )
                }
                SourceKind::Symlink(t) => (ItemKind::Symlink(t), None),
            };
            if let Some(inode) = w.inode {
                inodes.entry(inode).or_default().push(planned.items.len());
            }
            let mut item = Item::new(join_dest(&target, &w.rel), kind, w.mode);
            item.ctx_rel = ctx_rel;
            item.owner = w.owner;
            planned.items.push(item);
        }
        // Only what this source's walk met more than once is linked (never across sources).
        for members in inodes.into_values().filter(|m| m.len() > 1) {
            for i in members {
                planned.items[i].link_group = Some(planned.link_groups);
            }
            planned.link_groups += 1;
        }
        Ok(())
    }

    /// A file source (or a link followed to one): `None` when `--exclude` leaves it out.
    fn plan_single(&self, matched: Matched) -> Result<Option<Item>, BuildError> {
        let Matched {
            name,
            src: rel,
            kind,
        } = matched;
        let base_name = name.rsplit('/').next().unwrap_or(&name).to_string();
        if excluded(self.exclude, &base_name) {
            return Ok(None);
        }
        let full = self.source.path_of(&rel);
        let md = std::fs::symlink_metadata(&full).map_err(BuildError::io("reading", &full))?;
        let kind = match kind {
            SourceKind::Symlink(t) => ItemKind::Symlink(t),
            _ if self.is_add && is_extracted_archive(&full)? => ItemKind::Archive(full),
            _ => ItemKind::File(full),
        };
        let dest = if matches!(kind, ItemKind::Archive(_)) {
            // An archive is extracted into the destination directory.
            self.dest_abs.to_string()
        } else if self.parents {
            join_dest(self.dest_abs, &name)
        } else if self.dest_is_dir {
            join_dest(self.dest_abs, &base_name)
        } else {
            self.dest_abs.to_string()
        };
        let mut item = Item::new(dest, kind, md.permissions().mode());
        item.name_if_dir =
            (!self.dest_is_dir && !self.parents && !item.is_archive()).then_some(base_name);
        item.ctx_rel = (self.is_context() && !item.is_symlink()).then_some(rel);
        item.owner = (!self.is_context()).then(|| (md.uid(), md.gid()));
        Ok(Some(item))
    }

    /// The heredocs, written to `scratch` as files: into the destination directory under
    /// their names, or as the destination itself.
    pub(super) fn add_heredocs(
        &self,
        planned: &mut Planned,
        heredocs: &[Heredoc],
        scratch: &Path,
    ) -> Result<(), BuildError> {
        for h in heredocs {
            let path = scratch.join(format!("heredoc-{}", planned.items.len()));
            std::fs::write(&path, h.body()).map_err(BuildError::io("writing", &path))?;
            let dest = if self.dest_is_dir {
                join_dest(self.dest_abs, &h.name)
            } else {
                self.dest_abs.to_string()
            };
            let mut item = Item::new(dest, ItemKind::File(path), 0o644);
            item.name_if_dir = (!self.dest_is_dir).then(|| h.name.clone());
            planned.items.push(item);
        }
        Ok(())
    }
}

/// `b` below the source-relative path `a` (`.` or empty for the source's root).
fn join_rel(a: &str, b: &str) -> String {
    if a == "." || a.is_empty() {
        b.to_string()
    } else {
        format!("{a}/{b}")
    }
}

#[cfg(test)]
mod tests {
    use crate::solver::copy::testutil::{context, copy_entries, copy_entries_from};
    use crate::solver::copy::Source;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    #[test]
    fn copy_of_an_empty_directory_creates_the_destination() {
        // BuildKit (docker 20.10): `COPY empty /dest` makes /dest, 0755 whatever the source's
        // mode and whatever --chmod says, owned by --chown like its missing parents.
        let ctx = context(&[]);
        std::fs::create_dir(ctx.path().join("empty")).unwrap();
        std::fs::set_permissions(
            ctx.path().join("empty"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        let out = copy_entries(ctx.path(), "COPY --chmod=700 empty /dest").unwrap();
        assert_eq!(out, [("dest".to_string(), 'd', 0o755, 0)]);
        let out = copy_entries(ctx.path(), "COPY --chown=1000:1000 empty /p1/p2").unwrap();
        assert_eq!(
            out,
            [
                ("p1".to_string(), 'd', 0o755, 1000),
                ("p1/p2".to_string(), 'd', 0o755, 1000)
            ]
        );
    }

    /// Changes the owner of `p` (not following a link); false when not permitted (not root).
    fn lchown(p: &Path, uid: u32, gid: u32) -> bool {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).is_ok()
    }

    #[test]
    fn copy_from_a_stage_keeps_the_owner_of_what_it_copies() {
        // BuildKit (docker 20.10): COPY --from keeps the uid/gid of files, directories and
        // links (a followed source link: its target's); directories the COPY creates are 0:0;
        // --chown wins over all; files from the build context are 0:0.
        let root = context(&[("out/f", "x"), ("out/sub/g", "y")]);
        let r = root.path();
        std::os::unix::fs::symlink("f", r.join("out/lnk")).unwrap();
        let owned = [
            ("out", 1000),
            ("out/f", 1000),
            ("out/sub", 1000),
            ("out/sub/g", 1001),
            ("out/lnk", 1004),
        ];
        for (p, uid) in owned {
            if !lchown(&r.join(p), uid, uid) {
                eprintln!("SKIPPED: chown needs root");
                return;
            }
        }
        let stage = Source::Dir(r);
        let out = copy_entries_from(&stage, "COPY --from=build /out /o1").unwrap();
        let uids: Vec<(&str, u64)> = out.iter().map(|e| (e.0.as_str(), e.3)).collect();
        assert_eq!(
            uids,
            [
                ("o1", 0),
                ("o1/f", 1000),
                ("o1/lnk", 1004),
                ("o1/sub", 1000),
                ("o1/sub/g", 1001)
            ]
        );
        let out = copy_entries_from(&stage, "COPY --from=build /out/lnk /out/f /o3/").unwrap();
        let uids: Vec<(&str, u64)> = out.iter().map(|e| (e.0.as_str(), e.3)).collect();
        assert_eq!(uids, [("o3", 0), ("o3/f", 1000), ("o3/lnk", 1000)]);
        let out = copy_entries_from(&stage, "COPY --from=build --chown=5:6 /out /o5").unwrap();
        assert!(out.iter().all(|e| e.3 == 5), "{out:?}");
        // The same tree as the build context: 0:0.
        let out = copy_entries(r, "COPY out /c/").unwrap();
        assert!(out.iter().all(|e| e.3 == 0), "{out:?}");
    }
}

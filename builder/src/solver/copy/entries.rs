//! Writing a prepared COPY/ADD on a miss: its layer entries over the image below — the
//! destination resolved through symlinks in the image, a single file put inside an existing
//! directory, the missing directories created (owned by `--chown`, else 0:0), `--chown` and
//! `--chmod` applied, archives extracted, the existing parents kept as they are, and the
//! files of a hard-link group turned into links to the first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rbuild_layers::tar::{EntryKind as LayerKind, LayerEntry};

use super::archive::extract_archive;
use super::dest::join_dest;
use super::item::{Item, ItemKind};
use super::{CopyEnv, PreparedCopy};
use crate::dockerfile::CopyInstruction;
use crate::solver::chmod::Chmod;
use crate::solver::lazy_rootfs::LazyRootFs;
use crate::solver::rootfs::components;
use crate::solver::users::{resolve_owner, Owner};
use crate::solver::BuildError;

/// Builds the layer entries of a prepared COPY on top of `rootfs` (unused with `--link`).
pub fn entries(
    prepared: &PreparedCopy,
    c: &CopyInstruction,
    env: &CopyEnv<'_>,
    rootfs: &LazyRootFs<'_>,
    scratch: &Path,
) -> Result<Vec<LayerEntry>, BuildError> {
    let chown = chown_owner(c, rootfs)?;
    let chmod = super::chmod_of(c)?;
    if prepared.matched_nothing {
        return Ok(Vec::new());
    }
    let rebased = resolve_dest(prepared, c.link, rootfs)?;
    let prepared = rebased.as_ref().unwrap_or(prepared);
    let writer = Writer {
        prepared,
        link: c.link,
        env,
        chown,
        chmod,
        into_dir: into_existing_dir(prepared, c.link, rootfs)?,
    };
    let mut out = writer.created_dirs(rootfs)?;
    writer.item_entries(scratch, &mut out)?;
    // Existing parents go into the layer as they are (BuildKit's layers hold them); with
    // --link there is nothing below to consult.
    if !c.link {
        let parents = crate::solver::parents::existing_parents(rootfs, &out, env.epoch)?;
        out.extend(parents);
    }
    link_hardlinks(&mut out, &prepared.items);
    Ok(out)
}

/// `--chown`'s user and group, resolved through the image's `/etc/passwd` and `/etc/group`.
fn chown_owner(c: &CopyInstruction, rootfs: &LazyRootFs<'_>) -> Result<Option<Owner>, BuildError> {
    let Some(spec) = &c.chown else {
        return Ok(None);
    };
    let passwd = rootfs.read_small_file("/etc/passwd")?;
    let group = rootfs.read_small_file("/etc/group")?;
    Ok(Some(resolve_owner(
        spec,
        passwd.as_deref(),
        group.as_deref(),
    )?))
}

/// The copy moved to where its destination resolves in the image, when that is elsewhere.
/// The destination is written through a symlink, resolved inside the image (BuildKit:
/// `COPY a /bin/vi` over `vi -> busybox` replaces busybox; a dangling link's target is
/// created). With --link there is nothing below to resolve against.
fn resolve_dest(
    prepared: &PreparedCopy,
    link: bool,
    rootfs: &LazyRootFs<'_>,
) -> Result<Option<PreparedCopy>, BuildError> {
    if link {
        return Ok(None);
    }
    let to = crate::solver::in_root::resolve_dest(rootfs, &prepared.dest_abs)?;
    Ok((to != prepared.dest_abs).then(|| prepared.rebased(&to)))
}

/// Whether a single file copied to a destination not spelled as a directory goes inside it,
/// because the destination is an existing directory in the image.
fn into_existing_dir(
    prepared: &PreparedCopy,
    link: bool,
    rootfs: &LazyRootFs<'_>,
) -> Result<bool, BuildError> {
    Ok(!prepared.dest_is_dir
        && !link
        && rootfs
            .lookup(&prepared.dest_abs)?
            .is_some_and(|f| f.is_dir()))
}

/// A prepared copy (its destination resolved) and the step's rules for writing it.
struct Writer<'a, 'e> {
    prepared: &'a PreparedCopy,
    /// `--link`: nothing below is consulted.
    link: bool,
    env: &'a CopyEnv<'e>,
    chown: Option<Owner>,
    chmod: Option<Chmod>,
    /// See [`into_existing_dir`].
    into_dir: bool,
}

impl Writer<'_, '_> {
    /// The owner of what the step creates: `--chown`'s, else 0:0 whatever the source's owner.
    fn owner(&self) -> Owner {
        self.chown.unwrap_or(Owner { uid: 0, gid: 0 })
    }

    /// Where `item` is written: inside the destination when it is an existing directory.
    fn dest_of(&self, item: &Item) -> String {
        match (&item.name_if_dir, self.into_dir) {
            (Some(name), true) => join_dest(&self.prepared.dest_abs, name),
            _ => item.dest.clone(),
        }
    }

    /// Missing parents of every destination (and the destination directory itself, and the
    /// directories directory sources go into), 0755 and owned like the copied files. With
    /// --link nothing below is consulted: all are written but parents above the destination.
    fn created_dirs(&self, rootfs: &LazyRootFs<'_>) -> Result<Vec<LayerEntry>, BuildError> {
        let prepared = self.prepared;
        // An archive's destination is the directory it is extracted into: created like any
        // other.
        let item_paths: BTreeSet<String> = prepared
            .items
            .iter()
            .filter(|i| !i.is_archive())
            .map(|i| self.dest_of(i))
            .collect();
        let mut out = Vec::new();
        for d in self.needed_dirs() {
            if item_paths.contains(&d) {
                continue;
            }
            let exists = !self.link
                && rootfs
                    .lookup(&d)?
                    .is_some_and(|f| f.is_dir() || f.is_symlink());
            if !(exists || self.link && d != prepared.dest_abs) {
                out.push(self.dir_entry(&d, 0o755));
            }
        }
        Ok(out)
    }

    /// Every directory the items need to exist, sorted.
    fn needed_dirs(&self) -> BTreeSet<String> {
        let prepared = self.prepared;
        let mut needed: BTreeSet<String> = BTreeSet::new();
        for item in &prepared.items {
            let comps = components(&self.dest_of(item));
            let last = usize::from(item.is_archive());
            for i in 1..comps.len() + last {
                needed.insert(comps[..i].join("/"));
            }
        }
        if prepared.dest_is_dir && !prepared.dest_abs.is_empty() {
            needed.insert(prepared.dest_abs.clone());
        }
        for d in &prepared.dir_targets {
            let comps = components(d);
            for i in 1..=comps.len() {
                needed.insert(comps[..i].join("/"));
            }
        }
        needed
    }

    fn dir_entry(&self, path: &str, mode: u32) -> LayerEntry {
        let owner = self.owner();
        LayerEntry {
            path: path.to_string(),
            kind: LayerKind::Dir,
            mode,
            uid: owner.uid,
            gid: owner.gid,
            mtime: self.env.epoch,
            xattrs: BTreeMap::new(),
        }
    }

    /// The entries of the items, in order: an archive's extracted contents, else the item.
    fn item_entries(&self, scratch: &Path, out: &mut Vec<LayerEntry>) -> Result<(), BuildError> {
        for item in &self.prepared.items {
            if let ItemKind::Archive(path) = &item.kind {
                out.extend(extract_archive(
                    path,
                    &self.dest_of(item),
                    scratch,
                    self.env,
                )?);
            } else if let Some(entry) = self.item_entry(item) {
                out.push(entry);
            }
        }
        Ok(())
    }

    /// One item's entry, `--chmod` and `--chown` applied; `None` for the root itself.
    fn item_entry(&self, item: &Item) -> Option<LayerEntry> {
        let is_dir = matches!(item.kind, ItemKind::Dir);
        let mut mode = item.layer_mode(self.env.normalize_modes);
        if let (Some(ch), false) = (&self.chmod, item.is_symlink()) {
            mode = ch.apply(mode, is_dir);
        }
        let kind = match &item.kind {
            ItemKind::File(p) => LayerKind::File { source: p.clone() },
            ItemKind::Dir => LayerKind::Dir,
            ItemKind::Symlink(t) => LayerKind::Symlink { target: t.clone() },
            ItemKind::Archive(_) => return None,
        };
        let dest = self.dest_of(item);
        if dest.is_empty() {
            // Copying onto "/" itself would only change the root's metadata; BuildKit keeps
            // the root as it is.
            return None;
        }
        let owner = match (self.chown, item.owner) {
            (None, Some((uid, gid))) => Owner {
                uid: uid.into(),
                gid: gid.into(),
            },
            _ => self.owner(),
        };
        Some(LayerEntry {
            path: dest,
            kind,
            mode,
            uid: owner.uid,
            gid: owner.gid,
            mtime: self.env.epoch,
            xattrs: BTreeMap::new(),
        })
    }
}

/// Sorts `out` and turns every file of a hard-link group after the first (in layer order) into
/// a hard link to it.
fn link_hardlinks(out: &mut [LayerEntry], items: &[Item]) {
    rbuild_layers::tar::sort_entries(out);
    let groups: BTreeMap<&str, usize> = items
        .iter()
        .filter_map(|i| Some((i.dest.as_str(), i.link_group?)))
        .collect();
    if groups.is_empty() {
        return;
    }
    let mut first: BTreeMap<usize, String> = BTreeMap::new();
    for e in out.iter_mut() {
        let Some(&g) = groups.get(e.path.as_str()) else {
            continue;
        };
        if !matches!(e.kind, LayerKind::File { .. }) {
            continue;
        }
        match first.get(&g) {
            Some(target) => {
                e.kind = LayerKind::Hardlink {
                    target: target.clone(),
                }
            }
            None => {
                first.insert(g, e.path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::context::{Context, IgnoreRules};
    use crate::solver::copy::testutil::{context, copy_entries_from, copy_entries_over, paths};
    use crate::solver::copy::Source;
    use crate::solver::lazy_rootfs::LazyRootFs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn copy_keeps_the_mode_and_owner_of_existing_parent_directories() {
        // BuildKit's layer for `COPY --chown=1000 f /srv/a/b/` holds srv/ as it was (0700 and
        // its owner) and the new srv/a, srv/a/b 0755 1000:1000; `COPY f /tmp/y/` holds tmp/
        // 1777. Without them a layer applied on its own (Docker's overlay2, rbuild's
        // snapshots) shows /tmp as 0755.
        use crate::solver::lazy_rootfs::Lower;
        let lower = context(&[]);
        let l = lower.path();
        for (d, mode) in [("tmp", 0o1777), ("srv", 0o700), ("opt", 0o711)] {
            std::fs::create_dir(l.join(d)).unwrap();
            std::fs::set_permissions(l.join(d), std::fs::Permissions::from_mode(mode)).unwrap();
        }
        std::os::unix::fs::symlink("tmp", l.join("tlink")).unwrap();
        let rootfs = LazyRootFs::new(
            vec![Lower::Dir(l.to_path_buf())],
            Box::new(|_| unreachable!("the lower is unpacked")),
        );
        let ctx = context(&[("f", "f")]);
        let context = Context::scan(ctx.path(), &IgnoreRules::empty(), None).unwrap();
        let source = Source::Context(&context);
        let root_uid = u64::from(std::fs::metadata(l.join("srv")).unwrap().uid());
        let out = copy_entries_over(&source, "COPY --chown=1000 f /srv/a/b/", &rootfs).unwrap();
        assert_eq!(
            out,
            [
                ("srv".to_string(), 'd', 0o700, root_uid),
                ("srv/a".to_string(), 'd', 0o755, 1000),
                ("srv/a/b".to_string(), 'd', 0o755, 1000),
                ("srv/a/b/f".to_string(), 'f', 0o644, 1000),
            ]
        );
        let out = copy_entries_over(&source, "COPY f /tmp/y/", &rootfs).unwrap();
        assert_eq!(out[0], ("tmp".to_string(), 'd', 0o1777, root_uid));
        // A file copied onto an existing directory: the directory is kept too.
        let out = copy_entries_over(&source, "COPY f /opt", &rootfs).unwrap();
        assert_eq!(paths(&out), ["opt", "opt/f"]);
        assert_eq!(out[0].2, 0o711);
        // Nothing is written for a parent that is a symlink (it would replace the link).
        let out = copy_entries_over(&source, "COPY f /tlink/y/", &rootfs).unwrap();
        assert!(!paths(&out).contains(&"tlink"), "{out:?}");
    }

    /// `dir/a` and `dir/b` one inode, `dir/c` linked to `other/c2`, `x1` to `x2` and `dir/x3`.
    fn tree_with_hardlinks() -> tempfile::TempDir {
        let t = context(&[
            ("dir/a", "A"),
            ("dir/c", "C"),
            ("x1", "X"),
            ("other/.keep", ""),
        ]);
        let p = t.path();
        std::fs::hard_link(p.join("dir/a"), p.join("dir/b")).unwrap();
        std::fs::hard_link(p.join("dir/c"), p.join("other/c2")).unwrap();
        std::fs::hard_link(p.join("x1"), p.join("x2")).unwrap();
        std::fs::hard_link(p.join("x1"), p.join("dir/x3")).unwrap();
        t
    }

    fn hardlink_cases(source: &Source<'_>) {
        let kinds = |line: &str| -> Vec<(String, char)> {
            copy_entries_from(source, line)
                .unwrap()
                .into_iter()
                .map(|e| (e.0, e.1))
                .collect()
        };
        let k = |p: &str, c: char| (p.to_string(), c);
        // BuildKit (docker 20.10): the files a directory source's walk meets twice stay one
        // inode; a link to a file outside that directory is not kept.
        assert_eq!(
            kinds("COPY dir /d/"),
            [
                k("d", 'd'),
                k("d/a", 'f'),
                k("d/b", 'h'),
                k("d/c", 'f'),
                k("d/x3", 'f')
            ]
        );
        // Each source is walked on its own: no link across two sources.
        let out = kinds("COPY dir other /e/");
        assert!(out.contains(&k("e/b", 'h')), "{out:?}");
        assert!(
            out.contains(&k("e/c", 'f')) && out.contains(&k("e/c2", 'f')),
            "{out:?}"
        );
        assert_eq!(
            kinds("COPY x1 x2 /f/"),
            [k("f", 'd'), k("f/x1", 'f'), k("f/x2", 'f')]
        );
        // An excluded member leaves the other one a plain file.
        let out = kinds("COPY --exclude=b dir /g/");
        assert!(out.contains(&k("g/a", 'f')), "{out:?}");
    }

    #[test]
    fn copy_keeps_hardlinks_inside_a_context_directory() {
        let t = tree_with_hardlinks();
        let context = Context::scan(t.path(), &IgnoreRules::empty(), None).unwrap();
        hardlink_cases(&Source::Context(&context));
    }

    #[test]
    fn copy_from_a_stage_keeps_hardlinks_inside_a_directory() {
        let t = tree_with_hardlinks();
        hardlink_cases(&Source::Dir(t.path()));
    }

    #[test]
    fn copy_onto_a_symlink_writes_through_it_inside_the_image() {
        // BuildKit (docker 20.10) resolves the destination in the image, its last component
        // too, every link inside the root: `COPY a.txt /bin/vi` over `vi -> busybox` replaces
        // busybox; a dangling link's target (and its missing parents) is created.
        use crate::solver::lazy_rootfs::Lower;
        use std::os::unix::fs::symlink;
        let lower = context(&[
            ("bin/busybox", "bb"),
            ("etc/t1", "1"),
            ("etc/t2", "2"),
            ("etc/t4", "4"),
            ("etc/passwd", "root:x:0:0::/:/bin/sh\n"),
            ("opt/d/.keep", ""),
            ("opt/p/.keep", ""),
        ]);
        let l = lower.path();
        for (target, link) in [
            ("busybox", "bin/vi"),
            ("/etc/t1", "labs"),
            ("etc/t2", "lrel"),
            ("/opt/d", "ldir"),
            ("/nonexist/x", "ldang"),
            ("nothere", "ldang2"),
            ("../../../../etc/t4", "lout"),
            ("/opt/p", "pl"),
            ("loop", "loop"),
        ] {
            symlink(target, l.join(link)).unwrap();
        }
        let rootfs = LazyRootFs::new(
            vec![Lower::Dir(l.to_path_buf())],
            Box::new(|_| unreachable!("the lower is unpacked")),
        );
        let ctx = context(&[("a.txt", "A"), ("sdir/s", "S")]);
        let context = Context::scan(ctx.path(), &IgnoreRules::empty(), None).unwrap();
        let source = Source::Context(&context);
        let written = |line: &str| -> Vec<String> {
            copy_entries_over(&source, line, &rootfs)
                .unwrap()
                .into_iter()
                .filter(|e| e.1 == 'f' || e.2 == 0o755 && !l.join(&e.0).exists())
                .map(|e| e.0)
                .collect()
        };
        for (line, want) in [
            ("COPY a.txt /bin/vi", vec!["bin/busybox"]),
            ("COPY a.txt /labs", vec!["etc/t1"]),
            ("COPY a.txt /lrel", vec!["etc/t2"]),
            ("COPY a.txt /ldir/", vec!["opt/d/a.txt"]),
            ("COPY a.txt /ldir", vec!["opt/d/a.txt"]),
            ("COPY sdir /ldir", vec!["opt/d/s"]),
            ("COPY a.txt /ldang", vec!["nonexist", "nonexist/x"]),
            ("COPY a.txt /ldang2", vec!["nothere"]),
            ("COPY a.txt /lout", vec!["etc/t4"]),
            ("COPY a.txt /pl/sub/f", vec!["opt/p/sub", "opt/p/sub/f"]),
            // --link builds the layer on its own: nothing below to resolve through.
            ("COPY --link a.txt /bin/vi", vec!["bin/vi"]),
        ] {
            assert_eq!(written(line), want, "{line}");
        }
        for line in ["COPY a.txt /loop", "COPY a.txt /etc/passwd/x"] {
            let err = copy_entries_over(&source, line, &rootfs).unwrap_err();
            assert!(format!("{err:?}").contains("Dest("), "{line}: {err:?}");
        }
    }
}

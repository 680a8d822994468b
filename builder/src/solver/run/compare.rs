//! The layer of a RUN in `chroot` mode, found by comparing its root against the state recorded
//! right after the copy ([`super::rootcopy::StartState`]). It must list what the overlay upper
//! directory of the same change lists ([`rbuild_layers::tar::entries_from_overlay_upper`]),
//! so that both modes write the same layer bytes:
//!
//! - a new path is listed; a directory that is new, or whose own mode, owner or xattrs changed,
//!   or that holds a listed path, is listed (overlayfs copies it up; a directory copied up for
//!   nothing is pruned afterwards in both modes by [`super::prune_copied_up`]);
//! - a path of the start state that is gone is a whiteout (its children are not listed);
//! - a directory with another inode than before (`rm -rf d && mkdir d`), or a directory where
//!   something else was, is opaque, and everything below it is listed;
//! - a non-directory with another inode is listed; with the same inode, `stat` decides first:
//!   same size, mtime and ctime is unchanged; else the mode, owner, mtime, symlink target and
//!   xattrs are compared, and the content only when all of those are equal;
//! - a file whose link count grew is listed (overlayfs copies up the target of `ln`), so that a
//!   new hard link to it is written as one, as from the upper directory.
//!
//! Known differences from overlayfs, both rare in builds: changing one name of a hard-linked
//! pair of the image changes the other in the copy (overlayfs breaks the link), and a
//! metadata operation that changes nothing (`chmod` to the same mode) is not a change here.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use rbuild_layers::tar::{entries_from_changes, Change, LayerEntry};

use super::mounts::io;
use super::rootcopy::{stat, Start, StartState, Stat};
use crate::solver::BuildError;

/// The layer entries of what changed under `root` since `start`, leaving out `exclude`d paths
/// (relative, with what is below them).
pub fn changes(
    root: &Path,
    start: &StartState,
    exclude: &[&str],
) -> Result<Vec<LayerEntry>, BuildError> {
    let mut w = Walker {
        root,
        start,
        exclude: exclude
            .iter()
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .collect(),
        out: Vec::new(),
    };
    w.dir("")?;
    Ok(entries_from_changes(root, &w.out)?)
}

struct Walker<'a> {
    root: &'a Path,
    start: &'a StartState,
    exclude: Vec<&'a str>,
    out: Vec<Change>,
}

fn join(rel: &str, name: &str) -> String {
    if rel.is_empty() {
        name.to_string()
    } else {
        format!("{rel}/{name}")
    }
}

impl Walker<'_> {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        }
    }

    fn names(&self, rel: &str) -> Result<BTreeSet<String>, BuildError> {
        let dir = self.path(rel);
        let mut names = BTreeSet::new();
        for de in std::fs::read_dir(&dir).map_err(io("listing", &dir))? {
            let de = de.map_err(io("listing", &dir))?;
            match de.file_name().into_string() {
                Ok(n) if !self.exclude.contains(&join(rel, &n).as_str()) => {
                    names.insert(n);
                }
                Ok(_) => {}
                Err(n) => {
                    return Err(BuildError::io("reading", dir.join(n))(
                        std::io::Error::from_raw_os_error(libc::EILSEQ),
                    ))
                }
            }
        }
        Ok(names)
    }

    /// Compares the directory `rel` (the same inode as at the start) child by child; whether
    /// anything under it is listed.
    fn dir(&mut self, rel: &str) -> Result<bool, BuildError> {
        let now = self.names(rel)?;
        let mut listed = false;
        if let Some(before) = self.start.children.get(rel) {
            let dir_mtime = stat(&self.path(rel))
                .map_err(io("reading metadata of", &self.path(rel)))?
                .mtime
                .0;
            for gone in before.difference(&now) {
                let path = join(rel, gone);
                if self.exclude.contains(&path.as_str()) {
                    continue;
                }
                self.out.push(Change::Deleted {
                    path,
                    mtime: dir_mtime,
                });
                listed = true;
            }
        }
        for name in &now {
            let child = join(rel, name);
            listed |= self.entry(&child)?;
        }
        Ok(listed)
    }

    /// Compares one path present now; whether it (or anything under it) is listed.
    fn entry(&mut self, rel: &str) -> Result<bool, BuildError> {
        let path = self.path(rel);
        let now = stat(&path).map_err(io("reading metadata of", &path))?;
        let before = self.start.paths.get(rel);
        if now.is_dir() {
            return match before {
                Some(b) if b.stat.same_inode(&now) => {
                    let own = own_change(b, &now, &path)?;
                    let under = self.dir(rel)?;
                    if own || under {
                        self.out.push(Change::Path(rel.to_string()));
                    }
                    Ok(own || under)
                }
                Some(_) => {
                    self.out.push(Change::Path(rel.to_string()));
                    self.out.push(Change::Opaque(rel.to_string()));
                    self.all_below(rel)?;
                    Ok(true)
                }
                None => {
                    self.out.push(Change::Path(rel.to_string()));
                    self.all_below(rel)?;
                    Ok(true)
                }
            };
        }
        let changed = match before {
            Some(b) if b.stat.same_inode(&now) => file_changed(b, &now, &path)?,
            _ => true,
        };
        if changed {
            self.out.push(Change::Path(rel.to_string()));
        }
        Ok(changed)
    }

    /// Lists everything under the new directory `rel`.
    fn all_below(&mut self, rel: &str) -> Result<(), BuildError> {
        for name in self.names(rel)? {
            let child = join(rel, &name);
            let p = self.path(&child);
            let st = stat(&p).map_err(io("reading metadata of", &p))?;
            self.out.push(Change::Path(child.clone()));
            if st.is_dir() {
                self.all_below(&child)?;
            }
        }
        Ok(())
    }
}

/// Whether a directory's own metadata changed (its mtime alone is not a change: overlayfs
/// drops such a directory too).
fn own_change(before: &Start, now: &Stat, path: &Path) -> Result<bool, BuildError> {
    if now.mode != before.stat.mode || now.uid != before.stat.uid || now.gid != before.stat.gid {
        return Ok(true);
    }
    if now.ctime == before.stat.ctime {
        return Ok(false);
    }
    Ok(xattrs(path)? != xattrs(&before.source)?)
}

/// Whether a non-directory with the same inode changed.
fn file_changed(before: &Start, now: &Stat, path: &Path) -> Result<bool, BuildError> {
    let b = &before.stat;
    if now.size == b.size && now.mtime == b.mtime && now.ctime == b.ctime {
        return Ok(false);
    }
    if now.mode != b.mode
        || now.uid != b.uid
        || now.gid != b.gid
        || now.mtime != b.mtime
        || now.size != b.size
        || now.nlink > b.nlink
    {
        return Ok(true);
    }
    if now.kind() == libc::S_IFLNK {
        let t = |p: &Path| std::fs::read_link(p).map_err(io("reading symlink", p));
        if t(path)? != t(&before.source)? {
            return Ok(true);
        }
    }
    if xattrs(path)? != xattrs(&before.source)? {
        return Ok(true);
    }
    if now.kind() == libc::S_IFREG {
        return Ok(!same_content(path, &before.source)?);
    }
    Ok(false)
}

/// The xattrs of `p` but overlay's own (symlinks have none that a layer keeps).
fn xattrs(p: &Path) -> Result<Vec<(std::ffi::OsString, Vec<u8>)>, BuildError> {
    if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let names = match xattr::list(p) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(out),
        Err(e) => return Err(BuildError::io("listing xattrs of", p.to_path_buf())(e)),
    };
    for name in names {
        if name
            .to_str()
            .is_some_and(rbuild_layers::whiteout::overlay::is_overlay_xattr)
        {
            continue;
        }
        let v = xattr::get(p, &name)
            .map_err(BuildError::io("reading xattrs of", p.to_path_buf()))?
            .unwrap_or_default();
        out.push((name, v));
    }
    out.sort();
    Ok(out)
}

/// Whether two files hold the same bytes (read in chunks: never a whole file in memory).
fn same_content(a: &Path, b: &Path) -> Result<bool, BuildError> {
    let open = |p: &Path| std::fs::File::open(p).map_err(io("reading", p));
    let (mut fa, mut fb) = (open(a)?, open(b)?);
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(io("reading", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(io("reading", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    //! The same scripted change made once on an overlay mount (the `namespaces` path: upper
    //! directory → entries) and once on a copied root (this module) must give the same entries.
    //! The overlay half needs root and mount rights; without them the test says so and passes.

    use super::*;
    use crate::solver::rootfs::RootFs;
    use rbuild_layers::tar::{entries_from_overlay_upper, EntryKind};
    use rbuild_layers::whiteout::overlay::OverlayXattrs;
    use std::path::PathBuf;
    use std::process::Command;

    fn sh(script: &str) {
        let st = Command::new("sh").arg("-ec").arg(script).status().unwrap();
        assert!(st.success(), "{script}");
    }

    /// Two snapshots: the bottom one, and a top one with a whiteout and an opaque directory.
    fn lowers(base: &Path) -> Vec<PathBuf> {
        let (l1, l2) = (base.join("l1"), base.join("l2"));
        sh(&format!(
            "mkdir -p {l1} {l2} && cd {l1} && \
             echo keep > keep && echo mod > modify && echo c > chmodme && echo d > deleteme && \
             mkdir -p deldir/inner opq sub && echo a > deldir/inner/a && echo o > opq/old && \
             echo s > sub/s && echo g > gone && mkdir hidden && echo h > hidden/old && \
             echo p > pair1 && ln pair1 pair2 && echo o > owned && chown 1000:1000 owned && \
             cd {l2} && mknod gone c 0 0 && mkdir hidden && echo n > hidden/new",
            l1 = l1.display(),
            l2 = l2.display()
        ));
        xattr::set(l2.join("hidden"), "trusted.overlay.opaque", b"y").unwrap();
        sh(&format!(
            "find {} {} -exec touch -h -d @1000000 {{}} +",
            l1.display(),
            l2.display()
        ));
        vec![l1, l2]
    }

    const SCRIPT: &str = "echo new > new && echo more >> modify && chmod 600 chmodme && \
        rm deleteme && rm -rf deldir && rm -rf opq && mkdir opq && echo x > opq/fresh && \
        ln -s keep sym && echo pair > h1 && ln h1 h2 && mkdir -p sub/deeper && \
        echo y > sub/deeper/f && chown 1001:1001 owned && echo more >> hidden/new && \
        touch sub/s && mkfifo fifo";

    /// What the layer bytes depend on, with mtimes clamped at `epoch` as the layer writer does
    /// with SOURCE_DATE_EPOCH, and file contents instead of their paths.
    fn normal(entries: &[LayerEntry], epoch: i64) -> Vec<String> {
        entries
            .iter()
            .map(|e| {
                let kind = match &e.kind {
                    EntryKind::File { source } => {
                        format!("file {:?}", std::fs::read(source).unwrap())
                    }
                    k => format!("{k:?}"),
                };
                format!(
                    "{} {kind} {:o} {}:{} {} {:?}",
                    e.path,
                    e.mode,
                    e.uid,
                    e.gid,
                    e.mtime.min(epoch),
                    e.xattrs
                )
            })
            .collect()
    }

    #[test]
    fn a_compared_root_gives_the_entries_of_the_overlay_upper_directory() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path();
        let lowers = lowers(base);
        let rootfs = RootFs {
            lowers: lowers.clone(),
        };
        let epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 5;

        // Through the copy and the comparison.
        let root = base.join("root");
        let start = super::super::rootcopy::copy_merged(&rootfs, &root).unwrap();
        assert!(!root.join("gone").exists() && !root.join("hidden/old").exists());
        assert!(root.join("hidden/new").exists() && root.join("keep").exists());
        sh(&format!("cd {} && {SCRIPT}", root.display()));
        let compared = changes(&root, &start, &[]).unwrap();
        let compared = super::super::prune_copied_up(compared, &rootfs, &[]);

        // Through overlayfs.
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
        sh(&format!(
            "mkdir -p {u} {w} {m}",
            u = upper.display(),
            w = work.display(),
            m = merged.display()
        ));
        let mounted = Command::new("unshare")
            .arg("-m")
            .arg("sh")
            .arg("-ec")
            .arg(format!(
                "mount -t overlay overlay -o lowerdir={l2}:{l1},upperdir={u},workdir={w} {m} && cd {m} && {SCRIPT}",
                l1 = lowers[0].display(),
                l2 = lowers[1].display(),
                u = upper.display(),
                w = work.display(),
                m = merged.display()
            ))
            .status()
            .unwrap();
        if !mounted.success() {
            eprintln!("skipped: no overlay mount here");
            return;
        }
        let overlaid = entries_from_overlay_upper(&upper, &[], OverlayXattrs::Trusted).unwrap();
        let overlaid = super::super::prune_copied_up(overlaid, &rootfs, &[]);

        assert_eq!(normal(&compared, epoch), normal(&overlaid, epoch));
        let kinds: Vec<String> = compared
            .iter()
            .map(|e| format!("{} {:?}", e.path, std::mem::discriminant(&e.kind)))
            .collect();
        assert!(compared
            .iter()
            .any(|e| e.path == "opq" && e.kind == EntryKind::OpaqueWhiteout));
        assert!(compared
            .iter()
            .any(|e| e.path == "deldir" && e.kind == EntryKind::Whiteout));
        assert!(
            compared.iter().any(|e| e.path == "h2"
                && e.kind
                    == EntryKind::Hardlink {
                        target: "h1".into()
                    }),
            "{kinds:?}"
        );
        assert!(!compared.iter().any(|e| e.path.starts_with("deldir/")));
    }
}

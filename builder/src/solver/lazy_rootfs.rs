//! A stage's filesystem for steps that only *look at* it: a non-`--link` COPY's destination
//! and WORKDIR ask whether a few directories exist, and (with `--chown`/USER) read
//! `/etc/passwd` and `/etc/group`. Answering that does not need every layer unpacked.
//!
//! Each lower is an unpacked snapshot, a path index (`rbuild_layers::tar::PathIndex`, written
//! with the layer or carried by an imported cache), or nothing yet. Lookups run top-down with
//! the same overlay rules as [`RootFs`](super::rootfs::RootFs) (the per-layer probes are
//! shared), so they usually stop in the WORKDIR or COPY layer just below and never touch the
//! base image. A lower that must give bytes (a file read), or that has no index, is
//! materialized — fetched and unpacked by the caller's function — the first time a lookup
//! reaches it; a wrong answer would misbuild the image, so there is no guessing.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use rbuild_layers::tar::PathIndex;

use super::rootfs::{components, lookup_in, probe_dir, probe_index, read_found, Found, Probe};
use super::BuildError;

/// One layer of a [`LazyRootFs`].
#[derive(Debug, Clone)]
pub enum Lower {
    /// An unpacked snapshot directory.
    Dir(PathBuf),
    /// The layer's path index (not unpacked).
    Index(Arc<PathIndex>),
    /// Neither: unpacked on the first lookup that reaches it.
    Lazy,
}

/// Fetches and unpacks lower `i`, returning its snapshot directory.
pub type Materialize<'m> = Box<dyn Fn(usize) -> Result<PathBuf, BuildError> + 'm>;

/// A stack of lowers (bottom first) that are unpacked only when an answer needs it.
pub struct LazyRootFs<'m> {
    lowers: RefCell<Vec<Lower>>,
    materialize: Materialize<'m>,
}

impl std::fmt::Debug for LazyRootFs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyRootFs")
            .field("lowers", &self.lowers.borrow())
            .finish_non_exhaustive()
    }
}

impl<'m> LazyRootFs<'m> {
    pub fn new(lowers: Vec<Lower>, materialize: Materialize<'m>) -> LazyRootFs<'m> {
        LazyRootFs {
            lowers: RefCell::new(lowers),
            materialize,
        }
    }

    /// An empty filesystem (`COPY --link` consults nothing below).
    pub fn empty() -> LazyRootFs<'static> {
        LazyRootFs::new(
            Vec::new(),
            Box::new(|i| {
                Err(BuildError::Internal(format!(
                    "lower {i} of an empty filesystem was asked for"
                )))
            }),
        )
    }

    /// The lowers as they are now (tests and diagnostics).
    pub fn lowers(&self) -> Vec<Lower> {
        self.lowers.borrow().clone()
    }

    fn materialize_lower(&self, i: usize) -> Result<PathBuf, BuildError> {
        let dir = (self.materialize)(i)?;
        self.lowers.borrow_mut()[i] = Lower::Dir(dir.clone());
        Ok(dir)
    }

    fn probe(&self, i: usize, comps: &[String]) -> Result<Probe, BuildError> {
        // The root needs nothing from any layer.
        if comps.is_empty() {
            return Ok(match &self.lowers.borrow()[i] {
                Lower::Dir(d) => probe_dir(d, comps),
                _ => Probe::Found((super::rootfs::FoundKind::Dir, None)),
            });
        }
        let lower = self.lowers.borrow()[i].clone();
        Ok(match lower {
            Lower::Dir(d) => probe_dir(&d, comps),
            Lower::Index(idx) => probe_index(&idx, comps),
            Lower::Lazy => probe_dir(&self.materialize_lower(i)?, comps),
        })
    }

    /// [`RootFs::lookup`](super::rootfs::RootFs::lookup) over the lazy stack. `real` is `None`
    /// when the answer came from an index.
    pub fn lookup(&self, path: &str) -> Result<Option<Found>, BuildError> {
        let n = self.lowers.borrow().len();
        lookup_in(n, path, &mut |i, comps| self.probe(i, comps))
    }

    /// [`RootFs::read_small_file`](super::rootfs::RootFs::read_small_file): the layer that holds
    /// the file is unpacked if only its index is here.
    pub fn read_small_file(&self, path: &str) -> Result<Option<String>, BuildError> {
        let Some(found) = self.lookup(path)? else {
            return Ok(None);
        };
        if !found.is_file() {
            return Ok(None);
        }
        if found.real.is_some() {
            return Ok(read_found(&found));
        }
        self.materialize_lower(found.layer)?;
        // Unpacked, the layer answers exactly as its index did; look again for the real path.
        match self.lookup(path)? {
            Some(f) if f.is_file() && f.real.is_some() => Ok(read_found(&f)),
            _ => Err(BuildError::Internal(format!(
                "{path} is a file in lower {}'s path index but not once it is unpacked",
                found.layer
            ))),
        }
    }
}

/// What a path is, with a directory's own permission bits and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirMeta {
    Dir {
        mode: u32,
        uid: u64,
        gid: u64,
    },
    Symlink,
    /// A file or special file.
    NotDir,
    Missing,
}

impl LazyRootFs<'_> {
    /// The directory at `path` with its mode (setuid/setgid/sticky included) and owner, from
    /// the index of the layer that holds it when it records them, else from the unpacked layer.
    /// `path` must not go through a symlink (callers walk down from the root and stop at one),
    /// so it is the path inside that layer too.
    pub fn dir_meta(&self, path: &str) -> Result<DirMeta, BuildError> {
        use std::os::unix::fs::MetadataExt;
        let Some(found) = self.lookup(path)? else {
            return Ok(DirMeta::Missing);
        };
        if found.is_symlink() {
            return Ok(DirMeta::Symlink);
        }
        if !found.is_dir() {
            return Ok(DirMeta::NotDir);
        }
        if found.real.is_none() {
            let owner = match &self.lowers.borrow()[found.layer] {
                Lower::Index(idx) => idx.dir_owner(&components(path).join("/")),
                _ => None,
            };
            if let Some(o) = owner {
                return Ok(DirMeta::Dir {
                    mode: o.mode,
                    uid: o.uid,
                    gid: o.gid,
                });
            }
        }
        let real = match found.real {
            Some(real) => real,
            None => {
                self.materialize_lower(found.layer)?;
                self.lookup(path)?.and_then(|f| f.real).ok_or_else(|| {
                    BuildError::Internal(format!(
                        "{path} is a directory in lower {}'s path index but not once it is unpacked",
                        found.layer
                    ))
                })?
            }
        };
        let md = std::fs::symlink_metadata(&real).map_err(BuildError::io("reading", &real))?;
        Ok(DirMeta::Dir {
            mode: md.mode() & 0o7777,
            uid: u64::from(md.uid()),
            gid: u64::from(md.gid()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solver::rootfs::{FoundKind, RootFs};
    use proptest::prelude::*;
    use rbuild_layers::apply::{apply_layer, ApplyOptions, WhiteoutMode};
    use rbuild_layers::tar::{write_layer, EntryKind, LayerEntry, LayerOptions};
    use rbuild_layers::Store;
    use std::collections::BTreeMap;
    use std::path::Path;

    /// What a test layer puts at a path.
    #[derive(Debug, Clone)]
    enum Node {
        Dir,
        OpaqueDir,
        File,
        Symlink(&'static str),
        Fifo,
        Whiteout,
    }

    fn entry(path: &str, kind: EntryKind) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    /// Writes each layer as a real layer (which saves its index), unpacks it as an overlay
    /// snapshot, and returns (snapshot dirs, indexes); `None` when a layer is not writable or
    /// unpackable (random trees can put a file where a directory is needed).
    fn build(
        root: &Path,
        layers: &[BTreeMap<String, Node>],
    ) -> Option<(Vec<PathBuf>, Vec<Option<PathIndex>>)> {
        let store = Store::open(&root.join("store")).unwrap();
        let mut dirs = Vec::new();
        let mut indexes = Vec::new();
        for (n, layer) in layers.iter().enumerate() {
            let src = root.join(format!("src{n}"));
            std::fs::create_dir_all(&src).unwrap();
            let mut entries = Vec::new();
            for (i, (path, node)) in layer.iter().enumerate() {
                let kind = match node {
                    Node::Dir => EntryKind::Dir,
                    Node::OpaqueDir => {
                        entries.push(entry(path, EntryKind::OpaqueWhiteout));
                        EntryKind::Dir
                    }
                    Node::File => {
                        let f = src.join(i.to_string());
                        std::fs::write(&f, format!("{n}:{path}")).unwrap();
                        EntryKind::File { source: f }
                    }
                    Node::Symlink(t) => EntryKind::Symlink {
                        target: (*t).to_string(),
                    },
                    Node::Fifo => EntryKind::Fifo,
                    Node::Whiteout => EntryKind::Whiteout,
                };
                entries.push(entry(path, kind));
            }
            let info = write_layer(&store, entries, &LayerOptions::default()).ok()?;
            let dir = root.join(format!("layer{n}"));
            std::fs::create_dir_all(&dir).unwrap();
            let opts = ApplyOptions {
                whiteouts: WhiteoutMode::Overlay,
                ..ApplyOptions::default()
            };
            apply_layer(&dir, store.open_blob(&info.digest).unwrap(), &opts).ok()?;
            indexes.push(PathIndex::load(&store, &info.diff_id));
            dirs.push(dir);
        }
        Some((dirs, indexes))
    }

    fn lazy_over<'a>(dirs: &'a [PathBuf], indexes: &[Option<PathIndex>]) -> LazyRootFs<'a> {
        let lowers = indexes
            .iter()
            .map(|i| match i {
                Some(i) => Lower::Index(Arc::new(i.clone())),
                None => Lower::Lazy,
            })
            .collect();
        LazyRootFs::new(lowers, Box::new(move |i| Ok(dirs[i].clone())))
    }

    fn all_paths() -> Vec<String> {
        let mut out = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for p in &frontier {
                for c in ["a", "b", "c"] {
                    let q = if p.is_empty() {
                        c.to_string()
                    } else {
                        format!("{p}/{c}")
                    };
                    out.push(q.clone());
                    next.push(q);
                }
            }
            frontier = next;
        }
        out
    }

    /// Every lookup and small-file read over the indexes (unpacking only for file bytes) gives
    /// the answer the unpacked snapshots give.
    fn assert_same(dirs: &[PathBuf], indexes: &[Option<PathIndex>]) {
        let eager = RootFs {
            lowers: dirs.to_vec(),
        };
        for path in all_paths() {
            let lazy = lazy_over(dirs, indexes);
            let want = eager.lookup(&path).map(|f| (f.kind, f.layer));
            let got = lazy.lookup(&path).unwrap().map(|f| (f.kind, f.layer));
            assert_eq!(got, want, "lookup {path:?}");
            assert_eq!(
                lazy.read_small_file(&path).unwrap(),
                eager.read_small_file(&path),
                "read {path:?}"
            );
        }
    }

    fn can_whiteout() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    fn tree(items: &[(&str, Node)]) -> BTreeMap<String, Node> {
        items
            .iter()
            .map(|(p, n)| ((*p).to_string(), n.clone()))
            .collect()
    }

    #[test]
    fn index_lookups_match_snapshots_on_a_hand_made_stack() {
        if !can_whiteout() {
            eprintln!("SKIPPED: overlay whiteouts need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let layers = vec![
            tree(&[
                ("a", Node::Dir),
                ("a/b", Node::File),
                ("a/c", Node::Dir),
                ("a/c/a", Node::File),
                ("b", Node::Symlink("/a/c")),
                ("c", Node::Dir),
                ("c/a", Node::File),
            ]),
            tree(&[
                ("a/b", Node::Whiteout),
                ("a/a", Node::Symlink("../c")),
                ("c", Node::OpaqueDir),
                ("c/b", Node::File),
            ]),
            tree(&[("b/b", Node::Dir), ("a/c", Node::Fifo)]),
        ];
        let (dirs, indexes) = build(t.path(), &layers).unwrap();
        assert!(indexes.iter().all(Option::is_some));
        assert_same(&dirs, &indexes);
        // Spot checks of the rules themselves.
        let lazy = lazy_over(&dirs, &indexes);
        assert!(lazy.lookup("/a/b").unwrap().is_none(), "whiteout hides");
        assert!(lazy.lookup("/c/a").unwrap().is_none(), "opaque hides");
        assert_eq!(
            lazy.lookup("/a/a/b").unwrap().unwrap().kind,
            FoundKind::File
        );
        assert!(
            lazy.lookup("/a/c/a").unwrap().is_none(),
            "a FIFO hides below"
        );
        // The top layer's `b/b` makes `b` a directory there, hiding the symlink below.
        let bb = lazy.lookup("/b/b").unwrap().unwrap();
        assert_eq!((bb.kind, bb.layer), (FoundKind::Dir, 2));
        // Nothing was unpacked for those answers.
        assert!(lazy.lowers().iter().all(|l| matches!(l, Lower::Index(_))));
        assert_eq!(
            lazy.read_small_file("/a/a/b").unwrap().as_deref(),
            Some("1:c/b")
        );
        assert!(matches!(lazy.lowers()[1], Lower::Dir(_)));
    }

    #[test]
    fn a_lower_without_an_index_is_unpacked_only_when_reached() {
        let t = tempfile::tempdir().unwrap();
        let l0 = t.path().join("l0");
        std::fs::create_dir_all(l0.join("etc")).unwrap();
        let top = PathIndex::from_entries(&[entry("app", EntryKind::Dir)]).unwrap();
        let calls = std::cell::Cell::new(0);
        let lazy = LazyRootFs::new(
            vec![Lower::Lazy, Lower::Index(Arc::new(top))],
            Box::new(|i| {
                calls.set(calls.get() + 1);
                assert_eq!(i, 0);
                Ok(l0.clone())
            }),
        );
        assert!(lazy.lookup("/app").unwrap().unwrap().is_dir());
        assert!(lazy.lookup("/").unwrap().unwrap().is_dir());
        assert_eq!(calls.get(), 0);
        assert!(lazy.lookup("/etc").unwrap().unwrap().is_dir());
        assert_eq!(calls.get(), 1);
        assert!(lazy.lookup("/nope").unwrap().is_none());
        assert_eq!(calls.get(), 1, "unpacked once");
    }

    #[test]
    fn dir_meta_of_a_listed_directory_comes_from_the_index_without_unpacking() {
        let mut tmp = entry("tmp", EntryKind::Dir);
        tmp.mode = 0o1777;
        let top = PathIndex::from_entries(&[tmp, entry("tmp/x/y", EntryKind::Dir)]).unwrap();
        let lazy = LazyRootFs::new(
            vec![Lower::Index(Arc::new(top))],
            Box::new(|i| {
                Err(BuildError::Internal(format!(
                    "lower {i} was unpacked for a listed directory"
                )))
            }),
        );
        let want = DirMeta::Dir {
            mode: 0o1777,
            uid: 0,
            gid: 0,
        };
        assert_eq!(lazy.dir_meta("/tmp").unwrap(), want);
        assert_eq!(lazy.dir_meta("/nope").unwrap(), DirMeta::Missing);
        // A parent the layer only implies has no metadata in the index: the layer is unpacked.
        assert!(lazy.dir_meta("/tmp/x").is_err());
    }

    fn node() -> impl Strategy<Value = Node> {
        prop_oneof![
            3 => Just(Node::Dir),
            1 => Just(Node::OpaqueDir),
            3 => Just(Node::File),
            1 => Just(Node::Symlink("/a")),
            1 => Just(Node::Symlink("../b/c")),
            1 => Just(Node::Symlink("c")),
            1 => Just(Node::Fifo),
            2 => Just(Node::Whiteout),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 1..4)
            .prop_map(|v| v.join("/"))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn index_lookups_match_snapshots(
            layers in prop::collection::vec(
                prop::collection::btree_map(path(), node(), 0..8), 1..4)
        ) {
            prop_assume!(can_whiteout());
            let t = tempfile::tempdir().unwrap();
            let built = build(t.path(), &layers);
            prop_assume!(built.is_some());
            let (dirs, indexes) = built.unwrap();
            assert_same(&dirs, &indexes);
        }
    }
}

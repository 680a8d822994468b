//! A layer's path index: what kind of entry each path of a layer is, without its bytes.
//!
//! The build engine answers "does this directory exist, is it a symlink" (COPY destinations,
//! WORKDIR) by looking paths up through the stack of layers below a step. With an index per
//! layer it can answer from a few KiB of JSON instead of fetching and unpacking the layer.
//! The index must say exactly what the unpacked layer (overlay format, see
//! [`crate::apply::WhiteoutMode::Overlay`]) would say, so anything the applier might render
//! differently from the entry list — conflicting entries, devices (skipped when not root, and a
//! 0:0 character device *is* an overlay whiteout), overlay xattrs, a root opaque marker — gets
//! no index at all, and the engine falls back to unpacking the layer.
//!
//! Indexes are stored as store records (`layer-index`, keyed by the layer's diffID) and travel
//! inside exported cache maps; [`PathIndex`]'s JSON form is a compact map of path → kind code.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::entry::{EntryKind, LayerEntry};
use crate::whiteout::overlay;
use crate::{Digest, Store, StoreError};

/// Layers with more entries than this get no index (the engine unpacks them when needed).
pub const MAX_INDEX_ENTRIES: usize = 100_000;

/// The store record kind that holds a layer's index, keyed by its diffID.
pub const INDEX_RECORD: &str = "layer-index";

/// What a path of a layer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexKind {
    /// A directory; `opaque` when it hides the same directory of the layers below.
    Dir {
        opaque: bool,
    },
    Symlink {
        target: String,
    },
    /// A regular file (or a hard link to one).
    File,
    /// A FIFO (devices make a layer unindexable).
    Other,
    /// Deletes the path from the layers below.
    Whiteout,
}

/// The entries of one layer by clean relative path (`a/b`, no leading or trailing slash).
/// Every parent of an indexed path is itself indexed as a directory (as unpacking creates it).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, String>",
    into = "BTreeMap<String, String>"
)]
pub struct PathIndex {
    entries: BTreeMap<String, IndexKind>,
    /// Mode and owner of the directories the layer lists itself (not of the parents unpacking
    /// creates): a step that writes below an existing directory carries it into its own layer
    /// unchanged, without unpacking the layer that holds it. Serialised after the kind code,
    /// `d:1777:0:0` (octal mode, uid, gid).
    dirs: BTreeMap<String, DirOwner>,
}

/// A listed directory's permission bits (setuid/setgid/sticky included) and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirOwner {
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
}

/// Why a serialised index was refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("layer index entry {path:?} has the unknown kind {code:?}")]
    UnknownKind { path: String, code: String },
    #[error("layer index path {path:?} is not a clean relative path")]
    BadPath { path: String },
    #[error("layer index path {path:?} has a parent that is not indexed as a directory")]
    ParentNotDir { path: String },
    #[error("layer index has {count} entries, more than the {MAX_INDEX_ENTRIES} allowed")]
    TooLarge { count: usize },
    #[error("layer index is not valid JSON")]
    Json(#[source] serde_json::Error),
}

fn clean(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

fn parent_of(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| &path[..i])
}

impl PathIndex {
    /// The index of a layer written from `entries`, or `None` when the layer is too large or
    /// has entries whose unpacked form the index cannot predict (see the module doc).
    pub fn from_entries(entries: &[LayerEntry]) -> Option<PathIndex> {
        if entries.len() > MAX_INDEX_ENTRIES {
            return None;
        }
        let mut idx = PathIndex::default();
        for e in entries {
            if e.xattrs.keys().any(|k| overlay::is_overlay_xattr(k)) {
                return None;
            }
            if matches!(e.kind, EntryKind::Dir) {
                // A directory listed twice takes the metadata of the last entry, as unpacking.
                idx.dirs.insert(
                    e.path.clone(),
                    DirOwner {
                        mode: e.mode & 0o7777,
                        uid: e.uid,
                        gid: e.gid,
                    },
                );
            }
            let kind = match &e.kind {
                EntryKind::File { .. } | EntryKind::Hardlink { .. } => IndexKind::File,
                EntryKind::Dir => IndexKind::Dir { opaque: false },
                EntryKind::Symlink { target } => IndexKind::Symlink {
                    target: target.clone(),
                },
                EntryKind::Fifo => IndexKind::Other,
                EntryKind::CharDev { .. } | EntryKind::BlockDev { .. } => return None,
                EntryKind::Whiteout => IndexKind::Whiteout,
                EntryKind::OpaqueWhiteout => {
                    if e.path.is_empty() {
                        return None;
                    }
                    // The marker makes its directory (created if the layer did not list it)
                    // opaque.
                    idx.add_parents(&e.path)?;
                    match idx.entries.get_mut(&e.path) {
                        Some(IndexKind::Dir { opaque }) => *opaque = true,
                        Some(_) => return None,
                        None => {
                            idx.entries
                                .insert(e.path.clone(), IndexKind::Dir { opaque: true });
                        }
                    }
                    continue;
                }
            };
            if !clean(&e.path) {
                return None;
            }
            idx.add_parents(&e.path)?;
            match idx.entries.get(&e.path) {
                None => {
                    idx.entries.insert(e.path.clone(), kind);
                }
                // A directory listed after a child made it implicitly.
                Some(IndexKind::Dir { .. }) if matches!(kind, IndexKind::Dir { .. }) => {}
                // Two entries for one path: the applier's outcome depends on their order.
                Some(_) => return None,
            }
        }
        (idx.entries.len() <= MAX_INDEX_ENTRIES).then_some(idx)
    }

    /// Adds the implicit parent directories of `path`; `None` when one is not a directory.
    fn add_parents(&mut self, path: &str) -> Option<()> {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            let p = &path[..end + i];
            match self.entries.get(p) {
                Some(IndexKind::Dir { .. }) => {}
                Some(_) => return None,
                None => {
                    self.entries
                        .insert(p.to_string(), IndexKind::Dir { opaque: false });
                }
            }
            end += i + 1;
        }
        Some(())
    }

    /// The index of an unpacked layer snapshot (overlay format: whiteouts are 0:0 character
    /// devices, opaque directories carry the overlay xattr); `None` past the entry cap.
    pub fn from_dir(dir: &Path) -> io::Result<Option<PathIndex>> {
        let mut idx = PathIndex::default();
        let mut stack: Vec<(std::path::PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
        while let Some((real, rel)) = stack.pop() {
            for ent in fs::read_dir(&real)? {
                let ent = ent?;
                let name = ent.file_name().to_string_lossy().into_owned();
                let path = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let meta = fs::symlink_metadata(ent.path())?;
                let ft = meta.file_type();
                let kind = if ft.is_dir() {
                    stack.push((ent.path(), path.clone()));
                    IndexKind::Dir {
                        opaque: overlay::is_opaque(&ent.path()),
                    }
                } else if ft.is_symlink() {
                    IndexKind::Symlink {
                        target: fs::read_link(ent.path())?.to_string_lossy().into_owned(),
                    }
                } else if overlay::is_whiteout_at(&ent.path(), &meta) {
                    IndexKind::Whiteout
                } else if ft.is_file() {
                    IndexKind::File
                } else {
                    IndexKind::Other
                };
                idx.entries.insert(path, kind);
                if idx.entries.len() > MAX_INDEX_ENTRIES {
                    return Ok(None);
                }
            }
        }
        Ok(Some(idx))
    }

    /// The entry at a clean relative path.
    pub fn get(&self, path: &str) -> Option<&IndexKind> {
        self.entries.get(path)
    }

    /// Mode and owner of a directory the layer lists (`None` for a parent it only implies, or
    /// an index written before they were recorded).
    pub fn dir_owner(&self, path: &str) -> Option<DirOwner> {
        self.dirs.get(path).copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The compact JSON form (as stored and exported).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a map of strings serialises")
    }

    /// Parses and checks the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<PathIndex, IndexError> {
        serde_json::from_slice(bytes).map_err(IndexError::Json)
    }

    /// Stores the index as the record of the layer with this diffID.
    pub fn save(&self, store: &Store, diff_id: &Digest) -> Result<(), StoreError> {
        store.put_record(INDEX_RECORD, diff_id, &self.to_json())
    }

    /// The stored index of the layer with this diffID; a missing, unreadable or invalid record
    /// is `None` (the caller unpacks the layer instead).
    pub fn load(store: &Store, diff_id: &Digest) -> Option<PathIndex> {
        let bytes = store.get_record(INDEX_RECORD, diff_id).ok()??;
        PathIndex::from_json(&bytes).ok()
    }
}

impl From<PathIndex> for BTreeMap<String, String> {
    fn from(idx: PathIndex) -> Self {
        let dirs = idx.dirs;
        idx.entries
            .into_iter()
            .map(|(p, k)| {
                let owner = |c: &str| match dirs.get(&p) {
                    Some(o) => format!("{c}:{:o}:{}:{}", o.mode, o.uid, o.gid),
                    None => c.to_string(),
                };
                let code = match k {
                    IndexKind::Dir { opaque: false } => owner("d"),
                    IndexKind::Dir { opaque: true } => owner("o"),
                    IndexKind::File => "f".to_string(),
                    IndexKind::Other => "x".to_string(),
                    IndexKind::Whiteout => "w".to_string(),
                    IndexKind::Symlink { target } => format!("l:{target}"),
                };
                (p, code)
            })
            .collect()
    }
}

impl TryFrom<BTreeMap<String, String>> for PathIndex {
    type Error = IndexError;

    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Self::Error> {
        if map.len() > MAX_INDEX_ENTRIES {
            return Err(IndexError::TooLarge { count: map.len() });
        }
        let mut entries = BTreeMap::new();
        let mut dirs = BTreeMap::new();
        for (path, code) in map {
            if !clean(&path) {
                return Err(IndexError::BadPath { path });
            }
            let (code, owner) = match code.split_once(':') {
                Some((c @ ("d" | "o"), rest)) => match parse_owner(rest) {
                    Some(o) => (c.to_string(), Some(o)),
                    None => return Err(IndexError::UnknownKind { path, code }),
                },
                _ => (code, None),
            };
            if let Some(o) = owner {
                dirs.insert(path.clone(), o);
            }
            let kind = match code.as_str() {
                "d" => IndexKind::Dir { opaque: false },
                "o" => IndexKind::Dir { opaque: true },
                "f" => IndexKind::File,
                "x" => IndexKind::Other,
                "w" => IndexKind::Whiteout,
                c => match c.strip_prefix("l:") {
                    Some(t) if !t.is_empty() && !t.contains('\0') => IndexKind::Symlink {
                        target: t.to_string(),
                    },
                    _ => return Err(IndexError::UnknownKind { path, code }),
                },
            };
            entries.insert(path, kind);
        }
        // Unpacking creates every parent as a directory; an index that says otherwise was not
        // made from a layer.
        for path in entries.keys() {
            if let Some(parent) = parent_of(path) {
                if !matches!(entries.get(parent), Some(IndexKind::Dir { .. })) {
                    return Err(IndexError::ParentNotDir { path: path.clone() });
                }
            }
        }
        Ok(PathIndex { entries, dirs })
    }
}

/// `MODE:UID:GID` (octal mode of at most 0o7777, decimal ids).
fn parse_owner(s: &str) -> Option<DirOwner> {
    let mut it = s.splitn(3, ':');
    let mode = u32::from_str_radix(it.next()?, 8)
        .ok()
        .filter(|m| *m <= 0o7777)?;
    let uid = it.next()?.parse().ok()?;
    let gid = it.next()?.parse().ok()?;
    Some(DirOwner { mode, uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{apply_layer, ApplyOptions, WhiteoutMode};
    use crate::tar::{write_layer, LayerOptions};
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;

    fn e(path: &str, kind: EntryKind) -> LayerEntry {
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

    #[test]
    fn index_records_the_mode_and_owner_of_listed_directories() {
        // So a step writing below /tmp carries `tmp/` 1777 into its layer without unpacking
        // the layer that holds it.
        let mut tmp = e("tmp", EntryKind::Dir);
        tmp.mode = 0o41777;
        tmp.uid = 7;
        tmp.gid = 8;
        let idx = PathIndex::from_entries(&[tmp, e("tmp/x/y", EntryKind::Dir)]).unwrap();
        let want = DirOwner {
            mode: 0o1777,
            uid: 7,
            gid: 8,
        };
        assert_eq!(idx.dir_owner("tmp"), Some(want));
        assert_eq!(
            idx.dir_owner("tmp/x"),
            None,
            "an implied parent has no metadata"
        );
        let json = idx.to_json();
        assert!(String::from_utf8_lossy(&json).contains(r#""tmp":"d:1777:7:8""#));
        assert_eq!(PathIndex::from_json(&json).unwrap(), idx);
        // Indexes written before, with bare codes, still read (without metadata).
        let old = PathIndex::from_json(br#"{"tmp":"d","tmp/x":"o"}"#).unwrap();
        assert_eq!(old.dir_owner("tmp"), None);
        for bad in [
            r#"{"tmp":"d:99999:0:0"}"#,
            r#"{"tmp":"d:1777:0"}"#,
            r#"{"tmp":"f:1:2:3"}"#,
        ] {
            assert!(PathIndex::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    fn running_as_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn index_written_with_the_layer_matches_the_unpacked_layer() {
        if !running_as_root() {
            eprintln!("SKIPPED: overlay whiteouts need root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(&t.path().join("store")).unwrap();
        let src = t.path().join("f");
        fs::write(&src, "x").unwrap();
        let entries = vec![
            e("app", EntryKind::Dir),
            e(
                "app/main.py",
                EntryKind::File {
                    source: src.clone(),
                },
            ),
            e(
                "app/link",
                EntryKind::Symlink {
                    target: "../etc".into(),
                },
            ),
            e(
                "app/z-hard",
                EntryKind::Hardlink {
                    target: "app/main.py".into(),
                },
            ),
            // Parents not listed are created by unpacking.
            e(
                "deep/er/file",
                EntryKind::File {
                    source: src.clone(),
                },
            ),
            e("gone", EntryKind::Whiteout),
            e("usr/lib/old", EntryKind::Whiteout),
            e("opq", EntryKind::Dir),
            e("opq", EntryKind::OpaqueWhiteout),
            e("opq/new", EntryKind::Fifo),
            e("implicit-opq", EntryKind::OpaqueWhiteout),
        ];
        let info = write_layer(&store, entries, &LayerOptions::default()).unwrap();
        let written = PathIndex::load(&store, &info.diff_id).expect("write_layer saves the index");

        let dir = t.path().join("unpacked");
        fs::create_dir(&dir).unwrap();
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..ApplyOptions::default()
        };
        apply_layer(&dir, store.open_blob(&info.digest).unwrap(), &opts).unwrap();
        let unpacked = PathIndex::from_dir(&dir).unwrap().unwrap();
        // The kinds agree; only the written index knows which directories the layer listed.
        assert_eq!(written.entries, unpacked.entries);
        for (path, owner) in &written.dirs {
            let md = fs::symlink_metadata(dir.join(path)).unwrap();
            assert_eq!(md.mode() & 0o7777, owner.mode, "{path}");
        }
        assert_eq!(written.get("opq"), Some(&IndexKind::Dir { opaque: true }));
        assert_eq!(
            written.get("usr/lib"),
            Some(&IndexKind::Dir { opaque: false })
        );
        assert_eq!(written.get("usr/lib/old"), Some(&IndexKind::Whiteout));
    }

    #[test]
    fn unpredictable_layers_get_no_index() {
        let dev = e("dev/null", EntryKind::CharDev { major: 1, minor: 3 });
        assert!(PathIndex::from_entries(&[dev]).is_none());
        let root_opq = e("", EntryKind::OpaqueWhiteout);
        assert!(PathIndex::from_entries(&[root_opq]).is_none());
        // A whiteout and an entry of the same path in one layer.
        let both = [e("a", EntryKind::Whiteout), e("a", EntryKind::Fifo)];
        assert!(PathIndex::from_entries(&both).is_none());
        // A file used as a directory.
        let under = [e("a", EntryKind::Fifo), e("a/b", EntryKind::Fifo)];
        assert!(PathIndex::from_entries(&under).is_none());
        let mut x = e("a", EntryKind::Dir);
        x.xattrs
            .insert("trusted.overlay.opaque".into(), b"y".to_vec());
        assert!(PathIndex::from_entries(&[x]).is_none());
    }

    #[test]
    fn json_round_trips_and_is_checked() {
        let idx = PathIndex::from_entries(&[
            e(
                "a/b",
                EntryKind::Symlink {
                    target: "/x:y".into(),
                },
            ),
            e("a/c", EntryKind::Whiteout),
            e("o", EntryKind::OpaqueWhiteout),
        ])
        .unwrap();
        let json = idx.to_json();
        assert_eq!(
            String::from_utf8_lossy(&json),
            r#"{"a":"d","a/b":"l:/x:y","a/c":"w","o":"o"}"#
        );
        assert_eq!(PathIndex::from_json(&json).unwrap(), idx);
        for bad in [
            r#"{"a/b":"f"}"#,
            r#"{"a":"f","a/b":"f"}"#,
            r#"{"../a":"f"}"#,
            r#"{"a":"q"}"#,
            r#"{"a":"l:"}"#,
        ] {
            assert!(PathIndex::from_json(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}

//! The explicit entry list a layer is written from, its validation and its canonical order.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::LayerError;
use crate::whiteout;

/// What a layer entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose bytes are read from `source` while the layer is written.
    File {
        source: PathBuf,
    },
    Dir,
    Symlink {
        target: String,
    },
    /// A hard link to `target` (a layer path, relative, slash-separated), which must be a regular
    /// file that comes earlier in the layer.
    Hardlink {
        target: String,
    },
    CharDev {
        major: u32,
        minor: u32,
    },
    BlockDev {
        major: u32,
        minor: u32,
    },
    Fifo,
    /// Deletes `path` from the layers below; written as `dir/.wh.NAME`.
    Whiteout,
    /// Hides everything below directory `path` in lower layers; written as `path/.wh..wh..opq`.
    /// `path` may be empty for the root.
    OpaqueWhiteout,
}

/// One entry of a layer. `path` is relative, slash-separated, without a leading or trailing
/// slash; for whiteouts it is the path being deleted (or made opaque).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerEntry {
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits plus setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Modification time in seconds since the epoch.
    pub mtime: i64,
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl LayerEntry {
    /// The name this entry has in the tar (`dir/` for directories, `.wh.` names for whiteouts).
    pub fn tar_path(&self) -> String {
        match &self.kind {
            EntryKind::Dir => format!("{}/", self.path),
            EntryKind::Whiteout => whiteout::whiteout_path(&self.path),
            EntryKind::OpaqueWhiteout => whiteout::opaque_marker_path(&self.path),
            _ => self.path.clone(),
        }
    }

    /// The tar path without the trailing slash of directories.
    fn key_path(&self) -> String {
        let mut p = self.tar_path();
        if p.ends_with('/') {
            p.pop();
        }
        p
    }
}

/// Splits `a/b/c` into (`a/b/`, `c`).
fn split_parent(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    }
}

/// Compares two tar paths component by component: parents before children, whiteouts before
/// their siblings ([`whiteout::compare_siblings`]), otherwise byte order (as `filepath.Walk`
/// orders a tree in BuildKit).
fn compare_paths(a: &str, b: &str) -> Ordering {
    let mut ai = a.split('/');
    let mut bi = b.split('/');
    loop {
        match (ai.next(), bi.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = whiteout::compare_siblings(x, y);
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// Puts entries in the canonical layer order (see [`compare_paths`]).
pub fn sort_entries(entries: &mut [LayerEntry]) {
    entries.sort_by_cached_key(|e| SortKey(e.key_path()));
}

#[derive(PartialEq, Eq)]
struct SortKey(String);

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_paths(&self.0, &other.0)
    }
}

fn check_path(path: &str, allow_empty: bool) -> Result<(), &'static str> {
    if path.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err("it is empty")
        };
    }
    if path.starts_with('/') {
        return Err("it must be relative (no leading '/')");
    }
    if path.contains('\0') {
        return Err("it contains a NUL byte");
    }
    for c in path.split('/') {
        match c {
            "" => return Err("it has an empty component ('//' or a trailing '/')"),
            "." | ".." => return Err("it has a '.' or '..' component"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks every entry and the set as a whole; `entries` must already be sorted.
pub(crate) fn validate_sorted(entries: &[LayerEntry]) -> Result<(), LayerError> {
    let mut seen: HashSet<String> = HashSet::with_capacity(entries.len());
    let mut files: HashSet<&str> = HashSet::new();
    for e in entries {
        let invalid = |reason| LayerError::InvalidPath {
            path: e.path.clone(),
            reason,
        };
        check_path(&e.path, matches!(e.kind, EntryKind::OpaqueWhiteout)).map_err(invalid)?;
        let (_, base) = split_parent(&e.path);
        if !matches!(e.kind, EntryKind::OpaqueWhiteout) && whiteout::is_reserved(base.as_bytes()) {
            return Err(invalid(
                "names starting with '.wh.' are reserved for OCI whiteouts",
            ));
        }
        for name in e.xattrs.keys() {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(LayerError::BadXattrName {
                    path: e.path.clone(),
                    name: name.clone(),
                });
            }
        }
        match &e.kind {
            EntryKind::Hardlink { target }
                if check_path(target, false).is_err() || !files.contains(target.as_str()) =>
            {
                return Err(LayerError::HardlinkTarget {
                    path: e.path.clone(),
                    target: target.clone(),
                });
            }
            EntryKind::Symlink { target } if target.contains('\0') || target.is_empty() => {
                return Err(invalid(
                    "its symlink target is empty or contains a NUL byte",
                ));
            }
            EntryKind::File { .. } => {
                files.insert(&e.path);
            }
            _ => {}
        }
        if !seen.insert(e.key_path()) {
            return Err(LayerError::DuplicatePath {
                path: e.path.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> LayerEntry {
        LayerEntry {
            path: path.into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: BTreeMap::new(),
        }
    }

    #[test]
    fn order_parents_first_whiteouts_before_siblings() {
        let mut v = vec![
            e("a/z", EntryKind::Fifo),
            e("a-b", EntryKind::Dir),
            e("a/b", EntryKind::Whiteout),
            e("a", EntryKind::Dir),
            e("a/-x", EntryKind::Fifo),
            e("a", EntryKind::OpaqueWhiteout),
            e("a/c", EntryKind::Dir),
            e("a/c/d", EntryKind::Fifo),
        ];
        sort_entries(&mut v);
        let names: Vec<String> = v.iter().map(|e| e.tar_path()).collect();
        assert_eq!(
            names,
            [
                "a/",
                "a/.wh..wh..opq",
                "a/.wh.b",
                "a/-x",
                "a/c/",
                "a/c/d",
                "a/z",
                "a-b/"
            ]
        );
        validate_sorted(&v).unwrap();
    }

    #[test]
    fn rejects_bad_paths_and_dangling_hardlinks() {
        for bad in [
            "/abs",
            "a/../b",
            "a//b",
            "a/",
            ".",
            "",
            ".wh.x",
            "d/.wh..wh..opq",
        ] {
            let v = vec![e(bad, EntryKind::Fifo)];
            assert!(validate_sorted(&v).is_err(), "{bad:?} must be rejected");
        }
        let v = vec![e("a", EntryKind::Hardlink { target: "b".into() })];
        assert!(matches!(
            validate_sorted(&v),
            Err(LayerError::HardlinkTarget { .. })
        ));
        let v = vec![e("a", EntryKind::Fifo), e("a", EntryKind::Dir)];
        assert!(matches!(
            validate_sorted(&v),
            Err(LayerError::DuplicatePath { .. })
        ));
    }
}

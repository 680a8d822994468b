//! Flattening an unpacked root filesystem into a comparable listing: one [`Entry`] per path with
//! its type, permission bits (setuid, setgid and sticky included), owner, size, content hash,
//! symlink target, hardlink group, device numbers and extended attributes. Modification times
//! are deliberately left out (see docs/differential.md).
//!
//! A listing is stored as a [`FsDelta`] against the base image's listing, so that the cached
//! references hold what a case changed rather than four hundred busybox applet links each.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One path of a flattened image, everything compared except the mtime.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: String,
    pub kind: String,
    /// Octal permission bits including setuid (4000), setgid (2000) and sticky (1000).
    pub mode: String,
    pub uid: u32,
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The content of a small text file (at most [`TEXT_LIMIT`] bytes), for readable diffs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// For a file with several links: the first path (in byte order) of its group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardlink: Option<String>,
    /// `major:minor` of a character or block device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// Extended attribute names and their values in hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub xattrs: BTreeMap<String, String>,
}

impl Entry {
    /// One line for a readable diff.
    pub fn describe(&self) -> String {
        let mut s = format!("{} {} {}:{}", self.kind, self.mode, self.uid, self.gid);
        if let Some(size) = self.size {
            s.push_str(&format!(" size={size}"));
        }
        if let Some(h) = &self.sha256 {
            s.push_str(&format!(" sha256={}", &h[..h.len().min(12)]));
        }
        if let Some(t) = &self.text {
            s.push_str(&format!(" text={t:?}"));
        }
        if let Some(t) = &self.target {
            s.push_str(&format!(" -> {t}"));
        }
        if let Some(l) = &self.hardlink {
            s.push_str(&format!(" hardlink-group={l}"));
        }
        if let Some(d) = &self.device {
            s.push_str(&format!(" device={d}"));
        }
        for (k, v) in &self.xattrs {
            s.push_str(&format!(" xattr {k}={v}"));
        }
        s
    }
}

/// Files up to this size that are UTF-8 have their content in the listing.
pub const TEXT_LIMIT: u64 = 512;

/// Lists every path under `root` (which is `/`), sorted by path.
pub fn flatten(root: &Path) -> Result<Vec<Entry>, String> {
    let mut raw = Vec::new();
    walk(root, "", &mut raw)?;
    raw.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let mut groups: HashMap<(u64, u64), String> = HashMap::new();
    for (e, md) in &raw {
        if e.kind != "dir" && md.nlink() > 1 {
            groups
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| e.path.clone());
        }
    }
    Ok(raw
        .into_iter()
        .map(|(mut e, md)| {
            if e.kind != "dir" && md.nlink() > 1 {
                e.hardlink = groups.get(&(md.dev(), md.ino())).cloned();
            }
            e
        })
        .collect())
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<(Entry, std::fs::Metadata)>) -> Result<(), String> {
    let shown = if rel.is_empty() { "/" } else { rel };
    let md = std::fs::symlink_metadata(dir).map_err(|e| format!("lstat {}: {e}", dir.display()))?;
    out.push((entry(dir, shown, &md)?, md));
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .map(|d| d.map(|d| d.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading {}: {e}", dir.display()))?;
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let child = format!("{rel}/{}", name.to_string_lossy());
        let md = std::fs::symlink_metadata(&path)
            .map_err(|e| format!("lstat {}: {e}", path.display()))?;
        if md.is_dir() {
            walk(&path, &child, out)?;
        } else {
            out.push((entry(&path, &child, &md)?, md));
        }
    }
    Ok(())
}

fn entry(path: &Path, shown: &str, md: &std::fs::Metadata) -> Result<Entry, String> {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "socket"
    };
    let mut e = Entry {
        path: shown.to_string(),
        kind: kind.to_string(),
        mode: format!("{:04o}", md.mode() & 0o7777),
        uid: md.uid(),
        gid: md.gid(),
        size: None,
        sha256: None,
        text: None,
        target: None,
        hardlink: None,
        device: None,
        xattrs: BTreeMap::new(),
    };
    if ft.is_file() {
        e.size = Some(md.len());
        e.sha256 = Some(sha256_file(path)?);
        if md.len() <= TEXT_LIMIT {
            e.text = std::fs::read(path)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
        }
    }
    if ft.is_symlink() {
        let t =
            std::fs::read_link(path).map_err(|e| format!("readlink {}: {e}", path.display()))?;
        e.target = Some(t.to_string_lossy().into_owned());
        // A symlink's permission bits are meaningless on Linux (always 0777).
        e.mode = "0777".into();
    }
    if ft.is_char_device() || ft.is_block_device() {
        let rdev = md.rdev();
        e.device = Some(format!("{}:{}", libc::major(rdev), libc::minor(rdev)));
    }
    if let Ok(names) = xattr::list(path) {
        for name in names {
            if let Ok(Some(v)) = xattr::get(path, &name) {
                e.xattrs
                    .insert(name.to_string_lossy().into_owned(), hex::encode(v));
            }
        }
    }
    Ok(e)
}

/// The sha256 of a file's content, in hex.
pub fn sha256_file(path: &Path) -> Result<String, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// An image's file system relative to the base image's: entries added or changed, and base
/// paths that are gone. Two images on the same base are identical exactly when their deltas are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsDelta {
    pub changed: Vec<Entry>,
    pub removed: Vec<String>,
}

/// `image` relative to `base` (both sorted by path, as [`flatten`] returns them).
pub fn delta(base: &[Entry], image: &[Entry]) -> FsDelta {
    let base_by_path: BTreeMap<&str, &Entry> = base.iter().map(|e| (e.path.as_str(), e)).collect();
    let image_paths: std::collections::BTreeSet<&str> =
        image.iter().map(|e| e.path.as_str()).collect();
    FsDelta {
        changed: image
            .iter()
            .filter(|e| base_by_path.get(e.path.as_str()) != Some(e))
            .cloned()
            .collect(),
        removed: base
            .iter()
            .filter(|e| !image_paths.contains(e.path.as_str()))
            .map(|e| e.path.clone())
            .collect(),
    }
}

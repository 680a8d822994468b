//! Reading an image's layers, bottom first, as tar streams, and keeping only what the scanners
//! need of the final filesystem: the package databases (small text files, kept as bytes until
//! every layer is read, since a purl needs the distro of `os-release`, which a later layer may
//! change) and what the binary scanners found in executables (executables themselves are
//! streamed through, never kept).
//!
//! Layers stack as overlayfs does (`rbuild_layers::whiteout`): a whiteout or an opaque marker
//! hides what the layers below have at (or under) a path; any entry replaces what lies below at
//! its path, and a non-directory also hides what lay below under it. Whiteouts never hide their
//! own layer's entries, so each layer's finds are merged only once the layer has been read.

use std::collections::BTreeMap;
use std::io::{self, Read};

use rbuild_layers::whiteout::{self, Entry};

use super::binary::{self, BinaryInfo};

/// Largest package database file kept (a Debian `status` is a few MiB).
pub const MAX_FILE_BYTES: u64 = 32 << 20;
/// Most bytes of package databases kept in all, so a hostile image cannot exhaust memory with
/// a million `package.json` files.
pub const MAX_TOTAL_BYTES: u64 = 256 << 20;

/// The kinds of file the scanners read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// `etc/os-release` or `usr/lib/os-release`.
    OsRelease,
    /// `var/lib/dpkg/status`, or one file of `var/lib/dpkg/status.d/` (distroless images).
    DpkgStatus,
    /// `lib/apk/db/installed`.
    ApkInstalled,
    /// `…/NAME.dist-info/METADATA`.
    PythonMetadata,
    /// `…/package-lock.json` outside `node_modules`.
    NpmLock,
    /// `…/node_modules/NAME/package.json` (or `@SCOPE/NAME`).
    NpmPackageJson,
}

/// What the final filesystem holds at a path, as far as the scanners care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    Text(FileKind, Vec<u8>),
    Binary(BinaryInfo),
}

/// The scanners' view of an image's final filesystem, by path (relative, no leading `/`).
#[derive(Debug, Default)]
pub struct Tree {
    pub files: BTreeMap<String, Found>,
    /// Files left unread because of the size bounds above, for the caller to report.
    pub skipped: Vec<String>,
    kept_bytes: u64,
}

impl Tree {
    /// Reads one more layer (an uncompressed tar stream) on top of those read so far.
    pub fn add_layer(&mut self, mut layer: impl Read) -> io::Result<()> {
        let upper = self.read_entries(&mut layer)?;
        self.files.extend(upper);
        // Past the end-of-archive marker: read to the end so a verifying reader checks the blob.
        io::copy(&mut layer, &mut io::sink())?;
        Ok(())
    }

    /// What one layer adds; hides what it deletes from the layers below as it goes.
    fn read_entries(&mut self, layer: &mut impl Read) -> io::Result<BTreeMap<String, Found>> {
        let mut archive = tar::Archive::new(layer);
        let mut upper: BTreeMap<String, Found> = BTreeMap::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let Some(path) = clean_path(&entry.path_bytes()) else {
                continue;
            };
            match whiteout::classify(path.as_bytes()) {
                Entry::Whiteout { dir, target } => {
                    if whiteout::is_valid_target(target) {
                        let hidden = join(dir, target);
                        self.hide(&hidden, true);
                    }
                    continue;
                }
                Entry::Opaque { dir } => {
                    let dir = String::from_utf8_lossy(dir).into_owned();
                    self.hide_under(&dir);
                    continue;
                }
                Entry::Regular => {}
            }
            let ty = entry.header().entry_type();
            self.hide(&path, !ty.is_dir());
            if ty.is_hard_link() {
                let target = entry
                    .link_name_bytes()
                    .and_then(|t| clean_path(&t))
                    .and_then(|t| upper.get(&t).or_else(|| self.files.get(&t)).cloned());
                if let Some(found) = target {
                    upper.insert(path, found);
                }
                continue;
            }
            if !ty.is_file() {
                continue;
            }
            let mode = entry.header().mode().unwrap_or(0);
            let size = entry.size();
            if let Some(kind) = classify(&path) {
                if size > MAX_FILE_BYTES || self.kept_bytes + size > MAX_TOTAL_BYTES {
                    self.skipped.push(path);
                    continue;
                }
                let mut bytes = Vec::with_capacity(size as usize);
                (&mut entry).take(size).read_to_end(&mut bytes)?;
                self.kept_bytes += bytes.len() as u64;
                upper.insert(path, Found::Text(kind, bytes));
            } else if mode & 0o111 != 0 && size >= binary::MIN_SIZE {
                let want_busybox = base_name(&path) == "busybox";
                if let Some(info) = binary::scan(&mut entry, want_busybox)? {
                    upper.insert(path, Found::Binary(info));
                }
            }
        }
        Ok(upper)
    }

    /// Forgets what the layers below hold at `path` and, if `subtree`, under it.
    fn hide(&mut self, path: &str, subtree: bool) {
        self.files.remove(path);
        if subtree {
            self.hide_under(path);
        }
    }

    /// Forgets what the layers below hold under directory `dir` (`""`: the whole tree).
    fn hide_under(&mut self, dir: &str) {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let doomed: Vec<String> = self
            .files
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.files.remove(&k);
        }
    }
}

/// A tar path made relative and clean (`./a/b/` → `a/b`); `None` for the root or for a path
/// with `..` (never part of a filesystem the scanners describe).
fn clean_path(raw: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(raw);
    let mut parts = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => return None,
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn join(dir: &[u8], name: &[u8]) -> String {
    let (dir, name) = (String::from_utf8_lossy(dir), String::from_utf8_lossy(name));
    if dir.is_empty() {
        name.into_owned()
    } else {
        format!("{dir}/{name}")
    }
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Which scanner reads the file at `path`, if any.
pub fn classify(path: &str) -> Option<FileKind> {
    match path {
        "etc/os-release" | "usr/lib/os-release" => return Some(FileKind::OsRelease),
        "var/lib/dpkg/status" => return Some(FileKind::DpkgStatus),
        "lib/apk/db/installed" => return Some(FileKind::ApkInstalled),
        _ => {}
    }
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    let last = parts[n - 1];
    if n == 5 && path.starts_with("var/lib/dpkg/status.d/") && !last.ends_with(".md5sums") {
        // distroless: one paragraph per package; `NAME.md5sums` files hold no paragraph.
        return Some(FileKind::DpkgStatus);
    }
    if last == "METADATA" && n >= 2 && parts[n - 2].ends_with(".dist-info") {
        return Some(FileKind::PythonMetadata);
    }
    if last == "package-lock.json" && !parts.contains(&"node_modules") {
        return Some(FileKind::NpmLock);
    }
    if last == "package.json" && n >= 3 {
        let under_modules = parts[n - 3] == "node_modules"
            || (n >= 4 && parts[n - 4] == "node_modules" && parts[n - 3].starts_with('@'));
        if under_modules {
            return Some(FileKind::NpmPackageJson);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_picks_only_package_databases() {
        let cases = [
            ("var/lib/dpkg/status", Some(FileKind::DpkgStatus)),
            (
                "var/lib/dpkg/status.d/base-files",
                Some(FileKind::DpkgStatus),
            ),
            ("var/lib/dpkg/status.d/base-files.md5sums", None),
            (
                "var/lib/dpkg/status.d/libgtk2.0-0",
                Some(FileKind::DpkgStatus),
            ),
            ("var/lib/dpkg/status-old", None),
            ("lib/apk/db/installed", Some(FileKind::ApkInstalled)),
            (
                "usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                Some(FileKind::PythonMetadata),
            ),
            ("usr/lib/python3/x.egg-info/METADATA", None),
            ("app/package-lock.json", Some(FileKind::NpmLock)),
            ("app/node_modules/x/package-lock.json", None),
            (
                "app/node_modules/left-pad/package.json",
                Some(FileKind::NpmPackageJson),
            ),
            (
                "app/node_modules/@types/node/package.json",
                Some(FileKind::NpmPackageJson),
            ),
            ("app/node_modules/left-pad/lib/package.json", None),
            ("app/package.json", None),
            ("etc/os-release", Some(FileKind::OsRelease)),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path), want, "{path}");
        }
    }

    #[test]
    fn clean_path_normalises_and_refuses_dotdot() {
        assert_eq!(clean_path(b"./a//b/").as_deref(), Some("a/b"));
        assert_eq!(
            clean_path(b"/etc/os-release").as_deref(),
            Some("etc/os-release")
        );
        assert_eq!(clean_path(b"./"), None);
        assert_eq!(clean_path(b"a/../b"), None);
    }
}

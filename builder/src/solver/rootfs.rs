//! A stage's filesystem as a stack of unpacked layer snapshots (overlay format, bottom first).
//!
//! Two ways to read it: [`RootFs::lookup`] answers "what is at this path" with overlayfs's rules
//! applied in user space (a whiteout hides, an opaque directory stops the search, a non-directory
//! ends a path: `rbuild_layers::whiteout::look_up_in_layer`) — enough for `/etc/passwd`,
//! `WORKDIR` and COPY destinations without mounting;
//! and [`RootFs::mount_readonly`] mounts the stack read-only with overlayfs for `COPY --from`,
//! which needs the whole merged tree.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rbuild_layers::tar::{IndexKind, PathIndex};
use rbuild_layers::whiteout::{look_up_in_layer, overlay, AtPath, InLayer, OnTheWay};

/// Largest `/etc/passwd`-like file rbuild reads while resolving names.
pub const MAX_SMALL_FILE: u64 = 4 * 1024 * 1024;

/// The snapshot directories of a stage's layers, bottom first (every layer unpacked: what
/// RUN, `COPY --from` and cache-mount seeding need).
#[derive(Debug, Clone, Default)]
pub struct RootFs {
    pub lowers: Vec<PathBuf>,
}

/// What kind of entry a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FoundKind {
    Dir,
    Symlink {
        target: String,
    },
    File,
    /// A FIFO, socket or device.
    Other,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: FoundKind,
    /// The path in the snapshot that provides the entry; `None` when the answer came from a
    /// layer's path index (the layer is not unpacked).
    pub real: Option<PathBuf>,
    /// Which lower (bottom first) provides the entry.
    pub layer: usize,
}

impl Found {
    pub fn is_dir(&self) -> bool {
        self.kind == FoundKind::Dir
    }

    pub fn is_symlink(&self) -> bool {
        matches!(self.kind, FoundKind::Symlink { .. })
    }

    pub fn is_file(&self) -> bool {
        self.kind == FoundKind::File
    }
}

/// One layer's answer for a path (overlay rules inside that layer): what was found there and,
/// for an unpacked layer, its path in the snapshot.
pub(super) type Probe = InLayer<(FoundKind, Option<PathBuf>)>;

/// Splits an absolute or relative image path into clean components (`.`/`..` resolved
/// lexically inside the root, as path.Clean on "/"+p does).
pub fn components(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c.to_string()),
        }
    }
    out
}

/// Looks `comps` up in one unpacked snapshot directory (overlay format).
pub(super) fn probe_dir(layer: &Path, comps: &[String]) -> Probe {
    if comps.is_empty() {
        return Probe::Found((FoundKind::Dir, Some(layer.to_path_buf())));
    }
    let real = |n: usize| -> PathBuf {
        comps[..n]
            .iter()
            .fold(layer.to_path_buf(), |p, c| p.join(c))
    };
    let on_the_way = |i: usize| {
        let p = real(i + 1);
        match fs::symlink_metadata(&p) {
            Ok(m) if overlay::is_whiteout_at(&p, &m) => OnTheWay::Whiteout,
            Ok(m) if m.is_dir() => OnTheWay::Dir {
                opaque: overlay::is_opaque(&p),
            },
            Ok(_) => OnTheWay::NotDir,
            Err(_) => OnTheWay::Missing,
        }
    };
    let at_path = || {
        let p = real(comps.len());
        let Ok(m) = fs::symlink_metadata(&p) else {
            return AtPath::Missing;
        };
        if overlay::is_whiteout_at(&p, &m) {
            return AtPath::Whiteout;
        }
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            FoundKind::Dir
        } else if ft.is_symlink() {
            match fs::read_link(&p) {
                Ok(t) => FoundKind::Symlink {
                    target: t.to_string_lossy().into_owned(),
                },
                // Unreadable: treat as absent, as an unreadable entry always was.
                Err(_) => return AtPath::Missing,
            }
        } else if ft.is_file() {
            FoundKind::File
        } else {
            FoundKind::Other
        };
        AtPath::Entry((kind, Some(p)))
    };
    look_up_in_layer(comps.len(), on_the_way, at_path)
}

/// Looks `comps` up in one layer's path index, with exactly [`probe_dir`]'s rules.
pub(super) fn probe_index(index: &PathIndex, comps: &[String]) -> Probe {
    if comps.is_empty() {
        return Probe::Found((FoundKind::Dir, None));
    }
    let get = |n: usize| index.get(&comps[..n].join("/"));
    let on_the_way = |i: usize| match get(i + 1) {
        None => OnTheWay::Missing,
        Some(IndexKind::Whiteout) => OnTheWay::Whiteout,
        Some(IndexKind::Dir { opaque }) => OnTheWay::Dir { opaque: *opaque },
        Some(_) => OnTheWay::NotDir,
    };
    let at_path = || {
        let kind = match get(comps.len()) {
            None => return AtPath::Missing,
            Some(IndexKind::Whiteout) => return AtPath::Whiteout,
            Some(IndexKind::Dir { .. }) => FoundKind::Dir,
            Some(IndexKind::Symlink { target }) => FoundKind::Symlink {
                target: target.clone(),
            },
            Some(IndexKind::File) => FoundKind::File,
            Some(IndexKind::Other) => FoundKind::Other,
        };
        AtPath::Entry((kind, None))
    };
    look_up_in_layer(comps.len(), on_the_way, at_path)
}

/// Asks lower `i` (bottom first) about a path's components.
pub(super) type ProbeFn<'p, E> = dyn FnMut(usize, &[String]) -> Result<Probe, E> + 'p;

/// The overlay lookup shared by every kind of stack: `probe(i, comps)` asks lower `i` (bottom
/// first) of `n`; symlinks in the directories leading to the entry are followed inside the root,
/// the last component is not.
pub(super) fn lookup_in<E>(
    n: usize,
    path: &str,
    probe: &mut ProbeFn<'_, E>,
) -> Result<Option<Found>, E> {
    lookup_depth(n, components(path), 0, probe)
}

fn lookup_depth<E>(
    n: usize,
    comps: Vec<String>,
    depth: usize,
    probe: &mut ProbeFn<'_, E>,
) -> Result<Option<Found>, E> {
    if depth > 40 {
        return Ok(None);
    }
    // Resolve intermediate components one by one so a symlinked directory is followed.
    for i in 0..comps.len().saturating_sub(1) {
        let prefix = &comps[..=i];
        let Some(found) = lookup_exact(n, prefix, probe)? else {
            return Ok(None);
        };
        match found.kind {
            FoundKind::Symlink { target } => {
                // A relative target is resolved from the link's directory *before* cleaning,
                // so its `..` climbs out of that directory.
                let mut next = if target.starts_with('/') {
                    components(&target)
                } else {
                    components(&format!(
                        "{}/{target}",
                        prefix[..prefix.len() - 1].join("/")
                    ))
                };
                next.extend(comps[i + 1..].iter().cloned());
                return lookup_depth(n, next, depth + 1, probe);
            }
            FoundKind::Dir => {}
            _ => return Ok(None),
        }
    }
    lookup_exact(n, &comps, probe)
}

/// Overlay lookup of a path whose directories are all real directories.
fn lookup_exact<E>(
    n: usize,
    comps: &[String],
    probe: &mut ProbeFn<'_, E>,
) -> Result<Option<Found>, E> {
    if comps.is_empty() && n > 0 {
        // The root is a directory; its opacity never matters (nothing is above it).
        return match probe(n - 1, comps)? {
            Probe::Found((kind, real)) => Ok(Some(Found {
                kind,
                real,
                layer: n - 1,
            })),
            _ => Ok(None),
        };
    }
    for layer in (0..n).rev() {
        match probe(layer, comps)? {
            Probe::Found((kind, real)) => return Ok(Some(Found { kind, real, layer })),
            Probe::Hidden => return Ok(None),
            Probe::Absent => {}
        }
    }
    Ok(None)
}

/// Reads a small regular file through a found entry (`None` if it is not one).
pub(super) fn read_found(found: &Found) -> Option<String> {
    let real = found.real.as_ref()?;
    let meta = fs::symlink_metadata(real).ok()?;
    if !meta.is_file() || meta.len() > MAX_SMALL_FILE {
        return None;
    }
    let mut s = String::new();
    fs::File::open(real)
        .ok()?
        .take(MAX_SMALL_FILE)
        .read_to_string(&mut s)
        .ok()?;
    Some(s)
}

impl RootFs {
    /// Finds the entry at `path` in the merged view, following symlinks in the directories
    /// leading to it (inside the root) but not in the last component.
    pub fn lookup(&self, path: &str) -> Option<Found> {
        let never =
            lookup_in::<std::convert::Infallible>(self.lowers.len(), path, &mut |i, comps| {
                Ok(probe_dir(&self.lowers[i], comps))
            });
        match never {
            Ok(f) => f,
            Err(e) => match e {},
        }
    }

    /// Reads a small regular file (e.g. `/etc/passwd`) from the merged view; `None` when it is
    /// missing or not a regular file (never reads FIFOs or devices: CVE-2024-9676).
    pub fn read_small_file(&self, path: &str) -> Option<String> {
        let found = self.lookup(path)?;
        if !found.is_file() {
            return None;
        }
        read_found(&found)
    }

    /// Before a kernel overlay mount of these snapshots: those unpacked without the right to
    /// write `trusted.` xattrs get their opaque directories marked the kernel's way
    /// (`rbuild_layers::whiteout::overlay::promote_user_opaque`); those holding whiteout
    /// placeholders are refused (`PermissionDenied`: callers that can copy instead do).
    pub fn prepare_for_overlay(&self) -> Result<(), std::io::Error> {
        if let Some(l) = self
            .lowers
            .iter()
            .find(|l| overlay::has_whiteout_placeholders(l))
        {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "the snapshot {} holds whiteouts as placeholders (the store's filesystem refuses whiteout devices, e.g. overlayfs): it cannot be an overlay lower directory; put the store on another filesystem (--store)",
                    l.display()
                ),
            ));
        }
        // In a user namespace (rootless), overlay is mounted with `userxattr` and reads the
        // `user.` xattr these snapshots carry (and `trusted.` ones cannot be written there).
        if crate::executor::userns::in_user_namespace() {
            return Ok(());
        }
        for l in &self.lowers {
            rbuild_layers::whiteout::overlay::promote_user_opaque(l)?;
        }
        Ok(())
    }

    /// Mounts the stack read-only at `target` (an existing empty directory). The mount lives in
    /// rbuild's private mount namespace (see `crate::sandbox_init`) and is removed when the
    /// guard drops.
    pub fn mount_readonly(&self, target: &Path) -> Result<MountGuard, std::io::Error> {
        self.prepare_for_overlay()?;
        match self.lowers.len() {
            0 => Ok(MountGuard { target: None }),
            1 => {
                mount(
                    &self.lowers[0],
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                let guard = MountGuard {
                    target: Some(target.to_path_buf()),
                };
                // Keeping the flags a user namespace locks (rootless).
                let locked = crate::executor::sys::locked_flags(target).map_err(|e| e.source)?;
                mount(
                    Path::new("none"),
                    target,
                    None,
                    libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked,
                    None,
                )?;
                Ok(guard)
            }
            _ => {
                // overlay's lowerdir lists the top layer first.
                let lower = self
                    .lowers
                    .iter()
                    .rev()
                    .map(|p| escape_overlay_path(p))
                    .collect::<Vec<_>>()
                    .join(":");
                let data = format!(
                    "lowerdir={lower}{}",
                    crate::executor::sys::overlay_xattr_option()
                );
                mount(
                    Path::new("overlay"),
                    target,
                    Some("overlay"),
                    libc::MS_RDONLY,
                    Some(&data),
                )?;
                Ok(MountGuard {
                    target: Some(target.to_path_buf()),
                })
            }
        }
    }
}

fn escape_overlay_path(p: &Path) -> String {
    // ':' and ',' separate overlay options; '\' escapes them.
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

fn cstr(p: &Path) -> std::io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "path contains NUL"))
}

fn mount(
    source: &Path,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> std::io::Result<()> {
    let src = cstr(source)?;
    let tgt = cstr(target)?;
    let fst = fstype.map(|f| CString::new(f).expect("fs type has no NUL"));
    let dat = data
        .map(|d| CString::new(d).map_err(|_| std::io::Error::other("mount data contains NUL")))
        .transpose()?;
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call, or null.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            fst.as_ref().map_or(std::ptr::null(), |f| f.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        let err = std::io::Error::last_os_error();
        Err(std::io::Error::new(
            err.kind(),
            format!(
                "mounting {} on {} ({}) was refused: {err}; rbuild needs root (or CAP_SYS_ADMIN) to mount overlayfs for COPY --from",
                source.display(),
                target.display(),
                fstype.unwrap_or("bind")
            ),
        ))
    }
}

/// Unmounts on drop.
#[derive(Debug)]
pub struct MountGuard {
    target: Option<PathBuf>,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            if let Ok(c) = cstr(&t) {
                // SAFETY: c is a valid NUL-terminated path. MNT_DETACH so a busy mount cannot
                // wedge teardown; nothing is written through it (read-only).
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn layer(root: &Path, name: &str) -> PathBuf {
        let p = root.join(name);
        fs::create_dir_all(&p).unwrap();
        p
    }

    fn mknod_whiteout(p: &Path) -> bool {
        let c = CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid path; creates a 0:0 char device (needs root).
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) == 0 }
    }

    #[test]
    fn lookup_follows_overlay_rules() {
        let t = tempfile::tempdir().unwrap();
        let l0 = layer(t.path(), "l0");
        let l1 = layer(t.path(), "l1");
        fs::create_dir_all(l0.join("etc")).unwrap();
        fs::write(l0.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        fs::write(l0.join("etc/group"), "root:x:0:\n").unwrap();
        fs::create_dir_all(l1.join("etc")).unwrap();
        fs::write(
            l1.join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1:1::/:/bin/sh\n",
        )
        .unwrap();
        let fs_ = RootFs {
            lowers: vec![l0.clone(), l1.clone()],
        };
        assert!(fs_.read_small_file("/etc/passwd").unwrap().contains("app"));
        assert!(fs_.read_small_file("etc/group").is_some());
        assert!(fs_.lookup("/nope").is_none());
        assert!(fs_.lookup("/").unwrap().is_dir());

        // A whiteout in the upper layer hides the lower file (needs root for mknod).
        if mknod_whiteout(&l1.join("etc/group")) {
            assert!(fs_.lookup("/etc/group").is_none());
        }
    }

    #[test]
    fn opaque_directories_hide_lower_contents() {
        let t = tempfile::tempdir().unwrap();
        let l0 = layer(t.path(), "l0");
        let l1 = layer(t.path(), "l1");
        fs::create_dir_all(l0.join("d")).unwrap();
        fs::write(l0.join("d/old"), "x").unwrap();
        fs::create_dir_all(l1.join("d")).unwrap();
        if xattr::set(l1.join("d"), "trusted.overlay.opaque", b"y").is_err() {
            eprintln!("SKIPPED: cannot set trusted.* xattrs here");
            return;
        }
        let fs_ = RootFs {
            lowers: vec![l0, l1],
        };
        assert!(fs_.lookup("/d").is_some());
        assert!(fs_.lookup("/d/old").is_none());
    }

    #[test]
    fn symlinked_directories_are_followed_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let l0 = layer(t.path(), "l0");
        fs::create_dir_all(l0.join("real/dir")).unwrap();
        fs::write(l0.join("real/dir/f"), "x").unwrap();
        symlink("/real", l0.join("link")).unwrap();
        symlink("../../../../real", l0.join("up")).unwrap();
        let fs_ = RootFs {
            lowers: vec![l0.clone()],
        };
        assert!(fs_.lookup("/link/dir/f").unwrap().is_file());
        // `..` past the root stays at the root.
        assert!(fs_.lookup("/up/dir/f").unwrap().is_file());
        // A relative `..` target climbs out of the link's own directory.
        symlink("../real", l0.join("real/back")).unwrap();
        assert!(fs_.lookup("/real/back/dir/f").unwrap().is_file());
        // The last component is not followed.
        assert!(fs_.lookup("/link").unwrap().is_symlink());
    }

    #[test]
    fn components_clean_like_path_clean() {
        assert_eq!(components("/a/./b/../c/"), vec!["a", "c"]);
        assert_eq!(components("../../x"), vec!["x"]);
        assert!(components("/").is_empty());
    }
}

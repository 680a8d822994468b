//! Resolving paths inside a root as BuildKit does (continuity's `fs.RootPath`): every symlink
//! met on the way is followed *inside* the root — an absolute target starts again at the root,
//! `..` stops there — so no path ever reaches the host's files. [`resolve`] does it for a
//! `COPY --from` source in another stage's root directory (a source that is itself a symlink
//! names what it points to); [`resolve_dest`] for a COPY/ADD destination in the image being
//! built, over its layers (a destination that is a symlink is written through).

use std::collections::VecDeque;
use std::fs;
use std::path::Path;

use super::copy::CopyError;
use super::lazy_rootfs::LazyRootFs;
use super::rootfs::FoundKind;
use super::BuildError;

/// Most symlinks followed while resolving one path (Linux's own limit is 40; BuildKit's 255).
const MAX_HOPS: usize = 255;

fn parts(p: &str) -> VecDeque<String> {
    p.split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(str::to_string)
        .collect()
}

/// One walk through a path inside a root: the components resolved so far and those still to
/// go. `..` never climbs above the root, and a symlink met on the way is spliced in (an absolute
/// target starts again at the root). [`resolve`] and [`resolve_dest`] differ only in how they
/// look a component up.
struct Walk {
    cur: Vec<String>,
    queue: VecDeque<String>,
    hops: usize,
}

impl Walk {
    fn new(path: &str) -> Walk {
        Walk {
            cur: Vec::new(),
            queue: parts(path),
            hops: 0,
        }
    }

    /// Moves to the next component (applying `..` on the way); `false` at the end.
    fn step(&mut self) -> bool {
        while let Some(seg) = self.queue.pop_front() {
            if seg == ".." {
                self.cur.pop();
                continue;
            }
            self.cur.push(seg);
            return true;
        }
        false
    }

    /// Whether the current component is the path's last.
    fn at_last(&self) -> bool {
        self.queue.is_empty()
    }

    /// The components resolved so far, joined (`""` for the root).
    fn current(&self) -> String {
        self.cur.join("/")
    }

    /// Replaces the current component, a symlink, by its `target`; `false` once more than
    /// [`MAX_HOPS`] symlinks were followed (a loop).
    fn follow(&mut self, target: &str) -> bool {
        self.hops += 1;
        if self.hops > MAX_HOPS {
            return false;
        }
        self.cur.pop();
        if target.starts_with('/') {
            self.cur.clear();
        }
        let mut next = parts(target);
        next.extend(self.queue.drain(..));
        self.queue = next;
        true
    }
}

/// Resolves `rel` inside `root`, following symlinks in every component (the last one too when
/// `follow_last`). Returns the resolved path relative to `root` (`"."` for the root itself), or
/// `None` when a component is missing, is not a directory where one is needed, or after
/// [`MAX_HOPS`] symlinks (a loop).
///
/// Only paths whose every directory was checked not to be a symlink are handed to the kernel,
/// so `root.join` never follows a link out of the root.
pub fn resolve(root: &Path, rel: &str, follow_last: bool) -> Option<String> {
    let mut walk = Walk::new(rel);
    while walk.step() {
        let path = root.join(walk.current());
        let md = fs::symlink_metadata(&path).ok()?;
        if md.file_type().is_symlink() && (follow_last || !walk.at_last()) {
            let target = fs::read_link(&path).ok()?;
            if !walk.follow(&target.to_string_lossy()) {
                return None;
            }
            continue;
        }
        if !walk.at_last() && !md.is_dir() {
            return None;
        }
    }
    let cur = walk.current();
    Some(if cur.is_empty() { ".".to_string() } else { cur })
}

/// Why a destination could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum DestError {
    #[error("destination {path}: more than {MAX_HOPS} symlinks on the way (a loop?)")]
    Loop { path: String },
    #[error("destination {path}: /{at} is not a directory")]
    NotDir { path: String, at: String },
}

/// Resolves the destination `path` (absolute or relative to the root) in the image `rootfs`,
/// following symlinks in every component, the last one included; from the first missing
/// component on, the rest is kept as written (it will be created). Returns the resolved path
/// relative to the root, cleaned, `""` for the root.
pub fn resolve_dest(rootfs: &LazyRootFs<'_>, path: &str) -> Result<String, BuildError> {
    let mut walk = Walk::new(path);
    let mut missing = false;
    while walk.step() {
        if missing {
            continue;
        }
        let Some(found) = rootfs.lookup(&walk.current())? else {
            missing = true;
            continue;
        };
        match found.kind {
            FoundKind::Symlink { target } => {
                if !walk.follow(&target) {
                    return Err(CopyError::Dest(DestError::Loop {
                        path: path.to_string(),
                    })
                    .into());
                }
            }
            FoundKind::Dir => {}
            _ if walk.at_last() => {}
            _ => {
                return Err(CopyError::Dest(DestError::NotDir {
                    path: path.to_string(),
                    at: walk.current(),
                })
                .into())
            }
        }
    }
    Ok(walk.current())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_resolve_inside_the_root_never_on_the_host() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::create_dir_all(r.join("src/dd")).unwrap();
        fs::create_dir(r.join("etc")).unwrap();
        fs::write(r.join("src/f"), "f").unwrap();
        symlink("f", r.join("src/rel")).unwrap();
        symlink("/src/f", r.join("src/abs")).unwrap();
        symlink("../../../../../../etc", r.join("src/up")).unwrap();
        symlink("/etc", r.join("src/etc")).unwrap();
        symlink("loop", r.join("src/loop")).unwrap();
        assert_eq!(resolve(r, "src/rel", true).as_deref(), Some("src/f"));
        assert_eq!(resolve(r, "src/rel", false).as_deref(), Some("src/rel"));
        assert_eq!(resolve(r, "src/abs", true).as_deref(), Some("src/f"));
        // Out of the root: clamped to the root's own /etc, which does not exist here.
        assert_eq!(resolve(r, "src/up/passwd", true), None);
        assert_eq!(resolve(r, "src/etc/passwd", true), None);
        assert_eq!(resolve(r, "src/up", true).as_deref(), Some("etc"));
        assert_eq!(resolve(r, "src/loop", true), None);
        assert_eq!(resolve(r, "src/f/x", true), None);
        assert_eq!(resolve(r, "/", true).as_deref(), Some("."));
    }
}

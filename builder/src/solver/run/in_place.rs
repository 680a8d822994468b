//! The root of a RUN step in `in-place` isolation (kaniko's way): the container rbuild runs in
//! *is* the sandbox. Before each step, rbuild makes its own root filesystem — everything but
//! the paths it must keep ([`Keep`]) — the stage's merged snapshots (`rootsync`: removing what
//! they lack, copying what differs, so a stage's next step copies almost nothing); the
//! command then runs on it (`executor::in_place`) with the container's own `/proc`, `/sys` and
//! `/dev`, which is what `chroot` mode cannot give (the JVM refuses to start without `/proc`);
//! and the layer is found by comparing the root with the state taken after the copy, as in
//! `chroot` mode ([`super::compare`]), so both write the same bytes.
//!
//! Kept: `/proc`, `/sys`, `/dev`; every mount point of the container (`/etc/hosts`,
//! `/etc/resolv.conf`, `/etc/hostname`, the CI workspace, a mounted Docker config, a
//! Kubernetes service account); the rbuild image's marker file [`MARKER`]; the store. Anything
//! else rbuild reads or writes after the first step (the context, the Dockerfile, secrets,
//! outputs) must be on one of them: the CLI checks that before the build ([`outside_kept`]).
//!
//! What the image has at a kept path is what the step cannot see: under `/proc`, `/sys`, `/dev`
//! and at `/etc/hosts` and `/etc/resolv.conf` every mode hides it (they are mounts in
//! `namespaces` mode too); anywhere else it is refused with the mount named ([`RunError`]
//! `InPlaceConflict`), never built differently. `/etc/hostname` is the one known difference:
//! the step reads the container's, where `namespaces` mode shows the image's.
//!
//! Only one step at a time can own the root: [`RootLock`] serializes the RUN steps of a build
//! from the copy until their layer has been written from the root's files.
//!
//! Guard: the mode destroys the files of the machine it runs on, so the engine refuses it
//! unless [`MARKER`] exists — the rbuild image has it, a host never should.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

use super::mounts::io;
use super::rootcopy::{stat, Start, StartState};
use super::rootsync::Protection;
use super::RunError;
use crate::solver::rootfs::RootFs;
use crate::solver::BuildError;

/// The file that marks the rbuild image (`image/Dockerfile`), without which `in-place` is
/// refused.
pub const MARKER: &str = "/.rbuild-image";

/// Kept paths whose image content no mode shows a step (mounted over in `namespaces` mode).
const HIDDEN_IN_EVERY_MODE: [&str; 6] = [
    "proc",
    "sys",
    "dev",
    "etc/hosts",
    "etc/resolv.conf",
    "etc/hostname",
];

/// The paths of the container the in-place root keeps (relative to `/`, no `.` or `..`).
#[derive(Debug, Clone, Default)]
pub struct Keep {
    paths: BTreeSet<String>,
    /// Every proper ancestor directory of a kept path.
    ancestors: HashSet<String>,
    /// Kept paths mounted read-only: no step can write there, and what changes there comes
    /// from outside (a Kubernetes token or ConfigMap volume the kubelet refreshes).
    readonly: HashSet<String>,
}

impl Keep {
    /// What this container keeps: the fixed paths, its mount points, the marker and `store`.
    pub fn discover(store: &Path) -> Result<Keep, BuildError> {
        let mountinfo = Path::new("/proc/self/mountinfo");
        let text = fs::read_to_string(mountinfo).map_err(io("reading", mountinfo))?;
        let store = fs::canonicalize(store).map_err(io("resolving", store))?;
        let mounts = mount_points(&text);
        let readonly: Vec<String> = mounts
            .iter()
            .filter(|(_, ro)| *ro)
            .map(|(p, _)| relative(p))
            .collect();
        let mut paths: Vec<PathBuf> = mounts.into_iter().map(|(p, _)| p).collect();
        paths.extend(["/proc", "/sys", "/dev", MARKER].map(PathBuf::from));
        paths.push(store);
        let mut keep = Keep::new(paths);
        keep.readonly.extend(readonly);
        Ok(keep)
    }

    fn new(paths: impl IntoIterator<Item = PathBuf>) -> Keep {
        let mut keep = Keep::default();
        for p in paths {
            let rel = relative(&p);
            if rel.is_empty() {
                continue;
            }
            let mut parent = rel.as_str();
            while let Some((up, _)) = parent.rsplit_once('/') {
                keep.ancestors.insert(up.to_string());
                parent = up;
            }
            keep.paths.insert(rel);
        }
        keep
    }

    /// The kept path that is `rel` or holds it.
    pub fn covering(&self, rel: &str) -> Option<&str> {
        self.paths
            .iter()
            .find(|k| {
                rel == k.as_str()
                    || rel
                        .strip_prefix(k.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
            .map(String::as_str)
    }

    /// Kept paths, for the comparison to leave out.
    pub fn relative_paths(&self) -> impl Iterator<Item = &str> {
        self.paths.iter().map(String::as_str)
    }
}

/// The kept paths a step could write in by mistake (not the system's, not the store), with
/// their own `stat`: a step that changes one wrote into the container, not the image.
#[derive(Debug)]
pub struct Watched(Vec<(String, Option<Times>)>);

/// mtime and ctime (seconds, nanoseconds).
type Times = (i64, i64, i64, i64);

impl Keep {
    /// Takes the state of the kept paths but `store` (which rbuild writes meanwhile).
    pub fn watch(&self, store: &Path) -> Watched {
        let store = relative(&fs::canonicalize(store).unwrap_or_else(|_| store.to_path_buf()));
        Watched(
            self.paths
                .iter()
                .filter(|k| {
                    **k != store
                        && !self.readonly.contains(k.as_str())
                        && !HIDDEN_IN_EVERY_MODE
                            .iter()
                            .any(|h| k.as_str() == *h || k.starts_with(&format!("{h}/")))
                })
                .map(|k| (k.clone(), own_times(k)))
                .collect(),
        )
    }
}

fn own_times(rel: &str) -> Option<Times> {
    let m = fs::symlink_metadata(Path::new("/").join(rel)).ok()?;
    Some((m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
}

impl Watched {
    /// Refuses the step if it changed a watched path itself (an entry added to or removed from
    /// a kept directory, a kept file written): that went into the container, not the layer.
    pub fn check(&self) -> Result<(), BuildError> {
        for (rel, before) in &self.0 {
            if own_times(rel) != *before {
                return Err(BuildError::Run(RunError::InPlaceWroteKept(format!(
                    "/{rel}"
                ))));
            }
        }
        Ok(())
    }
}

/// `/a/b/../c` → `a/c`.
fn relative(p: &Path) -> String {
    crate::solver::rootfs::components(&p.to_string_lossy()).join("/")
}

/// Mount points of `/proc/self/mountinfo` text (field 5, octal escapes undone), `/` left out,
/// and whether each is mounted read-only (field 6, the per-mount options).
fn mount_points(mountinfo: &str) -> Vec<(PathBuf, bool)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let mut f = l.split(' ').skip(4);
            let point = unescape(f.next()?);
            let readonly = f.next()?.split(',').any(|o| o == "ro");
            (point != "/").then(|| (PathBuf::from(point), readonly))
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in mount paths as `\NNN` octal.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The paths given to rbuild (what, path) that are on the container's root filesystem outside
/// every kept path: the first in-place step would remove them.
pub fn outside_kept(keep: &Keep, given: &[(String, PathBuf)]) -> Vec<(String, PathBuf)> {
    given
        .iter()
        .filter(|(_, p)| {
            // A path that does not exist yet (an output) is judged by its nearest existing
            // ancestor, resolved through symlinks as the write will be.
            let mut probe = p.clone();
            let resolved = loop {
                if let Ok(c) = fs::canonicalize(&probe) {
                    break c.join(p.strip_prefix(&probe).unwrap_or(Path::new("")));
                }
                if !probe.pop() {
                    break p.clone();
                }
            };
            keep.covering(&relative(&resolved)).is_none()
        })
        .cloned()
        .collect()
}

/// Serializes the steps that use the container's root: held from the copy until the step's
/// layer is written (the layer's files are read from the root).
#[derive(Debug, Default)]
pub struct RootLock {
    holder: Mutex<Option<ThreadId>>,
    free: Condvar,
    /// The paths the last step's layer left out (its mount targets…): whatever the step did
    /// there, the next one gets the snapshots' files again (see `rootsync`).
    left_out: Mutex<HashSet<String>>,
}

impl RootLock {
    /// Waits for the root and takes it for this thread (again: a no-op).
    pub fn acquire(&self) {
        let me = std::thread::current().id();
        let mut h = self.holder.lock().expect("root lock poisoned");
        while h.is_some_and(|t| t != me) {
            h = self.free.wait(h).expect("root lock poisoned");
        }
        *h = Some(me);
    }

    /// Notes the paths a step's layer left out, for the next step's sync.
    pub fn set_left_out(&self, paths: impl IntoIterator<Item = String>) {
        let mut l = self.left_out.lock().expect("root lock poisoned");
        l.clear();
        l.extend(paths);
    }

    /// Gives the root back if this thread holds it.
    pub fn release_if_held(&self) {
        let me = std::thread::current().id();
        let mut h = self.holder.lock().expect("root lock poisoned");
        if *h == Some(me) {
            *h = None;
            self.free.notify_one();
        }
    }
}

/// Makes the container's root the merged `rootfs` — removing what it does not have, copying
/// what differs (`rootsync`: on the first step everything, then mostly nothing) — and returns
/// its state, to compare the root with after the command. A conflict with a kept path is
/// refused before anything is changed.
pub fn lay_out_root(
    rootfs: &RootFs,
    keep: &Keep,
    lock: &RootLock,
) -> Result<StartState, BuildError> {
    let root = Path::new("/");
    let refuse = |rel: &str, what: &str, mount: &str| {
        Err(BuildError::Run(RunError::InPlaceConflict {
            path: format!("/{rel}"),
            what: what.to_string(),
            mount: format!("/{mount}"),
        }))
    };
    let force = lock.left_out.lock().expect("root lock poisoned").clone();
    let mut start = super::rootsync::sync_merged(
        rootfs,
        root,
        &super::rootsync::SyncRules {
            keep: &|rel, meta| {
                if let Some(k) = keep.covering(rel) {
                    let hidden = HIDDEN_IN_EVERY_MODE
                        .iter()
                        .any(|h| rel == *h || rel.starts_with(&format!("{h}/")));
                    // The image's directory where the container has one: fine while the image has
                    // nothing in it (anything below is refused here, path by path).
                    if hidden || (rel == k && meta.is_dir()) {
                        return Ok(false);
                    }
                    return refuse(rel, kind(meta), k);
                }
                if keep.ancestors.contains(rel) && !meta.is_dir() {
                    let mount = keep
                        .paths
                        .iter()
                        .find(|k| k.starts_with(&format!("{rel}/")))
                        .cloned()
                        .unwrap_or_default();
                    return refuse(rel, kind(meta), &mount);
                }
                Ok(true)
            },
            protected: &|rel| {
                if keep.covering(rel).is_some() {
                    Protection::Kept
                } else if keep.ancestors.contains(rel) {
                    Protection::Above
                } else {
                    Protection::None
                }
            },
            force: &force,
        },
        &|| Ok(()),
    )?;
    // The directories above kept paths that the image lacks stay (they hold the mounts): as
    // if the image had them, so that only what a step writes in them is in its layer.
    let mut ancestors: Vec<&String> = keep.ancestors.iter().collect();
    ancestors.sort();
    for rel in ancestors {
        if start.paths.contains_key(rel.as_str()) {
            continue;
        }
        let p = root.join(rel);
        let st = stat(&p).map_err(io("reading metadata of", &p))?;
        start.paths.insert(
            rel.clone(),
            Start {
                stat: st,
                source: p,
            },
        );
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel.as_str()));
        start
            .children
            .entry(parent.to_string())
            .or_default()
            .insert(name.to_string());
        let names: BTreeSet<String> = fs::read_dir(root.join(rel))
            .map_err(io("listing", &root.join(rel)))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                let child = format!("{rel}/{n}");
                start.paths.contains_key(&child) || keep.ancestors.contains(&child)
            })
            .collect();
        start.children.entry(rel.clone()).or_default().extend(names);
    }
    Ok(start)
}

fn kind(meta: &fs::Metadata) -> &'static str {
    if meta.is_dir() {
        "a directory"
    } else if meta.file_type().is_symlink() {
        "a symlink"
    } else {
        "a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_from_mountinfo_with_escapes_undone() {
        let text = "\
22 1 0:21 / / rw,relatime - overlay overlay rw\n\
23 22 0:22 / /proc rw,nosuid - proc proc rw\n\
30 22 8:1 /var/lib/docker/containers/x/hosts /etc/hosts rw - ext4 /dev/sda1 rw\n\
31 22 8:1 /home/me/my\\040app /work\\040space rw - ext4 /dev/sda1 rw\n\
32 22 0:40 / /run/secrets/kubernetes.io/serviceaccount ro,relatime - tmpfs tmpfs rw\n";
        let got = mount_points(text);
        let want = [
            ("/proc", false),
            ("/etc/hosts", false),
            ("/work space", false),
            ("/run/secrets/kubernetes.io/serviceaccount", true),
        ]
        .map(|(p, ro)| (PathBuf::from(p), ro));
        assert_eq!(got, want);
    }

    #[test]
    fn a_step_writing_in_a_kept_mount_is_caught_but_read_only_mounts_are_not_watched() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        for m in ["work", "token"] {
            fs::create_dir(d.join(m)).unwrap();
        }
        let mut keep = Keep::new([d.join("work"), d.join("token"), d.join("store")]);
        keep.readonly.insert(relative(&d.join("token")));
        let watched = keep.watch(&d.join("store"));
        assert_eq!(watched.0.len(), 1, "{watched:?}");
        assert!(watched.check().is_ok());
        // The kubelet refreshing a token volume is not the step's doing.
        fs::write(d.join("token/..data"), "x").unwrap();
        assert!(watched.check().is_ok());
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(d.join("work/new"), "x").unwrap();
        assert!(matches!(
            watched.check(),
            Err(BuildError::Run(RunError::InPlaceWroteKept(p))) if p.ends_with("/work")
        ));
    }

    #[test]
    fn kept_paths_cover_what_is_below_them_and_know_their_ancestors() {
        let keep = Keep::new(
            [
                "/proc",
                "/etc/hosts",
                "/root/.cache/rbuild",
                "/builds/../workspace",
            ]
            .map(PathBuf::from),
        );
        assert_eq!(keep.covering("proc/self/status"), Some("proc"));
        assert_eq!(keep.covering("etc/hosts"), Some("etc/hosts"));
        assert_eq!(keep.covering("etc/hostsx"), None);
        assert_eq!(keep.covering("etc"), None);
        assert_eq!(keep.covering("workspace/src"), Some("workspace"));
        assert!(keep.ancestors.contains("etc"));
        assert!(keep.ancestors.contains("root"));
        assert!(keep.ancestors.contains("root/.cache"));
        assert!(!keep.ancestors.contains("root/.cache/rbuild"));
    }

    #[test]
    fn paths_outside_the_kept_ones_are_named_even_before_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let d = fs::canonicalize(dir.path()).unwrap();
        fs::create_dir(d.join("vol")).unwrap();
        let keep = Keep::new([d.join("vol")]);
        let given = vec![
            ("the context".to_string(), d.join("vol/ctx")),
            ("--metadata-file".to_string(), d.join("vol/new/md.json")),
            ("--iidfile".to_string(), d.join("elsewhere/id")),
        ];
        let out = outside_kept(&keep, &given);
        assert_eq!(out, [("--iidfile".to_string(), d.join("elsewhere/id"))]);
    }

    #[test]
    fn the_lock_is_one_threads_at_a_time_and_reentrant() {
        let lock = std::sync::Arc::new(RootLock::default());
        lock.acquire();
        lock.acquire();
        let other = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                lock.acquire();
                lock.release_if_held();
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!other.is_finished(), "the other thread waits for the root");
        lock.release_if_held();
        other.join().unwrap();
    }
}

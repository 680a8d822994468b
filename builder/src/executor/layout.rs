//! How a RUN step's mounts are laid out where no mount can be made (`chroot` and `in-place`
//! isolation): every `--mount` becomes something in the step's root filesystem before the
//! command, taken away after it. Shared by [`super::chroot`] (called in the new root after
//! `chroot(2)`) and [`super::in_place`] (called on the container's own root, which is the
//! step's).
//!
//! - `type=tmpfs`: an empty directory (mode 1777);
//! - `type=secret`: a file written before the command (mode, owner as asked) and removed after
//!   it, and/or the variable;
//! - a bound file (a heredoc script, a file of the context): copied in;
//! - a bound directory (a cache mount's directory, the context's subtree laid out in the
//!   scratch directory): renamed in before the command and back after it (a symlink left in its
//!   place is not taken back);
//! - `/etc/hosts` and `/etc/resolv.conf`: the build's, written over the image's files.
//!
//! Host files (secrets, /etc files, bound files) are read by [`plan`] before the root is
//! entered; [`lay_out`] and [`undo`] resolve the targets in the current root.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::spec::{SandboxMount, SandboxNetwork, SandboxSpec, SecretFrom};
use super::sys::{self, io_fail, SysError, SysResult};

/// A file to write in the root before the command: its path, bytes, mode and owner.
pub(super) struct Planted {
    pub(super) target: PathBuf,
    pub(super) bytes: Vec<u8>,
    pub(super) mode: u32,
    pub(super) owner: Option<(u32, u32)>,
    /// Removed again after the command (secrets).
    pub(super) remove_after: bool,
    /// Left alone when the image has something other than a file there (an image's symlink at
    /// /etc/hosts or /etc/resolv.conf, as when binding).
    pub(super) only_over_files: bool,
}

/// A host directory (a cache mount's, or a bind source laid out in the scratch directory)
/// renamed to `target` in the root for the command, and back after it.
pub(super) struct Moved {
    /// Its parent on the host, open (reachable after `chroot`).
    pub(super) parent: std::os::fd::OwnedFd,
    pub(super) name: std::ffi::CString,
    pub(super) target: PathBuf,
}

/// One thing done in the root before the command, in the order of the mounts.
pub(super) enum Action {
    Plant(Planted),
    /// A `type=tmpfs` target: an empty directory.
    Empty(PathBuf),
    Move(Moved),
}

/// What the step's root gets, read on the host before `chroot` (or before the step, in place).
pub(super) struct Plan {
    pub(super) actions: Vec<Action>,
    pub(super) env: Vec<String>,
}

pub(super) fn refused(op: String, errno: i32) -> SysError {
    SysError {
        op,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

pub(super) fn read_host(p: &Path, what: &str) -> SysResult<Vec<u8>> {
    std::fs::read(p).map_err(io_fail(format!("reading {what} {}", p.display())))
}

/// Reads everything from the host the root will get.
pub(super) fn plan(spec: &SandboxSpec) -> SysResult<Plan> {
    if spec.network == SandboxNetwork::None {
        return Err(refused(
            format!(
                "RUN --network=none (a network namespace) with --isolation {}",
                spec.mode.as_str()
            ),
            libc::EPERM,
        ));
    }
    let mut actions = Vec::new();
    for (name, src) in &spec.etc_files {
        actions.push(Action::Plant(Planted {
            target: Path::new("/etc").join(name),
            bytes: read_host(src, "the build's")?,
            mode: 0o644,
            owner: Some((0, 0)),
            remove_after: false,
            only_over_files: true,
        }));
    }
    let mut env = spec.env.clone();
    for m in &spec.mounts {
        match m {
            SandboxMount::Bind { source, target, .. } => {
                let meta = std::fs::symlink_metadata(source)
                    .map_err(io_fail(format!("reading {}", source.display())))?;
                if meta.is_dir() {
                    actions.push(Action::Move(moved(source, target)?));
                    continue;
                }
                actions.push(Action::Plant(Planted {
                    target: PathBuf::from(target),
                    bytes: read_host(source, "bound file")?,
                    mode: meta.permissions().mode() & 0o7777,
                    owner: None,
                    remove_after: false,
                    only_over_files: false,
                }));
            }
            SandboxMount::Tmpfs { target, .. } => {
                actions.push(Action::Empty(PathBuf::from(target)))
            }
            SandboxMount::Secret {
                id,
                from,
                target,
                env: var,
                mode,
                uid,
                gid,
            } => {
                let value = match from {
                    Some(SecretFrom::File(p)) => {
                        Some(read_host(p, &format!("secret {id:?} from"))?)
                    }
                    Some(SecretFrom::Env(v)) => std::env::var_os(v).map(|v| v.as_bytes().to_vec()),
                    None => None,
                }
                .unwrap_or_default();
                if let Some(var) = var {
                    env.retain(|e| !e.starts_with(&format!("{var}=")));
                    env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
                }
                if let Some(target) = target {
                    actions.push(Action::Plant(Planted {
                        target: PathBuf::from(target),
                        bytes: value,
                        mode: *mode,
                        owner: Some((*uid, *gid)),
                        remove_after: true,
                        only_over_files: false,
                    }));
                }
            }
        }
    }
    Ok(Plan { actions, env })
}

/// Opens the parent of the host directory `source`, to rename it to `target` once in the root.
pub(super) fn moved(source: &Path, target: &str) -> SysResult<Moved> {
    let (Some(parent), Some(name)) = (source.parent(), source.file_name()) else {
        return Err(refused(
            format!("moving {} into the root", source.display()),
            libc::EINVAL,
        ));
    };
    let c = sys::cstring(parent.as_os_str().as_bytes(), "directory")?;
    // SAFETY: valid C string; the fd is owned below.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(SysError {
            op: format!("open {}", parent.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Moved {
        // SAFETY: open just returned this fd; nothing else owns it.
        parent: unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) },
        name: sys::cstring(name.as_bytes(), "directory name")?,
        target: PathBuf::from(target),
    })
}

/// `renameat(2)`.
pub(super) fn rename_at(
    from_dir: libc::c_int,
    from: &std::ffi::CStr,
    to_dir: libc::c_int,
    to: &std::ffi::CStr,
    op: impl FnOnce() -> String,
) -> SysResult<()> {
    // SAFETY: valid C strings and directory fds (or AT_FDCWD).
    if unsafe { libc::renameat(from_dir, from.as_ptr(), to_dir, to.as_ptr()) } != 0 {
        return Err(SysError {
            op: op(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Renames the host directory into the root at its target (the same filesystem in chroot mode:
/// both are in the store; in-place mode refuses to run when they are not, see
/// `solver::run::in_place`).
pub(super) fn move_in(m: &Moved) -> SysResult<()> {
    if let Some(parent) = m.target.parent() {
        mkdir_p(parent)?;
    }
    clear(&m.target)?;
    let to = sys::cstring(m.target.as_os_str().as_bytes(), "mount target")?;
    rename_at(
        std::os::fd::AsRawFd::as_raw_fd(&m.parent),
        &m.name,
        libc::AT_FDCWD,
        &to,
        || {
            format!(
                "moving a directory to {} (a mount of --isolation chroot or in-place)",
                m.target.display()
            )
        },
    )
}

/// Moves the directory back to the host after the command — only a real directory: a symlink
/// the command put there must never become a cache directory that a later step binds.
pub(super) fn move_back(m: &Moved) -> SysResult<()> {
    match std::fs::symlink_metadata(&m.target) {
        Ok(meta) if meta.is_dir() => {}
        // Gone or replaced: the cache starts again empty next time.
        _ => return Ok(()),
    }
    let from = sys::cstring(m.target.as_os_str().as_bytes(), "mount target")?;
    rename_at(
        libc::AT_FDCWD,
        &from,
        std::os::fd::AsRawFd::as_raw_fd(&m.parent),
        &m.name,
        || format!("moving {} back out of the root", m.target.display()),
    )
}

pub(super) fn mkdir_p(p: &Path) -> SysResult<()> {
    std::fs::create_dir_all(p).map_err(io_fail(format!("mkdir {}", p.display())))
}

/// Removes whatever is at `p` (the root is the step's own; the layer leaves these paths out).
pub(super) fn clear(p: &Path) -> SysResult<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).map_err(io_fail(format!("removing {}", p.display())))
        }
        Ok(_) => std::fs::remove_file(p).map_err(io_fail(format!("removing {}", p.display()))),
        Err(_) => Ok(()),
    }
}

pub(super) fn set_mode(p: &Path, mode: u32) -> SysResult<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(io_fail(format!("chmod {}", p.display())))
}

pub(super) fn plant(f: &Planted) -> SysResult<()> {
    let t = &f.target;
    if f.only_over_files {
        if let Ok(m) = std::fs::symlink_metadata(t) {
            if !m.is_file() {
                return Ok(());
            }
        }
    }
    if let Some(parent) = t.parent() {
        mkdir_p(parent)?;
    }
    clear(t)?;
    let op = || format!("writing {}", t.display());
    let mut file = std::fs::File::create(t).map_err(io_fail(op()))?;
    file.write_all(&f.bytes).map_err(io_fail(op()))?;
    file.set_permissions(std::fs::Permissions::from_mode(f.mode))
        .map_err(io_fail(op()))?;
    if let Some((uid, gid)) = f.owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid)).map_err(io_fail(op()))?;
    }
    Ok(())
}

/// Lays the plan out in the current root (before the command).
pub(super) fn lay_out(plan: &Plan) -> SysResult<()> {
    for a in &plan.actions {
        match a {
            Action::Plant(f) => plant(f)?,
            Action::Empty(d) => {
                clear(d)?;
                mkdir_p(d)?;
                set_mode(d, 0o1777)?;
            }
            Action::Move(m) => move_in(m)?,
        }
    }
    Ok(())
}

/// Whether [`undo`] has anything to do.
pub(super) fn needs_undo(plan: &Plan) -> bool {
    plan.actions.iter().any(|a| match a {
        Action::Plant(f) => f.remove_after,
        Action::Move(_) => true,
        Action::Empty(_) => false,
    })
}

/// After the command, in the same root: removes the secrets written for it and moves the
/// directories moved in back out, last first. Every action is tried; the first error is kept.
pub(super) fn undo(plan: &Plan) -> SysResult<()> {
    let mut result = Ok(());
    for a in plan.actions.iter().rev() {
        let done = match a {
            // Only a file: the command may have put something else there.
            Action::Plant(f) if f.remove_after => match std::fs::symlink_metadata(&f.target) {
                Ok(m) if m.is_file() => std::fs::remove_file(&f.target)
                    .map_err(io_fail(format!("removing {}", f.target.display()))),
                _ => Ok(()),
            },
            Action::Move(m) => move_back(m),
            _ => Ok(()),
        };
        result = result.and(done);
    }
    result
}

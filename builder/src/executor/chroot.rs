//! The `chroot` isolation mode, helper side: runs a RUN step with `chroot(2)` in the private
//! copy of the root filesystem the engine made (`SandboxSpec::merged`), for root inside a
//! container without `CAP_SYS_ADMIN` (no namespace, no mount).
//!
//! What the step sees (documented in `docs/isolation.md`):
//! - `/dev`: a directory of the copy, emptied, holding `null`, `zero`, `full`, `random`,
//!   `urandom` and `tty` made with `mknod` (Docker's default `CAP_MKNOD` allows it; a node the
//!   kernel refuses is left out), `shm/` (mode 1777) and the `fd`, `stdin`, `stdout`, `stderr`
//!   symlinks into `/proc/self/fd` (dangling: see `/proc`). No `pts`, no `ptmx`.
//! - `/proc` and `/sys`: empty directories (nothing can be mounted). Tools that read
//!   `/proc/self/...` or `/proc/cpuinfo` fail or fall back.
//! - `/etc/hosts` and `/etc/resolv.conf`: the build's, written into the copy (an image's
//!   symlink there is left alone), as the namespaces mode binds them.
//! - the host's network, hostname, PID and IPC namespaces: `--network=none` is refused by the
//!   engine. The command runs in a session of its own; what is left of its process group when
//!   it exits is killed (a daemon that starts its own session escapes this).
//! - mounts: `type=tmpfs` is an empty directory (mode 1777) of the copy; `type=secret` a file
//!   written before the command and removed after it (and/or the variable); a bound file (a
//!   heredoc script, a file of the context) is copied in; a bound directory (a cache mount's
//!   directory, the context's subtree laid out in the scratch directory) is renamed in before
//!   the command and back after it (a symlink left in its place is not taken back). All of them
//!   are paths the layer leaves out, as with real mounts; none is read-only. `type=ssh` and
//!   binds of a stage are refused by the engine before anything runs.
//!
//! Paths in the image are resolved inside the new root: everything is written after `chroot`,
//! so an image's symlink never leads out of it. Host files (secrets, /etc files, bound files)
//! are read before.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::pid1;
use super::spec::{SandboxMount, SandboxNetwork, SandboxSpec, SecretFrom, Status};
use super::sys::{self, io_fail, SysError, SysResult};

/// The device nodes made in `/dev`: name, major, minor (the kernel's fixed numbers).
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// A file to write in the root before the command: its path, bytes, mode and owner.
struct Planted {
    target: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    owner: Option<(u32, u32)>,
    /// Removed again after the command (secrets).
    remove_after: bool,
    /// Left alone when the image has something other than a file there (an image's symlink at
    /// /etc/hosts or /etc/resolv.conf, as when binding).
    only_over_files: bool,
}

/// A host directory (a cache mount's, or a bind source laid out in the scratch directory)
/// renamed to `target` in the root for the command, and back after it.
struct Moved {
    /// Its parent on the host, open (reachable after `chroot`).
    parent: std::os::fd::OwnedFd,
    name: std::ffi::CString,
    target: PathBuf,
}

/// One thing done in the root before the command, in the order of the mounts.
enum Action {
    Plant(Planted),
    /// A `type=tmpfs` target: an empty directory.
    Empty(PathBuf),
    Move(Moved),
}

/// What the step's root gets, read on the host before `chroot`.
struct Plan {
    actions: Vec<Action>,
    env: Vec<String>,
}

fn refused(op: String, errno: i32) -> SysError {
    SysError {
        op,
        source: std::io::Error::from_raw_os_error(errno),
    }
}

fn read_host(p: &Path, what: &str) -> SysResult<Vec<u8>> {
    std::fs::read(p).map_err(io_fail(format!("reading {what} {}", p.display())))
}

/// Reads everything from the host the root will get.
fn plan(spec: &SandboxSpec) -> SysResult<Plan> {
    if spec.network == SandboxNetwork::None {
        return Err(refused(
            "RUN --network=none (a network namespace) with --isolation chroot".into(),
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
fn moved(source: &Path, target: &str) -> SysResult<Moved> {
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
fn rename_at(
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

/// Renames the host directory into the root at its target (same filesystem: both are in the
/// store).
fn move_in(m: &Moved) -> SysResult<()> {
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
                "moving a directory to {} (--isolation chroot)",
                m.target.display()
            )
        },
    )
}

/// Moves the directory back to the host after the command — only a real directory: a symlink
/// the command put there must never become a cache directory that a later step binds.
fn move_back(m: &Moved) -> SysResult<()> {
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

fn enter(root: &Path) -> SysResult<()> {
    let c = sys::cstring(root.as_os_str().as_bytes(), "chroot path")?;
    // SAFETY: valid C string.
    if unsafe { libc::chroot(c.as_ptr()) } != 0 {
        return Err(SysError {
            op: format!("chroot {}", root.display()),
            source: std::io::Error::last_os_error(),
        });
    }
    sys::chdir(Path::new("/"))
}

fn mkdir_p(p: &Path) -> SysResult<()> {
    std::fs::create_dir_all(p).map_err(io_fail(format!("mkdir {}", p.display())))
}

/// Removes whatever is at `p` (the copy is private; the layer leaves these paths out).
fn clear(p: &Path) -> SysResult<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).map_err(io_fail(format!("removing {}", p.display())))
        }
        Ok(_) => std::fs::remove_file(p).map_err(io_fail(format!("removing {}", p.display()))),
        Err(_) => Ok(()),
    }
}

fn set_mode(p: &Path, mode: u32) -> SysResult<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(io_fail(format!("chmod {}", p.display())))
}

/// `/dev`, `/proc`, `/sys` as documented in the module doc.
fn make_dev() -> SysResult<()> {
    let dev = Path::new("/dev");
    clear(dev)?;
    mkdir_p(dev)?;
    set_mode(dev, 0o755)?;
    for (name, major, minor) in DEVICES {
        let p = dev.join(name);
        let c = sys::cstring(p.as_os_str().as_bytes(), "device path")?;
        // SAFETY: valid C string; a refusal (no CAP_MKNOD, devices cgroup) leaves the node out.
        unsafe {
            if libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            ) == 0
            {
                libc::chmod(c.as_ptr(), 0o666);
            }
        }
    }
    let shm = dev.join("shm");
    mkdir_p(&shm)?;
    set_mode(&shm, 0o1777)?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).map_err(io_fail(format!("symlink /dev/{link}")))?;
    }
    mkdir_p(Path::new("/proc"))?;
    mkdir_p(Path::new("/sys"))
}

fn plant(f: &Planted) -> SysResult<()> {
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

/// The child: into the root, lay it out, become the step's user, exec. Returns only on failure.
fn child(spec: &SandboxSpec, plan: &Plan) -> SysError {
    let run = || -> SysResult<pid1::Never> {
        // SAFETY: plain syscall; the child leads a process group the helper can kill whole.
        if unsafe { libc::setsid() } < 0 {
            return Err(SysError {
                op: "setsid".into(),
                source: std::io::Error::last_os_error(),
            });
        }
        sys::parent_death_signal(libc::SIGKILL)?;
        enter(&spec.merged)?;
        make_dev()?;
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
        let cwd = Path::new(&spec.cwd);
        mkdir_p(cwd)?;
        sys::chdir(cwd)?;
        super::limits::apply(&spec.ulimits)?;
        sys::set_identity(spec.uid, spec.gid, &spec.groups)?;
        sys::cloexec_from(3)?;
        pid1::exec(&spec.argv, &plan.env)
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// After the command, from a child that enters the root again: removes the secrets written
/// for it and moves the directories moved in back out.
fn restore(spec: &SandboxSpec, plan: &Plan) -> SysResult<()> {
    let needed = plan.actions.iter().any(|a| match a {
        Action::Plant(f) => f.remove_after,
        Action::Move(_) => true,
        Action::Empty(_) => false,
    });
    if !needed {
        return Ok(());
    }
    // SAFETY: the helper is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError {
            op: "fork to restore the root after the step".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        let mut result = enter(&spec.merged);
        // Never outside the root.
        let actions = if result.is_ok() {
            &plan.actions[..]
        } else {
            &[]
        };
        for a in actions.iter().rev() {
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
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                super::helper::report(&super::helper::fail(e));
                1
            }
        };
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    match super::helper::wait_for(pid, false)? {
        Status::Exited(0) => Ok(()),
        _ => Err(refused(
            "removing the step's secrets and moving its cache directories back".into(),
            libc::EIO,
        )),
    }
}

/// Runs the step in chroot mode; the status of the command.
pub(super) fn run(spec: &SandboxSpec) -> SysResult<Status> {
    let plan = plan(spec)?;
    // SAFETY: the helper is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError {
            op: "fork the step's process".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        let e = child(spec, &plan);
        super::helper::report(&super::helper::fail(e));
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(125) };
    }
    let status = super::helper::wait_for(pid, true);
    // What the command left running in its process group goes with it.
    // SAFETY: signals the process group the child leads.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    restore(spec, &plan)?;
    status
}

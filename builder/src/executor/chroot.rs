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
//!   heredoc script) is copied in. All of them are paths the layer leaves out, as with real
//!   mounts. Other mounts are refused by the engine before anything runs.
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

/// What the step's root gets, read on the host before `chroot`.
struct Plan {
    files: Vec<Planted>,
    /// `type=tmpfs` targets.
    empty_dirs: Vec<PathBuf>,
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
    let mut files = Vec::new();
    for (name, src) in &spec.etc_files {
        files.push(Planted {
            target: Path::new("/etc").join(name),
            bytes: read_host(src, "the build's")?,
            mode: 0o644,
            owner: Some((0, 0)),
            remove_after: false,
            only_over_files: true,
        });
    }
    let mut empty_dirs = Vec::new();
    let mut env = spec.env.clone();
    for m in &spec.mounts {
        match m {
            SandboxMount::Bind { source, target, .. } => {
                let meta = std::fs::metadata(source)
                    .map_err(io_fail(format!("reading {}", source.display())))?;
                if !meta.is_file() {
                    return Err(refused(
                        format!("RUN --mount=type=bind of a directory at {target} with --isolation chroot"),
                        libc::EPERM,
                    ));
                }
                files.push(Planted {
                    target: PathBuf::from(target),
                    bytes: read_host(source, "bound file")?,
                    mode: meta.permissions().mode() & 0o7777,
                    owner: None,
                    remove_after: false,
                    only_over_files: false,
                });
            }
            SandboxMount::Tmpfs { target, .. } => empty_dirs.push(PathBuf::from(target)),
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
                    files.push(Planted {
                        target: PathBuf::from(target),
                        bytes: value,
                        mode: *mode,
                        owner: Some((*uid, *gid)),
                        remove_after: true,
                        only_over_files: false,
                    });
                }
            }
        }
    }
    Ok(Plan {
        files,
        empty_dirs,
        env,
    })
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
        for f in &plan.files {
            plant(f)?;
        }
        for d in &plan.empty_dirs {
            clear(d)?;
            mkdir_p(d)?;
            set_mode(d, 0o1777)?;
        }
        let cwd = Path::new(&spec.cwd);
        mkdir_p(cwd)?;
        sys::chdir(cwd)?;
        sys::set_identity(spec.uid, spec.gid, &spec.groups)?;
        sys::cloexec_from(3)?;
        pid1::exec(&spec.argv, &plan.env)
    };
    match run() {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Removes the secrets written for the command, from a child that enters the root again.
fn remove_secrets(spec: &SandboxSpec, plan: &Plan) -> SysResult<()> {
    let secrets: Vec<&Planted> = plan.files.iter().filter(|f| f.remove_after).collect();
    if secrets.is_empty() {
        return Ok(());
    }
    // SAFETY: the helper is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError {
            op: "fork to remove the secrets".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        let ok = enter(&spec.merged).is_ok()
            && secrets.iter().all(|f| {
                // Only a file: the command may have put something else there.
                std::fs::symlink_metadata(&f.target).map_or(true, |m| {
                    !m.is_file() || std::fs::remove_file(&f.target).is_ok()
                })
            });
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    match super::helper::wait_for(pid, false)? {
        Status::Exited(0) => Ok(()),
        _ => Err(refused(
            "removing the secrets written for the step".into(),
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
    remove_secrets(spec, &plan)?;
    status
}

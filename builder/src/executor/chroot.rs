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

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::layout::{self, clear, mkdir_p, refused, set_mode, Plan};
use super::pid1;
use super::spec::{SandboxSpec, Status};
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
        layout::lay_out(plan)?;
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
    let needed = layout::needs_undo(plan);
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
        // Never outside the root.
        let result = enter(&spec.merged).and_then(|()| layout::undo(plan));
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
    let plan = layout::plan(spec)?;
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

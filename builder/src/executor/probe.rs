//! The isolation probe: `rbuild __isolation-probe DIR`, re-executed from `/proc/self/exe` like
//! the sandbox helper (a fresh single-threaded process, so it may fork and `unshare`), tries
//! what each mode of [`super::isolation`] needs in the scratch directory `DIR` of the store and
//! prints a [`ProbeReport`] as JSON on stdout.
//!
//! - namespaces: a forked child unshares the mount, PID, UTS and IPC namespaces and mounts an
//!   overlay of `DIR` (the store's filesystem must take an overlay upper directory; inside a
//!   user namespace with the `userxattr` option); the mount dies with the child's namespace.
//! - mounts: the same namespaces and a tmpfs, without overlayfs (rootless with a copied root).
//! - user namespace (a non-root user only): a forked child unshares one.
//! - chroot: the probe itself (last, since it changes its root) checks that it is uid 0, chowns
//!   a file, `chroot`s into `DIR` and drops to another user and group, as a RUN step would.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};

use super::isolation::ProbeReport;
use super::sys::{self, SysError};

/// The argument that makes `rbuild` act as the probe.
pub const PROBE_ARG: &str = "__isolation-probe";

/// Runs the probe in `dir` (an empty scratch directory of the store, removed by the caller).
pub fn probe(dir: &Path) -> ProbeReport {
    let failed = |what: String| ProbeReport::failed(&what);
    let out = Command::new("/proc/self/exe")
        .arg(PROBE_ARG)
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(out) => serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            failed(format!(
                "the isolation probe gave no answer ({e}; {})",
                out.status
            ))
        }),
        Err(e) => failed(format!(
            "starting the isolation probe (/proc/self/exe): {e}"
        )),
    }
}

fn describe(e: SysError) -> String {
    format!("{} was refused ({})", e.op, e.source)
}

/// Entry point of `rbuild __isolation-probe DIR`; returns the process exit code.
pub fn main() -> i32 {
    let Some(dir) = std::env::args_os().nth(2) else {
        return 2;
    };
    let dir = Path::new(&dir);
    let namespaces = in_child(|| overlay_in_namespaces(dir).map_err(describe));
    let mounts = in_child(|| tmpfs_in_namespaces(dir).map_err(describe));
    // A non-root user: rbuild's own child in its user namespace is uid 0 there.
    // SAFETY: plain syscall.
    let user_namespace = if unsafe { libc::geteuid() } != 0 {
        in_child(|| {
            sys::unshare(libc::CLONE_NEWUSER, "a user namespace").map_err(|e| {
                format!(
                    "creating a user namespace was refused ({}): {}",
                    e.source,
                    super::userns::host_unshare_hint()
                )
            })
        })
    } else {
        Ok(())
    };
    let chroot = try_chroot(dir);
    let report = ProbeReport {
        namespaces,
        chroot,
        mounts,
        user_namespace,
    };
    match serde_json::to_vec(&report) {
        Ok(json) => {
            let _ = std::io::stdout().write_all(&json);
            0
        }
        Err(_) => 1,
    }
}

/// Runs `attempt` in a forked child (whose namespaces die with it) and returns its answer.
fn in_child(attempt: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these fds; nothing else owns them.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the probe is single-threaded, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(r);
        let msg = attempt().err().unwrap_or_default();
        let mut w = std::fs::File::from(w);
        let _ = w.write_all(msg.as_bytes());
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    }
    drop(w);
    let mut msg = String::new();
    let _ = std::fs::File::from(r).read_to_string(&mut msg);
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if !libc::WIFEXITED(status) {
        return Err("the namespace probe did not finish".into());
    }
    if msg.is_empty() {
        Ok(())
    } else {
        Err(msg)
    }
}

fn overlay_in_namespaces(dir: &Path) -> Result<(), SysError> {
    sys::enter_sandbox_namespaces(false)?;
    let d = |n: &str| dir.join(n);
    for n in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(d(n)).map_err(sys::io_fail(format!("mkdir {}", d(n).display())))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={},{}",
        d("lower").display(),
        d("upper").display(),
        d("work").display(),
        sys::overlay_step_options()
    );
    sys::mount("overlay", &d("merged"), Some("overlay"), 0, Some(&data))?;
    sys::umount2(&d("merged"), libc::MNT_DETACH)
}

fn tmpfs_in_namespaces(dir: &Path) -> Result<(), SysError> {
    sys::enter_sandbox_namespaces(false)?;
    let target = dir.join("tmpfs");
    std::fs::create_dir_all(&target)
        .map_err(sys::io_fail(format!("mkdir {}", target.display())))?;
    sys::mount("tmpfs", &target, Some("tmpfs"), 0, None)?;
    sys::umount2(&target, libc::MNT_DETACH)
}

fn try_chroot(dir: &Path) -> Result<(), String> {
    // SAFETY: plain syscall.
    if unsafe { libc::geteuid() } != 0 {
        return Err("rbuild does not run as root (uid 0)".into());
    }
    let root = dir.join("root");
    std::fs::create_dir_all(&root).map_err(|e| format!("mkdir {}: {e}", root.display()))?;
    let file = root.join("owned");
    std::fs::write(&file, b"").map_err(|e| format!("create {}: {e}", file.display()))?;
    std::os::unix::fs::lchown(&file, Some(65534), Some(65534))
        .map_err(|e| format!("chown (CAP_CHOWN) was refused ({e})"))?;
    let c = sys::cstring(root.as_os_str().as_encoded_bytes(), "chroot path").map_err(describe)?;
    // SAFETY: valid C string; this process only prints its report afterwards.
    if unsafe { libc::chroot(c.as_ptr()) } != 0 {
        return Err(format!(
            "chroot (CAP_SYS_CHROOT) was refused ({})",
            std::io::Error::last_os_error()
        ));
    }
    sys::set_identity(65534, 65534, &[65534]).map_err(|e| {
        format!(
            "{} (CAP_SETUID/CAP_SETGID) was refused ({})",
            e.op, e.source
        )
    })
}

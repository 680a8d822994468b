//! The sandbox helper: `rbuild __sandbox`, re-executed from `/proc/self/exe` by the build engine
//! and dispatched at the very top of `main()` (no clap, no threads). Forking from the
//! multi-threaded engine is unsafe (another thread may hold the allocator lock), so the engine
//! spawns this fresh single-threaded process, which may then fork freely.
//!
//! The helper reads a [`SandboxSpec`] from stdin, unshares mount, PID, UTS and IPC (and, for
//! `--network=none`, network) namespaces, and forks the namespace's PID 1, which mounts the
//! overlay, pivots into it, mounts /proc, /dev, /sys and the step's mounts, drops to the
//! step's user and execs the command. The helper waits and reports a [`Status`] on fd 3.
//!
//! Lifetime: the helper dies with rbuild (`PR_SET_PDEATHSIG`); it then kills PID 1 (which takes
//! every process of the namespace down with it) and removes the step's scratch directory. PID 1
//! itself gets SIGKILL if the helper disappears. All sandbox mounts live in PID 1's own mount
//! namespace (nested in the helper's, which keeps the host's view for that clean-up) and vanish
//! with it. PID 1's work is in [`super::pid1`]. In `chroot` mode (`SandboxSpec::mode`) no
//! namespace is made: [`super::chroot`] runs the step instead.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};

use super::isolation::Mode;
use super::pid1;
use super::spec::{SandboxNetwork, SandboxSpec, Status};
use super::sys::{self, SysError, SysResult};

/// The fd the engine passes for status lines.
pub const STATUS_FD: libc::c_int = 3;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(super) fn report(status: &Status) {
    if let Ok(mut line) = serde_json::to_vec(status) {
        line.push(b'\n');
        // SAFETY: writes a valid buffer to the status fd; a closed fd just fails.
        unsafe {
            libc::write(STATUS_FD, line.as_ptr().cast(), line.len());
        }
    }
}

fn hint_for(op: &str, errno: i32) -> Option<String> {
    if errno != libc::EPERM && errno != libc::EACCES && errno != libc::EINVAL {
        return None;
    }
    if op.starts_with("unshare") {
        Some("creating namespaces needs CAP_SYS_ADMIN: run rbuild as root on the host, or give its container --privileged (or at least CAP_SYS_ADMIN with seccomp and AppArmor allowing unshare). rbuild never runs RUN commands outside a sandbox".into())
    } else if op.contains("(overlay)") {
        Some("mounting overlayfs was refused: rbuild needs root (or a kernel allowing overlay in its user namespace) and a store on a filesystem overlay accepts as upper (ext4, xfs, btrfs, tmpfs — not overlay or NFS); set --store to such a directory".into())
    } else if op.starts_with("mount") || op.starts_with("pivot_root") {
        Some("mounts were refused: run rbuild as root outside a restricted container (or give the container CAP_SYS_ADMIN and an AppArmor profile that allows mount)".into())
    } else {
        None
    }
}

pub(super) fn fail(e: SysError) -> Status {
    let errno = e.source.raw_os_error().unwrap_or(0);
    let hint = hint_for(&e.op, errno);
    Status::SetupFailed {
        op: e.op,
        errno,
        hint,
    }
}

/// Entry point of `rbuild __sandbox`; returns the process exit code.
pub fn main() -> i32 {
    // Die with rbuild; SIGTERM is handled (below) so we can clean up first.
    if let Err(e) = sys::parent_death_signal(libc::SIGTERM) {
        report(&fail(e));
        return 125;
    }
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: installs an async-signal-safe handler (one atomic store), without SA_RESTART
        // so that waitpid returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        report(&fail(SysError {
            op: "reading the sandbox spec from stdin".into(),
            source: e,
        }));
        return 125;
    }
    let spec: SandboxSpec = match serde_json::from_slice(&input) {
        Ok(s) => s,
        Err(e) => {
            report(&Status::SetupFailed {
                op: format!("parsing the sandbox spec: {e}"),
                errno: 0,
                hint: None,
            });
            return 125;
        }
    };
    // The parent may have died before PR_SET_PDEATHSIG took effect: then this process has been
    // reparented, and its parent is no longer the rbuild that started it (which may itself be
    // PID 1, as a container's entrypoint).
    if STOP.load(Ordering::SeqCst) || reparented() {
        let _ = std::fs::remove_dir_all(&spec.scratch);
        return 125;
    }
    match run(&spec) {
        Ok(status) => {
            if STOP.load(Ordering::SeqCst) {
                let _ = std::fs::remove_dir_all(&spec.scratch);
            }
            report(&status);
            0
        }
        Err(e) => {
            report(&fail(e));
            125
        }
    }
}

/// Whether the rbuild that started this helper is gone (it named itself in [`super::PARENT_ENV`];
/// without that, a parent of PID 1 is taken as reparented).
fn reparented() -> bool {
    let parent = std::os::unix::process::parent_id();
    match std::env::var(super::PARENT_ENV)
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(started_by) => parent != started_by,
        None => parent == 1,
    }
}

fn run(spec: &SandboxSpec) -> SysResult<Status> {
    // The command reads nothing: stdin is /dev/null, as in BuildKit.
    let devnull =
        std::fs::File::open("/dev/null").map_err(sys::io_fail("open /dev/null".into()))?;
    // SAFETY: dup2 onto fd 0 of a valid fd.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&devnull), 0) };
    if spec.mode == Mode::Chroot {
        return super::chroot::run(spec);
    }

    sys::enter_sandbox_namespaces(spec.network == SandboxNetwork::None)?;
    // SAFETY: this process is single-threaded (the helper never starts threads), so the child
    // may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(SysError {
            op: "fork the sandbox's PID 1".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    if pid == 0 {
        let e = child(spec);
        report(&fail(e));
        // SAFETY: leave the child without running the parent's destructors.
        unsafe { libc::_exit(125) };
    }
    wait_for(pid, false)
}

/// Waits for our child `pid` and returns how it ended; when rbuild goes away meanwhile, kills
/// it (with its whole process group when `group`: a chroot step leads its own).
pub(super) fn wait_for(pid: libc::pid_t, group: bool) -> SysResult<Status> {
    let mut killed = false;
    loop {
        if STOP.load(Ordering::SeqCst) && !killed {
            // SAFETY: signals our own child (or the process group it leads).
            unsafe { libc::kill(if group { -pid } else { pid }, libc::SIGKILL) };
            killed = true;
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            if libc::WIFEXITED(status) {
                return Ok(Status::Exited(libc::WEXITSTATUS(status)));
            }
            if libc::WIFSIGNALED(status) {
                return Ok(Status::Signaled(libc::WTERMSIG(status)));
            }
            continue;
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(SysError {
                op: "waitpid".into(),
                source: err,
            });
        }
    }
}

/// PID 1 of the sandbox: set up the root and exec the command. Returns only on failure.
fn child(spec: &SandboxSpec) -> SysError {
    match pid1::setup(spec) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_come_with_what_to_do() {
        assert!(
            hint_for("unshare(mount, PID, UTS and IPC namespaces)", libc::EPERM)
                .unwrap()
                .contains("CAP_SYS_ADMIN")
        );
        assert!(hint_for("mount overlay (overlay) on /x", libc::EINVAL)
            .unwrap()
            .contains("--store"));
        assert!(hint_for("mkdir /x", libc::ENOSPC).is_none());
    }
}

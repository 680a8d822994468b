//! The hand-over into a new user namespace: the parent ([`reexec`]) spawns `/proc/self/exe`
//! with the same arguments, waits until the child has unshared, writes its maps (with
//! `newuidmap`/`newgidmap`, or a single id), lets it go on, forwards signals and ends as it
//! ends; the child's half ([`enter_as_child`]) runs first thing in `main`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};

use super::{host_unshare_hint, MapPlan, UsernsError};

/// Set (to `READY_FD,GO_FD,PARENT_PID`) in the environment of the re-executed child.
pub const CHILD_ENV: &str = "_RBUILD_USERNS_CHILD";

/// Set in the child's environment (by the child, from what the parent sent on the second
/// pipe) when its namespace maps a single id: why (for the note).
pub const MAP_ENV: &str = "_RBUILD_USERNS_MAP";

/// The fds the child finds its two pipe ends at.
const READY_FD: RawFd = 3;
const GO_FD: RawFd = 4;

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Runs this rbuild command again in a new user namespace mapped as `plan` says, and returns
/// the exit code to end with (after the child ended; a child killed by a signal is re-raised).
pub fn reexec(plan: &MapPlan, uid: u32, gid: u32) -> Result<i32, UsernsError> {
    let (ready_r, ready_w) = pipe().map_err(UsernsError::Spawn)?;
    let (go_r, go_w) = pipe().map_err(UsernsError::Spawn)?;
    let (rw, gr) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(&args)
        .env(
            CHILD_ENV,
            format!("{READY_FD},{GO_FD},{}", std::process::id()),
        )
        .env_remove(MAP_ENV);
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that neither lands on the other's target.
            let a = libc::fcntl(rw, libc::F_DUPFD_CLOEXEC, 10);
            let b = libc::fcntl(gr, libc::F_DUPFD_CLOEXEC, 10);
            if a < 0 || b < 0 || libc::dup2(a, READY_FD) < 0 || libc::dup2(b, GO_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(UsernsError::Spawn)?;
    drop((ready_w, go_r));
    let pid = child.id();
    let mut said = Vec::new();
    let _ = std::fs::File::from(ready_r).read_to_end(&mut said);
    let fail = |child: &mut std::process::Child, e: UsernsError| {
        let _ = child.kill();
        let _ = child.wait();
        Err(e)
    };
    match said.as_slice() {
        b"ok" => {}
        [b'E', errno @ ..] => {
            let errno = std::str::from_utf8(errno)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(libc::EPERM);
            let _ = child.wait();
            return Err(UsernsError::Unshare {
                source: std::io::Error::from_raw_os_error(errno),
                hint: host_unshare_hint(),
            });
        }
        _ => {
            let _ = child.wait();
            return Err(UsernsError::ChildGone);
        }
    }
    let single_why = match write_maps(plan, pid, uid, gid) {
        Ok(why) => why,
        Err(e) => return fail(&mut child, e),
    };
    CHILD.store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);
    for sig in FORWARDED {
        // SAFETY: installs an async-signal-safe handler (kill), with SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let mut go = std::fs::File::from(go_w);
    let message = format!("g{}", single_why.unwrap_or_default());
    if go.write_all(message.as_bytes()).is_err() {
        return fail(&mut child, UsernsError::ChildGone);
    }
    drop(go);
    let status = child.wait().map_err(UsernsError::Spawn)?;
    Ok(exit_code_of(status))
}

/// The exit code for a child's status: its code, or (killed) the same signal for us.
fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return code;
    }
    let sig = status.signal().unwrap_or(libc::SIGKILL);
    // SAFETY: restores the default action and raises the signal on ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    128 + sig
}

/// Writes the child's maps as `plan` says; returns why the map is a single id, when it is.
/// When `newuidmap` itself fails (nothing is mapped yet: not set-uid in this container, a
/// range it does not accept), a single-id map instead, saying why.
fn write_maps(plan: &MapPlan, pid: u32, uid: u32, gid: u32) -> Result<Option<String>, UsernsError> {
    match plan {
        MapPlan::Subordinate {
            newuidmap,
            newgidmap,
            uids,
            gids,
        } => {
            if let Err(e) = run_tool(newuidmap, pid, uid, uids) {
                write_single(pid, uid, gid)?;
                return Ok(Some(e.to_string()));
            }
            run_tool(newgidmap, pid, gid, gids)?;
            Ok(None)
        }
        MapPlan::Single { why } => {
            write_single(pid, uid, gid)?;
            Ok(Some(why.clone()))
        }
    }
}

/// 0 → `uid`/`gid` only, which an unprivileged parent may write for its child.
fn write_single(pid: u32, uid: u32, gid: u32) -> Result<(), UsernsError> {
    let write = |name: &str, text: String| {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, text).map_err(|source| UsernsError::Write { path, source })
    };
    // An unprivileged process may write a gid_map only once setgroups is denied.
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))
}

fn run_tool(tool: &Path, pid: u32, own: u32, ranges: &[(u32, u32)]) -> Result<(), UsernsError> {
    let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    let mut inside: u64 = 1;
    for (start, count) in ranges {
        args.extend([inside.to_string(), start.to_string(), count.to_string()]);
        inside += u64::from(*count);
    }
    let out = Command::new(tool)
        .args(&args)
        .output()
        .map_err(|e| UsernsError::Tool {
            tool: tool.display().to_string(),
            args: args.join(" "),
            status: e.to_string(),
            stderr: String::new(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(UsernsError::Tool {
        tool: tool.display().to_string(),
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        },
    })
}

/// The child's half, first thing in `main` when [`CHILD_ENV`] is set: unshare the user
/// namespace, tell the parent, wait until it has mapped us. Returns the exit code to end with
/// when that failed (the parent says why).
pub fn enter_as_child(value: &std::ffi::OsStr) -> Result<(), i32> {
    let value = value.to_string_lossy();
    let mut parts = value.split(',').map(|p| p.parse::<i32>().ok());
    let (Some(Some(ready)), Some(Some(go)), Some(Some(parent))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(125);
    };
    // SAFETY: the fds were put there for us by the parent (see `reexec`); we own them now.
    let (ready, go) = unsafe { (OwnedFd::from_raw_fd(ready), OwnedFd::from_raw_fd(go)) };
    // SAFETY: plain syscall; this process is still single-threaded.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    let mut ready = std::fs::File::from(ready);
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let _ = ready.write_all(format!("E{errno}").as_bytes());
        return Err(125);
    }
    if ready.write_all(b"ok").is_err() {
        return Err(125);
    }
    drop(ready);
    let mut answer = Vec::new();
    let _ = std::fs::File::from(go).read_to_end(&mut answer);
    let Some(single_why) = answer.strip_prefix(b"g") else {
        return Err(125);
    };
    if !single_why.is_empty() {
        // Still single-threaded: the environment may change.
        std::env::set_var(MAP_ENV, String::from_utf8_lossy(single_why).as_ref());
    }
    // Die with the parent (whose signals are forwarded to us while it lives).
    // SAFETY: plain syscalls.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            return Err(125);
        }
    }
    Ok(())
}

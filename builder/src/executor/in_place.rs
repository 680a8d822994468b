//! The `in-place` isolation mode, executor side: the command runs on the root filesystem rbuild
//! itself runs on — the container's, which the engine has just replaced with the stage's
//! (`solver::run::in_place`) — as a plain child of rbuild: no namespace, no `chroot`, the
//! container's own `/proc`, `/sys`, `/dev`, hostname and network.
//!
//! Why no helper process here, unlike the other modes: the helper is rbuild started again from
//! `/proc/self/exe`, and rbuild is dynamically linked. Once the root holds the image's files,
//! the program loader and C library rbuild was started with are gone or another version (a
//! busybox image has none), so nothing of rbuild's can be started again. The running process
//! keeps its mapped libraries; the step's process is forked from it and only makes system
//! calls (`setsid`, the ids, the parent-death signal) before `execve` of the image's program.
//!
//! Mounts are laid out in the root as in `chroot` mode ([`super::layout`]) by rbuild itself
//! before the command, and taken back after it.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};

use super::layout;
use super::spec::SandboxSpec;
use super::sys::SysError;
use super::{pid1, stream_output, ExecError, Stream};

fn setup(e: SysError) -> ExecError {
    let hint = (e.source.raw_os_error() == Some(libc::EXDEV)).then(|| {
        "with --isolation in-place, cache mounts and bound directories are moved into the root: keep the store (--store, RBUILD_STORE) on the container's root filesystem, not on a volume".to_string()
    });
    ExecError::Setup {
        op: e.op,
        cause: e.source,
        hint,
    }
}

/// Runs the step's command on the current root, streaming its output to `on_line`; `Ok` when it
/// exited with 0. The mounts are laid out before and taken back after, also when it failed.
pub fn run(spec: &SandboxSpec, mut on_line: impl FnMut(Stream, &str)) -> Result<(), ExecError> {
    // `/etc/hosts` and `/etc/resolv.conf` are the container's mount points here: their bytes
    // are replaced for the step and put back after it, never the files (a mount point cannot
    // be removed, and the container needs them afterwards).
    let mut without_etc = spec.clone();
    let etc = std::mem::take(&mut without_etc.etc_files);
    let plan = layout::plan(&without_etc).map_err(setup)?;
    let mut swapped = Vec::new();
    for (name, source) in &etc {
        match swap_in(&Path::new("/etc").join(name), source) {
            Ok(Some(s)) => swapped.push(s),
            Ok(None) => {}
            Err(e) => {
                // The swap's error is the one to report; putting back is tried regardless.
                let _ = put_back(&swapped);
                return Err(setup(e));
            }
        }
    }
    let laid = layout::lay_out(&plan).map_err(setup);
    let outcome = match laid {
        Ok(()) => run_command(spec, &plan.env, &mut on_line),
        Err(e) => Err(e),
    };
    let undone = layout::undo(&plan).map_err(setup);
    let restored = put_back(&swapped).map_err(setup);
    let outcome = outcome?;
    undone?;
    restored?;
    outcome
}

/// A file of `/etc` whose bytes the step sees replaced: its path and what to put back (`None`:
/// it did not exist, so it is removed).
struct Swapped {
    target: std::path::PathBuf,
    before: Option<Vec<u8>>,
}

/// Writes the build's `source` over the bytes of `target` (a symlink there, the image's, is
/// left alone, as in the other modes).
fn swap_in(target: &Path, source: &Path) -> Result<Option<Swapped>, SysError> {
    let fail = |op: String| move |e| SysError { op, source: e };
    let bytes = std::fs::read(source).map_err(fail(format!("reading {}", source.display())))?;
    let before = match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_file() => {
            Some(std::fs::read(target).map_err(fail(format!("reading {}", target.display())))?)
        }
        Ok(_) => return Ok(None),
        Err(_) => None,
    };
    write_over(target, &bytes).map_err(fail(format!("writing {}", target.display())))?;
    Ok(Some(Swapped {
        target: target.to_path_buf(),
        before,
    }))
}

/// Truncates and writes `target` in place (the same inode: a bind-mounted file stays one).
fn write_over(target: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(target)?;
    f.write_all(bytes)
}

/// Puts back what [`swap_in`] replaced; every file is tried, the first error kept.
fn put_back(swapped: &[Swapped]) -> Result<(), SysError> {
    let mut result = Ok(());
    for s in swapped.iter().rev() {
        let done = match &s.before {
            Some(b) => write_over(&s.target, b),
            None => std::fs::remove_file(&s.target),
        };
        if let Err(e) = done {
            result = result.and(Err(SysError {
                op: format!("putting back {}", s.target.display()),
                source: e,
            }));
        }
    }
    result
}

/// Splits `K=V` strings for [`Command::envs`] (a string without `=` is a name with no value).
fn env_pairs(env: &[String]) -> impl Iterator<Item = (&str, &str)> {
    env.iter()
        .map(|e| e.split_once('=').unwrap_or((e.as_str(), "")))
}

fn run_command(
    spec: &SandboxSpec,
    env: &[String],
    on_line: &mut impl FnMut(Stream, &str),
) -> Result<Result<(), ExecError>, ExecError> {
    let Some(first) = spec.argv.first() else {
        return Ok(Err(ExecError::Failed {
            code: 127,
            tail: vec!["exec: the command is empty".into()],
        }));
    };
    let cwd = Path::new(&spec.cwd);
    std::fs::create_dir_all(cwd).map_err(|e| {
        setup(SysError {
            op: format!("mkdir {}", cwd.display()),
            source: e,
        })
    })?;
    let prog = pid1::lookup(first, env);
    let mut cmd = Command::new(&prog);
    cmd.arg0(first)
        .args(&spec.argv[1..])
        .env_clear()
        .envs(env_pairs(env))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (uid, gid, groups) = (spec.uid, spec.gid, spec.groups.clone());
    let rlimits = super::limits::as_rlimits(&spec.ulimits);
    // SAFETY: only async-signal-safe system calls run in the forked child before exec.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            // Its own session and process group, which rbuild kills whole after the command.
            check(libc::setsid())?;
            // `--ulimit`, before the ids: raising a hard limit needs root's CAP_SYS_RESOURCE.
            for (resource, limit) in &rlimits {
                check(libc::setrlimit(*resource, limit))?;
            }
            check(libc::setgroups(groups.len(), groups.as_ptr()))?;
            check(libc::setgid(gid))?;
            check(libc::setuid(uid))?;
            // After the ids: changing them clears the parent-death signal.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0))?;
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        // The command could not start: like a failing command, as in the other modes.
        Err(e) => {
            return Ok(Err(ExecError::Failed {
                code: 127,
                tail: vec![format!("exec {first:?} ({}): {e}", prog.display())],
            }))
        }
    };
    let tail = stream_output(&mut child, on_line);
    let status = child.wait().map_err(ExecError::Pipe);
    // What the command left running in its process group goes with it, and is reaped when it
    // was re-parented to rbuild (PID 1 of its container).
    let pgid = child.id() as libc::pid_t;
    // SAFETY: plain syscalls on the process group the child led.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
        while libc::waitpid(-pgid, std::ptr::null_mut(), libc::WNOHANG) > 0 {}
    }
    let status = status?;
    Ok(match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(ExecError::Failed { code, tail }),
        (None, Some(signal)) => Err(ExecError::Killed { signal, tail }),
        (None, None) => Err(ExecError::NoStatus(status.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_strings_split_at_the_first_equals_sign() {
        let env = vec!["A=1".to_string(), "B=x=y".into(), "C".into(), "D=".into()];
        let pairs: Vec<_> = env_pairs(&env).collect();
        assert_eq!(pairs, [("A", "1"), ("B", "x=y"), ("C", ""), ("D", "")]);
    }
}

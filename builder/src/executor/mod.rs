//! The RUN sandbox.
//!
//! [`run`] (engine side, any thread) spawns `rbuild __sandbox` ([`helper`]) from
//! `/proc/self/exe`, hands it a [`SandboxSpec`] on stdin, streams the command's stdout and stderr
//! line by line to a callback, and reads the outcome from a status pipe (fd 3 of the helper).
//! The helper does the namespace and mount work in a fresh single-threaded process; see its
//! module doc for the lifetime rules (nothing survives rbuild: no process, no mount, no scratch
//! directory).
//!
//! [`isolation`] says which sandbox a build's RUN steps get (`--isolation`): the namespaces
//! one above, or [`chroot`] for root without `CAP_SYS_ADMIN`, or the namespaces one inside
//! rbuild's own user namespace for a non-root user ([`userns`]); [`probe`] finds out what this
//! host allows.
//!
//! Network: `--network=default` and `--network=host` both share the host's network namespace
//! (rbuild has no bridge or CNI set-up); `--network=none` gets a new namespace with only `lo`.

pub mod binfmt;
mod chroot;
pub mod helper;
mod in_place;
pub mod isolation;
mod layout;
pub mod limits;
mod pid1;
pub mod probe;
pub mod spec;
pub mod sys;
pub mod userns;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

pub use in_place::run as run_in_place;
pub use pid1::OLD_ROOT_IN_MERGED;
pub use spec::{SandboxDevice, SandboxMount, SandboxNetwork, SandboxSpec, SecretFrom, Status};

/// The argument that makes `rbuild` act as the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";

/// The environment variable that tells the helper which process started it (rbuild's pid), so
/// that it can tell "rbuild died and I was reparented" from "rbuild is PID 1" (the entrypoint
/// of a container: `docker run`, a Kubernetes pod), where its parent's pid is 1 all along.
pub(crate) const PARENT_ENV: &str = "RBUILD_SANDBOX_PARENT";

/// BuildKit's default `PATH` when the image sets none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output lines kept for the error of a failed step.
pub const TAIL_LINES: usize = 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Why a sandboxed command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("starting the sandbox helper ({path})", path = "/proc/self/exe")]
    Spawn(#[source] std::io::Error),
    #[error("talking to the sandbox helper")]
    Pipe(#[source] std::io::Error),
    #[error("setting up the RUN sandbox: {op} was refused ({cause}){}; nothing was run on the host", hint.as_ref().map(|h| format!(". {h}")).unwrap_or_default())]
    Setup {
        op: String,
        cause: std::io::Error,
        hint: Option<String>,
    },
    #[error("the command exited with code {code}{}", render_tail(tail))]
    Failed { code: i32, tail: Vec<String> },
    #[error("the command was killed by signal {signal}{}", render_tail(tail))]
    Killed { signal: i32, tail: Vec<String> },
    #[error("the sandbox helper ended without reporting a result ({0})")]
    NoStatus(String),
}

fn render_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut s = format!("; last {} lines of output:", tail.len());
    for l in tail {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}

fn pipe() -> Result<(OwnedFd, OwnedFd), std::io::Error> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these fds to us; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads `r` line by line (lossy UTF-8, at most 64 KiB a line) into `tx`.
fn pump(r: impl Read, stream: Stream, tx: crossbeam_channel::Sender<(Stream, String)>) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.by_ref().take(64 * 1024).read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                    buf.pop();
                }
                if tx
                    .send((stream, String::from_utf8_lossy(&buf).into_owned()))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Streams `child`'s stdout and stderr line by line to `on_line` until both close; returns
/// the last [`TAIL_LINES`] lines (for the error of a failed step).
fn stream_output(
    child: &mut std::process::Child,
    on_line: &mut impl FnMut(Stream, &str),
) -> Vec<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let out = child.stdout.take();
    let err = child.stderr.take();
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    std::thread::scope(|s| {
        if let Some(out) = out {
            let tx = tx.clone();
            s.spawn(move || pump(out, Stream::Stdout, tx));
        }
        if let Some(err) = err {
            let tx = tx.clone();
            s.spawn(move || pump(err, Stream::Stderr, tx));
        }
        drop(tx);
        for (stream, line) in rx {
            on_line(stream, &line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
    tail.into_iter().collect()
}

/// Runs `spec` in a new sandbox, calling `on_line` for every output line; returns `Ok` when the
/// command exited with 0.
pub fn run(spec: &SandboxSpec, mut on_line: impl FnMut(Stream, &str)) -> Result<(), ExecError> {
    let (status_r, status_w) = pipe().map_err(ExecError::Pipe)?;
    let status_w_raw = std::os::fd::AsRawFd::as_raw_fd(&status_w);
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(HELPER_ARG)
        .env(PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; it runs in the forked child before exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(status_w_raw, helper::STATUS_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(ExecError::Spawn)?;
    drop(status_w);
    let json = serde_json::to_vec(spec).expect("a sandbox spec serialises to JSON");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).map_err(ExecError::Pipe)?;
    }
    rbuild_layers::failpoint::hit("run.started");
    let tail = stream_output(&mut child, &mut on_line);
    let mut status_text = String::new();
    let mut status_file = std::fs::File::from(status_r);
    status_file
        .read_to_string(&mut status_text)
        .map_err(ExecError::Pipe)?;
    let exit = child.wait().map_err(ExecError::Pipe)?;
    let statuses: Vec<Status> = status_text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    for s in &statuses {
        if let Status::SetupFailed { op, errno, hint } = s {
            if op.starts_with("exec ") {
                // The command itself could not start: like a failing command.
                let mut tail = tail.clone();
                tail.push(format!(
                    "{op}: {}",
                    std::io::Error::from_raw_os_error(*errno)
                ));
                return Err(ExecError::Failed { code: 127, tail });
            }
            return Err(ExecError::Setup {
                op: op.clone(),
                cause: std::io::Error::from_raw_os_error(*errno),
                hint: hint.clone(),
            });
        }
    }
    match statuses.last() {
        Some(Status::Exited(0)) => Ok(()),
        Some(Status::Exited(code)) => Err(ExecError::Failed { code: *code, tail }),
        Some(Status::Signaled(signal)) => Err(ExecError::Killed {
            signal: *signal,
            tail,
        }),
        _ => Err(ExecError::NoStatus(exit.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_split_into_lines_without_line_endings_and_long_lines_are_cut() {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut input = b"one\r\ntwo\n\nno newline at end".to_vec();
        let long = vec![b'x'; 64 * 1024 + 10];
        input.push(b'\n');
        input.extend_from_slice(&long);
        pump(&input[..], Stream::Stderr, tx);
        let lines: Vec<String> = rx
            .iter()
            .map(|(s, l)| {
                assert_eq!(s, Stream::Stderr);
                l
            })
            .collect();
        assert_eq!(lines[..4], ["one", "two", "", "no newline at end"]);
        assert_eq!(lines[4].len(), 64 * 1024);
        assert_eq!(lines[5].len(), 10);
    }

    #[test]
    fn the_error_of_a_failed_command_shows_its_code_and_tail() {
        let e = ExecError::Failed {
            code: 3,
            tail: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "the command exited with code 3; last 2 lines of output:\n  a\n  b"
        );
        let e = ExecError::Setup {
            op: "unshare(mount namespace)".into(),
            cause: std::io::Error::from_raw_os_error(libc::EPERM),
            hint: Some("run as root".into()),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("setting up the RUN sandbox: unshare(mount namespace) was refused"),
            "{text}"
        );
        assert!(
            text.ends_with("run as root; nothing was run on the host"),
            "{text}"
        );
    }

    #[test]
    fn the_spec_survives_the_trip_to_the_helper() {
        let spec = SandboxSpec {
            mode: isolation::Mode::Chroot,
            copy_root: true,
            lowers: vec!["/s/1".into(), "/s/2".into()],
            empty_lower: "/t/empty".into(),
            upper: "/t/upper".into(),
            work: "/t/work".into(),
            merged: "/t/merged".into(),
            scratch: "/t".into(),
            argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 50],
            hostname: "h".into(),
            network: SandboxNetwork::None,
            etc_files: vec![("hosts".into(), "/t/hosts".into())],
            ulimits: vec!["nofile=10:20".parse().unwrap()],
            shm_size: Some(1 << 20),
            devices: vec![SandboxDevice {
                path: b"dev/sd\xffa".to_vec(),
                block: true,
                major: 8,
                minor: 0,
                mode: 0o660,
            }],
            mounts: vec![
                SandboxMount::Tmpfs {
                    target: "/tmp".into(),
                    size: Some(1 << 20),
                },
                SandboxMount::Secret {
                    id: "tok".into(),
                    from: Some(SecretFrom::Env("TOKEN".into())),
                    target: None,
                    env: Some("TOKEN".into()),
                    mode: 0o400,
                    uid: 0,
                    gid: 0,
                },
            ],
        };
        let json = serde_json::to_vec(&spec).unwrap();
        let back: SandboxSpec = serde_json::from_slice(&json).unwrap();
        assert_eq!(back, spec);
    }
}

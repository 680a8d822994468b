//! Running a credential helper: `docker-credential-<name> get` with the registry's key on
//! stdin and `{"Username","Secret"}` on stdout (the docker-credential-helpers protocol), under
//! bounds, because a helper is someone else's program: it may wait forever for a keychain
//! that never unlocks, or print without end.
//!
//! - Time: [`DEFAULT_TIMEOUT`], or `RBUILD_CREDENTIAL_HELPER_TIMEOUT` seconds. The helper runs
//!   in its own process group, and the whole group is killed when the time is up, so a
//!   helper's own children (a shell script's `sleep`) do not outlive it.
//! - Output: at most [`MAX_OUTPUT`] bytes are read; a helper that prints more is killed.
//! - Errors name the helper and the registry and say what to do, never what the helper wrote.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use wait_timeout::ChildExt;

use super::{Credential, Secret};
use crate::error::RegistryError;

/// The environment variable that sets the timeout, in seconds.
pub const TIMEOUT_ENV: &str = "RBUILD_CREDENTIAL_HELPER_TIMEOUT";
/// How long a helper may take by default: long enough for a keychain prompt answered by a
/// person, short enough that a stuck helper does not look like a stuck build.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A helper answers with a small JSON object; more output than this is refused.
pub const MAX_OUTPUT: u64 = 1 << 20;

/// Why running a helper failed (the caller adds the helper and the registry).
#[derive(Debug)]
enum Failure {
    Spawn(std::io::Error),
    Io(&'static str, std::io::Error),
    Timeout(Duration),
    TooMuchOutput,
}

/// Asks helper `name` for the credentials stored under `key` (the registry's config key) for
/// registry `host`. `Ok(None)` when the helper has none.
pub(super) fn get(name: &str, host: &str, key: &str) -> Result<Option<Credential>, RegistryError> {
    let timeout = timeout_from_env().map_err(|reason| helper_error(name, host, reason))?;
    let program = Command::new(format!("docker-credential-{name}"));
    get_with(program, name, host, key, timeout)
}

fn helper_error(name: &str, host: &str, reason: String) -> RegistryError {
    RegistryError::CredentialHelper {
        helper: name.to_string(),
        registry: host.to_string(),
        reason,
    }
}

/// [`get`] running `program`, within `timeout`.
fn get_with(
    program: Command,
    name: &str,
    host: &str,
    key: &str,
    timeout: Duration,
) -> Result<Option<Credential>, RegistryError> {
    let (status, stdout) = run(program, key, timeout).map_err(|f| {
        helper_error(
            name,
            host,
            match f {
                Failure::Spawn(e) => format!(
                    "cannot run it: {e}; install it on PATH or remove it from the Docker config"
                ),
                Failure::Io(op, e) => format!("{op} it: {e}"),
                Failure::Timeout(t) => format!(
                    "it did not answer within {} and was stopped; check that `echo {key} | \
                 docker-credential-{name} get` answers (it may be waiting for a locked keychain \
                 or a prompt), or set {TIMEOUT_ENV} to more seconds",
                    seconds(t)
                ),
                Failure::TooMuchOutput => format!(
                    "it printed more than {} KiB and was stopped; a helper answers with a small \
                 JSON object",
                    MAX_OUTPUT / 1024
                ),
            },
        )
    })?;
    parse(status, &stdout).map_err(|reason| helper_error(name, host, reason))
}

/// `12 s`, `1.5 s`.
fn seconds(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

/// The timeout: [`TIMEOUT_ENV`] if set (a positive number of seconds), else the default.
fn timeout_from_env() -> Result<Duration, String> {
    match std::env::var(TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_TIMEOUT),
        Ok(v) => parse_timeout(&v).ok_or_else(|| {
            format!("{TIMEOUT_ENV}={v:?} is not a positive number of seconds (e.g. 30 or 0.5)")
        }),
    }
}

fn parse_timeout(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
}

/// Runs `cmd get` with `input` on stdin; its stdout and exit status, within `timeout`.
fn run(mut cmd: Command, input: &str, timeout: Duration) -> Result<(ExitStatus, Vec<u8>), Failure> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Its own process group, so a timeout can kill the helper's children with it.
        .process_group(0)
        .spawn()
        .map_err(Failure::Spawn)?;
    let fail = |child: &mut Child, f: Failure| {
        kill_group(child);
        Err(f)
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A few bytes: they fit in the pipe, so this does not block on a helper that never
        // reads. Dropping `stdin` closes it, which is the end of the request. A helper that
        // exited without reading (broken pipe) has answered anyway, as Go's os/exec (Docker)
        // takes it.
        match stdin.write_all(input.as_bytes()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                return fail(&mut child, Failure::Io("writing to", e));
            }
            _ => {}
        }
    }
    let Some(stdout) = child.stdout.take() else {
        return fail(
            &mut child,
            Failure::Io("reading from", std::io::ErrorKind::BrokenPipe.into()),
        );
    };
    // Read on a thread so the wait for it can time out. If a grandchild that left the process
    // group keeps the pipe open, that thread waits on it alone; the build goes on.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = stdout.take(MAX_OUTPUT + 1).read_to_end(&mut out);
        let _ = tx.send(r.map(|_| out));
    });
    let out = match rx.recv_timeout(timeout) {
        Ok(Ok(out)) if out.len() as u64 > MAX_OUTPUT => {
            return fail(&mut child, Failure::TooMuchOutput)
        }
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return fail(&mut child, Failure::Io("reading from", e)),
        Err(_) => return fail(&mut child, Failure::Timeout(timeout)),
    };
    // Its stdout is closed; it still has to exit.
    let left = deadline.saturating_duration_since(Instant::now());
    match child.wait_timeout(left) {
        Ok(Some(status)) => Ok((status, out)),
        Ok(None) => fail(&mut child, Failure::Timeout(timeout)),
        Err(e) => fail(&mut child, Failure::Io("waiting for", e)),
    }
}

/// Kills the helper's process group and reaps the helper.
fn kill_group(child: &mut Child) {
    if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: signals the process group the helper leads (`process_group(0)`); the helper
        // is not reaped yet, so its id cannot have been reused.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The helper's answer as a credential; `Ok(None)` for "not found" or an empty secret.
fn parse(status: ExitStatus, stdout: &[u8]) -> Result<Option<Credential>, String> {
    if !status.success() {
        // "credentials not found in native keychain" is the protocol's not-found answer.
        if String::from_utf8_lossy(stdout).contains("not found") {
            return Ok(None);
        }
        return Err(format!("it exited with {status}"));
    }
    let v: Value =
        serde_json::from_slice(stdout).map_err(|_| "it did not print a JSON object".to_string())?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(if user == "<token>" {
        Credential::IdentityToken(Secret::new(secret))
    } else {
        Credential::Basic {
            username: user.to_string(),
            password: Secret::new(secret),
        }
    }))
}

#[cfg(test)]
#[path = "helper_tests.rs"]
mod tests;

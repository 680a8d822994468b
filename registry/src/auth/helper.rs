//! Running a credential helper: `docker-credential-<name> get` with the registry's key on
//! stdin and `{"Username","Secret"}` on stdout, and `docker-credential-<name> store` with
//! `{"ServerURL","Username","Secret"}` on stdin (`rbuild login` with a `credsStore` or a
//! `credHelpers` entry) — the docker-credential-helpers protocol — under bounds, because a
//! helper is someone else's program: it may wait forever for a keychain that never unlocks, or
//! print without end.
//!
//! - Time: [`DEFAULT_TIMEOUT`], or `RBUILD_CREDENTIAL_HELPER_TIMEOUT` seconds. The helper runs
//!   in its own process group, and the whole group is killed when the time is up, so a
//!   helper's own children (a shell script's `sleep`) do not outlive it.
//! - Output: at most [`MAX_OUTPUT`] bytes are read; a helper that prints more is killed.
//! - Errors name the helper and the registry and say what to do. When the helper fails, what it
//!   wrote to stderr (at most [`MAX_STDERR`] bytes, with the secret of a `store` masked) is
//!   shown: it is the helper's own explanation ("the keychain is locked"). Its stdout, which
//!   holds secrets, never is.

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
/// How much of a failing helper's stderr is shown.
pub const MAX_STDERR: u64 = 4 << 10;

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
    let out = run(program, "get", key, timeout).map_err(|f| failure(f, name, host, key))?;
    parse(out.status, &out.stdout)
        .map_err(|reason| helper_error(name, host, with_stderr(reason, &out.stderr, None)))
}

/// Stores `username`/`secret` for registry `host` under `key` with helper `name`
/// (`docker-credential-<name> store`).
pub(super) fn store(
    name: &str,
    host: &str,
    key: &str,
    username: &str,
    secret: &Secret,
) -> Result<(), RegistryError> {
    let timeout = timeout_from_env().map_err(|reason| helper_error(name, host, reason))?;
    let program = Command::new(format!("docker-credential-{name}"));
    store_with(program, name, host, key, username, secret, timeout)
}

/// [`store`] running `program`, within `timeout`.
fn store_with(
    program: Command,
    name: &str,
    host: &str,
    key: &str,
    username: &str,
    secret: &Secret,
    timeout: Duration,
) -> Result<(), RegistryError> {
    let input = serde_json::json!({
        "ServerURL": key,
        "Username": username,
        "Secret": secret.expose(),
    })
    .to_string();
    let out = run(program, "store", &input, timeout).map_err(|f| failure(f, name, host, key))?;
    if out.status.success() {
        return Ok(());
    }
    let reason = format!("`store` exited with {}", out.status);
    Err(helper_error(
        name,
        host,
        with_stderr(reason, &out.stderr, Some(secret)),
    ))
}

/// `reason`, followed by what the helper wrote to stderr (trimmed; `secret` masked).
fn with_stderr(reason: String, stderr: &[u8], secret: Option<&Secret>) -> String {
    let mut text = String::from_utf8_lossy(stderr).trim().to_string();
    if let Some(s) = secret.filter(|s| !s.expose().is_empty()) {
        text = text.replace(s.expose(), "****");
    }
    if text.is_empty() {
        reason
    } else {
        format!("{reason}; it said: {text}")
    }
}

/// The error for a helper that could not be run to the end.
fn failure(f: Failure, name: &str, host: &str, key: &str) -> RegistryError {
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

/// What a helper answered.
struct Output {
    status: ExitStatus,
    stdout: Vec<u8>,
    /// At most [`MAX_STDERR`] bytes.
    stderr: Vec<u8>,
}

/// Runs `cmd op` with `input` on stdin; its exit status and output, within `timeout`.
fn run(mut cmd: Command, op: &str, input: &str, timeout: Duration) -> Result<Output, Failure> {
    let deadline = Instant::now() + timeout;
    let mut child = cmd
        .arg(op)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
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
    // stderr is read on a thread of its own (bounded, then drained), so a helper that fills
    // it never blocks; what it holds is collected only once the helper has exited.
    let (err_tx, err_rx) = mpsc::channel();
    if let Some(stderr) = child.stderr.take() {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut stderr = stderr;
            let _ = (&mut stderr).take(MAX_STDERR).read_to_end(&mut kept);
            let _ = err_tx.send(kept);
            let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        });
    }
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
        Ok(Some(status)) => {
            // A helper's stderr is complete when it exits (a grandchild holding the pipe only
            // delays this by the short wait, then its part is not shown).
            let stderr = err_rx
                .recv_timeout(Duration::from_millis(200))
                .unwrap_or_default();
            Ok(Output {
                status,
                stdout: out,
                stderr,
            })
        }
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

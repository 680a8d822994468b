//! Helpers as shell scripts in a temp dir put on the child's PATH: one that hangs (with a
//! child of its own), one that prints without end, one that answers.

use std::path::Path;
use std::sync::mpsc;

use super::*;

const HOST: &str = "registry.example:5000";

/// Held while a script is written and while a helper runs: a process forked by another test
/// while a script is still open for writing would make its exec fail with ETXTBSY.
static SPAWN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|p| p.into_inner())
}

/// `docker-credential-NAME` with `body` in a fresh temp dir.
fn helper(name: &str, body: &str) -> tempfile::TempDir {
    let _guard = spawn_lock();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("docker-credential-{name}"));
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write helper");
    let mut perms = std::fs::metadata(&path).expect("stat").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
    dir
}

/// Runs helper `name` from `dir` (first on PATH) with `timeout`, on a thread: a call still
/// running after 20 s fails the test instead of hanging it.
fn get_from(
    dir: &Path,
    name: &str,
    timeout: Duration,
) -> Result<Option<Credential>, RegistryError> {
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let name = name.to_string();
    let _guard = spawn_lock();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(format!("docker-credential-{name}"));
        cmd.env("PATH", path);
        let _ = tx.send(get_with(cmd, &name, HOST, HOST, timeout));
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the credential helper call hung")
}

/// Whether process `pid` is gone (or a zombie waiting for a reaper that is not us).
fn gone(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    })
}

#[test]
fn a_credential_helper_that_hangs_is_killed_after_the_timeout() {
    // It starts to answer (with a secret), then waits forever in a child of its own.
    let dir = helper(
        "hang",
        "printf '{\"Username\":\"u\",\"Secret\":\"canary-5e1f\"'\nsleep 1000 &\necho $! > \"$(dirname \"$0\")/pid\"\nwait",
    );
    let started = Instant::now();
    let e = get_from(dir.path(), "hang", Duration::from_secs(1)).expect_err("timed out");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let text = format!("{e} {e:?}");
    for part in ["docker-credential-hang", HOST, "1 s", TIMEOUT_ENV] {
        assert!(text.contains(part), "{part} missing in: {text}");
    }
    assert!(!text.contains("canary-5e1f"), "{text}");
    let pid = std::fs::read_to_string(dir.path().join("pid")).expect("pid file");
    let pid = pid.trim();
    // SIGKILL is delivered asynchronously to the rest of the group.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gone(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(pid), "the helper's child {pid} outlived the timeout");
}

#[test]
fn a_credential_helper_that_prints_megabytes_is_stopped_at_the_cap() {
    // 64 MiB, then it exits: read whole, it would all be in memory.
    let dir = helper("flood", "head -c 67108864 /dev/zero\nexit 0");
    let e = get_from(dir.path(), "flood", Duration::from_secs(15)).expect_err("refused");
    let text = e.to_string();
    assert!(
        text.contains("docker-credential-flood") && text.contains("printed more than 1024 KiB"),
        "{text}"
    );
}

#[test]
fn a_credential_helper_answer_and_not_found_are_read() {
    let dir = helper(
        "ok",
        "read host\n[ \"$host\" = registry.example:5000 ] || { echo 'credentials not found in native keychain'; exit 1; }\nprintf '{\"Username\":\"me\",\"Secret\":\"s\"}'",
    );
    assert_eq!(
        get_from(dir.path(), "ok", Duration::from_secs(15)).expect("answer"),
        Some(Credential::Basic {
            username: "me".into(),
            password: Secret::new("s")
        })
    );
    let dir = helper(
        "none",
        "echo 'credentials not found in native keychain'\nexit 1",
    );
    assert_eq!(
        get_from(dir.path(), "none", Duration::from_secs(15)).expect("none"),
        None
    );
}

#[test]
fn the_timeout_is_a_positive_number_of_seconds() {
    assert_eq!(parse_timeout("1"), Some(Duration::from_secs(1)));
    assert_eq!(parse_timeout(" 0.5 "), Some(Duration::from_millis(500)));
    for bad in ["0", "-1", "soon", "1e30", "NaN", ""] {
        assert_eq!(parse_timeout(bad), None, "{bad}");
    }
}

/// Runs `docker-credential-NAME store` from `dir` the way [`get_from`] runs `get`.
fn store_from(dir: &Path, name: &str, secret: &str) -> Result<(), RegistryError> {
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let (name, secret) = (name.to_string(), Secret::new(secret));
    let _guard = spawn_lock();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut cmd = Command::new(format!("docker-credential-{name}"));
        cmd.env("PATH", path);
        let r = store_with(
            cmd,
            &name,
            HOST,
            HOST,
            "me",
            &secret,
            Duration::from_secs(15),
        );
        let _ = tx.send(r);
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the credential helper call hung")
}

#[test]
fn a_login_is_stored_with_the_helpers_store_command() {
    let dir = helper(
        "keep",
        "[ \"$1\" = store ] || exit 3\ncat > \"$(dirname \"$0\")/stored\"",
    );
    store_from(dir.path(), "keep", "s3cret").expect("stored");
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("stored")).expect("read"))
            .expect("json");
    assert_eq!(
        stored,
        serde_json::json!({"ServerURL": HOST, "Username": "me", "Secret": "s3cret"})
    );
}

/// Issue 15: helpers' stderr shown (their own explanation), the secret never.
#[test]
fn a_failing_helper_s_stderr_is_shown_with_the_secret_masked() {
    let dir = helper("locked", "echo 'the keychain is locked' >&2\nexit 1");
    let e = get_from(dir.path(), "locked", Duration::from_secs(15)).expect_err("fails");
    assert!(
        e.to_string().contains("it said: the keychain is locked"),
        "{e}"
    );

    let dir = helper(
        "echoes",
        "read line\necho \"cannot store $line\" >&2\necho 'stdout is never shown'\nexit 1",
    );
    let e = store_from(dir.path(), "echoes", "s3cret").expect_err("fails");
    let text = e.to_string();
    assert!(
        text.contains("`store` exited with") && text.contains("cannot store"),
        "{text}"
    );
    assert!(!text.contains("s3cret") && text.contains("****"), "{text}");
    assert!(!text.contains("stdout is never shown"), "{text}");
}

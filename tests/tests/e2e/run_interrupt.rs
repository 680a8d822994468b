//! Interrupting a build during RUN: Ctrl-C (SIGINT to the process group) and a killed rbuild
//! (SIGKILL to rbuild alone) both kill every process of the step and leave no mount and no
//! scratch directory behind — in the chroot isolation mode (no PID namespace) too.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rbuild_tests::build::build_cmd;
use rbuild_tests::scratch;

use super::run_sandbox::{setup, BASE};

/// Processes whose command line starts with `marker`.
pub(super) fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.starts_with(marker) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

pub(super) fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the build's process group if the test fails before doing so itself.
pub(super) struct KillOnDrop(pub(super) i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0)])
            .output();
    }
}

fn interrupt(signal_group: bool, chroot: bool) {
    let dir = scratch();
    if chroot && !rbuild_tests::have_tool("setpriv") {
        return;
    }
    // Unique sleep durations mark this test's processes (tests of one binary share its pid).
    let a = 100_000
        + (std::process::id() % 20_000) * 4
        + if signal_group { 0 } else { 2 }
        + if chroot { 100_000 } else { 0 };
    let df = format!(
        "FROM {BASE}\nRUN echo started; sleep {a} & sleep {}; echo never\n",
        a + 1
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let log = dir.path().join("log");
    let mut cmd = build_cmd(&store, &ctx);
    if chroot {
        cmd.args(["--isolation", "chroot"]);
        cmd = super::run_isolation::without_sys_admin(&cmd);
    }
    // The whole step is kept: its guard kills the group if the test ends early.
    let mut step = start_step(cmd, &log, a);
    let pid = step.pid;
    assert_eq!(processes_with(&format!("sleep {a}")).len(), 1);
    let target = if signal_group {
        vec!["-INT".to_string(), "--".into(), format!("-{pid}")]
    } else {
        vec!["-KILL".to_string(), pid.to_string()]
    };
    rbuild_tests::run(std::process::Command::new("kill").args(&target)).success();
    let status = step.child.wait().unwrap();
    assert!(!status.success());
    wait_until("every process of the step to die", || {
        processes_with(&format!("sleep {a}")).is_empty()
    });
    wait_until("the scratch directory to go", || {
        empty_dir(&store.join("tmp"))
    });
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(store.to_str().unwrap()),
        "no mount of the store is left: {mountinfo}"
    );
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        !log.lines()
            .any(|l| l.ends_with(" never") && !l.contains("RUN")),
        "the command did not go on: {log}"
    );
}

/// A running build whose RUN (`echo started; sleep A & sleep A+1`) has started: the child
/// leads its own process group (so a group signal reaches only it and what it spawned), its
/// stderr goes to `log`, and the guard kills the group if the test ends early.
pub(super) struct StartedStep {
    pub child: std::process::Child,
    pub pid: i32,
    _guard: KillOnDrop,
}

/// Spawns `cmd` as described at [`StartedStep`] and waits until its step printed `started` and
/// its `sleep {a + 1}` runs.
pub(super) fn start_step(mut cmd: std::process::Command, log: &Path, a: u32) -> StartedStep {
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let pid = i32::try_from(child.id()).unwrap();
    let guard = KillOnDrop(pid);
    wait_until("the step to start", || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .contains("started")
            && processes_with(&format!("sleep {}", a + 1)).len() == 1
    });
    StartedStep {
        child,
        pid,
        _guard: guard,
    }
}

pub(super) fn empty_dir(p: &Path) -> bool {
    std::fs::read_dir(p)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

#[test]
fn ctrl_c_kills_the_step_and_leaves_no_mount_or_scratch_dir() {
    interrupt(true, false);
}

#[test]
fn a_killed_rbuild_takes_the_step_down_and_leaves_no_mount_or_scratch_dir() {
    interrupt(false, false);
}

#[test]
fn in_chroot_mode_ctrl_c_kills_the_step_and_leaves_no_scratch_dir() {
    interrupt(true, true);
}

#[test]
fn in_chroot_mode_a_killed_rbuild_takes_the_step_down_and_leaves_no_scratch_dir() {
    interrupt(false, true);
}

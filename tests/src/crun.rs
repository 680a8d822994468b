//! Running an unpacked OCI bundle with `crun`, as the image's user would.
//!
//! Some hosts (this VM among them) mount cgroup v1 controllers plus a cgroup2 hierarchy that owns
//! a controller ("hybrid mode"), which crun refuses. We then retry inside a private mount
//! namespace (`unshare -m`) with `/sys/fs/cgroup/unified` unmounted, leaving the host untouched.

use std::path::Path;
use std::process::Command;

use crate::{run, Run};

/// `crun --root STATE run -b BUNDLE ID`; with `hide_cgroup2`, inside `unshare -m` after
/// unmounting the cgroup2 mount (see the module doc). Shared with tests and benchmarks of the
/// other crates.
pub fn crun_command(state: &Path, bundle: &Path, id: &str, hide_cgroup2: bool) -> Command {
    let mut cmd = if hide_cgroup2 {
        let mut c = Command::new("unshare");
        c.args([
            "-m",
            "sh",
            "-c",
            "umount /sys/fs/cgroup/unified && exec crun \"$@\"",
            "sh",
        ]);
        c
    } else {
        Command::new("crun")
    };
    cmd.arg("--root")
        .arg(state)
        .args(["run", "-b"])
        .arg(bundle)
        .arg(id);
    cmd
}

fn crun(state: &Path, bundle: &Path, id: &str, hide_cgroup2: bool) -> Run {
    run(&mut crun_command(state, bundle, id, hide_cgroup2))
}

/// Runs the bundle (made by `umoci unpack`) with its process args replaced by `args` and no
/// terminal. Returns `None` when crun is missing, or cannot run containers here and
/// `RBUILD_ALLOW_NO_CRUN=1` allows that.
pub fn run_bundle(bundle: &Path, args: &[&str]) -> Option<Run> {
    if !crate::have_tool("crun") {
        return None;
    }
    let config_path = bundle.join("config.json");
    let mut spec = crate::oci::read_json(&config_path);
    spec["process"]["args"] = serde_json::json!(args);
    spec["process"]["terminal"] = false.into();
    std::fs::write(&config_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let state = bundle.with_extension("crun-state");
    let id = format!(
        "rbuild-e2e-{}-{}",
        std::process::id(),
        bundle.file_name().unwrap().to_string_lossy()
    );
    let mut out = crun(&state, bundle, &id, false);
    if out.code != 0 && out.stderr.contains("hybrid mode") {
        out = crun(&state, bundle, &id, true);
    }
    if out.code != 0 {
        let _ = Command::new("crun")
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &id])
            .output();
        if std::env::var("RBUILD_ALLOW_NO_CRUN").as_deref() == Ok("1") {
            eprintln!(
                "!!! crun could not run the bundle: {}\n!!! allowed by RBUILD_ALLOW_NO_CRUN=1",
                out.stderr
            );
            return None;
        }
    }
    Some(out)
}

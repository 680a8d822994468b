//! Benchmark: the overhead of one `RUN true` — sandbox set-up (helper re-exec, namespaces,
//! overlay, pivot_root, /proc, /dev, /sys, /run), the command, and the diff of the upper
//! directory into (no) layer entries — side by side with `crun run` of the same busybox rootfs
//! in the same run; and the diff of an upper directory holding 10,000 changed files.
//!
//! Run with `cargo bench -p rbuild --bench run_overhead` as root; prints a markdown table.
//! The bench binary is its own sandbox helper (it dispatches `__sandbox` like `rbuild` does),
//! because the executor re-executes `/proc/self/exe`.
//!
//! On hosts whose cgroups are in "hybrid mode" crun refuses to run; it is then started inside
//! `unshare -m` with the cgroup2 mount hidden (as tests/src/crun.rs does), and that wrapper's
//! cost is measured separately and subtracted.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rbuild::executor::{self, SandboxNetwork, SandboxSpec};
use rbuild::solver::rootfs::RootFs;

const ROUNDS: usize = 30;
const DIFF_FILES: usize = 10_000;

fn busybox_rootfs(root: &Path) {
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let busybox = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v busybox"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    std::fs::copy(busybox.trim(), root.join("bin/busybox")).expect("busybox-static is installed");
    for a in ["sh", "true"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).unwrap();
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
}

/// One `RUN true` through the executor, including the diff (which finds nothing to emit).
fn run_true(lower: &Path, tmp: &Path) -> Duration {
    let start = Instant::now();
    let scratch = tempfile::tempdir_in(tmp).unwrap();
    for d in ["upper", "work", "merged", "empty"] {
        std::fs::create_dir(scratch.path().join(d)).unwrap();
    }
    let spec = SandboxSpec {
        mode: rbuild::executor::isolation::Mode::Namespaces,
        copy_root: false,
        lowers: vec![lower.to_path_buf()],
        empty_lower: scratch.path().join("empty"),
        upper: scratch.path().join("upper"),
        work: scratch.path().join("work"),
        merged: scratch.path().join("merged"),
        scratch: scratch.path().to_path_buf(),
        argv: vec!["/bin/sh".into(), "-c".into(), "true".into()],
        env: vec![format!("PATH={}", executor::DEFAULT_PATH)],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        groups: vec![0],
        hostname: "buildkitsandbox".into(),
        network: SandboxNetwork::Host,
        etc_files: vec![("resolv.conf".into(), "/etc/resolv.conf".into())],
        mounts: Vec::new(),
        devices: Vec::new(),
        ulimits: Vec::new(),
        shm_size: None,
    };
    executor::run(&spec, |_, _| {}).expect("RUN true succeeds");
    let exclude = [
        "proc",
        "dev",
        "sys",
        "run",
        "etc/resolv.conf",
        ".rbuild-oldroot",
    ];
    let entries = rbuild_layers::tar::entries_from_overlay_upper(
        &scratch.path().join("upper"),
        &exclude,
        rbuild_layers::whiteout::overlay::OverlayXattrs::Trusted,
    )
    .unwrap();
    let rootfs = RootFs {
        lowers: vec![lower.to_path_buf()],
    };
    let entries = rbuild::solver::run::prune_copied_up(entries, &rootfs, &exclude);
    assert!(entries.is_empty(), "RUN true changes nothing: {entries:?}");
    drop(scratch);
    start.elapsed()
}

fn crun_cmd(bundle: &Path, state: &Path, id: &str, hide_cgroup2: bool) -> Command {
    rbuild_tests::crun::crun_command(state, bundle, id, hide_cgroup2)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(executor::HELPER_ARG)) {
        std::process::exit(executor::helper::main());
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    rbuild::sandbox_init::private_mount_namespace();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    busybox_rootfs(&rootfs);
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();

    // crun: same rootfs, `sh -c true`, no terminal.
    let ok = Command::new("crun")
        .arg("spec")
        .current_dir(&bundle)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "crun is installed");
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "true"]);
    cfg["process"]["terminal"] = false.into();
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let state = dir.path().join("crun-state");
    let hybrid = !crun_cmd(&bundle, &state, "probe", false)
        .output()
        .unwrap()
        .status
        .success();

    // Warm up both, then alternate so that both see the same machine state.
    run_true(&rootfs, &tmp);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut wrapper = Vec::new();
    for i in 0..ROUNDS {
        ours.push(run_true(&rootfs, &tmp));
        let t = Instant::now();
        let out = crun_cmd(&bundle, &state, &format!("b{i}"), hybrid)
            .output()
            .unwrap();
        theirs.push(t.elapsed());
        assert!(
            out.status.success(),
            "crun: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if hybrid {
            let t = Instant::now();
            Command::new("unshare")
                .args([
                    "-m",
                    "sh",
                    "-c",
                    "umount /sys/fs/cgroup/unified && exec true",
                ])
                .status()
                .unwrap();
            wrapper.push(t.elapsed());
        }
    }
    let ours = median(ours);
    let crun_raw = median(theirs);
    let crun = if hybrid {
        crun_raw.saturating_sub(median(wrapper))
    } else {
        crun_raw
    };

    // The diff of 10,000 changed files in an upper directory (100 dirs x 100 files).
    let upper = dir.path().join("upper");
    for d in 0..DIFF_FILES / 100 {
        let p = upper.join(format!("d{d:03}"));
        std::fs::create_dir_all(&p).unwrap();
        for f in 0..100 {
            std::fs::write(p.join(format!("f{f:03}")), format!("{d}/{f}\n")).unwrap();
        }
    }
    let mut diffs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let entries = rbuild_layers::tar::entries_from_overlay_upper(
            &upper,
            &[],
            rbuild_layers::whiteout::overlay::OverlayXattrs::Trusted,
        )
        .unwrap();
        let entries = rbuild::solver::run::prune_copied_up(
            entries,
            &RootFs {
                lowers: vec![rootfs.clone()],
            },
            &[],
        );
        assert_eq!(entries.len(), DIFF_FILES + DIFF_FILES / 100);
        diffs.push(t.elapsed());
    }
    let diff = median(diffs);

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("| measurement (median of {ROUNDS}) | time |");
    println!("|---|---|");
    println!("| rbuild `RUN true` (sandbox + diff) | {} |", ms(ours));
    if hybrid {
        println!(
            "| `crun run` same rootfs (minus the hybrid-cgroup wrapper; raw {}) | {} |",
            ms(crun_raw),
            ms(crun)
        );
    } else {
        println!("| `crun run` same rootfs | {} |", ms(crun));
    }
    println!(
        "| ratio rbuild / crun | {:.2}x (target <= 1.5x) |",
        ours.as_secs_f64() / crun.as_secs_f64().max(1e-9)
    );
    println!(
        "| diff of an upper dir with {DIFF_FILES} changed files (median of 5) | {} (target < 300 ms) |",
        ms(diff)
    );
}

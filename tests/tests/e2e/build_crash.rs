//! Crash consistency (SECURITY.md "Crash consistency and faults"): a build killed with SIGKILL
//! in the middle of writing a layer leaves a store that `rbuild fsck` finds consistent, and the
//! next build succeeds without repair and gives the same image as a fresh store.

use std::io::Write;
use std::time::{Duration, Instant};

use rbuild_tests::build::{build, build_cmd, write_tree, EPOCH};
use rbuild_tests::{rbuild, run, scratch};

fn big_file(path: &std::path::Path, mib: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut buf = vec![0u8; 1 << 20];
    for _ in 0..mib {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        f.write_all(&buf).unwrap();
    }
    f.flush().unwrap();
}

fn tmp_has_files(store: &std::path::Path) -> bool {
    std::fs::read_dir(store.join("tmp"))
        .map(|d| d.flatten().any(|e| e.path().is_file()))
        .unwrap_or(false)
}

#[test]
fn sigkill_while_writing_a_layer_leaves_a_consistent_store() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY small.txt /small.txt\nCOPY big.bin /big.bin\n",
            ),
            ("small.txt", "s\n"),
        ],
    );
    big_file(&ctx.join("big.bin"), 96);
    let store = dir.path().join("store");

    let mut child = build_cmd(&store, &ctx)
        .args(["-q"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as a blob is being written (a temp file exists in the store).
    let start = Instant::now();
    while !tmp_has_files(&store) && start.elapsed() < Duration::from_secs(30) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(50));
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();

    let fsck = run(rbuild(&store).arg("fsck"));
    assert_eq!(
        fsck.code, 0,
        "fsck after SIGKILL: {}\n{}",
        fsck.stdout, fsck.stderr
    );
    assert!(
        fsck.stdout.contains("the store is consistent"),
        "{}",
        fsck.stdout
    );

    let after = build(&store, &ctx, &["-q"]).success();
    let fresh = build(&dir.path().join("fresh"), &ctx, &["-q"]).success();
    assert_eq!(after.stdout, fresh.stdout, "epoch {EPOCH}");
}

#[test]
fn fsck_removes_a_corrupt_blob_and_the_next_build_rebuilds_it() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
            ("a.txt", "a\n"),
        ],
    );
    let store = dir.path().join("store");
    let first = build(&store, &ctx, &["-q"]).success();
    // Corrupt every layer blob (gzip streams start with 1f 8b).
    let blobs = store.join("blobs/sha256");
    let mut corrupted = 0;
    for e in std::fs::read_dir(&blobs).unwrap().flatten() {
        let bytes = std::fs::read(e.path()).unwrap();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut perms = e.metadata().unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(e.path(), perms).unwrap();
            let mut b = bytes.clone();
            let last = b.len() - 1;
            b[last] ^= 0xff;
            std::fs::write(e.path(), b).unwrap();
            corrupted += 1;
        }
    }
    assert!(corrupted > 0);
    let fsck = run(rbuild(&store).arg("fsck"));
    assert_eq!(fsck.code, 1, "{}", fsck.stdout);
    assert!(
        fsck.stdout.contains("corrupt blob removed"),
        "{}",
        fsck.stdout
    );
    let again = build(&store, &ctx, &["-q"]).success();
    assert_eq!(first.stdout, again.stdout);
    let fsck = run(rbuild(&store).arg("fsck"));
    assert_eq!(fsck.code, 0, "{}", fsck.stdout);
}

/// Where a build is killed with SIGKILL.
#[derive(Clone, Copy)]
enum Kill {
    /// rbuild alone, while it compresses the layer of a RUN step that wrote a big file: the
    /// step's scratch dir (overlay upper and work) and the blob temp file are left.
    RbuildMidCompression,
    /// rbuild's whole process group (the sandbox helper too, which would otherwise clean up)
    /// while the RUN command runs: the step's scratch dir is left.
    GroupMidRun,
}

/// Names in `<store>/tmp`.
fn tmp_names(store: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(store.join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn tmp_bytes(store: &std::path::Path) -> u64 {
    let out = run(std::process::Command::new("du")
        .args(["-sb"])
        .arg(store.join("tmp")))
    .success();
    out.stdout
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// A busybox store plus a build of `RUN <big write>` killed as `kill` says; returns the store
/// and the context dir, after asserting what the kill left in `<store>/tmp`. `None` when
/// busybox is missing and tools are optional.
fn killed_build(dir: &std::path::Path, kill: Kill) -> Option<(std::path::PathBuf, Vec<String>)> {
    let df = match kill {
        Kill::RbuildMidCompression => {
            "FROM localhost/rbuild-run/busybox:1\nRUN dd if=/dev/urandom of=/big bs=1048576 count=96 2>/dev/null\n".to_string()
        }
        Kill::GroupMidRun => {
            // A unique duration marks this test's sleep.
            let n = 200_000 + std::process::id() % 50_000;
            format!("FROM localhost/rbuild-run/busybox:1\nRUN head -c 8388608 /dev/zero > /z; echo sta\"\"rted; sleep {n}\n")
        }
    };
    let (store, ctx) = super::run_sandbox::setup(dir, &df)?;
    assert!(tmp_names(&store).is_empty(), "{:?}", tmp_names(&store));
    let log = dir.join("log");
    let mut cmd = build_cmd(&store, &ctx);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id();
    let start = Instant::now();
    let ready = || match kill {
        Kill::RbuildMidCompression => std::fs::read_dir(store.join("tmp")).is_ok_and(|d| {
            d.flatten().any(|e| {
                e.file_name().to_string_lossy().starts_with("blob-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
        }),
        Kill::GroupMidRun => std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("started"),
    };
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before the kill: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "never got there"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let target = match kill {
        Kill::RbuildMidCompression => pid.to_string(),
        Kill::GroupMidRun => format!("-{pid}"),
    };
    run(std::process::Command::new("kill").args(["-KILL", "--", &target])).success();
    let _ = child.wait();
    // Let the helper (if alive) do what it does on rbuild's death.
    std::thread::sleep(Duration::from_millis(500));
    let left = tmp_names(&store);
    assert!(
        left.iter().any(|n| n.starts_with("run-")),
        "the kill left the step's scratch dir: {left:?}"
    );
    if matches!(kill, Kill::RbuildMidCompression) {
        assert!(
            left.iter().any(|n| n.starts_with("blob-")),
            "the kill left the blob temp file: {left:?}"
        );
    }
    assert!(
        tmp_bytes(&store) > 4 << 20,
        "{left:?}: {}",
        run(std::process::Command::new("ls")
            .arg("-laR")
            .arg(store.join("tmp")))
        .stdout
    );
    // The sandbox's mounts lived in namespaces that died with it.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mountinfo.contains(store.to_str().unwrap()),
        "no mount of the store is left: {mountinfo}"
    );
    Some((store, left))
}

#[test]
fn next_build_reclaims_what_a_build_killed_mid_compression_left() {
    let dir = scratch();
    let Some((store, _)) = killed_build(dir.path(), Kill::RbuildMidCompression) else {
        return;
    };
    let ctx = dir.path().join("other");
    write_tree(
        &ctx,
        &[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a\n")],
    );
    build(&store, &ctx, &["-q"]).success();
    assert_eq!(tmp_names(&store), Vec::<String>::new());
}

#[test]
fn fsck_reports_and_reclaims_what_a_build_killed_mid_compression_left() {
    let dir = scratch();
    let Some((store, left)) = killed_build(dir.path(), Kill::RbuildMidCompression) else {
        return;
    };
    let fsck = run(rbuild(&store).arg("fsck"));
    assert_eq!(fsck.code, 0, "{}\n{}", fsck.stdout, fsck.stderr);
    assert!(
        fsck.stdout
            .contains(&format!("removed {} stale temporary entries", left.len())),
        "{}",
        fsck.stdout
    );
    assert_eq!(tmp_names(&store), Vec::<String>::new());
}

#[test]
fn prune_reclaims_what_a_build_killed_mid_compression_left() {
    let dir = scratch();
    let Some((store, left)) = killed_build(dir.path(), Kill::RbuildMidCompression) else {
        return;
    };
    let prune = run(rbuild(&store).arg("prune")).success();
    assert!(
        prune
            .stdout
            .contains(&format!("{} temporary files", left.len())),
        "{}",
        prune.stdout
    );
    assert_eq!(tmp_names(&store), Vec::<String>::new());
}

#[test]
fn prune_all_reclaims_the_scratch_dir_of_a_build_killed_mid_run() {
    let dir = scratch();
    let Some((store, _)) = killed_build(dir.path(), Kill::GroupMidRun) else {
        return;
    };
    run(rbuild(&store).args(["prune", "--all"])).success();
    assert_eq!(tmp_names(&store), Vec::<String>::new());
}

/// The short version of `tests/crash/crash.sh` (6 failpoints and 2 `kill -9` time offsets of a
/// build that pulls, runs, compresses, pushes and exports its cache to the test registry):
/// after every kill, fsck is clean, nothing is left running or mounted, no dead owner's temp
/// data outlives the next build, and the rebuild pushes the clean build's digest.
#[test]
fn crash_script_short_run_kills_a_pushing_build_at_eight_points_and_every_rebuild_matches() {
    let Some(registry) = crate::registry_roundtrip::registry() else {
        return;
    };
    for tool in ["skopeo", "busybox", "findmnt", "setsid"] {
        if !rbuild_tests::have_tool(tool) {
            return;
        }
    }
    let out = run(std::process::Command::new("bash")
        .arg(rbuild_tests::repo_root().join("tests/crash/crash.sh"))
        .env("CRASH_POINTS", "short")
        .env("RBUILD", rbuild_tests::rbuild_bin())
        .env("RBUILD_TEST_REGISTRY", registry)
        .env_remove("RBUILD_FAILPOINT")
        .env_remove("CRASH_OFFSETS"));
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("8 cases, "), "{}", out.stdout);
    assert!(out.stdout.contains(" killed, 0 failed"), "{}", out.stdout);
}

/// A panic on a worker thread (here the layer compressor) is a bug, and it must end the build
/// with Rust's panic status and a plain "internal error" line, not leave the other threads
/// waiting for the dead one (which once hung `rbuild` forever). The next build in the same
/// store succeeds.
#[test]
fn a_panic_on_a_worker_thread_ends_the_build_instead_of_hanging_it() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\n"),
            ("a.txt", "a\n"),
        ],
    );
    let store = dir.path().join("store");
    let mut child = build_cmd(&store, &ctx)
        .args(["-q"])
        .env("RBUILD_FAILPOINT", "layer.mid_compress:panic")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("rbuild still running 60 s after a worker thread panicked");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(101), "{stderr}");
    assert!(
        stderr.contains("failpoint layer.mid_compress@1: panic"),
        "{stderr}"
    );
    assert!(stderr.contains("internal error"), "{stderr}");
    build(&store, &ctx, &["-q"]).success();
}

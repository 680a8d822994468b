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

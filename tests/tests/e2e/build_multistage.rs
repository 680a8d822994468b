//! Multi-stage builds: `COPY --from` by name and by index, stages that are not needed are not
//! built (so a broken one does not fail the build), and an intermediate stage as the target.
//! `rbuild check` shows the same plan without touching the store.

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{rbuild, run, scratch};

const DOCKERFILE: &str = "\
FROM scratch AS builder
WORKDIR /out
COPY a.txt ./x
COPY b.txt sub/
FROM oci-layout:///nonexistent/layout:tag AS unused
COPY nothing-here /nowhere
FROM scratch AS other
COPY b.txt /y
FROM scratch
COPY --from=builder /out/x /x
COPY --from=0 /out/sub/b.txt /from-index/
";

fn context(dir: &std::path::Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("a.txt", "AAA\n"),
            ("b.txt", "BBB\n"),
        ],
    );
    ctx
}

#[test]
fn copy_from_a_stage_by_name_and_index_skipping_unused_stages() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");
    let out = dir.path().join("rootfs");
    let dest = format!("type=local,dest={}", out.display());
    let r = build(&store, &ctx, &["--output", &dest]).success();
    assert_eq!(std::fs::read_to_string(out.join("x")).unwrap(), "AAA\n");
    assert_eq!(
        std::fs::read_to_string(out.join("from-index/b.txt")).unwrap(),
        "BBB\n"
    );
    assert!(
        !out.join("out").exists(),
        "only the copied file, not the builder's tree"
    );
    assert!(
        !out.join("y").exists(),
        "stage `other` is not part of the target"
    );
    assert!(
        !r.stderr.contains("[other ") && !r.stderr.contains("[unused "),
        "unused stages are not built: {}",
        r.stderr
    );
}

#[test]
fn an_intermediate_stage_can_be_the_target() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");
    let out = dir.path().join("rootfs");
    let dest = format!("type=local,dest={}", out.display());
    let r = build(&store, &ctx, &["--target", "builder", "--output", &dest]).success();
    assert_eq!(std::fs::read_to_string(out.join("out/x")).unwrap(), "AAA\n");
    assert_eq!(
        std::fs::read_to_string(out.join("out/sub/b.txt")).unwrap(),
        "BBB\n"
    );
    assert!(!out.join("x").exists());
    assert!(!r.stderr.contains("[stage-3 "), "{}", r.stderr);
}

#[test]
fn check_prints_stages_steps_and_order_without_touching_the_store() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");
    let r = run(rbuild(&store).arg("check").arg(&ctx)).success();
    let text = r.stdout;
    for needle in [
        "[0] builder (FROM scratch) - needed",
        "[1] unused (FROM oci-layout:///nonexistent/layout:tag) - not needed for the chosen targets: skipped",
        "[2] other (FROM scratch) - not needed for the chosen targets: skipped",
        "line 2    WORKDIR /out",
        "line 10   COPY --from=builder /out/x /x",
        "reads: builder",
        "Build order: builder -> stage-3",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let r = run(rbuild(&store)
        .arg("check")
        .arg(&ctx)
        .args(["--target", "other"]))
    .success();
    assert!(r.stdout.contains("Build order: other"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("[0] builder (FROM scratch) - not needed for the chosen targets: skipped"),
        "{}",
        r.stdout
    );
    assert!(!store.exists(), "check must not create or touch the store");
}

#[test]
fn copy_from_an_image_reads_its_filesystem() {
    let dir = scratch();
    let Some(layout) = rbuild_tests::image::busybox_layout(dir.path(), "base") else {
        return;
    };
    let ctx = dir.path().join("img-ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY --from=oci-layout://{}:base /etc/passwd /copied/passwd\n",
            layout.display()
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    rbuild_tests::build::build(
        &store,
        &ctx,
        &["--output", &format!("type=local,dest={}", out.display())],
    )
    .success();
    let copied = std::fs::read_to_string(out.join("copied/passwd")).unwrap();
    assert!(copied.contains("app:x:1000:1000"), "{copied}");
}

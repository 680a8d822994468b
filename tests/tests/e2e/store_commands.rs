//! `rbuild explain`, `rbuild du`, `rbuild prune` and `--no-cache-filter` against real builds.

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::progress::op_steps;
use rbuild_tests::{rbuild, run, scratch};

const DOCKERFILE: &str = "FROM scratch AS deps\nCOPY deps.txt /deps.txt\n\
                          FROM deps AS app\nCOPY app.txt /app.txt\n";

fn context(dir: &std::path::Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    write_tree(
        &ctx,
        &[
            ("deps.txt", "deps\n"),
            ("app.txt", "app\n"),
            ("Dockerfile", DOCKERFILE),
        ],
    );
    ctx
}

#[test]
fn explain_shows_the_last_build_and_why_steps_missed() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");

    let none = run(rbuild(&store).arg("explain").arg(&ctx)).success();
    assert!(none.stdout.contains("no build"), "{}", none.stdout);

    build(&store, &ctx, &[]).success();
    std::fs::write(ctx.join("app.txt"), "app v2\n").unwrap();
    build(&store, &ctx, &[]).success();
    let out = run(rbuild(&store).arg("explain").arg(&ctx))
        .success()
        .stdout;
    assert!(out.contains("app: 1/2 steps cached"), "{out}");
    assert!(
        out.contains("CACHED [deps 1] COPY deps.txt /deps.txt"),
        "{out}"
    );
    assert!(
        out.contains("built  [app 1] COPY app.txt /app.txt: app.txt changed"),
        "{out}"
    );
}

#[test]
fn no_cache_filter_rebuilds_only_that_stage() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");
    build(&store, &ctx, &[]).success();
    let r = build(&store, &ctx, &["--no-cache-filter", "app"]).success();
    let steps = op_steps(&r.stderr);
    assert_eq!(steps.len(), 2, "{}", r.stderr);
    assert!(steps[0].cached, "deps stage must hit: {}", r.stderr);
    assert!(!steps[1].cached, "app stage must rebuild: {}", r.stderr);
    assert_eq!(
        steps[1].miss.as_deref(),
        Some("--no-cache was given"),
        "{}",
        r.stderr
    );
}

#[test]
fn du_counts_and_prune_removes_only_what_nothing_keeps() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");
    build(&store, &ctx, &["--tag", "localhost/t/app:1"]).success();
    let du = run(rbuild(&store).arg("du")).success().stdout;
    assert!(du.contains("blobs"), "{du}");
    assert!(du.contains("total"), "{du}");

    // Everything is kept by the tag or by cache records: nothing to remove.
    let pruned = run(rbuild(&store).arg("prune")).success().stdout;
    assert!(pruned.contains("removed 0 blobs"), "{pruned}");

    // --all drops cache records; the tagged image still builds FROM the store afterwards.
    let pruned = run(rbuild(&store).args(["prune", "--all"]))
        .success()
        .stdout;
    assert!(pruned.contains("cache records"), "{pruned}");
    let ctx2 = dir.path().join("ctx2");
    write_tree(
        &ctx2,
        &[("Dockerfile", "FROM localhost/t/app:1\nLABEL x=y\n")],
    );
    build(&store, &ctx2, &[]).success();
    // After --all the cache is gone: the original build reruns its steps.
    let again = build(&store, &ctx, &[]).success();
    assert!(
        op_steps(&again.stderr).iter().all(|s| !s.cached),
        "{}",
        again.stderr
    );
}

#[test]
fn prune_refuses_a_bad_size() {
    let dir = scratch();
    let r = run(rbuild(&dir.path().join("store")).args(["prune", "--keep-storage", "ten"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn an_unknown_no_cache_filter_stage_is_a_usage_error() {
    let dir = scratch();
    let ctx = context(dir.path());
    let r = build(
        &dir.path().join("store"),
        &ctx,
        &["--no-cache-filter", "nosuch"],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("stages: deps, app"), "{}", r.stderr);
}

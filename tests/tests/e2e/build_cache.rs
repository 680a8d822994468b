//! Cache semantics beyond the dev/prod flow: lookups continue after a miss (BuildKit's rule).

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::progress::op_steps;
use rbuild_tests::scratch;

#[test]
fn a_rerun_step_that_writes_the_same_layer_leaves_later_steps_cached() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    let store = dir.path().join("store");
    write_tree(
        &ctx,
        &[
            ("a.txt", "a\n"),
            ("b.txt", "b\n"),
            (
                "Dockerfile",
                "FROM scratch\nCOPY a.txt /a.txt\nCOPY b.txt /b.txt\n",
            ),
        ],
    );
    let first = build(&store, &ctx, &[]).success();
    // Same files, different spelling: the first COPY misses and reruns, writes the identical
    // layer, and the second COPY's key (which names its parent by content) is unchanged.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY ./a.txt /a.txt\nCOPY b.txt /b.txt\n",
    )
    .unwrap();
    let second = build(&store, &ctx, &[]).success();
    let steps = op_steps(&second.stderr);
    assert_eq!(steps.len(), 2, "{}", second.stderr);
    assert!(!steps[0].cached, "{}", second.stderr);
    assert!(
        steps[0]
            .miss
            .as_deref()
            .is_some_and(|m| m.contains("instruction changed")),
        "{}",
        second.stderr
    );
    assert!(steps[1].cached, "later step must hit: {}", second.stderr);

    // --no-cache reruns everything and, being reproducible, writes the same digests.
    let third = build(&store, &ctx, &["--no-cache", "-q"]).success();
    let again = build(&store, &ctx, &["-q"]).success();
    assert_eq!(third.stdout, again.stdout);
    assert!(!first.stderr.is_empty());
}

/// BuildKit's content-based key for a `COPY --from`: the copied files decide, not the source
/// stage as a whole. A builder stage that reruns (another of its files changed) and makes the
/// same file leaves the final stage's `COPY --from` cached, with the image a fresh build makes.
#[test]
fn a_copy_from_a_rebuilt_stage_that_made_the_same_files_stays_cached() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    let store = dir.path().join("store");
    write_tree(
        &ctx,
        &[
            ("app.txt", "the binary\n"),
            ("notes.txt", "v1\n"),
            (
                "Dockerfile",
                "FROM scratch AS builder\nCOPY app.txt /out/app\nCOPY notes.txt /out/notes\n\
                 FROM scratch\nCOPY --from=builder /out/app /app\n",
            ),
        ],
    );
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let meta = dir.path().join("meta.json");
    let run = |store: &std::path::Path| {
        let mut cmd = rbuild_tests::build::build_cmd(store, &ctx);
        cmd.envs(epoch).arg("--metadata-file").arg(&meta);
        let r = rbuild_tests::run(&mut cmd).success();
        let digest = rbuild_tests::build::metadata(&meta)["containerimage.digest"].clone();
        (r, digest)
    };
    run(&store);
    std::fs::write(ctx.join("notes.txt"), "v2\n").unwrap();
    let (second, digest) = run(&store);
    let steps = op_steps(&second.stderr);
    let notes = steps
        .iter()
        .find(|s| s.name.contains("COPY notes.txt"))
        .expect("the builder's second COPY");
    assert!(!notes.cached, "the builder reruns: {}", second.stderr);
    let copy_from = steps
        .iter()
        .find(|s| s.name.contains("COPY --from=builder"))
        .expect("the COPY --from");
    assert!(copy_from.cached, "same file, same key: {}", second.stderr);
    // The image is the one an empty store builds from the same sources.
    let (_, fresh) = run(&dir.path().join("fresh-store"));
    assert!(digest.is_string(), "{digest}");
    assert_eq!(digest, fresh);
}

/// Without `SOURCE_DATE_EPOCH` and outside a git work tree the epoch is the clock. As in
/// BuildKit (Docker 20.10, checked side by side), a rebuild from the cache is then the same
/// image: a layer's history entry keeps the time the layer was made, the image's `created` is
/// its last layer's, and entries without a layer (ENV) carry that time too. A step that runs
/// again gets the new time.
#[test]
fn with_a_clock_epoch_a_cached_rebuild_is_the_same_image_as_in_buildkit() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    let store = dir.path().join("store");
    let out = dir.path().join("out");
    write_tree(
        &ctx,
        &[
            ("a.txt", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\nENV X=1\n"),
        ],
    );
    let build_at_clock = |extra: &[&str]| {
        let mut c = rbuild_tests::build::build_cmd(&store, &ctx);
        c.env_remove("SOURCE_DATE_EPOCH")
            .env("GIT_CEILING_DIRECTORIES", dir.path())
            .args([
                "--output",
                &format!("type=oci,dest={},tar=false", out.display()),
            ])
            .args(extra);
        rbuild_tests::run(&mut c).success()
    };
    let config = || {
        let index = rbuild_tests::oci::index(&out);
        let m = index["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let m = rbuild_tests::oci::blob_json(&out, &m);
        rbuild_tests::oci::blob_json(&out, m["config"]["digest"].as_str().unwrap())
    };
    build_at_clock(&[]);
    let first = config();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::remove_dir_all(&out).unwrap();
    build_at_clock(&[]);
    let second = config();
    assert_eq!(first, second, "a cached rebuild must be the same image");
    let history = second["history"].as_array().unwrap();
    let copy = history
        .iter()
        .find(|h| h["created_by"].as_str().unwrap().starts_with("COPY"))
        .unwrap();
    assert_eq!(
        second["created"], copy["created"],
        "created is the last layer's time"
    );
    assert_eq!(
        second["config"]["Labels"]["org.opencontainers.image.created"],
        copy["created"]
    );
    for h in history {
        assert_eq!(h["created"], copy["created"], "{h}");
    }
    // Rerun with --no-cache: a new time, so a new image.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    std::fs::remove_dir_all(&out).unwrap();
    build_at_clock(&["--no-cache"]);
    assert_ne!(config()["created"], first["created"]);
}

/// With a clock epoch, a fresh runner importing the cache builds the image the exporting build
/// made: the cache carries each layer's creation time (as BuildKit's `buildkit/createdat`), so
/// the layers' history times and the image's `created` come out the same.
#[test]
fn with_a_clock_epoch_a_fresh_runner_importing_the_cache_builds_the_same_image() {
    let dir = scratch();
    let d = dir.path();
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            ("a.txt", "a\n"),
            ("Dockerfile", "FROM scratch\nCOPY a.txt /a.txt\nENV X=1\n"),
        ],
    );
    let cache = d.join("cache");
    let build_at_clock = |store: &str, extra: &[&str]| {
        let out = d.join(format!("out-{store}"));
        let mut c = rbuild_tests::build::build_cmd(&d.join(store), &ctx);
        c.env_remove("SOURCE_DATE_EPOCH")
            .env("GIT_CEILING_DIRECTORIES", d)
            .args([
                "--output",
                &format!("type=oci,dest={},tar=false", out.display()),
            ])
            .args(extra);
        rbuild_tests::run(&mut c).success();
        rbuild_tests::oci::index(&out)["manifests"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let exported = build_at_clock(
        "first",
        &[
            "--cache-to",
            &format!("type=local,dest={}", cache.display()),
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let imported = build_at_clock(
        "fresh",
        &[
            "--cache-from",
            &format!("type=local,src={}", cache.display()),
        ],
    );
    assert_eq!(exported, imported, "the fresh runner's image differs");
}

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

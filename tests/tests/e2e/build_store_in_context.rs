//! A store (or output) inside the build context: rbuild leaves its own directories out of the
//! context, so `COPY .` does not copy the store, concurrent builds writing temporary files into
//! it do not break each other's context scan, and the image does not depend on where the store
//! is.

use std::path::Path;
use std::thread;

use rbuild_tests::build::{build_cmd, metadata, write_tree};
use rbuild_tests::{run, scratch, Run};

const DOCKERFILE: &str = "FROM scratch\nCOPY . /app\n";

fn files(ctx: &Path) {
    let mut tree = vec![("Dockerfile", DOCKERFILE.to_owned())];
    let many: Vec<(String, String)> = (0..200)
        .map(|i| (format!("src/f{i}.txt"), format!("file {i}\n")))
        .collect();
    tree.extend(many.iter().map(|(p, c)| (p.as_str(), c.clone())));
    let refs: Vec<(&str, &str)> = tree.iter().map(|(p, c)| (*p, c.as_str())).collect();
    write_tree(ctx, &refs);
}

fn build_into(store: &Path, ctx: &Path, out: &Path, meta: &Path) -> Run {
    run(build_cmd(store, ctx)
        .arg("--store")
        .arg(store)
        .arg("--no-cache")
        .arg("--output")
        .arg(format!("type=local,dest={}", out.display()))
        .arg("--metadata-file")
        .arg(meta))
}

fn digest(meta: &Path) -> String {
    metadata(meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn store_inside_the_context_is_not_copied_and_concurrent_builds_on_it_succeed() {
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    files(&ctx);

    // Reference: the store and output elsewhere.
    let elsewhere = dir.path().join("elsewhere");
    let r = build_into(
        &elsewhere.join("store"),
        &ctx,
        &elsewhere.join("out"),
        &elsewhere.join("meta.json"),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reference = digest(&elsewhere.join("meta.json"));

    // The store inside the context, two builds at once, twice.
    let store = ctx.join(".rbuild-store");
    for round in 0..2 {
        let builds: Vec<_> = (0..2)
            .map(|n| {
                let (store, ctx) = (store.clone(), ctx.clone());
                let out = ctx.parent().unwrap().join(format!("out-{round}-{n}"));
                let meta = dir.path().join(format!("meta-{round}-{n}.json"));
                thread::spawn(move || (build_into(&store, &ctx, &out, &meta), meta))
            })
            .collect();
        for b in builds {
            let (r, meta) = b.join().unwrap();
            assert_eq!(r.code, 0, "round {round}: {}", r.stderr);
            assert!(
                r.stderr.contains(".rbuild-store") && r.stderr.contains("left out of the context"),
                "a note names the store: {}",
                r.stderr
            );
            assert_eq!(
                digest(&meta),
                reference,
                "the image does not depend on where the store and outputs are"
            );
        }
    }
    let app = dir.path().join("out-1-0/app");
    assert!(app.join("src/f0.txt").is_file());
    assert!(!app.join(".rbuild-store").exists(), "the store was copied");

    // A metadata file written into the context by one build is not part of the next.
    let meta = ctx.join("meta.json");
    for n in 0..2 {
        let out = dir.path().join(format!("out-meta-{n}"));
        let r = build_into(&store, &ctx, &out, &meta);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_eq!(digest(&meta), reference, "build {n}");
    }
}

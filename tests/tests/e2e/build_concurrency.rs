//! Several rbuild processes sharing one store, and choosing the store with --store.

use std::process::{Command, Stdio};

use rbuild_tests::build::{build, build_cmd, metadata, write_tree};
use rbuild_tests::progress::op_steps;
use rbuild_tests::{rbuild_bin, run, scratch, Run};

fn context(dir: &std::path::Path) -> std::path::PathBuf {
    let ctx = dir.join("ctx");
    let mut files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("src/f{i:03}.txt"), format!("file {i}\n").repeat(50)))
        .collect();
    files.push((
        "Dockerfile".into(),
        "FROM scratch AS one\nCOPY src/ /src/\nWORKDIR /w\nCOPY src/f001.txt /w/\nFROM scratch\nCOPY --from=one /src /copied\nCOPY src/f002.txt /\n".into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    write_tree(&ctx, &refs);
    ctx
}

#[test]
fn two_builds_into_one_store_at_once_both_succeed_identically() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("store");
    let metas: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("m{i}.json")))
        .collect();
    let children: Vec<_> = metas
        .iter()
        .map(|m| {
            build_cmd(&store, &ctx)
                .arg("--metadata-file")
                .arg(m)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let r = Run::from_output(c.wait_with_output().unwrap());
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let d: Vec<_> = metas
        .iter()
        .map(|m| metadata(m)["containerimage.digest"].clone())
        .collect();
    assert!(d[0].is_string());
    assert_eq!(d[0], d[1]);

    let third = build(&store, &ctx, &[]).success();
    let steps = op_steps(&third.stderr);
    assert_eq!(steps.len(), 5, "{steps:?}");
    assert!(steps.iter().all(|s| s.cached), "{steps:?}");
}

#[test]
fn store_flag_works_without_the_environment_variable() {
    let dir = scratch();
    let ctx = context(dir.path());
    let store = dir.path().join("chosen-store");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let r = run(Command::new(rbuild_bin())
        .arg("build")
        .arg(&ctx)
        .arg("--store")
        .arg(&store)
        .args(["-q"])
        .env_remove("RBUILD_STORE")
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("SOURCE_DATE_EPOCH", "0"))
    .success();
    assert!(r.stdout.trim().starts_with("sha256:"), "{}", r.stdout);
    let blobs = std::fs::read_dir(store.join("blobs/sha256"))
        .unwrap()
        .count();
    assert!(blobs > 0, "layers went to --store");
    assert!(
        !home.join(".cache/rbuild").exists(),
        "the default store is not used when --store is given"
    );
}

//! The development/production pattern of testdata/examples/hello-web, end to end: one
//! invocation builds both targets into one OCI layout, read back by skopeo and umoci and run
//! with crun; then the cache: what a rebuild reuses, and what an edit invalidates.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, busybox_base, copy_example, metadata, HELLO_WEB_BASE};
use rbuild_tests::progress::op_steps;
use rbuild_tests::{have_tool, oci, run, scratch};

const BOTH: [&str; 4] = ["--target", "development", "--target", "production"];

fn setup(dir: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let store = dir.join("store");
    if !busybox_base(dir, &store, HELLO_WEB_BASE) {
        return None;
    }
    let ctx = dir.join("hello-web");
    copy_example("hello-web", &ctx);
    Some((store, ctx))
}

#[test]
fn one_run_builds_development_and_production_readable_by_skopeo_umoci_and_crun() {
    let dir = scratch();
    let Some((store, ctx)) = setup(dir.path()) else {
        return;
    };
    if !have_tool("skopeo") || !have_tool("umoci") {
        return;
    }
    let out = dir.path().join("out");
    let dest = format!("type=oci,dest={},tar=false", out.display());
    build(&store, &ctx, &[&BOTH[..], &["--output", &dest]].concat()).success();
    assert_eq!(oci::ref_names(&out), ["development", "production"]);

    for target in ["development", "production"] {
        let info = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:{target}", out.display())))
        .success();
        let info: serde_json::Value = serde_json::from_str(&info.stdout).unwrap();
        assert_eq!(
            info["Labels"]["org.example.flavour"], target,
            "skopeo sees the target's label"
        );
        assert_eq!(
            info["Digest"],
            oci::manifest_digest(&out, target).as_str(),
            "skopeo reads the manifest index.json names"
        );
    }

    let unpack = |target: &str| {
        let bundle = dir.path().join(format!("bundle-{target}"));
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{target}", out.display()))
            .arg(&bundle))
        .success();
        bundle
    };
    let dev = unpack("development");
    let dev_root = dev.join("rootfs");
    assert!(dev_root.join("etc/httpd.conf").is_file(), "runtime files");
    assert!(dev_root.join("srv").is_dir(), "WORKDIR /srv is created");
    assert!(
        !dev_root.join("srv/www").exists(),
        "development has no application files"
    );

    let prod = unpack("production");
    let www = prod.join("rootfs/srv/www");
    for f in ["index.html", "style.css"] {
        let p = www.join(f);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(ctx.join("www").join(f)).unwrap(),
            "{f} content"
        );
        let m = std::fs::symlink_metadata(&p).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000), "--chown=app:app on {f}");
        assert_eq!(
            m.mode() & 0o7777,
            std::fs::metadata(ctx.join("www").join(f)).unwrap().mode() & 0o7777,
            "COPY keeps the file's mode outside git"
        );
    }
    let m = std::fs::metadata(&www).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (1000, 1000),
        "--chown applies to the copied directory too"
    );

    let cfg = oci::read_config(&out, "production");
    assert_eq!(cfg["config"]["User"], "app");
    assert_eq!(cfg["config"]["WorkingDir"], "/srv");
    assert_eq!(oci::env_var(&cfg, "PORT").as_deref(), Some("8080"));
    let Some(ran) = rbuild_tests::crun::run_bundle(&prod, &["cat", "/srv/www/index.html"]) else {
        return;
    };
    assert_eq!(ran.code, 0, "crun: {}", ran.stderr);
    assert_eq!(
        ran.stdout.as_bytes(),
        std::fs::read(www.join("index.html")).unwrap()
    );
}

fn digests(meta: &Path) -> (String, String) {
    let m = metadata(meta);
    (
        m["development"]["containerimage.digest"]
            .as_str()
            .unwrap()
            .to_string(),
        m["production"]["containerimage.digest"]
            .as_str()
            .unwrap()
            .to_string(),
    )
}

#[test]
fn rebuilds_hit_the_cache_and_edits_invalidate_exactly_what_depends_on_them() {
    let dir = scratch();
    let Some((store, ctx)) = setup(dir.path()) else {
        return;
    };
    let meta = dir.path().join("meta.json");
    let meta_arg = meta.to_str().unwrap();
    let go = |extra: &[&str]| {
        let r = build(
            &store,
            &ctx,
            &[&BOTH[..], &["--metadata-file", meta_arg], extra].concat(),
        )
        .success();
        (op_steps(&r.stderr), digests(&meta))
    };

    let (first, d1) = go(&[]);
    assert_eq!(first.len(), 3, "WORKDIR, COPY config, COPY www: {first:?}");
    assert!(first.iter().all(|s| !s.cached), "{first:?}");

    // 1. The same build again: every step CACHED, the same images.
    let (second, d2) = go(&[]);
    assert!(second.iter().all(|s| s.cached), "{second:?}");
    assert_eq!(d1, d2, "an identical rebuild gives identical digests");

    // 2. An application file: only production's final COPY reruns.
    let index = ctx.join("www/index.html");
    let mut html = std::fs::read_to_string(&index).unwrap();
    html.push_str("<!-- edited -->\n");
    std::fs::write(&index, html).unwrap();
    let (third, d3) = go(&[]);
    let missed: Vec<_> = third.iter().filter(|s| !s.cached).collect();
    assert_eq!(missed.len(), 1, "{third:?}");
    assert!(missed[0].name.starts_with("[production "), "{missed:?}");
    assert!(
        missed[0].name.contains("COPY --chown=app:app www/"),
        "{missed:?}"
    );
    let why = missed[0].miss.as_deref().unwrap_or_default();
    assert!(why.contains("index.html changed"), "miss reason: {why:?}");
    assert_eq!(d3.0, d1.0, "development does not include www/");
    assert_ne!(d3.1, d1.1, "production does");

    // 3. The config file COPY'd early: that step and everything after it, in both targets.
    std::fs::write(ctx.join("config/httpd.conf"), "# edited\n").unwrap();
    let (fourth, d4) = go(&[]);
    let names: Vec<(&str, bool)> = fourth.iter().map(|s| (s.name.as_str(), s.cached)).collect();
    assert_eq!(fourth.len(), 3, "{names:?}");
    assert!(
        fourth[0].cached && fourth[0].name.contains("WORKDIR /srv"),
        "{names:?}"
    );
    assert!(
        !fourth[1].cached && fourth[1].name.contains("COPY config/httpd.conf"),
        "{names:?}"
    );
    assert!(
        fourth[1]
            .miss
            .as_deref()
            .unwrap_or_default()
            .contains("httpd.conf changed"),
        "{fourth:?}"
    );
    assert!(
        !fourth[2].cached,
        "production's COPY sits on the changed layer: {names:?}"
    );
    assert_ne!(d4.0, d3.0);
    assert_ne!(d4.1, d3.1);

    // 4. --no-cache rebuilds everything and, being reproducible, makes the same images.
    let (fifth, d5) = go(&["--no-cache"]);
    assert!(fifth.iter().all(|s| !s.cached && s.done), "{fifth:?}");
    assert_eq!(d5, d4, "--no-cache gives the same digests");
}

#[test]
fn a_fresh_store_and_a_warm_store_agree_when_only_source_date_epoch_changes() {
    // Layers carry the epoch as their mtimes, so the epoch is an input of every step:
    // a cached layer made under another SOURCE_DATE_EPOCH must not be reused as is.
    let dir = scratch();
    let Some((store, ctx)) = setup(dir.path()) else {
        return;
    };
    let meta = dir.path().join("meta.json");
    let meta_arg = meta.to_str().unwrap();
    let with_epoch_args = |store: &Path, epoch: &str, extra: &[&str]| {
        rbuild_tests::run(
            rbuild_tests::build::build_cmd(store, &ctx)
                .args(BOTH)
                .args(extra)
                .args(["--metadata-file", meta_arg])
                .env("SOURCE_DATE_EPOCH", epoch),
        )
        .success();
        digests(&meta)
    };
    let with_epoch = |store: &Path, epoch: &str| with_epoch_args(store, epoch, &[]);
    with_epoch(&store, "100");
    let warm = with_epoch(&store, "200000");
    let fresh_store = dir.path().join("fresh");
    busybox_base(&dir.path().join("b2"), &fresh_store, HELLO_WEB_BASE);
    let fresh = with_epoch(&fresh_store, "200000");
    let no_cache = with_epoch_args(&store, "200000", &["--no-cache"]);
    assert_eq!(
        no_cache, fresh,
        "--no-cache in the warm store matches the fresh store"
    );
    assert_eq!(
        warm, fresh,
        "the cache must not leak the previous epoch into layers"
    );
}

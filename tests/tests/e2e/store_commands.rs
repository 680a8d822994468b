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

/// Writes an archive (made by Python's tarfile, an independent writer) holding `devs/` with
/// the block device `devs/sda` (8:0) and the character device `devs/null` (1:3), both 0666 and
/// owned by `uid:gid`.
fn write_device_archive(path: &std::path::Path, uid: u32, gid: u32) {
    let make = "import tarfile,sys\n\
                t=tarfile.open(sys.argv[1],'w',format=tarfile.PAX_FORMAT)\n\
                d=tarfile.TarInfo('devs');d.type=tarfile.DIRTYPE;d.mode=0o755;t.addfile(d)\n\
                for n,k,ma,mi in (('devs/sda',tarfile.BLKTYPE,8,0),('devs/null',tarfile.CHRTYPE,1,3)):\n\
                \x20 i=tarfile.TarInfo(n);i.type=k;i.mode=0o666;i.uid=int(sys.argv[2]);i.gid=int(sys.argv[3])\n\
                \x20 i.devmajor=ma;i.devminor=mi;t.addfile(i)\n\
                t.close()\n";
    run(std::process::Command::new("python3")
        .args(["-c", make])
        .arg(path)
        .arg(uid.to_string())
        .arg(gid.to_string()))
    .success();
}

/// Every block or character device under `dir` except overlay whiteouts (0:0), as `ls` would
/// name them.
fn device_nodes_under(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let ft = md.file_type();
        if ft.is_dir() {
            out.extend(device_nodes_under(&e.path()));
        } else if (ft.is_block_device() || ft.is_char_device()) && md.rdev() != 0 {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn a_world_writable_block_device_in_an_image_is_no_device_node_in_the_store() {
    if !rbuild_tests::have_tool("python3") {
        return;
    }
    let dir = scratch();
    let df = "FROM localhost/rbuild-run/busybox:1\nADD dev.tar /\nRUN ls -ln /devs > /listing\n";
    let Some((store, ctx)) = super::run_sandbox::setup(dir.path(), df) else {
        return;
    };
    // The attack: the host's first disk, 0666, in a layer (here an ADDed archive).
    write_device_archive(&ctx.join("dev.tar"), 0, 0);
    build(&store, &ctx, &["-q"]).success();

    assert_eq!(device_nodes_under(&store), Vec::<String>::new());
    // The image still carries the devices, as the archive had them.
    let list = "import tarfile,sys,os\n\
                d=sys.argv[1]\n\
                for b in sorted(os.listdir(d)):\n\
                \x20 try:\n\
                \x20  t=tarfile.open(os.path.join(d,b),'r:*')\n\
                \x20  for m in t.getmembers():\n\
                \x20   if m.isdev(): print(m.name,m.type.decode(),oct(m.mode),m.devmajor,m.devminor)\n\
                \x20 except Exception: pass\n";
    let devs = run(std::process::Command::new("python3")
        .args(["-c", list])
        .arg(store.join("blobs/sha256")))
    .success()
    .stdout;
    assert!(devs.contains("devs/sda 4 0o666 8 0"), "{devs}");
    assert!(devs.contains("devs/null 3 0o666 1 3"), "{devs}");
}

/// Per layer of the image `reference` in the OCI layout `out` (bottom first): one line per
/// member, `name type mode major:minor`, and the text of `seen` if a layer has it.
fn layer_members(out: &std::path::Path, reference: &str) -> Vec<Vec<String>> {
    let m = rbuild_tests::oci::manifest(out, reference);
    let list = "import tarfile,sys\n\
                t=tarfile.open(sys.argv[1],'r:*')\n\
                for m in t.getmembers():\n\
                \x20 print(m.name,m.type.decode(),oct(m.mode),f'{m.devmajor}:{m.devminor}')\n\
                \x20 if m.name=='seen': print(t.extractfile(m).read().decode(),end='')\n";
    m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| {
            let blob = rbuild_tests::oci::blob_path(out, l["digest"].as_str().expect("digest"));
            run(std::process::Command::new("python3")
                .args(["-c", list])
                .arg(blob))
            .success()
            .stdout
            .lines()
            .map(str::to_string)
            .collect()
        })
        .collect()
}

#[test]
fn a_run_sees_the_images_device_nodes_and_its_layer_holds_only_what_it_changed() {
    if !rbuild_tests::have_tool("python3") {
        return;
    }
    let dir = scratch();
    let df = "FROM localhost/rbuild-run/busybox:1\nADD dev.tar /\n\
              RUN stat -c '%n %F %t:%T %a %u:%g' /devs/sda /devs/null > /seen\n\
              RUN true\n\
              RUN chmod 600 /devs/sda\n\
              RUN rm /devs/null\n";
    let Some((store, ctx)) = super::run_sandbox::setup(dir.path(), df) else {
        return;
    };
    write_device_archive(&ctx.join("dev.tar"), 7, 9);
    let out = dir.path().join("out");
    build(
        &store,
        &ctx,
        &[
            "-q",
            "--tag",
            "localhost/devices:final",
            "--output",
            &format!("type=oci,dest={},tar=false", out.display()),
        ],
    )
    .success();

    let layers = layer_members(&out, "final");
    let n = layers.len();
    assert!(n >= 4, "{layers:?}");
    let (seen, chmod, rm) = (&layers[n - 3], &layers[n - 2], &layers[n - 1]);
    // The RUN saw real nodes, with the layer's mode and owner; its layer holds only its file
    // and the mount points this root lacked (BuildKit's runc leaves /dev, /proc, /sys too).
    assert_eq!(
        seen,
        &[
            "dev 5 0o755 0:0",
            "proc 5 0o755 0:0",
            "seen 0 0o644 0:0",
            "/devs/sda block special file 8:0 666 7:9",
            "/devs/null character special file 1:3 666 7:9",
            "sys 5 0o755 0:0",
        ],
        "{layers:?}"
    );
    // Untouched devices add nothing, not even their copied-up directory: `RUN true` has an
    // empty diff, so no layer (as BuildKit).
    let config = rbuild_tests::oci::read_config(&out, "final");
    let history = config["history"].as_array().expect("history");
    let run_true = history
        .iter()
        .find(|h| {
            h["created_by"]
                .as_str()
                .is_some_and(|c| c.contains("-c true"))
        })
        .unwrap_or_else(|| panic!("no RUN true in {history:?}"));
    assert_eq!(run_true["empty_layer"], true, "{history:?}");
    // A chmod gives the device with its new mode (tar type 4: block), as BuildKit's diff.
    assert_eq!(
        chmod,
        &["devs 5 0o755 0:0", "devs/sda 4 0o600 8:0"],
        "{layers:?}"
    );
    // A removal gives a whiteout.
    assert_eq!(
        rm,
        &["devs 5 0o755 0:0", "devs/.wh.null 0 0o0 0:0"],
        "{layers:?}"
    );
    // And no device node was left anywhere in the store.
    assert_eq!(device_nodes_under(&store), Vec::<String>::new());
}

/// `RUN --mount=type=cache` directories are part of the store: `du` counts them, `prune` keeps
/// them, `prune --all` removes them (a later build starts with an empty cache again).
#[test]
fn cache_mounts_are_counted_by_du_and_removed_by_prune_all() {
    let dir = scratch();
    let store = dir.path().join("store");
    if !rbuild_tests::build::busybox_base(dir.path(), &store, "localhost/t/bb:1") {
        return;
    }
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[(
            "Dockerfile",
            "FROM localhost/t/bb:1\nARG N\n\
             RUN --mount=type=cache,id=pkgs,target=/c sh -c 'ls /c > /seen; echo $N > /c/run-$N'\n",
        )],
    );
    build(&store, &ctx, &["--build-arg", "N=1"]).success();
    let du = run(rbuild(&store).arg("du")).success().stdout;
    let line = du
        .lines()
        .find(|l| l.starts_with("cache mounts"))
        .unwrap_or_else(|| panic!("{du}"));
    assert_eq!(line.split_whitespace().nth(2), Some("1"), "{du}");
    let pruned = run(rbuild(&store).arg("prune")).success().stdout;
    assert!(pruned.contains(" 0 cache mounts"), "{pruned}");
    let pruned = run(rbuild(&store).args(["prune", "--all"]))
        .success()
        .stdout;
    assert!(pruned.contains(" 1 cache mounts"), "{pruned}");
    let out = dir.path().join("out");
    build(
        &store,
        &ctx,
        &[
            "--build-arg",
            "N=2",
            "--output",
            &format!("type=local,dest={}", out.display()),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(out.join("seen")).unwrap(),
        "",
        "an empty cache again"
    );
}

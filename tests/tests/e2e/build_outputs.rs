//! Outputs, read back by independent tools: an OCI layout directory, an OCI tarball (extracted
//! with tar), a docker-archive (skopeo), the flattened filesystem (whiteouts applied, not
//! present), and `--metadata-file` agreeing with the layout's index.

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, metadata, write_tree};
use rbuild_tests::{have_tool, oci, run, scratch};

/// An OCI layout made with umoci whose second layer deletes `/gone.txt` (a whiteout) and
/// whose third replaces `/dir`'s contents.
fn layout_with_whiteouts(dir: &Path) -> Option<std::path::PathBuf> {
    if !have_tool("umoci") {
        return None;
    }
    let layout = dir.join("wh-layout");
    let image = format!("{}:base", layout.display());
    let bundle = dir.join("wh-bundle");
    run(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))
    .success();
    run(Command::new("umoci").args(["new", "--image", &image])).success();
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle))
    .success();
    let rootfs = bundle.join("rootfs");
    write_tree(
        &rootfs,
        &[
            ("gone.txt", "gone\n"),
            ("kept.txt", "kept\n"),
            ("dir/old.txt", "old\n"),
        ],
    );
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))
    .success();
    std::fs::remove_file(rootfs.join("gone.txt")).unwrap();
    std::fs::remove_file(rootfs.join("dir/old.txt")).unwrap();
    write_tree(&rootfs, &[("dir/new.txt", "new\n")]);
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle))
    .success();
    Some(layout)
}

#[test]
fn every_output_type_is_readable_by_other_tools() {
    if !have_tool("skopeo") || !have_tool("tar") {
        return;
    }
    let dir = scratch();
    let d = dir.path();
    let Some(base) = layout_with_whiteouts(d) else {
        return;
    };
    let ctx = d.join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM oci-layout://{}:base\nCOPY app.txt /srv/app.txt\nLABEL org.example=outputs\n",
                    base.display()
                ),
            ),
            ("app.txt", "app\n"),
        ],
    );
    let layout = d.join("layout");
    let oci_tar = d.join("image-oci.tar");
    let docker_tar = d.join("image-docker.tar");
    let fs = d.join("fs");
    let meta = d.join("meta.json");
    build(
        &d.join("store"),
        &ctx,
        &[
            "--tag",
            "localhost/outputs:v1",
            "--metadata-file",
            meta.to_str().unwrap(),
            "--output",
            &format!("type=oci,dest={},tar=false", layout.display()),
            "--output",
            &format!("type=oci,dest={}", oci_tar.display()),
            "--output",
            &format!("type=docker,dest={}", docker_tar.display()),
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();

    // --metadata-file agrees with the layout's index.json.
    let m = metadata(&meta);
    let digest = oci::manifest_digest(&layout, "v1");
    assert_eq!(m["containerimage.digest"], digest.as_str());
    assert_eq!(
        m["containerimage.config.digest"],
        oci::manifest(&layout, "v1")["config"]["digest"]
    );

    // OCI directory.
    let inspect = |what: String| -> serde_json::Value {
        let out = run(Command::new("skopeo").arg("inspect").arg(what)).success();
        serde_json::from_str(&out.stdout).unwrap()
    };
    let info = inspect(format!("oci:{}:v1", layout.display()));
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Labels"]["org.example"], "outputs");

    // OCI tarball: extracted, it is the same layout.
    let extracted = d.join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&oci_tar)
        .arg("-C")
        .arg(&extracted))
    .success();
    assert!(extracted.join("oci-layout").is_file());
    let info = inspect(format!("oci:{}:v1", extracted.display()));
    assert_eq!(info["Digest"], digest.as_str());

    // docker-archive.
    let info = inspect(format!("docker-archive:{}", docker_tar.display()));
    assert_eq!(info["Labels"]["org.example"], "outputs");
    assert_eq!(
        info["Layers"].as_array().unwrap().len(),
        oci::manifest(&layout, "v1")["layers"]
            .as_array()
            .unwrap()
            .len()
    );

    // Local: the flattened filesystem, whiteouts applied and not present themselves.
    assert_eq!(
        std::fs::read_to_string(fs.join("srv/app.txt")).unwrap(),
        "app\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("kept.txt")).unwrap(),
        "kept\n"
    );
    assert_eq!(
        std::fs::read_to_string(fs.join("dir/new.txt")).unwrap(),
        "new\n"
    );
    assert!(!fs.join("gone.txt").exists(), "deleted in a later layer");
    assert!(!fs.join("dir/old.txt").exists());
    let listing = run(Command::new("find").arg(&fs)).success().stdout;
    assert!(!listing.contains(".wh."), "no whiteout files: {listing}");
}

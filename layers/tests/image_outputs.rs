//! End-to-end checks of the image outputs with independent tools: skopeo, umoci, crun and
//! (when a daemon is reachable) docker. A tiny busybox image is built by hand in each test.
//!
//! A missing tool makes a test print why it is skipped and pass, unless
//! `RBUILD_REQUIRE_TOOLS=1`, when it fails. crun failing for an environmental reason (no
//! cgroups, no namespaces) fails too, unless `RBUILD_ALLOW_NO_CRUN=1`.

// Test code: a failed unwrap is a failed test, which is what we want.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_layers::image::{
    BlobSink, BlobSource, History, Image, ImageConfig, ImageRoot, MediaTypes,
};
use rbuild_layers::output::docker::write_docker;
use rbuild_layers::output::local::write_local;
use rbuild_layers::output::oci::{write_oci, REF_NAME_ANNOTATION};
use rbuild_layers::output::{Destination, ExportImage, OutputError};
use rbuild_layers::{Compression, Descriptor, Digest, MediaType};

const HELLO: &str = "hello from an rbuild image\n";

/// A plain `blobs/sha256/<hex>` directory, standing in for the content-addressed store.
struct DirStore(PathBuf);

impl DirStore {
    fn path(&self, d: &Digest) -> PathBuf {
        self.0.join("blobs/sha256").join(d.hex())
    }
}

impl BlobSource for DirStore {
    fn open_blob(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        Ok(Box::new(fs::File::open(self.path(d))?))
    }
    fn blob_size(&self, d: &Digest) -> io::Result<u64> {
        Ok(fs::metadata(self.path(d))?.len())
    }
    fn blob_path(&self, d: &Digest) -> Option<PathBuf> {
        Some(self.path(d))
    }
}

impl BlobSink for DirStore {
    fn put_bytes(&self, media_type: &MediaType, bytes: &[u8]) -> io::Result<Descriptor> {
        let d = Digest::sha256_of(bytes);
        fs::create_dir_all(self.0.join("blobs/sha256"))?;
        fs::write(self.path(&d), bytes)?;
        Ok(Descriptor::new(media_type.clone(), d, bytes.len() as u64))
    }
}

fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The uncompressed layer: /bin/busybox, applet symlinks, /hello.txt (plus `extra` files).
fn layer_tar(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let header = |kind, mode, size| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h
    };
    b.append_data(
        &mut header(tar::EntryType::Directory, 0o755, 0),
        "bin/",
        io::empty(),
    )
    .unwrap();
    let busybox = fs::read("/bin/busybox").expect("busybox-static provides /bin/busybox");
    b.append_data(
        &mut header(tar::EntryType::Regular, 0o755, busybox.len() as u64),
        "bin/busybox",
        &busybox[..],
    )
    .unwrap();
    for applet in ["sh", "echo", "cat"] {
        b.append_link(
            &mut header(tar::EntryType::Symlink, 0o777, 0),
            format!("bin/{applet}"),
            "busybox",
        )
        .unwrap();
    }
    let mut files = vec![("hello.txt", HELLO)];
    files.extend_from_slice(extra);
    for (path, content) in files {
        if let Some((dir, _)) = path.rsplit_once('/') {
            b.append_data(
                &mut header(tar::EntryType::Directory, 0o755, 0),
                format!("{dir}/"),
                io::empty(),
            )
            .unwrap();
        }
        b.append_data(
            &mut header(tar::EntryType::Regular, 0o644, content.len() as u64),
            path,
            content.as_bytes(),
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

/// Builds and stores a one-layer image whose `Cmd` prints /hello.txt.
fn build_image(store: &DirStore, extra: &[(&str, &str)]) -> Image {
    let tar = layer_tar(extra);
    let diff_id = Digest::sha256_of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let layer = store
        .put_bytes(&MediaType::OciLayerGzip, &gz.finish().unwrap())
        .unwrap();

    let mut config = ImageConfig::new("linux", oci_arch());
    config.created = Some("2024-01-01T00:00:00Z".into());
    config.env_set("PATH", "/bin");
    let c = config.config_mut();
    c.cmd = Some(vec!["/bin/sh".into(), "-c".into(), "cat /hello.txt".into()]);
    c.labels.insert("org.example.test".into(), "yes".into());
    config.add_layer(diff_id, History::new("COPY busybox hello.txt /"));
    let annotations = BTreeMap::from([(
        "org.opencontainers.image.title".to_string(),
        "rbuild-test".to_string(),
    )]);
    Image::assemble(config, vec![layer], annotations, MediaTypes::Oci, store).unwrap()
}

/// Whether `tool` can be used; prints a skip reason, or panics under `RBUILD_REQUIRE_TOOLS=1`.
fn have_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("RBUILD_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{tool} is required (RBUILD_REQUIRE_TOOLS=1) but `{tool} --version` failed; install it");
        }
        eprintln!("SKIPPED part of this test: {tool} is not installed (set RBUILD_REQUIRE_TOOLS=1 to make this fail)");
    }
    found
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).expect("tool printed JSON")
}

/// Every regular file under `root`, by relative path, with its contents.
fn tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

#[test]
fn oci_layout_is_read_by_skopeo_unpacked_by_umoci_and_runs_in_crun() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[]);
    let names = ["v1".to_string(), "app:1.0".to_string()];
    let dest = tmp.path().join("layout");
    write_oci(
        &Destination::Dir(dest.clone()),
        &[ExportImage {
            image: &ImageRoot::Single(image.clone()),
            names: &names,
        }],
        &store,
    )
    .unwrap();

    // Our own reading of the layout first: what skopeo and umoci will see.
    assert_eq!(
        fs::read(dest.join("oci-layout")).unwrap(),
        br#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = json(&fs::read(dest.join("index.json")).unwrap());
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        index["manifests"][1]["annotations"][REF_NAME_ANNOTATION],
        "app:1.0"
    );
    for d in image.blob_digests() {
        assert!(
            dest.join("blobs/sha256").join(d.hex()).is_file(),
            "blob {d} missing"
        );
    }

    if !have_tool("skopeo") {
        return;
    }
    let manifest_bytes = fs::read(
        dest.join("blobs/sha256")
            .join(image.manifest_descriptor.digest.hex()),
    )
    .unwrap();
    for name in &names {
        let raw = run(Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!("oci:{}:{name}", dest.display())));
        assert_eq!(
            raw.stdout, manifest_bytes,
            "skopeo --raw prints our manifest bytes for {name}"
        );
        let info = json(
            &run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:{name}", dest.display())))
            .stdout,
        );
        assert_eq!(info["Digest"], image.manifest_descriptor.digest.to_string());
        assert_eq!(info["Labels"]["org.example.test"], "yes");
        assert_eq!(info["Architecture"], oci_arch());
        assert_eq!(
            info["Layers"][0],
            image.manifest.layers[0].digest.to_string()
        );
    }

    if !have_tool("umoci") {
        return;
    }
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image"])
        .arg(format!("{}:v1", dest.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(fs::read_to_string(rootfs.join("hello.txt")).unwrap(), HELLO);
    assert_eq!(
        fs::read_link(rootfs.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read(rootfs.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );

    if !have_tool("crun") {
        return;
    }
    let config_path = bundle.join("config.json");
    let mut spec = json(&fs::read(&config_path).unwrap());
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["/bin/sh", "-c", "cat /hello.txt"])
    );
    spec["process"]["terminal"] = false.into();
    fs::write(&config_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let state = tmp.path().join("crun-state");
    let id = format!("rbuild-test-{}", std::process::id());
    let mut out = crun_run(&state, &bundle, &id, false);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("hybrid mode") {
        // This host mounts cgroup v1 controllers plus a cgroup2 hierarchy that owns a
        // controller, which crun refuses. Hiding the cgroup2 mount in a private mount
        // namespace (the host is untouched) lets crun use plain cgroup v1.
        eprintln!("!!! crun refused the hybrid cgroup setup; retrying with /sys/fs/cgroup/unified hidden in a private mount namespace");
        out = crun_run(&state, &bundle, &id, true);
    }
    if !out.status.success() {
        let _ = Command::new("crun")
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &id])
            .output();
        let why = String::from_utf8_lossy(&out.stderr);
        if std::env::var("RBUILD_ALLOW_NO_CRUN").as_deref() == Ok("1") {
            eprintln!("!!! crun could not run the bundle ({}): {why}\n!!! allowed by RBUILD_ALLOW_NO_CRUN=1", out.status);
            return;
        }
        panic!("crun could not run the unpacked bundle ({}): {why}\nIf this is an environment without cgroups/namespaces, set RBUILD_ALLOW_NO_CRUN=1", out.status);
    }
    assert_eq!(String::from_utf8_lossy(&out.stdout), HELLO);
}

/// `crun run`; with `hide_cgroup2`, inside `unshare -m` after unmounting the cgroup2 mount.
fn crun_run(state: &Path, bundle: &Path, id: &str, hide_cgroup2: bool) -> Output {
    let mut cmd = rbuild_tests::crun::crun_command(state, bundle, id, hide_cgroup2);
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

#[test]
fn oci_tar_is_the_same_layout_and_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[]);
    let names = ["v1".to_string()];
    let images = [ExportImage {
        image: &ImageRoot::Single(image.clone()),
        names: &names,
    }];
    write_oci(&Destination::Dir(tmp.path().join("dir")), &images, &store).unwrap();
    let tar_a = tmp.path().join("a.tar");
    let tar_b = tmp.path().join("b.tar");
    write_oci(
        &Destination::from_dest(tar_a.to_str().unwrap()),
        &images,
        &store,
    )
    .unwrap();
    write_oci(
        &Destination::from_dest(tar_b.to_str().unwrap()),
        &images,
        &store,
    )
    .unwrap();
    assert_eq!(
        fs::read(&tar_a).unwrap(),
        fs::read(&tar_b).unwrap(),
        "same inputs, same bytes"
    );

    let unpacked = tmp.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&tar_a)
        .arg("-C")
        .arg(&unpacked));
    assert_eq!(tree(&unpacked), tree(&tmp.path().join("dir")));

    // Entries are sorted, owned by 0:0, with a fixed mtime.
    let mut archive = tar::Archive::new(fs::File::open(&tar_a).unwrap());
    let mut paths = Vec::new();
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(
            (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
            (0, 0, 0)
        );
        paths.push(e.path().unwrap().display().to_string());
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.contains(&"oci-layout".to_string()) && paths.contains(&"index.json".to_string()));

    if have_tool("skopeo") {
        let info = json(
            &run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:v1", unpacked.display())))
            .stdout,
        );
        assert_eq!(info["Digest"], image.manifest_descriptor.digest.to_string());
    }
}

#[test]
fn writing_to_an_existing_layout_adds_and_replaces_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let first = build_image(&store, &[]);
    let second = build_image(&store, &[("second.txt", "2\n")]);
    assert_ne!(
        first.manifest_descriptor.digest,
        second.manifest_descriptor.digest
    );
    let dest = Destination::Dir(tmp.path().join("layout"));
    let keep = ["keep".to_string()];
    let v1 = ["v1".to_string()];
    let v1_v2 = ["v1".to_string(), "v2".to_string()];
    write_oci(
        &dest,
        &[ExportImage {
            image: &ImageRoot::Single(first.clone()),
            names: &keep,
        }],
        &store,
    )
    .unwrap();
    write_oci(
        &dest,
        &[ExportImage {
            image: &ImageRoot::Single(first.clone()),
            names: &v1,
        }],
        &store,
    )
    .unwrap();
    write_oci(
        &dest,
        &[ExportImage {
            image: &ImageRoot::Single(second.clone()),
            names: &v1_v2,
        }],
        &store,
    )
    .unwrap();

    let index = json(&fs::read(tmp.path().join("layout/index.json")).unwrap());
    let entries: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let (a, b) = (
        first.manifest_descriptor.digest.to_string(),
        second.manifest_descriptor.digest.to_string(),
    );
    assert_eq!(
        entries,
        [
            ("keep".into(), a.clone()),
            ("v1".into(), b.clone()),
            ("v2".into(), b.clone())
        ]
    );

    if have_tool("skopeo") {
        let layout = tmp.path().join("layout");
        let info = json(
            &run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:v1", layout.display())))
            .stdout,
        );
        assert_eq!(info["Digest"], b);
        let info = json(
            &run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:keep", layout.display())))
            .stdout,
        );
        assert_eq!(info["Digest"], a);
    }
}

#[test]
fn existing_non_layout_destination_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[]);
    let dest = tmp.path().join("occupied");
    fs::create_dir(&dest).unwrap();
    fs::write(dest.join("precious.txt"), "mine").unwrap();
    let err = write_oci(
        &Destination::Dir(dest.clone()),
        &[ExportImage {
            image: &ImageRoot::Single(image.clone()),
            names: &[],
        }],
        &store,
    )
    .unwrap_err();
    assert!(matches!(err, OutputError::DestNotEmpty { .. }), "{err}");
    assert_eq!(
        fs::read_to_string(dest.join("precious.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn corrupt_blob_in_the_store_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[]);
    let layer = store.path(&image.manifest.layers[0].digest);
    let mut bytes = fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let dest = tmp.path().join("out.tar");
    let err = write_oci(
        &Destination::TarFile(dest.clone()),
        &[ExportImage {
            image: &ImageRoot::Single(image.clone()),
            names: &[],
        }],
        &store,
    )
    .unwrap_err();
    assert!(matches!(err, OutputError::BlobCorrupt { .. }), "{err}");
    assert!(!dest.exists(), "no half-written tar is left behind");
}

#[test]
fn docker_archive_is_accepted_by_skopeo_and_docker() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[]);
    let untagged = build_image(&store, &[("other.txt", "x\n")]);
    let names = ["rbuild-test/hello:1.0".to_string()];
    let file = tmp.path().join("docker.tar");
    let images = [
        ExportImage {
            image: &ImageRoot::Single(image.clone()),
            names: &names,
        },
        ExportImage {
            image: &ImageRoot::Single(untagged.clone()),
            names: &[],
        },
    ];
    write_docker(&Destination::TarFile(file.clone()), &images, &store).unwrap();

    let unpacked = tmp.path().join("unpacked");
    fs::create_dir(&unpacked).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&file)
        .arg("-C")
        .arg(&unpacked));
    let manifest = json(&fs::read(unpacked.join("manifest.json")).unwrap());
    let config_path = format!("blobs/sha256/{}", image.config_descriptor.digest.hex());
    assert_eq!(manifest[0]["Config"], config_path.as_str());
    assert_eq!(
        manifest[0]["RepoTags"],
        serde_json::json!(["rbuild-test/hello:1.0"])
    );
    assert_eq!(
        manifest[0]["Layers"][0],
        format!("blobs/sha256/{}", image.manifest.layers[0].digest.hex())
    );
    assert_eq!(manifest[1]["RepoTags"], serde_json::Value::Null);
    let repos = json(&fs::read(unpacked.join("repositories")).unwrap());
    assert_eq!(
        repos["rbuild-test/hello"]["1.0"],
        image.manifest.layers[0].digest.hex()
    );
    let index = json(&fs::read(unpacked.join("index.json")).unwrap());
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/rbuild-test/hello:1.0"
    );
    assert_eq!(
        index["manifests"][0]["annotations"][REF_NAME_ANNOTATION],
        "1.0"
    );

    if have_tool("skopeo") {
        // With two images in the archive skopeo needs to be told which one: by tag.
        let src = format!("docker-archive:{}:rbuild-test/hello:1.0", file.display());
        let info = json(&run(Command::new("skopeo").arg("inspect").arg(&src)).stdout);
        assert_eq!(info["Labels"]["org.example.test"], "yes");
        assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
        let config = run(Command::new("skopeo")
            .args(["inspect", "--config", "--raw"])
            .arg(&src));
        assert_eq!(
            json(&config.stdout),
            json(&image.config.to_canonical_json())
        );
        // The untagged image is reachable by index.
        let src = format!("docker-archive:{}:@1", file.display());
        let info = json(&run(Command::new("skopeo").arg("inspect").arg(&src)).stdout);
        assert_eq!(info["Layers"].as_array().unwrap().len(), 1);
        // The OCI layout inside the archive is usable on its own as well.
        let info = json(
            &run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci:{}:1.0", unpacked.display())))
            .stdout,
        );
        assert_eq!(info["Digest"], image.manifest_descriptor.digest.to_string());
    }

    let docker_up = Command::new("docker")
        .arg("info")
        .output()
        .is_ok_and(|o| o.status.success());
    if !docker_up {
        eprintln!("SKIPPED docker load: `docker info` failed (no reachable Docker engine)");
        return;
    }
    let out = run(Command::new("docker").arg("load").arg("-i").arg(&file));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("rbuild-test/hello:1.0"),
        "docker load output: {text}"
    );
    let run_out = run(Command::new("docker").args(["run", "--rm", "rbuild-test/hello:1.0"]));
    assert_eq!(String::from_utf8_lossy(&run_out.stdout), HELLO);
    let _ = Command::new("docker")
        .args(["rmi", "rbuild-test/hello:1.0"])
        .output();
}

/// A minimal applier for the test: gzip tar unpacked with the `tar` crate (no whiteouts).
fn test_applier(
    root: &Path,
    layer: &mut dyn Read,
    c: Compression,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    assert_eq!(c, Compression::Gzip);
    tar::Archive::new(flate2::read::GzDecoder::new(layer)).unpack(root)?;
    Ok(())
}

#[test]
fn local_output_is_the_flattened_filesystem() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[("etc/motd", "welcome\n")]);
    let dest = tmp.path().join("out/rootfs");
    write_local(
        &Destination::Dir(dest.clone()),
        &image,
        &store,
        &test_applier,
    )
    .unwrap();
    assert_eq!(fs::read_to_string(dest.join("hello.txt")).unwrap(), HELLO);
    assert_eq!(
        fs::read_to_string(dest.join("etc/motd")).unwrap(),
        "welcome\n"
    );
    assert_eq!(
        fs::read_link(dest.join("bin/cat")).unwrap(),
        Path::new("busybox")
    );
    // No temporary directory is left next to it.
    assert_eq!(fs::read_dir(tmp.path().join("out")).unwrap().count(), 1);

    let err = write_local(
        &Destination::Dir(dest.clone()),
        &image,
        &store,
        &test_applier,
    )
    .unwrap_err();
    assert!(matches!(err, OutputError::DestNotEmpty { .. }), "{err}");

    let failing = |_: &Path,
                   _: &mut dyn Read,
                   _: Compression|
     -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err("applier refused".into())
    };
    let dest2 = tmp.path().join("out/second");
    let err = write_local(&Destination::Dir(dest2.clone()), &image, &store, &failing).unwrap_err();
    assert!(matches!(err, OutputError::Apply { .. }), "{err}");
    assert!(!dest2.exists());
    assert_eq!(
        fs::read_dir(tmp.path().join("out")).unwrap().count(),
        1,
        "temp dir cleaned up"
    );
}

#[test]
fn same_inputs_same_image_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let a = build_image(&DirStore(tmp.path().join("a")), &[]);
    let b = build_image(&DirStore(tmp.path().join("b")), &[]);
    assert_eq!(a.manifest_descriptor, b.manifest_descriptor);
    assert_eq!(a.config_descriptor, b.config_descriptor);
}

/// A store that offers no file paths, so the writers must copy (no hard links).
struct CopyOnly<'a>(&'a DirStore);

impl BlobSource for CopyOnly<'_> {
    fn open_blob(&self, d: &Digest) -> io::Result<Box<dyn Read + Send + '_>> {
        self.0.open_blob(d)
    }
    fn blob_size(&self, d: &Digest) -> io::Result<u64> {
        self.0.blob_size(d)
    }
}

#[test]
fn hard_linked_and_copied_layouts_are_identical() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = build_image(&store, &[]);
    let names = ["v1".to_string()];
    let images = [ExportImage {
        image: &ImageRoot::Single(image.clone()),
        names: &names,
    }];
    let linked = tmp.path().join("linked");
    let copied = tmp.path().join("copied");
    write_oci(&Destination::Dir(linked.clone()), &images, &store).unwrap();
    write_oci(
        &Destination::Dir(copied.clone()),
        &images,
        &CopyOnly(&store),
    )
    .unwrap();
    assert_eq!(tree(&linked), tree(&copied));
    let layer = image.manifest.layers[0].digest.hex();
    let ino = |p: PathBuf| fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(linked.join("blobs/sha256").join(layer)),
        ino(store.path(&image.manifest.layers[0].digest))
    );
    assert_ne!(
        ino(copied.join("blobs/sha256").join(layer)),
        ino(store.path(&image.manifest.layers[0].digest))
    );
    let mode = fs::metadata(copied.join("index.json")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o644, "layout files are readable by other users");
}

#[test]
fn concurrent_writers_to_one_new_layout_both_land() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let images: Vec<Image> = (0..4)
        .map(|i| build_image(&store, &[("n.txt", ["0", "1", "2", "3"][i])]))
        .collect();
    let dest = tmp.path().join("layout");
    let names: Vec<[String; 1]> = (0..4).map(|i| [format!("t{i}")]).collect();
    std::thread::scope(|s| {
        for (image, names) in images.iter().zip(&names) {
            let (dest, store) = (&dest, &store);
            s.spawn(move || {
                write_oci(
                    &Destination::Dir(dest.clone()),
                    &[ExportImage {
                        image: &ImageRoot::Single(image.clone()),
                        names,
                    }],
                    store,
                )
                .unwrap()
            });
        }
    });
    let index = json(&fs::read(dest.join("index.json")).unwrap());
    let mut got: Vec<(String, String)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["annotations"][REF_NAME_ANNOTATION]
                    .as_str()
                    .unwrap()
                    .to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    let want: Vec<(String, String)> = images
        .iter()
        .enumerate()
        .map(|(i, img)| (format!("t{i}"), img.manifest_descriptor.digest.to_string()))
        .collect();
    assert_eq!(got, want);
    // No temporary directories were left beside the layout.
    let leftovers: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

/// `oci-mediatypes=false` after the build: converting an image is assembling it with Docker's
/// types (same manifest bytes), and several platforms become a Docker manifest list.
#[test]
fn converting_to_docker_media_types_is_assembling_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let oci = build_image(&store, &[]);
    let direct = Image::assemble(
        oci.config.clone(),
        oci.manifest.layers.clone(),
        oci.manifest.annotations.clone(),
        MediaTypes::Docker,
        &store,
    )
    .unwrap();
    let converted = oci.to_docker_media_types(&store).unwrap();
    assert_eq!(converted, direct);
    assert_eq!(
        converted.config_descriptor.digest,
        oci.config_descriptor.digest
    );
    let set = rbuild_layers::image::ImageSet::assemble(vec![oci.clone()], BTreeMap::new(), &store)
        .unwrap();
    let list = ImageRoot::Multi(set).to_docker_media_types(&store).unwrap();
    let ImageRoot::Multi(list) = list else {
        panic!("several platforms stay an index");
    };
    assert_eq!(
        list.index_descriptor.media_type,
        MediaType::DockerManifestList
    );
    assert_eq!(
        list.index.manifests[0].digest,
        direct.manifest_descriptor.digest
    );
    assert_eq!(
        list.index.manifests[0].media_type,
        MediaType::DockerManifest
    );
    let stored = fs::read(store.path(&list.index_descriptor.digest)).unwrap();
    assert!(
        String::from_utf8_lossy(&stored)
            .contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "the stored list has the Docker type"
    );
}

#[test]
fn docker_media_type_image_round_trips_and_is_read_by_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let oci = build_image(&store, &[]);
    let docker = Image::assemble(
        oci.config.clone(),
        oci.manifest.layers.clone(),
        BTreeMap::new(),
        MediaTypes::Docker,
        &store,
    )
    .unwrap();
    assert_eq!(
        docker.config_descriptor.digest, oci.config_descriptor.digest,
        "config bytes are shared"
    );
    let dest = tmp.path().join("layout");
    let names = ["docker".to_string()];
    write_oci(
        &Destination::Dir(dest.clone()),
        &[ExportImage {
            image: &ImageRoot::Single(docker.clone()),
            names: &names,
        }],
        &store,
    )
    .unwrap();
    // The layout's own index points at the Docker manifest, which reads back unchanged.
    // (skopeo 1.9's `oci:` transport only resolves names of entries with OCI media types,
    // so it is not asked here.)
    let index = json(&fs::read(dest.join("index.json")).unwrap());
    assert_eq!(
        index["manifests"][0]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let loaded = Image::load(&DirStore(dest.clone()), docker.manifest_descriptor.clone()).unwrap();
    assert_eq!(loaded, docker);
    if have_tool("skopeo") {
        let file = tmp.path().join("docker.tar");
        write_docker(
            &Destination::TarFile(file.clone()),
            &[ExportImage {
                image: &ImageRoot::Single(docker.clone()),
                names: &names,
            }],
            &store,
        )
        .unwrap();
        let info = json(
            &run(Command::new("skopeo")
                .arg("inspect")
                .arg(format!("docker-archive:{}", file.display())))
            .stdout,
        );
        assert_eq!(info["Labels"]["org.example.test"], "yes");
    }
    let err = write_docker(&Destination::Dir(tmp.path().join("d")), &[], &store).unwrap_err();
    assert!(matches!(err, OutputError::DockerNeedsTar { .. }), "{err}");
}

#[test]
fn empty_export_is_a_valid_empty_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let dest = tmp.path().join("empty");
    write_oci(&Destination::Dir(dest.clone()), &[], &store).unwrap();
    assert!(dest.join("blobs/sha256").is_dir());
    let index = json(&fs::read(dest.join("index.json")).unwrap());
    assert_eq!(
        index,
        serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})
    );
}

/// A second layer: `hello.txt` whited out, a character device and a new file.
fn whiteout_layer(store: &DirStore, image: &Image) -> Image {
    let mut b = tar::Builder::new(Vec::new());
    let h = |kind, path: &str, size: u64| {
        let mut hd = tar::Header::new_ustar();
        hd.set_entry_type(kind);
        hd.set_mode(0o644);
        hd.set_size(size);
        hd.set_mtime(1_700_000_100);
        hd.set_path(path).unwrap();
        if kind == tar::EntryType::Char {
            hd.set_device_major(1).unwrap();
            hd.set_device_minor(3).unwrap();
        }
        hd.set_cksum();
        hd
    };
    b.append(&h(tar::EntryType::Regular, ".wh.hello.txt", 0), io::empty())
        .unwrap();
    b.append(&h(tar::EntryType::Directory, "dev/", 0), io::empty())
        .unwrap();
    b.append(&h(tar::EntryType::Char, "dev/null1", 0), io::empty())
        .unwrap();
    b.append(&h(tar::EntryType::Regular, "new.txt", 4), &b"new\n"[..])
        .unwrap();
    let tar = b.into_inner().unwrap();
    let diff_id = Digest::sha256_of(&tar);
    let layer = store.put_bytes(&MediaType::OciLayerTar, &tar).unwrap();
    let mut config = image.config.clone();
    config.add_layer(diff_id, History::new("RUN rm hello.txt && mknod"));
    let mut layers = image.manifest.layers.clone();
    layers.push(layer);
    Image::assemble(config, layers, BTreeMap::new(), MediaTypes::Oci, store).unwrap()
}

#[test]
fn fs_tar_output_is_the_flattened_filesystem_as_one_reproducible_tar() {
    use rbuild_layers::apply::{apply_layer, ApplyOptions};
    use rbuild_layers::output::fs_tar::{write_fs_tar, FsTarImage};
    let tmp = tempfile::tempdir().unwrap();
    let store = DirStore(tmp.path().join("store"));
    let image = whiteout_layer(&store, &build_image(&store, &[("etc/motd", "welcome\n")]));
    // The real applier: whiteouts applied, devices kept as placeholders in the scratch tree.
    let applier = |root: &Path,
                   layer: &mut dyn Read,
                   _c: Compression|
     -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        apply_layer(root, layer, &ApplyOptions::default())?;
        Ok(())
    };
    let write = |name: &str, add: &rbuild_layers::output::fs_tar::AddFiles<'_>| {
        let scratch = tempfile::tempdir().unwrap();
        let dest = tmp.path().join(name);
        let list = [FsTarImage {
            image: &image,
            prefix: None,
        }];
        write_fs_tar(
            &Destination::TarFile(dest.clone()),
            &list,
            &store,
            &applier,
            scratch.path(),
            None,
            add,
        )
        .unwrap();
        dest
    };
    let nothing = |_: usize, _: &Path| Ok(());
    let a = write("a.tar", &nothing);
    // Another second: a time taken from the clock (not the layers) would show.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = write("b.tar", &nothing);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap(), "reproducible");
    // What the caller adds (attestation files) goes in next to the image's files.
    let added = write("c.tar", &|i: usize, root: &Path| {
        assert_eq!(i, 0);
        fs::write(root.join("provenance.json"), "{}").unwrap();
        Ok(())
    });
    let with = String::from_utf8(run(Command::new("tar").arg("-tf").arg(&added)).stdout).unwrap();
    assert!(with.lines().any(|l| l == "provenance.json"), "{with}");
    assert!(with.lines().any(|l| l == "etc/motd"), "{with}");
    let listing = String::from_utf8(run(Command::new("tar").arg("-tvf").arg(&a)).stdout).unwrap();
    let line = |p: &str| listing.lines().find(|l| l.ends_with(&format!(" {p}")));
    assert!(line("hello.txt").is_none(), "whited out:\n{listing}");
    assert!(!listing.contains(".wh."), "{listing}");
    assert!(line("etc/motd").is_some(), "{listing}");
    assert!(line("new.txt").is_some_and(|l| l.starts_with("-rw-r--r--")));
    // The device is a device again in the tar (a placeholder only in the scratch tree).
    let dev = line("dev/null1").unwrap_or_else(|| panic!("{listing}"));
    assert!(dev.starts_with('c'), "{dev}");
    assert!(dev.contains("1,3"), "{dev}");
    let err = write_fs_tar(
        &Destination::Dir(tmp.path().join("d")),
        &[],
        &store,
        &applier,
        tmp.path(),
        None,
        &nothing,
    )
    .unwrap_err();
    assert!(matches!(err, OutputError::TarNeedsFile { .. }), "{err}");
}

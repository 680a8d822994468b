//! Attestations on a pushed image (`--sbom`, `--provenance`, `--attest`), read back with
//! independent tools: `skopeo inspect --raw` for the index and the attestation manifest, the
//! registry's blob API for the in-toto statements, `jq` over them.

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build_cmd, busybox_base, metadata, write_tree};
use rbuild_tests::registry_http::skopeo_raw;
use rbuild_tests::{have_tool, registry_http, run, scratch, Run};

use crate::registry_roundtrip::registry;

const STATUS: &str = "Package: hello\nStatus: install ok installed\nArchitecture: amd64\n\
Version: 2.10-3\nMaintainer: Santiago Vila <sanvila@debian.org>\n\n\
Package: removed\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1.0\n\n\
Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nSource: glibc\n\
Version: 2.36-9+deb12u4\n";

/// A busybox image with a dpkg database and a Python package, built FROM `base`.
fn context(dir: &Path, base: &str) {
    write_tree(
        dir,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {base}\nCOPY root/ /\nRUN rm -r /usr/lib/python3/dist-packages/gone-1.0.dist-info\n"
                ),
            ),
            ("root/etc/os-release", "ID=debian\nVERSION_ID=\"12\"\n"),
            ("root/var/lib/dpkg/status", STATUS),
            (
                "root/usr/lib/python3/dist-packages/six-1.16.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n",
            ),
            (
                "root/usr/lib/python3/dist-packages/gone-1.0.dist-info/METADATA",
                "Metadata-Version: 2.1\nName: gone\nVersion: 1.0\n",
            ),
        ],
    );
}

fn rbuild_push(store: &Path, ctx: &Path, name: &str, extra: &[&str], meta: &Path) -> Run {
    run(build_cmd(store, ctx)
        .args(["--tag", name, "--push", "--metadata-file"])
        .arg(meta)
        .args(extra)
        // The suite turns buildx's default provenance off (see `rbuild_tests::rbuild`); these
        // tests are about attestations, the default included.
        .env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS"))
    .success()
}

/// `jq -r FILTER` over the blob `digest` of `repo`, fetched from the registry's blob API.
fn jq_blob(reg: &str, repo: &str, digest: &str, dir: &Path, filter: &str) -> String {
    let r = registry_http::request(reg, "GET", &format!("/v2/{repo}/blobs/{digest}"), &[], b"");
    assert_eq!(r.status, 200, "GET blob {digest}");
    assert_eq!(registry_http::sha256_digest(&r.body), digest);
    let file = dir.join(digest.replace(':', "-"));
    std::fs::write(&file, &r.body).unwrap();
    run(Command::new("jq").args(["-r", filter]).arg(&file))
        .success()
        .stdout
        .trim()
        .to_string()
}

#[test]
fn sbom_and_max_provenance_are_attached_without_changing_the_image() {
    let Some(reg) = registry() else { return };
    if !have_tool("skopeo") || !have_tool("jq") {
        return;
    }
    let dir = scratch();
    let store = dir.path().join("store");
    if !busybox_base(dir.path(), &store, "attest-base:1") {
        return;
    }
    let ctx = dir.path().join("ctx");
    context(&ctx, "attest-base:1");
    let plain = format!("{reg}/e2e/attest:plain");
    let attested = format!("{reg}/e2e/attest:v1");
    let meta = dir.path().join("meta.json");

    // Without attestations: a plain manifest.
    rbuild_push(&store, &ctx, &plain, &["--provenance=false"], &meta);
    let image_digest = metadata(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m = skopeo_raw(&plain);
    assert!(m.get("layers").is_some(), "a manifest, not an index: {m}");

    // With them: an index holding the same image manifest, then its attestation manifest.
    let canary = "attest-canary-5f1e2d";
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, canary).unwrap();
    let secret_flag = format!("id=npmtok,src={}", secret.display());
    rbuild_push(
        &store,
        &ctx,
        &attested,
        &[
            "--sbom=true",
            "--provenance=mode=max",
            "--build-arg",
            "GREETING=hi",
            "--secret",
            &secret_flag,
        ],
        &meta,
    );
    let index = skopeo_raw(&attested);
    // The metadata file names what was pushed, the index (as buildx reports it).
    let index_digest = metadata(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    let head = registry_http::request(
        &reg,
        "HEAD",
        "/v2/e2e/attest/manifests/v1",
        &[("Accept", "application/vnd.oci.image.index.v1+json")],
        b"",
    );
    assert_eq!(
        head.header("docker-content-digest"),
        Some(index_digest.as_str())
    );
    assert_ne!(index_digest, image_digest);
    assert_eq!(
        metadata(&meta)["containerimage.config.digest"],
        m["config"]["digest"],
        "the image ID is unchanged"
    );
    let manifests = index["manifests"].as_array().expect("an index");
    assert_eq!(manifests.len(), 2, "{index}");
    assert_eq!(
        manifests[0]["digest"], image_digest,
        "the image is unchanged"
    );
    assert_eq!(manifests[0]["platform"]["os"], "linux");
    let att = &manifests[1];
    assert_eq!(
        att["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        att["annotations"]["vnd.docker.reference.digest"],
        image_digest
    );
    assert_eq!(att["platform"]["architecture"], "unknown");
    assert_eq!(att["platform"]["os"], "unknown");

    let att_digest = att["digest"].as_str().unwrap();
    let am = skopeo_raw(&format!("{reg}/e2e/attest@{att_digest}"));
    let layers = am["layers"].as_array().unwrap();
    let by_type = |t: &str| {
        layers
            .iter()
            .find(|l| l["annotations"]["in-toto.io/predicate-type"] == t)
            .unwrap_or_else(|| panic!("no {t} layer in {am}"))["digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for l in layers {
        assert_eq!(l["mediaType"], "application/vnd.in-toto+json");
    }
    // BuildKit's default form (oci-artifact, compatibility version 0.31): an artifact whose
    // subject is the image manifest, with the empty config.
    assert_eq!(
        am["artifactType"],
        "application/vnd.docker.attestation.manifest.v1+json"
    );
    assert_eq!(am["subject"]["digest"], image_digest);
    assert_eq!(
        am["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(am["config"]["data"], "e30=");
    let sbom = by_type("https://spdx.dev/Document");
    let prov = by_type("https://slsa.dev/provenance/v1");
    let repo = "e2e/attest";
    let d = dir.path();
    let hex = image_digest.trim_start_matches("sha256:");
    for blob in [&sbom, &prov] {
        assert_eq!(
            jq_blob(&reg, repo, blob, d, ".subject[0].digest.sha256"),
            hex
        );
        assert_eq!(
            jq_blob(&reg, repo, blob, d, ".subject[0].name"),
            format!(
                "pkg:docker/{reg}/e2e/attest@v1?platform=linux%2F{}",
                manifests[0]["platform"]["architecture"].as_str().unwrap()
            )
        );
    }
    // The SBOM lists what the final filesystem holds: the installed dpkg packages (not the
    // removed one), the Python package that was not deleted, and busybox.
    let names = jq_blob(
        &reg,
        repo,
        &sbom,
        d,
        "[.predicate.packages[] | select(.externalRefs) | .externalRefs[0].referenceLocator] | join(\" \")",
    );
    let mut purls: Vec<&str> = names.split(' ').collect();
    purls.sort();
    let busybox = purls
        .iter()
        .find(|p| p.starts_with("pkg:generic/busybox@"))
        .map(|s| s.to_string());
    assert!(busybox.is_some(), "busybox in {purls:?}");
    purls.retain(|p| !p.starts_with("pkg:generic/busybox@"));
    assert_eq!(
        purls,
        [
            "pkg:deb/debian/hello@2.10-3?arch=amd64&distro=debian-12",
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&upstream=glibc&distro=debian-12",
            "pkg:pypi/six@1.16.0",
        ]
    );
    assert_eq!(
        jq_blob(&reg, repo, &sbom, d, ".predicate.spdxVersion"),
        "SPDX-2.3"
    );
    // Provenance, mode=max: the build argument, the Dockerfile, the base image by digest.
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            &prov,
            d,
            ".predicate.buildDefinition.externalParameters.request.args[\"build-arg:GREETING\"]"
        ),
        "hi"
    );
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            &prov,
            d,
            ".predicate.buildDefinition.externalParameters.configSource.path"
        ),
        "Dockerfile"
    );
    let dockerfile = std::fs::read(ctx.join("Dockerfile")).unwrap();
    assert_eq!(
        format!(
            "sha256:{}",
            jq_blob(
                &reg,
                repo,
                &prov,
                d,
                ".predicate.buildDefinition.externalParameters.configSource.digest.sha256"
            )
        ),
        registry_http::sha256_digest(&dockerfile)
    );
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            &prov,
            d,
            ".predicate.runDetails.metadata.buildkit_metadata.source.infos[0].data | @base64d"
        ),
        String::from_utf8(dockerfile).unwrap().trim()
    );
    // A secret's id is recorded, never its value (raw or base64) in any attestation.
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            &prov,
            d,
            ".predicate.buildDefinition.externalParameters.request.secrets[0].id"
        ),
        "npmtok"
    );
    let b64 = run(Command::new("sh").args(["-c", "printf %s \"$0\" | base64", canary]))
        .success()
        .stdout
        .trim()
        .to_string();
    assert!(!b64.is_empty());
    for blob in [&sbom, &prov] {
        let r = registry_http::request(&reg, "GET", &format!("/v2/{repo}/blobs/{blob}"), &[], b"");
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains(canary) && !text.contains(&b64),
            "secret value in {blob}"
        );
    }
}

#[test]
fn min_provenance_is_the_push_default_and_false_turns_it_off() {
    let Some(reg) = registry() else { return };
    if !have_tool("skopeo") || !have_tool("jq") {
        return;
    }
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY f /f\n"),
            ("f", "default\n"),
        ],
    );
    let store = dir.path().join("store");
    let meta = dir.path().join("meta.json");
    let name = format!("{reg}/e2e/attest-default:v1");
    rbuild_push(
        &store,
        &ctx,
        &name,
        &["--build-arg", "SECRETISH=value"],
        &meta,
    );
    let index = skopeo_raw(&name);
    let att = &index["manifests"][1];
    let am = skopeo_raw(&format!(
        "{reg}/e2e/attest-default@{}",
        att["digest"].as_str().unwrap()
    ));
    let layers = am["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "provenance only: {am}");
    let blob = layers[0]["digest"].as_str().unwrap();
    let d = dir.path();
    let repo = "e2e/attest-default";
    // mode=min: no build arguments, and the request is said to be incomplete.
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            blob,
            d,
            ".predicate.buildDefinition.externalParameters.request.args // {} | keys | join(\",\")"
        ),
        ""
    );
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            blob,
            d,
            ".predicate.runDetails.metadata.buildkit_completeness.request"
        ),
        "false"
    );

    // `oci-artifact=false`: the earlier form, a placeholder image config for unknown/unknown
    // and no subject.
    let earlier = format!("{reg}/e2e/attest-default:earlier");
    rbuild_push(
        &store,
        &ctx,
        &earlier,
        &[
            "--output",
            &format!("type=image,name={earlier},push=true,oci-artifact=false"),
        ],
        &meta,
    );
    let att = &skopeo_raw(&earlier)["manifests"][1];
    let am = skopeo_raw(&format!(
        "{reg}/e2e/attest-default@{}",
        att["digest"].as_str().unwrap()
    ));
    assert!(
        am.get("artifactType").is_none() && am.get("subject").is_none(),
        "{am}"
    );
    assert_eq!(
        am["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        jq_blob(
            &reg,
            repo,
            am["config"]["digest"].as_str().unwrap(),
            d,
            ".os + \"/\" + .architecture"
        ),
        "unknown/unknown"
    );

    let off = format!("{reg}/e2e/attest-default:off");
    rbuild_push(&store, &ctx, &off, &["--provenance=false"], &meta);
    assert!(
        skopeo_raw(&off).get("layers").is_some(),
        "no index without attestations"
    );
}

/// Attestations asked for go into an OCI layout as into a push (an index with the attestation
/// manifest, read by skopeo), and into `type=local` and `type=tar` outputs as BuildKit's local
/// and tar exporters write them: `sbom.spdx.json` and `provenance.json` beside the filesystem,
/// whose subjects are the output's files. buildx's default provenance alone leaves the outputs
/// as they were (it goes with pushes; an OCI layout stays reproducible).
#[test]
fn oci_local_and_tar_outputs_carry_the_attestations_asked_for() {
    if !have_tool("skopeo") || !have_tool("busybox") {
        return;
    }
    let dir = scratch();
    let store = dir.path().join("store");
    if !busybox_base(dir.path(), &store, "localhost/attest-busybox:1") {
        return;
    }
    let ctx = dir.path().join("ctx");
    context(&ctx, "localhost/attest-busybox:1");
    let layout = dir.path().join("layout");
    let local = dir.path().join("fs");
    let fs_tar = dir.path().join("fs.tar");
    let r = run(build_cmd(&store, &ctx)
        .args(["--tag", "app:1", "--sbom=true", "--provenance=mode=max"])
        .args([
            "--output",
            &format!("type=oci,dest={},tar=false", layout.display()),
        ])
        .args(["--output", &format!("type=local,dest={}", local.display())])
        .args(["--output", &format!("type=tar,dest={}", fs_tar.display())])
        .env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS"))
    .success();
    assert!(r.stderr.contains("attesting"), "{}", r.stderr);

    // The layout's entry is the index: the image manifest, then its attestation manifest.
    let top = rbuild_tests::oci::index(&layout);
    let entry = &top["manifests"][0];
    assert_eq!(
        entry["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index = rbuild_tests::oci::blob_json(&layout, entry["digest"].as_str().unwrap());
    let m = index["manifests"].as_array().unwrap();
    assert_eq!(m.len(), 2, "{index}");
    assert_eq!(
        m[1]["annotations"]["vnd.docker.reference.digest"],
        m[0]["digest"]
    );
    let raw = run(Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:1", layout.display())))
    .success();
    assert!(
        raw.stdout.contains("attestation-manifest"),
        "{}",
        raw.stdout
    );

    // The local output: the files beside the filesystem, each statement naming every file.
    let read = |f: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(local.join(f)).unwrap()).unwrap()
    };
    let prov = read("provenance.json");
    assert_eq!(prov["predicateType"], "https://slsa.dev/provenance/v1");
    let sbom = read("sbom.spdx.json");
    assert_eq!(sbom["predicateType"], "https://spdx.dev/Document");
    let names: Vec<&str> = sbom["subject"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"etc/os-release") && names.contains(&"bin/busybox"),
        "{names:?}"
    );
    let packages = sbom["predicate"]["packages"].to_string();
    assert!(
        packages.contains("\"hello\"") && !packages.contains("\"removed\""),
        "{packages}"
    );

    // The tar output: the same statements, in the tar's root, mode 0600 (read by GNU tar).
    let listing = run(Command::new("tar").arg("-tvf").arg(&fs_tar)).success();
    for f in ["provenance.json", "sbom.spdx.json"] {
        let line = listing
            .stdout
            .lines()
            .find(|l| l.ends_with(&format!(" {f}")));
        assert!(
            line.is_some_and(|l| l.starts_with("-rw-------")),
            "{f}:\n{}",
            listing.stdout
        );
        let bytes = run(Command::new("tar").arg("-xOf").arg(&fs_tar).arg(f)).success();
        assert_eq!(
            bytes.stdout,
            String::from_utf8(std::fs::read(local.join(f)).unwrap()).unwrap(),
            "{f} differs between type=tar and type=local"
        );
    }

    // buildx's default provenance alone: a plain OCI layout and no files.
    let plain = dir.path().join("plain");
    let plain_fs = dir.path().join("plain-fs");
    let plain_tar = dir.path().join("plain.tar");
    run(build_cmd(&store, &ctx)
        .args(["--tag", "app:1"])
        .args([
            "--output",
            &format!("type=oci,dest={},tar=false", plain.display()),
        ])
        .args([
            "--output",
            &format!("type=local,dest={}", plain_fs.display()),
        ])
        .args([
            "--output",
            &format!("type=tar,dest={}", plain_tar.display()),
        ])
        .env_remove("BUILDX_NO_DEFAULT_ATTESTATIONS"))
    .success();
    assert_eq!(
        rbuild_tests::oci::index(&plain)["manifests"][0]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert!(!plain_fs.join("provenance.json").exists());
    let listing = run(Command::new("tar").arg("-tf").arg(&plain_tar)).success();
    assert!(
        !listing.stdout.contains("provenance.json"),
        "{}",
        listing.stdout
    );
}

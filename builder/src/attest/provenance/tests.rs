//! The predicate's shape in both modes (golden files) and what `mode=min` leaves out.

use super::*;
use rbuild_layers::MediaType;

fn input(mode: Mode) -> ProvenanceInput {
    let amd64 = Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        os_version: None,
        variant: None,
    };
    ProvenanceInput {
        mode,
        builder_id: String::new(),
        dockerfile_path: "Dockerfile".into(),
        dockerfile: b"FROM alpine:3.19\nRUN echo hi\n".to_vec(),
        context: Some(ContextSource::Local),
        build_args: BTreeMap::from([("VERSION".into(), "1.2".into())]),
        labels: BTreeMap::from([("team".into(), "core".into())]),
        target: Some("release".into()),
        other_args: BTreeMap::new(),
        secrets: vec![("npm_token".into(), false)],
        ssh: vec![("default".into(), true)],
        base_images: vec![BaseImage {
            reference: "docker.io/library/alpine:3.19".into(),
            platform: Some(amd64),
            digest: Digest::sha256_of(b"alpine manifest"),
        }],
        http: vec![(
            "https://user:pw@example.com/f.tgz".into(),
            Digest::sha256_of(b"file"),
        )],
        builder_platform: "linux/amd64".into(),
        invocation_id: "inv0".into(),
        started_on: "2024-01-02T03:04:05Z".into(),
        finished_on: "2024-01-02T03:04:09Z".into(),
        reproducible: false,
        network: true,
        steps: vec![
            Step {
                inputs: vec![],
                layer: None,
            },
            Step {
                inputs: vec![0],
                layer: Some(Descriptor::new(
                    MediaType::OciLayerGzip,
                    Digest::sha256_of(b"layer"),
                    123,
                )),
            },
        ],
        vcs: BTreeMap::new(),
    }
}

fn pretty(p: &Predicate) -> String {
    serde_json::to_string_pretty(p).unwrap()
}

#[test]
fn min_golden() {
    insta::assert_snapshot!(pretty(&predicate(&input(Mode::Min))));
}

#[test]
fn max_golden() {
    insta::assert_snapshot!(pretty(&predicate(&input(Mode::Max))));
}

#[test]
fn min_leaves_out_args_labels_secrets_and_ssh() {
    let text = pretty(&predicate(&input(Mode::Min)));
    for leak in [
        "VERSION",
        "1.2",
        "team",
        "npm_token",
        "default",
        "llbDefinition",
    ] {
        assert!(!text.contains(leak), "{leak} in {text}");
    }
    let p = predicate(&input(Mode::Min));
    assert!(!p.run_details.metadata.buildkit_completeness.request);
    let mut no_args = input(Mode::Min);
    no_args.build_args.clear();
    no_args.labels.clear();
    assert!(
        predicate(&no_args)
            .run_details
            .metadata
            .buildkit_completeness
            .request
    );
}

#[test]
fn git_context_pins_the_commit() {
    let mut i = input(Mode::Min);
    i.context = Some(ContextSource::Git {
        url: "https://github.com/o/r.git#main".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
    });
    let p = predicate(&i);
    let cs = &p.build_definition.external_parameters.config_source;
    assert_eq!(cs.uri.as_deref(), Some("https://github.com/o/r.git#main"));
    assert_eq!(
        cs.digest["sha1"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    let git = p
        .build_definition
        .resolved_dependencies
        .iter()
        .find(|d| d.uri == "https://github.com/o/r.git")
        .expect("the repository is a resolved dependency");
    assert_eq!(
        git.digest["sha1"],
        "0123456789abcdef0123456789abcdef01234567"
    );
    assert!(
        p.run_details
            .metadata
            .buildkit_completeness
            .resolved_dependencies
    );
    assert!(p
        .build_definition
        .external_parameters
        .request
        .locals
        .is_empty());
}

#[test]
fn docker_purls_as_buildkit() {
    let p = Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        os_version: None,
        variant: None,
    };
    let d = "sha256:".to_string() + &"a".repeat(64);
    let cases = [
        ("alpine", "pkg:docker/alpine@latest?platform=linux%2Famd64"),
        (
            "docker.io/library/alpine:3.19",
            "pkg:docker/alpine@3.19?platform=linux%2Famd64",
        ),
        (
            "localhost:5000/a/b:v1",
            "pkg:docker/localhost:5000/a/b@v1?platform=linux%2Famd64",
        ),
        (
            "localhost:5000/b",
            "pkg:docker/localhost:5000/b@latest?platform=linux%2Famd64",
        ),
    ];
    for (r, want) in cases {
        assert_eq!(docker_purl(r, Some(&p)), want, "{r}");
    }
    assert_eq!(
        docker_purl(&format!("busybox@{d}"), None),
        format!("pkg:docker/busybox?digest=sha256%3A{}", "a".repeat(64))
    );
}

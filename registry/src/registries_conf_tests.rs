use super::*;

fn conf(text: &str) -> RegistriesConf {
    let mut c = RegistriesConf::default();
    c.merge_text(Path::new("/etc/containers/registries.conf"), text)
        .expect("valid registries.conf");
    c
}

fn err(text: &str) -> String {
    let mut c = RegistriesConf::default();
    c.merge_text(Path::new("/etc/containers/registries.conf"), text)
        .expect_err("invalid registries.conf")
        .to_string()
}

fn r(s: &str) -> Reference {
    s.parse().expect("reference")
}

/// The pull sources of `name`, written out (`mirror:` marks mirrors).
fn sources(c: &RegistriesConf, name: &str) -> Vec<String> {
    c.pull_sources(&r(name))
        .expect("not blocked")
        .into_iter()
        .map(|s| {
            let m = if s.mirror { "mirror: " } else { "" };
            format!("{m}{}", s.reference)
        })
        .collect()
}

#[test]
fn no_entry_means_the_reference_itself() {
    let c = conf("");
    assert_eq!(sources(&c, "busybox"), ["docker.io/library/busybox"]);
}

#[test]
fn mirrors_come_first_in_order_then_the_registry() {
    let c = conf(
        r#"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "mirror-a.example:5000"
[[registry.mirror]]
location = "mirror-b.example/dockerhub"
insecure = true
"#,
    );
    assert_eq!(
        sources(&c, "busybox:1.36"),
        [
            "mirror: mirror-a.example:5000/library/busybox:1.36",
            "mirror: mirror-b.example/dockerhub/library/busybox:1.36",
            "docker.io/library/busybox:1.36",
        ]
    );
    assert!(c.is_insecure("mirror-b.example"));
    assert!(!c.is_insecure("mirror-a.example:5000"));
    assert!(!c.is_insecure("docker.io"));
}

#[test]
fn the_longest_prefix_wins_and_its_location_rewrites_the_prefix() {
    let c = conf(
        r#"
[[registry]]
prefix = "example.com"
location = "a.example"
[[registry]]
prefix = "example.com/foo"
location = "b.example/mirrored/foo"
"#,
    );
    assert_eq!(
        sources(&c, "example.com/foo/app:1"),
        ["b.example/mirrored/foo/app:1"]
    );
    assert_eq!(sources(&c, "example.com/bar/app"), ["a.example/bar/app"]);
    // `example.com/foo` is not a prefix of `example.com/foobar`: a separator must follow.
    assert_eq!(
        sources(&c, "example.com/foobar/app"),
        ["a.example/foobar/app"]
    );
    // Nor is `example.com` one of `example.community`.
    assert_eq!(
        sources(&c, "example.community/app"),
        ["example.community/app"]
    );
}

#[test]
fn a_prefix_may_name_a_tag() {
    let c = conf(
        r#"
[[registry]]
prefix = "example.com/app:1"
location = "pinned.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"
"#,
    );
    assert_eq!(
        sources(&c, "example.com/app:1"),
        ["pinned.example/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"]
    );
    assert_eq!(sources(&c, "example.com/app:2"), ["example.com/app:2"]);
}

#[test]
fn wildcard_prefixes_match_subdomains_without_rewriting() {
    let c = conf(
        r#"
[[registry]]
prefix = "*.example.com"
[[registry.mirror]]
location = "cache.internal"
"#,
    );
    assert_eq!(
        sources(&c, "a.b.example.com/team/app"),
        [
            "mirror: cache.internal/team/app",
            "a.b.example.com/team/app"
        ]
    );
    assert_eq!(
        sources(&c, "example.com/team/app"),
        ["example.com/team/app"]
    );
}

#[test]
fn pull_from_mirror_filters_by_tag_or_digest() {
    let c = conf(
        r#"
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "by-digest.example"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "by-tag.example"
pull-from-mirror = "tag-only"
"#,
    );
    let digest = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    assert_eq!(
        sources(&c, "quay.io/a/b:1"),
        ["mirror: by-tag.example/a/b:1", "quay.io/a/b:1"]
    );
    assert_eq!(
        sources(&c, &format!("quay.io/a/b@{digest}")),
        [
            format!("mirror: by-digest.example/a/b@{digest}"),
            format!("quay.io/a/b@{digest}")
        ]
    );
    let c = conf(
        r#"
[[registry]]
location = "quay.io"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.example"
"#,
    );
    assert_eq!(sources(&c, "quay.io/a/b:1"), ["quay.io/a/b:1"]);
}

#[test]
fn drop_ins_replace_entries_with_the_same_prefix() {
    let mut c = conf(
        r#"
unqualified-search-registries = ["quay.io"]
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "old.example"
[[registry]]
location = "quay.io"
blocked = true
"#,
    );
    c.merge_text(
        Path::new("/etc/containers/registries.conf.d/50-mirror.conf"),
        r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "new.example"
"#,
    )
    .expect("valid drop-in");
    assert_eq!(
        sources(&c, "busybox"),
        [
            "mirror: new.example/library/busybox",
            "docker.io/library/busybox"
        ]
    );
    assert!(c.pull_sources(&r("quay.io/a/b")).is_err());
    assert!(c.check_unqualified("busybox").is_ok());
}

#[test]
fn files_load_in_order_and_missing_ones_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let main = dir.path().join("registries.conf");
    let d = dir.path().join("registries.conf.d");
    std::fs::create_dir(&d).expect("mkdir");
    std::fs::write(
        &main,
        "[[registry]]\nlocation = \"a.example\"\nblocked = true\n",
    )
    .expect("write");
    std::fs::write(
        d.join("20-b.conf"),
        "[[registry]]\nlocation = \"a.example\"\n",
    )
    .expect("write");
    std::fs::write(
        d.join("10-a.conf"),
        "[[registry]]\nlocation = \"a.example\"\nblocked = true\n",
    )
    .expect("write");
    std::fs::write(d.join("30-ignored.txt"), "not toml [").expect("write");
    let c = RegistriesConf::load_files(Some(&main), &drop_ins(&[dot_d(&main)])).expect("load");
    // 20-b.conf came last and unblocked it.
    assert_eq!(c.registries.len(), 1);
    assert!(!c.registries[0].blocked);
    assert_eq!(c.registries[0].file, d.join("20-b.conf"));
    let none =
        RegistriesConf::load_files(Some(&dir.path().join("absent.conf")), &[]).expect("load");
    assert_eq!(none, RegistriesConf::default());
}

#[test]
fn unknown_tables_and_keys_are_ignored() {
    // Debian's shortnames.conf drop-in, and settings rbuild has no use for.
    let c = conf(
        r#"
short-name-mode = "enforcing"
credential-helpers = ["containers-auth.json"]
[aliases]
"centos" = "quay.io/centos/centos"
"#,
    );
    assert_eq!(c, RegistriesConf::default());
}

#[test]
fn unqualified_names_stay_on_docker_hub_or_are_refused() {
    let c = conf(r#"unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]"#);
    insta::assert_snapshot!(c
        .check_unqualified("fedora:40")
        .expect_err("refused")
        .to_string());
    assert!(c.check_unqualified("docker.io/library/fedora:40").is_ok());
    assert!(c.check_unqualified("localhost/app").is_ok());
    assert!(c.check_unqualified("127.0.0.1:5000/app").is_ok());
    // A name with a namespace but no host is still unqualified.
    assert!(c.check_unqualified("library/fedora").is_err());
    assert!(conf(r#"unqualified-search-registries = ["docker.io"]"#)
        .check_unqualified("fedora")
        .is_ok());
    assert!(conf("unqualified-search-registries = []")
        .check_unqualified("fedora")
        .is_ok());
    assert!(conf("").check_unqualified("fedora").is_ok());
}

#[test]
fn a_blocked_registry_is_an_error_naming_the_file() {
    let mut c = RegistriesConf::default();
    c.merge_text(
        Path::new("/tmp/conf.d/90-block.conf"),
        "[[registry]]\nprefix = \"docker.io/library\"\nlocation = \"docker.io/library\"\nblocked = true\n",
    )
    .expect("valid");
    insta::assert_snapshot!(c
        .pull_sources(&r("busybox"))
        .expect_err("blocked")
        .to_string());
    assert!(c.pull_sources(&r("docker.io/other/busybox")).is_ok());
}

#[test]
fn invalid_files_are_errors_naming_the_file() {
    insta::assert_snapshot!("not_toml", err("[[registry]\nlocation = 1"));
    insta::assert_snapshot!(
        "no_prefix_no_location",
        err("[[registry]]\ninsecure = true")
    );
    insta::assert_snapshot!(
        "version_1",
        err("[registries.search]\nregistries = [\"docker.io\"]")
    );
    insta::assert_snapshot!(
        "bad_wildcard",
        err("[[registry]]\nprefix = \"*.example.com/foo\"")
    );
    insta::assert_snapshot!(
        "bad_pull_from_mirror",
        err("[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"")
    );
    insta::assert_snapshot!(
        "duplicate_prefix",
        err("[[registry]]\nlocation = \"a.example\"\n[[registry]]\nprefix = \"a.example\"\nlocation = \"b.example\"")
    );
    insta::assert_snapshot!(
        "wrong_type",
        err("[[registry]]\nlocation = \"a.example\"\nblocked = \"yes\"")
    );
}

#[test]
fn a_location_that_does_not_make_a_reference_is_an_error() {
    let c = conf("[[registry]]\nprefix = \"docker.io\"\nlocation = \"Not A Host\"");
    insta::assert_snapshot!(c.pull_sources(&r("busybox")).expect_err("bad").to_string());
}

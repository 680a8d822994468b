//! `RUN --mount`: secrets (file and env; never in a blob of the store, in the output or in the
//! log), cache mounts (persist across builds, never in the layer), tmpfs.

use std::path::Path;
use std::process::Command;

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{run, scratch};

use super::run_sandbox::{setup, BASE};

/// Paths of files under `root` whose bytes, or whose gzip/zstd-decompressed bytes, contain
/// `needle`.
pub(super) fn files_containing(root: &Path, needle: &str) -> Vec<String> {
    let script = r#"find "$1" -type f | while read -r f; do
        if grep -qF -- "$2" "$f" || (zcat -f -- "$f" 2>/dev/null | grep -qF -- "$2") \
           || (zstdcat -- "$f" 2>/dev/null | grep -qF -- "$2"); then echo "$f"; fi
    done"#;
    run(Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(root)
        .arg(needle))
    .success()
    .stdout
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn secrets_reach_the_command_but_no_blob_output_or_log() {
    let dir = scratch();
    let secret = format!("s3cr3t-{}-value", std::process::id());
    let df = format!(
        "FROM {BASE}\n\
         RUN --mount=type=secret,id=tok sha256sum /run/secrets/tok | cut -d' ' -f1 > /file-sum \
             && stat -c '%a %u' /run/secrets/tok > /file-perm && echo \"leak: $(cat /run/secrets/tok)\"\n\
         RUN --mount=type=secret,id=tok,env=TOKEN,uid=1000,mode=0440 printf %s \"$TOKEN\" | sha256sum | cut -d' ' -f1 > /env-sum \
             && [ ! -e /run/secrets/tok ] && echo env-only > /env-only\n\
         RUN --mount=type=secret,id=tok,target=/etc/tok.conf sha256sum /etc/tok.conf | cut -d' ' -f1 > /target-sum\n\
         RUN --mount=type=secret,id=absent [ ! -e /run/secrets/absent ] && echo skipped > /absent\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let secret_file = dir.path().join("secret.txt");
    write_tree(dir.path(), &[("secret.txt", &secret)]);
    let out = dir.path().join("out");
    let fs = dir.path().join("fs");
    let cache = dir.path().join("cache");
    let r = build(
        &store,
        &ctx,
        &[
            "--secret",
            &format!("id=tok,src={}", secret_file.display()),
            "--output",
            &format!("type=oci,dest={},tar=false", out.display()),
            "--output",
            &format!("type=local,dest={}", fs.display()),
            // SECURITY.md: secrets leaked through cache exports in mode=max (CVE-2023-26054).
            "--cache-to",
            &format!("type=local,dest={},mode=max", cache.display()),
        ],
    )
    .success();
    let want = run(Command::new("sh")
        .arg("-c")
        .arg("printf %s \"$1\" | sha256sum | cut -d' ' -f1")
        .arg("sh")
        .arg(&secret))
    .success()
    .stdout;
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("file-sum"), want);
    assert_eq!(
        read("file-perm"),
        "400 0\n",
        "default mode 0400, owner root"
    );
    assert_eq!(read("env-sum"), want);
    assert_eq!(read("env-only"), "env-only\n");
    assert_eq!(read("target-sum"), want);
    assert_eq!(
        read("absent"),
        "skipped\n",
        "a secret that is not required may be absent"
    );
    assert!(
        !fs.join("etc/tok.conf").exists(),
        "the secret's mount point is not in the layer"
    );
    assert!(!fs.join("run/secrets").exists());
    assert!(
        !r.stderr.contains(&secret),
        "log masks the secret: {}",
        r.stderr
    );
    assert!(r.stderr.contains("leak: "), "{}", r.stderr);
    // SECURITY.md: searched raw, base64, hex and URL-encoded, in every blob (decompressed too),
    // config, record, output and exported cache.
    for form in encodings(&secret) {
        assert_eq!(
            files_containing(&store, &form),
            Vec::<String>::new(),
            "{form}"
        );
        assert_eq!(
            files_containing(&out, &form),
            Vec::<String>::new(),
            "{form}"
        );
        assert_eq!(
            files_containing(&cache, &form),
            Vec::<String>::new(),
            "{form}"
        );
        assert!(!r.stderr.contains(&form), "{form}");
    }
}

/// `secret` raw, base64, hex and URL-encoded.
fn encodings(secret: &str) -> Vec<String> {
    let b64 = run(Command::new("sh").args(["-c", "printf %s \"$1\" | base64 -w0", "sh", secret]))
        .success()
        .stdout;
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    let url: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    vec![
        secret.to_string(),
        b64.trim_end_matches('=').to_string(),
        hex,
        url,
    ]
}

#[test]
fn a_failing_command_that_prints_a_secret_has_it_masked_in_the_error() {
    let dir = scratch();
    let secret = format!("hunter2-{}-pw", std::process::id());
    let df = format!("FROM {BASE}\nRUN --mount=type=secret,id=pw cat /run/secrets/pw; exit 1\n");
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    write_tree(dir.path(), &[("pw.txt", &secret)]);
    let r = build(
        &store,
        &ctx,
        &[
            "--secret",
            &format!("id=pw,src={}", dir.path().join("pw.txt").display()),
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("exited with code 1"), "{}", r.stderr);
    assert!(!r.stderr.contains(&secret), "{}", r.stderr);
    assert_eq!(files_containing(&store, &secret), Vec::<String>::new());
}

#[test]
fn a_missing_required_secret_is_an_error_naming_it() {
    let dir = scratch();
    let df = format!("FROM {BASE}\nRUN --mount=type=secret,id=npmrc,required=true true\n");
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let r = build(&store, &ctx, &[]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("\"npmrc\" is required"), "{}", r.stderr);
    assert!(r.stderr.contains("--secret id=npmrc"), "{}", r.stderr);
}

#[test]
fn cache_mounts_persist_across_builds_and_tmpfs_mounts_are_empty_and_neither_is_in_the_layer() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE}\n\
         RUN --mount=type=cache,target=/var/cache/app --mount=type=tmpfs,target=/scratch \
             echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /count \
             && ls -A /scratch > /scratch-listing && echo x > /scratch/f \
             && grep -q ' /scratch tmpfs ' /proc/mounts && echo tmpfs > /scratch-type\n\
         RUN --mount=type=cache,id=shared,target=/a,sharing=locked echo a > /a/f\n\
         RUN --mount=type=cache,id=shared,target=/b,sharing=shared cat /b/f > /from-shared\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    for expected in ["1\n", "2\n"] {
        let fs = dir.path().join(format!("fs{}", expected.trim()));
        build(
            &store,
            &ctx,
            &[
                "--no-cache",
                "--output",
                &format!("type=local,dest={}", fs.display()),
            ],
        )
        .success();
        let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
        assert_eq!(
            read("count"),
            expected,
            "the cache mount kept the first build's file"
        );
        assert_eq!(read("scratch-listing"), "");
        assert_eq!(read("scratch-type"), "tmpfs\n");
        assert_eq!(read("from-shared"), "a\n", "same id, same directory");
        assert!(
            !fs.join("var/cache/app").exists(),
            "cache mount point is not in the layer"
        );
        assert!(!fs.join("scratch").exists());
        assert!(!fs.join("a").exists() && !fs.join("b").exists());
    }
}

#[test]
fn bind_mounts_of_the_context_and_of_a_stage_are_read_only_unless_rw_and_rw_writes_are_discarded() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE} AS tools\n\
         RUN mkdir -p /opt/tool && echo tool-v1 > /opt/tool/version\n\
         FROM {BASE} AS final\n\
         RUN --mount=type=bind,target=/src cat /src/data/a.txt > /from-context \
             && (echo x > /src/data/a.txt 2>/dev/null && echo writable || echo read-only) > /ctx-ro \
             && ([ -e /src/ignored.txt ] && echo visible || echo hidden) > /ignored\n\
         RUN --mount=type=bind,from=tools,source=/opt/tool,target=/t cat /t/version > /from-stage\n\
         RUN --mount=type=bind,source=data,target=/d,rw echo changed > /d/a.txt && cat /d/a.txt > /rw-seen\n\
         RUN --mount=type=bind,from=tools,target=/t,rw echo changed > /t/opt/tool/version && echo ok > /rw-stage\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    write_tree(
        &ctx,
        &[
            ("data/a.txt", "context-a\n"),
            ("ignored.txt", "no\n"),
            (".dockerignore", "ignored.txt\n"),
        ],
    );
    let fs = dir.path().join("fs");
    let r = build(
        &store,
        &ctx,
        &[
            "--target",
            "final",
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("from-context"), "context-a\n");
    assert_eq!(read("ctx-ro"), "read-only\n");
    assert_eq!(
        read("ignored"),
        "hidden\n",
        ".dockerignore applies to bind mounts"
    );
    assert_eq!(read("from-stage"), "tool-v1\n");
    assert_eq!(read("rw-seen"), "changed\n");
    assert_eq!(read("rw-stage"), "ok\n");
    assert_eq!(
        std::fs::read_to_string(ctx.join("data/a.txt")).unwrap(),
        "context-a\n",
        "rw writes never reach the context"
    );
    for p in ["src", "t", "d"] {
        assert!(!fs.join(p).exists(), "mount point {p} is not in the layer");
    }
    // A later build of the same stage still sees the original file (writes were discarded).
    let fs2 = dir.path().join("fs2");
    let again = build(
        &store,
        &ctx,
        &[
            "--target",
            "final",
            "--no-cache",
            "--output",
            &format!("type=local,dest={}", fs2.display()),
        ],
    )
    .success();
    let from_stage = std::fs::read_to_string(fs2.join("from-stage")).unwrap();
    assert_eq!(from_stage, "tool-v1\n", "{}{}", r.stderr, again.stderr);
    // Changing the bound context file changes the key of the step that binds it.
    write_tree(&ctx, &[("data/a.txt", "context-b\n")]);
    let fs3 = dir.path().join("fs3");
    build(
        &store,
        &ctx,
        &[
            "--target",
            "final",
            "--output",
            &format!("type=local,dest={}", fs3.display()),
        ],
    )
    .success();
    assert_eq!(
        std::fs::read_to_string(fs3.join("from-context")).unwrap(),
        "context-b\n"
    );
}

#[test]
fn teardown_never_follows_a_symlink_the_step_put_over_a_mount_stub() {
    // BuildKit CVE-2024-23652: the step replaces the parent of its mount stubs with a symlink
    // to a host path; cleaning up must not delete anything through it.
    let dir = scratch();
    let canary = dir.path().join("canary");
    write_tree(&canary, &[("keep.txt", "precious\n")]);
    let df = format!(
        "FROM {BASE}\n\
         RUN --mount=type=tmpfs,target=/m/stub --mount=type=cache,target=/c/stub \
             mv /m /m-moved && ln -s {canary} /m && mv /c /c-moved && ln -s {canary} /c\n",
        canary = canary.display()
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    build(&store, &ctx, &[]).success();
    assert_eq!(
        std::fs::read_to_string(canary.join("keep.txt")).unwrap(),
        "precious\n"
    );
    assert_eq!(std::fs::read_dir(&canary).unwrap().count(), 1);
}

#[test]
fn concurrent_stages_share_a_locked_cache_mount_one_at_a_time() {
    let dir = scratch();
    let step = |name: &str| {
        format!(
            "FROM {BASE} AS {name}\n\
             RUN --mount=type=cache,id=shared-log,target=/c,sharing=locked \
                 for i in 1 2 3 4 5; do echo {name}-start >> /c/log; sleep 0.05; echo {name}-end >> /c/log; done\n"
        )
    };
    let df = format!(
        "{}{}FROM {BASE} AS final\n\
         COPY --from=a /etc/passwd /a\n\
         COPY --from=b /etc/passwd /b\n\
         RUN --mount=type=cache,id=shared-log,target=/c,sharing=locked cp /c/log /log\n",
        step("a"),
        step("b")
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &[
            "--target",
            "final",
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    let log = std::fs::read_to_string(fs.join("log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 20, "{log}");
    // Locked: one step's ten lines, then the other's; never interleaved.
    let first = lines[0].split('-').next().unwrap();
    assert!(lines[..10].iter().all(|l| l.starts_with(first)), "{log}");
    assert!(lines[10..].iter().all(|l| !l.starts_with(first)), "{log}");
}

#[test]
fn a_cache_mount_from_a_stage_is_seeded_once_with_that_stages_files() {
    let dir = scratch();
    let df = format!(
        "FROM {BASE} AS seed\n\
         RUN mkdir -p /seed/sub && echo seeded > /seed/sub/x && chown 1000:1000 /seed/sub/x\n\
         FROM {BASE}\n\
         RUN --mount=type=cache,id=seeded,target=/c,from=seed,source=/seed \
             cat /c/sub/x > /got && stat -c %u /c/sub/x > /owner && echo more >> /c/sub/x\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    for (round, expected) in [(1, "seeded\n"), (2, "seeded\nmore\n")] {
        let fs = dir.path().join(format!("fs{round}"));
        build(
            &store,
            &ctx,
            &[
                "--no-cache-filter",
                "stage-1",
                "--output",
                &format!("type=local,dest={}", fs.display()),
            ],
        )
        .success();
        let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
        // The second build finds the cache that the first one changed: seeding happens once.
        assert_eq!(read("got"), expected, "round {round}");
        assert_eq!(read("owner"), "1000\n");
        assert!(
            !fs.join("c").exists(),
            "the cache mount point is not in the layer"
        );
    }
}

#[test]
fn relative_mount_targets_are_relative_to_the_workdir() {
    // BuildKit joins a relative target onto the WORKDIR; rbuild used to put it under `/`.
    let dir = scratch();
    let df = format!(
        "FROM {BASE}\n\
         WORKDIR /w/x\n\
         RUN --mount=type=secret,id=tok,target=tok --mount=type=tmpfs,target=../t \
             --mount=type=bind,source=sub,target=b \
             cat tok b/f > /seen && grep -o ' /w/t ' /proc/mounts > /tmpfs-at\n"
    );
    let Some((store, ctx)) = setup(dir.path(), &df) else {
        return;
    };
    write_tree(&ctx, &[("sub/f", "bound\n")]);
    write_tree(dir.path(), &[("tok.txt", "token\n")]);
    let fs = dir.path().join("fs");
    build(
        &store,
        &ctx,
        &[
            "--secret",
            &format!("id=tok,src={}", dir.path().join("tok.txt").display()),
            "--output",
            &format!("type=local,dest={}", fs.display()),
        ],
    )
    .success();
    let read = |p: &str| std::fs::read_to_string(fs.join(p)).unwrap();
    assert_eq!(read("seen"), "token\nbound\n");
    assert_eq!(read("tmpfs-at"), " /w/t \n");
    assert!(!fs.join("w/x/tok").exists() && !fs.join("w/x/b").exists());
}

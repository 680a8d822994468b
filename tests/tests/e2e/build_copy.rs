//! COPY and ADD rules, checked on the flattened filesystem (`--output type=local`): globs,
//! directory contents, trailing-slash destinations, --chmod (octal and symbolic), --chown (names
//! and ids), --exclude, --parents, --link, heredocs, local archives, symlinks, .dockerignore.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_tests::build::{build, write_tree};
use rbuild_tests::{have_tool, run, scratch};

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nweb:x:1001:1002:web:/home/web:/bin/sh\n";
const GROUP: &str = "root:x:0:\napp:x:1000:\nwww:x:1002:\n";

const DOCKERFILE: &str = r#"FROM scratch
COPY etc/ /etc/
COPY *.txt /globbed/
COPY dir /dircontents
COPY a.txt /file-no-slash
COPY a.txt /intodir/
COPY --chmod=0755 a.txt /chmod-octal
COPY --chmod=u=rwx,g=rx,o= a.txt /chmod-symbolic
COPY --chown=app:app a.txt /chown-name
COPY --chown=1234:5678 a.txt /chown-ids
COPY --chown=web a.txt /chown-user-only
COPY --exclude=*.log logs/ /excluded/
COPY --parents dir/sub/f.txt /parents/
COPY --link a.txt /linked
COPY <<EOF /etc/x
hello heredoc
EOF
ADD archive.tar.gz /extracted/
ADD archive.tar.xz /extracted-xz/
COPY archive.tar.gz /not-extracted.tar.gz
COPY link /copied-link
COPY exec.sh /exec.sh
"#;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.uid(), m.gid())
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn build_local(dir: &Path, ctx: &Path, extra: &[&str]) -> PathBuf {
    let fs = dir.join("fs");
    let dest = format!("type=local,dest={}", fs.display());
    build(
        &dir.join("store"),
        ctx,
        &[&["--output", dest.as_str()][..], extra].concat(),
    )
    .success();
    fs
}

#[test]
fn copy_and_add_follow_dockers_rules() {
    if !have_tool("tar") || !have_tool("xz") {
        return;
    }
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", DOCKERFILE),
            ("etc/passwd", PASSWD),
            ("etc/group", GROUP),
            ("a.txt", "A\n"),
            ("b.txt", "B\n"),
            ("c.log", "C\n"),
            ("notes.md", "notes\n"),
            ("dir/g.txt", "G\n"),
            ("dir/sub/f.txt", "F\n"),
            ("logs/keep.txt", "keep\n"),
            ("logs/drop.log", "drop\n"),
            ("exec.sh", "#!/bin/sh\n"),
            ("arch/top/inside.txt", "inside gz\n"),
            ("archxz/xz/inside.txt", "inside xz\n"),
        ],
    );
    std::fs::set_permissions(ctx.join("exec.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(ctx.join("a.txt"), std::fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("a.txt", ctx.join("link")).unwrap();
    run(Command::new("tar")
        .arg("-czf")
        .arg(ctx.join("archive.tar.gz"))
        .arg("-C")
        .arg(ctx.join("arch"))
        .arg("top"))
    .success();
    run(Command::new("tar")
        .arg("-cJf")
        .arg(ctx.join("archive.tar.xz"))
        .arg("-C")
        .arg(ctx.join("archxz"))
        .arg("xz"))
    .success();

    let fs = build_local(dir.path(), &ctx, &[]);

    // Globs.
    assert_eq!(read(&fs.join("globbed/a.txt")), "A\n");
    assert_eq!(read(&fs.join("globbed/b.txt")), "B\n");
    assert!(!fs.join("globbed/c.log").exists());
    // A directory source copies its contents, not the directory itself.
    assert_eq!(read(&fs.join("dircontents/g.txt")), "G\n");
    assert_eq!(read(&fs.join("dircontents/sub/f.txt")), "F\n");
    assert!(!fs.join("dircontents/dir").exists());
    // Trailing slash: into the directory; without: the file itself.
    assert!(fs.join("file-no-slash").is_file());
    assert_eq!(read(&fs.join("intodir/a.txt")), "A\n");
    // Modes: kept (outside git), or set by --chmod.
    assert_eq!(
        mode(&fs.join("file-no-slash")),
        0o640,
        "COPY keeps the mode"
    );
    assert_eq!(mode(&fs.join("exec.sh")), 0o755);
    assert_eq!(mode(&fs.join("chmod-octal")), 0o755);
    assert_eq!(mode(&fs.join("chmod-symbolic")), 0o750);
    // Owners: root by default; --chown by name (from the image's /etc/passwd), ids, user only.
    assert_eq!(owner(&fs.join("file-no-slash")), (0, 0));
    assert_eq!(owner(&fs.join("chown-name")), (1000, 1000));
    assert_eq!(owner(&fs.join("chown-ids")), (1234, 5678));
    assert_eq!(
        owner(&fs.join("chown-user-only")),
        (1001, 1002),
        "a user without a group gets its primary group"
    );
    // --exclude, --parents, --link, heredoc.
    assert_eq!(read(&fs.join("excluded/keep.txt")), "keep\n");
    assert!(!fs.join("excluded/drop.log").exists());
    assert_eq!(read(&fs.join("parents/dir/sub/f.txt")), "F\n");
    assert!(!fs.join("parents/f.txt").exists());
    assert_eq!(read(&fs.join("linked")), "A\n");
    assert_eq!(read(&fs.join("etc/x")), "hello heredoc\n");
    // ADD extracts local archives (gzip and xz); COPY does not.
    assert_eq!(read(&fs.join("extracted/top/inside.txt")), "inside gz\n");
    assert_eq!(read(&fs.join("extracted-xz/xz/inside.txt")), "inside xz\n");
    assert_eq!(
        std::fs::read(fs.join("not-extracted.tar.gz")).unwrap(),
        std::fs::read(ctx.join("archive.tar.gz")).unwrap()
    );
    // A source that is a symlink is followed (BuildKit): its target's content and mode under
    // the link's name.
    let link = fs.join("copied-link");
    assert!(std::fs::symlink_metadata(&link).unwrap().is_file());
    assert_eq!(read(&link), "A\n");
    assert_eq!(mode(&link), 0o640);
}

fn ignore_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    write_tree(
        &ctx,
        &[
            ("Dockerfile", "FROM scratch\nCOPY . /app/\n"),
            ("build.Dockerfile", "FROM scratch\nCOPY . /app/\n"),
            (
                ".dockerignore",
                "*.log\nsecret/\n!keep.log\nDockerfile\n*.Dockerfile*\n",
            ),
            ("build.Dockerfile.dockerignore", "app.txt\n"),
            ("app.txt", "app\n"),
            ("debug.log", "debug\n"),
            ("keep.log", "keep\n"),
            ("secret/key", "k\n"),
        ],
    );
    ctx
}

#[test]
fn dockerignore_excludes_files_with_exceptions() {
    let dir = scratch();
    let ctx = ignore_context(dir.path());
    let fs = build_local(dir.path(), &ctx, &[]);
    let app = fs.join("app");
    assert_eq!(read(&app.join("app.txt")), "app\n");
    assert_eq!(
        read(&app.join("keep.log")),
        "keep\n",
        "`!keep.log` re-includes it"
    );
    assert!(!app.join("debug.log").exists());
    assert!(!app.join("secret").exists());
    assert!(!app.join("Dockerfile").exists());
}

#[test]
fn dockerfile_specific_ignore_file_takes_precedence() {
    let dir = scratch();
    let ctx = ignore_context(dir.path());
    let df = ctx.join("build.Dockerfile");
    let fs = build_local(dir.path(), &ctx, &["-f", df.to_str().unwrap()]);
    let app = fs.join("app");
    assert!(
        !app.join("app.txt").exists(),
        "build.Dockerfile.dockerignore applies"
    );
    assert_eq!(
        read(&app.join("debug.log")),
        "debug\n",
        ".dockerignore is not read when <Dockerfile>.dockerignore exists"
    );
    assert!(app.join("secret/key").exists());
}

#[test]
fn a_file_copied_onto_an_existing_directory_goes_inside_it() {
    // BuildKit (fsutil copy, prepareTargetDir): a non-directory source whose destination exists
    // as a directory is copied to <dest>/<basename>, with or without a trailing slash.
    let dir = scratch();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM scratch\nCOPY a.txt /existing/\nCOPY notes.md /existing\n",
            ),
            ("a.txt", "A\n"),
            ("notes.md", "notes\n"),
        ],
    );
    let fs = build_local(dir.path(), &ctx, &[]);
    assert!(
        fs.join("existing").is_dir(),
        "/existing must stay a directory"
    );
    assert_eq!(read(&fs.join("existing/a.txt")), "A\n");
    assert_eq!(read(&fs.join("existing/notes.md")), "notes\n");
}

#[test]
fn workdir_and_copy_below_tmp_keep_it_sticky_for_later_runs() {
    // BuildKit's layers for `WORKDIR /tmp/x` and `COPY f /tmp/y/` hold `tmp/` as it is below
    // (1777). Without it a layer applied on its own (rbuild's snapshots, Docker's overlay2)
    // re-creates /tmp 0755: a non-root RUN could not write there, and a root RUN that did
    // carried the 0755 into the image.
    let dir = scratch();
    let base = dir.path().join("base");
    if !rbuild_tests::build::busybox_rootfs(&base.join("rootfs")) {
        return;
    }
    std::fs::set_permissions(
        base.join("rootfs/tmp"),
        std::fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    std::fs::write(base.join("Dockerfile"), "FROM scratch\nCOPY rootfs/ /\n").unwrap();
    build(
        &dir.path().join("store"),
        &base,
        &["--tag", "localhost/i13/sticky-tmp:1"],
    )
    .success();
    let ctx = dir.path().join("ctx");
    write_tree(
        &ctx,
        &[
            (
                "Dockerfile",
                "FROM localhost/i13/sticky-tmp:1\nWORKDIR /tmp/x\nCOPY f /tmp/y/\nUSER app\nRUN touch /tmp/by-app\nUSER root\nRUN touch /tmp/by-root\n",
            ),
            ("f", "f\n"),
        ],
    );
    let fs = build_local(dir.path(), &ctx, &[]);
    assert_eq!(mode(&fs.join("tmp")), 0o1777);
    assert_eq!(owner(&fs.join("tmp/by-app")), (1000, 1000));
    assert!(fs.join("tmp/by-root").is_file());
}

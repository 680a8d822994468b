//! rbuild where CI runs it: inside `docker run` with Docker's default capabilities and seccomp
//! profile (a GitLab Kubernetes-executor pod, a GitHub container job, a Kubernetes Job), on the
//! rbuild image that `image/Dockerfile` makes — built here by the rbuild under test, exactly as
//! the README says, FROM a Debian base made with debootstrap (there is no Docker Hub here).
//!
//! The pieces are made once per test process and shared: the Debian root filesystem (once per
//! suite run: `RBUILD_TEST_SCRATCH` holds it, a file lock keeps two test binaries from making
//! it twice), the base and rbuild images (pushed to the test registry, from where each test's
//! private `dockerd` pulls them: Docker trusts 127.0.0.0/8 over plain HTTP).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::build::{busybox_base_with, write_tree};
use crate::differential::buildkit::{self, Dockerd};
use crate::{rbuild, rbuild_bin, repo_root, run, test_registry, Run};

/// Why these tests cannot run here (tools or the registry missing), or `None`.
pub fn unavailable() -> Option<String> {
    if let Some(why) = buildkit::unavailable() {
        return Some(why);
    }
    for tool in ["debootstrap", "tar"] {
        if !crate::have_tool(tool) {
            return Some(format!("{tool} is not installed"));
        }
    }
    if test_registry().is_none() {
        return Some(
            "no test registry (RBUILD_TEST_REGISTRY; bash tests/run.sh starts one)".into(),
        );
    }
    None
}

/// The images the container tests use, in the test registry.
#[derive(Debug, Clone)]
pub struct Images {
    pub registry: String,
    /// The rbuild image (`image/Dockerfile`).
    pub rbuild: String,
    /// The busybox base the tests' Dockerfiles build FROM.
    pub busybox: String,
}

/// Makes (once per process) and returns the images.
pub fn images() -> Result<Images, String> {
    static IMAGES: OnceLock<Result<Images, String>> = OnceLock::new();
    IMAGES.get_or_init(make_images).clone()
}

fn make_images() -> Result<Images, String> {
    let registry = test_registry().ok_or("no test registry")?;
    // Kept for the process (the suite's scratch directory goes when tests/run.sh ends).
    let dir = crate::scratch().keep();
    let store = dir.join("store");
    let busybox = format!("{registry}/rbuild-e2e/busybox:1");
    if !busybox_base_with(&dir.join("busybox"), &store, &busybox, &["--push"]) {
        return Err("busybox is not installed".into());
    }

    // The Debian base: the debootstrap tree as one layer, built by rbuild FROM scratch.
    let base_ctx = dir.join("debian-base");
    debian_base_context(&debian_rootfs()?, &base_ctx)?;
    let debian = format!("{registry}/rbuild-e2e/debian:bookworm");
    check(
        run(rbuild(&store).arg("build").arg(&base_ctx).args([
            "--progress",
            "quiet",
            "--push",
            "--tag",
            &debian,
        ])),
        "building the Debian base",
    )?;

    // The rbuild image, as the README says: from a tree laid out like the repository (its
    // image/Dockerfile and the ignore file beside it, the binary at target/release/rbuild).
    let ctx = dir.join("rbuild-image");
    let root = repo_root();
    for f in ["image/Dockerfile", "image/Dockerfile.dockerignore"] {
        std::fs::create_dir_all(ctx.join("image")).map_err(|e| e.to_string())?;
        std::fs::copy(root.join(f), ctx.join(f)).map_err(|e| format!("{f}: {e}"))?;
    }
    let bin = ctx.join("target/release/rbuild");
    std::fs::create_dir_all(bin.parent().ok_or("no parent")?).map_err(|e| e.to_string())?;
    // The debug binary without its debug info: a quarter of the bytes to compress and pull.
    let stripped = run(Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&bin)
        .arg(rbuild_bin()));
    if stripped.code != 0 {
        std::fs::copy(rbuild_bin(), &bin).map_err(|e| e.to_string())?;
    }
    let image = format!("{registry}/rbuild-e2e/rbuild:test");
    check(
        run(rbuild(&store)
            .current_dir(&ctx)
            .args(["-f", "image/Dockerfile", "--progress", "quiet"])
            .args(["--build-arg", &format!("BASE={debian}")])
            .args(["--tag", &image, "--push", "."])),
        "building the rbuild image from image/Dockerfile",
    )?;
    Ok(Images {
        registry,
        rbuild: image,
        busybox,
    })
}

fn check(r: Run, what: &str) -> Result<(), String> {
    if r.code == 0 {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}):\n{}\n{}",
            r.code, r.stdout, r.stderr
        ))
    }
}

/// Lays out at `ctx` a build context whose Dockerfile makes the root filesystem `rootfs` an
/// image of one layer (`FROM scratch`, `ADD rootfs.tar /`; `/dev`, `/proc`, `/sys` emptied).
pub fn debian_base_context(rootfs: &Path, ctx: &Path) -> Result<(), String> {
    std::fs::create_dir_all(ctx).map_err(|e| e.to_string())?;
    let tar = run(Command::new("tar")
        .args([
            "--numeric-owner",
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
            "-C",
        ])
        .arg(rootfs)
        .arg("-cf")
        .arg(ctx.join("rootfs.tar"))
        .arg("."));
    check(tar, "tar of the Debian root filesystem")?;
    write_tree(
        ctx,
        &[(
            "Dockerfile",
            "FROM scratch\nADD rootfs.tar /\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nCMD [\"bash\"]\n",
        )],
    );
    Ok(())
}

/// A Debian bookworm minbase with `ca-certificates` and `uidmap` (what the rbuild image's
/// packages step looks for) and the host's extra CA certificates (the machine's HTTPS proxy):
/// made once per suite run under `RBUILD_TEST_SCRATCH` (else once per machine, under the
/// temporary directory), whichever test binary asks first.
pub fn debian_rootfs() -> Result<PathBuf, String> {
    debian_rootfs_with("bookworm", "ca-certificates,uidmap", false)
}

/// A Debian bookworm minbase with C compilers for amd64 and arm64 (`gcc`,
/// `gcc-aarch64-linux-gnu` and their static C libraries), for the cross-compilation test; made
/// as [`debian_rootfs`] is, without the downloaded packages, documentation and translations.
pub fn debian_cross_rootfs() -> Result<PathBuf, String> {
    debian_rootfs_with(
        "bookworm-cross",
        "ca-certificates,gcc,libc6-dev,gcc-aarch64-linux-gnu,libc6-dev-arm64-cross",
        true,
    )
}

/// A debootstrap minbase tree with `include`, named `rbuild-tests-debian-NAME` (see
/// [`debian_rootfs`] for where and how often); `slim`: without the downloaded packages,
/// documentation and translations.
fn debian_rootfs_with(name: &str, include: &str, slim: bool) -> Result<PathBuf, String> {
    let parent = std::env::var_os("RBUILD_TEST_SCRATCH")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dest = parent.join(format!("rbuild-tests-debian-{name}"));
    let lock = std::fs::File::create(parent.join(format!("rbuild-tests-debian-{name}.lock")))
        .map_err(|e| format!("lock file: {e}"))?;
    // SAFETY: flock on a file we hold open; released when it is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(format!("flock: {}", std::io::Error::last_os_error()));
    }
    if dest.join(".complete").exists() {
        return Ok(dest);
    }
    let partial = parent.join(format!("rbuild-tests-debian-{name}.partial"));
    let _ = std::fs::remove_dir_all(&partial);
    check(
        run(Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={include}"),
                "bookworm",
            ])
            .arg(&partial)),
        "debootstrap",
    )?;
    // What no test reads: the downloaded packages, documentation and translations.
    let dropped = [
        "var/cache/apt/archives",
        "usr/share/doc",
        "usr/share/man",
        "usr/share/locale",
    ];
    for dir in dropped.iter().filter(|_| slim) {
        let d = partial.join(dir);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
    }
    add_host_cas(&partial)?;
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&partial, &dest).map_err(|e| e.to_string())?;
    std::fs::write(dest.join(".complete"), "").map_err(|e| e.to_string())?;
    Ok(dest)
}

/// The host's local CA certificates (`/usr/local/share/ca-certificates`), trusted in `rootfs`
/// too: RUN steps of the tests reach Debian's mirror through the machine's proxy.
fn add_host_cas(rootfs: &Path) -> Result<(), String> {
    let src = Path::new("/usr/local/share/ca-certificates");
    let Ok(entries) = std::fs::read_dir(src) else {
        return Ok(());
    };
    let dst = rootfs.join("usr/local/share/ca-certificates");
    std::fs::create_dir_all(&dst).map_err(|e| e.to_string())?;
    for e in entries.flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name())).map_err(|e| e.to_string())?;
    }
    check(
        run(Command::new("chroot")
            .arg(rootfs)
            .args(["update-ca-certificates"])),
        "update-ca-certificates in the Debian root",
    )
}

/// A private Docker engine for one test (stopped when dropped) with the rbuild image pulled.
pub struct Engine {
    dockerd: Dockerd,
    _dir: tempfile::TempDir,
    pub images: Images,
}

impl Engine {
    pub fn start() -> Result<Engine, String> {
        let images = images()?;
        // A short path: dockerd's and containerd's sockets live under it (108-byte limit).
        let dir = tempfile::Builder::new()
            .prefix("rbc-")
            .tempdir_in("/tmp")
            .map_err(|e| e.to_string())?;
        let dockerd = Dockerd::start(dir.path())?;
        let e = Engine {
            dockerd,
            _dir: dir,
            images,
        };
        check(
            run(e.docker().args(["pull", "-q", &e.images.rbuild])),
            "docker pull of the rbuild image",
        )?;
        Ok(e)
    }

    /// The engine's socket, as `DOCKER_HOST` names it.
    pub fn host(&self) -> &str {
        self.dockerd.host()
    }

    /// The `docker` client of this engine.
    pub fn docker(&self) -> Command {
        self.dockerd.docker()
    }

    /// `docker run --rm --network host` with Docker's defaults otherwise (capabilities,
    /// seccomp, no `--privileged`), ready for more `docker run` arguments; the caller adds the
    /// image and its command.
    pub fn run_cmd(&self) -> Command {
        let mut c = self.docker();
        // As `crate::rbuild` does: buildx's default provenance on push is turned off, so that
        // a push's digest is the image's (the tests compare it with the host's build).
        c.args(["run", "--rm", "--network", "host"])
            .args(["-e", "BUILDX_NO_DEFAULT_ATTESTATIONS=1"]);
        c
    }
}

//! The corpus's base image, made locally with independent tools (no Docker Hub here): Debian's
//! static busybox with its applet links, `/etc/passwd` and `/etc/group` with root and `app`
//! (1000), `/tmp` 1777, `/root` 0700, `/dev`, `/proc` and `/sys`, `/home/app` owned by app. Every mtime is fixed (0) and the
//! config's times too, so the same busybox gives the same image. Written as an OCI layout with
//! `umoci`, pushed to the suite's registry with `skopeo`, and listed with the same flattening
//! as the images under test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use super::listing::{self, Entry};
use super::unpack;

/// The base image as both builders see it.
pub struct Base {
    /// `REGISTRY/differential/busybox:1`, passed as `--build-arg BASE=…`.
    pub reference: String,
    /// Its flattened file system.
    pub entries: Vec<Entry>,
    /// sha256 over its listing (content hashes included): part of every case's key.
    pub key: String,
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// Makes the base under `work` and pushes it to `registry`.
pub fn make(work: &Path, registry: &str) -> Result<Base, String> {
    let rootfs = work.join("base-rootfs");
    lay_out(&rootfs)?;
    let layout = work.join("base-oci");
    let image = format!("{}:1", layout.display());
    sh(Command::new("umoci")
        .args(["init", "--layout"])
        .arg(&layout))?;
    sh(Command::new("umoci").args(["new", "--image", &image]))?;
    sh(Command::new("umoci")
        .args(["insert", "--history.created", EPOCH, "--image", &image])
        .arg(&rootfs)
        .arg("/"))?;
    sh(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--created",
        EPOCH,
        "--history.created",
        EPOCH,
        "--config.env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "--config.cmd=/bin/sh",
    ]))?;
    let flat = work.join("base-flat");
    unpack::unpack(&layout, "1", &flat)?;
    let entries = listing::flatten(&flat)?;
    let json = serde_json::to_vec(&entries).map_err(|e| e.to_string())?;
    let key = format!("sha256:{}", hex::encode(Sha256::digest(&json)));
    let reference = format!("{registry}/differential/busybox:1");
    sh(Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{image}"))
        .arg(format!("docker://{reference}")))?;
    Ok(Base {
        reference,
        entries,
        key,
    })
}

fn lay_out(rootfs: &Path) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("base image: {what}: {e}");
    // /dev, /proc and /sys as in real base images: a RUN's mount points are then already there.
    for d in [
        "bin", "dev", "etc", "proc", "sys", "tmp", "root", "home/app",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).map_err(|e| io(d, e))?;
    }
    let busybox = which("busybox")?;
    std::fs::copy(&busybox, rootfs.join("bin/busybox")).map_err(|e| io("copy busybox", e))?;
    std::fs::set_permissions(rootfs.join("bin/busybox"), PermissionsExt::from_mode(0o755))
        .map_err(|e| io("chmod busybox", e))?;
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .map_err(|e| io("busybox --list", e))?;
    for applet in String::from_utf8_lossy(&list.stdout)
        .lines()
        .filter(|a| !a.is_empty() && *a != "busybox")
    {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
            .map_err(|e| io(applet, e))?;
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .map_err(|e| io("passwd", e))?;
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\napp:x:1000:\n")
        .map_err(|e| io("group", e))?;
    sh(Command::new("sh")
        .arg("-ec")
        .arg(
            "chmod 0755 . bin dev etc proc sys home home/app; chmod 0644 etc/passwd etc/group; \
         chmod 1777 tmp; chmod 0700 root; chown -R 0:0 .; chown 1000:1000 home/app; \
         find . -exec touch -h -d @0 {} +",
        )
        .current_dir(rootfs))?;
    Ok(())
}

fn which(tool: &str) -> Result<String, String> {
    let out = sh(Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}")))?;
    Ok(out.trim().to_string())
}

/// Runs a command and returns its stdout, or its stderr as the error.
pub fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

//! The reference builder: Docker's BuildKit (Debian's `docker.io`). The harness starts its own
//! `dockerd` on a private socket, data root and exec root under a temporary directory (no
//! iptables, no bridge: builds use `--network host`), shares it between the cases of one run and
//! stops it when dropped. A built image leaves Docker by `docker save`; its file system goes
//! through `skopeo copy docker-archive:… oci:…` and `umoci raw unpack`; its config is read from
//! the saved archive itself (Docker's config, with the fields an OCI conversion would drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::base::{sh, Base};
use super::case::Case;
use super::outcome::{self, Outcome};
use super::unpack;

/// The Docker client; `/usr/bin/docker` is Debian's, whatever else is on PATH.
pub const DOCKER: &str = "/usr/bin/docker";

/// Why BuildKit cannot run here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    for tool in ["dockerd", "containerd", "skopeo"] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool} >/dev/null"))
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!(
                "{tool} is not installed (Debian's docker.io, skopeo)"
            ));
        }
    }
    if !Path::new(DOCKER).exists() {
        return Some(format!("{DOCKER} is not installed (Debian's docker.io)"));
    }
    None
}

/// A private `dockerd`, stopped when dropped.
pub struct Dockerd {
    child: Child,
    /// One reference build at a time: BuildKit shares an in-flight step between concurrent
    /// builds whose keys match, and proxy build args are not part of a step's key.
    building: std::sync::Mutex<()>,
    dir: PathBuf,
    host: String,
    pub version: String,
}

impl Dockerd {
    /// Starts `dockerd` with everything under `dir` and waits until it answers.
    pub fn start(dir: &Path) -> Result<Dockerd, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let host = format!("unix://{}/docker.sock", dir.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("dockerd")
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting dockerd: {e}"))?;
        let mut d = Dockerd {
            child,
            building: std::sync::Mutex::new(()),
            dir: dir.to_path_buf(),
            host,
            version: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(v) = sh(d
                .docker()
                .args(["version", "--format", "{{.Server.Version}}"]))
            {
                d.version = v.trim().to_string();
                return Ok(d);
            }
            if Instant::now() > deadline || d.child.try_wait().ok().flatten().is_some() {
                let log = std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
                return Err(format!(
                    "dockerd did not start; its log ends:\n{}",
                    outcome::tail(&log, 20)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The engine's socket, as `DOCKER_HOST` names it.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn docker(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "1")
            .env_remove("DOCKER_CONFIG");
        c
    }

    /// Builds `case` from the prepared context `ctx`; work files go under `work`.
    pub fn build(
        &self,
        case: &Case,
        ctx: &Path,
        base: &Base,
        work: &Path,
    ) -> Result<Outcome, String> {
        let tag = format!("rbuild-differential/{}:1", case.name);
        let mut cmd = self.docker();
        // --no-cache: BuildKit leaves the proxy build args out of its cache keys, so one case's
        // RUN could otherwise be answered from another case's build.
        cmd.args([
            "build",
            "--no-cache",
            "--network",
            "host",
            "--progress",
            "plain",
            "-t",
            &tag,
            "-f",
        ])
        .arg(case.dockerfile());
        for a in case.build_args(&base.reference) {
            cmd.arg("--build-arg").arg(a);
        }
        if let Some(t) = &case.spec.target {
            cmd.arg("--target").arg(t);
        }
        let _one_at_a_time = self
            .building
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = cmd
            .arg(ctx)
            .output()
            .map_err(|e| format!("docker build: {e}"))?;
        if !out.status.success() {
            return Ok(Outcome::Failed {
                error: outcome::tail(&String::from_utf8_lossy(&out.stderr), 3),
            });
        }
        let archive = work.join("docker.tar");
        sh(self.docker().args(["save", "-o"]).arg(&archive).arg(&tag))?;
        let layout = work.join("docker-oci");
        sh(Command::new("skopeo")
            .args(["copy", "-q"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:1", layout.display())))?;
        let rootfs = work.join("docker-rootfs");
        unpack::unpack(&layout, "1", &rootfs)?;
        let config = saved_config(&archive)?;
        let result = outcome::built(&base.entries, &rootfs, &config);
        let _ = sh(self.docker().args(["rmi", "-f", &tag]));
        result
    }
}

/// Docker's config document out of a `docker save` archive (manifest.json names it).
fn saved_config(archive: &Path) -> Result<Value, String> {
    let member = |name: &str| -> Result<Value, String> {
        let text = sh(Command::new("tar").arg("-xOf").arg(archive).arg(name))?;
        serde_json::from_str(&text).map_err(|e| format!("{name} in {}: {e}", archive.display()))
    };
    let manifest = member("manifest.json")?;
    let config = manifest[0]["Config"]
        .as_str()
        .ok_or_else(|| format!("{}: manifest.json names no Config", archive.display()))?
        .to_string();
    member(&config)
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // SIGTERM lets dockerd stop containerd and unmount its layers before the directory goes.
        terminate(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        unmount_under(&self.dir);
    }
}

fn terminate(pid: u32) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}

/// Lazily unmounts whatever a killed daemon left mounted under `dir`, deepest first, so that
/// removing the temporary directory cannot reach into a mount.
fn unmount_under(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in points {
        let _ = Command::new("umount").args(["-l", m]).status();
    }
}

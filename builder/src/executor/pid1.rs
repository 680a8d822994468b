//! PID 1 of the sandbox, forked by the helper into new namespaces: mounts the overlay of the
//! step's layers, pivots into it, mounts /proc, a minimal /dev, read-only /sys (runc's mounts
//! under BuildKit: no /run tmpfs, so what the command writes there stays in the layer), the
//! build's /etc/hosts and /etc/resolv.conf and the step's mounts, drops to the step's user with only fds 0-2
//! open, and execs the command. Mount targets are created after `pivot_root`, so a symlink in
//! the image resolves inside the new root; host objects (devices, /etc files, bind sources)
//! are opened with `O_PATH` before the pivot and bound through `/proc/self/fd/N` while the old
//! root is still attached, then the old root is detached.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::spec::{SandboxMount, SandboxNetwork, SandboxSpec, SecretFrom};
use super::sys::{self, io_fail, SysError, SysResult};

/// Creates `path` (absolute, in the current root) and its parents as directories.
fn mkdir_p(path: &Path) -> SysResult<()> {
    std::fs::create_dir_all(path).map_err(io_fail(format!("mkdir {}", path.display())))
}

/// Makes sure a mount point of the right kind exists at `target`.
fn mount_point(target: &Path, dir: bool) -> SysResult<()> {
    if dir {
        return mkdir_p(target);
    }
    if let Some(parent) = target.parent() {
        mkdir_p(parent)?;
    }
    if std::fs::symlink_metadata(target).is_err() {
        std::fs::File::create(target).map_err(io_fail(format!("create {}", target.display())))?;
    }
    Ok(())
}

fn fd_path(fd: libc::c_int) -> String {
    format!("/proc/self/fd/{fd}")
}

fn bind_fd(fd: libc::c_int, target: &Path, readonly: bool) -> SysResult<()> {
    sys::mount(
        &fd_path(fd),
        target,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )?;
    if readonly {
        sys::remount_bind_readonly(target, libc::MS_NOSUID | libc::MS_NODEV)?;
    }
    Ok(())
}

fn escape_lower(p: &Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
        .replace(',', "\\,")
}

/// Where the old root sits between `pivot_root` and its detach (relative to the merged dir,
/// which is the current directory then); it is removed before the command runs.
pub const OLD_ROOT_IN_MERGED: &str = ".rbuild-oldroot";

/// Longest `lowerdir=` list rbuild puts in one mount (mount options must fit in one page).
const MAX_LOWERDIR: usize = 3000;

/// The store's snapshot directory when every lower is in it (`snapshots/<name>/tree`), or
/// another directory holding them all directly.
fn common_dir(lowers: &[PathBuf]) -> Option<&Path> {
    let first = lowers.first()?;
    first
        .ancestors()
        .skip(1)
        .take(2)
        .find(|dir| !dir.as_os_str().is_empty() && lowers.iter().all(|p| p.starts_with(dir)))
}

/// The `lowerdir=` value for the step's overlay. Layers are named relative to the store's
/// snapshot directory (the current directory then) to keep it short; when they still do not fit
/// in one page, groups of layers are first mounted as read-only overlays under the scratch
/// directory and those are the lower layers (overlayfs allows this one level of nesting).
fn lowerdir(spec: &SandboxSpec) -> SysResult<String> {
    if spec.lowers.is_empty() {
        return Ok(escape_lower(&spec.empty_lower));
    }
    let common = common_dir(&spec.lowers);
    if let Some(dir) = common {
        sys::chdir(dir)?;
    }
    // Bottom first.
    let names: Vec<String> = spec
        .lowers
        .iter()
        .map(|p| match common.and_then(|dir| p.strip_prefix(dir).ok()) {
            Some(rel) if !rel.as_os_str().is_empty() => escape_lower(rel),
            _ => escape_lower(p),
        })
        .collect();
    let top_first = |v: &[String]| v.iter().rev().cloned().collect::<Vec<_>>().join(":");
    if names.iter().map(|n| n.len() + 1).sum::<usize>() <= MAX_LOWERDIR {
        return Ok(top_first(&names));
    }
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    let mut len = 0;
    for n in names {
        if len + n.len() + 1 > MAX_LOWERDIR {
            groups.push(Vec::new());
            len = 0;
        }
        len += n.len() + 1;
        groups.last_mut().expect("groups is never empty").push(n);
    }
    let mut mounted = Vec::new();
    for (k, g) in groups.iter().enumerate() {
        if let [single] = g.as_slice() {
            mounted.push(single.clone());
            continue;
        }
        let target = spec.scratch.join(format!("lower-{k}"));
        mkdir_p(&target)?;
        sys::mount(
            "overlay",
            &target,
            Some("overlay"),
            libc::MS_RDONLY,
            Some(&format!(
                "lowerdir={}{}",
                top_first(g),
                sys::overlay_xattr_option()
            )),
        )?;
        mounted.push(escape_lower(&target));
    }
    Ok(top_first(&mounted))
}

/// The image's device nodes, kept as placeholders in the store, become real nodes here, in
/// the overlay (so in the step's upper directory, inside its 0700 scratch directory), before
/// anything of the image runs: the command sees them as with BuildKit. The engine takes back
/// the untouched ones afterwards (`solver::run::devices`).
fn materialize_devices(spec: &SandboxSpec) -> SysResult<()> {
    for d in &spec.devices {
        let p = d.placeholder();
        rbuild_layers::device::materialize(&spec.merged, &p).map_err(io_fail(format!(
            "making device node /{} ({}:{})",
            String::from_utf8_lossy(&p.path),
            p.record.major,
            p.record.minor
        )))?;
    }
    Ok(())
}

/// Mounts the step's overlay at `spec.merged`.
fn mount_overlay(spec: &SandboxSpec) -> SysResult<()> {
    let lowers = lowerdir(spec)?;
    let data = format!(
        "lowerdir={lowers},upperdir={},workdir={},{}",
        escape_lower(&spec.upper),
        escape_lower(&spec.work),
        sys::overlay_step_options()
    );
    // `volatile` (Linux 5.10, overlayfs.rst "Volatile mount"): the step's `fsync`s (dpkg makes
    // one per unpacked file) and the sync of the upper filesystem when the namespace unmounts
    // the overlay are skipped. The upper directory is scratch: its files are read back from the
    // page cache into a layer that the store syncs, and a crash mid-step discards it, so
    // nothing is lost. Older kernels refuse the option (EINVAL): mounted without it.
    let volatile = format!("{data},volatile");
    match sys::mount("overlay", &spec.merged, Some("overlay"), 0, Some(&volatile)) {
        Err(e) if e.source.raw_os_error() == Some(libc::EINVAL) => {
            sys::mount("overlay", &spec.merged, Some("overlay"), 0, Some(&data))
        }
        other => other,
    }
}

const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Never constructed: `setup` returns only on failure.
pub(super) enum Never {}

/// Sets up the root and execs the command; returns only on failure.
pub(super) fn setup(spec: &SandboxSpec) -> SysResult<Never> {
    sys::parent_death_signal(libc::SIGKILL)?;
    // A mount namespace of PID 1's own: pivot_root switches the root of every process of the
    // namespace, and the helper must keep the host's view to clean up after a kill.
    sys::unshare(libc::CLONE_NEWNS, "a mount namespace for PID 1")?;
    if spec.network == SandboxNetwork::None {
        sys::loopback_up()?;
    }
    sys::sethostname(&spec.hostname)?;

    // 1. The overlay: top layer first in lowerdir (rootless with a copied root: that copy).
    if spec.copy_root {
        // pivot_root needs a mount point.
        sys::mount(
            &spec.merged.to_string_lossy(),
            &spec.merged,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
    } else {
        mount_overlay(spec)?;
    }
    materialize_devices(spec)?;

    // 2. Host objects reachable only before the pivot: keep O_PATH fds to them.
    let mut dev_fds = Vec::new();
    for d in DEVICES {
        dev_fds.push((d, sys::open_path(&Path::new("/dev").join(d))?));
    }
    // The host's /sys, bound where sysfs cannot be mounted (a user namespace that does not own
    // the network namespace: rootless with the host network).
    let host_sys = sys::open_path(Path::new("/sys"))?;
    let mut etc_fds = Vec::new();
    for (name, src) in &spec.etc_files {
        etc_fds.push((name.clone(), sys::open_path(src)?));
    }
    let mut bind_fds = Vec::new();
    let mut secrets = Vec::new();
    for m in &spec.mounts {
        match m {
            SandboxMount::Bind { source, .. } => bind_fds.push(sys::open_path(source)?),
            SandboxMount::Secret { id, from, .. } => {
                let value = match from {
                    Some(SecretFrom::File(p)) => {
                        Some(std::fs::read(p).map_err(io_fail(format!("reading secret {id:?}")))?)
                    }
                    Some(SecretFrom::Env(var)) => {
                        std::env::var_os(var).map(|v| v.as_bytes().to_vec())
                    }
                    None => None,
                };
                secrets.push(value.unwrap_or_default());
            }
            SandboxMount::Tmpfs { .. } => {}
        }
    }

    // 3. Into the new root.
    sys::chdir(&spec.merged)?;
    mkdir_p(Path::new(OLD_ROOT_IN_MERGED))?;
    sys::pivot_to_cwd(Path::new(OLD_ROOT_IN_MERGED))?;
    let nosuid_nodev_noexec = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    mkdir_p(Path::new("/proc"))?;
    sys::mount(
        "proc",
        Path::new("/proc"),
        Some("proc"),
        nosuid_nodev_noexec,
        None,
    )?;

    // 4. A minimal /dev on a tmpfs (never in the layer).
    let dev = Path::new("/dev");
    mkdir_p(dev)?;
    sys::mount(
        "tmpfs",
        dev,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    )?;
    for (name, fd) in &dev_fds {
        let t = dev.join(name);
        mount_point(&t, false)?;
        bind_fd(*fd, &t, false)?;
    }
    mkdir_p(&dev.join("pts"))?;
    sys::mount(
        "devpts",
        &dev.join("pts"),
        Some("devpts"),
        libc::MS_NOSUID | libc::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    mkdir_p(&dev.join("shm"))?;
    let shm_size = spec.shm_size.unwrap_or(super::limits::DEFAULT_SHM_SIZE);
    sys::mount(
        "shm",
        &dev.join("shm"),
        Some("tmpfs"),
        nosuid_nodev_noexec,
        Some(&format!("mode=1777,size={shm_size}")),
    )?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        symlink(target, dev.join(link)).map_err(io_fail(format!("symlink /dev/{link}")))?;
    }

    // 5. /sys read-only.
    let sysdir = Path::new("/sys");
    mkdir_p(sysdir)?;
    match sys::mount(
        "sysfs",
        sysdir,
        Some("sysfs"),
        nosuid_nodev_noexec | libc::MS_RDONLY,
        None,
    ) {
        // Only the owner of the network namespace may mount sysfs: rootless with the host's
        // network gets the host's /sys, read-only (as rootless Podman does).
        Err(e) if e.source.raw_os_error() == Some(libc::EPERM) => {
            sys::mount(
                &fd_path(host_sys),
                sysdir,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            sys::remount_bind_readonly(sysdir, nosuid_nodev_noexec)?;
        }
        other => other?,
    }

    // 6. /etc/resolv.conf and hosts (an image's symlink there is left alone).
    for (name, fd) in &etc_fds {
        let t = Path::new("/etc").join(name);
        match std::fs::symlink_metadata(&t) {
            Ok(m) if !m.is_file() => continue,
            _ => {}
        }
        mount_point(&t, false)?;
        bind_fd(*fd, &t, true)?;
    }

    // 7. The step's mounts, in order.
    let mut env = spec.env.clone();
    let mut binds = bind_fds.into_iter();
    let mut values = secrets.into_iter();
    let secret_dir = Path::new("/dev/.rbuild-secrets");
    let mut secret_n = 0;
    for m in &spec.mounts {
        match m {
            SandboxMount::Bind {
                target, readonly, ..
            } => {
                let fd = binds.next().ok_or_else(|| SysError {
                    op: "bind mount list".into(),
                    source: std::io::Error::from_raw_os_error(libc::EINVAL),
                })?;
                let t = Path::new(target);
                let is_dir = std::fs::metadata(fd_path(fd)).is_ok_and(|m| m.is_dir());
                mount_point(t, is_dir)?;
                bind_fd(fd, t, *readonly)?;
            }
            SandboxMount::Tmpfs { target, size } => {
                let t = Path::new(target);
                mkdir_p(t)?;
                let data = size.map(|s| format!("size={s}"));
                sys::mount(
                    "tmpfs",
                    t,
                    Some("tmpfs"),
                    libc::MS_NOSUID | libc::MS_NODEV,
                    data.as_deref(),
                )?;
            }
            SandboxMount::Secret {
                target,
                env: var,
                mode,
                uid,
                gid,
                ..
            } => {
                let value = values.next().unwrap_or_default();
                if let Some(var) = var {
                    env.retain(|e| !e.starts_with(&format!("{var}=")));
                    env.push(format!("{var}={}", String::from_utf8_lossy(&value)));
                }
                if let Some(target) = target {
                    if secret_n == 0 {
                        mkdir_p(secret_dir)?;
                        sys::mount(
                            "tmpfs",
                            secret_dir,
                            Some("tmpfs"),
                            nosuid_nodev_noexec,
                            Some("mode=700"),
                        )?;
                    }
                    let file = secret_dir.join(secret_n.to_string());
                    secret_n += 1;
                    write_secret(&file, &value, *mode, *uid, *gid)?;
                    let t = Path::new(target);
                    mount_point(t, false)?;
                    let fd = sys::open_path(&file)?;
                    bind_fd(fd, t, true)?;
                    // SAFETY: closes our own fd.
                    unsafe { libc::close(fd) };
                }
            }
        }
    }
    if secret_n > 0 {
        // The bound files stay; the directory holding them disappears from /dev.
        sys::umount2(secret_dir, libc::MNT_DETACH)?;
        let _ = std::fs::remove_dir(secret_dir);
    }

    // The host's tree goes away: nothing of it is reachable from the command.
    let old_root = Path::new("/").join(OLD_ROOT_IN_MERGED);
    sys::umount2(&old_root, libc::MNT_DETACH)?;
    std::fs::remove_dir(&old_root).map_err(io_fail(format!("rmdir {}", old_root.display())))?;

    // 8. Working directory (created like runc does), identity, fds, exec.
    let cwd = Path::new(&spec.cwd);
    mkdir_p(cwd)?;
    sys::chdir(cwd)?;
    super::limits::apply(&spec.ulimits)?;
    sys::set_identity(spec.uid, spec.gid, &spec.groups)?;
    sys::cloexec_from(3)?;
    exec(&spec.argv, &env)
}

fn write_secret(file: &Path, value: &[u8], mode: u32, uid: u32, gid: u32) -> SysResult<()> {
    let op = || format!("writing a secret to {}", file.display());
    let mut f = std::fs::File::create(file).map_err(io_fail(op()))?;
    f.write_all(value).map_err(io_fail(op()))?;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io_fail(op()))?;
    std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(io_fail(op()))?;
    Ok(())
}

/// Finds `name` in the `PATH` of `env` (the process's own PATH is rbuild's, not the image's).
pub(super) fn lookup(name: &str, env: &[String]) -> PathBuf {
    if name.contains('/') {
        return PathBuf::from(name);
    }
    let path = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(super::DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(name);
        if std::fs::metadata(&p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0) {
            return p;
        }
    }
    PathBuf::from(name)
}

pub(super) fn exec(argv: &[String], env: &[String]) -> SysResult<Never> {
    let Some(first) = argv.first() else {
        return Err(SysError {
            op: "exec: the command is empty".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    };
    let prog = lookup(first, env);
    let cprog = sys::cstring(prog.as_os_str().as_bytes(), "program")?;
    let cargs = argv
        .iter()
        .map(|a| sys::cstring(a.as_bytes(), "argument"))
        .collect::<SysResult<Vec<_>>>()?;
    let cenv = env
        .iter()
        .map(|e| sys::cstring(e.as_bytes(), "environment variable"))
        .collect::<SysResult<Vec<_>>>()?;
    let mut pargs: Vec<*const libc::c_char> = cargs.iter().map(|c| c.as_ptr()).collect();
    pargs.push(std::ptr::null());
    let mut penv: Vec<*const libc::c_char> = cenv.iter().map(|c| c.as_ptr()).collect();
    penv.push(std::ptr::null());
    // SAFETY: NUL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::execve(cprog.as_ptr(), pargs.as_ptr(), penv.as_ptr()) };
    Err(SysError {
        op: format!("exec {first:?} ({})", prog.display()),
        source: std::io::Error::last_os_error(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowers_are_named_relative_to_the_snapshot_directory() {
        let l = |s: &str| PathBuf::from(s);
        let snaps = [l("/st/snapshots/v2-a/tree"), l("/st/snapshots/v2-b/tree")];
        assert_eq!(common_dir(&snaps), Some(Path::new("/st/snapshots")));
        let flat = [l("/s/1"), l("/s/2")];
        assert_eq!(common_dir(&flat), Some(Path::new("/s")));
        assert_eq!(common_dir(&[l("/a/x/tree"), l("/b/y/tree")]), None);
    }

    #[test]
    fn programs_are_found_in_the_images_path_not_rbuilds() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(bin.join("data"), "").unwrap();
        let env = vec![format!("PATH=/nonexistent:{}", bin.display())];
        assert_eq!(lookup("tool", &env), tool);
        // Not executable: left for execve to report.
        assert_eq!(lookup("data", &env), PathBuf::from("data"));
        assert_eq!(lookup("./rel/x", &env), PathBuf::from("./rel/x"));
        assert_eq!(lookup("/abs", &env), PathBuf::from("/abs"));
    }
}

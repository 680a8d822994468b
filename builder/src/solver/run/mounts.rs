//! `RUN --mount`s turned into sandbox mounts: cache directories in the store (with `locked`
//! held by flock), secrets (sources only: the helper reads the values), tmpfs, and bind sources
//! prepared on the host — a stage mounted read-only (or writable over a throw-away upper), or
//! the context subtree laid out as the context sees it — and ssh agents (a relaying socket of
//! rbuild's, see [`super::ssh`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::ssh::AgentProxy;
use super::{PreparedRun, RunError};
use crate::context::Context;
use crate::dockerfile::{CacheSharing, MountSpec};
use crate::executor::{SandboxMount, SecretFrom};
use crate::solver::inputs::SecretSource;
use crate::solver::rootfs::{MountGuard, RootFs};
use crate::solver::stage::StageState;
use crate::solver::{BuildError, Engine};

/// The source of a `RUN --mount=type=bind`.
pub(super) enum BindFrom {
    Stage(Arc<StageState>),
    Context(Arc<Context>),
}

pub(super) fn io(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    BuildError::io(what, p.to_path_buf())
}

/// Holds what must outlive the command: cache-mount locks, mounts, ssh agent relays.
pub(super) struct Held {
    _locks: Vec<std::fs::File>,
    _agents: Vec<AgentProxy>,
    _mounts: Vec<MountGuard>,
    _overlays: Vec<UnmountOnDrop>,
}

/// A writable overlay rbuild mounted (in its private mount namespace) for an `rw` bind.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        // Detach: nothing may keep it busy once the sandbox is gone; errors leave a mount that
        // dies with rbuild's private namespace anyway.
        let _ = crate::executor::sys::umount2(&self.0, libc::MNT_DETACH);
    }
}

/// Turns the RUN's `--mount`s into sandbox mounts (host paths prepared), keeping locks; with
/// `exclusive_caches` (the chroot mode, which moves directories themselves into the step's
/// root), a `sharing=shared` cache is locked like a `locked` one and a stage to bind is copied,
/// not mounted.
pub(super) fn sandbox_mounts(
    engine: &Engine<'_>,
    p: &PreparedRun,
    scratch: &Path,
    exclusive_caches: bool,
) -> Result<(Vec<SandboxMount>, Held), BuildError> {
    let mounts = &p.mounts;
    let mut binds = p.binds.iter();
    let mut seeds = p.cache_seeds.iter();
    let mut out = Vec::new();
    let mut locks = Vec::new();
    let mut guards = Vec::new();
    let mut overlays = Vec::new();
    let mut agents = Vec::new();
    let mut ssh_n = 0;
    for (n, m) in mounts.iter().enumerate() {
        match m {
            MountSpec::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let target = ssh_target(&p.workdir, target.as_deref(), ssh_n);
                ssh_n += 1;
                let id = ssh_id(id.as_deref());
                let Some(agent) = engine.opts.ssh.iter().find(|s| s.id == id) else {
                    if *required {
                        return Err(BuildError::Run(RunError::MissingSsh(id.to_owned())));
                    }
                    // BuildKit: an optional agent that is not forwarded is not mounted.
                    continue;
                };
                let proxy = AgentProxy::start(
                    &agent.socket,
                    scratch,
                    &format!("ssh-{n}.sock"),
                    mode.unwrap_or(0o600),
                    uid.unwrap_or(0),
                    gid.unwrap_or(0),
                )
                .map_err(|e| BuildError::Run(RunError::SshRelay(id.to_owned(), e)))?;
                out.push(SandboxMount::Bind {
                    source: proxy.path().to_path_buf(),
                    target,
                    readonly: false,
                });
                agents.push(proxy);
            }
            MountSpec::Tmpfs { target, size } => out.push(SandboxMount::Tmpfs {
                target: in_workdir(&p.workdir, target),
                size: *size,
            }),
            MountSpec::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } => {
                let id = id
                    .clone()
                    .or_else(|| target.as_ref().map(|t| base_name(t)))
                    .unwrap_or_default();
                let given = engine.opts.secrets.iter().find(|s| s.id == id);
                let from = match given.map(|s| &s.source) {
                    Some(SecretSource::File(p)) => Some(SecretFrom::File(p.clone())),
                    Some(SecretSource::Env(v)) => Some(SecretFrom::Env(v.clone())),
                    None if *required => {
                        return Err(BuildError::Run(RunError::MissingSecret(id)));
                    }
                    None => continue,
                };
                let target = match (target, env) {
                    (Some(t), _) => Some(in_workdir(&p.workdir, t)),
                    (None, Some(_)) => None,
                    (None, None) => Some(format!("/run/secrets/{id}")),
                };
                out.push(SandboxMount::Secret {
                    id,
                    from,
                    target,
                    env: env.clone(),
                    mode: mode.unwrap_or(0o400),
                    uid: uid.unwrap_or(0),
                    gid: gid.unwrap_or(0),
                });
            }
            MountSpec::Cache {
                id,
                target,
                sharing,
                from,
                mode,
                uid,
                gid,
                readonly,
                ..
            } => {
                let seed = seeds.next().and_then(Option::as_ref);
                debug_assert_eq!(seed.is_some(), from.is_some());
                let id = id.clone().unwrap_or_else(|| target.clone());
                let name = rbuild_layers::Digest::sha256_of(id.as_bytes());
                let root = engine.store.cache_mounts_dir();
                let dir = if *sharing == CacheSharing::Private {
                    scratch.join(format!("cache-{n}"))
                } else {
                    super::cache_dirs::shared_dir(engine.store, &id)
                };
                if !dir.exists() {
                    // Filled aside and renamed into place, so a build that is killed (or a
                    // concurrent one) never sees a half-seeded cache.
                    let parent = dir.parent().unwrap_or(scratch);
                    std::fs::create_dir_all(parent).map_err(io("creating", parent))?;
                    let fresh = tempfile::Builder::new()
                        .prefix(".new-")
                        .tempdir_in(parent)
                        .map_err(io("creating cache mount in", parent))?;
                    if let Some((st, rel)) = seed {
                        super::cache_dirs::seed(engine, st, rel, fresh.path(), scratch, n)?;
                    } else if *sharing != CacheSharing::Private {
                        if let Some(layer) = engine.seams.imported.cache_mount(engine.store, &id) {
                            super::cache_dirs::fill_from_layer(engine, &layer, fresh.path())?;
                        }
                    }
                    std::fs::set_permissions(
                        fresh.path(),
                        std::os::unix::fs::PermissionsExt::from_mode(mode.unwrap_or(0o755)),
                    )
                    .map_err(io("setting the mode of cache mount", &dir))?;
                    std::os::unix::fs::chown(
                        fresh.path(),
                        Some(uid.unwrap_or(0)),
                        Some(gid.unwrap_or(0)),
                    )
                    .map_err(io("setting the owner of cache mount", &dir))?;
                    let fresh = fresh.keep();
                    if let Err(e) = std::fs::rename(&fresh, &dir) {
                        // Another build made it first: use theirs.
                        let _ = std::fs::remove_dir_all(&fresh);
                        if !dir.is_dir() {
                            return Err(io("creating cache mount", &dir)(e));
                        }
                    }
                }
                if *sharing == CacheSharing::Locked
                    || (exclusive_caches && *sharing == CacheSharing::Shared)
                {
                    let lock_path = root.join(format!("{}.lock", name.hex()));
                    let f = std::fs::File::create(&lock_path)
                        .map_err(|e| BuildError::Run(RunError::Lock(lock_path.clone(), e)))?;
                    // SAFETY: flock on an fd we own.
                    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) }
                        != 0
                    {
                        return Err(BuildError::Run(RunError::Lock(
                            lock_path,
                            std::io::Error::last_os_error(),
                        )));
                    }
                    locks.push(f);
                }
                out.push(SandboxMount::Bind {
                    source: dir,
                    target: in_workdir(&p.workdir, target),
                    readonly: *readonly,
                });
            }
            MountSpec::Bind {
                source, target, rw, ..
            } => {
                let from = binds
                    .next()
                    .ok_or_else(|| BuildError::Internal("bind mount sources out of step".into()))?;
                let rel = clean_rel(source.as_deref().unwrap_or("."));
                let dir = scratch.join(format!("bind-{n}"));
                let source = match from {
                    BindFrom::Stage(st) => {
                        let rootfs = crate::solver::stage::snapshot_rootfs(engine, &st.layers)?;
                        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
                        if exclusive_caches {
                            // chroot isolation: a private copy, renamed into the step's root
                            // (writes are discarded with it, as an `rw` bind's are).
                            super::readonly_view(&rootfs, &dir, true)?;
                        } else if *rw {
                            overlays.push(mount_writable(&rootfs, &dir, scratch, n)?);
                        } else {
                            guards.extend(super::readonly_view(&rootfs, &dir, false)?);
                        }
                        inside_without_symlinks(&dir, &rel)?
                    }
                    BindFrom::Context(ctx) => {
                        materialize(ctx, &rel, &dir, *rw)?;
                        dir
                    }
                };
                out.push(SandboxMount::Bind {
                    source,
                    target: in_workdir(&p.workdir, target),
                    readonly: !*rw,
                });
            }
        }
    }
    Ok((
        out,
        Held {
            _locks: locks,
            _agents: agents,
            _mounts: guards,
            _overlays: overlays,
        },
    ))
}

/// `p` cleaned to a relative context/stage path (`"."` for the root).
pub(super) fn clean_rel(p: &str) -> String {
    let c = crate::solver::rootfs::components(p).join("/");
    if c.is_empty() {
        ".".into()
    } else {
        c
    }
}

/// What a mount's `from=NAME` reads, as `COPY --from=NAME` reads it: a built stage named
/// `name` (or numbered, before `current`), else an image (or the `--build-context` that stands
/// for it; a directory one as a layer of its files), as BuildKit mounts any of them.
pub(super) fn stage_named(
    engine: &Engine<'_>,
    name: &str,
    current: usize,
) -> Result<Arc<StageState>, BuildError> {
    crate::solver::stage::resolve_from(engine, name, current)
}

/// `dir/rel`, refusing any symlink on the way: the helper opens bind sources on the host,
/// where an image's symlink would point outside the stage.
fn inside_without_symlinks(dir: &Path, rel: &str) -> Result<PathBuf, BuildError> {
    let mut p = dir.to_path_buf();
    for c in crate::solver::rootfs::components(rel) {
        p.push(c);
        let m = std::fs::symlink_metadata(&p).map_err(io("finding the bind source", &p))?;
        if m.file_type().is_symlink() {
            return Err(BuildError::Run(RunError::SymlinkSource(rel.into())));
        }
    }
    Ok(p)
}

/// Mounts `rootfs` writable at `dir` with a throw-away upper directory (writes to an `rw`
/// bind are discarded, as in BuildKit).
fn mount_writable(
    rootfs: &RootFs,
    dir: &Path,
    scratch: &Path,
    n: usize,
) -> Result<UnmountOnDrop, BuildError> {
    rootfs
        .prepare_for_overlay()
        .map_err(io("preparing the snapshots of", dir))?;
    let upper = scratch.join(format!("bind-{n}-upper"));
    let work = scratch.join(format!("bind-{n}-work"));
    let empty = scratch.join(format!("bind-{n}-empty"));
    for d in [&upper, &work, &empty] {
        std::fs::create_dir_all(d).map_err(io("creating", d))?;
    }
    let lowers = if rootfs.lowers.is_empty() {
        vec![empty]
    } else {
        rootfs.lowers.iter().rev().cloned().collect()
    };
    let esc = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
            .replace(',', "\\,")
    };
    let data = format!(
        "lowerdir={},upperdir={},workdir={}{}",
        lowers.iter().map(|p| esc(p)).collect::<Vec<_>>().join(":"),
        esc(&upper),
        esc(&work),
        crate::executor::sys::overlay_xattr_option()
    );
    crate::executor::sys::mount("overlay", dir, Some("overlay"), 0, Some(&data)).map_err(|e| {
        BuildError::Io {
            what: "mounting a writable bind source at",
            path: dir.to_path_buf(),
            source: e.source,
        }
    })?;
    Ok(UnmountOnDrop(dir.to_path_buf()))
}

/// Lays out the context subtree `rel` at `dest` as the context sees it (ignored files are not
/// there): hard links for a read-only bind, copies for an `rw` one (whose writes must not
/// reach the context).
fn materialize(ctx: &Context, rel: &str, dest: &Path, rw: bool) -> Result<(), BuildError> {
    use crate::context::EntryKind as K;
    let root = ctx.root();
    let entry = ctx
        .get(rel)
        .ok_or_else(|| BuildError::Run(RunError::NotInContext(rel.into())))?;
    let place = |src: &Path, dst: &Path, kind: &K| -> Result<(), BuildError> {
        match kind {
            K::Dir => std::fs::create_dir_all(dst).map_err(io("creating", dst)),
            K::Symlink(t) => std::os::unix::fs::symlink(t, dst).map_err(io("creating", dst)),
            K::File => {
                if rw || std::fs::hard_link(src, dst).is_err() {
                    std::fs::copy(src, dst).map_err(io("copying", src))?;
                }
                Ok(())
            }
            K::Other => Ok(()),
        }
    };
    let src = if rel == "." {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    place(&src, dest, &entry.kind)?;
    if entry.is_dir() {
        let prefix_len = if rel == "." { 0 } else { rel.len() + 1 };
        for (p, e) in ctx.walk_under(rel) {
            place(&root.join(p), &dest.join(&p[prefix_len..]), &e.kind)?;
        }
    }
    Ok(())
}

/// The id of an ssh mount (`default` when it names none, as BuildKit).
fn ssh_id(id: Option<&str>) -> &str {
    id.filter(|i| !i.is_empty())
        .unwrap_or(crate::solver::inputs::DEFAULT_ID)
}

/// Where the `n`th ssh mount of a RUN appears in the sandbox.
pub(super) fn ssh_target(workdir: &str, target: Option<&str>, n: usize) -> String {
    match target.filter(|t| !t.is_empty()) {
        Some(t) => in_workdir(workdir, t),
        None => super::ssh::default_target(n),
    }
}

/// A mount target as an absolute, clean path: a relative one is relative to the WORKDIR
/// (BuildKit's `path.Join("/", workdir, target)`).
pub(super) fn in_workdir(workdir: &str, target: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{workdir}/{target}")
    };
    format!("/{}", crate::solver::rootfs::components(&joined).join("/"))
}

fn base_name(p: &str) -> String {
    crate::solver::rootfs::components(p)
        .pop()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_mount_targets_are_relative_to_the_workdir() {
        assert_eq!(in_workdir("/w/x", "b"), "/w/x/b");
        assert_eq!(in_workdir("/w/x", "../t"), "/w/t");
        assert_eq!(in_workdir("/w/x", "/abs/"), "/abs");
        assert_eq!(in_workdir("/", "../../etc"), "/etc");
        assert_eq!(ssh_target("/w", Some("agent.sock"), 0), "/w/agent.sock");
        assert_eq!(ssh_target("/w", None, 1), "/run/buildkit/ssh_agent.1");
    }
}

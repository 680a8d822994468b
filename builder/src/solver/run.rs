//! The RUN step: what its cache key is made of, how its command line, environment, user and
//! mounts are derived from the stage (BuildKit's rules), and turning the sandbox's overlay upper
//! directory into the step's layer entries.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rbuild_layers::tar::{EntryKind, LayerEntry};

use super::key::KeyInputs;
use super::rootfs::{MountGuard, RootFs};
use super::stage::StageState;
use super::users::{parse_group, parse_passwd};
use super::{BuildError, Engine};
use crate::cli::secret::SecretSource;
use crate::dockerfile::NetworkMode;
use crate::dockerfile::{CacheSharing, MountSpec};
use crate::dockerfile::{CommandForm, RunInstruction};
use crate::executor::{self, SandboxMount, SandboxNetwork, SandboxSpec, SecretFrom, Stream};
use crate::graph::is_proxy_arg;
use crate::progress::{LogStream, StepHandle};

/// Hostname of every RUN sandbox (BuildKit's).
pub const HOSTNAME: &str = "buildkitsandbox";

/// Paths the sandbox mounts or injects; never part of a layer.
const INJECTED: [&str; 8] = [
    crate::executor::helper::OLD_ROOT_IN_MERGED,
    "proc",
    "dev",
    "sys",
    "run",
    "etc/resolv.conf",
    "etc/hosts",
    "etc/hostname",
];

/// Where a heredoc script with a `#!` line is bound inside the sandbox, as `<dir>/<NAME>`
/// (BuildKit's path; on the /dev tmpfs, so never in the layer).
const HEREDOC_DIR: &str = "/dev/pipes";

/// Why a RUN step could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("WORKDIR {0:?} is under /proc/self/fd, which would leak a host file descriptor into the sandbox (runc CVE-2024-21626)")]
    UnsafeWorkdir(String),
    #[error("invalid USER {0:?}: expected user, user:group, uid or uid:gid")]
    BadUser(String),
    #[error("unable to find user {0:?} in /etc/passwd of the image")]
    NoUser(String),
    #[error("unable to find group {0:?} in /etc/group of the image")]
    NoGroup(String),
    #[error(
        "secret {0:?} is required but was not given: pass --secret id={0},src=FILE (or env=VAR)"
    )]
    MissingSecret(String),
    #[error("RUN --mount: {0}")]
    Mount(#[from] crate::dockerfile::MountError),
    #[error("RUN --mount={0} is not supported by this version of rbuild yet; nothing was run")]
    UnsupportedMount(&'static str),
    #[error("RUN --mount=type=bind,from={0}: no stage of this Dockerfile has that name (binding an image is not supported yet)")]
    UnknownStage(String),
    #[error("RUN --mount=type=bind,source={0}: the path goes through a symlink; name the target instead")]
    SymlinkSource(String),
    #[error("RUN --mount=type=bind,source={0}: not found in the build context (or excluded by .dockerignore)")]
    NotInContext(String),
    #[error("locking cache mount {}", .0.display())]
    Lock(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Exec(#[from] executor::ExecError),
}

/// A RUN step ready to key and execute.
pub struct PreparedRun {
    pub inputs: KeyInputs,
    pub created_by: String,
    argv: Vec<String>,
    env: Vec<String>,
    workdir: String,
    user: String,
    network: SandboxNetwork,
    mounts: Vec<MountSpec>,
    /// For each `type=bind` mount (same order): where it reads from.
    binds: Vec<BindFrom>,
    /// A heredoc script: its path in the sandbox and its content.
    heredoc_script: Option<(String, String)>,
}

/// The source of a `RUN --mount=type=bind`.
enum BindFrom {
    Stage(std::sync::Arc<StageState>),
    Context(std::sync::Arc<crate::context::Context>),
}

fn shell_of(state: &StageState) -> Vec<String> {
    state
        .config
        .config
        .as_ref()
        .and_then(|c| c.shell.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

/// Whether a shell-form command is nothing but one heredoc marker (`<<EOF`, `<<-"EOF"`).
fn is_bare_heredoc(cmd: &str, name: &str) -> bool {
    let Some(rest) = cmd.trim().strip_prefix("<<") else {
        return false;
    };
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    rest.trim_matches(|c| c == '"' || c == '\'') == name
}

/// The argv of a RUN (BuildKit's `dispatchRun`): exec form as written; shell form through
/// SHELL; a command that is a single heredoc runs its body (with a `#!` line, as a script file
/// of that interpreter); other heredocs are appended to the command for the shell to read.
fn command_line(r: &RunInstruction, shell: &[String]) -> (Vec<String>, Option<(String, String)>) {
    match &r.command {
        CommandForm::Exec(v) => (v.clone(), None),
        CommandForm::Shell(cmd) => {
            if let [h] = r.heredocs.as_slice() {
                if is_bare_heredoc(cmd, &h.name) {
                    let body = h.body();
                    if body.starts_with("#!") {
                        let path = format!("{HEREDOC_DIR}/{}", h.name);
                        return (vec![path.clone()], Some((path, body)));
                    }
                    let mut argv = shell.to_vec();
                    argv.push(body);
                    return (argv, None);
                }
            }
            let mut full = cmd.clone();
            for h in &r.heredocs {
                full.push('\n');
                full.push_str(&h.content);
                if !h.content.ends_with('\n') && !h.content.is_empty() {
                    full.push('\n');
                }
                full.push_str(&h.name);
            }
            let mut argv = shell.to_vec();
            argv.push(full);
            (argv, None)
        }
    }
}

/// Computes the key and everything the sandbox needs from the stage state.
pub fn prepare(
    engine: &Engine<'_>,
    state: &StageState,
    r: &RunInstruction,
    platform: &str,
) -> Result<PreparedRun, BuildError> {
    let cfg = state.config.config.clone().unwrap_or_default();
    let shell = shell_of(state);
    let (argv, heredoc_script) = command_line(r, &shell);
    let workdir = cfg.working_dir.clone().unwrap_or_else(|| "/".into());
    if workdir == "/proc/self/fd" || workdir.starts_with("/proc/self/fd/") {
        return Err(BuildError::Run(RunError::UnsafeWorkdir(workdir)));
    }
    let user = cfg.user.clone().unwrap_or_default();
    let mut binds = Vec::new();
    let mut bind_keys = Vec::new();
    for m in &r.mounts {
        m.check_paths().map_err(|e| BuildError::Run(e.into()))?;
        if let MountSpec::Bind { source, from, .. } = m {
            // The key gets what is bound: the stage's key, or the digest of the context subtree.
            let rel = clean_rel(source.as_deref().unwrap_or("."));
            match from {
                Some(name) => {
                    let st = stage_named(engine, name, state.index)?;
                    bind_keys.push(format!("stage:{name}:{}:{rel}", st.key));
                    binds.push(BindFrom::Stage(st));
                }
                None => {
                    let ctx = engine.context()?;
                    let d = ctx
                        .content_digest(&rel)
                        .map_err(|e| BuildError::Context(std::sync::Arc::new(e)))?;
                    bind_keys.push(format!("context:{rel}:{d}"));
                    binds.push(BindFrom::Context(ctx));
                }
            }
        }
    }
    // Environment: the image's, then every ARG in scope that ENV does not set (BuildKit).
    let env_names: HashSet<&str> = cfg
        .env
        .iter()
        .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k))
        .collect();
    let mut env = cfg.env.clone();
    for (k, v) in &state.args {
        if !env_names.contains(k.as_str()) {
            env.push(format!("{k}={v}"));
        }
    }
    let key_env = env.clone();
    // Undeclared proxy build args reach the process but not the key (BuildKit).
    for (k, v) in &engine.opts.build_args {
        if is_proxy_arg(k) && !state.args.contains_key(k) && !env_names.contains(k.as_str()) {
            env.push(format!("{k}={v}"));
        }
    }
    let network = match r.network.unwrap_or(NetworkMode::Default) {
        NetworkMode::None => SandboxNetwork::None,
        NetworkMode::Default | NetworkMode::Host => SandboxNetwork::Host,
    };
    let mut args_prefix = String::new();
    if !state.args.is_empty() {
        args_prefix = format!("|{} ", state.args.len());
        for (k, v) in &state.args {
            args_prefix.push_str(&format!("{k}={v} "));
        }
    }
    let created_by = format!("RUN {args_prefix}{} # rbuild", argv.join(" "));
    let mut inputs = KeyInputs::new(
        "run",
        Some(state.key.clone()),
        format!("RUN {}", argv.join(" ")),
        platform.to_string(),
    )
    .input(
        "argv",
        serde_json::to_string(&argv).expect("strings serialise"),
    )
    .input(
        "shell",
        serde_json::to_string(&shell).expect("strings serialise"),
    )
    .input("user", user.clone())
    .input("workdir", workdir.clone())
    .input(
        "network",
        r.network.unwrap_or(NetworkMode::Default).as_str(),
    )
    .input(
        "mounts",
        serde_json::to_string(&r.mounts).expect("mount specs serialise"),
    );
    if let Some((path, body)) = &heredoc_script {
        // The script is not in argv: its content must be in the key.
        inputs = inputs.input("heredoc-script", format!("{path}\n{body}"));
    }
    if !bind_keys.is_empty() {
        inputs = inputs.input("binds", bind_keys.join("\n"));
    }
    inputs.env = key_env;
    inputs.args = state.args.clone();
    Ok(PreparedRun {
        inputs,
        created_by,
        argv,
        env,
        workdir,
        user,
        network,
        mounts: r.mounts.clone(),
        binds,
        heredoc_script,
    })
}

/// The user a RUN process runs as (runc's `GetExecUser`): uid, gid, supplementary groups, home.
fn resolve_user(spec: &str, rootfs: &RootFs) -> Result<(u32, u32, Vec<u32>, String), RunError> {
    if spec.is_empty() {
        return Ok((0, 0, Vec::new(), "/root".into()));
    }
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    if u.is_empty() || g == Some("") {
        return Err(RunError::BadUser(spec.into()));
    }
    let users = rootfs
        .read_small_file("/etc/passwd")
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    let groups = rootfs
        .read_small_file("/etc/group")
        .map(|t| parse_group(&t))
        .unwrap_or_default();
    let entry = match u.parse::<u32>() {
        Ok(uid) => users.iter().find(|e| e.uid == u64::from(uid)),
        Err(_) => Some(
            users
                .iter()
                .find(|e| e.name == u)
                .ok_or_else(|| RunError::NoUser(u.into()))?,
        ),
    };
    let to32 = |v: u64| u32::try_from(v).map_err(|_| RunError::BadUser(spec.into()));
    let uid = match (u.parse::<u32>(), entry) {
        (Ok(uid), _) => uid,
        (Err(_), Some(e)) => to32(e.uid)?,
        (Err(_), None) => return Err(RunError::NoUser(u.into())),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => to32(
                groups
                    .iter()
                    .find(|(n, _, _)| n == g)
                    .map(|(_, gid, _)| *gid)
                    .ok_or_else(|| RunError::NoGroup(g.into()))?,
            )?,
        },
        None => entry.map(|e| to32(e.gid)).transpose()?.unwrap_or(0),
    };
    let mut extra = Vec::new();
    if let Some(e) = entry {
        for (_, id, members) in &groups {
            if members.contains(&e.name) {
                let id = to32(*id)?;
                if !extra.contains(&id) {
                    extra.push(id);
                }
            }
        }
    }
    if !extra.contains(&gid) {
        extra.insert(0, gid);
    }
    let home = entry
        .map(|e| e.home.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok((uid, gid, extra, home))
}

fn io(what: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    BuildError::io(what, p.to_path_buf())
}

/// Holds what must outlive the command: cache-mount locks.
struct Held {
    _locks: Vec<std::fs::File>,
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

/// Turns the RUN's `--mount`s into sandbox mounts (host paths prepared), keeping locks.
fn sandbox_mounts(
    engine: &Engine<'_>,
    p: &PreparedRun,
    scratch: &Path,
) -> Result<(Vec<SandboxMount>, Held), BuildError> {
    let mounts = &p.mounts;
    let mut binds = p.binds.iter();
    let mut out = Vec::new();
    let mut locks = Vec::new();
    let mut guards = Vec::new();
    let mut overlays = Vec::new();
    for (n, m) in mounts.iter().enumerate() {
        match m {
            MountSpec::Tmpfs { target, size } => out.push(SandboxMount::Tmpfs {
                target: abs(target),
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
                    (Some(t), _) => Some(abs(t)),
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
                if from.is_some() {
                    return Err(BuildError::Run(RunError::UnsupportedMount(
                        "type=cache,from=…",
                    )));
                }
                let id = id.clone().unwrap_or_else(|| target.clone());
                // The id is hashed into the directory name: never a path on the host.
                let name = rbuild_layers::Digest::sha256_of(id.as_bytes());
                let root = engine.store.root().join("cache-mounts");
                let dir = if *sharing == CacheSharing::Private {
                    scratch.join(format!("cache-{n}"))
                } else {
                    root.join(name.hex())
                };
                if !dir.exists() {
                    std::fs::create_dir_all(&dir).map_err(io("creating cache mount", &dir))?;
                    std::fs::set_permissions(
                        &dir,
                        std::os::unix::fs::PermissionsExt::from_mode(mode.unwrap_or(0o755)),
                    )
                    .map_err(io("setting the mode of cache mount", &dir))?;
                    std::os::unix::fs::chown(&dir, Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0)))
                        .map_err(io("setting the owner of cache mount", &dir))?;
                }
                if *sharing == CacheSharing::Locked {
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
                    target: abs(target),
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
                        let rootfs = super::stage::snapshot_rootfs(engine, &st.layers)?;
                        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
                        if *rw {
                            overlays.push(mount_writable(&rootfs, &dir, scratch, n)?);
                        } else {
                            guards.push(
                                rootfs
                                    .mount_readonly(&dir)
                                    .map_err(io("mounting the bind source at", &dir))?,
                            );
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
                    target: abs(target),
                    readonly: !*rw,
                });
            }
        }
    }
    Ok((
        out,
        Held {
            _locks: locks,
            _mounts: guards,
            _overlays: overlays,
        },
    ))
}

/// `p` cleaned to a relative context/stage path (`"."` for the root).
fn clean_rel(p: &str) -> String {
    let c = super::rootfs::components(p).join("/");
    if c.is_empty() {
        ".".into()
    } else {
        c
    }
}

/// A built stage named `name` (or numbered, before `current`).
fn stage_named(
    engine: &Engine<'_>,
    name: &str,
    current: usize,
) -> Result<std::sync::Arc<StageState>, BuildError> {
    let idx = engine
        .plan
        .stages
        .iter()
        .find(|s| s.name.as_deref() == Some(name.to_ascii_lowercase().as_str()))
        .map(|s| s.index)
        .or_else(|| name.parse::<usize>().ok().filter(|i| *i < current));
    match idx.and_then(|i| engine.stage_result(i)) {
        Some(s) => Ok(s),
        None => Err(BuildError::Run(RunError::UnknownStage(name.into()))),
    }
}

/// `dir/rel`, refusing any symlink on the way: the helper opens bind sources on the host,
/// where an image's symlink would point outside the stage.
fn inside_without_symlinks(dir: &Path, rel: &str) -> Result<PathBuf, BuildError> {
    let mut p = dir.to_path_buf();
    for c in super::rootfs::components(rel) {
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
        "lowerdir={},upperdir={},workdir={}",
        lowers.iter().map(|p| esc(p)).collect::<Vec<_>>().join(":"),
        esc(&upper),
        esc(&work)
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
fn materialize(
    ctx: &crate::context::Context,
    rel: &str,
    dest: &Path,
    rw: bool,
) -> Result<(), BuildError> {
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

fn abs(p: &str) -> String {
    format!("/{}", super::rootfs::components(p).join("/"))
}

fn base_name(p: &str) -> String {
    super::rootfs::components(p).pop().unwrap_or_default()
}

/// Runs the prepared command on `rootfs` in a sandbox whose work files live in `scratch`, and
/// returns the layer entries of what it changed.
pub fn execute(
    engine: &Engine<'_>,
    p: &PreparedRun,
    rootfs: &RootFs,
    scratch: &Path,
    step: &StepHandle,
) -> Result<Vec<LayerEntry>, BuildError> {
    let (uid, gid, groups, home) = resolve_user(&p.user, rootfs).map_err(BuildError::Run)?;
    let mut env = p.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", executor::DEFAULT_PATH));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    let dirs = ["upper", "work", "merged", "empty"];
    for d in dirs {
        let path = scratch.join(d);
        std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
    }
    let hosts = scratch.join("hosts");
    std::fs::write(
        &hosts,
        format!("127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    )
    .map_err(io("writing", &hosts))?;
    let hostname = scratch.join("hostname");
    std::fs::write(&hostname, format!("{HOSTNAME}\n")).map_err(io("writing", &hostname))?;
    let mut etc_files = vec![
        ("hosts".to_string(), hosts),
        ("hostname".to_string(), hostname),
    ];
    if Path::new("/etc/resolv.conf").exists() {
        etc_files.push(("resolv.conf".into(), PathBuf::from("/etc/resolv.conf")));
    }
    let (mut mounts, _held) = sandbox_mounts(engine, p, scratch)?;
    if let Some((target, script)) = &p.heredoc_script {
        let path = scratch.join("heredoc");
        std::fs::write(&path, script).map_err(io("writing", &path))?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(io("setting the mode of", &path))?;
        mounts.push(SandboxMount::Bind {
            source: path,
            target: target.clone(),
            readonly: true,
        });
    }
    let mut exclude: Vec<String> = INJECTED.iter().map(|s| s.to_string()).collect();
    for m in &mounts {
        let t = match m {
            SandboxMount::Bind { target, .. } | SandboxMount::Tmpfs { target, .. } => {
                Some(target.clone())
            }
            SandboxMount::Secret { target, .. } => target.clone(),
        };
        if let Some(t) = t {
            exclude.push(t.trim_start_matches('/').to_string());
        }
    }
    let spec = SandboxSpec {
        lowers: rootfs.lowers.clone(),
        empty_lower: scratch.join("empty"),
        upper: scratch.join("upper"),
        work: scratch.join("work"),
        merged: scratch.join("merged"),
        scratch: scratch.to_path_buf(),
        argv: p.argv.clone(),
        env,
        cwd: p.workdir.clone(),
        uid,
        gid,
        groups,
        hostname: HOSTNAME.into(),
        network: p.network,
        etc_files,
        mounts,
    };
    executor::run(&spec, |stream, line| {
        let s = match stream {
            Stream::Stdout => LogStream::Stdout,
            Stream::Stderr => LogStream::Stderr,
        };
        step.log(s, line);
    })
    .map_err(|e| BuildError::Run(mask_tail(engine, e).into()))?;
    let upper = scratch.join("upper");
    let excl: Vec<&str> = exclude.iter().map(String::as_str).collect();
    let entries = rbuild_layers::tar::entries_from_overlay_upper(&upper, &excl)?;
    Ok(prune_copied_up(entries, rootfs, &excl))
}

/// The output tail of a failed command goes into the error, which the CLI prints outside the
/// progress display and its masks: mask the build's secrets in it here (their values are read
/// again only on this failure path).
fn mask_tail(engine: &Engine<'_>, e: executor::ExecError) -> executor::ExecError {
    use executor::ExecError;
    let masker = || {
        let values: Vec<Vec<u8>> = engine
            .opts
            .secrets
            .iter()
            .filter_map(|s| match &s.source {
                SecretSource::File(p) => std::fs::read(p).ok(),
                SecretSource::Env(v) => std::env::var_os(v)
                    .map(|v| std::os::unix::ffi::OsStrExt::as_bytes(v.as_os_str()).to_vec()),
            })
            .collect();
        crate::progress::Masker::new(&values)
    };
    match e {
        ExecError::Failed { code, tail } if !engine.opts.secrets.is_empty() => {
            let m = masker();
            ExecError::Failed {
                code,
                tail: tail.iter().map(|l| m.mask(l)).collect(),
            }
        }
        ExecError::Killed { signal, tail } if !engine.opts.secrets.is_empty() => {
            let m = masker();
            ExecError::Killed {
                signal,
                tail: tail.iter().map(|l| m.mask(l)).collect(),
            }
        }
        other => other,
    }
}

/// Drops directories overlay only copied up (same mode and owner as below, nothing changed
/// under them) and directories made only to hold an excluded mount point.
pub fn prune_copied_up(
    entries: Vec<LayerEntry>,
    rootfs: &RootFs,
    exclude: &[&str],
) -> Vec<LayerEntry> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    let depth = |p: &str| p.matches('/').count();
    order.sort_by_key(|&i| std::cmp::Reverse(depth(&entries[i].path)));
    let mut has_child: HashSet<String> = HashSet::new();
    let mut keep = vec![true; entries.len()];
    for i in order {
        let e = &entries[i];
        if matches!(e.kind, EntryKind::Dir) && !has_child.contains(&e.path) {
            let holds_mount_point = exclude
                .iter()
                .any(|x| x.starts_with(&format!("{}/", e.path)));
            let unchanged = rootfs.lookup(&e.path).is_some_and(|f| {
                f.meta.is_dir()
                    && f.meta.mode() & 0o7777 == e.mode
                    && u64::from(f.meta.uid()) == e.uid
                    && u64::from(f.meta.gid()) == e.gid
            });
            if holds_mount_point || unchanged {
                keep[i] = false;
                continue;
            }
        }
        if let Some((parent, _)) = e.path.rsplit_once('/') {
            has_child.insert(parent.to_string());
        }
    }
    entries
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Heredoc;
    use std::collections::BTreeMap;

    fn heredoc(name: &str, content: &str) -> Heredoc {
        Heredoc {
            name: name.into(),
            content: content.into(),
            expand: true,
            chomp_tabs: false,
        }
    }

    fn sh() -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into()]
    }

    fn run(cmd: CommandForm, heredocs: Vec<Heredoc>) -> RunInstruction {
        RunInstruction {
            command: cmd,
            heredocs,
            mounts: Vec::new(),
            network: None,
        }
    }

    #[test]
    fn shell_form_goes_through_shell_and_exec_form_does_not() {
        let (a, _) = command_line(&run(CommandForm::Shell("echo hi".into()), vec![]), &sh());
        assert_eq!(a, ["/bin/sh", "-c", "echo hi"]);
        let (a, _) = command_line(
            &run(
                CommandForm::Exec(vec!["/bin/echo".into(), "x".into()]),
                vec![],
            ),
            &sh(),
        );
        assert_eq!(a, ["/bin/echo", "x"]);
    }

    #[test]
    fn a_bare_heredoc_with_a_shebang_runs_as_a_script() {
        let (a, script) = command_line(
            &run(
                CommandForm::Shell("<<EOF".into()),
                vec![heredoc("EOF", "#!/bin/busybox ash\necho hi\n")],
            ),
            &sh(),
        );
        assert_eq!(a, ["/dev/pipes/EOF"]);
        assert_eq!(
            script,
            Some((
                "/dev/pipes/EOF".into(),
                "#!/bin/busybox ash\necho hi\n".into()
            ))
        );
        let (a, script) = command_line(
            &run(
                CommandForm::Shell("<<-'EOF'".into()),
                vec![heredoc("EOF", "echo hi\n")],
            ),
            &sh(),
        );
        assert_eq!(a, ["/bin/sh", "-c", "echo hi\n"]);
        assert!(script.is_none());
    }

    #[test]
    fn a_heredoc_fed_to_a_command_is_appended_for_the_shell() {
        let (a, _) = command_line(
            &run(
                CommandForm::Shell("cat <<EOF > /x".into()),
                vec![heredoc("EOF", "a\n")],
            ),
            &sh(),
        );
        assert_eq!(a, ["/bin/sh", "-c", "cat <<EOF > /x\na\nEOF"]);
    }

    #[test]
    fn users_resolve_like_runc() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nstaff:x:50:app,other\n",
        )
        .unwrap();
        let fs = RootFs {
            lowers: vec![dir.path().to_path_buf()],
        };
        assert_eq!(
            resolve_user("app", &fs).unwrap(),
            (1000, 1000, vec![1000, 50], "/home/app".into())
        );
        assert_eq!(resolve_user("app:0", &fs).unwrap().1, 0);
        // A uid not in passwd runs with gid 0 and home /.
        assert_eq!(
            resolve_user("4242", &fs).unwrap(),
            (4242, 0, vec![0], "/".into())
        );
        assert!(matches!(
            resolve_user("nobody", &fs),
            Err(RunError::NoUser(_))
        ));
        assert!(matches!(
            resolve_user("app:wheel", &fs),
            Err(RunError::NoGroup(_))
        ));
    }

    #[test]
    fn copied_up_directories_and_mount_point_parents_are_pruned() {
        let lower = tempfile::tempdir().unwrap();
        std::fs::create_dir(lower.path().join("etc")).unwrap();
        let meta = std::fs::metadata(lower.path().join("etc")).unwrap();
        let fs = RootFs {
            lowers: vec![lower.path().to_path_buf()],
        };
        let dir = |p: &str, mode: u32| LayerEntry {
            path: p.into(),
            kind: EntryKind::Dir,
            mode,
            uid: u64::from(meta.uid()),
            gid: u64::from(meta.gid()),
            mtime: 0,
            xattrs: BTreeMap::new(),
        };
        let m = meta.mode() & 0o7777;
        let entries = vec![
            dir("etc", m),
            dir("new", 0o755),
            dir("mnt", 0o755),
            dir("x", 0o700),
        ];
        let kept = prune_copied_up(entries, &fs, &["mnt/cache"]);
        let paths: Vec<&str> = kept.iter().map(|e| e.path.as_str()).collect();
        // etc: copied up unchanged; mnt: only holds a mount point; x and new: created.
        assert_eq!(paths, ["new", "x"]);
    }
}

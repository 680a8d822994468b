//! The RUN step: what its cache key is made of, how its command line, environment, user and
//! mounts are derived from the stage (BuildKit's rules), and turning the sandbox's overlay upper
//! directory into the step's layer entries.
//!
//! Submodules: [`user`] (who the process runs as), [`mounts`] (`--mount` to sandbox mounts),
//! [`ssh`] (the relay that forwards an ssh agent into the sandbox),
//! [`devices`] (the image's device nodes, real in the sandbox), [`diff`] (upper directory to
//! layer entries), [`stubs`] (the mount points runc leaves in the layer); in `chroot` mode
//! (`--isolation`), [`rootcopy`] (the private root copied from the snapshots) and [`compare`]
//! (the layer from comparing that root before and after).

mod cache_dirs;
mod compare;
mod devices;
mod diff;
mod ids;
pub mod in_place;
mod mounts;
mod rootcopy;
mod rootsync;
pub use cache_dirs::shared_dir as cache_mount_dir;
mod ssh;
mod stubs;
mod user;

pub use diff::prune_copied_up;
use mounts::{clean_rel, io, sandbox_mounts, ssh_target, stage_named, BindFrom};
pub(crate) use rootcopy::readonly_view;
use user::resolve_user;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use rbuild_layers::tar::LayerEntry;

use super::key::KeyInputs;
use super::rootfs::RootFs;
use super::stage::StageState;
use super::{BuildError, Engine};
use crate::dockerfile::MountSpec;
use crate::dockerfile::NetworkMode;
use crate::dockerfile::{CommandForm, RunInstruction};
use crate::executor::isolation::Mode as IsolationMode;
use crate::executor::{self, SandboxMount, SandboxNetwork, SandboxSpec, Stream};
use crate::graph::is_proxy_arg;
use crate::progress::{LogStream, StepHandle};
use crate::solver::inputs::SecretSource;

/// Hostname of every RUN sandbox (BuildKit's).
pub const HOSTNAME: &str = "buildkitsandbox";

/// Paths the sandbox mounts or injects; never part of a layer as the upper directory has them
/// (the mount points runc would leave, a root without `/dev`, `/proc` or `/sys`, are added by
/// [`stubs`]).
const INJECTED: [&str; 6] = [
    crate::executor::OLD_ROOT_IN_MERGED,
    "proc",
    "dev",
    "sys",
    "etc/resolv.conf",
    "etc/hosts",
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
    #[error("ssh agent {0:?} is required but was not given: pass --ssh {0} (the agent of $SSH_AUTH_SOCK) or --ssh {0}=SOCKET")]
    MissingSsh(String),
    #[error("forwarding ssh agent {0:?} into the sandbox")]
    SshRelay(String, #[source] std::io::Error),
    #[error("RUN --mount: {0}")]
    Mount(#[from] crate::dockerfile::MountError),
    #[error("RUN --mount={0} is not supported by this version of rbuild yet; nothing was run")]
    UnsupportedMount(&'static str),
    #[error(transparent)]
    Emulation(#[from] crate::executor::binfmt::EmulationError),
    #[error("RUN --mount=type=cache,source={0}: the seed must be a directory of the `from` stage")]
    CacheSeedNotDir(String),
    #[error("RUN --mount=type=bind,source={0}: the path goes through a symlink; name the target instead")]
    SymlinkSource(String),
    #[error("RUN --mount=type=bind,source={0}: not found in the build context (or excluded by .dockerignore)")]
    NotInContext(String),
    #[error("locking cache mount {}", .0.display())]
    Lock(PathBuf, #[source] std::io::Error),
    #[error("RUN --mount=type={kind} cannot be provided with --isolation {mode} (no mounts without CAP_SYS_ADMIN): use --isolation namespaces, or do without the mount; nothing was run")]
    NoMount {
        kind: &'static str,
        mode: &'static str,
    },
    #[error("--shm-size cannot be honoured with --isolation {0}: /dev/shm is not a tmpfs rbuild can mount there (it needs CAP_SYS_ADMIN); use --isolation namespaces (or rootless), or drop --shm-size; nothing was run")]
    NoShmSize(&'static str),
    #[error("RUN --network=none cannot be provided with --isolation {0} (a network namespace needs CAP_SYS_ADMIN): use --isolation namespaces, or the default network; nothing was run")]
    NoNetworkNone(&'static str),
    #[error("--isolation in-place: the image has {what} at {path}, where this container has {mount} (a mount, or a path rbuild keeps), so a RUN step would see the container's files instead of the image's. Mount the volume elsewhere, or use --isolation chroot or namespaces; the step was not run")]
    InPlaceConflict {
        path: String,
        what: String,
        mount: String,
    },
    #[error("--isolation in-place: the RUN step wrote in {0}, which is this container's (a mount, or a path rbuild keeps), not the image's: what it wrote is not in the layer. A namespaces build would have written it into the image; mount the volume elsewhere, or use --isolation chroot or namespaces")]
    InPlaceWroteKept(String),
    #[error("{0}\nhint: the step's output names /proc, which --isolation chroot cannot mount (no CAP_SYS_ADMIN); in the rbuild image, --isolation in-place runs steps with the container's /proc (docs/isolation.md)")]
    ChrootWithoutProc(executor::ExecError),
    #[error("--isolation in-place: finding the paths of this container to keep: {0}; nothing was changed")]
    InPlaceSetup(String),
    #[error("RUN needs {what} ({kind} {id}), which rbuild's user namespace does not map (its {kind}s: {map}): give this user a range in /etc/subuid and /etc/subgid that covers it (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`) and install newuidmap/newgidmap (package uidmap); nothing was run")]
    UnmappedId {
        what: String,
        kind: &'static str,
        id: u32,
        map: String,
    },
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
    /// For each cache mount, in order: the stage and subpath that seed it when it is created
    /// (`from=`, `source=`).
    cache_seeds: Vec<Option<(std::sync::Arc<StageState>, String)>>,
    /// A heredoc script: its path in the sandbox and its content.
    heredoc_script: Option<(String, String)>,
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
    let mut cache_seeds = Vec::new();
    for m in &r.mounts {
        m.check_paths().map_err(|e| BuildError::Run(e.into()))?;
        if let MountSpec::Cache { from, source, .. } = m {
            // Only what seeds an empty cache; the cache's contents never enter the key.
            cache_seeds.push(match from {
                Some(name) => Some((
                    stage_named(engine, name, state.index)?,
                    clean_rel(source.as_deref().unwrap_or(".")),
                )),
                None => None,
            });
        }
        if let MountSpec::Bind { source, from, .. } = m {
            // The key gets what is bound: the stage's key, or the digest of the context subtree.
            let rel = clean_rel(source.as_deref().unwrap_or("."));
            // A directory `--build-context` is bound as the build context is.
            let named = match from {
                Some(name) => {
                    super::named_dir::context_for_from(engine, name, state.index).transpose()?
                }
                None => None,
            };
            match (from, named) {
                (Some(name), Some(ctx)) => {
                    let d = ctx
                        .content_digest(&rel)
                        .map_err(|e| BuildError::Context(std::sync::Arc::new(e)))?;
                    bind_keys.push(format!("named:{name}:{rel}:{d}"));
                    binds.push(BindFrom::Context(ctx));
                }
                (Some(name), None) => {
                    let st = stage_named(engine, name, state.index)?;
                    bind_keys.push(format!("stage:{name}:{}:{rel}", st.key));
                    binds.push(BindFrom::Stage(st));
                }
                (None, _) => {
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
    // BuildKit points SSH_AUTH_SOCK at the first ssh mount unless the stage sets it; a
    // relative target goes in as written (Docker 20.10's BuildKit; the socket itself is
    // mounted in the WORKDIR, which is where the command starts).
    let first_ssh = r.mounts.iter().find_map(|m| match m {
        MountSpec::Ssh { target, .. } => Some(match target.as_deref() {
            Some(t) if !t.is_empty() && !t.starts_with('/') => t.to_owned(),
            t => ssh_target(&workdir, t, 0),
        }),
        _ => None,
    });
    if let Some(sock) = first_ssh {
        if !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
            env.push(format!("SSH_AUTH_SOCK={sock}"));
        }
    }
    let key_env = env.clone();
    // Undeclared proxy build args reach the process but not the key, in both spellings:
    // BuildKit's ProxyEnv takes `HTTP_PROXY` or `http_proxy` (case-insensitively, the later
    // in sorted order winning) and sets `HTTP_PROXY` and `http_proxy` (ops/exec.go,
    // proxyEnvList).
    let mut proxies: BTreeMap<String, &str> = BTreeMap::new();
    for (k, v) in &engine.opts.build_args {
        if is_proxy_arg(k) && !state.args.contains_key(k) && !env_names.contains(k.as_str()) {
            proxies.insert(k.to_ascii_uppercase(), v);
        }
    }
    for (upper, v) in proxies {
        for name in [upper.clone(), upper.to_ascii_lowercase()] {
            if !state.args.contains_key(&name) && !env_names.contains(name.as_str()) {
                env.push(format!("{name}={v}"));
            }
        }
    }
    // `RUN --network=…` wins over the command line's `--network` (BuildKit).
    let network_mode = r.network.unwrap_or(engine.opts.default_network);
    let network = match network_mode {
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
    .input("network", network_mode.as_str())
    .input(
        "mounts",
        serde_json::to_string(&r.mounts).expect("mount specs serialise"),
    )
    .input(stubs::KEY_INPUT.0, stubs::KEY_INPUT.1);
    if let Some((path, body)) = &heredoc_script {
        // The script is not in argv: its content must be in the key.
        inputs = inputs.input("heredoc-script", format!("{path}\n{body}"));
    }
    if !bind_keys.is_empty() {
        inputs = inputs.input("binds", bind_keys.join("\n"));
    }
    // Only when given, so that keys without `--add-host` stay as they were.
    if !engine.opts.extra_hosts.is_empty() {
        inputs = inputs.input("extra-hosts", hosts_lines(&engine.opts.extra_hosts));
    }
    // The same for `--shm-size` and `--ulimit`: in BuildKit's key too (`executor::limits`).
    if let Some(size) = engine.opts.shm_size {
        inputs = inputs.input("shm-size", size.to_string());
    }
    if !engine.opts.ulimits.is_empty() {
        let lines: Vec<String> = engine.opts.ulimits.iter().map(|u| u.to_string()).collect();
        inputs = inputs.input("ulimits", lines.join("\n"));
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
        cache_seeds,
        heredoc_script,
    })
}

/// `--add-host` entries as `/etc/hosts` lines, BuildKit's way: `ADDRESS<TAB>HOST`, in order.
fn hosts_lines(extra: &[(String, std::net::IpAddr)]) -> String {
    extra
        .iter()
        .map(|(host, ip)| format!("{ip}\t{host}\n"))
        .collect()
}

/// The overlay upper directory inside a RUN's scratch directory.
pub const UPPER: &str = "upper";

/// The private root of a `chroot` mode RUN inside its scratch directory: where the overlay
/// upper directory is in `namespaces` mode, so that the layer's snapshot takes its files from
/// it in both modes (`Engine::offer_donor`).
const CHROOT_ROOT: &str = UPPER;

/// The mounts, `/dev/shm` size and network `chroot` and `in-place` modes cannot give a step
/// (see `executor::layout`): refused before anything runs. Secrets, tmpfs, caches and binds are
/// laid out in the root instead; an agent's socket would have to be relayed into it.
fn refuse_without_mounts(
    p: &PreparedRun,
    mode: IsolationMode,
    shm_size: Option<u64>,
) -> Result<(), BuildError> {
    if shm_size.is_some_and(|s| s != crate::executor::limits::DEFAULT_SHM_SIZE) {
        return Err(BuildError::Run(RunError::NoShmSize(mode.as_str())));
    }
    if p.network == SandboxNetwork::None {
        return Err(BuildError::Run(RunError::NoNetworkNone(mode.as_str())));
    }
    for m in &p.mounts {
        let kind = match m {
            MountSpec::Ssh { .. } => "ssh",
            MountSpec::Bind { .. }
            | MountSpec::Cache { .. }
            | MountSpec::Secret { .. }
            | MountSpec::Tmpfs { .. } => continue,
        };
        return Err(BuildError::Run(RunError::NoMount {
            kind,
            mode: mode.as_str(),
        }));
    }
    Ok(())
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
    let choice = engine.run_isolation()?;
    let mode = choice.mode;
    let in_place = mode == IsolationMode::InPlace;
    if mode == IsolationMode::Chroot || in_place {
        refuse_without_mounts(p, mode, engine.opts.shm_size)?;
    }
    let (uid, gid, groups, home) = resolve_user(&p.user, rootfs).map_err(BuildError::Run)?;
    if mode == IsolationMode::Rootless {
        if let Some((uids, gids)) = executor::userns::own_maps() {
            let user = ids::StepUser {
                name: &p.user,
                uid,
                gid,
                groups: &groups,
            };
            ids::check_mapped(&user, &p.mounts, uids, gids).map_err(BuildError::Run)?;
        }
    }
    let mut env = p.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", executor::DEFAULT_PATH));
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={home}"));
    }
    // In place, no upper directory: the layer's files are the container's root, which the next
    // step replaces, so no snapshot may take them as a donor's.
    let dirs: &[&str] = if in_place {
        &["work"]
    } else {
        &[UPPER, "work", "merged", "empty"]
    };
    for d in dirs {
        let path = scratch.join(d);
        std::fs::create_dir_all(&path).map_err(io("creating", &path))?;
    }
    let hosts = scratch.join("hosts");
    std::fs::write(
        &hosts,
        format!(
            "127.0.0.1\tlocalhost {HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n{}",
            hosts_lines(&engine.opts.extra_hosts)
        ),
    )
    .map_err(io("writing", &hosts))?;
    // BuildKit binds no /etc/hostname: the image's (or none) is what the command sees.
    let mut etc_files = vec![("hosts".to_string(), hosts)];
    if Path::new("/etc/resolv.conf").exists() {
        etc_files.push(("resolv.conf".into(), PathBuf::from("/etc/resolv.conf")));
    }
    // A chroot or in-place step has its cache directories moved into its root: never two at
    // once.
    let exclusive_caches = mode == IsolationMode::Chroot || in_place;
    let (mut mounts, _held) = sandbox_mounts(engine, p, scratch, exclusive_caches)?;
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
    let chroot_root = scratch.join(CHROOT_ROOT);
    let mut watched = None;
    // The root: an overlay of the snapshots, a private copy of them (chroot; rootless where
    // overlayfs is refused), or the container's own root replaced by them (in place); the
    // layer of a copy is found by comparing it before and after.
    let (device_candidates, start, merged) = if in_place {
        // Held until the stage has written the layer from the root's files (`stage.rs`).
        engine.in_place_root.acquire();
        let keep = engine.in_place_keep()?;
        exclude.extend(keep.relative_paths().map(str::to_string));
        let start = in_place::lay_out_root(rootfs, &keep, &engine.in_place_root)?;
        // Until the comparison below has run, the root is whatever the command left: the
        // next step copies all of it again.
        engine.in_place_root.set_left_out([String::new()]);
        watched = Some(keep.watch(engine.store.root()));
        (Vec::new(), Some(start), PathBuf::from("/"))
    } else if choice.copy_root {
        (
            Vec::new(),
            Some(rootcopy::copy_merged(rootfs, &chroot_root)?),
            chroot_root.clone(),
        )
    } else {
        rootfs
            .prepare_for_overlay()
            .map_err(io("preparing the snapshots of", scratch))?;
        // Real device nodes need CAP_MKNOD of the initial user namespace: not rootless.
        let devices = match mode {
            IsolationMode::Rootless => Vec::new(),
            _ => devices::candidates(rootfs)?,
        };
        (devices, None, scratch.join("merged"))
    };
    let spec = SandboxSpec {
        mode,
        copy_root: choice.copy_root,
        lowers: rootfs.lowers.clone(),
        empty_lower: scratch.join("empty"),
        upper: scratch.join(UPPER),
        work: scratch.join("work"),
        merged: merged.clone(),
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
        devices: devices::for_sandbox(&device_candidates),
        ulimits: engine.opts.ulimits.clone(),
        shm_size: engine.opts.shm_size,
    };
    let on_line = |stream, line: &str| {
        let s = match stream {
            Stream::Stdout => LogStream::Stdout,
            Stream::Stderr => LogStream::Stderr,
        };
        step.log(s, line);
    };
    let ran = if in_place {
        executor::run_in_place(&spec, on_line)
    } else {
        executor::run(&spec, on_line)
    };
    ran.map_err(|e| {
        let e = mask_tail(engine, e);
        BuildError::Run(if mode == IsolationMode::Chroot && names_proc(&e) {
            RunError::ChrootWithoutProc(e)
        } else {
            e.into()
        })
    })?;
    if let Some(w) = &watched {
        w.check()?;
    }
    rbuild_layers::failpoint::hit("run.before_diff");
    let excl: Vec<&str> = exclude.iter().map(String::as_str).collect();
    let entries = match &start {
        Some(start) if in_place => {
            let entries = compare::changes(&merged, start, &excl)?;
            engine.in_place_root.set_left_out(exclude.iter().cloned());
            entries
        }
        Some(start) => compare::changes(&merged, start, &excl)?,
        None => {
            let upper = scratch.join(UPPER);
            devices::take_back_untouched(&upper, rootfs, &device_candidates)?;
            rbuild_layers::tar::entries_from_overlay_upper(
                &upper,
                &excl,
                executor::sys::overlay_xattrs(),
            )?
        }
    };
    let mut entries = prune_copied_up(entries, rootfs, &excl);
    stubs::add_runc_mount_points(&mut entries, rootfs, engine.opts.epoch);
    Ok(entries)
}

/// Whether a failed command's last lines name `/proc` (the JVM: "requires a mounted proc fs
/// (/proc)"; procps: "/proc/meminfo does not exist").
fn names_proc(e: &executor::ExecError) -> bool {
    match e {
        executor::ExecError::Failed { tail, .. } | executor::ExecError::Killed { tail, .. } => {
            tail.iter().any(|l| l.contains("/proc"))
        }
        _ => false,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::Heredoc;

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
            deferred_mounts: Vec::new(),
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
}

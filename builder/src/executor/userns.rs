//! Rootless builds: rbuild started by a non-root user re-executes itself, before it opens the
//! store, inside a new user namespace (as `buildah unshare` and rootlesskit do), and the whole
//! build runs there as root of that namespace.
//!
//! - **The mapping**: 0 → the user's uid, and 1… → the user's ranges of `/etc/subuid` and
//!   `/etc/subgid` in order, written by `newuidmap`/`newgidmap` (Debian package `uidmap`, set-uid
//!   root, which check those files). Without a range or the tools: a single-id map, 0 → the
//!   user, which the user may write alone — then only root of the image exists, and a layer,
//!   `COPY --chown` or `USER` needing another id fails, naming the file or user and this fix.
//! - **The hand-over** ([`reexec`], parent; [`enter_as_child`], child): the parent spawns
//!   `/proc/self/exe` with the same arguments and [`CHILD_ENV`] naming two pipe ends; the child,
//!   first thing in `main` (single-threaded: the kernel refuses `CLONE_NEWUSER` to a threaded
//!   process), unshares the user namespace, says so on the first pipe, and waits on the second
//!   until the parent has written its maps. The parent then forwards the signals it gets to the
//!   child and ends as the child ends (exit code, or the same signal).
//! - **Inside**, rbuild is uid 0 with every capability over its own namespaces: it makes its
//!   private mount namespace as usual (`crate::sandbox_init`), unpacks layers with their owners,
//!   and runs RUN steps in the namespaces sandbox ([`super::isolation::Mode::Rootless`]): overlayfs
//!   with the `userxattr` option (Linux ≥ 5.11; opaque directories are `user.overlay.opaque`),
//!   or a private copy of the root where the kernel refuses that. The network namespace is the
//!   host's (the registry and `RUN --network=host` reach it).
//!
//! Which ids a process may use is read from `/proc/self/{uid,gid}_map` ([`IdMap`]).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::OnceLock;

/// Set (to `READY_FD,GO_FD,PARENT_PID`) in the environment of the re-executed child.
pub const CHILD_ENV: &str = "_RBUILD_USERNS_CHILD";

/// Set in the child's environment (by the child, from what the parent sent on the second
/// pipe) when its namespace maps a single id: why (for the note).
pub const MAP_ENV: &str = "_RBUILD_USERNS_MAP";

/// The fds the child finds its two pipe ends at.
const READY_FD: RawFd = 3;
const GO_FD: RawFd = 4;

/// One line of a `uid_map`/`gid_map`: `count` ids from `inside` are `outside`… in the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A `/proc/PID/{uid,gid}_map`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdMap(pub Vec<IdRange>);

impl IdMap {
    /// Parses the kernel's format (three numbers a line); `None` when it is not that.
    pub fn parse(text: &str) -> Option<IdMap> {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let n: Vec<u64> = line
                .split_whitespace()
                .map(|t| t.parse().ok())
                .collect::<Option<_>>()?;
            let [inside, outside, count] = n[..] else {
                return None;
            };
            out.push(IdRange {
                inside: u32::try_from(inside).ok()?,
                outside: u32::try_from(outside).ok()?,
                count: u32::try_from(count).ok()?,
            });
        }
        Some(IdMap(out))
    }

    /// Whether `id` exists here (is mapped).
    pub fn maps(&self, id: u32) -> bool {
        self.0
            .iter()
            .any(|r| id >= r.inside && u64::from(id) < u64::from(r.inside) + u64::from(r.count))
    }

    /// The initial namespace's map (every id to itself).
    pub fn is_initial(&self) -> bool {
        self.0
            == [IdRange {
                inside: 0,
                outside: 0,
                count: u32::MAX,
            }]
    }

    /// Only one id, 0 (a single-id map).
    pub fn is_single(&self) -> bool {
        self.0.len() == 1 && self.0[0].inside == 0 && self.0[0].count == 1
    }

    /// `0→1000, 1-65536→100000-165535`.
    pub fn describe(&self) -> String {
        let one = |r: &IdRange| {
            if r.count == 1 {
                format!("{}→{}", r.inside, r.outside)
            } else {
                let last = |start: u32| u64::from(start) + u64::from(r.count) - 1;
                format!(
                    "{}-{}→{}-{}",
                    r.inside,
                    last(r.inside),
                    r.outside,
                    last(r.outside)
                )
            }
        };
        self.0.iter().map(one).collect::<Vec<_>>().join(", ")
    }
}

/// This process's uid and gid maps (`None` when `/proc` does not say).
pub fn own_maps() -> Option<&'static (IdMap, IdMap)> {
    static MAPS: OnceLock<Option<(IdMap, IdMap)>> = OnceLock::new();
    MAPS.get_or_init(|| {
        let read = |p: &str| IdMap::parse(&std::fs::read_to_string(p).ok()?);
        Some((read("/proc/self/uid_map")?, read("/proc/self/gid_map")?))
    })
    .as_ref()
}

/// Whether this process runs in a user namespace other than the initial one (a rootless
/// build, after [`enter_as_child`]). Namespaces never change after `main` starts, so this is
/// read once.
pub fn in_user_namespace() -> bool {
    own_maps().is_some_and(|(u, _)| !u.is_initial())
}

/// The ranges `/etc/subuid` (or `/etc/subgid`) text gives the user `name` (or `uid`), in
/// order: `(start, count)`. Lines are `NAME_OR_ID:START:COUNT`; others are ignored.
pub fn subordinate_ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    let id = id.to_string();
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().splitn(3, ':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            if who != name && who != id {
                return None;
            }
            let start: u32 = start.trim().parse().ok()?;
            let count: u32 = count.trim().parse().ok()?;
            (count > 0).then_some((start, count))
        })
        .collect()
}

/// How the child's namespace gets its ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapPlan {
    /// 0 → the user, then the subordinate ranges (by `newuidmap`/`newgidmap`).
    Subordinate {
        newuidmap: PathBuf,
        newgidmap: PathBuf,
        uids: Vec<(u32, u32)>,
        gids: Vec<(u32, u32)>,
    },
    /// 0 → the user only; `why` says what was missing.
    Single { why: String },
}

/// Why this process's namespace maps a single id, as its parent said (see [`MAP_ENV`]).
pub fn single_map_why() -> Option<String> {
    std::env::var(MAP_ENV).ok().filter(|w| !w.is_empty())
}

/// What a single-id map cannot do, said once where the mode is chosen.
pub const SINGLE_MAP_LIMITS: &str = "only uid 0 and gid 0 of the image exist: a RUN over a layer with files of other owners (from the base, or COPY --chown), or as a USER or with a mount of another id, fails, and steps keep the user's own supplementary groups (setgroups is denied); for more, add ranges for this user to /etc/subuid and /etc/subgid (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`), with newuidmap/newgidmap installed (package uidmap)";

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/sbin", "/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn user_name(uid: u32) -> Option<String> {
    // /etc/passwd of the host: `name:x:uid:...`.
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}

/// The mapping the user `uid` can have on this host.
pub fn plan(uid: u32) -> MapPlan {
    let name = user_name(uid).unwrap_or_default();
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let uids = subordinate_ranges(&read("/etc/subuid"), &name, uid);
    // subgid(5) names the user (by login name or uid), not a group.
    let gids = subordinate_ranges(&read("/etc/subgid"), &name, uid);
    let who = if name.is_empty() {
        format!("uid {uid}")
    } else {
        format!("user {name}")
    };
    let (Some(newuidmap), Some(newgidmap)) = (find_tool("newuidmap"), find_tool("newgidmap"))
    else {
        return MapPlan::Single {
            why: "newuidmap and newgidmap (package uidmap) are not installed".into(),
        };
    };
    if uids.is_empty() || gids.is_empty() {
        let file = if uids.is_empty() {
            "/etc/subuid"
        } else {
            "/etc/subgid"
        };
        return MapPlan::Single {
            why: format!("{file} has no range for {who}"),
        };
    }
    MapPlan::Subordinate {
        newuidmap,
        newgidmap,
        uids,
        gids,
    }
}

/// Why a user namespace could not be had.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("creating a user namespace was refused ({source}): {hint}; nothing was run")]
    Unshare {
        #[source]
        source: std::io::Error,
        hint: String,
    },
    #[error("starting rbuild again in a user namespace (/proc/self/exe)")]
    Spawn(#[source] std::io::Error),
    #[error("mapping ids into rbuild's user namespace: {tool} {args} failed ({status}){stderr}; it checks /etc/subuid and /etc/subgid, which must give this user the ranges mapped (see subuid(5))")]
    Tool {
        tool: String,
        args: String,
        status: String,
        stderr: String,
    },
    #[error("mapping ids into rbuild's user namespace: writing {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rbuild in the user namespace ended before it was mapped")]
    ChildGone,
}

/// Reads a sysctl of `/proc/sys` (`user/max_user_namespaces`) as a number.
fn sysctl(name: &str) -> Option<i64> {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// What to change when `unshare(CLONE_NEWUSER)` is refused, from the sysctls `read` gives
/// (`None`: the host has no such sysctl).
pub fn unshare_hint(read: impl Fn(&str) -> Option<i64>) -> String {
    if read("user/max_user_namespaces") == Some(0) {
        return "user namespaces are disabled: set the sysctl user.max_user_namespaces to a positive number (e.g. sysctl -w user.max_user_namespaces=15000)".into();
    }
    if read("kernel/unprivileged_userns_clone") == Some(0) {
        return "unprivileged user namespaces are disabled: set the sysctl kernel.unprivileged_userns_clone=1".into();
    }
    if read("kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return "AppArmor restricts unprivileged user namespaces: set the sysctl kernel.apparmor_restrict_unprivileged_userns=0, or give rbuild an AppArmor profile with `userns,`".into();
    }
    "inside a container, its seccomp profile refuses unshare(CLONE_NEWUSER) without CAP_SYS_ADMIN: run it with --security-opt seccomp=unconfined (Kubernetes: securityContext.seccompProfile.type: Unconfined, with allowPrivilegeEscalation for newuidmap) or --privileged; the user namespace count (user.max_user_namespaces) may also be exhausted".into()
}

/// [`unshare_hint`] for this host.
pub fn host_unshare_hint() -> String {
    unshare_hint(sysctl)
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these fds; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

const FORWARDED: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Runs this rbuild command again in a new user namespace mapped as `plan` says, and returns
/// the exit code to end with (after the child ended; a child killed by a signal is re-raised).
pub fn reexec(plan: &MapPlan, uid: u32, gid: u32) -> Result<i32, UsernsError> {
    let (ready_r, ready_w) = pipe().map_err(UsernsError::Spawn)?;
    let (go_r, go_w) = pipe().map_err(UsernsError::Spawn)?;
    let (rw, gr) = (ready_w.as_raw_fd(), go_r.as_raw_fd());
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args(&args)
        .env(
            CHILD_ENV,
            format!("{READY_FD},{GO_FD},{}", std::process::id()),
        )
        .env_remove(MAP_ENV);
    // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // Out of the way first, so that neither lands on the other's target.
            let a = libc::fcntl(rw, libc::F_DUPFD_CLOEXEC, 10);
            let b = libc::fcntl(gr, libc::F_DUPFD_CLOEXEC, 10);
            if a < 0 || b < 0 || libc::dup2(a, READY_FD) < 0 || libc::dup2(b, GO_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(UsernsError::Spawn)?;
    drop((ready_w, go_r));
    let pid = child.id();
    let mut said = Vec::new();
    let _ = std::fs::File::from(ready_r).read_to_end(&mut said);
    let fail = |child: &mut std::process::Child, e: UsernsError| {
        let _ = child.kill();
        let _ = child.wait();
        Err(e)
    };
    match said.as_slice() {
        b"ok" => {}
        [b'E', errno @ ..] => {
            let errno = std::str::from_utf8(errno)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(libc::EPERM);
            let _ = child.wait();
            return Err(UsernsError::Unshare {
                source: std::io::Error::from_raw_os_error(errno),
                hint: host_unshare_hint(),
            });
        }
        _ => {
            let _ = child.wait();
            return Err(UsernsError::ChildGone);
        }
    }
    let single_why = match write_maps(plan, pid, uid, gid) {
        Ok(why) => why,
        Err(e) => return fail(&mut child, e),
    };
    CHILD.store(pid as i32, Ordering::SeqCst);
    for sig in FORWARDED {
        // SAFETY: installs an async-signal-safe handler (kill), with SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = forward as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    let mut go = std::fs::File::from(go_w);
    let message = format!("g{}", single_why.unwrap_or_default());
    if go.write_all(message.as_bytes()).is_err() {
        return fail(&mut child, UsernsError::ChildGone);
    }
    drop(go);
    let status = child.wait().map_err(UsernsError::Spawn)?;
    Ok(exit_code_of(status))
}

/// The exit code for a child's status: its code, or (killed) the same signal for us.
fn exit_code_of(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return code;
    }
    let sig = status.signal().unwrap_or(libc::SIGKILL);
    // SAFETY: restores the default action and raises the signal on ourselves.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    128 + sig
}

/// Writes the child's maps as `plan` says; returns why the map is a single id, when it is.
/// When `newuidmap` itself fails (nothing is mapped yet: not set-uid in this container, a
/// range it does not accept), a single-id map instead, saying why.
fn write_maps(plan: &MapPlan, pid: u32, uid: u32, gid: u32) -> Result<Option<String>, UsernsError> {
    match plan {
        MapPlan::Subordinate {
            newuidmap,
            newgidmap,
            uids,
            gids,
        } => {
            if let Err(e) = run_tool(newuidmap, pid, uid, uids) {
                write_single(pid, uid, gid)?;
                return Ok(Some(e.to_string()));
            }
            run_tool(newgidmap, pid, gid, gids)?;
            Ok(None)
        }
        MapPlan::Single { why } => {
            write_single(pid, uid, gid)?;
            Ok(Some(why.clone()))
        }
    }
}

/// 0 → `uid`/`gid` only, which an unprivileged parent may write for its child.
fn write_single(pid: u32, uid: u32, gid: u32) -> Result<(), UsernsError> {
    let write = |name: &str, text: String| {
        let path = format!("/proc/{pid}/{name}");
        std::fs::write(&path, text).map_err(|source| UsernsError::Write { path, source })
    };
    // An unprivileged process may write a gid_map only once setgroups is denied.
    write("setgroups", "deny".into())?;
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))
}

fn run_tool(tool: &Path, pid: u32, own: u32, ranges: &[(u32, u32)]) -> Result<(), UsernsError> {
    let mut args = vec![pid.to_string(), "0".into(), own.to_string(), "1".into()];
    let mut inside: u64 = 1;
    for (start, count) in ranges {
        args.extend([inside.to_string(), start.to_string(), count.to_string()]);
        inside += u64::from(*count);
    }
    let out = Command::new(tool)
        .args(&args)
        .output()
        .map_err(|e| UsernsError::Tool {
            tool: tool.display().to_string(),
            args: args.join(" "),
            status: e.to_string(),
            stderr: String::new(),
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(UsernsError::Tool {
        tool: tool.display().to_string(),
        args: args.join(" "),
        status: out.status.to_string(),
        stderr: if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        },
    })
}

/// The child's half, first thing in `main` when [`CHILD_ENV`] is set: unshare the user
/// namespace, tell the parent, wait until it has mapped us. Returns the exit code to end with
/// when that failed (the parent says why).
pub fn enter_as_child(value: &std::ffi::OsStr) -> Result<(), i32> {
    let value = value.to_string_lossy();
    let mut parts = value.split(',').map(|p| p.parse::<i32>().ok());
    let (Some(Some(ready)), Some(Some(go)), Some(Some(parent))) =
        (parts.next(), parts.next(), parts.next())
    else {
        return Err(125);
    };
    // SAFETY: the fds were put there for us by the parent (see `reexec`); we own them now.
    let (ready, go) = unsafe { (OwnedFd::from_raw_fd(ready), OwnedFd::from_raw_fd(go)) };
    // SAFETY: plain syscall; this process is still single-threaded.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
    let mut ready = std::fs::File::from(ready);
    if rc != 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let _ = ready.write_all(format!("E{errno}").as_bytes());
        return Err(125);
    }
    if ready.write_all(b"ok").is_err() {
        return Err(125);
    }
    drop(ready);
    let mut answer = Vec::new();
    let _ = std::fs::File::from(go).read_to_end(&mut answer);
    let Some(single_why) = answer.strip_prefix(b"g") else {
        return Err(125);
    };
    if !single_why.is_empty() {
        // Still single-threaded: the environment may change.
        std::env::set_var(MAP_ENV, String::from_utf8_lossy(single_why).as_ref());
    }
    // Die with the parent (whose signals are forwarded to us while it lives).
    // SAFETY: plain syscalls.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            return Err(125);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_maps_parse_and_answer_which_ids_exist() {
        let init = IdMap::parse("         0          0 4294967295\n").unwrap();
        assert!(init.is_initial() && init.maps(65534) && !init.is_single());
        let m = IdMap::parse("0 1000 1\n1 100000 65536\n").unwrap();
        assert!(!m.is_initial() && !m.is_single());
        assert!(m.maps(0) && m.maps(1) && m.maps(65536) && !m.maps(65537));
        assert_eq!(m.describe(), "0→1000, 1-65536→100000-165535");
        let single = IdMap::parse("0 1000 1").unwrap();
        assert!(single.is_single() && single.maps(0) && !single.maps(1000));
        assert_eq!(IdMap::parse("0 1000"), None);
        assert_eq!(IdMap::parse("0 x 1"), None);
    }

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid_in_order() {
        let text = "alice:100000:65536\n# comment\nbob:200000:10\n1001:300000:5\nbob:400000:0\nbroken\nbob:500000:7\n";
        assert_eq!(
            subordinate_ranges(text, "bob", 1001),
            [(200000, 10), (300000, 5), (500000, 7)]
        );
        assert_eq!(subordinate_ranges(text, "carol", 1002), []);
    }

    #[test]
    fn a_refused_user_namespace_names_the_setting_that_fixes_it() {
        let only = |name: &'static str, v: i64| move |n: &str| (n == name).then_some(v);
        assert!(
            unshare_hint(only("user/max_user_namespaces", 0)).contains("user.max_user_namespaces")
        );
        assert!(unshare_hint(only("kernel/unprivileged_userns_clone", 0))
            .contains("kernel.unprivileged_userns_clone=1"));
        assert!(
            unshare_hint(only("kernel/apparmor_restrict_unprivileged_userns", 1))
                .contains("kernel.apparmor_restrict_unprivileged_userns=0")
        );
        let container = unshare_hint(|_| None);
        assert!(
            container.contains("seccomp") && container.contains("--privileged"),
            "{container}"
        );
    }
}

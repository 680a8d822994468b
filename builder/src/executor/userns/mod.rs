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
//!   private mount namespace as usual (in `main`), unpacks layers with their owners,
//!   and runs RUN steps in the namespaces sandbox ([`super::isolation::Mode::Rootless`]): overlayfs
//!   with the `userxattr` option (Linux ≥ 5.11; opaque directories are `user.overlay.opaque`),
//!   or a private copy of the root where the kernel refuses that. The network namespace is the
//!   host's (the registry and `RUN --network=host` reach it).
//!
//! Which ids a process may use is read from `/proc/self/{uid,gid}_map` ([`IdMap`]).
//!
//! Submodules: [`idmap`] (maps, subordinate ranges, the plan), [`handover`] (the re-exec).

mod handover;
mod idmap;

use std::path::Path;
use std::sync::OnceLock;

pub use handover::{enter_as_child, reexec, CHILD_ENV, MAP_ENV};
pub use idmap::{
    plan, single_map_why, subordinate_ranges, IdMap, IdRange, MapPlan, SINGLE_MAP_LIMITS,
};

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
#[cfg(test)]
mod tests {
    use super::*;

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

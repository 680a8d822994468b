//! Which sandbox RUN steps get (`--isolation`, `RBUILD_ISOLATION`): the modes, the choice
//! between them from what a probe of this host found ([`super::probe`]), and the errors that
//! say which privilege is missing and what grants it.
//!
//! - `namespaces`: mount, PID, UTS and IPC namespaces and an overlayfs root (needs root with
//!   `CAP_SYS_ADMIN`, and seccomp/AppArmor allowing `unshare` and `mount`).
//! - `chroot`: `chroot(2)` into a private copy of the root filesystem (needs root with
//!   `CAP_SYS_CHROOT`, `CAP_CHOWN`, `CAP_SETUID`/`CAP_SETGID`: Docker's and Kubernetes' default
//!   capabilities). Weaker: no PID, mount or network namespace (see [`super::chroot`]).
//! - `rootless`: a non-root user, in rbuild's own user namespace ([`super::userns`]): the
//!   namespaces sandbox with overlayfs mounted with `userxattr`, or a private copy of the root
//!   where the kernel refuses that.
//! - `in-place`: kaniko's way, for steps that need what `chroot` cannot give (`/proc`: the
//!   JVM): the step runs on the container's own root filesystem, which rbuild replaces with the
//!   stage's before each step (the engine's `run/in_place.rs`). Only inside the rbuild image
//!   (its marker file), only when asked for by name: it destroys the container's own files.
//! - `auto`: as root, the strongest of `namespaces` and `chroot` that works here; as a non-root
//!   user, `rootless`. Never `in-place`.
//!
//! The choice is made once per build, at its first RUN that runs (a build whose RUN steps all
//! come from the cache needs no privilege at all).

use serde::{Deserialize, Serialize};

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    #[default]
    Auto,
    Namespaces,
    Chroot,
    Rootless,
    InPlace,
}

/// The sandbox a RUN step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Namespaces,
    Chroot,
    Rootless,
    InPlace,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Namespaces => "namespaces",
            Mode::Chroot => "chroot",
            Mode::Rootless => "rootless",
            Mode::InPlace => "in-place",
        }
    }
}

/// What the probe found for each mode: `Ok` when it works, else what was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Mount, PID, UTS and IPC namespaces and an overlay mount (with `userxattr` inside a user
    /// namespace).
    pub namespaces: Result<(), String>,
    pub chroot: Result<(), String>,
    /// The same namespaces and a tmpfs mount, without overlayfs (rootless with a copied root).
    pub mounts: Result<(), String>,
    /// Creating a user namespace (asked only of a non-root user outside one).
    pub user_namespace: Result<(), String>,
}

impl ProbeReport {
    /// Every mode refused for the same reason (the probe itself could not run).
    pub fn failed(what: &str) -> ProbeReport {
        ProbeReport {
            namespaces: Err(what.into()),
            chroot: Err(what.into()),
            mounts: Err(what.into()),
            user_namespace: Err(what.into()),
        }
    }
}

/// Who rbuild runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Privilege {
    /// uid 0 of the initial user namespace.
    Root,
    /// uid 0 of a user namespace other than the initial one — rbuild's own, entered for a
    /// non-root user ([`super::userns`]), or a container's — whose uid map `map` describes;
    /// `single` (why) when it maps one id only.
    UserNamespace { map: String, single: Option<String> },
    /// A non-root user without a user namespace.
    User,
}

/// The mode RUN steps of this build use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub mode: Mode,
    pub reason: String,
    /// The step's root is a private copy of the snapshots, its layer found by comparing it
    /// (always in `chroot` mode; in `rootless` mode where overlayfs is refused), instead of an
    /// overlay mount.
    pub copy_root: bool,
}

/// Why no RUN sandbox can be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsolationError {
    #[error("--isolation rootless is for a non-root user, and rbuild runs as root here: use --isolation namespaces (with CAP_SYS_ADMIN) or --isolation chroot (in a container with the default capabilities); nothing was run")]
    RootlessAsRoot,
    #[error("--isolation {0} needs root, and rbuild runs as a non-root user: use --isolation rootless (or auto), which runs RUN steps in a user namespace; nothing was run")]
    NeedsRoot(&'static str),
    #[error("--isolation rootless cannot run here: {0}. It needs a user namespace (sysctls user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 where it exists, kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile allowing userns; in a container, a seccomp profile allowing unshare) with ids from /etc/subuid and /etc/subgid (newuidmap/newgidmap, package uidmap); nothing was run")]
    Rootless(String),
    #[error("no RUN sandbox works here: rbuild runs as a non-root user, and {0}. RUN needs either a user namespace for --isolation rootless (the sysctls user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 where it exists, kernel.apparmor_restrict_unprivileged_userns=0; in a container, a seccomp profile allowing unshare; ranges in /etc/subuid and /etc/subgid and newuidmap/newgidmap for more than one id), or root: with CAP_SYS_ADMIN (docker run --privileged, or Kubernetes securityContext.privileged: true) for --isolation namespaces, or with the default capabilities (Kubernetes runAsUser: 0) for --isolation chroot; nothing was run")]
    NoRootless(String),
    #[error("--isolation namespaces cannot run here: {0}. It needs root with CAP_SYS_ADMIN: run the container with --privileged (Kubernetes: securityContext.privileged: true, or capabilities.add: [SYS_ADMIN] with seccomp and AppArmor Unconfined), or use --isolation chroot, which needs only Docker's default capabilities; nothing was run")]
    Namespaces(String),
    #[error("--isolation chroot cannot run here: {0}. It needs root (uid 0) with CAP_SYS_CHROOT, CAP_CHOWN, CAP_SETUID and CAP_SETGID (Docker's and Kubernetes' default capabilities: do not drop them, and run as runAsUser: 0); nothing was run")]
    Chroot(String),
    #[error("--isolation in-place runs RUN steps on the root filesystem of the machine rbuild runs on, replacing its files with the image's; it runs only inside the rbuild image (whose marker file {marker} is missing here), never on a host. Run rbuild in its image (README, \"The rbuild image\"), or use --isolation chroot or namespaces; nothing was changed")]
    InPlaceOutsideImage { marker: &'static str },
    #[error("no RUN sandbox works here: namespaces: {namespaces}; chroot: {chroot}. RUN needs root: either with CAP_SYS_ADMIN (docker run --privileged, or Kubernetes securityContext.privileged: true) for --isolation namespaces, or with the default capabilities CAP_SYS_CHROOT, CAP_CHOWN, CAP_SETUID, CAP_SETGID (Kubernetes: runAsUser: 0, without dropping them) for --isolation chroot; nothing was run")]
    NoneWorks { namespaces: String, chroot: String },
}

/// Picks the mode for `requested`, as `privilege`, from what `probe` finds (not called when
/// the answer does not depend on it).
pub fn choose(
    requested: Isolation,
    privilege: &Privilege,
    probe: impl FnOnce() -> ProbeReport,
) -> Result<Choice, IsolationError> {
    match (requested, privilege) {
        (Isolation::Rootless, Privilege::Root) => Err(IsolationError::RootlessAsRoot),
        (Isolation::Namespaces, Privilege::User) => Err(IsolationError::NeedsRoot("namespaces")),
        (Isolation::Chroot, Privilege::User) => Err(IsolationError::NeedsRoot("chroot")),
        (Isolation::InPlace, Privilege::User) => Err(IsolationError::NeedsRoot("in-place")),
        // No probe: it needs root and a writable root filesystem, nothing the kernel may
        // refuse; the marker file is checked before the first step touches anything.
        (Isolation::InPlace, Privilege::Root | Privilege::UserNamespace { .. }) => Ok(Choice {
            mode: Mode::InPlace,
            reason: "chosen with --isolation: steps run on this container's own root filesystem"
                .into(),
            copy_root: false,
        }),
        (Isolation::Auto | Isolation::Rootless, Privilege::UserNamespace { map, single }) => {
            rootless(requested, map, single.as_deref(), probe())
        }
        (Isolation::Auto | Isolation::Rootless, Privilege::User) => {
            let why = match probe().user_namespace {
                Err(e) => e,
                Ok(()) => "rbuild did not enter a user namespace".into(),
            };
            Err(match requested {
                Isolation::Rootless => IsolationError::Rootless(why),
                _ => IsolationError::NoRootless(why),
            })
        }
        // Root of the initial namespace; or, asking for a mode by name, root of a user
        // namespace (rbuild's own, or a container's): the probe says what works there.
        (_, Privilege::Root | Privilege::UserNamespace { .. }) => as_root(requested, probe()),
    }
}

fn rootless(
    requested: Isolation,
    map: &str,
    single: Option<&str>,
    found: ProbeReport,
) -> Result<Choice, IsolationError> {
    let why = match requested {
        Isolation::Auto => "auto: rbuild runs as a non-root user",
        _ => "chosen with --isolation",
    };
    let limits = match single {
        Some(why) => format!(
            "; note: a single-id map ({why}), so {}",
            super::userns::SINGLE_MAP_LIMITS
        ),
        None => String::new(),
    };
    match (found.namespaces, found.mounts) {
        (Ok(()), _) => Ok(Choice {
            mode: Mode::Rootless,
            reason: format!(
                "{why}; a user namespace mapping uids {map}, overlayfs (userxattr) in it{limits}"
            ),
            copy_root: false,
        }),
        (Err(overlay), Ok(())) => Ok(Choice {
            mode: Mode::Rootless,
            reason: format!("{why}; a user namespace mapping uids {map}; overlayfs is refused in it ({overlay}), so each step gets a private copy of the root{limits}"),
            copy_root: true,
        }),
        (Err(_), Err(mounts)) => Err(IsolationError::Rootless(format!(
            "in rbuild's user namespace, {mounts}"
        ))),
    }
}

fn as_root(requested: Isolation, found: ProbeReport) -> Result<Choice, IsolationError> {
    let chosen = |mode: Mode| Choice {
        mode,
        reason: "chosen with --isolation".into(),
        copy_root: mode == Mode::Chroot,
    };
    match requested {
        Isolation::Namespaces => match found.namespaces {
            Ok(()) => Ok(chosen(Mode::Namespaces)),
            Err(e) => Err(IsolationError::Namespaces(e)),
        },
        Isolation::Chroot => match found.chroot {
            Ok(()) => Ok(chosen(Mode::Chroot)),
            Err(e) => Err(IsolationError::Chroot(e)),
        },
        Isolation::Auto | Isolation::Rootless | Isolation::InPlace => {
            match (found.namespaces, found.chroot) {
                (Ok(()), _) => Ok(Choice {
                    mode: Mode::Namespaces,
                    reason: "auto: namespaces and overlayfs are allowed here".into(),
                    copy_root: false,
                }),
                (Err(ns), Ok(())) => Ok(Choice {
                    mode: Mode::Chroot,
                    reason: format!("auto: namespaces are not allowed here ({ns}); chroot is"),
                    copy_root: true,
                }),
                (Err(namespaces), Err(chroot)) => {
                    Err(IsolationError::NoneWorks { namespaces, chroot })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ns: bool, ch: bool) -> ProbeReport {
        ProbeReport {
            namespaces: if ns {
                Ok(())
            } else {
                Err("unshare: EPERM".into())
            },
            chroot: if ch {
                Ok(())
            } else {
                Err("chroot: EPERM".into())
            },
            mounts: if ns {
                Ok(())
            } else {
                Err("unshare: EPERM".into())
            },
            user_namespace: Err("creating a user namespace was refused".into()),
        }
    }

    const ROOT: Privilege = Privilege::Root;

    #[test]
    fn auto_takes_the_strongest_mode_that_works() {
        let c = choose(Isolation::Auto, &ROOT, || report(true, true)).unwrap();
        assert_eq!(c.mode, Mode::Namespaces);
        let c = choose(Isolation::Auto, &ROOT, || report(false, true)).unwrap();
        assert_eq!(c.mode, Mode::Chroot);
        assert!(c.reason.contains("unshare: EPERM"), "{}", c.reason);
        let e = choose(Isolation::Auto, &ROOT, || report(false, false)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("CAP_SYS_ADMIN") && text.contains("--privileged"),
            "{text}"
        );
        assert!(text.contains("securityContext"), "{text}");
    }

    #[test]
    fn a_chosen_mode_is_checked_and_rootless_is_refused_without_probing() {
        assert_eq!(
            choose(Isolation::Chroot, &ROOT, || report(true, true))
                .unwrap()
                .mode,
            Mode::Chroot
        );
        let e = choose(Isolation::Namespaces, &ROOT, || report(false, true)).unwrap_err();
        assert!(e.to_string().contains("--isolation chroot"), "{e}");
        let c = choose(Isolation::InPlace, &ROOT, || {
            panic!("no probe for in-place")
        })
        .unwrap();
        assert_eq!((c.mode, c.copy_root), (Mode::InPlace, false));
        let e = choose(Isolation::InPlace, &Privilege::User, || panic!()).unwrap_err();
        assert_eq!(e, IsolationError::NeedsRoot("in-place"));
        let c = choose(Isolation::Auto, &ROOT, || report(false, false));
        assert!(c.is_err(), "auto never picks in-place");
        let e = choose(Isolation::Rootless, &ROOT, || panic!("no probe as root")).unwrap_err();
        assert_eq!(e, IsolationError::RootlessAsRoot);
        assert!(e.to_string().contains("for a non-root user"));
    }

    #[test]
    fn a_non_root_user_gets_rootless_overlay_or_copy_and_errors_name_the_fix() {
        let userns = Privilege::UserNamespace {
            map: "0→1000, 1-65536→100000-165535".into(),
            single: None,
        };
        let c = choose(Isolation::Auto, &userns, || report(true, false)).unwrap();
        assert_eq!((c.mode, c.copy_root), (Mode::Rootless, false));
        assert!(
            c.reason.starts_with("auto: rbuild runs as a non-root user"),
            "{}",
            c.reason
        );
        assert!(c.reason.contains("1-65536→100000-165535"), "{}", c.reason);
        // Overlay refused in the user namespace, mounts allowed: the copied root.
        let mut r = report(false, false);
        r.mounts = Ok(());
        let c = choose(Isolation::Rootless, &userns, || r).unwrap();
        assert_eq!((c.mode, c.copy_root), (Mode::Rootless, true));
        assert!(c.reason.contains("unshare: EPERM"), "{}", c.reason);
        // A single-id map says once what it limits.
        let single = Privilege::UserNamespace {
            map: "0→1000".into(),
            single: Some("/etc/subuid has no range for user u".into()),
        };
        let c = choose(Isolation::Auto, &single, || report(true, false)).unwrap();
        assert!(c.reason.contains("/etc/subuid"), "{}", c.reason);
        // Root of a user namespace asking for a mode by name: the probe decides.
        let c = choose(Isolation::Namespaces, &userns, || report(true, false)).unwrap();
        assert_eq!(c.mode, Mode::Namespaces);
        // Modes that need root are refused without probing, naming rootless.
        let e = choose(Isolation::Namespaces, &Privilege::User, || panic!()).unwrap_err();
        assert!(e.to_string().contains("--isolation rootless"), "{e}");
        // Without a user namespace: what refused it and the settings.
        let e = choose(Isolation::Auto, &Privilege::User, || report(false, false)).unwrap_err();
        let text = e.to_string();
        for needle in [
            "creating a user namespace was refused",
            "/etc/subuid",
            "user.max_user_namespaces",
            "kernel.apparmor_restrict_unprivileged_userns",
            "securityContext",
            "--privileged",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let e = choose(Isolation::Rootless, &Privilege::User, || {
            report(false, false)
        })
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--isolation rootless cannot run here"),
            "{e}"
        );
    }
}

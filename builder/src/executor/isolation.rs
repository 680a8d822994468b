//! Which sandbox RUN steps get (`--isolation`, `RBUILD_ISOLATION`): the modes, the choice
//! between them from what a probe of this host found ([`super::probe`]), and the errors that
//! say which privilege is missing and what grants it.
//!
//! - `namespaces`: mount, PID, UTS and IPC namespaces and an overlayfs root (needs root with
//!   `CAP_SYS_ADMIN`, and seccomp/AppArmor allowing `unshare` and `mount`).
//! - `chroot`: `chroot(2)` into a private copy of the root filesystem (needs root with
//!   `CAP_SYS_CHROOT`, `CAP_CHOWN`, `CAP_SETUID`/`CAP_SETGID`: Docker's and Kubernetes' default
//!   capabilities). Weaker: no PID, mount or network namespace (see [`super::chroot`]).
//! - `rootless`: not implemented yet; refused.
//! - `auto`: the strongest of the first two that works here.
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
}

/// The sandbox a RUN step runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Namespaces,
    Chroot,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Namespaces => "namespaces",
            Mode::Chroot => "chroot",
        }
    }
}

/// What the probe found for each mode: `Ok` when it works, else what was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub namespaces: Result<(), String>,
    pub chroot: Result<(), String>,
}

/// The mode RUN steps of this build use, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub mode: Mode,
    pub reason: String,
}

/// Why no RUN sandbox can be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsolationError {
    #[error("--isolation rootless is not implemented yet: as root, use --isolation namespaces (with CAP_SYS_ADMIN) or --isolation chroot (in a container with the default capabilities); nothing was run")]
    RootlessNotImplemented,
    #[error("--isolation namespaces cannot run here: {0}. It needs root with CAP_SYS_ADMIN: run the container with --privileged (Kubernetes: securityContext.privileged: true, or capabilities.add: [SYS_ADMIN] with seccomp and AppArmor Unconfined), or use --isolation chroot, which needs only Docker's default capabilities; nothing was run")]
    Namespaces(String),
    #[error("--isolation chroot cannot run here: {0}. It needs root (uid 0) with CAP_SYS_CHROOT, CAP_CHOWN, CAP_SETUID and CAP_SETGID (Docker's and Kubernetes' default capabilities: do not drop them, and run as runAsUser: 0); nothing was run")]
    Chroot(String),
    #[error("no RUN sandbox works here: namespaces: {namespaces}; chroot: {chroot}. RUN needs root: either with CAP_SYS_ADMIN (docker run --privileged, or Kubernetes securityContext.privileged: true) for --isolation namespaces, or with the default capabilities CAP_SYS_CHROOT, CAP_CHOWN, CAP_SETUID, CAP_SETGID (Kubernetes: runAsUser: 0, without dropping them) for --isolation chroot; nothing was run")]
    NoneWorks { namespaces: String, chroot: String },
}

/// Picks the mode for `requested` from what `probe` finds (called only when a mode must be
/// checked: never for `rootless`).
pub fn choose(
    requested: Isolation,
    probe: impl FnOnce() -> ProbeReport,
) -> Result<Choice, IsolationError> {
    if requested == Isolation::Rootless {
        return Err(IsolationError::RootlessNotImplemented);
    }
    let found = probe();
    match requested {
        Isolation::Namespaces => match found.namespaces {
            Ok(()) => Ok(Choice {
                mode: Mode::Namespaces,
                reason: "chosen with --isolation".into(),
            }),
            Err(e) => Err(IsolationError::Namespaces(e)),
        },
        Isolation::Chroot => match found.chroot {
            Ok(()) => Ok(Choice {
                mode: Mode::Chroot,
                reason: "chosen with --isolation".into(),
            }),
            Err(e) => Err(IsolationError::Chroot(e)),
        },
        Isolation::Auto | Isolation::Rootless => match (found.namespaces, found.chroot) {
            (Ok(()), _) => Ok(Choice {
                mode: Mode::Namespaces,
                reason: "auto: namespaces and overlayfs are allowed here".into(),
            }),
            (Err(ns), Ok(())) => Ok(Choice {
                mode: Mode::Chroot,
                reason: format!("auto: namespaces are not allowed here ({ns}); chroot is"),
            }),
            (Err(namespaces), Err(chroot)) => Err(IsolationError::NoneWorks { namespaces, chroot }),
        },
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
        }
    }

    #[test]
    fn auto_takes_the_strongest_mode_that_works() {
        let c = choose(Isolation::Auto, || report(true, true)).unwrap();
        assert_eq!(c.mode, Mode::Namespaces);
        let c = choose(Isolation::Auto, || report(false, true)).unwrap();
        assert_eq!(c.mode, Mode::Chroot);
        assert!(c.reason.contains("unshare: EPERM"), "{}", c.reason);
        let e = choose(Isolation::Auto, || report(false, false)).unwrap_err();
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
            choose(Isolation::Chroot, || report(true, true))
                .unwrap()
                .mode,
            Mode::Chroot
        );
        let e = choose(Isolation::Namespaces, || report(false, true)).unwrap_err();
        assert!(e.to_string().contains("--isolation chroot"), "{e}");
        let e = choose(Isolation::Rootless, || panic!("no probe for rootless")).unwrap_err();
        assert_eq!(e, IsolationError::RootlessNotImplemented);
        assert!(e.to_string().contains("not implemented yet"));
    }
}

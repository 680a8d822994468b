//! Resource limits of RUN steps: `--ulimit TYPE=SOFT[:HARD]` (set with `setrlimit` in the
//! step's process just before it becomes the step's user and execs, in every isolation mode)
//! and `--shm-size` (the size of the tmpfs at `/dev/shm`).
//!
//! The names are Docker's (`docker/go-units`, `ulimit.go`), plus `as` (RLIMIT_AS), which
//! go-units does not know. Neither limit is part of the image. Both are part of a RUN's cache
//! key when given, as in BuildKit: its `ExecOp.CacheMap` (`solver/llbsolver/ops/exec.go`)
//! digests the whole `ExecOp`, whose `Meta.Ulimit` holds the ulimits and whose `Mounts` hold
//! the `/dev/shm` tmpfs with its size (`dockerfile2llb/convert.go`: `AddUlimit`, and
//! `AddMount("/dev/shm", Scratch, Tmpfs(TmpfsSize(shmSize)))` when the size is above 0).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::sys::{SysError, SysResult};

/// The size of `/dev/shm` when `--shm-size` is not given: Docker's and runc's default (64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 << 20;

/// A resource `--ulimit` can limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum UlimitName {
    As,
    Core,
    Cpu,
    Data,
    Fsize,
    Locks,
    Memlock,
    Msgqueue,
    Nice,
    Nofile,
    Nproc,
    Rss,
    Rtprio,
    Rttime,
    Sigpending,
    Stack,
}

const NAMES: [(&str, UlimitName); 16] = [
    ("as", UlimitName::As),
    ("core", UlimitName::Core),
    ("cpu", UlimitName::Cpu),
    ("data", UlimitName::Data),
    ("fsize", UlimitName::Fsize),
    ("locks", UlimitName::Locks),
    ("memlock", UlimitName::Memlock),
    ("msgqueue", UlimitName::Msgqueue),
    ("nice", UlimitName::Nice),
    ("nofile", UlimitName::Nofile),
    ("nproc", UlimitName::Nproc),
    ("rss", UlimitName::Rss),
    ("rtprio", UlimitName::Rtprio),
    ("rttime", UlimitName::Rttime),
    ("sigpending", UlimitName::Sigpending),
    ("stack", UlimitName::Stack),
];

impl UlimitName {
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, n)| *n == self)
            .map_or("?", |(s, _)| s)
    }

    /// The `RLIMIT_*` resource.
    fn resource(self) -> libc::__rlimit_resource_t {
        match self {
            UlimitName::As => libc::RLIMIT_AS,
            UlimitName::Core => libc::RLIMIT_CORE,
            UlimitName::Cpu => libc::RLIMIT_CPU,
            UlimitName::Data => libc::RLIMIT_DATA,
            UlimitName::Fsize => libc::RLIMIT_FSIZE,
            UlimitName::Locks => libc::RLIMIT_LOCKS,
            UlimitName::Memlock => libc::RLIMIT_MEMLOCK,
            UlimitName::Msgqueue => libc::RLIMIT_MSGQUEUE,
            UlimitName::Nice => libc::RLIMIT_NICE,
            UlimitName::Nofile => libc::RLIMIT_NOFILE,
            UlimitName::Nproc => libc::RLIMIT_NPROC,
            UlimitName::Rss => libc::RLIMIT_RSS,
            UlimitName::Rtprio => libc::RLIMIT_RTPRIO,
            UlimitName::Rttime => libc::RLIMIT_RTTIME,
            UlimitName::Sigpending => libc::RLIMIT_SIGPENDING,
            UlimitName::Stack => libc::RLIMIT_STACK,
        }
    }
}

/// One `--ulimit`: `-1` is unlimited, as in Docker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: UlimitName,
    pub soft: i64,
    pub hard: i64,
}

/// Why a `--ulimit` value is not valid (Docker's rules and, where it has them, its words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UlimitError {
    #[error("invalid ulimit argument {0:?}: use TYPE=SOFT[:HARD], e.g. nofile=1024:2048")]
    Form(String),
    #[error("invalid ulimit type {0:?}: use one of as, core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio, rttime, sigpending, stack")]
    Name(String),
    #[error("invalid ulimit value {0:?}: a whole number, or -1 for unlimited")]
    Number(String),
    #[error("too many limit value arguments - {0}, can only have up to two, `soft[:hard]`")]
    TooMany(String),
    #[error("ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")]
    SoftAboveHard { soft: i64, hard: i64 },
}

impl FromStr for Ulimit {
    type Err = UlimitError;

    /// go-units' `ParseUlimit`: `NAME=SOFT[:HARD]`, the hard limit defaulting to the soft one.
    fn from_str(val: &str) -> Result<Self, Self::Err> {
        let (name, values) = val
            .split_once('=')
            .ok_or_else(|| UlimitError::Form(val.to_string()))?;
        let name = NAMES
            .iter()
            .find(|(s, _)| *s == name)
            .map(|(_, n)| *n)
            .ok_or_else(|| UlimitError::Name(name.to_string()))?;
        let num = |s: &str| {
            s.parse::<i64>()
                .ok()
                .filter(|n| *n >= -1)
                .ok_or_else(|| UlimitError::Number(s.to_string()))
        };
        let parts: Vec<&str> = values.split(':').collect();
        let (soft, hard) = match parts.as_slice() {
            [soft] => (num(soft)?, num(soft)?),
            [soft, hard] => (num(soft)?, num(hard)?),
            _ => return Err(UlimitError::TooMany(values.to_string())),
        };
        // -1 is unlimited: an unlimited hard limit is above any soft one, an unlimited soft
        // limit is above any finite hard one.
        if hard != -1 && (soft == -1 || soft > hard) {
            return Err(UlimitError::SoftAboveHard { soft, hard });
        }
        Ok(Ulimit { name, soft, hard })
    }
}

impl fmt::Display for Ulimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}:{}", self.name.as_str(), self.soft, self.hard)
    }
}

/// The `--ulimit`s as Docker's CLI keeps them: a later one of the same name replaces an
/// earlier one, sorted by name (`docker/cli` `UlimitOpt.GetList`).
pub fn normalise(mut given: Vec<Ulimit>) -> Vec<Ulimit> {
    let mut out: Vec<Ulimit> = Vec::new();
    for u in given.drain(..) {
        out.retain(|o| o.name != u.name);
        out.push(u);
    }
    out.sort_by_key(|u| u.name);
    out
}

fn rlim(v: i64) -> libc::rlim_t {
    if v < 0 {
        libc::RLIM_INFINITY
    } else {
        v as libc::rlim_t
    }
}

/// The limits as `setrlimit(2)` arguments, made before a fork so that the child only makes the
/// system calls (`in_place` sets them in `pre_exec`, where nothing may allocate).
pub fn as_rlimits(limits: &[Ulimit]) -> Vec<(libc::__rlimit_resource_t, libc::rlimit)> {
    limits
        .iter()
        .map(|u| {
            (
                u.name.resource(),
                libc::rlimit {
                    rlim_cur: rlim(u.soft),
                    rlim_max: rlim(u.hard),
                },
            )
        })
        .collect()
}

/// Sets each limit on the calling process (inherited across `execve`). Called before the
/// process gives up root: raising a hard limit needs CAP_SYS_RESOURCE.
pub fn apply(limits: &[Ulimit]) -> SysResult<()> {
    for u in limits {
        let r = libc::rlimit {
            rlim_cur: rlim(u.soft),
            rlim_max: rlim(u.hard),
        };
        // SAFETY: a valid resource number and a pointer to a live struct.
        let rc = unsafe { libc::setrlimit(u.name.resource(), &r) };
        if rc < 0 {
            return Err(SysError {
                op: format!("setrlimit --ulimit {u}"),
                source: std::io::Error::last_os_error(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Ulimit {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_forms() {
        assert_eq!(
            u("nofile=1024:2048"),
            Ulimit {
                name: UlimitName::Nofile,
                soft: 1024,
                hard: 2048
            }
        );
        assert_eq!(u("core=0").hard, 0);
        assert_eq!(
            u("nproc=10").hard,
            10,
            "the hard limit defaults to the soft one"
        );
        assert_eq!(u("memlock=-1:-1").soft, -1);
        assert_eq!(u("stack=8192:-1").hard, -1);
        assert_eq!(u("as=1000000").name, UlimitName::As);
        assert_eq!(u("nofile=1024:2048").to_string(), "nofile=1024:2048");
        for name in NAMES.iter().map(|(s, _)| s) {
            assert_eq!(u(&format!("{name}=1")).name.as_str(), *name);
        }
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let e = |s: &str| s.parse::<Ulimit>().unwrap_err();
        assert!(matches!(e("nofile"), UlimitError::Form(_)));
        assert!(matches!(e("files=1"), UlimitError::Name(_)));
        assert!(matches!(e("nofile=x"), UlimitError::Number(_)));
        assert!(matches!(e("nofile=-2"), UlimitError::Number(_)));
        assert!(matches!(e("nofile=1:2:3"), UlimitError::TooMany(_)));
        assert_eq!(
            e("nofile=10:5"),
            UlimitError::SoftAboveHard { soft: 10, hard: 5 }
        );
        assert!(matches!(
            e("nofile=-1:5"),
            UlimitError::SoftAboveHard { .. }
        ));
    }

    #[test]
    fn later_wins_and_sorted_by_name() {
        let got = normalise(vec![u("nproc=5"), u("core=1"), u("nproc=7")]);
        assert_eq!(got, vec![u("core=1"), u("nproc=7")]);
    }

    #[test]
    fn applied_to_a_child_process() {
        // In a child, so the test process keeps its own limits.
        // SAFETY: fork in a test; the child only calls async-signal-safe functions and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = apply(&[u("nofile=64:128"), u("core=0")]).is_ok();
            let mut r = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: valid pointer.
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
            let code = if ok && r.rlim_cur == 64 && r.rlim_max == 128 {
                0
            } else {
                1
            };
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}

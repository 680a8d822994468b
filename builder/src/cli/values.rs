//! Small validated flag values: platforms, build args, network, isolation and progress modes,
//! sizes.

use std::fmt;
use std::str::FromStr;

/// `--build-arg K=V`, or `K` alone to take the value from rbuild's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildArg {
    pub key: String,
    /// `None` when given as `K` and `K` is not set in the environment: Docker then leaves the
    /// ARG at its Dockerfile default.
    pub value: Option<String>,
}

impl BuildArg {
    pub fn parse(s: &str, env: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (s, env(s)),
        };
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "--build-arg {s:?}: the name must be letters, digits and '_' (KEY=VALUE, or KEY to take it from the environment)"
            ));
        }
        Ok(BuildArg {
            key: key.to_string(),
            value,
        })
    }
}

/// The network a RUN step gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The host's network (as BuildKit's default without a CNI setup).
    #[default]
    Default,
    /// A new, empty network namespace with only loopback.
    None,
    /// The host's network.
    Host,
}

/// The sandbox RUN steps get (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IsolationMode {
    /// The strongest mode that works here (probed once per build, at its first RUN that runs).
    #[default]
    Auto,
    /// Mount, PID, UTS and IPC namespaces and overlayfs (root with CAP_SYS_ADMIN).
    Namespaces,
    /// chroot into a private copy of the root filesystem (root with Docker's default
    /// capabilities, no CAP_SYS_ADMIN).
    Chroot,
    /// A non-root user: rbuild in its own user namespace (ids from /etc/subuid), overlayfs in
    /// it (or a copied root where the kernel refuses that).
    Rootless,
    /// kaniko's way, inside the rbuild image only: each step runs on the container's own root
    /// filesystem (replaced by the stage's), with the container's /proc, /sys and /dev — for
    /// steps chroot mode cannot run (the JVM). Never chosen by auto.
    InPlace,
}

impl IsolationMode {
    /// The name `--isolation` takes.
    pub fn to_engine_mode_name(self) -> String {
        clap::ValueEnum::to_possible_value(&self)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default()
    }

    /// The engine's value.
    pub fn to_engine(self) -> crate::executor::isolation::Isolation {
        use crate::executor::isolation::Isolation;
        match self {
            IsolationMode::Auto => Isolation::Auto,
            IsolationMode::Namespaces => Isolation::Namespaces,
            IsolationMode::Chroot => Isolation::Chroot,
            IsolationMode::Rootless => Isolation::Rootless,
            IsolationMode::InPlace => Isolation::InPlace,
        }
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` on a terminal, `plain` otherwise.
    #[default]
    Auto,
    Plain,
    Tty,
    Json,
    /// BuildKit's raw status stream (`SolveStatus` JSON, one object per line), as buildx's.
    Rawjson,
    Quiet,
    /// Nothing at all, not even the digests (buildx's `none`); errors still go to stderr.
    None,
}

/// A byte size such as `10GB`, `512MiB`, `1g` or `1048576`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num.parse().map_err(|_| {
            format!("size {s:?}: expected a number with an optional unit, e.g. 10GB")
        })?;
        let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1.0,
            "k" | "kb" => 1e3,
            "m" | "mb" => 1e6,
            "g" | "gb" => 1e9,
            "t" | "tb" => 1e12,
            "kib" => 1024.0,
            "mib" => 1024.0 * 1024.0,
            "gib" => 1024.0 * 1024.0 * 1024.0,
            "tib" => 1024.0f64.powi(4),
            other => {
                return Err(format!(
                    "size {s:?}: unknown unit {other:?} (use B, KB, MB, GB, KiB, MiB, GiB)"
                ))
            }
        };
        Ok(ByteSize((n * mult) as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0 as f64;
        if b >= 1e9 {
            write!(f, "{:.2}GB", b / 1e9)
        } else if b >= 1e6 {
            write!(f, "{:.1}MB", b / 1e6)
        } else if b >= 1e3 {
            write!(f, "{:.1}kB", b / 1e3)
        } else {
            write!(f, "{}B", self.0)
        }
    }
}

/// A memory size as Docker's CLI reads one (`--shm-size`; go-units' `RAMInBytes`): a number,
/// an optional space, then an optional k, m, g, t or p (any case, 1024-based), an optional i
/// and an optional b: `64m`, `64MiB`, `1.5g`, `67108864`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemBytes(pub u64);

impl FromStr for MemBytes {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("invalid size {s:?}: a number of bytes, or with a k, m or g suffix (1024-based), e.g. 64m")
        };
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, rest) = s.split_at(split);
        let valid_num = !num.is_empty()
            && num
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !valid_num {
            return Err(bad());
        }
        let mut unit = rest.strip_prefix(' ').unwrap_or(rest).chars().peekable();
        let power = match unit.peek().map(char::to_ascii_lowercase) {
            Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => {
                unit.next();
                match c {
                    'k' => 1,
                    'm' => 2,
                    'g' => 3,
                    't' => 4,
                    _ => 5,
                }
            }
            _ => 0,
        };
        if unit.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
            unit.next();
        }
        if unit.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
            unit.next();
        }
        if unit.next().is_some() {
            return Err(bad());
        }
        let n: f64 = num.parse().map_err(|_| bad())?;
        let bytes = n * 1024f64.powi(power);
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(bad());
        }
        Ok(MemBytes(bytes as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_from_value_or_environment() {
        let env = |k: &str| (k == "HOME_URL").then(|| "https://x".to_string());
        assert_eq!(
            BuildArg::parse("A=1=2", env).unwrap(),
            BuildArg {
                key: "A".into(),
                value: Some("1=2".into())
            }
        );
        assert_eq!(
            BuildArg::parse("HOME_URL", env).unwrap().value.as_deref(),
            Some("https://x")
        );
        assert_eq!(BuildArg::parse("UNSET", env).unwrap().value, None);
        assert!(BuildArg::parse("=x", env).is_err());
        assert!(BuildArg::parse("A-B=x", env).is_err());
    }

    #[test]
    fn memory_sizes_as_docker_reads_them() {
        let m = |s: &str| s.parse::<MemBytes>().map(|m| m.0);
        assert_eq!(m("64m"), Ok(64 << 20));
        assert_eq!(m("64M"), Ok(64 << 20));
        assert_eq!(m("64MiB"), Ok(64 << 20));
        assert_eq!(m("64mb"), Ok(64 << 20));
        assert_eq!(m("1g"), Ok(1 << 30));
        assert_eq!(m("512k"), Ok(512 << 10));
        assert_eq!(m("1.5k"), Ok(1536));
        assert_eq!(m("100 m"), Ok(100 << 20));
        assert_eq!(m("4096"), Ok(4096));
        assert_eq!(m("4096b"), Ok(4096));
        for bad in ["", "m", "-1m", "64x", "64mm", "1..5m", "64m "] {
            assert!(m(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!("10GB".parse::<ByteSize>().unwrap().0, 10_000_000_000);
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().0, 512 * 1024 * 1024);
        assert_eq!("1024".parse::<ByteSize>().unwrap().0, 1024);
        assert!("ten".parse::<ByteSize>().is_err());
        assert!("5 parsecs".parse::<ByteSize>().is_err());
    }
}

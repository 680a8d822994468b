//! What the build engine asks the sandbox helper to do: one serde struct, written as JSON to the
//! helper's stdin, and the status lines the helper writes back on fd 3.
//!
//! The spec names paths and numbers only: secret values never travel in it (the helper reads a
//! secret's file or variable itself, straight onto a tmpfs).

use std::path::PathBuf;

use rbuild_layers::device::{DeviceKind, DeviceRecord, Placeholder};
use serde::{Deserialize, Serialize};

use super::isolation::Mode;

/// The network a RUN step gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxNetwork {
    /// The host's network namespace (`--network=default` and `--network=host`).
    Host,
    /// A new network namespace with only loopback, up (`--network=none`).
    None,
}

/// Where a secret's bytes come from (read by the helper only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretFrom {
    File(PathBuf),
    Env(String),
}

/// One mount inside the sandbox, made after the standard ones, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxMount {
    /// Bind `source` (host path) at `target` (path in the root).
    Bind {
        source: PathBuf,
        target: String,
        readonly: bool,
    },
    /// An empty tmpfs.
    Tmpfs { target: String, size: Option<u64> },
    /// A secret as a read-only file on a tmpfs (`target`) and/or an environment variable (`env`).
    Secret {
        id: String,
        from: Option<SecretFrom>,
        target: Option<String>,
        env: Option<String>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// A device node of the image kept as a placeholder in the store (see
/// `rbuild_layers::device`): PID 1 makes the real node in the sandbox's root if the
/// placeholder is still visible there with exactly this record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxDevice {
    /// Cleaned path relative to the root, as bytes (names need not be UTF-8).
    pub path: Vec<u8>,
    /// Block (`true`) or character device.
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
}

impl SandboxDevice {
    pub fn from_placeholder(p: &Placeholder) -> SandboxDevice {
        SandboxDevice {
            path: p.path.clone(),
            block: p.record.kind == DeviceKind::Block,
            major: p.record.major,
            minor: p.record.minor,
            mode: p.record.mode,
        }
    }

    pub fn placeholder(&self) -> Placeholder {
        Placeholder {
            path: self.path.clone(),
            record: DeviceRecord {
                kind: if self.block {
                    DeviceKind::Block
                } else {
                    DeviceKind::Char
                },
                major: self.major,
                minor: self.minor,
                mode: self.mode & 0o7777,
            },
        }
    }
}

/// Everything the helper needs to run one RUN step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxSpec {
    /// The sandbox: namespaces and an overlay of `lowers` (`upper`, `work` and `merged` in
    /// `scratch`), or `chroot` into `merged`, the engine's private copy of the root filesystem
    /// (`lowers`, `upper`, `work`, `devices` are then unused).
    #[serde(default)]
    pub mode: Mode,
    /// In `rootless` mode: `merged` is the engine's private copy of the root (overlayfs is
    /// refused in the user namespace), bound as the root instead of an overlay mount.
    #[serde(default)]
    pub copy_root: bool,
    /// Unpacked parent layers in overlay format, bottom first (may be empty).
    pub lowers: Vec<PathBuf>,
    /// An empty directory used as the only lower layer when `lowers` is empty.
    pub empty_lower: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the overlay is mounted before `pivot_root`.
    pub merged: PathBuf,
    /// The step's scratch directory (holds the dirs above); the helper removes it when rbuild
    /// dies under it, so that nothing is left behind.
    pub scratch: PathBuf,
    /// `argv[0]` is looked up in the `PATH` of `env` when it has no `/`.
    pub argv: Vec<String>,
    /// `KEY=VALUE`, in order.
    pub env: Vec<String>,
    /// Absolute working directory in the root (created when missing).
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub hostname: String,
    pub network: SandboxNetwork,
    /// Host files bound read-only at `/etc/<name>` (resolv.conf, hosts, hostname).
    pub etc_files: Vec<(String, PathBuf)>,
    pub mounts: Vec<SandboxMount>,
    /// Device placeholders of the lower layers to turn into real nodes before the command runs.
    pub devices: Vec<SandboxDevice>,
    /// `--ulimit`s, set in the command's process before it execs.
    #[serde(default)]
    pub ulimits: Vec<super::limits::Ulimit>,
    /// `--shm-size`: the size of the `/dev/shm` tmpfs in bytes (`None`: 64 MiB). Never given
    /// in `chroot` mode, whose `/dev/shm` is a directory (refused before the step runs).
    #[serde(default)]
    pub shm_size: Option<u64>,
}

/// A line the helper writes on its status pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Setting up the sandbox failed: `op` is the refused operation, `errno` the kernel's answer.
    SetupFailed {
        op: String,
        errno: i32,
        hint: Option<String>,
    },
    /// The command exited with `code`.
    Exited(i32),
    /// The command was killed by `signal`.
    Signaled(i32),
}

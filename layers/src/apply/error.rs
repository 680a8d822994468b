//! The error type of layer application: every variant names the entry (or byte offset) and why.

use std::io;
use std::path::PathBuf;

/// Why applying a layer failed. On error the target directory may hold a partial result and
/// must be discarded (the snapshot cache unpacks into a temporary directory for that reason).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("opening the root directory {root:?} to apply a layer into")]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the layer stream (I/O or decompression failed)")]
    Read(#[source] io::Error),
    #[error("layer is not a valid tar at byte offset {offset}: {reason}")]
    Malformed { offset: u64, reason: &'static str },
    #[error(
        "layer has an oversized {what} at byte offset {offset}: {size} bytes, the limit is {limit}"
    )]
    Oversized {
        offset: u64,
        what: &'static str,
        size: u64,
        limit: u64,
    },
    #[error(
        "entry `{path}` at byte offset {offset} in layer declares {size} bytes of data; \
         a tar entry holds at most {limit} (a signed 64-bit size)"
    )]
    BadSize {
        path: String,
        offset: u64,
        size: u64,
        limit: u64,
    },
    #[error("entry `{path}` in layer escapes the root: rejected ({reason})")]
    Escape { path: String, reason: &'static str },
    #[error("entry `{path}` in layer is invalid: {reason}")]
    InvalidEntry { path: String, reason: &'static str },
    #[error("entry `{path}` in layer uses {what}, which rbuild does not support")]
    Unsupported { path: String, what: &'static str },
    #[error("applying entry `{path}`: its owner {uid}:{gid} does not exist in rbuild's user namespace (a rootless build maps only the ids /etc/subuid and /etc/subgid give this user: add a range for the user there, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 USER`)")]
    UnmappedOwner { path: String, uid: u32, gid: u32 },
    #[error("applying entry `{path}`: {op} failed")]
    Io {
        path: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Renders an untrusted name for an error message (lossy UTF-8, control characters escaped).
pub(crate) fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).escape_debug().to_string()
}

/// The error of a refused `chown` of `path` to `uid:gid`: `EINVAL` means an id the kernel
/// cannot map (a user namespace without it), said as such.
pub(crate) fn chown_err(
    path: &[u8],
    uid: u32,
    gid: u32,
) -> impl FnOnce(rustix::io::Errno) -> ApplyError + '_ {
    move |e| {
        if e == rustix::io::Errno::INVAL {
            ApplyError::UnmappedOwner {
                path: show(path),
                uid,
                gid,
            }
        } else {
            io_err(path, "chown")(e)
        }
    }
}

/// Shorthand for an [`ApplyError::Io`] about `path`.
pub(crate) fn io_err<'a>(
    path: &'a [u8],
    op: &'static str,
) -> impl FnOnce(rustix::io::Errno) -> ApplyError + 'a {
    move |e| ApplyError::Io {
        path: show(path),
        op,
        source: e.into(),
    }
}

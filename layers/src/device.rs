//! Device nodes as data: how a block or character device of a layer is kept on disk outside a
//! RUN sandbox.
//!
//! SECURITY.md: device nodes are data until they are inside a RUN sandbox root. A layer may
//! carry a `0666` block device with the host disk's major/minor; created with `mknod` in a
//! snapshot under the store, it would give anyone who can reach that directory raw access to
//! the disk. So, unless the caller asks for real nodes ([`crate::apply::DeviceMode::Create`],
//! only for `--output type=local`, which writes a filesystem for the user as BuildKit does),
//! applying a layer writes a *placeholder*: an empty regular file with mode 000 whose
//! [`DEVICE_XATTR`] records the device. Listing a tree for a layer
//! ([`crate::tar::entries_from_dir`], [`crate::tar::entries_from_overlay_upper`]) turns a
//! placeholder back into the device entry it stands for, so layers written from such trees
//! (ADD of an archive, a RUN's copy-up) hold the same device entries as before, byte for byte.
//!
//! A layer cannot forge a placeholder: the applier refuses `user.rbuild.*` xattrs from layers,
//! and listing never emits them.
//!
//! A RUN step sees the real node, as with BuildKit: the applier reports the placeholders it
//! wrote ([`Placeholder`]), the snapshot cache keeps that list beside each snapshot, and the
//! sandbox's PID 1 turns each one still visible into the node inside the overlay before the
//! command runs ([`materialize`]); afterwards the engine takes back the nodes the command left
//! untouched ([`remove_if_untouched`]), so they add nothing to the step's layer.

mod materialize;

pub use materialize::{materialize, remove_if_untouched, Materialized, NodeMeta};

/// The xattr of a placeholder file: `"<c|b> <major> <minor> <mode in octal>"`.
pub const DEVICE_XATTR: &str = "user.rbuild.device";

/// Prefix of the xattrs rbuild uses for its own bookkeeping; never content of a layer.
pub const RBUILD_XATTR_PREFIX: &str = "user.rbuild.";

/// Block or character device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// A device node recorded by a placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRecord {
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// Permission bits plus setuid/setgid/sticky.
    pub mode: u32,
}

impl DeviceRecord {
    /// The xattr value.
    pub fn encode(&self) -> String {
        let k = match self.kind {
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        format!("{k} {} {} {:o}", self.major, self.minor, self.mode & 0o7777)
    }

    /// Parses an xattr value written by [`DeviceRecord::encode`].
    pub fn parse(value: &[u8]) -> Option<DeviceRecord> {
        let s = std::str::from_utf8(value).ok()?;
        let mut it = s.split(' ');
        let kind = match it.next()? {
            "c" => DeviceKind::Char,
            "b" => DeviceKind::Block,
            _ => return None,
        };
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let mode = u32::from_str_radix(it.next()?, 8).ok()?;
        if it.next().is_some() || mode > 0o7777 {
            return None;
        }
        Some(DeviceRecord {
            kind,
            major,
            minor,
            mode,
        })
    }
}

/// Most placeholders one applied layer reports (and one snapshot lists): beyond it, devices
/// still become placeholders but a RUN sees them as such (a hostile layer of a million device
/// nodes must not grow memory or the sandbox spec).
pub const MAX_REPORTED_PLACEHOLDERS: usize = 4096;

/// A placeholder written by applying a layer: where (a cleaned path relative to the root,
/// bytes as in the tar) and the device it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub path: Vec<u8>,
    pub record: DeviceRecord,
}

impl Placeholder {
    /// One line of a snapshot's placeholder list: the record, a space, the path in hex (paths
    /// may hold any byte but NUL and `/`-separated names, newlines included).
    pub fn to_line(&self) -> String {
        format!("{} {}", self.record.encode(), hex::encode(&self.path))
    }

    /// Parses a line written by [`Placeholder::to_line`].
    pub fn from_line(line: &str) -> Option<Placeholder> {
        let (record, path) = line.rsplit_once(' ')?;
        let path = hex::decode(path).ok()?;
        if path.is_empty() || path.contains(&0) {
            return None;
        }
        Some(Placeholder {
            path,
            record: DeviceRecord::parse(record.as_bytes())?,
        })
    }
}

/// The device a file at `path` with metadata `meta` stands for, if it is a placeholder (an
/// empty regular file, mode 000, with a valid [`DEVICE_XATTR`]).
pub fn placeholder_of(path: &std::path::Path, meta: &std::fs::Metadata) -> Option<DeviceRecord> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() || meta.len() != 0 || meta.mode() & 0o7777 != 0 {
        return None;
    }
    let value = xattr::get(path, DEVICE_XATTR).ok()??;
    DeviceRecord::parse(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_junk() {
        let r = DeviceRecord {
            kind: DeviceKind::Block,
            major: 8,
            minor: 0,
            mode: 0o4666,
        };
        assert_eq!(r.encode(), "b 8 0 4666");
        assert_eq!(DeviceRecord::parse(r.encode().as_bytes()), Some(r));
        for bad in [
            "",
            "x 1 2 3",
            "c 1 2",
            "c 1 2 9",
            "c 1 2 17777",
            "c -1 2 0",
            "c 1 2 0 x",
        ] {
            assert_eq!(DeviceRecord::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn placeholder_lines_round_trip_any_path_bytes() {
        let p = Placeholder {
            path: b"dev/od d\nname\xff".to_vec(),
            record: DeviceRecord {
                kind: DeviceKind::Char,
                major: 1,
                minor: 3,
                mode: 0o666,
            },
        };
        assert_eq!(Placeholder::from_line(&p.to_line()), Some(p));
        for bad in ["c 1 3 666", "c 1 3 666 zz", "c 1 3 666 ", "c 1 3 666 6100"] {
            assert_eq!(Placeholder::from_line(bad), None, "{bad:?}");
        }
    }
}

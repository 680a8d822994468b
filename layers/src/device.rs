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
}

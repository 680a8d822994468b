//! OCI whiteout names (image-spec `layer.md`, "Whiteouts").
//!
//! A file `.wh.NAME` in a layer deletes `NAME` from the layers below; a file `.wh..wh..opq` in a
//! directory makes that directory opaque (nothing below shows through). Writers emit whiteouts
//! before their siblings; appliers must never create the whiteout files themselves.

/// Prefix of a whiteout entry's base name.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Base name of the opaque-directory marker.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// What a layer entry's base name means for the applier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutKind<'a> {
    /// An ordinary entry.
    None,
    /// Deletes the sibling with this name.
    Delete(&'a str),
    /// Marks the parent directory opaque.
    Opaque,
}

/// Classifies a base name (the last path component of a tar entry).
pub fn classify(base_name: &str) -> WhiteoutKind<'_> {
    if base_name == OPAQUE_WHITEOUT {
        WhiteoutKind::Opaque
    } else if let Some(target) = base_name.strip_prefix(WHITEOUT_PREFIX) {
        WhiteoutKind::Delete(target)
    } else {
        WhiteoutKind::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_whiteouts() {
        assert_eq!(classify(".wh..wh..opq"), WhiteoutKind::Opaque);
        assert_eq!(classify(".wh.foo"), WhiteoutKind::Delete("foo"));
        assert_eq!(classify("foo.wh.bar"), WhiteoutKind::None);
    }
}

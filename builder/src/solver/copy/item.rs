//! The unit a COPY/ADD passes from planning to hashing to writing: one file-system object with
//! its destination, before the ownership and mode rules of the step are applied, and the one
//! rule for the mode it is recorded and written with.

use std::path::PathBuf;

use rbuild_layers::Digest;

/// One file-system object to put in the layer, before ownership and mode rules.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// Absolute destination path, cleaned, without the leading `/`.
    pub(super) dest: String,
    pub(super) kind: ItemKind,
    /// Permission bits of the source.
    pub(super) mode: u32,
    /// Content digest for the key (files and heredocs); link target for symlinks.
    pub(super) digest: Option<Digest>,
    /// For a single file copied to a destination not spelled as a directory: the name it takes
    /// if the destination turns out to be an existing directory in the image (BuildKit copies
    /// it inside, fsutil's `prepareTargetDir`). Decided on a miss, against the parent's
    /// filesystem, which the parent key already pins.
    pub(super) name_if_dir: Option<String>,
    /// The path in the build context of a file copied from it (for its content digest).
    pub(super) ctx_rel: Option<String>,
    /// The source's uid/gid, kept without `--chown` when copying from a stage or image
    /// (BuildKit keeps them); `None` for the build context, whose files become 0:0.
    pub(super) owner: Option<(u32, u32)>,
    /// The hard-link group of a file that shares its inode with other files copied from the
    /// same source directory: they stay one inode in the layer, as in BuildKit (whose copy
    /// links what one source's walk meets twice; files of different sources are not linked).
    pub(super) link_group: Option<usize>,
}

#[derive(Debug, Clone)]
pub(super) enum ItemKind {
    File(PathBuf),
    Dir,
    Symlink(String),
    /// A tar archive to extract at `dest` (ADD).
    Archive(PathBuf),
}

impl Item {
    /// An item with no digest, no directory fallback name, no build-context path, no owner
    /// and no hard-link group: the fields planning fills in only for some items.
    pub(super) fn new(dest: String, kind: ItemKind, mode: u32) -> Item {
        Item {
            dest,
            kind,
            mode,
            digest: None,
            name_if_dir: None,
            ctx_rel: None,
            owner: None,
            link_group: None,
        }
    }

    pub(super) fn is_symlink(&self) -> bool {
        matches!(self.kind, ItemKind::Symlink(_))
    }

    pub(super) fn is_archive(&self) -> bool {
        matches!(self.kind, ItemKind::Archive(_))
    }

    /// The mode the item is recorded in the key with and written with (before `--chmod`).
    pub(super) fn layer_mode(&self, normalize: bool) -> u32 {
        normalized_mode(self.mode, self.is_symlink(), normalize)
    }
}

fn normalized_mode(mode: u32, is_symlink: bool, normalize: bool) -> u32 {
    if is_symlink {
        0o777
    } else if !normalize {
        mode & 0o7777
    } else {
        // Only the bits a umask decides (group/other write) are cleared: never widen a mode,
        // so a 0600 file stays 0600 while 0664/0775 checkouts give 0644/0755.
        mode & 0o7777 & !0o022
    }
}

#[cfg(test)]
mod tests {
    use super::normalized_mode;

    #[test]
    fn normalizing_clears_only_group_and_other_write() {
        assert_eq!(normalized_mode(0o100664, false, true), 0o644);
        assert_eq!(normalized_mode(0o40775, false, true), 0o755);
        assert_eq!(normalized_mode(0o100600, false, true), 0o600);
        assert_eq!(normalized_mode(0o104775, false, true), 0o4755);
        assert_eq!(normalized_mode(0o100664, false, false), 0o664);
        assert_eq!(normalized_mode(0o120700, true, true), 0o777);
    }
}

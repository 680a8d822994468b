//! Whiteouts: the one place rbuild knows how a layer deletes what lies below it, in both of
//! its forms. Every writer of layers (the entry list, the overlay-upper walker), every reader
//! (the applier, the path index) and every lookup through a stack of layers uses this module.
//!
//! In a layer tar (OCI image-spec `layer.md`, "Whiteouts"): a file `DIR/.wh.NAME` deletes
//! `DIR/NAME` from the layers below, and a file `DIR/.wh..wh..opq` makes `DIR` opaque (nothing
//! below shows through). Whiteouts hide only lower layers, never entries of their own layer; a
//! writer puts them before the other entries of their directory; names starting with `.wh.` are
//! never real files.
//!
//! In an overlayfs directory (kernel `Documentation/filesystems/overlayfs.rst`), see
//! [`overlay`]: a whiteout is a character device 0:0, an opaque directory carries the xattr
//! `trusted.overlay.opaque=y` (`user.overlay.opaque=y` with the `userxattr` mount option).

use std::cmp::Ordering;

/// Prefix of a whiteout's base name; no real file's name starts with it.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// Base name of the opaque-directory marker.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What a tar entry's path means. Paths are bytes: names in a tar need not be UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// An ordinary entry.
    Regular,
    /// Deletes `dir/target` from the layers below (`dir` is empty at the root).
    Whiteout { dir: &'a [u8], target: &'a [u8] },
    /// Makes `dir` opaque (`dir` is empty for the root).
    Opaque { dir: &'a [u8] },
}

/// Classifies a clean relative tar path (no `.`/`..` components, no leading or trailing `/`).
/// Only the base name matters; [`is_reserved`] tells whether a directory on the way is misused.
pub fn classify(path: &[u8]) -> Entry<'_> {
    let (dir, base) = match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&path[..0], path),
    };
    if base == OPAQUE_MARKER.as_bytes() {
        Entry::Opaque { dir }
    } else if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        Entry::Whiteout { dir, target }
    } else {
        Entry::Regular
    }
}

/// Whether `name` (one path component) is reserved for whiteouts: such a name is never a real
/// file or directory, in a layer or in a tree a layer is applied to.
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX.as_bytes())
}

/// Whether a whiteout's target names exactly one sibling (not empty, `.`, `..`, nor a path).
pub fn is_valid_target(target: &[u8]) -> bool {
    !(target.is_empty() || target == b"." || target == b".." || target.contains(&b'/'))
}

/// The tar path of the whiteout that deletes `path` (relative, slash-separated).
pub fn whiteout_path(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => format!("{}{WHITEOUT_PREFIX}{}", &path[..=i], &path[i + 1..]),
        None => format!("{WHITEOUT_PREFIX}{path}"),
    }
}

/// The tar path of the marker that makes directory `dir` opaque (`""` for the root).
pub fn opaque_marker_path(dir: &str) -> String {
    if dir.is_empty() {
        OPAQUE_MARKER.to_string()
    } else {
        format!("{dir}/{OPAQUE_MARKER}")
    }
}

/// Orders two base names of one directory as a layer lists them: the opaque marker first, then
/// whiteouts, then the rest, each group in byte order. Whiteouts must precede their siblings so
/// that an applier processes them before adding the directory's new content.
pub fn compare_siblings(a: &str, b: &str) -> Ordering {
    rank(a).cmp(&rank(b)).then_with(|| a.cmp(b))
}

fn rank(base: &str) -> u8 {
    if base == OPAQUE_MARKER {
        0
    } else if is_reserved(base.as_bytes()) {
        1
    } else {
        2
    }
}

/// What one layer holds at a directory on the way to a looked-up path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTheWay {
    /// Nothing: the layer has nothing further down either.
    Missing,
    /// A whiteout: the path is deleted from this layer down.
    Whiteout,
    /// A directory; an opaque one hides the same directory of the layers below.
    Dir { opaque: bool },
    /// Anything else (a file, a symlink, a device): it replaces what the layers below have there.
    NotDir,
}

/// What one layer holds at the looked-up path itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtPath<T> {
    Missing,
    Whiteout,
    /// An entry (of any kind but a whiteout), described by the caller.
    Entry(T),
}

/// One layer's answer for a path, with the overlay rules applied inside that layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InLayer<T> {
    /// The layer holds the path.
    Found(T),
    /// A whiteout, a non-directory on the way, or an opaque directory on the way without the
    /// entry: nothing below this layer shows through.
    Hidden,
    /// Not in this layer and not hidden by it: look below.
    Absent,
}

/// Looks a path of `depth` components up in one layer, whatever its form (an unpacked overlay
/// directory, a path index): `on_the_way(i)` says what the layer holds at the first `i + 1`
/// components (asked in order, for the directories leading to the path only), `at_path` what
/// it holds at the whole path (asked only when every directory on the way is one).
pub fn look_up_in_layer<T>(
    depth: usize,
    mut on_the_way: impl FnMut(usize) -> OnTheWay,
    at_path: impl FnOnce() -> AtPath<T>,
) -> InLayer<T> {
    let mut opaque_on_the_way = false;
    for i in 0..depth.saturating_sub(1) {
        match on_the_way(i) {
            OnTheWay::Whiteout | OnTheWay::NotDir => return InLayer::Hidden,
            OnTheWay::Dir { opaque } => opaque_on_the_way |= opaque,
            OnTheWay::Missing => return absent_or_hidden(opaque_on_the_way),
        }
    }
    match at_path() {
        AtPath::Whiteout => InLayer::Hidden,
        AtPath::Entry(t) => InLayer::Found(t),
        AtPath::Missing => absent_or_hidden(opaque_on_the_way),
    }
}

/// A path this layer lacks is hidden when an opaque directory of this layer is on its way.
fn absent_or_hidden<T>(opaque_on_the_way: bool) -> InLayer<T> {
    if opaque_on_the_way {
        InLayer::Hidden
    } else {
        InLayer::Absent
    }
}

/// Whiteouts as overlayfs stores them in a layer directory (an overlay lower or upper).
pub mod overlay {
    use std::fs::Metadata;
    use std::os::fd::AsFd;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;

    use rustix::fs::{self as rfs, FileType, Mode};

    /// The opaque-directory xattr rbuild writes.
    pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

    /// The opaque-directory xattrs rbuild reads: the kernel uses the `user.` one under the
    /// `userxattr` mount option.
    pub const OPAQUE_XATTRS: [&str; 2] = [OPAQUE_XATTR, USER_OPAQUE_XATTR];

    /// The value that makes a directory opaque.
    pub const OPAQUE_VALUE: &[u8] = b"y";

    /// overlayfs's own xattr namespaces (whiteouts, opaque directories, redirects): never the
    /// content of a layer.
    pub const XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

    /// Which xattr namespace an overlay mount keeps its own attributes in: `trusted.` (the
    /// default, needs `CAP_SYS_ADMIN` in the initial user namespace) or `user.` (the `userxattr`
    /// mount option, which a mount inside a user namespace needs).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum OverlayXattrs {
        Trusted,
        User,
    }

    impl OverlayXattrs {
        /// The opaque-directory xattr of a mount with these options.
        pub fn opaque(self) -> &'static str {
            match self {
                OverlayXattrs::Trusted => OPAQUE_XATTR,
                OverlayXattrs::User => USER_OPAQUE_XATTR,
            }
        }
    }

    /// Whether the directory `dir` of an upper directory is opaque *for the mount that wrote
    /// it*: only that mount's xattr counts. The other one can be there as plain data — a
    /// `trusted.` mount copies a lower directory's `user.overlay.opaque` up like any xattr,
    /// although the copy is not opaque.
    pub fn is_opaque_in_upper(dir: &Path, xattrs: OverlayXattrs) -> bool {
        matches!(xattr::get(dir, xattrs.opaque()), Ok(Some(v)) if v == OPAQUE_VALUE)
    }

    /// Whether `name` is one of overlayfs's own xattrs.
    pub fn is_overlay_xattr(name: &str) -> bool {
        XATTR_PREFIXES.iter().any(|p| name.starts_with(p))
    }

    /// Whether a character device with this number is a whiteout (0:0).
    pub fn is_whiteout_device(major: u32, minor: u32) -> bool {
        major == 0 && minor == 0
    }

    /// Whether the (not followed) metadata is a whiteout: a character device 0:0.
    pub fn is_whiteout(meta: &Metadata) -> bool {
        meta.file_type().is_char_device() && meta.rdev() == 0
    }

    /// Whether the directory at `dir` is opaque (either xattr set to `y`).
    pub fn is_opaque(dir: &Path) -> bool {
        OPAQUE_XATTRS
            .iter()
            .any(|name| matches!(xattr::get(dir, name), Ok(Some(v)) if v == OPAQUE_VALUE))
    }

    /// [`is_opaque`] on an open directory.
    pub fn is_opaque_fd(dir: impl AsFd) -> bool {
        let mut buf = [0u8; 4];
        OPAQUE_XATTRS.iter().any(|name| {
            rfs::fgetxattr(dir.as_fd(), *name, &mut buf[..])
                .is_ok_and(|n| buf[..n] == *OPAQUE_VALUE)
        })
    }

    /// Creates the whiteout `name` in the open directory `dir` (needs root, or `CAP_MKNOD`).
    pub fn make_whiteout(dir: impl AsFd, name: &[u8]) -> rustix::io::Result<()> {
        rfs::mknodat(
            dir,
            name,
            FileType::CharacterDevice,
            Mode::empty(),
            rfs::makedev(0, 0),
        )
    }

    /// The xattr of a whiteout *placeholder*: an empty regular file with mode 000, written where
    /// the filesystem refuses the 0:0 device (overlayfs itself refuses to create one, so a
    /// store on the overlay root of a container gets these). rbuild's readers
    /// ([`is_whiteout_at`]) honour it; a kernel overlay mount would not, so a tree holding one
    /// carries [`WHITEOUT_PLACEHOLDER_MARK`] on its root and is never an overlay lower
    /// directory. Layers cannot forge it (`user.rbuild.` xattrs are refused from layers).
    pub const WHITEOUT_PLACEHOLDER_XATTR: &str = "user.rbuild.whiteout";

    /// Set on the root of a tree holding whiteout placeholders.
    pub const WHITEOUT_PLACEHOLDER_MARK: &str = "user.rbuild.whiteout-placeholders";

    /// [`make_whiteout`], or where the filesystem refuses that (`EPERM`), a placeholder;
    /// returns whether it is one (the caller then marks the tree's root).
    pub fn make_whiteout_or_placeholder(dir: impl AsFd, name: &[u8]) -> rustix::io::Result<bool> {
        match make_whiteout(&dir, name) {
            Ok(()) => Ok(false),
            Err(rustix::io::Errno::PERM) => {
                let fd = rfs::openat(
                    &dir,
                    name,
                    rfs::OFlags::CREATE
                        | rfs::OFlags::EXCL
                        | rfs::OFlags::WRONLY
                        | rfs::OFlags::CLOEXEC
                        | rfs::OFlags::NOFOLLOW,
                    Mode::empty(),
                )?;
                rfs::fsetxattr(
                    &fd,
                    WHITEOUT_PLACEHOLDER_XATTR,
                    b"y",
                    rfs::XattrFlags::empty(),
                )?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the entry at `path`, whose (not followed) metadata is `meta`, is a whiteout:
    /// a 0:0 character device, or a placeholder ([`WHITEOUT_PLACEHOLDER_XATTR`]).
    pub fn is_whiteout_at(path: &Path, meta: &Metadata) -> bool {
        is_whiteout(meta)
            || (meta.file_type().is_file()
                && meta.len() == 0
                && meta.mode() & 0o7777 == 0
                && matches!(xattr::get(path, WHITEOUT_PLACEHOLDER_XATTR), Ok(Some(_))))
    }

    /// Whether the tree `tree` holds whiteout placeholders (then it cannot be an overlay lower).
    pub fn has_whiteout_placeholders(tree: &Path) -> bool {
        matches!(xattr::get(tree, WHITEOUT_PLACEHOLDER_MARK), Ok(Some(_)))
    }

    /// The opaque-directory xattr written where `trusted.` xattrs are refused.
    pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

    /// Set on the root of a tree whose opaque directories carry [`USER_OPAQUE_XATTR`] (never
    /// in a layer: `user.rbuild.` xattrs are rbuild's own).
    pub const USER_OPAQUE_MARK: &str = "user.rbuild.opaque-in-user-xattr";

    /// Marks the open directory `dir` opaque: `trusted.overlay.opaque`, which needs
    /// `CAP_SYS_ADMIN`; without it (root in a container with the default capabilities, where
    /// RUN runs in `chroot` mode and no overlay is mounted) `user.overlay.opaque`, which rbuild's
    /// own readers ([`is_opaque`]) honour as well — then returns true, and the caller marks the
    /// tree ([`USER_OPAQUE_MARK`]) so that [`promote_user_opaque`] fixes it before a kernel
    /// overlay mount, which reads only the `trusted.` xattr.
    pub fn mark_opaque(dir: impl AsFd) -> rustix::io::Result<bool> {
        match rfs::fsetxattr(&dir, OPAQUE_XATTR, OPAQUE_VALUE, rfs::XattrFlags::empty()) {
            Err(rustix::io::Errno::PERM) => {
                rfs::fsetxattr(
                    &dir,
                    USER_OPAQUE_XATTR,
                    OPAQUE_VALUE,
                    rfs::XattrFlags::empty(),
                )?;
                Ok(true)
            }
            other => other.map(|()| false),
        }
    }

    /// Before `tree` (a snapshot) is a lower directory of a kernel overlay mount: when it was
    /// unpacked without the right to write `trusted.` xattrs ([`USER_OPAQUE_MARK`] on its
    /// root), gives its opaque directories `trusted.overlay.opaque` (the caller may mount, so
    /// it may write them) and drops the mark. One `getxattr` when there is nothing to do;
    /// idempotent, so concurrent builds may both do it.
    pub fn promote_user_opaque(tree: &Path) -> std::io::Result<()> {
        if !matches!(xattr::get(tree, USER_OPAQUE_MARK), Ok(Some(_))) {
            return Ok(());
        }
        promote_dir(tree)?;
        match xattr::remove(tree, USER_OPAQUE_MARK) {
            Err(e) if e.raw_os_error() != Some(libc::ENODATA) => Err(e),
            _ => Ok(()),
        }
    }

    fn promote_dir(dir: &Path) -> std::io::Result<()> {
        if matches!(xattr::get(dir, USER_OPAQUE_XATTR), Ok(Some(v)) if v == OPAQUE_VALUE) {
            xattr::set(dir, OPAQUE_XATTR, OPAQUE_VALUE)?;
        }
        for de in std::fs::read_dir(dir)? {
            let de = de?;
            if de.file_type()?.is_dir() {
                promote_dir(&de.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classifies_tar_paths() {
        assert_eq!(classify(b".wh..wh..opq"), Entry::Opaque { dir: b"" });
        assert_eq!(classify(b"a/b/.wh..wh..opq"), Entry::Opaque { dir: b"a/b" });
        assert_eq!(
            classify(b".wh.foo"),
            Entry::Whiteout {
                dir: b"",
                target: b"foo"
            }
        );
        assert_eq!(
            classify(b"a/.wh.\xff"),
            Entry::Whiteout {
                dir: b"a",
                target: b"\xff"
            }
        );
        // Only the base name is classified.
        assert_eq!(classify(b".wh.d/f"), Entry::Regular);
        assert_eq!(classify(b"foo.wh.bar"), Entry::Regular);
        assert_eq!(classify(b"a/.wh"), Entry::Regular);
    }

    #[test]
    fn degenerate_targets_are_not_valid() {
        for bad in [&b""[..], b".", b"..", b"a/b"] {
            assert!(!is_valid_target(bad), "{bad:?}");
        }
        assert!(is_valid_target(b"..."));
        assert!(is_valid_target(b".wh.x"));
        // `.wh..wh..opq` is the opaque marker, `.wh..wh.x` a whiteout of `.wh.x`.
        assert_eq!(
            classify(b".wh..wh.x"),
            Entry::Whiteout {
                dir: b"",
                target: b".wh.x"
            }
        );
    }

    #[test]
    fn builds_the_names_it_classifies() {
        assert_eq!(whiteout_path("a/b/c"), "a/b/.wh.c");
        assert_eq!(whiteout_path("c"), ".wh.c");
        assert_eq!(opaque_marker_path("a/b"), "a/b/.wh..wh..opq");
        assert_eq!(opaque_marker_path(""), ".wh..wh..opq");
    }

    #[test]
    fn siblings_order_marker_then_whiteouts_then_the_rest() {
        let mut names = ["b", ".wh.z", "a", OPAQUE_MARKER, ".wh.a", ".a"];
        names.sort_by(|a, b| compare_siblings(a, b));
        assert_eq!(names, [OPAQUE_MARKER, ".wh.a", ".wh.z", ".a", "a", "b"]);
    }

    /// A layer as a map from path to what is there, for the lookup rules.
    fn look_up(layer: &[(&str, OnTheWay)], path: &str) -> InLayer<()> {
        let comps: Vec<&str> = path.split('/').collect();
        let get = |n: usize| {
            let key = comps[..n].join("/");
            layer.iter().find(|(p, _)| *p == key).map(|(_, k)| *k)
        };
        look_up_in_layer(
            comps.len(),
            |i| get(i + 1).unwrap_or(OnTheWay::Missing),
            || match get(comps.len()) {
                None => AtPath::Missing,
                Some(OnTheWay::Whiteout) => AtPath::Whiteout,
                Some(_) => AtPath::Entry(()),
            },
        )
    }

    #[test]
    fn lookup_rules_inside_one_layer() {
        use OnTheWay::*;
        let layer = [
            ("d", Dir { opaque: false }),
            ("d/f", NotDir),
            ("d/gone", Whiteout),
            ("o", Dir { opaque: true }),
            ("o/kept", NotDir),
            ("f", NotDir),
            ("w", Whiteout),
        ];
        assert_eq!(look_up(&layer, "d"), InLayer::Found(()));
        assert_eq!(look_up(&layer, "d/f"), InLayer::Found(()));
        assert_eq!(look_up(&layer, "d/x"), InLayer::Absent);
        assert_eq!(look_up(&layer, "d/gone"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "d/gone/below"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "o"), InLayer::Found(()));
        assert_eq!(look_up(&layer, "o/kept"), InLayer::Found(()));
        assert_eq!(look_up(&layer, "o/lower"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "o/lower/deeper"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "f/below"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "w"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "w/x"), InLayer::Hidden);
        assert_eq!(look_up(&layer, "x/y"), InLayer::Absent);
    }

    #[test]
    fn overlay_xattrs_and_devices() {
        assert!(overlay::is_overlay_xattr("trusted.overlay.opaque"));
        assert!(overlay::is_overlay_xattr("user.overlay.redirect"));
        assert!(!overlay::is_overlay_xattr("user.mime_type"));
        assert!(!overlay::is_overlay_xattr("trusted.overlayx"));
        assert!(overlay::is_whiteout_device(0, 0));
        assert!(!overlay::is_whiteout_device(1, 3));
        assert!(!overlay::is_whiteout_device(0, 1));
    }

    #[test]
    fn overlay_whiteouts_and_opaque_dirs_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(t.path()).unwrap();
        let file = t.path().join("f");
        std::fs::write(&file, "x").unwrap();
        assert!(!overlay::is_whiteout(
            &std::fs::symlink_metadata(&file).unwrap()
        ));
        assert!(!overlay::is_opaque(t.path()));
        assert!(!overlay::is_opaque_fd(&dir));
        // Both need root (mknod, a `trusted.` xattr).
        if overlay::make_whiteout(&dir, b"gone").is_ok() {
            let meta = std::fs::symlink_metadata(t.path().join("gone")).unwrap();
            assert!(overlay::is_whiteout(&meta));
        } else {
            eprintln!("SKIPPED: mknod of a whiteout needs root");
        }
        if overlay::mark_opaque(&dir).is_ok() {
            assert!(overlay::is_opaque(t.path()));
            assert!(overlay::is_opaque_fd(&dir));
        } else {
            eprintln!("SKIPPED: trusted.* xattrs need root");
        }
        // The `user.` form counts too, but only with the value `y`.
        let sub = t.path().join("u");
        std::fs::create_dir(&sub).unwrap();
        if xattr::set(&sub, "user.overlay.opaque", b"n").is_ok() {
            assert!(!overlay::is_opaque(&sub));
            xattr::set(&sub, "user.overlay.opaque", b"y").unwrap();
            assert!(overlay::is_opaque(&sub));
            assert!(overlay::is_opaque_fd(std::fs::File::open(&sub).unwrap()));
        }
    }

    #[test]
    fn whiteout_placeholders_count_as_whiteouts_only_with_their_xattr() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("gone");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        let meta = || std::fs::symlink_metadata(&p).unwrap();
        assert!(!overlay::is_whiteout_at(&p, &meta()));
        if xattr::set(&p, overlay::WHITEOUT_PLACEHOLDER_XATTR, b"y").is_err() {
            eprintln!("SKIPPED: this filesystem has no user xattrs");
            return;
        }
        assert!(overlay::is_whiteout_at(&p, &meta()));
        // Anything else with the xattr (a file with content, another mode) is not one.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!overlay::is_whiteout_at(&p, &meta()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o000)).unwrap();
        std::fs::write(&p, "x").unwrap_or_default();
        assert!(!overlay::is_whiteout_at(&p, &meta()));
    }

    /// overlayfs refuses to create a 0:0 device on itself (a store on a container's overlay
    /// root): a placeholder then, which reads back as a whiteout.
    #[test]
    fn on_overlayfs_a_whiteout_becomes_a_placeholder() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("SKIPPED: mounting overlayfs needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let d = |n: &str| {
            let p = t.path().join(n);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (lower, upper, work, merged) = (d("l"), d("u"), d("w"), d("m"));
        let c =
            |s: &std::path::Path| std::ffi::CString::new(s.as_os_str().as_encoded_bytes()).unwrap();
        let data = c(std::path::Path::new(&format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        )));
        // SAFETY: plain mount syscall with valid C strings; unmounted below.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                c(&merged).as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        let dir = std::fs::File::open(&merged).unwrap();
        let made = overlay::make_whiteout_or_placeholder(&dir, b"gone");
        let p = merged.join("gone");
        let seen = std::fs::symlink_metadata(&p)
            .map(|m| (overlay::is_whiteout(&m), overlay::is_whiteout_at(&p, &m)));
        drop(dir);
        // SAFETY: unmounts what this test mounted.
        unsafe { libc::umount2(c(&merged).as_ptr(), libc::MNT_DETACH) };
        assert!(made.unwrap());
        assert_eq!(seen.unwrap(), (false, true));
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z.]{1,6}",
            "[a-z.]{0,4}".prop_map(|s| format!("{WHITEOUT_PREFIX}{s}")),
            Just(OPAQUE_MARKER.to_string()),
        ]
    }

    proptest! {
        /// The names writers build are classified back into what they were built from.
        #[test]
        fn written_names_classify_back(dir in prop::collection::vec("[a-z]{1,4}", 0..3), base in "[a-z.]{1,6}") {
            let dir = dir.join("/");
            let path = if dir.is_empty() { base.clone() } else { format!("{dir}/{base}") };
            let wh = whiteout_path(&path);
            prop_assert_eq!(
                classify(wh.as_bytes()),
                Entry::Whiteout { dir: dir.as_bytes(), target: base.as_bytes() }
            );
            let opq = opaque_marker_path(&dir);
            prop_assert_eq!(classify(opq.as_bytes()), Entry::Opaque { dir: dir.as_bytes() });
        }

        /// Sibling order is a total order that puts every whiteout before every real name.
        #[test]
        fn sibling_order_is_total_and_whiteouts_first(a in name(), b in name()) {
            let ab = compare_siblings(&a, &b);
            prop_assert_eq!(ab, compare_siblings(&b, &a).reverse());
            prop_assert_eq!(ab == Ordering::Equal, a == b);
            let wh = |s: &str| !matches!(classify(s.as_bytes()), Entry::Regular);
            if wh(&a) && !wh(&b) {
                prop_assert_eq!(ab, Ordering::Less);
            }
        }
    }
}

//! The canary sandbox used by the apply tests and the `tar_apply` fuzz oracle: a temp dir
//! holding `root/` (where layers are applied) and `root-victim/` (the canary) whose full state
//! (bytes, modes, owners, times, link targets) is fingerprinted before and after.
//!
//! The canary's name shares the root's prefix, as in moby's TestUntarSiblingPrefixContained, and
//! a host symlink at an absolute path (`abs_link`) points at it, for tars to name. This is test
//! support: it panics (with the path) when the temp dir cannot be set up or read.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{apply_layer, ApplyError, ApplyOptions, ApplyReport, Digest};

/// The canary's state: relative path → kind, mode, owner, times, size and content digest.
pub type Fingerprint = BTreeMap<String, String>;

fn fingerprint_path(p: &Path, rel: &str, out: &mut Fingerprint) {
    let md = std::fs::symlink_metadata(p).expect("lstat canary");
    let kind = md.file_type();
    let mut desc = format!(
        "mode={:o} uid={} gid={} mtime={}.{} size={}",
        md.mode(),
        md.uid(),
        md.gid(),
        md.mtime(),
        md.mtime_nsec(),
        md.len()
    );
    if kind.is_symlink() {
        desc += &format!(" -> {:?}", std::fs::read_link(p).expect("readlink"));
    } else if kind.is_file() {
        let bytes = std::fs::read(p).expect("read canary file");
        desc += &format!(" sha256={}", Digest::sha256_of(&bytes));
    } else if kind.is_dir() {
        let mut names: Vec<_> = std::fs::read_dir(p)
            .expect("list canary dir")
            .map(|e| e.expect("dir entry").file_name())
            .collect();
        names.sort();
        for n in names {
            let name = n.to_string_lossy().to_string();
            fingerprint_path(&p.join(&n), &format!("{rel}/{name}"), out);
        }
    }
    out.insert(rel.to_string(), desc);
}

/// A root to apply layers into, with a fingerprinted canary beside it.
pub struct Sandbox {
    pub base: tempfile::TempDir,
    pub root: PathBuf,
    pub victim: PathBuf,
    /// Absolute host path of a symlink to the canary directory.
    pub abs_link: PathBuf,
    before: Fingerprint,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        // tmpfs when available: the disk is shared with parallel builds and file creation there
        // is two orders of magnitude slower, which would make the 100k-entry test take minutes.
        let shm = Path::new("/dev/shm");
        let mut builder = tempfile::Builder::new();
        builder.prefix("rbuild-apply-");
        let base = if shm.is_dir() {
            builder.tempdir_in(shm)
        } else {
            builder.tempdir()
        }
        .expect("tempdir");
        let root = base.path().join("root");
        let victim = base.path().join("root-victim");
        std::fs::create_dir(&root).expect("mkdir root");
        std::fs::create_dir(&victim).expect("mkdir victim");
        std::fs::write(victim.join("hello"), b"hello canary\n").expect("write");
        std::fs::set_permissions(victim.join("hello"), std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        std::fs::write(victim.join("secret"), b"s3cret\n").expect("write");
        std::fs::set_permissions(
            victim.join("secret"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod");
        std::fs::create_dir(victim.join("sub")).expect("mkdir");
        std::fs::write(victim.join("sub/deep"), b"deep\n").expect("write");
        std::os::unix::fs::symlink("../hello", victim.join("sub/up")).expect("symlink");
        std::fs::set_permissions(victim.join("sub"), std::fs::Permissions::from_mode(0o750))
            .expect("chmod");
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // `base` itself is canonical under the temp dir; the absolute link lives next to it so
        // its path is unique per sandbox.
        let abs_link = base.path().join("abs-link-to-victim");
        std::os::unix::fs::symlink(&victim, &abs_link).expect("abs symlink");
        let mut sb = Sandbox {
            base,
            root,
            victim,
            abs_link,
            before: Fingerprint::new(),
        };
        sb.before = sb.fingerprint();
        sb
    }

    /// The canary tree, the absolute symlink, and the list of names beside the root.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut fp = Fingerprint::new();
        fingerprint_path(&self.victim, "victim", &mut fp);
        fingerprint_path(&self.abs_link, "abs-link", &mut fp);
        let mut names: Vec<_> = std::fs::read_dir(self.base.path())
            .expect("list base")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        fp.insert("base-listing".into(), names.join(","));
        fp
    }

    /// Asserts the canary is byte-, mode-, owner- and time-identical to its initial state and
    /// nothing was created beside the root.
    pub fn assert_canary_intact(&self) {
        let after = self.fingerprint();
        assert_eq!(self.before, after, "canary outside the root changed");
    }

    /// The canary's absolute path as bytes, for tars to name.
    pub fn victim_abs(&self) -> Vec<u8> {
        self.victim.as_os_str().as_encoded_bytes().to_vec()
    }

    pub fn abs_link_bytes(&self) -> Vec<u8> {
        self.abs_link.as_os_str().as_encoded_bytes().to_vec()
    }

    /// Applies `tar` into the root with default options, then checks the canary.
    pub fn apply(&self, tar: &[u8]) -> Result<ApplyReport, ApplyError> {
        self.apply_with(tar, &ApplyOptions::default())
    }

    /// Applies `tar` into the root with `opts`, then checks the canary.
    pub fn apply_with(&self, tar: &[u8], opts: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
        let r = apply_layer(&self.root, tar, opts);
        self.assert_canary_intact();
        r
    }

    pub fn root_path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

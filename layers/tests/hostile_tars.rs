//! Hand-built hostile layers. Oracle for every case: the canary directory beside the root (and a
//! host symlink to it named by absolute path) is byte-, mode-, owner- and time-identical
//! afterwards (checked inside `Sandbox::apply`), AND the outcome inside the root is the
//! documented one: a clean error, or a safe in-root result.
//!
//! Cases `moby_*` re-type the 16 breakout header sets of moby/go-archive `archive_test.go`
//! (TestUntarInvalidFilenames ×2, TestUntarHardlinkToSymlink ×1, TestUntarInvalidHardlink ×6,
//! TestUntarInvalidSymlink ×7), with `victim` renamed `root-victim` so that every case also covers
//! TestUntarSiblingPrefixContained (the canary shares the root's name prefix).

mod apply_common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use apply_common::*;
use rbuild_layers::apply::{MAX_LONG_NAME, MAX_PAX_BYTES, PATH_MAX};
use rbuild_layers::{ApplyError, ApplyOptions, ApplyReport, WhiteoutMode};

type R = Result<ApplyReport, ApplyError>;

#[track_caller]
fn assert_escape(r: &R) {
    assert!(
        matches!(r, Err(ApplyError::Escape { .. })),
        "expected an escape rejection, got {r:?}"
    );
}

#[track_caller]
fn assert_io(r: &R, op_part: &str) {
    match r {
        Err(ApplyError::Io { op, .. }) if op.contains(op_part) => {}
        other => panic!("expected an I/O error while {op_part}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid(r: &R) {
    assert!(
        matches!(r, Err(ApplyError::InvalidEntry { .. })),
        "expected an invalid-entry error, got {r:?}"
    );
}

#[track_caller]
fn assert_oversized(r: &R) {
    assert!(
        matches!(r, Err(ApplyError::Oversized { .. })),
        "expected an oversized error, got {r:?}"
    );
}

#[track_caller]
fn assert_malformed(r: &R) {
    assert!(
        matches!(r, Err(ApplyError::Malformed { .. })),
        "expected a malformed-tar error, got {r:?}"
    );
}

fn is_symlink_to(p: &Path, target: &str) -> bool {
    std::fs::read_link(p).is_ok_and(|t| t.as_os_str() == target)
}

// --- moby TestUntarInvalidFilenames -------------------------------------------------------------

#[test]
fn moby_invalid_filename_dotdot() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::file("../root-victim/dotdot", "x")])));
    assert!(tree(&sb.root).is_empty());
}

#[test]
fn moby_invalid_filename_slash_dotdot() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::file("/../root-victim/slash-dotdot", "x")])));
}

// --- moby TestUntarHardlinkToSymlink -----------------------------------------------------------

#[test]
fn moby_hardlink_to_symlink_links_the_symlink_itself() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("symlink1", "regfile"),
        H::hardlink("symlink2", "symlink1"),
        H::file("regfile", "data"),
    ]))
    .expect("valid layer");
    assert!(is_symlink_to(&sb.root_path("symlink2"), "regfile"));
    let a = std::fs::symlink_metadata(sb.root_path("symlink1")).expect("lstat");
    let b = std::fs::symlink_metadata(sb.root_path("symlink2")).expect("lstat");
    assert_eq!(a.ino(), b.ino());
}

// --- moby TestUntarInvalidHardlink --------------------------------------------------------------

#[test]
fn moby_invalid_hardlink_dotdot() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::hardlink("dotdot", "../root-victim/hello")])));
    assert!(!sb.root_path("dotdot").exists());
}

#[test]
fn moby_invalid_hardlink_slash_dotdot() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::hardlink(
        "slash-dotdot",
        "/../root-victim/hello",
    )])));
}

#[test]
fn moby_invalid_hardlink_then_write_through() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([
        H::hardlink("loophole-victim", "../root-victim").mode(0o755),
        H::file("loophole-victim/file", "pwned"),
    ])));
}

#[test]
fn moby_invalid_hardlink_then_symlink_read() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([
        H::hardlink("loophole-victim", "../root-victim").mode(0o755),
        H::symlink("symlink", "loophole-victim/hello"),
    ])));
}

#[test]
fn moby_invalid_hardlink_then_hardlink_read() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([
        H::hardlink("loophole-victim", "../root-victim").mode(0o755),
        H::hardlink("hardlink", "loophole-victim/hello"),
    ])));
}

#[test]
fn moby_invalid_hardlink_then_remove_victim() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([
        H::hardlink("loophole-victim", "../root-victim").mode(0o755),
        H::file("loophole-victim", "x"),
    ])));
}

// --- moby TestUntarInvalidSymlink ---------------------------------------------------------------

#[test]
fn moby_invalid_symlink_dotdot_is_stored_verbatim_and_contained() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([H::symlink("dotdot", "../root-victim/hello")]))
        .expect("symlinks are data");
    assert!(is_symlink_to(
        &sb.root_path("dotdot"),
        "../root-victim/hello"
    ));
}

#[test]
fn moby_invalid_symlink_slash_dotdot_is_stored_verbatim_and_contained() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([H::symlink(
        "slash-dotdot",
        "/../root-victim/hello",
    )]))
    .expect("data");
    assert!(is_symlink_to(
        &sb.root_path("slash-dotdot"),
        "/../root-victim/hello"
    ));
}

#[test]
fn moby_invalid_symlink_then_write_through() {
    // `loophole-victim` resolves (in root, `..` stopping there) to `<root>/root-victim`, which
    // is created, as containerd's `fs.RootPath` does; nothing is written outside (canary).
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("loophole-victim", "../root-victim"),
        H::file("loophole-victim/file", "pwned"),
    ]))
    .expect("resolved inside the root");
    assert_eq!(read_in(&sb, "root-victim/file"), b"pwned");
}

#[test]
fn moby_invalid_symlink_then_symlink_read() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("loophole-victim", "../root-victim"),
        H::symlink("symlink", "loophole-victim/hello"),
    ]))
    .expect("symlinks are data");
    assert!(is_symlink_to(
        &sb.root_path("loophole-victim"),
        "../root-victim"
    ));
    assert!(is_symlink_to(
        &sb.root_path("symlink"),
        "loophole-victim/hello"
    ));
}

#[test]
fn moby_invalid_symlink_then_hardlink_read() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::symlink("loophole-victim", "../root-victim"),
        H::hardlink("hardlink", "loophole-victim/hello"),
    ]));
    assert_io(&r, "resolving the hardlink target");
    assert!(!sb.root_path("hardlink").exists());
}

#[test]
fn moby_invalid_symlink_then_replace_removes_only_the_link() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("loophole-victim", "../root-victim"),
        H::file("loophole-victim", "mine"),
    ]))
    .expect("replacing a symlink is fine");
    let md = std::fs::symlink_metadata(sb.root_path("loophole-victim")).expect("lstat");
    assert!(md.is_file());
    assert_eq!(
        std::fs::read(sb.root_path("loophole-victim")).expect("read"),
        b"mine"
    );
}

#[test]
fn moby_invalid_symlink_nested_loophole() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::symlink("dir/loophole", "../../root-victim"),
        H::file("dir/loophole/newdir/newfile", "pwned"),
    ]));
    r.expect("resolved inside the root");
    assert_eq!(read_in(&sb, "root-victim/newdir/newfile"), b"pwned");
}

// --- moby TestUntarSymlinkBreakout (two-hop chain) and TestUntarParentTraversalContained --------

#[test]
fn moby_two_hop_symlink_chain_is_contained() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::dir("inner"),
        H::symlink("inner/go_up", ".."),
        H::symlink("inner/go_up/escape", "../root-victim"),
        H::file("inner/go_up/escape/newfile", "pwned"),
    ]));
    // go_up resolves to the root, so `escape` is created at `<root>/escape`; it points to
    // `<root>/root-victim` (`..` stops at the root), which is created for the file.
    r.expect("resolved inside the root");
    assert!(is_symlink_to(&sb.root_path("escape"), "../root-victim"));
    assert_eq!(read_in(&sb, "root-victim/newfile"), b"pwned");
}

#[test]
fn bare_dotdot_entry_is_rejected() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::file("..", "bad")])));
}

#[test]
fn nested_parent_traversal_is_rejected() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::file("../../pwned", "bad")])));
    assert_escape(&sb.apply(&tar_of([H::file("a/b/../../../pwned", "bad")])));
    assert_escape(&sb.apply(&tar_of([H::dir("./../x")])));
}

#[test]
fn deep_dotdot_chain_is_rejected() {
    let sb = Sandbox::new();
    let name = format!("{}tmp/pwned", "../".repeat(64));
    assert_escape(&sb.apply(&tar_of([H::file(name, "bad")])));
}

#[test]
fn inner_dotdot_staying_inside_is_cleaned() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([H::file("a/b/../c", "ok")]))
        .expect("stays inside");
    assert_eq!(std::fs::read(sb.root_path("a/c")).expect("read"), b"ok");
}

#[test]
fn absolute_names_land_inside_the_root() {
    let sb = Sandbox::new();
    let mut name = sb.victim_abs();
    name.extend_from_slice(b"/hello");
    sb.apply(&tar_of([H::file(&name, "inside")]))
        .expect("absolute names are root-relative");
    let inside = sb
        .root
        .join(sb.victim.strip_prefix("/").expect("absolute"))
        .join("hello");
    assert_eq!(std::fs::read(inside).expect("read"), b"inside");
}

#[test]
fn moby_absolute_hardlink_target_is_root_relative() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::file("usr/bin/perlbug", "hello").mode(0o755),
        H::hardlink("usr/bin/perlthanks", "/usr/bin/perlbug"),
    ]))
    .expect("valid");
    let a = std::fs::metadata(sb.root_path("usr/bin/perlbug")).expect("stat");
    let b = std::fs::metadata(sb.root_path("usr/bin/perlthanks")).expect("stat");
    assert_eq!(a.ino(), b.ino());
}

// --- umoci CVE-2021-29136: an entry that names the root itself ----------------------------------

#[test]
fn umoci_symlink_named_slash_dot_is_rejected() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::symlink("/.", sb.victim_abs()),
        H::file("/hello", "pwned"),
    ]));
    assert_escape(&r);
    assert!(std::fs::symlink_metadata(&sb.root)
        .expect("lstat root")
        .is_dir());
}

#[test]
fn symlink_named_dot_or_dir_dotdot_is_rejected() {
    for name in [&b"."[..], b"./", b"a/..", b"//"] {
        let sb = Sandbox::new();
        assert_escape(&sb.apply(&tar_of([H::symlink(name, sb.victim_abs())])));
    }
}

#[test]
fn regular_file_named_root_is_rejected() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::file("/", "x")])));
    assert_escape(&sb.apply(&tar_of([H::hardlink("./", "a")])));
}

#[test]
fn dir_entry_for_the_root_updates_metadata_only() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([H::dir("./").mode(0o711), H::file("./a", "x")]))
        .expect("valid");
    let md = std::fs::symlink_metadata(&sb.root).expect("lstat");
    assert!(md.is_dir());
    assert_eq!(md.mode() & 0o7777, 0o711);
}

// --- final-component symlinks: replace, never write through --------------------------------------

#[test]
fn final_component_symlink_to_absolute_outside_is_replaced() {
    let sb = Sandbox::new();
    let mut target = sb.abs_link_bytes();
    target.extend_from_slice(b"/hello");
    sb.apply(&tar_of([H::symlink("f", &target), H::file("f", "pwned")]))
        .expect("valid");
    assert!(std::fs::symlink_metadata(sb.root_path("f"))
        .expect("lstat")
        .is_file());
}

#[test]
fn final_component_symlink_to_relative_outside_is_replaced() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("f", "../root-victim/hello"),
        H::file("f", "pwned").mode(0o777),
    ]))
    .expect("valid");
    assert_eq!(std::fs::read(sb.root_path("f")).expect("read"), b"pwned");
}

#[test]
fn final_component_symlink_in_an_earlier_layer_is_replaced() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([H::symlink(
        "etc/passwd",
        sb.victim_abs()
            .into_iter()
            .chain(*b"/secret")
            .collect::<Vec<u8>>(),
    )]))
    .expect("layer 1");
    sb.apply(&tar_of([H::file(
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\n",
    )]))
    .expect("layer 2");
    assert!(std::fs::symlink_metadata(sb.root_path("etc/passwd"))
        .expect("lstat")
        .is_file());
}

#[test]
fn directory_over_a_symlink_to_outside_replaces_the_symlink() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("d", sb.abs_link_bytes()),
        H::dir("d").mode(0o700),
        H::file("d/x", "inside"),
    ]))
    .expect("valid");
    assert!(std::fs::symlink_metadata(sb.root_path("d"))
        .expect("lstat")
        .is_dir());
    assert_eq!(std::fs::read(sb.root_path("d/x")).expect("read"), b"inside");
}

#[test]
fn symlink_then_write_through_to_absolute_outside_dir() {
    // The absolute target means that path inside the root (containerd's `fs.RootPath`): the
    // file is written there, and the host directory of the same name is untouched (canary).
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("d", sb.abs_link_bytes()),
        H::file("d/newfile", "pwned"),
    ]))
    .expect("resolved inside the root");
    let inside = sb
        .root
        .join(sb.abs_link.strip_prefix("/").expect("absolute"))
        .join("newfile");
    assert_eq!(std::fs::read(inside).expect("read"), b"pwned");
}

#[test]
fn symlink_to_slash_is_followed_inside_the_root() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("d", "/"),
        H::file("d/etc/passwd", "in root"),
    ]))
    .expect("valid");
    assert_eq!(
        std::fs::read(sb.root_path("etc/passwd")).expect("read"),
        b"in root"
    );
}

#[test]
fn deep_relative_symlink_escape_is_clamped_at_the_root() {
    let sb = Sandbox::new();
    let mut name = b"up/".to_vec();
    name.extend_from_slice(&sb.victim_abs()[1..]);
    name.extend_from_slice(b"/hello");
    sb.apply(&tar_of([
        H::symlink("up", "../".repeat(40)),
        H::file(&name, "clamped"),
    ]))
    .expect("valid");
    let inside = sb
        .root
        .join(sb.victim.strip_prefix("/").expect("absolute"))
        .join("hello");
    assert_eq!(std::fs::read(inside).expect("read"), b"clamped");
}

#[test]
fn magic_link_through_proc_is_not_followed() {
    let sb = Sandbox::new();
    // `/proc/self/root` is a path inside the root like any other: never the host's procfs.
    sb.apply(&tar_of([
        H::symlink("p", "/proc/self/root"),
        H::file("p/pwned", "x"),
    ]))
    .expect("resolved inside the root");
    assert_eq!(read_in(&sb, "proc/self/root/pwned"), b"x");
    // A symlink in the tree to `/proc/self/fd/0` is read, never opened: it names
    // `<root>/proc/self/fd/0`.
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.root_path("proc/self")).expect("mkdir");
    std::os::unix::fs::symlink("/proc/self/fd/0", sb.root_path("proc/self/root")).expect("link");
    sb.apply(&tar_of([
        H::symlink("p", "/proc/self/root"),
        H::file("p/pwned", "x"),
    ]))
    .expect("resolved inside the root");
    assert_eq!(read_in(&sb, "proc/self/fd/0/pwned"), b"x");
}

#[test]
fn dir_replaced_by_symlink_then_child_written_is_not_written_to_the_old_dir() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::dir("x"),
        H::dir("d"),
        H::file("d/a", "a"),
        H::symlink("d", "/x"),
        H::file("d/b", "b"),
    ]))
    .expect("valid");
    assert!(is_symlink_to(&sb.root_path("d"), "/x"));
    assert_eq!(std::fs::read(sb.root_path("x/b")).expect("read"), b"b");
    assert!(!sb.root_path("x/a").exists());
}

#[test]
fn dir_replaced_by_symlink_to_outside_then_child_written() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::dir("d"),
        H::file("d/a", "a"),
        H::symlink("d", sb.abs_link_bytes()),
        H::file("d/hello", "pwned"),
    ]));
    r.expect("resolved inside the root");
    let inside = sb
        .root
        .join(sb.abs_link.strip_prefix("/").expect("absolute"))
        .join("hello");
    assert_eq!(std::fs::read(inside).expect("read"), b"pwned");
}

#[test]
fn symlink_loops_are_a_clean_error() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::symlink("a", "b"),
        H::symlink("b", "a"),
        H::file("a/x", "x"),
    ]));
    assert_io(&r, "resolving the parent directory");
}

#[test]
fn existing_fifo_is_replaced_not_opened() {
    let sb = Sandbox::new();
    // Opening a FIFO for writing would block forever; the applier must unlink it first.
    sb.apply(&tar_of([H::new(FIFO, "p"), H::file("p", "data")]))
        .expect("valid");
    assert_eq!(std::fs::read(sb.root_path("p")).expect("read"), b"data");
}

// --- hardlinks ----------------------------------------------------------------------------------

#[test]
fn hardlink_to_absolute_outside_path_is_resolved_inside() {
    let sb = Sandbox::new();
    let mut target = sb.victim_abs();
    target.extend_from_slice(b"/hello");
    let r = sb.apply(&tar_of([H::hardlink("h", &target)]));
    assert_io(&r, "resolving the hardlink target");
}

#[test]
fn hardlink_through_symlink_to_outside_dir_fails_inside() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([
        H::symlink("s", sb.abs_link_bytes()),
        H::hardlink("h", "s/hello"),
    ]));
    assert_io(&r, "resolving the hardlink target");
}

#[test]
fn hardlink_to_symlink_to_outside_file_links_the_symlink_then_write_replaces_it() {
    let sb = Sandbox::new();
    let mut target = sb.abs_link_bytes();
    target.extend_from_slice(b"/hello");
    sb.apply(&tar_of([
        H::symlink("s", &target),
        H::hardlink("h", "s"),
        H::file("h", "pwned"),
    ]))
    .expect("valid");
    assert!(std::fs::symlink_metadata(sb.root_path("h"))
        .expect("lstat")
        .is_file());
    assert!(std::fs::symlink_metadata(sb.root_path("s"))
        .expect("lstat")
        .file_type()
        .is_symlink());
}

#[test]
fn hardlink_through_proc_magic_link_is_not_followed() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([H::hardlink("h", "/proc/self/root/etc/hostname")]));
    assert_io(&r, "resolving the hardlink target");
    assert!(!sb.root_path("h").exists());
}

#[test]
fn hardlink_to_directory_is_refused() {
    let sb = Sandbox::new();
    let r = sb.apply(&tar_of([H::dir("d"), H::hardlink("h", "d")]));
    assert_io(&r, "creating the hardlink");
}

#[test]
fn hardlink_to_root_is_refused() {
    let sb = Sandbox::new();
    assert_invalid(&sb.apply(&tar_of([H::hardlink("h", "/")])));
}

// --- whiteouts ----------------------------------------------------------------------------------

#[test]
fn whiteout_of_dotdot_is_rejected() {
    let sb = Sandbox::new();
    std::fs::write(sb.root_path("keep"), b"k").expect("write");
    assert_invalid(&sb.apply(&tar_of([H::file("a/.wh...", "")])));
    assert_invalid(&sb.apply(&tar_of([H::file(".wh...", "")])));
    assert!(sb.root_path("keep").exists());
}

#[test]
fn whiteout_of_dot_and_empty_are_rejected() {
    let sb = Sandbox::new();
    assert_invalid(&sb.apply(&tar_of([H::file(".wh..", "")])));
    assert_invalid(&sb.apply(&tar_of([H::file(".wh.", "")])));
    assert_invalid(&sb.apply(&tar_of([H::file("x/.wh.", "")])));
}

#[test]
fn whiteout_climbing_out_is_rejected() {
    let sb = Sandbox::new();
    assert_escape(&sb.apply(&tar_of([H::file("../.wh.root-victim", "")])));
    assert_escape(&sb.apply(&tar_of([H::file("../root-victim/.wh.hello", "")])));
}

#[test]
fn whiteout_through_symlink_only_deletes_inside_the_root() {
    let sb = Sandbox::new();
    // A lower layer put a copy of the canary's path inside the root.
    let inside = sb.root.join(sb.victim.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&inside).expect("mkdir");
    std::fs::write(inside.join("hello"), b"lower").expect("write");
    sb.apply(&tar_of([
        H::symlink("s", sb.victim_abs()),
        H::file("s/.wh.hello", ""),
    ]))
    .expect("valid");
    assert!(
        !inside.join("hello").exists(),
        "the in-root file is whited out"
    );
}

#[test]
fn whiteout_of_symlinked_dir_to_outside_is_a_no_op() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("s", sb.abs_link_bytes()),
        H::file("s/.wh.hello", ""),
    ]))
    .expect("nothing to delete inside the root");
}

#[test]
fn opaque_marker_under_symlink_to_outside_removes_nothing_outside() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::symlink("o", sb.abs_link_bytes()),
        H::file("o/.wh..wh..opq", ""),
        H::symlink("p", "../root-victim"),
        H::file("p/.wh..wh..opq", ""),
    ]))
    .expect("nothing inside the root to clear");
}

#[test]
fn whiteout_files_are_never_created() {
    let sb = Sandbox::new();
    sb.apply(&tar_of([
        H::file("a/.wh.b", "data"),
        H::file(".wh..wh..opq", "x"),
    ]))
    .expect("valid");
    assert!(!sb.root_path("a/.wh.b").exists());
    assert!(!sb.root_path(".wh..wh..opq").exists());
}

#[test]
fn whiteout_names_used_as_directories_are_rejected() {
    let sb = Sandbox::new();
    assert_invalid(&sb.apply(&tar_of([H::file(".wh.a/b", "x")])));
    assert_invalid(&sb.apply(&tar_of([H::file("d/.wh..wh..opq/x", "x")])));
    assert!(tree(&sb.root).is_empty());
}

#[test]
fn overlay_whiteout_with_dotdot_target_is_rejected() {
    let sb = Sandbox::new();
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Overlay,
        ..ApplyOptions::default()
    };
    assert_invalid(&sb.apply_with(&tar_of([H::file("a/.wh...", "")]), &opts));
}

// --- bombs and malformed headers ----------------------------------------------------------------

#[test]
fn gnu_long_name_bomb_is_rejected_before_reading() {
    let sb = Sandbox::new();
    let mut h = H::new(b'L', "././@LongLink");
    h.size = Some(1 << 32);
    let mut t = RawTar::new();
    t.block(&header_block(&h, 1 << 32));
    assert_oversized(&sb.apply(&t.finish()));
}

#[test]
fn gnu_long_name_just_over_the_limit_is_rejected() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.gnu_long(b'L', &vec![b'a'; MAX_LONG_NAME as usize]);
    t.add(H::file("x", "x"));
    assert_oversized(&sb.apply(&t.finish()));
}

#[test]
fn gnu_long_link_bomb_is_rejected() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.gnu_long(b'K', &vec![b'a'; 64 * 1024]);
    t.add(H::symlink("x", "y"));
    assert_oversized(&sb.apply(&t.finish()));
}

#[test]
fn pax_size_bomb_is_rejected_before_reading() {
    let sb = Sandbox::new();
    let h = H::new(b'x', "PaxHeaders/x");
    let mut t = RawTar::new();
    t.block(&header_block(&h, MAX_PAX_BYTES + 1));
    assert_oversized(&sb.apply(&t.finish()));
}

#[test]
fn many_pax_headers_cannot_accumulate_past_the_limit() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    let big = vec![b'v'; 300 * 1024];
    for i in 0..5 {
        t.pax(&[(&format!("SCHILY.xattr.user.k{i}"), &big)]);
    }
    t.add(H::file("x", "x"));
    assert_oversized(&sb.apply(&t.finish()));
}

#[test]
fn name_longer_than_path_max_is_rejected() {
    let sb = Sandbox::new();
    let name = "a/".repeat(PATH_MAX / 2 + 1);
    assert_oversized(&sb.apply(&tar_of([H::file(name, "x")])));
}

#[test]
fn link_target_longer_than_path_max_is_rejected() {
    let sb = Sandbox::new();
    assert_oversized(&sb.apply(&tar_of([H::symlink("l", "b".repeat(PATH_MAX + 1))])));
}

#[test]
fn bad_checksum_is_rejected() {
    let sb = Sandbox::new();
    let mut b = header_block(&H::file("a", ""), 0);
    b[0] = b'b';
    let mut t = RawTar::new();
    t.block(&b);
    assert_malformed(&sb.apply(&t.finish()));
}

#[test]
fn truncated_entry_is_rejected() {
    let sb = Sandbox::new();
    let mut h = H::file("a", "abc");
    h.size = Some(1 << 30);
    let mut t = RawTar::new();
    t.add(h);
    assert_malformed(&sb.apply(&t.buf));
}

#[test]
fn base256_size_bomb_without_data_is_rejected() {
    let sb = Sandbox::new();
    let mut b = header_block(&H::file("a", ""), 0);
    b[124..136].fill(0);
    b[124] = 0x80;
    b[128] = 0x40; // 2^62-ish
    set_checksum(&mut b);
    let mut t = RawTar::new();
    t.block(&b);
    assert_malformed(&sb.apply(&t.buf));
}

#[test]
fn negative_base256_is_rejected() {
    let sb = Sandbox::new();
    let mut b = header_block(&H::file("a", ""), 0);
    b[124..136].fill(0xff);
    set_checksum(&mut b);
    let mut t = RawTar::new();
    t.block(&b);
    assert_malformed(&sb.apply(&t.finish()));
}

#[test]
fn sparse_files_are_unsupported() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.add(H::new(b'S', "sparse"));
    assert!(matches!(
        sb.apply(&t.finish()),
        Err(ApplyError::Unsupported { .. })
    ));
    let mut t = RawTar::new();
    t.pax(&[("GNU.sparse.major", b"1")]);
    t.add(H::file("sparse", ""));
    assert!(matches!(
        sb.apply(&t.finish()),
        Err(ApplyError::Unsupported { .. })
    ));
}

#[test]
fn pax_path_with_nul_is_rejected() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.pax(&[("path", b"a\0/../../x")]);
    t.add(H::file("x", ""));
    assert_malformed(&sb.apply(&t.finish()));
}

#[test]
fn pax_path_escape_is_rejected_even_with_a_benign_header_name() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.pax(&[("path", b"../root-victim/pax")]);
    t.add(H::file("benign", "x"));
    assert_escape(&sb.apply(&t.finish()));
}

#[test]
fn gnu_long_name_escape_is_rejected() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.gnu_long(b'L', b"../root-victim/longname");
    t.add(H::file("benign", "x"));
    assert_escape(&sb.apply(&t.finish()));
}

#[test]
fn garbage_is_a_clean_error() {
    let sb = Sandbox::new();
    assert_malformed(&sb.apply(&[0x42u8; 2048]));
    // Corrupt gzip: a read (decompression) error.
    let r = sb.apply(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3]);
    assert!(matches!(r, Err(ApplyError::Read(_))), "{r:?}");
}

// --- devices as non-root -------------------------------------------------------------------------

#[test]
fn devices_become_inert_placeholders_by_default() {
    let sb = Sandbox::new();
    let mut dev = H::new(CHAR, "dev/null");
    dev.dev = (1, 3);
    let mut blk = H::new(BLOCK_DEV, "dev/sda");
    blk.dev = (8, 0);
    let rep = sb
        .apply(&tar_of([dev, blk, H::new(FIFO, "fifo")]))
        .expect("valid");
    assert!(rep.warnings.is_empty(), "{:?}", rep.warnings);
    for p in ["dev/null", "dev/sda"] {
        let md = std::fs::symlink_metadata(sb.root_path(p)).expect("placeholder");
        assert!(md.file_type().is_file(), "{p} is a plain file");
        assert_eq!(md.mode() & 0o7777, 0, "{p}");
        assert_eq!(md.len(), 0);
    }
    let fifo = std::fs::symlink_metadata(sb.root_path("fifo")).expect("fifo created");
    assert!(fifo.file_type().is_fifo());
}

#[test]
fn warnings_are_bounded() {
    let sb = Sandbox::new();
    let odd = (0..1000).map(|i| H::new(b'Z', format!("odd/d{i}")));
    let rep = sb.apply(&tar_of(odd)).expect("valid");
    assert_eq!(rep.warnings.len(), 101);
    assert_eq!(
        rep.warnings.last().map(String::as_str),
        Some("... and 900 more warnings")
    );
}

// --- scale: 100k entries, deep nesting -----------------------------------------------------------

#[test]
fn hundred_thousand_nested_entries_apply_linearly() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    let mut n = 0u64;
    for a in 0..10 {
        t.add(H::dir(format!("a{a}")));
        n += 1;
        for b in 0..100 {
            t.add(H::dir(format!("a{a}/b{b}")));
            n += 1;
            for c in 0..99 {
                t.add(H::file(format!("a{a}/b{b}/c{c}"), ""));
                n += 1;
            }
        }
    }
    let start = std::time::Instant::now();
    let rep = sb.apply(&t.finish()).expect("valid");
    eprintln!("{n} entries applied in {:?}", start.elapsed());
    assert_eq!(rep.entries, n);
    assert!(n >= 100_000);
    assert!(sb.root_path("a9/b99/c98").is_file());
}

#[test]
fn deeply_nested_path_near_path_max() {
    let sb = Sandbox::new();
    let deep = "d/".repeat(2000);
    sb.apply(&tar_of([H::file(format!("{deep}f"), "deep")]))
        .expect("valid");
    assert_eq!(
        std::fs::read(sb.root.join(format!("{deep}f"))).expect("read"),
        b"deep"
    );
    // And a later layer replacing the whole deep tree with a file.
    sb.apply(&tar_of([H::file("d", "flat")])).expect("valid");
    assert_eq!(std::fs::read(sb.root_path("d")).expect("read"), b"flat");
}

#[test]
fn whiteout_of_a_huge_directory_is_linear() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    for i in 0..20_000 {
        t.add(H::file(format!("big/f{i}"), ""));
    }
    sb.apply(&t.finish()).expect("lower");
    sb.apply(&tar_of([H::file(".wh.big", "")]))
        .expect("whiteout");
    assert!(!sb.root_path("big").exists());
}

// --- trusted.overlay xattrs from the layer are ignored ----------------------------------------------

#[test]
fn layer_cannot_inject_overlay_xattrs() {
    let sb = Sandbox::new();
    let mut t = RawTar::new();
    t.pax(&[
        ("SCHILY.xattr.trusted.overlay.redirect", b"/etc"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
    ]);
    t.add(H::dir("d"));
    let rep = sb.apply(&t.finish()).expect("valid");
    assert_eq!(rep.warnings.len(), 2, "{:?}", rep.warnings);
    assert!(xattr::get(sb.root_path("d"), "trusted.overlay.opaque")
        .expect("getxattr")
        .is_none());
}

/// The content of `rel` under the root (a trusted test path).
fn read_in(sb: &Sandbox, rel: &str) -> Vec<u8> {
    std::fs::read(sb.root_path(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

//! Golden error messages of `apply_layer` (they name the entry and the reason; the lead's CLI
//! shows them verbatim).

mod apply_common;

use apply_common::*;
use rbuild_layers::apply::MAX_PAX_BYTES;

fn message(tar: &[u8]) -> String {
    let sb = Sandbox::new();
    match sb.apply(tar) {
        Ok(rep) => format!("unexpectedly applied: {rep:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn escape_messages_name_the_entry() {
    insta::assert_snapshot!(
        message(&tar_of([H::file("../../etc/passwd", "x")])),
        @"entry `../../etc/passwd` in layer escapes the root: rejected (the entry name climbs above the root)"
    );
    insta::assert_snapshot!(
        message(&tar_of([H::hardlink("h", "../root-victim/hello")])),
        @"entry `h => ../root-victim/hello` in layer escapes the root: rejected (the hardlink target climbs above the root)"
    );
    insta::assert_snapshot!(
        message(&tar_of([H::symlink("/.", "/etc")])),
        @"entry `/.` in layer escapes the root: rejected (the entry names the root directory itself but is not a directory)"
    );
}

#[test]
fn invalid_entry_messages() {
    insta::assert_snapshot!(
        message(&tar_of([H::file("a/.wh...", "")])),
        @"entry `a/.wh...` in layer is invalid: a whiteout must name exactly one sibling (not empty, `.` or `..`)"
    );
    insta::assert_snapshot!(
        message(&tar_of([H::symlink("l", "")])),
        @"entry `l` in layer is invalid: symlink with an empty target"
    );
}

#[test]
fn bounded_record_messages() {
    let mut t = RawTar::new();
    t.block(&header_block(
        &H::new(b'x', "PaxHeaders/x"),
        MAX_PAX_BYTES + 1,
    ));
    insta::assert_snapshot!(
        message(&t.finish()),
        @"layer has an oversized PAX extended header at byte offset 0: 1048577 bytes, the limit is 1048576"
    );
    let mut b = header_block(&H::file("a", ""), 0);
    b[0] = b'b';
    let mut t = RawTar::new();
    t.block(&b);
    insta::assert_snapshot!(
        message(&t.finish()),
        @"layer is not a valid tar at byte offset 0: header checksum mismatch"
    );
}

#[test]
fn io_messages_name_the_operation() {
    insta::assert_snapshot!(
        message(&tar_of([H::symlink("d", "/d"), H::file("d/f", "x")])),
        @"applying entry `d/f`: resolving the parent directory inside the root failed"
    );
}

//! The snapshot a RUN's layer becomes for the next step is made from the RUN's own upper
//! directory (its files moved in, the layer's tar deciding every byte and attribute; see
//! `layers/src/apply/donor.rs`). The next step must see exactly the tree it sees when the layer
//! comes from the cache and is unpacked from its tar: a listing of every path the first RUN
//! made, with type, mode, owner, size, link count, mtime, allocated blocks and content hashes, is compared
//! between the two.

use rbuild_tests::build::build;
use rbuild_tests::scratch;

use crate::run_sandbox::{setup, BASE};

/// Makes files of every kind a snapshot could get wrong: large and empty files, setuid, a
/// hard-linked pair, a symlink, an old mtime, a changed owner, a directory made opaque, a
/// deleted base file (whiteout), a sparse file and an xattr-free rewrite of a base file.
const MAKE: &str = "mkdir -p /opt/app/sub \
 && echo hello > /opt/app/a && ln /opt/app/a /opt/app/hardlink && ln -s a /opt/app/sym \
 && dd if=/dev/urandom of=/opt/app/big bs=1k count=700 2>/dev/null \
 && dd if=/dev/zero of=/opt/app/sparse bs=1 count=1 seek=1048575 2>/dev/null \
 && : > /opt/app/empty && chmod 4755 /opt/app/a && chown 12:34 /opt/app/sub \
 && touch -d @1000000 /opt/app/old && rm /etc/group && echo changed > /etc/passwd \
 && rm -rf /opt/app/sub && mkdir /opt/app/sub && echo x > /opt/app/sub/x";

/// Lists what MAKE made, from a second RUN (its own writes go elsewhere; `/etc` itself holds
/// the sandbox's own files, made at each run).
const LIST: &str = "{ find /opt; echo /etc/passwd; } | sort | while read f; do \
 stat -c '%n %f %u %g %s %h %Y %b' \"$f\"; done > /out.txt \
 && md5sum /opt/app/big /opt/app/a /opt/app/sparse /etc/passwd >> /out.txt \
 && { test -e /etc/group || echo /etc/group deleted; } >> /out.txt";

/// An output stage: the first RUN's layer is compressed as it is written, and its snapshot is
/// made by the next step from the donor.
#[test]
fn the_next_step_sees_the_same_tree_whether_the_layer_was_just_made_or_unpacked() {
    let df = format!("FROM {BASE}\nRUN {MAKE}\nARG PASS\nRUN echo $PASS && {LIST}\n");
    same_tree_just_made_or_unpacked(&df);
}

/// A stage no output contains: the first RUN's layer is a deferred plain tar, and its snapshot
/// is unpacked from the donor while the layer is written (`solver::early_snapshot`).
#[test]
fn a_deferred_layer_unpacked_while_written_gives_the_next_step_the_same_tree() {
    let df = format!(
        "FROM {BASE} AS work\nRUN {MAKE}\nARG PASS\nRUN echo $PASS && {LIST}\n\
         FROM scratch\nCOPY --from=work /out.txt /out.txt\n"
    );
    same_tree_just_made_or_unpacked(&df);
}

fn same_tree_just_made_or_unpacked(df: &str) {
    let dir = scratch();
    let Some((store, ctx)) = setup(dir.path(), df) else {
        return;
    };
    // 1. A cold build: the listing runs on the snapshot made from the first RUN's upper dir.
    let just_made = dir.path().join("just-made");
    build(
        &store,
        &ctx,
        &[
            "--build-arg",
            "PASS=1",
            "--output",
            &format!("type=local,dest={}", just_made.display()),
        ],
    )
    .success();
    // 2. The snapshots are dropped; the first RUN is cached, so its layer is unpacked from the
    //    store's tar for the listing, which runs again (another PASS).
    for e in std::fs::read_dir(store.join("snapshots")).unwrap() {
        let path = e.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("v3-")
        {
            std::fs::remove_dir_all(&path).unwrap();
        }
    }
    let unpacked = dir.path().join("unpacked");
    let second = build(
        &store,
        &ctx,
        &[
            "--build-arg",
            "PASS=2",
            "--output",
            &format!("type=local,dest={}", unpacked.display()),
        ],
    )
    .success();
    assert!(second.stderr.contains("CACHED"), "{}", second.stderr);
    let read = |d: &std::path::Path| std::fs::read_to_string(d.join("out.txt")).unwrap();
    let (a, b) = (read(&just_made), read(&unpacked));
    assert!(a.contains("/opt/app/hardlink 89ed 0 0 6 2 "), "{a}");
    assert!(a.contains("/opt/app/old 81a4 0 0 0 1 1000000"), "{a}");
    assert!(a.contains("/etc/group deleted"), "{a}");
    assert_eq!(a, b);
    // Nothing of the first RUN's scratch directory is left behind.
    let tmp: Vec<_> = std::fs::read_dir(store.join("tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

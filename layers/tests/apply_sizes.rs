//! Hostile tar sizes: base-256 and PAX `size=` values up to `u64::MAX`, PAX length fields that
//! overflow. Each must give a clear error naming the entry, never an arithmetic panic (these
//! tests run in debug builds, where overflow panics) or a misparsed stream.

mod apply_common;

use apply_common::*;
use proptest::prelude::*;
use rbuild_layers::apply::{MAX_ENTRY_SIZE, MAX_PAX_BYTES};
use rbuild_layers::ApplyError;

/// A header whose 12-byte size field holds `size` in GNU base-256.
fn base256_block(h: &H, size: u64) -> [u8; 512] {
    let mut b = header_block(h, 0);
    b[124..136].fill(0);
    b[124] = 0x80;
    b[128..136].copy_from_slice(&size.to_be_bytes());
    set_checksum(&mut b);
    b
}

/// `blocks` followed by a regular file, so a reader that mis-skips shows it, and the end marker.
fn stream(blocks: &[[u8; 512]]) -> Vec<u8> {
    let mut t = RawTar::new();
    for b in blocks {
        t.block(b);
    }
    t.add(H::file("after", "x"));
    t.finish()
}

fn apply_err(tar: &[u8]) -> ApplyError {
    let sb = Sandbox::new();
    match sb.apply(tar) {
        Ok(rep) => panic!("a hostile size was applied: {rep:?}"),
        Err(e) => e,
    }
}

fn assert_bad_size(err: &ApplyError, entry: &str, size: u64) {
    match err {
        ApplyError::BadSize {
            path,
            size: s,
            limit,
            ..
        } => {
            assert_eq!(path, entry);
            assert_eq!(*s, size);
            assert_eq!(*limit, MAX_ENTRY_SIZE);
        }
        other => panic!("expected BadSize for {entry}, got {other:?}"),
    }
}

#[test]
fn base256_size_of_u64_max_on_a_directory_is_rejected_without_overflow() {
    let err = apply_err(&stream(&[base256_block(&H::dir("d/"), u64::MAX)]));
    assert_bad_size(&err, "d/", u64::MAX);
    assert!(err.to_string().contains("entry `d/`"), "{err}");
}

#[test]
fn base256_size_of_u64_max_on_a_global_pax_header_is_rejected_without_overflow() {
    let err = apply_err(&stream(&[base256_block(
        &H::new(b'g', "pax_global_header"),
        u64::MAX,
    )]));
    assert_bad_size(&err, "pax_global_header", u64::MAX);
}

#[test]
fn pax_size_of_u64_max_is_rejected_without_overflow() {
    let mut t = RawTar::new();
    t.pax(&[("size", u64::MAX.to_string().as_bytes())]);
    t.add(H::dir("d/"));
    t.add(H::file("after", "x"));
    let err = apply_err(&t.finish());
    assert_bad_size(&err, "d/", u64::MAX);
}

#[test]
fn size_of_i64_max_plus_one_is_rejected() {
    let too_big = i64::MAX as u64 + 1;
    let err = apply_err(&stream(&[base256_block(&H::new(SYMLINK, "l"), too_big)]));
    assert_bad_size(&err, "l", too_big);
    let mut t = RawTar::new();
    t.pax(&[
        ("path", b"long/name"),
        ("size", too_big.to_string().as_bytes()),
    ]);
    t.add(H::file("short", ""));
    assert_bad_size(&apply_err(&t.finish()), "long/name", too_big);
}

#[test]
fn global_pax_header_over_the_special_file_limit_is_rejected() {
    // Go's archive/tar reads every PAX header, global or not, through `maxSpecialFileSize`.
    let err = apply_err(&stream(&[header_block(
        &H::new(b'g', "pax_global_header"),
        MAX_PAX_BYTES + 1,
    )]));
    assert!(
        matches!(err, ApplyError::Oversized { size, .. } if size == MAX_PAX_BYTES + 1),
        "{err:?}"
    );
}

#[test]
fn pax_record_length_fields_that_overflow_are_rejected() {
    for len in [
        u64::MAX.to_string(),
        "99999999999999999999999".to_string(),
        (usize::MAX - 1).to_string(),
        (i64::MAX as u64 + 1).to_string(),
    ] {
        let mut data = format!("{len} path=x\n").into_bytes();
        data.resize(64, 0);
        let mut h = H::new(b'x', "PaxHeaders/x");
        h.data = data;
        let mut t = RawTar::new();
        t.add(h);
        t.add(H::file("f", "x"));
        let err = apply_err(&t.finish());
        assert!(
            matches!(
                err,
                ApplyError::Malformed {
                    reason: "malformed PAX record",
                    ..
                }
            ),
            "length {len}: {err:?}"
        );
    }
}

fn typeflag() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![
        REG, LINK, SYMLINK, CHAR, BLOCK_DEV, DIR, FIFO, b'x', b'g', b'L', b'K', b'7', 0,
    ])
}

/// Sizes near every boundary the reader combines them at.
fn size() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..2048,
        Just(u64::MAX),
        Just(u64::MAX - 511),
        Just(i64::MAX as u64),
        Just(i64::MAX as u64 + 1),
        (MAX_PAX_BYTES - 2)..(MAX_PAX_BYTES + 2),
        any::<u64>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Any size, written as base-256 or as a PAX record, on any entry type: an error (BadSize
    /// when over the limit) or a clean apply, never a panic.
    #[test]
    fn any_declared_size_is_rejected_or_applied_without_panic(
        tf in typeflag(),
        sz in size(),
        via_pax in any::<bool>(),
        trailing in 0usize..1500,
    ) {
        let h = H::new(tf, "e");
        let mut t = RawTar::new();
        if via_pax {
            t.pax(&[("size", sz.to_string().as_bytes())]);
            t.block(&header_block(&h, 0));
        } else {
            t.block(&base256_block(&h, sz));
        }
        t.buf.extend(std::iter::repeat_n(b'z', trailing));
        t.add(H::file("after", "x"));
        let sb = Sandbox::new();
        let res = sb.apply(&t.finish());
        // A PAX size applies to the next real entry only, never to x/g/L/K records.
        let effective = !via_pax || !matches!(tf, b'x' | b'g' | b'L' | b'K');
        if sz > MAX_ENTRY_SIZE && effective {
            prop_assert!(matches!(res, Err(ApplyError::BadSize { .. })), "{:?}", res);
        }
    }
}

//! Property tests for the applier with the canary oracle: random byte streams and random
//! hostile entry lists never panic and never change anything outside the root.

mod apply_common;

use apply_common::*;
use proptest::prelude::*;
use rbuild_layers::{ApplyOptions, WhiteoutMode};

/// Path components chosen to collide, climb, and hit whiteout and root-naming corner cases.
fn component() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "a",
        "b",
        "c",
        "..",
        ".",
        "",
        "root-victim",
        ".wh.a",
        ".wh.b",
        ".wh..wh..opq",
        ".wh...",
        ".wh.",
        "hello",
        "proc",
    ])
    .prop_map(str::to_string)
}

fn name(victim: String) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(component(), 1..5),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(parts, absolute, via_victim)| {
            let mut s = parts.join("/");
            if via_victim {
                s = format!("{victim}/{s}");
            } else if absolute {
                s = format!("/{s}");
            }
            s.into_bytes()
        })
}

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    Hardlink(Vec<u8>),
    Fifo,
}

fn entry(victim: String) -> impl Strategy<Value = H> {
    let target = prop_oneof![
        name(victim.clone()),
        Just(b"..".to_vec()),
        Just(b"/".to_vec()),
        Just(b"../root-victim".to_vec()),
        Just(b"../../../../..".to_vec()),
        Just(victim.clone().into_bytes()),
    ];
    let kind = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Kind::File),
        Just(Kind::Dir),
        target.clone().prop_map(Kind::Symlink),
        target.prop_map(Kind::Hardlink),
        Just(Kind::Fifo),
    ];
    (name(victim), kind, 0u32..0o10000).prop_map(|(n, k, mode)| {
        let h = match k {
            Kind::File(data) => H::file(&n, data),
            Kind::Dir => H::dir(&n),
            Kind::Symlink(t) => H::symlink(&n, t),
            Kind::Hardlink(t) => H::hardlink(&n, t),
            Kind::Fifo => H::new(FIFO, &n),
        };
        h.mode(mode | 0o200)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_entry_lists_stay_inside_the_root(
        overlay in any::<bool>(),
        hs in prop::collection::vec(entry(std::env::temp_dir().join("x").display().to_string()), 1..24),
    ) {
        let sb = Sandbox::new();
        // Re-target the "victim" names at this sandbox's canary.
        let victim = sb.victim.display().to_string();
        let fix = |b: &[u8]| -> Vec<u8> {
            let s = String::from_utf8_lossy(b).replace(&std::env::temp_dir().join("x").display().to_string(), &victim);
            s.into_bytes()
        };
        let hs: Vec<H> = hs.into_iter().map(|mut h| { h.name = fix(&h.name); h.link = fix(&h.link); h }).collect();
        let opts = ApplyOptions {
            whiteouts: if overlay { WhiteoutMode::Overlay } else { WhiteoutMode::Apply },
            ..ApplyOptions::default()
        };
        // Two layers, so later entries meet an existing tree.
        let (first, second) = hs.split_at(hs.len() / 2);
        let _ = sb.apply_with(&tar_of(first.to_vec()), &opts);
        let _ = sb.apply_with(&tar_of(second.to_vec()), &opts);
        // `apply_with` asserted the canary after each layer.
    }

    #[test]
    fn random_bytes_never_panic_or_escape(
        prefix_valid in any::<bool>(),
        noise in prop::collection::vec(any::<u8>(), 0..3000),
        flips in prop::collection::vec((0usize..2048, any::<u8>()), 0..8),
    ) {
        let sb = Sandbox::new();
        let mut data = if prefix_valid {
            tar_of([
                H::dir("d"),
                H::symlink("d/up", "../../root-victim"),
                H::file("d/up/x", "pwned"),
                H::file("f", "data"),
            ])
        } else {
            Vec::new()
        };
        data.extend_from_slice(&noise);
        for (at, byte) in flips {
            if let Some(b) = data.get_mut(at) {
                *b = byte;
            }
        }
        let _ = sb.apply(&data);
    }
}

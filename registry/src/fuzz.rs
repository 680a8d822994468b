//! Fuzz oracles for this crate's untrusted inputs, one function per cargo-fuzz target.
//!
//! This module exists for `tests/fuzz` (the cargo-fuzz targets, each a one-line call of a
//! function here) and for `registry/tests/fuzz_corpus.rs`, which runs every file of
//! `testdata/fuzz/<target>/` through the same function, so the committed corpus is a regression
//! suite. Each function holds the whole oracle and panics when it finds a bug; none is part of
//! rbuild's API.
//!
//! - [`image_reference`]: a reference that parses prints (fully qualified and familiar) to text
//!   that parses to the same reference.
//! - [`www_authenticate`]: a challenge that parses, written back as a header, parses the same.
//! - [`cache_map`]: a cache map that parses re-serialises to bytes that parse to the same map,
//!   and survives being embedded in an image config (the inline cache).

use crate::auth::challenge::{self, Challenge};
use crate::cache_map::format::CacheMap;
use crate::reference::Reference;
use rbuild_layers::image::config::ImageConfig;

/// Oracle for image references (`FROM`, `--tag`, `--cache-from`, ...).
pub fn image_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(reference) = text.parse::<Reference>() else {
        return;
    };
    for (form, shown) in [
        ("display", reference.to_string()),
        ("familiar", reference.familiar()),
    ] {
        match shown.parse::<Reference>() {
            Ok(again) => assert_eq!(
                again, reference,
                "{text:?} printed ({form}) as {shown:?} parses to another reference"
            ),
            Err(e) => panic!("{text:?} printed ({form}) as {shown:?} does not parse: {e}"),
        }
    }
    assert_eq!(
        reference.name(),
        format!("{}/{}", reference.registry(), reference.repository())
    );
    let _ = reference.with_tag("latest");
}

/// `value` as an RFC 7230 quoted string.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Oracle for `WWW-Authenticate` headers sent by registries.
pub fn www_authenticate(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    let Some(parsed) = challenge::parse(&header) else {
        return;
    };
    let rendered = match &parsed {
        Challenge::Basic => "Basic".to_string(),
        Challenge::Bearer {
            realm,
            service,
            scope,
        } => {
            let mut h = format!("Bearer realm={}", quoted(realm));
            if let Some(s) = service {
                h += &format!(",service={}", quoted(s));
            }
            if let Some(s) = scope {
                h += &format!(",scope={}", quoted(s));
            }
            h
        }
    };
    assert_eq!(
        challenge::parse(&rendered).as_ref(),
        Some(&parsed),
        "{header:?} parsed, but its rendering {rendered:?} parses differently"
    );
}

/// Oracle for cache maps imported with `--cache-from` (a registry blob or an inline field).
pub fn cache_map(data: &[u8]) {
    let Ok(map) = CacheMap::from_slice(data) else {
        return;
    };
    let bytes = map.to_vec();
    let again = match CacheMap::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => panic!("a parsed cache map re-serialises to an invalid one: {e}"),
    };
    assert_eq!(again, map, "the serialised cache map parses to another map");
    assert_eq!(
        again.to_vec(),
        bytes,
        "cache map serialisation is not stable"
    );

    let descriptors = map.layer_descriptors();
    assert!(
        descriptors.windows(2).all(|w| w[0].digest < w[1].digest),
        "layer descriptors are not unique and sorted by digest"
    );

    let mut config = ImageConfig::new("linux", "amd64");
    map.embed_in(&mut config);
    match CacheMap::from_image_config(&config) {
        Some(Ok(inline)) => {
            assert_eq!(inline.entries.len(), map.entries.len());
            assert!(inline.entries.values().all(|e| e.config.is_none()));
        }
        Some(Err(e)) => panic!("an embedded cache map does not parse back: {e}"),
        None => panic!("an embedded cache map is not found in the config"),
    }
}

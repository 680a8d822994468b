//! Fuzz oracles for this crate's untrusted inputs, one function per cargo-fuzz target.
//!
//! This module exists for `tests/fuzz` (the cargo-fuzz targets, each a one-line call of a
//! function here) and for `layers/tests/fuzz_corpus.rs`, which runs every file of
//! `testdata/fuzz/<target>/` through the same function, so the committed corpus is a regression
//! suite. Each function holds the whole oracle and panics when it finds a bug; none is part of
//! rbuild's API.
//!
//! - [`tar_read`]: the streaming tar reader gives the same entries whatever the read chunking,
//!   and its offsets, names and data stay within the input.
//! - [`tar_apply`]: applying any tar into a root leaves the canary beside it ([`canary`])
//!   byte-, mode-, owner- and time-identical, creates nothing beside the root, and reports the
//!   stream's sha256 as the DiffID.
//! - [`manifest_parse`]: manifests, indexes, image configs and layer path indexes that parse
//!   re-serialise to canonical JSON that parses to the same value (and the same bytes).

pub mod canary;

use std::io::{BufRead, BufReader};

use crate::apply::tar::{Entry, TarReader};
use crate::apply::{detect, StreamFormat, PATH_MAX};
use crate::image::config::ImageConfig;
use crate::image::manifest::{ImageIndex, ImageManifest};
use crate::tar::PathIndex;
use crate::{ApplyOptions, Digest, WhiteoutMode};

const BLOCK: usize = 512;

/// Fixes the checksum of every 512-byte block at a block boundary that carries the `ustar`
/// magic, so mutated headers are not all rejected by the checksum (which unit tests cover).
/// Blocks without the magic (v7 headers, data) are left as they are.
pub fn with_valid_checksums(data: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    for block in out.chunks_exact_mut(BLOCK) {
        if &block[257..262] == b"ustar" {
            block[148..156].copy_from_slice(b"        ");
            let sum: u64 = block.iter().map(|&b| u64::from(b)).sum();
            let field = format!("{:06o}\0 ", sum & 0o777_777);
            block[148..156].copy_from_slice(field.as_bytes());
        }
    }
    out
}

/// What reading a whole tar produced: the entries with their data, and how it ended.
#[derive(Debug, PartialEq, Eq)]
struct ReadOutcome {
    entries: Vec<(Entry, Vec<u8>)>,
    end: Result<(), String>,
}

fn read_all<R: BufRead>(r: R, input_len: usize) -> ReadOutcome {
    let mut tar = TarReader::new(r);
    let mut entries = Vec::new();
    let end = loop {
        match tar.next_entry() {
            Ok(None) => break tar.drain().map_err(|e| e.to_string()),
            Ok(Some(entry)) => {
                let mut data = Vec::new();
                loop {
                    match tar.data() {
                        Ok([]) => break,
                        Ok(chunk) => {
                            let n = chunk.len();
                            data.extend_from_slice(chunk);
                            tar.consume_data(n);
                        }
                        Err(e) => {
                            entries.push((entry, data));
                            return ReadOutcome {
                                entries,
                                end: Err(e.to_string()),
                            };
                        }
                    }
                }
                assert!(
                    entries.len() <= input_len / BLOCK,
                    "more entries than header blocks in the input"
                );
                entries.push((entry, data));
            }
            Err(e) => break Err(e.to_string()),
        }
    };
    ReadOutcome { entries, end }
}

/// Oracle for the tar reader used by `apply_layer`.
pub fn tar_read(data: &[u8]) {
    let tar = with_valid_checksums(data);
    let whole = read_all(tar.as_slice(), tar.len());
    // A reader that hands out a few bytes at a time must see exactly the same archive.
    let chunk = 1 + data.len() % 13;
    let chunked = read_all(BufReader::with_capacity(chunk, tar.as_slice()), tar.len());
    assert_eq!(
        whole, chunked,
        "tar reading depends on read chunking ({chunk})"
    );

    let mut last_offset = None;
    let mut data_bytes = 0usize;
    for (entry, bytes) in &whole.entries {
        assert_eq!(
            entry.offset % BLOCK as u64,
            0,
            "entry offset not block-aligned"
        );
        assert!(
            entry.offset < tar.len() as u64,
            "entry offset past the input"
        );
        assert!(
            last_offset.is_none_or(|o| entry.offset > o),
            "entry offsets do not increase"
        );
        last_offset = Some(entry.offset);
        assert!(entry.path.len() <= PATH_MAX && entry.link.len() <= PATH_MAX);
        assert!(entry.mode <= 0o7777);
        assert!(
            bytes.len() as u64 <= entry.size,
            "more data than the entry's size"
        );
        data_bytes += bytes.len();
    }
    assert!(data_bytes <= tar.len(), "more entry data than input bytes");
}

/// Oracle for `apply_layer` on uncompressed tars (decompressors are other crates' to fuzz, and
/// a small compressed input can expand to gigabytes of files on tmpfs).
pub fn tar_apply(data: &[u8]) {
    let tar = with_valid_checksums(data);
    if detect(&tar) != StreamFormat::Tar {
        return;
    }
    let opts = ApplyOptions {
        whiteouts: if data.last().is_some_and(|b| b & 1 == 1) {
            WhiteoutMode::Overlay
        } else {
            WhiteoutMode::Apply
        },
        ..ApplyOptions::default()
    };
    let sandbox = canary::Sandbox::new();
    // `apply_with` asserts the canary is intact whatever the result.
    if let Ok(report) = sandbox.apply_with(&tar, &opts) {
        assert_eq!(
            report.bytes,
            tar.len() as u64,
            "DiffID length is not the stream's"
        );
        assert_eq!(
            report.diff_id,
            Digest::sha256_of(&tar),
            "DiffID is not the stream's sha256"
        );
        assert!(report.entries <= (tar.len() / BLOCK) as u64);
    }
}

/// Parses `bytes` with `parse`; if that succeeds, the canonical form must parse to the same
/// value and serialise to the same bytes.
fn canonical_round_trip<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    parse: impl Fn(&[u8]) -> Option<T>,
    canonical: impl Fn(&T) -> Vec<u8>,
    what: &str,
) -> Option<T> {
    let value = parse(bytes)?;
    let json = canonical(&value);
    let Some(again) = parse(&json) else {
        panic!(
            "the canonical {what} does not parse: {}",
            String::from_utf8_lossy(&json)
        );
    };
    assert_eq!(value, again, "the canonical {what} parses to another value");
    assert_eq!(
        json,
        canonical(&again),
        "the canonical {what} is not stable"
    );
    Some(value)
}

/// Oracle for the JSON documents read from registries, image layouts and cache maps.
pub fn manifest_parse(data: &[u8]) {
    if let Some(m) = canonical_round_trip(
        data,
        |b| ImageManifest::from_slice(b).ok(),
        ImageManifest::to_canonical_json,
        "manifest",
    ) {
        let _ = m.to_docker_schema2();
    }
    if let Some(i) = canonical_round_trip(
        data,
        |b| ImageIndex::from_slice(b).ok(),
        ImageIndex::to_canonical_json,
        "index",
    ) {
        let _ = i.to_docker_schema2();
    }
    // `Image::load` parses configs with serde directly (after the size cap).
    if let Some(c) = canonical_round_trip(
        data,
        |b| serde_json::from_slice::<ImageConfig>(b).ok(),
        ImageConfig::to_canonical_json,
        "image config",
    ) {
        let child = c.derive_child();
        let _ = (child.to_canonical_json(), c.history_matches_layers());
        let _ = c.env_get("PATH");
    }
    canonical_round_trip(
        data,
        |b| PathIndex::from_json(b).ok(),
        PathIndex::to_json,
        "layer path index",
    );
}

/// Runs every file in `dir` (a committed corpus, `testdata/fuzz/<target>/`) through `oracle`
/// and panics naming each file whose run panicked. The crates' `fuzz_corpus` tests use this, so
/// every input a campaign kept, or a crash it found, stays a regression test.
pub fn run_corpus(dir: &std::path::Path, oracle: fn(&[u8])) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading the corpus {}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|path| {
            let data = std::fs::read(path).expect("read corpus file");
            std::panic::catch_unwind(|| oracle(&data)).is_err()
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(failed.is_empty(), "fuzz oracle failed on: {failed:#?}");
}

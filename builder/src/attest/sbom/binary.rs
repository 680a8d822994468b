//! Executables, streamed once: Go's build information (`golang`) and busybox's version string
//! (syft's binary classifier for busybox). Only ELF files are read past their first bytes;
//! memory is two windows of [`WINDOW`] bytes whatever the file's size.

use std::io::{self, Read};

use memchr::memmem;

use super::golang::{self, GoBuildInfo};

/// Smallest file worth opening: an ELF header is 64 bytes.
pub const MIN_SIZE: u64 = 64;
/// Bytes kept after a match for its parse: Go's module information of a large program is a
/// few hundred KiB at most.
const WINDOW: usize = 1 << 20;
const ELF_MAGIC: &[u8] = b"\x7fELF";
const BUSYBOX_MARK: &[u8] = b"BusyBox v";

/// What an executable told about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryInfo {
    Go(GoBuildInfo),
    /// busybox and its version (`1.36.1`).
    Busybox(String),
}

/// Reads `r` (a whole file) and returns what it is, if anything the scanners know. Busybox's
/// string is looked for only when `want_busybox` (the file is named `busybox`), as syft's
/// classifier matches on the file name first.
pub fn scan(r: &mut dyn Read, want_busybox: bool) -> io::Result<Option<BinaryInfo>> {
    let mut head = [0u8; 4];
    if read_full(r, &mut head)? < head.len() || head != ELF_MAGIC {
        return Ok(None);
    }
    let go_finder = memmem::Finder::new(golang::MAGIC);
    let bb_finder = memmem::Finder::new(BUSYBOX_MARK);
    let mut buf: Vec<u8> = head.to_vec();
    // File offset of buf[0], and how far (file offset) matches have been looked for.
    let mut base = 0u64;
    let mut searched = 0u64;
    loop {
        let want = 2 * WINDOW - buf.len();
        let old = buf.len();
        buf.resize(2 * WINDOW, 0);
        let n = read_full(r, &mut buf[old..old + want])?;
        buf.truncate(old + n);
        let eof = n < want;
        // A match starting before `limit` has WINDOW bytes after it (or the file's end).
        let limit = if eof { buf.len() } else { buf.len() - WINDOW };
        let from = (searched - base) as usize;
        if from < limit {
            let region = &buf[from..(limit + golang::MAGIC.len() - 1).min(buf.len())];
            for i in go_finder.find_iter(region) {
                let at = from + i;
                // Go's reader accepts the blob only 16-byte aligned in its section, whose
                // file offset is aligned too; a misaligned match is a copy of the string.
                if (base + at as u64) % 16 == 0 {
                    if let Some(info) = golang::parse(&buf[at..]) {
                        return Ok(Some(BinaryInfo::Go(info)));
                    }
                }
            }
            if want_busybox {
                let region = &buf[from..(limit + BUSYBOX_MARK.len() - 1).min(buf.len())];
                if let Some(i) = bb_finder.find(region) {
                    let rest = &buf[from + i + BUSYBOX_MARK.len()..];
                    let v: String = rest
                        .iter()
                        .take(32)
                        .take_while(|b| b.is_ascii_digit() || **b == b'.')
                        .map(|&b| b as char)
                        .collect();
                    if v.starts_with(|c: char| c.is_ascii_digit()) {
                        return Ok(Some(BinaryInfo::Busybox(v)));
                    }
                }
            }
        }
        searched = base + limit as u64;
        if eof {
            return Ok(None);
        }
        let drop = buf.len() - WINDOW;
        buf.drain(..drop);
        base += drop as u64;
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn elf_with(at: usize, blob: &[u8], total: usize) -> Vec<u8> {
        let mut f = vec![0u8; total];
        f[..4].copy_from_slice(ELF_MAGIC);
        f[at..at + blob.len()].copy_from_slice(blob);
        f
    }

    #[test]
    fn finds_busybox_anywhere_even_across_windows() {
        for at in [100, WINDOW - 3, 2 * WINDOW - 5, 3 * WINDOW + 7] {
            let f = elf_with(at, b"BusyBox v1.36.1 (2024-01-01)", 4 * WINDOW);
            let got = scan(&mut f.as_slice(), true).unwrap();
            assert_eq!(got, Some(BinaryInfo::Busybox("1.36.1".into())), "at {at}");
            assert_eq!(scan(&mut f.as_slice(), false).unwrap(), None);
        }
    }

    #[test]
    fn not_elf_is_not_read() {
        let mut f = b"#!/bin/sh\nBusyBox v1.0".to_vec();
        f.resize(200, b' ');
        assert_eq!(scan(&mut f.as_slice(), true).unwrap(), None);
    }

    #[test]
    fn finds_go_buildinfo_only_aligned() {
        let blob = golang::tests::inline_blob("go1.21.0", "path\texample.com/x\n");
        for at in [4096, WINDOW * 2 - 16, WINDOW * 2 + 32] {
            let f = elf_with(at, &blob, 4 * WINDOW);
            match scan(&mut f.as_slice(), false).unwrap() {
                Some(BinaryInfo::Go(info)) => assert_eq!(info.go_version, "go1.21.0", "at {at}"),
                other => panic!("at {at}: {other:?}"),
            }
        }
        let f = elf_with(4097, &blob, 3 * WINDOW);
        assert_eq!(scan(&mut f.as_slice(), false).unwrap(), None);
    }
}

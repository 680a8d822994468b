//! Raw tar header encoding in the format Go's `archive/tar` (and so BuildKit and containerd)
//! writes: a USTAR header when every field fits (long names split into prefix/name), otherwise a
//! PAX extended header (`x`, named `dir/PaxHeaders.0/base`, mode/uid/gid/mtime 0) holding the
//! values that do not fit, followed by a USTAR-style header with PAX magic.
//!
//! Hand-written rather than with `tar::Builder` because that builder falls back to GNU long-name
//! records and has no PAX writer; rbuild needs PAX (xattrs are only representable as
//! `SCHILY.xattr.*` records) and exact control of every byte for reproducible digests.

use std::collections::BTreeMap;
use std::io::{self, Write};

pub(crate) const BLOCK: usize = 512;

pub(crate) const TYPE_REG: u8 = b'0';
pub(crate) const TYPE_LINK: u8 = b'1';
pub(crate) const TYPE_SYMLINK: u8 = b'2';
pub(crate) const TYPE_CHAR: u8 = b'3';
pub(crate) const TYPE_BLOCK: u8 = b'4';
pub(crate) const TYPE_DIR: u8 = b'5';
pub(crate) const TYPE_FIFO: u8 = b'6';
const TYPE_PAX: u8 = b'x';

/// Everything a header says about an entry.
pub(crate) struct HeaderFields<'a> {
    pub name: &'a str,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    pub mtime: i64,
    pub linkname: &'a str,
    pub devmajor: u32,
    pub devminor: u32,
    pub xattrs: &'a BTreeMap<String, Vec<u8>>,
}

/// Whether `x` fits an octal field of `len` bytes (len-1 digits plus NUL).
fn fits_octal(len: usize, x: u64) -> bool {
    let digits = (len - 1) as u32;
    x < 8u64.pow(digits)
}

/// Writes `x` in octal, zero padded, NUL terminated; 0 when it does not fit (a PAX record then
/// carries the value, as Go does).
fn put_octal(field: &mut [u8], x: u64) {
    let x = if fits_octal(field.len(), x) { x } else { 0 };
    let s = format!("{x:0width$o}", width = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
    field[field.len() - 1] = 0;
}

/// Copies `s` into a NUL-padded field (truncating, as Go's best-effort formatter does).
fn put_str(field: &mut [u8], s: &[u8]) {
    let n = s.len().min(field.len());
    field[..n].copy_from_slice(&s[..n]);
}

/// Splits a long ASCII name into USTAR prefix (≤155) and name (≤100) at a slash.
fn split_ustar(name: &str) -> Option<(&str, &str)> {
    if name.len() <= 100 || !name.is_ascii() {
        return None;
    }
    let bytes = name.as_bytes();
    let mut limit = name.len().min(156);
    if limit == name.len() && bytes[limit - 1] == b'/' {
        limit -= 1;
    }
    let i = name[..limit].rfind('/')?;
    let (prefix, rest) = (&name[..i], &name[i + 1..]);
    if i == 0 || prefix.len() > 155 || rest.is_empty() || rest.len() > 100 {
        return None;
    }
    Some((prefix, rest))
}

/// One PAX record: `"<len> <key>=<value>\n"`, where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while body + len.to_string().len() != len {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

fn checksum(block: &mut [u8; BLOCK]) {
    block[148..156].fill(b' ');
    let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
    let s = format!("{sum:06o}");
    block[148..154].copy_from_slice(s.as_bytes());
    block[154] = 0;
    block[155] = b' ';
}

/// An empty header block of type `typeflag` with the "ustar\0" "00" magic and version, which
/// USTAR and PAX headers share.
fn base_block(typeflag: u8) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[156] = typeflag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b
}

/// Writes the header block(s) of one entry (not its data).
pub(crate) fn write_header<W: Write>(w: &mut W, f: &HeaderFields<'_>) -> io::Result<()> {
    let mut pax: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let split = split_ustar(f.name);
    let name_long = !f.name.is_ascii() || f.name.len() > 100;
    if !f.linkname.is_ascii() || f.linkname.len() > 100 {
        pax.insert("linkpath".into(), f.linkname.as_bytes().to_vec());
    }
    if !fits_octal(8, f.uid) {
        pax.insert("uid".into(), f.uid.to_string().into_bytes());
    }
    if !fits_octal(8, f.gid) {
        pax.insert("gid".into(), f.gid.to_string().into_bytes());
    }
    if !fits_octal(12, f.size) {
        pax.insert("size".into(), f.size.to_string().into_bytes());
    }
    let mtime_fits = f.mtime >= 0 && fits_octal(12, f.mtime as u64);
    if !mtime_fits {
        pax.insert("mtime".into(), f.mtime.to_string().into_bytes());
    }
    for (k, v) in f.xattrs {
        pax.insert(format!("SCHILY.xattr.{k}"), v.clone());
    }
    // As Go's `verifyFormat`: a long or non-ASCII name goes into a PAX record whenever the entry
    // is PAX anyway, and forces PAX when it cannot be split into USTAR prefix and name.
    if name_long && (split.is_none() || !pax.is_empty()) {
        pax.insert("path".into(), f.name.as_bytes().to_vec());
    }

    if !pax.is_empty() {
        let mut data = Vec::new();
        for (k, v) in &pax {
            pax_record(&mut data, k, v);
        }
        // Go: path.Join(path.Split(name)) — a directory "a/b/" gives "a/b/PaxHeaders.0".
        let (dir, base) = match f.name.rfind('/') {
            Some(i) => (&f.name[..=i], &f.name[i + 1..]),
            None => ("", f.name),
        };
        let joined = if base.is_empty() {
            format!("{dir}PaxHeaders.0")
        } else {
            format!("{dir}PaxHeaders.0/{base}")
        };
        // As Go's `writeRawFile`: ASCII only, at most 100 bytes, no trailing slash.
        let pax_name = ascii_lossy(&joined);
        let pax_name = &pax_name.as_bytes()[..pax_name.len().min(100)];
        let end = pax_name
            .iter()
            .rposition(|&c| c != b'/')
            .map_or(0, |i| i + 1);
        let mut b = base_block(TYPE_PAX);
        put_str(&mut b[0..100], &pax_name[..end]);
        put_octal(&mut b[100..108], 0);
        put_octal(&mut b[108..116], 0);
        put_octal(&mut b[116..124], 0);
        put_octal(&mut b[124..136], data.len() as u64);
        put_octal(&mut b[136..148], 0);
        checksum(&mut b);
        w.write_all(&b)?;
        w.write_all(&data)?;
        write_padding(w, data.len() as u64)?;
    }

    let mut b = base_block(f.typeflag);
    match (pax.is_empty(), split) {
        (true, Some((prefix, rest))) => {
            put_str(&mut b[0..100], rest.as_bytes());
            put_str(&mut b[345..500], prefix.as_bytes());
        }
        _ => put_str(&mut b[0..100], ascii_lossy(f.name).as_bytes()),
    }
    put_octal(&mut b[100..108], u64::from(f.mode & 0o7777));
    put_octal(&mut b[108..116], f.uid);
    put_octal(&mut b[116..124], f.gid);
    put_octal(&mut b[124..136], f.size);
    put_octal(
        &mut b[136..148],
        if mtime_fits { f.mtime as u64 } else { 0 },
    );
    put_str(&mut b[157..257], ascii_lossy(f.linkname).as_bytes());
    // uname/gname stay empty (NUL): layers must not depend on the build host's user database.
    put_octal(&mut b[329..337], u64::from(f.devmajor));
    put_octal(&mut b[337..345], u64::from(f.devminor));
    checksum(&mut b);
    w.write_all(&b)
}

/// Best-effort ASCII for fixed fields whose real value is in a PAX record (as Go's `toASCII`).
fn ascii_lossy(s: &str) -> String {
    s.chars().filter(char::is_ascii).collect()
}

/// Zero padding after `len` bytes of data, up to the next block boundary.
pub(crate) fn write_padding<W: Write>(w: &mut W, len: u64) -> io::Result<()> {
    let rem = (len % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let mut out = Vec::new();
        pax_record(&mut out, "path", b"a");
        assert_eq!(out, b"9 path=a\n");
        let mut out = Vec::new();
        // 2-digit to 3-digit length boundary.
        let v = vec![b'x'; 92];
        pax_record(&mut out, "path", &v);
        // 2 digits would give 101, which has 3 digits, so the length is 102.
        assert_eq!(out.len(), 102);
        assert!(out.starts_with(b"102 path="));
    }

    #[test]
    fn ustar_split_uses_prefix_when_possible() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(50));
        assert_eq!(split_ustar(&long), Some((&long[..120], &long[121..])));
        assert_eq!(split_ustar(&"x".repeat(101)), None);
        assert_eq!(split_ustar("short"), None);
    }
}

//! A bounded, streaming tar reader (ustar, GNU long names, PAX) for untrusted layers.
//!
//! Hand-written rather than using the `tar` crate's `Archive` because that reader loads GNU
//! long-name and PAX extension records of any declared size fully into memory (an unbounded read,
//! the class of containerd CVE-2023-25153) and exposes no limit. Here every metadata record is
//! capped ([`MAX_PAX_BYTES`], [`MAX_LONG_NAME`]), names over `PATH_MAX` are rejected, headers are
//! checksummed, and file contents are only ever streamed through the caller's buffer.

use std::io::{self, BufRead};

use super::error::{show, ApplyError};
use super::path::PATH_MAX;

/// Size of a tar block.
pub const BLOCK: u64 = 512;
/// Largest PAX extended header (`x`) accepted; pending PAX data for one entry never exceeds it.
pub const MAX_PAX_BYTES: u64 = 1 << 20;
/// Largest GNU long name / long link record accepted (`PATH_MAX` plus a terminating NUL).
pub const MAX_LONG_NAME: u64 = PATH_MAX as u64 + 1;
/// Largest entry size accepted: sizes are signed 64-bit integers in Go's `archive/tar` (what
/// BuildKit and containerd write and read), which rejects anything larger or negative. Capping
/// here also keeps every `size + padding` sum in this reader far from `u64` overflow.
pub const MAX_ENTRY_SIZE: u64 = i64::MAX as u64;

/// The type of a tar entry, from its typeflag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Regular,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
    /// A typeflag rbuild does not apply (skipped with a warning).
    Other(u8),
}

/// One logical tar entry with its extended headers already folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    /// Permission bits including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime_sec: i64,
    pub mtime_nsec: u32,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `SCHILY.xattr.NAME` PAX records, in stream order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Byte offset of the entry's header in the uncompressed stream.
    pub offset: u64,
}

/// Extended-header state waiting for the next real entry.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    pax_bytes: u64,
    sparse: bool,
}

/// Streaming reader over an uncompressed tar.
pub struct TarReader<R> {
    r: R,
    offset: u64,
    /// Data bytes of the current entry the caller has not consumed.
    remaining: u64,
    /// Padding after the current entry's data.
    padding: u64,
    finished: bool,
}

fn malformed(offset: u64, reason: &'static str) -> ApplyError {
    ApplyError::Malformed { offset, reason }
}

impl<R: BufRead> TarReader<R> {
    pub fn new(r: R) -> Self {
        TarReader {
            r,
            offset: 0,
            remaining: 0,
            padding: 0,
            finished: false,
        }
    }

    /// The underlying reader.
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Reads one block; `Ok(false)` at a clean end of stream before its first byte.
    fn read_block(&mut self, block: &mut [u8; BLOCK as usize]) -> Result<bool, ApplyError> {
        let mut filled = 0;
        while filled < block.len() {
            let buf = self.fill()?;
            if buf.is_empty() {
                if filled == 0 {
                    return Ok(false);
                }
                return Err(malformed(self.offset, "stream ends inside a header block"));
            }
            let n = buf.len().min(block.len() - filled);
            block[filled..filled + n].copy_from_slice(&buf[..n]);
            self.r.consume(n);
            self.offset += n as u64;
            filled += n;
        }
        Ok(true)
    }

    fn fill(&mut self) -> Result<&[u8], ApplyError> {
        loop {
            match self.r.fill_buf() {
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ApplyError::Read(e)),
            }
        }
        // Returns the buffer just filled (no further I/O); split from the loop above only to
        // satisfy the borrow checker.
        self.r.fill_buf().map_err(ApplyError::Read)
    }

    /// Discards `n` bytes that must be present.
    fn skip(&mut self, mut n: u64) -> Result<(), ApplyError> {
        while n > 0 {
            let avail = self.fill()?.len();
            if avail == 0 {
                return Err(malformed(self.offset, "stream ends inside an entry"));
            }
            let k = avail.min(usize::try_from(n).unwrap_or(usize::MAX));
            self.r.consume(k);
            self.offset += k as u64;
            n -= k as u64;
        }
        Ok(())
    }

    /// Reads a bounded metadata record (`size` already checked against its limit) and its padding.
    fn read_record(&mut self, size: u64) -> Result<Vec<u8>, ApplyError> {
        let len = usize::try_from(size).map_err(|_| malformed(self.offset, "record too large"))?;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let buf = self.fill()?;
            if buf.is_empty() {
                return Err(malformed(
                    self.offset,
                    "stream ends inside an extended header",
                ));
            }
            let n = buf.len().min(len - out.len());
            out.extend_from_slice(&buf[..n]);
            self.r.consume(n);
            self.offset += n as u64;
        }
        self.skip(padding_of(size))?;
        Ok(out)
    }

    /// The next chunk of the current entry's data (empty once it is all consumed).
    pub fn data(&mut self) -> Result<&[u8], ApplyError> {
        if self.remaining == 0 {
            return Ok(&[]);
        }
        let remaining = self.remaining;
        let offset = self.offset;
        let buf = self.fill()?;
        if buf.is_empty() {
            return Err(malformed(offset, "stream ends inside an entry's data"));
        }
        let n = buf
            .len()
            .min(usize::try_from(remaining).unwrap_or(usize::MAX));
        Ok(&buf[..n])
    }

    /// Marks `n` bytes returned by [`TarReader::data`] as consumed.
    pub fn consume_data(&mut self, n: usize) {
        debug_assert!(n as u64 <= self.remaining);
        self.r.consume(n);
        self.offset += n as u64;
        self.remaining -= n as u64;
    }

    /// Reads everything after the end-of-archive marker (it still counts towards the DiffID).
    pub fn drain(&mut self) -> Result<(), ApplyError> {
        loop {
            let n = self.fill()?.len();
            if n == 0 {
                return Ok(());
            }
            self.r.consume(n);
            self.offset += n as u64;
        }
    }

    /// Advances to the next real entry, folding PAX and GNU long-name records into it.
    /// Returns `None` at the end-of-archive marker (or a clean end of stream).
    pub fn next_entry(&mut self) -> Result<Option<Entry>, ApplyError> {
        if self.finished {
            return Ok(None);
        }
        let leftover = self
            .remaining
            .checked_add(self.padding)
            .ok_or_else(|| malformed(self.offset, "entry size overflows"))?;
        self.remaining = 0;
        self.padding = 0;
        self.skip(leftover)?;

        let mut pending = Pending::default();
        let mut block = [0u8; BLOCK as usize];
        loop {
            let offset = self.offset;
            if !self.read_block(&mut block)? {
                if pending.path.is_some() || pending.pax_bytes > 0 {
                    return Err(malformed(offset, "extended header without an entry"));
                }
                self.finished = true;
                return Ok(None);
            }
            if block.iter().all(|&b| b == 0) {
                self.finished = true;
                return Ok(None);
            }
            verify_checksum(&block, offset)?;
            let typeflag = block[156];
            let size = match pending.size {
                Some(s) if !matches!(typeflag, b'x' | b'g' | b'L' | b'K') => s,
                _ => numeric(&block[124..136], offset, "size field")?,
            };
            check_size(size, &block, &pending, offset)?;
            match typeflag {
                b'x' | b'g' if size > MAX_PAX_BYTES => {
                    return Err(ApplyError::Oversized {
                        offset,
                        what: "PAX extended header",
                        size,
                        limit: MAX_PAX_BYTES,
                    });
                }
                b'x' => {
                    let total = pending.pax_bytes.saturating_add(size);
                    if total > MAX_PAX_BYTES {
                        return Err(ApplyError::Oversized {
                            offset,
                            what: "PAX extended header",
                            size: total,
                            limit: MAX_PAX_BYTES,
                        });
                    }
                    pending.pax_bytes = total;
                    let record = self.read_record(size)?;
                    parse_pax(&record, &mut pending, offset)?;
                }
                b'g' => {
                    // Global PAX headers: ignored, as Go's archive/tar and containerd do; the
                    // data is skipped without being buffered.
                    self.skip(with_padding(size, offset)?)?;
                }
                b'L' | b'K' => {
                    if size > MAX_LONG_NAME {
                        return Err(ApplyError::Oversized {
                            offset,
                            what: "GNU long name record",
                            size,
                            limit: MAX_LONG_NAME,
                        });
                    }
                    let mut name = self.read_record(size)?;
                    if let Some(end) = name.iter().position(|&b| b == 0) {
                        name.truncate(end);
                    }
                    if typeflag == b'L' {
                        pending.path = Some(name);
                    } else {
                        pending.link = Some(name);
                    }
                }
                b'S' => {
                    return Err(ApplyError::Unsupported {
                        path: show(cstr(&block[..100])),
                        what: "a GNU sparse file",
                    })
                }
                _ => {
                    let entry = self.build_entry(&block, typeflag, size, pending, offset)?;
                    // Links, directories and devices carry no data, but a (non-standard) size
                    // is still honoured so the stream stays in step.
                    self.remaining = size;
                    self.padding = padding_of(size);
                    return Ok(Some(entry));
                }
            }
        }
    }

    fn build_entry(
        &self,
        block: &[u8; BLOCK as usize],
        typeflag: u8,
        size: u64,
        pending: Pending,
        offset: u64,
    ) -> Result<Entry, ApplyError> {
        let is_ustar = &block[257..263] == b"ustar\0";
        let path = match pending.path {
            Some(p) => p,
            None => {
                let name = cstr(&block[..100]);
                let prefix = cstr(&block[345..500]);
                if is_ustar && !prefix.is_empty() {
                    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
                    p.extend_from_slice(prefix);
                    p.push(b'/');
                    p.extend_from_slice(name);
                    p
                } else {
                    name.to_vec()
                }
            }
        };
        let link = pending
            .link
            .unwrap_or_else(|| cstr(&block[157..257]).to_vec());
        if pending.sparse {
            return Err(ApplyError::Unsupported {
                path: show(&path),
                what: "a PAX sparse file (GNU.sparse.*)",
            });
        }
        for (what, name) in [("entry name", &path), ("link target", &link)] {
            if name.len() > PATH_MAX {
                return Err(ApplyError::Oversized {
                    offset,
                    what,
                    size: name.len() as u64,
                    limit: PATH_MAX as u64,
                });
            }
        }
        let kind = match typeflag {
            // Pre-POSIX tars mark directories with a trailing slash on a regular entry.
            b'\0' if path.ends_with(b"/") => Kind::Dir,
            b'0' | b'\0' | b'7' => Kind::Regular,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            other => Kind::Other(other),
        };
        let id = |v: Option<u64>, field: &[u8], what: &'static str| -> Result<u32, ApplyError> {
            let v = match v {
                Some(v) => v,
                None => numeric(field, offset, what)?,
            };
            u32::try_from(v).map_err(|_| malformed(offset, "uid or gid does not fit in 32 bits"))
        };
        let uid = id(pending.uid, &block[108..116], "uid field")?;
        let gid = id(pending.gid, &block[116..124], "gid field")?;
        let mode = numeric(&block[100..108], offset, "mode field")? as u32 & 0o7777;
        let (mtime_sec, mtime_nsec) = match pending.mtime {
            Some(t) => t,
            None => {
                let t = numeric(&block[136..148], offset, "mtime field")?;
                (
                    i64::try_from(t).map_err(|_| malformed(offset, "mtime out of range"))?,
                    0,
                )
            }
        };
        let (dev_major, dev_minor) = if matches!(kind, Kind::Char | Kind::Block) {
            let major = numeric(&block[329..337], offset, "devmajor field")?;
            let minor = numeric(&block[337..345], offset, "devminor field")?;
            (
                u32::try_from(major).map_err(|_| malformed(offset, "devmajor out of range"))?,
                u32::try_from(minor).map_err(|_| malformed(offset, "devminor out of range"))?,
            )
        } else {
            (0, 0)
        };
        Ok(Entry {
            path,
            link,
            kind,
            mode,
            uid,
            gid,
            size,
            mtime_sec,
            mtime_nsec,
            dev_major,
            dev_minor,
            xattrs: pending.xattrs,
            offset,
        })
    }
}

fn padding_of(size: u64) -> u64 {
    (BLOCK - size % BLOCK) % BLOCK
}

/// `size` rounded up to whole blocks, or an error where that overflows (only reachable for
/// sizes [`check_size`] lets through if its limit is ever raised).
fn with_padding(size: u64, offset: u64) -> Result<u64, ApplyError> {
    size.checked_add(padding_of(size))
        .ok_or_else(|| malformed(offset, "entry size overflows when rounded up to a block"))
}

/// Rejects a declared size Go's `archive/tar` would reject (over `i64::MAX`), naming the entry.
fn check_size(
    size: u64,
    block: &[u8; BLOCK as usize],
    pending: &Pending,
    offset: u64,
) -> Result<(), ApplyError> {
    if size <= MAX_ENTRY_SIZE {
        return Ok(());
    }
    let name = match &pending.path {
        Some(p) => show(p),
        None => show(cstr(&block[..100])),
    };
    Err(ApplyError::BadSize {
        path: name,
        offset,
        size,
        limit: MAX_ENTRY_SIZE,
    })
}

/// The bytes of a NUL-terminated header field.
fn cstr(field: &[u8]) -> &[u8] {
    match field.iter().position(|&b| b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// Parses a numeric header field: octal (space/NUL padded) or GNU base-256.
fn numeric(field: &[u8], offset: u64, what: &'static str) -> Result<u64, ApplyError> {
    if let Some(&first) = field.first() {
        if first & 0x80 != 0 {
            if first == 0xff {
                return Err(malformed(offset, "negative base-256 number in header"));
            }
            let mut v: u64 = u64::from(first & 0x7f);
            for &b in &field[1..] {
                v = v
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(b)))
                    .ok_or_else(|| malformed(offset, "base-256 number in header overflows"))?;
            }
            return Ok(v);
        }
    }
    let trimmed = cstr(field);
    let trimmed = trimmed
        .iter()
        .position(|&b| b != b' ')
        .map_or(&trimmed[..0], |start| &trimmed[start..]);
    let end = trimmed
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(0, |last| last + 1);
    let mut v: u64 = 0;
    for &b in &trimmed[..end] {
        if !(b'0'..=b'7').contains(&b) {
            return Err(ApplyError::Malformed {
                offset,
                reason: match what {
                    "size field" => "size field is not octal",
                    "mode field" => "mode field is not octal",
                    "mtime field" => "mtime field is not octal",
                    "checksum field" => "checksum field is not octal",
                    _ => "numeric header field is not octal",
                },
            });
        }
        v = v
            .checked_mul(8)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or_else(|| malformed(offset, "octal number in header overflows"))?;
    }
    Ok(v)
}

fn verify_checksum(block: &[u8; BLOCK as usize], offset: u64) -> Result<(), ApplyError> {
    let stored = numeric(&block[148..156], offset, "checksum field")?;
    let mut unsigned: u64 = 0;
    let mut signed: i64 = 0;
    for (i, &b) in block.iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += u64::from(b);
        signed += i64::from(b as i8);
    }
    // Some historic writers summed signed chars; accept either, as GNU tar and Go do.
    if stored == unsigned || i64::try_from(stored).is_ok_and(|s| s == signed) {
        Ok(())
    } else {
        Err(malformed(offset, "header checksum mismatch"))
    }
}

fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// Parses PAX `mtime`: decimal seconds with an optional fraction (may be negative).
fn parse_pax_time(v: &[u8]) -> Option<(i64, u32)> {
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (secs, frac) = match v.iter().position(|&b| b == b'.') {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    let secs = i64::try_from(parse_decimal(secs)?).ok()?;
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: u32 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |d| u32::from(d - b'0'));
    }
    if neg {
        // -1.5 means 1.5 s before the epoch: (-2 s, 0.5e9 ns).
        if nanos == 0 {
            Some((-secs, 0))
        } else {
            Some((-secs - 1, 1_000_000_000 - nanos))
        }
    } else {
        Some((secs, nanos))
    }
}

/// Parses PAX records (`"<len> <key>=<value>\n"`) into `pending`.
fn parse_pax(mut data: &[u8], pending: &mut Pending, offset: u64) -> Result<(), ApplyError> {
    let bad = || malformed(offset, "malformed PAX record");
    while !data.is_empty() {
        // Some writers pad the record area with NULs.
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let space = data
            .iter()
            .take(21)
            .position(|&b| b == b' ')
            .ok_or_else(bad)?;
        let len = parse_decimal(&data[..space]).ok_or_else(bad)?;
        let len = usize::try_from(len).map_err(|_| bad())?;
        if len < space + 3 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &data[space + 1..len - 1];
        data = &data[len..];
        let eq = record.iter().position(|&b| b == b'=').ok_or_else(bad)?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        if value.contains(&0) && !key.starts_with(b"SCHILY.xattr.") {
            return Err(malformed(offset, "PAX value contains a NUL byte"));
        }
        match key {
            b"path" => pending.path = Some(value.to_vec()),
            b"linkpath" => pending.link = Some(value.to_vec()),
            b"size" => pending.size = Some(parse_decimal(value).ok_or_else(bad)?),
            b"uid" => pending.uid = Some(parse_decimal(value).ok_or_else(bad)?),
            b"gid" => pending.gid = Some(parse_decimal(value).ok_or_else(bad)?),
            b"mtime" => pending.mtime = Some(parse_pax_time(value).ok_or_else(bad)?),
            _ if key.starts_with(b"GNU.sparse.") => pending.sparse = true,
            _ => {
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if name.is_empty() || name.contains(&0) {
                        return Err(malformed(offset, "PAX xattr record has an invalid name"));
                    }
                    pending.xattrs.push((name.to_vec(), value.to_vec()));
                }
                // Other keys (atime, ctime, uname, gname, comment, charset, ...) do not
                // affect the applied tree.
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn octal_and_base256_fields() {
        assert_eq!(
            numeric(b"0000644\0", 0, "mode field").expect("octal"),
            0o644
        );
        assert_eq!(
            numeric(b"  755 \0\0", 0, "mode field").expect("padded"),
            0o755
        );
        assert_eq!(
            numeric(b"\0\0\0\0\0\0\0\0", 0, "mode field").expect("empty"),
            0
        );
        let mut b256 = [0u8; 12];
        b256[0] = 0x80;
        b256[11] = 0x02;
        b256[10] = 0x01;
        assert_eq!(numeric(&b256, 0, "size field").expect("base-256"), 0x102);
        assert!(numeric(b"0000694\0", 0, "mode field").is_err());
        assert!(numeric(&[0xff; 12], 0, "size field").is_err());
    }

    #[test]
    fn pax_times_with_fractions_and_negatives() {
        assert_eq!(parse_pax_time(b"1234"), Some((1234, 0)));
        assert_eq!(parse_pax_time(b"1234.5"), Some((1234, 500_000_000)));
        assert_eq!(parse_pax_time(b"-1.5"), Some((-2, 500_000_000)));
        assert_eq!(parse_pax_time(b"1.x"), None);
    }

    #[test]
    fn pax_records_fold_into_the_next_entry() {
        fn rec(kv: &str) -> String {
            // The length prefix counts itself, the space and the newline.
            let body = kv.len() + 2;
            let mut len = body + body.to_string().len();
            if len.to_string().len() != body.to_string().len() {
                len += 1;
            }
            format!("{len} {kv}\n")
        }
        let data = format!(
            "{}{}",
            rec("path=a/b/c/d"),
            rec("SCHILY.xattr.user.k=value")
        );
        let mut p = Pending::default();
        parse_pax(data.as_bytes(), &mut p, 0).expect("valid records");
        assert_eq!(p.path.as_deref(), Some(&b"a/b/c/d"[..]));
        assert_eq!(p.xattrs, vec![(b"user.k".to_vec(), b"value".to_vec())]);
        assert!(parse_pax(b"99 path=x\n", &mut Pending::default(), 0).is_err());
        assert!(parse_pax(b"5 a=b\n", &mut Pending::default(), 0).is_err());
        assert!(parse_pax(b"x path=y\n", &mut Pending::default(), 0).is_err());
    }
}

//! Shared helpers for the apply tests: a raw tar builder that writes any header bytes (the `tar`
//! crate refuses hostile names), and (re-exported from `rbuild_layers::fuzz::canary`) a sandbox
//! with a canary directory outside the root whose full state (bytes, modes, owners, times, link
//! targets) is fingerprinted before and after.
#![allow(dead_code)]

use std::path::Path;

pub const REG: u8 = b'0';
pub const LINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR: u8 = b'3';
pub const BLOCK_DEV: u8 = b'4';
pub const DIR: u8 = b'5';
pub const FIFO: u8 = b'6';

/// One header as raw field values.
#[derive(Clone, Debug)]
pub struct H {
    pub name: Vec<u8>,
    pub typeflag: u8,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u64,
    pub link: Vec<u8>,
    pub data: Vec<u8>,
    /// Declared size; defaults to `data.len()`.
    pub size: Option<u64>,
    pub dev: (u32, u32),
}

impl H {
    pub fn new(typeflag: u8, name: impl AsRef<[u8]>) -> H {
        H {
            name: name.as_ref().to_vec(),
            typeflag,
            mode: if typeflag == DIR { 0o755 } else { 0o644 },
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            link: Vec::new(),
            data: Vec::new(),
            size: None,
            dev: (0, 0),
        }
    }
    pub fn file(name: impl AsRef<[u8]>, data: impl AsRef<[u8]>) -> H {
        let mut h = H::new(REG, name);
        h.data = data.as_ref().to_vec();
        h
    }
    pub fn dir(name: impl AsRef<[u8]>) -> H {
        H::new(DIR, name)
    }
    pub fn symlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> H {
        let mut h = H::new(SYMLINK, name);
        h.link = target.as_ref().to_vec();
        h.mode = 0o777;
        h
    }
    pub fn hardlink(name: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> H {
        let mut h = H::new(LINK, name);
        h.link = target.as_ref().to_vec();
        h
    }
    pub fn mode(mut self, mode: u32) -> H {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u32, gid: u32) -> H {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, mtime: u64) -> H {
        self.mtime = mtime;
        self
    }
}

fn octal(field: &mut [u8], v: u64) {
    let w = field.len() - 1;
    let s = format!("{:0w$o}", v);
    let bytes = s.as_bytes();
    let start = bytes.len().saturating_sub(w);
    field[..w].copy_from_slice(&bytes[start..]);
    field[w] = 0;
}

/// Builds a 512-byte ustar header with any name bytes (truncated to the field) and a valid
/// checksum.
pub fn header_block(h: &H, size: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    let n = h.name.len().min(100);
    b[..n].copy_from_slice(&h.name[..n]);
    octal(&mut b[100..108], u64::from(h.mode));
    octal(&mut b[108..116], u64::from(h.uid));
    octal(&mut b[116..124], u64::from(h.gid));
    octal(&mut b[124..136], size);
    octal(&mut b[136..148], h.mtime);
    b[156] = h.typeflag;
    let l = h.link.len().min(100);
    b[157..157 + l].copy_from_slice(&h.link[..l]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    octal(&mut b[329..337], u64::from(h.dev.0));
    octal(&mut b[337..345], u64::from(h.dev.1));
    set_checksum(&mut b);
    b
}

pub fn set_checksum(b: &mut [u8; 512]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    let s = format!("{sum:06o}\0 ");
    b[148..156].copy_from_slice(s.as_bytes());
}

/// A tar stream assembled block by block.
#[derive(Default, Clone)]
pub struct RawTar {
    pub buf: Vec<u8>,
}

impl RawTar {
    pub fn new() -> RawTar {
        RawTar::default()
    }

    pub fn block(&mut self, b: &[u8; 512]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    fn pad(&mut self) {
        while self.buf.len() % 512 != 0 {
            self.buf.push(0);
        }
    }

    /// A header (long names go into a PAX record) followed by its data.
    pub fn add(&mut self, h: H) -> &mut Self {
        if h.name.len() > 100 || h.link.len() > 100 {
            let mut recs = Vec::new();
            if h.name.len() > 100 {
                recs.push(("path", h.name.clone()));
            }
            if h.link.len() > 100 {
                recs.push(("linkpath", h.link.clone()));
            }
            let recs: Vec<(&str, &[u8])> = recs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
            self.pax(&recs);
        }
        let size = h.size.unwrap_or(h.data.len() as u64);
        self.buf.extend_from_slice(&header_block(&h, size));
        self.buf.extend_from_slice(&h.data);
        self.pad();
        self
    }

    pub fn all(&mut self, hs: impl IntoIterator<Item = H>) -> &mut Self {
        for h in hs {
            self.add(h);
        }
        self
    }

    /// A PAX extended header with the given records.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (k, v) in records {
            data.extend(pax_record(k, v));
        }
        let mut h = H::new(b'x', "PaxHeaders/x");
        h.data = data;
        self.add(h)
    }

    /// A GNU long-name (`L`) or long-link (`K`) record.
    pub fn gnu_long(&mut self, typeflag: u8, name: &[u8]) -> &mut Self {
        let mut h = H::new(typeflag, "././@LongLink");
        let mut data = name.to_vec();
        data.push(0);
        h.data = data;
        self.add(h)
    }

    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }
}

pub fn pax_record(k: &str, v: &[u8]) -> Vec<u8> {
    let body = k.len() + v.len() + 3; // space, '=', newline
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len += 1;
    }
    let mut r = format!("{len} {k}=").into_bytes();
    r.extend_from_slice(v);
    r.push(b'\n');
    r
}

pub fn tar_of(hs: impl IntoIterator<Item = H>) -> Vec<u8> {
    RawTar::new().all(hs).finish()
}

// The canary sandbox lives in the library so the `tar_apply` fuzz oracle uses the same one.
pub use rbuild_layers::fuzz::canary::Sandbox;

/// The names (recursively, sorted, `/`-joined) under `dir`.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry"))
            .collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            let ft = e.file_type().expect("file type");
            out.push(name.clone());
            if ft.is_dir() {
                walk(&e.path(), &format!("{name}/"), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out);
    out
}

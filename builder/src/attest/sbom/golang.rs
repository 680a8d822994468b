//! Go binaries' build information: the blob Go ≥ 1.18 writes at the start of the
//! `.go.buildinfo` section (Go's `debug/buildinfo`): a 32-byte header (`\xff Go buildinf:`,
//! pointer size, flags), then, with flag 2 (strings inline), the Go version and the module
//! information as varint-length-prefixed strings. The module information is `go version -m`'s
//! text between 16-byte sentinels: `path`, `mod` (the main module), `dep` lines, each optionally
//! followed by a `=>` replacement, and `build` settings.
//!
//! Binaries of Go < 1.18 store pointers into the data segment instead; they are not read (syft
//! reads them; a build today rarely copies such a binary).

use super::package::{purl, Ecosystem, Package};

/// The blob's magic: Go's `buildInfoMagic`.
pub const MAGIC: &[u8] = b"\xff Go buildinf:";
const HEADER: usize = 32;
const FLAG_INLINE: u8 = 0x2;
/// Longest string read out of the blob; anything longer is not build information.
const MAX_STRING: u64 = 1 << 20;

/// A Go module as the binary names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoModule {
    pub path: String,
    pub version: String,
}

/// What a Go binary says about how it was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// `go1.21.0`.
    pub go_version: String,
    /// The main module (`mod` line); `None` for `go build file.go`.
    pub main: Option<GoModule>,
    /// Dependencies, replacements applied.
    pub deps: Vec<GoModule>,
}

/// Parses the blob starting at `data` (at the magic); `None` if it is not a Go ≥ 1.18 one.
pub fn parse(data: &[u8]) -> Option<GoBuildInfo> {
    if data.len() < HEADER || !data.starts_with(MAGIC) || data[15] & FLAG_INLINE == 0 {
        return None;
    }
    let rest = &data[HEADER..];
    let (version, rest) = read_string(rest)?;
    let (modinfo, _) = read_string(rest)?;
    let go_version = std::str::from_utf8(version).ok()?;
    if !go_version.starts_with("go") {
        return None;
    }
    let modinfo = strip_sentinels(modinfo);
    let modinfo = std::str::from_utf8(modinfo).ok()?;
    let (main, deps) = parse_modinfo(modinfo);
    Some(GoBuildInfo {
        go_version: go_version.to_string(),
        main,
        deps,
    })
}

/// A uvarint length, then that many bytes.
fn read_string(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len = 0u64;
    let mut shift = 0;
    let mut i = 0;
    loop {
        let b = *data.get(i)?;
        i += 1;
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    if len > MAX_STRING {
        return None;
    }
    let end = i.checked_add(len as usize)?;
    Some((data.get(i..end)?, &data[end..]))
}

/// Go's `runtime/debug` wraps the module text in 16-byte sentinels, the last preceded by `\n`.
fn strip_sentinels(m: &[u8]) -> &[u8] {
    if m.len() >= 33 && m[m.len() - 17] == b'\n' {
        &m[16..m.len() - 16]
    } else {
        m
    }
}

fn parse_modinfo(text: &str) -> (Option<GoModule>, Vec<GoModule>) {
    let mut main = None;
    let mut deps: Vec<GoModule> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let module = || {
            Some(GoModule {
                path: f.get(1)?.to_string(),
                version: f.get(2).copied().unwrap_or_default().to_string(),
            })
        };
        match f[0] {
            "mod" => main = module(),
            "dep" => deps.extend(module()),
            // A replacement applies to the line just before it.
            "=>" => {
                if let (Some(r), Some(last)) = (module(), deps.last_mut()) {
                    *last = r;
                }
            }
            _ => {}
        }
    }
    (main, deps)
}

/// The packages of a Go binary at `location`, as syft lists them: the main module, each
/// dependency, and the standard library (`stdlib`, version without the `go` prefix in its purl).
pub fn packages(info: &GoBuildInfo, location: &str) -> Vec<Package> {
    let mut out = Vec::new();
    let mut add = |name: &str, version: &str, purl: String| {
        out.push(Package {
            ecosystem: Ecosystem::Go,
            name: name.to_string(),
            version: version.to_string(),
            purl,
            supplier: None,
            license: None,
            location: location.to_string(),
        });
    };
    for m in info.main.iter().chain(&info.deps) {
        let (ns, name) = match m.path.rsplit_once('/') {
            Some((ns, name)) => (Some(ns), name),
            None => (None, m.path.as_str()),
        };
        add(
            &m.path,
            &m.version,
            purl("golang", ns, name, &m.version, &[]),
        );
    }
    let v = info.go_version.trim_start_matches("go");
    add(
        "stdlib",
        &info.go_version,
        purl("golang", None, "stdlib", v, &[]),
    );
    out
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    /// A Go ≥ 1.18 blob with inline strings and the sentinels around the module text.
    pub fn inline_blob(version: &str, modinfo: &str) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(8);
        b.push(FLAG_INLINE);
        b.resize(HEADER, 0);
        varint(version.len(), &mut b);
        b.extend_from_slice(version.as_bytes());
        let m = format!("0123456789abcdef{modinfo}\n0123456789abcdef");
        varint(m.len(), &mut b);
        b.extend_from_slice(m.as_bytes());
        b
    }

    #[test]
    fn parses_modules_with_replacements() {
        let blob = inline_blob(
            "go1.21.5",
            "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
             dep\tgolang.org/x/sys\tv0.15.0\th1:abc=\n\
             dep\tgithub.com/old/dep\tv1.0.0\th1:x=\n=>\tgithub.com/new/dep\tv1.2.0\th1:y=\n\
             build\t-compiler=gc",
        );
        let info = parse(&blob).unwrap();
        assert_eq!(info.go_version, "go1.21.5");
        assert_eq!(info.main.as_ref().unwrap().path, "example.com/app");
        let purls: Vec<String> = packages(&info, "app").into_iter().map(|p| p.purl).collect();
        assert_eq!(
            purls,
            [
                "pkg:golang/example.com/app@(devel)",
                "pkg:golang/golang.org/x/sys@v0.15.0",
                "pkg:golang/github.com/new/dep@v1.2.0",
                "pkg:golang/stdlib@1.21.5",
            ]
        );
    }

    #[test]
    fn refuses_old_format_and_truncation() {
        let mut blob = inline_blob("go1.21.5", "mod\tx\tv1\t");
        assert!(parse(&blob[..blob.len() - 3]).is_none());
        blob[15] = 0;
        assert!(parse(&blob).is_none());
    }
}

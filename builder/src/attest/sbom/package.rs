//! A package found in an image, and its package URL (purl-spec), as syft names them.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The package ecosystems rbuild's scanners know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ecosystem {
    Deb,
    Apk,
    Python,
    Npm,
    Go,
    /// A binary recognised by its contents (busybox), as syft's binary classifier does.
    Binary,
}

impl Ecosystem {
    /// The word in the SPDXID (`SPDXRef-Package-<word>-…`), as syft writes it.
    pub fn spdx_word(self) -> &'static str {
        match self {
            Ecosystem::Deb => "deb",
            Ecosystem::Apk => "apk",
            Ecosystem::Python => "python",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "go-module",
            Ecosystem::Binary => "binary",
        }
    }

    /// What `sourceInfo` says the package was read from (syft's wording).
    pub fn source_info(self) -> &'static str {
        match self {
            Ecosystem::Deb => "acquired package info from DPKG DB",
            Ecosystem::Apk => "acquired package info from APK DB",
            Ecosystem::Python => {
                "acquired package info from installed python package manifest file"
            }
            Ecosystem::Npm => "acquired package info from installed node module manifest file",
            Ecosystem::Go => "acquired package info from go module information",
            Ecosystem::Binary => "acquired package info from the following paths",
        }
    }
}

/// One package of the final filesystem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: String,
    pub purl: String,
    /// SPDX supplier (`Person: NAME <EMAIL>` or `Organization: NAME`), when the database names one.
    pub supplier: Option<String>,
    /// The license as the package database declares it.
    pub license: Option<String>,
    /// The path (in the image, no leading `/`) the package was read from.
    pub location: String,
}

/// Characters a purl keeps as they are in a path segment (type, namespace, name, version):
/// RFC 3986 unreserved plus the sub-delimiters and `:` (packageurl-go escapes as Go's
/// `url.PathEscape`), so `2.36-9+deb12u4` and `localhost:5000` stay readable.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'+')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b';')
    .remove(b':');

/// Characters a qualifier value keeps as they are (Go's `url.QueryEscape`, `%20` for a space).
const QUALIFIER: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A package URL: `pkg:TYPE/NAMESPACE/NAME@VERSION?QUALIFIERS`. `namespace` may have several
/// `/`-separated segments (Go modules); empty qualifier values are left out, the others keep
/// the order given.
pub fn purl(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut out = format!("pkg:{ty}/");
    if let Some(ns) = namespace.filter(|n| !n.is_empty()) {
        for seg in ns.split('/').filter(|s| !s.is_empty()) {
            out.push_str(&utf8_percent_encode(seg, SEGMENT).to_string());
            out.push('/');
        }
    }
    out.push_str(&utf8_percent_encode(name, SEGMENT).to_string());
    if !version.is_empty() {
        out.push('@');
        out.push_str(&utf8_percent_encode(version, SEGMENT).to_string());
    }
    let mut sep = '?';
    for (k, v) in qualifiers.iter().filter(|(_, v)| !v.is_empty()) {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&utf8_percent_encode(v, QUALIFIER).to_string());
        sep = '&';
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_escape_as_packageurl_go() {
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "libc6",
                "2.36-9+deb12u4",
                &[
                    ("arch", "amd64"),
                    ("upstream", "glibc"),
                    ("distro", "debian-12")
                ]
            ),
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&upstream=glibc&distro=debian-12"
        );
        assert_eq!(
            purl("npm", Some("@types"), "node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
        assert_eq!(
            purl("golang", Some("github.com/a/b"), "c", "v1.0.0", &[]),
            "pkg:golang/github.com/a/b/c@v1.0.0"
        );
        assert_eq!(
            purl(
                "docker",
                Some("localhost:5000/team"),
                "app",
                "v1",
                &[("platform", "linux/amd64"), ("empty", "")]
            ),
            "pkg:docker/localhost:5000/team/app@v1?platform=linux%2Famd64"
        );
        assert_eq!(
            purl(
                "deb",
                Some("debian"),
                "gcc",
                "1",
                &[("upstream", "gcc-12@12.2.0 x")]
            ),
            "pkg:deb/debian/gcc@1?upstream=gcc-12%4012.2.0%20x"
        );
    }
}

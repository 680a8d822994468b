//! Debian packages: dpkg's `var/lib/dpkg/status` (and distroless images' `status.d/` files),
//! RFC 822-style paragraphs; a package is listed when its `Status` says `installed` (files of
//! `status.d/` have no `Status`: each is an installed package).

use super::osrelease::OsRelease;
use super::package::{purl, Ecosystem, Package};

/// The packages of one status file at `location`.
pub fn packages(text: &str, location: &str, os: &OsRelease) -> Vec<Package> {
    let namespace = os.id.clone().unwrap_or_else(|| "debian".into());
    let distro = os.distro();
    paragraphs(text)
        .into_iter()
        .filter_map(|p| {
            let get = |k: &str| {
                p.iter()
                    .find(|(f, _)| f.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.as_str())
            };
            if let Some(status) = get("Status") {
                if status.split_whitespace().nth(2) != Some("installed") {
                    return None;
                }
            }
            let name = get("Package")?.to_string();
            let version = get("Version")?.to_string();
            let arch = get("Architecture").unwrap_or_default();
            let upstream = get("Source").map(upstream).unwrap_or_default();
            let purl = purl(
                "deb",
                Some(&namespace),
                &name,
                &version,
                &[("arch", arch), ("upstream", &upstream), ("distro", &distro)],
            );
            Some(Package {
                ecosystem: Ecosystem::Deb,
                supplier: get("Maintainer").map(person),
                license: None,
                location: location.to_string(),
                name,
                version,
                purl,
            })
        })
        .collect()
}

/// `Source: glibc (2.36-9)` → `glibc@2.36-9`; `Source: glibc` → `glibc` (syft's `upstream`).
fn upstream(source: &str) -> String {
    match source.split_once('(') {
        Some((name, rest)) => format!("{}@{}", name.trim(), rest.trim_end_matches(')').trim()),
        None => source.trim().to_string(),
    }
}

/// `Name <email>` → SPDX's `Person: Name (email)`.
pub fn person(who: &str) -> String {
    match who.split_once('<') {
        Some((name, email)) => format!(
            "Person: {} ({})",
            name.trim(),
            email.trim_end_matches('>').trim()
        ),
        None => format!("Person: {}", who.trim()),
    }
}

/// Paragraphs of `Field: value` lines; continuation lines (leading space) are appended.
pub fn paragraphs(text: &str) -> Vec<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut cur: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = cur.last_mut() {
                v.push('\n');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            cur.push((k.to_string(), v.trim().to_string()));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_installed_packages_only() {
        let text = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\n\
                    Source: glibc (2.36-9)\nVersion: 2.36-9+deb12u4\n\
                    Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>\n\
                    Description: x\n continued\n\n\
                    Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n";
        let os = OsRelease {
            id: Some("debian".into()),
            version_id: Some("12".into()),
        };
        let p = packages(text, "var/lib/dpkg/status", &os);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].purl,
            "pkg:deb/debian/libc6@2.36-9+deb12u4?arch=amd64&upstream=glibc%402.36-9&distro=debian-12"
        );
        assert_eq!(
            p[0].supplier.as_deref(),
            Some("Person: GNU Libc Maintainers (debian-glibc@lists.debian.org)")
        );
    }
}

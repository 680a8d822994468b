//! Alpine packages: apk's installed database `lib/apk/db/installed`, paragraphs of one-letter
//! fields (`P` name, `V` version, `A` arch, `L` license, `o` origin, `m` maintainer).

use super::dpkg::person;
use super::osrelease::OsRelease;
use super::package::{purl, Ecosystem, Package};

pub fn packages(text: &str, location: &str, os: &OsRelease) -> Vec<Package> {
    let namespace = os.id.clone().unwrap_or_else(|| "alpine".into());
    let distro = os.distro();
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let get = |k: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(k).and_then(|l| l.strip_prefix(':')))
        };
        let (Some(name), Some(version)) = (get("P"), get("V")) else {
            continue;
        };
        let purl = purl(
            "apk",
            Some(&namespace),
            name,
            version,
            &[
                ("arch", get("A").unwrap_or_default()),
                ("upstream", get("o").unwrap_or_default()),
                ("distro", &distro),
            ],
        );
        out.push(Package {
            ecosystem: Ecosystem::Apk,
            name: name.to_string(),
            version: version.to_string(),
            purl,
            supplier: get("m").map(person),
            license: get("L").map(str::to_string),
            location: location.to_string(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paragraphs() {
        let text = "C:Q1abc=\nP:busybox\nV:1.36.1-r15\nA:x86_64\nL:GPL-2.0-only\no:busybox\n\
                    m:Sören Tempel <soeren+alpine@soeren-tempel.net>\n\nP:musl\nV:1.2.4-r2\nA:x86_64\n";
        let os = OsRelease {
            id: Some("alpine".into()),
            version_id: Some("3.19.0".into()),
        };
        let p = packages(text, "lib/apk/db/installed", &os);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[0].purl,
            "pkg:apk/alpine/busybox@1.36.1-r15?arch=x86_64&upstream=busybox&distro=alpine-3.19.0"
        );
        assert_eq!(p[0].license.as_deref(), Some("GPL-2.0-only"));
        assert_eq!(
            p[1].purl,
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.0"
        );
    }
}

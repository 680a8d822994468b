//! Python packages: an installed distribution's `NAME.dist-info/METADATA` (core metadata,
//! e-mail-style headers up to the first blank line).

use super::package::{purl, Ecosystem, Package};

pub fn package(text: &str, location: &str) -> Option<Package> {
    let mut name = None;
    let mut version = None;
    let mut license = None;
    let mut author = None;
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        match k {
            "Name" => name = Some(v.to_string()),
            "Version" => version = Some(v.to_string()),
            "License-Expression" => license = Some(v.to_string()),
            "License" if license.is_none() && !v.is_empty() && v != "UNKNOWN" => {
                license = Some(v.to_string())
            }
            "Author-email" if author.is_none() => author = Some(v.to_string()),
            "Author" if !v.is_empty() => author = Some(v.to_string()),
            _ => {}
        }
    }
    let (name, version) = (name?, version?);
    // purl-spec: PyPI names are lower case, with `-` for `_`.
    let purl_name = name.to_lowercase().replace('_', "-");
    Some(Package {
        ecosystem: Ecosystem::Python,
        purl: purl("pypi", None, &purl_name, &version, &[]),
        supplier: author.map(|a| super::dpkg::person(&a)),
        license,
        location: location.to_string(),
        name,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_only() {
        let p = package(
            "Metadata-Version: 2.1\nName: Typing_Extensions\nVersion: 4.9.0\nLicense: PSF\n\nName: body\n",
            "x.dist-info/METADATA",
        )
        .unwrap();
        assert_eq!(p.name, "Typing_Extensions");
        assert_eq!(p.purl, "pkg:pypi/typing-extensions@4.9.0");
        assert_eq!(p.license.as_deref(), Some("PSF"));
        assert!(package("Name: x\n", "m").is_none());
    }
}

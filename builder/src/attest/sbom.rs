//! The SBOM of an image: the packages of its final filesystem, found by rbuild's own scanners
//! (no external tool), written as SPDX 2.3 JSON in the shape BuildKit's default scanner
//! (syft, through buildkit-syft-scanner) gives it: a document root package for the image,
//! `DESCRIBES` it, and it `CONTAINS` each package; each package with its purl as a
//! `PACKAGE-MANAGER` external reference.
//!
//! The scanners: Debian `dpkg` status (and distroless `status.d`), Alpine's `apk` database,
//! Python `*.dist-info/METADATA`, npm `package-lock.json` and `node_modules/*/package.json`, Go
//! binaries' build information, busybox's version string. The layers are streamed once each
//! (`walk`); only package databases are kept in memory, bounded.
//!
//! Deterministic: packages sorted, SPDXIDs derived from content, `created` the image's own
//! creation time, the namespace a hash of the rest; the same image gives the same bytes.

mod apk;
mod binary;
mod dpkg;
mod golang;
mod npm;
mod osrelease;
mod package;
mod python;
pub mod walk;

use std::collections::BTreeMap;
use std::io::Read;

use rbuild_layers::image::Image;
use rbuild_layers::{decompressor, Digest, Store};
use serde_json::{json, Value};

pub use package::{purl, Ecosystem, Package};
pub use walk::Tree;

use super::AttestError;
use binary::BinaryInfo;
use osrelease::OsRelease;
use walk::{FileKind, Found};

/// The in-toto predicate type of an SPDX document.
pub const PREDICATE_TYPE: &str = "https://spdx.dev/Document";

/// Reads the layers of `image` from `store`, bottom first, into the scanners' tree.
pub fn scan_image(store: &Store, image: &Image) -> Result<Tree, AttestError> {
    let mut tree = Tree::default();
    for layer in &image.manifest.layers {
        let compression =
            layer
                .media_type
                .layer_compression()
                .ok_or_else(|| AttestError::NotALayer {
                    digest: layer.digest.clone(),
                    media_type: layer.media_type.as_str().to_string(),
                })?;
        let read_err = |source| AttestError::ReadLayer {
            digest: layer.digest.clone(),
            source,
        };
        let blob = store
            .open_blob(&layer.digest)
            .map_err(|e| read_err(std::io::Error::other(e)))?;
        let r: Box<dyn Read + Send> = decompressor(compression, blob).map_err(read_err)?;
        tree.add_layer(r).map_err(read_err)?;
    }
    Ok(tree)
}

/// The packages of a scanned tree, sorted and without duplicates (the same purl found twice,
/// e.g. in a lock file and in `node_modules`, is listed once, at its first location).
pub fn packages(tree: &Tree) -> Vec<Package> {
    let os = os_release(tree);
    let mut out = Vec::new();
    for (path, found) in &tree.files {
        match found {
            Found::Text(kind, bytes) => {
                let text = String::from_utf8_lossy(bytes);
                match kind {
                    FileKind::OsRelease => {}
                    FileKind::DpkgStatus => out.extend(dpkg::packages(&text, path, &os)),
                    FileKind::ApkInstalled => out.extend(apk::packages(&text, path, &os)),
                    FileKind::PythonMetadata => out.extend(python::package(&text, path)),
                    FileKind::NpmLock => out.extend(npm::from_lock(bytes, path)),
                    FileKind::NpmPackageJson => out.extend(npm::from_package_json(bytes, path)),
                }
            }
            Found::Binary(BinaryInfo::Go(info)) => out.extend(golang::packages(info, path)),
            Found::Binary(BinaryInfo::Busybox(version)) => out.push(Package {
                ecosystem: Ecosystem::Binary,
                name: "busybox".into(),
                version: version.clone(),
                purl: package::purl("generic", None, "busybox", version, &[]),
                supplier: None,
                license: None,
                location: path.clone(),
            }),
        }
    }
    out.sort_by(|a, b| {
        (a.ecosystem, &a.name, &a.version, &a.purl, &a.location).cmp(&(
            b.ecosystem,
            &b.name,
            &b.version,
            &b.purl,
            &b.location,
        ))
    });
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|p| seen.insert(p.purl.clone()));
    out
}

/// `etc/os-release`, else `usr/lib/os-release` (where `etc/os-release` is often a symlink to).
fn os_release(tree: &Tree) -> OsRelease {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .find_map(|p| match tree.files.get(*p) {
            Some(Found::Text(FileKind::OsRelease, b)) => {
                Some(OsRelease::parse(&String::from_utf8_lossy(b)))
            }
            _ => None,
        })
        .unwrap_or_default()
}

/// What the document says about where it came from.
#[derive(Debug, Clone)]
pub struct DocumentInfo<'a> {
    /// The image's name (its first tag), or a placeholder for an untagged build.
    pub name: &'a str,
    /// RFC 3339; the image's creation time, so that the document is reproducible.
    pub created: &'a str,
    /// `Tool: rbuild-VERSION`.
    pub creator: &'a str,
}

/// The SPDX 2.3 document listing `packages`.
pub fn spdx_document(packages: &[Package], info: &DocumentInfo<'_>) -> Value {
    let root_id = format!("SPDXRef-DocumentRoot-Image-{}", spdx_safe(info.name));
    let mut spdx_packages = vec![json!({
        "name": info.name,
        "SPDXID": root_id,
        "supplier": "NOASSERTION",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relatedSpdxElement": root_id,
        "relationshipType": "DESCRIBES",
    })];
    for p in packages {
        let id = package_id(p);
        let license = p.license.as_deref().unwrap_or("NOASSERTION");
        spdx_packages.push(json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "supplier": p.supplier.as_deref().unwrap_or("NOASSERTION"),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "sourceInfo": format!("{}: /{}", p.ecosystem.source_info(), p.location),
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": license,
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": p.purl,
            }],
        }));
        relationships.push(json!({
            "spdxElementId": root_id,
            "relatedSpdxElement": id,
            "relationshipType": "CONTAINS",
        }));
    }
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": info.name,
        "creationInfo": {
            "created": info.created,
            "creators": [info.creator],
        },
        "packages": spdx_packages,
        "relationships": relationships,
    });
    // The namespace must be unique per document: derived from everything else, so the same
    // image gives the same document.
    let body = serde_json::to_vec(&doc).unwrap_or_default();
    let hash = Digest::sha256_of(&body);
    doc["documentNamespace"] = json!(format!(
        "https://spdx.org/spdxdocs/rbuild/{}-{}",
        spdx_safe(info.name),
        hash.hex()
    ));
    doc
}

/// `SPDXRef-Package-<ecosystem>-<name>-<16 hex of the purl's sha256>`: unique, and stable.
fn package_id(p: &Package) -> String {
    let h = Digest::sha256_of(format!("{}\n{}", p.purl, p.location).as_bytes());
    format!(
        "SPDXRef-Package-{}-{}-{}",
        p.ecosystem.spdx_word(),
        spdx_safe(&p.name),
        &h.hex()[..16]
    )
}

/// SPDX identifiers allow letters, digits, `.` and `-` only.
fn spdx_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// How many packages each ecosystem contributed (for progress output and tests).
pub fn counts(packages: &[Package]) -> BTreeMap<Ecosystem, usize> {
    let mut m = BTreeMap::new();
    for p in packages {
        *m.entry(p.ecosystem).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests;

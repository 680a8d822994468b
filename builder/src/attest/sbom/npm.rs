//! npm packages: an installed module's `node_modules/NAME/package.json`, and a project's
//! `package-lock.json` (lockfile v2/v3 `packages`, v1 `dependencies`).

use serde_json::Value;

use super::package::{purl, Ecosystem, Package};

fn npm_package(name: &str, version: &str, license: Option<String>, location: &str) -> Package {
    let (ns, base) = match name.split_once('/') {
        Some((scope, base)) if scope.starts_with('@') => (Some(scope), base),
        _ => (None, name),
    };
    Package {
        ecosystem: Ecosystem::Npm,
        name: name.to_string(),
        version: version.to_string(),
        purl: purl("npm", ns, base, version, &[]),
        supplier: None,
        license,
        location: location.to_string(),
    }
}

fn license_of(v: &Value) -> Option<String> {
    match v.get("license")? {
        Value::String(s) => Some(s.clone()),
        other => other.get("type")?.as_str().map(str::to_string),
    }
}

/// An installed module's manifest.
pub fn from_package_json(bytes: &[u8], location: &str) -> Option<Package> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let name = v.get("name")?.as_str()?;
    let version = v.get("version")?.as_str()?;
    Some(npm_package(name, version, license_of(&v), location))
}

/// The packages a lock file pins (not the project itself).
pub fn from_lock(bytes: &[u8], location: &str) -> Vec<Package> {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(pkgs) = v.get("packages").and_then(Value::as_object) {
        for (key, p) in pkgs {
            if key.is_empty() || p.get("link").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .or_else(|| key.rsplit_once("node_modules/").map(|(_, n)| n));
            if let (Some(name), Some(version)) = (name, p.get("version").and_then(Value::as_str)) {
                out.push(npm_package(name, version, license_of(p), location));
            }
        }
    } else if let Some(deps) = v.get("dependencies") {
        v1_deps(deps, location, &mut out, 0);
    }
    out
}

fn v1_deps(deps: &Value, location: &str, out: &mut Vec<Package>, depth: usize) {
    let Some(deps) = deps.as_object() else {
        return;
    };
    // serde_json's own recursion limit bounds the document; this bounds the walk the same way.
    if depth > 128 {
        return;
    }
    for (name, d) in deps {
        if let Some(version) = d.get("version").and_then(Value::as_str) {
            out.push(npm_package(name, version, None, location));
        }
        if let Some(inner) = d.get("dependencies") {
            v1_deps(inner, location, out, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_v3_and_v1() {
        let v3 = br#"{"lockfileVersion":3,"packages":{"":{"name":"app","version":"1.0.0"},
            "node_modules/@types/node":{"version":"20.1.0","license":"MIT"},
            "node_modules/a/node_modules/b":{"version":"2.0.0"},
            "node_modules/linked":{"link":true}}}"#;
        let purls: Vec<String> = from_lock(v3, "app/package-lock.json")
            .into_iter()
            .map(|p| p.purl)
            .collect();
        assert_eq!(purls, ["pkg:npm/%40types/node@20.1.0", "pkg:npm/b@2.0.0"]);
        let v1 = br#"{"lockfileVersion":1,"dependencies":{"x":{"version":"1.0.0","dependencies":{"y":{"version":"0.1.0"}}}}}"#;
        assert_eq!(from_lock(v1, "l").len(), 2);
        assert!(from_lock(b"not json", "l").is_empty());
    }

    #[test]
    fn package_json_license_forms() {
        let p = from_package_json(
            br#"{"name":"left-pad","version":"1.3.0","license":{"type":"WTFPL"}}"#,
            "node_modules/left-pad/package.json",
        )
        .unwrap();
        assert_eq!(p.license.as_deref(), Some("WTFPL"));
        assert_eq!(p.purl, "pkg:npm/left-pad@1.3.0");
    }
}

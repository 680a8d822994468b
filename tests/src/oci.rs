//! Reading an OCI image layout written by rbuild with plain JSON (serde_json), independently of
//! rbuild's own types: index.json → manifest → config, following the image-spec's layout rules.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Parses a JSON file, panicking with its path on failure.
pub fn read_json(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The path of a blob (`sha256:<hex>`) in a layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (alg, hex) = digest
        .split_once(':')
        .unwrap_or_else(|| panic!("bad digest {digest}"));
    layout.join("blobs").join(alg).join(hex)
}

/// A JSON blob of a layout.
pub fn blob_json(layout: &Path, digest: &str) -> Value {
    read_json(&blob_path(layout, digest))
}

/// The layout's index.json.
pub fn index(layout: &Path) -> Value {
    read_json(&layout.join("index.json"))
}

/// The `org.opencontainers.image.ref.name` of every manifest in index.json, in order.
pub fn ref_names(layout: &Path) -> Vec<String> {
    index(layout)["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

/// The manifest digest that index.json names `reference`.
pub fn manifest_digest(layout: &Path, reference: &str) -> String {
    let idx = index(layout);
    let m = idx["manifests"]
        .as_array()
        .expect("index.json has manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .unwrap_or_else(|| panic!("no manifest named {reference} in {idx}"));
    m["digest"].as_str().expect("digest").to_string()
}

/// The image manifest named `reference`.
pub fn manifest(layout: &Path, reference: &str) -> Value {
    blob_json(layout, &manifest_digest(layout, reference))
}

/// The image config of the manifest named `reference`.
pub fn read_config(layout: &Path, reference: &str) -> Value {
    let m = manifest(layout, reference);
    blob_json(
        layout,
        m["config"]["digest"].as_str().expect("config digest"),
    )
}

/// `config.Env` as `(name, value)` pairs.
pub fn env(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| {
                    let (k, v) = s.split_once('=').unwrap_or((s, ""));
                    (k.to_string(), v.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one variable in `config.Env`.
pub fn env_var(config: &Value, name: &str) -> Option<String> {
    env(config)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

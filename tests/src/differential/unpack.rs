//! Flattening an OCI image layout with an independent client: `umoci raw unpack` (run as root,
//! so that owners, device nodes and extended attributes are applied as the layers say).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The tag of the first manifest in `layout`'s index.json (its `ref.name` annotation).
pub fn first_ref_name(layout: &Path) -> Result<String, String> {
    let p = layout.join("index.json");
    let text = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let idx: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    idx["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{}: the first manifest has no ref.name", p.display()))
}

/// Unpacks `layout:tag` into `dest` (which must not exist).
pub fn unpack(layout: &Path, tag: &str, dest: &Path) -> Result<(), String> {
    let out = Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(dest)
        .output()
        .map_err(|e| format!("umoci: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "umoci raw unpack {}:{tag}: {}",
            layout.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The config document of the manifest tagged `tag` in `layout`.
pub fn config(layout: &Path, tag: &str) -> Result<Value, String> {
    let read = |digest: &str| -> Result<Value, String> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or(format!("bad digest {digest}"))?;
        let p = layout.join("blobs/sha256").join(hex);
        let text = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let p = layout.join("index.json");
    let text = std::fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
    let idx: Value = serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", p.display()))?;
    let m = idx["manifests"]
        .as_array()
        .and_then(|ms| {
            ms.iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        })
        .ok_or_else(|| format!("{}: no manifest tagged {tag}", p.display()))?;
    let manifest = read(m["digest"].as_str().unwrap_or_default())?;
    read(manifest["config"]["digest"].as_str().unwrap_or_default())
}

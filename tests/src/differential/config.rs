//! The part of an image config that the corpus compares: what a container started from the image
//! sees (`Env`, `Cmd`, `Entrypoint`, `WorkingDir`, `User`, `ExposedPorts`, `Volumes`, `Labels`,
//! `StopSignal`, `Shell`, `Healthcheck`, `OnBuild`) and the platform (`os`, `architecture`).
//!
//! Read from Docker's own config (out of `docker save`, since converting to OCI would drop the
//! Docker-only fields) and from rbuild's OCI config. A null, an absent field, an empty string and
//! an empty object mean the same to a runtime and are treated alike; an empty array is kept.

use std::collections::BTreeMap;

use serde_json::Value;

/// The labels rbuild documents that it adds to every image (README, "Reproducible by default"),
/// which BuildKit does not: left out of the comparison. The tag-derived
/// `org.opencontainers.image.version` / `.ref.name` are not exempt: the tag must not change the
/// image (issue 13).
pub const RBUILD_DOCUMENTED_LABELS: &[&str] = &[
    "org.opencontainers.image.created",
    "org.opencontainers.image.revision",
    "org.opencontainers.image.source",
    "org.opencontainers.image.base.name",
    "org.opencontainers.image.base.digest",
];

const CONTAINER_FIELDS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "ExposedPorts",
    "Volumes",
    "Labels",
    "StopSignal",
    "Shell",
    "Healthcheck",
    "OnBuild",
];

/// The compared fields of an image config document, normalised.
pub fn compared(config: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for field in CONTAINER_FIELDS {
        let mut v = config["config"][field].clone();
        if *field == "Labels" {
            if let Some(labels) = v.as_object_mut() {
                for l in RBUILD_DOCUMENTED_LABELS {
                    labels.remove(*l);
                }
            }
        }
        put(&mut out, field, v);
    }
    for field in ["os", "architecture"] {
        put(&mut out, field, config[field].clone());
    }
    out
}

fn put(out: &mut BTreeMap<String, Value>, field: &str, v: Value) {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    };
    if !empty {
        out.insert(field.to_string(), v);
    }
}

/// Readable differences between two compared configs (`expected` is BuildKit's).
pub fn differences(
    expected: &BTreeMap<String, Value>,
    actual: &BTreeMap<String, Value>,
) -> Vec<String> {
    let mut keys: Vec<&String> = expected.keys().chain(actual.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| expected.get(*k) != actual.get(*k))
        .map(|k| {
            format!(
                "config {k}: BuildKit {} | rbuild {}",
                show(expected.get(k)),
                show(actual.get(k))
            )
        })
        .collect()
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(unset)".to_string(), Value::to_string)
}

//! `--cache-to` / `--cache-from` specifications, validated as BuildKit spells them.

use std::path::PathBuf;

use rbuild_layers::Compression;
use rbuild_registry::Reference;

use super::csv::{key_values, CsvError};

pub use crate::remote_cache::spec::{
    CacheExportSpec, CacheExportTarget, CacheImportSource, CacheImportSpec, CacheMode,
};

/// Why a cache specification is not valid.
#[derive(Debug, thiserror::Error)]
pub enum CacheSpecError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("{flag} {input:?}: unknown type {kind:?} (use type=registry, type=local{inline})")]
    UnknownType {
        flag: &'static str,
        input: String,
        kind: String,
        inline: &'static str,
    },
    #[error("{flag} type={kind} does not take {key:?} (allowed: {allowed})")]
    UnknownKey {
        flag: &'static str,
        kind: String,
        key: String,
        allowed: &'static str,
    },
    #[error("{flag} type={kind} needs {key}=")]
    Missing {
        flag: &'static str,
        kind: String,
        key: &'static str,
    },
    #[error("{flag}: {key}={value:?} is not valid: {reason}")]
    BadValue {
        flag: &'static str,
        key: String,
        value: String,
        reason: String,
    },
    #[error("{flag}: invalid ref: {source}")]
    Reference {
        flag: &'static str,
        #[source]
        source: rbuild_registry::ReferenceError,
    },
}

fn parse_ref(flag: &'static str, s: &str) -> Result<Reference, CacheSpecError> {
    s.parse()
        .map_err(|source| CacheSpecError::Reference { flag, source })
}

/// A cache id must be a plain name: it becomes a directory in the store and a registry path.
/// (buildah CVE-2024-9675 let `id=../..` escape the cache directory.)
pub fn validate_cache_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !id.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "cache id {id:?} must be letters, digits, '.', '_', '-' and '/'-separated names without '..'"
        ))
    }
}

/// Reads a spec's `type=` and returns it (lower-cased) with the other `key=value` pairs, each
/// checked against the keys `allowed_keys` gives for that type (`None`: an unknown type).
fn typed_pairs(
    flag: &'static str,
    input: &str,
    inline: &'static str,
    allowed_keys: impl Fn(&str) -> Option<&'static str>,
) -> Result<(String, Vec<(String, String)>), CacheSpecError> {
    let pairs = key_values(input)?;
    let kind = pairs
        .iter()
        .find(|(k, _)| k == "type")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    let Some(allowed) = allowed_keys(&kind) else {
        return Err(CacheSpecError::UnknownType {
            flag,
            input: input.to_string(),
            kind,
            inline,
        });
    };
    let mut rest = Vec::with_capacity(pairs.len());
    for (key, value) in pairs {
        if key == "type" {
            continue;
        }
        if !allowed.split(", ").any(|a| a == key) {
            return Err(CacheSpecError::UnknownKey {
                flag,
                kind,
                key,
                allowed,
            });
        }
        rest.push((key, value));
    }
    Ok((kind, rest))
}

impl CacheExportSpec {
    pub fn parse(input: &str) -> Result<Self, CacheSpecError> {
        const FLAG: &str = "--cache-to";
        // A plain image reference (no '=') means type=registry,ref=<it>, as in buildx.
        if !input.is_empty() && !input.contains('=') {
            return Self::parse(&format!("type=registry,ref={input}"));
        }
        let (kind, pairs) = typed_pairs(FLAG, input, " or type=inline", |kind| {
            match kind {
            "registry" => Some(
                "ref, mode, compression, compression-level, ignore-error, cache-mounts, oci-mediatypes, image-manifest",
            ),
            "local" => Some("dest, mode, compression, compression-level, ignore-error, cache-mounts"),
            "inline" => Some("ignore-error"),
            _ => None,
        }
        })?;
        let mut spec = CacheExportSpec {
            target: CacheExportTarget::Inline,
            mode: CacheMode::Min,
            compression: Compression::Gzip,
            compression_level: None,
            ignore_error: false,
            cache_mounts: Vec::new(),
        };
        let mut reference = None;
        let mut dest = None;
        for (key, value) in pairs {
            let bad = |reason: String| CacheSpecError::BadValue {
                flag: FLAG,
                key: key.clone(),
                value: value.clone(),
                reason,
            };
            match key.as_str() {
                "ref" => reference = Some(parse_ref(FLAG, &value)?),
                "dest" => dest = Some(PathBuf::from(&value)),
                "mode" => {
                    spec.mode = match value.as_str() {
                        "min" => CacheMode::Min,
                        "max" => CacheMode::Max,
                        _ => return Err(bad("expected min or max".into())),
                    }
                }
                "compression" => spec.compression = value.parse().map_err(bad)?,
                "compression-level" => {
                    spec.compression_level =
                        Some(value.parse().map_err(|_| bad("expected a number".into()))?)
                }
                "ignore-error" => {
                    spec.ignore_error = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad("expected true or false".into())),
                    }
                }
                "cache-mounts" => {
                    for id in value.split([',', ';']).filter(|s| !s.is_empty()) {
                        validate_cache_id(id).map_err(&bad)?;
                        spec.cache_mounts.push(id.to_string());
                    }
                }
                // Accepted for compatibility: rbuild's registry cache is always an OCI image
                // manifest (never an index), which is what these ask BuildKit for.
                "oci-mediatypes" | "image-manifest" => {}
                _ => {}
            }
        }
        spec.target = match kind.as_str() {
            "registry" => {
                CacheExportTarget::Registry(reference.ok_or(CacheSpecError::Missing {
                    flag: FLAG,
                    kind: kind.clone(),
                    key: "ref",
                })?)
            }
            "local" => CacheExportTarget::Local(dest.ok_or(CacheSpecError::Missing {
                flag: FLAG,
                kind: kind.clone(),
                key: "dest",
            })?),
            _ => CacheExportTarget::Inline,
        };
        Ok(spec)
    }
}

impl CacheImportSpec {
    pub fn parse(input: &str) -> Result<Self, CacheSpecError> {
        const FLAG: &str = "--cache-from";
        // A plain image reference (no '=') means type=registry,ref=<it>, as in buildx.
        if !input.contains('=') {
            return Ok(CacheImportSpec {
                source: CacheImportSource::Registry(parse_ref(FLAG, input)?),
            });
        }
        let (kind, pairs) = typed_pairs(FLAG, input, "", |kind| match kind {
            "registry" => Some("ref"),
            "local" => Some("src, digest, tag"),
            _ => None,
        })?;
        let mut reference = None;
        let mut src = None;
        for (key, value) in pairs {
            match key.as_str() {
                "ref" => reference = Some(parse_ref(FLAG, &value)?),
                "src" => src = Some(PathBuf::from(value)),
                _ => {}
            }
        }
        let source = if kind == "registry" {
            CacheImportSource::Registry(reference.ok_or(CacheSpecError::Missing {
                flag: FLAG,
                kind: kind.clone(),
                key: "ref",
            })?)
        } else {
            CacheImportSource::Local(src.ok_or(CacheSpecError::Missing {
                flag: FLAG,
                kind: kind.clone(),
                key: "src",
            })?)
        };
        Ok(CacheImportSpec { source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_to_registry_max() {
        let s = CacheExportSpec::parse(
            "type=registry,ref=127.0.0.1:5000/app:cache,mode=max,\"cache-mounts=pip,npm\"",
        )
        .unwrap();
        assert_eq!(s.mode, CacheMode::Max);
        assert_eq!(s.cache_mounts, vec!["pip", "npm"]);
        assert!(matches!(s.target, CacheExportTarget::Registry(_)));
    }

    #[test]
    fn cache_to_a_bare_reference_is_a_registry_cache_as_in_buildx() {
        let s = CacheExportSpec::parse("127.0.0.1:5000/app:buildcache").unwrap();
        assert_eq!(s.mode, CacheMode::Min);
        assert_eq!(
            s.target,
            CacheExportSpec::parse("type=registry,ref=127.0.0.1:5000/app:buildcache")
                .unwrap()
                .target
        );
        assert!(CacheExportSpec::parse("").is_err());
        assert!(CacheExportSpec::parse("Not A Reference").is_err());
    }

    #[test]
    fn cache_to_local_and_inline() {
        let s = CacheExportSpec::parse("type=local,dest=/tmp/c").unwrap();
        assert_eq!(s.target, CacheExportTarget::Local("/tmp/c".into()));
        assert_eq!(s.mode, CacheMode::Min);
        assert_eq!(
            CacheExportSpec::parse("type=inline").unwrap().target,
            CacheExportTarget::Inline
        );
        assert!(CacheExportSpec::parse("type=inline,mode=max").is_err());
        assert!(CacheExportSpec::parse("type=local").is_err());
        assert!(CacheExportSpec::parse("type=gha").is_err());
    }

    #[test]
    fn cache_mount_ids_cannot_traverse_cve_2024_9675() {
        for bad in ["../..", "a/../b", "/abs", "", "a//b", "a b"] {
            assert!(validate_cache_id(bad).is_err(), "{bad:?}");
        }
        assert!(CacheExportSpec::parse("type=local,dest=d,cache-mounts=../x").is_err());
        validate_cache_id("pip-cache/v1").unwrap();
    }

    #[test]
    fn cache_from_forms() {
        assert!(matches!(
            CacheImportSpec::parse("127.0.0.1:5000/app:cache")
                .unwrap()
                .source,
            CacheImportSource::Registry(_)
        ));
        assert_eq!(
            CacheImportSpec::parse("type=local,src=/c").unwrap().source,
            CacheImportSource::Local("/c".into())
        );
        assert!(CacheImportSpec::parse("type=registry").is_err());
        assert!(CacheImportSpec::parse("type=local,src=/c,mode=max").is_err());
    }
}

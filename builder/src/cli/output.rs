//! `--output` specifications, validated (`type=oci|docker|registry|local,dest=…,…`).
//!
//! Spelling and meaning follow BuildKit/buildx: for `type=oci` and `type=docker`, `dest` is a
//! tarball (`-`: standard output) unless `tar=false` asks for an OCI layout directory, as
//! `docker buildx build` writes them. (rbuild once guessed from the name, a directory unless it
//! ended in `.tar`: the same command line wrote something else than buildx.)

use std::path::PathBuf;

use rbuild_layers::Compression;
use rbuild_registry::Reference;

use super::csv::{key_values, CsvError};

pub use crate::export::spec::{Destination, OutputKind, OutputSpec};

/// Why an `--output` value is not valid.
#[derive(Debug, thiserror::Error)]
pub enum OutputSpecError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("--output {0:?} has no type=: use type=oci, docker, registry or local")]
    MissingType(String),
    #[error("--output type={0:?} is not supported: use type=oci, docker, registry or local")]
    UnknownType(String),
    #[error("--output type={kind} does not take {key:?} (allowed: {allowed})")]
    UnknownKey {
        kind: String,
        key: String,
        allowed: &'static str,
    },
    #[error("--output type={0} needs dest=PATH")]
    MissingDest(String),
    #[error("--output type={kind}: {key}={value:?} is not valid: {reason}")]
    BadValue {
        kind: String,
        key: String,
        value: String,
        reason: String,
    },
    #[error("--output: invalid name: {0}")]
    Name(#[from] rbuild_registry::ReferenceError),
    #[error("--output type=image needs push=true here (rbuild has no image store to load into); use type=oci or type=docker for local files")]
    ImageWithoutPush,
}

fn parse_bool(kind: &str, key: &str, value: &str) -> Result<bool, OutputSpecError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(OutputSpecError::BadValue {
            kind: kind.to_string(),
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

impl std::str::FromStr for OutputSpec {
    type Err = OutputSpecError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let pairs = key_values(input)?;
        let kind = pairs
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.to_ascii_lowercase())
            .ok_or_else(|| OutputSpecError::MissingType(input.to_string()))?;
        let allowed: &'static str = match kind.as_str() {
            "oci" | "docker" => {
                "dest, tar, name, compression, compression-level, force-compression, oci-mediatypes"
            }
            "registry" | "image" => {
                "name, push, push-by-digest, registry.insecure, compression, compression-level, force-compression, oci-mediatypes"
            }
            "local" => "dest",
            _ => return Err(OutputSpecError::UnknownType(kind)),
        };
        let mut dest = None;
        let mut tar = None;
        let mut names = Vec::new();
        let mut spec = OutputSpec {
            kind: OutputKind::Local(PathBuf::new()),
            names: Vec::new(),
            compression: Compression::Gzip,
            compression_level: None,
            force_compression: false,
            oci_media_types: kind != "docker",
        };
        let mut push = kind == "registry";
        let mut push_by_digest = false;
        let mut insecure = false;
        for (key, value) in &pairs {
            let allowed_here = key == "type" || allowed.split(", ").any(|a| a == key);
            if !allowed_here {
                return Err(OutputSpecError::UnknownKey {
                    kind: kind.clone(),
                    key: key.clone(),
                    allowed,
                });
            }
            let bad = |reason: String| OutputSpecError::BadValue {
                kind: kind.clone(),
                key: key.clone(),
                value: value.clone(),
                reason,
            };
            match key.as_str() {
                "type" => {}
                "dest" => dest = Some(value.clone()),
                "tar" => tar = Some(parse_bool(&kind, key, value)?),
                "name" => {
                    for n in value.split(',').filter(|n| !n.is_empty()) {
                        names.push(n.parse::<Reference>()?);
                    }
                }
                "compression" => spec.compression = value.parse().map_err(bad)?,
                "compression-level" => {
                    let level: i32 = value
                        .parse()
                        .map_err(|_| bad("expected a whole number".into()))?;
                    spec.compression_level = Some(level);
                }
                "force-compression" => spec.force_compression = parse_bool(&kind, key, value)?,
                "oci-mediatypes" => spec.oci_media_types = parse_bool(&kind, key, value)?,
                "push" => push = parse_bool(&kind, key, value)?,
                "push-by-digest" => push_by_digest = parse_bool(&kind, key, value)?,
                "registry.insecure" => insecure = parse_bool(&kind, key, value)?,
                _ => {}
            }
        }
        if let Some(level) = spec.compression_level {
            let range = match spec.compression {
                Compression::Gzip => 0..=9,
                Compression::Zstd => -7..=22,
                Compression::None => 0..=0,
            };
            if !range.contains(&level) {
                return Err(OutputSpecError::BadValue {
                    kind,
                    key: "compression-level".into(),
                    value: level.to_string(),
                    reason: format!(
                        "must be within {}..={} for {:?}",
                        range.start(),
                        range.end(),
                        spec.compression
                    ),
                });
            }
        }
        spec.names = names;
        spec.kind = match kind.as_str() {
            "oci" | "docker" => {
                let dest = dest.ok_or_else(|| OutputSpecError::MissingDest(kind.clone()))?;
                let destination = if dest == "-" {
                    Destination::Stdout
                } else if tar.unwrap_or(true) {
                    Destination::Tarball(PathBuf::from(dest))
                } else {
                    Destination::Directory(PathBuf::from(dest))
                };
                if kind == "oci" {
                    OutputKind::Oci(destination)
                } else {
                    OutputKind::Docker(destination)
                }
            }
            "local" => {
                let dest = dest.ok_or_else(|| OutputSpecError::MissingDest(kind.clone()))?;
                if dest == "-" {
                    return Err(OutputSpecError::BadValue {
                        kind,
                        key: "dest".into(),
                        value: dest,
                        reason: "type=local writes a directory; use type=oci,dest=- for a stream"
                            .into(),
                    });
                }
                OutputKind::Local(PathBuf::from(dest))
            }
            _ => {
                if !push {
                    return Err(OutputSpecError::ImageWithoutPush);
                }
                OutputKind::Registry {
                    push_by_digest,
                    insecure,
                }
            }
        };
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> OutputSpec {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn oci_dest_is_a_tarball_unless_tar_false_as_in_buildx() {
        assert_eq!(
            parse("type=oci,dest=out").kind,
            OutputKind::Oci(Destination::Tarball("out".into()))
        );
        assert_eq!(
            parse("type=oci,dest=out,tar=false").kind,
            OutputKind::Oci(Destination::Directory("out".into()))
        );
        assert_eq!(
            parse("type=docker,dest=image").kind,
            OutputKind::Docker(Destination::Tarball("image".into()))
        );
        assert_eq!(
            parse("type=oci,dest=out.tar").kind,
            OutputKind::Oci(Destination::Tarball("out.tar".into()))
        );
        assert_eq!(
            parse("type=oci,dest=out,tar=true").kind,
            OutputKind::Oci(Destination::Tarball("out".into()))
        );
        assert_eq!(
            parse("type=docker,dest=-").kind,
            OutputKind::Docker(Destination::Stdout)
        );
        assert!(!parse("type=docker,dest=x.tar").oci_media_types);
    }

    #[test]
    fn compression_options_as_buildkit_spells_them() {
        let s =
            parse("type=oci,dest=o,compression=zstd,compression-level=19,force-compression=true");
        assert_eq!(s.compression, Compression::Zstd);
        assert_eq!(s.compression_level, Some(19));
        assert!(s.force_compression);
        assert!("type=oci,dest=o,compression=gzip,compression-level=12"
            .parse::<OutputSpec>()
            .is_err());
        assert!("type=oci,dest=o,compression=brotli"
            .parse::<OutputSpec>()
            .is_err());
    }

    #[test]
    fn registry_outputs() {
        let s = parse(
            "type=registry,\"name=127.0.0.1:5000/a:1,127.0.0.1:5000/a:2\",push-by-digest=true",
        );
        assert_eq!(
            s.kind,
            OutputKind::Registry {
                push_by_digest: true,
                insecure: false
            }
        );
        assert_eq!(s.names.len(), 2);
        assert_eq!(
            parse("type=image,name=localhost/x,push=true").kind,
            OutputKind::Registry {
                push_by_digest: false,
                insecure: false
            }
        );
        assert_eq!(
            parse("type=image,name=reg.example/x,push=true,registry.insecure=true").kind,
            OutputKind::Registry {
                push_by_digest: false,
                insecure: true
            }
        );
        assert!(matches!(
            "type=oci,dest=x,registry.insecure=true".parse::<OutputSpec>(),
            Err(OutputSpecError::UnknownKey { .. })
        ));
        assert!(matches!(
            "type=registry,name=r/x,registry.insecure=maybe".parse::<OutputSpec>(),
            Err(OutputSpecError::BadValue { .. })
        ));
        assert!(matches!(
            "type=image,name=localhost/x".parse::<OutputSpec>(),
            Err(OutputSpecError::ImageWithoutPush)
        ));
    }

    #[test]
    fn rejects_unknown_types_keys_and_missing_dest() {
        assert!(matches!(
            "type=tarball,dest=x".parse::<OutputSpec>(),
            Err(OutputSpecError::UnknownType(_))
        ));
        assert!(matches!(
            "type=local,dest=x,compression=zstd".parse::<OutputSpec>(),
            Err(OutputSpecError::UnknownKey { .. })
        ));
        assert!(matches!(
            "type=oci".parse::<OutputSpec>(),
            Err(OutputSpecError::MissingDest(_))
        ));
        assert!(matches!(
            "dest=x".parse::<OutputSpec>(),
            Err(OutputSpecError::MissingType(_))
        ));
    }
}

//! `--output` specifications, validated (`type=oci|docker|registry|image|local|tar,dest=…,…`).
//!
//! buildx's shorthands (`util/buildflags/export.go`): a value that is one CSV field, not quoted
//! and not starting with `type=` is a destination: `-o PATH` means `type=local,dest=PATH` and
//! `-o -` means `type=tar,dest=-`. `type=tar` and `type=oci` without `dest=` write to standard
//! output (buildx's `CreateExports`).
//!
//! Spelling and meaning follow BuildKit/buildx: for `type=oci` and `type=docker`, `dest` is a
//! tarball (`-`: standard output) unless `tar=false` asks for an OCI layout directory, as
//! `docker buildx build` writes them. (rbuild once guessed from the name, a directory unless it
//! ended in `.tar`: the same command line wrote something else than buildx.)

use std::path::PathBuf;

use rbuild_layers::Compression;
use rbuild_registry::Reference;

use super::csv::{key_values, split_fields, CsvError};

pub use crate::export::spec::{Destination, OutputKind, OutputSpec};

/// Why an `--output` value is not valid.
#[derive(Debug, thiserror::Error)]
pub enum OutputSpecError {
    #[error(transparent)]
    Csv(#[from] CsvError),
    #[error("--output {0:?} has no type=: use type=oci, docker, registry, image, local or tar (or -o DIR for type=local, -o - for a tar on standard output)")]
    MissingType(String),
    #[error(
        "--output type={0:?} is not supported: use type=oci, docker, registry, image, local or tar"
    )]
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
        if let Some(kind) = shorthand(input)? {
            return Ok(OutputSpec {
                kind,
                names: Vec::new(),
                compression: Compression::Gzip,
                compression_level: None,
                force_compression: false,
                oci_media_types: None,
                oci_artifact: None,
            });
        }
        let pairs = key_values(input)?;
        let kind = pairs
            .iter()
            .find(|(k, _)| k == "type")
            .map(|(_, v)| v.to_ascii_lowercase())
            .ok_or_else(|| OutputSpecError::MissingType(input.to_string()))?;
        let allowed: &'static str = match kind.as_str() {
            "oci" | "docker" => {
                "dest, tar, name, compression, compression-level, force-compression, oci-mediatypes, oci-artifact"
            }
            "registry" | "image" => {
                "name, push, push-by-digest, name-canonical, registry.insecure, compression, compression-level, force-compression, oci-mediatypes, oci-artifact"
            }
            "local" | "tar" => "dest",
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
            oci_media_types: None,
            oci_artifact: None,
        };
        let mut push = kind == "registry";
        let mut push_by_digest = false;
        let mut name_canonical = false;
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
                "oci-mediatypes" => spec.oci_media_types = Some(parse_bool(&kind, key, value)?),
                "oci-artifact" => spec.oci_artifact = Some(parse_bool(&kind, key, value)?),
                "push" => push = parse_bool(&kind, key, value)?,
                "push-by-digest" => push_by_digest = parse_bool(&kind, key, value)?,
                "name-canonical" => name_canonical = parse_bool(&kind, key, value)?,
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
                // buildx: a tarball without dest= goes to standard output, except docker's,
                // which is loaded into the Docker Engine (`--load`).
                let dest = match dest {
                    Some(d) => d,
                    None if kind == "oci" && tar.unwrap_or(true) => "-".to_string(),
                    None if kind == "docker" && tar.unwrap_or(true) => String::new(),
                    None => return Err(OutputSpecError::MissingDest(kind.clone())),
                };
                let destination = if dest.is_empty() {
                    Destination::Engine
                } else if dest == "-" {
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
                        reason: "type=local writes a directory; use type=tar,dest=- (or -o -) for a tar of it on standard output"
                            .into(),
                    });
                }
                OutputKind::Local(PathBuf::from(dest))
            }
            "tar" => match dest.as_deref() {
                None | Some("-") => OutputKind::Tar(Destination::Stdout),
                Some(d) => OutputKind::Tar(Destination::Tarball(PathBuf::from(d))),
            },
            _ => {
                if !push {
                    return Err(OutputSpecError::ImageWithoutPush);
                }
                OutputKind::Registry {
                    push_by_digest,
                    insecure,
                    name_canonical,
                }
            }
        };
        Ok(spec)
    }
}

/// buildx's shorthand: one unquoted CSV field not starting with `type=` is a destination.
fn shorthand(input: &str) -> Result<Option<OutputKind>, OutputSpecError> {
    let fields = split_fields(input)?;
    if fields.len() != 1 || fields[0] != input || input.starts_with("type=") {
        return Ok(None);
    }
    Ok(Some(if input == "-" {
        OutputKind::Tar(Destination::Stdout)
    } else {
        OutputKind::Local(PathBuf::from(input))
    }))
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
        assert_eq!(parse("type=docker,dest=x.tar").oci_media_types, None);
        assert_eq!(
            parse("type=registry,name=r.example/a:1,oci-mediatypes=false").oci_media_types,
            Some(false)
        );
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
                insecure: false,
                name_canonical: false
            }
        );
        assert_eq!(s.names.len(), 2);
        assert_eq!(
            parse("type=image,name=localhost/x,push=true").kind,
            OutputKind::Registry {
                push_by_digest: false,
                insecure: false,
                name_canonical: false
            }
        );
        assert_eq!(
            parse("type=image,name=reg.example/x,push=true,registry.insecure=true").kind,
            OutputKind::Registry {
                push_by_digest: false,
                insecure: true,
                name_canonical: false
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
    fn shorthands_as_buildx_reads_them() {
        assert_eq!(parse("out").kind, OutputKind::Local("out".into()));
        assert_eq!(parse("./a/b").kind, OutputKind::Local("./a/b".into()));
        // Not starting with type=: a directory name, even with '=' in it (as buildx).
        assert_eq!(parse("dest=x").kind, OutputKind::Local("dest=x".into()));
        assert_eq!(parse("-").kind, OutputKind::Tar(Destination::Stdout));
        // Two fields, or a quoted one, are key=value lists.
        assert!(matches!(
            "a,b".parse::<OutputSpec>(),
            Err(OutputSpecError::Csv(_))
        ));
        assert!(matches!(
            "\"out\"".parse::<OutputSpec>(),
            Err(OutputSpecError::Csv(_))
        ));
    }

    #[test]
    fn tar_outputs_and_stdout_defaults() {
        assert_eq!(
            parse("type=tar,dest=fs.tar").kind,
            OutputKind::Tar(Destination::Tarball("fs.tar".into()))
        );
        assert_eq!(
            parse("type=tar,dest=-").kind,
            OutputKind::Tar(Destination::Stdout)
        );
        assert_eq!(parse("type=tar").kind, OutputKind::Tar(Destination::Stdout));
        assert_eq!(parse("type=oci").kind, OutputKind::Oci(Destination::Stdout));
        assert!(parse("type=tar").kind.is_stdout());
        assert!(!parse("type=tar,dest=x").kind.is_stdout());
        assert!(matches!(
            "type=tar,dest=x,compression=zstd".parse::<OutputSpec>(),
            Err(OutputSpecError::UnknownKey { .. })
        ));
        assert!(matches!(
            "type=oci,tar=false".parse::<OutputSpec>(),
            Err(OutputSpecError::MissingDest(_))
        ));
        // buildx: type=docker without dest= loads into the Docker Engine (`--load`).
        assert_eq!(
            parse("type=docker").kind,
            OutputKind::Docker(Destination::Engine)
        );
        assert!(matches!(
            "type=docker,tar=false".parse::<OutputSpec>(),
            Err(OutputSpecError::MissingDest(_))
        ));
    }

    #[test]
    fn several_names_repeated_or_in_one_quoted_field() {
        let repeated = parse("type=image,name=localhost/a:1,name=localhost/b:2,push=true");
        let quoted = parse("type=image,\"name=localhost/a:1,localhost/b:2\",push=true");
        assert_eq!(repeated.names.len(), 2);
        assert_eq!(repeated.names, quoted.names);
        assert_eq!(repeated.names[1].to_string(), "localhost/b:2");
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
            "type=local".parse::<OutputSpec>(),
            Err(OutputSpecError::MissingDest(_))
        ));
        assert!(matches!(
            "dest=x,tar=false".parse::<OutputSpec>(),
            Err(OutputSpecError::MissingType(_))
        ));
    }
}

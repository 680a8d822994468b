//! `--annotation [TYPE[,TYPE…]:]KEY=VALUE`, read as buildx reads it
//! (`util/buildflags/export.go`, `ParseAnnotations`), then resolved for this build's one
//! platform by BuildKit's exporter rules (`exporter/containerimage/annotations.go`,
//! `exptypes/annotations.go`, `writer.go`):
//!
//! - the flag is cut at the first `=` (the value may hold `=` and `:`), the key part at the
//!   first `:`; without a `:` the whole key part is the key and the level is the manifest
//!   (buildx sends an untyped `annotation.KEY`, which BuildKit reads as `manifest`);
//! - each comma-separated type is `manifest`, `manifest-descriptor`, `index` or
//!   `index-descriptor`, with an optional `[os/arch[/variant]]` platform;
//! - a manifest or manifest-descriptor annotation qualified with another platform than the
//!   build's applies to nothing (BuildKit applies a qualified annotation to the manifests of
//!   that platform only, `AnnotationsGroup.Platform`, and with a single platform accepts any
//!   qualifier, `Result.FindRef`); one qualified with the build's platform applies, as it does
//!   to that platform's manifest of a BuildKit multi-platform build (`writer.go` resolves each
//!   platform's manifest with `Platform(&p.Platform)`). BuildKit's single-platform export
//!   (no `multi-platform` frontend option) resolves with `Platform(nil)` and so drops even a
//!   qualifier naming the build's own platform; rbuild, which has no multi-platform mode to
//!   switch to, keeps it, so a per-platform build gives the manifest BuildKit gives that
//!   platform in a multi-platform build;
//! - `index`/`index-descriptor` are refused when an image is written: rbuild builds one
//!   platform and writes no image index, and BuildKit refuses them for a single-platform
//!   export ("index annotations not supported for single platform export", `writer.go`);
//! - the key must be non-empty with no white space: BuildKit's exporter takes `\S+` keys only
//!   and would drop another one without a word;
//! - a later flag of the same level and key wins; an empty flag is skipped, as in buildx.

use rbuild_layers::Platform;

use crate::export::annotation::UserAnnotations;
use crate::graph::platform::parse_platform;

/// Where an annotation goes (buildx's `TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Manifest,
    ManifestDescriptor,
    Index,
    IndexDescriptor,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        match s {
            "manifest" => Some(Level::Manifest),
            "manifest-descriptor" => Some(Level::ManifestDescriptor),
            "index" => Some(Level::Index),
            "index-descriptor" => Some(Level::IndexDescriptor),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Manifest => "manifest",
            Level::ManifestDescriptor => "manifest-descriptor",
            Level::Index => "index",
            Level::IndexDescriptor => "index-descriptor",
        }
    }
}

/// One `--annotation` at one level (a flag with several types gives one per type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    /// The flag as given, for messages.
    pub flag: String,
    pub level: Level,
    /// The `[os/arch]` qualifier, normalised.
    pub platform: Option<Platform>,
    pub key: String,
    pub value: String,
}

const HINT: &str = "use --annotation [TYPE:]KEY=VALUE, TYPE one of manifest (the default), manifest-descriptor, index, index-descriptor (comma-separated for several, each with an optional [os/arch]), e.g. --annotation manifest:org.opencontainers.image.title=app";

/// A bad `--annotation` (a usage error).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnnotationError {
    #[error("invalid --annotation {0:?}: expected KEY=VALUE; {HINT}")]
    NoValue(String),
    #[error("invalid --annotation {flag:?}: {typ:?} is not a type with an optional platform in square brackets; {HINT}")]
    BadType { flag: String, typ: String },
    #[error("invalid --annotation {flag:?}: unknown annotation type {typ:?}; {HINT}")]
    UnknownType { flag: String, typ: String },
    #[error("invalid --annotation {flag:?}: invalid platform {platform:?}: {why}")]
    BadPlatform {
        flag: String,
        platform: String,
        why: String,
    },
    #[error("invalid --annotation {0:?}: the key is empty or holds white space (BuildKit would drop it); {HINT}")]
    BadKey(String),
    #[error("--annotation {flag:?}: {level} annotations not supported for single platform export: a build for one platform writes no image index (BuildKit refuses them too); use manifest: or manifest-descriptor:, build for several platforms (--platform linux/amd64,linux/arm64), or drop the flag")]
    IndexLevel { flag: String, level: &'static str },
}

/// Parses one `--annotation` (empty: none).
pub fn parse(flag: &str) -> Result<Vec<Annotation>, AnnotationError> {
    if flag.is_empty() {
        return Ok(Vec::new());
    }
    let (k, value) = flag
        .split_once('=')
        .ok_or_else(|| AnnotationError::NoValue(flag.to_string()))?;
    let (types, key) = match k.split_once(':') {
        Some((types, key)) => (Some(types), key),
        None => (None, k),
    };
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err(AnnotationError::BadKey(flag.to_string()));
    }
    let one = |level, platform| Annotation {
        flag: flag.to_string(),
        level,
        platform,
        key: key.to_string(),
        value: value.to_string(),
    };
    let Some(types) = types else {
        return Ok(vec![one(Level::Manifest, None)]);
    };
    types
        .split(',')
        .map(|t| {
            let (level, platform) = parse_type(flag, t)?;
            Ok(one(level, platform))
        })
        .collect()
}

/// `TYPE` or `TYPE[PLATFORM]` (buildx: `^([a-z-]+)(?:\[([A-Za-z0-9_/-]+)\])?$`).
fn parse_type(flag: &str, t: &str) -> Result<(Level, Option<Platform>), AnnotationError> {
    let bad = || AnnotationError::BadType {
        flag: flag.to_string(),
        typ: t.to_string(),
    };
    let (name, platform) = match t.split_once('[') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(']').ok_or_else(bad)?)),
        None => (t, None),
    };
    let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    let platform_ok = platform.is_none_or(|p| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-'))
    });
    if !name_ok || !platform_ok {
        return Err(bad());
    }
    let level = Level::parse(name).ok_or_else(|| AnnotationError::UnknownType {
        flag: flag.to_string(),
        typ: name.to_string(),
    })?;
    let platform = platform
        .map(|p| {
            parse_platform(p).map_err(|why| AnnotationError::BadPlatform {
                flag: flag.to_string(),
                platform: p.to_string(),
                why,
            })
        })
        .transpose()?;
    Ok((level, platform))
}

/// The annotations that apply to an image of `platform`, and to the index of a build for
/// several platforms. `writes_index`: whether the build writes an index (several platforms);
/// BuildKit refuses the index levels when it exports a single platform
/// (`exporter/containerimage/writer.go`, "index annotations not supported for single platform
/// export"). `writes_image`: whether the build exports an image at all (annotations mean
/// nothing to `type=local` and `type=tar`, which BuildKit's exporters ignore them for).
pub fn resolve(
    annotations: &[Annotation],
    platform: &Platform,
    writes_image: bool,
    writes_index: bool,
) -> Result<UserAnnotations, AnnotationError> {
    let mut out = UserAnnotations::default();
    for a in annotations {
        let map = match a.level {
            Level::Manifest => &mut out.manifest,
            Level::ManifestDescriptor => &mut out.manifest_descriptor,
            Level::Index | Level::IndexDescriptor if writes_image && !writes_index => {
                return Err(AnnotationError::IndexLevel {
                    flag: a.flag.clone(),
                    level: a.level.name(),
                })
            }
            Level::Index => &mut out.index,
            Level::IndexDescriptor => &mut out.index_descriptor,
        };
        let applies = a.platform.as_ref().is_none_or(|p| {
            p.os == platform.os
                && p.architecture == platform.architecture
                && p.variant == platform.variant
        });
        if applies {
            map.insert(a.key.clone(), a.value.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        parse_platform("linux/amd64").unwrap()
    }

    fn levels(flag: &str) -> Vec<(Level, Option<String>, String, String)> {
        parse(flag)
            .unwrap()
            .into_iter()
            .map(|a| {
                let p = a
                    .platform
                    .as_ref()
                    .map(crate::graph::platform::platform_string);
                (a.level, p, a.key, a.value)
            })
            .collect()
    }

    #[test]
    fn every_level_with_and_without_a_platform() {
        let kv = |l, p: Option<&str>| (l, p.map(String::from), "k".into(), "v".into());
        assert_eq!(levels("k=v"), vec![kv(Level::Manifest, None)]);
        assert_eq!(levels("manifest:k=v"), vec![kv(Level::Manifest, None)]);
        assert_eq!(
            levels("manifest-descriptor:k=v"),
            vec![kv(Level::ManifestDescriptor, None)]
        );
        assert_eq!(levels("index:k=v"), vec![kv(Level::Index, None)]);
        assert_eq!(
            levels("index-descriptor:k=v"),
            vec![kv(Level::IndexDescriptor, None)]
        );
        assert_eq!(
            levels("manifest[linux/amd64]:k=v"),
            vec![kv(Level::Manifest, Some("linux/amd64"))]
        );
        // Normalised as containerd's platforms.Parse does.
        assert_eq!(
            levels("manifest-descriptor[linux/aarch64/v8]:k=v"),
            vec![kv(Level::ManifestDescriptor, Some("linux/arm64"))]
        );
        assert_eq!(
            levels("index,manifest[linux/arm64],manifest-descriptor:k=v"),
            vec![
                kv(Level::Index, None),
                kv(Level::Manifest, Some("linux/arm64")),
                kv(Level::ManifestDescriptor, None)
            ]
        );
    }

    #[test]
    fn the_value_is_everything_after_the_first_equals_sign() {
        assert_eq!(
            levels("manifest:a.b=c=d:e"),
            vec![(Level::Manifest, None, "a.b".into(), "c=d:e".into())]
        );
        assert_eq!(
            levels("org.example.x="),
            vec![(Level::Manifest, None, "org.example.x".into(), "".into())]
        );
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn qualified_annotations_apply_to_their_platform_only_and_later_flags_win() {
        let all: Vec<Annotation> = [
            "a=1",
            "a=2",
            "manifest[linux/amd64]:b=amd",
            "manifest[linux/arm64]:c=arm",
            "manifest-descriptor[linux/x86_64]:d=desc",
            "manifest-descriptor[linux/riscv64]:e=no",
        ]
        .iter()
        .flat_map(|f| parse(f).unwrap())
        .collect();
        let r = resolve(&all, &amd64(), true, false).unwrap();
        let map = |kv: &[(&str, &str)]| {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(r.manifest, map(&[("a", "2"), ("b", "amd")]));
        assert_eq!(r.manifest_descriptor, map(&[("d", "desc")]));
    }

    #[test]
    fn index_levels_are_refused_only_when_an_image_is_written() {
        let a = parse("index,manifest:k=v").unwrap();
        let e = resolve(&a, &amd64(), true, false).unwrap_err();
        assert!(matches!(
            e,
            AnnotationError::IndexLevel { level: "index", .. }
        ));
        let r = resolve(&a, &amd64(), false, false).unwrap();
        assert_eq!(r.manifest.len(), 1);
        let a = parse("index-descriptor[linux/arm64]:k=v").unwrap();
        assert!(resolve(&a, &amd64(), true, false).is_err());
    }

    #[test]
    fn a_build_for_several_platforms_takes_the_index_levels() {
        let a: Vec<Annotation> = [
            "index:i=1",
            "index-descriptor:d=2",
            "manifest[linux/arm64]:m=3",
        ]
        .iter()
        .flat_map(|f| parse(f).unwrap())
        .collect();
        let r = resolve(&a, &amd64(), true, true).unwrap();
        assert_eq!(r.index.get("i").map(String::as_str), Some("1"));
        assert_eq!(r.index_descriptor.get("d").map(String::as_str), Some("2"));
        assert!(r.manifest.is_empty(), "the arm64 one is not amd64's");
    }

    /// The words of every `--annotation` usage error, as users see them after `error: `.
    #[test]
    fn annotation_usage_errors_golden() {
        let mut m: Vec<String> = [
            "novalue",
            "manifest:=v",
            "manifest:a b=v",
            "=v",
            "Manifest:k=v",
            ":k=v",
            "manifest[linux/amd64:k=v",
            "manifest[linux/*]:k=v",
            "layer:k=v",
            "manifest,bogus:k=v",
            "manifest[linux]:k=v",
        ]
        .iter()
        .map(|f| parse(f).unwrap_err().to_string())
        .collect();
        for f in ["index:k=v", "manifest,index-descriptor:k=v"] {
            let a = parse(f).unwrap();
            m.push(resolve(&a, &amd64(), true, false).unwrap_err().to_string());
        }
        insta::assert_snapshot!(m.join("\n"));
    }
}

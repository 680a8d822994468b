//! Named contexts (`--build-context NAME=VALUE`, as `docker buildx build`): an image that
//! stands in wherever the Dockerfile names NAME — `FROM NAME`, `COPY --from=NAME`, a stage
//! `AS NAME` (which is then not built: buildx's reference, "when Dockerfile defines a stage with
//! the same name it is overwritten").
//!
//! NAME is matched as BuildKit's frontend matches it (`dockerui` `NamedContext`): the reference
//! the Dockerfile writes, in its familiar form without `:latest` — `FROM docker.io/library/alpine`
//! and `FROM alpine:latest` both find `--build-context alpine=…`.
//!
//! Values: `docker-image://REF` and `oci-layout://DIR[:TAG]` (what `FROM oci-layout://` reads).
//! A local directory, a git or HTTP URL as a named context is refused, not yet built.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use rbuild_registry::Reference;

use super::{Base, BuildPlan};

/// Why a `--build-context` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamedContextError {
    #[error("invalid --build-context {0:?}: write NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]")]
    Form(String),
    #[error("--build-context {name}={value}: a local directory, git or HTTP URL as a named context is not supported yet; give an image: docker-image://REF or oci-layout://DIR[:TAG]")]
    Unsupported { name: String, value: String },
    #[error("--build-context {name}: invalid image reference {reference:?}: {reason}")]
    Reference {
        name: String,
        reference: String,
        reason: String,
    },
    #[error("--build-context {0} is given twice")]
    Duplicate(String),
}

/// The named contexts of a build: key (familiar name) → the image reference that replaces it,
/// as `FROM` takes one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedContexts(BTreeMap<String, String>);

/// BuildKit's key for a name: its familiar reference without `:latest`; a name that is no
/// reference is kept as written (lower-cased, as stage names are).
fn key(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let Ok(r) = lower.parse::<Reference>() else {
        return lower;
    };
    let mut repo = r.repository().to_string();
    let registry = r.registry();
    let familiar = if registry == "docker.io" {
        if let Some(short) = repo.strip_prefix("library/") {
            repo = short.to_string();
        }
        repo
    } else {
        format!("{registry}/{repo}")
    };
    let mut out = familiar;
    if let Some(t) = r.tag().filter(|t| *t != "latest") {
        out = format!("{out}:{t}");
    }
    if let Some(d) = r.digest() {
        out = format!("{out}@{d}");
    }
    out
}

impl NamedContexts {
    /// Parses the `--build-context` values; `cwd` makes an `oci-layout://` path absolute.
    pub fn parse(values: &[String], cwd: &Path) -> Result<NamedContexts, NamedContextError> {
        let mut map = BTreeMap::new();
        for v in values {
            let (name, value) = v
                .split_once('=')
                .filter(|(n, val)| !n.is_empty() && !val.is_empty())
                .ok_or_else(|| NamedContextError::Form(v.clone()))?;
            let image = if let Some(r) = value.strip_prefix("docker-image://") {
                r.parse::<Reference>()
                    .map_err(|e| NamedContextError::Reference {
                        name: name.to_string(),
                        reference: r.to_string(),
                        reason: e.to_string(),
                    })?;
                r.to_string()
            } else if let Some(p) = value.strip_prefix("oci-layout://") {
                let p = Path::new(p);
                let abs = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    cwd.join(p)
                };
                format!("oci-layout://{}", abs.display())
            } else {
                return Err(NamedContextError::Unsupported {
                    name: name.to_string(),
                    value: value.to_string(),
                });
            };
            if map.insert(key(name), image).is_some() {
                return Err(NamedContextError::Duplicate(name.to_string()));
            }
        }
        Ok(NamedContexts(map))
    }

    /// The image that stands in for `name`, if a named context has it.
    pub fn image_for(&self, name: &str) -> Option<&str> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&key(name)).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl BuildPlan {
    /// Puts the named contexts in: a stage they name is no longer built and every reference to
    /// it reads the image instead; a `FROM` or `COPY --from` image they name is replaced.
    pub fn apply_named_contexts(&mut self, named: &NamedContexts) {
        if named.is_empty() {
            return;
        }
        let replaced: BTreeMap<usize, String> = self
            .stages
            .iter()
            .filter_map(|s| {
                let image = named.image_for(s.name.as_deref()?)?;
                Some((s.index, image.to_string()))
            })
            .collect();
        for s in &mut self.stages {
            s.base = match std::mem::replace(&mut s.base, Base::Scratch) {
                Base::Stage(i) => match replaced.get(&i) {
                    Some(image) => Base::Image(image.clone()),
                    None => Base::Stage(i),
                },
                Base::Image(n) => Base::Image(named.image_for(&n).unwrap_or(&n).to_string()),
                Base::Scratch => Base::Scratch,
            };
            let reads = std::mem::take(&mut s.reads);
            for i in reads {
                match replaced.get(&i) {
                    Some(image) => {
                        s.read_images.insert(image.clone());
                    }
                    None => {
                        s.reads.insert(i);
                    }
                }
            }
            s.read_images = std::mem::take(&mut s.read_images)
                .into_iter()
                .map(|n| named.image_for(&n).unwrap_or(&n).to_string())
                .collect();
        }
        // What the targets need now: a replaced stage is built only when it is a target.
        let mut needed = BTreeSet::new();
        let mut todo: Vec<usize> = self.targets.clone();
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                todo.extend(self.stages[i].depends_on());
            }
        }
        self.order = needed.into_iter().collect();
        self.named = named.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_buildkit_matches_them() {
        for (a, b) in [
            ("alpine", "docker.io/library/alpine:latest"),
            ("alpine", "alpine:latest"),
            ("alpine:3.18", "docker.io/library/alpine:3.18"),
            ("build", "Build"),
            ("ghcr.io/o/r", "ghcr.io/o/r:latest"),
        ] {
            assert_eq!(key(a), key(b), "{a} / {b}");
        }
        assert_ne!(key("alpine:3.18"), key("alpine"));
    }

    #[test]
    fn values_are_images_and_the_rest_is_refused() {
        let cwd = Path::new("/work");
        let n = NamedContexts::parse(
            &[
                "alpine=docker-image://localhost/busybox:1".into(),
                "base=oci-layout://layout:v1".into(),
            ],
            cwd,
        )
        .unwrap();
        assert_eq!(n.image_for("alpine:latest"), Some("localhost/busybox:1"));
        assert_eq!(n.image_for("base"), Some("oci-layout:///work/layout:v1"));
        assert_eq!(n.image_for("other"), None);
        for bad in [
            "src=./dir",
            "src=https://example.com/r.git",
            "noequals",
            "=x",
        ] {
            assert!(NamedContexts::parse(&[bad.into()], cwd).is_err(), "{bad}");
        }
        assert!(matches!(
            NamedContexts::parse(
                &["a=docker-image://x".into(), "A=docker-image://y".into()],
                cwd
            ),
            Err(NamedContextError::Duplicate(_))
        ));
    }
}

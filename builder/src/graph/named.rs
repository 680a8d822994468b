//! Named contexts (`--build-context NAME=VALUE`, as `docker buildx build`): an image or a
//! directory that stands in wherever the Dockerfile names NAME — `FROM NAME`, `COPY --from=NAME`,
//! `RUN --mount=from=NAME`, a stage `AS NAME` (which is then not built: buildx's reference, "when
//! Dockerfile defines a stage with the same name it is overwritten").
//!
//! NAME is matched as BuildKit's frontend matches it (`dockerui` `NamedContext`): the reference
//! the Dockerfile writes, in its familiar form without `:latest` — `FROM docker.io/library/alpine`
//! and `FROM alpine:latest` both find `--build-context alpine=…`.
//!
//! Values, read as buildx (`build/opt.go`) and BuildKit (`frontend/dockerui/namedcontext.go`)
//! read them:
//! - `docker-image://REF`, `oci-layout://DIR[:TAG]`: an image (what `FROM` reads);
//! - a git URL (`https://…/r.git#ref:subdir`, `git://…`, `git@host:path`): the checkout, as a
//!   directory (no `.dockerignore` applied, as BuildKit's `llb.Git` state);
//! - any other `http(s)://` URL: a directory holding the download as one file named `context`
//!   (BuildKit's `llb.HTTP(url, llb.Filename("context"))`; never unpacked);
//! - anything else is a local directory (relative to the working directory), filtered by the
//!   `.dockerignore` at its own root (BuildKit reads `DefaultDockerignoreName` there; not
//!   `NAME.dockerignore`). A path that is not there fails as buildx fails it.
//!
//! A directory stands in as `llb.Local` does in BuildKit: `COPY --from`/`RUN --mount from=` read
//! its files; `FROM NAME` builds on them as a root filesystem with the config of an empty image
//! (see `solver::named_dir`). The plan refers to such a context by a marker string,
//! `[context NAME]`, that no image reference can spell (see [`NamedContexts::dir`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use rbuild_registry::Reference;

use super::{Base, BuildPlan};

/// Why a `--build-context` value is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamedContextError {
    #[error("invalid --build-context {0:?}: write NAME=PATH, NAME=URL, NAME=docker-image://REF or NAME=oci-layout://DIR[:TAG]")]
    Form(String),
    #[error("--build-context {name}={value}: failed to get build context {name}: {reason}")]
    Dir {
        name: String,
        value: String,
        reason: String,
    },
    #[error("--build-context {name}: invalid image reference {reference:?}: {reason}")]
    Reference {
        name: String,
        reference: String,
        reason: String,
    },
    #[error("--build-context {0} is given twice")]
    Duplicate(String),
}

/// What a named context is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// An image reference, as `FROM` takes one (`oci-layout://…` included).
    Image(String),
    /// A directory on this machine (absolute); `dockerignore`: whether its own `.dockerignore`
    /// filters it (a local directory's does; a git checkout or a download has none applied).
    Dir { path: PathBuf, dockerignore: bool },
    /// A git URL, to be checked out (then a [`Named::Dir`]; see `cli::named_context`).
    Git(String),
    /// An HTTP(S) URL, to be downloaded (then a [`Named::Dir`]).
    Http(String),
}

/// One `--build-context`: the name as given, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedContext {
    pub name: String,
    pub value: Named,
}

/// The named contexts of a build: key (familiar name) → what replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedContexts(BTreeMap<String, NamedContext>);

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

/// The plan's stand-in for the directory context `name` (see the module docs): brackets and a
/// space, which no image reference has.
fn marker(name: &str) -> String {
    format!("[context {name}]")
}

impl NamedContexts {
    /// Parses the `--build-context` values; `cwd` makes a relative path absolute. A local
    /// directory must exist (buildx stats it before the build).
    pub fn parse(values: &[String], cwd: &Path) -> Result<NamedContexts, NamedContextError> {
        let mut map = BTreeMap::new();
        for v in values {
            let (name, value) = v
                .split_once('=')
                .filter(|(n, val)| !n.is_empty() && !val.is_empty())
                .ok_or_else(|| NamedContextError::Form(v.clone()))?;
            let abs = |p: &Path| {
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    cwd.join(p)
                }
            };
            let named = if let Some(r) = value.strip_prefix("docker-image://") {
                r.parse::<Reference>()
                    .map_err(|e| NamedContextError::Reference {
                        name: name.to_string(),
                        reference: r.to_string(),
                        reason: e.to_string(),
                    })?;
                Named::Image(r.to_string())
            } else if let Some(p) = value.strip_prefix("oci-layout://") {
                Named::Image(format!("oci-layout://{}", abs(Path::new(p)).display()))
            } else if is_git(value) {
                Named::Git(value.to_string())
            } else if value.starts_with("http://") || value.starts_with("https://") {
                Named::Http(value.to_string())
            } else {
                let path = abs(Path::new(value));
                let bad = |reason: String| NamedContextError::Dir {
                    name: name.to_string(),
                    value: value.to_string(),
                    reason,
                };
                // buildx: `os.Stat`, then ENOTDIR for anything but a directory.
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => return Err(bad(format!("{}: not a directory", path.display()))),
                    Err(e) => return Err(bad(format!("stat {}: {e}", path.display()))),
                }
                Named::Dir {
                    path,
                    dockerignore: true,
                }
            };
            let entry = NamedContext {
                name: name.to_string(),
                value: named,
            };
            if map.insert(key(name), entry).is_some() {
                return Err(NamedContextError::Duplicate(name.to_string()));
            }
        }
        Ok(NamedContexts(map))
    }

    /// What stands in for `name` in the plan, if a named context has it: an image reference,
    /// or a directory context's marker (see [`NamedContexts::dir`]).
    pub fn image_for(&self, name: &str) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let c = self.0.get(&key(name))?;
        Some(match &c.value {
            Named::Image(r) => r.clone(),
            Named::Dir { .. } | Named::Git(_) | Named::Http(_) => marker(&c.name),
        })
    }

    /// The directory context a plan's image name stands for (its marker), with whether its
    /// `.dockerignore` applies and the name as given.
    pub fn dir(&self, image: &str) -> Option<(&Path, bool, &str)> {
        let name = image.strip_prefix("[context ")?.strip_suffix(']')?;
        let c = self.0.get(&key(name))?;
        match &c.value {
            Named::Dir { path, dockerignore } => Some((path, *dockerignore, &c.name)),
            _ => None,
        }
    }

    /// Whether a named context put the image `image` in the plan (`NAME=docker-image://REF`
    /// or `NAME=oci-layout://…`).
    pub fn provides_image(&self, image: &str) -> bool {
        self.0
            .values()
            .any(|c| matches!(&c.value, Named::Image(r) if r == image))
    }

    /// The git and HTTP contexts still to fetch: (key, URL).
    pub fn remote(&self) -> Vec<(String, Named)> {
        self.0
            .iter()
            .filter(|(_, c)| matches!(c.value, Named::Git(_) | Named::Http(_)))
            .map(|(k, c)| (k.clone(), c.value.clone()))
            .collect()
    }

    /// Replaces the context of `key` (a fetched git or HTTP one) with its directory.
    pub fn set_dir(&mut self, key: &str, path: PathBuf) {
        if let Some(c) = self.0.get_mut(key) {
            c.value = Named::Dir {
                path,
                dockerignore: false,
            };
        }
    }

    /// The name as given of the context under `key`.
    pub fn name_of(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|c| c.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether a plan's image name is read from this machine, not from a registry: an OCI layout
/// or a directory context's marker.
pub fn is_local_image(name: &str) -> bool {
    name.starts_with("oci-layout://") || name.starts_with("[context ")
}

/// buildx's git URL rule for a named context (`urlutil.IsGitURL`), with BuildKit's `git@`
/// shorthand: `git://`, `git@host:path`, or an `http(s)` URL whose path ends in `.git`.
fn is_git(value: &str) -> bool {
    value.starts_with("git@")
        || (!value.starts_with("ssh://")
            && matches!(
                crate::dockerfile::remote::classify(value),
                Ok(Some(crate::dockerfile::remote::RemoteSource::Git(_)))
            ))
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
                Some((s.index, image))
            })
            .collect();
        for s in &mut self.stages {
            s.base = match std::mem::replace(&mut s.base, Base::Scratch) {
                Base::Stage(i) => match replaced.get(&i) {
                    Some(image) => Base::Image(image.clone()),
                    None => Base::Stage(i),
                },
                Base::Image(n) => Base::Image(named.image_for(&n).unwrap_or(n)),
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
                .map(|n| named.image_for(&n).unwrap_or(n))
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
    fn values_are_images_directories_and_urls_as_buildx_reads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let cwd = tmp.path();
        std::fs::create_dir(cwd.join("dir")).unwrap();
        std::fs::write(cwd.join("file"), "x").unwrap();
        let n = NamedContexts::parse(
            &[
                "alpine=docker-image://localhost/busybox:1".into(),
                "base=oci-layout://layout:v1".into(),
                "src=./dir".into(),
                "Repo=https://example.com/r.git#main:sub".into(),
                "ssh=git@github.com:o/r.git".into(),
                "tgz=https://example.com/ctx.tar.gz".into(),
            ],
            cwd,
        )
        .unwrap();
        assert_eq!(
            n.image_for("alpine:latest").as_deref(),
            Some("localhost/busybox:1")
        );
        let layout = format!("oci-layout://{}/layout:v1", cwd.display());
        assert_eq!(n.image_for("base"), Some(layout));
        assert_eq!(n.image_for("other"), None);
        let marker = n.image_for("src").unwrap();
        assert_eq!(marker, "[context src]");
        assert!(marker.parse::<Reference>().is_err(), "no image is named so");
        assert_eq!(
            n.dir(&marker),
            Some((cwd.join("dir").as_path(), true, "src"))
        );
        assert_eq!(n.image_for("repo").as_deref(), Some("[context Repo]"));
        let remote: Vec<Named> = n.remote().into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            remote,
            vec![
                Named::Git("https://example.com/r.git#main:sub".into()),
                Named::Git("git@github.com:o/r.git".into()),
                Named::Http("https://example.com/ctx.tar.gz".into()),
            ]
        );
        // Not fetched yet: no directory.
        assert_eq!(n.dir("[context Repo]"), None);
        let mut n = n;
        n.set_dir("repo", cwd.join("dir"));
        assert_eq!(
            n.dir("[context Repo]"),
            Some((cwd.join("dir").as_path(), false, "Repo"))
        );
        for bad in ["src=./nosuch", "src=./file", "noequals", "=x"] {
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

    #[test]
    fn errors_name_the_flag_golden() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        let err = |v: &str| {
            NamedContexts::parse(&[v.into()], tmp.path())
                .unwrap_err()
                .to_string()
                .replace(&tmp.path().display().to_string(), "CWD")
        };
        let m = [
            err("src=./nosuch"),
            err("src=file"),
            err("noequals"),
            err("a=docker-image://UPPER"),
        ];
        insta::assert_snapshot!(m.join("\n"));
    }
}

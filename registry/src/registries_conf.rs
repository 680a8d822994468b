//! `registries.conf` (containers-registries.conf(5), version 2): which registry a pull really
//! goes to, through which mirrors, and which registries are insecure or blocked.
//!
//! Files, as containers/image reads them: `$HOME/.config/containers/registries.conf` if it
//! exists, else `/etc/containers/registries.conf`; then the drop-ins `*.conf` of
//! `/etc/containers/registries.conf.d` and `$HOME/.config/containers/registries.conf.d` in
//! name order (a user drop-in replaces a system one of the same name). `RBUILD_REGISTRIES_CONF`
//! (or containers' `CONTAINERS_REGISTRIES_CONF`) names the main file instead, and then only
//! its own `FILE.d` holds drop-ins — tests use it so that nothing in `/etc` is read. A later
//! file's `[[registry]]` replaces an earlier one with the same `prefix`; a later
//! `unqualified-search-registries` replaces an earlier one.
//!
//! Matching (containers/image `sysregistriesv2.FindRegistry`): the reference written out in
//! full (`docker.io/library/busybox:1.36`) must start with `prefix` followed by the end, `/`,
//! `:` or `@`; a `*.example.com` prefix matches hosts ending in `.example.com`; the longest
//! prefix wins. Pulls then try each `[[registry.mirror]]` in order (filtered by
//! `pull-from-mirror` / `mirror-by-digest-only`), then the registry itself: the matched prefix
//! is replaced by the mirror's, or the registry's, `location` (a wildcard prefix matches the
//! host; without a location the reference is used as written).
//! Pushes never go to mirrors and are not rewritten (as in containers/image).
//!
//! What rbuild does *not* take from the file: short-name aliases, and
//! `unqualified-search-registries` as a search — an unqualified name means `docker.io` as in
//! Docker and BuildKit. A file whose search list would make it mean something else makes such a
//! name an error ([`RegistriesConf::check_unqualified`]) rather than a silent difference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Reference;

/// The system file.
pub const SYSTEM_FILE: &str = "/etc/containers/registries.conf";
/// The user file, under `$HOME`.
const USER_FILE: &str = ".config/containers/registries.conf";

/// Why a `registries.conf` cannot be used, or forbids a pull.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfError {
    #[error("reading {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "pulling {reference} is blocked by {path}: its [[registry]] with prefix {prefix:?} sets blocked = true"
    )]
    Blocked {
        reference: String,
        prefix: String,
        path: PathBuf,
    },
    #[error(
        "{name:?} has no registry host, and {path} sets unqualified-search-registries = {search:?}: \
         rbuild resolves such names on docker.io as Docker and BuildKit do, never through a search \
         list; write the registry in the name (e.g. docker.io/library/NAME or {first}/NAME)"
    )]
    Unqualified {
        name: String,
        path: PathBuf,
        search: Vec<String>,
        first: String,
    },
    #[error(
        "{path}: the {what} {written:?} for {reference} is not a valid image reference: {reason}"
    )]
    Rewrite {
        path: PathBuf,
        what: &'static str,
        written: String,
        reference: String,
        reason: String,
    },
}

/// `pull-from-mirror`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

/// One `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFromMirror,
}

/// One `[[registry]]`, with the file it came from (named in errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub prefix: String,
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
    pub file: PathBuf,
}

/// The merged configuration (empty: every reference pulled from its own registry).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RegistriesConf {
    pub registries: Vec<RegistryEntry>,
    /// `unqualified-search-registries` and the file that set it.
    pub search: Option<(Vec<String>, PathBuf)>,
}

/// Where a pull may come from: a rewritten reference, and whether it is a mirror.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSource {
    pub reference: Reference,
    pub mirror: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
    unqualified_search_registries: Option<Vec<String>>,
    registry: Option<Vec<RawRegistry>>,
    /// Version 1 (`[registries.search]` …), which rbuild does not read.
    registries: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    insecure: Option<bool>,
    blocked: Option<bool>,
    mirror_by_digest_only: Option<bool>,
    mirror: Option<Vec<RawMirror>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    location: String,
    insecure: Option<bool>,
    pull_from_mirror: Option<String>,
}

fn invalid(path: &Path, reason: impl Into<String>) -> ConfError {
    ConfError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// containers/image strips a trailing `/` from locations and prefixes.
fn trim(s: &str) -> String {
    s.trim_end_matches('/').to_string()
}

fn parse_entry(path: &Path, raw: RawRegistry) -> Result<RegistryEntry, ConfError> {
    let location = trim(raw.location.as_deref().unwrap_or_default());
    let prefix = match raw.prefix.as_deref().map(trim) {
        Some(p) if !p.is_empty() => p,
        _ => location.clone(),
    };
    if prefix.is_empty() {
        return Err(invalid(
            path,
            "a [[registry]] has neither prefix nor location",
        ));
    }
    if let Some(host) = prefix.strip_prefix("*.") {
        if host.is_empty() || host.contains(['/', '*', ':', '@']) {
            return Err(invalid(
                path,
                format!("prefix {prefix:?}: a wildcard prefix is *.HOST, nothing after the host"),
            ));
        }
    } else if prefix.contains('*') {
        return Err(invalid(
            path,
            format!("prefix {prefix:?}: a wildcard is allowed only as a leading *."),
        ));
    }
    let digest_only = raw.mirror_by_digest_only.unwrap_or(false);
    let mut mirrors = Vec::new();
    for m in raw.mirror.unwrap_or_default() {
        let location = trim(&m.location);
        if location.is_empty() {
            return Err(invalid(
                path,
                format!("a mirror of prefix {prefix:?} has an empty location"),
            ));
        }
        let pull_from = match m.pull_from_mirror.as_deref() {
            None | Some("") | Some("all") => PullFromMirror::All,
            Some("digest-only") => PullFromMirror::DigestOnly,
            Some("tag-only") => PullFromMirror::TagOnly,
            Some(other) => {
                return Err(invalid(
                    path,
                    format!(
                        "mirror {location:?}: pull-from-mirror = {other:?} (expected all, digest-only or tag-only)"
                    ),
                ))
            }
        };
        if digest_only && m.pull_from_mirror.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(invalid(
                path,
                format!(
                    "mirror {location:?}: pull-from-mirror cannot be set when its registry sets mirror-by-digest-only"
                ),
            ));
        }
        mirrors.push(Mirror {
            location,
            insecure: m.insecure.unwrap_or(false),
            pull_from: if digest_only {
                PullFromMirror::DigestOnly
            } else {
                pull_from
            },
        });
    }
    Ok(RegistryEntry {
        prefix,
        location,
        insecure: raw.insecure.unwrap_or(false),
        blocked: raw.blocked.unwrap_or(false),
        mirrors,
        file: path.to_path_buf(),
    })
}

impl RegistriesConf {
    /// Parses one file's text and merges it over `self` (a drop-in over what came before).
    pub fn merge_text(&mut self, path: &Path, text: &str) -> Result<(), ConfError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            invalid(
                path,
                format!("not a valid registries.conf: {}", e.to_string().trim_end()),
            )
        })?;
        if raw.registries.is_some() {
            return Err(invalid(
                path,
                "this is the version 1 format ([registries.search], [registries.insecure], \
                 [registries.block]); rbuild reads only version 2 ([[registry]] tables, \
                 containers-registries.conf(5))",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for r in raw.registry.unwrap_or_default() {
            let entry = parse_entry(path, r)?;
            if !seen.insert(entry.prefix.clone()) {
                return Err(invalid(
                    path,
                    format!("two [[registry]] tables have the prefix {:?}", entry.prefix),
                ));
            }
            match self
                .registries
                .iter_mut()
                .find(|e| e.prefix == entry.prefix)
            {
                Some(old) => *old = entry,
                None => self.registries.push(entry),
            }
        }
        if let Some(search) = raw.unqualified_search_registries {
            self.search = Some((search, path.to_path_buf()));
        }
        Ok(())
    }

    /// Reads `main` (if it exists) and then `drop_ins` in the order given.
    pub fn load_files(main: Option<&Path>, drop_ins: &[PathBuf]) -> Result<Self, ConfError> {
        let mut conf = RegistriesConf::default();
        for path in main
            .into_iter()
            .chain(drop_ins.iter().map(PathBuf::as_path))
        {
            match std::fs::read_to_string(path) {
                Ok(text) => conf.merge_text(path, &text)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ConfError::Read {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    })
                }
            }
        }
        Ok(conf)
    }

    /// The configuration in force for this process (see the module doc for the files).
    pub fn load() -> Result<Self, ConfError> {
        let named = ["RBUILD_REGISTRIES_CONF", "CONTAINERS_REGISTRIES_CONF"]
            .iter()
            .find_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()))
            .map(PathBuf::from);
        if let Some(main) = named {
            let drop_ins = drop_ins(&[dot_d(&main)]);
            return Self::load_files(Some(&main), &drop_ins);
        }
        let user = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| PathBuf::from(h).join(USER_FILE));
        let system = PathBuf::from(SYSTEM_FILE);
        let main = match &user {
            Some(u) if u.exists() => u.clone(),
            _ => system.clone(),
        };
        let mut dirs = vec![dot_d(&system)];
        dirs.extend(user.as_deref().map(dot_d));
        Self::load_files(Some(&main), &drop_ins(&dirs))
    }

    /// Whether `host` is named insecure (a `[[registry]]` location's host, or a mirror's):
    /// plain HTTP allowed and its certificate not verified, as containers/image does.
    pub fn is_insecure(&self, host: &str) -> bool {
        self.registries.iter().any(|e| {
            (e.insecure && host_of(&e.location) == host)
                || e.mirrors
                    .iter()
                    .any(|m| m.insecure && host_of(&m.location) == host)
        })
    }

    /// The `[[registry]]` whose prefix matches `reference` longest.
    pub fn find(&self, reference: &Reference) -> Option<&RegistryEntry> {
        let key = reference.to_string();
        self.registries
            .iter()
            .filter_map(|e| match_len(&key, &e.prefix).map(|n| (n, e)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, e)| e)
    }

    /// Where to pull `reference` from, in order: its mirrors, then the registry (its location).
    /// A blocked registry is an error.
    pub fn pull_sources(&self, reference: &Reference) -> Result<Vec<PullSource>, ConfError> {
        let Some(entry) = self.find(reference) else {
            return Ok(vec![PullSource {
                reference: reference.clone(),
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(ConfError::Blocked {
                reference: reference.to_string(),
                prefix: entry.prefix.clone(),
                path: entry.file.clone(),
            });
        }
        let by_digest = reference.digest().is_some();
        let mut out = Vec::new();
        for m in &entry.mirrors {
            let wanted = match m.pull_from {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if wanted {
                out.push(PullSource {
                    reference: rewrite(entry, reference, &m.location, "mirror location")?,
                    mirror: true,
                });
            }
        }
        // No location (a wildcard prefix's usual form): the reference as written.
        let primary = if entry.location.is_empty() {
            reference.clone()
        } else {
            rewrite(entry, reference, &entry.location, "location")?
        };
        out.push(PullSource {
            reference: primary,
            mirror: false,
        });
        Ok(out)
    }

    /// An unqualified `name` (as written) is an error when the search list would make it mean
    /// anything but `docker.io` (see the module doc).
    pub fn check_unqualified(&self, name: &str) -> Result<(), ConfError> {
        let Some((search, path)) = &self.search else {
            return Ok(());
        };
        let harmless = search.is_empty() || search.iter().all(|s| s == crate::DEFAULT_REGISTRY);
        if harmless || is_qualified(name) {
            return Ok(());
        }
        Err(ConfError::Unqualified {
            name: name.to_string(),
            path: path.clone(),
            search: search.clone(),
            first: search.first().cloned().unwrap_or_default(),
        })
    }
}

/// Whether a written name starts with a registry host (Docker's rule: the first of several
/// components has a `.` or `:`, or is `localhost`).
pub fn is_qualified(name: &str) -> bool {
    match name.split_once('/') {
        Some((first, _)) => first.contains(['.', ':']) || first == "localhost",
        None => false,
    }
}

/// `FILE` → `FILE.d` (`registries.conf` → `registries.conf.d`).
fn dot_d(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(".d");
    PathBuf::from(s)
}

/// The `*.conf` files of `dirs`, in name order; a later directory's file replaces an earlier
/// one's of the same name (containers/image: user drop-ins override system ones).
fn drop_ins(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut by_name = BTreeMap::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "conf") && p.is_file() {
                by_name.insert(e.file_name(), p);
            }
        }
    }
    by_name.into_values().collect()
}

/// The host part of a location (`mirror.example:5000/dockerhub` → `mirror.example:5000`).
fn host_of(location: &str) -> &str {
    location.split('/').next().unwrap_or(location)
}

/// How much of `key` (a full reference) `prefix` matches, if it does (containers/image
/// `refMatchingPrefix` / `refMatchingSubdomainPrefix`).
fn match_len(key: &str, prefix: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        // `*.example.com`: the host (up to the first `/` or `:`) ends with `.example.com`; the
        // match is the host, which a location replaces.
        let host_end = key.find(['/', ':']).unwrap_or(key.len());
        return key[..host_end].ends_with(domain).then_some(host_end);
    }
    let rest = key.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with(['/', ':', '@'])).then_some(prefix.len())
}

/// `reference` with its matched prefix replaced by `location`.
fn rewrite(
    entry: &RegistryEntry,
    reference: &Reference,
    location: &str,
    what: &'static str,
) -> Result<Reference, ConfError> {
    let key = reference.to_string();
    let matched = match_len(&key, &entry.prefix).unwrap_or(entry.prefix.len());
    let rest = key.get(matched..).unwrap_or_default();
    let written = format!("{location}{rest}");
    written
        .parse()
        .map_err(|e: crate::ReferenceError| ConfError::Rewrite {
            path: entry.file.clone(),
            what,
            written: location.to_string(),
            reference: key.clone(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
#[path = "registries_conf_tests.rs"]
mod tests;

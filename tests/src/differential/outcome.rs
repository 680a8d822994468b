//! What one builder made of a case, in the form stored in `buildkit.json` and compared: the
//! image's file system (relative to the base) and config, or the failure.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Digest;

use super::config;
use super::listing::{self, Entry, FsDelta};

/// A build's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum Outcome {
    Built {
        config: BTreeMap<String, Value>,
        filesystem: FsDelta,
    },
    Failed {
        /// The builder's last lines of output (informative; not compared).
        error: String,
    },
}

/// The cached BuildKit reference of a case (`buildkit.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reference {
    /// sha256 over the case's files and the base image ([`super::case::Case::key`]).
    pub key: String,
    /// `docker version` of the daemon that built it (informative).
    pub docker: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl Reference {
    /// Reads `path`; `None` when it is missing or unreadable (then it is rebuilt).
    pub fn load(path: &Path) -> Option<Reference> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn store(&self, path: &Path) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        text.push('\n');
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))
    }
}

/// A built image's outcome from its unpacked root and its config document.
pub fn built(base: &[Entry], rootfs: &Path, config_doc: &Value) -> Result<Outcome, String> {
    let entries = listing::flatten(rootfs)?;
    Ok(Outcome::Built {
        config: config::compared(config_doc),
        filesystem: listing::delta(base, &entries),
    })
}

/// BuildKit's `reference` with the contents that current BuildKit makes differently (see
/// [`super::case::NewerBuildkit`]); an override naming no changed file of the reference is an
/// error in the case, so a stale override cannot hide anything.
pub fn with_newer_buildkit(
    reference: Outcome,
    overrides: &[super::case::NewerBuildkit],
) -> Result<Outcome, String> {
    let Outcome::Built {
        config,
        mut filesystem,
    } = reference
    else {
        return if overrides.is_empty() {
            Ok(reference)
        } else {
            Err("newer_buildkit overrides a file, but BuildKit's build failed".into())
        };
    };
    for o in overrides {
        let entry = filesystem
            .changed
            .iter_mut()
            .find(|e| e.path == o.path && e.kind == "file")
            .ok_or_else(|| {
                format!(
                    "newer_buildkit names {}, which is no file BuildKit's image adds or changes",
                    o.path
                )
            })?;
        if o.text.is_none() && o.mode.is_none() {
            return Err(format!("newer_buildkit for {} overrides nothing", o.path));
        }
        if let Some(text) = &o.text {
            let len = text.len() as u64;
            entry.size = Some(len);
            entry.sha256 = Some(hex::encode(sha2::Sha256::digest(text.as_bytes())));
            entry.text = (len <= listing::TEXT_LIMIT).then(|| text.clone());
        }
        if let Some(mode) = &o.mode {
            entry.mode = mode.clone();
        }
    }
    Ok(Outcome::Built { config, filesystem })
}

/// The last `n` non-empty lines of a builder's output.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Readable differences (BuildKit's `expected` against rbuild's `actual`), at most `limit`.
pub fn differences(expected: &Outcome, actual: &Outcome, limit: usize) -> Vec<String> {
    let mut out = match (expected, actual) {
        (Outcome::Failed { .. }, Outcome::Failed { .. }) => Vec::new(),
        (Outcome::Failed { error }, Outcome::Built { .. }) => vec![format!(
            "BuildKit fails but rbuild builds an image; BuildKit's error:\n      {}",
            error.replace('\n', "\n      ")
        )],
        (Outcome::Built { .. }, Outcome::Failed { error }) => vec![format!(
            "BuildKit builds but rbuild fails:\n      {}",
            error.replace('\n', "\n      ")
        )],
        (
            Outcome::Built {
                config: ec,
                filesystem: ef,
            },
            Outcome::Built {
                config: ac,
                filesystem: af,
            },
        ) => {
            let mut d = fs_differences(ef, af);
            d.extend(config::differences(ec, ac));
            d
        }
    };
    if out.len() > limit {
        let more = out.len() - limit;
        out.truncate(limit);
        out.push(format!("... and {more} more differences"));
    }
    out
}

fn fs_differences(expected: &FsDelta, actual: &FsDelta) -> Vec<String> {
    let mut out = Vec::new();
    let e: BTreeMap<&str, &Entry> = expected
        .changed
        .iter()
        .map(|x| (x.path.as_str(), x))
        .collect();
    let a: BTreeMap<&str, &Entry> = actual
        .changed
        .iter()
        .map(|x| (x.path.as_str(), x))
        .collect();
    let er: std::collections::BTreeSet<&str> =
        expected.removed.iter().map(String::as_str).collect();
    let ar: std::collections::BTreeSet<&str> = actual.removed.iter().map(String::as_str).collect();
    let mut paths: Vec<&str> = e
        .keys()
        .chain(a.keys())
        .chain(er.iter())
        .chain(ar.iter())
        .copied()
        .collect();
    paths.sort_unstable();
    paths.dedup();
    for p in paths {
        let state = |m: &BTreeMap<&str, &Entry>, r: &std::collections::BTreeSet<&str>| {
            if let Some(x) = m.get(p) {
                x.describe()
            } else if r.contains(p) {
                "(absent)".to_string()
            } else {
                "(as in the base image)".to_string()
            }
        };
        let (es, as_) = (state(&e, &er), state(&a, &ar));
        if es != as_ {
            out.push(format!("{p}\n      BuildKit: {es}\n      rbuild:   {as_}"));
        }
    }
    out
}

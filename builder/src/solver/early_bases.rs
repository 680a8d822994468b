//! Base images resolved before the solve, as BuildKit's Dockerfile frontend resolves every
//! reachable `FROM` while it converts the Dockerfile, before any step runs.
//!
//! The build checks need what only a resolved base tells: its ENV (UndefinedVar knows the
//! image's variables) and the platform it was pulled with (InvalidBaseImagePlatform). The
//! bases are resolved once, side by side, before the checks; each stage then takes its base
//! from here ([`EarlyBases::take`]) instead of asking the registry again, so the registry
//! sees the same requests as before and the cache keys are the same (they pin the manifest
//! digest resolved here).
//!
//! A base that fails to resolve here fails its stage with the same error when the stage runs
//! (the error is kept and handed to it once); the checks go on without that base's facts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use rbuild_layers::store::Store;
use rbuild_layers::Platform;
use rbuild_registry::Registries;

use super::base::{self, BaseImage};
use super::BuildError;
use crate::graph::platform::platform_string;

/// How many bases are resolved at once.
const PARALLEL: usize = 8;

enum Slot {
    Resolved(Box<BaseImage>),
    /// The error, until the stage that needs the base takes it.
    Failed(Option<BuildError>),
}

/// The bases of one build, by name and platform.
#[derive(Default)]
pub struct EarlyBases(Mutex<HashMap<(String, String), Slot>>);

impl EarlyBases {
    /// Resolves every `(name, platform)` in `wanted` (duplicates once), up to [`PARALLEL`] at a
    /// time, as [`base::resolve`] does for a stage.
    pub fn resolve_all(
        store: &Store,
        registries: &Registries,
        wanted: &[(String, Platform)],
        cwd: &Path,
        always_pull: bool,
    ) -> EarlyBases {
        let mut unique: Vec<&(String, Platform)> = Vec::new();
        for w in wanted {
            if !unique
                .iter()
                .any(|u| u.0 == w.0 && platform_string(&u.1) == platform_string(&w.1))
            {
                unique.push(w);
            }
        }
        let mut map = HashMap::new();
        for chunk in unique.chunks(PARALLEL) {
            let results: Vec<Result<BaseImage, BuildError>> = std::thread::scope(|s| {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|(name, platform)| {
                        s.spawn(move || {
                            base::resolve(store, registries, name, platform, cwd, always_pull)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(BuildError::Internal(
                                "resolving a base image panicked".into(),
                            ))
                        })
                    })
                    .collect()
            });
            for ((name, platform), r) in chunk.iter().zip(results) {
                let slot = match r {
                    Ok(b) => Slot::Resolved(Box::new(b)),
                    Err(e) => Slot::Failed(Some(e)),
                };
                map.insert((name.clone(), platform_string(platform)), slot);
            }
        }
        EarlyBases(Mutex::new(map))
    }

    /// Keeps `image`, resolved during the solve, for the steps that read `name` again (each
    /// `COPY --from=IMAGE` and `RUN --mount=from=IMAGE` of a build reads one resolution, as
    /// BuildKit resolves an image once per build).
    pub fn keep(&self, name: &str, platform: &Platform, image: &BaseImage) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((name.to_string(), platform_string(platform)))
            .or_insert_with(|| Slot::Resolved(Box::new(image.clone())));
    }

    /// The resolved base `name` for `platform`, when it resolved.
    pub fn get(&self, name: &str, platform: &Platform) -> Option<BaseImage> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&(name.to_string(), platform_string(platform))) {
            Some(Slot::Resolved(b)) => Some((**b).clone()),
            _ => None,
        }
    }

    /// What resolving `name` for `platform` gave, for the stage that starts from it: the image,
    /// or (once) the error. `None`: not resolved here, or its error was taken already; the
    /// stage resolves it itself.
    pub fn take(&self, name: &str, platform: &Platform) -> Option<Result<BaseImage, BuildError>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(&(name.to_string(), platform_string(platform)))? {
            Slot::Resolved(b) => Some(Ok((**b).clone())),
            Slot::Failed(e) => e.take().map(Err),
        }
    }

    /// The error resolving `name` for `platform` gave, as text (for a note in check output).
    pub fn failure(&self, name: &str, platform: &Platform) -> Option<String> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(&(name.to_string(), platform_string(platform))) {
            Some(Slot::Failed(Some(e))) => Some(crate::errors::error_chain(e)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amd64() -> Platform {
        crate::graph::platform::parse_platform("linux/amd64").expect("valid")
    }

    /// A base that fails is handed to its stage once, with the resolver's error; a second
    /// stage resolves it itself (and fails the same way, with its own context).
    #[test]
    fn a_failed_base_hands_its_error_to_one_stage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let registries = Registries::new(Default::default());
        let name = "oci-layout://missing-layout".to_string();
        let bases = EarlyBases::resolve_all(
            &store,
            &registries,
            &[(name.clone(), amd64()), (name.clone(), amd64())],
            dir.path(),
            false,
        );
        assert!(bases.get(&name, &amd64()).is_none());
        let why = bases.failure(&name, &amd64()).expect("it failed");
        assert!(why.contains("missing-layout"), "{why}");
        assert!(matches!(bases.take(&name, &amd64()), Some(Err(_))));
        assert!(bases.take(&name, &amd64()).is_none());
        assert!(bases.take("other", &amd64()).is_none());
    }
}

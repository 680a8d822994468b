//! One connected client per registry host, shared by every thread of a build: base-image
//! pulls, lazily fetched layers, uploads ahead, pushes and cache import/export all reach a
//! registry through the same [`Registries`], so a host's token is asked for once.
//!
//! Pulls go through [`Registries::pull_from`]: the pull sources of `registries.conf` (mirrors
//! in order, then the registry, possibly rewritten; see [`crate::registries_conf`]), after
//! kaniko's `--registry-mirror`s for docker.io. Pushes use [`Registries::get`] on the
//! reference's own host: they never go to mirrors. Each mirror is a client of its own host, so
//! it gets the credentials stored for that host and no other's. A mirror that fails is
//! named on stderr with the reason, once per mirror repository and build (`warning: …`, the
//! registry crate's one warning channel, as for `--tls-verify=false`), so a mirror that is
//! down or out of date is not silently slowing every pull down.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::registries_conf::PullSource;
use crate::{ClientOptions, Reference, Registry, RegistryError};

/// One connection (with its auth state) per registry host.
pub struct Registries {
    opts: ClientOptions,
    pool: Mutex<BTreeMap<String, Arc<Registry>>>,
    /// Mirror repositories already warned about (`host/repository`).
    warned: Mutex<HashSet<String>>,
}

impl Registries {
    pub fn new(opts: ClientOptions) -> Registries {
        Registries {
            opts,
            pool: Mutex::new(BTreeMap::new()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// The client for `host`, connected on first use. A host `registries.conf` names insecure
    /// may use plain HTTP and its certificate is not verified (containers/image's meaning).
    pub fn get(&self, host: &str) -> Result<Arc<Registry>, RegistryError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = pool.get(host) {
            return Ok(r.clone());
        }
        let r = if self.opts.registries_conf.is_insecure(host) {
            let mut opts = self.opts.clone();
            opts.insecure.push(host.to_string());
            opts.skip_tls_verify = true;
            Registry::connect(host, &opts)?
        } else {
            Registry::connect(host, &self.opts)?
        };
        let r = Arc::new(r);
        pool.insert(host.to_string(), r.clone());
        Ok(r)
    }

    /// Where a pull of `reference` may come from, in the order to try them.
    pub fn pull_sources(&self, reference: &Reference) -> Result<Vec<PullSource>, RegistryError> {
        let mut out = kaniko_mirrors(&self.opts.registry_mirrors, reference)?;
        out.extend(self.opts.registries_conf.pull_sources(reference)?);
        Ok(out)
    }

    /// Runs `pull` against each pull source of `reference` until one succeeds. A mirror's
    /// failure (unreachable, missing the image, refusing us) moves on to the next source, as
    /// containers/image and Docker do, with a warning naming the mirror and why; the
    /// registry's own error is the one returned. `wrap` turns a connection or configuration
    /// error into the caller's error type.
    pub fn pull_from<T, E: std::fmt::Display>(
        &self,
        reference: &Reference,
        wrap: impl Fn(RegistryError) -> E,
        mut pull: impl FnMut(Arc<Registry>, &Reference) -> Result<T, E>,
    ) -> Result<T, E> {
        let sources = self.pull_sources(reference).map_err(&wrap)?;
        let last = sources.len().saturating_sub(1);
        for (i, source) in sources.iter().enumerate() {
            let tried = self
                .get(source.reference.registry())
                .map_err(&wrap)
                .and_then(|reg| pull(reg, &source.reference));
            match tried {
                Ok(v) => return Ok(v),
                Err(e) if i == last => return Err(e),
                Err(e) => {
                    if let Some(line) = self.mirror_warning(source, &sources[i + 1], &e) {
                        eprintln!("{line}");
                    }
                }
            }
        }
        Err(wrap(RegistryError::Protocol {
            registry: reference.registry().to_string(),
            what: format!("no source to pull {reference} from"),
        }))
    }

    /// The warning line for a pull source that failed with `error` before `next` is tried, or
    /// `None` when this mirror repository was already warned about. The error names the
    /// registry and request, never a credential (see [`crate::auth::Secret`]).
    fn mirror_warning(
        &self,
        failed: &PullSource,
        next: &PullSource,
        error: &impl std::fmt::Display,
    ) -> Option<String> {
        let r = &failed.reference;
        let key = format!("{}/{}", r.registry(), r.repository());
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        warned.insert(key.clone()).then(|| {
            let what = if failed.mirror { "mirror" } else { "source" };
            format!(
                "warning: {what} {key} failed ({error}); trying {}",
                next.reference.registry()
            )
        })
    }

    /// See [`crate::registries_conf::RegistriesConf::check_unqualified`].
    pub fn check_unqualified(&self, name: &str) -> Result<(), RegistryError> {
        Ok(self.opts.registries_conf.check_unqualified(name)?)
    }
}

/// kaniko's `--registry-mirror`: for a docker.io reference, `MIRROR[/PATH]/REPOSITORY`
/// (`mirror.gcr.io/library/busybox`), each mirror in the order given. kaniko's README: "Set
/// this flag if you want to use a registry mirror instead of the default index.docker.io. You
/// can use this flag more than once … If an image is not found on the first mirror, Kaniko
/// will try the next mirror(s), and at the end fallback on the default registry … Expected
/// format is mirror.gcr.io or mirror.gcr.io/path". Matched: docker.io only, the order, the
/// fallback, the optional path. Not taken: `--skip-default-registry-fallback`.
fn kaniko_mirrors(
    mirrors: &[String],
    reference: &Reference,
) -> Result<Vec<PullSource>, RegistryError> {
    if reference.registry() != crate::DEFAULT_REGISTRY {
        return Ok(Vec::new());
    }
    let key = reference.to_string();
    let rest = key
        .strip_prefix(crate::DEFAULT_REGISTRY)
        .unwrap_or(key.as_str());
    mirrors
        .iter()
        .map(|m| {
            let written = format!("{}{rest}", m.trim_end_matches('/'));
            written
                .parse()
                .map(|reference| PullSource {
                    reference,
                    mirror: true,
                })
                .map_err(|e: crate::ReferenceError| RegistryError::Protocol {
                    registry: m.clone(),
                    what: format!("--registry-mirror {m:?} for {key}: {e}"),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaniko_mirrors_apply_to_docker_hub_only_and_keep_a_path() {
        let opts = ClientOptions {
            registry_mirrors: vec!["mirror.gcr.io".into(), "127.0.0.1:5001/hub/".into()],
            ..ClientOptions::default()
        };
        let regs = Registries::new(opts);
        let shown = |name: &str| -> Vec<String> {
            regs.pull_sources(&name.parse().expect("reference"))
                .expect("sources")
                .into_iter()
                .map(|s| format!("{}{}", if s.mirror { "mirror: " } else { "" }, s.reference))
                .collect()
        };
        assert_eq!(
            shown("busybox:1.36"),
            [
                "mirror: mirror.gcr.io/library/busybox:1.36",
                "mirror: 127.0.0.1:5001/hub/library/busybox:1.36",
                "docker.io/library/busybox:1.36",
            ]
        );
        assert_eq!(shown("quay.io/a/b"), ["quay.io/a/b"]);
    }

    #[test]
    fn a_failed_mirror_is_warned_about_once_per_repository() {
        let regs = Registries::new(ClientOptions {
            registry_mirrors: vec!["127.0.0.1:1".into()],
            ..ClientOptions::default()
        });
        let sources = regs
            .pull_sources(&"busybox:1.36".parse().expect("reference"))
            .expect("sources");
        let line = regs.mirror_warning(&sources[0], &sources[1], &"connection refused");
        assert_eq!(
            line.as_deref(),
            Some(
                "warning: mirror 127.0.0.1:1/library/busybox failed (connection refused); \
                 trying docker.io"
            )
        );
        assert_eq!(
            regs.mirror_warning(&sources[0], &sources[1], &"again"),
            None
        );
        let other = regs
            .pull_sources(&"alpine".parse().expect("reference"))
            .expect("sources");
        assert!(regs
            .mirror_warning(&other[0], &other[1], &"missing")
            .is_some());
    }
}

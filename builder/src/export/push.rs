//! `--push` and `--output type=registry`: which references each built image goes to, and
//! pushing it there with the registry client (blobs first, the manifest last, then each tag).
//!
//! `--push` pushes every `--tag` name of a target; a `type=registry` output pushes to its
//! `name=` references, or, with `push-by-digest=true`, to their repositories without tags.

use std::collections::BTreeMap;

use rbuild_layers::store::Store;
use rbuild_layers::Digest;
use rbuild_registry::{Reference, RegistryError};

use crate::lazy_pull::LayerFetcher;

use super::ahead::SentAhead;
use super::BuiltImage;
use crate::export::spec::{OutputKind, OutputSpec};
use crate::progress::{LogStream, Progress};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("pushing {target} to {repository}: {source}")]
    Registry {
        target: String,
        repository: String,
        #[source]
        source: Box<RegistryError>,
    },
}

/// One pushed reference.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub target: String,
    pub reference: Reference,
    pub digest: Digest,
}

/// Where an image named `names` goes: `registry/repository` → tags (empty: by digest only).
pub fn destinations(
    names: &[Reference],
    push_tags: bool,
    outputs: &[OutputSpec],
) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut add = |r: &Reference, by_digest: bool| {
        let entry = out
            .entry((r.registry().to_string(), r.repository().to_string()))
            .or_default();
        if !by_digest {
            if let Some(t) = r.tag_or_latest() {
                if !entry.iter().any(|e| e == t) {
                    entry.push(t.to_string());
                }
            }
        }
    };
    if push_tags {
        for n in names {
            add(n, false);
        }
    }
    for spec in outputs {
        if let OutputKind::Registry { push_by_digest, .. } = spec.kind {
            for n in &spec.names {
                add(n, push_by_digest);
            }
        }
    }
    out
}

/// The registry hosts the images go to.
pub fn push_hosts(
    built: &[BuiltImage],
    push_tags: bool,
    outputs: &[OutputSpec],
) -> std::collections::BTreeSet<String> {
    built
        .iter()
        .flat_map(|b| destinations(&b.names, push_tags, outputs).into_keys())
        .map(|(host, _)| host)
        .collect()
}

/// Pushes every built image to its destinations; returns what was pushed.
///
/// Layers the store does not have (lazily pulled or imported) are mounted from their repository
/// when it is on the same registry, and fetched through `fetcher` otherwise.
/// Layers in `sent_ahead` (streamed while the build wrote them) count as uploaded to their
/// repository — by the first image pushed there that has them; for the next ones they are
/// already there — without being asked for again.
pub fn push_images(
    store: &Store,
    built: &[BuiltImage],
    push_tags: bool,
    outputs: &[OutputSpec],
    fetcher: &LayerFetcher,
    sent_ahead: &[SentAhead],
    progress: &Progress,
) -> Result<Vec<Pushed>, PushError> {
    let fetch = fetcher.fetch_for_push(store);
    let mut pushed = Vec::new();
    let mut unreported: Vec<&SentAhead> = sent_ahead.iter().collect();
    for b in built {
        for ((host, repo), tags) in destinations(&b.names, push_tags, outputs) {
            let fail = |source| PushError::Registry {
                target: b.target.clone(),
                repository: format!("{host}/{repo}"),
                source: Box::new(source),
            };
            let reg = fetcher.registries().get(&host).map_err(fail)?;
            let step = progress.step(format!("pushing {host}/{repo}"));
            let sent = std::sync::atomic::AtomicU64::new(0);
            let total = b
                .image
                .images()
                .iter()
                .map(|i| {
                    i.manifest.layers.iter().map(|l| l.size).sum::<u64>() + i.config_descriptor.size
                })
                .sum::<u64>();
            let on_bytes = |n: u64| {
                let now = sent.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                step.progress(crate::progress::ProgressKind::Pushing, now, Some(total));
            };
            let in_image = |d: &Digest| {
                b.image
                    .images()
                    .iter()
                    .any(|i| i.manifest.layers.iter().any(|l| l.digest == *d))
            };
            let (mine, rest): (Vec<&SentAhead>, Vec<&SentAhead>) = unreported
                .into_iter()
                .partition(|s| s.host == host && s.repository == repo && in_image(&s.digest));
            unreported = rest;
            let ahead: Vec<Digest> = mine.iter().map(|s| s.digest.clone()).collect();
            let opts = rbuild_registry::push::PushOptions {
                on_bytes: &on_bytes,
                fetch_missing: Some(&fetch),
                sent_ahead: &ahead,
            };
            let root = b.pushed_root();
            let report =
                match rbuild_registry::push::push_with(&reg, store, &repo, root, &tags, &opts) {
                    Ok(r) => r,
                    Err(e) => {
                        step.failed(&e);
                        return Err(fail(e));
                    }
                };
            let digest = root.digest.clone();
            step.log(
                LogStream::Stdout,
                format!(
                    "{} blob(s) uploaded, {} mounted, {} already there; digest {digest}",
                    report.blobs_uploaded, report.blobs_mounted, report.blobs_existing
                ),
            );
            step.done();
            let base: Reference = format!("{host}/{repo}")
                .parse()
                .expect("a registry/repository pair taken from a valid reference");
            let refs: Vec<Reference> = if tags.is_empty() {
                vec![base.with_digest(digest.clone())]
            } else {
                tags.iter().filter_map(|t| base.with_tag(t).ok()).collect()
            };
            for reference in refs {
                pushed.push(Pushed {
                    target: b.target.clone(),
                    reference,
                    digest: digest.clone(),
                });
            }
        }
    }
    Ok(pushed)
}

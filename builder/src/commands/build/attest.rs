//! What the build knows, gathered for its provenance (`attest::provenance::ProvenanceInput`),
//! and the attestations of the images a build outputs (`export::attest`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::attest::provenance::{BaseImage, ContextSource, ProvenanceInput, Step};
use crate::commands::Failure;
use crate::export::attest::{
    attestation_manifest, attested_root, predicates, AttestExportError, AttestTarget,
};
use crate::export::spec::OutputKind;
use crate::export::BuiltImage;
use crate::graph::platform::{host_platform, platform_string};
use crate::solver::stage::created_time;

use super::inputs::Inputs;
use super::solve::{PlatformSolved, Session, Solved};

/// Attaches the requested attestations to each built image, as its outputs take them (see
/// `export::attest`): a pushed image — and, when attestations were asked for explicitly, an OCI
/// output — becomes an index with an attestation manifest per platform; for `type=local`
/// and `type=tar` outputs the predicates are kept (`BuiltImage::predicates`) and written as
/// files beside the filesystem. buildx's default provenance goes with pushes only: an OCI layout stays
/// reproducible byte for byte unless attestations are asked for.
pub(super) fn attach(
    inputs: &Inputs,
    session: &Session,
    solved: &Solved<'_>,
    built: &mut [BuiltImage],
    started: Instant,
) -> Result<(), Failure> {
    let opts = &inputs.opts;
    if !opts.attest.any() {
        return Ok(());
    }
    let explicit = opts.attest.explicit();
    let oci = opts
        .outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Oci(_)));
    let files = opts
        .outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Local(_) | OutputKind::Tar(_)));
    // One provenance record per platform: its base images and steps are that platform's.
    let provenance: Vec<Option<ProvenanceInput>> = inputs
        .plans
        .iter()
        .zip(&solved.platforms)
        .map(|(p, s)| {
            opts.attest
                .provenance
                .map(|_| provenance_input(inputs, s, &p.platform, started))
        })
        .collect();
    for b in built.iter_mut() {
        let pushed =
            !crate::export::push::destinations(&b.names, opts.push, &opts.outputs).is_empty();
        let inline = pushed || (oci && explicit);
        if !(inline || (files && explicit)) {
            continue;
        }
        let step = session.progress.step(format!("attesting {}", b.target));
        match attest_one(inputs, session, solved, b, &provenance, inline) {
            Ok(()) => step.done(),
            Err(e) => {
                step.failed(crate::errors::error_chain(&e));
                return Err(Failure::Build(e.into()));
            }
        }
    }
    Ok(())
}

/// The predicates of each platform's image of `b`; with `inline`, its root becomes the index
/// with their attestation manifests.
fn attest_one(
    inputs: &Inputs,
    session: &Session,
    solved: &Solved<'_>,
    b: &mut BuiltImage,
    provenance: &[Option<ProvenanceInput>],
    inline: bool,
) -> Result<(), AttestExportError> {
    let names: Vec<String> = b.names.iter().map(|n| n.to_string()).collect();
    let t = AttestTarget {
        target: &b.target,
        names: &names,
        request: &inputs.opts.attest,
        oci_artifact: inputs.opts.oci_artifact(),
    };
    let mut per_image = Vec::new();
    let mut manifests = Vec::new();
    for (image, provenance) in b.image.images().iter().zip(provenance) {
        let p = predicates(
            &session.store,
            solved.fetcher.as_ref(),
            &t,
            image,
            provenance.as_ref(),
        )?;
        if inline {
            manifests.push(attestation_manifest(&session.store, &t, image, &p)?);
        }
        per_image.push(p);
    }
    if inline {
        b.image = attested_root(&session.store, &b.target, &b.image, manifests)?;
    }
    b.predicates = per_image;
    Ok(())
}

fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    created_time(secs)
}

/// The build of one platform as its provenance records it (the mode is set per request by
/// `export::attest`).
fn provenance_input(
    inputs: &Inputs,
    solved: &PlatformSolved<'_>,
    platform: &rbuild_layers::Platform,
    started: Instant,
) -> ProvenanceInput {
    let opts = &inputs.opts;
    let now = SystemTime::now();
    let started_at = now.checked_sub(started.elapsed()).unwrap_or(now);
    let dockerfile = std::fs::read(&opts.plan.dockerfile).unwrap_or_default();
    let dockerfile_path = opts
        .plan
        .dockerfile
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".into());
    let context = match (&opts.plan.git_context, &inputs.git) {
        (Some(_), Some(g)) if g.origin_url.is_some() => Some(ContextSource::Git {
            url: g.origin_url.clone().unwrap_or_default(),
            commit: g.commit.clone(),
        }),
        _ => Some(ContextSource::Local),
    };
    // buildx sends a local work tree's origin and commit as `vcs:source`/`vcs:revision`.
    let mut vcs = BTreeMap::new();
    if let (None, Some(g)) = (&opts.plan.git_context, &inputs.git) {
        if let Some(u) = &g.origin_url {
            vcs.insert("source".to_string(), u.clone());
        }
        vcs.insert("revision".to_string(), g.commit.clone());
    }
    let mut seen = BTreeSet::new();
    let base_images = solved
        .states
        .values()
        .filter_map(|s| Some((s.base.name.clone()?, s.base.digest.clone()?)))
        .filter(|b| seen.insert(b.clone()))
        .map(|(reference, digest)| BaseImage {
            reference,
            platform: Some(platform.clone()),
            digest,
        })
        .collect();
    let outcomes = solved.engine.outcomes();
    let steps = outcomes
        .iter()
        .map(|o| Step {
            inputs: o
                .parent
                .as_ref()
                .and_then(|p| outcomes.iter().position(|x| &x.key == p))
                .into_iter()
                .collect(),
            layer: o.layer.as_ref().map(|l| l.descriptor.clone()),
        })
        .collect();
    ProvenanceInput {
        mode: Default::default(),
        builder_id: String::new(),
        dockerfile_path,
        dockerfile,
        context,
        build_args: opts
            .plan
            .build_args
            .iter()
            .filter_map(|a| Some((a.key.clone(), a.value.clone()?)))
            .collect(),
        labels: opts.labels.iter().cloned().collect(),
        target: opts.plan.targets.first().cloned(),
        other_args: BTreeMap::new(),
        secrets: opts.secrets.iter().map(|s| (s.id.clone(), false)).collect(),
        ssh: opts.ssh.iter().map(|s| (s.id.clone(), false)).collect(),
        base_images,
        http: Vec::new(),
        builder_platform: platform_string(&host_platform()),
        invocation_id: invocation_id(now),
        started_on: rfc3339(started_at),
        finished_on: rfc3339(now),
        reproducible: false,
        network: true,
        steps,
        vcs,
    }
}

/// A build's id: 25 base-36 characters, as BuildKit's (`identity.NewID`), from the time and
/// the process id (unique enough to tell builds apart; not a secret).
fn invocation_id(now: SystemTime) -> String {
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!("{nanos}-{}", std::process::id());
    let d = rbuild_layers::Digest::sha256_of(seed.as_bytes());
    let mut n = u128::from_str_radix(&d.hex()[..32], 16).unwrap_or(0);
    let mut out = String::new();
    for _ in 0..25 {
        let c = (n % 36) as u32;
        out.push(char::from_digit(c, 36).unwrap_or('0'));
        n /= 36;
    }
    out
}

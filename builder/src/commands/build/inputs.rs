//! Phase 1 of a build, resolving its inputs: flags into validated options, the Dockerfile and
//! its plan, the context's git metadata and the build's epoch. Nothing is written yet: every
//! failure here is a usage error and leaves no trace.

use std::collections::BTreeMap;

use rbuild_registry::ClientOptions;

use crate::cli::args::BuildArgs;
use crate::cli::cache_spec::CacheExportTarget;
use crate::cli::output::OutputKind;
use crate::cli::BuildOptions;
use crate::commands::plan::{check_config, check_file_name, load_plan, LoadedPlan, PlatformPlan};
use crate::commands::Failure;
use crate::dockerfile::Dockerfile;
use crate::export::tags::TagSpec;
use crate::git::GitInfo;
use crate::graph::BuildPlan;

/// What a build starts from.
pub(super) struct Inputs {
    pub opts: BuildOptions,
    pub registry: ClientOptions,
    pub tag_specs: Vec<TagSpec>,
    pub df: Dockerfile,
    /// One plan per target platform, in `--platform` order (never empty).
    pub plans: Vec<PlatformPlan>,
    pub build_args: BTreeMap<String, String>,
    /// Notes shown once the progress output exists (`--builder`).
    pub notes: Vec<String>,
    /// The Dockerfile's text and its name in check output (for `--call check` and the
    /// metadata file's warnings).
    pub source: String,
    pub check_file: String,
    /// `--call`/`--check`: what to evaluate instead of building.
    pub call: Option<super::call::CallFunc>,
    pub git: Option<GitInfo>,
    /// Timestamp of created times and of the files rbuild writes.
    pub epoch: i64,
    /// Whether the user chose the epoch (`SOURCE_DATE_EPOCH`), see `BuildRequest::epoch_in_key`.
    pub epoch_chosen: bool,
}

impl Inputs {
    /// The first platform's plan: the stages and targets every platform's plan names alike.
    pub fn plan(&self) -> &BuildPlan {
        &self.plans[0].plan
    }

    /// Whether the build makes an image index per target (several platforms).
    pub fn multi_platform(&self) -> bool {
        self.plans.len() > 1
    }

    /// Whether the checks look at every stage: `--call check` without `--target`, as
    /// BuildKit's lint does; else the stages the targets need.
    pub fn checks_every_stage(&self) -> bool {
        self.call
            .as_ref()
            .is_some_and(|c| c.name == super::call::CHECK)
            && self.opts.plan.targets.is_empty()
    }

    /// Whether the epoch is the clock: no `SOURCE_DATE_EPOCH`, no git commit (see
    /// `BuildRequest::clock_epoch`).
    pub fn clock_epoch(&self) -> bool {
        !self.epoch_chosen && self.git.is_none()
    }
}

pub(super) fn resolve(a: &BuildArgs) -> Result<Inputs, Failure> {
    let opts = BuildOptions::from_args(a)?;
    check_supported(&opts)?;
    check_media_types(&opts)?;
    check_in_place(&opts)?;
    let mut registry = crate::cli::registry::registry_options(&a.registry)?;
    registry.insecure_outputs = insecure_output_hosts(&opts);
    let tag_specs = a
        .tags
        .iter()
        .map(|t| {
            TagSpec::parse(t)
                .map_err(|e| Failure::Usage(format!("error: invalid --tag {t:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    // The default name (`<dir>:<commit>`) would go to Docker Hub; pushing needs a chosen name.
    if opts.push && tag_specs.is_empty() {
        return Err(Failure::Usage(
            "error: --push pushes the --tag names; give --tag REGISTRY/REPOSITORY[:TAG]".into(),
        ));
    }
    let call = super::call::CallFunc::from_args(&a.call, a.check)?;
    let loaded = load_plan(&opts.plan)?;
    // The checks run once the bases are resolved (`super::checks`); their configuration is
    // a usage error now.
    check_config(&loaded.dockerfile, &loaded.build_args)?;
    let check_file = check_file_name(a.plan.file.as_deref(), &opts.plan);
    let LoadedPlan {
        dockerfile: df,
        plans,
        build_args,
        source,
        ..
    } = loaded;
    let mut notes = Vec::new();
    if let Some(b) = &a.builder {
        notes.push(format!(
            "note: --builder {b}: rbuild has no builder instances; this build runs here"
        ));
    }
    check_platforms(&opts, &plans)?;

    // A build that talks to a registry needs the system's TLS roots before its first request:
    // read them meanwhile (the git metadata below is a subprocess).
    // Not for a build that only talks to registries on this machine: those mostly speak plain
    // HTTP, and the hundreds of CA files would take a core from the build for nothing (a
    // loopback registry with TLS still gets the roots, read at its first certificate).
    if plans.iter().any(|p| {
        uses_registry(&opts, &p.plan) && !only_loopback_registries(&opts, &p.plan, &tag_specs)
    }) {
        rbuild_registry::client::transport::preload_system_roots();
    }
    // A context from standard input is a scratch directory under the store: any repository
    // around it is not the build's.
    let git = if opts.plan.context_is_stdin() {
        None
    } else if let Some(g) = &opts.plan.git_context {
        Some(g.info.clone())
    } else {
        crate::git::git_info(&opts.plan.context)
            .map_err(|e| Failure::Usage(format!("error: reading git metadata: {e}")))?
    };
    let sde = std::env::var("SOURCE_DATE_EPOCH").ok();
    let epoch = crate::git::build_epoch(sde.as_deref(), git.as_ref(), now_unix())
        .map_err(|e| Failure::Usage(format!("error: {e}")))?;
    Ok(Inputs {
        opts,
        registry,
        tag_specs,
        df,
        plans,
        build_args,
        notes,
        source,
        check_file,
        call,
        git,
        epoch,
        epoch_chosen: sde.as_deref().is_some_and(|v| !v.is_empty()),
    })
}

/// Refuses what a build for several platforms cannot write, as buildx does: a docker archive
/// (`type=docker`, `--load`) holds one image per name ("docker exporter does not currently
/// support exporting manifest lists"); (`--iidfile` then names the index's digest).
fn check_platforms(opts: &BuildOptions, plans: &[PlatformPlan]) -> Result<(), Failure> {
    if plans.len() < 2 {
        return Ok(());
    }
    let shown: Vec<String> = plans
        .iter()
        .map(|p| crate::graph::platform::platform_string(&p.platform))
        .collect();
    if opts
        .outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Docker(_)))
    {
        return Err(Failure::Usage(format!(
            "error: docker exporter does not currently support exporting manifest lists: --output type=docker (or --load) holds one platform's image, and this build is for {}; use --output type=oci,dest=FILE, --push, or one --platform",
            shown.join(", ")
        )));
    }
    Ok(())
}

/// The hosts of `--output type=registry|image,…,registry.insecure=true` (BuildKit's option:
/// plain HTTP or an unverified certificate for that output's registry). The build shares one
/// client per host, so a pull from the same host in this build goes the same way.
fn insecure_output_hosts(opts: &BuildOptions) -> Vec<String> {
    let mut hosts: Vec<String> = opts
        .outputs
        .iter()
        .filter(|o| matches!(o.kind, OutputKind::Registry { insecure: true, .. }))
        .flat_map(|o| o.names.iter().map(|n| n.registry().to_string()))
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

/// Refuses, before any work, what this version cannot do, so nothing is half-built.
/// `--isolation in-place` replaces the container's root filesystem at the first RUN step: every
/// path rbuild reads or writes after that must be on a kept path (a mount, the store), or the
/// build would lose it halfway. Said before anything is built.
fn check_in_place(opts: &BuildOptions) -> Result<(), Failure> {
    use crate::cli::cache_spec::CacheImportSource;
    use crate::export::spec::Destination;
    use crate::solver::inputs::SecretSource;
    use crate::solver::run::in_place::{outside_kept, Keep};
    if opts.isolation != crate::executor::isolation::Isolation::InPlace {
        return Ok(());
    }
    let mut given: Vec<(String, std::path::PathBuf)> = vec![
        ("the build context".into(), opts.plan.context.clone()),
        ("the Dockerfile".into(), opts.plan.dockerfile.clone()),
    ];
    for (what, p) in [
        ("--metadata-file", &opts.metadata_file),
        ("--iidfile", &opts.iidfile),
    ] {
        if let Some(p) = p {
            given.push((what.into(), p.clone()));
        }
    }
    for o in &opts.outputs {
        let dest = match &o.kind {
            OutputKind::Oci(d) | OutputKind::Docker(d) => match d {
                Destination::Directory(p) | Destination::Tarball(p) => Some(p),
                _ => None,
            },
            OutputKind::Local(p) => Some(p),
            _ => None,
        };
        if let Some(p) = dest {
            given.push(("--output dest".into(), p.clone()));
        }
    }
    for s in &opts.secrets {
        if let SecretSource::File(p) = &s.source {
            given.push((format!("--secret id={}", s.id), p.clone()));
        }
    }
    for c in &opts.cache_from {
        if let CacheImportSource::Local(p) = &c.source {
            given.push(("--cache-from src".into(), p.clone()));
        }
    }
    for c in &opts.cache_to {
        if let CacheExportTarget::Local(p) = &c.target {
            given.push(("--cache-to dest".into(), p.clone()));
        }
    }
    // Registry credentials are read when a registry is first asked, after the root changed.
    for f in rbuild_registry::auth::credentials::default_auth_files() {
        if f.path.exists() {
            given.push(("a registry credentials file".into(), f.path));
        }
    }
    let store = &opts.store;
    std::fs::create_dir_all(store).map_err(|e| {
        Failure::Build(anyhow::anyhow!(
            "creating the store {}: {e}",
            store.display()
        ))
    })?;
    let keep = Keep::discover(store)
        .map_err(|e| Failure::Build(anyhow::Error::new(e).context("--isolation in-place")))?;
    let lost = outside_kept(&keep, &given);
    if lost.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = lost
        .iter()
        .map(|(what, p)| format!("{what} ({})", p.display()))
        .collect();
    Err(Failure::Usage(format!(
        "error: --isolation in-place replaces this container's root filesystem with the image's at the first RUN step, and these are on it, outside every mount and the store: {}. Put them on a mounted volume (the CI workspace is one) or in the store ({}); nothing was built",
        list.join(", "),
        store.display()
    )))
}

fn check_supported(opts: &BuildOptions) -> Result<(), Failure> {
    if opts
        .outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Registry { .. }) && o.names.is_empty())
    {
        return Err(Failure::Usage(
            "error: --output type=registry needs name=REGISTRY/REPOSITORY[:TAG]".into(),
        ));
    }
    let inline = opts
        .cache_to
        .iter()
        .any(|c| c.target == CacheExportTarget::Inline);
    if inline && !pushes(opts) {
        // BuildKit silently exports nothing here; saying so is kinder.
        return Err(Failure::Usage(
            "error: --cache-to type=inline puts the cache in the pushed image's config: add --push (or --output type=registry,name=…)".into(),
        ));
    }
    Ok(())
}

/// `oci-mediatypes=false` and `oci-artifact=` as BuildKit takes them
/// (`exporter/containerimage/opts.go` `Validate`, `writer.go`): Docker media types are refused
/// with zstd layers, with annotations anywhere but on the manifest, with attestations and with
/// `oci-artifact=true`. rbuild makes one image per target for all its outputs, so the image
/// outputs must agree on both.
fn check_media_types(opts: &BuildOptions) -> Result<(), Failure> {
    let image_outputs: Vec<&crate::export::spec::OutputSpec> = opts
        .outputs
        .iter()
        .filter(|o| {
            matches!(
                o.kind,
                OutputKind::Oci(_) | OutputKind::Docker(_) | OutputKind::Registry { .. }
            )
        })
        .collect();
    let usage = |m: &str| Err(Failure::Usage(format!("error: {m}")));
    if !opts.oci_artifact() && image_outputs.iter().any(|o| o.oci_artifact != Some(false)) {
        return usage("oci-artifact=false is on one image output and not on another: rbuild makes one image per target for all its outputs; give every image --output the same oci-artifact");
    }
    if !opts.docker_media_types() {
        return Ok(());
    }
    if image_outputs.iter().any(|o| o.oci_artifact == Some(true)) {
        return usage(
            "exporter option \"oci-artifact=true\" conflicts with \"oci-mediatypes=false\"",
        );
    }
    if image_outputs
        .iter()
        .any(|o| o.oci_media_types != Some(false))
    {
        return usage("oci-mediatypes=false is on one image output and not on another: rbuild makes one image per target for all its outputs; give every image --output the same oci-mediatypes");
    }
    if image_outputs
        .iter()
        .any(|o| o.compression == rbuild_layers::Compression::Zstd)
    {
        return usage("exporter option \"compression=zstd\" conflicts with \"oci-mediatypes=false\" (Docker's media types have no zstd layer)");
    }
    if opts.annotations.iter().any(|a| {
        !a.index.is_empty() || !a.index_descriptor.is_empty() || !a.manifest_descriptor.is_empty()
    }) {
        return usage("cannot export annotations with \"oci-mediatypes=false\": only manifest annotations (--annotation KEY=VALUE or manifest:KEY=VALUE) have a place in a Docker manifest");
    }
    let oci_output = image_outputs
        .iter()
        .any(|o| matches!(o.kind, OutputKind::Oci(_)));
    if (opts.attest.any() && pushes(opts)) || (opts.attest.explicit() && oci_output) {
        return usage("cannot export attestations with \"oci-mediatypes=false\": add --provenance=false (buildx's default provenance is an attestation) and drop --sbom/--attest, or drop oci-mediatypes=false");
    }
    Ok(())
}

fn pushes(opts: &BuildOptions) -> bool {
    opts.push
        || opts
            .outputs
            .iter()
            .any(|o| matches!(o.kind, OutputKind::Registry { .. }))
}

/// Whether any part of the build may talk to a registry.
fn uses_registry(opts: &BuildOptions, plan: &BuildPlan) -> bool {
    pushes(opts)
        || !opts.cache_from.is_empty()
        || opts
            .cache_to
            .iter()
            .any(|c| matches!(c.target, CacheExportTarget::Registry(_)))
        || plan.stages.iter().any(|s| {
            matches!(&s.base, crate::graph::Base::Image(n) if !crate::graph::named::is_local_image(n))
                || s
                    .read_images
                    .iter()
                    .any(|n| !crate::graph::named::is_local_image(n))
        })
}

/// Whether every registry this build may talk to is on this machine (`localhost`, a loopback
/// address); a name that does not parse counts as elsewhere.
fn only_loopback_registries(opts: &BuildOptions, plan: &BuildPlan, tags: &[TagSpec]) -> bool {
    use crate::cli::cache_spec::CacheImportSource;
    use rbuild_registry::Reference;
    let mut hosts: Vec<String> = Vec::new();
    hosts.extend(opts.tags.iter().map(|r| r.registry().to_string()));
    hosts.extend(
        opts.outputs
            .iter()
            .flat_map(|o| o.names.iter().map(|n| n.registry().to_string())),
    );
    for c in &opts.cache_from {
        if let CacheImportSource::Registry(r) = &c.source {
            hosts.push(r.registry().to_string());
        }
    }
    for c in &opts.cache_to {
        if let CacheExportTarget::Registry(r) = &c.target {
            hosts.push(r.registry().to_string());
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for s in &plan.stages {
        if let crate::graph::Base::Image(n) = &s.base {
            names.push(n);
        }
        names.extend(s.read_images.iter().map(String::as_str));
    }
    for n in names
        .into_iter()
        .filter(|n| !crate::graph::named::is_local_image(n))
    {
        match n.parse::<Reference>() {
            Ok(r) => hosts.push(r.registry().to_string()),
            Err(_) => return false,
        }
    }
    // A tag spec this build pushes may name a registry the parsed tags above do not show.
    if opts.push && tags.is_empty() {
        return false;
    }
    hosts.iter().all(|h| is_loopback_host(h))
}

/// `localhost`, `127.x.y.z`, `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_localhost_and_loopback_addresses_with_or_without_a_port() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5055",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "docker.io",
            "registry:5000",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}

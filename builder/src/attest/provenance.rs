//! SLSA provenance v1 (`https://slsa.dev/provenance/v1`) as BuildKit writes it for a Dockerfile
//! build (`solver/llbsolver/provenance/predicate.go`, `types/types.go`): the build definition
//! (BuildKit's build type, the Dockerfile as config source, the frontend request with its
//! arguments, the resolved dependencies: base images by digest, the git source by commit, remote
//! files by digest) and the run details (builder id, invocation id, start and end times, how
//! complete the record is).
//!
//! `mode=min` leaves out what could leak from the build environment: build arguments and labels
//! (`build-arg:*`, `label:*`), secret and SSH ids; it says the request is then incomplete.
//! `mode=max` keeps them (ids only: a secret's value never reaches any attestation), and adds
//! the build steps with their layers and the Dockerfile's source
//! (`buildkit_metadata.source`, `buildkit_metadata.layers`, `internalParameters.buildConfig`).
//!
//! One deliberate addition: for a local context BuildKit's `configSource` has only a path;
//! rbuild also gives the Dockerfile's sha256 as its digest, so the provenance pins the exact
//! definition (a git context's config source keeps BuildKit's `sha1` commit digest).

use std::collections::BTreeMap;

use base64::Engine as _;
use rbuild_layers::{Descriptor, Digest, Platform};
use serde::Serialize;

use super::sbom::purl;

/// The in-toto predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// BuildKit's build type for SLSA v1.
pub const BUILD_TYPE: &str =
    "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md";

/// How much the provenance says (`--provenance mode=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Min,
    Max,
}

/// Where the build's context came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A directory on the build host (BuildKit's locals `context` and `dockerfile`).
    Local,
    /// A git repository: its URL (with `#ref:subdir` as given) and the commit built.
    Git { url: String, commit: String },
}

/// A base image the build resolved (`FROM`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// The reference as resolved (`alpine:3.19`, `localhost:5000/base@sha256:…`).
    pub reference: String,
    pub platform: Option<Platform>,
    /// The manifest digest it resolved to.
    pub digest: Digest,
}

/// One step of the build, for `mode=max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Indexes of the steps it builds on (its stage's previous step, `COPY --from` sources).
    pub inputs: Vec<usize>,
    /// The layer it added, if any.
    pub layer: Option<Descriptor>,
}

/// Everything the build knows that the provenance records; the caller fills it.
#[derive(Debug, Clone, Default)]
pub struct ProvenanceInput {
    pub mode: Mode,
    /// `builder-id=` (BuildKit leaves it empty by default).
    pub builder_id: String,
    /// The Dockerfile's path relative to the context (BuildKit's `filename`), as given.
    pub dockerfile_path: String,
    /// The Dockerfile's bytes (their sha256 pins the config source; `mode=max` embeds them).
    pub dockerfile: Vec<u8>,
    pub context: Option<ContextSource>,
    /// `--build-arg`s as given (`mode=max` only).
    pub build_args: BTreeMap<String, String>,
    /// `--label`s (`mode=max` only).
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    /// Other frontend options kept in both modes (`no-cache`, …), by BuildKit's names.
    pub other_args: BTreeMap<String, String>,
    /// `--secret` ids and whether each was optional (`mode=max` only; never values).
    pub secrets: Vec<(String, bool)>,
    /// `--ssh` ids (`mode=max` only).
    pub ssh: Vec<(String, bool)>,
    pub base_images: Vec<BaseImage>,
    /// Files `ADD` fetched by URL, with their digests.
    pub http: Vec<(String, Digest)>,
    /// `os/arch[/variant]` of the machine that built.
    pub builder_platform: String,
    pub invocation_id: String,
    /// RFC 3339.
    pub started_on: String,
    pub finished_on: String,
    /// `reproducible=true`.
    pub reproducible: bool,
    /// Whether RUN steps had network access (then the build is not hermetic).
    pub network: bool,
    pub steps: Vec<Step>,
    /// The VCS metadata buildx sends (`vcs:source`, `vcs:revision`), without `vcs:`.
    pub vcs: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Predicate {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: &'static str,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalParameters {
    pub config_source: ConfigSource,
    pub request: Request,
}

#[derive(Debug, Serialize, Default)]
pub struct ConfigSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct Request {
    pub frontend: &'static str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<MountId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ssh: Vec<MountId>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locals: Vec<Local>,
}

#[derive(Debug, Serialize)]
pub struct MountId {
    pub id: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

#[derive(Debug, Serialize)]
pub struct Local {
    pub name: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_config: Option<BuildConfig>,
    pub builder_platform: String,
}

#[derive(Debug, Serialize)]
pub struct BuildConfig {
    #[serde(rename = "llbDefinition")]
    pub definition: Vec<BuildStep>,
}

#[derive(Debug, Serialize)]
pub struct BuildStep {
    pub id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ResourceDescriptor {
    pub uri: String,
    pub digest: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct RunDetails {
    pub builder: Builder,
    pub metadata: Metadata,
}

#[derive(Debug, Serialize)]
pub struct Builder {
    pub id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub invocation_id: String,
    pub started_on: String,
    pub finished_on: String,
    #[serde(rename = "buildkit_metadata")]
    pub buildkit_metadata: BuildkitMetadata,
    #[serde(
        rename = "buildkit_hermetic",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub buildkit_hermetic: bool,
    #[serde(rename = "buildkit_completeness")]
    pub buildkit_completeness: Completeness,
    #[serde(
        rename = "buildkit_reproducible",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub buildkit_reproducible: bool,
}

#[derive(Debug, Serialize, Default)]
pub struct BuildkitMetadata {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub vcs: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub layers: BTreeMap<String, Vec<Vec<Descriptor>>>,
}

#[derive(Debug, Serialize)]
pub struct Source {
    pub infos: Vec<SourceInfo>,
}

#[derive(Debug, Serialize)]
pub struct SourceInfo {
    pub filename: String,
    pub language: &'static str,
    /// Go's `[]byte`: base64.
    pub data: String,
}

#[derive(Debug, Serialize)]
pub struct Completeness {
    pub request: bool,
    #[serde(rename = "resolvedDependencies")]
    pub resolved_dependencies: bool,
}

/// The predicate for `input`.
pub fn predicate(input: &ProvenanceInput) -> Predicate {
    let max = input.mode == Mode::Max;
    let mut args = input.other_args.clone();
    if let Some(t) = input.target.as_ref().filter(|t| !t.is_empty()) {
        args.insert("target".into(), t.clone());
    }
    // min: arguments and labels are left out, and the request is then said to be incomplete.
    let has_args = !input.build_args.is_empty() || !input.labels.is_empty();
    let scrubbed = !max && has_args;
    if max {
        for (k, v) in &input.build_args {
            args.insert(format!("build-arg:{k}"), v.clone());
        }
        for (k, v) in &input.labels {
            args.insert(format!("label:{k}"), v.clone());
        }
    }
    let mount_ids = |ids: &[(String, bool)]| -> Vec<MountId> {
        if !max {
            return Vec::new();
        }
        ids.iter()
            .map(|(id, optional)| MountId {
                id: id.clone(),
                optional: *optional,
            })
            .collect()
    };
    let dockerfile_digest = Digest::sha256_of(&input.dockerfile);
    let mut config_source = ConfigSource {
        path: Some(input.dockerfile_path.clone()).filter(|p| !p.is_empty()),
        ..ConfigSource::default()
    };
    let mut locals = Vec::new();
    match &input.context {
        Some(ContextSource::Git { url, commit }) => {
            config_source.uri = Some(redact_credentials(url));
            config_source.digest = commit_digest(commit);
        }
        Some(ContextSource::Local) | None => {
            config_source
                .digest
                .insert("sha256".into(), dockerfile_digest.hex().to_string());
            locals = vec![Local { name: "context" }, Local { name: "dockerfile" }];
        }
    }
    let local_context = !locals.is_empty();

    let mut deps = Vec::new();
    for b in &input.base_images {
        deps.push(ResourceDescriptor {
            uri: docker_purl(&b.reference, b.platform.as_ref()),
            digest: BTreeMap::from([("sha256".to_string(), b.digest.hex().to_string())]),
        });
    }
    if let Some(ContextSource::Git { url, commit }) = &input.context {
        let bare = url.split('#').next().unwrap_or(url);
        deps.push(ResourceDescriptor {
            uri: redact_credentials(bare),
            digest: commit_digest(commit),
        });
    }
    for (url, d) in &input.http {
        deps.push(ResourceDescriptor {
            uri: redact_credentials(url),
            digest: BTreeMap::from([("sha256".to_string(), d.hex().to_string())]),
        });
    }

    let mut metadata = BuildkitMetadata {
        vcs: input.vcs.clone(),
        ..BuildkitMetadata::default()
    };
    let mut build_config = None;
    if max {
        build_config = Some(BuildConfig {
            definition: input
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| BuildStep {
                    id: format!("step{i}"),
                    inputs: s.inputs.iter().map(|j| format!("step{j}:0")).collect(),
                })
                .collect(),
        });
        metadata.source = Some(Source {
            infos: vec![SourceInfo {
                filename: input.dockerfile_path.clone(),
                language: "Dockerfile",
                data: base64::engine::general_purpose::STANDARD.encode(&input.dockerfile),
            }],
        });
        for (i, s) in input.steps.iter().enumerate() {
            if let Some(l) = &s.layer {
                metadata
                    .layers
                    .insert(format!("step{i}:0"), vec![vec![l.clone()]]);
            }
        }
    }
    Predicate {
        build_definition: BuildDefinition {
            build_type: BUILD_TYPE,
            external_parameters: ExternalParameters {
                config_source,
                request: Request {
                    frontend: "dockerfile.v0",
                    args,
                    secrets: mount_ids(&input.secrets),
                    ssh: mount_ids(&input.ssh),
                    locals,
                },
            },
            internal_parameters: InternalParameters {
                build_config,
                builder_platform: input.builder_platform.clone(),
            },
            resolved_dependencies: deps,
        },
        run_details: RunDetails {
            builder: Builder {
                id: input.builder_id.clone(),
            },
            metadata: Metadata {
                invocation_id: input.invocation_id.clone(),
                started_on: input.started_on.clone(),
                finished_on: input.finished_on.clone(),
                buildkit_metadata: metadata,
                // A local context is not a material BuildKit can pin: never complete, never
                // hermetic (BuildKit's `incompleteMaterials` for local sources).
                buildkit_hermetic: !local_context && !input.network,
                buildkit_completeness: Completeness {
                    request: !scrubbed,
                    resolved_dependencies: !local_context,
                },
                buildkit_reproducible: input.reproducible,
            },
        },
    }
}

/// BuildKit's `digestSetForCommit`: a 64-hex commit is sha256, anything else sha1.
fn commit_digest(commit: &str) -> BTreeMap<String, String> {
    let algo = if commit.len() == 64 { "sha256" } else { "sha1" };
    BTreeMap::from([(algo.to_string(), commit.to_string())])
}

/// A URL without its user-info (BuildKit's `urlutil.RedactCredentials`: the user name stays,
/// a password becomes `xxxxx`).
fn redact_credentials(u: &str) -> String {
    match url::Url::parse(u) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("xxxxx"));
            parsed.to_string()
        }
        _ => u.to_string(),
    }
}

/// BuildKit's `purl.RefToPURL(TypeDocker, ref, platform)`: the familiar name (no `docker.io/`,
/// no `library/`), the tag as version (`latest` when there is none), a digest as the `digest`
/// qualifier, the platform as `platform=os/arch[/variant]`.
pub fn docker_purl(reference: &str, platform: Option<&Platform>) -> String {
    let (named, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    // A tag follows the last `:` after the last `/` (a registry port is before a `/`).
    let (name, tag) = match named.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (named, None),
    };
    let name = name.strip_prefix("docker.io/").unwrap_or(name);
    let name = name.strip_prefix("index.docker.io/").unwrap_or(name);
    let name = name.strip_prefix("library/").unwrap_or(name);
    let version = match (tag, digest) {
        (Some(t), _) => t,
        (None, Some(_)) => "",
        (None, None) => "latest",
    };
    let (ns, base) = match name.rsplit_once('/') {
        Some((ns, b)) => (Some(ns), b),
        None => (None, name),
    };
    let platform = platform.map(|p| {
        let mut s = format!("{}/{}", p.os, p.architecture);
        if let Some(v) = &p.variant {
            s.push('/');
            s.push_str(v);
        }
        s
    });
    let mut qualifiers = Vec::new();
    if let Some(d) = digest {
        qualifiers.push(("digest", d));
    }
    if let Some(p) = &platform {
        qualifiers.push(("platform", p.as_str()));
    }
    purl("docker", ns, base, version, &qualifiers)
}

#[cfg(test)]
mod tests;

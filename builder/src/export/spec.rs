//! What an output is (`--output type=…`), as the exporters take it. The exporters own these
//! types; the CLI parses `--output` into them (`cli::output`), so `export` never imports the CLI.

use std::path::PathBuf;

use rbuild_layers::Compression;
use rbuild_registry::Reference;

/// Where an `oci`/`docker` exporter writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Directory(PathBuf),
    Tarball(PathBuf),
    Stdout,
    /// A Docker Engine's image store (`type=docker` without `dest`, `--load`): the archive is
    /// streamed to its `/images/load` endpoint (`export::engine`).
    Engine,
}

/// What an `--output` produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputKind {
    /// An OCI image layout (directory or tarball).
    Oci(Destination),
    /// A docker-archive that `docker load` accepts.
    Docker(Destination),
    /// Push to a registry (`type=registry`, or `type=image,push=true`). `insecure` is
    /// BuildKit's `registry.insecure=true`: the names' hosts may be reached over plain HTTP or
    /// HTTPS with a certificate that is not verified.
    Registry {
        push_by_digest: bool,
        insecure: bool,
        /// BuildKit's `name-canonical=true`: `--metadata-file`'s `image.name` also lists each
        /// name as `repository@digest`.
        name_canonical: bool,
    },
    /// The final filesystem, flattened into a directory.
    Local(PathBuf),
    /// The final filesystem as one tar (`type=tar`): a `Tarball` file or `Stdout`, never a
    /// `Directory`.
    Tar(Destination),
}

impl OutputKind {
    /// Whether this output writes to standard output.
    pub fn is_stdout(&self) -> bool {
        matches!(
            self,
            OutputKind::Oci(Destination::Stdout)
                | OutputKind::Docker(Destination::Stdout)
                | OutputKind::Tar(Destination::Stdout)
        )
    }
}

/// A validated `--output`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: OutputKind,
    /// `name=` references (comma-free; several are given as a quoted field `"name=a,b"`).
    pub names: Vec<Reference>,
    pub compression: Compression,
    pub compression_level: Option<i32>,
    pub force_compression: bool,
    /// `oci-mediatypes=`: `Some(false)` asks for Docker schema2 media types; unset is OCI's
    /// (BuildKit's default since compatibility version 0.31, for every exporter).
    pub oci_media_types: Option<bool>,
    /// `oci-artifact=`: the attestation manifests' form (`Some(false)`: BuildKit's earlier
    /// one, see `attest::manifest`); unset is the OCI artifact form, BuildKit's default.
    pub oci_artifact: Option<bool>,
}

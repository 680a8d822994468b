//! User annotations (`--annotation`) as the exporters take them: already resolved against one
//! platform's image — the image manifest and the manifest's descriptor — and, for a build of
//! several platforms, the image index and the index's descriptor. The CLI parses the flags into
//! this (`cli::annotation`), refusing the index levels for a single platform, as BuildKit
//! refuses them (`exporter/containerimage/writer.go`, "index annotations not supported for
//! single platform export").

use std::collections::BTreeMap;

/// The `--annotation`s that apply to this build's images.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAnnotations {
    /// On the image manifest (part of its bytes, so of its digest); a key here wins over the
    /// `org.opencontainers.image.*` annotation rbuild writes under the same key.
    pub manifest: BTreeMap<String, String>,
    /// On the manifest's descriptor: an OCI layout's (or docker archive's) `index.json` entry.
    /// The manifest's digest does not change; a push has no descriptor to carry them.
    pub manifest_descriptor: BTreeMap<String, String>,
    /// On the image index of a build for several platforms (part of its digest).
    pub index: BTreeMap<String, String>,
    /// On the index's descriptor (an OCI layout's `index.json` entry).
    pub index_descriptor: BTreeMap<String, String>,
}

//! User annotations (`--annotation`) as the exporters take them: already resolved against the
//! build's platform, so only the two levels a single-platform image has are left — the image
//! manifest and the manifest's descriptor. The CLI parses the flags into this
//! (`cli::annotation`), refusing the index levels, as BuildKit refuses them when it exports a
//! single platform (`exporter/containerimage/writer.go`, "index annotations not supported for
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
}

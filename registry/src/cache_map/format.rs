//! rbuild's cache map: the document that lets a build on another machine reuse this one's steps.
//!
//! A cache (in a registry, in a directory, or inline in an image config) is a map from step key
//! (see the builder's `solver::key`) to what the step produced: the layer (or none, for a step
//! that changed nothing), the key of the state it ran on, the image config after it, and a short
//! description for people. Keys are content-addressed and contain no path, time or host, so
//! they mean the same thing on every machine. The layout of the surrounding manifest is in
//! `docs/cache-format.md`.
//!
//! Versioning: [`CACHE_MAP_VERSION`] is bumped whenever the meaning of a field changes; a reader
//! that meets another version refuses the map ([`CacheFormatError::UnknownVersion`]) and the
//! builder warns and builds without it, so an old and a new rbuild can share a cache ref without
//! ever misreading each other.

use std::collections::{BTreeMap, BTreeSet};

use rbuild_layers::image::config::ImageConfig;
use rbuild_layers::tar::PathIndex;
use rbuild_layers::{Descriptor, Digest};
use serde::{Deserialize, Serialize};

/// The version of the cache map this rbuild reads and writes.
pub const CACHE_MAP_VERSION: u32 = 1;

/// The top-level image-config field that carries an inline cache map (`--cache-to type=inline`).
pub const INLINE_FIELD: &str = "io.rbuild.cache.v1";

/// Largest cache map rbuild reads (a map of thousands of steps is a few MiB).
pub const MAX_CACHE_MAP_BYTES: u64 = 32 * 1024 * 1024;

/// A layer as the cache names it: the blob (compressed) and its uncompressed digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheLayer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// The layer's path index (path → kind), so an importing build can answer the lookups of
    /// a COPY or WORKDIR on top of this layer without fetching it. Absent for layers too large
    /// to index, or whose unpacked form an index cannot predict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<PathIndex>,
}

/// What one step produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheEntry {
    /// The key of the filesystem state the step ran on (`None` for a step that depends on no
    /// earlier state, such as `COPY --link`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Digest>,
    /// The layer the step wrote; `None` when it changed nothing (no layer, as BuildKit drops
    /// empty layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<CacheLayer>,
    /// The image config after the step (informational: the importing build recomputes the
    /// config from its Dockerfile). Left out of inline caches to keep image configs small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ImageConfig>,
    /// The step as progress shows it (`[base 3/4] RUN pip install -r requirements.txt`).
    #[serde(default)]
    pub description: String,
    /// When the layer was made (Unix seconds), for a build whose epoch is the clock: an
    /// importing build gives the layer's history entry this time, so that the image is the one
    /// the exporting build made (BuildKit carries `buildkit/createdat` the same way). Unknown to
    /// older readers, who ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<i64>,
    /// Other keys of the same step: *definition keys*, computed from what the step reads
    /// without reading it (a `COPY --from`'s source stage by its content identity rather than
    /// the copied files' digests), so that an importing build can find the step without
    /// fetching the source. A reader that does not compute them never looks them up, and an
    /// older reader ignores the field (unknown entry fields are ignored): no version bump.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub definition_keys: BTreeSet<Digest>,
}

/// A `RUN --mount=type=cache` directory exported with `--cache-to …,cache-mounts=ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheMountLayer {
    /// The directory's contents as a layer tar (no whiteouts).
    pub layer: CacheLayer,
}

/// The whole cache map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheMap {
    pub version: u32,
    /// `os/arch[/variant]` the steps were built for. Keys include the platform, so entries of
    /// another platform never match; the field lets the importer say so instead of missing
    /// silently.
    pub platform: String,
    /// Step key → result.
    #[serde(default)]
    pub entries: BTreeMap<Digest, CacheEntry>,
    /// Cache mount id → its contents.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cache_mounts: BTreeMap<String, CacheMountLayer>,
    /// Steps whose keys the cache carries but not their layers (BuildKit's `mode=min`: the
    /// steps of stages no exported image is built `FROM`, such as a compiler stage read only by
    /// `COPY --from`). An importer takes such a step as done — its layer's diffID gives the keys
    /// after it, its definition keys find a `COPY --from` of it — and builds it only when
    /// something needs the layer's bytes. Kept apart from `entries`, whose layers are always in
    /// the cache: a reader that does not know this field ignores it (unknown fields are
    /// ignored) and builds those steps, as it did before.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub key_only: BTreeMap<Digest, CacheEntry>,
}

/// Why a cache map cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheFormatError {
    #[error("the cache map has version {found}; this rbuild reads version {CACHE_MAP_VERSION}")]
    UnknownVersion { found: u64 },
    #[error("the cache map is not valid JSON of version {CACHE_MAP_VERSION}: {0}")]
    Json(#[source] serde_json::Error),
    #[error("the cache map names {digest} as a layer with media type {media_type}, which is not a layer type")]
    NotALayer { digest: Digest, media_type: String },
}

impl CacheMap {
    /// An empty map for `platform`.
    pub fn new(platform: impl Into<String>) -> CacheMap {
        CacheMap {
            version: CACHE_MAP_VERSION,
            platform: platform.into(),
            entries: BTreeMap::new(),
            cache_mounts: BTreeMap::new(),
            key_only: BTreeMap::new(),
        }
    }

    /// Parses and checks a map. The version is read first, so a map of a later format is
    /// reported as such rather than as invalid JSON.
    pub fn from_slice(bytes: &[u8]) -> Result<CacheMap, CacheFormatError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            version: u64,
        }
        let v: VersionOnly = serde_json::from_slice(bytes).map_err(CacheFormatError::Json)?;
        if v.version != u64::from(CACHE_MAP_VERSION) {
            return Err(CacheFormatError::UnknownVersion { found: v.version });
        }
        let map: CacheMap = serde_json::from_slice(bytes).map_err(CacheFormatError::Json)?;
        map.check()?;
        Ok(map)
    }

    /// Reads a map from a JSON value (the inline form inside an image config).
    pub fn from_value(v: &serde_json::Value) -> Result<CacheMap, CacheFormatError> {
        let bytes = serde_json::to_vec(v).map_err(CacheFormatError::Json)?;
        CacheMap::from_slice(&bytes)
    }

    fn check(&self) -> Result<(), CacheFormatError> {
        for l in self.all_layers() {
            if l.descriptor.media_type.layer_compression().is_none() {
                return Err(CacheFormatError::NotALayer {
                    digest: l.descriptor.digest.clone(),
                    media_type: l.descriptor.media_type.to_string(),
                });
            }
        }
        Ok(())
    }

    fn all_layers(&self) -> impl Iterator<Item = &CacheLayer> {
        self.entries
            .values()
            .filter_map(|e| e.layer.as_ref())
            .chain(self.cache_mounts.values().map(|m| &m.layer))
    }

    /// The canonical bytes (maps are sorted, so equal maps give equal bytes and digests).
    pub fn to_vec(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a cache map of strings, numbers and maps serialises")
    }

    /// Definition key → the key of the entry that lists it (see
    /// [`CacheEntry::definition_keys`]); a definition key two entries list goes to the first,
    /// and entries with their layer before [`CacheMap::key_only`] ones.
    pub fn definition_index(&self) -> BTreeMap<Digest, Digest> {
        let mut index = BTreeMap::new();
        for (key, e) in self.entries.iter().chain(&self.key_only) {
            for d in &e.definition_keys {
                index.entry(d.clone()).or_insert_with(|| key.clone());
            }
        }
        index
    }

    /// Every blob the map refers to, once each, in digest order (the cache manifest's layers).
    pub fn layer_descriptors(&self) -> Vec<Descriptor> {
        let mut by_digest: BTreeMap<&Digest, &Descriptor> = BTreeMap::new();
        for l in self.all_layers() {
            by_digest
                .entry(&l.descriptor.digest)
                .or_insert(&l.descriptor);
        }
        by_digest.into_values().cloned().collect()
    }

    /// The inline map of an image config, if it has one.
    pub fn from_image_config(config: &ImageConfig) -> Option<Result<CacheMap, CacheFormatError>> {
        config.extra.get(INLINE_FIELD).map(CacheMap::from_value)
    }

    /// Puts this map into `config` as its inline cache (configs and path indexes are left out
    /// of the entries, to keep the image config small).
    pub fn embed_in(&self, config: &mut ImageConfig) {
        let mut slim = self.clone();
        for e in slim.entries.values_mut() {
            e.config = None;
            if let Some(l) = e.layer.as_mut() {
                l.index = None;
            }
        }
        let v = serde_json::to_value(&slim).expect("a cache map serialises");
        config.extra.insert(INLINE_FIELD.to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rbuild_layers::MediaType;

    fn layer(seed: &[u8]) -> CacheLayer {
        CacheLayer {
            descriptor: Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(seed), 42),
            diff_id: Digest::sha256_of(&[seed, b"-diff"].concat()),
            index: None,
        }
    }

    fn sample() -> CacheMap {
        let mut m = CacheMap::new("linux/amd64");
        m.entries.insert(
            Digest::sha256_of(b"k1"),
            CacheEntry {
                created: None,
                parent: Some(Digest::sha256_of(b"p")),
                layer: Some(CacheLayer {
                    index: Some(
                        PathIndex::from_json(br#"{"app":"d","app/x":"l:../y","etc":"o"}"#).unwrap(),
                    ),
                    ..layer(b"a")
                }),
                config: None,
                description: "[base 2/3] COPY requirements.txt .".into(),
                definition_keys: BTreeSet::new(),
            },
        );
        m.entries.insert(
            Digest::sha256_of(b"k2"),
            CacheEntry {
                created: None,
                parent: Some(Digest::sha256_of(b"k1")),
                layer: None,
                config: None,
                description: "[base 3/3] RUN true".into(),
                definition_keys: BTreeSet::new(),
            },
        );
        m.cache_mounts
            .insert("pip".into(), CacheMountLayer { layer: layer(b"a") });
        m
    }

    #[test]
    fn key_only_entries_round_trip_name_no_blob_and_are_found_by_definition() {
        // Without key-only entries the field is not written (unchanged caches keep their
        // digests).
        let text = String::from_utf8(sample().to_vec()).unwrap();
        assert!(!text.contains("keyOnly"), "{text}");

        let mut m = sample();
        let def = Digest::sha256_of(b"def");
        let k3 = Digest::sha256_of(b"k3");
        m.key_only.insert(
            k3.clone(),
            CacheEntry {
                created: None,
                parent: Some(Digest::sha256_of(b"k2")),
                layer: Some(layer(b"compiler")),
                config: None,
                description: "[build 2/2] RUN make".into(),
                definition_keys: [def.clone()].into_iter().collect(),
            },
        );
        let back = CacheMap::from_slice(&m.to_vec()).unwrap();
        assert_eq!(back, m);
        assert!(
            !back
                .layer_descriptors()
                .iter()
                .any(|d| d.digest == layer(b"compiler").descriptor.digest),
            "a key-only layer is in no manifest"
        );
        assert_eq!(back.definition_index()[&def], k3);
    }

    #[test]
    fn round_trips_and_is_canonical() {
        let m = sample();
        let bytes = m.to_vec();
        let back = CacheMap::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_vec(), bytes);
    }

    #[test]
    fn definition_keys_are_written_only_when_there_are_some_and_are_indexed() {
        // A map without definition keys is byte-for-byte what rbuild wrote before the field
        // existed (so an unchanged cache keeps its manifest digest).
        let text = String::from_utf8(sample().to_vec()).unwrap();
        assert!(!text.contains("definitionKeys"), "{text}");
        assert!(sample().definition_index().is_empty());

        let mut m = sample();
        let k1 = Digest::sha256_of(b"k1");
        let def = Digest::sha256_of(b"def");
        m.entries
            .get_mut(&k1)
            .unwrap()
            .definition_keys
            .insert(def.clone());
        let bytes = m.to_vec();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(&format!(r#""definitionKeys":["{def}"]"#)),
            "{text}"
        );
        let back = CacheMap::from_slice(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.definition_index(), BTreeMap::from([(def, k1)]));
    }

    #[test]
    fn an_entry_field_this_reader_does_not_know_is_ignored() {
        // How an older rbuild reads `definitionKeys` (and how this one reads the next
        // forward-compatible addition): the entry is used, the field skipped.
        let doc = br#"{"version":1,"platform":"linux/amd64","entries":{"sha256:0000000000000000000000000000000000000000000000000000000000000000":{"description":"x","aliasesOfTheFuture":["y"]}}}"#;
        let m = CacheMap::from_slice(doc).unwrap();
        assert_eq!(m.entries.len(), 1);
    }

    #[test]
    fn layers_are_listed_once_in_digest_order() {
        let d = sample().layer_descriptors();
        assert_eq!(d.len(), 1, "the mount and the step share a blob");
    }

    #[test]
    fn a_later_version_is_reported_as_such() {
        let doc = br#"{"version": 2, "platform": "linux/amd64", "entries": {"x": 1}}"#;
        match CacheMap::from_slice(doc) {
            Err(CacheFormatError::UnknownVersion { found: 2 }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_layer_media_types_are_refused() {
        let mut m = sample();
        for l in m.entries.values_mut().filter_map(|e| e.layer.as_mut()) {
            l.descriptor.media_type = MediaType::OciImageConfig;
        }
        assert!(matches!(
            CacheMap::from_slice(&m.to_vec()),
            Err(CacheFormatError::NotALayer { .. })
        ));
    }

    proptest::proptest! {
        // SECURITY.md "Fuzzing: cache-config import": whatever a registry serves, parsing
        // returns an error or a checked map, never panics.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = CacheMap::from_slice(&bytes);
        }

        // Mutating one byte of a valid map gives an error or a map that still passes `check`
        // (every layer has a layer media type) and round-trips.
        #[test]
        fn mutated_maps_are_refused_or_still_valid(pos in 0usize..4096, byte in proptest::num::u8::ANY) {
            let mut bytes = sample().to_vec();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(m) = CacheMap::from_slice(&bytes) {
                proptest::prop_assert!(m.check().is_ok());
                proptest::prop_assert_eq!(CacheMap::from_slice(&m.to_vec()).ok(), Some(m));
            }
        }
    }

    #[test]
    fn garbage_is_a_json_error() {
        assert!(matches!(
            CacheMap::from_slice(b"{\"version\":1,\"entries\":[]}"),
            Err(CacheFormatError::Json(_))
        ));
        assert!(matches!(
            CacheMap::from_slice(b"not json"),
            Err(CacheFormatError::Json(_))
        ));
    }

    #[test]
    fn inline_maps_round_trip_through_an_image_config_without_configs() {
        let mut m = sample();
        let cfg = ImageConfig::new("linux", "amd64");
        if let Some(e) = m.entries.values_mut().next() {
            e.config = Some(cfg.clone());
        }
        let mut image = cfg;
        m.embed_in(&mut image);
        let back = CacheMap::from_image_config(&image).unwrap().unwrap();
        assert!(back.entries.values().all(|e| e.config.is_none()));
        assert_eq!(back.entries.len(), 2);
        assert!(
            back.entries
                .values()
                .filter_map(|e| e.layer.as_ref())
                .all(|l| l.index.is_none()),
            "path indexes stay out of image configs"
        );
    }

    #[test]
    fn a_layer_carries_its_path_index_as_a_compact_map() {
        let bytes = sample().to_vec();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.contains(r#""index":{"app":"d","app/x":"l:../y","etc":"o"}"#),
            "{text}"
        );
        let back = CacheMap::from_slice(&bytes).unwrap();
        let idx = back.entries[&Digest::sha256_of(b"k1")]
            .layer
            .as_ref()
            .and_then(|l| l.index.as_ref())
            .unwrap();
        assert_eq!(idx.len(), 3);
        // An index that could not come from a layer makes the map unreadable.
        let bad = text.replace(r#""app":"d""#, r#""app":"f""#);
        assert!(CacheMap::from_slice(bad.as_bytes()).is_err());
    }
}

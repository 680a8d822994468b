//! The cache-map format of the remote cache (`--cache-to` / `--cache-from`; the builder's
//! side is `rbuild::remote_cache`): the map ([`format`]), and reading and writing it in a registry ([`remote`]: a cache manifest,
//! or inline in an image config) or an OCI layout directory ([`layout`]). The format is
//! specified in `docs/cache-format.md`.

pub mod error;
pub mod format;
pub mod layout;
pub mod remote;

pub use error::{CacheLoadError, CacheWriteError};
pub use format::{
    CacheEntry, CacheFormatError, CacheLayer, CacheMap, CacheMountLayer, CACHE_MAP_VERSION,
    INLINE_FIELD, MAX_CACHE_MAP_BYTES,
};
pub use layout::{import_layout_blob, read_layout_cache, write_layout_cache, LayoutCache};
pub use remote::{fetch_cache, push_cache, store_cache_manifest, CacheKind, RemoteCache};

#[cfg(test)]
mod tests {
    use super::*;

    /// The example map in docs/cache-format.md is a valid map and round-trips unchanged.
    #[test]
    fn the_documented_example_map_is_valid_and_canonical() {
        let doc = include_str!("../../../docs/cache-format.md");
        let example = doc
            .split("```json\n")
            .map(|b| b.split("```").next().expect("split yields one piece"))
            .find(|b| b.contains("\"version\": 1"))
            .expect("the doc has an example map");
        let map = CacheMap::from_slice(example.as_bytes()).expect("the example parses");
        let value: serde_json::Value = serde_json::from_str(example).expect("json");
        let back: serde_json::Value = serde_json::from_slice(&map.to_vec()).expect("json");
        assert_eq!(
            back, value,
            "the example has every field the map writes, and no other"
        );
        assert_eq!(map.layer_descriptors().len(), 2);
        assert_eq!(
            INLINE_FIELD, "io.rbuild.cache.v1",
            "the documented field name"
        );
    }
}

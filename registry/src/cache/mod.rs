//! Build caches that travel between machines (`--cache-to` / `--cache-from`): the cache map
//! format ([`format`]), and reading and writing it in a registry or an OCI layout directory.

pub mod format;

pub use format::{
    CacheEntry, CacheFormatError, CacheLayer, CacheMap, CacheMountLayer, CACHE_MAP_VERSION,
    INLINE_FIELD,
};

//! Build caches that travel between machines (`--cache-to` / `--cache-from`): the cache map
//! format ([`format`]), and reading and writing it in a registry ([`remote`]: a cache manifest,
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

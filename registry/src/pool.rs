//! One connected client per registry host, shared by every thread of a build: base-image
//! pulls, lazily fetched layers, uploads ahead, pushes and cache import/export all reach a
//! registry through the same [`Registries`], so a host's token is asked for once.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::{ClientOptions, Registry, RegistryError};

/// One connection (with its auth state) per registry host.
pub struct Registries {
    opts: ClientOptions,
    pool: Mutex<BTreeMap<String, Arc<Registry>>>,
}

impl Registries {
    pub fn new(opts: ClientOptions) -> Registries {
        Registries {
            opts,
            pool: Mutex::new(BTreeMap::new()),
        }
    }

    /// The client for `host`, connected on first use.
    pub fn get(&self, host: &str) -> Result<Arc<Registry>, RegistryError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = pool.get(host) {
            return Ok(r.clone());
        }
        let r = Arc::new(Registry::connect(host, &self.opts)?);
        pool.insert(host.to_string(), r.clone());
        Ok(r)
    }
}

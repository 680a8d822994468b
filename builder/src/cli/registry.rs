//! How registries are reached, from the flags every registry-using command shares
//! (`--insecure-registry`, `--registry-ca HOST=FILE`, `--tls-verify`, `--registry-mirror`) and
//! `registries.conf`: one place for `build` and `login`.

use std::path::PathBuf;

use rbuild_registry::ClientOptions;

use super::args::RegistryArgs;
use super::options::{absolute, UsageError};

/// The registry flags as client options (CA files made absolute against the working
/// directory), with `registries.conf` read (an invalid one is an error naming the file).
pub fn registry_options(a: &RegistryArgs) -> Result<ClientOptions, UsageError> {
    let conf = rbuild_registry::registries_conf::RegistriesConf::load()
        .map_err(|e| UsageError::Value(e.to_string()))?;
    for m in &a.registry_mirrors {
        if m.is_empty() || m.contains("://") {
            return Err(UsageError::Value(format!(
                "--registry-mirror {m:?}: expected HOST[:PORT][/PATH] (no scheme)"
            )));
        }
    }
    let mut opts = ClientOptions {
        insecure: a.insecure_registries.clone(),
        skip_tls_verify: a.tls_verify == Some(false),
        registries_conf: std::sync::Arc::new(conf),
        registry_mirrors: a.registry_mirrors.clone(),
        ..ClientOptions::default()
    };
    for spec in &a.registry_cas {
        let (host, file) = spec
            .split_once('=')
            .filter(|(h, f)| !h.is_empty() && !f.is_empty())
            .ok_or_else(|| {
                UsageError::Value(format!("--registry-ca {spec:?}: expected HOST[:PORT]=FILE"))
            })?;
        let file = absolute(&PathBuf::from(file))?;
        opts.ca_files.push((host.to_string(), file));
    }
    Ok(opts)
}

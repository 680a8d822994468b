//! How registries are reached, from the flags every registry-using command shares
//! (`--insecure-registry`, `--registry-ca HOST=FILE`, `--tls-verify`): one place for `build` and `login`.

use std::path::PathBuf;

use rbuild_registry::ClientOptions;

use super::args::RegistryArgs;
use super::options::{absolute, UsageError};

/// `--insecure-registry` and `--registry-ca HOST=FILE` as client options (CA files made
/// absolute against the working directory).
pub fn registry_options(a: &RegistryArgs) -> Result<ClientOptions, UsageError> {
    let mut opts = ClientOptions {
        insecure: a.insecure_registries.clone(),
        skip_tls_verify: a.tls_verify == Some(false),
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

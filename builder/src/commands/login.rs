//! `rbuild login REGISTRY -u USER --password-stdin`: checks the credentials against the
//! registry (`GET /v2/`, answering its Basic or Bearer challenge) and stores them the way
//! `docker login` does: with the credential helper Docker's config.json names for the registry
//! (`credHelpers`, `credsStore`), else in the file itself. The password is read from standard
//! input only, and never printed.

use std::io::Read;

use rbuild_registry::auth::credentials;
use rbuild_registry::{Credential, Registry, Secret};

use super::Failure;
use crate::cli::args::LoginArgs;
use crate::cli::registry::registry_options;
use crate::errors::error_chain;

pub fn run(a: &LoginArgs) -> Result<(), Failure> {
    let mut opts = registry_options(&a.registry_opts)?;
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .map_err(|e| Failure::Usage(format!("error: reading the password from stdin: {e}")))?;
    // `echo pw | rbuild login` sends a trailing newline, which docker strips too.
    let password = Secret::new(password.trim_end_matches(['\n', '\r']));
    if password.expose().is_empty() {
        return Err(Failure::Usage(
            "error: the password read from stdin is empty".into(),
        ));
    }
    let host = a.registry.trim_end_matches('/');
    let host = host
        .strip_prefix("https://")
        .or_else(|| host.strip_prefix("http://"))
        .unwrap_or(host);
    opts.credential = Some(Credential::Basic {
        username: a.username.clone(),
        password: password.clone(),
    });
    let reg = Registry::connect(host, &opts)
        .and_then(|r| r.ping().map(|()| r))
        .map_err(|e| {
            Failure::Build(anyhow::anyhow!(
                "login to {host} failed: {}",
                error_chain(&e)
            ))
        })?;
    let path = credentials::docker_config_path().ok_or_else(|| {
        Failure::Usage(
            "error: neither DOCKER_CONFIG nor HOME is set; nowhere to store the login".into(),
        )
    })?;
    let stored = credentials::store_login(&path, reg.host(), &a.username, &password)
        .map_err(|e| Failure::Build(anyhow::Error::new(e)))?;
    match stored {
        credentials::LoginStored::File => {
            eprintln!("Login Succeeded (credentials stored in {})", path.display())
        }
        credentials::LoginStored::Helper(h) => eprintln!(
            "Login Succeeded (credentials stored with docker-credential-{h}, named in {})",
            path.display()
        ),
    }
    Ok(())
}

//! Credentials: a type that never prints its secret, and the places Docker and the containers
//! tools keep them.
//!
//! Lookup order for a registry host (first hit wins), containers/image's
//! (containers-auth.json(5)): `$REGISTRY_AUTH_FILE`; `$XDG_RUNTIME_DIR/containers/auth.json`
//! (without `XDG_RUNTIME_DIR`, `/run/containers/$UID/auth.json`); `$XDG_CONFIG_HOME/containers/
//! auth.json` (default `~/.config/containers/auth.json`); Docker's `$DOCKER_CONFIG/config.json`
//! (without `DOCKER_CONFIG`, `~/.docker/config.json`). containers/image skips the runtime file
//! when `REGISTRY_AUTH_FILE` is set; rbuild reads it after, as it always did. Each file is
//! read the same way: `credHelpers[host]`, then `auths` with `auth` (base64 `user:password`)
//! or `identitytoken`, then `credsStore`. Keys of `auths` may be written as URLs
//! (`https://host/v1/`); Docker Hub's key is `https://index.docker.io/v1/`. Not read: the
//! legacy `~/.dockercfg`. A mirror is a registry of its own: it gets the credentials of its
//! own host, never those of the registry it mirrors.
//! A helper is run as `docker-credential-<name> get` with the host on stdin (docker-credential-
//! helpers protocol; run under a timeout and an output cap by [`super::helper`]); a `Username`
//! of `<token>` means the secret is an identity token.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rbuild_layers::atomic;
use serde_json::Value;

use crate::error::RegistryError;

/// Docker Hub's key in `auths` and for credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A secret string: `Debug` and `Display` print `****`, so it cannot leak into logs or errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself, for the one place that sends it (an HTTP header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: Secret,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token endpoint.
    IdentityToken(Secret),
}

/// Where a credential was found (named in authentication errors; never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    None,
    File(PathBuf),
    Helper(String),
    Explicit,
}

impl fmt::Display for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialSource::None => f.write_str("nowhere (anonymous)"),
            CredentialSource::File(p) => write!(f, "{}", p.display()),
            CredentialSource::Helper(h) => write!(f, "credential helper docker-credential-{h}"),
            CredentialSource::Explicit => f.write_str("the command line"),
        }
    }
}

/// The key a host has in config files.
fn config_key(host: &str) -> &str {
    if host == crate::DEFAULT_REGISTRY {
        DOCKER_HUB_KEY
    } else {
        host
    }
}

/// `https://host/v1/` → `host`, as Docker normalises `auths` keys.
fn normalise_key(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    if k == "index.docker.io" || k == "registry-1.docker.io" {
        crate::DEFAULT_REGISTRY
    } else {
        k
    }
}

/// Docker's config.json path.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

fn read_json(path: &Path) -> Result<Option<Value>, RegistryError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RegistryError::Config {
                path: path.to_path_buf(),
                reason: format!("invalid JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(RegistryError::Io {
            op: "reading",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The `auths` entry for `host` in a parsed config file.
fn from_auths(doc: &Value, host: &str, path: &Path) -> Result<Option<Credential>, RegistryError> {
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let Some(entry) = auths
        .iter()
        .find(|(k, _)| normalise_key(k) == host)
        .map(|(_, v)| v)
    else {
        return Ok(None);
    };
    if let Some(t) = entry
        .get("identitytoken")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(Credential::IdentityToken(Secret::new(t))));
    }
    let Some(auth) = entry
        .get("auth")
        .and_then(Value::as_str)
        .filter(|a| !a.is_empty())
    else {
        return Ok(None);
    };
    let bad = |reason: &str| RegistryError::Config {
        path: path.to_path_buf(),
        reason: format!("auths[{host:?}].auth {reason}"),
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|_| bad("is not base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad("is not UTF-8"))?;
    let (user, pass) = decoded
        .split_once(':')
        .ok_or_else(|| bad("is not base64 of user:password"))?;
    Ok(Some(Credential::Basic {
        username: user.to_string(),
        password: Secret::new(pass),
    }))
}

/// Runs `docker-credential-<helper> get` for `host` (bounded: see [`super::helper`]).
fn from_helper(helper: &str, host: &str) -> Result<Option<Credential>, RegistryError> {
    super::helper::get(helper, host, config_key(host))
}

fn from_docker_config(
    path: &Path,
    host: &str,
) -> Result<Option<(Credential, CredentialSource)>, RegistryError> {
    let Some(doc) = read_json(path)? else {
        return Ok(None);
    };
    let helper = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalise_key(k) == host)
                .and_then(|(_, v)| v.as_str())
        });
    if let Some(h) = helper {
        return Ok(from_helper(h, host)?.map(|c| (c, CredentialSource::Helper(h.to_string()))));
    }
    if let Some(c) = from_auths(&doc, host, path)? {
        return Ok(Some((c, CredentialSource::File(path.to_path_buf()))));
    }
    if let Some(store) = doc
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        return Ok(from_helper(store, host)?.map(|c| (c, CredentialSource::Helper(store.into()))));
    }
    Ok(None)
}

/// The files credentials are looked up in, in order (see the module doc), with `var` reading
/// the environment and `uid` the user's id (for `/run/containers/$UID`).
pub fn auth_file_paths(var: impl Fn(&str) -> Option<std::ffi::OsString>, uid: u32) -> Vec<PathBuf> {
    let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut paths = Vec::new();
    paths.extend(var("REGISTRY_AUTH_FILE"));
    paths.push(match var("XDG_RUNTIME_DIR") {
        Some(run) => run.join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
    });
    let home = var("HOME");
    if let Some(config) =
        var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
    {
        paths.push(config.join("containers/auth.json"));
    }
    match var("DOCKER_CONFIG") {
        Some(d) => paths.push(d.join("config.json")),
        None => paths.extend(home.map(|h| h.join(".docker/config.json"))),
    }
    paths
}

/// Finds credentials for `host` (see the module doc for the order).
pub fn lookup(host: &str) -> Result<Option<(Credential, CredentialSource)>, RegistryError> {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    for p in auth_file_paths(|k| std::env::var_os(k), uid) {
        if let Some(found) = from_docker_config(&p, host)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Stores `username`/`password` for `host` in Docker's config.json the way `docker login` does
/// without a credential store (`auths[host].auth = base64(user:password)`), keeping every
/// other key. Written to a temp file (mode 0600), fsynced and renamed.
pub fn store_login(
    path: &Path,
    host: &str,
    username: &str,
    password: &Secret,
) -> Result<(), RegistryError> {
    let mut doc = read_json(path)?.unwrap_or_else(|| Value::Object(Default::default()));
    let obj = doc.as_object_mut().ok_or_else(|| RegistryError::Config {
        path: path.to_path_buf(),
        reason: "the top level is not a JSON object".into(),
    })?;
    let auths = obj
        .entry("auths")
        .or_insert_with(|| Value::Object(Default::default()));
    let auths = auths.as_object_mut().ok_or_else(|| RegistryError::Config {
        path: path.to_path_buf(),
        reason: "`auths` is not a JSON object".into(),
    })?;
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{username}:{}", password.expose()));
    auths.retain(|k, _| normalise_key(k) != host);
    auths.insert(
        config_key(host).to_string(),
        serde_json::json!({ "auth": encoded }),
    );
    let io = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| RegistryError::Io {
            op,
            path: p,
            source,
        }
    };
    let dir = atomic::parent_of(path);
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value always serialises");
    atomic::write(path, &bytes, CONFIG_WRITE).map_err(|e| RegistryError::Io {
        op: e.op,
        path: e.path,
        source: e.source,
    })
}

/// How `config.json` is replaced: mode 0600 (it holds passwords), a temp named after it. The
/// directory is not fsynced, like `docker login`'s own write: a login lost in a crash is redone.
const CONFIG_WRITE: atomic::Options = atomic::Options::new()
    .mode(atomic::Mode::Private)
    .prefix(".config.json")
    .without_dir_sync();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let c = Credential::Basic {
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(Secret::new("x").to_string(), "****");
    }

    #[test]
    fn auths_entries_decode_and_keys_normalise() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        let doc = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": "dTpw"},
            "127.0.0.1:5000": {"identitytoken": "tok"},
        }});
        assert_eq!(
            from_auths(&doc, "docker.io", &p).expect("parse"),
            Some(Credential::Basic {
                username: "u".into(),
                password: Secret::new("p")
            })
        );
        assert_eq!(
            from_auths(&doc, "127.0.0.1:5000", &p).expect("parse"),
            Some(Credential::IdentityToken(Secret::new("tok")))
        );
        assert_eq!(from_auths(&doc, "other", &p).expect("parse"), None);
    }

    #[test]
    fn auth_files_are_read_in_containers_image_order() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| std::ffi::OsString::from(v))
            }
        };
        let all = auth_file_paths(
            env(&[
                ("REGISTRY_AUTH_FILE", "/a/auth.json"),
                ("XDG_RUNTIME_DIR", "/run/user/1000"),
                ("XDG_CONFIG_HOME", "/cfg"),
                ("HOME", "/home/u"),
                ("DOCKER_CONFIG", "/dc"),
            ]),
            1000,
        );
        assert_eq!(
            all,
            [
                "/a/auth.json",
                "/run/user/1000/containers/auth.json",
                "/cfg/containers/auth.json",
                "/dc/config.json"
            ]
            .map(PathBuf::from)
        );
        let defaults = auth_file_paths(env(&[("HOME", "/root"), ("DOCKER_CONFIG", "")]), 0);
        assert_eq!(
            defaults,
            [
                "/run/containers/0/auth.json",
                "/root/.config/containers/auth.json",
                "/root/.docker/config.json"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn login_writes_what_lookup_reads_and_keeps_other_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"auths":{"h:1":{"auth":"eDp5"}},"psFormat":"x"}"#).expect("write");
        store_login(&p, "h:1", "me", &Secret::new("s3cret")).expect("login");
        let doc = read_json(&p).expect("read").expect("exists");
        assert_eq!(doc["psFormat"], "x");
        assert_eq!(
            from_auths(&doc, "h:1", &p).expect("parse"),
            Some(Credential::Basic {
                username: "me".into(),
                password: Secret::new("s3cret")
            })
        );
    }
}

//! Credentials: a type that never prints its secret, and the places Docker and the containers
//! tools keep them.
//!
//! Lookup order for a repository on a registry host (first file with an answer wins),
//! containers/image's (containers-auth.json(5)): `$REGISTRY_AUTH_FILE`;
//! `$XDG_RUNTIME_DIR/containers/auth.json` (without `XDG_RUNTIME_DIR`,
//! `/run/containers/$UID/auth.json`); `$XDG_CONFIG_HOME/containers/auth.json` (default
//! `~/.config/containers/auth.json`); Docker's `$DOCKER_CONFIG/config.json` (without
//! `DOCKER_CONFIG`, `~/.docker/config.json`); and, only when that Docker config does not exist
//! (Docker's `cli/config.Load`), the legacy `~/.dockercfg`, a flat JSON map of `auths`
//! entries. containers/image skips the runtime file when `REGISTRY_AUTH_FILE` is set; rbuild
//! reads it after, as it always did.
//!
//! Each file is read the same way (containers/image's `findCredentialsInFile`):
//! `credHelpers[host]` (helpers are per host, never per repository); then `auths` keys from
//! the most specific to the host — for `host/ns/sub/repo`: `host/ns/sub/repo`, `host/ns/sub`,
//! `host/ns`, `host` — each an exact match; then a key written as a URL (`https://host/v1/`,
//! cut to its host; Docker Hub's key is `https://index.docker.io/v1/`); then `credsStore`. An
//! entry holds `auth` (base64 `user:password`) or `identitytoken`. Repository and namespace
//! keys are not read from `.dockercfg` (neither tool does). A mirror is a registry of its
//! own: it gets the credentials of its own host (and repositories there), never those of the
//! registry it mirrors.
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

/// The host a key names when it is a URL (`https://host/v1/` → `host`), as Docker wrote them,
/// or any key of the legacy `.dockercfg`; other keys stay whole, so `host/ns` stays a
/// namespace key (containers/image's `normalizeAuthFileKey`).
fn normalise_key(key: &str, legacy: bool) -> &str {
    let stripped = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"));
    let k = match stripped {
        Some(rest) => rest.split('/').next().unwrap_or(rest),
        None if legacy => key.split('/').next().unwrap_or(key),
        None => key,
    };
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

/// The `auths` keys that may hold credentials for `repository` on `host`, most specific
/// first: `host/a/b/c`, `host/a/b`, `host/a`, `host` (containers/image's `authKeysForKey`).
/// Docker Hub's repositories are keyed under `docker.io`.
fn keys_for(host: &str, repository: Option<&str>) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(repo) = repository.filter(|r| !r.is_empty()) {
        let mut key = format!("{host}/{repo}");
        loop {
            keys.push(key.clone());
            match key.rfind('/') {
                Some(i) if i > host.len() => key.truncate(i),
                _ => break,
            }
        }
    }
    keys.push(host.to_string());
    keys
}

/// The `auths` entry for `repository` on `host` in a parsed config file (see the module doc:
/// exact keys from the most specific, then URL keys of the host). `legacy` is `.dockercfg`,
/// whose keys name hosts only.
fn from_auths(
    doc: &Value,
    host: &str,
    repository: Option<&str>,
    path: &Path,
    legacy: bool,
) -> Result<Option<Credential>, RegistryError> {
    let Some(auths) = doc.get("auths").and_then(Value::as_object) else {
        return Ok(None);
    };
    let keys = if legacy {
        vec![host.to_string()]
    } else {
        keys_for(host, repository)
    };
    let exact = keys.iter().find_map(|k| auths.get_key_value(k.as_str()));
    let Some((key, entry)) =
        exact.or_else(|| auths.iter().find(|(k, _)| normalise_key(k, legacy) == host))
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
        reason: format!("auths[{key:?}].auth {reason}"),
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

/// Looks `repository` on `host` up in one auth file (see the module doc for the order).
fn from_auth_file(
    file: &AuthFile,
    host: &str,
    repository: Option<&str>,
) -> Result<Option<(Credential, CredentialSource)>, RegistryError> {
    let path = file.path.as_path();
    let Some(mut doc) = read_json(path)? else {
        return Ok(None);
    };
    let legacy = file.is_legacy();
    if legacy {
        // `.dockercfg` is the `auths` map itself.
        doc = serde_json::json!({ "auths": doc });
    }
    let helper = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalise_key(k, false) == host)
                .and_then(|(_, v)| v.as_str())
        });
    if let Some(h) = helper {
        return Ok(from_helper(h, host)?.map(|c| (c, CredentialSource::Helper(h.to_string()))));
    }
    if let Some(c) = from_auths(&doc, host, repository, path, legacy)? {
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

/// One file credentials are looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFile {
    pub path: PathBuf,
    /// For the legacy `~/.dockercfg`: the Docker config whose existence makes it unread.
    pub legacy_unless: Option<PathBuf>,
}

impl AuthFile {
    /// An `auth.json` / `config.json` file.
    pub fn json(path: impl Into<PathBuf>) -> AuthFile {
        AuthFile {
            path: path.into(),
            legacy_unless: None,
        }
    }

    fn is_legacy(&self) -> bool {
        self.legacy_unless.is_some()
    }

    /// Whether the file is read at all: `.dockercfg` only when Docker's config.json is absent.
    fn in_force(&self) -> bool {
        self.legacy_unless
            .as_ref()
            .is_none_or(|config| !config.exists())
    }
}

/// The files credentials are looked up in, in order (see the module doc), with `var` reading
/// the environment and `uid` the user's id (for `/run/containers/$UID`).
pub fn auth_file_paths(
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
    uid: u32,
) -> Vec<AuthFile> {
    let var = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let mut paths = Vec::new();
    paths.extend(var("REGISTRY_AUTH_FILE").map(AuthFile::json));
    paths.push(AuthFile::json(match var("XDG_RUNTIME_DIR") {
        Some(run) => run.join("containers/auth.json"),
        None => PathBuf::from(format!("/run/containers/{uid}/auth.json")),
    }));
    let home = var("HOME");
    if let Some(config) =
        var("XDG_CONFIG_HOME").or_else(|| home.as_ref().map(|h| h.join(".config")))
    {
        paths.push(AuthFile::json(config.join("containers/auth.json")));
    }
    let docker = match var("DOCKER_CONFIG") {
        Some(d) => Some(d.join("config.json")),
        None => home.as_ref().map(|h| h.join(".docker/config.json")),
    };
    if let Some(docker) = docker {
        paths.push(AuthFile::json(&docker));
        // Docker's cli/config reads `$HOME/.dockercfg` (whatever DOCKER_CONFIG says) when
        // config.json does not exist.
        if let Some(h) = &home {
            paths.push(AuthFile {
                path: h.join(".dockercfg"),
                legacy_unless: Some(docker),
            });
        }
    }
    paths
}

/// The default auth files of this process (environment and user id).
pub fn default_auth_files() -> Vec<AuthFile> {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    auth_file_paths(|k| std::env::var_os(k), outside_uid(uid, &map))
}

/// The user id `uid` of this process's user namespace is in the parent one, by `uid_map`
/// (`inside outside count` lines). A rootless rbuild is uid 0 of its own namespace, but its
/// runtime auth file is the user's, `/run/containers/<the user's uid>/auth.json`, never root's.
pub fn outside_uid(uid: u32, uid_map: &str) -> u32 {
    uid_map
        .lines()
        .filter_map(|l| {
            let n: Vec<u64> = l
                .split_whitespace()
                .filter_map(|t| t.parse().ok())
                .collect();
            match n[..] {
                [inside, outside, count] => Some((inside, outside, count)),
                _ => None,
            }
        })
        .find(|(inside, _, count)| (*inside..inside + count).contains(&u64::from(uid)))
        .and_then(|(inside, outside, _)| u32::try_from(outside + (u64::from(uid) - inside)).ok())
        .unwrap_or(uid)
}

/// Finds credentials for `repository` (`None`: the registry itself) on `host` in `files`
/// (see the module doc for the order).
pub fn lookup_in(
    files: &[AuthFile],
    host: &str,
    repository: Option<&str>,
) -> Result<Option<(Credential, CredentialSource)>, RegistryError> {
    for f in files.iter().filter(|f| f.in_force()) {
        if let Some(found) = from_auth_file(f, host, repository)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// Finds credentials for `repository` on `host` in the default files.
pub fn lookup(
    host: &str,
    repository: Option<&str>,
) -> Result<Option<(Credential, CredentialSource)>, RegistryError> {
    lookup_in(&default_auth_files(), host, repository)
}

/// Where [`store_login`] put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginStored {
    /// In the config file itself (`auths[host].auth`).
    File,
    /// With this credential helper (`credHelpers[host]` or `credsStore`); the config file
    /// keeps an empty `auths[host]` entry, as `docker login` leaves it.
    Helper(String),
}

/// Stores `username`/`password` for `host` the way `docker login` does: with the config's
/// credential helper for that host (`credHelpers[host]`, else `credsStore`) when it names one
/// (`docker-credential-<name> store`), else in the config file itself (`auths[host].auth =
/// base64(user:password)`). Every other key is kept. The file is written to a temp file (mode
/// 0600), fsynced and renamed.
pub fn store_login(
    path: &Path,
    host: &str,
    username: &str,
    password: &Secret,
) -> Result<LoginStored, RegistryError> {
    store_login_with(path, host, username, password, |helper, key| {
        super::helper::store(helper, host, key, username, password)
    })
}

/// [`store_login`] with `store_in(helper, key)` standing for running a helper's `store`.
fn store_login_with(
    path: &Path,
    host: &str,
    username: &str,
    password: &Secret,
    store_in: impl FnOnce(&str, &str) -> Result<(), RegistryError>,
) -> Result<LoginStored, RegistryError> {
    let mut doc = read_json(path)?.unwrap_or_else(|| Value::Object(Default::default()));
    let helper = login_helper(&doc, host);
    if let Some(h) = &helper {
        store_in(h, config_key(host))?;
    }
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
    auths.retain(|k, _| normalise_key(k, false) != host);
    let entry = match &helper {
        // Nothing secret stays in the file: the helper holds it.
        Some(_) => serde_json::json!({}),
        None => {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()));
            serde_json::json!({ "auth": encoded })
        }
    };
    auths.insert(config_key(host).to_string(), entry);
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
    })?;
    Ok(helper.map_or(LoginStored::File, LoginStored::Helper))
}

/// The credential helper a login for `host` goes to: `credHelpers[host]`, else `credsStore`.
fn login_helper(doc: &Value, host: &str) -> Option<String> {
    let per_host = doc
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| {
            h.iter()
                .find(|(k, _)| normalise_key(k, false) == host)
                .and_then(|(_, v)| v.as_str())
        });
    per_host
        .or_else(|| doc.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
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
            from_auths(&doc, "docker.io", None, &p, false).expect("parse"),
            Some(Credential::Basic {
                username: "u".into(),
                password: Secret::new("p")
            })
        );
        assert_eq!(
            from_auths(&doc, "127.0.0.1:5000", None, &p, false).expect("parse"),
            Some(Credential::IdentityToken(Secret::new("tok")))
        );
        assert_eq!(
            from_auths(&doc, "other", None, &p, false).expect("parse"),
            None
        );
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
        let paths = |files: Vec<AuthFile>| -> Vec<(PathBuf, Option<PathBuf>)> {
            files
                .into_iter()
                .map(|f| (f.path, f.legacy_unless))
                .collect()
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
        let json = |p: &str| (PathBuf::from(p), None);
        let legacy = |p: &str, unless: &str| (PathBuf::from(p), Some(PathBuf::from(unless)));
        assert_eq!(
            paths(all),
            [
                json("/a/auth.json"),
                json("/run/user/1000/containers/auth.json"),
                json("/cfg/containers/auth.json"),
                json("/dc/config.json"),
                legacy("/home/u/.dockercfg", "/dc/config.json"),
            ]
        );
        assert_eq!(outside_uid(0, "0 1000 1\n1 100000 65536\n"), 1000);
        assert_eq!(outside_uid(5, "0 1000 1\n1 100000 65536\n"), 100004);
        assert_eq!(outside_uid(7, "         0          0 4294967295\n"), 7);
        assert_eq!(outside_uid(7, ""), 7);
        let defaults = auth_file_paths(env(&[("HOME", "/root"), ("DOCKER_CONFIG", "")]), 0);
        assert_eq!(
            paths(defaults),
            [
                json("/run/containers/0/auth.json"),
                json("/root/.config/containers/auth.json"),
                json("/root/.docker/config.json"),
                legacy("/root/.dockercfg", "/root/.docker/config.json"),
            ]
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
            from_auths(&doc, "h:1", None, &p, false).expect("parse"),
            Some(Credential::Basic {
                username: "me".into(),
                password: Secret::new("s3cret")
            })
        );
    }

    /// Issue 15: "`rbuild login` honours `credsStore`" (and `credHelpers`, which wins for its
    /// host), leaving only an empty `auths` entry in the file, as `docker login` does.
    #[test]
    fn login_goes_to_the_credential_helper_the_config_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"auths":{"h:1":{"auth":"eDp5"}},"credsStore":"pass","credHelpers":{"g:2":"gcr"}}"#,
        )
        .expect("write");
        let mut asked = Vec::new();
        let stored = store_login_with(&p, "h:1", "me", &Secret::new("s3cret"), |h, k| {
            asked.push((h.to_string(), k.to_string()));
            Ok(())
        })
        .expect("login");
        assert_eq!(stored, LoginStored::Helper("pass".into()));
        let stored = store_login_with(&p, "g:2", "me", &Secret::new("s3cret"), |h, k| {
            asked.push((h.to_string(), k.to_string()));
            Ok(())
        })
        .expect("login");
        assert_eq!(stored, LoginStored::Helper("gcr".into()));
        assert_eq!(
            asked,
            [("pass".into(), "h:1".into()), ("gcr".into(), "g:2".into())]
        );
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(!text.contains("s3cret") && !text.contains("eDp5"), "{text}");
        let doc: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(doc["auths"]["h:1"], serde_json::json!({}));
        assert_eq!(doc["auths"]["g:2"], serde_json::json!({}));
        assert_eq!(doc["credsStore"], "pass");
    }

    #[test]
    fn a_login_the_helper_refuses_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("config.json");
        let before = r#"{"auths":{"h:1":{"auth":"eDp5"}},"credsStore":"pass"}"#;
        std::fs::write(&p, before).expect("write");
        let e = store_login_with(&p, "h:1", "me", &Secret::new("s3cret"), |h, _| {
            Err(RegistryError::CredentialHelper {
                helper: h.into(),
                registry: "h:1".into(),
                reason: "locked".into(),
            })
        })
        .expect_err("refused");
        assert!(e.to_string().contains("locked"), "{e}");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), before);
    }

    fn basic(user: &str, pass: &str) -> Option<Credential> {
        Some(Credential::Basic {
            username: user.into(),
            password: Secret::new(pass),
        })
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn keys_run_from_the_repository_to_the_host() {
        assert_eq!(
            keys_for("h:5000", Some("a/b/c")),
            ["h:5000/a/b/c", "h:5000/a/b", "h:5000/a", "h:5000"]
        );
        assert_eq!(keys_for("h", Some("c")), ["h/c", "h"]);
        assert_eq!(keys_for("h", None), ["h"]);
        assert_eq!(
            keys_for("docker.io", Some("library/alpine")),
            ["docker.io/library/alpine", "docker.io/library", "docker.io"]
        );
    }

    #[test]
    fn the_most_specific_key_wins_then_the_host() {
        let p = PathBuf::from("auth.json");
        let doc = serde_json::json!({"auths": {
            "h:1": {"auth": b64("host:1")},
            "h:1/team": {"auth": b64("ns:2")},
            "h:1/team/app": {"auth": b64("repo:3")},
            // Not a prefix at a path boundary: never matches `team/app`.
            "h:1/tea": {"auth": b64("no:4")},
            "other:1/team/app": {"auth": b64("no:5")},
        }});
        let get = |repo: Option<&str>| from_auths(&doc, "h:1", repo, &p, false).expect("parse");
        assert_eq!(get(Some("team/app")), basic("repo", "3"));
        assert_eq!(get(Some("team/app/sub")), basic("repo", "3"));
        assert_eq!(get(Some("team/web")), basic("ns", "2"));
        assert_eq!(get(Some("teams/app")), basic("host", "1"));
        assert_eq!(get(Some("tea")), basic("no", "4"));
        assert_eq!(get(None), basic("host", "1"));
        // Namespace keys are not host keys: a host with only repository keys has no credential.
        let only_repo = serde_json::json!({"auths": {"h:2/x/y": {"auth": b64("r:1")}}});
        assert_eq!(
            from_auths(&only_repo, "h:2", Some("z/y"), &p, false).expect("parse"),
            None
        );
        // A URL key names its host, whatever its path.
        let url = serde_json::json!({"auths": {"https://h:3/v1/": {"auth": b64("u:1")}}});
        assert_eq!(
            from_auths(&url, "h:3", Some("a/b"), &p, false).expect("parse"),
            basic("u", "1")
        );
    }

    #[test]
    fn the_first_file_with_an_answer_wins_even_with_a_less_specific_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = dir.path().join("auth.json");
        let second = dir.path().join("config.json");
        std::fs::write(
            &first,
            serde_json::json!({"auths": {"h": {"auth": b64("first:1")}}}).to_string(),
        )
        .expect("write");
        std::fs::write(
            &second,
            serde_json::json!({"auths": {"h/a/b": {"auth": b64("second:2")}}}).to_string(),
        )
        .expect("write");
        let files = [AuthFile::json(&first), AuthFile::json(&second)];
        let found = lookup_in(&files, "h", Some("a/b")).expect("lookup");
        assert_eq!(found.map(|f| f.0), basic("first", "1"));
        let found = lookup_in(&files[1..], "h", Some("a/b")).expect("lookup");
        assert_eq!(
            found,
            Some((
                Credential::Basic {
                    username: "second".into(),
                    password: Secret::new("2")
                },
                CredentialSource::File(second.clone())
            ))
        );
    }

    #[test]
    fn dockercfg_is_read_only_without_docker_config_json() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("docker/config.json");
        let legacy = dir.path().join(".dockercfg");
        std::fs::write(
            &legacy,
            serde_json::json!({
                "https://h:1/v1/": {"auth": b64("old:1"), "email": "e@x"},
                // A legacy key is cut to its host, path and all (no repository keys there).
                "h:2/a/b": {"auth": b64("old:2")},
            })
            .to_string(),
        )
        .expect("write");
        let files = [
            AuthFile::json(&config),
            AuthFile {
                path: legacy.clone(),
                legacy_unless: Some(config.clone()),
            },
        ];
        let found = lookup_in(&files, "h:1", Some("x/y")).expect("lookup");
        assert_eq!(
            found,
            Some((
                Credential::Basic {
                    username: "old".into(),
                    password: Secret::new("1")
                },
                CredentialSource::File(legacy.clone())
            ))
        );
        assert_eq!(
            lookup_in(&files, "h:2", None).expect("lookup").map(|f| f.0),
            basic("old", "2")
        );
        std::fs::create_dir_all(dir.path().join("docker")).expect("mkdir");
        std::fs::write(&config, "{}").expect("write");
        assert_eq!(lookup_in(&files, "h:1", None).expect("lookup"), None);
    }
}

//! The distribution-spec HTTP client for one registry: requests with authentication, retries
//! and error mapping. [`blobs`] and [`manifests`] build the protocol's calls on [`Registry::send`].
//!
//! The HTTP layer is `reqwest` on one shared tokio runtime ([`http`]): rustls with the system
//! roots plus `certs.d` and `--registry-ca` CAs, client certificates ([`transport`],
//! [`verify`]), HTTP/2 where the registry offers it, connection reuse, proxies from
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` with loopback never proxied ([`proxy`]). Callers
//! stay blocking: they drive requests through the runtime's handle, and every blocking step
//! (reading an upload's source, writing a download into the store) runs on their thread.
//!
//! Why the distribution protocol is rbuild's own code rather than `oci-client`'s: `oci-client`
//! buffers or streams blobs into its own types, where rbuild needs (a) a blob streamed into the
//! verified store while it downloads (hashed as it is written, rejected on a wrong digest,
//! memory flat on a multi-GiB layer), (b) manifests and configs kept as the registry's exact
//! bytes (digests are of bytes, `oci-client` re-serialises), (c) an upload fed by the
//! compressor while it still writes (one chunked `PATCH` from a pipe), (d) a cross-repository
//! mount whose 202 answer falls back to an upload in the same session, (e) a `HEAD` per blob
//! with a per-client memory of what is present, and (f) the credential rules below (tokens per
//! scope, nothing sent to another host, bounded retries with `Retry-After`). Each is a few
//! dozen lines here and would be a fork or a wrapper there.
//!
//! Credentials are chosen per repository (the most specific `auths` key of
//! containers-auth.json(5), see [`credentials`]): the repository a request's scope names
//! picks the credential its Basic header or token request carries.
//!
//! Credentials go only to the registry's own scheme, host and port: redirects are followed by
//! [`Registry::send`] itself (for `GET` and `HEAD` only), and a redirect or an upload
//! `Location` on another host is requested without them.

pub mod blobs;
pub mod http;
pub mod manifests;
pub mod proxy;
pub mod retry;
pub mod transport;
pub mod verify;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use self::http::{Response, SendBody};
use self::proxy::ProxyEnv;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::auth::challenge::{self, Challenge};
use crate::auth::token::{self, Token, TokenError};
use crate::auth::{basic_header, credentials, Credential, CredentialSource};
use crate::error::RegistryError;

/// How to reach registries (from the command line).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `--insecure-registry HOST[:PORT]`: plain HTTP allowed.
    pub insecure: Vec<String>,
    /// `--registry-ca HOST=FILE`.
    pub ca_files: Vec<(String, PathBuf)>,
    /// Attempts per request (connection errors, 429, 5xx); 0 means the default.
    pub max_attempts: u32,
    /// Credentials given explicitly (e.g. `rbuild login`), overriding the config files.
    pub credential: Option<Credential>,
    /// The auth files to look credentials up in; `None` reads the default locations
    /// ([`credentials::default_auth_files`]).
    pub auth_files: Option<Vec<credentials::AuthFile>>,
    /// `--tls-verify=false`: accept any server certificate (warned about once per host).
    pub skip_tls_verify: bool,
    /// Hosts of outputs with BuildKit's `registry.insecure=true`: for these hosts only, HTTPS
    /// with any server certificate (warned about once per host), or plain HTTP when TLS fails.
    pub insecure_outputs: Vec<String>,
    /// The proxy variables; `None` reads them from the process environment.
    pub proxy: Option<ProxyEnv>,
    /// `registries.conf` (mirrors, rewrites, insecure and blocked registries); the default is
    /// empty, so a client built without [`crate::registries_conf::RegistriesConf::load`]
    /// reads no file.
    pub registries_conf: std::sync::Arc<crate::registries_conf::RegistriesConf>,
    /// kaniko's `--registry-mirror HOST[/PATH]`: mirrors of docker.io, tried in order before it.
    pub registry_mirrors: Vec<String>,
}

/// The body of a request; files are re-opened on every attempt so a retry resends all of it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
    /// Bytes still being produced, sent with chunked transfer encoding. They can be sent once:
    /// a retry of such a request fails instead of sending a partial body.
    Stream(&'a StreamBody),
}

/// The body of a [`Body::Stream`] request, taken by its first send.
pub(crate) struct StreamBody(std::cell::Cell<Option<Box<dyn std::io::Read + Send>>>);

impl StreamBody {
    pub(crate) fn new(body: Box<dyn std::io::Read + Send>) -> StreamBody {
        StreamBody(std::cell::Cell::new(Some(body)))
    }
}

impl std::fmt::Debug for StreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamBody")
    }
}

/// One request: `target` is a path (`/v2/…`, optionally with a query) or an absolute URL (an
/// upload `Location`); `scope` is the token scope it needs.
pub(crate) struct Req<'a> {
    pub method: &'static str,
    pub target: String,
    pub scope: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
}

/// A connection to one registry host, shared by the threads of a pull or push.
pub struct Registry {
    host: String,
    base: String,
    /// Scheme, host and port of `base`: the only place credentials and tokens are sent.
    origin: url::Origin,
    client: reqwest::Client,
    credentials: Credentials,
    tokens: Mutex<HashMap<String, Token>>,
    /// The registry answered with a Basic challenge: send Basic credentials up front.
    basic: AtomicBool,
    max_attempts: u32,
    /// (repository, blob) pairs known to be on the registry — a `HEAD` found the blob, or this
    /// client uploaded or mounted it — so a build that checks the same blob for its cache
    /// lookup, two images and a cache export asks once.
    present: Mutex<std::collections::HashSet<(String, rbuild_layers::Digest)>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("base", &self.base)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Connects to `host` (`HOST[:PORT]`), choosing HTTPS or (where allowed and HTTPS fails)
    /// HTTP, and looks up its credentials.
    pub fn connect(host: &str, opts: &ClientOptions) -> Result<Registry, RegistryError> {
        let files = transport::tls_files_for(host, &opts.ca_files)?;
        let insecure_output = opts.insecure_outputs.iter().any(|h| h == host);
        let verify = !(opts.skip_tls_verify || insecure_output);
        let tls = transport::tls_config(host, &files, verify)?;
        if insecure_output {
            transport::warn_unverified(host, "registry.insecure=true in --output");
        } else if opts.skip_tls_verify {
            transport::warn_unverified(
                host,
                "--tls-verify=false, or insecure = true in registries.conf",
            );
        }
        let proxy = opts.proxy.clone().unwrap_or_else(ProxyEnv::from_process);
        let client = transport::client(host, &tls, proxy)?;
        let mut scheme = "https";
        if insecure_output || transport::may_use_http(host, &opts.insecure) {
            // Docker tries HTTPS first for insecure registries, then plain HTTP.
            // A certificate the server presented but we do not trust is no reason to downgrade:
            // the server speaks TLS, and the TLS error is the one to report.
            let probe = http::send(
                &client,
                "GET",
                &format!("https://{host}/v2/"),
                &[],
                SendBody::Empty,
            );
            if let Err(e) = probe {
                if !e.is_certificate_error() {
                    scheme = "http";
                }
            }
        }
        let credentials = match &opts.credential {
            Some(c) => Credentials::Explicit(c.clone()),
            None => Credentials::Files {
                files: opts
                    .auth_files
                    .clone()
                    .unwrap_or_else(credentials::default_auth_files),
                found: Mutex::new(HashMap::new()),
            },
        };
        // Docker Hub's API lives at registry-1.docker.io.
        let api_host = if host == crate::DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            host
        };
        let base = format!("{scheme}://{api_host}");
        let origin = url::Url::parse(&base)
            .map_err(|e| RegistryError::InvalidHost {
                registry: host.to_string(),
                reason: e.to_string(),
            })?
            .origin();
        let registry = Registry {
            host: host.to_string(),
            base,
            origin,
            client,
            credentials,
            tokens: Mutex::new(HashMap::new()),
            basic: AtomicBool::new(false),
            max_attempts: if opts.max_attempts == 0 {
                retry::DEFAULT_ATTEMPTS
            } else {
                opts.max_attempts
            },
            present: Mutex::new(std::collections::HashSet::new()),
        };
        // The registry's own credential is looked up now, as it always was: a broken auth
        // file or a credential helper that fails is reported before any request is sent.
        registry.credential("")?;
        Ok(registry)
    }

    /// The registry host as named in references.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `scheme://host`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The credential for the repository `scope` names first (the one a request acts on: a
    /// mount's scope also names the repository it reads from, second), or for the registry
    /// itself when `scope` names none (`GET /v2/`). Looked up once per repository.
    fn credential(
        &self,
        scope: &str,
    ) -> Result<Option<(Credential, CredentialSource)>, RegistryError> {
        match &self.credentials {
            Credentials::Explicit(c) => Ok(Some((c.clone(), CredentialSource::Explicit))),
            Credentials::Files { files, found } => {
                let repository = scope_repository(scope);
                let key = repository.unwrap_or_default().to_string();
                // Held across the lookup: a credential helper runs once per repository even
                // when several threads ask at the same time.
                let mut found = found.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = found.get(&key) {
                    return Ok(c.clone());
                }
                let c = credentials::lookup_in(files, &self.host, repository)?;
                found.insert(key, c.clone());
                Ok(c)
            }
        }
    }

    fn source(credential: &Option<(Credential, CredentialSource)>) -> String {
        credential
            .as_ref()
            .map_or(CredentialSource::None.to_string(), |c| c.1.to_string())
    }

    fn url(&self, target: &str) -> String {
        if target.starts_with("http://") || target.starts_with("https://") {
            target.to_string()
        } else {
            format!("{}{target}", self.base)
        }
    }

    /// Whether `url` is on this registry (same scheme, host and port): credentials and tokens
    /// go nowhere else (containerd CVE-2020-15157, docker CVE-2021-41092). An upload
    /// `Location` on another host — a storage service, or a hostile registry pointing at a
    /// service of its choosing — is still used, anonymously. A URL that does not parse is
    /// treated as foreign.
    fn is_own(&self, url: &str) -> bool {
        url::Url::parse(url).is_ok_and(|u| u.origin() == self.origin)
    }

    /// A request target for messages: the path (see [`Self::display_path`]), prefixed with
    /// `scheme://host:port` when it is on another host, so an error there names that host.
    fn display_target(&self, url: &str, own: bool) -> String {
        let path = Self::display_path(url);
        match url::Url::parse(url) {
            Ok(u) if !own => format!("{}{path}", u.origin().ascii_serialization()),
            _ => path,
        }
    }

    /// A request's path for messages: no scheme/host, no query (upload state, digests).
    pub(crate) fn display_path(target: &str) -> String {
        let no_scheme = target
            .strip_prefix("https://")
            .or_else(|| target.strip_prefix("http://"))
            .map(|rest| rest.find('/').map_or("/", |i| &rest[i..]))
            .unwrap_or(target);
        no_scheme.split('?').next().unwrap_or(no_scheme).to_string()
    }

    fn auth_header(&self, scope: &str) -> Result<Option<String>, RegistryError> {
        let tokens = self.tokens.lock().expect("token cache lock poisoned");
        if let Some(t) = tokens.get(scope).filter(|t| t.valid_until > Instant::now()) {
            return Ok(Some(format!("Bearer {}", t.value.expose())));
        }
        drop(tokens);
        if self.basic.load(Ordering::Relaxed) {
            if let Some((Credential::Basic { username, password }, _)) = self.credential(scope)? {
                return Ok(Some(basic_header(&username, &password)));
            }
        }
        Ok(None)
    }

    /// Answers a 401's challenge: remembers Basic, or fetches a token for `scope`.
    fn authenticate(
        &self,
        header: Option<&str>,
        scope: &str,
        method: &'static str,
        path: &str,
        status: u16,
    ) -> Result<(), RegistryError> {
        let credential = self.credential(scope)?;
        let unauthorized = || RegistryError::Unauthorized {
            registry: self.host.clone(),
            method,
            path: path.to_string(),
            status,
            credential_source: Self::source(&credential),
        };
        match header.and_then(challenge::parse) {
            Some(Challenge::Basic) => {
                if !matches!(credential, Some((Credential::Basic { .. }, _))) {
                    return Err(unauthorized());
                }
                self.basic.store(true, Ordering::Relaxed);
                Ok(())
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope: challenged,
            }) => {
                let scopes = if scope.is_empty() {
                    challenged.unwrap_or_default()
                } else {
                    scope.to_string()
                };
                let t = token::fetch(
                    &self.client,
                    &realm,
                    service.as_deref(),
                    &scopes,
                    credential.as_ref().map(|c| &c.0),
                )
                .map_err(|e| match e {
                    TokenError::Status(401 | 403) => unauthorized(),
                    TokenError::Status(s) => RegistryError::Status {
                        registry: self.host.clone(),
                        method: "GET",
                        path: format!("token service {}", Self::display_path(&realm)),
                        status: s,
                        detail: String::new(),
                    },
                    TokenError::Transport(source) => RegistryError::Transport {
                        registry: self.host.clone(),
                        method: "GET",
                        path: format!("token service {}", Self::display_path(&realm)),
                        attempts: 1,
                        source,
                    },
                    TokenError::Invalid(what) => RegistryError::Protocol {
                        registry: self.host.clone(),
                        what: format!("token service {}: {what}", Self::display_path(&realm)),
                    },
                })?;
                self.tokens
                    .lock()
                    .expect("token cache lock poisoned")
                    .insert(scope.to_string(), t);
                Ok(())
            }
            None => Err(unauthorized()),
        }
    }

    /// The body of one attempt of `req`: files are re-opened, a stream is taken (once).
    fn body_of(&self, req: &Req<'_>, path: &str) -> Result<SendBody, RegistryError> {
        Ok(match req.body {
            Body::Empty => SendBody::Empty,
            Body::Bytes(b) => SendBody::Bytes(b.to_vec()),
            Body::File {
                path: p,
                offset,
                len,
            } => {
                let mut f = File::open(p).map_err(|source| RegistryError::Io {
                    op: "opening",
                    path: p.to_path_buf(),
                    source,
                })?;
                f.seek(SeekFrom::Start(offset))
                    .map_err(|source| RegistryError::Io {
                        op: "seeking in",
                        path: p.to_path_buf(),
                        source,
                    })?;
                SendBody::Reader {
                    reader: Box::new(f.take(len)),
                    len: Some(len),
                }
            }
            Body::Stream(body) => match body.0.take() {
                Some(reader) => SendBody::Reader { reader, len: None },
                None => {
                    return Err(RegistryError::Protocol {
                        registry: self.host.clone(),
                        what: format!(
                            "{} {path}: a streamed body cannot be sent again",
                            req.method
                        ),
                    })
                }
            },
        })
    }

    /// Where a redirect answering `url` points, if it is one `send` follows: `GET` and `HEAD`
    /// only (a body is never resent elsewhere), to http(s) URLs.
    fn redirect_target(&self, req: &Req<'_>, url: &str, resp: &Response) -> Option<String> {
        if !matches!(req.method, "GET" | "HEAD") {
            return None;
        }
        let next = url::Url::parse(url)
            .ok()?
            .join(resp.header("location")?)
            .ok()?;
        matches!(next.scheme(), "http" | "https").then(|| next.into())
    }

    /// Sends `req`, answering one authentication challenge, following up to
    /// [`MAX_REDIRECTS`] redirects of `GET`/`HEAD` (with credentials only on this registry),
    /// and retrying connection errors, 429 and 5xx with backoff (`Retry-After` honoured).
    /// Returns a 2xx response; any other status is an error naming the registry, request and
    /// status.
    pub(crate) fn send(&self, req: &Req<'_>) -> Result<Response, RegistryError> {
        let first = self.url(&req.target);
        let mut url = first.clone();
        let mut redirects = 0;
        let mut attempt = 0;
        let mut auth_answered = false;
        loop {
            let own = self.is_own(&url);
            let path = self.display_target(&url, own);
            attempt += 1;
            let mut headers: Vec<(&str, String)> = req.headers.clone();
            if own {
                if let Some(h) = self.auth_header(&req.scope)? {
                    headers.push(("Authorization", h));
                }
            }
            let body = self.body_of(req, &path)?;
            let resp = match http::send(&self.client, req.method, &url, &headers, body) {
                Ok(resp) => resp,
                // A streamed body is gone once sent: its failure is the one to report.
                Err(e)
                    if attempt < self.max_attempts
                        && !e.is_certificate_error()
                        && !matches!(req.body, Body::Stream(_)) =>
                {
                    std::thread::sleep(retry::delay(attempt, None));
                    url = first.clone();
                    continue;
                }
                Err(e) => {
                    return Err(RegistryError::Transport {
                        registry: self.host.clone(),
                        method: req.method,
                        path,
                        attempts: attempt,
                        source: Box::new(e),
                    })
                }
            };
            let status = resp.status();
            match status {
                200..=299 => return Ok(resp),
                300..=399 => {
                    if let Some(next) = self
                        .redirect_target(req, &url, &resp)
                        .filter(|_| redirects < MAX_REDIRECTS)
                    {
                        redirects += 1;
                        attempt -= 1;
                        url = next;
                        continue;
                    }
                    // A 3xx answering a request whose body cannot be sent again (PUT, PATCH,
                    // POST): taking it as success would count a blob or manifest as stored
                    // that is not.
                    let location = resp.header("location").unwrap_or("no Location");
                    let mut detail = format!(
                        " (a redirect to {}; rbuild does not resend a {} body to another URL)",
                        Self::display_path(location),
                        req.method
                    );
                    truncate_on_char_boundary(&mut detail, MAX_ERROR_MESSAGE);
                    return Err(RegistryError::Status {
                        registry: self.host.clone(),
                        method: req.method,
                        path,
                        status,
                        detail,
                    });
                }
                // Another host's challenge is not answered: that would fetch a token for this
                // registry's scope with its credentials and hand it to that host.
                401 if own && !auth_answered => {
                    auth_answered = true;
                    attempt -= 1;
                    let h = resp.header("www-authenticate").map(str::to_string);
                    self.authenticate(h.as_deref(), &req.scope, req.method, &path, 401)?;
                }
                401 | 403 if own => {
                    let credential = self.credential(&req.scope)?;
                    if credential.is_some() || status == 401 {
                        return Err(RegistryError::Unauthorized {
                            registry: self.host.clone(),
                            method: req.method,
                            path,
                            status,
                            credential_source: Self::source(&credential),
                        });
                    }
                    return Err(RegistryError::Status {
                        registry: self.host.clone(),
                        method: req.method,
                        path,
                        status,
                        detail: error_detail(resp),
                    });
                }
                s if retry::retryable(s) && attempt < self.max_attempts => {
                    std::thread::sleep(retry::delay(attempt, resp.header("retry-after")));
                    url = first.clone();
                }
                _ => {
                    return Err(RegistryError::Status {
                        registry: self.host.clone(),
                        method: req.method,
                        path,
                        status,
                        detail: error_detail(resp),
                    })
                }
            }
        }
    }

    /// `GET /v2/`: checks that the registry answers and the credentials are accepted.
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.send(&Req {
            method: "GET",
            target: "/v2/".into(),
            scope: String::new(),
            headers: vec![],
            body: Body::Empty,
        })
        .map(|_| ())
    }
}

/// Redirects of one `GET` or `HEAD` followed at most.
const MAX_REDIRECTS: u32 = 5;

/// `repository:NAME:ACTIONS`.
pub(crate) fn scope(repository: &str, actions: &str) -> String {
    format!("repository:{repository}:{actions}")
}

/// The repository of the first `repository:NAME:ACTIONS` in a space-separated scope list.
fn scope_repository(scope: &str) -> Option<&str> {
    let first = scope.split(' ').next()?;
    let rest = first.strip_prefix("repository:")?;
    rest.rsplit_once(':').map(|(name, _)| name)
}

/// Where a client's credentials come from.
enum Credentials {
    /// Given on the command line (`rbuild login`): for every repository.
    Explicit(Credential),
    /// Looked up in the auth files per repository (containers-auth.json(5) allows
    /// `host/namespace/repo` keys), each answer kept: repository → credential.
    Files {
        files: Vec<credentials::AuthFile>,
        found: Mutex<HashMap<String, Option<(Credential, CredentialSource)>>>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Explicit(_) => f.write_str("Explicit"),
            Credentials::Files { files, .. } => f
                .debug_list()
                .entries(files.iter().map(|a| &a.path))
                .finish(),
        }
    }
}

/// Bytes kept of each error message a registry sends.
const MAX_ERROR_MESSAGE: usize = 200;

/// Cuts `s` to at most `max` bytes without splitting a character (`String::truncate` panics
/// inside one, and the text comes from the registry).
pub(crate) fn truncate_on_char_boundary(s: &mut String, max: usize) {
    if s.len() > max {
        let end = (0..=max)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        s.truncate(end);
    }
}

/// The distribution-spec error body (`{"errors":[{"code","message","detail"}]}`) as
/// ` (CODE: message; …)`, each message cut to [`MAX_ERROR_MESSAGE`] bytes.
fn error_detail(resp: Response) -> String {
    let mut buf = Vec::new();
    let _ = resp.into_reader().take(16 * 1024).read_to_end(&mut buf);
    let parts: Vec<String> = error_entries(&buf)
        .into_iter()
        .map(|(code, msg)| {
            let mut s = format!("{code}: {msg}");
            truncate_on_char_boundary(&mut s, MAX_ERROR_MESSAGE);
            s
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

/// The `(code, message)` pairs of an error body, read with oci-spec's
/// `distribution::ErrorResponse`. Its `ErrorCode` is a closed enum of the spec's codes, so a
/// body with any other code (registries add their own: Harbor's `NOT_FOUND`, `UNKNOWN`…)
/// fails the typed parse as a whole; such a body is read field by field instead.
fn error_entries(body: &[u8]) -> Vec<(String, String)> {
    if let Ok(typed) = serde_json::from_slice::<oci_spec::distribution::ErrorResponse>(body) {
        return typed
            .detail()
            .iter()
            .map(|e| {
                // The code as the registry spelled it (serde's name, e.g. `TOOMANYREQUESTS`).
                let code = serde_json::to_value(e.code())
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (code, e.message().clone().unwrap_or_default())
            })
            .collect();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let field = |e: &serde_json::Value, k: &str| {
        e.get(k)
            .and_then(|c| c.as_str())
            .unwrap_or_default()
            .to_string()
    };
    v.get("errors")
        .and_then(|e| e.as_array())
        .map(|errs| {
            errs.iter()
                .map(|e| (field(e, "code"), field(e, "message")))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod credential_scope_tests;
#[cfg(test)]
mod hostile_response_tests;
#[cfg(test)]
mod proxy_tests;
#[cfg(test)]
mod tests;

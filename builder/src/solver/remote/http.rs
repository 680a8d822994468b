//! `ADD <http(s) URL>`: the download, kept in the store between builds.
//!
//! The body is streamed into the store's blob writer (hashed while written, never held in
//! memory) and bounded by [`MAX_DOWNLOAD_BYTES`]. What the server said about it (ETag,
//! Last-Modified, the content digest) is a store record keyed by the URL without credentials,
//! so the next build asks with `If-None-Match`/`If-Modified-Since` and a `304 Not Modified`
//! reuses the stored blob: an unchanged URL stays cached, a changed one is fetched again. With
//! `--checksum` and the blob already stored, no request is made at all (as BuildKit).
//!
//! Credentials in the URL (`user:pass@`) become a Basic `Authorization` header sent to that
//! host only (a redirect elsewhere drops it), and never appear in a record, error or progress
//! line. Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (see [`proxy_for`]).

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine as _;
use rbuild_layers::store::{Store, StoreError};
use rbuild_layers::Digest;
use serde::{Deserialize, Serialize};

use rbuild_registry::client::http;

use crate::dockerfile::remote::redact;

/// The largest body accepted: far above any file a Dockerfile downloads, and a bound on the
/// disk a hostile or broken server can fill.
pub const MAX_DOWNLOAD_BYTES: u64 = 16 << 30;
const MAX_REDIRECTS: usize = 10;
const RECORD_KIND: &str = "http-source";

/// Why a download failed. URLs in messages are shown with credentials masked.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("downloading {url}: the server answered {status}")]
    Status { url: String, status: u16 },
    #[error("downloading {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("downloading {url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
    #[error("downloading {url}: the body is larger than {MAX_DOWNLOAD_BYTES} bytes")]
    TooLarge { url: String },
    #[error("downloading {url}: reading the body")]
    Body {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: checksum mismatch: --checksum says {expected}, the download is {actual}")]
    ChecksumMismatch {
        url: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("storing the download of {url}")]
    Store {
        url: String,
        #[source]
        source: StoreError,
    },
}

/// What the store keeps about a URL between builds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fetched {
    pub digest: Digest,
    pub size: u64,
    #[serde(default)]
    pub etag: Option<String>,
    /// The `Last-Modified` header as sent; the file's mtime.
    #[serde(default)]
    pub last_modified: Option<String>,
}

impl Fetched {
    /// The file's mtime: `Last-Modified`, else 0 (BuildKit leaves the epoch when the server
    /// sends none).
    pub fn mtime(&self) -> i64 {
        self.last_modified
            .as_deref()
            .and_then(parse_http_date)
            .unwrap_or(0)
    }
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, also the RFC 850 and asctime forms Go's
/// `http.ParseTime` accepts) into Unix seconds.
fn parse_http_date(s: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let words: Vec<&str> = s
        .split(|c: char| c.is_whitespace() || c == ',' || c == '-')
        .filter(|w| !w.is_empty())
        .collect();
    // IMF-fixdate / RFC 850: weekday day month year time GMT; asctime: weekday month day time year.
    let (day, month, year, time) = match words.as_slice() {
        [_, d, m, y, t, "GMT"] => (*d, *m, *y, *t),
        [_, m, d, t, y] => (*d, *m, *y, *t),
        _ => return None,
    };
    let month = MONTHS.iter().position(|n| *n == month)? as i64 + 1;
    let mut year: i64 = year.parse().ok()?;
    if year < 100 {
        year += if year < 70 { 2000 } else { 1900 };
    }
    let day: i64 = day.parse().ok()?;
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, mi, se] = hms.as_slice() else {
        return None;
    };
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Downloads `url` into the store (or re-validates the stored copy) and returns what was stored.
pub fn fetch(
    store: &Store,
    url: &str,
    checksum: Option<&Digest>,
    on_bytes: &dyn Fn(u64, Option<u64>),
) -> Result<Fetched, HttpError> {
    let shown = redact(url);
    let bad = |reason: String| HttpError::BadUrl {
        url: shown.clone(),
        reason,
    };
    let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let auth = basic_auth(&parsed);
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    let record_key = Digest::sha256_of(parsed.as_str().as_bytes());
    let known = load_record(store, &record_key).filter(|r| store.has_blob(&r.digest));
    if let (Some(sum), Some(k)) = (checksum, &known) {
        if &k.digest == sum {
            return Ok(k.clone());
        }
    }
    let origin_host = parsed.host_str().map(str::to_owned);
    let mut current = parsed;
    let client = client().map_err(|e| HttpError::Transport {
        url: shown.clone(),
        reason: redact(&e.to_string()),
    })?;
    for _ in 0..=MAX_REDIRECTS {
        let mut headers = Vec::new();
        if let (Some(a), true) = (&auth, current.host_str() == origin_host.as_deref()) {
            headers.push(("Authorization", a.clone()));
        }
        if let Some(k) = &known {
            if let Some(etag) = &k.etag {
                headers.push(("If-None-Match", etag.clone()));
            }
            if let Some(lm) = &k.last_modified {
                headers.push(("If-Modified-Since", lm.clone()));
            }
        }
        let resp = match http::send(
            &client,
            "GET",
            current.as_str(),
            &headers,
            http::SendBody::Empty,
        ) {
            Ok(r) => r,
            Err(e) => {
                return Err(HttpError::Transport {
                    url: shown,
                    reason: redact(&e.to_string()),
                })
            }
        };
        match resp.status() {
            304 => {
                if let Some(k) = known {
                    return Ok(k);
                }
                return Err(HttpError::Status {
                    url: shown,
                    status: 304,
                });
            }
            301 | 302 | 303 | 307 | 308 => {
                let location = resp.header("Location").unwrap_or_default().to_owned();
                current = current
                    .join(&location)
                    .map_err(|e| bad(format!("redirect to {location:?}: {e}")))?;
                continue;
            }
            200..=299 => {
                let fetched = download(store, resp, &shown, checksum, on_bytes)?;
                save_record(store, &record_key, &fetched);
                return Ok(fetched);
            }
            status => return Err(HttpError::Status { url: shown, status }),
        }
    }
    Err(HttpError::TooManyRedirects { url: shown })
}

fn download(
    store: &Store,
    resp: http::Response,
    shown: &str,
    checksum: Option<&Digest>,
    on_bytes: &dyn Fn(u64, Option<u64>),
) -> Result<Fetched, HttpError> {
    let store_err = |source| HttpError::Store {
        url: shown.to_string(),
        source,
    };
    let etag = resp.header("ETag").map(str::to_owned);
    let last_modified = resp.header("Last-Modified").map(str::to_owned);
    let length = resp
        .header("Content-Length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > MAX_DOWNLOAD_BYTES) {
        return Err(HttpError::TooLarge {
            url: shown.to_string(),
        });
    }
    let mut writer = store.begin_blob().map_err(store_err)?;
    let mut body = resp.into_reader().take(MAX_DOWNLOAD_BYTES + 1);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let body_err = |source| HttpError::Body {
        url: shown.to_string(),
        source,
    };
    loop {
        let n = body.read(&mut buf).map_err(body_err)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_DOWNLOAD_BYTES {
            return Err(HttpError::TooLarge {
                url: shown.to_string(),
            });
        }
        writer.write_all(&buf[..n]).map_err(body_err)?;
        on_bytes(total, length);
    }
    let (digest, size) = match writer.commit(checksum, None) {
        Ok(done) => done,
        Err(StoreError::DigestMismatch { expected, actual }) => {
            return Err(HttpError::ChecksumMismatch {
                url: shown.to_string(),
                expected,
                actual,
            })
        }
        Err(e) => return Err(store_err(e)),
    };
    Ok(Fetched {
        digest,
        size,
        etag,
        last_modified,
    })
}

/// The `Authorization` value (`Basic …`) for the `user:password@` of `url`, percent-decoded;
/// `None` without credentials. Used for downloads and for git over http(s).
pub(super) fn basic_auth(url: &url::Url) -> Option<String> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or_default())
    );
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// The download client, shared by every `ADD` of the process (connections are reused): the
/// registry crate's HTTP stack (reqwest on its shared runtime), the system roots, proxies from
/// `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as [`proxy_for`] decides, redirects followed here.
fn client() -> Result<reqwest::Client, http::HttpError> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c.clone());
    }
    let c = rbuild_registry::client::transport::download_client(
        Duration::from_secs(30),
        Duration::from_secs(120),
    )?;
    Ok(CLIENT.get_or_init(|| c).clone())
}

/// The proxy for `url` from the environment: the registry client's rule (Go's
/// `http.ProxyFromEnvironment`, which BuildKit uses), shared so ADD and registries agree.
pub use rbuild_registry::client::proxy::proxy_for;

fn load_record(store: &Store, key: &Digest) -> Option<Fetched> {
    let bytes = store.get_record(RECORD_KIND, key).ok()??;
    serde_json::from_slice(&bytes).ok()
}

fn save_record(store: &Store, key: &Digest, f: &Fetched) {
    // Best effort: without the record the next build downloads again.
    if let Ok(json) = serde_json::to_vec(f) {
        let _ = store.put_record(RECORD_KIND, key, &json);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtime_comes_from_last_modified() {
        let f = |lm: Option<&str>| Fetched {
            digest: Digest::sha256_of(b""),
            size: 0,
            etag: None,
            last_modified: lm.map(str::to_owned),
        };
        assert_eq!(
            f(Some("Thu, 02 Jan 2020 03:04:05 GMT")).mtime(),
            1_577_934_245
        );
        assert_eq!(f(None).mtime(), 0);
        assert_eq!(f(Some("yesterday")).mtime(), 0);
        assert_eq!(
            f(Some("Sunday, 06-Nov-94 08:49:37 GMT")).mtime(),
            784_111_777
        );
        assert_eq!(f(Some("Sun Nov  6 08:49:37 1994")).mtime(), 784_111_777);
        assert_eq!(
            f(Some("Tue, 29 Feb 2000 00:00:00 GMT")).mtime(),
            951_782_400
        );
    }

    #[test]
    fn basic_auth_comes_from_the_url() {
        let u = url::Url::parse("https://us%40r:p%3Ass@h/x").expect("test URL");
        let expected = base64::engine::general_purpose::STANDARD.encode("us@r:p:ss");
        assert_eq!(basic_auth(&u), Some(format!("Basic {expected}")));
        let u = url::Url::parse("https://h/x").expect("test URL");
        assert_eq!(basic_auth(&u), None);
    }
}

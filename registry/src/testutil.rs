//! Test helpers: the real registry tests/run.sh starts (`RBUILD_TEST_REGISTRY`, a plain-HTTP
//! CNCF distribution on 127.0.0.1 with deletes enabled), unique repository names, small
//! images built in a store, and [`recorder`]: a scripted loopback HTTP server that records
//! what each request carried (for the tests of what a hostile registry can make the client
//! do).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rbuild_layers::image::config::{History, ImageConfig};
use rbuild_layers::image::manifest::ImageManifest;
use rbuild_layers::store::Store;
use rbuild_layers::{Descriptor, Digest, MediaType, Platform};

use crate::cache_map::{CacheEntry, CacheLayer, CacheMap};
use crate::{ClientOptions, Registry};

/// The test registry, or `None` (with the reason printed) when none is configured; under
/// `RBUILD_REQUIRE_TOOLS=1` a missing registry fails the test instead.
pub fn registry() -> Option<Registry> {
    match std::env::var("RBUILD_TEST_REGISTRY") {
        Ok(host) if !host.is_empty() => {
            Some(Registry::connect(&host, &ClientOptions::default()).expect("connect"))
        }
        _ => {
            assert!(
                std::env::var("RBUILD_REQUIRE_TOOLS").as_deref() != Ok("1"),
                "RBUILD_TEST_REGISTRY is required (RBUILD_REQUIRE_TOOLS=1): run bash tests/run.sh"
            );
            eprintln!(
                "SKIPPED: RBUILD_TEST_REGISTRY is not set (bash tests/run.sh starts a registry)"
            );
            None
        }
    }
}

/// A repository name no other test (or earlier run) uses.
pub fn repo(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    format!(
        "rbuild-test/{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn linux_amd64() -> Platform {
    Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        os_version: None,
        variant: None,
    }
}

/// A fresh store in a temp dir (the dir lives as long as the returned guard).
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// Puts a fake layer blob (the registry does not look inside layers) into `store`.
pub fn layer(store: &Store, seed: &str) -> CacheLayer {
    let bytes = format!("layer {seed} ").repeat(100).into_bytes();
    let descriptor = store
        .put_bytes(MediaType::OciLayerGzip, &bytes)
        .expect("put layer");
    CacheLayer {
        descriptor,
        diff_id: Digest::sha256_of(format!("diff {seed}").as_bytes()),
        index: None,
    }
}

/// A map with one entry per layer, chained by parent keys.
pub fn map_of(layers: &[CacheLayer]) -> CacheMap {
    let mut m = CacheMap::new("linux/amd64");
    let mut parent = None;
    for (i, l) in layers.iter().enumerate() {
        let key = Digest::sha256_of(format!("key {} {i}", l.descriptor.digest).as_bytes());
        m.entries.insert(
            key.clone(),
            CacheEntry {
                created: None,
                parent: parent.clone(),
                layer: Some(l.clone()),
                config: None,
                description: format!("[stage {i}] RUN step {i}"),
                definition_keys: Default::default(),
            },
        );
        parent = Some(key);
    }
    m
}

/// An image of `layers` in `store` (its config carrying `inline` as an inline cache, if
/// given); returns the manifest's descriptor.
pub fn image(store: &Store, layers: &[CacheLayer], inline: Option<&CacheMap>) -> Descriptor {
    let mut config = ImageConfig::new("linux", "amd64");
    for l in layers {
        config.add_layer(l.diff_id.clone(), History::new("RUN test"));
    }
    if let Some(m) = inline {
        m.embed_in(&mut config);
    }
    let config = store
        .put_bytes(MediaType::OciImageConfig, &config.to_canonical_json())
        .expect("put config");
    let manifest = ImageManifest::new_oci(
        config,
        layers.iter().map(|l| l.descriptor.clone()).collect(),
    );
    store
        .put_bytes(MediaType::OciImageManifest, &manifest.to_canonical_json())
        .expect("put manifest")
}

/// One request a [`recorder`] server received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// The `Authorization` header, if the request had one.
    pub authorization: Option<String>,
    /// The `Proxy-Authorization` header, if the request had one (the recorder as a proxy).
    pub proxy_authorization: Option<String>,
}

/// A running [`recorder`] server; it serves until the test process ends.
pub struct Recorder {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Recorder {
    /// The requests received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A loopback HTTP/1.1 server (one request per connection) that records every request and
/// answers it with `respond(request, own address)`, a whole raw response (see [`reply`]).
/// Request bodies (`Content-Length` or chunked) are read and dropped. A TLS hello (the
/// client's HTTPS probe of a loopback registry) is hung up on, so the client falls back to
/// HTTP.
pub fn recorder(respond: impl Fn(&Seen, &str) -> String + Send + 'static) -> Recorder {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let me = addr.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let Some(req) = read_request(&mut conn) else {
                continue;
            };
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(req.clone());
            let _ = conn.write_all(respond(&req, &me).as_bytes());
        }
    });
    Recorder { addr, seen }
}

/// A client of the registry at `addr` with Basic credentials `u`/`p` and no retries, for tests
/// against a [`recorder`].
pub fn connect_basic(addr: &str) -> Registry {
    let opts = ClientOptions {
        credential: Some(crate::auth::Credential::Basic {
            username: "u".into(),
            password: crate::auth::Secret::new("p"),
        }),
        max_attempts: 1,
        ..ClientOptions::default()
    };
    Registry::connect(addr, &opts).expect("connect")
}

/// A raw HTTP/1.1 response: `status` (`"202 Accepted"`), extra header lines (each ending in
/// `\r\n`) and a body.
pub fn reply(status: &str, headers: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Reads one request (head and body); `None` for a TLS hello or a connection closed early.
fn read_request(conn: &mut TcpStream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
        if buf.is_empty() && chunk[0] == 0x16 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let seen = Seen {
        method: parts.next().unwrap_or("").to_string(),
        target: parts.next().unwrap_or("").to_string(),
        authorization: header("authorization"),
        proxy_authorization: header("proxy-authorization"),
    };
    let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // Enough for the tests' small bodies: a chunked body ends with the zero-size chunk.
    let complete = |body: &[u8]| {
        if chunked {
            body.ends_with(b"0\r\n\r\n")
        } else {
            body.len() >= length
        }
    };
    while !complete(&buf[head_end..]) {
        let n = conn.read(&mut chunk).ok().filter(|n| *n > 0)?;
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(seen)
}

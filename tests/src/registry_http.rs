//! Talking to the plain-HTTP test registry directly, independently of rbuild's client: reading
//! manifests, deleting blobs (`DELETE /v2/<name>/blobs/<digest>`, which the test registry allows)
//! and pushing hand-made blobs and manifests, as the distribution spec describes them. Written
//! on `std::net` (one request per connection) because the tests need no more than that and must
//! not depend on the code they test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use serde_json::Value;

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The media types a manifest GET accepts.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Sends one request to `addr` (`HOST:PORT`) and reads the whole response.
pub fn request(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {target}: no response head"));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("{method} {target}: bad status line in {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..i]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

/// The manifest `repo:reference` as JSON, or `None` when the registry answers 404.
pub fn manifest(addr: &str, repo: &str, reference: &str) -> Option<Value> {
    let accept = MANIFEST_TYPES.join(", ");
    let r = request(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", &accept)],
        b"",
    );
    match r.status {
        200 => Some(serde_json::from_slice(&r.body).unwrap()),
        404 => None,
        s => panic!(
            "GET manifest {repo}:{reference}: {s} {}",
            String::from_utf8_lossy(&r.body)
        ),
    }
}

/// The digests of a manifest's `layers`.
pub fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .filter_map(|l| l["digest"].as_str())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Deletes a blob from a repository; returns the status (202 when it was deleted).
pub fn delete_blob(addr: &str, repo: &str, digest: &str) -> u16 {
    request(
        addr,
        "DELETE",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        b"",
    )
    .status
}

/// `sha256:<hex>` of `bytes`, computed by coreutils' sha256sum (the tests crate has no hasher).
pub fn sha256_digest(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha256sum (coreutils)");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Uploads `bytes` as a blob of `repo` (POST, then a monolithic PUT) and returns its digest.
pub fn put_blob(addr: &str, repo: &str, bytes: &[u8]) -> String {
    let digest = sha256_digest(bytes);
    let start = request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(start.status, 202, "POST upload to {repo}");
    let location = start.header("location").expect("upload Location");
    // The Location may be absolute (http://host/v2/…) or a path.
    let path = match location.find("/v2/") {
        Some(i) => &location[i..],
        None => location,
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let done = request(
        addr,
        "PUT",
        &format!("{path}{sep}digest={digest}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(
        done.status,
        201,
        "PUT blob {digest} to {repo}: {}",
        String::from_utf8_lossy(&done.body)
    );
    digest
}

/// Puts `manifest` (of `media_type`) at `repo:tag`; returns the status (201 when stored).
pub fn put_manifest(addr: &str, repo: &str, tag: &str, media_type: &str, manifest: &[u8]) -> u16 {
    request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", media_type)],
        manifest,
    )
    .status
}

/// `skopeo inspect --raw` of `reference` (over plain HTTP or TLS without verification), as JSON:
/// the manifest or index exactly as the registry serves it, read by an independent client.
pub fn skopeo_raw(reference: &str) -> Value {
    let out = crate::run(
        Command::new("skopeo")
            .args(["inspect", "--tls-verify=false", "--raw"])
            .arg(format!("docker://{reference}")),
    )
    .success();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

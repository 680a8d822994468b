//! A tiny HTTP/1.1 proxy in front of a test registry that records every request it forwards
//! (so a test can count exactly what one build downloaded, whatever else runs against the shared
//! registry) and can inject faults a real network or a broken middlebox produces: a blob body
//! with one byte flipped, a blob body cut short, or `429 Too Many Requests` with `Retry-After`
//! on the first manifest requests. One request per connection (`Connection: close` is forced
//! both ways), which is all the tests need.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What the proxy does wrong.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Nothing: forward faithfully and only record (a counting proxy).
    None,
    /// Flip the last byte of every `GET …/blobs/sha256:…` body.
    CorruptBlobs,
    /// Flip the last byte of the `GET …/blobs/sha256:…` bodies whose path contains this
    /// (`/app-cache/`: one repository's blobs, e.g. a cache's, while a base image stays intact).
    CorruptBlobsIn(String),
    /// Send half of every `GET …/blobs/sha256:…` body, then close.
    TruncateBlobs,
    /// Answer the first `times` manifest requests with 429 and `Retry-After: secs`.
    TooManyRequests { times: usize, retry_after_secs: u64 },
    /// Answer every upload `PATCH` sent with chunked transfer encoding (a streamed layer) with
    /// 400, as a registry that insists on `Content-Range` chunks would.
    RefuseStreamedUploads,
}

/// A running proxy; it lives as long as the test process.
pub struct FaultProxy {
    /// `127.0.0.1:PORT`, usable as a registry host in references.
    pub addr: String,
    /// Faults injected so far.
    pub injected: Arc<AtomicUsize>,
    /// Every request forwarded so far, in the order the responses completed.
    pub requests: Arc<Mutex<Vec<Request>>>,
}

/// One forwarded request and what came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (`/v2/<name>/blobs/sha256:…`, with any query).
    pub path: String,
    /// The upstream's status code (0 when it sent no parsable status line).
    pub status: u16,
    /// Bytes of the response body the client was sent.
    pub body_bytes: u64,
}

impl Request {
    /// `(repository, digest)` when this is a `GET /v2/<repository>/blobs/<digest>` (not an
    /// upload URL), as the distribution spec spells blob fetches.
    pub fn blob_get(&self) -> Option<(&str, &str)> {
        if self.method != "GET" {
            return None;
        }
        let rest = self.path.strip_prefix("/v2/")?;
        let rest = rest.split('?').next().unwrap_or(rest);
        let (repo, digest) = rest.rsplit_once("/blobs/")?;
        digest.starts_with("sha256:").then_some((repo, digest))
    }
}

impl FaultProxy {
    /// A copy of the requests recorded so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Forgets the requests recorded so far (between the runs of a pipeline).
    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }
}

/// Starts a proxy to `upstream` (`HOST:PORT`, plain HTTP).
pub fn start(upstream: &str, fault: Fault) -> FaultProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let injected = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let count = injected.clone();
    let log = requests.clone();
    let upstream = upstream.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let upstream = upstream.clone();
            let count = count.clone();
            let log = log.clone();
            let fault = fault.clone();
            std::thread::spawn(move || {
                let _ = serve(conn, &upstream, &fault, &count, &log);
            });
        }
    });
    FaultProxy {
        addr,
        injected,
        requests,
    }
}

/// Reads a chunked request body (RFC 9112 §7.1) whose first bytes are in `buf`; returns it
/// decoded. Trailers are read and dropped.
fn read_chunked(client: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut pos = 0;
    let mut more = |buf: &mut Vec<u8>| -> std::io::Result<()> {
        let mut chunk = [0u8; 65536];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the client closed in the middle of a chunked body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        Ok(())
    };
    loop {
        let line_end = loop {
            if let Some(i) = find(&buf[pos..], b"\r\n") {
                break pos + i;
            }
            more(buf)?;
        };
        let size_text = String::from_utf8_lossy(&buf[pos..line_end]).into_owned();
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "a bad chunk size line")
        })?;
        pos = line_end + 2;
        if size == 0 {
            // Trailer fields, then an empty line.
            loop {
                let end = loop {
                    if let Some(i) = find(&buf[pos..], b"\r\n") {
                        break pos + i;
                    }
                    more(buf)?;
                };
                let empty = end == pos;
                pos = end + 2;
                if empty {
                    return Ok(body);
                }
            }
        }
        while buf.len() < pos + size + 2 {
            more(buf)?;
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        pos += size + 2;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn serve(
    mut client: TcpStream,
    upstream: &str,
    fault: &Fault,
    count: &AtomicUsize,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    // The request head, then a body of Content-Length bytes.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        // A TLS ClientHello (a client trying HTTPS first): this proxy speaks plain HTTP only.
        if buf[0] == 0x16 {
            return Ok(());
        }
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut content_length = 0usize;
    let mut chunked = false;
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            content_length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            // Decoded here and forwarded with a Content-Length instead.
            chunked = true;
            continue;
        }
        if lower.starts_with("connection:") {
            continue;
        }
        headers.push(l.to_string());
    }
    let body = if chunked {
        let mut rest = buf.split_off(head_end);
        let body = read_chunked(&mut client, &mut rest)?;
        headers.push(format!("Content-Length: {}", body.len()));
        body
    } else {
        while buf.len() < head_end + content_length {
            let n = client.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.split_off(head_end)
    };
    let body = &body[..];

    if chunked && method == "PATCH" && matches!(fault, Fault::RefuseStreamedUploads) {
        count.fetch_add(1, Ordering::SeqCst);
        log.lock().unwrap().push(Request {
            method: method.clone(),
            path: path.clone(),
            status: 400,
            body_bytes: 0,
        });
        let msg = r#"{"errors":[{"code":"BLOB_UPLOAD_INVALID","message":"streamed uploads are not accepted here"}]}"#;
        let resp = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{msg}",
            msg.len()
        );
        return client.write_all(resp.as_bytes());
    }

    if let Fault::TooManyRequests {
        times,
        retry_after_secs,
    } = fault
    {
        if path.contains("/manifests/") && count.load(Ordering::SeqCst) < *times {
            count.fetch_add(1, Ordering::SeqCst);
            let resp = format!("HTTP/1.1 429 Too Many Requests\r\nRetry-After: {retry_after_secs}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return client.write_all(resp.as_bytes());
        }
    }

    let mut up = TcpStream::connect(upstream)?;
    let mut out = format!("{request_line}\r\n");
    for h in &headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;

    let is_blob_get = method == "GET" && path.contains("/blobs/sha256:");
    let resp_head_end = find(&resp, b"\r\n\r\n").map_or(resp.len(), |i| i + 4);
    let ok = resp.starts_with(b"HTTP/1.1 200");
    let status = resp
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    // HEAD responses announce a Content-Length but carry no body: counting what was actually
    // relayed gives 0 for them.
    log.lock().unwrap().push(Request {
        method: method.clone(),
        path: path.clone(),
        status,
        body_bytes: (resp.len() - resp_head_end) as u64,
    });
    match fault {
        Fault::CorruptBlobs if is_blob_get && ok && resp.len() > resp_head_end => {
            count.fetch_add(1, Ordering::SeqCst);
            if let Some(last) = resp.last_mut() {
                *last ^= 0x01;
            }
            client.write_all(&resp)
        }
        Fault::CorruptBlobsIn(part)
            if is_blob_get && ok && resp.len() > resp_head_end && path.contains(part.as_str()) =>
        {
            count.fetch_add(1, Ordering::SeqCst);
            if let Some(last) = resp.last_mut() {
                *last ^= 0x01;
            }
            client.write_all(&resp)
        }
        Fault::TruncateBlobs if is_blob_get && ok && resp.len() > resp_head_end + 1 => {
            count.fetch_add(1, Ordering::SeqCst);
            let half = resp_head_end + (resp.len() - resp_head_end) / 2;
            client.write_all(&resp[..half])
        }
        _ => client.write_all(&resp),
    }
}

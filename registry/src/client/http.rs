//! The blocking face of the async HTTP stack: one shared tokio runtime, and requests and
//! responses that blocking callers (the builder's threads) drive through its handle.
//!
//! `reqwest` runs on tokio; rbuild's engine and its pull/push workers are plain threads. Rather
//! than `reqwest::blocking` (which starts a runtime thread per client) every client of the
//! process shares ONE lazily built multi-thread runtime with two workers: its threads do only
//! network I/O. Everything that blocks or burns CPU — reading the file or the compressor that
//! feeds an upload, hashing and writing a download into the verified store — stays on the
//! calling thread:
//! - a request body is read on the caller's thread in [`CHUNK`]-sized pieces and handed to the
//!   runtime through a bounded channel ([`CHANNEL_DEPTH`] chunks), so at most a few MiB are in
//!   flight however large the blob, and a peer that stops reading stalls the caller at most
//!   [`WRITE_TIMEOUT`] per chunk;
//! - a response body is pulled chunk by chunk by [`BodyReader`] (`std::io::Read`), each
//!   `chunk()` awaited with `block_on` on the caller's thread, so the bytes go straight from
//!   the socket into the caller's writer.
//!
//! `block_on` must not be called from a runtime thread; nothing in rbuild runs inside one.

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use tokio::runtime::{Handle, Runtime};

/// The size of the pieces a request body is read and sent in.
const CHUNK: usize = 256 * 1024;
/// Chunks queued between the reading thread and the connection.
const CHANNEL_DEPTH: usize = 4;
/// How long the peer may take to accept one chunk of a request body.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The process's runtime for HTTP, built on first use.
pub fn handle() -> Result<Handle, HttpError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("rbuild-http")
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map(|rt| rt.handle().clone())
        .map_err(|e| HttpError::new(format!("starting the HTTP runtime: {e}")))
}

/// A failed request: the error's whole cause chain flattened into one line (reqwest's own
/// message is only "error sending request"; the cause — refused, TLS, timeout — is what a user
/// needs). Built from errors stripped of their URL, so no query string (upload state) and no
/// credentials appear; proxy URLs never appear in reqwest's or hyper's messages.
#[derive(Debug)]
pub struct HttpError {
    message: String,
    certificate: bool,
}

impl HttpError {
    pub(crate) fn new(message: String) -> HttpError {
        let certificate = is_certificate_message(&message);
        HttpError {
            message,
            certificate,
        }
    }

    fn from_reqwest(e: reqwest::Error) -> HttpError {
        let e = e.without_url();
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            // hyper and reqwest repeat their causes in their own messages at times.
            if !message.contains(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            // io::Error hides the error it wraps from `source()`: look inside.
            source = match s.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
                Some(inner) if !message.contains(&inner.to_string()) => {
                    message.push_str(": ");
                    message.push_str(&inner.to_string());
                    inner.source()
                }
                _ => s.source(),
            };
        }
        HttpError::new(message)
    }

    /// Whether the server's certificate was rejected (retrying or falling back to plain HTTP
    /// cannot help).
    pub fn is_certificate_error(&self) -> bool {
        self.certificate
    }
}

fn is_certificate_message(message: &str) -> bool {
    message.to_ascii_lowercase().contains("certificate")
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// A request body.
pub enum SendBody {
    Empty,
    Bytes(Vec<u8>),
    /// Read on the caller's thread as it is sent; `len` becomes `Content-Length`, without it
    /// the body goes chunked.
    Reader {
        reader: Box<dyn Read + Send>,
        len: Option<u64>,
    },
}

/// Sends one request and waits for the response head. No redirect is followed (the client is
/// built with none: [`Registry::send`](super::Registry) decides which to follow and with what
/// credentials).
pub fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: SendBody,
) -> Result<Response, HttpError> {
    let rt = handle()?;
    let method = reqwest::Method::from_bytes(method.as_bytes())
        .map_err(|_| HttpError::new(format!("invalid method {method:?}")))?;
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let inner = match body {
        // Futures are made inside the runtime: reqwest arms its timers when they are made.
        SendBody::Empty => rt.block_on(async { req.send().await }),
        SendBody::Bytes(b) => rt.block_on(async { req.body(b).send().await }),
        SendBody::Reader { reader, len } => {
            if let Some(len) = len {
                // hyper sends a length the caller set instead of chunked encoding.
                req = req.header("Content-Length", len.to_string());
            }
            return send_streamed(&rt, req, reader);
        }
    };
    inner
        .map(|inner| Response { inner, rt })
        .map_err(HttpError::from_reqwest)
}

/// What the reading thread hands the connection.
enum Piece {
    Data(Bytes),
    /// The body is complete. A channel closed without it (a read error, a timeout, a panic on
    /// the reading thread) fails the body, so hyper aborts the request instead of ending a
    /// chunked body cleanly and making a truncated upload look complete.
    End,
}

/// Sends `req` with `reader` as its body: the request runs on the runtime while this thread
/// reads the body and feeds it through a bounded channel.
fn send_streamed(
    rt: &Handle,
    req: reqwest::RequestBuilder,
    mut reader: Box<dyn Read + Send>,
) -> Result<Response, HttpError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Piece>(CHANNEL_DEPTH);
    let stream = futures_util::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Piece::Data(b)) => Some((Ok(b), Some(rx))),
            Some(Piece::End) => None,
            None => Some((
                Err(io::Error::other("the request body's source failed")),
                None,
            )),
        }
    });
    let req = req.body(reqwest::Body::wrap_stream(stream));
    let task = rt.spawn(async move { req.send().await });
    // Hands one piece over, waiting at most WRITE_TIMEOUT for room; `Ok(false)`: the request
    // ended without taking it (the server answered early, or the connection failed).
    let hand_over = |piece: Piece| -> Result<bool, HttpError> {
        match rt.block_on(async { tokio::time::timeout(WRITE_TIMEOUT, tx.send(piece)).await }) {
            Ok(Ok(())) => Ok(true),
            Ok(Err(_)) => Ok(false),
            Err(_) => Err(HttpError::new(format!(
                "sending the body: the server accepted nothing for {} s",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    };
    let fed = (|| -> Result<(), HttpError> {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = read_full(&mut reader, &mut buf)
                .map_err(|e| HttpError::new(format!("reading the request body: {e}")))?;
            if n == 0 {
                hand_over(Piece::End)?;
                return Ok(());
            }
            buf.truncate(n);
            if !hand_over(Piece::Data(Bytes::from(buf)))? {
                // Its outcome says why.
                return Ok(());
            }
        }
    })();
    drop(tx);
    if let Err(e) = fed {
        task.abort();
        return Err(e);
    }
    let outcome = rt
        .block_on(task)
        .map_err(|e| HttpError::new(format!("the request task failed: {e}")))?;
    outcome
        .map(|inner| Response {
            inner,
            rt: rt.clone(),
        })
        .map_err(HttpError::from_reqwest)
}

/// Reads until `buf` is full or the input ends (pipes and compressors return short reads).
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A response whose head has arrived; its body is read with [`Response::into_reader`].
#[derive(Debug)]
pub struct Response {
    inner: reqwest::Response,
    rt: Handle,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.inner.status().as_u16()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The HTTP version the connection negotiated.
    pub fn version(&self) -> reqwest::Version {
        self.inner.version()
    }

    /// The body as a blocking reader, pulled from the connection as it is read.
    pub fn into_reader(self) -> BodyReader {
        BodyReader {
            inner: self.inner,
            rt: self.rt,
            chunk: Bytes::new(),
        }
    }
}

/// A response body read on the caller's thread, one network chunk at a time.
pub struct BodyReader {
    inner: reqwest::Response,
    rt: Handle,
    chunk: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rt.block_on(self.inner.chunk()) {
                Ok(Some(c)) => self.chunk = c,
                Ok(None) => return Ok(0),
                Err(e) => return Err(io::Error::other(HttpError::from_reqwest(e))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_reading_source_fills_whole_chunks() {
        struct Dribble(u8);
        impl Read for Dribble {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 || buf.is_empty() {
                    return Ok(0);
                }
                self.0 -= 1;
                buf[0] = self.0;
                Ok(1)
            }
        }
        let mut buf = [0u8; 4];
        let mut d = Dribble(6);
        assert_eq!(read_full(&mut d, &mut buf).expect("read"), 4);
        assert_eq!(read_full(&mut d, &mut buf).expect("read"), 2);
        assert_eq!(read_full(&mut d, &mut buf).expect("read"), 0);
    }
}

//! `--load` (`--output type=docker` without `dest`): the images are streamed, as the
//! docker-archive `type=docker,dest=…` writes, into a Docker Engine's image store through its
//! API (`POST /images/load`), as buildx does. rbuild never needs an engine; this output is the
//! one that talks to one, when the user asks for it.
//!
//! The engine is the one `DOCKER_HOST` names (`unix://PATH`, or `tcp://HOST:PORT` without TLS),
//! else `/var/run/docker.sock`, the docker CLI's default. A TLS engine (`DOCKER_TLS_VERIFY`),
//! `ssh://` and CLI contexts are refused with the way round: `--output type=docker,dest=FILE`
//! and `docker load -i FILE`.
//!
//! Written by hand, not with reqwest (which has no Unix-socket transport) or hyper (whose client
//! would need the synchronous archive writer bridged to an async body through a thread and a
//! channel): one HTTP/1.1 request with a chunked body over a blocking socket, and its answer —
//! the status, then the engine's JSON message stream, whose `error` ends the load.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};

use rbuild_layers::output::docker::write_docker_archive;
use rbuild_layers::output::ExportImage;
use rbuild_layers::store::Store;

/// Why the images could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("--load (--output type=docker without dest=): no Docker Engine at {host} ({source}); rbuild needs no engine to build: write the image with --output type=docker,dest=image.tar and load it with `docker load -i image.tar` where one runs")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--load (--output type=docker without dest=): DOCKER_HOST={0:?} is not supported (only unix:// sockets and tcp:// without TLS): use --output type=docker,dest=image.tar and `docker load -i image.tar`")]
    Host(String),
    #[error("--load (--output type=docker without dest=): the Docker Engine at {host} refused the image: {message}")]
    Refused { host: String, message: String },
    #[error("--load (--output type=docker without dest=): talking to the Docker Engine at {host}")]
    Io {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--load (--output type=docker without dest=): writing the image archive")]
    Archive(#[from] rbuild_layers::output::OutputError),
}

/// Where the engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Unix(String),
    Tcp(String),
}

impl Host {
    fn display(&self) -> String {
        match self {
            Host::Unix(p) => format!("unix://{p}"),
            Host::Tcp(a) => format!("tcp://{a}"),
        }
    }
}

/// The engine `DOCKER_HOST` (and `DOCKER_TLS_VERIFY`) name, as the docker CLI reads them.
fn engine_host(docker_host: Option<&str>, tls_verify: Option<&str>) -> Result<Host, EngineError> {
    let host = docker_host.filter(|h| !h.is_empty());
    if tls_verify.is_some_and(|v| !v.is_empty()) {
        return Err(EngineError::Host(format!(
            "{} with DOCKER_TLS_VERIFY",
            host.unwrap_or("")
        )));
    }
    match host {
        None => Ok(Host::Unix("/var/run/docker.sock".into())),
        Some(h) => {
            if let Some(p) = h.strip_prefix("unix://") {
                Ok(Host::Unix(p.to_string()))
            } else if let Some(a) = h.strip_prefix("tcp://") {
                Ok(Host::Tcp(a.trim_end_matches('/').to_string()))
            } else {
                Err(EngineError::Host(h.to_string()))
            }
        }
    }
}

/// A connection to the engine.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

fn connect(host: &Host) -> Result<Box<dyn Conn>, EngineError> {
    let fail = |source| EngineError::Connect {
        host: host.display(),
        source,
    };
    Ok(match host {
        Host::Unix(p) => Box::new(std::os::unix::net::UnixStream::connect(p).map_err(fail)?),
        Host::Tcp(a) => Box::new(std::net::TcpStream::connect(a).map_err(fail)?),
    })
}

/// HTTP/1.1 chunked transfer coding of everything written (RFC 9112 §7.1).
struct Chunked<W: Write>(W);

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> Chunked<W> {
    /// The last chunk.
    fn finish(mut self) -> std::io::Result<W> {
        self.0.write_all(b"0\r\n\r\n")?;
        self.0.flush()?;
        Ok(self.0)
    }
}

/// Loads `images` into the engine `DOCKER_HOST` names; returns the engine's `Loaded image`
/// lines.
pub fn load(images: &[ExportImage<'_>], store: &Store) -> Result<Vec<String>, EngineError> {
    let host = engine_host(
        std::env::var("DOCKER_HOST").ok().as_deref(),
        std::env::var("DOCKER_TLS_VERIFY").ok().as_deref(),
    )?;
    let io = |source| EngineError::Io {
        host: host.display(),
        source,
    };
    let mut conn = connect(&host)?;
    conn.write_all(
        b"POST /images/load?quiet=0 HTTP/1.1\r\nHost: docker\r\nUser-Agent: rbuild\r\n\
          Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\
          Connection: close\r\n\r\n",
    )
    .map_err(io)?;
    // 64 KiB chunks: the archive writer's small writes are gathered before they are framed.
    let body = BufWriter::with_capacity(64 << 10, Chunked(&mut conn));
    let body = write_docker_archive(body, images, store)?;
    let chunked = body.into_inner().map_err(|e| io(e.into_error()))?;
    chunked.finish().map_err(io)?;
    read_answer(BufReader::new(conn), &host.display())
}

/// The engine's answer: a status line, headers, and a (chunked or plain) body of JSON messages.
fn read_answer(mut r: impl BufRead, host: &str) -> Result<Vec<String>, EngineError> {
    let io = |source| EngineError::Io {
        host: host.to_string(),
        source,
    };
    let mut status = String::new();
    r.read_line(&mut status).map_err(io)?;
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut chunked = false;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(io)? == 0 || line.trim().is_empty() {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        dechunk(&mut r).map_err(io)?
    } else {
        let mut b = Vec::new();
        r.take(16 << 20).read_to_end(&mut b).map_err(io)?;
        b
    };
    let text = String::from_utf8_lossy(&body);
    let refused = |message: String| EngineError::Refused {
        host: host.to_string(),
        message,
    };
    if code != 200 {
        let message = serde_json::from_str::<serde_json::Value>(text.trim())
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{} {}", status.trim(), text.trim()));
        return Err(refused(message));
    }
    let mut loaded = Vec::new();
    for v in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        let Ok(v) = v else { break };
        if let Some(e) = v["error"].as_str() {
            return Err(refused(e.to_string()));
        }
        if let Some(s) = v["stream"].as_str() {
            let s = s.trim();
            if !s.is_empty() {
                loaded.push(s.to_string());
            }
        }
    }
    Ok(loaded)
}

/// Decodes a chunked body (at most 16 MiB: the engine's answer is a few lines).
fn dechunk(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body");
    let mut out = Vec::new();
    loop {
        let mut size = String::new();
        if r.read_line(&mut size)? == 0 {
            return Ok(out);
        }
        let hex = size.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(hex, 16).map_err(|_| bad())?;
        if n == 0 || out.len() + n > 16 << 20 {
            return Ok(out);
        }
        let start = out.len();
        out.resize(start + n, 0);
        r.read_exact(&mut out[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_host_is_read_as_the_docker_cli_reads_it() {
        assert_eq!(
            engine_host(None, None).unwrap(),
            Host::Unix("/var/run/docker.sock".into())
        );
        assert_eq!(
            engine_host(Some("unix:///tmp/d.sock"), None).unwrap(),
            Host::Unix("/tmp/d.sock".into())
        );
        assert_eq!(
            engine_host(Some("tcp://127.0.0.1:2375/"), None).unwrap(),
            Host::Tcp("127.0.0.1:2375".into())
        );
        assert!(matches!(
            engine_host(Some("ssh://me@host"), None),
            Err(EngineError::Host(_))
        ));
        assert!(matches!(
            engine_host(Some("tcp://h:2376"), Some("1")),
            Err(EngineError::Host(_))
        ));
    }

    #[test]
    fn chunks_frame_each_write_and_end_with_the_last_chunk() {
        let mut c = Chunked(Vec::new());
        c.write_all(b"hello").unwrap();
        c.write_all(&[b'x'; 17]).unwrap();
        let out = c.finish().unwrap();
        assert_eq!(
            out,
            [
                b"5\r\nhello\r\n11\r\n".as_slice(),
                &[b'x'; 17],
                b"\r\n0\r\n\r\n"
            ]
            .concat()
        );
        assert_eq!(
            dechunk(&mut &out[..]).unwrap(),
            [b"hello".as_slice(), &[b'x'; 17]].concat()
        );
    }

    #[test]
    fn the_answer_gives_the_loaded_images_or_the_engines_error() {
        let ok = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                  1e\r\n{\"stream\":\"Loaded image: a\\n\"}\r\n0\r\n\r\n";
        assert_eq!(
            read_answer(ok.as_bytes(), "h").unwrap(),
            ["Loaded image: a"]
        );
        let failed =
            "HTTP/1.1 200 OK\r\n\r\n{\"errorDetail\":{\"message\":\"bad\"},\"error\":\"bad\"}\n";
        assert!(matches!(
            read_answer(failed.as_bytes(), "h"),
            Err(EngineError::Refused { message, .. }) if message == "bad"
        ));
        let refused = "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n{\"message\":\"no space\"}\n";
        assert!(matches!(
            read_answer(refused.as_bytes(), "h"),
            Err(EngineError::Refused { message, .. }) if message == "no space"
        ));
    }
}

//! Reading a blob while it is still being written, so that a layer can be uploaded as it is
//! compressed instead of after (see `BlobWriter::follow`).
//!
//! The reader follows the writer's temp file: bytes reach the file as the writer's buffer
//! fills, and a read that meets the end of the file waits until the writer has written more,
//! has committed (then the end of the file is the end of the blob) or has given up (then the
//! read fails, so whatever consumes the bytes — an upload — is abandoned, never completed with
//! a partial blob). The writer never waits for the reader: a slow consumer costs no build time
//! and no memory, because the bytes stay in the file.

use std::fs::File;
use std::io::{self, Read};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::Digest;

/// How long a reader at the end of the file waits before looking again. The writer also wakes
/// it on commit or abandon; this only bounds how late it notices bytes written meanwhile.
const POLL: Duration = Duration::from_millis(5);

/// Where the writer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteStatus {
    Writing,
    Committed { digest: Digest, size: u64 },
    Abandoned,
}

/// State shared by a `BlobWriter` and its followers.
#[derive(Debug)]
pub(crate) struct Shared {
    status: Mutex<WriteStatus>,
    changed: Condvar,
}

impl Shared {
    pub(crate) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            status: Mutex::new(WriteStatus::Writing),
            changed: Condvar::new(),
        })
    }

    /// Records the writer's end (the first end counts) and wakes every follower.
    pub(crate) fn finish(&self, end: WriteStatus) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if *s == WriteStatus::Writing {
            *s = end;
        }
        self.changed.notify_all();
    }

    fn wait_while_writing(&self) -> WriteStatus {
        let s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        if *s != WriteStatus::Writing {
            return s.clone();
        }
        let (s, _) = self
            .changed
            .wait_timeout(s, POLL)
            .unwrap_or_else(|p| p.into_inner());
        s.clone()
    }
}

/// A blob being written, read as it grows. Reads return the blob's bytes in order and end
/// (`Ok(0)`) only once the writer has committed them all; if the writer gives up, or the bytes
/// read do not add up to what it committed, a read fails.
pub struct GrowingBlob {
    file: File,
    shared: Arc<Shared>,
    read: u64,
}

impl GrowingBlob {
    pub(crate) fn new(file: File, shared: Arc<Shared>) -> GrowingBlob {
        GrowingBlob {
            file,
            shared,
            read: 0,
        }
    }

    /// The digest and size the writer committed, once it has (`None` while it writes or after
    /// it gave up). Known for certain after a read has returned `Ok(0)`.
    pub fn committed(&self) -> Option<(Digest, u64)> {
        self.watch().committed()
    }

    /// [`GrowingBlob::committed`] for whoever keeps no hold of the reader (it was handed to
    /// an upload).
    pub fn watch(&self) -> CommitWatch {
        CommitWatch(self.shared.clone())
    }
}

/// Tells what a blob's writer committed; see [`GrowingBlob::watch`].
#[derive(Debug, Clone)]
pub struct CommitWatch(Arc<Shared>);

impl CommitWatch {
    /// The digest and size the writer committed, once it has.
    pub fn committed(&self) -> Option<(Digest, u64)> {
        match &*self.0.status.lock().unwrap_or_else(|p| p.into_inner()) {
            WriteStatus::Committed { digest, size } => Some((digest.clone(), *size)),
            _ => None,
        }
    }
}

impl Read for GrowingBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let n = self.file.read(buf)?;
            if n > 0 {
                self.read += n as u64;
                return Ok(n);
            }
            match self.shared.wait_while_writing() {
                WriteStatus::Writing => {}
                WriteStatus::Abandoned => {
                    return Err(io::Error::other(
                        "the blob's writer gave up before committing it",
                    ))
                }
                // Everything was in the file before the commit was signalled: one more read
                // picks up what arrived since the last one, then the end is the end.
                WriteStatus::Committed { size, .. } => {
                    let n = self.file.read(buf)?;
                    if n > 0 {
                        self.read += n as u64;
                        return Ok(n);
                    }
                    if self.read != size {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("read {} bytes of a blob committed with {size}", self.read),
                        ));
                    }
                    return Ok(0);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::Store;

    fn bytes(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn a_follower_reads_every_byte_while_the_writer_writes_then_ends_at_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let data = bytes(3 << 20);
        let mut w = store.begin_blob().unwrap();
        let mut follower = w.follow().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            follower
                .read_to_end(&mut got)
                .map(|_| (got, follower.committed()))
        });
        // Written in pieces with pauses, so the follower meets the end of the file mid-way.
        for chunk in data.chunks(700 * 1024) {
            w.write_all(chunk).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(15));
        }
        let (digest, size) = w.commit(None, None).unwrap();
        let (got, committed) = reader.join().unwrap().unwrap();
        assert_eq!(got, data);
        assert_eq!(committed, Some((digest.clone(), size)));
        assert_eq!(digest, Digest::sha256_of(&data));
    }

    #[test]
    fn a_follower_fails_when_the_writer_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.begin_blob().unwrap();
        let mut follower = w.follow().unwrap();
        w.write_all(&bytes(300 * 1024)).unwrap();
        w.flush().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            follower.read_to_end(&mut got).map(|_| got.len())
        });
        std::thread::sleep(Duration::from_millis(20));
        drop(w);
        let err = reader.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("gave up"), "{err}");
    }

    #[test]
    fn a_commit_that_fails_verification_abandons_the_follower() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.begin_blob().unwrap();
        let mut follower = w.follow().unwrap();
        w.write_all(b"not what was expected").unwrap();
        let wrong = Digest::sha256_of(b"something else");
        assert!(w.commit(Some(&wrong), None).is_err());
        let mut got = Vec::new();
        assert!(follower.read_to_end(&mut got).is_err());
        assert_eq!(follower.committed(), None);
    }
}

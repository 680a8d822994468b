//! The tar byte stream between the layer writer and the compressor: fixed-size chunks that
//! are filled on the reading thread, hashed there (diffID), and compressed on a second thread.
//!
//! Why not `BufWriter` + a channel of `Vec`s: that copied every byte once more (file → copy
//! buffer → a fresh `Vec` per send) and allocated 512 KiB per send, and the kernel zeroed each
//! new allocation's pages. Here files are `read` straight into the chunk that goes to the
//! compressor, and chunks come back through a second channel to be reused, so the tar bytes are
//! copied once by the kernel (page cache → chunk) and once by the compressor (into its own
//! input buffer), as in `tar | zstd` minus the pipe. Memory is [`POOL`] × [`CHUNK`], fixed.

use std::io::{self, Read, Write};
use std::thread::JoinHandle;

use crate::compression::Compressor;
use crate::{BlobWriter, Sha256Hasher};

/// Size of one chunk: big enough that hashing, channel hand-offs and compressor calls are
/// amortised, small enough to stay in the L2 cache between reading and hashing.
pub(super) const CHUNK: usize = 512 * 1024;
/// Chunks in circulation (being filled, queued, being compressed).
const POOL: usize = 8;

/// A full chunk: the buffer and how many of its bytes are data.
type Filled = (Box<[u8]>, usize);

/// Where a read failed: in the source file or downstream (compressing or storing).
pub(super) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// The writing end of the tar stream; see the module doc.
pub(super) struct TarStream<'p> {
    chunk: Box<[u8]>,
    len: usize,
    /// The diffID hasher; `None` when the caller gets the diffID another way.
    hasher: Option<Sha256Hasher>,
    /// Bytes written so far.
    written: u64,
    progress: &'p dyn Fn(u64),
    reported: u64,
    full: Option<crossbeam_channel::Sender<Filled>>,
    empty: crossbeam_channel::Receiver<Box<[u8]>>,
    worker: Option<JoinHandle<io::Result<BlobWriter>>>,
}

/// How often (in uncompressed bytes) the progress callback is called.
const PROGRESS_EVERY: u64 = 4 << 20;

impl<'p> TarStream<'p> {
    /// Starts the compressing thread, which writes everything it is sent into `comp`.
    /// `hash` says whether to compute the sha256 of the stream.
    pub(super) fn new(
        mut comp: Compressor<BlobWriter>,
        hash: bool,
        progress: &'p dyn Fn(u64),
    ) -> io::Result<Self> {
        let (full_tx, full_rx) = crossbeam_channel::bounded::<Filled>(POOL);
        let (empty_tx, empty_rx) = crossbeam_channel::bounded::<Box<[u8]>>(POOL);
        for _ in 1..POOL {
            empty_tx
                .send(vec![0u8; CHUNK].into_boxed_slice())
                .expect("the channel has room for the whole pool");
        }
        let worker = std::thread::Builder::new()
            .name("layer-compress".into())
            .spawn(move || {
                for (chunk, len) in full_rx {
                    comp.write_all(&chunk[..len])?;
                    crate::failpoint::hit("layer.mid_compress");
                    // The reader may have stopped early; the chunk is then simply dropped.
                    let _ = empty_tx.send(chunk);
                }
                comp.finish()
            })?;
        Ok(TarStream {
            chunk: vec![0u8; CHUNK].into_boxed_slice(),
            len: 0,
            hasher: hash.then(Sha256Hasher::new),
            written: 0,
            progress,
            reported: 0,
            full: Some(full_tx),
            empty: empty_rx,
            worker: Some(worker),
        })
    }

    /// Copies at most `len` bytes of `file` into the stream, reading straight into the chunks;
    /// returns how many there were (fewer if the file shrank). A file that grew is cut at `len`.
    pub(super) fn copy_from<R: Read>(&mut self, mut file: R, len: u64) -> Result<u64, CopyError> {
        let mut done = 0u64;
        while done < len {
            if self.len == CHUNK {
                self.send_chunk().map_err(CopyError::Write)?;
            }
            let room = CHUNK - self.len;
            let want = room.min(usize::try_from(len - done).unwrap_or(usize::MAX));
            let n = match file.read(&mut self.chunk[self.len..self.len + want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(e)),
            };
            self.len += n;
            done += n as u64;
        }
        Ok(done)
    }

    /// Hashes the current chunk, hands it to the compressing thread and takes an empty one.
    fn send_chunk(&mut self) -> io::Result<()> {
        if let Some(h) = self.hasher.as_mut() {
            h.update(&self.chunk[..self.len]);
        }
        self.written += self.len as u64;
        if self.written - self.reported >= PROGRESS_EVERY {
            self.reported = self.written;
            (self.progress)(self.written);
        }
        let next = match self.empty.recv() {
            Ok(next) => next,
            // Every chunk is gone and the worker with them: it failed.
            Err(_) => return Err(self.stopped()),
        };
        let full = std::mem::replace(&mut self.chunk, next);
        let sent = self.full.as_ref().map(|tx| tx.send((full, self.len)));
        self.len = 0;
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.stopped()),
        }
    }

    /// The compressing thread stopped before the end of the stream: its error is the one to
    /// report.
    fn stopped(&mut self) -> io::Error {
        self.full = None;
        match self.join() {
            Err(e) => e,
            Ok(_) => io::Error::other("the compression thread stopped early"),
        }
    }

    fn join(&mut self) -> io::Result<BlobWriter> {
        match self.worker.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compression thread panicked"))),
            None => Err(io::Error::other("the compression thread already finished")),
        }
    }

    /// Ends the stream: returns the hasher (over every byte written, if asked for), the number
    /// of bytes written and the blob writer with everything compressed into it.
    pub(super) fn finish(mut self) -> io::Result<(Option<Sha256Hasher>, u64, BlobWriter)> {
        if self.len > 0 {
            self.send_chunk()?;
        }
        self.full = None;
        let blob = self.join()?;
        (self.progress)(self.written);
        Ok((self.hasher.take(), self.written, blob))
    }
}

/// Headers, padding and the end-of-archive blocks: small writes copied into the chunk.
impl Write for TarStream<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.len == CHUNK {
            self.send_chunk()?;
        }
        let n = buf.len().min(CHUNK - self.len);
        self.chunk[self.len..self.len + n].copy_from_slice(&buf[..n]);
        self.len += n;
        Ok(n)
    }

    /// Chunks are sent when full; a partial one waits for more (or for `finish`).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for TarStream<'_> {
    fn drop(&mut self) {
        self.full = None;
        // On an early return the worker finishes what was queued; its result is dropped and the
        // blob writer inside removes its temp file.
        let _ = self.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compression::compressor_with_threads;
    use crate::{Compression, Store};

    fn stream_bytes(pieces: &[&[u8]]) -> (Sha256Hasher, u64, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let comp = compressor_with_threads(Compression::None, None, 1, store.begin_blob().unwrap())
            .unwrap();
        let mut s = TarStream::new(comp, true, &|_| {}).unwrap();
        for p in pieces {
            // Alternate the two ways bytes enter: small writes and file reads.
            if p.len() % 2 == 0 {
                s.write_all(p).unwrap();
            } else {
                assert_eq!(s.copy_from(*p, p.len() as u64).ok(), Some(p.len() as u64));
            }
        }
        let (hasher, written, blob) = s.finish().unwrap();
        let (digest, _) = blob.commit(None, None).unwrap();
        let mut stored = Vec::new();
        store
            .open_blob(&digest)
            .unwrap()
            .read_to_end(&mut stored)
            .unwrap();
        (hasher.expect("asked for a hash"), written, stored)
    }

    #[test]
    fn bytes_arrive_in_order_across_chunk_boundaries() {
        let big: Vec<u8> = (0..3 * CHUNK + 77).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<&[u8]> = vec![b"ab", &big[..CHUNK - 1], b"c", &big, b"", &big[..5]];
        let expected: Vec<u8> = pieces.concat();
        let (hasher, written, stored) = stream_bytes(&pieces);
        assert_eq!(written, expected.len() as u64);
        assert_eq!(hasher.len(), written);
        assert_eq!(hasher.finish(), crate::Digest::sha256_of(&expected));
        assert!(stored == expected, "stored bytes differ");
    }

    #[test]
    fn a_shrunken_source_reports_how_much_it_had() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let comp = compressor_with_threads(Compression::None, None, 1, store.begin_blob().unwrap())
            .unwrap();
        let mut s = TarStream::new(comp, false, &|_| {}).unwrap();
        assert_eq!(s.copy_from(&b"12345"[..], 9).ok(), Some(5));
        assert_eq!(s.copy_from(&b"12345"[..], 3).ok(), Some(3));
        let (hasher, written, blob) = s.finish().unwrap();
        assert!(hasher.is_none(), "no hash was asked for");
        assert_eq!(written, 8);
        let (digest, _) = blob.commit(None, None).unwrap();
        assert_eq!(digest, crate::Digest::sha256_of(b"12345123"));
    }
}

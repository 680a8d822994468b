//! A two-thread pipeline: reading (and decompressing) on one thread, tar parsing and filesystem
//! writes on the other, joined by a bounded channel of recycled buffers.
//!
//! `gzip -dc | tar -x` overlaps decompression with writing by running two processes; this does the
//! same so applying is no slower. The DiffID hash (sequential, ~1 GB/s) runs on whichever side
//! has less to do: the reading side for plain tar, the writing side when it must also decompress.
//! Memory is bounded by `IN_FLIGHT` buffers of `CHUNK` bytes.

use std::io::{self, BufRead, Read};
use std::sync::mpsc::{Receiver, Sender, SyncSender};

use crate::Sha256Hasher;

/// Size of one buffer passed between the threads.
pub const CHUNK: usize = 256 * 1024;
/// Buffers that may be queued between the threads.
pub const IN_FLIGHT: usize = 8;

/// A filled buffer: the bytes are `buf[..len]`.
pub struct Filled {
    buf: Vec<u8>,
    len: usize,
}

/// Reads `src` to its end, hashing every byte into `hasher` if given, and sends the bytes to the
/// applier. Stops early if the applier hung up because it failed.
pub fn produce<R: Read>(
    mut src: R,
    tx: SyncSender<Filled>,
    recycled: Receiver<Vec<u8>>,
    mut hasher: Option<Sha256Hasher>,
) -> io::Result<Option<Sha256Hasher>> {
    loop {
        let mut buf = recycled.try_recv().unwrap_or_else(|_| vec![0u8; CHUNK]);
        let mut len = 0;
        while len < buf.len() {
            match src.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..len]);
        }
        if len == 0 || tx.send(Filled { buf, len }).is_err() {
            return Ok(hasher);
        }
    }
}

/// The applier's end of the pipeline: a [`BufRead`] over the received buffers, which are sent
/// back for reuse once consumed (so the steady state allocates nothing).
pub struct ChannelReader {
    rx: Receiver<Filled>,
    recycle: Sender<Vec<u8>>,
    cur: Option<Filled>,
    pos: usize,
    hasher: Option<Sha256Hasher>,
}

impl ChannelReader {
    /// A reader over the received buffers, hashing them into `hasher` if given.
    pub fn new(
        rx: Receiver<Filled>,
        recycle: Sender<Vec<u8>>,
        hasher: Option<Sha256Hasher>,
    ) -> Self {
        ChannelReader {
            rx,
            recycle,
            cur: None,
            pos: 0,
            hasher,
        }
    }

    pub fn into_hasher(self) -> Option<Sha256Hasher> {
        self.hasher
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let buf = self.fill_buf()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for ChannelReader {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.cur.as_ref().is_none_or(|c| self.pos >= c.len) {
            if let Some(done) = self.cur.take() {
                // The producer may already be gone; then the buffer is simply dropped.
                let _ = self.recycle.send(done.buf);
            }
            self.pos = 0;
            // A closed channel is the end of the stream (the producer reports its own errors).
            self.cur = self.rx.recv().ok();
            if let (Some(h), Some(c)) = (self.hasher.as_mut(), self.cur.as_ref()) {
                h.update(&c.buf[..c.len]);
            }
        }
        Ok(match &self.cur {
            Some(c) => &c.buf[self.pos..c.len],
            None => &[],
        })
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use std::sync::mpsc;

    #[test]
    fn bytes_and_digest_survive_the_pipeline_hashed_on_either_side() {
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        for hash_on_reader in [false, true] {
            let (tx, rx) = mpsc::sync_channel(IN_FLIGHT);
            let (rtx, rrx) = mpsc::channel();
            let (produced, (out, consumed)) = std::thread::scope(|s| {
                let reader = s.spawn(move || {
                    let mut out = Vec::new();
                    let mut r = ChannelReader::new(rx, rtx, hash_on_reader.then(Sha256Hasher::new));
                    r.read_to_end(&mut out).expect("channel read");
                    (out, r.into_hasher())
                });
                let hasher = (!hash_on_reader).then(Sha256Hasher::new);
                let produced = produce(&data[..], tx, rrx, hasher).expect("produce");
                (produced, reader.join().expect("reader thread"))
            });
            assert_eq!(out, data);
            let h = produced.or(consumed).expect("one side hashed");
            assert_eq!(h.len(), data.len() as u64);
            assert_eq!(h.finish(), Digest::sha256_of(&data));
        }
    }
}

//! Layer compression and decompression: gzip (parallel, deterministic), zstd and none.
//!
//! # Why a hand-written parallel gzip
//! `flate2`'s `GzEncoder` uses one core. The parallel gzip crates either pick a backend whose
//! output differs between runs or thread counts, or do not prime blocks with a dictionary (which
//! costs ratio). A layer digest must be identical on every run and machine, so we do what pigz
//! does, in a few dozen lines on top of `flate2::Compress` (the pure-Rust `zlib-rs` backend):
//!
//! * the input is cut into fixed [`GZIP_BLOCK_SIZE`] blocks (the cut points depend on the input
//!   length only, never on timing or the thread count);
//! * each block is compressed as raw deflate, primed with the previous 32 KiB of input as the
//!   dictionary (`Compress::set_dictionary`), so matches across block boundaries are not lost;
//! * every block but the last ends with a sync flush (an empty stored block, byte aligned, not
//!   final), the last one with `Finish`; the concatenation is a single valid deflate stream;
//! * one gzip header (RFC 1952: no name, mtime 0, XFL as pigz sets it, OS 255 "unknown" as Go's
//!   `compress/gzip` writes it) and a trailer whose CRC-32 is combined from the per-block CRCs.
//!
//! A block's output depends only on its bytes and its dictionary, so the result is byte for byte
//! the same with 1 or N worker threads. It is also the same on every x86-64/arm64 machine:
//! zlib-rs picks SIMD code only for result-equivalent steps (match-length compare, hash slide),
//! never for the hash function. It is pinned by the zlib-rs version in `Cargo.lock`; an upgrade
//! may change compressed bytes (never the diffID, which is of the uncompressed tar).
//! zlib-rs follows zlib-ng (`deflate_medium` at levels 4–6), which is why it is both faster
//! than zlib/pigz at level 6 and compresses slightly better. Blocks in flight are bounded (`2 × threads + 2`), so
//! memory stays flat whatever the layer size.
//!
//! zstd uses libzstd's own multithreaded mode, always with at least one worker: libzstd's output
//! differs between 0 workers (single-threaded mode) and ≥ 1 worker, but not between 1 and N.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use flate2::{Compress, Crc, FlushCompress, Status};

use crate::Compression;

/// Default gzip level: 6, the default of gzip, pigz and Go's `compress/gzip` (BuildKit).
pub const DEFAULT_GZIP_LEVEL: u32 = 6;
/// Default zstd level: 3, the default of the zstd CLI and of BuildKit.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Size of the independent blocks of the parallel gzip compressor (pigz uses 128 KiB too).
pub const GZIP_BLOCK_SIZE: usize = 128 * 1024;
/// Output buffer of the zstd encoder (see `compressor_with_threads`).
const ZSTD_OUT_BUF: usize = 256 * 1024;
/// Deflate's window: how much of the previous block primes the next one.
const DICT_SIZE: usize = 32 * 1024;

/// Why a compressor could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("compression level {level} is out of range for {kind:?} (valid: {valid})")]
    BadLevel {
        kind: Compression,
        level: i32,
        valid: &'static str,
    },
    #[error("starting the zstd encoder")]
    Zstd(#[source] io::Error),
    #[error("starting a gzip worker thread")]
    Thread(#[source] io::Error),
    #[error("writing the gzip header")]
    Header(#[source] io::Error),
}

/// The number of compression threads used by default: every available core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A streaming compressor writing into `W`. Call [`Compressor::finish`] to complete the stream.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    None(W),
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

/// A compressor for `kind` at `level` (`None` = the default level) using every core.
pub fn compressor<W: Write>(
    kind: Compression,
    level: Option<i32>,
    out: W,
) -> Result<Compressor<W>, CompressionError> {
    compressor_with_threads(kind, level, default_threads(), out)
}

/// Like [`compressor`] with an explicit worker count (clamped to at least 1). The output is the
/// same for every thread count.
pub fn compressor_with_threads<W: Write>(
    kind: Compression,
    level: Option<i32>,
    threads: usize,
    out: W,
) -> Result<Compressor<W>, CompressionError> {
    let threads = threads.max(1);
    let inner = match kind {
        Compression::None => Inner::None(out),
        Compression::Gzip => {
            let level = match level {
                None => DEFAULT_GZIP_LEVEL,
                Some(l @ 0..=9) => l as u32,
                Some(level) => {
                    return Err(CompressionError::BadLevel {
                        kind,
                        level,
                        valid: "0-9",
                    })
                }
            };
            Inner::Gzip(ParallelGzip::new(out, level, threads)?)
        }
        Compression::Zstd => {
            let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL);
            let range = zstd::compression_level_range();
            if !range.contains(&level) {
                return Err(CompressionError::BadLevel {
                    kind,
                    level,
                    valid: "1-22 (negative levels are the fast modes)",
                });
            }
            let raw = zstd::stream::raw::Encoder::new(level).map_err(CompressionError::Zstd)?;
            // A bigger output buffer than the crate's 32 KiB: the bytes are the same (zstd's
            // output does not depend on how it is drained), with 8× fewer calls into libzstd
            // and writes into the blob.
            let mut enc = zstd::stream::write::Encoder::with_writer(
                zstd::stream::zio::Writer::new_with_capacity(out, raw, ZSTD_OUT_BUF),
            );
            // ≥ 1 worker always: see the module doc.
            let workers = u32::try_from(threads).unwrap_or(u32::MAX);
            enc.multithread(workers).map_err(CompressionError::Zstd)?;
            enc.include_checksum(true).map_err(CompressionError::Zstd)?;
            Inner::Zstd(enc)
        }
    };
    Ok(Compressor { inner })
}

impl<W: Write> Compressor<W> {
    /// Completes the stream and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::None(w) => Ok(w),
            Inner::Gzip(g) => g.finish(),
            Inner::Zstd(z) => z.finish(),
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::None(w) => w.write(buf),
            Inner::Gzip(g) => g.write(buf),
            Inner::Zstd(z) => z.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match &mut self.inner {
            Inner::None(w) => w.write_all(buf),
            Inner::Gzip(g) => g.write_all(buf),
            Inner::Zstd(z) => z.write_all(buf),
        }
    }

    /// Flushes the inner writer; it does not end a gzip block early (that would change the bytes).
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::None(w) => w.flush(),
            Inner::Gzip(g) => g.out.flush(),
            Inner::Zstd(z) => z.get_mut().flush(),
        }
    }
}

/// One block handed to a worker.
struct Job {
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
    level: u32,
    reply: mpsc::SyncSender<io::Result<BlockOut>>,
}

/// A compressed block and the CRC of its input.
struct BlockOut {
    compressed: Vec<u8>,
    crc: Crc,
}

/// The pigz-style compressor described in the module doc.
struct ParallelGzip<W: Write> {
    out: W,
    level: u32,
    block: Vec<u8>,
    /// The last `DICT_SIZE` bytes of the previous block.
    dict: Vec<u8>,
    crc: Crc,
    pending: VecDeque<mpsc::Receiver<io::Result<BlockOut>>>,
    max_pending: usize,
    pool: Pool,
}

/// The worker threads; dropping the pool closes the job queue and joins them.
struct Pool {
    jobs: Option<crossbeam_channel::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for h in self.workers.drain(..) {
            // A panicked worker already reported itself through its dropped reply channel.
            let _ = h.join();
        }
    }
}

impl<W: Write> ParallelGzip<W> {
    fn new(mut out: W, level: u32, threads: usize) -> Result<Self, CompressionError> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(threads);
        let mut pool = Pool {
            jobs: Some(tx),
            workers: Vec::with_capacity(threads),
        };
        for i in 0..threads {
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || {
                    for job in rx {
                        // A fresh deflate state per block. Reusing one per worker with `reset()`
                        // was tried: zlib-rs's reset does not restore every bit of state, so the
                        // bytes then depended on which worker had compressed what before — a
                        // race. `output_does_not_depend_on_write_sizes` caught it.
                        let c = &mut Compress::new(flate2::Compression::new(job.level), false);
                        let result = compress_block(c, &job.data, &job.dict, job.last);
                        // The receiver may be gone if the compressor was dropped mid-stream.
                        let _ = job.reply.send(result);
                    }
                })
                .map_err(CompressionError::Thread)?;
            pool.workers.push(handle);
        }
        // RFC 1952 header: ID1 ID2 CM=8 FLG=0 MTIME=0 XFL OS=255.
        let xfl = match level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        let header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255];
        out.write_all(&header).map_err(CompressionError::Header)?;
        Ok(ParallelGzip {
            out,
            level,
            block: Vec::with_capacity(GZIP_BLOCK_SIZE),
            dict: Vec::new(),
            crc: Crc::new(),
            pending: VecDeque::new(),
            max_pending: 2 * threads + 2,
            pool,
        })
    }

    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(GZIP_BLOCK_SIZE));
        let dict = std::mem::take(&mut self.dict);
        // The next block's dictionary: the tail of this block, topped up from the old
        // dictionary when this block is shorter than the window.
        let mut next_dict = Vec::with_capacity(DICT_SIZE);
        if data.len() < DICT_SIZE {
            let need = DICT_SIZE - data.len();
            next_dict.extend_from_slice(&dict[dict.len().saturating_sub(need)..]);
        }
        next_dict.extend_from_slice(&data[data.len().saturating_sub(DICT_SIZE)..]);
        self.dict = next_dict;

        let (reply, result) = mpsc::sync_channel(1);
        let job = Job {
            data,
            dict,
            last,
            level: self.level,
            reply,
        };
        let sender = self.pool.jobs.as_ref().ok_or_else(workers_gone)?;
        sender.send(job).map_err(|_| workers_gone())?;
        self.pending.push_back(result);
        while self.pending.len() >= self.max_pending {
            self.drain_one()?;
        }
        Ok(())
    }

    fn drain_one(&mut self) -> io::Result<()> {
        if let Some(rx) = self.pending.pop_front() {
            let block = rx.recv().map_err(|_| workers_gone())??;
            self.crc.combine(&block.crc);
            self.out.write_all(&block.compressed)?;
        }
        Ok(())
    }

    fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while !self.pending.is_empty() {
            self.drain_one()?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        // ISIZE is the input length modulo 2^32 (RFC 1952).
        trailer[4..].copy_from_slice(&(self.crc.amount()).to_le_bytes());
        self.out.write_all(&trailer)?;
        let ParallelGzip { out, pool, .. } = self;
        drop(pool);
        Ok(out)
    }
}

fn workers_gone() -> io::Error {
    io::Error::other("a gzip compression worker thread exited unexpectedly")
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = GZIP_BLOCK_SIZE - self.block.len();
        let n = room.min(buf.len());
        self.block.extend_from_slice(&buf[..n]);
        if self.block.len() == GZIP_BLOCK_SIZE {
            self.dispatch(false)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Compresses one block as raw deflate primed with `dict`; see the module doc.
fn compress_block(c: &mut Compress, data: &[u8], dict: &[u8], last: bool) -> io::Result<BlockOut> {
    let mut crc = Crc::new();
    crc.update(data);
    // Counters are only compared relative to their start, whatever `reset` does to them.
    let start_in = c.total_in();
    if !dict.is_empty() {
        c.set_dictionary(dict)
            .map_err(|e| io::Error::other(format!("priming a deflate block: {e}")))?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut compressed = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        if compressed.capacity() - compressed.len() < 4096 {
            compressed.reserve(data.len() / 4 + 4096);
        }
        let consumed =
            usize::try_from(c.total_in() - start_in).expect("a block is smaller than usize");
        let before_out = compressed.len();
        let spare = compressed.capacity() - compressed.len();
        let status = c
            .compress_vec(&data[consumed..], &mut compressed, flush)
            .map_err(|e| io::Error::other(format!("deflating a block: {e}")))?;
        let all_in = c.total_in() - start_in == data.len() as u64;
        let produced = compressed.len() - before_out;
        let done = match status {
            Status::StreamEnd => true,
            // A sync flush is complete once all input is in and the output had room to spare.
            _ => !last && all_in && produced < spare,
        };
        if done {
            break;
        }
    }
    Ok(BlockOut { compressed, crc })
}

/// A compression format recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    /// No known magic: treat as uncompressed.
    None,
}

/// Recognises a compression format from the first bytes of a stream.
pub fn detect(prefix: &[u8]) -> Detected {
    if prefix.starts_with(&[0x1f, 0x8b]) {
        Detected::Gzip
    } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Detected::Zstd
    } else if prefix.starts_with(b"BZh") {
        Detected::Bzip2
    } else if prefix.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Detected::Xz
    } else {
        Detected::None
    }
}

/// A decompressing reader for a layer of known compression.
pub fn decompressor<R: Read + Send + 'static>(
    kind: Compression,
    reader: R,
) -> io::Result<Box<dyn Read + Send>> {
    Ok(match kind {
        Compression::None => Box::new(reader),
        // Multi-member: a concatenation of gzip members is one valid gzip file (RFC 1952 §2.2).
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(reader))),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// Sniffs the compression from the magic bytes and returns the format and a decompressing reader
/// (gzip, zstd, bzip2, xz or plain), e.g. for `ADD` of a local archive or a layer of unknown type.
pub fn decompressor_auto<R: Read + Send + 'static>(
    mut reader: R,
) -> io::Result<(Detected, Box<dyn Read + Send>)> {
    let mut prefix = [0u8; 6];
    let mut n = 0;
    while n < prefix.len() {
        match reader.read(&mut prefix[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = detect(&prefix[..n]);
    let whole = io::Cursor::new(prefix[..n].to_vec()).chain(reader);
    let out: Box<dyn Read + Send> = match kind {
        Detected::None => Box::new(whole),
        Detected::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(whole))),
        Detected::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        Detected::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        Detected::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
    };
    Ok((kind, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};

    /// Text-like data with long-range repeats, so dictionaries matter.
    fn sample(len: usize) -> Vec<u8> {
        let words = [
            "layer ",
            "digest ",
            "sha256 ",
            "whiteout ",
            "opaque\n",
            "tar ",
            "gzip ",
            "zstd ",
        ];
        let mut out = Vec::with_capacity(len);
        let mut x: u32 = 12345;
        while out.len() < len {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            out.extend_from_slice(words[(x >> 16) as usize % words.len()].as_bytes());
            if x % 7 == 0 {
                out.extend_from_slice(format!("{x}").as_bytes());
            }
        }
        out.truncate(len);
        out
    }

    fn compress(kind: Compression, level: Option<i32>, threads: usize, data: &[u8]) -> Vec<u8> {
        let mut c = compressor_with_threads(kind, level, threads, Vec::new()).unwrap();
        // Odd write sizes so block boundaries never line up with writes.
        for chunk in data.chunks(7919) {
            c.write_all(chunk).unwrap();
        }
        c.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn gzip_is_identical_for_1_2_and_4_threads() {
        // Enough blocks, and repeated runs, for any dependence on which worker got which block
        // (a race) to show up.
        let data = sample(48 * GZIP_BLOCK_SIZE + 1234);
        let one = compress(Compression::Gzip, None, 1, &data);
        for threads in [2, 4, 2, 4, 3] {
            assert!(
                one == compress(Compression::Gzip, None, threads, &data),
                "{threads} threads gave different bytes"
            );
        }
        assert_eq!(gunzip(&one), data);
    }

    #[test]
    fn gzip_round_trips_edge_sizes() {
        for len in [0, 1, DICT_SIZE - 1, GZIP_BLOCK_SIZE, GZIP_BLOCK_SIZE + 1] {
            let data = sample(len);
            let gz = compress(Compression::Gzip, Some(1), 2, &data);
            assert_eq!(gunzip(&gz), data, "len {len}");
        }
    }

    #[test]
    fn gzip_dictionary_priming_keeps_ratio_close_to_single_stream() {
        let data = sample(8 * GZIP_BLOCK_SIZE);
        let ours = compress(Compression::Gzip, None, 2, &data).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        // pigz is within ~1% of gzip; allow 3% for small inputs.
        assert!(
            (ours as f64) < single as f64 * 1.03,
            "parallel {ours} vs single {single}"
        );
    }

    #[test]
    fn gzip_cli_accepts_our_stream() {
        let data = sample(3 * GZIP_BLOCK_SIZE + 17);
        let gz = compress(Compression::Gzip, None, 2, &data);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, &gz).unwrap();
        let test = Command::new("gzip").arg("-t").arg(&path).status().unwrap();
        assert!(test.success(), "gzip -t rejected the stream");
        let out = Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, data);
    }

    #[test]
    fn gzip_header_is_fixed() {
        let gz = compress(Compression::Gzip, None, 1, b"hello");
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
    }

    #[test]
    fn zstd_is_identical_for_1_and_2_workers_and_round_trips() {
        let data = sample(3 << 20);
        let one = compress(Compression::Zstd, None, 1, &data);
        assert_eq!(one, compress(Compression::Zstd, None, 2, &data));
        let mut back = Vec::new();
        decompressor(Compression::Zstd, io::Cursor::new(one))
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn zstd_output_buffer_size_does_not_change_the_bytes() {
        // The same parameters through the crate's default 32 KiB output buffer: the blob digest
        // of a zstd layer must not depend on `ZSTD_OUT_BUF`.
        let data = sample(20 << 20);
        let ours = compress(Compression::Zstd, None, 2, &data);
        let mut plain = zstd::stream::write::Encoder::new(Vec::new(), DEFAULT_ZSTD_LEVEL).unwrap();
        plain.multithread(2).unwrap();
        plain.include_checksum(true).unwrap();
        for chunk in data.chunks(7919) {
            plain.write_all(chunk).unwrap();
        }
        assert!(ours == plain.finish().unwrap(), "different bytes");
    }

    #[test]
    fn output_does_not_depend_on_write_sizes() {
        let data = sample(9 << 20);
        for kind in [Compression::Gzip, Compression::Zstd] {
            let chunked = compress(kind, None, 2, &data);
            let mut c = compressor_with_threads(kind, None, 2, Vec::new()).unwrap();
            c.write_all(&data).unwrap();
            assert_eq!(c.finish().unwrap(), chunked, "{kind:?}");
        }
    }

    #[test]
    fn bad_levels_are_rejected() {
        assert!(matches!(
            compressor_with_threads(Compression::Gzip, Some(10), 1, Vec::new()),
            Err(CompressionError::BadLevel { .. })
        ));
        assert!(matches!(
            compressor_with_threads(Compression::Zstd, Some(99), 1, Vec::new()),
            Err(CompressionError::BadLevel { .. })
        ));
    }

    #[test]
    fn autodetect_by_magic() {
        let data = sample(10_000);
        for (kind, det) in [
            (Compression::Gzip, Detected::Gzip),
            (Compression::Zstd, Detected::Zstd),
            (Compression::None, Detected::None),
        ] {
            let bytes = compress(kind, None, 1, &data);
            let (found, mut r) = decompressor_auto(io::Cursor::new(bytes)).unwrap();
            assert_eq!(found, det);
            let mut back = Vec::new();
            r.read_to_end(&mut back).unwrap();
            assert_eq!(back, data);
        }
        assert_eq!(detect(b"BZh91AY"), Detected::Bzip2);
        assert_eq!(detect(&[0xfd, b'7', b'z', b'X', b'Z', 0]), Detected::Xz);
        assert_eq!(detect(b""), Detected::None);
    }
}

//! Writing a layer: entries → tar stream → diffID hasher → compressor → blob hasher → store.
//!
//! The whole layer is streamed once: each file is read from disk exactly once, the uncompressed
//! sha256 (diffID) is computed on the tar bytes as they are produced, and the compressed sha256
//! by the store's [`crate::BlobWriter`] as they are written. Reading and hashing run on the
//! calling thread; compressing and storing run on a second thread fed through a small bounded
//! channel (like `tar | pigz`), so reading files overlaps with compression. Memory stays
//! bounded by that channel, the compressor's in-flight blocks and one copy buffer.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::thread::JoinHandle;

use super::entry::{sort_entries, validate_sorted, EntryKind, LayerEntry};
use super::header::{self, HeaderFields};
use super::LayerError;
use crate::compression::{compressor_with_threads, default_threads, Compressor};
use crate::{BlobWriter, Compression, Digest, MediaType, Sha256Hasher, Store};

/// How to write a layer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayerOptions {
    pub compression: Compression,
    /// Compression level; `None` = gzip 6 / zstd 3.
    pub level: Option<i32>,
    /// `SOURCE_DATE_EPOCH`: mtimes later than this are clamped to it.
    pub source_date_epoch: Option<i64>,
    /// Compression threads; `None` = every core. The output does not depend on it.
    pub threads: Option<usize>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// sha256 of the uncompressed tar (goes into the image config's `rootfs.diff_ids`).
    pub diff_id: Digest,
    /// sha256 of the blob as stored (goes into the manifest).
    pub digest: Digest,
    /// Size of the blob as stored.
    pub size: u64,
    pub media_type: MediaType,
    pub uncompressed_size: u64,
}

/// Hashes the uncompressed tar on its way to the compressor.
struct DiffHasher<'p, W> {
    inner: W,
    hasher: Sha256Hasher,
    progress: &'p dyn Fn(u64),
    reported: u64,
}

/// How often (in uncompressed bytes) `write_layer_with_progress` reports.
const PROGRESS_EVERY: u64 = 4 << 20;

impl<W: Write> Write for DiffHasher<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        let done = self.hasher.len();
        if done - self.reported >= PROGRESS_EVERY {
            self.reported = done;
            (self.progress)(done);
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Size of the buffer files are copied through (and of the writes into the compressor).
const COPY_BUF: usize = 256 * 1024;
/// Chunks of `COPY_BUF` bytes queued between the reading and the compressing thread.
const PIPE_DEPTH: usize = 8;

/// Sends the tar stream to a thread that compresses it into the blob writer.
struct Pipe {
    tx: Option<crossbeam_channel::Sender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<BlobWriter>>>,
}

impl Pipe {
    fn new(mut comp: Compressor<BlobWriter>) -> Result<Pipe, LayerError> {
        let (tx, rx) = crossbeam_channel::bounded::<Vec<u8>>(PIPE_DEPTH);
        let worker = std::thread::Builder::new()
            .name("layer-compress".into())
            .spawn(move || {
                for chunk in rx {
                    comp.write_all(&chunk)?;
                }
                comp.finish()
            })
            .map_err(LayerError::Write)?;
        Ok(Pipe {
            tx: Some(tx),
            worker: Some(worker),
        })
    }

    /// Closes the stream and returns the blob writer with everything compressed into it.
    fn finish(mut self) -> io::Result<BlobWriter> {
        self.tx = None;
        self.join()
    }

    fn join(&mut self) -> io::Result<BlobWriter> {
        match self.worker.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compression thread panicked"))),
            None => Err(io::Error::other("the compression thread already finished")),
        }
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let sent = self.tx.as_ref().map(|tx| tx.send(buf.to_vec()));
        match sent {
            Some(Ok(())) => Ok(buf.len()),
            // The worker stopped early: it failed, and its error is the one to report.
            _ => {
                self.tx = None;
                Err(match self.join() {
                    Err(e) => e,
                    Ok(_) => io::Error::other("the compression thread stopped early"),
                })
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        self.tx = None;
        // On an early return the worker finishes what was queued; its result is dropped and the
        // blob writer inside removes its temp file.
        let _ = self.join();
    }
}

/// Writes `entries` as one layer blob into `store`. Entries are sorted into the canonical order
/// first (see [`super::sort_entries`]) and validated; the same entries and file contents always
/// give the same diffID and digest, whatever the thread count.
pub fn write_layer(
    store: &Store,
    entries: Vec<LayerEntry>,
    opts: &LayerOptions,
) -> Result<LayerInfo, LayerError> {
    write_layer_with_progress(store, entries, opts, &|_| {})
}

/// [`write_layer`], calling `progress` with the number of uncompressed bytes written so far
/// every few MiB (for progress bars).
pub fn write_layer_with_progress(
    store: &Store,
    mut entries: Vec<LayerEntry>,
    opts: &LayerOptions,
    progress: &dyn Fn(u64),
) -> Result<LayerInfo, LayerError> {
    sort_entries(&mut entries);
    validate_sorted(&entries)?;
    let blob = store.begin_blob()?;
    let threads = opts.threads.unwrap_or_else(default_threads);
    let comp = compressor_with_threads(opts.compression, opts.level, threads, blob)?;
    let mut out = BufWriter::with_capacity(
        COPY_BUF,
        DiffHasher {
            inner: Pipe::new(comp)?,
            hasher: Sha256Hasher::new(),
            progress,
            reported: 0,
        },
    );
    let mut buf = vec![0u8; COPY_BUF];
    for e in &entries {
        write_entry(&mut out, e, opts.source_date_epoch, &mut buf)?;
    }
    // End of archive: two zero blocks.
    out.write_all(&[0u8; 2 * header::BLOCK])
        .map_err(LayerError::Write)?;
    let hashing = out
        .into_inner()
        .map_err(|e| LayerError::Write(e.into_error()))?;
    let uncompressed_size = hashing.hasher.len();
    progress(uncompressed_size);
    let diff_id = hashing.hasher.finish();
    let blob = hashing.inner.finish().map_err(LayerError::Write)?;
    let (digest, size) = blob.commit(None, None)?;
    Ok(LayerInfo {
        diff_id,
        digest,
        size,
        media_type: opts.compression.oci_layer_media_type(),
        uncompressed_size,
    })
}

fn write_entry<W: Write>(
    out: &mut W,
    e: &LayerEntry,
    sde: Option<i64>,
    buf: &mut [u8],
) -> Result<(), LayerError> {
    let name = e.tar_path();
    let mtime = match sde {
        Some(epoch) if e.mtime > epoch => epoch,
        _ => e.mtime,
    };
    let mut f = HeaderFields {
        name: &name,
        typeflag: header::TYPE_REG,
        mode: e.mode,
        uid: e.uid,
        gid: e.gid,
        size: 0,
        mtime,
        linkname: "",
        devmajor: 0,
        devminor: 0,
        xattrs: &e.xattrs,
    };
    match &e.kind {
        EntryKind::File { source } => {
            let file = File::open(source).map_err(LayerError::io("opening", source))?;
            let meta = file
                .metadata()
                .map_err(LayerError::io("reading metadata of", source))?;
            if !meta.is_file() {
                return Err(LayerError::NotRegular {
                    path: source.clone(),
                });
            }
            f.size = meta.size();
            header::write_header(out, &f).map_err(LayerError::Write)?;
            let copied = copy_exact(file, out, f.size, buf).map_err(|err| match err {
                CopyError::Read(e) => LayerError::io("reading", source)(e),
                CopyError::Write(e) => LayerError::Write(e),
            })?;
            if copied != f.size {
                return Err(LayerError::FileChanged {
                    path: source.clone(),
                    expected: f.size,
                    actual: copied,
                });
            }
            header::write_padding(out, f.size).map_err(LayerError::Write)?;
            return Ok(());
        }
        EntryKind::Dir => f.typeflag = header::TYPE_DIR,
        EntryKind::Symlink { target } => {
            f.typeflag = header::TYPE_SYMLINK;
            f.linkname = target;
        }
        EntryKind::Hardlink { target } => {
            f.typeflag = header::TYPE_LINK;
            f.linkname = target;
        }
        EntryKind::CharDev { major, minor } => {
            f.typeflag = header::TYPE_CHAR;
            (f.devmajor, f.devminor) = (*major, *minor);
        }
        EntryKind::BlockDev { major, minor } => {
            f.typeflag = header::TYPE_BLOCK;
            (f.devmajor, f.devminor) = (*major, *minor);
        }
        EntryKind::Fifo => f.typeflag = header::TYPE_FIFO,
        // Whiteouts are empty regular files (image-spec layer.md).
        EntryKind::Whiteout | EntryKind::OpaqueWhiteout => {}
    }
    header::write_header(out, &f).map_err(LayerError::Write)
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies at most `len` bytes; returns how many there were (fewer if the file shrank). A file
/// that grew is cut at `len`, its size at open time, and reported by the caller only if it shrank.
fn copy_exact<R: Read, W: Write>(
    mut r: R,
    w: &mut W,
    len: u64,
    buf: &mut [u8],
) -> Result<u64, CopyError> {
    let mut done = 0u64;
    while done < len {
        let want = buf
            .len()
            .min(usize::try_from(len - done).unwrap_or(usize::MAX));
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        w.write_all(&buf[..n]).map_err(CopyError::Write)?;
        done += n as u64;
    }
    Ok(done)
}
